"""Intent evaluation on the held-out set (eval/datasets/intents/heldout.jsonl), whose
utterances are never used as training examples: accuracy, macro-F1, per-intent recall and the
confusion matrix."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from eval.harness import percentile
from intents.classifier import INTENTS, IntentClassifier

HELDOUT = Path(__file__).resolve().parent / "datasets" / "intents" / "heldout.jsonl"
SHORT = {"policy_question": "pol", "service_procedure": "proc", "dispute_mediation": "disp",
         "human_request": "human", "complaint": "compl", "emergency": "emerg", "greeting": "greet",
         "thanks_bye": "bye", "out_of_scope": "oos"}


def load_heldout(path: Path = HELDOUT) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate_intents(classifier: IntentClassifier, items: list[dict[str, Any]]) -> dict[str, Any]:
    gold, predicted, latencies, errors = [], [], [], []
    procedure_hits = procedure_total = 0
    for item in items:
        started = time.perf_counter()
        prediction = classifier.predict(item["text"])
        latencies.append(time.perf_counter() - started)
        gold.append(item["intent"])
        predicted.append(prediction.intent)
        if prediction.intent != item["intent"]:
            errors.append({"text": item["text"], "gold": item["intent"], "predicted": prediction.intent,
                           "confidence": round(prediction.confidence, 3)})
        if item["intent"] == "service_procedure" and prediction.intent == "service_procedure":
            procedure_total += 1
            procedure_hits += prediction.procedure == item.get("procedure")
    labels = list(INTENTS)
    recalls = recall_score(gold, predicted, labels=labels, average=None, zero_division=0)
    return {
        "n": len(items),
        "accuracy": accuracy_score(gold, predicted),
        "macro_f1": f1_score(gold, predicted, labels=labels, average="macro", zero_division=0),
        "recall": {label: float(r) for label, r in zip(labels, recalls, strict=True)},
        "procedure_accuracy": procedure_hits / procedure_total if procedure_total else 0.0,
        "confusion": {"labels": labels, "matrix": confusion_matrix(gold, predicted, labels=labels).tolist()},
        "latency_p50_ms": percentile(latencies, 0.5) * 1000,
        "latency_p95_ms": percentile(latencies, 0.95) * 1000,
        "errors": errors,
    }


def run_intents(classifier: IntentClassifier, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    items = load_heldout()
    result = evaluate_intents(classifier, items)
    summary = Table(title=f"intents — held-out ({result['n']} utterances)")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for key in ("accuracy", "macro_f1", "procedure_accuracy", "latency_p50_ms", "latency_p95_ms"):
        summary.add_row(key, f"{result[key]:.3f}")
    for label, value in result["recall"].items():
        summary.add_row(f"recall {label}", f"{value:.3f}")
    console.print(summary)
    matrix = Table(title="confusion matrix (rows: gold, columns: predicted)")
    matrix.add_column("gold")
    for label in result["confusion"]["labels"]:
        matrix.add_column(SHORT[label], justify="right")
    for label, row in zip(result["confusion"]["labels"], result["confusion"]["matrix"], strict=True):
        matrix.add_row(SHORT[label], *[str(v) for v in row])
    console.print(matrix)
    return result
