"""Personal data at rest, on SQLite and PostgreSQL: what the stores write holds no raw ID or phone
number (masked text, encrypted form data), what they read back is whole, only the worker
handling a ticket in its centre sees the full values (and that is audited), and migration 0008
converts the rows of earlier releases."""

from __future__ import annotations

import json
import os
import stat
import uuid
from datetime import date, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from assistant.core.db import MIGRATIONS_DIR, metadata
from assistant.core.errors import Forbidden
from assistant.core.settings import EscalationSettings, get_settings
from assistant.core.vault import PREFIX, Vault, generate_key
from assistant.dialogue.state import ActiveForm, ConversationState, state_changes
from assistant.dialogue.store import ConversationStore, conversations, turns
from assistant.escalation.service import Actor, SqlEscalationService
from assistant.escalation.tables import ticket_events, tickets
from connectors.services.applications import ApplicationService
from connectors.services.memory import InMemoryServiceConnector
from connectors.services.tables import application_events, applications

ID = "650202198512010036"
PHONE = "13812345678"
RAW = (ID, PHONE, "138 1234 5678")
WANG = Actor("wang", "worker", "centre-a", "王社工")
LI = Actor("li", "worker", "centre-a", "李社工")
ZHAO = Actor("zhao", "worker", "centre-b", "赵社工")
BOSS = Actor("boss", "supervisor", "centre-a", "主管")


def raw_text_of_every_table(engine: Engine) -> str:
    """Every row of every table as text, the way someone holding the database file reads it."""
    dumped = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).all():
                dumped.append(json.dumps([str(v) for v in row], ensure_ascii=False))
    return "\n".join(dumped)


@pytest.fixture
def vault() -> Vault:
    return Vault([generate_key()])


def test_turns_and_state_hold_no_raw_numbers(databases, database_url, vault):
    store = ConversationStore(databases.engine(database_url), vault=vault)
    session = f"s-{uuid.uuid4().hex[:8]}"
    conversation = store.get_or_create(session, "web", "u1")
    store.add_turn(session, "resident", f"我的身份证{ID}，电话138 1234 5678")
    filled = ConversationState(
        flow=ActiveForm(kind="procedure", form_id="elderly_allowance",
                        values={"applicant_id": ID, "phone": PHONE, "applicant_name": "王秀英"}),
        last_question=f"我电话{PHONE}能办吗")
    # A turn's record of what it changed (replay) names the form's values: masked like the rest.
    store.add_turn(session, "assistant", f"您的电话是{PHONE}吗？",
                   trace={"heard": PHONE, "changes": state_changes(ConversationState(), filled)})
    conversation.state = filled
    store.save(conversation)
    dumped = raw_text_of_every_table(databases.engine(database_url))
    assert not any(value in dumped for value in RAW)
    with databases.engine(database_url).connect() as conn:
        state = conn.execute(select(conversations.c.state).where(conversations.c.session_id == session)).scalar_one()
        texts = conn.execute(select(turns.c.text).where(turns.c.session_id == session).order_by(turns.c.id)).scalars()
        assert list(texts) == ["我的身份证650202********0036，电话138 **** 5678", "您的电话是138****5678吗？"]
    assert state["flow"]["values"]["phone"].startswith(PREFIX) and state["flow"]["values"]["applicant_name"] == "王秀英"
    again = store.get_or_create(session, "web", "u1")
    assert again.state.flow is not None and again.state.flow.values["applicant_id"] == ID
    assert again.state.last_question == f"我电话{PHONE}能办吗"
    # Another key cannot open the state: the conversation starts afresh rather than failing.
    assert ConversationStore(databases.engine(database_url), vault=Vault([generate_key()])).get_or_create(
        session, "web", "u1").state == ConversationState()


def test_tickets_encrypt_form_data_and_mask_text(databases, database_url, vault):
    desk = SqlEscalationService(databases.engine(database_url), vault, EscalationSettings(centre="centre-a"))
    ticket = desk.open_ticket(kind="dispute", priority="high", session_id=f"s-{uuid.uuid4().hex[:8]}",
                              channel="web", user_id="u1", summary=f"邻里纠纷：我电话{PHONE}",
                              form_data={"phone": PHONE, "applicant_id": ID, "address": "幸福小区3栋502"})
    desk.claim(ticket.ticket_id, WANG)
    desk.reply(ticket.ticket_id, WANG, f"我会打您电话{PHONE}")
    desk.add_note(ticket.ticket_id, WANG, f"身份证{ID}已核对")
    dumped = raw_text_of_every_table(databases.engine(database_url))
    assert not any(value in dumped for value in RAW)
    with databases.engine(database_url).connect() as conn:
        row = conn.execute(select(tickets).where(tickets.c.ticket_id == ticket.ticket_id)).one()
        events = conn.execute(select(ticket_events.c.text).where(ticket_events.c.ticket_id == ticket.ticket_id)
                              .order_by(ticket_events.c.id)).scalars().all()
    assert row.form_data["phone"].startswith(PREFIX) and row.form_data["address"] == "幸福小区3栋502"
    assert row.summary == "邻里纠纷：我电话138****5678" and row.contact == "138****5678"
    assert "我会打您电话138****5678" in events and "身份证650202********0036已核对" in events
    # The service's callers get whole values; what it shows people is masked.
    assert desk.get(ticket.ticket_id).form_data["applicant_id"] == ID
    public = desk.view(ticket.ticket_id, LI).public()
    assert public["form_data"]["phone"] == "138****5678" and public["form_data"]["applicant_id"] == "650202********0036"


def test_only_the_handling_worker_of_the_centre_sees_full_values_and_it_is_audited(databases, database_url, vault):
    desk = SqlEscalationService(databases.engine(database_url), vault, EscalationSettings(centre="centre-a"))
    ticket = desk.open_ticket(kind="dispute", priority="normal", session_id=f"s-{uuid.uuid4().hex[:8]}",
                              channel="web", user_id="u1", summary="楼上漏水", form_data={"phone": PHONE})
    with pytest.raises(Forbidden):
        desk.reveal(ticket.ticket_id, WANG)  # not claimed yet
    desk.claim(ticket.ticket_id, WANG)
    for other in (LI, BOSS):  # another worker of the centre, a supervisor: masked only
        with pytest.raises(Forbidden):
            desk.reveal(ticket.ticket_id, other)
    with pytest.raises(Exception, match="找不到"):
        desk.reveal(ticket.ticket_id, ZHAO)  # another centre's ticket does not even exist for them
    revealed = desk.reveal(ticket.ticket_id, WANG)
    assert revealed["form_data"] == {"phone": PHONE} and revealed["contact"] == PHONE
    reveals = [e for e in desk.events(ticket.ticket_id) if e["action"] == "reveal"]
    assert [(e["actor"], e["text"]) for e in reveals] == [("wang", "查看了完整个人信息")]
    # Moved to another centre (the assignee stays until someone there claims it): no longer theirs.
    desk.transfer(ticket.ticket_id, WANG, to_centre="centre-b", to_worker="wang")
    with pytest.raises(Exception):  # noqa: B017 - Forbidden or UnknownTicket, both refuse
        desk.reveal(ticket.ticket_id, WANG)


class RecordingConnector(InMemoryServiceConnector):
    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[dict] = []

    def submit(self, procedure, data, idempotency_key):
        self.submitted.append(dict(data))
        return super().submit(procedure, data, idempotency_key)


def test_applications_are_encrypted_and_the_connector_gets_full_values(databases, database_url, vault, benefit_tables):
    connector = RecordingConnector()
    service = ApplicationService(databases.engine(database_url), connector, benefit_tables=benefit_tables, vault=vault)
    data = {"applicant_name": "王秀英", "applicant_id": "650202193401010022", "mobile": PHONE,
            "address": "幸福小区3栋502", "applicant_role": "self", "payment_card": "social_security_card"}
    application = service.confirm("elderly_allowance", data, session_id="s1", channel="web", user_id="u1",
                                  today=date(2026, 11, 1))
    with databases.engine(database_url).connect() as conn:
        stored = conn.execute(select(applications.c.data)
                              .where(applications.c.application_id == application.application_id)).scalar_one()
    assert stored["applicant_id"].startswith(PREFIX) and stored["mobile"].startswith(PREFIX)
    assert stored["applicant_name"] == "王秀英"
    assert service.get(application.application_id).data["applicant_id"] == "650202193401010022"
    service.deliver_now(application.application_id)
    assert service.get(application.application_id).status == "submitted"
    assert [(d["applicant_id"], d["mobile"]) for d in connector.submitted] == [("650202193401010022", PHONE)]


def test_sqlite_files_are_private(databases, vault, tmp_path):
    data_dir = tmp_path / "var"
    url = f"sqlite:///{data_dir / 'linli.sqlite'}"
    ConversationStore(databases.engine(url), vault).add_turn("s1", "resident", "你好")
    for name in ("linli.sqlite", "linli.sqlite-wal", "linli.sqlite-shm", "linli.sqlite.migrate-lock"):
        path = data_dir / name
        if name == "linli.sqlite" or path.exists():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
    assert (data_dir / "linli.sqlite-wal").exists()
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700


# ---- migration 0008 -------------------------------------------------------------------------------


def _alembic(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@pytest.fixture
def fresh_url(request, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
        return
    base = request.getfixturevalue("postgres_database")
    name = f"linli_pii_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("fresh_url", ["sqlite", "postgresql"], indirect=True)
def test_migration_masks_and_encrypts_earlier_rows(fresh_url, monkeypatch):
    key = generate_key()
    monkeypatch.setenv("LINLI_PRIVACY__DATA_KEY", key)
    get_settings.cache_clear()
    now = datetime(2026, 11, 1)
    engine = create_engine(fresh_url)
    try:
        with engine.begin() as connection:
            command.upgrade(_alembic(connection), "0007")
            connection.execute(insert(conversations).values(
                session_id="s1", channel="web", user_id="u1", language="zh", created_at=now, updated_at=now,
                state={"flow": {"kind": "procedure", "form_id": "elderly_allowance",
                                "values": {"phone": PHONE, "applicant_name": "王秀英"}}}))
            connection.execute(insert(turns).values(session_id="s1", role="resident", text=f"身份证{ID}",
                                                    created_at=now))
            connection.execute(insert(tickets).values(
                ticket_id="T1", kind="dispute", priority="normal", status="pending", centre="default",
                session_id="s1", channel="web", user_id="u1", contact=PHONE, summary=f"电话{PHONE}",
                form_data={"phone": PHONE, "address": "3栋"}, created_at=now, updated_at=now, due_at=now,
                breached=False))
            connection.execute(insert(ticket_events).values(ticket_id="T1", actor="resident", action="create",
                                                            text=f"电话{PHONE}", created_at=now))
            connection.execute(insert(applications).values(
                application_id="A1", procedure="elderly_allowance", session_id="s1", channel="web", user_id="u1",
                data={"applicant_id": ID, "phone": PHONE, "applicant_name": "王秀英"}, status="queued", attempts=0,
                next_attempt_at=now, created_at=now, updated_at=now, last_error=f"拒绝：{ID}"))
            connection.execute(insert(application_events).values(application_id="A1", status="queued",
                                                                 detail=f"电话{PHONE}", created_at=now))
            command.upgrade(_alembic(connection), "head")
        with engine.connect() as conn:
            dumped = "\n".join(json.dumps([str(v) for v in row], ensure_ascii=False)
                               for table in (conversations, turns, tickets, ticket_events, applications,
                                             application_events)
                               for row in conn.execute(select(table)).all())
            data = conn.execute(select(applications.c.data)).scalar_one()
            summary = conn.execute(select(tickets.c.summary)).scalar_one()
        assert not any(value in dumped for value in RAW)
        assert summary == "电话138****5678" and data["applicant_name"] == "王秀英"
        vault = Vault([key])
        assert vault.decrypt_fields(data) == {"applicant_id": ID, "phone": PHONE, "applicant_name": "王秀英"}
        # Downgrade opens the encrypted values again (masked text stays masked).
        with engine.begin() as connection:
            command.downgrade(_alembic(connection), "0007")
        with engine.connect() as conn:
            assert conn.execute(select(applications.c.data)).scalar_one()["phone"] == PHONE
            assert conn.execute(select(tickets.c.form_data)).scalar_one()["phone"] == PHONE
    finally:
        engine.dispose()
        get_settings.cache_clear()
