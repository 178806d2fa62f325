"""Turns at shared background work: what exactly one process should do once per period (the SLA
sweep every few seconds, the analytics pre-count hourly), whichever workers run. The process that
finds the turn due takes it and moves the next turn one period ahead, in one UPDATE, so two
processes never both take it; a process that dies mid-turn delays the work by one period at
most. The row lives in the database, the one source of truth, so it survives any process."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Column, DateTime, String, Table, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from assistant.core.clock import utcnow
from assistant.core.db import metadata

leader_leases = Table(
    "leader_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),  # who took the last turn (for people reading it)
    Column("until", DateTime, nullable=False),  # when the next turn is due
)


class SharedSchedule:
    """`schedule.my_turn(me)`: True for exactly one caller per `every_s` seconds, across
    processes; that caller does the work."""

    def __init__(self, engine: Engine, name: str, every_s: float) -> None:
        self.engine = engine
        self.name = name
        self.every = timedelta(seconds=every_s)

    def my_turn(self, owner: str) -> bool:
        now = utcnow()
        with self.engine.begin() as conn:
            taken = conn.execute(update(leader_leases).where(leader_leases.c.name == self.name,
                                                             leader_leases.c.until <= now)
                                 .values(owner=owner[:128], until=now + self.every)).rowcount
        if taken == 1:
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(leader_leases).values(name=self.name, owner=owner[:128], until=now + self.every))
        except IntegrityError:
            return False  # not due yet, or another process took this turn first
        return True
