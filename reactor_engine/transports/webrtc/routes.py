"""The HTTP routes of the Reactor local protocol (sessions and WebRTC signaling), as Starlette routes.

``webrtc_routes(hub, options)`` returns them for the app to mount. P is
``/sessions/{sid}/transport/webrtc``; a ``sid`` that is not the running session's gives 404, and a
transport call with no session running gives 400. Every route answers CORS preflights and carries
``Access-Control-Allow-Origin`` for the origins in ``WebRtcOptions.cors_origins`` (a request from
another origin is refused with 403). Handlers run on the asyncio loop thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import reactor_webrtc as rtc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reactor_engine import __version__
from reactor_engine.transports.hub import HubError
from reactor_engine.transports.web import error_response, hub_error_response
from reactor_engine.transports.webrtc.options import origin_allowed
from reactor_engine.transports.webrtc.sdp import TrackMapping
from reactor_engine.transports.webrtc.signaling import LEGACY_CONNECTION_ID, SessionPeers

if TYPE_CHECKING:
    from reactor_engine.transports.hub import LiveSession, SessionHub
    from reactor_engine.transports.webrtc.options import WebRtcOptions

__all__ = ["WebRtcTransport", "webrtc_routes"]

_log = logging.getLogger("reactor_engine.webrtc")

PREFIX = "/sessions/{sid}/transport/webrtc"
MAX_BODY_BYTES = 256 * 1024
_MAX_CANDIDATES = 64  # per request
_ALLOWED_HEADERS = (
    "Content-Type, Authorization, Reactor-API-Version, Reactor-API-Accept-Version, Reactor-WebRTC-Version"
)
Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class WebRtcTransport:
    """The protocol's routes over one ``SessionHub``; holds each live session's ``SessionPeers``."""

    def __init__(self, hub: SessionHub, options: WebRtcOptions) -> None:
        self.hub = hub
        self.options = options
        self._sessions: dict[str, SessionPeers] = {}
        self._any_origin = "*" in options.cors_origins
        hub.on_session_ended(self._session_ended)

    def routes(self) -> list[BaseRoute]:
        flat, conn = f"{PREFIX}/sdp_params", f"{PREFIX}/connections/{{cid}}"
        table: list[tuple[str, Handler, list[str]]] = [
            ("/start_session", self._start_session, ["POST"]),
            ("/session", self._get_session, ["GET"]),
            ("/stop_session", self._stop_session, ["POST"]),
            (f"{PREFIX}/ice_servers", self._ice_servers, ["GET"]),
            (f"{PREFIX}/connections", self._register, ["POST"]),
            (f"{conn}/sdp_params", self._sdp_params, ["GET", "POST", "PUT"]),
            (f"{conn}/ice_candidates", self._ice_candidates, ["POST"]),
            (flat, self._sdp_params, ["GET", "POST", "PUT"]),
            (f"{PREFIX}/ice_candidates", self._ice_candidates, ["POST"]),
            (f"{PREFIX}/stats", self._stats, ["GET"]),
        ]
        return [
            Route(path, self._cors(handler), methods=[*methods, "OPTIONS"])
            for path, handler, methods in table
        ]

    def peers(self, session_id: str) -> SessionPeers | None:
        """The WebRTC state of the running session ``session_id`` (tests and stats read it)."""
        return self._sessions.get(session_id)

    # -- sessions ------------------------------------------------------------------------------------

    async def _start_session(self, request: Request) -> Response:
        body = await _json_body(request)
        if body.get("extra_args"):
            _log.info("start_session: extra_args ignored (this server takes model settings at startup)")
        try:
            live = await self.hub.start_session()
        except HubError as exc:
            return hub_error_response(exc)
        return JSONResponse(self._descriptor(live))

    async def _get_session(self, request: Request) -> Response:
        live = self._running()
        if live is None:
            return error_response(
                404, "no_session", "no session is running; start one with POST /start_session"
            )
        return JSONResponse(self._descriptor(live))

    async def _stop_session(self, request: Request) -> Response:
        body = await _json_body(request)
        reason = body.get("reason")
        live = self._running()
        if live is None:
            return JSONResponse({"stopped": False, "message": "no session is running"})
        await self.hub.stop(live, reason if isinstance(reason, str) and reason else "stopped by the client")
        return JSONResponse({"stopped": True, "session_id": live.session_id})

    def _descriptor(self, live: LiveSession) -> dict[str, Any]:
        engine = self.hub.engine
        capabilities = dict(engine.capabilities())
        # The hub fans out the default video track only: that is the one video a client can receive;
        # the inputs (camera, microphone) and the audio outputs are all offered.
        media = {engine.spec.default_track, *live.tracks.inputs, *live.tracks.audio_outputs}
        capabilities["tracks"] = [t for t in capabilities.get("tracks", []) if t.get("name") in media]
        if capabilities.get("emission_fps") is None:
            capabilities.pop("emission_fps", None)
        return {
            "session_id": live.session_id,
            "state": "closed" if live.finished or live.session.ended else "ready",
            "cluster": "local",
            "model": {"name": engine.name},
            "server_info": {"server_version": __version__},
            "selected_transport": {"protocol": "webrtc", "version": "1.0"},
            "capabilities": capabilities,
        }

    # -- transport ------------------------------------------------------------------------------------

    async def _ice_servers(self, request: Request) -> Response:
        self._session_of(request)
        return JSONResponse({"ice_servers": [server.describe() for server in self.options.ice_servers]})

    async def _register(self, request: Request) -> Response:
        peers = self._session_of(request)
        await _json_body(request)
        connection = peers.register()
        return JSONResponse({"connection_id": connection.cid, "track_map": {}}, status_code=201)

    async def _sdp_params(self, request: Request) -> Response:
        peers = self._session_of(request)
        connection = peers.get(_connection_id(request), legacy=True)
        if request.method == "GET":
            status, body = peers.answer_status(connection)
            return JSONResponse(body, status_code=status)
        body = await _json_body(request)
        mapping = _track_mapping(body.get("track_mapping", []))
        peers.offer(connection, body.get("sdp_offer"), mapping)
        return JSONResponse({"connection_id": connection.cid}, status_code=202)

    async def _ice_candidates(self, request: Request) -> Response:
        peers = self._session_of(request)
        connection = peers.get(_connection_id(request), legacy=True)
        body = await _json_body(request)
        await peers.add_candidates(connection, _candidates(body.get("candidates", [])))
        return JSONResponse({"connection_id": connection.cid}, status_code=202)

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(await self._session_of(request).stats())

    def _running(self) -> LiveSession | None:
        live = self.hub.current
        return None if live is None or live.finished or live.session.ended else live

    def _session_of(self, request: Request) -> SessionPeers:
        sid = request.path_params["sid"]
        live = self._running()
        if live is None:
            message = f"no session is running (asked for {sid!r}); start one with POST /start_session"
            raise _BadRequest(error_response(400, "no_session", message))
        if live.session_id != sid:
            message = f"no session {sid!r}; the running session is another one"
            raise _BadRequest(error_response(404, "session_not_found", message))
        peers = self._sessions.get(sid)
        if peers is None:
            peers = self._sessions[sid] = SessionPeers(self.hub, live, self.options)
        return peers

    def _session_ended(self, live: LiveSession, reason: str) -> None:
        peers = self._sessions.pop(live.session_id, None)
        if peers is not None:
            peers.close()

    # -- CORS and errors ----------------------------------------------------------------------------------

    def _cors(self, handler: Handler) -> Handler:
        async def route(request: Request) -> Response:
            origin = request.headers.get("origin")
            own_host = request.headers.get("host", "")
            if origin is not None and not origin_allowed(origin, self.options.cors_origins, own_host):
                return error_response(
                    403, "forbidden_origin", f"origin {origin!r} is not allowed (cors_origins)"
                )
            if request.method == "OPTIONS":
                response: Response = Response(status_code=204)
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, OPTIONS"
                asked = request.headers.get("access-control-request-headers")
                response.headers["Access-Control-Allow-Headers"] = asked or _ALLOWED_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
            else:
                try:
                    response = await handler(request)
                except _BadRequest as exc:
                    response = exc.response
                except HubError as exc:
                    response = hub_error_response(exc)
            if origin is not None:
                response.headers["Access-Control-Allow-Origin"] = "*" if self._any_origin else origin
                response.headers["Access-Control-Expose-Headers"] = "Retry-After"
                if not self._any_origin:
                    response.headers["Vary"] = "Origin"
            return response

        return route


def webrtc_routes(hub: SessionHub, options: WebRtcOptions | None = None) -> list[BaseRoute]:
    """The Reactor local protocol's routes over ``hub`` (``options``: ``WebRtcOptions()`` if ``None``)."""
    from reactor_engine.transports.webrtc.options import WebRtcOptions

    return WebRtcTransport(hub, options or WebRtcOptions()).routes()


# -- request parsing -------------------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body); 413 or 400 on anything else."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BadRequest(error_response(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes"))
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise _BadRequest(error_response(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes"))
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest(error_response(400, "bad_json", f"the body is not JSON: {exc}")) from None
    if not isinstance(body, dict):
        raise _BadRequest(error_response(400, "bad_json", "the body must be a JSON object"))
    return body


def _connection_id(request: Request) -> int:
    raw = request.path_params.get("cid")
    if raw is None:
        return LEGACY_CONNECTION_ID
    if not raw.isdigit() or len(raw) > 9:
        raise _BadRequest(
            error_response(404, "connection_not_found", f"no connection {raw!r}: ids are numbers")
        )
    return int(raw)


def _track_mapping(value: Any) -> list[TrackMapping]:
    if not isinstance(value, list):
        raise _BadRequest(error_response(400, "bad_track_mapping", '"track_mapping" must be a list'))
    mapping = []
    for entry in value:
        fields = entry if isinstance(entry, dict) else {}
        try:
            mid, name, kind, direction = (fields[key] for key in ("mid", "name", "kind", "direction"))
        except KeyError as exc:
            message = f'a "track_mapping" entry needs mid, name, kind, direction; no {exc} in {entry!r:.120}'
            raise _BadRequest(error_response(400, "bad_track_mapping", message)) from None
        if not all(isinstance(v, str) for v in (mid, name, kind, direction)):
            message = f'"track_mapping" fields are strings; got {entry!r:.120}'
            raise _BadRequest(error_response(400, "bad_track_mapping", message))
        mapping.append(TrackMapping(mid, name, kind, direction))
    return mapping


def _candidates(value: Any) -> list[rtc.IceCandidate]:
    if not isinstance(value, list) or len(value) > _MAX_CANDIDATES:
        message = f'"candidates" must be a list of at most {_MAX_CANDIDATES} candidates'
        raise _BadRequest(error_response(400, "bad_candidates", message))
    out = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("candidate"), str):
            message = (
                f'each candidate is {{"candidate": str, "sdp_mid"?, "sdp_mline_index"?}}; got {entry!r:.120}'
            )
            raise _BadRequest(error_response(400, "bad_candidates", message))
        mid = entry.get("sdp_mid", entry.get("sdpMid"))
        index = entry.get("sdp_mline_index", entry.get("sdpMLineIndex"))
        if (mid is not None and not isinstance(mid, str)) or (
            index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0)
        ):
            message = (
                f"a candidate's sdp_mid is a string and sdp_mline_index a number >= 0; got {entry!r:.120}"
            )
            raise _BadRequest(error_response(400, "bad_candidates", message))
        if entry["candidate"].strip():  # an empty one is the end-of-candidates marker
            out.append(rtc.IceCandidate(entry["candidate"], mid, index))
    return out
