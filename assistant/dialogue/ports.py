"""The small seams the dialogue needs from the layers below it. The real knowledge base and
intent classifier satisfy them; the router's unit test hands in fakes, so routing is tested in
well under a second without an index or a model."""

from __future__ import annotations

from typing import Protocol

from assistant.core.domain import Answer
from intents.classifier import IntentPrediction


class Vocabulary(Protocol):
    """The corpus's policy subjects (高龄津贴, 低保 …) and residents' words for them (低保金 → 低保)."""

    terms: list[str]
    synonyms: dict[str, str]


class AnswerSource(Protocol):
    """Grounded answers from the policy corpus."""

    @property
    def lexicon(self) -> Vocabulary: ...

    def ask(self, question: str) -> Answer: ...

    def document_title(self, doc_id: str) -> str:
        """The title of a corpus document (its id when it is not in the index)."""
        ...


class IntentModel(Protocol):
    """What a message wants: keyword rules first, then the model."""

    def predict(self, text: str) -> IntentPrediction: ...

    def rule_match(self, text: str) -> tuple[str, str] | None:
        """(intent, rule) when a keyword rule matches, else None."""
        ...


class RateLimit(Protocol):
    """A shared counter (assistant/security/limits.py's RateLimiter): True while `key` is under
    `limit` hits per `window_s` seconds, counting this one."""

    def hit(self, key: str, *, limit: int, window_s: int) -> bool: ...
