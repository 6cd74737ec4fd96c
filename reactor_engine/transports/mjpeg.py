"""The MJPEG transport: ``multipart/x-mixed-replace``, one JPEG per part (``<img src>``, curl, ffplay).

A thin adapter over the hub: a response is one ``BufferedClient`` that wants ``jpeg`` packets and no
messages. Each JPEG is copied once for all the MJPEG clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from reactor_engine.transports.hub import HubError
from reactor_engine.transports.web import (
    NO_CACHE,
    BufferedClient,
    PerPacket,
    error_response,
    hub_error_response,
    no_session,
)

if TYPE_CHECKING:
    from reactor_engine.transports.hub import LiveSession, SessionHub

__all__ = ["MjpegTransport"]

_BOUNDARY = "reactorframe"
_PART = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {{}}\r\n\r\n"
_DISCONNECT_POLL_S = 1.0  # how often a response with no new frame checks that its client is still there


class MjpegTransport:
    """``/sessions/{id}/mjpeg`` over a hub; refused with ``codec_mismatch`` unless the engine encodes JPEG."""

    def __init__(self, hub: SessionHub, *, client_frames: int) -> None:
        self.hub = hub
        self.client_frames = client_frames
        self._jpeg = PerPacket(lambda packet: packet.tobytes())

    def routes(self) -> list[BaseRoute]:
        return [Route("/sessions/{session_id}/mjpeg", self._mjpeg)]

    async def _mjpeg(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        live = self.hub.live(sid)
        if live is None:
            return error_response(404, "session_not_found", no_session(sid))
        client = BufferedClient(
            self.hub, live, "mjpeg", "jpeg", frames=self.client_frames, frame_of=self._jpeg
        )
        try:
            self.hub.attach(live, client)
        except HubError as exc:
            return hub_error_response(exc)
        return StreamingResponse(
            self._parts(live, client, request),
            media_type=f"multipart/x-mixed-replace; boundary={_BOUNDARY}",
            headers=NO_CACHE,
        )

    async def _parts(self, live: LiveSession, client: BufferedClient, request: Request) -> AsyncIterator[Any]:
        try:
            while client.close_code is None:
                try:
                    await asyncio.wait_for(client.wake.wait(), _DISCONNECT_POLL_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                client.wake.clear()
                while client.frames:
                    jpeg = client.frames.popleft()
                    yield _PART.format(len(jpeg)).encode()
                    yield jpeg
                    yield b"\r\n"
                    client.frames_sent += 1
        finally:
            self.hub.detach(live, client)
