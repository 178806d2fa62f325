"""Named events and their listeners, instead of callbacks patched onto services (Chatwoot's
dispatcher, in small). A service publishes what happened; whoever cares subscribes once, when
the services are wired. Dispatch is synchronous and in order of subscription, so a listener
runs inside the request that caused the event, and an error in it reaches the caller."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("linli.events")

E = TypeVar("E")
Listener = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: dict[type, list[Listener]] = defaultdict(list)

    def subscribe(self, event_type: type[E], listener: Callable[[E], None]) -> None:
        self._listeners[event_type].append(listener)

    def listeners(self, event_type: type) -> list[Listener]:
        return list(self._listeners.get(event_type, ()))

    def publish(self, event: object) -> None:
        for listener in self.listeners(type(event)):
            try:
                listener(event)
            except Exception:
                log.exception("listener %s failed on %s", getattr(listener, "__qualname__", listener),
                              type(event).__name__)
                raise


@dataclass(frozen=True)
class FeedbackGiven:
    """A resident rated one of Linli's answers (assistant/analytics/feedback.py): `rating` is 1
    (👍) or -1 (👎); `replaced` when it changes an earlier rating of the same turn."""

    turn_id: int
    session_id: str
    channel: str
    rating: int
    reason: str | None
    replaced: bool
