"""Scripted multi-turn conversations against the real engine: the shipped knowledge base, the
real intent classifier, a real SQLite conversation store.

Each script is a list of (resident message, expectation). An expectation names the reply type
and may require words in the reply (`has`), forbid words (`lacks`), require a cited document
(`cites`), a ticket (`ticket`), or a rewritten query (`rewritten`)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from assistant.core.settings import DialogueSettings
from assistant.dialogue.engine import DialogueEngine, Reply
from assistant.dialogue.store import ConversationStore
from assistant.escalation.base import InMemoryEscalationService
from knowledge_base.guards import CheckedQuestion

pytestmark = pytest.mark.slow

Step = tuple[str, dict[str, Any]]

DISPUTE_TO_CONFIRM: list[Step] = [
    ("楼上漏水把我家泡了，帮我找人调解", {"type": "form", "has": ["另一方"]}),
    ("楼上602的住户", {"type": "form", "has": ["小区"]}),
    ("幸福小区3栋502", {"type": "form", "has": ["发生了什么"]}),
    ("上周开始漏水，找他好几次都不理", {"type": "form", "has": ["紧急"]}),
    ("一般", {"type": "form", "has": ["电话"]}),
    ("13812345678", {"type": "form", "has": ["请核对", "漏水渗水", "幸福小区3栋502", "138****5678"],
                     "lacks": ["13812345678"]}),
]

SCRIPTS: dict[str, list[Step]] = {
    "issue example: greeting, dispute, ask for a person, cancel and switch topic": [
        ("你好", {"type": "smalltalk", "has": ["邻里"]}),
        ("我家楼上天天半夜吵，怎么办", {"type": "form", "has": ["调解", "另一方"]}),
        ("那能帮我找个人调解吗", {"type": "form", "has": ["正在帮您登记", "另一方"]}),
        ("算了，那80岁的高龄补贴是多少", {"type": "refusal", "has": ["已取消", "80至89"],
                                  "cites": "kmy-elderly-allowance", "lacks": ["元"]}),
    ],
    "age follow-ups against the allowance table": [
        ("我奶奶今年92了，每个月能领多少高龄补贴？",
         {"type": "answer", "has": ["500元"], "cites": "kmy-elderly-allowance"}),
        ("那80岁呢?", {"type": "refusal", "has": ["80至89"], "rewritten": "80"}),
        ("那100岁呢", {"type": "answer", "has": ["800元"], "rewritten": "100"}),
        ("75岁呢", {"type": "answer", "has": ["100元"]}),
    ],
    "English age follow-up": [
        ("How much elderly allowance does a 92-year-old get in Karamay?", {"type": "answer", "has": ["500"]}),
        ("what about 75?", {"type": "answer", "has": ["100"], "rewritten": "75"}),
    ],
    "materials and place follow-ups keep the topic": [
        ("失业登记是什么", {"type": "answer", "cites": "nat-employment-unemployment-registration"}),
        ("需要带什么材料?", {"type": "answer", "has": ["身份证"], "rewritten": "失业登记",
                        "cites": "nat-employment-unemployment-registration"}),
        ("在哪办?", {"type": "answer", "has": ["公共就业服务机构"], "rewritten": "失业登记"}),
    ],
    "subject switch follow-up": [
        ("低保怎么申请", {"type": "answer", "cites": "nat-dibao-application"}),
        ("那高龄津贴呢", {"type": "answer", "rewritten": "高龄津贴怎么申请", "cites": "nat-elderly-allowance-apply"}),
    ],
    "follow-up with no topic yet is not guessed": [
        ("需要带什么材料?", {"type": {"clarify", "refusal"}}),
    ],
    "dispute intake, confirmed": [
        *DISPUTE_TO_CONFIRM,
        ("确认", {"type": "handoff", "ticket": True, "has": ["2个工作日内"]}),
    ],
    "dispute intake, invalid phone then valid": [
        *DISPUTE_TO_CONFIRM[:5],
        ("138123", {"type": "form", "has": ["应该是11位"]}),
        ("手机是 139 0000 1111", {"type": "form", "has": ["请核对", "139****1111"]}),
    ],
    "dispute intake, cancelled midway": [
        *DISPUTE_TO_CONFIRM[:3],
        ("取消", {"type": "smalltalk", "has": ["已取消", "不会提交"]}),
        ("谢谢", {"type": "smalltalk"}),
    ],
    "dispute intake, field corrected at confirmation": [
        *DISPUTE_TO_CONFIRM,
        ("修改 电话 13900001111", {"type": "form", "has": ["139****1111"], "lacks": ["138****5678"]}),
        ("修改 地址 幸福小区5栋101", {"type": "form", "has": ["幸福小区5栋101"]}),
        ("修改 紧急程度 紧急", {"type": "form", "has": ["紧急程度：紧急"]}),
        ("确认", {"type": "handoff", "ticket": True}),
    ],
    "dispute intake, unclear correction asks which field": [
        *DISPUTE_TO_CONFIRM,
        ("改一下", {"type": "form", "has": ["哪一项"]}),
    ],
    "policy question mid-form, then back to the form": [
        *DISPUTE_TO_CONFIRM[:2],
        ("对了，低保怎么申请？", {"type": "answer", "cites": "nat-dibao", "has": ["继续刚才的登记", "小区"]}),
        ("幸福小区3栋502", {"type": "form", "has": ["发生了什么"]}),
    ],
    "confirmation step answers a question and asks again": [
        *DISPUTE_TO_CONFIRM,
        ("人民调解收费吗？", {"type": "answer", "cites": "nat-mediation", "has": ["继续"]}),
        ("确认", {"type": "handoff", "ticket": True}),
    ],
    "dispute intake in English": [
        ("My upstairs neighbour makes loud noise every night, please help me get it mediated",
         {"type": "form", "has": ["other party"]}),
        ("the family in flat 602", {"type": "form", "has": ["estate"]}),
        ("Building 3, Xingfu estate, flat 502", {"type": "form", "has": ["what happened"]}),
        ("They play loud music after midnight for two weeks", {"type": "form", "has": ["urgent"]}),
        ("normal", {"type": "form", "has": ["mobile"]}),
        ("13812345678", {"type": "form", "has": ["Please check", "neighbour noise", "138****5678"]}),
        ("yes", {"type": "handoff", "ticket": True, "has": ["mediator"]}),
    ],
    "English dispute: I don't know is not urgent (whole words, not 'now' inside 'know')": [
        ("My upstairs neighbour makes loud noise every night, please help me get it mediated",
         {"type": "form", "has": ["other party"]}),
        ("a person upstairs", {"type": "form", "has": ["estate"]}),
        ("Building 3, Xingfu estate, flat 502", {"type": "form", "has": ["what happened"]}),
        ("It's about her care, the noise wakes my mother every night", {"type": "form", "has": ["urgent"]}),
        ("I don't know", {"type": "form", "has": ["did not catch the urgency"]}),
        ("normal", {"type": "form", "has": ["mobile"]}),
        ("13812345678", {"type": "form", "has": ["type: neighbour noise", "urgency: normal"],
                         "lacks": ["parking", "family"]}),
    ],
    "emergency in the middle of a form": [
        *DISPUTE_TO_CONFIRM[:3],
        ("我妈摔倒了起不来", {"type": "emergency", "has": ["120"], "ticket": True}),
        ("低保怎么申请", {"type": "answer", "lacks": ["继续刚才的登记"]}),
    ],
    "indirect suicidal message": [
        ("活着没意思，不想拖累孩子", {"type": "emergency", "has": ["12356", "110", "120"], "ticket": True}),
    ],
    "English emergency": [
        ("my dad collapsed and is not breathing", {"type": "emergency", "has": ["120"], "ticket": True}),
    ],
    "fire": [
        ("楼道里着火了，好大的烟", {"type": "emergency", "has": ["119"], "ticket": True}),
    ],
    "explicit request for a person": [
        ("高龄津贴怎么申请", {"type": "answer"}),
        ("我要转人工", {"type": "handoff", "ticket": True, "has": ["工作人员"]}),
    ],
    "request for a person in English": [
        ("I want to talk to a real person", {"type": "handoff", "ticket": True, "has": ["social worker"]}),
    ],
    "complaint": [
        ("你们社区办事效率太低了，我要投诉", {"type": "handoff", "ticket": True, "has": ["意见已记录"]}),
    ],
    "frustration offers a person, yes hands off": [
        ("养老金资格认证怎么弄", {"type": "answer", "cites": "nat-pension-certification"}),
        ("没用", {"type": "clarify", "has": ["转给社区工作人员"]}),
        ("好的", {"type": "handoff", "ticket": True}),
    ],
    "the same question twice offers a person": [
        ("克拉玛依公积金贷款利率是多少", {"type": "refusal", "lacks": ["法律费用保险"]}),
        ("克拉玛依公积金贷款利率是多少？", {"type": "clarify", "has": ["转给社区工作人员"]}),
    ],
    "out of scope": [
        ("帮我订一张明天去北京的火车票", {"type": {"smalltalk", "clarify", "refusal"}, "lacks": ["元"]}),
    ],
    "thanks and goodbye": [
        ("低保一个月能领多少钱", {"type": {"answer", "refusal"}}),
        ("谢谢，再见", {"type": "smalltalk", "has": ["不客气"]}),
    ],
    "language switch zh → en → zh": [
        ("高龄津贴怎么申请", {"type": "answer", "has": ["申请"]}),
        ("How do I apply for legal aid?", {"type": "answer", "lacks": ["申请法律援助，"]}),
        ("法律援助免费吗", {"type": "answer", "has": ["法律援助"]}),
    ],
    "traditional characters": [
        ("高齡津貼怎麼申請", {"type": "answer", "cites": "nat-elderly-allowance-apply"}),
    ],
    "filing request gets the how-to and a way to file": [
        ("帮我申请高龄津贴", {"type": "answer", "has": ["转人工", "社区服务中心"], "cites": "elderly-allowance"}),
    ],
    "cancel with nothing going on": [
        ("算了", {"type": "smalltalk", "has": ["还有什么"]}),
        ("不用了，谢谢", {"type": "smalltalk", "has": ["不客气"]}),
    ],
    "asking for a person inside a form keeps the form's details": [
        *DISPUTE_TO_CONFIRM[:4],
        ("转人工", {"type": "handoff", "ticket": True}),
    ],
    "bad input never breaks the thread": [
        ("", {"type": "clarify"}),
        ("   ", {"type": "clarify"}),
        ("😀😀😀", {"type": "clarify", "has": ["文字"]}),
        ("\x00\x01\x02", {"type": "clarify"}),
        ("高龄津贴" * 2500, {"type": "refusal", "has": ["太长", "10000"]}),
        ("我想问 pension 认证 怎么 do", {"type": {"answer", "clarify"}}),
        ("养老金资格认证一年几次", {"type": "answer", "cites": "nat-pension-certification"}),
    ],
}


@pytest.fixture
def engine(databases, vault, shipped_kb, intent_classifier, tmp_path) -> DialogueEngine:
    store = ConversationStore(databases.engine(f"sqlite:///{tmp_path / 'dialogue.sqlite'}"), vault)
    return DialogueEngine(shipped_kb, intent_classifier, store, InMemoryEscalationService(), DialogueSettings())


def run_script(engine: DialogueEngine, steps: list[Step], session: str | None = None) -> list[Reply]:
    session = session or f"t-{uuid.uuid4().hex[:10]}"
    transcript: list[str] = []
    replies: list[Reply] = []
    for text, expect in steps:
        reply = engine.handle(session, text, channel="web", user_id="tester")
        transcript.append(f"> {text[:60]}\n  [{reply.reply_type}] {reply.text[:200]}  trace={reply.trace}")
        context = "\n".join(transcript)
        allowed = expect["type"] if isinstance(expect["type"], set) else {expect["type"]}
        assert reply.reply_type in allowed, context
        for word in expect.get("has", []):
            assert word in reply.text, f"missing {word!r}\n{context}"
        for word in expect.get("lacks", []):
            assert word not in reply.text, f"unexpected {word!r}\n{context}"
        if "cites" in expect:
            assert any(expect["cites"] in c["doc_id"] for c in reply.citations), context
        if expect.get("ticket"):
            assert reply.ticket_id and engine.escalation.get(reply.ticket_id) is not None, context
        elif reply.reply_type not in ("handoff", "emergency"):
            assert reply.ticket_id is None, context
        if "rewritten" in expect:
            assert expect["rewritten"] in (reply.trace["rewritten_query"] or ""), context
        replies.append(reply)
    return replies


def test_a_typed_question_is_checked_once_on_its_way_to_the_answer(databases, vault, shipped_kb, intent_classifier,
                                                                   tmp_path):
    asked: list[str] = []

    class Watched:
        """The knowledge base, noting what the dialogue asks it."""

        def __getattr__(self, name: str) -> Any:
            return getattr(shipped_kb, name)

        def ask(self, question: str, *args: Any, **kwargs: Any) -> Any:
            asked.append(question)
            return shipped_kb.ask(question, *args, **kwargs)

    store = ConversationStore(databases.engine(f"sqlite:///{tmp_path / 'checked.sqlite'}"), vault)
    engine = DialogueEngine(Watched(), intent_classifier, store, InMemoryEscalationService(), DialogueSettings())
    reply = engine.handle("checked-once", "  失业登记\t要带什么材料？ ")
    assert reply.reply_type == "answer", reply.text
    # The engine's check is the one: the answerer gets the checked text and does not check it again.
    assert asked == ["失业登记 要带什么材料？"] and isinstance(asked[0], CheckedQuestion)


def test_there_are_at_least_thirty_scripts():
    assert len(SCRIPTS) >= 30


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_scripted_conversation(engine, name):
    run_script(engine, SCRIPTS[name])


UNSURE_BUT_ANSWERABLE = [
    # Golden-set questions the classifier places below the intent threshold (it reads the first as
    # a complaint, the second as policy at .35): the corpus answers both.
    ("日间照料中心是干啥的", "nat-elderly-day-care"),
    ("家里厕所想装个扶手，政府有没有补贴", "nat-elderly-home-care"),
]


@pytest.mark.parametrize(("question", "doc_id"), UNSURE_BUT_ANSWERABLE)
def test_a_question_the_classifier_cannot_place_is_answered_when_the_corpus_supports_it(
        databases, vault, shipped_kb, intent_classifier, tmp_path, question, doc_id):
    settings = DialogueSettings()
    assert intent_classifier.predict(question).confidence < settings.intent_threshold  # the case under test

    def reply(answer_when_unsure: bool) -> Reply:
        url = f"sqlite:///{tmp_path / f'unsure-{answer_when_unsure}.sqlite'}"
        store = ConversationStore(databases.engine(url), vault)
        engine = DialogueEngine(shipped_kb, intent_classifier, store, InMemoryEscalationService(),
                                settings.model_copy(update={"answer_when_unsure": answer_when_unsure}))
        return engine.handle("unsure", question)

    answered = reply(True)
    assert answered.reply_type == "answer" and answered.citations[0]["doc_id"] == doc_id
    assert reply(False).reply_type == "clarify"


@pytest.mark.parametrize("fragment", ["在哪办", "需要带什么材料?", "要多久"])
def test_an_unplaceable_fragment_with_no_topic_is_asked_about_not_answered(engine, fragment):
    assert engine.handle(f"fragment-{fragment}", fragment).reply_type == "clarify"


def test_an_unplaceable_message_the_corpus_cannot_answer_is_asked_about_not_refused(engine):
    # 这个咋弄 alone is below the threshold and has no grounded answer: a question back, with options.
    reply = engine.handle("unsure-unanswerable", "这个咋弄")
    assert reply.reply_type == "clarify" and reply.quick_replies


def test_confirmed_dispute_ticket_carries_the_form(engine):
    replies = run_script(engine, SCRIPTS["dispute intake, field corrected at confirmation"])
    ticket = engine.escalation.get(replies[-1].ticket_id)
    assert ticket.kind == "dispute" and ticket.priority == "urgent"
    assert ticket.form_data == {
        "dispute_type": "leak", "parties": "楼上602的住户", "address": "幸福小区5栋101",
        "description": "上周开始漏水，找他好几次都不理", "urgency": "urgent", "phone": "13900001111",
    }
    assert len(engine.escalation.all()) == 1


def test_accepting_a_person_after_a_failed_answer_opens_a_failed_answer_ticket(engine):
    replies = run_script(engine, SCRIPTS["frustration offers a person, yes hands off"])
    ticket = engine.escalation.get(replies[-1].ticket_id)
    assert ticket.kind == "failed_answer" and "养老金资格认证" in ticket.summary


def test_cancelled_form_opens_no_ticket(engine):
    run_script(engine, SCRIPTS["dispute intake, cancelled midway"])
    assert engine.escalation.all() == []


def test_emergency_is_urgent_and_keeps_the_half_filled_form(engine):
    replies = run_script(engine, SCRIPTS["emergency in the middle of a form"])
    ticket = engine.escalation.get(replies[3].ticket_id)
    assert ticket.kind == "emergency" and ticket.priority == "urgent"
    assert ticket.form_data["parties"] == "楼上602的住户"


def test_handoff_inside_a_form_carries_the_details(engine):
    replies = run_script(engine, SCRIPTS["asking for a person inside a form keeps the form's details"])
    ticket = engine.escalation.get(replies[-1].ticket_id)
    assert ticket.form_data["address"] == "幸福小区3栋502"


def test_emergency_numbers_come_from_the_corpus(engine, shipped_kb):
    reply = engine.handle("t-numbers", "不想活了")
    _, hotline, _ = shipped_kb.store.get_document("nat-emergency-crisis-hotline")
    _, numbers, _ = shipped_kb.store.get_document("nat-emergency-numbers")
    for number in ("110", "120", "119"):
        assert number in reply.text and number in numbers
    assert "12356" in reply.text and "12356" in hotline


def test_every_turn_is_traced_and_persisted(engine):
    session = "t-trace"
    engine.handle(session, "我奶奶今年92了，每个月能领多少高龄补贴？")
    engine.handle(session, "那80岁呢?")
    history = engine.store.history(session)
    assert [t["role"] for t in history] == ["resident", "assistant", "resident", "assistant"]
    trace = history[3]["trace"]
    assert trace["intent"] and 0.0 <= trace["confidence"] <= 1.0
    assert "80" in trace["rewritten_query"] and trace["doc_ids"][0] == "kmy-elderly-allowance"
    assert trace["reply_type"] == "refusal" and trace["latency_ms"] > 0


def test_thread_survives_a_new_engine_on_the_same_database(databases, vault, shipped_kb, intent_classifier, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"

    def new_engine() -> DialogueEngine:
        return DialogueEngine(shipped_kb, intent_classifier, ConversationStore(databases.engine(url), vault),
                              InMemoryEscalationService(), DialogueSettings())

    new_engine().handle("t-restart", "我奶奶今年92了，每个月能领多少高龄补贴？")
    reply = new_engine().handle("t-restart", "那100岁呢")
    assert reply.reply_type == "answer" and "800元" in reply.text


def test_ten_thousand_characters_are_refused_without_storing_them_all(engine):
    reply = engine.handle("t-long", "我" * 10_000)
    assert reply.reply_type == "refusal"
    stored = engine.store.history("t-long")[0]["text"]
    assert len(stored) <= DialogueSettings().max_message_chars


def test_messages_sent_at_once_to_one_conversation_are_handled_one_after_the_other(
        databases, vault, shipped_kb, intent_classifier, database_url):
    # Two engines on one database stand for two replicas; six messages arrive at once.
    replicas = [DialogueEngine(shipped_kb, intent_classifier, ConversationStore(databases.engine(database_url), vault),
                               InMemoryEscalationService(), DialogueSettings()) for _ in range(2)]
    session = f"t-serial-{uuid.uuid4().hex[:6]}"
    questions = [f"我奶奶今年{age}岁了，每个月能领多少高龄补贴？" for age in (81, 85, 90, 92, 95, 101)]
    start = threading.Barrier(len(questions))

    def send(i: int) -> None:
        start.wait()
        replicas[i % 2].handle(session, questions[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(questions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    history = replicas[0].store.history(session)
    roles = [turn["role"] for turn in history]
    # Each message's question and reply are next to each other: no turn ran beside another.
    assert roles == ["resident", "assistant"] * len(questions)
    assert sorted(turn["text"] for turn in history[::2]) == sorted(questions)
    # The state saved last is the last-handled message's, not an earlier one's written over it.
    last = replicas[1].store.get_or_create(session, "web", "anonymous")
    assert last.state.last_question == history[-2]["text"]
