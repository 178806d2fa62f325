from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assistant.api import create_app
from assistant.settings import Settings, get_settings
from tests.conftest import SHARED_CACHE


@pytest.fixture(scope="module")
def client(small_index_dir):
    settings = Settings(data_dir=small_index_dir / "var", embedding_cache=SHARED_CACHE,
                        corpus_dirs=[small_index_dir / "corpus"], law_corpus=None)
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as c:
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
