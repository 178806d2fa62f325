"""The escalation queue on the database. Every state change is a conditional UPDATE (`… WHERE
status = :expected`), so two workers acting at once can never both win, on SQLite or
PostgreSQL; `claim_next` also uses `FOR UPDATE SKIP LOCKED` on PostgreSQL so concurrent
workers pull different tickets instead of queueing on one row."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, select, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from assistant.core.clock import utcnow
from assistant.core.db import is_sqlite
from assistant.core.errors import ClaimConflict, Forbidden, LinliError, UnknownTicket
from assistant.core.events import EventBus
from assistant.core.privacy import mask_pii
from assistant.core.settings import EscalationSettings
from assistant.core.vault import Vault
from assistant.escalation.base import KINDS, PRIORITIES, Ticket, new_ticket_id
from assistant.escalation.events import TicketClaimed, TicketOpened, TicketResolved, WorkerReplied
from assistant.escalation.notifier import QueueChange, QueueNotifier, notifier_for
from assistant.escalation.states import CLAIMABLE, HELD, OPEN, RESOLVED, WAITING, next_status
from assistant.escalation.tables import ticket_events, tickets

log = logging.getLogger("linli.escalation")
PRIORITY_ORDER = {p: i for i, p in enumerate(PRIORITIES)}
_CHANGES = "linli.queue_changes"  # the changes a `_changing` transaction has noted, in its connection's info


@dataclass(frozen=True)
class Actor:
    """Who acts on a ticket: a logged-in worker, or the system / the resident."""

    username: str
    role: str = "worker"  # worker | supervisor | admin | system | resident
    centre: str = "default"
    display_name: str = ""

    @property
    def sees_every_centre(self) -> bool:
        return self.role in ("supervisor", "admin", "system")


SYSTEM = Actor("system", "system")
RESIDENT = Actor("resident", "resident")


def due_at(priority: str, created: datetime, settings: EscalationSettings) -> datetime:
    if priority in settings.sla_minutes:
        return created + timedelta(minutes=settings.sla_minutes[priority])
    due, days = created, settings.sla_working_days.get(priority, 1)
    while days > 0:
        due += timedelta(days=1)
        if due.weekday() < 5:
            days -= 1
    return due


def _ticket(row: Row, vault: Vault) -> Ticket:
    """A stored ticket with its form data's encrypted values opened: the service's callers hold
    full values; what leaves for people is masked (`Ticket.public`, the console) but for `reveal`."""
    data = dict(row._mapping)
    data["form_data"] = vault.decrypt_fields(data.get("form_data") or {})
    return Ticket(**data)


class SqlEscalationService:
    """The ticket queue. What happens to a ticket is published on `event_bus` once it is committed
    (TicketOpened, TicketClaimed, WorkerReplied, TicketResolved); delivering a worker's words and
    asking for a rating are listeners' work (assistant/services.py subscribes them). Every change to
    the queue also reaches the open consoles, in its own transaction, through `queue_changes`."""

    def __init__(self, engine: Engine, vault: Vault, settings: EscalationSettings | None = None,
                 events: EventBus | None = None, notifier: QueueNotifier | None = None) -> None:
        self.engine = engine
        # At rest: ID and phone numbers encrypted in form_data, masked in summaries and events.
        self.vault = vault
        self.settings = settings or EscalationSettings()
        # A queue nobody listens to (tests, scripts) still works: its events go nowhere. Not
        # `self.events`: that is the audit log of a ticket.
        self.event_bus = events or EventBus()
        # PostgreSQL NOTIFY to every replica, or in-process on SQLite (assistant/escalation/notifier.py).
        self.queue_changes = notifier or notifier_for(engine.url.render_as_string(hide_password=False))

    # ---- the seam the dialogue engine uses ----------------------------------------------------

    def open_ticket(self, *, kind: str, priority: str, session_id: str, channel: str, user_id: str, summary: str,
                    form_data: dict[str, Any] | None = None, idempotency_key: str | None = None,
                    centre: str | None = None, contact: str | None = None) -> Ticket:
        if kind not in KINDS:
            raise LinliError(f"未知的工单类型：{kind}", f"Unknown ticket kind: {kind}")
        if priority not in PRIORITIES:
            raise LinliError(f"未知的优先级：{priority}", f"Unknown priority: {priority}")
        now = utcnow()
        form_data = dict(form_data or {})
        values: dict[str, Any] = dict(
            ticket_id=new_ticket_id(now), kind=kind, priority=priority, status="pending",
            centre=centre or self.settings.centre, session_id=session_id, channel=channel, user_id=user_id,
            contact=mask_pii(str(contact or form_data.get("phone") or ""))[:64] or None,
            summary=mask_pii(summary[:1000]), form_data=self.vault.encrypt_fields(form_data),
            idempotency_key=idempotency_key, created_at=now, updated_at=now,
            due_at=due_at(priority, now, self.settings), breached=False,
        )
        try:
            with self._changing() as conn:
                conn.execute(insert(tickets).values(**values))
                self._event(conn, values["ticket_id"], RESIDENT, "create", None, "pending", summary[:200],
                            {"kind": kind, "priority": priority})
                self._changed(conn, values["ticket_id"], values["centre"])
        except IntegrityError:
            if idempotency_key:
                existing = self._by_key(idempotency_key)
                if existing is not None:
                    return existing
            raise
        log.info("ticket %s opened: %s/%s %s", values["ticket_id"], kind, priority, mask_pii(summary[:80]))
        ticket = Ticket(**{**values, "form_data": form_data})
        self.event_bus.publish(TicketOpened(ticket))
        return ticket

    def get(self, ticket_id: str) -> Ticket | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id)).first()
        return _ticket(row, self.vault) if row else None

    def held_ticket(self, session_id: str) -> Ticket | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(tickets).where(tickets.c.session_id == session_id, tickets.c.status.in_(HELD))
                .order_by(tickets.c.created_at.desc())
            ).first()
        return _ticket(row, self.vault) if row else None

    def record_resident_message(self, ticket_id: str, text: str) -> None:
        with self._changing() as conn:
            status: str = conn.execute(select(tickets.c.status).where(tickets.c.ticket_id == ticket_id)).scalar_one()
            to_status = status
            if status == WAITING:
                to_status = self._move(conn, ticket_id, "resident_replied", status)
                self._changed(conn, ticket_id)  # the queue shows the status; a message alone changes no row
            self._event(conn, ticket_id, RESIDENT, "resident_message", status, to_status, text[:4000])

    def record_rating(self, ticket_id: str, rating: int) -> None:
        if not 1 <= rating <= 5:
            raise LinliError("评分请在1到5分之间。", "Please rate from 1 to 5.")
        with self._changing() as conn:
            status: str = conn.execute(select(tickets.c.status).where(tickets.c.ticket_id == ticket_id)).scalar_one()
            to_status = self._move(conn, ticket_id, "close", status, rating=rating)
            self._event(conn, ticket_id, RESIDENT, "rate", status, to_status, str(rating), {"rating": rating})
            self._changed(conn, ticket_id)

    # ---- the queue -------------------------------------------------------------------------

    def list(self, actor: Actor, *, statuses: list[str] | None = None, kind: str | None = None,
             priority: str | None = None, centre: str | None = None, limit: int = 200) -> list[Ticket]:
        query = select(tickets)
        if not actor.sees_every_centre:
            query = query.where(tickets.c.centre == actor.centre)
        elif centre:
            query = query.where(tickets.c.centre == centre)
        if statuses:
            query = query.where(tickets.c.status.in_(statuses))
        if kind:
            query = query.where(tickets.c.kind == kind)
        if priority:
            query = query.where(tickets.c.priority == priority)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(tickets.c.created_at.desc()).limit(limit)).all()
        found = [_ticket(r, self.vault) for r in rows]
        # Open work first, most urgent and soonest due at the top.
        return sorted(found, key=lambda t: (t.status not in OPEN, PRIORITY_ORDER.get(t.priority, 9), t.due_at))

    def view(self, ticket_id: str, actor: Actor) -> Ticket:
        """A ticket the actor may see. Another centre's ticket is reported as unknown, so its
        existence does not leak."""
        ticket = self.get(ticket_id)
        if ticket is None or not (actor.sees_every_centre or ticket.centre == actor.centre):
            raise UnknownTicket(f"找不到工单 {ticket_id}。", f"Ticket {ticket_id} not found.", ticket_id=ticket_id)
        return ticket

    def events(self, ticket_id: str) -> builtins.list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ticket_events).where(ticket_events.c.ticket_id == ticket_id).order_by(ticket_events.c.id)
            ).all()
        return [{**r._mapping, "created_at": r.created_at.isoformat()} for r in rows]

    def claim(self, ticket_id: str, actor: Actor) -> Ticket:
        ticket = self.view(ticket_id, actor)
        now = utcnow()
        with self._changing() as conn:
            result = conn.execute(
                update(tickets)
                .where(tickets.c.ticket_id == ticket_id, tickets.c.status.in_(CLAIMABLE))
                .values(status="claimed", assignee=actor.username, claimed_at=now, updated_at=now)
            )
            if result.rowcount != 1:
                current = conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id)).one()
                if current.status in HELD:
                    raise ClaimConflict(f"工单已被 {current.assignee} 认领。",
                                        f"Already claimed by {current.assignee}.",
                                        assignee=current.assignee)
                next_status("claim", current.status)  # raises IllegalTransition
            self._event(conn, ticket_id, actor, "claim", ticket.status, "claimed")
            self._changed(conn, ticket_id, ticket.centre)
        claimed = self._current(ticket_id)
        self.event_bus.publish(TicketClaimed(claimed, actor.username))
        return claimed

    def claim_next(self, actor: Actor) -> Ticket | None:
        """The most urgent claimable ticket of the actor's centre, claimed for them."""
        order = (tickets.c.due_at, tickets.c.created_at)
        where: list[ColumnElement[bool]] = [tickets.c.status.in_(CLAIMABLE)]
        if not actor.sees_every_centre:
            where.append(tickets.c.centre == actor.centre)
        for _ in range(20):
            claimed: Ticket | None = None
            with self._changing() as conn:
                query = select(tickets.c.ticket_id, tickets.c.status).where(and_(*where)).order_by(*order).limit(1)
                if not is_sqlite(self.engine):
                    query = query.with_for_update(skip_locked=True)
                row = conn.execute(query).first()
                if row is None:
                    return None
                now = utcnow()
                result = conn.execute(
                    update(tickets).where(tickets.c.ticket_id == row.ticket_id, tickets.c.status == row.status)
                    .values(status="claimed", assignee=actor.username, claimed_at=now, updated_at=now)
                )
                if result.rowcount == 1:
                    self._event(conn, row.ticket_id, actor, "claim", row.status, "claimed")
                    claimed = self._get_in(conn, row.ticket_id)
                    self._changed(conn, row.ticket_id, claimed.centre)
            if claimed is not None:
                # Published after the commit: a listener must never see a claim that could still roll back.
                self.event_bus.publish(TicketClaimed(claimed, actor.username))
                return claimed
            # Lost a race on SQLite (no row locks): try the next one.
        return None

    def reply(self, ticket_id: str, actor: Actor, text: str) -> Ticket:
        return self._speak(ticket_id, actor, text, action="reply")

    def ask_resident(self, ticket_id: str, actor: Actor, text: str) -> Ticket:
        return self._speak(ticket_id, actor, text, action="ask_resident")

    def transfer(self, ticket_id: str, actor: Actor, *, to_centre: str | None = None, to_worker: str | None = None,
                 reason: str = "") -> Ticket:
        ticket = self._held_by(ticket_id, actor, allow_unclaimed=True)
        with self._changing() as conn:
            to_status = self._move(conn, ticket_id, "transfer", ticket.status, assignee=to_worker,
                                   centre=to_centre or ticket.centre)
            self._event(conn, ticket_id, actor, "transfer", ticket.status, to_status, reason[:1000],
                        {"to_centre": to_centre or ticket.centre, "to_worker": to_worker})
            self._changed(conn, ticket_id, ticket.centre, to_centre or ticket.centre)  # leaves one queue for another
        return self._current(ticket_id)

    def resolve(self, ticket_id: str, actor: Actor, outcome: str) -> Ticket:
        if not outcome.strip():
            raise LinliError("请填写处理结果。", "Please describe the outcome.")
        ticket = self._held_by(ticket_id, actor)
        with self._changing() as conn:
            to_status = self._move(conn, ticket_id, "resolve", ticket.status, outcome=mask_pii(outcome[:2000]),
                                   resolved_at=utcnow())
            self._event(conn, ticket_id, actor, "resolve", ticket.status, to_status, outcome[:2000])
            self._changed(conn, ticket_id, ticket.centre)
        resolved = self._current(ticket_id)
        self.event_bus.publish(TicketResolved(resolved))
        return resolved

    def close(self, ticket_id: str, actor: Actor, reason: str = "") -> Ticket:
        ticket = self.view(ticket_id, actor)
        with self._changing() as conn:
            to_status = self._move(conn, ticket_id, "close", ticket.status)
            self._event(conn, ticket_id, actor, "close", ticket.status, to_status, reason[:1000])
            self._changed(conn, ticket_id, ticket.centre)
        return self._current(ticket_id)

    def reopen(self, ticket_id: str, actor: Actor, reason: str) -> Ticket:
        ticket = self.view(ticket_id, actor)
        with self._changing() as conn:
            to_status = self._move(conn, ticket_id, "reopen", ticket.status, assignee=None,
                                   due_at=due_at(ticket.priority, utcnow(), self.settings), breached=False)
            self._event(conn, ticket_id, actor, "reopen", ticket.status, to_status, reason[:1000])
            self._changed(conn, ticket_id, ticket.centre)
        return self._current(ticket_id)

    def add_note(self, ticket_id: str, actor: Actor, text: str) -> Ticket:
        ticket = self.view(ticket_id, actor)
        with self._changing() as conn:
            self._event(conn, ticket_id, actor, "note", ticket.status, ticket.status, text[:4000])
            self._changed(conn, ticket_id, ticket.centre)
        return ticket

    def reveal(self, ticket_id: str, actor: Actor) -> dict[str, Any]:
        """The full form data (and contact number) of a ticket, for the worker handling it: the
        ticket is claimed by `actor` (it is held, not just resolved) and in their centre. Everyone
        else reads masked values. Each reveal is an event in the ticket's audit trail."""
        ticket = self.view(ticket_id, actor)
        if ticket.status not in HELD or ticket.assignee != actor.username or ticket.centre != actor.centre:
            raise Forbidden("只有认领这张工单的本中心工作人员可以查看完整个人信息。",
                            "Only the worker of this centre who claimed the ticket may see the full personal data.")
        with self.engine.begin() as conn:  # an audit entry, no change to the queue: consoles are not told
            self._event(conn, ticket_id, actor, "reveal", ticket.status, ticket.status, "查看了完整个人信息",
                        {"fields": sorted(ticket.form_data)})
        log.info("ticket %s: %s saw the full personal data", ticket_id, actor.username)
        phone = ticket.form_data.get("phone")
        return {"ticket_id": ticket_id, "form_data": ticket.form_data,
                "contact": phone if isinstance(phone, str) else ticket.contact}

    def sweep_breaches(self, now: datetime | None = None) -> builtins.list[str]:
        """Flag tickets nobody claimed in time and escalate them to a supervisor."""
        now = now or utcnow()
        with self._changing() as conn:
            late = conn.execute(
                select(tickets.c.ticket_id, tickets.c.status, tickets.c.centre)
                .where(tickets.c.status.in_(CLAIMABLE), tickets.c.breached.is_(False), tickets.c.due_at < now)
            ).all()
            flagged = []
            for row in late:
                result = conn.execute(
                    update(tickets).where(tickets.c.ticket_id == row.ticket_id, tickets.c.breached.is_(False))
                    .values(breached=True, escalated_to="supervisor", updated_at=now)
                )
                if result.rowcount == 1:
                    flagged.append(row.ticket_id)
                    self._event(conn, row.ticket_id, SYSTEM, "sla_breach", row.status, row.status,
                                "超过认领时限，已升级给主管。", {"escalated_to": "supervisor"})
                    self._changed(conn, row.ticket_id, row.centre)
        for ticket_id in flagged:
            log.warning("ticket %s breached its SLA; escalated to a supervisor", ticket_id)
        return flagged

    # ---- internals ----------------------------------------------------------------------------

    def _speak(self, ticket_id: str, actor: Actor, text: str, action: str) -> Ticket:
        text = text.strip()
        if not text:
            raise LinliError("回复内容不能为空。", "The reply is empty.")
        ticket = self._held_by(ticket_id, actor)
        with self._changing() as conn:
            to_status = ticket.status
            if action == "ask_resident":
                to_status = self._move(conn, ticket_id, "ask_resident", ticket.status)
            self._event(conn, ticket_id, actor, action, ticket.status, to_status, text[:4000])
            self._changed(conn, ticket_id, ticket.centre)
        spoken = self._current(ticket_id)
        self.event_bus.publish(WorkerReplied(spoken, actor.display_name or actor.username, text))
        return spoken

    @contextmanager
    def _changing(self) -> Iterator[Connection]:
        """`engine.begin()` for a write to the queue. What `_changed` notes in it reaches every open
        console: announced inside this transaction (PostgreSQL sends its NOTIFY at the commit),
        and to this process's listeners once it committed. A rollback tells no one."""
        changes: list[QueueChange] = []
        with self.engine.begin() as conn:
            conn.info[_CHANGES] = changes
            try:
                yield conn
            finally:
                conn.info.pop(_CHANGES, None)
            if changes:
                self.queue_changes.announce(conn, changes)
        if changes:
            self.queue_changes.committed(changes)

    def _changed(self, conn: Connection, ticket_id: str, *centres: str) -> None:
        """Notes, in a `_changing` transaction, that this ticket's row in these centres' queues
        changed (no centre: every queue looks again)."""
        conn.info[_CHANGES].append(QueueChange(ticket_id, tuple(dict.fromkeys(centres))))

    def _held_by(self, ticket_id: str, actor: Actor, allow_unclaimed: bool = False) -> Ticket:
        ticket = self.view(ticket_id, actor)
        if ticket.status in HELD and ticket.assignee != actor.username and actor.role == "worker":
            raise Forbidden(f"这张工单由 {ticket.assignee} 处理，请先让对方转派。",
                            f"{ticket.assignee} holds this ticket; ask them to transfer it.")
        if ticket.status not in HELD and not allow_unclaimed:
            raise Forbidden("请先认领这张工单。", "Claim the ticket first.")
        return ticket

    def _move(self, conn: Connection, ticket_id: str, action: str, from_status: str, **values: Any) -> str:
        to_status = next_status(action, from_status)
        result = conn.execute(
            update(tickets).where(tickets.c.ticket_id == ticket_id, tickets.c.status == from_status)
            .values(status=to_status, updated_at=utcnow(), **values)
        )
        if result.rowcount != 1:
            current: str = conn.execute(select(tickets.c.status).where(tickets.c.ticket_id == ticket_id)).scalar_one()
            next_status(action, current)  # raises IllegalTransition when the move is no longer legal
            raise ClaimConflict("工单刚被别人改动了，请刷新后再试。", "Someone else just changed this ticket; reload.")
        return to_status

    def _event(self, conn: Connection, ticket_id: str, actor: Actor, action: str, from_status: str | None,
               to_status: str | None, text: str | None = None, data: dict[str, Any] | None = None) -> None:
        conn.execute(insert(ticket_events).values(
            ticket_id=ticket_id, actor=actor.username, action=action, from_status=from_status, to_status=to_status,
            text=mask_pii(text) if text else text, data=data, created_at=utcnow()))

    def _by_key(self, key: str) -> Ticket | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tickets).where(tickets.c.idempotency_key == key)).first()
        return _ticket(row, self.vault) if row else None

    def _current(self, ticket_id: str) -> Ticket:
        """A ticket this service just changed (so it exists)."""
        with self.engine.connect() as conn:
            return self._get_in(conn, ticket_id)

    def _get_in(self, conn: Connection, ticket_id: str) -> Ticket:
        return _ticket(conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id)).one(), self.vault)


__all__ = ["RESIDENT", "RESOLVED", "SYSTEM", "Actor", "SqlEscalationService", "due_at"]
