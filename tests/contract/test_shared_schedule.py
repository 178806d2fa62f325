"""Turns at shared background work (the SLA sweep, the analytics pre-count): exactly one process
per period, however many ask at once. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid

from assistant.core.leases import SharedSchedule


def test_one_turn_per_period_across_many_askers(databases, database_url):
    engine = databases.engine(database_url)
    # Names of this test's own: the PostgreSQL database is shared by the run, whose servers and
    # workers take the real schedules' turns.
    sweep, precount = f"sla_sweep-{uuid.uuid4().hex[:8]}", f"analytics_precount-{uuid.uuid4().hex[:8]}"
    schedule = SharedSchedule(engine, sweep, every_s=1.0)
    winners: list[str] = []
    start = threading.Barrier(6)

    def ask(name: str) -> None:
        start.wait()
        if schedule.my_turn(name):
            winners.append(name)

    threads = [threading.Thread(target=ask, args=(f"worker-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(winners) == 1
    assert not schedule.my_turn(winners[0])  # not even the holder, before the period is over
    time.sleep(1.1)
    assert schedule.my_turn("worker-late")  # due again: whoever asks first takes it
    assert not SharedSchedule(engine, sweep, every_s=1.0).my_turn("worker-0")
    assert SharedSchedule(engine, precount, every_s=60).my_turn("worker-0")  # its own turns
