"""Intent recognition: keyword rules for the high-stakes intents (emergency and human_request
always win when they match), then a logistic-regression model over the offline embedder's
vectors, whose probability is the calibrated confidence. Examples and rules are data
(intents/data/intents.yaml) that a centre administrator edits."""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression

from connectors.services.procedures import ProcedureCatalogue
from knowledge_base.embedders import Embedder, EmbeddingCache
from knowledge_base.text import drop_end_punctuation, normalize_width, to_simplified

INTENTS = (
    "policy_question",
    "service_procedure",
    "dispute_mediation",
    "human_request",
    "complaint",
    "emergency",
    "greeting",
    "thanks_bye",
    "out_of_scope",
)
HIGH_STAKES = ("emergency", "human_request")
DATA_FILE = Path(__file__).resolve().parent / "data" / "intents.yaml"


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    language: str
    procedure: str | None = None


@dataclass
class IntentPrediction:
    intent: str
    confidence: float
    source: str  # "rule" | "model"
    procedure: str | None = None
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    rule: str | None = None


def load_intent_data(path: Path = DATA_FILE, procedures_dir: Path | None = None
                     ) -> tuple[list[Example], dict[str, list[re.Pattern[str]]]]:
    """The examples and keyword rules of the intents file, and each procedure file's `requests`
    as service_procedure examples of that procedure (a procedure is declared in its file alone)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    examples: list[Example] = []
    for intent, spec in (data.get("intents") or {}).items():
        if intent not in INTENTS:
            raise ValueError(f"{path.name}: unknown intent {intent!r}; allowed: {', '.join(INTENTS)}")
        for language, items in (spec.get("examples") or {}).items():
            for item in items or []:
                if isinstance(item, dict):
                    examples.append(Example(str(item["text"]), intent, language, item.get("procedure")))
                else:
                    examples.append(Example(str(item), intent, language))
    for procedure in ProcedureCatalogue(procedures_dir).all().values():
        for language, said in procedure.requests.items():
            examples.extend(Example(text, "service_procedure", language, procedure.id) for text in said)
    rules = {
        intent: [re.compile(p, re.IGNORECASE) for p in patterns or []]
        for intent, patterns in (data.get("keyword_rules") or {}).items()
    }
    return examples, rules


def _clean(text: str) -> str:
    # How a message ends is no intent: a trailing 。 or ？ flipped the prediction for the same words.
    return drop_end_punctuation(to_simplified(normalize_width(text)).strip())


@dataclass(frozen=True)
class _Fitted:
    """What fitting costs (the examples embedded, scikit-learn's model): the same for every
    classifier over one embedder, one intents file and one procedures folder (whose `requests`
    are examples too), so a process fits it once (`_fitted`)."""

    examples: list[Example]
    rules: dict[str, list[re.Pattern[str]]]
    model: LogisticRegression
    vectors: np.ndarray
    lock: threading.Lock


_FITTED: dict[tuple[str, str, str], _Fitted] = {}
_FITTING = threading.Lock()


def _fitted(embedder: Embedder, cache: EmbeddingCache | None, path: Path, procedures_dir: Path | None) -> _Fitted:
    """The fitted model for this embedder, intents file and procedures folder (keyed by their
    content), fitted on first use in this process.
    A replica builds it before it answers /readyz and every test app reuses it: built on the
    first message, the fit (seconds of a busy CPU) stalled a restarted replica's every request."""
    digest = hashlib.sha256(path.read_bytes())
    for procedure_file in sorted(ProcedureCatalogue(procedures_dir).directory.glob("*.yaml")):
        digest.update(procedure_file.name.encode() + procedure_file.read_bytes())
    key = (embedder.name, str(path), digest.hexdigest())
    with _FITTING:
        found = _FITTED.get(key)
        if found is not None:
            return found
        examples, rules = load_intent_data(path, procedures_dir)
        texts = [_clean(e.text) for e in examples]
        # Examples and incoming messages are embedded the same way (passage side), so the model
        # sees one distribution; the example vectors are cached on disk.
        vectors = cache.embed_passages(embedder, texts) if cache else embedder.embed_passages(texts)
        model = LogisticRegression(C=20.0, max_iter=2000, class_weight="balanced")
        model.fit(vectors, np.array([e.intent for e in examples]))
        found = _FITTED[key] = _Fitted(examples, rules, model, vectors, threading.Lock())
        return found


class IntentClassifier:
    def __init__(self, embedder: Embedder, cache: EmbeddingCache | None = None, path: Path = DATA_FILE,
                 procedures_dir: Path | None = None) -> None:
        self.embedder = embedder
        fitted = _fitted(embedder, cache, path, procedures_dir)
        self.examples, self.rules, self.model = fitted.examples, fitted.rules, fitted.model
        self._procedure_vectors = fitted.vectors
        self._procedures = [e.procedure for e in self.examples]
        self._intents = np.array([e.intent for e in self.examples])
        self._lock = fitted.lock  # one model, one lock, whichever classifier holds it

    def rule_match(self, text: str) -> tuple[str, str] | None:
        cleaned = _clean(text)
        for intent in HIGH_STAKES:
            for pattern in self.rules.get(intent, []):
                if pattern.search(cleaned):
                    return intent, pattern.pattern
        return None

    def predict(self, text: str) -> IntentPrediction:
        matched = self.rule_match(text)
        if matched:
            intent, rule = matched
            return IntentPrediction(intent, 1.0, "rule", rule=rule)
        vector = self.embedder.embed_passages([_clean(text)])
        with self._lock:
            probabilities = self.model.predict_proba(vector)[0]
        order = np.argsort(-probabilities)
        classes = self.model.classes_
        best = str(classes[order[0]])
        prediction = IntentPrediction(
            best, float(probabilities[order[0]]), "model",
            alternatives=[(str(classes[i]), float(probabilities[i])) for i in order[1:3]],
        )
        if best == "service_procedure":
            prediction.procedure = self._nearest_procedure(vector[0])
        return prediction

    def _nearest_procedure(self, vector: np.ndarray) -> str | None:
        mask = self._intents == "service_procedure"
        if not mask.any():
            return None
        sims = self._procedure_vectors[mask] @ vector
        candidates = [p for p, m in zip(self._procedures, mask, strict=True) if m]
        return candidates[int(np.argmax(sims))]
