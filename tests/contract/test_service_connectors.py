"""One contract every ServiceConnector passes: the in-process connector, and the HTTP connector
against the sandbox backend running as its own process."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from connectors.services.base import BackendRejected, BackendUnavailable, ServiceConnector
from connectors.services.http import HttpServiceConnector
from connectors.services.memory import InMemoryServiceConnector
from tests.conftest import free_port, set_fault

DATA = {"applicant_name": "王秀英", "applicant_id": "650202193401010022", "mobile": "13812345678"}


@pytest.fixture(params=["memory", "http"])
def connector(request) -> ServiceConnector:
    if request.param == "memory":
        return InMemoryServiceConnector()
    base = request.getfixturevalue("sandbox")
    set_fault(base, fault="none")
    return HttpServiceConnector(base, timeout_s=2, attempts=2, breaker_threshold=2, breaker_cooldown_s=0.5)


def _down(connector: ServiceConnector, down: bool) -> None:
    if isinstance(connector, InMemoryServiceConnector):
        connector.down = down
    else:
        set_fault(connector.base_url, fault="error500" if down else "none")


def test_describe_lists_every_procedure(connector):
    described = connector.describe()
    assert described["name"] == connector.name
    assert {"elderly_allowance", "pension_certification", "unemployment_registration", "medical_insurance_enrolment",
            "legal_aid", "appointment"} <= set(described["procedures"])


def test_validate_names_the_problem(connector):
    assert connector.validate("elderly_allowance", DATA) == []
    assert connector.validate("parking_permit", DATA)[0]["field"] == "procedure"
    assert connector.validate("elderly_allowance", {})[0]["field"] == "data"


def test_submit_is_idempotent_and_status_follows(connector):
    key = uuid.uuid4().hex
    first = connector.submit("elderly_allowance", DATA, idempotency_key=key)
    again = connector.submit("elderly_allowance", DATA, idempotency_key=key)
    assert first.reference == again.reference and first.status == "submitted"
    status = connector.status(first.reference)
    assert status.procedure == "elderly_allowance" and status.status in ("submitted", "under_review", "approved")
    assert status.history and status.history[0]["status"] == "submitted"


def test_cancel_before_a_decision(connector):
    reference = connector.submit("appointment", {"service": "elderly"}, idempotency_key=uuid.uuid4().hex).reference
    assert connector.cancel(reference).status == "cancelled"


def test_unknown_reference_and_refused_data(connector):
    with pytest.raises(BackendRejected):
        connector.status("GOV-NOPE-20260101-000000")
    with pytest.raises(BackendRejected):
        connector.submit("no_such_procedure", DATA, idempotency_key=uuid.uuid4().hex)


def test_a_dead_backend_is_unavailable_not_an_error(connector):
    _down(connector, True)
    try:
        with pytest.raises(BackendUnavailable):
            connector.submit("elderly_allowance", DATA, idempotency_key=uuid.uuid4().hex)
    finally:
        _down(connector, False)


def test_circuit_breaker_stops_calling_a_dead_backend(sandbox):
    connector = HttpServiceConnector(sandbox, timeout_s=2, attempts=1, breaker_threshold=2, breaker_cooldown_s=0.5)
    before = httpx.get(f"{sandbox}/_stats").json()["submissions_received"]
    set_fault(sandbox, fault="error500")
    try:
        for _ in range(2):
            with pytest.raises(BackendUnavailable):
                connector.submit("elderly_allowance", DATA, idempotency_key=uuid.uuid4().hex)
        assert connector.breaker.state == "open"
        with pytest.raises(BackendUnavailable) as caught:
            connector.submit("elderly_allowance", DATA, idempotency_key=uuid.uuid4().hex)
        assert caught.value.details.get("breaker") == "open"
    finally:
        set_fault(sandbox, fault="none")
    time.sleep(0.6)  # half-open: one trial call closes it again
    connector.submit("elderly_allowance", DATA, idempotency_key=uuid.uuid4().hex)
    assert connector.breaker.state == "closed"
    assert httpx.get(f"{sandbox}/_stats").json()["submissions_received"] == before + 1


def test_connection_refused_is_unavailable():
    connector = HttpServiceConnector(f"http://127.0.0.1:{free_port()}", timeout_s=1, attempts=2)
    with pytest.raises(BackendUnavailable):
        connector.submit("elderly_allowance", DATA, idempotency_key="k")
