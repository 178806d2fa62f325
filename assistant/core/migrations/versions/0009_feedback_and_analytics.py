"""resident feedback on answers, and the indexes the analytics page filters on

Revision ID: 0009
Revises: 0008

`feedback`: one row per rated assistant turn (👍 = 1, 👎 = -1, an optional reason id from
assistant/analytics/feedback.yaml and a masked free text); rating the same turn again replaces it.

`analytics_daily_replies` / `analytics_rolled_days`: the dialogue's replies counted per UTC day and
centre, by channel, by reply type and by intent, filled lazily for days that are over (today is
counted live), so the analytics page reads a few thousand rows instead of every turn of the range.

Indexes for /admin/analytics (assistant/analytics/queries.py), which filters every table by a
date range:
- `turns (role, created_at)`: the replies of the days being counted (the turns table only had session_id);
- `turns (reply_type, created_at)`: the refusals of a range;
- `turns (session_id, id)`: the resident's question just before a refused or 👎 answer;
- `tickets (created_at)`: hand-offs, SLA breaches and time to claim in a range;
- `feedback (created_at)`, `feedback (session_id)`, and `feedback (turn_id)` unique.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("turn_id", sa.Integer, sa.ForeignKey("turns.id"), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("comment", sa.Text),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("turn_id", name="uq_feedback_turn_id"),
    )
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])
    op.create_index("ix_feedback_session_id", "feedback", ["session_id"])
    op.create_index("ix_turns_role_created_at", "turns", ["role", "created_at"])
    op.create_index("ix_turns_reply_type_created_at", "turns", ["reply_type", "created_at"])
    op.create_index("ix_turns_session_id_id", "turns", ["session_id", "id"])
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"])
    op.create_table(
        "analytics_daily_replies",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("centre", sa.String(64), primary_key=True),
        sa.Column("dimension", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(64), primary_key=True),
        sa.Column("replies", sa.Integer, nullable=False),
    )
    op.create_table(
        "analytics_rolled_days",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("rolled_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("analytics_rolled_days")
    op.drop_table("analytics_daily_replies")
    op.drop_index("ix_tickets_created_at", table_name="tickets")
    op.drop_index("ix_turns_session_id_id", table_name="turns")
    op.drop_index("ix_turns_reply_type_created_at", table_name="turns")
    op.drop_index("ix_turns_role_created_at", table_name="turns")
    op.drop_table("feedback")
