"""Residents' feedback on Linli's answers (one row per rated assistant turn), and the replies
counted per day for the analytics page (migration 0009)."""

from __future__ import annotations

from sqlalchemy import Column, Date, DateTime, ForeignKey, Integer, SmallInteger, String, Table, Text, UniqueConstraint

from assistant.core.db import metadata

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("turn_id", Integer, ForeignKey("turns.id"), nullable=False),
    Column("session_id", String(128), nullable=False, index=True),
    Column("rating", SmallInteger, nullable=False),  # 1 = 👍, -1 = 👎
    Column("reason", String(32)),  # an id from feedback.yaml's reasons
    Column("comment", Text),  # the resident's own words, ID and phone numbers masked
    Column("channel", String(32), nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("turn_id"),
)

# The dialogue's replies per UTC day and centre ("" when none), counted three ways: by channel, by
# reply type and by intent (dimension "channel" | "reply_type" | "intent"; value "" when none), for
# days that are over; assistant/analytics/queries.py fills it the first time a day is read.
daily_replies = Table(
    "analytics_daily_replies",
    metadata,
    Column("day", Date, primary_key=True),
    Column("centre", String(64), primary_key=True),
    Column("dimension", String(16), primary_key=True),
    Column("value", String(64), primary_key=True),
    Column("replies", Integer, nullable=False),
)

# The days already counted into daily_replies (a day with no replies has no rows there, but is here).
rolled_days = Table(
    "analytics_rolled_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("rolled_at", DateTime, nullable=False),
)
