"""The plain statute-retrieval baseline (eval/baseline.py), the anchor rows of `linli eval --dataset`
(both counting rules, ms/query) and the social_law held-out split recorded before tuning. No index."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from assistant.core.settings import PROJECT_ROOT
from eval.baseline import BigramDenseBaseline, char_bigrams
from eval.harness import (
    DATASETS_DIR,
    _anchor_rows,
    _external_items,
    print_anchor_table,
    recorded_split,
    same_text_versions,
)

SOCIAL_LAW = PROJECT_ROOT.parent / "shared" / "data" / "retrieval" / "social_law"


class BagOfCharacters:
    """A stand-in embedder: one dimension per character of a small alphabet."""

    name = "test:bag-of-characters"
    dim = 8
    alphabet = "养老工伤失业"

    def _embed(self, texts):
        rows = np.array([[t.count(c) for c in self.alphabet] + [1, 0] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    embed_queries = embed_passages = _embed


class NoCache:
    def embed_passages(self, embedder, texts):
        return embedder.embed_passages(texts)


DOCS = [("a@1#1", "失业保险金的领取期限"), ("a@1#2", "基本养老金按月领取"), ("b@1#1", "工伤保险待遇")]


def test_character_bigrams_of_chinese_runs_and_whole_ascii_words():
    assert char_bigrams("工伤保险，第2条 ABC") == ["工伤", "伤保", "保险", "第", "2", "条", "abc"]


def test_the_baseline_fuses_bigram_bm25_and_dense_by_reciprocal_rank():
    baseline = BigramDenseBaseline(DOCS, BagOfCharacters(), NoCache())
    assert baseline.search("养老金怎么领取", k=2)[0] == "a@1#2"
    assert baseline.search("工伤", k=1) == ["b@1#1"]
    assert len(baseline.search("无关的问题", k=3)) == 3  # the dense ranking covers every document


def test_anchor_rows_count_exact_ids_and_other_versions_apart():
    baseline = BigramDenseBaseline(DOCS, BagOfCharacters(), NoCache())
    items = [{"id": "q1", "question": "失业保险金", "exact": ["a@0#1"], "expected_doc_ids": ["a@0#1", "a@1#1"]}]
    rows, rankings = _anchor_rows(_FakeKb(), baseline, items)
    assert rankings["baseline"][0][0] == "a@1#1"
    assert rows["baseline"]["mrr_exact"] == 0.0 and rows["baseline"]["mrr_versions"] == 1.0
    assert set(rows) == {"baseline", "bm25", "dense", "hybrid"} and rows["hybrid"]["ms_per_query"] >= 0
    console = Console(file=io.StringIO(), width=200)
    print_anchor_table(console, "t", rows, 1)
    assert "bigram BM25" in console.file.getvalue()


class _FakeKb:
    reranker = None

    def search(self, question, k, mode):
        return []


def test_social_law_held_out_split_was_cut_by_its_recorded_seed():
    recorded = json.loads((DATASETS_DIR / "social_law" / "split.json").read_text(encoding="utf-8"))
    assert recorded["seed"] == 31 and len(recorded["heldout"]) == 40 == len(set(recorded["heldout"]))
    if not (SOCIAL_LAW / "qrels.jsonl").is_file():
        pytest.skip("social_law dataset not in ../shared")
    ids = sorted({row["query_id"] for row in map(json.loads, (SOCIAL_LAW / "qrels.jsonl").open(encoding="utf-8"))})
    assert sorted(random.Random(31).sample(ids, 40)) == recorded["heldout"]
    split = recorded_split(SOCIAL_LAW)
    assert sum(v == "heldout" for v in split.values()) == 40 and sum(v == "tune" for v in split.values()) == 83
    items = {i["id"]: i for i in _external_items(SOCIAL_LAW)}
    assert items["lawbench3-2-243"]["exact"] == ["妇女权益保障法@2018-10-26#45"]
    assert set(items["lawbench3-2-243"]["expected_doc_ids"]) == {"妇女权益保障法@2018-10-26#45",
                                                                 "妇女权益保障法@2022-10-30#45"}
    # 2022 renumbered the law: the pregnancy article moved from 45 to 64, and 45 is another article.
    assert items["lawbench3-2-243"]["same_text"] == ["妇女权益保障法@2018-10-26#45", "妇女权益保障法@2022-10-30#64"]
    assert recorded_split(Path("/nonexistent/other")) == {}


def test_the_same_article_in_another_version_is_found_by_its_text_not_its_number():
    corpus = [
        {"_id": "法@1#5", "law": "法", "version": "1", "text": "第五条 女方在怀孕期间，男方不得提出离婚。"},
        {"_id": "法@2#5", "law": "法", "version": "2", "text": "第五条 实行男女同工同酬。"},
        {"_id": "法@2#9", "law": "法", "version": "2", "text": "第九条 女方在怀孕期间，男方不得提出离婚。"},
        {"_id": "法@2#10", "law": "法", "version": "2", "text": "第十条 全新的条文，与旧版无关。"},
        {"_id": "他法@1#5", "law": "他法", "version": "1", "text": "第五条 女方在怀孕期间，男方不得提出离婚。"},
    ]
    assert same_text_versions(corpus, {"法@1#5", "法@2#10"}) == {"法@1#5": {"法@2#9"}}
