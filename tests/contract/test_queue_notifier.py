"""The queue notifier on both backends (in-process on SQLite, LISTEN/NOTIFY on PostgreSQL): every
write path of SqlEscalationService, committed in another thread, reaches a waiting console's
subscription within 2 s; a rolled-back change is never heard; on PostgreSQL a commit from a
second process reaches this process's listener, and a listener whose connection is killed says
so and comes back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy

from assistant.core.clock import utcnow
from assistant.core.settings import EscalationSettings
from assistant.escalation.notifier import (
    ANYTHING,
    DOWN,
    IN_PROCESS,
    LISTENING,
    LocalQueueNotifier,
    PostgresQueueNotifier,
    QueueChange,
    Subscription,
    notifier_for,
)
from assistant.escalation.service import Actor, SqlEscalationService

WANG = Actor("wang", "worker", "centre-a", "王社工")
BOSS = Actor("boss", "supervisor", "centre-a", "主管")
WITHIN_S = 2.0


@pytest.fixture
def desk(databases, vault, database_url):
    service = SqlEscalationService(databases.engine(database_url), vault, EscalationSettings(centre="centre-a"))
    yield service
    service.queue_changes.close()


def _open(desk: SqlEscalationService, **overrides) -> str:
    values = dict(kind="human_request", priority="normal", session_id=f"s-{uuid.uuid4().hex[:8]}", channel="web",
                  user_id="u1", summary="想找工作人员问问低保", centre="centre-a")
    values.update(overrides)
    return desk.open_ticket(**values).ticket_id


async def _listening(desk: SqlEscalationService) -> Subscription:
    subscription = desk.queue_changes.subscribe()
    assert await subscription.settle(10) in (LISTENING, IN_PROCESS)
    return subscription


async def _next_change(subscription: Subscription, timeout: float = WITHIN_S) -> list[QueueChange]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        heard = await subscription.wait(left)
        if heard:
            return heard
    return []


def test_notifier_follows_the_database_url(tmp_path):
    assert isinstance(notifier_for(f"sqlite:///{tmp_path / 'x.sqlite'}"), LocalQueueNotifier)
    assert isinstance(notifier_for("postgresql+psycopg://root@127.0.0.1:5432/test"), PostgresQueueNotifier)


def test_every_write_path_reaches_a_waiting_listener(desk):
    """Each change runs in another thread (another connection) while the listener waits. The
    PostgreSQL database is shared by the whole run, so this test's queue is a centre of its own
    (claim_next must find the reopened ticket, not another test's)."""
    home, away = f"centre-{uuid.uuid4().hex[:6]}", f"centre-{uuid.uuid4().hex[:6]}"
    wang, boss = Actor("wang", "worker", home, "王社工"), Actor("boss", "supervisor", home, "主管")

    async def scenario() -> None:
        subscription = await _listening(desk)

        async def expect(change: Callable[[], object], ticket_id: str | None = None,
                         centres: tuple[str, ...] = (home,)) -> None:
            started = time.monotonic()
            result = await asyncio.to_thread(change)
            ticket_id = ticket_id or str(result)
            # Other tests' tickets share the PostgreSQL database (a sweep flags theirs too, in
            # batches): what this change announced must be among what arrives within WITHIN_S.
            expected, heard = QueueChange(ticket_id, centres), []
            while expected not in heard and (batch := await _next_change(subscription, started + WITHIN_S
                                                                         - time.monotonic())):
                heard += batch
            assert expected in heard, (getattr(change, "__name__", change), heard[:5])
            assert time.monotonic() - started < WITHIN_S + 1

        tid = await asyncio.to_thread(_open, desk, centre=home)
        assert QueueChange(tid, (home,)) in await _next_change(subscription)
        await expect(lambda: desk.claim(tid, wang), tid)
        await expect(lambda: desk.reply(tid, wang, "您好，我是王社工。"), tid)
        await expect(lambda: desk.ask_resident(tid, wang, "请问您住几号楼？"), tid)
        await expect(lambda: desk.record_resident_message(tid, "3号楼"), tid, ())  # waiting -> claimed
        await expect(lambda: desk.add_note(tid, wang, "已电话联系"), tid)
        await expect(lambda: desk.transfer(tid, boss, to_centre=away), tid, (home, away))
        await expect(lambda: desk.transfer(tid, boss, to_centre=home), tid, (away, home))
        await expect(lambda: desk.claim(tid, wang), tid)
        await expect(lambda: desk.resolve(tid, wang, "已上门协调"), tid)
        await expect(lambda: desk.close(tid, boss, "已办结"), tid)
        await expect(lambda: desk.reopen(tid, boss, "居民说还没解决"), tid)

        await expect(lambda: desk.claim_next(wang).ticket_id, tid)  # the reopened one is the most urgent
        await expect(lambda: desk.resolve(tid, wang, "已办结"), tid)
        await expect(lambda: desk.record_rating(tid, 5), tid, ())

        late = await asyncio.to_thread(_open, desk, centre=home)
        await _next_change(subscription)
        await expect(lambda: desk.sweep_breaches(now=utcnow() + timedelta(days=30)), late)
        subscription.close()

    asyncio.run(scenario())


def test_centres_say_whose_queue_changed():
    assert QueueChange("T1", ("centre-a",)).concerns("centre-a")
    assert not QueueChange("T1", ("centre-a",)).concerns("centre-b")
    assert QueueChange("T1", ("centre-a",)).concerns(None)  # a supervisor's console sees every centre
    assert QueueChange("T1").concerns("centre-b") and ANYTHING.concerns("centre-b")
    change = QueueChange("T1", ("centre-a", "中心"))
    assert QueueChange.from_payload(change.payload()) == change
    assert QueueChange.from_payload("not json") == ANYTHING


def test_a_rolled_back_change_is_never_heard(desk):
    async def scenario() -> None:
        subscription = await _listening(desk)

        def doomed() -> None:
            with pytest.raises(RuntimeError), desk._changing() as conn:
                desk._changed(conn, "T-rolled-back", "centre-a")
                raise RuntimeError("the transaction rolls back")

        await asyncio.to_thread(doomed)
        # A ticket whose insert fails (a repeated idempotency key) rolls back too: the first open
        # is heard once, the repeat not at all.
        key = f"k-{uuid.uuid4().hex}"
        first = await asyncio.to_thread(_open, desk, idempotency_key=key)
        assert [c.ticket_id for c in await _next_change(subscription)] == [first]
        assert await asyncio.to_thread(_open, desk, idempotency_key=key) == first
        assert await _next_change(subscription, 1.0) == []
        subscription.close()

    asyncio.run(scenario())


def test_a_console_of_another_loop_and_a_closed_subscription(desk):
    """Subscribers on two event loops both hear a change; one that closed hears nothing."""
    heard_elsewhere: list[list[QueueChange]] = []
    ready = threading.Event()

    async def other_console() -> None:
        subscription = await _listening(desk)
        ready.set()
        heard_elsewhere.append(await _next_change(subscription, 5))

    thread = threading.Thread(target=asyncio.run, args=(other_console(),))
    thread.start()

    async def scenario() -> None:
        gone = await _listening(desk)
        gone.close()
        ready.wait(10)
        tid = await asyncio.to_thread(_open, desk)
        assert await _next_change(gone, 0.5) == []
        thread.join(10)
        assert [c.ticket_id for c in heard_elsewhere[0]] == [tid]

    asyncio.run(scenario())


# ---- PostgreSQL only ----------------------------------------------------------------------------------

OPEN_IN_ANOTHER_PROCESS = """
import sys
from assistant.core.db import Databases
from assistant.core.vault import Vault
from assistant.escalation.service import SqlEscalationService
ticket = SqlEscalationService(Databases().engine(sys.argv[1]), Vault.development()).open_ticket(
    kind="complaint", priority="high", session_id="other-process", channel="web", user_id="u2",
    summary="另一个副本开的工单", centre="centre-b")
print(ticket.ticket_id)
"""


def test_a_commit_from_another_process_reaches_this_listener(databases, vault, postgres_database):
    desk = SqlEscalationService(databases.engine(postgres_database), vault)

    async def scenario() -> None:
        subscription = await _listening(desk)
        assert subscription.state == LISTENING
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", OPEN_IN_ANOTHER_PROCESS,
                                                        postgres_database], capture_output=True, text=True,
                                       timeout=120)
        assert done.returncode == 0, done.stderr
        heard = await _next_change(subscription)
        assert heard == [QueueChange(done.stdout.strip(), ("centre-b",))]
        subscription.close()

    try:
        asyncio.run(scenario())
    finally:
        desk.queue_changes.close()


def test_a_killed_listener_says_so_and_comes_back(databases, vault, postgres_database):
    notifier = PostgresQueueNotifier(postgres_database, retry_first_s=0.2)
    desk = SqlEscalationService(databases.engine(postgres_database), vault, notifier=notifier)
    admin = sqlalchemy.create_engine(postgres_database)

    async def scenario() -> None:
        subscription = await _listening(desk)
        with admin.begin() as conn:
            killed = conn.execute(sqlalchemy.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'linli-queue-listener' AND datname = current_database()")).scalar_one()
        assert killed >= 1
        # Down, then back: it tells every console to look again (what changed meanwhile went unheard).
        heard: list[QueueChange] = []
        deadline = time.monotonic() + 10
        while ANYTHING not in heard and time.monotonic() < deadline:
            heard += await subscription.wait(0.5) or []
        assert ANYTHING in heard and subscription.state == LISTENING
        tid = await asyncio.to_thread(_open, desk)
        assert tid in [c.ticket_id for c in await _next_change(subscription)]
        subscription.close()

    try:
        asyncio.run(scenario())
    finally:
        notifier.close()
        admin.dispose()


def test_an_unreachable_postgresql_is_reported_down():
    notifier = PostgresQueueNotifier("postgresql+psycopg://root@127.0.0.1:1/nowhere", retry_first_s=0.2)

    async def scenario() -> None:
        subscription = notifier.subscribe()
        assert await subscription.settle(10) == DOWN
        subscription.close()

    try:
        asyncio.run(scenario())
    finally:
        notifier.close()

