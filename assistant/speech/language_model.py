"""A character n-gram language model (interpolated Kneser-Ney) of how Linli's own texts read:
the indexed policy corpus and the words residents use. Speech correction asks it which of the
characters that sound alike a resident most likely said (全港通 or 全岗通, 底饱 or 低保).

Characters, not words: a misheard word falls apart into characters that jieba cannot segment,
and a character model still scores it. Pure Python and small: the corpus gives ≈1.5 M
characters, counted in a few seconds once per index generation."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

BOS, EOS = "\x02", "\x03"
_DIGITS = re.compile(r"\d+")
_LATIN = re.compile(r"[A-Za-z]+")
# Anything that is not a CJK character or a stand-in for a number/Latin word ends a sentence.
_BREAK = re.compile(r"[^\u4e00-\u9fff0a]+")


def sentences(text: str) -> list[str]:
    """Runs of Chinese between punctuation; numbers read as one symbol (0), Latin words as (a)."""
    text = _LATIN.sub("a", _DIGITS.sub("0", text))
    return [piece for piece in _BREAK.split(text) if piece]


class CharLanguageModel:
    """P(char | previous order-1 chars), interpolated Kneser-Ney with one discount per order."""

    def __init__(self, order: int = 3, discount: float = 0.75) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order = order
        self.discount = discount
        # counts[k][context][char]: raw counts at the highest order, continuation counts below.
        self.counts: list[dict[str, Counter[str]]] = [defaultdict(Counter) for _ in range(order)]
        self.totals: list[dict[str, int]] = [{} for _ in range(order)]
        self.vocabulary: Counter[str] = Counter()

    @classmethod
    def fit(cls, texts: Iterable[str | tuple[str, int]], order: int = 3, discount: float = 0.75) -> CharLanguageModel:
        """`texts` are strings, or (string, weight) pairs for text that should count more."""
        model = cls(order, discount)
        top = model.counts[order - 1]
        pad = BOS * (order - 1)
        for item in texts:
            text, weight = (item, 1) if isinstance(item, str) else item
            for sentence in sentences(text):
                model._count(top, pad + sentence + EOS, weight)
        # Lower orders count how many different characters came before (Kneser-Ney continuation).
        for k in range(order - 1, 0, -1):
            lower = model.counts[k - 1]
            for context, followers in model.counts[k].items():
                for char in followers:
                    lower[context[1:]][char] += 1
        for k in range(order):
            model.totals[k] = {context: sum(followers.values()) for context, followers in model.counts[k].items()}
        return model

    def _count(self, top: dict[str, Counter[str]], padded: str, weight: int) -> None:
        for ch in padded:
            if ch not in (BOS, EOS):
                self.vocabulary[ch] += weight
        for i in range(self.order - 1, len(padded)):
            top[padded[i - self.order + 1 : i]][padded[i]] += weight

    def prob(self, context: str, char: str) -> float:
        context = context[-(self.order - 1):] if self.order > 1 else ""
        # Start from the uniform floor and interpolate upwards, order by order.
        p = 1.0 / (len(self.vocabulary) + 1)
        for k in range(self.order):
            history = context[len(context) - k:] if k else ""
            if len(history) < k:
                break
            followers = self.counts[k].get(history)
            if not followers:
                continue
            total = self.totals[k][history]
            seen = followers.get(char, 0)
            p = (max(seen - self.discount, 0.0) + self.discount * len(followers) * p) / total
        return p

    def logprob(self, context: str, char: str) -> float:
        return math.log(self.prob(context, char))

    def score(self, sentence: str) -> float:
        """Log probability of one sentence (without punctuation) from start to end."""
        padded = BOS * (self.order - 1) + sentence
        total = sum(self.logprob(padded[: i + self.order - 1], ch) for i, ch in enumerate(sentence))
        return total + self.logprob(padded, EOS)


# Pairs whisper confuses on Mandarin that speakers (and a TTS voice) blur: front and back
# nasals, flat and retroflex initials, n and l.
_FUZZY_FINALS = (("ing", "in"), ("eng", "en"), ("ang", "an"), ("iang", "ian"), ("uang", "uan"))
_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"))


def fuzzy_syllables(syllable: str) -> set[str]:
    """Syllables one common confusion away (jing → jin, zhi → zi, nan → lan)."""
    variants = set()
    for long, short in _FUZZY_FINALS:
        if syllable.endswith(long):
            variants.add(syllable[: -len(long)] + short)
        elif syllable.endswith(short):
            variants.add(syllable[: -len(short)] + long)
    for long, short in _FUZZY_INITIALS:
        if syllable.startswith(long):
            variants.add(short + syllable[len(long):])
        elif syllable.startswith(short) and not syllable.startswith(("zh", "ch", "sh")):
            variants.add(long + syllable[len(short):])
    variants.discard(syllable)
    return variants
