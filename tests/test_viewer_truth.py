"""The viewer tells the truth about the model, in headless Chromium against `reactor-engine run`.

A model whose ``__init__`` raised is named as a load failure with its kind (not "loading the model…");
a session that crashed, before or after the page attached, is reported with the error's kind, when,
and the error id of the server log (never the exception's text); the controls show the values the
model reports as current (``@command(state=...)``) and re-sync after every command, from any client,
and across sessions, and a parameter the engine cannot know shows no value as current; a square or
tall stream leaves the stats bar on screen. Over the WebSocket (``?transport=websocket``); the WebRTC
path is tests/test_viewer_webrtc.py. Needs what tests/test_viewer.py needs.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_viewer import browser as chromium  # noqa: F401 - a fixture: headless Chromium
from test_viewer import viewer_state, wait_for
from test_viewer_webrtc import browser_in_netns, namespace, wait_live, webrtc_demo  # noqa: F401 - fixtures

from reactor_engine.client import ClientError, ReactorClient

ROOT = Path(__file__).resolve().parent.parent
PLASMA = ROOT / "examples" / "torch_plasma" / "model.py"
SECRET = "the secret text of the exception"
ERROR_TEXT = re.compile(
    r"^the session ended with an error \((?P<kind>\w+)\) after \d+\.\d s; "
    r"error id (?P<id>[0-9a-f]+) in the server log$"
)

# A model that streams frames (180x320 unless configured) until told to crash; two of its commands
# declare no current value.
TRUTH_MODEL = f"""
import numpy as np
from pydantic import Field
from reactor_engine import VideoModel, VideoOut, command, get_ctx, model

@model(name="truth-test")
class TruthTest(VideoModel):
    main_video = VideoOut(default=True, rate=30)

    def __init__(self, config):
        self.crash = False
        self.size = (int(config.get("height", 320)), int(config.get("width", 180)))

    @command("set_gain")
    def set_gain(self, gain: float = Field(1.0, ge=0.0, le=2.0)):
        pass

    @command("mute")
    def mute(self, muted: bool = True):
        pass

    @command("crash")
    def do_crash(self):
        self.crash = True

    def start_session(self):
        ctx = get_ctx()
        frame = np.full((*self.size, 3), 120, np.uint8)
        while not ctx.should_stop():
            if self.crash:
                raise ValueError({SECRET!r})
            ctx.get_track().emit(frame)
"""
BROKEN_LOAD = f"""
from reactor_engine import VideoModel, model

@model(name="broken-load")
class BrokenLoad(VideoModel):
    def __init__(self, config):
        raise ValueError({SECRET!r})

    def start_session(self):
        pass
"""
EARLY_CRASH = """
import numpy as np
from reactor_engine import VideoModel, VideoOut, get_ctx, model

@model(name="early-crash")
class EarlyCrash(VideoModel):
    main_video = VideoOut(default=True, rate=30)

    def start_session(self):
        get_ctx().get_track().emit(np.zeros((64, 64, 3), np.float32))  # floats: the session dies at once
"""


class Served:
    """A running ``reactor-engine run``: its URL and what it has printed so far."""

    def __init__(self) -> None:
        self.url = ""
        self.lines: list[str] = []

    @property
    def log(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def served(*args: str, cwd: Path) -> Iterator[Served]:
    """``reactor-engine run ARGS --port 0`` as a subprocess until SIGTERM (which must exit 0)."""
    script = Path(sys.executable).parent / "reactor-engine"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reactor_engine.cli"]
    process = subprocess.Popen(
        [*command, "run", *args, "--port", "0", "--orphan-timeout", "60"],
        cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    server = Served()
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line)
            match = re.search(r"open (http://\S+)", line)
            if match and not server.url:
                server.url = match.group(1)
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not found.wait(120):
            pytest.fail("reactor-engine run did not start:\n" + server.log)
        yield server
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, server.log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def browser(chromium):  # noqa: F811 - the fixture imported above, under the name the tests use
    return chromium


def status(driver) -> str:
    return driver.find_element("id", "status").text


def page_text(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def control(driver, command: str) -> dict:
    """The first parameter's control of ``command``: its value as shown, and whether it is current."""
    return driver.execute_script(
        """
        const label = document.querySelector(`[data-command="${arguments[0]}"] label`);
        if (!label) return {};  // the controls are not built yet
        const input = label.querySelector('input, select');
        const out = label.querySelector('output');
        const hint = label.querySelector('.hint');
        return {value: input.value, placeholder: input.placeholder || null, checked: input.checked,
                indeterminate: !!input.indeterminate, shown: out ? out.textContent : null,
                current: label.dataset.current,
                hint: hint && getComputedStyle(hint).display !== 'none' ? hint.textContent : null};
        """,
        command,
    )


def layout(driver) -> dict:
    return driver.execute_script(
        """
        const shown = document.documentElement.dataset.transport === 'webrtc' ? 'video' : 'screen';
        const c = document.getElementById(shown).getBoundingClientRect();
        const s = document.getElementById('stats').getBoundingClientRect();
        return {width: c.width, height: c.height, bottom: c.bottom, statsTop: s.top,
                statsBottom: s.bottom, viewport: window.innerHeight};
        """
    )


def fits(driver, aspect: float) -> dict | None:
    """The layout once the stream fills the height it may take with the stats bar on screen."""
    box = layout(driver)
    on_screen = box["statsBottom"] <= box["viewport"] and box["bottom"] <= box["statsTop"]
    proportional = abs(box["width"] / max(1.0, box["height"]) - aspect) < 0.05 * aspect
    big = box["height"] >= 0.5 * box["viewport"]
    return box if on_screen and proportional and big else None


def open_viewer(driver, server: Served) -> None:
    driver.get(server.url + "?transport=websocket")


def test_a_model_whose_init_raised_is_named_as_a_load_failure_with_its_kind(browser, tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN_LOAD)
    with served("broken.py", cwd=tmp_path) as server:
        open_viewer(browser, server)
        text = wait_for(
            lambda: "failed to load" in status(browser) and status(browser), 30, "the load failure shown"
        )
        assert text == "the model failed to load (ValueError); see the server log"
        assert viewer_state(browser)["loadError"] == text
        assert SECRET not in page_text(browser)


def test_a_session_that_crashed_before_a_client_attached_is_told_how_it_ended(browser, tmp_path):
    (tmp_path / "early.py").write_text(EARLY_CRASH)
    with served("early.py", cwd=tmp_path) as server:
        # The protocol: a WebSocket for a session that has already ended learns its end.
        client = ReactorClient(server.url)
        sid = client.create_session()
        wait_for(lambda: client.session_stats(sid).get("end_reason"), 30, "the session to end")
        with pytest.raises(ClientError) as refused:
            client.connect(sid)
        assert refused.value.code == "session_ended" and refused.value.detail["close"] == 4410
        assert "with an error (FrameError)" in str(refused.value) and "error id" in str(refused.value)

        # The viewer: its own session dies at once (before or just after its WebSocket attaches).
        open_viewer(browser, server)
        text = wait_for(lambda: ERROR_TEXT.match(status(browser)), 30, "the session's end shown")
        assert text["kind"] == "FrameError"
        end = viewer_state(browser)["end"]
        assert end["error"] == "FrameError" and end["error_id"] == text["id"]
        assert f"[error {text['id']}]" in server.log


def test_a_crash_while_watching_shows_the_kind_when_and_error_id(browser, tmp_path):
    (tmp_path / "truth.py").write_text(TRUTH_MODEL)
    with served("truth.py", cwd=tmp_path) as server:
        open_viewer(browser, server)
        wait_for(lambda: viewer_state(browser).get("framesDrawn", 0) >= 3, 60, "the first frames")
        browser.find_element("css selector", '[data-command="crash"] button').click()
        text = wait_for(lambda: ERROR_TEXT.match(status(browser)), 30, "the crash shown")
        assert text["kind"] == "ValueError"
        assert wait_for(lambda: viewer_state(browser)["end"], 30, "the end")["reason"] == "error"
        assert SECRET not in page_text(browser)
        assert f"[error {text['id']}]" in server.log


@pytest.mark.parametrize(("width", "height"), [(256, 256), (180, 320)], ids=["square", "tall"])
def test_a_square_or_tall_stream_leaves_the_stats_bar_on_screen(browser, tmp_path, width, height):
    (tmp_path / "truth.py").write_text(TRUTH_MODEL)
    with served("truth.py", f"--model.width={width}", f"--model.height={height}", cwd=tmp_path) as server:
        open_viewer(browser, server)
        wait_for(lambda: viewer_state(browser).get("framesDrawn", 0) >= 3, 60, "the first frames")
        # The stream takes the height left under the header, in its own proportions, with the stats
        # bar below it and on screen.
        wait_for(lambda: fits(browser, width / height), 10, f"the stream to fit: {layout(browser)}")


def test_a_parameter_without_a_declared_value_shows_none_as_current(browser, tmp_path):
    (tmp_path / "truth.py").write_text(TRUTH_MODEL)
    with served("truth.py", cwd=tmp_path) as server:
        open_viewer(browser, server)
        wait_for(lambda: viewer_state(browser).get("status", "").startswith("live"), 60, "the session")
        # No state= declared: no value is shown as the model's, the default only as a hint.
        gain, mute = control(browser, "set_gain"), control(browser, "mute")
        assert gain["current"] == "unknown" and gain["shown"] == "\u2013" and gain["hint"] == "default: 1"
        assert mute["current"] == "unknown" and mute["indeterminate"] and mute["hint"] == "default: true"
        assert viewer_state(browser)["commandState"] == {}


def test_controls_show_the_models_current_values_and_resync(browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    with served(str(PLASMA), "--model.speed=2", cwd=tmp_path) as server:
        open_viewer(browser, server)
        wait_for(lambda: viewer_state(browser).get("framesDrawn", 0) >= 3, 60, "the first frames")
        # --model.speed=2: the slider stands at 2; the stream plays: "Paused" is not ticked.
        wait_for(lambda: control(browser, "set_speed").get("current") == "known", 30, "the reported speed")
        speed = control(browser, "set_speed")
        assert float(speed["value"]) == 2 and speed["shown"] == "2.00"
        paused = control(browser, "pause")
        assert paused["current"] == "known" and not paused["checked"] and not paused["indeterminate"]
        assert control(browser, "set_palette")["value"] == '"fire"'

        # One click pauses (the first click does something); the box follows the model.
        browser.find_element("css selector", '[data-command="pause"] input').click()
        wait_for(lambda: viewer_state(browser)["commandState"]["pause"] == {"paused": True}, 30, "paused")
        assert control(browser, "pause")["checked"]
        palette = browser.find_element("css selector", '[data-command="set_palette"] select')
        Select(palette).select_by_visible_text("ocean")
        wait_for(lambda: control(browser, "set_palette")["value"] == '"ocean"', 30, "the palette reported")

        # Another client's command re-syncs this page.
        sid = viewer_state(browser)["sessionId"]
        with ReactorClient(server.url).connect(sid) as other:
            other.send_command("set_speed", {"speed": 3.5})
        wait_for(lambda: control(browser, "set_speed")["shown"] == "3.50", 30, "the other client's speed")

        # A new session starts from the model's values again (on_session_end resets them).
        browser.find_element("id", "stop").click()
        wait_for(lambda: not viewer_state(browser)["sessionId"], 30, "the session to stop")
        assert status(browser).startswith("the session was stopped after ")
        wait_for(lambda: control(browser, "set_speed")["shown"] == "2.00", 30, "the idle model's speed")
        browser.find_element("id", "start").click()
        wait_for(lambda: viewer_state(browser)["status"].startswith("live"), 30, "a new session")
        assert control(browser, "set_speed")["shown"] == "2.00"
        assert control(browser, "set_palette")["value"] == '"fire"'
        assert not control(browser, "pause")["checked"]
        drawn = viewer_state(browser)["framesDrawn"]
        wait_for(lambda: viewer_state(browser)["framesDrawn"] > drawn + 5, 30, "the new session to play")


def test_the_demo_controls_follow_reset(browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    with served("--model.width=320", "--model.height=180", cwd=tmp_path) as server:
        open_viewer(browser, server)
        wait_for(lambda: control(browser, "set_brightness").get("current") == "known", 60, "the values")
        assert control(browser, "set_brightness")["shown"] == "1.00"
        # A text box shows the current value as its placeholder: what is typed replaces it.
        prompt = control(browser, "set_prompt")
        assert prompt["placeholder"] == "a calm ocean at dusk" and prompt["value"] == ""
        assert control(browser, "move")["value"] == '"stop"'
        slider = browser.find_element("css selector", '[data-command="set_brightness"] input[type=range]')
        slider.send_keys(Keys.HOME)
        wait_for(lambda: control(browser, "set_brightness")["shown"] == "0.00", 30, "brightness 0 reported")
        browser.find_element("css selector", '[data-command="reset"] button').click()
        wait_for(lambda: control(browser, "set_brightness")["shown"] == "1.00", 30, "reset reported")
        assert float(control(browser, "set_brightness")["value"]) == 1


def test_the_demo_the_scaffold_and_the_example_report_every_parameters_current_value(tmp_path):
    from reactor_engine.commands import command_state
    from reactor_engine.engine import Engine

    subprocess.run(
        [sys.executable, "-m", "reactor_engine.cli", "init", "my-model"], cwd=tmp_path, check=True, timeout=60
    )
    for target in (ROOT / "reactor_engine" / "demo" / "model.py", PLASMA, tmp_path / "my-model"):
        config = {"width": 64, "height": 64}
        with Engine(target, model_config=config, engine_config={"codec": "jpeg"}) as engine:
            values = command_state(engine.spec.commands, engine.model)
            for name, schema in engine.command_schema().items():
                assert set(values.get(name, {})) == set(schema.get("properties", {})), (target, name)


def test_over_webrtc_the_controls_follow_the_model_and_the_end_is_told(
    browser_in_netns,  # noqa: F811 - the fixture imported above
    webrtc_demo,  # noqa: F811
):
    """The same truths where the page plays over WebRTC (its values come from the session's stats)."""
    from selenium.webdriver.common.keys import Keys

    driver = browser_in_netns
    driver.get(webrtc_demo)
    wait_live(driver, "webrtc")
    wait_for(lambda: control(driver, "set_brightness").get("current") == "known", 60, "the demo's values")
    assert control(driver, "set_brightness")["shown"] == "1.00"
    driver.find_element("css selector", '[data-command="set_brightness"] input[type=range]').send_keys(
        Keys.HOME
    )
    wait_for(lambda: control(driver, "set_brightness")["shown"] == "0.00", 30, "brightness 0 reported")
    driver.find_element("id", "stop").click()
    text = wait_for(
        lambda: re.match(r"the session was stopped\b.* after \d+\.\d s$", status(driver)), 30, "the end"
    )
    assert text
    wait_for(lambda: control(driver, "set_brightness")["shown"] == "1.00", 30, "the idle model's brightness")


# -- the engine's side: how a model declares its current values, and how the hub reports them ----------


def test_a_state_declaration_is_checked_and_a_broken_one_reports_no_value(caplog):
    from pydantic import Field

    from reactor_engine import VideoModel, command, model
    from reactor_engine.commands import command_state
    from reactor_engine.errors import ModelError
    from reactor_engine.model import model_spec

    with pytest.raises(ModelError, match=r"state=lambda self"):
        command("set_x", state={"x": 1})  # type: ignore[arg-type]

    @model(name="state-check")
    class StateCheck(VideoModel):
        def __init__(self, config=None):
            self.x, self.n = 0.5, 3

        @command("set_x", state=lambda self: {"x": self.x})
        def set_x(self, x: float = Field(1.0, ge=0, le=1)):
            self.x = x

        @command("broken", state=lambda self: 1 / 0)
        def broken(self, y: int = 0):
            pass

        @command("wrong", state=lambda self: {"nope": 1, "n": object(), "m": self.n})
        def wrong(self, n: int = 0, m: int = 0):
            pass

        @command("plain")  # the seed-era signature: no current value
        def plain(self, z: bool = True):
            pass

        def start_session(self):
            pass

    instance = StateCheck()
    for _ in range(2):
        assert command_state(model_spec(StateCheck).commands, instance) == {
            "set_x": {"x": 0.5},
            "wrong": {"m": 3},
        }
    logged = [r.getMessage() for r in caplog.records if "state=" in r.getMessage()]
    assert len(logged) == 3, logged  # each problem once: the raise, the unknown name, the non-JSON value
    assert any("'broken' raised" in text for text in logged)
    assert any("names 'nope', which is not a parameter" in text for text in logged)


def test_the_hub_reports_the_values_on_attach_after_each_command_and_while_idle():
    import asyncio

    import numpy as np
    from test_hub import ENGINE, RecordingClient

    from reactor_engine import Engine, VideoModel, VideoOut, command, get_ctx, model
    from reactor_engine.transports.hub import SessionHub

    @model(name="state-hub")
    class StateHub(VideoModel):
        main_video = VideoOut(default=True, rate=60)

        def __init__(self, config=None):
            self.level = 7

        @command("set_level", state=lambda self: {"level": self.level})
        def set_level(self, level: int):
            self.level = level

        def start_session(self):
            ctx = get_ctx()
            frame = np.zeros((48, 64, 3), np.uint8)
            while not ctx.should_stop():
                ctx.get_track().emit(frame)

        def on_session_end(self, reason):
            self.level = 7

    def states(client):
        return [m["data"] for m in client.messages if m.get("type") == "state"]

    async def scenario(engine):
        hub = SessionHub(engine)
        assert hub.command_state() == {"set_level": {"level": 7}}  # idle: read from the model
        live = await hub.start_session()
        early = RecordingClient()
        hub.attach(live, early)
        await early.until(lambda: states(early))  # the values the session starts with
        assert states(early)[0] == {"set_level": {"level": 7}}
        await hub.command(live, "set_level", {"level": 3})
        # The new values were handed out before the command's reply.
        assert states(early)[-1] == {"set_level": {"level": 3}} == hub.stats(live)["command_state"]
        late = RecordingClient()
        hub.attach(live, late)
        assert states(late) == [{"set_level": {"level": 3}}]  # told at once, as it attaches
        await hub.stop(live, "stopped")
        await early.until(lambda: early.closed is not None)
        ended = next(m for m in early.messages if m.get("event") == "ended")
        assert ended["duration_s"] >= 0 and ended["reason"] == "stopped"
        assert hub.command_state() == {"set_level": {"level": 7}}  # on_session_end reset it

    with Engine(StateHub, engine_config=ENGINE) as engine:
        asyncio.run(asyncio.wait_for(scenario(engine), 60))
