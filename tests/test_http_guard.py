"""Who may reach the app and what leaves it: Host check and access token in the app itself, crash
text kept in the log, the documented close code at shutdown, 503 after a hung session."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
from http_helpers import events_until_closed
from test_http_protocol import ENGINE, RunningServer, start_server

from reactor_engine import Engine, VideoModel, VideoOut, get_ctx, model
from reactor_engine.client import ClientError, ReactorClient
from reactor_engine.transports.app import HttpOptions


def _request(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else {}
    finally:
        connection.close()


def test_a_mounted_app_refuses_a_dns_rebinding_host_without_creating_a_session():
    running = start_server(mount="/engine")
    try:
        port = urlsplit(running.url).port
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        status, body = _request(running.url, "POST", "/engine/sessions", evil)
        assert status == 400 and body["error"]["code"] == "invalid_host"
        assert running.engine.current_session is None
        status, _ = _request(running.url, "GET", "/engine/health", {"Host": f"127.0.0.1:{port}"})
        assert status == 200
    finally:
        running.stop()
        running.engine.close()


def test_with_a_token_requests_without_it_get_401_and_with_it_work():
    running = start_server(HttpOptions(auth_token="s3cret-token"))
    try:
        status, body = _request(running.url, "GET", "/health")
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, _ = _request(running.url, "GET", "/health", {"Authorization": "Bearer wrong"})
        assert status == 401
        status, _ = _request(running.url, "GET", "/health", {"Authorization": "Bearer s3cret-token"})
        assert status == 200
        status, _ = _request(running.url, "GET", "/health?token=s3cret-token")
        assert status == 200
        status, created = _request(running.url, "POST", "/sessions?token=s3cret-token")
        assert status == 201
        sid = created["session_id"]
        with pytest.raises(ClientError) as refused, ReactorClient(running.url).connect(sid) as stream:
            stream.next_frame()
        assert "4401 unauthorized" in str(refused.value)
        with ReactorClient(running.url, token="s3cret-token").connect(sid) as stream:
            assert stream.next_frame().width == 64
    finally:
        running.stop()
        running.engine.close()


@model(name="crashing-model")
class CrashingModel(VideoModel):
    main_video = VideoOut(default=True, rate=60)

    def __init__(self, config: object) -> None:
        pass

    def start_session(self) -> None:
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        for index in range(1000):
            if index == 10:
                raise ValueError("boom at frame 10 /home/secret/path")
            get_ctx().get_track().emit(frame)


def test_a_crash_reaches_clients_as_its_kind_and_an_error_id_and_its_text_stays_in_the_log(caplog):
    running = RunningServer(Engine(CrashingModel, engine_config=ENGINE), HttpOptions())
    try:
        sid = running.client.create_session()
        with caplog.at_level(logging.ERROR, logger="reactor_engine.hub"):
            with running.client.connect(sid) as stream:
                events = events_until_closed(stream)
            ended = next(e for e in events if e["event"] == "ended")
            assert ended["reason"] == "error" and ended["error"] == "ValueError"
            assert "boom" not in json.dumps(events)
            stats = running.client.session_stats(sid)
        assert stats["error"] == "ValueError" and stats["error_id"] == ended["error_id"]
        assert "boom" not in json.dumps(stats)
        logged = [r.getMessage() for r in caplog.records if ended["error_id"] in r.getMessage()]
        assert logged and "boom at frame 10" in logged[0]
    finally:
        running.stop()
        running.engine.close()


def test_clients_get_the_ended_event_and_close_1000_when_the_server_shuts_down():
    running = start_server()
    try:
        sid = running.client.create_session()
        stream = running.client.connect(sid)
        stream.next_frame()
        running.server.should_exit = True
        events = events_until_closed(stream)
        assert next(e for e in events if e["event"] == "ended")["reason"] == "shutdown"
        assert stream.close_code == 1000
        stream.close()
    finally:
        running.thread.join(30)
        running.engine.close()


RELEASE = threading.Event()


@model(name="hanging-model")
class HangingModel(VideoModel):
    main_video = VideoOut(default=True, rate=60)

    def __init__(self, config: object) -> None:
        pass

    def start_session(self) -> None:
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        while not RELEASE.is_set():  # ignores should_stop(); the test releases it at the end
            get_ctx().get_track().emit(frame)
            time.sleep(0.01)


def test_after_a_hung_session_is_stopped_a_new_session_gets_503_unhealthy():
    running = RunningServer(Engine(HangingModel, engine_config={**ENGINE, "stop_grace": 0.3}), HttpOptions())
    try:
        sid = running.client.create_session()
        running.client.delete_session(sid)
        with pytest.raises(ClientError) as refused:
            running.client.create_session()
        assert refused.value.status == 503 and refused.value.code == "unhealthy"
    finally:
        RELEASE.set()
        running.stop()
        running.engine.close()
