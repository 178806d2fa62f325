"""Speech as an input of the dialogue engine: decode, transcribe, post-correct, then the same
path as typed text — except that an implausible value is asked back first."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from assistant.dialogue.reply import Reply
from assistant.errors import LinliError
from assistant.settings import Settings
from assistant.speech.audio import check_mime, decode
from assistant.speech.correction import CorpusSounds, implausible, post_correct
from assistant.speech.transcriber import (
    FasterWhisperTranscriber,
    OpenAIWhisperTranscriber,
    Transcriber,
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
                                    beam_size=settings.speech.beam_size)


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


_sounds: dict[str, tuple[int, CorpusSounds]] = {}


def corpus_sounds(settings: Settings) -> CorpusSounds | None:
    """The indexed corpus's words by sound, rebuilt when the index changes; None before the
    first build (then only the domain vocabulary corrects transcripts)."""
    from assistant.services import get_knowledge_base

    if not settings.speech.corpus_correction:
        return None
    kb = get_knowledge_base(settings)
    if not kb.is_built():
        return None
    generation = kb.store.generation()
    key = str(settings.resolved_index_dir)
    with _lock:
        cached = _sounds.get(key)
        if cached is None or cached[0] != generation:
            texts = (chunk.text for chunk in kb.store.load().chunks)
            colloquial = read_word_list(settings.colloquial_words) if settings.colloquial_words.exists() else []
            words = domain_terms(settings) + colloquial
            cached = _sounds[key] = (generation, CorpusSounds.from_texts(texts, words,
                                                                         keyness=settings.speech.corpus_keyness))
        return cached[1]


def correct(settings: Settings, raw_text: str, language: str) -> str:
    """Post-correction of what the model heard (Mandarin: terms, corpus words, numerals)."""
    if language != "zh":
        return raw_text.strip()
    return post_correct(raw_text, domain_terms(settings), corpus_sounds(settings))


def hear(settings: Settings, audio: bytes, content_type: str | None = None, language: str | None = None) -> Heard:
    check_mime(content_type)
    samples = decode(audio, max_bytes=settings.speech.max_bytes, max_seconds=settings.speech.max_seconds)
    transcript = get_transcriber(settings).transcribe(samples, language)
    return Heard(correct(settings, transcript.raw_text, transcript.language), transcript.raw_text,
                 transcript.language, round(transcript.duration_s, 2), round(transcript.seconds, 3))


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
