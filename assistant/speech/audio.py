"""Decode whatever a resident sends (WAV, MP3, AMR, WebM/Opus, OGG) to 16 kHz mono float32 with
ffmpeg over pipes: limits are checked, nothing is written to disk, so no temp file is left."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from assistant.core.errors import LinliError

SAMPLE_RATE = 16_000
ALLOWED_MIME_PREFIXES = ("audio/", "video/webm", "application/ogg", "application/octet-stream")


class BadAudio(LinliError):
    code = "bad_audio"
    http_status = 422


class SilentAudio(BadAudio):
    code = "silent_audio"


def check_mime(content_type: str | None) -> None:
    if content_type and not content_type.lower().startswith(ALLOWED_MIME_PREFIXES):
        raise BadAudio(f"这不是语音文件（{content_type}），请发送语音。",
                       f"That is not an audio file ({content_type}); please send a voice message.")


def decode(data: bytes, *, max_bytes: int = 5 * 1024 * 1024, max_seconds: float = 60.0,
           silence_rms: float = 0.003) -> np.ndarray:
    if not data:
        raise BadAudio("语音是空的，请再说一遍。", "The recording is empty; please try again.")
    if len(data) > max_bytes:
        raise BadAudio(f"语音文件太大（超过{max_bytes // (1024 * 1024)}MB），请说短一点。",
                       f"The recording is larger than {max_bytes // (1024 * 1024)} MB; please keep it shorter.")
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
        raise BadAudio("这个语音文件打不开，可能已损坏或不是语音，请重新录一段。",
                       "That recording cannot be read (corrupt or not audio); please record again.")
    if len(process.stdout) > limit:
        raise BadAudio(f"语音超过{int(max_seconds)}秒了，请分开说，每段短一点。",
                       f"The recording is longer than {int(max_seconds)} seconds; please split it up.")
    samples = np.frombuffer(process.stdout, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0 or float(np.sqrt(np.mean(samples ** 2))) < silence_rms:
        raise SilentAudio("没有听清，请再说一遍。", "I couldn't hear anything; please say it again.")
    return samples
