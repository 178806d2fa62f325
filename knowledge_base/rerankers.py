"""The `Reranker` seam: optional cross-encoder reranking of fused hits (off by default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from assistant.core.settings import RerankerSettings
from knowledge_base.embedders import require_sentence_transformers


@runtime_checkable
class Reranker(Protocol):
    name: str

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local model directory."""

    def __init__(self, settings: RerankerSettings) -> None:
        if not settings.model_path or not Path(settings.model_path).exists():
            raise ValueError(f"reranker.model_path must be an existing local directory, got {settings.model_path!r}")
        require_sentence_transformers()
        from sentence_transformers import CrossEncoder  # noqa: PLC0415 - imports torch: +4-5 s; optional backend

        self._model = CrossEncoder(settings.model_path, device="cpu", local_files_only=True)
        self.name = f"cross-encoder:{Path(settings.model_path).name}"

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        scores = self._model.predict([(query, p) for p in passages], show_progress_bar=False)
        return [float(s) for s in scores]


RERANKERS: dict[str, Callable[[RerankerSettings], Reranker]] = {"cross_encoder": CrossEncoderReranker}


def create_reranker(settings: RerankerSettings) -> Reranker | None:
    if settings.name in ("none", "", None):
        return None
    try:
        factory = RERANKERS[settings.name]
    except KeyError:
        raise ValueError(f"unknown reranker {settings.name!r}; registered: none, {', '.join(RERANKERS)}") from None
    return factory(settings)
