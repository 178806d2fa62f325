"""Evaluation harness: retrieval side by side (BM25, dense, hybrid, hybrid+rerank), then answer
quality (key-fact accuracy, refusal precision/recall, ungrounded numerals) and latency."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from assistant.core.domain import Document, DocumentMeta
from assistant.core.settings import Settings
from assistant.knowledge import KnowledgeBase
from knowledge_base.answering import ungrounded_numerals
from knowledge_base.loaders import iter_law_articles
from knowledge_base.retrieval import MODES, unique_docs
from knowledge_base.store import INDEX_FORMAT

GOLDEN_DIR = Path(__file__).resolve().parent / "datasets" / "golden"
KS = (1, 5, 10)


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


def evaluate_answers(kb, questions: list[dict[str, Any]]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    latencies: list[float] = []
    rows: list[dict[str, Any]] = []
    tp = fp = fn = 0
    fact_scores: list[float] = []
    ungrounded = 0
    for item in questions:
        started = time.perf_counter()
        answer = kb.ask(item["question"])
        latencies.append(time.perf_counter() - started)
        should_refuse = not item.get("answerable", True)
        if answer.refused and should_refuse:
            tp += 1
        elif answer.refused:
            fp += 1
        elif should_refuse:
            fn += 1
        facts = item.get("key_facts") or []
        if facts:
            # A refusal may still carry the grounded part ("标准由当地规定[1]"), so facts are
            # looked for in whatever text the resident receives.
            fact_scores.append(sum(_fact_found(f, answer.answer) for f in facts) / len(facts))
        bad: list[str] = []
        if not answer.refused:
            sources = [c.text for c in answer.citations] + [c.title for c in answer.citations] + [item["question"]]
            bad = ungrounded_numerals(answer.answer, sources)
            ungrounded += len(bad)
        rows.append({"id": item["id"], "question": item["question"], "refused": answer.refused,
                     "expected_refusal": should_refuse, "confidence": answer.confidence, "answer": answer.answer,
                     "citations": [c.doc_id for c in answer.citations], "ungrounded": bad,
                     "expected_doc_ids": item.get("expected_doc_ids", [])})
    metrics = {
        "fact_accuracy": statistics.fmean(fact_scores) if fact_scores else 0.0,
        "refusal_precision": tp / (tp + fp) if tp + fp else 1.0,
        "refusal_recall": tp / (tp + fn) if tp + fn else 1.0,
        "false_refusals": float(fp),
        "ungrounded_numerals": float(ungrounded),
        "latency_p50_ms": percentile(latencies, 0.5) * 1000,
        "latency_p95_ms": percentile(latencies, 0.95) * 1000,
        "questions": float(len(questions)),
    }
    return metrics, rows


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
    questions = load_golden()
    if split != "all":
        questions = [q for q in questions if split_of(q["id"]) == split]
    if limit:
        questions = questions[:limit]
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
    table = Table(title=f"golden — answers ({len(questions)} questions, "
                  f"{sum(not q.get('answerable', True) for q in questions)} unanswerable)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in answers.items():
        table.add_row(key, f"{value:.3f}" if value < 100 or "ms" not in key else f"{value:.0f}")
    console.print(table)
    report["answers"] = answers
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


def run_external(settings: Settings, path: Path, limit: int | None = None, console: Console | None = None,
                 split: str = "all") -> dict[str, Any]:
    """Side-by-side retrieval table on a BEIR-style dataset nobody here wrote."""
    console = console or Console()
    path = Path(path)
    queries = {q["_id"]: q["text"] for q in _read_jsonl(path / "queries.jsonl")}
    qrels: dict[str, set[str]] = {}
    for row in _read_jsonl(path / "qrels.jsonl"):
        if float(row.get("score", 1)) > 0:
            # The same article in another version of the law is the same answer.
            relevant = {row["doc_id"], *row.get("other_versions_same_article", [])}
            qrels.setdefault(row["query_id"], set()).update(relevant)
    items = [{"id": qid, "question": queries[qid], "expected_doc_ids": sorted(rel)} for qid, rel in qrels.items()
             if qid in queries]
    if split != "all":
        items = [i for i in items if split_of(i["id"]) == split]
    if limit:
        items = items[:limit]
    digest = hashlib.sha256((path / "corpus.jsonl").read_bytes() + INDEX_FORMAT.encode()).hexdigest()[:12]
    ext_settings = settings.model_copy(update={"index_dir": settings.data_dir / "eval" / f"index-{path.name}-{digest}"})
    kb = KnowledgeBase(ext_settings)
    started = time.perf_counter()
    if not kb.is_built():
        kb.build(_external_documents(path))
    build_seconds = time.perf_counter() - started
    retrieval = evaluate_retrieval(kb, items)
    print_retrieval_table(console, f"{path.name}", retrieval, len(items))
    return {"dataset": str(path), "split": split, "questions": len(items), "retrieval": retrieval,
            "index_build_seconds": build_seconds}
