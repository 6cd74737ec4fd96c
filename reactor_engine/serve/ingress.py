"""The ingress deployment: admits each new session to a free replica, routes the rest to its holder.

One Serve ingress (``@serve.ingress`` with its app built per ingress replica) in front of N replica
*slots*: one Serve deployment per slot, each of one ``EngineReplica``, so that "the replica that holds
session S" is a name Serve keeps (a slot) while Serve replaces the process under it. The ingress:

- ``POST /sessions`` and ``POST /start_session``: asks every slot for its status (handle calls), and
  forwards the request to a free one (an engine ``ready`` with no session); the first that admits it
  holds the session. None free: **503** ``no_free_replica`` with ``Retry-After`` (not 409: the client
  has no session to join). Admission is serialised in each ingress replica; a replica refuses a
  second session itself (409), and then the next free slot is tried.
- ``/sessions/{id}/...`` (stats, DELETE, the WebRTC signaling routes): a handle call to the slot that
  holds ``id``, which runs the request through its own app (``EngineReplica.request``).
- ``/sessions/{id}/ws`` and ``/sessions/{id}/mjpeg``: a handle call cannot carry a WebSocket or an
  endless response, so the ingress proxies them to the holder's own server (its address from its
  status), with the internal token. A replica lost mid-stream ends the WebSocket with an ``ended``
  event (reason ``replica_lost``) and close 1011.
- ``/session/{id}/...``: the Reactor protocol under a session's own base URL (``GET /session``,
  ``POST /stop_session`` and the signaling routes of that session, at its replica); the root's
  ``GET /session`` and ``POST /stop_session`` name no session and answer 404.
- ``/health`` and ``/metrics`` cover every slot: which session each holds, free slots, admitted and
  refused sessions. Other routes (the viewer, ``/schema``) go to any replica that answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from dataclasses import replace
from typing import Any

import websockets
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reactor_engine.serve.replica import HttpCall, HttpReply, session_of
from reactor_engine.transports.guard import LOOPBACK_HOSTS, AccessGuard
from reactor_engine.transports.web import error_response, no_session, same_origin

__all__ = ["Ingress"]

_log = logging.getLogger("reactor_engine.serve")

_STATUS_TIMEOUT_S = 5.0
_CALL_TIMEOUT_S = 60.0
_KEEP_SESSIONS = 4096  # session -> slot entries kept (ended ones too: their stats stay reachable)
_SHOWN = ("state", "session_id", "pid", "node", "address", "load_s", "start_s", "rss_bytes")
_METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
_HOP = {"host", "authorization", "connection", "upgrade", "content-length", "transfer-encoding"}


class Ingress:
    """The ingress body (wrapped by ``serve.deployment`` + ``serve.ingress`` in ``serve.app``).

    ``slots``: a ``DeploymentHandle`` per replica slot. ``token``: the replicas' internal token.
    ``options``: ``retry_after`` (s), ``allowed_hosts``, ``auth_token`` (the clients' token).
    """

    def __init__(self, slots: list[Any], token: str, options: dict[str, Any]) -> None:
        # By value over gRPC, pickled (not cloudpickled): a request and its reply are small dataclasses.
        self.slots = [
            slot.options(_by_reference=False, request_serialization="pickle", response_serialization="pickle")
            for slot in slots
        ]
        self.token = token
        self.retry_after = int(options.get("retry_after", 5))
        self.allowed_hosts = tuple(options.get("allowed_hosts") or LOOPBACK_HOSTS)
        self.auth_token: str | None = options.get("auth_token")
        self.holder: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.last: list[dict[str, Any] | None] = [None] * len(self.slots)
        self.admit_lock = asyncio.Lock()
        self.next_any = 0
        self.started = time.monotonic()
        self.counts = {"admitted": 0, "refused": 0, "lost": 0}
        self.registry = CollectorRegistry()
        self.admitted = Counter("reactor_serve_sessions_admitted", "sessions admitted", ["slot"],
                                registry=self.registry)  # fmt: skip
        self.refused = Counter("reactor_serve_sessions_refused", "sessions refused: no free replica",
                               registry=self.registry)  # fmt: skip
        self.lost = Counter("reactor_serve_sessions_lost", "sessions whose replica was lost",
                            registry=self.registry)  # fmt: skip
        self.g_replicas = Gauge(
            "reactor_serve_replicas", "replica slots by state", ["state"], registry=self.registry
        )
        self.g_free = Gauge(
            "reactor_serve_replicas_free", "replicas free to admit a session", registry=self.registry
        )
        self.g_holds = Gauge("reactor_serve_replica_session", "1 where a slot holds a session",
                             ["slot", "session_id"], registry=self.registry)  # fmt: skip
        self.g_rss = Gauge("reactor_serve_replica_rss_bytes", "resident memory of each slot's replica",
                           ["slot"], registry=self.registry)  # fmt: skip

    def __serve_build_asgi_app__(self) -> Any:
        routes = [
            Route("/health", self._health),
            Route("/metrics", self._metrics),
            Route("/sessions", self._admit, methods=["POST"]),
            Route("/start_session", self._admit, methods=["POST"]),
            Route("/session", self._unsupported, methods=["GET"]),
            Route("/stop_session", self._unsupported, methods=["POST"]),
            Route("/session/{session_id}/{rest:path}", self._scoped, methods=_METHODS),
            WebSocketRoute("/sessions/{session_id}/ws", self._websocket),
            Route("/sessions/{session_id}/mjpeg", self._mjpeg),
            Route("/sessions/{session_id}", self._session_route, methods=_METHODS),
            Route("/sessions/{session_id}/{rest:path}", self._session_route, methods=_METHODS),
            Route("/{rest:path}", self._any_replica, methods=["GET", "HEAD"]),
        ]
        guard = Middleware(AccessGuard, allowed_hosts=self.allowed_hosts, token=self.auth_token)
        return Starlette(routes=routes, middleware=[guard])

    # -- slots ------------------------------------------------------------------------------------

    async def _status(self, slot: int) -> dict[str, Any] | None:
        try:
            status: dict[str, Any] = await asyncio.wait_for(
                self.slots[slot].status.remote(), _STATUS_TIMEOUT_S
            )
        except Exception as exc:  # the replica is starting, restarting or gone
            _log.debug("slot %d did not answer its status: %s", slot, exc)
            self.last[slot] = None
            return None
        self.last[slot] = status
        return status

    async def _statuses(self) -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(self._status(i) for i in range(len(self.slots)))))

    async def _call(self, slot: int, call: HttpCall) -> HttpReply:
        reply: HttpReply = await asyncio.wait_for(self.slots[slot].request.remote(call), _CALL_TIMEOUT_S)
        return reply

    def _remember(self, sid: str, slot: int) -> None:
        self.holder[sid] = slot
        self.holder.move_to_end(sid)
        while len(self.holder) > _KEEP_SESSIONS:
            self.holder.popitem(last=False)

    async def _locate(self, sid: str) -> int | None:
        """The slot that holds (or held) ``sid``: remembered, else asked (an ingress that restarted)."""
        if sid in self.holder:
            return self.holder[sid]
        for slot, status in enumerate(await self._statuses()):
            if status is not None and (status["session_id"] == sid or sid in status["sessions"]):
                self._remember(sid, slot)
                return slot
        return None

    # -- routes -----------------------------------------------------------------------------------

    async def _admit(self, request: Request) -> Response:
        call = await _http_call(request)
        async with self.admit_lock:
            statuses = await self._statuses()
            free = [i for i, s in enumerate(statuses) if s is not None and _free(s)]
            for slot in free:
                try:
                    reply = await self._call(slot, call)
                except Exception as exc:
                    _log.warning("slot %d failed to admit a session: %s", slot, exc)
                    continue
                if reply.status in (200, 201):
                    sid = json.loads(reply.body)["session_id"]
                    self._remember(sid, slot)
                    self.admitted.labels(str(slot)).inc()
                    self.counts["admitted"] += 1
                    _log.info("session %s admitted to replica slot %d", sid, slot)
                    return _response(reply)
                _log.info("slot %d did not admit a session (%d); trying the next", slot, reply.status)
        self.refused.inc()
        self.counts["refused"] += 1
        busy = sum(1 for s in statuses if s is not None and not _free(s))
        return error_response(
            503, "no_free_replica",
            f"every replica is busy or starting ({busy} of {len(self.slots)} hold a session); retry later",
            retry_after=self.retry_after,
        )  # fmt: skip

    async def _session_route(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        slot = await self._locate(sid)
        if slot is None:
            return error_response(404, "session_not_found", no_session(sid))
        try:
            reply = await self._call(slot, await _http_call(request))
        except Exception as exc:
            return self._replica_lost(sid, slot, exc)
        return _response(reply)

    async def _any_replica(self, request: Request) -> Response:
        call = await _http_call(request)
        for _ in range(len(self.slots)):
            slot = self.next_any = (self.next_any + 1) % len(self.slots)
            with contextlib.suppress(Exception):
                return _response(await self._call(slot, call))
        return error_response(503, "no_replica", "no replica answers yet; retry later", self.retry_after)

    async def _unsupported(self, request: Request) -> Response:
        return error_response(
            404, "no_session",
            "behind the scale-out ingress these routes need the session's own base URL: "
            "/session/{id}/session and /session/{id}/stop_session (a Reactor client's api_url "
            "http://HOST/session/{id}); or DELETE /sessions/{id}",
        )  # fmt: skip

    async def _scoped(self, request: Request) -> Response:
        """The Reactor protocol under a session's own base URL, ``/session/{id}``: a client whose
        ``api_url`` is ``http://HOST/session/{id}`` adopts (``GET /session``), signals and stops
        (``POST /stop_session``) that session at its replica; the root's forms name no session."""
        sid, rest = request.path_params["session_id"], "/" + request.path_params["rest"]
        stop = rest == "/stop_session" and request.method == "POST"
        if rest == "/start_session":
            return error_response(
                409, "busy", f"this base URL names session {sid!r}: start a new one at the root "
                "(POST /start_session)", session_id=sid,
            )  # fmt: skip
        if rest not in ("/session", "/stop_session") and session_of(rest) != sid:
            return error_response(404, "not_found", f"not a route of session {sid!r}: {rest}")
        slot = await self._locate(sid)
        if slot is None:
            return error_response(404, "session_not_found", no_session(sid))
        call = await _http_call(request)
        # Stopping goes by DELETE /sessions/{id}, which the replica refuses for a session not its own.
        call = (
            replace(call, method="DELETE", path=f"/sessions/{sid}", body=b"")
            if stop
            else replace(call, path=rest)
        )
        try:
            reply = await self._call(slot, call)
        except Exception as exc:
            return self._replica_lost(sid, slot, exc)
        if stop:
            return JSONResponse({"stopped": reply.status == 200, "session_id": sid})
        if rest == "/session" and reply.status == 200 and json.loads(reply.body).get("session_id") != sid:
            return error_response(404, "no_session", no_session(sid))  # the replica runs another now
        return _response(reply)

    def _replica_lost(self, sid: str, slot: int, exc: BaseException) -> Response:
        _log.warning("session %s: its replica (slot %d) did not answer: %s", sid, slot, exc)
        self.lost.inc()
        self.counts["lost"] += 1
        return error_response(502, "replica_lost", f"the replica that holds session {sid!r} is gone")

    async def _health(self, request: Request) -> Response:
        statuses = await self._statuses()
        replicas = []
        for slot, status in enumerate(statuses):
            entry: dict[str, Any] = {"slot": slot, "healthy": status is not None and status["state"] not in
                                     ("error", "unhealthy", "closed")}  # fmt: skip
            if status is None:
                entry.update(state="unavailable", session_id=None)
            else:
                entry.update({k: status[k] for k in _SHOWN})
                entry["served"] = status["served"]
            replicas.append(entry)
        healthy = sum(1 for r in replicas if r["healthy"])
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "replicas": replicas,
            "replicas_healthy": healthy,
            "replicas_free": sum(1 for s in statuses if s is not None and _free(s)),
            "sessions": {r["session_id"]: r["slot"] for r in replicas if r.get("session_id")},
            "sessions_admitted": self.counts["admitted"],
            "sessions_refused": self.counts["refused"],
            "sessions_lost": self.counts["lost"],
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def _metrics(self, request: Request) -> Response:
        statuses = await self._statuses()
        self.g_replicas.clear()
        self.g_holds.clear()
        states = collections.Counter(s["state"] if s is not None else "unavailable" for s in statuses)
        for state, count in states.items():
            self.g_replicas.labels(state).set(count)
        self.g_free.set(sum(1 for s in statuses if s is not None and _free(s)))
        self.g_rss.clear()
        for slot, status in enumerate(statuses):
            if status is not None and status["session_id"]:
                self.g_holds.labels(str(slot), status["session_id"]).set(1)
            if status is not None and status.get("rss_bytes") is not None:
                self.g_rss.labels(str(slot)).set(status["rss_bytes"])
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    # -- streams (the replica's own server) ---------------------------------------------------------

    async def _address(self, slot: int) -> str | None:
        status = self.last[slot] or await self._status(slot)
        return None if status is None else str(status["address"])

    async def _websocket(self, websocket: WebSocket) -> None:
        sid = websocket.path_params["session_id"]
        if not same_origin(websocket.headers):
            return await _refuse(websocket, 4403, "forbidden_origin", "cross-origin connections are refused")
        slot = await self._locate(sid)
        address = None if slot is None else await self._address(slot)
        if slot is None or address is None:
            return await _refuse(websocket, 4404, "session_not_found", no_session(sid))
        query = websocket.url.query
        url = f"ws://{address}/sessions/{sid}/ws" + (f"?{query}" if query else "")
        try:
            upstream = await websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {self.token}"}, max_size=None,
                compression=None, open_timeout=10, ping_interval=None,
            )  # fmt: skip
        except Exception as exc:
            self.last[slot] = None
            self._replica_lost(sid, slot, exc)
            return await _refuse(websocket, 4502, "replica_lost", f"the replica of session {sid!r} is gone")
        await websocket.accept()
        if await _pump(websocket, upstream, sid):
            self._replica_lost(sid, slot, ConnectionError("its WebSocket dropped"))
        return None

    async def _mjpeg(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        slot = await self._locate(sid)
        address = None if slot is None else await self._address(slot)
        if slot is None or address is None:
            return error_response(404, "session_not_found", no_session(sid))
        host, _, port = address.rpartition(":")
        try:
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError as exc:
            return self._replica_lost(sid, slot, exc)
        query = f"?{request.url.query}" if request.url.query else ""
        writer.write(
            f"GET /sessions/{sid}/mjpeg{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            f"{self.token}\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"

        async def body() -> Any:
            try:
                while True:
                    if chunked:
                        size = int((await reader.readline()).strip() or b"0", 16)
                        if size == 0:
                            return
                        yield await reader.readexactly(size)
                        await reader.readline()
                    else:
                        data = await reader.read(1 << 16)
                        if not data:
                            return
                        yield data
            except (OSError, asyncio.IncompleteReadError):
                return
            finally:
                writer.close()

        keep = {k: v for k, v in headers.items() if k.lower() not in _HOP}
        return StreamingResponse(body(), status_code=status, headers=keep)


# -- helpers -------------------------------------------------------------------------------------------


def _free(status: dict[str, Any]) -> bool:
    return status["state"] == "ready" and status["session_id"] is None


async def _http_call(request: Request) -> HttpCall:
    headers = tuple(
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in request.scope["headers"]
        if k.decode("latin-1").lower() not in ("authorization", "connection", "transfer-encoding")
    )
    query = request.url.query
    return HttpCall(request.method, request.url.path, query, headers, await request.body())


def _response(reply: HttpReply) -> Response:
    response = Response(reply.body, status_code=reply.status)
    response.raw_headers = [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers if k.lower() != "content-length"
    ] + [(b"content-length", str(len(reply.body)).encode())]
    return response


async def _refuse(websocket: WebSocket, code: int, error: str, message: str) -> None:
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.accept()
        await websocket.send_text(json.dumps({"type": "error", "code": error, "message": message}))
        await websocket.close(code, error)


async def _pump(client: WebSocket, upstream: Any, sid: str) -> bool:
    """Both directions until either side closes; the replica's close (code, reason) goes to the client.
    Whether the replica's side dropped (the replica was lost)."""

    async def down() -> tuple[int, str]:
        try:
            async for message in upstream:
                if isinstance(message, bytes):
                    await client.send_bytes(message)
                else:
                    await client.send_text(message)
        except websockets.ConnectionClosed:
            pass
        code = upstream.close_code
        return (1011, "replica_lost") if code in (None, 1006) else (code, upstream.close_reason or "")

    async def up() -> None:
        with contextlib.suppress(WebSocketDisconnect, websockets.ConnectionClosed, RuntimeError):
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await upstream.send(message["bytes"])
                elif message.get("text") is not None:
                    await upstream.send(message["text"])

    down_task = asyncio.ensure_future(down())
    up_task = asyncio.ensure_future(up())
    done, _ = await asyncio.wait({down_task, up_task}, return_when=asyncio.FIRST_COMPLETED)
    lost = False
    if down_task in done:
        up_task.cancel()
        code, reason = down_task.result()
        lost = reason == "replica_lost"
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            if reason == "replica_lost":
                await client.send_text(json.dumps({
                    "type": "event", "event": "ended", "session_id": sid, "reason": "replica_lost",
                    "error": "replica_lost", "error_id": None, "duration_s": None,
                }))  # fmt: skip
            await client.close(code, reason[:120])
    else:
        down_task.cancel()
    with contextlib.suppress(Exception):
        await upstream.close()
    return lost
