"""knowledge-base change jobs and their audit trail

Revision ID: 0010
Revises: 0009

`kb_jobs`: one upload, front-matter edit, retirement or restoration an administrator asked for in
/admin/kb, with its progress (chunks embedded of all), so every server process shows it.
`kb_audit`: who changed which document, how and when (one row per document per finished job).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_jobs",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("doc_ids", sa.JSON, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("error_zh", sa.Text),
        sa.Column("error_en", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_kb_jobs_created_at", "kb_jobs", ["created_at"])
    op.create_table(
        "kb_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("doc_id", sa.String(160), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_kb_audit_at", "kb_audit", ["at"])
    op.create_index("ix_kb_audit_doc_id", "kb_audit", ["doc_id"])


def downgrade() -> None:
    op.drop_table("kb_audit")
    op.drop_table("kb_jobs")
