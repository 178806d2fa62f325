"""The relational database: one SQLAlchemy metadata for every table, the engines of one container
(`Databases`: one per URL, migrated once), and Alembic migrations applied on start. SQLite is the
embedded default; PostgreSQL is production."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, ColumnElement, MetaData, and_, event, select, text, update
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from assistant.core.errors import LinliError
from assistant.core.privacy import PRIVATE_FILE, private_file

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Seconds a PostgreSQL connection attempt may take (libpq's connect_timeout).
CONNECT_TIMEOUT_S = 3

# Connections per process to a PostgreSQL: this many kept, this many more at peak.
POOL_SIZE = 6
POOL_OVERFLOW = 4

# The connections that hold PostgreSQL's keyed locks (assistant/core/locks.py), apart from the pool
# the work uses: a turn holds its lock connection while it works on another, and holders must never
# take every work connection.
LOCK_POOL_SIZE = 4


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class Databases:
    """The engines of one container (assistant/services.py `Services.databases`; an entry point or a
    test that has no container makes its own): one per URL, created and migrated to the newest
    schema on first use, and the pools that hold PostgreSQL's keyed locks. A migration that fails
    (the database does not answer yet) is tried again by the next `engine(url)`."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._migrated: set[str] = set()
        self._lock_holders: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def engine(self, url: str) -> Engine:
        with self._lock:
            if url not in self._engines:
                self._engines[url] = _create_engine(url)
            engine = self._engines[url]
            if url not in self._migrated:
                migrate(engine)
                self._migrated.add(url)
            return engine

    def lock_holders(self, engine: Engine) -> Engine:
        """The small pool whose connections hold `engine`'s database's keyed locks (PostgreSQL)."""
        name = engine.url.render_as_string(hide_password=False)
        with self._lock:
            if name not in self._lock_holders:
                self._lock_holders[name] = lock_pool(engine)
            return self._lock_holders[name]

    def dispose(self) -> None:
        """Closes every pooled connection (a process that is done, a test's throwaway database)."""
        with self._lock:
            for engine in [*self._engines.values(), *self._lock_holders.values()]:
                engine.dispose()
            self._engines.clear()
            self._migrated.clear()
            self._lock_holders.clear()


def lock_pool(engine: Engine) -> Engine:
    """A pool of its own on `engine`'s database for holding keyed locks (`Databases.lock_holders`)."""
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if engine.dialect.name == "postgresql" else {}
    return create_engine(engine.url, pool_pre_ping=True, pool_size=LOCK_POOL_SIZE, max_overflow=LOCK_POOL_SIZE,
                         pool_timeout=30, connect_args=connect_args)


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite_files(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets the console read while the bot writes; FULL sync keeps every
            # acknowledged ticket through a crash.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # A database that does not answer fails a connection in seconds (a 503 and a not-ready
    # replica), never a request hanging on the operating system's timeout.
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if make_url(url).get_backend_name() == "postgresql" else {}
    # Small pools: a city runs several replicas and workers on one PostgreSQL (100 connections by
    # default; docs/deployment.md has the arithmetic). A request waits for a free connection rather
    # than the server running out of them.
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_timeout=30,
                         connect_args=connect_args)


def _private_sqlite_files(url: str) -> None:
    """The database file mode 600 before SQLite opens it (its -wal and -shm files are created with
    the database file's mode); files left by an older release are narrowed too."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists():
        # Never open the file of a database that may be in use: closing any descriptor of it drops
        # every POSIX lock this process's SQLite connections hold on it, and another process may
        # then write over them (sqlite.org/howtocorrupt.html, 2.2). A process builds an engine per
        # `Databases`, and tests and the CLI build several on one file: a second engine opening and
        # closing the file corrupted a shared test database. chmod needs no descriptor.
        os.chmod(path, PRIVATE_FILE)
    else:
        private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            os.chmod(sidecar, PRIVATE_FILE)


def lease_due(engine: Engine, key: Column[Any], due: ColumnElement[bool], *, worker: str, until: datetime,
              limit: int, order_by: ColumnElement[Any] | Column[Any],
              in_line: ColumnElement[bool] | None = None) -> list[Any]:
    """Claims up to `limit` due rows of `key`'s table for `worker` until `until` and returns their
    keys: the outboxes' and queues' one leasing step. PostgreSQL skips rows another worker has
    locked; the UPDATE checks `due` again, which is what makes the claim safe on SQLite too.
    `in_line` narrows which due rows may be picked (e.g. one message per resident at a time)."""
    table = key.table
    leased: list[Any] = []
    with engine.begin() as conn:
        query = select(key).where(due if in_line is None else and_(due, in_line)).order_by(order_by).limit(limit)
        if not is_sqlite(engine):
            query = query.with_for_update(skip_locked=True, of=table)
        keys: Sequence[Any] = conn.execute(query).scalars().all()
        for row_key in keys:
            result = conn.execute(update(table).where(key == row_key, due)
                                  .values(lease_owner=worker, lease_until=until))
            if result.rowcount == 1:
                leased.append(row_key)
    return leased


class SchemaTooNew(LinliError):
    """The database was migrated by a newer release than this code (a rolling upgrade's old
    replica): running on it could write rows the new schema does not expect, so this process
    refuses to start instead."""

    code = "schema_too_new"
    http_status = 503

    def __init__(self, database_revision: str, code_head: str) -> None:
        super().__init__(
            f"数据库结构版本 {database_revision} 比本程序认识的最新版本 {code_head} 更新："
            "数据库已被新版本的邻里升级。请把本程序升级到同一版本后再启动。",
            f"The database schema is at revision {database_revision}, newer than this code's latest "
            f"migration {code_head}: a newer Linli release migrated it. Upgrade this installation "
            "to that release before starting it.",
            database_revision=database_revision, code_head=code_head)


def migrate(engine: Engine) -> None:
    """Apply Alembic migrations up to head (idempotent). The server, `linli worker` and the CLI
    may start at once on a fresh database, so migrating holds a lock: a PostgreSQL advisory
    lock, or a file lock beside the SQLite file. A database at a revision this code's migrations
    do not know (a newer release migrated it) raises SchemaTooNew and is left as it is."""
    # Alembic adds ~160 ms (40% of `linli --help`) to every process that imports this module; the
    # ones that never open the relational database (`linli --help`, `linli kb …`) skip it.
    from alembic import command  # noqa: PLC0415 - +160 ms at import, see above
    from alembic.config import Config  # noqa: PLC0415 - as above

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with _migration_lock(engine), engine.begin() as connection:
        if not is_sqlite(engine):
            connection.execute(text("SELECT pg_advisory_xact_lock(7411)"))  # 7411: Linli's migration lock
        config.attributes["connection"] = connection
        _refuse_newer_schema(config, connection)
        command.upgrade(config, "head")


def _refuse_newer_schema(config: Any, connection: Connection) -> None:
    """Raises SchemaTooNew when `alembic_version` names a revision this code does not have."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 - with alembic, see migrate()
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - as above
    from alembic.util import CommandError  # noqa: PLC0415 - as above

    script = ScriptDirectory.from_config(config)
    for revision in MigrationContext.configure(connection).get_current_heads():
        try:
            known = script.get_revision(revision)
        except CommandError:  # alembic's "No such revision or branch"
            known = None
        if known is None:
            raise SchemaTooNew(revision, ", ".join(script.get_heads()))


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if is_sqlite(engine) else None
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_suffix(Path(database).suffix + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(lock_path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
