"""`reactor-engine run` as a process: SIGINT/SIGTERM stop the session within the grace period, exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from http_helpers import events_until_closed

from reactor_engine.client import ReactorClient

MODEL = """
import numpy as np
from reactor_engine import VideoModel, command, get_ctx, model

@model(name="signal-test")
class SignalModel(VideoModel):
    def __init__(self, config):
        self.level = 10

    @command("set_level")
    def set_level(self, level: int) -> None:
        self.level = level

    def start_session(self):
        ctx = get_ctx()
        frame = np.zeros((24, 32, 3), dtype=np.uint8)
        while not ctx.should_stop():
            frame[:] = self.level
            ctx.get_track().emit(frame)
"""


def reactor_engine_command() -> list[str]:
    script = Path(sys.executable).parent / "reactor-engine"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reactor_engine.cli"]


class ServerProcess:
    """``reactor-engine run ... --port 0``; its log is read on a thread, the URL parsed from it."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [*reactor_engine_command(), "run", *args, "--port", "0"],
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.url_found = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.url_found.wait(90):
            self.kill()
            pytest.fail("reactor-engine run did not start:\n" + "".join(self.lines))
        self.client = ReactorClient(self.url, timeout=15.0)
        self.client.wait_ready(60)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(r"open (http://\S+)", line)
            if match and not self.url:
                self.url = match.group(1)
                self.url_found.set()

    def log(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "signal_model.py").write_text(MODEL)
    return tmp_path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_session_tells_the_client_and_exits_cleanly(model_dir, sig):
    server = ServerProcess(["signal_model.py", "--engine.stop_grace=5"], model_dir)
    try:
        sid = server.client.create_session()
        stream = server.client.connect(sid)
        stream.next_frame()
        os.kill(server.process.pid, sig)
        events = events_until_closed(stream)
        assert events and events[-1]["event"] == "ended" and events[-1]["reason"] == "shutdown"
        assert server.process.wait(30) == 0, server.log()
    finally:
        server.kill()
    log = server.log()
    assert "Traceback" not in log, log
    assert f"session={sid}" in log  # logs carry the session id


def test_the_server_binds_loopback_and_reports_loading_then_ready(model_dir):
    server = ServerProcess(["signal_model.py"], model_dir)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.client.health()["state"] == "ready"
        started = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert time.monotonic() - started < 30
    finally:
        server.kill()
    assert "loading model 'signal-test'" in server.log()
    assert "model 'signal-test' loaded" in server.log()
