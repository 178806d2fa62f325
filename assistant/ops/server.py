"""`linli serve`'s uvicorn, stopped the way a replica behind HAProxy must stop.

On SIGTERM the replica at once answers `/readyz` with 503 `stopping`, keeps serving for a short
drain (`drain_s`: long enough for the proxy's health check to notice and send new requests
elsewhere), then stops listening, lets the requests in flight finish, and exits: all within
`api.shutdown_grace_s`. A second signal (or Ctrl-C, SIGINT) skips the drain."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import uvicorn

from assistant.core.settings import Settings
from assistant.ops.health import begin_shutdown
from assistant.ops.logs import logging_config

log = logging.getLogger("linli.ops")

# The most a drain lasts; a quarter of the grace period when that is shorter.
MAX_DRAIN_S = 2.0
# Kept back from the grace period for the app's own shutdown (background tasks, threads) and exit.
EXIT_MARGIN_S = 1.0


def shutdown_timings(grace_s: float) -> tuple[float, int]:
    """(drain, whole seconds to wait for requests in flight: uvicorn takes an int), together at
    most `grace_s` less the exit margin (at least one second for the requests)."""
    drain = min(MAX_DRAIN_S, grace_s / 4)
    in_flight = max(1, int(grace_s - drain - EXIT_MARGIN_S))
    return drain, in_flight


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_s: float) -> None:
        super().__init__(config)
        self.drain_s = drain_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        begin_shutdown()
        if sig == signal.SIGTERM and self.drain_s > 0 and not self._draining and not self.should_exit:
            self._draining = True
            log.info("SIGTERM: reporting not ready, draining for %.1f s before closing", self.drain_s)
            timer = threading.Timer(self.drain_s, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()
            return
        super().handle_exit(sig, frame)


def run(settings: Settings, *, host: str, port: int) -> None:
    drain_s, in_flight_s = shutdown_timings(settings.api.shutdown_grace_s)
    trusted = settings.api.trusted_proxies
    options: dict[str, Any] = {}
    log_config = logging_config(settings.observability)
    if log_config is not None:
        options["log_config"] = log_config
    config = uvicorn.Config(
        "assistant.api:create_app", factory=True, host=host, port=port,
        # X-Forwarded-For only from the proxies named in settings: uvicorn's default trusts any
        # local process, and a header rotated from 127.0.0.1 reset every per-address limit.
        proxy_headers=bool(trusted), forwarded_allow_ips=",".join(trusted) if trusted else "",
        # Open console event streams would otherwise hold a graceful shutdown forever.
        timeout_graceful_shutdown=in_flight_s,
        log_level=settings.observability.log_level.lower(), **options)
    GracefulServer(config, drain_s).run()
