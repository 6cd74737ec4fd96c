"""The headless runtime end to end through the CLI: frames to files, scripted and stdin commands, stats."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

MODEL = """
import numpy as np
from pydantic import Field
from reactor_engine import VideoModel, VideoOut, command, get_ctx, model

@model(name="headless-test")
class HeadlessModel(VideoModel):
    main_video = VideoOut(default=True, rate=120)

    def __init__(self, config):
        self.level = 10

    @command("set_level")
    def set_level(self, level: int = Field(ge=0, le=255)) -> dict:
        self.level = level
        get_ctx().send({"level": level})
        return {"level": level}

    def start_session(self):
        ctx = get_ctx()
        frame = np.zeros((24, 32, 3), dtype=np.uint8)
        while not ctx.should_stop():
            frame[:] = self.level
            ctx.get_track().emit(frame)
"""


def run_cli(
    *args: str, cwd: Path, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "reactor-engine"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reactor_engine.cli"]
    return subprocess.run(
        [*command, *args], cwd=cwd, input=stdin if stdin is not None else "", capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def test_frames_are_written_as_a_jpeg_sequence_with_scripted_commands_and_stats(project):
    (project / "script.jsonl").write_text(
        '{"type": "set_level", "data": {"level": 250}, "at_frame": 3}\n'
        "# comments and blank lines are skipped\n\n"
        '{"type": "set_level", "data": {"level": 999}, "at_frame": 4}\n'
        '{"type": "fly", "at_frame": 4}\n'
    )
    args = ("--runtime", "headless", "--output", "out", "--frames", "12", "--commands", "script.jsonl")
    done = run_cli("run", "model.py", *args, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "[STATS] 12 frames" in done.stdout
    assert re.search(r"fps, \d+ dropped, ended", done.stdout), done.stdout  # drops beside fps
    files = sorted((project / "out").glob("frame_*.jpg"))
    assert [f.name for f in files] == [f"frame_{i:06d}.jpg" for i in range(12)]
    with Image.open(files[0]) as first, Image.open(files[-1]) as last:
        assert first.size == (32, 24)
        assert last.convert("L").getpixel((5, 5)) > 200  # the scripted command took effect
    stats = json.loads((project / "out" / "stats.json").read_text())
    assert stats["output"]["frames_written"] == 12 and stats["session"]["end_reason"] == "stopped"
    outcomes = {(c["line"], c["ok"]) for c in stats["commands"]}
    assert outcomes == {(1, True), (4, False), (5, False)}
    failed = {c["line"]: c["error"] for c in stats["commands"] if not c["ok"]}
    assert "less than or equal to 255" in failed[4] and "unknown command 'fly'" in failed[5]
    assert {"level": 250} in [m["data"] for m in stats["messages"] if m["type"] == "message"]


def test_mjpeg_output_holds_every_frame_in_one_file(project):
    done = run_cli(
        "run",
        "model.py",
        "--runtime",
        "headless",
        "--output",
        "out",
        "--frames",
        "5",
        "--format",
        "mjpeg",
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    stream = (project / "out" / "stream.mjpeg").read_bytes()
    assert stream.count(b"\xff\xd8\xff") == 5 and stream.endswith(b"\xff\xd9")
    assert json.loads((project / "out" / "stats.json").read_text())["output"]["format"] == "mjpeg"


def test_raw_output_holds_rgb24_frames(project):
    done = run_cli(
        "run",
        "model.py",
        "--runtime",
        "headless",
        "--output",
        "out",
        "--seconds",
        "0.5",
        "--format",
        "raw",
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads((project / "out" / "stats.json").read_text())
    frames = stats["output"]["frames_written"]
    assert frames >= 1
    assert (project / "out" / "frames.rgb24").stat().st_size == frames * 32 * 24 * 3


def test_stdin_drives_sessions_with_start_cmd_stop_and_quit(project):
    lines = (
        'start\ncmd set_level {"level": 123}\ncmd set_level {"level": "x"}\ncmd fly {}\nbogus\n'
        "stop\nstart\nquit\n"
    )
    done = run_cli("run", "model.py", "--runtime", "headless", "--output", "out", cwd=project, stdin=lines)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("[STARTED] session") == 2
    assert '[REPLY] set_level: {"level": 123}' in out
    assert "[ERROR] invalid arguments for command 'set_level'" in out
    assert "[ERROR] unknown command 'fly'" in out
    assert "[ERROR] unknown input 'bogus'" in out
    assert '"type": "message"' in out and '"data": {"level": 123}' in out
    assert out.count("[STATS]") == 2
    folders = sorted((project / "out").glob("session-*"))
    assert len(folders) == 2 and all((f / "stats.json").is_file() for f in folders)


def test_a_bad_commands_script_fails_before_the_model_loads(project):
    (project / "script.jsonl").write_text('{"type": "set_level", "data": {"level": 1}}\n{"type": \n')
    done = run_cli(
        "run",
        "model.py",
        "--runtime",
        "headless",
        "--output",
        "out",
        "--frames",
        "3",
        "--commands",
        "script.jsonl",
        cwd=project,
    )
    assert done.returncode == 2
    assert "script.jsonl:2: not JSON" in done.stderr
    assert "loading model" not in done.stderr


def test_headless_needs_an_output_folder(project):
    done = run_cli("run", "model.py", "--runtime", "headless", "--frames", "3", cwd=project)
    assert done.returncode == 2 and "--runtime headless needs --output DIR" in done.stderr


def test_an_output_folder_in_use_or_a_file_is_refused_before_the_model_loads(project):
    (project / "used").mkdir()
    (project / "used" / "frame_000000.jpg").write_bytes(b"old")
    done = run_cli(
        "run", "model.py", "--runtime", "headless", "--output", "used", "--frames", "2", cwd=project
    )
    assert done.returncode == 2 and "--output used is not empty" in done.stderr
    assert "Traceback" not in done.stderr
    (project / "afile").write_text("x")
    done = run_cli(
        "run", "model.py", "--runtime", "headless", "--output", "afile", "--frames", "2", cwd=project
    )
    assert done.returncode == 2 and "--output afile is a file" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (project / "used").iterdir()) == ["frame_000000.jpg"]


HUNG_MODEL = """
import time
import numpy as np
from reactor_engine import VideoModel, VideoOut, get_ctx, model

@model(name="hung-model")
class HungModel(VideoModel):
    main_video = VideoOut(default=True, rate=60)

    def __init__(self, config):
        pass

    def start_session(self):
        frame = np.zeros((16, 16, 3), dtype=np.uint8)
        while True:  # ignores should_stop()
            get_ctx().get_track().emit(frame)
            time.sleep(0.01)
"""


@pytest.mark.parametrize("limit", [("--frames", "5"), ("--seconds", "0.5")])
def test_a_model_that_ignores_should_stop_ends_the_run_unhealthy_with_stats(tmp_path, limit):
    (tmp_path / "model.py").write_text(HUNG_MODEL)
    args = ("run", "model.py", "--runtime", "headless", "--output", "out", *limit, "--engine.stop_grace=0.5")
    done = run_cli(*args, cwd=tmp_path, timeout=60)  # hung forever before the fix
    assert done.returncode == 1, done.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["healthy"] is False and stats["session"]["state"] == "unhealthy"
    assert "unhealthy" in done.stdout


def test_sigterm_ends_a_hung_model_run_with_stats(tmp_path):
    import signal
    import time

    (tmp_path / "model.py").write_text(HUNG_MODEL)
    script = Path(sys.executable).parent / "reactor-engine"
    args = ("run", "model.py", "--runtime", "headless", "--output", "out", "--seconds", "600")
    proc = subprocess.Popen(
        [str(script), *args, "--engine.stop_grace=0.5"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "out").glob("frame_*.jpg")) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["healthy"] is False


def test_the_loaded_in_time_excludes_the_model_files_imports(tmp_path, monkeypatch, caplog):
    """The model file's import moves a fake clock on by 1000 s; "loaded in" must not count it."""
    import logging
    import types

    from reactor_engine import cli

    clock = types.SimpleNamespace(now=0.0)
    fake_time = types.SimpleNamespace(monotonic=lambda: clock.now, sleep=lambda s: None)
    monkeypatch.setattr(cli, "time", fake_time)
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    monkeypatch.setitem(sys.modules, "fake_clock_for_test", clock)
    (tmp_path / "model.py").write_text("import fake_clock_for_test as clock\nclock.now += 1000.0\n" + MODEL)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="reactor_engine"):
        code = cli.main(["run", "model.py", "--runtime", "headless", "--output", "out", "--frames", "2"])
    assert code == 0
    loaded = [r.getMessage() for r in caplog.records if "loaded in" in r.getMessage()]
    assert loaded and "loaded in 0.00 s" in loaded[0], loaded  # was "loaded in 1000.00 s"
