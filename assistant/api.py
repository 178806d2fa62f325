"""Thin HTTP layer over the services: policy questions, conversations, the ticket queue and the worker console."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
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
from assistant.channels import enabled_channels, unique_routers
from assistant.console.routes import api as ticket_api
from assistant.console.routes import console as console_pages
from assistant.core.domain import SearchFilters
from assistant.core.errors import LinliError
from assistant.core.privacy import install_log_masking
from assistant.core.settings import get_settings
from assistant.core.vault import refuse_development_key
from assistant.dependencies import ServicesDep
from assistant.ops import install_operations
from assistant.ops.health import published_generation
from assistant.pages.routes import PAGES_STATIC
from assistant.security.http import install_security
from assistant.services import Services
from knowledge_base.text import detect_language

CONSOLE_STATIC = str(Path(__file__).resolve().parent / "console" / "static")
log = logging.getLogger("linli.api")


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


async def _background(services: Services, name: str, interval_s: float) -> None:
    """The server's own background rounds (assistant/background.py) when it runs alone
    (`api.background`): knowledge-base jobs, the SLA sweep and the analytics pre-count, each
    shared with any `linli worker` through leases, so nothing is done twice."""
    from assistant.background import BackgroundWork  # noqa: PLC0415 - the app imports features lazily here

    work = BackgroundWork(services, name, outbox=False)
    while True:
        await asyncio.to_thread(work.round)
        await asyncio.sleep(interval_s)


async def _follow_index(services: Services, interval_s: float) -> None:
    """Load each new index generation (an upload indexed by any process) as soon as it is
    published, off the residents' requests: they answer from the loaded one meanwhile."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if services.knowledge_base.is_built():
                await asyncio.to_thread(services.knowledge_base.store.load)
        except Exception:  # logged and tried again next interval; the loaded generation still answers
            log.exception("loading the new index generation failed")


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
        # Load the models and the index once at start-up, not on the first resident's question. The
        # intent classifier too (scikit-learn's import and a fit, seconds of holding the interpreter,
        # once per process): built on the first message, it stalled a restarted replica's every
        # request, WeChat's callbacks included, for 10 s and more on a busy machine (chaos test).
        if services.knowledge_base.is_built():
            services.knowledge_base.store.load()
            services.classifier.predict("你好")
        follower = asyncio.create_task(_follow_index(services, settings.api.index_poll_s))
        me = f"server-{socket.gethostname()}-{os.getpid()}"
        # A cluster's replicas (api.background false) leave all of this to `linli worker`.
        background = asyncio.create_task(_background(services, me, settings.escalation.sweep_interval_s)) \
            if settings.api.background else None
        # A channel's own work (WeChat: messages acknowledged at once are answered by this thread,
        # and by `linli worker`).
        channel_threads = [plugin.background(services).start_thread(me) for plugin in enabled_channels(settings)
                           if plugin.background is not None and settings.api.background and plugin.in_server(settings)]
        yield
        follower.cancel()
        if background is not None:
            background.cancel()
        for thread in channel_threads:
            thread.stop()

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
    def healthz(request: Request) -> dict:
        # Alive: no database, no Redis (readiness is /readyz, with the generation in memory).
        services = getattr(request.app.state, "services", None)
        generation = published_generation(services) if services is not None else 0
        return {"status": "ok", "index_built": generation > 0, "generation": generation}

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
    def list_procedures(request: Request) -> dict:
        procedures = request.app.state.services.procedures.all()
        return {"procedures": [p.describe() for p in procedures.values()]}

    for router in unique_routers():  # the residents' channels (assistant/channels.py)
        app.include_router(router)
    app.include_router(ticket_api)
    app.include_router(console_pages)
    app.include_router(admin_pages)
    app.include_router(kb_pages)
    install_security(app)
    install_operations(app)  # after install_security: its request id is the outermost middleware
    app.mount("/console-static", StaticFiles(directory=CONSOLE_STATIC), name="console-static")
    app.mount("/pages-static", StaticFiles(directory=PAGES_STATIC), name="pages-static")
    app.mount("/admin-static", StaticFiles(directory=ADMIN_STATIC), name="admin-static")
    return app
