"""Who is speaking for a resident, and which conversations they may speak in.

Three credentials reach a conversation:

| credential | owner | session |
|---|---|---|
| page session token (`X-Session-Token`, `POST /api/v1/sessions`) | `page:<session_id>` | minted with it |
| an integration key (`X-API-Key`, `LINLI_API__KEYS`) | `api:<client>:<user_id>` | the client's own ids |
| WeChat's signature (assistant/wechat/) | `wechat:<openid>` | `wechat:<openid>` |

A conversation is bound to its owner, channel and centre by its first message; after that any
other credential gets 403, so knowing a session id grants nothing."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from assistant.core.clock import utcnow
from assistant.core.errors import Forbidden, LinliError, NotAuthenticated
from assistant.core.locks import KeyedLock
from assistant.core.settings import Settings
from assistant.dialogue.store import conversations
from assistant.residents.tables import resident_sessions

PAGE_CHANNELS = ("kiosk", "chat")
# An integration's channel is a name ("web", "crm", "hotline-12345"), shown on the analytics page.
_CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")


class InvalidSessionId(LinliError):
    code = "invalid_session_id"
    http_status = 422


class InvalidChannel(LinliError):
    code = "invalid_channel"
    http_status = 422


@dataclass(frozen=True)
class Resident:
    """The resident a request speaks for: its owner key, channel, user and centre. `session_id`
    is fixed for page sessions and WeChat; an integration client names its own."""

    owner: str
    channel: str
    user_id: str
    centre: str
    session_id: str | None = None


@dataclass(frozen=True)
class ReservedNames:
    """What an integration client may not choose, gathered from the registered channels
    (assistant/channels.py): session ids that pages and WeChat mint (`kiosk-…`, `wechat:…`), and
    the conversation channel names that reach residents by credentials of their own (a worker's
    reply goes out on the conversation's channel: an integration may not speak as WeChat's users)."""

    session_prefixes: tuple[str, ...]
    channels: frozenset[str]


@dataclass(frozen=True)
class MintedSession:
    token: str
    session_id: str
    channel: str
    centre: str
    expires_at: datetime

    def public(self) -> dict[str, str]:
        return {"session_token": self.token, "session_id": self.session_id, "channel": self.channel,
                "centre": self.centre, "expires_at": self.expires_at.isoformat()}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _not_yours() -> Forbidden:
    return Forbidden("这个对话不属于您。", "This conversation belongs to someone else.")


class ResidentSessions:
    def __init__(self, engine: Engine, settings: Settings, *, reserved: ReservedNames,
                 lock_holders: Engine | None = None) -> None:
        self.engine = engine
        self.ttl = timedelta(hours=settings.residents.session_ttl_hours)
        self.reserved = reserved
        self.default_centre = settings.escalation.centre
        self.centres = {settings.escalation.centre, *settings.escalation.centres}
        self.api_keys = {name: key.get_secret_value() for name, key in settings.api.keys.items()
                         if key.get_secret_value()}
        # The dialogue's lock of a conversation (ConversationStore.one_at_a_time): binding it waits
        # for a message being handled, across replicas.
        self._conversation_lock = KeyedLock(self.engine, "conversation", settings.dialogue.turn_lock_timeout_s,
                                            holders=lock_holders)

    def centre(self, named: str | None) -> str:
        """A centre the deployment knows; anything else (a typo, an invented name) is the default."""
        return named if named in self.centres else self.default_centre

    # ---- page sessions -----------------------------------------------------------------------

    def mint(self, channel: str, centre: str | None = None) -> MintedSession:
        if channel not in PAGE_CHANNELS:
            raise LinliError(f"渠道只能是 {'、'.join(PAGE_CHANNELS)}。",
                             f"Channel must be one of {', '.join(PAGE_CHANNELS)}.")
        token = secrets.token_urlsafe(32)
        session_id = f"{channel}-{secrets.token_hex(12)}"
        now = utcnow()
        minted = MintedSession(token, session_id, channel, self.centre(centre), now + self.ttl)
        with self.engine.begin() as conn:
            conn.execute(insert(resident_sessions).values(
                token_hash=_hash(token), session_id=session_id, channel=channel, centre=minted.centre,
                created_at=now, expires_at=minted.expires_at))
        self.bind(session_id, owner=f"page:{session_id}", channel=channel, user_id=session_id, centre=minted.centre)
        return minted

    def for_token(self, token: str | None) -> Resident:
        if not token:
            raise NotAuthenticated("请先打开对话页面再发消息。", "Open the chat page first.")
        with self.engine.connect() as conn:
            row = conn.execute(select(resident_sessions).where(
                resident_sessions.c.token_hash == _hash(token), resident_sessions.c.revoked_at.is_(None),
                resident_sessions.c.expires_at > utcnow())).first()
        if row is None:
            raise NotAuthenticated("对话已过期，请重新开始。", "This conversation has expired; please start again.")
        return Resident(f"page:{row.session_id}", row.channel, row.session_id, row.centre, row.session_id)

    def end(self, token: str) -> None:
        """The kiosk's "start again": the token stops working at once."""
        with self.engine.begin() as conn:
            conn.execute(update(resident_sessions).where(resident_sessions.c.token_hash == _hash(token))
                         .values(revoked_at=utcnow()))

    # ---- integration keys --------------------------------------------------------------------

    def for_api_key(self, key: str | None, user_id: str, channel: str, centre: str | None = None) -> Resident:
        client = self._client(key)
        return Resident(f"api:{client}:{user_id}", self.check_client_channel(channel), user_id, self.centre(centre))

    def _client(self, key: str | None) -> str:
        found = None
        for name, expected in self.api_keys.items():
            # Every key is compared, in constant time, so timing tells nothing about which is near.
            if key is not None and hmac.compare_digest(key.encode(), expected.encode()):
                found = name
        if found is None:
            raise NotAuthenticated("需要有效的接口密钥（X-API-Key）。", "A valid X-API-Key is required.")
        return found

    def check_client_session_id(self, session_id: str) -> str:
        if session_id.startswith(self.reserved.session_prefixes):
            raise InvalidSessionId("这个会话编号不能使用。", "This session id is reserved.")
        return session_id

    def check_client_channel(self, channel: str) -> str:
        """An integration client's channel name: letters, digits, `_ . -`, and none of the channels
        that reach residents by other credentials (an integration may not speak as WeChat's users)."""
        if not _CHANNEL_NAME_RE.fullmatch(channel):
            raise InvalidChannel("渠道名只能由字母、数字和 _ . - 组成（最多 32 个）。",
                                 "A channel name is 1-32 letters, digits, '_', '.' or '-'.")
        if channel.casefold() in self.reserved.channels:
            raise InvalidChannel(f"渠道名 {channel} 由其他渠道专用，不能使用。",
                                 f"The channel name {channel!r} belongs to another channel.")
        return channel

    # ---- conversations -----------------------------------------------------------------------

    def session_for(self, resident: Resident, named: str | None) -> str:
        """The conversation a resident speaks in: the one their credential fixes (a page session,
        WeChat's openid), which a request may repeat but not change; else the one an integration
        client names, never one of the ids pages and WeChat mint."""
        if resident.session_id is not None:
            if named and named != resident.session_id:
                raise _not_yours()
            return resident.session_id
        if not named:
            raise InvalidSessionId("请提供会话编号 session_id。", "session_id is required with an API key.")
        return self.check_client_session_id(named)

    def bind(self, session_id: str, *, owner: str, channel: str, user_id: str, centre: str | None = None) -> str:
        """Binds the conversation to `owner` (starting it if new) and returns its centre. A
        conversation that belongs to someone else is refused; one from before owners existed is
        taken by the first credential that speaks in it."""
        # An owner and a centre, once set, never change: a conversation already bound to this
        # owner needs no lock (one read instead of a lock round trip and a transaction per message).
        with self.engine.connect() as conn:
            row = self._binding(conn, session_id, owner)
        if row is not None and row.owner is not None and row.centre is not None:
            return str(row.centre)
        with self._conversation_lock.hold(session_id):
            return self._bind(session_id, owner=owner, channel=channel, user_id=user_id, centre=centre)

    def _bind(self, session_id: str, *, owner: str, channel: str, user_id: str, centre: str | None) -> str:
        for _ in range(3):
            with self.engine.begin() as conn:
                row = self._binding(conn, session_id, owner)
                if row is not None:
                    if row.owner is None or row.centre is None:
                        mine_or_nobodys = conversations.c.owner.is_(None) | (conversations.c.owner == owner)
                        conn.execute(update(conversations).where(conversations.c.session_id == session_id,
                                                                 mine_or_nobodys)
                                     .values(owner=owner, centre=row.centre or self.centre(centre)))
                        continue  # read it again: a concurrent first message may have bound it
                    return str(row.centre)
            now = utcnow()
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(conversations).values(
                        session_id=session_id, channel=channel, user_id=user_id, language="zh", state={},
                        created_at=now, updated_at=now, owner=owner, centre=self.centre(centre)))
                return self.centre(centre)
            except IntegrityError:
                continue  # started by a concurrent first message: read it again
        raise _not_yours()

    @staticmethod
    def _binding(conn: Connection, session_id: str, owner: str) -> Row | None:
        """The conversation's owner and centre (None: a new conversation); refused when another
        owner holds it."""
        row = conn.execute(select(conversations.c.owner, conversations.c.centre)
                           .where(conversations.c.session_id == session_id)).first()
        if row is not None and row.owner is not None and row.owner != owner:
            raise _not_yours()
        return row

    def check_owner(self, session_id: str, resident: Resident) -> None:
        """Reading a conversation's messages needs its own credential."""
        with self.engine.connect() as conn:
            owner = conn.execute(select(conversations.c.owner)
                                 .where(conversations.c.session_id == session_id)).scalar()
        if owner is None or owner != resident.owner:
            raise _not_yours()

    def centre_of(self, session_id: str) -> str | None:
        with self.engine.connect() as conn:
            centre = conn.execute(select(conversations.c.centre)
                                  .where(conversations.c.session_id == session_id)).scalar()
        return str(centre) if centre is not None else None
