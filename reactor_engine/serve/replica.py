"""One Serve replica: one ``Engine`` and its ``HttpApp``, served on the replica's own port as well.

A replica is the unit Serve places, health-checks and replaces. It loads the model once (in its
``async`` constructor, on a worker thread: Serve may run user code on the replica's event loop), then
answers the ingress two ways:

- ``request(call)``, a ``DeploymentHandle`` call: one HTTP request (method, path, headers, body) run
  through the replica's ``HttpApp`` in process, on the loop of the replica's own server, answered
  whole. Every control route goes this way (sessions, stats, schema, WebRTC signaling).
- its own uvicorn server on ``host`` (loopback by default), for what a handle call cannot carry: the
  WebSocket stream and the endless MJPEG response, which the ingress proxies to it.

The app of a replica requires the deployment's internal token (set by the ingress on every request
it forwards), so the replica's port is no way around the ingress's own Host check and access token.
``check_health`` fails while the engine is ``error``, ``unhealthy`` or ``closed`` (or the server
thread died): Serve then replaces the replica, which loads the weights again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from reactor_engine.transports.app import HttpApp, HttpOptions

__all__ = ["EngineReplica", "HttpCall", "HttpReply", "ReplicaSpec"]

_log = logging.getLogger("reactor_engine.serve")

_BAD_STATES = ("error", "unhealthy", "closed")
_MAX_BODY = 16 << 20  # a forwarded reply larger than this is refused (the control routes answer KiB)


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica of the deployment builds: the model and its settings, its app's options.

    ``host``: the address the replica's own server binds (loopback; a node's address on a multi-node
    cluster, where the ingress runs elsewhere). ``token``: the internal token its app requires.
    """

    target: str
    token: str
    model_overrides: tuple[str, ...] = ()
    engine_overrides: tuple[str, ...] = ()
    config_file: str | None = None
    http: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request, as the ingress forwards it (headers as latin-1 text pairs)."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def session_of(path: str) -> str | None:
    """The session id a path names (``/sessions/{id}...``), or ``None``."""
    parts = path.split("/")
    if len(parts) >= 3 and parts[1] == "sessions" and parts[2]:
        return parts[2]
    return None


class _Counting:
    """ASGI middleware: counts the requests (and WebSocket handshakes) each session id received."""

    def __init__(self, app: Any, counts: Counter[str]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and (sid := session_of(scope["path"])) is not None:
            self.counts[sid] += 1
        await self.app(scope, receive, send)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: HttpApp) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()
        if self.started and self.servers:
            self.port = int(self.servers[0].sockets[0].getsockname()[1])
        self.ready.set()

    async def shutdown(self, sockets: Any = None) -> None:
        await self.runtime.shutdown()
        await super().shutdown(sockets)


class EngineReplica:
    """The body of one replica (wrapped by ``serve.deployment`` in ``reactor_engine.serve.app``)."""

    async def __init__(self, spec: ReplicaSpec) -> None:  # type: ignore[misc]  # Serve awaits it
        # The model loads off the replica's event loop, which Serve runs user code on (SERVE_ENV).
        await asyncio.to_thread(self._start, spec)

    def _start(self, spec: ReplicaSpec) -> None:
        from reactor_engine.engine import Engine

        started = time.monotonic()
        self.spec = spec
        self.engine = Engine(
            spec.target,
            list(spec.model_overrides),
            list(spec.engine_overrides),
            config_file=spec.config_file,
        )
        self.load_s = time.monotonic() - started
        options = HttpOptions(**{**spec.http, "auth_token": spec.token, "allowed_hosts": ("*",)})
        self.runtime = HttpApp(self.engine, options)
        self.served: Counter[str] = Counter()  # requests per session id this replica answered
        self.sessions: list[str] = []  # the sessions this replica admitted, oldest first
        self.app = _Counting(self.runtime.app, self.served)
        limit = max(1 << 20, 4 * options.max_message_bytes, self.engine.config.input_max_bytes + (64 << 10))
        config = uvicorn.Config(
            self.app, host=spec.host, port=0, ws="websockets-sansio", ws_per_message_deflate=False,
            ws_max_size=limit,
            lifespan="off", log_config=None, access_log=False, loop="asyncio", http="h11",
            timeout_graceful_shutdown=max(1, int(self.engine.config.stop_grace) + 2),
        )  # fmt: skip
        self.server = _Server(config, self.runtime)
        self.thread = threading.Thread(target=self.server.run, name="reactor-replica-http", daemon=True)
        self.thread.start()
        if not self.server.ready.wait(60) or self.server.loop is None or not self.server.port:
            raise RuntimeError("the replica's HTTP server did not start")
        self.address = f"{_reachable(spec.host)}:{self.server.port}"
        self.start_s = time.monotonic() - started
        _log.info(
            "replica of '%s' ready at %s (loaded in %.2f s)", self.engine.name, self.address, self.load_s
        )

    # -- handle calls -----------------------------------------------------------------------------

    async def request(self, call: HttpCall) -> HttpReply:
        """Run one forwarded HTTP request through the app, on its server's loop; the whole reply."""
        assert self.server.loop is not None
        future = asyncio.run_coroutine_threadsafe(self._call(call), self.server.loop)
        reply = await asyncio.wrap_future(future)
        admitted = call.method == "POST" and call.path in ("/sessions", "/start_session")
        if admitted and reply.status in (200, 201) and (current := self.runtime.hub.current) is not None:
            self.sessions.append(current.session_id)
        return reply

    async def status(self) -> dict[str, Any]:
        """The replica at a glance: its engine's state, its session, what it served, where it is."""
        current = self.runtime.hub.current
        return {
            "state": self.engine.state,
            "session_id": current.session_id if current is not None else None,
            "address": self.address,
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "model": self.engine.name,
            "load_s": round(self.load_s, 3),
            "start_s": round(self.start_s, 3),
            "rss_bytes": _rss_bytes(),
            "sessions": list(self.sessions[-64:]),
            "served": dict(self.served),
        }

    def check_health(self) -> None:
        """Serve's health check: raises (so Serve replaces this replica) when it cannot serve."""
        state = self.engine.state
        if state in _BAD_STATES:
            raise RuntimeError(f"the engine is {state}")
        if not self.thread.is_alive():
            raise RuntimeError("the replica's HTTP server stopped")

    def __del__(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.should_exit = True
            self.thread.join(self.engine.config.stop_grace + 5)
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()

    # -- in-process ASGI --------------------------------------------------------------------------

    async def _call(self, call: HttpCall) -> HttpReply:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in call.headers]
        # The client's Host stays (the same-origin and CORS rules compare it with Origin, as at the
        # ingress); the internal token replaces the client's (the ingress checked that one).
        if not any(key == b"host" for key, _ in headers):
            headers.append((b"host", b"127.0.0.1"))
        headers = [h for h in headers if h[0] not in (b"authorization", b"content-length")]
        headers += [
            (b"authorization", f"Bearer {self.spec.token}".encode()),
            (b"content-length", str(len(call.body)).encode()),
        ]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": call.method,
            "scheme": "http", "path": call.path, "raw_path": call.path.encode(), "root_path": "",
            "query_string": call.query.encode("latin-1"), "headers": headers,
            "server": ("127.0.0.1", self.server.port), "client": ("127.0.0.1", 0),
        }  # fmt: skip
        sent = asyncio.Event()
        delivered = False
        status = 500
        out_headers: list[tuple[str, str]] = []
        body = bytearray()

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": call.body, "more_body": False}
            await sent.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out_headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"])
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if len(body) > _MAX_BODY:
                    raise RuntimeError(
                        "a forwarded reply over 16 MiB (streamed routes go by the replica's port)"
                    )
                if not message.get("more_body", False):
                    sent.set()

        await self.app(scope, receive, send)
        sent.set()
        return HttpReply(status, tuple(out_headers), bytes(body))


def _rss_bytes() -> int | None:
    """This process's resident set (``VmRSS``), or ``None`` where ``/proc`` does not say."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


def _reachable(host: str) -> str:
    """The address the ingress dials for a server bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):
        try:
            import ray

            return str(ray.util.get_node_ip_address())
        except Exception:
            return socket.gethostbyname(socket.gethostname())
    return f"[{host}]" if ":" in host else host
