"""The channels residents use, registered in one place.

Each channel is a package with a `channel.py` declaring a `ChannelPlugin`: its routes, the
conversation channel names and session ids it owns, its request-body limits, how Linli's words
reach its residents (outbound) and the background work it needs. Everything that used to know
every channel by name — the app's routers and start-up, the body-limit middleware, the
integration API's reserved names, the container's outbound registry, `linli worker`, the
analytics labels — reads this list. Adding a channel is its package and one line in
`CHANNELS` (docs/architecture.md, "Adding a channel").

The inbound contract every channel keeps is assistant/residents/inbound.py (verify, name the
resident, key the message, hand it to the `MessageGate`); the outbound one is
connectors/channels' `Channel`. tests/integration/test_channel_contract.py runs the same checks on
every channel registered here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from assistant.channel_plugin import ChannelPlugin
from assistant.pages.channel import PAGES
from assistant.residents.channel import INTEGRATION
from assistant.residents.sessions import ReservedNames
from assistant.wechat.channel import WECHAT

if TYPE_CHECKING:
    from assistant.core.settings import Settings


CHANNELS: tuple[ChannelPlugin, ...] = (PAGES, INTEGRATION, WECHAT)


def unique_routers() -> list[APIRouter]:
    """The registered channels' routers, each once (all channels': a disabled WeChat still answers
    its callback with a plain 404 from its own route)."""
    found: list[APIRouter] = []
    for plugin in CHANNELS:
        for router in plugin.load_routers():
            if not any(router is known for known in found):
                found.append(router)
    return found


def enabled_channels(settings: Settings) -> list[ChannelPlugin]:
    return [plugin for plugin in CHANNELS if plugin.enabled(settings)]


def reserved_names() -> ReservedNames:
    """The session ids and channel names the registered channels own (ResidentSessions')."""
    return ReservedNames(tuple(prefix for plugin in CHANNELS for prefix in plugin.session_prefixes),
                         frozenset(name.casefold() for plugin in CHANNELS if plugin.owns_names
                                   for name in plugin.conversation_channels))


def body_limit_of(settings: Settings, path: str) -> int | None:
    """The limit a channel sets for this path, or None (the API's default applies)."""
    for plugin in CHANNELS:
        for prefix, limit in plugin.body_limits:
            if path.startswith(prefix):
                return limit(settings)
    return None


def page_prefixes() -> tuple[str, ...]:
    return tuple(prefix for plugin in CHANNELS for prefix in plugin.page_prefixes)


def channel_labels(language: str = "zh") -> dict[str, str]:
    """Conversation channel name -> its label, for the analytics and the console."""
    index = 1 if language == "en" else 0
    return {name: labels[index] for plugin in CHANNELS for name, labels in plugin.conversation_channels.items()}
