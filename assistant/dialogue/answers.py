"""Policy answers in conversation: the grounded answer or the refusal for a question, follow-ups
("那80岁呢？") rewritten into whole questions from the thread's topic, and the policy subjects a
message names."""

from __future__ import annotations

import re
from typing import Any

from assistant.dialogue.patterns import FOLLOWUP_START_RE, QUESTION_RE
from assistant.dialogue.ports import AnswerSource
from assistant.dialogue.replies import Replies
from assistant.dialogue.reply import Reply
from assistant.dialogue.routing import Turn
from assistant.dialogue.state import ConversationState, Topic
from knowledge_base.numbers import extract_age


class PolicyAnswers:
    def __init__(self, source: AnswerSource, replies: Replies, mid_form_question_threshold: float) -> None:
        self.source = source
        self.replies = replies
        self.mid_form_question_threshold = mid_form_question_threshold
        self._subject_words: list[str] | None = None

    def answer(self, turn: Turn, state: ConversationState, text: str, *, followup: bool = False,
               clarify_if_refused: bool = False) -> Reply | None:
        """The grounded answer or the refusal; None instead of a refusal when
        `clarify_if_refused` (the message may not have been a question at all, so Linli asks
        rather than refuses)."""
        query = self.rewrite(turn.state, text) if followup else text
        turn.trace["rewritten_query"] = query if followup else None
        answer = self.source.ask(query)
        turn.trace["doc_ids"] = [c.doc_id for c in answer.citations]
        if answer.refused and clarify_if_refused:
            return None
        if not answer.refused:
            state.topic = Topic(question=query, title=answer.citations[0].title if answer.citations else None)
        state.last_question = text
        citations: list[dict[str, Any]] = [
            c.model_dump(include={"doc_id", "title", "chunk_id", "text", "section"}) for c in answer.citations]
        quick = [self.replies.label("human_request", turn.language)] if answer.refused else []
        return Reply("refusal" if answer.refused else "answer", answer.answer, citations=citations, quick_replies=quick)

    def must_answer(self, turn: Turn, state: ConversationState, text: str, *, followup: bool = False) -> Reply:
        reply = self.answer(turn, state, text, followup=followup)
        assert reply is not None  # only clarify_if_refused answers None
        return reply

    def is_side_question(self, turn: Turn) -> bool:
        """A question in the middle of a form is answered, then the form goes on: a confident
        policy question, or any question naming a policy subject (低保, 医保 …)."""
        if not QUESTION_RE.search(turn.text):
            return False
        prediction = turn.prediction
        return (prediction.intent == "policy_question" and prediction.confidence >= self.mid_form_question_threshold) \
            or (prediction.intent in ("policy_question", "service_procedure") and bool(self.subjects(turn.text)))

    def rewrite(self, state: ConversationState, text: str) -> str:
        """Turn a follow-up into a full question using the thread's topic: a new age replaces the
        old one ("那80岁呢?"), a new subject replaces the old one ("低保怎么申请" → "那医保呢?"),
        and anything else is asked about the current topic ("需要带什么材料?")."""
        assert state.topic is not None
        previous = state.topic.question
        fragment = FOLLOWUP_START_RE.sub("", text).rstrip("？?呢 ")
        new_age, old_age = extract_age(fragment), extract_age(previous)
        if new_age is None and old_age is not None and re.fullmatch(r"\d{2,3}", fragment.strip()):
            new_age = int(fragment.strip())  # "what about 75?" right after an age question
        if new_age is not None:
            if old_age is not None and str(old_age) in previous:
                return previous.replace(str(old_age), str(new_age), 1)
            return f"{previous} {new_age}岁"
        new_subjects, old_subjects = self.subjects(fragment), self.subjects(previous)
        if new_subjects and old_subjects and len(fragment) <= 8:
            return previous.replace(old_subjects[0], new_subjects[0], 1)
        # The subject the resident named (高龄津贴) carries the topic better than a document title.
        topic = (old_subjects[0] if old_subjects else None) or state.topic.title or previous
        return f"{topic} {fragment}"

    def subjects(self, text: str) -> list[str]:
        """Policy subjects named in the text (高龄津贴, 低保, 医保 …), longest first."""
        if self._subject_words is None:
            lexicon = self.source.lexicon
            terms = set(lexicon.terms)
            words = terms | {colloquial for colloquial, canonical in lexicon.synonyms.items() if canonical in terms}
            self._subject_words = sorted((w for w in words if len(w) >= 2), key=len, reverse=True)
        found: list[str] = []
        for word in self._subject_words:
            if word in text and not any(word in longer for longer in found):
                found.append(word)
        return found
