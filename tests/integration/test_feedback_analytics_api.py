"""Feedback and analytics through the app, as a resident and an administrator use them: a page
session's answers carry their turn id, the resident rates one (only their own), and the
administrators' analytics page, its CSV exports and the linked conversation show it."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from assistant.core.settings import Settings
from tests.conftest import SHARED_CACHE
from tests.integration.conftest import app_with_staff, bearer

REFUSED = "月球上的医保怎么报销"


@pytest.fixture(scope="module")
def app_and_users(small_index_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("feedback-analytics") / "var"
    settings = Settings(data_dir=data_dir, index_dir=small_index_dir / "var" / "index", embedding_cache=SHARED_CACHE,
                        corpus_dirs=[small_index_dir / "corpus"], law_corpus=None)
    with app_with_staff(settings) as client_and_users:
        yield client_and_users


@pytest.fixture(scope="module")
def client(app_and_users) -> TestClient:
    return app_and_users[0]




def _page(client: TestClient) -> dict[str, str]:
    minted = client.post("/api/v1/sessions", json={"channel": "kiosk"})
    assert minted.status_code == 201
    return minted.json()


def _say(client: TestClient, session: dict[str, str], text: str) -> dict:
    response = client.post("/api/v1/messages", json={"text": text, "message_id": f"m-{text}"},
                           headers={"X-Session-Token": session["session_token"]})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def rated(client: TestClient) -> dict:
    """A kiosk visitor asks two questions and rates both answers."""
    session = _page(client)
    answered = _say(client, session, "我奶奶今年92了，每个月能领多少高龄补贴？")
    refused = _say(client, session, REFUSED)
    assert answered["reply_type"] == "answer" and isinstance(answered["turn_id"], int)
    assert refused["reply_type"] == "refusal" and refused["turn_id"] > answered["turn_id"]
    own = {"X-Session-Token": session["session_token"]}
    up = client.post(f"/api/v1/turns/{answered['turn_id']}/feedback", json={"rating": "up"}, headers=own)
    assert up.status_code == 200 and up.json() == {"turn_id": answered["turn_id"], "rating": "up", "reason": None,
                                                   "comment": None, "replaced": False}
    return {"session": session, "answered": answered, "refused": refused, "own": own}


def test_rating_twice_replaces_and_only_the_owner_may_rate(client: TestClient, rated: dict) -> None:
    path = f"/api/v1/turns/{rated['refused']['turn_id']}/feedback"
    first = client.post(path, json={"rating": "up"}, headers=rated["own"])
    again = client.post(path, json={"rating": "down", "reason": "not_my_question", "comment": "电话13812345678"},
                        headers=rated["own"])
    assert first.json()["replaced"] is False
    assert again.status_code == 200
    assert again.json() == {"turn_id": rated["refused"]["turn_id"], "rating": "down", "reason": "not_my_question",
                            "comment": "电话138****5678", "replaced": True}
    stranger = {"X-Session-Token": _page(client)["session_token"]}
    # To a stranger another conversation's answer is as unknown as no answer at all (issue 28, hole 18).
    assert client.post(path, json={"rating": "up"}, headers=stranger).status_code == 404
    assert client.post(path, json={"rating": "up"}).status_code == 401
    # A retried message gets the same reply, turn id included.
    assert _say(client, rated["session"], REFUSED)["turn_id"] == rated["refused"]["turn_id"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"rating": "great"}, 422, "评价只能是“有帮助”或“没帮助”。"),
    ({"rating": "down", "reason": "x"}, 422, "请从列表里选择原因。"),
    ({"rating": "down", "comment": "长" * 301}, 422, "补充说明最多300个字，您写了301个字。"),
    ({"rating": 5}, 422, "请求格式不正确：rating"),
    ({}, 422, "请求格式不正确：rating"),
], ids=["bad-rating", "unknown-reason", "long-comment", "number", "empty"])
def test_bad_feedback_gets_a_clear_chinese_error(client: TestClient, rated: dict, body: dict, status: int,
                                                 message: str) -> None:
    response = client.post(f"/api/v1/turns/{rated['answered']['turn_id']}/feedback", json=body, headers=rated["own"])
    assert response.status_code == status and response.json()["message"] == message


def test_unknown_turns_and_the_residents_own_words(client: TestClient, rated: dict) -> None:
    missing = client.post("/api/v1/turns/999999/feedback", json={"rating": "up"}, headers=rated["own"])
    assert missing.status_code == 404 and missing.json()["message"] == "找不到这条回答，可能已经过期了。"
    own_question = client.post(f"/api/v1/turns/{rated['answered']['turn_id'] - 1}/feedback", json={"rating": "up"},
                               headers=rated["own"])
    assert own_question.status_code == 422
    wording = client.get("/api/v1/feedback/wording", params={"lang": "en"}).json()
    assert wording["text"]["helpful"] == "Helpful" and wording["reasons"][0] == {"id": "wrong",
                                                                                "label": "The answer is wrong"}


def test_the_analytics_page_shows_the_disliked_question_with_a_link(app_and_users, rated: dict) -> None:
    client, users = app_and_users
    boss = bearer(users, "boss")
    page = client.get("/admin/analytics", headers=boss)
    assert page.status_code == 200
    html = page.text
    session_id, turn_id = rated["session"]["session_id"], rated["refused"]["turn_id"]
    assert REFUSED in html and f"/admin/conversations/{session_id}#turn-{turn_id}" in html
    assert '<script src="/admin-static/chart.umd.min.js"></script>' in html and "cdn" not in html.lower()
    assert client.get("/admin-static/chart.umd.min.js").status_code == 200
    # A supervisor reads it too; a worker may not; nobody logged in goes to the login page.
    assert client.get("/admin/analytics", headers=bearer(users, "sup")).status_code == 200
    assert client.get("/admin/analytics", headers=bearer(users, "wang")).status_code == 403
    anonymous = client.get("/admin/analytics", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/console/login"
    bad = client.get("/admin/analytics", params={"start": "2026-13-01"}, headers=boss)
    assert bad.status_code == 422 and "日期要写成 年-月-日" in bad.text

    conversation = client.get(f"/admin/conversations/{session_id}", headers=boss)
    assert conversation.status_code == 200 and f'id="turn-{turn_id}"' in conversation.text
    assert "👎 没帮助 · 没回答我问的" in conversation.text and "13812345678" not in conversation.text
    assert client.get(f"/admin/conversations/{session_id}", headers=bearer(users, "wang")).status_code == 403


def test_every_table_exports_as_csv(app_and_users, rated: dict) -> None:
    client, users = app_and_users
    boss = bearer(users, "boss")
    for table in ("questions_per_day", "intents", "outcomes", "unanswered", "feedback", "handoff_ratings",
                  "handoffs"):
        response = client.get(f"/admin/analytics/{table}.csv", headers=boss)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert f"linli-{table}-" in response.headers["content-disposition"]
    unanswered = client.get("/admin/analytics/unanswered.csv", headers=boss).text.lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(unanswered)))
    assert rows[0]["question"] == REFUSED and rows[0]["down"] == "1" and rows[0]["refused"] == "1"
    feedback_rows = list(csv.DictReader(io.StringIO(
        client.get("/admin/analytics/feedback.csv", headers=boss).text.lstrip("\ufeff"))))
    assert {(r["channel"], r["rating"], r["times"]) for r in feedback_rows} >= {("kiosk", "有帮助", "1"),
                                                                                 ("kiosk", "没帮助", "1")}
    assert client.get("/admin/analytics/nothing.csv", headers=boss).status_code == 422
    assert client.get("/admin/analytics/unanswered.csv", headers=bearer(users, "wang")).status_code == 403
