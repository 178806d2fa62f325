"""WeChat's inbound table: every callback accepted once (the dedup key is unique) and, for the
messages that need the dialogue, the durable job the processor claims. The push outbox and the
shared access token are the channel adapter's (connectors/channels/wechat.py)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Integer, String, Table, Text

from assistant.core.db import metadata

wechat_inbound = Table(
    "wechat_inbound",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # msg:FromUserName:MsgId for messages, event:FromUserName:CreateTime for events: a retry of one
    # callback hits it; the sender is part of it, so nobody else's MsgId can make it a "duplicate".
    Column("dedup_key", String(160), nullable=False, unique=True),
    Column("openid", String(128), nullable=False, index=True),
    Column("msg_type", String(24), nullable=False),
    Column("payload", JSON, nullable=False),
    # queued | processing is a lease on queued | done | failed | instant (answered in the callback)
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)


# Every signed callback's (signature, timestamp, nonce), remembered for the timestamp window with
# the digest of the body it came with. A plain-mode signature does not cover the body: the same
# signature with another body is a replay, refused; with the same body it is WeChat's own retry.
wechat_nonces = Table(
    "wechat_nonces",
    metadata,
    Column("nonce_key", String(64), primary_key=True),  # sha256 of signature, timestamp and nonce
    Column("body_sha256", String(64), nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),
)
