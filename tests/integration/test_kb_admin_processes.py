"""Two server processes on one PostgreSQL database and one index folder, as a centre runs
several: a document uploaded through one answers residents through the other without a restart,
the other shows the job's progress (kept in the database), and a document retired through the
second stops being cited by the first."""

from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest

from assistant.escalation.auth import UserStore
from tests.conftest import RESIDENT_HEADERS, SHARED_CACHE, free_port
from tests.integration.test_kb_admin import MEALS_DOC, MEALS_QUESTION
from tests.integration.test_reliability import _start_server


@pytest.fixture(scope="module")
def two_servers(databases, small_index_dir, tmp_path_factory, postgres_database):
    root = tmp_path_factory.mktemp("kb-processes")
    shutil.copytree(small_index_dir / "var" / "index", root / "index")
    users = UserStore(databases.engine(postgres_database))
    users.add("boss", "boss-password-2024", role="admin", centre="default")
    env = dict(os.environ, LINLI_DATA_DIR=str(root / "var"), LINLI_INDEX_DIR=str(root / "index"),
               LINLI_DATABASE_URL=postgres_database, LINLI_EMBEDDING_CACHE=str(SHARED_CACHE),
               LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]', LINLI_LAW_CORPUS="",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    processes, bases = [], []
    try:
        for _ in range(2):
            port = free_port()
            processes.append(_start_server(env, port))
            bases.append(f"http://127.0.0.1:{port}")
        token = httpx.post(f"{bases[0]}/api/v1/auth/token",
                           json={"username": "boss", "password": "boss-password-2024"}).json()["token"]
        yield bases, {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)


def _cited(base: str, question: str) -> set[str]:
    response = httpx.post(f"{base}/api/v1/ask", json={"question": question}, headers=RESIDENT_HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    return {c["doc_id"] for c in response.json().get("citations", [])}


def _cites_within(base: str, question: str, doc_id: str, *, cited: bool = True, within_s: float = 10.0) -> bool:
    """Whether `base` cites (or, `cited=False`, no longer cites) `doc_id` within `within_s`: another
    process sees a new generation when it next reads the generation number
    (knowledge_base/store.py GENERATION_RECHECK_S)."""
    deadline = time.monotonic() + within_s
    while (doc_id in _cited(base, question)) != cited:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _finished(base: str, headers: dict[str, str], job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        job = httpx.get(f"{base}/admin/kb/jobs/{job_id}", headers=headers, timeout=10).json()["job"]
        if job["finished"]:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.25)


def test_a_change_in_one_process_is_served_by_the_other(two_servers):
    (first, second), headers = two_servers
    assert "kmy-community-meals" not in _cited(second, MEALS_QUESTION)  # the second has its index loaded
    started = httpx.post(f"{first}/admin/kb/upload", headers=headers, timeout=60,
                         files=[("files", ("meals.md", MEALS_DOC.encode(), "text/markdown"))])
    assert started.status_code == 202, started.text
    job = _finished(second, headers, started.json()["job"]["job_id"])  # progress read through the other process
    assert job["status"] == "done", job
    assert _cites_within(second, MEALS_QUESTION, "kmy-community-meals")

    retired = httpx.post(f"{second}/admin/kb/documents/kmy-community-meals/retire", headers=headers, timeout=60)
    assert _finished(first, headers, retired.json()["job"]["job_id"])["status"] == "done"
    assert _cites_within(first, MEALS_QUESTION, "kmy-community-meals", cited=False)
    audit = httpx.get(f"{first}/admin/kb/audit", headers=headers, timeout=10).text
    assert "上传" in audit and "停用" in audit


def test_uploads_in_both_processes_at_once_are_both_applied(two_servers):
    (first, second), headers = two_servers
    jobs = []
    for base, name in ((first, "kb-a"), (second, "kb-b")):
        doc = MEALS_DOC.replace("kmy-community-meals", name).replace("助餐服务", f"助餐服务{name}")
        started = httpx.post(f"{base}/admin/kb/upload", headers=headers, timeout=60,
                             files=[("files", (f"{name}.md", doc.encode(), "text/markdown"))])
        assert started.status_code == 202, started.text
        jobs.append((base, started.json()["job"]["job_id"]))
    for base, job_id in jobs:
        assert _finished(base, headers, job_id)["status"] == "done"
    for base in (first, second):
        listing = httpx.get(f"{base}/admin/kb", headers=headers, timeout=10).text
        assert 'data-doc-id="kb-a"' in listing and 'data-doc-id="kb-b"' in listing
