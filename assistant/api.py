"""Thin HTTP layer over the services: policy questions, conversations, the ticket queue and the worker console."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from assistant.console.routes import api as ticket_api
from assistant.console.routes import console as console_pages
from assistant.core.domain import SearchFilters
from assistant.core.errors import LinliError
from assistant.core.privacy import install_log_masking
from assistant.core.settings import get_settings
from assistant.dependencies import ServicesDep
from assistant.escalation.service import SqlEscalationService
from assistant.pages.routes import pages
from assistant.security.http import install_security
from assistant.services import Services
from assistant.speech.service import reply_to_voice
from assistant.wechat.routes import wechat
from connectors.services.applications import InvalidApplication
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


class MessageRequest(BaseModel):
    session_id: str = Field(min_length=1, max_length=128, examples=["web-3f2a9c"])
    channel: str = Field(default="web", max_length=32, examples=["web"])
    user_id: str = Field(default="anonymous", max_length=128, examples=["resident-42"])
    text: str = Field(description="居民发来的消息", examples=["我家楼上天天半夜吵，怎么办"])
    message_id: str | None = Field(default=None, max_length=128,
                                   description="渠道的消息编号：重发的同一条消息只建一张工单")
    centre: str | None = Field(default=None, max_length=64, description="居民所在的社区服务中心（默认本部署的中心）")


class MessageResponse(BaseModel):
    session_id: str
    reply_type: str = Field(examples=["answer"], description="answer|clarify|form|handoff|emergency|smalltalk|refusal")
    text: str
    citations: list[dict]
    quick_replies: list[str]
    ticket_id: str | None = None


class ApplicationRequest(BaseModel):
    procedure: str = Field(examples=["elderly_allowance"])
    data: dict = Field(examples=[{"applicant_name": "王秀英", "applicant_id": "650203193401010022",
                                  "mobile": "13812345678"}])
    session_id: str = Field(default="api", max_length=128)
    channel: str = Field(default="web", max_length=32)
    user_id: str = Field(default="anonymous", max_length=128)
    idempotency_key: str | None = Field(default=None, max_length=200)


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


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The settings a test puts in `app.dependency_overrides[get_settings]` are the ones served.
        settings = app.dependency_overrides.get(get_settings, get_settings)()
        install_log_masking()
        services = Services(settings)
        app.state.services = services
        # Load the models and the index once at start-up, not on the first resident's question.
        if services.knowledge_base.is_built():
            services.knowledge_base.store.load()
        sweeper = asyncio.create_task(_sweep_sla(services.escalation, settings.escalation.sweep_interval_s))
        yield
        sweeper.cancel()

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

    @app.post(
        "/api/v1/messages",
        response_model=MessageResponse,
        response_model_exclude_none=True,
        tags=["dialogue"],
        summary="对话消息 / Send a resident's message",
    )
    def messages(body: MessageRequest, services: ServicesDep) -> dict:
        reply = services.dialogue.handle(body.session_id, body.text, channel=body.channel, user_id=body.user_id,
                                         message_id=body.message_id, centre=body.centre)
        return reply.public()

    @app.post("/api/v1/voice", tags=["dialogue"], summary="语音消息 / Send a voice message (multipart audio)")
    def voice(services: ServicesDep, audio: Annotated[UploadFile, File()],
              session_id: Annotated[str, Form(min_length=1, max_length=128)],
              channel: Annotated[str, Form(max_length=32)] = "web",
              user_id: Annotated[str, Form(max_length=128)] = "anonymous") -> dict:
        data = audio.file.read(services.settings.speech.max_bytes + 1)
        heard = services.speech.hear(data, content_type=audio.content_type)
        reply = reply_to_voice(services.dialogue, heard, session_id, channel, user_id,
                               services.knowledge_base.benefit_amounts())
        return {**reply.public(), "transcript": heard.text}

    @app.get("/api/v1/procedures", tags=["procedures"], summary="可办理的事项 / Procedures Linli can file")
    def list_procedures() -> dict:
        return {"procedures": [p.describe() for p in load_procedures().values()]}

    @app.post("/api/v1/applications", status_code=201, tags=["procedures"],
              summary="提交申请 / File an application (validated, stored, then submitted exactly once)")
    def file_application(body: ApplicationRequest, services: ServicesDep) -> dict:
        service = services.applications
        try:
            application = service.confirm(body.procedure, body.data, session_id=body.session_id, channel=body.channel,
                                          user_id=body.user_id, idempotency_key=body.idempotency_key)
        except InvalidApplication as exc:
            return JSONResponse(status_code=422, content={"errors": exc.errors})  # type: ignore[return-value]
        if application.status == "queued":
            application = service.deliver_now(application.application_id)
        return {"reference": application.application_id, "status": application.status}

    @app.get("/api/v1/applications/{reference}", tags=["procedures"], summary="申请进度 / Application status")
    def application_status(reference: str, services: ServicesDep) -> dict:
        service = services.applications
        service.refresh()
        return service.status(reference)

    app.include_router(ticket_api)
    app.include_router(console_pages)
    app.include_router(pages)
    app.include_router(wechat)
    install_security(app)
    app.mount("/console-static", StaticFiles(directory=CONSOLE_STATIC), name="console-static")
    return app
