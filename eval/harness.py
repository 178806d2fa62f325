"""Evaluation harness: retrieval side by side (BM25, dense, hybrid, hybrid+rerank), then answer
quality (key-fact accuracy, refusal precision/recall, ungrounded numerals) and latency."""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from assistant.core.domain import Document, DocumentMeta
from assistant.core.settings import Settings
from assistant.knowledge import KnowledgeBase
from eval.baseline import BigramDenseBaseline
from knowledge_base.answering import ungrounded_numerals
from knowledge_base.loaders import iter_law_articles
from knowledge_base.retrieval import MODES, unique_docs
from knowledge_base.store import INDEX_FORMAT

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
GOLDEN_DIR = DATASETS_DIR / "golden"
KS = (1, 5, 10)
_ARTICLE_NUMBER_RE = re.compile(r"^第[一二三四五六七八九十百千零〇]+条\s*")


# ---- datasets -----------------------------------------------------------------------------

def load_golden(directory: Path = GOLDEN_DIR) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                items.append(json.loads(line))
    ids = [i["id"] for i in items]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate golden ids: {sorted(duplicates)[:5]}")
    return items


def with_throwaway_database(settings: Settings, folder: Path) -> Settings:
    """The conversations and tickets an evaluation creates go to a database in `folder`."""
    return settings.model_copy(update={"database_url": f"sqlite:///{folder / 'eval.sqlite'}"})


def golden_questions(split: str = "all", limit: int | None = None) -> list[dict[str, Any]]:
    """The golden questions of one half ('dev', 'test') or 'all', the first `limit` of them."""
    questions = [q for q in load_golden() if split == "all" or split_of(q["id"]) == split]
    return questions[:limit] if limit else questions


def split_of(item_id: str) -> str:
    """Deterministic half split: 'dev' (for calibration and tuning) or 'test'."""
    return "dev" if int(hashlib.sha256(item_id.encode()).hexdigest(), 16) % 2 == 0 else "test"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- metrics ------------------------------------------------------------------------------

def retrieval_metrics(rankings: Sequence[Sequence[str]], relevant: Sequence[Iterable[str]]) -> dict[str, float]:
    """Document-level metrics. recall@k is the share of questions with a relevant document in
    the top k (with one relevant document per question, the usual recall@k)."""
    n = len(rankings)
    if n == 0:
        return {f"recall@{k}": 0.0 for k in KS} | {"mrr": 0.0, "ndcg@10": 0.0}
    sums = {f"recall@{k}": 0.0 for k in KS} | {"mrr": 0.0, "ndcg@10": 0.0}
    for ranking, rel in zip(rankings, relevant, strict=True):
        rel = set(rel)
        first = next((i for i, d in enumerate(ranking) if d in rel), None)
        for k in KS:
            sums[f"recall@{k}"] += 1.0 if first is not None and first < k else 0.0
        sums["mrr"] += 1.0 / (first + 1) if first is not None else 0.0
        dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranking[:10]) if d in rel)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), 10)))
        sums["ndcg@10"] += dcg / ideal if ideal else 0.0
    return {k: v / n for k, v in sums.items()}


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _fact_found(fact: str, answer: str) -> bool:
    squeeze = lambda s: "".join(s.split()).lower()  # noqa: E731
    return squeeze(fact) in squeeze(answer)


# ---- runs ---------------------------------------------------------------------------------

def _available_modes(kb) -> list[str]:
    return [m for m in MODES if m != "hybrid_rerank" or kb.reranker is not None]


def evaluate_retrieval(kb, questions: list[dict[str, Any]], k: int = 10) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    answerable = [q for q in questions if q.get("expected_doc_ids")]
    for mode in _available_modes(kb):
        rankings = []
        for item in answerable:
            hits = kb.search(item["question"], k=k * 3, mode=mode)
            rankings.append(unique_docs(hits)[:k])
        results[mode] = retrieval_metrics(rankings, [q["expected_doc_ids"] for q in answerable])
    return results


def answer_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Answer metrics of scored rows (from `evaluate_answers`), so that a split's metrics come from
    the same answers as the whole set's."""
    tp = sum(r["refused"] and r["expected_refusal"] for r in rows)
    fp = sum(r["refused"] and not r["expected_refusal"] for r in rows)
    fn = sum(not r["refused"] and r["expected_refusal"] for r in rows)
    fact_scores = [r["fact_score"] for r in rows if r.get("fact_score") is not None]
    latencies = [r["latency_ms"] for r in rows]
    return {
        "fact_accuracy": statistics.fmean(fact_scores) if fact_scores else 0.0,
        "refusal_precision": tp / (tp + fp) if tp + fp else 1.0,
        "refusal_recall": tp / (tp + fn) if tp + fn else 1.0,
        "false_refusals": float(fp),
        "ungrounded_numerals": float(sum(len(r["ungrounded"]) for r in rows)),
        "latency_p50_ms": percentile(latencies, 0.5),
        "latency_p95_ms": percentile(latencies, 0.95),
        "questions": float(len(rows)),
    }


def evaluate_answers(kb, questions: list[dict[str, Any]]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    for item in questions:
        started = time.perf_counter()
        answer = kb.ask(item["question"])
        latency_ms = (time.perf_counter() - started) * 1000
        should_refuse = not item.get("answerable", True)
        facts = item.get("key_facts") or []
        # A refusal may still carry the grounded part ("标准由当地规定[1]"), so facts are
        # looked for in whatever text the resident receives.
        score = sum(_fact_found(f, answer.answer) for f in facts) / len(facts) if facts else None
        bad: list[str] = []
        if not answer.refused:
            sources = [c.text for c in answer.citations] + [c.title for c in answer.citations] + [item["question"]]
            bad = ungrounded_numerals(answer.answer, sources)
        rows.append({"id": item["id"], "split": split_of(item["id"]), "question": item["question"],
                     "refused": answer.refused, "expected_refusal": should_refuse, "confidence": answer.confidence,
                     "answer": answer.answer, "citations": [c.doc_id for c in answer.citations], "ungrounded": bad,
                     "expected_doc_ids": item.get("expected_doc_ids", []), "fact_score": score,
                     "latency_ms": latency_ms})
    return answer_metrics(rows), rows


def print_retrieval_table(console: Console, title: str, results: dict[str, dict[str, float]], n: int) -> None:
    table = Table(title=f"{title} — retrieval ({n} questions)")
    table.add_column("metric")
    for mode in MODES:
        table.add_column(mode.replace("_", "+"), justify="right")
    for metric in next(iter(results.values())):
        table.add_row(metric, *[f"{results[m][metric]:.3f}" if m in results else "n/a" for m in MODES])
    console.print(table)
    if "hybrid_rerank" not in results:
        console.print("hybrid+rerank: n/a — no reranker configured (set LINLI_RERANKER__NAME=cross_encoder and "
                      "LINLI_RERANKER__MODEL_PATH to a local cross-encoder directory)", style="dim")


def run_golden(kb, limit: int | None = None, console: Console | None = None,
               split: str = "all") -> dict[str, Any]:
    console = console or Console()
    questions = golden_questions(split, limit)
    report: dict[str, Any] = {"dataset": "golden", "split": split}
    for language in ("zh", "en"):
        subset = [q for q in questions if q.get("language", "zh") == language]
        if not subset:
            continue
        retrieval = evaluate_retrieval(kb, subset)
        n = sum(1 for q in subset if q.get("expected_doc_ids"))
        print_retrieval_table(console, f"golden {language}", retrieval, n)
        report[f"retrieval_{language}"] = retrieval
    answers, rows = evaluate_answers(kb, questions)
    by_split = {part: answer_metrics([r for r in rows if r["split"] == part]) for part in ("dev", "test")
                if any(r["split"] == part for r in rows)}
    table = Table(title=f"golden — answers ({len(questions)} questions, "
                  f"{sum(not q.get('answerable', True) for q in questions)} unanswerable; tune on dev only)")
    table.add_column("metric")
    for part in by_split:
        table.add_column(part, justify="right")
    table.add_column("all", justify="right")
    for key, value in answers.items():
        cells = [m[key] for m in by_split.values()] + [value]
        table.add_row(key, *[f"{v:.0f}" if "ms" in key else f"{v:.3f}" for v in cells])
    console.print(table)
    report["answers"] = answers
    report["answers_by_split"] = by_split
    report["rows"] = rows
    report["reranker"] = kb.reranker.name if kb.reranker else None
    report["embedder"] = kb.embedder.name
    return report


def _external_documents(path: Path) -> list[Document]:
    corpus = path / "corpus.jsonl"
    first = json.loads(corpus.open(encoding="utf-8").readline())
    if "law" in first and "article" in first:
        return list(iter_law_articles(corpus))
    docs = []
    for row in _read_jsonl(corpus):
        meta = DocumentMeta(doc_id=str(row["_id"]), title=str(row.get("title") or ""), category="community_services",
                            region="national", source=path.name, effective_from=None, effective_to=None,
                            version="1", language="zh")
        docs.append(Document(meta=meta, body=str(row["text"]).strip() + "\n"))
    return docs


def is_shipped_law_corpus(settings: Settings, path: Path) -> bool:
    """Whether a dataset's corpus is the statute corpus the shipped index already holds (same
    bytes, so its `_id`s are the index's doc ids: knowledge_base.loaders.iter_law_articles)."""
    shipped = settings.law_corpus
    corpus = Path(path) / "corpus.jsonl"
    return bool(shipped and shipped.is_file() and corpus.is_file()
                and shipped.stat().st_size == corpus.stat().st_size
                and shipped.read_bytes() == corpus.read_bytes())


def recorded_split(path: Path) -> dict[str, str]:
    """query id -> 'tune' | 'heldout' for a dataset whose held-out part was cut and recorded in
    eval/datasets/<name>/split.json (seed and ids), else {}."""
    recorded = DATASETS_DIR / Path(path).name / "split.json"
    if not recorded.is_file():
        return {}
    heldout = set(json.loads(recorded.read_text(encoding="utf-8"))["heldout"])
    queries = _read_jsonl(Path(path) / "queries.jsonl")
    return {str(q["_id"]): "heldout" if q["_id"] in heldout else "tune" for q in queries}


def _external_items(path: Path) -> list[dict[str, Any]]:
    """Queries with three golds: `exact` (the qrels' document ids), `expected_doc_ids` (also the
    article of the same number in another version of the law, as the qrels name it) and
    `same_text` (exact, plus the article of another version with the same text, whatever its
    number: see same_text_versions)."""
    queries = {q["_id"]: q["text"] for q in _read_jsonl(path / "queries.jsonl")}
    exact: dict[str, set[str]] = {}
    versions: dict[str, set[str]] = {}
    for row in _read_jsonl(path / "qrels.jsonl"):
        if float(row.get("score", 1)) > 0:
            exact.setdefault(row["query_id"], set()).add(row["doc_id"])
            versions.setdefault(row["query_id"], set()).update(
                {row["doc_id"], *row.get("other_versions_same_article", [])})
    same = same_text_versions(_read_jsonl(path / "corpus.jsonl"), {d for ids in exact.values() for d in ids})
    return [{"id": qid, "question": queries[qid], "exact": sorted(exact[qid]), "expected_doc_ids": sorted(rel),
             "same_text": sorted(exact[qid] | {m for d in exact[qid] for m in same.get(d, ())})}
            for qid, rel in versions.items() if qid in queries]


def same_text_versions(corpus: list[dict[str, Any]], doc_ids: set[str], threshold: float = 0.5) -> dict[str, set[str]]:
    """For each statute article in `doc_ids`, the article of each other version of its law whose
    text is most alike (character-bigram Jaccard >= threshold, the article's number left out).
    A revision that renumbers a law (慈善法 2023, 妇女权益保障法 2022) moves an article to another
    number, and the article that keeps the old number is another article: the qrels'
    `other_versions_same_article` pair by number."""
    def bigrams(text: str) -> set[str]:
        text = _ARTICLE_NUMBER_RE.sub("", text)
        return {text[i : i + 2] for i in range(len(text) - 1)}

    rows = {str(r["_id"]): r for r in corpus if "law" in r and "version" in r}
    by_version: dict[tuple[str, str], list[str]] = {}
    for doc_id, row in rows.items():
        by_version.setdefault((str(row["law"]), str(row["version"])), []).append(doc_id)
    grams = {d: bigrams(str(rows[d]["text"])) for d in rows}
    found: dict[str, set[str]] = {}
    for doc_id in doc_ids & set(rows):
        law, version = str(rows[doc_id]["law"]), str(rows[doc_id]["version"])
        for (other_law, other_version), ids in by_version.items():
            if other_law != law or other_version == version:
                continue
            score, best = max((len(grams[doc_id] & grams[d]) / max(1, len(grams[doc_id] | grams[d])), d) for d in ids)
            if score >= threshold:
                found.setdefault(doc_id, set()).add(best)
    return found


def _baseline(path: Path, kb) -> BigramDenseBaseline:
    """The plain baseline over the dataset's corpus: each document's title and text."""
    docs = [(str(row["_id"]), f"{row.get('title') or ''} {row['text']}".strip())
            for row in _read_jsonl(path / "corpus.jsonl")]
    return BigramDenseBaseline(docs, kb.embedder, kb.cache)


def _timed_rankings(search: Callable[[str], list[str]], items: list[dict[str, Any]],
                    embedder: Any = None) -> tuple[list[list[str]], float]:
    """Each item's ranking, and the mean milliseconds per query (warm: one query is asked first,
    untimed, so that loading the index and the model is not counted; the embedder's memo of
    recent texts is emptied, so that no row reuses the question vectors of the row before)."""
    if items:
        search(items[0]["question"])
    recent = getattr(embedder, "_recent", None)
    if recent is not None:
        recent.clear()
    rankings: list[list[str]] = []
    started = time.perf_counter()
    for item in items:
        rankings.append(search(item["question"]))
    return rankings, (time.perf_counter() - started) * 1000 / max(1, len(items))


def _anchor_rows(kb, baseline: BigramDenseBaseline | None, items: list[dict[str, Any]], k: int = 10,
                 ) -> tuple[dict[str, dict[str, float]], dict[str, list[list[str]]]]:
    """Per row (the baseline, then each product mode): MRR and R@10 by both counting rules
    (exact document ids; other versions of an article counted) and ms/query; and the rankings."""
    searches: dict[str, Callable[[str], list[str]]] = {}
    if baseline is not None:
        searches["baseline"] = lambda q: baseline.search(q, k)
    for mode in _available_modes(kb):
        searches[mode] = lambda q, mode=mode: unique_docs(kb.search(q, k=k * 3, mode=mode))[:k]
    rows: dict[str, dict[str, float]] = {}
    rankings: dict[str, list[list[str]]] = {}
    for name, search in searches.items():
        ranked, ms = _timed_rankings(search, items, getattr(kb, "embedder", None))
        exact = retrieval_metrics(ranked, [i["exact"] for i in items])
        versions = retrieval_metrics(ranked, [i["expected_doc_ids"] for i in items])
        same = retrieval_metrics(ranked, [i.get("same_text", i["exact"]) for i in items])
        rows[name] = {"mrr_exact": exact["mrr"], "recall@10_exact": exact["recall@10"],
                      "mrr_versions": versions["mrr"], "recall@10_versions": versions["recall@10"],
                      "mrr_same_text": same["mrr"], "recall@10_same_text": same["recall@10"],
                      "ms_per_query": ms}
        rankings[name] = ranked
    return rows, rankings


def print_anchor_table(console: Console, title: str, rows: dict[str, dict[str, float]], n: int) -> None:
    table = Table(title=f"{title} ({n} queries; exact: the qrels' article ids; versions: also the article of "
                        "the same number in another version (the qrels' pairs); same text: also the article of "
                        "another version with the same text, whatever its number)")
    table.add_column("row")
    for column in ("MRR exact", "R@10 exact", "MRR versions", "R@10 versions", "MRR same text",
                   "R@10 same text", "ms/query"):
        table.add_column(column, justify="right")
    for name, m in rows.items():
        label = BigramDenseBaseline.name if name == "baseline" else f"Linli {name.replace('_', '+')}"
        table.add_row(label, *[f"{m[key]:.3f}" for key in ("mrr_exact", "recall@10_exact", "mrr_versions",
                                                           "recall@10_versions", "mrr_same_text",
                                                           "recall@10_same_text")], f"{m['ms_per_query']:.0f}")
    console.print(table)


def _first_hit(ranking: Sequence[str], gold: Iterable[str]) -> int | None:
    gold = set(gold)
    return next((i + 1 for i, d in enumerate(ranking) if d in gold), None)


def run_external(settings: Settings, path: Path, limit: int | None = None, console: Console | None = None,
                 split: str = "all", whole_index: bool | None = None, kb=None,
                 baseline: bool = True) -> dict[str, Any]:
    """Retrieval on a BEIR-style dataset nobody here wrote: the plain baseline (eval/baseline.py)
    as an anchor row above the product's modes, by both counting rules, with ms/query.

    `whole_index` searches the shipped index (policy documents and statutes together, as a
    resident searches) instead of an index of the dataset's corpus alone; by default it does
    so when the dataset's corpus is the shipped law corpus. Splits: "dev", "test" (the hashed
    halves), "tune", "heldout" (a split recorded in eval/datasets/<name>/split.json), "all", or
    "each": tune, heldout and all where a split is recorded, else dev, test and all."""
    console = console or Console()
    path = Path(path)
    if whole_index is None:
        whole_index = is_shipped_law_corpus(settings, path)
    items = _external_items(path)
    recorded = recorded_split(path)
    part_of = lambda item_id: recorded.get(item_id) or split_of(item_id)  # noqa: E731
    if split in ("tune", "heldout") and not recorded:
        raise ValueError(f"no recorded tune/heldout split for {path.name} (eval/datasets/{path.name}/split.json)")
    if split not in ("all", "each"):
        items = [i for i in items if (recorded.get(i["id"]) if split in ("tune", "heldout") else split_of(i["id"]))
                 == split]
    if limit:
        items = items[:limit]
    started = time.perf_counter()
    if kb is None and whole_index:
        kb = KnowledgeBase(settings)
        if not kb.is_built():
            kb.build()
    elif kb is None:
        digest = hashlib.sha256((path / "corpus.jsonl").read_bytes() + INDEX_FORMAT.encode()).hexdigest()[:12]
        kb = KnowledgeBase(settings.model_copy(
            update={"index_dir": settings.data_dir / "eval" / f"index-{path.name}-{digest}"}))
        if not kb.is_built():
            kb.build(_external_documents(path))
    build_seconds = time.perf_counter() - started
    if whole_index:
        known = set(kb.store.load().metas)
        missing = {d for i in items for d in i["expected_doc_ids"]} - known
        if missing:
            raise ValueError(f"{len(missing)} qrels doc ids are not in the index, e.g. {sorted(missing)[:3]}")
    anchor = _baseline(path, kb) if baseline else None
    scope = "whole index" if whole_index else "dataset corpus only"
    report: dict[str, Any] = {"dataset": str(path), "split": split, "whole_index": whole_index,
                              "index_build_seconds": build_seconds}
    if recorded:
        report["recorded_split"] = str(DATASETS_DIR / path.name / "split.json")
    if split == "each":
        parts: tuple[str, ...] = ("tune", "heldout", "all") if recorded else ("dev", "test", "all")
    else:
        parts = (split,)
    for part in parts:
        subset = items if part == "all" else [
            i for i in items if (part_of(i["id"]) if part in ("tune", "heldout") else split_of(i["id"])) == part]
        rows, rankings = _anchor_rows(kb, anchor, subset)
        print_anchor_table(console, f"{path.name} {part} (Linli: {scope}; baseline: dataset corpus)", rows,
                           len(subset))
        report[part] = {"questions": len(subset), "rows": rows, "queries": [
            {"id": item["id"], "question": item["question"], "exact": item["exact"],
             "versions": item["expected_doc_ids"], "same_text": item["same_text"],
             **{f"rank_{name}": _first_hit(ranked[n], item["expected_doc_ids"]) for name, ranked in rankings.items()},
             "top_hybrid": rankings["hybrid"][n][:3]}
            for n, item in enumerate(subset)]}
    if split != "each":
        report |= report.pop(split)
    return report
