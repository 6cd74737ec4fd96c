"""The http runtime's wire protocol, through ``reactor_engine.client`` against a real uvicorn server."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.request
from typing import Literal

import numpy as np
import pytest
import uvicorn
from http_helpers import events_until_closed
from PIL import Image
from pydantic import Field
from starlette.applications import Starlette
from starlette.routing import Mount

from reactor_engine import CommandError, Engine, VideoModel, VideoOut, command, get_ctx, model
from reactor_engine.client import ClientError, ReactorClient
from reactor_engine.runtimes.http import _Server
from reactor_engine.transports.app import HttpApp, HttpOptions

ENGINE = {
    "max_width": 64,
    "max_height": 48,
    "width": 64,
    "height": 48,
    "codec": "jpeg",
    "ring_policy": "drop_oldest",
    "stop_grace": 5.0,
    "orphan_timeout": 30.0,
}


@model(name="protocol-test")
class LevelModel(VideoModel):
    """Grey frames at a settable level; commands of every kind, one that fails, one that talks."""

    main_video = VideoOut(default=True, rate=60)

    def __init__(self, config: object) -> None:
        self.level = 40

    @command("set_level", description="Grey level")
    def set_level(self, level: int = Field(40, ge=0, le=255)) -> dict[str, int]:
        self.level = level
        return {"level": level}

    @command("set_mode")
    def set_mode(self, mode: Literal["a", "b"]) -> None:
        pass

    @command("explode")
    def explode(self) -> None:
        raise RuntimeError("secret internal detail /home/model/weights.bin")

    @command("say")
    def say(self, text: str) -> None:
        get_ctx().send({"said": text})

    def start_session(self) -> None:
        ctx = get_ctx()
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        while not ctx.should_stop():
            frame[:] = self.level
            ctx.get_track().emit(frame)

    def on_session_end(self, reason: str) -> None:
        self.level = 40


class RunningServer:
    def __init__(self, engine: Engine, options: HttpOptions, mount: str = "") -> None:
        self.engine = engine
        self.runtime = HttpApp(engine, options)
        app = Starlette(routes=[Mount(mount, self.runtime.app)]) if mount else self.runtime.app
        urls: list[str] = []
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, ws="websockets-sansio", lifespan="off", log_config=None,
            timeout_graceful_shutdown=10,
        )  # fmt: skip
        self.server = _Server(config, self.runtime, urls.append)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not urls and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert urls, "the test server did not start"
        self.url = urls[0].rstrip("/") + mount + "/"
        self.client = ReactorClient(self.url, timeout=10.0)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the test server did not stop"


def start_server(options: HttpOptions | None = None, mount: str = "", **engine: object) -> RunningServer:
    return RunningServer(
        Engine(LevelModel, engine_config={**ENGINE, **engine}), options or HttpOptions(), mount
    )


@pytest.fixture
def server():
    running = start_server()
    yield running
    running.stop()
    running.engine.close()


def test_frames_arrive_with_increasing_indices_and_decode_as_jpeg(server):
    sid = server.client.create_session()
    with server.client.connect(sid) as stream:
        assert stream.hello["session_id"] == sid and stream.hello["codec"] == "jpeg"
        frames = [stream.next_frame() for _ in range(12)]
    indices = [frame.index for frame in frames]
    assert indices == sorted(set(indices)), f"indices not strictly increasing: {indices}"
    for frame in frames:
        image = Image.open(io.BytesIO(frame.data))
        assert image.format == "JPEG"
        assert image.size == (frame.width, frame.height) == (64, 48)
        assert frame.header.t_commit_ns <= frame.header.t_publish_ns <= frame.header.t_send_ns


def test_a_command_changes_the_next_frames(server):
    sid = server.client.create_session()
    with server.client.connect(sid) as stream:
        assert stream.send_command("set_level", {"level": 220}) == {"level": 220}
        for _ in range(60):
            frame = stream.next_frame()
            if np.asarray(Image.open(io.BytesIO(frame.data))).mean() > 200:
                break
        else:
            pytest.fail("no frame reflected set_level(220)")


def test_every_request_gets_exactly_one_reply_carrying_its_request_id(server):
    sid = server.client.create_session()
    with server.client.connect(sid) as stream:
        ok = stream.request({"type": "set_level", "data": {"level": 10}})
        assert ok["ok"] is True and ok["result"] == {"level": 10}
        invalid = stream.request({"type": "set_level", "data": {"level": "bright"}})
        assert invalid["ok"] is False and invalid["error"]["code"] == "invalid_arguments"
        assert "'level'" in invalid["error"]["message"]
        out_of_range = stream.request({"type": "set_level", "data": {"level": 999}})
        assert "less than or equal to 255" in out_of_range["error"]["message"]
        extra = stream.request({"type": "set_mode", "data": {"mode": "a", "colour": 1}})
        assert (
            extra["error"]["code"] == "invalid_arguments"
            and "'colour' is not a parameter" in extra["error"]["message"]
        )
        unknown = stream.request({"type": "fly", "data": {}})
        assert unknown["error"]["code"] == "unknown_command"
        assert "set_level" in unknown["error"]["message"]
        not_object = stream.request({"type": "set_level", "data": [1]})
        assert not_object["error"]["code"] == "invalid_arguments"
        pong = stream.request({"type": "ping", "t": 5})
        assert pong["type"] == "pong" and pong["t"] == 5
        caps = stream.request({"type": "requestCapabilities"})
        assert {c["name"] for c in caps["data"]["commands"]} >= {"set_level", "explode"}
        seed = stream.request({"scope": "application", "data": {"type": "set_level", "data": {"level": 3}}})
        assert seed["ok"] is True
        stream.send_text(json.dumps({"type": "set_level", "data": {"level": 5}}))  # no request_id
        reply = stream.next_message(type="reply")
        assert reply["ok"] is True and reply["request_id"] is None


def test_a_failing_handler_is_reported_without_its_internal_text(server):
    sid = server.client.create_session()
    with server.client.connect(sid) as stream:
        reply = stream.request({"type": "explode", "data": {}})
        assert reply["ok"] is False and reply["error"]["code"] == "command_failed"
        assert "RuntimeError" in reply["error"]["message"]
        assert "secret" not in reply["error"]["message"] and "/home" not in reply["error"]["message"]
        with pytest.raises(CommandError, match="command_failed"):
            stream.send_command("explode")
        assert stream.send_command("set_level", {"level": 1}) == {"level": 1}  # still served


def test_malformed_oversized_and_binary_messages_get_errors_and_the_connection_stays(server):
    sid = server.client.create_session()
    with server.client.connect(sid) as stream:
        stream.send_text("{not json")
        assert stream.next_message(type="error")["code"] == "invalid_json"
        stream.send_text("[1, 2]")
        assert stream.next_message(type="error")["code"] == "invalid_message"
        stream.send_text(json.dumps({"type": "say", "data": {"text": "x" * 70_000}}))
        too_large = stream.next_message(type="error")
        assert too_large["code"] == "message_too_large" and "65536" in too_large["message"]
        stream.send_text(b"\x00\x01")
        assert stream.next_message(type="error")["code"] == "binary_not_accepted"
        assert stream.request({"type": "set_level", "data": {"bad": 1}, "request_id": "x"})["ok"] is False
        assert stream.send_command("set_level", {"level": 2}) == {"level": 2}
        assert stream.next_frame().index >= 0


def test_model_messages_and_session_events_reach_the_client(server):
    sid = server.client.create_session()
    with server.client.connect(sid) as stream:
        stream.send_command("say", {"text": "hello"})
        message = stream.next_message(type="message")
        assert message["data"] == {"said": "hello"}
        server.client.delete_session(sid)
        while True:
            event = stream.next_message(type="event")
            if event["event"] == "ended":
                break
        assert event["reason"] == "stopped"
        events_until_closed(stream)
        assert stream.close_code == 1000


def test_wrong_session_ids_get_not_found_on_every_route(server):
    with pytest.raises(ClientError) as http_error:
        server.client.session_stats("nope")
    assert http_error.value.status == 404 and http_error.value.code == "session_not_found"
    with pytest.raises(ClientError) as delete_error:
        server.client.delete_session("nope")
    assert delete_error.value.status == 404
    with pytest.raises(ClientError) as ws_error:
        server.client.connect("nope")
    assert ws_error.value.code == "session_not_found" and ws_error.value.detail["close"] == 4404
    server.client.create_session()  # a running session does not make a wrong id right
    with pytest.raises(ClientError, match="session_not_found"):
        server.client.connect("nope")


def test_a_second_session_while_busy_gets_409_naming_the_running_one(server):
    sid = server.client.create_session()
    with pytest.raises(ClientError) as busy:
        server.client.create_session()
    assert busy.value.status == 409 and busy.value.code == "busy" and busy.value.detail["session_id"] == sid
    server.client.delete_session(sid)
    deadline = time.monotonic() + 15
    while server.client.health()["session_id"] is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.client.create_session() != sid


def test_a_client_vanishing_mid_stream_leaves_the_server_serving_the_next_client(server):
    sid = server.client.create_session()
    stream = server.client.connect(sid)
    last = max(stream.next_frame().index for _ in range(5))
    stream._ws.socket.shutdown(socket.SHUT_RDWR)  # gone without a close handshake
    stream._ws.socket.close()
    deadline = time.monotonic() + 15
    while server.client.health()["clients"] != 0:
        assert time.monotonic() < deadline, "the server still counts the vanished client"
        time.sleep(0.05)
    with server.client.connect(sid) as again:
        assert again.next_frame().index > last
        assert again.send_command("set_level", {"level": 9}) == {"level": 9}
    assert server.client.session_stats(sid)["state"] == "streaming"


def test_clients_per_session_are_bounded():
    running = start_server(HttpOptions(max_clients=1))
    try:
        sid = running.client.create_session()
        with running.client.connect(sid):
            with pytest.raises(ClientError) as refused:
                running.client.connect(sid)
            assert refused.value.code == "too_many_clients" and refused.value.detail["close"] == 4429
    finally:
        running.stop()
        running.engine.close()


def test_mjpeg_serves_one_jpeg_per_part(server):
    sid = server.client.create_session()
    with urllib.request.urlopen(server.url + f"sessions/{sid}/mjpeg", timeout=10) as response:
        assert response.headers.get_content_type() == "multipart/x-mixed-replace"
        images = []
        for _ in range(3):
            assert response.readline().strip() == b"--reactorframe"
            headers = {}
            while (line := response.readline().strip()) != b"":
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            images.append(Image.open(io.BytesIO(response.read(int(headers["content-length"])))))
            assert response.readline() == b"\r\n"
    assert [image.size for image in images] == [(64, 48)] * 3


def test_health_schema_and_metrics_describe_the_engine(server):
    health = server.client.health()
    assert health["status"] == "healthy" and health["state"] == "ready" and health["model"] == "protocol-test"
    schema = server.client.schema()
    assert schema["commands"]["set_level"]["properties"]["level"]["maximum"] == 255
    assert schema["commands"]["set_mode"]["properties"]["mode"]["enum"] == ["a", "b"]
    sid = server.client.create_session()
    with server.client.connect(sid) as stream:
        stream.next_frame()
        stream.send_command("set_level", {"level": 3})
    metrics = server.client.metrics()
    assert "reactor_sessions_started_total 1.0" in metrics
    assert 'reactor_commands_total{command="set_level",outcome="ok"} 1.0' in metrics
    assert 'reactor_ring_frames_total{counter="committed",track="main_video"}' in metrics
    assert "reactor_frame_latency_seconds_bucket" in metrics
    assert "reactor_gpu_available" in metrics
    assert 'reactor_heap_trims_total{result="released"}' in metrics


def test_cross_origin_pages_are_refused(server):
    request = urllib.request.Request(
        server.url + "sessions", method="POST", headers={"Origin": "http://evil.test"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 403
    assert server.client.health()["session_id"] is None


def test_the_app_mounts_under_a_prefix_with_its_viewer():
    running = start_server(mount="/reactor")
    try:
        assert running.url.endswith("/reactor/")
        assert running.client.health()["model"] == "protocol-test"
        with urllib.request.urlopen(running.url, timeout=10) as page:
            assert b"viewer.js" in page.read()
        sid = running.client.create_session()
        with running.client.connect(sid) as stream:
            assert stream.next_frame().width == 64
    finally:
        running.stop()
        running.engine.close()


def test_session_stops_after_the_orphan_timeout_without_clients():
    running = start_server(orphan_timeout=0.5)
    try:
        sid = running.client.create_session()
        deadline = time.monotonic() + 20
        while (stats := running.client.session_stats(sid))["state"] not in ("ended", "error"):
            assert time.monotonic() < deadline, "the orphaned session was not stopped"
            time.sleep(0.1)
        assert stats["end_reason"] == "client_left"
        assert running.client.health()["session_id"] is None
    finally:
        running.stop()
        running.engine.close()


def test_a_client_reconnecting_within_the_orphan_window_continues_the_session():
    running = start_server(orphan_timeout=3.0)
    try:
        sid = running.client.create_session()
        with running.client.connect(sid) as first:
            first.send_command("set_level", {"level": 200})
            last = first.next_frame().index
        time.sleep(0.5)
        with running.client.connect(sid) as second:
            assert second.next_frame().index > last
            assert second.send_command("set_level", {"level": 201}) == {"level": 201}
        assert running.client.session_stats(sid)["state"] == "streaming"
    finally:
        running.stop()
        running.engine.close()


def test_the_maximum_duration_ends_the_session_and_tells_the_client():
    running = start_server(max_session_duration=1.0)
    try:
        sid = running.client.create_session()
        with running.client.connect(sid, timeout=20) as stream:
            while (event := stream.next_message(type="event", timeout=20))["event"] != "ended":
                pass
            assert event["reason"] == "max_duration"
        assert running.client.session_stats(sid)["end_reason"] == "max_duration"
    finally:
        running.stop()
        running.engine.close()


def test_shutdown_stops_the_session_and_closes_its_clients(server):
    sid = server.client.create_session()
    stream = server.client.connect(sid)
    stream.next_frame()
    server.stop()
    events = events_until_closed(stream)
    assert events[-1]["event"] == "ended" and events[-1]["reason"] == "shutdown"
    assert server.engine.current_session is None


def test_engine_asgi_app_is_the_http_app_of_that_engine():
    with Engine(LevelModel, engine_config=ENGINE) as engine:
        app = engine.asgi_app(max_clients=2)
        assert isinstance(app, Starlette)
        assert isinstance(app.state.runtime, HttpApp)
        with pytest.raises(ValueError, match=r"HttpOptions\.max_clients must be >= 1; got 0"):
            engine.asgi_app(max_clients=0)


def test_a_vp8_engine_with_extra_jpeg_streams_jpeg_to_websocket_and_mjpeg_clients():
    running = start_server(codec="vp8", extra_codecs=["jpeg"])
    try:
        sid = running.client.create_session()
        with running.client.connect(sid) as stream:
            assert stream.hello["codec"] == "jpeg"
            frame = stream.next_frame()
            assert frame.codec == "jpeg" and Image.open(io.BytesIO(frame.data)).format == "JPEG"
            with urllib.request.urlopen(running.url + f"sessions/{sid}/mjpeg", timeout=10) as response:
                assert response.readline().strip() == b"--reactorframe"
        runtime = running.client.session_stats(sid)["runtime"]
        assert runtime["frames_sent_by_codec"]["vp8"] > 0 and runtime["frames_sent_by_codec"]["jpeg"] > 0
    finally:
        running.stop()
        running.engine.close()
