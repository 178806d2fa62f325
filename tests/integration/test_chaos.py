"""The cluster under faults, with real processes: 3 replicas and 2 workers behind HAProxy on
PostgreSQL and Redis, the stand-in WeChat server and the sandbox government backend. For
LINLI_CHAOS_SECONDS (60 by default) it drives web-chat residents in multi-turn conversations
(policy questions, filings, hand-offs), WeChat users whose callbacks are retried as WeChat retries
them (the same MsgId to two replicas at once), a social worker claiming and replying in the
console API, and an administrator's upload. Meanwhile it kill -9s one replica and one worker and
SIGTERMs another replica. Then it checks, from the database and the stand-ins, that nothing was
lost or doubled. The figures go to test-artifacts/cluster/chaos.md.

60 s, not the 120 s it ran before (issue 30: `make test` within 15 minutes on 2 cores): the faults
keep their order and their share of the run, and each still meets plenty of traffic. A 120 s run
on a loaded 2-core machine sent 3,845 messages, about 30 a second, so each phase between faults
(9 s at 60 s; the killed replica stays down 27 s and more) meets hundreds of them and dozens of
WeChat callbacks; a killed replica's restart (up to 35 s under that load) is waited for either
way. LINLI_CHAOS_SECONDS=120 or more makes a longer soak.

Skipped, with the reason printed, where PostgreSQL, Redis or HAProxy is missing."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import create_engine, func, select, text

from assistant.cluster import Cluster, ClusterConfig, drop_database
from assistant.core.privacy import mask_pii
from assistant.core.settings import PROJECT_ROOT
from assistant.dialogue.store import turns
from assistant.escalation.auth import UserStore
from assistant.escalation.tables import tickets
from assistant.wechat.tables import wechat_inbound
from tests.conftest import ENV_API_KEYS, POSTGRES_ADMIN_URL, SHARED_CACHE, TEST_API_KEY, free_port, write_doc
from tests.integration.conftest import write_small_corpus
from tests.integration.test_filing import ADULT
from tests.integration.test_wechat import wechat_signature

pytestmark = pytest.mark.chaos

CHAOS_S = float(os.environ.get("LINLI_CHAOS_SECONDS", "60"))
RESIDENTS = 50
WECHAT_USERS = 8
TOKEN, APP_ID, SECRET = "chaos-token", "wxchaos", "chaos-secret"
ARTIFACT = PROJECT_ROOT / "test-artifacts" / "cluster" / "chaos.md"
QUESTIONS = ["高龄津贴每月发多少钱？", "80岁以上老人能领多少高龄津贴？", "失业了去哪里登记？", "失业登记要带什么材料？",
             "我爷爷91岁，每月多少钱？", "高龄津贴怎么申请？"]
FILING = ["帮我做一下养老金资格认证", "张建国", ADULT, "13912345678", "职工养老金", "到窗口办理", "确认"]


def _missing() -> str | None:
    if shutil.which("haproxy") is None:
        return "HAProxy is not installed (apt-get install -y haproxy)"
    try:
        with create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3}).connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, with the reason
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__})"
    if shutil.which("redis-server") is None and shutil.which("redis-cli") is None:
        return "Redis is not installed"
    return None


@dataclass
class Log:
    """What the drivers saw, thread-safe."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))  # session -> (id, text)
    acknowledged: set[tuple[str, str]] = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[tuple[float, int, str]] = field(default_factory=list)
    wechat: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # openid -> MsgIds acked
    handoffs: dict[str, str] = field(default_factory=dict)  # session -> "reply_type:ticket_id" answered
    worker_replies: int = 0
    claimed: int = 0
    taken_out_s: float = 0.0  # from the kill -9 of a replica to HAProxy reporting it DOWN

    def status(self, code: int, where: str) -> None:
        with self.lock:
            self.statuses[code] += 1
            if code >= 500:
                self.server_errors.append((time.monotonic(), code, where))


def _post(client: httpx.Client, url: str, log: Log, *, via: str = "haproxy",  # type: ignore[no-untyped-def]
          **kwargs) -> httpx.Response | None:
    """`via`: "haproxy", or the replica this connection goes to directly."""
    try:
        response = client.post(url, **kwargs)
    except httpx.TransportError as exc:
        log.status(599, f"{via} {url} {type(exc).__name__}")
        return None
    log.status(response.status_code, f"{via} {url}")
    return response


def _resident(base: str, index: int, log: Log, stop: threading.Event) -> None:
    """A web-chat resident (the integration API): conversations of a few messages, each retried with
    its message id until acknowledged, as a client library would after a 502 or a dropped connection."""
    rng = random.Random(index)
    client = httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": TEST_API_KEY})
    for conversation in itertools.count():
        if stop.is_set():
            return
        session = f"chaos-r{index}-c{conversation}"
        # Filings and hand-offs at the start and again while processes are being killed.
        kind = ("filing" if index % 10 == 0 and conversation % 3 == 0 else
                "handoff" if index % 7 == 0 and conversation in (0, 6) else "questions")
        script = (FILING if kind == "filing" else ["我要转人工"] if kind == "handoff"
                  else rng.sample(QUESTIONS, 4))
        for n, said in enumerate(script):
            message_id = f"m{n}"
            with log.lock:
                log.sent[session].append((message_id, said))
            body = {"session_id": session, "text": said, "user_id": f"chaos-{index}-{conversation}",
                    "message_id": message_id}
            for _attempt in range(20):
                response = _post(client, "/api/v1/messages", log, json=body)
                if response is not None and response.status_code == 200:
                    with log.lock:
                        log.acknowledged.add((session, message_id))
                        if kind == "handoff":
                            reply = response.json()
                            log.handoffs[session] = f"{reply.get('reply_type')}:{reply.get('ticket_id')}"
                    break
                time.sleep(0.5)
            if stop.is_set() and kind == "questions":
                return


def _wechat_user(replicas: dict[str, str], index: int, log: Log, stop: threading.Event) -> None:
    """A WeChat follower: each callback sent to two replicas at once, as WeChat's retries may land
    (directly, not through HAProxy, so that the two copies surely meet on different replicas)."""
    openid = f"o-chaos-{index}"
    # A new connection per callback, as WeChat's servers make them: a kept-alive connection that a
    # replica left idle for its keep-alive timeout (uvicorn: 5 s) can be closed just as the next
    # callback goes out on it, a race of the client's reuse, not a failure of the replica.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    clients = [(name, httpx.Client(base_url=url, timeout=10, limits=no_reuse)) for name, url in replicas.items()]
    for n in itertools.count():
        if stop.is_set():
            return
        msg_id = 7_000_000 + index * 10_000 + n
        ts, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
        query = {"signature": wechat_signature(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "openid": openid}
        xml = (f"<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
               f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
               f"<Content><![CDATA[{QUESTIONS[n % len(QUESTIONS)]}]]></Content><MsgId>{msg_id}</MsgId></xml>")
        pair = random.Random(msg_id).sample(clients, 2)
        answers: list[httpx.Response | None] = [None, None]

        def send(slot: int, name: str, client: httpx.Client, query: dict[str, str] = query, xml: str = xml,
                 answers: list[httpx.Response | None] = answers) -> None:
            answers[slot] = _post(client, "/wechat/callback", log, via=name, params=query, content=xml.encode())

        threads = [threading.Thread(target=send, args=(i, *pair[i])) for i in range(len(pair))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        if any(a is not None and a.status_code == 200 for a in answers):
            with log.lock:
                log.wechat[openid].append(msg_id)
        time.sleep(1.5)


def _social_worker(base: str, log: Log, stop: threading.Event) -> None:
    client = httpx.Client(base_url=base, timeout=15)
    token = None
    while not stop.is_set():
        if token is None:
            response = _post(client, "/api/v1/auth/token", log,
                             json={"username": "wang", "password": "wang-password-2024"})
            token = response.json()["token"] if response is not None and response.status_code == 200 else None
            if token is None:
                time.sleep(1)
                continue
        headers = {"Authorization": f"Bearer {token}"}
        claimed = _post(client, "/api/v1/tickets/claim-next", log, headers=headers)
        if claimed is None or claimed.status_code != 200 or not claimed.json().get("ticket"):
            time.sleep(1)
            continue
        ticket = claimed.json()["ticket"]["ticket_id"]
        with log.lock:
            log.claimed += 1
        replied = _post(client, f"/api/v1/tickets/{ticket}/reply", log, headers=headers,
                        json={"text": "您好，我是社工小王，已经收到您的情况。"})
        if replied is not None and replied.status_code == 200:
            with log.lock:
                log.worker_replies += 1
        _post(client, f"/api/v1/tickets/{ticket}/resolve", log, headers=headers, json={"outcome": "已联系居民"})


def _upload(base: str, folder: Path, log: Log) -> str:
    client = httpx.Client(base_url=base, timeout=60)
    token = client.post("/api/v1/auth/token", json={"username": "boss", "password": "boss-password-2024"}).json()
    body = "# 长者食堂开放时间\n\n长者食堂每天上午十一点到下午一点开放午餐，凭卡就餐。"
    path = write_doc(folder, "chaos-canteen", body, title="长者食堂开放时间", category="community_services")
    response = _post(client, "/admin/kb/upload", log, headers={"Authorization": f"Bearer {token['token']}",
                                                               "Accept": "application/json"},
                     files={"files": (path.name, path.read_bytes(), "text/markdown")})
    assert response is not None and response.status_code == 202, response and response.text
    return str(response.json()["job"]["job_id"])


@pytest.fixture(scope="module")
def cluster(databases, tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("chaos")
    corpus = write_small_corpus(root)
    port = free_port()
    standin = subprocess.Popen([sys.executable, "-m", "tests.wechat_standin", "--port", str(port), "--app-id", APP_ID,
                                "--secret", SECRET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    standin_base = f"http://127.0.0.1:{port}"
    database = f"linli_chaos_{uuid.uuid4().hex[:8]}"
    config = ClusterConfig(
        replicas=3, workers=2, port=0, database=database, fresh_database=True, root=root / "cluster",
        redis_db=int(os.environ.get("LINLI_CHAOS_REDIS_DB", "5")),
        extra_env={
            "LINLI_API__KEYS": ENV_API_KEYS, "LINLI_EMBEDDING_CACHE": str(SHARED_CACHE),
            "LINLI_CORPUS_DIRS": json.dumps([str(corpus)]), "LINLI_LAW_CORPUS": "",
            "LINLI_LIMITS__REQUESTS_PER_CLIENT_PER_MINUTE": "100000",
            "LINLI_LIMITS__SESSIONS_PER_CLIENT_PER_MINUTE": "100000",
            "LINLI_WECHAT__TOKEN": TOKEN, "LINLI_WECHAT__APP_ID": APP_ID, "LINLI_WECHAT__APP_SECRET": SECRET,
            "LINLI_WECHAT__API_BASE": standin_base, "LINLI_WECHAT__POLL_INTERVAL_S": "0.1",
            "LINLI_WECHAT__PUSH_RETRY_BASE_S": "0.2", "LINLI_WECHAT__PUSH_RETRY_MAX_S": "1",
            "LINLI_CONNECTORS__WORKER_INTERVAL_S": "0.5", "LINLI_KB_ADMIN__JOB_LEASE_S": "6",
            "LINLI_ESCALATION__SWEEP_INTERVAL_S": "2", "LINLI_CONNECTORS__RETRY_BASE_S": "0.5",
        })
    with Cluster(config) as running:
        # Rate-limit counters of an earlier run (the same session names) must not count here.
        redis.Redis.from_url(running.redis_url).flushdb()
        users = UserStore(databases.engine(running.database_url))
        users.add("wang", "wang-password-2024", role="worker", centre="default")
        users.add("boss", "boss-password-2024", role="admin", centre="default")
        yield running, standin_base, root
        groups = dict(running.pids)
    standin.terminate()
    standin.wait(10)
    drop_database(running.database_url, database)
    # `make cluster`'s Ctrl-C: nothing is left in any child's process group.
    assert running.group_members() == [] and running.pids == {}
    for pid in groups.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_every_replica_answers_through_haproxy_and_a_conversation_moves_between_them(cluster):
    running, _standin, _root = cluster
    assert {name: state.split()[0] for name, state in running.backend_status().items()} == \
        {name: "UP" for name in running.replica_names}
    with httpx.Client(base_url=running.url, timeout=30) as client:
        seen = [client.get("/readyz").headers.get("X-Linli-Replica") for _ in range(6)]
        assert set(seen) == set(running.replica_names), seen
        # A page session minted on one replica carries its conversation on the others: the
        # conversation lives in PostgreSQL, not in a process.
        session = client.post("/api/v1/sessions", json={"channel": "chat"})
        assert session.status_code == 201, session.text
        token = session.json()["session_token"]
        replies = [client.post("/api/v1/messages", headers={"X-Session-Token": token}, json={"text": text})
                   for text in ("你好", "失业登记需要带什么材料？", "高龄津贴每月发多少钱？")]
        assert [r.status_code for r in replies] == [200, 200, 200], [r.text for r in replies]
        assert len({r.headers["X-Linli-Replica"] for r in replies}) >= 2


def test_nothing_is_lost_or_doubled_when_processes_die(cluster):
    running, standin, root = cluster
    log, stop = Log(), threading.Event()
    replicas = dict(running.replica_urls)
    drivers = [threading.Thread(target=_resident, args=(running.url, i, log, stop), daemon=True)
               for i in range(RESIDENTS)]
    drivers += [threading.Thread(target=_wechat_user, args=(replicas, i, log, stop), daemon=True)
                for i in range(WECHAT_USERS)]
    drivers.append(threading.Thread(target=_social_worker, args=(running.url, log, stop), daemon=True))
    began = time.monotonic()
    for driver in drivers:
        driver.start()
    kills: list[tuple[float, str, str]] = []
    try:
        job_id = _drive(running, standin, root, log, kills, began)
    finally:
        stop.set()
    deadline = time.monotonic() + 60
    for driver in drivers:
        driver.join(max(0.1, deadline - time.monotonic()))
    running.start_process("replica-2")
    kills.append((time.monotonic(), "replica-2", "back"))
    _settle(running, standin, log)
    figures = _check(running, standin, log, kills, job_id, began)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(_report(figures, kills, began), encoding="utf-8")


def _drive(running: Cluster, standin: str, root: Path, log: Log, kills: list[tuple[float, str, str]],
           began: float) -> str:
    """The faults, on a timetable; returns the upload's job id."""

    def at(fraction: float, seconds_before: float = 0.0) -> None:
        time.sleep(max(0.0, began + CHAOS_S * fraction - seconds_before - time.monotonic()))

    at(0.15)
    job_id = _upload(running.url, root, log)
    at(0.25)
    kills.append((time.monotonic(), "replica-1", "kill -9"))
    running.kill("replica-1", signal.SIGKILL)
    log.taken_out_s = running.wait_backend({"replica-1": "DOWN"}, timeout=15)
    # WeChat slow for a moment, and the worker killed is one caught mid-push: its push is then in
    # doubt and must not be sent twice (the defect an earlier run of this test found). WeChat is
    # slow for 2.4 s before the kill however long the run, so pushes are surely in flight.
    at(0.40, seconds_before=2.4)
    httpx.post(f"{standin}/_admin/faults", json={"fault": "none", "send_delay_s": 1.0}, timeout=5).raise_for_status()
    at(0.40)
    victim = _worker_sending(running) or "worker-1"
    kills.append((time.monotonic(), victim, "kill -9"))
    running.kill(victim, signal.SIGKILL)
    httpx.post(f"{standin}/_admin/faults", json={"fault": "none", "send_delay_s": 0}, timeout=5).raise_for_status()
    at(0.55)
    kills.append((time.monotonic(), "replica-2", "SIGTERM"))
    running.kill("replica-2", signal.SIGTERM)
    at(0.70)
    running.start_process("replica-1")  # returns once it is ready
    kills.append((time.monotonic(), "replica-1", "back"))
    running.start_process(victim)
    at(1.0)
    return job_id


def _worker_sending(running: Cluster, within_s: float = 3.0) -> str | None:
    """The name of a worker that is sending a WeChat push right now (leased and marked `sending`)."""
    engine = create_engine(running.database_url)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                owners = conn.execute(text("SELECT lease_owner FROM wechat_pushes WHERE status = 'sending'")).scalars()
                for owner in owners:
                    for name in running.worker_names:
                        if owner and owner.endswith(f"-{name}"):
                            return name
            time.sleep(0.05)
    finally:
        engine.dispose()
    return None


def _settle(running: Cluster, standin: str, log: Log, timeout_s: float = 90) -> None:
    """Wait until the workers have answered every WeChat message and delivered every filing."""
    engine = create_engine(running.database_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(text(
                "SELECT (SELECT count(*) FROM wechat_inbound WHERE status IN ('queued', 'processing'))"
                " + (SELECT count(*) FROM wechat_pushes WHERE status IN ('queued', 'sending'))"
                " + (SELECT count(*) FROM applications WHERE status = 'queued')")).scalar()
        if not waiting:
            return
        time.sleep(1)
    with engine.connect() as conn:
        detail = {table: conn.execute(text(f"SELECT status, count(*), min(next_attempt_at), max(attempts) "
                                           f"FROM {table} GROUP BY status")).all()
                  for table in ("wechat_inbound", "wechat_pushes", "applications")}
    pytest.fail(f"background work still waiting after {timeout_s:.0f} s: {waiting} rows: {detail}")


def _check(running: Cluster, standin: str, log: Log, kills: list[tuple[float, str, str]], job_id: str,
           began: float) -> dict[str, object]:
    engine = create_engine(running.database_url)
    figures: dict[str, object] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(turns.c.session_id, turns.c.role, turns.c.text, turns.c.trace, turns.c.id)
                            .where(turns.c.session_id.like("chaos-r%")).order_by(turns.c.id)).all()
        receipts = dict(conn.execute(text("SELECT session_id, count(*) FROM message_receipts "
                                          "WHERE session_id LIKE 'chaos-r%' GROUP BY session_id")).all())
        every_ticket = conn.execute(select(tickets.c.ticket_id, tickets.c.session_id, tickets.c.status)).all()
        ticket_rows = conn.execute(select(tickets.c.session_id, func.count()).where(
            tickets.c.session_id.like("chaos-r%")).group_by(tickets.c.session_id)).all()
        inbound = conn.execute(select(wechat_inbound.c.dedup_key, func.count())
                               .group_by(wechat_inbound.c.dedup_key)).all()
        in_doubt = dict(conn.execute(text("SELECT openid, count(*) FROM wechat_pushes WHERE status = 'unconfirmed' "
                                          "GROUP BY openid")).all())
        applications = conn.execute(text("SELECT status, count(*) FROM applications GROUP BY status")).all()
    by_session: dict[str, list] = defaultdict(list)
    for row in rows:
        by_session[row.session_id].append(row)

    # Every acknowledged message has exactly one reply, and each session's turns are in the order sent.
    sent_total = sum(len(v) for v in log.sent.values())
    missing, doubled, disordered = [], [], []
    for session, sent in log.sent.items():
        said = [r for r in by_session.get(session, []) if r.role == "resident"]
        replies = [r for r in by_session.get(session, []) if r.role == "assistant"
                   and (r.trace or {}).get("question_turn_id")]
        acked = [m for m, _ in sent if (session, m) in log.acknowledged]
        if len(said) < len(acked):
            missing.append(session)
        if len(replies) != len(said) or len(said) != receipts.get(session, 0) or len(said) > len(sent):
            doubled.append(session)
        texts = [mask_pii(t) for _, t in sent][: len(said)]  # turns keep ID and phone numbers masked
        if [r.text for r in said] != texts:
            disordered.append(session)
    figures.update(messages_sent=sent_total, acknowledged=len(log.acknowledged),
                   answered=sum(receipts.values()), lost=len(missing), duplicated=len(doubled),
                   out_of_order=len(disordered))
    assert not missing, f"acknowledged messages without a reply: {missing[:5]}"
    assert not doubled, f"messages handled twice: {doubled[:5]}"
    assert not disordered, f"turns out of the order sent: {disordered[:5]}"

    # Each WeChat MsgId: one stored message and one answer pushed, never two. A push whose worker
    # was killed mid-send is in doubt (unconfirmed): it is not sent again, so it may be missing.
    keys = Counter({key: n for key, n in inbound})
    acked_ids = {(openid, m) for openid, ids in log.wechat.items() for m in ids}
    stored = {key for key in keys if key.startswith("msg:o-chaos-")}
    pushes = httpx.get(f"{standin}/_admin/pushes", timeout=10).json()["pushes"]
    pushed = Counter(p["touser"] for p in pushes)
    assert all(n == 1 for n in keys.values()), "a WeChat message stored twice"
    assert {f"msg:{o}:{m}" for o, m in acked_ids} <= stored, "an acknowledged WeChat message was lost"
    per_user = Counter(key.split(":")[1] for key in stored)
    figures.update(wechat_pushes_unconfirmed=sum(in_doubt.values()))
    assert all(pushed[o] <= n for o, n in per_user.items()), f"pushed twice: {dict(pushed)} vs {dict(per_user)}"
    assert all(n - pushed[o] <= in_doubt.get(o, 0) for o, n in per_user.items()), \
        f"a push lost that was not in doubt: {dict(pushed)} vs {dict(per_user)}, in doubt {in_doubt}"
    stats = httpx.get(f"{standin}/_admin/stats", timeout=10).json()
    token_fetches = stats["token_fetches"]
    figures.update(wechat_send_requests=stats.get("send_attempts"))
    figures.update(wechat_callbacks_acked=len(acked_ids), wechat_messages_stored=len(stored), wechat_pushes=len(pushes),
                   wechat_token_fetches=token_fetches)
    assert token_fetches == 1, "more than one process refreshed the WeChat token"

    # Filings: each delivered once, none lost.
    sandbox = httpx.get(f"{_sandbox(running)}/_stats", timeout=10).json()
    statuses = dict(applications)
    filed = sum(statuses.values())
    figures.update(filings=filed, filings_in_backend=sandbox.get("applications"), filing_statuses=statuses)
    confirmed = [s for s, sent in log.sent.items() if sent[-1][1] == "确认" and (s, sent[-1][0]) in log.acknowledged]
    figures.update(filings_confirmed=len(confirmed))
    assert confirmed, "no filing was confirmed: the form script no longer matches the procedure"
    assert filed == len(confirmed) == sandbox.get("applications"), f"{filed} filings, {sandbox} in the backend"

    # Hand-offs: one ticket per request, none lost.
    opened = dict(ticket_rows)
    figures.update(handoffs_asked=len(log.handoffs), tickets=sum(opened.values()), worker_replies=log.worker_replies)
    assert all(a.startswith("handoff:T") for a in log.handoffs.values()), log.handoffs
    assert all(opened.get(s, 0) == 1 for s in log.handoffs), f"tickets per hand-off: {opened}; {every_ticket[:10]}"
    figures.update(worker_claims=log.claimed)
    assert log.worker_replies > 0, "the social worker claimed no ticket or could not reply"

    # 5xx only on connections to a killed replica: through HAProxy while it took the replica out
    # (≤ 10 s after each kill), directly (the WeChat callbacks) while the replica was down.
    taking_out = [(at, at + 10) for at, name, how in kills if name.startswith("replica") and how != "back"]
    down: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for at, name, how in kills:
        if how == "back" and down[name]:
            down[name][-1] = (down[name][-1][0], at)
        elif name.startswith("replica") and how != "back":
            down[name].append((at, float("inf")))

    def excused(t: float, where: str) -> bool:
        via = where.split()[0]
        windows = taking_out if via == "haproxy" else down.get(via, [])
        return any(start <= t <= end for start, end in windows)

    stray = [(round(t - began, 1), code, where) for t, code, where in log.server_errors if not excused(t, where)]
    figures.update(statuses=dict(log.statuses), server_errors=len(log.server_errors), stray_server_errors=stray[:10],
                   haproxy_took_the_killed_replica_out_s=round(log.taken_out_s, 1))
    assert not stray, f"5xx outside the kill windows: {stray[:10]}"

    # The uploaded document is answered on every replica.
    client = httpx.Client(timeout=30, headers={"X-API-Key": TEST_API_KEY})
    deadline = time.monotonic() + 60
    answers: dict[str, dict] = {}
    while time.monotonic() < deadline:
        answers = {name: client.post(f"{url}/api/v1/ask", json={"question": "长者食堂几点开放？"}).json()
                   for name, url in running.replica_urls.items()}
        if all("chaos-canteen" in {c["doc_id"] for c in a.get("citations", [])} for a in answers.values()):
            break
        time.sleep(1)
    generations = {name: httpx.get(f"{url}/readyz", timeout=5).json().get("generation")
                   for name, url in running.replica_urls.items()}
    figures.update(generations=generations)
    assert all("chaos-canteen" in {c["doc_id"] for c in a.get("citations", [])} for a in answers.values()), answers
    return figures


def _sandbox(running: Cluster) -> str:
    return f"http://127.0.0.1:{running.children['sandbox'].port}"


def _report(figures: dict[str, object], kills: list[tuple[float, str, str]], began: float) -> str:
    lines = ["# Chaos run (tests/integration/test_chaos.py)", "",
             f"{CHAOS_S:.0f} s; {RESIDENTS} web-chat residents, {WECHAT_USERS} WeChat users (each callback sent to "
             "two replicas at once), one social worker, one upload.", "", "| fault | at (s) |", "|---|---|"]
    lines += [f"| {how} {name} | {at - began:.1f} |" for at, name, how in kills]  # "back": ready again
    lines += ["", "| figure | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in figures.items()]
    return "\n".join(lines) + "\n"
