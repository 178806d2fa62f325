"""The escalation queue on both backends: tickets, the state machine and its audit log,
race-free claims, SLA breaches, centre isolation, hold and hand-back."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from assistant.core.clock import utcnow
from assistant.core.errors import ClaimConflict, Forbidden, UnknownTicket
from assistant.core.events import EventBus
from assistant.core.settings import EscalationSettings
from assistant.escalation.base import InMemoryEscalationService
from assistant.escalation.events import TicketClaimed, TicketOpened, TicketResolved, WorkerReplied
from assistant.escalation.service import SYSTEM, Actor, SqlEscalationService, due_at
from assistant.escalation.states import IllegalTransition

WANG = Actor("wang", "worker", "centre-a", "王社工")
LI = Actor("li", "worker", "centre-a", "李社工")
ZHAO = Actor("zhao", "worker", "centre-b", "赵社工")
BOSS = Actor("boss", "supervisor", "centre-a", "主管")


def _open(service, **overrides):
    values = dict(kind="human_request", priority="normal", session_id=f"s-{uuid.uuid4().hex[:8]}", channel="web",
                  user_id="u1", summary="想找工作人员问问低保", centre="centre-a")
    values.update(overrides)
    return service.open_ticket(**values)


@pytest.fixture
def events() -> EventBus:
    return EventBus()


@pytest.fixture
def delivered(events: EventBus) -> list[tuple[str, str, str]]:
    """What a worker said to residents, as the channels' listener hears it."""
    said: list[tuple[str, str, str]] = []
    events.subscribe(WorkerReplied, lambda event: said.append((event.ticket.ticket_id, event.sender, event.text)))
    return said


@pytest.fixture
def published(events: EventBus) -> list[object]:
    """Every ticket event, in order."""
    seen: list[object] = []
    for event_type in (TicketOpened, TicketClaimed, WorkerReplied, TicketResolved):
        events.subscribe(event_type, seen.append)
    return seen


@pytest.fixture
def desk(databases, vault, database_url, events) -> SqlEscalationService:
    return SqlEscalationService(databases.engine(database_url), vault, EscalationSettings(centre="centre-a"),
                                events=events)


@pytest.fixture(params=["memory", "sql"])
def any_service(databases, vault, request, database_url, events):
    """Every implementation of the EscalationService seam the dialogue engine uses."""
    if request.param == "memory":
        return InMemoryEscalationService(centre="centre-a", events=events)
    return SqlEscalationService(databases.engine(database_url), vault, EscalationSettings(centre="centre-a"),
                                events=events)


def test_seam_open_get_idempotent_and_held(any_service):
    key = f"web:s1:{uuid.uuid4().hex}"
    first = _open(any_service, idempotency_key=key, form_data={"phone": "13812345678"})
    again = _open(any_service, idempotency_key=key)
    assert again.ticket_id == first.ticket_id
    fetched = any_service.get(first.ticket_id)
    assert fetched.kind == "human_request" and fetched.status == "pending"
    assert fetched.form_data["phone"] == "13812345678"
    assert any_service.get("T-does-not-exist") is None
    assert any_service.held_ticket(first.session_id) is None


def test_seam_publishes_an_opened_ticket_once(any_service, published):
    key = f"web:s1:{uuid.uuid4().hex}"
    first = _open(any_service, idempotency_key=key)
    _open(any_service, idempotency_key=key)  # a retried message: the same ticket, no second event
    assert [type(e) for e in published] == [TicketOpened]
    assert published[0].ticket.ticket_id == first.ticket_id and published[0].ticket.status == "pending"


def test_in_memory_queue_publishes_claim_and_resolve(events, published):
    service = InMemoryEscalationService(events=events)
    ticket = _open(service)
    service.claim(ticket.ticket_id, "wang")
    service.resolve(ticket.ticket_id)
    assert [type(e) for e in published] == [TicketOpened, TicketClaimed, TicketResolved]
    assert published[1].worker == "wang" and published[2].ticket.status == "resolved"


def test_every_change_a_listener_cares_about_is_published_after_it_is_recorded(desk, events, published):
    ticket = _open(desk)
    seen_status: list[str] = []
    # A listener reads the queue back: the change it hears about must already be committed.
    events.subscribe(TicketResolved, lambda event: seen_status.append(desk.get(event.ticket.ticket_id).status))
    desk.claim(ticket.ticket_id, WANG)
    with pytest.raises(ClaimConflict):
        desk.claim(ticket.ticket_id, LI)  # a lost claim publishes nothing
    desk.reply(ticket.ticket_id, WANG, "您好，我是王社工。")
    desk.ask_resident(ticket.ticket_id, WANG, "您家几口人？")
    desk.record_resident_message(ticket.ticket_id, "两口人")
    desk.resolve(ticket.ticket_id, WANG, "已指导在线申请")
    assert [type(e).__name__ for e in published] == ["TicketOpened", "TicketClaimed", "WorkerReplied",
                                                     "WorkerReplied", "TicketResolved"]
    claimed, replied, asked, resolved = published[1:]
    assert claimed.worker == "wang" and claimed.ticket.assignee == "wang"
    assert (replied.sender, replied.text) == ("王社工", "您好，我是王社工。")
    assert asked.ticket.status == "waiting_resident"
    assert resolved.ticket.status == "resolved" and resolved.ticket.outcome == "已指导在线申请"
    assert seen_status == ["resolved"]
    other = _open(desk, priority="urgent")
    assert desk.claim_next(WANG).ticket_id == other.ticket_id
    assert type(published[-1]) is TicketClaimed and published[-1].ticket.ticket_id == other.ticket_id


def test_ticket_records_what_the_queue_needs(desk):
    ticket = _open(desk, kind="dispute", priority="high", form_data={"phone": "13812345678", "address": "3栋"})
    stored = desk.get(ticket.ticket_id)
    # The contact number is stored masked; the full one is in the (encrypted) form data.
    assert stored.centre == "centre-a" and stored.contact == "138****5678" and stored.priority == "high"
    assert stored.due_at == stored.created_at + timedelta(minutes=120)
    events = desk.events(ticket.ticket_id)
    assert events[0]["action"] == "create" and events[0]["to_status"] == "pending"


def test_full_lifecycle_with_audit_log(desk, delivered):
    ticket = _open(desk)
    desk.claim(ticket.ticket_id, WANG)
    assert desk.held_ticket(ticket.session_id).assignee == "wang"
    desk.reply(ticket.ticket_id, WANG, "您好，我是王社工。")
    desk.ask_resident(ticket.ticket_id, WANG, "您家几口人？")
    assert desk.get(ticket.ticket_id).status == "waiting_resident"
    desk.record_resident_message(ticket.ticket_id, "两口人")
    assert desk.get(ticket.ticket_id).status == "claimed"
    desk.add_note(ticket.ticket_id, WANG, "符合条件，材料齐")
    desk.resolve(ticket.ticket_id, WANG, "已指导在线申请")
    desk.record_rating(ticket.ticket_id, 5)
    final = desk.get(ticket.ticket_id)
    assert final.status == "closed" and final.rating == 5 and final.outcome == "已指导在线申请"
    history = [(e["actor"], e["action"], e["from_status"], e["to_status"]) for e in desk.events(ticket.ticket_id)]
    assert history == [
        ("resident", "create", None, "pending"),
        ("wang", "claim", "pending", "claimed"),
        ("wang", "reply", "claimed", "claimed"),
        ("wang", "ask_resident", "claimed", "waiting_resident"),
        ("resident", "resident_message", "waiting_resident", "claimed"),
        ("wang", "note", "claimed", "claimed"),
        ("wang", "resolve", "claimed", "resolved"),
        ("resident", "rate", "resolved", "closed"),
    ]
    assert all(e["created_at"] for e in desk.events(ticket.ticket_id))
    assert [text for _, sender, text in delivered] == ["您好，我是王社工。", "您家几口人？"]


@pytest.mark.parametrize(("setup", "action"), [
    ([], lambda d, t: d.resolve(t, WANG, "x")),
    ([], lambda d, t: d.reply(t, WANG, "x")),
    (["claim", "resolve"], lambda d, t: d.claim(t, WANG)),
    (["claim", "resolve"], lambda d, t: d.ask_resident(t, WANG, "x")),
    (["claim"], lambda d, t: d.reopen(t, WANG, "x")),
    (["claim"], lambda d, t: d.close(t, BOSS)),
])
def test_illegal_transitions_are_rejected_and_change_nothing(desk, setup, action):
    ticket = _open(desk)
    for step in setup:
        if step == "claim":
            desk.claim(ticket.ticket_id, WANG)
        else:
            desk.resolve(ticket.ticket_id, WANG, "done")
    before = desk.get(ticket.ticket_id)
    events_before = len(desk.events(ticket.ticket_id))
    with pytest.raises((IllegalTransition, Forbidden)):
        action(desk, ticket.ticket_id)
    assert desk.get(ticket.ticket_id).status == before.status
    assert len(desk.events(ticket.ticket_id)) == events_before


def test_second_claim_is_a_conflict_and_only_the_holder_acts(desk):
    ticket = _open(desk)
    desk.claim(ticket.ticket_id, WANG)
    with pytest.raises(ClaimConflict):
        desk.claim(ticket.ticket_id, LI)
    with pytest.raises(Forbidden):
        desk.reply(ticket.ticket_id, LI, "我来回复")
    desk.reply(ticket.ticket_id, BOSS, "主管可以代为回复")  # supervisors may step in


def test_transfer_to_a_colleague_and_to_another_centre(desk):
    ticket = _open(desk)
    desk.claim(ticket.ticket_id, WANG)
    moved = desk.transfer(ticket.ticket_id, WANG, to_worker="li", reason="李社工熟悉低保")
    assert moved.status == "transferred" and moved.assignee == "li"
    desk.claim(ticket.ticket_id, LI)
    away = desk.transfer(ticket.ticket_id, LI, to_centre="centre-b", reason="居民住在B社区")
    assert away.centre == "centre-b"
    with pytest.raises(UnknownTicket):
        desk.view(ticket.ticket_id, WANG)
    assert desk.claim(ticket.ticket_id, ZHAO).assignee == "zhao"


def test_reopen_after_resolve(desk):
    ticket = _open(desk)
    desk.claim(ticket.ticket_id, WANG)
    desk.resolve(ticket.ticket_id, WANG, "已回复")
    reopened = desk.reopen(ticket.ticket_id, WANG, "居民说问题还在")
    assert reopened.status == "reopened" and reopened.assignee is None
    assert desk.claim(ticket.ticket_id, LI).status == "claimed"


def test_workers_see_only_their_centre(desk):
    mine = _open(desk, centre="centre-a")
    theirs = _open(desk, centre="centre-b")
    visible = {t.ticket_id for t in desk.list(WANG)}
    assert mine.ticket_id in visible and theirs.ticket_id not in visible
    for act in (lambda: desk.view(theirs.ticket_id, WANG), lambda: desk.claim(theirs.ticket_id, WANG),
                lambda: desk.add_note(theirs.ticket_id, WANG, "x")):
        with pytest.raises(UnknownTicket):
            act()
    assert theirs.ticket_id in {t.ticket_id for t in desk.list(BOSS)}


def test_sla_due_times_and_breach_escalation(desk):
    settings = EscalationSettings()
    monday_9 = utcnow().replace(year=2026, month=11, day=23, hour=9, minute=0, second=0, microsecond=0)
    friday_9 = monday_9 + timedelta(days=4)
    assert due_at("urgent", monday_9, settings) == monday_9 + timedelta(minutes=5)
    assert due_at("high", monday_9, settings) == monday_9 + timedelta(hours=2)
    assert due_at("normal", monday_9, settings) == monday_9 + timedelta(days=1)
    assert due_at("normal", friday_9, settings) == friday_9 + timedelta(days=3)  # over the weekend

    urgent = _open(desk, kind="emergency", priority="urgent")
    normal = _open(desk)
    claimed = _open(desk, kind="emergency", priority="urgent")
    desk.claim(claimed.ticket_id, WANG)
    flagged = desk.sweep_breaches(now=utcnow() + timedelta(minutes=6))
    assert urgent.ticket_id in flagged and normal.ticket_id not in flagged and claimed.ticket_id not in flagged
    late = desk.get(urgent.ticket_id)
    assert late.breached and late.escalated_to == "supervisor"
    assert desk.events(urgent.ticket_id)[-1]["action"] == "sla_breach"
    assert urgent.ticket_id not in desk.sweep_breaches(now=utcnow() + timedelta(minutes=7))  # flagged once


def test_concurrent_claims_grant_each_ticket_once(desk):
    tickets = [_open(desk).ticket_id for _ in range(10)]
    workers = [Actor(f"w{i}", "worker", "centre-a") for i in range(8)]
    granted: list[tuple[str, str]] = []
    conflicts = 0
    lock = threading.Lock()
    barrier = threading.Barrier(len(workers))

    def work(actor: Actor) -> None:
        nonlocal conflicts
        barrier.wait()
        for ticket_id in tickets:
            try:
                desk.claim(ticket_id, actor)
                with lock:
                    granted.append((ticket_id, actor.username))
            except ClaimConflict:
                with lock:
                    conflicts += 1

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(t for t, _ in granted) == sorted(tickets)  # every ticket granted exactly once
    assert conflicts == len(tickets) * len(workers) - len(tickets)
    for ticket_id, worker in granted:
        assert desk.get(ticket_id).assignee == worker
        assert [e["action"] for e in desk.events(ticket_id)].count("claim") == 1


def test_concurrent_claim_next_hands_out_distinct_tickets(desk):
    centre = f"centre-{uuid.uuid4().hex[:6]}"
    tickets = {_open(desk, centre=centre).ticket_id for _ in range(12)}
    workers = [Actor(f"n{i}", "worker", centre) for i in range(6)]
    taken: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(workers))

    def work(actor: Actor) -> None:
        barrier.wait()
        while True:
            ticket = desk.claim_next(actor)
            if ticket is None:
                return
            with lock:
                taken.append(ticket.ticket_id)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(tickets)


def test_claim_next_takes_the_most_urgent_first(desk):
    centre = f"centre-{uuid.uuid4().hex[:6]}"
    _open(desk, centre=centre)
    urgent = _open(desk, centre=centre, kind="emergency", priority="urgent")
    assert desk.claim_next(Actor("x", "worker", centre)).ticket_id == urgent.ticket_id


def test_rating_must_be_one_to_five(desk):
    ticket = _open(desk)
    desk.claim(ticket.ticket_id, WANG)
    desk.resolve(ticket.ticket_id, WANG, "ok")
    with pytest.raises(Exception, match="1到5"):
        desk.record_rating(ticket.ticket_id, 7)


def test_system_actor_sees_everything(desk):
    ticket = _open(desk, centre="centre-z")
    assert desk.view(ticket.ticket_id, SYSTEM).centre == "centre-z"
