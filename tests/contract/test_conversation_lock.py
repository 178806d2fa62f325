"""One message at a time per conversation: the lock every state writer takes
(ConversationStore.one_at_a_time), on SQLite (threads of one process) and PostgreSQL (replicas:
separate engines, and a real process killed while it holds the lock)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from itertools import pairwise

import pytest
from sqlalchemy import create_engine

from assistant.core.errors import ConversationBusy
from assistant.core.locks import KeyedLock
from assistant.dialogue.store import ConversationStore


def _overlaps(intervals: list[tuple[float, float]]) -> bool:
    ordered = sorted(intervals)
    return any(later[0] < earlier[1] for earlier, later in pairwise(ordered))


def test_holders_of_one_conversation_take_turns(databases, vault, database_url):
    store = ConversationStore(databases.engine(database_url), vault)
    session = f"s-{uuid.uuid4().hex[:8]}"
    held: list[tuple[float, float]] = []

    def take() -> None:
        with store.one_at_a_time(session):
            started = time.monotonic()
            time.sleep(0.15)
            held.append((started, time.monotonic()))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(held) == 4
    assert not _overlaps(held), "two holders of one conversation ran at once"

    # Another conversation never waits for this one: it is taken while this one is held. (A
    # clock bound on it failed on a busy machine, where a first connection took 0.34 s.)
    taken = threading.Event()

    def take_another() -> None:
        with store.one_at_a_time(f"{session}-other"):
            taken.set()

    with store.one_at_a_time(session):
        another = threading.Thread(target=take_another)
        another.start()
        assert taken.wait(10), "another conversation waited for this one"
    another.join(10)


def test_a_wait_past_the_timeout_is_an_error_not_a_fallback(databases, vault, database_url):
    session = f"s-{uuid.uuid4().hex[:8]}"
    holder = ConversationStore(databases.engine(database_url), vault)
    impatient = ConversationStore(databases.engine(database_url), vault, lock_timeout_s=0.3)
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with holder.one_at_a_time(session):
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(5)
    started = time.monotonic()
    with pytest.raises(ConversationBusy) as refused, impatient.one_at_a_time(session):
        pytest.fail("entered a conversation another holder has")
    waited = time.monotonic() - started
    release.set()
    thread.join(5)
    assert 0.25 <= waited < 3
    assert refused.value.http_status == 503 and "处理中" in refused.value.message_zh
    with impatient.one_at_a_time(session):  # free again once the holder is done
        pass


def test_taking_the_lock_again_inside_does_not_wait_for_itself(databases, vault, database_url):
    store = ConversationStore(databases.engine(database_url), vault, lock_timeout_s=0.5)
    session = f"s-{uuid.uuid4().hex[:8]}"
    with store.one_at_a_time(session), store.one_at_a_time(session):
        pass


def test_replicas_on_postgresql_wait_for_each_other(postgres_database):
    # Two engines stand for two replicas: the lock lives in PostgreSQL, not in a process.
    first = KeyedLock(create_engine(postgres_database), "conversation", 5)
    second = KeyedLock(create_engine(postgres_database), "conversation", 0.3)
    outcome: list[str] = []

    def second_replica() -> None:
        try:
            with second.hold("shared"):
                outcome.append("entered")
        except ConversationBusy:
            outcome.append("busy")

    with first.hold("shared"):
        thread = threading.Thread(target=second_replica)
        thread.start()
        thread.join(5)
    assert outcome == ["busy"]
    second_replica()
    assert outcome == ["busy", "entered"]


def test_a_killed_holder_releases_the_conversation(postgres_database):
    code = (
        "import sys, time\n"
        "from sqlalchemy import create_engine\n"
        "from assistant.core.locks import KeyedLock\n"
        f"lock = KeyedLock(create_engine({postgres_database!r}), 'conversation', 5)\n"
        "with lock.hold('killed'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waiting = KeyedLock(create_engine(postgres_database), "conversation", 0.3)
        with pytest.raises(ConversationBusy), waiting.hold("killed"):
            pass
        holder.kill()  # kill -9: its connection closes and PostgreSQL drops its locks
        holder.wait(10)
        patient = KeyedLock(create_engine(postgres_database), "conversation", 10)
        started = time.monotonic()
        with patient.hold("killed"):
            assert time.monotonic() - started < 10
    finally:
        holder.kill()


def test_under_the_lock_an_unfinished_receipt_is_a_dead_processs_and_is_taken_over(databases, vault, database_url):
    from assistant.dialogue.receipts import MessageReceipts  # noqa: PLC0415 - this test only

    store = ConversationStore(databases.engine(database_url), vault)
    receipts = MessageReceipts(store.engine, wait_s=0.2)
    session = f"s-{uuid.uuid4().hex[:8]}"
    assert receipts.claim("key-1", session) is None  # a process claims the message, then dies
    with store.one_at_a_time(session):
        assert receipts.claim("key-1", session, serialised=True) is None  # answered again
        with store.transaction() as conn:
            receipts.finish("key-1", {"text": "答复", "turn_id": 7}, conn)
    with store.one_at_a_time(session):
        assert receipts.claim("key-1", session, serialised=True) == {"text": "答复", "turn_id": 7}
