"""HTTP-level protections installed on the app (placeholder; filled by the security work)."""

from __future__ import annotations

from fastapi import FastAPI


def install_security(app: FastAPI) -> None:
    """Adds the middleware. Settings are read per request from `request.app.state.services.settings`."""
