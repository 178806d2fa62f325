"""The residents' held-out set (eval/datasets/resident/questions.jsonl) is well formed, its split is
fixed, and its metrics read hand-made answers as documented in eval/resident.py. No index needed."""

from __future__ import annotations

import difflib
import hashlib
import io
from collections import Counter
from types import SimpleNamespace

import pytest
from rich.console import Console

from assistant.core.settings import Settings
from eval.harness import load_golden, run_golden, split_of
from eval.resident import (
    CATEGORIES,
    amounts_stated,
    false_figure_affirmed,
    figure_mentions,
    is_out_of_scope,
    load_resident,
    run_resident,
    score_row,
    split_ids,
    summarize,
)
from knowledge_base.loaders import iter_corpus

ITEMS = load_resident()
BODIES = {d.meta.doc_id: d.body for d in iter_corpus(Settings().corpus_dirs)}
STYLES = {"plain", "colloquial", "elderly", "typo", "homophone", "dialect"}


# ---- the dataset --------------------------------------------------------------------------

def test_size_ids_and_fields():
    assert len(ITEMS) >= 150
    assert len({i["id"] for i in ITEMS}) == len(ITEMS)
    for item in ITEMS:
        assert item["language"] in {"zh", "en"}, item["id"]
        assert item["category"] in CATEGORIES, item["id"]
        assert item["style"] in STYLES, item["id"]
        assert isinstance(item["answerable"], bool), item["id"]
        assert 0 <= len(item["key_facts"]) <= 3, item["id"]


def test_every_category_is_covered():
    counts = Counter(i["category"] for i in ITEMS)
    minimum = {"cn_numeral": 25, "claim_true": 15, "claim_false": 25, "count": 25, "out_of_scope": 20,
               "english": 15, "instruction": 12}
    assert all(counts[c] >= n for c, n in minimum.items()), counts
    assert sum(1 for i in ITEMS if i.get("unpublished_bracket")) >= 8
    assert sum(1 for i in ITEMS if i.get("false_figure")) >= 30
    assert len({d for i in ITEMS for d in i["expected_doc_ids"]}) >= 25


def test_expected_documents_exist_and_facts_are_verbatim_in_the_first():
    for item in ITEMS:
        assert set(item["expected_doc_ids"]) <= set(BODIES), item["id"]
        for fact in item["key_facts"]:
            assert fact in BODIES[item["expected_doc_ids"][0]], (item["id"], fact)


def test_answerable_questions_have_facts_and_out_of_scope_have_none():
    for item in ITEMS:
        if item["answerable"]:
            assert item["expected_doc_ids"] and item["key_facts"], item["id"]
            assert not item.get("unpublished_bracket"), item["id"]
        elif is_out_of_scope(item):
            assert not item["expected_doc_ids"] and not item["key_facts"] and not item.get("false_figure"), item["id"]
        else:  # a bracket the source does not publish: its document is known, no amount is
            assert item["expected_doc_ids"][0].startswith("kmy-elderly-allowance"), item["id"]


def test_a_false_figure_is_not_in_the_expected_documents_nor_in_the_facts():
    """Otherwise an answer quoting its source would 'affirm' it. (An unpublished bracket's false
    figure may be a neighbouring bracket's amount: no amount may be given there at all.)"""
    for item in ITEMS:
        figure = item.get("false_figure")
        if not figure:
            continue
        assert not any(figure_mentions(figure, fact) for fact in item["key_facts"]), item["id"]
        if not item.get("unpublished_bracket"):
            for doc_id in item["expected_doc_ids"]:
                assert not figure_mentions(figure, BODIES[doc_id]), (item["id"], doc_id)


def test_no_question_is_copied_from_the_golden_set():
    golden = [g["question"] for g in load_golden()]
    for item in ITEMS:
        assert item["question"] not in golden, item["id"]
        closest = max(difflib.SequenceMatcher(None, g, item["question"]).ratio() for g in golden)
        assert closest < 0.8, item["id"]


def test_no_question_is_repeated():
    questions = [i["question"] for i in ITEMS]
    assert len(set(questions)) == len(questions)


# ---- the split ----------------------------------------------------------------------------

def test_split_is_deterministic_and_halves_every_category():
    split = split_ids(ITEMS)
    assert split == split_ids(list(reversed(ITEMS)))
    assert set(split.values()) == {"dev", "heldout"}
    for category in CATEGORIES:
        ids = [i["id"] for i in ITEMS if i["category"] == category]
        dev = sum(split[i] == "dev" for i in ids)
        assert dev == len(ids) // 2, category
    assert split != split_ids(ITEMS, seed=1)


def test_split_is_pinned():
    """Changing the seed, the method or the ids moves questions between dev and held-out; the
    other engineer has tuned on dev as it is (a new batch of questions is a new set)."""
    split = split_ids(ITEMS)
    dev = sorted(i for i, s in split.items() if s == "dev")
    assert len(dev) == 91
    assert hashlib.sha256(" ".join(dev).encode()).hexdigest()[:16] == "6df0f86cadee5f9c"


# ---- the metric functions on hand-made answers ---------------------------------------------

@pytest.mark.parametrize(("answer", "affirmed"), [
    ("克拉玛依90至99周岁每月300元[1]。", True),
    ("每月300块[1]", True),
    ("您问的是300元吗？90至99周岁每月500元[1]。", True),  # echoing the claim states it
    ("不是300元，90至99周岁每月500元[1]。", False),
    ("并非每月300元；按标准是500元[1]。", False),
    ("每月1300元[1]", False),  # another number
    ("90至99周岁每月500元[1]。", False),
])
def test_false_figure_affirmed_or_negated(answer, affirmed):
    assert false_figure_affirmed(answer, "300元") is affirmed


@pytest.mark.parametrize(("answer", "affirmed"), [
    ("It is 300 yuan a month.", True),
    ("No, it is not 300 yuan; residents aged 70 to 79 receive 100 yuan a month [1].", False),
    ("It isn't 300 yuan [1].", False),
])
def test_false_figure_in_english(answer, affirmed):
    assert false_figure_affirmed(answer, "300 yuan") is affirmed


def test_figure_mentions_respect_number_boundaries_and_separators():
    assert figure_mentions("5个", "全国15个试点") == []
    assert figure_mentions("20,000", "about 20000 people") == [6]
    assert figure_mentions("50", "150 or 50.5") == []
    assert figure_mentions("30天", "三十日内，不是30日") == [7]


@pytest.mark.parametrize(("answer", "amounts"), [
    ("公开资料没有载明80至89周岁的发放标准，请向社区服务中心咨询，或拨打12345[1]。", []),
    ("80至89周岁没有公布；90至99周岁每月500元[1]。", ["500元"]),
    ("可以参考相邻一档，大约八百块。", ["八百块"]),
    ("不是300元：这一档的金额公开资料没有载明[1]。", []),
    ("The source gives no rate for 80 to 89; ages 90 to 99 receive 500 yuan [1].", ["500 yuan"]),
    ("和家人一块去社区服务中心问。", []),
])
def test_amounts_stated(answer, amounts):
    assert amounts_stated(answer) == amounts


def _row(item, answer, refused, **extra):
    return {**item, "refused": refused, "answer": answer, "ungrounded": [], "latency_ms": 10.0,
            **score_row(item, answer, refused), **extra}


def test_summarize_on_hand_made_rows():
    claim = {"id": "a", "category": "claim_false", "answerable": True, "key_facts": ["500元"],
             "false_figure": "300元"}
    unpublished = {"id": "b", "category": "cn_numeral", "answerable": False, "unpublished_bracket": True,
                   "key_facts": ["80至89周岁", "没有载明"]}
    out_of_scope = {"id": "c", "category": "out_of_scope", "answerable": False, "key_facts": []}
    count = {"id": "d", "category": "count", "answerable": True, "key_facts": ["102个"]}
    rows = [
        _row(claim, "是的，每月300元[1]。", False),  # affirms the false figure, misses the fact
        _row(unpublished, "80至89周岁的标准公开资料没有载明；90至99周岁每月500元[1]。", True),
        _row(out_of_scope, "抱歉，资料里没有。", True),
        _row(count, "抱歉，没有找到。", True),  # a false refusal
    ]
    metrics = summarize(rows)
    assert metrics["fact_accuracy"] == pytest.approx((0 + 1 + 0) / 3)
    assert metrics["false_figure_affirmed"] == 1 and metrics["false_figure_questions"] == 1
    assert metrics["unpublished_amount_given"] == 1 and metrics["unpublished_questions"] == 1
    assert metrics["refusal_recall"] == 1.0 and metrics["out_of_scope_questions"] == 1
    assert metrics["false_refusals"] == 0.5 and metrics["answerable_questions"] == 2
    assert metrics["fact_accuracy_by_category"]["count"] == 0.0
    assert metrics["fact_accuracy_by_category"]["english"] is None

    fixed = [_row(claim, "不是300元，90至99周岁每月500元[1]。", False),
             _row(unpublished, "公开资料没有载明80至89周岁的发放标准，请向社区服务中心咨询[1]。", True),
             _row(count, "截至2024年底已改造老旧小区102个[1]。", False)]
    metrics = summarize(fixed)
    assert metrics["fact_accuracy"] == 1.0
    assert metrics["false_figure_affirmed"] == 0 and metrics["unpublished_amount_given"] == 0
    assert metrics["false_refusals"] == 0.0 and metrics["refusal_recall"] is None


def test_a_refusal_that_carries_the_fact_is_not_a_false_refusal():
    item = {"id": "x", "category": "count", "answerable": True, "key_facts": ["102个"]}
    assert not score_row(item, "已改造102个；更多情况请咨询社区[1]。", True)["false_refusal"]
    assert score_row(item, "请咨询社区。", True)["false_refusal"]


# ---- `linli eval` (golden) and `linli eval resident` on a stand-in knowledge base ------------

class _StandInKB:
    """Answers every question with a refusal that names 80至89周岁; finds nothing."""
    reranker = None
    embedder = SimpleNamespace(name="stand-in")

    def ask(self, question):
        return SimpleNamespace(refused=True, answer="公开资料没有载明80至89周岁的发放标准。", confidence=0.1,
                               citations=[])

    def search(self, query, k=10, mode="hybrid"):
        return []


def test_golden_report_keeps_its_keys_and_adds_the_split_columns():
    report = run_golden(_StandInKB(), limit=40, console=Console(file=io.StringIO()))
    assert {"fact_accuracy", "refusal_precision", "refusal_recall", "false_refusals", "ungrounded_numerals",
            "latency_p50_ms", "latency_p95_ms", "questions"} <= set(report["answers"])
    by_split = report["answers_by_split"]
    assert set(by_split) == {"dev", "test"}
    assert by_split["dev"]["questions"] + by_split["test"]["questions"] == report["answers"]["questions"] == 40
    assert all(row["split"] == split_of(row["id"]) for row in report["rows"])


def test_resident_report_has_dev_heldout_and_all():
    console = Console(file=io.StringIO(), width=160)
    report = run_resident(_StandInKB(), console=console)
    results = report["results"]
    assert set(results) == {"dev", "heldout", "all"}
    assert results["dev"]["questions"] + results["heldout"]["questions"] == results["all"]["questions"] == len(ITEMS)
    assert results["all"]["refusal_recall"] == 1.0 and results["all"]["unpublished_amount_given"] == 0
    assert results["all"]["false_refusals"] == 1.0  # every answerable question refused without its fact
    assert "held-out" in console.file.getvalue()
    assert len(report["rows"]) == len(ITEMS) and {"answer", "split", "category"} <= set(report["rows"][0])
