"""Fuzz target: the WebSocket text protocol of the http runtime (``/sessions/{id}/ws``).

Each input is a few client messages (text, now and then binary), sent through the real ASGI app
(``HttpApp(engine).app``) to a session whose commands are the ``_model`` ones, validated and applied
at once. Going through the app's route, not a private function, keeps the target valid while the
transport code moves. Nothing may escape the app, and every client message gets exactly one reply:
a JSON object of type ``error``, ``reply``, ``pong`` or ``capabilities``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from concurrent.futures import Future
from typing import Any

from _common import Bytes, json_value, main
from _model import FuzzModel

from reactor_engine.commands import CommandQueue
from reactor_engine.engine import Engine
from reactor_engine.transports.app import HttpApp
from reactor_engine.transports.hub import LiveSession
from reactor_engine.transports.inbound import TrackTable

SESSION_ID = "fuzz-session"
REPLY_TYPES = {"error", "reply", "pong", "capabilities"}
NAMES = ("set_text", "set_count", "set_speed", "configure", "reset", "refuse", "ping", "requestCapabilities")


class _Session:
    """The part of ``Session`` the hub's command path uses; commands are applied as they are queued."""

    session_id = SESSION_ID
    ended = False

    def __init__(self) -> None:
        self.model = FuzzModel()
        self.commands = CommandQueue(ENGINE.spec.commands, wake=lambda: None)

    def submit_command(self, name: str, data: Any) -> Future[Any]:
        reply = self.commands.submit(name, data)
        self.commands.apply_pending(self.model)
        return reply


ENGINE = Engine(FuzzModel, load=False)  # the spec and configs only: no core, no model thread
RUNTIME = HttpApp(ENGINE)
HUB = RUNTIME.hub
LIVE = LiveSession(_Session(), "jpeg", TrackTable(ENGINE))  # type: ignore[arg-type]
# The session is this stub, with no packets to read: the hub finds it and registers no reader.
HUB.live = lambda session_id: LIVE if session_id == SESSION_ID else None  # type: ignore[method-assign]
HUB.attach = lambda live, client: None  # type: ignore[method-assign]
HUB.detach = lambda live, client: None  # type: ignore[method-assign]


def messages(src: Bytes) -> list[dict[str, Any]]:
    """One to four ASGI ``websocket.receive`` events."""
    out: list[dict[str, Any]] = []
    if src.byte() % 4 == 0:  # the whole input is one text message
        return [{"type": "websocket.receive", "text": src.rest().decode("utf-8", "replace")}]
    for _ in range(src.int_in(1, 4)):
        kind = src.byte() % 8
        if kind == 0:
            out.append({"type": "websocket.receive", "bytes": src.take(src.int_in(0, 64))})
        elif kind < 4:
            out.append(
                {
                    "type": "websocket.receive",
                    "text": src.take(src.int_in(0, 512)).decode("utf-8", "replace"),
                }
            )
        else:  # a message of the protocol's shape, values generated
            message: dict[str, Any] = {"type": src.pick(NAMES) if src.byte() % 4 else json_value(src)}
            if src.flag():
                message["data"] = json_value(src)
            if src.flag():
                message["request_id"] = json_value(src)
            if kind == 7:
                message = {"scope": src.pick(("application", "runtime", "other")), "data": message}
            try:
                text = json.dumps(message, default=str)
            except ValueError:  # an int too long to print: no client can send it
                continue
            out.append({"type": "websocket.receive", "text": text})
    return out


async def converse(
    incoming: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]
) -> list[dict[str, Any]]:
    """Connect, send ``incoming``, disconnect; what the app sent."""
    queue = [{"type": "websocket.connect"}, *incoming, {"type": "websocket.disconnect", "code": 1000}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)
        return queue.pop(0) if queue else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "http_version": "1.1",
        "path": f"/sessions/{SESSION_ID}/ws", "raw_path": f"/sessions/{SESSION_ID}/ws".encode(),
        "root_path": "", "query_string": b"", "headers": headers, "subprotocols": [],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "state": {},
    }  # fmt: skip
    await RUNTIME.app(scope, receive, send)  # type: ignore[arg-type]
    return sent


def TestOneInput(data: bytes) -> None:
    src = Bytes(data)
    foreign = src.byte() % 16 == 0
    headers = [(b"host", b"127.0.0.1:8080")]
    if foreign:
        headers.append((b"origin", b"http://evil.example"))
    incoming = messages(src)
    loop = asyncio.new_event_loop()
    try:
        sent = loop.run_until_complete(converse(incoming, headers))
    finally:
        loop.close()
    assert sent[0]["type"] == "websocket.accept", sent[:1]
    texts = [json.loads(m["text"]) for m in sent if m["type"] == "websocket.send" and m.get("text")]
    if foreign:
        assert [t.get("code") for t in texts] == ["forbidden_origin"], texts
        assert (sent[-1]["type"], sent[-1].get("code")) == ("websocket.close", 4403), sent[-1]
        return
    assert texts[0]["type"] == "hello", texts[:1]
    replies = texts[1:]
    # Every text message gets one reply; refused binary (media) messages get error reports, at most one
    # per code per second, each with the count of refusals it stands for (the rest are counted in stats).
    refusals = [r for r in replies if isinstance(r, dict) and r.get("type") == "error" and "count" in r]
    answers = [r for r in replies if r not in refusals]
    n_text = sum("text" in m for m in incoming)
    n_binary = len(incoming) - n_text
    assert len(answers) == n_text, (len(answers), n_text, incoming, replies)
    assert (n_binary == 0) == (not refusals), (n_binary, refusals)
    assert sum(r["count"] for r in refusals) <= n_binary, (n_binary, refusals)
    for reply in replies:
        assert isinstance(reply, dict), reply
        assert reply.get("type") in REPLY_TYPES, reply


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
