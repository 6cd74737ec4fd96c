"""The viewer in headless Chromium against `reactor-engine run` (the built-in demo) as a subprocess.

Needs Debian's ``chromium`` and ``chromium-driver`` (installed by scripts/setup.sh) and selenium;
skips, saying which is missing, only where they are absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from http_helpers import viewer_url

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser_missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: apt-get install {package} (scripts/setup.sh does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements-dev.txt)"
    return None


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def demo_server(tmp_path):
    script = Path(sys.executable).parent / "reactor-engine"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reactor_engine.cli"]
    process = subprocess.Popen(
        [*command, "run", "--port", "0", "--model.width=320", "--model.height=180", "--orphan-timeout", "60"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    with viewer_url(process) as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def viewer_state(driver) -> dict:
    return driver.execute_script("return window.reactorViewer ? window.reactorViewer.state : null") or {}


def mean_colour(driver) -> list[float]:
    return driver.execute_script("return window.reactorViewer.meanColor()")


def dark_colour(driver) -> list[float] | None:
    colour = mean_colour(driver)
    return colour if sum(colour) / 3 < 10 else None


def canvas_pixels(driver) -> str:
    return driver.execute_script(
        "const c = document.getElementById('screen');"
        "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.join(',')"
    )


def test_the_viewer_plays_the_demo_and_a_generated_control_changes_the_frames(demo_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(demo_server + "?transport=websocket")  # the WebRTC path: tests/test_viewer_webrtc.py
    # Frames arrive and are drawn, and they change from one to the next (the scene moves).
    wait_for(lambda: viewer_state(browser).get("framesDrawn", 0) >= 5, 60, "the first frames to be drawn")
    assert viewer_state(browser)["width"] == 320 and viewer_state(browser)["height"] == 180
    first = canvas_pixels(browser)
    drawn = viewer_state(browser)["framesDrawn"]
    wait_for(lambda: viewer_state(browser)["framesDrawn"] >= drawn + 10, 60, "more frames")
    later = canvas_pixels(browser)
    assert first != later, "the frames do not change"
    before = mean_colour(browser)
    assert sum(before) / 3 > 40, f"the demo scene should be lit; mean colour {before}"

    # Every command became a control: slider, dropdown, checkbox, text box, button.
    controls = browser.find_element(By.ID, "controls")
    assert controls.find_element(By.CSS_SELECTOR, '[data-command="set_brightness"] input[type=range]')
    assert controls.find_element(By.CSS_SELECTOR, '[data-command="move"] select')
    assert controls.find_element(By.CSS_SELECTOR, '[data-command="pause"] input[type=checkbox]')
    assert controls.find_element(By.CSS_SELECTOR, '[data-command="set_prompt"] input[type=text]')
    assert controls.find_element(By.CSS_SELECTOR, '[data-command="reset"] button')

    # Move the brightness slider to its minimum: the next frames go dark.
    slider = controls.find_element(By.CSS_SELECTOR, '[data-command="set_brightness"] input[type=range]')
    slider.send_keys(Keys.HOME)
    result = controls.find_element(By.CSS_SELECTOR, '[data-command="set_brightness"] .result')
    wait_for(lambda: result.text.startswith("ok"), 30, "the reply to set_brightness")
    dark = wait_for(lambda: dark_colour(browser), 30, "darker frames")
    assert sum(dark) < sum(before) / 4

    # A rejected command shows the server's validation message next to its control.
    prompt = controls.find_element(By.CSS_SELECTOR, '[data-command="set_prompt"] input[type=text]')
    prompt.send_keys("x" * 300 + Keys.ENTER)
    error = controls.find_element(By.CSS_SELECTOR, '[data-command="set_prompt"] .result')
    wait_for(lambda: "error" in error.get_attribute("class"), 30, "the set_prompt error")
    assert "at most 200 characters" in error.text

    # Live numbers are shown.
    wait_for(
        lambda: browser.find_element(By.ID, "stat-fps").text not in ("", "\u2013", "0.0"),
        30,
        "an fps reading",
    )
    assert browser.find_element(By.ID, "stat-latency").text.endswith("ms")
    screenshot = tmp_path / "viewer.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
