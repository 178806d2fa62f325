"""ID and phone numbers encrypted or masked at rest

Revision ID: 0008
Revises: 0007

Rows written before this held residents' ID and phone numbers in the clear. Now:
- `turns.text`, `tickets.summary`, `tickets.contact`, `tickets.outcome`, `ticket_events.text`,
  `applications.last_error` and `application_events.detail` hold them masked (650202********0036,
  138****5678): masking cannot be undone, and the full value is kept encrypted in the form data;
- in `applications.data`, `tickets.form_data` and the form answers in `conversations.state`, every
  string holding one is encrypted ("enc:v1:" + a Fernet token) with the key from settings
  (LINLI_PRIVACY__DATA_KEY, or the built-in development key).

The patterns, the prefix and the development key are written out here, not imported, so that this
migration still means the same thing when assistant/core/privacy.py and vault.py change.
Downgrade decrypts what was encrypted; masked text stays masked.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, MultiFernet

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PREFIX = "enc:v1:"
DEVELOPMENT_KEY = "bGlubGktZGV2ZWxvcG1lbnQta2V5LW5vdC1zZWNyZXQ="
ID_CARD_RE = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?!\d)")
MOBILE_RE = re.compile(r"(?:(?<!\d)|(?<=86))(1[3-9]\d)[ \t-]?\d{4}[ \t-]?(\d{4})(?!\d)")

MASKED_TEXT = {  # table -> (key column, text columns)
    "turns": ("id", ("text",)),
    "tickets": ("ticket_id", ("summary", "contact", "outcome")),
    "ticket_events": ("id", ("text",)),
    "applications": ("application_id", ("last_error",)),
    "application_events": ("id", ("detail",)),
}
ENCRYPTED_JSON = {  # table -> (key column, JSON column)
    "applications": ("application_id", "data"),
    "tickets": ("ticket_id", "form_data"),
    "conversations": ("session_id", "state"),
}


def mask(text: str) -> str:
    text = ID_CARD_RE.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return MOBILE_RE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def _fernet() -> MultiFernet:
    from assistant.core.settings import get_settings  # noqa: PLC0415 - the deployment's key, read when run

    privacy = get_settings().privacy
    primary = privacy.data_key.get_secret_value() if privacy.data_key else ""
    keys = [primary or DEVELOPMENT_KEY, *(k.get_secret_value() for k in privacy.previous_keys)]
    return MultiFernet([Fernet(k.encode("ascii")) for k in keys if k])


def seal(value: Any, fernet: MultiFernet) -> Any:
    if isinstance(value, str):
        if value.startswith(PREFIX) or not (ID_CARD_RE.search(value) or MOBILE_RE.search(value)):
            return value
        return PREFIX + fernet.encrypt(value.encode("utf-8")).decode("ascii")
    if isinstance(value, dict):
        return {k: seal(v, fernet) for k, v in value.items()}
    if isinstance(value, list):
        return [seal(v, fernet) for v in value]
    return value


def unseal(value: Any, fernet: MultiFernet) -> Any:
    if isinstance(value, str):
        if not value.startswith(PREFIX):
            return value
        return fernet.decrypt(value[len(PREFIX):].encode("ascii")).decode("utf-8")
    if isinstance(value, dict):
        return {k: unseal(v, fernet) for k, v in value.items()}
    if isinstance(value, list):
        return [unseal(v, fernet) for v in value]
    return value


def _convert_json(convert: Any) -> None:
    bind = op.get_bind()
    for name, (key, column) in ENCRYPTED_JSON.items():
        table = sa.table(name, sa.column(key), sa.column(column, sa.JSON))
        for row_key, value in bind.execute(sa.select(table.c[key], table.c[column])).all():
            converted = convert(value)
            if converted != value:
                bind.execute(table.update().where(table.c[key] == row_key).values({column: converted}))


def upgrade() -> None:
    bind = op.get_bind()
    for name, (key, columns) in MASKED_TEXT.items():
        table = sa.table(name, sa.column(key), *(sa.column(c, sa.Text) for c in columns))
        for row in bind.execute(sa.select(table.c[key], *(table.c[c] for c in columns))).all():
            changed = {c: mask(row._mapping[c]) for c in columns
                       if isinstance(row._mapping[c], str) and mask(row._mapping[c]) != row._mapping[c]}
            if changed:
                bind.execute(table.update().where(table.c[key] == row._mapping[key]).values(changed))
    fernet = _fernet()
    _convert_json(lambda value: seal(value, fernet))


def downgrade() -> None:
    fernet = _fernet()
    _convert_json(lambda value: unseal(value, fernet))
