"""The WeChat Official Account channel against a real `linli serve` process and a stand-in WeChat
API server (tests/wechat_standin.py). Callbacks are built the way WeChat builds them: the
signature is sha1 over the sorted token/timestamp/nonce (and, in safe mode, the ciphertext),
checked below against wechatpy's own test fixtures; the ciphertext is WeChat's AES-CBC scheme
(wechatpy's PrpCrypto, the sending side)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import xmltodict
from sqlalchemy import select
from wechatpy.crypto import PrpCrypto, WeChatCrypto

from assistant.core.settings import PROJECT_ROOT, Settings, WechatSettings
from assistant.escalation.auth import UserStore
from assistant.services import Services
from assistant.wechat.tables import wechat_inbound
from connectors.channels.wechat import WechatApi, split_text
from tests.conftest import SHARED_CACHE, free_port
from tests.integration.test_reliability import _start_server

TOKEN = "linli-wechat-token"
APP_ID = "wxlinlitest"
SECRET = "standin-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
AMR_CLIP = PROJECT_ROOT / "eval" / "datasets" / "speech" / "wechat" / "sp-age-001.amr"
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "wechat"


# ---- building callbacks the way WeChat does ---------------------------------------------------

def wechat_signature(*parts: str) -> str:
    """WeChat's signature: sha1 of the sorted, concatenated parts (token, timestamp, nonce[, encrypt])."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def test_callback_signatures_match_wechatpys_fixtures():
    # wechatpy tests/test_utils.py: token "test", timestamp 1410685589, nonce "test".
    assert wechat_signature("test", "1410685589", "test") == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
    # wechatpy tests/test_crypto.py (test_decrypt_message): the msg_signature over the ciphertext.
    encrypt = ("RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv"
               "283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkK"
               "R2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgp"
               "kHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX"
               "2e8K9QaNWHp91eBdCRxthuL0=")
    assert wechat_signature("123456", "1411525903", "461056294", encrypt) == "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
    # …and that ciphertext, WeChat's scheme, is what our decryption reads.
    plain = WeChatCrypto("123456", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wx49f0ab532d5d035a").decrypt_message(
        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>", "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
        "1411525903", "461056294")
    assert xmltodict.parse(plain)["xml"]["Content"] == "test"


def message_xml(openid: str, msg_type: str, msg_id: int | None, create_time: int | None = None, **fields: str) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    msg_id_xml = f"<MsgId>{msg_id}</MsgId>" if msg_id is not None else ""
    return (f"<xml><ToUserName><![CDATA[gh_linli]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>"
            f"{body}{msg_id_xml}</xml>")


def signed_query(timestamp: int | None = None, token: str = TOKEN) -> dict[str, str]:
    ts, nonce = str(timestamp or int(time.time())), uuid.uuid4().hex[:10]
    return {"signature": wechat_signature(token, ts, nonce), "timestamp": ts, "nonce": nonce, "openid": "o"}


def encrypted_callback(xml: str) -> tuple[dict[str, str], str]:
    """Safe mode as WeChat sends it: AES ciphertext in <Encrypt>, msg_signature over it too."""
    query = signed_query()
    encrypt = PrpCrypto(WeChatCrypto(TOKEN, AES_KEY, APP_ID).key).encrypt(xml, APP_ID).decode()
    query.update(encrypt_type="aes", msg_signature=wechat_signature(TOKEN, query["timestamp"], query["nonce"], encrypt))
    return query, f"<xml><ToUserName><![CDATA[gh_linli]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"


# ---- the stand-in and the server --------------------------------------------------------------

class Standin:
    def __init__(self, base: str) -> None:
        self.base = base

    def fault(self, fault: str = "none", send_delay_s: float = 0) -> None:
        httpx.post(f"{self.base}/_admin/faults", json={"fault": fault, "send_delay_s": send_delay_s}).raise_for_status()

    def pushes(self, openid: str | None = None) -> list[dict]:
        pushes = httpx.get(f"{self.base}/_admin/pushes").json()["pushes"]
        return [p for p in pushes if openid is None or p["touser"] == openid]

    def stats(self) -> dict:
        return httpx.get(f"{self.base}/_admin/stats").json()

    def wait_for_pushes(self, openid: str, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.pushes(openid)
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{openid}: {len(self.pushes(openid))} pushes, wanted {count}")


@pytest.fixture(scope="module")
def standin():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.wechat_standin", "--port", str(port), "--app-id", APP_ID,
                                "--secret", SECRET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, "stand-in did not start"
            time.sleep(0.1)
    httpx.post(f"{base}/_admin/media", params={"media_id": "voice-1"}, content=AMR_CLIP.read_bytes()).raise_for_status()
    yield Standin(base)
    process.terminate()
    process.wait(timeout=10)


def wechat_env(root: Path, index_root: Path, standin_base: str) -> dict[str, str]:
    return dict(os.environ, LINLI_DATA_DIR=str(root), LINLI_INDEX_DIR=str(index_root / "var" / "index"),
                LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{index_root / "corpus"}"]',
                LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", LINLI_PRIVACY__DEVELOPMENT="true",
                LINLI_SPEECH__MODEL_DIR=str(PROJECT_ROOT / "var" / "models" / "whisper-base"),
                LINLI_WECHAT__TOKEN=TOKEN, LINLI_WECHAT__APP_ID=APP_ID, LINLI_WECHAT__APP_SECRET=SECRET,
                LINLI_WECHAT__ENCODING_AES_KEY=AES_KEY, LINLI_WECHAT__API_BASE=standin_base,
                LINLI_WECHAT__PUSH_RETRY_BASE_S="0.2", LINLI_WECHAT__PUSH_RETRY_MAX_S="0.5",
                LINLI_WECHAT__POLL_INTERVAL_S="0.05")


class Server:
    def __init__(self, base: str, url: str) -> None:
        self.base = base
        self.url = url
        self.client = httpx.Client(base_url=base, timeout=10)

    def post(self, xml: str, query: dict[str, str] | None = None, *, plain: bool = False) -> httpx.Response:
        """A callback as WeChat sends it to an account in safe mode (the server has an
        EncodingAESKey): encrypted, unless `plain` or a query of the test's own is given."""
        if query is None and not plain:
            query, xml = encrypted_callback(xml)
        return self.client.post("/wechat/callback", params=query or signed_query(), content=xml.encode())


def decrypted_reply(text: str) -> dict:
    """A passive reply in safe mode, opened."""
    signed = xmltodict.parse(text)["xml"]
    crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
    return xmltodict.parse(crypto.decrypt_message(text, signed["MsgSignature"], signed["TimeStamp"],
                                                  signed["Nonce"]))["xml"]


@pytest.fixture(scope="module")
def server(databases, small_index_dir, tmp_path_factory, standin):
    root = tmp_path_factory.mktemp("wechat-server")
    url = f"sqlite:///{root / 'linli.sqlite'}"
    UserStore(databases.engine(url)).add("wang", "wang-password-2024", role="worker", centre="default")
    port = free_port()
    process = _start_server(wechat_env(root, small_index_dir, standin.base), port)
    yield Server(f"http://127.0.0.1:{port}", url)
    process.terminate()
    process.wait(timeout=20)


TRANSCRIPT: list[dict] = []


def record(direction: str, openid: str, text: str) -> None:
    TRANSCRIPT.append({"direction": direction, "openid": openid, "text": text, "at": round(time.time(), 3)})


def converse(server: Server, standin: Standin, openid: str, text: str, msg_id: int) -> list[dict]:
    """One text message; its answer (every push that came for it)."""
    before = len(standin.pushes(openid))
    record("in (text)", openid, text)
    response = server.post(message_xml(openid, "text", msg_id, Content=text))
    assert response.status_code == 200 and response.text == "success"
    standin.wait_for_pushes(openid, before + 1)
    time.sleep(0.3)  # a long answer comes in parts: let them all arrive
    new = standin.pushes(openid)[before:]
    for push in new:
        record("out (push)", openid, push["content"])
    return new


# ---- refusals: nothing stored ------------------------------------------------------------------

def test_server_verification_echoes_and_refuses_a_forged_signature(server):
    query = signed_query()
    assert server.client.get("/wechat/callback", params={**query, "echostr": "hello-123"}).text == "hello-123"
    forged = {**query, "signature": "0" * 40, "echostr": "x"}
    assert server.client.get("/wechat/callback", params=forged).status_code == 403


def test_bad_callbacks_are_refused_and_never_stored(databases, server):
    openid = "o-refused"
    text = message_xml(openid, "text", 9_000_001, Content="你好")
    assert server.post(text, {**signed_query(), "signature": "f" * 40}).status_code == 403
    assert server.post(text, signed_query(timestamp=int(time.time()) - 400)).status_code == 403
    doctype = '<!DOCTYPE xml [<!ENTITY e "boom">]>' + text.replace("你好", "&e;")
    assert server.post(doctype, plain=True).status_code == 400
    assert server.post("<xml><ToUserName>broken", plain=True).status_code == 400
    assert server.post(text.replace("你好", "很长" * 300_000), plain=True).status_code == 413
    # An account in safe mode gets every callback encrypted: a plain one is someone else's.
    assert server.post(text, plain=True).status_code == 403
    with databases.engine(server.url).connect() as conn:
        stored = conn.execute(select(wechat_inbound.c.id).where(wechat_inbound.c.openid == openid)).all()
    assert stored == []


# ---- answers -------------------------------------------------------------------------------------

def test_text_message_is_acknowledged_at_once_and_answered_by_push(server, standin):
    openid = "o-resident-text"
    started = time.perf_counter()
    pushes = converse(server, standin, openid, "我奶奶今年92了，每个月能领多少高龄补贴？", 10_000_001)
    assert time.perf_counter() - started < 30
    answer = "\n".join(p["content"] for p in pushes)
    assert "500元" in answer and "[1] 克拉玛依市高龄津贴发放标准" in answer
    assert all(len(p["content"].encode()) <= 2048 for p in pushes)


def test_retries_during_a_slow_answer_get_one_push(databases, server, standin):
    openid = "o-retries-slow"
    xml = message_xml(openid, "text", 10_000_002, Content="失业了去哪登记，要带什么？")
    standin.fault("none", send_delay_s=2.0)  # the answer is slow to reach WeChat
    try:
        acks = []
        for _ in range(4):  # WeChat's first try and its three retries, while the answer is in flight
            started = time.perf_counter()
            response = server.post(xml)
            acks.append((response.status_code, response.text, time.perf_counter() - started))
            time.sleep(0.4)
        assert all(status == 200 and body == "success" and seconds < 1.0 for status, body, seconds in acks), acks
        standin.wait_for_pushes(openid, 1, timeout=30)
    finally:
        standin.fault("none")
    time.sleep(1.5)
    assert len(standin.pushes(openid)) == 1
    with databases.engine(server.url).connect() as conn:
        assert conn.execute(select(wechat_inbound.c.status).where(wechat_inbound.c.openid == openid)).scalars().all() \
            == ["done"]


def test_a_retry_after_the_answer_is_not_answered_again(server, standin):
    openid = "o-retries-fast"
    xml = message_xml(openid, "text", 10_000_003, Content="你好")
    assert server.post(xml).text == "success"
    standin.wait_for_pushes(openid, 1)
    assert server.post(xml).text == "success"
    time.sleep(1.5)
    assert len(standin.pushes(openid)) == 1


def test_safe_mode_round_trip_and_instant_replies(server, standin):
    openid = "o-safe-mode"
    query, body = encrypted_callback(message_xml(openid, "event", None, Event="subscribe"))
    response = server.post(body, query)
    assert response.status_code == 200
    reply = xmltodict.parse(response.text)["xml"]
    crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
    plain = xmltodict.parse(crypto.decrypt_message(response.text, reply["MsgSignature"], reply["TimeStamp"],
                                                   reply["Nonce"]))["xml"]
    assert plain["ToUserName"] == openid and plain["MsgType"] == "text" and "邻里" in plain["Content"]
    # The same event again (WeChat's retry): the same welcome, nothing stored twice.
    again = server.post(body, query).text
    signed = xmltodict.parse(again)["xml"]
    assert "邻里" in xmltodict.parse(crypto.decrypt_message(again, signed["MsgSignature"], signed["TimeStamp"],
                                                           signed["Nonce"]))["xml"]["Content"]
    # A forged msg_signature is refused.
    assert server.post(body, {**query, "msg_signature": "0" * 40}).status_code == 403
    # An image: the polite "only text and voice", passively.
    image = decrypted_reply(server.post(message_xml(openid, "image", 10_000_004, PicUrl="http://x/p.jpg",
                                                    MediaId="m1")).text)
    assert "文字和语音" in image["Content"]
    # A text in safe mode is acknowledged and answered by push.
    query, body = encrypted_callback(message_xml(openid, "text", 10_000_005, Content="你好"))
    assert server.post(body, query).text == "success"
    standin.wait_for_pushes(openid, 1)


def test_voice_message_is_heard_and_answered(server, standin):
    openid = "o-resident-text"  # the same resident as the text test: one conversation
    before = len(standin.pushes(openid))
    record("in (voice sp-age-001.amr: 我奶奶今年九十二岁了，每个月能领多少高龄津贴？)", openid, "[voice]")
    response = server.post(message_xml(openid, "voice", 10_000_006, MediaId="voice-1", Format="amr"))
    assert response.text == "success"
    pushes = standin.wait_for_pushes(openid, before + 1, timeout=120)[before:]
    for push in pushes:
        record("out (push)", openid, push["content"])
    assert pushes[0]["content"].startswith("您说的是：") and "高龄津贴" in pushes[0]["content"]
    assert "500元" in pushes[0]["content"]


def test_dispute_intake_then_a_worker_reply_reaches_wechat(databases, server, standin):
    openid = "o-dispute"
    steps = ["楼上漏水把我家泡了，帮我找人调解", "楼上602的住户", "幸福小区3栋502", "上周开始漏水，找他好几次都不理",
             "一般", "13812345678", "确认"]
    for number, text in enumerate(steps):
        converse(server, standin, openid, text, 20_000_000 + number)
    # The phone number the resident typed is not kept in the clear in the inbound queue.
    with databases.engine(server.url).connect() as conn:
        stored = " ".join(str(p) for p in conn.execute(select(wechat_inbound.c.payload)).scalars())
    assert "13812345678" not in stored and "enc:v1:" in stored
    with httpx.Client(base_url=server.base, timeout=10) as client:
        login = {"username": "wang", "password": "wang-password-2024"}
        worker = {"Authorization": f"Bearer {client.post('/api/v1/auth/token', json=login).json()['token']}"}
        tickets = client.get("/api/v1/tickets", headers=worker).json()["tickets"]
        ticket = next(t for t in tickets if t["channel"] == "wechat" and t["user_id"] == openid)
        assert ticket["kind"] == "dispute" and ticket["session_id"] == f"wechat:{openid}"
        assert client.post(f"/api/v1/tickets/{ticket['ticket_id']}/claim", headers=worker).status_code == 200
        before = len(standin.pushes(openid))
        words = "您好，我是社区调解员王。明天上午十点我们上门查看漏水情况。"
        assert client.post(f"/api/v1/tickets/{ticket['ticket_id']}/reply", headers=worker,
                           json={"text": words}).status_code == 200
        pushed = standin.wait_for_pushes(openid, before + 1)[before:]
        assert [p["content"] for p in pushed] == [words]
        record("out (worker reply, push)", openid, words)

        # Outside WeChat's 48-hour window: the console says the reply did not arrive.
        standin.fault("window")
        try:
            client.post(f"/api/v1/tickets/{ticket['ticket_id']}/reply", headers=worker, json={"text": "还在吗？"})
            deadline = time.monotonic() + 20
            notes: list[str] = []
            while time.monotonic() < deadline and not notes:
                events = client.get(f"/api/v1/tickets/{ticket['ticket_id']}", headers=worker).json()
                notes = [e["text"] for e in events.get("events", []) if e["action"] == "note"]
                time.sleep(0.2)
        finally:
            standin.fault("none")
        assert notes and "超过48小时" in notes[0]
        assert len(standin.pushes(openid)) == before + 1


def test_an_expired_token_is_refreshed_once_and_the_push_resent(server, standin):
    openid = "o-token"
    fetches = standin.stats()["token_fetches"]
    standin.fault("token_expired")
    converse(server, standin, openid, "你好", 30_000_001)
    stats = standin.stats()
    assert stats["token_fetches"] == fetches + 1 and stats["refused_tokens"] >= 1
    time.sleep(0.5)
    assert len(standin.pushes(openid)) == 1


def test_wechat_down_then_back_delivers_once(server, standin):
    openid = "o-down"
    standin.fault("down")
    try:
        assert server.post(message_xml(openid, "text", 40_000_001, Content="你好")).text == "success"
        time.sleep(2.5)
        assert standin.pushes(openid) == []
    finally:
        standin.fault("none")
    standin.wait_for_pushes(openid, 1, timeout=20)
    time.sleep(1.5)
    assert len(standin.pushes(openid)) == 1


def test_write_the_transcript(server, standin):
    """Runs last in this module: the conversation above, as the stand-in recorded it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "transcript.json").write_text(json.dumps(TRANSCRIPT, ensure_ascii=False, indent=2), encoding="utf-8")
    assert any(t["direction"].startswith("out (worker") for t in TRANSCRIPT)


# ---- dedup, without a server --------------------------------------------------------------------

def test_two_racing_receivers_accept_one_msgid_once(database_url, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=database_url,
                        wechat=WechatSettings(token=TOKEN, app_id=APP_ID))
    service = Services(settings).wechat
    xml = message_xml("o-race", "text", 50_000_001, Content="你好").encode()
    query = signed_query()
    barrier = threading.Barrier(2)
    results = []

    def receive() -> None:
        barrier.wait()
        results.append(service.receive(xml, signature=query["signature"], timestamp=query["timestamp"],
                                       nonce=query["nonce"]))

    threads = [threading.Thread(target=receive) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.duplicate for r in results) == [False, True]
    assert all(r.body == "success" for r in results)
    with service.engine.connect() as conn:
        assert len(conn.execute(select(wechat_inbound.c.id).where(wechat_inbound.c.openid == "o-race")).all()) == 1


def test_long_answers_are_split_to_wechats_length():
    text = "\n".join(["高龄津贴按月发放。" * 40] * 6)
    parts = split_text(text)
    assert len(parts) > 1 and all(len(p.encode()) <= 2048 for p in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")


def test_many_processes_needing_a_token_at_once_fetch_one(databases, standin, postgres_database):
    # Five replicas and workers (an API object each, as each process has) find no token at once.
    settings = WechatSettings(token="t", app_id=APP_ID, app_secret=SECRET, api_base=standin.base)
    engine = databases.engine(postgres_database)
    apis = [WechatApi(settings, engine, httpx.Client(base_url=standin.base, timeout=5)) for _ in range(5)]
    fetches = standin.stats()["token_fetches"]
    start = threading.Barrier(len(apis))
    tokens: list[str] = []

    def need(api: WechatApi) -> None:
        start.wait()
        tokens.append(api.access_token())

    threads = [threading.Thread(target=need, args=(api,)) for api in apis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(tokens) == 5 and len(set(tokens)) == 1
    assert standin.stats()["token_fetches"] == fetches + 1
    # WeChat refused it: one of them refreshes, the others take the new one.
    refused = tokens[0]
    again = {api.access_token(stale=refused) for api in apis}
    assert len(again) == 1 and refused not in again
    assert standin.stats()["token_fetches"] == fetches + 2
