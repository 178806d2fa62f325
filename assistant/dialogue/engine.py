"""The dialogue engine: one `handle()` per resident message. It understands what the message
wants (intent), keeps the thread (follow-ups, forms), and routes it: a grounded answer, a
clarifying question, a form step, a hand-off to people, or an emergency reply."""

from __future__ import annotations

import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from assistant.escalation.base import EscalationService
from assistant.dialogue.filing import STATUS_QUERY_RE, FilingFlow
from assistant.dialogue.reply import Reply
from assistant.dialogue.forms import CANCEL_RE, CONFIRM_RE, CORRECT_RE, FieldError, FormSpec
from assistant.dialogue.store import Conversation, ConversationStore
from assistant.core.errors import InvalidQuestion
from assistant.core.settings import DialogueSettings
from intents.classifier import IntentClassifier, IntentPrediction
from knowledge_base.guards import check_question
from knowledge_base.numbers import extract_age
from knowledge_base.text import detect_language

REPLIES_FILE = Path(__file__).resolve().parent.parent / "data" / "replies.yaml"
_RATING_RE = re.compile(r"^\s*([1-5])\s*(分|星|颗星|stars?)?\s*[。.!！]?\s*$", re.I)


@lru_cache(maxsize=1)
def load_replies() -> dict[str, Any]:
    return yaml.safe_load(REPLIES_FILE.read_text(encoding="utf-8"))
REPLY_TYPES = ("answer", "clarify", "form", "handoff", "emergency", "smalltalk", "refusal")
_FRUSTRATION_RE = re.compile(r"没用|听不懂|答非所问|不对|答错|什么玩意|废物|useless|not helpful|wrong answer|doesn'?t help", re.I)
_QUESTION_RE = re.compile(r"[？?]|吗|怎么|咋|多少|哪|什么|啥|能不能|可不可以|\b(what|how|can i|where|when|is it)\b", re.I)
AFFIRMATIVE_RE = re.compile(r"^(是|是的|对|对的|嗯|好|好的|行|紧急|紧急求助|需要|要|救命|yes|yeah|please|emergency( help)?)[。!！.吧啊]*$", re.I)
_FOLLOWUP_START_RE = re.compile(r"^(那|那么|还有|另外|then|and|what about|how about)\s*", re.I)
_FOLLOWUP_RE = re.compile(
    r"呢[？?]?$|^(需要|要)?(带|准备)(什么|啥|哪些)(材料|东西|证件)?[？?]?$|^(在|去|到)(哪|哪里|哪儿)(办|申请|登记)?[？?]?$|"
    r"^(要|需要)?(多久|多长时间|几天)[？?]?$|^(怎么|咋)(办|申请|弄)[？?]?$|^(what|which) (documents|papers)|^where\b|^how long",
    re.I,
)


def _looks_like_followup(text: str) -> bool:
    """A short fragment that only makes sense after an earlier question: 那80岁呢, 在哪办."""
    if len(text) > 20 if detect_language(text) == "zh" else len(text.split()) > 8:
        return False
    return bool(_FOLLOWUP_START_RE.match(text) or _FOLLOWUP_RE.search(text))


PROCEDURE_TITLES = {
    "elderly_allowance": {"zh": "高龄津贴申请", "en": "elderly allowance application"},
    "pension_certification": {"zh": "养老金领取资格认证", "en": "pension qualification certification"},
    "unemployment_registration": {"zh": "失业登记", "en": "unemployment registration"},
    "medical_insurance_enrolment": {"zh": "城乡居民医保参保登记", "en": "residents' medical insurance enrolment"},
    "legal_aid": {"zh": "法律援助申请", "en": "legal aid application"},
    "appointment": {"zh": "社区服务中心预约办事", "en": "community centre appointment"},
}


def _session_key(session_id: str | None) -> str:
    return (session_id or "").strip()[:128] or "anonymous"


class DialogueEngine:
    def __init__(self, knowledge_base, classifier: IntentClassifier, store: ConversationStore,
                 escalation: EscalationService, settings: DialogueSettings, applications=None) -> None:
        self.kb = knowledge_base
        self.classifier = classifier
        self.store = store
        self.escalation = escalation
        self.settings = settings
        self.replies: dict[str, Any] = load_replies()
        self.dispute_form = FormSpec.load("dispute_mediation")
        self._subject_words: list[str] | None = None
        # Filing procedures needs the application outbox; without it Linli explains how to file.
        self.filing = FilingFlow(applications, self._say, self.replies["quick_replies"], self._doc_title) \
            if applications else None

    # ---- entry point -----------------------------------------------------------------------

    def handle(self, session_id: str, text: str, channel: str = "web", user_id: str = "anonymous",
               message_id: str | None = None, centre: str | None = None) -> Reply:
        started = time.perf_counter()
        session_id = _session_key(session_id)
        conversation = self.store.get_or_create(session_id, channel, user_id)
        conversation.message_key = f"{channel}:{session_id}:{message_id}" if message_id else None
        conversation.centre = centre
        raw = text if isinstance(text, str) else ""
        trace: dict[str, Any] = {"intent": None, "confidence": None, "rewritten_query": None, "doc_ids": []}
        reply = self._route(conversation, raw, trace)
        reply.session_id = session_id
        trace.update(reply_type=reply.reply_type, latency_ms=round((time.perf_counter() - started) * 1000, 1))
        reply.trace = trace
        return self._remember(conversation, raw, reply)

    def ask_back(self, session_id: str, heard: str, question: str, meant: str | None, channel: str = "web",
                 user_id: str = "anonymous") -> Reply:
        """Speech heard something too unlikely to act on (an 886-year-old): ask instead of
        answering, and keep the likely meaning so that a plain "是的" goes on with it."""
        session_id = _session_key(session_id)
        conversation = self.store.get_or_create(session_id, channel, user_id)
        if meant:
            conversation.state["heard_meant"] = meant
        reply = Reply("clarify", question, quick_replies=[meant] if meant else [], session_id=session_id,
                      trace={"intent": None, "reply_type": "clarify", "asked_back": heard})
        return self._remember(conversation, heard, reply)

    def _remember(self, conversation: Conversation, said: str, reply: Reply) -> Reply:
        """Keep both turns and the conversation's state; every reply goes through here."""
        self.store.add_turn(conversation.session_id, "resident", said[: self.settings.max_message_chars])
        self.store.add_turn(conversation.session_id, "assistant", reply.text, reply.reply_type, reply.trace)
        self.store.save(conversation)
        return reply

    # ---- routing ---------------------------------------------------------------------------

    def _say(self, key: str, language: str, **values: Any) -> str:
        return str(self.replies[key][language]).format(**values)

    def _route(self, conv: Conversation, raw: str, trace: dict[str, Any]) -> Reply:
        language = conv.language
        try:
            text = check_question(raw, self.settings.max_message_chars)
        except InvalidQuestion as exc:
            if not raw.strip():
                return Reply("clarify", self._say("empty", language), quick_replies=self._menu(language))
            if "limit" in exc.details:
                return Reply("refusal", self._say("too_long", detect_language(raw[:200]), length=len(raw.strip()),
                                                  limit=self.settings.max_message_chars))
            return Reply("clarify", self._say("unreadable", language), quick_replies=self._menu(language))
        language = conv.language = detect_language(text, default=conv.language)

        meant = conv.state.pop("heard_meant", None)
        if meant and AFFIRMATIVE_RE.match(text):
            text = meant
        held = self.escalation.held_ticket(conv.session_id)
        if held is not None:
            return self._while_held(conv, held, text, language, trace)
        awaiting = conv.state.pop("awaiting_rating", None)
        rating = _RATING_RE.match(text)
        if awaiting and rating:
            self.escalation.record_rating(awaiting, int(rating.group(1)))
            return Reply("smalltalk", self._say("rating_thanks", language), ticket_id=awaiting)

        cancel = CANCEL_RE.match(text)
        if cancel:
            # "算了，那80岁的高龄补贴是多少": drop what was going on, then deal with the rest.
            rest = text[cancel.end():].strip(" ，,。.!！?？")
            had_form = any([conv.state.pop("form", None), conv.state.pop("filing", None)])
            conv.state.pop("safety_check", None)
            if not rest:
                return Reply("smalltalk", self._say("form_cancelled" if had_form else "nothing_to_cancel", language))
            reply = self._dispatch(conv, rest, detect_language(rest, default=language), trace)
            if had_form:
                reply.text = f"{self._say('form_cancelled_short', language)}{reply.text}"
            return reply
        return self._dispatch(conv, text, language, trace)

    def _dispatch(self, conv: Conversation, text: str, language: str, trace: dict[str, Any]) -> Reply:
        prediction = self.classifier.predict(text)
        trace.update(intent=prediction.intent, confidence=round(prediction.confidence, 3), source=prediction.source)
        confident = prediction.source == "rule" or prediction.confidence >= self.settings.intent_threshold
        form = conv.state.get("form")

        if prediction.intent == "emergency" and (prediction.source == "rule" or prediction.confidence >= (
                self.settings.form_emergency_threshold if form else self.settings.intent_threshold)):
            return self._emergency(conv, text, language)
        if conv.state.pop("safety_check", None) and (prediction.intent == "emergency" or AFFIRMATIVE_RE.match(text)):
            return self._emergency(conv, text, language)
        filing = conv.state.get("filing")
        if prediction.intent == "human_request" and prediction.source == "rule":
            if filing:
                values = conv.state.pop("filing")["values"]
                return self._handoff(conv, text, language, kind="procedure_problem", key="handoff",
                                     form_data={"procedure": filing["id"], **values})
            form_data = conv.state.pop("form", {}).get("values") if form else None
            return self._handoff(conv, text, language, kind="dispute" if form else "human_request", key="handoff",
                                 form_data=form_data)
        if conv.state.pop("offered_human", None) and (AFFIRMATIVE_RE.match(text) or CONFIRM_RE.match(text)):
            # The resident accepted a person after Linli failed to help: the worker sees why.
            summary = f"未能解答：{conv.state.get('last_question') or text}"
            return self._handoff(conv, summary, language, kind="failed_answer", key="handoff")
        if filing and self.filing:
            if self._side_question(text, prediction):
                return self._policy(conv, text, language, trace)
            return self.filing.handle(conv, text, language)
        if self.filing and STATUS_QUERY_RE.search(text):
            return self.filing.status(conv, language)
        if self.filing and conv.state.get("rejected_application"):
            disputed = self.filing.dispute(conv, text, language)
            if disputed is not None:
                return disputed
        if form:
            # Inside a form a message is a field answer unless it is plainly something else, so a
            # weak model guess ("楼上602的住户" read as an emergency) never derails the intake.
            reply = self._continue_form(conv, text, language, prediction, trace)
            if prediction.intent == "emergency" and confident:
                # Read as a field answer, but the numbers are given in case it was not one.
                reply.text = f"{self._say('safety_line', language)}\n{reply.text}"
            return reply
        if self._is_followup(conv, text):
            return self._policy(conv, text, language, trace, followup=True)
        if prediction.intent == "emergency":
            # A weak emergency guess still gets the numbers at once, and a yes makes it urgent.
            conv.state["safety_check"] = True
            labels = self.replies["quick_replies"]
            return Reply("clarify", self._say("safety_check", language),
                         quick_replies=[labels["emergency"][language], labels["not_emergency"][language]])

        # "没用" or the same question again: the last reply did not help, so offer a person.
        # A longer message with such words is usually a complaint and is handled as one.
        if (_FRUSTRATION_RE.search(text) and len(text) <= 12) or self._repeated(conv, text):
            conv.state["offered_human"] = True
            return Reply("clarify", self._say("offer_human", language),
                         quick_replies=[self.replies["quick_replies"]["human_request"][language]])
        if prediction.intent == "human_request" and confident:
            return self._handoff(conv, text, language, kind="human_request", key="handoff")
        if prediction.intent == "complaint" and confident:
            return self._handoff(conv, text, language, kind="complaint", key="complaint")
        if not confident:
            # Most residents' questions sit between intents the classifier knows; the corpus, not
            # the classifier, decides whether there is an answer. A fragment with no topic yet
            # (在哪办, 需要带什么材料) is never guessed at, and without a grounded answer Linli asks.
            if self.settings.answer_when_unsure and not _looks_like_followup(text):
                reply = self._policy(conv, text, language, trace, clarify_if_refused=True)
                if reply is not None:
                    return reply
            return self._clarify(prediction, language)
        if prediction.intent in ("greeting", "thanks_bye", "out_of_scope"):
            return Reply("smalltalk", self._say(prediction.intent, language))
        if prediction.intent == "dispute_mediation":
            return self._start_form(conv, text, language)
        if prediction.intent == "service_procedure":
            return self._procedure(conv, text, language, prediction, trace)
        return self._policy(conv, text, language, trace)

    def _while_held(self, conv: Conversation, held, text: str, language: str, trace: dict[str, Any]) -> Reply:
        """A worker holds this conversation: the bot stays quiet and passes the message on. Only
        a keyword-rule emergency still gets the emergency numbers at once."""
        self.escalation.record_resident_message(held.ticket_id, text)
        trace.update(held_by=held.assignee, ticket_id=held.ticket_id)
        matched = self.classifier.rule_match(text)
        if matched and matched[0] == "emergency":
            trace.update(intent="emergency", confidence=1.0, source="rule")
            return Reply("emergency", self._say("emergency", language, ticket_id=held.ticket_id),
                         ticket_id=held.ticket_id)
        return Reply("handoff", "", ticket_id=held.ticket_id)

    # ---- intents ---------------------------------------------------------------------------

    def _emergency(self, conv: Conversation, text: str, language: str) -> Reply:
        conv.state.pop("safety_check", None)
        # A half-filled form travels with the urgent ticket rather than being lost.
        form = conv.state.pop("form", None) or conv.state.pop("filing", None)
        ticket = self.escalation.open_ticket(kind="emergency", priority="urgent", session_id=conv.session_id,
                                             channel=conv.channel, user_id=conv.user_id, summary=text[:200],
                                             form_data=form["values"] if form else None,
                                             idempotency_key=conv.message_key, centre=conv.centre)
        conv.state["handoff_ticket"] = ticket.ticket_id
        return Reply("emergency", self._say("emergency", language, ticket_id=ticket.ticket_id),
                     ticket_id=ticket.ticket_id)

    def _handoff(self, conv: Conversation, text: str, language: str, kind: str, key: str,
                 form_data: dict[str, Any] | None = None) -> Reply:
        ticket = self.escalation.open_ticket(kind=kind, priority="high" if kind == "dispute" else "normal",
                                             session_id=conv.session_id, channel=conv.channel, user_id=conv.user_id,
                                             summary=text[:200], form_data=form_data,
                                             idempotency_key=conv.message_key, centre=conv.centre)
        conv.state["handoff_ticket"] = ticket.ticket_id
        return Reply("handoff", self._say(key, language, ticket_id=ticket.ticket_id), ticket_id=ticket.ticket_id)

    def _menu(self, language: str) -> list[str]:
        labels = self.replies["quick_replies"]
        return [labels[k][language] for k in ("policy_question", "dispute_mediation", "human_request")]

    def _clarify(self, prediction: IntentPrediction, language: str) -> Reply:
        labels = self.replies["quick_replies"]
        options = [prediction.intent] + [i for i, _ in prediction.alternatives]
        quick = [labels[i][language] for i in options if i in labels][:3]
        if labels["human_request"][language] not in quick:
            quick.append(labels["human_request"][language])
        return Reply("clarify", self._say("clarify", language) + ("、".join(quick) if language == "zh" else ", ".join(quick))
                     + ("？" if language == "zh" else "?"), quick_replies=quick)

    def _repeated(self, conv: Conversation, text: str) -> bool:
        """Asking the same thing again means the last reply did not help."""
        last = conv.state.get("last_question")
        return bool(last) and re.sub(r"\W", "", last) == re.sub(r"\W", "", text)

    # ---- policy answers and follow-ups -------------------------------------------------------

    def _is_followup(self, conv: Conversation, text: str) -> bool:
        return bool(conv.state.get("topic_question")) and _looks_like_followup(text)

    def _rewrite(self, conv: Conversation, text: str) -> str:
        """Turn a follow-up into a full question using the thread's topic: a new age replaces the
        old one ("那80岁呢?"), a new subject replaces the old one ("低保怎么申请" → "那医保呢?"),
        and anything else is asked about the current topic ("需要带什么材料?")."""
        previous = conv.state["topic_question"]
        fragment = _FOLLOWUP_START_RE.sub("", text).rstrip("？?呢 ")
        new_age, old_age = extract_age(fragment), extract_age(previous)
        if new_age is None and old_age is not None and re.fullmatch(r"\d{2,3}", fragment.strip()):
            new_age = int(fragment.strip())  # "what about 75?" right after an age question
        if new_age is not None:
            if old_age is not None and str(old_age) in previous:
                return previous.replace(str(old_age), str(new_age), 1)
            return f"{previous} {new_age}岁"
        new_subjects, old_subjects = self._subjects(fragment), self._subjects(previous)
        if new_subjects and old_subjects and len(fragment) <= 8:
            return previous.replace(old_subjects[0], new_subjects[0], 1)
        # The subject the resident named (高龄津贴) carries the topic better than a document title.
        topic = (old_subjects[0] if old_subjects else None) or conv.state.get("topic_title") or previous
        return f"{topic} {fragment}"

    def _subjects(self, text: str) -> list[str]:
        """Policy subjects named in the text (高龄津贴, 低保, 医保 …), longest first."""
        if self._subject_words is None:
            lexicon = self.kb.lexicon
            terms = set(lexicon.terms)
            words = terms | {colloquial for colloquial, canonical in lexicon.synonyms.items() if canonical in terms}
            self._subject_words = sorted((w for w in words if len(w) >= 2), key=len, reverse=True)
        found: list[str] = []
        for word in self._subject_words:
            if word in text and not any(word in longer for longer in found):
                found.append(word)
        return found

    def _policy(self, conv: Conversation, text: str, language: str, trace: dict[str, Any],
                followup: bool = False, clarify_if_refused: bool = False) -> Reply | None:
        """The grounded answer or the refusal; None instead of a refusal when `clarify_if_refused`
        (the message may not have been a question at all, so Linli asks rather than refuses)."""
        query = self._rewrite(conv, text) if followup else text
        trace["rewritten_query"] = query if followup else None
        answer = self.kb.ask(query)
        trace["doc_ids"] = [c.doc_id for c in answer.citations]
        if answer.refused and clarify_if_refused:
            return None
        if not answer.refused:
            conv.state["topic_question"] = query
            conv.state["topic_title"] = answer.citations[0].title if answer.citations else None
        conv.state["last_question"] = text
        citations = [c.model_dump(include={"doc_id", "title", "chunk_id", "text", "section"}) for c in answer.citations]
        quick: list[str] = []
        if answer.refused:
            quick = [self.replies["quick_replies"]["human_request"][language]]
        text_out = answer.answer
        if conv.state.get("form"):
            pending = self.dispute_form.next_missing(conv.state["form"]["values"])
            prompt = pending.prompt[language] if pending else ""
            text_out = f"{text_out}\n\n{self._say('form_resume', language)}{prompt}"
        elif conv.state.get("filing") and self.filing:
            prompt = self.filing.resume_prompt(conv, language)
            text_out = f"{text_out}\n\n{self._say('form_resume', language)}{prompt}"
        return Reply("refusal" if answer.refused else "answer", text_out, citations=citations, quick_replies=quick)

    def _procedure(self, conv: Conversation, text: str, language: str, prediction: IntentPrediction,
                   trace: dict[str, Any]) -> Reply:
        """A filing request starts the procedure's form; without a connector it gets the how-to
        from the corpus and the ways to file today (at the centre, or through a worker)."""
        title = PROCEDURE_TITLES.get(prediction.procedure or "", {}).get(language)
        trace["procedure"] = prediction.procedure
        if self.filing and title:
            return self.filing.start(conv, prediction.procedure, language)
        reply = self._policy(conv, text, language, trace)
        if title and reply.reply_type == "refusal":
            question = f"{title}怎么办理，需要什么材料" if language == "zh" else f"How to apply for {title}, what to bring"
            reply = self._policy(conv, question, language, trace)
        if title:
            reply.text = f"{reply.text}\n\n{self._say('procedure_info', language, title=title)}"
            reply.quick_replies = [self.replies["quick_replies"]["human_request"][language]]
        return reply

    # ---- the dispute form -------------------------------------------------------------------

    def _form_prompt(self, conv: Conversation, language: str, prefix: str = "") -> Reply:
        form = conv.state["form"]
        pending = self.dispute_form.next_missing(form["values"])
        labels = self.replies["quick_replies"]
        if pending is None:
            form["confirming"] = True
            summary = self.dispute_form.summary(form["values"], language)
            return Reply("form", prefix + self._say("form_confirm", language, summary=summary),
                         quick_replies=[labels["confirm"][language], labels["cancel"][language]])
        quick = [spec[language] for spec in pending.choices.values()] if pending.type == "choice" else []
        return Reply("form", prefix + pending.prompt[language], quick_replies=quick + [labels["cancel"][language]])

    def _start_form(self, conv: Conversation, text: str, language: str) -> Reply:
        conv.state["form"] = {"id": self.dispute_form.form_id, "values": self.dispute_form.prefill(text),
                              "confirming": False, "opening": text[:500]}
        return self._form_prompt(conv, language, prefix=self._say("form_intro", language))

    def _continue_form(self, conv: Conversation, text: str, language: str, prediction: IntentPrediction,
                       trace: dict[str, Any]) -> Reply:
        form = conv.state["form"]
        labels = self.replies["quick_replies"]
        correction = CORRECT_RE.match(text)
        if correction:
            field_spec = self.dispute_form.find_field(correction.group(1), language)
            if field_spec is None:
                return self._form_prompt(conv, language, prefix=self._say("form_which_field", language))
            value = correction.group(1)
            for label in (field_spec.label("zh"), field_spec.label("en"), field_spec.name):
                value = re.sub(re.escape(label), "", value, flags=re.I)
            try:
                form["values"][field_spec.name] = field_spec.parse(value.strip(" ：:为是成改"))
            except FieldError as exc:
                return Reply("form", exc.messages[language], quick_replies=[labels["cancel"][language]])
            return self._form_prompt(conv, language)
        if form.get("confirming") and CONFIRM_RE.match(text):
            return self._submit_form(conv, language)
        if _QUESTION_RE.search(text):
            if self._side_question(text, prediction):
                return self._policy(conv, text, language, trace)
            if prediction.intent in ("dispute_mediation", "human_request", "complaint"):
                return self._form_prompt(conv, language, prefix=self._say("form_reassure", language))
        pending = self.dispute_form.next_missing(form["values"])
        if pending is None:
            return self._form_prompt(conv, language)
        try:
            form["values"][pending.name] = pending.parse(text)
        except FieldError as exc:
            return Reply("form", exc.messages[language], quick_replies=[labels["cancel"][language]])
        return self._form_prompt(conv, language)

    def _doc_title(self, doc_id: str) -> str:
        try:
            return self.kb.store.get_document(doc_id)[0].title
        except Exception:  # noqa: BLE001 - a missing title must not block the answer
            return doc_id

    def _side_question(self, text: str, prediction: IntentPrediction) -> bool:
        """A question in the middle of a form is answered, then the form goes on: a confident
        policy question, or any question naming a policy subject (低保, 医保 …)."""
        if not _QUESTION_RE.search(text):
            return False
        return (prediction.intent == "policy_question"
                and prediction.confidence >= self.settings.mid_form_question_threshold) or \
            (prediction.intent in ("policy_question", "service_procedure") and bool(self._subjects(text)))

    def _submit_form(self, conv: Conversation, language: str) -> Reply:
        values = dict(conv.state["form"]["values"])
        dispute_type = self.dispute_form.field("dispute_type").display(values["dispute_type"], "zh")
        ticket = self.escalation.open_ticket(
            kind="dispute", priority="urgent" if values.get("urgency") == "urgent" else "high",
            session_id=conv.session_id, channel=conv.channel, user_id=conv.user_id,
            summary=f"{dispute_type}：{values.get('description', '')[:150]}", form_data=values,
            idempotency_key=conv.message_key, centre=conv.centre,
        )
        conv.state.pop("form", None)
        conv.state["handoff_ticket"] = ticket.ticket_id
        done = self.dispute_form.done[language].format(
            ticket_id=ticket.ticket_id, followup_zh=self.settings.dispute_followup_zh,
            followup_en=self.settings.dispute_followup_en)
        return Reply("handoff", done, ticket_id=ticket.ticket_id)

