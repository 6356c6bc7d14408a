"""A nurse's working day in the inbox, in headless Chromium, by keyboard where a nurse would:
names under PDL, a note, a hand-over to a colleague who finds it under "Mina", the patient
page with a real time axis and the limits in force, and axe-core on the three views."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from hemmon.alerts.access import Principal
from hemmon.settings import MqttAddress

from ..integration.harness import Device, Running, running_service
from ..integration.test_embedded_pipeline import native
from ..integration.test_inbox_worklist import ANNA, EVA, KARIN, NAME, PNR, load_named_roster
from .signin import sign_in_with_code
from .test_inbox_browser import browser  # noqa: F401 - the Selenium fixture

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def running(database_url: str, mqtt: MqttAddress) -> Iterator[Running]:
    with running_service(load_named_roster(database_url), mqtt) as service:
        device = Device(mqtt, "dev-0001")
        try:
            now = datetime.now(UTC)
            for day, spo2 in enumerate([96, 95, 95, 94, 93]):
                device.publish(native(("spo2", spo2, "%"), ("heart_rate", 70 + day, "/min"),
                                      measured_at=now - timedelta(days=5 - day, hours=3)))
                device.next_feedback()
            for minutes, spo2 in ((40, 86), (30, 87), (20, 85)):
                device.publish(native(("spo2", spo2, "%"),
                                      measured_at=now - timedelta(minutes=minutes)))
                assert device.next_feedback()["status"] == "red"
        finally:
            device.close()
        yield service


def axe_violations(driver: WebDriver, view: str, within: str | None = None
                   ) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page (or inside one element); all of
    them are kept in test-artifacts/axe-VIEW.json."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: ./scripts/setup installs it (npm, tests/e2e/axe)")
    driver.set_script_timeout(30)
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(arguments[0] ? document.querySelector(arguments[0]) : document)"
        ".then(r => done({passes: r.passes.length, violations: r.violations.map(v => ({"
        " id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))}))}))"
        ".catch(e => done({passes: 0, violations: [{id: 'axe-error', impact: 'critical',"
        " help: String(e)}]}));",
        within)
    assert result["passes"] > 5, result  # axe really looked at the page
    (ARTIFACTS / f"axe-{view}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def screenshot(driver: WebDriver, name: str) -> None:
    """The whole page, not only the window."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 40, 4000)))
    driver.save_screenshot(str(ARTIFACTS / name))
    driver.set_window_size(1280, 900)


def tab_to(driver: WebDriver, matches: str, limit: int = 60) -> WebElement:
    """Press Tab until the focused element matches a CSS selector, as a keyboard user does."""
    for _ in range(limit):
        active = driver.switch_to.active_element
        if driver.execute_script("return arguments[0].matches(arguments[1])", active, matches):
            return active
        active.send_keys(Keys.TAB)
    raise AssertionError(f"Tab never reached {matches}")


def log_in(driver: WebDriver, running: Running, who: Principal) -> None:
    """Signs in as the inbox's users do without an identity provider: a one-time code."""
    sign_in_with_code(driver, str(running.http.base_url), running.login_code(who.user))


def test_a_working_day_by_keyboard(running: Running, browser: WebDriver) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    wait = WebDriverWait(browser, 20)
    # a rule change during the period: the chart's limit line moves with it
    changed = running.put("/api/v1/patients/p-0001/rules", {
        "rules": [{"kind": "threshold", "measurement": "spo2", "yellow_below": 90,
                   "red_below": 86}], "reason": "KOL-lik profil, lägre gränser"},
        running.token(ANNA))
    assert changed.status_code == 200, changed.text

    log_in(browser, running, ANNA)
    row = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#alerts tr")))
    assert f"{NAME}, {PNR}" in row.text
    assert "väntat" in row.find_element(By.CSS_SELECTOR, ".waiting").text
    assert axe_violations(browser, "worklist") == []
    screenshot(browser, "worklist-1-list.png")

    tab_to(browser, "a.patient").send_keys(Keys.ENTER)
    card = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "section.alert")))
    assert browser.switch_to.active_element.get_attribute("id") == "patient-title"
    assert browser.find_element(By.ID, "patient-title").text == f"{NAME}, {PNR}"
    assert "Fast vårdkontakt: Anna Berg" in browser.find_element(By.ID, "patient-card").text
    history = [li.text for li in card.find_elements(By.CSS_SELECTOR, "ul.history li")]
    assert history[0].endswith("hemmon: öppnat 86"), history
    assert "2 nya värden, senaste 85 %" in history[1]

    chart = browser.find_element(By.CSS_SELECTOR, "svg.chart[data-measurement='spo2']")
    assert len(chart.find_elements(By.CSS_SELECTOR, "line.day")) >= 5
    assert len(chart.find_elements(By.CSS_SELECTOR, "line.alert-start")) == 1
    versions = {line.get_attribute("data-version")
                for line in chart.find_elements(By.CSS_SELECTOR, "line.limit")}
    assert versions == {"1", "2"}
    assert "gul gräns 90" in chart.text
    told = browser.find_element(By.ID, "feedback").text
    assert "Din mätning behöver ses över nu" in told
    rules = browser.find_element(By.ID, "rules").text
    assert "Version 2" in rules
    assert "nurse-anna: KOL-lik profil" in rules or "av nurse-anna" in rules
    assert axe_violations(browser, "patient") == []
    screenshot(browser, "worklist-2-patient.png")

    text = tab_to(browser, "textarea.note-text")
    text.send_keys("Ringt Tora, mår bättre. Mäter igen i kväll.")
    tab_to(browser, "button.note").send_keys(Keys.ENTER)
    wait.until(lambda d: "mår bättre" in d.find_element(By.CSS_SELECTOR, "ul.notes").text)
    tab_to(browser, "select[id^='assign-']").send_keys("Eva")  # typing picks the option
    tab_to(browser, "button.assign").send_keys(Keys.ENTER)
    wait.until(lambda d: "tilldelat – Eva Lund" in d.find_element(
        By.CSS_SELECTOR, "section.alert ul.history").text)
    assert axe_violations(browser, "alert", "section.alert") == []
    screenshot(browser, "worklist-3-alert.png")

    log_in(browser, running, EVA)
    Select(wait.until(ready.element_to_be_clickable((By.ID, "filter-mine")))).select_by_value("me")
    wait.until(lambda d: NAME in d.find_element(By.ID, "alerts").text)
    assert "Tilldelad: Eva Lund" in browser.find_element(By.ID, "alerts").text
    screenshot(browser, "worklist-4-mina.png")

    # a nurse of another unit: refused, and no name anywhere on her screen
    log_in(browser, running, KARIN)
    browser.get(f"{running.http.base_url}/?again#patient=p-0001")
    wait.until(lambda d: d.find_element(By.ID, "error").text)
    assert NAME not in browser.page_source
    assert PNR[:8] not in browser.page_source
    assert running.get("/api/v1/patients/p-0001", running.token(KARIN)).status_code == 403

    log = running.get("/api/v1/access-log", patient="p-0001").json()["entries"]
    views = {(e["user_id"], e["detail"]) for e in log if e["action"] == "view_identity"}
    assert {("nurse-anna", "list_alerts"), ("nurse-anna", "patient card"),
            ("nurse-eva", "list_alerts")} <= views
    assert all(user in ("nurse-anna", "nurse-eva") for user, _ in views)
    (ARTIFACTS / "worklist-access-log.json").write_text(
        json.dumps(log, default=str, ensure_ascii=False, indent=1), encoding="utf-8")
