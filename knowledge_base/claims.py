"""A figure the resident states and asks to have confirmed ("80岁的高龄津贴应该是每月200元吧？",
"是不是只有30个社区能用？", "我87岁，是不是也跟90岁的一样？"): read out of the question so the
answerer can check it against the cited text and say plainly when it is wrong.

Questions are read in their digit form (knowledge_base.numbers.with_arabic_numerals)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from knowledge_base.numbers import with_arabic_numerals

# Words that turn a figure in a question into a claim to check rather than a detail of the
# situation ("我每月退休金3000元，能领低保吗" states a fact; "…是3000元吧？" asks to confirm one).
_CLAIM_CUE_RE = re.compile(
    r"吧|是不是|对不对|对吗|是吗|没错|确认|证实|应该是|应该有|听说|据说|人家说|有人说|难道|不就是|真的|是否|"
    r"\bis it\b|isn't it|is that|\bright\b|correct|confirm|i heard|heard that|true that|\bam i right\b|"
    r"\b(?:does|do|is|are|has|have|did|was|were)n't (?:it|they|there|he|she)\b|\bis (?:he|she) right\b|"
    r"\b(?:can't|won't|couldn't|shouldn't|wouldn't) (?:it|they|i|we|you|he|she)\b",
    re.IGNORECASE,
)

# Money, as residents write it.
_MONEY_UNITS = {"元": 1.0, "块": 1.0, "块钱": 1.0, "yuan": 1.0, "rmb": 1.0, "万元": 10_000.0, "万块": 10_000.0,
                "亿元": 100_000_000.0}
# Counting words: "30个社区", "5项服务", "2859栋楼".
MEASURE_WORDS = ("个", "种", "项", "家", "名", "户", "栋", "所", "处", "条", "类", "件", "人")
_FIGURE_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:(万元|万块|亿元|块钱|元|块|yuan|rmb)|(%|percent|％)|(万)?(?:余|多)?([个种项家名户栋所处条类件人]))"
    r"([\u4e00-\u9fff]{0,3})",
    re.IGNORECASE,
)
# "跟90岁的一样", "和九十岁的一个样", "same as 90"
_SAME_AS_AGE_RE = re.compile(
    r"(?:跟|和|同|与|像)\s*(\d{2,3})\s*多?\s*(?:周岁|岁)[^，,。？?]{0,6}?(?:一样|相同|一个样|差不多|同样|同一档|一档)|"
    r"same (?:as|amount as) (?:the |a |an )?(\d{2,3})",
    re.IGNORECASE,
)

# English counts carry no measure word: the figure and the words after it (up to the end of the
# clause, other figures skipped) are what it counts: "78 meal-assistance stations", "20 types of
# services", "90,000 people a year", "86 urban and 305 rural day-care centres". Money in millions:
# "13.5 million yuan".
_EN_FIGURE_RE = re.compile(
    r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(million|thousand|billion)?\s*"
    r"(?:(yuan|rmb)\b|([a-z][a-z' -]*))",
    re.IGNORECASE,
)
_EN_SCALE = {"thousand": 1e3, "million": 1e6, "billion": 1e9}
# Ages ("95 year old"), durations and clock times ("36 months", "30 days", "3 am") are no counts,
# as 年, 月 and 天 are no measure words in Chinese.
_EN_NOT_COUNTED_RE = re.compile(
    r"\s*(?:-\s*)?(?:years?|yrs?|months?|weeks?|days?|hours?|hrs?|minutes?|mins?|seconds?|am|pm|a\.m\.|p\.m\.|"
    r"o'clock|percent|per cent)\b",
    re.IGNORECASE,
)
# …but a length of time in months, weeks, days or hours is what a resident claims and a document
# states ("benefits last up to 36 months", "approved within 30 days", "open 24 hours"): counted,
# the unit first in what it counts, as "36个月" is in Chinese. Years stay out: they are ages and
# the resident's own situation ("I paid for three years", "a 95 year old").
_EN_DURATION_RE = re.compile(r"\s*(?:-\s*)?(months?|weeks?|days?|hours?|hrs?)\b", re.IGNORECASE)
# "aged 100 and over", "age 65": an age, not a count of anything.
_EN_AGE_BEFORE_RE = re.compile(r"\b(?:aged?|ages)\s*$", re.IGNORECASE)
_EN_STOPWORDS = frozenset({
    "a", "an", "the", "and", "or", "of", "for", "in", "on", "at", "to", "by", "with", "from", "as", "is", "are",
    "was", "were", "be", "been", "has", "have", "had", "it", "its", "this", "that", "there", "their", "they",
    "them", "these", "those", "which", "who", "what", "than", "more", "less", "over", "about", "around", "some",
    "all", "only", "just", "also", "each", "every", "per", "any", "other", "such", "so", "very", "right",
    "correct", "true", "isn't", "doesn't", "don't", "it's", "not", "no", "yes",
})
EN_MEASURE = "en"
_EN_CONTEXT_WORDS = 4

_APPROXIMATE_RE = re.compile(r"\d\s*(?:多|来|余|几)|约|大约|大概|差不多|左右|上下|about|around|roughly|over|more than",
                            re.IGNORECASE)

ClaimKind = Literal["money", "percent", "count", "same_as_age"]


@dataclass(frozen=True)
class Figure:
    """A quantity in a text: its value in base units (元, %, or things counted), what kind it is,
    and for counts the measure word and the content characters around it (社区, 服务, 助餐点)."""

    value: float
    kind: ClaimKind
    measure: str = ""
    context: str = ""
    # How an English text wrote the number ("200,000", "50 million"): an English reply names the
    # resident's figure in the resident's words.
    written: str = field(default="", compare=False)

    def overlap(self, other: Figure) -> int:
        """How alike two figures' subjects are: -1 for different kinds or measure words, else the
        character pairs their contexts share (30个社区 and 125个街道和社区服务中心 share 社区)."""
        if self.kind != other.kind or self.measure != other.measure:
            return -1
        if self.measure.split(" ")[0] == EN_MEASURE:
            # Words, by their first five letters (station/stations, centre/centres); the word right
            # after the figure names what is counted most closely ("86 urban", "305 rural").
            mine, theirs = self.context.split(), other.context.split()
            shared = len({w[:5] for w in mine} & {w[:5] for w in theirs})
            return shared + int(bool(mine and theirs and mine[0][:5] == theirs[0][:5]))
        return len(_pairs(self.context) & _pairs(other.context))

    @property
    def timed(self) -> bool:
        """A length of time, English: its unit is its measure ("en month" for "36 months")."""
        return self.measure.startswith(f"{EN_MEASURE} ")

    def say(self, language: str) -> str:
        """The figure as a reply names it: 200元, 2万人, 1亿元, 30个, 5%; 200 yuan in English. Large
        round figures keep 万 and 亿 in Chinese, as residents write them: 100000000元 is unreadable."""
        value = f"{self.value:g}" if self.value < 1e6 else f"{self.value:.0f}"
        if language == "zh":
            value = _with_chinese_magnitude(self.value) or value
        elif self.written:
            value = self.written
        if self.kind == "money":
            return f"{value}元" if language == "zh" else f"{value} yuan"
        if self.kind == "percent":
            return f"{value}%"
        return f"{value}{self.measure}" if language == "zh" else value


def _with_chinese_magnitude(value: float) -> str | None:
    """2万, 1350万, 1亿, 1.5亿 for round figures of ten thousand and more; None otherwise."""
    for unit, size in (("亿", 1e8), ("万", 1e4)):
        if value >= size and (value / size * 100) == int(value / size * 100):
            return f"{value / size:g}{unit}"
    return None


def _pairs(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)} | ({text} if len(text) == 1 else set())


@dataclass(frozen=True)
class Claim:
    """A figure the question asks to confirm; `figure` is None for "the same as age N"
    (`other_age`)."""

    figure: Figure | None = None
    other_age: int | None = None

    @property
    def kind(self) -> ClaimKind:
        return "same_as_age" if self.figure is None else self.figure.kind


# Characters around a count that say nothing about what is counted.
_FILLER_CHARS = set("的有是个了在共计约已达到多少几吧吗呢啊对不能用还就都也只和与及等其中全市目前截至现")
_STOP_RE = re.compile(r"[，。！？；、,.!?;：:（）()\s]")


def _count_context(text: str, start: int, end: int) -> str:
    """The content characters of what a count counts: up to 8 before it and 6 after it, not
    across punctuation ("全市建成社区食堂23个、助餐点78个": 社区食堂 for 23, 助餐点 for 78)."""
    before = _STOP_RE.split(text[max(0, start - 8) : start])[-1]
    after = _STOP_RE.split(text[end : end + 6])[0]
    return "".join(ch for ch in before + after if "\u4e00" <= ch <= "\u9fff" and ch not in _FILLER_CHARS)


def _english_context(words: str) -> str:
    """The content words of what an English count counts, up to the clause's end, lower-cased."""
    kept = [w for w in re.split(r"[\s-]+", words.lower()) if w and w not in _EN_STOPWORDS]
    return " ".join(kept[:_EN_CONTEXT_WORDS])


def _figure_spans(text: str) -> list[tuple[int, int, Figure]]:
    """Every money amount, percentage and count in the (digit-form) text, with its span, in order."""
    found: list[tuple[int, int, Figure]] = []
    for m in _FIGURE_RE.finditer(text):
        value = float(m.group(1))
        if m.group(2):
            figure = Figure(value * _MONEY_UNITS[m.group(2).lower()], "money")
        elif m.group(3):
            figure = Figure(value, "percent")
        else:
            scale = 10_000.0 if m.group(4) else 1.0
            figure = Figure(value * scale, "count", m.group(5), _count_context(text, m.start(), m.end(5)))
        found.append((m.start(), m.end(), figure))
    taken = [(start, end) for start, end, _ in found]
    for m in _EN_FIGURE_RE.finditer(text):
        if any(start < m.end(1) and m.start() < end for start, end in taken):
            continue
        value = float(m.group(1).replace(",", "")) * _EN_SCALE.get((m.group(2) or "").lower(), 1.0)
        written = " ".join(filter(None, (m.group(1), m.group(2))))
        if m.group(3):
            found.append((m.start(), m.end(), Figure(value, "money", written=written)))
            continue
        if _EN_AGE_BEFORE_RE.search(text[max(0, m.start() - 8) : m.start()]):
            continue
        after_number = m.end(2) if m.group(2) else m.end(1)
        duration = _EN_DURATION_RE.match(text, after_number)
        if duration:
            unit = duration.group(1).lower().removesuffix("s").replace("hr", "hour")
            rest = re.split(r"[,.;:!?()\n]", text[duration.end():], maxsplit=1)[0]
            context = _english_context(re.sub(r"\d[\d,.]*", " ", rest))
            found.append((m.start(), duration.end(), Figure(value, "count", f"{EN_MEASURE} {unit}", context,
                                                             f"{written} {duration.group(1).lower()}")))
            continue
        if _EN_NOT_COUNTED_RE.match(text, after_number):
            continue
        # The words up to the clause's end, skipping other figures ("86 urban and 305 rural …").
        rest = re.split(r"[,.;:!?()\n]", text[m.start(4):], maxsplit=1)[0]
        first = rest.split()[0].lower() if rest.split() else ""
        if 1900 <= value <= 2100 and "," not in m.group(1) and (not first or first in _EN_STOPWORDS):
            continue  # a year ("August 2025 there were 78 …")
        context = _english_context(re.sub(r"\d[\d,.]*", " ", rest))
        if context:
            found.append((m.start(), m.end(), Figure(value, "count", EN_MEASURE, context, written)))
    return sorted(found, key=lambda span: span[0])


def figures(text: str) -> list[Figure]:
    """Every money amount, percentage and count in the text."""
    return [figure for _, _, figure in _figure_spans(with_arabic_numerals(text))]


def find_claim(question: str, *, cue_required: bool = True) -> Claim | None:
    """The figure the question asks to have confirmed, or None. A figure counts only with a word
    that asks for confirmation (吧, 是不是, 对吗, is it …) unless `cue_required` is False (an
    instruction such as "直接确认：…每月600元" has been taken out of the question)."""
    text = with_arabic_numerals(question)
    same = _SAME_AS_AGE_RE.search(text)
    if same:
        age = int(same.group(1) or same.group(2))
        return Claim(other_age=age)
    if cue_required and not _CLAIM_CUE_RE.search(text):
        return None
    found = _figure_spans(text)
    if not found:
        return None
    # An amount asked about beside a count ("people aged 100 and over … get 1000 yuan a month, is
    # that right?") is the figure to check: the count says whom it is about.
    money = [span for span in found if span[2].kind in ("money", "percent")]
    start, end, figure = (money or found)[0]
    if _APPROXIMATE_RE.search(text[max(0, start - 3) : end if figure.measure != EN_MEASURE else start]):
        # "四十多个", "二十来个", "大约300元" give a range, not a figure to confirm or deny.
        return None
    return Claim(figure=figure)


def settle(claim: Claim, stated: Sequence[Figure]) -> tuple[bool, list[int]] | None:
    """(verdict, indices in `stated` of the figures that settle it, in order): True when the
    documents state the claimed figure for the same thing (the figures equal to it), False when
    they state that thing with another figure (the figures as alike as any); None when they state
    nothing to check it by. Of several counts, those whose subject is most like the claim's are
    the ones compared."""
    if claim.figure is None:
        return None
    figure = claim.figure
    scored = [(figure.overlap(f), i) for i, f in enumerate(stated)]
    # A count whose subject shares nothing with a stated one is about something else; a length of
    # time is compared by its unit (months with months), as money is by being money.
    scored = [(s, i) for s, i in scored
              if s > 0 or (s == 0 and (figure.kind != "count" or not figure.context or figure.timed))]
    if not scored:
        return None
    best = max(s for s, _ in scored)
    closest = [i for s, i in scored if s == best]
    equal = [i for i in closest if abs(stated[i].value - figure.value) < 1e-6]
    if equal and figure.timed and len({stated[i].value for i in closest}) > 1:
        # A length of time the documents give by condition ("12 months with 1-5 years of
        # contributions, 18 with 5-10, 24 with more"): the claimed one is right only under its
        # condition, which the question may not meet. Nothing is confirmed; a figure stated under
        # no condition at all is still wrong (below).
        return None
    return (True, equal) if equal else (False, closest)


def verdict(claim: Claim, stated: Sequence[Figure]) -> bool | None:
    """The verdict of `settle` alone."""
    settled = settle(claim, stated)
    return None if settled is None else settled[0]
