"""Decode whatever a resident sends (WAV, MP3, AMR, WebM/Opus, OGG) to 16 kHz mono float32 with
ffmpeg over pipes: limits are checked, nothing is written to disk, so no temp file is left.

What a resident is told about a recording that cannot be used is in assistant/data/speech.yaml
(`SPEECH`, read and checked when this module is imported)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from assistant.core.errors import LinliError
from assistant.dialogue.replies import SPEECH_FILE, Replies

SAMPLE_RATE = 16_000
ALLOWED_MIME_PREFIXES = ("audio/", "video/webm", "application/ogg", "application/octet-stream")
SPEECH = Replies.load(SPEECH_FILE)


class BadAudio(LinliError):
    code = "bad_audio"
    http_status = 422


class SilentAudio(BadAudio):
    code = "silent_audio"


def check_mime(content_type: str | None) -> None:
    if content_type and not content_type.lower().startswith(ALLOWED_MIME_PREFIXES):
        raise BadAudio(*SPEECH.both("not_audio", content_type=content_type))


def decode(data: bytes, *, max_bytes: int = 5 * 1024 * 1024, max_seconds: float = 60.0,
           silence_rms: float = 0.003) -> np.ndarray:
    if not data:
        raise BadAudio(*SPEECH.both("audio_empty"))
    if len(data) > max_bytes:
        raise BadAudio(*SPEECH.both("audio_too_large", megabytes=max_bytes // (1024 * 1024)))
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise LinliError("服务器缺少 ffmpeg，暂时不能识别语音，请改用文字。",
                         "ffmpeg is not installed; voice input is unavailable, please type.")
    limit = int(max_seconds * SAMPLE_RATE * 2) + 2  # bytes of s16le; one sample over means too long
    process = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-t", str(max_seconds + 0.5),
         "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"],
        input=data, capture_output=True, timeout=60, check=False)
    if process.returncode != 0 or not process.stdout:
        raise BadAudio(*SPEECH.both("audio_unreadable"))
    if len(process.stdout) > limit:
        raise BadAudio(*SPEECH.both("audio_too_long", seconds=int(max_seconds)))
    samples = np.frombuffer(process.stdout, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0 or float(np.sqrt(np.mean(samples ** 2))) < silence_rms:
        raise SilentAudio(*SPEECH.both("audio_silent"))
    return samples
