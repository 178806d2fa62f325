"""The persistent index: a database (via SQLAlchemy) holds documents, chunks and their vectors and
is the source of truth; FAISS and BM25 are derived artifacts rebuilt from it in a new generation
folder and switched in with an atomic rename. A failed ingest rolls the transaction back, so
the index stays exactly as it was. The database is a SQLite file in the index folder by default;
a cluster names its PostgreSQL (`database_url`), and each replica builds its own artifacts from
the rows there, never embedding anything again.

Several server processes may share one index folder: every query reads the generation number
first (a new one is loaded, no restart), and writers take the folder's file lock, so two
administrators' uploads in two processes are applied one after the other. A retired document
keeps its text and metadata (`retired_documents`) but has no chunks, so nothing cites it until
it is restored."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import bm25s
import faiss
import numpy as np
from filelock import FileLock
from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)

from assistant.core.domain import Chunk, Document, DocumentMeta
from assistant.core.errors import IndexNotBuilt, IngestError, UnknownDocument
from assistant.core.privacy import private_dir, private_file, restrict_tree
from knowledge_base.chunking import ChunkingConfig, chunk_document
from knowledge_base.embedders import Embedder, EmbeddingCache
from knowledge_base.text import tokenize

log = logging.getLogger(__name__)

# Bump when loaders, chunking or index text change in a way that needs a rebuild.
INDEX_FORMAT = "2"

# Every question used to read the generation number from the database (2-3 times per message).
# It is read again after GENERATION_RECHECK_S; a write through this process forgets it at once
# (every IndexStore of one database shares the number), so only another process's write is seen
# up to this late.
GENERATION_RECHECK_S = 1.0
_generations: dict[str, tuple[float, int]] = {}
_BUMPED = "linli_generation_bumped"

metadata = MetaData()

documents_table = Table(
    "documents",
    metadata,
    Column("doc_id", String(160), primary_key=True),
    Column("title", Text, nullable=False),
    Column("category", String(40), nullable=False, index=True),
    Column("region", String(40), nullable=False, index=True),
    Column("source", Text, nullable=False),
    Column("effective_from", Date),
    Column("effective_to", Date),
    Column("version", String(40), nullable=False),
    Column("language", String(8), nullable=False),
    Column("benefit_tables", JSON, nullable=False, default=list),
    Column("body", Text, nullable=False),
    Column("path", Text),
    Column("added_at", DateTime, nullable=False),
)

chunks_table = Table(
    "chunks",
    metadata,
    Column("row_id", Integer, primary_key=True, autoincrement=True),
    Column("chunk_id", String(200), nullable=False, unique=True),
    Column("doc_id", String(160), nullable=False, index=True),
    Column("version", String(40), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("heading_path", JSON, nullable=False),
    Column("text", Text, nullable=False),
    Column("start", Integer, nullable=False),
    Column("end", Integer, nullable=False),
    Column("index_text", Text, nullable=False),
    Column("vector", LargeBinary, nullable=False),
)

# A retired document: its row as it was in `documents` (chunks are dropped; restoring re-chunks
# the body, whose vectors the embedding cache still holds).
retired_table = Table(
    "retired_documents",
    metadata,
    *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in documents_table.columns),
    Column("retired_at", DateTime, nullable=False),
)

state_table = Table(
    "index_state",
    metadata,
    Column("key", String(40), primary_key=True),
    Column("value", Text, nullable=False),
)


def index_text(meta: DocumentMeta, chunk: Chunk, title_repeat: int = 2) -> str:
    """What BM25 and the embedder see for a chunk: the title (repeated, as a field weight),
    the section path and the text."""
    section = " ".join(h for h in chunk.heading_path if h != meta.title)
    return " ".join([meta.title] * title_repeat + ([section] if section else []) + [chunk.text])


def _meta_from_row(row) -> DocumentMeta:
    return DocumentMeta(
        doc_id=row.doc_id,
        title=row.title,
        category=row.category,
        region=row.region,
        source=row.source,
        effective_from=row.effective_from,
        effective_to=row.effective_to,
        version=row.version,
        language=row.language,
        benefit_tables=tuple(row.benefit_tables or ()),
    )


def _document_row(doc: Document, now: datetime) -> dict:
    m = doc.meta
    return dict(
        doc_id=m.doc_id, title=m.title, category=m.category, region=m.region, source=m.source,
        effective_from=m.effective_from, effective_to=m.effective_to, version=m.version,
        language=m.language, benefit_tables=list(m.benefit_tables), body=doc.body, path=doc.path,
        added_at=now,
    )


def _document_from_row(row) -> Document:
    return Document(meta=_meta_from_row(row), body=row.body, path=row.path)


def _chunk_from_row(row) -> Chunk:
    return Chunk(
        chunk_id=row.chunk_id,
        doc_id=row.doc_id,
        version=row.version,
        ordinal=row.ordinal,
        heading_path=tuple(row.heading_path),
        text=row.text,
        start=row.start,
        end=row.end,
    )


@dataclass
class LoadedIndex:
    """In-memory view used by retrieval: arrays are aligned by position."""

    generation: int
    chunks: list[Chunk]
    metas: dict[str, DocumentMeta]
    faiss_index: faiss.Index
    bm25: bm25s.BM25
    # FAISS's ids are the chunks' row ids: row id -> position in `chunks`.
    positions: dict[int, int]
    directory: Path  # the artifacts' folder, named by the rows' content

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        """A document's chunks in order, from memory (a new list each call)."""
        if not hasattr(self, "_by_document"):
            by_document: dict[str, list[Chunk]] = {}
            for chunk in self.chunks:
                by_document.setdefault(chunk.doc_id, []).append(chunk)
            for chunks in by_document.values():
                chunks.sort(key=lambda c: c.ordinal)
            self._by_document = by_document
        return list(self._by_document.get(doc_id, ()))

    def attribute_codes(self, name: str) -> tuple[np.ndarray, dict[str, int]]:
        """Each chunk's document `name` (region, category, language) as an integer code, and the
        codes by value: a filter is then one comparison over an array, not a loop over chunks."""
        cache: dict[str, tuple[np.ndarray, dict[str, int]]] = self.__dict__.setdefault("_codes", {})
        if name not in cache:
            values: dict[str, int] = {}
            codes = np.fromiter((values.setdefault(getattr(self.metas[c.doc_id], name), len(values))
                                 for c in self.chunks), dtype=np.int32, count=len(self.chunks))
            cache[name] = (codes, values)
        return cache[name]

    def in_force_days(self) -> tuple[np.ndarray, np.ndarray]:
        """Each chunk's document's first and last day in force as day ordinals (open ends as the
        smallest and largest int32)."""
        if "_in_force" not in self.__dict__:
            lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
            metas = [self.metas[c.doc_id] for c in self.chunks]
            starts = np.fromiter((m.effective_from.toordinal() if m.effective_from else lo for m in metas),
                                 dtype=np.int32, count=len(metas))
            ends = np.fromiter((m.effective_to.toordinal() if m.effective_to else hi for m in metas),
                               dtype=np.int32, count=len(metas))
            self.__dict__["_in_force"] = (starts, ends)
        return self.__dict__["_in_force"]

    def row_positions(self, row_ids: np.ndarray) -> np.ndarray:
        """Positions in `chunks` of FAISS's row ids (vectorised `positions`; -1 ids stay -1)."""
        if "_row_lookup" not in self.__dict__:
            # Row ids are a table's autoincrement: a lookup array indexed by row id (-1 where none).
            ids = np.fromiter(self.positions.keys(), dtype=np.int64, count=len(self.positions))
            lookup = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, dtype=np.int64)
            lookup[ids] = np.fromiter(self.positions.values(), dtype=np.int64, count=len(self.positions))
            self.__dict__["_row_lookup"] = lookup
        lookup = self.__dict__["_row_lookup"]
        inside = (row_ids >= 0) & (row_ids < len(lookup))
        return np.where(inside, lookup[np.where(inside, row_ids, 0)] if len(lookup) else -1, -1)

    def inverse_document_frequency(self, term: str) -> float:
        """BM25-style idf of a term over chunks; a term the corpus never uses gets the maximum."""
        if not hasattr(self, "_df"):
            indptr = np.append(self.bm25.scores["indptr"], len(self.bm25.scores["indices"]))
            self._df = {tok: int(indptr[i + 1] - indptr[i]) for tok, i in self.bm25.vocab_dict.items()}
        n = max(len(self.chunks), 1)
        df = self._df.get(term, 0)
        return float(np.log(1.0 + (n - df + 0.5) / (df + 0.5)))


class IndexStore:
    DB_NAME = "index.sqlite"

    def __init__(
        self,
        directory: Path,
        embedder: Embedder,
        cache: EmbeddingCache,
        *,
        chunking: ChunkingConfig = ChunkingConfig(),
        title_repeat: int = 2,
        sentences: Callable[[str], Sequence[str]] | None = None,
        database_url: str | None = None,
    ) -> None:
        """`sentences` splits a chunk's text into what the answerer compares with a question
        (knowledge_base/answering.py sentence_texts); their vectors are embedded into the cache
        when documents are added, so answering a question embeds only the question."""
        self.directory = Path(directory)
        # Index files are mode 600 in a 700 directory, like the database (assistant/core/privacy.py).
        private_dir(self.directory)
        if database_url is None:
            private_file(self.directory / self.DB_NAME)
        self.embedder = embedder
        self.cache = cache
        self.chunking = chunking
        self.title_repeat = title_repeat
        self.sentences = sentences
        self.shared = database_url is not None and not database_url.startswith("sqlite")
        if database_url is None:
            self.engine = create_engine(f"sqlite:///{self.directory / self.DB_NAME}")
        elif self.shared:
            self.engine = create_engine(database_url, pool_pre_ping=True, pool_size=1, max_overflow=2,
                                        connect_args={"connect_timeout": 5})
        else:
            self.engine = create_engine(database_url)
        if not self.shared:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._generation_key = self.engine.url.render_as_string(hide_password=True)
        # After the commit (the connection goes back to the pool then), not at it: a reader must
        # not cache the old number in between.
        event.listen(self.engine, "checkin", self._forget_generation_after_write)
        with self.engine.begin() as conn:
            # Replicas starting together on an empty database create the tables once.
            self._lock_writers(conn)
            metadata.create_all(conn)
        # One writer of this folder at a time across threads and processes (re-entrant within a
        # thread); writers of a shared database also take its lock (`_lock_writers`).
        self._write_lock = FileLock(str(self.directory / ".write.lock"), mode=0o600)
        self._loaded: LoadedIndex | None = None
        self._lock = threading.RLock()
        self._loading = threading.Lock()

    def _lock_writers(self, conn) -> None:
        """Writers of a shared (PostgreSQL) index take turns for the rest of `conn`'s transaction:
        two replicas' uploads are applied one after the other, each on a new generation."""
        if self.shared:
            conn.execute(text("SELECT pg_advisory_xact_lock(7412)"))  # 7412: the index's writers

    # ---- writes -------------------------------------------------------------------------

    def _prepare(self, docs: Sequence[Document], progress: Callable[[int], None] | None) -> list[tuple]:
        prepared = []
        texts: list[str] = []
        for doc in docs:
            chunks = chunk_document(doc, self.chunking)
            if not chunks:
                raise IngestError(
                    f"文档 {doc.meta.doc_id} 没有可索引的内容", f"{doc.meta.doc_id} has no indexable text"
                )
            itexts = [index_text(doc.meta, c, self.title_repeat) for c in chunks]
            prepared.append((doc, chunks, itexts))
            texts.extend(itexts)
        vectors = self.cache.embed_passages(self.embedder, texts, progress)
        self._embed_sentences(chunk.text for _doc, chunks, _itexts in prepared for chunk in chunks)
        out, offset = [], 0
        for doc, chunks, itexts in prepared:
            out.append((doc, chunks, itexts, vectors[offset : offset + len(chunks)]))
            offset += len(chunks)
        return out

    def _embed_sentences(self, chunk_texts: Iterable[str]) -> int:
        """Embed (into the cache) the answer sentences of these chunks that it does not hold yet."""
        if self.sentences is None:
            return 0
        split = self.sentences
        texts = list(dict.fromkeys(t for text in chunk_texts for t in split(text)))
        started = time.perf_counter()
        self.cache.embed_passages(self.embedder, texts)
        log.info("answer sentences: %d (%.1f s to embed those not cached)", len(texts), time.perf_counter() - started)
        return len(texts)

    def upsert(self, docs: Sequence[Document], progress: Callable[[int], None] | None = None,
               check: Callable[[CandidateIndex], None] | None = None, *, replace_all: bool = False,
               retired: Sequence[Document] = ()) -> int:
        """Add documents or replace every chunk of their previous version, atomically. `check`
        (a smoke question, assistant/knowledge.py) is asked of the new generation before it is
        published; whatever it raises leaves the index as it was. `replace_all` (a full rebuild
        of a shared index) drops every other document in the same transaction and records
        `retired` as retired."""
        ids = [d.meta.doc_id for d in docs]
        dupes = duplicate_ids(docs)
        if dupes:
            raise IngestError(f"文档编号重复：{', '.join(dupes)}", f"duplicate document ids: {', '.join(dupes)}")
        prepared = self._prepare(docs, progress)  # embedding happens before any write
        now = datetime.now(UTC).replace(tzinfo=None)
        n_chunks = 0
        with self._write_lock, self.engine.begin() as conn:
            self._lock_writers(conn)
            if replace_all:
                for table in (chunks_table, documents_table, retired_table):
                    conn.execute(delete(table))
                if retired:
                    conn.execute(insert(retired_table), [{**_document_row(d, now), "retired_at": now} for d in retired])
            for i in range(0, 0 if replace_all else len(ids), 500):
                part = ids[i : i + 500]
                conn.execute(delete(chunks_table).where(chunks_table.c.doc_id.in_(part)))
                conn.execute(delete(documents_table).where(documents_table.c.doc_id.in_(part)))
                # A new version of a retired document is live again.
                conn.execute(delete(retired_table).where(retired_table.c.doc_id.in_(part)))
            doc_rows, chunk_rows = [], []
            for doc, chunks, itexts, vectors in prepared:
                doc_rows.append(_document_row(doc, now))
                for chunk, itext, vec in zip(chunks, itexts, vectors, strict=True):
                    chunk_rows.append(
                        dict(
                            chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, version=chunk.version,
                            ordinal=chunk.ordinal, heading_path=list(chunk.heading_path), text=chunk.text,
                            start=chunk.start, end=chunk.end, index_text=itext, vector=vec.astype(np.float32).tobytes(),
                        )
                    )
            if doc_rows:
                conn.execute(insert(documents_table), doc_rows)
            if chunk_rows:
                conn.execute(insert(chunks_table), chunk_rows)
            n_chunks = len(chunk_rows)
            generation = self._bump_generation(conn)
            # The new generation is built and checked inside the transaction, from its uncommitted
            # rows: readers keep the last one until it commits, and a failed check rolls it back.
            candidate = self._load(conn, generation)
            if check is not None:
                try:
                    check(CandidateIndex(self, conn, candidate))
                except BaseException:
                    shutil.rmtree(candidate.directory, ignore_errors=True)
                    raise
        self._prune_generations()
        return n_chunks

    def remove(self, doc_id: str) -> None:
        """Delete a document (live or retired) and every chunk of it."""
        with self._write_lock:
            with self.engine.begin() as conn:
                self._lock_writers(conn)
                live = conn.execute(delete(documents_table).where(documents_table.c.doc_id == doc_id)).rowcount
                retired = conn.execute(delete(retired_table).where(retired_table.c.doc_id == doc_id)).rowcount
                if not (live or retired):
                    raise _unknown(doc_id)
                conn.execute(delete(chunks_table).where(chunks_table.c.doc_id == doc_id))
                self._bump_generation(conn)
            self.rebuild_artifacts()

    def retire(self, doc_ids: Sequence[str]) -> None:
        """Take documents out of search and answers, keeping them to restore: all or none."""
        now = datetime.now(UTC).replace(tzinfo=None)
        with self._write_lock:
            with self.engine.begin() as conn:
                self._lock_writers(conn)
                rows = conn.execute(select(documents_table).where(documents_table.c.doc_id.in_(doc_ids))).all()
                missing = sorted(set(doc_ids) - {r.doc_id for r in rows})
                if missing:
                    raise _unknown(missing[0])
                conn.execute(insert(retired_table), [{**r._asdict(), "retired_at": now} for r in rows])
                conn.execute(delete(chunks_table).where(chunks_table.c.doc_id.in_(doc_ids)))
                conn.execute(delete(documents_table).where(documents_table.c.doc_id.in_(doc_ids)))
                self._bump_generation(conn)
            self.rebuild_artifacts()

    def retired_document(self, doc_id: str) -> Document:
        """A retired document as it was when retired (upsert it to restore it)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(retired_table).where(retired_table.c.doc_id == doc_id)).first()
        if row is None:
            raise UnknownDocument(f"没有已停用的文档 {doc_id}", f"no retired document {doc_id}", doc_id=doc_id)
        return _document_from_row(row)

    def retired_rows(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(retired_table).order_by(retired_table.c.doc_id)).all()
        return [{**_listing(r), "chunks": 0, "retired_at": r.retired_at.isoformat(timespec="seconds")} for r in rows]

    def carried_over(self, added_prefix: str) -> tuple[list[Document], list[Document]]:
        """What a full rebuild keeps: the live documents whose `path` starts with `added_prefix`
        (added after the shipped corpus), and every retired document."""
        with self.engine.connect() as conn:
            live = conn.execute(select(documents_table).where(documents_table.c.path.startswith(added_prefix))).all()
            retired = conn.execute(select(retired_table)).all()
        return [_document_from_row(r) for r in live], [_document_from_row(r) for r in retired]

    def keep_retired(self, docs: Sequence[Document]) -> None:
        """Record documents as retired in this (new) index without indexing them: a rebuild keeps
        what administrators retired."""
        if not docs:
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        ids = [d.meta.doc_id for d in docs]
        with self._write_lock:
            with self.engine.begin() as conn:
                self._lock_writers(conn)
                conn.execute(delete(chunks_table).where(chunks_table.c.doc_id.in_(ids)))
                searchable = conn.execute(delete(documents_table).where(documents_table.c.doc_id.in_(ids))).rowcount
                conn.execute(delete(retired_table).where(retired_table.c.doc_id.in_(ids)))
                conn.execute(insert(retired_table), [{**_document_row(d, now), "retired_at": now} for d in docs])
                if searchable:
                    self._bump_generation(conn)
            # Retired rows alone change nothing a search reads (a rebuild's case): no new generation.
            if searchable:
                self.rebuild_artifacts()

    def _forget_generation_after_write(self, _dbapi_connection, connection_record) -> None:
        if connection_record is not None and connection_record.info.pop(_BUMPED, False):
            _generations.pop(self._generation_key, None)

    def _bump_generation(self, conn) -> int:
        conn.info[_BUMPED] = True  # forgotten once this connection's transaction is over
        current = conn.execute(select(state_table.c.value).where(state_table.c.key == "generation")).scalar()
        generation = int(current or 0) + 1
        if current is None:
            conn.execute(insert(state_table).values(key="generation", value="1"))
        else:
            conn.execute(
                update(state_table).where(state_table.c.key == "generation").values(value=str(generation))
            )
        embedder = conn.execute(select(state_table.c.value).where(state_table.c.key == "embedder")).scalar()
        if embedder is None:
            conn.execute(insert(state_table).values(key="embedder", value=self.embedder.name))
        elif embedder != self.embedder.name:
            raise ValueError(f"index was built with {embedder}, not {self.embedder.name}: run `linli kb build`")
        return generation

    # ---- reads ----------------------------------------------------------------------------

    def generation(self) -> int:
        seen = _generations.get(self._generation_key)
        if seen is not None and time.monotonic() - seen[0] < GENERATION_RECHECK_S:
            return seen[1]
        with self.engine.connect() as conn:
            value = conn.execute(select(state_table.c.value).where(state_table.c.key == "generation")).scalar()
        generation = int(value or 0)
        if generation:  # an empty index is looked at again each time: its build is on its way
            _generations[self._generation_key] = (time.monotonic(), generation)
        return generation

    def list_documents(self) -> list[dict]:
        with self.engine.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(select(chunks_table.c.doc_id, func.count()).group_by(chunks_table.c.doc_id)).all()
            )
            rows = conn.execute(select(documents_table).order_by(documents_table.c.doc_id)).all()
        return [{**_listing(r), "chunks": counts.get(r.doc_id, 0)} for r in rows]

    def get_document(self, doc_id: str, conn=None) -> tuple[DocumentMeta, str, list[Chunk]]:
        if conn is None:
            with self.engine.connect() as own:
                return self.get_document(doc_id, conn=own)
        row = conn.execute(select(documents_table).where(documents_table.c.doc_id == doc_id)).first()
        if row is None:
            raise _unknown(doc_id)
        chunk_rows = conn.execute(
            select(chunks_table).where(chunks_table.c.doc_id == doc_id).order_by(chunks_table.c.ordinal)
        ).all()
        return _meta_from_row(row), row.body, [_chunk_from_row(r) for r in chunk_rows]

    def benefit_documents(self) -> list[DocumentMeta]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(documents_table).where(documents_table.c.category != "law")).all()
        return [m for m in (_meta_from_row(r) for r in rows) if m.benefit_tables]

    # ---- derived artifacts ----------------------------------------------------------------

    def _artifact_dir(self, generation: int, rows: Sequence) -> Path:
        """Where FAISS and BM25 for exactly these chunk rows live: the folder is named by the rows'
        content (row ids, index texts, the embedder), so a folder never changes once written and a
        reader's arrays always match the rows it read, whatever commits in between. (A folder
        named by the generation alone was rebuilt in place under a reader that had read the
        number before another process's commit: row ids from one build, BM25 from the next.)"""
        digest = hashlib.blake2b(self.embedder.name.encode(), digest_size=8)
        for row in rows:
            digest.update(int(row.row_id).to_bytes(8, "little", signed=True))
            digest.update(row.index_text.encode())
        return self.directory / f"gen-{generation:06d}-{digest.hexdigest()}"

    def rebuild_artifacts(self) -> Path:
        """Build the current generation's FAISS and BM25 now (after a write), so that no reader
        waits for them."""
        generation = self.generation()
        with self.engine.connect() as conn:
            rows = conn.execute(_ARTIFACT_ROWS).all()
        target = self._build_artifacts(generation, rows)
        self._prune_generations()
        return target

    def _build_artifacts(self, generation: int, rows: Sequence) -> Path:
        """FAISS and BM25 for these chunk rows, in their content's folder; reused when it exists.
        Written to a temporary folder and renamed in whole, so no one reads half of it; two
        processes building the same rows at once both end with the same folder."""
        target = self._artifact_dir(generation, rows)
        if (target / "STAMP.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=self.directory))
        try:
            row_ids = np.array([r.row_id for r in rows], dtype=np.int64)
            dim = self.embedder.dim
            vectors = (
                np.vstack([np.frombuffer(r.vector, dtype=np.float32) for r in rows])
                if rows
                else np.zeros((0, dim), dtype=np.float32)
            )
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            if len(row_ids):
                index.add_with_ids(vectors, row_ids)
            faiss.write_index(index, str(tmp / "vectors.faiss"))
            np.save(tmp / "row_ids.npy", row_ids)
            bm25 = bm25s.BM25()
            corpus_tokens = [tokenize(r.index_text) or [""] for r in rows] or [[""]]
            bm25.index(corpus_tokens, show_progress=False)
            bm25.save(str(tmp / "bm25"))
            (tmp / "STAMP.json").write_text(
                json.dumps({"generation": generation, "embedder": self.embedder.name, "chunks": len(rows)})
            )
            restrict_tree(tmp)
            try:
                os.replace(tmp, target)
            except OSError:
                if not (target / "STAMP.json").exists():
                    raise
                # Another thread or process built the same rows meanwhile: the same content.
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _prune_generations(self) -> None:
        # The generation before stays a while: another process may be loading it right now.
        folders = [(int(p.name[4:10]), p) for p in self.directory.glob("gen-*") if p.name[4:10].isdigit()]
        kept = sorted({generation for generation, _ in folders})[-2:]
        for generation, folder in folders:
            if generation not in kept:
                shutil.rmtree(folder, ignore_errors=True)

    @property
    def loaded_generation(self) -> int:
        """The generation this process answers from (0 before the first load)."""
        return self._loaded.generation if self._loaded else 0

    def load(self) -> LoadedIndex:
        """Load (or reuse) the in-memory index for the current generation. While one thread
        builds a newer generation's artifacts, the others go on answering from the loaded one."""
        loaded = self._loaded
        if loaded is not None and loaded.generation != self.generation():
            if not self._loading.acquire(blocking=False):
                return loaded
            try:
                return self._load_current()
            finally:
                self._loading.release()
        return loaded if loaded is not None else self._load_current()

    def _load_current(self) -> LoadedIndex:
        with self._lock:
            generation = self.generation()
            if self._loaded and self._loaded.generation == generation:
                return self._loaded
            if generation == 0:
                raise IndexNotBuilt(
                    "知识库索引还没有建立，请先运行 linli kb build", "the index is empty: run `linli kb build` first"
                )
            with self.engine.connect() as conn:
                self._loaded = self._load(conn, generation)
            self._prune_generations()
            return self._loaded

    def _load(self, conn, generation: int) -> LoadedIndex:
        """The rows `conn` sees, with the FAISS and BM25 built from exactly those rows."""
        chunk_rows = conn.execute(select(chunks_table).order_by(chunks_table.c.row_id)).all()
        doc_rows = conn.execute(select(documents_table)).all()
        directory = self._build_artifacts(generation, chunk_rows)
        faiss_index = faiss.read_index(str(directory / "vectors.faiss"))
        bm25 = bm25s.BM25.load(str(directory / "bm25"))
        if faiss_index.ntotal != len(chunk_rows) or (chunk_rows and bm25.scores["num_docs"] != len(chunk_rows)):
            raise RuntimeError(f"index folder {directory.name} does not match its {len(chunk_rows)} chunks")
        return LoadedIndex(
            generation=generation,
            chunks=[_chunk_from_row(r) for r in chunk_rows],
            metas={r.doc_id: _meta_from_row(r) for r in doc_rows},
            faiss_index=faiss_index,
            bm25=bm25,
            positions={int(r.row_id): i for i, r in enumerate(chunk_rows)},
            directory=directory,
        )



class IndexReader(Protocol):
    """What retrieval and answering read of an index: the published one (`IndexStore`) or one
    being checked before it is published (`CandidateIndex`)."""

    cache: EmbeddingCache

    def load(self) -> LoadedIndex: ...

    def generation(self) -> int: ...

    def get_document(self, doc_id: str) -> tuple[DocumentMeta, str, list[Chunk]]: ...

    def benefit_documents(self) -> list[DocumentMeta]: ...


class CandidateIndex:
    """A generation being written, as the retriever and the answerer read a store: its rows as the
    writing transaction sees them, before anyone else can. `IndexStore.upsert` hands it to its
    check."""

    def __init__(self, store: IndexStore, conn, loaded: LoadedIndex) -> None:
        self._store = store
        self._conn = conn
        self._loaded = loaded
        self.cache = store.cache
        self.embedder = store.embedder
        self.chunking = store.chunking

    def load(self) -> LoadedIndex:
        return self._loaded

    def generation(self) -> int:
        return self._loaded.generation

    def get_document(self, doc_id: str) -> tuple[DocumentMeta, str, list[Chunk]]:
        return self._store.get_document(doc_id, conn=self._conn)

    def benefit_documents(self) -> list[DocumentMeta]:
        return [m for m in self._loaded.metas.values() if m.category != "law" and m.benefit_tables]


def duplicate_ids(docs: Iterable[Document]) -> list[str]:
    """The document ids that occur more than once, sorted."""
    counts = Counter(d.meta.doc_id for d in docs)
    return sorted(i for i, n in counts.items() if n > 1)


def _unknown(doc_id: str) -> UnknownDocument:
    return UnknownDocument(f"知识库里没有编号为 {doc_id} 的文档", f"no document with id {doc_id}", doc_id=doc_id)


def _listing(row) -> dict:
    return {
        "doc_id": row.doc_id, "title": row.title, "category": row.category, "region": row.region,
        "language": row.language, "version": row.version,
        "effective_from": row.effective_from.isoformat() if row.effective_from else None,
        "effective_to": row.effective_to.isoformat() if row.effective_to else None,
        "added_at": row.added_at.isoformat(timespec="seconds") if row.added_at else None,
    }


_ARTIFACT_ROWS = select(chunks_table.c.row_id, chunks_table.c.index_text, chunks_table.c.vector).order_by(
    chunks_table.c.row_id)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

