"""Rolling upgrades: old code refuses a database a newer release migrated; outage errors are told
from bugs; the shutdown timings fit the grace period."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from assistant.core.db import MIGRATIONS_DIR, SchemaTooNew, migrate
from assistant.ops.health import database_unavailable_error
from assistant.ops.server import EXIT_MARGIN_S, shutdown_timings

FUTURE = "9001_from_a_newer_release"


def _head() -> str:
    return max(p.name.split("_")[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))


def test_a_database_migrated_by_a_newer_release_is_refused(databases, tmp_path):
    url = f"sqlite:///{tmp_path / 'linli.sqlite'}"
    databases.engine(url)  # migrated to this code's head
    engine = create_engine(url)
    with engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})
    assert head.startswith(_head())
    with pytest.raises(SchemaTooNew) as refused:
        migrate(engine)
    zh, en = refused.value.message("zh"), refused.value.message("en")
    assert FUTURE in zh and head in zh and "升级" in zh
    assert FUTURE in en and head in en and "newer" in en
    with engine.connect() as conn:  # left as it was: no downgrade, no stamp
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == FUTURE


def test_a_database_at_this_code_s_head_or_older_migrates(tmp_path):
    url = f"sqlite:///{tmp_path / 'linli.sqlite'}"
    engine = create_engine(url)
    migrate(engine)
    migrate(engine)  # idempotent at head


@pytest.mark.parametrize(("error", "outage"), [
    (OperationalError("SELECT 1", {}, Exception("connection refused")), True),
    (PoolTimeout("QueuePool limit reached"), True),
    (DBAPIError("SELECT 1", {}, Exception("server closed the connection"), connection_invalidated=True), True),
    (IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    (ProgrammingError("SELEC 1", {}, Exception("syntax error")), False),
])
def test_an_outage_is_told_from_a_bug(error, outage):
    assert database_unavailable_error(error) is outage


@pytest.mark.parametrize("grace", [1.0, 3.0, 8.0, 30.0, 60.0])
def test_drain_and_in_flight_wait_fit_the_grace_period(grace):
    drain, in_flight = shutdown_timings(grace)
    assert drain > 0 and in_flight >= 1
    if grace >= 4:
        assert drain + in_flight + EXIT_MARGIN_S <= grace
    assert shutdown_timings(8.0) == (2.0, 5)
