"""Filing each procedure in conversation against the sandbox backend process, and the fault
cases: backend down during submit, Linli killed after "确认", workers racing on the outbox."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from assistant.api import create_app
from assistant.core.settings import (
    PROJECT_ROOT,
    ApiSettings,
    ConnectorSettings,
    DialogueSettings,
    Settings,
    get_settings,
)
from assistant.dialogue.engine import DialogueEngine
from assistant.dialogue.store import ConversationStore
from assistant.escalation.service import SqlEscalationService
from connectors.services.applications import IN_FLIGHT, ApplicationService
from connectors.services.http import HttpServiceConnector
from connectors.services.memory import InMemoryServiceConnector
from connectors.services.tables import applications as applications_table
from tests.conftest import RESIDENT_HEADERS, SHARED_CACHE, TEST_API_KEYS, set_fault
from tests.integration.conftest import run_linli_in_process

pytestmark = pytest.mark.slow

AGED_92 = "650202193401010022"
ADULT = "650202198512010036"
SOON = (date.today() + timedelta(days=3)).isoformat()

FILINGS = {
    "elderly_allowance": ["我想给我妈申请高龄津贴", "王秀英", AGED_92, "13812345678", "幸福小区3栋502", "家属代办",
                          "社保卡"],
    "pension_certification": ["帮我做一下养老金资格认证", "张建国", ADULT, "13912345678", "职工养老金", "到窗口办理"],
    "unemployment_registration": ["我失业了，帮我办失业登记", "李强", ADULT, "13712345678", "友谊路12号2单元301",
                                  "克拉玛依某某建材公司", "2026-10-31", "合同到期"],
    "medical_insurance_enrolment": ["帮我办城乡居民医保参保登记", "赵丽", ADULT, "13612345678", "幸福小区5栋101",
                                    "城乡居民"],
    "legal_aid": ["我想申请法律援助", "陈明", ADULT, "13512345678", "昆仑路8号", "拖欠工资",
                  "工地老板拖欠我三个月工资共两万多元，一直不给"],
    "appointment": ["我想预约去社区中心办事", "王芳", "13812345678", "高龄津贴", SOON, "上午"],
}


@pytest.fixture
def desk(databases, vault, tmp_path, sandbox, shipped_kb, intent_classifier):
    url = f"sqlite:///{tmp_path / 'linli.sqlite'}"
    set_fault(sandbox, fault="none")
    escalation = SqlEscalationService(databases.engine(url), vault)
    applications = ApplicationService(databases.engine(url), HttpServiceConnector(sandbox, timeout_s=2, attempts=2),
                                      benefit_tables=shipped_kb.answerer,
                                      escalate=lambda a, reason: escalation.open_ticket(
                                          kind="procedure_problem", priority="high", session_id=a.session_id,
                                          channel=a.channel, user_id=a.user_id, summary=reason,
                                          form_data=a.data).ticket_id, retry_base_s=0, vault=vault)
    engine = DialogueEngine(shipped_kb, intent_classifier, ConversationStore(databases.engine(url), vault), escalation,
                            DialogueSettings(), applications=applications)
    return engine, applications


def _stats(base: str) -> dict:
    return httpx.get(f"{base}/_stats", timeout=5).json()


@pytest.mark.parametrize("procedure", list(FILINGS))
def test_filing_each_procedure_in_conversation(desk, sandbox, procedure):
    engine, applications = desk
    session = f"file-{procedure}-{uuid.uuid4().hex[:6]}"
    before = _stats(sandbox)["applications"]
    opening, *answers = FILINGS[procedure]
    transcript = []
    reply = engine.handle(session, opening)
    transcript.append((opening, reply.reply_type, reply.text))
    assert reply.reply_type == "form", transcript
    for answer in answers:
        reply = engine.handle(session, answer)
        transcript.append((answer, reply.reply_type, reply.text))
        assert reply.reply_type == "form", transcript
    assert "请核对" in reply.text and "确认" in reply.quick_replies[0], transcript
    assert "****" in reply.text  # the ID or the phone is masked in the read-back
    assert _stats(sandbox)["applications"] == before  # nothing filed before "确认"
    done = engine.handle(session, "确认")
    assert done.reply_type == "answer" and "已提交" in done.text, done.text
    assert _stats(sandbox)["applications"] == before + 1
    status = engine.handle(session, "我的申请到哪一步了")
    filed = applications.for_resident(owner=None, session_id=session)[0]
    assert status.reply_type == "answer" and filed.application_id in status.text


def test_65_year_old_is_told_why_not(desk):
    engine, _ = desk
    session = "file-65"
    engine.handle(session, "帮我申请高龄津贴")
    engine.handle(session, "李大爷")
    reply = engine.handle(session, "65020219610301001X")
    assert reply.reply_type == "refusal" and "70" in reply.text
    assert reply.citations and reply.citations[0]["doc_id"] == "kmy-elderly-allowance"


def test_85_year_old_hears_the_amount_is_not_published(desk):
    engine, _ = desk
    session = "file-85"
    for text in ("帮我申请高龄津贴", "刘奶奶", "650202194111010037", "13812345678", "幸福小区1栋1号", "本人"):
        engine.handle(session, text)
    reply = engine.handle(session, "银行卡")
    assert "请核对" in reply.text and "80至89" in reply.text


def test_cancel_and_bad_fields_file_nothing(desk, sandbox):
    engine, applications = desk
    session = "file-cancel"
    before = _stats(sandbox)["applications"]
    engine.handle(session, "帮我申请高龄津贴")
    assert "不能包含数字" in engine.handle(session, "王秀英123").text
    assert engine.handle(session, "<script>alert(1)</script>").reply_type == "form"
    engine.handle(session, "王秀英")
    assert "校验位" in engine.handle(session, AGED_92[:-1] + "9").text
    assert engine.handle(session, "取消").reply_type == "smalltalk"
    assert applications.for_resident(owner=None, session_id=session) == []
    assert _stats(sandbox)["applications"] == before


def test_backend_down_during_submit_then_delivered_exactly_once(desk, sandbox):
    engine, applications = desk
    session = "file-down"
    for text in FILINGS["elderly_allowance"]:
        engine.handle(session, text)
    before = _stats(sandbox)
    set_fault(sandbox, fault="error500")
    try:
        queued = engine.handle(session, "确认")
    finally:
        set_fault(sandbox, fault="none")
    assert queued.reply_type == "answer" and "排队" in queued.text and "不用重新申请" in queued.text
    application = applications.for_resident(owner=None, session_id=session)[0]
    assert application.status == "queued"
    delivered = applications.deliver_due("worker-1")
    assert [a.application_id for a in delivered] == [application.application_id]
    assert applications.deliver_due("worker-2") == []
    after = _stats(sandbox)
    print(f"\nbackend down: confirmed 1 / delivered {after['applications'] - before['applications']} / "
          f"duplicates {after['duplicates_refused'] - before['duplicates_refused']}")
    assert after["applications"] == before["applications"] + 1


def test_linli_killed_after_confirm_delivers_once_after_restart(databases, vault, sandbox, tmp_path, shipped_settings,
                                                                benefit_tables):
    """A real `linli worker` process is killed with SIGKILL while the backend hangs on the
    submit; a fresh worker delivers the application once."""
    url = f"sqlite:///{tmp_path / 'linli.sqlite'}"
    # Confirm through the outbox (what "确认" does), without delivering.
    outbox = ApplicationService(databases.engine(url), InMemoryServiceConnector(), benefit_tables=benefit_tables,
                                vault=vault)
    application = outbox.confirm("elderly_allowance", {
        "applicant_name": "王秀英", "applicant_id": AGED_92, "mobile": "13812345678", "address": "幸福小区3栋502",
        "applicant_role": "family", "payment_card": "社保卡"}, session_id="killed", channel="web", user_id="u")
    before = _stats(sandbox)
    env = dict(os.environ, LINLI_DATABASE_URL=url, LINLI_CONNECTORS__BACKEND_URL=sandbox,
               LINLI_CONNECTORS__TIMEOUT_S="30", LINLI_CONNECTORS__WORKER_INTERVAL_S="0.2",
               LINLI_INDEX_DIR=str(shipped_settings.resolved_index_dir))
    set_fault(sandbox, fault="timeout", timeout_s=30)
    worker = subprocess.Popen([sys.executable, "-m", "assistant.cli", "worker", "--name", "doomed"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while outbox.get(application.application_id).attempts == 0 and time.monotonic() < deadline:
            with outbox.engine.connect() as conn:
                owner = conn.execute(select(applications_table.c.lease_owner)).scalar()
            if owner == "doomed":
                break
            time.sleep(0.2)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        set_fault(sandbox, fault="none")
    assert outbox.get(application.application_id).status == "queued"
    # Restart: the dead worker's lease runs out, a new worker delivers once.
    fresh = ApplicationService(databases.engine(url), HttpServiceConnector(sandbox, timeout_s=5),
                               benefit_tables=benefit_tables, lease_s=60, vault=vault)
    with fresh.engine.begin() as conn:  # the 60 s lease has passed
        conn.execute(update(applications_table).values(lease_until=applications_table.c.created_at))
    result = subprocess.run([sys.executable, "-m", "assistant.cli", "worker", "--once", "--name", "restarted"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    delivered = fresh.get(application.application_id)
    after = _stats(sandbox)
    new_apps = after["applications"] - before["applications"]
    print(f"\nkill -9 after confirm: confirmed 1 / delivered {new_apps} / "
          f"duplicates refused by the backend {after['duplicates_refused'] - before['duplicates_refused']}")
    # Delivered once; the sandbox reviews after 0.3 s, so a slow machine may already read under_review.
    assert delivered.status in IN_FLIGHT and new_apps == 1


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """A `linli` command in-process under `env`: what the commands do (a new process per command,
    each loading the shipped index, cost ~50 s of a loaded 2-core machine); the worker's process is
    what the kill -9 test above checks, with real processes."""
    return run_linli_in_process(PROJECT_ROOT, *args, env=env)


def test_cli_procedures_apply_and_status(sandbox, shipped_kb, shipped_settings, tmp_path):
    # Eligibility reads the benefit tables from the index, as answers do: the CLI uses the built one.
    env = dict(os.environ, LINLI_DATABASE_URL=f"sqlite:///{tmp_path / 'linli.sqlite'}",
               LINLI_CONNECTORS__BACKEND_URL=sandbox, LINLI_INDEX_DIR=str(shipped_settings.resolved_index_dir))
    listed = json.loads(_cli(env, "procedures", "--json").stdout)
    by_id = {p["id"]: p for p in listed["procedures"]}
    assert set(FILINGS) <= set(by_id)
    assert {"name": "applicant_id", "type": "cn_id", "required": True} in by_id["elderly_allowance"]["fields"]
    assert any("choices" in f for f in by_id["appointment"]["fields"])

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"applicant_name": "王秀英", "applicant_id": AGED_92, "mobile": "13812345678",
                                "address": "幸福小区3栋502", "applicant_role": "family",
                                "payment_card": "social_security_card"}, ensure_ascii=False), encoding="utf-8")
    first = _cli(env, "apply", "elderly_allowance", "--data", str(good), "--idempotency-key", "k-1", "--json")
    assert first.returncode == 0, first.stderr
    filed = json.loads(first.stdout)
    assert filed["status"] == "submitted" and filed["reference"].startswith("SQ")
    again = json.loads(_cli(env, "apply", "elderly_allowance", "--data", str(good), "--idempotency-key", "k-1",
                            "--json").stdout)
    assert again["reference"] == filed["reference"]
    status = json.loads(_cli(env, "status", filed["reference"], "--json").stdout)
    assert status["procedure"] == "elderly_allowance" and [h["status"] for h in status["history"]][:2] == [
        "queued", "submitted"]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"applicant_name": "王秀英2", "applicant_id": AGED_92[:-1] + "9",
                               "mobile": "1381234567", "address": "<b>x</b>"}, ensure_ascii=False), encoding="utf-8")
    refused = _cli(env, "apply", "elderly_allowance", "--data", str(bad), "--json")
    assert refused.returncode != 0
    errors = {e["field"]: e["message"] for e in json.loads(refused.stdout)["errors"]}
    assert {"applicant_name", "applicant_id", "mobile", "address", "applicant_role", "payment_card"} <= set(errors)
    assert "姓名" in errors["applicant_name"] and "身份证" in errors["applicant_id"]

    young = tmp_path / "young.json"
    young.write_text(json.dumps({**json.loads(good.read_text(encoding="utf-8")), "applicant_id": "65020219610301001X"},
                                ensure_ascii=False), encoding="utf-8")
    ineligible = _cli(env, "apply", "elderly_allowance", "--data", str(young), "--json")
    body = json.loads(ineligible.stdout)
    assert ineligible.returncode != 0 and body["eligible"] is False and "70" in body["reason"] and body["citations"]

    unknown = _cli(env, "apply", "parking_permit", "--data", str(good), "--json")
    assert unknown.returncode != 0 and "没有这个办事项目" in json.loads(unknown.stdout)["message"]
    missing = _cli(env, "status", "SQ-NOPE", "--json")
    assert missing.returncode != 0 and "找不到" in json.loads(missing.stdout)["message"]


def test_http_api_procedures_applications_status(sandbox, small_index_dir, tmp_path):
    settings = Settings(data_dir=tmp_path / "var", index_dir=small_index_dir / "var" / "index",
                        embedding_cache=SHARED_CACHE, corpus_dirs=[small_index_dir / "corpus"], law_corpus=None,
                        connectors=ConnectorSettings(backend_url=sandbox), api=ApiSettings(keys=TEST_API_KEYS))
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, headers=RESIDENT_HEADERS) as client:
        assert len(client.get("/api/v1/procedures").json()["procedures"]) >= 6
        body = {"procedure": "legal_aid", "idempotency_key": "api-1", "session_id": "api-filing", "data": {
            "applicant_name": "陈明", "applicant_id": ADULT, "mobile": "13512345678", "address": "昆仑路8号",
            "case_type": "unpaid_wages", "description": "工地老板拖欠三个月工资"}}
        filed = client.post("/api/v1/applications", json=body)
        assert filed.status_code == 201 and filed.json()["status"] == "submitted"
        assert client.post("/api/v1/applications", json=body).json()["reference"] == filed.json()["reference"]
        status = client.get(f"/api/v1/applications/{filed.json()['reference']}").json()
        assert status["procedure"] == "legal_aid"
        invalid = client.post("/api/v1/applications", json={**body, "idempotency_key": None,
                                                             "data": {**body["data"], "mobile": "123"}})
        assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "mobile"
        assert client.get("/api/v1/applications/SQ-NOPE").status_code == 404
        assert client.post("/api/v1/applications", json={**body, "procedure": "nope",
                                                          "idempotency_key": None}).status_code == 404
        reused = client.post("/api/v1/applications", json={**body, "procedure": "appointment"})
        assert reused.status_code == 400 and "幂等键" in reused.json()["message"]


def test_rejection_is_announced_and_a_dispute_reaches_a_worker(desk, sandbox):
    engine, applications = desk
    session = "file-reject"
    answers = FILINGS["legal_aid"]
    for text in answers:
        engine.handle(session, text)
    engine.handle(session, "确认")
    application = applications.for_resident(owner=None, session_id=session)[0]
    # The backend's reviewer rejects it (the sandbox rejects data marked so).
    this_row = update(applications_table).where(applications_table.c.application_id == application.application_id)
    with applications.engine.begin() as conn:
        conn.execute(this_row.values(data={**application.data, "sandbox_decision": "reject"}))
    fresh = applications.connector.submit("legal_aid", {**application.data, "sandbox_decision": "reject"},
                                          idempotency_key=f"reject-{application.application_id}")
    with applications.engine.begin() as conn:
        conn.execute(this_row.values(backend_reference=fresh.reference))
    time.sleep(1.0)  # the sandbox decides after 0.8 s
    applications.refresh()
    status = engine.handle(session, "我的申请审核怎么样了")
    assert "未通过" in status.text and status.quick_replies == ["我有异议"]
    disputed = engine.handle(session, "我有异议，我符合条件")
    assert disputed.reply_type == "handoff" and disputed.ticket_id
    ticket = engine.escalation.get(disputed.ticket_id)
    assert ticket.kind == "procedure_problem" and ticket.form_data["applicant_id"] == ADULT


def test_logs_never_carry_a_full_id_or_phone(desk, caplog):
    engine, _ = desk
    caplog.set_level(logging.INFO)
    session = "file-logs"
    for text in FILINGS["elderly_allowance"]:
        engine.handle(session, text)
    engine.handle(session, "确认")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "confirmed" in logged
    assert AGED_92 not in logged and "13812345678" not in logged
