"""The `EscalationService` seam: how the dialogue engine hands a conversation to people. The
in-memory implementation serves until the escalation queue (its own issue) implements it on
the database."""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable


@dataclass
class Ticket:
    ticket_id: str
    kind: str  # dispute | human_request | complaint | emergency | failed_answer
    priority: str  # urgent | high | normal
    session_id: str
    channel: str
    user_id: str
    summary: str
    form_data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = "pending"


@runtime_checkable
class EscalationService(Protocol):
    def open_ticket(self, *, kind: str, priority: str, session_id: str, channel: str, user_id: str, summary: str,
                    form_data: dict[str, Any] | None = None) -> Ticket: ...

    def get(self, ticket_id: str) -> Ticket | None: ...


class InMemoryEscalationService:
    def __init__(self) -> None:
        self._tickets: dict[str, Ticket] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def open_ticket(self, *, kind: str, priority: str, session_id: str, channel: str, user_id: str, summary: str,
                    form_data: dict[str, Any] | None = None) -> Ticket:
        with self._lock:
            ticket_id = f"T{datetime.now(UTC):%Y%m%d}-{next(self._counter):04d}{uuid.uuid4().hex[:4].upper()}"
            ticket = Ticket(ticket_id, kind, priority, session_id, channel, user_id, summary, dict(form_data or {}))
            self._tickets[ticket_id] = ticket
        return ticket

    def get(self, ticket_id: str) -> Ticket | None:
        return self._tickets.get(ticket_id)

    def all(self) -> list[Ticket]:
        return list(self._tickets.values())
