"""Hybrid retrieval: jieba BM25 + dense vectors in FAISS, fused by reciprocal rank fusion,
filtered by region/category/effective date, optionally reranked by a cross-encoder. The steps are
the components of knowledge_base/retrieval_components.py; `HybridRetriever.search` composes them."""

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
from knowledge_base.retrieval_components import (
    Bm25Retriever,
    ChunkLabels,
    DenseRetriever,
    RankFusion,
    Ranking,
    RerankStep,
    StatuteBoosts,
)
from knowledge_base.retrieval_components import top_positions as top_positions  # re-exported: eval/baseline.py
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


class HybridRetriever:
    """Hybrid search over the loaded index, composed of the steps in
    knowledge_base/retrieval_components.py: Bm25Retriever, DenseRetriever (the question, and a
    long question's asking sentence), RankFusion, StatuteBoosts, then RerankStep. The steps are
    built from the retriever's settings and models at each search."""

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
        self._labels_cache: tuple[LoadedIndex, ChunkLabels] | None = None

    def prepare(self, question: str, law_names: list[str] | None = None) -> PreparedQuery:
        """The question as every step reads it: normalised, its lexical form, its language and the
        statutes it names (`law_names`: the loaded index's, when not given). Prepared once per
        answer: the answerer hands this to `search`, which does not prepare it again."""
        normalized, lexical = normalize_query(question, self.lexicon)
        if law_names is None:
            law_names = self._labels(self.store.load()).statutes
        named = named_laws(normalized, law_names)
        return PreparedQuery(question, normalized, lexical, detect_language(question), named,
                             bool(named) or asks_for_law(normalized))

    def _labels(self, index: LoadedIndex) -> ChunkLabels:
        """Each chunk's category, language and statute; computed once per loaded index."""
        if self._labels_cache is None or self._labels_cache[0] is not index:
            self._labels_cache = (index, ChunkLabels.of(index))
        return self._labels_cache[1]

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
        return DenseRetriever.place(sims, index.row_positions(row_ids), len(index.chunks))

    def search(
        self, question: str | PreparedQuery, k: int = 10, filters: SearchFilters | None = None,
        mode: Mode = "hybrid",
    ) -> list[Hit]:
        """The k best chunks for a question (or a question `prepare` has already read)."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        index = self.store.load()
        labels = self._labels(index)
        query = question if isinstance(question, PreparedQuery) else self.prepare(question, labels.statutes)
        mask = self._allowed(index, filters or SearchFilters())
        limit = max(self.settings.candidates, k)
        hybrid = mode in ("hybrid", "hybrid_rerank")
        none = Ranking.empty(len(index.chunks))

        bm25 = Bm25Retriever(limit).run(index.bm25, tokenize(query.lexical), mask) if mode != "dense" else none
        dense_retriever = DenseRetriever(self.embedder, limit)
        dense = dense_retriever.run(query.normalized, index, mask) if mode != "bm25" else none
        # A long question is mostly scenario ("李军是一名现役军人，因执行任务时受伤……") around one
        # asking sentence; that sentence gets a dense ranking of its own in the fusion.
        focus = focus_sentence(query.normalized, self.settings.focus_min_chars)
        focused = dense_retriever.run(focus, index, mask) if hybrid and focus and self.settings.focus_weight > 0 \
            else none

        if hybrid:
            fused = RankFusion.from_settings(
                self.settings, [self.settings.bm25_weight, self.settings.dense_weight, self.settings.focus_weight],
            ).run([bm25.positions, dense.positions, focused.positions])
            fused = StatuteBoosts.from_settings(self.settings).run(
                fused, labels, query.language, query.named_laws, query.asks_for_law)
        else:  # one ranking alone, unweighted and unboosted
            fused = RankFusion.from_settings(self.settings).run([bm25.positions if mode == "bm25" else dense.positions])

        hits = self._hits(index, fused, bm25, dense if mode != "bm25" else None,
                          max(k, self.rerank_top_n) if mode == "hybrid_rerank" else k)
        if mode == "hybrid_rerank":
            hits = RerankStep(self.reranker, self.rerank_top_n).run(query.normalized, hits)
        return hits[:k]

    @staticmethod
    def _hits(index: LoadedIndex, fused: dict[int, float], bm25: Ranking, dense: Ranking | None,
              count: int) -> list[Hit]:
        """The `count` best fused positions as hits (equal scores in the order fusion met them),
        with their BM25 and dense ranks and scores (no dense score when dense ranking was off)."""
        bm25_pos = {pos: r for r, pos in enumerate(bm25.positions)}
        dense_pos = {pos: r for r, pos in enumerate(dense.positions)} if dense is not None else {}
        order = sorted(fused, key=lambda p: -fused[p])
        return [
            Hit(
                chunk=index.chunks[pos],
                meta=index.metas[index.chunks[pos].doc_id],
                score=fused[pos],
                bm25_rank=bm25_pos.get(pos),
                dense_rank=dense_pos.get(pos),
                dense_score=float(dense.scores[pos]) if dense is not None else None,
                extras={"bm25_score": float(bm25.scores[pos])},
            )
            for pos in order[:count]
        ]


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
