"""Fault injection: clients that vanish or stop reading, models that crash or hang, an encoder error,
SIGTERM while the model loads, ``kill -9`` and a restart on the same port. After each fault the server
serves the next client (a new session streams frames), or the process exits cleanly where that is the
contract. Waits are bounded; no test asserts a time.

Covered elsewhere and not repeated here: a WebRTC peer that vanishes
(``test_webrtc_peers.py::test_a_peer_that_vanishes_is_freed_after_the_ping_timeout``); a hung model
in the headless runtime
(``test_headless.py::test_a_model_that_ignores_should_stop_ends_the_run_unhealthy_with_stats``,
``test_headless.py::test_sigterm_ends_a_hung_model_run_with_stats``) and in a host program
(``test_engine.py::test_a_model_ignoring_should_stop_makes_the_engine_unhealthy_and_the_caller_returns``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import RawWebSocket, open_fds, open_mjpeg, vanish, wait_until
from http_helpers import events_until_closed
from test_http_protocol import ENGINE, LevelModel, RunningServer, start_server
from test_http_signals import MODEL as SIGNAL_MODEL
from test_http_signals import reactor_engine_command

from reactor_engine import Engine, VideoModel, VideoOut, get_ctx, model
from reactor_engine.client import ClientError, Frame, ReactorClient, StreamConnection
from reactor_engine.transports.app import HttpOptions


def serves_a_new_session(client: ReactorClient, frames: int = 5) -> None:
    """The server's health is ready and a new session streams ``frames`` frames in order."""
    wait_until(lambda: client.health()["state"] == "ready", what="the engine becoming ready")
    sid = client.create_session()
    with client.connect(sid) as stream:
        indices = [stream.next_frame().index for _ in range(frames)]
    assert indices == sorted(indices) and len(set(indices)) == frames
    client.delete_session(sid)


def drain(stream: StreamConnection) -> None:
    """Read until the connection fails (``ClientError``); each read bounded."""
    for _ in range(100_000):
        stream.recv(10.0)


def clients_of(running: RunningServer, sid: str) -> int:
    return int(running.client.session_stats(sid)["runtime"]["clients"])


@pytest.fixture
def server():
    running = start_server()
    yield running
    running.stop()
    running.engine.close()


# -- clients that vanish ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", [True, False], ids=["RST", "FIN"])
def test_a_websocket_client_that_vanishes_without_a_close_frame_is_freed_and_others_go_on(server, reset):
    sid = server.client.create_session()
    with server.client.connect(sid) as other:
        other.next_frame()
        fds = open_fds()
        gone = RawWebSocket(server.url, sid)
        gone.next_frame()
        assert clients_of(server, sid) == 2
        gone.vanish(reset)
        wait_until(lambda: clients_of(server, sid) == 1, what="the vanished client being detached")
        wait_until(lambda: open_fds() <= fds, what="its socket being closed")
        before = other.next_frame().index
        assert other.next_frame().index > before  # the other client streams on
    with server.client.connect(sid) as again:  # the same session takes the next client
        again.next_frame()
    server.client.delete_session(sid)
    serves_a_new_session(server.client)


@pytest.mark.parametrize("reset", [True, False], ids=["RST", "FIN"])
def test_an_mjpeg_client_that_drops_the_connection_is_freed_and_the_next_is_served(server, reset):
    sid = server.client.create_session()
    sock, body = open_mjpeg(server.url, sid)
    while b"\xff\xd8" not in body:  # the first JPEG
        body += sock.recv(65536)
    assert clients_of(server, sid) == 1
    vanish(sock, reset)
    wait_until(lambda: clients_of(server, sid) == 0, what="the MJPEG client being detached")
    sock, body = open_mjpeg(server.url, sid)
    while b"\xff\xd8" not in body:
        body += sock.recv(65536)
    sock.close()
    server.client.delete_session(sid)
    serves_a_new_session(server.client)


# -- models that crash or hang ----------------------------------------------------------------------------


@model(name="crash-once")
class CrashOnceModel(VideoModel):
    """Its first session raises at frame 10; later sessions stream until stopped."""

    main_video = VideoOut(default=True, rate=60)

    def __init__(self, config: object) -> None:
        self.sessions = 0

    def start_session(self) -> None:
        self.sessions += 1
        ctx = get_ctx()
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        index = 0
        while not ctx.should_stop():
            if self.sessions == 1 and index == 10:
                raise RuntimeError("boom mid-stream")
            ctx.get_track().emit(frame)
            index += 1


def test_a_model_raising_mid_stream_ends_its_session_with_the_error_and_the_next_session_streams():
    running = RunningServer(Engine(CrashOnceModel, engine_config=ENGINE), HttpOptions())
    try:
        sid = running.client.create_session()
        with running.client.connect(sid) as stream:
            events = events_until_closed(stream)
            assert stream.close_code == 1000
        ended = next(e for e in events if e["event"] == "ended")
        assert ended["reason"] == "error" and ended["error"] == "RuntimeError"
        stats = running.client.session_stats(sid)
        assert stats["end_reason"] == "error" and stats["error"] == "RuntimeError"
        serves_a_new_session(running.client)
    finally:
        running.stop()
        running.engine.close()


RELEASE = threading.Event()


@model(name="hang-until-released")
class HangingModel(VideoModel):
    main_video = VideoOut(default=True, rate=60)

    def __init__(self, config: object) -> None:
        pass

    def start_session(self) -> None:
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        ctx = get_ctx()
        while not (ctx.should_stop() and RELEASE.is_set()):  # ignores the stop until released
            ctx.get_track().emit(frame)
            time.sleep(0.01)


def test_a_hung_model_makes_the_server_unhealthy_and_once_it_returns_the_next_session_streams():
    RELEASE.clear()
    running = RunningServer(Engine(HangingModel, engine_config={**ENGINE, "stop_grace": 0.3}), HttpOptions())
    try:
        sid = running.client.create_session()
        with running.client.connect(sid) as stream:
            stream.next_frame()
            running.client.delete_session(sid)  # returns after the grace: the model ignored the stop
            assert stream.next_message(10.0, type="event")["event"] == "unhealthy"
        assert running.client.health()["state"] == "unhealthy"
        with pytest.raises(ClientError) as refused:
            running.client.create_session()
        assert refused.value.status == 503 and refused.value.code == "unhealthy"
        RELEASE.set()  # the model's thread returns at last: the engine is whole again
        serves_a_new_session(running.client)
    finally:
        RELEASE.set()
        running.stop()
        running.engine.close()


# -- an encoder error --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codecs",
    [
        {"codec": "jpeg"},
        {"codec": "vp8", "extra_codecs": ["jpeg"]},  # was a stall: the hub stopped reading an output
    ],
    ids=["jpeg", "vp8+jpeg"],
)
def test_an_encoder_error_reaches_the_client_and_the_next_session_streams(codecs):
    running = start_server(**codecs)
    try:
        encoder = running.engine.tracks["main_video"].encoder
        sid = running.client.create_session()
        with running.client.connect(sid) as stream:
            stream.next_frame()
            errors = running.engine.tracks["main_video"].ring.stats()["encode_errors"]
            encoder.inject_error_for_tests()
            wait_until(
                lambda: running.engine.tracks["main_video"].ring.stats()["encode_errors"] == errors + 1,
                what="the injected encoder error",
            )
            # The contract: the client is told (the model's emit raised EncodeError: the session ends,
            # reason error) or served (the stream goes on past the lost frame); never a silent stall.
            frames, ended = 0, None
            while ended is None and frames < 30:
                message = stream.recv(5.0)  # ReactorTimeoutError: the stall
                if isinstance(message, Frame):
                    frames += 1
                elif message.get("event") == "ended":
                    ended = message
            if ended is not None:
                assert ended["reason"] == "error" and ended["error"] == "EncodeError"
            else:
                assert frames == 30  # served past the lost frame; this session is stopped for the next
                running.client.delete_session(sid)
        serves_a_new_session(running.client)
    finally:
        running.stop()
        running.engine.close()


# -- consumers that stop reading ---------------------------------------------------------------------------


def test_a_host_that_stops_reading_gets_counted_ring_drops_and_fresh_frames_after(small_engine_config):
    config = {**small_engine_config, "ring_policy": "drop_oldest", "packet_queue": 2, "fps": 120.0}
    with Engine(LevelModel, engine_config=config) as engine:
        session = engine.session()
        first = session.next_packet(timeout=10)
        assert first is not None
        last = first.frame_index
        first.release()
        ring = engine.tracks["main_video"].ring
        # Nobody pops: the two packet buffers fill, the encoder waits, the ring drops its oldest.
        wait_until(lambda: ring.stats()["frames_dropped_oldest"] >= 20, what="ring drops")
        indices = []
        for _ in range(10):
            packet = session.next_packet(timeout=10)
            assert packet is not None
            indices.append(packet.frame_index)
            packet.release()
        assert indices == sorted(indices) and indices[0] > last
        assert indices[-1] - last > 20  # the host resumes near the newest frames, not where it stopped
        session.stop()
        stats = session.stats()
    counters = stats["tracks"]["main_video"]["counters"]
    assert stats["drops"] >= 20 and counters["frames_dropped_oldest"] >= 20
    assert counters["encode_errors"] == 0


@model(name="big-frames")
class BigFrameModel(VideoModel):
    """320x240 RGB frames at 30 fps: sent raw, each fills a small socket buffer at once."""

    main_video = VideoOut(default=True, rate=30)

    def __init__(self, config: object) -> None:
        pass

    def start_session(self) -> None:
        ctx = get_ctx()
        frame = np.full((240, 320, 3), 90, dtype=np.uint8)
        while not ctx.should_stop():
            ctx.get_track().emit(frame)


def test_a_websocket_client_that_stops_reading_loses_frames_counted_and_the_others_are_served():
    config = {**ENGINE, "max_width": 320, "max_height": 240, "width": 320, "height": 240, "codec": "raw"}
    running = RunningServer(Engine(BigFrameModel, engine_config=config), HttpOptions())
    try:
        sid = running.client.create_session()
        with running.client.connect(sid) as reader:
            reader.next_frame()
            stalled = RawWebSocket(running.url, sid, rcvbuf=4096)  # connected, then never read
            wait_until(
                lambda: running.client.session_stats(sid)["runtime"]["client_frames_dropped"] > 10,
                what="the stalled client's buffer dropping frames",
            )
            indices = [reader.next_frame().index for _ in range(30)]
            stats = running.client.session_stats(sid)
            assert stats["runtime"]["clients"] == 2
            assert stats["drops"] == 0  # the encoder was never held up: nothing dropped in the ring
            # The reading client got (nearly) every frame while the other one stalled.
            assert len(set(indices)) == 30 and indices[-1] - indices[0] < 30 + 10
            stalled.vanish()
            wait_until(lambda: clients_of(running, sid) == 1, what="the stalled client being freed")
            reader.next_frame()
        running.client.delete_session(sid)
        serves_a_new_session(running.client)
    finally:
        running.stop()
        running.engine.close()


# -- the process: SIGTERM while loading, kill -9 and a restart ---------------------------------------------

SLOW_LOAD_MODEL = """
import time
import numpy as np
from reactor_engine import VideoModel, get_ctx, model

@model(name="slow-load")
class SlowLoadModel(VideoModel):
    def __init__(self, config):
        for _ in range(3000):  # 300 s of "loading weights"
            time.sleep(0.1)

    def start_session(self):
        while not get_ctx().should_stop():
            get_ctx().get_track().emit(np.zeros((24, 32, 3), dtype=np.uint8))
"""


class Run:
    """``reactor-engine run MODEL --port PORT``; the log read on a thread, the URL parsed from it."""

    def __init__(self, cwd: Path, *args: str, port: int = 0) -> None:
        self.process = subprocess.Popen(
            [*reactor_engine_command(), "run", *args, "--port", str(port)],
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.url = ""
        found = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                match = re.search(r"open (http://\S+)", line)
                if match and not self.url:
                    self.url = match.group(1)
                    found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(90):
            self.kill()
            pytest.fail("reactor-engine run did not start:\n" + self.log())
        self.client = ReactorClient(self.url, timeout=15.0)

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def log(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def test_sigterm_while_the_model_loads_exits_cleanly(tmp_path):
    (tmp_path / "slow_model.py").write_text(SLOW_LOAD_MODEL)
    run = Run(tmp_path, "slow_model.py", "--engine.stop_grace=1")
    try:
        assert run.client.health()["state"] == "loading"
        with pytest.raises(ClientError) as refused:
            run.client.create_session()
        assert refused.value.status == 503 and refused.value.code == "loading"
        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(60) == 0, run.log()  # within a bound: stop_grace + uvicorn's shutdown
    finally:
        run.kill()
    assert "Traceback" not in run.log(), run.log()


def test_kill_9_then_an_immediate_restart_on_the_same_port_binds_and_serves(tmp_path):
    (tmp_path / "signal_model.py").write_text(SIGNAL_MODEL)
    first = Run(tmp_path, "signal_model.py")
    try:
        first.client.wait_ready(60)
        sid = first.client.create_session()
        stream = first.client.connect(sid)
        stream.next_frame()
        idle = socket.create_connection(("127.0.0.1", first.port))  # a keep-alive connection too
        os.kill(first.process.pid, signal.SIGKILL)
        assert first.process.wait(30) == -signal.SIGKILL
        with pytest.raises(ClientError, match="closed"):  # the client learns at once; no hang
            drain(stream)
        stream.close()
        idle.close()
    finally:
        first.kill()
    # The killed server's connections sit in TIME_WAIT on that port: the new one binds all the same.
    second = Run(tmp_path, "signal_model.py", port=first.port)
    try:
        second.client.wait_ready(60)
        serves_a_new_session(second.client)
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(60) == 0, second.log()
    finally:
        second.kill()
    assert "address already in use" not in second.log().lower()
