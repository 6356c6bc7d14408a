"""The inbox page as a nurse uses it, in headless Chromium (Debian's, through Selenium)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from hemmon.settings import MqttAddress

from ..integration.harness import Device, Running, running_service
from ..integration.test_embedded_pipeline import native
from ..services import require
from .signin import sign_in_with_code
from .test_demo import CHROMIUM_FLAGS, chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = [*CHROMIUM_FLAGS, "--window-size=1280,900"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver_path = require("chromedriver", "./scripts/setup installs Debian's chromium-driver")
    options = webdriver.ChromeOptions()
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.binary_location = chromium()
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def running(roster_db: str, mqtt: MqttAddress) -> Iterator[Running]:
    with running_service(roster_db, mqtt) as service:
        device = Device(mqtt, "dev-0001")
        try:
            now = datetime.now(UTC)
            for day, spo2 in enumerate([96, 95, 95, 94, 93]):
                device.publish(native(("spo2", spo2, "%"), ("heart_rate", 70 + day, "/min"),
                                      measured_at=now - timedelta(days=5 - day)))
                device.next_feedback()
            device.publish(native(("spo2", 86, "%"), ("heart_rate", 96, "/min")))
            assert device.next_feedback()["status"] == "red"
        finally:
            device.close()
        yield service


def test_a_nurse_logs_in_opens_a_patient_sees_the_limits_and_acknowledges(
    running: Running, browser: WebDriver
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    wait = WebDriverWait(browser, 20)
    sign_in_with_code(browser, str(running.http.base_url), running.login_code("nurse-anna"))

    row = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#alerts tr")))
    assert "Syremättnad 86 %, under röd gräns 88 %" in row.text
    assert "Röda: 1" in browser.find_element(By.ID, "count-red").text
    assert "nurse-anna" in browser.find_element(By.ID, "who").text
    browser.save_screenshot(str(ARTIFACTS / "inbox-1-worklist.png"))

    row.find_element(By.CSS_SELECTOR, "a.patient").click()
    chart = wait.until(ready.presence_of_element_located(
        (By.CSS_SELECTOR, "svg.chart[data-measurement='spo2']")))
    limits = chart.find_elements(By.CSS_SELECTOR, "line.limit")
    assert {line.get_attribute("class") for line in limits} == {
        "limit limit-red", "limit limit-yellow"}
    assert len(chart.find_elements(By.CSS_SELECTOR, "circle.dot")) == 6
    assert "gul gräns 92" in chart.text
    card = browser.find_element(By.CSS_SELECTOR, "section.alert")
    assert "hemmon: öppnat 86" in card.text
    rules = browser.find_element(By.ID, "rules").text
    assert "Syremättnad: gränser – gul under 92, röd under 88" in rules
    assert "Vikt: ökning inom 3 dygn – gul över 1, över 2 (röd)" in rules
    assert "Vikt: mätning var 1 dygn före 10:00 (gul)" in rules
    browser.save_screenshot(str(ARTIFACTS / "inbox-2-patient.png"))

    card.find_element(By.CSS_SELECTOR, "button.ack").click()
    wait.until(lambda d: "Kvitterad" in d.find_element(By.CSS_SELECTOR, "section.alert").text)
    browser.save_screenshot(str(ARTIFACTS / "inbox-3-acknowledged.png"))

    [alert] = [a for a in running.get("/api/v1/alerts").json()["alerts"]
               if a["category"] == "clinical"]
    assert alert["status"] == "acknowledged"
    log = running.get("/api/v1/access-log", user="nurse-anna").json()["entries"]
    assert {"read_readings", "read_rules", "read_alert", "list_alerts"} <= {
        e["action"] for e in log}


def test_a_nurse_previews_new_limits_before_she_saves_them(
        running: Running, browser: WebDriver) -> None:
    base = str(running.http.base_url)
    sign_in_with_code(browser, base, running.login_code("nurse-anna"))
    browser.get(f"{base}/#patient=p-0001")
    wait = WebDriverWait(browser, 20)
    wait.until(ready.presence_of_element_located((By.ID, "rule-editor"))).click()
    for limit, value in (("yellow_below", "85"), ("red_below", "80")):
        field = browser.find_element(
            By.CSS_SELECTOR, f'input[data-measurement="spo2"][data-limit="{limit}"]')
        field.clear()
        field.send_keys(value)
    browser.find_element(By.ID, "preview-button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "preview-result"), "Med dessa"))
    # today's limits raised the red 86 %; the proposed ones would have raised nothing
    assert browser.find_element(By.ID, "preview-result").text == (
        "Med dessa gränser: 0 larm senaste 30 dygnen, i dag 1.")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "rule-preview.png"))
