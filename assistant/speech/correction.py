"""Post-correction of transcripts: Simplified characters, domain terms restored by pinyin
similarity (津贴 heard as 今天, 低保 as 底保), Chinese numerals before 岁/元 turned into digits, and
implausible ages caught so Linli asks back instead of answering for an 886-year-old."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pypinyin import Style, lazy_pinyin

from knowledge_base.numbers import cn_to_int
from knowledge_base.text import to_simplified

_CJK = re.compile(r"[\u4e00-\u9fff]")
_CN_NUMBER_UNIT = re.compile(r"([零〇一二两三四五六七八九十百千]{1,6})(周岁|岁|元|块)")
_LONG_AGE = re.compile(r"(\d{3,})\s*(?:周岁|岁)")


def _syllables(text: str) -> list[str]:
    return lazy_pinyin(text, style=Style.NORMAL)


def _initial(syllable: str) -> str:
    for prefix in ("zh", "ch", "sh"):
        if syllable.startswith(prefix):
            return prefix
    return syllable[:1]


def restore_terms(text: str, terms: list[str]) -> str:
    """Replace a run of characters that sounds like a domain term with the term. Two-character
    terms need the same pinyin; longer ones may differ in one syllable with the same initial
    (高龄今天 → 高龄津贴), never in their first syllable."""
    targets = sorted({t for t in terms if len(t) >= 2 and _CJK.search(t)}, key=len, reverse=True)
    for term in targets:
        if term in text:
            continue
        term_py = _syllables(term)
        n = len(term)
        for start in range(len(text) - n + 1):
            window = text[start : start + n]
            if not all(_CJK.match(ch) for ch in window):
                continue
            window_py = _syllables(window)
            if len(window_py) != n:
                continue
            mismatches = [i for i in range(n) if window_py[i] != term_py[i]]
            close = not mismatches or (
                n >= 3 and len(mismatches) == 1 and mismatches[0] > 0
                and _initial(window_py[mismatches[0]]) == _initial(term_py[mismatches[0]]))
            if close:
                text = text[:start] + term + text[start + n:]
                break
    return text


def normalise_numbers(text: str) -> str:
    """八十六岁 → 86岁, 五百元 → 500元, so ages and amounts read the same as typed ones."""
    def digits(match: re.Match[str]) -> str:
        value = cn_to_int(match.group(1))
        return f"{value}{match.group(2)}" if value is not None else match.group(0)

    return _CN_NUMBER_UNIT.sub(digits, text)


@dataclass(frozen=True)
class Doubt:
    """Something in the transcript too unlikely to act on; ask the resident instead."""

    heard: str
    guess: str | None


def implausible(text: str) -> Doubt | None:
    for match in _LONG_AGE.finditer(text):
        number = match.group(1)
        if int(number) > 120:
            # "我爸八十六岁" is often heard as 886: a doubled first digit is the usual slip.
            guess = number[1:] if len(number) == 3 and number[0] == number[1] and int(number[1:]) <= 120 else None
            return Doubt(match.group(0), f"{guess}岁" if guess else None)
    return None


def post_correct(text: str, terms: list[str]) -> str:
    text = to_simplified(text).strip()
    text = restore_terms(text, terms)
    return normalise_numbers(text)
