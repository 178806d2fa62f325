"""The ticket state machine. Every legal move is listed here and nowhere else; the diagram in
docs/escalation.md is generated from TRANSITIONS (see tests/unit/test_ticket_states.py)."""

from __future__ import annotations

from assistant.core.errors import LinliError

PENDING, CLAIMED, WAITING, RESOLVED, CLOSED, TRANSFERRED, REOPENED = (
    "pending", "claimed", "waiting_resident", "resolved", "closed", "transferred", "reopened")
STATUSES = (PENDING, CLAIMED, WAITING, RESOLVED, CLOSED, TRANSFERRED, REOPENED)
# Statuses a worker can pick up; statuses in which a worker holds the conversation.
CLAIMABLE = frozenset({PENDING, TRANSFERRED, REOPENED})
HELD = frozenset({CLAIMED, WAITING})
OPEN = frozenset({PENDING, CLAIMED, WAITING, TRANSFERRED, REOPENED})

# action -> {from status: to status}
TRANSITIONS: dict[str, dict[str, str]] = {
    "claim": {PENDING: CLAIMED, TRANSFERRED: CLAIMED, REOPENED: CLAIMED},
    "ask_resident": {CLAIMED: WAITING},
    "resident_replied": {WAITING: CLAIMED},
    "transfer": {PENDING: TRANSFERRED, CLAIMED: TRANSFERRED, WAITING: TRANSFERRED, REOPENED: TRANSFERRED,
                 TRANSFERRED: TRANSFERRED},
    "resolve": {CLAIMED: RESOLVED, WAITING: RESOLVED},
    "close": {RESOLVED: CLOSED},
    "reopen": {RESOLVED: REOPENED, CLOSED: REOPENED},
}


class IllegalTransition(LinliError):
    code = "illegal_transition"
    http_status = 409

    def __init__(self, action: str, status: str) -> None:
        status_zh, action_zh = STATUS_LABELS_ZH.get(status, status), ACTION_LABELS_ZH.get(action, action)
        super().__init__(
            f"工单当前状态为“{status_zh}”，不能执行“{action_zh}”。",
            f"Cannot {action.replace('_', ' ')} a ticket that is {status.replace('_', ' ')}.",
            action=action, status=status,
        )


STATUS_LABELS_ZH = {PENDING: "待认领", CLAIMED: "处理中", WAITING: "等待居民回复", RESOLVED: "已解决", CLOSED: "已关闭",
                    TRANSFERRED: "已转派", REOPENED: "重新打开"}
ACTION_LABELS_ZH = {"create": "创建", "claim": "认领", "ask_resident": "询问居民", "resident_replied": "居民回复",
                    "resident_message": "居民留言", "transfer": "转派", "resolve": "办结", "close": "关闭",
                    "reopen": "重新打开", "reply": "回复", "note": "备注", "sla_breach": "超时升级", "rate": "居民评分",
                    "reveal": "查看个人信息"}


def next_status(action: str, status: str) -> str:
    moves = TRANSITIONS.get(action)
    if moves is None or status not in moves:
        raise IllegalTransition(action, status)
    return moves[status]


def mermaid() -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {PENDING}"]
    for action, moves in TRANSITIONS.items():
        for source, target in moves.items():
            lines.append(f"    {source} --> {target}: {action}")
    lines.append(f"    {CLOSED} --> [*]")
    return "\n".join(lines)
