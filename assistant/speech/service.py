"""Speech as an input of the dialogue engine: decode, transcribe, post-correct, then the same
path as typed text — except that an implausible value is asked back first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from assistant.dialogue.reply import Reply
from assistant.core.errors import LinliError
from assistant.core.settings import Settings
from assistant.speech.audio import check_mime, decode
from assistant.speech.correction import AcousticCheck, CorpusSounds, SoundAlikeDecoder, implausible, post_correct
from assistant.speech.language_model import CharLanguageModel
from assistant.speech.transcriber import (
    FasterWhisperTranscriber,
    OpenAIWhisperTranscriber,
    Transcriber,
    Transcript,
    assemble_whisper_base,
)
from knowledge_base.text import load_lexicon, read_word_list


@dataclass(frozen=True)
class Heard:
    text: str
    raw_text: str
    language: str
    duration_s: float
    seconds: float

    def public(self) -> dict[str, Any]:
        return asdict(self)


_transcribers: dict[str, Transcriber] = {}
_lock = threading.Lock()


def domain_terms(settings: Settings) -> list[str]:
    """The domain vocabulary, read once per process with the jieba dictionary it also feeds."""
    return load_lexicon(settings.domain_terms, settings.synonyms).terms


def _faster_whisper(settings: Settings) -> Transcriber:
    model_dir = settings.speech.model_dir or settings.data_dir / "models" / "whisper-base"
    return FasterWhisperTranscriber(assemble_whisper_base(model_dir),
                                    hotwords=domain_terms(settings)[: settings.speech.hotwords],
                                    beam_size=settings.speech.beam_size, runners_up=settings.speech.runners_up)


def _openai_whisper(settings: Settings) -> Transcriber:
    if settings.speech.checkpoint is None:
        raise LinliError("openai_whisper 需要设置 LINLI_SPEECH__CHECKPOINT（本地模型文件）。",
                         "openai_whisper needs LINLI_SPEECH__CHECKPOINT (a local checkpoint file).")
    return OpenAIWhisperTranscriber(settings.speech.checkpoint, hotwords=domain_terms(settings)[: settings.speech.hotwords],
                                    beam_size=settings.speech.beam_size)


TRANSCRIBERS: dict[str, Callable[[Settings], Transcriber]] = {
    "faster_whisper": _faster_whisper,
    "openai_whisper": _openai_whisper,
}


def get_transcriber(settings: Settings) -> Transcriber:
    """One model per process, whoever asks first loads it; the others wait for it."""
    speech = settings.speech
    key = f"{speech.transcriber}|{speech.model_dir or settings.data_dir}|{speech.checkpoint}"
    with _lock:
        if key not in _transcribers:
            factory = TRANSCRIBERS.get(speech.transcriber)
            if factory is None:
                raise LinliError(f"未知的语音识别器：{speech.transcriber}（可选：{', '.join(TRANSCRIBERS)}）",
                                 f"Unknown transcriber {speech.transcriber!r}; choose one of {', '.join(TRANSCRIBERS)}")
            _transcribers[key] = factory(settings)
        return _transcribers[key]


@dataclass(frozen=True)
class Correctors:
    """What post-correction learns from the indexed corpus, rebuilt when the index changes."""

    sounds: CorpusSounds | None
    decoder: SoundAlikeDecoder | None


_correctors: dict[str, tuple[int, Correctors]] = {}


def corpus_correctors(settings: Settings) -> Correctors:
    """Built from the index's chunks on first use and again after each rebuild; before the first
    build only the domain vocabulary corrects transcripts."""
    from assistant.services import get_knowledge_base

    speech = settings.speech
    if not (speech.corpus_correction or speech.sound_alike_correction):
        return Correctors(None, None)
    kb = get_knowledge_base(settings)
    if not kb.is_built():
        return Correctors(None, None)
    generation = kb.store.generation()
    key = str(settings.resolved_index_dir)
    with _lock:
        cached = _correctors.get(key)
        if cached is None or cached[0] != generation:
            chunks = [chunk.text for chunk in kb.store.load().chunks]
            colloquial = read_word_list(settings.colloquial_words) if settings.colloquial_words.exists() else []
            words = domain_terms(settings) + colloquial
            sounds = CorpusSounds.from_texts(chunks, words, keyness=speech.corpus_keyness) \
                if speech.corpus_correction else None
            decoder = SoundAlikeDecoder(
                CharLanguageModel.fit(_language_model_texts(settings, chunks, words), order=speech.language_model_order),
                same_sound_cost=speech.same_sound_cost, same_tone_bonus=speech.same_tone_bonus,
                near_sound_cost=speech.near_sound_cost, frequency_penalty=speech.frequency_penalty,
                word_cost=speech.word_change_cost) \
                if speech.sound_alike_correction else None
            cached = _correctors[key] = (generation, Correctors(sounds, decoder))
        return cached[1]


def _language_model_texts(settings: Settings, chunks: list[str], words: list[str]) -> Iterator[str | tuple[str, int]]:
    """The corpus as it is written, and (weighted up) how residents say things: the intent
    examples and the word lists. Never the golden or speech questions: those are the tests."""
    from intents.classifier import load_intent_data

    yield from chunks
    examples, _rules, _spec = load_intent_data()
    # The examples spell some terms wrong on purpose (底保, 医宝) to teach the classifier typos;
    # the language model must learn the right spelling.
    lexicon = load_lexicon(settings.domain_terms, settings.synonyms)
    weight = settings.speech.resident_text_weight
    yield from ((lexicon.repair_homophones(example.text), weight) for example in examples if example.language == "zh")
    yield from ((word, settings.speech.word_list_weight) for word in words)


def correct(settings: Settings, raw_text: str, language: str, check: AcousticCheck | None = None) -> str:
    """Post-correction of what the model heard (Mandarin: terms, corpus words, sound-alikes, numerals)."""
    if language != "zh":
        return raw_text.strip()
    correctors = corpus_correctors(settings)
    return post_correct(raw_text, domain_terms(settings), correctors.sounds, correctors.decoder, check)


def acoustic_check(settings: Settings, transcript: Transcript) -> AcousticCheck | None:
    """How the decoder's readings of this audio are heard again, where the transcriber can."""
    speech = settings.speech
    # Without the sound-alike decoder there are no readings to hear: post_correct leaves the check unused.
    if not (speech.acoustic_check and transcript.language == "zh" and transcript.listen is not None):
        return None
    return AcousticCheck(transcript.listen, candidates=speech.acoustic_candidates, weight=speech.acoustic_weight,
                         cost_weight=speech.acoustic_cost_weight, alternatives=transcript.alternatives)


def hear(settings: Settings, audio: bytes, content_type: str | None = None, language: str | None = None) -> Heard:
    check_mime(content_type)
    samples = decode(audio, max_bytes=settings.speech.max_bytes, max_seconds=settings.speech.max_seconds)
    transcript = get_transcriber(settings).transcribe(samples, language)
    started = time.perf_counter()
    text = correct(settings, transcript.raw_text, transcript.language, acoustic_check(settings, transcript))
    return Heard(text, transcript.raw_text, transcript.language, round(transcript.duration_s, 2),
                 round(transcript.seconds + time.perf_counter() - started, 3))


def reply_to_voice(engine, heard: Heard, session_id: str, channel: str, user_id: str) -> Reply:
    """The engine's reply to what was heard; nothing heard, or an implausible age or amount, is
    asked back (and the exchange is kept in the conversation like any other turn)."""
    english = heard.language == "en"
    if not heard.text.strip(" 。.，,"):
        return Reply("clarify", "I didn't catch that; please say it again." if english else "没有听清，请再说一遍。",
                     session_id=session_id)
    doubt = implausible(heard.text, engine.kb.benefit_amounts())
    if doubt is None:
        return engine.handle(session_id, heard.text, channel=channel, user_id=user_id)
    if doubt.guess:
        question = f"您是说{doubt.guess}吗？"
    else:
        what = "年龄" if doubt.heard.endswith("岁") else "金额"
        question = f"我听到的是“{doubt.heard}”，请再说一下{what}好吗？"
    meant = heard.text.replace(doubt.heard, doubt.guess) if doubt.guess else None
    return engine.ask_back(session_id, heard.text, question, meant, channel=channel, user_id=user_id)
