"""The services of one deployment, built once per `Settings` and wired in one place. The API
keeps one `Services` on `app.state` (its lifespan builds it), the CLI builds one per process,
and tests and evaluations build their own on a throwaway database, handing in a prepared
knowledge base and classifier so nothing is rebuilt.

Every member is built on first use: `linli tickets list` opens the ticket queue without loading
the embedding model, and `linli ask` never loads the speech model. The listeners that make
features talk through events (a worker's words reach the resident; a resolved ticket asks for a
rating) are subscribed here, once, when the event bus is built."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from assistant.analytics.feedback import FeedbackService
from assistant.analytics.queries import AnalyticsService
from assistant.channels import enabled_channels, reserved_names
from assistant.core.db import Databases
from assistant.core.events import EventBus
from assistant.core.settings import Settings
from assistant.core.vault import Vault
from assistant.dialogue.listeners import BOT_SENDER, RatingRequest
from assistant.dialogue.replies import Replies
from assistant.dialogue.store import ConversationStore
from assistant.escalation.events import TicketResolved, WorkerReplied
from assistant.escalation.listeners import Channels, ResidentDelivery
from assistant.escalation.service import SqlEscalationService
from assistant.residents.inbound import MessageGate
from assistant.residents.sessions import ResidentSessions
from assistant.wechat.service import UndeliveredNote, WechatService
from connectors.channels import ChannelRegistry
from connectors.channels.wechat import PushOutbox, WechatApi
from connectors.services.applications import Application, ApplicationService, FilingLimits
from connectors.services.procedures import ProcedureCatalogue
from connectors.services.registry import make_connector

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from assistant.dialogue.engine import DialogueEngine
    from assistant.escalation.auth import UserStore
    from assistant.kb_admin.service import KnowledgeAdmin
    from assistant.knowledge import KnowledgeBase
    from assistant.security.limits import RateLimiter
    from assistant.speech.service import SpeechCorrector, SpeechService
    from assistant.speech.transcriber import Transcriber
    from intents.classifier import IntentClassifier

T = TypeVar("T")


class built_once(cached_property[T]):
    """`functools.cached_property` that builds under its container's lock: the API serves requests
    from a thread pool, and two first voice messages at once must load one model, not two."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: object, owner: type[Any] | None = None) -> T | Self:
        if instance is None:
            return self
        if not isinstance(instance, Services):
            raise TypeError("built_once is for the members of Services")
        # Reentrant: building the dialogue engine builds the knowledge base on the same thread.
        with instance._building:
            return super().__get__(instance, owner)


class ApplicationNotices:
    """Tells a resident on their channel how their application stands, and keeps the notice in
    their conversation (ApplicationService's `notify`)."""

    def __init__(self, channels: Channels, conversations: ConversationStore) -> None:
        self.channels = channels
        self.conversations = conversations

    def __call__(self, application: Application, text: str) -> None:
        self.channels.get(application.channel).send(session_id=application.session_id, user_id=application.user_id,
                                                    text=text, sender=BOT_SENDER)
        self.conversations.add_turn(application.session_id, "assistant", text, "answer",
                                    {"application": application.application_id})


class ApplicationHandOff:
    """Opens one ticket for a worker when filing an application keeps failing (ApplicationService's
    `escalate`); the application id as idempotency key keeps a retried hand-off to one ticket."""

    def __init__(self, escalation: SqlEscalationService) -> None:
        self.escalation = escalation

    def __call__(self, application: Application, reason: str) -> str:
        ticket = self.escalation.open_ticket(
            kind="procedure_problem", priority="high", session_id=application.session_id,
            channel=application.channel, user_id=application.user_id,
            summary=f"{application.procedure} 申请 {application.application_id}：{reason}"[:1000],
            form_data={"application_id": application.application_id, "procedure": application.procedure,
                       **application.data},
            idempotency_key=f"application:{application.application_id}")
        return ticket.ticket_id


class Services:
    """One deployment's services, built lazily and once each. `knowledge_base` and `classifier`
    may be handed in already built (tests, evaluations): then they are used as they are."""

    def __init__(self, settings: Settings, *, knowledge_base: KnowledgeBase | None = None,
                 classifier: IntentClassifier | None = None, databases: Databases | None = None) -> None:
        self.settings = settings
        # The engines of this container: its own, or one a test shares among its containers.
        self.databases = databases or Databases()
        self._prepared_knowledge_base = knowledge_base
        self._prepared_classifier = classifier
        self._building = threading.RLock()

    # ---- conversations, channels and the ticket queue (no index, no model) ------------------

    @built_once
    def engine(self) -> Engine:
        """The deployment's database (settings.database_url), migrated to the newest schema."""
        return self.databases.engine(self.settings.resolved_database_url)

    @built_once
    def lock_holders(self) -> Engine:
        """The connections that hold PostgreSQL's keyed locks, shared by every lock of the container."""
        return self.databases.lock_holders(self.engine)

    @built_once
    def events(self) -> EventBus:
        """The bus with every listener subscribed: the only place listeners are wired."""
        bus = EventBus()
        bus.subscribe(WorkerReplied, ResidentDelivery(self.channels, self.conversations))
        bus.subscribe(TicketResolved, RatingRequest(self.conversations, self.channels, self.replies))
        return bus

    @built_once
    def replies(self) -> Replies:
        return Replies.load()

    @built_once
    def vault(self) -> Vault:
        """Encrypts ID and phone numbers at rest (settings.privacy.data_key)."""
        return Vault.from_settings(self.settings.privacy)

    @built_once
    def conversations(self) -> ConversationStore:
        return ConversationStore(self.engine, vault=self.vault,
                                 lock_timeout_s=self.settings.dialogue.turn_lock_timeout_s,
                                 lock_holders=self.lock_holders)

    @built_once
    def channels(self) -> ChannelRegistry:
        """How Linli's words reach residents, by conversation channel: each enabled channel's own
        outbound (assistant/channels.py), else the outbox the pages and integrations read."""
        registry = ChannelRegistry(self.engine)
        for plugin in enabled_channels(self.settings):
            if plugin.outbound is not None:
                registry.register(plugin.outbound(self))
        return registry

    @built_once
    def gate(self) -> MessageGate:
        """Every channel's messages reach the dialogue through here (assistant/residents/inbound.py)."""
        return MessageGate(self.residents, lambda: self.dialogue, self.limits,
                           self.settings.limits.messages_per_session_per_minute)

    @built_once
    def wechat_pushes(self) -> PushOutbox:
        """WeChat's customer-service push outbox (a worker's reply WeChat refused becomes a ticket note)."""
        api = WechatApi(self.settings.wechat, self.engine, lock_holders=self.lock_holders)
        return PushOutbox(self.engine, api, self.settings.wechat, on_failed=UndeliveredNote(self))

    @built_once
    def wechat(self) -> WechatService:
        """The WeChat channel's callbacks and processor; WechatDisabled (404) without a token."""
        return WechatService(self.settings, self.engine, self, self.wechat_pushes)

    @built_once
    def residents(self) -> ResidentSessions:
        return ResidentSessions(self.engine, self.settings, reserved=reserved_names(), lock_holders=self.lock_holders)

    @built_once
    def escalation(self) -> SqlEscalationService:
        return SqlEscalationService(self.engine, self.vault, self.settings.escalation, events=self.events)

    @built_once
    def feedback(self) -> FeedbackService:
        """Residents' 👍 / 👎 on answers (publishes FeedbackGiven)."""
        return FeedbackService(self.engine, self.settings.analytics, events=self.events)

    @built_once
    def analytics(self) -> AnalyticsService:
        """The administrators' analytics page's queries."""
        return AnalyticsService(self.engine, self.settings.analytics,
                                wording=self.feedback.wording)

    @built_once
    def kb_admin(self) -> KnowledgeAdmin:
        """Administrators' changes to the knowledge base, indexed in the background."""
        from assistant.kb_admin.service import KnowledgeAdmin  # noqa: PLC0415 - loads the knowledge base's modules

        # A cluster's replicas (api.background false) leave the jobs to `linli worker`.
        return KnowledgeAdmin(self.engine, self.settings.kb_admin,
                              lambda: self.knowledge_base, self.settings.data_dir / "kb-uploads",
                              run_here=self.settings.api.background)

    @built_once
    def users(self) -> UserStore:
        # Lazy: auth hashes a dummy password with argon2 when imported (~0.3 s of every `linli --help`).
        from assistant.escalation.auth import UserStore  # noqa: PLC0415

        return UserStore(self.engine, self.settings.escalation.token_ttl_hours)

    @built_once
    def limits(self) -> RateLimiter:
        """Rate limits shared across processes: the database, or Redis when `limits.redis_url` is set."""
        from assistant.security.limits import RateLimiter  # noqa: PLC0415 - `limits` is only needed by the server

        return RateLimiter.from_settings(self.settings.limits, self.engine)

    @built_once
    def procedures(self) -> ProcedureCatalogue:
        """The procedure files: the one list every part that files, routes or describes reads."""
        return ProcedureCatalogue(self.settings.connectors.procedures_dir)

    @built_once
    def applications(self) -> ApplicationService:
        """The application outbox: notices go to the resident's channel, and a worker takes over
        (a ticket) when filing keeps failing. Eligibility reads the indexed benefit tables."""
        connectors = self.settings.connectors
        return ApplicationService(
            self.engine, make_connector(connectors, self.procedures),
            procedures=self.procedures.get,
            notify=ApplicationNotices(self.channels, self.conversations),
            escalate=ApplicationHandOff(self.escalation),
            # The knowledge base, not its answerer: a rebuilt index gets a new answerer.
            benefit_tables=self.knowledge_base,
            max_attempts=connectors.max_attempts, retry_base_s=connectors.retry_base_s, vault=self.vault,
            limits=FilingLimits.from_settings(self.limits, self.settings.limits))

    # ---- the index and the models ------------------------------------------------------------
    # Imported where they are built: knowledge_base, intents and the engine pull in sklearn,
    # pypinyin and jieba (about 2 s), which ticket and account commands never need.

    @built_once
    def knowledge_base(self) -> KnowledgeBase:
        if self._prepared_knowledge_base is not None:
            return self._prepared_knowledge_base
        from assistant.knowledge import KnowledgeBase  # noqa: PLC0415 - see above

        return KnowledgeBase(self.settings)

    @built_once
    def classifier(self) -> IntentClassifier:
        if self._prepared_classifier is not None:
            return self._prepared_classifier
        from intents.classifier import IntentClassifier  # noqa: PLC0415 - see above

        return IntentClassifier(self.knowledge_base.embedder, self.knowledge_base.cache,
                                procedures_dir=self.procedures.directory)

    @built_once
    def dialogue(self) -> DialogueEngine:
        from assistant.dialogue.engine import DialogueEngine  # noqa: PLC0415 - see above
        from assistant.ops.metrics import count_message  # noqa: PLC0415 - prometheus, for the server and worker

        return DialogueEngine(self.knowledge_base, self.classifier, self.conversations, self.escalation,
                              self.settings.dialogue, replies=self.replies, applications=self.applications,
                              handoff_limit=self.limits,
                              handoffs_per_hour=self.settings.limits.handoffs_per_session_per_hour,
                              on_reply=count_message, procedures=self.procedures.get)

    # ---- speech ----------------------------------------------------------------------------

    @built_once
    def transcriber(self) -> Transcriber:
        """The speech model, loaded on the first voice message (seconds, and ~200 MB)."""
        from assistant.speech.service import create_transcriber  # noqa: PLC0415 - see above

        return create_transcriber(self.settings)

    @built_once
    def speech_corrector(self) -> SpeechCorrector:
        from assistant.speech.service import SpeechCorrector  # noqa: PLC0415 - see above

        speech = self.settings.speech
        learns_from_corpus = speech.corpus_correction or speech.sound_alike_correction
        return SpeechCorrector(self.settings, self.knowledge_base if learns_from_corpus else None)

    @built_once
    def speech(self) -> SpeechService:
        from assistant.speech.service import SpeechService  # noqa: PLC0415 - see above

        return SpeechService(self.settings, self.transcriber, self.speech_corrector)
