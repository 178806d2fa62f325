"""Applications a resident confirmed, held in the database (the transactional outbox) until
the government backend acknowledges them, and the history of each."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, String, Table, Text

from assistant.core.db import metadata

applications = Table(
    "applications",
    metadata,
    Column("application_id", String(40), primary_key=True),
    Column("procedure", String(64), nullable=False),
    Column("session_id", String(128), nullable=False, index=True),
    Column("channel", String(32), nullable=False),
    Column("user_id", String(128), nullable=False, index=True),
    # Who filed it: the conversation's owner (assistant/residents/), `session:<id>` without one.
    Column("owner", String(200), index=True),
    Column("data", JSON, nullable=False),
    Column("idempotency_key", String(200), unique=True),
    # queued -> submitted -> under_review -> approved | rejected | cancelled; needs_worker when
    # delivery keeps failing or the backend refuses the data.
    Column("status", String(24), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime),
    Column("last_error", Text),
    Column("backend_reference", String(64)),
    Column("ticket_id", String(40)),
    # The language the resident filed in: their notices are sent in it (zh or en).
    Column("language", String(8), nullable=False, server_default="zh"),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

application_events = Table(
    "application_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_id", String(40), ForeignKey("applications.application_id"), nullable=False, index=True),
    Column("status", String(24), nullable=False),
    Column("detail", Text),
    Column("created_at", DateTime, nullable=False),
)
