"""Centre administrators' pages under `/admin` (the console's login, look and roles): the
analytics page, its CSV exports, and the conversation a row links to. An admin or a supervisor
reads every centre (one may be picked); a worker gets 403. Thin: the queries are
assistant/analytics/queries.py."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, FileSystemLoader

from assistant.analytics.queries import Period, ReportTable, conversation, summary
from assistant.channels import channel_labels
from assistant.console.routes import COOKIE, ROLE_LABELS_ZH, user_store
from assistant.core.clock import utcnow
from assistant.core.errors import Forbidden, LinliError, NotAuthenticated
from assistant.dependencies import ServicesDep
from assistant.escalation.auth import UserStore
from assistant.escalation.service import Actor

ADMIN_DIR = Path(__file__).resolve().parent
ADMIN_STATIC = str(ADMIN_DIR / "static")
CONSOLE_TEMPLATES = ADMIN_DIR.parent / "console" / "templates"
# The admin pages extend the console's base.html: one look, one header, one logout.
templates = Jinja2Templates(directory=str(ADMIN_DIR / "templates"))
templates.env.loader = ChoiceLoader([FileSystemLoader(str(ADMIN_DIR / "templates")),
                                     FileSystemLoader(str(CONSOLE_TEMPLATES))])
READERS = ("admin", "supervisor")
REPLY_TYPE_LABELS_ZH = {"answer": "回答", "clarify": "追问", "refusal": "拒答", "handoff": "转人工",
                        "emergency": "紧急", "form": "表单", "smalltalk": "寒暄"}
CHANNEL_LABELS_ZH = channel_labels("zh")  # each channel names its own (assistant/channels.py)


class BadPeriod(LinliError):
    code = "bad_period"
    http_status = 422


admin = APIRouter(prefix="/admin", include_in_schema=False)


def logged_in(request: Request, users: UserStore) -> Actor | None:
    """Whoever the bearer token or the console cookie names; None when nobody is logged in."""
    token = request.cookies.get(COOKIE)
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    try:
        return users.actor_for_token(token)
    except NotAuthenticated:
        return None


def _reader(request: Request, users: UserStore) -> Actor | None:
    """The logged-in admin or supervisor; None when nobody is logged in; 403 for a worker."""
    actor = logged_in(request, users)
    if actor is None:
        return None
    if actor.role not in READERS:
        raise Forbidden("只有管理员和主管可以查看统计。", "Only administrators and supervisors can read analytics.")
    return actor


def _period(start: str | None, end: str | None, default_days: int) -> Period:
    today = utcnow().date()
    try:
        first = date.fromisoformat(start) if start else None
        last = date.fromisoformat(end) if end else None
    except ValueError as exc:
        raise BadPeriod("日期要写成 年-月-日，例如 2026-01-31。", "Dates must be YYYY-MM-DD.") from exc
    last = last or today
    first = first or Period.last_days(default_days, last).start
    if first > last:
        raise BadPeriod("开始日期不能晚于结束日期。", "The start date is after the end date.")
    if (last - first).days > 3660:
        raise BadPeriod("日期范围最多十年。", "The range can be at most ten years.")
    return Period(first, last)


def _context(actor: Actor, **extra: Any) -> dict[str, Any]:
    return {"actor": actor, "role_labels": ROLE_LABELS_ZH, "reply_type_labels": REPLY_TYPE_LABELS_ZH,
            "channel_labels": CHANNEL_LABELS_ZH, **extra}


Users = Annotated[UserStore, Depends(user_store)]
Day = Annotated[str | None, Query(max_length=10)]
Centre = Annotated[str | None, Query(max_length=64)]


@admin.get("")
def admin_home() -> RedirectResponse:
    return RedirectResponse("/admin/analytics", status_code=303)


@admin.get("/analytics", response_class=HTMLResponse)
def analytics_page(request: Request, users: Users, services: ServicesDep, start: Day = None, end: Day = None,
                   centre: Centre = None) -> Response:
    actor = _reader(request, users)
    if actor is None:
        return RedirectResponse("/console/login", status_code=303)
    settings = services.settings.analytics
    error = None
    try:
        period = _period(start, end, settings.default_days)
    except BadPeriod as exc:
        error, period = exc.message("zh"), _period(None, None, settings.default_days)
    centres = services.analytics.centres()
    centre = centre if centre in centres else None
    report = services.analytics.report(period, centre)
    charts = {"questions_per_day": report["questions_per_day"].rows, "outcomes": report["outcomes"].rows,
              "intents": report["intents"].rows[:15], "feedback": report["feedback"].rows,
              "labels": {"reply_types": REPLY_TYPE_LABELS_ZH, "channels": CHANNEL_LABELS_ZH}}
    query = f"start={period.start.isoformat()}&end={period.end.isoformat()}" + (f"&centre={centre}" if centre else "")
    return templates.TemplateResponse(request, "analytics.html", _context(
        actor, nav="analytics", period=period, centre=centre, centres=centres, report=report, summary=summary(report),
        charts=charts, query=query, error=error), status_code=422 if error else 200)


@admin.get("/analytics/{table}.csv")
def analytics_csv(table: str, request: Request, users: Users, services: ServicesDep, start: Day = None,
                  end: Day = None, centre: Centre = None) -> Response:
    actor = _reader(request, users)
    if actor is None:
        raise NotAuthenticated("请先登录。", "Please log in.")
    query = services.analytics.queries.get(table)
    if query is None:
        raise BadPeriod(f"没有名为 {table} 的表。", f"No table named {table}.")
    period = _period(start, end, services.settings.analytics.default_days)
    found = query(period, centre or None)
    filename = f"linli-{table}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    # A byte-order mark so that Excel opens the Chinese columns as UTF-8.
    return Response("\ufeff" + to_csv(found), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def to_csv(table: ReportTable) -> str:
    """The table with its column keys as the header row (stable for scripts reading the export)."""
    out = io.StringIO()
    # RFC 4180 line ends: the writer quotes any cell holding a \r or \n, so a resident's line break
    # never splits a row.
    writer = csv.DictWriter(out, fieldnames=list(table.columns), extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
    return out.getvalue()


# A cell whose text starts with one of these (after any spaces) is read as a formula by Excel or
# LibreOffice; residents and API clients wrote this text (OWASP "CSV injection").
_FORMULA_STARTS = frozenset("=+-@\t\r\n＝＋－＠")


def spreadsheet_safe(value: object) -> object:
    """Text as a spreadsheet shows it and never evaluates it: a leading apostrophe where it could
    start a formula."""
    if isinstance(value, str) and value.lstrip(" \u3000")[:1] in _FORMULA_STARTS:
        return "'" + value
    return value


@admin.get("/conversations/{session_id}", response_class=HTMLResponse)
def conversation_page(session_id: str, request: Request, users: Users,
                      services: ServicesDep) -> Response:
    actor = _reader(request, users)
    if actor is None:
        return RedirectResponse("/console/login", status_code=303)
    found = conversation(services.analytics, session_id[:128])
    if found is None:
        return templates.TemplateResponse(request, "conversation.html", _context(actor, conversation=None),
                                          status_code=404)
    return templates.TemplateResponse(request, "conversation.html", _context(actor, conversation=found))
