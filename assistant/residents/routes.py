"""The residents' API: a page session is minted here, and every call that speaks for a resident
or reads their conversation needs a credential (assistant/residents/sessions.py) — a session id
alone grants nothing."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Header, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from assistant.core.errors import Forbidden, NotAuthenticated
from assistant.dependencies import ServicesDep
from assistant.residents.inbound import InboundMessage
from assistant.residents.sessions import Resident
from assistant.services import Services
from assistant.speech.service import reply_to_voice
from connectors.services.applications import InvalidApplication, UnknownApplication

residents_api = APIRouter(prefix="/api/v1")

SessionToken = Annotated[str | None, Header(alias="X-Session-Token", max_length=200,
                                            description="页面会话凭证（POST /api/v1/sessions 颁发）")]
ApiKey = Annotated[str | None, Header(alias="X-API-Key", max_length=200, description="对接系统的接口密钥")]
NO_CREDENTIAL: dict[int | str, dict[str, Any]] = {401: {"description": "没有凭证或凭证已过期"},
                                                  403: {"description": "这个对话属于别人"}}


class NewSession(BaseModel):
    channel: str = Field(default="chat", max_length=16, examples=["kiosk"], description="kiosk 或 chat")
    centre: str | None = Field(default=None, max_length=64, description="社区服务中心（未知的中心按本部署的默认中心）")


class MessageRequest(BaseModel):
    session_id: str | None = Field(default=None, min_length=1, max_length=128, examples=["web-3f2a9c"],
                                   description="对接系统自己的会话编号；用页面凭证时可以不填")
    channel: str = Field(default="web", max_length=32, examples=["web"])
    user_id: str = Field(default="anonymous", min_length=1, max_length=128, examples=["resident-42"])
    text: str = Field(max_length=20000, description="居民发来的消息", examples=["我家楼上天天半夜吵，怎么办"])
    message_id: str | None = Field(default=None, min_length=1, max_length=128,
                                   description="渠道的消息编号：同一编号只处理一次，重发得到同样的回复")
    centre: str | None = Field(default=None, max_length=64, description="居民所在的社区服务中心（默认本部署的中心）")


class MessageResponse(BaseModel):
    session_id: str
    reply_type: str = Field(examples=["answer"], description="answer|clarify|form|handoff|emergency|smalltalk|refusal")
    text: str
    citations: list[dict]
    quick_replies: list[str]
    ticket_id: str | None = None
    turn_id: int | None = Field(default=None, description="这条回答的编号：居民评价（👍/👎）时用")


class FeedbackRequest(BaseModel):
    # Loose here, checked by FeedbackService: a wrong value gets a plain Chinese sentence, not a field list.
    rating: str = Field(max_length=16, examples=["down"], description="up（有帮助）或 down（没帮助）")
    reason: str | None = Field(default=None, max_length=64, examples=["not_my_question"],
                               description="没帮助的原因（GET /api/v1/feedback/wording 列出可选的原因）")
    comment: str | None = Field(default=None, max_length=20000,
                                description="补充说明（有字数上限，身份证号和手机号会被遮住）")
    user_id: str = Field(default="anonymous", min_length=1, max_length=128)


class ApplicationRequest(BaseModel):
    procedure: str = Field(max_length=64, examples=["elderly_allowance"])
    data: dict[str, str | int | float | bool | None] = Field(
        examples=[{"applicant_name": "王秀英", "applicant_id": "650203193401010022", "mobile": "13812345678"}])
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    channel: str = Field(default="web", max_length=32)
    user_id: str = Field(default="anonymous", min_length=1, max_length=128)
    idempotency_key: str | None = Field(default=None, max_length=200)
    # The resident's language: the application's notices (submitted, new status) are sent in it.
    language: Literal["zh", "en"] = "zh"


def resident_for(services: Services, token: str | None, api_key: str | None, *, user_id: str = "anonymous",
                 channel: str = "web", centre: str | None = None) -> Resident:
    """Verify the request and name its resident: a page's session token (the pages channel) or
    an integration's key (the integration channel, assistant/residents/channel.py)."""
    if token:
        return services.residents.for_token(token)
    if api_key:
        return services.residents.for_api_key(api_key, user_id, channel, centre)
    raise NotAuthenticated("请先打开对话页面再发消息。", "A session token (X-Session-Token) or X-API-Key is required.")


def filing_client(resident: Resident, request: Request) -> str:
    """Whose daily cap a filing counts against: the integration client's, or for the pages the
    address's (each page session is a new resident to the filing limits, and one address can
    start many)."""
    if resident.owner.startswith("api:"):
        return resident.owner.split(":")[1]
    return f"address:{request.client.host if request.client else 'unknown'}"


@residents_api.post("/sessions", status_code=201, tags=["dialogue"],
                    summary="开始对话（页面用） / Start a resident's page session")
def start_session(body: NewSession, services: ServicesDep) -> dict:
    return services.residents.mint(body.channel, body.centre).public()


@residents_api.post("/sessions/end", status_code=204, tags=["dialogue"], responses=NO_CREDENTIAL,
                    summary="结束对话（页面的“重新开始”） / End this page session")
def end_session(services: ServicesDep, x_session_token: SessionToken = None) -> None:
    services.residents.for_token(x_session_token)
    assert x_session_token is not None  # for_token refuses a missing token
    services.residents.end(x_session_token)


@residents_api.post("/messages", response_model=MessageResponse, response_model_exclude_none=True,
                    tags=["dialogue"], responses=NO_CREDENTIAL, summary="对话消息 / Send a resident's message")
def messages(body: MessageRequest, services: ServicesDep, x_session_token: SessionToken = None,
             x_api_key: ApiKey = None) -> dict:
    resident = resident_for(services, x_session_token, x_api_key, user_id=body.user_id, channel=body.channel,
                            centre=body.centre)
    session_id, centre = services.gate.admit(resident, body.session_id)
    reply = services.gate.hand_over(InboundMessage(resident, session_id, body.text, body.message_id, centre))
    return reply.public()


@residents_api.post("/voice", tags=["dialogue"], responses=NO_CREDENTIAL,
                    summary="语音消息 / Send a voice message (multipart audio)")
def voice(services: ServicesDep, audio: Annotated[UploadFile, File()],
          session_id: Annotated[str | None, Form(min_length=1, max_length=128)] = None,
          channel: Annotated[str, Form(max_length=32)] = "web",
          user_id: Annotated[str, Form(min_length=1, max_length=128)] = "anonymous",
          x_session_token: SessionToken = None, x_api_key: ApiKey = None) -> dict:
    resident = resident_for(services, x_session_token, x_api_key, user_id=user_id, channel=channel)
    session_id, _centre = services.gate.admit(resident, session_id)
    data = audio.file.read(services.settings.speech.max_bytes + 1)
    heard = services.speech.hear(data, content_type=audio.content_type)
    reply = reply_to_voice(services.gate.keyed(None), heard, session_id, resident.channel, resident.user_id,
                           services.knowledge_base.benefit_amounts())
    return {**reply.public(), "transcript": heard.text}


@residents_api.get("/sessions/{session_id}/messages", tags=["dialogue"], responses=NO_CREDENTIAL,
                   summary="工作人员发给居民的消息 / Messages a worker sent to this session")
def session_messages(session_id: str, services: ServicesDep, after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                     user_id: Annotated[str, Query(min_length=1, max_length=128)] = "anonymous",
                     x_session_token: SessionToken = None, x_api_key: ApiKey = None) -> dict:
    resident = resident_for(services, x_session_token, x_api_key, user_id=user_id)
    services.residents.check_owner(session_id, resident)
    return {"messages": services.channels.outbox.pending(session_id, after)}


@residents_api.get("/feedback/wording", tags=["dialogue"],
                   summary="评价按钮的文字和原因 / The feedback buttons' words and reasons")
def feedback_wording(services: ServicesDep, lang: Annotated[str, Query(max_length=8)] = "zh") -> dict:
    return services.feedback.wording.for_page(lang)


@residents_api.post("/turns/{turn_id}/feedback", tags=["dialogue"], responses={
    **NO_CREDENTIAL, 404: {"description": "没有这条回答"}, 422: {"description": "评价、原因或说明不符合要求"}},
    summary="评价一条回答 / Rate one of Linli's answers (again: replaces)")
def give_feedback(turn_id: Annotated[int, Path(ge=1, le=2**62)], body: FeedbackRequest, services: ServicesDep,
                  x_session_token: SessionToken = None, x_api_key: ApiKey = None) -> dict:
    resident = resident_for(services, x_session_token, x_api_key, user_id=body.user_id)
    # Only the conversation's own credential may rate its answers; to anyone else another
    # conversation's turn is as unknown as a turn that does not exist (404 either way).
    try:
        services.residents.check_owner(services.feedback.session_of(turn_id), resident)
    except Forbidden as exc:
        raise services.feedback.unknown_turn() from exc
    return services.feedback.rate(turn_id, body.rating, body.reason, body.comment).public()


@residents_api.post("/applications", status_code=201, tags=["procedures"], responses=NO_CREDENTIAL,
                    summary="提交申请 / File an application (validated, stored, then submitted exactly once)")
def file_application(body: ApplicationRequest, request: Request, services: ServicesDep,
                     x_session_token: SessionToken = None, x_api_key: ApiKey = None) -> dict:
    resident = resident_for(services, x_session_token, x_api_key, user_id=body.user_id, channel=body.channel)
    session_id, centre = services.gate.conversation(resident, body.session_id)
    service = services.applications
    try:
        application = service.confirm(body.procedure, dict(body.data), session_id=session_id,
                                      channel=resident.channel, user_id=resident.user_id,
                                      idempotency_key=body.idempotency_key, owner=resident.owner, centre=centre,
                                      client=filing_client(resident, request), language=body.language)
    except InvalidApplication as exc:
        return JSONResponse(status_code=422, content={"errors": exc.errors})  # type: ignore[return-value]
    if application.status == "queued":
        application = service.deliver_now(application.application_id)
    return {"reference": application.application_id, "status": application.status}


@residents_api.get("/applications/{reference}", tags=["procedures"], responses=NO_CREDENTIAL,
                   summary="申请进度 / Application status")
def application_status(reference: Annotated[str, Path(max_length=64)], services: ServicesDep,
                       user_id: Annotated[str, Query(min_length=1, max_length=128)] = "anonymous",
                       x_session_token: SessionToken = None, x_api_key: ApiKey = None) -> dict:
    resident = resident_for(services, x_session_token, x_api_key, user_id=user_id)
    service = services.applications
    application = service.get(reference)
    try:
        services.residents.check_owner(application.session_id, resident)
    except Forbidden as exc:
        # Someone else's reference looks exactly like an unknown one.
        raise UnknownApplication(f"找不到编号为 {reference} 的申请。", f"No application {reference}.",
                                 reference=reference) from exc
    service.refresh()
    return service.status(reference)
