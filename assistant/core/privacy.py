"""Personal data out of logs: resident ID numbers and phone numbers are masked before any
log record is written."""

from __future__ import annotations

import logging
import re

_ID_CARD_RE = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?!\d)")
_MOBILE_RE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:] if len(value) >= 7 else "****"


def mask_pii(text: str) -> str:
    """18-digit resident ID numbers keep their first 6 and last 4 characters, mobile numbers
    their first 3 and last 4."""
    text = _ID_CARD_RE.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return _MOBILE_RE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


class MaskPiiFilter(logging.Filter):
    """Masks the message and each string argument in place, keeping the record's shape (some
    formatters, uvicorn's access log among them, unpack `args`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_pii(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_pii(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: mask_pii(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def install_log_masking() -> None:
    """Mask PII in every record that reaches the root logger's handlers."""
    root = logging.getLogger()
    for handler in root.handlers or []:
        if not any(isinstance(f, MaskPiiFilter) for f in handler.filters):
            handler.addFilter(MaskPiiFilter())
    for name in ("linli", "uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskPiiFilter) for f in logger.filters):
            logger.addFilter(MaskPiiFilter())
