"""No fact twice in one answer (issue 31): knowledge_base.composers.without_repeated_facts, which the
answerer applies to every composer's answer."""

from __future__ import annotations

from assistant.core.domain import Answer, Citation
from knowledge_base.composers import without_repeated_facts


def _citations(n: int) -> list[Citation]:
    return [Citation(doc_id=f"d{i}", title=f"文档{i}", chunk_id=f"d{i}#0", text=f"正文{i}") for i in range(1, n + 1)]


def _answer(text: str, n: int, **extra) -> Answer:
    return Answer(**{"answer": text, "refused": False, "confidence": 0.9, "citations": _citations(n), **extra})


def test_a_sentence_another_contains_is_dropped_and_its_citation_merged():
    answer = without_repeated_facts(_answer(
        "失业保险金由社会保险经办机构按月发放[1]。领取期间应当如实申报就业情况[2]。失业保险金按月发放[3]。", 3))
    assert answer.answer == "失业保险金由社会保险经办机构按月发放[1][2]。领取期间应当如实申报就业情况[3]。"
    assert [c.doc_id for c in answer.citations] == ["d1", "d3", "d2"]


def test_the_shorter_sentence_first_is_dropped_into_the_longer_one_after_it():
    answer = without_repeated_facts(_answer("失业保险金按月发放[1]。失业保险金由社会保险经办机构按月发放[2]。", 2))
    assert answer.answer == "失业保险金由社会保险经办机构按月发放[1][2]。"
    assert [c.doc_id for c in answer.citations] == ["d1", "d2"]


def test_a_near_duplicate_is_dropped_and_the_same_citation_is_not_repeated():
    answer = without_repeated_facts(_answer(
        "申请低保需要携带身份证和户口簿[1]。申请低保需携带身份证、户口簿[1]。", 1))
    assert answer.answer == "申请低保需要携带身份证和户口簿[1]。"
    assert len(answer.citations) == 1


def test_english_sentences_and_spacing():
    answer = without_repeated_facts(_answer(
        "Unemployment benefit is paid monthly by the social insurance agency [1]. "
        "Bring your ID card [2]. Unemployment benefit is paid monthly [1].", 2, language="en"))
    assert answer.answer == ("Unemployment benefit is paid monthly by the social insurance agency [1]. "
                             "Bring your ID card [2].")


def test_different_facts_and_uncited_sentences_are_kept_as_they_are():
    text = "不是，是每月500元。高龄津贴每月500元[1]。90周岁以上老人每月500元[2]。请带身份证。请带身份证。"
    answer = _answer(text, 2)
    assert without_repeated_facts(answer) is answer


def test_a_citation_no_marker_names_stays_last():
    answer = without_repeated_facts(_answer("补贴按月发放[2]。补贴按月发放到账户[3]。", 3, refused=True))
    assert answer.answer == "补贴按月发放到账户[1][2]。"
    assert [c.doc_id for c in answer.citations] == ["d2", "d3", "d1"]


def test_a_sentence_with_a_figure_the_other_lacks_is_another_fact():
    answer = _answer("90周岁以上高龄津贴每月500元[1]。高龄津贴每月100元[2]。高龄津贴每月500元[3]。", 3)
    assert without_repeated_facts(answer).answer == "90周岁以上高龄津贴每月500元[1][2]。高龄津贴每月100元[3]。"


def test_a_sentence_that_negates_the_other_is_another_fact():
    answer = _answer("申请低保需要户口簿[1]。申请低保不需要户口簿[2]。", 2)
    assert without_repeated_facts(answer) is answer


def test_merged_markers_read_in_ascending_order():
    answer = without_repeated_facts(_answer(
        "Xiao Ke is in all 125 centres [1]. Xiao Ke is an AI assistant [2]. "
        "Xiao Ke is in all 125 centres in Karamay [2].",
        2, language="en"))
    assert answer.answer == "Xiao Ke is an AI assistant [1]. Xiao Ke is in all 125 centres in Karamay [1][2]."
