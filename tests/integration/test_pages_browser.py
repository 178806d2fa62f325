"""The residents' pages in real headless Chromium: /kiosk (1080×1920) and /chat (390×844).
A typed question gets an answer whose citation opens; the microphone (Chromium's fake capture
device playing tests/data/pages/ask-allowance.wav) gets the spoken question's transcript and
answer; quick replies send; "转人工" opens a ticket and the worker's reply arrives without a
reload; the kiosk forgets its visitor after the (shortened) idle time and on "重新开始"; a
refused request is a friendly line. Screenshots go to test-artifacts/pages/."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By

from assistant.api import create_app
from assistant.core.settings import PROJECT_ROOT, ResidentSettings, Settings, get_settings
from assistant.escalation.auth import UserStore
from assistant.pages.routes import TOPICS, WORDING
from tests.conftest import RESIDENT_HEADERS, SHARED_CACHE, free_port
from tests.integration.browser import needs_chromium, start_chromium, wait_for
from tests.integration.test_reliability import _start_server

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "pages"
# "我奶奶今年九十二岁了，每个月能领多少高龄津贴？" (tests/data/pages/README.md)
CLIP = PROJECT_ROOT / "tests" / "data" / "pages" / "ask-allowance.wav"
WHISPER_DIR = PROJECT_ROOT / "var" / "models" / "whisper-base"  # shared with tests/integration/test_speech.py
IDLE_S = 6
WORKER_PASSWORD = "Wang-Worker-2026!"


# The smallest computed font size of any visible text, and what it belongs to.
MIN_FONT_JS = """
const found = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (!node.textContent.trim()) continue;
  const el = node.parentElement;
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  if (box.width <= 1 || box.height <= 1 || style.visibility === "hidden") continue;
  found.push([parseFloat(style.fontSize), node.textContent.trim().slice(0, 30)]);
}
for (const input of document.querySelectorAll("input")) {
  found.push([parseFloat(getComputedStyle(input).fontSize), "input#" + input.id]);
}
found.sort((a, b) => a[0] - b[0]);
return found[0];
"""


@pytest.fixture(scope="module")
def server(databases, small_index_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pages") / "var"
    data_dir.mkdir()
    UserStore(databases.engine(f"sqlite:///{data_dir / 'linli.sqlite'}")).add("wang", WORKER_PASSWORD, role="worker",
                                                             centre="default", display_name="王社工")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               LINLI_RESIDENTS__KIOSK_IDLE_S=str(IDLE_S), LINLI_SPEECH__MODEL_DIR=str(WHISPER_DIR))
    port = free_port()
    process = _start_server(env, port)
    base = f"http://127.0.0.1:{port}"
    # Load whisper while the typed-question test runs, not inside the microphone test.
    warm_up = threading.Thread(target=lambda: httpx.post(
        f"{base}/api/v1/voice", headers=RESIDENT_HEADERS, data={"session_id": "pages-warm-up"},
        files={"audio": ("clip.wav", CLIP.read_bytes(), "audio/wav")}, timeout=120), daemon=True)
    warm_up.start()
    yield base
    warm_up.join(timeout=60)
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium("--hide-scrollbars", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                            f"--use-file-for-fake-audio-capture={CLIP}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float = 20.0, what: str = "condition"):
    return wait_for(predicate, timeout, what, poll=0.15)


def _open(browser, url: str, width: int, height: int) -> str:
    """The page at this viewport size, once it holds a server-minted session; its session id."""
    browser.set_window_size(width, height)
    browser.get(url)
    inner = browser.execute_script("return [window.innerWidth, window.innerHeight];")
    browser.set_window_size(width + (width - inner[0]), height + (height - inner[1]))
    return _wait(lambda: browser.execute_script("return document.body.dataset.session;"), what="a session")


def _replies(browser):
    return browser.find_elements(By.CSS_SELECTOR, "[data-testid=reply]")


def _ask(browser, text: str):
    """Type a question, send it, and return the new reply element."""
    before = len(_replies(browser))
    box = browser.find_element(By.CSS_SELECTOR, "[data-testid=question]")
    box.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "[data-testid=send]").click()
    _wait(lambda: len(_replies(browser)) > before, what=f"a reply to {text!r}")
    return _replies(browser)[-1]


def _layout_ok(browser, min_font: float) -> None:
    width, client = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];")
    assert width <= client, f"horizontal overflow: {width} > {client}"
    smallest = browser.execute_script(MIN_FONT_JS)
    assert smallest[0] >= min_font, f"text too small: {smallest}"


def _config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="linli-config">(.*?)</script>', html, re.S)
    assert found, "the page carries no configuration"
    return json.loads(found.group(1))


def test_pages_render_settings_and_every_sentence_the_script_uses(tmp_path):
    """Without a browser: the idle time comes from settings, the chat never resets itself, the
    script names only sentences the page gives it, and the English page is English."""
    settings = Settings(data_dir=tmp_path, residents=ResidentSettings(kiosk_idle_s=7))
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as client:
        kiosk, chat, script = client.get("/kiosk"), client.get("/chat?lang=en"), client.get("/pages-static/pages.js")
    assert kiosk.status_code == chat.status_code == script.status_code == 200
    assert kiosk.headers["cache-control"] == "no-store"
    kiosk_config, chat_config = _config(kiosk.text), _config(chat.text)
    assert (kiosk_config["mode"], kiosk_config["idleSeconds"], kiosk_config["lang"]) == ("kiosk", 7, "zh")
    assert kiosk_config["maxRecordSeconds"] == settings.speech.max_seconds
    assert (chat_config["mode"], chat_config["idleSeconds"], chat_config["lang"]) == ("chat", 0, "en")
    used = set(re.findall(r"\bT\.(\w+)", script.text))
    assert {"error_invalid", "handoff_text", "idle_warning"} <= used <= set(kiosk_config["text"])
    assert all(WORDING[f"topics.{topic}"]["zh"] in kiosk.text for topic in TOPICS)
    assert WORDING["handoff"]["en"] in chat.text and WORDING["handoff"]["zh"] not in chat.text
    assert 'data-testid="restart"' in kiosk.text and 'data-testid="restart"' not in chat.text


@needs_chromium
def test_kiosk_typed_question_answer_with_citation(server, browser):
    _open(browser, f"{server}/kiosk", 1080, 1920)
    for hook in ("question", "send", "mic", "handoff", "quick-reply"):
        assert browser.find_element(By.CSS_SELECTOR, f"[data-testid={hook}]").is_displayed(), hook
    _layout_ok(browser, 24)
    browser.save_screenshot(str(ARTIFACTS / "01-kiosk-start.png"))

    reply = _ask(browser, "我奶奶92岁了，每个月能领多少高龄津贴？")
    assert "500" in reply.text
    citation = reply.find_element(By.CSS_SELECTOR, "[data-testid=citation]")
    passage = reply.find_element(By.CSS_SELECTOR, "[data-testid=passage]")
    assert "高龄津贴" in citation.text and not passage.is_displayed()
    # One entry per document ("[1][3] title"), the answer's numbers 1..n each under exactly one.
    entries = [c.text for c in reply.find_elements(By.CSS_SELECTOR, "[data-testid=citation]")]
    titles = [entry.rsplit("] ", 1)[1] for entry in entries]
    numbers = sorted(int(n) for entry in entries for n in re.findall(r"\[(\d+)\]", entry.rsplit("] ", 1)[0] + "]"))
    assert len(titles) == len(set(titles)) and numbers == list(range(1, len(numbers) + 1)), entries
    citation.click()
    _wait(passage.is_displayed, what="the cited passage")
    assert "500" in passage.text and "90至99周岁" in passage.text
    _layout_ok(browser, 24)
    browser.save_screenshot(str(ARTIFACTS / "02-kiosk-answer-citation.png"))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (apt-get install -y ffmpeg)")
@needs_chromium
def test_kiosk_microphone_tap_to_start_tap_to_stop(server, browser):
    _open(browser, f"{server}/kiosk", 1080, 1920)
    mic = browser.find_element(By.CSS_SELECTOR, "[data-testid=mic]")
    mic.click()
    _wait(lambda: mic.get_attribute("aria-pressed") == "true", what="recording to start")
    assert WORDING["mic_stop"]["zh"] in mic.text
    browser.save_screenshot(str(ARTIFACTS / "03-kiosk-recording.png"))
    time.sleep(6.8)  # the clip: 0.3 s quiet, the question, 2 s quiet
    mic.click()
    transcript = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-testid=transcript]"),
                       timeout=60, what="the transcript")[0]
    reply = _wait(lambda: _replies(browser), timeout=30, what="the spoken question's answer")[-1]
    assert "高龄津贴" in transcript.text
    assert "500" in reply.text, reply.text
    # The transcript is shown above the answer.
    assert transcript.location["y"] < reply.location["y"]
    assert mic.get_attribute("aria-pressed") == "false"
    browser.save_screenshot(str(ARTIFACTS / "04-kiosk-voice-answer.png"))


@needs_chromium
def test_kiosk_forgets_the_visitor_when_idle_and_on_restart(server, browser):
    first = _open(browser, f"{server}/kiosk", 1080, 1920)
    _ask(browser, "失业登记要带什么？")
    started = time.monotonic()
    warning = browser.find_element(By.ID, "idle-warning")
    _wait(warning.is_displayed, timeout=IDLE_S + 2, what="the idle warning")
    browser.save_screenshot(str(ARTIFACTS / "05-kiosk-idle-warning.png"))
    second = _wait(lambda: (s := browser.execute_script("return document.body.dataset.session;")) != first and s,
                   timeout=IDLE_S + 5, what="a new session after the idle time")
    assert time.monotonic() - started >= IDLE_S - 1
    assert _replies(browser) == [] and not browser.find_elements(By.CSS_SELECTOR, ".msg.me")
    assert not warning.is_displayed()

    _ask(browser, "你好")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=restart]").click()
    third = _wait(lambda: (s := browser.execute_script("return document.body.dataset.session;")) != second and s,
                  what="a new session after 重新开始")
    assert third not in (first, second) and _replies(browser) == []


@needs_chromium
def test_chat_quick_replies_handoff_and_worker_reply_without_reload(server, browser):
    session_id = _open(browser, f"{server}/chat", 390, 844)
    _layout_ok(browser, 16)
    browser.execute_script("window.__notReloaded = true;")

    # A common topic.
    topic = next(b for b in browser.find_elements(By.CSS_SELECTOR, ".topics [data-testid=quick-reply]")
                 if b.text == "高龄津贴")
    topic.click()
    _wait(lambda: _replies(browser), what="the topic's reply")
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.me")[-1].text == WORDING["topic_questions.allowance"]["zh"]

    # A form's choices become buttons: the dispute intake asks with quick replies.
    reply = _ask(browser, "我跟邻居闹矛盾了，想找人调解")
    choices = {b.text: b for b in reply.find_elements(By.CSS_SELECTOR, "[data-testid=quick-reply]")}
    assert {"邻里噪音", "漏水渗水", "取消"} <= set(choices), reply.text
    before = len(_replies(browser))
    choices["漏水渗水"].click()
    _wait(lambda: len(_replies(browser)) > before, what="the reply to a quick reply")
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.me")[-1].text == "漏水渗水"
    assert _replies(browser)[-1].get_attribute("data-type") == "form"
    # The answered question's buttons are gone; only the new step's remain.
    assert not reply.find_elements(By.CSS_SELECTOR, "[data-testid=quick-reply]")
    _layout_ok(browser, 16)
    browser.save_screenshot(str(ARTIFACTS / "06-chat-quick-replies.png"))

    # "转人工" is always there; it opens a ticket, and the worker's reply arrives by polling.
    before = len(_replies(browser))
    browser.find_element(By.CSS_SELECTOR, "[data-testid=handoff]").click()
    _wait(lambda: len(_replies(browser)) > before, what="the hand-off reply")
    ticket_id = _replies(browser)[-1].get_attribute("data-ticket")
    assert ticket_id
    token = httpx.post(f"{server}/api/v1/auth/token",
                       json={"username": "wang", "password": WORKER_PASSWORD}).json()["token"]
    worker = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{server}/api/v1/tickets/{ticket_id}/claim", headers=worker).status_code == 200
    words = "您好，我是王社工。调解的事我明天上午上门了解。"
    assert httpx.post(f"{server}/api/v1/tickets/{ticket_id}/reply", headers=worker,
                      json={"text": words}).status_code == 200
    delivered = _wait(lambda: [r for r in _replies(browser) if words in r.text], timeout=10,
                      what="the worker's reply without a reload")[0]
    assert "worker" in delivered.get_attribute("class")
    assert browser.execute_script("return window.__notReloaded === true;")
    assert browser.execute_script("return document.body.dataset.session;") == session_id
    _layout_ok(browser, 16)
    browser.save_screenshot(str(ARTIFACTS / "07-chat-worker-reply.png"))


@needs_chromium
def test_a_refused_request_is_a_friendly_line(server, browser):
    _open(browser, f"{server}/chat", 390, 844)
    # Longer than the API accepts (the text box itself stops at 500 characters).
    browser.execute_script("document.querySelector('[data-testid=question]').value = '吵'.repeat(25000);")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=send]").click()
    error = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-testid=error]"), what="the error line")[0]
    assert error.text == WORDING["error_invalid"]["zh"]
    # The page still works afterwards.
    assert "500" in _ask(browser, "90岁老人高龄津贴每月多少钱？").text
