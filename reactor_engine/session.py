"""``Session``: one user's run of ``start_session()``, as the host sees it.

Threads: the session thread runs the model (``_run``); a watcher thread enforces the maximum duration
and the stop grace period; every public method is safe to call from any host thread (a web loop, a
test). Packets of a track are popped under that track's consumer lock, and only by the session that
owns the track now, so a slow reader of an old session never receives a frame of the next one.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Literal

from reactor_engine.context import SessionContext
from reactor_engine.errors import (
    ClosedError,
    EncodeError,
    InvalidArgumentError,
    ReactorTimeoutError,
)
from reactor_engine.inputs import MediaPoller
from reactor_engine.pacing import LatencyWindow
from reactor_engine.session_media import SessionMedia

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.audio import AudioOutputTrack
    from reactor_engine.engine import Engine
    from reactor_engine.inputs import InputTrack
    from reactor_engine.tracks import VideoTrack

__all__ = ["Session", "SessionState"]

_log = logging.getLogger("reactor_engine.session")

SessionState = Literal["starting", "streaming", "stopping", "ended", "error", "unhealthy"]

_COUNTERS = (
    "frames_committed",
    "frames_encoded",
    "frames_dropped_oldest",
    "frames_dropped_newest",
    "frames_aborted",
    "frames_discarded",
    "block_timeouts",
    "encode_errors",
)
_POP_SLICE_S = 0.05  # a packet reader re-checks the session's end this often while none arrives


class _TrackStats:
    """What one session measured on one track (packets as the host received them)."""

    def __init__(self) -> None:
        self.encode = LatencyWindow()
        self.commit_to_packet = LatencyWindow()
        self.packets = 0
        self.first_packet_ns = 0
        self.counters_at_start: dict[str, int] = {}
        self.counters_at_end: dict[str, int] | None = None


class Session(SessionMedia):
    """One session: ``send_command``, ``packets``, ``messages``, ``stop``, ``stats``; and media in and
    audio out (``push_frame``, ``push_encoded``, ``push_audio``, ``next_audio``: ``session_media.py``).

    Made by ``Engine.session()``; a context manager whose exit stops it.
    """

    def __init__(
        self,
        engine: Engine,
        session_id: str,
        *,
        model: Any,
        tracks: Mapping[str, VideoTrack],
        default_track: str,
        message_capacity: int,
        stop_grace: float,
        max_duration: float,
        inputs: Mapping[str, InputTrack] | None = None,
        audio_outputs: Mapping[str, AudioOutputTrack] | None = None,
    ) -> None:
        self.session_id = session_id
        self._engine = engine
        self._model = model
        self._tracks = tracks
        self._inputs = dict(inputs or {})
        self._audio_outputs = dict(audio_outputs or {})
        self._media_at_start = {}
        self._media_at_end = None
        self._default_track = default_track
        self._stop_grace = stop_grace
        self._max_duration = max_duration
        self._messages: collections.deque[dict[str, Any]] = collections.deque()
        self._message_capacity = message_capacity
        self._messages_dropped = 0
        self._message_cv = threading.Condition()
        self._ended = threading.Event()
        self._state: SessionState = "starting"
        self._state_lock = threading.Lock()
        self._escalation_lock = threading.Lock()
        self.end_reason: str | None = None
        self.error: str | None = None
        self.started_ns = time.monotonic_ns()
        self.ended_ns = 0
        self._track_stats = {name: _TrackStats() for name in tracks}
        deadline = self.started_ns + int(max_duration * 1e9) if max_duration > 0 else None
        self.context = SessionContext(
            session_id,
            model=model,
            tracks=tracks,
            default_track=default_track,
            commands=engine.spec.commands,
            post_message=self._post,
            deadline_ns=deadline,
            media={**self._inputs, **self._audio_outputs},
            poller=MediaPoller(self._inputs, model) if self._inputs else None,
        )
        self._thread = threading.Thread(
            target=self._run, name=f"reactor-session-{session_id[:8]}", daemon=True
        )
        self._watcher = threading.Thread(
            target=self._watch, name=f"reactor-session-watch-{session_id[:8]}", daemon=True
        )

    # -- state -----------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """``starting, streaming, stopping``, then ``ended`` or ``error`` (crash), or ``unhealthy`` (hung)."""
        return self._state

    def _transition(self, sources: tuple[SessionState, ...], target: SessionState) -> bool:
        """Move to ``target`` if the state is one of ``sources``; the caller's thread may be any."""
        with self._state_lock:
            if self._state not in sources:
                return False
            self._state = target
            return True

    def _join(self, timeout: float) -> None:
        """Join the session and watcher threads once the session has ended (``Engine.close``)."""
        if self._ended.is_set():
            for thread in (self._thread, self._watcher):
                if thread.is_alive() and thread is not threading.current_thread():
                    thread.join(timeout)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until ``start_session`` has returned; True if it has."""
        return self._ended.wait(timeout)

    # -- commands --------------------------------------------------------------------------------

    def submit_command(self, name: str, data: Mapping[str, Any] | None = None) -> Future[Any]:
        """Validate now (``CommandError`` at once for an unknown name or bad arguments) and queue.

        The future resolves with the handler's return value once the model reaches a poll point, or
        with a ``CommandError`` if the handler failed or the session ended first.
        """
        return self.context.commands.submit(name, data)

    def send_command(
        self, name: str, data: Mapping[str, Any] | None = None, timeout: float | None = 10.0
    ) -> Any:
        """Send a command and wait for the handler's return value; ``CommandError`` with the detail."""
        reply = self.submit_command(name, data)
        try:
            return reply.result(timeout)
        except FutureTimeout:
            reply.cancel()
            raise ReactorTimeoutError(
                f"command {name!r} was not applied within {timeout} s: the model has not reached a poll "
                f"point (should_stop(), emit, ctx.wait())"
            ) from None

    # -- packets ---------------------------------------------------------------------------------

    def packet_queue(self, track: str | None = None, codec: str | None = None) -> _C.PacketQueue:
        """A track output's native queue (``codec=None``: the primary), for ``fileno()`` (asyncio
        ``add_reader``); pop via ``next_packet``."""
        return self._track(track).queue(codec)

    def next_packet(
        self, timeout: float | None = None, track: str | None = None, codec: str | None = None
    ) -> _C.Packet | None:
        """The next encoded frame of this session, or ``None`` once it has ended and every frame is out.

        ``codec`` picks one of the track's outputs (``None``: the primary; an extra one must be enabled
        with ``set_output_enabled``). Raises ``ReactorTimeoutError`` if none arrives within ``timeout``
        s while the session runs. Release each packet (``with packet:``) to return its buffer to the pool.
        """
        name = self._default_track if track is None else track
        video = self._track(name)
        queue = video.queue(codec)
        stats = self._track_stats[name]
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with video.consumer_lock:
                if video.owner is not self:
                    return None
                wait = _POP_SLICE_S if end is None else max(0.0, min(_POP_SLICE_S, end - time.monotonic()))
                try:
                    packet = queue.pop(wait)
                except ReactorTimeoutError:
                    packet = None
                except ClosedError:
                    return None
                if packet is not None:
                    self._record(stats, packet)
                    return packet
                if self._ended.is_set() and self._all_out(video, queue):
                    return None
            if end is not None and time.monotonic() >= end:
                raise ReactorTimeoutError(f"no packet from track '{name}' within {timeout} s")

    def packets(
        self, timeout: float | None = None, track: str | None = None, codec: str | None = None
    ) -> Iterator[_C.Packet]:
        """Encoded frames as they come; ends when the session has ended and its last frame is out."""
        while True:
            packet = self.next_packet(timeout, track, codec)
            if packet is None:
                return
            yield packet

    def _all_out(self, video: VideoTrack, queue: _C.PacketQueue) -> bool:
        try:
            video.encoder.flush(0.0)
        except ReactorTimeoutError:
            return False
        except EncodeError:
            return True
        return queue.size == 0

    # -- encoder controls (any thread; the encoder applies them from its next frame) -------------

    @property
    def codecs(self) -> list[str]:
        """The default track's outputs, the primary first (engine settings ``codec``, ``extra_codecs``)."""
        return list(self._track(None).codecs)

    def set_output_enabled(self, codec: str, enabled: bool, track: str | None = None) -> None:
        """Run (or stop running) one output's codec; an output enabled again starts with a key frame."""
        video = self._track(track)
        video.queue(codec)  # an unknown output is named in the error
        video.encoder.set_output_enabled(codec, enabled)

    def request_keyframe(self, track: str | None = None) -> None:
        """Make the track's next VP8 frame a key frame (a new viewer can start decoding there)."""
        self._track(track).encoder.request_keyframe()

    def set_bitrate(self, bps: int, track: str | None = None) -> None:
        """Set the track's VP8 target bitrate (bits/s, 10 kbit/s to 1 Gbit/s) from its next frame on."""
        self._track(track).encoder.set_bitrate(bps)

    def _record(self, stats: _TrackStats, packet: _C.Packet) -> None:
        stats.packets += 1
        if stats.first_packet_ns == 0:
            stats.first_packet_ns = packet.t_publish_ns
        stats.encode.record(packet.t_encode_end_ns - packet.t_encode_start_ns)
        stats.commit_to_packet.record(packet.t_publish_ns - packet.t_commit_ns)

    def _track(self, name: str | None) -> VideoTrack:
        key = self._default_track if name is None else name
        video = self._tracks.get(key)
        if video is None:
            raise InvalidArgumentError(f"no track named {name!r}; the tracks are: {', '.join(self._tracks)}")
        return video

    # -- messages --------------------------------------------------------------------------------

    def _post(self, message: dict[str, Any]) -> None:
        with self._message_cv:
            if len(self._messages) >= self._message_capacity:
                self._messages.popleft()
                self._messages_dropped += 1
            self._messages.append(message)
            self._message_cv.notify_all()

    def _event(self, event: str, **detail: Any) -> None:
        self._post({"type": "event", "event": event, "session_id": self.session_id, **detail})

    def next_message(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message (model ``send`` or session event), or ``None`` on timeout / after the end."""
        with self._message_cv:
            ready = self._message_cv.wait_for(lambda: self._messages or self._ended.is_set(), timeout)
            return self._messages.popleft() if ready and self._messages else None

    def messages(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Messages in order: ``{"type": "message", "data": ...}`` from ``ctx.send`` and
        ``{"type": "event", "event": "started" | "ended" | "unhealthy", ...}``. Ends after the session's
        last message, or when none arrives within ``timeout`` s (``timeout=0`` drains what is queued)."""
        while True:
            message = self.next_message(timeout)
            if message is None:
                return
            yield message

    # -- stop ------------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped", timeout: float | None = None) -> SessionState:
        """Ask the model to stop and wait up to ``timeout`` s (default: the engine's ``stop_grace``).

        Never hangs: a model that ignores ``should_stop()`` past the grace period leaves the session
        and the engine ``unhealthy`` (with the reason) and this returns.
        """
        if not self._ended.is_set():
            self.context.request_stop(reason)
            if self._transition(("starting", "streaming"), "stopping"):
                self._engine._session_stopping(self)
        grace = self._stop_grace if timeout is None else timeout
        if not self._ended.wait(grace) and timeout is None:
            self._escalate()
        return self._state

    def _escalate(self) -> None:
        # stop() and the watcher may both escalate; the lock makes the loser wait until the winner
        # has also marked the engine unhealthy, so stop() never returns halfway through.
        with self._escalation_lock:
            live: tuple[SessionState, ...] = ("starting", "streaming", "stopping")
            if self._ended.is_set() or not self._transition(live, "unhealthy"):
                return
            why = (
                f"session {self.session_id}: start_session() did not return within {self._stop_grace} s of "
                f"the stop ({self.context.stop_reason}); it ignores should_stop() and its thread still runs"
            )
            _log.error("%s", why)
            self._event("unhealthy", reason=why)
            self._engine._session_unhealthy(self, why)

    def _watch(self) -> None:
        """Watcher thread: end the session at its maximum duration; escalate a stop that is ignored."""
        self.context.stopped.wait(self._max_duration if self._max_duration > 0 else None)
        if self._ended.is_set():
            return
        if not self.context.stopped.is_set():
            self.context.request_stop("max_duration")
            if self._transition(("starting", "streaming"), "stopping"):
                self._engine._session_stopping(self)
        if not self._ended.wait(self._stop_grace):
            self._escalate()

    # -- the session thread ----------------------------------------------------------------------

    def _start(self) -> None:
        for name, video in self._tracks.items():
            self._track_stats[name].counters_at_start = _counters(video)
        self._media_at_start = self._media_snapshot()
        self._thread.start()
        self._watcher.start()

    def _run(self) -> None:
        ctx = self.context
        ctx.activate()
        self._transition(("starting",), "streaming")
        self._engine._session_streaming(self)
        self._event("started")
        error: str | None = None
        try:
            self._model.start_session()
        except BaseException as exc:  # a crash ends this session only; the engine stays up
            error = f"{type(exc).__name__}: {exc}"
            _log.exception("start_session() of session %s raised", self.session_id)
        reason = "error" if error else (ctx.stop_reason or "returned")
        ctx.deactivate()
        for video in self._tracks.values():
            video.end_session()
        for media in (*self._inputs.values(), *self._audio_outputs.values()):
            media.end_session()
        ctx.commands.close(f"session {self.session_id} ended ({reason})")
        try:
            self._model.on_session_end(reason)
        except Exception as exc:
            _log.exception("on_session_end() of session %s raised", self.session_id)
            error = error or f"on_session_end: {type(exc).__name__}: {exc}"
        for name, video in self._tracks.items():
            self._track_stats[name].counters_at_end = _counters(video)
        self._media_at_end = self._media_snapshot()
        self.end_reason = reason
        self.error = error
        self.ended_ns = time.monotonic_ns()
        ctx.stopped.set()  # wakes the watcher
        ctx.release_thread()
        self._event("ended", reason=reason, error=error)
        self._transition(("starting", "streaming", "stopping"), "error" if error else "ended")
        self._engine._session_ended(self)
        with self._message_cv:
            self._ended.set()
            self._message_cv.notify_all()

    # -- stats -----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per-session numbers: time to first frame, fps, emit / encode / commit→packet latency, drops;
        ``inputs`` and ``audio_outputs``: each media track's counters over this session (ring, decoders).

        ``fps`` is the presentation rate (frames over their ``pts_ns`` span); ``production_fps`` the
        rate the model made them at. Latencies are ms; encode and commit→packet cover the packets this
        session handed out (``next_packet`` / ``packets``).
        """
        end_ns = self.ended_ns or time.monotonic_ns()
        tracks: dict[str, Any] = {}
        for name, video in self._tracks.items():
            stats = self._track_stats[name]
            counters_now = stats.counters_at_end or _counters(video)
            delta = {k: counters_now.get(k, 0) - stats.counters_at_start.get(k, 0) for k in _COUNTERS}
            owned = video.owner is self
            frames = video.frames_committed if owned else delta["frames_committed"]
            span_ns = (video.last_pts_ns - video.first_pts_ns) if owned else 0  # presentation time
            tracks[name] = {
                "frames": frames,
                "fps": (frames - 1) / (span_ns / 1e9) if span_ns > 0 and frames > 1 else 0.0,
                "production_fps": video.pacer.measured_fps if owned else 0.0,
                "time_to_first_frame_ms": (
                    (video.first_commit_ns - self.started_ns) / 1e6
                    if owned and video.first_commit_ns
                    else None
                ),
                "time_to_first_packet_ms": (
                    (stats.first_packet_ns - self.started_ns) / 1e6 if stats.first_packet_ns else None
                ),
                "packets_received": stats.packets,
                "late_frames": video.pacer.late_frames if owned else 0,
                "emit": video.emit_latency.summary() if owned else LatencyWindow(1).summary(),
                "encode": stats.encode.summary(),
                "commit_to_packet": stats.commit_to_packet.summary(),
                "counters": delta,
                "drops": delta["frames_dropped_oldest"]
                + delta["frames_dropped_newest"]
                + delta["frames_discarded"],
            }
        main = tracks[self._default_track]
        return {
            "session_id": self.session_id,
            "state": self._state,
            "end_reason": self.end_reason,
            "error": self.error,
            "duration_s": (end_ns - self.started_ns) / 1e9,
            "time_to_first_frame_ms": main["time_to_first_frame_ms"],
            "fps": main["fps"],
            "frames": main["frames"],
            "drops": main["drops"],
            "messages_dropped": self._messages_dropped,
            "tracks": tracks,
            **self._media_stats(),
        }

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Session({self.session_id!r}, state={self._state!r})"


def _counters(video: VideoTrack) -> dict[str, int]:
    stats = video.ring.stats()
    return {key: int(stats.get(key, 0)) for key in _COUNTERS}
