"""Knowledge-base jobs any process can run: a job is stored with what it does, leased by one
process at a time, taken over when its process stops renewing the lease, and finished once (its
audit rows written by the lease's holder only). SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import date, timedelta
from types import SimpleNamespace

from sqlalchemy import Engine, func, select, update

from assistant.core.clock import utcnow
from assistant.core.db import lease_due
from assistant.core.domain import DocumentMeta
from assistant.core.settings import KbAdminSettings
from assistant.kb_admin.service import KnowledgeAdmin
from assistant.kb_admin.tables import kb_audit, kb_jobs


class FakeKnowledge:
    """What a job does to the index, recorded (the index itself is tested in knowledge_base)."""

    def __init__(self) -> None:
        self.retired: list[list[str]] = []
        meta = DocumentMeta(doc_id="d1", title="高龄津贴", category="elderly_care", region="karamay", source="x",
                            effective_from=date(2026, 1, 1), effective_to=None, version="1", language="zh")
        self.store = SimpleNamespace(get_document=lambda doc_id: (meta, "正文", []))

    def retire(self, doc_ids: list[str]) -> None:
        self.retired.append(list(doc_ids))


def _admin(engine: Engine, knowledge: FakeKnowledge) -> KnowledgeAdmin:
    return KnowledgeAdmin(engine, KbAdminSettings(job_lease_s=3), lambda: knowledge, None,  # type: ignore[arg-type]
                          run_here=False)


def _audit_rows(admin: KnowledgeAdmin, job_id: str) -> int:
    with admin.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(kb_audit).where(kb_audit.c.job_id == job_id))
                   .scalar() or 0)


def test_a_job_waits_for_a_worker_and_runs_once(databases, database_url):
    knowledge = FakeKnowledge()
    replica = _admin(databases.engine(database_url), knowledge)  # a cluster's replica: takes the change, runs nothing
    job = replica.retire("d1", "boss")
    time.sleep(0.2)
    assert replica.job(job.job_id).status == "queued" and knowledge.retired == []
    worker = _admin(databases.engine(database_url), knowledge)
    assert worker.run_due("worker-1") == 1
    assert worker.run_due("worker-2") == 0  # nothing left: done once
    assert knowledge.retired == [["d1"]]
    done = replica.job(job.job_id)
    assert done.status == "done" and done.finished and _audit_rows(replica, job.job_id) == 1


def test_a_job_whose_worker_died_is_taken_over_and_finished_once(databases, database_url):
    knowledge = FakeKnowledge()
    admin = _admin(databases.engine(database_url), knowledge)
    job = admin.retire("d1", "boss")
    # Worker A leases the job and dies (kill -9): its lease is never renewed.
    leased = lease_due(admin.engine, kb_jobs.c.job_id, kb_jobs.c.status == "queued", worker="worker-a",
                       until=utcnow() + timedelta(seconds=1), limit=1, order_by=kb_jobs.c.created_at)
    assert leased == [job.job_id]
    with admin.engine.begin() as conn:
        conn.execute(update(kb_jobs).where(kb_jobs.c.job_id == job.job_id).values(status="running"))
    assert admin.run_due("worker-b") == 0, "a held lease was taken"
    assert admin.job(job.job_id).status == "running"
    time.sleep(1.2)
    assert admin.run_due("worker-b") == 1
    assert admin.job(job.job_id).status == "done" and knowledge.retired == [["d1"]]
    # Worker A was only stalled, and now tries to finish: it no longer holds the lease.
    assert not admin._finish(job.job_id, "worker-a", status="done", audit=("retire", "boss", [("d1", "t", "1", "x")]))
    assert _audit_rows(admin, job.job_id) == 1


def test_a_job_that_keeps_killing_its_worker_fails_instead_of_looping(databases, database_url):
    knowledge = FakeKnowledge()
    admin = _admin(databases.engine(database_url), knowledge)
    job = admin.retire("d1", "boss")
    with admin.engine.begin() as conn:
        conn.execute(update(kb_jobs).where(kb_jobs.c.job_id == job.job_id)
                     .values(attempts=admin.settings.job_attempts, status="running"))
    assert admin.run_due("worker-c") == 1
    failed = admin.job(job.job_id)
    assert failed.status == "failed" and "多次" in (failed.error_zh or "") and knowledge.retired == []
