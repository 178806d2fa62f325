"""Opening tickets for a conversation: hand-offs to a person and emergencies. A retried message
(same channel message id) opens one ticket, not two."""

from __future__ import annotations

from typing import Any

from assistant.dialogue.ports import RateLimit
from assistant.dialogue.replies import Replies
from assistant.dialogue.reply import Reply
from assistant.dialogue.routing import Turn
from assistant.dialogue.state import ConversationState
from assistant.escalation.base import EscalationService
from assistant.escalation.states import OPEN


class Handoffs:
    def __init__(self, escalation: EscalationService, replies: Replies, *, limit: RateLimit | None = None,
                 per_hour: int = 3) -> None:
        self.escalation = escalation
        self.replies = replies
        self.limit = limit
        self.per_hour = per_hour

    def open(self, turn: Turn, state: ConversationState, *, kind: str, reply_key: str, summary: str,
             form_data: dict[str, Any] | None = None, priority: str | None = None) -> Reply:
        conversation = turn.conversation
        # Asking again while the same kind of request still waits in the queue points to it: a
        # second ticket would only split the case between two workers.
        waiting = self.escalation.get(state.handoff_ticket) if state.handoff_ticket and kind != "emergency" else None
        if waiting is not None and waiting.kind == kind and waiting.status in OPEN:
            return Reply("handoff", self.replies.say("handoff_waiting", turn.language, ticket_id=waiting.ticket_id),
                         ticket_id=waiting.ticket_id)
        # One conversation may ask for a person a few times an hour; more is a script, not a resident.
        # An emergency always gets through.
        if kind != "emergency" and self.limit is not None and not self.limit.hit(
                f"handoff:{conversation.session_id}", limit=self.per_hour, window_s=3600):
            return Reply("handoff", self.replies.say("handoff_limit", turn.language,
                                                     ticket_id=state.handoff_ticket or "—"),
                         ticket_id=state.handoff_ticket)
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
