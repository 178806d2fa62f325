"""JSON log lines with the request id, and the id's round trip through the middleware."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from assistant.core.privacy import install_log_masking
from assistant.core.settings import ObservabilitySettings
from assistant.ops.logs import (
    RequestIdMiddleware,
    current_request_id,
    logging_config,
    request_id_from,
    request_id_var,
)


@pytest.fixture
def json_lines():
    """The process's logging as `linli serve` sets it for JSON, into a buffer; restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    saved_loggers = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                            logging.getLogger(name).propagate, logging.getLogger(name).filters[:])
                     for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "linli")}
    config = logging_config(ObservabilitySettings(log_format="json", log_level="INFO"))
    assert config is not None
    buffer = io.StringIO()
    config["handlers"]["stderr"]["stream"] = buffer
    logging.config.dictConfig(config)
    install_log_masking()  # what the app's lifespan does: it must not undo or double the JSON handler's mask

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield lines
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, level, propagate, filters) in saved_loggers.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate, logger.filters[:] = handlers, propagate, filters
        logger.setLevel(level)


@pytest.mark.parametrize(("header", "kept"), [
    ("abc-123-DEF", True),
    ("a" * 64, True),
    ("a" * 65, False),
    ("abc def", False),
    ("abc\r\nSet-Cookie: x=1", False),
    ("id_with_underscore", False),
    ("", False),
    (None, False),
])
def test_only_a_safe_request_id_is_taken(header, kept):
    made = request_id_from(header)
    assert (made == header) is kept
    assert 1 <= len(made) <= 64 and all(c.isalnum() or c == "-" for c in made)


def test_text_logs_keep_uvicorn_s_own_configuration():
    assert logging_config(ObservabilitySettings()) is None
    with pytest.raises(ValueError, match="log_format"):
        logging_config(ObservabilitySettings(log_format="xml"))


def test_each_json_line_names_its_request_and_masks_personal_numbers(json_lines):
    app = FastAPI()
    seen: list[str | None] = []

    @app.get("/work")
    def work() -> dict:  # a sync endpoint: runs in a worker thread, which must see the id too
        seen.append(current_request_id())
        logging.getLogger("linli.test").warning("居民 13812345678 身份证 110101199003074514 来电")
        return {}

    app.add_middleware(RequestIdMiddleware)
    with TestClient(app) as client:
        given = client.get("/work", headers={"X-Request-ID": "haproxy-0001"})
        made = client.get("/work", headers={"X-Request-ID": "bad id!"})
    logging.getLogger("linli.test").warning("outside any request")
    assert given.headers["X-Request-ID"] == "haproxy-0001"
    assert made.headers["X-Request-ID"] not in ("bad id!", "") and len(made.headers["X-Request-ID"]) == 32
    assert seen == ["haproxy-0001", made.headers["X-Request-ID"]]
    records = [r for r in json_lines() if r["logger"] == "linli.test"]
    assert [r["request_id"] for r in records] == ["haproxy-0001", made.headers["X-Request-ID"], None]
    first = records[0]
    assert {"time", "level", "logger", "message", "request_id"} <= set(first)
    assert first["level"] == "WARNING"
    assert "13812345678" not in first["message"] and "110101199003074514" not in first["message"]
    assert "居民" in first["message"], "Chinese is written as itself, not \\u escapes"
    assert request_id_var.get() is None, "the id does not leak out of the request"


def test_uvicorn_access_lines_are_json_with_the_request_id(json_lines):
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET",
                                                 "/api/v1/sessions/13812345678/messages", "1.1", 200)
    finally:
        request_id_var.reset(token)
    (line,) = [r for r in json_lines() if r["logger"] == "uvicorn.access"]
    assert line["request_id"] == "req-42" and "GET" in line["message"]
    assert "13812345678" not in line["message"]
