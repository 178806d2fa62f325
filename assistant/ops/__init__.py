"""Running a replica: readiness and shutdown (health.py, server.py), Prometheus metrics
(metrics.py) and request-id JSON logs (logs.py). `install_operations` wires them into the app."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from assistant.ops.health import DatabaseUnavailableGuard, ReadinessProbe, database_unavailable, readyz
from assistant.ops.logs import RequestIdMiddleware
from assistant.ops.metrics import install_metrics


def install_operations(app: FastAPI) -> None:
    """`/readyz`, `/metrics`, the database-outage 503, and the request id. Call it after the other
    middleware: the last added runs first, and the request id must cover every response."""
    app.state.readiness = ReadinessProbe()
    app.add_api_route("/readyz", readyz, methods=["GET"], tags=["ops"],
                      summary="可以接收请求吗 / Ready for traffic (database, Redis, index)")
    app.add_exception_handler(SQLAlchemyError, database_unavailable)
    install_metrics(app)
    app.add_middleware(DatabaseUnavailableGuard)
    app.add_middleware(RequestIdMiddleware)
