"""The viewer over WebRTC in headless Chromium against `reactor-engine run` (the demo, VP8 + JPEG).

Chromium's WebRTC and the server's libwebrtc are two libwebrtc peers, which do not connect over
loopback alone, so the server, chromedriver and Chromium all run inside a network namespace made for
the test (tests/netns.py). The test's main thread enters that namespace (setns) while it drives the
browser: its WebDriver connection, and the chromedriver and Chromium it starts, are in there too.

How the test tells the transports apart: the page exposes ``window.reactorViewer.state`` (``transport``
"webrtc" | "websocket", ``codec`` from getStats, ``framesDecoded``, ``fallback`` {code, message}) and
``data-transport`` / ``data-codec`` on ``<html>``; over WebRTC the pixels are read from the ``<video>``.
Needs Debian's ``chromium`` and ``chromium-driver``, selenium, reactor-webrtc, and permission to make
network namespaces; skips, saying which is missing, only where one is absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

import pytest
from http_helpers import viewer_url
from netns import NetNs, NetNsUnavailable
from test_viewer import CHROMEDRIVER, CHROMIUM, _browser_missing, viewer_state, wait_for

CLONE_NEWNET = 0x40000000
SERVER_ARGS = (
    "--port", "0", "--model.width=320", "--model.height=180", "--orphan-timeout", "60",
    "--engine.codec=vp8", "--engine.extra_codecs=[jpeg]",
)  # fmt: skip
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900",
    # Host candidates as plain addresses: nothing in the namespace answers mDNS for `*.local` names.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)  # fmt: skip
NO_RTCPEERCONNECTION = (
    "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection; delete window.RTCDataChannel;"
)
# The <video> scaled into a small canvas in the page: the frame the viewer shows, as RGBA bytes.
VIDEO_PIXELS = """
const video = document.getElementById('video');
if (!video.videoWidth) return null;
const c = document.createElement('canvas'); c.width = 64; c.height = 36;
const g = c.getContext('2d'); g.drawImage(video, 0, 0, 64, 36);
return Array.from(g.getImageData(0, 0, 64, 36).data);
"""


@pytest.fixture
def namespace() -> Iterator[NetNs]:
    try:
        ns = NetNs().create()
    except NetNsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        yield ns
    finally:
        ns.close()


@contextlib.contextmanager
def inside(ns: NetNs) -> Iterator[None]:
    """Move the calling thread into ``ns`` (network only) and back; what it starts meanwhile stays there."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{ns.name}") as there:
        if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
            pytest.skip(f"setns into {ns.name}: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's own network namespace")


@pytest.fixture
def webrtc_demo(namespace: NetNs) -> Iterator[str]:
    """`reactor-engine run` (demo, VP8 + JPEG) inside the namespace; yields the viewer's URL there."""
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    pytest.importorskip("reactor_webrtc", reason="reactor-webrtc is not installed")
    process = namespace.python(
        ["-m", "reactor_engine.cli", "run", *SERVER_ARGS],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    with viewer_url(process, show_log=True) as url:
        yield url


@pytest.fixture
def browser_in_netns(namespace: NetNs, webrtc_demo: str, tmp_path):
    """Chromium (through chromedriver) started from, and driven from, inside the namespace."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    with inside(namespace):
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        try:
            yield driver
        finally:
            driver.quit()


def wait_live(driver, transport: str) -> dict:
    def live() -> dict | None:
        state = viewer_state(driver)
        if state.get("transport") == transport:
            return state
        if transport == "webrtc" and state.get("fallback"):
            pytest.fail(f"the viewer fell back to the WebSocket: {state['fallback']}")
        return None

    return wait_for(live, 60, f"the viewer to play over {transport}")


def page_data(driver, key: str) -> str | None:
    """A ``data-*`` attribute of the page's ``<html>``, where the viewer shows its transport and codec."""
    return driver.execute_script("return document.documentElement.dataset[arguments[0]]", key)


def mean_colour(driver) -> list[float] | None:
    return driver.execute_script("return window.reactorViewer.meanColor()")


def dark(driver) -> list[float] | None:
    colour = mean_colour(driver)
    return colour if colour and sum(colour) / 3 < 10 else None


def red(driver) -> list[float] | None:
    colour = mean_colour(driver)
    return colour if colour and colour[0] > 1.5 * colour[1] and colour[0] > 1.5 * colour[2] else None


def test_the_viewer_plays_vp8_over_webrtc_and_a_control_changes_the_next_frames(
    browser_in_netns, webrtc_demo, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser_in_netns
    driver.get(webrtc_demo)
    wait_live(driver, "webrtc")
    state = wait_for(
        lambda: (s := viewer_state(driver)).get("framesDecoded", 0) >= 10 and s.get("codec") and s,
        60,
        "decoded WebRTC frames",
    )
    assert state["codec"] == "VP8"
    assert (page_data(driver, "transport"), page_data(driver, "codec")) == ("webrtc", "VP8")
    assert driver.find_element(By.ID, "video").is_displayed()
    assert not driver.find_element(By.ID, "notice").is_displayed()

    # The <video> shows the demo's moving, lit scene at its size.
    wait_for(lambda: viewer_state(driver).get("width") == 320, 30, "320x180 video")
    assert viewer_state(driver)["height"] == 180
    first = wait_for(lambda: driver.execute_script(VIDEO_PIXELS), 30, "a video frame")
    wait_for(lambda: driver.execute_script(VIDEO_PIXELS) != first, 30, "the next frames to differ")
    before = mean_colour(driver)
    assert before and sum(before) / 3 > 40, f"the demo scene should be lit; mean colour {before}"
    assert before[2] > before[0], f"the default scene (ocean) should be blue; mean colour {before}"

    # A generated control sends on the data channel; the model's result comes back as a message.
    controls = driver.find_element(By.ID, "controls")
    prompt = controls.find_element(By.CSS_SELECTOR, '[data-command="set_prompt"] input[type=text]')
    prompt.send_keys("fire" + Keys.ENTER)
    result = controls.find_element(By.CSS_SELECTOR, '[data-command="set_prompt"] .result')
    wait_for(lambda: "fire" in result.text and result.text.startswith("ok"), 30, "the set_prompt result")
    colour = wait_for(lambda: red(driver), 30, "red (fire) frames")
    assert colour[0] > before[0], (before, colour)

    # The brightness slider at its minimum: the next frames go dark.
    slider = controls.find_element(By.CSS_SELECTOR, '[data-command="set_brightness"] input[type=range]')
    slider.send_keys(Keys.HOME)
    brightness = controls.find_element(By.CSS_SELECTOR, '[data-command="set_brightness"] .result')
    wait_for(lambda: brightness.text in ("sent", "ok"), 30, "set_brightness to be sent")
    wait_for(lambda: dark(driver), 30, "dark frames")

    # The stats bar: codec, bitrate, RTT (candidate pair) and the latency from the server's stats.
    text = lambda element_id: driver.find_element(By.ID, element_id).text  # noqa: E731
    shown = lambda: text("stat-rtt").endswith("ms") and text("stat-latency").endswith("ms")  # noqa: E731
    wait_for(shown, 30, "RTT and latency figures")
    assert text("stat-transport") == "webrtc · VP8"
    assert text("stat-bitrate").endswith("Mbit/s")
    assert float(text("stat-fps")) > 0
    screenshot = tmp_path / "viewer-webrtc.png"
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0


def test_the_viewer_falls_back_to_the_websocket_without_webrtc(browser_in_netns, webrtc_demo):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser_in_netns
    # The page as a browser without WebRTC sees it: no RTCPeerConnection before any script runs.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NO_RTCPEERCONNECTION})
    driver.get(webrtc_demo)
    state = wait_live(driver, "websocket")
    assert state["fallback"]["code"] == "unsupported", state["fallback"]
    assert page_data(driver, "transport") == "websocket"
    notice = driver.find_element(By.ID, "notice")
    assert notice.is_displayed() and "WebSocket" in notice.text
    state = wait_for(lambda: (s := viewer_state(driver)).get("framesDrawn", 0) >= 5 and s, 60, "JPEG frames")
    assert state["codec"] == "jpeg"
    assert (state["width"], state["height"]) == (320, 180)
    before = mean_colour(driver)
    assert sum(before) / 3 > 40, f"the demo scene should be lit; mean colour {before}"

    # Controls work over the fallback too (with the WebSocket's correlated reply).
    slider = driver.find_element(By.CSS_SELECTOR, '[data-command="set_brightness"] input[type=range]')
    slider.send_keys(Keys.HOME)
    result = driver.find_element(By.CSS_SELECTOR, '[data-command="set_brightness"] .result')
    wait_for(lambda: result.text.startswith("ok"), 30, "the reply to set_brightness")
    wait_for(lambda: dark(driver), 30, "dark frames")


def block_peer_to_peer(ns: NetNs) -> None:
    """Refuse every packet to the namespace's veth subnet, where ICE's candidates are (as a network that
    blocks peer-to-peer traffic would); HTTP, the WebSocket and WebDriver use 127.0.0.1 and still work.
    The rule goes before the local routing table, which is moved after it."""
    subnet = ns.server_ip.rsplit(".", 1)[0] + ".0/24"
    ns.sh(
        f"ip rule add pref 100 lookup local && ip rule del pref 0 && ip rule add pref 10 to {subnet} prohibit"
    )


def test_the_viewer_falls_back_to_the_websocket_when_ice_cannot_connect(
    namespace, browser_in_netns, webrtc_demo
):
    driver = browser_in_netns
    block_peer_to_peer(namespace)
    driver.get(webrtc_demo)
    state = wait_live(driver, "websocket")
    assert state["fallback"]["code"] in ("ice_failed", "timeout"), state["fallback"]
    assert page_data(driver, "fallback") == state["fallback"]["code"]
    state = wait_for(lambda: (s := viewer_state(driver)).get("framesDrawn", 0) >= 5 and s, 60, "JPEG frames")
    assert state["codec"] == "jpeg"
    assert sum(mean_colour(driver)) / 3 > 40
