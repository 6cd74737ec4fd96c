"""The transports that stream a session to clients, each a thin adapter over one ``SessionHub``.

| module | holds |
|---|---|
| ``hub`` | ``SessionHub``: session lifecycle, client registry and limits, fan-out, orphan timer, commands |
| ``live`` | ``HubOptions``, the ``HubClient`` interface, ``LiveSession`` (the hub's record of a session) |
| ``errors`` | ``HubError`` and its kinds, each with its wire code and HTTP status |
| ``metrics`` | the hub's Prometheus metrics (by transport kind and codec), engine and GPU state |
| ``ws`` | WebSocket: binary frame messages, JSON commands and replies (``docs/protocol.md``) |
| ``mjpeg`` | ``multipart/x-mixed-replace`` JPEG parts |
| ``webrtc`` | the Reactor local protocol (mounted when present) |
| ``web`` | what the web transports share: error responses, the same-origin rule, buffered clients |
| ``app`` | the Starlette app: the shared routes plus every transport's, over one hub |
"""

from __future__ import annotations

from reactor_engine.transports.hub import (
    CodecUnavailable,
    CommandRejected,
    CommandTimeout,
    EngineNotReady,
    HubClient,
    HubError,
    HubOptions,
    LiveSession,
    SessionBusy,
    SessionHub,
    SessionNotFound,
    ShuttingDown,
    TooManyClients,
)

__all__ = [
    "CodecUnavailable",
    "CommandRejected",
    "CommandTimeout",
    "EngineNotReady",
    "HubClient",
    "HubError",
    "HubOptions",
    "LiveSession",
    "SessionBusy",
    "SessionHub",
    "SessionNotFound",
    "ShuttingDown",
    "TooManyClients",
]
