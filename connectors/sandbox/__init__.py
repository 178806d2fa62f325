"""A stand-in government service backend for development and tests; never used in production.

It accepts applications the way a real 政务 system would (idempotency keys, its own validation,
status that moves on by itself) and can be told to fail, so the service connectors can be
exercised end to end without a real government system."""

from connectors.sandbox.app import SandboxSettings, create_sandbox_app

__all__ = ["SandboxSettings", "create_sandbox_app"]
