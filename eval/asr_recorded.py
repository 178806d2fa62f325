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
what whisper hears is checked live on a sample of clips (tests/integration/test_speech_eval.py,
`compare_with_live`), within `KERNEL_TOLERANCE`: whisper's int8 arithmetic differs a little between
CPUs, so the check compares what the recording stands in for — the words, and the order in which
the acoustic check finds the readings fit — not the last digits of a score. Measure it on a
machine with `python -m eval.asr_recorded` (all clips; `CT2_USE_MKL=1` or `ONEDNN_MAX_CPU_ISA=AVX2`
stand in for another CPU's kernels)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import statistics
import sys
import threading
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from assistant.speech import transcriber as transcriber_module
from assistant.speech.audio import decode
from assistant.speech.transcriber import FasterWhisperTranscriber, Transcriber, Transcript
from eval.asr import Clip, error_rate, load_clips, scoring_tokens


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


@dataclasses.dataclass(frozen=True)
class KernelTolerance:
    """How far live whisper may be from a recording made on another CPU and still be the same
    decoding. Measured on all 129 clips of the speech set against the recording (made with oneDNN's
    AVX-512 VNNI int8 kernels), with the kernels of CPUs without them standing in for other
    machines (`python -m eval.asr_recorded`), and against decodings that really differ (a stale
    recording), on the 8 clips the test samples:

    | live whisper | words' error | readings' fit, abs. gap | ranks (Spearman) | pairs > 3 nats swapped |
    |---|---|---|---|---|
    | the recording's kernels (oneDNN, AVX-512 VNNI) | 0 | 0 | 1 | 0 |
    | oneDNN limited to AVX2, all clips / the sample | .038 / .008 | .76 (max 2.67) / .38 | .977 / .982 | 0 / 0 |
    | Intel MKL, all clips / the sample | .035 / .016 | .31 (max 1.63) / .36 | .985 / .984 | 0 / 0 |
    | stale: greedy decoding, no hotwords (sample) | .104 | 0 | 1 | 0 |
    | stale: beam 5, no hotwords (sample) | .114 | 0 | 1 | 0 |
    | stale: readings scored as English (sample) | 0 | 7.56 | .754 | 2 |

    (the old check, each fit within 5 % or 1 nat, failed with either of the other kernels.)
    Each bound sits between the two kinds of difference."""

    mean_word_error: float = 0.05
    mean_fit_gap: float = 2.0
    mean_rank_agreement: float = 0.9
    # Readings further apart than this in the recording must keep their order: the largest gap
    # another CPU's kernels swapped was 1.96 nats.
    order_margin: float = 3.0


KERNEL_TOLERANCE = KernelTolerance()


@dataclasses.dataclass
class LiveComparison:
    """Live whisper against a recording, clip by clip: what the recording stands in for is the
    language, the words, and how the acoustic check ranks the readings it scored."""

    language_mismatches: list[str] = dataclasses.field(default_factory=list)
    word_errors: dict[str, float] = dataclasses.field(default_factory=dict)
    fit_gaps: list[float] = dataclasses.field(default_factory=list)
    rank_agreement: dict[str, float] = dataclasses.field(default_factory=dict)
    # (clip, reading ranked higher in the recording, reading ranked higher live, recorded gap)
    swapped: list[tuple[str, str, str, float]] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)  # clips the recording lacks
    order_margin: float = KERNEL_TOLERANCE.order_margin

    def add(self, clip_id: str, recorded: dict[str, Any], live: Transcript) -> None:
        if live.language != recorded["language"]:
            self.language_mismatches.append(clip_id)
            return
        self.word_errors[clip_id] = error_rate(scoring_tokens(recorded["raw_text"], live.language),
                                               scoring_tokens(live.raw_text, live.language))
        heard: dict[str, float] = recorded["heard"]
        if not heard or live.listen is None:
            return
        texts = list(heard)
        now = dict(zip(texts, live.listen(texts), strict=True))
        self.fit_gaps += [abs(now[text] - heard[text]) for text in texts]
        if len(texts) >= 3:  # two readings' rank agreement is ±1: it says nothing
            recorded_fits, live_fits = [heard[t] for t in texts], [now[t] for t in texts]
            self.rank_agreement[clip_id] = float(spearmanr(recorded_fits, live_fits).statistic)
        for a, b in itertools.combinations(texts, 2):
            gap = heard[a] - heard[b]
            if abs(gap) > self.order_margin and gap * (now[a] - now[b]) < 0:
                first, second = (a, b) if gap > 0 else (b, a)
                self.swapped.append((clip_id, first, second, abs(gap)))

    @property
    def mean_word_error(self) -> float:
        return statistics.fmean(self.word_errors.values()) if self.word_errors else 0.0

    @property
    def mean_fit_gap(self) -> float:
        return statistics.fmean(self.fit_gaps) if self.fit_gaps else 0.0

    @property
    def mean_rank_agreement(self) -> float:
        return statistics.fmean(self.rank_agreement.values()) if self.rank_agreement else 1.0

    def problems(self, tolerance: KernelTolerance = KERNEL_TOLERANCE) -> list[str]:
        """What makes the recording another decoding's, not another CPU's: empty when it holds."""
        found = []
        if self.missing:
            found.append(f"clips not in the recording: {self.missing}")
        if self.language_mismatches:
            found.append(f"another language heard: {self.language_mismatches}")
        if self.mean_word_error > tolerance.mean_word_error:
            found.append(f"words' error {self.mean_word_error:.3f} > {tolerance.mean_word_error}: {self.word_errors}")
        if self.mean_fit_gap > tolerance.mean_fit_gap:
            found.append(f"readings' fit off by {self.mean_fit_gap:.2f} nats on average > {tolerance.mean_fit_gap}")
        if self.mean_rank_agreement < tolerance.mean_rank_agreement:
            found.append(f"readings ranked otherwise: Spearman {self.mean_rank_agreement:.3f} < "
                         f"{tolerance.mean_rank_agreement}: {self.rank_agreement}")
        if self.swapped:
            found.append(f"readings more than {tolerance.order_margin} nats apart swapped: {self.swapped[:5]}")
        return found

    def summary(self) -> str:
        worst = max(self.word_errors.values(), default=0.0)
        worst_gap = max(self.fit_gaps, default=0.0)
        worst_ranks = min(self.rank_agreement.values(), default=1.0)
        return (f"{len(self.word_errors)} clips: words' error mean {self.mean_word_error:.3f} (worst {worst:.3f}); "
                f"{len(self.fit_gaps)} readings: fit gap mean {self.mean_fit_gap:.2f} nats (max {worst_gap:.2f}), "
                f"Spearman mean {self.mean_rank_agreement:.3f} (min {worst_ranks:.3f}), "
                f"{len(self.swapped)} pairs > {self.order_margin} nats apart swapped")


def compare_with_live(recording: dict[str, Any], live: Transcriber, clips: Iterable[Clip]) -> LiveComparison:
    """Hears each clip live and compares it with what the recording says whisper heard."""
    comparison = LiveComparison()
    for clip in clips:
        samples = decode(clip.path.read_bytes())
        entry = recording["clips"].get(samples_key(samples))
        if entry is None:
            comparison.missing.append(clip.clip_id)
            continue
        comparison.add(clip.clip_id, entry, live.transcribe(samples))
    return comparison


def main() -> int:
    """Live whisper on this machine against the committed recording: the numbers KernelTolerance is set from."""
    from assistant.core.settings import PROJECT_ROOT, Settings, SpeechSettings  # noqa: PLC0415 - entry point
    from assistant.speech.service import create_transcriber  # noqa: PLC0415 - entry point

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--recording", type=Path, default=PROJECT_ROOT / "tests" / "data" / "whisper_heard.json")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    args = parser.parse_args()
    model_dir = PROJECT_ROOT / "var" / "models" / "whisper-base"
    live = create_transcriber(Settings(speech=SpeechSettings(model_dir=model_dir)))
    if not isinstance(live, FasterWhisperTranscriber):
        raise SystemExit("the recording is faster-whisper's")
    recording = json.loads(args.recording.read_text(encoding="utf-8"))
    if recording["key"] != decoding_key(live, model_dir):
        print("the recording was made with another decoding: record it again", file=sys.stderr)
        return 1
    comparison = compare_with_live(recording, live, load_clips()[: args.limit])
    print(comparison.summary())
    for problem in comparison.problems():
        print(f"  beyond the tolerance: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
