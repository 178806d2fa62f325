"""Whisper's outputs on the speech set, recorded once and replayed.

A live whisper-base run over the 129 clips of the speech set (detect the language, beam search
with runners-up, then the acoustic check hearing each clip's candidate readings again) takes
5–8 minutes of a 2-core machine; the tests replay it instead, so that what they measure on every
run — post-correction and the dialogue engine on what whisper heard — costs seconds.

A recording holds, per clip (keyed by the sha256 of its decoded samples), what the transcriber
returned — text, language, runners-up, seconds — and every log P(text | audio) the acoustic check
asked for. It is only valid for the decoding it was made with (`decoding_key`: model file, the
faster-whisper version, beam size, runners-up, hotwords, prompt, and the source of
assistant/speech/transcriber.py). Replaying it is exact where it can be and live where it cannot:

- a clip not recorded, or a recording made with another decoding, is transcribed live;
- a reading the acoustic check asks about that was never heard (post-correction changed since
  the recording) is scored live, on the same audio.

So a change to post-correction, the corpus or the dialogue is always measured; a stale recording
only costs time (`RecordedTranscriber.live_clips` says how much). Whether the recording is still
what whisper hears is checked live on a sample of clips (tests/integration/test_speech_eval.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from assistant.speech import transcriber as transcriber_module
from assistant.speech.transcriber import FasterWhisperTranscriber, Transcriber, Transcript


def samples_key(samples: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()


def decoding_key(transcriber: FasterWhisperTranscriber, model_dir: Path) -> dict[str, Any]:
    """Everything that decides what faster-whisper hears, as the recording's key."""
    digest = hashlib.sha256()
    with open(model_dir / "model.bin", "rb") as model:
        while chunk := model.read(1 << 20):
            digest.update(chunk)
    return {
        "model_sha256": digest.hexdigest(),
        "faster_whisper": metadata.version("faster-whisper"),
        "beam_size": transcriber.beam_size,
        "runners_up": transcriber.model.model.runners_up,
        "hotwords": transcriber.hotwords,
        "prompt": transcriber_module.ZH_PROMPT,
        "transcriber_source_sha256": hashlib.sha256(Path(transcriber_module.__file__).read_bytes()).hexdigest(),
    }


class RecordingTranscriber:
    """Wraps a live transcriber and keeps what it heard and every reading it scored."""

    name = "recording"

    def __init__(self, live: Transcriber, key: dict[str, Any]) -> None:
        self.live = live
        self.key = key
        self.clips: dict[str, dict[str, Any]] = {}

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        transcript = self.live.transcribe(samples, language)
        entry: dict[str, Any] = {"raw_text": transcript.raw_text, "language": transcript.language,
                                 "duration_s": transcript.duration_s, "seconds": transcript.seconds,
                                 "alternatives": list(transcript.alternatives),
                                 "listens": transcript.listen is not None, "heard": {}}
        self.clips[samples_key(samples)] = entry
        listen = transcript.listen
        if listen is None:
            return transcript

        def recording_listen(texts: list[str]) -> list[float]:
            scores = listen(texts)
            entry["heard"].update(zip(texts, scores, strict=True))
            return scores

        return dataclasses.replace(transcript, listen=recording_listen)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"key": self.key, "clips": self.clips}, ensure_ascii=False, indent=1,
                                   sort_keys=True) + "\n", encoding="utf-8")


class RecordedTranscriber:
    """Replays a recording; transcribes live (with the transcriber `live` builds, on first need)
    what the recording does not hold."""

    name = "recorded"

    def __init__(self, path: Path, key: dict[str, Any], live: Callable[[], Transcriber]) -> None:
        recording = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        self.stale = recording.get("key") != key
        self.clips: dict[str, dict[str, Any]] = {} if self.stale else recording.get("clips", {})
        self._live_factory = live
        self._live: Transcriber | None = None
        self._lock = threading.Lock()
        self.replayed = 0
        self.live_clips = 0  # transcribed live: not recorded, or recorded with another decoding
        self.live_listens = 0  # readings scored live: post-correction asked about one never heard

    def live(self) -> Transcriber:
        with self._lock:
            if self._live is None:
                self._live = self._live_factory()
            return self._live

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        entry = self.clips.get(samples_key(samples))
        if entry is None or (language is not None and language != entry["language"]):
            self.live_clips += 1
            return self.live().transcribe(samples, language)
        self.replayed += 1
        listen = self._listener(entry, samples) if entry["listens"] else None
        return Transcript(entry["raw_text"], entry["language"], entry["duration_s"], entry["seconds"], listen,
                          tuple(entry["alternatives"]))

    def _listener(self, entry: dict[str, Any], samples: np.ndarray) -> Callable[[list[str]], list[float]]:
        heard: dict[str, float] = entry["heard"]

        def listen(texts: list[str]) -> list[float]:
            if all(text in heard for text in texts):
                return [heard[text] for text in texts]
            self.live_listens += 1
            live = self.live().transcribe(samples, entry["language"]).listen
            if live is None:
                raise RuntimeError("the live transcriber cannot score readings of a clip the recording could")
            return live(texts)

        return listen
