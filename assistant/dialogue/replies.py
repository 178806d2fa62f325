"""What Linli says outside policy answers, read from assistant/data/replies.yaml: every
resident-facing sentence of the dialogue lives in that file, in Chinese and English. Speech's
sentences (assistant/data/speech.yaml) are read the same way.

A file is checked when it is loaded: every sentence has zh and en, and both name the same
placeholders, so a typo shows when Linli starts, not in front of a resident."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from knowledge_base.guards import LANGUAGES, InvalidWording, placeholders

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
REPLIES_FILE = DATA_DIR / "replies.yaml"
SPEECH_FILE = DATA_DIR / "speech.yaml"


def _sentences(entries: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(id, entry) for every sentence; a section (quick_replies) holds sentences in turn."""
    for key, entry in entries.items():
        if isinstance(entry, dict) and not set(entry) & set(LANGUAGES) and entry:
            yield from _sentences(entry, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", entry


def check_sentences(entries: object, name: str) -> dict[str, Any]:
    """`entries` when every sentence in it has exactly zh and en with the same placeholders."""
    if not isinstance(entries, dict):
        raise InvalidWording(f"{name} 应该是键值对", f"{name} must be a mapping")
    for key, entry in _sentences(entries):
        if not isinstance(entry, dict) or set(entry) != set(LANGUAGES):
            raise InvalidWording(f"{name} 的 {key} 应该只有 zh 和 en 两句", f"{name}: {key} needs exactly zh and en")
        if not all(isinstance(entry[lang], str) and entry[lang].strip() for lang in LANGUAGES):
            raise InvalidWording(f"{name} 的 {key} 不能为空", f"{name}: {key} is empty")
        if placeholders(entry["zh"]) != placeholders(entry["en"]):
            raise InvalidWording(f"{name} 的 {key}：中英文句子的占位符不一致",
                                 f"{name}: {key}: the zh and en sentences use different placeholders")
    return entries


class Replies:
    def __init__(self, entries: dict[str, Any]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path = REPLIES_FILE) -> Replies:
        return cls(check_sentences(yaml.safe_load(path.read_text(encoding="utf-8")), path.name))

    def say(self, key: str, language: str, **values: Any) -> str:
        """The sentence `key` in `language` (English falls back to Chinese), placeholders filled."""
        entry = self._entries[key]
        return str(entry.get(language, entry["zh"])).format(**values)

    def both(self, key: str, **values: Any) -> tuple[str, str]:
        """The sentence in Chinese and in English (for a `LinliError`)."""
        return self.say(key, "zh", **values), self.say(key, "en", **values)

    def label(self, key: str, language: str) -> str:
        """A quick-reply button's words (the `quick_replies` section)."""
        labels = self._entries["quick_replies"][key]
        return str(labels.get(language, labels["zh"]))

    def has_label(self, key: str) -> bool:
        return key in self._entries["quick_replies"]

    def __iter__(self) -> Iterator[str]:
        """The id of every sentence ("quick_replies.cancel" for one in a section)."""
        return (key for key, _entry in _sentences(self._entries))
