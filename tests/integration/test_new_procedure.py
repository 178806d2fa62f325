"""Issue 30: a procedure is declared once. A new YAML in a procedures folder, and nothing else,
is started by what a resident says (the intents), asked as a form (the dialogue), taken by the
HTTP connector, filed by the sandbox backend under its own short code, and listed by the API."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from assistant.core.settings import DialogueSettings
from assistant.dialogue.engine import DialogueEngine
from assistant.dialogue.store import ConversationStore
from assistant.escalation.service import SqlEscalationService
from connectors.services.applications import ApplicationService
from connectors.services.http import HttpServiceConnector
from connectors.services.procedures import DEFAULT_DIR, ProcedureCatalogue
from intents.classifier import IntentClassifier
from tests.conftest import run_sandbox

pytestmark = pytest.mark.slow

NEW_PROCEDURE = """\
id: temporary_assistance
title: {zh: 临时救助申请, en: Temporary assistance application}
description:
  zh: 家里遇到突发困难、基本生活暂时没有着落的，申请一次性的临时救助。
  en: Apply for one-off temporary assistance when a sudden hardship leaves a household unable to get by.
doc_id: nat-temporary-assistance
backend_code: TMP
requests:
  zh:
    - 帮我申请临时救助
    - 家里出了急事，帮我报个临时救助
    - 我要申请临时救助金
    - 现在就帮我办临时救助
  en:
    - apply for temporary assistance for me
materials:
  zh: [申请人的居民身份证, 说明困难情况的材料]
  en:
    - The applicant's resident ID card
    - Papers that show the hardship
fields:
  - name: applicant_name
    type: name
    required: true
    label: {zh: 姓名, en: name}
    prompt: {zh: 请说一下您的姓名。, en: "What is your full name?"}
  - name: applicant_id
    type: cn_id
    required: true
    label: {zh: 身份证号码, en: ID card number}
    prompt: {zh: 请输入您的18位身份证号码。, en: "Your 18-digit ID card number?"}
  - name: hardship
    type: text
    required: true
    label: {zh: 困难情况, en: hardship}
    prompt:
      zh: 简单说一下家里遇到了什么困难。
      en: "In a few words: what has happened?"
"""


@pytest.fixture(scope="module")
def procedures_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("procedures")
    for shipped in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(shipped, folder / shipped.name)
    (folder / "temporary_assistance.yaml").write_text(NEW_PROCEDURE, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def backend(procedures_dir, tmp_path_factory):
    """The sandbox backend process, reading the same procedures folder."""
    yield from run_sandbox(tmp_path_factory.mktemp("sandbox-new"), LINLI_SANDBOX_PROCEDURES_DIR=str(procedures_dir))


def test_a_new_procedure_file_alone_is_filed_end_to_end(databases, vault, procedures_dir, backend, shipped_kb,
                                                        tmp_path):
    catalogue = ProcedureCatalogue(procedures_dir)
    classifier = IntentClassifier(shipped_kb.embedder, shipped_kb.cache, procedures_dir=procedures_dir)
    predicted = classifier.predict("我想申请临时救助")
    assert (predicted.intent, predicted.procedure) == ("service_procedure", "temporary_assistance"), predicted

    database = databases.engine(f"sqlite:///{tmp_path / 'linli.sqlite'}")
    applications = ApplicationService(database, HttpServiceConnector(backend, timeout_s=2, attempts=2,
                                                                      procedures=catalogue),
                                      benefit_tables=shipped_kb.answerer, procedures=catalogue.get, retry_base_s=0,
                                      vault=vault)
    engine = DialogueEngine(shipped_kb, classifier, ConversationStore(database, vault),
                            SqlEscalationService(database, vault), DialogueSettings(), applications=applications,
                            procedures=catalogue.get)
    session = f"new-procedure-{uuid.uuid4().hex[:6]}"
    transcript = []
    for said in ("我想申请临时救助", "王秀英", "650202193401010022", "厂子倒闭了，这两个月家里没有收入"):
        reply = engine.handle(session, said)
        transcript.append((said, reply.reply_type, reply.text))
        assert reply.reply_type == "form", transcript
    assert "临时救助申请" in transcript[0][2] and "请核对" in reply.text, transcript
    done = engine.handle(session, "确认")
    assert done.reply_type == "answer" and "已提交" in done.text, done.text
    filed = applications.for_resident(owner=None, session_id=session)[0]
    assert filed.procedure == "temporary_assistance"
    assert filed.backend_reference and filed.backend_reference.startswith("GOV-TMP-"), filed

    # The same file, in English: the form's prompts come from it too.
    english = engine.handle(f"{session}-en", "apply for temporary assistance for me")
    assert english.reply_type == "form" and "Temporary assistance application" in english.text, english.text


def test_a_procedure_file_without_requests_or_backend_code_is_refused(tmp_path):
    from connectors.services.procedures import InvalidProcedureFile, load_procedures  # noqa: PLC0415

    (tmp_path / "x.yaml").write_text(NEW_PROCEDURE.replace("backend_code: TMP\n", "backend_code: tmp\n"),
                                     encoding="utf-8")
    with pytest.raises(InvalidProcedureFile, match="backend_code"):
        load_procedures(tmp_path)
    (tmp_path / "x.yaml").write_text(NEW_PROCEDURE.replace("  en:\n    - apply for temporary assistance for me\n",
                                                           "  en: []\n"), encoding="utf-8")
    with pytest.raises(InvalidProcedureFile, match=r"requests\.en"):
        load_procedures(tmp_path)
