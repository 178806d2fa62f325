"""Per-message latency of the dialogue engine, end to end (intent, retrieval, answer, store).

Every held-out intent utterance is sent as the opening message of a fresh session, then a
follow-up ("需要带什么材料?" / "what documents do I need?") in the same session. Prints p50/p95
overall and per reply type. Timings are reported, never asserted.

    .venv/bin/python -m bench.dialogue_latency [--limit N]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from assistant.core.settings import get_settings
from assistant.services import Services
from eval.harness import percentile, with_throwaway_database
from eval.intents import load_heldout

FOLLOW_UP = {"zh": "需要带什么材料?", "en": "what documents do I need?"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # The shipped index, with the sessions and tickets the bench opens kept out of the real database.
        engine = Services(with_throwaway_database(get_settings(), Path(tmp))).dialogue
        by_type: dict[str, list[float]] = collections.defaultdict(list)
        items = load_heldout()[: args.limit]
        for n, item in enumerate(items):
            session = f"bench-{n}"
            for text in (item["text"], FOLLOW_UP[item.get("language", "zh")]):
                started = time.perf_counter()
                reply = engine.handle(session, text)
                by_type[reply.reply_type].append(time.perf_counter() - started)
    every = [t for times in by_type.values() for t in times]
    table = Table(title=f"dialogue latency per message ({len(every)} messages, {len(items)} sessions)")
    for column in ("reply type", "n", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    for reply_type, times in [*sorted(by_type.items()), ("all", every)]:
        table.add_row(reply_type, str(len(times)), f"{percentile(times, 0.5) * 1000:.0f}",
                      f"{percentile(times, 0.95) * 1000:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
