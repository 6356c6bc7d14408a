"""Signing in through the inbox's pages in Chromium: a one-time code, or the region's
identity provider (the test provider's own login form)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from ..services import require


@contextmanager
def chrome(profile: Path) -> Iterator[WebDriver]:
    """Headless Debian Chromium through Selenium, with a profile of its own."""
    from .test_demo import CHROMIUM_FLAGS, chromium  # test_demo signs in with this module

    driver_path = require("chromedriver", "./scripts/setup installs Debian's chromium-driver")
    options = webdriver.ChromeOptions()
    for flag in [*CHROMIUM_FLAGS, "--window-size=1280,900", f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.binary_location = chromium()
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in_with_code(browser: WebDriver, base_url: str, code: str) -> None:
    """Types the code on /login; the inbox's worklist is shown after."""
    base_url = base_url.rstrip("/")
    browser.get(f"{base_url}/login")
    browser.find_element(By.ID, "code").send_keys(code)
    browser.find_element(By.ID, "code-button").click()
    WebDriverWait(browser, 20).until(ready.url_to_be(f"{base_url}/"))


def sign_in_at_provider(browser: WebDriver, base_url: str, login: str) -> None:
    """Follows 'Logga in med e-tjänstekort' to the provider and signs in there as `login`."""
    base_url = base_url.rstrip("/")
    browser.get(f"{base_url}/login")
    browser.find_element(By.ID, "oidc-login").click()
    field = WebDriverWait(browser, 20).until(
        ready.presence_of_element_located((By.NAME, "login")))
    field.send_keys(login)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
