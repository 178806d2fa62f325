"""`/wechat/callback` (placeholder; filled by the WeChat channel work)."""

from __future__ import annotations

from fastapi import APIRouter

wechat = APIRouter(include_in_schema=False)
