"""Intent floors on the held-out set (utterances never used as training examples)."""

from __future__ import annotations

import pytest

from eval.intents import evaluate_intents, load_heldout
from intents.classifier import DATA_FILE, INTENTS, IntentClassifier, load_intent_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def intent_result(intent_classifier):
    return evaluate_intents(intent_classifier, load_heldout())


def test_heldout_is_large_and_disjoint_from_the_examples():
    items = load_heldout()
    examples, _ = load_intent_data()
    assert len(items) >= 300
    assert {i["intent"] for i in items} == set(INTENTS)
    training = {e.text.strip() for e in examples}
    overlap = [i["text"] for i in items if i["text"].strip() in training]
    assert not overlap, f"held-out utterances copied into the examples: {overlap[:5]}"


def test_every_intent_has_enough_examples():
    examples, rules = load_intent_data()
    for intent in INTENTS:
        zh = sum(e.intent == intent and e.language == "zh" for e in examples)
        en = sum(e.intent == intent and e.language == "en" for e in examples)
        assert zh >= 30 and en >= 10, (intent, zh, en)
    assert rules["emergency"] and rules["human_request"]


def test_accuracy_and_macro_f1_floors(intent_result):
    assert intent_result["accuracy"] >= 0.90, intent_result["errors"][:10]
    assert intent_result["macro_f1"] >= 0.88


def test_every_emergency_is_caught(intent_result):
    emergencies = [i for i in load_heldout() if i["intent"] == "emergency"]
    assert len(emergencies) >= 40
    missed = [e for e in intent_result["errors"] if e["gold"] == "emergency"]
    assert intent_result["recall"]["emergency"] == 1.0, missed


@pytest.mark.parametrize("text", ["不想活了", "我妈摔倒了起不来", "活着没意思，不想拖累孩子", "楼道里着火了",
                                  "my dad collapsed and is not breathing"])
def test_indirect_emergencies_are_rule_matched(intent_classifier, text):
    prediction = intent_classifier.predict(text)
    assert prediction.intent == "emergency" and prediction.confidence == 1.0


@pytest.mark.parametrize("text", ["高龄津贴怎么申请", "医保断缴了有什么影响", "老人摔倒了有没有补贴",
                                  "消防安全培训社区有吗"])
def test_emergency_rules_leave_policy_questions_alone(intent_classifier, text):
    assert intent_classifier.predict(text).intent != "emergency"


@pytest.mark.parametrize("text", ["转人工", "我要找工作人员", "I want to talk to a real person"])
def test_human_requests_always_win(intent_classifier, text):
    assert intent_classifier.predict(text).intent == "human_request"


def test_a_rule_change_in_the_data_file_changes_behaviour(tmp_path, shipped_kb):
    text = DATA_FILE.read_text(encoding="utf-8").replace("keyword_rules:\n  emergency:\n",
                                                        "keyword_rules:\n  emergency:\n    - '紫色警报'\n", 1)
    custom = tmp_path / "intents.yaml"
    custom.write_text(text, encoding="utf-8")
    classifier = IntentClassifier(shipped_kb.embedder, shipped_kb.cache, path=custom)
    assert classifier.predict("紫色警报").intent == "emergency"


def test_unknown_intent_in_data_is_a_clear_error(tmp_path):
    bad = tmp_path / "intents.yaml"
    bad.write_text("intents:\n  weather:\n    examples:\n      zh: [今天天气]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown intent 'weather'"):
        load_intent_data(bad)


def test_how_a_message_ends_does_not_change_its_intent(intent_classifier):
    """Whisper ends a spoken question with 。 or ? as it guesses; residents type either or neither."""
    for item in load_heldout()[::10]:
        text = item["text"].rstrip("。？?！!")
        intents = {intent_classifier.predict(text + ending).intent for ending in ("", "。", "？", "?")}
        assert len(intents) == 1, (text, intents)


def test_a_process_fits_one_model_per_intents_file(tmp_path, shipped_kb, intent_classifier):
    """A replica's classifier is fitted once per process (before /readyz), so a second one over the
    same file is the same model; an edited file is fitted anew, never served from the memo."""
    again = IntentClassifier(shipped_kb.embedder, shipped_kb.cache)
    assert again.model is intent_classifier.model
    edited = tmp_path / "intents.yaml"
    edited.write_text(DATA_FILE.read_text(encoding="utf-8").replace(
        "keyword_rules:\n  emergency:\n", "keyword_rules:\n  emergency:\n    - '蓝色警报'\n", 1), encoding="utf-8")
    other = IntentClassifier(shipped_kb.embedder, shipped_kb.cache, path=edited)
    assert other.model is not intent_classifier.model
    assert other.predict("蓝色警报").intent == "emergency"
    assert intent_classifier.predict("蓝色警报").intent != "emergency"
