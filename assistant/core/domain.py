"""Domain types shared by every part of Linli. Defined once, imported everywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class DocumentMeta:
    doc_id: str
    title: str
    category: str
    region: str
    source: str
    effective_from: date | None
    effective_to: date | None
    version: str
    language: str
    # Parsed benefit tables from the front matter (see knowledge_base/benefits.py).
    benefit_tables: tuple[dict[str, Any], ...] = ()

    def in_force(self, on: date) -> bool:
        if self.effective_from and on < self.effective_from:
            return False
        return not (self.effective_to and on > self.effective_to)


@dataclass(frozen=True)
class Document:
    meta: DocumentMeta
    body: str
    path: str | None = None


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    version: str
    ordinal: int
    heading_path: tuple[str, ...]
    text: str
    start: int  # character offsets into Document.body
    end: int

    @property
    def section(self) -> str:
        return " > ".join(self.heading_path[1:] or self.heading_path)


@dataclass
class Hit:
    chunk: Chunk
    meta: DocumentMeta
    score: float
    bm25_rank: int | None = None
    dense_rank: int | None = None
    dense_score: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchFilters:
    region: str | None = None
    category: str | None = None
    as_of: date | None = None
    include_expired: bool = False
    language: str | None = None


class Citation(BaseModel):
    doc_id: str
    title: str
    chunk_id: str
    text: str
    section: str = ""


class Answer(BaseModel):
    answer: str
    refused: bool
    confidence: float
    citations: list[Citation]
    language: str = "zh"
    reason: str | None = None

    def public(self) -> dict[str, Any]:
        """The documented JSON shape of `linli ask --json` and POST /api/v1/ask."""
        return {
            "answer": self.answer,
            "refused": self.refused,
            "confidence": round(self.confidence, 4),
            "citations": [c.model_dump(include={"doc_id", "title", "chunk_id", "text"}) for c in self.citations],
        }
