"""Rate limits shared by every server process: `RateLimiter` counts hits per key in fixed windows
with the `limits` library's strategy, over the relational database by default (`SqlStorage`, one
atomic upsert per hit on SQLite and PostgreSQL) or Redis when `settings.limits.redis_url` is set.

`LoginThrottle` uses it to lock a guessing address out, and to slow an account guessed from many
addresses, without locking its owner out.

When the counters' store does not answer (Redis down), a limit either lets the hit through
(`fail_open=True`, the default: residents' messages and questions keep flowing, with a warning in
the log at most every 30 s) or refuses it with `LimitsUnavailable` (`fail_open=False`: logins,
where a guesser must never get unlimited tries)."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from assistant.core.db import is_sqlite
from assistant.core.errors import NotAuthenticated, TooManyRequests
from assistant.core.settings import LimitSettings
from assistant.security.tables import rate_limits

if TYPE_CHECKING:
    from assistant.escalation.auth import UserStore
    from assistant.escalation.service import Actor

log = logging.getLogger("linli.security")
_MAX_KEY = 255
# Expired rows are swept once every this many hits (per process).
_SWEEP_EVERY = 500
# A Redis that does not answer fails a hit in about this long, not the operating system's timeout.
REDIS_TIMEOUT_S = 1.0
# A store that stays down is logged once per this many seconds, not once per request.
OUTAGE_LOG_EVERY_S = 30.0


class LimitsUnavailable(TooManyRequests):
    """The rate limits' store did not answer and this limit fails closed (logins)."""

    code = "limits_unavailable"
    http_status = 503


def _stored_key(key: str) -> str:
    """Keys carry user input (usernames, addresses): long ones are hashed to fit the column."""
    if len(key) <= _MAX_KEY:
        return key
    return key[:180] + "#" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class SqlStorage(Storage):
    """A `limits` storage over Linli's database (table `rate_limits`). Each `incr` is one
    INSERT … ON CONFLICT DO UPDATE … RETURNING statement, atomic across processes on SQLite
    (the write lock) and PostgreSQL (the row lock); an expired window restarts at the hit."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self._hits = 0

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        insert = (sqlite.insert if is_sqlite(self.engine) else postgresql.insert)(rate_limits)
        statement = insert.values(key=_stored_key(key), count=amount, expires_at=now + expiry)
        expired = rate_limits.c.expires_at <= now
        upsert = statement.on_conflict_do_update(
            index_elements=[rate_limits.c.key],
            set_={
                "count": case((expired, statement.excluded["count"]), else_=rate_limits.c["count"] + amount),
                "expires_at": case((expired, statement.excluded.expires_at), else_=rate_limits.c.expires_at),
            },
        ).returning(rate_limits.c["count"])
        with self.engine.begin() as conn:
            count = int(conn.execute(upsert).scalar_one())
        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            self.reset_expired()
        return count

    def _row(self, key: str) -> tuple[int, float] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(rate_limits.c["count"], rate_limits.c.expires_at)
                               .where(rate_limits.c.key == _stored_key(key))).first()
        if row is None or row.expires_at <= time.time():
            return None
        return int(row[0]), float(row[1])

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as conn:
            return conn.execute(delete(rate_limits)).rowcount

    def reset_expired(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(rate_limits).where(rate_limits.c.expires_at <= time.time()))

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(rate_limits).where(rate_limits.c.key == _stored_key(key)))


class RateLimiter:
    """Fixed-window counters per key: `hit` is True while the key stays within `limit` hits in
    its current `window_s`-second window (and counts the hit), False once it is over.

    When the store fails, `hit` and `allowed` answer True with `fail_open` (the default) and raise
    `LimitsUnavailable` without it."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._strategy = FixedWindowRateLimiter(storage)
        base = storage.base_exceptions
        self._store_errors: tuple[type[Exception], ...] = (StorageError, *(base if isinstance(base, tuple)
                                                                          else (base,)))
        self._last_outage_log = -math.inf
        self._log_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: LimitSettings, engine: Engine) -> RateLimiter:
        if settings.redis_url:
            storage = storage_from_string(settings.redis_url, wrap_exceptions=True,
                                          socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)
            if not isinstance(storage, Storage):
                raise ValueError(f"limits.redis_url must name a synchronous storage, not {settings.redis_url!r}")
            return cls(storage)
        return cls(SqlStorage(engine))

    @staticmethod
    def _item(limit: int, window_s: int) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(max(limit, 0), max(window_s, 1), namespace="linli")

    def hit(self, key: str, *, limit: int, window_s: int, fail_open: bool = True) -> bool:
        try:
            return self._strategy.hit(self._item(limit, window_s), key)
        except self._store_errors as exc:
            return self._store_down(exc, fail_open)

    def allowed(self, key: str, *, limit: int, window_s: int, fail_open: bool = True) -> bool:
        """Whether the next hit would be allowed, without counting one."""
        try:
            return self._strategy.test(self._item(limit, window_s), key)
        except self._store_errors as exc:
            return self._store_down(exc, fail_open)

    def retry_after(self, key: str, *, limit: int, window_s: int) -> int:
        """Whole seconds until the key's current window ends (at least 1; the whole window when
        the store does not answer)."""
        try:
            reset_at = self._strategy.get_window_stats(self._item(limit, window_s), key).reset_time
        except self._store_errors as exc:
            self._store_down(exc, fail_open=True)
            return max(1, window_s)
        return max(1, math.ceil(reset_at - time.time()))

    def clear(self, key: str, *, limit: int, window_s: int) -> None:
        """Forget the key's hits; a store that does not answer keeps them (logged)."""
        try:
            self._strategy.clear(self._item(limit, window_s), key)
        except self._store_errors as exc:
            self._store_down(exc, fail_open=True)

    def _store_down(self, exc: Exception, fail_open: bool) -> bool:
        now = time.monotonic()
        with self._log_lock:
            quiet = now - self._last_outage_log < OUTAGE_LOG_EVERY_S
            if not quiet:
                self._last_outage_log = now
        if not quiet:
            log.warning("rate limits' store (%s) did not answer (%s: %s): limits %s until it does",
                        type(self.storage).__name__, type(exc).__name__, exc,
                        "let residents' requests through" if fail_open else "refuse logins")
        if fail_open:
            return True
        raise LimitsUnavailable("登录暂时无法使用（安全限流服务没有响应），请稍后再试。",
                                "Logging in is unavailable for now (the rate-limit service is not answering); "
                                "please try again shortly.", retry_after=30) from exc


LOGIN_WINDOW_S = 15 * 60


class LoginThrottle:
    """Failed logins lock the guesser out, not the account's owner:

    - one address guessing one account: after `login_failures_per_15_min` failures that address
      may not try that account again (even with the right password) until the window passes;
    - one address guessing many accounts: after `login_failures_per_client_per_15_min` it may try
      none;
    - an account guessed from many addresses: after `login_failures_before_slowdown` failures it
      is slowed, one attempt per `login_slowdown_s` seconds from anywhere, so that the owner still
      gets in (a few seconds late) while a distributed guesser gets a handful of tries an hour.

    A successful login clears the account's failures from that address and the slowdown. When
    the counters' store does not answer, logins are refused (`LimitsUnavailable`, 503): fail closed."""

    def __init__(self, limiter: RateLimiter, settings: LimitSettings) -> None:
        self.limiter = limiter
        self.pair_limit = settings.login_failures_per_15_min
        self.client_limit = settings.login_failures_per_client_per_15_min
        self.slowdown_after = settings.login_failures_before_slowdown
        self.slowdown_s = settings.login_slowdown_s

    @staticmethod
    def _account(username: str) -> str:
        return username.casefold()

    def _locks(self, username: str, client: str) -> list[tuple[str, int]]:
        return [(f"login:pair:{self._account(username)}:{client}", self.pair_limit),
                (f"login:client:{client}", self.client_limit)]

    def _failures_key(self, username: str) -> str:
        return f"login:account:{self._account(username)}"

    def check(self, username: str, client: str) -> None:
        for key, limit in self._locks(username, client):
            if not self.limiter.allowed(key, limit=limit, window_s=LOGIN_WINDOW_S, fail_open=False):
                retry = self.limiter.retry_after(key, limit=limit, window_s=LOGIN_WINDOW_S)
                raise TooManyRequests(
                    f"登录失败次数过多，请{math.ceil(retry / 60)}分钟后再试。",
                    f"Too many failed logins; try again in {math.ceil(retry / 60)} minutes.",
                    retry_after=retry)
        failures_key = self._failures_key(username)
        if not self.limiter.allowed(failures_key, limit=self.slowdown_after, window_s=LOGIN_WINDOW_S,
                                    fail_open=False):
            slow_key = f"login:slow:{self._account(username)}"
            if not self.limiter.hit(slow_key, limit=1, window_s=self.slowdown_s, fail_open=False):
                retry = self.limiter.retry_after(slow_key, limit=1, window_s=self.slowdown_s)
                raise TooManyRequests(f"这个账号最近有多次登录失败，请{retry}秒后再试。",
                                      f"This account had many failed logins; try again in {retry} seconds.",
                                      retry_after=retry)

    def failed(self, username: str, client: str) -> None:
        for key, limit in [*self._locks(username, client), (self._failures_key(username), self.slowdown_after)]:
            self.limiter.hit(key, limit=limit, window_s=LOGIN_WINDOW_S, fail_open=False)
            if not self.limiter.allowed(key, limit=limit, window_s=LOGIN_WINDOW_S, fail_open=False):
                what = {"pair": "address for this account", "client": "address", "account": "account slowed"}
                log.warning("login: %s after %d failures in %d minutes (user %r, client %s)",
                            what[key.split(":")[1]], limit, LOGIN_WINDOW_S // 60, username, client)

    def succeeded(self, username: str, client: str) -> None:
        self.limiter.clear(self._locks(username, client)[0][0], limit=self.pair_limit, window_s=LOGIN_WINDOW_S)
        self.limiter.clear(self._failures_key(username), limit=self.slowdown_after, window_s=LOGIN_WINDOW_S)

    def authenticate(self, users: UserStore, username: str, password: str, client: str) -> Actor:
        """`users.authenticate`, refused with TooManyRequests while the account or client is locked."""
        self.check(username, client)
        try:
            actor = users.authenticate(username, password)
        except NotAuthenticated:
            self.failed(username, client)
            raise
        self.succeeded(username, client)
        return actor

