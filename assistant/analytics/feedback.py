"""Residents' 👍 / 👎 on Linli's answers, stored with the turn they rate (table `feedback`).

The kiosk and the phone chat rate a turn by its id (`POST /api/v1/turns/{id}/feedback`, the
conversation's own credential only); WeChat rates the answer just sent when the resident replies
with only a keyword ("满意" / "不满意", feedback.yaml). Rating a turn again replaces the rating.
Free text is cut to a limit and its ID and phone numbers masked, like every stored turn. Each
stored rating publishes `FeedbackGiven`."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from assistant.analytics.tables import feedback
from assistant.core.clock import utcnow
from assistant.core.errors import LinliError
from assistant.core.events import EventBus, FeedbackGiven
from assistant.core.privacy import mask_pii
from assistant.core.settings import AnalyticsSettings
from assistant.core.wording import LANGUAGES, InvalidWording, check_sentences, sentences
from assistant.dialogue.store import conversations, turns

FEEDBACK_FILE = Path(__file__).resolve().parent / "feedback.yaml"
RATINGS: dict[str, int] = {"up": 1, "down": -1}
# Turns a WeChat keyword never rates: what a worker wrote, and Linli's own thanks for a rating.
FEEDBACK_ACK = "feedback_ack"


class InvalidFeedback(LinliError):
    code = "invalid_feedback"
    http_status = 422


class UnknownTurn(LinliError):
    code = "unknown_turn"
    http_status = 404


@dataclass(frozen=True)
class FeedbackWording:
    """feedback.yaml, checked: the sentences (id -> zh/en), the reason ids in order, and the
    WeChat keywords (normalised) with the rating each one gives."""

    sentences: dict[str, dict[str, str]]
    reasons: tuple[str, ...]
    keywords: dict[str, int]

    @classmethod
    def load(cls, path: Path = FEEDBACK_FILE) -> FeedbackWording:
        import yaml  # noqa: PLC0415 - only here

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        keywords = data.pop("keywords", None) if isinstance(data, dict) else None
        check_sentences(data, path.name)
        flat = {key: {lang: entry[lang] for lang in LANGUAGES} for key, entry in sentences(data)}
        reasons = tuple(key.removeprefix("reasons.") for key in flat if key.startswith("reasons."))
        if not isinstance(keywords, dict) or set(keywords) != set(RATINGS):
            raise InvalidWording(f"{path.name} 的 keywords 要有 up 和 down",
                                 f"{path.name}: keywords needs up and down lists")
        by_word = {normalise_reply(str(word)): RATINGS[rating] for rating, words in keywords.items() for word in words}
        missing = [key for key in REQUIRED if key not in flat]
        if missing or not reasons or "" in by_word:
            raise InvalidWording(f"{path.name} 缺少：{'、'.join(missing) or 'reasons/keywords'}",
                                 f"{path.name} lacks {', '.join(missing) or 'reasons/keywords'}")
        return cls(flat, reasons, by_word)

    def say(self, key: str, language: str, **values: object) -> str:
        return self.sentences[key]["en" if language == "en" else "zh"].format(**values)

    def reason_label(self, reason: str | None, language: str = "zh") -> str:
        if not reason:
            return ""
        entry = self.sentences.get(f"reasons.{reason}")
        return entry["en" if language == "en" else "zh"] if entry else reason

    def for_page(self, language: str) -> dict[str, Any]:
        """What the kiosk and the phone chat show: the buttons' words and the reasons."""
        lang = "en" if language == "en" else "zh"
        return {"text": {key.removeprefix("page."): entry[lang] for key, entry in self.sentences.items()
                         if key.startswith("page.")},
                "reasons": [{"id": r, "label": self.sentences[f"reasons.{r}"][lang]} for r in self.reasons]}


REQUIRED = ("page.prompt", "page.helpful", "page.not_helpful", "page.thanks", "wechat.hint", "wechat.thanks_up",
            "wechat.thanks_down", "errors.bad_rating", "errors.unknown_reason", "errors.comment_too_long",
            "errors.unknown_turn", "errors.not_an_answer")
_NOT_WORDS = re.compile(r"[\s\W_]+", re.UNICODE)


def normalise_reply(text: str) -> str:
    """A short reply as a keyword: width-folded, lower case, without spaces and punctuation
    ("满意！" and " 满意。" are "满意"); an emoji on its own is kept."""
    folded = unicodedata.normalize("NFKC", text).strip().lower()
    words = _NOT_WORDS.sub("", folded)
    return words or folded


@dataclass(frozen=True)
class StoredFeedback:
    turn_id: int
    session_id: str
    rating: int
    reason: str | None
    comment: str | None
    replaced: bool

    def public(self) -> dict[str, Any]:
        return {"turn_id": self.turn_id, "rating": "up" if self.rating > 0 else "down", "reason": self.reason,
                "comment": self.comment, "replaced": self.replaced}


# The reply types a resident may rate: what Linli said in answer to them.
RATEABLE_REPLY_TYPES = ("answer", "refusal", "clarify", "smalltalk", "handoff", "form", "emergency")
# The ones a WeChat keyword rates (a "满意" after a form prompt is an answer to the form).
KEYWORD_REPLY_TYPES = ("answer", "refusal")


class FeedbackService:
    def __init__(self, engine: Engine, settings: AnalyticsSettings, events: EventBus | None = None,
                 wording: FeedbackWording | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.events = events
        self.wording = wording or FeedbackWording.load()

    def session_of(self, turn_id: int) -> str:
        """The conversation a turn belongs to (its owner may rate it). Whether the turn is an
        answer is told only after the owner check (`rate`): to anyone else, a turn of another
        conversation and no turn at all look the same."""
        return str(self._turn(turn_id).session_id)

    def unknown_turn(self) -> UnknownTurn:
        return UnknownTurn(*self._both("errors.unknown_turn"))

    def _turn(self, turn_id: int) -> Row[Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(turns.c.session_id, turns.c.role, turns.c.reply_type)
                               .where(turns.c.id == turn_id)).first()
        if row is None:
            raise self.unknown_turn()
        return row

    def _check_rateable(self, turn_id: int) -> str:
        row = self._turn(turn_id)
        if row.role != "assistant" or row.reply_type not in RATEABLE_REPLY_TYPES:
            raise InvalidFeedback(*self._both("errors.not_an_answer"))
        return str(row.session_id)

    def rate(self, turn_id: int, rating: str, reason: str | None = None, comment: str | None = None) -> StoredFeedback:
        """Stores (or replaces) the rating of one assistant turn. Who may rate it is the
        caller's check (`session_of`, then the residents' owner check)."""
        value = RATINGS.get((rating or "").strip().lower())
        if value is None:
            raise InvalidFeedback(*self._both("errors.bad_rating"))
        reason = (reason or "").strip() or None
        if reason is not None and reason not in self.wording.reasons:
            raise InvalidFeedback(*self._both("errors.unknown_reason"))
        comment = (comment or "").strip() or None
        limit = self.settings.feedback_comment_max_chars
        if comment is not None and len(comment) > limit:
            raise InvalidFeedback(*self._both("errors.comment_too_long", limit=limit, length=len(comment)))
        session_id = self._check_rateable(turn_id)
        comment = mask_pii(comment) if comment else None
        with self.engine.begin() as conn:
            channel = conn.execute(select(conversations.c.channel)
                                   .where(conversations.c.session_id == session_id)).scalar() or "web"
        replaced = self._upsert(turn_id, session_id, str(channel), value, reason, comment)
        stored = StoredFeedback(turn_id, session_id, value, reason, comment, replaced)
        if self.events is not None:
            self.events.publish(FeedbackGiven(turn_id, session_id, str(channel), value, reason, replaced))
        return stored

    def _upsert(self, turn_id: int, session_id: str, channel: str, rating: int, reason: str | None,
                comment: str | None) -> bool:
        """Replaces the turn's rating, or adds it; True when one was replaced. Two ratings of one
        turn at once: the unique turn_id makes the loser's INSERT fail, and it updates instead."""
        now = utcnow()
        values = {"rating": rating, "reason": reason, "comment": comment, "updated_at": now}
        for _ in range(2):
            with self.engine.begin() as conn:
                if self._update(conn, turn_id, values):
                    return True
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(feedback).values(turn_id=turn_id, session_id=session_id, channel=channel,
                                                         created_at=now, **values))
                return False
            except IntegrityError:
                continue
        raise InvalidFeedback(*self._both("errors.unknown_turn"))

    @staticmethod
    def _update(conn: Connection, turn_id: int, values: dict[str, Any]) -> bool:
        return conn.execute(update(feedback).where(feedback.c.turn_id == turn_id).values(**values)).rowcount == 1

    def rating_of(self, turn_id: int) -> StoredFeedback | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(feedback).where(feedback.c.turn_id == turn_id)).first()
        if row is None:
            return None
        return StoredFeedback(row.turn_id, row.session_id, row.rating, row.reason, row.comment, False)

    # ---- WeChat: a keyword rates the answer just sent ----------------------------------------

    def keyword_rating(self, text: str) -> Literal["up", "down"] | None:
        value = self.wording.keywords.get(normalise_reply(text)) if len(text) <= 40 else None
        return None if value is None else ("up" if value > 0 else "down")

    def answer_to_rate(self, session_id: str) -> int | None:
        """The id of Linli's last answer in the conversation, when nothing but the resident's own
        earlier keyword replies came after it and it is recent enough to be what they mean."""
        since = utcnow() - timedelta(minutes=self.settings.wechat_feedback_window_minutes)
        with self.engine.connect() as conn:
            rows = conn.execute(select(turns.c.id, turns.c.role, turns.c.reply_type, turns.c.trace,
                                       turns.c.created_at)
                                .where(turns.c.session_id == session_id).order_by(turns.c.id.desc()).limit(8)).all()
        for row in rows:
            if row.role == "resident" or (row.trace or {}).get(FEEDBACK_ACK):
                continue
            if row.role == "assistant" and row.reply_type in KEYWORD_REPLY_TYPES and row.created_at >= since:
                return int(row.id)
            return None
        return None

    def _both(self, key: str, **values: object) -> tuple[str, str]:
        return self.wording.say(key, "zh", **values), self.wording.say(key, "en", **values)
