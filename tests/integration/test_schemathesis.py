"""Schemathesis against a real `linli serve`: every operation of /openapi.json, called with
generated (valid and invalid) input and real credentials (a worker's bearer token, a resident's
session token and the integration key), must never answer with a 5xx. So must the two doors that
are not in the public schema (issue 28): the WeChat callback, with every generated message signed
as WeChat signs it, and the knowledge-base upload, with generated files and front matter.

Bounded and repeatable: 10 valid and 10 invalid examples per operation (25 each for the WeChat
callback and the upload), derandomized (a fixed seed)."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from assistant.escalation.auth import UserStore
from tests.conftest import SHARED_CACHE, TEST_API_KEY, free_port
from tests.integration.test_reliability import _start_server

pytestmark = pytest.mark.integration
PASSWORD = "schema-worker-password"
WECHAT_TOKEN = "schema-wechat-token"
# Operations that would end the credentials the run itself uses.
ENDS_CREDENTIALS = ("/api/v1/auth/logout", "/api/v1/sessions/end")
# Per operation and mode (valid input, then invalid): about a minute for the whole API.
EXAMPLES = 10


@pytest.fixture(scope="module")
def linli_server(databases, small_index_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    # A copy of the small index: generated uploads change it, and other modules share the original.
    shutil.copytree(small_index_dir / "corpus", root / "kb" / "corpus")
    shutil.copytree(small_index_dir / "var" / "index", root / "kb" / "var" / "index")
    small_index_dir = root / "kb"
    data_dir = root / "var"
    data_dir.mkdir()
    users = UserStore(databases.engine(f"sqlite:///{data_dir / 'linli.sqlite'}"))
    users.add("wang", PASSWORD, role="worker", centre="default")
    users.add("boss", PASSWORD, role="admin", centre="default")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               LINLI_LIMITS__REQUESTS_PER_CLIENT_PER_MINUTE="100000",
               LINLI_LIMITS__SESSIONS_PER_CLIENT_PER_MINUTE="100000", LINLI_WECHAT__TOKEN=WECHAT_TOKEN,
               LINLI_WECHAT__API_BASE=f"http://127.0.0.1:{free_port()}", LINLI_PRIVACY__DEVELOPMENT="true")
    port = free_port()
    process = _start_server(env, port)
    base = f"http://127.0.0.1:{port}"
    token = httpx.post(f"{base}/api/v1/auth/token", json={"username": "wang", "password": PASSWORD}).json()["token"]
    session = httpx.post(f"{base}/api/v1/sessions", json={"channel": "chat", "centre": None})
    headers = {"Authorization": f"Bearer {token}", "X-API-Key": TEST_API_KEY}
    admin = httpx.post(f"{base}/api/v1/auth/token", json={"username": "boss", "password": PASSWORD}).json()["token"]
    if session.status_code == 201:
        headers["X-Session-Token"] = session.json()["session_token"]
    try:
        yield {"base": base, "headers": headers, "admin": {"Authorization": f"Bearer {admin}",
                                                           "Accept": "application/json"}}
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


# ---- the doors outside the public schema -----------------------------------------------------------

NEW_DOORS = {"openapi": "3.0.2", "info": {"title": "Linli: WeChat callback and knowledge-base upload", "version": "1"},
             "paths": {
    "/wechat/callback": {"post": {
        "parameters": [{"name": "encrypt_type", "in": "query", "schema": {"type": "string", "enum": ["raw", "aes"]}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["FromUserName", "MsgType"], "properties": {
                "FromUserName": {"type": "string", "maxLength": 200},
                "MsgType": {"type": "string", "enum": ["text", "voice", "image", "location", "event", "link", "x"]},
                "Content": {"type": "string", "maxLength": 3000},
                "MsgId": {"type": "integer"},
                "CreateTime": {"type": "integer"},
                "Event": {"type": "string", "enum": ["subscribe", "unsubscribe", "CLICK", "VIEW", "SCAN", ""]},
                "EventKey": {"type": "string"},
                "MediaId": {"type": "string"},
                "Format": {"type": "string"},
                "Location_X": {"type": "number"}, "Location_Y": {"type": "number"}, "Label": {"type": "string"},
                "Encrypt": {"type": "string"}},
            "example": {"FromUserName": "o-fuzz", "MsgType": "text", "Content": "高龄津贴怎么领", "MsgId": 1}}}}},
        "responses": {"200": {"description": "success, or a passive reply"}}}},
    "/admin/kb/upload": {"post": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["name", "suffix"], "properties": {
                "name": {"type": "string", "maxLength": 300},
                "suffix": {"type": "string", "enum": [".md", ".txt", ".html", ".pdf", ".docx", ".exe", ""]},
                # Mostly plausible front matter (known categories, dates, languages), so that some
                # generated files get through the checks to indexing and the smoke questions.
                "front_matter": {"type": "object", "required": ["id", "title", "category", "region", "source",
                                                                "effective_from", "version", "language"],
                                 "properties": {
                    "id": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,20}$"}, "title": {},
                    "category": {"anyOf": [{"enum": ["elderly_care", "employment", "pension"]}, {"type": "string"}]},
                    "region": {"type": "string"}, "source": {},
                    "effective_from": {"anyOf": [{"enum": ["2025-01-01", "2024-06-30"]}, {"type": "string"}]},
                    "version": {}, "language": {"enum": ["zh", "en", "fr"]},
                    "benefit_tables": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "subject": {"type": "string"},
                        "rows": {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
                            "min": {}, "max": {}, "amount": {}}}}}}}}},
                "body": {"type": "string", "maxLength": 5000},
                "region": {"type": "string"}, "category": {"type": "string"},
                "effective_from": {"type": "string"}},
            "example": {"name": "助浴服务", "suffix": ".md", "body": "# 助浴服务\n\n社区助浴每次收费20元。\n",
                        "front_matter": {"id": "fuzz-bath", "title": "助浴服务", "category": "elderly_care",
                                         "region": "karamay", "source": "fuzz", "effective_from": "2025-01-01",
                                         "version": "1", "language": "zh", "benefit_tables": [
                                             {"id": "fuzz_table", "subject": "助浴补贴",
                                              "rows": [{"min": 80, "amount": 30}]}]}}}}}},
        "responses": {"202": {"description": "indexing"}, "422": {"description": "a clear refusal"}}}},
}}
NEW_DOOR_EXAMPLES = 25


def _wechat_xml(fields: dict) -> str:
    """The generated message as WeChat's XML (CDATA for text: what WeChat sends)."""
    parts = "".join(f"<{k}><![CDATA[{v}]]></{k}>" if isinstance(v, str) else f"<{k}>{v}</{k}>"
                    for k, v in fields.items() if not isinstance(v, dict | list))
    return f"<xml><ToUserName><![CDATA[gh_linli]]></ToUserName>{parts}</xml>"


def _signed() -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def _upload_files(fields: dict) -> list:
    body = str(fields.get("body", ""))
    head = fields.get("front_matter")
    text = f"---\n{yaml.safe_dump(head, allow_unicode=True)}---\n{body}" if isinstance(head, dict) else body
    name = f"{str(fields.get('name', ''))[:100]}{fields.get('suffix', '')}"
    return [("files", (name or "x", text.encode("utf-8", "surrogatepass"), "application/octet-stream"))]


def _send_to_a_new_door(server: dict, path: str, case) -> httpx.Response:
    fields = case.body if isinstance(case.body, dict) else {"raw": case.body}
    with httpx.Client(base_url=server["base"], timeout=60) as client:
        if path == "/wechat/callback":
            query = {**_signed(), **{k: v for k, v in (case.query or {}).items() if isinstance(v, str)}}
            return client.post(path, params=query, content=_wechat_xml(fields).encode("utf-8", "surrogatepass"))
        form = {k: v for k, v in fields.items() if k in ("region", "category", "effective_from") and isinstance(v, str)}
        return client.post(path, files=_upload_files(fields), data=form, headers=server["admin"])


@pytest.mark.parametrize("path", ["/wechat/callback", "/admin/kb/upload"])
def test_the_new_doors_never_give_a_server_error(linli_server, path):
    """Generated messages, every one signed (so they get past the signature to the parser, the
    dedup and the queue), and generated files with generated front matter (through the child
    process that reads them, the schema and the smoke question): never a 5xx."""
    operation = next(r.ok() for r in schemathesis.openapi.from_dict(NEW_DOORS).get_all_operations()
                     if r.ok().path == path)
    statuses: list[int] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=NEW_DOOR_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def call(case):
            response = _send_to_a_new_door(linli_server, path, case)
            statuses.append(response.status_code)
            assert response.status_code < 500, (response.status_code, response.text[:300], case.body)

        call()
    print(f"\n{path}: {len(statuses)} generated requests, statuses {sorted(set(statuses))}")
    assert len(statuses) >= NEW_DOOR_EXAMPLES
    # Whatever was accepted, residents are still answered.
    asked = httpx.post(f"{linli_server['base']}/api/v1/ask", json={"question": "高龄津贴每月多少钱？"},
                       headers={"X-API-Key": TEST_API_KEY}, timeout=60)
    assert asked.status_code == 200, asked.text
