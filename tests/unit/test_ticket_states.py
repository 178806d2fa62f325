from __future__ import annotations

import pytest

from assistant.core.settings import PROJECT_ROOT
from assistant.escalation.states import STATUSES, TRANSITIONS, IllegalTransition, mermaid, next_status


def test_every_listed_move_is_legal_and_everything_else_is_refused():
    for action, moves in TRANSITIONS.items():
        for status in STATUSES:
            if status in moves:
                assert next_status(action, status) == moves[status]
            else:
                with pytest.raises(IllegalTransition) as caught:
                    next_status(action, status)
                assert caught.value.http_status == 409 and "不能执行" in caught.value.message("zh")


def test_unknown_action_is_refused():
    with pytest.raises(IllegalTransition):
        next_status("delete", "pending")


def test_every_status_is_reachable_and_closed_can_reopen():
    reachable = {"pending"}
    for moves in TRANSITIONS.values():
        reachable |= set(moves.values())
    assert reachable == set(STATUSES)
    assert next_status("reopen", "closed") == "reopened"


def test_the_documented_diagram_matches_the_code():
    doc = (PROJECT_ROOT / "docs" / "escalation.md").read_text(encoding="utf-8")
    assert mermaid() in doc
