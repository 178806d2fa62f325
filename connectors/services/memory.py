"""An in-process connector that files nothing anywhere: for demos without the sandbox and for
outbox tests. It keeps the backend's promises (idempotent submit, status progression) and can
be switched "down" to act like an unreachable backend."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from connectors.services.base import BackendRejected, BackendStatus, BackendUnavailable, Submission
from connectors.services.http import refusals
from connectors.services.procedures import ProcedureCatalogue


class InMemoryServiceConnector:
    name = "memory"

    def __init__(self, procedures: ProcedureCatalogue | None = None) -> None:
        self.procedures = procedures or ProcedureCatalogue()
        self.down = False
        self.submissions_received = 0
        self._by_key: dict[str, str] = {}
        self._applications: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "procedures": self.procedures.ids()}

    def validate(self, procedure: str, data: dict[str, Any]) -> list[dict[str, str]]:
        return refusals(procedure, data, self.procedures)

    def submit(self, procedure: str, data: dict[str, Any], idempotency_key: str) -> Submission:
        if self.down:
            raise BackendUnavailable("政务系统暂时连不上，申请已排队，恢复后自动提交。", "Backend down.")
        if self.validate(procedure, data):
            raise BackendRejected(self.validate(procedure, data)[0]["message"], "Rejected.")
        with self._lock:
            self.submissions_received += 1
            if idempotency_key not in self._by_key:
                reference = f"MEM-{uuid.uuid4().hex[:8].upper()}"
                self._by_key[idempotency_key] = reference
                self._applications[reference] = {"procedure": procedure, "status": "submitted",
                                                 "history": [{"status": "submitted"}]}
            reference = self._by_key[idempotency_key]
        return Submission(reference, self._applications[reference]["status"])

    def status(self, reference: str) -> BackendStatus:
        if self.down:
            raise BackendUnavailable("政务系统暂时连不上。", "Backend down.")
        found = self._applications.get(reference)
        if found is None:
            raise BackendRejected(f"政务系统里没有编号 {reference}", f"Unknown reference {reference}")
        return BackendStatus(reference, found["procedure"], found["status"], found.get("reason"),
                             list(found["history"]))

    def cancel(self, reference: str) -> BackendStatus:
        found = self._applications[reference]
        if found["status"] in ("approved", "rejected"):
            raise BackendRejected("已经有审核结果，不能撤销。", "Already decided.")
        self.decide(reference, "cancelled")
        return self.status(reference)

    @property
    def applications(self) -> int:
        return len(self._applications)

    def decide(self, reference: str, status: str, reason: str | None = None) -> None:
        """Move an application on, as a reviewing officer would."""
        found = self._applications[reference]
        found["status"], found["reason"] = status, reason
        found["history"].append({"status": status, "reason": reason})
