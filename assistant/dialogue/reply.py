"""What the dialogue engine answers with, shared by the engine and its flows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    reply_type: str
    text: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    quick_replies: list[str] = field(default_factory=list)
    ticket_id: str | None = None
    session_id: str = ""
    trace: dict[str, Any] = field(default_factory=dict)
    # The stored assistant turn: what a resident's 👍 / 👎 names (POST /api/v1/turns/{id}/feedback).
    turn_id: int | None = None

    def public(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"session_id": self.session_id, "reply_type": self.reply_type, "text": self.text,
                                   "citations": self.citations, "quick_replies": self.quick_replies}
        if self.ticket_id:
            payload["ticket_id"] = self.ticket_id
        if self.turn_id is not None:
            payload["turn_id"] = self.turn_id
        return payload
