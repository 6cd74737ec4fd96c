"""The session's outbound VP8: one encode per frame, pushed pre-encoded into every peer's libwebrtc track.

Threads: ``VideoSender.push`` and everything in ``SessionMedia`` run on the asyncio loop thread (the
session hub calls ``on_packet`` there). ``on_encoder_feedback`` callbacks come on libwebrtc's native
threads; they only post to the loop (``call_soon_threadsafe``) and never block.

Copies: reactor-webrtc 0.24.2's ``EncodedVideoTrack.push_encoded_frame`` takes ``bytes`` only (a
``memoryview`` or ``bytearray`` raises ``TypeError``: its binding asks for ``PyBytes``), so each
packet is copied into one ``bytes`` object, once, and that one object is pushed to every peer.

Rate control (the "rate-control trap"): libwebrtc sends a pre-encoded stream no faster than the
sender's target bitrate and holds back what exceeds it, so the encoder follows the congestion
controller: every peer's ``RateUpdate`` is kept, and the encoder's target is the lowest of them
(clamped to the configured bitrate), and each sender's own cap is lifted above the configured
bitrate (``Transceiver.set_send_bitrate``) so that libwebrtc's resolution-keyed default does not
hold frames back.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import reactor_webrtc as rtc

from reactor_engine.transports.web import PerPacket

if TYPE_CHECKING:
    from reactor_engine import _C

__all__ = ["SessionMedia", "VideoSender", "outbound_stats", "peer_connection_factory", "post_to_loop"]

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
# frames of a stream over its allocation, which reactor-webrtc turns into lasting delay (see
# ``VideoSender.check_backlog``), and libvpx overshoots on keyframes and scene changes.
_RATE_MARGIN = 0.85
_MIN_SENDER_CAP = 4_000_000
# Pushed frames libwebrtc may hold (in flight) before the sender's backlog is reported.
_BACKLOG_FRAMES = 3


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


class VideoSender:
    """One peer's outbound video: a pre-encoded libwebrtc track fed with the session's VP8 packets.

    Frames are pushed while the sender is started (the peer is connected and not paused) and
    libwebrtc has not set its target to 0 (encoder paused), from a keyframe asked for when that
    begins, so a decoder never starts on a delta frame.
    Note: reactor-webrtc 0.24.2 queues each pushed frame and hands one on each time libwebrtc's
    encoder stage runs for the track. An input frame libwebrtc drops (the first few after a start
    bitrate too low for the resolution, any while it is paused) leaves a pushed frame queued, and
    every later frame waits behind it for good (measured: 4 frames, +135 ms, from libwebrtc's
    300 kbit/s start: so the peer starts the congestion controller at the encoder's bitrate).
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
        self.track: rtc.EncodedVideoTrack = track
        track.on_encoder_feedback(self._on_feedback)
        self.backlog_frames = 0
        self.sending = False  # started by the peer: connected, and resumed where the client pauses
        self._encoder_live = True  # False while libwebrtc's target is 0 (its encoder is paused)
        self._need_keyframe = True
        self._closed = False
        self.started_at: float | None = None
        self.first_keyframe_s: float | None = None
        self.frames_pushed = 0
        self.frames_skipped = 0
        self.keyframe_requests = 0
        self.rate_updates = 0
        self.bitrate_bps = 0

    @property
    def flowing(self) -> bool:
        return self.sending and self._encoder_live and not self._closed

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

    def _restart(self) -> None:
        """Ask for the keyframe this sender waits for, to (re)start on."""
        if self.flowing:
            self._need_keyframe = True
            self._media.request_keyframe()

    def push(self, packet: _C.Packet) -> None:
        if not self.flowing:
            return
        if self._need_keyframe:
            if not packet.keyframe:
                self.frames_skipped += 1
                return
            self._need_keyframe = False
            if self.first_keyframe_s is None and self.started_at is not None:
                self.first_keyframe_s = time.monotonic() - self.started_at
        data = self._media.payload(packet)
        user_data = _USER_DATA.pack(packet.frame_index, packet.t_commit_ns)
        rtp_timestamp = (packet.pts_ns * _RTP_CLOCK_HZ // 1_000_000_000) & 0xFFFFFFFF
        self.track.push_encoded_frame(
            data, packet.keyframe, packet.width, packet.height, rtp_timestamp, user_data
        )
        self.frames_pushed += 1

    def close(self) -> None:
        self._closed = True
        self.sending = False
        self._media.remove(self.sender_id)

    def check_backlog(self, frames_sent: int) -> int:
        """Frames pushed that libwebrtc has not sent (``frames_sent`` of the outbound stream); logged
        when it grows. Note: under congestion libwebrtc drops input frames (its encoder pauses
        while the pacer is full), and reactor-webrtc 0.24.2 then keeps the frames pushed meanwhile
        queued (up to ~66) and sends one per later push: the delay they add stays (measured: +2.2 s
        after 10 s at 400 kbit/s). Neither a fresh track on the transceiver (it is then never
        sent) nor empty pushes (queued like frames) clear it; a new peer connection does."""
        backlog = max(0, self.frames_pushed - frames_sent)
        if backlog > self.backlog_frames and backlog > _BACKLOG_FRAMES:
            _log.warning(
                "peer %d: libwebrtc holds %d pushed frames back (+%.0f ms of latency)",
                self.sender_id, backlog, 1000 * backlog / 30,
            )  # fmt: skip
        self.backlog_frames = backlog
        return backlog

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
        _log.debug("peer %d: RateUpdate %d bit/s", self.sender_id, bitrate_bps)
        live = bitrate_bps > 0
        if live != self._encoder_live:
            self._encoder_live = live
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

    def stats(self) -> dict[str, Any]:
        return {
            "sending": self.sending,
            "encoder_live": self._encoder_live,
            "frames_pushed": self.frames_pushed,
            "frames_skipped": self.frames_skipped,
            "first_keyframe_s": None if self.first_keyframe_s is None else round(self.first_keyframe_s, 4),
            "keyframe_requests": self.keyframe_requests,
            "rate_updates": self.rate_updates,
            "bitrate_bps": self.bitrate_bps,
            "backlog_frames": self.backlog_frames,
        }


def outbound_stats(report: rtc.StatsReport) -> dict[str, Any]:
    """The outbound video and the selected candidate pair of a peer's ``get_stats()`` report."""
    out: dict[str, Any] = {}
    for rtp in report.outbound_rtp:
        if rtp.kind == rtc.StreamKind.Video:
            packets = max(1, rtp.packets_sent)
            out["video"] = {
                "codec": rtp.codec_mime_type,
                "target_bitrate_bps": rtp.target_bitrate_bps,
                "frames_sent": rtp.frames_sent,
                "bytes_sent": rtp.bytes_sent,
                "packets_sent": rtp.packets_sent,
                "retransmitted_packets": rtp.retransmitted_packets_sent,
                "nack_count": rtp.nack_count,
                "pli_count": rtp.pli_count,
                "fir_count": rtp.fir_count,
                "round_trip_time_ms": round(rtp.round_trip_time_s * 1000, 2),
                "packet_send_delay_ms": round(rtp.total_packet_send_delay_s * 1000 / packets, 3),
                "fraction_lost": rtp.fraction_lost,
            }
    for pair in report.candidate_pairs:
        if pair.nominated:
            out["candidate_pair"] = {
                "local_type": str(pair.local_candidate_type).rsplit(".", 1)[-1].lower(),
                "round_trip_time_ms": round(pair.current_round_trip_time_s * 1000, 2),
                "available_outgoing_bitrate_bps": pair.available_outgoing_bitrate_bps,
            }
    return out


def _packet_bytes(packet: _C.Packet) -> bytes:
    return packet.tobytes()


def post_to_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    """Run ``callback(*args)`` on ``loop`` from a native thread; dropped once the loop is closed."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop closed under a late libwebrtc callback
        _log.debug("dropped a libwebrtc callback after the loop closed")
