"""The typed record of one conversation, kept between messages (Rasa's tracker, in small):
at most one active flow (a form being filled), at most one pending question (what Linli just
asked and the next message may answer), and the topic that follow-ups ("那80岁呢？") refer to.

A pending question lives for exactly one resident message: the engine hands every handler a
copy of the state with `pending` cleared, so a question that is not answered right away is
dropped rather than answered by surprise three messages later."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FlowKind = Literal["dispute", "procedure"]
PendingKind = Literal["safety_check", "offered_human", "rating", "heard_meant", "rejected_application"]


class ActiveForm(BaseModel):
    """A form being filled: the dispute intake or a procedure's filing."""

    model_config = ConfigDict(extra="forbid")

    kind: FlowKind
    form_id: str
    values: dict[str, Any] = Field(default_factory=dict)
    confirming: bool = False
    # What the resident first said (the dispute intake keeps it for the worker).
    opening: str | None = None
    # Makes a re-sent "确认" file one application, not two.
    submission_key: str | None = None


class PendingQuestion(BaseModel):
    """What Linli just asked; only the next message can answer it."""

    model_config = ConfigDict(extra="forbid")

    kind: PendingKind
    ticket_id: str | None = None  # rating: the resolved ticket being rated
    meant: str | None = None  # heard_meant: what speech probably heard ("我今年86岁")
    reference: str | None = None  # rejected_application: the application a "我不服" disputes
    question: str | None = None  # offered_human: the question Linli could not answer


class Topic(BaseModel):
    """The last question Linli answered, for follow-ups."""

    model_config = ConfigDict(extra="forbid")

    question: str
    title: str | None = None


class ConversationState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flow: ActiveForm | None = None
    pending: PendingQuestion | None = None
    topic: Topic | None = None
    # The resident's last question, answered or not: asking it again means the reply did not help.
    last_question: str | None = None
    # The last ticket opened for this conversation.
    handoff_ticket: str | None = None

    def filing(self) -> ActiveForm | None:
        return self.flow if self.flow is not None and self.flow.kind == "procedure" else None

    def pending_of(self, kind: PendingKind) -> PendingQuestion | None:
        return self.pending if self.pending is not None and self.pending.kind == kind else None



def state_changes(before: ConversationState, after: ConversationState) -> list[dict[str, Any]]:
    """What one turn changed in the conversation's record, as events a person can read (in the
    manner of Rasa's tracker events): each a dotted path with its value before and after, e.g.
    ``{"path": "flow.values.applicant_name", "from": None, "to": "王秀英"}``. Kept in the turn's
    trace (masked like it), so a conversation can be replayed: `linli conversation show`."""
    old, new = _flatten(before.model_dump(exclude_none=True)), _flatten(after.model_dump(exclude_none=True))
    return [{"path": path, "from": old.get(path), "to": new.get(path)}
            for path in sorted(old.keys() | new.keys(), key=_path_order) if old.get(path) != new.get(path)]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):  # an empty one ({} values of a form just started) is no change
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _path_order(path: str) -> tuple[int, str]:
    # The record's own order (flow, pending, topic, ...), then alphabetical within each part.
    head = path.split(".", 1)[0]
    fields = list(ConversationState.model_fields)
    return (fields.index(head) if head in fields else len(fields), path)
