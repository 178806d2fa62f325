"""Groups questions worded alike, cheaply: normalised text (width, case, punctuation, an opening
"请问", a closing particle), then character-bigram Jaccard similarity against each group's first (most frequent)
wording. "高龄津贴怎么领？" and "高龄津贴怎么领取" land in one group; "低保怎么申请" does not."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

_NOT_WORDS = re.compile(r"[\s\W_]+", re.UNICODE)
# Politeness that opens a question, and particles that close one, without changing what is asked.
_OPENING_POLITENESS = re.compile(r"^(?:你好|您好|请问一下|请问|麻烦问一下|我想问一下|我想问|问一下)+")
_CLOSING_PARTICLES = re.compile(r"[吗呢啊呀吧哦嘛么]+$")


def normalise_question(text: str) -> str:
    folded = _NOT_WORDS.sub("", unicodedata.normalize("NFKC", text).lower())
    return _CLOSING_PARTICLES.sub("", _OPENING_POLITENESS.sub("", folded)) or folded


def bigrams(text: str) -> frozenset[str]:
    """Character bigrams; a one-character text is its own single "bigram"."""
    return frozenset(text[i:i + 2] for i in range(len(text) - 1)) if len(text) > 1 else frozenset({text})


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass
class QuestionGroup:
    """Questions worded alike: `wording` is the most frequent one; `members` every wording with its count."""

    wording: str
    key: frozenset[str]
    members: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(self.members.values())


def group_similar(counted: Iterable[tuple[str, int]], threshold: float) -> list[QuestionGroup]:
    """(question, count) pairs in groups of similar wording, the largest group first. Each
    wording joins the group whose first wording it is most similar to (at least `threshold`),
    trying only groups that share a bigram with it."""
    # Each wording is kept exactly as given: callers look their own numbers up by it (a question
    # that starts with a tab or a space is its own key, not the key stripped).
    by_text: dict[str, int] = defaultdict(int)
    for text, count in counted:
        if text and normalise_question(text):
            by_text[text] += count
    groups: list[QuestionGroup] = []
    by_normal: dict[str, QuestionGroup] = {}
    groups_with: dict[str, list[int]] = defaultdict(list)  # bigram -> indexes into groups
    for text, count in sorted(by_text.items(), key=lambda item: (-item[1], item[0])):
        normal = normalise_question(text)
        group = by_normal.get(normal)
        if group is None:
            key = bigrams(normal)
            # |A ∩ B| for every group sharing a bigram, counted from the index, then Jaccard from it.
            shared: dict[int, int] = defaultdict(int)
            for gram in key:
                for index in groups_with.get(gram, ()):
                    shared[index] += 1
            best, best_score = None, threshold
            for index, common in sorted(shared.items()):
                score = common / (len(key) + len(groups[index].key) - common)
                if score >= best_score and (best is None or score > best_score):
                    best, best_score = index, score
            if best is None:
                group = QuestionGroup(text, key)
                for gram in key:
                    groups_with[gram].append(len(groups))
                groups.append(group)
            else:
                group = groups[best]
            by_normal[normal] = group
        group.members[text] = group.members.get(text, 0) + count
    return sorted(groups, key=lambda g: (-g.count, g.wording))
