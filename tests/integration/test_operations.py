"""Operating a replica: readiness, SIGTERM, database and Redis outages, metrics, request-id JSON
logs, and refusing a database a newer release migrated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from assistant.api import create_app
from assistant.core.settings import ApiSettings, LimitSettings, Settings, get_settings
from assistant.escalation.auth import UserStore
from assistant.ops import health
from tests.conftest import ENV_API_KEYS, RESIDENT_HEADERS, SHARED_CACHE, TEST_API_KEYS, free_port
from tests.integration.conftest import linli_env

REDIS_URL = "redis://127.0.0.1:6379/0"
UNAVAILABLE = {"error": "unavailable", "message": "服务暂时不可用，请稍后再试。"}
LOOPBACK = ("127.0.0.1", 50000)
QUESTION = "失业登记要带什么材料"


def _settings(root: Path, *, trusted_proxies: tuple[str, ...] = (), **overrides) -> Settings:
    return Settings(data_dir=root / "var", embedding_cache=SHARED_CACHE, corpus_dirs=[root / "corpus"],
                    law_corpus=None, api=ApiSettings(keys=TEST_API_KEYS, trusted_proxies=list(trusted_proxies)),
                    **overrides)


def _client(settings: Settings, **kwargs) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    return TestClient(app, **kwargs)


def _redis_up() -> bool:
    import redis  # noqa: PLC0415

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False
    return True


@pytest.fixture
def not_stopping() -> Iterator[None]:
    yield
    health._stopping.clear()  # the flag is per process: a test that set it clears it


# ---- readiness ------------------------------------------------------------------------------


def test_ready_when_database_redis_and_index_answer(small_index_dir):
    if not _redis_up():
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    with _client(_settings(small_index_dir, limits=LimitSettings(redis_url=REDIS_URL))) as client:
        ready = client.get("/readyz")
        alive = client.get("/healthz").json()
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok", "index": "ok",
                            "generation": alive["generation"]}
    assert alive["generation"] > 0 and alive["index_built"] is True and alive["status"] == "ok"


def test_not_ready_names_what_failed_and_stopping_wins(small_index_dir, not_stopping):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with _client(_settings(small_index_dir, limits=LimitSettings(redis_url=dead_redis))) as client:
        started = time.monotonic()
        down = client.get("/readyz")
        assert time.monotonic() - started < health.READY_TIMEOUT_S + 1
        assert down.status_code == 503
        assert down.json()["status"] == "not ready" and down.json()["redis"] == "unavailable"
        assert down.json()["database"] == "ok" and down.json()["generation"] > 0
        assert client.get("/healthz").status_code == 200, "liveness does not depend on Redis"
        health.begin_shutdown()
        stopping = client.get("/readyz")
        assert stopping.status_code == 503 and stopping.json() == {"status": "stopping"}


def test_a_replica_without_an_index_is_not_ready(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", embedding_cache=SHARED_CACHE, corpus_dirs=[tmp_path],
                        law_corpus=None)
    with _client(settings) as client:
        body = client.get("/readyz").json()
        assert client.get("/healthz").json() == {"status": "ok", "index_built": False, "generation": 0}
    assert body["status"] == "not ready" and body["index"] == "not loaded" and body["database"] == "ok"


# ---- PostgreSQL down ------------------------------------------------------------------------


def test_postgres_down_answers_503_in_chinese_never_500_or_a_hang(small_index_dir):
    url = f"postgresql+psycopg://root@127.0.0.1:{free_port()}/linli"
    with _client(_settings(small_index_dir, database_url=url), headers=RESIDENT_HEADERS) as client:
        started = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] == "unavailable"
        assert client.get("/healthz").status_code == 200
        for method, path, body in [("POST", "/api/v1/sessions", {"channel": "chat"}),
                                   ("POST", "/api/v1/messages", {"session_id": "ops-pg-1", "text": QUESTION}),
                                   ("POST", "/api/v1/auth/token", {"username": "wang", "password": "x" * 12}),
                                   ("GET", "/api/v1/tickets", None)]:
            response = client.request(method, path, json=body, headers={"Authorization": "Bearer abc"}
                                      if path.endswith("tickets") else None)
            assert response.status_code == 503, (path, response.text)
            assert response.json() == UNAVAILABLE
            assert response.headers["Retry-After"] and response.headers["X-Request-ID"]
        assert time.monotonic() - started < 30


# ---- Redis down -----------------------------------------------------------------------------


def test_redis_down_lets_residents_talk_and_refuses_logins(databases, small_index_dir, caplog):
    settings = _settings(small_index_dir, limits=LimitSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    UserStore(databases.engine(settings.resolved_database_url)).add("ops-wang", "ops-wang-password-2024", role="worker")
    with _client(settings, headers=RESIDENT_HEADERS) as client, caplog.at_level("WARNING", logger="linli.security"):
        for n in range(3):
            reply = client.post("/api/v1/messages", json={"session_id": "ops-redis-1", "text": QUESTION,
                                                           "message_id": f"m{n}"})
            assert reply.status_code == 200, reply.text
        assert client.post("/api/v1/ask", json={"question": QUESTION}).status_code == 200
        token = client.post("/api/v1/auth/token", json={"username": "ops-wang", "password": "ops-wang-password-2024"})
        assert token.status_code == 503 and token.json()["error"] == "limits_unavailable"
        assert "登录暂时无法使用" in token.json()["message"] and token.headers["Retry-After"] == "30"
        page = client.post("/console/login", data={"username": "ops-wang", "password": "ops-wang-password-2024"},
                           headers={"Origin": "http://testserver"}, follow_redirects=False)
        assert page.status_code == 503 and "登录暂时无法使用" in page.text and "linli_session" not in page.cookies
    outage = [r for r in caplog.records if "did not answer" in r.getMessage()]
    assert len(outage) == 1, "one warning for the outage, not one per request"


# ---- metrics and request ids ----------------------------------------------------------------


def test_metrics_by_route_template_for_loopback_only(small_index_dir):
    settings = _settings(small_index_dir)
    with _client(settings, headers=RESIDENT_HEADERS, client=LOOPBACK) as client:
        assert client.post("/api/v1/ask", json={"question": QUESTION}).status_code == 200
        client.post("/api/v1/turns/987654/feedback", json={"rating": "up"})
        scraped = client.get("/metrics")
        generation = client.get("/healthz").json()["generation"]
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    samples = [s for f in text_string_to_metric_families(scraped.text) for s in f.samples]
    families = {s.name for s in samples}
    handlers = {s.labels.get("handler") for s in samples if s.name == "http_request_duration_seconds_bucket"}
    assert {"/api/v1/ask", "/api/v1/turns/{turn_id}/feedback"} <= handlers
    assert "987654" not in scraped.text, "latency is by route template, never the raw path"
    assert [s.value for s in samples if s.name == "linli_index_generation"] == [generation]
    assert {"linli_ticket_queue_depth", "linli_outbox_lag_seconds", "linli_kb_jobs",
            "linli_metrics_database_up"} <= families
    with _client(settings) as stranger:  # TestClient's peer is "testclient": not loopback
        assert stranger.get("/metrics").status_code == 404
    with _client(settings, client=("192.0.2.10", 4000)) as outsider:
        assert outsider.get("/metrics").status_code == 404
    # The trusted proxies' network reads it.
    with _client(_settings(small_index_dir, trusted_proxies=("192.0.2.0/24",)), client=("192.0.2.10", 4000)) as proxy:
        assert proxy.get("/metrics").status_code == 200


def test_every_response_carries_a_request_id(small_index_dir):
    with _client(_settings(small_index_dir)) as client:
        echoed = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a-0001"})
        replaced = client.get("/healthz", headers={"X-Request-ID": "<script>"})
        # A refusal by the security middleware (a body over the limit) carries one too.
        refused = client.post("/api/v1/ask", content=b"x" * (2 * 1024 * 1024),
                              headers={"Content-Type": "application/json"})
    assert echoed.headers["X-Request-ID"] == "lb-7f3a-0001"
    assert replaced.headers["X-Request-ID"] != "<script>" and len(replaced.headers["X-Request-ID"]) == 32
    assert refused.status_code == 413 and len(refused.headers["X-Request-ID"]) == 32


# ---- real server processes ------------------------------------------------------------------


def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    env = {"LINLI_API__KEYS": ENV_API_KEYS, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return process
        except httpx.TransportError:
            assert process.poll() is None, f"server died on start: {log.read_text(errors='replace')[-2000:]}"
            assert time.monotonic() < deadline, "server did not start within 90 s"
            time.sleep(0.3)


def test_sigterm_finishes_the_request_in_flight_and_exits_in_time(small_index_dir, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(dict(linli_env(small_index_dir), LINLI_API__SHUTDOWN_GRACE_S="8"), port, tmp_path / "server.log")
    try:
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        sent_first_part = threading.Event()
        stop_hanging = threading.Event()
        results: dict[str, object] = {}

        def slow_body() -> Iterator[bytes]:
            yield b'{"question": '
            sent_first_part.set()
            time.sleep(3)  # SIGTERM arrives while this request is in flight
            yield json.dumps(QUESTION, ensure_ascii=False).encode() + b"}"

        def never_ending_body() -> Iterator[bytes]:  # an upload that would hold the shutdown forever
            yield b'{"question": '
            stop_hanging.wait(30)
            yield b'"x"}'

        def post(name: str, body: Iterator[bytes]) -> None:
            try:
                results[name] = httpx.post(f"{base}/api/v1/ask", content=body, timeout=30,
                                           headers={"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                results[name] = exc

        threads = [threading.Thread(target=post, args=("slow", slow_body())),
                   threading.Thread(target=post, args=("hanging", never_ending_body()))]
        for thread in threads:
            thread.start()
        assert sent_first_part.wait(10)
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        stopping = httpx.get(f"{base}/readyz", timeout=5)
        assert stopping.status_code == 503 and stopping.json() == {"status": "stopping"}
        server.wait(timeout=12)
        exited_after = time.monotonic() - signalled
        stop_hanging.set()
        for thread in threads:
            thread.join(timeout=30)
        slow = results["slow"]
        assert isinstance(slow, httpx.Response) and slow.status_code == 200, slow
        assert slow.json()["citations"][0]["doc_id"] == "unemployment"
        assert exited_after < 10, f"exited {exited_after:.1f} s after SIGTERM"
        assert not isinstance(results["hanging"], httpx.Response) or results["hanging"].status_code != 200
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


def test_a_replica_during_a_postgres_outage_logs_json_and_serves_metrics(small_index_dir, tmp_path):
    """A cluster replica: JSON logs, multi-process metrics, and PostgreSQL on a closed port."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = dict(linli_env(small_index_dir), LINLI_DATABASE_URL=f"postgresql+psycopg://root@127.0.0.1:{free_port()}/x",
               LINLI_OBSERVABILITY__LOG_FORMAT="json", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    log = tmp_path / "server.log"
    server = _serve(env, port, log)
    try:
        started = time.monotonic()
        message = httpx.post(f"{base}/api/v1/messages", json={"session_id": "ops-pg-2", "text": QUESTION},
                             headers={**RESIDENT_HEADERS, "X-Request-ID": "trace-pg-0001"}, timeout=30)
        assert message.status_code == 503 and message.json() == UNAVAILABLE
        assert message.headers["X-Request-ID"] == "trace-pg-0001"
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["database"] == "unavailable"
        assert time.monotonic() - started < 20, "an unreachable database must fail fast"
        scraped = httpx.get(f"{base}/metrics", timeout=10)
        assert scraped.status_code == 200
        samples = [s for f in text_string_to_metric_families(scraped.text) for s in f.samples]
        assert [s.value for s in samples if s.name == "linli_metrics_database_up"] == [0]
        assert any(s.name == "http_requests_total" and s.labels.get("handler") == "/api/v1/messages"
                   and s.labels.get("status") == "5xx" and s.value >= 1 for s in samples)
        assert list(metrics_dir.glob("*.db")), "multi-process mode writes its values to PROMETHEUS_MULTIPROC_DIR"
    finally:
        server.terminate()
        server.wait(timeout=20)
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    assert lines, log.read_text(errors="replace")[-2000:]
    traced = [line for line in lines if line.get("request_id") == "trace-pg-0001"]
    assert any(line["logger"] == "linli.ops" and "database unavailable" in line["message"] for line in traced)
    assert any(line["logger"] == "uvicorn.access" and "/api/v1/messages" in line["message"] for line in traced)


def test_old_code_refuses_a_database_a_newer_release_migrated(databases, tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'linli.sqlite'}"
    databases.engine(url)
    with create_engine(url).begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = '9001_from_a_newer_release'"))
    result = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "serve", "--port", str(free_port())],
        env=dict(os.environ, LINLI_DATA_DIR=str(data_dir)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert "9001_from_a_newer_release" in said and head in said
    assert "比本程序认识的最新版本" in said and "newer than this code" in said
