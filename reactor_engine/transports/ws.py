"""The WebSocket transport: frames as binary messages (``FrameHeader`` + payload), JSON both ways.

The wire protocol is ``docs/protocol.md``. A thin adapter over the hub: a connection is one
``BufferedClient``; a text message is a ``ping``, ``requestCapabilities`` or a command for
``SessionHub.command``. Each frame is copied once, into the one message every WebSocket client is
sent (ASGI takes whole messages), and its native packet goes back to the pool at once, so a slow
client never holds the encoder up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reactor_engine.runtimes.protocol import HEADER_SIZE, PROTOCOL_VERSION, FrameHeader
from reactor_engine.transports.hub import HubError, end_of
from reactor_engine.transports.messages import json_kind, valid_request_id
from reactor_engine.transports.web import BufferedClient, PerPacket, no_session, same_origin

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.transports.hub import LiveSession, SessionHub

__all__ = ["WebSocketTransport"]

_log = logging.getLogger("reactor_engine.ws")

# The codecs the viewer and ``reactor_engine.client`` decode from a binary frame message.
_WS_CODECS = ("jpeg", "raw", "i420")


class WebSocketTransport:
    """``/sessions/{id}/ws`` over a hub.

    Its clients take the engine's codec when the frame header carries it (``jpeg``, ``raw``,
    ``i420``), else ``jpeg`` from the engine's extra codecs (refused with ``codec_mismatch`` when
    the engine encodes no JPEG).
    """

    def __init__(
        self, hub: SessionHub, *, max_message_bytes: int, client_frames: int, client_messages: int
    ) -> None:
        self.hub = hub
        self.max_message_bytes = max_message_bytes
        self.client_frames = client_frames
        self.client_messages = client_messages
        primary = hub.codecs[0]
        self.codec = primary if primary in _WS_CODECS else "jpeg"
        self._frame = PerPacket(_frame_message)
        self._text = _PerMessage()
        self._open = 0
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    async def wait_closed(self, timeout: float) -> None:
        """Wait until no WebSocket connection is open, at most ``timeout`` s (the server's shutdown:
        each client gets its ``ended`` event and close 1000 before uvicorn closes what is left)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_closed.wait(), timeout)

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute("/sessions/{session_id}/ws", self._websocket)]

    async def _websocket(self, websocket: WebSocket) -> None:
        self._open += 1
        self._all_closed.clear()
        try:
            await self._serve(websocket)
        finally:
            self._open -= 1
            if self._open == 0:
                self._all_closed.set()

    async def _serve(self, websocket: WebSocket) -> None:
        sid = websocket.path_params["session_id"]
        await websocket.accept()
        if not same_origin(websocket.headers):
            message = "cross-origin WebSocket connections are refused"
            await _refuse(websocket, 4403, "forbidden_origin", message)
            return
        live = self.hub.live(sid)
        # It ended before this client came (kept by the hub, or ended and not yet finished): say how.
        ended = self.hub.ended(sid) if live is None else None
        if live is not None and live.session.ended:
            ended = self.hub.stats(live)
        if ended is not None:
            end = end_of(ended)
            await _refuse(websocket, 4410, "session_ended", _ended_text(end), session=end)
            return
        if live is None:
            await _refuse(websocket, 4404, "session_not_found", no_session(sid))
            return
        client = BufferedClient(
            self.hub, live, "ws", self.codec, frames=self.client_frames, frame_of=self._frame,
            messages=self.client_messages, text_of=self._text,
        )  # fmt: skip
        try:
            self.hub.attach(live, client)
        except HubError as exc:  # close code 4000 + the HTTP status: 4404, 4409, 4429
            await _refuse(websocket, 4000 + exc.status, exc.code, str(exc))
            return
        _log.info("client connected (%d now)", len(live.clients), extra={"session_id": sid})
        hello = {
            "type": "hello",
            "session_id": sid,
            "model": self.hub.engine.name,
            "protocol_version": PROTOCOL_VERSION,
            "codec": self.codec,
            "header_size": HEADER_SIZE,
            "max_message_bytes": self.max_message_bytes,
        }
        sender = asyncio.create_task(_send_to(websocket, client, json.dumps(hello)))
        receiver = asyncio.create_task(self._receive_from(websocket, live))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
            for task in (sender, receiver):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                    await task
            self.hub.detach(live, client)
            _log.info(
                "client disconnected (%d left); missed %d frames", len(live.clients), client.frames_dropped,
                extra={"session_id": sid},
            )  # fmt: skip
        if sender in done and client.close_code is not None:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await websocket.close(client.close_code, client.close_reason[:120])

    async def _receive_from(self, websocket: WebSocket, live: LiveSession) -> None:
        """Receiver coroutine: every client message gets exactly one reply (or error) on this socket."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                reply: dict[str, Any] = _error(
                    "binary_not_accepted",
                    "the server takes JSON text messages only; binary messages are not accepted",
                )
            else:
                reply = await self._handle_text(live, text)
            await websocket.send_text(json.dumps(reply, default=str))

    async def _handle_text(self, live: LiveSession, text: str) -> dict[str, Any]:
        limit = self.max_message_bytes
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            return _error("message_too_large", f"message is {size} bytes; the limit is {limit}")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep ("[" * 5000)
            return _error("invalid_json", f"message is not JSON: {exc}")
        if not isinstance(message, dict):
            return _error(
                "invalid_message",
                f'expected a JSON object {{"type", "data", "request_id"}}; got {json_kind(message)}',
            )
        request_id = message.get("request_id")
        if not valid_request_id(request_id):
            return _error(
                "invalid_message", "request_id must be a string of at most 128 characters or an int"
            )
        # The seed-era 1.7.5 envelope {"scope": "application" | "runtime", "data": {"type", "data"}}.
        if "scope" in message:
            inner = message.get("data")
            if message["scope"] not in ("application", "runtime") or not isinstance(inner, dict):
                return _reply_error(
                    request_id, "invalid_message",
                    'a "scope" message is {"scope": "application" | "runtime", "data": {"type", "data"}}',
                )  # fmt: skip
            message = {**inner, "request_id": request_id}
        name = message.get("type")
        if not isinstance(name, str) or not name:
            return _reply_error(
                request_id, "invalid_message", 'a message needs a "type": a command name or "ping"'
            )
        if name == "ping":
            return {
                "type": "pong",
                "request_id": request_id,
                "t": message.get("t"),
                "server_ns": time.monotonic_ns(),
            }
        if name == "requestCapabilities":
            return {"type": "capabilities", "request_id": request_id, "data": self.hub.engine.capabilities()}
        try:
            result = await self.hub.command(live, name, message.get("data"))
        except HubError as exc:
            return _reply_error(request_id, exc.code, str(exc))
        return {"type": "reply", "request_id": request_id, "ok": True, "command": name, "result": result}


async def _send_to(websocket: WebSocket, client: BufferedClient, hello: str) -> None:
    """Sender coroutine of one WebSocket client: queued text first, then the latest frames."""
    await websocket.send_text(hello)
    while True:
        await client.wake.wait()
        client.wake.clear()
        while client.texts or client.frames:
            if client.texts:
                await websocket.send_text(client.texts.popleft())
            else:
                await websocket.send_bytes(client.frames.popleft())
                client.frames_sent += 1
        if client.close_code is not None:
            return


def _frame_message(packet: _C.Packet) -> bytes:
    header = FrameHeader.of_packet(packet, time.monotonic_ns()).pack()
    payload: Any = packet  # the buffer protocol (numpy's stubs type it for Python >= 3.12 only)
    return b"".join((header, memoryview(payload)))  # the one copy; the packet is released after


class _PerMessage:
    """The JSON text of a model message or event, made once for every client it is fanned out to."""

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._text = ""

    def __call__(self, message: dict[str, Any]) -> str:
        if message is not self._message:
            self._text = json.dumps(message, default=str)
            self._message = message
        return self._text


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def _reply_error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "type": "reply",
        "request_id": request_id,
        "ok": False,
        "error": {"code": code, "message": message},
    }


def _ended_text(end: dict[str, Any]) -> str:
    how = f"with an error ({end['error']})" if end["error"] else f"({end['reason']})"
    text = f"session {end['session_id']} has ended {how} after {end['duration_s']} s"
    return text + (f"; error id {end['error_id']} in the server log" if end["error_id"] else "")


async def _refuse(websocket: WebSocket, code: int, error: str, message: str, **detail: Any) -> None:
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.send_text(json.dumps({**_error(error, message), **detail}))
        await websocket.close(code, error)
