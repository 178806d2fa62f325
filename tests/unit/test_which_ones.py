"""The rules behind "which ones" questions (issue 31: 哪几项 / 哪两种 / 包括哪些), on hand-made
sentences: a sentence that announces a list brings its items, ordinal items come all or none,
a list counts as one against the answer's sentence cap, and a which-ones question prefers what
enumerates over what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.core.domain import Chunk, DocumentMeta, Hit
from knowledge_base.answering import (
    Candidate,
    Cues,
    _attach_lists,
    _choose,
    announced_count,
    chunk_sentences,
    enumerates_inline,
    enumerations,
)

CUES = Path(__file__).resolve().parents[2] / "knowledge_base" / "data" / "answer_cues.yaml"
META = DocumentMeta(doc_id="d", title="t", category="social_assistance", region="national", source="test",
                    effective_from=None, effective_to=None, version="1", language="zh")


def _lists(text: str) -> list[tuple[str | None, list[str]]]:
    sentences = [s for s, _ in chunk_sentences(text)]
    return [(None if lead is None else sentences[lead], [sentences[i] for i in items])
            for lead, items in enumerations(text)]


def test_a_lead_in_with_a_count_takes_the_list_lines_that_follow_up_to_the_count():
    text = ("同时符合下面两个条件的居民，可以申请补助。\n- 家里收入很低。\n- 没有人照顾。\n- 这一行已经不是条件了。\n"
            "补助每月发放。")
    assert _lists(text) == [("同时符合下面两个条件的居民，可以申请补助。", ["家里收入很低。", "没有人照顾。"])]


def test_a_lead_in_without_a_count_takes_the_list_to_its_end():
    text = "下列人员可以申请帮助。\n1. 独居的老人。\n2. 重病的病人。\n3. 残疾的居民。\n\n申请不收费。"
    lead, items = _lists(text)[0]
    assert lead == "下列人员可以申请帮助。" and len(items) == 3


def test_ordinal_sentences_after_a_counted_lead_in_are_its_items():
    text = ("领取补贴要同时符合三个条件。第一个条件是年满六十岁。第二个条件是户籍在本市。"
            "第三个条件是已经登记。主动放弃的不能领取。")
    assert _lists(text) == [("领取补贴要同时符合三个条件。",
                             ["第一个条件是年满六十岁。", "第二个条件是户籍在本市。", "第三个条件是已经登记。"])]


def test_a_colon_lead_in_takes_the_rest_of_its_line():
    text = "供养的内容包括：提供基本生活条件；给予日常照料；提供疾病治疗。\n供养标准由当地确定。"
    assert _lists(text) == [("供养的内容包括：提供基本生活条件；", ["给予日常照料；", "提供疾病治疗。"])]


def test_list_lines_without_a_lead_in_are_a_list_of_their_own_and_a_lone_line_is_none():
    assert _lists("- 咨询：问政策、问流程。\n- 投诉：服务不满意可以投诉。\n- 举报：发现违法行为可以举报。") == [
        (None, ["咨询：问政策、问流程。", "投诉：服务不满意可以投诉。", "举报：发现违法行为可以举报。"])]
    assert _lists("- 只有这一行内容。\n下面这句话后面没有列表项，不成列表。\n补助按月发放。") == []


def test_a_lead_in_that_ends_its_chunk_is_kept_for_the_next_chunks_list():
    assert _lists("法律援助有范围。\n因下列事项没有委托代理人的，可以申请法律援助。") == [
        ("因下列事项没有委托代理人的，可以申请法律援助。", [])]


@pytest.mark.parametrize(("sentence", "count"), [
    ("领取失业保险金要同时符合三个条件。", 3), ("医疗救助主要有两种方式。", 2),
    ("根据第十四条，下列人员可以申请。", None),
    ("同时符合下面3个条件的可以申请。", 3), ("根据《条例》第四十五条，应当申请。", None)])
def test_the_announced_count_is_read_but_not_from_an_article_number(sentence, count):
    assert announced_count(sentence) == count


@pytest.mark.parametrize(("sentence", "lists"), [
    ("网约车司机、外卖骑手、快递员都属于新就业形态人员。", True),
    ("保险公司承担诉讼费、律师费等法律费用。", True),
    ("居民可以接受远程心电会诊和远程超声会诊。", True),
    ("经济困难的犯罪嫌疑人、被告人可以申请。", False),
    ("向乡镇人民政府、街道办事处提出申请。", False),
    ("申请人要在三十日内提出申请。", False)])
def test_a_sentence_enumerates_with_three_items_two_closed_by_deng_or_two_of_a_kind(sentence, lists):
    assert enumerates_inline(sentence) is lists


def _candidates(*chunk_texts: str) -> list[Candidate]:
    chunks = [Chunk(f"d::{n}", "d", "1", n, ("t",), text, 0, len(text)) for n, text in enumerate(chunk_texts)]
    by_chunk = {c.chunk_id: [Candidate(0, Hit(chunk=c, meta=META, score=0.0), s, position=p)
                             for p, (s, _) in enumerate(chunk_sentences(c.text))] for c in chunks}
    _attach_lists(chunks, by_chunk)
    return [cand for c in chunks for cand in by_chunk[c.chunk_id]]


def _scored(cands: list[Candidate], scores: dict[str, float]) -> list[Candidate]:
    for cand in cands:
        cand.score = scores.get(cand.text, -5.0)
    return sorted(cands, key=lambda c: -c.score)


def test_a_chosen_lead_in_brings_its_items_and_the_list_counts_as_one_sentence():
    cands = _candidates("同时符合下面三个条件的人，可以申请供养。\n- 没有劳动能力。\n- 没有生活来源。\n- 没有赡养人。\n"
                        "供养标准由当地确定。\n审批在三十日内完成。\n申请向街道提出。")
    ranked = _scored(cands, {"同时符合下面三个条件的人，可以申请供养。": 3.0, "供养标准由当地确定。": 2.5,
                             "审批在三十日内完成。": 2.4, "申请向街道提出。": 2.3})
    chosen = [c.text for c in _choose(ranked, 0.0, 3, whole_lists=False)]
    assert chosen == ["同时符合下面三个条件的人，可以申请供养。", "没有劳动能力。", "没有生活来源。", "没有赡养人。",
                      "供养标准由当地确定。", "审批在三十日内完成。"]


def test_ordinal_items_come_all_or_none_even_when_one_ranks_alone():
    cands = _candidates("领取要同时符合三个条件。第一个条件是缴费满一年。"
                        "第二个条件是非自愿失业。第三个条件是已经登记。")
    ranked = _scored(cands, {"第二个条件是非自愿失业。": 2.0})
    chosen = [c.text for c in _choose(ranked, 0.0, 1, whole_lists=False)]
    assert chosen[0] == "领取要同时符合三个条件。" and len(chosen) == 4


def test_a_bare_list_line_is_one_sentence_unless_the_question_asks_which_ones():
    cands = _candidates("- 咨询：可以问政策。\n- 投诉：可以投诉服务。\n- 举报：可以举报违法。")
    ranked = _scored(cands, {"投诉：可以投诉服务。": 2.0})
    assert [c.text for c in _choose(ranked, 0.0, 3, whole_lists=False)] == ["投诉：可以投诉服务。"]
    assert len(_choose(ranked, 0.0, 3, whole_lists=True)) == 3


def test_a_lead_in_ending_its_chunk_takes_the_list_that_opens_the_next():
    cands = _candidates("因下列事项没有委托代理人的，可以申请法律援助。", "- 请求国家赔偿；\n- 请求发给抚恤金；")
    ranked = _scored(cands, {"因下列事项没有委托代理人的，可以申请法律援助。": 2.0})
    assert [c.text for c in _choose(ranked, 0.0, 1, whole_lists=False)] == [
        "因下列事项没有委托代理人的，可以申请法律援助。", "请求国家赔偿；", "请求发给抚恤金；"]


@pytest.mark.parametrize(("question", "asks"), [
    ("申请特困供养要符合哪三个条件", True), ("生育保险待遇包括哪些", True), ("哪些人可以领高龄津贴", False),
    ("要带哪些材料", False)])
def test_the_which_ones_cue_is_read_from_answer_cues(question, asks):
    assert Cues.load(CUES).asks(question, "which_ones") is asks
