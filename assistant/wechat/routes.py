"""`/wechat/callback`: WeChat's server verification (GET) and its signed messages (POST). Thin:
the checks, the dedup and the passive replies are `WechatService`'s (assistant/wechat/service.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from assistant.dependencies import ServicesDep
from assistant.wechat.service import WechatTooLarge

wechat = APIRouter(include_in_schema=False)


@wechat.get("/wechat/callback")
def verify(services: ServicesDep, signature: str = "", timestamp: str = "", nonce: str = "",
           echostr: str = "") -> PlainTextResponse:
    return PlainTextResponse(services.wechat.verify(signature, timestamp, nonce, echostr))


@wechat.post("/wechat/callback")
async def callback(request: Request, services: ServicesDep, signature: str = "", timestamp: str = "",
                   nonce: str = "", encrypt_type: str | None = None, msg_signature: str | None = None) -> Response:
    service = services.wechat
    limit = service.settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WechatTooLarge("消息太大。", "The message is too large.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WechatTooLarge("消息太大。", "The message is too large.")
    # The database insert blocks: off the event loop, like the sync routes.
    ack = await run_in_threadpool(service.receive, bytes(body), signature=signature, timestamp=timestamp,
                                  nonce=nonce, encrypt_type=encrypt_type, msg_signature=msg_signature)
    return Response(ack.body, media_type=ack.media_type)
