"""Thin HTTP layer over the services: policy questions, conversations, the ticket queue and the worker console."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from assistant.admin.kb_routes import kb_pages
from assistant.admin.routes import ADMIN_STATIC
from assistant.admin.routes import admin as admin_pages
from assistant.analytics.queries import AnalyticsService
from assistant.console.routes import api as ticket_api
from assistant.console.routes import console as console_pages
from assistant.core.domain import SearchFilters
from assistant.core.errors import LinliError
from assistant.core.privacy import install_log_masking
from assistant.core.settings import AnalyticsSettings, get_settings
from assistant.core.vault import refuse_development_key
from assistant.dependencies import ServicesDep
from assistant.escalation.service import SqlEscalationService
from assistant.pages.routes import PAGES_STATIC, pages
from assistant.residents.routes import residents_api
from assistant.security.http import install_security
from assistant.services import Services
from assistant.wechat.routes import wechat
from connectors.services.procedures import load_procedures
from knowledge_base.text import detect_language

CONSOLE_STATIC = str(Path(__file__).resolve().parent / "console" / "static")
log = logging.getLogger("linli.escalation")


class AskRequest(BaseModel):
    question: str = Field(
        description="居民的问题（中文或英文） / the resident's question",
        examples=["我奶奶今年92了，每个月能领多少高龄补贴？"],
    )
    region: str | None = Field(default=None, description="地区代码，如 karamay", examples=["karamay"])
    category: str | None = Field(default=None, description="类别，如 elderly_care", examples=[None])
    as_of: date | None = Field(default=None, description="只使用在该日期有效的文件")
    include_expired: bool = False

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"question": "我奶奶今年92了，每个月能领多少高龄补贴？"},
                {"question": "失业了去哪登记，要带什么？"},
                {"question": "How do I apply for the minimum living allowance?"},
            ]
        }
    }


class CitationOut(BaseModel):
    doc_id: str
    title: str
    chunk_id: str
    text: str


class AskResponse(BaseModel):
    answer: str = Field(examples=["按克拉玛依市高龄津贴月标准，92岁属于90至99周岁这一档，每月500元[1]。"])
    refused: bool
    confidence: float
    citations: list[CitationOut]


class Problem(BaseModel):
    error: str
    message: str


async def _sweep_sla(escalation: SqlEscalationService, interval_s: float) -> None:
    """Flag tickets nobody claimed in time and escalate them to a supervisor, every few seconds."""
    while True:
        try:
            await asyncio.to_thread(escalation.sweep_breaches)
        except Exception:  # a failed sweep is logged and retried, never fatal
            log.exception("SLA sweep failed")
        await asyncio.sleep(interval_s)


async def _count_finished_days(analytics: AnalyticsService, settings: AnalyticsSettings) -> None:
    """Count the finished days' replies for the analytics page ahead of its first view (seconds on
    a million turns, in a thread; several processes doing it at once leave it to the first)."""
    while settings.precount_days:
        try:
            await asyncio.to_thread(analytics.count_finished_days, settings.precount_days)
        except Exception:  # logged and retried at the next interval; the page counts what it needs
            log.exception("counting finished days for analytics failed")
        await asyncio.sleep(settings.precount_interval_s)


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The settings a test puts in `app.dependency_overrides[get_settings]` are the ones served.
        settings = app.dependency_overrides.get(get_settings, get_settings)()
        install_log_masking()
        # Never encrypt residents' data with the key printed in the source, outside development.
        refuse_development_key(settings.privacy)
        services = Services(settings)
        app.state.services = services
        # Load the models and the index once at start-up, not on the first resident's question.
        if services.knowledge_base.is_built():
            services.knowledge_base.store.load()
        sweeper = asyncio.create_task(_sweep_sla(services.escalation, settings.escalation.sweep_interval_s))
        counter = asyncio.create_task(_count_finished_days(services.analytics, settings.analytics))
        # WeChat messages are acknowledged at once and answered by this thread (and `linli worker`).
        wechat_thread = services.wechat.start_thread(f"server-{os.getpid()}") \
            if settings.wechat.enabled and settings.wechat.process_in_server else None
        yield
        sweeper.cancel()
        counter.cancel()
        if wechat_thread is not None:
            wechat_thread.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Linli 邻里 API",
        description="社区服务中心智能助手：政策问答（带引用）、转人工。"
                    "Offline assistant for community service centres.",
        version="0.1.0",
    )

    @app.exception_handler(LinliError)
    async def linli_error(request: Request, exc: LinliError) -> JSONResponse:
        language = request.headers.get("accept-language", "zh")[:2]
        return JSONResponse(status_code=exc.http_status, content=exc.problem("en" if language == "en" else "zh"))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in exc.errors()]
        return JSONResponse(
            status_code=422,
            content={
                "error": "invalid_request",
                "message": f"请求格式不正确：{', '.join(fields)}",
                "fields": fields,
            },
        )

    @app.get("/healthz", tags=["ops"])
    def healthz(services: ServicesDep) -> dict:
        kb = services.knowledge_base
        return {"status": "ok", "index_built": kb.is_built(), "generation": kb.store.generation()}

    @app.post(
        "/api/v1/ask",
        response_model=AskResponse,
        responses={422: {"model": Problem, "description": "问题为空、过长或无法识别"}, 503: {"model": Problem}},
        tags=["policy"],
        summary="政策问答 / Ask a policy question",
    )
    def ask(body: AskRequest, services: ServicesDep) -> dict:
        filters = SearchFilters(region=body.region, category=body.category, as_of=body.as_of,
                                include_expired=body.include_expired)
        try:
            answer = services.knowledge_base.ask(body.question, filters=filters)
        except LinliError as exc:
            language = detect_language(body.question) if isinstance(body.question, str) else "zh"
            return JSONResponse(status_code=exc.http_status, content=exc.problem(language))  # type: ignore[return-value]
        return answer.public()

    @app.get("/api/v1/procedures", tags=["procedures"], summary="可办理的事项 / Procedures Linli can file")
    def list_procedures() -> dict:
        return {"procedures": [p.describe() for p in load_procedures().values()]}

    app.include_router(residents_api)
    app.include_router(ticket_api)
    app.include_router(console_pages)
    app.include_router(admin_pages)
    app.include_router(kb_pages)
    app.include_router(pages)
    app.include_router(wechat)
    install_security(app)
    app.mount("/console-static", StaticFiles(directory=CONSOLE_STATIC), name="console-static")
    app.mount("/pages-static", StaticFiles(directory=PAGES_STATIC), name="pages-static")
    app.mount("/admin-static", StaticFiles(directory=ADMIN_STATIC), name="admin-static")
    return app
