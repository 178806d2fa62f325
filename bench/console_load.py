"""Database load of N open worker consoles on a real `linli serve` over PostgreSQL, before and after
the live queue: "before", every console polls `/console/queue-rows` every second (the page's old
behaviour, one full-queue query per console per second); "after", every console holds one
`/console/events` stream and fetches its rows only when told the queue changed (LISTEN/NOTIFY).
An "idle" round (no consoles) shows what the server does alone (the SLA sweep).

A ticket is opened through the API every few seconds during each round; a console has "seen" it
once rows it fetched contain it. Load is read from `pg_stat_database` of a throw-away database
(transactions and rows read), CPU from /proc (the server process; all postgres processes).

    .venv/bin/python -m bench.console_load                       # 500 consoles, 30 s per round
    .venv/bin/python -m bench.console_load --consoles 100 --seconds 15 --rounds after
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy
import sqlalchemy.exc

ADMIN_URL = os.environ.get("LINLI_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
PASSWORD = "bench-console-password-2024"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    name: str
    seconds: float = 0.0
    row_fetches: int = 0
    failures: int = 0
    events: int = 0
    opened: dict[str, float] = field(default_factory=dict)  # ticket id -> when its opening returned
    seen: list[float] = field(default_factory=list)  # seconds from opening to rows showing it, per console
    db: dict[str, float] = field(default_factory=dict)
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def postgres_cpu_seconds() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if (entry / "comm").read_text().startswith("postgres"):
                    total += cpu_seconds(int(entry.name))
    return total


def db_stats(engine: sqlalchemy.Engine, name: str) -> dict[str, float]:
    for attempt in range(10):  # a shared server may be out of connections for a moment
        try:
            return _db_stats(engine, name)
        except sqlalchemy.exc.OperationalError:
            if attempt == 9:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _db_stats(engine: sqlalchemy.Engine, name: str) -> dict[str, float]:
    with engine.connect() as conn:
        row = conn.execute(sqlalchemy.text(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = :n"),
            {"n": name}).one()
        # Rows read from Linli's own tables (the database-wide counts include the catalogs that every
        # new pooled connection reads).
        table_rows = conn.execute(sqlalchemy.text(
            "SELECT coalesce(sum(seq_tup_read), 0) + coalesce(sum(idx_tup_fetch), 0) FROM pg_stat_user_tables"
        )).scalar_one()
    return {**row._mapping, "table_rows": float(table_rows)}


def start_server(env: dict[str, str], port: int, root: Path | None) -> subprocess.Popen:
    """`linli serve`, of this checkout or of the source tree at `root` (e.g. the last release)."""
    if root is not None:
        env = {**env, "PYTHONPATH": str(root)}
    process = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, cwd=root, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return process
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("linli serve did not start") from None
            time.sleep(0.3)


def open_tickets(base: str, token: str, every_s: float, stop: threading.Event, result: Round) -> None:
    """One new ticket every `every_s` seconds while the round runs (a thread of its own, so the
    consoles' event loop never delays it)."""
    n = 0
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as api:
        while not stop.is_set():
            n += 1
            response = api.post("/api/v1/tickets", json={
                "kind": "human_request", "session_id": f"bench-{result.name}-{n}-{uuid.uuid4().hex[:6]}",
                "summary": "压测：请工作人员联系我"})
            response.raise_for_status()
            result.opened[response.json()["ticket_id"]] = time.monotonic()
            stop.wait(every_s)


class Connection:
    """One keep-alive HTTP/1.1 connection, hand-rolled: httpx spends ~1 ms of CPU a request, and
    500 consoles a second of that would measure the bench's client instead of the server."""

    def __init__(self, host: str, port: int, cookie: str) -> None:
        self.host, self.port = host, port
        self.head = f"Host: {host}:{port}\r\nCookie: linli_session={cookie}\r\nAccept: */*\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, path: str) -> asyncio.StreamReader:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}\r\n".encode())
        await self.writer.drain()
        return self.reader

    async def status_and_headers(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        status = int((await reader.readline()).split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def get(self, path: str) -> tuple[int, str]:
        try:
            reader = await self.send(path)
            status, headers = await self.status_and_headers(reader)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            self.close()
            raise
        return status, body.decode()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Console:
    """One open console page: the tickets its rows showed, and when each first appeared."""

    def __init__(self, host: str, port: int, cookie: str, result: Round) -> None:
        self.rows = Connection(host, port, cookie)
        self.events = Connection(host, port, cookie)
        self.result = result
        self.shown: set[str] = set()

    async def fetch_rows(self) -> None:
        try:
            status, text = await self.rows.get("/console/queue-rows")
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            self.result.failures += 1
            return
        self.result.row_fetches += 1
        if status != 200:
            self.result.failures += 1
            return
        now = time.monotonic()
        for ticket_id, opened_at in list(self.result.opened.items()):
            if ticket_id not in self.shown and ticket_id in text:
                self.shown.add(ticket_id)
                self.result.seen.append(now - opened_at)

    async def poll(self, every_s: float, stop: asyncio.Event) -> None:
        """The old page: the rows every second."""
        while not stop.is_set():
            started = time.monotonic()
            await self.fetch_rows()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, every_s - (time.monotonic() - started)))

    async def listen(self, connected: asyncio.Event, stop: asyncio.Event) -> None:
        """The new page: waits for `queue` events, fetches the rows on each (and on `mode`). The
        stream is chunked; its event lines arrive whole, each event in one chunk."""
        try:
            reader = await self.events.send("/console/events")
            status, _ = await self.events.status_and_headers(reader)
            if status != 200:
                self.result.failures += 1
                return
            event = ""
            while not stop.is_set():
                line = (await reader.readline()).decode().strip()
                if not line and reader.at_eof():
                    raise ConnectionError("stream closed")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "mode":
                        connected.set()
                        if json.loads(line[6:]).get("mode") != "live":
                            self.result.failures += 1
                    elif event == "queue" and not stop.is_set():
                        self.result.events += 1
                        await self.fetch_rows()
        except (OSError, ConnectionError, ValueError, IndexError):
            if not stop.is_set():
                self.result.failures += 1

    def close(self) -> None:
        self.rows.close()
        self.events.close()


async def run_round(name: str, args: argparse.Namespace, base: str, cookies: list[str], token: str,
                    engine: sqlalchemy.Engine, database: str, server_pid: int) -> Round:
    result = Round(name)
    host, port = base.removeprefix("http://").split(":")
    stop = asyncio.Event()
    consoles = [Console(host, int(port), cookie, result) for cookie in cookies]
    tasks: list[asyncio.Task] = []
    if name == "after":
        connected = [asyncio.Event() for _ in consoles]
        for console, ready in zip(consoles, connected, strict=True):
            tasks.append(asyncio.create_task(console.listen(ready, stop)))
            await asyncio.sleep(2.0 / len(consoles))  # 500 pages opened over ~2 s
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in connected)), 120)
        print(f"  {len(consoles)} event streams open", flush=True)
    await asyncio.sleep(12)  # let every backend flush its statistics (PostgreSQL does so within ~10 s idle)
    result.failures = result.row_fetches = 0
    before_db, before_cpu, before_pg = db_stats(engine, database), cpu_seconds(server_pid), postgres_cpu_seconds()
    started = time.monotonic()
    if name == "before":
        for console in consoles:
            tasks.append(asyncio.create_task(console.poll(args.poll_s, stop)))
            await asyncio.sleep(args.poll_s / len(consoles))  # spread over the first second, as pages are
    # The last ticket is opened a few seconds before the end, so every console can still see it.
    stop_opening = threading.Event()
    opener = threading.Thread(target=open_tickets, args=(base, token, args.change_every, stop_opening, result))
    opener.start()
    await asyncio.sleep(max(0.0, args.seconds - 3.0 - (time.monotonic() - started)))
    stop_opening.set()
    await asyncio.to_thread(opener.join)
    await asyncio.sleep(max(0.0, args.seconds - (time.monotonic() - started)))
    stop.set()
    result.seconds = time.monotonic() - started
    result.server_cpu = cpu_seconds(server_pid) - before_cpu
    result.postgres_cpu = postgres_cpu_seconds() - before_pg
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for console in consoles:
        console.close()
    await asyncio.sleep(12)
    after_db = db_stats(engine, database)
    result.db = {k: after_db[k] - before_db[k] for k in after_db}
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(rounds: list[Round], consoles: int) -> None:
    print()
    print(f"{'round':<8} {'consoles':>8} {'rows GET/s':>10} {'db xact/s':>10} {'rows read/s':>12} {'table rows/s':>12} "
          f"{'server CPU':>10} {'postgres CPU':>12} {'seen p50':>9} {'seen p95':>9} {'seen':>12} {'errors':>6}")
    for r in rounds:
        n = 0 if r.name == "idle" else consoles
        expected = len(r.opened) * n
        rows_read = r.db["tup_returned"] + r.db["tup_fetched"]
        seen = f"{len(r.seen)}/{expected}" if n else "-"
        p50 = f"{percentile(r.seen, 50) * 1000:.0f} ms" if r.seen else "-"
        p95 = f"{percentile(r.seen, 95) * 1000:.0f} ms" if r.seen else "-"
        print(f"{r.name:<8} {n:>8} {r.row_fetches / r.seconds:>10.1f} {r.db['xact_commit'] / r.seconds:>10.1f} "
              f"{rows_read / r.seconds:>12.0f} {r.db['table_rows'] / r.seconds:>12.0f} "
              f"{100 * r.server_cpu / r.seconds:>9.0f}% "
              f"{100 * r.postgres_cpu / r.seconds:>11.0f}% {p50:>9} {p95:>9} {seen:>12} {r.failures:>6}")
    print("\nrows GET/s: /console/queue-rows fetched by the consoles; db xact/s and rows read/s: pg_stat_database "
          "(xact_commit; tup_returned + tup_fetched) of the bench database; table rows/s: pg_stat_user_tables "
          "(seq_tup_read + idx_tup_fetch, Linli's tables only); CPU: % of one core; seen: seconds from "
          "a ticket's opening (API returned) to a console's rows showing it, over every console and ticket.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consoles", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--change-every", type=float, default=3.0, help="seconds between ticket changes")
    parser.add_argument("--poll-s", type=float, default=1.0, help="the old page's poll interval")
    parser.add_argument("--open-tickets", type=int, default=40, help="tickets already in the queue")
    parser.add_argument("--rounds", default="idle,before,after")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--before-root", type=Path, default=None,
                        help="serve the 'before' round from this source tree (the code before the live queue: "
                             "mkdir /tmp/linli-head && git archive HEAD | tar -x -C /tmp/linli-head)")
    args = parser.parse_args()

    database = f"linli_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
    url = sqlalchemy.make_url(args.admin_url).set(database=database).render_as_string(hide_password=False)
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
            env = dict(os.environ, LINLI_DATABASE_URL=url, LINLI_DATA_DIR=str(Path(tmp) / "var"),
                       LINLI_PRIVACY__DEVELOPMENT="true", LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1",
                       TRANSFORMERS_OFFLINE="1", LINLI_BENCH_PASSWORD=PASSWORD)
            subprocess.run([sys.executable, "-m", "assistant.cli", "users", "add", "bench-worker", "--centre",
                            "default", "--password-env", "LINLI_BENCH_PASSWORD"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            os.environ["LINLI_PRIVACY__DEVELOPMENT"] = "true"
            from assistant.core.db import Databases  # noqa: PLC0415 - after the environment is set
            from assistant.core.vault import Vault  # noqa: PLC0415 - as above
            from assistant.escalation.auth import UserStore  # noqa: PLC0415 - as above
            from assistant.escalation.service import SqlEscalationService  # noqa: PLC0415 - as above

            databases = Databases()  # this benchmark's engines
            users = UserStore(databases.engine(url))
            worker = next(a for a in users.list() if a.username == "bench-worker")
            cookies = [users.issue_token(worker) for _ in range(args.consoles)]  # one login per open page
            token = users.issue_token(worker)
            desk = SqlEscalationService(databases.engine(url), Vault.development())  # the server's key (development)
            for i in range(args.open_tickets):
                desk.open_ticket(kind="human_request", priority=("urgent", "high", "normal")[i % 3],
                                 session_id=f"seed-{i}", channel="web", user_id="u", summary="压测：已在队列里的工单")
            # The bench database (its tables' statistics), one connection held for the whole run.
            engine = sqlalchemy.create_engine(url, pool_size=1, pool_pre_ping=True)
            print(f"database {database}, {args.consoles} consoles, {args.seconds:.0f} s per round, a ticket "
                  f"opened every {args.change_every:.0f} s", flush=True)
            rounds = []
            for name in args.rounds.split(","):
                root = args.before_root if name == "before" else None
                port = free_port()
                server = start_server(env, port, root)
                print(f"round {name}: linli serve pid {server.pid} from {root or 'this checkout'}", flush=True)
                rounds.append(asyncio.run(run_round(name, args, f"http://127.0.0.1:{port}",
                                                    cookies if name != "idle" else [], token, engine, database,
                                                    server.pid)))
                server.terminate()
                server.wait(timeout=30)
                server = None
            engine.dispose()
            report(rounds, args.consoles)
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
