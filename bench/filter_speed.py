"""Retrieval's per-query bookkeeping at 3,000 and 300,000 chunks (issue 30): the search filters
(region, category, language, in force on a day) and the placing of FAISS's similarities at the
chunks' positions, before (a Python loop over every chunk, as `HybridRetriever` did until issue 30)
and after (comparisons over the loaded index's per-chunk codes, `LoadedIndex.attribute_codes`).
The masks and scores of both are checked to be equal, then timed. Synthetic chunks: 40 regions,
12 categories, 2 languages, a tenth of documents expired; 4 chunks a document.

    .venv/bin/python -m bench.filter_speed [--sizes 3000 300000] [--queries 20]

A measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import date, timedelta

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from assistant.core.domain import Chunk, DocumentMeta, SearchFilters
from knowledge_base.retrieval import HybridRetriever
from knowledge_base.store import LoadedIndex

DIM = 64  # the placing cost does not depend on the vectors' width; a small one keeps 300k in memory


def synthetic_index(n_chunks: int, seed: int = 7) -> LoadedIndex:
    rng = random.Random(seed)
    metas: dict[str, DocumentMeta] = {}
    chunks: list[Chunk] = []
    today = date.today()
    for d in range(n_chunks // 4):
        expired = rng.random() < 0.1
        meta = DocumentMeta(
            doc_id=f"doc-{d}", title=f"文档{d}", category=f"cat-{rng.randrange(12)}",
            region="national" if rng.random() < 0.2 else f"region-{rng.randrange(40)}", source="bench",
            effective_from=today - timedelta(days=rng.randrange(3000)),
            effective_to=today - timedelta(days=1) if expired else None, version="1",
            language="en" if rng.random() < 0.1 else "zh")
        metas[meta.doc_id] = meta
        chunks.extend(Chunk(f"doc-{d}-{i}", meta.doc_id, "1", i, (meta.title,), "正文", 0, 2) for i in range(4))
    vectors = np.random.default_rng(seed).standard_normal((len(chunks), DIM)).astype(np.float32)
    faiss.normalize_L2(vectors)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    row_ids = np.arange(1, len(chunks) + 1, dtype=np.int64)
    index.add_with_ids(vectors, row_ids)
    return LoadedIndex(generation=1, chunks=chunks, metas=metas, faiss_index=index, bm25=None,  # type: ignore[arg-type]
                       positions={int(r): i for i, r in enumerate(row_ids)}, directory=None)  # type: ignore[arg-type]


def loop_mask(index: LoadedIndex, filters: SearchFilters) -> np.ndarray:
    """The filters as HybridRetriever._allowed computed them before issue 30."""
    on = filters.as_of or date.today()
    mask = np.ones(len(index.chunks), dtype=bool)
    for pos, chunk in enumerate(index.chunks):
        meta = index.metas[chunk.doc_id]
        if (
            (filters.region and meta.region not in (filters.region, "national"))
            or (filters.category and meta.category != filters.category)
            or (filters.language and meta.language != filters.language)
            or (not filters.include_expired and not meta.in_force(on))
        ):
            mask[pos] = False
    return mask


def loop_scores(index: LoadedIndex, sims: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """FAISS's similarities placed chunk by chunk, as search() did before issue 30."""
    scores = np.zeros(len(index.chunks), dtype=np.float32)
    for sim, row_id in zip(sims, ids, strict=True):
        if row_id >= 0:
            scores[index.positions[int(row_id)]] = sim
    return scores


def _ms(fn, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) * 1000 / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 300000])
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    table = Table(title="ms per query (mean)")
    for column in ("chunks", "filters: loop", "filters: codes", "placing: loop", "placing: vector",
                   "FAISS search itself"):
        table.add_column(column, justify="right")
    filters = SearchFilters(region="region-3", category="cat-5", language="zh")
    for n in args.sizes:
        index = synthetic_index(n)
        query = np.random.default_rng(1).standard_normal((1, DIM)).astype(np.float32)
        faiss.normalize_L2(query)
        sims, ids = index.faiss_index.search(query, len(index.chunks))
        assert np.array_equal(loop_mask(index, filters), HybridRetriever._allowed(index, filters))
        placed = HybridRetriever._dense_scores(index, sims[0], ids[0])
        assert np.array_equal(loop_scores(index, sims[0], ids[0]), placed)
        HybridRetriever._allowed(index, filters)  # the codes are built once per loaded index, not per query
        repeats = max(2, args.queries if n <= 10000 else args.queries // 4)
        table.add_row(
            f"{n:,}",
            f"{_ms(lambda: loop_mask(index, filters), repeats):.2f}",  # noqa: B023 - timed at once
            f"{_ms(lambda: HybridRetriever._allowed(index, filters), repeats):.2f}",  # noqa: B023
            f"{_ms(lambda: loop_scores(index, sims[0], ids[0]), repeats):.2f}",  # noqa: B023
            f"{_ms(lambda: HybridRetriever._dense_scores(index, sims[0], ids[0]), repeats):.2f}",  # noqa: B023
            f"{_ms(lambda: index.faiss_index.search(query, len(index.chunks)), repeats):.2f}",  # noqa: B023
        )
    Console().print(table)


if __name__ == "__main__":
    main()
