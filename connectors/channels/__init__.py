"""Resident channels: how a message reaches the resident on the channel they used."""

from connectors.channels.base import Channel, ChannelRegistry, OutboxChannel

__all__ = ["Channel", "ChannelRegistry", "OutboxChannel"]
