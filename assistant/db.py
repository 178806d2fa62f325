"""The relational database: one SQLAlchemy metadata for every table, engines per URL, and
Alembic migrations applied on start. SQLite is the embedded default; PostgreSQL is production."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.Lock()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def get_engine(url: str) -> Engine:
    """One engine per URL per process, migrated to the newest schema."""
    with _lock:
        if url not in _engines:
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

                @event.listens_for(engine, "connect")
                def _sqlite_pragmas(dbapi_connection, _record) -> None:
                    cursor = dbapi_connection.cursor()
                    # WAL lets the console read while the bot writes; FULL sync keeps every
                    # acknowledged ticket through a crash.
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=FULL")
                    cursor.execute("PRAGMA foreign_keys=ON")
                    cursor.close()
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            _engines[url] = engine
        engine = _engines[url]
        if url not in _migrated:
            migrate(engine)
            _migrated.add(url)
        return engine


def migrate(engine: Engine) -> None:
    """Apply Alembic migrations up to head (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
