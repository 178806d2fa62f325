"""The form engine's errors: `FieldError` (one answer a resident has to fix, worded from
messages.yaml) and `InvalidFormFile` (a form YAML an administrator edited does not follow the
schema).

The resident-facing sentences are data (messages.yaml), read once when this module is imported
and checked there, so a typo in a placeholder shows when Linli starts, not in front of a resident.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from assistant.core.errors import LinliError
from assistant.core.wording import Wording

MESSAGES_PATH = Path(__file__).resolve().parent / "messages.yaml"

# A placeholder's value: one text for both languages, or one per language ({"zh": …, "en": …}).
MessageParam = str | int | Mapping[str, str]


class InvalidFormFile(LinliError):
    """A form YAML does not follow the schema; raised at load time so the mistake shows when the
    service starts, not when a resident is half-way through."""

    code = "invalid_form_file"
    http_status = 500


def load_messages(path: Path) -> dict[str, dict[str, str]]:
    """Message id -> {"zh": template, "en": template}, checked by the one wording check."""
    return Wording.load(path, error=InvalidFormFile).sentences


MESSAGES = load_messages(MESSAGES_PATH)


class FieldError(Exception):
    """One problem with one answer, worded for the resident in zh or en. ``needs_worker`` marks
    answers that may be right but that only a person can check (a 15-digit legacy ID), so the
    dialogue offers a transfer, not a retry.

    The error keeps the message id and its values rather than finished sentences, so the same
    error can be shown in either language."""

    def __init__(self, field: str, message_id: str, *, needs_worker: bool = False, **params: MessageParam) -> None:
        if message_id not in MESSAGES:
            raise KeyError(f"no message {message_id!r} in {MESSAGES_PATH.name}")
        self.field = field
        self.message_id = message_id
        self.needs_worker = needs_worker
        self.params = params
        super().__init__(self.message("zh"))

    def message(self, language: str = "zh") -> str:
        lang = "en" if language == "en" else "zh"
        values = {name: value[lang] if isinstance(value, Mapping) else value for name, value in self.params.items()}
        return MESSAGES[self.message_id][lang].format(**values)

    def __repr__(self) -> str:
        return f"FieldError({self.field!r}, {self.message_id!r}, needs_worker={self.needs_worker})"
