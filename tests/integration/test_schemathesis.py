"""Schemathesis against a real `linli serve`: every operation of /openapi.json, called with
generated (valid and invalid) input and real credentials (a worker's bearer token, a resident's
session token and the integration key), must never answer with a 5xx.

Bounded and repeatable: 10 valid and 10 invalid examples per operation, derandomized (a fixed seed)."""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from assistant.escalation.auth import UserStore
from tests.conftest import SHARED_CACHE, TEST_API_KEY, free_port
from tests.integration.test_reliability import _start_server

pytestmark = pytest.mark.integration
PASSWORD = "schema-worker-password"
# Operations that would end the credentials the run itself uses.
ENDS_CREDENTIALS = ("/api/v1/auth/logout", "/api/v1/sessions/end")
# Per operation and mode (valid input, then invalid): about a minute for the whole API.
EXAMPLES = 10


@pytest.fixture(scope="module")
def linli_server(small_index_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("schemathesis") / "var"
    data_dir.mkdir()
    UserStore(f"sqlite:///{data_dir / 'linli.sqlite'}").add("wang", PASSWORD, role="worker", centre="default")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               LINLI_LIMITS__REQUESTS_PER_CLIENT_PER_MINUTE="100000",
               LINLI_LIMITS__SESSIONS_PER_CLIENT_PER_MINUTE="100000")
    port = free_port()
    process = _start_server(env, port)
    base = f"http://127.0.0.1:{port}"
    token = httpx.post(f"{base}/api/v1/auth/token", json={"username": "wang", "password": PASSWORD}).json()["token"]
    session = httpx.post(f"{base}/api/v1/sessions", json={"channel": "chat", "centre": None})
    headers = {"Authorization": f"Bearer {token}", "X-API-Key": TEST_API_KEY}
    if session.status_code == 201:
        headers["X-Session-Token"] = session.json()["session_token"]
    try:
        yield {"base": base, "headers": headers}
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_no_input_gives_a_server_error(linli_server):
    """Each operation with positive and negative input. A loop over the operations rather than
    `schemathesis.pytest.from_fixture` (its lazy parametrization fails under pytest 9)."""
    schema = schemathesis.openapi.from_url(f"{linli_server['base']}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, "the schema lists the API's operations"
    for operation in operations:
        if operation.path in ENDS_CREDENTIALS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            def call(case):
                case.call_and_validate(base_url=linli_server["base"], headers=linli_server["headers"],
                                       checks=[not_a_server_error], timeout=60)

            try:
                call()
            except Unsatisfiable:
                pass  # nothing in this operation can be made invalid (no parameters, no body)
            except Exception as exc:  # noqa: BLE001 - every operation runs; the failures are listed at the end
                failures.append(f"{operation.label} ({mode}): {str(exc)[:800]}")
    assert failures == [], "\n\n".join(failures)
