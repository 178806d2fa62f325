"""Residents' credentials: server-minted session tokens for the pages, integration API keys, and
the binding of each conversation to the resident (and channel and centre) it belongs to."""
