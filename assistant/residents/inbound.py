"""The channel contract, inbound: every channel — the kiosk and phone pages, an integration's API
calls, WeChat — hands its residents' messages to the dialogue through one `MessageGate`.

A channel does three things of its own (in the manner of Rasa's input channels, and of
Chatwoot's inbox channels: each verifies and names its sender, then hands over a message):

1. verify the request (a page session token, an integration key, WeChat's signature),
2. name the resident (`Resident`: owner, channel, user, centre) and the conversation,
3. key the message by the channel's own message id (`message_id`, WeChat's MsgId),

and then gives the gate an `InboundMessage`. The gate does the rest, the same for every channel
and once: the conversation is bound to its owner (someone else's is refused), the per-conversation
message limit is counted, and the dialogue handles the message once per key (a resend gets the
first reply and changes nothing). The outbound half is `connectors/channels`' `Channel`.
docs/architecture.md lists what a new channel takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from assistant.core.errors import TooManyRequests
from assistant.residents.sessions import Resident, ResidentSessions

if TYPE_CHECKING:
    from assistant.dialogue.reply import Reply


class Dialogue(Protocol):
    """The dialogue engine's two entry points (assistant/dialogue/engine.py)."""

    def handle(self, session_id: str, text: str, channel: str = "web", user_id: str = "anonymous",
               message_id: str | None = None, centre: str | None = None) -> Reply: ...

    def ask_back(self, session_id: str, heard: str, question: str, meant: str | None, channel: str = "web",
                 user_id: str = "anonymous") -> Reply: ...


class MessageLimit(Protocol):
    """A shared counter (assistant/security/limits.py's RateLimiter)."""

    def hit(self, key: str, *, limit: int, window_s: int) -> bool: ...

    def retry_after(self, key: str, *, limit: int, window_s: int) -> int: ...


@dataclass(frozen=True)
class InboundMessage:
    """One resident message as a channel hands it over: who, in which conversation, what, and
    the channel's own key for it (None: the channel has none, and a resend is a new message)."""

    resident: Resident
    session_id: str
    text: str
    key: str | None = None
    # The conversation's centre as bound (its first message's; the gate's `admit` returns it).
    centre: str | None = None


class MessageGate:
    """The one way into the dialogue for every channel: bind, count, hand over once per key."""

    def __init__(self, residents: ResidentSessions, dialogue: Callable[[], Dialogue], limits: MessageLimit,
                 messages_per_minute: int) -> None:
        self.residents = residents
        # Built when the first message is handed over: binding a conversation to file an
        # application, or to read a worker's words, needs no index and no model.
        self._dialogue = dialogue
        self.limits = limits
        self.messages_per_minute = messages_per_minute

    @property
    def dialogue(self) -> Dialogue:
        return self._dialogue()

    def conversation(self, resident: Resident, named: str | None = None) -> tuple[str, str]:
        """The conversation a verified resident speaks in, bound to them (started if new): theirs
        when the channel fixes it (a page session, WeChat), else the one the client names. Returns
        (session id, its centre); another owner's conversation is refused (403)."""
        session_id = self.residents.session_for(resident, named)
        centre = self.residents.bind(session_id, owner=resident.owner, channel=resident.channel,
                                     user_id=resident.user_id, centre=resident.centre)
        return session_id, centre

    def within_limit(self, session_id: str) -> None:
        """A resident types a few messages a minute; a script posting hundreds is slowed down
        (429, with the seconds to wait), whichever channel it comes by."""
        limit, key = self.messages_per_minute, f"messages:{session_id}"
        if not self.limits.hit(key, limit=limit, window_s=60):
            retry = self.limits.retry_after(key, limit=limit, window_s=60)
            raise TooManyRequests(f"消息发得太快了，请{retry}秒后再发。",
                                  f"Too many messages; please wait {retry} seconds.", retry_after=retry)

    def admit(self, resident: Resident, named: str | None = None) -> tuple[str, str]:
        """Bind the conversation and count the message: (session id, centre) it goes to."""
        session_id, centre = self.conversation(resident, named)
        self.within_limit(session_id)
        return session_id, centre

    def hand_over(self, message: InboundMessage) -> Reply:
        """The dialogue's reply to an admitted message, once per key."""
        resident = message.resident
        return self.dialogue.handle(message.session_id, message.text, channel=resident.channel,
                                    user_id=resident.user_id, message_id=message.key,
                                    centre=message.centre or resident.centre)

    def keyed(self, key: str | None) -> KeyedDialogue:
        """The dialogue with this message's key on every step, for a message the speech layer
        turns into a dialogue step (a voice clip processed twice is still one step)."""
        return KeyedDialogue(self.dialogue, key)


class KeyedDialogue:
    """The dialogue engine with one inbound message's key on `handle` (speech's VoiceDialogue)."""

    def __init__(self, dialogue: Dialogue, key: str | None) -> None:
        self.dialogue = dialogue
        self.key = key

    def handle(self, session_id: str, text: str, channel: str = "web", user_id: str = "anonymous") -> Reply:
        return self.dialogue.handle(session_id, text, channel=channel, user_id=user_id, message_id=self.key)

    def ask_back(self, session_id: str, heard: str, question: str, meant: str | None, channel: str = "web",
                 user_id: str = "anonymous") -> Reply:
        return self.dialogue.ask_back(session_id, heard, question, meant, channel=channel, user_id=user_id)
