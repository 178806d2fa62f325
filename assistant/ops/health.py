"""Whether this replica should get traffic, and what a request gets when the database is gone.

- `/healthz` (assistant/api.py): alive. No database, no Redis: a liveness probe that waits on a
  sick database would restart a healthy process. Its `generation` is the published one when the
  index lives in a local file, the one in memory when it lives in the shared database.
- `/readyz`: 200 only when the database answers `SELECT 1`, Redis answers PING (when
  `limits.redis_url` is set) and the index is loaded; else 503 naming what failed. 503
  `{"status": "stopping"}` from the moment SIGTERM arrives (assistant/ops/server.py), so HAProxy
  takes the replica out before it stops listening. Every check has a timeout: the probe answers
  within `READY_TIMEOUT_S` whatever the database does.
- A request whose database does not answer (connection refused, a dropped connection, the pool
  exhausted) gets 503 and a plain Chinese sentence, not a 500 or a hang (`database_unavailable`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Receive, Scope, Send

from assistant.core.db import Databases, is_sqlite

if TYPE_CHECKING:
    from assistant.services import Services

log = logging.getLogger("linli.ops")

# The whole readiness answer, all checks together, at most this long.
READY_TIMEOUT_S = 4.0
# One check's own limit (the database's statement timeout, Redis's socket timeouts).
CHECK_TIMEOUT_S = 2.0
UNAVAILABLE = {"error": "unavailable", "message": "服务暂时不可用，请稍后再试。"}

_stopping = threading.Event()


def begin_shutdown() -> None:
    """From now on this process reports `stopping` (called on SIGTERM)."""
    _stopping.set()


def shutting_down() -> bool:
    return _stopping.is_set()


def served_generation(services: Services) -> int:
    """The index generation this process has in memory and answers from (0: none loaded), read
    without the index's database and without waiting on the services' build lock."""
    knowledge_base = vars(services).get("knowledge_base")  # built_once caches it in the instance
    return int(knowledge_base.store.loaded_generation) if knowledge_base is not None else 0


def published_generation(services: Services) -> int:
    """/healthz's generation: the published one when the index's rows are in a local file (a cheap
    read, what single-server tools and tests watch after an upload), else the one in memory (a
    replica's liveness never waits on the shared database). Never raises."""
    knowledge_base = vars(services).get("knowledge_base")
    if knowledge_base is None:
        return 0
    store = knowledge_base.store
    if not getattr(store, "shared", False):
        try:
            return int(store.generation())
        except Exception:  # noqa: BLE001 - liveness answers whatever the index file does
            log.warning("healthz: the index's generation could not be read", exc_info=True)
    return served_generation(services)


def _database(databases: Databases, url: str) -> None:
    engine = databases.engine(url)  # created, and migrated once it answers
    with engine.connect() as conn:
        if not is_sqlite(engine):
            conn.execute(text(f"SET LOCAL statement_timeout = {int(CHECK_TIMEOUT_S * 1000)}"))
        conn.execute(text("SELECT 1"))


class ReadinessProbe:
    """The checks behind /readyz, one per app; the Redis client is made once and reused."""

    def __init__(self) -> None:
        self._redis: Any = None
        self._redis_url: str | None = None
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()

    def _redis_ping(self, url: str) -> None:
        import redis  # noqa: PLC0415 - only a deployment with Redis needs it

        with self._lock:
            if self._redis is None or self._redis_url != url:
                self._redis = redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_S,
                                                   socket_timeout=CHECK_TIMEOUT_S)
                self._redis_url = url
            client = self._redis
        client.ping()

    async def _check(self, name: str, check: Any, *args: Any) -> str:
        try:
            await asyncio.wait_for(to_thread.run_sync(check, *args, abandon_on_cancel=True), READY_TIMEOUT_S)
        except TimeoutError:
            return self._note(name, "timeout", f"no answer within {READY_TIMEOUT_S:g} s")
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency means: not ready, say which
            return self._note(name, "unavailable", f"{type(exc).__name__}: {_first_line(exc)}")
        return self._note(name, "ok", "")

    def _note(self, name: str, state: str, why: str) -> str:
        """Logs a check's changes only: the proxy probes every second or two."""
        with self._lock:
            before = self._states.get(name, "ok")
            self._states[name] = state
        if state != before:
            if state == "ok":
                log.info("readiness: %s answers again", name)
            else:
                log.warning("readiness: %s %s (%s): not ready", name, state, why)
        return state

    async def __call__(self, services: Services | None) -> tuple[int, dict[str, Any]]:
        if shutting_down():
            return 503, {"status": "stopping"}
        if services is None:  # the lifespan has not built them yet
            return 503, {"status": "starting"}
        settings = services.settings
        redis_url = settings.limits.redis_url
        database, redis_state = await asyncio.gather(
            self._check("database", _database, services.databases, settings.resolved_database_url),
            self._check("redis", self._redis_ping, redis_url) if redis_url else _constant("not configured"))
        generation = served_generation(services)
        body: dict[str, Any] = {"status": "ready", "database": database, "redis": redis_state,
                                "index": "ok" if generation else "not loaded", "generation": generation}
        if database != "ok" or redis_state not in ("ok", "not configured") or not generation:
            body["status"] = "not ready"
            return 503, body
        return 200, body


async def _constant(value: str) -> str:
    return value


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0] if lines else ""


async def readyz(request: Request) -> JSONResponse:
    probe: ReadinessProbe = request.app.state.readiness
    status, body = await probe(getattr(request.app.state, "services", None))
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def database_unavailable_error(exc: BaseException) -> bool:
    """Whether `exc` says the database is out of reach (as opposed to a bad statement)."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def unavailable_response() -> JSONResponse:
    return JSONResponse(UNAVAILABLE, status_code=503, headers={"Retry-After": "5"})


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for SQLAlchemy's errors: 503 when the database is out of reach."""
    if not database_unavailable_error(exc):
        raise exc  # a bug, not an outage: the server's 500
    log.warning("database unavailable on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__,
                _first_line(exc))
    return unavailable_response()


class DatabaseUnavailableGuard:
    """The same 503 for an outage met by a middleware (the per-address limits, the CSRF check),
    outside the routes' exception handlers; the response must not have started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started or not database_unavailable_error(exc):
                raise
            log.warning("database unavailable on %s %s: %s: %s", scope.get("method"), scope.get("path"),
                        type(exc).__name__, _first_line(exc))
            await unavailable_response()(scope, receive, send)
