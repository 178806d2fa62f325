"""The `EscalationService` seam: how the dialogue engine hands a conversation to people, and
how it learns that a worker holds the conversation. `SqlEscalationService` (service.py) is
the real queue; `InMemoryEscalationService` serves engine tests and throw-away demos."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from assistant.core.clock import utcnow
from assistant.core.events import EventBus
from assistant.core.privacy import mask_data
from assistant.escalation.events import TicketClaimed, TicketOpened, TicketResolved
from assistant.escalation.states import CLAIMED, HELD, PENDING, RESOLVED, next_status

KINDS = ("dispute", "human_request", "complaint", "emergency", "failed_answer", "procedure_problem")
PRIORITIES = ("urgent", "high", "normal")


def new_ticket_id(now: datetime | None = None) -> str:
    return f"T{(now or utcnow()):%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"


@dataclass
class Ticket:
    ticket_id: str
    kind: str
    priority: str
    session_id: str
    channel: str
    user_id: str
    summary: str
    form_data: dict[str, Any] = field(default_factory=dict)
    status: str = PENDING
    centre: str = "default"
    region: str | None = None
    contact: str | None = None
    idempotency_key: str | None = None
    assignee: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    due_at: datetime = field(default_factory=utcnow)
    claimed_at: datetime | None = None
    resolved_at: datetime | None = None
    breached: bool = False
    escalated_to: str | None = None
    outcome: str | None = None
    rating: int | None = None

    def public(self) -> dict[str, Any]:
        """What the API shows: ID and phone numbers masked (the handling worker may `reveal` them)."""
        data = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}
        data.pop("idempotency_key", None)
        for name in ("form_data", "summary", "contact"):
            data[name] = mask_data(data[name])
        return data


@runtime_checkable
class EscalationService(Protocol):
    def open_ticket(self, *, kind: str, priority: str, session_id: str, channel: str, user_id: str, summary: str,
                    form_data: dict[str, Any] | None = None, idempotency_key: str | None = None,
                    centre: str | None = None, contact: str | None = None) -> Ticket: ...

    def get(self, ticket_id: str) -> Ticket | None: ...

    def held_ticket(self, session_id: str) -> Ticket | None:
        """The ticket whose worker currently holds this conversation, if any."""

    def record_resident_message(self, ticket_id: str, text: str) -> None: ...

    def record_rating(self, ticket_id: str, rating: int) -> None: ...


class InMemoryEscalationService:
    """Publishes the same events as the SQL queue for what it does (open, claim, resolve), so
    the listeners can be exercised without a database."""

    def __init__(self, centre: str = "default", events: EventBus | None = None) -> None:
        self.centre = centre
        self.event_bus = events or EventBus()
        self._tickets: dict[str, Ticket] = {}
        self._by_key: dict[str, str] = {}
        self.messages: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def open_ticket(self, *, kind: str, priority: str, session_id: str, channel: str, user_id: str, summary: str,
                    form_data: dict[str, Any] | None = None, idempotency_key: str | None = None,
                    centre: str | None = None, contact: str | None = None) -> Ticket:
        with self._lock:
            if idempotency_key and idempotency_key in self._by_key:
                return self._tickets[self._by_key[idempotency_key]]
            ticket = Ticket(new_ticket_id(), kind, priority, session_id, channel, user_id, summary,
                            dict(form_data or {}), centre=centre or self.centre, contact=contact,
                            idempotency_key=idempotency_key)
            self._tickets[ticket.ticket_id] = ticket
            if idempotency_key:
                self._by_key[idempotency_key] = ticket.ticket_id
        self.event_bus.publish(TicketOpened(ticket))
        return ticket

    def get(self, ticket_id: str) -> Ticket | None:
        return self._tickets.get(ticket_id)

    def all(self) -> list[Ticket]:
        return list(self._tickets.values())

    def held_ticket(self, session_id: str) -> Ticket | None:
        return next((t for t in self._tickets.values() if t.session_id == session_id and t.status in HELD), None)

    def record_resident_message(self, ticket_id: str, text: str) -> None:
        self.messages.append((ticket_id, text))

    def record_rating(self, ticket_id: str, rating: int) -> None:
        ticket = self._tickets[ticket_id]
        self._tickets[ticket_id] = replace(ticket, rating=rating, status=next_status("close", ticket.status))

    # Minimal worker moves, so engine tests can exercise hand-back without a database.
    def claim(self, ticket_id: str, worker: str) -> Ticket:
        ticket = self._tickets[ticket_id]
        ticket.status, ticket.assignee = next_status("claim", ticket.status), worker
        self.event_bus.publish(TicketClaimed(ticket, worker))
        return ticket

    def resolve(self, ticket_id: str) -> Ticket:
        ticket = self._tickets[ticket_id]
        ticket.status = next_status("resolve", ticket.status)
        self.event_bus.publish(TicketResolved(ticket))
        return ticket


__all__ = ["CLAIMED", "KINDS", "PRIORITIES", "RESOLVED", "EscalationService", "InMemoryEscalationService", "Ticket"]
