"""Bilingual wording files: every sentence a resident reads lives in a YAML file as
`id: {zh: …, en: …}` (sections of such entries allowed), and is checked when the file is loaded —
both languages present, not empty, naming the same {placeholders} — so a typo shows when Linli
starts, not in front of a resident. The dialogue, the knowledge base and the form engine all read
their wording through here."""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from assistant.core.errors import LinliError

LANGUAGES = ("zh", "en")


class InvalidWording(LinliError):
    """A wording file an administrator edited does not follow the schema."""

    code = "invalid_wording_file"
    http_status = 500


def placeholders(template: str) -> set[str]:
    """The {named} placeholders of a sentence template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def sentences(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(id, entry) for every sentence; a section (e.g. quick_replies) holds sentences in turn."""
    for key, entry in data.items():
        if isinstance(entry, dict) and entry and not set(entry) & set(LANGUAGES):
            yield from sentences(entry, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", entry


def check_sentences(data: object, name: str, error: type[LinliError] = InvalidWording) -> dict[str, Any]:
    """`data` when every sentence in it has exactly zh and en, neither empty, with the same
    placeholders; otherwise `error` naming the file and the sentence, in both languages."""
    if not isinstance(data, dict):
        raise error(f"{name} 应该是键值对", f"{name} must be a mapping")
    for key, entry in sentences(data):
        if not isinstance(entry, dict) or set(entry) != set(LANGUAGES):
            raise error(f"{name} 的 {key} 应该只有 zh 和 en 两句", f"{name}: {key} needs exactly zh and en")
        if not all(isinstance(entry[lang], str) and entry[lang].strip() for lang in LANGUAGES):
            raise error(f"{name} 的 {key} 不能为空", f"{name}: {key} is empty")
        if placeholders(entry["zh"]) != placeholders(entry["en"]):
            raise error(f"{name} 的 {key}：中英文句子的占位符不一致",
                        f"{name}: {key}: the zh and en sentences use different placeholders")
    return data


def read_wording(path: Path, error: type[LinliError] = InvalidWording) -> dict[str, Any]:
    """A wording file, checked."""
    return check_sentences(yaml.safe_load(path.read_text(encoding="utf-8")), path.name, error)


class Wording:
    """Sentence id -> {"zh": template, "en": template}, from one flat wording file."""

    def __init__(self, sentences: dict[str, dict[str, str]], source: str) -> None:
        self.sentences = sentences
        self.source = source

    @classmethod
    def load(cls, path: Path, error: type[LinliError] = InvalidWording) -> Wording:
        data = read_wording(path, error)
        return cls({str(key): {lang: entry[lang] for lang in LANGUAGES} for key, entry in data.items()}, path.name)

    def require(self, *keys: str) -> Wording:
        """This wording, after checking that it has every sentence the caller will say."""
        missing = [key for key in keys if key not in self.sentences]
        if missing:
            raise InvalidWording(f"{self.source} 缺少：{'、'.join(missing)}",
                                 f"{self.source} lacks {', '.join(missing)}")
        return self

    def say(self, key: str, language: str, **values: object) -> str:
        """The sentence `key` in `language` (anything but "en" is Chinese), placeholders filled."""
        return self.sentences[key]["en" if language == "en" else "zh"].format(**values)

    def both(self, key: str, **values: object) -> tuple[str, str]:
        """The sentence in Chinese and in English (for a `LinliError`)."""
        return self.say(key, "zh", **values), self.say(key, "en", **values)

    def __iter__(self) -> Iterator[str]:
        return iter(self.sentences)
