"""The `Channel` seam (outbound `send`) and its first implementation.

`OutboxChannel` keeps each outbound message in the database; the web chat and the kiosk page
fetch them with `GET /api/v1/sessions/{session_id}/messages`. Push channels (WeChat) register
their own implementation under their name; a channel without one falls back to the outbox,
so a worker's reply is never dropped."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy import Engine, insert, select, update

from assistant.core.clock import utcnow
from connectors.channels.tables import outbound_messages


@runtime_checkable
class Channel(Protocol):
    name: str

    def send(self, *, session_id: str, user_id: str, text: str, sender: str, ticket_id: str | None = None) -> int:
        """Deliver (or queue) `text` for the resident; returns the message id."""


class OutboxChannel:
    def __init__(self, engine: Engine, name: str = "web") -> None:
        self.name = name
        self.engine = engine

    def send(self, *, session_id: str, user_id: str, text: str, sender: str, ticket_id: str | None = None) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(insert(outbound_messages).values(
                channel=self.name, session_id=session_id, user_id=user_id, ticket_id=ticket_id, sender=sender,
                text=text, created_at=utcnow()))
        key = result.inserted_primary_key
        assert key is not None  # an INSERT always returns its key
        return int(key[0])

    def pending(self, session_id: str, after: int = 0) -> list[dict]:
        """Messages for a session newer than `after`, oldest first; marked delivered once read."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(outbound_messages).where(outbound_messages.c.session_id == session_id,
                                                outbound_messages.c.id > after)
                .order_by(outbound_messages.c.id)
            ).all()
            if rows:
                conn.execute(update(outbound_messages)
                             .where(outbound_messages.c.id.in_([r.id for r in rows]),
                                    outbound_messages.c.delivered_at.is_(None))
                             .values(delivered_at=utcnow()))
        return [{"id": r.id, "sender": r.sender, "text": r.text, "ticket_id": r.ticket_id,
                 "created_at": r.created_at.isoformat()} for r in rows]


class ChannelRegistry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._channels: dict[str, Channel] = {}
        self.outbox = OutboxChannel(engine, "web")

    def register(self, channel: Channel) -> None:
        self._channels[channel.name] = channel

    def get(self, name: str) -> Channel:
        if name not in self._channels:
            self._channels[name] = OutboxChannel(self.engine, name)
        return self._channels[name]
