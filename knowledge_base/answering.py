"""Grounded answers without an LLM: an extractive composer picks the sentences that answer,
cites them with numbered markers, a verifier checks every numeral against the cited text, and
anything the corpus does not support becomes a plain refusal with a hand-off offer."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from assistant.core.domain import Answer, Citation, Hit, SearchFilters
from assistant.core.settings import AnswerSettings
from knowledge_base.benefits import BenefitQuery, BenefitTable, Bracket, RegionResolver, match_benefit_question
from knowledge_base.guards import WORDING_FILE, Wording, check_question, looks_like_injection
from knowledge_base.numbers import numerals
from knowledge_base.retrieval import HybridRetriever, PreparedQuery
from knowledge_base.text import content_terms, split_sentences

# Every sentence the answerer words itself, from data/answer_wording.yaml (checked when the
# answerer is built). The regular expressions below stay here.
ANSWER_SENTENCES = ("refusal", "handoff", "injection", "amount_not_in_corpus", "clock_time_not_in_corpus",
                    "from_chinese_documents", "benefit_below_minimum_age", "benefit_amount",
                    "bracket_range", "bracket_open_ended")

_MARKER_RE = re.compile(r"\[\d+\]")
_TABLE_LINE_RE = re.compile(r"^\s*\|")
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.、)）])\s*")
_FAQ_PREFIX_RE = re.compile(r"^\s*(?:\*\*)?(?:问|答|Q|A)\s*[：:]\s*(?:\*\*)?", re.IGNORECASE)


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


@dataclass
class Cues:
    table: dict[str, dict[str, list[str]]]

    @classmethod
    def load(cls, path: Path) -> Cues:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")) or {})

    def sections_for(self, question: str) -> list[str]:
        q = question.lower()
        wanted: list[str] = []
        for cue in self.table.values():
            if any(w.lower() in q for w in cue.get("question", [])):
                wanted.extend(s.lower() for s in cue.get("section", []))
        return wanted


@dataclass
class Candidate:
    hit_rank: int
    hit: Hit
    text: str
    faq_question: str | None = None
    score: float = 0.0
    features: dict[str, float] = field(default_factory=dict)


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
    ) -> None:
        self.retriever = retriever
        self.settings = settings
        self.cues = cues
        self.regions = regions
        self.confidence = confidence or ConfidenceModel()
        self.wording = (wording or Wording.load(WORDING_FILE)).require(*ANSWER_SENTENCES)
        self._tables: tuple[int, list[BenefitTable]] | None = None
        self._sentence_cache: dict[str, np.ndarray] = {}

    # ---- public --------------------------------------------------------------------------

    def ask(self, question: str, filters: SearchFilters | None = None, k: int = 8) -> Answer:
        question = check_question(question, self.settings.max_question_chars)
        query = self.retriever.prepare(question)
        language = query.language
        if looks_like_injection(question):
            return Answer(answer=self.wording.say("injection", language), refused=True, confidence=0.0, citations=[],
                          language=language, reason="injection")

        benefit = match_benefit_question(query.normalized, self._benefit_tables(), self.regions, language)
        if benefit == "other_region":
            return self._refuse(language, 0.0, reason="no_table_for_region")
        if isinstance(benefit, BenefitQuery):
            return self._benefit_answer(benefit, language)

        hits = self.retriever.search(question, k=k, filters=filters)
        if not hits:
            return self._refuse(language, 0.0, reason="no_hits")
        idf = self.retriever.store.load().inverse_document_frequency
        confidence = self.confidence(*confidence_features(query, hits, idf))
        if confidence < self.settings.refusal_threshold:
            return self._refuse(language, confidence, reason="low_confidence")
        return self._compose(query, hits, confidence)

    # ---- composition ----------------------------------------------------------------------

    def _candidates(self, hits: list[Hit]) -> list[Candidate]:
        """Sentences of the best document's retrieved chunks. A question sentence in a FAQ
        ("问：…？答：…。" or "Question? Answer.") is not an answer itself: it is matched against the
        resident's question and its answer becomes the candidate."""
        candidates: list[Candidate] = []
        top = hits[0]
        retrieved_rank = {h.chunk.chunk_id: r for r, h in reversed(list(enumerate(hits)))}
        _meta, _body, chunks = self.retriever.store.get_document(top.chunk.doc_id)
        # The whole best document is read, retrieved chunks first: the sentence that answers
        # "要带什么" sits in the materials section even when another section ranked higher.
        chunks.sort(key=lambda c: (retrieved_rank.get(c.chunk_id, len(hits)), c.ordinal))
        for chunk in chunks:
            rank = retrieved_rank.get(chunk.chunk_id, len(hits))
            hit = Hit(chunk=chunk, meta=top.meta, score=0.0)
            sentences = [_LIST_MARKER_RE.sub("", hit.chunk.text[s:e].strip())
                         for s, e in split_sentences(hit.chunk.text)]
            pending_question: str | None = None
            for sentence in sentences:
                if _TABLE_LINE_RE.match(sentence) or sentence.startswith("#"):
                    pending_question = None
                    continue
                if sentence.endswith(("？", "?")):
                    pending_question = _FAQ_PREFIX_RE.sub("", sentence)
                    continue
                text = _FAQ_PREFIX_RE.sub("", sentence)
                if len(text) >= 6:
                    candidates.append(Candidate(rank, hit, text, faq_question=pending_question))
                pending_question = None
        return candidates[:60]

    def _sentence_vectors(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._sentence_cache]
        if missing:
            if len(self._sentence_cache) > 50_000:
                self._sentence_cache.clear()
            vectors = self.retriever.embedder.embed_passages(missing)
            self._sentence_cache.update(zip(missing, vectors, strict=True))
        return np.vstack([self._sentence_cache[t] for t in texts])

    def _score(self, query: PreparedQuery, candidates: list[Candidate]) -> None:
        terms = content_terms(query.normalized)
        wanted_sections = self.cues.sections_for(query.raw + " " + query.normalized)
        detail = requested_detail(query.raw + " " + query.normalized)
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
        for i, cand in enumerate(candidates):
            lexical = weighted_overlap(terms, cand.text + " " + (cand.faq_question or ""), idf)
            path = cand.hit.chunk.heading_path
            section = (path[-1] if len(path) > 1 else "").lower()
            cue = 1.0 if wanted_sections and any(w in section for w in wanted_sections) else 0.0
            has_detail = 1.0 if detail and detail.present.search(cand.text) else 0.0
            # e5 similarities sit in a narrow band, so what counts is the distance to the best one.
            relative = raw_sims[i] - best_sim
            cand.features = {"dense": raw_sims[i], "lexical": lexical, "cue": cue, "detail": has_detail}
            w = self.settings.composer
            cand.score = (w.dense_weight * relative + w.lexical_weight * lexical + w.cue_weight * cue
                          + w.detail_weight * has_detail - 0.01 * cand.hit_rank)

    def _compose(self, query: PreparedQuery, hits: list[Hit], confidence: float) -> Answer:
        language = query.language
        candidates = self._candidates(hits)
        if not candidates:
            return self._refuse(language, confidence, reason="no_sentences")
        self._score(query, candidates)
        ranked = sorted(candidates, key=lambda c: -c.score)
        best = ranked[0].score
        chosen = [c for c in ranked if c.score >= best - self.settings.composer.window][: self.settings.max_sentences]
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
        detail = requested_detail(query.raw + " " + query.normalized)
        detail_missing = detail is not None and not self._detail_answered(detail, query, chosen)
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
        return Answer(answer=text, refused=False, confidence=confidence, citations=citations, language=language)

    def _detail_answered(self, detail: DetailKind, query: PreparedQuery, chosen: list[Candidate]) -> bool:
        """A figure answers the question only in a sentence about the question's subject: 1350万元
        for legal cost insurance is no answer to 低保标准是多少."""
        idf = self.retriever.store.load().inverse_document_frequency
        terms = content_terms(query.normalized)
        for cand in chosen:
            if not detail.present.search(cand.text):
                continue
            context = " ".join([cand.text, cand.faq_question or "", cand.hit.chunk.section])
            if weighted_overlap(terms, context, idf) >= self.settings.detail_subject_overlap:
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

    def _benefit_answer(self, q: BenefitQuery, language: str) -> Answer:
        t = q.table
        if q.below_minimum:
            lowest = self._bracket(t.brackets[0], language)
            citation = self._table_citation(t, lowest if language == "zh" else f"{t.minimum_age}")
            text = self.wording.say("benefit_below_minimum_age", language, title=t.title, subject=t.subject,
                                    minimum_age=t.minimum_age, age=q.age)
            return Answer(answer=text, refused=False, confidence=1.0, citations=[citation], language=language,
                          reason="below_minimum_age")
        if q.bracket is None:
            citation = self._table_citation(t, "80")
            sep = " " if language == "en" else ""
            text = f"{t.missing_note}{sep}{self.wording.say('handoff', language)}"
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
        return Answer(answer=text, refused=False, confidence=1.0, citations=[citation], language=language,
                      reason="benefit_table")

    def _refuse(self, language: str, confidence: float, reason: str) -> Answer:
        return Answer(answer=self.wording.say("refusal", language), refused=True, confidence=confidence,
                      citations=[], language=language, reason=reason)


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


def _is_chinese_doc(text: str) -> bool:
    return len(re.findall(r"[\u4e00-\u9fff]", text)) > len(text) * 0.3

