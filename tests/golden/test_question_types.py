"""Issue 31's question types on held-out examples written before the fix
(eval/datasets/question_types/heldout.jsonl): at least 9 of 10 right per type that was built,
on the full shipped index. `python -m eval.question_types` prints each miss."""

from __future__ import annotations

import pytest

from eval.question_types import evaluate, load_items

pytestmark = pytest.mark.slow

FINISHED = ("count_verb", "which_ones", "allowance_age", "en_count_claim")
FLOOR = 9


@pytest.fixture(scope="module")
def scored(shipped_kb):
    return evaluate(shipped_kb, [i for i in load_items() if i["type"] in FINISHED])


@pytest.mark.parametrize("kind", FINISHED)
def test_each_finished_type_is_right_on_at_least_9_of_10_held_out_questions(scored, kind):
    table, rows = scored
    misses = [(r["question"], r["why"], r["answer"][:120]) for r in rows if r["type"] == kind and not r["right"]]
    assert table[kind]["total"] == 10
    assert table[kind]["right"] >= FLOOR, misses
