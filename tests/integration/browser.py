"""Headless Chromium for the browser tests (console, residents' pages, admin pages), with the
flags the developers' guide names, and a wait that tolerates a page reloading under it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium and chromedriver not installed (apt-get install -y chromium chromium-driver; `make system-deps`)",
)
T = TypeVar("T")


def start_chromium(*flags: str, size: tuple[int, int] | None = None) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--lang=zh-CN",
                 *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    if size is not None:
        driver.set_window_size(*size)
    return driver


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition", poll: float = 0.2) -> T:
    """The predicate's first truthy value; an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except WebDriverException:  # the page is reloading after an action
            value = None
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
