"""Ticket API (`/api/v1/tickets…`, bearer token or console cookie) and the worker console
pages (`/console…`). Both are thin: every rule lives in SqlEscalationService."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, Form, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from assistant.core.clock import utcnow
from assistant.core.errors import Forbidden, NotAuthenticated, TooManyRequests
from assistant.core.keys import digest_key
from assistant.dependencies import ServicesDep
from assistant.escalation.auth import UserStore
from assistant.escalation.base import KINDS, PRIORITIES
from assistant.escalation.notifier import IN_PROCESS, LISTENING, QueueNotifier
from assistant.escalation.service import Actor, SqlEscalationService
from assistant.escalation.states import ACTION_LABELS_ZH, HELD, OPEN, STATUS_LABELS_ZH, STATUSES
from assistant.ops.health import shutting_down
from assistant.security.http import bearer_token
from assistant.security.limits import LoginThrottle

COOKIE = "linli_session"
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
KIND_LABELS_ZH = {"dispute": "纠纷调解", "human_request": "转人工", "complaint": "投诉", "emergency": "紧急求助",
                  "failed_answer": "未能解答", "procedure_problem": "办事问题"}
PRIORITY_LABELS_ZH = {"urgent": "紧急", "high": "较急", "normal": "一般"}
ROLE_LABELS_ZH = {"worker": "社工", "supervisor": "主管", "admin": "管理员"}
# The conversation record's parts (assistant/dialogue/state.py) as a worker reads them, shown
# beside the dotted path; a form's answers (`flow.values.phone`) are all labelled 已填写.
STATE_PATH_LABELS_ZH = {
    "flow.kind": "正在填的表", "flow.form_id": "表单", "flow.confirming": "等居民确认",
    "flow.opening": "居民最初说的话", "flow.submission_key": "提交编号", "pending.kind": "等居民回答",
    "pending.ticket_id": "待评分的工单", "pending.meant": "可能想说的是", "pending.reference": "被驳回的申请",
    "pending.question": "未能回答的问题", "topic.question": "当前话题", "topic.title": "话题出处",
    "last_question": "上一个问题", "handoff_ticket": "转人工工单",
}


def turn_changes(trace: dict[str, Any] | None) -> list[dict[str, str]]:
    """What one turn changed in the conversation's record (its trace's `changes`, see
    `state_changes`), as rows the ticket page lists: label, path, before and after. The values
    are the trace's own, masked when it was stored; nothing here decrypts."""
    rows = []
    for change in (trace or {}).get("changes") or []:
        path = str(change.get("path"))
        label = STATE_PATH_LABELS_ZH.get(path) or ("已填写" if path.startswith("flow.values.") else "")
        rows.append({"label": label, "path": path, "from": _shown(change.get("from")), "to": _shown(change.get("to"))})
    return rows


def _shown(value: Any) -> str:
    if value is None:
        return "（无）"
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


templates.env.filters["turn_changes"] = turn_changes


def escalation_service(services: ServicesDep) -> SqlEscalationService:
    return services.escalation


def user_store(services: ServicesDep) -> UserStore:
    return services.users


def current_actor(request: Request, users: Annotated[UserStore, Depends(user_store)],
                  authorization: Annotated[str | None, Header()] = None) -> Actor:
    if authorization is not None and bearer_token(authorization) is None:
        # Basic or anything else: not ours, and never a reason to fall back to the cookie (the
        # cross-site check lets a request with an Authorization header through).
        raise NotAuthenticated("请用 Bearer 令牌或在页面登录。", "Use a Bearer token or log in on the page.")
    return users.actor_for_token(bearer_token(authorization) or request.cookies.get(COOKIE))


ActorDep = Annotated[Actor, Depends(current_actor)]


def login_throttle(services: ServicesDep) -> LoginThrottle:
    return LoginThrottle(services.limits, services.settings.limits)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
DeskDep = Annotated[SqlEscalationService, Depends(escalation_service)]


class TokenRequest(BaseModel):
    username: str = Field(max_length=64, examples=["wang.worker"])
    password: str = Field(max_length=256)


class TextBody(BaseModel):
    text: str = Field(min_length=1, max_length=4000, examples=["您好，我是社区的王社工，明天上午我上门看看。"])


class TransferBody(BaseModel):
    to_centre: str | None = Field(default=None, max_length=64)
    to_worker: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="", max_length=1000)


class ResolveBody(BaseModel):
    outcome: str = Field(min_length=1, max_length=2000, examples=["已上门协调，双方同意晚上10点后不再装修。"])


class NewTicket(BaseModel):
    kind: str = Field(examples=["procedure_problem"])
    priority: str = Field(default="normal", examples=["normal"])
    session_id: str = Field(min_length=1, max_length=128)
    channel: str = Field(default="web", max_length=32)
    user_id: str = Field(default="anonymous", max_length=128)
    summary: str = Field(min_length=1, max_length=1000)
    form_data: dict[str, Any] = Field(default_factory=dict)
    centre: str | None = Field(default=None, max_length=64)


def _ticket_json(desk: SqlEscalationService, ticket_id: str, actor: Actor, with_events: bool = False) -> dict:
    ticket = desk.view(ticket_id, actor)
    data = ticket.public()
    if with_events:
        data["events"] = desk.events(ticket_id)
    return data


api = APIRouter(prefix="/api/v1", tags=["escalation"])


@api.post("/auth/token", summary="工作人员登录 / Log in (returns a bearer token)")
def login_token(request: Request, body: TokenRequest, users: Annotated[UserStore, Depends(user_store)],
                services: ServicesDep) -> dict:
    actor = login_throttle(services).authenticate(users, body.username, body.password, _client(request))
    return {"token": users.issue_token(actor), "username": actor.username, "role": actor.role, "centre": actor.centre}


@api.post("/auth/logout", summary="退出登录 / Log out (revokes the bearer token or console cookie)")
def logout_token(request: Request, actor: ActorDep, users: Annotated[UserStore, Depends(user_store)],
                 authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
    bearer = bearer_token(authorization)
    token = bearer or request.cookies.get(COOKIE)
    if token:
        users.revoke(token)
    response = JSONResponse({"status": "logged_out", "username": actor.username})
    if not bearer:
        response.delete_cookie(COOKIE)
    return response


@api.get("/tickets", summary="工单队列 / The ticket queue")
def list_tickets(actor: ActorDep, desk: DeskDep, status: Annotated[list[str] | None, Query()] = None,
                 kind: str | None = None, priority: str | None = None) -> dict:
    found = desk.list(actor, statuses=status, kind=kind, priority=priority)
    return {"tickets": [t.public() for t in found]}


@api.post("/tickets", status_code=201, summary="新建工单（其他系统用） / Open a ticket from another system")
def open_ticket(body: NewTicket, actor: ActorDep, desk: DeskDep, services: ServicesDep,
                idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict:
    # A ticket on a resident's conversation goes to that conversation's centre, and only a worker
    # of that centre (or a supervisor) may open one: it shows them the transcript and lets them reply.
    centre = services.residents.centre_of(body.session_id) or services.residents.centre(body.centre or actor.centre)
    if not actor.sees_every_centre and centre != actor.centre:
        raise Forbidden("只能为本中心的居民开工单。", "You can only open tickets for your own centre's residents.")
    ticket = desk.open_ticket(kind=body.kind, priority=body.priority, session_id=body.session_id,
                              channel=body.channel, user_id=body.user_id, summary=body.summary,
                              form_data=body.form_data, centre=centre,
                              idempotency_key=_scoped_key(actor, idempotency_key) if idempotency_key else None)
    return ticket.public()


def _scoped_key(actor: Actor, key: str) -> str:
    """An Idempotency-Key is its sender's own: the same key from a worker of another centre (or
    another worker) is another ticket, never a way to read someone else's."""
    return digest_key("api:", actor.centre, actor.username, key)


@api.post("/tickets/claim-next", summary="认领下一张 / Claim the most urgent ticket")
def claim_next(actor: ActorDep, desk: DeskDep) -> dict:
    ticket = desk.claim_next(actor)
    return {"ticket": ticket.public() if ticket else None}


@api.get("/tickets/{ticket_id}", summary="工单详情 / One ticket with its history")
def get_ticket(ticket_id: str, actor: ActorDep, desk: DeskDep) -> dict:
    return _ticket_json(desk, ticket_id, actor, with_events=True)


@api.post("/tickets/{ticket_id}/reveal", summary="显示完整信息 / The full personal data, for the handling worker")
def reveal(ticket_id: str, actor: ActorDep, desk: DeskDep) -> dict:
    """Only the worker who claimed the ticket, in its centre; recorded in the ticket's events."""
    return desk.reveal(ticket_id, actor)


@api.post("/tickets/{ticket_id}/claim")
def claim(ticket_id: str, actor: ActorDep, desk: DeskDep) -> dict:
    return desk.claim(ticket_id, actor).public()


@api.post("/tickets/{ticket_id}/reply")
def reply(ticket_id: str, body: TextBody, actor: ActorDep, desk: DeskDep) -> dict:
    return desk.reply(ticket_id, actor, body.text).public()


@api.post("/tickets/{ticket_id}/ask")
def ask_resident(ticket_id: str, body: TextBody, actor: ActorDep, desk: DeskDep) -> dict:
    return desk.ask_resident(ticket_id, actor, body.text).public()


@api.post("/tickets/{ticket_id}/note")
def note(ticket_id: str, body: TextBody, actor: ActorDep, desk: DeskDep) -> dict:
    return desk.add_note(ticket_id, actor, body.text).public()


@api.post("/tickets/{ticket_id}/transfer")
def transfer(ticket_id: str, body: TransferBody, actor: ActorDep, desk: DeskDep) -> dict:
    return desk.transfer(ticket_id, actor, to_centre=body.to_centre, to_worker=body.to_worker,
                         reason=body.reason).public()


@api.post("/tickets/{ticket_id}/resolve")
def resolve(ticket_id: str, body: ResolveBody, actor: ActorDep, desk: DeskDep) -> dict:
    return desk.resolve(ticket_id, actor, body.outcome).public()


@api.post("/tickets/{ticket_id}/close")
def close(ticket_id: str, actor: ActorDep, desk: DeskDep) -> dict:
    if actor.role == "worker":
        raise Forbidden("只有主管可以直接关闭工单。", "Only a supervisor can close a ticket directly.")
    return desk.close(ticket_id, actor).public()


@api.post("/tickets/{ticket_id}/reopen")
def reopen(ticket_id: str, body: TextBody, actor: ActorDep, desk: DeskDep) -> dict:
    return desk.reopen(ticket_id, actor, body.text).public()


# ---- console pages -------------------------------------------------------------------------------

console = APIRouter(prefix="/console", include_in_schema=False)


def _page_actor(request: Request, users: UserStore) -> Actor | None:
    try:
        return users.actor_for_token(request.cookies.get(COOKIE))
    except NotAuthenticated:
        return None


def _context(actor: Actor, **extra: Any) -> dict:
    return {"actor": actor, "status_labels": STATUS_LABELS_ZH, "kind_labels": KIND_LABELS_ZH,
            "priority_labels": PRIORITY_LABELS_ZH, "role_labels": ROLE_LABELS_ZH, "action_labels": ACTION_LABELS_ZH,
            "statuses": STATUSES, "kinds": KINDS, "priorities": PRIORITIES, "open_statuses": OPEN,
            "now": utcnow(), **extra}


@console.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str | None = None) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": error})


@console.post("/login")
def login_submit(request: Request, users: Annotated[UserStore, Depends(user_store)], services: ServicesDep,
                 username: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=256)]):
    try:
        actor = login_throttle(services).authenticate(users, username, password, _client(request))
    except (NotAuthenticated, TooManyRequests) as exc:
        return templates.TemplateResponse(request, "login.html", {"error": exc.message("zh"), "username": username},
                                          status_code=exc.http_status)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(COOKIE, users.issue_token(actor), httponly=True, samesite="strict",
                        secure=services.settings.api.https,
                        max_age=int(users.token_ttl.total_seconds()))
    return response


@console.post("/logout")
def logout(request: Request, users: Annotated[UserStore, Depends(user_store)]):
    token = request.cookies.get(COOKIE)
    if token:
        users.revoke(token)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@console.get("", response_class=HTMLResponse)
def queue_page(request: Request, users: Annotated[UserStore, Depends(user_store)], desk: DeskDep,
               status: str | None = None, kind: str | None = None, priority: str | None = None):
    actor = _page_actor(request, users)
    if actor is None:
        return RedirectResponse("/console/login", status_code=303)
    return templates.TemplateResponse(request, "queue.html", _context(
        actor, tickets=_queue(desk, actor, status, kind, priority), status=status, kind=kind, priority=priority))


def _queue(desk: SqlEscalationService, actor: Actor, status: str | None, kind: str | None, priority: str | None):
    statuses = [status] if status else (list(OPEN) if status is None else None)
    return desk.list(actor, statuses=statuses, kind=kind or None, priority=priority or None)


class QueueRows:
    """The rendered rows of each view of the queue, shared by this process's consoles until the
    queue changes: the 500 consoles told of one change cost one query, not 500. Used only while
    the notifier hears changes (never while it is down), and never older than MAX_AGE_S."""

    MAX_AGE_S: ClassVar[dict[str, float]] = {LISTENING: 60.0, IN_PROCESS: 2.0}  # other processes' writes go unheard

    def __init__(self, notifier: QueueNotifier) -> None:
        self.notifier = notifier
        self._lock = threading.Lock()
        self._view_locks: dict[tuple, threading.Lock] = {}
        self._views: dict[tuple, tuple[int, float, str]] = {}

    def get(self, view: tuple, render: Callable[[], str]) -> str:
        max_age = self.MAX_AGE_S.get(self.notifier.state)
        if max_age is None:
            return render()
        with self._lock:
            view_lock = self._view_locks.setdefault(view, threading.Lock())
        with view_lock:  # consoles asking at once wait for one query
            version = self.notifier.version  # before the query: a change during it makes the next one ask again
            cached = self._views.get(view)
            if cached is not None and cached[0] == version and time.monotonic() - cached[1] < max_age:
                return cached[2]
            html = render()
            self._views[view] = (version, time.monotonic(), html)
            return html


_queue_rows_lock = threading.Lock()


def queue_rows_cache(request: Request, desk: DeskDep) -> QueueRows:
    """The app's QueueRows (one per app, beside its services)."""
    with _queue_rows_lock:
        rows: QueueRows | None = getattr(request.app.state, "console_queue_rows", None)
        if rows is None or rows.notifier is not desk.queue_changes:
            rows = request.app.state.console_queue_rows = QueueRows(desk.queue_changes)
        return rows


@console.get("/queue-rows", response_class=HTMLResponse)
def queue_rows(actor: ActorDep, desk: DeskDep, rows: Annotated[QueueRows, Depends(queue_rows_cache)],
               status: str | None = None, kind: str | None = None, priority: str | None = None) -> HTMLResponse:
    # The rows show no one's own data: every console of a centre (or every supervisor) shares them.
    view = (None if actor.sees_every_centre else actor.centre, status, kind, priority)
    return HTMLResponse(rows.get(view, lambda: templates.get_template("_rows.html").render(
        _context(actor, tickets=_queue(desk, actor, status, kind, priority)))))


@console.get("/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(ticket_id: str, request: Request, users: Annotated[UserStore, Depends(user_store)], desk: DeskDep,
                services: ServicesDep):
    actor = _page_actor(request, users)
    if actor is None:
        return RedirectResponse("/console/login", status_code=303)
    return _ticket_page(request, actor, desk, services, ticket_id, revealed=None)


@console.post("/tickets/{ticket_id}/reveal", response_class=HTMLResponse)
def reveal_page(ticket_id: str, request: Request, users: Annotated[UserStore, Depends(user_store)], desk: DeskDep,
                services: ServicesDep):
    """显示完整信息: the page again with the full values, for the worker handling the ticket."""
    actor = _page_actor(request, users)
    if actor is None:
        return RedirectResponse("/console/login", status_code=303)
    return _ticket_page(request, actor, desk, services, ticket_id, revealed=desk.reveal(ticket_id, actor))


def _ticket_page(request: Request, actor: Actor, desk: SqlEscalationService, services: ServicesDep, ticket_id: str,
                 revealed: dict[str, Any] | None) -> HTMLResponse:
    ticket = desk.view(ticket_id, actor)
    transcript = services.conversations.history(ticket.session_id, limit=200)
    # Masked for everyone; the full values only after the handling worker asked (an audited reveal).
    public = ticket.public()
    can_reveal = ticket.status in HELD and ticket.assignee == actor.username and ticket.centre == actor.centre
    return templates.TemplateResponse(request, "ticket.html", _context(
        actor, ticket=ticket, events=desk.events(ticket_id), transcript=transcript,
        form_data=revealed["form_data"] if revealed else public["form_data"],
        contact=revealed["contact"] if revealed else public["contact"],
        revealed=revealed is not None, can_reveal=can_reveal and public["form_data"] != ticket.form_data))


# The queue page waits on `/console/events` instead of asking for the whole queue every second:
# one listener per process hears every replica's changes (assistant/escalation/notifier.py).
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing a quiet stream
DEBOUNCE_S = 0.5  # a burst of changes is one refetch of the rows
STOP_CHECK_S = 1.0  # how soon a stream notices that its replica is stopping
SETTLE_S = 3.0  # how long a new stream waits for the listener to connect before telling the page to poll
FALLBACK_POLL_S = 10  # the page polls this often while PostgreSQL cannot be listened to
IN_PROCESS_POLL_S = 30  # SQLite: other processes' writes (CLI, `linli worker`) are unheard, so a slow poll too


def _mode(state: str) -> dict[str, Any]:
    """What the page does meanwhile: wait for `queue` events, poll as well, or only poll."""
    if state == LISTENING:
        return {"mode": "live"}
    if state == IN_PROCESS:
        return {"mode": "live", "poll_s": IN_PROCESS_POLL_S}
    return {"mode": "poll", "poll_s": FALLBACK_POLL_S}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _queue_stream(notifier: QueueNotifier, actor: Actor) -> AsyncIterator[str]:
    """`mode` first and whenever listening stops or resumes (the page refetches its rows on each),
    `queue` when a ticket the actor's queue shows changed (at most one per DEBOUNCE_S), and a
    heartbeat comment after HEARTBEAT_S of quiet."""
    subscription = notifier.subscribe()  # before the first event: nothing after it goes unheard
    centre = None if actor.sees_every_centre else actor.centre
    try:
        yield "retry: 3000\n\n"
        state = await subscription.settle(SETTLE_S)
        yield _sse("mode", _mode(state))
        sent = time.monotonic()
        while True:
            heard = await subscription.wait(STOP_CHECK_S)
            if shutting_down():
                # A stopping replica ends its streams at once rather than holding its shutdown
                # for the whole grace period: the page's EventSource reconnects (retry above),
                # through the proxy, to a replica that is not stopping.
                return
            if subscription.state != state:
                state = subscription.state
                yield _sse("mode", _mode(state))
                sent = time.monotonic()
                continue
            if heard is None:
                if time.monotonic() - sent >= HEARTBEAT_S:
                    yield ": heartbeat\n\n"
                    sent = time.monotonic()
                continue
            if not any(change.concerns(centre) for change in heard):
                continue
            if (quiet := sent + DEBOUNCE_S - time.monotonic()) > 0:
                await asyncio.sleep(quiet)
                heard += subscription.drain()
            tickets = sorted({c.ticket_id for c in heard if c.ticket_id and c.concerns(centre)})
            yield _sse("queue", {"tickets": tickets, "at": utcnow().isoformat()})
            sent = time.monotonic()
    finally:
        subscription.close()


@console.get("/events")
async def queue_events(actor: ActorDep, desk: DeskDep) -> StreamingResponse:
    """Server-sent events for the queue page; async, so an open console holds no worker thread."""
    return StreamingResponse(_queue_stream(desk.queue_changes, actor), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
