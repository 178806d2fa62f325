"""Hybrid retrieval: jieba BM25 + dense vectors in FAISS, fused by reciprocal rank fusion,
filtered by region/category/effective date, optionally reranked by a cross-encoder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from assistant.core.domain import Hit, SearchFilters
from assistant.core.settings import RetrievalSettings
from knowledge_base.embedders import Embedder
from knowledge_base.rerankers import Reranker
from knowledge_base.store import IndexStore, LoadedIndex
from knowledge_base.text import Lexicon, detect_language, normalize_query, split_sentences, tokenize

Mode = Literal["bm25", "dense", "hybrid", "hybrid_rerank"]
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid", "hybrid_rerank")


@dataclass
class PreparedQuery:
    raw: str
    normalized: str
    lexical: str
    language: str


class HybridRetriever:
    def __init__(
        self,
        store: IndexStore,
        embedder: Embedder,
        lexicon: Lexicon,
        settings: RetrievalSettings,
        reranker: Reranker | None = None,
        rerank_top_n: int = 20,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.lexicon = lexicon
        self.settings = settings
        self.reranker = reranker
        self.rerank_top_n = rerank_top_n

    def prepare(self, question: str) -> PreparedQuery:
        normalized, lexical = normalize_query(question, self.lexicon)
        return PreparedQuery(question, normalized, lexical, detect_language(question))

    def _allowed(self, index: LoadedIndex, filters: SearchFilters) -> np.ndarray:
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

    @staticmethod
    def _ranking(scores: np.ndarray, mask: np.ndarray, limit: int, positive_only: bool) -> list[int]:
        scores = np.where(mask, scores, -np.inf)
        if positive_only:
            scores = np.where(scores > 0, scores, -np.inf)
        limit = min(limit, int(np.isfinite(scores).sum()))
        if limit <= 0:
            return []
        top = np.argpartition(-scores, limit - 1)[:limit]
        return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]

    def search(
        self, question: str, k: int = 10, filters: SearchFilters | None = None, mode: Mode = "hybrid"
    ) -> list[Hit]:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        query = self.prepare(question)
        index = self.store.load()
        mask = self._allowed(index, filters or SearchFilters())
        limit = max(self.settings.candidates, k)

        bm25_rank: list[int] = []
        bm25_scores = np.zeros(len(index.chunks), dtype=np.float32)
        if mode != "dense":
            tokens = tokenize(query.lexical)
            if tokens:
                bm25_scores = np.asarray(index.bm25.get_scores(tokens), dtype=np.float32)
                bm25_rank = self._ranking(bm25_scores, mask, limit, positive_only=True)

        dense_rank: list[int] = []
        dense_scores = np.zeros(len(index.chunks), dtype=np.float32)
        if mode != "bm25" and len(index.chunks):
            qv = self.embedder.embed_queries([query.normalized])
            sims, ids = index.faiss_index.search(qv, len(index.chunks))
            for sim, row_id in zip(sims[0], ids[0], strict=True):
                if row_id >= 0:
                    dense_scores[self.store.position_of_row(int(row_id))] = sim
            dense_rank = self._ranking(dense_scores, mask, limit, positive_only=False)

        # A long question is mostly scenario ("李军是一名现役军人，因执行任务时受伤……") around one
        # asking sentence; that sentence gets a dense ranking of its own in the fusion.
        focus_rank: list[int] = []
        focus = focus_sentence(query.normalized, self.settings.focus_min_chars)
        if mode in ("hybrid", "hybrid_rerank") and focus and len(index.chunks) and self.settings.focus_weight > 0:
            fv = self.embedder.embed_queries([focus])
            focus_scores = np.zeros(len(index.chunks), dtype=np.float32)
            sims, ids = index.faiss_index.search(fv, len(index.chunks))
            for sim, row_id in zip(sims[0], ids[0], strict=True):
                if row_id >= 0:
                    focus_scores[self.store.position_of_row(int(row_id))] = sim
            focus_rank = self._ranking(focus_scores, mask, limit, positive_only=False)

        fused: dict[int, float] = {}
        rrf_k = self.settings.rrf_k
        if mode == "bm25":
            fused = {pos: 1.0 / (rrf_k + r + 1) for r, pos in enumerate(bm25_rank)}
        elif mode == "dense":
            fused = {pos: 1.0 / (rrf_k + r + 1) for r, pos in enumerate(dense_rank)}
        else:
            for r, pos in enumerate(bm25_rank):
                fused[pos] = fused.get(pos, 0.0) + self.settings.bm25_weight / (rrf_k + r + 1)
            for r, pos in enumerate(dense_rank):
                fused[pos] = fused.get(pos, 0.0) + self.settings.dense_weight / (rrf_k + r + 1)
            for r, pos in enumerate(focus_rank):
                fused[pos] = fused.get(pos, 0.0) + self.settings.focus_weight / (rrf_k + r + 1)
            for pos in fused:
                meta = index.metas[index.chunks[pos].doc_id]
                if meta.category == "law":
                    fused[pos] *= self.settings.law_weight
                if meta.language == query.language:
                    fused[pos] *= self.settings.same_language_boost

        bm25_pos = {pos: r for r, pos in enumerate(bm25_rank)}
        dense_pos = {pos: r for r, pos in enumerate(dense_rank)}
        order = sorted(fused, key=lambda p: -fused[p])
        hits = [
            Hit(
                chunk=index.chunks[pos],
                meta=index.metas[index.chunks[pos].doc_id],
                score=fused[pos],
                bm25_rank=bm25_pos.get(pos),
                dense_rank=dense_pos.get(pos),
                dense_score=float(dense_scores[pos]) if mode != "bm25" else None,
                extras={"bm25_score": float(bm25_scores[pos])},
            )
            for pos in order[: max(k, self.rerank_top_n if mode == "hybrid_rerank" else k)]
        ]
        if mode == "hybrid_rerank" and self.reranker is not None and hits:
            head = hits[: self.rerank_top_n]
            scores = self.reranker.score(query.normalized, [h.chunk.text for h in head])
            for hit, s in zip(head, scores, strict=True):
                hit.extras["rerank_score"] = s
            hits = sorted(head, key=lambda h: -h.extras["rerank_score"]) + hits[self.rerank_top_n :]
        return hits[:k]


def focus_sentence(question: str, min_chars: int) -> str | None:
    """The asking sentence of a long question (the last one ending in ？ or ?, else the last
    sentence), or None for a short question."""
    if len(question) < min_chars:
        return None
    sentences = [question[s:e].strip() for s, e in split_sentences(question)]
    sentences = [x for x in sentences if len(x) >= 4]
    if len(sentences) < 2:
        return None
    asking = [x for x in sentences if x.endswith(("？", "?"))]
    return (asking or sentences)[-1]


def unique_docs(hits: list[Hit]) -> list[str]:
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(hit.chunk.doc_id, None)
    return list(seen)


class LinliLangChainRetriever(BaseRetriever):
    """The hybrid pipeline as a LangChain retriever returning `Document`s with metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any
    k: int = 5
    filters: SearchFilters | None = None
    mode: str = "hybrid"

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        hits = self.retriever.search(query, k=self.k, filters=self.filters, mode=self.mode)
        return [
            LCDocument(
                page_content=h.chunk.text,
                metadata={
                    "doc_id": h.chunk.doc_id,
                    "chunk_id": h.chunk.chunk_id,
                    "title": h.meta.title,
                    "section": h.chunk.section,
                    "category": h.meta.category,
                    "region": h.meta.region,
                    "version": h.meta.version,
                    "language": h.meta.language,
                    "start": h.chunk.start,
                    "end": h.chunk.end,
                    "score": h.score,
                },
            )
            for h in hits
        ]
