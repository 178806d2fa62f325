"""The HTTP protections on a small app: cookies get Secure behind HTTPS, the CSRF check compares
Origin/Referer with the request's own host, JSON bodies are checked once for what no endpoint
can store, and body limits differ per endpoint."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from assistant.core.errors import InvalidRequest
from assistant.core.settings import ApiSettings, Settings, SpeechSettings, WechatSettings
from assistant.security.http import MULTIPART_OVERHEAD, body_limit, check_json_body, install_security


def _app(settings: Settings) -> FastAPI:
    app = FastAPI()

    @app.post("/console/login")
    def login() -> JSONResponse:
        response = JSONResponse({"ok": True})
        response.set_cookie("linli_session", "t", httponly=True, samesite="strict")
        return response

    @app.post("/api/v1/echo")
    async def echo(request: Request) -> dict:
        return {"size": len(await request.body())}

    install_security(app)
    app.state.services = SimpleNamespace(settings=settings, limits=None)
    return app


def test_cookies_get_secure_behind_https_only():
    https = TestClient(_app(Settings(api=ApiSettings(https=True))), base_url="https://linli.example")
    cookie = https.post("/console/login", headers={"Origin": "https://linli.example"}).headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    plain = TestClient(_app(Settings()))
    assert "secure" not in plain.post("/console/login", headers={"Origin": "http://testserver"}).headers[
        "set-cookie"].lower()


@pytest.mark.parametrize(("headers", "allowed"), [
    ({"Origin": "http://testserver"}, True),
    ({"Origin": "http://evil.example"}, False),
    ({}, False),
    ({"Authorization": "Bearer abc"}, False),  # the form is the form, whatever else the request carries
])
def test_the_login_form_takes_posts_from_its_own_page_only(headers, allowed):
    """Login CSRF: another site's form must not log a visitor into an account of its choosing,
    though the visitor has no cookie yet."""
    response = TestClient(_app(Settings())).post("/console/login", headers=headers)
    assert (response.status_code == 200) is allowed, response.text
    assert ("linli_session" in response.headers.get("set-cookie", "")) is allowed


@pytest.mark.parametrize(("headers", "allowed"), [
    ({"Origin": "http://testserver"}, True),
    ({"Referer": "http://testserver/console/tickets/T1"}, True),
    ({"Origin": "http://evil.example"}, False),
    ({"Origin": "http://testserver.evil.example"}, False),
    ({"Origin": "null"}, False),
    ({"Referer": "http://evil.example/http://testserver/"}, False),
    ({}, False),
    ({"Authorization": "Bearer abc"}, True),  # a bearer call is not cookie-authenticated
    ({"Authorization": "Basic eDp4"}, False),  # any other scheme leaves the cookie in charge
    ({"Authorization": "Basic eDp4", "Origin": "http://evil.example"}, False),
])
def test_cookie_authenticated_posts_need_the_same_origin(headers, allowed):
    client = TestClient(_app(Settings()), cookies={"linli_session": "token"})
    response = client.post("/api/v1/echo", json={"a": 1}, headers=headers)
    assert (response.status_code == 200) is allowed, response.text
    if not allowed:
        assert response.status_code == 403 and response.json()["error"] == "cross_site_request"


def test_without_the_cookie_no_origin_is_needed():
    assert TestClient(_app(Settings())).post("/api/v1/echo", json={"a": 1}).status_code == 200


@pytest.mark.parametrize("body", [
    b'{"text": "\\udc00\\ud800"}', b'{"\\ud800": 1}', b'{"a": [1, {"b": "\\udfff"}]}',
    b'{"n": 99999999999999999999}', b'{"n": -9223372036854775809}', b'{"n": NaN}', b'{"n": Infinity}',
    b'{"n": 1' + b"0" * 5000 + b"}", b"[" * 40 + b"]" * 40, b"[" * 5000 + b"]" * 5000, b'{"t": "\xff"}',
])
def test_json_bodies_no_endpoint_can_store_are_refused(body):
    with pytest.raises(InvalidRequest):
        check_json_body(body)


@pytest.mark.parametrize("body", [
    b'{"text": "\\u4f60\\u597d \xe4\xbd\xa0\xe5\xa5\xbd \\ud83d\\ude00"}', b'{"n": 9223372036854775807}',
    b'{"x": 1.5e300}', b"[" * 30 + b"]" * 30, b"{not json", b"",
])
def test_ordinary_and_malformed_json_pass_through(body):
    check_json_body(body)  # malformed JSON is the app's own 422


def test_body_limits_per_endpoint():
    settings = Settings(api=ApiSettings(max_body_bytes=1000), speech=SpeechSettings(max_bytes=5000),
                        wechat=WechatSettings(max_body_bytes=2000))
    assert body_limit(settings, "/api/v1/ask") == 1000
    assert body_limit(settings, "/api/v1/voice") == 5000 + MULTIPART_OVERHEAD
    assert body_limit(settings, "/wechat/callback") == 2000
    client = TestClient(_app(settings))
    assert client.post("/api/v1/echo", content=b"x" * 1000).json() == {"size": 1000}
    refused = client.post("/api/v1/echo", content=b"x" * 1001)
    assert refused.status_code == 413 and "太大" in refused.json()["message"]
    # A body without a length (chunked) is counted as it streams in.
    streamed = client.post("/api/v1/echo", content=iter([b"x" * 600, b"x" * 600]))
    assert streamed.status_code == 413
    assert client.post("/api/v1/echo", content=iter([b"x" * 400, b"x" * 400])).json() == {"size": 800}
