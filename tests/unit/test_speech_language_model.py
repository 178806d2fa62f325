"""The character language model and the sound-alike decoder that re-reads transcripts with it."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from assistant.core.settings import SpeechSettings
from assistant.speech.correction import AcousticCheck, Reading, SoundAlikeDecoder, post_correct
from assistant.speech.language_model import EOS, CharLanguageModel, fuzzy_syllables, sentences

RESIDENT_TEXT = [
    "低保怎么申请？要带啥材料？", "俺家能办低保不", "高龄津贴一个月能领多少钱", "啥叫全岗通",
    "申请法律援助要带啥证明", "俺想问问医保咋报销", "社区食堂几点开门", "被公司开除了能申请仲裁不",
] * 4


@pytest.fixture(scope="module")
def model() -> CharLanguageModel:
    return CharLanguageModel.fit(RESIDENT_TEXT, order=3)


def test_sentences_split_at_punctuation_and_read_numbers_as_one_symbol():
    assert sentences("我奶奶92岁了，每月500元? OK") == ["我奶奶0岁了", "每月0元", "a"]


@pytest.mark.parametrize("context", ["\x02\x02", "\x02低", "低保", "啥叫", "从没见过"])
def test_probabilities_over_the_vocabulary_sum_to_one(model, context):
    total = sum(model.prob(context, ch) for ch in model.vocabulary) + model.prob(context, EOS)
    # The rest goes to characters never seen (the uniform floor's share).
    assert 0.99 < total <= 1.0 + 1e-9


def test_text_like_the_training_text_is_likelier(model):
    assert model.score("低保怎么申请") > model.score("底饱怎么申请")
    assert model.score("俺家能办低保不") > model.score("按家能办低保部")


def test_weighted_text_counts_more():
    plain = CharLanguageModel.fit(["医保报销", "医疗保险"], order=2)
    weighted = CharLanguageModel.fit(["医保报销", ("医疗保险", 5)], order=2)
    assert weighted.prob("医", "疗") > plain.prob("医", "疗")
    assert math.isclose(sum(plain.prob("医", ch) for ch in plain.vocabulary) + plain.prob("医", EOS), 1.0, rel_tol=1e-9)


def test_order_must_be_positive():
    with pytest.raises(ValueError):
        CharLanguageModel(order=0)


def test_fuzzy_syllables_are_the_usual_confusions():
    assert "jin" in fuzzy_syllables("jing") and "jing" in fuzzy_syllables("jin")
    assert "zi" in fuzzy_syllables("zhi") and "zhi" in fuzzy_syllables("zi")
    assert "lan" in fuzzy_syllables("nan") and "nang" in fuzzy_syllables("nan")
    assert "jing" not in fuzzy_syllables("jing")


@pytest.mark.parametrize(("heard", "meant"), [
    ("傻叫全岗通", "啥叫全岗通"),               # same syllable, other tone
    ("按家能办低保部", "俺家能办低保不"),         # 按/俺 and a question's final 不
    ("申请法律援助要带杀证明", "申请法律援助要带啥证明"),
])
def test_sound_alike_characters_are_read_back(model, heard, meant):
    assert SoundAlikeDecoder(model, min_count=1).correct(heard) == meant


@pytest.mark.parametrize("text", ["低保怎么申请", "社区食堂几点开门", "俺想问问医保咋报销"])
def test_a_sentence_the_model_likes_is_left_alone(model, text):
    assert SoundAlikeDecoder(model, min_count=1).correct(text) == text


def test_numbers_punctuation_and_latin_stay_where_they_are(model):
    decoder = SoundAlikeDecoder(model, min_count=1)
    corrected = decoder.correct("俺92岁了， 傻叫全岗通? OK 12345")
    assert corrected == "俺92岁了， 啥叫全岗通? OK 12345"


def test_changes_must_pay_their_cost(model):
    stubborn = SoundAlikeDecoder(model, min_count=1, same_sound_cost=50.0, near_sound_cost=50.0)
    assert stubborn.correct("傻叫全岗通") == "傻叫全岗通"


def test_candidates_sound_alike(model):
    options = dict(SoundAlikeDecoder(model, min_count=1).candidates("傻"))
    assert options["傻"] == 0.0 and "啥" in options and "保" not in options


def test_changing_a_word_whisper_heard_costs_more():
    formal = CharLanguageModel.fit(["实施办法"] * 30 + ["事实"], order=3)
    assert SoundAlikeDecoder(formal, min_count=1, word_cost=0.0).correct("事实办法") == "实施办法"
    assert SoundAlikeDecoder(formal, min_count=1, word_cost=math.inf).correct("事实办法") == "事实办法"


def test_a_stray_character_beside_a_kept_word_is_still_re_read():
    formal = CharLanguageModel.fit(["实施办法", "管理办法", "申请办法", "没办法"] * 10 + ["事实"], order=3)
    assert SoundAlikeDecoder(formal, min_count=1, word_cost=math.inf).correct("事实办罚") == "事实办法"


def test_a_commoner_character_pays_for_being_commoner():
    model = CharLanguageModel.fit(["在家里在社区在医院在单位"] * 10 + ["再来一次"], order=2)
    plain = dict(SoundAlikeDecoder(model, min_count=1, frequency_penalty=0.0).candidates("再"))
    penalised = dict(SoundAlikeDecoder(model, min_count=1, frequency_penalty=1.0).candidates("再"))
    assert penalised["在"] > plain["在"]
    rarer = dict(SoundAlikeDecoder(model, min_count=1, frequency_penalty=1.0).candidates("在"))
    assert rarer["再"] == plain["在"]  # towards a rarer character nothing is added


@pytest.mark.parametrize("heard", ["傻叫全岗通", "按家能办低保部", "俺92岁了， 傻叫全岗通? OK 12345", "低保怎么申请"])
def test_the_first_reading_is_the_correction_and_readings_come_best_first(model, heard):
    decoder = SoundAlikeDecoder(model, min_count=1)
    readings = decoder.readings(heard, 6)
    assert readings[0].text == decoder.correct(heard)
    assert 1 < len(readings) <= 6 and len({r.text for r in readings}) == len(readings)
    assert [r.score for r in readings] == sorted((r.score for r in readings), reverse=True)
    for reading in readings:  # only characters change, never their number, digits or punctuation
        assert len(reading.text) == len(heard) and reading.change_cost >= 0
        not_cjk = [c for c in heard if not "\u4e00" <= c <= "\u9fff"]
        assert [c for c in reading.text if not "\u4e00" <= c <= "\u9fff"] == not_cjk
    unchanged = next(r for r in readings if r.text == heard) if heard in {r.text for r in readings} else None
    assert unchanged is None or unchanged.change_cost == 0


def test_text_without_characters_has_one_reading_itself():
    decoder = SoundAlikeDecoder(CharLanguageModel.fit(RESIDENT_TEXT), min_count=1)
    assert decoder.readings("OK?", 6) == [Reading("OK?", 0.0, 0.0)]
    assert [r.text for r in decoder.readings("OK, 123?", 6)] == ["OK, 123?"]


def test_the_audio_decides_between_readings_the_language_model_ranks(model):
    decoder = SoundAlikeDecoder(model, min_count=1)
    readings = decoder.readings("傻叫全岗通", 6)
    runner_up = readings[1].text
    heard: list[list[str]] = []

    def audio_says(wanted):
        def listen(texts):
            heard.append(texts)
            return [0.0 if t == wanted else -40.0 for t in texts]
        return listen

    # The audio clearly bears out the runner-up: it wins; weighted at nothing, the language model decides.
    assert post_correct("傻叫全岗通", [], None, decoder, AcousticCheck(audio_says(runner_up))) == runner_up
    assert post_correct("傻叫全岗通", [], None, decoder, AcousticCheck(audio_says(runner_up), weight=0.0,
                                                                     cost_weight=1.0)) == readings[0].text
    assert heard and all(len(texts) <= 6 for texts in heard)
    # With no reading to choose between, the audio is not asked at all.
    heard.clear()
    assert post_correct("OK", [], None, decoder, AcousticCheck(audio_says("OK"))) == "OK" and not heard


def test_the_recognisers_runners_up_compete_with_its_best_transcript(model):
    """A runner-up of the beam search is read like the first transcript, and its readings are
    heard again beside the first's: where the audio bears one out, it wins. A re-reading never
    changes how many characters there are, so 什么叫全岗通 can only come from the runner-up."""
    decoder = SoundAlikeDecoder(model, min_count=1)
    runner_up = "什么叫全岗通"
    heard: list[list[str]] = []

    def listen(texts):
        heard.append(texts)
        return [0.0 if t == runner_up else -400.0 for t in texts]  # words the model never saw: the audio must be sure

    assert post_correct("傻叫全岗通", [], None, decoder, AcousticCheck(listen, alternatives=(runner_up,))) == runner_up
    first_readings = {r.text for r in decoder.readings("傻叫全岗通", 6)}
    assert runner_up in heard[-1] and first_readings <= set(heard[-1]) and len(heard[-1]) == len(set(heard[-1]))
    # Without it the audio cannot bring it back; the runner-up's own slips are repaired like the first's.
    assert post_correct("傻叫全岗通", [], None, decoder, AcousticCheck(listen)) in first_readings
    assert post_correct("什么叫全岗通", [], None, decoder,
                        AcousticCheck(lambda texts: [0.0 if t == "啥叫全岗通" else -40.0 for t in texts],
                                      alternatives=("傻叫全岗通",))) == "啥叫全岗通"


@pytest.mark.parametrize(("name", "value"), [("language_model_order", 0), ("same_sound_cost", -1),
                                             ("word_change_cost", -2), ("resident_text_weight", 0),
                                             ("acoustic_candidates", 0), ("acoustic_weight", -0.1),
                                             ("runners_up", -1)])
def test_nonsense_speech_settings_are_refused_when_read(name, value):
    with pytest.raises(ValidationError, match=name):
        SpeechSettings(**{name: value})
    assert SpeechSettings(word_change_cost="inf").word_change_cost == math.inf  # "never change a word"
