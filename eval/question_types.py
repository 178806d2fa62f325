"""Question types that were refused or answered beside the point although a document states the
answer (issue 31), scored on held-out examples written before the fix
(`eval/datasets/question_types/heldout.jsonl`, 10 per type):

- count_verb: a total or a count asked with another verb than the document's ("花了" for 投入,
  "多少种服务" for "20类便民服务");
- which_ones: "which ones" (哪几项 / 哪两种 / 包括哪些), answered by the sentence that enumerates;
- allowance_age: an allowance named by a near-synonym (补助 / 补贴 for 津贴), ages said with 百
  and no digit, or as "过了N" / "over N";
- en_count_claim: an English planted claim about a count, corrected.

A row is right when the answer is not a refusal, every expected figure or fact is in its text
(`harness._fact_found`), it cites the expected document (or its other-language twin), and, for a
planted claim, it names the resident's wrong figure, negated ("not 100", never affirmed).

    python -m eval.question_types [--dataset PATH] [--json out.json] [--type which_ones]

`--dataset` scores another file of the same format, e.g. the fresh read-once set
(`eval/datasets/question_types/fresh.jsonl`); the default is `heldout.jsonl`.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from eval.harness import _fact_found
from eval.resident import false_figure_affirmed, figure_mentions

HELDOUT_FILE = Path(__file__).resolve().parent / "datasets" / "question_types" / "heldout.jsonl"
TYPES = ("count_verb", "which_ones", "allowance_age", "en_count_claim")


def load_items(path: Path = HELDOUT_FILE) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _base_doc(doc_id: str) -> str:
    return doc_id.removesuffix("-en")


def score(item: dict[str, Any], answer: str, refused: bool, cited: list[str]) -> dict[str, Any]:
    """Whether one answer is right, and why not when it is not."""
    missing = [fact for fact in item["expect"] if not _fact_found(fact, answer)]
    cites = _base_doc(item["doc_id"]) in {_base_doc(d) for d in cited}
    wrong = item.get("wrong")
    names_wrong = True
    if wrong:
        names_wrong = bool(figure_mentions(wrong, answer)) and not false_figure_affirmed(answer, wrong)
    right = not refused and not missing and cites and names_wrong
    why = [] if right else [w for w, bad in (
        ("refused", refused), (f"missing {missing}", bool(missing)), ("doc not cited", not cites),
        ("wrong figure not named (negated)", not names_wrong)) if bad]
    return {"id": item["id"], "type": item["type"], "right": right, "why": "; ".join(why)}


def evaluate(kb, items: list[dict[str, Any]]) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]]]:
    """Per type: right and total; and one row per question with the answer given."""
    rows = []
    for item in items:
        answer = kb.ask(item["question"])
        row = score(item, answer.answer, answer.refused, [c.doc_id for c in answer.citations])
        row.update(question=item["question"], answer=answer.answer, refused=answer.refused,
                   cited=[c.doc_id for c in answer.citations])
        rows.append(row)
    table: dict[str, dict[str, int]] = defaultdict(lambda: {"right": 0, "total": 0})
    for row in rows:
        table[row["type"]]["total"] += 1
        table[row["type"]]["right"] += int(row["right"])
    return dict(table), rows


def _knowledge_base():
    from assistant.core.settings import Settings  # noqa: PLC0415 - heavy, needed by the command only
    from assistant.knowledge import KnowledgeBase, shipped_documents  # noqa: PLC0415

    settings = Settings()
    kb = KnowledgeBase(settings)
    if not kb.is_built():
        kb.build(shipped_documents(settings))
    return kb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=HELDOUT_FILE,
                        help="questions to score (default: heldout.jsonl)")
    parser.add_argument("--json", type=Path, help="write every row (question, answer, verdict) here")
    parser.add_argument("--type", choices=TYPES, help="only this type")
    args = parser.parse_args(argv)
    items = [i for i in load_items(args.dataset) if args.type in (None, i["type"])]
    table, rows = evaluate(_knowledge_base(), items)
    for row in rows:
        if not row["right"]:
            print(f"  x {row['id']} {row['question']} -> {row['why']}\n      {row['answer'][:160]!r}")
    for kind in TYPES:
        if kind in table:
            print(f"{kind:16} {table[kind]['right']}/{table[kind]['total']}")
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
