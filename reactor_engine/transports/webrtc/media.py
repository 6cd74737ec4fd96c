"""The session's outbound VP8: one encode per frame, pushed pre-encoded into every peer's libwebrtc track.

Threads: ``VideoSender.push`` and everything in ``SessionMedia`` run on the asyncio loop thread (the
session hub calls ``on_packet`` there). ``on_encoder_feedback`` and the sender transform's callbacks
come on libwebrtc's native threads; they count, post to the loop (``call_soon_threadsafe``) and
never block.

Copies: reactor-webrtc 0.24.2's ``EncodedVideoTrack.push_encoded_frame`` takes ``bytes`` only (a
``memoryview`` or ``bytearray`` raises ``TypeError``: its binding asks for ``PyBytes``), so each
packet is copied into one ``bytes`` object, once, and that one object is pushed to every peer.

Rate control (the "rate-control trap"): the encoder follows the congestion controller: every peer's
``RateUpdate`` is kept, the encoder's target is the lowest of them (clamped to the configured
bitrate), and each sender's own cap is lifted above the configured bitrate
(``Transceiver.set_send_bitrate``) so that libwebrtc's resolution-keyed default holds nothing back.

reactor-webrtc 0.24.2's queue (read in its public source, ``encoded.rs``, whose ``VecDeque`` the
0.24.2 wheel still has; measured here with the sender transform counting what libwebrtc takes):
``push_encoded_frame`` appends the frame to a per-track FIFO (unbounded, no drop policy) and pushes
a dummy raw frame into the track's source to wake libwebrtc's encoder stage, which pops the *oldest*
queued frame each time it runs. libwebrtc drops inputs before that stage: its frame dropper when the
bytes exceed the congestion controller's target over ~0.5 s (and a few frames more), its congestion
window (every n-th input while more is in flight than it allows: ``WebRTC-CongestionWindow``'s
default ``DropFrame:true``), its encoder queue when two inputs come faster than it encodes, its
first few inputs at some start bitrates, and every input while its target is 0. Each drop leaves a
frame in the FIFO that no later push removes (a push adds one frame and takes at most one), so every
later frame waits one frame period more, for the life of the track: 7 s at 400 kbit/s left 62-79
(+2.1-2.6 s). Neither a fresh track on the transceiver (its encoder keeps popping the old FIFO: video
stops) nor empty pushes (queued like frames) undo it; a new peer connection does. So ``VideoSender``
pushes only what libwebrtc will take:

- a leaky bucket per peer (``budget.PushBudget``) drains at the peer's target bitrate (its last
  ``RateUpdate``) and holds 0.3 s of it; a key frame enters it over 0.5 s, as it does
  libwebrtc's frame dropper. A delta frame that does not fit is not pushed (``frames_skipped``), nor
  any delta after it: once the bucket has drained, a key frame is asked for (the one encode is
  shared: every peer gets it, harmless) and the peer resumes on it (``resyncs``);
- pushes are paced (``frames_waited``): one at a time, each once libwebrtc has taken the one before
  (``frames_taken``) and ``_MIN_GAP_S`` after it;
- a push not taken ``_TAKE_TIMEOUT_S`` later was dropped (``input_drops``; the FIFO now holds one
  more frame for good, ``backlog_frames``): the peer pushes nothing for a back-off (0.5 s, doubled
  for each drop within 4 s of the last, up to 2 s), then resyncs.

Measured (``benchmarks/webrtc_congestion.py``: 640x360, 1.5 Mbit/s, 7 s at 400 kbit/s), 2-3 frames
stay in the FIFO (+70-105 ms) against 62-79 before; each such episode can add a few more, which only
a new peer connection clears. A slow peer skips frames and asks for key frames; the others get every
frame (and those key frames).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import reactor_webrtc as rtc

from reactor_engine.transports.web import PerPacket
from reactor_engine.transports.webrtc.budget import PushBudget

if TYPE_CHECKING:
    from reactor_engine import _C

__all__ = ["SessionMedia", "VideoSender", "peer_connection_factory", "post_to_loop"]

_log = logging.getLogger("reactor_engine.webrtc")

_factory: rtc.PeerConnectionFactory | None = None
_factory_lock = threading.Lock()

# Frame metadata carried in the RTP trailer (reactor-webrtc peers only; others never see it):
# the frame index and the emit time (ns, CLOCK_MONOTONIC) of each frame, for latency measurement.
_USER_DATA = struct.Struct("<qq")
_RTP_CLOCK_HZ = 90_000
# A target bitrate change smaller than this fraction is not passed on to the encoder.
_BITRATE_HYSTERESIS = 0.05
# The encoder aims this far under the congestion controller's allocation: libwebrtc drops the input
# frames of a stream over its allocation, which reactor-webrtc turns into lasting delay (see the
# module docstring), and libvpx overshoots on keyframes and scene changes.
_RATE_MARGIN = 0.85
_MIN_SENDER_CAP = 4_000_000
# Pacing: a push not taken this long after was dropped; the least time between pushes; the most
# frames waiting (more: the loop stalled, and the peer resyncs).
_TAKE_TIMEOUT_S = 0.05
_MIN_GAP_S = 0.008
_MAX_WAITING = 3
# Frames left in reactor-webrtc's FIFO (each a frame period of delay) above which a warning is logged.
_BACKLOG_WARN_FRAMES = 3


def peer_connection_factory() -> rtc.PeerConnectionFactory:
    """The process's one ``PeerConnectionFactory`` (libwebrtc allows one), built on first use.

    Playout delay 0/0 is stamped on every frame: receivers play each frame as soon as it decodes
    (it halved glass-to-glass latency when measured)."""
    global _factory
    with _factory_lock:
        if _factory is None:
            builder = rtc.PeerConnectionFactoryBuilder()
            builder.with_send_playout_delay(0.0, 0.0)
            _factory = builder.build()
        return _factory


class MediaHub(Protocol):
    """What the media needs of the session: the encoder's runtime controls (loop thread)."""

    def request_keyframe(self) -> None: ...

    def set_bitrate(self, bps: int) -> None: ...


class SessionMedia:
    """Per-session state shared by the peers' senders: the packet's one ``bytes`` copy, the bitrate.

    ``max_bitrate``: the configured target, the ceiling the congestion controller may lower.
    """

    def __init__(self, controls: MediaHub, max_bitrate: int, min_bitrate: int) -> None:
        self._controls = controls
        self.max_bitrate = max(max_bitrate, min_bitrate)
        self.min_bitrate = min_bitrate
        # Each sender's own ceiling: above what the encoder makes, so libwebrtc never holds frames back.
        self.sender_cap = max(2 * self.max_bitrate, _MIN_SENDER_CAP)
        self._rates: dict[int, int] = {}
        self.target_bitrate = self.max_bitrate
        self.keyframes_requested = 0
        self.bitrate_changes = 0
        # The hub hands each packet to every peer in turn: the first makes the one copy, the rest reuse it.
        self.payload = PerPacket(_packet_bytes)

    def request_keyframe(self) -> None:
        self.keyframes_requested += 1
        self._controls.request_keyframe()

    def rate_update(self, sender: int, bitrate_bps: int) -> None:
        """A peer's congestion-controller allocation; the encoder gets the lowest over the peers."""
        self._rates[sender] = bitrate_bps
        self._apply()

    def remove(self, sender: int) -> None:
        if self._rates.pop(sender, None) is not None:
            self._apply()

    def _apply(self) -> None:
        lowest = int(_RATE_MARGIN * min(self._rates.values(), default=self.max_bitrate / _RATE_MARGIN))
        target = max(self.min_bitrate, min(self.max_bitrate, lowest))
        if target == self.target_bitrate:
            return
        at_bound = target in (self.min_bitrate, self.max_bitrate)
        if not at_bound and abs(target - self.target_bitrate) < _BITRATE_HYSTERESIS * self.target_bitrate:
            return
        _log.debug(
            "encoder target bitrate %d -> %d bit/s (peers: %s)", self.target_bitrate, target, self._rates
        )
        self.target_bitrate = target
        self.bitrate_changes += 1
        self._controls.set_bitrate(target)

    def stats(self) -> dict[str, Any]:
        return {
            "target_bitrate": self.target_bitrate,
            "max_bitrate": self.max_bitrate,
            "peer_bitrates": dict(self._rates),
            "bitrate_changes": self.bitrate_changes,
            "keyframes_requested": self.keyframes_requested,
        }


class _Frame:
    """What ``push_encoded_frame`` needs of a packet, kept while the frame waits its turn."""

    __slots__ = ("data", "height", "keyframe", "rtp_timestamp", "user_data", "width")

    def __init__(self, data: bytes, packet: _C.Packet) -> None:
        self.data = data
        self.keyframe = packet.keyframe
        self.width, self.height = packet.width, packet.height
        self.rtp_timestamp = (packet.pts_ns * _RTP_CLOCK_HZ // 1_000_000_000) & 0xFFFFFFFF
        self.user_data = _USER_DATA.pack(packet.frame_index, packet.t_commit_ns)


class VideoSender:
    """One peer's outbound video: a pre-encoded libwebrtc track fed with the session's VP8 packets.

    Frames are pushed while the sender is started (the peer is connected and not paused) and
    libwebrtc has not set its target to 0 (encoder paused), from a keyframe asked for when that
    begins, so a decoder never starts on a delta frame; and only what libwebrtc will take at once
    (the push budget and the wait for the previous frame: see the module docstring). ``attach``
    puts the sender transform that counts the frames libwebrtc takes on the peer's transceiver.
    """

    def __init__(
        self,
        media: SessionMedia,
        sender_id: int,
        width: int,
        height: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._media = media
        self.sender_id = sender_id
        self._loop = loop
        track = peer_connection_factory().create_video_track_with_options(
            f"video-{sender_id}", pre_encoded=(width, height)
        )
        if not isinstance(track, rtc.EncodedVideoTrack):  # pragma: no cover - the library's contract
            raise TypeError("reactor_webrtc returned a raw track for pre_encoded=")
        self.track: rtc.EncodedVideoTrack | None = track  # None once released (see ``release``)
        track.on_encoder_feedback(self._on_feedback)
        self.budget = PushBudget()
        self.sending = False  # started by the peer: connected, and resumed where the client pauses
        self._encoder_live = True  # False while libwebrtc's target is 0 (its encoder is paused)
        self._attached = False
        self._need_keyframe = True
        self._resync = False  # frames were skipped: a key frame is asked for once the budget drains
        self._keyframe_asked = False
        self._waiting: deque[_Frame] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last_push = -1e9
        self._started = False  # libwebrtc has taken a first frame (pacing waits for takes from then on)
        self._closed = False
        self.started_at: float | None = None
        self.first_keyframe_s: float | None = None
        self.frames_pushed = 0
        self.frames_taken = 0  # written by the transform's thread only
        self.backlog_frames = 0  # frames stuck in reactor-webrtc's FIFO (see the module docstring)
        self.frames_skipped = 0
        self.frames_waited = 0
        self.input_drops = 0
        self.resyncs = 0
        self.keyframe_requests = 0
        self.rate_updates = 0
        self.bitrate_bps = 0

    @property
    def flowing(self) -> bool:
        return self.sending and self._encoder_live and not self._closed

    def attach(self, transceiver: rtc.Transceiver) -> None:
        """Count the frames libwebrtc takes from the track (before the answer is made)."""
        transceiver.set_sender_transform(rtc.FrameTransform(self._on_taken))
        self._attached = True

    # -- loop thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or resume) sending, from a keyframe asked for as soon as frames can flow."""
        if self._closed or self.sending:
            return
        self.sending = True
        self.started_at = time.monotonic()
        self.first_keyframe_s = None
        self._restart()

    def stop(self) -> None:
        """Pause: nothing is pushed until ``start()``."""
        self.sending = False
        self._forget_waiting()

    def _restart(self) -> None:
        """Ask for the keyframe this sender waits for, to (re)start on."""
        if self.flowing:
            self._need_keyframe, self._resync = True, False
            self._media.request_keyframe()

    def push(self, packet: _C.Packet) -> None:
        if not self.flowing or not self._attached:
            return
        now = time.monotonic()
        self._pump(now)  # a drop found now resyncs before this frame is judged
        self.budget.drain(now)
        bits = 8 * packet.size
        if packet.keyframe:
            if self._resync and not self.budget.drained:
                self._keyframe_asked = False  # not this one: the one asked for once the bucket drains
                self._skip()
                return
        elif self._need_keyframe or not self.budget.fits(bits):
            if not self._need_keyframe:
                _log.debug("peer %d: a %d-byte frame is over its budget (%.0f of %.0f bits): resync",
                           self.sender_id, packet.size, self.budget.level, self.budget.capacity)  # fmt: skip
            self._skip()
            return
        if len(self._waiting) >= _MAX_WAITING:  # the loop stalled: more than libwebrtc takes in time
            self._skip_waiting()
            self._skip()
            return
        self.budget.add(bits, packet.keyframe)
        if self._need_keyframe:
            _log.debug("peer %d: resumes on a %d-byte key frame (budget %.0f of %.0f bits)",
                       self.sender_id, packet.size, self.budget.level, self.budget.capacity)  # fmt: skip
            self._need_keyframe = self._resync = False
            if self.first_keyframe_s is None and self.started_at is not None:
                self.first_keyframe_s = now - self.started_at
        self._waiting.append(_Frame(self._media.payload(packet), packet))
        if len(self._waiting) > 1 or self.frames_pushed - self.frames_taken > self.backlog_frames:
            self.frames_waited += 1
        self._pump(now)

    def _pump(self, now: float | None = None) -> None:
        """Push the waiting frames, each once libwebrtc took the one before and ``_MIN_GAP_S`` after it;
        a push not taken ``_TAKE_TIMEOUT_S`` later was dropped (``_input_dropped``)."""
        self._forget_waiting(keep=True)
        now = time.monotonic() if now is None else now
        while True:
            if self._started and self.frames_pushed - self.frames_taken > self.backlog_frames:
                if now - self._last_push >= _TAKE_TIMEOUT_S:
                    self._input_dropped(now)
                    return
                wake = self._last_push + _TAKE_TIMEOUT_S
            elif not self._waiting:
                return
            elif now - self._last_push < _MIN_GAP_S:
                wake = self._last_push + _MIN_GAP_S
            else:
                self._push(self._waiting.popleft(), now)
                now = time.monotonic()
                continue
            if self._waiting:
                self._timer = self._loop.call_later(max(0.0, wake - now), self._pump)
            return

    def _push(self, frame: _Frame, now: float) -> None:
        if self.track is None:
            return
        self.track.push_encoded_frame(
            frame.data, frame.keyframe, frame.width, frame.height, frame.rtp_timestamp, frame.user_data
        )
        self.frames_pushed += 1
        self._last_push = now

    def _skip(self) -> None:
        """This frame is not pushed: the peer waits for a key frame, asked for once the bucket drains."""
        self.frames_skipped += 1
        if not self._need_keyframe:
            self._begin_resync()
        if self._resync and not self._keyframe_asked and self.budget.drained:
            self._keyframe_asked = True
            self._media.request_keyframe()

    def _begin_resync(self) -> None:
        if not (self._need_keyframe and self._resync):
            self.resyncs += 1
        self._need_keyframe = self._resync = True
        self._keyframe_asked = False

    def _forget_waiting(self, keep: bool = False) -> None:
        """Cancel the pacing timer and (unless ``keep``) drop the waiting frames."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not keep:
            self._waiting.clear()

    def _input_dropped(self, now: float) -> None:
        """libwebrtc did not take the last push: it dropped that input, which reactor-webrtc keeps
        queued ahead of every later frame. The waiting frames are skipped; the peer backs off and
        resyncs."""
        backlog = self.frames_pushed - self.frames_taken
        self.input_drops += backlog - self.backlog_frames
        self._set_backlog(backlog)
        self.budget.back_off(now)
        self._skip_waiting()

    def _skip_waiting(self) -> None:
        self.frames_skipped += len(self._waiting)
        self._forget_waiting()
        self._begin_resync()

    def _set_backlog(self, backlog: int) -> None:
        if backlog > self.backlog_frames and backlog > _BACKLOG_WARN_FRAMES:
            _log.warning(
                "peer %d: libwebrtc dropped the inputs of %d pushed frames, which reactor-webrtc keeps "
                "queued ahead of every later one: +%.0f ms of latency at 30 fps for this connection",
                self.sender_id, backlog, 1000 * backlog / 30,
            )  # fmt: skip
        self.backlog_frames = backlog

    def _taken_on_loop(self) -> None:
        if not self._started:
            # libwebrtc's first take: it dropped the inputs before it (up to 4 with some offers and
            # start bitrates), pushed at the frame rate since pacing waits for a first take.
            self._started = True
            self.input_drops += self.frames_pushed - self.frames_taken
            self._set_backlog(self.frames_pushed - self.frames_taken)
        elif self.frames_pushed - self.frames_taken < self.backlog_frames:
            self._set_backlog(self.frames_pushed - self.frames_taken)  # a late one: not dropped after all
        if self._waiting:
            self._pump()

    def close(self) -> None:
        self._closed = True
        self.sending = False
        self._forget_waiting()
        self._media.remove(self.sender_id)

    def release(self) -> None:
        """Drop the native track (after ``close``): a closed peer's record may be kept for its stats,
        but not libwebrtc's track with its frame FIFO (it held ~8 MiB per closed 720p peer until the
        session ended: the soak's RSS growth)."""
        track, self.track = self.track, None
        if track is not None:
            track.on_encoder_feedback(_ignore)

    def _feedback_on_loop(self, keyframe: bool, bitrate_bps: int) -> None:
        if self._closed:
            return
        if keyframe:
            self.keyframe_requests += 1
            if self.flowing:  # a stopped sender asks for its own keyframe when it starts
                self._media.request_keyframe()
            return
        self.rate_updates += 1
        self.bitrate_bps = bitrate_bps
        self.budget.drain(time.monotonic())
        self.budget.rate = bitrate_bps
        _log.debug("peer %d: RateUpdate %d bit/s", self.sender_id, bitrate_bps)
        live = bitrate_bps > 0
        if live != self._encoder_live:
            self._encoder_live = live
            if not live:
                self._forget_waiting()
            self._restart()
        if live:
            self._media.rate_update(self.sender_id, bitrate_bps)
        else:
            self._media.remove(self.sender_id)

    # -- libwebrtc's threads -------------------------------------------------------------------------

    def _on_feedback(self, event: rtc.KeyFrameRequest | rtc.RateUpdate) -> None:
        if isinstance(event, rtc.RateUpdate):
            post_to_loop(self._loop, self._feedback_on_loop, False, int(event.bitrate_bps))
        else:
            post_to_loop(self._loop, self._feedback_on_loop, True, 0)

    def _on_taken(self, _frame: rtc.EncodedFrame) -> rtc.FrameAction:
        """libwebrtc's encoder stage took the oldest pushed frame (its only reader: one count)."""
        self.frames_taken += 1
        if not self._started or self._waiting or self.frames_pushed - self.frames_taken < self.backlog_frames:
            post_to_loop(self._loop, self._taken_on_loop)
        return rtc.FrameAction.Forward

    def stats(self) -> dict[str, Any]:
        return {
            "sending": self.sending,
            "encoder_live": self._encoder_live,
            "frames_pushed": self.frames_pushed,
            "frames_taken": self.frames_taken,
            "frames_skipped": self.frames_skipped,
            "frames_waited": self.frames_waited,
            "backlog_frames": self.backlog_frames,
            "input_drops": self.input_drops,
            "resyncs": self.resyncs,
            "first_keyframe_s": None if self.first_keyframe_s is None else round(self.first_keyframe_s, 4),
            "keyframe_requests": self.keyframe_requests,
            "rate_updates": self.rate_updates,
            "bitrate_bps": self.bitrate_bps,
            "budget_fill": round(self.budget.level / self.budget.capacity, 3) if self.budget.rate else 0.0,
        }


def _packet_bytes(packet: _C.Packet) -> bytes:
    return packet.tobytes()


def post_to_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    """Run ``callback(*args)`` on ``loop`` from a native thread; dropped once the loop is closed."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop closed under a late libwebrtc callback
        _log.debug("dropped a libwebrtc callback after the loop closed")


def _ignore(*_args: object) -> None:
    """The callback left on a released native object (a callable it may still call)."""
