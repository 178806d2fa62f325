"""The steps of hybrid retrieval as small components, in the manner of Haystack 2.x: each has one
`run()` with declared inputs and outputs, checks its parameters when built, and serialises them
with `to_dict()` / `from_dict()` (`{"type": ..., "init_parameters": {...}}`). A model a step holds
(the embedder, the reranker) is serialised by its name and handed back to `from_dict`, which
refuses one of another name.

`HybridRetriever.search` (knowledge_base/retrieval.py) composes them in this order:

    Bm25Retriever ─┐
    DenseRetriever ├─► RankFusion ─► StatuteBoosts ─► (hits) ─► RerankStep
    DenseRetriever ┘   (focus sentence)

Rankings are positions into the loaded index's `chunks`, best first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

import faiss
import numpy as np

from assistant.core.domain import Hit
from assistant.core.settings import RetrievalSettings
from knowledge_base.embedders import Embedder
from knowledge_base.rerankers import Reranker
from knowledge_base.store import LoadedIndex

# A statute's short name: the 《…》 its law document's title opens with.
_LAW_TITLE_RE = re.compile(r"《([^》]+)》")


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


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _to_dict(component: object, **init_parameters: Any) -> dict[str, Any]:
    return {"type": _type_name(type(component)), "init_parameters": init_parameters}


def _init_parameters(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get("type") != _type_name(cls):
        raise ValueError(f"cannot build {_type_name(cls)} from a serialised {data.get('type')!r}")
    return dict(data.get("init_parameters", {}))


def _model_name(model: Embedder | Reranker | None) -> str | None:
    return model.name if model is not None else None


def _check_model(kind: str, serialised: str | None, given: Embedder | Reranker | None) -> None:
    if serialised != _model_name(given):
        raise ValueError(f"serialised with the {kind} {serialised!r}, given {_model_name(given)!r}")


def _check_top_k(top_k: int) -> None:
    if top_k < 0:
        raise ValueError(f"top_k must be 0 or more, got {top_k}")


@dataclass(frozen=True)
class Ranking:
    """A retriever's output: chunk positions, best first, and every chunk's score (one per chunk
    of the index, float32; 0 for a chunk the retriever did not score)."""

    positions: list[int]
    scores: np.ndarray

    @classmethod
    def empty(cls, size: int) -> Ranking:
        """No ranking: what a retriever the mode leaves out contributes."""
        return cls([], np.zeros(size, dtype=np.float32))


class Bm25Scorer(Protocol):
    """What Bm25Retriever reads of the index's BM25 (`bm25s.BM25`)."""

    def get_scores(self, query_tokens: list[str], /) -> np.ndarray: ...


class VectorIndex(Protocol):
    """What DenseRetriever reads of a loaded index (`LoadedIndex`)."""

    faiss_index: faiss.Index

    def row_positions(self, row_ids: np.ndarray) -> np.ndarray: ...


class Bm25Retriever:
    """Lexical ranking.

    Takes: the index's BM25 scorer, the question's tokens, the filter mask (one bool per chunk)
    and optionally `top_k` for this call.
    Gives: a `Ranking` of at most `top_k` allowed chunks that share a word with the question
    (BM25 score above 0), best first, and every chunk's BM25 score (all 0 for no tokens).
    """

    def __init__(self, top_k: int = 100) -> None:
        _check_top_k(top_k)
        self.top_k = top_k

    def run(self, bm25: Bm25Scorer, tokens: list[str], mask: np.ndarray, top_k: int | None = None) -> Ranking:
        if not tokens:
            return Ranking.empty(len(mask))
        scores = np.asarray(bm25.get_scores(tokens), dtype=np.float32)
        limit = self.top_k if top_k is None else top_k
        return Ranking(top_positions(np.where(mask, scores, -np.inf), limit, positive_only=True), scores)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, top_k=self.top_k)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**_init_parameters(cls, data))


class DenseRetriever:
    """Semantic ranking by the embedder's query vector against the index's FAISS vectors; used
    for the whole question and again for a long question's asking sentence.

    Takes: a text, the loaded index (FAISS vectors, row id → position), the filter mask and
    optionally `top_k` for this call.
    Gives: a `Ranking` of at most `top_k` allowed chunks by similarity, best first, and every
    chunk's similarity (0 where FAISS returned none). An empty index is not searched.
    """

    def __init__(self, embedder: Embedder, top_k: int = 100) -> None:
        _check_top_k(top_k)
        self.embedder = embedder
        self.top_k = top_k

    def run(self, text: str, index: VectorIndex, mask: np.ndarray, top_k: int | None = None) -> Ranking:
        if not len(mask):
            return Ranking.empty(0)
        vector = self.embedder.embed_queries([text])
        sims, row_ids = index.faiss_index.search(vector, len(mask))
        scores = self.place(sims[0], index.row_positions(row_ids[0]), len(mask))
        limit = self.top_k if top_k is None else top_k
        return Ranking(top_positions(np.where(mask, scores, -np.inf), limit, positive_only=False), scores)

    @staticmethod
    def place(sims: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
        """FAISS's similarities at their chunks' positions (vectorised; position -1 is skipped)."""
        scores = np.zeros(size, dtype=np.float32)
        found = positions >= 0
        scores[positions[found]] = sims[found]
        return scores

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, embedder=self.embedder.name, top_k=self.top_k)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], embedder: Embedder) -> Self:
        params = _init_parameters(cls, data)
        _check_model("embedder", params.pop("embedder", None), embedder)
        return cls(embedder, **params)


class RankFusion:
    """Weighted reciprocal rank fusion (Cormack et al., 2009), like Haystack's `DocumentJoiner` in
    `reciprocal_rank_fusion` mode but with the weights as given (not normalised) and no
    normalisation of the sum.

    Takes: rankings (positions, best first) and optionally one weight per ranking for this call.
    Gives: each position's fused score, the sum over the rankings that hold it of
    `weight / (k + rank + 1)` (rank from 0), in the order positions are first met (the rankings
    in turn). A ranking with weight 0 still adds its positions, with nothing to their score.
    """

    def __init__(self, k: int = 60, weights: Sequence[float] | None = None) -> None:
        if k < 0:
            raise ValueError(f"k must be 0 or more, got {k}")
        self.k = k
        self.weights = list(weights) if weights is not None else None

    @classmethod
    def from_settings(cls, settings: RetrievalSettings, weights: Sequence[float] | None = None) -> Self:
        return cls(settings.rrf_k, weights)

    def run(self, rankings: Sequence[Sequence[int]], weights: Sequence[float] | None = None) -> dict[int, float]:
        weights = weights if weights is not None else self.weights
        if weights is None:
            weights = [1.0] * len(rankings)
        if len(weights) != len(rankings):
            raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
        fused: dict[int, float] = {}
        for ranking, weight in zip(rankings, weights, strict=True):
            for rank, pos in enumerate(ranking):
                fused[pos] = fused.get(pos, 0.0) + weight / (self.k + rank + 1)
        return fused

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, k=self.k, weights=self.weights)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**_init_parameters(cls, data))


@dataclass(frozen=True)
class ChunkLabels:
    """What StatuteBoosts reads of each chunk, by position: its document's category and language,
    and the statute it belongs to (the short name in its law document's title 《…》, else None);
    built once per loaded index."""

    category: list[str]
    language: list[str]
    statute: list[str | None]
    # The statutes' names, sorted.
    statutes: list[str]

    @classmethod
    def of(cls, index: LoadedIndex) -> ChunkLabels:
        category: list[str] = []
        language: list[str] = []
        statute: list[str | None] = []
        for chunk in index.chunks:
            meta = index.metas[chunk.doc_id]
            category.append(meta.category)
            language.append(meta.language)
            found = _LAW_TITLE_RE.match(meta.title) if meta.category == "law" else None
            statute.append(found.group(1) if found else None)
        return cls(category, language, statute, sorted({name for name in statute if name}))


class StatuteBoosts:
    """Local policy documents answer a resident more directly than a statute does, unless the
    question asks what the law says or names a statute; and documents in the question's
    language are preferred.

    Takes: fused scores by position, the chunks' labels, the question's language, the statutes it
    names and whether it asks for the law.
    Gives: the scores (same positions, same order), a law chunk's multiplied by `law_weight`
    (`law_intent_weight` when the question asks for the law) and, if its statute is named, by
    `named_law_boost` too; then a chunk in the question's language by `same_language_boost`.
    """

    def __init__(self, law_weight: float = 0.7, law_intent_weight: float = 1.0, named_law_boost: float = 1.5,
                 same_language_boost: float = 1.3) -> None:
        for name, value in (("law_weight", law_weight), ("law_intent_weight", law_intent_weight),
                            ("named_law_boost", named_law_boost), ("same_language_boost", same_language_boost)):
            if not value >= 0:
                raise ValueError(f"{name} must be 0 or more, got {value}")
        self.law_weight = law_weight
        self.law_intent_weight = law_intent_weight
        self.named_law_boost = named_law_boost
        self.same_language_boost = same_language_boost

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> Self:
        return cls(settings.law_weight, settings.law_intent_weight, settings.named_law_boost,
                   settings.same_language_boost)

    def run(self, scores: Mapping[int, float], labels: ChunkLabels, language: str, named_laws: Sequence[str],
            asks_for_law: bool) -> dict[int, float]:
        law_weight = self.law_intent_weight if asks_for_law else self.law_weight
        boosted: dict[int, float] = {}
        for pos, score in scores.items():
            if labels.category[pos] == "law":
                score *= law_weight
                if labels.statute[pos] in named_laws:
                    score *= self.named_law_boost
            if labels.language[pos] == language:
                score *= self.same_language_boost
            boosted[pos] = score
        return boosted

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, law_weight=self.law_weight, law_intent_weight=self.law_intent_weight,
                        named_law_boost=self.named_law_boost, same_language_boost=self.same_language_boost)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**_init_parameters(cls, data))


class RerankStep:
    """The cross-encoder's second opinion on the head of the list.

    Takes: the question and the hits, best first.
    Gives: the first `top_n` hits ordered by the reranker's score (each hit's
    `extras["rerank_score"]` set; equal scores keep their order), then the rest as they were.
    Without a reranker, or without hits, the hits as they were.
    """

    def __init__(self, reranker: Reranker | None, top_n: int = 20) -> None:
        _check_top_k(top_n)
        self.reranker = reranker
        self.top_n = top_n

    def run(self, question: str, hits: list[Hit]) -> list[Hit]:
        if self.reranker is None or not hits:
            return hits
        head = hits[: self.top_n]
        scores = self.reranker.score(question, [h.chunk.text for h in head])
        for hit, score in zip(head, scores, strict=True):
            hit.extras["rerank_score"] = score
        return sorted(head, key=lambda h: -h.extras["rerank_score"]) + hits[self.top_n :]

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, reranker=_model_name(self.reranker), top_n=self.top_n)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], reranker: Reranker | None) -> Self:
        params = _init_parameters(cls, data)
        _check_model("reranker", params.pop("reranker", None), reranker)
        return cls(reranker, **params)
