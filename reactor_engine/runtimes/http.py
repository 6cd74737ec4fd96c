"""The http runtime: an ASGI app (Starlette, served by uvicorn) that streams one ``Engine`` to clients.

Routes and messages are written down in ``docs/protocol.md``. Threads: every handler runs on the one
asyncio loop. Encoded frames come off the native packet queue when its eventfd wakes the loop
(``loop.add_reader``), never through a thread per client; the blocking ``Engine``/``Session`` calls
(start, stop, waiting for model messages) run in worker threads (``asyncio.to_thread``).

Each frame is copied once, into the message every client is sent (ASGI takes whole messages), and its
native packet goes back to the pool at once, so a slow client never holds the encoder up: a client's
buffer keeps the latest frames only, and what it misses is counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reactor_engine.errors import (
    ClosedError,
    CommandError,
    EngineBusy,
    ReactorError,
    ReactorTimeoutError,
    StateError,
)
from reactor_engine.runtimes.protocol import HEADER_SIZE, PROTOCOL_VERSION, FrameHeader, error_body
from reactor_engine.telemetry import gpu_telemetry

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.engine import Engine
    from reactor_engine.session import Session

__all__ = ["HttpOptions", "HttpRuntime", "asgi_app", "serve"]

_log = logging.getLogger("reactor_engine.http")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_STATIC = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_MJPEG_BOUNDARY = "reactorframe"
_MJPEG_PART = f"--{_MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {{}}\r\n\r\n"


@dataclass(frozen=True)
class HttpOptions:
    """Limits and timeouts of the http runtime.

    ``orphan_timeout``: seconds a session is kept with no client connected (``None``: the engine
    config's ``orphan_timeout``; ``0``: kept until stopped). ``max_clients``: WebSocket and MJPEG
    clients per session. ``max_message_bytes``: the largest client text message. ``client_frames``:
    frames buffered per client before its oldest is dropped. ``command_timeout``: seconds a command
    may wait for the model to reach a poll point.
    """

    orphan_timeout: float | None = None
    max_clients: int = 8
    max_message_bytes: int = 64 * 1024
    client_frames: int = 2
    client_messages: int = 256
    command_timeout: float = 10.0
    kept_sessions: int = 8

    def __post_init__(self) -> None:
        for name in ("max_clients", "max_message_bytes", "client_frames", "client_messages", "kept_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"HttpOptions.{name} must be >= 1; got {getattr(self, name)}")
        if self.orphan_timeout is not None and not self.orphan_timeout >= 0:
            raise ValueError(f"HttpOptions.orphan_timeout must be >= 0 s or None; got {self.orphan_timeout}")
        if not self.command_timeout > 0:
            raise ValueError(f"HttpOptions.command_timeout must be > 0 s; got {self.command_timeout}")


class _Client:
    """One consumer of a session (a WebSocket or an MJPEG response), on the loop thread only.

    Frames go into a latest-wins buffer; text messages (model messages, events) into a bounded queue.
    Its sender coroutine drains both; ``close`` asks it to finish after what is queued.
    """

    def __init__(self, kind: Literal["ws", "mjpeg"], frames: int, messages: int) -> None:
        self.kind = kind
        self.frames: collections.deque[bytes] = collections.deque(maxlen=frames)
        self.texts: collections.deque[str] = collections.deque(maxlen=messages)
        self.wake = asyncio.Event()
        self.frames_sent = 0
        self.frames_dropped = 0
        self.messages_dropped = 0
        self.close_code: int | None = None
        self.close_reason = ""

    def offer_frame(self, message: bytes) -> None:
        if len(self.frames) == self.frames.maxlen:
            self.frames_dropped += 1
        self.frames.append(message)
        self.wake.set()

    def offer_text(self, text: str) -> None:
        if self.kind != "ws":
            return
        if len(self.texts) == self.texts.maxlen:
            self.messages_dropped += 1
        self.texts.append(text)
        self.wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.wake.set()


class _LiveSession:
    """The runtime's side of the running session: its clients, packet reader, message task, timers."""

    def __init__(self, session: Session, queue: _C.PacketQueue) -> None:
        self.session = session
        self.queue = queue
        self.clients: set[_Client] = set()
        self.orphan_timer: asyncio.TimerHandle | None = None
        self.message_task: asyncio.Task[None] | None = None
        self.reading = False
        self.finished = False
        self.stopping: asyncio.Task[None] | None = None
        self.frames_sent = 0
        self.client_frames_dropped = 0
        self.last_frame_index = -1

    @property
    def session_id(self) -> str:
        return self.session.session_id


class _Metrics:
    """The runtime's Prometheus metrics, in a registry of its own (several apps may share a process)."""

    def __init__(self, engine: Engine, runtime: HttpRuntime) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sessions_started = Counter(
            "reactor_sessions_started", "Sessions started", registry=self.registry
        )
        self.sessions_ended = Counter(
            "reactor_sessions_ended", "Sessions ended, by reason", ["reason"], registry=self.registry
        )
        self.session_active = Gauge(
            "reactor_session_active", "1 while a session runs", registry=self.registry
        )
        self.clients = Gauge(
            "reactor_clients", "Connected clients, by kind", ["kind"], registry=self.registry
        )
        self.frames_sent = Counter(
            "reactor_frames_sent",
            "Frames taken from the engine and handed to clients",
            registry=self.registry,
        )
        self.client_frames_dropped = Counter(
            "reactor_client_frames_dropped",
            "Frames a slow client missed (its buffer keeps the latest)",
            registry=self.registry,
        )
        self.commands = Counter(
            "reactor_commands", "Commands received, by command and outcome", ["command", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.frame_latency = Histogram(
            "reactor_frame_latency_seconds",
            "From the model's commit of a frame to its hand-off to the clients",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, math.inf),
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine, runtime))


class _EngineCollector(Collector):
    """Read at scrape time: engine state, native ring counters and latencies, GPU telemetry."""

    def __init__(self, engine: Engine, runtime: HttpRuntime) -> None:
        self._engine = engine
        self._runtime = runtime

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "reactor_engine_state", "1 for the engine's current state", labels=["state"]
        )
        for name in ("loading", "ready", "starting", "streaming", "stopping", "error", "unhealthy", "closed"):
            state.add_metric([name], 1.0 if self._engine.state == name else 0.0)
        yield state
        frames = CounterMetricFamily(
            "reactor_ring_frames",
            "Native frame ring counters, by track and counter",
            labels=["track", "counter"],
        )
        latency = GaugeMetricFamily(
            "reactor_ring_latency_seconds",
            "Native latency percentiles since the engine started, by track, stage and quantile",
            labels=["track", "stage", "quantile"],
        )
        try:
            stats = self._engine.stats()
        except ReactorError:  # a closed engine has no rings left to read
            stats = {}
        for track, numbers in stats.items():
            ring = numbers.get("ring", {})
            for key, value in ring.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    frames.add_metric([track, key.removeprefix("frames_")], float(value))
            for stage, summary in ring.get("latency", {}).items():
                for quantile in ("p50", "p90", "p99", "p999", "max"):
                    if quantile in summary:
                        latency.add_metric([track, stage, quantile], float(summary[quantile]) / 1e9)
        yield frames
        yield latency
        yield from _gpu_metrics()


def _gpu_metrics() -> Iterable[Metric]:
    telemetry = gpu_telemetry()
    available = GaugeMetricFamily("reactor_gpu_available", "1 when NVML reports NVIDIA GPUs")
    available.add_metric([], 1.0 if telemetry.available else 0.0)
    yield available
    if not telemetry.available:
        return
    families = {
        "memory_used": GaugeMetricFamily(
            "reactor_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu"]
        ),
        "memory_total": GaugeMetricFamily("reactor_gpu_memory_total_bytes", "GPU memory", labels=["gpu"]),
        "utilization": GaugeMetricFamily(
            "reactor_gpu_utilization_ratio", "GPU busy fraction", labels=["gpu"]
        ),
        "temperature": GaugeMetricFamily(
            "reactor_gpu_temperature_celsius", "GPU temperature", labels=["gpu"]
        ),
        "power": GaugeMetricFamily("reactor_gpu_power_watts", "GPU power draw", labels=["gpu"]),
    }
    for gpu in telemetry.devices:
        label = [str(gpu.index)]
        readings = {
            "memory_used": gpu.memory_used_bytes,
            "memory_total": gpu.memory_total_bytes,
            "utilization": gpu.utilization_percent / 100.0 if gpu.utilization_percent is not None else None,
            "temperature": gpu.temperature_c,
            "power": gpu.power_w,
        }
        for key, value in readings.items():
            if value is not None:
                families[key].add_metric(label, float(value))
    yield from families.values()


class HttpRuntime:
    """Serves one ``Engine`` over HTTP and WebSocket: sessions, frames, commands, viewer, metrics.

    ``app`` is the ASGI application; mount it in a host or run it with ``serve``. The engine may still
    be loading (``Engine(..., load=False)`` + ``engine.load(background=True)``): ``/health`` answers
    meanwhile and ``POST /sessions`` says ``loading``. ``shutdown()`` stops the session and closes the
    clients; the engine itself is closed by its owner.
    """

    def __init__(self, engine: Engine, options: HttpOptions | None = None) -> None:
        self.engine = engine
        self.options = options or HttpOptions()
        orphan = self.options.orphan_timeout
        self.orphan_timeout = float(engine.config.orphan_timeout if orphan is None else orphan)
        self._live: _LiveSession | None = None
        self._ended: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._starting = asyncio.Lock()
        self._closing = False
        self._started = time.monotonic()
        self.metrics = _Metrics(engine, self)
        self._pages = {name: (WEB_DIR / name).read_bytes() for name in ("index.html", *_STATIC)}
        self.app = Starlette(
            routes=[
                Route("/", self._index),
                *(Route(f"/{name}", self._static) for name in _STATIC),
                Route("/health", self._health),
                Route("/schema", self._schema),
                Route("/metrics", self._metrics),
                Route("/sessions", self._create_session, methods=["POST"]),
                Route("/sessions/{session_id}", self._delete_session, methods=["DELETE"]),
                Route("/sessions/{session_id}/stats", self._session_stats),
                Route("/sessions/{session_id}/mjpeg", self._mjpeg),
                WebSocketRoute("/sessions/{session_id}/ws", self._websocket),
            ]
        )
        self.app.state.runtime = self

    # -- pages -----------------------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        return Response(self._pages["index.html"], media_type="text/html", headers=_NO_CACHE)

    async def _static(self, request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return Response(self._pages[name], media_type=_STATIC[name], headers=_NO_CACHE)

    async def _health(self, request: Request) -> Response:
        health = self.engine.health()
        if health["state"] == "error":
            # The load error's text stays in the server log; the client learns its kind only.
            kind = (self.engine.error or "").split(":", 1)[0]
            health["reason"] = f"model failed to load ({kind}); see the server log"
        live = self._live
        health["clients"] = len(live.clients) if live is not None else 0
        health["uptime_s"] = round(time.monotonic() - self._started, 3)
        health["shutting_down"] = self._closing
        healthy = health["state"] not in ("error", "unhealthy", "closed") and not self._closing
        health["status"] = "healthy" if healthy else "unhealthy"
        return JSONResponse(health, status_code=200 if healthy else 503)

    async def _schema(self, request: Request) -> Response:
        return JSONResponse(
            {
                "model": self.engine.name,
                "protocol_version": PROTOCOL_VERSION,
                "codec": self.engine.config.codec,
                "commands": self.engine.command_schema(),
                "capabilities": self.engine.capabilities(),
                "limits": {
                    "max_message_bytes": self.options.max_message_bytes,
                    "max_clients": self.options.max_clients,
                    "orphan_timeout_s": self.orphan_timeout,
                    "max_session_duration_s": self.engine.config.max_session_duration,
                },
            }
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- sessions --------------------------------------------------------------------------------

    async def _create_session(self, request: Request) -> Response:
        if (refused := _cross_origin(request)) is not None:
            return refused
        async with self._starting:
            if self._closing:
                return _error(503, "shutting_down", "the server is shutting down")
            if self._live is not None and self._live.session.ended:
                await self._finish(self._live)
            state = self.engine.state
            if state == "loading":
                return _error(503, "loading", "the model is still loading; retry shortly", retry_after=1)
            try:
                # May wait for the previous session's last frames to drain (bounded by flush_timeout).
                session = await asyncio.to_thread(self.engine.session)
            except EngineBusy:
                current = self.engine.current_session
                if current is None:  # a session that ignores should_stop() still holds the engine
                    return _error(503, "unhealthy", self.engine.state_reason or "the engine is unhealthy")
                return _error(
                    409, "busy", "a session is running; this engine serves one session at a time",
                    session_id=current.session_id,
                )  # fmt: skip
            except (StateError, ClosedError):
                state = self.engine.state
                return _error(503, "not_ready", f"the engine cannot start a session while it is {state}")
            live = _LiveSession(session, session.packet_queue())
            self._live = live
            self.metrics.sessions_started.inc()
            self.metrics.session_active.set(1)
            loop = asyncio.get_running_loop()
            loop.add_reader(live.queue.fileno(), self._on_packets, live)
            live.reading = True
            live.message_task = asyncio.create_task(self._forward_messages(live))
            self._arm_orphan_timer(live)
            _log.info("session started", extra={"session_id": session.session_id})
        sid = session.session_id
        return JSONResponse(
            {
                "session_id": sid,
                "ws_url": f"sessions/{sid}/ws",
                "mjpeg_url": f"sessions/{sid}/mjpeg",
                "stats_url": f"sessions/{sid}/stats",
                "codec": self.engine.config.codec,
            },
            status_code=201,
        )

    async def _delete_session(self, request: Request) -> Response:
        if (refused := _cross_origin(request)) is not None:
            return refused
        sid = request.path_params["session_id"]
        live = self._live
        if live is None or live.session_id != sid:
            if sid in self._ended:
                return JSONResponse({"session_id": sid, **_summary(self._ended[sid])})
            return _not_found(sid)
        await self._stop(live, "stopped")
        return JSONResponse({"session_id": sid, **_summary(live.session.stats())})

    async def _session_stats(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        live = self._live
        if live is not None and live.session_id == sid:
            return JSONResponse(self._stats(live))
        if sid in self._ended:
            return JSONResponse(self._ended[sid])
        return _not_found(sid)

    def _stats(self, live: _LiveSession) -> dict[str, Any]:
        stats = live.session.stats()
        stats["runtime"] = {
            "clients": len(live.clients),
            "frames_sent": live.frames_sent,
            "client_frames_dropped": live.client_frames_dropped,
            "last_frame_index": live.last_frame_index,
        }
        return stats

    async def _stop(self, live: _LiveSession, reason: str) -> None:
        """Stop the session (bounded by the engine's stop grace); every caller waits for the same stop."""
        if live.stopping is None:
            _log.info("stopping session (%s)", reason, extra={"session_id": live.session_id})
            live.stopping = asyncio.create_task(self._stop_in_thread(live, reason))
        await asyncio.shield(live.stopping)

    async def _stop_in_thread(self, live: _LiveSession, reason: str) -> None:
        await asyncio.to_thread(live.session.stop, reason)

    # -- orphan timeout --------------------------------------------------------------------------

    def _arm_orphan_timer(self, live: _LiveSession) -> None:
        if self.orphan_timeout <= 0 or live.clients or live.finished or live.orphan_timer is not None:
            return
        loop = asyncio.get_running_loop()
        live.orphan_timer = loop.call_later(self.orphan_timeout, self._orphaned, live)

    def _orphaned(self, live: _LiveSession) -> None:
        live.orphan_timer = None
        if not live.clients and not live.finished:
            _log.info(
                "no client for %.1f s: stopping the session", self.orphan_timeout,
                extra={"session_id": live.session_id},
            )  # fmt: skip
            asyncio.get_running_loop().create_task(self._stop(live, "client_left"))

    def _attach(self, live: _LiveSession, client: _Client) -> None:
        live.clients.add(client)
        self.metrics.clients.labels(client.kind).inc()
        if live.orphan_timer is not None:
            live.orphan_timer.cancel()
            live.orphan_timer = None

    def _detach(self, live: _LiveSession, client: _Client) -> None:
        if client in live.clients:
            live.clients.discard(client)
            self.metrics.clients.labels(client.kind).dec()
        self._arm_orphan_timer(live)

    # -- frames ----------------------------------------------------------------------------------

    def _on_packets(self, live: _LiveSession) -> None:
        """The packet queue's eventfd fired (loop thread): fan every ready packet out to the clients."""
        live.queue.clear_event()  # before draining, so a packet published meanwhile wakes us again
        for _ in range(2 * live.queue.capacity):  # bounded: the loop serves other work between bursts
            try:
                packet = live.session.next_packet(0.0)
            except ReactorTimeoutError:
                return
            except ReactorError:
                _log.exception("reading packets failed", extra={"session_id": live.session_id})
                self._stop_reading(live)
                return
            if packet is None:  # the session has ended and its last frame is out
                self._stop_reading(live)
                return
            with packet:
                message = self._frame_message(packet)
            self._broadcast_frame(live, message, packet)
        # More than a burst was waiting: come back after the loop's other callbacks.
        asyncio.get_running_loop().call_soon(self._on_packets, live)

    def _frame_message(self, packet: _C.Packet) -> bytes:
        sent_ns = time.monotonic_ns()
        header = FrameHeader.of_packet(packet, sent_ns).pack()
        payload: Any = packet  # the buffer protocol (numpy's stubs type it for Python >= 3.12 only)
        self.metrics.frame_latency.observe(max(0, sent_ns - packet.t_commit_ns) / 1e9)
        return b"".join((header, memoryview(payload)))  # the one copy; the packet is released after

    def _broadcast_frame(self, live: _LiveSession, message: bytes, packet: _C.Packet) -> None:
        live.frames_sent += 1
        live.last_frame_index = packet.frame_index
        self.metrics.frames_sent.inc()
        for client in live.clients:
            before = client.frames_dropped
            client.offer_frame(message)
            if client.frames_dropped != before:
                live.client_frames_dropped += 1
                self.metrics.client_frames_dropped.inc()

    def _stop_reading(self, live: _LiveSession) -> None:
        if live.reading:
            live.reading = False
            with contextlib.suppress(ValueError, OSError, ReactorError):
                asyncio.get_running_loop().remove_reader(live.queue.fileno())

    # -- model messages and the end of a session --------------------------------------------------

    async def _forward_messages(self, live: _LiveSession) -> None:
        """Model messages and session events to every WebSocket client, until the session has ended."""
        try:
            while True:
                message = await asyncio.to_thread(live.session.next_message, 0.25)
                if message is None:
                    if live.session.ended:
                        break
                    continue
                text = json.dumps(message, default=str)
                for client in live.clients:
                    client.offer_text(text)
        finally:
            await self._finish(live)

    async def _finish(self, live: _LiveSession) -> None:
        """After the end: last frames out, clients closed, the session kept for its stats (idempotent)."""
        if live.finished:
            return
        live.finished = True
        if live.reading:
            self._on_packets(live)  # the frames published before the end
            self._stop_reading(live)
        if live.orphan_timer is not None:
            live.orphan_timer.cancel()
            live.orphan_timer = None
        session = live.session
        reason = session.end_reason or ("unhealthy" if session.state == "unhealthy" else "ended")
        for client in list(live.clients):
            client.close(1000, f"session ended: {reason}")
        self._ended[session.session_id] = self._stats(live)
        while len(self._ended) > self.options.kept_sessions:
            self._ended.popitem(last=False)
        if self._live is live:
            self._live = None
        self.metrics.sessions_ended.labels(reason).inc()
        self.metrics.session_active.set(0)
        _log.info(
            "session ended (%s): %d frames sent",
            reason,
            live.frames_sent,
            extra={"session_id": live.session_id},
        )

    # -- WebSocket -------------------------------------------------------------------------------

    async def _websocket(self, websocket: WebSocket) -> None:
        sid = websocket.path_params["session_id"]
        await websocket.accept()
        if not _same_origin(websocket.headers):
            await _refuse(
                websocket, 4403, "forbidden_origin", "cross-origin WebSocket connections are refused"
            )
            return
        live = self._live
        if live is None or live.session_id != sid or live.finished:
            await _refuse(websocket, 4404, "session_not_found", _no_session(sid))
            return
        if len(live.clients) >= self.options.max_clients:
            await _refuse(
                websocket, 4429, "too_many_clients",
                f"session {sid} has {len(live.clients)} clients, the most it takes",
            )  # fmt: skip
            return
        client = _Client("ws", self.options.client_frames, self.options.client_messages)
        self._attach(live, client)
        _log.info("client connected (%d now)", len(live.clients), extra={"session_id": sid})
        hello = {
            "type": "hello",
            "session_id": sid,
            "model": self.engine.name,
            "protocol_version": PROTOCOL_VERSION,
            "codec": self.engine.config.codec,
            "header_size": HEADER_SIZE,
            "max_message_bytes": self.options.max_message_bytes,
        }
        sender = asyncio.create_task(self._send_to(websocket, client, json.dumps(hello)))
        receiver = asyncio.create_task(self._receive_from(websocket, live))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
            for task in (sender, receiver):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                    await task
            self._detach(live, client)
            _log.info(
                "client disconnected (%d left); missed %d frames", len(live.clients), client.frames_dropped,
                extra={"session_id": sid},
            )  # fmt: skip
        if sender in done and client.close_code is not None:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await websocket.close(client.close_code, client.close_reason[:120])

    async def _send_to(self, websocket: WebSocket, client: _Client, hello: str) -> None:
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

    async def _receive_from(self, websocket: WebSocket, live: _LiveSession) -> None:
        """Receiver coroutine: every client message gets exactly one reply (or error) on this socket."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                reply: dict[str, Any] = {
                    "type": "error",
                    "code": "binary_not_accepted",
                    "message": "the server takes JSON text messages only; binary messages are not accepted",
                }
            else:
                reply = await self._handle_text(live, text)
            await websocket.send_text(json.dumps(reply, default=str))

    async def _handle_text(self, live: _LiveSession, text: str) -> dict[str, Any]:
        limit = self.options.max_message_bytes
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            return _ws_error("message_too_large", f"message is {size} bytes; the limit is {limit}")
        try:
            message = json.loads(text)
        except ValueError as exc:
            return _ws_error("invalid_json", f"message is not JSON: {exc}")
        if not isinstance(message, dict):
            return _ws_error(
                "invalid_message",
                f'expected a JSON object {{"type", "data", "request_id"}}; got {_kind(message)}',
            )
        request_id = message.get("request_id")
        if request_id is not None and not (
            (isinstance(request_id, str) and len(request_id) <= 128)
            or (isinstance(request_id, int) and not isinstance(request_id, bool))
        ):
            return _ws_error(
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
            return {"type": "capabilities", "request_id": request_id, "data": self.engine.capabilities()}
        return await self._command(live, name, message.get("data"), request_id)

    async def _command(self, live: _LiveSession, name: str, data: Any, request_id: Any) -> dict[str, Any]:
        known = name in self.engine.spec.commands
        label = name if known else "_unknown"
        if data is not None and not isinstance(data, dict):
            self.metrics.commands.labels(label, "invalid").inc()
            return _reply_error(
                request_id, "invalid_arguments", f'"data" must be an object of arguments; got {_kind(data)}'
            )
        if not known:
            self.metrics.commands.labels(label, "unknown").inc()
            commands = ", ".join(sorted(self.engine.spec.commands)) or "none"
            return _reply_error(
                request_id, "unknown_command", f"unknown command {name!r}; this model takes: {commands}"
            )
        session = live.session
        try:
            future = session.submit_command(name, data)
        except CommandError as exc:
            outcome, code = ("ended", "session_ended") if session.ended else ("invalid", "invalid_arguments")
            self.metrics.commands.labels(label, outcome).inc()
            return _reply_error(request_id, code, str(exc))
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.options.command_timeout)
        except TimeoutError:
            self.metrics.commands.labels(label, "timeout").inc()
            return _reply_error(
                request_id, "timeout",
                f"command {name!r} was not applied within {self.options.command_timeout} s "
                f"(the model has not reached a poll point)",
            )  # fmt: skip
        except CommandError as exc:  # the handler failed; the message never holds its internal text
            outcome, code = ("ended", "session_ended") if session.ended else ("failed", "command_failed")
            self.metrics.commands.labels(label, outcome).inc()
            return _reply_error(request_id, code, str(exc))
        self.metrics.commands.labels(label, "ok").inc()
        return {"type": "reply", "request_id": request_id, "ok": True, "command": name, "result": result}

    # -- MJPEG -----------------------------------------------------------------------------------

    async def _mjpeg(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        live = self._live
        if live is None or live.session_id != sid or live.finished:
            return _not_found(sid)
        if self.engine.config.codec != "jpeg":
            codec = self.engine.config.codec
            message = f"MJPEG needs JPEG frames; this engine encodes {codec} (run with --engine.codec=jpeg)"
            return _error(409, "codec_mismatch", message)
        if len(live.clients) >= self.options.max_clients:
            return _error(
                429, "too_many_clients", f"session {sid} has {len(live.clients)} clients, the most it takes"
            )
        client = _Client("mjpeg", self.options.client_frames, 1)
        self._attach(live, client)
        return StreamingResponse(
            self._mjpeg_parts(live, client, request),
            media_type=f"multipart/x-mixed-replace; boundary={_MJPEG_BOUNDARY}",
            headers=_NO_CACHE,
        )

    async def _mjpeg_parts(self, live: _LiveSession, client: _Client, request: Request) -> AsyncIterator[Any]:
        try:
            while client.close_code is None:
                try:
                    await asyncio.wait_for(client.wake.wait(), 1.0)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                client.wake.clear()
                while client.frames:
                    message = client.frames.popleft()
                    jpeg = memoryview(message)[HEADER_SIZE:]
                    yield _MJPEG_PART.format(len(jpeg)).encode()
                    yield jpeg
                    yield b"\r\n"
                    client.frames_sent += 1
        finally:
            self._detach(live, client)

    # -- shutdown --------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Refuse new sessions, stop the running one (reason ``shutdown``) and close its clients."""
        self._closing = True
        live = self._live
        if live is None:
            return
        if not live.session.ended:
            await self._stop(live, "shutdown")
        if live.message_task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(live.message_task), 2.0)
        await self._finish(live)


# -- helpers -------------------------------------------------------------------------------------------

_NO_CACHE = {"Cache-Control": "no-cache, no-store"}


def _error(
    status: int, code: str, message: str, retry_after: int | None = None, **detail: Any
) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_body(code, message, **detail), status_code=status, headers=headers)


def _no_session(sid: str) -> str:
    return f"no session {sid!r}: it has ended or never existed (start one with POST /sessions)"


def _not_found(sid: str) -> JSONResponse:
    return _error(404, "session_not_found", _no_session(sid))


def _ws_error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def _reply_error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "type": "reply",
        "request_id": request_id,
        "ok": False,
        "error": {"code": code, "message": message},
    }


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats.get(key) for key in ("state", "end_reason", "frames", "duration_s")}


def _same_origin(headers: Any) -> bool:
    """A browser's ``Origin`` must name this server (no other web page may drive it); tools send none."""
    origin = headers.get("origin")
    if not origin:
        return True
    host = headers.get("host", "")
    return bool(urlsplit(origin).netloc == host)


def _cross_origin(request: Request) -> Response | None:
    if _same_origin(request.headers):
        return None
    return _error(403, "forbidden_origin", "cross-origin requests are refused")


async def _refuse(websocket: WebSocket, code: int, error: str, message: str) -> None:
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.send_text(json.dumps(_ws_error(error, message)))
        await websocket.close(code, error)


# -- standalone server -----------------------------------------------------------------------------------


def asgi_app(engine: Engine, **options: Any) -> Starlette:
    """The http runtime of ``engine`` as an ASGI app for a host to mount (``HttpOptions`` keywords).

    The app's ``state.runtime`` is its ``HttpRuntime``; call ``await app.state.runtime.shutdown()``
    before closing the engine.
    """
    return HttpRuntime(engine, HttpOptions(**options)).app


class _Server(uvicorn.Server):
    """uvicorn, with the session stopped and its clients closed first when a shutdown begins."""

    def __init__(
        self, config: uvicorn.Config, runtime: HttpRuntime, on_started: Callable[[str], None]
    ) -> None:
        super().__init__(config)
        self._runtime = runtime
        self._on_started = on_started

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            address = self.servers[0].sockets[0].getsockname()
            host = f"[{address[0]}]" if ":" in address[0] else address[0]
            self._on_started(f"http://{host}:{address[1]}/")

    async def shutdown(self, sockets: Any = None) -> None:
        await self._runtime.shutdown()
        await super().shutdown(sockets)


def serve(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    options: HttpOptions | None = None,
    *,
    access_log: bool = False,
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Serve ``engine`` until SIGINT/SIGTERM; returns once the session is stopped and clients closed.

    Binds ``host`` (loopback by default; then only ``localhost``-style Host headers are accepted, which
    keeps other web pages from reaching the server through DNS rebinding). ``port=0`` picks a free
    port; ``on_started`` receives the viewer's URL.
    """
    runtime = HttpRuntime(engine, options)
    loopback = host in _LOOPBACK
    app: Any = runtime.app
    if loopback:
        app = TrustedHostMiddleware(app, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"])
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        # The transport's own cap, above the app's per-message limit (which answers with an error).
        ws_max_size=max(1 << 20, 4 * runtime.options.max_message_bytes),
        lifespan="off",
        log_config=None,
        access_log=access_log,
        timeout_graceful_shutdown=max(1, math.ceil(engine.config.stop_grace + 2)),
    )
    server = _Server(config, runtime, on_started or (lambda url: _log.info("viewer at %s", url)))
    received: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the signal that stopped it under the handler it found; with this one in place
    # that is a no-op, so a graceful stop ends the process with exit code 0, not by the signal.
    previous = (
        {sig: signal.signal(sig, lambda s, _: received.append(s)) for sig in _STOP_SIGNALS} if in_main else {}
    )
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        _log.info("stopped by %s", signal.Signals(received[0]).name)
