"""A turn's record of what it changed in the conversation's state (issue 30: replayable turns)."""

from __future__ import annotations

from assistant.dialogue.state import ActiveForm, ConversationState, PendingQuestion, Topic, state_changes


def test_a_form_started_answered_and_ended_reads_as_changes():
    empty = ConversationState()
    started = ConversationState(flow=ActiveForm(kind="procedure", form_id="elderly_allowance"),
                                topic=Topic(question="高龄津贴怎么申请"))
    assert state_changes(empty, started) == [
        {"path": "flow.confirming", "from": None, "to": False},
        {"path": "flow.form_id", "from": None, "to": "elderly_allowance"},
        {"path": "flow.kind", "from": None, "to": "procedure"},
        {"path": "topic.question", "from": None, "to": "高龄津贴怎么申请"},
    ]
    answered = started.model_copy(deep=True)
    assert answered.flow is not None
    answered.flow.values["applicant_name"] = "王秀英"
    # An answer is one change: the field that was empty has a value (not "values" replaced whole).
    assert state_changes(started, answered) == [{"path": "flow.values.applicant_name", "from": None, "to": "王秀英"}]
    ended = ConversationState(topic=started.topic, pending=PendingQuestion(kind="rating", ticket_id="T1"))
    changes = {c["path"]: (c["from"], c["to"]) for c in state_changes(answered, ended)}
    assert changes["flow.values.applicant_name"] == ("王秀英", None)
    assert changes["pending.kind"] == (None, "rating") and changes["pending.ticket_id"] == (None, "T1")
    assert "topic.question" not in changes


def test_a_turn_that_changes_nothing_records_nothing():
    state = ConversationState(last_question="医保怎么报销")
    assert state_changes(state, state.model_copy(deep=True)) == []
