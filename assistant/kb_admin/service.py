"""The knowledge base in the administrators' hands: upload files, edit a document's front matter,
retire or restore a document.

A change is checked at once, while the administrator waits (a corrupt PDF, an empty Word file,
broken front matter, a wrong date: a clear message, and nothing changes), then indexed by a
background thread of the process that received it; its progress (chunks embedded of all) is kept
in `kb_jobs`, so the page can show it from any server process. The index applies a change in one
transaction (knowledge_base/store.py), so a job that fails or dies changes nothing. A finished job
writes one audit row per document it touched. Every server process sharing the index folder sees
the new generation on its next question."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update

from assistant.core.clock import utcnow
from assistant.core.db import get_engine
from assistant.core.domain import Chunk, Document, DocumentMeta
from assistant.core.errors import IngestError, LinliError, UnknownDocument
from assistant.core.privacy import private_dir
from assistant.core.settings import KbAdminSettings
from assistant.kb_admin.tables import kb_audit, kb_jobs
from knowledge_base.benefits import BenefitTable
from knowledge_base.chunking import chunk_document
from knowledge_base.isolated import ReadLimits, read_isolated
from knowledge_base.loaders import CATEGORIES, SUPPORTED_SUFFIXES, front_matter
from knowledge_base.store import duplicate_ids

if TYPE_CHECKING:
    from assistant.knowledge import KnowledgeBase

log = logging.getLogger(__name__)

ACTIONS_ZH = {"upload": "上传", "edit": "修改元数据", "retire": "停用", "restore": "恢复", "add": "加入",
              "remove": "删除"}
# The front-matter fields the edit form offers (the rest — id, language, benefit tables — come
# with the file).
EDITABLE_FIELDS = ("title", "region", "category", "source", "version", "effective_from", "effective_to")
FIELD_LABELS_ZH = {"title": "标题", "region": "地区", "category": "类别", "source": "来源", "version": "版本",
                   "effective_from": "生效日期", "effective_to": "失效日期"}
_SAFE_NAME_RE = re.compile(r"[^\w\u4e00-\u9fff.\-]+")


class JobNotFound(LinliError):
    code = "kb_job_not_found"
    http_status = 404


@dataclass(frozen=True)
class UploadedFile:
    name: str
    data: bytes


@dataclass(frozen=True)
class Job:
    job_id: str
    action: str
    actor: str
    status: str  # queued | running | done | failed | interrupted
    stage: str
    done: int
    total: int
    doc_ids: list[str]
    summary: str
    error_zh: str | None
    error_en: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "interrupted")

    @property
    def percent(self) -> int:
        if self.status == "done":
            return 100
        if not self.total:
            return 0
        # Embedding is most of the work; writing the index and rebuilding FAISS/BM25 is the rest.
        return min(95, int(90 * self.done / self.total) + (5 if self.stage == "indexing" else 0))

    def public(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "action": self.action, "action_label": ACTIONS_ZH.get(self.action, self.action),
                "actor": self.actor, "status": self.status, "stage": self.stage, "done": self.done,
                "total": self.total, "percent": self.percent, "doc_ids": self.doc_ids, "summary": self.summary,
                "error": self.error_zh, "error_en": self.error_en, "finished": self.finished,
                "created_at": self.created_at.isoformat(timespec="seconds"),
                "finished_at": self.finished_at.isoformat(timespec="seconds") if self.finished_at else None}


@dataclass(frozen=True)
class DocumentView:
    """One document for its admin page: live (indexed chunks) or retired (chunks it would have)."""

    meta: DocumentMeta
    body: str
    chunks: list[Chunk]
    retired: bool
    benefit_tables: list[BenefitTable]
    history: list[dict[str, Any]] = field(default_factory=list)

    def form_values(self) -> dict[str, str]:
        fields = front_matter(self.meta)
        return {key: _form_value(fields[key]) for key in EDITABLE_FIELDS}


Touched = list[tuple[str, str, str, str]]  # (doc_id, title, version, detail) per document changed


class KnowledgeAdmin:
    def __init__(self, url: str, settings: KbAdminSettings, knowledge: Callable[[], KnowledgeBase],
                 uploads_dir: Path) -> None:
        self.engine = get_engine(url)
        self.settings = settings
        # A callable: the knowledge base (and its embedding model) loads on the first change.
        self._knowledge = knowledge
        self.uploads_dir = uploads_dir
        # One job at a time per process; the index's file lock orders jobs of different processes.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-index")
        self._futures: dict[str, Future[None]] = {}
        self._futures_lock = threading.Lock()

    @property
    def knowledge(self) -> KnowledgeBase:
        return self._knowledge()

    # ---- changes: checked now, indexed in the background ---------------------------------

    def upload(self, files: Sequence[UploadedFile], actor: str, defaults: dict[str, Any] | None = None) -> Job:
        """Check every file (all or none are indexed) and start indexing them. `defaults` fill
        the metadata a file does not set (a PDF has no front matter)."""
        if not files:
            raise IngestError("请选择要上传的文件。", "Choose at least one file.")
        if len(files) > self.settings.max_files:
            raise IngestError(f"一次最多上传 {self.settings.max_files} 个文件。",
                              f"At most {self.settings.max_files} files at a time.")
        fields = _checked_defaults(defaults or {})
        private_dir(self.uploads_dir)
        staging = Path(tempfile.mkdtemp(prefix="upload-", dir=self.uploads_dir))
        try:
            docs, chunks = self._read_uploads(files, staging, fields)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        names = dict(zip((d.meta.doc_id for d in docs), (Path(f.name).name for f in files), strict=True))
        live = {d["doc_id"]: d["version"] for d in self.knowledge.store.list_documents()}

        def work(progress: Callable[[int], None]) -> Touched:
            self.knowledge.add_documents(docs, progress)
            return [(d.meta.doc_id, d.meta.title, d.meta.version, names[d.meta.doc_id]
                     + (f"（替换版本 {live[d.meta.doc_id]}）" if d.meta.doc_id in live else "")) for d in docs]

        summary = "上传 " + "、".join(names.values())
        return self._submit("upload", actor, [d.meta.doc_id for d in docs], summary, chunks, work)

    def _read_uploads(self, files: Sequence[UploadedFile], staging: Path,
                      fields: dict[str, Any]) -> tuple[list[Document], int]:
        """The files as documents, all or none, and how many chunks they make."""
        problems_zh: list[str] = []
        problems_en: list[str] = []
        paths: list[Path] = []
        for i, upload in enumerate(files):
            name = _safe_name(upload.name)
            if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                problems_zh.append(f"{name}：不支持的文件类型（支持 md、txt、html、pdf、docx）")
                problems_en.append(f"{name}: unsupported file type (md, txt, html, pdf, docx)")
                continue
            # Each file in its own folder: two uploads may share a name, and a sidecar never applies.
            path = staging / str(i) / name
            path.parent.mkdir()
            path.write_bytes(upload.data)
            paths.append(path)
        # Each file is read in a child process with CPU, memory and time limits: a crafted file
        # costs the server at most `read_wall_s`, never its memory or its answers.
        limits = ReadLimits(self.settings.read_cpu_s, self.settings.read_wall_s, self.settings.read_memory_mb)
        with ThreadPoolExecutor(max_workers=self.settings.read_processes, thread_name_prefix="kb-read") as pool:
            outcomes = list(pool.map(lambda path: _read_one(path, fields, limits), paths))
        docs: list[Document] = []
        for outcome in outcomes:
            if isinstance(outcome, IngestError):
                problems_zh.append(outcome.message_zh)
                problems_en.append(outcome.message_en or outcome.message_zh)
            else:
                docs.append(outcome)
        for dup in duplicate_ids(docs):
            problems_zh.append(f"有多个文件的文档编号都是 {dup}")
            problems_en.append(f"several files have the document id {dup}")
        if problems_zh:
            raise IngestError("没有导入任何文件，请改正后重新上传：" + "；".join(problems_zh),
                              "Nothing was imported; fix and upload again: " + "; ".join(problems_en))
        chunks = 0
        for doc in docs:
            made = len(chunk_document(doc, self.knowledge.store.chunking))
            if not made:
                raise IngestError(f"没有导入任何文件：{doc.meta.doc_id} 没有可索引的内容",
                                  f"Nothing was imported: {doc.meta.doc_id} has no indexable text")
            chunks += made
        return docs, chunks

    def edit(self, doc_id: str, changes: dict[str, Any], actor: str) -> Job:
        """Change a live document's front matter (checked now) and re-index it as a new version."""
        unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
        if unknown:
            raise IngestError(f"不能修改这些字段：{', '.join(unknown)}", f"fields not editable: {', '.join(unknown)}")
        before = self.knowledge.store.get_document(doc_id)[0]
        doc = self.knowledge.edited_document(doc_id, _checked_defaults(changes, allow_empty=("effective_to",)))
        diff = _differences(before, doc.meta)
        if not diff:
            raise IngestError("没有改动任何字段。", "Nothing was changed.")

        def work(progress: Callable[[int], None]) -> Touched:
            self.knowledge.add_documents([doc], progress)
            return [(doc_id, doc.meta.title, doc.meta.version, "；".join(diff))]

        return self._submit("edit", actor, [doc_id], f"修改 {before.title}：" + "；".join(diff),
                            self._chunk_count([doc]), work)

    def retire(self, doc_id: str, actor: str) -> Job:
        meta = self.knowledge.store.get_document(doc_id)[0]

        def work(_progress: Callable[[int], None]) -> Touched:
            self.knowledge.retire([doc_id])
            return [(doc_id, meta.title, meta.version, "不再用于回答")]

        return self._submit("retire", actor, [doc_id], f"停用 {meta.title}", 0, work)

    def restore(self, doc_id: str, actor: str) -> Job:
        doc = self.knowledge.store.retired_document(doc_id)

        def work(progress: Callable[[int], None]) -> Touched:
            self.knowledge.restore(doc_id, progress)
            return [(doc_id, doc.meta.title, doc.meta.version, "重新用于回答")]

        return self._submit("restore", actor, [doc_id], f"恢复 {doc.meta.title}", self._chunk_count([doc]), work)

    def add_now(self, path: Path, actor: str) -> list[str]:
        """`linli kb add`: index the file (or folder) while the caller waits, audited like an upload."""
        doc_ids = self.knowledge.add(path)
        self._audit("add", actor, [(m.doc_id, m.title, m.version, str(path))
                                   for m in (self.knowledge.store.get_document(i)[0] for i in doc_ids)], "")
        return doc_ids

    def remove_now(self, doc_id: str, actor: str) -> None:
        """`linli kb remove`: delete the document (live or retired) for good, audited."""
        try:
            meta = self.knowledge.store.get_document(doc_id)[0]
        except UnknownDocument:
            meta = self.knowledge.store.retired_document(doc_id).meta
        self.knowledge.remove(doc_id)
        self._audit("remove", actor, [(doc_id, meta.title, meta.version, "删除，不能恢复")], "")

    def _audit(self, action: str, actor: str, touched: Touched, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(kb_audit), _audit_rows(utcnow(), action, actor, touched, job_id))

    def _chunk_count(self, docs: Sequence[Document]) -> int:
        return sum(len(chunk_document(d, self.knowledge.store.chunking)) for d in docs)

    # ---- the background job ---------------------------------------------------------------

    def _submit(self, action: str, actor: str, doc_ids: list[str], summary: str, total: int,
                work: Callable[[Callable[[int], None]], Touched]) -> Job:
        job_id = uuid.uuid4().hex
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(insert(kb_jobs).values(
                job_id=job_id, action=action, actor=actor[:64], status="queued", stage="waiting", done=0, total=total,
                doc_ids=doc_ids, summary=summary[:2000], created_at=now, updated_at=now))
        future = self._executor.submit(self._run, job_id, action, actor, total, work)
        with self._futures_lock:
            self._futures[job_id] = future
        return self.job(job_id)

    def _run(self, job_id: str, action: str, actor: str, total: int,
             work: Callable[[Callable[[int], None]], Touched]) -> None:
        self._set(job_id, status="running", stage="embedding" if total else "indexing")
        embedded = 0
        last_write = 0.0

        def progress(n: int) -> None:
            nonlocal embedded, last_write
            embedded = min(total, embedded + n)
            # A row update per batch would be fine; per quarter second is enough for the page.
            if embedded >= total or time.monotonic() - last_write > 0.25:
                last_write = time.monotonic()
                self._set(job_id, done=embedded, stage="indexing" if embedded >= total else "embedding")

        try:
            touched = work(progress)
        except LinliError as exc:
            self._set(job_id, status="failed", stage="finished", error_zh=exc.message_zh, error_en=exc.message_en,
                      finished_at=utcnow())
            return
        except Exception:
            log.exception("knowledge-base job %s (%s) failed", job_id, action)
            self._set(job_id, status="failed", stage="finished",
                      error_zh="索引时出了错，知识库没有改变。请稍后重试，或联系技术人员查看日志。",
                      error_en="Indexing failed; the knowledge base is unchanged. See the server log.",
                      finished_at=utcnow())
            return
        now = utcnow()
        # The job's end and its audit rows together: the history never shows half a change.
        with self.engine.begin() as conn:
            conn.execute(update(kb_jobs).where(kb_jobs.c.job_id == job_id).values(
                status="done", stage="finished", done=total, updated_at=now, finished_at=now))
            conn.execute(insert(kb_audit), _audit_rows(now, action, actor, touched, job_id))

    def _set(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(kb_jobs).where(kb_jobs.c.job_id == job_id).values(updated_at=utcnow(), **values))

    def wait(self, job_id: str, timeout_s: float = 120.0) -> Job:
        """Block until this process's job has finished (the CLI and tests)."""
        with self._futures_lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout_s)
        return self.job(job_id)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # ---- reads ------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        with self.engine.connect() as conn:
            row = conn.execute(select(kb_jobs).where(kb_jobs.c.job_id == job_id[:32])).first()
        if row is None:
            raise JobNotFound("没有这个索引任务。", "No such indexing job.")
        return self._job(row)

    def recent_jobs(self, limit: int = 10) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(kb_jobs).order_by(kb_jobs.c.created_at.desc()).limit(limit)).all()
        return [self._job(r) for r in rows]

    def _job(self, row: Any) -> Job:
        status = row.status
        # A job whose process stopped mid-way never finishes: after a quiet while it reads as
        # interrupted (the index applies a change whole or not at all, so nothing is half done).
        quiet = utcnow() - row.updated_at
        if status in ("queued", "running") and quiet > timedelta(seconds=self.settings.stale_after_s):
            status = "interrupted"
        return Job(job_id=row.job_id, action=row.action, actor=row.actor, status=status, stage=row.stage,
                   done=row.done, total=row.total, doc_ids=list(row.doc_ids or ()), summary=row.summary,
                   error_zh=row.error_zh if status != "interrupted" else
                   "服务器在索引时停止了，这次修改没有生效或已完整生效，请查看文档列表后决定是否重试。",
                   error_en=row.error_en, created_at=row.created_at, updated_at=row.updated_at,
                   finished_at=row.finished_at)

    def documents(self, *, include_law: bool = False, category: str | None = None, query: str | None = None,
                  limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Live and retired documents with their last change (who, what, when), filtered; and how
        many matched before `limit`."""
        store = self.knowledge.store
        rows = [{**d, "retired": False} for d in store.list_documents()] + \
               [{**d, "retired": True} for d in store.retired_rows()]
        needle = (query or "").strip().lower()
        picked = [r for r in rows
                  if (include_law or r["category"] != "law" or category == "law")
                  and (not category or r["category"] == category)
                  and (not needle or needle in r["doc_id"].lower() or needle in r["title"].lower())]
        picked.sort(key=lambda r: (r["retired"], r["category"] == "law", r["doc_id"]))
        changes = self._last_changes([r["doc_id"] for r in picked[:limit]])
        for row in picked[:limit]:
            row["last_change"] = changes.get(row["doc_id"])
        return picked[:limit], len(picked)

    def _last_changes(self, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not doc_ids:
            return {}
        latest = select(func.max(kb_audit.c.id)).group_by(kb_audit.c.doc_id).scalar_subquery()
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(doc_ids), 500):
                part = doc_ids[i:i + 500]
                rows = conn.execute(select(kb_audit).where(kb_audit.c.id.in_(latest), kb_audit.c.doc_id.in_(part)))
                found.update({r.doc_id: _audit_row(r) for r in rows})
        return found

    def document(self, doc_id: str) -> DocumentView:
        store = self.knowledge.store
        try:
            meta, body, chunks = store.get_document(doc_id)
            retired = False
        except UnknownDocument:
            doc = store.retired_document(doc_id)
            meta, body, retired = doc.meta, doc.body, True
            chunks = chunk_document(doc, store.chunking)
        return DocumentView(meta=meta, body=body, chunks=chunks, retired=retired,
                            benefit_tables=BenefitTable.from_meta(meta), history=self.audit(doc_id=doc_id)[0])

    def audit(self, *, doc_id: str | None = None, limit: int = 100,
              offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The newest audit rows first (of one document, or all), and how many there are."""
        where = [kb_audit.c.doc_id == doc_id] if doc_id else []
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(kb_audit).where(*where)).scalar() or 0
            rows = conn.execute(select(kb_audit).where(*where).order_by(kb_audit.c.id.desc())
                                .limit(limit).offset(offset)).all()
        return [_audit_row(r) for r in rows], int(total)


def _read_one(path: Path, defaults: dict[str, Any], limits: ReadLimits) -> Document | IngestError:
    try:
        return read_isolated(path, defaults, limits)
    except IngestError as exc:
        return exc


def _audit_rows(at: datetime, action: str, actor: str, touched: Touched, job_id: str) -> list[dict[str, Any]]:
    return [{"at": at, "actor": actor[:64], "action": action, "doc_id": doc_id, "title": title, "version": version,
             "detail": detail[:2000], "job_id": job_id} for doc_id, title, version, detail in touched]


def _audit_row(row: Any) -> dict[str, Any]:
    return {"at": row.at, "actor": row.actor, "action": row.action,
            "action_label": ACTIONS_ZH.get(row.action, row.action), "doc_id": row.doc_id, "title": row.title,
            "version": row.version, "detail": row.detail, "job_id": row.job_id}


def _safe_name(name: str) -> str:
    """The uploaded file's own name, without folders or characters a file system would mind."""
    base = Path(name.replace("\\", "/")).name.strip() or "upload"
    cleaned = _SAFE_NAME_RE.sub("_", base)[-120:].lstrip(".")
    return cleaned or "upload"


def _checked_defaults(values: dict[str, Any], allow_empty: tuple[str, ...] = ()) -> dict[str, Any]:
    """Form values as front-matter fields: trimmed, empty ones dropped (or kept as None where
    clearing is allowed), dates and category checked with a message naming the field."""
    out: dict[str, Any] = {}
    for key, raw in values.items():
        value = raw.strip() if isinstance(raw, str) else raw
        if value in (None, ""):
            if key in allow_empty:
                out[key] = None
            continue
        label = FIELD_LABELS_ZH.get(key, key)
        if key in ("effective_from", "effective_to") and isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError as exc:
                raise IngestError(f"{label}要写成 年-月-日，例如 2026-01-31。",
                                  f"{key} must be YYYY-MM-DD.") from exc
        if key == "category" and value not in CATEGORIES:
            raise IngestError(f"没有“{value}”这个类别。", f"unknown category {value!r}")
        if isinstance(value, str) and len(value) > 200:
            raise IngestError(f"{label}太长（最多 200 个字）。", f"{key} is longer than 200 characters.")
        out[key] = value
    start, end = out.get("effective_from"), out.get("effective_to")
    if isinstance(start, date) and isinstance(end, date) and end < start:
        raise IngestError("失效日期不能早于生效日期。", "effective_to is before effective_from.")
    return out


def _differences(before: DocumentMeta, after: DocumentMeta) -> list[str]:
    changed = []
    for key in EDITABLE_FIELDS:
        old, new = getattr(before, key), getattr(after, key)
        if old != new:
            changed.append(f"{FIELD_LABELS_ZH[key]}：{_shown(old)} → {_shown(new)}")
    return changed


def _form_value(value: object) -> str:
    """A front-matter value as an edit form's field holds it ("" for none)."""
    return "" if value is None else value.isoformat() if isinstance(value, date) else str(value)


def _shown(value: object) -> str:
    return _form_value(value) or "（空）"
