"""`/wechat/callback`: WeChat's server verification (GET) and its signed messages (POST). Thin:
the checks, the dedup and the passive replies are `WechatService`'s (assistant/wechat/service.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from assistant.dependencies import ServicesDep

wechat = APIRouter(include_in_schema=False)


@wechat.get("/wechat/callback")
def verify(services: ServicesDep, signature: str = "", timestamp: str = "", nonce: str = "",
           echostr: str = "") -> PlainTextResponse:
    return PlainTextResponse(services.wechat.verify(signature, timestamp, nonce, echostr))


@wechat.post("/wechat/callback")
async def callback(request: Request, services: ServicesDep, signature: str = "", timestamp: str = "",
                   nonce: str = "", encrypt_type: str | None = None, msg_signature: str | None = None) -> Response:
    service = services.wechat
    # The body's size is checked once, where every request's is: the body-limit middleware
    # (assistant/security/http.py) caps /wechat at settings.wechat.max_body_bytes while it streams in.
    body = await request.body()
    # The database insert blocks: off the event loop, like the sync routes.
    ack = await run_in_threadpool(service.receive, body, signature=signature, timestamp=timestamp,
                                  nonce=nonce, encrypt_type=encrypt_type, msg_signature=msg_signature)
    return Response(ack.body, media_type=ack.media_type)
