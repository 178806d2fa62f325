"""The database gauges read at scrape time, the message counter's labels, who may read /metrics."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from assistant.core.clock import utcnow
from assistant.core.settings import Settings
from assistant.kb_admin.tables import kb_jobs
from assistant.ops.metrics import DatabaseCollector, _may_read, count_message, render
from assistant.services import Services
from connectors.channels.wechat import wechat_pushes
from connectors.services.tables import applications


def _samples(collector: DatabaseCollector) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in collector.collect() for s in m.samples}


@pytest.fixture
def services(tmp_path) -> Services:
    return Services(Settings(data_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'linli.sqlite'}"))


def _fill(services: Services) -> None:
    now = utcnow()
    for kind in ("human_request", "dispute", "complaint"):
        services.escalation.open_ticket(kind=kind, priority="normal", session_id=f"s-{kind}", channel="web",
                                        user_id="u", summary="请联系我")
    engine = services.engine
    with engine.begin() as conn:
        for n, (status, age) in enumerate([("queued", 120), ("queued", 30), ("submitted", 999)]):
            conn.execute(insert(applications).values(
                application_id=f"A{n}", procedure="elderly_allowance", session_id="s", channel="web", user_id="u",
                data={}, status=status, attempts=0, next_attempt_at=now, created_at=now - timedelta(seconds=age),
                updated_at=now))
        for n, (status, due_in) in enumerate([("queued", -45), ("queued", 600), ("sent", -999),
                                                    ("unconfirmed", -999), ("unconfirmed", -999)]):
            conn.execute(insert(wechat_pushes).values(
                push_key=f"p{n}", openid="o", session_id="s", text="您好", status=status, attempts=0,
                next_attempt_at=now + timedelta(seconds=due_in), created_at=now))
        for n, status in enumerate(["queued", "running", "done", "done", "failed"]):
            conn.execute(insert(kb_jobs).values(
                job_id=f"j{n}", action="upload", actor="boss", status=status, stage="waiting", done=0, total=0,
                doc_ids=[], summary="上传", created_at=now, updated_at=now))


def test_the_gauges_read_queue_depth_outbox_lag_and_jobs(services):
    _fill(services)
    samples = _samples(DatabaseCollector(services))
    assert samples[("linli_ticket_queue_depth", (("status", "pending"),))] == 3
    assert samples[("linli_ticket_queue_depth", (("status", "claimed"),))] == 0
    # The oldest queued application is 120 s old (the submitted one is delivered: not counted).
    assert 119 <= samples[("linli_outbox_lag_seconds", (("outbox", "applications"),))] < 125
    # The oldest due push is 45 s overdue; the one due in 10 minutes is not late yet, the sent one is gone.
    assert 44 <= samples[("linli_outbox_lag_seconds", (("outbox", "wechat_pushes"),))] < 50
    assert samples[("linli_wechat_pushes_unconfirmed", ())] == 2, "the pushes in doubt are counted"
    assert samples[("linli_kb_jobs", (("status", "done"),))] == 2
    assert samples[("linli_kb_jobs", (("status", "queued"),))] == 1
    assert samples[("linli_kb_jobs", (("status", "failed"),))] == 1
    assert samples[("linli_metrics_database_up", ())] == 1
    assert samples[("linli_index_generation", ())] == 0, "no index loaded in this process"


def test_an_empty_database_reads_zero_lag(services):
    samples = _samples(DatabaseCollector(services))
    assert samples[("linli_outbox_lag_seconds", (("outbox", "applications"),))] == 0
    assert samples[("linli_outbox_lag_seconds", (("outbox", "wechat_pushes"),))] == 0
    assert samples[("linli_ticket_queue_depth", (("status", "pending"),))] == 0


def test_the_gauges_are_cached_between_scrapes(services):
    cached = DatabaseCollector(services, cache_s=60)
    fresh = DatabaseCollector(services, cache_s=0)
    key = ("linli_ticket_queue_depth", (("status", "pending"),))
    assert _samples(cached)[key] == 0 and _samples(fresh)[key] == 0
    _fill(services)
    assert _samples(cached)[key] == 0, "read again within the cache time"
    assert _samples(fresh)[key] == 3


def test_a_database_that_does_not_answer_is_reported_not_raised(tmp_path):
    down = Services(Settings(data_dir=tmp_path / "var", database_url="postgresql+psycopg://root@127.0.0.1:1/none"))
    samples = _samples(DatabaseCollector(down))
    assert samples[("linli_metrics_database_up", ())] == 0
    assert not any(name == "linli_ticket_queue_depth" for name, _ in samples)


def test_messages_are_counted_with_few_label_values(services):
    def value(channel: str, reply_type: str) -> float:
        return REGISTRY.get_sample_value("linli_messages_total", {"channel": channel, "reply_type": reply_type}) or 0

    before = value("wechat", "answer"), value("other", "other")
    count_message("wechat", "answer")
    count_message("hotline-12345", "answer-with-a-twist")
    count_message("crm-for-a-district", "made-up")
    assert value("wechat", "answer") == before[0] + 1
    assert value("other", "other") == before[1] + 2
    families = {f.name for f in text_string_to_metric_families(render(services, DatabaseCollector(services)).decode())}
    assert {"linli_messages", "linli_ticket_queue_depth", "linli_outbox_lag_seconds", "linli_kb_jobs"} <= families


@pytest.mark.parametrize(("host", "trusted", "allowed"), [
    ("127.0.0.1", [], True),
    ("127.8.9.10", [], True),
    ("::1", [], True),
    ("10.0.0.5", [], False),
    ("10.0.0.5", ["10.0.0.5"], True),
    ("10.0.0.77", ["10.0.0.0/24"], True),
    ("10.0.1.77", ["10.0.0.0/24", "haproxy.internal"], False),
    ("testclient", ["testclient"], False),
    ("", [], False),
])
def test_metrics_are_for_loopback_and_the_trusted_proxies_only(host, trusted, allowed):
    request = SimpleNamespace(client=SimpleNamespace(host=host))
    assert _may_read(request, trusted) is allowed  # type: ignore[arg-type]
