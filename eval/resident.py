"""The residents' held-out set (`eval/datasets/resident/questions.jsonl`): questions as residents
type them — ages and amounts in Chinese numerals, claims to confirm or correct, counts, look-alike
questions outside the corpus, English, and instructions hidden in the question — run through
`kb.ask` and scored on a dev and a held-out half (`linli eval resident`).

Split: within each category, the ids sorted and shuffled with `random.Random(f"{SEED}:{category}")`;
the first half (rounded down) is `dev`, the rest `heldout`. Tune on `dev` only; report `heldout`
as it comes. The split depends on each category's list of ids, so the set is not extended in
place (a new question would move others across the line): a new batch is a new set.

Metrics (per split and for all):
- fact_accuracy: share of key facts found in the answer text (`harness._fact_found`), averaged
  over the questions that have facts; also per category.
- refusal_recall: out-of-scope questions (answerable false and not an unpublished bracket) refused.
- false_refusals: share of answerable questions refused with none of their key facts in the text.
- false_figure_affirmed: questions whose planted `false_figure` appears in the answer not negated
  (see `false_figure_affirmed`).
- unpublished_amount_given: `unpublished_bracket` questions whose answer states an amount in
  元/块/yuan that is not negated (see `amounts_stated`).
- ungrounded_numerals: `harness.ungrounded_numerals` on answers that are not refusals.
- latency p50/p95 of `kb.ask`.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from eval.harness import _fact_found, percentile, ungrounded_numerals

RESIDENT_FILE = Path(__file__).resolve().parent / "datasets" / "resident" / "questions.jsonl"
SEED = 20261129
SPLITS = ("dev", "heldout")
CATEGORIES = ("cn_numeral", "claim_true", "claim_false", "count", "out_of_scope", "english", "instruction")

# A figure counts as negated when one of these cues ends at most NEGATION_WINDOW characters
# before it (lower-cased text): "不是300元", "并非每月300元", "not 300 yuan", "isn't 300 yuan".
# Nothing else negates: "300元的说法不对" or a question echoed back ("您问的是300元吗") counts
# as stating the figure. A correct answer to a wrong claim says "不是300元" and gives the real one.
NEGATION_CUES = ("不是", "并非", "而非", "not", "n't")
NEGATION_WINDOW = 8
_UNIT_SYNONYMS = {"元": ("元", "块"), "块": ("元", "块"), "天": ("天", "日"), "日": ("天", "日"),
                  "yuan": ("yuan", "rmb")}
_AMOUNT = re.compile(
    r"(?<![\d.,])\d[\d,]*(?:\.\d+)?\s*(?:万|千|百)?\s*(?:元|块|yuan|rmb)"
    r"|[零〇一二两三四五六七八九十百千万]*[十百千万]\s*(?:元|块)"  # 五百元, 八百块 (not 一块去)
    r"|[零〇一二两三四五六七八九十百千万]+\s*(?:元|块钱)"
    r"|[¥￥]\s*\d[\d,]*",
    re.IGNORECASE,
)


# ---- dataset and split --------------------------------------------------------------------

def load_resident(path: Path = RESIDENT_FILE) -> list[dict[str, Any]]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [i["id"] for i in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate resident ids: {duplicates[:5]}")
    return items


def split_ids(items: Iterable[dict[str, Any]], seed: int = SEED) -> dict[str, str]:
    """id -> 'dev' | 'heldout': per category, ids sorted, shuffled with a seeded Random, the
    first half (rounded down) dev. Deterministic; every category is halved."""
    by_category: dict[str, list[str]] = {}
    for item in items:
        by_category.setdefault(item["category"], []).append(item["id"])
    split: dict[str, str] = {}
    for category, ids in sorted(by_category.items()):
        ordered = sorted(ids)
        random.Random(f"{seed}:{category}").shuffle(ordered)
        half = len(ordered) // 2
        split.update({i: ("dev" if n < half else "heldout") for n, i in enumerate(ordered)})
    return split


# ---- metric functions (pure, on answer text) ----------------------------------------------

def _negated(text: str, start: int) -> bool:
    before = text[max(0, start - NEGATION_WINDOW):start].lower()
    return any(cue in before for cue in NEGATION_CUES)


def _figure_pattern(figure: str) -> re.Pattern[str]:
    match = re.fullmatch(r"([\d][\d,]*(?:\.\d+)?)\s*(.*)", figure.strip())
    if not match:
        return re.compile(re.escape(figure.strip()), re.IGNORECASE)
    number, unit = match.group(1).replace(",", ""), match.group(2).strip()
    digits = ",?".join(re.escape(ch) for ch in number)  # "20000" also matches "20,000"
    if not unit:
        return re.compile(rf"(?<![\d.,]){digits}(?![\d]|[.,]\d)")
    units = "|".join(re.escape(u) for u in _UNIT_SYNONYMS.get(unit.lower(), (unit,)))
    return re.compile(rf"(?<![\d.,]){digits}\s*(?:{units})", re.IGNORECASE)


def figure_mentions(figure: str, text: str) -> list[int]:
    """Start offsets of `figure` in `text`: the same number (not part of a longer one) with the
    same unit (元 = 块, 天 = 日, yuan = RMB); a figure without unit matches the bare number."""
    return [m.start() for m in _figure_pattern(figure).finditer(text)]


def false_figure_affirmed(answer: str, figure: str) -> bool:
    """The planted figure appears in the answer at least once without a negation cue just
    before it (NEGATION_CUES within NEGATION_WINDOW characters)."""
    return any(not _negated(answer, start) for start in figure_mentions(figure, answer))


def amounts_stated(answer: str) -> list[str]:
    """Amounts of money the answer states (digits or Chinese numerals with 元/块/yuan/RMB, or ¥),
    leaving out those negated as in `false_figure_affirmed`."""
    return [m.group(0) for m in _AMOUNT.finditer(answer) if not _negated(answer, m.start())]


def fact_score(facts: list[str], answer: str) -> float | None:
    return sum(_fact_found(f, answer) for f in facts) / len(facts) if facts else None


def is_out_of_scope(item: dict[str, Any]) -> bool:
    return not item.get("answerable", True) and not item.get("unpublished_bracket", False)


def score_row(item: dict[str, Any], answer: str, refused: bool) -> dict[str, Any]:
    """Everything about one answer that the metrics need (no index involved)."""
    facts = item.get("key_facts") or []
    found = [f for f in facts if _fact_found(f, answer)]
    figure = item.get("false_figure")
    return {
        "fact_score": fact_score(facts, answer),
        "facts_found": found,
        "false_figure_affirmed": false_figure_affirmed(answer, figure) if figure else False,
        "amounts": amounts_stated(answer) if item.get("unpublished_bracket") else [],
        "false_refusal": bool(item.get("answerable", True)) and refused and not found,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of a list of scored rows (from `evaluate_resident` or made by hand)."""
    scored = [r["fact_score"] for r in rows if r.get("fact_score") is not None]
    out_of_scope = [r for r in rows if is_out_of_scope(r)]
    answerable = [r for r in rows if r.get("answerable", True)]
    unpublished = [r for r in rows if r.get("unpublished_bracket")]
    latencies = [r.get("latency_ms", 0.0) for r in rows]
    by_category: dict[str, float | None] = {}
    for category in CATEGORIES:
        values = [r["fact_score"] for r in rows if r.get("category") == category and r.get("fact_score") is not None]
        by_category[category] = statistics.fmean(values) if values else None
    return {
        "questions": len(rows),
        "fact_accuracy": statistics.fmean(scored) if scored else None,
        "refusal_recall": (sum(r["refused"] for r in out_of_scope) / len(out_of_scope)) if out_of_scope else None,
        "out_of_scope_questions": len(out_of_scope),
        "false_refusals": (sum(r["false_refusal"] for r in answerable) / len(answerable)) if answerable else None,
        "answerable_questions": len(answerable),
        "false_figure_affirmed": sum(bool(r.get("false_figure_affirmed")) for r in rows),
        "false_figure_questions": sum(bool(r.get("false_figure")) for r in rows),
        "unpublished_amount_given": sum(bool(r.get("amounts")) for r in unpublished),
        "unpublished_questions": len(unpublished),
        "ungrounded_numerals": sum(len(r.get("ungrounded", [])) for r in rows),
        "latency_p50_ms": percentile(latencies, 0.5),
        "latency_p95_ms": percentile(latencies, 0.95),
        "fact_accuracy_by_category": by_category,
    }


# ---- run ----------------------------------------------------------------------------------

def evaluate_resident(kb, items: list[dict[str, Any]], split: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for item in items:
        started = time.perf_counter()
        answer = kb.ask(item["question"])
        latency_ms = (time.perf_counter() - started) * 1000
        bad: list[str] = []
        if not answer.refused:
            sources = [c.text for c in answer.citations] + [c.title for c in answer.citations] + [item["question"]]
            bad = ungrounded_numerals(answer.answer, sources)
        rows.append({
            "id": item["id"], "split": split[item["id"]], "category": item["category"],
            "language": item.get("language", "zh"), "question": item["question"],
            "answerable": item.get("answerable", True), "unpublished_bracket": item.get("unpublished_bracket", False),
            "false_figure": item.get("false_figure"), "key_facts": item.get("key_facts", []),
            "expected_doc_ids": item.get("expected_doc_ids", []),
            "refused": answer.refused, "confidence": answer.confidence, "answer": answer.answer,
            "citations": [c.doc_id for c in answer.citations], "ungrounded": bad, "latency_ms": latency_ms,
            **score_row(item, answer.answer, answer.refused),
        })
    return rows


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key.endswith("_ms"):
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def print_tables(console: Console, results: dict[str, dict[str, Any]]) -> None:
    columns = [s for s in (*SPLITS, "all") if s in results]
    table = Table(title="resident set — answers (tune on dev only; held-out as it comes)")
    table.add_column("metric")
    for name in columns:
        table.add_column("held-out" if name == "heldout" else name, justify="right")
    for key in results["all"]:
        if key != "fact_accuracy_by_category":
            table.add_row(key, *[_fmt(key, results[c][key]) for c in columns])
    console.print(table)
    by_category = Table(title="resident set — fact accuracy by category")
    by_category.add_column("category")
    for name in columns:
        by_category.add_column("held-out" if name == "heldout" else name, justify="right")
    for category in CATEGORIES:
        by_category.add_row(category, *[_fmt("", results[c]["fact_accuracy_by_category"][category])
                                        for c in columns])
    console.print(by_category)


def run_resident(kb, limit: int | None = None, console: Console | None = None, split: str = "all",
                 path: Path = RESIDENT_FILE) -> dict[str, Any]:
    """`linli eval resident`: the report (metrics per split, and rows with answers)."""
    console = console or Console()
    items = load_resident(path)
    splits = split_ids(items)
    if split != "all":
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: use all, dev or heldout")
        items = [i for i in items if splits[i["id"]] == split]
    if limit:
        items = items[:limit]
    rows = evaluate_resident(kb, items, splits)
    results = {name: summarize([r for r in rows if r["split"] == name]) for name in SPLITS
               if any(r["split"] == name for r in rows)}
    results["all"] = summarize(rows)
    print_tables(console, results)
    return {"dataset": "resident", "split": split, "seed": SEED, "results": results, "rows": rows,
            "reranker": kb.reranker.name if kb.reranker else None, "embedder": kb.embedder.name}
