"""Post-correction of transcripts: Simplified characters, domain terms restored by pinyin
similarity (津贴 heard as 今天, 低保 as 底保), Chinese numerals before 岁/元 turned into digits, and
implausible ages caught so Linli asks back instead of answering for an 886-year-old."""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import jieba
from pypinyin import Style, lazy_pinyin

from assistant.speech.language_model import BOS, EOS, CharLanguageModel, fuzzy_syllables
from knowledge_base.numbers import cn_to_int
from knowledge_base.text import to_simplified

if TYPE_CHECKING:
    from assistant.speech.transcriber import Listener

_CJK = re.compile(r"[\u4e00-\u9fff]")
_ALL_CJK = re.compile(r"^[\u4e00-\u9fff]+$")
# Particles and pronouns that stand alone far more often than they begin or end a misheard
# word: 俺是 must not become 按时, nor 是指 become 失职.
_FUNCTION_CHARS = frozenset("是的了不在我你他她它就也都又吗呢啊吧把被给和跟到能会要")
_CN_NUMBER_UNIT = re.compile(r"([零〇一二两三四五六七八九十百千]{1,6})(周岁|岁|元|块)")
_LONG_AGE = re.compile(r"(\d{3,})\s*(?:周岁|岁)")
_AMOUNT = re.compile(r"(\d{2,})\s*(元|块)")


@lru_cache(maxsize=65536)
def _syllables(text: str) -> tuple[str, ...]:
    # Cached: restore_terms reads the same windows once per domain term of their length.
    return tuple(lazy_pinyin(text, style=Style.NORMAL))


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


class CorpusSounds:
    """The words of the policy corpus by how they sound (toneless pinyin), to restore words
    whisper heard as homophones that are not words at all: 个人账户 heard as 割人账护, 食堂 as
    时堂, 克拉玛依 as 克拉马一. Only a run that is not itself a word (in the corpus or in jieba's
    dictionary) is replaced, so ordinary speech is left alone."""

    def __init__(self, words: Counter[str], known: Callable[[str], bool]) -> None:
        self.known = known
        self.by_sound: dict[tuple[str, ...], str] = {}
        for word, _count in words.most_common():
            self.by_sound.setdefault(tuple(_syllables(word)), word)
        self.longest = max((len(w) for w in words), default=0)

    @classmethod
    def from_texts(cls, texts: Iterable[str], terms: Iterable[str] = (), min_count: int = 3,
                   max_length: int = 6, keyness: float = 1.0) -> CorpusSounds:
        jieba.initialize()
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(w for w in jieba.cut(text) if 2 <= len(w) <= max_length and _ALL_CJK.match(w))
        # Keep words the corpus uses more than everyday Chinese does (jieba's frequencies):
        # 补贴 and 报销 are restored, 进步 and 按时 are not forced onto a resident's 金不 or 俺是.
        corpus_total = sum(counts.values()) or 1
        general_total = jieba.dt.total or 1
        words = Counter({w: c for w, c in counts.items() if c >= min_count
                         and c / corpus_total >= keyness * jieba.dt.FREQ.get(w, 0) / general_total})
        for term in terms:
            if _ALL_CJK.match(term):
                words[term] += min_count
        return cls(words, lambda w: w in counts or jieba.dt.FREQ.get(w, 0) > 0)

    def restore(self, text: str) -> str:
        # Only runs of single characters (what a misheard word falls apart into) are candidates,
        # cut at jieba's word boundaries: a window across a real word is never rewritten.
        out: list[str] = []
        pieces = jieba.lcut(text, HMM=False)
        i = 0
        while i < len(pieces):
            run = 0
            while i + run < len(pieces) and len(pieces[i + run]) == 1 and _ALL_CJK.match(pieces[i + run]):
                run += 1
            if run < 2:
                out.append(pieces[i])
                i += 1
                continue
            out.append(self._restore_run("".join(pieces[i : i + run])))
            i += run
        return "".join(out)

    def _restore_run(self, run: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(run):
            for n in range(min(self.longest, len(run) - i), 1, -1):
                window = run[i : i + n]
                if self.known(window) or window[0] in _FUNCTION_CHARS or window[-1] in _FUNCTION_CHARS:
                    continue
                word = self.by_sound.get(tuple(_syllables(window)))
                if word is not None and word != window:
                    out.append(word)
                    i += n
                    break
            else:
                out.append(run[i])
                i += 1
        return "".join(out)


_RUN = re.compile(r"[\u4e00-\u9fff\d]+")
_TOKEN = re.compile(r"\d+|[\u4e00-\u9fff]")


class SoundAlikeDecoder:
    """Noisy-channel correction: a character may stand for another that sounds the same
    (toneless pinyin) or nearly so (jing/jin, zhi/zi); a beam search keeps the reading the
    language model finds likeliest once each change pays its cost. 还能申请重财部 reads back as
    还能申请仲裁不, 傻叫 as 啥叫; a sentence the model already likes is left alone.

    The costs are log-probabilities: a change must make the sentence `same_sound_cost` (less
    `same_tone_bonus` for a homophone in the same tone; `near_sound_cost` for a near sound) nats
    likelier than leaving the character as whisper wrote it, plus `frequency_penalty` times how
    much commoner the new character is in the corpus, plus `word_cost` when the character is part
    of a word jieba knows (math.inf keeps such words as they are): a misheard word mostly falls
    apart into single characters, while a real word was mostly heard right."""

    def __init__(self, model: CharLanguageModel, same_sound_cost: float = 3.0, near_sound_cost: float = 6.0,
                 min_count: int = 3, beam: int = 12, same_tone_bonus: float = 1.0,
                 frequency_penalty: float = 0.5, word_cost: float = 6.0) -> None:
        self.model = model
        self.frequency_penalty = frequency_penalty
        self.word_cost = word_cost
        self.same_tone_bonus = same_tone_bonus
        self.same_sound_cost = same_sound_cost
        self.near_sound_cost = near_sound_cost
        self.beam = beam
        self.by_sound: dict[str, list[str]] = defaultdict(list)
        for char, count in model.vocabulary.most_common():
            if count < min_count or not _CJK.match(char):
                continue
            for syllable in _readings(char):
                self.by_sound[syllable].append(char)

    def candidates(self, char: str) -> list[tuple[str, float]]:
        options = {char: 0.0}
        readings = _readings(char)
        tone = _tone(char)
        for syllable in readings:
            for other in self.by_sound.get(syllable, ()):
                bonus = self.same_tone_bonus if _tone(other) == tone else 0.0
                options.setdefault(other, self.same_sound_cost - bonus)
        for syllable in readings:
            for near in fuzzy_syllables(syllable):
                for other in self.by_sound.get(near, ()):
                    options.setdefault(other, self.near_sound_cost)
        # A commoner character is likelier anywhere; only its fit in context may pay for it, or
        # 赔 becomes 配 and 再 becomes 在 wherever whisper heard them right.
        seen = self.model.vocabulary
        own = math.log(seen.get(char, 0) + 1)
        return [(other, cost + self.frequency_penalty * max(0.0, math.log(seen.get(other, 0) + 1) - own))
                if other != char else (other, cost) for other, cost in options.items()]

    def correct(self, text: str) -> str:
        return _RUN.sub(lambda match: self._decode(match.group(0))[0].text, text)

    def readings(self, text: str, n: int) -> list[Reading]:
        """The `n` likeliest readings of the whole text, best first: the best reading of every
        run of characters, and each run's runners-up with the other runs kept at their best."""
        runs = list(_RUN.finditer(text))
        if not runs:
            return [Reading(text, 0.0, 0.0)]
        per_run = [self._decode(match.group(0), per_state=_READINGS_PER_STATE)[:n] for match in runs]

        def assemble(choice: list[Reading]) -> Reading:
            pieces, last = [], 0
            for match, reading in zip(runs, choice, strict=True):
                pieces += [text[last : match.start()], reading.text]
                last = match.end()
            pieces.append(text[last:])
            return Reading("".join(pieces), sum(r.language_score for r in choice), sum(r.change_cost for r in choice))

        best = [options[0] for options in per_run]
        choices = [best] + [[*best[:i], option, *best[i + 1:]]
                            for i, options in enumerate(per_run) for option in options[1:]]
        found: dict[str, Reading] = {}
        for reading in map(assemble, choices):
            found.setdefault(reading.text, reading)
        return sorted(found.values(), key=lambda r: r.score, reverse=True)[:n]

    def _decode(self, run: str, per_state: int = 1) -> list[Reading]:
        """Readings of one run of characters, best first. A hypothesis is kept per language-model
        state (the last order-1 characters), or the `per_state` best of them when several
        readings are wanted: with one per state, readings that differ early are merged away."""
        tokens = _TOKEN.findall(run)
        in_words = _inside_words(run) if self.word_cost else set()
        order = self.model.order
        # Each hypothesis: (score, characters as the model reads them, as written, change cost).
        beam: list[tuple[float, str, str, float]] = [(0.0, BOS * (order - 1), "", 0.0)]
        position = 0
        for token in tokens:
            if token.isdigit():
                options = [("0", token, 0.0)]
            elif position in in_words and self.word_cost == math.inf:
                options = [(token, token, 0.0)]
            else:
                extra = self.word_cost if position in in_words else 0.0
                options = [(c, c, cost + extra if c != token else cost) for c, cost in self.candidates(token)]
            position += len(token)
            extended: dict[str, list[tuple[float, str, str, float]]] = defaultdict(list)
            for score, read, written, spent in beam:
                for symbol, shown, cost in options:
                    state = (read + symbol)[-(order - 1):] if order > 1 else ""
                    extended[state].append((score - cost + self.model.logprob(read, symbol), read + symbol,
                                            written + shown, spent + cost))
            kept = [h for hypotheses in extended.values() for h in heapq.nlargest(per_state, hypotheses, key=_score)]
            beam = heapq.nlargest(self.beam * per_state, kept, key=lambda h: h[:3])
        ended = sorted(((score + self.model.logprob(read, EOS), written, spent)
                        for score, read, written, spent in beam), key=_score, reverse=True)
        readings: dict[str, Reading] = {}
        for score, written, spent in ended:
            readings.setdefault(written, Reading(written, score + spent, spent))
        return list(readings.values())


def _score(hypothesis: tuple) -> float:
    return hypothesis[0]


@dataclass(frozen=True)
class Reading:
    """One way to read a transcript: its language-model log-probability and what its changes cost."""

    text: str
    language_score: float
    change_cost: float

    @property
    def score(self) -> float:
        return self.language_score - self.change_cost


# Readings kept per language-model state when several are wanted (the acoustic check).
_READINGS_PER_STATE = 3


def _inside_words(run: str) -> set[int]:
    """Positions of characters that jieba reads as part of a longer word."""
    positions: set[int] = set()
    start = 0
    for piece in jieba.lcut(run, HMM=False):
        if len(piece) > 1 and _ALL_CJK.match(piece):
            positions.update(range(start, start + len(piece)))
        start += len(piece)
    return positions


@lru_cache(maxsize=20_000)
def _readings(char: str) -> tuple[str, ...]:
    # The main reading only: rare ones (怕 as bo, 块 as yue) would let 怕 become 把.
    reading = lazy_pinyin(char, style=Style.NORMAL)[0]
    return (reading,) if reading.isalpha() else ()


@lru_cache(maxsize=20_000)
def _tone(char: str) -> str:
    return lazy_pinyin(char, style=Style.TONE3, neutral_tone_with_five=True)[0][-1:]


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


def _without_doubled_digit(number: str) -> str | None:
    """"我爸八十六岁" is often heard as 886: a doubled first digit is the usual slip."""
    return number[1:] if len(number) >= 3 and number[0] == number[1] else None


_TENS_AS_ONE = re.compile(r"([2-9])1(\d)")


def _likely_age(number: str) -> str | None:
    """The age meant by an impossible one: 八十六 heard as 886 (first digit doubled), as 816 (十六
    written as 16 after the 8) or as both at once (8816)."""
    undoubled = _without_doubled_digit(number)
    if undoubled and int(undoubled) <= 120:
        return undoubled
    tens = _TENS_AS_ONE.fullmatch(undoubled or number)
    return str(int(tens.group(1)) * 10 + int(tens.group(2))) if tens else None


def implausible(text: str, known_amounts: Iterable[float] = ()) -> Doubt | None:
    """An age over 120; an amount no benefit table has that is a table's amount with its first
    digit doubled (5500 for 500), or far beyond every table."""
    for match in _LONG_AGE.finditer(text):
        number = match.group(1)
        if int(number) > 120:
            guess = _likely_age(number)
            return Doubt(match.group(0), f"{guess}岁" if guess else None)
    amounts = {int(a) for a in known_amounts if a}
    for match in _AMOUNT.finditer(text):
        number = match.group(1)
        if not amounts or int(number) in amounts:
            continue
        guess = _without_doubled_digit(number)
        if guess and int(guess) in amounts:  # 5500元 where a table has 500元
            return Doubt(match.group(0), f"{guess}{match.group(2)}")
        if int(number) > 10 * max(amounts):
            return Doubt(match.group(0), None)
    return None


@dataclass(frozen=True)
class AcousticCheck:
    """The decoder's likeliest readings heard again against the audio. A reading wins on its
    language score, less `cost_weight` × what its changes cost, plus `weight` × how well whisper
    finds it fits the sound (log P(text | audio)). Whisper prefers what it wrote, so a reading the
    audio does not bear out loses, and the sound-alike costs, which stand in for the audio when
    there is none, can count for less."""

    listen: Listener
    candidates: int = 6
    weight: float = 0.3
    cost_weight: float = 0.5
    # The recogniser's runners-up for the same audio: their readings compete with the first's.
    alternatives: tuple[str, ...] = ()

    def choose(self, readings: list[Reading]) -> str:
        if len(readings) == 1:
            return readings[0].text
        fits = self.listen([reading.text for reading in readings])
        return max(zip(readings, fits, strict=True),
                   key=lambda pair: pair[0].language_score - self.cost_weight * pair[0].change_cost
                   + self.weight * pair[1])[0].text


def post_correct(text: str, terms: list[str], sounds: CorpusSounds | None = None,
                 decoder: SoundAlikeDecoder | None = None, check: AcousticCheck | None = None) -> str:
    """Whole words first (domain terms, then corpus words by sound), then character by character
    (the language model, and the audio where there is any), then numerals: each later step sees
    the earlier repairs as context."""
    def whole_words(heard: str) -> str:
        heard = restore_terms(to_simplified(heard).strip(), terms)
        return sounds.restore(heard) if sounds is not None else heard

    text = whole_words(text)
    if decoder is not None and check is not None:
        # Every reading of the first transcript and of the recogniser's runners-up, each heard
        # again: a word the beam search ranked second can win on the language model and the audio.
        # A reading that a runner-up wrote as it is costs nothing to reach from it, however dear
        # it was to reach from the first transcript: the cheapest way to each reading counts.
        readings: dict[str, Reading] = {}
        for heard in (text, *map(whole_words, check.alternatives)):
            for reading in decoder.readings(heard, check.candidates):
                known = readings.get(reading.text)
                if known is None or reading.change_cost < known.change_cost:
                    readings[reading.text] = reading
        text = check.choose(list(readings.values()))
    elif decoder is not None:
        text = decoder.correct(text)
    return normalise_numbers(text)
