"""Migration 0004 converts the free-form conversation state of earlier releases into the typed
state, on SQLite and PostgreSQL: a database at revision 0003 with old rows, upgraded to head,
reads back through the store as typed state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from assistant.core.db import MIGRATIONS_DIR, metadata, migrate
from assistant.dialogue.state import ActiveForm, ConversationState, PendingQuestion, Topic
from assistant.dialogue.store import ConversationStore, conversations

OLD_STATES = {
    "mid-filing": {"filing": {"id": "elderly_allowance", "values": {"applicant_name": "王秀英"}, "confirming": False,
                              "key": "abc123"}, "topic_question": "高龄津贴多少", "topic_title": "高龄津贴",
                   "last_question": "高龄津贴多少", "awaiting_rating": "T20260101-AAAAAA"},
    "mid-dispute": {"form": {"id": "dispute_mediation", "values": {"dispute_type": "leak"}, "confirming": True,
                             "opening": "楼上漏水"}, "safety_check": True, "handoff_ticket": "T1"},
    "asked-back": {"heard_meant": "我今年86岁", "offered_human": True},
    "rejected": {"rejected_application": "A-1", "offered_human": True, "last_question": "低保怎么申请"},
    "empty": {},
}

EXPECTED = {
    "mid-filing": ConversationState(
        flow=ActiveForm(kind="procedure", form_id="elderly_allowance", values={"applicant_name": "王秀英"},
                        submission_key="abc123"),
        pending=PendingQuestion(kind="rating", ticket_id="T20260101-AAAAAA"),
        topic=Topic(question="高龄津贴多少", title="高龄津贴"), last_question="高龄津贴多少"),
    "mid-dispute": ConversationState(
        flow=ActiveForm(kind="dispute", form_id="dispute_mediation", values={"dispute_type": "leak"},
                        confirming=True, opening="楼上漏水"),
        pending=PendingQuestion(kind="safety_check"), handoff_ticket="T1"),
    "asked-back": ConversationState(pending=PendingQuestion(kind="heard_meant", meant="我今年86岁")),
    "rejected": ConversationState(pending=PendingQuestion(kind="offered_human", question="低保怎么申请"),
                                  last_question="低保怎么申请"),
    "empty": ConversationState(),
}


def _alembic(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@pytest.fixture
def fresh_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
        return
    # A database of its own: the shared test database is already at head.
    base = request.getfixturevalue("postgres_database")
    name = f"linli_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("fresh_url", ["sqlite", "postgresql"], indirect=True)
def test_old_states_become_typed_states(databases, vault, fresh_url):
    engine = create_engine(fresh_url)
    with engine.begin() as connection:
        command.upgrade(_alembic(connection), "0003")
        now = datetime(2026, 11, 1)
        for session, state in OLD_STATES.items():
            connection.execute(insert(conversations).values(session_id=session, channel="web", user_id="u",
                                                            language="zh", state=state, created_at=now,
                                                            updated_at=now))
    migrate(engine)
    engine.dispose()
    store = ConversationStore(databases.engine(fresh_url), vault)
    for session, expected in EXPECTED.items():
        assert store.get_or_create(session, "web", "u").state == expected, session
    assert "conversations" in metadata.tables
