"""The upload sandbox against the attacker's files (tests/attacks/files.py): each file read as the
server reads an upload (knowledge_base/isolated.py, with the limits of KbAdminSettings), its size,
what came of it and the seconds it took. With --in-process, the same files read the old way, in
this process with no limits, each in a subprocess of its own that is given up on after --give-up
seconds (a bomb would otherwise hold this command too).

    .venv/bin/python -m bench.upload_bombs [--in-process] [--give-up 60]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from assistant.core.errors import IngestError
from assistant.core.settings import KbAdminSettings
from knowledge_base.isolated import ReadLimits, read_isolated
from knowledge_base.loaders import load_file
from tests.attacks.files import BOMBS

DEFAULTS = {"region": "karamay", "category": "elderly_care"}


def _outcome(read) -> str:
    try:
        doc = read()
    except IngestError as exc:
        return f"refused: {exc.message_zh[:70]}"
    return f"read: {len(doc.body):,} characters"


def _in_process(path: Path, give_up: float) -> tuple[str, float]:
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pending = pool.apply_async(_outcome_of_load_file, (str(path),))
        try:
            return pending.get(timeout=give_up), time.monotonic() - started
        except multiprocessing.TimeoutError:
            return f"still reading after {give_up:g} s (given up)", time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 - what the old path let through is the point
            return f"{type(exc).__name__} (a 500 in the server)", time.monotonic() - started


def _outcome_of_load_file(path: str) -> str:
    try:
        return _outcome(lambda: load_file(Path(path), DEFAULTS))
    except Exception as exc:  # noqa: BLE001 - reported, as the server would have answered 500
        return f"{type(exc).__name__} (a 500 in the server)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-process", action="store_true", help="also read each file the old way")
    parser.add_argument("--give-up", type=float, default=60.0)
    args = parser.parse_args()
    settings = KbAdminSettings()
    limits = ReadLimits(settings.read_cpu_s, settings.read_wall_s, settings.read_memory_mb)
    print(f"limits: {limits.cpu_s} CPU s, {limits.wall_s:g} s on the clock, {limits.memory_mb} MB\n")
    print("| file | bytes | isolated: outcome | s |" + (" in process: outcome | s |" if args.in_process else ""))
    print("|---|---|---|---|" + ("---|---|" if args.in_process else ""))
    with tempfile.TemporaryDirectory() as folder:
        for name, build in BOMBS.items():
            path = Path(folder) / name
            path.write_bytes(build())
            started = time.monotonic()
            isolated = _outcome(lambda path=path: read_isolated(path, DEFAULTS, limits))
            row = f"| {name} | {path.stat().st_size:,} | {isolated} | {time.monotonic() - started:.2f} |"
            if args.in_process:
                old, seconds = _in_process(path, args.give_up)
                row += f" {old} | {seconds:.2f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
