"""The WeChat callback under load: N concurrent connections on loopback post signed text
callbacks (mixed questions, and WeChat's retries of the same MsgId) to a real `linli serve`
(acknowledging only; `process_in_server` off) while one `linli worker` answers and pushes to the
stand-in WeChat server (tests/wechat_standin.py). Reports acks/s, p50/p99 ack latency, messages
answered, duplicates pushed and peak RSS of the server and the worker, on SQLite and (when
reachable) PostgreSQL. A small index is built in a temporary folder.

    python -m bench.wechat_callback [--connections 200] [--messages 300] [--retry-share 0.3] [--rate 0]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy

from assistant.core.settings import Settings
from assistant.knowledge import KnowledgeBase
from tests.conftest import POSTGRES_ADMIN_URL, SHARED_CACHE, free_port, write_doc
from tests.integration.conftest import ALLOWANCE, TABLE, UNEMPLOYMENT

TOKEN, APP_ID, SECRET = "bench-token", "wxbench", "bench-secret"
QUESTIONS = ["我奶奶今年92了，每个月能领多少高龄补贴？", "失业了去哪登记，要带什么？", "你好", "75岁的高龄津贴是多少",
             "失业登记在哪办？", "谢谢"]


def build_index(root: Path) -> None:
    corpus = root / "corpus"
    corpus.mkdir()
    path = write_doc(corpus, "allowance", ALLOWANCE, title="克拉玛依市高龄津贴发放标准", category="elderly_care",
                     region="karamay")
    path.write_text(path.read_text(encoding="utf-8").replace("language: zh\n", "language: zh\n" + TABLE + "\n", 1),
                    encoding="utf-8")
    write_doc(corpus, "unemployment", UNEMPLOYMENT, title="失业登记", category="employment")
    KnowledgeBase(Settings(data_dir=root / "var", embedding_cache=SHARED_CACHE, corpus_dirs=[corpus],
                           law_corpus=None)).build()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{url} did not start") from None
            time.sleep(0.3)


def signed(xml: str) -> tuple[dict[str, str], bytes]:
    ts, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    signature = hashlib.sha1("".join(sorted([TOKEN, ts, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": ts, "nonce": nonce}, xml.encode()


WECHAT_TIMEOUT_S = 5.0  # WeChat waits this long for an acknowledgement, then sends the message again
WECHAT_RETRIES = 3


async def fire(base: str, connections: int, messages: int, retry_share: float,
               rate: float) -> tuple[list[float], int, int, int]:
    """Post every message the way WeChat does: a message not acknowledged within 5 s (or refused)
    is sent again, up to three times; some messages are also resent although acknowledged (the
    duplicates WeChat produces when an ack is lost on the way). With `rate` > 0 messages arrive at
    that many posts per second (open loop, at most `connections` in flight); with 0 every connection
    posts as fast as it is answered (closed loop). Returns ack latencies, failed attempts, posts,
    and messages never acknowledged."""
    rng = random.Random(7)
    posts: list[tuple[int, str, str]] = []
    for number in range(messages):
        openid = f"o-bench-{number % 150}"
        msg_id = 60_000_000 + number
        text = rng.choice(QUESTIONS)
        posts += [(msg_id, openid, text)] * (1 + (rng.randint(1, 2) if rng.random() < retry_share else 0))
    rng.shuffle(posts)
    latencies: list[float] = []
    failures = 0
    unacknowledged = 0
    in_flight = asyncio.Semaphore(connections)

    async def deliver(client: httpx.AsyncClient, msg_id: int, openid: str, text: str) -> None:
        nonlocal failures, unacknowledged
        async with in_flight:
            for _attempt in range(1 + WECHAT_RETRIES):
                xml = (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
                       f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]>"
                       f"</MsgType><Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>")
                query, body = signed(xml)
                started = time.perf_counter()
                try:
                    # WeChat's 5 s is for the whole exchange, not each read or write.
                    response = await asyncio.wait_for(client.post("/wechat/callback", params=query, content=body),
                                                      WECHAT_TIMEOUT_S)
                    ok = response.status_code == 200 and response.text == "success"
                except (httpx.HTTPError, TimeoutError):
                    ok = False
                latencies.append(time.perf_counter() - started)
                if ok:
                    return
                failures += 1
            unacknowledged += 1

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:
        tasks = []
        start = time.perf_counter()
        for number, post in enumerate(posts):
            if rate > 0:
                await asyncio.sleep(max(0.0, start + number / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(deliver(client, *post)))
        await asyncio.gather(*tasks)
    return latencies, failures, len(posts), unacknowledged


def run(label: str, database_url: str, args: argparse.Namespace, index_root: Path, work: Path) -> None:
    standin_port, port = free_port(), free_port()
    env = dict(os.environ, LINLI_DATA_DIR=str(work), LINLI_INDEX_DIR=str(index_root / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{index_root / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", LINLI_PRIVACY__DEVELOPMENT="true",
               LINLI_DATABASE_URL=database_url, LINLI_WECHAT__TOKEN=TOKEN, LINLI_WECHAT__APP_ID=APP_ID,
               LINLI_WECHAT__APP_SECRET=SECRET, LINLI_WECHAT__API_BASE=f"http://127.0.0.1:{standin_port}",
               LINLI_WECHAT__PROCESS_IN_SERVER="false", LINLI_WECHAT__POLL_INTERVAL_S="0.05")
    standin = subprocess.Popen([sys.executable, "-m", "tests.wechat_standin", "--port", str(standin_port),
                                "--app-id", APP_ID, "--secret", SECRET], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    server = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "assistant.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{standin_port}/healthz", standin)
        wait_http(f"http://127.0.0.1:{port}/healthz", server)
        started = time.perf_counter()
        latencies, failures, posted, lost = asyncio.run(fire(f"http://127.0.0.1:{port}", args.connections,
                                                             args.messages, args.retry_share, args.rate))
        elapsed = time.perf_counter() - started
        deadline = time.monotonic() + args.answer_timeout
        pushes: list[dict] = []
        while time.monotonic() < deadline:
            pushes = httpx.get(f"http://127.0.0.1:{standin_port}/_admin/pushes").json()["pushes"]
            if len(pushes) >= args.messages:
                time.sleep(2)  # anything more would be a duplicate
                pushes = httpx.get(f"http://127.0.0.1:{standin_port}/_admin/pushes").json()["pushes"]
                break
            time.sleep(0.5)
        answered_after = time.perf_counter() - started
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        # Each bench question's answer fits one WeChat message: more pushes than messages are duplicates.
        pace = f"{args.rate:g} posts/s offered" if args.rate > 0 else "closed loop"
        slow = sum(latency > WECHAT_TIMEOUT_S for latency in latencies)
        print(f"[{label}] {posted} posts ({args.messages} messages + {posted - args.messages} resent), {pace}, "
              f"{args.connections} connections, {elapsed:.1f} s: {len(latencies) / elapsed:.0f} acks/s, "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1] * 1000:.0f} ms; attempts over 5 s or "
              f"refused {failures} (slow {slow}), messages never acknowledged {lost}")
        print(f"[{label}] answered {min(len(pushes), args.messages)}/{args.messages} "
              f"(last push {answered_after:.1f} s after the start), duplicates pushed "
              f"{max(0, len(pushes) - args.messages)}; peak RSS server {peak_rss_mb(server.pid):.0f} MB, "
              f"worker {peak_rss_mb(worker.pid):.0f} MB")
    finally:
        for process in (server, worker, standin):
            process.terminate()
        for process in (server, worker, standin):
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--retry-share", type=float, default=0.3)
    parser.add_argument("--answer-timeout", type=float, default=300)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="posts per second offered, resends included (0: each connection posts when answered)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "index").mkdir()
        build_index(root / "index")
        (root / "sqlite").mkdir()
        run("sqlite", f"sqlite:///{root / 'sqlite' / 'linli.sqlite'}", args, root / "index", root / "sqlite")
        try:
            admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT",
                                             connect_args={"connect_timeout": 3})
            name = f"linli_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # noqa: BLE001 - no PostgreSQL: say so and stop
            print(f"[postgresql] skipped: not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__})")
            return
        try:
            (root / "pg").mkdir()
            url = sqlalchemy.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(
                hide_password=False)
            run("postgresql", url, args, root / "index", root / "pg")
        finally:
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
