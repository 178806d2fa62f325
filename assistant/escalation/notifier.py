"""How a change to the ticket queue reaches every open console, on every replica, without each
console asking the database every second.

A writer announces what it changed inside its own transaction (`announce`) and, once that
committed, tells the notifier so (`committed`); a rolled-back change is never heard. Consoles
`subscribe` and wait. Two implementations, chosen by the database URL (`notifier_for`):

- `PostgresQueueNotifier`: `SELECT pg_notify('linli_queue', …)` in the writer's transaction, which
  PostgreSQL delivers at commit to every listening connection, whichever process wrote. Each
  process keeps ONE listening connection (a thread started by the first subscriber) and fans
  what it hears out to its subscribers; it reconnects with backoff when PostgreSQL goes away,
  and says so (state `down`) so consoles can fall back to a slow poll meanwhile.
- `LocalQueueNotifier`: SQLite's one-process deployment; listeners in this process are told right
  after the commit. Writes by other processes (the CLI, a separate `linli worker`) go unheard.

Subscribers live on an asyncio loop (the server's); the fan-out from writer threads and the
listening thread reaches them with one `call_soon_threadsafe` per loop and change."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("linli.escalation.notifier")

CHANNEL = "linli_queue"
# States a subscriber sees: the notifier hears every process's changes (listening), only this
# process's (in_process), is connecting (starting), or cannot listen right now (down).
LISTENING, IN_PROCESS, STARTING, DOWN = "listening", "in_process", "starting", "down"
# Changes a subscriber has not collected yet, beyond which they collapse into one "anything".
MAX_PENDING = 1000


@dataclass(frozen=True)
class QueueChange:
    """One ticket changed, in these centres (two for a transfer). No ticket: anything may have
    changed (a listener that was down is back). No centres: a change for every centre's queue."""

    ticket_id: str | None = None
    centres: tuple[str, ...] = ()

    def concerns(self, centre: str | None) -> bool:
        """Whether a console of `centre` shows it (None: a console that sees every centre)."""
        return centre is None or not self.centres or centre in self.centres

    def payload(self) -> str:
        return json.dumps({"ticket": self.ticket_id, "centres": list(self.centres)}, ensure_ascii=False)

    @classmethod
    def from_payload(cls, payload: str) -> QueueChange:
        try:
            data = json.loads(payload)
            ticket = data.get("ticket")
            centres = tuple(str(c) for c in data.get("centres") or ())
            return cls(str(ticket) if ticket is not None else None, centres)
        except (ValueError, AttributeError, TypeError):
            return ANYTHING  # another writer's payload: safest to treat as "look again"


ANYTHING = QueueChange()


class Subscription:
    """One waiting console: the changes heard since it last looked. Created on, and used from,
    the event loop that serves the console."""

    def __init__(self, notifier: _Fanout) -> None:
        self._notifier = notifier
        self._woken = asyncio.Event()
        self._heard: list[QueueChange] = []

    @property
    def state(self) -> str:
        return self._notifier.state

    def _hear(self, changes: Sequence[QueueChange]) -> None:
        if len(self._heard) + len(changes) > MAX_PENDING:
            self._heard = [ANYTHING]
        else:
            self._heard.extend(changes)
        self._woken.set()

    async def wait(self, timeout: float) -> list[QueueChange] | None:
        """The changes heard since the last call (empty when only the state changed), or None
        after `timeout` seconds without any."""
        if not self._woken.is_set():
            try:
                await asyncio.wait_for(self._woken.wait(), timeout)
            except TimeoutError:
                return None
        return self.drain()

    def drain(self) -> list[QueueChange]:
        self._woken.clear()
        heard, self._heard = self._heard, []
        return heard

    async def settle(self, timeout: float) -> str:
        """Waits (at most `timeout` seconds) for the notifier to finish starting; its state then."""
        deadline = time.monotonic() + timeout
        while self.state == STARTING and (left := deadline - time.monotonic()) > 0:
            await self.wait(left)
        return self.state

    def close(self) -> None:
        self._notifier._unsubscribe(self)


class QueueNotifier(Protocol):
    """The seam between the queue's writers and the consoles waiting for its changes."""

    @property
    def state(self) -> str: ...

    @property
    def version(self) -> int:
        """Grows with every change heard (and every change of state): what was read at one
        version is current as long as the version is the same (and the state is not `down`)."""

    def announce(self, conn: Connection, changes: Sequence[QueueChange]) -> None:
        """Inside the writer's transaction, before it commits."""

    def committed(self, changes: Sequence[QueueChange]) -> None:
        """After the writer's transaction committed."""

    def subscribe(self) -> Subscription:
        """A subscription for the running event loop; `close` it when the console leaves."""

    def close(self) -> None: ...


class _Fanout:
    """Subscribers per event loop, and the state they see."""

    def __init__(self, state: str) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[asyncio.AbstractEventLoop, set[Subscription]] = {}
        self._state = state
        self._version = 0

    @property
    def state(self) -> str:
        return self._state

    @property
    def version(self) -> int:
        return self._version

    @property
    def subscribers(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscribers.values())

    def subscribe(self) -> Subscription:
        loop = asyncio.get_running_loop()
        subscription = Subscription(self)
        with self._lock:
            self._subscribers.setdefault(loop, set()).add(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            for loop, subscriptions in list(self._subscribers.items()):
                subscriptions.discard(subscription)
                if not subscriptions:
                    del self._subscribers[loop]

    def _broadcast(self, changes: Sequence[QueueChange]) -> None:
        """Tells every subscriber, from any thread."""
        with self._lock:
            self._version += 1
            targets = [(loop, tuple(s)) for loop, s in self._subscribers.items()]
        for loop, subscriptions in targets:
            try:
                loop.call_soon_threadsafe(_deliver, subscriptions, tuple(changes))
            except RuntimeError:  # that loop is closed (a finished test, a server shutting down)
                with self._lock:
                    self._subscribers.pop(loop, None)

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._broadcast(())  # wakes every subscriber to look at the new state


def _deliver(subscriptions: tuple[Subscription, ...], changes: tuple[QueueChange, ...]) -> None:
    for subscription in subscriptions:
        subscription._hear(changes)


class LocalQueueNotifier(_Fanout):
    """One process (SQLite): the subscribers of this process hear its writers' commits."""

    def __init__(self) -> None:
        super().__init__(IN_PROCESS)

    def announce(self, conn: Connection, changes: Sequence[QueueChange]) -> None:
        """Nothing to send in the transaction: `committed` tells the listeners."""

    def committed(self, changes: Sequence[QueueChange]) -> None:
        self._broadcast(changes)

    def close(self) -> None:
        with self._lock:
            self._subscribers.clear()


class PostgresQueueNotifier(_Fanout):
    """LISTEN/NOTIFY: every replica's consoles hear every replica's commits."""

    def __init__(self, url: str, *, retry_first_s: float = 0.5, retry_max_s: float = 10.0,
                 probe_every_s: float = 10.0) -> None:
        super().__init__(STARTING)
        # libpq's form of SQLAlchemy's URL (postgresql+psycopg://… -> postgresql://…).
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.probe_every_s = probe_every_s
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def announce(self, conn: Connection, changes: Sequence[QueueChange]) -> None:
        # PostgreSQL holds the notifications until this transaction commits (and drops them if it
        # rolls back), then delivers each distinct payload once to every listening connection.
        for change in dict.fromkeys(changes):
            conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                         {"channel": CHANNEL, "payload": change.payload()})

    def committed(self, changes: Sequence[QueueChange]) -> None:
        """PostgreSQL delivered them at the commit, to this process's listener too."""

    def subscribe(self) -> Subscription:
        self._start()
        return super().subscribe()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            self._subscribers.clear()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="linli-queue-listener", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        import psycopg  # noqa: PLC0415 - psycopg is loaded by PostgreSQL deployments only

        retry_in = self.retry_first_s
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5,
                                     application_name="linli-queue-listener", keepalives=1, keepalives_idle=10,
                                     keepalives_interval=5, keepalives_count=3) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    was_down = self._state == DOWN
                    self._set_state(LISTENING)
                    if was_down:
                        log.info("listening for queue changes again")
                        self._broadcast((ANYTHING,))  # what changed while nobody listened went unheard
                    retry_in = self.retry_first_s
                    self._listen(conn)
            except Exception as exc:  # noqa: BLE001 - whatever broke the listener, consoles poll and it retries
                if self._stop.is_set():
                    break
                if self._state != DOWN:
                    log.warning("cannot listen for queue changes (%s); consoles poll until it is back",
                                type(exc).__name__, exc_info=not isinstance(exc, psycopg.Error))
                self._set_state(DOWN)
                self._stop.wait(retry_in)
                retry_in = min(retry_in * 2, self.retry_max_s)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        probed = time.monotonic()
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=1.0):
                self._broadcast((QueueChange.from_payload(notify.payload),))
            if time.monotonic() - probed >= self.probe_every_s:
                conn.execute("SELECT 1")  # a dead link raises here instead of waiting silently
                probed = time.monotonic()


# The notifier of each backend, by SQLAlchemy's backend name; anything else is served in-process.
NOTIFIERS: dict[str, Callable[[str], QueueNotifier]] = {
    "postgresql": PostgresQueueNotifier,
    "sqlite": lambda _url: LocalQueueNotifier(),
}


def notifier_for(url: str) -> QueueNotifier:
    factory = NOTIFIERS.get(make_url(url).get_backend_name())
    return factory(url) if factory is not None else LocalQueueNotifier()
