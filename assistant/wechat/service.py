"""The WeChat Official Account channel, inbound: verify a callback, parse it, accept it once, and
acknowledge at once; a processor answers later and queues the answer as pushes.

    POST /wechat/callback ─► size · signature · ±5 min · the nonce not used with another body
        · defusedxml (4xx, nothing stored)
        ─► safe mode (required once an EncodingAESKey is set): decrypt (msg_signature)
        ─► wechatpy.parse_message
        ─► INSERT … ON CONFLICT (dedup_key) DO NOTHING   (sender + MsgId; events sender + CreateTime)
        ─► subscribe / image / unsubscribe: a passive reply now (the same one for a retry)
           text / voice / location / menu click: a queued job, answered `success`
    processor (server thread, `linli worker`) ─► lease a job (one at a time per resident)
        ─► the MessageGate (assistant/residents/inbound.py): resident wechat:<openid> bound, the
           message counted, dialogue.handle(…, message_id=dedup_key) (voice: media → speech)
        ─► the reply split to WeChat's length ─► pushes queued in the job's transaction
        ─► PushOutbox sends them (connectors/channels/wechat.py)

Protocol and crypto are wechatpy's; the XML is checked with defusedxml before wechatpy sees it."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import defusedxml.ElementTree as SafeXml  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException
from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.engine import Engine, Row
from wechatpy import parse_message  # type: ignore[import-untyped]
from wechatpy.crypto import WeChatCrypto  # type: ignore[import-untyped]
from wechatpy.exceptions import InvalidSignatureException, WeChatException  # type: ignore[import-untyped]
from wechatpy.replies import TextReply  # type: ignore[import-untyped]
from wechatpy.utils import check_signature  # type: ignore[import-untyped]

from assistant.analytics.feedback import FEEDBACK_ACK, KEYWORD_REPLY_TYPES
from assistant.core.clock import utcnow
from assistant.core.db import lease_due
from assistant.core.errors import LinliError, TooManyRequests
from assistant.core.keys import digest_key
from assistant.core.privacy import mask_pii
from assistant.core.settings import Settings
from assistant.core.wording import LANGUAGES, Wording, read_wording
from assistant.dialogue.reply import Reply
from assistant.escalation.service import SYSTEM
from assistant.residents.inbound import InboundMessage
from assistant.residents.sessions import Resident
from assistant.wechat.tables import wechat_inbound, wechat_nonces
from connectors.channels.wechat import (
    OUTSIDE_WINDOW,
    Push,
    PushOutbox,
    WechatUnreachable,
    insert_once,
    split_text,
)
from knowledge_base.text import detect_language

if TYPE_CHECKING:
    from assistant.analytics.feedback import FeedbackService
    from assistant.core.vault import Vault
    from assistant.dialogue.store import ConversationStore
    from assistant.escalation.service import SqlEscalationService
    from assistant.knowledge import KnowledgeBase
    from assistant.residents.inbound import MessageGate
    from assistant.residents.sessions import ResidentSessions
    from assistant.speech.service import SpeechService



class WechatNeeds(Protocol):
    """What the WeChat channel uses of the other parts, and nothing more: the container
    (assistant/services.py `Services`) is one, built lazily there, so a callback never loads a
    model; a test hands in its own. Named here so the channel does not import the app above it."""

    @property
    def gate(self) -> MessageGate: ...
    @property
    def escalation(self) -> SqlEscalationService: ...
    @property
    def vault(self) -> Vault: ...
    @property
    def speech(self) -> SpeechService: ...
    @property
    def knowledge_base(self) -> KnowledgeBase: ...
    @property
    def feedback(self) -> FeedbackService: ...
    @property
    def conversations(self) -> ConversationStore: ...
    @property
    def residents(self) -> ResidentSessions: ...


log = logging.getLogger("linli.wechat")
WORDING_PATH = Path(__file__).resolve().parent / "wording.yaml"
QUEUED_TYPES = ("text", "voice", "location", "click")
# Attempts at a job whose processing raised before the resident is told it failed.
MAX_ATTEMPTS = 3
# WeChat's openids are 28 characters and MsgIds 64-bit numbers; anything much longer is not WeChat.
MAX_OPENID_CHARS = 128
MAX_MSG_ID_CHARS = 24
# Expired nonces are swept once every this many callbacks (per process).
_SWEEP_NONCES_EVERY = 200


def load_wording(path: Path = WORDING_PATH) -> tuple[Wording, dict[str, dict[str, str]]]:
    """The sentences, and the menu (EventKey -> the question it asks), both checked."""
    data = dict(read_wording(path))
    menu = data.pop("menu", {})
    wording = Wording({str(k): {lang: v[lang] for lang in LANGUAGES} for k, v in data.items()}, path.name)
    wording.require("welcome", "only_text_and_voice", "heard", "sources", "citation_line", "quick_replies",
                    "location_received", "failed", "undelivered_window", "undelivered")
    return wording, {str(k): dict(v) for k, v in menu.items()}


WORDING, MENU = load_wording()


class WechatForbidden(LinliError):
    code = "wechat_forbidden"
    http_status = 403


class WechatBadRequest(LinliError):
    code = "wechat_bad_request"
    http_status = 400


class WechatDisabled(LinliError):
    code = "wechat_disabled"
    http_status = 404


@dataclass(frozen=True)
class Ack:
    """What the callback answers: `success`, or a passive reply (XML, encrypted in safe mode)."""

    body: str
    media_type: str = "text/plain"
    duplicate: bool = False


def _safe_xml(data: bytes | str) -> None:
    """Malformed XML, a DOCTYPE or entities: refused (400) before wechatpy parses anything."""
    try:
        root = SafeXml.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, SafeXml.ParseError, ValueError) as exc:
        raise WechatBadRequest("消息格式不正确。", "Malformed or unsafe XML.") from exc
    if root.tag != "xml":
        raise WechatBadRequest("消息格式不正确。", "Not a WeChat message.")


def format_reply(reply: Reply, language: str, heard: str | None = None, feedback_hint: str | None = None) -> list[str]:
    """A dialogue reply as WeChat text messages: what was heard, the answer, its citations as
    short numbered lines, the quick replies as one line, how to rate it; split to WeChat's length."""
    lines = [WORDING.say("heard", language, text=heard)] if heard is not None else []
    lines.append(reply.text)
    if reply.citations:
        lines += ["", WORDING.say("sources", language)]
        # One line per document, with the numbers of all its cited passages: "[1][3] title".
        documents: dict[str, tuple[list[int], str]] = {}
        for n, c in enumerate(reply.citations, 1):
            title = c.get("title") or c.get("doc_id", "")
            documents.setdefault(c.get("doc_id") or title, ([], title))[0].append(n)
        lines += [WORDING.say("citation_line", language, number="][".join(map(str, numbers)), title=title)
                  for numbers, title in documents.values()]
    if reply.quick_replies:
        lines += ["", WORDING.say("quick_replies", language, options=" / ".join(reply.quick_replies))]
    if feedback_hint:
        lines += ["", feedback_hint]
    return split_text("\n".join(lines))


class UndeliveredNote:
    """The push outbox's `on_failed`: a worker's reply that WeChat refused, or that may not have
    reached it (unconfirmed), becomes a system note on the ticket, so the console says so."""

    def __init__(self, services: WechatNeeds) -> None:
        self.services = services

    def __call__(self, push: Push, errcode: int | None) -> None:
        if not push.ticket_id:
            return
        if push.status == "unconfirmed":
            note = WORDING.say("unconfirmed", "zh", error=push.last_error or "")
        elif errcode == OUTSIDE_WINDOW:
            note = WORDING.say("undelivered_window", "zh")
        else:
            note = WORDING.say("undelivered", "zh", error=push.last_error or str(errcode))
        self.services.escalation.add_note(push.ticket_id, SYSTEM, note)


class WechatService:
    # A message's lease: a worker killed while answering it (and so the resident's later messages,
    # which wait in line behind it) is taken over by another worker this long after it took it.
    # Answering takes seconds, a long voice clip about twenty on two cores.
    def __init__(self, settings: Settings, engine: Engine, services: WechatNeeds, outbox: PushOutbox,
                 lease_s: float = 45.0) -> None:
        self.settings = settings.wechat
        if not self.settings.enabled or self.settings.token is None:
            raise WechatDisabled("微信渠道未开启。", "The WeChat channel is off (LINLI_WECHAT__TOKEN is not set).")
        self.token = self.settings.token.get_secret_value()
        self.services = services
        self.outbox = outbox
        self.engine = engine
        aes_key = self.settings.encoding_aes_key
        self.crypto = WeChatCrypto(self.token, aes_key.get_secret_value(), self.settings.app_id) if aes_key else None
        self.lease = timedelta(seconds=lease_s)
        self._wake = threading.Event()
        self._callbacks = 0

    # ---- the callback (fast: no model, no WeChat call) --------------------------------------

    def verify(self, signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Server verification: the signature over token/timestamp/nonce, then echo `echostr`."""
        self._check_signature(signature, timestamp, nonce)
        return echostr

    def receive(self, body: bytes, *, signature: str, timestamp: str, nonce: str, encrypt_type: str | None = None,
                msg_signature: str | None = None) -> Ack:
        self._check_signature(signature, timestamp, nonce)
        _safe_xml(body)
        safe_mode = (encrypt_type or "raw").lower() == "aes"
        if self.crypto is not None and not safe_mode:
            # With an EncodingAESKey set, WeChat sends every message encrypted (safe or compatible
            # mode); a plain one is someone else's, whose body no signature covers.
            raise WechatForbidden("只接受加密消息。", "Safe mode is configured: plain callbacks are refused.")
        self._remember_nonce(signature, timestamp, nonce, body)
        xml: bytes | str = body
        if safe_mode:
            if self.crypto is None:
                raise WechatBadRequest("没有配置消息加密密钥。", "Safe mode needs LINLI_WECHAT__ENCODING_AES_KEY.")
            try:
                xml = self.crypto.decrypt_message(body, msg_signature or "", timestamp, nonce)
            except InvalidSignatureException as exc:
                raise WechatForbidden("签名不正确。", "Bad msg_signature.") from exc
            except (WeChatException, KeyError, ValueError, TypeError) as exc:
                raise WechatBadRequest("消息无法解密。", "The message cannot be decrypted.") from exc
            _safe_xml(xml)
        try:
            message = parse_message(xml)
        except Exception as exc:  # wechatpy raises whatever xmltodict or a field raised
            raise WechatBadRequest("消息格式不正确。", "Not a WeChat message.") from exc
        if message is None or not message.source or len(message.source) > MAX_OPENID_CHARS \
                or len(str(message.id or "")) > MAX_MSG_ID_CHARS:
            raise WechatBadRequest("消息格式不正确。", "Not a WeChat message.")
        reply_text, duplicate = self._accept(message)
        if reply_text is None:
            return Ack("success", duplicate=duplicate)
        reply = TextReply(source=message.target, target=message.source, content=reply_text,
                          time=int(time.time())).render()
        if safe_mode and self.crypto is not None:
            reply = self.crypto.encrypt_message(reply, nonce, timestamp)
        return Ack(reply, "application/xml", duplicate)

    def _check_signature(self, signature: str, timestamp: str, nonce: str) -> None:
        try:
            check_signature(self.token, signature or "", timestamp or "", nonce or "")
        except InvalidSignatureException as exc:
            raise WechatForbidden("签名不正确。", "Bad signature.") from exc
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError as exc:
            raise WechatForbidden("时间戳不正确。", "Bad timestamp.") from exc
        if skew > self.settings.timestamp_window_s:
            raise WechatForbidden("消息已过期。", "The timestamp is outside the allowed window.")

    def _remember_nonce(self, signature: str, timestamp: str, nonce: str, body: bytes) -> None:
        """A signed (signature, timestamp, nonce) is good for one body: WeChat's retry of a
        callback sends the same body again, a replay within the window sends another."""
        key = digest_key("", signature, timestamp, nonce)
        digest = hashlib.sha256(body).hexdigest()
        expires = utcnow() + timedelta(seconds=2 * self.settings.timestamp_window_s)
        with self.engine.begin() as conn:
            new = insert_once(conn, wechat_nonces, "nonce_key",
                              dict(nonce_key=key, body_sha256=digest, expires_at=expires))
            if not new:
                first = conn.execute(select(wechat_nonces.c.body_sha256)
                                     .where(wechat_nonces.c.nonce_key == key)).scalar()
                if first != digest:
                    log.warning("wechat callback refused: its signature was used before with another body")
                    raise WechatForbidden("签名已被使用。", "This signature was already used for another message.")
            self._callbacks += 1
            if self._callbacks % _SWEEP_NONCES_EVERY == 0:
                conn.execute(delete(wechat_nonces).where(wechat_nonces.c.expires_at < utcnow()))

    def _accept(self, message: Any) -> tuple[str | None, bool]:
        """Store the message once; (the passive reply or None, whether it was a duplicate)."""
        kind, payload, instant = self._classify(message)
        # The sender is part of the key: a MsgId is only unique per account and sender, and a
        # forged callback must not turn a resident's real message into a "duplicate".
        key = f"msg:{message.source}:{message.id}" if message.id else f"event:{message.source}:{message.time}"
        now = utcnow()
        # A resident may type an ID or phone number: kept encrypted until it is answered.
        sealed = self.services.vault.encrypt_fields(payload)
        with self.engine.begin() as conn:
            new = insert_once(conn, wechat_inbound, "dedup_key", dict(
                dedup_key=key, openid=message.source, msg_type=kind, payload=sealed,
                status="queued" if kind in QUEUED_TYPES else "instant", attempts=0, next_attempt_at=now,
                created_at=now, updated_at=now))
        if new and kind in QUEUED_TYPES:
            self._wake.set()
        if not new:
            log.info("wechat duplicate %s from %s: acknowledged, not processed again", key,
                     mask_pii(message.source[:8]))
        return instant, not new

    @staticmethod
    def _classify(message: Any) -> tuple[str, dict[str, Any], str | None]:
        """(kind, payload for the processor, the passive reply when there is one)."""
        kind = message.type
        if kind == "text":
            return "text", {"content": message.content}, None
        if kind == "voice":
            return "voice", {"media_id": message.media_id, "format": message.format}, None
        if kind == "location":
            return "location", {"label": message.label, "x": message.location_x, "y": message.location_y}, None
        if kind == "event":
            event = message.event
            if event in ("subscribe", "subscribe_scan"):
                return "subscribe", {}, WORDING.say("welcome", "zh")
            if event == "click":
                return "click", {"key": message.key}, None
            return event or "event", {}, None  # unsubscribe, view, …: nothing to say
        return kind, {}, WORDING.say("only_text_and_voice", "zh")  # image, video, link, file …

    def resident(self, openid: str) -> Resident:
        """WeChat's resident: the openid WeChat signed for, one conversation each (`wechat:<openid>`,
        owned by that key), at the deployment's centre (one Official Account serves the city)."""
        session_id = f"wechat:{openid}"
        return Resident(session_id, "wechat", openid, self.services.residents.centre(None), session_id)

    # ---- the processor ----------------------------------------------------------------------

    def process_due(self, worker: str, limit: int = 10) -> int:
        """Answer the due inbound jobs this worker can lease; returns how many were answered."""
        done = 0
        for job_id in self._lease(worker, limit):
            done += self._process(job_id, worker)
        return done

    def work(self, worker: str) -> int:
        """One round: answer due messages, then send due pushes."""
        return self.process_due(worker) + self.outbox.deliver_due(worker)

    def run(self, stop: threading.Event, worker: str) -> None:
        """Work until `stop` is set, waiting `poll_interval_s` (or for a new message) when idle."""
        while not stop.is_set():
            try:
                busy = self.work(worker)
            except Exception:  # a failed round is logged and retried, never fatal
                log.exception("wechat processing round failed")
                busy = 0
            if not busy:
                self._wake.wait(self.settings.poll_interval_s)
                self._wake.clear()

    def start_thread(self, worker: str) -> WechatThread:
        thread = WechatThread(self, worker)
        thread.start()
        return thread

    def _lease(self, worker: str, limit: int) -> list[int]:
        now = utcnow()
        free = and_(wechat_inbound.c.status == "queued", wechat_inbound.c.next_attempt_at <= now,
                    or_(wechat_inbound.c.lease_until.is_(None), wechat_inbound.c.lease_until < now))
        # One message at a time per resident, in order: their conversation has one state.
        earlier = wechat_inbound.alias("earlier")
        first = ~exists(select(earlier.c.id).where(earlier.c.openid == wechat_inbound.c.openid,
                                                   earlier.c.id < wechat_inbound.c.id,
                                                   earlier.c.status == "queued"))
        return lease_due(self.engine, wechat_inbound.c.id, free, worker=worker, until=now + self.lease, limit=limit,
                         order_by=wechat_inbound.c.id, in_line=first)

    def _process(self, job_id: int, worker: str) -> int:
        with self.engine.connect() as conn:
            job = conn.execute(select(wechat_inbound).where(wechat_inbound.c.id == job_id)).one()
        mine = and_(wechat_inbound.c.id == job_id, wechat_inbound.c.lease_owner == worker)
        ticket_id: str | None = None
        try:
            parts, ticket_id = self._answer(job)
        except WechatUnreachable as exc:  # the voice could not be fetched yet: keep the job
            return self._later(job, mine, str(exc))
        except Exception as exc:
            log.exception("wechat message %s could not be answered", job.dedup_key)
            if job.attempts + 1 < MAX_ATTEMPTS:
                return self._later(job, mine, f"{type(exc).__name__}: {exc}")
            parts = [WORDING.say("failed", "zh")]
        session_id = f"wechat:{job.openid}"
        with self.engine.begin() as conn:
            result = conn.execute(update(wechat_inbound).where(mine).values(
                status="done", attempts=job.attempts + 1, lease_owner=None, lease_until=None, updated_at=utcnow()))
            if result.rowcount != 1:
                return 0  # the lease ran out and another worker took the job: it answers
            for number, part in enumerate(parts):
                self.outbox.queue(conn, openid=job.openid, text=part, session_id=session_id, ticket_id=ticket_id,
                                  push_key=f"in:{job.id}:{number}")
        return 1

    def _later(self, job: Row, mine: Any, error: str) -> int:
        delay = min(self.settings.push_retry_base_s * 2 ** job.attempts, self.settings.push_retry_max_s)
        with self.engine.begin() as conn:
            conn.execute(update(wechat_inbound).where(mine).values(
                attempts=job.attempts + 1, next_attempt_at=utcnow() + timedelta(seconds=delay), lease_owner=None,
                lease_until=None, last_error=error[:500], updated_at=utcnow()))
        return 0

    def _answer(self, job: Row) -> tuple[list[str], str | None]:
        """The pushes that answer one inbound job, and the ticket they belong to (if any)."""
        openid, payload = job.openid, self.services.vault.decrypt_fields(job.payload)
        gate = self.services.gate
        resident = self.resident(openid)
        try:
            session_id, centre = gate.admit(resident)
        except TooManyRequests as exc:  # a script flooding one openid: told to wait, like a page
            return [exc.message(detect_language(str(payload.get("content") or "")))], None
        if job.msg_type == "location":
            label = payload.get("label") or f"{payload.get('x')}, {payload.get('y')}"
            return [WORDING.say("location_received", "zh", label=label)], None
        if job.msg_type == "voice":
            audio = self.outbox.api.download_media(str(payload["media_id"]))
            try:
                heard = self.services.speech.hear(audio, content_type="audio/amr")
            except LinliError as exc:  # unreadable, silent, too long: say why
                return [exc.message("zh")], None
            # Imported here: speech pulls in pypinyin (0.3 s), which no text message or command needs.
            from assistant.speech.service import reply_to_voice  # noqa: PLC0415

            reply = reply_to_voice(gate.keyed(job.dedup_key), heard, session_id, "wechat", openid,
                                   self.services.knowledge_base.benefit_amounts())
            language = "en" if heard.language == "en" else "zh"
            return format_reply(reply, language, heard=heard.text), reply.ticket_id
        if job.msg_type == "click":
            question = MENU.get(str(payload.get("key")), {}).get("zh")
            if question is None:
                return [WORDING.say("only_text_and_voice", "zh")], None
            text = question
        else:
            text = str(payload.get("content") or "")
            thanks = self._rate_last_answer(session_id, text)
            if thanks is not None:
                return [thanks], None
        reply = gate.hand_over(InboundMessage(resident, session_id, text, job.dedup_key, centre))
        language = detect_language(text) if text.strip() else "zh"
        return format_reply(reply, language, feedback_hint=self._feedback_hint(reply, language)), reply.ticket_id

    # ---- feedback: "满意" / "不满意" (feedback.yaml's keywords) rates the answer just sent ------

    def _feedback_hint(self, reply: Reply, language: str) -> str | None:
        if reply.reply_type not in KEYWORD_REPLY_TYPES or reply.turn_id is None:
            return None
        return str(self.services.feedback.wording.say("wechat.hint", language))

    def _rate_last_answer(self, session_id: str, text: str) -> str | None:
        """The thanks, when `text` is only a feedback keyword and Linli's last message in this
        conversation is a recent answer; then the keyword rates that answer (again: replaces) and
        never reaches the dialogue. Otherwise None: the message is an ordinary one."""
        feedback = self.services.feedback
        rating = feedback.keyword_rating(text)
        turn_id = feedback.answer_to_rate(session_id) if rating is not None else None
        if rating is None or turn_id is None:
            return None
        feedback.rate(turn_id, rating)
        language = detect_language(text)
        thanks = str(feedback.wording.say(f"wechat.thanks_{rating}", language))
        conversations = self.services.conversations
        conversations.add_turn(session_id, "resident", text)
        conversations.add_turn(session_id, "assistant", thanks, None, {FEEDBACK_ACK: True, "rated_turn": turn_id})
        return thanks


class WechatThread(threading.Thread):
    """The server's own WeChat processor (assistant/api.py's lifespan starts and stops it)."""

    def __init__(self, service: WechatService, worker: str) -> None:
        super().__init__(name=f"wechat-{worker}", daemon=True)
        self.service = service
        self.worker = worker
        self.stopping = threading.Event()

    def run(self) -> None:
        self.service.run(self.stopping, self.worker)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.service._wake.set()
        self.join(timeout)
