"""Resident messages per second through the cluster: 1 replica, then 3, behind HAProxy on PostgreSQL.

Starts the cluster with `assistant.cluster.Cluster` (the same launcher as `make cluster`: PostgreSQL,
Redis, HAProxy, `linli serve` replicas, `linli worker`s and the sandbox, on a throwaway database
`linli_bench_cluster` and state under var/bench-cluster), warms every replica, then drives N
concurrent web-chat residents through HAProxy for `--seconds` each: every resident opens a page
session (POST /api/v1/sessions), has a 5-message conversation (POST /api/v1/messages with its
X-Session-Token), and starts over. Prints replicas, clients, messages/s, p50, p95 and errors.

The load generator (one asyncio process) shares the machine's cores with the cluster, as a
centre's own test would; the table says how many cores there were. Per-address limits on new
sessions and requests are raised for the run (every resident comes from 127.0.0.1 here). Timings
are reported, never asserted.

    .venv/bin/python -m bench.cluster_throughput [--replicas 1,3] [--clients 20,100] [--seconds 30] [--unique]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import string
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from assistant.cluster import Cluster, ClusterConfig, drop_database
from assistant.core.settings import PROJECT_ROOT
from eval.harness import percentile

# Five-message conversations as residents write them: a greeting, a policy question and its
# follow-ups, thanks. Residents take them in turn, so replies are not all one cached answer.
CONVERSATIONS = (
    ("你好", "高龄津贴每个月发多少钱？", "需要带什么材料？", "在哪里办理？", "谢谢"),
    ("您好", "失业了怎么办理失业登记？", "要带身份证吗", "社区服务中心能办吗？", "好的，谢谢"),
    ("你好", "医保断缴了怎么办", "断缴三个月有影响吗", "怎么补缴", "明白了"),
    ("Hello", "How do I apply for a residence permit?", "What documents do I need?", "Where do I go?",
     "Thank you"),
)
LIMITS = {
    "LINLI_LIMITS__SESSIONS_PER_CLIENT_PER_MINUTE": "1000000",
    "LINLI_LIMITS__REQUESTS_PER_CLIENT_PER_MINUTE": "1000000",
}


@dataclass
class Run:
    replicas: int
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    # Messages answered within the window (those in flight at its end count for latency only).
    in_window: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    by_replica: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def error_text(self) -> str:
        total = sum(self.errors.values())
        kinds = ", ".join(f"{kind}×{n}" for kind, n in sorted(self.errors.items()))
        return f"{total} ({kinds})" if total else "0"


def _made_new(text: str, rng: random.Random) -> str:
    """The message with a tag of random letters (no digits: those would be read as ages or
    amounts), so that no cache in any process has seen it: every encoding and answer is fresh."""
    return f"{text} ({''.join(rng.choices(string.ascii_lowercase, k=6))})"


async def _resident(client: httpx.AsyncClient, number: int, deadline: float, run: Run, unique: bool) -> None:
    turn = number
    rng = random.Random(number)
    while time.perf_counter() < deadline:
        conversation = CONVERSATIONS[turn % len(CONVERSATIONS)]
        turn += 1
        try:
            session = await client.post("/api/v1/sessions", json={"channel": "chat"})
        except httpx.HTTPError as exc:
            run.error(type(exc).__name__)
            continue
        if session.status_code != 201:
            run.error(str(session.status_code))
            await asyncio.sleep(0.5)
            continue
        run.sessions += 1
        headers = {"X-Session-Token": session.json()["session_token"]}
        for text in conversation:
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            try:
                response = await client.post("/api/v1/messages", headers=headers,
                                             json={"text": _made_new(text, rng) if unique else text})
            except httpx.HTTPError as exc:
                run.error(type(exc).__name__)
                break
            if response.status_code != 200:
                run.error(str(response.status_code))
                break
            finished = time.perf_counter()
            run.latencies.append(finished - started)
            run.in_window += finished <= deadline
            replica = response.headers.get("X-Linli-Replica", "?")
            run.by_replica[replica] = run.by_replica.get(replica, 0) + 1


async def _drive(url: str, clients: int, seconds: float, run: Run, unique: bool = False) -> None:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        deadline = time.perf_counter() + seconds
        # Messages in flight at the deadline are waited for: their latency (or error) counts.
        await asyncio.gather(*(_resident(client, i, deadline, run, unique) for i in range(clients)))
        run.seconds = seconds


def _warm(cluster: Cluster) -> None:
    """Every replica answers each conversation once (models load on a replica's first answer)."""
    with httpx.Client(timeout=120) as client:
        for base in cluster.replica_urls.values():
            for conversation in CONVERSATIONS:
                token = client.post(f"{base}/api/v1/sessions", json={"channel": "chat"}).json()["session_token"]
                for text in conversation[:2]:
                    client.post(f"{base}/api/v1/messages", headers={"X-Session-Token": token},
                                json={"text": text}).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", default="1,3")
    parser.add_argument("--clients", default="20,100")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", default="linli_bench_cluster")
    parser.add_argument("--postgres-url", default=None, help="PostgreSQL server (default: the machine's, else own)")
    parser.add_argument("--check-path", default=None, help="readiness path (default /readyz, else /healthz)")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT / "var" / "bench-cluster")
    parser.add_argument("--unique", action="store_true",
                        help="every message new (a random tag): no remembered encoding or answer helps")
    args = parser.parse_args()
    console = Console()
    runs: list[Run] = []
    startup: dict[int, float] = {}
    server = None
    for replicas in (int(r) for r in args.replicas.split(",")):
        config = ClusterConfig(replicas=replicas, workers=args.workers, port=0, database=args.database,
                               postgres_url=args.postgres_url, fresh_database=True, redis_db=12, root=args.root,
                               check_path=args.check_path, extra_env=LIMITS)
        started = time.perf_counter()
        with Cluster(config, echo=lambda message: console.print(f"[dim]{message}[/dim]")) as cluster:
            startup[replicas] = time.perf_counter() - started
            server = cluster.database_url.rsplit("/", 1)[0]
            _warm(cluster)
            for clients in (int(c) for c in args.clients.split(",")):
                run = Run(replicas, clients)
                console.print(f"{replicas} replica(s), {clients} residents, {args.seconds:.0f} s …")
                asyncio.run(_drive(cluster.url, clients, args.seconds, run, args.unique))
                runs.append(run)
                console.print(f"  {len(run.latencies)} messages, errors {run.error_text()}, "
                              f"by replica {run.by_replica}")
    if server is not None:
        drop_database(server, args.database)

    table = Table(title=f"resident messages{' (every one new)' if args.unique else ''} through HAProxy on "
                        f"PostgreSQL, {args.workers} workers, "
                        f"{args.seconds:.0f} s per row, {os.cpu_count()} cores shared with the load generator "
                        f"(cluster start to URL: " + ", ".join(f"{r} replica(s) {s:.0f} s" for r, s in startup.items())
                        + ")")
    for column in ("replicas", "clients", "messages/s", "p50 ms", "p95 ms", "errors", "sessions"):
        table.add_column(column, justify="right")
    for run in runs:
        table.add_row(str(run.replicas), str(run.clients), f"{run.in_window / run.seconds:.1f}",
                      f"{percentile(run.latencies, 0.5) * 1000:.0f}", f"{percentile(run.latencies, 0.95) * 1000:.0f}",
                      run.error_text(), str(run.sessions))
    console.print(table)


if __name__ == "__main__":
    main()
