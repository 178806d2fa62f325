"""Builds the knowledge-base services from Settings. The CLI and the API both go through here,
so they share one wiring and one set of components."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from assistant.core.domain import Answer, Document, Hit, SearchFilters
from assistant.core.settings import Settings
from knowledge_base.answering import ConfidenceModel, Cues, GroundedAnswerer
from knowledge_base.benefits import RegionResolver
from knowledge_base.embedders import Embedder, EmbeddingCache, create_embedder
from knowledge_base.loaders import iter_corpus, iter_law_articles, load_file
from knowledge_base.rerankers import create_reranker
from knowledge_base.retrieval import HybridRetriever, Mode
from knowledge_base.store import IndexStore
from knowledge_base.text import load_lexicon

KB_DATA = Path(__file__).resolve().parent.parent / "knowledge_base" / "data"


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
    if settings.law_corpus and Path(settings.law_corpus).exists():
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

    def _open(self, directory: Path) -> None:
        self.store = IndexStore(directory, self.embedder, self.cache, title_repeat=self.settings.retrieval.title_repeat)
        self.retriever = HybridRetriever(
            self.store, self.embedder, self.lexicon, self.settings.retrieval, self.reranker,
            rerank_top_n=self.settings.reranker.top_n,
        )
        self.answerer = GroundedAnswerer(
            self.retriever,
            self.settings.answer,
            cues=Cues.load(KB_DATA / "answer_cues.yaml"),
            regions=RegionResolver(KB_DATA / "regions.yaml"),
            confidence=ConfidenceModel(**self.settings.answer.confidence.model_dump()),
        )

    # ---- upkeep --------------------------------------------------------------------------

    def is_built(self) -> bool:
        return self.store.generation() > 0

    def build(self, documents: Iterable[Document] | None = None,
              progress: Callable[[int, int], None] | None = None) -> BuildReport:
        """Full rebuild into a fresh folder, swapped in only when complete."""
        started = time.perf_counter()
        docs = list(documents) if documents is not None else shipped_documents(self.settings)
        target = self.settings.resolved_index_dir
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=target.parent))
        try:
            store = IndexStore(staging, self.embedder, self.cache, title_repeat=self.settings.retrieval.title_repeat)
            total_chunks = None

            def tick(n: int) -> None:
                if progress:
                    progress(n, total_chunks or 0)

            n_chunks = store.upsert(docs, progress=tick)
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

    def add(self, path: Path) -> list[str]:
        path = Path(path)
        docs = list(iter_corpus([path])) if path.is_dir() else [load_file(path)]
        self.store.upsert(docs)
        return [d.meta.doc_id for d in docs]

    def remove(self, doc_id: str) -> None:
        self.store.remove(doc_id)

    # ---- queries -------------------------------------------------------------------------

    def search(self, question: str, k: int = 10, filters: SearchFilters | None = None,
               mode: Mode = "hybrid") -> list[Hit]:
        return self.retriever.search(question, k=k, filters=filters, mode=mode)

    def ask(self, question: str, filters: SearchFilters | None = None) -> Answer:
        return self.answerer.ask(question, filters=filters)

    def benefit_amounts(self) -> set[float]:
        return self.answerer.benefit_amounts()


_shared: dict[str, KnowledgeBase] = {}
_shared_lock = threading.Lock()


def get_knowledge_base(settings: Settings) -> KnowledgeBase:
    key = str(settings.resolved_index_dir)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = KnowledgeBase(settings)
        return _shared[key]


_engines: dict[str, object] = {}
_desks: dict[str, object] = {}


def get_escalation(settings: Settings):
    """The ticket queue with its delivery wiring: a worker's words reach the resident through
    the channel they used and are kept in the conversation; when a ticket resolves the bot
    takes the conversation back and asks for a rating. Needs no index or model."""
    from assistant.dialogue.store import ConversationStore
    from assistant.escalation.service import SqlEscalationService
    from connectors.channels import ChannelRegistry

    url = settings.resolved_database_url
    with _shared_lock:
        if url not in _desks:
            channels = ChannelRegistry(url)
            conversations = ConversationStore(url)

            def deliver(ticket, sender: str, text: str) -> None:
                channels.get(ticket.channel).send(session_id=ticket.session_id, user_id=ticket.user_id, text=text,
                                                  sender=sender, ticket_id=ticket.ticket_id)
                conversations.add_turn(ticket.session_id, "worker", text, "handoff", {"ticket_id": ticket.ticket_id,
                                                                                      "worker": sender})

            def hand_back(ticket) -> None:
                from assistant.dialogue.engine import load_replies

                conversation = conversations.get_or_create(ticket.session_id, ticket.channel, ticket.user_id)
                conversation.state["awaiting_rating"] = ticket.ticket_id
                conversations.save(conversation)
                prompt = str(load_replies()["rating_request"][conversation.language])
                channels.get(ticket.channel).send(session_id=ticket.session_id, user_id=ticket.user_id, text=prompt,
                                                  sender="邻里助手", ticket_id=ticket.ticket_id)
                conversations.add_turn(ticket.session_id, "assistant", prompt, "smalltalk",
                                       {"ticket_id": ticket.ticket_id, "rating_request": True})

            escalation = SqlEscalationService(url, settings.escalation, deliver=deliver)
            escalation.on_resolved = hand_back
            escalation.channels = channels
            _desks[url] = escalation
        return _desks[url]


def get_dialogue_engine(settings: Settings):
    """One engine per database and index: the classifier trains once per process."""
    from assistant.dialogue.engine import DialogueEngine
    from assistant.dialogue.store import ConversationStore
    from intents.classifier import IntentClassifier

    escalation = get_escalation(settings)
    applications = get_applications(settings)
    key = f"{settings.resolved_index_dir}|{settings.resolved_database_url}"
    with _shared_lock:
        if key not in _engines:
            kb = _shared.get(str(settings.resolved_index_dir)) or KnowledgeBase(settings)
            _shared[str(settings.resolved_index_dir)] = kb
            _engines[key] = DialogueEngine(
                kb,
                IntentClassifier(kb.embedder, kb.cache),
                ConversationStore(settings.resolved_database_url),
                escalation,
                settings.dialogue,
                applications,
            )
        return _engines[key]


_application_services: dict[str, object] = {}


def get_applications(settings: Settings):
    """Applications and their outbox, wired to the resident's channel (status notices) and to
    the escalation queue (a worker takes over when filing keeps failing)."""
    from connectors.services.applications import ApplicationService
    from connectors.services.registry import make_connector

    escalation = get_escalation(settings)
    url = settings.resolved_database_url
    with _shared_lock:
        if url not in _application_services:
            from assistant.dialogue.store import ConversationStore

            conversations = ConversationStore(url)

            def notify(application, text: str) -> None:
                escalation.channels.get(application.channel).send(
                    session_id=application.session_id, user_id=application.user_id, text=text, sender="邻里助手")
                conversations.add_turn(application.session_id, "assistant", text, "answer",
                                       {"application": application.application_id})

            def escalate(application, reason: str) -> str:
                ticket = escalation.open_ticket(
                    kind="procedure_problem", priority="high", session_id=application.session_id,
                    channel=application.channel, user_id=application.user_id,
                    summary=f"{application.procedure} 申请 {application.application_id}：{reason}"[:1000],
                    form_data={"application_id": application.application_id, "procedure": application.procedure,
                               **application.data},
                    idempotency_key=f"application:{application.application_id}")
                return ticket.ticket_id

            _application_services[url] = ApplicationService(
                url, make_connector(settings.connectors), notify=notify, escalate=escalate,
                max_attempts=settings.connectors.max_attempts, retry_base_s=settings.connectors.retry_base_s)
        return _application_services[url]
