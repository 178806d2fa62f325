"""Issue 19, hole 9 (personal data at rest), tried against a running `linli serve`: after a resident
files an application and a dispute intake, no raw ID or phone number is anywhere in the SQLite
file (every text column of every table), the application's data is ciphertext, the government
backend still received the full values, only the worker handling the ticket can reveal them (and
the reveal is in the ticket's history), files are private, and `linli` refuses the development key
outside development mode."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.api import create_app
from assistant.core.settings import PrivacySettings, Settings, get_settings
from assistant.core.vault import DevelopmentKeyRefused
from assistant.escalation.auth import UserStore
from tests.conftest import SHARED_CACHE, free_port
from tests.integration.test_reliability import _start_server

ADULT = "650202198512010036"
PHONE = "13812345678"
DISPUTE_PHONE = "13900001111"
RAW = (ADULT, PHONE, DISPUTE_PHONE)
DISPUTE = ["楼上漏水把我家泡了，帮我找人调解", "楼上602的住户", "幸福小区3栋502",
           f"上周开始漏水，我电话{DISPUTE_PHONE}，找他好几次都不理", "一般", DISPUTE_PHONE, "确认"]


@pytest.fixture(scope="module")
def server(databases, small_index_dir, sandbox, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pii") / "var"
    url = f"sqlite:///{data_dir / 'linli.sqlite'}"
    users = UserStore(databases.engine(url))
    users.add("wang", "wang-password-2024", role="worker", centre="centre-a")
    users.add("li", "li-password-1", role="worker", centre="centre-a")
    users.add("boss", "boss-password-2024", role="supervisor", centre="centre-a")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               LINLI_ESCALATION__CENTRE="centre-a", LINLI_CONNECTORS__BACKEND_URL=sandbox,
               LINLI_PRIVACY__DEVELOPMENT="true")
    port = free_port()
    process = _start_server(env, port)
    base = f"http://127.0.0.1:{port}"
    yield base, data_dir / "linli.sqlite"
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def filed(server):
    """A resident files for legal aid and a dispute intake through the API."""
    base, _ = server
    minted = httpx.post(f"{base}/api/v1/sessions", json={"channel": "chat", "centre": None})
    assert minted.status_code == 201, minted.text
    resident = {"X-Session-Token": minted.json()["session_token"]}
    application = httpx.post(f"{base}/api/v1/applications", headers=resident, timeout=60, json={
        "procedure": "legal_aid", "data": {
            "applicant_name": "陈明", "applicant_id": ADULT, "mobile": PHONE, "address": "昆仑路8号",
            "case_type": "unpaid_wages", "description": f"工地老板拖欠三个月工资，老板电话{PHONE}"}})
    assert application.status_code == 201 and application.json()["status"] == "submitted", application.text
    reply: dict = {}
    for text in DISPUTE:
        response = httpx.post(f"{base}/api/v1/messages", json={"text": text}, headers=resident, timeout=60)
        assert response.status_code == 200, response.text
        reply = response.json()
    assert reply["reply_type"] == "handoff" and reply["ticket_id"], reply
    return application.json()["reference"], reply["ticket_id"]


def _text_columns(path: Path) -> list[tuple[str, str, str]]:
    """(table, column, value) for every non-null value of every column of every table."""
    found = []
    with sqlite3.connect(path) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                query = f'SELECT CAST("{column}" AS TEXT) FROM "{table}" WHERE "{column}" IS NOT NULL'
                found.extend((table, column, value) for (value,) in db.execute(query))
    return found


def test_no_raw_id_or_phone_anywhere_in_the_database(server, filed):
    _, path = server
    reference, _ = filed
    values = _text_columns(path)
    assert len(values) > 100
    leaks = [(table, column, value[:80]) for table, column, value in values for raw in RAW if raw in value]
    assert leaks == []
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT data FROM applications WHERE application_id = ?", (reference,)).fetchone()
    stored = json.loads(data)
    assert stored["applicant_id"].startswith("enc:v1:") and stored["mobile"].startswith("enc:v1:")
    assert stored["description"].startswith("enc:v1:") and stored["applicant_name"] == "陈明"
    turns = [v for t, c, v in values if (t, c) == ("turns", "text")]
    assert any("139****1111" in v for v in turns)  # the resident's own words, masked
    summaries = [v for t, c, v in values if (t, c) == ("tickets", "summary")]
    assert summaries and all(DISPUTE_PHONE not in s for s in summaries)


def test_the_backend_received_the_full_values(server, filed, sandbox, tmp_path_factory):
    base, _ = server
    reference, _ = filed
    backend = httpx.get(f"{base}/api/v1/applications/{reference}", headers={"X-Session-Token": "x"})
    assert backend.status_code in (401, 403, 404)  # someone else's application stays hidden
    stores = sorted(tmp_path_factory.getbasetemp().glob("sandbox*/sandbox.sqlite"))
    assert stores, "the sandbox's database was not found"
    with sqlite3.connect(stores[-1]) as db:
        rows = [row[0] for row in db.execute("SELECT data FROM applications")]
    assert any(ADULT in row and PHONE in row for row in rows)


def _bearer(base: str, username: str, password: str) -> dict[str, str]:
    token = httpx.post(f"{base}/api/v1/auth/token", json={"username": username, "password": password})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['token']}"}


@contextmanager
def _console(base: str, username: str, password: str) -> Iterator[httpx.Client]:
    """A logged-in console browser (the session cookie; same-origin requests)."""
    with httpx.Client(base_url=base, headers={"Origin": base}, timeout=30) as client:
        login = client.post("/console/login", data={"username": username, "password": password})
        assert login.status_code in (200, 303), login.text
        yield client


def test_only_the_handling_worker_reveals_and_the_reveal_is_audited(server, filed):
    base, _ = server
    _, ticket_id = filed
    wang, li, boss = (_bearer(base, "wang", "wang-password-2024"), _bearer(base, "li", "li-password-1"),
                      _bearer(base, "boss", "boss-password-2024"))
    assert httpx.post(f"{base}/api/v1/tickets/{ticket_id}/claim", headers=wang).status_code == 200
    for who in (wang, li, boss):
        shown = httpx.get(f"{base}/api/v1/tickets/{ticket_id}", headers=who).json()
        assert shown["form_data"]["phone"] == "139****1111" and DISPUTE_PHONE not in str(shown)
    for who in (li, boss):
        assert httpx.post(f"{base}/api/v1/tickets/{ticket_id}/reveal", headers=who).status_code == 403
    revealed = httpx.post(f"{base}/api/v1/tickets/{ticket_id}/reveal", headers=wang)
    assert revealed.status_code == 200 and revealed.json()["form_data"]["phone"] == DISPUTE_PHONE
    events = httpx.get(f"{base}/api/v1/tickets/{ticket_id}", headers=li).json()["events"]
    assert [(e["actor"], e["text"]) for e in events if e["action"] == "reveal"] == [("wang", "查看了完整个人信息")]

    with _console(base, "li", "li-password-1") as other:
        page = other.get(f"/console/tickets/{ticket_id}").text
        assert "139****1111" in page and DISPUTE_PHONE not in page and "显示完整信息" not in page
        assert other.post(f"/console/tickets/{ticket_id}/reveal").status_code == 403
    with _console(base, "wang", "wang-password-2024") as handler:
        page = handler.get(f"/console/tickets/{ticket_id}").text
        assert "139****1111" in page and DISPUTE_PHONE not in page and "显示完整信息" in page
        shown = handler.post(f"/console/tickets/{ticket_id}/reveal")
        assert shown.status_code == 200 and DISPUTE_PHONE in shown.text and "查看了完整个人信息" in shown.text
    events = httpx.get(f"{base}/api/v1/tickets/{ticket_id}", headers=wang).json()["events"]
    assert [e["actor"] for e in events if e["action"] == "reveal"] == ["wang", "wang"]


def test_database_and_index_files_are_private(server, filed, small_index_dir):
    _, path = server
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    for name in ("linli.sqlite", "linli.sqlite-wal", "linli.sqlite-shm"):
        assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600, name
    index = small_index_dir / "var" / "index"
    assert stat.S_IMODE(os.stat(index).st_mode) == 0o700
    files = [p for p in index.rglob("*") if p.is_file()]
    assert files and {p.name for p in files} >= {"index.sqlite", "vectors.faiss", "STAMP.json"}
    assert {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in files} == {p.name: 0o600 for p in files}


def test_linli_refuses_the_development_key_outside_development(tmp_path):
    env = dict(os.environ, LINLI_DATA_DIR=str(tmp_path / "var"), LINLI_PRIVACY__DEVELOPMENT="false")
    env.pop("LINLI_PRIVACY__DATA_KEY", None)
    commands = {"serve": ["serve", "--port", "1"], "worker": ["worker", "--once"],
                "keygen": ["keygen", "--out", str(tmp_path / "data.key")]}
    # At once: each start imports Linli (seconds).
    running = {name: subprocess.Popen([sys.executable, "-m", "assistant.cli", *args], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name, args in commands.items()}
    done = {name: (process.wait(timeout=90), process.communicate()[1]) for name, process in running.items()}
    for name in ("serve", "worker"):
        code, stderr = done[name]
        assert code == 2 and "linli keygen" in stderr and "LINLI_PRIVACY__DATA_KEY" in stderr, (name, stderr)
    assert done["keygen"][0] == 0 and stat.S_IMODE(os.stat(tmp_path / "data.key").st_mode) == 0o600
    assert len((tmp_path / "data.key").read_text().strip()) == 44


def test_the_api_refuses_the_development_key_outside_development(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", privacy=PrivacySettings(development=False))
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with pytest.raises(DevelopmentKeyRefused), TestClient(app):
        pass
