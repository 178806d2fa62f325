"""Fit the refusal confidence model on the golden set's dev half and print the coefficients to
put in settings (answer.confidence). Usage: python -m eval.calibrate"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from assistant.services import get_knowledge_base
from assistant.settings import get_settings
from eval.harness import load_golden, split_of
from knowledge_base.answering import question_coverage
from knowledge_base.benefits import BenefitQuery, match_benefit_question
from knowledge_base.guards import looks_like_injection


def features(kb, question: str) -> tuple[float, float] | None:
    """The two signals the answerer uses, or None where the question never reaches them."""
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
    return max((h.dense_score or 0.0) for h in hits[:3]), question_coverage(query, hits)


def main() -> None:
    kb = get_knowledge_base(get_settings())
    rows = []
    for item in load_golden():
        f = features(kb, item["question"])
        if f is not None:
            rows.append((split_of(item["id"]), f, 1 if item.get("answerable", True) else 0))
    dev = [(f, y) for s, f, y in rows if s == "dev"]
    test = [(f, y) for s, f, y in rows if s == "test"]
    x = np.array([f for f, _ in dev])
    y = np.array([y for _, y in dev])
    model = LogisticRegression(C=10.0, class_weight="balanced").fit(x, y)
    intercept, (w_dense, w_cov) = float(model.intercept_[0]), model.coef_[0]
    print(f"intercept={intercept:.3f} dense={w_dense:.3f} coverage={w_cov:.3f}")
    for name, part in (("dev", dev), ("test", test)):
        xs = np.array([f for f, _ in part])
        ys = np.array([y for _, y in part])
        pred = model.predict_proba(xs)[:, 1] >= 0.5
        refuse_recall = float(((~pred) & (ys == 0)).sum() / max((ys == 0).sum(), 1))
        answer_recall = float((pred & (ys == 1)).sum() / max((ys == 1).sum(), 1))
        print(f"{name}: n={len(part)} refusal recall={refuse_recall:.3f} answerable kept={answer_recall:.3f}")
    print("Set LINLI_ANSWER__CONFIDENCE__INTERCEPT / __DENSE / __COVERAGE or update assistant/settings.py.")


if __name__ == "__main__":
    main()
