"""Issue 30: an English-speaking resident reads English everywhere. The real dialogue (the shipped
index, the intent classifier, the application outbox filing to the sandbox backend) is driven in
English, and no reply's text or quick replies may hold a Chinese character: one English message for
every reply type the engine declares (engine.REPLY_TYPES); every procedure in the catalogue
started, each of its questions answered wrongly (where the field validates) then rightly, read back
and cancelled; and one filed to the end, with its notice and status.

Citations are not checked: a cited document's title is the source's own title, and a Chinese
policy document keeps its Chinese title (the resident sees which document it is)."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta

import pytest

from assistant.core.settings import ConnectorSettings
from assistant.dialogue.engine import REPLY_TYPES, DialogueEngine
from assistant.dialogue.reply import Reply
from assistant.services import Services
from connectors.forms import FormField
from connectors.services.procedures import ProcedureCatalogue
from tests.conftest import set_fault

pytestmark = pytest.mark.slow

CHINESE = re.compile(r"[\u4e00-\u9fff]")
AGED_92 = "650202193401010022"  # a valid ID number (check digit right), born 1934: 92 years old

# One English message (or a short English conversation) for each reply type. A reply type the
# engine gains without a case here fails `test_every_reply_type_is_english`.
REPLY_TYPE_CASES: dict[str, list[str]] = {
    "smalltalk": ["hello"],
    "answer": ["How much is the elderly allowance for a 92-year-old in Karamay?"],
    "refusal": ["How do I renew a passport for travel to Japan?"],
    "clarify": ["hello", "useless"],  # "that did not help": shall I pass you to a person?
    "emergency": ["My father collapsed and is not breathing"],
    "handoff": ["I want to talk to a person"],
    "form": ["My upstairs neighbour floods my flat, I need mediation"],
}

# A wrong first answer per field type, to hear the field's validation message; free text takes
# anything, so it has none.
INVALID_ANSWER = {
    "name": "Wang 123",
    "cn_id": "12345",
    "cn_mobile": "12345",
    "date": "sometime soon",
    "choice": "purple elephant",
    "number": "many",
    "address": "<b>",
}

VALID_ANSWER = {
    "name": "Wang Xiuying",
    "cn_id": AGED_92,
    "cn_mobile": "13812345678",
    "address": "Building 3, Flat 502, Xingfu Estate",
    "number": "2",
}

# Valid English answers for filing the elderly allowance all the way.
ELDERLY_ALLOWANCE_EN = ["Wang Xiuying", AGED_92, "13812345678", "Building 3, Flat 502, Xingfu Estate",
                        "a relative", "bank card"]


def _chinese_in(reply: Reply) -> list[str]:
    # reply.citations is left out on purpose: a Chinese source keeps its Chinese title.
    return [part for part in [reply.text, *reply.quick_replies] if CHINESE.search(part)]


def _say(engine: DialogueEngine, session: str, text: str, transcript: list) -> Reply:
    reply = engine.handle(session, text)
    transcript.append((text, reply.reply_type, reply.text, reply.quick_replies))
    assert not _chinese_in(reply), f"Chinese for an English resident after {text!r}: {_chinese_in(reply)}\n" \
                                   f"{transcript}"
    return reply


@pytest.fixture
def engine(tmp_path, sandbox, shipped_settings, shipped_kb, intent_classifier) -> DialogueEngine:
    """The deployment's dialogue as a container builds it (the application outbox filing to the
    sandbox backend), on the session's prepared index and classifier and a database of its own."""
    set_fault(sandbox, fault="none")
    settings = shipped_settings.model_copy(update={
        "data_dir": tmp_path / "var",
        "connectors": ConnectorSettings(backend_url=sandbox, timeout_s=2, retry_base_s=0)})
    return Services(settings, knowledge_base=shipped_kb, classifier=intent_classifier).dialogue


def test_every_reply_type_is_english(engine):
    seen: set[str] = set()
    for expected, messages in REPLY_TYPE_CASES.items():
        transcript: list = []
        session = f"en-{expected}-{uuid.uuid4().hex[:6]}"
        for message in messages:
            reply = _say(engine, session, message, transcript)
        assert reply.reply_type == expected, transcript
        seen.add(reply.reply_type)
    assert seen == set(REPLY_TYPES), f"reply types without an English case: {set(REPLY_TYPES) - seen}"


def _valid_answer(field: FormField) -> str:
    """A right English answer to any field of a procedure."""
    if field.type == "choice":
        return field.choices[0].en
    if field.type == "date":
        today = date.today()
        return (today + timedelta(days=3) if field.min_date else today - timedelta(days=30)).isoformat()
    if field.type == "text":
        return "Karamay Building Materials Co. has not paid my wages for three months."[: field.max_length]
    return VALID_ANSWER[field.type]


@pytest.mark.parametrize("procedure_id", ProcedureCatalogue().ids())
def test_every_procedure_speaks_english_until_cancelled(engine, procedure_id):
    """Every question of the procedure asked in English, each validating field answered wrongly
    first (its message in English), the read-back in English, then "cancel"."""
    procedure = ProcedureCatalogue().get(procedure_id)
    session = f"en-{procedure_id}-{uuid.uuid4().hex[:6]}"
    transcript: list = []
    reply = _say(engine, session, procedure.requests["en"][0], transcript)
    assert reply.reply_type == "form" and procedure.title["en"] in reply.text, transcript
    asked: list[str] = []
    for _ in range(len(procedure.fields)):
        field = next((f for f in procedure.fields if f.required and f.prompt["en"] in reply.text), None)
        if field is None:
            break
        assert field.name not in asked, transcript
        asked.append(field.name)
        wrong = INVALID_ANSWER.get(field.type)
        if wrong is not None:
            told = _say(engine, session, wrong, transcript)
            assert told.reply_type == "form" and field.label["en"] in told.text, transcript
        reply = _say(engine, session, _valid_answer(field), transcript)
        assert reply.reply_type == "form", transcript
    assert asked and asked[0] == procedure.fields[0].name, transcript
    assert "****" in reply.text and reply.quick_replies, transcript  # the read-back, masked, to confirm
    cancelled = _say(engine, session, "cancel", transcript)
    assert cancelled.reply_type == "smalltalk", transcript


def test_a_filing_in_english_to_the_end(engine, sandbox):
    procedure = ProcedureCatalogue().get("elderly_allowance")
    session = f"en-file-{uuid.uuid4().hex[:6]}"
    transcript: list = []
    reply = _say(engine, session, procedure.requests["en"][0], transcript)
    for answer in ELDERLY_ALLOWANCE_EN:
        reply = _say(engine, session, answer, transcript)
        assert reply.reply_type == "form", transcript
    assert "****" in reply.text, transcript  # the read-back, masked
    done = _say(engine, session, "confirm", transcript)
    assert done.reply_type == "answer" and "submitted" in done.text and "GOV-ELD-" in done.text, transcript
    status = _say(engine, session, "where is my application", transcript)
    assert status.reply_type == "answer" and procedure.title["en"] in status.text, transcript
    # The status (submitted, under review, approved…: the sandbox moves it on) is read in English above.
    reference = re.search(r"SQ\d{8}-\w+", done.text)
    assert reference and reference.group() in status.text, transcript
