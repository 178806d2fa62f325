"""Keyed locks held across transactions: one holder at a time per key (a conversation), whichever
replica or thread asks. On PostgreSQL a transaction-scoped advisory lock on a connection of its own
(so the holder's other transactions commit as usual, and a dead process's lock goes with its
connection); on SQLite, the one-process default, a lock per key in this process."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from assistant.core.db import is_sqlite, lock_pool
from assistant.core.errors import ConversationBusy

# The keys this thread (or task) holds: taking one again inside is a no-op, so a listener that
# runs inside a turn never waits for its own turn.
_held: ContextVar[frozenset[str]] = ContextVar("linli_held_locks", default=frozenset())

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's lock_timeout


def _namespace_id(namespace: str) -> int:
    """A stable signed 32-bit id for the lock's namespace (pg_advisory_xact_lock(int, int))."""
    return zlib.crc32(f"linli.{namespace}".encode()) - 2**31


class _LocalLocks:
    """Per-key reentrant locks of one process, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.RLock, int]] = {}

    @contextmanager
    def hold(self, key: str, timeout_s: float) -> Iterator[bool]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.RLock(), 0))
            self._locks[key] = (lock, users + 1)
        acquired = lock.acquire(timeout=timeout_s)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


# One set of local locks per database and namespace, shared by every KeyedLock of this process
# (the dialogue's and the resident sessions' locks of one conversation are the same lock).
_local_locks: dict[str, _LocalLocks] = {}
_local_guard = threading.Lock()


def _local_locks_for(engine: Engine, namespace: str) -> _LocalLocks:
    name = f"{engine.url.render_as_string(hide_password=True)}|{namespace}"
    with _local_guard:
        return _local_locks.setdefault(name, _LocalLocks())


class KeyedLock:
    """`with lock.hold(key):` — one holder of `key` at a time. A wait longer than `timeout_s`
    raises ConversationBusy (503): never a silent fallback to handling without the lock.

    On PostgreSQL the locks are held on connections of `holders`, a pool apart from the one the
    work uses (a turn holds its lock connection while it works on another, and holders must never
    take every work connection): the container's `Databases.lock_holders`, shared by its locks;
    without it, a small pool of this lock's own, made on first use."""

    def __init__(self, engine: Engine, namespace: str, timeout_s: float, holders: Engine | None = None) -> None:
        self.engine = engine
        self.namespace = namespace
        self.timeout_s = timeout_s
        self._holders = holders
        self._holders_guard = threading.Lock()
        self._namespace_id = _namespace_id(namespace)
        self._local = _local_locks_for(engine, namespace)

    def _holding_pool(self) -> Engine:
        with self._holders_guard:
            if self._holders is None:
                self._holders = lock_pool(self.engine)
            return self._holders

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        held = _held.get()
        name = f"{self.namespace}:{key}"
        if name in held:
            yield
            return
        with self._acquired(key):
            token = _held.set(held | {name})
            try:
                yield
            finally:
                _held.reset(token)

    @contextmanager
    def _acquired(self, key: str) -> Iterator[None]:
        if is_sqlite(self.engine):
            with self._local.hold(key, self.timeout_s) as acquired:
                if not acquired:
                    raise self._busy()
                yield
            return
        with self._holding_pool().connect() as conn, conn.begin():
            try:
                # One round trip: the wait's limit is set before the lock is asked for (the select
                # list is evaluated left to right), for this transaction only.
                conn.execute(text("SELECT set_config('lock_timeout', :ms, true), "
                                  "pg_advisory_xact_lock(:namespace, hashtext(:key))"),
                             {"ms": f"{max(1, int(self.timeout_s * 1000))}ms", "namespace": self._namespace_id,
                              "key": key})
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                    raise self._busy() from exc
                raise
            yield  # the lock is released when this transaction ends

    def _busy(self) -> ConversationBusy:
        return ConversationBusy("您的上一条消息还在处理中，请稍等片刻再发。",
                                "Your previous message is still being handled; please wait a moment and send again.",
                                retry_after=int(self.timeout_s))
