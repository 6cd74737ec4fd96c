"""The session hub under every transport: clients of any kind, limits across kinds, commands, plug-ins."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reactor_engine import Engine, VideoModel, VideoOut, command, get_ctx, model
from reactor_engine.transports.app import HttpApp, asgi_app
from reactor_engine.transports.hub import (
    CodecUnavailable,
    CommandRejected,
    HubError,
    HubOptions,
    SessionBusy,
    SessionHub,
    TooManyClients,
)
from reactor_engine.transports.web import hub_error_response

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
WAIT_S = 20.0


@model(name="hub-test")
class GreyModel(VideoModel):
    main_video = VideoOut(default=True, rate=60)

    def __init__(self, config: object) -> None:
        pass

    @command("say")
    def say(self, text: str) -> str:
        get_ctx().send({"said": text})
        return text

    def start_session(self) -> None:
        ctx = get_ctx()
        frame = np.full((48, 64, 3), 90, dtype=np.uint8)
        while not ctx.should_stop():
            ctx.get_track().emit(frame)


class RecordingClient:
    """A hub client of a made-up transport: what it was handed, and how it was closed."""

    def __init__(self, kind: str = "test", codec: str = "jpeg", fail: bool = False) -> None:
        self.kind = kind
        self.codec = codec
        self.fail = fail
        self.packets: list[tuple[str, bool, bytes]] = []  # codec, keyframe, the first two bytes
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.changed = asyncio.Event()

    def on_packet(self, packet: Any) -> None:
        if self.fail:
            raise RuntimeError("a broken transport")
        self.packets.append((packet.codec, packet.keyframe, packet.tobytes()[:2]))
        self.changed.set()

    def on_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.changed.set()

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.changed.set()

    async def until(self, predicate: Any) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(scope="module")
def engine():
    with Engine(GreyModel, engine_config=ENGINE) as running:
        yield running


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, 60))


def test_a_client_of_any_kind_gets_packets_messages_and_the_close(engine):
    async def scenario() -> tuple[RecordingClient, list[str]]:
        hub = SessionHub(engine)
        ended: list[str] = []
        hub.on_session_ended(lambda live, reason: ended.append(reason))
        live = await hub.start_session()
        client = RecordingClient()
        hub.attach(live, client)
        await client.until(lambda: len(client.packets) >= 3)
        assert await hub.command(live, "say", {"text": "hi"}) == "hi"
        await client.until(lambda: any(m.get("data") == {"said": "hi"} for m in client.messages))
        assert hub.stats(live)["runtime"]["clients_by_kind"] == {"test": 1}
        await hub.stop(live, "stopped")
        await client.until(lambda: client.closed is not None)
        assert hub.ended(live.session_id)["end_reason"] == "stopped"
        return client, ended

    client, ended = run(scenario())
    assert {start for _, _, start in client.packets} == {b"\xff\xd8"}  # JPEG start-of-image markers
    assert client.closed == (1000, "session ended: stopped")
    assert ended == ["stopped"]
    assert any(m.get("event") == "ended" for m in client.messages)


def test_max_clients_counts_the_clients_of_every_kind(engine):
    async def scenario() -> None:
        hub = SessionHub(engine, HubOptions(max_clients=2))
        live = await hub.start_session()
        first, second = RecordingClient("ws"), RecordingClient("webrtc")
        hub.attach(live, first)
        hub.attach(live, second)
        with pytest.raises(TooManyClients) as refused:
            hub.attach(live, RecordingClient("mjpeg"))
        assert refused.value.status == 429 and refused.value.code == "too_many_clients"
        hub.detach(live, first)
        hub.attach(live, RecordingClient("mjpeg"))
        await hub.shutdown()

    run(scenario())


def test_a_codec_the_engine_does_not_encode_is_refused_naming_the_setting(engine):
    async def scenario() -> None:
        hub = SessionHub(engine)
        live = await hub.start_session()
        with pytest.raises(CodecUnavailable) as refused:
            hub.attach(live, RecordingClient("webrtc", codec="vp8"))
        assert refused.value.status == 409 and "--engine.extra_codecs=[vp8]" in str(refused.value)
        assert live.clients == ()
        await hub.shutdown()

    run(scenario())


def test_command_errors_carry_the_wire_code_of_each_failure(engine):
    async def scenario() -> None:
        hub = SessionHub(engine)
        live = await hub.start_session()
        cases = [("fly", {}, "unknown_command"), ("say", {"text": 3}, "invalid_arguments")]
        cases.append(("say", [1], "invalid_arguments"))
        for name, data, code in cases:
            with pytest.raises(CommandRejected) as rejected:
                await hub.command(live, name, data)
            assert rejected.value.code == code, (name, data)
        await hub.shutdown()

    run(scenario())


def test_a_second_session_is_refused_naming_the_running_one(engine):
    async def scenario() -> None:
        hub = SessionHub(engine)
        live = await hub.start_session()
        with pytest.raises(SessionBusy) as busy:
            await hub.start_session()
        assert busy.value.status == 409 and busy.value.detail == {"session_id": live.session_id}
        await hub.shutdown()
        with pytest.raises(HubError, match="shutting down") as closing:
            await hub.start_session()
        assert closing.value.status == 503

    run(scenario())


def test_a_client_whose_callback_raises_is_closed_and_the_others_go_on(engine):
    async def scenario() -> None:
        hub = SessionHub(engine)
        live = await hub.start_session()
        broken, healthy = RecordingClient(fail=True), RecordingClient()
        hub.attach(live, broken)
        hub.attach(live, healthy)
        await broken.until(lambda: broken.closed is not None)
        assert broken.closed == (1011, "internal error") and live.clients == (healthy,)
        count = len(healthy.packets)
        await healthy.until(lambda: len(healthy.packets) > count + 2)
        await hub.shutdown()

    run(scenario())


def test_an_extra_codec_is_encoded_only_while_a_client_wants_it_and_starts_at_a_keyframe():
    with Engine(GreyModel, engine_config={**ENGINE, "extra_codecs": ["vp8"]}) as engine:
        encoder = engine.tracks["main_video"].encoder

        async def scenario() -> list[tuple[str, bool, bytes]]:
            hub = SessionHub(engine)
            live = await hub.start_session()
            assert not encoder.output_enabled("vp8")
            client = RecordingClient("webrtc", codec="vp8")
            hub.attach(live, client)
            assert encoder.output_enabled("vp8")
            await client.until(lambda: len(client.packets) >= 3)
            hub.detach(live, client)
            assert not encoder.output_enabled("vp8")
            await hub.shutdown()
            return client.packets

        packets = run(scenario())
    assert {codec for codec, _, _ in packets} == {"vp8"}
    assert packets[0][1], "the first VP8 packet a new client gets is a keyframe"


def test_web_clients_of_a_vp8_engine_without_jpeg_are_refused_naming_the_setting():
    with Engine(GreyModel, engine_config={**ENGINE, "codec": "vp8"}) as engine:

        async def scenario() -> tuple[int, Any]:
            app = asgi_app(engine)
            live = await app.state.hub.start_session()
            answer = await _request(app, "GET", f"/sessions/{live.session_id}/mjpeg")
            await app.state.runtime.shutdown()
            return answer

        status, body = run(scenario())
    assert status == 409 and body["error"]["code"] == "codec_mismatch"
    assert "--engine.extra_codecs=[jpeg]" in body["error"]["message"]


def test_a_transport_passed_to_the_app_mounts_its_routes_over_the_same_hub(engine):
    def my_routes(hub: SessionHub) -> list[Route]:
        async def start(request: Request) -> JSONResponse:
            try:
                live = await hub.start_session()
            except HubError as exc:
                return hub_error_response(exc)
            return JSONResponse({"id": live.session_id})

        return [Route("/my/start", start, methods=["POST"])]

    async def scenario() -> tuple[list[tuple[int, Any]], HttpApp]:
        app = asgi_app(engine, transports=[my_routes])
        answers = [await _request(app, "POST", "/my/start"), await _request(app, "POST", "/my/start")]
        await app.state.runtime.shutdown()
        return answers, app.state.runtime

    (started, busy), runtime = run(scenario())
    assert started[0] == 200 and busy[0] == 409 and busy[1]["error"]["session_id"] == started[1]["id"]
    assert runtime.hub.ended(started[1]["id"])["end_reason"] == "shutdown"


async def _request(app: Any, method: str, path: str) -> tuple[int, Any]:
    """One request through the ASGI app, without a server: (status, JSON body)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")], "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)
