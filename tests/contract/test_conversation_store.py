"""The conversation store on both backends: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from assistant.dialogue.state import ActiveForm, ConversationState, PendingQuestion, Topic
from assistant.dialogue.store import ConversationStore, conversations


def _session() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def test_new_conversation_then_state_round_trips(databases, vault, database_url):
    store = ConversationStore(databases.engine(database_url), vault)
    session = _session()
    conv = store.get_or_create(session, "wechat", "u1")
    assert conv.is_new and conv.state == ConversationState()
    conv.language = "en"
    conv.state = ConversationState(
        topic=Topic(question="高龄津贴多少钱"),
        flow=ActiveForm(kind="dispute", form_id="dispute_mediation", values={"phone": "13812345678"}),
        pending=PendingQuestion(kind="rating", ticket_id="T1"))
    store.save(conv)

    again = ConversationStore(databases.engine(database_url), vault).get_or_create(session, "web", "someone-else")
    assert not again.is_new
    assert again.channel == "wechat" and again.user_id == "u1"  # the first channel is kept
    assert again.language == "en"
    assert again.state.flow is not None and again.state.flow.values["phone"] == "13812345678"
    assert again.state.topic == Topic(question="高龄津贴多少钱")
    assert again.state.pending_of("rating") == PendingQuestion(kind="rating", ticket_id="T1")


def test_turns_are_kept_in_order_with_their_trace(databases, vault, database_url):
    store = ConversationStore(databases.engine(database_url), vault)
    session = _session()
    store.get_or_create(session, "web", "u1")
    store.add_turn(session, "resident", "你好")
    store.add_turn(session, "assistant", "您好！", "smalltalk", {"intent": "greeting", "confidence": 0.97})
    store.add_turn(session, "resident", "低保怎么申请")
    history = store.history(session)
    assert [t["role"] for t in history] == ["resident", "assistant", "resident"]
    assert history[1]["trace"]["intent"] == "greeting" and history[1]["reply_type"] == "smalltalk"
    assert store.history(session, limit=1)[0]["text"] == "低保怎么申请"
    assert store.history(_session()) == []


def test_sessions_do_not_see_each_other(databases, vault, database_url):
    store = ConversationStore(databases.engine(database_url), vault)
    a, b = _session(), _session()
    conv_a = store.get_or_create(a, "web", "u1")
    conv_a.state = ConversationState(topic=Topic(question="A"))
    store.save(conv_a)
    assert store.get_or_create(b, "web", "u2").state == ConversationState()
    store.add_turn(a, "resident", "only in a")
    assert store.history(b) == []


def test_a_state_that_cannot_be_read_starts_afresh(databases, vault, database_url):
    """A hand-edited or corrupt row must not fail the resident's next message."""
    store = ConversationStore(databases.engine(database_url), vault)
    session = _session()
    store.get_or_create(session, "web", "u1")
    with store.engine.begin() as conn:
        conn.execute(update(conversations).where(conversations.c.session_id == session)
                     .values(state={"flow": {"kind": "no-such-kind"}}))
    assert store.get_or_create(session, "web", "u1").state == ConversationState()
