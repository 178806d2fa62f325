"""The field types every form can use: name, cn_id, cn_mobile, date, address, choice, number,
text. Each parser takes the field, the resident's raw answer and the day of the check (never the
wall clock) and returns a clean value or raises the field's `FieldError`.

Importing this module registers the types (connectors.forms does it), so a form file naming an
unknown type is refused when it is read.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta

import phonenumbers
from stdnum import numdb
from stdnum.cn import ric

from connectors.forms.fields import Choice, FormField, fold, register_field_type, term_spans
from knowledge_base.numbers import cn_to_int

# `<script`, `</b`, `<!--`, `<img …`: markup, not something a resident types into a form.
_HTML_RE = re.compile(r"<\s*[/!?]?\s*[A-Za-z]")
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# Han or Latin words joined by single spaces or the middle dot of minority and foreign names.
_NAME_RE = re.compile(rf"[{_CJK}A-Za-z]+(?:[· ][{_CJK}A-Za-z]+)*")
_NAME_DOTS = str.maketrans({"・": "·", "•": "·", "‧": "·", "∙": "·", "⋅": "·"})
_DATE_RES = (
    re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?"),
    re.compile(r"(\d{4})(\d{2})(\d{2})"),
)
_DATE_BOUND_RE = re.compile(r"today\s*(?:([+-])\s*(\d+))?")
_PHONE_SEPARATORS_RE = re.compile(r"[\s\-()（）]")
_PHONE_COUNTRY_RE = re.compile(r"^(?:\+86|0086)")
_DIGIT_RUN_RE = re.compile(r"(?:\+86|0086)?\d+")
# Fewer digits than this in a sentence are a building or flat number, not a phone number.
_PHONE_MIN_DIGITS = 7
# Residence permits for Hong Kong, Macau and Taiwan residents (810000/820000/830000…).
_PERMIT_CODES = frozenset({"81", "82", "83"})
_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


@register_field_type("name")
def parse_name(field: FormField, raw: str, today: date) -> str:
    value = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", raw).translate(_NAME_DOTS)).strip()
    if _HTML_RE.search(value) or "<" in value or ">" in value:
        raise field.error("name_markup")
    if any(ch.isdigit() for ch in value):
        raise field.error("name_digits")
    if not _NAME_RE.fullmatch(value):
        raise field.error("name_characters")
    if not 2 <= len(value) <= 30:
        raise field.error("name_length")
    return value


@register_field_type("cn_id")
def parse_cn_id(field: FormField, raw: str, today: date) -> str:
    """Length, characters, check digit and birth date are checked with python-stdnum and are
    the resident's mistake to fix. The place code is checked more loosely than stdnum's
    `validate`, which wants the county to have existed in the birth year: cards carry the code
    in use when they were issued, so every Karamay resident born before 1983 would fail. Legacy
    15-digit cards, Hong Kong/Macau/Taiwan residence permits and place codes missing from
    stdnum's table are real numbers in practice (see the id-validator.py vectors): a worker
    checks those."""
    number = ric.compact(re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", raw)))
    if len(number) == 15 and number.isdigit():
        if _birth_date(f"19{number[6:12]}") is None:
            raise field.error("cn_id_birth_date")
        raise field.error("cn_id_legacy", needs_worker=True)
    if len(number) != 18:
        raise field.error("cn_id_length", count=len(number))
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise field.error("cn_id_characters")
    if number[17] != ric.calc_check_digit(number):
        raise field.error("cn_id_check_digit")
    birth = _birth_date(number[6:14])
    if birth is None or birth > today or birth.year < 1900:
        raise field.error("cn_id_birth_date")
    if number[:2] in _PERMIT_CODES:
        raise field.error("cn_id_permit", needs_worker=True)
    place = {key for _, props in numdb.get("cn/loc").info(number[:6]) for key in props}
    if "province" not in place:
        raise field.error("cn_id_region")
    if "county" not in place:
        raise field.error("cn_id_unknown_region", needs_worker=True)
    return number


def _birth_date(yyyymmdd: str) -> date | None:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return None


@register_field_type("cn_mobile")
def parse_cn_mobile(field: FormField, raw: str, today: date) -> str:
    """An 11-digit mainland mobile number, typed alone ("+86 138-1234-5678") or said inside a
    short sentence ("我的电话是138 1234 5678"). In a sentence the one run of at least seven
    digits is the number, so "3号楼" beside it does not count; two such runs are two numbers."""
    compact = _PHONE_SEPARATORS_RE.sub("", unicodedata.normalize("NFKC", raw))
    national = _PHONE_COUNTRY_RE.sub("", compact)
    if not national.isdigit():
        runs = _DIGIT_RUN_RE.findall(compact)
        long_runs = [r for r in runs if len(_PHONE_COUNTRY_RE.sub("", r)) >= _PHONE_MIN_DIGITS]
        if len(long_runs) > 1:
            raise field.error("mobile_several")
        candidates = long_runs or runs
        if len(candidates) != 1:
            raise field.error("mobile_digits")
        national = _PHONE_COUNTRY_RE.sub("", candidates[0])
    if len(national) != 11:
        raise field.error("mobile_length", count=len(national))
    number = phonenumbers.parse(national, "CN")
    if not phonenumbers.is_valid_number(number):
        raise field.error("mobile_invalid")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise field.error("mobile_landline")
    return str(number.national_number)


@register_field_type("date")
def parse_date(field: FormField, raw: str, today: date) -> date:
    text = unicodedata.normalize("NFKC", raw).strip()
    match = next((m for m in (r.fullmatch(text) for r in _DATE_RES) if m), None)
    if match is None:
        raise field.error("date_format")
    year, month, day = (int(g) for g in match.groups())
    try:
        value = date(year, month, day)
    except ValueError:
        raise field.error("date_not_real", year=year, month=month, day=day) from None
    earliest = date_bound(field.min_date, today)
    latest = date_bound(field.max_date, today)
    if earliest and value < earliest:
        raise field.error("date_too_early", earliest=_bilingual_date(earliest))
    if latest and value > latest:
        raise field.error("date_too_late", latest=_bilingual_date(latest))
    return value


def date_bound(spec: str | None, today: date) -> date | None:
    """``today``, ``today+N`` / ``today-N`` (days) or an ISO date, as written in the YAML;
    raises ValueError for anything else."""
    if spec is None:
        return None
    relative = _DATE_BOUND_RE.fullmatch(spec)
    if relative is None:
        return date.fromisoformat(spec)
    sign, days = relative.groups()
    offset = timedelta(days=int(days or 0))
    return today - offset if sign == "-" else today + offset


def _bilingual_date(value: date) -> dict[str, str]:
    return {"zh": f"{value.year}年{value.month}月{value.day}日", "en": value.isoformat()}


@register_field_type("address")
def parse_address(field: FormField, raw: str, today: date) -> str:
    value = re.sub(r"\s+", " ", raw).strip()
    if _HTML_RE.search(value):
        raise field.error("address_markup")
    if not 4 <= len(value) <= 200:
        raise field.error("address_length")
    return value


@register_field_type("choice")
def parse_choice(field: FormField, raw: str, today: date) -> str:
    """An answer equal to a choice's key or label is that choice. Otherwise every choice whose
    names or keywords occur in the answer is a candidate, except where its term lies inside a
    longer term of another choice: "不急" (normal) wins over the "急" (urgent) inside it, and
    "not urgent" over "urgent". One candidate is the answer; several, the resident is asked
    which; none, the options are listed."""
    folded = fold(raw)
    exact = [c for c in field.choices if folded in c.names()]
    hits = exact or _choices_mentioned(field.choices, folded)
    if len(hits) == 1:
        return hits[0].key
    offered = hits or list(field.choices)
    options = {"zh": "、".join(c.zh for c in offered), "en": ", ".join(c.en for c in offered)}
    raise field.error("choice_ambiguous" if hits else "choice_unknown", options=options)


def _choices_mentioned(choices: tuple[Choice, ...], folded: str) -> list[Choice]:
    found = [(choice, span) for choice in choices for term in choice.terms() for span in term_spans(term, folded)]

    def inside_longer_term_of_another(choice: Choice, span: tuple[int, int]) -> bool:
        start, end = span
        return any(
            other is not choice and o_start <= start and end <= o_end and o_end - o_start > end - start
            for other, (o_start, o_end) in found
        )

    standing = {choice.key for choice, span in found if not inside_longer_term_of_another(choice, span)}
    return [c for c in choices if c.key in standing]


@register_field_type("number")
def parse_number(field: FormField, raw: str, today: date) -> int:
    text = unicodedata.normalize("NFKC", raw).strip()
    value = int(text) if re.fullmatch(r"[+-]?\d{1,9}", text) else cn_to_int(text)
    if value is None:
        raise field.error("number_not_integer")
    if field.min is not None and value < field.min:
        raise field.error("number_too_small", min=field.min)
    if field.max is not None and value > field.max:
        raise field.error("number_too_large", max=field.max)
    return value


@register_field_type("text")
def parse_text(field: FormField, raw: str, today: date) -> str:
    value = "".join(ch for ch in raw if ch in "\n\t" or unicodedata.category(ch) != "Cc").strip()
    if _HTML_RE.search(value):
        raise field.error("text_markup")
    if len(value) < field.min_length:
        raise field.error("text_too_short", min_length=field.min_length)
    if len(value) > field.max_length:
        raise field.error("text_too_long", max_length=field.max_length)
    return value

