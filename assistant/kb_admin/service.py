"""The knowledge base in the administrators' hands: upload files, edit a document's front matter,
retire or restore a document.

A change is checked at once, while the administrator waits (a corrupt PDF, an empty Word file,
broken front matter, a wrong date: a clear message, and nothing changes), then stored as a job in
`kb_jobs` with everything needed to do it, and indexed by whichever process leases it: a
`linli worker`, or the server itself when it runs the background work (`api.background`, one
process). Its progress (chunks embedded of all) is kept in the row, so the page can show it from
any replica. The index applies a change in one transaction (knowledge_base/store.py), so a job
that fails or dies changes nothing; a job whose process died is leased again by another when its
lease runs out, and finishes once (its end and its audit rows are written together, only by the
lease's holder). Every replica follows the new generation without a restart."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from sqlalchemy import Engine, and_, func, insert, or_, select, update

from assistant.core.clock import utcnow
from assistant.core.db import lease_due
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
# Documents in a job's payload (JSON), and back.
_DOCUMENTS = TypeAdapter(list[Document])


class KnowledgeAdmin:
    def __init__(self, engine: Engine, settings: KbAdminSettings, knowledge: Callable[[], KnowledgeBase],
                 uploads_dir: Path, *, run_here: bool = True, worker: str | None = None) -> None:
        self.engine = engine
        self.settings = settings
        # A callable: the knowledge base (and its embedding model) loads on the first change.
        self._knowledge = knowledge
        self.uploads_dir = uploads_dir
        # `run_here`: this process runs the jobs it takes (one process); a cluster's replicas leave
        # them to `linli worker`. One job at a time per process; the index's lock orders the rest.
        self.run_here = run_here
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}-kb"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-index")

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
        touched = [(d.meta.doc_id, d.meta.title, d.meta.version, names[d.meta.doc_id]
                    + (f"（替换版本 {live[d.meta.doc_id]}）" if d.meta.doc_id in live else "")) for d in docs]
        summary = "上传 " + "、".join(names.values())
        return self._submit("upload", actor, [d.meta.doc_id for d in docs], summary, chunks, touched, docs)

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

        return self._submit("edit", actor, [doc_id], f"修改 {before.title}：" + "；".join(diff),
                            self._chunk_count([doc]), [(doc_id, doc.meta.title, doc.meta.version, "；".join(diff))],
                            [doc])

    def retire(self, doc_id: str, actor: str) -> Job:
        meta = self.knowledge.store.get_document(doc_id)[0]
        return self._submit("retire", actor, [doc_id], f"停用 {meta.title}", 0,
                            [(doc_id, meta.title, meta.version, "不再用于回答")])

    def restore(self, doc_id: str, actor: str) -> Job:
        doc = self.knowledge.store.retired_document(doc_id)
        return self._submit("restore", actor, [doc_id], f"恢复 {doc.meta.title}", self._chunk_count([doc]),
                            [(doc_id, doc.meta.title, doc.meta.version, "重新用于回答")])

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

    def _submit(self, action: str, actor: str, doc_ids: list[str], summary: str, total: int, touched: Touched,
                documents: Sequence[Document] = ()) -> Job:
        job_id = uuid.uuid4().hex
        now = utcnow()
        payload = {"documents": _DOCUMENTS.dump_python(list(documents), mode="json"),
                   "touched": [list(t) for t in touched]}
        with self.engine.begin() as conn:
            conn.execute(insert(kb_jobs).values(
                job_id=job_id, action=action, actor=actor[:64], status="queued", stage="waiting", done=0, total=total,
                doc_ids=doc_ids, summary=summary[:2000], created_at=now, updated_at=now, payload=payload,
                attempts=0))
        if self.run_here:
            self._executor.submit(self.run_due, self.worker)
        return self.job(job_id)

    # ---- running jobs (any process: leased) ---------------------------------------------------

    def run_due(self, worker: str) -> int:
        """Run the jobs waiting for a process, oldest first, one at a time: queued ones, and those
        whose process stopped renewing its lease. Returns how many this call ran."""
        ran = 0
        while True:
            now = utcnow()
            due = and_(kb_jobs.c.status.in_(("queued", "running")), kb_jobs.c.payload.is_not(None),
                       or_(kb_jobs.c.lease_until.is_(None), kb_jobs.c.lease_until < now))
            leased = lease_due(self.engine, kb_jobs.c.job_id, due, worker=worker,
                               until=now + timedelta(seconds=self.settings.job_lease_s), limit=1,
                               order_by=kb_jobs.c.created_at)
            if not leased:
                return ran
            self._run(leased[0], worker)
            ran += 1

    def _run(self, job_id: str, worker: str) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(select(kb_jobs).where(kb_jobs.c.job_id == job_id)).one()
            attempts = row.attempts + 1
            conn.execute(update(kb_jobs).where(kb_jobs.c.job_id == job_id)
                         .values(attempts=attempts, status="running", updated_at=utcnow(),
                                 stage="embedding" if row.total else "indexing"))
        if attempts > self.settings.job_attempts:
            self._finish(job_id, worker, status="failed",
                         error_zh="这项修改多次在索引时中断，已停止重试；知识库没有改变。请联系技术人员查看日志。",
                         error_en="Indexing this change stopped its process several times; it was not applied.")
            return
        total = row.total
        embedded = 0
        last_write = 0.0

        def progress(n: int) -> None:
            nonlocal embedded, last_write
            embedded = min(total, embedded + n)
            # A row update per batch would be fine; per quarter second is enough for the page.
            if embedded >= total or time.monotonic() - last_write > 0.25:
                last_write = time.monotonic()
                self._set(job_id, done=embedded, stage="indexing" if embedded >= total else "embedding")

        renewing = _LeaseRenewal(self, job_id, worker)
        try:
            with renewing:
                self._work(row.action, row.payload, progress)
        except LinliError as exc:
            self._finish(job_id, worker, status="failed", error_zh=exc.message_zh, error_en=exc.message_en)
            return
        except Exception:
            log.exception("knowledge-base job %s (%s) failed", job_id, row.action)
            self._finish(job_id, worker, status="failed",
                         error_zh="索引时出了错，知识库没有改变。请稍后重试，或联系技术人员查看日志。",
                         error_en="Indexing failed; the knowledge base is unchanged. See the server log.")
            return
        touched: Touched = [(t[0], t[1], t[2], t[3]) for t in row.payload.get("touched", [])]
        self._finish(job_id, worker, status="done", done=total, audit=(row.action, row.actor, touched))

    def _work(self, action: str, payload: dict[str, Any], progress: Callable[[int], None]) -> None:
        documents = _DOCUMENTS.validate_python(payload.get("documents") or [])
        doc_ids = [t[0] for t in payload.get("touched", [])]
        if action in ("upload", "edit"):
            self.knowledge.add_documents(documents, progress)
        elif action == "retire":
            self.knowledge.retire(doc_ids)
        elif action == "restore":
            self.knowledge.restore(doc_ids[0], progress)
        else:
            raise ValueError(f"unknown knowledge-base job action {action!r}")

    def _finish(self, job_id: str, worker: str, *, status: str, audit: tuple[str, str, Touched] | None = None,
                **values: Any) -> bool:
        """The job's end and its audit rows together, by the lease's holder only: a job taken over
        after its first process stalled finishes once, and the history never shows half a change."""
        now = utcnow()
        with self.engine.begin() as conn:
            ended = conn.execute(update(kb_jobs).where(
                kb_jobs.c.job_id == job_id, kb_jobs.c.lease_owner == worker,
                kb_jobs.c.status.in_(("queued", "running"))).values(
                status=status, stage="finished", updated_at=now, finished_at=now, lease_until=None,
                **values)).rowcount == 1
            if ended and audit is not None:
                action, actor, touched = audit
                conn.execute(insert(kb_audit), _audit_rows(now, action, actor, touched, job_id))
        if not ended:
            log.warning("knowledge-base job %s was taken over by another process; %s leaves its end to it",
                        job_id, worker)
        return ended

    def renew(self, job_id: str, worker: str) -> bool:
        """Extend this worker's lease of a running job; False when another process has taken it."""
        with self.engine.begin() as conn:
            return conn.execute(update(kb_jobs).where(kb_jobs.c.job_id == job_id, kb_jobs.c.lease_owner == worker)
                                .values(lease_until=utcnow() + timedelta(seconds=self.settings.job_lease_s))
                                ).rowcount == 1

    def _set(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(kb_jobs).where(kb_jobs.c.job_id == job_id).values(updated_at=utcnow(), **values))

    def wait(self, job_id: str, timeout_s: float = 120.0) -> Job:
        """Block until the job has finished, whichever process runs it (the CLI and tests)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job.finished:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"knowledge-base job {job_id} did not finish within {timeout_s:.0f} s")
            time.sleep(0.1)

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
        now = utcnow()
        quiet = now - row.updated_at
        held = row.lease_until is not None and row.lease_until > now
        if status in ("queued", "running") and not held and quiet > timedelta(seconds=self.settings.stale_after_s):
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


class _LeaseRenewal:
    """Renews a running job's lease every third of its length, in a thread, while the job runs
    (embedding a large upload may call no progress for a while)."""

    def __init__(self, admin: KnowledgeAdmin, job_id: str, worker: str) -> None:
        self.admin = admin
        self.job_id = job_id
        self.worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"kb-lease-{job_id[:8]}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.admin.settings.job_lease_s / 3):
            try:
                if not self.admin.renew(self.job_id, self.worker):
                    return
            except Exception:  # a missed renewal is retried; the lease has room for two
                log.exception("renewing the lease of knowledge-base job %s failed", self.job_id)

    def __enter__(self) -> _LeaseRenewal:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
