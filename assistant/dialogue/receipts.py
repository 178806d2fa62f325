"""Message receipts: a resident's message that carries a channel message id is processed once.
A retry (the same id again, from a flaky phone network or a channel that resends) gets the reply
the first one got, and nothing else happens: no second turn, ticket or form step."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, Column, DateTime, String, Table, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from assistant.core.clock import utcnow
from assistant.core.db import metadata
from assistant.core.keys import digest_key

message_receipts = Table(
    "message_receipts",
    metadata,
    Column("message_key", String(320), primary_key=True),
    Column("session_id", String(128), nullable=False, index=True),
    Column("reply", JSON),
    Column("created_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
)


def message_key(session_id: str, message_id: str) -> str:
    """One message of one conversation, unambiguously: the channel's own id is only unique within
    its conversation, and joining the two with a separator let another conversation's ids spell
    the same key ("wechat:wechat:<openid>:msg:1" from two different pairs)."""
    return digest_key("m:", session_id, message_id)


class StillProcessing(Exception):
    """The first copy of this message is still being answered."""


class MessageReceipts:
    def __init__(self, engine: Engine, *, wait_s: float = 20.0, poll_s: float = 0.1) -> None:
        self.engine = engine
        self.wait_s = wait_s
        self.poll_s = poll_s

    def claim(self, key: str, session_id: str, *, serialised: bool = False) -> dict[str, Any] | None:
        """None when this caller is the first with `key` and must process the message; otherwise
        the first copy's stored reply, waiting for it while the first copy is still being answered.
        The primary key decides who is first, across threads and server processes.

        `serialised`: the caller holds the conversation's lock (ConversationStore.one_at_a_time),
        so an unfinished receipt belongs to a process that died while answering (a live one would
        hold the lock): the message is this caller's to answer. Its turns were never kept, since a
        reply's turns, state and receipt are written in one transaction."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(message_receipts).values(message_key=key, session_id=session_id,
                                                             created_at=utcnow()))
            return None
        except IntegrityError:
            pass
        if serialised:
            with self.engine.connect() as conn:
                row = conn.execute(select(message_receipts.c.reply, message_receipts.c.finished_at)
                                   .where(message_receipts.c.message_key == key)).first()
            if row is None:
                return self.claim(key, session_id, serialised=True)
            return dict(row.reply or {}) if row.finished_at is not None else None
        deadline = time.monotonic() + self.wait_s
        while True:
            with self.engine.connect() as conn:
                row = conn.execute(select(message_receipts.c.reply, message_receipts.c.finished_at)
                                   .where(message_receipts.c.message_key == key)).first()
            if row is None:  # the first copy failed and let go: this one processes it
                return self.claim(key, session_id)
            if row.finished_at is not None:
                return dict(row.reply or {})
            if time.monotonic() > deadline:
                raise StillProcessing(key)
            time.sleep(self.poll_s)

    def finish(self, key: str, reply: dict[str, Any], conn: Connection | None = None) -> None:
        """Keep the reply as the message's answer; on `conn` to write it with the reply's turns."""
        if conn is None:
            with self.engine.begin() as own:
                self.finish(key, reply, own)
            return
        conn.execute(update(message_receipts).where(message_receipts.c.message_key == key)
                     .values(reply=reply, finished_at=utcnow()))

    def release(self, key: str) -> None:
        """Processing failed: a retry of the same message may try again."""
        with self.engine.begin() as conn:
            conn.execute(delete(message_receipts).where(message_receipts.c.message_key == key,
                                                        message_receipts.c.finished_at.is_(None)))
