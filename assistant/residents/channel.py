"""An integration's API calls as a channel (a hotline system, a CRM): `X-API-Key` is the
credential, the client names its own conversations and users (never the ids or channel names the
pages and WeChat own) and reads a worker's words from the outbox. Its channel names are the
client's own ("web" by default, "hotline-12345" …)."""

from __future__ import annotations

from assistant.channel_plugin import ChannelPlugin

INTEGRATION = ChannelPlugin(
    name="integration",
    conversation_channels={"web": ("接口", "API")},
    owns_names=False,
    routers=("assistant.residents.routes:residents_api",),
)
