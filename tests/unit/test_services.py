"""The services container on a throwaway SQLite database: listeners are wired once, features talk
through events (a worker's reply reaches the resident, a resolved ticket asks for a rating), and
members are built only when used, so the ticket queue never loads the index or a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.core.events import EventBus
from assistant.core.settings import EscalationSettings, Settings
from assistant.dialogue.replies import Replies
from assistant.escalation.events import TicketClaimed, TicketOpened, TicketResolved, WorkerReplied
from assistant.escalation.service import Actor
from assistant.services import Services

WANG = Actor("wang", "worker", "centre-a", "王社工")


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return Services(Settings(data_dir=tmp_path / "var", escalation=EscalationSettings(centre="centre-a")))


def _open_ticket(services: Services, session_id: str = "web-resident-1"):
    # The resident's conversation exists before the hand-off, as it does when the engine opens a ticket.
    services.conversations.get_or_create(session_id, "web", "resident-1")
    return services.escalation.open_ticket(kind="human_request", priority="normal", session_id=session_id,
                                           channel="web", user_id="resident-1", summary="想找工作人员问问低保")


def test_each_member_is_built_once(services):
    assert services.escalation is services.escalation
    assert services.events is services.events
    assert services.escalation.event_bus is services.events
    assert services.conversations is services.conversations and services.channels is services.channels


def test_the_ticket_queue_does_not_build_the_index_or_a_model(services):
    services.escalation.list(WANG)
    services.users.list()
    built = vars(services)
    assert "escalation" in built and "events" in built
    assert not {"knowledge_base", "classifier", "dialogue", "transcriber", "speech", "applications"} & set(built)


def test_listeners_are_subscribed_once_however_often_members_are_used(services):
    for _ in range(3):
        _ = services.escalation, services.events, services.channels, services.conversations
    assert len(services.events.listeners(WorkerReplied)) == 1
    assert len(services.events.listeners(TicketResolved)) == 1
    assert services.events.listeners(TicketOpened) == [] and services.events.listeners(TicketClaimed) == []


def test_a_worker_reply_reaches_the_residents_channel_and_the_conversation(services):
    ticket = _open_ticket(services)
    services.escalation.claim(ticket.ticket_id, WANG)
    services.escalation.reply(ticket.ticket_id, WANG, "您好，我是王社工，明天上午上门。")
    outbox = services.channels.outbox.pending(ticket.session_id)
    assert [(m["sender"], m["text"], m["ticket_id"]) for m in outbox] == [
        ("王社工", "您好，我是王社工，明天上午上门。", ticket.ticket_id)]
    turns = services.conversations.history(ticket.session_id)
    assert [(t["role"], t["text"]) for t in turns] == [("worker", "您好，我是王社工，明天上午上门。")]
    assert turns[0]["trace"] == {"ticket_id": ticket.ticket_id, "worker": "王社工"}


def test_resolving_a_ticket_asks_the_resident_for_a_rating(services):
    ticket = _open_ticket(services)
    services.escalation.claim(ticket.ticket_id, WANG)
    services.escalation.resolve(ticket.ticket_id, WANG, "已指导在线申请")
    conversation = services.conversations.get_or_create(ticket.session_id, "web", "resident-1")
    pending = conversation.state.pending
    assert pending is not None and pending.kind == "rating" and pending.ticket_id == ticket.ticket_id
    rating_request = Replies.load().say("rating_request", "zh")
    outbox = services.channels.outbox.pending(ticket.session_id)
    assert [(m["sender"], m["text"]) for m in outbox] == [("邻里助手", rating_request)]  # once, not twice
    turns = services.conversations.history(ticket.session_id)
    assert [(t["role"], t["text"]) for t in turns] == [("assistant", rating_request)]


def test_two_containers_on_one_database_do_not_share_listeners(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", escalation=EscalationSettings(centre="centre-a"))
    first, second = Services(settings), Services(settings)
    ticket = _open_ticket(first)
    first.escalation.claim(ticket.ticket_id, WANG)
    first.escalation.resolve(ticket.ticket_id, WANG, "已处理")
    # The second container's bus heard nothing: one rating request in the shared outbox.
    assert len(second.channels.outbox.pending(ticket.session_id)) == 1


def test_prepared_members_are_used_as_they_are(tmp_path):
    prepared_kb, prepared_classifier = object(), object()
    services = Services(Settings(data_dir=tmp_path / "var"), knowledge_base=prepared_kb,  # type: ignore[arg-type]
                        classifier=prepared_classifier)  # type: ignore[arg-type]
    assert services.knowledge_base is prepared_kb and services.classifier is prepared_classifier


# ---- the event bus ------------------------------------------------------------------------------


def test_listeners_run_in_subscription_order_and_only_for_their_event():
    bus, heard = EventBus(), []
    bus.subscribe(TicketResolved, lambda event: heard.append(("first", type(event).__name__)))
    bus.subscribe(TicketResolved, lambda event: heard.append(("second", type(event).__name__)))
    bus.subscribe(TicketOpened, lambda event: heard.append(("opened", type(event).__name__)))
    bus.publish(TicketResolved(ticket=None))  # type: ignore[arg-type]
    assert heard == [("first", "TicketResolved"), ("second", "TicketResolved")]
    bus.publish("an event nobody listens to")  # nothing happens


def test_a_failing_listener_stops_the_others_and_reaches_the_caller():
    bus, heard = EventBus(), []

    def broken(_event: object) -> None:
        raise RuntimeError("channel down")

    bus.subscribe(TicketResolved, broken)
    bus.subscribe(TicketResolved, heard.append)
    with pytest.raises(RuntimeError, match="channel down"):
        bus.publish(TicketResolved(ticket=None))  # type: ignore[arg-type]
    assert heard == []
