"""Turn files into Documents. Markdown/txt carry YAML front matter; HTML, PDF and DOCX are
parsed with well-kept libraries and get their metadata from front matter in the text (md/txt),
from an adjacent ``<file>.meta.yaml`` or from defaults derived from the file name."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import frontmatter
import yaml
from frontmatter.default_handlers import YAMLHandler

from assistant.core.domain import Document, DocumentMeta
from assistant.core.errors import IngestError
from knowledge_base.benefits import benefit_table_problems
from knowledge_base.text import detect_language

REQUIRED_FIELDS = ("id", "title", "category", "region", "source", "effective_from", "version", "language")
CATEGORIES = frozenset(
    {
        "medical_insurance",
        "employment",
        "pension",
        "elderly_care",
        "disability",
        "social_assistance",
        "legal_aid",
        "community_services",
        "emergency",
        "law",
    }
)
SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")
_ID_RE = re.compile(r"^[A-Za-z0-9\u4e00-\u9fff][\w\u4e00-\u9fff@#.\-]{0,127}$")
MAX_FILE_BYTES = 20 * 1024 * 1024
# Front matter is a short header; one far longer is not a document's metadata.
MAX_FRONT_MATTER_CHARS = 64 * 1024
# A front-matter text field ("title", "source" …) is a line or two, and must be text, not a list.
MAX_FIELD_CHARS = 500
TEXT_FIELDS = ("id", "title", "category", "region", "source", "version", "language")


class NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors' aliases (`*name`): a few hundred bytes of nested aliases
    expand to billions of nodes (a "billion laughs" bomb), and no document's metadata needs one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not accepted", event.start_mark)
        return super().compose_node(parent, index)


class NoAliasYAMLHandler(YAMLHandler):
    """python-frontmatter's YAML front matter, read with `NoAliasLoader`."""

    def load(self, fm: str, **kwargs: object) -> Any:
        if len(fm) > MAX_FRONT_MATTER_CHARS:
            raise yaml.YAMLError(f"front matter longer than {MAX_FRONT_MATTER_CHARS} characters")
        return safe_yaml(fm)


def safe_yaml(text: str) -> Any:
    """YAML from a file someone uploaded: safe types, no aliases."""
    return yaml.load(text, Loader=NoAliasLoader)  # NoAliasLoader is a SafeLoader


def _as_date(value: Any, field: str, path: Path) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise IngestError(
            f"文档 {path.name} 的 {field} 不是有效日期：{value!r}（应为 YYYY-MM-DD）",
            f"{path.name}: {field} is not a valid date: {value!r} (expected YYYY-MM-DD)",
        ) from exc


def build_meta(fields: dict[str, Any], path: Path) -> DocumentMeta:
    missing = [f for f in REQUIRED_FIELDS if fields.get(f) in (None, "")]
    if missing:
        raise IngestError(
            f"文档 {path.name} 的元数据缺少字段：{', '.join(missing)}",
            f"{path.name}: front matter is missing: {', '.join(missing)}",
        )
    for name in TEXT_FIELDS:
        value = fields[name]
        if not isinstance(value, str | int | float | date) or isinstance(value, bool):
            raise IngestError(f"文档 {path.name} 的 {name} 应该是一段文字",
                              f"{path.name}: {name} must be text, not {type(value).__name__}")
        if len(str(value)) > MAX_FIELD_CHARS:
            raise IngestError(f"文档 {path.name} 的 {name} 太长（最多 {MAX_FIELD_CHARS} 个字）",
                              f"{path.name}: {name} is longer than {MAX_FIELD_CHARS} characters")
    doc_id = str(fields["id"])
    if not _ID_RE.match(doc_id):
        raise IngestError(f"文档编号不合法：{doc_id!r}", f"invalid document id: {doc_id!r}")
    category = str(fields["category"])
    if category not in CATEGORIES:
        raise IngestError(
            f"文档 {path.name} 的类别 {category!r} 不在允许范围内",
            f"{path.name}: unknown category {category!r}; allowed: {', '.join(sorted(CATEGORIES))}",
        )
    language = str(fields["language"])
    if language not in ("zh", "en"):
        raise IngestError(f"文档 {path.name} 的语言只能是 zh 或 en", f"{path.name}: language must be zh or en")
    tables = fields.get("benefit_tables") or ()
    problems = benefit_table_problems(list(tables) if isinstance(tables, tuple) else tables)
    if problems:
        raise IngestError(f"文档 {path.name} 的待遇标准表（benefit_tables）有误：{'；'.join(problems)}",
                          f"{path.name}: benefit_tables: {'; '.join(problems)}")
    return DocumentMeta(
        doc_id=doc_id,
        title=str(fields["title"]).strip(),
        category=category,
        region=str(fields["region"]),
        source=str(fields["source"]),
        effective_from=_as_date(fields.get("effective_from"), "effective_from", path),
        effective_to=_as_date(fields.get("effective_to"), "effective_to", path),
        version=str(fields["version"]),
        language=language,
        benefit_tables=tuple(tables),
    )


def front_matter(meta: DocumentMeta) -> dict[str, Any]:
    """A document's metadata as the front-matter fields a file would carry (`build_meta`'s inverse)."""
    return {
        "id": meta.doc_id, "title": meta.title, "category": meta.category, "region": meta.region,
        "source": meta.source, "effective_from": meta.effective_from, "effective_to": meta.effective_to,
        "version": meta.version, "language": meta.language, "benefit_tables": list(meta.benefit_tables),
    }


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise IngestError(f"文件 {path.name} 不是文本文件", f"{path.name} is not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"文件 {path.name} 不是 UTF-8 编码的文本", f"{path.name} is not UTF-8 text") from exc


def _split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    try:
        post = frontmatter.loads(text, handler=NoAliasYAMLHandler())
    except yaml.composer.ComposerError as exc:
        if "aliases" not in str(exc):
            raise _malformed_front_matter(path, exc) from exc
        raise IngestError(f"文档 {path.name} 的元数据（YAML 头）里不能用别名（*名字），请把内容直接写出来",
                          f"{path.name}: YAML aliases (*name) are not accepted in front matter") from exc
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise _malformed_front_matter(path, exc) from exc
    if not isinstance(post.metadata, dict):
        raise IngestError(f"文档 {path.name} 的元数据格式错误", f"{path.name}: front matter is not a mapping")
    return dict(post.metadata), post.content


def _malformed_front_matter(path: Path, exc: BaseException) -> IngestError:
    return IngestError(f"文档 {path.name} 的元数据（YAML 头）格式错误，无法读取",
                       f"{path.name}: the YAML front matter is malformed: {exc.__class__.__name__}")


def _sidecar_meta(path: Path) -> dict[str, Any]:
    sidecar = path.with_name(path.name + ".meta.yaml")
    if not sidecar.exists():
        return {}
    try:
        data = safe_yaml(sidecar.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, RecursionError) as exc:
        raise IngestError(f"元数据文件 {sidecar.name} 格式错误", f"{sidecar.name} is malformed") from exc
    if not isinstance(data, dict):
        raise IngestError(f"元数据文件 {sidecar.name} 格式错误", f"{sidecar.name} is not a mapping")
    return dict(data)


def _default_meta(path: Path, body: str) -> dict[str, Any]:
    first_heading = next((ln.lstrip("# ").strip() for ln in body.splitlines() if ln.strip()), path.stem)
    return {
        "id": re.sub(r"[^\w\-]+", "-", path.stem).strip("-").lower() or "doc",
        "title": first_heading[:80],
        "category": "community_services",
        "region": "national",
        "source": path.name,
        "effective_from": date.today().isoformat(),
        "version": "1",
        "language": detect_language(body),
    }


def _pdf_text(path: Path) -> str:
    # Only `kb build` reads PDF, Word and HTML files; importing pypdf, docx and bs4 with this module
    # would add ~210 ms to every command and test that loads the knowledge base.
    from pypdf import PdfReader  # noqa: PLC0415 - +80 ms at import, see above
    from pypdf.errors import PyPdfError  # noqa: PLC0415 - as above

    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
    # PyPdfError: a corrupt file, and a stream past pypdf's decompression limit (LimitReachedError).
    except (PyPdfError, ValueError, KeyError, OSError, TypeError, RecursionError) as exc:
        raise IngestError(
            f"PDF 文件 {path.name} 已损坏或无法读取", f"{path.name}: the PDF is corrupt or unreadable"
        ) from exc
    return "\n\n".join(p.strip() for p in pages)


def _docx_text(path: Path) -> str:
    import docx  # noqa: PLC0415 - +45 ms at import, see _pdf_text
    from docx.opc.exceptions import PackageNotFoundError  # noqa: PLC0415 - as above
    from lxml.etree import XMLSyntaxError  # type: ignore[import-untyped]  # noqa: PLC0415 - as above

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, PackageNotFoundError, XMLSyntaxError, KeyError, ValueError, OSError) as exc:
        raise IngestError(
            f"Word 文件 {path.name} 已损坏或无法读取", f"{path.name}: the DOCX is corrupt or unreadable"
        ) from exc
    # A paragraph's style read as `para.style` scans every style of the file for the default each
    # time (10,000 tiny paragraphs: 20 s); its style id, named once from this table, is linear.
    style_names = {style.style_id: (style.name or "").lower() for style in document.styles}
    lines: list[str] = []
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = style_names.get(para._p.style or "", "")
        if style.startswith("heading"):
            level = "".join(ch for ch in style if ch.isdigit()) or "1"
            lines.append("#" * min(int(level), 6) + " " + text)
        else:
            lines.append(text)
    return "\n\n".join(lines)


def _html_text(path: Path) -> str:
    from bs4 import BeautifulSoup  # noqa: PLC0415 - +85 ms at import, see _pdf_text

    soup = BeautifulSoup(_read_text(path), "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    lines: list[str] = []
    for el in soup.find_all(["h1", "h2", "h3", "h4", "p", "li", "td"]):
        text = el.get_text(" ", strip=True)
        if not text:
            continue
        if el.name in ("h1", "h2", "h3", "h4"):
            lines.append("#" * int(el.name[1]) + " " + text)
        else:
            lines.append(text)
    if not lines:
        lines = [soup.get_text("\n", strip=True)]
    return "\n\n".join(lines)


def load_file(path: Path, defaults: dict[str, Any] | None = None) -> Document:
    """A file as a Document. `defaults` (the admin upload form's region, category, dates …) fill
    the metadata fields the file itself does not set; what the file says wins."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"找不到文件：{path}", f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(
            f"不支持的文件类型：{suffix or '无扩展名'}（支持 md、txt、html、pdf、docx）",
            f"unsupported file type {suffix!r} (supported: md, txt, html, pdf, docx)",
        )
    if path.stat().st_size > MAX_FILE_BYTES:
        raise IngestError(f"文件 {path.name} 太大（超过 20MB）", f"{path.name} is larger than 20 MB")
    given = {k: v for k, v in (defaults or {}).items() if v not in (None, "")}
    if suffix in (".md", ".markdown", ".txt"):
        fields, body = _split_front_matter(_read_text(path), path)
    else:
        body = {".pdf": _pdf_text, ".docx": _docx_text}.get(suffix, _html_text)(path)
        fields = _sidecar_meta(path)
    if not body.strip():
        raise IngestError(f"文件 {path.name} 里没有可读的文字", f"{path.name} contains no readable text")
    # Markdown documents must carry complete front matter (or the upload form completes it);
    # other formats may rely on defaults (file name, first heading, detected language).
    fallback = {} if suffix in (".md", ".markdown") else _default_meta(path, body)
    fields = {**fallback, **given, **fields}
    return Document(meta=build_meta(fields, path), body=body.strip() + "\n", path=str(path))


def iter_corpus(dirs: list[Path]) -> Iterator[Document]:
    for directory in dirs:
        for path in sorted(Path(directory).rglob("*")):
            if path.suffix.lower() in SUPPORTED_SUFFIXES and path.is_file() and path.name != "README.md":
                yield load_file(path)



def law_citation_title(law: str, article: str) -> str:
    return f"《{law}》{article}"


def iter_law_articles(path: Path) -> Iterator[Document]:
    """Each statute article becomes one Document of category `law` with doc_id = its `_id`.
    Where the file holds several versions of a law, each older version's articles get an
    `effective_to` the day before the next version, so default searches cite the law in force."""
    rows: list[tuple[int, dict[str, Any]]] = []
    with Path(path).open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise IngestError(
                    f"法律条文数据第 {line_no} 行格式错误", f"law corpus line {line_no} is malformed"
                ) from exc
    versions: dict[str, list[date]] = {}
    for _, row in rows:
        version_date = _law_version_date(row)
        if version_date:
            versions.setdefault(str(row.get("law")), []).append(version_date)
    successor: dict[tuple[str, date], date] = {}
    for law, dates in versions.items():
        ordered = sorted(set(dates))
        successor.update({(law, d): nxt for d, nxt in pairwise(ordered)})
    for line_no, row in rows:
        try:
            version = str(row["version"])
            effective_from = _law_version_date(row)
            replaced_on = successor.get((str(row["law"]), effective_from)) if effective_from else None
            meta = DocumentMeta(
                doc_id=str(row["_id"]),
                title=law_citation_title(row["law"], row["article"]),
                category="law",
                region="national",
                source=f"{row['title']}（{version}版） {row.get('source', '')}".strip(),
                effective_from=effective_from,
                effective_to=replaced_on - timedelta(days=1) if replaced_on else None,
                version=version,
                language="zh",
            )
            heading = f"# {row['title']}\n\n## {row.get('chapter') or row['article']}\n\n"
            yield Document(meta=meta, body=heading + row["text"].strip() + "\n", path=str(path))
        except (KeyError, TypeError, AttributeError) as exc:
            raise IngestError(
                f"法律条文数据第 {line_no} 行缺少字段", f"law corpus line {line_no} is missing fields"
            ) from exc


def _law_version_date(row: dict[str, Any]) -> date | None:
    version = str(row.get("version", ""))
    return date.fromisoformat(version) if re.match(r"\d{4}-\d{2}-\d{2}$", version) else None
