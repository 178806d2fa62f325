"""The steps of hybrid retrieval (knowledge_base/retrieval_components.py), each on a small index or
rankings made by hand: what each takes and gives, its parameter checks, and its serialisation."""

from __future__ import annotations

from pathlib import Path

import bm25s
import faiss
import numpy as np
import pytest

from assistant.core.domain import Chunk, DocumentMeta, Hit
from assistant.core.settings import RetrievalSettings
from knowledge_base.retrieval_components import (
    Bm25Retriever,
    ChunkLabels,
    DenseRetriever,
    RankFusion,
    Ranking,
    RerankStep,
    StatuteBoosts,
    top_positions,
)
from knowledge_base.store import LoadedIndex

# Four chunks: a local elderly-care policy, a medical-insurance policy, the labour contract law in
# Chinese, and an English elderly-care page; their words, and unit vectors along three axes.
DOCS = [
    ("kmy-elderly", "克拉玛依高龄津贴", "elderly_care", "zh", ["高龄", "津贴", "老人"], [1.0, 0.0, 0.0]),
    ("nat-medins", "城乡居民医保", "medical_insurance", "zh", ["医保", "缴费"], [0.0, 1.0, 0.0]),
    ("law-contract", "《劳动合同法》（2012年修正）", "law", "zh", ["劳动", "合同", "试用期"], [0.0, 0.0, 1.0]),
    ("kmy-elderly-en", "Old-age allowance", "elderly_care", "en", ["老人", "allowance"], [0.8, 0.6, 0.0]),
]
ROW_IDS = np.array([10, 11, 12, 13], dtype=np.int64)


@pytest.fixture(scope="module")
def index() -> LoadedIndex:
    metas = {doc_id: DocumentMeta(doc_id, title, category, "karamay", "test", None, None, "1", language)
             for doc_id, title, category, language, _, _ in DOCS}
    chunks = [Chunk(f"{doc_id}::0", doc_id, "1", 0, (title,), " ".join(words), 0, 1)
              for doc_id, title, _, _, words, _ in DOCS]
    vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(3))
    vectors.add_with_ids(np.array([v for *_, v in DOCS], dtype=np.float32), ROW_IDS)
    bm25 = bm25s.BM25()
    bm25.index([words for *_, words, _ in DOCS], show_progress=False)
    return LoadedIndex(generation=1, chunks=chunks, metas=metas, faiss_index=vectors, bm25=bm25,
                       positions={int(r): i for i, r in enumerate(ROW_IDS)}, directory=Path("."))


class AxisEmbedder:
    """A question's vector: the unit vector it was given (texts not listed point nowhere)."""

    name = "axes-3"
    dim = 3

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.asked: list[str] = []

    def embed_queries(self, texts):
        self.asked.extend(texts)
        return np.array([self.vectors.get(t, [0.0, 0.0, 0.0]) for t in texts], dtype=np.float32)

    def embed_passages(self, texts):
        return self.embed_queries(texts)


class LengthReranker:
    """Scores a passage by its length: the longest first."""

    name = "by-length"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def score(self, query, passages):
        self.calls.append((query, list(passages)))
        return [float(len(p)) for p in passages]


ALL = np.ones(len(DOCS), dtype=bool)


# --- top_positions ---------------------------------------------------------------------------

def test_top_positions_best_first_ties_in_position_order_and_positive_only() -> None:
    scores = np.array([0.5, 2.0, 0.0, 2.0, -np.inf, 1.0])
    assert top_positions(scores, 10, positive_only=False) == [1, 3, 5, 0, 2]
    assert top_positions(scores, 10, positive_only=True) == [1, 3, 5, 0]
    assert top_positions(scores, 2, positive_only=True) == [1, 3]
    assert top_positions(scores, 0, positive_only=False) == []


# --- Bm25Retriever ---------------------------------------------------------------------------

def test_bm25_ranks_only_chunks_sharing_a_word_and_keeps_every_score(index: LoadedIndex) -> None:
    ranking = Bm25Retriever(top_k=10).run(index.bm25, ["老人", "津贴"], ALL)
    assert ranking.positions == [0, 3]  # both say 老人; only the first says 津贴 too
    assert ranking.scores.dtype == np.float32 and ranking.scores.shape == (4,)
    assert ranking.scores[0] > ranking.scores[3] > 0
    assert ranking.scores[1] == ranking.scores[2] == 0


def test_bm25_mask_and_top_k(index: LoadedIndex) -> None:
    not_first = np.array([False, True, True, True])
    ranking = Bm25Retriever(top_k=10).run(index.bm25, ["老人", "津贴"], not_first)
    assert ranking.positions == [3]
    assert ranking.scores[0] > 0  # masked chunks keep their score; they are only not ranked
    # 老人 alone: the shorter chunk first (BM25 normalises by length).
    assert Bm25Retriever(top_k=1).run(index.bm25, ["老人"], ALL).positions == [3]
    assert Bm25Retriever(top_k=1).run(index.bm25, ["老人"], ALL, top_k=5).positions == [3, 0]


def test_bm25_without_tokens_ranks_nothing(index: LoadedIndex) -> None:
    ranking = Bm25Retriever().run(index.bm25, [], ALL)
    assert ranking.positions == [] and np.array_equal(ranking.scores, np.zeros(4, dtype=np.float32))


def test_bm25_serialises_and_checks_top_k() -> None:
    data = Bm25Retriever(top_k=7).to_dict()
    assert data == {"type": "knowledge_base.retrieval_components.Bm25Retriever", "init_parameters": {"top_k": 7}}
    assert Bm25Retriever.from_dict(data).top_k == 7
    with pytest.raises(ValueError, match="top_k"):
        Bm25Retriever(top_k=-1)
    with pytest.raises(ValueError, match="cannot build"):
        Bm25Retriever.from_dict({**data, "type": "knowledge_base.retrieval_components.RankFusion"})


# --- DenseRetriever --------------------------------------------------------------------------

def test_dense_ranks_by_similarity_and_places_scores_by_row_id(index: LoadedIndex) -> None:
    embedder = AxisEmbedder({"老人": [1.0, 0.0, 0.0], "医保": [0.0, 1.0, 0.0]})
    dense = DenseRetriever(embedder, top_k=2)
    ranking = dense.run("老人", index, ALL)
    assert ranking.positions == [0, 3]
    assert ranking.scores == pytest.approx([1.0, 0.0, 0.0, 0.8])
    # The same retriever ranks a second text (the focus sentence) with its own vector.
    assert dense.run("医保", index, ALL).positions == [1, 3]
    assert embedder.asked == ["老人", "医保"]


def test_dense_mask_and_top_k(index: LoadedIndex) -> None:
    dense = DenseRetriever(AxisEmbedder({"老人": [1.0, 0.0, 0.0]}), top_k=1)
    assert dense.run("老人", index, np.array([False, True, True, True])).positions == [3]
    assert dense.run("老人", index, ALL, top_k=4).positions == [0, 3, 1, 2]  # ties in position order


def test_dense_on_an_empty_index_embeds_nothing() -> None:
    embedder = AxisEmbedder({})
    ranking = DenseRetriever(embedder).run("老人", None, np.zeros(0, dtype=bool))  # type: ignore[arg-type]
    assert ranking.positions == [] and ranking.scores.shape == (0,)
    assert embedder.asked == []


def test_dense_place_skips_ids_faiss_did_not_fill() -> None:
    scores = DenseRetriever.place(np.array([0.9, 0.5, 0.1], dtype=np.float32), np.array([2, -1, 0]), 4)
    assert scores.tolist() == pytest.approx([0.1, 0.0, 0.9, 0.0])


def test_dense_serialises_its_embedder_by_name() -> None:
    embedder = AxisEmbedder({})
    data = DenseRetriever(embedder, top_k=5).to_dict()
    assert data["init_parameters"] == {"embedder": "axes-3", "top_k": 5}
    back = DenseRetriever.from_dict(data, embedder)
    assert back.embedder is embedder and back.top_k == 5
    other = AxisEmbedder({})
    other.name = "another-model"
    with pytest.raises(ValueError, match="another-model"):
        DenseRetriever.from_dict(data, other)


# --- RankFusion ------------------------------------------------------------------------------

def test_fusion_sums_reciprocal_ranks_in_first_met_order() -> None:
    fused = RankFusion(k=60).run([[7, 3, 5], [3, 9]])
    assert list(fused) == [7, 3, 5, 9]
    assert fused[3] == pytest.approx(1 / 62 + 1 / 61)  # second in one ranking, first in the other
    assert fused[7] == pytest.approx(1 / 61)
    assert fused[9] == pytest.approx(1 / 62)
    assert max(fused, key=lambda p: fused[p]) == 3


def test_fusion_weights_and_k() -> None:
    rankings = [[1, 2], [2, 1]]
    even = RankFusion(k=0).run(rankings)
    assert even[1] == even[2] == pytest.approx(1 / 1 + 1 / 2)
    weighted = RankFusion(k=0, weights=[2.0, 1.0]).run(rankings)
    assert weighted[1] == pytest.approx(2 / 1 + 1 / 2) and weighted[2] == pytest.approx(2 / 2 + 1 / 1)
    # Weights given to run() win over the component's own; a weight of 0 keeps the positions at 0.
    assert RankFusion(k=0, weights=[2.0, 1.0]).run([[4], [5]], weights=[0.0, 1.0]) == {4: 0.0, 5: 1.0}
    # A larger k flattens the difference between ranks.
    small, large = RankFusion(k=1).run([[1, 2]]), RankFusion(k=100).run([[1, 2]])
    assert small[1] / small[2] > large[1] / large[2]


def test_fusion_of_one_ranking_is_its_reciprocal_ranks_exactly() -> None:
    # bm25 and dense modes fuse their one ranking alone: exactly 1 / (k + rank + 1).
    assert RankFusion(k=60).run([[4, 2]]) == {4: 1.0 / 61, 2: 1.0 / 62}
    assert RankFusion().run([]) == {}


def test_fusion_checks_its_parameters_and_serialises() -> None:
    with pytest.raises(ValueError, match="2 weights for 3 rankings"):
        RankFusion(weights=[1.0, 1.0]).run([[1], [2], [3]])
    with pytest.raises(ValueError, match="k must be"):
        RankFusion(k=-1)
    fusion = RankFusion.from_settings(RetrievalSettings(rrf_k=20), [1.0, 0.5])
    data = fusion.to_dict()
    assert data["init_parameters"] == {"k": 20, "weights": [1.0, 0.5]}
    back = RankFusion.from_dict(data)
    assert back.run([[1, 2], [2]]) == fusion.run([[1, 2], [2]])


# --- StatuteBoosts ---------------------------------------------------------------------------

def test_chunk_labels_name_each_law_chunks_statute(index: LoadedIndex) -> None:
    labels = ChunkLabels.of(index)
    assert labels.category == ["elderly_care", "medical_insurance", "law", "elderly_care"]
    assert labels.language == ["zh", "zh", "zh", "en"]
    assert labels.statute == [None, None, "劳动合同法", None]
    assert labels.statutes == ["劳动合同法"]


def test_a_law_chunk_is_demoted_unless_the_question_asks_for_the_law(index: LoadedIndex) -> None:
    labels, boosts = ChunkLabels.of(index), StatuteBoosts.from_settings(RetrievalSettings())
    scores = {2: 1.0, 0: 1.0}
    plain = boosts.run(scores, labels, "zh", [], asks_for_law=False)
    assert plain == pytest.approx({2: 0.7 * 1.3, 0: 1.3})
    assert max(plain, key=lambda p: plain[p]) == 0  # the local policy outranks the statute
    asked = boosts.run(scores, labels, "zh", [], asks_for_law=True)
    assert asked == pytest.approx({2: 1.0 * 1.3, 0: 1.3})
    assert list(plain) == [2, 0] and scores == {2: 1.0, 0: 1.0}  # order kept, input untouched


def test_a_named_statute_is_boosted_and_the_questions_language_preferred(index: LoadedIndex) -> None:
    labels = ChunkLabels.of(index)
    boosts = StatuteBoosts(law_weight=0.7, law_intent_weight=1.0, named_law_boost=1.5, same_language_boost=1.3)
    named = boosts.run({2: 1.0, 0: 1.0}, labels, "zh", ["劳动合同法"], asks_for_law=True)
    assert named[2] == pytest.approx(1.0 * 1.5 * 1.3) and named[2] > named[0]
    other = boosts.run({2: 1.0}, labels, "zh", ["社会保险法"], asks_for_law=True)
    assert other[2] == pytest.approx(1.3)
    english = boosts.run({0: 1.0, 3: 1.0}, labels, "en", [], asks_for_law=False)
    assert english == pytest.approx({0: 1.0, 3: 1.3})


def test_boosts_check_their_parameters_and_serialise() -> None:
    with pytest.raises(ValueError, match="named_law_boost"):
        StatuteBoosts(named_law_boost=-1.0)
    boosts = StatuteBoosts.from_settings(RetrievalSettings(law_weight=0.5, same_language_boost=1.1))
    data = boosts.to_dict()
    assert data["init_parameters"] == {"law_weight": 0.5, "law_intent_weight": 1.0, "named_law_boost": 1.5,
                                       "same_language_boost": 1.1}
    assert StatuteBoosts.from_dict(data).to_dict() == data


# --- RerankStep ------------------------------------------------------------------------------

def _hits(index: LoadedIndex, order: list[int]) -> list[Hit]:
    return [Hit(chunk=index.chunks[p], meta=index.metas[index.chunks[p].doc_id], score=1.0 / (i + 1))
            for i, p in enumerate(order)]


def test_rerank_reorders_the_head_only(index: LoadedIndex) -> None:
    reranker = LengthReranker()
    hits = _hits(index, [1, 0, 2, 3])  # texts of 5, 8, 9 and 12 characters
    out = RerankStep(reranker, top_n=3).run("问题", hits)
    assert [h.chunk.doc_id for h in out] == ["law-contract", "kmy-elderly", "nat-medins", "kmy-elderly-en"]
    assert reranker.calls == [("问题", [index.chunks[p].text for p in (1, 0, 2)])]
    assert [h.extras.get("rerank_score") for h in out] == [9.0, 8.0, 5.0, None]


def test_rerank_without_a_reranker_or_hits_changes_nothing(index: LoadedIndex) -> None:
    hits = _hits(index, [1, 0])
    assert RerankStep(None).run("问题", hits) == hits
    reranker = LengthReranker()
    assert RerankStep(reranker).run("问题", []) == [] and reranker.calls == []


def test_rerank_serialises_its_reranker_by_name() -> None:
    reranker = LengthReranker()
    data = RerankStep(reranker, top_n=8).to_dict()
    assert data["init_parameters"] == {"reranker": "by-length", "top_n": 8}
    assert RerankStep.from_dict(data, reranker).top_n == 8
    with pytest.raises(ValueError, match="by-length"):
        RerankStep.from_dict(data, None)
    assert RerankStep.from_dict(RerankStep(None).to_dict(), None).reranker is None


def test_an_empty_ranking_has_a_zero_score_per_chunk() -> None:
    none = Ranking.empty(3)
    assert none.positions == [] and none.scores.tolist() == [0.0, 0.0, 0.0]
