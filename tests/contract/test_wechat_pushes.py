"""The WeChat push outbox on both backends: each push reaches WeChat at most once, a push in
doubt (its sender died mid-send, or WeChat did not answer) is never sent again and is reported,
and a push that surely never left is retried.

The PostgreSQL database is shared by the whole run, so other tests' pushes may be leased here
too: each test has its own resident (openid) and looks only at its own push."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select, update

from assistant.core.clock import utcnow
from assistant.core.settings import WechatSettings
from connectors.channels.wechat import Push, PushOutbox, WechatApi, wechat_pushes

SETTINGS = WechatSettings(token=SecretStr("t"), app_id="wxtest", app_secret=SecretStr("s"),
                          api_base="http://wechat.invalid", push_retry_base_s=0.0)


class FakeWechat:
    """WeChat's HTTP API as a transport: hands out a token, records each message it received,
    and fails a send the way it is told to (before or after the message arrived)."""

    def __init__(self) -> None:
        self.openid = f"o-{uuid.uuid4().hex[:12]}"
        self.bodies: list[str] = []
        self.fault: type[httpx.TransportError] | None = None
        self.fault_after_receiving = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 7200})
        if self.fault is not None:
            if self.fault_after_receiving:
                self.bodies.append(request.content.decode())
            raise self.fault("injected", request=request)
        self.bodies.append(request.content.decode())
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    @property
    def received(self) -> list[str]:
        """What this test's resident was sent, in order."""
        messages = [json.loads(body) for body in self.bodies]
        return [m["text"]["content"] for m in messages if m["touser"] == self.openid]


@pytest.fixture
def wechat():
    return FakeWechat()


@pytest.fixture
def outbox(databases, database_url, wechat):
    failed: list[Push] = []
    api = WechatApi(SETTINGS, databases.engine(database_url), client=httpx.Client(base_url=SETTINGS.api_base,
                                                                transport=httpx.MockTransport(wechat)))
    box = PushOutbox(databases.engine(database_url), api, SETTINGS, on_failed=lambda push, errcode: failed.append(push))
    box.failed = failed  # type: ignore[attr-defined]  # what on_failed was told, for the assertions
    return box


def _queue(outbox: PushOutbox, wechat: FakeWechat, text: str = "您好") -> int:
    key = f"test:{uuid.uuid4().hex}"
    with outbox.engine.begin() as conn:
        outbox.queue(conn, openid=wechat.openid, text=text, session_id=f"wechat:{wechat.openid}", push_key=key)
        return int(conn.execute(select(wechat_pushes.c.id).where(wechat_pushes.c.push_key == key)).scalar_one())


def _status(engine: Engine, push_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(wechat_pushes.c.status).where(wechat_pushes.c.id == push_id)).scalar_one())


def _as_if_a_dead_worker_held(engine: Engine, push_id: int, status: str) -> None:
    """The row as a killed worker leaves it: leased to it, lease run out, in `status`."""
    with engine.begin() as conn:
        conn.execute(update(wechat_pushes).where(wechat_pushes.c.id == push_id).values(
            status=status, lease_owner="worker-killed", lease_until=utcnow() - timedelta(seconds=1)))


def test_a_push_is_sent_once_and_marked_sent(outbox, wechat, database_url):
    push_id = _queue(outbox, wechat, "第一条")
    outbox.deliver_due("w1", limit=1000)
    outbox.deliver_due("w2", limit=1000)
    assert wechat.received == ["第一条"], "sent once, and a sent push is not leased again"
    assert _status(outbox.engine, push_id) == "sent"


def test_a_push_whose_sender_died_mid_send_is_never_sent_again_and_is_reported(outbox, wechat, database_url):
    push_id = _queue(outbox, wechat)
    _as_if_a_dead_worker_held(outbox.engine, push_id, "sending")
    outbox.deliver_due("w2", limit=1000)
    assert wechat.received == [], "a push in doubt must not reach WeChat a second time"
    assert _status(outbox.engine, push_id) == "unconfirmed"
    assert [p.status for p in outbox.failed if p.id == push_id] == ["unconfirmed"], "reported once"
    outbox.deliver_due("w3", limit=1000)
    assert wechat.received == []


def test_a_push_leased_by_a_dead_worker_but_never_started_is_sent(outbox, wechat, database_url):
    push_id = _queue(outbox, wechat)
    _as_if_a_dead_worker_held(outbox.engine, push_id, "queued")
    outbox.deliver_due("w2", limit=1000)
    assert len(wechat.received) == 1 and _status(outbox.engine, push_id) == "sent"


def test_a_send_with_no_answer_is_in_doubt_and_not_retried(outbox, wechat, database_url):
    push_id = _queue(outbox, wechat)
    wechat.fault, wechat.fault_after_receiving = httpx.ReadTimeout, True
    outbox.deliver_due("w1", limit=1000)
    assert len(wechat.received) == 1, "no second try inside the call either"
    wechat.fault = None
    outbox.deliver_due("w1", limit=1000)
    assert len(wechat.received) == 1, "a push WeChat may already have is not sent again"
    assert _status(outbox.engine, push_id) == "unconfirmed" and push_id in {p.id for p in outbox.failed}


def test_a_send_that_never_connected_is_retried_until_it_goes(outbox, wechat, database_url):
    push_id = _queue(outbox, wechat)
    wechat.fault = httpx.ConnectError
    outbox.deliver_due("w1", limit=1000)
    assert _status(outbox.engine, push_id) == "queued" and wechat.received == []
    wechat.fault = None
    outbox.deliver_due("w1", limit=1000)
    assert len(wechat.received) == 1 and _status(outbox.engine, push_id) == "sent"
    assert push_id not in {p.id for p in outbox.failed}
