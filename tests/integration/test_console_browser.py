"""The worker console in real headless Chromium: log in, see a new ticket arrive without
reloading, claim it, reply, resolve. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from selenium.webdriver.common.by import By

from assistant.core.settings import PROJECT_ROOT
from assistant.escalation.auth import UserStore
from tests.conftest import RESIDENT_HEADERS, SHARED_CACHE, free_port
from tests.integration.browser import needs_chromium, start_chromium, wait_for
from tests.integration.test_reliability import _start_server

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "console"
pytestmark = needs_chromium


@pytest.fixture
def browser():
    driver = start_chromium("--window-size=1366,768", size=(1366, 768))
    yield driver
    driver.quit()


@pytest.fixture
def server(databases, small_index_dir, tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    users = UserStore(databases.engine(f"sqlite:///{data_dir / 'linli.sqlite'}"))
    users.add("wang", "wang-password-2024", role="worker", centre="default", display_name="王社工")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    port = free_port()
    process = _start_server(env, port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=20)




def test_login_live_queue_claim_reply_resolve(server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{server}/console")
    assert "工作人员登录" in browser.page_source
    browser.find_element(By.ID, "username").send_keys("wang")
    browser.find_element(By.ID, "password").send_keys("wrong-password")
    browser.find_element(By.ID, "login-button").click()
    wait_for(lambda: "用户名或密码不正确" in browser.page_source, what="the wrong-password message")
    browser.find_element(By.ID, "password").send_keys("wang-password-2024")
    browser.find_element(By.ID, "login-button").click()
    wait_for(lambda: "工单队列" in browser.page_source, what="the queue page")
    assert "王社工" in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "01-queue.png"))

    # A resident asks for a person; the row appears without a reload.
    browser.execute_script("window.__notReloaded = true;")
    time.sleep(1.5)  # let the event stream connect and take its first fingerprint
    reply = httpx.post(f"{server}/api/v1/messages", json={"session_id": "browser-resident", "channel": "web",
                                                          "text": "我要转人工，想问低保怎么申请"}, timeout=60,
                       headers=RESIDENT_HEADERS).json()
    ticket_id = reply["ticket_id"]
    wait_for(lambda: ticket_id in browser.find_element(By.ID, "queue-rows").text, what="the new ticket row")
    assert browser.execute_script("return window.__notReloaded === true;")
    assert browser.execute_script("return document.documentElement.scrollWidth;") <= 1366
    browser.save_screenshot(str(ARTIFACTS / "02-new-ticket-arrived.png"))

    browser.find_element(By.LINK_TEXT, ticket_id).click()
    wait_for(lambda: browser.find_elements(By.ID, "claim"), what="the claim button")
    assert "我要转人工" in browser.find_element(By.ID, "transcript").text
    browser.find_element(By.ID, "claim").click()
    wait_for(lambda: "处理中" in browser.find_element(By.ID, "ticket-status").text, what="claimed status")
    browser.save_screenshot(str(ARTIFACTS / "03-claimed.png"))

    browser.find_element(By.ID, "reply-text").send_keys("您好，我是王社工。低保请带户口簿和身份证到社区申请。")
    browser.find_element(By.ID, "reply-button").click()
    wait_for(lambda: "您好，我是王社工" in browser.find_element(By.ID, "history").text, what="the reply in the history")
    inbox = httpx.get(f"{server}/api/v1/sessions/browser-resident/messages",
                      headers=RESIDENT_HEADERS).json()["messages"]
    assert inbox and inbox[0]["text"].startswith("您好，我是王社工")
    browser.save_screenshot(str(ARTIFACTS / "04-replied.png"))

    browser.find_element(By.ID, "resolve-outcome").send_keys("已告知低保申请材料和地点。")
    browser.find_element(By.ID, "resolve-button").click()
    wait_for(lambda: "已解决" in browser.find_element(By.ID, "ticket-status").text, what="resolved status")
    browser.save_screenshot(str(ARTIFACTS / "05-resolved.png"))
    assert sorted(p.name for p in ARTIFACTS.glob("0*.png"))[:5] == [
        "01-queue.png", "02-new-ticket-arrived.png", "03-claimed.png", "04-replied.png", "05-resolved.png"]
