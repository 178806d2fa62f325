"""an application remembers the resident's language, so its notices are sent in it

Revision ID: 0013
Revises: 0012

Notices (submitted, handed to a worker, a new status) went out in Chinese to every resident:
the application did not record the language the resident filed in. Rows from before are Chinese.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=False, server_default="zh"))


def downgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.drop_column("language")
