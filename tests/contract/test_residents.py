"""Residents' credentials and message receipts on both backends: a conversation belongs to the
credential that started it, and a repeated message id is processed once, also when two copies race."""

from __future__ import annotations

import threading
import uuid

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from assistant.channels import reserved_names
from assistant.core.errors import Forbidden, LinliError, NotAuthenticated
from assistant.core.settings import ApiSettings, EscalationSettings, Settings, WechatSettings
from assistant.dialogue.receipts import MessageReceipts, StillProcessing, message_key
from assistant.dialogue.store import ConversationStore
from assistant.residents.sessions import InvalidChannel, InvalidSessionId, ResidentSessions
from connectors.channels.wechat import PushOutbox, WechatChannel, wechat_pushes


def _settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, escalation=EscalationSettings(centre="centre-a", centres=["centre-b"]),
                    api=ApiSettings(keys={"crm": SecretStr("crm-key-123456"), "erp": SecretStr("erp-key-654321")}))


def test_a_minted_page_session_is_its_own_and_nobody_elses(databases, database_url, tmp_path):
    residents = ResidentSessions(databases.engine(database_url), _settings(tmp_path), reserved=reserved_names())
    minted = residents.mint("kiosk", "centre-b")
    resident = residents.for_token(minted.token)
    assert resident.session_id == minted.session_id and resident.centre == "centre-b"
    assert resident.owner == f"page:{minted.session_id}" and resident.channel == "kiosk"
    assert len(minted.token) >= 40 and minted.session_id.startswith("kiosk-")
    # A different page session (or an integration client) cannot speak in it.
    other = residents.for_token(residents.mint("chat").token)
    with pytest.raises(Forbidden):
        residents.bind(minted.session_id, owner=other.owner, channel="chat", user_id=other.user_id)
    with pytest.raises(Forbidden):
        residents.check_owner(minted.session_id, residents.for_api_key("crm-key-123456", "u1", "web"))
    residents.check_owner(minted.session_id, resident)
    residents.end(minted.token)
    with pytest.raises(NotAuthenticated):
        residents.for_token(minted.token)
    with pytest.raises(NotAuthenticated):
        residents.for_token("made-up-token")


def test_api_clients_act_only_for_their_users_and_centres_are_known_ones(databases, database_url, tmp_path):
    residents = ResidentSessions(databases.engine(database_url), _settings(tmp_path), reserved=reserved_names())
    with pytest.raises(NotAuthenticated):
        residents.for_api_key("wrong-key", "u1", "web")
    alice = residents.for_api_key("crm-key-123456", "alice", "web", centre="centre-b")
    session = f"crm-{uuid.uuid4().hex[:8]}"
    assert residents.bind(session, owner=alice.owner, channel="web", user_id="alice", centre=alice.centre) == "centre-b"
    bob = residents.for_api_key("crm-key-123456", "bob", "web")
    erp_alice = residents.for_api_key("erp-key-654321", "alice", "web")
    for stranger in (bob, erp_alice):
        with pytest.raises(Forbidden):
            residents.bind(session, owner=stranger.owner, channel="web", user_id=stranger.user_id)
    # An invented centre lands in the deployment's own; the conversation keeps its first centre.
    assert residents.for_api_key("crm-key-123456", "carol", "web", centre="no-such-centre").centre == "centre-a"
    assert residents.bind(session, owner=alice.owner, channel="web", user_id="alice", centre="centre-a") == "centre-b"
    with pytest.raises(InvalidSessionId):
        residents.check_client_session_id("wechat:o6_bmjrPTlm6_2sgVt7hMZOPfL2M")
    with pytest.raises(InvalidSessionId):
        residents.check_client_session_id("kiosk-0a1b2c")
    with pytest.raises(LinliError):
        residents.mint("telegram")


def test_a_conversation_from_before_owners_is_taken_by_the_first_credential(databases, vault, database_url, tmp_path):
    residents = ResidentSessions(databases.engine(database_url), _settings(tmp_path), reserved=reserved_names())
    session = f"old-{uuid.uuid4().hex[:8]}"
    # An ownerless, pre-0005 conversation.
    ConversationStore(residents.engine, vault).get_or_create(session, "web", "u1")
    alice = residents.for_api_key("crm-key-123456", "u1", "web")
    assert residents.bind(session, owner=alice.owner, channel="web", user_id="u1") == "centre-a"
    with pytest.raises(Forbidden):
        residents.bind(session, owner="api:erp:u1", channel="web", user_id="u1")


def test_two_first_binds_racing_leave_one_owner(databases, database_url, tmp_path):
    residents = ResidentSessions(databases.engine(database_url), _settings(tmp_path), reserved=reserved_names())
    session = f"race-{uuid.uuid4().hex[:8]}"
    outcomes: list[str] = []

    def bind(owner: str) -> None:
        try:
            residents.bind(session, owner=owner, channel="web", user_id=owner)
            outcomes.append(owner)
        except Forbidden:
            outcomes.append("refused")

    threads = [threading.Thread(target=bind, args=(f"api:crm:u{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes).count("refused") == 5


def test_a_message_key_is_processed_once_even_when_copies_race(databases, vault, database_url):
    receipts = MessageReceipts(ConversationStore(databases.engine(database_url), vault).engine, wait_s=5, poll_s=0.02)
    key = f"web:s1:{uuid.uuid4().hex}"
    first_callers: list[int] = []
    replies: list[dict] = []
    gate = threading.Barrier(5)

    def copy(n: int) -> None:
        gate.wait()
        stored = receipts.claim(key, "s1")
        if stored is None:
            first_callers.append(n)
            receipts.finish(key, {"reply_type": "answer", "text": f"reply by {n}"})
        else:
            replies.append(stored)

    threads = [threading.Thread(target=copy, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(first_callers) == 1
    assert [r["text"] for r in replies] == [f"reply by {first_callers[0]}"] * 4


def test_a_failed_first_copy_lets_the_retry_process_and_a_slow_one_says_so(databases, vault, database_url):
    receipts = MessageReceipts(ConversationStore(databases.engine(database_url), vault).engine, wait_s=0.2, poll_s=0.02)
    key = f"web:s2:{uuid.uuid4().hex}"
    assert receipts.claim(key, "s2") is None
    with pytest.raises(StillProcessing):
        receipts.claim(key, "s2")
    receipts.release(key)
    assert receipts.claim(key, "s2") is None


@pytest.mark.parametrize("channel", ["wechat", "WeChat", "kiosk", "chat", "\t=1+10", "wechat:wechat", "", "x" * 33])
def test_an_integration_may_not_speak_on_another_channel_or_name_one_oddly(databases, database_url, tmp_path, channel):
    """Issue 28, holes 17 and 21: `channel: "wechat"` with another user's openid opened a ticket whose
    worker reply was pushed to that WeChat user; a channel of "\\t=1+10" reached the CSV export."""
    residents = ResidentSessions(databases.engine(database_url), _settings(tmp_path), reserved=reserved_names())
    with pytest.raises(InvalidChannel) as refused:
        residents.for_api_key("crm-key-123456", "u1", channel)
    assert refused.value.http_status == 422
    assert residents.for_api_key("crm-key-123456", "u1", "hotline-12345").channel == "hotline-12345"


def test_the_wechat_channel_pushes_only_to_wechat_conversations(databases, database_url):
    """However a ticket came to say `channel: wechat`, only a `wechat:<openid>` conversation (which
    only WeChat's signed callbacks start) names whom to push to; a bare user id never does."""
    outbox = PushOutbox(databases.engine(database_url), None, WechatSettings())  # type: ignore[arg-type]  # nothing is sent here
    channel = WechatChannel(outbox)
    openid = f"o-{uuid.uuid4().hex[:10]}"
    assert channel.send(session_id="api-session-1", user_id=openid, text="您好", sender="王社工") == 0
    assert channel.send(session_id=f"wechat:{openid}", user_id="whatever", text="您好", sender="王社工") > 0
    with outbox.engine.connect() as conn:
        assert conn.execute(select(wechat_pushes.c.openid).where(wechat_pushes.c.openid == openid)).scalars().all() \
            == [openid]


def test_message_keys_of_two_conversations_never_collide():
    """Issue 28, hole 20: channel "wechat:wechat", session "<openid>", message "msg:<id>" spelled the
    same receipt key as the WeChat user's own message, and read their stored reply."""
    assert message_key("wechat:o1", "msg:1") != message_key("o1", "wechat:msg:1")
    assert message_key("a:b", "c") != message_key("a", "b:c")
    assert message_key("s", "m") == message_key("s", "m") and len(message_key("s" * 128, "m" * 128)) <= 320
