"""Benefit tables declared in document front matter (e.g. allowance by age bracket), parsed as
data so that "我奶奶92岁能领多少" is answered by lookup, never by a guess."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, model_validator

from assistant.core.domain import DocumentMeta
from knowledge_base.numbers import extract_age

log = logging.getLogger(__name__)

_AMOUNT_QUESTION_RE = re.compile(
    r"多少|几块|几百|几千|金额|标准|多钱|啥钱|能领|能拿|给多少|\d+\s*(?:元|块)|how much|amount|rate|\d+\s*yuan|"
    r"what(?:'s|\s+is|\s+are)\s+(?:[a-z]+\s+){0,3}(?:allowance|subsidy|benefit)", re.I)


# ---- the schema every benefit table is checked against (shipped documents and uploads alike) --

MAX_AGE = 150
MAX_AMOUNT = 10_000_000


class BracketSpec(BaseModel):
    """One row: ages `min` to `max` (no `max`: and above) get `amount`; no `amount` means the
    source does not publish one (said plainly, never guessed)."""

    model_config = ConfigDict(extra="forbid")

    min: StrictInt = Field(ge=0, le=MAX_AGE)
    max: StrictInt | None = Field(default=None, ge=0, le=MAX_AGE)
    amount: StrictInt | StrictFloat | None = Field(default=None, ge=0, le=MAX_AMOUNT)

    @model_validator(mode="after")
    def _max_not_below_min(self) -> BracketSpec:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self


class BenefitTableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[\w\-.]+$")
    title: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=200)
    keywords: list[str] = Field(default_factory=list, max_length=50)
    # Only tables by age are read (`match_benefit_question`); another variable would be ignored.
    variable: Literal["age"] = "age"
    unit: str = Field(default="", max_length=50)
    rows: list[BracketSpec] = Field(min_length=1, max_length=100)
    missing_note: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _some_amount(self) -> BenefitTableSpec:
        if not any(row.amount is not None for row in self.rows):
            raise ValueError("no row has an amount")
        return self


def benefit_table_problems(raw_tables: Any) -> list[str]:
    """Why the front matter's `benefit_tables` cannot be used, one line per problem (empty: it
    can). The lines name the table and the field: 'table 1, rows[0].min: Input should be a valid
    integer'."""
    if raw_tables in (None, ""):
        return []
    if not isinstance(raw_tables, list):
        return ["benefit_tables must be a list of tables"]
    problems: list[str] = []
    ids: set[str] = set()
    for number, raw in enumerate(raw_tables, 1):
        try:
            spec = BenefitTableSpec.model_validate(raw)
        except ValidationError as exc:
            problems += [f"table {number}, {_location(e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
            continue
        if spec.id in ids:
            problems.append(f"table {number}: the id {spec.id} is used twice")
        ids.add(spec.id)
    return problems


def _location(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".") or "table"


@dataclass(frozen=True)
class Bracket:
    min: int
    max: int | None
    amount: float

    def contains(self, value: int) -> bool:
        return value >= self.min and (self.max is None or value <= self.max)


@dataclass(frozen=True)
class BenefitTable:
    table_id: str
    doc_id: str
    title: str
    subject: str
    keywords: tuple[str, ...]
    unit: str
    region: str
    language: str
    brackets: tuple[Bracket, ...]
    missing_note: str

    @classmethod
    def from_meta(cls, meta: DocumentMeta) -> list[BenefitTable]:
        """The document's tables, each checked against `BenefitTableSpec`. A table that fails it
        (indexed before the check existed) is left out and logged: one bad table must not stop
        every answer."""
        tables = []
        for raw in meta.benefit_tables:
            try:
                spec = BenefitTableSpec.model_validate(raw)
            except ValidationError as exc:
                log.warning("benefit table of %s left out: %s", meta.doc_id, exc.errors()[:1])
                continue
            brackets = tuple(Bracket(r.min, r.max, float(r.amount)) for r in spec.rows if r.amount is not None)
            tables.append(
                cls(
                    table_id=spec.id,
                    doc_id=meta.doc_id,
                    title=spec.title or meta.title,
                    subject=spec.subject or "",
                    keywords=tuple(spec.keywords),
                    unit=spec.unit,
                    region=meta.region,
                    language=meta.language,
                    brackets=tuple(sorted(brackets, key=lambda b: b.min)),
                    missing_note=spec.missing_note or "",
                )
            )
        return tables

    def lookup(self, age: int) -> Bracket | None:
        return next((b for b in self.brackets if b.contains(age)), None)

    @property
    def minimum_age(self) -> int:
        return self.brackets[0].min


class BenefitTables(Protocol):
    """Where benefit tables are read from. The knowledge base's answerer serves the tables of
    the documents in the index (so a document added with `linli kb add` counts, and answers and
    eligibility checks read the same rows); tests and tools hold them in memory."""

    def benefit_table(self, table_id: str) -> BenefitTable | None:
        """The table declared with this id, or None when no document declares it."""


class InMemoryBenefitTables:
    """Benefit tables held in memory, by id."""

    def __init__(self, tables: Iterable[BenefitTable]) -> None:
        self._tables = {table.table_id: table for table in tables}

    def benefit_table(self, table_id: str) -> BenefitTable | None:
        return self._tables.get(table_id)


@dataclass(frozen=True)
class AllowanceWords:
    """Near-synonyms of an allowance (data/allowance_words.yaml) and what may stand right before
    one for it to be bare, per language."""

    words: dict[str, tuple[str, ...]]
    bare_after: dict[str, frozenset[str]]

    @classmethod
    def load(cls, path: Path) -> AllowanceWords:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(words={lang: tuple(str(w).lower() for w in ws) for lang, ws in (data.get("words") or {}).items()},
                   bare_after={lang: frozenset(str(w).lower() for w in ws)
                               for lang, ws in (data.get("bare_after") or {}).items()})

    def names_allowance(self, table: BenefitTable) -> bool:
        """Whether the table is an allowance: its subject or a keyword ends with one of the words."""
        names = [n.lower() for n in [table.subject, *table.keywords] if n]
        return any(n.endswith(w) for n in names for w in self.words.get(table.language, ()))

    def bare_in(self, question: str, language: str, regions: RegionResolver) -> bool:
        """Whether the question names an allowance by one of the words with nothing before it that
        makes it another one (交通补贴): region names are read as absent ("克拉玛依补助")."""
        text = question.lower()
        for names in regions.aliases.values():
            for name in names:
                text = text.replace(name.lower(), " ")
        before_ok = self.bare_after.get(language, frozenset())
        for word in self.words.get(language, ()):
            for m in re.finditer(re.escape(word) if language != "en" else rf"\b{re.escape(word)}\b", text):
                before = text[: m.start()].rstrip()
                if language == "en":
                    previous = re.findall(r"[a-z0-9']+|[^\sa-z0-9']", before)
                    last = previous[-1] if previous else ""
                    if not last or not last[0].isalpha() or last in before_ok:
                        return True
                else:
                    last = before[-1:] if before else ""
                    if not last or not ("\u4e00" <= last <= "\u9fff") or last in before_ok:
                        return True
        return False


@dataclass(frozen=True)
class BenefitQuery:
    table: BenefitTable
    age: int
    bracket: Bracket | None

    @property
    def below_minimum(self) -> bool:
        return self.age < self.table.minimum_age


class RegionResolver:
    def __init__(self, path: Path) -> None:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        self.aliases = {code: [str(a) for a in names] for code, names in data.items()}

    def mentioned(self, text: str) -> set[str]:
        lowered = text.lower()
        return {code for code, names in self.aliases.items() if any(n.lower() in lowered for n in names)}


def match_benefit_question(
    question: str, tables: list[BenefitTable], regions: RegionResolver, language: str, *,
    comparing_ages: bool = False, allowance: AllowanceWords | None = None,
) -> BenefitQuery | None | str:
    """A BenefitQuery when the question asks an amount for a stated age against a table (or, with
    `comparing_ages`, whether one age gets the same as another: "我87岁，是不是也跟90岁的一样？");
    ``"other_region"`` when it names a region that has no table; None otherwise."""
    age = extract_age(question)
    # Another number beside the age ("…都是500") is a figure for that age as surely as 多少 asks one.
    other_number = any(n != str(age) for n in re.findall(r"\d+(?![\d年月日号])", question))
    if age is None or not (comparing_ages or other_number or _AMOUNT_QUESTION_RE.search(question)):
        return None
    lowered = question.lower()
    candidates = [t for t in tables if any(k.lower() in lowered for k in t.keywords)]
    named = regions.mentioned(question) - {"national"}
    if not candidates and allowance is not None and named and allowance.bare_in(question, language, regions):
        # "克拉玛依九十五岁每月补助多少": the allowance of the region named, whatever it is called.
        candidates = [t for t in tables if t.region in named and allowance.names_allowance(t)]
    if not candidates and comparing_ages:
        # Comparing two ages is a question about an age table even when it names none.
        candidates = list(tables)
    if not candidates:
        return None
    if named:
        candidates = [t for t in candidates if t.region in named]
        if not candidates:
            return "other_region"
    same_language = [t for t in candidates if t.language == language]
    table = (same_language or candidates)[0]
    return BenefitQuery(table=table, age=age, bracket=table.lookup(age))
