"""knowledge-base jobs any process can run: what to do, and who holds the job until when

Revision ID: 0012
Revises: 0011

A job was a closure in the thread of the server that took the upload, so a job whose process died
stayed "interrupted". Now its documents (or ids) are stored with it, and a process leases it
(`lease_owner`, `lease_until`, renewed while it runs): when the lease runs out another process
takes the job over. `attempts` stops a job that keeps taking its process down.

`leader_leases`: the background work one process at a time does (the SLA sweep, the analytics
pre-count), held by whichever worker renews it (assistant/core/leases.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kb_jobs") as batch:
        batch.add_column(sa.Column("payload", sa.JSON))
        batch.add_column(sa.Column("lease_owner", sa.String(128)))
        batch.add_column(sa.Column("lease_until", sa.DateTime))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.create_index("ix_kb_jobs_status", ["status"])
    op.create_table(
        "leader_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("until", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leader_leases")
    with op.batch_alter_table("kb_jobs") as batch:
        batch.drop_index("ix_kb_jobs_status")
        for column in ("attempts", "lease_until", "lease_owner", "payload"):
            batch.drop_column(column)
