"""What Linli says outside policy answers, read from assistant/data/replies.yaml: every
resident-facing sentence of the dialogue lives in that file, in Chinese and English."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPLIES_FILE = Path(__file__).resolve().parent.parent / "data" / "replies.yaml"


class Replies:
    def __init__(self, entries: dict[str, Any]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path = REPLIES_FILE) -> Replies:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")))

    def say(self, key: str, language: str, **values: Any) -> str:
        """The sentence `key` in `language` (English falls back to Chinese), placeholders filled."""
        entry = self._entries[key]
        return str(entry.get(language, entry["zh"])).format(**values)

    def label(self, key: str, language: str) -> str:
        """A quick-reply button's words (the `quick_replies` section)."""
        labels = self._entries["quick_replies"][key]
        return str(labels.get(language, labels["zh"]))

    def status(self, status: str, language: str) -> str:
        """An application's status in words (the `application_status` section)."""
        names = self._entries["application_status"].get(status)
        return str(names.get(language, names["zh"])) if names else status

    def has_label(self, key: str) -> bool:
        return key in self._entries["quick_replies"]
