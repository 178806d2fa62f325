"""Issue 19's holes 1, 2, 3 and 7, tried as an attacker would against a running `linli serve`:
reading a resident's worker messages by session id, taking a conversation over by reusing its id,
a worker reaching another centre's resident, and a repeated message id processed twice."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from assistant.dialogue.store import turns
from assistant.escalation.auth import UserStore
from assistant.escalation.tables import tickets
from tests.conftest import RESIDENT_HEADERS, SHARED_CACHE, free_port
from tests.integration.test_reliability import _start_server


@pytest.fixture(scope="module")
def server(databases, small_index_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("access") / "var"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'linli.sqlite'}"
    users = UserStore(databases.engine(url))
    users.add("wang", "wang-password-2024", role="worker", centre="centre-a")
    users.add("zhao", "zhao-password-2024", role="worker", centre="centre-b")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               LINLI_ESCALATION__CENTRE="centre-a", LINLI_ESCALATION__CENTRES='["centre-b"]',
               LINLI_LIMITS__MESSAGES_PER_SESSION_PER_MINUTE="12", LINLI_LIMITS__HANDOFFS_PER_SESSION_PER_HOUR="2")
    port = free_port()
    process = _start_server(env, port)
    yield f"http://127.0.0.1:{port}", url
    process.terminate()
    process.wait(timeout=20)


def _bearer(base: str, username: str) -> dict[str, str]:
    token = httpx.post(f"{base}/api/v1/auth/token",
                       json={"username": username, "password": f"{username}-password-2024"})
    return {"Authorization": f"Bearer {token.json()['token']}"}


def _page_session(base: str, channel: str = "chat", centre: str | None = None) -> dict:
    minted = httpx.post(f"{base}/api/v1/sessions", json={"channel": channel, "centre": centre})
    assert minted.status_code == 201, minted.text
    return minted.json()


def _say(base: str, session: dict, text: str, **extra) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/messages", json={"text": text, **extra},
                      headers={"X-Session-Token": session["session_token"]}, timeout=60)


def test_hole_1_worker_messages_are_read_only_with_the_sessions_own_credential(server):
    base, _ = server
    resident = _page_session(base)
    handoff = _say(base, resident, "我要转人工，我家住昆仑路8号").json()
    wang = _bearer(base, "wang")
    httpx.post(f"{base}/api/v1/tickets/{handoff['ticket_id']}/claim", headers=wang)
    httpx.post(f"{base}/api/v1/tickets/{handoff['ticket_id']}/reply", headers=wang,
               json={"text": "您好，我明天去昆仑路8号看您。"})
    path = f"/api/v1/sessions/{resident['session_id']}/messages"
    # No credential, another page's token, an integration key: nothing is read, nothing marked delivered.
    assert httpx.get(base + path).status_code == 401
    stranger = _page_session(base)
    assert httpx.get(base + path, headers={"X-Session-Token": stranger["session_token"]}).status_code == 403
    assert httpx.get(base + path, headers=RESIDENT_HEADERS).status_code == 403
    assert httpx.get(base + path, params={"after": 10**30},
                     headers={"X-Session-Token": resident["session_token"]}).status_code == 422
    assert httpx.get(base + path, params={"after": -1},
                     headers={"X-Session-Token": resident["session_token"]}).status_code == 422
    own = httpx.get(base + path, headers={"X-Session-Token": resident["session_token"]})
    assert own.status_code == 200 and "昆仑路8号" in own.json()["messages"][0]["text"]


def test_hole_2_a_reused_session_id_takes_nothing_over(server):
    base, url = server
    resident = _page_session(base)
    assert _say(base, resident, "高龄津贴每月多少钱").status_code == 200
    stranger = _page_session(base)
    engine = create_engine(url)
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(turns)
                              .where(turns.c.session_id == resident["session_id"])).scalar()
    # The stranger names the resident's session with their own token, or with no token, or as a client.
    hijack = _say(base, stranger, "把电话改成13900000000", session_id=resident["session_id"])
    assert hijack.status_code == 403 and hijack.json()["message"] == "这个对话不属于您。"
    anonymous = httpx.post(f"{base}/api/v1/messages", json={"session_id": resident["session_id"], "text": "确认"})
    assert anonymous.status_code == 401
    as_client = httpx.post(f"{base}/api/v1/messages", headers=RESIDENT_HEADERS,
                           json={"session_id": resident["session_id"], "user_id": "someone", "text": "确认"})
    assert as_client.status_code in (403, 422)
    with engine.connect() as conn:
        after = conn.execute(select(func.count()).select_from(turns)
                             .where(turns.c.session_id == resident["session_id"])).scalar()
    assert after == before
    # A stopped kiosk session cannot be used again.
    assert httpx.post(f"{base}/api/v1/sessions/end", headers={"X-Session-Token": resident["session_token"]}
                      ).status_code == 204
    assert _say(base, resident, "还在吗").status_code == 401


def test_hole_3_a_worker_cannot_reach_another_centres_resident(server):
    base, _ = server
    resident_of_a = _page_session(base, centre="centre-a")
    _say(base, resident_of_a, "我的身份证号650203193401010022，想问低保")
    zhao = _bearer(base, "zhao")  # centre-b
    opened = httpx.post(f"{base}/api/v1/tickets", headers=zhao, json={
        "kind": "human_request", "session_id": resident_of_a["session_id"], "summary": "帮忙看看"})
    assert opened.status_code == 403
    wang = _bearer(base, "wang")  # centre-a: allowed
    own = httpx.post(f"{base}/api/v1/tickets", headers=wang, json={
        "kind": "human_request", "session_id": resident_of_a["session_id"], "summary": "帮忙看看"})
    assert own.status_code == 201 and own.json()["centre"] == "centre-a"
    assert httpx.get(f"{base}/api/v1/tickets/{own.json()['ticket_id']}", headers=zhao).status_code == 404
    # A resident cannot put themselves in a centre that does not exist.
    invented = _page_session(base, centre="no-such-centre")
    assert invented["centre"] == "centre-a"


def test_hole_7_a_repeated_message_id_returns_the_first_reply_and_changes_nothing(server):
    base, url = server
    resident = _page_session(base)
    message_id = uuid.uuid4().hex
    first = _say(base, resident, "我要转人工", message_id=message_id).json()
    again = _say(base, resident, "我要转人工", message_id=message_id).json()
    assert again == first and first["ticket_id"]
    engine = create_engine(url)
    with engine.connect() as conn:
        said = conn.execute(select(func.count()).select_from(turns).where(
            turns.c.session_id == resident["session_id"], turns.c.role == "resident")).scalar()
        opened = conn.execute(select(func.count()).select_from(tickets).where(
            tickets.c.session_id == resident["session_id"])).scalar()
    assert (said, opened) == (1, 1)


def test_hole_4_one_conversation_cannot_flood_the_queue_or_the_bot(server):
    base, url = server
    resident = _page_session(base)
    replies = [_say(base, resident, f"我要转人工，第{n}次") for n in range(6)]
    assert all(r.status_code == 200 for r in replies)
    ticket_ids = {r.json()["ticket_id"] for r in replies}
    assert len(ticket_ids) == 1  # asking again points to the request already waiting
    assert "已经在社区工作人员的队列里" in replies[-1].json()["text"]
    # Once a worker has resolved each, a new request opens a new ticket, up to the hourly limit (2 here).
    wang = _bearer(base, "wang")
    for _ in range(2):
        ticket_id = _say(base, resident, "我要转人工").json()["ticket_id"]
        httpx.post(f"{base}/api/v1/tickets/{ticket_id}/claim", headers=wang)
        resolved = httpx.post(f"{base}/api/v1/tickets/{ticket_id}/resolve", headers=wang, json={"outcome": "已回复"})
        assert resolved.status_code == 200, resolved.text
    limited = _say(base, resident, "我要转人工").json()
    assert "不用再次提交" in limited["text"]
    engine = create_engine(url)
    with engine.connect() as conn:
        opened = conn.execute(select(func.count()).select_from(tickets).where(
            tickets.c.session_id == resident["session_id"])).scalar()
    assert opened == 2
    # An emergency still gets through after the hand-off limit.
    urgent = _say(base, resident, "我爸晕倒了叫不醒")
    assert urgent.json()["reply_type"] == "emergency"
    statuses = [_say(base, resident, f"你好{n}").status_code for n in range(8)]
    assert statuses.count(429) >= 1 and statuses[0] == 200
    slowed = _say(base, resident, "还在吗")
    assert slowed.status_code == 429 and "秒后再发" in slowed.json()["message"] and slowed.headers["retry-after"]
