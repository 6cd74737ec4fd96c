"""The WebRTC transport: the Reactor local protocol for the published Reactor clients.

``webrtc_routes(hub, options)`` gives the Starlette routes the http app mounts (sessions, signaling);
media is the session's VP8, encoded once and sent pre-encoded through reactor-webrtc to every peer.
"""

from reactor_engine.transports.webrtc.options import IceServer, WebRtcOptions
from reactor_engine.transports.webrtc.routes import WebRtcTransport, webrtc_routes

__all__ = ["IceServer", "WebRtcOptions", "WebRtcTransport", "webrtc_routes"]
