"""`hemmon demo` as a new user runs it: two weeks replayed in two minutes, the deteriorating
patient's first alert in the inbox within 90 s (on the day it would have opened), seen in
Chromium."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from ..services import free_port, require
from .signin import chrome, sign_in_with_code

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def chromium() -> str:
    return require("chromium", "./scripts/setup installs Debian's chromium")


def render(url: str, screenshot: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it."""
    with tempfile.TemporaryDirectory() as profile:
        common = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                  "--virtual-time-budget=8000", "--window-size=1280,720"]
        subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=90, check=False)
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                              "--virtual-time-budget=8000", "--dump-dom", url],
                             capture_output=True, text=True, timeout=90, check=False)
    return dom.stdout


@pytest.mark.parametrize("broker", ["auto", "embedded"])
def test_the_demo_replays_two_weeks_and_shows_the_alert_of_the_day(broker: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMMON_")}
    # a temp folder of its own, so that what it leaves behind is its own and no one else's
    scratch = Path(tempfile.mkdtemp(prefix="hemmon-demo-test-"))
    os.chmod(scratch, 0o755)  # the embedded PostgreSQL runs as its own user
    env["TMPDIR"] = str(scratch)
    started = time.monotonic()
    demo = subprocess.Popen(
        [sys.executable, "-m", "hemmon.cli", "demo", "--http-port", str(port),
         "--broker", broker],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    output: list[str] = []
    errors: list[str] = []
    assert demo.stdout is not None
    assert demo.stderr is not None
    reader = threading.Thread(target=lambda: output.extend(iter(demo.stdout.readline, "")),
                              daemon=True)
    reader.start()
    error_reader = threading.Thread(
        target=lambda: errors.extend(iter(demo.stderr.readline, "")), daemon=True)
    error_reader.start()
    try:
        token = code = None
        while token is None and time.monotonic() - started < 60:
            printed = "".join(output)
            found = re.search(r"Bearer (\S+)'", printed)
            token = found[1] if found else None
            found = re.search(r"Anna Berg .*engångskod: (\S+)", printed)
            code = found[1] if found else None
            assert demo.poll() is None, "".join(output + errors)
            time.sleep(0.2)
        assert token, "no login printed: " + "".join(output + errors)
        assert code
        assert "token=" not in "".join(output), "a token in a URL ends up in browser history"
        if broker == "embedded":
            assert "amqtt" in "".join(errors)
        # a newcomer sees the login at once: within the first 15 lines of the console
        login_line = next(i for i, line in enumerate(output) if "engångskod" in line)
        assert login_line + 1 + len(errors) <= 15, "".join(output + errors)

        alerts: list[dict[str, object]] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            while not alerts and time.monotonic() - started < 90:
                answer = http.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
                alerts = answer.json()["alerts"]
                time.sleep(0.5)
        assert alerts, "no alert in the inbox within 90 s"
        # opened on a replayed day, days before the real now: the story of a fortnight
        opened = min(datetime.fromisoformat(str(a["opened_at"])) for a in alerts)
        assert timedelta(days=3) < datetime.now(UTC) - opened < timedelta(days=11)
        assert {a["patient_id"] for a in alerts} == {"p-0001"}

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"demo-inbox-{broker}.png"
        with chrome(scratch / "profile") as browser:
            sign_in_with_code(browser, f"http://127.0.0.1:{port}", code)
            WebDriverWait(browser, 20).until(
                ready.presence_of_element_located((By.CSS_SELECTOR, "#alerts tr")))
            browser.save_screenshot(str(shot))
            dom = browser.page_source
        assert "larmkorg" in dom
        assert "Tora Eriksson, 19301229-9263" in dom  # the demo roster's invented patient
        assert "Röd" in dom or "Gul" in dom
        assert shot.exists()
        assert shot.stat().st_size > 10_000
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    assert demo.returncode in (0, 130), "".join(errors)
    reader.join(10)
    error_reader.join(10)
    console = "".join(output + errors)
    for word in ("ERROR", "Traceback", "Warning:", "XDG_RUNTIME_DIR", " INFO "):
        assert word not in console, console
    assert "Tora Eriksson" not in console
    assert "19301229" not in console
    left = list(scratch.glob("hemmon-demo-*"))
    shutil.rmtree(scratch, ignore_errors=True)
    assert not left, "the demo left its data behind"

