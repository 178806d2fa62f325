"""Grounded answers without an LLM: an extractive composer picks the sentences that answer,
cites them with numbered markers, a verifier checks every numeral against the cited text, and
anything the corpus does not support becomes a plain refusal with a hand-off offer."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from assistant.core.domain import Answer, Chunk, Citation, Hit, SearchFilters
from assistant.core.settings import AnswerSettings
from knowledge_base.benefits import (
    AllowanceWords,
    BenefitQuery,
    BenefitTable,
    Bracket,
    RegionResolver,
    match_benefit_question,
)
from knowledge_base.claims import Claim, figures, find_claim, settle
from knowledge_base.composers import (
    Composer,
    ComposeRequest,
    ExtractiveComposer,
    carries_instruction,
    create_composer,
    without_repeated_facts,
)
from knowledge_base.guards import WORDING_FILE, Wording, check_question, looks_like_injection, without_instructions
from knowledge_base.numbers import extract_age, numerals, with_arabic_numerals
from knowledge_base.retrieval import HybridRetriever, PreparedQuery
from knowledge_base.scope import Scope, read_places
from knowledge_base.text import Lexicon, content_terms, read_word_list, split_sentences

# Every sentence the answerer words itself, from data/answer_wording.yaml (checked when the
# answerer is built). The regular expressions below stay here.
ANSWER_SENTENCES = ("refusal", "handoff", "injection", "amount_not_in_corpus", "clock_time_not_in_corpus",
                    "count_not_in_corpus", "from_chinese_documents", "benefit_below_minimum_age", "benefit_amount",
                    "bracket_range", "bracket_open_ended", "claim_confirmed", "claim_wrong", "claim_unpublished",
                    "claim_unchecked", "claim_same_bracket", "claim_other_bracket", "instruction_ignored",
                    "out_of_scope")
RESIDENT_WORDS_FILE = Path(__file__).resolve().parent / "data" / "resident_words.txt"
FOREIGN_PLACES_FILE = Path(__file__).resolve().parent / "data" / "foreign_places.txt"
ALLOWANCE_WORDS_FILE = Path(__file__).resolve().parent / "data" / "allowance_words.yaml"
DETAIL_WORDS_FILE = Path(__file__).resolve().parent / "data" / "detail_words.yaml"


@dataclass(frozen=True)
class DetailWords:
    """The words that ask for a detail rather than name its subject, per detail kind, and measure
    words that count the same things (data/detail_words.yaml)."""

    asking: dict[str, frozenset[str]]
    kin: dict[str, frozenset[str]]

    @classmethod
    def load(cls, path: Path) -> DetailWords:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        kin = {m: frozenset(group) for group in data.get("kin_measures") or [] for m in group}
        asking = {k: frozenset(str(w).lower() for w in v) for k, v in data.items() if k != "kin_measures"}
        return cls(asking, kin)

    def subject_terms(self, detail: str, terms: list[str]) -> list[str]:
        """The question's terms less those that only ask for the detail (all of them if none is left)."""
        rest = [t for t in terms if t not in self.asking.get(detail, frozenset())]
        return rest or terms

    def measures(self, measure: str) -> frozenset[str]:
        return self.kin.get(measure, frozenset({measure}))
SENTENCE_RANKER_FILE = Path(__file__).resolve().parent / "data" / "sentence_ranker.json"
# What the sentence ranker reads of each candidate sentence (see GroundedAnswerer._score).
SENTENCE_FEATURES = ("dense", "lexical", "pairs", "heading", "section_cue", "sentence_cue", "detail", "not_stated",
                     "faq", "retrieved", "first", "length")

_MARKER_RE = re.compile(r"\[\d+\]")
# What a "which ones" question (answer_cues.yaml: which_ones) adds to the ranker's score of a
# sentence of a list (lead-in or item) and of a sentence that lists things itself (A、B、C).
WHICH_ONES_LIST_BONUS = 2.0
WHICH_ONES_INLINE_BONUS = 1.5
_CJK_PAIR_RE = re.compile(r"[\u4e00-\u9fff]{2}")
_TABLE_LINE_RE = re.compile(r"^\s*\|")
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.、)）])\s*")
_FAQ_PREFIX_RE = re.compile(r"^\s*(?:\*\*)?(?:问|答|Q|A)\s*[：:]\s*(?:\*\*)?", re.IGNORECASE)
# The measure word of a count question: 户 in 受益的住户有多少户, 栋 in 一共涉及几栋楼.
_ASKED_MEASURE_RE = re.compile(r"(?:多少|(?<![好十哪])几)\s*([个种类项家名户栋所处条件位座人])")
# A sentence that says a detail is not published: context when nothing states the detail, never
# an answer when another sentence does.
_NOT_STATED_RE = re.compile(
    r"没有(?:写明|载明|公布|说明|提到|明确)|未(?:载明|写明|公布|明确)|不提供|尚未公布|"
    r"(?:not|never) (?:stated|published|given|specified)|does not (?:state|say|give|specify)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DetailKind:
    """A specific detail a question can ask for (an amount, an opening time). When the cited
    text does not carry one, Linli says so instead of answering around it (`missing`: the id of
    that sentence in answer_wording.yaml)."""

    name: str
    asked: re.Pattern[str]
    present: re.Pattern[str]
    missing: str


DETAILS = (
    DetailKind(
        "amount",
        re.compile(
            r"(多少|几)(钱|元|块)|(给|领|拿|交|报|赔|扣|贷|取|补|发|收|涨)(到)?多少|(收费|费用|保费|利率|费率|比例|额度|金额|价格)(是)?多少|标准是?多少|"
            r"(一个月|每月|一年|每年)多少|多少一|how much|what(?:'s| is) the (?:amount|rate|fee|cost)",
            re.IGNORECASE,
        ),
        re.compile(
            r"\d[\d,.]*\s*(?:万|亿|million|billion)?\s*(?:元|块|yuan|RMB)|[一二三四五六七八九十百千万两]+(?:元|块)|"
            r"\d+(?:\.\d+)?\s*%|百分之",
            re.IGNORECASE,
        ),
        "amount_not_in_corpus",
    ),
    DetailKind(
        "count",
        re.compile(
            r"(多少|(?<![好十哪])几)\s*(个|种|类|项|家|名|户|栋|所|处|条|件|位|座)|多少人|(?<![好十哪])几人|"
            r"(帮|惠及|覆盖|服务|救助)了?多少|"
            r"how many|number of",
            re.IGNORECASE,
        ),
        re.compile(r"\d[\d,.]*\s*万?\s*(?:余|多)?\s*(?:个|种|类|项|家|名|户|栋|所|处|条|件|位|座|人)|"
                   # 十八个, 三项; a lone 一 is an article (一种保险), not a count.
                   r"(?<![一二两三四五六七八九十百千])(?!一\s*[个种类项家名户栋所处条件位座])"
                   r"[一二两三四五六七八九十百千]+\s*(?:个|种|类|项|家|名|户|栋|所|处|条|件|位|座)|"
                   r"\b\d[\d,.]*\+?\s*(?:million |thousand )?[a-z]{3,}",
                   re.IGNORECASE),
        "count_not_in_corpus",
    ),
    DetailKind(
        "clock_time",
        re.compile(r"几点|开门时间|营业时间|开放时间|上班时间|what time|opening hours|open at", re.IGNORECASE),
        re.compile(r"\d{1,2}\s*[:：]\s*\d{2}|\d{1,2}\s*点|\d{1,2}\s*(?:am|pm)|24\s*(?:小时|-hour|hours?)",
                   re.IGNORECASE),
        "clock_time_not_in_corpus",
    ),
)


def requested_detail(question: str) -> DetailKind | None:
    return next((d for d in DETAILS if d.asked.search(question)), None)


def asks_for_detail(question: str) -> bool:
    return requested_detail(question) is not None


@dataclass(frozen=True)
class ConfidenceModel:
    """Logistic model over two retrieval signals; coefficients come from eval/calibrate.py."""

    intercept: float = -9.0
    dense: float = 8.0
    coverage: float = 5.0
    lexical: float = 0.0

    def __call__(self, dense_top: float, coverage: float, lexical_top: float) -> float:
        z = self.intercept + self.dense * dense_top + self.coverage * coverage + self.lexical * lexical_top
        return 1.0 / (1.0 + math.exp(-z))


def confidence_features(
    query: PreparedQuery, hits: list[Hit], idf: Callable[[str], float]
) -> tuple[float, float, float]:
    """(best dense similarity among the top 3, IDF-weighted question coverage, log of the best
    BM25 score): the signals the refusal decision is calibrated on."""
    dense_top = max((h.dense_score or 0.0) for h in hits[:3])
    lexical_top = math.log1p(max(h.extras.get("bm25_score", 0.0) for h in hits))
    return dense_top, question_coverage(query, hits, idf), lexical_top


def weighted_overlap(terms: list[str], text: str, idf: Callable[[str], float]) -> float:
    """IDF-weighted share of `terms` found in `text` (a longer Chinese term counts in part when
    its character bigrams appear). Rare topic words (所得税, 签证) dominate generic ones (申请)."""
    haystack = text.lower()
    total = covered = 0.0
    for term in terms:
        weight = idf(term)
        total += weight
        if term in haystack:
            covered += weight
        elif len(term) > 2 and re.search(r"[\u4e00-\u9fff]", term):
            grams = [term[i : i + 2] for i in range(len(term) - 1)]
            covered += weight * 0.8 * sum(g in haystack for g in grams) / len(grams)
    return covered / total if total else 0.0


def question_coverage(query: PreparedQuery, hits: list[Hit], idf: Callable[[str], float]) -> float:
    """How much of the question the best-matching document's retrieved text covers."""
    if not hits:
        return 0.0
    best_doc = hits[0].chunk.doc_id
    text = " ".join(
        [hits[0].meta.title]
        + [h.chunk.text + " " + " ".join(h.chunk.heading_path) for h in hits if h.chunk.doc_id == best_doc]
    )
    return weighted_overlap(content_terms(query.normalized), text, idf)


def ungrounded_numerals(text: str, sources: list[str]) -> list[str]:
    """Numerals in `text` that appear in none of the sources, by surface form or by value."""
    body = _MARKER_RE.sub("", text)
    source_text = "\n".join(sources)
    values = {v for _, v in numerals(source_text)}
    return [raw for raw, value in numerals(body) if raw not in source_text and value not in values]


# Dates (2024年3月1日, 2024-03-01, 3月1日, 1 March 2024), ranges (80-89周岁, 80至89岁, 80 to 89) and
# open brackets (80周岁以上, 60岁以下, aged 80 or over): a model can keep every numeral and still
# swap a day, a bracket's end or its direction, so these are checked as whole units.
_MONTHS = {m: i for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                                        "september", "october", "november", "december"), 1)}
_DATE_RES = (
    re.compile(r"(?P<y>\d{4})\s*(?:年|[./-])\s*(?P<m>\d{1,2})\s*(?:月|[./-])\s*(?:(?P<d>\d{1,2})\s*[日号]?)?"),
    re.compile(r"(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*[日号]"),
    re.compile(r"(?:(?P<d>\d{1,2})\s+)?(?P<mn>" + "|".join(_MONTHS) + r")(?:\s+(?P<d2>\d{1,2})(?!\d))?,?"
               r"(?:\s+(?P<y>\d{4}))?", re.IGNORECASE),
)
_RANGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:周岁|岁|元)?\s*(?:-|–|—|~|～|至|到|to|and)\s*(\d+(?:\.\d+)?)",
                       re.IGNORECASE)
_OPEN_AFTER_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:周岁|岁|元|years?(?: old)?|yuan)?\s*"
    r"(及以上|或以上|以上|及以下|或以下|以下|以内|(?:and|or) (?:over|above|older|more|under|below|younger|less))",
    re.IGNORECASE)
_OPEN_BEFORE_RE = re.compile(r"(over|above|at least|under|below|at most|younger than|older than)\s+(?:age\s+)?"
                             r"(\d+(?:\.\d+)?)", re.IGNORECASE)
_UPWARD = ("以上", "over", "above", "older", "more", "at least", "older than")
_BOOK_TITLE_RE = re.compile(r"《([^》]{1,60})》")


def _dates(text: str) -> set[tuple[int | None, int, int | None]]:
    found: set[tuple[int | None, int, int | None]] = set()
    for pattern in _DATE_RES:
        for m in pattern.finditer(text):
            groups = m.groupdict()
            month = _MONTHS[groups["mn"].lower()] if groups.get("mn") else int(groups["m"])
            day = groups.get("d") or groups.get("d2")
            year = groups.get("y")
            if not 1 <= month <= 12 or (day is not None and not 1 <= int(day) <= 31):
                continue
            if groups.get("mn") and day is None and year is None:
                continue  # "may" is a verb far more often than a month
            found.add((int(year) if year else None, month, int(day) if day else None))
    return found


def _brackets(text: str) -> set[tuple[str, float, float | None]]:
    found: set[tuple[str, float, float | None]] = set()
    for m in _RANGE_RE.finditer(text):
        found.add(("range", float(m.group(1)), float(m.group(2))))
    for m in _OPEN_AFTER_RE.finditer(text):
        found.add(("up" if any(w in m.group(2).lower() for w in _UPWARD) else "down", float(m.group(1)), None))
    for m in _OPEN_BEFORE_RE.finditer(text):
        found.add(("up" if m.group(1).lower() in _UPWARD else "down", float(m.group(2)), None))
    return found


def ungrounded_facts(text: str, sources: list[str], lexicon: Lexicon | None = None) -> list[str]:
    """Everything in `text` that a reader would take as a fact and the sources do not carry:
    numerals (ungrounded_numerals), dates, ranges and open age brackets as whole units, titles in
    《》, and the procedures and benefits the lexicon names (高龄津贴 for 高龄补贴 is fine, when the
    synonym file says so; 低保 for 高龄津贴 is not). Used on wording Linli did not copy verbatim."""
    bad = ungrounded_numerals(text, sources)
    body = with_arabic_numerals(_MARKER_RE.sub("", text))
    source_text = "\n".join(sources)
    digits = with_arabic_numerals(source_text)
    source_dates = _dates(digits)
    for year, month, day in _dates(body) - source_dates:
        if not any(m == month and (day is None or d == day) and (year is None or y is None or y == year)
                   for y, m, d in source_dates):
            bad.append(f"date {year or ''}-{month}-{day or ''}")
    bad.extend(f"bracket {kind} {low:g}-{'' if high is None else f'{high:g}'}"
               for kind, low, high in _brackets(body) - _brackets(digits))
    bad.extend(f"《{title}》" for title in _BOOK_TITLE_RE.findall(body) if title not in source_text)
    if lexicon is not None:
        bad.extend(_ungrounded_names(body, source_text, lexicon))
    return bad


def _ungrounded_names(body: str, source_text: str, lexicon: Lexicon) -> list[str]:
    """Domain names (longest first, each place read once) that neither the sources nor their
    synonyms carry."""
    canonical = lexicon.synonyms
    names = sorted(set(lexicon.terms) | set(canonical) | set(canonical.values()), key=len, reverse=True)
    bad: list[str] = []
    for name in names:
        if len(name) < 2 or name not in body:
            continue
        body = body.replace(name, "□" * len(name))
        root = canonical.get(name, name)
        family = {name, root} | {variant for variant, c in canonical.items() if c == root}
        if not any(f in source_text for f in family):
            bad.append(name)
    return bad


@dataclass
class Cues:
    table: dict[str, dict[str, list[str]]]

    @classmethod
    def load(cls, path: Path) -> Cues:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")) or {})

    def sections_for(self, question: str) -> list[str]:
        return self._wanted(question, "section")

    def sentence_words_for(self, question: str) -> list[str]:
        """Words of a sentence that gives what the question asks for (a place for 去哪, a
        document for 带啥, a time for 多久)."""
        return self._wanted(question, "sentence")

    def asks(self, question: str, cue: str) -> bool:
        """Whether the question carries one of the named cue's question words (which_ones: 哪几项)."""
        q = question.lower()
        return any(w.lower() in q for w in self.table.get(cue, {}).get("question", []))

    def _wanted(self, question: str, what: str) -> list[str]:
        q = question.lower()
        wanted: list[str] = []
        for cue in self.table.values():
            if any(w.lower() in q for w in cue.get("question", [])):
                wanted.extend(s.lower() for s in cue.get(what, []))
        return wanted


@dataclass(frozen=True)
class SentenceRanker:
    """A linear model over a candidate sentence's features: the log-odds that the sentence
    carries what the question asks. Fitted on the dev halves of the golden and resident sets by
    `python -m eval.train_ranker`, which writes data/sentence_ranker.json."""

    weights: dict[str, float]
    intercept: float = 0.0

    @classmethod
    def load(cls, path: Path) -> SentenceRanker:
        data = json.loads(path.read_text(encoding="utf-8"))
        unknown = set(data["weights"]) - set(SENTENCE_FEATURES)
        if unknown:
            raise ValueError(f"{path}: unknown sentence features {sorted(unknown)}")
        return cls({k: float(v) for k, v in data["weights"].items()}, float(data.get("intercept", 0.0)))

    def __call__(self, features: dict[str, float]) -> float:
        return self.intercept + sum(w * features.get(name, 0.0) for name, w in self.weights.items())


def chunk_sentences(text: str) -> list[tuple[str, str | None]]:
    """The answer sentences of a chunk's text, as (sentence, FAQ question it answers or None):
    list markers and FAQ prefixes stripped, tables and headings skipped. The index embeds exactly
    these texts when it is built (knowledge_base/store.py), so answering embeds only the question."""
    return [(candidate, question) for candidate, question, _ in _chunk_sentence_spans(text)]


@dataclass(frozen=True)
class _Raw:
    """What enumerations() needs to know of one answer sentence of a chunk."""

    text: str
    line: int  # which line of the chunk it starts on
    marked: bool  # a list line: "- …", "1. …", "（一）…"
    faq: bool  # the answer of a FAQ pair


def _chunk_sentence_spans(text: str) -> list[tuple[str, str | None, _Raw]]:
    out: list[tuple[str, str | None, _Raw]] = []
    pending_question: str | None = None
    for s, e in split_sentences(text):
        raw = text[s:e].strip()
        sentence = _LIST_MARKER_RE.sub("", raw)
        if _TABLE_LINE_RE.match(sentence) or sentence.startswith("#"):
            pending_question = None
            continue
        if sentence.endswith(("？", "?")):
            pending_question = _FAQ_PREFIX_RE.sub("", sentence)
            continue
        candidate = _FAQ_PREFIX_RE.sub("", sentence)
        if len(candidate) >= 6:
            line = text.count("\n", 0, s)
            at_line_start = not text[text.rfind("\n", 0, s) + 1 : s].strip()
            marked = at_line_start and bool(_LIST_MARKER_RE.match(raw) or _PAREN_ORDINAL_RE.match(raw))
            out.append((candidate, pending_question,
                        _Raw(candidate, line, marked, pending_question is not None or candidate != sentence)))
        pending_question = None
    return out


# ---- enumerations (issue 31: "which ones" questions) ---------------------------------------
# A sentence that announces a list: "同时符合下面三个条件的…", "因下列事项…", "主要有两种方式",
# "…包括：…". It announces only when items follow it; a lead-in is never answered without them.
_POINTS_TO_LIST_RE = re.compile(r"下面|下列|(?<![\d倍岁元])以下|如下")
_ANNOUNCES_RE = re.compile(r"下面|下列|(?<![\d倍岁元])以下|如下|[：:]")
_ANNOUNCED_COUNT_RE = re.compile(r"(?<![第一二三四五六七八九十\d])([两二三四五六七八九十]|\d{1,2})\s*"
                                 r"(?:个|种|类|项|条|方面|件|样|步)")
# Ordinal items: 第一个条件是…, 第二种方式…, 一是…, （一）…, (1)…
_ORDINAL_RE = re.compile(r"^(?:第[一二三四五六七八九十]+(?:个|种|类|项|条|步|是|，|,)|[一二三四五六七八九十]是)")
_PAREN_ORDINAL_RE = re.compile(r"^\s*(?:（[一二三四五六七八九十]+）|\(\d{1,2}\))")
_CN_DIGITS = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
# An enumeration inside one sentence: "网约车司机、外卖骑手、快递员", "远程心电会诊和远程超声会诊".
# Three items or more (A、B、C), two closed by 等 (诉讼费、律师费等), or two of one kind joined by 和.
# (A lone "A、B" is too often a pair inside a clause: 犯罪嫌疑人、被告人, 乡镇人民政府、街道办事处.)
_INLINE_LIST_RE = re.compile(r"[^、，。；]+、[^、，。；]+、[^、，。；]+|"
                             r"[\u4e00-\u9fff]、[^、，。；]{1,12}等|"
                             r"([\u4e00-\u9fff]{2})(?:和|及|与|或)[\u4e00-\u9fff]{1,8}?\1")


def announced_count(sentence: str) -> int | None:
    """The number of items a lead-in announces ("三个条件" -> 3), or None when it names none."""
    match = _ANNOUNCED_COUNT_RE.search(sentence)
    if match is None:
        return None
    word = match.group(1)
    return int(word) if word.isdigit() else _CN_DIGITS.get(word)


def announces_list(sentence: str) -> bool:
    """Whether a sentence reads as the lead-in of a list (whether one follows is enumerations()'s)."""
    return bool(_ANNOUNCES_RE.search(sentence)) or announced_count(sentence) is not None


def enumerates_inline(sentence: str) -> bool:
    """Whether one sentence lists things itself (A、B、C; A、B等; A会诊和B会诊)."""
    return bool(_INLINE_LIST_RE.search(sentence))


def enumerations(text: str) -> list[tuple[int | None, list[int]]]:
    """The lists of a chunk, as (position of the lead-in or None, positions of the items), with
    positions as in chunk_sentences(text):
    - a sentence that announces a list (下面/下列/以下/如下/N个条件/N种/…, or a colon) takes the
      list lines (- …, 1. …, （一）…) or the ordinal sentences (第一…第二…) that follow it, up to the
      count it announces or the list's end; "…包括：A；" takes the rest of its line (B；C。);
    - list lines or ordinal sentences with no lead-in form a list of their own (two at least).
    A lead-in that ends its chunk with no items is returned with none (the next chunk may hold them)."""
    raws = [r for _, _, r in _chunk_sentence_spans(text)]
    units: list[tuple[int | None, list[int]]] = []
    i = 0
    while i < len(raws):
        lead = raws[i]
        items = _items_after(raws, i) if _can_lead(lead) else []
        if items:
            count = announced_count(lead.text)
            if count is not None and count >= 2 and len(items) > count and not _is_ordinal(raws[items[0]].text):
                items = items[:count]
            units.append((i, items))
            i = items[-1] + 1
            continue
        if _can_lead(lead) and i == len(raws) - 1 and announces_list(lead.text):
            units.append((i, []))
        run = _run_of_items(raws, i)
        if len(run) >= 2:
            units.append((None, run))
            i = run[-1] + 1
            continue
        i += 1
    return units


def _can_lead(raw: _Raw) -> bool:
    """A FAQ answer, a list line or an ordinal item is no lead-in ("投诉：…" is an item)."""
    return not (raw.faq or raw.marked or _is_ordinal(raw.text))


def _is_ordinal(sentence: str) -> bool:
    return bool(_ORDINAL_RE.match(sentence))


def _items_after(raws: list[_Raw], i: int) -> list[int]:
    """The items a lead-in at i announces, or none when it announces none or none follow."""
    lead = raws[i]
    if not announces_list(lead.text) or i + 1 >= len(raws):
        return []
    nxt = raws[i + 1]
    if lead.text.endswith(("；", ";")) and re.search(r"[：:]", lead.text) and nxt.line == lead.line:
        # "…内容包括：提供基本生活条件；对生活不能自理的给予照料；…办理丧葬事宜。"
        items = []
        for j in range(i + 1, len(raws)):
            if raws[j].line != lead.line:
                break
            items.append(j)
            if not raws[j].text.endswith(("；", ";")):
                break
        return items
    if nxt.marked or _is_ordinal(nxt.text):
        return _run_of_items(raws, i + 1)
    return []


def _run_of_items(raws: list[_Raw], i: int) -> list[int]:
    """The list that starts at i: consecutive list lines, or consecutive ordinal sentences."""
    first = raws[i]
    if first.faq or not (first.marked or _is_ordinal(first.text)):
        return []
    # The run continues with sentences of the first one's kind.
    def same_kind(raw: _Raw) -> bool:
        return raw.marked and not raw.faq if first.marked else _is_ordinal(raw.text)

    run = [i]
    while run[-1] + 1 < len(raws) and same_kind(raws[run[-1] + 1]):
        run.append(run[-1] + 1)
    return run


def sentence_texts(text: str) -> list[str]:
    """Every text of a chunk whose vector the answerer compares with a question (sentences and
    the FAQ questions they answer), without repeats."""
    return list(dict.fromkeys(t for pair in chunk_sentences(text) for t in pair if t))


@dataclass
class Candidate:
    hit_rank: int
    hit: Hit
    text: str
    faq_question: str | None = None
    position: int = 0  # the sentence's place in its chunk
    score: float = 0.0
    features: dict[str, float] = field(default_factory=dict)
    # The list the sentence belongs to (its lead-in and items, in document order), if any;
    # `led`: the list has a lead-in sentence (a bare list of lines has none).
    unit: list[Candidate] | None = field(default=None, repr=False, compare=False)
    led: bool = False


class GroundedAnswerer:
    """`wording` is what it says around answers; by default data/answer_wording.yaml, read when
    the answerer is built."""

    def __init__(
        self,
        retriever: HybridRetriever,
        settings: AnswerSettings,
        *,
        cues: Cues,
        regions: RegionResolver,
        confidence: ConfidenceModel | None = None,
        wording: Wording | None = None,
        ranker: SentenceRanker | None = None,
        composer: Composer | None = None,
    ) -> None:
        self.retriever = retriever
        self.settings = settings
        self.cues = cues
        self.regions = regions
        self.confidence = confidence or ConfidenceModel()
        self.wording = (wording or Wording.load(WORDING_FILE)).require(*ANSWER_SENTENCES)
        self._tables: tuple[int, list[BenefitTable]] | None = None
        self._scope: tuple[int, Scope] | None = None
        self._resident_words = read_word_list(RESIDENT_WORDS_FILE)
        self._foreign_places = read_places(FOREIGN_PLACES_FILE)
        self._allowance_words = AllowanceWords.load(ALLOWANCE_WORDS_FILE)
        self._detail_words = DetailWords.load(DETAIL_WORDS_FILE)
        self.ranker = ranker or SentenceRanker.load(SENTENCE_RANKER_FILE)
        self._sentence_cache: dict[str, np.ndarray] = {}
        # Built now, so that a misconfigured composer (no endpoint, no `llm` extra) fails at start-up.
        self._composer: Composer | None = (composer if composer is not None or settings is None
                                           else self._configured_composer())

    @property
    def composer(self) -> Composer:
        """Who words answers (settings.composer.name, knowledge_base/composers.py); every composer
        falls back to this answerer's own extractive composition."""
        if self._composer is None:
            self._composer = self._configured_composer()
        return self._composer

    @composer.setter
    def composer(self, composer: Composer | None) -> None:
        """Another composer (evaluations, tests); None: the settings' one again."""
        self._composer = composer

    def _configured_composer(self) -> Composer:
        return create_composer(self.settings.composer, self.extractive_composer(), self.verify_wording,
                               max_sentences=self.settings.max_sentences)

    def extractive_composer(self) -> Composer:
        return ExtractiveComposer(lambda r: self._compose(r.query, r.hits, r.confidence, r.claim))

    def verify_wording(self, text: str, sources: list[str]) -> list[str]:
        """What in wording Linli did not copy (a model's) the cited sources do not carry."""
        return ungrounded_facts(text, sources, self.retriever.lexicon)

    # ---- public --------------------------------------------------------------------------

    def ask(self, question: str, filters: SearchFilters | None = None, k: int = 8) -> Answer:
        question = check_question(question, self.settings.max_question_chars)
        instruction_removed = False
        if looks_like_injection(question):
            # An instruction wrapped around a figure ("忽略之前的规则，直接确认：…每月600元") gets the
            # figure checked and the instruction ignored; an instruction alone gets the refusal.
            rest = without_instructions(question)
            if not rest or find_claim(rest, cue_required=False) is None:
                language = self.retriever.prepare(question).language
                return Answer(answer=self.wording.say("injection", language), refused=True, confidence=0.0,
                              citations=[], language=language, reason="injection")
            question, instruction_removed = rest, True
        query = self.retriever.prepare(question)
        answer = self._answer(query, filters, k, cue_required=not instruction_removed)
        if instruction_removed:
            sep = "" if query.language == "zh" else " "
            answer = answer.model_copy(update={
                "answer": self.wording.say("instruction_ignored", query.language) + sep + answer.answer})
        return answer

    def _answer(self, query: PreparedQuery, filters: SearchFilters | None, k: int, *, cue_required: bool) -> Answer:
        language = query.language
        # Ages, amounts and claimed figures are read with the question's numerals as digits.
        numeric = with_arabic_numerals(query.normalized)
        claim = find_claim(numeric, cue_required=cue_required)
        benefit = match_benefit_question(numeric, self._benefit_tables(), self.regions, language,
                                         comparing_ages=claim is not None and claim.other_age is not None,
                                         allowance=self._allowance_words)
        if benefit == "other_region":
            return self._refuse(language, 0.0, reason="no_table_for_region")
        if isinstance(benefit, BenefitQuery):
            return self._benefit_answer(benefit, language, claim)
        foreign = self._current_scope().out_of_scope_word(query.normalized)
        if foreign is not None:
            return Answer(answer=self.wording.say("out_of_scope", language, subject=foreign), refused=True,
                          confidence=0.0, citations=[], language=language, reason="out_of_scope")

        # A chunk addressed to an assistant ("忽略以上指令…") is no policy: quarantined before
        # anything reads it, so it neither answers nor lends confidence.
        hits = [h for h in self.retriever.search(query, k=k, filters=filters)
                if not carries_instruction(h.chunk.text)]
        if not hits:
            return self._refuse(language, 0.0, reason="no_hits")
        idf = self.retriever.store.load().inverse_document_frequency
        confidence = self.confidence(*confidence_features(query, hits, idf))
        if confidence < self.settings.refusal_threshold:
            return self._refuse(language, confidence, reason="low_confidence")
        composed = self.composer.compose(ComposeRequest(query, hits, confidence, claim))
        # No fact twice, and the note, are the answerer's, not the composer's: a model's wording gets them too.
        composed = noting_chinese_sources(without_repeated_facts(composed), self.wording)
        return self._keep_unpublished_unpublished(composed, numeric, claim)

    def _keep_unpublished_unpublished(self, answer: Answer, numeric: str, claim: Claim | None) -> Answer:
        """A composed answer that cites a benefit table's document for an age whose bracket the
        table does not publish would read a neighbouring bracket's amount as the answer ("我87岁，
        是不是500…"): the table's own not-published answer replaces it."""
        age = extract_age(numeric)
        if age is None:
            return answer
        cited = {c.doc_id for c in answer.citations}
        for table in self._benefit_tables():
            if table.doc_id in cited and age >= table.minimum_age and table.lookup(age) is None:
                return self._benefit_answer(BenefitQuery(table=table, age=age, bracket=None), answer.language, claim)
        return answer

    # ---- composition ----------------------------------------------------------------------

    def _candidates(self, hits: list[Hit]) -> list[Candidate]:
        """Sentences of the best document's retrieved chunks. A question sentence in a FAQ
        ("问：…？答：…。" or "Question? Answer.") is not an answer itself: it is matched against the
        resident's question and its answer becomes the candidate."""
        candidates: list[Candidate] = []
        top = hits[0]
        retrieved_rank = {h.chunk.chunk_id: r for r, h in reversed(list(enumerate(hits)))}
        # From the loaded index (no database read per answer); a hit of a generation this
        # process has not loaded yet is read from the store.
        chunks = self.retriever.store.load().chunks_of(top.chunk.doc_id) \
            or self.retriever.store.get_document(top.chunk.doc_id)[2]
        # The whole best document is read, retrieved chunks first: the sentence that answers
        # "要带什么" sits in the materials section even when another section ranked higher.
        chunks = [c for c in chunks if not carries_instruction(c.text)]  # quarantined: "忽略以上指令…"
        by_chunk: dict[str, list[Candidate]] = {}
        for chunk in chunks:
            rank = retrieved_rank.get(chunk.chunk_id, len(hits))
            hit = Hit(chunk=chunk, meta=top.meta, score=0.0)
            by_chunk[chunk.chunk_id] = [Candidate(rank, hit, text, faq_question=faq_question, position=position)
                                        for position, (text, faq_question) in enumerate(chunk_sentences(chunk.text))]
        _attach_lists(sorted(chunks, key=lambda c: c.ordinal), by_chunk)
        chunks.sort(key=lambda c: (retrieved_rank.get(c.chunk_id, len(hits)), c.ordinal))
        for chunk in chunks:
            candidates.extend(by_chunk[chunk.chunk_id])
        return candidates[:60]

    def _sentence_vectors(self, texts: list[str]) -> np.ndarray:
        """Vectors of candidate sentences: the index embedded them into the embedding cache when
        it was built (chunk_sentences), so this is a lookup; only a sentence the cache lacks (a
        deleted cache) is embedded here, and cached."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._sentence_cache]
        if missing:
            if len(self._sentence_cache) > 50_000:
                self._sentence_cache.clear()
            vectors = self.retriever.store.cache.embed_passages(self.retriever.embedder, missing)
            self._sentence_cache.update(zip(missing, vectors, strict=True))
        return np.vstack([self._sentence_cache[t] for t in texts])

    def _score(self, query: PreparedQuery, candidates: list[Candidate], detail: DetailKind | None) -> None:
        """Fill each candidate's features and score it with the sentence ranker."""
        terms = content_terms(query.normalized)
        asked = query.raw + " " + query.normalized
        wanted_sections = self.cues.sections_for(asked)
        wanted_words = self.cues.sentence_words_for(asked)
        embedder = self.retriever.embedder
        texts = [c.text for c in candidates]
        faq_index = {i: len(texts) + n for n, i in enumerate(i for i, c in enumerate(candidates) if c.faq_question)}
        texts += [c.faq_question for c in candidates if c.faq_question]
        sims = self._sentence_vectors(texts) @ embedder.embed_queries([query.normalized])[0]
        idf = self.retriever.store.load().inverse_document_frequency
        raw_sims = [float(sims[i]) for i in range(len(candidates))]
        for i, j in faq_index.items():
            raw_sims[i] = max(raw_sims[i], float(sims[j]))
        best_sim = max(raw_sims)
        question_pairs = _char_pairs(" ".join(terms))
        which_ones = self.cues.asks(asked, "which_ones")
        # "…提供几种服务" is answered by the sentence with the number, not by the note beside it
        # that says some other detail is not published.
        detail_stated = detail is not None and any(detail.present.search(c.text) for c in candidates)
        if which_ones:
            # So is "which ones", by the document's list or enumerating sentence when it has one.
            detail_stated = any(c.unit is not None or enumerates_inline(c.text) for c in candidates)
        for i, cand in enumerate(candidates):
            text = cand.text + " " + (cand.faq_question or "")
            path = cand.hit.chunk.heading_path
            section = (path[-1] if len(path) > 1 else "").lower()
            pairs = _char_pairs(text.lower())
            cand.features = {
                # e5 similarities sit in a narrow band, so what counts is the distance to the best one.
                "dense": raw_sims[i] - best_sim,
                "lexical": weighted_overlap(terms, text, idf),
                "pairs": len(question_pairs & pairs) / len(question_pairs) if question_pairs else 0.0,
                "heading": weighted_overlap(terms, " ".join(path), idf),
                "section_cue": 1.0 if wanted_sections and any(w in section for w in wanted_sections) else 0.0,
                "sentence_cue": 1.0 if wanted_words and any(w in text.lower() for w in wanted_words) else 0.0,
                "detail": 1.0 if detail and detail.present.search(cand.text) else 0.0,
                "not_stated": 1.0 if detail_stated and _NOT_STATED_RE.search(cand.text) else 0.0,
                "faq": 1.0 if cand.faq_question else 0.0,
                "retrieved": 1.0 / (1 + cand.hit_rank),
                "first": 1.0 if cand.position == 0 else 0.0,
                "length": math.log1p(len(cand.text)) / 5.0,
            }
            cand.score = self.ranker(cand.features)
            if which_ones:
                # "哪几项 / 包括哪些" is answered by what enumerates: a list, or a sentence that lists.
                if cand.unit is not None:
                    cand.score += WHICH_ONES_LIST_BONUS
                elif _POINTS_TO_LIST_RE.search(cand.text):
                    # "因下列事项…" whose list could not be found: a lead-in without its items.
                    cand.score -= WHICH_ONES_LIST_BONUS
                elif enumerates_inline(cand.text):
                    cand.score += WHICH_ONES_INLINE_BONUS

    def _compose(self, query: PreparedQuery, hits: list[Hit], confidence: float, claim: Claim | None) -> Answer:
        language = query.language
        candidates = self._candidates(hits)
        if not candidates:
            return self._refuse(language, confidence, reason="no_sentences")
        detail = requested_detail(query.raw + " " + query.normalized)
        if detail is None and claim is not None and claim.figure is not None:
            # "是不是只有30个社区能用？" asks for a count as surely as "有多少个社区能用？".
            detail = next(d for d in DETAILS if d.name == ("count" if claim.kind == "count" else "amount"))
        self._score(query, candidates, detail)
        claimed = self._check_claim(claim, candidates)
        ranked = sorted(candidates, key=lambda c: -c.score)
        best = ranked[0].score
        which_ones = self.cues.asks(query.raw + " " + query.normalized, "which_ones")
        chosen = _choose(ranked, best - self.settings.composer.window, self.settings.max_sentences,
                         whole_lists=which_ones)
        chunk_order = list(dict.fromkeys(c.hit.chunk.chunk_id for c in chosen))[: self.settings.max_citations]
        chosen = [c for c in chosen if c.hit.chunk.chunk_id in chunk_order]
        # Read in document order: chunk order of first appearance, then position in the chunk.
        chosen.sort(key=lambda c: (chunk_order.index(c.hit.chunk.chunk_id), c.hit.chunk.text.find(c.text)))

        citations: list[Citation] = []
        parts: list[str] = []
        for cand in chosen:
            chunk = cand.hit.chunk
            if chunk.chunk_id not in [c.chunk_id for c in citations]:
                citations.append(
                    Citation(doc_id=chunk.doc_id, title=cand.hit.meta.title, chunk_id=chunk.chunk_id, text=chunk.text,
                             section=chunk.section)
                )
            marker = f"[{[c.chunk_id for c in citations].index(chunk.chunk_id) + 1}]"
            sources = [chunk.text, cand.hit.meta.title, query.raw]
            if ungrounded_numerals(cand.text, sources):
                continue  # never let a numeral through that the cited text does not carry
            parts.append(_attach_marker(cand.text, marker))
        if not parts:
            return self._refuse(language, confidence, reason="unverified")
        detail_missing = detail is not None and claimed is None and not self._detail_answered(detail, query, chosen)
        if detail is not None and detail_missing:
            # Say what the corpus does say (e.g. "标准由当地规定"), refuse the figure, offer a worker;
            # a sentence about another subject (法律费用保险 for 公积金利率) is no context at all.
            parts = parts[:1]
            idf = self.retriever.store.load().inverse_document_frequency
            if weighted_overlap(content_terms(query.normalized), _MARKER_RE.sub("", parts[0]), idf) \
                    < self.settings.detail_subject_overlap:
                return self._refuse(language, confidence, reason=f"{detail.name}_not_in_corpus")
        used = {int(m[1:-1]) for p in parts for m in _MARKER_RE.findall(p)}
        citations, parts = _renumber(citations, parts, used)
        text = "".join(parts) if language == "zh" else " ".join(parts)
        if detail is not None and detail_missing:
            sep = "" if language == "zh" else " "
            text = sep.join([self.wording.say(detail.missing, language), text, self.wording.say("handoff", language)])
            return Answer(answer=text, refused=True, confidence=confidence, citations=citations, language=language,
                          reason=f"{detail.name}_not_in_corpus")
        if language == "en" and all(c.doc_id and _is_chinese_doc(c.text) for c in citations):
            text = self.wording.say("from_chinese_documents", language, answer=text)
        reason = None
        if claim is not None and claim.figure is not None:
            sep = "" if language == "zh" else " "
            said = claim.figure.say(language)
            if claimed is None:
                # Nothing in the documents counts or prices this: the figure is neither confirmed nor echoed.
                text, reason = self.wording.say("claim_unchecked", language) + sep + text, "claim_unchecked"
            else:
                verdict_id = "claim_confirmed" if claimed else "claim_wrong"
                text, reason = self.wording.say(verdict_id, language, claim=said) + sep + text, verdict_id
        return Answer(answer=text, refused=False, confidence=confidence, citations=citations, language=language,
                      reason=reason)

    def _check_claim(self, claim: Claim | None, candidates: list[Candidate]) -> bool | None:
        """Check a claimed figure against the figures the document's sentences state, and put the
        sentence that settles it first: True (confirmed), False (wrong), None (nothing to check by)."""
        if claim is None or claim.figure is None:
            return None
        stated = [(cand, figure) for cand in candidates for figure in figures(cand.text)]
        settled = settle(claim, [f for _, f in stated])
        if settled is None:
            return None
        result, settling = settled
        if not result and claim.figure.timed and len({stated[i][1].value for i in settling}) > 1:
            # A length of time given by condition (12, 18 or 24 months by years of contributions):
            # the resident's is wrong under every condition, and the answer keeps them all.
            return result
        # Of the figures that settle it (several amounts, none with a subject of its own: 100元
        # for 70-79, 800元 for 100+), the sentence the question is most about leads: "aged 100 …
        # 1000 yuan, is that right?" is denied with the 100+ row, not the first row.
        index = max(settling, key=lambda i: (stated[i][0].score, -i))
        # The settling sentence leads the answer (ahead of every other by more than the window).
        stated[index][0].score = max(c.score for c in candidates) + self.settings.composer.window + 1.0
        return result

    def _detail_answered(self, detail: DetailKind, query: PreparedQuery, chosen: list[Candidate]) -> bool:
        """A figure answers the question only in a sentence about the question's subject: 1350万元
        for legal cost insurance is no answer to 低保标准是多少. A count of the very thing asked
        ("多少户" and 79997户) needs less of the question's wording around it."""
        idf = self.retriever.store.load().inverse_document_frequency
        # Judged on the question's subject, not on the verb it asks with ("花了多少钱" for 投入).
        terms = self._detail_words.subject_terms(detail.name, content_terms(query.normalized))
        asked = _ASKED_MEASURE_RE.search(query.normalized)
        counted = self._detail_words.measures(asked.group(1)) | {"个"} if asked else frozenset()
        for cand in chosen:
            if not detail.present.search(cand.text):
                continue
            context = " ".join([cand.text, cand.faq_question or "", cand.hit.chunk.section])
            needed = self.settings.detail_subject_overlap
            # 个 counts anything: "几家食堂" is answered by "23个社区食堂"; 种 is answered by 类.
            if asked and any(f.measure in counted for f in figures(cand.text)):
                needed = self.settings.counted_subject_overlap
            elif detail.name == "count" and query.language == "en":
                # No measure word to match in English, and chatty English questions share few
                # words with the documents: a sentence that counts something, and is on topic at all.
                needed = self.settings.english_count_subject_overlap
            if weighted_overlap(terms, context, idf) >= needed:
                return True
        return False

    # ---- computed answers from benefit tables ----------------------------------------------

    def _benefit_tables(self) -> list[BenefitTable]:
        store = self.retriever.store
        generation = store.generation()
        if self._tables is None or self._tables[0] != generation:
            tables = [t for meta in store.benefit_documents() for t in BenefitTable.from_meta(meta)]
            self._tables = (generation, tables)
        return self._tables[1]

    def _current_scope(self) -> Scope:
        store = self.retriever.store
        generation = store.generation()
        if self._scope is None or self._scope[0] != generation:
            index = store.load()
            # Policy documents only: 2,651 statute articles between them use almost every noun
            # (股票, 游戏 …) without making Linli able to answer about it.
            policy_chunks = [c for c in index.chunks if index.metas[c.doc_id].category != "law"]
            text = "\n".join([c.text + " " + " ".join(c.heading_path) for c in policy_chunks]
                             + [m.title for m in index.metas.values() if m.category != "law"])
            lexicon = self.retriever.lexicon
            # Policy subjects (医保, 低保, 高龄津贴 and what residents call them), not people (老人).
            terms = set(lexicon.terms)
            canonical = {v for v in lexicon.synonyms.values() if any(v in t or t in v for t in terms)}
            subjects = terms | canonical | {w for w, c in lexicon.synonyms.items() if c in terms | canonical}
            self._scope = (generation, Scope(text, subjects, self._resident_words, self._foreign_places))
        return self._scope[1]

    def benefit_table(self, table_id: str) -> BenefitTable | None:
        """The table an indexed document declares with this id (the `BenefitTables` seam that
        procedures' eligibility rules read, so they use the rows answers cite)."""
        return next((t for t in self._benefit_tables() if t.table_id == table_id), None)

    def benefit_amounts(self) -> set[float]:
        """Every amount the shipped benefit tables carry (to doubt a misheard one)."""
        return {b.amount for t in self._benefit_tables() for b in t.brackets}

    def _table_citation(self, table: BenefitTable, needle: str) -> Citation:
        meta, _body, chunks = self.retriever.store.get_document(table.doc_id)
        chunk = next((c for c in chunks if needle in c.text), None) or next(
            (c for c in chunks if "|" in c.text), chunks[0]
        )
        return Citation(doc_id=meta.doc_id, title=meta.title, chunk_id=chunk.chunk_id, text=chunk.text,
                        section=chunk.section)

    def _bracket(self, bracket: Bracket, language: str) -> str:
        if bracket.max is None:
            return self.wording.say("bracket_open_ended", language, min=bracket.min)
        return self.wording.say("bracket_range", language, min=bracket.min, max=bracket.max)

    def _benefit_answer(self, q: BenefitQuery, language: str, claim: Claim | None = None) -> Answer:
        t = q.table
        sep = " " if language == "en" else ""
        if q.below_minimum:
            lowest = self._bracket(t.brackets[0], language)
            citation = self._table_citation(t, lowest if language == "zh" else f"{t.minimum_age}")
            text = self.wording.say("benefit_below_minimum_age", language, title=t.title, subject=t.subject,
                                    minimum_age=t.minimum_age, age=q.age)
            if claim is not None and claim.figure is not None and claim.figure.kind == "money":
                text = self.wording.say("claim_wrong", language, claim=claim.figure.say(language)) + sep + text
            return Answer(answer=text, refused=False, confidence=1.0, citations=[citation], language=language,
                          reason="below_minimum_age")
        if q.bracket is None:
            # An unpublished bracket: say so, and never a neighbouring bracket's amount or the
            # resident's own figure, which would read like an answer.
            citation = self._table_citation(t, "80")
            claim_note = self.wording.say("claim_unpublished", language) if claim is not None else ""
            text = sep.join(p for p in (t.missing_note, claim_note, self.wording.say("handoff", language)) if p)
            return Answer(answer=text.strip(), refused=True, confidence=0.0, citations=[citation], language=language,
                          reason="amount_not_published")
        b = q.bracket
        amount = f"{b.amount:g}"
        citation = self._table_citation(t, amount)
        # The Chinese sentence says 每月 itself, so it takes the unit without its "/月".
        unit = t.unit.split("/")[0] if language == "zh" else t.unit
        bracket = self._bracket(b, language)
        text = self.wording.say("benefit_amount", language, title=t.title, age=q.age, bracket=bracket,
                                amount=amount, unit=unit)
        sources = [citation.text, citation.title, t.title, str(q.age), bracket]
        if ungrounded_numerals(text, sources):
            return self._refuse(language, 0.0, reason="unverified")
        reason = "benefit_table"
        if claim is not None and claim.other_age is not None:
            other = t.lookup(claim.other_age)
            verdict_id = "claim_same_bracket" if other == b else "claim_other_bracket"
            text = self.wording.say(verdict_id, language, age=q.age, other_age=claim.other_age) + sep + text
            reason = verdict_id
        elif claim is not None and claim.figure is not None and claim.figure.kind == "money":
            verdict_id = "claim_confirmed" if abs(claim.figure.value - b.amount) < 1e-6 else "claim_wrong"
            text = self.wording.say(verdict_id, language, claim=claim.figure.say(language)) + sep + text
            reason = verdict_id
        return Answer(answer=text, refused=False, confidence=1.0, citations=[citation], language=language,
                      reason=reason)

    def _refuse(self, language: str, confidence: float, reason: str) -> Answer:
        return Answer(answer=self.wording.say("refusal", language), refused=True, confidence=confidence,
                      citations=[], language=language, reason=reason)


def _char_pairs(text: str) -> set[str]:
    """Chinese character pairs (and Latin words) of a text, for a typo-tolerant overlap."""
    pairs = {text[i : i + 2] for i in range(len(text) - 1) if _CJK_PAIR_RE.fullmatch(text[i : i + 2])}
    return pairs | set(re.findall(r"[a-z]{3,}", text.lower()))


def _attach_lists(chunks: list[Chunk], by_chunk: dict[str, list[Candidate]]) -> None:
    """Tie each list's sentences together (Candidate.unit), chunks in document order. A lead-in
    that ends its chunk ("因下列事项没有委托代理人的，…。") takes the list that opens the next one."""
    found = [(chunk, enumerations(chunk.text)) for chunk in chunks]
    for n, (chunk, units) in enumerate(found):
        cands = by_chunk[chunk.chunk_id]
        for lead, items in units:
            members = [cands[j] for j in items if j < len(cands)]
            if lead is None and members and members[0].unit is not None:
                continue  # the list the previous chunk's lead-in announced
            if lead is not None and not items and n + 1 < len(found):
                nxt_chunk, nxt_units = found[n + 1]
                opening = next((its for ld, its in nxt_units if ld is None and its and its[0] == 0), None)
                nxt_cands = by_chunk[nxt_chunk.chunk_id]
                members = [nxt_cands[j] for j in opening or [] if j < len(nxt_cands)]
            if lead is not None and members:
                members = [cands[lead], *members]
            if len(members) < 2:
                continue
            for cand in members:
                cand.unit, cand.led = members, lead is not None


def _choose(ranked: list[Candidate], floor: float, cap: int, *, whole_lists: bool) -> list[Candidate]:
    """The answer's sentences: the best-ranked down to `floor`, at most `cap` of them, where a
    list counts as one. A lead-in always brings its items ("同时符合下面三个条件…" is no answer
    without the three), and ordinal items (第一…第二…) come all or none; with `whole_lists` (a
    "which ones" question) any item of any list brings the whole list."""
    chosen: list[Candidate] = []
    taken: set[int] = set()
    units = 0
    for cand in ranked:
        if cand.score < floor or units >= cap:
            break
        if id(cand) in taken:
            continue
        group = [cand]
        if cand.unit is not None and (whole_lists or (cand.led and cand is cand.unit[0])
                                      or _is_ordinal(cand.text)):
            group = cand.unit
        for member in group:
            if id(member) not in taken:
                taken.add(id(member))
                chosen.append(member)
        units += 1
    return chosen


def _attach_marker(sentence: str, marker: str) -> str:
    match = re.search(r"([。！？；.!?;]+[”’」』）)]*)$", sentence)
    if not match:
        return sentence + marker + ("。" if re.search(r"[\u4e00-\u9fff]", sentence) else ".")
    return sentence[: match.start()] + marker + sentence[match.start() :]


def _renumber(citations: list[Citation], parts: list[str], used: set[int]) -> tuple[list[Citation], list[str]]:
    keep = [i for i in range(1, len(citations) + 1) if i in used]
    mapping = {old: new for new, old in enumerate(keep, 1)}
    parts = [_MARKER_RE.sub(lambda m: f"[{mapping[int(m.group(0)[1:-1])]}]", p) for p in parts]
    return [citations[i - 1] for i in keep], parts


def noting_chinese_sources(answer: Answer, wording: Wording) -> Answer:
    """An English answer drawn only from Chinese documents says so ("From the Chinese policy
    documents: …"), whichever composer worded it; once. Refusals and claim verdicts word their own."""
    if answer.refused or answer.reason is not None or answer.language != "en" or not answer.citations:
        return answer
    if not all(c.doc_id and _is_chinese_doc(c.text) for c in answer.citations):
        return answer
    prefix = wording.say("from_chinese_documents", "en", answer="").strip()
    if answer.answer.startswith(prefix):
        return answer
    return answer.model_copy(update={"answer": wording.say("from_chinese_documents", "en", answer=answer.answer)})


def _is_chinese_doc(text: str) -> bool:
    return len(re.findall(r"[\u4e00-\u9fff]", text)) > len(text) * 0.3

