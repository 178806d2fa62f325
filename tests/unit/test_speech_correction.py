from __future__ import annotations

from types import SimpleNamespace

import pytest

from assistant.core.settings import Settings
from assistant.speech.correction import CorpusSounds, implausible, normalise_numbers, post_correct, restore_terms
from assistant.speech.service import domain_terms
from assistant.speech.transcriber import _RunnersUpKeeping, drop_echo

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


@pytest.mark.parametrize(("heard", "guess"), [("816", "86岁"), ("8816", "86岁"), ("910", "90岁"), ("9912", "92岁")])
def test_an_age_whose_ten_was_written_as_a_one_is_guessed(heard, guess):
    # whisper writes 八十六 as 8 + 16, sometimes with the 8 doubled as well (我8816岁, speech set sp-age-002).
    assert implausible(f"我爸{heard}岁了").guess == guess


def test_an_echoed_prompt_is_not_speech():
    assert drop_echo("以下是普通话的句子。", ["以下是普通话的句子。"]) == ""
    assert drop_echo("低保 医保", ["高龄津贴 低保 医保"]) == ""
    assert drop_echo("低保怎么申请", ["以下是普通话的句子。", "高龄津贴 低保 医保"]) == "低保怎么申请"


def test_implausible_amounts_are_doubted_against_the_tables():
    known = {300.0, 500.0, 600.0, 1000.0}
    doubt = implausible("高龄津贴每月5500元对吗", known)
    assert doubt.heard == "5500元" and doubt.guess == "500元"
    assert implausible("每月73000块", known).guess is None
    assert implausible("每月500元对吗", known) is None
    assert implausible("我每月退休金3000元能申请吗", known) is None  # not a table amount, but plausible
    assert implausible("每月88000元", set()) is None  # no tables, nothing to compare against


CORPUS = ["社区食堂为老年人提供助餐服务。", "职工医保个人账户可以家庭共济使用，个人账户的钱能给家人看病。",
          "申请法律援助需要提交经济困难证明。", "老年食堂和社区的食堂每天供应午餐。"] * 3


def test_corpus_words_are_restored_by_sound():
    sounds = CorpusSounds.from_texts(CORPUS, TERMS, min_count=3)
    assert sounds.restore("克拉玛依有几个社区时堂") == "克拉玛依有几个社区食堂"
    assert sounds.restore("割人账护的钱能用吗") == "个人账户的钱能用吗"
    assert sounds.restore("要开经济困难证名吗") == "要开经济困难证明吗"


@pytest.mark.parametrize("text", ["俺是农民工被欠了工钱", "医保说的两病是指哪两个病", "失业了能领失业金不",
                                  "今天天气不错我们去公园", "社区食堂几点开门"])
def test_corpus_sounds_leave_real_words_alone(text):
    sounds = CorpusSounds.from_texts(CORPUS + ["按时缴费", "进步很大", "失职追责"] * 3, TERMS, min_count=3,
                                     keyness=0)
    assert sounds.restore(text) == text


class _Beam:
    """CTranslate2's whisper as far as faster-whisper's decoding sees it: one result, hypotheses
    best first; records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[dict] = []
        self.is_multilingual = True

    def generate(self, features, prompts, **options):
        self.asked.append(options)
        n = options.get("num_hypotheses", 1)
        return [SimpleNamespace(sequences_ids=[[1, 2], [1, 3], [1, 4]][:n], scores=[-1.0, -2.0, -3.0][:n])]


def test_a_beam_search_keeps_its_runners_up_and_a_sampling_fallback_none():
    beam = _Beam()
    keeping = _RunnersUpKeeping(beam, runners_up=2)
    assert keeping.is_multilingual  # everything else passes through
    result = keeping.generate("features", [[0]], beam_size=5, patience=1)[0]
    assert beam.asked[-1]["num_hypotheses"] == 3 and result.sequences_ids[0] == [1, 2]  # the best is unchanged
    assert keeping.last_runners_up == [[1, 3], [1, 4]]
    keeping.generate("features", [[0]], beam_size=2)
    assert beam.asked[-1]["num_hypotheses"] == 2 and keeping.last_runners_up == [[1, 3]]
    # whisper's temperature fallback samples: its draws are no runners-up, and a stale beam's are dropped.
    keeping.generate("features", [[0]], beam_size=1, num_hypotheses=1, sampling_temperature=0.2)
    assert beam.asked[-1]["num_hypotheses"] == 1 and keeping.last_runners_up == []
    # Greedy decoding has none; runners_up=0 asks for none.
    keeping.generate("features", [[0]], beam_size=1)
    assert "num_hypotheses" not in beam.asked[-1] and keeping.last_runners_up == []
    none_wanted = _RunnersUpKeeping(beam, runners_up=0)
    none_wanted.generate("features", [[0]], beam_size=5)
    assert "num_hypotheses" not in beam.asked[-1] and none_wanted.last_runners_up == []
