"""Fit the answer composer's sentence ranker on the dev halves of the golden set and the
residents' set, and report both halves. A candidate sentence (of the best retrieved document) is
a positive when it carries one of the question's key facts. Writes
knowledge_base/data/sentence_ranker.json and prints the window to put in
AnswerSettings.composer.window. Usage: python -m eval.train_ranker [--dry-run]"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from assistant.core.settings import get_settings
from assistant.knowledge import KnowledgeBase
from eval.harness import _fact_found, load_golden, split_of
from eval.resident import load_resident, split_ids
from knowledge_base.answering import SENTENCE_FEATURES, SENTENCE_RANKER_FILE, Candidate, requested_detail

WINDOWS = (0.5, 1.0, 1.5, 2.0, 3.0)


def questions() -> list[tuple[str, dict[str, Any]]]:
    """(half, item) for every answerable question with key facts; half is dev or test."""
    out = [("dev" if split_of(i["id"]) == "dev" else "test", i) for i in load_golden()]
    resident = load_resident()
    halves = split_ids(resident)
    out += [("dev" if halves[i["id"]] == "dev" else "test", i) for i in resident]
    return [(half, i) for half, i in out if i.get("answerable", True) and i.get("key_facts")]


def candidates_of(kb: KnowledgeBase, question: str) -> list[Candidate]:
    answerer = kb.answerer
    query = kb.retriever.prepare(question)
    hits = kb.retriever.search(question, k=8)
    if not hits:
        return []
    candidates = answerer._candidates(hits)
    if candidates:
        answerer._score(query, candidates, requested_detail(query.raw + " " + query.normalized))
    return candidates


def fact_accuracy(groups: list[tuple[list[Candidate], list[str]]], scores: list[np.ndarray], window: float,
                  max_sentences: int) -> float:
    """Share of key facts the composer would put in the answer with these sentence scores."""
    found = []
    for (cands, facts), s in zip(groups, scores, strict=True):
        if not cands:
            found.append(0.0)
            continue
        order = np.argsort(-s)
        chosen = [cands[i].text for i in order if s[i] >= s[order[0]] - window][:max_sentences]
        found.append(sum(any(_fact_found(f, t) for t in chosen) for f in facts) / len(facts))
    return statistics.fmean(found)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dry-run", action="store_true", help="report, do not write the model")
    args = parser.parse_args()
    settings = get_settings()
    kb = KnowledgeBase(settings)
    groups: dict[str, list[tuple[list[Candidate], list[str]]]] = {"dev": [], "test": []}
    for half, item in questions():
        groups[half].append((candidates_of(kb, item["question"]), item["key_facts"]))

    def matrix(cands: list[Candidate]) -> np.ndarray:
        return np.array([[c.features.get(f, 0.0) for f in SENTENCE_FEATURES] for c in cands]).reshape(
            len(cands), len(SENTENCE_FEATURES))

    x_rows, y_rows = [], []
    for cands, facts in groups["dev"]:
        labels = [any(_fact_found(f, c.text) for f in facts) for c in cands]
        if any(labels):  # a question whose document lacks the fact teaches the ranker nothing
            x_rows.append(matrix(cands))
            y_rows.extend(labels)
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(np.vstack(x_rows), y_rows)

    def scores(half: str) -> list[np.ndarray]:
        return [model.decision_function(matrix(c)) if c else np.zeros(0) for c, _ in groups[half]]

    baseline = {h: [np.array([c.score for c in cands]) for cands, _ in groups[h]] for h in groups}
    dev_scores = scores("dev")
    window = max(WINDOWS, key=lambda w: fact_accuracy(groups["dev"], dev_scores, w, settings.answer.max_sentences))
    for half in ("dev", "test"):
        before = fact_accuracy(groups[half], baseline[half], settings.answer.composer.window,
                               settings.answer.max_sentences)
        after = fact_accuracy(groups[half], scores(half), window, settings.answer.max_sentences)
        print(f"{half}: {len(groups[half])} questions; composer fact accuracy {before:.3f} (current ranker) -> "
              f"{after:.3f} (fitted, window {window})")
    weights = {f: round(float(w), 4) for f, w in zip(SENTENCE_FEATURES, model.coef_[0], strict=True)}
    print("weights:", weights, "intercept:", round(float(model.intercept_[0]), 4), "window:", window)
    if not args.dry_run:
        SENTENCE_RANKER_FILE.write_text(json.dumps(
            {"weights": weights, "intercept": round(float(model.intercept_[0]), 4),
             "trained_on": "dev halves of eval/datasets/golden and eval/datasets/resident (eval.train_ranker)"},
            ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {SENTENCE_RANKER_FILE}; set AnswerSettings.composer.window = {window}")


if __name__ == "__main__":
    main()
