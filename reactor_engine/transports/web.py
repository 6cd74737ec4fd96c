"""What the web transports share: JSON error responses, the same-origin rule, buffered clients.

Every piece runs on the asyncio loop thread.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from reactor_engine.runtimes.protocol import error_body

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.transports.hub import HubError, LiveSession, SessionHub

__all__ = [
    "NO_CACHE",
    "BufferedClient",
    "PerPacket",
    "TransportRoutes",
    "cross_origin",
    "error_response",
    "hub_error_response",
    "no_session",
    "same_origin",
]

TransportRoutes = Callable[["SessionHub"], Sequence[BaseRoute]]
"""A transport's routes, made from the hub the app serves (``HttpApp(..., transports=[...])``)."""

NO_CACHE = {"Cache-Control": "no-cache, no-store"}


def error_response(
    status: int, code: str, message: str, retry_after: int | None = None, **detail: Any
) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_body(code, message, **detail), status_code=status, headers=headers)


def hub_error_response(error: HubError) -> JSONResponse:
    return error_response(error.status, error.code, str(error), error.retry_after, **error.detail)


def no_session(sid: str) -> str:
    return f"no session {sid!r}: it has ended or never existed (start one with POST /sessions)"


def same_origin(headers: Any) -> bool:
    """A browser's ``Origin`` must name this server (no other web page may drive it); tools send none."""
    origin = headers.get("origin")
    if not origin:
        return True
    host = headers.get("host", "")
    return bool(urlsplit(origin).netloc == host)


def cross_origin(request: Request) -> Response | None:
    """The 403 answer to a request from another site's page, or ``None`` to go on."""
    if same_origin(request.headers):
        return None
    return error_response(403, "forbidden_origin", "cross-origin requests are refused")


class PerPacket:
    """Builds one message per packet for all the clients of a transport: the hub hands the same packet
    to each client in turn, so the first builds the message (the one copy) and the others reuse it."""

    def __init__(self, build: Callable[[_C.Packet], bytes]) -> None:
        self._build = build
        self._key: tuple[str, int, int] | None = None
        self._message = b""

    def __call__(self, packet: _C.Packet) -> bytes:
        key = (packet.codec, packet.frame_index, packet.t_publish_ns)
        if key != self._key:
            self._message = self._build(packet)
            self._key = key
        return self._message


class BufferedClient:
    """A hub client drained by a sender coroutine of its transport.

    Frames go into a latest-wins buffer (a slow client misses frames, counted by the hub); text
    messages (model messages, events) into a bounded queue, or nowhere when ``text_of`` is ``None``.
    ``close`` asks the sender to finish after what is queued.
    """

    def __init__(
        self,
        hub: SessionHub,
        live: LiveSession,
        kind: str,
        codec: str,
        *,
        frames: int,
        frame_of: Callable[[_C.Packet], bytes],
        messages: int = 1,
        text_of: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.kind = kind
        self.codec = codec
        self._hub = hub
        self._live = live
        self._frame_of = frame_of
        self._text_of = text_of
        self.frames: collections.deque[bytes] = collections.deque(maxlen=frames)
        self.texts: collections.deque[str] = collections.deque(maxlen=messages)
        self.wake = asyncio.Event()
        self.frames_sent = 0
        self.frames_dropped = 0
        self.messages_dropped = 0
        self.close_code: int | None = None
        self.close_reason = ""

    def on_packet(self, packet: _C.Packet) -> None:
        if len(self.frames) == self.frames.maxlen:
            self.frames_dropped += 1
            self._hub.frame_dropped(self._live, self)
        self.frames.append(self._frame_of(packet))
        self.wake.set()

    def on_message(self, message: dict[str, Any]) -> None:
        if self._text_of is None:
            return
        if len(self.texts) == self.texts.maxlen:
            self.messages_dropped += 1
        self.texts.append(self._text_of(message))
        self.wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.wake.set()
