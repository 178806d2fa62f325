"""What one resident message costs the database, on PostgreSQL: SQL statements, transactions and
connection checkouts per message, by table and by kind (the issue's "profile one": rate limits,
session binding, receipts, state load/save, turns and traces), and where the time of a message
goes (database vs the rest).

The app runs in this process (FastAPI's TestClient: the same middleware, routes and services as
`linli serve`) with its conversations in a throwaway PostgreSQL database and the shipped index;
a page session is opened, then a 5-message conversation is sent `--conversations` times. Statements
are counted with SQLAlchemy's engine events on every engine the app makes. Timings are reported,
never asserted.

    .venv/bin/python -m bench.message_cost [--conversations 10] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.engine import Engine

from assistant.api import create_app
from assistant.core.settings import get_settings
from assistant.knowledge import KnowledgeBase
from bench.cluster_throughput import CONVERSATIONS

TABLE_OF = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?([a-z_]+)", re.IGNORECASE)


class Meter:
    """Counts what the engines do while `armed`."""

    def __init__(self) -> None:
        self.armed = False
        self.statements: Counter[str] = Counter()
        self.transactions: Counter[str] = Counter()
        self.checkouts = 0
        self.seconds = 0.0
        self._started: dict[int, float] = {}

    def before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if self.armed:
            self._started[id(cursor)] = time.perf_counter()
            verb = statement.lstrip().split(None, 1)[0].upper()
            tables = TABLE_OF.findall(statement)
            where = conn.engine.dialect.name
            what = tables[0] if tables else " ".join(statement.split())[:48]
            self.statements[f"{where}: {verb} {what}" if tables else f"{where}: {what}"] += 1

    def after(self, conn: Any, cursor: Any, *_: Any) -> None:
        started = self._started.pop(id(cursor), None)
        if started is not None:
            self.seconds += time.perf_counter() - started

    def begin(self, conn: Any) -> None:
        if self.armed:
            self.transactions[conn.engine.dialect.name] += 1

    def checkout(self, *_: Any) -> None:
        self.checkouts += self.armed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://root@127.0.0.1:5432/test")
    parser.add_argument("--index-in-postgres", action="store_true",
                        help="the index in the same database, as replicas keep it (built first, ~20 s)")
    args = parser.parse_args()

    name = f"linli_bench_cost_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
    meter = Meter()
    event.listen(Engine, "before_cursor_execute", meter.before)
    event.listen(Engine, "after_cursor_execute", meter.after)
    event.listen(Engine, "begin", meter.begin)
    try:
        base = get_settings()
        # Every request comes from one test client here: lift the per-address limits (still counted).
        limits = base.limits.model_copy(update={"requests_per_client_per_minute": 1_000_000,
                                                "sessions_per_client_per_minute": 1_000_000})
        privacy = base.privacy.model_copy(update={"data_key": SecretStr(Fernet.generate_key().decode())})
        settings = base.model_copy(update={"database_url": url, "limits": limits, "privacy": privacy})
        if args.index_in_postgres:
            settings = settings.model_copy(update={"index_database_url": url,
                                                   "index_dir": Path(tempfile.mkdtemp(prefix=name))})
            KnowledgeBase(settings).build()
        app = create_app()
        app.dependency_overrides[get_settings] = lambda: settings
        messages, wall = 0, 0.0
        with TestClient(app) as client:
            def conversation(n: int) -> int:
                token = client.post("/api/v1/sessions", json={"channel": "chat"}).json()["session_token"]
                for text in CONVERSATIONS[n % len(CONVERSATIONS)]:
                    response = client.post("/api/v1/messages", headers={"X-Session-Token": token},
                                           json={"text": text})
                    assert response.status_code == 200, response.text
                return len(CONVERSATIONS[n % len(CONVERSATIONS)])

            conversation(0)  # warm: models, index, caches
            from sqlalchemy.pool import Pool  # noqa: PLC0415 - only the bench counts checkouts
            event.listen(Pool, "checkout", meter.checkout)
            meter.armed = True
            started = time.perf_counter()
            for n in range(args.conversations):
                messages += conversation(n)
            wall = time.perf_counter() - started
            meter.armed = False
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    sessions = args.conversations
    table = Table(title=f"database work per message on PostgreSQL ({messages} messages in {sessions} page sessions;"
                        " the session opening counted in)")
    for column in ("statement", "per message"):
        table.add_column(column, justify="right" if column != "statement" else "left")
    for statement, n in meter.statements.most_common():
        table.add_row(statement, f"{n / messages:.2f}")
    table.add_row("[b]all statements", f"[b]{sum(meter.statements.values()) / messages:.1f}")
    for dialect, n in sorted(meter.transactions.items()):
        table.add_row(f"{dialect}: transactions", f"{n / messages:.1f}")
    table.add_row("connection checkouts", f"{meter.checkouts / messages:.1f}")
    table.add_row("ms in the database", f"{meter.seconds / messages * 1000:.1f}")
    table.add_row("ms per message, all", f"{wall / messages * 1000:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
