"""Signaling state of the Reactor local protocol: a session's connections, their offers and answers.

A connection id is minted by ``POST …/connections`` (1002-9999; 1001 is the flat routes' legacy
connection). Its offer (``POST``/``PUT …/sdp_params``) is negotiated in the background while the
client polls ``GET …/sdp_params`` (202, then 200 with the answer, which carries the server's
candidates). Candidates the client trickles before the offer, or before the offer is applied, are
buffered and applied right after it. A ``PUT`` is a re-offer (a reconnect): the old peer goes and a
new one answers on the same id. Everything runs on the asyncio loop thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import reactor_webrtc as rtc

from reactor_engine.transports.hub import HubError
from reactor_engine.transports.webrtc.media import SessionMedia
from reactor_engine.transports.webrtc.peer import NegotiationError, Peer
from reactor_engine.transports.webrtc.sdp import TrackMapping, check_offer

if TYPE_CHECKING:
    from reactor_engine.transports.hub import LiveSession, SessionHub
    from reactor_engine.transports.webrtc.options import WebRtcOptions

__all__ = ["LEGACY_CONNECTION_ID", "Connection", "SessionPeers", "SignalingError"]

_log = logging.getLogger("reactor_engine.webrtc")

LEGACY_CONNECTION_ID = 1001  # the flat routes of js-sdk 2.9 (no connection id in their paths)
_FIRST_ID, _LAST_ID = 1002, 9999


class SignalingError(HubError):
    """A signaling request refused; ``status`` (400 malformed, 404 unknown, 429 too many) and ``code``."""

    def __init__(self, message: str, *, code: str, status: int = 400) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True)
class _Failure:
    status: int
    code: str
    message: str


class Connection:
    """One connection id: its current peer, the candidates waiting for an offer, the answer or failure."""

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.peer: Peer | None = None
        self.pending: list[rtc.IceCandidate] = []
        self.candidates_dropped = 0
        self.answer: str | None = None
        self.failure: _Failure | None = None
        self.task: asyncio.Task[None] | None = None
        self.offers = 0

    @property
    def closed(self) -> bool:
        return self.peer is not None and self.peer.closed


class _Controls:
    """The encoder controls of one live session, through the hub (``SessionMedia``'s ``MediaHub``)."""

    def __init__(self, hub: SessionHub, live: LiveSession) -> None:
        self._hub, self._live = hub, live

    def request_keyframe(self) -> None:
        self._hub.request_keyframe(self._live)

    def set_bitrate(self, bps: int) -> None:
        self._hub.set_bitrate(self._live, bps)


class SessionPeers:
    """The WebRTC side of one live session: its connections by id and the media they share."""

    def __init__(self, hub: SessionHub, live: LiveSession, options: WebRtcOptions) -> None:
        self.hub = hub
        self.live = live
        self.options = options
        config = hub.engine.config
        bitrate = int(getattr(config, "bitrate", 2_000_000))
        self.media = SessionMedia(_Controls(hub, live), bitrate, options.min_bitrate)
        self.width, self.height = int(config.width), int(config.height)
        self.video_track = _default_track(hub)
        self.connections: collections.OrderedDict[int, Connection] = collections.OrderedDict()
        self._next_id = _FIRST_ID
        self.closed = False

    # -- connections -----------------------------------------------------------------------------------

    def register(self) -> Connection:
        """A new connection id (``POST …/connections``)."""
        self._prune()
        for _ in range(_LAST_ID - _FIRST_ID + 1):
            cid = self._next_id
            self._next_id = _FIRST_ID if cid >= _LAST_ID else cid + 1
            if cid not in self.connections:
                connection = Connection(cid)
                self.connections[cid] = connection
                return connection
        raise SignalingError("no connection id is free", code="too_many_connections")

    def get(self, cid: int, *, legacy: bool = False) -> Connection:
        """The connection ``cid``; the legacy one (1001) is made on first use. ``SignalingError`` 404."""
        connection = self.connections.get(cid)
        if connection is None and legacy and cid == LEGACY_CONNECTION_ID:
            self._prune()
            connection = self.connections[cid] = Connection(cid)
        if connection is None:
            known = ", ".join(str(c) for c in self.connections) or "none"
            raise SignalingError(
                f"no connection {cid} in session {self.live.session_id} (known: {known}); "
                "register one with POST …/connections",
                code="connection_not_found",
                status=404,
            )
        return connection

    def open_peers(self) -> list[Peer]:
        return [c.peer for c in self.connections.values() if c.peer is not None and not c.peer.closed]

    # -- offers and candidates -------------------------------------------------------------------------

    def offer(self, connection: Connection, sdp: Any, mapping: Sequence[TrackMapping]) -> None:
        """Start negotiating ``sdp`` on ``connection`` (a re-offer replaces its peer). Raises
        ``SignalingError`` (400 malformed, 429 too many peers) or the hub's ``HubError``."""
        if self.closed:
            raise SignalingError(
                f"session {self.live.session_id} has ended", code="session_not_found", status=404
            )
        problem = check_offer(sdp)
        if problem is not None:
            raise SignalingError(problem, code="bad_offer")
        old = connection.peer
        others = [peer for peer in self.open_peers() if peer is not old]
        if len(others) >= self.options.max_peers:
            raise SignalingError(
                f"session {self.live.session_id} has {len(others)} peer connections, the most it takes "
                f"(max_peers={self.options.max_peers})",
                code="too_many_peers",
                status=429,
            )
        if old is not None:
            old.drop("replaced by a new offer (reconnect)")
        if connection.task is not None:
            connection.task.cancel()
        peer = Peer(
            connection.cid,
            self.hub,
            self.live,
            self.media,
            self.options,
            video_track=self.video_track,
            width=self.width,
            height=self.height,
            on_closed=self._peer_closed,
        )
        try:
            self.hub.attach(self.live, peer)
        except HubError:
            peer.drop("refused by the session hub")
            raise
        connection.peer = peer
        connection.answer = None
        connection.failure = None
        connection.offers += 1
        connection.task = asyncio.get_running_loop().create_task(
            self._negotiate(connection, peer, sdp, mapping)
        )

    async def _negotiate(
        self, connection: Connection, peer: Peer, sdp: str, mapping: Sequence[TrackMapping]
    ) -> None:
        try:
            answer = await peer.negotiate(sdp, mapping, connection.pending)
        except NegotiationError as exc:
            if connection.peer is peer:
                closed = peer.closed
                connection.failure = _Failure(
                    410 if closed else 400, "connection_closed" if closed else "bad_offer", str(exc)
                )
            peer.drop(str(exc))
            return
        except asyncio.CancelledError:
            peer.drop("negotiation cancelled")
            raise
        except Exception as exc:
            _log.exception("peer %d: negotiation failed", peer.cid)
            if connection.peer is peer:
                connection.failure = _Failure(500, "internal_error", f"negotiation failed: {exc}")
            peer.drop("negotiation failed")
            return
        if connection.peer is peer and not peer.closed:
            connection.answer = answer

    async def add_candidates(self, connection: Connection, candidates: Sequence[rtc.IceCandidate]) -> None:
        """Trickled candidates: applied now if the offer is applied, else kept for it (bounded)."""
        peer = connection.peer
        for candidate in candidates:
            if peer is not None and not peer.closed and peer.remote_description_set:
                await peer.add_candidate(candidate)
            elif len(connection.pending) < self.options.candidate_buffer:
                connection.pending.append(candidate)
            else:
                connection.candidates_dropped += 1

    def answer_status(self, connection: Connection) -> tuple[int, dict[str, Any]]:
        """What ``GET …/sdp_params`` answers: 200 + answer, 202 while negotiating, or the failure."""
        cid = connection.cid
        peer = connection.peer
        if connection.failure is not None:
            failure = connection.failure
            return failure.status, _error(failure.code, failure.message)
        if peer is None:
            return 404, _error(
                "no_offer", f"connection {cid} has no offer yet; send it with POST …/sdp_params"
            )
        if peer.closed:
            return 410, _error("connection_closed", f"connection {cid} closed: {peer.close_reason}")
        if connection.answer is None:
            return 202, {"connection_id": cid}
        return 200, {"sdp_answer": connection.answer, "connection_id": cid}

    # -- lifecycle -------------------------------------------------------------------------------------

    def _peer_closed(self, peer: Peer, reason: str) -> None:
        for connection in self.connections.values():
            if connection.peer is peer:
                connection.pending.clear()

    def _prune(self) -> None:
        """Forget the oldest closed connections beyond ``connections_kept``."""
        closed = [cid for cid, c in self.connections.items() if c.closed]
        while len(self.connections) >= self.options.connections_kept and closed:
            del self.connections[closed.pop(0)]

    def close(self) -> None:
        """The session ended: no further offers. Its peers are the hub's clients: the hub closes them
        next (each tells its client the session ended)."""
        self.closed = True
        for connection in self.connections.values():
            if connection.task is not None and not connection.task.done():
                connection.task.cancel()

    async def stats(self) -> dict[str, Any]:
        """The connections, their peers (with libwebrtc's transport stats) and the shared media."""
        transport = {}
        for peer in self.open_peers():
            try:
                transport[peer.cid] = await peer.transport_stats()
            except Exception as exc:  # a peer closing meanwhile
                transport[peer.cid] = {"error": str(exc)}
        return {
            "peers": len(self.open_peers()),
            "connections": [
                {
                    "connection_id": c.cid,
                    "offers": c.offers,
                    "candidates_pending": len(c.pending),
                    "candidates_dropped": c.candidates_dropped,
                    **({"peer": c.peer.stats()} if c.peer is not None else {}),
                    **({"transport": transport[c.cid]} if c.cid in transport else {}),
                }
                for c in self.connections.values()
            ],
            "media": self.media.stats(),
        }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _default_track(hub: SessionHub) -> str:
    """The name of the track whose packets the hub fans out (the model's default output)."""
    return hub.engine.spec.default_track
