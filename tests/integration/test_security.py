"""Issue 19's holes tried against a real `linli serve` process, as an attacker would: password
guessing, a revoked token, cross-site requests with the console cookie, huge and hostile bodies,
inputs that used to give a 500, missing page headers and anonymous floods.

The server trusts X-Forwarded-For from 127.0.0.1 (LINLI_API__TRUSTED_PROXIES: a local reverse
proxy), so each test speaks from its own client address and one test's lockout does not spill
into another's."""

from __future__ import annotations

import os
import socket
import time
import uuid

import httpx
import pytest

from assistant.escalation.auth import UserStore
from assistant.escalation.service import SqlEscalationService
from tests.conftest import SHARED_CACHE, TEST_API_KEY, free_port
from tests.integration.test_reliability import _start_server

pytestmark = pytest.mark.integration
PASSWORD = "wang-password-2024"
CREATE_LIMIT = 8


@pytest.fixture(scope="module")
def server(databases, small_index_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("security") / "var"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'linli.sqlite'}"
    UserStore(databases.engine(url)).add("wang", PASSWORD, role="worker", centre="default")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               LINLI_LIMITS__REQUESTS_PER_CLIENT_PER_MINUTE=str(CREATE_LIMIT),
               LINLI_LIMITS__SESSIONS_PER_CLIENT_PER_MINUTE=str(CREATE_LIMIT),
               LINLI_API__TRUSTED_PROXIES='["127.0.0.1"]')
    port = free_port()
    process = _start_server(env, port)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "port": port, "url": url}
    finally:
        process.terminate()
        process.wait(timeout=20)


def _client(server, address: str | None = None) -> httpx.Client:
    headers = {"X-Forwarded-For": address or f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
    return httpx.Client(base_url=server["base"], headers=headers, timeout=30)


def _bearer(client: httpx.Client) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", json={"username": "wang", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_thirty_wrong_passwords_lock_the_guesser_out_not_the_owner(server):
    with _client(server, "203.0.113.30") as client:
        codes = [client.post("/api/v1/auth/token", json={"username": "wang", "password": f"guess-{i}-xxxx"}).status_code
                 for i in range(30)]
        assert codes[:5] == [401] * 5
        assert set(codes[5:]) == {429}
        right = client.post("/api/v1/auth/token", json={"username": "wang", "password": PASSWORD})
        assert right.status_code == 429, "the right password must not work from the guessing address"
        assert "登录失败次数过多" in right.json()["message"]
        assert int(right.headers["Retry-After"]) > 60
    # The owner, from their own address, logs in (issue 28, hole 14: the owner was locked out too);
    # the guesses came from one address, so the account is not even slowed.
    with _client(server, "203.0.113.31") as other:
        page = other.post("/console/login", data={"username": "wang", "password": PASSWORD},
                          headers={"Origin": server["base"]}, follow_redirects=False)
        assert page.status_code == 303 and other.cookies.get("linli_session")


def test_logout_revokes_the_bearer_token(server):
    with _client(server) as client:
        auth = _bearer(client)
        assert client.get("/api/v1/tickets", headers=auth).status_code == 200
        assert client.post("/api/v1/auth/logout", headers=auth).status_code == 200
        after = client.get("/api/v1/tickets", headers=auth)
        assert after.status_code == 401
        assert client.post("/api/v1/auth/logout", headers=auth).status_code == 401


def test_cookie_authenticated_claim_from_another_site_is_refused(databases, vault, server):
    desk = SqlEscalationService(databases.engine(server["url"]), vault)
    ticket = desk.open_ticket(kind="human_request", priority="normal", session_id=f"csrf-{uuid.uuid4().hex[:8]}",
                              channel="web", user_id="resident-1", summary="请工作人员联系我", centre="default")
    with _client(server) as client:
        login = client.post("/console/login", data={"username": "wang", "password": PASSWORD},
                            headers={"Origin": server["base"]}, follow_redirects=False)
        assert login.status_code == 303 and client.cookies.get("linli_session")
        claim = f"/api/v1/tickets/{ticket.ticket_id}/claim"
        evil = client.post(claim, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403 and "其他网站" in evil.json()["message"]
        no_origin = client.post(claim)
        assert no_origin.status_code == 403
        evil_referer = client.post(claim, headers={"Referer": "http://evil.example/page"})
        assert evil_referer.status_code == 403
        assert desk.get(ticket.ticket_id).status == "pending", "a refused request changed nothing"
        # The console's own page (same origin) still works, and a bearer call is not affected.
        own = client.post(claim, headers={"Origin": server["base"]})
        assert own.status_code == 200, own.text
        assert desk.get(ticket.ticket_id).assignee == "wang"


def _raw_request(port: int, head: str, body_parts=(), pause: float = 0.0) -> tuple[int, float]:
    """Sends a request by hand and returns the status code and how long the answer took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for part in body_parts:
                sock.sendall(part)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent: what we want
        response = sock.recv(65536).decode("latin-1")
    return int(response.split(" ", 2)[1]), time.monotonic() - started


def test_fifty_megabyte_body_is_refused_before_it_is_read(server):
    head = ("POST /api/v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Forwarded-For: 203.0.113.50\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n")
    status, took = _raw_request(server["port"], head, [b'{"question": "'])
    assert status == 413 and took < 2, "refused on its Content-Length, without waiting for 50 MB"
    # A chunked body has no length up front: it is counted while it streams in.
    chunk = b"a" * 65536
    chunked = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 40  # 2.5 MB
    head = ("POST /api/v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "X-Forwarded-For: 203.0.113.51\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, took = _raw_request(server["port"], head, chunked)
    assert status == 413 and took < 5


def test_fifty_megabyte_body_over_httpx_gets_413(server):
    with _client(server) as client:
        try:
            response = client.post("/api/v1/ask", content=b"x" * (50 * 1024 * 1024),
                                   headers={"Content-Type": "application/json"})
        except httpx.WriteError:
            return  # the server answered 413 and closed while the client was still writing
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large" and "太大" in response.json()["message"]


LONE_SURROGATE = '"\\udc00\\ud800"'


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/messages", '{"session_id": "s-SID", "text": SURROGATE}'),
    ("/api/v1/ask", '{"question": SURROGATE}'),
])
def test_lone_surrogate_in_any_json_string_gives_422(server, path, body):
    payload = body.replace("SID", uuid.uuid4().hex[:8]).replace("SURROGATE", LONE_SURROGATE)
    with _client(server) as client:
        response = client.post(path, content=payload.encode(),
                               headers={"Content-Type": "application/json", "X-API-Key": TEST_API_KEY})
    assert response.status_code == 422, response.text
    assert "无效的字符" in response.json()["message"]


def test_lone_surrogate_in_a_ticket_and_in_keys_gives_422(server):
    with _client(server) as client:
        auth = {**_bearer(client), "Content-Type": "application/json"}
        ticket = ('{"kind": "human_request", "session_id": "s1", "summary": "x", '
                  '"form_data": {"\\ud800": "\\udfff\\ud800"}}')
        response = client.post("/api/v1/tickets", content=ticket.encode(), headers=auth)
        assert response.status_code == 422
        assert "无效的字符" in response.json()["message"]


HOSTILE_BODIES = [
    b'{"question": "\xff\xfe\xfa"}',                                  # not UTF-8
    b'{"question": "q", "include_expired": 1' + b"0" * 5000 + b"}",   # an integer of 5,000 digits
    b'{"question": "q", "region": NaN}',                               # NaN is not JSON
    b'{"question": "q", "as_of": 99999999999999999999999}',            # beyond 64 bits
    b"[" * 10000 + b"]" * 10000,                                       # nesting beyond the parser
    b'{"question": ' + b"[" * 100 + b"]" * 100 + b"}",                 # nesting beyond 32
    b'{"question": 12}',
    b'{"question": ["a"]}',
    b'{"question": {"a": {"b": 1}}}',
    b'"just a string"',
    b"",
]


def test_hostile_bodies_get_4xx_never_500(server):
    with _client(server) as client:
        auth = _bearer(client)
        for body in HOSTILE_BODIES:
            for path, headers in (("/api/v1/ask", {}), ("/api/v1/tickets", auth),
                                  ("/api/v1/messages", {"X-API-Key": TEST_API_KEY})):
                response = client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
                assert 400 <= response.status_code < 500, (path, body[:40], response.status_code, response.text)
        nested = {"kind": "human_request", "session_id": "s-nested", "summary": "x",
                  "form_data": {"a": {"b": {"c": [1, 2, {"d": "e" * 1000}]}}, "n": 2**62}}
        assert client.post("/api/v1/tickets", json=nested, headers=auth).status_code < 500
        for path in (f"/api/v1/tickets/{'x' * 5000}", f"/api/v1/applications/{'x' * 5000}",
                     f"/api/v1/sessions/{'x' * 5000}/messages", "/api/v1/tickets/%ff%fe",
                     "/api/v1/sessions/s1/messages?after=99999999999999999999999",
                     "/api/v1/sessions/s1/messages?after=-1"):
            response = client.get(path, headers={**auth, "X-API-Key": TEST_API_KEY})
            assert 400 <= response.status_code < 500, (path[:60], response.status_code, response.text[:200])
        login = client.post("/console/login", content=b"username=%ff%fe&password=\xff\xfe",
                            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": server["base"]})
        assert login.status_code < 500


@pytest.mark.parametrize("path", ["/console/login", "/kiosk", "/chat"])
def test_pages_send_csp_and_frame_headers(server, path):
    with _client(server) as client:
        response = client.get(path)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_anonymous_creation_is_limited_per_client(server):
    with _client(server, "203.0.113.77") as client:
        codes = [client.post("/api/v1/sessions", json={"channel": "chat", "centre": None}).status_code
                 for _ in range(CREATE_LIMIT + 2)]
        assert codes[:CREATE_LIMIT] == [201] * CREATE_LIMIT, codes
        assert codes[CREATE_LIMIT:] == [429, 429]
        refused = client.post("/api/v1/ask", json={"question": "高龄津贴怎么领"})
        assert refused.status_code != 429, "each endpoint has its own count"
        flood = client.post("/api/v1/sessions", json={"channel": "chat", "centre": None})
        assert 1 <= int(flood.headers["Retry-After"]) <= 60 and "太频繁" in flood.json()["message"]
    with _client(server, "203.0.113.78") as neighbour:
        assert neighbour.post("/api/v1/sessions", json={"channel": "chat", "centre": None}).status_code == 201
