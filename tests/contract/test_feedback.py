"""Residents' feedback on both backends: a rating is stored with its turn, replaced when given
again, checked (clear Chinese errors), masked, and announced; on WeChat a keyword reply rates
the answer just sent, and only that."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from assistant.analytics.feedback import FEEDBACK_ACK, FeedbackService, FeedbackWording, InvalidFeedback, UnknownTurn
from assistant.analytics.tables import feedback
from assistant.core.clock import utcnow
from assistant.core.events import EventBus, FeedbackGiven
from assistant.core.settings import AnalyticsSettings, Settings, WechatSettings
from assistant.dialogue.reply import Reply
from assistant.dialogue.store import ConversationStore, turns
from assistant.services import Services
from assistant.wechat.service import WechatService, format_reply


@pytest.fixture
def store(databases, vault, database_url: str) -> ConversationStore:
    return ConversationStore(databases.engine(database_url), vault)


@pytest.fixture
def published() -> tuple[EventBus, list[FeedbackGiven]]:
    bus, seen = EventBus(), list[FeedbackGiven]()
    bus.subscribe(FeedbackGiven, seen.append)
    return bus, seen


@pytest.fixture
def service(databases, database_url: str, published) -> FeedbackService:
    return FeedbackService(databases.engine(database_url), AnalyticsSettings(feedback_comment_max_chars=40),
                           events=published[0])


def _answered(store: ConversationStore, channel: str = "chat", reply_type: str = "answer") -> tuple[str, int]:
    session_id = f"{channel}-{uuid.uuid4().hex[:12]}"
    store.get_or_create(session_id, channel, session_id)
    store.add_turn(session_id, "resident", "高龄津贴怎么领")
    return session_id, store.add_turn(session_id, "assistant", "带身份证到社区服务中心办理。", reply_type,
                                      {"intent": "policy_question", "reply_type": reply_type})


def test_a_rating_is_stored_with_its_turn_and_replaced_when_given_again(store, service, published) -> None:
    session_id, turn_id = _answered(store)
    first = service.rate(turn_id, "up")
    assert (first.rating, first.replaced, first.session_id) == (1, False, session_id)
    second = service.rate(turn_id, "DOWN", reason="wrong", comment="  我的电话是13812345678，没人回  ")
    assert second.replaced and second.public()["rating"] == "down"
    with service.engine.connect() as conn:
        rows = conn.execute(select(feedback).where(feedback.c.turn_id == turn_id)).all()
    assert len(rows) == 1
    assert (rows[0].rating, rows[0].reason, rows[0].channel) == (-1, "wrong", "chat")
    assert rows[0].comment == "我的电话是138****5678，没人回"
    seen = published[1]
    assert [(e.turn_id, e.rating, e.replaced) for e in seen] == [(turn_id, 1, False), (turn_id, -1, True)]


@pytest.mark.parametrize(("rating", "reason", "comment", "message"), [
    ("great", None, None, "评价只能是“有帮助”或“没帮助”。"),
    ("", None, None, "评价只能是“有帮助”或“没帮助”。"),
    ("down", "because", None, "请从列表里选择原因。"),
    ("down", None, "长" * 41, "补充说明最多40个字，您写了41个字。"),
], ids=["unknown-rating", "empty-rating", "unknown-reason", "long-comment"])
def test_bad_feedback_is_refused_with_a_clear_chinese_message(store, service, rating, reason, comment,
                                                              message) -> None:
    _, turn_id = _answered(store)
    with pytest.raises(InvalidFeedback) as refused:
        service.rate(turn_id, rating, reason, comment)
    assert refused.value.message("zh") == message and refused.value.http_status == 422
    assert service.rating_of(turn_id) is None


def test_only_linlis_answers_can_be_rated(store, service) -> None:
    session_id, turn_id = _answered(store)
    with pytest.raises(UnknownTurn):
        service.rate(turn_id + 10_000, "up")
    with pytest.raises(InvalidFeedback, match="只能评价邻里助手的回答"):
        service.rate(turn_id - 1, "up")  # the resident's own question
    assert service.session_of(turn_id) == session_id


def test_a_wechat_keyword_rates_the_answer_just_sent_and_nothing_else(store, service) -> None:
    assert [service.keyword_rating(t) for t in ("满意", " 不满意！", "GOOD.", "👎", "满意吗我问的是低保")] == \
        ["up", "down", "up", "down", None]
    session_id, answer = _answered(store, "wechat")
    assert service.answer_to_rate(session_id) == answer
    # Linli's thanks for a first rating and the keyword itself are skipped: rating again replaces.
    store.add_turn(session_id, "resident", "满意")
    store.add_turn(session_id, "assistant", "谢谢", None, {FEEDBACK_ACK: True})
    assert service.answer_to_rate(session_id) == answer
    # A worker's words, a form prompt, or an answer older than the window: nothing to rate.
    store.add_turn(session_id, "worker", "您好，我是王社工", "handoff", {"ticket_id": "T-1"})
    assert service.answer_to_rate(session_id) is None
    form_session, _ = _answered(store, "wechat", reply_type="form")
    assert service.answer_to_rate(form_session) is None
    old_session, old_answer = _answered(store, "wechat")
    with service.engine.begin() as conn:
        conn.execute(update(turns).where(turns.c.id == old_answer).values(created_at=utcnow() - timedelta(hours=3)))
    assert service.answer_to_rate(old_session) is None


def test_wechat_replies_rate_through_the_processor(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, wechat=WechatSettings(token=SecretStr("t")))
    services = Services(settings)
    wechat = WechatService(settings, services.engine, services, services.wechat_pushes)
    openid = f"o{uuid.uuid4().hex[:12]}"
    session_id = f"wechat:{openid}"
    services.residents.bind(session_id, owner=session_id, channel="wechat", user_id=openid)
    answer = services.conversations.add_turn(session_id, "assistant", "每月500元。", "answer",
                                             {"intent": "policy_question", "reply_type": "answer"})

    def reply_to(text: str) -> list[str]:
        job = SimpleNamespace(openid=openid, payload={"content": text}, msg_type="text", dedup_key=f"msg:{text}")
        return wechat._answer(job)[0]  # type: ignore[arg-type]  # the fields of a wechat_inbound row

    assert reply_to("满意") == [services.feedback.wording.say("wechat.thanks_up", "zh")]
    assert reply_to("不满意。") == [services.feedback.wording.say("wechat.thanks_down", "zh")]
    stored = services.feedback.rating_of(answer)
    assert stored is not None and stored.rating == -1
    transcript = services.conversations.history(session_id)
    assert [t["text"] for t in transcript if t["role"] == "resident"] == ["满意", "不满意。"]
    # The answer's pushes say how to rate it; a form prompt's do not.
    hint = FeedbackWording.load().say("wechat.hint", "zh")
    answered = Reply("answer", "每月500元。", turn_id=answer)
    assert format_reply(answered, "zh", feedback_hint=wechat._feedback_hint(answered, "zh"))[-1].endswith(hint)
    assert wechat._feedback_hint(Reply("form", "请问老人的姓名？", turn_id=answer), "zh") is None
