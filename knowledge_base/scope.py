"""Whether a question is about something the corpus covers at all. "月球上的医保怎么报销" shares
医保 with the corpus, and retrieval alone answers it about 医保; the place it asks about, a word no
document uses, tied to the policy subject by 上的, says it is not a question Linli can answer."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path

import jieba
import jieba.posseg as pseg
from pypinyin import lazy_pinyin

_CJK_WORD_RE = re.compile(r"[\u4e00-\u9fff]{2,6}")
# What ties a qualifying noun to the policy subject after it: 月球上的医保, 游戏里的低保,
# 宠物狗的医保, 火星上能领低保; modals and asking verbs may stand between.
_TIE_RE = re.compile(
    r"(?:上的|里的|中的|用的|的|上|里|中)(?:能不能|可不可以|可以|也能|能|想|要|怎么|咋)?"
    r"(?:领取|领|参加|参保|办理|办|申请|交|缴|报销|享受|买|上)?"
)


# jieba tags some adverb-led pieces as nouns (都行, 能告, 人能): a word starting with an adverb or
# modal is not a thing the question is about.
_ADVERB_HEADS = frozenset("都也就还才能会要可再又很太")

_CLAUSE_END_RE = re.compile(r"[，,。.？?！!；;：:\s]+")
# Names of people, places and organisations are not what a question is about: 北京的高龄津贴怎么
# 申请 is answered by the national rules (an amount for a place without a table is refused elsewhere).
_NOT_TOPICS = frozenset({"nr", "nrt", "nrfg", "ns", "nt"})
# Asking to have something handled, paid or bought (办个护照, 交补习班学费): the thing is what the
# question is about. A measure word may stand between ("办个护照").
_REQUEST_OBJECT_EN_RE = re.compile(
    r"\b(?:apply for|renew|buy|pay for)\s+(?:(?:my|a|an|the|his|her|our|their|new)\s+)*([a-z]{3,})\b",
    re.IGNORECASE)
_REQUEST_BEFORE_RE = re.compile(r"(?:办理|办|申请|报名|交|缴|买)(?:一|个|张|本|份|点|些|下|了)*$")


class Scope:
    """`corpus_text`: the policy documents' text (chunks, headings, titles), whose words' sounds
    also excuse a typo (申清 for 申请); `subjects`: the policy subjects (医保, 低保 …);
    `resident_words`: words about the resident's own life, never out of scope."""

    def __init__(self, corpus_text: str, subjects: Iterable[str], resident_words: Iterable[str],
                 foreign_places: Iterable[str] = ()) -> None:
        self._corpus = corpus_text
        self._corpus_folded = corpus_text.casefold()
        self._sounds: set[str] | None = None
        self._lock = threading.Lock()
        self.subjects = frozenset(subjects)
        self.resident_words = frozenset(resident_words)
        # Longest first, so "Hong Kong" is named rather than a shorter place inside it.
        self.foreign_places = sorted({p for p in foreign_places if p.casefold() not in self._corpus_folded},
                                     key=len, reverse=True)
        self._foreign_place_re = _place_pattern(self.foreign_places)

    def _sounds_like_corpus_word(self, word: str) -> bool:
        with self._lock:
            if self._sounds is None:
                # Built on the first unknown word only (about a second).
                words = {w for w in jieba.cut(self._corpus) if _CJK_WORD_RE.fullmatch(w)}
                self._sounds = {"".join(lazy_pinyin(w)) for w in words}
        return "".join(lazy_pinyin(word)) in self._sounds

    def _foreign(self, word: str, flag: str) -> bool:
        return (len(word) >= 2 and flag[:1] == "n" and flag not in _NOT_TOPICS and word[0] not in _ADVERB_HEADS
                and _CJK_WORD_RE.fullmatch(word)
                is not None and word not in self.resident_words and word not in self.subjects
                and word not in self._corpus and not self._sounds_like_corpus_word(word))

    def out_of_scope_word(self, question: str) -> str | None:
        """The word that puts a question out of scope, or None: a country or region whose own
        benefits no document covers (日本, Germany), a thing no document speaks of that the question
        asks to have handled, paid or bought (办个护照, 交补习班学费), or such a thing tying a policy
        subject to it (月球上的医保)."""
        place = self._foreign_place_re.search(question) if self._foreign_place_re else None
        if place is not None:
            return place.group(0)
        return self.requested_foreign_thing(question) or self.foreign_subject(question)

    def requested_foreign_thing(self, question: str) -> str | None:
        """A noun no document uses as the object of a request verb: 给我家猫办个护照, 给孙子交补习班学费,
        renew my passport."""
        for match in _REQUEST_OBJECT_EN_RE.finditer(question):
            noun = match.group(1).casefold()
            if not re.search(rf"\b{noun}(?:s|es)?\b", self._corpus_folded):
                return match.group(1)
        position = 0
        for word, flag in pseg.cut(question):
            start, position = position, position + len(word)
            if _REQUEST_BEFORE_RE.search(question[max(0, start - 6):start]) and self._foreign(word, flag):
                return word
        return None

    def foreign_subject(self, question: str) -> str | None:
        """The word the question is really about when no document speaks of it and it qualifies a
        policy subject (月球 in 月球上的医保怎么报销, 火星上能领低保吗); None for questions in scope."""
        position = 0
        clause_start = True  # nothing but names since the last punctuation
        for word, flag in pseg.cut(question):
            starts_clause = clause_start
            position += len(word)
            clause_start = bool(_CLAUSE_END_RE.fullmatch(word)) or (clause_start and flag in _NOT_TOPICS)
            if len(word) < 2:
                continue
            tie = _TIE_RE.match(question, position)
            if tie is None or not tie.group(0):
                continue
            # A bare 的 after a word inside a clause is usually a relative clause about the subject
            # ("给老人管饭的助餐点"), not a place or thing it belongs to; 上/里/中 always tie.
            if tie.group(0).startswith("的") and not starts_clause:
                continue
            rest = question[tie.end():]
            if any(rest.startswith(subject) for subject in self.subjects) and self._foreign(word, flag):
                return word
        return None


def _place_pattern(places: list[str]) -> re.Pattern[str] | None:
    """Chinese names match anywhere; Latin names as whole words, any case (UK, not "ukulele")."""
    if not places:
        return None
    alternatives = [re.escape(p) if not p.isascii() else rf"\b{re.escape(p)}\b" for p in places]
    return re.compile("|".join(alternatives), re.IGNORECASE)


def read_places(path: Path) -> list[str]:
    """One place per line (names may hold spaces: "Hong Kong"), skipping blanks and # comments."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]
