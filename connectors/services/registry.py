"""Service connectors by name, chosen with `LINLI_CONNECTORS__NAME`."""

from __future__ import annotations

from collections.abc import Callable

from assistant.core.errors import LinliError
from assistant.core.settings import ConnectorSettings
from connectors.services.base import ServiceConnector
from connectors.services.http import HttpServiceConnector
from connectors.services.memory import InMemoryServiceConnector
from connectors.services.procedures import ProcedureCatalogue


def _http(settings: ConnectorSettings, procedures: ProcedureCatalogue) -> ServiceConnector:
    return HttpServiceConnector(settings.backend_url, timeout_s=settings.timeout_s,
                                attempts=settings.attempts_per_delivery, breaker_threshold=settings.breaker_threshold,
                                breaker_cooldown_s=settings.breaker_cooldown_s, procedures=procedures)


CONNECTORS: dict[str, Callable[[ConnectorSettings, ProcedureCatalogue], ServiceConnector]] = {
    "http": _http,
    "memory": lambda _settings, procedures: InMemoryServiceConnector(procedures),
}


def make_connector(settings: ConnectorSettings, procedures: ProcedureCatalogue) -> ServiceConnector:
    try:
        return CONNECTORS[settings.name](settings, procedures)
    except KeyError as exc:
        raise LinliError(f"未知的服务连接器：{settings.name}（可用：{', '.join(CONNECTORS)}）",
                         f"Unknown service connector {settings.name!r}; available: {', '.join(CONNECTORS)}") from exc
