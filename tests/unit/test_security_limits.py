"""Contract tests for the rate limiter: the database backend (SQLite and PostgreSQL) and the Redis
backend (`limits`' storage) must count the same way, across processes too."""

from __future__ import annotations

import multiprocessing
import time
import uuid

import pytest
from sqlalchemy import Engine, create_engine

from assistant.core.errors import NotAuthenticated, TooManyRequests
from assistant.core.settings import LimitSettings
from assistant.escalation.auth import UserStore
from assistant.security.limits import LoginThrottle, RateLimiter, SqlStorage

REDIS_URL = "redis://127.0.0.1:6379"


def _redis_unavailable() -> str | None:
    try:
        import redis  # noqa: PLC0415

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, with the reason
        return f"Redis not reachable at {REDIS_URL} ({type(exc).__name__})"
    return None


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def limiter(databases, request, tmp_path) -> RateLimiter:
    if request.param == "redis":
        reason = _redis_unavailable()
        if reason:
            pytest.skip(reason)
        return RateLimiter.from_settings(LimitSettings(redis_url=REDIS_URL), create_engine("sqlite://"))  # not used
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'linli.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_database")
    return RateLimiter.from_settings(LimitSettings(), databases.engine(url))


def _key() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_allows_up_to_the_limit_then_refuses(limiter):
    key = _key()
    assert [limiter.hit(key, limit=3, window_s=60) for _ in range(5)] == [True, True, True, False, False]
    assert not limiter.allowed(key, limit=3, window_s=60)
    assert 55 <= limiter.retry_after(key, limit=3, window_s=60) <= 60
    # Another key has its own count.
    assert limiter.hit(_key(), limit=3, window_s=60)


def test_window_passes_and_clear_resets(limiter):
    key = _key()
    assert limiter.hit(key, limit=1, window_s=1)
    assert not limiter.hit(key, limit=1, window_s=1)
    time.sleep(1.1)
    assert limiter.hit(key, limit=1, window_s=1), "a new window starts after the old one ends"
    other = _key()
    limiter.hit(other, limit=1, window_s=60)
    assert not limiter.allowed(other, limit=1, window_s=60)
    limiter.clear(other, limit=1, window_s=60)
    assert limiter.hit(other, limit=1, window_s=60)


def test_long_keys_are_hashed_not_truncated_into_one(limiter):
    base = "k" * 400
    assert limiter.hit(base + "a", limit=1, window_s=60)
    assert limiter.hit(base + "b", limit=1, window_s=60)
    assert not limiter.hit(base + "a", limit=1, window_s=60)


def _hammer(engine: Engine, key: str, hits: int, results) -> None:
    engine.dispose(close=False)  # forked: open this process's own connections (SQLAlchemy's advice)
    limiter = RateLimiter(SqlStorage(engine))
    results.put(sum(limiter.hit(key, limit=50, window_s=60) for _ in range(hits)))


def test_database_counts_are_atomic_across_processes(databases, database_url):
    engine = databases.engine(database_url)  # migrated once, before the processes race
    key = _key()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_hammer, args=(engine, key, 30, results)) for _ in range(4)]
    for p in processes:
        p.start()
    allowed = sum(results.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(timeout=30)
    assert allowed == 50, "120 hits from 4 processes against a limit of 50 must allow exactly 50"


def test_login_throttle_locks_the_guessing_address_not_the_owner(databases, tmp_path, caplog):
    """Issue 28, hole 14: five wrong passwords used to lock the account for everyone, its owner
    included. Now the guessing address is locked out of that account (the right password too);
    the owner, elsewhere, logs in."""
    url = f"sqlite:///{tmp_path / 'linli.sqlite'}"
    users = UserStore(databases.engine(url))
    users.add("wang", "correct-horse-battery", role="worker")
    throttle = LoginThrottle(RateLimiter.from_settings(LimitSettings(), databases.engine(url)),
                             LimitSettings(login_failures_per_15_min=3))
    assert throttle.authenticate(users, "wang", "correct-horse-battery", "10.0.0.1").username == "wang"
    for _ in range(3):
        with pytest.raises(NotAuthenticated):
            throttle.authenticate(users, "wang", "wrong-password!", "10.6.6.6")
    with caplog.at_level("WARNING", logger="linli.security"), pytest.raises(TooManyRequests) as refused:
        throttle.authenticate(users, "WANG", "correct-horse-battery", "10.6.6.6")
    assert "登录失败次数过多" in refused.value.message("zh")
    assert 840 <= refused.value.details["retry_after"] <= 900
    assert throttle.authenticate(users, "wang", "correct-horse-battery", "10.0.0.2").username == "wang"
    # Another account from the guessing address is not locked by one account's failures.
    users.add("zhao", "another-good-passphrase", role="worker")
    assert throttle.authenticate(users, "zhao", "another-good-passphrase", "10.6.6.6").username == "zhao"


def test_an_account_guessed_from_many_addresses_is_slowed_not_locked(databases, tmp_path):
    url = f"sqlite:///{tmp_path / 'linli.sqlite'}"
    users = UserStore(databases.engine(url))
    users.add("wang", "correct-horse-battery", role="worker")
    throttle = LoginThrottle(RateLimiter.from_settings(LimitSettings(), databases.engine(url)),
                             LimitSettings(login_failures_before_slowdown=4, login_slowdown_s=2))
    for n in range(4):  # a botnet: one guess per address
        with pytest.raises(NotAuthenticated):
            throttle.authenticate(users, "wang", f"guess-{n}-password", f"10.1.0.{n}")
    # Slowed: one attempt per 2 seconds on the account, from anywhere …
    with pytest.raises(NotAuthenticated):
        throttle.authenticate(users, "wang", "guess-5-password", "10.1.0.9")
    with pytest.raises(TooManyRequests) as slowed:
        throttle.authenticate(users, "wang", "correct-horse-battery", "10.0.0.2")
    assert slowed.value.details["retry_after"] <= 2 and "秒后再试" in slowed.value.message("zh")
    # … so the owner gets in a moment later, and that clears the slowdown.
    time.sleep(2.1)
    assert throttle.authenticate(users, "wang", "correct-horse-battery", "10.0.0.2").username == "wang"
    assert throttle.authenticate(users, "wang", "correct-horse-battery", "10.0.0.2").username == "wang"


def test_login_throttle_locks_a_client_guessing_many_accounts(databases, tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'linli.sqlite'}"
    users = UserStore(databases.engine(url))
    users.add("wang", "correct-horse-battery", role="worker")
    throttle = LoginThrottle(RateLimiter.from_settings(LimitSettings(), databases.engine(url)),
                             LimitSettings(login_failures_per_15_min=5, login_failures_per_client_per_15_min=4))
    with caplog.at_level("WARNING", logger="linli.security"):
        for name in ("a1", "a2", "a3", "a4"):
            with pytest.raises(NotAuthenticated):
                throttle.authenticate(users, name, "whatever-password", "10.9.9.9")
    assert any("client" in r.getMessage() and "10.9.9.9" in r.getMessage() for r in caplog.records)
    with pytest.raises(TooManyRequests):
        throttle.authenticate(users, "wang", "correct-horse-battery", "10.9.9.9")
    assert throttle.authenticate(users, "wang", "correct-horse-battery", "10.1.1.1").username == "wang"
