"""Escalation tables: tickets, their audit log, workers and their login tokens. The outbound
messages a worker sends to residents belong to the channels (connectors/channels/tables.py)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, ForeignKey, Integer, String, Table, Text

from assistant.core.db import metadata

tickets = Table(
    "tickets",
    metadata,
    Column("ticket_id", String(40), primary_key=True),
    # dispute | human_request | complaint | emergency | failed_answer | procedure_problem
    Column("kind", String(24), nullable=False),
    Column("priority", String(12), nullable=False),  # urgent | high | normal
    Column("status", String(20), nullable=False, index=True),
    Column("centre", String(64), nullable=False, index=True),
    Column("region", String(64)),
    Column("session_id", String(128), nullable=False, index=True),
    Column("channel", String(32), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("contact", String(64)),
    Column("summary", Text, nullable=False),
    Column("form_data", JSON, nullable=False),
    Column("idempotency_key", String(200), unique=True),
    Column("assignee", String(64)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("due_at", DateTime, nullable=False),
    Column("claimed_at", DateTime),
    Column("resolved_at", DateTime),
    Column("breached", Boolean, nullable=False),
    Column("escalated_to", String(32)),
    Column("outcome", Text),
    Column("rating", Integer),
)

ticket_events = Table(
    "ticket_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", String(40), ForeignKey("tickets.ticket_id"), nullable=False, index=True),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_status", String(20)),
    Column("to_status", String(20)),
    Column("text", Text),
    Column("data", JSON),
    Column("created_at", DateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("display_name", String(128), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),  # worker | supervisor | admin
    Column("centre", String(64), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(64), ForeignKey("users.username"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)
