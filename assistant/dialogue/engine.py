"""The dialogue engine: one `handle()` per resident message. It reads the conversation's typed
state, makes the message readable, lets the first handler that applies answer it (the order is
declared once, in handlers.HANDLER_ORDER), and keeps both turns and the next state."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

from assistant.core.errors import InvalidQuestion
from assistant.core.settings import DialogueSettings
from assistant.dialogue.answers import PolicyAnswers
from assistant.dialogue.flows import DisputeIntake, FormFlow, FormPurpose, ProcedureFiling
from assistant.dialogue.handlers import Dialogue, build_router
from assistant.dialogue.patterns import AFFIRMATIVE_RE
from assistant.dialogue.ports import AnswerSource, IntentModel, RateLimit
from assistant.dialogue.receipts import MessageReceipts, StillProcessing, message_key
from assistant.dialogue.replies import Replies
from assistant.dialogue.reply import Reply
from assistant.dialogue.routing import Turn
from assistant.dialogue.state import ConversationState, FlowKind, PendingQuestion, state_changes
from assistant.dialogue.store import Conversation, ConversationStore
from assistant.dialogue.tickets import Handoffs
from assistant.escalation.base import EscalationService
from connectors.services.applications import ApplicationService
from connectors.services.procedures import Procedure, get_procedure
from knowledge_base.guards import check_question
from knowledge_base.text import detect_language

REPLY_TYPES = ("answer", "clarify", "form", "handoff", "emergency", "smalltalk", "refusal")


def _session_key(session_id: str | None) -> str:
    return (session_id or "").strip()[:128] or "anonymous"


class DialogueEngine:
    def __init__(self, knowledge_base: AnswerSource, classifier: IntentModel, store: ConversationStore,
                 escalation: EscalationService, settings: DialogueSettings, *, replies: Replies | None = None,
                 applications: ApplicationService | None = None, today: Callable[[], date] = date.today,
                 handoff_limit: RateLimit | None = None, handoffs_per_hour: int = 3,
                 on_reply: Callable[[str, str], None] | None = None,
                 procedures: Callable[[str], Procedure] | None = None) -> None:
        self.kb = knowledge_base
        self.classifier = classifier
        self.store = store
        self.escalation = escalation
        self.settings = settings
        self.replies = replies or Replies.load()
        self.receipts = MessageReceipts(store.engine)
        # Told (channel, reply type) of every reply kept: the server counts them for /metrics.
        self.on_reply = on_reply or (lambda _channel, _reply_type: None)
        answers = PolicyAnswers(knowledge_base, self.replies, settings.mid_form_question_threshold)
        handoffs = Handoffs(escalation, self.replies, limit=handoff_limit, per_hour=handoffs_per_hour)
        purposes: dict[FlowKind, FormPurpose] = {
            "dispute": DisputeIntake(handoffs, self.replies,
                                     {"zh": settings.dispute_followup_zh, "en": settings.dispute_followup_en}),
        }
        # Filing procedures needs the application outbox; without it Linli explains how to file.
        if applications is not None:
            purposes["procedure"] = ProcedureFiling(applications, self.replies, knowledge_base.document_title, today)
        self.dialogue = Dialogue(
            intents=classifier, escalation=escalation, replies=self.replies, answers=answers,
            forms=FormFlow(purposes, answers, self.replies, today), handoffs=handoffs, applications=applications,
            procedures=procedures or (applications.get_procedure if applications is not None else get_procedure),
            form_emergency_threshold=settings.form_emergency_threshold,
            answer_when_unsure=settings.answer_when_unsure, route=self._route)
        self.router = build_router(self.dialogue)

    # ---- entry points ------------------------------------------------------------------------

    def handle(self, session_id: str, text: str, channel: str = "web", user_id: str = "anonymous",
               message_id: str | None = None, centre: str | None = None) -> Reply:
        """The reply to one message. With a `message_id` the message is processed once: a repeat
        (a resend, a retry after a timeout) gets the first copy's reply and changes nothing."""
        session_id = _session_key(session_id)
        with self.store.one_at_a_time(session_id):
            return self._handle_once(session_id, text, channel, user_id, message_id, centre)

    def _handle_once(self, session_id: str, text: str, channel: str, user_id: str, message_id: str | None,
                     centre: str | None) -> Reply:
        if not message_id:
            return self._handle(session_id, text, channel, user_id, None, centre)
        key = message_key(session_id, message_id)
        try:
            # Under the conversation's lock: a copy still unfinished was abandoned by a dead process.
            first = self.receipts.claim(key, session_id, serialised=True)
        except StillProcessing:
            language = self.store.get_or_create(session_id, channel, user_id).language
            return Reply("clarify", self.replies.say("still_processing", language), session_id=session_id,
                         trace={"duplicate_of": message_id})
        if first is not None:
            return Reply(first["reply_type"], first["text"], first.get("citations", []),
                         first.get("quick_replies", []), first.get("ticket_id"), session_id,
                         trace={"duplicate_of": message_id}, turn_id=first.get("turn_id"))
        try:
            # The reply's receipt is kept with its turns (`_remember`), in one transaction.
            return self._handle(session_id, text, channel, user_id, message_id, centre)
        except BaseException:
            self.receipts.release(key)
            raise

    def _handle(self, session_id: str, text: str, channel: str, user_id: str, message_id: str | None,
                centre: str | None) -> Reply:
        started = time.perf_counter()
        conversation = self.store.get_or_create(session_id, channel, user_id)
        conversation.message_key = message_key(session_id, message_id) if message_id else None
        conversation.centre = conversation.centre or centre
        raw = text if isinstance(text, str) else ""
        trace: dict[str, Any] = {"intent": None, "confidence": None, "rewritten_query": None, "doc_ids": []}
        state = conversation.state.model_copy(deep=True)
        state.pending = None  # a pending question is answered by this message or not at all
        try:
            text = check_question(raw, self.settings.max_message_chars)
        except InvalidQuestion as exc:
            reply = self._unreadable(conversation, raw, exc)
        else:
            reply = self._route(self._turn(conversation, text, trace), state)
        reply.session_id = session_id
        trace.update(reply_type=reply.reply_type, latency_ms=round((time.perf_counter() - started) * 1000, 1))
        reply.trace = trace
        before, conversation.state = conversation.state, state
        return self._remember(conversation, raw, reply, before)

    def ask_back(self, session_id: str, heard: str, question: str, meant: str | None, channel: str = "web",
                 user_id: str = "anonymous") -> Reply:
        """Speech heard something too unlikely to act on (an 886-year-old): ask instead of
        answering, and keep the likely meaning so that a plain "是的" goes on with it."""
        session_id = _session_key(session_id)
        with self.store.one_at_a_time(session_id):
            conversation = self.store.get_or_create(session_id, channel, user_id)
            before = conversation.state.model_copy(deep=True)
            conversation.state.pending = PendingQuestion(kind="heard_meant", meant=meant) if meant else None
            reply = Reply("clarify", question, quick_replies=[meant] if meant else [], session_id=session_id,
                          trace={"intent": None, "reply_type": "clarify", "asked_back": heard})
            return self._remember(conversation, heard, reply, before)

    # ---- one message -------------------------------------------------------------------------

    def _unreadable(self, conversation: Conversation, raw: str, problem: InvalidQuestion) -> Reply:
        """An empty, over-long or unreadable message gets a plain reply and never reaches the handlers."""
        language = conversation.language
        if not raw.strip():
            return Reply("clarify", self.replies.say("empty", language), quick_replies=self._menu(language))
        if "limit" in problem.details:
            return Reply("refusal", self.replies.say("too_long", detect_language(raw[:200]), length=len(raw.strip()),
                                                     limit=self.settings.max_message_chars))
        return Reply("clarify", self.replies.say("unreadable", language), quick_replies=self._menu(language))

    def _turn(self, conversation: Conversation, text: str, trace: dict[str, Any]) -> Turn:
        language = conversation.language = detect_language(text, default=conversation.language)
        heard = conversation.state.pending_of("heard_meant")
        if heard and heard.meant and AFFIRMATIVE_RE.match(text):
            text = heard.meant  # "是的" to "您是说86岁吗？" stands for what speech probably heard
        held = self.escalation.held_ticket(conversation.session_id)
        return Turn(text, language, conversation, conversation.state, held, self.settings, self.classifier.predict,
                    trace)

    def _route(self, turn: Turn, state: ConversationState) -> Reply:
        return self.router.route(turn, state)

    def _remember(self, conversation: Conversation, said: str, reply: Reply, before: ConversationState) -> Reply:
        """Keep both turns, the conversation's state and the message's receipt, all or none (a
        process killed half-way leaves the message to be answered again, never half-kept); every
        reply goes through here. The reply's turn records what it changed in the state (`changes`),
        so the conversation can be replayed turn by turn."""
        reply.trace["changes"] = state_changes(before, conversation.state)
        with self.store.transaction() as conn:
            asked = self.store.add_turn(conversation.session_id, "resident", said[: self.settings.max_message_chars],
                                        conn=conn)
            # The reply names the question it answers: the analytics page reads refused and 👎
            # questions by it, one row by its key, not a search of the conversation per refusal.
            reply.turn_id = self.store.add_turn(conversation.session_id, "assistant", reply.text, reply.reply_type,
                                                {**reply.trace, "question_turn_id": asked}, conn=conn)
            self.store.save(conversation, conn)
            if conversation.message_key:
                self.receipts.finish(conversation.message_key, reply.public(), conn)
        self.on_reply(conversation.channel, reply.reply_type)
        return reply

    def _menu(self, language: str) -> list[str]:
        return [self.replies.label(k, language) for k in ("policy_question", "dispute_mediation", "human_request")]
