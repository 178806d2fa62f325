"""What Linli says outside policy answers, read from assistant/data/replies.yaml: every
resident-facing sentence of the dialogue lives in that file, in Chinese and English. Speech's
sentences (assistant/data/speech.yaml) are read the same way.

A file is checked when it is loaded: every sentence has zh and en, and both name the same
placeholders, so a typo shows when Linli starts, not in front of a resident."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assistant.core.wording import read_wording, sentences

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
REPLIES_FILE = DATA_DIR / "replies.yaml"
SPEECH_FILE = DATA_DIR / "speech.yaml"


class Replies:
    def __init__(self, entries: dict[str, Any]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path = REPLIES_FILE) -> Replies:
        return cls(read_wording(path))

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
        return (key for key, _entry in sentences(self._entries))
