"""What a channel declares about itself (assistant/channels.py registers them): a separate
module so that each channel's `channel.py` can import it while the registry imports them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import APIRouter

if TYPE_CHECKING:
    from assistant.core.settings import Settings
    from connectors.channels import Channel


class ChannelWork(Protocol):
    """A channel's own background work (WeChat: answer queued messages, send pushes)."""

    def work(self, worker: str) -> int:
        """One round; how many things it did (0: idle)."""
        ...

    def start_thread(self, worker: str) -> StoppableThread: ...


class StoppableThread(Protocol):
    def stop(self, timeout: float = 10.0) -> None: ...


@dataclass(frozen=True)
class ChannelPlugin:
    """One channel, declared: what the rest of Linli needs to know of it."""

    name: str
    # Conversation channel names this channel's residents speak on, with their labels (zh, en)
    # for the analytics and the console.
    conversation_channels: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Whether those names are this channel's alone: an integration may not use them (its
    # conversations would be answered through this channel's credentials and outbound).
    owns_names: bool = True
    # Session id prefixes this channel mints; an integration client may not choose such an id.
    session_prefixes: tuple[str, ...] = ()
    # Its HTTP routes as "module:name", imported when the app is built: routes import the
    # container, which reads this registry, so naming them by import would be a circle. Two
    # channels may share a router (pages and integrations both use the residents' API); the app
    # includes it once.
    routers: tuple[str, ...] = ()
    # Path prefixes of its pages (the security headers' Content-Security-Policy applies to them).
    page_prefixes: tuple[str, ...] = ()
    # Request-body limits for its paths: a path prefix and the limit the settings give it.
    body_limits: tuple[tuple[str, Callable[[Settings], int]], ...] = ()
    # Whether the deployment has this channel switched on.
    enabled: Callable[[Settings], bool] = lambda _settings: True
    # How Linli's words reach its residents; None: the database outbox the pages and
    # integrations read (connectors/channels/base.py). It and `background` are given the
    # container (assistant/services.py), which each channel reads through a Protocol of its own.
    outbound: Callable[[Any], Channel] | None = None
    # Its background work, run by `linli worker` and, where `in_server` says so, by a server
    # that runs the background itself (a single server; a cluster's replicas leave it to workers).
    background: Callable[[Any], ChannelWork] | None = None
    in_server: Callable[[Settings], bool] = lambda _settings: True

    def load_routers(self) -> list[APIRouter]:
        found = []
        for reference in self.routers:
            module, _, name = reference.partition(":")
            router = getattr(importlib.import_module(module), name)
            if not isinstance(router, APIRouter):
                raise TypeError(f"{self.name}: {reference} is not an APIRouter")
            found.append(router)
        return found
