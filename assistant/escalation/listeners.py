"""What the channels do when a ticket changes: a worker's words reach the resident on the channel
they wrote from. Subscribed once, in assistant/services.py."""

from __future__ import annotations

from typing import Any, Protocol

from assistant.escalation.events import WorkerReplied


class ResidentChannel(Protocol):
    """One way of reaching residents (the web outbox, WeChat …): connectors/channels' `Channel`."""

    def send(self, *, session_id: str, user_id: str, text: str, sender: str, ticket_id: str | None = None) -> int: ...


class Channels(Protocol):
    """The resident's channels by name: connectors/channels' `ChannelRegistry`. A protocol here so
    the core does not import the adapters."""

    def get(self, name: str) -> ResidentChannel: ...


class ConversationLog(Protocol):
    """Where a conversation's turns are kept: assistant/dialogue/store.py's `ConversationStore`. A
    protocol here, so escalation does not import the dialogue (which imports escalation)."""

    def add_turn(self, session_id: str, role: str, text: str, reply_type: str | None = None,
                 trace: dict[str, Any] | None = None) -> int: ...


class ResidentDelivery:
    """On `WorkerReplied`: sends the worker's words on the resident's channel and keeps them in the
    conversation as a "worker" turn, so the transcript the next worker reads is complete."""

    def __init__(self, channels: Channels, conversations: ConversationLog) -> None:
        self.channels = channels
        self.conversations = conversations

    def __call__(self, event: WorkerReplied) -> None:
        ticket = event.ticket
        self.channels.get(ticket.channel).send(session_id=ticket.session_id, user_id=ticket.user_id, text=event.text,
                                               sender=event.sender, ticket_id=ticket.ticket_id)
        self.conversations.add_turn(ticket.session_id, "worker", event.text, "handoff",
                                    {"ticket_id": ticket.ticket_id, "worker": event.sender})
