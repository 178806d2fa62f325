"""Query processing for statute questions: the law cue and named statutes (knowledge_base/retrieval.py),
and the whole-index evaluation of the social_law dataset (eval/harness.py)."""

from __future__ import annotations

import json

import pytest

from assistant.core.settings import PROJECT_ROOT, Settings
from eval.harness import is_shipped_law_corpus
from knowledge_base.loaders import iter_law_articles
from knowledge_base.retrieval import asks_for_law, named_laws

LAWS = ["劳动法", "劳动合同法", "劳动合同法实施条例", "社会保险法", "工伤保险条例"]
SOCIAL_LAW = PROJECT_ROOT.parent / "shared" / "data" / "retrieval" / "social_law"


@pytest.mark.parametrize("question", [
    "李军是一名现役军人，因执行任务时受伤。根据法律规定，军人保险基金包括哪些类型？",
    "小华和小明夫妇要离婚。根据哪一条法律可以解决小华和小明的问题？",
    "某县级工会里离休的工作人员向工会申请退休待遇。根据什么法律，离休、退休工作人员的待遇应该如何处理？",
    "企业出现职业病。根据相关法规要求，该企业应该采取哪些措施？",
    "《社会保险法》对失业金是怎么规定的",
    "工伤保险条例第三十九条说的丧葬补助金是多少",
])
def test_questions_asking_what_the_law_says_are_recognised(question):
    assert asks_for_law(question)


@pytest.mark.parametrize("question", [
    "低保去哪里申请",
    "申请法律援助要开贫困证明吗",
    "克拉玛依那个法律费用保险是干啥的,诉讼能管律师费不",
    "国家对高龄津贴有啥规定",
    "想咨询法律问题打哪个电话",
])
def test_service_questions_mentioning_law_words_are_not_law_questions(question):
    assert not asks_for_law(question)


def test_named_statutes_are_found_longest_first_without_double_counting():
    assert named_laws("按照劳动合同法实施条例第十条，工龄怎么算", LAWS) == ["劳动合同法实施条例"]
    assert named_laws("劳动法和社会保险法对加班费和社保各有什么规定", LAWS) == ["社会保险法", "劳动法"]
    assert named_laws("《中华人民共和国劳动合同法》规定试用期多长", LAWS) == ["劳动合同法"]
    assert named_laws("公司不给交社保怎么办", LAWS) == []


def test_the_shipped_law_corpus_is_recognised_and_its_qrels_are_index_doc_ids():
    if not (SOCIAL_LAW / "qrels.jsonl").is_file():
        pytest.skip("social_law dataset not in ../shared")
    settings = Settings()
    assert is_shipped_law_corpus(settings, SOCIAL_LAW)
    assert not is_shipped_law_corpus(settings.model_copy(update={"law_corpus": None}), SOCIAL_LAW)
    doc_ids = {doc.meta.doc_id for doc in iter_law_articles(settings.law_corpus)}
    qrels = [json.loads(line) for line in (SOCIAL_LAW / "qrels.jsonl").read_text(encoding="utf-8").splitlines()]
    wanted = {row["doc_id"] for row in qrels} | {d for row in qrels for d in row["other_versions_same_article"]}
    assert wanted <= doc_ids
