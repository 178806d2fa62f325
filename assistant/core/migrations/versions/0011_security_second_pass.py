"""who filed an application, and the WeChat callback nonces already used

Revision ID: 0011
Revises: 0010

`applications.owner`: the conversation's owner (`page:<session>`, `api:<client>:<user>`,
`wechat:<openid>`) when the application was filed. A resident's applications are looked up by it,
never by a bare user id another integration client may also use; filing limits count by it.
Older rows take their conversation's owner, or `session:<session_id>` where it has none.

`wechat_nonces`: each signed callback's (signature, timestamp, nonce) with the digest of its body,
kept for twice the timestamp window: the same signature with another body is a replay.

`wechat_inbound.dedup_key` now names the sender as well as the MsgId (`msg:<openid>:<MsgId>`):
older keys are rewritten so that a late retry of an old message is still recognised.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.add_column(sa.Column("owner", sa.String(200)))
        batch.create_index("ix_applications_owner", ["owner"])
    op.execute("UPDATE applications SET owner = (SELECT conversations.owner FROM conversations "
               "WHERE conversations.session_id = applications.session_id)")
    op.execute("UPDATE applications SET owner = 'session:' || session_id WHERE owner IS NULL")
    op.create_table(
        "wechat_nonces",
        sa.Column("nonce_key", sa.String(64), primary_key=True),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_wechat_nonces_expires_at", "wechat_nonces", ["expires_at"])
    op.execute("UPDATE wechat_inbound SET dedup_key = 'msg:' || openid || ':' || substr(dedup_key, 5) "
               "WHERE dedup_key LIKE 'msg:%'")


def downgrade() -> None:
    op.execute("UPDATE wechat_inbound SET dedup_key = 'msg:' || substr(dedup_key, length(openid) + 6) "
               "WHERE dedup_key LIKE 'msg:%'")
    op.drop_index("ix_wechat_nonces_expires_at", table_name="wechat_nonces")
    op.drop_table("wechat_nonces")
    with op.batch_alter_table("applications") as batch:
        batch.drop_index("ix_applications_owner")
        batch.drop_column("owner")
