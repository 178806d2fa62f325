"""The administrators' pages in real headless Chromium, as a centre administrator uses them: log
in, upload a document and watch it index, ask the phone chat and get it cited, retire it and see
the answer go, give 👎 in the chat and find the question on the analytics page, export that table
as CSV, read the audit log. A corrupt file shows its message on the page. Screenshots go to
test-artifacts/admin/."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil

import pytest
from selenium.webdriver.common.by import By

from assistant.core.settings import PROJECT_ROOT
from assistant.escalation.auth import UserStore
from tests.conftest import SHARED_CACHE, free_port
from tests.integration.browser import needs_chromium, start_chromium, wait_for
from tests.integration.test_kb_admin import MEALS_DOC, MEALS_QUESTION
from tests.integration.test_reliability import _start_server

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "admin"
MEALS_TITLE = "克拉玛依市社区老年助餐服务"
DISLIKED_QUESTION = "失业登记要带什么材料？"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(databases, small_index_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("admin-browser")
    shutil.copytree(small_index_dir / "var" / "index", root / "index")
    data_dir = root / "var"
    data_dir.mkdir()
    users = UserStore(databases.engine(f"sqlite:///{data_dir / 'linli.sqlite'}"))
    users.add("boss", "boss-password-2024", role="admin", centre="default", display_name="李管理员")
    env = dict(os.environ, LINLI_DATA_DIR=str(data_dir), LINLI_INDEX_DIR=str(root / "index"),
               LINLI_EMBEDDING_CACHE=str(SHARED_CACHE), LINLI_CORPUS_DIRS=f'["{small_index_dir / "corpus"}"]',
               LINLI_LAW_CORPUS="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    port = free_port()
    process = _start_server(env, port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium("--window-size=1366,900", size=(1366, 900))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _shot(browser, name: str) -> None:
    browser.save_screenshot(str(ARTIFACTS / name))


def _login(browser, server: str) -> None:
    browser.get(f"{server}/admin/kb")
    wait_for(lambda: browser.find_elements(By.ID, "username"), what="the login form")
    browser.find_element(By.ID, "username").send_keys("boss")
    browser.find_element(By.ID, "password").send_keys("boss-password-2024")
    browser.find_element(By.ID, "login-button").click()
    wait_for(lambda: "李管理员" in browser.page_source, what="logged in")


def _job_row(browser, text: str):
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "#job-list li.job") if text in r.text]
    return rows[0] if rows else None


def _ask_chat(browser, server: str, question: str):
    """A fresh phone-chat visitor asks; the reply element."""
    browser.get(f"{server}/chat")
    wait_for(lambda: browser.execute_script("return document.body.dataset.session;"), what="a chat session")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=question]").send_keys(question)
    browser.find_element(By.CSS_SELECTOR, "[data-testid=send]").click()
    return wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-testid=reply]"), timeout=60,
                 what=f"a reply to {question!r}")[-1]


def test_upload_answer_retire_feedback_analytics_csv(server, browser, tmp_path):
    _login(browser, server)
    browser.get(f"{server}/admin/kb")
    wait_for(lambda: browser.find_elements(By.ID, "upload-form"), what="the knowledge-base page")

    # A corrupt PDF: the message is on the page and nothing is indexed.
    broken = tmp_path / "损坏的文件.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    browser.find_element(By.ID, "upload-files").send_keys(str(broken))
    browser.find_element(By.ID, "upload-submit").click()
    error = wait_for(lambda: browser.find_element(By.ID, "upload-error").is_displayed()
                  and browser.find_element(By.ID, "upload-error"), what="the upload error")
    assert "已损坏" in error.text and "没有导入任何文件" in error.text
    _shot(browser, "01-upload-refused.png")

    # A good document: the job's progress updates on the page, which is not reloaded.
    browser.execute_script("window.__notReloaded = true;")
    good = tmp_path / "助餐服务.md"
    good.write_text(MEALS_DOC, encoding="utf-8")
    browser.find_element(By.ID, "upload-files").clear()  # the refused file is still chosen
    browser.find_element(By.ID, "upload-files").send_keys(str(good))
    browser.find_element(By.ID, "upload-submit").click()
    try:
        wait_for(lambda: (row := _job_row(browser, "助餐服务.md")) and "已完成" in row.text, timeout=120,
              what="the upload job to finish")
    finally:
        _shot(browser, "02-uploaded-and-indexed.png")
    wait_for(lambda: 'data-doc-id="kmy-community-meals"' in browser.find_element(By.ID, "documents")
          .get_attribute("innerHTML"), what="the new document in the list")
    assert browser.execute_script("return window.__notReloaded === true;")
    assert not browser.find_element(By.ID, "upload-error").is_displayed()
    _shot(browser, "02-uploaded-and-indexed.png")

    # The phone chat cites it.
    reply = _ask_chat(browser, server, MEALS_QUESTION)
    citations = " ".join(c.text for c in reply.find_elements(By.CSS_SELECTOR, "[data-testid=citation]"))
    assert MEALS_TITLE in citations, reply.text
    assert "8元" in reply.text
    _shot(browser, "03-chat-cites-the-upload.png")

    # One document's page: metadata form, chunks, benefit table (the shipped allowance document).
    browser.get(f"{server}/admin/kb/documents/allowance")
    assert "克拉玛依市高龄津贴月标准" in browser.find_element(By.CSS_SELECTOR, "table.benefit").text
    assert browser.find_elements(By.CSS_SELECTOR, "ol.chunks li")
    _shot(browser, "04-document-page.png")

    # Retire the upload; the answer goes.
    browser.get(f"{server}/admin/kb/documents/kmy-community-meals")
    browser.find_element(By.ID, "retire").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: "已停用" in browser.find_element(By.ID, "doc-status").text, timeout=120, what="retired")
    assert browser.find_element(By.ID, "restore").is_displayed()
    _shot(browser, "05-document-retired.png")
    reply = _ask_chat(browser, server, MEALS_QUESTION)
    citations = " ".join(c.text for c in reply.find_elements(By.CSS_SELECTOR, "[data-testid=citation]"))
    assert MEALS_TITLE not in citations and "8元" not in reply.text, reply.text
    _shot(browser, "06-chat-after-retire.png")

    # 👎 with a reason in the chat, then the question is on the analytics page.
    reply = _ask_chat(browser, server, DISLIKED_QUESTION)
    wait_for(lambda: reply.find_elements(By.CSS_SELECTOR, "[data-testid=feedback-down]"), what="the thumbs")
    thumbs = [reply.find_element(By.CSS_SELECTOR, f"[data-testid=feedback-{d}]") for d in ("up", "down")]
    # Icons drawn as SVG, never emoji (a machine without an emoji font shows an empty box), and words.
    assert all(t.find_elements(By.CSS_SELECTOR, "svg.feedback-icon path") and t.text.strip() for t in thumbs)
    assert not re.search("[\U0001F300-\U0001FAFF\u2600-\u27BF]", "".join(t.text for t in thumbs)), thumbs[0].text
    reply.find_element(By.CSS_SELECTOR, "[data-testid=feedback-down]").click()
    reasons = wait_for(lambda: reply.find_elements(By.CSS_SELECTOR, "[data-testid=feedback-reason]"), what="reasons")
    reasons[0].click()
    reply.find_element(By.CSS_SELECTOR, "[data-testid=feedback-send]").click()
    wait_for(lambda: reply.find_element(By.CSS_SELECTOR, ".feedback-status").is_displayed(), what="the thanks")
    browser.get(f"{server}/admin/analytics")
    unanswered = browser.find_element(By.ID, "table-unanswered")
    assert DISLIKED_QUESTION in unanswered.text
    assert unanswered.find_elements(By.LINK_TEXT, "查看对话")
    _shot(browser, "07-analytics.png")

    # Export the table as the link does (the browser's cookie, the server's CSV).
    href = browser.find_element(By.CSS_SELECTOR, "[data-testid=csv-unanswered]").get_attribute("href")
    text = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done);", href)
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert any(DISLIKED_QUESTION in " ".join(str(v) for v in row.values()) for row in rows), text[:500]

    # The audit log has each change, by whom.
    browser.get(f"{server}/admin/kb/audit")
    log = browser.find_element(By.ID, "audit-table").text
    assert "boss" in log and "上传" in log and "停用" in log and MEALS_TITLE in log
    _shot(browser, "08-audit-log.png")
    assert browser.execute_script("return document.documentElement.scrollWidth;") <= 1366
    assert {p.name for p in ARTIFACTS.glob("0*.png")} >= {
        "01-upload-refused.png", "02-uploaded-and-indexed.png", "03-chat-cites-the-upload.png",
        "04-document-page.png", "05-document-retired.png", "06-chat-after-retire.png", "07-analytics.png",
        "08-audit-log.png"}
