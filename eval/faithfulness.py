"""Faithfulness of the answer composers on the golden set (`linli eval faithfulness`).

faithfulness = answers whose numerals all verify / all answers (refusals included: a rule-worded
refusal such as a table's not-published note counts too; the answered-only ratio is printed beside
it). A numeral verifies when the answer's cited passages (text and title) or the question carry it
(`ungrounded_numerals`, as the golden harness counts them). Measured for:
- extractive: the default composer;
- fake-LLM: the `langchain` composer around a scripted fake chat model that paraphrases the best
  passage and, for about one question in four, adds 10 to the first number it writes
  (eval/fake_llm.py). The delivered answers are scored, and so are the model's raw drafts, as if
  they had gone out unchecked: the difference is what the guardrails catch.

No network and no real model: the fake is deterministic, so the numbers repeat run to run.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from rich.console import Console
from rich.table import Table

from eval.fake_llm import ScriptedChatModel, paraphrasing_script
from eval.harness import golden_questions
from knowledge_base.answering import ungrounded_numerals
from knowledge_base.composers import Composer, LangChainComposer


class _FallbackReasons(logging.Handler):
    """Counts the composer's logged fall-back reasons (the log carries no question text)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "outcome=" in message:
            outcome = message.split("outcome=")[1].split()[0]
            reason = message.split("reason=")[1].split()[0] if "reason=" in message else ""
            self.counts[f"{outcome}:{reason}" if reason else outcome] += 1


def _verified(answer: Any, question: str) -> bool:
    sources = [c.text for c in answer.citations] + [c.title for c in answer.citations] + [question]
    return not ungrounded_numerals(answer.answer, sources)


def run_faithfulness(kb, limit: int | None = None, console: Console | None = None, split: str = "dev",
                     alter_every: int = 4) -> dict[str, Any]:
    console = console or Console()
    questions = golden_questions(split, limit)
    answerer = kb.answerer
    extractive: Composer = answerer.extractive_composer()
    drafts: list[dict[str, Any]] = []
    fake = ScriptedChatModel(script=paraphrasing_script(alter_every, drafts))
    llm = LangChainComposer(fake, kb.settings.answer.composer.llm, extractive, answerer.verify_wording,
                            max_sentences=kb.settings.answer.max_sentences)
    reasons = _FallbackReasons()
    composer_log = logging.getLogger("knowledge_base.composers")
    composer_log.addHandler(reasons)
    previous_level = composer_log.level
    composer_log.setLevel(logging.INFO)
    verified = {"extractive": 0, "fake_llm": 0}
    answered = {"extractive": 0, "fake_llm": 0}
    answered_verified = {"extractive": 0, "fake_llm": 0}
    worded = 0
    try:
        for item in questions:
            answerer.composer = extractive
            plain = answerer.ask(item["question"])
            answerer.composer = llm
            before = len(drafts)
            composed = answerer.ask(item["question"])
            for name, answer in (("extractive", plain), ("fake_llm", composed)):
                ok = _verified(answer, item["question"])
                verified[name] += ok
                answered[name] += not answer.refused
                answered_verified[name] += ok and not answer.refused
            worded += len(drafts) > before and composed.answer != plain.answer
    finally:
        answerer.composer = None  # back to the settings' composer, built on next use
        composer_log.removeHandler(reasons)
        composer_log.setLevel(previous_level)
    n = len(questions)
    raw_ok = sum(not ungrounded_numerals(d["text"], list(d["passages"].values())) for d in drafts)
    altered = sum(d["altered"] for d in drafts)
    result = {
        "split": split,
        "questions": n,
        "faithfulness_extractive": verified["extractive"] / n if n else 0.0,
        "faithfulness_fake_llm": verified["fake_llm"] / n if n else 0.0,
        "verified_extractive": verified["extractive"],
        "verified_fake_llm": verified["fake_llm"],
        "answered": answered,
        "answered_verified": answered_verified,
        "drafts": len(drafts),
        "drafts_number_altered": altered,
        "drafts_faithful_unchecked": raw_ok,
        "answers_worded_by_model": worded,
        "composer_outcomes": dict(reasons.counts),
    }
    table = Table(title=f"golden ({split}) — faithfulness: answers whose numerals all verify / all answers")
    table.add_column("composer")
    table.add_column("verified / all", justify="right")
    table.add_column("faithfulness", justify="right")
    table.add_column("answered (not refused): verified / all", justify="right")
    for name, label in (("extractive", "extractive"), ("fake_llm", "fake LLM (guarded)")):
        table.add_row(label, f"{verified[name]}/{n}", f"{result['faithfulness_' + name]:.3f}",
                      f"{answered_verified[name]}/{answered[name]}")
    table.add_row("fake LLM drafts, unchecked", f"{raw_ok}/{len(drafts)}",
                  f"{raw_ok / len(drafts):.3f}" if drafts else "n/a", "")
    console.print(table)
    console.print(f"model drafts: {len(drafts)} ({altered} with a number altered); answers worded by the model: "
                  f"{worded}; composer outcomes: {dict(sorted(reasons.counts.items()))}")
    return result
