"""The plain statute-retrieval baseline of issue 31, an anchor row for `linli eval --dataset`.

Character-bigram BM25 (bm25s) and the product's dense embedder over the dataset's corpus alone,
fused by reciprocal rank (k = 60): no tuning, no boosts, no filters (every version of a law is
searched), exact document ids. Whatever the product's retrieval does must beat this."""

from __future__ import annotations

import re
from collections.abc import Sequence

import bm25s
import numpy as np

from knowledge_base.embedders import Embedder, EmbeddingCache
from knowledge_base.retrieval import top_positions

RRF_K = 60
DEPTH = 100
_RUN_RE = re.compile(r"[\u4e00-\u9fff]+|[0-9a-z]+")


def char_bigrams(text: str) -> list[str]:
    """Character bigrams of each run of Chinese characters (a one-character run stays a unigram)
    and lower-cased ASCII words/numbers whole."""
    tokens: list[str] = []
    for run in _RUN_RE.findall(text.lower()):
        if run[0].isascii() or len(run) == 1:
            tokens.append(run)
        else:
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


class BigramDenseBaseline:
    """Bigram BM25 + dense, RRF k = 60, over `(doc_id, text)` pairs."""

    name = "baseline: bigram BM25 + dense, RRF 60"

    def __init__(self, docs: Sequence[tuple[str, str]], embedder: Embedder, cache: EmbeddingCache) -> None:
        self.ids = [doc_id for doc_id, _ in docs]
        texts = [text for _, text in docs]
        self.embedder = embedder
        self.bm25 = bm25s.BM25()
        self.bm25.index([char_bigrams(t) or [""] for t in texts], show_progress=False)
        self.vectors = cache.embed_passages(embedder, texts)

    def search(self, question: str, k: int = 10) -> list[str]:
        """The ids of the `k` best documents, best first."""
        depth = min(DEPTH, len(self.ids))
        fused: dict[int, float] = {}
        tokens = char_bigrams(question)
        if tokens:
            scores = np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)
            for rank, pos in enumerate(top_positions(scores, depth, positive_only=True)):
                fused[pos] = fused.get(pos, 0.0) + 1.0 / (RRF_K + rank + 1)
        sims = self.vectors @ self.embedder.embed_queries([question])[0]
        for rank, pos in enumerate(top_positions(sims, depth, positive_only=False)):
            fused[pos] = fused.get(pos, 0.0) + 1.0 / (RRF_K + rank + 1)
        order = sorted(fused, key=lambda p: (-fused[p], p))
        return [self.ids[p] for p in order[:k]]


