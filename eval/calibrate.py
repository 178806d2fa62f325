"""Fit the refusal confidence model on the golden set's dev half, choose the refusal threshold
there, and report both halves. Print the values to put in settings (answer.confidence and
answer.refusal_threshold). Usage: python -m eval.calibrate"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from assistant.core.settings import get_settings
from assistant.services import Services
from eval.harness import load_golden, split_of
from knowledge_base.answering import asks_for_detail, confidence_features
from knowledge_base.benefits import BenefitQuery, match_benefit_question
from knowledge_base.guards import looks_like_injection

# Answering what the corpus does not support is worse than handing a resident to a worker.
MISSED_REFUSAL_COST = 3.0


def features(kb, question: str) -> tuple[float, float, float] | None:
    """The signals the answerer uses, or None where the question never reaches them."""
    answerer = kb.answerer
    query = kb.retriever.prepare(question)
    if looks_like_injection(question):
        return None
    benefit = match_benefit_question(query.normalized, answerer._benefit_tables(), answerer.regions, query.language)
    if benefit == "other_region" or isinstance(benefit, BenefitQuery):
        return None
    hits = kb.search(question, k=8)
    if not hits:
        return None
    return confidence_features(query, hits, kb.store.load().inverse_document_frequency)


def _rates(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    answered = probabilities >= threshold
    refusal_recall = float(((~answered) & (labels == 0)).sum() / max((labels == 0).sum(), 1))
    kept = float((answered & (labels == 1)).sum() / max((labels == 1).sum(), 1))
    return refusal_recall, kept


def main() -> None:
    kb = Services(get_settings()).knowledge_base
    rows = []
    for item in load_golden():
        if not item.get("answerable", True) and asks_for_detail(item["question"]):
            # Refused later anyway when the cited text carries no amount; leaving these in would
            # push the threshold up for nothing.
            continue
        f = features(kb, item["question"])
        if f is not None:
            rows.append((split_of(item["id"]), f, 1 if item.get("answerable", True) else 0))
    halves = {name: (np.array([f for s, f, _ in rows if s == name]), np.array([y for s, _, y in rows if s == name]))
              for name in ("dev", "test")}
    x, y = halves["dev"]
    model = LogisticRegression(C=10.0, class_weight="balanced").fit(x, y)
    probabilities = model.predict_proba(x)[:, 1]
    def cost(threshold: float) -> float:
        answered = probabilities >= threshold
        return MISSED_REFUSAL_COST * float((answered & (y == 0)).sum()) + float(((~answered) & (y == 1)).sum())

    threshold = float(min(np.linspace(0.05, 0.95, 91), key=cost))
    intercept = float(model.intercept_[0])
    w_dense, w_cov, w_lex = (float(w) for w in model.coef_[0])
    print(f"intercept={intercept:.3f} dense={w_dense:.3f} coverage={w_cov:.3f} lexical={w_lex:.3f} "
          f"threshold={threshold:.2f}")
    for name, (xs, ys) in halves.items():
        recall, kept = _rates(model.predict_proba(xs)[:, 1], ys, threshold)
        print(f"{name}: n={len(ys)} refusal recall={recall:.3f} answerable kept={kept:.3f}")
    print("Put these in assistant/settings.py (ConfidenceSettings, AnswerSettings.refusal_threshold) "
          "or set LINLI_ANSWER__CONFIDENCE__… / LINLI_ANSWER__REFUSAL_THRESHOLD.")


if __name__ == "__main__":
    main()
