"""Hybrid retrieval: jieba BM25 + dense vectors in FAISS, fused by reciprocal rank fusion,
filtered by region/category/effective date, optionally reranked by a cross-encoder."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
from knowledge_base.store import IndexReader, LoadedIndex
from knowledge_base.text import Lexicon, detect_language, normalize_query, split_sentences, tokenize

Mode = Literal["bm25", "dense", "hybrid", "hybrid_rerank"]
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid", "hybrid_rerank")


@dataclass
class PreparedQuery:
    raw: str
    normalized: str
    lexical: str
    language: str
    # Statutes the question names (《劳动合同法》, "按照劳动法…"), by their short names.
    named_laws: list[str] = field(default_factory=list)
    # The question asks what the law says ("根据法律规定，…", "依据哪条法律…").
    asks_for_law: bool = False


# "根据法律规定" / "根据相关法律" / "依据哪条法律" / "法律依据" / "《…》" / "第十条": the resident asks
# what a statute says, so statutes are not demoted below local policy documents. "法律援助" and
# "法律费用保险" are services, not such a cue.
_LAW_CUE_RE = re.compile(
    r"法律规定|法律法规|(相关|有关)(法律|法规)|(根据|依据|按照|依照)(什么|哪些|哪项)?(法律|法规)"
    r"|(根据|依据|按照|依照).{0,6}?(法|条例|办法)(的)?(规定|第|，|,)"
    r"|哪(一)?(条|个|部|些)(法|规定|条款|条例)|法律条[款文]|法律文件|法律依据|依据哪|《[^》]+》"
    r"|第[一二三四五六七八九十百零〇\d]+条"
)
_LAW_TITLE_RE = re.compile(r"《([^》]+)》")


class HybridRetriever:
    def __init__(
        self,
        store: IndexReader,
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
        self._law_cache: tuple[LoadedIndex, list[str | None], list[str]] | None = None

    def prepare(self, question: str, law_names: list[str] | None = None) -> PreparedQuery:
        normalized, lexical = normalize_query(question, self.lexicon)
        named = named_laws(normalized, law_names or [])
        return PreparedQuery(question, normalized, lexical, detect_language(question), named,
                             bool(named) or asks_for_law(normalized))

    def _law_of_chunks(self, index: LoadedIndex) -> tuple[list[str | None], list[str]]:
        """The statute each chunk belongs to (short name from its title 《…》, None for other
        documents) and the statutes' names; computed once per loaded index."""
        if self._law_cache is not None and self._law_cache[0] is index:
            return self._law_cache[1], self._law_cache[2]
        laws: list[str | None] = []
        for chunk in index.chunks:
            meta = index.metas[chunk.doc_id]
            found = _LAW_TITLE_RE.match(meta.title) if meta.category == "law" else None
            laws.append(found.group(1) if found else None)
        names = sorted({law for law in laws if law})
        self._law_cache = (index, laws, names)
        return laws, names

    @staticmethod
    def _allowed(index: LoadedIndex, filters: SearchFilters) -> np.ndarray:
        """The chunks the filters let through, as a mask: comparisons over the index's per-chunk
        attribute codes and in-force days (built once per loaded index), never a Python loop over
        every chunk per query (bench/filter_speed.py: 3k and 300k chunks)."""
        mask = np.ones(len(index.chunks), dtype=bool)
        for name, wanted in (("region", filters.region), ("category", filters.category),
                             ("language", filters.language)):
            if not wanted:
                continue
            codes, by_value = index.attribute_codes(name)
            # A regional filter keeps national documents too: they apply everywhere.
            accepted = [by_value[v] for v in ({wanted, "national"} if name == "region" else {wanted}) if v in by_value]
            mask &= np.isin(codes, accepted)
        if not filters.include_expired:
            day = (filters.as_of or date.today()).toordinal()
            starts, ends = index.in_force_days()
            mask &= (starts <= day) & (day <= ends)
        return mask

    @staticmethod
    def _dense_scores(index: LoadedIndex, sims: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
        """FAISS's similarities placed at the chunks' positions (vectorised)."""
        scores = np.zeros(len(index.chunks), dtype=np.float32)
        positions = index.row_positions(row_ids)
        found = positions >= 0
        scores[positions[found]] = sims[found]
        return scores

    @staticmethod
    def _ranking(scores: np.ndarray, mask: np.ndarray, limit: int, positive_only: bool) -> list[int]:
        return top_positions(np.where(mask, scores, -np.inf), limit, positive_only)

    def search(
        self, question: str, k: int = 10, filters: SearchFilters | None = None, mode: Mode = "hybrid"
    ) -> list[Hit]:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        index = self.store.load()
        chunk_laws, law_names = self._law_of_chunks(index)
        query = self.prepare(question, law_names)
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
            dense_scores = self._dense_scores(index, sims[0], ids[0])
            dense_rank = self._ranking(dense_scores, mask, limit, positive_only=False)

        # A long question is mostly scenario ("李军是一名现役军人，因执行任务时受伤……") around one
        # asking sentence; that sentence gets a dense ranking of its own in the fusion.
        focus_rank: list[int] = []
        focus = focus_sentence(query.normalized, self.settings.focus_min_chars)
        if mode in ("hybrid", "hybrid_rerank") and focus and len(index.chunks) and self.settings.focus_weight > 0:
            fv = self.embedder.embed_queries([focus])
            sims, ids = index.faiss_index.search(fv, len(index.chunks))
            focus_scores = self._dense_scores(index, sims[0], ids[0])
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
            law_weight = self.settings.law_intent_weight if query.asks_for_law else self.settings.law_weight
            for pos in fused:
                meta = index.metas[index.chunks[pos].doc_id]
                if meta.category == "law":
                    fused[pos] *= law_weight
                    if chunk_laws[pos] in query.named_laws:
                        fused[pos] *= self.settings.named_law_boost
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


def top_positions(scores: np.ndarray, limit: int, positive_only: bool) -> list[int]:
    """The positions of the `limit` highest finite scores, best first (equal scores in position
    order); with `positive_only`, only scores above 0 (a BM25 score of 0 matched no word)."""
    if positive_only:
        scores = np.where(scores > 0, scores, -np.inf)
    limit = min(limit, int(np.isfinite(scores).sum()))
    if limit <= 0:
        return []
    top = np.argpartition(-scores, limit - 1)[:limit]
    return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]


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


def asks_for_law(question: str) -> bool:
    """Whether a question asks what the law says ("根据法律规定，…", "依据哪条法律", "《…》")."""
    return bool(_LAW_CUE_RE.search(question))


def named_laws(question: str, law_names: list[str]) -> list[str]:
    """The statutes a question names, longest name first; a name inside a longer one found
    ("劳动合同法" in "劳动合同法实施条例") does not count again."""
    found: list[str] = []
    for name in sorted(law_names, key=len, reverse=True):
        if name in question and not any(name in longer for longer in found):
            found.append(name)
    return found


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
