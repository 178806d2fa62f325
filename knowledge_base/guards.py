"""Input checks for residents' questions: empty, oversized, binary garbage, and instructions
aimed at the assistant rather than questions about policy.

Also the knowledge base's resident-facing wording (data/answer_wording.yaml): the reasons a
question cannot be taken here, and what the answerer says around its answers. The file is read
and checked when this module is imported, so a typo in a placeholder shows when Linli starts,
not in front of a resident."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from assistant.core.errors import InvalidQuestion, LinliError

WORDING_FILE = Path(__file__).resolve().parent / "data" / "answer_wording.yaml"
LANGUAGES = ("zh", "en")

_INJECTION_RE = re.compile(
    r"忽略(之前|以上|上面|前面|你的|所有).{0,8}(指令|规则|设定|要求|提示)|无视.{0,6}(规则|指令)|"
    r"系统提示词|system prompt|管理员密码|admin password|越狱|jailbreak|"
    r"ignore (all |any |the |your )?(previous |prior |above )?(instructions|rules|prompt)|"
    r"编一个|编个|瞎编|随便编|你就说|就说是你说的|不用管规定|别管规定|make (it|something|one) up|make up (a|an|the)|"
    r"pretend (you are|to be)|扮演|"
    r"(别人|隔壁|邻居|他|她|王大爷|李大妈|某某).{0,8}(身份证号|电话号码|手机号|电话|住址)",
    re.IGNORECASE,
)


class InvalidWording(LinliError):
    """A wording file an administrator edited does not follow the schema; raised when it is
    loaded, so the mistake shows when the service starts."""

    code = "invalid_wording_file"
    http_status = 500


def placeholders(template: str) -> set[str]:
    """The {named} placeholders of a sentence template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


class Wording:
    """Sentence id -> {"zh": template, "en": template}; both languages must name the same
    placeholders, so neither sentence can silently lose a value."""

    def __init__(self, sentences: dict[str, dict[str, str]], source: str = WORDING_FILE.name) -> None:
        self.sentences = sentences
        self.source = source

    @classmethod
    def load(cls, path: Path = WORDING_FILE) -> Wording:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise InvalidWording(f"{path.name} 应该是键值对", f"{path.name} must be a mapping")
        sentences: dict[str, dict[str, str]] = {}
        for key, entry in data.items():
            if not isinstance(entry, dict) or set(entry) != set(LANGUAGES):
                raise InvalidWording(f"{path.name} 的 {key} 应该只有 zh 和 en 两句",
                                     f"{path.name}: {key} needs exactly zh and en")
            if not all(isinstance(entry[lang], str) and entry[lang].strip() for lang in LANGUAGES):
                raise InvalidWording(f"{path.name} 的 {key} 不能为空", f"{path.name}: {key} is empty")
            if placeholders(entry["zh"]) != placeholders(entry["en"]):
                raise InvalidWording(f"{path.name} 的 {key}：中英文句子的占位符不一致",
                                     f"{path.name}: {key}: the zh and en sentences use different placeholders")
            sentences[str(key)] = {lang: entry[lang] for lang in LANGUAGES}
        return cls(sentences, path.name)

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


QUESTION_ERRORS = ("question_not_text", "question_empty", "question_too_long", "question_unreadable")
WORDING = Wording.load().require(*QUESTION_ERRORS)


def check_question(text: object, max_chars: int) -> str:
    """Return the cleaned question or raise InvalidQuestion with a resident-friendly message."""
    if not isinstance(text, str):
        raise InvalidQuestion(*WORDING.both("question_not_text"))
    cleaned = text.replace("\x00", "").strip()
    if not cleaned:
        raise InvalidQuestion(*WORDING.both("question_empty"))
    if len(cleaned) > max_chars:
        raise InvalidQuestion(*WORDING.both("question_too_long", length=len(cleaned), limit=max_chars),
                              length=len(cleaned), limit=max_chars)
    printable = sum(
        1 for ch in cleaned if unicodedata.category(ch)[0] in "LNPSZ" and ch != "\ufffd" and ch.isprintable()
    )
    if printable / len(cleaned) < 0.8 or not any(unicodedata.category(ch)[0] in "LN" for ch in cleaned):
        raise InvalidQuestion(*WORDING.both("question_unreadable"))
    return re.sub(r"\s+", " ", cleaned)


def looks_like_injection(text: str) -> bool:
    return bool(_INJECTION_RE.search(text))
