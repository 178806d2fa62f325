"""The sandbox backend: a small FastAPI app that files applications into its own SQLite file.

Handlers are ``async`` on purpose: the SQLite calls are short and synchronous, so running them on
the event loop serialises every read-modify-write without a lock (a threadpool would not)."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.services.procedures import ProcedureCatalogue

Fault = Literal["none", "error500", "timeout", "flaky"]

DECIDED = ("approved", "rejected")
REJECT_REASON = "材料不全：缺少户口簿复印件"

SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    reference       TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    procedure       TEXT NOT NULL,
    applicant_ref   TEXT NOT NULL,
    data            TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT,
    received_ts     REAL NOT NULL,
    history         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINLI_SANDBOX_")

    db_path: Path = Path("var/sandbox.sqlite")
    latency_ms: int = Field(0, ge=0)
    fault: Fault = "none"
    fail_rate: float = Field(0.0, ge=0.0, le=1.0)
    timeout_s: float = Field(30, ge=0)
    review_after_s: float = Field(2.0, ge=0)
    decide_after_s: float = Field(5.0, ge=0)
    seed: int | None = None
    # The procedures it takes: the same files Linli files from (None: the shipped ones).
    procedures_dir: Path | None = None


class FaultUpdate(BaseModel):
    """Body of ``POST /_admin/faults``: only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = Field(None, ge=0)
    fault: Fault | None = None
    fail_rate: float | None = Field(None, ge=0.0, le=1.0)
    timeout_s: float | None = Field(None, ge=0)
    seed: int | None = None


class ApplicationIn(BaseModel):
    procedure: str
    data: dict[str, Any]
    applicant_ref: str


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def _error(http_status: int, error: str, message: str, /, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=http_status)


class SandboxStore:
    """The backend's state: applications and counters, in one SQLite file that survives restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation keeps the store usable from any thread and any process.
        with closing(sqlite3.connect(self.path, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            with conn:  # one transaction, committed on success
                yield conn

    def bump(self, name: str) -> None:
        with self._connect() as conn:
            conn.execute("INSERT INTO counters(name, value) VALUES (?, 1) "
                         "ON CONFLICT(name) DO UPDATE SET value = value + 1", (name,))

    def stats(self) -> dict[str, int]:
        with self._connect() as conn:
            counters = {row["name"]: row["value"] for row in conn.execute("SELECT name, value FROM counters")}
            distinct = conn.execute("SELECT COUNT(*) FROM applications").fetchone()[0]
        return {"submissions_received": counters.get("submissions_received", 0), "applications": distinct,
                "duplicates_refused": counters.get("duplicates_refused", 0)}

    def by_key(self, key: str) -> sqlite3.Row | None:
        with self._connect() as conn:
            return conn.execute("SELECT * FROM applications WHERE idempotency_key = ?", (key,)).fetchone()

    def get(self, reference: str) -> sqlite3.Row | None:
        with self._connect() as conn:
            return conn.execute("SELECT * FROM applications WHERE reference = ?", (reference,)).fetchone()

    def insert(self, reference: str, key: str, body: ApplicationIn, now: float) -> bool:
        """False when the reference or the key is already taken."""
        history = [{"status": "submitted", "at": _iso(now)}]
        try:
            with self._connect() as conn:
                conn.execute(
                    "INSERT INTO applications(reference, idempotency_key, procedure, applicant_ref, data, status,"
                    " received_ts, history) VALUES (?, ?, ?, ?, ?, 'submitted', ?, ?)",
                    (reference, key, body.procedure, body.applicant_ref, json.dumps(body.data, ensure_ascii=False),
                     now, json.dumps(history, ensure_ascii=False)))
        except sqlite3.IntegrityError:
            return False
        return True

    def update(self, reference: str, status: str, reason: str | None, history: list[dict[str, Any]]) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE applications SET status = ?, reason = ?, history = ? WHERE reference = ?",
                         (status, reason, json.dumps(history, ensure_ascii=False), reference))


class Sandbox:
    """Behaviour on top of the store: references, time-driven status, the faults in force now."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.store = SandboxStore(settings.db_path)
        self.rng = random.Random(settings.seed)
        self.procedures = ProcedureCatalogue(settings.procedures_dir)

    def set_faults(self, update: FaultUpdate) -> dict[str, Any]:
        changes = update.model_dump(exclude_unset=True)
        if "seed" in changes:
            self.rng.seed(changes["seed"])
        self.settings = self.settings.model_copy(update=changes)
        return self.faults()

    def faults(self) -> dict[str, Any]:
        return self.settings.model_dump(include={"latency_ms", "fault", "fail_rate", "timeout_s", "seed"})

    def new_reference(self, procedure: str, now: float) -> str:
        day = datetime.fromtimestamp(now).strftime("%Y%m%d")
        # The procedure's short code makes a reference readable at a glance: GOV-ELD-20250101-1A2B3C.
        code = self.procedures.get(procedure).backend_code
        return f"GOV-{code}-{day}-{self.rng.getrandbits(24):06X}"

    def repeat(self, row: sqlite3.Row) -> JSONResponse:
        """The answer to an Idempotency-Key seen before: the original reference, never a new application."""
        self.store.bump("duplicates_refused")
        return JSONResponse({"reference": row["reference"], "status": self.view(row)["status"],
                             "received_at": _iso(row["received_ts"])}, status_code=200)

    def view(self, row: sqlite3.Row) -> dict[str, Any]:
        """The application as the backend reports it, after catching its status up with the clock."""
        status, reason, history = row["status"], row["reason"], json.loads(row["history"])
        if status in ("submitted", "under_review"):
            received, elapsed = row["received_ts"], time.time() - row["received_ts"]
            review_after, decide_after = self.settings.review_after_s, self.settings.decide_after_s
            if status == "submitted" and elapsed >= min(review_after, decide_after):
                status = "under_review"
                history.append({"status": status, "at": _iso(received + min(review_after, decide_after))})
            if elapsed >= decide_after:
                # Decided from the data alone, so a test can ask for either outcome.
                rejected = json.loads(row["data"]).get("sandbox_decision") == "reject"
                status, reason = ("rejected", REJECT_REASON) if rejected else ("approved", None)
                entry = {"status": status, "at": _iso(received + decide_after)}
                history.append(entry | ({"reason": reason} if reason else {}))
            if status != row["status"]:
                self.store.update(row["reference"], status, reason, history)
        out: dict[str, Any] = {"reference": row["reference"], "procedure": row["procedure"], "status": status,
                               "history": history}
        if reason:
            out["reason"] = reason
        return out


def create_sandbox_app(settings: SandboxSettings | None = None) -> FastAPI:
    sandbox = Sandbox(settings or SandboxSettings())
    app = FastAPI(title="Linli sandbox government backend",
                  description="Stand-in for a government service system; development and tests only.")
    app.state.sandbox = sandbox

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        return _error(422, "invalid_request", first.get("msg", "请求格式不正确"), field=field)

    @app.middleware("http")
    async def latency_and_faults(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        current = sandbox.settings
        if current.latency_ms:
            await asyncio.sleep(current.latency_ms / 1000)
        # Faults hit only the business endpoints: tests must still be able to reach /_admin to
        # bring the backend back, and /_stats to see what got through.
        if request.url.path.startswith("/applications"):
            is_submit = request.method == "POST" and request.url.path == "/applications"
            if current.fault == "error500":
                return _error(500, "sandbox_fault", "模拟故障：政务系统内部错误")
            if current.fault == "timeout":
                await asyncio.sleep(current.timeout_s)
            if current.fault == "flaky" and is_submit and sandbox.rng.random() < current.fail_rate:
                return _error(500, "sandbox_fault", "模拟故障：政务系统偶发错误")
            if is_submit:
                # Counted here rather than in the handler so that malformed bodies count too.
                sandbox.store.bump("submissions_received")
        return await call_next(request)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "fault": sandbox.settings.fault}

    @app.get("/_stats")
    async def stats() -> dict[str, int]:
        return sandbox.store.stats()

    @app.post("/_admin/faults")
    async def set_faults(update: FaultUpdate) -> dict[str, Any]:
        return sandbox.set_faults(update)

    @app.post("/applications", status_code=201)
    async def submit(body: ApplicationIn, idempotency_key: str | None = Header(None)) -> JSONResponse:
        store = sandbox.store
        if not idempotency_key:
            return _error(400, "missing_idempotency_key", "缺少 Idempotency-Key 请求头")
        if (existing := store.by_key(idempotency_key)) is not None:
            return sandbox.repeat(existing)
        if body.procedure not in sandbox.procedures.all():
            return _error(422, "unknown_procedure", f"本系统不受理这个办事项目：{body.procedure}")
        if not body.data:
            return _error(422, "invalid_field", "申请内容不能为空", field="data")
        applicant_id = body.data.get("applicant_id")
        if body.procedure == "elderly_allowance" and not (isinstance(applicant_id, str) and len(applicant_id) == 18):
            return _error(422, "invalid_field", "身份证号码应为18位", field="applicant_id")
        now = time.time()
        while not store.insert(reference := sandbox.new_reference(body.procedure, now), idempotency_key, body, now):
            # Either a reference collision (draw again) or the same key filed in the meantime.
            if (existing := store.by_key(idempotency_key)) is not None:
                return sandbox.repeat(existing)
        return JSONResponse({"reference": reference, "status": "submitted", "received_at": _iso(now)},
                            status_code=201)

    @app.get("/applications/{reference}")
    async def status(reference: str) -> JSONResponse:
        row = sandbox.store.get(reference)
        if row is None:
            return _error(404, "not_found", f"查无此申请：{reference}")
        return JSONResponse(sandbox.view(row))

    @app.post("/applications/{reference}/cancel")
    async def cancel(reference: str) -> JSONResponse:
        row = sandbox.store.get(reference)
        if row is None:
            return _error(404, "not_found", f"查无此申请：{reference}")
        current = sandbox.view(row)
        if current["status"] in DECIDED:
            decided = "批准" if current["status"] == "approved" else "驳回"
            return _error(409, "already_decided", f"申请已{decided}，不能撤回", status=current["status"])
        if current["status"] != "cancelled":  # cancelling twice is harmless
            current["history"].append({"status": "cancelled", "at": _iso(time.time())})
            current["status"] = "cancelled"
            sandbox.store.update(reference, "cancelled", None, current["history"])
        return JSONResponse(current)

    return app
