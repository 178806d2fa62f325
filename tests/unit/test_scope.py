"""Scope: which word puts a question outside what the policy documents cover. A small corpus
stands in for the index, so each rule is checked on its own."""

from __future__ import annotations

import pytest

from knowledge_base.scope import Scope, read_places

CORPUS = ("城乡居民医保的参保缴费，在集中缴费期内到社区申请。低保家庭可以申请临时救助。"
          "志愿服务站提供家电维修和理发。卫生间安装扶手可以申请适老化改造补贴。"
          "Residents of Hong Kong working on the mainland may join the scheme. Apply for the allowance at the centre.")


@pytest.fixture(scope="module")
def scope() -> Scope:
    return Scope(CORPUS, subjects={"医保", "低保", "临时救助"}, resident_words={"孙子", "老家"},
                 foreign_places=["日本", "美国", "香港", "Germany", "Hong Kong", "UK"])


@pytest.mark.parametrize(("question", "word"), [
    ("残疾人两项补贴在日本怎么申请", "日本"),
    ("吃低保的人能不能办美国签证", "美国"),
    ("What is the state pension in Germany?", "Germany"),
    ("can I get the allowance in the uk", "uk"),
])
def test_a_country_no_document_covers_is_out_of_scope(scope, question, word):
    assert scope.out_of_scope_word(question) == word


def test_a_place_a_document_mentions_is_not_out_of_scope(scope):
    assert scope.out_of_scope_word("Can people from Hong Kong join the medical insurance?") is None


def test_latin_places_match_whole_words_only(scope):
    assert scope.out_of_scope_word("how do I pay my ukulele teacher") is None


@pytest.mark.parametrize(("question", "word"), [
    ("养老金认证能不能顺便给我家猫办个护照", "护照"),
    ("医保卡里的钱能不能给孙子交补习班学费", "补习班"),
    ("How do I renew my passport at the community service centre?", "passport"),
])
def test_a_thing_no_document_mentions_asked_to_be_handled_or_paid_is_out_of_scope(scope, question, word):
    assert scope.out_of_scope_word(question) == word


@pytest.mark.parametrize("question", [
    "家里卫生间想装个扶手，政府有没有补贴",      # 扶手: the documents speak of it
    "医保卡在老家办的，在这边能用吗",            # 老家: the resident's own life
    "劳动仲裁是不是3年内去申请都行",              # 都行: jieba's "noun" is an adverb and a verb
    "How do I apply for the allowance?",
    "志愿服务站修冰箱要钱不",                      # 修 is no request verb here: 冰箱 is not what is paid for
])
def test_questions_about_what_the_documents_cover_stay_in_scope(scope, question):
    assert scope.out_of_scope_word(question) is None


def test_a_look_alike_tied_to_a_policy_subject_is_out_of_scope(scope):
    assert scope.out_of_scope_word("月球上的医保怎么报销") == "月球"


def test_places_file_keeps_names_with_spaces(tmp_path):
    path = tmp_path / "places.txt"
    path.write_text("# comment\n日本\n\nHong Kong\n", encoding="utf-8")
    assert read_places(path) == ["日本", "Hong Kong"]
