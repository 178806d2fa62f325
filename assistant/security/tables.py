"""Rate-limit counters shared by every server process (when no Redis is configured): one row per
limited key and window, holding its count and when the window ends (seconds since the epoch)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, String, Table

from assistant.core.db import metadata

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)
