"""The channels' table: every outbound message to a resident (a worker's reply, a status
notice), kept until the resident's page or the channel has it."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, String, Table, Text

from assistant.core.db import metadata

outbound_messages = Table(
    "outbound_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(32), nullable=False),
    Column("session_id", String(128), nullable=False, index=True),
    Column("user_id", String(128), nullable=False),
    Column("ticket_id", String(40)),
    Column("sender", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("delivered_at", DateTime),
)
