"""Numerals in Chinese and Arabic form: extraction for the grounding verifier and for reading
ages out of questions."""

from __future__ import annotations

import re

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
CN_NUMERAL_CLASS = "零〇一二两三四五六七八九十百千万亿"
_ARABIC_RE = re.compile(r"\d+(?:[.,]\d+)*")
_CN_RE = re.compile(f"[{CN_NUMERAL_CLASS}]+")
# Chinese numerals that are part of ordinary words, not quantities.
_CN_WORD_EXCEPTIONS = re.compile(
    r"这一|一下|一起|一定|一般|一些|一点|一律|统一|一旦|一致|一样|一直|一切|一并|进一步|之一|唯一|万一|一方|一次性|"
    r"第一时间|一站式|一窗|一件事|一网|十分|万分|千万(?![元块人户])|百姓|三方|两项补贴|两病|一刻钟"
)


def cn_to_int(text: str) -> int | None:
    """Parse a Chinese numeral such as 九十二, 八十六, 一百, 两千五百, 二〇二五 (digit by digit)."""
    if not text or any(ch not in _DIGITS and ch not in _UNITS for ch in text):
        return None
    if all(ch in _DIGITS for ch in text):
        if len(text) == 1:
            return _DIGITS[text]
        return int("".join(str(_DIGITS[ch]) for ch in text))
    total, section, number = 0, 0, 0
    for ch in text:
        if ch in _DIGITS:
            number = _DIGITS[ch]
        else:
            unit = _UNITS[ch]
            if unit >= 10_000:
                section = (section + number) * unit
                total += section
                section = 0
            else:
                section += (number or 1) * unit
            number = 0
    return total + section + number


def numerals(text: str) -> list[tuple[str, float]]:
    """Every quantity in the text as (surface form, value)."""
    found: list[tuple[str, float]] = []
    for m in _ARABIC_RE.finditer(text):
        raw = m.group(0)
        try:
            found.append((raw, float(raw.replace(",", ""))))
        except ValueError:
            continue
    masked = _CN_WORD_EXCEPTIONS.sub(lambda m: "□" * len(m.group(0)), text)
    for m in _CN_RE.finditer(masked):
        value = cn_to_int(m.group(0))
        if value is not None:
            found.append((m.group(0), float(value)))
    return found


# A Chinese numeral as residents type a quantity: a run with a unit character (九十三, 一百, 两千)
# or a run of digits before a measure word (两个, 三项).
_CN_QUANTITY_RE = re.compile(
    f"[{CN_NUMERAL_CLASS}]*[十百千万亿][{CN_NUMERAL_CLASS}]*|"
    f"[{CN_NUMERAL_CLASS}]+(?=周岁|岁|元|块|个|种|项|家|人|名|户|栋|所|处|条|类|倍|年|月|天)"
)


def with_arabic_numerals(text: str) -> str:
    """The question with its Chinese numerals as digits (我妈九十三 → 我妈93, 两千块 → 2000块), as the
    voice path already reads them, so ages, amounts and claimed figures read the same however they
    were typed. Words that merely contain numeral characters (一样, 统一, 十分, 万一) stay."""
    masked = _CN_WORD_EXCEPTIONS.sub(lambda m: "□" * len(m.group(0)), text)
    pieces: list[str] = []
    last = 0
    for m in _CN_QUANTITY_RE.finditer(masked):
        if m.start() > 0 and masked[m.start() - 1].isdigit():
            continue  # 1亿元, 3万人: a unit after digits is part of that number, not one of its own
        value = cn_to_int(m.group(0))
        if value is None or (value == 0 and m.group(0) not in ("零", "〇")):
            continue
        pieces.append(text[last : m.start()])
        pieces.append(str(value))
        last = m.end()
    pieces.append(text[last:])
    return "".join(pieces)


# A bare age right after the person it belongs to ("我妈93，…", "老人今年85"): nothing follows it
# that would make it an amount, a count or a date.
_PERSON_AGE_RE = re.compile(
    r"(?:妈|爸|娘|爹|奶奶|爷爷|姥姥|姥爷|外婆|外公|老人|老人家|老伴|母亲|父亲|婆婆|公公|老头|老太太|我|俺|他|她)"
    r"(?:今年|已经|都|快|刚)?\s*(\d{2,3})(?![\d.]|\s*(?:元|块|个|%|年|月|号|人|户|次|天|万|分))"
)

_AGE_PATTERNS = [
    re.compile(r"(?:今年|年满|满|已经|快|刚|都)?\s*(\d{2,3}|[一二三四五六七八九十百零两]{2,5})\s*(?:周岁|岁|了)"),
    re.compile(r"(?:今年|年满|已满|满)\s*(\d{2,3}|[一二三四五六七八九十百零两]{2,5})"),
    re.compile(r"(\d{2,3})\s*(?:大寿|寿辰|高寿)"),
    re.compile(r"(\d{2,3})\s*(?:-|\s)?(?:years?|yrs?)(?:[\s-]*old)?", re.IGNORECASE),
    re.compile(r"\b(?:aged?|turned|turning|is|am|are|was)\s+(\d{2,3})\b(?!\s*(?:yuan|%|percent))", re.IGNORECASE),
    # "过了75", "年过90的老人", "is past 100": at least that age.
    re.compile(r"(?:过了|年过|已过|已经过)\s*(\d{2,3})(?!\d|[.,]\d|\s*(?:元|块|个|%|号|人|户|次|天|万|分|年|月))"),
    re.compile(r"\b(?:past|aged over)\s+(\d{2,3})\b(?![.,]\d|\s*(?:yuan|%|percent|people|days|years? ago))",
               re.IGNORECASE),
]
# "超过90", "over 90", "older than 90", "九十出头": past that age, so one year more.
_OVER_AGE_RE = re.compile(
    r"(\d{2,3})\s*(?:周岁|岁)?\s*出头|"
    r"(?:超过|大于)\s*(\d{2,3})\s*(?:周岁|岁)|"
    r"\b(?:is|am|are|was|now|be|being|who(?:'s| is)|people|person|residents?|seniors?)\s+(?:over|older than|above)\s+"
    r"(\d{2,3})\b(?![.,]\d|\s*(?:yuan|%|percent|people|days))",
    re.IGNORECASE,
)


# "over a hundred years old", "one hundred": the one English number word ages are said in.
_ENGLISH_HUNDRED_RE = re.compile(r"\b(?:a|one) hundred\b", re.IGNORECASE)


def extract_age(text: str) -> int | None:
    """The age a resident states ("92岁", "今年九十二了", "我妈九十三，…", "86 years old"); None when
    absent."""
    text = _ENGLISH_HUNDRED_RE.sub("100", with_arabic_numerals(text))
    over = _OVER_AGE_RE.search(text)
    if over:
        past = int(next(group for group in over.groups() if group)) + 1
        if 0 < past < 150:
            return past
    for pattern in _AGE_PATTERNS:
        for m in pattern.finditer(text):
            token = m.group(1)
            value = int(token) if token.isdigit() else cn_to_int(token)
            if value is not None and 0 < value < 150:
                return value
    for m in _PERSON_AGE_RE.finditer(text):
        if 40 <= int(m.group(1)) <= 120:
            return int(m.group(1))
    return None
