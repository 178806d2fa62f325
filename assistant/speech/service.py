"""Speech as an input of the dialogue engine: decode, transcribe, post-correct, then the same
path as typed text — except that an implausible value is asked back first."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from assistant.dialogue.reply import Reply
from assistant.settings import Settings
from assistant.speech.audio import check_mime, decode
from assistant.speech.correction import implausible, post_correct
from assistant.speech.transcriber import FasterWhisperTranscriber, Transcriber, assemble_whisper_base


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
    lines = settings.domain_terms.read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def get_transcriber(settings: Settings) -> Transcriber:
    """One model per process, whoever asks first loads it."""
    model_dir = settings.speech.model_dir or settings.data_dir / "models" / "whisper-base"
    key = f"{settings.speech.transcriber}|{model_dir}"
    with _lock:
        if key not in _transcribers:
            if settings.speech.transcriber != "faster_whisper":
                from assistant.errors import LinliError

                raise LinliError(f"未知的语音识别器：{settings.speech.transcriber}",
                                 f"Unknown transcriber {settings.speech.transcriber!r}")
            _transcribers[key] = FasterWhisperTranscriber(
                assemble_whisper_base(model_dir), hotwords=domain_terms(settings)[: settings.speech.hotwords],
                beam_size=settings.speech.beam_size)
        return _transcribers[key]


def hear(settings: Settings, audio: bytes, content_type: str | None = None, language: str | None = None) -> Heard:
    check_mime(content_type)
    samples = decode(audio, max_bytes=settings.speech.max_bytes, max_seconds=settings.speech.max_seconds)
    transcript = get_transcriber(settings).transcribe(samples, language)
    text = post_correct(transcript.raw_text, domain_terms(settings)) if transcript.language == "zh" \
        else transcript.raw_text.strip()
    return Heard(text, transcript.raw_text, transcript.language, round(transcript.duration_s, 2),
                 round(transcript.seconds, 3))


def reply_to_voice(engine, heard: Heard, session_id: str, channel: str, user_id: str) -> Reply:
    """The engine's reply to what was heard; nothing heard, or an implausible age, is asked back."""
    if not heard.text.strip(" 。.，,"):
        return Reply("clarify", "没有听清，请再说一遍。" if heard.language == "zh" else "I didn't catch that; please say it again.",
                     session_id=session_id)
    doubt = implausible(heard.text)
    if doubt is not None:
        question = f"您是说{doubt.guess}吗？" if doubt.guess else f"我听到的是“{doubt.heard}”，请再说一下年龄好吗？"
        quick = [heard.text.replace(doubt.heard, doubt.guess)] if doubt.guess else []
        return Reply("clarify", question, quick_replies=quick, session_id=session_id)
    return engine.handle(session_id, heard.text, channel=channel, user_id=user_id)
