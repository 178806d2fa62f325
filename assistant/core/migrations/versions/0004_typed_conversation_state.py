"""conversation state: the free-form dict becomes the typed state (assistant/dialogue/state.py)

Revision ID: 0004
Revises: 0003

The old dict held up to eleven keys written from several modules (form, filing, heard_meant,
awaiting_rating, safety_check, offered_human, rejected_application, topic_question,
topic_title, last_question, handoff_ticket). The typed state keeps one active flow, one pending
question, the topic, the last question and the last ticket. The conversion is written out here,
not imported, so that this migration still means the same thing when the state's code changes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TYPED_KEYS = {"flow", "pending", "topic", "last_question", "handoff_ticket"}

conversations = sa.table("conversations", sa.column("session_id", sa.String), sa.column("state", sa.JSON))


def typed_from_legacy(old: dict[str, Any]) -> dict[str, Any]:
    """One old state dict as the typed state's JSON. Where the old dict held several pending
    flags at once, the one the old engine consumed first wins."""
    if not old or set(old) <= TYPED_KEYS:
        return old or {}
    new: dict[str, Any] = {}
    if isinstance(old.get("filing"), dict):
        filing = old["filing"]
        new["flow"] = {"kind": "procedure", "form_id": filing.get("id", ""), "values": filing.get("values") or {},
                       "confirming": bool(filing.get("confirming"))}
        if filing.get("key"):
            new["flow"]["submission_key"] = filing["key"]
    elif isinstance(old.get("form"), dict):
        form = old["form"]
        new["flow"] = {"kind": "dispute", "form_id": form.get("id", "dispute_mediation"),
                       "values": form.get("values") or {}, "confirming": bool(form.get("confirming"))}
        if form.get("opening"):
            new["flow"]["opening"] = form["opening"]
    if old.get("heard_meant"):
        new["pending"] = {"kind": "heard_meant", "meant": old["heard_meant"]}
    elif old.get("awaiting_rating"):
        new["pending"] = {"kind": "rating", "ticket_id": old["awaiting_rating"]}
    elif old.get("safety_check"):
        new["pending"] = {"kind": "safety_check"}
    elif old.get("offered_human"):
        new["pending"] = {"kind": "offered_human"}
        if old.get("last_question"):
            new["pending"]["question"] = old["last_question"]
    elif old.get("rejected_application"):
        new["pending"] = {"kind": "rejected_application", "reference": old["rejected_application"]}
    if old.get("topic_question"):
        new["topic"] = {"question": old["topic_question"]}
        if old.get("topic_title"):
            new["topic"]["title"] = old["topic_title"]
    for key in ("last_question", "handoff_ticket"):
        if old.get(key):
            new[key] = old[key]
    return new


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(conversations.c.session_id, conversations.c.state)).all()
    state: Any  # the JSON column's value
    for session_id, state in rows:
        converted = typed_from_legacy(dict(state or {}))
        if converted != (state or {}):
            bind.execute(conversations.update().where(conversations.c.session_id == session_id)
                         .values(state=converted))


def downgrade() -> None:
    # The typed state keeps less than the old dict held; going back starts conversations afresh.
    op.execute(conversations.update().values(state={}))
