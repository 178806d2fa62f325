"""The sandbox government backend: filing, idempotency, its own validation, time-driven status,
cancellation, injected faults, persistence, and serving as a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from connectors.sandbox import SandboxSettings, create_sandbox_app
from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ID_CARD = "650203194501011234"
ALLOWANCE: dict[str, Any] = {"procedure": "elderly_allowance", "data": {"applicant_id": ID_CARD, "name": "王秀英"},
                             "applicant_ref": "A-1"}


def _client(tmp_path: Path, **overrides: Any) -> TestClient:
    return TestClient(create_sandbox_app(SandboxSettings(db_path=tmp_path / "sandbox.sqlite", seed=7, **overrides)))


def _submit(client: TestClient, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.post("/applications", json=body or ALLOWANCE, headers={"Idempotency-Key": key})


def test_submit_returns_a_reference(tmp_path):
    response = _submit(_client(tmp_path), "k-1")
    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(r"GOV-ELD-\d{8}-[0-9A-F]{6}", body["reference"])
    assert body["status"] == "submitted" and body["received_at"]


def test_same_key_returns_the_same_reference(tmp_path):
    client = _client(tmp_path)
    first, again = _submit(client, "k-1"), _submit(client, "k-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["reference"] == first.json()["reference"]
    assert _submit(client, "k-2").json()["reference"] != first.json()["reference"]
    assert client.get("/_stats").json() == {"submissions_received": 3, "applications": 2, "duplicates_refused": 1}


def test_missing_idempotency_key_is_refused(tmp_path):
    client = _client(tmp_path)
    response = client.post("/applications", json=ALLOWANCE)
    assert response.status_code == 400 and response.json()["error"] == "missing_idempotency_key"
    assert client.get("/_stats").json()["applications"] == 0


def test_unknown_procedure(tmp_path):
    response = _submit(_client(tmp_path), "k-1", {**ALLOWANCE, "procedure": "passport"})
    assert response.status_code == 422
    assert response.json()["error"] == "unknown_procedure" and "passport" in response.json()["message"]


@pytest.mark.parametrize("data", [{"applicant_id": "12345"}, {"name": "王秀英"}, {"applicant_id": 650203194501011234}])
def test_invalid_applicant_id_names_the_field(tmp_path, data):
    response = _submit(_client(tmp_path), "k-1", {**ALLOWANCE, "data": data})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_field" and response.json()["field"] == "applicant_id"


def test_empty_data_is_refused(tmp_path):
    response = _submit(_client(tmp_path), "k-1", {**ALLOWANCE, "data": {}})
    assert response.status_code == 422 and response.json()["field"] == "data"


def test_status_progresses_with_time(tmp_path):
    client = _client(tmp_path, review_after_s=0.3, decide_after_s=0.9)
    reference = _submit(client, "k-1").json()["reference"]
    assert client.get(f"/applications/{reference}").json()["status"] == "submitted"
    time.sleep(0.45)
    assert client.get(f"/applications/{reference}").json()["status"] == "under_review"
    time.sleep(0.6)
    body = client.get(f"/applications/{reference}").json()
    assert body["status"] == "approved" and "reason" not in body
    assert [step["status"] for step in body["history"]] == ["submitted", "under_review", "approved"]
    assert client.get(f"/applications/{reference}").json() == body  # recorded, not recomputed differently
    assert client.get("/applications/GOV-ELD-20000101-000000").status_code == 404


def test_rejection_carries_a_reason(tmp_path):
    client = _client(tmp_path, review_after_s=0.05, decide_after_s=0.1)
    body = {**ALLOWANCE, "data": {"applicant_id": ID_CARD, "sandbox_decision": "reject"}}
    reference = _submit(client, "k-1", body).json()["reference"]
    time.sleep(0.2)
    status = client.get(f"/applications/{reference}").json()
    assert status["status"] == "rejected" and status["reason"] == "材料不全：缺少户口簿复印件"
    assert status["history"][-1] == {"status": "rejected", "at": status["history"][-1]["at"],
                                     "reason": "材料不全：缺少户口簿复印件"}


def test_cancel_before_decision_and_conflict_after(tmp_path):
    client = _client(tmp_path, review_after_s=0.1, decide_after_s=0.3)
    early = _submit(client, "k-early").json()["reference"]
    cancelled = client.post(f"/applications/{early}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    late = _submit(client, "k-late").json()["reference"]
    time.sleep(0.4)
    conflict = client.post(f"/applications/{late}/cancel")
    assert conflict.status_code == 409 and conflict.json()["status"] == "approved"
    assert client.get(f"/applications/{early}").json()["status"] == "cancelled"  # a cancelled one is never decided
    assert client.post("/applications/GOV-ELD-20000101-000000/cancel").status_code == 404


def test_error500_fault_can_be_switched_on_and_off(tmp_path):
    client = _client(tmp_path)
    assert client.post("/_admin/faults", json={"fault": "error500"}).json()["fault"] == "error500"
    assert _submit(client, "k-1").status_code == 500
    assert client.get("/applications/anything").status_code == 500
    assert client.get("/healthz").status_code == 200 and client.get("/_stats").status_code == 200
    client.post("/_admin/faults", json={"fault": "none"})
    assert _submit(client, "k-1").status_code == 201
    assert client.get("/_stats").json()["submissions_received"] == 1  # the refused ones never got through


def test_flaky_fault_fails_submits(tmp_path):
    client = _client(tmp_path)
    client.post("/_admin/faults", json={"fault": "flaky", "fail_rate": 1.0})
    assert _submit(client, "k-1").status_code == 500
    assert client.get("/_stats").json() == {"submissions_received": 0, "applications": 0, "duplicates_refused": 0}
    assert client.post("/_admin/faults", json={"fault": "broken"}).status_code == 422


def test_timeout_fault_and_latency_delay_answers(tmp_path):
    client = _client(tmp_path, fault="timeout", timeout_s=0.3, latency_ms=100)
    started = time.monotonic()
    assert _submit(client, "k-1").status_code == 201
    assert time.monotonic() - started >= 0.4
    client.post("/_admin/faults", json={"fault": "none", "latency_ms": 0})
    started = time.monotonic()
    client.get("/healthz")
    assert time.monotonic() - started < 0.3


def test_state_survives_a_new_app_on_the_same_file(tmp_path):
    reference = _submit(_client(tmp_path), "k-1").json()["reference"]
    restarted = _client(tmp_path)
    assert restarted.get(f"/applications/{reference}").json()["reference"] == reference
    again = _submit(restarted, "k-1")
    assert again.status_code == 200 and again.json()["reference"] == reference
    assert restarted.get("/_stats").json() == {"submissions_received": 2, "applications": 1, "duplicates_refused": 1}


def test_serves_as_a_real_process(tmp_path):
    port = free_port()
    env = {**os.environ, "LINLI_SANDBOX_DB_PATH": str(tmp_path / "sandbox.sqlite")}
    process = subprocess.Popen([sys.executable, "-m", "connectors.sandbox", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"{base}/healthz", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "sandbox did not start within 30 s"
                time.sleep(0.2)
        response = httpx.post(f"{base}/applications", json=ALLOWANCE, headers={"Idempotency-Key": "k-1"}, timeout=10)
        assert response.status_code == 201
        status = httpx.get(f"{base}/applications/{response.json()['reference']}", timeout=10).json()
        assert status["status"] == "submitted" and status["procedure"] == "elderly_allowance"
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert (tmp_path / "sandbox.sqlite").exists()
