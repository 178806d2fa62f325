"""Personal data out of logs and off disk: resident ID numbers and phone numbers are masked
before any log record is written and before text is stored (turns, ticket summaries and events);
files holding residents' data are readable by their owner only."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_ID_CARD_RE = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?!\d)")
# Also "138 1234 5678", "138-1234-5678" and "+86 13812345678" / "008613812345678".
_MOBILE_RE = re.compile(r"(?:(?<!\d)|(?<=86))(1[3-9]\d)[ \t-]?\d{4}[ \t-]?(\d{4})(?!\d)")


def mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:] if len(value) >= 7 else "****"


def mask_pii(text: str) -> str:
    """18-digit resident ID numbers keep their first 6 and last 4 characters, mobile numbers
    their first 3 and last 4."""
    text = _ID_CARD_RE.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return _MOBILE_RE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def contains_pii(text: str) -> bool:
    """Whether the text holds an ID or mobile number that `mask_pii` would mask."""
    return bool(_ID_CARD_RE.search(text) or _MOBILE_RE.search(text))


def mask_secret(value: str) -> str:
    """A value known to be an ID or phone number (a form's cn_id / cn_mobile field), masked even
    when it has no standard shape (a 15-digit legacy card): first 3 and last 4 characters."""
    masked = mask_pii(value)
    if masked != value:
        return masked
    return value[:3] + "*" * (len(value) - 7) + value[-4:] if len(value) >= 11 else "****"


def mask_data(value: Any) -> Any:
    """Every string inside a JSON-like value (form data, a trace) masked with `mask_pii`."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, Mapping):
        return {k: mask_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_data(v) for v in value]
    return value


# ---- files --------------------------------------------------------------------------------------

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path) -> Path:
    """Create the directory (and missing parents) readable by its owner only; an existing one
    is left as it is (it may be shared: /tmp, a mounted volume)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create the file empty if missing, and make it (whether new or not) mode 600."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    os.chmod(path, PRIVATE_FILE)
    return path


def restrict_tree(path: Path) -> None:
    """Every file under `path` mode 600 and every directory 700 (an index just written)."""
    os.chmod(path, PRIVATE_DIR if path.is_dir() else PRIVATE_FILE)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), PRIVATE_DIR)
        for name in files:
            os.chmod(os.path.join(root, name), PRIVATE_FILE)


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
