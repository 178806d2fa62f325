"""The analytics page's queries on 1 million turns: generates a synthetic history (conversations,
turns, feedback, tickets over 90 days) into a throwaway SQLite database, and into a throwaway
PostgreSQL database when one is reachable, then times each query of /admin/analytics over the
page's default 30 days and over all 90. Timings are reported, never asserted.

    .venv/bin/python -m bench.analytics [--turns 1000000] [--no-postgres]

PostgreSQL: LINLI_BENCH_POSTGRES_URL (default: the tests' postgresql+psycopg://root@127.0.0.1:5432/test);
the bench creates its own database there and drops it at the end. Rows go in with COPY on
PostgreSQL and one executemany per table on SQLite (synchronous off while loading).

The replies of finished days are counted once into analytics_daily_replies (migration 0009): by
the server in the background (`analytics.precount_days`, at start and hourly), else by the first
view that reads them. The background count and the first view after it are timed on their own;
the table's rows are the later views (the last day, "today", is always counted from the turns)."""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from rich.console import Console
from rich.table import Table

from assistant.analytics.queries import AnalyticsService, Period
from assistant.core.db import Databases
from assistant.core.settings import AnalyticsSettings

POSTGRES_URL = os.environ.get("LINLI_BENCH_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
DAYS = 90
TURNS_PER_CONVERSATION = 10  # five questions and their replies
CHANNELS = (("kiosk", 0.3), ("chat", 0.4), ("wechat", 0.25), ("web", 0.05))
CENTRES = ("centre-a", "centre-b", "centre-c", "centre-d")
OUTCOMES = (("answer", 0.62), ("clarify", 0.12), ("refusal", 0.08), ("handoff", 0.05), ("smalltalk", 0.1),
            ("form", 0.02), ("emergency", 0.01))
INTENTS = ("policy_question", "procedure_request", "dispute_mediation", "human_request", "complaint", "greeting",
           "thanks", "out_of_scope", "emergency", None)
# Questions Linli cannot answer, each asked in several wordings (the page groups them back).
MISSING_TOPICS = [f"{place}的{thing}怎么办理" for place in ("护照", "港澳通行证", "驾照", "宠物", "房产", "公积金",
                                                              "社保卡", "出生证明", "结婚登记", "营业执照")
                  for thing in ("手续", "材料", "费用", "进度", "地点", "时间", "网上预约", "加急", "补办", "变更")]
WORDINGS = ("{q}", "{q}？", "请问{q}", "{q}呢", "我想问一下{q}", "{q}吗")
REASONS = (None, "wrong", "not_my_question", "hard_to_understand", "outdated", "want_person")


# The engines this benchmark opens (one per database it loads), disposed before a database is dropped.
DATABASES = Databases()


def pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


@dataclass
class History:
    conversations: list[tuple[Any, ...]]
    turns: list[tuple[Any, ...]]
    feedback: list[tuple[Any, ...]]
    tickets: list[tuple[Any, ...]]


def generate(turn_count: int, start: datetime, seed: int = 7) -> History:
    """A deterministic synthetic history of `turn_count` turns (resident + assistant pairs)."""
    rng = random.Random(seed)
    history = History([], [], [], [])
    turn_id = 0
    for n in range(turn_count // TURNS_PER_CONVERSATION):
        channel, centre = pick(rng, CHANNELS), rng.choice(CENTRES)
        session_id = f"{channel}-bench-{n:07d}"
        at = start + timedelta(seconds=rng.uniform(0, DAYS * 86400 - 3600))
        history.conversations.append((session_id, channel, session_id, "zh", "{}", at, at, f"page:{session_id}",
                                      centre))
        for _ in range(TURNS_PER_CONVERSATION // 2):
            outcome = pick(rng, OUTCOMES)
            question = (rng.choice(WORDINGS).format(q=rng.choice(MISSING_TOPICS)) if outcome == "refusal"
                        else f"高龄津贴{rng.randint(1, 5000)}号问题")
            turn_id += 1
            history.turns.append((turn_id, session_id, "resident", question, None, None, at))
            # As the dialogue engine writes it: the reply names the question it answers.
            trace = {"intent": rng.choice(INTENTS), "confidence": round(rng.random(), 3), "rewritten_query": None,
                     "doc_ids": ["kmy-elderly-allowance"], "reply_type": outcome, "latency_ms": 120.5,
                     "question_turn_id": turn_id}
            turn_id += 1
            answered_at = at + timedelta(seconds=1)
            history.turns.append((turn_id, session_id, "assistant", f"（{outcome}）", outcome, json.dumps(trace),
                                  answered_at))
            if outcome in ("answer", "refusal") and rng.random() < 0.1:
                down = rng.random() < (0.7 if outcome == "refusal" else 0.2)
                history.feedback.append((turn_id, session_id, -1 if down else 1,
                                         rng.choice(REASONS) if down else None, None, channel, answered_at,
                                         answered_at))
            if outcome == "handoff":
                claimed = answered_at + timedelta(minutes=rng.expovariate(1 / 12)) if rng.random() < 0.9 else None
                history.tickets.append((f"T-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}", "human_request", "normal",
                                        "resolved" if claimed else "pending", centre, session_id, channel, session_id,
                                        "想找工作人员", "{}", answered_at, answered_at,
                                        answered_at + timedelta(minutes=30), claimed,
                                        claimed is None or claimed > answered_at + timedelta(minutes=30),
                                        rng.choice((None, 3, 4, 5, 5)) if claimed else None))
            at += timedelta(seconds=rng.uniform(20, 120))
    return history


COLUMNS = {
    "conversations": ("session_id", "channel", "user_id", "language", "state", "created_at", "updated_at", "owner",
                      "centre"),
    "turns": ("id", "session_id", "role", "text", "reply_type", "trace", "created_at"),
    "feedback": ("turn_id", "session_id", "rating", "reason", "comment", "channel", "created_at", "updated_at"),
    "tickets": ("ticket_id", "kind", "priority", "status", "centre", "session_id", "channel", "user_id", "summary",
                "form_data", "created_at", "updated_at", "due_at", "claimed_at", "breached", "rating"),
}


def _tables(history: History) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    yield "conversations", history.conversations
    yield "turns", history.turns
    yield "feedback", history.feedback
    yield "tickets", history.tickets


def load_sqlite(url: str, history: History) -> None:
    engine = DATABASES.engine(url)  # migrated to head: the indexes of migration 0009 are there while loading
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        for table, rows in _tables(history):
            columns = COLUMNS[table]
            # SQLAlchemy stores a DateTime on SQLite as this text; the same here.
            as_text = [tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in row)
                       for row in rows]
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                               as_text)
        raw.commit()
    finally:
        raw.close()


def load_postgres(url: str, history: History) -> None:
    engine = DATABASES.engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, rows in _tables(history):
            with cursor.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        # The sequence behind turns.id, past the ids written here.
        cursor.execute("SELECT setval(pg_get_serial_sequence('turns', 'id'), (SELECT max(id) FROM turns))")
        raw.commit()
        cursor.execute("ANALYZE")  # what autovacuum does soon after a bulk load
        raw.commit()
    finally:
        raw.close()


def time_queries(service: AnalyticsService, periods: dict[str, Period], repeats: int = 3) -> dict[tuple[str, str], Any]:
    """(query, period label) -> (median seconds, rows)."""
    timings: dict[tuple[str, str], Any] = {}
    for label, period in periods.items():
        for name, query in service.queries.items():
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                rows = len(query(period, None).rows)
                seconds.append(time.perf_counter() - started)
            timings[name, label] = (statistics.median(seconds), rows)
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            tables = service.report(period)
            seconds.append(time.perf_counter() - started)
        timings["whole page", label] = (statistics.median(seconds), sum(len(t.rows) for t in tables.values()))
    return timings


def with_postgres(action: Callable[[str], None]) -> str | None:
    """Runs `action` on a throwaway PostgreSQL database; the reason it could not, or None."""
    try:
        admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT",
                                         connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect: PostgreSQL is left out, with the reason
        return f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__})"
    name = f"linli_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        action(sqlalchemy.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
    finally:
        DATABASES.dispose()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    console = Console()
    last_day = date(2026, 3, 31)
    start = datetime.combine(last_day - timedelta(days=DAYS - 1), datetime.min.time())
    started = time.perf_counter()
    history = generate(args.turns, start)
    console.print(f"generated {len(history.turns):,} turns, {len(history.conversations):,} conversations, "
                  f"{len(history.feedback):,} ratings, {len(history.tickets):,} tickets "
                  f"in {time.perf_counter() - started:.1f} s")
    periods = {"30 days": Period.last_days(30, last_day), "90 days": Period.last_days(DAYS, last_day)}
    results: dict[str, dict[tuple[str, str], Any]] = {}

    # "Now" is noon of the last day: its replies are counted from the turns on every read, as today's are.
    noon = datetime.combine(last_day, datetime.min.time()) + timedelta(hours=12)
    first_views: dict[str, tuple[float, float]] = {}

    def run(backend: str, url: str, load: Callable[[str, History], None]) -> None:
        loading = time.perf_counter()
        load(url, history)
        console.print(f"{backend}: loaded in {time.perf_counter() - loading:.1f} s")
        service = AnalyticsService(DATABASES.engine(url), AnalyticsSettings(), now=lambda: noon)
        # What the server does in the background after it starts: count the 89 finished days.
        counting = time.perf_counter()
        service.count_finished_days(DAYS)
        viewing = time.perf_counter()
        service.report(periods["90 days"])
        first_views[backend] = (viewing - counting, time.perf_counter() - viewing)
        results[backend] = time_queries(service, periods)

    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite", f"sqlite:///{Path(tmp) / 'bench.sqlite'}", load_sqlite)
    skipped = "skipped (--no-postgres)" if args.no_postgres else with_postgres(
        lambda url: run("PostgreSQL", url, load_postgres))
    if skipped:
        console.print(f"PostgreSQL: {skipped}")

    table = Table(title=f"/admin/analytics queries on {len(history.turns):,} turns (median of 3, ms; rows returned)")
    table.add_column("query")
    for backend in results:
        for label in periods:
            table.add_column(f"{backend} {label}", justify="right")
    names = list(dict.fromkeys(name for name, _ in results["SQLite"]))
    for name in names:
        table.add_row(name, *[f"{results[b][name, label][0] * 1000:,.0f} ({results[b][name, label][1]})"
                              for b in results for label in periods])
    console.print(table)
    for backend, (counting, viewing) in first_views.items():
        console.print(f"{backend}: the server's background count of 89 finished days: {counting * 1000:,.0f} ms; "
                      f"the first view of the 90 days after it: {viewing * 1000:,.0f} ms")


if __name__ == "__main__":
    main()
