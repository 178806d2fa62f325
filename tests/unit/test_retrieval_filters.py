"""Search filters answered by the index's per-chunk codes (issue 30) keep the rule they replaced:
a region keeps national documents, category and language match exactly, expired documents are out
unless asked for, on the day asked about."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from assistant.core.domain import SearchFilters
from bench.filter_speed import loop_mask, loop_scores, synthetic_index
from knowledge_base.retrieval import HybridRetriever


@pytest.fixture(scope="module")
def index():
    return synthetic_index(2000, seed=3)


@pytest.mark.parametrize("filters", [
    SearchFilters(),
    SearchFilters(region="region-3"),
    SearchFilters(region="nowhere"),
    SearchFilters(category="cat-5", language="en"),
    SearchFilters(region="region-7", category="cat-1", language="zh", include_expired=True),
    SearchFilters(as_of=date.today() - timedelta(days=2000)),
    SearchFilters(as_of=date.today() + timedelta(days=30), include_expired=False),
])
def test_codes_and_the_rule_agree(index, filters):
    mask = HybridRetriever._allowed(index, filters)
    assert np.array_equal(mask, loop_mask(index, filters))
    assert 0 < mask.sum() < len(mask) or filters.region == "nowhere" or filters == SearchFilters()


def test_similarities_land_on_their_chunks_and_missing_ids_are_skipped(index):
    sims = np.linspace(1, 0, 50, dtype=np.float32)
    ids = np.array([*range(1, 50), -1], dtype=np.int64)[::-1].copy()
    assert np.array_equal(HybridRetriever._dense_scores(index, sims, ids), loop_scores(index, sims, ids))
