"""Government service procedures as data (connectors/services/procedures/*.yaml).

An administrator edits the YAML; the questions are a form on the one form engine
(connectors.forms: field types, bilingual errors, strict reading), and this module adds what
only procedures have: the document that explains them, the materials to bring, and eligibility
rules that decide from the answers (never from the wall clock: ``today`` is always passed in)
whether the application can go ahead. Benefit amounts come from the tables the knowledge base
indexed (`BenefitTables`), the same ones grounded answers cite.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from stdnum.cn import ric

from assistant.core.errors import LinliError
from connectors.forms import FIELD_TYPES, FieldError, FormField, FormSpec, InvalidFormFile, SchemaReader, read_fields
from connectors.forms.errors import load_messages
from knowledge_base.benefits import BenefitTable, BenefitTables

DEFAULT_DIR = Path(__file__).resolve().parent / "procedures"
# What residents are told about eligibility, in both languages (checked when this module loads).
ELIGIBILITY_WORDING = load_messages(Path(__file__).resolve().parent / "eligibility.yaml")


def _say(key: str, language: str, **values: object) -> str:
    return ELIGIBILITY_WORDING[key][language].format(**values)

__all__ = [
    "DEFAULT_DIR",
    "FIELD_TYPES",
    "BenefitTableRule",
    "Eligibility",
    "EligibilityRule",
    "FieldError",
    "InvalidProcedureFile",
    "MinAgeRule",
    "MissingBenefitTable",
    "Procedure",
    "ProcedureCatalogue",
    "UnknownProcedure",
    "age_on",
    "get_procedure",
    "load_procedures",
]


class UnknownProcedure(LinliError):
    code = "unknown_procedure"
    http_status = 404


class InvalidProcedureFile(InvalidFormFile):
    """A procedure YAML an administrator edited does not follow the schema; raised at load time
    so the mistake shows when the service starts, not when a resident is half-way through."""

    code = "invalid_procedure_file"


class MissingBenefitTable(InvalidProcedureFile):
    """A procedure's rule names a benefit table that no indexed document declares (the document
    was removed, or the index was built without it)."""

    code = "missing_benefit_table"
    # Found while a resident files, not at load time: the service cannot check this procedure now.
    http_status = 503


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
    def evaluate(self, values: Mapping[str, Any], today: date, tables: BenefitTables) -> Eligibility | None:
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

    def evaluate(self, values: Mapping[str, Any], today: date, tables: BenefitTables) -> Eligibility | None:
        if _age_from(values, self.field, today) >= self.age:
            return None
        return Eligibility(False, self.reason["zh"], self.reason["en"], self.doc_id)


@dataclass(frozen=True)
class BenefitTableRule:
    """Looks the applicant's age up in a benefit table declared in corpus front matter and read
    from the index, so the amount a resident is told is the one the answers cite."""

    field: str
    table: str
    table_en: str | None = None

    def evaluate(self, values: Mapping[str, Any], today: date, tables: BenefitTables) -> Eligibility | None:
        age = _age_from(values, self.field, today)
        zh = _required_table(tables, self.table)
        # The English twin only words the outcome; without it the sentences fall back to zh's.
        en = tables.benefit_table(self.table_en) if self.table_en else None
        if age < zh.minimum_age:
            return Eligibility(
                False,
                _say("below_minimum_age", "zh", title=zh.title, minimum_age=zh.minimum_age, age=age),
                _say("below_minimum_age", "en", title=en.title if en else _say("allowance", "en"),
                     minimum_age=zh.minimum_age, age=age),
                zh.doc_id,
            )
        bracket = zh.lookup(age)
        if bracket is None:
            note_en = en.missing_note if en and en.missing_note else _say("no_published_rate", "en", age=age)
            return Eligibility(True, zh.missing_note or _say("no_published_rate", "zh", age=age),
                               note_en, zh.doc_id, needs_worker=True)
        amount = f"{bracket.amount:g}"
        return Eligibility(
            True,
            _say("monthly_amount", "zh", age=age, title=zh.title, amount=amount, unit=zh.unit),
            _say("monthly_amount", "en", age=age, title=en.title if en else zh.title, amount=amount,
                 unit=en.unit if en else zh.unit),
            zh.doc_id,
        )


def _required_table(tables: BenefitTables, table_id: str) -> BenefitTable:
    table = tables.benefit_table(table_id)
    if table is None:
        raise MissingBenefitTable(
            f"办事项目引用的津贴标准表 {table_id} 在知识库里找不到（文档可能被删除，或索引需要重建）",
            f"benefit table {table_id!r} is not declared in any indexed document's front matter "
            "(the document may have been removed, or the index needs a rebuild)",
            table=table_id,
        )
    return table


# ---- procedures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Procedure:
    """A procedure's questions (`form`) plus what only procedures have."""

    form: FormSpec
    doc_id: str
    materials: dict[str, list[str]]
    description: dict[str, str]
    eligibility: tuple[EligibilityRule, ...] = ()
    # The government backend's short code (a reference reads GOV-ELD-…), and what residents say
    # to start it ({zh: [..], en: [..]}: the intent classifier's examples for this procedure).
    backend_code: str = ""
    requests: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.form.id

    @property
    def title(self) -> dict[str, str]:
        return self.form.title

    @property
    def fields(self) -> tuple[FormField, ...]:
        return self.form.fields

    def validate(self, data: Mapping[str, Any], today: date) -> tuple[dict[str, Any], list[FieldError]]:
        """Every field checked at once; see `FormSpec.validate`."""
        return self.form.validate(data, today)

    def check_eligibility(self, values: Mapping[str, Any], today: date, tables: BenefitTables) -> Eligibility:
        """Rules in file order. Any refusal wins; otherwise the first outcome that needs a
        worker; otherwise the first informative outcome (e.g. the monthly amount)."""
        outcomes = [o for o in (rule.evaluate(values, today, tables) for rule in self.eligibility) if o is not None]
        refusal = next((o for o in outcomes if not o.eligible), None)
        needs_worker = next((o for o in outcomes if o.needs_worker), None)
        informative = next(iter(outcomes), None)
        meets = Eligibility(True, _say("meets_conditions", "zh"), _say("meets_conditions", "en"))
        return refusal or needs_worker or informative or meets

    def describe(self) -> dict[str, Any]:
        fields = []
        for spec in self.fields:
            entry: dict[str, Any] = {"name": spec.name, "type": spec.type, "required": spec.required}
            if spec.type == "choice":
                entry["choices"] = [c.key for c in spec.choices]
            fields.append(entry)
        return {"id": self.id, "title": dict(self.title), "fields": fields}


def load_procedures(directory: Path = DEFAULT_DIR) -> dict[str, Procedure]:
    """Every ``*.yaml`` in `directory`, by id. Parsed again only when a file changes, so an
    administrator's edit takes effect without a restart and a dialogue turn costs no parsing."""
    signature = _file_signature(Path(directory).glob("*.yaml"))
    return dict(_procedures(signature))


@lru_cache(maxsize=8)
def _procedures(signature: tuple[tuple[str, int], ...]) -> dict[str, Procedure]:
    procedures: dict[str, Procedure] = {}
    for path, _ in signature:
        procedure = _procedure_from_file(Path(path))
        if procedure.id in procedures:
            raise InvalidProcedureFile(f"办事项目编号重复：{procedure.id}", f"duplicate procedure id {procedure.id!r}")
        procedures[procedure.id] = procedure
    return procedures


def _file_signature(paths: Iterable[Path]) -> tuple[tuple[str, int], ...]:
    """Paths with modification times: the cache key that makes an edited file be read again."""
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in paths))


class ProcedureCatalogue:
    """The procedures of one folder, the one list that the dialogue, the intents, the connectors
    and the sandbox read (built once by the container from `connectors.procedures_dir`). An
    edited or added file is read on the next call, without a restart."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else DEFAULT_DIR

    def all(self) -> dict[str, Procedure]:
        return load_procedures(self.directory)

    def ids(self) -> list[str]:
        return list(self.all())

    def get(self, procedure_id: str) -> Procedure:
        return get_procedure(procedure_id, self.directory)


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


# ---- loading the YAML (the field schema is the form engine's: connectors/forms/loading.py) ----

_PROCEDURE_KEYS = frozenset({"id", "title", "description", "doc_id", "backend_code", "requests", "materials",
                             "eligibility", "fields"})
_BACKEND_CODE = re.compile(r"[A-Z]{3}")
_PROCEDURE_REQUIRED_KEYS = _PROCEDURE_KEYS - {"eligibility"}
_RULE_KEYS = {
    "min_age": frozenset({"type", "field", "age", "doc_id", "reason"}),
    "benefit_table": frozenset({"type", "field", "table", "table_en"}),
}


def _procedure_from_file(path: Path) -> Procedure:
    reader = SchemaReader(path, error=InvalidProcedureFile, document_zh="办事项目文件")
    data = reader.mapping(reader.load(), "顶层", _PROCEDURE_KEYS)
    reader.require(data, "顶层", _PROCEDURE_REQUIRED_KEYS)
    form = FormSpec(
        id=reader.text(data["id"], "id"),
        title=reader.bilingual(data["title"], "title"),
        fields=read_fields(reader, data["fields"]),
    )
    materials = reader.mapping(data["materials"], "materials", {"zh", "en"})
    by_name = {f.name: f for f in form.fields}
    rules = tuple(
        _rule_from(reader, spec, f"eligibility[{i}]", by_name) for i, spec in enumerate(data.get("eligibility") or [])
    )
    return Procedure(
        form=form,
        doc_id=reader.text(data["doc_id"], "doc_id"),
        materials={lang: reader.text_list(materials.get(lang), f"materials.{lang}") for lang in ("zh", "en")},
        description=reader.bilingual(data["description"], "description"),
        eligibility=rules,
        backend_code=_backend_code(reader, data["backend_code"]),
        requests=_requests(reader, data["requests"]),
    )


def _backend_code(reader: SchemaReader, value: Any) -> str:
    code = reader.text(value, "backend_code")
    if not _BACKEND_CODE.fullmatch(code):
        raise reader.fail("backend_code", "必须是三个大写英文字母，例如 ELD", "must be three capital letters, e.g. ELD")
    return code


def _requests(reader: SchemaReader, value: Any) -> dict[str, tuple[str, ...]]:
    data = reader.mapping(value, "requests", {"zh", "en"})
    out = {lang: tuple(reader.text_list(data.get(lang), f"requests.{lang}")) for lang in ("zh", "en")}
    for lang, said in out.items():
        if not said:
            raise reader.fail(f"requests.{lang}", "至少写一句居民会怎么说", "give at least one thing a resident says")
    return out


def _rule_from(reader: SchemaReader, spec: Any, where: str, fields: Mapping[str, FormField]) -> EligibilityRule:
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
    )
