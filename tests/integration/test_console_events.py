"""The console's live queue over a real `linli serve`, on SQLite and PostgreSQL: a logged-in
console's event stream says `mode` first, then `queue` with the ticket soon after a ticket is
opened (on PostgreSQL also when another process opens it); an unauthenticated stream is refused;
a notifier that cannot listen tells the page to poll."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from assistant.console.routes import FALLBACK_POLL_S, _queue_stream
from assistant.escalation.auth import UserStore
from assistant.escalation.notifier import PostgresQueueNotifier
from assistant.escalation.service import Actor, SqlEscalationService
from tests.conftest import SHARED_CACHE, free_port
from tests.integration.test_reliability import _start_server


@pytest.fixture
def server(databases, small_index_dir, tmp_path, database_url) -> Iterator[tuple[str, str, subprocess.Popen]]:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    users = UserStore(databases.engine(database_url))
    if "wang" not in {actor.username for actor in users.list()}:  # the PostgreSQL database lives all session
        users.add("wang", "wang-password-2024", role="worker", centre="default", display_name="王社工")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", LINLI_DATABASE_URL=database_url, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    port = free_port()
    process = _start_server(env, port)
    yield f"http://127.0.0.1:{port}", database_url, process
    process.terminate()
    process.wait(timeout=20)


class EventStream:
    """A console's `/console/events`, read by a thread: (event, data) pairs on a queue."""

    def __init__(self, client: httpx.Client) -> None:
        self.events: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.status: int | None = None
        self._response_ready = threading.Event()
        self._client = client
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._response_ready.wait(30), "no response from /console/events"

    def _read(self) -> None:
        try:
            with self._client.stream("GET", "/console/events") as response:
                self.status = response.status_code
                self._response_ready.set()
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.put((event, json.loads(line[6:])))
                        event = "message"
        except httpx.HTTPError:
            pass  # the client closed the stream
        finally:
            self._response_ready.set()

    def ended(self, timeout: float) -> bool:
        """Whether the server ended the stream within `timeout` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def next(self, kind: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event == kind:
                return data
        raise AssertionError(f"no {kind!r} event within {timeout} s")


def _log_in(console: httpx.Client, base: str) -> None:
    """Logs in on the console page (the cookie), as a worker's browser does."""
    response = console.post("/console/login", data={"username": "wang", "password": "wang-password-2024"},
                            headers={"Origin": base}, follow_redirects=False)
    assert response.status_code == 303 and "linli_session" in console.cookies


def test_a_logged_in_console_hears_a_new_ticket_and_a_stranger_is_refused(databases, vault, server):
    base, url, process = server
    for headers in ({}, {"Cookie": "linli_session=forged"}, {"Authorization": "Basic d2FuZzp4"}):
        refused = httpx.get(f"{base}/console/events", headers=headers, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"] == "not_authenticated"
    with httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=60)) as console, \
            httpx.Client(base_url=base, timeout=30) as api:
        _log_in(console, base)
        token = api.post("/api/v1/auth/token", json={"username": "wang", "password": "wang-password-2024"})
        worker = {"Authorization": f"Bearer {token.json()['token']}"}
        stream = EventStream(console)
        assert stream.status == 200
        assert stream.next("mode", 10)["mode"] == "live"

        started = time.monotonic()
        opened = api.post("/api/v1/tickets", headers=worker, json={
            "kind": "human_request", "session_id": "events-1", "summary": "请工作人员联系我"})
        assert opened.status_code == 201, opened.text
        event = stream.next("queue", 5)
        assert opened.json()["ticket_id"] in event["tickets"]
        assert time.monotonic() - started < 2.0
        # The rows the page then fetches show it.
        assert opened.json()["ticket_id"] in console.get("/console/queue-rows").text

        if url.startswith("postgresql"):
            # Another replica (this process) commits: the server's listener hears it through NOTIFY.
            desk = SqlEscalationService(databases.engine(url), vault)
            ticket = desk.open_ticket(kind="complaint", priority="high", session_id="events-2", channel="web",
                                      user_id="u2", summary="另一个副本开的工单", centre="default")
            assert ticket.ticket_id in stream.next("queue", 5)["tickets"]
            desk.claim(ticket.ticket_id, Actor("wang", "worker", "default"))
            assert ticket.ticket_id in stream.next("queue", 5)["tickets"]

        # A stopping replica ends its open streams at once (the page reconnects elsewhere), not
        # after the whole grace period (api.shutdown_grace_s, 10 s): drain 2 s + a 1 s check.
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert stream.ended(10)
        assert time.monotonic() - started < 5, time.monotonic() - started
        assert process.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once stopped


def test_a_notifier_that_cannot_listen_tells_the_page_to_poll():
    notifier = PostgresQueueNotifier("postgresql+psycopg://root@127.0.0.1:1/nowhere", retry_first_s=0.2)

    async def first_events() -> list[str]:
        stream = _queue_stream(notifier, Actor("wang", "worker", "default"))
        try:
            return [await anext(stream), await anext(stream)]
        finally:
            await stream.aclose()

    try:
        retry, mode = asyncio.run(first_events())
    finally:
        notifier.close()
    assert retry.startswith("retry:")
    assert mode == f'event: mode\ndata: {{"mode": "poll", "poll_s": {FALLBACK_POLL_S}}}\n\n'
    assert notifier.subscribers == 0  # the closed stream let go of its subscription
