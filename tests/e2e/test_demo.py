"""`hemmon demo` as a new user runs it: alerts in the inbox within 60 s, seen in Chromium."""

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
def test_the_demo_shows_alerts_within_a_minute(broker: str) -> None:
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
    threading.Thread(target=lambda: errors.extend(iter(demo.stderr.readline, "")),
                     daemon=True).start()
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

        alerts: list[dict[str, object]] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            while not alerts and time.monotonic() - started < 60:
                answer = http.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
                alerts = answer.json()["alerts"]
                time.sleep(0.5)
        assert alerts, "no alert in the inbox within 60 s"
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
        assert "p-0001" in dom
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
    left = list(scratch.glob("hemmon-demo-*"))
    shutil.rmtree(scratch, ignore_errors=True)
    assert not left, "the demo left its data behind"

