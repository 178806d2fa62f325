"""The knowledge base in the browser, for the `admin` role (a supervisor or worker gets 403):
the document list with upload and live indexing progress, one document's metadata form, chunks
and benefit tables with retire / restore, and the audit log. Thin: assistant/kb_admin/service.py
does the work.

A form posted by the page's script (Accept: application/json) gets JSON back; the same form
posted without a script gets a redirect, or the page again with the message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from assistant.admin.routes import _context, logged_in, templates
from assistant.console.routes import user_store
from assistant.core.errors import Forbidden, LinliError, NotAuthenticated
from assistant.dependencies import ServicesDep
from assistant.escalation.auth import UserStore
from assistant.escalation.service import Actor
from assistant.kb_admin.service import EDITABLE_FIELDS, FIELD_LABELS_ZH, Job, UploadedFile
from knowledge_base.loaders import CATEGORIES

CATEGORY_LABELS_ZH = {"medical_insurance": "医疗保险", "employment": "就业", "pension": "养老保险",
                      "elderly_care": "养老服务", "disability": "残疾人", "social_assistance": "社会救助",
                      "legal_aid": "法律援助", "community_services": "社区服务", "emergency": "应急",
                      "law": "法律条文"}
JOB_STATES_ZH = {"queued": "排队中", "running": "正在索引", "done": "已完成", "failed": "失败，知识库没有改变",
                 "interrupted": "已中断"}
UPLOAD_DEFAULT_FIELDS = ("region", "category", "effective_from", "effective_to", "version", "source")

kb_pages = APIRouter(prefix="/admin/kb", include_in_schema=False)
Users = Annotated[UserStore, Depends(user_store)]


def _admin(request: Request, users: UserStore) -> Actor | None:
    """The logged-in administrator; None when nobody is logged in; 403 for anyone else."""
    actor = logged_in(request, users)
    if actor is None:
        return None
    if actor.role != "admin":
        raise Forbidden("只有管理员可以管理知识库。", "Only administrators can change the knowledge base.")
    return actor


def _required_admin(request: Request, users: UserStore) -> Actor:
    actor = _admin(request, users)
    if actor is None:
        raise NotAuthenticated("请先登录。", "Please log in.")
    return actor


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _kb_context(actor: Actor, nav: str, **extra: Any) -> dict[str, Any]:
    return _context(actor, nav=nav, category_labels=CATEGORY_LABELS_ZH, categories=sorted(CATEGORIES),
                    field_labels=FIELD_LABELS_ZH, job_states=JOB_STATES_ZH, **extra)


@kb_pages.get("", response_class=HTMLResponse)
def kb_page(request: Request, users: Users, services: ServicesDep,
            q: Annotated[str | None, Query(max_length=100)] = None,
            category: Annotated[str | None, Query(max_length=40)] = None,
            law: Annotated[bool, Query()] = False) -> Response:
    actor = _admin(request, users)
    if actor is None:
        return RedirectResponse("/console/login", status_code=303)
    return _kb_page(request, actor, services, q, category, law)


def _kb_page(request: Request, actor: Actor, services: ServicesDep, q: str | None = None,
             category: str | None = None, law: bool = False, error: str | None = None,
             status_code: int = 200) -> Response:
    kb_admin = services.kb_admin
    category = category if category in CATEGORIES else None
    rows, matched = kb_admin.documents(include_law=law, category=category, query=q)
    return templates.TemplateResponse(request, "kb.html", _kb_context(
        actor, "kb", documents=rows, matched=matched, q=q or "", category=category, law=law,
        jobs=[j.public() for j in kb_admin.recent_jobs(8)], error=error), status_code=status_code)


@kb_pages.post("/upload")
async def upload(request: Request, users: Users, services: ServicesDep) -> Response:
    actor = _required_admin(request, users)
    limits = services.settings.kb_admin
    async with request.form(max_files=limits.max_files + 1, max_fields=50) as form:
        files = [UploadedFile(name=item.filename or "upload", data=await item.read())
                 for item in form.getlist("files") if isinstance(item, UploadFile) and item.filename]
        defaults = {k: str(form.get(k) or "") for k in UPLOAD_DEFAULT_FIELDS}
    try:
        job = await run_in_threadpool(services.kb_admin.upload, files, actor.username, defaults)
    except LinliError as exc:
        if _wants_json(request):
            raise
        return _kb_page(request, actor, services, error=exc.message_zh, status_code=exc.http_status)
    return _started(request, job, "/admin/kb")


def _started(request: Request, job: Job, page: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"job": job.public()}, status_code=202)
    return RedirectResponse(f"{page}?job={job.job_id}", status_code=303)


@kb_pages.get("/jobs/{job_id}")
def job(job_id: str, request: Request, users: Users, services: ServicesDep) -> dict:
    _required_admin(request, users)
    return {"job": services.kb_admin.job(job_id).public()}


@kb_pages.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, users: Users, services: ServicesDep,
               page: Annotated[int, Query(ge=1, le=100000)] = 1) -> Response:
    actor = _admin(request, users)
    if actor is None:
        return RedirectResponse("/console/login", status_code=303)
    per_page = 100
    rows, total = services.kb_admin.audit(limit=per_page, offset=(page - 1) * per_page)
    return templates.TemplateResponse(request, "kb_audit.html", _kb_context(
        actor, "audit", rows=rows, total=total, page=page, pages=max(1, -(-total // per_page))))


@kb_pages.get("/documents/{doc_id}", response_class=HTMLResponse)
def document_page(doc_id: str, request: Request, users: Users, services: ServicesDep) -> Response:
    actor = _admin(request, users)
    if actor is None:
        return RedirectResponse("/console/login", status_code=303)
    return _document_page(request, actor, services, doc_id)


def _document_page(request: Request, actor: Actor, services: ServicesDep, doc_id: str, error: str | None = None,
                   values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    try:
        view = services.kb_admin.document(doc_id[:160])
    except LinliError as exc:
        return templates.TemplateResponse(request, "kb_document.html", _kb_context(
            actor, "kb", view=None, error=exc.message_zh, jobs=[]), status_code=exc.http_status)
    jobs = [j.public() for j in services.kb_admin.recent_jobs(8) if view.meta.doc_id in j.doc_ids]
    return templates.TemplateResponse(request, "kb_document.html", _kb_context(
        actor, "kb", view=view, form=values or view.form_values(), editable=EDITABLE_FIELDS, error=error,
        jobs=jobs[:3]), status_code=status_code)


def _document_url(doc_id: str) -> str:
    return f"/admin/kb/documents/{quote(doc_id, safe='')}"


@kb_pages.post("/documents/{doc_id}/edit")
async def edit(doc_id: str, request: Request, users: Users, services: ServicesDep) -> Response:
    actor = _required_admin(request, users)
    async with request.form(max_files=0, max_fields=20) as form:
        values = {k: str(form.get(k) or "") for k in EDITABLE_FIELDS if k in form}
    try:
        job = await run_in_threadpool(services.kb_admin.edit, doc_id[:160], values, actor.username)
    except LinliError as exc:
        if _wants_json(request):
            raise
        return _document_page(request, actor, services, doc_id, error=exc.message_zh, values=values,
                              status_code=exc.http_status)
    return _started(request, job, _document_url(doc_id))


@kb_pages.post("/documents/{doc_id}/retire")
async def retire(doc_id: str, request: Request, users: Users, services: ServicesDep) -> Response:
    return await _lifecycle(request, users, services, doc_id, services.kb_admin.retire)


@kb_pages.post("/documents/{doc_id}/restore")
async def restore(doc_id: str, request: Request, users: Users, services: ServicesDep) -> Response:
    return await _lifecycle(request, users, services, doc_id, services.kb_admin.restore)


async def _lifecycle(request: Request, users: UserStore, services: ServicesDep, doc_id: str,
                     action: Callable[[str, str], Job]) -> Response:
    """Retire or restore: the job started, or the document page again with the reason it was not."""
    actor = _required_admin(request, users)
    try:
        job = await run_in_threadpool(action, doc_id[:160], actor.username)
    except LinliError as exc:
        if _wants_json(request):
            raise
        return _document_page(request, actor, services, doc_id, error=exc.message_zh, status_code=exc.http_status)
    return _started(request, job, _document_url(doc_id))
