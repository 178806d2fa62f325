"""The `Composer` seam: who words a grounded answer from the retrieved passages.

`extractive` (default, offline) is the answerer's own sentence ranking (GroundedAnswerer._compose):
the best document's sentences, verbatim, with [n] markers. `langchain` lets a chat model word the
answer in short plain sentences (any LangChain `BaseChatModel`; in production `ChatOpenAI` against
an OpenAI-compatible endpoint a centre runs). The model is never trusted: it reads only the
retrieved passages (a passage carrying an instruction is quarantined first) and the question,
both delimited as data; its reply goes out only when every sentence's figures, dates, age ranges
and names are in the passages it cites, it cites passages that exist, it speaks the resident's
language, and it neither leaks configuration nor repeats an instruction. Anything else (an
error, a timeout, an empty or uncited reply) gets the extractive answer, and the log says why.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import yaml

from assistant.core.domain import Answer, Citation, Hit
from assistant.core.settings import ComposerSettings, LlmSettings
from knowledge_base.claims import Claim
from knowledge_base.retrieval import PreparedQuery

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)

PROMPT_FILE = Path(__file__).resolve().parent / "data" / "llm_composer.yaml"

_MARKER_RE = re.compile(r"\[(\d+)\]")
# Markers as models write them: 【1】, [1, 2], [1、2], [1][2].
_LOOSE_MARKER_RE = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]】]")
_SENTENCE_END_RE = re.compile(r"[。！？!?；;\n]|\.(?=\s|\[|$)")
_TRAILING_MARKERS_RE = re.compile(r"(?:\s*\[\d+\])+")
# Text a reader never sees: HTML comments, and the delimiters the prompt puts around data.
_HIDDEN_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_DELIMITER_RE = re.compile(r"<\s*/?\s*(?:passages?|question)\b[^>]*>", re.IGNORECASE)
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")
_CJK_PAIR_RE = re.compile(r"(?=([\u4e00-\u9fff]{2}))")
_LETTER_RE = re.compile(r"[A-Za-z\u4e00-\u9fff]")


@dataclass(frozen=True)
class ComposeRequest:
    """What a composer words an answer from: the prepared question, the retrieved hits (best
    first), the answer's confidence and the figure the resident claims, if any."""

    query: PreparedQuery
    hits: list[Hit]
    confidence: float
    claim: Claim | None = None


@runtime_checkable
class Composer(Protocol):
    name: str

    def compose(self, request: ComposeRequest) -> Answer: ...


# (text, cited passages' texts) -> what in the text the passages do not carry. The answerer's
# verifier (knowledge_base.answering.ungrounded_facts), handed in so this module needs no answerer.
Verifier = Callable[[str, list[str]], list[str]]


def visible_text(text: str) -> str:
    """The text without invisible format characters (zero-width spaces and joiners, bidi
    controls): they hide an instruction from a reader's eye and from a pattern, not from a model."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


@dataclass(frozen=True)
class ComposerPrompt:
    """The prompt and the guard patterns of data/llm_composer.yaml."""

    system: str
    user: str
    language_names: dict[str, str]
    no_answer: str
    instruction_patterns: tuple[re.Pattern[str], ...]
    leak_patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def load(cls, path: Path = PROMPT_FILE) -> ComposerPrompt:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        missing = {"system", "user", "language_names", "no_answer", "instruction_patterns", "leak_patterns"} - set(data)
        if missing:
            raise ValueError(f"{path}: missing {sorted(missing)}")
        for key, needed in (("system", ("{language_name}", "{max_sentences}")), ("user", ("{passages}", "{question}"))):
            absent = [p for p in needed if p not in data[key]]
            if absent:
                raise ValueError(f"{path}: `{key}` lacks the placeholders {absent}")
        try:
            instructions = tuple(re.compile(p, re.IGNORECASE) for p in data["instruction_patterns"])
            leaks = tuple(re.compile(p, re.IGNORECASE) for p in data["leak_patterns"])
        except re.error as exc:
            raise ValueError(f"{path}: a pattern does not compile: {exc}") from None
        return cls(str(data["system"]).strip(), str(data["user"]).strip(), dict(data["language_names"]),
                   str(data["no_answer"]), instructions, leaks)

    def is_instruction(self, text: str) -> bool:
        """Whether the text addresses an assistant or a model (ignore your rules, say X instead,
        print your prompt) rather than a reader."""
        seen = unicodedata.normalize("NFKC", visible_text(text))  # ｉｇｎｏｒｅ reads as ignore
        return any(p.search(seen) for p in self.instruction_patterns)


@lru_cache(maxsize=1)
def default_prompt() -> ComposerPrompt:
    """data/llm_composer.yaml, read once per process (like the wording files)."""
    return ComposerPrompt.load()


@lru_cache(maxsize=20_000)
def carries_instruction(text: str) -> bool:
    """A passage that addresses an assistant is quarantined: no composer reads or cites it.
    Remembered by text: the same chunks come back question after question."""
    return default_prompt().is_instruction(text)


class ExtractiveComposer:
    """Today's composer: the answerer's ranked sentences of the best document (the function is
    the answerer's own, handed in, so the ranking lives in one place)."""

    name = "extractive"

    def __init__(self, compose: Callable[[ComposeRequest], Answer]) -> None:
        self._compose = compose

    def compose(self, request: ComposeRequest) -> Answer:
        return self._compose(request)


@dataclass(frozen=True)
class Passage:
    marker: int
    citation: Citation
    text: str  # what the model reads, and what its sentences are verified against


class LangChainComposer:
    """A chat model words the answer; the extractive composer is the fallback for every failure.

    The extractive answer is composed first (it is cheap, and it is what goes out on any
    failure): refusals and claim verdicts are rules' decisions and go out as they are; a plain
    answer is handed to the model to word, with the extractive answer's cited passages first."""

    name = "langchain"

    def __init__(self, model: BaseChatModel, settings: LlmSettings, fallback: Composer, verifier: Verifier, *,
                 max_sentences: int = 3, prompt: ComposerPrompt | None = None) -> None:
        self.model = model
        self.settings = settings
        self.fallback = fallback
        self.verifier = verifier
        self.max_sentences = max_sentences
        self.prompt = prompt or default_prompt()
        self._in_flight = threading.BoundedSemaphore(settings.max_in_flight)
        # Configuration a reply must never show: the endpoint, the model's name, a real key.
        key = settings.api_key.get_secret_value()
        self._secrets = [s for s in (settings.base_url, settings.model, key if len(key) >= 12 else "") if s]

    # ---- the answer -----------------------------------------------------------------------

    def compose(self, request: ComposeRequest) -> Answer:
        extractive = self.fallback.compose(request)
        if extractive.refused or extractive.reason is not None:
            return extractive
        started = time.perf_counter()
        if self.prompt.is_instruction(request.query.raw):
            # The question guard took out what it knows; whatever instruction is left is not
            # handed to a model that might follow it.
            return self._fall_back(extractive, "instruction_in_question", started)
        passages = self.passages(request, extractive)
        if not passages:
            return self._fall_back(extractive, "no_passages", started)
        reply, failure = self._call_model(self.messages(request.query, passages))
        if failure is not None:
            return self._fall_back(extractive, failure, started)
        answer, problem = self.check(reply or "", passages, request)
        if answer is None:
            return self._fall_back(extractive, problem or "rejected", started)
        log.info("composer=langchain outcome=worded passages=%d citations=%d ms=%.0f", len(passages),
                 len(answer.citations), (time.perf_counter() - started) * 1000)
        return answer

    def _fall_back(self, extractive: Answer, why: str, started: float) -> Answer:
        # The reason only: never the question or the reply (they may carry a resident's details).
        log.info("composer=langchain outcome=extractive_fallback reason=%s ms=%.0f", why,
                 (time.perf_counter() - started) * 1000)
        return extractive

    # ---- what the model reads -------------------------------------------------------------

    def passages(self, request: ComposeRequest, extractive: Answer) -> list[Passage]:
        """The extractive answer's cited chunks first (the ranker's best evidence), then the
        retrieved hits, without repeats and without quarantined ones."""
        citations = list(extractive.citations) + [
            Citation(doc_id=h.chunk.doc_id, title=h.meta.title, chunk_id=h.chunk.chunk_id, text=h.chunk.text,
                     section=h.chunk.section) for h in request.hits]
        out: list[Passage] = []
        seen: set[str] = set()
        for citation in citations:
            if citation.chunk_id in seen:
                continue
            seen.add(citation.chunk_id)
            text = _DELIMITER_RE.sub(" ", _HIDDEN_RE.sub(" ", visible_text(citation.text))).strip()
            if not text or any(self.prompt.is_instruction(t) for t in (citation.text, text, citation.title)):
                continue
            out.append(Passage(len(out) + 1, citation, text))
            if len(out) >= self.settings.max_passages:
                break
        return out

    def messages(self, query: PreparedQuery, passages: Sequence[Passage]) -> list[tuple[str, str]]:
        language_name = self.prompt.language_names.get(query.language, query.language)
        system = self.prompt.system.format(language_name=language_name, max_sentences=self.max_sentences)
        numbered = "\n".join(f'<passage id="{p.marker}" title="{_attribute(p.citation.title)}">\n{p.text}\n</passage>'
                             for p in passages)
        question = _DELIMITER_RE.sub(" ", visible_text(query.raw)).strip()
        return [("system", system), ("human", self.prompt.user.format(passages=numbered, question=question))]

    # ---- the call, within its budget ------------------------------------------------------

    def _call_model(self, messages: list[tuple[str, str]]) -> tuple[str | None, str | None]:
        """(reply, None), or (None, why not). The call runs in a daemon thread so that a hung
        endpoint costs a question at most `budget_s`, and never holds the process open."""
        if not self._in_flight.acquire(blocking=False):
            return None, "busy"
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["reply"] = self.model.invoke(messages)
            except Exception as exc:  # noqa: BLE001 - any endpoint failure means: the extractive answer
                box["error"] = type(exc).__name__
            finally:
                self._in_flight.release()

        worker = threading.Thread(target=call, name="llm-composer", daemon=True)
        worker.start()
        worker.join(self.settings.budget_s)
        if worker.is_alive():
            return None, "timeout"
        if "error" in box:
            return None, f"error:{box['error']}"
        return _reply_text(box.get("reply")), None

    # ---- the guardrails -------------------------------------------------------------------

    def check(self, reply: str, passages: Sequence[Passage], request: ComposeRequest) -> tuple[Answer | None, str]:
        """The reply as an Answer with its citations renumbered, or (None, why it cannot go out)."""
        text = visible_text(reply).strip()
        if not text:
            return None, "empty"
        if text == self.prompt.no_answer or self.prompt.no_answer in text:
            return None, "model_declined"
        if self._leaks(text, " ".join(p.text for p in passages)):
            return None, "leak"
        text = _normalise_markers(text)
        sentences = _cited_sentences(text)
        if any(self.prompt.is_instruction(body) for body, _ in sentences):
            return None, "instruction_echoed"
        cited = {m for _, markers in sentences for m in markers}
        if not cited:
            return None, "no_citations"
        if any(m < 1 or m > len(passages) for m in cited):
            return None, "unknown_citation"
        if not _in_language(_MARKER_RE.sub("", text), request.query.language):
            return None, "wrong_language"
        by_marker = {p.marker: p for p in passages}
        for body, markers in sentences:
            sources = [s for m in markers for s in (by_marker[m].text, by_marker[m].citation.title)]
            if not markers:
                # A sentence after the last marker cites nothing: fine for "请带好证件。", not for a figure.
                if self.verifier(body, []):
                    return None, "uncited_fact"
                continue
            if self.verifier(body, sources):
                return None, "ungrounded"
            if _support(body, sources) < self.settings.min_support:
                return None, "unsupported"
        order = list(dict.fromkeys(int(m) for m in _MARKER_RE.findall(text)))
        mapping = {old: new for new, old in enumerate(order, 1)}
        text = _MARKER_RE.sub(lambda m: f"[{mapping[int(m.group(1))]}]", text)
        citations = [by_marker[old].citation for old in order]
        return Answer(answer=text, refused=False, confidence=request.confidence, citations=citations,
                      language=request.query.language), ""

    def _leaks(self, text: str, passages: str) -> bool:
        """Configuration in the reply: a secret anywhere; the prompt's structure or any 16
        characters of the system prompt in a row, unless the passages say the same ("community
        service centre" is in the prompt and in many documents)."""
        folded = re.sub(r"\s+", " ", text).lower()
        read = re.sub(r"\s+", " ", passages).lower()
        if any(secret.lower() in folded for secret in self._secrets):
            return True
        if any(m.group(0) not in read for p in self.prompt.leak_patterns for m in p.finditer(folded)):
            return True
        system = re.sub(r"\s+", " ", self.prompt.system).lower()
        windows = (system[i : i + 16] for i in range(0, max(len(system) - 15, 0), 4))
        return any(w in folded and w not in read for w in windows)


def _attribute(text: str) -> str:
    return re.sub(r'["<>]', "", text)


def _reply_text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return content if isinstance(content, str) else ""


def _normalise_markers(text: str) -> str:
    def expand(match: re.Match[str]) -> str:
        return "".join(f"[{n}]" for n in re.findall(r"\d+", match.group(1)))

    return _LOOSE_MARKER_RE.sub(expand, text)


def _cited_sentences(text: str) -> list[tuple[str, list[int]]]:
    """The reply's sentences as (text without markers, the markers that cite it). Markers right
    after a sentence's full stop are the sentence's own; a sentence without any is cited by the
    next marked sentence ("A。B[1]。": [1] cites both, as a reader takes it)."""
    pieces = [_piece(raw) for raw in _raw_pieces(text)]
    pieces = [p for p in pieces if _LETTER_RE.search(p[0]) or re.search(r"\d", p[0])]
    out: list[tuple[str, list[int]]] = []
    waiting: list[str] = []
    for body, markers in pieces:
        if not markers:
            waiting.append(body)
            continue
        out.extend((w, markers) for w in waiting)
        waiting = []
        out.append((body, markers))
    out.extend((w, []) for w in waiting)
    return out


def _piece(sentence: str) -> tuple[str, list[int]]:
    markers = [int(m) for m in _MARKER_RE.findall(sentence)]
    return _MARKER_RE.sub("", sentence).strip(), markers


def _support(sentence: str, sources: list[str]) -> float:
    """The share of the sentence's wording (Chinese character pairs, English words) its cited
    passages carry: a reworded sentence keeps most of it, an invented one ("高龄津贴已经取消了")
    does not. A sentence in another script than its passages (a translation) is not measured."""
    source = " ".join(sources).lower()
    pieces = _CJK_PAIR_RE.findall(sentence) if _CJK_RE.search(sentence) else re.findall(r"[a-z]{3,}", sentence.lower())
    if not pieces or (_CJK_RE.search(sentence) is None) != (_CJK_RE.search(source) is None):
        return 1.0
    return sum(p in source for p in pieces) / len(pieces)


def _in_language(text: str, language: str) -> bool:
    letters = _LETTER_RE.findall(text)
    if not letters:
        return False
    chinese = sum(1 for ch in letters if _CJK_RE.match(ch)) / len(letters)
    return chinese >= 0.3 if language == "zh" else chinese <= 0.5


# ---- no fact twice ------------------------------------------------------------------------

_FOLD_RE = re.compile(r"[\W_]+")
_FIGURE_RE = re.compile(r"\d+(?:\.\d+)?")
_MARKER_RUN_RE = re.compile(r"(?:\[\d+\]){2,}")
NEAR_DUPLICATE = 0.8
# A sentence counts as contained in another when that one carries this share of its character pairs.
CONTAINED = 0.8
_NEGATION_RE = re.compile(r"[不没无非未否勿]|\bnot?\b|n't|never")


def without_repeated_facts(answer: Answer) -> Answer:
    """The answer with no fact said twice, whichever composer worded it: a cited sentence that
    another cited sentence contains (its text, or CONTAINED of its character pairs: "失业保险金按月
    发放[2]" beside "失业保险金由经办机构按月发放[1]") is dropped, as is the later of two
    near-duplicates (character-pair Jaccard >= NEAR_DUPLICATE); never one with a figure the other
    lacks, or another negation (不, 没, 无, not …). The kept sentence takes the dropped one's
    citation numbers, and the citations are numbered again in order of first mention. Sentences
    without a citation (a verdict, a note, a hand-off) are never dropped and never absorb another."""
    pieces = _raw_pieces(answer.answer)
    folded = [_fold(_MARKER_RE.sub("", piece)) for piece in pieces]
    markers = [[int(m) for m in _MARKER_RE.findall(piece)] for piece in pieces]
    negations = [sorted(_NEGATION_RE.findall(_MARKER_RE.sub("", piece).lower())) for piece in pieces]
    cited = [i for i, ms in enumerate(markers) if ms and len(folded[i]) >= 4]
    into: dict[int, int] = {}
    for i in cited:
        for j in cited:
            if i == j or j in into:
                continue
            if not set(_FIGURE_RE.findall(folded[i])) <= set(_FIGURE_RE.findall(folded[j])) \
                    or negations[i] != negations[j]:
                continue
            shorter = len(folded[i]) < len(folded[j]) or (len(folded[i]) == len(folded[j]) and j < i)
            contained = shorter and (folded[i] in folded[j] or _share(folded[i], folded[j]) >= CONTAINED)
            if contained or (j < i and _alike(folded[i], folded[j]) >= NEAR_DUPLICATE):
                into[i] = j
                break
    if not into:
        return answer
    for i, j in into.items():
        while j in into:  # merged into a sentence that is itself merged: the last one kept
            j = into[j]
        markers[j] = sorted(set(markers[j]) | set(markers[i]))
    kept: list[str] = []
    for i, piece in enumerate(pieces):
        if i in into:
            continue
        if markers[i] and set(markers[i]) != {int(m) for m in _MARKER_RE.findall(piece)}:
            piece = _with_markers(piece, markers[i])
        kept.append(piece)
    text = "".join(kept).strip()
    order = list(dict.fromkeys(int(m) for m in _MARKER_RE.findall(text)))
    if any(m < 1 or m > len(answer.citations) for m in order):
        return answer  # markers that name no citation: not this function's to repair
    mapping = {old: new for new, old in enumerate(order, 1)}
    text = _MARKER_RE.sub(lambda m: f"[{mapping[int(m.group(1))]}]", text)
    text = _MARKER_RUN_RE.sub(_ascending, text)
    # A citation no marker names (a refusal's, say) stays, after those named.
    rest = [c for n, c in enumerate(answer.citations, 1) if n not in mapping]
    return answer.model_copy(update={"answer": text,
                                     "citations": [answer.citations[old - 1] for old in order] + rest})


def _ascending(run: re.Match[str]) -> str:
    """[2][1] as [1][2]."""
    return "".join(f"[{n}]" for n in sorted({int(d) for d in _MARKER_RE.findall(run.group(0))}))


def _raw_pieces(text: str) -> list[str]:
    """The text cut into sentences as written (markers right after a full stop stay with their
    sentence; spaces stay where they were), so that joined again they are the text."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        if match.start() < start:
            continue
        end = match.end()
        tail = _TRAILING_MARKERS_RE.match(text, end)
        if tail:
            end = tail.end()
        pieces.append(text[start:end])
        start = end
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _fold(text: str) -> str:
    return _FOLD_RE.sub("", unicodedata.normalize("NFKC", text).lower())


def _pairs(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def _alike(a: str, b: str) -> float:
    """Jaccard similarity of two folded sentences' character pairs."""
    pa, pb = _pairs(a), _pairs(b)
    return len(pa & pb) / len(pa | pb) if pa and pb else 0.0


def _share(a: str, b: str) -> float:
    """The share of a's character pairs that b carries."""
    pa = _pairs(a)
    return len(pa & _pairs(b)) / len(pa) if pa else 0.0


def _with_markers(piece: str, numbers: list[int]) -> str:
    """The sentence with its markers replaced by `numbers`, where its markers were."""
    spans = list(_MARKER_RE.finditer(piece))
    first, last = spans[0], spans[-1]
    between = _MARKER_RE.sub("", piece[first.start() : last.end()])
    return piece[: first.start()] + "".join(f"[{n}]" for n in numbers) + between + piece[last.end() :]


# ---- the registry -------------------------------------------------------------------------

def openai_compatible_model(settings: LlmSettings) -> BaseChatModel:
    """`langchain_openai.ChatOpenAI` against the configured endpoint (the optional `llm` extra)."""
    if not settings.base_url or not settings.model:
        raise ValueError("the langchain composer needs answer.composer.llm.base_url and .model "
                         "(LINLI_ANSWER__COMPOSER__LLM__BASE_URL, LINLI_ANSWER__COMPOSER__LLM__MODEL)")
    try:
        from langchain_openai import ChatOpenAI  # noqa: PLC0415 - optional extra, imports openai: only when chosen
    except ImportError as exc:
        raise ValueError(
            "the langchain composer needs the optional extra: pip install -e '.[llm]' "
            f"(langchain-openai is not installed: {exc})"
        ) from None
    # One attempt, bounded by the budget: a retry would only arrive after the fallback went out.
    return ChatOpenAI(base_url=settings.base_url, model=settings.model, api_key=settings.api_key,
                      temperature=settings.temperature, max_completion_tokens=settings.max_tokens,
                      timeout=settings.budget_s, max_retries=0)


def _extractive(settings: ComposerSettings, extractive: Composer, verifier: Verifier, max_sentences: int,
                model: BaseChatModel | None) -> Composer:
    return extractive


def _langchain(settings: ComposerSettings, extractive: Composer, verifier: Verifier, max_sentences: int,
               model: BaseChatModel | None) -> Composer:
    chat = model if model is not None else openai_compatible_model(settings.llm)
    return LangChainComposer(chat, settings.llm, extractive, verifier, max_sentences=max_sentences)


COMPOSERS: dict[str, Callable[[ComposerSettings, Composer, Verifier, int, BaseChatModel | None], Composer]] = {
    "extractive": _extractive,
    "langchain": _langchain,
}


def create_composer(settings: ComposerSettings, extractive: Composer, verifier: Verifier, *,
                    max_sentences: int = 3, model: BaseChatModel | None = None) -> Composer:
    """The composer `settings.name` names. `extractive` is the answerer's own (the default, and
    every other composer's fallback); `model` replaces the configured endpoint (tests pass
    LangChain's fake chat models)."""
    try:
        factory = COMPOSERS[settings.name]
    except KeyError:
        raise ValueError(f"unknown composer {settings.name!r}; registered: {', '.join(COMPOSERS)}") from None
    return factory(settings, extractive, verifier, max_sentences, model)
