"""resident sessions, message receipts, conversation owner and centre

Revision ID: 0005
Revises: 0004

A conversation now belongs to one owner (a page session, an integration client's user, a WeChat
user) and one centre, fixed when it starts. Conversations started before this have no owner; the
first credential that speaks in one binds it. Message receipts make a repeated `message_id` return
the first reply instead of being processed again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resident_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(128), nullable=False, unique=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("centre", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime),
    )
    op.create_table(
        "message_receipts",
        sa.Column("message_key", sa.String(320), primary_key=True),
        sa.Column("session_id", sa.String(128), nullable=False, index=True),
        sa.Column("reply", sa.JSON),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("owner", sa.String(200)))
        batch.add_column(sa.Column("centre", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("centre")
        batch.drop_column("owner")
    op.drop_table("message_receipts")
    op.drop_table("resident_sessions")
