"""Chinese-aware text utilities: query normalisation, jieba tokenisation with the domain
dictionary, pinyin typo repair, sentence splitting and language detection."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

import jieba
import yaml
from opencc import OpenCC

jieba.setLogLevel(logging.WARNING)

SENTENCE_END = "。！？；!?;"
_SENTENCE_RE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』）)]*|\n|$)")
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_TOKEN_KEEP_RE = re.compile(r"[\w\u4e00-\u9fff]", re.UNICODE)

# Function words that carry no retrieval signal. Kept small on purpose: over-eager stop lists
# drop words such as 多少 that the answer composer needs.
STOPWORDS = frozenset(
    """的 了 吗 呢 吧 啊 呀 哦 嘛 么 是 在 我 你 他 她 它 们 我们 你们 他们 这 那 这个 那个 就 都 也 还 和 与
    及 或 请问 请 问 一下 想 想问 知道 能 可以 会 要 有 没有 没 不 个 给 让 把 被 对 吗? 呗 咋 啥 什么 怎么
    怎么样 如何 哪 哪里 哪儿 俺 咱 您 老 家 说 去 到 从 被 又 很 太 得 地 着 过 吧 嗯 哈
    the a an of to in on for is are be do does i my me you your what how can where when which who it this
    that and or with at by""".split()  # noqa: SIM905 - a word list reads better as words than as quoted literals
)

# Question words: they say what kind of answer is wanted, not what it is about, so coverage and
# sentence matching ignore them (BM25 keeps them: bm25 idf already discounts them).
QUESTION_WORDS = frozenset(
    """多少 多少钱 多少人 多长 多久 几 几个 几天 一共 咋整 咋办 咋弄 怎么办 怎么弄 能不能 是不是 可不可以
    行不行 要不要 有没有 不 吗 啥子 么 呢 没 给不给 能否 算不算 用不用
    how much many did does do into each were was has have will would should could there their them they much
    why whether""".split()  # noqa: SIM905 - as above
)

_t2s = OpenCC("t2s")
_lock = threading.Lock()


def detect_language(text: str, default: str = "zh") -> str:
    """'zh' when the text has Chinese characters in meaningful share, 'en' when it is mostly
    Latin words, and `default` when it has neither (a phone number, "ok", an emoji)."""
    cjk = len(_CJK_RE.findall(text))
    latin = sum(len(w) for w in _LATIN_WORD_RE.findall(text))
    if cjk == 0 and latin == 0:
        return default
    return "zh" if cjk * 3 >= latin else "en"


def to_simplified(text: str) -> str:
    return _t2s.convert(text)


def normalize_width(text: str) -> str:
    # NFKC folds full-width Latin letters/digits and compatibility forms; Chinese punctuation
    # that NFKC leaves alone stays as it is, which the sentence splitter expects.
    return unicodedata.normalize("NFKC", text)


def read_word_list(path: Path) -> list[str]:
    """The first word of each line, skipping blanks and # comments (jieba's user-dictionary
    format, "term [frequency] [pos]", or one word per line)."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line.split()[0])
    return words


class Lexicon:
    """Domain terms and colloquial synonyms, loaded from the data files once."""

    def __init__(self, terms_path: Path, synonyms_path: Path) -> None:
        self.terms: list[str] = read_word_list(terms_path)
        raw = yaml.safe_load(synonyms_path.read_text(encoding="utf-8")) or {}
        self.synonyms: dict[str, str] = {str(k): str(v) for k, v in raw.items()}
        self._synonym_keys = sorted(self.synonyms, key=len, reverse=True)
        # pypinyin is imported where it is used: its tables take 0.2 s to load, which every
        # `linli` command and WeChat callback that never builds a lexicon would pay.
        from pypinyin import Style, lazy_pinyin  # noqa: PLC0415

        self._term_pinyin = {t: tuple(lazy_pinyin(t, style=Style.NORMAL)) for t in self.terms}
        self.terms_path = terms_path

    def install_jieba(self) -> None:
        with _lock:
            jieba.load_userdict(str(self.terms_path))
            for word in list(self.synonyms) + list(self.synonyms.values()):
                jieba.add_word(word, freq=1000)

    def repair_homophones(self, text: str) -> str:
        """Replace a run of characters that sounds exactly like a domain term (低保 typed as
        底保, 医保 as 医宝) with the term itself."""
        chars = list(text)
        if not chars:
            return text
        from pypinyin import Style, lazy_pinyin  # noqa: PLC0415 - see __init__

        # A callable may return one item per character (pypinyin's docs); its stub says one string.
        pinyin = lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: [c for c in s])  # type: ignore[arg-type,return-value]
        if len(pinyin) != len(chars):
            return text
        out = text
        for term, term_py in self._term_pinyin.items():
            n = len(term)
            if n < 2 or term in out:
                continue
            for i in range(len(chars) - n + 1):
                if tuple(pinyin[i : i + n]) == term_py:
                    window = "".join(chars[i : i + n])
                    if _CJK_RE.fullmatch(window[0]) and window != term:
                        out = out.replace(window, term)
                    break
        return out

    def expand_synonyms(self, text: str) -> tuple[str, list[str]]:
        """Return the text with colloquial words replaced by canonical ones, and the list of
        canonical terms that were introduced. Occurrences already inside the canonical term
        (认证 inside 资格认证) are left alone."""
        added: list[str] = []
        out = text
        for key in self._synonym_keys:
            canonical = self.synonyms[key]
            if key not in out or (key in canonical and key == canonical):
                continue
            if canonical in key:  # 吃低保 -> 低保: the canonical word is already there
                continue
            pieces = out.split(canonical)
            replaced = [piece.replace(key, canonical) for piece in pieces]
            if replaced != pieces:
                if canonical not in out:
                    added.append(canonical)
                out = canonical.join(replaced)
        return out, added


@lru_cache(maxsize=4)
def load_lexicon(terms_path: Path, synonyms_path: Path) -> Lexicon:
    lexicon = Lexicon(terms_path, synonyms_path)
    lexicon.install_jieba()
    return lexicon


# Marks that end a message but say nothing about what it asks.
_END_PUNCTUATION = "。.？?！!～~…，, "


def drop_end_punctuation(text: str) -> str:
    """行吗 and 行吗？ are the same message: residents type either, and whisper ends a spoken one
    with 。 or ? as it guesses. A message of punctuation alone is kept as it is."""
    return text.rstrip(_END_PUNCTUATION) or text


def normalize_query(text: str, lexicon: Lexicon) -> tuple[str, str]:
    """Return (normalised question, text for BM25 that keeps original and canonical words)."""
    base = to_simplified(normalize_width(text)).strip()
    base = drop_end_punctuation(re.sub(r"\s+", " ", base))
    repaired = lexicon.repair_homophones(base)
    expanded, added = lexicon.expand_synonyms(repaired)
    lexical = " ".join([repaired, *added]) if expanded == repaired else f"{repaired} {expanded}"
    return expanded, lexical


def tokenize(text: str, *, bigrams: bool = True) -> list[str]:
    """jieba search-mode words (domain dictionary loaded) plus Chinese character bigrams, lower-
    cased, without stopwords and punctuation. Bigrams make retrieval tolerant of words jieba
    splits differently in a colloquial question and in a formal document."""
    text = text.lower()
    tokens: list[str] = []
    for word in jieba.cut_for_search(text):
        word = word.strip()
        if not word or word in STOPWORDS or not _TOKEN_KEEP_RE.search(word):
            continue
        tokens.append(word)
    if bigrams:
        for run in re.findall(r"[\u4e00-\u9fff]{2,}", text):
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


def content_terms(text: str) -> list[str]:
    """Distinct jieba words of a question that carry meaning (used for coverage checks)."""
    seen: dict[str, None] = {}
    for word in jieba.cut(text.lower()):
        word = word.strip()
        if len(word) < 2 and not _CJK_RE.fullmatch(word or "x"):
            continue
        if word in STOPWORDS or word in QUESTION_WORDS or not _TOKEN_KEEP_RE.search(word):
            continue
        seen.setdefault(word, None)
    return list(seen)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Spans (start, end) of sentences, cut after 。！？；(and ASCII .!?; followed by space for
    English) or a newline. Whitespace-only spans are dropped."""
    spans: list[tuple[int, int]] = []
    for match in re.finditer(r"[^。！？；!?;\n]+(?:[。！？；!?;]+[”’」』）)]*)?|(?<=\n)", text):
        start, end = match.span()
        piece = text[start:end]
        if not piece.strip():
            continue
        # English: split further on '. ' boundaries.
        inner = 0
        for m in re.finditer(r"(?<=[a-z0-9)][.])\s+(?=[A-Z0-9(])", piece):
            spans.append((start + inner, start + m.start()))
            inner = m.end()
        spans.append((start + inner, end))
    return [(s, e) for s, e in spans if text[s:e].strip()]

