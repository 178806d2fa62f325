"""The ticket API and the hand-off loop over HTTP: authentication and roles, centre
isolation, the bot going quiet while a worker holds the conversation, the worker's reply
reaching the resident's channel, hand-back with a rating, idempotent ticket creation."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from assistant.api import create_app
from assistant.core.settings import ApiSettings, EscalationSettings, Settings, get_settings
from assistant.escalation.auth import UserStore
from tests.conftest import RESIDENT_HEADERS, SHARED_CACHE, TEST_API_KEYS


@pytest.fixture(scope="module")
def settings(databases, small_index_dir, tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("desk")
    settings = Settings(data_dir=root / "var", index_dir=small_index_dir / "var" / "index",
                        embedding_cache=SHARED_CACHE, corpus_dirs=[small_index_dir / "corpus"], law_corpus=None,
                        escalation=EscalationSettings(centre="centre-a", centres=["centre-b"]),
                        api=ApiSettings(keys=TEST_API_KEYS))
    users = UserStore(databases.engine(settings.resolved_database_url))
    users.add("wang", "wang-password-2024", role="worker", centre="centre-a", display_name="王社工")
    users.add("zhao", "zhao-password-2024", role="worker", centre="centre-b", display_name="赵社工")
    users.add("boss", "boss-password-2024", role="supervisor", centre="centre-a", display_name="主管")
    return settings


@pytest.fixture(scope="module")
def client(settings):
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, headers=RESIDENT_HEADERS) as c:
        yield c


def _token(client, username: str, password: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(scope="module")
def wang(client):
    return _token(client, "wang", "wang-password-2024")


@pytest.fixture(scope="module")
def zhao(client):
    return _token(client, "zhao", "zhao-password-2024")


def _say(client, session: str, text: str, **extra) -> dict:
    response = client.post("/api/v1/messages", json={"session_id": session, "channel": "web", "text": text, **extra})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/v1/tickets"), ("get", "/api/v1/tickets/T1"), ("post", "/api/v1/tickets/T1/claim"),
    ("post", "/api/v1/tickets/claim-next"), ("get", "/console/queue-rows"), ("get", "/console/events"),
])
def test_unauthenticated_calls_get_401(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"


def test_wrong_password_and_forged_token_are_401(client):
    assert client.post("/api/v1/auth/token", json={"username": "wang", "password": "nope-nope"}).status_code == 401
    assert client.post("/api/v1/auth/token", json={"username": "ghost", "password": "whatever1"}).status_code == 401
    forged = client.get("/api/v1/tickets", headers={"Authorization": "Bearer not-a-real-token"})
    assert forged.status_code == 401 and "登录" in forged.json()["message"]


def test_console_pages_redirect_to_login(client):
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert "工作人员登录" in client.get("/console/login").text


def test_handoff_hold_reply_and_hand_back(client, wang):
    session = "desk-loop"
    handoff = _say(client, session, "我要转人工")
    assert handoff["reply_type"] == "handoff"
    ticket_id = handoff["ticket_id"]
    queue = client.get("/api/v1/tickets", headers=wang).json()["tickets"]
    assert ticket_id in [t["ticket_id"] for t in queue]

    assert client.post(f"/api/v1/tickets/{ticket_id}/claim", headers=wang).json()["status"] == "claimed"
    quiet = _say(client, session, "高龄津贴怎么申请")
    assert quiet["reply_type"] == "handoff" and quiet["text"] == "" and quiet["ticket_id"] == ticket_id

    client.post(f"/api/v1/tickets/{ticket_id}/reply", headers=wang,
                json={"text": "您好，我是王社工，请带身份证来社区。"})
    inbox = client.get(f"/api/v1/sessions/{session}/messages").json()["messages"]
    assert [m["text"] for m in inbox] == ["您好，我是王社工，请带身份证来社区。"] and inbox[0]["sender"] == "王社工"
    later = client.get(f"/api/v1/sessions/{session}/messages", params={"after": inbox[-1]["id"]})
    assert later.json()["messages"] == []

    detail = client.get(f"/api/v1/tickets/{ticket_id}", headers=wang).json()
    assert [e["action"] for e in detail["events"]] == ["create", "claim", "resident_message", "reply"]
    assert detail["events"][2]["text"] == "高龄津贴怎么申请"

    resolved = client.post(f"/api/v1/tickets/{ticket_id}/resolve", headers=wang, json={"outcome": "已电话指导"})
    assert resolved.json()["status"] == "resolved"
    rating_request = client.get(f"/api/v1/sessions/{session}/messages").json()["messages"][-1]
    assert "1到5" in rating_request["text"]
    thanks = _say(client, session, "5分")
    assert thanks["reply_type"] == "smalltalk" and "谢谢" in thanks["text"]
    final = client.get(f"/api/v1/tickets/{ticket_id}", headers=wang).json()
    assert final["status"] == "closed" and final["rating"] == 5
    back = _say(client, session, "我奶奶今年92了，每个月能领多少高龄补贴？")
    assert back["reply_type"] == "answer" and "500元" in back["text"]  # the bot is back


def test_emergency_still_gets_numbers_while_held(client, wang):
    session = "desk-held-emergency"
    ticket_id = _say(client, session, "转人工")["ticket_id"]
    client.post(f"/api/v1/tickets/{ticket_id}/claim", headers=wang)
    reply = _say(client, session, "不想活了")
    assert reply["reply_type"] == "emergency" and "12356" in reply["text"]


def test_other_centre_cannot_read_or_act(client, wang, zhao):
    ticket_id = _say(client, "desk-isolation", "我要人工")["ticket_id"]
    for method, path, body in [("get", f"/api/v1/tickets/{ticket_id}", None),
                               ("post", f"/api/v1/tickets/{ticket_id}/claim", None),
                               ("post", f"/api/v1/tickets/{ticket_id}/note", {"text": "x"})]:
        response = getattr(client, method)(path, headers=zhao, **({"json": body} if body else {}))
        assert response.status_code == 404, (path, response.text)
    assert ticket_id not in [t["ticket_id"] for t in client.get("/api/v1/tickets", headers=zhao).json()["tickets"]]
    boss = _token(client, "boss", "boss-password-2024")
    assert client.get(f"/api/v1/tickets/{ticket_id}", headers=boss).status_code == 200


def test_worker_cannot_close_directly_and_illegal_moves_are_409(client, wang):
    ticket_id = _say(client, "desk-illegal", "我要人工")["ticket_id"]
    early = client.post(f"/api/v1/tickets/{ticket_id}/resolve", headers=wang, json={"outcome": "x"})
    assert early.status_code == 403
    client.post(f"/api/v1/tickets/{ticket_id}/claim", headers=wang)
    assert client.post(f"/api/v1/tickets/{ticket_id}/claim", headers=wang).status_code == 409
    assert client.post(f"/api/v1/tickets/{ticket_id}/close", headers=wang).status_code == 403
    unknown = client.post("/api/v1/tickets/T-nope/claim", headers=wang)
    assert unknown.status_code == 404 and "找不到工单" in unknown.json()["message"]


def test_duplicate_submissions_create_one_ticket(client, wang):
    first = _say(client, "desk-dup", "我要转人工", message_id="wx-msg-1")
    retry = _say(client, "desk-dup", "我要转人工", message_id="wx-msg-1")
    assert first["ticket_id"] == retry["ticket_id"]
    body = {"kind": "procedure_problem", "session_id": "desk-dup-api", "summary": "高龄津贴申请提交失败"}
    a = client.post("/api/v1/tickets", headers={**wang, "Idempotency-Key": "k-1"}, json=body)
    b = client.post("/api/v1/tickets", headers={**wang, "Idempotency-Key": "k-1"}, json=body)
    assert a.status_code == 201 and a.json()["ticket_id"] == b.json()["ticket_id"]
    bad = client.post("/api/v1/tickets", headers=wang, json={**body, "kind": "party"})
    assert bad.status_code == 400 and "未知的工单类型" in bad.json()["message"]


CHANGE_ROW = re.compile(r'<code>([^<]+)</code>：<span class="from">([^<]*)</span> → <span class="to">([^<]*)</span>')


def test_ticket_page_shows_what_each_turn_changed_masked_and_only_to_a_worker(client):
    # A dispute intake to its ticket: each reply fills one field of the form, the last opens the ticket.
    session = "desk-replay"
    for text in ["楼上漏水把我家泡了，帮我找人调解", "楼上602的住户", "幸福小区3栋502",
                 "上周开始漏水，找他好几次都不理", "一般", "13812345678"]:
        assert _say(client, session, text)["reply_type"] == "form"
    ticket_id = _say(client, session, "确认")["ticket_id"]
    page_url = f"/console/tickets/{ticket_id}"

    anonymous = client.get(page_url, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/console/login"

    login = client.post("/console/login", data={"username": "wang", "password": "wang-password-2024"},
                        headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert login.status_code == 303
    cookie = client.cookies["linli_session"]
    client.cookies.clear()  # the module's client stays anonymous for the other tests
    page = client.get(page_url, headers={"Cookie": f"linli_session={cookie}"})
    assert page.status_code == 200
    html = page.text
    assert "这一步改变了什么" in html and '<details class="changes">' in html
    changes: dict[str, list[tuple[str, str]]] = {}
    for path, before, after in CHANGE_ROW.findall(html):  # in turn order
        changes.setdefault(path, []).append((before, after))
    # Set by its answer, then cleared when the confirmed form became the ticket.
    assert changes["flow.values.parties"] == [("（无）", "楼上602的住户"), ("楼上602的住户", "（无）")]
    assert ("（无）", "138****5678") in changes["flow.values.phone"]  # masked as the trace has it
    assert changes["handoff_ticket"] == [("（无）", ticket_id)]
    assert '<span class="label">转人工工单</span> <code>handoff_ticket</code>' in html
    assert "13812345678" not in html  # never decrypted for the page
