"""Issue 28: the doors added since the first security pass — uploads, WeChat, filing, feedback and
analytics — tried against real `linli serve` processes as an attacker would, one test per numbered
hole. The next pass starts from here: each test sends what reproduced its hole, and what came back
is written to test-artifacts/security/attacks.md (the closing note's table).

Two servers:
- `proxied`: behind a reverse proxy (127.0.0.1 trusted for X-Forwarded-For, as HAProxy would be),
  WeChat in plain mode, two centres, three integration clients, filing through the in-memory
  backend. Each test speaks from its own client address (the proxy's X-Forwarded-For).
- `direct`: reached without a proxy (no address trusted), WeChat in safe mode (an EncodingAESKey)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select
from wechatpy.crypto import PrpCrypto, WeChatCrypto

from assistant.core.errors import WeakPassword
from assistant.core.settings import PROJECT_ROOT
from assistant.dialogue.store import turns
from assistant.escalation.auth import UserStore
from assistant.wechat.tables import wechat_inbound
from tests.attacks import files
from tests.conftest import DATABASES, SHARED_CACHE, TEST_API_KEY, free_port
from tests.integration.test_reliability import _start_server

pytestmark = pytest.mark.integration

TOKEN, APP_ID, AES_KEY = "attack-wechat-token", "wxattack", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CRM_KEY, OTHER_KEY = "crm-attack-key-2f9e", "other-attack-key-7b1a"
ADULT = "650202198512010036"
LEGAL_AID = {"procedure": "legal_aid", "data": {
    "applicant_name": "陈明", "applicant_id": ADULT, "mobile": "13512345678", "address": "昆仑路8号",
    "case_type": "unpaid_wages", "description": "工地老板拖欠三个月工资"}}
PASSWORD = "attack-test-password-2024"
REPORT = PROJECT_ROOT / "test-artifacts" / "security" / "attacks.md"
FOUND: list[tuple[str, str, str]] = []


def record(hole: str, request: str, response: str) -> None:
    FOUND.append((hole, request, response))


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"| {hole} | {request} | {response} |" for hole, request, response in sorted(
        FOUND, key=lambda row: int(row[0].split()[0]))]
    REPORT.write_text("| hole | the attack | the response now |\n|---|---|---|\n" + "\n".join(rows) + "\n",
                      encoding="utf-8")


# ---- the servers ---------------------------------------------------------------------------------

def _server_env(data_dir: Path, index_root: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(index_root / "var" / "index"),
                LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{index_root / "corpus"}"]',
                LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", LINLI_PRIVACY__DEVELOPMENT="true",
                LINLI_API__KEYS=json.dumps({"tests": TEST_API_KEY, "crm": CRM_KEY, "other": OTHER_KEY}),
                LINLI_ESCALATION__CENTRE="centre-a", LINLI_ESCALATION__CENTRES='["centre-b"]',
                LINLI_CONNECTORS__NAME="memory", LINLI_WECHAT__TOKEN=TOKEN, LINLI_WECHAT__APP_ID=APP_ID,
                LINLI_WECHAT__API_BASE=f"http://127.0.0.1:{free_port()}", LINLI_WECHAT__POLL_INTERVAL_S="0.05",
                **extra)


@contextmanager
def _running(tmp_path_factory, small_index: Path, name: str, **extra: str) -> Iterator[dict]:
    root = tmp_path_factory.mktemp(name)
    # A copy of the small index: uploads change it, and other modules share the original.
    index_root = root / "kb"
    shutil.copytree(small_index / "corpus", index_root / "corpus")
    shutil.copytree(small_index / "var" / "index", index_root / "var" / "index")
    data_dir = root / "var"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'linli.sqlite'}"
    users = UserStore(DATABASES.engine(url))
    for username, role, centre in (("wang", "worker", "centre-a"), ("li", "worker", "centre-b"),
                                   ("zhao", "worker", "centre-a"), ("boss", "admin", "centre-a")):
        users.add(username, PASSWORD, role=role, centre=centre)
    port = free_port()
    process = _start_server(_server_env(data_dir, index_root, **extra), port)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "url": url, "data_dir": data_dir}
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def proxied(small_index_dir, tmp_path_factory):
    with _running(tmp_path_factory, small_index_dir, "attacks-proxied", LINLI_API__TRUSTED_PROXIES='["127.0.0.1"]',
                  LINLI_LIMITS__APPLICATIONS_PER_CLIENT_PER_DAY="5", LINLI_KB_ADMIN__READ_MEMORY_MB="512") as server:
        yield server


@pytest.fixture(scope="module")
def direct(small_index_dir, tmp_path_factory):
    with _running(tmp_path_factory, small_index_dir, "attacks-direct", LINLI_WECHAT__ENCODING_AES_KEY=AES_KEY,
                  LINLI_LIMITS__SESSIONS_PER_CLIENT_PER_MINUTE="5") as server:
        yield server


@contextmanager
def client(server: dict, address: str | None = None, **headers: str) -> Iterator[httpx.Client]:
    """An attacker's (or a resident's) client; behind the proxy, `address` is what the proxy says."""
    if address:
        headers["X-Forwarded-For"] = address
    with httpx.Client(base_url=server["base"], headers=headers, timeout=60) as opened:
        yield opened


def page_session(c: httpx.Client, channel: str = "chat") -> dict[str, str]:
    minted = c.post("/api/v1/sessions", json={"channel": channel})
    assert minted.status_code == 201, minted.text
    return {"X-Session-Token": minted.json()["session_token"], "session_id": minted.json()["session_id"]}


def token_of(session: dict[str, str]) -> dict[str, str]:
    return {"X-Session-Token": session["X-Session-Token"]}


def bearer(c: httpx.Client, username: str) -> dict[str, str]:
    response = c.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def console_login(c: httpx.Client, server: dict, username: str) -> httpx.Response:
    return c.post("/console/login", data={"username": username, "password": PASSWORD},
                  headers={"Origin": server["base"]}, follow_redirects=False)


def rows(server: dict, query):
    engine = create_engine(server["url"])
    try:
        with engine.connect() as conn:
            return conn.execute(query).all()
    finally:
        engine.dispose()


def _signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signed_query() -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    return {"signature": _signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}


def text_message(openid: str, text: str, msg_id: int) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_linli]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>")


def _status(response: httpx.Response) -> str:
    try:
        body = response.json()
        said = body.get("message") or body.get("error") or ""
    except ValueError:
        said = response.text[:60]
    return f"{response.status_code} {said}"[:140].replace("|", "/").replace("\n", " ")


def _msg_id() -> int:
    return uuid.uuid4().int % 10**15


# ---- medium --------------------------------------------------------------------------------------

def test_01_one_page_session_cannot_file_forty_applications(proxied):
    with client(proxied, "198.51.100.1") as c:
        session = page_session(c)
        codes = [c.post("/api/v1/applications", json=LEGAL_AID, headers=token_of(session)).status_code
                 for _ in range(40)]
        refused = c.post("/api/v1/applications", json=LEGAL_AID, headers=token_of(session))
    assert set(codes) == {201, 429} and codes.count(201) <= 3 and codes[-1] == 429
    assert "今天暂时不能再提交" in refused.json()["message"] and int(refused.headers["Retry-After"]) > 0
    record("1 unlimited filing", "one page session, 40 × POST /api/v1/applications (valid legal aid)",
           f"{codes.count(201)} × 201, then {codes.count(429)} × 429 “{refused.json()['message'][:24]}…”")
    # New sessions from the same address meet the address's daily cap (5 on this server).
    with client(proxied, "198.51.100.2") as c:
        fresh = [c.post("/api/v1/applications", json=LEGAL_AID, headers=token_of(page_session(c))).status_code
                 for _ in range(8)]
    assert fresh == [201] * 5 + [429] * 3
    record("1 unlimited filing", "8 new page sessions from one address, one filing each",
           "5 × 201, 3 × 429 (the address's daily cap)")


def test_02_one_residents_question_cannot_break_the_analytics_page(proxied):
    hostile = "\t=1+2 低保"
    with client(proxied, "198.51.100.3") as c:
        session = page_session(c)
        reply = c.post("/api/v1/messages", json={"text": hostile}, headers=token_of(session)).json()
        rated = c.post(f"/api/v1/turns/{reply['turn_id']}/feedback", json={"rating": "down"},
                       headers=token_of(session))
        assert rated.status_code == 200, rated.text
        assert console_login(c, proxied, "boss").status_code == 303
        page = c.get("/admin/analytics")
        export = c.get("/admin/analytics/unanswered.csv")
    assert page.status_code == 200 and export.status_code == 200
    assert "'\t=1+2 低保" in export.text
    record("2 analytics 500", "resident writes “\\t=1+2 低保”, rates it 👎; GET /admin/analytics, unanswered.csv",
           "200, 200; the cell exported as “'\\t=1+2 低保”")


def test_03_an_idempotency_key_does_not_cross_centres(proxied):
    key, body = uuid.uuid4().hex, {"kind": "human_request", "priority": "normal", "summary": "A 中心居民：请联系我"}
    with client(proxied, "198.51.100.4") as c:
        a = c.post("/api/v1/tickets", json={**body, "session_id": f"idem-a-{key[:8]}"},
                   headers={**bearer(c, "wang"), "Idempotency-Key": key})
        again = c.post("/api/v1/tickets", json={**body, "session_id": f"idem-a-{key[:8]}"},
                       headers={**bearer(c, "wang"), "Idempotency-Key": key})
        b = c.post("/api/v1/tickets", json={**body, "summary": "B 中心", "session_id": f"idem-b-{key[:8]}"},
                   headers={**bearer(c, "li"), "Idempotency-Key": key})
    assert a.status_code == 201 and again.json()["ticket_id"] == a.json()["ticket_id"]
    assert b.status_code == 201 and b.json()["ticket_id"] != a.json()["ticket_id"]
    assert b.json()["centre"] == "centre-b" and "A 中心" not in b.text
    record("3 cross-centre ticket", "centre-B worker POST /api/v1/tickets with centre-A worker's Idempotency-Key",
           "201 with a new centre-B ticket; A's ticket stays A's")


def test_04_no_lookup_of_another_residents_applications_by_user_id(proxied):
    with client(proxied, "198.51.100.5") as c:
        victim = page_session(c)
        filed = c.post("/api/v1/applications", json=LEGAL_AID, headers=token_of(victim))
        assert filed.status_code == 201, filed.text
        reference = filed.json()["reference"]
        probe = c.post("/api/v1/messages", json={"session_id": f"probe-{uuid.uuid4().hex[:8]}",
                                                 "user_id": victim["session_id"], "text": "我的申请到哪一步了"},
                       headers={"X-API-Key": CRM_KEY})
        # Another client's user of the same name.
        crm_user = f"u-{uuid.uuid4().hex[:6]}"
        mine = c.post("/api/v1/applications", json={**LEGAL_AID, "session_id": f"crm-{crm_user}",
                                                    "user_id": crm_user}, headers={"X-API-Key": CRM_KEY})
        other = c.post("/api/v1/messages", json={"session_id": f"other-{crm_user}", "user_id": crm_user,
                                                 "text": "我的申请到哪一步了"}, headers={"X-API-Key": OTHER_KEY})
        own = c.post("/api/v1/messages", json={"session_id": f"crm-2-{crm_user}", "user_id": crm_user,
                                               "text": "我的申请到哪一步了"}, headers={"X-API-Key": CRM_KEY})
    assert probe.status_code == 200 and reference not in probe.text
    assert other.status_code == 200 and mine.json()["reference"] not in other.text
    assert mine.json()["reference"] in own.text, "the client's own user still sees their application"
    record("4 other owners' applications", "integration key, user_id = a page resident's session id, "
           "“我的申请到哪一步了”", f"200 “{probe.json()['text'][:30]}…” — not the resident's {reference}")


def test_05_a_replayed_wechat_signature_carries_no_other_message(proxied):
    query = signed_query()
    with client(proxied) as c:
        first = c.post("/wechat/callback", params=query, content=text_message("o-real-05", "你好", _msg_id()))
        retry = c.post("/wechat/callback", params=query, content=first.request.content)
        stranger = f"o-stranger-{uuid.uuid4().hex[:6]}"
        replay = c.post("/wechat/callback", params=query, content=text_message(stranger, "我要找工作人员", _msg_id()))
    assert first.status_code == 200 and retry.status_code == 200  # WeChat's own retry: the same body
    assert replay.status_code == 403 and "签名已被使用" in replay.json()["message"]
    assert rows(proxied, select(wechat_inbound.c.id).where(wechat_inbound.c.openid == stranger)) == []
    record("5 WeChat replay", "a callback's signature/timestamp/nonce reused with another body and FromUserName",
           f"{_status(replay)}; nothing stored for the stranger")


def test_06_safe_mode_refuses_a_plain_callback(direct):
    openid = f"o-plain-{uuid.uuid4().hex[:6]}"
    with client(direct) as c:
        plain = c.post("/wechat/callback", params=signed_query(), content=text_message(openid, "你好", _msg_id()))
        query = signed_query()
        encrypt = PrpCrypto(WeChatCrypto(TOKEN, AES_KEY, APP_ID).key).encrypt(
            text_message(openid, "你好", _msg_id()), APP_ID).decode()
        query.update(encrypt_type="aes", msg_signature=_signature(TOKEN, query["timestamp"], query["nonce"], encrypt))
        encrypted = c.post("/wechat/callback", params=query,
                           content=f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
    assert plain.status_code == 403 and encrypted.status_code == 200
    record("6 WeChat safe-mode downgrade", "plain callback to a server with ENCODING_AES_KEY set",
           f"{_status(plain)}; the encrypted one: 200")


def _upload(c: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return c.post("/admin/kb/upload", files=[("files", (name, data, "application/octet-stream"))],
                  headers={"Accept": "application/json"})


def _ask(c: httpx.Client) -> httpx.Response:
    return c.post("/api/v1/ask", json={"question": "90岁的老人每月领多少高龄津贴？"}, headers={"X-API-Key": CRM_KEY})


def test_07_a_bad_benefit_table_is_refused_and_answers_go_on(proxied):
    with client(proxied, "198.51.100.7") as c:
        c.headers.update(bearer(c, "boss"))
        upload = _upload(c, "bad-benefit-table.md", files.bad_benefit_table())
        asked = _ask(c)
    assert upload.status_code == 422 and "rows[0].min" in upload.json()["message"]
    assert asked.status_code == 200 and "500" in asked.json()["answer"]
    record("7 a bad benefit table", "upload .md with `benefit_tables` row `min: eighty`, then POST /api/v1/ask",
           f"{_status(upload)[:90]}…; /ask 200")


def test_08_a_yaml_alias_bomb_is_refused_while_residents_are_answered(proxied):
    answered: list[int] = []
    with client(proxied, "198.51.100.8") as c:
        c.headers.update(bearer(c, "boss"))
        started = time.monotonic()
        outcome: dict[str, httpx.Response] = {}
        uploading = threading.Thread(target=lambda: outcome.update(upload=_upload(c, "bomb.md",
                                                                                     files.yaml_alias_bomb())))
        uploading.start()
        while uploading.is_alive():
            answered.append(_ask(c).status_code)
            time.sleep(0.6)  # under the 120 requests a minute a client may make: a 429 is not what is tested
        uploading.join()
        took = time.monotonic() - started
    upload = outcome["upload"]
    assert upload.status_code == 422 and "别名" in upload.json()["message"]
    assert set(answered) <= {200}
    record("8 YAML alias bomb", "upload 668-byte front matter of nested anchors (`title: *a9`)",
           f"{_status(upload)[:70]}… in {took:.1f} s; {len(answered)} questions meanwhile, all 200")


# ---- low -----------------------------------------------------------------------------------------

def _pending_ticket(c: httpx.Client) -> str:
    opened = c.post("/api/v1/tickets", json={"kind": "human_request", "session_id": f"csrf-{uuid.uuid4().hex[:8]}",
                                             "summary": "请联系我"}, headers=bearer(c, "wang"))
    assert opened.status_code == 201, opened.text
    return opened.json()["ticket_id"]


def test_09_a_basic_authorization_header_does_not_skip_the_origin_check(proxied):
    with client(proxied, "198.51.100.9") as c:
        ticket = _pending_ticket(c)
        assert console_login(c, proxied, "wang").status_code == 303
        evil = c.post(f"/api/v1/tickets/{ticket}/claim", headers={"Authorization": "Basic eDp4",
                                                                  "Origin": "http://evil.example"})
        same_site = c.post(f"/api/v1/tickets/{ticket}/claim", headers={"Authorization": "Basic eDp4",
                                                                       "Origin": proxied["base"]})
        status = c.get(f"/api/v1/tickets/{ticket}").json()["status"]
    assert evil.status_code == 403 and same_site.status_code == 401 and status == "pending"
    record("9 CSRF with `Authorization: Basic`", "cookie + `Authorization: Basic x` cross-site claim",
           f"{_status(evil)[:60]}; from our own page: 401 (Basic is not ours); the ticket stays pending")


def test_10_another_site_cannot_log_a_visitor_in(proxied):
    with client(proxied, "198.51.100.10") as c:
        forged = c.post("/console/login", data={"username": "wang", "password": PASSWORD},
                        headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert forged.status_code == 403 and "linli_session" not in forged.headers.get("set-cookie", "")
    record("10 login CSRF", "cross-site POST /console/login with valid credentials",
           f"{_status(forged)[:80]}; no cookie")


def test_11_guessable_passwords_are_refused(databases, proxied):
    refused = []
    users = UserStore(databases.engine(proxied["url"]))
    for weak in ("aaaaaaaaab", "Linli123456"):
        with pytest.raises(WeakPassword) as caught:
            users.add(f"weak-{uuid.uuid4().hex[:4]}", weak, role="worker", centre="centre-a")
        refused.append(str(caught.value))
    assert all("容易被猜到" in message for message in refused)
    record("11 weak passwords", "`linli users add` with aaaaaaaaab, Linli123456", f"refused: “{refused[0][:40]}…”")


def test_12_numbers_written_every_way_are_masked_at_rest(proxied):
    said = "我电话１３８１２３４５６７８，也可以打138.1234.5678，身份证六五〇二〇二一九八五一二〇一〇〇三六"
    with client(proxied, "198.51.100.12") as c:
        session = page_session(c)
        assert c.post("/api/v1/messages", json={"text": said}, headers=token_of(session)).status_code == 200
    stored = [r.text for r in rows(proxied, select(turns.c.text).where(turns.c.session_id == session["session_id"],
                                                                       turns.c.role == "resident"))]
    assert stored and all(raw not in "".join(stored) for raw in ("１２３４", "1234", "一九八五一二〇一"))
    record("12 PII written otherwise", f"resident writes “{said[:28]}…”", f"stored as “{stored[0][:40]}…”")


def test_13_a_rotating_forwarded_for_resets_no_limit(direct, proxied):
    # Reached directly: X-Forwarded-For is nobody's word.
    with client(direct) as c:
        codes = [c.post("/api/v1/auth/token", json={"username": "zhao", "password": f"wrong-{i}"},
                        headers={"X-Forwarded-For": f"10.0.{i}.1"}).status_code for i in range(7)]
        mints = [c.post("/api/v1/sessions", json={"channel": "chat"},
                        headers={"X-Forwarded-For": f"10.1.{i}.1"}).status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    assert mints[:5] == [201] * 5 and mints[5:] == [429, 429]
    # Behind the proxy, the proxy's own entry (the last) names the client, whatever came before it.
    with client(proxied) as c:
        behind = [c.post("/api/v1/auth/token", json={"username": "zhao", "password": f"wrong-{i}"},
                         headers={"X-Forwarded-For": f"10.2.{i}.1, 203.0.113.13"}).status_code for i in range(7)]
    assert behind[5:] == [429, 429]
    record("13 rotating X-Forwarded-For", "7 wrong logins and 7 session mints, each with a new X-Forwarded-For",
           "locked after 5 (direct: the socket's address; behind the proxy: the proxy's entry)")


def test_14_guessing_locks_the_guesser_not_the_owner(proxied):
    with client(proxied, "203.0.113.14") as attacker:
        for i in range(5):
            attacker.post("/api/v1/auth/token", json={"username": "li", "password": f"guess-{i}"})
        locked = attacker.post("/api/v1/auth/token", json={"username": "li", "password": PASSWORD})
    with client(proxied, "198.51.100.14") as owner:
        welcome = owner.post("/api/v1/auth/token", json={"username": "li", "password": PASSWORD})
    assert locked.status_code == 429 and welcome.status_code == 200
    record("14 lockout of the owner", "5 wrong passwords for an account from one address, then the right one "
           "from it and from the owner's", "attacker: 429; owner: 200")


def test_15_a_word_file_of_tiny_paragraphs_is_read_in_linear_time(proxied):
    # Linear reading is shown at 15,000 paragraphs under a CPU limit (tests/unit/test_kb_isolated.py);
    # here a smaller one, so that indexing it costs the rest of the run little.
    data = files.docx_of_tiny_paragraphs(5_000)
    with client(proxied, "198.51.100.15") as c:
        c.headers.update(bearer(c, "boss"))
        started = time.monotonic()
        upload = c.post("/admin/kb/upload", files=[("files", ("tiny.docx", data, "application/octet-stream"))],
                        data={"region": "karamay", "category": "community_services"},
                        headers={"Accept": "application/json"})
        took = time.monotonic() - started
    assert upload.status_code == 202, upload.text
    record("15 slow .docx", f"upload a {len(data) // 1024} KB .docx of 5,000 one-character paragraphs",
           f"202 (read in a child process) after {took:.1f} s")


def test_16_a_pdf_stream_bomb_is_a_clear_refusal(proxied):
    with client(proxied, "198.51.100.16") as c:
        c.headers.update(bearer(c, "boss"))
        upload = _upload(c, "bomb.pdf", files.pdf_stream_bomb())
        zip_bomb = _upload(c, "bomb.docx", files.docx_zip_bomb(600))
    assert upload.status_code == 422 and zip_bomb.status_code == 422
    record("16 PDF stream bomb", "upload a 0.5 MB PDF whose stream inflates to 500 MB (and a 600 MB .docx bomb)",
           f"{_status(upload)[:60]}; .docx: {_status(zip_bomb)[:60]}")


def test_17_an_api_clients_channel_is_a_name(proxied):
    with client(proxied, "198.51.100.17") as c:
        odd = c.post("/api/v1/messages", json={"session_id": "s17", "channel": "\t=1+10", "text": "你好"},
                     headers={"X-API-Key": CRM_KEY})
    assert odd.status_code == 422 and odd.json()["error"] == "invalid_channel"
    record("17 a channel as a formula", "integration POST /api/v1/messages channel “\\t=1+10”", _status(odd)[:90])


def test_18_foreign_turn_ids_all_look_unknown(proxied):
    with client(proxied, "198.51.100.18") as c:
        victim, attacker = page_session(c), page_session(c)
        answer = c.post("/api/v1/messages", json={"text": "失业登记要带什么"}, headers=token_of(victim)).json()
        codes = {name: c.post(f"/api/v1/turns/{turn}/feedback", json={"rating": "up"},
                              headers=token_of(attacker)).status_code
                 for name, turn in (("another's answer", answer["turn_id"]), ("another's question",
                                                                                answer["turn_id"] - 1),
                                    ("no such turn", 10**12))}
        own = c.post("/api/v1/messages", json={"text": "你好"}, headers=token_of(attacker)).json()["turn_id"]
        own_question = c.post(f"/api/v1/turns/{own - 1}/feedback", json={"rating": "up"}, headers=token_of(attacker))
    assert set(codes.values()) == {404}, codes
    assert own_question.status_code == 422  # one's own question: it is not an answer, and one may be told
    record("18 turn ids revealed", "rate another's answer, another's question, a missing id",
           "404, 404, 404 (the same answer each time)")


def test_19_a_forged_msgid_does_not_swallow_a_residents_message(proxied):
    msg_id, victim, attacker = _msg_id(), f"o-victim-{uuid.uuid4().hex[:6]}", f"o-evil-{uuid.uuid4().hex[:6]}"
    with client(proxied) as c:
        forged = c.post("/wechat/callback", params=signed_query(), content=text_message(attacker, "占位", msg_id))
        real = c.post("/wechat/callback", params=signed_query(), content=text_message(victim, "你好", msg_id))
    assert forged.status_code == 200 and real.status_code == 200
    stored = rows(proxied, select(wechat_inbound.c.openid).where(wechat_inbound.c.openid.in_([victim, attacker])))
    assert sorted(r.openid for r in stored) == sorted([victim, attacker])
    record("19 MsgId reused by another sender", "forged callback from another openid with the resident's MsgId, "
           "then the resident's", "both stored and answered: the sender is part of the key")


def test_20_an_integration_cannot_read_a_wechat_users_reply(proxied):
    openid, msg_id = f"o-v20-{uuid.uuid4().hex[:6]}", _msg_id()
    with client(proxied) as c:
        assert c.post("/wechat/callback", params=signed_query(),
                      content=text_message(openid, "失业登记要带什么材料", msg_id)).status_code == 200
        deadline = time.monotonic() + 60
        while not rows(proxied, select(turns.c.text).where(turns.c.session_id == f"wechat:{openid}",
                                                           turns.c.role == "assistant")):
            assert time.monotonic() < deadline, "the WeChat message was not answered"
            time.sleep(0.2)
        stolen = c.post("/api/v1/messages", json={"channel": "wechat:wechat", "session_id": openid,
                                                  "message_id": f"msg:{msg_id}", "text": "你好"},
                        headers={"X-API-Key": CRM_KEY})
        web = c.post("/api/v1/messages", json={"session_id": openid, "message_id": f"wechat:msg:{openid}:{msg_id}",
                                               "text": "你好"}, headers={"X-API-Key": CRM_KEY})
    victims = {r.text for r in rows(proxied, select(turns.c.text).where(turns.c.session_id == f"wechat:{openid}",
                                                                       turns.c.role == "assistant"))}
    assert stolen.status_code == 422
    assert web.status_code == 200 and web.json()["text"] not in victims
    record("20 receipt keys collide", "integration: channel “wechat:wechat”, session <openid>, message “msg:<MsgId>”",
           f"{_status(stolen)[:50]}; as “web”: its own reply, not the WeChat user's")


def test_21_an_integration_cannot_speak_as_a_wechat_user(proxied):
    with client(proxied, "198.51.100.21") as c:
        as_wechat = c.post("/api/v1/messages", json={"session_id": "s21", "channel": "wechat",
                                                     "user_id": "o-someone", "text": "我要找工作人员"},
                           headers={"X-API-Key": CRM_KEY})
    assert as_wechat.status_code == 422 and "其他渠道专用" in as_wechat.json()["message"]
    record("21 speaking as WeChat", "integration: channel “wechat”, user_id <openid>, asks for a person",
           _status(as_wechat)[:90])
