"""Filing a government procedure in conversation: the procedure's own fields asked one by one,
each validated as it comes, an eligibility check against the corpus's rules, a read-back with
the ID and phone masked, and nothing filed without an explicit "确认"."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from assistant.dialogue.forms import CONFIRM_RE, CORRECT_RE
from assistant.dialogue.reply import Reply
from assistant.dialogue.store import Conversation
from assistant.core.privacy import mask_pii
from connectors.services.applications import STATUS_EN, STATUS_ZH, ApplicationService, Ineligible, InvalidApplication
from connectors.services.procedures import FieldValueError, Procedure, get_procedure

DISPUTE_RE = re.compile(r"不服|有异议|不同意|不认可|申诉|不公平|凭什么|disagree|appeal|unfair", re.I)
STATUS_QUERY_RE = re.compile(
    r"(申请|办的|提交的|登记的).{0,8}(到哪|进度|怎么样了?|结果|批了|批下来|状态)|到哪一步|办到哪|审核.{0,3}(到哪|怎么样)|"
    r"status of my application|my application status|where is my application", re.I)


class FilingFlow:
    def __init__(self, applications: ApplicationService, say: Callable[..., str], labels: dict[str, Any],
                 doc_title: Callable[[str], str] = str, today: Callable[[], date] = date.today) -> None:
        self.applications = applications
        self.doc_title = doc_title
        self.say = say
        self.labels = labels
        self.today = today

    # ---- starting and asking ---------------------------------------------------------------

    def start(self, conv: Conversation, procedure_id: str, language: str) -> Reply:
        procedure = get_procedure(procedure_id)
        conv.state["filing"] = {"id": procedure_id, "values": {}, "confirming": False, "key": uuid.uuid4().hex[:12]}
        materials = "、".join(procedure.materials.get(language) or []) if language == "zh" else \
            ", ".join(procedure.materials.get(language) or [])
        intro = self.say("filing_intro", language, title=procedure.title[language], materials=materials or "—")
        return self._next(conv, procedure, language, prefix=intro)

    def _next(self, conv: Conversation, procedure: Procedure, language: str, prefix: str = "") -> Reply:
        filing = conv.state["filing"]
        pending = next((f for f in procedure.fields if f.required and f.name not in filing["values"]), None)
        cancel = self.labels["cancel"][language]
        if pending is None:
            return self._read_back(conv, procedure, language, prefix)
        quick = [c.zh if language == "zh" else c.en for c in pending.choices] if pending.type == "choice" else []
        return Reply("form", prefix + pending.prompt[language], quick_replies=quick + [cancel])

    def _read_back(self, conv: Conversation, procedure: Procedure, language: str, prefix: str) -> Reply:
        filing = conv.state["filing"]
        try:
            values = self.applications.check(procedure.id, filing["values"], self.today())
        except Ineligible as exc:
            conv.state.pop("filing", None)
            reply = self._ineligible(exc.message(language), exc.citations[0]["doc_id"] if exc.citations else None,
                                     language)
            reply.text = prefix + reply.text
            return reply
        except InvalidApplication as exc:
            # A value the field accepted but the whole application does not (e.g. the backend's rules).
            first = exc.errors[0]
            filing["values"].pop(first["field"], None)
            return self._next(conv, procedure, language, prefix=f"{first['message']}\n")
        eligibility = procedure.check_eligibility(values, self.today())
        filing["confirming"] = True
        sep = "：" if language == "zh" else ": "
        lines = [f"{f.label[language]}{sep}{self._display(f, filing['values'][f.name], language)}"
                 for f in procedure.fields if f.name in filing["values"]]
        note = f"\n{eligibility.reason(language)}" if eligibility.reason(language) else ""
        return Reply("form", prefix + self.say("filing_confirm", language, title=procedure.title[language],
                                               summary="\n".join(lines)) + note,
                     quick_replies=[self.labels["confirm"][language], self.labels["cancel"][language]])

    @staticmethod
    def _display(field, value: Any, language: str) -> str:
        if field.type == "choice":
            choice = next((c for c in field.choices if c.key == value), None)
            return (choice.zh if language == "zh" else choice.en) if choice else str(value)
        return mask_pii(str(value))

    def resume_prompt(self, conv: Conversation, language: str) -> str:
        procedure = get_procedure(conv.state["filing"]["id"])
        return self._next(conv, procedure, language).text

    # ---- answers ---------------------------------------------------------------------------

    def handle(self, conv: Conversation, text: str, language: str) -> Reply:
        filing = conv.state["filing"]
        procedure = get_procedure(filing["id"])
        correction = CORRECT_RE.match(text)
        if correction:
            return self._correct(conv, procedure, correction.group(1), language)
        if filing.get("confirming"):
            if CONFIRM_RE.match(text):
                return self._submit(conv, procedure, language)
            return self._read_back(conv, procedure, language, prefix=self.say("filing_confirm_hint", language))
        pending = next(f for f in procedure.fields if f.required and f.name not in filing["values"])
        try:
            value = pending.parse(text, self.today())
        except FieldValueError as exc:
            quick = [self.labels["cancel"][language]]
            if exc.error.needs_worker:
                quick.insert(0, self.labels["human_request"][language])
            return Reply("form", exc.error.message(language), quick_replies=quick)
        filing["values"][pending.name] = value.isoformat() if isinstance(value, date) else value
        if pending.type == "cn_id":
            # Say "not eligible" as soon as the ID shows it, not after every other question.
            eligibility = procedure.check_eligibility({pending.name: value}, self.today())
            if not eligibility.eligible:
                conv.state.pop("filing", None)
                return self._ineligible(eligibility.reason(language), eligibility.doc_id, language)
        return self._next(conv, procedure, language)

    def _ineligible(self, reason: str, doc_id: str | None, language: str) -> Reply:
        citations = [{"doc_id": doc_id, "title": self.doc_title(doc_id), "chunk_id": "", "text": ""}] if doc_id else []
        return Reply("refusal", self.say("filing_ineligible", language, reason=reason), citations=citations,
                     quick_replies=[self.labels["human_request"][language]])

    def _correct(self, conv: Conversation, procedure: Procedure, request: str, language: str) -> Reply:
        lowered = request.lower()
        field = next((f for f in procedure.fields
                      if any(label and label.lower() in lowered for label in (f.label["zh"], f.label["en"], f.name))),
                     None)
        if field is None:
            return self._next(conv, procedure, language, prefix=self.say("form_which_field", language))
        raw = request
        for label in (field.label["zh"], field.label["en"], field.name):
            raw = re.sub(re.escape(label), "", raw, flags=re.I)
        try:
            value = field.parse(raw.strip(" ：:为是成改"), self.today())
        except FieldValueError as exc:
            return Reply("form", exc.error.message(language), quick_replies=[self.labels["cancel"][language]])
        conv.state["filing"]["values"][field.name] = value.isoformat() if isinstance(value, date) else value
        return self._next(conv, procedure, language)

    def _submit(self, conv: Conversation, procedure: Procedure, language: str) -> Reply:
        filing = conv.state.pop("filing")
        application = self.applications.confirm(
            procedure.id, filing["values"], session_id=conv.session_id, channel=conv.channel, user_id=conv.user_id,
            idempotency_key=f"{conv.session_id}:{filing['key']}", today=self.today())
        if application.status == "queued":
            application = self.applications.deliver_now(application.application_id)
        key = "filing_submitted" if application.status == "submitted" else "filing_queued"
        return Reply("answer", self.say(key, language, title=procedure.title[language],
                                        reference=application.application_id,
                                        backend_reference=application.backend_reference or ""))

    # ---- "我的申请到哪一步了" -----------------------------------------------------------------

    def status(self, conv: Conversation, language: str) -> Reply:
        self.applications.refresh()
        found = self.applications.for_resident(session_id=conv.session_id, user_id=conv.user_id)
        if not found:
            return Reply("answer", self.say("filing_none", language))
        names = STATUS_ZH if language == "zh" else STATUS_EN
        rejected = [a.application_id for a in found if a.status == "rejected"]
        if rejected:
            conv.state["rejected_application"] = rejected[0]
        lines = []
        for application in found:
            title = get_procedure(application.procedure).title[language]
            lines.append(f"{title}（{application.application_id}）：{names.get(application.status, application.status)}"
                         if language == "zh" else
                         f"{title} ({application.application_id}): {names.get(application.status, application.status)}")
        reply = Reply("answer", self.say("filing_status", language, lines="\n".join(lines)))
        if rejected:
            reply.text += self.say("filing_dispute_hint", language)
            reply.quick_replies = [self.labels["dispute_rejection"][language]]
        return reply

    def dispute(self, conv: Conversation, text: str, language: str) -> Reply | None:
        """"我不服" right after hearing of a rejection: a worker takes the application up."""
        reference = conv.state.pop("rejected_application", None)
        if not reference or not DISPUTE_RE.search(text):
            return None
        ticket_id = self.applications.dispute(reference, text)
        return Reply("handoff", self.say("filing_disputed", language, reference=reference, ticket_id=ticket_id),
                     ticket_id=ticket_id)
