"""The WebSocket transport: frames as binary messages (``FrameHeader`` + payload) and JSON, both ways.

The wire protocol is ``docs/protocol.md``. A thin adapter over the hub: a connection is one
``BufferedClient``; a text message is a ``ping``, ``requestCapabilities`` or a command for
``SessionHub.command``. Each frame is copied once, into the one message every WebSocket client is
sent (ASGI takes whole messages), and its native packet goes back to the pool at once, so a slow
client never holds the encoder up. The model's audio (``AudioOut``) goes out as ``pcm_s16le`` frames
of 20 ms, each built once for every client and queued apart from the latest-wins video.

Client media in: a binary message is one frame for an input track, named by the header's ``track``
(its index in the capabilities' ``tracks``): a JPEG for a ``VideoIn``, ``pcm_s16le`` samples for an
``AudioIn`` (``inbound.MediaIn`` checks and hands it over). A refused one is answered with an
``error`` message naming what the track expects (at most one per code and second; all are counted);
decoder errors (a corrupt JPEG, a frame bigger than the input slots) are found by a watcher and
reported the same way. The session goes on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reactor_engine.runtimes.protocol import HEADER_SIZE, PROTOCOL_VERSION, FrameHeader
from reactor_engine.transports.hub import HubError, end_of
from reactor_engine.transports.inbound import MediaIn, MediaRefused, TrackSlot
from reactor_engine.transports.messages import json_kind, valid_request_id
from reactor_engine.transports.web import BufferedClient, PerPacket, no_session, same_origin

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.transports.audio import AudioChunk
    from reactor_engine.transports.hub import LiveSession, SessionHub

__all__ = ["WebSocketTransport"]

_log = logging.getLogger("reactor_engine.ws")

# The codecs the viewer and ``reactor_engine.client`` decode from a binary frame message.
_WS_CODECS = ("jpeg", "raw", "i420")
_AUDIO_CHUNKS = 25  # 20 ms chunks queued per client (0.5 s) before its oldest is dropped
_DECODER_WATCH_S = 0.25  # how often a client's decoder errors are looked for


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
        self._frame = PerPacket(self._frame_message)
        self._text = _PerMessage()
        # Binary (media) messages may be as large as an encoded input frame may be.
        self.max_media_bytes = int(hub.engine.config.input_max_bytes) + HEADER_SIZE
        self._video_track = 0  # the index of the default video track in the capabilities' tracks
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
        client = WsClient(
            self.hub, live, "ws", self.codec, frames=self.client_frames, frame_of=self._frame,
            messages=self.client_messages, text_of=self._text,
        )  # fmt: skip
        self._video_track = live.tracks.index_of(self.hub.engine.spec.default_track)
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
            "max_media_bytes": self.max_media_bytes,
            "tracks": [_track_entry(live, t) for t in live.tracks.slots],
        }
        media = MediaIn(live.tracks)
        media.watch_decoders()
        sender = asyncio.create_task(_send_to(websocket, client, json.dumps(hello)))
        receiver = asyncio.create_task(self._receive_from(websocket, live, media))
        watcher = asyncio.create_task(_watch_decoders(websocket, media))
        tasks = (sender, receiver, watcher)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
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

    async def _receive_from(self, websocket: WebSocket, live: LiveSession, media: MediaIn) -> None:
        """Receiver coroutine: every text message gets exactly one reply (or error) on this socket; a
        binary (media) message gets none, or an error when it is refused."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                error = self._handle_media(live, media, message.get("bytes") or b"")
                if error is not None:
                    await websocket.send_text(json.dumps(error))
                continue
            reply = await self._handle_text(live, text)
            await websocket.send_text(json.dumps(reply, default=str))

    def _handle_media(self, live: LiveSession, media: MediaIn, data: bytes) -> dict[str, Any] | None:
        """One binary message: a frame for an input track. ``None``, or the error to tell the client."""
        if live.finished:
            return None  # the session is over; its inputs take nothing more
        try:
            _submit(live, media, data, self.max_media_bytes)
        except MediaRefused as exc:
            self.hub.metrics.media_refused.labels("ws", exc.code).inc()
            return _refusal(media, exc)
        return None

    def _frame_message(self, packet: _C.Packet) -> bytes:
        header = FrameHeader.of_packet(packet, time.monotonic_ns(), self._video_track).pack()
        payload: Any = packet  # the buffer protocol (numpy's stubs type it for Python >= 3.12 only)
        return b"".join((header, memoryview(payload)))  # the one copy; the packet is released after

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


def _submit(live: LiveSession, media: MediaIn, data: bytes, limit: int) -> None:
    """Check one media message against its track and hand it over; ``MediaRefused`` says why not."""
    tracks = live.tracks
    if not tracks.inputs:
        raise MediaRefused(
            "binary_not_accepted",
            "this model declares no input tracks, so binary (media) messages are not accepted; "
            "the server takes JSON text messages",
        )
    if len(data) > limit:
        raise MediaRefused("message_too_large", f"binary message is {len(data)} bytes; the limit is {limit}")
    try:
        header = FrameHeader.unpack(data)
    except ValueError as exc:
        raise MediaRefused("invalid_frame", f"binary message is not a frame: {exc}") from None
    slot = tracks.slot(header.track)
    if slot is None:
        raise MediaRefused(
            "unknown_track",
            f"frame header track {header.track}: this model has {len(tracks.slots)} tracks; "
            f"send frames on an input: {tracks.declared_inputs()}",
        )
    track = tracks.inputs.get(slot.name)
    if track is None:
        raise MediaRefused(
            "not_an_input",
            f"track {slot} is a model output ({slot.direction}); send frames on an input: "
            f"{tracks.declared_inputs()}",
            slot.name,
        )
    payload = memoryview(data)[HEADER_SIZE:]
    expected = "jpeg" if track.kind == "video" else "pcm_s16le"
    if header.codec != expected:
        raise MediaRefused(
            "codec_mismatch",
            f"{track.kind} input {slot} takes {expected} frames over the WebSocket; got {header.codec}",
            slot.name,
        )
    if track.kind == "video":
        media.video(track, payload, "jpeg", arrival_ns=time.monotonic_ns())
    else:
        media.audio(track, payload, header.width, header.height)


def _refusal(media: MediaIn, exc: MediaRefused) -> dict[str, Any] | None:
    """The error message for a refusal, or ``None`` while its code was reported less than 1 s ago."""
    count = media.reports.due(exc.code)
    if not count:
        return None
    error = _error(exc.code, str(exc))
    if exc.track is not None:
        error["track"] = exc.track
    error["count"] = count  # refusals of this code since the last report, this one included
    return error


async def _watch_decoders(websocket: WebSocket, media: MediaIn) -> None:
    """Decoder errors of the frames this client sent (found on the decoder thread), as error messages."""
    while True:
        await asyncio.sleep(_DECODER_WATCH_S)
        if not media.frames_in:
            continue
        for exc in media.decoder_errors():
            error = _refusal(media, exc)
            if error is not None:
                await websocket.send_text(json.dumps(error))


class WsClient(BufferedClient):
    """A WebSocket client: a ``BufferedClient`` that also takes the model's audio (20 ms ``pcm_s16le``
    frames, queued in order; the oldest dropped past 0.5 s)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audio: collections.deque[bytes] = collections.deque(maxlen=_AUDIO_CHUNKS)
        self.audio_dropped = 0

    def on_audio(self, chunk: AudioChunk) -> None:
        message = chunk.memo.get("ws")
        if message is None:
            message = chunk.memo["ws"] = _audio_message(chunk)
        if len(self.audio) == self.audio.maxlen:
            self.audio_dropped += 1
        self.audio.append(message)
        self.wake.set()


def _audio_message(chunk: AudioChunk) -> bytes:
    pcm = chunk.pcm()
    header = FrameHeader(
        "pcm_s16le", chunk.index, chunk.rate, chunk.channels, len(pcm), chunk.pts_ns,
        0, chunk.pts_ns, 0, 0, 0, time.monotonic_ns(), track=chunk.track_index,
    )  # fmt: skip
    return header.pack() + pcm


async def _send_to(websocket: WebSocket, client: WsClient, hello: str) -> None:
    """Sender coroutine of one WebSocket client: queued text first, then audio, then the latest frames."""
    await websocket.send_text(hello)
    while True:
        await client.wake.wait()
        client.wake.clear()
        while client.texts or client.audio or client.frames:
            if client.texts:
                await websocket.send_text(client.texts.popleft())
            elif client.audio:
                await websocket.send_bytes(client.audio.popleft())
            else:
                await websocket.send_bytes(client.frames.popleft())
                client.frames_sent += 1
        if client.close_code is not None:
            return


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


def _track_entry(live: LiveSession, slot: TrackSlot) -> dict[str, Any]:
    """A track of the hello: its index for frame headers; audio tracks add the rate and channels they take."""
    entry: dict[str, Any] = {
        "index": slot.index, "name": slot.name, "kind": slot.kind, "direction": slot.direction,
    }  # fmt: skip
    running = live.tracks.inputs.get(slot.name) or live.tracks.audio_outputs.get(slot.name)
    if slot.kind == "audio" and running is not None:
        entry["rate"] = int(getattr(running, "rate", 0))
        entry["channels"] = int(getattr(running, "channels", 1))
    return entry
