"""Latency of a policy answer from a warm server, over HTTP (POST /api/v1/ask).

Starts `linli serve` as a separate process pinned to 2 cores (as tests start servers), on the
shipped index (`make index`) with a throwaway database, waits for /healthz, warms it with a few
questions that are not measured, then asks every golden question once, one at a time, and prints
p50/p95/max overall and for answers and refusals. A question is asked once: a repeated question
would only measure a cache. Timings are reported, never asserted.

    .venv/bin/python -m bench.answer_latency [--limit N] [--cores 0,1] [--root CHECKOUT]

`--root` serves the code of another checkout (e.g. a clean clone of the previous commit) with
this checkout's index and embedding cache, for a before/after comparison on the same data.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from assistant.core.settings import PROJECT_ROOT, get_settings
from eval.harness import load_golden, percentile

WARM_UP = ("你好，低保怎么申请？", "How do I apply for a residence permit?", "医保断缴了怎么办")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(root: Path, port: int, cores: set[int], folder: Path) -> subprocess.Popen:
    settings = get_settings()
    env = dict(
        os.environ,
        LINLI_PRIVACY__DEVELOPMENT="true",
        LINLI_DATABASE_URL=f"sqlite:///{folder / 'bench.sqlite'}",
        LINLI_INDEX_DIR=str(settings.resolved_index_dir),
        LINLI_EMBEDDING_CACHE=str(settings.resolved_embedding_cache),
        # One client asks back to back: the per-client limit (still checked) must not answer 429.
        LINLI_LIMITS__REQUESTS_PER_CLIENT_PER_MINUTE="1000000",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the server writes to it until it stops
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    os.sched_setaffinity(process.pid, cores)
    return process


def _wait_ready(base: str, process: subprocess.Popen, folder: Path) -> float:
    started = time.perf_counter()
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).json().get("index_built"):
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.perf_counter() - started > 180:
            raise SystemExit(f"server did not start:\n{(folder / 'server.log').read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--cores", default="0,1", help="CPU cores the server is pinned to")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="the checkout whose code is served")
    args = parser.parse_args()
    cores = {int(c) for c in args.cores.split(",")}
    items = load_golden()[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = _start_server(args.root.resolve(), port, cores, folder)
        try:
            ready = _wait_ready(base, process, folder)
            times: dict[str, list[float]] = {"answered": [], "refused": []}
            with httpx.Client(base_url=base, timeout=60) as client:
                for question in WARM_UP:
                    client.post("/api/v1/ask", json={"question": question}).raise_for_status()
                for item in items:
                    started = time.perf_counter()
                    response = client.post("/api/v1/ask", json={"question": item["question"]})
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    times["refused" if response.json().get("refused") else "answered"].append(elapsed)
        finally:
            process.terminate()
            process.wait(timeout=15)
    every = times["answered"] + times["refused"]
    table = Table(title=f"policy answer latency over HTTP, warm server on cores {args.cores} "
                        f"({len(every)} golden questions; server ready in {ready:.1f} s; code: {args.root})")
    for column in ("", "n", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column, justify="right")
    for name, values in [*times.items(), ("all", every)]:
        table.add_row(name, str(len(values)), f"{percentile(values, 0.5) * 1000:.0f}",
                      f"{percentile(values, 0.95) * 1000:.0f}", f"{max(values, default=0) * 1000:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
