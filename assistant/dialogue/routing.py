"""Routing as a declared list of handlers. Each handler says whether it `applies` to a message
(reading the conversation as it stood, never changing it) and, if it is the first that does,
`handle`s it: it builds the reply and writes the conversation's next state. The order of the
list is the priority, written once in `assistant/dialogue/handlers.py` (`HANDLER_ORDER`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Protocol

from assistant.core.settings import DialogueSettings
from assistant.dialogue.reply import Reply
from assistant.dialogue.state import ConversationState
from assistant.dialogue.store import Conversation
from assistant.escalation.base import Ticket
from intents.classifier import IntentPrediction


@dataclass
class Turn:
    """One resident message as the handlers see it. `state` is the conversation as it stood
    before this message. The intent is predicted the first time a handler asks for it."""

    text: str
    language: str
    conversation: Conversation
    state: ConversationState
    held: Ticket | None
    settings: DialogueSettings
    predict: Callable[[str], IntentPrediction]
    trace: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def prediction(self) -> IntentPrediction:
        prediction = self.predict(self.text)
        self.trace.update(intent=prediction.intent, confidence=round(prediction.confidence, 3),
                          source=prediction.source)
        return prediction

    @property
    def intent(self) -> str:
        return self.prediction.intent

    @property
    def confident(self) -> bool:
        """A keyword rule, or the model at least as sure as the intent threshold."""
        return self.prediction.source == "rule" or self.prediction.confidence >= self.settings.intent_threshold

    def narrowed(self, text: str, language: str, state: ConversationState) -> Turn:
        """The rest of a message to be routed again ("算了，那80岁呢" → "那80岁呢" once the
        form is dropped), with its own prediction, in the same conversation and trace."""
        return Turn(text, language, self.conversation, state, self.held, self.settings, self.predict, self.trace)


class Handler(Protocol):
    name: ClassVar[str]

    def applies(self, turn: Turn) -> bool:
        """Whether this handler takes the message. Reads `turn`; changes nothing."""
        ...

    def handle(self, turn: Turn, state: ConversationState) -> Reply:
        """The reply. `state` is the conversation's next state (a copy of `turn.state` with the
        pending question cleared) for the handler to change."""
        ...


class Router:
    def __init__(self, handlers: Sequence[Handler]) -> None:
        if not handlers:
            raise ValueError("a router needs at least one handler")
        self.handlers = tuple(handlers)

    @property
    def order(self) -> list[str]:
        return [h.name for h in self.handlers]

    def choose(self, turn: Turn) -> Handler:
        for handler in self.handlers:
            if handler.applies(turn):
                return handler
        raise LookupError(f"no handler applies to {turn.text!r}; the last handler must always apply")

    def route(self, turn: Turn, state: ConversationState) -> Reply:
        handler = self.choose(turn)
        turn.trace["handler"] = handler.name
        return handler.handle(turn, state)
