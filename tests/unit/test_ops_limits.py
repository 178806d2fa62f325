"""Redis down: residents' limits fail open (with one warning per 30 s), logins fail closed."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import create_engine

from assistant.core.errors import NotAuthenticated, TooManyRequests
from assistant.core.settings import LimitSettings
from assistant.escalation.auth import UserStore
from assistant.security import limits as limits_module
from assistant.security.limits import LimitsUnavailable, LoginThrottle, RateLimiter
from tests.conftest import free_port


@pytest.fixture
def dead_redis() -> RateLimiter:
    """A limiter on Redis at a port nothing listens on."""
    return RateLimiter.from_settings(LimitSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0"),
                                     create_engine("sqlite://"))  # not used: the limits are in Redis


def test_residents_limits_let_hits_through_when_redis_is_down(dead_redis, caplog):
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="linli.security"):
        assert all(dead_redis.hit("messages:s1", limit=1, window_s=60) for _ in range(5))
        assert dead_redis.allowed("messages:s1", limit=1, window_s=60)
        assert dead_redis.retry_after("messages:s1", limit=1, window_s=60) == 60
        dead_redis.clear("messages:s1", limit=1, window_s=60)
    assert time.monotonic() - started < 5, "a refused connection must fail fast, not hang"
    warnings = [r for r in caplog.records if "did not answer" in r.getMessage()]
    assert len(warnings) == 1, "an outage is logged once per 30 s, not once per request"
    assert "let residents' requests through" in warnings[0].getMessage()


def test_the_outage_warning_comes_back_after_30_seconds(dead_redis, caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(limits_module.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="linli.security"):
        dead_redis.hit("k", limit=1, window_s=60)
        clock[0] += 29
        dead_redis.hit("k", limit=1, window_s=60)
        clock[0] += 2
        dead_redis.hit("k", limit=1, window_s=60)
    assert len([r for r in caplog.records if "did not answer" in r.getMessage()]) == 2


def test_a_closed_limit_refuses_when_redis_is_down(dead_redis):
    with pytest.raises(LimitsUnavailable) as refused:
        dead_redis.hit("login:client:10.0.0.1", limit=5, window_s=900, fail_open=False)
    assert refused.value.http_status == 503 and isinstance(refused.value, TooManyRequests)
    assert refused.value.details["retry_after"] == 30
    with pytest.raises(LimitsUnavailable):
        dead_redis.allowed("login:client:10.0.0.1", limit=5, window_s=900, fail_open=False)


def test_logins_fail_closed_when_redis_is_down(databases, dead_redis, tmp_path):
    users = UserStore(databases.engine(f"sqlite:///{tmp_path / 'linli.sqlite'}"))
    users.add("wang", "correct-horse-battery", role="worker")
    throttle = LoginThrottle(dead_redis, LimitSettings())
    # Neither the right password nor a guess gets through while the counters cannot be kept.
    for password in ("correct-horse-battery", "wrong-password!"):
        with pytest.raises(LimitsUnavailable) as refused:
            throttle.authenticate(users, "wang", password, "10.0.0.1")
        assert "登录暂时无法使用" in refused.value.message("zh")
        assert "try again" in refused.value.message("en")


def test_the_limits_count_as_before_when_the_store_answers(databases, tmp_path):
    limiter = RateLimiter.from_settings(LimitSettings(), databases.engine(f"sqlite:///{tmp_path / 'linli.sqlite'}"))
    assert [limiter.hit("k", limit=2, window_s=60, fail_open=False) for _ in range(3)] == [True, True, False]
    assert [limiter.hit("j", limit=2, window_s=60) for _ in range(3)] == [True, True, False]
    users = UserStore(databases.engine(f"sqlite:///{tmp_path / 'linli.sqlite'}"))
    users.add("wang", "correct-horse-battery", role="worker")
    throttle = LoginThrottle(limiter, LimitSettings(login_failures_per_15_min=1))
    with pytest.raises(NotAuthenticated):
        throttle.authenticate(users, "wang", "wrong-password!", "10.0.0.9")
    with pytest.raises(TooManyRequests) as locked:
        throttle.authenticate(users, "wang", "correct-horse-battery", "10.0.0.9")
    assert not isinstance(locked.value, LimitsUnavailable)
