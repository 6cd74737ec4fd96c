"""A small synchronous Python client of the http runtime (the protocol of ``docs/protocol.md``).

::

    client = ReactorClient("http://127.0.0.1:8080")
    session_id = client.create_session()
    with client.connect(session_id) as stream:
        stream.send_command("set_prompt", {"prompt": "a rainy night"})
        frame = stream.next_frame()          # Frame: header fields + the encoded bytes
        stream.send_frame("webcam", rgb)     # a model's VideoIn: an (H, W, 3) uint8 array or JPEG bytes
        stream.send_audio("mic", samples, 48000)   # a model's AudioIn: int16 or float samples
        audio = stream.next_audio()          # a model's AudioOut: 20 ms frames, audio.samples()
    client.delete_session(session_id)

Not thread-safe: use one ``StreamConnection`` from one thread.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from reactor_engine.errors import CommandError, InvalidArgumentError, ReactorError, ReactorTimeoutError
from reactor_engine.runtimes.protocol import HEADER_SIZE, FrameHeader

__all__ = ["ClientError", "Frame", "ReactorClient", "StreamConnection"]


class ClientError(ReactorError):
    """The server answered with an error (``status``, ``code``, ``message``, ``detail``) or closed."""

    def __init__(
        self, status: int | None, code: str, message: str, detail: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status is not None else ""))
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or {}


@dataclass(frozen=True)
class Frame:
    """One received frame: the header's fields and the encoded bytes (JPEG, RGB24 or I420), or 20 ms of
    a model's audio (``codec`` ``pcm_s16le``: ``samples()``, ``rate``, ``channels``)."""

    header: FrameHeader
    data: bytes
    received_ns: int

    @property
    def index(self) -> int:
        return self.header.frame_index

    @property
    def codec(self) -> str:
        return self.header.codec

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def track(self) -> int:
        """The index of the frame's track in the capabilities' ``tracks`` (the hello's ``tracks``)."""
        return self.header.track

    @property
    def pts_ns(self) -> int:
        """The frame's (or first sample's) time on the server's clock: audio and video share it."""
        return self.header.pts_ns

    @property
    def is_audio(self) -> bool:
        return self.header.codec == "pcm_s16le"

    @property
    def rate(self) -> int:
        """Audio: the sample rate (Hz)."""
        return self.header.width

    @property
    def channels(self) -> int:
        """Audio: the channel count."""
        return self.header.height

    def samples(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        """Audio: the samples as a ``(channels, M)`` int16 array."""
        if not self.is_audio:
            raise InvalidArgumentError(f"a {self.codec} frame has no samples; only pcm_s16le frames do")
        return np.frombuffer(self.data, dtype="<i2").reshape(-1, max(1, self.channels)).T

    @property
    def server_latency_ms(self) -> float:
        """From the model's commit of the frame to the server handing it to the transport."""
        return (self.header.t_send_ns - self.header.t_commit_ns) / 1e6


class ReactorClient:
    """HTTP calls to one server; ``connect`` opens a session's WebSocket. ``token``: the server's
    access token (``--auth-token``), sent as ``Authorization: Bearer`` (and ``?token=`` on the
    WebSocket, as browsers must)."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8080", timeout: float = 10.0, token: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.token = token

    def _request(self, method: str, path: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(self.base_url + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, body = response.status, response.read()
                kind = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            with exc:  # holds the response's socket
                status, body, kind = exc.code, exc.read(), exc.headers.get_content_type()
        if kind == "application/json":
            return status, json.loads(body)
        return status, body.decode("utf-8", "replace")

    def _json(self, method: str, path: str, ok: tuple[int, ...] = (200,)) -> Any:
        status, body = self._request(method, path)
        if status not in ok:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            detail = {k: v for k, v in error.items() if k not in ("code", "message")}
            raise ClientError(
                status, error.get("code", "http_error"), error.get("message", str(body)[:200]), detail
            )
        return body

    def health(self) -> dict[str, Any]:
        """``GET /health``; returns the body also when it is 503 (unhealthy)."""
        return dict(self._json("GET", "health", ok=(200, 503)))

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Poll ``/health`` until the model has loaded (``ReactorTimeoutError`` after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = self.health()
                if health["state"] != "loading":
                    return health
            except OSError:
                pass  # not listening yet
            if time.monotonic() >= deadline:
                raise ReactorTimeoutError(f"server at {self.base_url} not ready within {timeout} s")
            time.sleep(0.1)

    def schema(self) -> dict[str, Any]:
        return dict(self._json("GET", "schema"))

    def metrics(self) -> str:
        status, body = self._request("GET", "metrics")
        if status != 200:
            raise ClientError(status, "http_error", str(body)[:200])
        return str(body)

    def create_session(self) -> str:
        """``POST /sessions``; ``ClientError`` with code ``busy`` (409), ``loading`` (503), ..."""
        return str(self._json("POST", "sessions", ok=(201,))["session_id"])

    def delete_session(self, session_id: str) -> dict[str, Any]:
        return dict(self._json("DELETE", f"sessions/{quote(session_id, safe='')}"))

    def session_stats(self, session_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"sessions/{quote(session_id, safe='')}/stats"))

    def connect(self, session_id: str, timeout: float | None = None) -> StreamConnection:
        """Open the session's WebSocket; raises ``ClientError`` when the server refuses it."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urlencode({"token": self.token}) if self.token else ""
        url = urlunsplit(
            (scheme, parts.netloc, f"{parts.path}sessions/{quote(session_id, safe='')}/ws", query, "")
        )
        # Entered as a context manager (websockets >= 17.1 warns otherwise); StreamConnection closes it.
        connection = ws_connect(url, open_timeout=timeout or self.timeout, max_size=64 << 20).__enter__()
        stream = StreamConnection(connection, timeout or self.timeout)
        stream._expect_hello()
        return stream


class StreamConnection:
    """One session's WebSocket: frames, replies, model messages and events, read in arrival order."""

    def __init__(self, connection: ClientConnection, timeout: float) -> None:
        self._ws = connection
        self.timeout = timeout
        self.hello: dict[str, Any] = {}
        self.frames: collections.deque[Frame] = collections.deque(maxlen=64)
        self.audio: collections.deque[Frame] = collections.deque(maxlen=500)  # 10 s of 20 ms frames
        self._sent: dict[int, int] = collections.defaultdict(int)  # frames sent per input track
        self.messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=1024)
        self._replies: dict[Any, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.close_code: int | None = None
        self.close_reason = ""

    def _expect_hello(self) -> None:
        message = self._receive(self.timeout)
        if isinstance(message, dict) and message.get("type") == "hello":
            self.hello = message
            return
        if isinstance(message, dict) and message.get("type") == "error":
            self._drain_close()
            raise ClientError(
                None, message.get("code", "refused"), message.get("message", ""), {"close": self.close_code}
            )
        raise ClientError(None, "protocol_error", f"expected a hello message first; got {message!r:.200}")

    def _drain_close(self) -> None:
        try:
            self._ws.recv(timeout=self.timeout)
        except ConnectionClosed as exc:
            self._closed(exc)
        except TimeoutError:
            self._ws.close()

    def _closed(self, exc: ConnectionClosed) -> None:
        if exc.rcvd is not None:
            self.close_code, self.close_reason = exc.rcvd.code, exc.rcvd.reason

    def _receive(self, timeout: float | None) -> Frame | dict[str, Any]:
        """The next message: a ``Frame`` or a JSON object. ``ClientError`` once closed."""
        try:
            raw = self._ws.recv(timeout=timeout)
        except TimeoutError:
            raise ReactorTimeoutError(f"nothing from the server within {timeout} s") from None
        except ConnectionClosed as exc:
            self._closed(exc)
            raise ClientError(
                None, "closed", f"connection closed ({self.close_code} {self.close_reason})"
            ) from None
        if isinstance(raw, str):
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ClientError(None, "protocol_error", f"expected a JSON object; got {raw[:200]!r}")
            return message
        return Frame(FrameHeader.unpack(raw), raw[HEADER_SIZE:], time.monotonic_ns())

    def recv(self, timeout: float | None = None) -> Frame | dict[str, Any]:
        """The next message of any kind (replies are also kept for ``send_command``)."""
        message = self._receive(self.timeout if timeout is None else timeout)
        if isinstance(message, dict) and message.get("request_id") is not None:
            self._replies[message["request_id"]] = message
        return message

    def _keep(self, message: Frame | dict[str, Any]) -> None:
        if isinstance(message, Frame):
            (self.audio if message.is_audio else self.frames).append(message)
        else:
            self.messages.append(message)

    def next_frame(self, timeout: float | None = None) -> Frame:
        """The next video frame; audio and text messages that arrive first are kept (``audio``,
        ``messages``)."""
        if self.frames:
            return self.frames.popleft()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            message = self.recv(max(0.0, deadline - time.monotonic()))
            if isinstance(message, Frame) and not message.is_audio:
                return message
            self._keep(message)

    def next_audio(self, timeout: float | None = None) -> Frame:
        """The next audio frame (20 ms of an ``AudioOut`` track, in order); video frames and text
        messages that arrive first are kept (``frames``, ``messages``)."""
        if self.audio:
            return self.audio.popleft()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            message = self.recv(max(0.0, deadline - time.monotonic()))
            if isinstance(message, Frame) and message.is_audio:
                return message
            self._keep(message)

    def track_index(self, name: str) -> int:
        """The index of track ``name`` in the hello's ``tracks``; ``InvalidArgumentError`` naming them."""
        tracks = self.hello.get("tracks") or []
        for track in tracks:
            if track.get("name") == name:
                return int(track["index"])
        names = ", ".join(f"{t.get('name')} ({t.get('direction')})" for t in tracks) or "none"
        raise InvalidArgumentError(f"the session has no track {name!r}; its tracks: {names}")

    def send_frame(
        self, track: str, frame: np.ndarray[Any, Any] | bytes, *, index: int | None = None, quality: int = 90
    ) -> int:
        """Send one frame to a ``VideoIn`` track: an ``(H, W, 3)`` uint8 RGB array (JPEG-encoded here,
        with Pillow) or JPEG bytes. ``index``: the header's frame index (default: a count per track).
        Returns the index sent. Refusals come back as ``error`` messages (see ``messages``)."""
        number = self.track_index(track)
        width = height = 0
        if isinstance(frame, np.ndarray):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise InvalidArgumentError(
                    f"a frame is an (H, W, 3) uint8 RGB array; got {frame.shape} {frame.dtype}"
                )
            height, width = frame.shape[:2]
            payload = _jpeg(frame, quality)
        else:
            payload = bytes(frame)
        sent = self._sent[number] if index is None else index
        self._sent[number] = sent + 1
        self._send_media("jpeg", number, sent, width, height, payload)
        return sent

    def send_audio(self, track: str, samples: np.ndarray[Any, Any], rate: int) -> None:
        """Send samples to an ``AudioIn`` track: ``(M,)`` mono or ``(C, M)``, int16 or float in
        ``[-1, 1]``, at ``rate`` Hz (the track's rate, or the server answers ``rate_mismatch``)."""
        number = self.track_index(track)
        block = np.asarray(samples)
        if block.ndim == 1:
            block = block[None, :]
        if block.ndim != 2:
            raise InvalidArgumentError(f"samples are (M,) or (channels, M); got shape {block.shape}")
        if block.dtype.kind == "f":
            block = (np.clip(block, -1.0, 1.0) * 32767.0).astype(np.int16)
        pcm = np.ascontiguousarray(block.T, dtype="<i2").tobytes()  # interleaved
        sent = self._sent[number]
        self._sent[number] = sent + 1
        self._send_media("pcm_s16le", number, sent, int(rate), block.shape[0], pcm)

    def _send_media(
        self, codec: str, track: int, index: int, width: int, height: int, payload: bytes
    ) -> None:
        now = time.monotonic_ns()
        size = len(payload)
        header = FrameHeader(codec, index, width, height, size, now, 0, 0, 0, 0, 0, now, track=track)
        self._ws.send(header.pack() + payload)

    def next_message(self, timeout: float | None = None, type: str | None = None) -> dict[str, Any]:
        """The next JSON message (of ``type`` if given); frames meanwhile are kept in ``frames``."""
        for i, kept in enumerate(self.messages):
            if type is None or kept.get("type") == type:
                del self.messages[i]
                return kept
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            message = self.recv(max(0.0, deadline - time.monotonic()))
            if isinstance(message, dict) and (type is None or message.get("type") == type):
                return message
            self._keep(message)

    def send_text(self, text: str | bytes) -> None:
        """Send a raw message (for tests of the server's answers to malformed input)."""
        self._ws.send(text)

    def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send ``message`` with a fresh ``request_id`` and return the reply that carries it."""
        request_id = f"py{next(self._ids)}"
        self._ws.send(json.dumps({**message, "request_id": request_id}))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while request_id not in self._replies:
            received = self.recv(max(0.0, deadline - time.monotonic()))
            if isinstance(received, Frame) or received.get("request_id") != request_id:
                self._keep(received)
        return self._replies.pop(request_id)

    def send_command(
        self, name: str, data: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Run a model command; returns its result or raises ``CommandError`` with the server's detail."""
        reply = self.request({"type": name, "data": data or {}}, timeout)
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise CommandError(f"{error.get('code')}: {error.get('message')}")
        return reply.get("result")

    def ping(self, timeout: float | None = None) -> float:
        """Round trip in ms."""
        started = time.perf_counter()
        self.request({"type": "ping"}, timeout)
        return (time.perf_counter() - started) * 1000.0

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> StreamConnection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _jpeg(frame: np.ndarray[Any, Any], quality: int) -> bytes:
    """An RGB frame as JPEG bytes, with Pillow (optional: pass JPEG bytes where it is not installed)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise InvalidArgumentError(
            "encoding an RGB array needs Pillow (pip install pillow); or pass JPEG bytes"
        ) from None
    out = io.BytesIO()
    Image.fromarray(frame, "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()
