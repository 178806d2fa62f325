"""The analytics page's queries on both backends (SQLite and PostgreSQL; PostgreSQL is skipped with
the reason printed when it is not reachable): a small known history of conversations, turns,
feedback and tickets in, the page's numbers out."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, inspect

from assistant.analytics.feedback import FeedbackService
from assistant.analytics.grouping import normalise_question
from assistant.analytics.queries import AnalyticsService, Period, conversation, summary
from assistant.analytics.tables import feedback
from assistant.core.settings import AnalyticsSettings
from assistant.dialogue.store import conversations, turns
from assistant.escalation.tables import tickets

DAY1 = datetime(2020, 3, 2, 9, 0)
DAY2 = datetime(2020, 3, 3, 23, 30)
PERIOD = Period(date(2020, 3, 1), date(2020, 3, 7))


class History:
    """Writes rows as the dialogue engine, the feedback endpoint and the ticket queue would."""

    def __init__(self, engine: Engine, centre: str) -> None:
        self.engine = engine
        self.centre = centre

    def conversation(self, channel: str, at: datetime, centre: str | None = None) -> str:
        session_id = f"{channel}-{uuid.uuid4().hex[:12]}"
        with self.engine.begin() as conn:
            conn.execute(insert(conversations).values(session_id=session_id, channel=channel, user_id=session_id,
                                                      language="zh", state={}, created_at=at, updated_at=at,
                                                      owner=f"page:{session_id}", centre=centre or self.centre))
        return session_id

    def exchange(self, session_id: str, question: str, reply_type: str, intent: str | None, at: datetime) -> int:
        with self.engine.begin() as conn:
            conn.execute(insert(turns).values(session_id=session_id, role="resident", text=question, created_at=at))
            result = conn.execute(insert(turns).values(
                session_id=session_id, role="assistant", text=f"（{reply_type}）", reply_type=reply_type,
                trace={"intent": intent, "reply_type": reply_type, "doc_ids": []},
                created_at=at + timedelta(seconds=1)))
        return int(result.inserted_primary_key[0])  # type: ignore[index]  # one row inserted: one key

    def rate(self, turn_id: int, session_id: str, rating: int, at: datetime, reason: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(feedback).values(turn_id=turn_id, session_id=session_id, rating=rating, reason=reason,
                                                 channel=session_id.split("-")[0], created_at=at, updated_at=at))

    def ticket(self, at: datetime, *, claimed_after_min: float | None, breached: bool = False,
               rating: int | None = None, centre: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(tickets).values(
                ticket_id=f"T-{uuid.uuid4().hex[:10]}", kind="human_request", priority="normal", status="pending",
                centre=centre or self.centre, session_id="s", channel="chat", user_id="u", summary="想找人",
                form_data={}, created_at=at, updated_at=at, due_at=at + timedelta(minutes=30),
                claimed_at=at + timedelta(minutes=claimed_after_min) if claimed_after_min is not None else None,
                breached=breached, rating=rating))


@pytest.fixture
def centre() -> str:
    """A centre of this test's own: the PostgreSQL database is shared by the whole run."""
    return f"centre-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def history(databases, database_url: str, centre: str) -> History:
    return History(databases.engine(database_url), centre)


@pytest.fixture
def analytics(databases, database_url: str) -> AnalyticsService:
    return AnalyticsService(databases.engine(database_url), AnalyticsSettings())


def test_questions_intents_and_rates(history: History, analytics: AnalyticsService, centre: str) -> None:
    kiosk, chat, wechat = (history.conversation(c, DAY1) for c in ("kiosk", "chat", "wechat"))
    history.exchange(kiosk, "高龄津贴怎么领", "answer", "policy_question", DAY1)
    history.exchange(kiosk, "转人工", "handoff", "human_request", DAY1)
    history.exchange(chat, "低保怎么申请", "answer", "policy_question", DAY1)
    history.exchange(chat, "月球上的医保", "refusal", "policy_question", DAY2)
    history.exchange(wechat, "你好", "smalltalk", "greeting", DAY2)
    history.exchange(wechat, "多少钱", "clarify", None, DAY2)
    # Outside the period, another centre, and turns that are no question (a rating request).
    history.exchange(chat, "上个月的问题", "answer", "policy_question", DAY1 - timedelta(days=10))
    history.exchange(history.conversation("chat", DAY1, centre="elsewhere"), "别的中心", "answer", "policy_question",
                     DAY1)
    with history.engine.begin() as conn:
        conn.execute(insert(turns).values(session_id=chat, role="assistant", text="请打分", reply_type="smalltalk",
                                          trace={"rating_request": True}, created_at=DAY2))

    per_day = analytics.questions_per_day(PERIOD, centre).rows
    assert per_day == [
        {"day": "2020-03-02", "channel": "chat", "centre": centre, "questions": 1},
        {"day": "2020-03-02", "channel": "kiosk", "centre": centre, "questions": 2},
        {"day": "2020-03-03", "channel": "chat", "centre": centre, "questions": 1},
        {"day": "2020-03-03", "channel": "wechat", "centre": centre, "questions": 2},
    ]
    intents = {r["intent"]: r["questions"] for r in analytics.intents(PERIOD, centre).rows}
    assert intents == {"policy_question": 3, "human_request": 1, "greeting": 1, "（未分类）": 1}
    rates = {r["reply_type"]: (r["replies"], r["rate"]) for r in analytics.outcomes(PERIOD, centre).rows}
    assert rates["answer"] == (2, round(2 / 6, 4)) and rates["refusal"] == (1, round(1 / 6, 4))
    assert rates["handoff"] == (1, round(1 / 6, 4)) and rates["clarify"] == (1, round(1 / 6, 4))
    # One day only: the range includes both ends, whole UTC days.
    assert sum(r["questions"] for r in analytics.questions_per_day(Period(DAY2.date(), DAY2.date()), centre).rows) == 3


def test_unanswered_questions_are_grouped_by_wording_and_ranked(history: History, analytics: AnalyticsService,
                                                                centre: str) -> None:
    sessions = [history.conversation("chat", DAY1) for _ in range(6)]
    refused = [history.exchange(sessions[0], "护照怎么办理？", "refusal", "policy_question", DAY1),
               history.exchange(sessions[1], "护照怎么办理", "refusal", "policy_question", DAY1),
               history.exchange(sessions[2], "护照怎么办理呢", "refusal", "policy_question", DAY2),
               history.exchange(sessions[3], "宠物狗办证去哪里", "refusal", "policy_question", DAY1)]
    disliked = history.exchange(sessions[4], "请问护照要怎么办理", "answer", "policy_question", DAY2)
    history.rate(disliked, sessions[4], -1, DAY2, reason="not_my_question")
    liked = history.exchange(sessions[5], "低保怎么申请", "answer", "policy_question", DAY2)
    history.rate(liked, sessions[5], 1, DAY2)

    rows = analytics.unanswered(PERIOD, centre).rows
    assert [r["question"] for r in rows] == ["护照怎么办理", "宠物狗办证去哪里"]
    passport = rows[0]
    assert (passport["rank"], passport["times"], passport["refused"], passport["down"]) == (1, 4, 3, 1)
    assert set(passport["wordings"].split(" / ")) == {"护照怎么办理？", "护照怎么办理呢", "请问护照要怎么办理"}
    assert passport["reasons"] == "没回答我问的×1"
    # The link goes to the latest conversation of the group, at the answer that was rated down.
    assert (passport["session_id"], passport["turn_id"]) == (sessions[4], disliked)
    assert rows[1]["turn_id"] == refused[3]


def test_satisfaction_handoffs_breaches_and_median_time_to_claim(history: History, analytics: AnalyticsService,
                                                                 centre: str) -> None:
    session = history.conversation("kiosk", DAY1)
    for n, vote in enumerate((1, 1, -1)):
        turn = history.exchange(session, f"问题{n}", "answer", "policy_question", DAY1)
        history.rate(turn, session, vote, DAY1, reason="wrong" if vote < 0 else None)
    for minutes, breached, stars in ((2, False, 5), (10, False, 4), (30, True, None), (None, True, None)):
        history.ticket(DAY1, claimed_after_min=minutes, breached=breached, rating=stars)
    other = f"{centre}-b"
    history.ticket(DAY2, claimed_after_min=4, centre=other)
    history.ticket(DAY2, claimed_after_min=8, centre=other)
    history.ticket(DAY2 + timedelta(days=30), claimed_after_min=100, centre=other)  # outside the period

    votes = {(r["rating"], r["reason"]): r["times"] for r in analytics.feedback_ratings(PERIOD, centre).rows}
    assert votes == {("有帮助", ""): 2, ("没帮助", "回答不对"): 1}
    assert {(r["rating"], r["times"]) for r in analytics.handoff_ratings(PERIOD, centre).rows} == {(5, 1), (4, 1)}
    handoffs = {r["centre"]: r for r in analytics.handoffs_per_centre(PERIOD).rows}
    mine, theirs = handoffs[centre], handoffs[other]
    assert (mine["tickets"], mine["breached"], mine["claimed"], mine["breach_rate"]) == (4, 2, 3, 0.5)
    assert mine["median_minutes_to_claim"] == 10.0  # 2, 10, 30: the middle one
    assert theirs["median_minutes_to_claim"] == 6.0  # 4 and 8: the mean of the two middle ones
    assert [r["centre"] for r in analytics.handoffs_per_centre(PERIOD, other).rows] == [other]

    report = analytics.report(PERIOD, centre)
    assert set(report) == set(analytics.queries)
    numbers = dict(summary(report))
    assert numbers["有帮助 / 没帮助"] == "2 / 1（67% 满意）" and numbers["工单 / 超时"] == "4 / 2"
    assert numbers["转人工后评分"].startswith("4.50 / 5")


def test_the_conversation_a_row_links_to_shows_its_ratings(databases, history: History, analytics: AnalyticsService,
                                                          database_url: str) -> None:
    session = history.conversation("chat", DAY1)
    turn = history.exchange(session, "护照怎么办理", "refusal", "policy_question", DAY1)
    FeedbackService(history.engine, AnalyticsSettings()).rate(turn, "down", "wrong", "我的电话13812345678")
    found = conversation(analytics, session)
    assert found is not None and found.channel == "chat"
    rated = next(t for t in found.turns if t["id"] == turn)
    assert (rated["rating"], rated["reason"], rated["comment"]) == (-1, "回答不对", "我的电话138****5678")
    assert conversation(analytics, "no-such-session") is None


def test_the_migration_adds_the_indexes_the_queries_filter_on(databases, database_url: str) -> None:
    schema = inspect(databases.engine(database_url))
    names = {table: {ix["name"] for ix in schema.get_indexes(table)} for table in ("turns", "tickets", "feedback")}
    assert {"ix_turns_role_created_at", "ix_turns_session_id_id"} <= names["turns"]
    assert "ix_tickets_created_at" in names["tickets"]
    assert {"ix_feedback_created_at", "ix_feedback_session_id"} <= names["feedback"]


def test_days_that_are_over_are_counted_once_and_today_live(databases, history: History, database_url: str,
                                                           centre: str) -> None:
    now = datetime(2021, 6, 10, 12, 0)
    analytics = AnalyticsService(databases.engine(database_url), AnalyticsSettings(), now=lambda: now)
    session = history.conversation("chat", now)
    yesterday = history.exchange(session, "昨天的问题", "answer", "policy_question", now - timedelta(days=1))
    history.exchange(session, "今天的问题", "answer", "policy_question", now)
    week = Period(date(2021, 6, 4), date(2021, 6, 10))

    def per_day() -> dict[str, int]:
        return {r["day"]: r["questions"] for r in analytics.questions_per_day(week, centre).rows}

    assert per_day() == {"2021-06-09": 1, "2021-06-10": 1}
    # Yesterday is counted for good (its turn deleted, it stays); today is read from the turns each time.
    with history.engine.begin() as conn:
        conn.execute(delete(turns).where(turns.c.id.in_([yesterday, yesterday - 1])))
    history.exchange(session, "今天又问", "refusal", "policy_question", now + timedelta(minutes=5))
    assert per_day() == {"2021-06-09": 1, "2021-06-10": 2}
    outcomes = {r["reply_type"]: r["replies"] for r in analytics.outcomes(week, centre).rows}
    assert outcomes["answer"] == 2 and outcomes["refusal"] == 1
    # A reply written in the last minutes of a day is not missed: the day is counted once it has settled.
    late = datetime(2021, 6, 11, 0, 3)
    analytics.now = lambda: late
    history.exchange(session, "半夜的问题", "answer", "policy_question", datetime(2021, 6, 10, 23, 59, 58))
    assert per_day() == {"2021-06-09": 1, "2021-06-10": 3}


def test_finished_days_are_counted_ahead_of_the_first_view(databases, history: History, database_url: str,
                                                           centre: str) -> None:
    now = datetime(2019, 9, 20, 12, 0)
    analytics = AnalyticsService(databases.engine(database_url), AnalyticsSettings(), now=lambda: now)
    session = history.conversation("kiosk", now - timedelta(days=3))
    earlier = history.exchange(session, "三天前的问题", "answer", "policy_question", now - timedelta(days=3))
    history.exchange(session, "今天的问题", "answer", "policy_question", now)
    assert analytics.count_finished_days(7) == 7
    # The view reads what was counted ahead of it: the turns of that day are gone, the count stays.
    with history.engine.begin() as conn:
        conn.execute(delete(turns).where(turns.c.id.in_([earlier, earlier - 1])))
    week = Period(date(2019, 9, 14), date(2019, 9, 20))
    per_day = {r["day"]: r["questions"] for r in analytics.questions_per_day(week, centre).rows}
    assert per_day == {"2019-09-17": 1, "2019-09-20": 1}
    assert analytics.count_finished_days(0) == 0


def test_a_reply_names_the_question_it_answers(databases, history: History, database_url: str, centre: str) -> None:
    """The engine writes the question's turn id into the reply's trace; the page reads that turn,
    even where another resident turn came in between (older replies without it: the last one before)."""
    analytics = AnalyticsService(databases.engine(database_url), AnalyticsSettings())
    at = datetime(2018, 5, 2, 10, 0)
    session = history.conversation("chat", at)
    with history.engine.begin() as conn:
        asked = conn.execute(insert(turns).values(session_id=session, role="resident", text="养狗要办什么证",
                                                  created_at=at)).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(insert(turns).values(session_id=session, role="resident", text="在吗", created_at=at))
        conn.execute(insert(turns).values(
            session_id=session, role="assistant", text="（拒答）", reply_type="refusal",
            trace={"intent": "policy_question", "reply_type": "refusal", "question_turn_id": asked},
            created_at=at + timedelta(seconds=1)))
    history.exchange(session, "猫能上户口吗", "refusal", "policy_question", at + timedelta(minutes=1))
    rows = analytics.unanswered(Period(date(2018, 5, 1), date(2018, 5, 3)), centre).rows
    assert {r["question"] for r in rows} == {"猫能上户口吗", "养狗要办什么证"}


# Whatever a resident or an API client can store: any Unicode but lone surrogates (refused with a
# 422) and NUL (PostgreSQL's text cannot hold it; the API strips it), edges of spaces and tabs.
STORED_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                      min_size=0, max_size=30)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(questions=st.lists(STORED_TEXT, min_size=1, max_size=6), channel=STORED_TEXT.filter(bool))
def test_every_report_and_export_takes_any_stored_text(databases, database_url: str, questions: list[str],
                                                       channel: str) -> None:
    """Issue 28, hole 2: one resident's question starting with a tab, rated 👎, made the analytics
    page and unanswered.csv a 500. Every table of the report, and its CSV, over any text."""
    from assistant.admin.routes import to_csv  # noqa: PLC0415 - the page's own export

    history = History(databases.engine(database_url), f"centre-{uuid.uuid4().hex[:8]}")
    analytics = AnalyticsService(databases.engine(database_url), AnalyticsSettings())
    session = history.conversation(channel[:32], DAY1)
    for number, question in enumerate(questions):
        turn = history.exchange(session, question, "refusal" if number % 2 else "answer", "policy_question", DAY1)
        history.rate(turn, session, -1, DAY1, reason="wrong")
    report = analytics.report(PERIOD, history.centre)
    for table in report.values():
        to_csv(table)
    # Every refusal and every 👎 of a question with words in it is counted, in some group.
    expected = sum(1 + number % 2 for number, q in enumerate(questions) if normalise_question(q))
    assert sum(row["times"] for row in report["unanswered"].rows) == expected
