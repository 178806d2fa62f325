"""The routing order, table-driven, with a fake knowledge base and a fake intent model: no
index, no embedding model, a conversation store on a temporary SQLite file. Each row names the
conversation's state, the message, what the intent model says, and the handler that must take
it; the rows follow HANDLER_ORDER, so moving a handler breaks the rows it jumps over."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from assistant.core.domain import Answer, Citation
from assistant.core.settings import DialogueSettings
from assistant.dialogue.engine import DialogueEngine
from assistant.dialogue.handlers import HANDLER_ORDER
from assistant.dialogue.routing import Turn
from assistant.dialogue.state import ActiveForm, ConversationState, PendingQuestion, Topic
from assistant.dialogue.store import Conversation, ConversationStore
from assistant.escalation.base import InMemoryEscalationService
from connectors.services.procedures import get_procedure
from intents.classifier import IntentPrediction

SETTINGS = DialogueSettings()
RULES = {"救命": "emergency", "转人工": "human_request"}


@dataclass
class FakeVocabulary:
    terms: list[str] = field(default_factory=lambda: ["高龄津贴", "低保", "医保"])
    synonyms: dict[str, str] = field(default_factory=dict)


class FakeAnswers:
    """Answers every question by echoing it; refuses what mentions the moon."""

    def __init__(self) -> None:
        self.lexicon = FakeVocabulary()
        self.asked: list[str] = []

    def ask(self, question: str) -> Answer:
        self.asked.append(question)
        refused = "月球" in question
        citations = [] if refused else [Citation(doc_id="doc-1", title="高龄津贴", chunk_id="c1", text="…")]
        return Answer(answer="没有依据" if refused else f"答：{question}", refused=refused, confidence=0.9,
                      citations=citations)

    def document_title(self, doc_id: str) -> str:
        return doc_id


class FakeIntents:
    """Keyword rules for 救命 / 转人工; otherwise what the test row says the model predicts."""

    def __init__(self) -> None:
        self.next: dict[str, IntentPrediction] = {}

    def rule_match(self, text: str) -> tuple[str, str] | None:
        return next(((intent, word) for word, intent in RULES.items() if word in text), None)

    def predict(self, text: str) -> IntentPrediction:
        rule = self.rule_match(text)
        if rule:
            return IntentPrediction(rule[0], 1.0, "rule", rule=rule[1])
        return self.next.get(text) or IntentPrediction("policy_question", 0.9, "model")


class FakeApplications:
    """Enough of the application service for routing decisions."""

    benefit_tables = None
    get_procedure = staticmethod(get_procedure)  # the shipped procedure files

    def refresh(self) -> int:
        return 0

    def for_resident(self, **_: Any) -> list[Any]:
        return []

    def dispute(self, reference: str, text: str) -> str:
        return "T-DISPUTE"


@pytest.fixture(scope="module")
def engine(databases, vault, tmp_path_factory: pytest.TempPathFactory) -> DialogueEngine:
    # One store for the module (migrating a fresh SQLite file is most of the setup time); the
    # tests that send messages use sessions of their own.
    store = ConversationStore(databases.engine(f"sqlite:///{tmp_path_factory.mktemp('router') / 'router.sqlite'}"),
                              vault)
    return DialogueEngine(FakeAnswers(), FakeIntents(), store, InMemoryEscalationService(), SETTINGS,
                          applications=FakeApplications(), today=lambda: date(2026, 11, 29))  # type: ignore[arg-type]


def model(intent: str, confidence: float) -> IntentPrediction:
    return IntentPrediction(intent, confidence, "model")


DISPUTE = ActiveForm(kind="dispute", form_id="dispute_mediation", values={"dispute_type": "neighbour_noise"})
FILING = ActiveForm(kind="procedure", form_id="elderly_allowance", values={}, submission_key="k1")

# (state, held by a worker, message, model prediction or None for the default, handler)
ROWS: list[tuple[ConversationState, bool, str, IntentPrediction | None, str]] = [
    (ConversationState(), True, "你好", model("greeting", 0.9), "worker_holds"),
    (ConversationState(), True, "救命", None, "worker_holds"),
    (ConversationState(flow=DISPUTE), False, "救命啊", None, "emergency"),
    (ConversationState(), False, "我喘不上气", model("emergency", 0.5), "emergency"),
    (ConversationState(pending=PendingQuestion(kind="safety_check")), False, "是的", model("greeting", 0.3),
     "safety_check_answered"),
    (ConversationState(pending=PendingQuestion(kind="rating", ticket_id="T1")), False, "5", model("greeting", 0.2),
     "rating_given"),
    (ConversationState(flow=DISPUTE), False, "算了", model("thanks_bye", 0.5), "cancel"),
    (ConversationState(flow=FILING), False, "转人工", None, "asked_for_person"),
    (ConversationState(pending=PendingQuestion(kind="offered_human", question="Q")), False, "好的",
     model("greeting", 0.5), "person_accepted"),
    (ConversationState(), False, "我的申请到哪一步了", model("service_procedure", 0.8), "application_status"),
    (ConversationState(pending=PendingQuestion(kind="rejected_application", reference="A1")), False, "我不服",
     model("complaint", 0.9), "rejection_disputed"),
    (ConversationState(flow=DISPUTE), False, "楼上602的住户", model("emergency", 0.5), "form_in_progress"),
    (ConversationState(flow=FILING), False, "我的申请到哪一步了", model("service_procedure", 0.8), "form_in_progress"),
    (ConversationState(topic=Topic(question="90岁高龄津贴多少")), False, "那80岁呢", model("policy_question", 0.3),
     "follow_up"),
    (ConversationState(), False, "我有点害怕", model("emergency", 0.3), "maybe_emergency"),
    (ConversationState(), False, "没用", model("complaint", 0.5), "not_helped"),
    (ConversationState(last_question="低保怎么申请"), False, "低保怎么申请？", model("policy_question", 0.9),
     "not_helped"),
    (ConversationState(), False, "我想找个工作人员聊聊", model("human_request", 0.8), "wants_person"),
    (ConversationState(), False, "你们服务太差了，我要投诉", model("complaint", 0.8), "complaint"),
    (ConversationState(), False, "那个东西", model("policy_question", 0.2), "unsure"),
    (ConversationState(), False, "你好", model("greeting", 0.9), "small_talk"),
    (ConversationState(), False, "楼上天天半夜吵", model("dispute_mediation", 0.9), "dispute_intake"),
    (ConversationState(), False, "我想给我妈申请高龄津贴", IntentPrediction(
        "service_procedure", 0.9, "model", procedure="elderly_allowance"), "procedure_request"),
    (ConversationState(), False, "高龄津贴每月多少钱", model("policy_question", 0.9), "policy_question"),
]


def _turn(engine: DialogueEngine, state: ConversationState, held: bool, text: str,
          prediction: IntentPrediction | None) -> Turn:
    escalation = engine.escalation
    assert isinstance(escalation, InMemoryEscalationService)
    ticket = None
    if held:
        ticket = escalation.open_ticket(kind="human_request", priority="normal", session_id="s", channel="web",
                                        user_id="u", summary="…")
        ticket = escalation.claim(ticket.ticket_id, "worker-1")
    if prediction is not None:
        engine.classifier.next[text] = prediction  # type: ignore[attr-defined]
    conversation = Conversation("s", "web", "u", state=state)
    return Turn(text, "zh", conversation, state, ticket, SETTINGS, engine.classifier.predict)


@pytest.mark.parametrize(("state", "held", "text", "prediction", "expected"), ROWS,
                         ids=[f"{row[4]}:{row[2]}" for row in ROWS])
def test_first_applicable_handler_takes_the_message(engine: DialogueEngine, state: ConversationState, held: bool,
                                                     text: str, prediction: IntentPrediction | None,
                                                     expected: str) -> None:
    turn = _turn(engine, state, held, text, prediction)
    before = state.model_dump()
    assert engine.router.choose(turn).name == expected
    assert state.model_dump() == before, "deciding must not change the conversation"


def test_the_rows_cover_every_handler_in_the_declared_order(engine: DialogueEngine) -> None:
    declared = [h.name for h in HANDLER_ORDER]
    assert engine.router.order == declared
    covered = list(dict.fromkeys(row[4] for row in ROWS))
    assert covered == declared


def test_deciding_asks_no_knowledge_base(engine: DialogueEngine) -> None:
    """Choosing a handler only reads the message, the state and the intent; answers come later."""
    engine.kb.asked.clear()  # type: ignore[attr-defined]
    for state, held, text, prediction, _ in ROWS:
        engine.router.choose(_turn(engine, state, held, text, prediction))
    assert engine.kb.asked == []  # type: ignore[attr-defined]


def test_a_pending_question_lives_for_one_message(engine: DialogueEngine) -> None:
    engine.classifier.next["我有点害怕"] = model("emergency", 0.3)  # type: ignore[attr-defined]
    engine.handle("s1", "我有点害怕")
    assert engine.store.get_or_create("s1", "web", "u").state.pending == PendingQuestion(kind="safety_check")
    engine.handle("s1", "高龄津贴每月多少钱")
    engine.handle("s1", "是的")  # too late: the safety question was dropped by the message before
    state = engine.store.get_or_create("s1", "web", "u").state
    assert state.pending is None
    assert state.handoff_ticket is None


def test_cancel_routes_the_rest_of_the_message(engine: DialogueEngine) -> None:
    engine.classifier.next["楼上天天半夜吵"] = model("dispute_mediation", 0.9)  # type: ignore[attr-defined]
    engine.handle("s2", "楼上天天半夜吵")
    assert engine.store.get_or_create("s2", "web", "u").state.flow is not None
    reply = engine.handle("s2", "算了，高龄津贴每月多少钱")
    assert reply.reply_type == "answer"
    assert reply.text.startswith("好的，登记已取消。")
    assert reply.trace["handler"] == "policy_question"
    assert engine.store.get_or_create("s2", "web", "u").state.flow is None
