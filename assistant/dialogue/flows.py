"""One form flow for every form a resident fills in conversation — the dispute intake and each
procedure's filing (Rasa's one form action for every form). Fields come from YAML through the
one form engine (connectors/forms): asked one at a time, each answer validated as it comes, a
read-back with identity and phone numbers masked, "修改 电话 …" to correct, "取消" to drop, and
nothing submitted without an explicit "确认".

What differs between forms is only what they are for, a `FormPurpose`: how the form starts,
what is checked on the way (a procedure's eligibility), and what submitting does (a dispute
opens a ticket for a mediator; a procedure files an application with the government backend)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from assistant.dialogue.answers import PolicyAnswers
from assistant.dialogue.patterns import CONFIRM_RE, CORRECT_RE, QUESTION_RE, without_field_label
from assistant.dialogue.replies import Replies
from assistant.dialogue.reply import Reply
from assistant.dialogue.routing import Turn
from assistant.dialogue.state import ActiveForm, ConversationState, FlowKind
from assistant.dialogue.tickets import Handoffs
from connectors.forms import FieldError, FormField, FormSpec, load_form
from connectors.services.applications import ApplicationService, Ineligible, InvalidApplication, TooManyApplications
from connectors.services.procedures import Procedure

FORMS_DIR = Path(__file__).resolve().parent.parent / "data" / "forms"


class FormPurpose(Protocol):
    kind: FlowKind

    def spec(self, form_id: str) -> FormSpec: ...

    def intro(self, form_id: str, language: str) -> str:
        """What Linli says before the first question."""
        ...

    def after_answer(self, turn: Turn, state: ConversationState, field: FormField) -> Reply | None:
        """A reply that must come at once after this answer (e.g. "not eligible"), else None."""
        ...

    def read_back(self, turn: Turn, state: ConversationState, prefix: str) -> Reply:
        """Every answer read back for confirmation (or why the form cannot go ahead)."""
        ...

    def submit(self, turn: Turn, state: ConversationState) -> Reply: ...


def stored_value(value: str | int | date) -> str | int:
    return value.isoformat() if isinstance(value, date) else value


class FormFlow:
    def __init__(self, purposes: dict[FlowKind, FormPurpose], answers: PolicyAnswers, replies: Replies,
                 today: Callable[[], date] = date.today) -> None:
        self.purposes = purposes
        self.answers = answers
        self.replies = replies
        self.today = today

    def can_run(self, kind: FlowKind) -> bool:
        return kind in self.purposes

    # ---- starting and asking ----------------------------------------------------------------

    def start(self, turn: Turn, state: ConversationState, kind: FlowKind, form_id: str) -> Reply:
        purpose = self.purposes[kind]
        spec = purpose.spec(form_id)
        state.flow = ActiveForm(kind=kind, form_id=spec.id, values=spec.prefill(turn.text, self.today()),
                                opening=turn.text[:500] if kind == "dispute" else None,
                                submission_key=uuid.uuid4().hex[:12] if kind == "procedure" else None)
        return self.ask_next(turn, state, prefix=purpose.intro(spec.id, turn.language))

    def ask_next(self, turn: Turn, state: ConversationState, prefix: str = "") -> Reply:
        assert state.flow is not None
        purpose = self.purposes[state.flow.kind]
        pending = purpose.spec(state.flow.form_id).next_missing(state.flow.values)
        if pending is None:
            return purpose.read_back(turn, state, prefix)
        language = turn.language
        quick = [c.label(language) for c in pending.choices]
        return Reply("form", prefix + pending.prompt[language],
                     quick_replies=[*quick, self.replies.label("cancel", language)])

    def resume_prompt(self, state: ConversationState, language: str) -> str:
        """The question the form is waiting for, to repeat after a side question."""
        assert state.flow is not None
        spec = self.purposes[state.flow.kind].spec(state.flow.form_id)
        pending = spec.next_missing(state.flow.values)
        if pending is not None:
            return pending.prompt[language]
        return self.replies.say("form_resume_confirm", language)

    # ---- answers ------------------------------------------------------------------------------

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        """A message while a form is active: a correction, the confirmation, a side question, or
        the answer to the pending field."""
        flow = state.flow
        assert flow is not None
        purpose = self.purposes[flow.kind]
        spec = purpose.spec(flow.form_id)
        text, language = turn.text, turn.language
        correction = CORRECT_RE.match(text)
        if correction:
            return self._correct(turn, state, spec, correction.group(1))
        if flow.confirming and CONFIRM_RE.match(text):
            return purpose.submit(turn, state)
        if QUESTION_RE.search(text):
            if self.answers.is_side_question(turn):
                reply = self.answers.must_answer(turn, state, text)
                reply.text = f"{reply.text}\n\n{self.replies.say('form_resume', language)}" \
                             f"{self.resume_prompt(state, language)}"
                return reply
            if turn.intent in ("dispute_mediation", "human_request", "complaint"):
                return self.ask_next(turn, state, prefix=self.replies.say(f"{flow.kind}_reassure", language))
        if flow.confirming:
            return purpose.read_back(turn, state, prefix=self.replies.say("filing_confirm_hint", language))
        pending = spec.next_missing(flow.values)
        if pending is None:
            return self.ask_next(turn, state)
        try:
            flow.values[pending.name] = stored_value(pending.parse(text, self.today()))
        except FieldError as exc:
            return self._invalid(exc, language)
        return purpose.after_answer(turn, state, pending) or self.ask_next(turn, state)

    def _correct(self, turn: Turn, state: ConversationState, spec: FormSpec, request: str) -> Reply:
        assert state.flow is not None
        language = turn.language
        field = spec.find_field(request)
        if field is None:
            return self.ask_next(turn, state, prefix=self.replies.say("form_which_field", language))
        raw = without_field_label(request, (field.label["zh"], field.label["en"], field.name))
        try:
            state.flow.values[field.name] = stored_value(field.parse(raw, self.today()))
        except FieldError as exc:
            return self._invalid(exc, language)
        state.flow.confirming = False
        return self.ask_next(turn, state)

    def _invalid(self, error: FieldError, language: str) -> Reply:
        quick = [self.replies.label("cancel", language)]
        if error.needs_worker:
            # The answer may be right, but only a person can check it: offer one, not a retry.
            quick.insert(0, self.replies.label("human_request", language))
        return Reply("form", error.message(language), quick_replies=quick)


class DisputeIntake:
    """The dispute-mediation intake: submitting opens a ticket for a community mediator."""

    kind: FlowKind = "dispute"

    def __init__(self, handoffs: Handoffs, replies: Replies, followup: dict[str, str],
                 forms_dir: Path = FORMS_DIR) -> None:
        self.handoffs = handoffs
        self.replies = replies
        self.followup = followup
        self.forms_dir = forms_dir
        self._specs: dict[str, FormSpec] = {}

    def spec(self, form_id: str) -> FormSpec:
        if form_id not in self._specs:
            self._specs[form_id] = load_form(self.forms_dir / f"{form_id}.yaml")
        return self._specs[form_id]

    def intro(self, form_id: str, language: str) -> str:
        return self.replies.say("form_intro", language)

    def after_answer(self, turn: Turn, state: ConversationState, field: FormField) -> Reply | None:
        return None

    def read_back(self, turn: Turn, state: ConversationState, prefix: str) -> Reply:
        assert state.flow is not None
        language = turn.language
        state.flow.confirming = True
        summary = self.spec(state.flow.form_id).summary(state.flow.values, language)
        return Reply("form", prefix + self.replies.say("form_confirm", language, summary=summary),
                     quick_replies=[self.replies.label("confirm", language), self.replies.label("cancel", language)])

    def submit(self, turn: Turn, state: ConversationState) -> Reply:
        assert state.flow is not None
        spec = self.spec(state.flow.form_id)
        values: dict[str, Any] = dict(state.flow.values)
        dispute_type = spec.field("dispute_type").display(values["dispute_type"], "zh")
        state.flow = None
        reply = self.handoffs.open(
            turn, state, kind="dispute", reply_key="handoff", priority="urgent" if values.get("urgency") == "urgent"
            else "high", summary=f"{dispute_type}：{str(values.get('description', ''))[:150]}", form_data=values)
        done = (spec.done or {}).get(turn.language) or self.replies.say("handoff", turn.language,
                                                                         ticket_id=reply.ticket_id)
        reply.text = done.format(ticket_id=reply.ticket_id, followup_zh=self.followup["zh"],
                                 followup_en=self.followup["en"])
        return reply


class ProcedureFiling:
    """A government procedure: eligibility checked against the corpus's rules as soon as the
    ID number shows it, then filed exactly once through the application outbox."""

    kind: FlowKind = "procedure"

    def __init__(self, applications: ApplicationService, replies: Replies, document_title: Callable[[str], str],
                 today: Callable[[], date] = date.today) -> None:
        self.applications = applications
        self.replies = replies
        self.document_title = document_title
        self.today = today

    def procedure(self, form_id: str) -> Procedure:
        return self.applications.get_procedure(form_id)

    def spec(self, form_id: str) -> FormSpec:
        return self.procedure(form_id).form

    def intro(self, form_id: str, language: str) -> str:
        procedure = self.procedure(form_id)
        separator = "、" if language == "zh" else ", "
        materials = separator.join(procedure.materials.get(language) or []) or "—"
        return self.replies.say("filing_intro", language, title=procedure.title[language], materials=materials)

    def after_answer(self, turn: Turn, state: ConversationState, field: FormField) -> Reply | None:
        assert state.flow is not None
        if field.type != "cn_id":
            return None
        # Say "not eligible" as soon as the ID shows it, not after every other question.
        procedure = self.procedure(state.flow.form_id)
        eligibility = procedure.check_eligibility({field.name: state.flow.values[field.name]}, self.today(),
                                                  self.applications.benefit_tables)
        if eligibility.eligible:
            return None
        state.flow = None
        return self._ineligible(eligibility.reason(turn.language), eligibility.doc_id, turn.language)

    def read_back(self, turn: Turn, state: ConversationState, prefix: str) -> Reply:
        flow = state.flow
        assert flow is not None
        language = turn.language
        procedure = self.procedure(flow.form_id)
        try:
            values = self.applications.check(procedure.id, flow.values, self.today())
        except Ineligible as exc:
            state.flow = None
            reply = self._ineligible(exc.message(language), exc.citations[0]["doc_id"] if exc.citations else None,
                                     language)
            reply.text = prefix + reply.text
            return reply
        except InvalidApplication as exc:
            # A value the field accepted but the whole application does not (e.g. the backend's rules).
            first = exc.errors[0]
            flow.values.pop(first["field"], None)
            prompt = procedure.form.field(first["field"]).prompt[language]
            said = first["message_en"] if language == "en" else first["message"]
            return Reply("form", f"{prefix}{said}\n{prompt}",
                         quick_replies=[self.replies.label("cancel", language)])
        eligibility = procedure.check_eligibility(values, self.today(), self.applications.benefit_tables)
        flow.confirming = True
        note = eligibility.reason(language)
        text = self.replies.say("filing_confirm", language, title=procedure.title[language],
                                summary=procedure.form.summary(flow.values, language))
        return Reply("form", prefix + text + (f"\n{note}" if note else ""),
                     quick_replies=[self.replies.label("confirm", language), self.replies.label("cancel", language)])

    def submit(self, turn: Turn, state: ConversationState) -> Reply:
        flow = state.flow
        assert flow is not None
        state.flow = None
        procedure = self.procedure(flow.form_id)
        conversation = turn.conversation
        try:
            application = self.applications.confirm(
                procedure.id, flow.values, session_id=conversation.session_id, channel=conversation.channel,
                user_id=conversation.user_id, idempotency_key=f"{conversation.session_id}:{flow.submission_key}",
                today=self.today(), owner=conversation.owner, centre=conversation.centre, language=turn.language)
        except TooManyApplications as exc:
            return Reply("refusal", exc.message(turn.language),
                         quick_replies=[self.replies.label("human_request", turn.language)])
        if application.status == "queued":
            application = self.applications.deliver_now(application.application_id)
        key = "filing_submitted" if application.status == "submitted" else "filing_queued"
        return Reply("answer", self.replies.say(key, turn.language, title=procedure.title[turn.language],
                                                reference=application.application_id,
                                                backend_reference=application.backend_reference or ""))

    def _ineligible(self, reason: str, doc_id: str | None, language: str) -> Reply:
        citations = [{"doc_id": doc_id, "title": self.document_title(doc_id), "chunk_id": "", "text": ""}] \
            if doc_id else []
        return Reply("refusal", self.replies.say("filing_ineligible", language, reason=reason), citations=citations,
                     quick_replies=[self.replies.label("human_request", language)])
