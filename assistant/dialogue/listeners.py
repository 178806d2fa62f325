"""What the dialogue does when a ticket changes: the bot takes the conversation back when a
worker resolves it, and asks for a rating (Chatwoot's csat_survey_listener). Subscribed once, in
assistant/services.py."""

from __future__ import annotations

from assistant.dialogue.replies import Replies
from assistant.dialogue.state import PendingQuestion
from assistant.dialogue.store import ConversationStore
from assistant.escalation.events import TicketResolved
from assistant.escalation.listeners import Channels

BOT_SENDER = "邻里助手"


class RatingRequest:
    """On `TicketResolved`: the conversation's pending question becomes the rating of that ticket
    (so the resident's next "5" is read as a rating), the rating request is sent on the resident's
    channel, and kept as the assistant's turn."""

    def __init__(self, conversations: ConversationStore, channels: Channels, replies: Replies) -> None:
        self.conversations = conversations
        self.channels = channels
        self.replies = replies

    def __call__(self, event: TicketResolved) -> None:
        ticket = event.ticket
        # The conversation's lock: a message of the resident's being handled now saves its state
        # first, and the rating question is not overwritten by it.
        with self.conversations.one_at_a_time(ticket.session_id):
            conversation = self.conversations.get_or_create(ticket.session_id, ticket.channel, ticket.user_id)
            conversation.state.pending = PendingQuestion(kind="rating", ticket_id=ticket.ticket_id)
            self.conversations.save(conversation)
        prompt = self.replies.say("rating_request", conversation.language)
        self.channels.get(ticket.channel).send(session_id=ticket.session_id, user_id=ticket.user_id, text=prompt,
                                               sender=BOT_SENDER, ticket_id=ticket.ticket_id)
        self.conversations.add_turn(ticket.session_id, "assistant", prompt, "smalltalk",
                                    {"ticket_id": ticket.ticket_id, "rating_request": True})
