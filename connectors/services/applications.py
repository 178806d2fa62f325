"""Applications a resident confirmed, filed exactly once.

Confirming writes the application to the outbox table in one transaction; delivery happens
after, inline (one quick try) and by `linli worker`. Each delivery holds a short lease on the
row (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a conditional update on SQLite), and the backend
call carries the application id as its idempotency key, so a crash between the backend's
acknowledgement and our commit still yields one application, not two.

What the resident is told (and the statuses' names) is in notices.yaml, read and checked when
this module is imported; the audit trail written for workers stays in Chinese here."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from assistant.core.clock import utcnow
from assistant.core.db import lease_due
from assistant.core.errors import LinliError, TooManyRequests
from assistant.core.keys import digest_key
from assistant.core.privacy import mask_pii
from assistant.core.settings import LimitSettings
from assistant.core.vault import SENSITIVE_FIELD_TYPES, UndecryptableValue, Vault
from connectors.forms.errors import InvalidFormFile, load_messages
from connectors.services.base import BackendRejected, BackendUnavailable, ServiceConnector
from connectors.services.procedures import Procedure, get_procedure
from connectors.services.tables import application_events, applications
from knowledge_base.benefits import BenefitTables

log = logging.getLogger("linli.applications")
IN_FLIGHT = ("submitted", "under_review")
FINAL = ("approved", "rejected", "cancelled")
STATUSES = ("queued", *IN_FLIGHT, *FINAL, "needs_worker")
NOTICES_PATH = Path(__file__).resolve().parent / "notices.yaml"


def load_notices(path: Path = NOTICES_PATH) -> dict[str, dict[str, str]]:
    """The notices and status names (id -> {"zh", "en"}), each pair with the same placeholders,
    and none missing."""
    notices = load_messages(path)
    wanted = ["submitted", "handed_to_worker", "status_changed", "status_reason", "too_many", "too_many_centre",
              *(f"status_{s}" for s in STATUSES)]
    missing = [key for key in wanted if key not in notices]
    if missing:
        raise InvalidFormFile(f"{path.name} 缺少：{'、'.join(missing)}", f"{path.name} lacks {', '.join(missing)}")
    return notices


NOTICES = load_notices()


def status_name(status: str, language: str) -> str:
    """An application's status in words (`status_<status>` in notices.yaml); an unknown status
    as it is."""
    names = NOTICES.get(f"status_{status}")
    return names["en" if language == "en" else "zh"] if names else status


def _notice(key: str, language: str, **values: object) -> str:
    """A notice in the language the resident filed in (the application's `language`)."""
    return NOTICES[key]["en" if language == "en" else "zh"].format(**values)


class InvalidApplication(LinliError):
    code = "invalid_application"
    http_status = 422

    def __init__(self, errors: list[dict[str, str]]) -> None:
        """`errors`: {field, message (Chinese), message_en}; a backend's message that came
        without an English one is named as the backend's, in its own words."""
        errors = [{**e, "message_en": e.get("message_en") or f"The government system did not accept it: {e['message']}"}
                  for e in errors]
        first = errors[0] if errors else {"message": "申请内容有误", "message_en": "The application is not valid."}
        super().__init__(first["message"], first["message_en"], errors=errors)
        self.errors = errors


class Ineligible(LinliError):
    code = "ineligible"
    http_status = 422

    def __init__(self, reason_zh: str, reason_en: str, citations: list[dict[str, Any]]) -> None:
        super().__init__(reason_zh, reason_en, eligible=False, reason=reason_zh, citations=citations)
        self.citations = citations


class UnknownApplication(LinliError):
    code = "unknown_application"
    http_status = 404


class TooManyApplications(TooManyRequests):
    code = "too_many_applications"


class HitCounter(Protocol):
    """Counts hits per key in windows, atomically across processes (assistant/security/limits.py's
    `RateLimiter`): True while the key is within `limit`."""

    def hit(self, key: str, *, limit: int, window_s: int) -> bool: ...


HOUR_S, DAY_S = 3600, 24 * 3600


@dataclass(frozen=True)
class FilingLimits:
    """How many applications a session, a resident (the conversation's owner), a resident for one
    procedure, a centre, and a client (an integration, or a page address) may file
    (LimitSettings' applications_*); refused with 429 and a sentence the resident can act on."""

    counter: HitCounter
    per_session_per_hour: int
    per_resident_per_day: int
    per_resident_per_procedure_per_day: int
    per_centre_per_day: int
    per_client_per_day: int

    @classmethod
    def from_settings(cls, counter: HitCounter, limits: LimitSettings) -> FilingLimits:
        return cls(counter, limits.applications_per_session_per_hour, limits.applications_per_resident_per_day,
                   limits.applications_per_resident_per_procedure_per_day, limits.applications_per_centre_per_day,
                   limits.applications_per_client_per_day)

    def admit(self, *, procedure: str, session_id: str, owner: str, centre: str | None,
              client: str | None = None) -> None:
        checks = [(f"filings:session:{session_id}", self.per_session_per_hour, HOUR_S, "session"),
                  (f"filings:resident:{owner}", self.per_resident_per_day, DAY_S, "resident"),
                  (f"filings:resident:{owner}:{procedure}", self.per_resident_per_procedure_per_day, DAY_S,
                   "procedure")]
        if centre:
            checks.append((f"filings:centre:{centre}", self.per_centre_per_day, DAY_S, "centre"))
        if client:
            checks.append((f"filings:client:{client}", self.per_client_per_day, DAY_S, "client"))
        for key, limit, window_s, which in checks:
            if not self.counter.hit(key, limit=limit, window_s=window_s):
                log.warning("application refused: the %s limit (%d per %d h) was reached", which, limit,
                            window_s // HOUR_S)
                notice = NOTICES["too_many_centre" if which == "centre" else "too_many"]
                raise TooManyApplications(notice["zh"], notice["en"], retry_after=window_s)


def owner_key(owner: str | None, session_id: str) -> str:
    """Who filed: the conversation's owner, or the session itself where the conversation has none
    (the command line, conversations from before owners existed)."""
    return owner or f"session:{session_id}"


def scoped_key(owner: str, idempotency_key: str) -> str:
    """An idempotency key is the filer's own: the same key from someone else is another application."""
    return digest_key("k:", owner, idempotency_key)


@dataclass
class Application:
    application_id: str
    procedure: str
    session_id: str
    channel: str
    user_id: str
    data: dict[str, Any]
    status: str
    attempts: int
    backend_reference: str | None
    ticket_id: str | None
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None
    owner: str | None = None
    language: str = "zh"

    def public(self, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"reference": self.application_id, "procedure": self.procedure, "status": self.status,
                   "backend_reference": self.backend_reference, "created_at": self.created_at.isoformat()}
        if history is not None:
            payload["history"] = history
        return payload


# Called with (application, text) to tell the resident on their channel.
Notify = Callable[[Application, str], None]
# Called with (application, reason) to open a ticket for a worker; returns the ticket id.
Escalate = Callable[[Application, str], str]


class ApplicationService:
    """`benefit_tables` is where eligibility rules read benefit tables: the knowledge base's
    answerer in the app (the tables of the indexed documents), an in-memory set in tests."""

    def __init__(self, engine: Engine, connector: ServiceConnector, *, benefit_tables: BenefitTables, vault: Vault,
                 notify: Notify | None = None, escalate: Escalate | None = None, max_attempts: int = 5,
                 lease_s: float = 60.0, retry_base_s: float = 5.0,
                 procedures: Callable[[str], Procedure] | None = None,
                 limits: FilingLimits | None = None) -> None:
        self.engine = engine
        self.limits = limits
        # ID and phone numbers in `applications.data` are stored encrypted; `get` opens them (the
        # connector submits full values).
        self.vault = vault
        self.connector = connector
        self.benefit_tables = benefit_tables
        self.notify = notify
        self.escalate = escalate
        self.max_attempts = max_attempts
        self.lease = timedelta(seconds=lease_s)
        self.retry_base = timedelta(seconds=retry_base_s)
        self.get_procedure = procedures or get_procedure

    # ---- confirming -----------------------------------------------------------------------

    def check(self, procedure_id: str, data: dict[str, Any], today: date | None = None) -> dict[str, Any]:
        """Validate and check eligibility; return the cleaned values or raise with every error."""
        procedure = self.get_procedure(procedure_id)
        today = today or date.today()
        cleaned, errors = procedure.validate(data, today)
        if errors:
            raise InvalidApplication([{"field": e.field, "message": e.message("zh"), "message_en": e.message("en")}
                                      for e in errors])
        eligibility = procedure.check_eligibility(cleaned, today, self.benefit_tables)
        if not eligibility.eligible:
            citations = [{"doc_id": eligibility.doc_id}] if eligibility.doc_id else []
            raise Ineligible(eligibility.reason_zh, eligibility.reason_en, citations)
        backend_errors = self.connector.validate(procedure_id, cleaned)
        if backend_errors:
            raise InvalidApplication(backend_errors)
        return cleaned

    def confirm(self, procedure_id: str, data: dict[str, Any], *, session_id: str, channel: str, user_id: str,
                idempotency_key: str | None = None, today: date | None = None, owner: str | None = None,
                centre: str | None = None, client: str | None = None, limited: bool = True,
                language: str = "zh") -> Application:
        """Store a confirmed application in the outbox (one transaction); the same key twice from
        the same resident (`owner`) returns the first application. A new one counts against the
        filing limits (`client`: the integration or page address it came through, where there is
        one), unless `limited` is off (the operator's command line, not a resident)."""
        owner = owner_key(owner, session_id)
        key = scoped_key(owner, idempotency_key) if idempotency_key else None
        if key:
            existing = self._by_key(key)
            if existing is not None:
                if existing.procedure != procedure_id:
                    raise LinliError(f"这个幂等键已用于另一项申请（{existing.procedure}）。",
                                     f"This idempotency key was already used for a {existing.procedure} application.",
                                     reference=existing.application_id)
                return existing
        cleaned = _jsonable(self.check(procedure_id, data, today))
        if self.limits is not None and limited:
            self.limits.admit(procedure=procedure_id, session_id=session_id, owner=owner, centre=centre,
                              client=client)
        now = utcnow()
        application_id = f"SQ{now:%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(applications).values(
                    application_id=application_id, procedure=procedure_id, session_id=session_id, channel=channel,
                    user_id=user_id, owner=owner,
                    data=self.vault.encrypt_fields(cleaned, self._sensitive(procedure_id)),
                    idempotency_key=key, status="queued", attempts=0, language="en" if language == "en" else "zh",
                    next_attempt_at=now, created_at=now, updated_at=now))
                self._event(conn, application_id, "queued", "居民已确认")
        except IntegrityError:
            existing = self._by_key(key) if key else None
            if existing is None:
                raise
            return existing
        log.info("application %s confirmed: %s %s", application_id, procedure_id, mask_pii(str(cleaned))[:200])
        return self.get(application_id)

    # ---- delivering -----------------------------------------------------------------------

    def deliver_due(self, worker: str, limit: int = 20, only: str | None = None) -> list[Application]:
        """Lease due applications and submit each once; returns what this call delivered."""
        delivered = []
        for application_id in self._lease(worker, limit, only):
            result = self._deliver(application_id, worker)
            if result is not None and result.status == "submitted":
                delivered.append(result)
        return delivered

    def deliver_now(self, application_id: str, worker: str = "inline") -> Application:
        self.deliver_due(worker, limit=1, only=application_id)
        return self.get(application_id)

    def _lease(self, worker: str, limit: int, only: str | None) -> list[str]:
        now = utcnow()
        due = and_(applications.c.status == "queued", applications.c.next_attempt_at <= now,
                   or_(applications.c.lease_until.is_(None), applications.c.lease_until < now))
        if only:
            due = and_(due, applications.c.application_id == only)
        return lease_due(self.engine, applications.c.application_id, due, worker=worker, until=now + self.lease,
                         limit=limit, order_by=applications.c.created_at)

    def _deliver(self, application_id: str, worker: str) -> Application | None:
        try:
            application = self.get(application_id)
        except UndecryptableValue:
            # Encrypted under a key this process does not hold (a key rotated without
            # LINLI_PRIVACY__PREVIOUS_KEYS): kept, tried again in an hour, never blocking the others.
            log.error("application %s cannot be decrypted with the configured keys; not submitted", application_id)
            with self.engine.begin() as conn:
                conn.execute(update(applications).where(applications.c.application_id == application_id,
                                                        applications.c.lease_owner == worker)
                             .values(lease_owner=None, lease_until=None, next_attempt_at=utcnow() + timedelta(hours=1),
                                     last_error="undecryptable: data key", updated_at=utcnow()))
            return None
        try:
            submission = self.connector.submit(application.procedure, application.data, idempotency_key=application_id)
        except BackendUnavailable as exc:
            return self._retry_later(application, worker, exc.message("zh"))
        except BackendRejected as exc:
            return self._hand_to_worker(application, worker, f"政务系统拒绝：{exc.message('zh')}")
        now = utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(update(applications).where(applications.c.application_id == application_id,
                                                            applications.c.lease_owner == worker)
                                  .values(status="submitted", backend_reference=submission.reference, lease_owner=None,
                                          lease_until=None, attempts=application.attempts + 1, updated_at=now,
                                          last_error=None))
            if result.rowcount != 1:
                return None  # our lease ran out and another worker took over; it owns the outcome
            self._event(conn, application_id, "submitted", f"政务系统受理编号 {submission.reference}")
        delivered = self.get(application_id)
        self._tell(delivered, _notice("submitted", delivered.language, title=self._title(delivered),
                                      reference=application_id,
                                      backend_reference=submission.reference))
        return delivered

    def _retry_later(self, application: Application, worker: str, error: str) -> Application:
        attempts = application.attempts + 1
        if attempts >= self.max_attempts:
            return self._hand_to_worker(application, worker, f"多次提交失败：{error}", attempts)
        delay = self.retry_base * (2 ** (attempts - 1))
        with self.engine.begin() as conn:
            conn.execute(update(applications).where(applications.c.application_id == application.application_id,
                                                    applications.c.lease_owner == worker)
                         .values(attempts=attempts, next_attempt_at=utcnow() + delay, lease_owner=None,
                                 lease_until=None, last_error=mask_pii(error[:500]), updated_at=utcnow()))
        return self.get(application.application_id)

    def _hand_to_worker(self, application: Application, worker: str, reason: str,
                        attempts: int | None = None) -> Application:
        ticket_id = self.escalate(application, reason) if self.escalate else None
        with self.engine.begin() as conn:
            conn.execute(update(applications).where(applications.c.application_id == application.application_id,
                                                    applications.c.lease_owner == worker)
                         .values(status="needs_worker", ticket_id=ticket_id, lease_owner=None, lease_until=None,
                                 attempts=attempts or application.attempts + 1, last_error=mask_pii(reason[:500]),
                                 updated_at=utcnow()))
            self._event(conn, application.application_id, "needs_worker", reason[:500])
        self._tell(application, _notice("handed_to_worker", application.language, title=self._title(application),
                                        reference=application.application_id, ticket_id=ticket_id))
        return self.get(application.application_id)

    def dispute(self, reference: str, text: str) -> str | None:
        """The resident disputes a rejection: a worker gets a ticket with the application."""
        application = self.get(reference)
        if application.status != "rejected" or not self.escalate:
            return None
        ticket_id = self.escalate(application, f"居民对审核结果有异议：{text[:300]}")
        with self.engine.begin() as conn:
            conn.execute(update(applications).where(applications.c.application_id == application.application_id)
                         .values(ticket_id=ticket_id, updated_at=utcnow()))
            self._event(conn, application.application_id, "rejected", f"居民提出异议，已转工作人员（{ticket_id}）")
        return ticket_id

    # ---- status -------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Ask the backend about in-flight applications; record and announce every change."""
        with self.engine.connect() as conn:
            in_flight: Sequence[str] = conn.execute(select(applications.c.application_id)
                                     .where(applications.c.status.in_(IN_FLIGHT))).scalars().all()
        changed = 0
        for application_id in in_flight:
            try:
                application = self.get(application_id)
            except UndecryptableValue:  # see _deliver: one unreadable row never stops the others
                log.error("application %s cannot be decrypted with the configured keys; status not followed",
                          application_id)
                continue
            if application.backend_reference is None:
                continue  # in flight means submitted, so this does not happen; the check keeps it so
            try:
                status = self.connector.status(application.backend_reference)
            except (BackendUnavailable, BackendRejected):
                continue
            if status.status == application.status:
                continue
            with self.engine.begin() as conn:
                result = conn.execute(update(applications)
                                      .where(applications.c.application_id == application_id,
                                             applications.c.status == application.status)
                                      .values(status=status.status, updated_at=utcnow()))
                if result.rowcount != 1:
                    continue
                self._event(conn, application_id, status.status, status.reason)
            changed += 1
            language = application.language
            reason = _notice("status_reason", language, reason=status.reason) if status.reason else ""
            self._tell(application, _notice("status_changed", language, title=self._title(application),
                                            reference=application_id, status=status_name(status.status, language),
                                            reason=reason))
        return changed

    def get(self, reference: str) -> Application:
        with self.engine.connect() as conn:
            row = conn.execute(select(applications).where(or_(applications.c.application_id == reference,
                                                              applications.c.backend_reference == reference))).first()
        if row is None:
            raise UnknownApplication(f"找不到编号为 {reference} 的申请。", f"No application {reference}.",
                                     reference=reference)
        fields = {k: getattr(row, k) for k in Application.__dataclass_fields__}
        fields["data"] = self.vault.decrypt_fields(fields["data"] or {})
        return Application(**fields)

    def history(self, application_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(application_events).where(application_events.c.application_id == application_id)
                                .order_by(application_events.c.id)).all()
        return [{"status": r.status, "detail": r.detail, "at": r.created_at.isoformat()} for r in rows]

    def status(self, reference: str) -> dict[str, Any]:
        application = self.get(reference)
        return application.public(self.history(application.application_id))

    def for_resident(self, *, owner: str | None, session_id: str, limit: int = 5) -> list[Application]:
        """The resident's latest applications: those filed by the same owner (their page session,
        their integration user, their WeChat account), in any of their conversations. Never by a
        bare user id: another client may use the same one."""
        who = [applications.c.owner == owner_key(owner, session_id), applications.c.session_id == session_id]
        with self.engine.connect() as conn:
            rows = conn.execute(select(applications.c.application_id).where(or_(*who))
                                .order_by(applications.c.created_at.desc()).limit(limit)).all()
        return [self.get(r.application_id) for r in rows]

    # ---- internals ----------------------------------------------------------------------------

    def _title(self, application: Application) -> str:
        try:
            return self.get_procedure(application.procedure).title[application.language]
        except LinliError:
            return application.procedure

    def _tell(self, application: Application, text: str) -> None:
        if self.notify:
            try:
                self.notify(application, text)
            except Exception:
                log.exception("could not notify the resident about %s", application.application_id)

    def _by_key(self, key: str) -> Application | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(applications.c.application_id)
                               .where(applications.c.idempotency_key == key)).first()
        return self.get(row.application_id) if row else None

    def _sensitive(self, procedure_id: str) -> set[str]:
        """The procedure's fields whose values are personal data by kind (cn_id, cn_mobile)."""
        try:
            return {f.name for f in self.get_procedure(procedure_id).fields if f.type in SENSITIVE_FIELD_TYPES}
        except LinliError:
            return set()

    def _event(self, conn, application_id: str, status: str, detail: str | None) -> None:
        conn.execute(insert(application_events).values(application_id=application_id, status=status,
                                                       detail=mask_pii(detail) if detail else detail,
                                                       created_at=utcnow()))


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, (date, datetime)) else v for k, v in values.items()}
