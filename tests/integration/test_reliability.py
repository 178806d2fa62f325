"""SIGKILL in the middle of ticket creation loses no acknowledged ticket: a real server
process takes concurrent ticket submissions and is killed with -9 while they are in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx

from assistant.escalation.auth import UserStore
from assistant.escalation.service import SYSTEM, SqlEscalationService
from tests.conftest import ENV_API_KEYS, SHARED_CACHE, free_port


def _start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    # Resident endpoints need a credential: the tests speak as the integration client `tests`.
    env = {"LINLI_API__KEYS": ENV_API_KEYS, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return process
        except httpx.TransportError:
            assert process.poll() is None, "server died on start"
            assert time.monotonic() < deadline, "server did not start within 90 s"
            time.sleep(0.3)


def test_sigkill_during_ticket_creation_loses_no_acknowledged_ticket(databases, vault, small_index_dir, tmp_path):
    data_dir = tmp_path / "var"
    url = f"sqlite:///{data_dir / 'linli.sqlite'}"
    data_dir.mkdir()
    UserStore(databases.engine(url)).add("wang", "wang-password-2024", role="worker", centre="default")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    port = free_port()
    server = _start_server(env, port)
    base = f"http://127.0.0.1:{port}"
    token = httpx.post(f"{base}/api/v1/auth/token",
                       json={"username": "wang", "password": "wang-password-2024"}).json()["token"]

    acknowledged: list[str] = []
    failed_in_flight = 0
    lock = threading.Lock()
    stop = threading.Event()

    def submit() -> None:
        nonlocal failed_in_flight
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            while not stop.is_set():
                key = uuid.uuid4().hex
                try:
                    response = client.post("/api/v1/tickets", headers={"Idempotency-Key": key}, json={
                        "kind": "human_request", "session_id": f"kill-{key[:8]}", "summary": "请工作人员联系我"})
                except httpx.HTTPError:
                    with lock:
                        failed_in_flight += 1
                    return
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(response.json()["ticket_id"])

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)
    server.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=15)

    assert len(acknowledged) >= 40, "the server acknowledged too few tickets before the kill"
    desk = SqlEscalationService(databases.engine(url), vault)
    missing = [ticket_id for ticket_id in acknowledged if desk.get(ticket_id) is None]
    stored = desk.list(SYSTEM, limit=100_000)
    print(f"\nkill -9: {len(acknowledged)} tickets acknowledged, {len(missing)} missing after the kill, "
          f"{len(stored)} stored, {failed_in_flight} requests cut off in flight")
    assert missing == []
    assert all(desk.events(t)[0]["action"] == "create" for t in acknowledged[:10])

    # The database is consistent and a restarted server serves the same queue.
    restarted = _start_server(env, port)
    try:
        listed = httpx.get(f"{base}/api/v1/tickets", headers={"Authorization": f"Bearer {token}"}).json()["tickets"]
        assert set(acknowledged) <= {t["ticket_id"] for t in listed}
    finally:
        restarted.terminate()
        restarted.wait(timeout=20)
