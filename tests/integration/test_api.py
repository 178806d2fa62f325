from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assistant.api import create_app
from assistant.core.settings import ApiSettings, Settings, get_settings
from tests.conftest import RESIDENT_HEADERS, SHARED_CACHE, TEST_API_KEYS


@pytest.fixture(scope="module")
def client(small_index_dir):
    settings = Settings(data_dir=small_index_dir / "var", embedding_cache=SHARED_CACHE,
                        corpus_dirs=[small_index_dir / "corpus"], law_corpus=None,
                        api=ApiSettings(keys=TEST_API_KEYS))
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, headers=RESIDENT_HEADERS) as c:
        yield c


def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["index_built"] is True


def test_ask_returns_the_documented_shape(client):
    response = client.post("/api/v1/ask", json={"question": "我奶奶今年92了，每个月能领多少高龄补贴？"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"answer", "refused", "confidence", "citations"}
    assert "500" in body["answer"] and body["citations"][0]["doc_id"] == "allowance"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"question": ""}, 422),
        ({"question": "   "}, 422),
        ({"question": "长" * 20000}, 422),
        ({"question": "\x00\x01\x02\x03\x04\x05"}, 422),
        ({"question": 123}, 422),
        ({}, 422),
    ],
)
def test_bad_questions_are_4xx_with_a_message(client, payload, status):
    response = client.post("/api/v1/ask", json=payload)
    assert response.status_code == status
    assert response.json()["message"]


def test_malformed_json_body(client):
    response = client.post("/api/v1/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_openapi_documents_chinese_examples(client):
    spec = client.get("/openapi.json").json()
    text = str(spec)
    assert "/api/v1/ask" in spec["paths"] and "/healthz" in spec["paths"]
    assert "高龄补贴" in text


def test_messages_keep_the_thread(client):
    first = client.post("/api/v1/messages", json={"session_id": "api-thread", "channel": "web", "user_id": "u1",
                                                  "text": "我奶奶今年92了，每个月能领多少高龄补贴？"})
    assert first.status_code == 200
    body = first.json()
    assert set(body) >= {"session_id", "reply_type", "text", "citations", "quick_replies"}
    assert body["reply_type"] == "answer" and "500元" in body["text"] and "ticket_id" not in body
    # The conversation belongs to the client's user u1: the same client speaking for another user is refused.
    assert client.post("/api/v1/messages", json={"session_id": "api-thread", "text": "那80岁呢?"}).status_code == 403
    follow = client.post("/api/v1/messages", json={"session_id": "api-thread", "user_id": "u1",
                                                   "text": "那80岁呢?"}).json()
    assert follow["reply_type"] == "refusal" and "80至89" in follow["text"]
    assert follow["citations"][0]["doc_id"] == "allowance"


def test_messages_emergency_opens_an_urgent_ticket(client):
    body = client.post("/api/v1/messages", json={"session_id": "api-emergency", "text": "我妈摔倒了起不来"}).json()
    assert body["reply_type"] == "emergency" and "120" in body["text"] and body["ticket_id"]


@pytest.mark.parametrize(
    ("text", "reply_type"),
    [("", "clarify"), ("   ", "clarify"), ("😀😀😀", "clarify"), ("长" * 10_000, "refusal"),
     ("失业登记 what materials 要带", None)],
)
def test_messages_bad_text_gets_a_reply_not_an_error(client, text, reply_type):
    response = client.post("/api/v1/messages", json={"session_id": f"api-bad-{len(text)}", "text": text})
    assert response.status_code == 200
    body = response.json()
    assert body["text"]
    if reply_type:
        assert body["reply_type"] == reply_type


def test_messages_unknown_session_starts_a_new_thread(client):
    body = client.post("/api/v1/messages", json={"session_id": "never-seen-before", "text": "在哪办?"}).json()
    assert body["reply_type"] in {"clarify", "refusal", "answer"} and body["session_id"] == "never-seen-before"


@pytest.mark.parametrize("payload", [{"text": "你好"}, {"session_id": "x"}, {"session_id": "", "text": "你好"},
                                     {"session_id": "x" * 200, "text": "你好"}])
def test_messages_malformed_request_is_a_chinese_422(client, payload):
    response = client.post("/api/v1/messages", json=payload)
    assert response.status_code == 422
    assert response.json()["message"]
