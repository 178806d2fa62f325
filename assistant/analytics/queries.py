"""What the administrators' analytics page shows, computed from the stored turns, feedback and
tickets with SQL that runs on SQLite and PostgreSQL alike (SQLAlchemy Core; the one expression the
two write differently, seconds between two timestamps, is compiled per dialect below).

Every query is bounded by a date range (UTC days, both ends included) and optionally one centre.
"Replies" are the assistant turns the dialogue engine wrote (their trace names a reply_type);
rating requests, application notices and Linli's thanks for a rating are not questions. The
indexes these queries rely on are added by migration 0009."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, String, and_, case, cast, func, insert, literal_column, null, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from assistant.analytics.feedback import FeedbackWording
from assistant.analytics.grouping import group_similar
from assistant.analytics.tables import daily_replies, feedback, rolled_days
from assistant.core.clock import utcnow
from assistant.core.settings import AnalyticsSettings
from assistant.dialogue.store import conversations, turns
from assistant.escalation.tables import tickets

# The reply types shown as the page's rates, in this order; any other type is counted under its own name.
OUTCOMES = ("answer", "clarify", "refusal", "handoff", "emergency", "form", "smalltalk")
# How the page and its CSV name 👍 and 👎 (words: spreadsheets and some screens lack emoji).
HELPFUL, NOT_HELPFUL = "有帮助", "没帮助"
# Distinct unanswered wordings read for grouping (the most frequent first).
MAX_UNANSWERED_WORDINGS = 20000
# A day's replies are counted for good once the day has been over this long (a reply being written
# at midnight is in by then); until then they are counted from the turns on every read.
SETTLING = timedelta(minutes=10)


class seconds_between(FunctionElement[float]):
    """Seconds from the first timestamp to the second."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"((julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


@dataclass(frozen=True)
class Period:
    """UTC days, both included."""

    start: date
    end: date

    @classmethod
    def last_days(cls, days: int, today: date) -> Period:
        return cls(today - timedelta(days=days - 1), today)

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min)

    @property
    def before(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min)


@dataclass
class ReportTable:
    """One table of the page, and of its CSV export: column key -> heading, and the rows."""

    name: str
    title: str
    columns: dict[str, str]
    rows: list[dict[str, Any]] = field(default_factory=list)


def _day(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _totals(counts: list[ReplyCount], dimension: str) -> Counter[str]:
    totals: Counter[str] = Counter()
    for c in counts:
        if c.dimension == dimension:
            totals[c.value] += c.replies
    return totals


def _days(period: Period) -> list[date]:
    return [period.start + timedelta(days=n) for n in range((period.end - period.start).days + 1)]


def _stretches(days: list[date]) -> Iterator[Period]:
    """Consecutive days (sorted) as periods."""
    start = previous = None
    for day in days:
        if start is None or previous is None:
            start = previous = day
        elif day == previous + timedelta(days=1):
            previous = day
        else:
            yield Period(start, previous)
            start = previous = day
    if start is not None and previous is not None:
        yield Period(start, previous)


# The three ways replies are counted per day and centre.
DIMENSIONS = ("channel", "reply_type", "intent")


@dataclass(frozen=True)
class ReplyCount:
    """The dialogue's replies of one day and centre with one channel, reply type or intent."""

    day: date
    centre: str
    dimension: str  # one of DIMENSIONS
    value: str
    replies: int


@dataclass
class Unanswered:
    """How often one wording (or a group of them) was refused or rated 👎, why, and its latest answer."""

    times: int = 0
    refused: int = 0
    down: int = 0
    latest: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, times: int, refused: int, down: int, latest: int, reason: str | None) -> None:
        self.times += times
        self.refused += refused
        self.down += down
        self.latest = max(self.latest, latest)
        if reason:
            self.reasons[reason] += times

    @classmethod
    def of(cls, parts: Iterable[Unanswered]) -> Unanswered:
        total = cls()
        for part in parts:
            total.add(part.times, part.refused, part.down, part.latest, None)
            total.reasons.update(part.reasons)
        return total


class AnalyticsService:
    """The page's queries; each returns one `ReportTable`. The replies of days that are over are
    counted once into `analytics_daily_replies` (the first time the page reads the day); today
    and the last minutes of yesterday are counted from the turns on every read."""

    def __init__(self, engine: Engine, settings: AnalyticsSettings, wording: FeedbackWording | None = None,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.settings = settings
        self.wording = wording or FeedbackWording.load()
        self.now = now

    # ---- the page -----------------------------------------------------------------------------

    @property
    def queries(self) -> dict[str, Callable[[Period, str | None], ReportTable]]:
        """Every table of the page by name, in the page's order (the CSV export and the bench use this)."""
        return {"questions_per_day": self.questions_per_day, "intents": self.intents, "outcomes": self.outcomes,
                "unanswered": self.unanswered, "feedback": self.feedback_ratings,
                "handoff_ratings": self.handoff_ratings, "handoffs": self.handoffs_per_centre}

    def report(self, period: Period, centre: str | None = None) -> dict[str, ReportTable]:
        counts = self.reply_counts(period, centre)  # read once for the three tables built from it
        from_counts = {"questions_per_day": self._questions_per_day, "intents": self._intents,
                       "outcomes": self._outcomes}
        return {name: from_counts[name](counts) if name in from_counts else query(period, centre)
                for name, query in self.queries.items()}

    def centres(self) -> list[str]:
        with self.engine.connect() as conn:
            found: set[str] = set(conn.execute(select(conversations.c.centre)
                                               .where(conversations.c.centre.is_not(None)).distinct()).scalars())
            found.update(conn.execute(select(tickets.c.centre).distinct()).scalars())
        return sorted(found)

    # ---- the filters ---------------------------------------------------------------------------

    @staticmethod
    def _in(period: Period, column: Any) -> ColumnElement[bool]:
        return and_(column >= period.since, column < period.before)

    @staticmethod
    def _turns_with_conversation() -> Any:
        return turns.join(conversations, conversations.c.session_id == turns.c.session_id)

    def _tickets(self, period: Period, centre: str | None) -> ColumnElement[bool]:
        where = self._in(period, tickets.c.created_at)
        return and_(where, tickets.c.centre == centre) if centre else where

    # ---- the dialogue's replies, counted per day ---------------------------------------------

    def reply_counts(self, period: Period, centre: str | None = None) -> list[ReplyCount]:
        """The replies of the period: days that are over from `analytics_daily_replies` (counted
        now if they never were), the rest from the turns."""
        rolled_until = min(period.end, self._last_settled_day())
        counts: list[ReplyCount] = []
        if period.start <= rolled_until:
            self._roll_up(Period(period.start, rolled_until))
            counts += self._rolled(Period(period.start, rolled_until), centre)
        live_from = max(period.start, rolled_until + timedelta(days=1))
        if live_from <= period.end:
            counts += self._count_turns(Period(live_from, period.end), centre)
        return counts

    def count_finished_days(self, days: int) -> int:
        """Count the finished days among the last `days` that never were (the server does this in
        the background, so that the first view of a long range does not wait for it). Returns
        the number of days it looked at."""
        if days <= 0:
            return 0
        self._roll_up(Period.last_days(days, self._last_settled_day()))
        return days

    def _last_settled_day(self) -> date:
        """The last day no reply can still join."""
        return (self.now() - SETTLING).date() - timedelta(days=1)

    def _count_turns(self, period: Period, centre: str | None) -> list[ReplyCount]:
        day = func.date(turns.c.created_at).label("day")
        # The engine's own replies name their reply_type in the trace; rating requests, application
        # notices and the thanks for a rating do not, and are no answer to a question.
        reply_type = turns.c.trace["reply_type"].as_string().label("reply_type")
        intent = turns.c.trace["intent"].as_string().label("intent")
        where = and_(turns.c.role == "assistant", self._in(period, turns.c.created_at))
        if centre:
            where = and_(where, conversations.c.centre == centre)
        query = (select(day, conversations.c.channel, conversations.c.centre, reply_type, intent,
                        func.count().label("replies"))
                 .select_from(self._turns_with_conversation()).where(where)
                 .group_by(day, conversations.c.channel, conversations.c.centre, reply_type, intent))
        counted: Counter[tuple[date, str, str, str]] = Counter()
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                if r.reply_type is None:
                    continue
                key = date.fromisoformat(_day(r.day)), r.centre or ""
                counted[*key, "channel", r.channel] += r.replies
                counted[*key, "reply_type", r.reply_type] += r.replies
                counted[*key, "intent", r.intent or ""] += r.replies
        return [ReplyCount(day, centre, dimension, value, int(n))
                for (day, centre, dimension, value), n in counted.items()]

    def _roll_up(self, period: Period) -> None:
        """Counts the days of the period that never were into `analytics_daily_replies`, one
        stretch of consecutive days per query. Two processes counting the same days at once:
        the second one's insert of `analytics_rolled_days` fails, and it leaves them to the first."""
        with self.engine.connect() as conn:
            done: set[date] = set(conn.execute(select(rolled_days.c.day).where(rolled_days.c.day >= period.start,
                                                                    rolled_days.c.day <= period.end)).scalars())
        missing = [d for d in _days(period) if d not in done]
        for stretch in _stretches(missing):
            counts = self._count_turns(stretch, None)
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(rolled_days), [{"day": d, "rolled_at": self.now()} for d in _days(stretch)])
                    if counts:
                        conn.execute(insert(daily_replies), [
                            {"day": c.day, "centre": c.centre, "dimension": c.dimension, "value": c.value,
                             "replies": c.replies} for c in counts])
            except IntegrityError:
                continue

    def _rolled(self, period: Period, centre: str | None) -> list[ReplyCount]:
        where = and_(daily_replies.c.day >= period.start, daily_replies.c.day <= period.end)
        if centre:
            where = and_(where, daily_replies.c.centre == centre)
        with self.engine.connect() as conn:
            rows = conn.execute(select(daily_replies).where(where)).all()
        return [ReplyCount(r.day, r.centre, r.dimension, r.value, int(r.replies)) for r in rows]

    # ---- questions ---------------------------------------------------------------------------

    def questions_per_day(self, period: Period, centre: str | None = None) -> ReportTable:
        return self._questions_per_day(self.reply_counts(period, centre))

    def intents(self, period: Period, centre: str | None = None) -> ReportTable:
        return self._intents(self.reply_counts(period, centre))

    def outcomes(self, period: Period, centre: str | None = None) -> ReportTable:
        """How replies ended: answered, asked back, refused, handed to a person …, with rates."""
        return self._outcomes(self.reply_counts(period, centre))

    @staticmethod
    def _questions_per_day(counts: list[ReplyCount]) -> ReportTable:
        per_day: Counter[tuple[date, str, str]] = Counter()
        for c in counts:
            if c.dimension == "channel":
                per_day[c.day, c.value, c.centre] += c.replies
        return ReportTable("questions_per_day", "每天的提问（按渠道、中心）",
                           {"day": "日期", "channel": "渠道", "centre": "中心", "questions": "提问数"},
                           [{"day": day.isoformat(), "channel": channel, "centre": centre, "questions": n}
                            for (day, channel, centre), n in sorted(per_day.items())])

    @staticmethod
    def _intents(counts: list[ReplyCount]) -> ReportTable:
        per_intent = _totals(counts, "intent")
        total = sum(per_intent.values())
        return ReportTable("intents", "意图", {"intent": "意图", "questions": "提问数", "share": "占比"},
                           [{"intent": intent or "（未分类）", "questions": n, "share": _share(n, total)}
                            for intent, n in sorted(per_intent.items(), key=lambda item: (-item[1], item[0]))])

    @staticmethod
    def _outcomes(counts: list[ReplyCount]) -> ReportTable:
        counted = _totals(counts, "reply_type")
        total = sum(counted.values())
        order = [*OUTCOMES, *sorted(set(counted) - set(OUTCOMES))]
        return ReportTable("outcomes", "回答、追问、拒答、转人工的比例",
                           {"reply_type": "结果", "replies": "次数", "rate": "比例"},
                           [{"reply_type": t, "replies": counted[t], "rate": _share(counted[t], total)}
                            for t in order if t in counted or t in OUTCOMES[:4]])

    # ---- what Linli could not answer ------------------------------------------------------------

    def unanswered(self, period: Period, centre: str | None = None) -> ReportTable:
        """Refused questions and 👎 answers, grouped by similar wording, the largest group first:
        what the corpus is missing. Each group links to its latest conversation."""
        asked, before = turns.alias("asked"), turns.alias("before")
        # The question a reply names (its trace's question_turn_id, since the engine writes it);
        # for older replies, the conversation's last resident turn before the reply.
        named = (select(asked.c.text).where(asked.c.id == turns.c.trace["question_turn_id"].as_integer())
                 .scalar_subquery())
        searched = (select(before.c.text).where(before.c.session_id == turns.c.session_id, before.c.id < turns.c.id,
                                                before.c.role == "resident")
                    .order_by(before.c.id.desc()).limit(1).scalar_subquery())
        question = func.coalesce(named, searched)
        # A refusal is always the engine's own reply: the reply_type column and its index suffice.
        refusals = [turns.c.reply_type == "refusal", turns.c.role == "assistant", self._in(period, turns.c.created_at)]
        if centre:
            refusals.append(conversations.c.centre == centre)
        refused = (select(turns.c.id.label("turn_id"), question.label("question"), literal_column("1").label("refused"),
                          literal_column("0").label("down"), cast(null(), String(32)).label("reason"))
                   .select_from(self._turns_with_conversation())
                   .where(*refusals))
        rated_down = and_(feedback.c.rating < 0, self._in(period, feedback.c.created_at))
        if centre:
            rated_down = and_(rated_down, conversations.c.centre == centre)
        disliked = (select(turns.c.id.label("turn_id"), question.label("question"),
                           literal_column("0").label("refused"), literal_column("1").label("down"),
                           feedback.c.reason.label("reason"))
                    .select_from(feedback.join(turns, turns.c.id == feedback.c.turn_id)
                                 .join(conversations, conversations.c.session_id == turns.c.session_id))
                    .where(rated_down))
        both = refused.union_all(disliked).subquery("unanswered")
        # One pass: per wording and 👎 reason; the wordings are put together below.
        per_wording = (select(both.c.question, both.c.reason, func.count().label("times"),
                              func.sum(both.c.refused).label("refused"), func.sum(both.c.down).label("down"),
                              func.max(both.c.turn_id).label("latest"))
                       .group_by(both.c.question, both.c.reason))
        wordings: dict[str, Unanswered] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(per_wording):
                if r.question is None:
                    continue
                found = wordings.setdefault(r.question, Unanswered())
                found.add(int(r.times), int(r.refused), int(r.down), int(r.latest), r.reason)
            frequent = sorted(wordings.items(), key=lambda item: -item[1].times)[:MAX_UNANSWERED_WORDINGS]
            groups = group_similar(((text, w.times) for text, w in frequent), self.settings.similar_wording)
            groups = groups[: self.settings.unanswered_groups]
            totals = [Unanswered.of(wordings[text] for text in group.members) for group in groups]
            sessions = self._sessions_of(conn, [t.latest for t in totals])
        return ReportTable(
            "unanswered", "没答上的问题（拒答和“没帮助”，相似说法归为一组）",
            {"rank": "排名", "question": "问题", "times": "次数", "refused": "拒答", "down": "没帮助",
             "reasons": "原因", "wordings": "其他说法", "session_id": "最近的对话", "turn_id": "回答编号"},
            [{"rank": rank, "question": group.wording, "times": total.times, "refused": total.refused,
              "down": total.down,
              "reasons": "；".join(f"{self.wording.reason_label(r)}×{n}" for r, n in total.reasons.most_common()),
              "wordings": " / ".join([t for t in sorted(group.members, key=lambda t: -group.members[t])
                                      if t != group.wording][:5]),
              "session_id": sessions.get(total.latest, ""), "turn_id": total.latest}
             for rank, (group, total) in enumerate(zip(groups, totals, strict=True), 1)])

    @staticmethod
    def _sessions_of(conn: Connection, turn_ids: list[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        for start in range(0, len(turn_ids), 500):
            chunk = turn_ids[start:start + 500]
            found.update({int(r.id): str(r.session_id) for r in conn.execute(
                select(turns.c.id, turns.c.session_id).where(turns.c.id.in_(chunk))).all()})
        return found

    # ---- satisfaction ---------------------------------------------------------------------------

    def feedback_ratings(self, period: Period, centre: str | None = None) -> ReportTable:
        """👍 / 👎 by channel, and 👎 by reason."""
        where = self._in(period, feedback.c.created_at)
        if centre:
            where = and_(where, conversations.c.centre == centre)
        query = (select(feedback.c.channel, feedback.c.rating, feedback.c.reason, func.count().label("times"))
                 .select_from(feedback.join(conversations, conversations.c.session_id == feedback.c.session_id))
                 .where(where).group_by(feedback.c.channel, feedback.c.rating, feedback.c.reason)
                 .order_by(feedback.c.channel, feedback.c.rating.desc(), func.count().desc()))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return ReportTable("feedback", "居民评价（有帮助 / 没帮助）",
                           {"channel": "渠道", "rating": "评价", "reason": "原因", "times": "次数"},
                           [{"channel": r.channel, "rating": HELPFUL if r.rating > 0 else NOT_HELPFUL,
                             "reason": self.wording.reason_label(r.reason), "times": int(r.times)} for r in rows])

    def handoff_ratings(self, period: Period, centre: str | None = None) -> ReportTable:
        """The 1–5 ratings residents gave after a worker resolved their ticket."""
        query = (select(tickets.c.centre, tickets.c.rating, func.count().label("times"))
                 .where(self._tickets(period, centre), tickets.c.rating.is_not(None))
                 .group_by(tickets.c.centre, tickets.c.rating).order_by(tickets.c.centre, tickets.c.rating.desc()))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return ReportTable("handoff_ratings", "转人工后的满意度（1–5分）",
                           {"centre": "中心", "rating": "分数", "times": "次数"},
                           [{"centre": r.centre, "rating": int(r.rating), "times": int(r.times)} for r in rows])

    # ---- hand-offs -------------------------------------------------------------------------------

    def handoffs_per_centre(self, period: Period, centre: str | None = None) -> ReportTable:
        """Tickets opened, SLA breaches, and the median minutes from opening to a worker's claim."""
        breached = func.sum(case((tickets.c.breached.is_(True), 1), else_=0))
        counts = (select(tickets.c.centre, func.count().label("tickets"), breached.label("breached"),
                         func.count(tickets.c.claimed_at).label("claimed"))
                  .where(self._tickets(period, centre)).group_by(tickets.c.centre).order_by(tickets.c.centre))
        waited = (select(tickets.c.centre, seconds_between(tickets.c.created_at, tickets.c.claimed_at).label("s"))
                  .where(self._tickets(period, centre), tickets.c.claimed_at.is_not(None)).subquery("waited"))
        ranked = select(waited.c.centre, waited.c.s,
                        func.row_number().over(partition_by=waited.c.centre, order_by=waited.c.s).label("n"),
                        func.count().over(partition_by=waited.c.centre).label("total")).subquery("ranked")
        # The middle row, or the mean of the two middle rows (integer division on both databases).
        median = (select(ranked.c.centre, func.avg(ranked.c.s).label("median_s"))
                  .where(ranked.c.n.in_([(ranked.c.total + 1) // 2, (ranked.c.total + 2) // 2]))
                  .group_by(ranked.c.centre))
        with self.engine.connect() as conn:
            rows = conn.execute(counts).all()
            medians = {r.centre: float(r.median_s) for r in conn.execute(median).all()}
        return ReportTable(
            "handoffs", "各中心转人工、超时和认领用时",
            {"centre": "中心", "tickets": "工单", "breached": "超时", "breach_rate": "超时比例", "claimed": "已认领",
             "median_minutes_to_claim": "认领用时中位数（分钟）"},
            [{"centre": r.centre, "tickets": int(r.tickets), "breached": int(r.breached or 0),
              "breach_rate": _share(int(r.breached or 0), int(r.tickets)), "claimed": int(r.claimed),
              "median_minutes_to_claim": round(medians[r.centre] / 60, 1) if r.centre in medians else ""}
             for r in rows])


@dataclass(frozen=True)
class Conversation:
    """One conversation as the analytics page links to it: its facts, turns with their ratings, tickets."""

    session_id: str
    channel: str
    centre: str
    created_at: datetime
    turns: list[dict[str, Any]]
    ticket_ids: list[str]


def conversation(service: AnalyticsService, session_id: str, limit: int = 500) -> Conversation | None:
    """The conversation a row of the page links to, or None when there is none."""
    with service.engine.connect() as conn:
        head = conn.execute(select(conversations).where(conversations.c.session_id == session_id)).first()
        if head is None:
            return None
        rows = conn.execute(
            select(turns.c.id, turns.c.role, turns.c.text, turns.c.reply_type, turns.c.created_at,
                   feedback.c.rating, feedback.c.reason, feedback.c.comment)
            .select_from(turns.outerjoin(feedback, feedback.c.turn_id == turns.c.id))
            .where(turns.c.session_id == session_id).order_by(turns.c.id).limit(limit)).all()
        ticket_ids: list[str] = list(conn.execute(select(tickets.c.ticket_id).where(tickets.c.session_id == session_id)
                                  .order_by(tickets.c.created_at)).scalars())
    return Conversation(
        head.session_id, head.channel, head.centre or "", head.created_at,
        [{"id": r.id, "role": r.role, "text": r.text, "reply_type": r.reply_type, "created_at": r.created_at,
          "rating": r.rating, "reason": service.wording.reason_label(r.reason), "comment": r.comment} for r in rows],
        [str(t) for t in ticket_ids])


def summary(report: dict[str, ReportTable]) -> list[tuple[str, str]]:
    """The page's headline numbers, from its tables."""
    questions = sum(int(r["questions"]) for r in report["questions_per_day"].rows)
    rates = {r["reply_type"]: float(r["rate"]) for r in report["outcomes"].rows}
    votes: Counter[str] = Counter()
    for r in report["feedback"].rows:
        votes[r["rating"]] += int(r["times"])
    handoffs = report["handoffs"].rows
    tickets_opened = sum(int(r["tickets"]) for r in handoffs)
    breached = sum(int(r["breached"]) for r in handoffs)
    ratings = report["handoff_ratings"].rows
    rated = sum(int(r["times"]) for r in ratings)
    mean_rating = sum(int(r["rating"]) * int(r["times"]) for r in ratings) / rated if rated else None
    rated_answers = votes[HELPFUL] + votes[NOT_HELPFUL]
    satisfied = f"（{votes[HELPFUL] / rated_answers:.0%} 满意）" if rated_answers else ""
    return [
        ("提问", str(questions)),
        ("回答率", f"{rates.get('answer', 0.0):.1%}"),
        ("追问率", f"{rates.get('clarify', 0.0):.1%}"),
        ("拒答率", f"{rates.get('refusal', 0.0):.1%}"),
        ("转人工率", f"{rates.get('handoff', 0.0):.1%}"),
        ("有帮助 / 没帮助", f"{votes[HELPFUL]} / {votes[NOT_HELPFUL]}{satisfied}"),
        ("转人工后评分", f"{mean_rating:.2f} / 5（{rated} 次）" if mean_rating is not None else "—"),
        ("工单 / 超时", f"{tickets_opened} / {breached}"),
    ]
