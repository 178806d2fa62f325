"""Resident-facing sentences live in data files: each file loads, every sentence has zh and en
naming the same placeholders, a file that breaks that is refused when it is loaded, and what the
code says is the file's template filled in."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from assistant.core.errors import InvalidQuestion, LinliError
from assistant.core.wording import InvalidWording, Wording, placeholders
from assistant.dialogue.replies import REPLIES_FILE, SPEECH_FILE, Replies
from assistant.dialogue.reply import Reply
from assistant.speech.audio import BadAudio, check_mime, decode
from assistant.speech.service import Heard, reply_to_voice
from connectors.forms import FormSpec
from connectors.services.applications import NOTICES_PATH, STATUSES, load_notices, status_name
from connectors.services.procedures import ELIGIBILITY_WORDING, Procedure
from knowledge_base.answering import ANSWER_SENTENCES, DETAILS, GroundedAnswerer
from knowledge_base.guards import WORDING_FILE, check_question

ELIGIBILITY_FILE = Path(__file__).resolve().parents[2] / "connectors" / "services" / "eligibility.yaml"
WORDING_FILES = [WORDING_FILE, SPEECH_FILE, NOTICES_PATH, REPLIES_FILE, ELIGIBILITY_FILE]


def _sentences(entries: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every sentence of a file; a section (replies' quick_replies) holds sentences in turn."""
    found: list[tuple[str, Any]] = []
    for key, entry in entries.items():
        if isinstance(entry, dict) and entry and not {"zh", "en"} & set(entry):
            found.extend(_sentences(entry, f"{prefix}{key}."))
        else:
            found.append((f"{prefix}{key}", entry))
    return found


def _raw(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", WORDING_FILES, ids=lambda p: p.name)
def test_every_sentence_has_zh_and_en_with_the_same_placeholders(path: Path) -> None:
    sentences = _sentences(_raw(path))
    assert sentences
    for key, entry in sentences:
        assert isinstance(entry, dict) and set(entry) == {"zh", "en"}, key
        assert all(isinstance(entry[lang], str) and entry[lang].strip() for lang in ("zh", "en")), key
        assert placeholders(entry["zh"]) == placeholders(entry["en"]), key


def test_each_file_loads_through_its_loader() -> None:
    assert set(ANSWER_SENTENCES) | {"question_empty", "question_too_long"} <= set(Wording.load(WORDING_FILE))
    assert {"nothing_heard", "heard_unsure", "audio_silent"} <= set(Replies.load(SPEECH_FILE))
    assert {f"status_{s}" for s in STATUSES} | {"submitted", "status_changed"} <= set(load_notices())
    assert "quick_replies.cancel" in set(Replies.load())


def test_the_dialogue_no_longer_keeps_its_own_status_names() -> None:
    assert "application_status" not in _raw(REPLIES_FILE)
    assert not hasattr(Replies, "status")


@pytest.mark.parametrize("load", [Wording.load, Replies.load, load_notices], ids=["wording", "replies", "notices"])
def test_a_sentence_that_loses_a_placeholder_is_refused_at_load(load, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text('oops:\n  zh: "您的申请 {reference}"\n  en: "Your application"\n', encoding="utf-8")
    with pytest.raises(LinliError, match="占位符"):
        load(path)
    path.write_text('oops:\n  zh: "只有中文"\n', encoding="utf-8")
    with pytest.raises(LinliError, match="zh 和 en"):
        load(path)


def test_a_wording_file_missing_a_sentence_the_code_says_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "answer_wording.yaml"
    path.write_text('refusal:\n  zh: "抱歉"\n  en: "Sorry"\n', encoding="utf-8")
    with pytest.raises(InvalidWording, match="handoff"):
        GroundedAnswerer(SimpleNamespace(), settings=None, cues=None, regions=None,
                         wording=Wording.load(path))
    path = tmp_path / "notices.yaml"
    path.write_text('submitted:\n  zh: "已提交"\n  en: "Submitted"\n', encoding="utf-8")
    with pytest.raises(LinliError, match="status_queued"):
        load_notices(path)


# ---- what the code says is the template filled in -------------------------------------------------

WORDING = _raw(WORDING_FILE)
SPEECH = _raw(SPEECH_FILE)
NOTICES = _raw(NOTICES_PATH)


def test_question_errors_are_the_templates() -> None:
    with pytest.raises(InvalidQuestion) as empty:
        check_question("  \n", 1000)
    assert (empty.value.message_zh, empty.value.message_en) == (WORDING["question_empty"]["zh"],
                                                                WORDING["question_empty"]["en"])
    assert empty.value.message_zh == "问题不能为空，请输入您想咨询的内容。"  # the wording did not change
    with pytest.raises(InvalidQuestion) as long:
        check_question("问" * 31, 30)
    assert long.value.message("en") == WORDING["question_too_long"]["en"].format(length=31, limit=30)
    assert long.value.details == {"length": 31, "limit": 30}


def test_refusals_and_missing_details_are_the_templates() -> None:
    answerer = GroundedAnswerer(SimpleNamespace(), settings=None, cues=None, regions=None)
    for language in ("zh", "en"):
        assert answerer._refuse(language, 0.0, "no_hits").answer == WORDING["refusal"][language]
    assert {d.missing for d in DETAILS} <= set(WORDING)
    assert WORDING["benefit_amount"]["zh"].format(title="克拉玛依市高龄津贴月标准", age=92, bracket="90至99周岁",
                                                  amount="500", unit="元") \
        == "按克拉玛依市高龄津贴月标准，92岁属于90至99周岁档，每月500元[1]。"


class _Engine:
    """Records what speech asks back; answers nothing."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def handle(self, session_id: str, text: str, channel: str = "web", user_id: str = "anonymous") -> Reply:
        raise AssertionError("an unclear voice message must not reach the dialogue")

    def ask_back(self, session_id: str, heard: str, question: str, meant: str | None, channel: str = "web",
                 user_id: str = "anonymous") -> Reply:
        self.asked.append(question)
        return Reply("clarify", question, session_id=session_id)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_voice_message_with_no_words_gets_the_didnt_catch_that_sentence(language: str) -> None:
    reply = reply_to_voice(_Engine(), Heard(" 。", "", language, 1.0, 0.1), "s1", "web", "r1", [])
    assert reply.reply_type == "clarify" and reply.text == SPEECH["nothing_heard"][language]


def test_an_unlikely_age_is_asked_back_in_the_templates_words() -> None:
    engine = _Engine()
    reply_to_voice(engine, Heard("我爸886岁了", "", "zh", 1.0, 0.1), "s1", "web", "r1", [100.0])
    reply_to_voice(engine, Heard("我妈253岁了", "", "zh", 1.0, 0.1), "s2", "web", "r1", [100.0])
    assert engine.asked == [SPEECH["heard_meant"]["zh"].format(guess="86岁"),
                            SPEECH["heard_unsure"]["zh"].format(heard="253岁", what=SPEECH["heard_what_age"]["zh"])]
    assert engine.asked[1] == "我听到的是“253岁”，请再说一下年龄好吗？"


def test_unusable_recordings_are_worded_from_the_file() -> None:
    with pytest.raises(BadAudio) as not_audio:
        check_mime("image/png")
    assert not_audio.value.message("en") == SPEECH["not_audio"]["en"].format(content_type="image/png")
    with pytest.raises(BadAudio) as empty:
        decode(b"")
    assert empty.value.message("zh") == SPEECH["audio_empty"]["zh"]


def test_status_names_come_from_the_notices() -> None:
    for status in STATUSES:
        for language in ("zh", "en"):
            assert status_name(status, language) == NOTICES[f"status_{status}"][language]
    assert status_name("under_review", "zh") == "审核中"
    assert status_name("something_new", "en") == "something_new"


def test_eligibility_outcomes_are_the_templates() -> None:
    """A procedure with no rules meets the conditions, in the file's words."""
    bare = Procedure(form=FormSpec(id="p", title={"zh": "事项", "en": "p"}, fields=()), doc_id="d", materials={},
                     description={"zh": "", "en": ""})
    outcome = bare.check_eligibility({}, date(2026, 11, 29), tables=None)  # type: ignore[arg-type]
    assert (outcome.reason("zh"), outcome.reason("en")) == (ELIGIBILITY_WORDING["meets_conditions"]["zh"],
                                                            ELIGIBILITY_WORDING["meets_conditions"]["en"])
