"""The viewer's camera, microphone and sound in headless Chromium against `reactor-engine run
examples/webcam_effect` (acceptance 3 of issue 10).

Chromium runs with its fake devices (``--use-fake-device-for-media-stream``: a 640x480 camera showing
a green frame with brighter corners, a clock and a turning pac-man; a beeping microphone) and grants
them without asking (``--use-fake-ui-for-media-stream``). As in tests/test_viewer_webrtc.py the server,
chromedriver and Chromium all run inside a network namespace made for the test. The page's local
preview (``#preview``, the camera as it is) and its output (``#video`` over WebRTC, ``#screen`` over the
WebSocket) are read back as a grid of mean colours, and the output must be the preview through the
effect the controls chose: the same, inverted, inverted and mirrored.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
from http_helpers import viewer_url
from netns import NetNs
from test_viewer import (
    CHROMEDRIVER,
    CHROMIUM,
    _browser_missing,
    demo_server,  # noqa: F401 - a fixture: `reactor-engine run` (the demo)
    viewer_state,
    wait_for,
)
from test_viewer import browser as chromium  # noqa: F401 - a fixture: headless Chromium (no namespace)
from test_viewer_webrtc import (
    CHROMIUM_FLAGS,
    NO_RTCPEERCONNECTION,
    inside,
    namespace,  # noqa: F401 - a fixture: a fresh network namespace
)

MEDIA_FLAGS = (
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
)  # fmt: skip
SERVER_ARGS = (
    "--port", "0", "--orphan-timeout", "60", "--engine.codec=vp8", "--engine.extra_codecs=[jpeg]",
    "--model.effect=none",
)  # fmt: skip
COLS, ROWS = 16, 12  # the grid: one cell is one of the fake camera's 40x40 corner squares
# Mean colours of a grid over an element (the <video> preview or output, or the output <canvas>).
GRID = """
const [id, cols, rows] = arguments;
const el = document.getElementById(id);
const w = el.videoWidth ?? el.width, h = el.videoHeight ?? el.height;
if (!w || !h || el.hidden) return null;
const c = document.createElement('canvas'); c.width = cols * 4; c.height = rows * 4;
const g = c.getContext('2d'); g.drawImage(el, 0, 0, c.width, c.height);
const d = g.getImageData(0, 0, c.width, c.height).data, out = [];
for (let r = 0; r < rows; r++) for (let q = 0; q < cols; q++) {
  const s = [0, 0, 0];
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) {
    const o = 4 * ((r * 4 + y) * c.width + q * 4 + x); s[0] += d[o]; s[1] += d[o + 1]; s[2] += d[o + 2];
  }
  out.push(s.map((v) => v / 16));
}
return out;
"""


@pytest.fixture
def webcam_server(namespace: NetNs) -> Iterator[str]:  # noqa: F811
    """`reactor-engine run examples/webcam_effect` inside the namespace; yields the viewer's URL."""
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    pytest.importorskip("reactor_webrtc", reason="reactor-webrtc is not installed")
    process = namespace.python(
        ["-m", "reactor_engine.cli", "run", "examples/webcam_effect", *SERVER_ARGS],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    with viewer_url(process, show_log=True) as url:
        yield url


@pytest.fixture
def media_browser(namespace: NetNs, webcam_server: str, tmp_path):  # noqa: F811
    """Chromium with fake devices, started from and driven from inside the namespace."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, *MEDIA_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    with inside(namespace):
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        try:
            yield driver
        finally:
            # What the page said (its message log, newest first): shown when the test fails.
            with contextlib.suppress(Exception):
                print(
                    "viewer log:\n" + driver.execute_script("return document.getElementById('log').innerText")
                )
            driver.quit()


def grid(driver, element_id: str) -> np.ndarray | None:
    cells = driver.execute_script(GRID, element_id, COLS, ROWS)
    return None if cells is None else np.asarray(cells, np.float64).reshape(ROWS, COLS, 3)


def shown(driver, element_id: str) -> dict | None:
    """``{"grid": ...}`` of what the element shows, or None while it shows nothing."""
    cells = grid(driver, element_id)
    return None if cells is None else {"grid": cells}


def matches(driver, output_id: str, transform, tolerance: float = 28.0) -> dict | None:
    """The output grid against ``transform(preview grid)``: the error (mean absolute difference per
    cell and channel) when below ``tolerance``, else None. Both grids are read back to back."""
    preview, output = grid(driver, "preview"), grid(driver, output_id)
    if preview is None or output is None or preview.mean() < 20:
        return None
    error = float(np.abs(output - transform(preview)).mean())
    return {"error": error, "preview": preview, "output": output} if error < tolerance else None


def mirror_matches(driver, output_id: str) -> dict | None:
    """The output against the preview inverted and mirrored, judged on the cells where mirroring makes
    a difference (the corners and the clock; the rest of the fake camera is symmetric): their error is
    small, and much smaller than the unmirrored inversion's."""
    preview, output = grid(driver, "preview"), grid(driver, output_id)
    if preview is None or output is None:
        return None
    mask = np.abs(preview - preview[:, ::-1]).mean(-1) > 40
    if mask.sum() < 4:
        return None
    mirrored = float(np.abs(output - inverted_mirrored(preview))[mask].mean())
    unmirrored = float(np.abs(output - inverted(preview))[mask].mean())
    ok = mirrored < 30 and mirrored < unmirrored - 25
    return {"mirrored": mirrored, "unmirrored": unmirrored, "cells": int(mask.sum())} if ok else None


# The strongest frequency of the page's <audio> stream over 0.7 s (WebAudio analyser; Opus-decoded).
TONE_PEAK = """
const done = arguments[arguments.length - 1];
const audio = document.getElementById('sound');
if (!audio.srcObject) return done(null);
const context = window.probeContext || (window.probeContext = new AudioContext());
const analyser = context.createAnalyser();
analyser.fftSize = 16384;
context.createMediaStreamSource(audio.srcObject).connect(analyser);
setTimeout(() => {
  const db = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(db);
  let best = 1;
  for (let i = 2; i < db.length; i++) if (db[i] > db[best]) best = i;
  done({ hz: (best * context.sampleRate) / analyser.fftSize, db: db[best] });
}, 700);
"""


def tone_peak(driver, hz: float) -> dict | None:
    peak = driver.execute_async_script(TONE_PEAK)
    return peak if peak and abs(peak["hz"] - hz) < 10 and peak["db"] > -100 else None


def slide(driver, command: str, value: float) -> None:
    """Move the generated slider of ``command`` to ``value`` (as a drag does: input, then change)."""
    driver.execute_script(
        'const el = document.querySelector(`[data-command="${arguments[0]}"] input[type=range]`);'
        "el.value = String(arguments[1]);"
        "for (const kind of ['input', 'change']) el.dispatchEvent(new Event(kind, {bubbles: true}));",
        command,
        value,
    )


REFUSE_MICROPHONE = """
window.realGetUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  if (constraints.audio) throw new DOMException("Permission denied", "NotAllowedError");
  return window.realGetUserMedia(constraints);
};
"""
SESSION_STATS = """
const done = arguments[arguments.length - 1];
fetch('sessions/' + window.reactorViewer.state.sessionId + '/stats')
  .then((r) => r.json()).then(done, () => done(null));
"""


def received(driver, track: str, counter: str) -> int:
    """A counter of what the server's input ``track`` received this session (GET /sessions/{id}/stats):
    ``vp8`` / ``jpeg`` (decoded frames) or ``ring`` (audio frames in)."""
    stats = driver.execute_async_script(SESSION_STATS) or {}
    counters = stats.get("inputs", {}).get(track, {}).get("counters", {}).get(counter, {})
    return int(counters.get("frames_decoded", counters.get("frames_in", 0)))


def choose(driver, command: str, value: str) -> None:
    """Pick ``value`` in the generated <select> of ``command`` (sent at once, like a user's choice)."""
    from selenium.webdriver.support.ui import Select

    element = driver.find_element("css selector", f'[data-command="{command}"] select')
    Select(element).select_by_visible_text(value)


def turn_on(driver, name: str) -> None:
    button = driver.find_element("css selector", f'#media-toggles button[data-input="{name}"]')
    button.click()
    inputs = lambda: viewer_state(driver)["media"]["inputs"]  # noqa: E731
    try:
        wait_for(lambda: any(i["name"] == name and i.get("published") for i in inputs()), 30, f"{name} sent")
    except pytest.fail.Exception:
        pytest.fail(f"the {name} input was not sent: {inputs()}")
    assert button.get_attribute("aria-pressed") == "true"


def identity(grid_: np.ndarray) -> np.ndarray:
    return grid_


def inverted(grid_: np.ndarray) -> np.ndarray:
    return 255 - grid_


def inverted_mirrored(grid_: np.ndarray) -> np.ndarray:
    return 255 - grid_[:, ::-1]


def wait_live(driver, transport: str) -> dict:
    def live() -> dict | None:
        state = viewer_state(driver)
        if state.get("transport") == transport and state.get("framesDrawn", 0) > 0:
            return state
        if transport == "webrtc" and state.get("fallback"):
            pytest.fail(f"the viewer fell back to the WebSocket: {state['fallback']}")
        return None

    return wait_for(live, 60, f"the viewer to play over {transport}")


def test_the_viewer_sends_its_camera_over_webrtc_and_shows_it_transformed(
    media_browser, webcam_server, tmp_path
):
    from selenium.webdriver.common.by import By

    driver = media_browser
    driver.get(webcam_server)
    wait_live(driver, "webrtc")
    # The model declares a camera and a microphone (sendonly) and a speaker: the panel has all three.
    buttons = driver.find_elements(By.CSS_SELECTOR, "#media-toggles button[data-input]")
    assert {(b.get_attribute("data-input"), b.text) for b in buttons} == {
        ("webcam", "Use my camera"),
        ("mic", "Use my microphone"),
    }
    assert driver.find_element(By.ID, "media").is_displayed()
    assert driver.find_element(By.ID, "sound-toggle").is_displayed()
    assert not driver.find_element(By.ID, "preview").is_displayed()  # no camera yet
    # Before any camera frame: the dim placeholder, not the green fake camera.
    placeholder = wait_for(lambda: shown(driver, "video"), 30, "the placeholder")["grid"]
    assert placeholder.mean() < 80 and placeholder[..., 2].mean() > placeholder[..., 1].mean(), (
        placeholder.mean((0, 1))
    )

    turn_on(driver, "webcam")
    assert driver.find_element(By.ID, "preview").is_displayed()
    assert viewer_state(driver)["media"]["camera"] == "on"
    same = wait_for(lambda: matches(driver, "video", identity), 60, "the output to show the camera")
    assert received(driver, "webcam", "vp8") > 0, "the camera went in as VP8"
    assert same["output"][..., 1].mean() > 2 * same["output"][..., 0].mean(), "the fake camera is green"

    choose(driver, "set_effect", "invert")
    result = wait_for(
        lambda: matches(driver, "video", inverted), 60, "the output to show the camera inverted"
    )
    colour = result["output"].mean((0, 1))
    assert colour[0] > 150 and colour[2] > 150 and colour[1] < 150, f"green inverted is magenta: {colour}"

    # Mirrored too: the preview's left (the clock, the brighter top-left corner) is now on the right.
    driver.find_element(By.CSS_SELECTOR, '[data-command="set_mirror"] input[type=checkbox]').click()
    mirrored = wait_for(lambda: mirror_matches(driver, "video"), 60, "the output mirrored")
    assert mirrored["cells"] >= 4, mirrored

    # The microphone: published on its sendonly transceiver; the model draws its level as a bar.
    turn_on(driver, "mic")
    assert viewer_state(driver)["media"]["microphone"] == "on"
    wait_for(lambda: received(driver, "mic", "ring") > 4800, 30, "the microphone's samples at the server")
    # The model's sound track plays in the page's <audio> element: its tone, once the slider asks for one.
    sound = wait_for(
        lambda: (s := viewer_state(driver)["sound"]).get("playing") and s, 30, "the model's sound"
    )
    assert sound["tracks"] == ["speaker"] and not sound["blocked"]
    slide(driver, "set_tone", 440)
    peak = wait_for(lambda: tone_peak(driver, 440), 30, "a 440 Hz tone in the page's sound")
    assert peak["db"] > -70, peak
    assert viewer_state(driver)["sound"]["packetsReceived"] > 0
    screenshot = tmp_path / "viewer-media.png"
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0

    # Turning the camera off: the preview goes, and the model shows its last frame dimmed.
    driver.find_element(By.CSS_SELECTOR, '#media-toggles button[data-input="webcam"]').click()
    wait_for(lambda: viewer_state(driver)["media"]["camera"] == "off", 10, "the camera to be off")
    assert not driver.find_element(By.ID, "preview").is_displayed()
    dimmer = lambda: (g := shown(driver, "video")) and g["grid"].mean() < 0.7 * colour.mean() and g  # noqa: E731
    dim = wait_for(dimmer, 30, "a dimmed frame")["grid"]
    assert dim.mean() > 20, "dimmed, not black"


def test_the_viewer_sends_its_camera_as_jpeg_frames_over_the_websocket(media_browser, webcam_server):
    driver = media_browser
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NO_RTCPEERCONNECTION})
    driver.get(webcam_server)
    state = wait_live(driver, "websocket")
    assert state["fallback"]["code"] == "unsupported"
    turn_on(driver, "webcam")
    wait_for(lambda: matches(driver, "screen", identity), 60, "the output (canvas) to show the camera")
    choose(driver, "set_effect", "invert")
    wait_for(
        lambda: matches(driver, "screen", inverted), 60, "the output (canvas) to show the camera inverted"
    )
    wait_for(lambda: viewer_state(driver)["media"]["framesSent"] > 20, 30, "JPEG camera frames sent")
    assert received(driver, "webcam", "jpeg") > 0, "the camera went in as JPEG"
    assert received(driver, "webcam", "vp8") == 0
    # Permission refused (the browser's answer, as a user's "Block" gives it; the fake UI always
    # allows, so getUserMedia is made to refuse): the toggle says so and stays off; then it works.
    driver.execute_script(REFUSE_MICROPHONE)
    mic = driver.find_element("css selector", '#media-toggles button[data-input="mic"]')
    mic.click()
    wait_for(lambda: viewer_state(driver)["media"]["microphone"] == "denied", 30, "the refusal to be shown")
    status = driver.find_element("id", "media-status")
    assert "denied" in status.text and "error" in status.get_attribute("class"), status.text
    assert mic.get_attribute("aria-pressed") == "false"
    driver.execute_script("navigator.mediaDevices.getUserMedia = window.realGetUserMedia;")
    turn_on(driver, "mic")
    assert driver.find_element("id", "media-status").text == ""
    wait_for(lambda: viewer_state(driver)["media"]["audioFramesSent"] > 25, 30, "microphone PCM frames sent")
    wait_for(lambda: received(driver, "mic", "ring") > 4800, 30, "the microphone's samples at the server")
    # The model's speaker track arrives as PCM frames and is scheduled on an AudioContext.
    wait_for(lambda: viewer_state(driver)["sound"]["framesPlayed"] > 10, 30, "the model's sound played")


def test_a_model_without_inputs_or_sound_gets_no_media_toggles(chromium, demo_server):  # noqa: F811
    chromium.get(demo_server + "?transport=websocket")
    wait_for(lambda: viewer_state(chromium).get("framesDrawn", 0) > 0, 60, "the demo's frames")
    state = viewer_state(chromium)
    assert state["media"]["inputs"] == [] and state["sound"]["tracks"] == []
    assert chromium.find_elements("css selector", "#media-toggles button[data-input]") == []
    assert not chromium.find_element("id", "media").is_displayed()
    assert not chromium.find_element("id", "sound-toggle").is_displayed()
