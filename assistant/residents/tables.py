"""Residents' page sessions: only a hash of each token is stored, so a copy of the database
cannot be used to speak as a resident."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, String, Table

from assistant.core.db import metadata

resident_sessions = Table(
    "resident_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("session_id", String(128), nullable=False, unique=True),
    Column("channel", String(32), nullable=False),
    Column("centre", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
)
