"""The WeChat Official Account as a channel: WeChat's signature is the credential, the openid names
the resident (`wechat:<openid>`, one conversation each), MsgId keys the message; callbacks are
acknowledged at once and answered by its background work, and every word reaches the resident
as a customer-service push (assistant/wechat/service.py, connectors/channels/wechat.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from assistant.channel_plugin import ChannelPlugin

if TYPE_CHECKING:
    from assistant.wechat.service import WechatService
    from connectors.channels import Channel
    from connectors.channels.wechat import PushOutbox


class WechatContainer(Protocol):
    """What the channel takes from the container (assistant/services.py builds both, once)."""

    @property
    def wechat(self) -> WechatService: ...
    @property
    def wechat_pushes(self) -> PushOutbox: ...


def _outbound(services: WechatContainer) -> Channel:
    from connectors.channels.wechat import WechatChannel  # noqa: PLC0415 - wechatpy, only where WeChat is on

    return WechatChannel(services.wechat_pushes)


def _background(services: WechatContainer) -> WechatService:
    return services.wechat


WECHAT = ChannelPlugin(
    name="wechat",
    conversation_channels={"wechat": ("微信", "WeChat")},
    session_prefixes=("wechat:",),
    routers=("assistant.wechat.routes:wechat",),
    body_limits=(("/wechat", lambda settings: settings.wechat.max_body_bytes),),
    enabled=lambda settings: settings.wechat.enabled,
    outbound=_outbound,
    background=_background,
    in_server=lambda settings: settings.wechat.process_in_server,
)
