"""Government service procedures as data (connectors/services/procedures/*.yaml).

An administrator edits the YAML; this module turns it into typed fields that check a
resident's answers, and eligibility rules that decide from the answers (never from the wall
clock: ``today`` is always passed in) whether the application can go ahead. Every error carries
a Chinese and an English message that names the field, because the resident reads it. Some
identity numbers that are valid in practice cannot be checked automatically; those give an
error marked ``needs_worker`` so the resident is offered a person instead of a flat "no".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import phonenumbers
import yaml
from stdnum import numdb
from stdnum.cn import ric

from assistant.core.errors import LinliError
from assistant.core.settings import KB_PACKAGE_DIR
from knowledge_base.benefits import BenefitTable
from knowledge_base.loaders import load_file
from knowledge_base.numbers import cn_to_int

FIELD_TYPES = ("name", "cn_id", "cn_mobile", "date", "address", "choice", "number", "text")
DEFAULT_DIR = Path(__file__).resolve().parent / "procedures"
DEFAULT_CORPUS_DIRS: tuple[Path, ...] = (KB_PACKAGE_DIR / "corpus" / "zh", KB_PACKAGE_DIR / "corpus" / "en")

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
# Residence permits for Hong Kong, Macau and Taiwan residents (810000/820000/830000…).
_PERMIT_CODES = frozenset({"81", "82", "83"})
_TRANSFER_ZH = "可以说“转人工”，请工作人员帮您核实和办理。"
_TRANSFER_EN = 'Say "talk to a person" and a worker will check it and help you.'


@dataclass(frozen=True)
class FieldError:
    """One problem with one answer, in both languages. ``needs_worker`` marks answers that may be
    right but that only a person can check, so the dialogue offers a transfer, not a retry."""

    field: str
    message_zh: str
    message_en: str
    needs_worker: bool = False

    def message(self, language: str = "zh") -> str:
        return self.message_en if language == "en" else self.message_zh


class FieldValueError(Exception):
    """Raised by `ProcedureField.parse`; carries the resident-facing `FieldError`."""

    def __init__(self, error: FieldError) -> None:
        super().__init__(error.message_zh)
        self.error = error


class UnknownProcedure(LinliError):
    code = "unknown_procedure"
    http_status = 404


class InvalidProcedureFile(LinliError):
    """A procedure YAML an administrator edited does not follow the schema; raised at load time
    so the mistake shows when the service starts, not when a resident is half-way through."""

    code = "invalid_procedure_file"
    http_status = 500


@dataclass(frozen=True)
class Choice:
    key: str
    zh: str
    en: str
    keywords: tuple[str, ...] = ()

    def exact_terms(self) -> tuple[str, ...]:
        return tuple(_fold(t) for t in (self.key, self.zh, self.en))

    def matches(self, folded: str) -> bool:
        """Whether any of the choice's names or keywords occurs in the answer. Latin terms must
        match whole words so that "other" does not match "mother"."""
        for term in (_fold(t) for t in (self.key, self.zh, self.en, *self.keywords)):
            if not term:
                continue
            if term.isascii():
                if re.search(rf"(?<![a-z]){re.escape(term)}(?![a-z])", folded):
                    return True
            elif term in folded:
                return True
        return False


@dataclass(frozen=True)
class ProcedureField:
    """One question of a procedure. `parse` turns a resident's raw answer into a clean value
    (str, int or date) or raises `FieldValueError`."""

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

    def parse(self, raw: str | int | None, today: date) -> str | int | date:
        if raw is None or not str(raw).strip():
            raise self._error(f"请填写{self.label['zh']}。", f"Please give the {self.label['en']}.")
        return _PARSERS[self.type](self, str(raw).strip(), today)

    def missing_error(self) -> FieldError:
        return FieldError(self.name, f"还没有填写{self.label['zh']}。", f"The {self.label['en']} is missing.")

    def _error(self, zh: str, en: str, *, needs_worker: bool = False) -> FieldValueError:
        return FieldValueError(FieldError(self.name, zh, en, needs_worker))


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _parse_name(f: ProcedureField, raw: str, today: date) -> str:
    label, label_en = f.label["zh"], f.label["en"]
    value = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", raw).translate(_NAME_DOTS)).strip()
    if _HTML_RE.search(value) or "<" in value or ">" in value:
        raise f._error(f"{label}不能包含 < > 这样的符号，请只写名字。", f"The {label_en} cannot contain < or >.")
    if any(ch.isdigit() for ch in value):
        raise f._error(f"{label}不能包含数字。", f"The {label_en} cannot contain digits.")
    if not _NAME_RE.fullmatch(value):
        raise f._error(
            f"{label}只能写汉字或字母，少数民族名字可以用间隔号“·”，不能有引号、分号等符号。",
            f"The {label_en} may contain only Chinese characters or letters (and · between name parts), "
            "no quotes, semicolons or other symbols.",
        )
    if not 2 <= len(value) <= 30:
        raise f._error(f"{label}应该是2到30个字。", f"The {label_en} should be 2 to 30 characters long.")
    return value


def _parse_cn_id(f: ProcedureField, raw: str, today: date) -> str:
    """Length, characters, check digit and birth date are checked with python-stdnum and are
    the resident's mistake to fix. The place code is checked more loosely than stdnum's
    `validate`, which wants the county to have existed in the birth year: cards carry the code
    in use when they were issued, so every Karamay resident born before 1983 would fail. Legacy
    15-digit cards, Hong Kong/Macau/Taiwan residence permits and place codes missing from
    stdnum's table are real numbers in practice (see the id-validator.py vectors): a worker
    checks those."""
    label, label_en = f.label["zh"], f.label["en"]
    number = ric.compact(re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", raw)))
    if len(number) == 15 and number.isdigit():
        if _birth_date(f"19{number[6:12]}") is None:
            raise _birth_date_error(f)
        raise f._error(
            f"这是15位的老{label}，系统没办法自动核对，需要工作人员人工核实。{_TRANSFER_ZH}",
            f"This is an old 15-digit {label_en}; it cannot be checked automatically and a worker "
            f"needs to check it. {_TRANSFER_EN}",
            needs_worker=True,
        )
    if len(number) != 18:
        raise f._error(
            f"{label}应该是18位，您填了{len(number)}位，请核对。",
            f"The {label_en} should have 18 characters; you gave {len(number)}.",
        )
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise f._error(
            f"{label}的前17位应该都是数字，最后一位是数字或字母X，请核对。",
            f"The first 17 characters of the {label_en} must be digits and the last a digit or X.",
        )
    if number[17] != ric.calc_check_digit(number):
        raise f._error(
            f"{label}校验位不对，请核对最后一位。",
            f"The check digit (the last character) of the {label_en} is wrong; please check it.",
        )
    birth = _birth_date(number[6:14])
    if birth is None or birth > today or birth.year < 1900:
        raise _birth_date_error(f)
    if number[:2] in _PERMIT_CODES:
        raise f._error(
            f"这是港澳台居民居住证号码，系统没办法自动核对，需要工作人员人工核实。{_TRANSFER_ZH}",
            "This is a residence permit number for Hong Kong, Macau or Taiwan residents; it cannot "
            f"be checked automatically and a worker needs to check it. {_TRANSFER_EN}",
            needs_worker=True,
        )
    place = {key for _, props in numdb.get("cn/loc").info(number[:6]) for key in props}
    if "province" not in place:
        raise f._error(
            f"{label}的前两位地区代码不对，请核对。",
            f"The first two digits (the region code) of the {label_en} are wrong; please check.",
        )
    if "county" not in place:
        raise f._error(
            f"这个{label}的地区代码系统里查不到（可能是新设立的地区），需要工作人员人工核实。{_TRANSFER_ZH}",
            f"The region code of this {label_en} is not in the system's table (it may be a new "
            f"area); a worker needs to check it. {_TRANSFER_EN}",
            needs_worker=True,
        )
    return number


def _birth_date(yyyymmdd: str) -> date | None:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return None


def _birth_date_error(f: ProcedureField) -> FieldValueError:
    return f._error(
        f"{f.label['zh']}里的出生日期（第7到14位）不是真实的日期，请核对。",
        f"The birth date in the {f.label['en']} (digits 7 to 14) is not a real date; please check.",
    )


def _parse_cn_mobile(f: ProcedureField, raw: str, today: date) -> str:
    label, label_en = f.label["zh"], f.label["en"]
    digits = _PHONE_SEPARATORS_RE.sub("", unicodedata.normalize("NFKC", raw))
    national = re.sub(r"^(?:\+86|0086)", "", digits)
    if not national.isdigit():
        raise f._error(f"{label}只能填数字，请核对。", f"The {label_en} may contain only digits.")
    if len(national) != 11:
        raise f._error(
            f"{label}应该是11位，您填了{len(national)}位，请核对。",
            f"The {label_en} should have 11 digits; you gave {len(national)}.",
        )
    number = phonenumbers.parse(national, "CN")
    if not phonenumbers.is_valid_number(number):
        raise f._error(f"{label}不是有效的号码，请核对。", f"The {label_en} is not a valid number; please check.")
    if phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise f._error(f"{label}要填手机号，不能填座机号码。", f"The {label_en} must be a mobile, not a landline.")
    return str(number.national_number)


def _parse_date(f: ProcedureField, raw: str, today: date) -> date:
    label, label_en = f.label["zh"], f.label["en"]
    text = unicodedata.normalize("NFKC", raw).strip()
    match = next((m for m in (r.fullmatch(text) for r in _DATE_RES) if m), None)
    if match is None:
        raise f._error(
            f"{label}的格式不对，请按“2026年11月30日”这样写。",
            f"Please give the {label_en} like 2026-11-30.",
        )
    year, month, day = (int(g) for g in match.groups())
    try:
        value = date(year, month, day)
    except ValueError:
        raise f._error(
            f"{label}不是真实的日期：{year}年{month}月没有{day}日，请核对。",
            f"The {label_en} is not a real date: {year}-{month:02d} has no day {day}.",
        ) from None
    earliest = _date_bound(f.min_date, today)
    latest = _date_bound(f.max_date, today)
    if earliest and value < earliest:
        raise f._error(f"{label}不能早于{_zh_date(earliest)}。", f"The {label_en} cannot be before {earliest}.")
    if latest and value > latest:
        raise f._error(f"{label}不能晚于{_zh_date(latest)}。", f"The {label_en} cannot be after {latest}.")
    return value


def _date_bound(spec: str | None, today: date) -> date | None:
    """``today``, ``today+N`` / ``today-N`` (days) or an ISO date, as written in the YAML."""
    if spec is None:
        return None
    relative = _DATE_BOUND_RE.fullmatch(spec)
    if relative is None:
        return date.fromisoformat(spec)
    sign, days = relative.groups()
    offset = timedelta(days=int(days or 0))
    return today - offset if sign == "-" else today + offset


def _zh_date(value: date) -> str:
    return f"{value.year}年{value.month}月{value.day}日"


def _parse_address(f: ProcedureField, raw: str, today: date) -> str:
    label, label_en = f.label["zh"], f.label["en"]
    value = re.sub(r"\s+", " ", raw).strip()
    if _HTML_RE.search(value):
        raise f._error(f"{label}里不能有网页代码（< >标签），请只写地址。", f"The {label_en} cannot contain HTML.")
    if not 4 <= len(value) <= 200:
        raise f._error(
            f"{label}应该是4到200个字，请写清楚小区、楼号和门牌号。",
            f"The {label_en} should be 4 to 200 characters long.",
        )
    return value


def _parse_choice(f: ProcedureField, raw: str, today: date) -> str:
    folded = _fold(raw)
    exact = [c for c in f.choices if folded in c.exact_terms()]
    hits = exact or [c for c in f.choices if c.matches(folded)]
    if len(hits) == 1:
        return hits[0].key
    offered = hits or list(f.choices)
    options = "、".join(c.zh for c in offered)
    options_en = ", ".join(c.en for c in offered)
    if hits:
        raise f._error(
            f"您说的{f.label['zh']}可能是{options}，请说是哪一个。",
            f"For the {f.label['en']}, did you mean {options_en}? Please say which one.",
        )
    raise f._error(
        f"{f.label['zh']}没听明白，请从这些里选一个：{options}。",
        f"Sorry, I did not catch the {f.label['en']}. Please choose one of: {options_en}.",
    )


def _parse_number(f: ProcedureField, raw: str, today: date) -> int:
    label, label_en = f.label["zh"], f.label["en"]
    text = unicodedata.normalize("NFKC", raw).strip()
    value = int(text) if re.fullmatch(r"[+-]?\d{1,9}", text) else cn_to_int(text)
    if value is None:
        raise f._error(f"{label}请填一个整数，比如 3。", f"The {label_en} must be a whole number, e.g. 3.")
    if f.min is not None and value < f.min:
        raise f._error(f"{label}不能小于{f.min}。", f"The {label_en} cannot be less than {f.min}.")
    if f.max is not None and value > f.max:
        raise f._error(f"{label}不能大于{f.max}。", f"The {label_en} cannot be more than {f.max}.")
    return value


def _parse_text(f: ProcedureField, raw: str, today: date) -> str:
    label, label_en = f.label["zh"], f.label["en"]
    value = "".join(ch for ch in raw if ch in "\n\t" or unicodedata.category(ch) != "Cc").strip()
    if _HTML_RE.search(value):
        raise f._error(
            f"{label}里不能有网页代码（比如 <script> 这样的标签），请直接用文字说明。",
            f"The {label_en} cannot contain HTML tags such as <script>; please use plain words.",
        )
    if len(value) < f.min_length:
        raise f._error(
            f"{label}请再说详细一点，至少{f.min_length}个字。",
            f"Please give a little more detail for the {label_en} (at least {f.min_length} characters).",
        )
    if len(value) > f.max_length:
        raise f._error(
            f"{label}太长了，请控制在{f.max_length}个字以内。",
            f"The {label_en} is too long; please keep it under {f.max_length} characters.",
        )
    return value


_PARSERS: dict[str, Callable[[ProcedureField, str, date], Any]] = {
    "name": _parse_name,
    "cn_id": _parse_cn_id,
    "cn_mobile": _parse_cn_mobile,
    "date": _parse_date,
    "address": _parse_address,
    "choice": _parse_choice,
    "number": _parse_number,
    "text": _parse_text,
}


# ---- eligibility ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    """The outcome of a procedure's rules. ``eligible`` with ``needs_worker`` means the published
    sources cannot settle it: go ahead, but a worker confirms."""

    eligible: bool
    reason_zh: str
    reason_en: str
    doc_id: str | None = None
    needs_worker: bool = False

    def reason(self, language: str = "zh") -> str:
        return self.reason_en if language == "en" else self.reason_zh


class EligibilityRule(Protocol):
    def evaluate(self, values: Mapping[str, Any], today: date) -> Eligibility | None:
        """An outcome worth reporting, or None when the rule passes with nothing to say."""


def age_on(birth: date, today: date) -> int:
    """Completed years at `today` (a 29 February birthday counts from 1 March)."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _age_from(values: Mapping[str, Any], field_name: str, today: date) -> int:
    if not values.get(field_name):
        raise ValueError(f"check_eligibility needs the validated value of {field_name!r}")
    return age_on(ric.get_birth_date(str(values[field_name])), today)


@dataclass(frozen=True)
class MinAgeRule:
    field: str
    age: int
    doc_id: str | None
    reason: dict[str, str]

    def evaluate(self, values: Mapping[str, Any], today: date) -> Eligibility | None:
        if _age_from(values, self.field, today) >= self.age:
            return None
        return Eligibility(False, self.reason["zh"], self.reason["en"], self.doc_id)


@dataclass(frozen=True)
class BenefitTableRule:
    """Looks the applicant's age up in a benefit table from corpus front matter, parsed by
    knowledge_base.benefits, so the amount a resident is told is the one the answers cite."""

    field: str
    table: str
    table_en: str | None = None
    corpus_dirs: tuple[Path, ...] = DEFAULT_CORPUS_DIRS

    def evaluate(self, values: Mapping[str, Any], today: date) -> Eligibility | None:
        age = _age_from(values, self.field, today)
        zh = find_benefit_table(self.table, self.corpus_dirs)
        en = find_benefit_table(self.table_en, self.corpus_dirs) if self.table_en else None
        if age < zh.minimum_age:
            return Eligibility(
                False,
                f"{zh.title}从{zh.minimum_age}周岁起发放，{age}周岁还不在发放范围内。",
                f"{en.title if en else 'The allowance'} starts at age {zh.minimum_age}; age {age} is not covered yet.",
                zh.doc_id,
            )
        bracket = zh.lookup(age)
        if bracket is None:
            note_en = en.missing_note if en and en.missing_note else (
                f"The published table gives no rate for age {age}; a worker will check."
            )
            return Eligibility(True, zh.missing_note or f"公开资料没有{age}周岁的发放标准，需要工作人员核实。",
                               note_en, zh.doc_id, needs_worker=True)
        return Eligibility(
            True,
            f"{age}周岁，{zh.title}为{bracket.amount:g}{zh.unit}。",
            f"Age {age}: {en.title if en else zh.title} is {bracket.amount:g} {en.unit if en else zh.unit}.",
            zh.doc_id,
        )


def find_benefit_table(table_id: str, corpus_dirs: Sequence[Path] = DEFAULT_CORPUS_DIRS) -> BenefitTable:
    signature = _file_signature(
        p
        for d in corpus_dirs
        for p in Path(d).rglob("*")
        if p.suffix.lower() in (".md", ".markdown", ".txt") and p.name != "README.md"
    )
    table = _benefit_tables(signature).get(table_id)
    if table is None:
        raise InvalidProcedureFile(
            f"办事项目引用的津贴标准表 {table_id} 在知识库里找不到",
            f"benefit table {table_id!r} is not declared in any corpus document's front matter",
        )
    return table


@lru_cache(maxsize=4)
def _benefit_tables(signature: tuple[tuple[str, int], ...]) -> dict[str, BenefitTable]:
    return {
        table.table_id: table
        for path, _ in signature
        for table in BenefitTable.from_meta(load_file(Path(path)).meta)
    }


# ---- procedures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Procedure:
    id: str
    title: dict[str, str]
    doc_id: str
    materials: dict[str, list[str]]
    eligibility: tuple[EligibilityRule, ...]
    fields: tuple[ProcedureField, ...]
    description: dict[str, str]

    def validate(self, data: Mapping[str, Any], today: date) -> tuple[dict[str, Any], list[FieldError]]:
        """Every field checked at once so the resident hears all problems together; returns the
        cleaned values of the answers that passed and the errors of those that did not."""
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
            except FieldValueError as exc:
                errors.append(exc.error)
        known = {f.name for f in self.fields}
        errors.extend(
            FieldError(
                str(key), f"“{self.title['zh']}”没有“{key}”这一项。", f"{self.title['en']} has no field {key!r}."
            )
            for key in data
            if key not in known
        )
        return cleaned, errors

    def check_eligibility(self, values: Mapping[str, Any], today: date) -> Eligibility:
        """Rules in file order. Any refusal wins; otherwise the first outcome that needs a
        worker; otherwise the first informative outcome (e.g. the monthly amount)."""
        outcomes = [o for o in (rule.evaluate(values, today) for rule in self.eligibility) if o is not None]
        for wanted in (lambda o: not o.eligible, lambda o: o.needs_worker, lambda o: True):
            found = next((o for o in outcomes if wanted(o)), None)
            if found is not None:
                return found
        return Eligibility(True, "符合办理条件。", "You meet the conditions.")

    def describe(self) -> dict[str, Any]:
        fields = []
        for spec in self.fields:
            entry: dict[str, Any] = {"name": spec.name, "type": spec.type, "required": spec.required}
            if spec.type == "choice":
                entry["choices"] = [c.key for c in spec.choices]
            fields.append(entry)
        return {"id": self.id, "title": dict(self.title), "fields": fields}


def load_procedures(
    directory: Path = DEFAULT_DIR, *, corpus_dirs: Sequence[Path] = DEFAULT_CORPUS_DIRS
) -> dict[str, Procedure]:
    """Every ``*.yaml`` in `directory`, by id. Parsed again only when a file changes, so an
    administrator's edit takes effect without a restart and a dialogue turn costs no parsing."""
    signature = _file_signature(Path(directory).glob("*.yaml"))
    return dict(_procedures(signature, tuple(Path(d) for d in corpus_dirs)))


@lru_cache(maxsize=8)
def _procedures(signature: tuple[tuple[str, int], ...], corpus_dirs: tuple[Path, ...]) -> dict[str, Procedure]:
    procedures: dict[str, Procedure] = {}
    for path, _ in signature:
        procedure = _procedure_from_file(Path(path), corpus_dirs)
        if procedure.id in procedures:
            raise InvalidProcedureFile(f"办事项目编号重复：{procedure.id}", f"duplicate procedure id {procedure.id!r}")
        procedures[procedure.id] = procedure
    return procedures


def _file_signature(paths: Iterable[Path]) -> tuple[tuple[str, int], ...]:
    """Paths with modification times: the cache key that makes an edited file be read again."""
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in paths))


def get_procedure(procedure_id: str, directory: Path = DEFAULT_DIR) -> Procedure:
    procedures = load_procedures(directory)
    if procedure_id not in procedures:
        available = "、".join(procedures)
        raise UnknownProcedure(
            f"没有这个办事项目：{procedure_id}（可以办理的有：{available}）",
            f"unknown procedure {procedure_id!r}; available: {', '.join(procedures)}",
            available=list(procedures),
        )
    return procedures[procedure_id]


# ---- loading the YAML -------------------------------------------------------------------------

_PROCEDURE_KEYS = {"id", "title", "description", "doc_id", "materials", "eligibility", "fields"}
_FIELD_KEYS = {
    "name", "type", "required", "label", "prompt", "choices",
    "min", "max", "min_date", "max_date", "min_length", "max_length",
}
_RULE_KEYS = {
    "min_age": {"type", "field", "age", "doc_id", "reason"},
    "benefit_table": {"type", "field", "table", "table_en"},
}


class _Reader:
    """Schema checks that name the file and the place of the mistake, in both languages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem_zh: str, problem_en: str) -> InvalidProcedureFile:
        return InvalidProcedureFile(
            f"办事项目文件 {self.path.name} 的 {where}：{problem_zh}", f"{self.path.name}: {where}: {problem_en}"
        )

    def mapping(self, value: Any, where: str, allowed: Iterable[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "应该是键值对", "must be a mapping")
        if allowed is not None and (extra := set(value) - set(allowed)):
            raise self.fail(where, f"有不认识的键 {sorted(extra)}", f"unknown keys {sorted(extra)}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str | int) or not str(value).strip():
            raise self.fail(where, "应该是非空文字", "must be non-empty text")
        return str(value).strip()

    def text_list(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(where, "应该是列表", "must be a list")
        return [self.text(item, where) for item in value]

    def bilingual(self, value: Any, where: str) -> dict[str, str]:
        data = self.mapping(value, where, {"zh", "en"})
        return {lang: self.text(data.get(lang), f"{where}.{lang}") for lang in ("zh", "en")}

    def optional_int(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, "应该是整数", "must be an integer")
        return value


def _procedure_from_file(path: Path, corpus_dirs: tuple[Path, ...]) -> Procedure:
    reader = _Reader(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"第{mark.line + 1}行" if mark else "YAML"
        raise reader.fail(line, "格式错误，无法读取（含冒号、问号的文字请加引号或分行写）",
                          f"malformed YAML ({exc.__class__.__name__})") from exc
    data = reader.mapping(raw, "顶层", _PROCEDURE_KEYS)
    missing = sorted(_PROCEDURE_KEYS - {"eligibility"} - set(data))
    if missing:
        raise reader.fail("顶层", f"缺少 {missing}", f"missing {missing}")
    materials = reader.mapping(data["materials"], "materials", {"zh", "en"})
    fields = tuple(_field_from(reader, spec, f"fields[{i}]") for i, spec in enumerate(data["fields"] or []))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise reader.fail("fields", "字段名重复", "duplicate field names")
    by_name = {f.name: f for f in fields}
    rules = tuple(
        _rule_from(reader, spec, f"eligibility[{i}]", by_name, corpus_dirs)
        for i, spec in enumerate(data.get("eligibility") or [])
    )
    return Procedure(
        id=reader.text(data["id"], "id"),
        title=reader.bilingual(data["title"], "title"),
        doc_id=reader.text(data["doc_id"], "doc_id"),
        materials={lang: reader.text_list(materials.get(lang), f"materials.{lang}") for lang in ("zh", "en")},
        eligibility=rules,
        fields=fields,
        description=reader.bilingual(data["description"], "description"),
    )


def _field_from(reader: _Reader, spec: Any, where: str) -> ProcedureField:
    data = reader.mapping(spec, where, _FIELD_KEYS)
    name = reader.text(data.get("name"), f"{where}.name")
    where = f"{where}（{name}）"
    kind = data.get("type")
    if kind not in FIELD_TYPES:
        raise reader.fail(where, f"类型 {kind!r} 不在 {FIELD_TYPES} 之内", f"type {kind!r} is not one of {FIELD_TYPES}")
    if not isinstance(data.get("required"), bool):
        raise reader.fail(where, "required 应该是 true 或 false", "required must be true or false")
    choices = []
    for key, raw_choice in reader.mapping(data.get("choices") or {}, f"{where}.choices").items():
        spec_where = f"{where}.choices.{key}"
        choice = reader.mapping(raw_choice, spec_where, {"zh", "en", "keywords"})
        choices.append(
            Choice(
                key=str(key),
                zh=reader.text(choice.get("zh"), f"{spec_where}.zh"),
                en=reader.text(choice.get("en"), f"{spec_where}.en"),
                keywords=tuple(reader.text_list(choice.get("keywords") or [], f"{spec_where}.keywords")),
            )
        )
    if (kind == "choice") != bool(choices):
        raise reader.fail(
            where, "choice 类型必须有 choices，其他类型不能有", "choices are required for, and only for, choice fields"
        )
    for bound in ("min_date", "max_date"):
        if data.get(bound) is not None:
            try:
                _date_bound(str(data[bound]), date.today())
            except ValueError:
                raise reader.fail(where, f"{bound} 应该是 today、today+N 或 YYYY-MM-DD",
                                  f"{bound} must be today, today+N, today-N or YYYY-MM-DD") from None
    return ProcedureField(
        name=name,
        type=kind,
        required=data["required"],
        label=reader.bilingual(data.get("label"), f"{where}.label"),
        prompt=reader.bilingual(data.get("prompt"), f"{where}.prompt"),
        choices=tuple(choices),
        min=reader.optional_int(data.get("min"), f"{where}.min"),
        max=reader.optional_int(data.get("max"), f"{where}.max"),
        min_date=str(data["min_date"]) if data.get("min_date") is not None else None,
        max_date=str(data["max_date"]) if data.get("max_date") is not None else None,
        min_length=reader.optional_int(data.get("min_length"), f"{where}.min_length") or 1,
        max_length=reader.optional_int(data.get("max_length"), f"{where}.max_length") or 500,
    )


def _rule_from(
    reader: _Reader, spec: Any, where: str, fields: Mapping[str, ProcedureField], corpus_dirs: tuple[Path, ...]
) -> EligibilityRule:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in _RULE_KEYS:
        raise reader.fail(where, f"规则类型 {kind!r} 不支持（可用：{sorted(_RULE_KEYS)}）",
                          f"rule type {kind!r} is not one of {sorted(_RULE_KEYS)}")
    data = reader.mapping(spec, where, _RULE_KEYS[kind])
    target = fields.get(str(data.get("field")))
    if target is None or target.type != "cn_id" or not target.required:
        raise reader.fail(where, "field 必须是本项目里必填的身份证号字段", "field must name a required cn_id field")
    if kind == "min_age":
        age = reader.optional_int(data.get("age"), f"{where}.age")
        if age is None:
            raise reader.fail(where, "缺少 age", "age is missing")
        return MinAgeRule(
            field=target.name,
            age=age,
            doc_id=reader.text(data["doc_id"], f"{where}.doc_id") if data.get("doc_id") else None,
            reason=reader.bilingual(data.get("reason"), f"{where}.reason"),
        )
    return BenefitTableRule(
        field=target.name,
        table=reader.text(data.get("table"), f"{where}.table"),
        table_en=reader.text(data["table_en"], f"{where}.table_en") if data.get("table_en") else None,
        corpus_dirs=corpus_dirs,
    )
