"""Benefit tables declared in document front matter (e.g. allowance by age bracket), parsed as
data so that "我奶奶92岁能领多少" is answered by lookup, never by a guess."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from assistant.core.domain import DocumentMeta
from knowledge_base.numbers import extract_age

_AMOUNT_QUESTION_RE = re.compile(
    r"多少|几块|几百|几千|金额|标准|多钱|啥钱|能领|能拿|给多少|\d+\s*(?:元|块)|how much|amount|rate|\d+\s*yuan", re.I)


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
        tables = []
        for raw in meta.benefit_tables:
            if raw.get("variable", "age") != "age":
                continue
            brackets = tuple(
                Bracket(int(r["min"]), int(r["max"]) if r.get("max") is not None else None, float(r["amount"]))
                for r in raw.get("rows", [])
                if r.get("amount") is not None
            )
            tables.append(
                cls(
                    table_id=str(raw["id"]),
                    doc_id=meta.doc_id,
                    title=str(raw.get("title") or meta.title),
                    subject=str(raw.get("subject") or ""),
                    keywords=tuple(str(k) for k in raw.get("keywords", [])),
                    unit=str(raw.get("unit", "")),
                    region=meta.region,
                    language=meta.language,
                    brackets=tuple(sorted(brackets, key=lambda b: b.min)),
                    missing_note=str(raw.get("missing_note") or ""),
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
    comparing_ages: bool = False,
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
    if not candidates and comparing_ages:
        # Comparing two ages is a question about an age table even when it names none.
        candidates = list(tables)
    if not candidates:
        return None
    named = regions.mentioned(question) - {"national"}
    if named:
        candidates = [t for t in candidates if t.region in named]
        if not candidates:
            return "other_region"
    same_language = [t for t in candidates if t.language == language]
    table = (same_language or candidates)[0]
    return BenefitQuery(table=table, age=age, bracket=table.lookup(age))
