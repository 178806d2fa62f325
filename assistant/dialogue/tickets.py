"""Opening tickets for a conversation: hand-offs to a person and emergencies. A retried message
(same channel message id) opens one ticket, not two."""

from __future__ import annotations

from typing import Any

from assistant.dialogue.replies import Replies
from assistant.dialogue.reply import Reply
from assistant.dialogue.routing import Turn
from assistant.dialogue.state import ConversationState
from assistant.escalation.base import EscalationService


class Handoffs:
    def __init__(self, escalation: EscalationService, replies: Replies) -> None:
        self.escalation = escalation
        self.replies = replies

    def open(self, turn: Turn, state: ConversationState, *, kind: str, reply_key: str, summary: str,
             form_data: dict[str, Any] | None = None, priority: str | None = None) -> Reply:
        conversation = turn.conversation
        ticket = self.escalation.open_ticket(
            kind=kind, priority=priority or ("high" if kind == "dispute" else "normal"),
            session_id=conversation.session_id, channel=conversation.channel, user_id=conversation.user_id,
            summary=summary[:200], form_data=form_data, idempotency_key=conversation.message_key,
            centre=conversation.centre)
        state.handoff_ticket = ticket.ticket_id
        reply_type = "emergency" if kind == "emergency" else "handoff"
        return Reply(reply_type, self.replies.say(reply_key, turn.language, ticket_id=ticket.ticket_id),
                     ticket_id=ticket.ticket_id)

    def emergency(self, turn: Turn, state: ConversationState) -> Reply:
        """An urgent ticket; a half-filled form travels with it rather than being lost."""
        flow, state.flow = state.flow, None
        return self.open(turn, state, kind="emergency", priority="urgent", reply_key="emergency", summary=turn.text,
                         form_data=dict(flow.values) if flow else None)
