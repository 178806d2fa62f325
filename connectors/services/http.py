"""The HTTP service connector: httpx with timeouts, tenacity retries with exponential backoff
and jitter for transient failures, and a circuit breaker so a dead backend is not hammered
(the application stays in the outbox and the resident hears that it is queued)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from connectors.services.base import BackendRejected, BackendStatus, BackendUnavailable, Submission
from connectors.services.procedures import ProcedureCatalogue

log = logging.getLogger("linli.connectors")


class _Transient(Exception):
    """A failure worth retrying: connection refused, timeout, 5xx."""


class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures → half-open after `cooldown_s`: one
    trial call decides whether it closes again."""

    def __init__(self, threshold: int = 3, cooldown_s: float = 30.0) -> None:
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if time.monotonic() - self.opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        return self.state != "open"

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold or self.opened_at is not None:
                self.opened_at = time.monotonic()


def refusals(procedure: str, data: dict[str, Any], procedures: ProcedureCatalogue) -> list[dict[str, str]]:
    """What the government backend refuses before filing ({field, message, message_en}): a
    procedure it does not take (one no file in the catalogue declares), an empty application.
    The HTTP connector and the in-memory one answer the same."""
    if procedure not in procedures.all():
        return [{"field": "procedure", "message": f"后台不受理这个办事项目：{procedure}",
                 "message_en": f"The government system does not take this procedure: {procedure}"}]
    if not data:
        return [{"field": "data", "message": "申请内容不能为空", "message_en": "The application is empty."}]
    return []


class HttpServiceConnector:
    name = "http"

    def __init__(self, base_url: str, *, timeout_s: float = 5.0, attempts: int = 3, breaker_threshold: int = 3,
                 breaker_cooldown_s: float = 30.0, transport: httpx.BaseTransport | None = None,
                 procedures: ProcedureCatalogue | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.procedures = procedures or ProcedureCatalogue()
        self.client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout_s), transport=transport)
        self.attempts = attempts
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "base_url": self.base_url, "procedures": self.procedures.ids(),
                "breaker": self.breaker.state}

    def validate(self, procedure: str, data: dict[str, Any]) -> list[dict[str, str]]:
        return refusals(procedure, data, self.procedures)

    def submit(self, procedure: str, data: dict[str, Any], idempotency_key: str) -> Submission:
        body = self._call("POST", "/applications", json={"procedure": procedure, "data": data,
                                                         "applicant_ref": idempotency_key},
                          headers={"Idempotency-Key": idempotency_key})
        return Submission(body["reference"], body["status"])

    def status(self, reference: str) -> BackendStatus:
        body = self._call("GET", f"/applications/{reference}")
        return BackendStatus(body["reference"], body["procedure"], body["status"], body.get("reason"),
                             body.get("history", []))

    def cancel(self, reference: str) -> BackendStatus:
        self._call("POST", f"/applications/{reference}/cancel")
        return self.status(reference)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if not self.breaker.allow():
            raise BackendUnavailable("政务系统暂时连不上，申请已排队，恢复后自动提交。",
                                     "The government system is unreachable; the application is queued.",
                                     breaker="open")
        try:
            response = self._with_retries(method, path, **kwargs)
        except _Transient as exc:
            self.breaker.failure()
            log.warning("backend %s %s failed after retries: %s (breaker %s)", method, path, exc, self.breaker.state)
            raise BackendUnavailable("政务系统暂时连不上，申请已排队，恢复后自动提交。",
                                     "The government system is unreachable; the application is queued.",
                                     reason=str(exc)[:200]) from exc
        self.breaker.success()
        if response.status_code >= 400:
            detail = _json(response)
            raise BackendRejected(detail.get("message") or f"政务系统拒绝了申请（{response.status_code}）",
                                  f"The government system refused the application ({response.status_code}).",
                                  field=detail.get("field"), status=response.status_code)
        return _json(response)

    def _with_retries(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        @retry(stop=stop_after_attempt(self.attempts),
               wait=wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.3),
               retry=retry_if_exception_type(_Transient), reraise=True)
        def attempt() -> httpx.Response:
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:  # refused, reset, timed out
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code >= 500:
                raise _Transient(f"HTTP {response.status_code}")
            return response

        return attempt()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
