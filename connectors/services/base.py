"""The `ServiceConnector` seam: how Linli files a procedure with a government system."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from assistant.core.errors import LinliError


@dataclass(frozen=True)
class Submission:
    reference: str
    status: str


@dataclass(frozen=True)
class BackendStatus:
    reference: str
    procedure: str
    status: str
    reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class BackendUnavailable(LinliError):
    """The backend could not be reached or failed; the application stays queued."""

    code = "backend_unavailable"
    http_status = 503


class BackendRejected(LinliError):
    """The backend refused the data itself; retrying will not help, a worker must look."""

    code = "backend_rejected"
    http_status = 422


@runtime_checkable
class ServiceConnector(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """What this connector files: its name and the procedures it accepts."""

    def validate(self, procedure: str, data: dict[str, Any]) -> list[dict[str, str]]:
        """Errors the backend would raise for this data ({field, message}), checked before filing."""

    def submit(self, procedure: str, data: dict[str, Any], idempotency_key: str) -> Submission:
        """File once: the same key always yields the same reference."""

    def status(self, reference: str) -> BackendStatus: ...

    def cancel(self, reference: str) -> BackendStatus: ...
