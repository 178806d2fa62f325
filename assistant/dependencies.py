"""FastAPI dependencies (full-stack-fastapi-template's `deps.py`): routes reach the services the
lifespan built through `ServicesDep`, never through module globals."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from assistant.services import Services


def get_services(request: Request) -> Services:
    """The `Services` built once at start-up (assistant/api.py's lifespan)."""
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(get_services)]
