"""Conversations and turns, persisted through SQLAlchemy (SQLite by default, PostgreSQL in
production: set LINLI_DATABASE_URL=postgresql+psycopg://…)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import JSON, Column, DateTime, Integer, String, Table, Text, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from assistant.core.clock import utcnow
from assistant.core.db import metadata
from assistant.core.locks import KeyedLock
from assistant.core.privacy import mask_pii
from assistant.core.vault import UndecryptableValue, Vault
from assistant.dialogue.state import ConversationState

conversations = Table(
    "conversations",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("language", String(8), nullable=False, default="zh"),
    Column("state", JSON, nullable=False, default=dict),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # Who may speak in it ("page:<session>", "api:<client>:<user>", "wechat:<openid>"), and the
    # centre whose workers handle it; both fixed when it starts (assistant/residents/).
    Column("owner", String(200)),
    Column("centre", String(64)),
)

turns = Table(
    "turns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(128), nullable=False, index=True),
    Column("role", String(16), nullable=False),  # resident | assistant
    Column("text", Text, nullable=False),
    Column("reply_type", String(16)),
    Column("trace", JSON),
    Column("created_at", DateTime, nullable=False),
)

log = logging.getLogger("linli.dialogue")


@dataclass
class Conversation:
    session_id: str
    channel: str
    user_id: str
    language: str = "zh"
    state: ConversationState = field(default_factory=ConversationState)
    is_new: bool = False
    # Per-message context, not stored: the key that makes a retried message open one ticket,
    # and the centre whose queue its tickets go to.
    message_key: str | None = None
    centre: str | None = None
    # Who may speak in it (assistant/residents/): what the resident filed is looked up by it.
    owner: str | None = None


def _state(stored: dict[str, Any] | None, vault: Vault) -> ConversationState:
    """The stored JSON as typed state (migration 0004 converted the free-form dicts of older
    rows), its encrypted values opened. A state that cannot be read starts afresh rather than
    failing the resident's message."""
    try:
        return ConversationState.model_validate(vault.decrypt_fields(stored or {}))
    except (ValidationError, UndecryptableValue):
        log.warning("unreadable conversation state dropped: %s", sorted(stored or {}))
        return ConversationState()


class ConversationStore:
    def __init__(self, engine: Engine, vault: Vault, lock_timeout_s: float = 30.0, *,
                 lock_holders: Engine | None = None) -> None:
        self.engine = engine
        # ID and phone numbers in the state (a form's answers) are stored encrypted, turns masked.
        self.vault = vault
        self._turn_lock = KeyedLock(self.engine, "conversation", lock_timeout_s, holders=lock_holders)

    def one_at_a_time(self, session_id: str) -> AbstractContextManager[None]:
        """Held by everything that reads and then writes a conversation's state (a message, a
        rating request, binding its owner): two messages of one conversation on two replicas are
        handled one after the other, so neither overwrites what the other saved."""
        return self._turn_lock.hold(session_id)

    def get_or_create(self, session_id: str, channel: str, user_id: str) -> Conversation:
        with self.engine.begin() as conn:
            row = conn.execute(select(conversations).where(conversations.c.session_id == session_id)).first()
            if row is not None:
                return Conversation(row.session_id, row.channel, row.user_id, row.language,
                                    _state(row.state, self.vault), centre=row.centre, owner=row.owner)
            now = utcnow()
            conn.execute(
                insert(conversations).values(session_id=session_id, channel=channel, user_id=user_id, language="zh",
                                             state={}, created_at=now, updated_at=now)
            )
        return Conversation(session_id, channel, user_id, is_new=True)

    def transaction(self) -> AbstractContextManager[Connection]:
        """One transaction for several writes (a reply's turns, state and receipt together)."""
        return self.engine.begin()

    def save(self, conversation: Conversation, conn: Connection | None = None) -> None:
        if conn is None:
            with self.engine.begin() as own:
                self.save(conversation, own)
            return
        conn.execute(
            update(conversations)
            .where(conversations.c.session_id == conversation.session_id)
            .values(language=conversation.language,
                    state=self.vault.encrypt_fields(conversation.state.model_dump(exclude_none=True)),
                    # A conversation's centre is fixed by its first message that names one.
                    centre=func.coalesce(conversations.c.centre, conversation.centre),
                    updated_at=utcnow())
        )

    def add_turn(self, session_id: str, role: str, text: str, reply_type: str | None = None,
                 trace: dict[str, Any] | None = None, conn: Connection | None = None) -> int:
        """Keeps one turn; returns its id (a resident rates an answer by it)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.add_turn(session_id, role, text, reply_type, trace, own)
        result = conn.execute(insert(turns).values(session_id=session_id, role=role, text=mask_pii(text),
                                                   reply_type=reply_type,
                                                   trace=self.vault.masked_fields(trace) if trace else trace,
                                                   created_at=utcnow()))
        key = result.inserted_primary_key
        assert key is not None  # an INSERT of one row always has one
        return int(key[0])

    def history(self, session_id: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(turns).where(turns.c.session_id == session_id).order_by(turns.c.id.desc()).limit(limit)
            ).all()
        return [
            {"role": r.role, "text": r.text, "reply_type": r.reply_type, "trace": r.trace,
             "created_at": r.created_at.isoformat()}
            for r in reversed(rows)
        ]
