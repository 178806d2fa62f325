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

# Digits as residents write them: ASCII, full-width (１３８), and Chinese numerals read one by one
# (一三八…, 幺 for 1 as on the phone, 〇/零 for 0); X for an ID's check character. Each is one
# character, so the text read as ASCII digits lines up with the original, position for position.
_AS_DIGIT = str.maketrans({**{chr(0xFF10 + d): str(d) for d in range(10)},
                           **dict(zip("〇零幺一二两三四五六七八九", "0011223456789", strict=True)),
                           "Ｘ": "X", "ｘ": "x"})
# Between two digits, at most one of these: "138 1234 5678", "138-1234-5678", "138.1234.5678",
# "1 3 8 …", full-width and ideographic variants. Not commas: they end a number in a list.
_SEP = r"[ \t\u3000\-－.．·・]?"
_ID_CARD_RE = re.compile(rf"(?<![\dXx])\d(?:{_SEP}\d){{16}}{_SEP}[\dXx](?![\dXx])")
# Also "+86 13812345678" / "008613812345678" (the country code is not masked).
_MOBILE_RE = re.compile(rf"(?:(?<!\d)|(?<=86)|(?<=86[ \-]))1{_SEP}[3-9](?:{_SEP}\d){{9}}(?!{_SEP}\d)")
# How many leading and trailing digits stay readable.
_ID_KEEP, _MOBILE_KEEP = (6, 4), (3, 4)


def mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:] if len(value) >= 7 else "****"


def _masked(text: str, read: str, spans: list[tuple[int, int, tuple[int, int]]]) -> str:
    """`text` with the middle digits of each span starred (`read`: the text as ASCII digits), its
    separators and the digits' own forms elsewhere left as written."""
    chars = list(text)
    for start, end, (head, tail) in spans:
        digits = [i for i in range(start, end) if read[i].isdigit() or read[i] in "Xx"]
        for i in digits[head:len(digits) - tail]:
            chars[i] = "*"
    return "".join(chars)


def _pii_spans(read: str) -> list[tuple[int, int, tuple[int, int]]]:
    """Where `read` (a text as ASCII digits) holds an ID or mobile number, and how much of each stays."""
    spans = [(m.start(), m.end(), _ID_KEEP) for m in _ID_CARD_RE.finditer(read)]
    taken = [(a, b) for a, b, _ in spans]
    spans += [(m.start(), m.end(), _MOBILE_KEEP) for m in _MOBILE_RE.finditer(read)
              if not any(a <= m.start() < b for a, b in taken)]
    return spans


def mask_pii(text: str) -> str:
    """18-digit resident ID numbers keep their first 6 and last 4 characters, mobile numbers
    their first 3 and last 4 — however the digits are written (full-width, spaced, dotted,
    Chinese numerals)."""
    read = text.translate(_AS_DIGIT)
    spans = _pii_spans(read)
    return _masked(text, read, spans) if spans else text


def contains_pii(text: str) -> bool:
    """Whether the text holds an ID or mobile number that `mask_pii` would mask."""
    return bool(_pii_spans(text.translate(_AS_DIGIT)))


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
