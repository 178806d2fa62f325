"""WeChat Official Account, outbound: the access token shared by every process through the
database, customer-service messages (`/cgi-bin/message/custom/send`) from a durable push
outbox, and media downloads for voice messages.

A push is a row first and a request second. Whoever sends it holds a lease on the row
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, a conditional UPDATE on SQLite), marks it `sending`
before the request and `sent` after it, so two workers never send one push twice. While WeChat
is unreachable (no connection, or WeChat says it is busy) a push stays queued and is retried
with growing delays; an answer WeChat refuses for good (45015: the resident has not written for
48 hours) is marked failed and reported through `on_failed`.

WeChat has no idempotency key for customer-service messages, so a push whose request may have
reached WeChat without its answer reaching us is *in doubt*: its sender was killed after marking
it `sending` (its lease ran out), or the connection failed after the request went out (read
timeout, connection dropped). Such a push is never sent again: it is marked `unconfirmed` and
reported through `on_failed` (a worker's reply gets a note on its ticket), and `/metrics` counts
it. Sending it again would double every push whose sender died after WeChat took it, which is
most of that window (the request's whole round trip); not sending it loses only a push whose
sender died in the microseconds between the mark and the request. A resident who got no answer
asks again; two copies of every in-doubt answer would be the product's habit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from assistant.core.clock import utcnow
from assistant.core.db import lease_due, metadata
from assistant.core.locks import KeyedLock
from assistant.core.privacy import mask_pii
from assistant.core.settings import WechatSettings

log = logging.getLogger("linli.wechat")

# WeChat counts a text message's length in bytes of UTF-8.
MAX_TEXT_BYTES = 2048
# Access token invalid (40001) or expired (42001), or not a token at all (40014): refresh once.
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# The resident has not written within 48 hours: customer-service messages are refused.
OUTSIDE_WINDOW = 45015
# WeChat is busy: try again later, like a network failure.
BUSY = frozenset({-1, 45009, 45047})
WINDOW = timedelta(hours=48)
# Transport failures before a request was sent in full: WeChat cannot have acted on it.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError, httpx.WriteTimeout)

wechat_pushes = Table(
    "wechat_pushes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # One push per key: a reply part of an inbound message (`in:<id>:<n>`), or a fresh uuid.
    Column("push_key", String(160), nullable=False, unique=True),
    Column("openid", String(128), nullable=False, index=True),
    Column("session_id", String(128), nullable=False),
    Column("ticket_id", String(40)),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),  # queued | sending | sent | failed | unconfirmed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime),
    Column("errcode", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
)

wechat_tokens = Table(
    "wechat_tokens",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("access_token", String(512), nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)


class WechatUnreachable(Exception):
    """WeChat did not answer (network, 5xx, busy): try again later."""


class WechatNoAnswer(Exception):
    """The request went out but no answer came back (read timeout, connection dropped): WeChat
    may or may not have acted on it, so a message is not sent again."""


class WechatRefused(Exception):
    """WeChat answered with an error code that retrying will not fix."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


def insert_once(conn: Connection, table: Table, key: str, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING in one statement: True when this call inserted the
    row. Two processes racing on one key: exactly one gets True, on SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        # psycopg reports no rowcount for the implicit RETURNING: ask for the key back instead.
        inserted = postgresql.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
        return conn.execute(inserted.returning(table.c[key])).first() is not None
    statement = sqlite.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
    return conn.execute(statement).rowcount == 1


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """`text` in parts of at most `limit` UTF-8 bytes, cut at line ends, then sentence ends,
    then anywhere."""
    text = text.strip()
    if len(text.encode()) <= limit:
        return [text] if text else []
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        joined = current + piece
        if len(joined.encode()) > limit and current:
            parts.append(current.strip())
            current = piece
        else:
            current = joined
    if current.strip():
        parts.append(current.strip())
    return [p for p in parts if p]


def _pieces(text: str, limit: int) -> list[str]:
    """Lines (with their newline), lines too long cut at sentence ends, sentences too long cut
    by characters: each piece at most `limit` bytes."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if len(line.encode()) <= limit:
            out.append(line)
            continue
        sentence = ""
        for char in line:
            sentence += char
            if char in "。！？；.!?;":
                out.extend(_by_chars(sentence, limit))
                sentence = ""
        out.extend(_by_chars(sentence, limit))
    return out


def _by_chars(text: str, limit: int) -> list[str]:
    out, current = [], ""
    for char in text:
        if len((current + char).encode()) > limit:
            out.append(current)
            current = ""
        current += char
    return [*out, current] if current else out


class WechatApi:
    """The WeChat HTTP API (`settings.api_base`): token, customer-service send, media."""

    def __init__(self, settings: WechatSettings, engine: Engine, client: httpx.Client | None = None, *,
                 lock_holders: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client or httpx.Client(base_url=settings.api_base, timeout=settings.http_timeout_s)
        self._refresh_lock = KeyedLock(self.engine, "wechat_token", timeout_s=settings.http_timeout_s * 3,
                                       holders=lock_holders)

    # ---- the access token, shared through the database ------------------------------------

    def access_token(self, *, stale: str | None = None) -> str:
        """A valid token: the stored one while it has more than `token_margin_s` left (and is not
        `stale`, one WeChat just refused), else a new one from WeChat, stored for every process."""
        stored = self._stored_token(stale)
        if stored is not None:
            return stored
        # One refresher at a time across every process (a new token from WeChat retires the old
        # one): the others wait here, then read what it stored.
        with self._refresh_lock.hold(self.settings.app_id):
            stored = self._stored_token(stale)
            return stored if stored is not None else self._refresh()

    def _stored_token(self, stale: str | None) -> str | None:
        now = utcnow()
        with self.engine.connect() as conn:
            row = conn.execute(select(wechat_tokens).where(wechat_tokens.c.app_id == self.settings.app_id)).first()
        margin = timedelta(seconds=self.settings.token_margin_s)
        if row is not None and row.access_token != stale and row.expires_at - margin > now:
            return str(row.access_token)
        return None

    def _refresh(self) -> str:
        now = utcnow()
        payload = self._call("GET", "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.settings.app_id,
            "secret": self.settings.app_secret.get_secret_value()})
        token = str(payload["access_token"])
        expires_at = now + timedelta(seconds=int(payload.get("expires_in", 7200)))
        with self.engine.begin() as conn:
            values = {"access_token": token, "expires_at": expires_at, "updated_at": now}
            if not insert_once(conn, wechat_tokens, "app_id", {"app_id": self.settings.app_id, **values}):
                conn.execute(update(wechat_tokens).where(wechat_tokens.c.app_id == self.settings.app_id)
                             .values(**values))
        log.info("wechat access token refreshed (expires %s)", expires_at.isoformat(timespec="seconds"))
        return token

    # ---- calls ----------------------------------------------------------------------------

    def send_text(self, openid: str, text: str) -> None:
        """One customer-service text message; a refused token is refreshed once and the send retried."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        token = self.access_token()
        try:
            self._call("POST", "/cgi-bin/message/custom/send", params={"access_token": token}, json=body,
                       once=True)
        except WechatRefused as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            log.warning("wechat refused the access token (%s); refreshing once", exc.errcode)
            token = self.access_token(stale=token)
            self._call("POST", "/cgi-bin/message/custom/send", params={"access_token": token}, json=body,
                       once=True)

    def download_media(self, media_id: str) -> bytes:
        """A voice message's audio (AMR) by its MediaId."""
        token = self.access_token()
        try:
            return self._media(media_id, token)
        except WechatRefused as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            return self._media(media_id, self.access_token(stale=token))

    def _media(self, media_id: str, token: str) -> bytes:
        response = self._request("GET", "/cgi-bin/media/get", params={"access_token": token, "media_id": media_id})
        if response.headers.get("content-type", "").startswith(("application/json", "text/plain")):
            self._check(response.json())  # an error comes back as JSON
        return response.content

    def _call(self, method: str, path: str, *, once: bool = False, **kwargs: Any) -> dict[str, Any]:
        payload = self._request(method, path, once=once, **kwargs).json()
        self._check(payload)
        return dict(payload)

    @staticmethod
    def _check(payload: dict[str, Any]) -> None:
        errcode = int(payload.get("errcode", 0) or 0)
        if errcode in BUSY:
            raise WechatUnreachable(f"wechat busy: {errcode} {payload.get('errmsg', '')}")
        if errcode:
            raise WechatRefused(errcode, str(payload.get("errmsg", "")))

    @retry(retry=retry_if_exception_type(WechatUnreachable), stop=stop_after_attempt(3),
           wait=wait_exponential(multiplier=0.2, max=2), reraise=True)
    def _request(self, method: str, path: str, *, once: bool = False, **kwargs: Any) -> httpx.Response:
        """One request, tried up to three times with backoff while WeChat is unreachable. A `once`
        request (a message to a resident) is retried only when it surely never reached WeChat."""
        try:
            response = self.client.request(method, path, **kwargs)
        except NOT_SENT as exc:
            raise WechatUnreachable(f"{type(exc).__name__}: {exc}") from exc
        except httpx.TransportError as exc:
            if once:
                raise WechatNoAnswer(f"{type(exc).__name__}: {exc}") from exc
            raise WechatUnreachable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise WechatUnreachable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise WechatRefused(response.status_code, response.text[:200])
        return response


@dataclass
class Push:
    id: int
    openid: str
    session_id: str
    ticket_id: str | None
    text: str
    status: str
    attempts: int
    errcode: int | None
    last_error: str | None
    created_at: datetime


# Called with (push, errcode or None) when a push is given up.
OnFailed = Callable[[Push, int | None], None]


class PushOutbox:
    """Queued customer-service messages, each sent at most once (see the module's note)."""

    def __init__(self, engine: Engine, api: WechatApi, settings: WechatSettings, on_failed: OnFailed | None = None,
                 lease_s: float = 60.0) -> None:
        self.engine = engine
        self.api = api
        self.settings = settings
        self.on_failed = on_failed
        self.lease = timedelta(seconds=lease_s)

    def queue(self, conn: Connection, *, openid: str, text: str, session_id: str, push_key: str | None = None,
              ticket_id: str | None = None) -> bool:
        """One push in the caller's transaction; a `push_key` already queued is skipped (False)."""
        now = utcnow()
        return insert_once(conn, wechat_pushes, "push_key", dict(
            push_key=push_key or f"push:{uuid.uuid4().hex}", openid=openid, session_id=session_id,
            ticket_id=ticket_id, text=text, status="queued", attempts=0, next_attempt_at=now, created_at=now))

    def deliver_due(self, worker: str, limit: int = 20) -> int:
        """Lease due pushes and send each; returns how many were sent."""
        sent = 0
        for push_id in self._lease(worker, limit):
            sent += self._deliver(push_id, worker)
        return sent

    def get(self, push_id: int) -> Push:
        with self.engine.connect() as conn:
            row = conn.execute(select(wechat_pushes).where(wechat_pushes.c.id == push_id)).one()
        return Push(**{k: getattr(row, k) for k in Push.__dataclass_fields__})

    def _lease(self, worker: str, limit: int) -> list[int]:
        now = utcnow()
        # A `sending` push whose lease ran out lost its sender mid-send: leased to be marked unconfirmed.
        due = or_(and_(wechat_pushes.c.status == "queued", wechat_pushes.c.next_attempt_at <= now,
                       or_(wechat_pushes.c.lease_until.is_(None), wechat_pushes.c.lease_until < now)),
                  and_(wechat_pushes.c.status == "sending", wechat_pushes.c.lease_until < now))
        return lease_due(self.engine, wechat_pushes.c.id, due, worker=worker, until=now + self.lease, limit=limit,
                         order_by=wechat_pushes.c.id)

    def _deliver(self, push_id: int, worker: str) -> int:
        mine = and_(wechat_pushes.c.id == push_id, wechat_pushes.c.lease_owner == worker)
        push = self._start(mine)
        if push is None:
            return 0  # the lease ran out and another worker took the push
        if push.status == "sending":  # its last sender died after marking it: in doubt
            return self._fail(push, mine, None, "发送进程中途停止，无法确认微信是否已送达",
                              status="unconfirmed")
        try:
            self.api.send_text(push.openid, push.text)
        except WechatUnreachable as exc:
            if utcnow() - push.created_at > WINDOW:
                return self._fail(push, mine, None, f"微信一直无法连接：{exc}")
            delay = min(self.settings.push_retry_base_s * 2 ** push.attempts, self.settings.push_retry_max_s)
            log.warning("wechat unreachable; push %s retried in %.1f s (%s)", push_id, delay, exc)
            with self.engine.begin() as conn:
                conn.execute(update(wechat_pushes).where(mine).values(
                    status="queued", attempts=push.attempts + 1, next_attempt_at=utcnow() + timedelta(seconds=delay),
                    lease_owner=None, lease_until=None, last_error=str(exc)[:500]))
            return 0
        except WechatNoAnswer as exc:
            return self._fail(push, mine, None, f"微信没有回应，无法确认是否已送达：{exc}", status="unconfirmed")
        except WechatRefused as exc:
            return self._fail(push, mine, exc.errcode, f"{exc.errcode} {exc.errmsg}")
        with self.engine.begin() as conn:
            conn.execute(update(wechat_pushes).where(mine).values(
                status="sent", sent_at=utcnow(), attempts=push.attempts + 1, lease_owner=None, lease_until=None))
        log.info("wechat push %s sent to %s", push_id, mask_pii(push.openid[:8]))
        return 1

    def _start(self, mine: Any) -> Push | None:
        """The leased push as it was, marked `sending` (committed before the request goes out)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(wechat_pushes).where(mine)).one_or_none()
            if row is None:
                return None
            if row.status == "queued":
                conn.execute(update(wechat_pushes).where(mine).values(status="sending"))
        return Push(**{k: getattr(row, k) for k in Push.__dataclass_fields__})

    def _fail(self, push: Push, mine: Any, errcode: int | None, error: str, status: str = "failed") -> int:
        with self.engine.begin() as conn:
            result = conn.execute(update(wechat_pushes).where(mine).values(
                status=status, attempts=push.attempts + 1, errcode=errcode, last_error=error[:500],
                lease_owner=None, lease_until=None))
        log.warning("wechat push %s %s: %s", push.id, status, error)
        if result.rowcount == 1 and self.on_failed is not None:
            try:
                self.on_failed(self.get(push.id), errcode)
            except Exception:
                log.exception("could not report the failed wechat push %s", push.id)
        return 0


class WechatChannel:
    """The `Channel` for WeChat residents (a worker's reply, an application notice): queues the
    text as customer-service pushes, split to WeChat's length; the push sender delivers them."""

    name = "wechat"

    def __init__(self, outbox: PushOutbox) -> None:
        self.outbox = outbox

    def send(self, *, session_id: str, user_id: str, text: str, sender: str, ticket_id: str | None = None) -> int:
        # Only a WeChat conversation ("wechat:<openid>", which only WeChat's signed callbacks can
        # start) names whom to push to; a user id from anywhere else never does.
        if not session_id.startswith("wechat:") or not session_id.removeprefix("wechat:"):
            log.warning("not pushed to WeChat: %s is not a WeChat conversation", mask_pii(session_id[:40]))
            return 0
        openid = session_id.removeprefix("wechat:")
        key = uuid.uuid4().hex
        with self.outbox.engine.begin() as conn:
            for number, part in enumerate(split_text(text)):
                self.outbox.queue(conn, openid=openid, text=part, session_id=session_id, ticket_id=ticket_id,
                                  push_key=f"channel:{key}:{number}")
            first = conn.execute(select(wechat_pushes.c.id)
                                 .where(wechat_pushes.c.push_key == f"channel:{key}:0")).scalar()
        return int(first or 0)
