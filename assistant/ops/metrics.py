"""Prometheus metrics at `/metrics`.

- Request latency and counts by route template (`/api/v1/turns/{turn_id}/feedback`, never the
  raw path) from prometheus-fastapi-instrumentator: `http_request_duration_seconds`,
  `http_request_duration_highr_seconds`, `http_requests_total`, sizes.
- `linli_messages_total{channel, reply_type}`: residents' messages answered (`count_message`).
- Read from the database when scraped, at most once per `DB_CACHE_S` per app (one cheap query
  each): `linli_ticket_queue_depth{status}` (open tickets by status), `linli_outbox_lag_seconds{outbox}`
  (the oldest application not yet delivered to the government backend; the oldest due WeChat
  push), `linli_kb_jobs{status}`, and `linli_metrics_database_up` (0 when those queries failed).
- `linli_index_generation`: the index generation this process answers from.

Several processes (uvicorn workers, `linli worker`) on one host: set `PROMETHEUS_MULTIPROC_DIR`
to an empty directory shared by them, before they start; each scrape then sums every process's
counters and histograms (prometheus_client's multiprocess mode). Without it, one process's own.

Who may read it: the numbers name no resident, but the queue depths and traffic are the
centre's business. `/metrics` answers only a peer on the loopback interface or one of
`api.trusted_proxies` (the address uvicorn resolved, so a client behind the proxy is judged by
its own address); anyone else gets 404, as if there were no such page. `observability.metrics =
false` turns it off (404 for everyone)."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics
from sqlalchemy import func, select

from assistant.channels import channel_labels
from assistant.core.clock import utcnow
from assistant.escalation.states import OPEN
from assistant.escalation.tables import tickets
from assistant.kb_admin.tables import kb_jobs
from assistant.ops.health import served_generation
from connectors.channels.wechat import wechat_pushes
from connectors.services.tables import applications

if TYPE_CHECKING:
    from assistant.services import Services

log = logging.getLogger("linli.ops")

METRICS_PATH = "/metrics"
# Database gauges are read at most this often per app, however often Prometheus scrapes.
DB_CACHE_S = 5.0
KB_JOB_STATES = ("queued", "running", "done", "failed")
# Label values stay few whatever a client sends: an integration names its own channel.
# The registered channels' names (assistant/channels.py), the CLI's, and "voice"; any other
# (an integration's own name) is counted as "other", so a client cannot grow the label set.
KNOWN_CHANNELS = frozenset({*channel_labels(), "cli", "voice"})
KNOWN_REPLY_TYPES = frozenset({"answer", "clarify", "form", "handoff", "emergency", "smalltalk", "refusal"})
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

MESSAGES = Counter("linli_messages", "Residents' messages answered, by channel and reply type",
                   ["channel", "reply_type"])
# The request metrics, like any Prometheus metric, exist once per process: the instrumentator's
# own factory makes them for the first app only (a second app, as tests make, would get none).
_HTTP_INSTRUMENTATION = http_metrics.default()


def count_message(channel: str, reply_type: str) -> None:
    """One resident's message answered (the dialogue calls it once per reply)."""
    MESSAGES.labels(channel=channel if channel in KNOWN_CHANNELS else "other",
                    reply_type=reply_type if reply_type in KNOWN_REPLY_TYPES else "other").inc()


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class DatabaseCollector(Collector):
    """The queue and outbox gauges, read from the database at scrape time and cached briefly."""

    def __init__(self, services: Services, cache_s: float = DB_CACHE_S) -> None:
        self.services = services
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._read_at = -float("inf")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_s:
                self._cached = self._read()
                self._read_at = time.monotonic()
            metrics = list(self._cached)
        yield from metrics
        generation = GaugeMetricFamily("linli_index_generation", "Index generation this process answers from")
        generation.add_metric([], served_generation(self.services))
        yield generation

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("linli_metrics_database_up", "Whether the database gauges could be read")
        try:
            metrics = self._query()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage, it does not fail
            log.warning("metrics: reading the database failed (%s: %s)", type(exc).__name__,
                        (str(exc).splitlines() or [""])[0])
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [*metrics, up]

    def _query(self) -> list[Metric]:
        now = utcnow()
        engine = self.services.engine
        open_tickets = select(tickets.c.status, func.count()).where(tickets.c.status.in_(OPEN)) \
            .group_by(tickets.c.status)
        undelivered = select(func.min(applications.c.created_at)).where(applications.c.status == "queued")
        due_push = select(func.min(wechat_pushes.c.next_attempt_at)).where(
            wechat_pushes.c.status.in_(("queued", "sending")), wechat_pushes.c.next_attempt_at <= now)
        in_doubt = select(func.count()).where(wechat_pushes.c.status == "unconfirmed")
        job_counts = select(kb_jobs.c.status, func.count()).group_by(kb_jobs.c.status)
        with engine.connect() as conn:
            by_status: dict[str, int] = {row[0]: row[1] for row in conn.execute(open_tickets)}
            oldest_application = conn.execute(undelivered).scalar()
            oldest_push = conn.execute(due_push).scalar()
            unconfirmed = conn.execute(in_doubt).scalar() or 0
            jobs: dict[str, int] = {row[0]: row[1] for row in conn.execute(job_counts)}
        queue = GaugeMetricFamily("linli_ticket_queue_depth", "Open tickets by status", labels=["status"])
        for status in sorted(OPEN):
            queue.add_metric([status], int(by_status.get(status, 0)))
        lag = GaugeMetricFamily("linli_outbox_lag_seconds",
                                "Age of the oldest undelivered item of each outbox (0: none waiting)",
                                labels=["outbox"])
        lag.add_metric(["applications"], _age(now, oldest_application))
        lag.add_metric(["wechat_pushes"], _age(now, oldest_push))
        job_states = GaugeMetricFamily("linli_kb_jobs", "Knowledge-base jobs by status", labels=["status"])
        for status in (*KB_JOB_STATES, *sorted(set(jobs) - set(KB_JOB_STATES))):
            job_states.add_metric([str(status)], int(jobs.get(status, 0)))
        pushes = GaugeMetricFamily("linli_wechat_pushes_unconfirmed",
                                   "WeChat pushes in doubt (sender stopped mid-send, no answer): never sent twice")
        pushes.add_metric([], int(unconfirmed))
        return [queue, lag, job_states, pushes]


def _age(now: Any, oldest: Any) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0


class _Forward(Collector):
    """Another registry's metrics, collected into a scrape's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def _may_read(request: Request, trusted: Iterable[str]) -> bool:
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if any(address in network for network in LOOPBACK):
        return True
    for entry in trusted:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a name, not an address: uvicorn matched it already, we cannot
    return False


def render(services: Services, collector: DatabaseCollector) -> bytes:
    """The exposition text: this process's (or every process's) metrics and the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if _multiprocess():
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(collector)
    return generate_latest(registry)


def install_metrics(app: FastAPI) -> None:
    """The request histograms' middleware and the `/metrics` route."""
    Instrumentator(excluded_handlers=[METRICS_PATH, "/healthz", "/readyz"]).add(_HTTP_INSTRUMENTATION).instrument(app)

    @app.get(METRICS_PATH, include_in_schema=False)
    def metrics(request: Request) -> Response:
        services: Services | None = getattr(request.app.state, "services", None)
        if services is None or not services.settings.observability.metrics or \
                not _may_read(request, services.settings.api.trusted_proxies):
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        # One collector (and its 5-second cache) per app and services.
        collector: DatabaseCollector | None = getattr(request.app.state, "metrics_collector", None)
        if collector is None or collector.services is not services:
            collector = request.app.state.metrics_collector = DatabaseCollector(services)
        return Response(render(services, collector), media_type=CONTENT_TYPE_LATEST)
