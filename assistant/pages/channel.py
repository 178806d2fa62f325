"""The kiosk and phone-chat pages as a channel: a page mints its own session (`POST
/api/v1/sessions`), which is its credential, its resident and its conversation; it speaks through
the residents' API and reads a worker's words from the outbox (assistant/residents/routes.py)."""

from __future__ import annotations

from assistant.channel_plugin import ChannelPlugin
from assistant.residents.sessions import PAGE_CHANNELS

LABELS = {"kiosk": ("自助机", "Kiosk"), "chat": ("手机网页", "Phone chat")}
assert set(LABELS) == set(PAGE_CHANNELS)

PAGES = ChannelPlugin(
    name="pages",
    conversation_channels=LABELS,
    # Page sessions are "kiosk-…" / "chat-…" ("page-" kept reserved from before the split).
    session_prefixes=("page-", *(f"{name}-" for name in PAGE_CHANNELS)),
    routers=("assistant.pages.routes:pages", "assistant.residents.routes:residents_api"),
    page_prefixes=("/kiosk", "/chat"),
)
