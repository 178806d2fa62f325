"""The application outbox on both backends: confirmed applications are filed exactly once,
through a dead backend, competing workers and a worker that dies holding a lease."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import update

from assistant.core.vault import Vault, generate_key
from connectors.services.applications import ApplicationService, Ineligible, InvalidApplication, UnknownApplication
from connectors.services.memory import InMemoryServiceConnector
from connectors.services.procedures import UnknownProcedure
from connectors.services.tables import applications

TODAY = date(2026, 11, 23)
AGED_92 = "650202193401010022"
AGED_65 = "65020219610301001X"
ELDERLY = {"applicant_name": "王秀英", "applicant_id": AGED_92, "mobile": "13812345678",
           "address": "幸福小区3栋502", "applicant_role": "family", "payment_card": "已有社保卡"}


@pytest.fixture
def backend() -> InMemoryServiceConnector:
    return InMemoryServiceConnector()


@pytest.fixture
def told() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def tickets() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def service(databases, vault, database_url, backend, told, tickets, benefit_tables) -> ApplicationService:
    def escalate(application, reason):
        tickets.append((application.application_id, reason))
        return f"T-{len(tickets)}"

    return ApplicationService(databases.engine(database_url), backend, benefit_tables=benefit_tables,
                              notify=lambda a, text: told.append((a.application_id, text)),
                              escalate=escalate, max_attempts=3, retry_base_s=0, vault=vault)


def _confirm(service: ApplicationService, **overrides) -> str:
    data = {**ELDERLY, **overrides.pop("data", {})}
    application = service.confirm("elderly_allowance", data, session_id=overrides.pop("session_id", "s1"),
                                  channel="web", user_id="u1", today=TODAY, **overrides)
    return application.application_id


def test_elderly_allowance_data_needs_a_field_check(service):
    with pytest.raises(InvalidApplication) as caught:
        service.confirm("elderly_allowance", {**ELDERLY, "applicant_id": AGED_92[:-1] + "0", "mobile": "1381234567"},
                        session_id="s", channel="web", user_id="u", today=TODAY)
    fields = {e["field"] for e in caught.value.errors}
    assert fields == {"applicant_id", "mobile"}
    assert all(e["message"] for e in caught.value.errors)
    # Every resident sentence in both languages: the English one has no Chinese in it.
    assert all(e["message_en"] and not re.search(r"[\u4e00-\u9fff]", e["message_en"]) for e in caught.value.errors)
    assert caught.value.message("en") == caught.value.errors[0]["message_en"]


def test_a_65_year_old_is_told_why_not_with_the_source(service):
    with pytest.raises(Ineligible) as caught:
        service.confirm("elderly_allowance", {**ELDERLY, "applicant_id": AGED_65}, session_id="s", channel="web",
                        user_id="u", today=TODAY)
    assert "70" in caught.value.message("zh")
    assert caught.value.citations and caught.value.citations[0]["doc_id"]


def test_confirmed_then_delivered_once_and_followed(service, backend, told):
    application_id = _confirm(service)
    assert service.get(application_id).status == "queued"
    delivered = service.deliver_due("w1")
    assert [a.application_id for a in delivered] == [application_id]
    assert service.deliver_due("w1") == []  # nothing left to deliver
    application = service.get(application_id)
    assert application.status == "submitted" and application.backend_reference.startswith("MEM-")
    backend.decide(application.backend_reference, "approved")
    assert service.refresh() == 1
    assert service.status(application_id)["status"] == "approved"
    assert [s["status"] for s in service.status(application_id)["history"]] == ["queued", "submitted", "approved"]
    assert any("已提交" in text for _, text in told) and any("已通过" in text for _, text in told)
    assert backend.applications == 1


def test_a_resident_who_filed_in_english_is_told_in_english(service, backend, told):
    """Every resident sentence in both languages: an application remembers the language it was
    filed in, and each notice about it (submitted, a new status) is sent in that language."""
    application_id = _confirm(service, language="en", session_id="s-en")
    service.deliver_due("w1", only=application_id)
    backend.decide(service.get(application_id).backend_reference, "approved")
    service.refresh()
    notices = [text for reference, text in told if reference == application_id]
    assert len(notices) == 2 and all("Elderly allowance application" in text for text in notices), notices
    assert not any(re.search(r"[\u4e00-\u9fff]", text) for text in notices), notices
    assert service.get(application_id).language == "en"


def test_an_application_under_another_data_key_never_stops_the_others(databases, vault, service, backend, database_url,
                                                                       benefit_tables, told):
    """A row this process cannot decrypt (a key rotated without PREVIOUS_KEYS) is kept and tried
    again later; the applications after it are still filed and followed."""
    stranger = ApplicationService(service.engine, backend, benefit_tables=benefit_tables, vault=Vault([generate_key()]))
    unreadable = stranger.confirm("elderly_allowance", ELDERLY, session_id="s-key", channel="web", user_id="u",
                                  today=TODAY).application_id
    mine = _confirm(service, session_id="s-mine")
    delivered = {a.application_id for a in service.deliver_due("w1", limit=100)}
    assert mine in delivered and unreadable not in delivered
    assert stranger.get(unreadable).status == "queued" and stranger.get(unreadable).last_error
    backend.decide(service.get(mine).backend_reference, "approved")
    service.refresh()
    assert service.get(mine).status == "approved"


def test_same_key_files_once(service, backend):
    first = _confirm(service, idempotency_key="resident-42:confirm-1")
    second = _confirm(service, idempotency_key="resident-42:confirm-1")
    assert first == second
    service.deliver_due("w1")
    assert backend.applications == 1


def test_backend_down_queues_then_delivers_exactly_once(service, backend):
    backend.down = True
    application_id = _confirm(service)
    assert service.deliver_due("w1") == []
    queued = service.get(application_id)
    assert queued.status == "queued" and queued.attempts == 1 and "连不上" in queued.last_error
    backend.down = False
    assert len(service.deliver_due("w1")) == 1
    assert service.deliver_due("w1") == []
    assert backend.applications == 1 and backend.submissions_received == 1


def test_repeated_failure_hands_the_application_to_a_worker(service, backend, tickets, told):
    backend.down = True
    application_id = _confirm(service)
    for _ in range(3):
        service.deliver_due("w1")
    application = service.get(application_id)
    assert application.status == "needs_worker" and application.ticket_id == "T-1"
    assert tickets[0][0] == application_id and "多次提交失败" in tickets[0][1]
    assert any("工作人员" in text for _, text in told)


def test_workers_racing_on_one_outbox_deliver_each_once(service, backend):
    confirmed = [_confirm(service, session_id=f"s{i}") for i in range(15)]
    barrier = threading.Barrier(5)
    delivered: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        barrier.wait()
        for _ in range(5):
            got = service.deliver_due(name, limit=3)
            with lock:
                delivered.extend(a.application_id for a in got)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"\noutbox race: {len(confirmed)} confirmed / {len(delivered)} delivered / "
          f"{len(delivered) - len(set(delivered))} duplicates; backend holds {backend.applications}")
    assert sorted(delivered) == sorted(confirmed)
    assert backend.applications == len(confirmed) and backend.submissions_received == len(confirmed)


def test_a_dead_worker_lease_expires_and_another_delivers(service, backend):
    application_id = _confirm(service)
    assert service._lease("dead-worker", 10, None) == [application_id]  # leased, then the worker "dies"
    assert service.deliver_due("w2") == []  # the lease protects it for now
    service.lease = timedelta(seconds=0)
    with service.engine.begin() as conn:  # time passes: the dead worker's lease runs out
        conn.execute(update(applications).values(lease_until=applications.c.created_at))
    assert [a.application_id for a in service.deliver_due("w2")] == [application_id]
    assert backend.applications == 1


def test_resident_sees_their_recent_applications(service):
    me, other_client = f"api:crm:{uuid.uuid4().hex[:8]}", f"api:other:{uuid.uuid4().hex[:8]}"
    first = _confirm(service, session_id=f"me-1-{me}", owner=me)
    second = _confirm(service, session_id=f"me-2-{me}", owner=me, data={"applicant_id": AGED_92})
    _confirm(service, session_id=f"them-{other_client}", owner=other_client)
    # Every application of the same owner, in any of their conversations, newest first …
    assert [a.application_id for a in service.for_resident(owner=me, session_id=f"me-2-{me}")] == [second, first]
    # … and never another owner's, though both clients call their user "u1" (issue 28, hole 4).
    assert all(a.owner == me for a in service.for_resident(owner=me, session_id=f"me-1-{me}"))
    # A conversation without an owner (the command line) sees what was filed in it.
    session = f"plain-{uuid.uuid4().hex[:8]}"
    alone = _confirm(service, session_id=session)
    assert [a.application_id for a in service.for_resident(owner=None, session_id=session)] == [alone]


def test_an_idempotency_key_is_its_filers_own(service, backend):
    """Issue 28: a key another resident used must not hand back their application."""
    key, one, two = uuid.uuid4().hex, f"api:crm:{uuid.uuid4().hex[:8]}", f"api:crm:{uuid.uuid4().hex[:8]}"
    mine = _confirm(service, session_id=f"s-{one}", owner=one, idempotency_key=key)
    assert _confirm(service, session_id=f"s-{one}", owner=one, idempotency_key=key) == mine
    theirs = _confirm(service, session_id=f"s-{two}", owner=two, idempotency_key=key)
    assert theirs != mine and service.get(theirs).owner == two


def test_filing_is_limited_per_session_resident_procedure_and_centre(databases, vault, database_url, backend,
                                                                     benefit_tables):
    """Issue 28, hole 1: one page session filed 40 applications in 2.4 s."""
    from assistant.core.settings import LimitSettings  # noqa: PLC0415
    from assistant.security.limits import RateLimiter  # noqa: PLC0415
    from connectors.services.applications import FilingLimits, TooManyApplications  # noqa: PLC0415

    engine = databases.engine(database_url)
    limits = FilingLimits.from_settings(RateLimiter.from_settings(LimitSettings(), engine), LimitSettings(
        applications_per_session_per_hour=2, applications_per_resident_per_day=3,
        applications_per_resident_per_procedure_per_day=3, applications_per_centre_per_day=4))
    service = ApplicationService(engine, backend, benefit_tables=benefit_tables, limits=limits, vault=vault)
    resident, centre = f"page:{uuid.uuid4().hex[:8]}", f"centre-{uuid.uuid4().hex[:8]}"
    session = f"s-{resident}"
    filed = [_confirm(service, session_id=session, owner=resident, centre=centre) for _ in range(2)]
    with pytest.raises(TooManyApplications) as refused:
        _confirm(service, session_id=session, owner=resident, centre=centre)
    assert refused.value.http_status == 429 and "今天暂时不能再提交" in refused.value.message("zh")
    assert refused.value.details["retry_after"] == 3600
    # A retry of one already filed (its idempotency key) is the same application: not counted.
    keyed = _confirm(service, session_id=f"{session}-2", owner=resident, centre=centre, idempotency_key="k1")
    assert _confirm(service, session_id=f"{session}-2", owner=resident, centre=centre, idempotency_key="k1") == keyed
    # The resident's daily limit holds across their sessions.
    with pytest.raises(TooManyApplications):
        _confirm(service, session_id=f"{session}-3", owner=resident, centre=centre)
    # The centre's daily cap holds across residents.
    others = [f"page:{uuid.uuid4().hex[:8]}" for _ in range(3)]
    _confirm(service, session_id=f"s-{others[0]}", owner=others[0], centre=centre)
    with pytest.raises(TooManyApplications) as capped:
        _confirm(service, session_id=f"s-{others[1]}", owner=others[1], centre=centre)
    assert "本社区服务中心" in capped.value.message("zh")
    assert len(filed) == 2 and backend.applications == 0  # nothing delivered in this test: all stay queued


def test_unknown_procedure_and_reference(service):
    with pytest.raises(UnknownProcedure):
        service.confirm("parking_permit", ELDERLY, session_id="s", channel="web", user_id="u", today=TODAY)
    with pytest.raises(UnknownApplication):
        service.status(f"SQ-{uuid.uuid4().hex[:6]}")
