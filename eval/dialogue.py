"""The golden questions through the whole dialogue engine, as a resident sends them: which reply
each gets. `linli eval` scores the answer path alone; this shows what routing (intents, their
confidence threshold, forms, emergencies) does to the same questions before they reach it."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from assistant.dialogue.engine import REPLY_TYPES
from assistant.services import Services
from eval.harness import load_golden, with_throwaway_database


def outcome(question: dict[str, Any], reply) -> str:
    """What a reply means for a golden question: an answer from one of its expected sources (or
    from another), or the reply type it got instead."""
    if reply.reply_type == "answer" and question["answerable"]:
        first = reply.citations[0]["doc_id"] if reply.citations else None
        return "answer" if first in question["expected_doc_ids"] else "answer (other source)"
    return reply.reply_type


def tally(questions: Iterable[dict[str, Any]], reply_to: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    counts: dict[str, Counter[str]] = {"answerable": Counter(), "unanswerable": Counter()}
    rows = []
    for question in questions:
        result = outcome(question, reply_to(question))
        counts["answerable" if question["answerable"] else "unanswerable"][result] += 1
        rows.append({"id": question["id"], "question": question["question"], "outcome": result})
    answerable, unanswerable = counts["answerable"], counts["unanswerable"]
    n_answerable, n_unanswerable = sum(answerable.values()), sum(unanswerable.values())
    return {
        "n_answerable": n_answerable, "n_unanswerable": n_unanswerable,
        "answerable": dict(answerable), "unanswerable": dict(unanswerable),
        "answered_right": answerable["answer"] / n_answerable if n_answerable else None,
        "clarified": answerable["clarify"] / n_answerable if n_answerable else None,
        "unanswerable_answered": unanswerable["answer"] / n_unanswerable if n_unanswerable else None,
        "rows": rows,
    }


def run_dialogue(services: Services, console: Console | None = None, limit: int | None = None) -> dict[str, Any]:
    """The golden questions through a dialogue engine on `services`' index and classifier, with
    the conversations and tickets it creates kept in a throwaway database."""
    console = console or Console()
    questions = load_golden()[:limit] if limit else load_golden()
    with tempfile.TemporaryDirectory() as folder:
        throwaway = Services(with_throwaway_database(services.settings, Path(folder)),
                             knowledge_base=services.knowledge_base, classifier=services.classifier)
        engine = throwaway.dialogue
        # Each question is the first message of its own session.
        result = tally(questions, lambda q: engine.handle(f"golden-{q['id']}", q["question"]))
    table = Table(title=f"golden questions through the dialogue engine ({result['n_answerable']} answerable, "
                        f"{result['n_unanswerable']} unanswerable)",
                  caption="answer: cites an expected source first; answer (other source): any other answer")
    table.add_column("reply")
    table.add_column("answerable", justify="right")
    table.add_column("unanswerable", justify="right")
    for kind in ("answer", "answer (other source)", *(t for t in REPLY_TYPES if t != "answer")):
        table.add_row(kind, str(result["answerable"].get(kind, 0)),
                      "-" if kind == "answer (other source)" else str(result["unanswerable"].get(kind, 0)))
    console.print(table)
    return result
