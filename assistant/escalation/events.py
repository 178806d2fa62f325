"""What happens to a ticket, as named events on the `EventBus` (assistant/core/events.py). The
escalation service publishes them; the channels deliver a worker's words, and the dialogue asks
for a rating when a ticket is resolved. Listeners subscribe when the services are wired
(assistant/services.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only a type here: base.py's in-memory queue publishes these events, so a runtime import
    # would be circular.
    from assistant.escalation.base import Ticket


@dataclass(frozen=True)
class TicketOpened:
    ticket: Ticket


@dataclass(frozen=True)
class TicketClaimed:
    ticket: Ticket
    worker: str


@dataclass(frozen=True)
class WorkerReplied:
    """A worker's words for the resident (a reply, or a question back), already recorded on
    the ticket; listeners deliver them on the resident's channel."""

    ticket: Ticket
    sender: str
    text: str


@dataclass(frozen=True)
class TicketResolved:
    """The worker is done: the conversation goes back to the bot."""

    ticket: Ticket
