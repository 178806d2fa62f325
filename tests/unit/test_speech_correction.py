from __future__ import annotations

import pytest

from assistant.settings import Settings
from assistant.speech.correction import implausible, normalise_numbers, post_correct, restore_terms
from assistant.speech.service import domain_terms
from assistant.speech.transcriber import drop_echo

TERMS = domain_terms(Settings())


@pytest.mark.parametrize(("heard", "meant"), [
    ("高龄今天一个月多少", "高龄津贴一个月多少"),
    ("底保怎么申请", "低保怎么申请"),
    ("依保报销比例", "医保报销比例"),
    ("高龄不贴能领多少", "高龄补贴能领多少"),
    ("養老金資格認證怎麼弄", "养老金资格认证怎么弄"),
])
def test_domain_terms_are_restored(heard, meant):
    assert post_correct(heard, TERMS) == meant


@pytest.mark.parametrize("text", ["今天天气怎么样", "我想去公园走走", "请问几点开门"])
def test_ordinary_words_are_left_alone(text):
    assert restore_terms(text, TERMS) == text


def test_numbers_before_age_and_amount_units_become_digits():
    assert normalise_numbers("我奶奶九十二岁，每月五百元") == "我奶奶92岁，每月500元"
    assert normalise_numbers("一二线城市") == "一二线城市"


def test_implausible_ages_are_doubted_with_a_guess():
    doubt = implausible("我爸886岁了高龄津贴")
    assert doubt.heard == "886岁" and doubt.guess == "86岁"
    assert implausible("我爸253岁").guess is None
    assert implausible("我爸86岁") is None


def test_an_echoed_prompt_is_not_speech():
    assert drop_echo("以下是普通话的句子。", ["以下是普通话的句子。"]) == ""
    assert drop_echo("低保 医保", ["高龄津贴 低保 医保"]) == ""
    assert drop_echo("低保怎么申请", ["以下是普通话的句子。", "高龄津贴 低保 医保"]) == "低保怎么申请"
