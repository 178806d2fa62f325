"""Logs a cluster can read: one JSON object per line (`observability.log_format = "json"`), each
with the id of the request it belongs to.

`RequestIdMiddleware` takes the caller's `X-Request-ID` when it is a safe token (HAProxy's
`unique-id`, a client's own id: `[A-Za-z0-9-]{1,64}`) or makes one, keeps it in `request_id_var`
for the request (threads that serve it inherit it), and sends it back in the response's header.
`RequestIdFilter` puts it on every record as `request_id`, uvicorn's access lines included. PII
masking (assistant/core/privacy.py) works on the message and arguments before any formatter, so
JSON lines are masked as text lines are."""

from __future__ import annotations

import logging
import logging.config
import re
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.core.settings import ObservabilitySettings

REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
request_id_var: ContextVar[str | None] = ContextVar("linli_request_id", default=None)
# uvicorn's colourised copy of a message: noise in a JSON line.
_NOT_FIELDS = ("color_message",)


def current_request_id() -> str | None:
    """The id of the request being served here (None outside a request)."""
    return request_id_var.get()


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a safe token, else a fresh one."""
    if header is not None and SAFE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Outermost: every response, refusals by the other middleware included, carries the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside a request) to every record a handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


def logging_config(observability: ObservabilitySettings) -> dict[str, Any] | None:
    """A `logging.config.dictConfig` for the process (uvicorn's `log_config`): JSON lines on
    stderr through python-json-logger, with the request id and the PII mask on the handler, and
    uvicorn's loggers sent to it. None for "text": uvicorn's own configuration, as before."""
    if observability.log_format == "text":
        return None
    if observability.log_format != "json":
        raise ValueError(f"observability.log_format must be 'text' or 'json', not {observability.log_format!r}")
    level = observability.log_level.upper()
    from pythonjsonlogger.core import RESERVED_ATTRS  # noqa: PLC0415 - only JSON logs need it

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "mask_pii": {"()": "assistant.core.privacy.MaskPiiFilter"},
        },
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "reserved_attrs": [*RESERVED_ATTRS, *_NOT_FIELDS],
                "json_ensure_ascii": False,
            },
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["mask_pii", "request_id"],
            },
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # No handlers of their own: their lines go through the root's (JSON, masked, with ids).
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level, "handlers": [], "propagate": True},
        },
    }


def configure_logging(observability: ObservabilitySettings) -> None:
    """Apply `logging_config` in a process that is not started by uvicorn (`linli worker`)."""
    config = logging_config(observability)
    if config is None:
        logging.basicConfig(level=observability.log_level.upper())
        return
    logging.config.dictConfig(config)
