"""Every way Linli can take a resident's message, one small handler each, and the ONE place
where their priority is declared: `HANDLER_ORDER`. The router (routing.py) gives a message to
the first handler that applies. `applies` only reads the conversation; `handle` writes the
next state. docs/architecture.md shows the same list.

Before routing, the engine turns an unreadable, empty or over-long message into a plain reply,
and a yes to "您是说86岁吗？" into what speech probably heard (engine.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from assistant.dialogue.answers import PolicyAnswers
from assistant.dialogue.flows import FormFlow
from assistant.dialogue.patterns import (
    AFFIRMATIVE_RE,
    CANCEL_RE,
    CONFIRM_RE,
    DISPUTE_RE,
    FRUSTRATION_RE,
    RATING_RE,
    STATUS_QUERY_RE,
    looks_like_followup,
)
from assistant.dialogue.ports import IntentModel
from assistant.dialogue.replies import Replies
from assistant.dialogue.reply import Reply
from assistant.dialogue.routing import Router, Turn
from assistant.dialogue.state import ConversationState, PendingQuestion
from assistant.dialogue.tickets import Handoffs
from assistant.escalation.base import EscalationService
from connectors.services.applications import ApplicationService, status_name
from connectors.services.procedures import Procedure
from knowledge_base.text import detect_language


@dataclass
class Dialogue:
    """What the handlers share: the wiring of one engine."""

    intents: IntentModel
    escalation: EscalationService
    replies: Replies
    answers: PolicyAnswers
    forms: FormFlow
    handoffs: Handoffs
    applications: ApplicationService | None
    # A procedure by id, from the catalogue the container built (connectors.procedures_dir).
    procedures: Callable[[str], Procedure]
    form_emergency_threshold: float
    answer_when_unsure: bool
    # Routes a message again from the top of the list (the rest of "算了，…").
    route: Callable[[Turn, ConversationState], Reply]


class DialogueHandler(ABC):
    name: ClassVar[str]

    def __init__(self, dialogue: Dialogue) -> None:
        self.dialogue = dialogue
        self.replies = dialogue.replies

    @abstractmethod
    def applies(self, turn: Turn) -> bool: ...

    @abstractmethod
    def handle(self, turn: Turn, state: ConversationState) -> Reply: ...


# ---- a person holds the conversation, or someone is in danger --------------------------------


class WorkerHolds(DialogueHandler):
    """A worker holds this conversation: the bot stays quiet and passes the message on. Only a
    keyword-rule emergency still gets the emergency numbers at once."""

    name = "worker_holds"

    def applies(self, turn: Turn) -> bool:
        return turn.held is not None

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        held = turn.held
        assert held is not None
        self.dialogue.escalation.record_resident_message(held.ticket_id, turn.text)
        turn.trace.update(held_by=held.assignee, ticket_id=held.ticket_id)
        matched = self.dialogue.intents.rule_match(turn.text)
        if matched and matched[0] == "emergency":
            turn.trace.update(intent="emergency", confidence=1.0, source="rule")
            return Reply("emergency", self.replies.say("emergency", turn.language, ticket_id=held.ticket_id),
                         ticket_id=held.ticket_id)
        return Reply("handoff", "", ticket_id=held.ticket_id)


class Emergency(DialogueHandler):
    """A keyword rule, or the model sure enough. Inside a form the model must be surer, so a
    field answer ("楼上602的住户") is not taken for an emergency."""

    name = "emergency"

    def applies(self, turn: Turn) -> bool:
        if turn.intent != "emergency":
            return False
        threshold = self.dialogue.form_emergency_threshold if turn.state.flow else turn.settings.intent_threshold
        return turn.prediction.source == "rule" or turn.prediction.confidence >= threshold

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        return self.dialogue.handoffs.emergency(turn, state)


# ---- answers to what Linli just asked ------------------------------------------------------------


class SafetyCheckAnswered(DialogueHandler):
    """"您是不是遇到了紧急情况？" answered yes."""

    name = "safety_check_answered"

    def applies(self, turn: Turn) -> bool:
        return turn.state.pending_of("safety_check") is not None and (
            turn.intent == "emergency" or bool(AFFIRMATIVE_RE.match(turn.text)))

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        return self.dialogue.handoffs.emergency(turn, state)


class RatingGiven(DialogueHandler):
    """A 1–5 after a resolved ticket asked for a rating."""

    name = "rating_given"

    def applies(self, turn: Turn) -> bool:
        return turn.state.pending_of("rating") is not None and bool(RATING_RE.match(turn.text))

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        pending = turn.state.pending_of("rating")
        match = RATING_RE.match(turn.text)
        assert pending is not None and pending.ticket_id and match
        self.dialogue.escalation.record_rating(pending.ticket_id, int(match.group(1)))
        return Reply("smalltalk", self.replies.say("rating_thanks", turn.language), ticket_id=pending.ticket_id)


class Cancel(DialogueHandler):
    """"算了" drops the active form; "算了，那80岁的高龄补贴是多少" then deals with the rest."""

    name = "cancel"

    def applies(self, turn: Turn) -> bool:
        return bool(CANCEL_RE.match(turn.text))

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        match = CANCEL_RE.match(turn.text)
        assert match is not None
        rest = turn.text[match.end():].strip(" ，,。.!！?？")
        had_form, state.flow = state.flow is not None, None
        if not rest:
            return Reply("smalltalk", self.replies.say("form_cancelled" if had_form else "nothing_to_cancel",
                                                       turn.language))
        reply = self.dialogue.route(turn.narrowed(rest, detect_language(rest, default=turn.language), state), state)
        if had_form:
            reply.text = f"{self.replies.say('form_cancelled_short', turn.language)}{reply.text}"
        return reply


class AskedForPerson(DialogueHandler):
    """"转人工" (a keyword rule): a person at once. A form in progress goes with the ticket."""

    name = "asked_for_person"

    def applies(self, turn: Turn) -> bool:
        return turn.intent == "human_request" and turn.prediction.source == "rule"

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        flow, state.flow = state.flow, None
        if flow is not None and flow.kind == "procedure":
            return self.dialogue.handoffs.open(turn, state, kind="procedure_problem", reply_key="handoff",
                                               summary=turn.text, form_data={"procedure": flow.form_id, **flow.values})
        return self.dialogue.handoffs.open(turn, state, kind="dispute" if flow else "human_request",
                                           reply_key="handoff", summary=turn.text,
                                           form_data=dict(flow.values) if flow else None)


class PersonAccepted(DialogueHandler):
    """Linli offered a person after failing to help, and the resident said yes: the worker sees why."""

    name = "person_accepted"

    def applies(self, turn: Turn) -> bool:
        return turn.state.pending_of("offered_human") is not None and bool(
            AFFIRMATIVE_RE.match(turn.text) or CONFIRM_RE.match(turn.text))

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        pending = turn.state.pending_of("offered_human")
        question = (pending.question if pending else None) or turn.text
        return self.dialogue.handoffs.open(turn, state, kind="failed_answer", reply_key="handoff",
                                           summary=self.replies.say("failed_answer_summary", "zh", question=question))


# ---- filing: status and objections --------------------------------------------------------------


class ApplicationStatus(DialogueHandler):
    """"我的申请到哪一步了" (outside a filing, which reads its own answers)."""

    name = "application_status"

    def applies(self, turn: Turn) -> bool:
        return self.dialogue.applications is not None and turn.state.filing() is None and bool(
            STATUS_QUERY_RE.search(turn.text))

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        applications = self.dialogue.applications
        assert applications is not None
        language = turn.language
        applications.refresh()
        found = applications.for_resident(owner=turn.conversation.owner, session_id=turn.conversation.session_id)
        if not found:
            return Reply("answer", self.replies.say("filing_none", language))
        lines = [self.replies.say("filing_status_line", language,
                                  title=self.dialogue.procedures(a.procedure).title[language],
                                  reference=a.application_id,
                                  status=status_name(a.status, language)) for a in found]
        reply = Reply("answer", self.replies.say("filing_status", language, lines="\n".join(lines)))
        rejected = next((a.application_id for a in found if a.status == "rejected"), None)
        if rejected:
            state.pending = PendingQuestion(kind="rejected_application", reference=rejected)
            reply.text += self.replies.say("filing_dispute_hint", language)
            reply.quick_replies = [self.replies.label("dispute_rejection", language)]
        return reply


class RejectionDisputed(DialogueHandler):
    """"我不服" right after hearing of a rejection: a worker takes the application up."""

    name = "rejection_disputed"

    def applies(self, turn: Turn) -> bool:
        return self.dialogue.applications is not None and turn.state.pending_of("rejected_application") is not None \
            and bool(DISPUTE_RE.search(turn.text))

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        pending = turn.state.pending_of("rejected_application")
        assert pending is not None and pending.reference and self.dialogue.applications is not None
        ticket_id = self.dialogue.applications.dispute(pending.reference, turn.text)
        return Reply("handoff", self.replies.say("filing_disputed", turn.language, reference=pending.reference,
                                                 ticket_id=ticket_id), ticket_id=ticket_id)


# ---- a form in progress -----------------------------------------------------------------------


class FormInProgress(DialogueHandler):
    """Inside a form a message is a field answer unless it is plainly something else: a
    correction, the confirmation, or a side question (answered, then the form goes on)."""

    name = "form_in_progress"

    def applies(self, turn: Turn) -> bool:
        return turn.state.flow is not None and self.dialogue.forms.can_run(turn.state.flow.kind)

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        reply = self.dialogue.forms.handle(turn, state)
        if turn.intent == "emergency" and turn.confident:
            # Read as a field answer, but the numbers are given in case it was not one.
            reply.text = f"{self.replies.say('safety_line', turn.language)}\n{reply.text}"
        return reply


# ---- following the thread ---------------------------------------------------------------------


class FollowUp(DialogueHandler):
    """"那80岁呢？" / "需要带什么材料？" after an answered question: asked about the same topic."""

    name = "follow_up"

    def applies(self, turn: Turn) -> bool:
        return turn.state.topic is not None and looks_like_followup(turn.text)

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        return self.dialogue.answers.must_answer(turn, state, turn.text, followup=True)


class MaybeEmergency(DialogueHandler):
    """A weak emergency guess still gets the numbers at once, and a yes makes it urgent."""

    name = "maybe_emergency"

    def applies(self, turn: Turn) -> bool:
        return turn.intent == "emergency"

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        state.pending = PendingQuestion(kind="safety_check")
        language = turn.language
        return Reply("clarify", self.replies.say("safety_check", language),
                     quick_replies=[self.replies.label("emergency", language),
                                    self.replies.label("not_emergency", language)])


class NotHelped(DialogueHandler):
    """"没用" or the same question again: the last reply did not help, so offer a person. A
    longer message with such words is usually a complaint and is handled as one."""

    name = "not_helped"

    def applies(self, turn: Turn) -> bool:
        if FRUSTRATION_RE.search(turn.text) and len(turn.text) <= 12:
            return True
        last = turn.state.last_question
        return bool(last) and _letters(last or "") == _letters(turn.text)

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        state.pending = PendingQuestion(kind="offered_human", question=turn.state.last_question or turn.text)
        return Reply("clarify", self.replies.say("offer_human", turn.language),
                     quick_replies=[self.replies.label("human_request", turn.language)])


# ---- intents -----------------------------------------------------------------------------------


class WantsPerson(DialogueHandler):
    name = "wants_person"

    def applies(self, turn: Turn) -> bool:
        return turn.intent == "human_request" and turn.confident

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        return self.dialogue.handoffs.open(turn, state, kind="human_request", reply_key="handoff", summary=turn.text)


class Complaint(DialogueHandler):
    name = "complaint"

    def applies(self, turn: Turn) -> bool:
        return turn.intent == "complaint" and turn.confident

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        return self.dialogue.handoffs.open(turn, state, kind="complaint", reply_key="complaint", summary=turn.text)


class Unsure(DialogueHandler):
    """The classifier is unsure. Most residents' questions sit between intents it knows; the
    corpus, not the classifier, decides whether there is an answer. A fragment with no topic yet
    (在哪办, 需要带什么材料) is never guessed at, and without a grounded answer Linli asks."""

    name = "unsure"

    def applies(self, turn: Turn) -> bool:
        return not turn.confident

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        if self.dialogue.answer_when_unsure and not looks_like_followup(turn.text):
            reply = self.dialogue.answers.answer(turn, state, turn.text, clarify_if_refused=True)
            if reply is not None:
                return reply
        language = turn.language
        prediction = turn.prediction
        options = [prediction.intent] + [intent for intent, _ in prediction.alternatives]
        quick = [self.replies.label(i, language) for i in options if self.replies.has_label(i)][:3]
        person = self.replies.label("human_request", language)
        if person not in quick:
            quick.append(person)
        joined = ("、" if language == "zh" else ", ").join(quick)
        return Reply("clarify", self.replies.say("clarify_options", language, options=joined), quick_replies=quick)


class SmallTalk(DialogueHandler):
    name = "small_talk"

    def applies(self, turn: Turn) -> bool:
        return turn.intent in ("greeting", "thanks_bye", "out_of_scope")

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        return Reply("smalltalk", self.replies.say(turn.intent, turn.language))


class DisputeIntakeStart(DialogueHandler):
    """A dispute needing mediation: the intake form starts."""

    name = "dispute_intake"

    def applies(self, turn: Turn) -> bool:
        return turn.intent == "dispute_mediation" and self.dialogue.forms.can_run("dispute")

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        return self.dialogue.forms.start(turn, state, "dispute", "dispute_mediation")


class ProcedureRequest(DialogueHandler):
    """A filing request starts the procedure's form; without a connector it gets the how-to
    from the corpus and the ways to file today (at the centre, or through a worker)."""

    name = "procedure_request"

    def applies(self, turn: Turn) -> bool:
        return turn.intent == "service_procedure"

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        procedure_id = turn.prediction.procedure
        turn.trace["procedure"] = procedure_id
        if procedure_id is None:
            return self.dialogue.answers.must_answer(turn, state, turn.text)
        if self.dialogue.forms.can_run("procedure"):
            return self.dialogue.forms.start(turn, state, "procedure", procedure_id)
        language = turn.language
        title = self.dialogue.procedures(procedure_id).title[language]
        reply = self.dialogue.answers.must_answer(turn, state, turn.text)
        if reply.reply_type == "refusal":
            how_to = self.replies.say("procedure_how_to_question", language, title=title)
            reply = self.dialogue.answers.must_answer(turn, state, how_to)
        reply.text = f"{reply.text}\n\n{self.replies.say('procedure_info', language, title=title)}"
        reply.quick_replies = [self.replies.label("human_request", language)]
        return reply


class PolicyQuestion(DialogueHandler):
    """Everything else: the grounded answer with citations, or a plain refusal with a person offered."""

    name = "policy_question"

    def applies(self, turn: Turn) -> bool:
        return True

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        return self.dialogue.answers.must_answer(turn, state, turn.text)


def _letters(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


# The routing order, written once. Earlier wins.
HANDLER_ORDER: tuple[type[DialogueHandler], ...] = (
    WorkerHolds,  # a worker holds the conversation: the bot is quiet
    Emergency,  # someone is in danger
    SafetyCheckAnswered,  # pending question: "is this an emergency?" — yes
    RatingGiven,  # pending question: rate the resolved ticket
    Cancel,  # "算了": drop the form, route the rest
    AskedForPerson,  # "转人工" by keyword, even mid-form
    PersonAccepted,  # pending question: "shall I pass you to a person?" — yes
    ApplicationStatus,  # "我的申请到哪一步了"
    RejectionDisputed,  # pending question: a rejection was just reported — "我不服"
    FormInProgress,  # a dispute intake or a procedure filing is being filled in
    FollowUp,  # "那80岁呢？" after an answer
    MaybeEmergency,  # an unsure emergency: ask, with the numbers
    NotHelped,  # "没用" / the same question again: offer a person
    WantsPerson,  # a confident request for a person
    Complaint,  # a confident complaint
    Unsure,  # the classifier is unsure: answer from the corpus if it can, else ask
    SmallTalk,  # greetings, thanks, out of scope
    DisputeIntakeStart,  # a dispute for mediation: start the intake form
    ProcedureRequest,  # "我想申请高龄津贴": start the filing
    PolicyQuestion,  # everything else: grounded answer or refusal
)


def build_router(dialogue: Dialogue) -> Router:
    return Router([handler_class(dialogue) for handler_class in HANDLER_ORDER])
