"""Form fields: `Choice`, `FormField` and the field-type registry.

A field's ``type`` names a parser in `FIELD_TYPES`; `register_field_type` adds one. Parsers turn
a resident's raw answer into a clean value or raise `FieldError`; they live in field_types.py.

Matching words in answers follows one rule everywhere (choices, corrections): text is folded
(NFKC, case-folded, spaces collapsed); Latin terms match whole words or whole phrases only, so
"now" is not found in "know" nor "car" in "care"; Chinese terms match as substrings, because
Chinese is written without spaces.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from assistant.core.privacy import mask_phone, mask_pii
from connectors.forms.errors import FieldError, MessageParam

FieldValue = str | int | date
FieldParser = Callable[["FormField", str, date], FieldValue]
ParserT = TypeVar("ParserT", bound=FieldParser)

# Type name -> parser. The one registry every form (dispute intake, each procedure) uses.
FIELD_TYPES: dict[str, FieldParser] = {}

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
_SPACES_RE = re.compile(r"\s+")


def register_field_type(name: str) -> Callable[[ParserT], ParserT]:
    """Decorator: ``@register_field_type("cn_mobile")`` makes ``type: cn_mobile`` usable in
    form YAML. One name, one parser: registering a name twice is a programming error."""

    def register(parser: ParserT) -> ParserT:
        if name in FIELD_TYPES:
            raise ValueError(f"field type {name!r} is already registered")
        FIELD_TYPES[name] = parser
        return parser

    return register


def fold(text: str) -> str:
    """The form of a text that matching compares: full-width to half-width, case folded, curly
    apostrophes straightened, runs of spaces made one."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    return _SPACES_RE.sub(" ", folded).strip()


def term_spans(term: str, folded_text: str) -> list[tuple[int, int]]:
    """Where a folded `term` occurs in `folded_text`: whole words or phrases for Latin terms
    (letters may not touch either end), anywhere for Chinese ones."""
    if not term:
        return []
    pattern = rf"(?<![a-z]){re.escape(term)}(?![a-z])" if term.isascii() else re.escape(term)
    return [match.span() for match in re.finditer(pattern, folded_text)]


@dataclass(frozen=True)
class Choice:
    """One option of a choice field; the value stored is `key`."""

    key: str
    zh: str
    en: str
    keywords: tuple[str, ...] = ()

    def label(self, language: str) -> str:
        return self.en if language == "en" else self.zh

    def names(self) -> tuple[str, ...]:
        """Folded key and labels: an answer equal to one of these is this choice."""
        return tuple(fold(t) for t in (self.key, self.zh, self.en))

    def terms(self) -> tuple[str, ...]:
        """Folded names and keywords: what is looked for inside a longer answer."""
        return (*self.names(), *(fold(k) for k in self.keywords))


def _mask_id(value: str) -> str:
    masked = mask_pii(value)
    # mask_pii knows 18-digit numbers only; anything else that reached here is still an ID.
    if masked == value and value:
        return value[:6] + "********" + value[-4:] if len(value) > 10 else "****"
    return masked


# Types whose values are personal data: shown masked in read-backs.
_DISPLAY_MASKS: dict[str, Callable[[str], str]] = {"cn_id": _mask_id, "cn_mobile": mask_phone}


@dataclass(frozen=True)
class FormField:
    """One question of a form. `parse` turns a resident's raw answer into a clean value (str,
    int or date) or raises `FieldError` naming the field."""

    name: str
    type: str
    required: bool
    label: dict[str, str]
    prompt: dict[str, str]
    choices: tuple[Choice, ...] = ()
    min: int | None = None
    max: int | None = None
    min_date: str | None = None
    max_date: str | None = None
    min_length: int = 1
    max_length: int = 500
    # Whether the form's opening message may already answer this field (e.g. the dispute type).
    prefill: bool = False

    def parse(self, raw: str | int | date | None, today: date) -> FieldValue:
        if raw is None or not str(raw).strip():
            raise self.error("required")
        return FIELD_TYPES[self.type](self, str(raw).strip(), today)

    def display(self, value: object, language: str) -> str:
        """The value as the resident should read it back: a choice's label in their language,
        ID and mobile numbers masked, anything else as text."""
        choice = next((c for c in self.choices if c.key == value), None)
        if choice is not None:
            return choice.label(language)
        mask = _DISPLAY_MASKS.get(self.type)
        return mask(str(value)) if mask else str(value)

    def names(self) -> tuple[str, ...]:
        """What a resident may call this field: zh label, en label, name (folded)."""
        return tuple(fold(t) for t in (self.label["zh"], self.label["en"], self.name))

    def missing_error(self) -> FieldError:
        return self.error("missing")

    def error(self, message_id: str, *, needs_worker: bool = False, **params: MessageParam) -> FieldError:
        """A `FieldError` for this field; the field's label fills ``{label}``."""
        return FieldError(self.name, message_id, needs_worker=needs_worker, label=self.label, **params)
