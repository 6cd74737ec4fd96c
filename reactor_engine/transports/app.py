"""The ASGI app (Starlette) of one engine: the hub, its transports' routes, sessions, pages, health.

Routes and messages are written down in ``docs/protocol.md``. ``HttpApp`` assembles the routes
every transport shares (the viewer, ``/health``, ``/schema``, ``/metrics``, ``/sessions``) with the
routes of each transport over one ``SessionHub``: WebSocket, MJPEG, WebRTC when
``reactor_engine.transports.webrtc`` is importable, and any others a host passes in. Served by
``runtimes.http.serve`` (uvicorn), or mounted in a host's own app (``engine.asgi_app()``).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reactor_engine.runtimes.protocol import PROTOCOL_VERSION
from reactor_engine.transports.guard import LOOPBACK_HOSTS, AccessGuard
from reactor_engine.transports.hub import HubError, HubOptions, SessionHub, load_error_kind
from reactor_engine.transports.mjpeg import MjpegTransport
from reactor_engine.transports.web import (
    NO_CACHE,
    TransportRoutes,
    cross_origin,
    error_response,
    hub_error_response,
    no_session,
)
from reactor_engine.transports.ws import WebSocketTransport

if TYPE_CHECKING:
    from reactor_engine.engine import Engine

__all__ = ["HttpApp", "HttpOptions", "asgi_app"]

_log = logging.getLogger("reactor_engine.http")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}
# The viewer's scripts and style sheets: every one in web/, served beside index.html.
_STATIC = {
    path.name: _MEDIA_TYPES[path.suffix]
    for path in sorted(WEB_DIR.iterdir())
    if path.suffix in _MEDIA_TYPES and path.is_file()
}
_WEBRTC = "reactor_engine.transports.webrtc"
_CLOSE_WAIT_S = 2.0  # at shutdown, for WebSocket clients to be sent their end before the server closes


@dataclass(frozen=True, kw_only=True)
class HttpOptions(HubOptions):
    """The hub's limits (``HubOptions``) and those of the web transports.

    ``max_message_bytes``: the largest WebSocket text message. ``client_frames``: frames buffered per
    WebSocket or MJPEG client before its oldest is dropped. ``client_messages``: text messages
    buffered per WebSocket client. ``webrtc``: the WebRTC transport's options (``None``: its defaults).
    ``allowed_hosts``: the Host headers the app answers (``None``: loopback names only, which keeps
    other web pages from reaching a local server through DNS rebinding; ``("*",)``: any).
    ``auth_token``: when set, every request must carry it (``Authorization: Bearer`` or ``?token=``).
    """

    max_message_bytes: int = 64 * 1024
    client_frames: int = 2
    client_messages: int = 256
    webrtc: Any = None
    allowed_hosts: tuple[str, ...] | None = None
    auth_token: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_at_least_one("max_message_bytes", "client_frames", "client_messages")
        if self.allowed_hosts is not None:
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
            if not self.allowed_hosts:
                raise ValueError("HttpOptions.allowed_hosts must name at least one host (or '*')")
        if self.auth_token is not None and not self.auth_token.strip():
            raise ValueError("HttpOptions.auth_token must not be empty (None: no token)")


class HttpApp:
    """Serves one ``Engine`` over HTTP: sessions, the transports' streams, commands, viewer, metrics.

    ``app`` is the ASGI application (``app.state.runtime`` is this object, ``app.state.hub`` its
    hub). The engine may still be loading (``Engine(..., load=False)`` + ``engine.load(background=True)``):
    ``/health`` answers meanwhile and ``POST /sessions`` says ``loading``. ``shutdown()`` stops the
    session and closes the clients; the engine itself is closed by its owner. ``transports``: route
    factories of further transports, mounted after the built-in ones.
    """

    def __init__(
        self,
        engine: Engine,
        options: HttpOptions | None = None,
        *,
        transports: Sequence[TransportRoutes] = (),
    ) -> None:
        self.engine = engine
        self.options = options = options or HttpOptions()
        self.hub = SessionHub(engine, options)
        self._started = time.monotonic()
        self._pages = {name: (WEB_DIR / name).read_bytes() for name in ("index.html", *_STATIC)}
        ws = WebSocketTransport(
            self.hub, max_message_bytes=options.max_message_bytes, client_frames=options.client_frames,
            client_messages=options.client_messages,
        )  # fmt: skip
        self._ws = ws
        mjpeg = MjpegTransport(self.hub, client_frames=options.client_frames)
        routes: list[BaseRoute] = [
            Route("/", self._index),
            *(Route(f"/{name}", self._static) for name in _STATIC),
            Route("/health", self._health),
            Route("/schema", self._schema),
            Route("/metrics", self._metrics),
            Route("/sessions", self._create_session, methods=["POST"]),
            Route("/sessions/{session_id}", self._delete_session, methods=["DELETE"]),
            Route("/sessions/{session_id}/stats", self._session_stats),
            *ws.routes(),
            *mjpeg.routes(),
            *_webrtc_routes(self.hub, options.webrtc),
        ]
        for factory in transports:
            routes.extend(factory(self.hub))
        guard = Middleware(
            AccessGuard, allowed_hosts=options.allowed_hosts or LOOPBACK_HOSTS, token=options.auth_token
        )
        self.app = Starlette(routes=routes, middleware=[guard])
        self.app.state.runtime = self
        self.app.state.hub = self.hub

    async def shutdown(self) -> None:
        """Refuse new sessions, stop the running one (reason ``shutdown``) and close its clients,
        waiting (briefly) until the WebSocket clients have had their ``ended`` event and close 1000."""
        await self.hub.shutdown()
        await self._ws.wait_closed(_CLOSE_WAIT_S)

    # -- pages -----------------------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        return Response(self._pages["index.html"], media_type="text/html", headers=NO_CACHE)

    async def _static(self, request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return Response(self._pages[name], media_type=_STATIC[name], headers=NO_CACHE)

    async def _health(self, request: Request) -> Response:
        health = self.engine.health()
        if health["state"] == "error":
            # The load error's text stays in the server log; the client learns its kind only.
            kind = load_error_kind(self.engine)
            health["reason"] = f"the model failed to load ({kind}); see the server log"
            health["error"] = kind
        live = self.hub.current
        closing = self.hub.closing
        health["clients"] = len(live.clients) if live is not None else 0
        health["uptime_s"] = round(time.monotonic() - self._started, 3)
        health["shutting_down"] = closing
        healthy = health["state"] not in ("error", "unhealthy", "closed") and not closing
        health["status"] = "healthy" if healthy else "unhealthy"
        return JSONResponse(health, status_code=200 if healthy else 503)

    async def _schema(self, request: Request) -> Response:
        return JSONResponse(
            {
                "model": self.engine.name,
                "protocol_version": PROTOCOL_VERSION,
                "codec": self.engine.config.codec,
                "codecs": list(self.hub.codecs),  # every output the engine encodes, the primary first
                "commands": self.engine.command_schema(),
                # The commands' current values the engine knows ({COMMAND: {PARAMETER: value}}).
                "command_state": self.hub.command_state(),
                "capabilities": self.engine.capabilities(),
                "limits": {
                    "max_message_bytes": self.options.max_message_bytes,
                    "max_clients": self.options.max_clients,
                    "orphan_timeout_s": self.hub.orphan_timeout,
                    "max_session_duration_s": self.engine.config.max_session_duration,
                },
            }
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.hub.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- sessions --------------------------------------------------------------------------------

    async def _create_session(self, request: Request) -> Response:
        if (refused := cross_origin(request)) is not None:
            return refused
        try:
            live = await self.hub.start_session()
        except HubError as exc:
            return hub_error_response(exc)
        sid = live.session_id
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
        if (refused := cross_origin(request)) is not None:
            return refused
        sid = request.path_params["session_id"]
        live = self.hub.current
        if live is None or live.session_id != sid:
            if (ended := self.hub.ended(sid)) is not None:
                return JSONResponse({"session_id": sid, **_summary(ended)})
            return error_response(404, "session_not_found", no_session(sid))
        await self.hub.stop(live, "stopped")
        return JSONResponse({"session_id": sid, **_summary(live.session.stats())})

    async def _session_stats(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        live = self.hub.current
        if live is not None and live.session_id == sid:
            return JSONResponse(self.hub.stats(live))
        if (ended := self.hub.ended(sid)) is not None:
            return JSONResponse(ended)
        return error_response(404, "session_not_found", no_session(sid))


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats.get(key) for key in ("state", "end_reason", "frames", "duration_s")}


def _webrtc_routes(hub: SessionHub, options: Any) -> Sequence[BaseRoute]:
    """The WebRTC transport's routes (``webrtc_routes(hub, options)``), where it is installed."""
    try:
        module = importlib.import_module(_WEBRTC)
    except ImportError as exc:
        if not (isinstance(exc, ModuleNotFoundError) and exc.name == _WEBRTC):
            _log.info("the WebRTC transport is not served: %s", exc)
        return ()
    factory = getattr(module, "webrtc_routes", None)
    if factory is None:
        return ()
    if options is None and hasattr(module, "WebRtcOptions"):
        options = module.WebRtcOptions()
    routes: Sequence[BaseRoute] = factory(hub, options)
    return routes


def asgi_app(engine: Engine, *, transports: Sequence[TransportRoutes] = (), **options: Any) -> Starlette:
    """The app of ``engine`` for a host to mount (``HttpOptions`` keywords; ``transports``: further
    route factories). Call ``await app.state.runtime.shutdown()`` before closing the engine."""
    return HttpApp(engine, HttpOptions(**options), transports=transports).app
