"""HTTP-level protections installed on the app, outermost first:

1. `SecurityHeaders`: nosniff, X-Frame-Options and Referrer-Policy on every response, a strict
   Content-Security-Policy on the pages (console, kiosk, chat, admin), `Secure` on every cookie
   when `settings.api.https` is on.
2. `CsrfGuard`: a state-changing request authenticated by the console cookie (no Bearer token),
   and a post of the login form (login CSRF), must come from the page's own origin (Origin, else
   Referer); else 403.
3. `ClientRateLimit`: anonymous endpoints that create things are limited per client address (429
   with Retry-After).
4. `BodyGuard`: a body over the endpoint's limit is refused with 413 before it is read (by its
   Content-Length, or while a chunked body streams in); a JSON body is checked once here for what
   no endpoint can take (lone surrogates, non-UTF-8 bytes, numbers beyond 64 bits, NaN, deep
   nesting): 422 instead of a 500 at save time.

Settings are read per request from `scope["app"].state.services.settings` (Settings' defaults
before the lifespan has built it)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.channels import body_limit_of, page_prefixes
from assistant.core.errors import CsrfRefused, InvalidRequest, LinliError, PayloadTooLarge, TooManyRequests
from assistant.core.settings import Settings

SESSION_COOKIE = "linli_session"  # the console's cookie (assistant/console/routes.py COOKIE)
# The staff's pages; the residents' pages (kiosk, chat) are their channel's (assistant/channels.py).
STAFF_PAGE_PREFIXES = ("/console", "/admin")
PAGE_PREFIXES = (*STAFF_PAGE_PREFIXES, *page_prefixes())
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The login form sets the cookie, so no cookie vouches for it yet: it takes posts from Linli's own
# page only, or another site could log a visitor into an account of its choosing (login CSRF).
LOGIN_FORMS = frozenset({"/console/login"})
# Anonymous endpoints that create things, limited per client address and minute.
CREATING_ENDPOINTS = frozenset({("POST", "/api/v1/ask"), ("POST", "/api/v1/sessions")})
# A multipart voice upload carries its form fields and boundaries beside the audio.
MULTIPART_OVERHEAD = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**63 - 1


def _settings(scope: Scope) -> Settings:
    """The app's settings; before its lifespan has built the services (a request racing start-up,
    a test client outside `with`), Settings' own defaults: the environment is read at start-up only."""
    services = getattr(scope["app"].state, "services", None)
    return services.settings if services is not None else Settings.model_construct()


def _language(scope: Scope) -> str:
    return "en" if Headers(scope=scope).get("accept-language", "zh")[:2] == "en" else "zh"


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: LinliError) -> None:
    headers = {}
    retry_after = exc.details.get("retry_after")
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    response = JSONResponse(exc.problem(_language(scope)), status_code=exc.http_status, headers=headers)
    await response(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = scope["path"].startswith(PAGE_PREFIXES)
        secure_cookies = _settings(scope).api.https

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if page:
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                if secure_cookies:
                    _secure_cookies(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secure_cookies(headers: MutableHeaders) -> None:
    cookies = headers.getlist("set-cookie")
    if not any("secure" not in (part.strip().lower() for part in c.split(";")) for c in cookies):
        return
    del headers["set-cookie"]
    for cookie in cookies:
        parts = [part.strip().lower() for part in cookie.split(";")]
        headers.append("set-cookie", cookie if "secure" in parts else f"{cookie}; Secure")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header; None for none or another scheme."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def _same_origin(source: str, host: str) -> bool:
    try:
        netloc = urlsplit(source).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.lower()


class CsrfGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            headers = Headers(scope=scope)
            # Only a Bearer token authenticates without the cookie; any other Authorization header
            # (Basic …) leaves the cookie in charge, so the origin check applies.
            cookie_authenticated = SESSION_COOKIE in Request(scope).cookies and \
                bearer_token(headers.get("authorization")) is None
            if cookie_authenticated or scope["path"].rstrip("/") in LOGIN_FORMS:
                source = headers.get("origin") or headers.get("referer")
                if not source or not _same_origin(source, headers.get("host", "")):
                    await _refuse(scope, receive, send, CsrfRefused(
                        "请求来自其他网站，已拒绝。请在本系统的页面里操作。",
                        "Refused a request from another site; please use Linli's own pages."))
                    return
        await self.app(scope, receive, send)


class ClientRateLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"].rstrip("/")) in CREATING_ENDPOINTS:
            services = getattr(scope["app"].state, "services", None)
            if services is not None:
                limits = services.settings.limits
                # Each new conversation may ask for a person a few times: minting them is what a flood
                # of hand-offs from one address would need, so it has its own, lower limit.
                limit = (limits.sessions_per_client_per_minute if scope["path"].rstrip("/") == "/api/v1/sessions"
                         else limits.requests_per_client_per_minute)
                client = scope["client"][0] if scope.get("client") else "unknown"
                key = f"client:{scope['path'].rstrip('/')}:{client}"
                limiter = services.limits
                if not await to_thread.run_sync(lambda: limiter.hit(key, limit=limit, window_s=60)):
                    retry = await to_thread.run_sync(lambda: limiter.retry_after(key, limit=limit, window_s=60))
                    await _refuse(scope, receive, send, TooManyRequests(
                        "请求太频繁，请稍后再试。", "Too many requests; please try again shortly.", retry_after=retry))
                    return
        await self.app(scope, receive, send)


def body_limit(settings: Settings, path: str) -> int:
    if path.rstrip("/") == "/api/v1/voice":
        return settings.speech.max_bytes + MULTIPART_OVERHEAD
    channel_limit = body_limit_of(settings, path)  # a channel's own (WeChat's callbacks)
    if channel_limit is not None:
        return channel_limit
    if path.rstrip("/") == "/admin/kb/upload":
        return settings.kb_admin.max_upload_bytes + MULTIPART_OVERHEAD
    return settings.api.max_body_bytes


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"请求内容太大（上限 {limit // 1024} KB）。",
                           f"The request body is too large (limit {limit // 1024} KB).", limit_bytes=limit)


def _is_json(headers: Headers) -> bool:
    content_type = headers.get("content-type")
    if not content_type:
        return True  # FastAPI reads a body without a content type as JSON
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _check_value(value: Any, depth: int = 0) -> None:
    """Raises InvalidRequest for what no endpoint can store."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest("请求内容嵌套太深。", "The request body is nested too deeply.")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest("请求内容含有无效的字符（单独的代理码位）。",
                                 "The request contains invalid characters (lone surrogates).") from None
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_JSON_INT:
            raise InvalidRequest("请求里的数字太大。", "A number in the request is too large.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, depth + 1)
            _check_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)


def check_json_body(body: bytes) -> None:
    """Checks a JSON body the app is about to read. Malformed JSON is left to the app (its 422)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("请求内容不是有效的 UTF-8 文本。", "The request body is not valid UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidRequest("请求内容嵌套太深。", "The request body is nested too deeply.") from None
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            return
        raise InvalidRequest("请求里有无法处理的数字（过大或不是有效数字）。",
                             "A number in the request is too large or not a valid number.") from None
    _check_value(value)


class BodyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = body_limit(_settings(scope), scope["path"])
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, _too_large(limit))
            return
        if declared is None and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body (GET, HEAD, the event stream)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(scope, receive, send, _too_large(limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and scope["method"] in UNSAFE_METHODS and _is_json(headers):
            try:
                check_json_body(body)
            except InvalidRequest as exc:
                await _refuse(scope, receive, send, exc)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _handler(exc_type: type[Exception]) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        error = exc if isinstance(exc, LinliError) else InvalidRequest(
            "请求里的数值超出了可处理的范围。", "A value in the request is out of range.")
        headers: MutableMapping[str, str] = {}
        if error.details.get("retry_after") is not None:
            headers["Retry-After"] = str(error.details["retry_after"])
        language = "en" if request.headers.get("accept-language", "zh")[:2] == "en" else "zh"
        return JSONResponse(error.problem(language), status_code=error.http_status, headers=dict(headers))

    handle.__name__ = f"handle_{exc_type.__name__}"
    return handle


def install_security(app: FastAPI) -> None:
    """Adds the middleware (the last added runs first) and the exception handlers that need headers."""
    app.add_middleware(BodyGuard)
    app.add_middleware(ClientRateLimit)
    app.add_middleware(CsrfGuard)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(TooManyRequests, _handler(TooManyRequests))
    # A number out of the database's range (e.g. `?after=` beyond 64 bits) is the client's error.
    app.add_exception_handler(OverflowError, _handler(OverflowError))
