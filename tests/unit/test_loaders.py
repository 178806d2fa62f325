import zipfile

import docx
import pytest
from reportlab.pdfgen import canvas

from assistant.core.errors import IngestError
from knowledge_base.loaders import load_file
from tests.attacks import files
from tests.conftest import write_doc


def test_markdown_with_front_matter(tmp_path):
    path = write_doc(tmp_path, "doc-a", "# 标题\n\n正文一句。\n", category="pension", region="karamay")
    doc = load_file(path)
    assert doc.meta.doc_id == "doc-a"
    assert doc.meta.category == "pension" and doc.meta.region == "karamay"
    assert doc.meta.effective_from.isoformat() == "2024-01-01"
    assert "正文一句。" in doc.body


def test_broken_front_matter_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.md"
    path.write_text("---\nid: [unclosed\ntitle: x\n---\n正文。", encoding="utf-8")
    with pytest.raises(IngestError) as exc:
        load_file(path)
    assert "元数据" in exc.value.message_zh


def test_missing_front_matter_fields_are_named(tmp_path):
    path = tmp_path / "partial.md"
    path.write_text("---\nid: partial\ntitle: 标题\n---\n正文。", encoding="utf-8")
    with pytest.raises(IngestError) as exc:
        load_file(path)
    assert "category" in exc.value.message_zh and "region" in exc.value.message_zh


def test_unknown_category_and_bad_dates_are_rejected(tmp_path):
    with pytest.raises(IngestError):
        load_file(write_doc(tmp_path, "c1", "正文。", category="astrology"))
    with pytest.raises(IngestError):
        load_file(write_doc(tmp_path, "c2", "正文。", effective_from="2024-13-45"))


def test_txt_without_front_matter_gets_defaults(tmp_path):
    path = tmp_path / "notice.txt"
    path.write_text("社区通知\n本周六上午社区服务中心开放办理医保参保登记。", encoding="utf-8")
    doc = load_file(path)
    assert doc.meta.doc_id == "notice"
    assert doc.meta.language == "zh"


def test_html_loader_keeps_headings_and_drops_scripts(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><script>alert(1)</script></head><body><h1>低保申请</h1><p>向乡镇街道提出申请。</p></body></html>",
        encoding="utf-8",
    )
    doc = load_file(path)
    assert "# 低保申请" in doc.body and "向乡镇街道提出申请。" in doc.body
    assert "alert" not in doc.body


def test_docx_loader_and_sidecar_metadata(tmp_path):
    document = docx.Document()
    document.add_heading("失业登记", level=1)
    document.add_paragraph("失业后可以到公共就业服务机构办理失业登记。")
    path = tmp_path / "unemployment.docx"
    document.save(path)
    (tmp_path / "unemployment.docx.meta.yaml").write_text("id: unemp\ncategory: employment\n", encoding="utf-8")
    doc = load_file(path)
    assert doc.meta.doc_id == "unemp" and doc.meta.category == "employment"
    assert "# 失业登记" in doc.body


def test_docx_with_no_text_is_rejected(tmp_path):
    path = tmp_path / "empty.docx"
    docx.Document().save(path)
    with pytest.raises(IngestError) as exc:
        load_file(path)
    assert "没有可读的文字" in exc.value.message_zh


def test_pdf_loader_reads_text(tmp_path):
    path = tmp_path / "notice.pdf"
    c = canvas.Canvas(str(path))
    c.drawString(72, 720, "Pension certification is done once a year.")
    c.save()
    doc = load_file(path)
    assert "once a year" in doc.body
    assert doc.meta.language == "en"


def test_corrupt_pdf_and_docx_are_clear_errors(tmp_path):
    pdf = tmp_path / "broken.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj <<>> garbage \x00\x01\x02")
    with pytest.raises(IngestError) as exc:
        load_file(pdf)
    assert "PDF" in exc.value.message_zh
    bad_docx = tmp_path / "broken.docx"
    with zipfile.ZipFile(bad_docx, "w") as zf:
        zf.writestr("nothing.txt", "not a word document")
    with pytest.raises(IngestError):
        load_file(bad_docx)


def test_binary_garbage_and_unsupported_types(tmp_path):
    garbage = tmp_path / "garbage.md"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(IngestError):
        load_file(garbage)
    with pytest.raises(IngestError) as exc:
        load_file(tmp_path / "x.exe")
    assert "找不到文件" in exc.value.message_zh or "不支持" in exc.value.message_zh
    other = tmp_path / "a.xlsx"
    other.write_bytes(b"PK")
    with pytest.raises(IngestError) as exc:
        load_file(other)
    assert "不支持" in exc.value.message_zh


# ---- front matter from someone else's file (issue 28, holes 7 and 8) ---------------------------

def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    """568 bytes of nested anchors used to expand to hundreds of millions of nodes: the job sat at
    'embedding 0/1' and the server stopped answering. Aliases are refused while parsing."""
    path = tmp_path / "bomb.md"
    path.write_bytes(files.yaml_alias_bomb())
    with pytest.raises(IngestError) as refused:
        load_file(path)
    assert "别名" in refused.value.message_zh and "aliases" in refused.value.message_en


def test_nesting_deeper_than_the_parser_can_go_is_a_clear_error(tmp_path):
    path = tmp_path / "deep.md"
    path.write_bytes(files.deep_yaml())
    with pytest.raises(IngestError, match="元数据"):
        load_file(path)


@pytest.mark.parametrize(("rows", "said"), [
    ("[{min: eighty, max: 89, amount: 300}]", "rows[0].min: Input should be a valid integer"),
    ("[{min: 80, max: 70, amount: 300}]", "max 70 is below min 80"),
    ("[{min: 80, max: 89}]", "no row has an amount"),
    ("[{min: 80, amount: -5}]", "rows[0].amount"),
    ("[{min: 80, amount: 300, bonus: 1}]", "rows[0].bonus: Extra inputs are not permitted"),
    ("[]", "rows: List should have at least 1 item"),
])
def test_every_benefit_table_is_checked_with_the_reason_shown(tmp_path, rows, said):
    """One uploaded table with `min: eighty` was accepted, and every answer after it was a 500."""
    path = tmp_path / "table.md"
    path.write_text(f"""---
id: table-doc
title: 高龄津贴
category: elderly_care
region: karamay
source: test
effective_from: 2025-01-01
version: "1"
language: zh
benefit_tables:
  - id: t1
    subject: 高龄津贴
    rows: {rows}
---
正文。
""", encoding="utf-8")
    with pytest.raises(IngestError) as refused:
        load_file(path)
    assert said in refused.value.message_zh and "benefit_tables" in refused.value.message_zh


def test_front_matter_text_fields_must_be_text(tmp_path):
    with pytest.raises(IngestError, match="title 应该是一段文字"):
        load_file(write_doc(tmp_path, "t1", "正文。", title="[a, b]"))
    with pytest.raises(IngestError, match="太长"):
        load_file(write_doc(tmp_path, "t2", "正文。", source="来源" * 400))


def test_a_bad_table_already_in_the_index_is_left_out_not_fatal():
    """Defence for documents indexed before the check: the table is skipped (and logged)."""
    from assistant.core.domain import DocumentMeta  # noqa: PLC0415
    from knowledge_base.benefits import BenefitTable  # noqa: PLC0415

    good = {"id": "good", "subject": "高龄津贴", "rows": [{"min": 80, "amount": 300}]}
    meta = DocumentMeta(doc_id="d", title="t", category="elderly_care", region="karamay", source="s",
                        effective_from=None, effective_to=None, version="1", language="zh",
                        benefit_tables=({"id": "bad", "rows": [{"min": "eighty", "amount": 1}]}, good))
    assert [t.table_id for t in BenefitTable.from_meta(meta)] == ["good"]


def test_the_shipped_corpus_passes_the_schema():
    from assistant.core.settings import Settings  # noqa: PLC0415
    from knowledge_base.loaders import iter_corpus  # noqa: PLC0415

    docs = list(iter_corpus(Settings().corpus_dirs))
    assert sum(bool(d.meta.benefit_tables) for d in docs) >= 2
