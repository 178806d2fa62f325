"""Chinese-aware chunking: split on Markdown headings, then pack whole sentences (cut after
。！？；) into chunks, keeping the heading path, doc id, version and character offsets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from assistant.core.domain import Chunk, Document
from knowledge_base.text import split_sentences

_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass(frozen=True)
class ChunkingConfig:
    max_chars: int = 320
    min_chars: int = 60


def _sections(body: str) -> list[tuple[tuple[str, ...], int, int]]:
    """(heading path, start, end) of each section's text, headings excluded."""
    headings = list(_HEADING_RE.finditer(body))
    sections: list[tuple[tuple[str, ...], int, int]] = []
    path: list[tuple[int, str]] = []
    cursor = 0
    current: tuple[str, ...] = ()
    for match in headings:
        if match.start() > cursor:
            sections.append((current, cursor, match.start()))
        level = len(match.group(1))
        path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2).strip())]
        current = tuple(title for _, title in path)
        cursor = match.end()
    sections.append((current, cursor, len(body)))
    return [(p, s, e) for p, s, e in sections if body[s:e].strip()]


def chunk_document(doc: Document, config: ChunkingConfig = ChunkingConfig()) -> list[Chunk]:
    body = doc.body
    chunks: list[Chunk] = []

    def emit(path: tuple[str, ...], start: int, end: int) -> None:
        while start < end and body[start].isspace():
            start += 1
        while end > start and body[end - 1].isspace():
            end -= 1
        if start >= end:
            return
        chunks.append(
            Chunk(
                chunk_id=f"{doc.meta.doc_id}::{len(chunks)}",
                doc_id=doc.meta.doc_id,
                version=doc.meta.version,
                ordinal=len(chunks),
                heading_path=path or (doc.meta.title,),
                text=body[start:end],
                start=start,
                end=end,
            )
        )

    for path, sec_start, sec_end in _sections(body):
        section = body[sec_start:sec_end]
        spans = [(sec_start + s, sec_start + e) for s, e in split_sentences(section)]
        if not spans:
            continue
        chunk_start, chunk_end = spans[0]
        for s, e in spans[1:]:
            if e - chunk_start > config.max_chars and chunk_end - chunk_start >= config.min_chars:
                emit(path, chunk_start, chunk_end)
                chunk_start = s
            chunk_end = e
        emit(path, chunk_start, chunk_end)
    return chunks
