"""Hostile files an attacker uploads to /admin/kb/upload, built small: each is kilobytes on the
wire and unbounded work for a naive reader. The attacker tests (tests/integration/test_attacks.py)
upload them to a running server; `python -m tests.attacks.files DIR` writes them out to try by hand."""

from __future__ import annotations

import io
import sys
import zipfile
import zlib
from pathlib import Path

FRONT_MATTER = """id: {doc_id}
title: {title}
category: elderly_care
region: karamay
source: attack test
effective_from: 2025-01-01
version: "1"
language: zh
"""


def yaml_alias_bomb(doc_id: str = "attack-yaml-bomb") -> bytes:
    """Nine levels of nine aliases: 568 bytes of front matter, 9^9 (387 million) nodes expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    head = FRONT_MATTER.format(doc_id=doc_id, title="*a9").replace("title: *a9", "title: *a9")
    return ("---\n" + "\n".join(lines) + "\n" + head + "---\n# 正文\n\n高龄津贴按月发放。\n").encode()


def bad_benefit_table(doc_id: str = "attack-bad-table") -> bytes:
    """A benefit table whose age is a word: accepted once, it made every answer a 500."""
    head = FRONT_MATTER.format(doc_id=doc_id, title="高龄津贴（测试）")
    table = """benefit_tables:
  - id: attack_table
    subject: 高龄津贴
    keywords: [高龄津贴]
    variable: age
    unit: 元/月
    rows:
      - {min: eighty, max: 89, amount: 300}
"""
    return ("---\n" + head + table + "---\n# 高龄津贴\n\n八十岁以上每月发放。\n").encode()


def deep_yaml(doc_id: str = "attack-deep-yaml", depth: int = 100_000) -> bytes:
    """Front matter nested 100,000 lists deep: a recursive parser runs out of stack."""
    head = FRONT_MATTER.format(doc_id=doc_id, title="深")
    return ("---\n" + head + "x: " + "[" * depth + "]" * depth + "\n---\n正文\n").encode()


def pdf_stream_bomb(inflated_mb: int = 500) -> bytes:
    """A one-page PDF whose content stream is `inflated_mb` MB of zeros deflated to ~0.5 MB."""
    compressor = zlib.compressobj(9)
    chunk = b"0" * (1 << 20)
    stream = b"".join(compressor.compress(chunk) for _ in range(inflated_mb)) + compressor.flush()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def docx_of_tiny_paragraphs(paragraphs: int = 15_000) -> bytes:
    """A Word file of many one-character paragraphs (56 KB at 15,000): python-docx's style lookup
    per paragraph made reading it quadratic."""
    import docx  # noqa: PLC0415 - test-only dependency of the builders

    document = docx.Document()
    for _ in range(paragraphs):
        document.add_paragraph("字")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_zip_bomb(inflated_mb: int = 1024) -> bytes:
    """A .docx whose document.xml inflates to `inflated_mb` MB of one paragraph's text."""
    import docx  # noqa: PLC0415 - as above

    base = io.BytesIO()
    docx.Document().save(base)
    source = zipfile.ZipFile(io.BytesIO(base.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for item in source.infolist():
            if item.filename != "word/document.xml":
                target.writestr(item, source.read(item.filename))
        with target.open("word/document.xml", "w", force_zip64=True) as xml:
            xml.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w='
                      b'"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>')
            block = b"A" * (1 << 20)
            for _ in range(inflated_mb):
                xml.write(block)
            xml.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return out.getvalue()


BOMBS = {
    "yaml-alias-bomb.md": yaml_alias_bomb,
    "bad-benefit-table.md": bad_benefit_table,
    "deep-yaml.md": deep_yaml,
    "pdf-stream-bomb.pdf": pdf_stream_bomb,
    "tiny-paragraphs.docx": docx_of_tiny_paragraphs,
    "docx-zip-bomb.docx": docx_zip_bomb,
}


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "attack-files")
    folder.mkdir(parents=True, exist_ok=True)
    for name, build in BOMBS.items():
        data = build()
        (folder / name).write_bytes(data)
        print(f"{name}\t{len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
