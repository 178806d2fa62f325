"""Speech as an input of the dialogue engine: decode, transcribe, post-correct, then the same
path as typed text — except that an implausible value is asked back first.

Nothing here is cached per process: `Services` (assistant/services.py) builds one transcriber,
one corrector and one `SpeechService` per Settings and hands them what they need."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from assistant.core.errors import LinliError
from assistant.core.settings import Settings
from assistant.dialogue.reply import Reply
from assistant.speech.audio import SPEECH, check_mime, decode
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

if TYPE_CHECKING:
    from assistant.knowledge import KnowledgeBase


@dataclass(frozen=True)
class Heard:
    text: str
    raw_text: str
    language: str
    duration_s: float
    seconds: float

    def public(self) -> dict[str, Any]:
        return asdict(self)


def domain_terms(settings: Settings) -> list[str]:
    """The domain vocabulary (the same file as jieba's dictionary; load_lexicon reads it once)."""
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
    return OpenAIWhisperTranscriber(settings.speech.checkpoint,
                                    hotwords=domain_terms(settings)[: settings.speech.hotwords],
                                    beam_size=settings.speech.beam_size)


TRANSCRIBERS: dict[str, Callable[[Settings], Transcriber]] = {
    "faster_whisper": _faster_whisper,
    "openai_whisper": _openai_whisper,
}


def create_transcriber(settings: Settings) -> Transcriber:
    """The transcriber `settings.speech.transcriber` names, with its model loaded."""
    name = settings.speech.transcriber
    factory = TRANSCRIBERS.get(name)
    if factory is None:
        raise LinliError(f"未知的语音识别器：{name}（可选：{', '.join(TRANSCRIBERS)}）",
                         f"Unknown transcriber {name!r}; choose one of {', '.join(TRANSCRIBERS)}")
    return factory(settings)


@dataclass(frozen=True)
class Correctors:
    """What post-correction learns from the indexed corpus."""

    sounds: CorpusSounds | None
    decoder: SoundAlikeDecoder | None


NO_CORRECTORS = Correctors(None, None)


class SpeechCorrector:
    """Post-correction of what the model heard (Mandarin: terms, corpus words, sound-alikes,
    numerals). The corpus correctors are learnt from the index's chunks on first use and again
    after each rebuild; without a knowledge base, or before the first build, only the domain
    vocabulary corrects transcripts."""

    def __init__(self, settings: Settings, knowledge_base: KnowledgeBase | None) -> None:
        self.settings = settings
        self.knowledge_base = knowledge_base
        self._learnt: tuple[int, Correctors] | None = None  # (index generation, what it taught)
        self._lock = threading.Lock()

    def correct(self, raw_text: str, language: str, check: AcousticCheck | None = None) -> str:
        if language != "zh":
            return raw_text.strip()
        correctors = self.correctors()
        return post_correct(raw_text, domain_terms(self.settings), correctors.sounds, correctors.decoder, check)

    def acoustic_check(self, transcript: Transcript) -> AcousticCheck | None:
        """How the decoder's readings of this audio are heard again, where the transcriber can."""
        speech = self.settings.speech
        # Without the sound-alike decoder there are no readings to hear: post_correct leaves the check unused.
        if not (speech.acoustic_check and transcript.language == "zh" and transcript.listen is not None):
            return None
        return AcousticCheck(transcript.listen, candidates=speech.acoustic_candidates, weight=speech.acoustic_weight,
                             cost_weight=speech.acoustic_cost_weight, alternatives=transcript.alternatives)

    def correctors(self) -> Correctors:
        speech = self.settings.speech
        kb = self.knowledge_base
        if kb is None or not (speech.corpus_correction or speech.sound_alike_correction) or not kb.is_built():
            return NO_CORRECTORS
        generation = kb.store.generation()
        # One voice message learns while the others wait: learning takes seconds and much memory.
        with self._lock:
            if self._learnt is None or self._learnt[0] != generation:
                self._learnt = (generation, self._learn([chunk.text for chunk in kb.store.load().chunks]))
            return self._learnt[1]

    def _learn(self, chunks: list[str]) -> Correctors:
        settings, speech = self.settings, self.settings.speech
        colloquial = read_word_list(settings.colloquial_words) if settings.colloquial_words.exists() else []
        words = domain_terms(settings) + colloquial
        sounds = CorpusSounds.from_texts(chunks, words, keyness=speech.corpus_keyness) \
            if speech.corpus_correction else None
        decoder = SoundAlikeDecoder(
            CharLanguageModel.fit(self._language_model_texts(chunks, words), order=speech.language_model_order),
            same_sound_cost=speech.same_sound_cost, same_tone_bonus=speech.same_tone_bonus,
            near_sound_cost=speech.near_sound_cost, frequency_penalty=speech.frequency_penalty,
            word_cost=speech.word_change_cost) \
            if speech.sound_alike_correction else None
        return Correctors(sounds, decoder)

    def _language_model_texts(self, chunks: list[str], words: list[str]) -> Iterator[str | tuple[str, int]]:
        """The corpus as it is written, and (weighted up) how residents say things: the intent
        examples and the word lists. Never the golden or speech questions: those are the tests."""
        settings = self.settings
        yield from chunks
        # The classifier's module pulls in scikit-learn (~1.3 s): every process that imports the
        # services (each `linli` command, the WeChat service) paid it, though few ever learn this.
        from intents.classifier import load_intent_data  # noqa: PLC0415 - +1.3 s at import, see above

        examples, _rules = load_intent_data()
        # The examples spell some terms wrong on purpose (底保, 医宝) to teach the classifier typos;
        # the language model must learn the right spelling.
        lexicon = load_lexicon(settings.domain_terms, settings.synonyms)
        weight = settings.speech.resident_text_weight
        yield from ((lexicon.repair_homophones(example.text), weight)
                    for example in examples if example.language == "zh")
        yield from ((word, settings.speech.word_list_weight) for word in words)


class SpeechService:
    """Hearing a voice message: decode, transcribe, post-correct."""

    def __init__(self, settings: Settings, transcriber: Transcriber, corrector: SpeechCorrector) -> None:
        self.settings = settings
        self.transcriber = transcriber
        self.corrector = corrector

    def hear(self, audio: bytes, content_type: str | None = None, language: str | None = None) -> Heard:
        speech = self.settings.speech
        check_mime(content_type)
        samples = decode(audio, max_bytes=speech.max_bytes, max_seconds=speech.max_seconds)
        transcript = self.transcriber.transcribe(samples, language)
        started = time.perf_counter()
        text = self.corrector.correct(transcript.raw_text, transcript.language,
                                      self.corrector.acoustic_check(transcript))
        return Heard(text, transcript.raw_text, transcript.language, round(transcript.duration_s, 2),
                     round(transcript.seconds + time.perf_counter() - started, 3))


class VoiceDialogue(Protocol):
    """What a voice message needs from the dialogue engine."""

    def handle(self, session_id: str, text: str, channel: str = "web", user_id: str = "anonymous") -> Reply: ...

    def ask_back(self, session_id: str, heard: str, question: str, meant: str | None, channel: str = "web",
                 user_id: str = "anonymous") -> Reply: ...


def reply_to_voice(engine: VoiceDialogue, heard: Heard, session_id: str, channel: str, user_id: str,
                   known_amounts: Collection[float]) -> Reply:
    """The engine's reply to what was heard; nothing heard, or an implausible age or amount (one
    no benefit table carries: `known_amounts`), is asked back, and the exchange is kept in the
    conversation like any other turn. The words are in assistant/data/speech.yaml."""
    language = "en" if heard.language == "en" else "zh"
    if not heard.text.strip(" 。.，,"):
        return Reply("clarify", SPEECH.say("nothing_heard", language), session_id=session_id)
    doubt = implausible(heard.text, known_amounts)
    if doubt is None:
        return engine.handle(session_id, heard.text, channel=channel, user_id=user_id)
    if doubt.guess:
        question = SPEECH.say("heard_meant", language, guess=doubt.guess)
    else:
        what = SPEECH.say("heard_what_age" if doubt.heard.endswith("岁") else "heard_what_amount", language)
        question = SPEECH.say("heard_unsure", language, heard=doubt.heard, what=what)
    meant = heard.text.replace(doubt.heard, doubt.guess) if doubt.guess else None
    return engine.ask_back(session_id, heard.text, question, meant, channel=channel, user_id=user_id)
