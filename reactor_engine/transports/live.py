"""What a session hub is made of: its options, the client interface, and the record of a live session.

Every object here lives on the asyncio loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client.metrics import Counter, Histogram

    from reactor_engine import _C
    from reactor_engine.engine import Engine
    from reactor_engine.session import Session
    from reactor_engine.transports.audio import AudioFanOut
    from reactor_engine.transports.inbound import TrackTable
    from reactor_engine.transports.metrics import HubMetrics

__all__ = [
    "CodecOutput",
    "HubClient",
    "HubOptions",
    "LiveSession",
    "duration_s",
    "end_of",
    "load_error_kind",
    "state_message",
]

_log = logging.getLogger("reactor_engine.hub")


@dataclass(frozen=True, kw_only=True)
class HubOptions:
    """Limits and timeouts of a hub.

    ``orphan_timeout``: seconds a session is kept with no client connected (``None``: the engine
    config's ``orphan_timeout``; ``0``: kept until stopped). ``max_clients``: clients per session, of
    every transport together. ``command_timeout``: seconds a command may wait for the model to reach
    a poll point. ``kept_sessions``: ended sessions whose stats stay available.
    """

    orphan_timeout: float | None = None
    max_clients: int = 8
    command_timeout: float = 10.0
    kept_sessions: int = 8

    def __post_init__(self) -> None:
        self._check_at_least_one("max_clients", "kept_sessions")
        name = type(self).__name__
        if self.orphan_timeout is not None and not self.orphan_timeout >= 0:
            raise ValueError(f"{name}.orphan_timeout must be >= 0 s or None; got {self.orphan_timeout}")
        if not self.command_timeout > 0:
            raise ValueError(f"{name}.command_timeout must be > 0 s; got {self.command_timeout}")

    def _check_at_least_one(self, *names: str) -> None:
        for field in names:
            if getattr(self, field) < 1:
                raise ValueError(f"{type(self).__name__}.{field} must be >= 1; got {getattr(self, field)}")


class HubClient(Protocol):
    """One connected consumer of a session, of any transport. Every call comes on the loop thread."""

    kind: str  # "ws" | "mjpeg" | "webrtc": the label of its metrics
    codec: str  # the packets it wants, e.g. "jpeg" or "vp8"

    def on_packet(self, packet: _C.Packet) -> None:
        """A packet of ``codec``; valid only during the call (copy what must outlive it)."""

    def on_message(self, message: dict[str, Any]) -> None:
        """A model message (``ctx.send``) or a session event (``{"type": "event", ...}``)."""

    def close(self, code: int, reason: str) -> None:
        """The session ended or the server shuts down; the transport ends the connection and detaches."""


class CodecOutput:
    """One codec's encoder output in a live session: its packet queue, reader and wanting clients."""

    def __init__(self, codec: str, queue: _C.PacketQueue, metrics: HubMetrics) -> None:
        self.codec = codec
        self.queue = queue
        # Replaced, never mutated, so a fan-out iterates a snapshot while clients come and go.
        self.clients: tuple[HubClient, ...] = ()
        self.reading = False
        self.enabled = False  # an extra output the hub has switched on (the primary is always on)
        self.frames_sent = 0
        self.sent: Counter = metrics.frames_sent.labels(codec)
        self.latency: Histogram = metrics.frame_latency.labels(codec)


class LiveSession:
    """The hub's side of the running session: its clients, codec outputs, message task and timers, the
    model's tracks (``tracks``: by index and name, with the input tracks) and its audio out."""

    def __init__(self, session: Session, primary: str, tracks: TrackTable) -> None:
        self.session = session
        self.primary = primary
        self.tracks = tracks
        self.audio: AudioFanOut | None = None
        self.outputs: dict[str, CodecOutput] = {}
        self.clients: tuple[HubClient, ...] = ()  # replaced, never mutated, like CodecOutput.clients
        self.orphan_timer: asyncio.TimerHandle | None = None
        self.message_task: asyncio.Task[None] | None = None
        self.stopping: asyncio.Task[None] | None = None
        self.finished = False
        self.client_frames_dropped = 0
        self.last_frame_index = -1
        # The commands' current values the model last reported ({COMMAND: {PARAMETER: value}}).
        self.command_state: dict[str, dict[str, Any]] | None = None
        self._error_id: str | None = None

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def public_error(self) -> tuple[str | None, str | None]:
        """``(kind, error_id)`` of the model's crash, what clients are told (``(None, None)`` if none).

        The exception's text may hold anything the model had at hand, so it stays in the server log,
        written once under the error id that clients see.
        """
        text = self.session.error
        if text is None:
            return None, None
        if self._error_id is None:
            self._error_id = uuid.uuid4().hex[:12]
            _log.error(
                "session %s failed [error %s]: %s", self.session_id, self._error_id, text,
                extra={"session_id": self.session_id},
            )  # fmt: skip
        where, _, rest = text.partition(": ")
        kind = f"{rest.partition(':')[0]} in {where}" if where == "on_session_end" else where
        return kind, self._error_id

    def next_packet(self, codec: str) -> _C.Packet | None:
        """The codec's next packet if ready (else ``ReactorTimeoutError``); ``None`` after the end."""
        return self.session.next_packet(0.0, codec=codec)


def state_message(live: LiveSession, values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The message that tells a client the commands' current values."""
    return {"type": "state", "session_id": live.session_id, "data": values}


def duration_s(session: Session) -> float:
    """How long an ended session ran, in s."""
    return round((session.ended_ns - session.started_ns) / 1e9, 3) if session.ended_ns else 0.0


def end_of(stats: dict[str, Any]) -> dict[str, Any]:
    """How a session ended, from its stats (``SessionHub.ended``): what a client that comes late is told.

    ``{"session_id", "reason", "error" (the crash's kind, or None), "error_id" (its text is in the
    server log under this id), "duration_s" (how long it ran), "frames"}``.
    """
    duration = stats.get("duration_s")
    return {
        "session_id": stats.get("session_id"),
        "reason": stats.get("end_reason"),
        "error": stats.get("error"),
        "error_id": stats.get("error_id"),
        "duration_s": None if duration is None else round(duration, 3),
        "frames": stats.get("frames"),
    }


def load_error_kind(engine: Engine) -> str:
    """The kind of the exception the model's ``__init__`` raised (its text stays in the server log)."""
    return (engine.error or "an error").split(":", 1)[0]
