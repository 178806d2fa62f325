"""`FormSpec`: a whole form (the dispute intake, each procedure's questions). It answers what a
dialogue needs to run the form — which question comes next, which field a correction names, what
the opening message already answered, the read-back — and validates a whole submission at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from connectors.forms.errors import FieldError
from connectors.forms.fields import FormField, fold, term_spans

_SUMMARY_SEPARATORS = {"zh": "：", "en": ": "}


@dataclass(frozen=True)
class FormSpec:
    id: str
    title: dict[str, str]
    fields: tuple[FormField, ...]
    # The "registered" sentence (dispute intake), placeholders such as {ticket_id} left for the caller.
    done: dict[str, str] | None = None

    def field(self, name: str) -> FormField:
        found = next((f for f in self.fields if f.name == name), None)
        if found is None:
            raise KeyError(f"form {self.id!r} has no field {name!r}")
        return found

    def next_missing(self, values: Mapping[str, Any]) -> FormField | None:
        """The first required field without an answer, or None when the form is complete."""
        return next((f for f in self.fields if f.required and f.name not in values), None)

    def find_field(self, text: str) -> FormField | None:
        """The field a correction names ("改电话13812345678", "change phone …"), by its zh
        label, en label or name. When several are named the longest name wins, then the
        earliest, so "手机号码" is not taken for a field labelled "号码"."""
        folded = fold(text)
        best: tuple[int, int] | None = None
        found: FormField | None = None
        for spec in self.fields:
            for term in spec.names():
                for start, end in term_spans(term, folded):
                    rank = (end - start, -start)
                    if best is None or rank > best:
                        best, found = rank, spec
        return found

    def prefill(self, text: str, today: date) -> dict[str, Any]:
        """Values the opening message already gives, for fields marked ``prefill: true``. An
        answer the field cannot read unambiguously gives nothing: the question is asked."""
        values: dict[str, Any] = {}
        for spec in self.fields:
            if not spec.prefill:
                continue
            try:
                values[spec.name] = spec.parse(text, today)
            except FieldError:
                continue
        return values

    def summary(self, values: Mapping[str, Any], language: str) -> str:
        """One "label：value" line per answered field, in form order, personal numbers masked."""
        lang = "en" if language == "en" else "zh"
        separator = _SUMMARY_SEPARATORS[lang]
        return "\n".join(
            f"{f.label[lang]}{separator}{f.display(values[f.name], lang)}" for f in self.fields if f.name in values
        )

    def validate(self, data: Mapping[str, Any], today: date) -> tuple[dict[str, Any], list[FieldError]]:
        """Every field checked at once so the resident hears all problems together; returns the
        cleaned values of the answers that passed and the errors of those that did not (unknown
        keys included)."""
        cleaned: dict[str, Any] = {}
        errors: list[FieldError] = []
        for spec in self.fields:
            raw = data.get(spec.name)
            if raw is None or not str(raw).strip():
                if spec.required:
                    errors.append(spec.missing_error())
                continue
            try:
                cleaned[spec.name] = spec.parse(raw, today)
            except FieldError as exc:
                errors.append(exc)
        known = {f.name for f in self.fields}
        errors.extend(
            FieldError(str(key), "unknown_field", form=self.title, key=str(key)) for key in data if key not in known
        )
        return cleaned, errors
