"""The checks behind the knowledge-base pages that need no index: uploaded file names, the form's
metadata, and a job whose process stopped."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import insert

from assistant.core.clock import utcnow
from assistant.core.errors import IngestError
from assistant.core.settings import KbAdminSettings
from assistant.kb_admin.service import KnowledgeAdmin, _checked_defaults, _safe_name
from assistant.kb_admin.tables import kb_jobs


@pytest.mark.parametrize(("given", "kept"), [
    ("../../etc/passwd.md", "passwd.md"),
    ("..\\..\\windows\\evil.docx", "evil.docx"),
    ("高龄津贴 通知(2026).pdf", "高龄津贴_通知_2026_.pdf"),
    (".hidden.md", "hidden.md"),
    ("", "upload"),
    ("/", "upload"),
])
def test_an_uploaded_name_loses_its_folders_and_odd_characters(given: str, kept: str) -> None:
    assert _safe_name(given) == kept


def test_form_values_become_checked_front_matter() -> None:
    fields = _checked_defaults({"region": " karamay ", "category": "disability", "effective_from": "2026-01-31",
                                "effective_to": "", "version": ""}, allow_empty=("effective_to",))
    assert fields == {"region": "karamay", "category": "disability", "effective_from": date(2026, 1, 31),
                      "effective_to": None}
    assert "version" not in fields  # empty: the file (or the document) keeps its own


@pytest.mark.parametrize(("values", "said"), [
    ({"effective_from": "31/01/2026"}, "生效日期要写成 年-月-日"),
    ({"effective_to": "2026-02-30"}, "失效日期要写成 年-月-日"),
    ({"category": "astrology"}, "没有“astrology”这个类别"),
    ({"title": "长" * 201}, "标题太长"),
    ({"effective_from": "2026-02-01", "effective_to": "2026-01-01"}, "失效日期不能早于生效日期"),
])
def test_bad_form_values_are_refused_with_the_field_named(values: dict[str, str], said: str) -> None:
    with pytest.raises(IngestError) as caught:
        _checked_defaults(values)
    assert said in caught.value.message_zh


def test_a_job_whose_process_stopped_reads_as_interrupted(databases, tmp_path) -> None:
    settings = KbAdminSettings(stale_after_s=60)

    def nothing() -> None:
        raise AssertionError("reading jobs must not load the knowledge base")

    admin = KnowledgeAdmin(databases.engine(f"sqlite:///{tmp_path / 'linli.sqlite'}"), settings, nothing,
                           tmp_path / "uploads")
    now = utcnow()
    with admin.engine.begin() as conn:
        for job_id, quiet in (("fresh", timedelta(seconds=5)), ("stale", timedelta(minutes=5))):
            conn.execute(insert(kb_jobs).values(
                job_id=job_id, action="upload", actor="boss", status="running", stage="embedding", done=3, total=10,
                doc_ids=["d"], summary="上传 d.md", created_at=now - quiet, updated_at=now - quiet))
    assert admin.job("fresh").status == "running" and admin.job("fresh").percent == 27
    stale = admin.job("stale")
    assert stale.status == "interrupted" and stale.finished and "服务器在索引时停止了" in (stale.error_zh or "")
    assert [j.job_id for j in admin.recent_jobs()] == ["fresh", "stale"]
    admin.close()
