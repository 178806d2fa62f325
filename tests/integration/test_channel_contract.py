"""The channel contract (assistant/residents/inbound.py, assistant/channels.py), the same checks on
every registered channel: the kiosk and phone pages, an integration's API calls and WeChat.

Inbound: a request the channel cannot verify is refused and leaves nothing; a verified one names
its resident (owner, channel, user, centre); the channel's own message key makes a resend one
turn. Outbound: Linli's reply and a worker's words reach the resident on the channel they used;
words that cannot be delivered now are kept for later or reported on the ticket, never lost.

Each channel is driven the way its real client drives it (a page with its session token, an
integration with its key, WeChat with signed callbacks and a stand-in WeChat API), in one app."""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from assistant.api import create_app
from assistant.channels import CHANNELS
from assistant.core.settings import ApiSettings, EscalationSettings, Settings, WechatSettings, get_settings
from assistant.dialogue.store import conversations, turns
from assistant.escalation.auth import UserStore
from assistant.services import Services
from tests.conftest import SHARED_CACHE
from tests.integration.test_wechat import (  # noqa: F401
    APP_ID,
    SECRET,
    TOKEN,
    Standin,
    message_xml,
    signed_query,
    standin,
)

API_KEY = "contract-key-0123456789"
CENTRE = "centre-contract"


@dataclass
class App:
    client: TestClient
    services: Services
    worker: dict[str, str]
    standin: Standin


@pytest.fixture(scope="module")
def app(databases, small_index_dir, tmp_path_factory, standin) -> Iterator[App]:  # noqa: F811 - the stand-in fixture
    root = tmp_path_factory.mktemp("channels")
    settings = Settings(
        data_dir=root / "var", index_dir=small_index_dir / "var" / "index", embedding_cache=SHARED_CACHE,
        corpus_dirs=[small_index_dir / "corpus"], law_corpus=None,
        escalation=EscalationSettings(centre=CENTRE),
        api=ApiSettings(keys={"crm": SecretStr(API_KEY)}, background=False),
        # Processed by the test (services.wechat.work), not by a server thread: each step is seen.
        wechat=WechatSettings(token=SecretStr(TOKEN), app_id=APP_ID, app_secret=SecretStr(SECRET),
                              api_base=standin.base, process_in_server=False, push_retry_base_s=0.05,
                              push_retry_max_s=0.1))
    users = UserStore(databases.engine(settings.resolved_database_url))
    users.add("wang", "wang-password-2024", role="worker", centre=CENTRE)
    application = create_app()
    application.dependency_overrides[get_settings] = lambda: settings
    with TestClient(application) as client:
        login = client.post("/api/v1/auth/token", json={"username": "wang", "password": "wang-password-2024"})
        yield App(client, client.app.state.services, {"Authorization": f"Bearer {login.json()['token']}"}, standin)


class Driver(ABC):
    """One channel's client: how it sends, what it expects to be named, what its resident received."""

    owner: str
    channel: str
    user_id: str
    session_id: str
    # True: undeliverable words are reported on the ticket; False: they wait in the outbox.
    reports_undeliverable = False

    def __init__(self, app: App) -> None:
        self.app = app
        self.received: list[str] = []  # what the resident has been shown, in order

    @abstractmethod
    def send(self, text: str, key: str | None, *, verified: bool = True) -> int:
        """Send one message; the HTTP status the channel answered with."""

    @abstractmethod
    def collect(self) -> list[str]:
        """Whatever reached the resident since the last call (replies and a worker's words)."""

    closed = False

    def make_unreachable(self) -> None:
        """The resident's side stops taking messages (the page is closed, WeChat refuses)."""
        self.closed = True

    def restore(self) -> None:
        """The resident's side is back."""
        self.closed = False


class OutboxDriver(Driver):
    """A channel whose client posts to the residents' API and reads a worker's words from the
    outbox (`GET /api/v1/sessions/{id}/messages`) with its own credential."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.replies: list[str] = []
        self.after = 0

    @abstractmethod
    def credential(self, verified: bool = True) -> dict[str, str]:
        """The request headers that prove who is speaking (or a forged one)."""

    @abstractmethod
    def message_body(self, text: str, key: str | None) -> dict[str, object]: ...

    def read_params(self) -> dict[str, object]:
        return {"after": self.after}

    def send(self, text: str, key: str | None, *, verified: bool = True) -> int:
        response = self.app.client.post("/api/v1/messages", json=self.message_body(text, key),
                                        headers=self.credential(verified))
        if response.status_code == 200:
            self.replies.append(response.json()["text"])
        return response.status_code

    def collect(self) -> list[str]:
        got, self.replies = self.replies, []
        if not self.closed:
            answer = self.app.client.get(f"/api/v1/sessions/{self.session_id}/messages", headers=self.credential(),
                                         params=self.read_params()).json()
            # Before its first message an integration's conversation is nobody's: nothing to read (403).
            messages = answer.get("messages", [])
            got += [m["text"] for m in messages]
            self.after = max([self.after, *(m["id"] for m in messages)])
        return got


class PageDriver(OutboxDriver):
    channel = "kiosk"

    def __init__(self, app: App) -> None:
        super().__init__(app)
        minted = app.client.post("/api/v1/sessions", json={"channel": "kiosk", "centre": CENTRE}).json()
        self.token, self.session_id = minted["session_token"], minted["session_id"]
        self.owner, self.user_id = f"page:{self.session_id}", self.session_id

    def credential(self, verified: bool = True) -> dict[str, str]:
        return {"X-Session-Token": self.token if verified else "not-a-page-token-" + uuid.uuid4().hex}

    def message_body(self, text: str, key: str | None) -> dict[str, object]:
        return {"text": text, "message_id": key}


class IntegrationDriver(OutboxDriver):
    channel = "hotline-12345"

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.user_id = f"caller-{uuid.uuid4().hex[:6]}"
        self.session_id = f"hotline-{uuid.uuid4().hex[:10]}"
        self.owner = f"api:crm:{self.user_id}"

    def credential(self, verified: bool = True) -> dict[str, str]:
        return {"X-API-Key": API_KEY if verified else "wrong-key-" + uuid.uuid4().hex}

    def message_body(self, text: str, key: str | None) -> dict[str, object]:
        return {"text": text, "message_id": key, "session_id": self.session_id, "user_id": self.user_id,
                "channel": self.channel, "centre": CENTRE}

    def read_params(self) -> dict[str, object]:
        return {**super().read_params(), "user_id": self.user_id}


class WechatDriver(Driver):
    channel = "wechat"
    reports_undeliverable = True

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.user_id = f"o-contract-{uuid.uuid4().hex[:8]}"
        self.session_id = self.owner = f"wechat:{self.user_id}"
        self.seen = 0

    def send(self, text: str, key: str | None, *, verified: bool = True) -> int:
        query = signed_query() if verified else {**signed_query(), "signature": "0" * 40}
        msg_id = int(uuid.UUID(key).int % 10**15) if key else int(time.time() * 1000)
        response = self.app.client.post("/wechat/callback", params=query,
                                        content=message_xml(self.user_id, "text", msg_id, Content=text))
        self._work()
        return response.status_code

    def _work(self) -> None:
        while self.app.services.wechat.work("contract"):
            pass

    def collect(self) -> list[str]:
        self._work()
        pushes = self.app.standin.pushes(self.user_id)
        got, self.seen = [p["content"] for p in pushes[self.seen:]], len(pushes)
        return got

    def make_unreachable(self) -> None:
        self.app.standin.fault("window")  # 45015: the resident has not written for 48 hours

    def restore(self) -> None:
        self.app.standin.fault("none")


DRIVERS = {"pages": PageDriver, "integration": IntegrationDriver, "wechat": WechatDriver}


def test_every_registered_channel_is_under_this_contract():
    assert {plugin.name for plugin in CHANNELS} == set(DRIVERS)


@pytest.fixture(params=list(DRIVERS))
def driver(request, app) -> Driver:
    return DRIVERS[request.param](app)


def _resident_turns(app: App, session_id: str) -> list[str]:
    with app.services.conversations.engine.connect() as conn:
        return list(conn.execute(select(turns.c.text).where(turns.c.session_id == session_id,
                                                            turns.c.role == "resident").order_by(turns.c.id)).scalars())


def _conversation(app: App, session_id: str):
    with app.services.conversations.engine.connect() as conn:
        return conn.execute(select(conversations).where(conversations.c.session_id == session_id)).first()


def test_an_unverified_message_is_refused_and_leaves_nothing(app, driver):
    status = driver.send("我想问问高龄津贴", uuid.uuid4().hex, verified=False)
    assert status in (401, 403)
    assert _resident_turns(app, driver.session_id) == []
    assert driver.collect() == []


def test_a_verified_message_names_its_resident(app, driver):
    assert driver.send("你好", uuid.uuid4().hex) == 200
    row = _conversation(app, driver.session_id)
    assert (row.owner, row.channel, row.user_id, row.centre) == (driver.owner, driver.channel, driver.user_id, CENTRE)
    assert _resident_turns(app, driver.session_id) == ["你好"]
    assert len(driver.collect()) >= 1  # Linli's reply reached the resident


def test_the_channels_message_key_makes_a_resend_one_turn(app, driver):
    key = str(uuid.uuid4())
    assert driver.send("失业登记要带什么材料", key) == 200
    first = driver.collect()
    assert driver.send("失业登记要带什么材料", key) == 200  # the channel's retry of the same message
    again = driver.collect()
    assert _resident_turns(app, driver.session_id) == ["失业登记要带什么材料"]
    assert first and again in ([], first)  # nothing new, or the very same reply again


def _ticket_of(app: App, driver: Driver) -> str:
    tickets = app.client.get("/api/v1/tickets", headers=app.worker).json()["tickets"]
    return next(t["ticket_id"] for t in tickets if t["session_id"] == driver.session_id)


def test_a_workers_words_reach_the_resident_on_their_channel_and_undelivered_ones_are_not_lost(app, driver):
    assert driver.send("我要转人工", uuid.uuid4().hex) == 200
    driver.collect()
    ticket_id = _ticket_of(app, driver)
    assert app.client.post(f"/api/v1/tickets/{ticket_id}/claim", headers=app.worker).status_code == 200
    words = f"您好，我是社区的王老师，编号{uuid.uuid4().hex[:4]}。"
    assert app.client.post(f"/api/v1/tickets/{ticket_id}/reply", headers=app.worker,
                           json={"text": words}).status_code == 200
    assert words in driver.collect()

    driver.make_unreachable()
    try:
        later = f"明天上午十点我们上门，编号{uuid.uuid4().hex[:4]}。"
        assert app.client.post(f"/api/v1/tickets/{ticket_id}/reply", headers=app.worker,
                               json={"text": later}).status_code == 200
        assert later not in driver.collect()
    finally:
        driver.restore()
    events = app.client.get(f"/api/v1/tickets/{ticket_id}", headers=app.worker).json()["events"]
    notes = [e["text"] for e in events if e["action"] == "note"]
    if driver.reports_undeliverable:
        assert notes, "the worker is told the words did not arrive"
    else:
        assert later in driver.collect()  # kept in the outbox until the resident's side is back


def test_a_verified_resident_cannot_speak_in_anothers_conversation(app):
    page, integration = PageDriver(app), IntegrationDriver(app)
    integration.session_id = page.session_id  # an integration naming a page's conversation
    assert integration.send("你好", None) in (403, 422)
    assert _resident_turns(app, page.session_id) == []


def test_a_flood_is_slowed_on_every_channel_alike(app, driver):
    limit = app.services.settings.limits.messages_per_session_per_minute
    statuses = [driver.send(f"你好{n}", uuid.uuid4().hex) for n in range(limit + 1)]
    told = driver.collect()
    if isinstance(driver, WechatDriver):  # acknowledged at once; the resident is told to slow down
        assert all(s == 200 for s in statuses) and any("秒后再发" in text for text in told)
    else:
        assert statuses[-1] == 429 and statuses[0] == 200
    assert len(_resident_turns(app, driver.session_id)) == limit


