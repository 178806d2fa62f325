"""Linli core: settings, shared domain types, service wiring, CLI and HTTP API."""
