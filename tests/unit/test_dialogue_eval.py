"""`linli eval dialogue` scoring: what each reply means for a golden question."""

from types import SimpleNamespace

from eval.dialogue import outcome, tally

ANSWERABLE = {
    "id": "zh-1", "question": "低保怎么申请", "answerable": True, "expected_doc_ids": ["nat-dibao", "kmy-dibao"]
}
UNANSWERABLE = {"id": "zh-unans-1", "question": "明天下雨吗", "answerable": False, "expected_doc_ids": []}


def reply(reply_type: str, *doc_ids: str) -> SimpleNamespace:
    return SimpleNamespace(reply_type=reply_type, citations=[{"doc_id": d} for d in doc_ids])


def test_an_answer_counts_as_right_only_when_an_expected_source_comes_first():
    assert outcome(ANSWERABLE, reply("answer", "kmy-dibao", "other")) == "answer"
    assert outcome(ANSWERABLE, reply("answer", "other", "nat-dibao")) == "answer (other source)"
    assert outcome(ANSWERABLE, reply("answer")) == "answer (other source)"
    assert outcome(ANSWERABLE, reply("clarify")) == "clarify"


def test_any_answer_to_an_unanswerable_question_counts_as_answered():
    assert outcome(UNANSWERABLE, reply("answer", "nat-dibao")) == "answer"
    assert outcome(UNANSWERABLE, reply("refusal")) == "refusal"


def test_tally_rates():
    replies = {"zh-1": reply("answer", "nat-dibao"), "zh-2": reply("clarify"), "zh-3": reply("form"),
               "zh-4": reply("answer", "other"), "zh-unans-1": reply("refusal"), "zh-unans-2": reply("answer", "x")}
    questions = [dict(ANSWERABLE, id=i) for i in ("zh-1", "zh-2", "zh-3", "zh-4")] + \
                [dict(UNANSWERABLE, id=i) for i in ("zh-unans-1", "zh-unans-2")]
    result = tally(questions, lambda q: replies[q["id"]])
    assert result["answerable"] == {"answer": 1, "clarify": 1, "form": 1, "answer (other source)": 1}
    assert result["unanswerable"] == {"refusal": 1, "answer": 1}
    assert (result["answered_right"], result["clarified"], result["unanswerable_answered"]) == (0.25, 0.25, 0.5)
    assert [row["outcome"] for row in result["rows"]][:2] == ["answer", "clarify"]
