"""The golden Chinese regression set on the full shipped index. Quality floors are asserted;
timings are only reported (by `linli eval`), never asserted."""

from __future__ import annotations

import pytest

from assistant.services import Services
from eval.dialogue import tally
from eval.harness import evaluate_answers, evaluate_retrieval, load_golden, with_throwaway_database
from knowledge_base.loaders import iter_corpus

pytestmark = pytest.mark.slow

GOLDEN = load_golden()


def test_golden_set_is_well_formed(shipped_settings):
    doc_ids = {d.meta.doc_id for d in iter_corpus(shipped_settings.corpus_dirs)}
    bodies = {d.meta.doc_id: d.body for d in iter_corpus(shipped_settings.corpus_dirs)}
    zh = [q for q in GOLDEN if q["language"] == "zh" and q["answerable"]]
    en = [q for q in GOLDEN if q["language"] == "en" and q["answerable"]]
    refusals = [q for q in GOLDEN if not q["answerable"]]
    assert len(zh) >= 200 and len(en) >= 40 and len(refusals) >= 40
    for item in zh + en:
        assert item["expected_doc_ids"], item["id"]
    for item in (q for q in GOLDEN if q["expected_doc_ids"]):
        assert set(item["expected_doc_ids"]) <= doc_ids, item["id"]
        for fact in item["key_facts"]:
            assert fact in bodies[item["expected_doc_ids"][0]], (item["id"], fact)


def test_corpus_size_and_languages(shipped_settings):
    docs = list(iter_corpus(shipped_settings.corpus_dirs))
    assert sum(d.meta.language == "zh" for d in docs) >= 60
    assert sum(d.meta.language == "en" for d in docs) >= 15
    categories = {d.meta.category for d in docs}
    assert {"medical_insurance", "employment", "pension", "elderly_care", "disability", "social_assistance",
            "legal_aid", "community_services", "emergency"} <= categories


def test_statute_articles_are_indexed_one_per_document(shipped_kb):
    meta, _body, chunks = shipped_kb.store.get_document("社会保险法@2018-12-29#68")
    assert meta.category == "law" and meta.title == "《社会保险法》第六十八条"
    assert chunks and all(c.doc_id == "社会保险法@2018-12-29#68" for c in chunks)
    laws = [d for d in shipped_kb.store.list_documents() if d["category"] == "law"]
    assert len(laws) == 2651


@pytest.fixture(scope="module")
def retrieval_zh(shipped_kb):
    return evaluate_retrieval(shipped_kb, [q for q in GOLDEN if q["language"] == "zh"])


def test_hybrid_recall_at_5_floor(retrieval_zh):
    assert retrieval_zh["hybrid"]["recall@5"] >= 0.90, retrieval_zh


def test_hybrid_beats_each_single_retriever_on_mrr(retrieval_zh):
    assert retrieval_zh["hybrid"]["mrr"] >= max(retrieval_zh["bm25"]["mrr"], retrieval_zh["dense"]["mrr"]) - 0.01


def test_english_recall_floor(shipped_kb):
    results = evaluate_retrieval(shipped_kb, [q for q in GOLDEN if q["language"] == "en"])
    assert results["hybrid"]["recall@5"] >= 0.85, results


@pytest.fixture(scope="module")
def answers(shipped_kb):
    return evaluate_answers(shipped_kb, GOLDEN)


def test_refusal_recall_and_precision(answers):
    metrics, rows = answers
    missed = [r["question"] for r in rows if r["expected_refusal"] and not r["refused"]]
    assert metrics["refusal_recall"] >= 0.90, missed
    assert metrics["refusal_precision"] >= 0.80


def test_no_ungrounded_numerals(answers):
    metrics, rows = answers
    assert metrics["ungrounded_numerals"] == 0, [r for r in rows if r["ungrounded"]]


def test_key_fact_accuracy_floor(answers):
    metrics, _ = answers
    assert metrics["fact_accuracy"] >= FACT_ACCURACY_FLOOR, metrics


FACT_ACCURACY_FLOOR = 0.6


def test_local_policy_ranks_above_statute_when_both_answer(shipped_kb):
    hits = shipped_kb.search("失业保险金最长能领多久", k=10)
    docs = [h.chunk.doc_id for h in hits]
    local = docs.index("nat-employment-unemployment-insurance")
    statutes = [i for i, d in enumerate(docs) if "@" in d]
    assert statutes, docs
    assert local < statutes[0]


def test_statute_citation_is_reachable(shipped_kb):
    hits = shipped_kb.search("用人单位不缴纳社会保险费，社会保险费征收机构可以怎么处理", k=10)
    assert any(h.chunk.doc_id.startswith("社会保险法@") for h in hits)


@pytest.mark.parametrize(
    ("question", "amount"),
    [("我奶奶今年92了，每个月能领多少高龄补贴？", "500"), ("克拉玛依75岁老人高龄津贴每月多少", "100"),
     ("我太奶奶一百零二岁了，长寿金能领多少", "800"),
     ("My grandpa is 93 years old, how much elderly allowance?", "500")],
)
def test_computed_allowance_answers(shipped_kb, question, amount):
    answer = shipped_kb.ask(question)
    assert not answer.refused and amount in answer.answer
    assert answer.citations[0].doc_id.startswith("kmy-elderly-allowance")


def test_age_without_a_published_bracket_is_refused(shipped_kb):
    answer = shipped_kb.ask("我爸今年85岁，在克拉玛依每个月高龄津贴多少钱？")
    assert answer.refused
    assert "80至89" in answer.answer


def test_under_age_is_told_why_not_with_citation(shipped_kb):
    answer = shipped_kb.ask("我妈65岁了，高龄津贴能领多少")
    assert not answer.refused and "70" in answer.answer and answer.citations


def test_english_question_gets_an_english_cited_reply(shipped_kb):
    answer = shipped_kb.ask("What do I need to bring for unemployment registration?")
    assert not answer.refused and answer.language == "en"
    assert answer.citations[0].doc_id.endswith("-en")
    assert "[1]" in answer.answer and not any("\u4e00" <= ch <= "\u9fff" for ch in answer.answer)


def test_golden_questions_through_the_whole_dialogue_engine(shipped_kb, shipped_settings, intent_classifier, tmp_path):
    """Routing must not hide the answers retrieval finds: most answerable questions get an answer
    from an expected source, few get a clarifying question, and unanswerable ones are rarely
    answered. Measured (`linli eval dialogue`, the same engine): 260 of 363 answered from an
    expected source, 14 clarified; 3 of 67 unanswerable answered."""
    engine = Services(with_throwaway_database(shipped_settings, tmp_path), knowledge_base=shipped_kb,
                      classifier=intent_classifier).dialogue
    result = tally(GOLDEN, lambda q: engine.handle(f"golden-{q['id']}", q["question"]))
    print(f"\nthrough the engine: answerable {result['answerable']}, unanswerable {result['unanswerable']}")
    assert result["answered_right"] >= 0.65
    assert result["clarified"] <= 0.10
    assert result["unanswerable_answered"] <= 0.08
