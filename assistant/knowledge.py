"""The knowledge base as one object: index upkeep (build/add/remove/list/show), search and
grounded answers over the policy corpus. `Services` (assistant/services.py) builds one per
Settings; tests and evaluations may build their own on a throwaway index."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from assistant.core.domain import Answer, Document, Hit, SearchFilters
from assistant.core.errors import IndexNotBuilt, IngestError, UnknownDocument
from assistant.core.settings import Settings
from knowledge_base.answering import ConfidenceModel, Cues, GroundedAnswerer, sentence_texts
from knowledge_base.benefits import BenefitTable, RegionResolver
from knowledge_base.chunking import chunk_document
from knowledge_base.embedders import (
    SHIPPED_VECTORS,
    Embedder,
    EmbeddingCache,
    create_embedder,
    write_shipped_vectors,
)
from knowledge_base.loaders import build_meta, front_matter, iter_corpus, iter_law_articles, load_file
from knowledge_base.rerankers import create_reranker
from knowledge_base.retrieval import HybridRetriever, Mode
from knowledge_base.store import CandidateIndex, IndexReader, IndexStore, index_text
from knowledge_base.text import load_lexicon

KB_DATA = Path(__file__).resolve().parent.parent / "knowledge_base" / "data"
# Asked of every new index generation before it is published (`KnowledgeBase.smoke_check`).
SMOKE_QUESTIONS = ("高龄津贴每月发多少钱？", "How do I apply for legal aid?")
SMOKE_TITLES = 5
log = logging.getLogger(__name__)
# `Document.path` of a document added after the shipped corpus (`linli kb add`, the admin pages,
# an edited front matter): a full rebuild keeps it, as it keeps retired documents retired.
ADDED = "added:"


@dataclass
class BuildReport:
    documents: int
    chunks: int
    seconds: float

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


def shipped_documents(settings: Settings) -> list[Document]:
    docs = list(iter_corpus(settings.corpus_dirs))
    # An empty LINLI_LAW_CORPUS (read as the current folder) means none, as a missing file does.
    if settings.law_corpus and Path(settings.law_corpus).is_file():
        docs.extend(iter_law_articles(Path(settings.law_corpus)))
    return docs


class KnowledgeBase:
    """Index upkeep (build/add/remove/list/show), search and grounded answers."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.lexicon = load_lexicon(settings.domain_terms, settings.synonyms)
        self.embedder = embedder or create_embedder(settings.embedder)
        self.cache = EmbeddingCache(settings.resolved_embedding_cache)
        self.reranker = create_reranker(settings.reranker)
        self._lock = threading.Lock()
        self._open(settings.resolved_index_dir)

    def _store(self, directory: Path, *, shared: bool = True) -> IndexStore:
        """The index in `directory`; its rows in `settings.index_database_url` when one is named
        (a cluster's PostgreSQL), else in a SQLite file in the folder (`shared=False`: a staging
        folder's own file)."""
        return IndexStore(directory, self.embedder, self.cache, title_repeat=self.settings.retrieval.title_repeat,
                          sentences=sentence_texts,
                          database_url=self.settings.index_database_url if shared else None)

    def _open(self, directory: Path) -> None:
        self.store = self._store(directory)
        self.answerer = self._answerer(self.store)
        self.retriever = self.answerer.retriever

    def _answerer(self, store: IndexReader) -> GroundedAnswerer:
        retriever = HybridRetriever(
            store, self.embedder, self.lexicon, self.settings.retrieval, self.reranker,
            rerank_top_n=self.settings.reranker.top_n,
        )
        return GroundedAnswerer(
            retriever,
            self.settings.answer,
            cues=Cues.load(KB_DATA / "answer_cues.yaml"),
            regions=RegionResolver(KB_DATA / "regions.yaml"),
            confidence=ConfidenceModel(**self.settings.answer.confidence.model_dump()),
        )

    def smoke_check(self, docs: Sequence[Document]) -> Callable[[CandidateIndex], None]:
        """What a new generation must answer, without an error, before residents see it: a question
        in each language, the new documents' titles, and an amount from each of their benefit
        tables. Whatever breaks answering (a table the schema let through, a parser's surprise)
        fails the change, never the residents' questions after it."""
        questions = list(SMOKE_QUESTIONS) + [d.meta.title for d in docs[:SMOKE_TITLES]]
        for doc in docs:
            for table in BenefitTable.from_meta(doc.meta):
                questions.append(f"{table.subject or table.title}{table.minimum_age}岁每月多少钱？"
                                 if doc.meta.language == "zh" else
                                 f"How much is the {table.subject or table.title} at age {table.minimum_age}?")

        def check(candidate: CandidateIndex) -> None:
            answerer = self._answerer(candidate)
            for question in questions:
                try:
                    answerer.ask(question)
                except Exception as exc:
                    log.exception("the new index generation failed its smoke question %r", question)
                    raise IngestError(
                        f"更新后的知识库没有通过试答（问“{question[:40]}”时出错：{type(exc).__name__}），"
                        "这次修改没有生效，居民看到的知识库没有改变。",
                        f"The updated knowledge base failed a smoke question ({question[:40]!r}: "
                        f"{type(exc).__name__}); the change was not applied.") from exc

        return check

    # ---- upkeep --------------------------------------------------------------------------

    def is_built(self) -> bool:
        return self.store.generation() > 0

    def rebuild_plan(self) -> tuple[list[Document], list[Document]]:
        """What a full rebuild indexes and what it keeps retired: the shipped corpus, with the
        documents added since (a newer version wins over a shipped one), less the retired ones."""
        docs = {d.meta.doc_id: d for d in shipped_documents(self.settings)}
        added, retired = self.store.carried_over(ADDED) if self.is_built() else ([], [])
        docs.update((d.meta.doc_id, d) for d in added)
        for doc in retired:
            docs.pop(doc.meta.doc_id, None)
        return list(docs.values()), retired

    def build(self, documents: Iterable[Document] | None = None,
              progress: Callable[[int, int], None] | None = None,
              retired: Iterable[Document] = ()) -> BuildReport:
        """Full rebuild into a fresh folder, swapped in only when complete. Without `documents`:
        `rebuild_plan()` (what `linli kb build` does)."""
        started = time.perf_counter()
        if documents is None:
            docs, retired = self.rebuild_plan()
        else:
            docs = list(documents)
        # The shipped corpus's vectors come with the project (checked; a changed text is embedded).
        self.cache.seed(SHIPPED_VECTORS, self.embedder.name)
        with_tables = [d for d in docs if d.meta.benefit_tables]
        if self.store.shared:
            # A shared database is rebuilt in one transaction: replicas keep answering from the
            # last generation until it commits, then load the new one.
            n_chunks = self.store.upsert(docs, progress=(lambda n: progress(n, 0)) if progress else None,
                                         check=self.smoke_check(with_tables), replace_all=True, retired=list(retired))
            return BuildReport(len(docs), n_chunks, time.perf_counter() - started)
        target = self.settings.resolved_index_dir
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=target.parent))
        try:
            store = self._store(staging, shared=False)
            total_chunks = None

            def tick(n: int) -> None:
                if progress:
                    progress(n, total_chunks or 0)

            # The smoke check answers from the new documents' tables (not every title: a full build).
            n_chunks = store.upsert(docs, progress=tick, check=self.smoke_check(with_tables))
            store.keep_retired(list(retired))
            store.engine.dispose()
            with self._lock:
                self.store.engine.dispose()
                old = target.with_name(f".{target.name}-old")
                if old.exists():
                    shutil.rmtree(old)
                if target.exists():
                    target.rename(old)
                staging.rename(target)
                shutil.rmtree(old, ignore_errors=True)
                self._open(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return BuildReport(len(docs), n_chunks, time.perf_counter() - started)

    def shipped_texts(self, documents: Iterable[Document] | None = None) -> list[str]:
        """What the index embeds for these documents (default: the shipped corpus): each chunk's
        index text and its answer sentences."""
        docs = list(documents) if documents is not None else shipped_documents(self.settings)
        store = self.store
        texts: list[str] = []
        for doc in docs:
            for chunk in chunk_document(doc, store.chunking):
                texts.append(index_text(doc.meta, chunk, store.title_repeat))
                texts.extend(sentence_texts(chunk.text))
        return list(dict.fromkeys(texts))

    def ship_vectors(self, extra_texts: Iterable[str] = (), directory: Path = SHIPPED_VECTORS) -> tuple[Path, int]:
        """Write the vectors of the shipped corpus (and `extra_texts`, e.g. intent examples) into
        `directory` for this embedder, embedding what the cache lacks. Returns (file, rows)."""
        texts = list(dict.fromkeys([*self.shipped_texts(), *extra_texts]))
        vectors = self.cache.embed_passages(self.embedder, texts)
        path = write_shipped_vectors(directory, self.embedder.name, [self.cache.key(t) for t in texts], vectors)
        return path, len(texts)

    def add(self, path: Path) -> list[str]:
        path = Path(path)
        docs = list(iter_corpus([path])) if path.is_dir() else [load_file(path)]
        self.add_documents(docs)
        return [d.meta.doc_id for d in docs]

    def add_documents(self, docs: Iterable[Document], progress: Callable[[int], None] | None = None) -> int:
        """Add documents, or replace each one's previous version, in one transaction; a full
        rebuild keeps them. Returns the number of chunks indexed."""
        marked = [d if (d.path or "").startswith(ADDED) else replace(d, path=f"{ADDED}{Path(d.path or '').name}")
                  for d in docs]
        return self.store.upsert(marked, progress, check=self.smoke_check(marked))

    def remove(self, doc_id: str) -> None:
        self.store.remove(doc_id)

    def retire(self, doc_ids: Iterable[str]) -> None:
        """Take documents out of search and answers; `restore` brings them back as they were."""
        self.store.retire(list(doc_ids))

    def restore(self, doc_id: str, progress: Callable[[int], None] | None = None) -> Document:
        doc = self.store.retired_document(doc_id)
        self.add_documents([doc], progress)
        return doc

    def edited_document(self, doc_id: str, changes: dict[str, Any]) -> Document:
        """A live document with some front-matter fields changed, checked as a file's front matter
        is (IngestError when a field is wrong); `add_documents` indexes it as a new version."""
        meta, body, _chunks = self.store.get_document(doc_id)
        fields = {**front_matter(meta), **changes, "id": doc_id}
        return Document(meta=build_meta(fields, Path(f"{doc_id}.md")), body=body, path=f"{ADDED}{doc_id}")

    # ---- queries -------------------------------------------------------------------------
    # The answerer is replaced when the index is rebuilt, so callers hold the knowledge base and
    # ask it each time rather than keeping `self.answerer`.

    def search(self, question: str, k: int = 10, filters: SearchFilters | None = None,
               mode: Mode = "hybrid") -> list[Hit]:
        return self.retriever.search(question, k=k, filters=filters, mode=mode)

    def ask(self, question: str, filters: SearchFilters | None = None) -> Answer:
        return self.answerer.ask(question, filters=filters)

    def benefit_amounts(self) -> set[float]:
        return self.answerer.benefit_amounts()

    def benefit_table(self, table_id: str) -> BenefitTable | None:
        """An indexed benefit table by id (the eligibility rules of procedures point at them)."""
        return self.answerer.benefit_table(table_id)

    def document_title(self, doc_id: str) -> str:
        """The title of a corpus document, or its id when it is not in the index."""
        try:
            meta = self.store.load().metas.get(doc_id)  # in memory: no database read per reply
            if meta is not None:
                return meta.title
            return self.store.get_document(doc_id)[0].title
        except (UnknownDocument, IndexNotBuilt):
            return doc_id

