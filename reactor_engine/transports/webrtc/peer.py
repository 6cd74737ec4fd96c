"""One client's WebRTC peer connection: negotiation, video gating, liveness, release.

A ``Peer`` is a session hub client (``kind`` "webrtc", ``codec`` "vp8"): the hub hands it each VP8
packet (pushed to its ``VideoSender``), each model message (sent by its ``PeerChannels``) and the
end of the session. Threads: everything runs on the asyncio loop thread, except the ``_native_*``
callbacks, which libwebrtc calls on its own threads; they only post to the loop. The peer connection
is released (its last reference dropped, which closes it) on the loop thread, after its callbacks
are cleared: the native objects are not tracked by Python's cycle collector.

Video gating: runtime 3.x starts every outbound track paused until the client sends ``resume_track``;
js-sdk 2.9 never does. So a client that opens a ``control`` channel or speaks v1 is paused until it
resumes the track, and one that has neither ``channel_grace`` seconds after connecting gets video
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import reactor_webrtc as rtc

from reactor_engine import heap
from reactor_engine.errors import ReactorError
from reactor_engine.transports.webrtc import wire
from reactor_engine.transports.webrtc.channels import PeerChannels
from reactor_engine.transports.webrtc.media import (
    SessionMedia,
    VideoSender,
    peer_connection_factory,
    post_to_loop,
)
from reactor_engine.transports.webrtc.sdp import TrackMapping, with_candidates
from reactor_engine.transports.webrtc.stats import outbound_stats
from reactor_engine.transports.webrtc.tracks import PeerTracks

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.transports.audio import AudioChunk
    from reactor_engine.transports.hub import LiveSession, SessionHub
    from reactor_engine.transports.webrtc.options import WebRtcOptions

__all__ = ["NegotiationError", "Peer", "outbound_stats"]

_log = logging.getLogger("reactor_engine.webrtc")

PeerState = Literal["new", "negotiating", "answered", "connected", "disconnected", "closed"]
_SESSION_ENDED_DRAIN_S = 1.0
_TRIM_AFTER_S = 1.0  # after a peer's release, before the heap trim: libwebrtc frees its buffers meanwhile
_DECODER_WATCH_S = 0.5  # how often the decoders of the client's video are checked for errors


class NegotiationError(ReactorError, ValueError):
    """An offer could not be answered: malformed SDP, or the connection closed meanwhile."""


class Peer:
    """One peer connection of a session; created by the connection's signaling, closed by ``close()``."""

    kind = "webrtc"
    codec = "vp8"

    def __init__(
        self,
        cid: int,
        hub: SessionHub,
        live: LiveSession,
        media: SessionMedia,
        options: WebRtcOptions,
        *,
        video_track: str,
        width: int,
        height: int,
        on_closed: Callable[[Peer, str], None],
    ) -> None:
        self.cid = cid
        self._hub = hub
        self._live = live
        self._options = options
        self._on_closed = on_closed
        self.video_track = video_track
        self._loop = asyncio.get_running_loop()
        self.sender = VideoSender(media, cid, width, height, self._loop)
        self._media = media
        observer = rtc.PeerConnectionObserver()
        observer.on_connection_state_change = self._native_state
        observer.on_ice_gathering_change = self._native_gathering
        observer.on_ice_candidate = self._native_candidate
        observer.on_data_channel = self._native_channel
        observer.on_track = self._native_track
        self._observer = observer
        self.pc: rtc.PeerConnection | None = peer_connection_factory().create_peer_connection(
            options.rtc_configuration(), observer
        )
        self.state: PeerState = "new"
        self.disconnects = 0  # times libwebrtc reported the link down (media paused meanwhile)
        self._disconnected_at = 0.0
        self.close_reason = ""
        self.created = time.monotonic()
        self.connected_at: float | None = None
        self.last_heard = self.created
        self.messages = PeerChannels(cid, hub, live, options.max_message_bytes, self)
        # The client's camera and microphone in, the model's audio out (tracks.py).
        refused = hub.metrics.media_refused.labels
        self.tracks = PeerTracks(
            cid,
            live.tracks,
            self._loop,
            self.messages.media_error,
            lambda code: refused("webrtc", code).inc(),
        )
        self.local_candidates: list[rtc.IceCandidate] = []
        self._channels_closed: set[str] = set()
        self.remote_description_set = False
        self._gathered = asyncio.Event()
        # None: not known yet; True: paused until resume_track (control channel or v1); False: js-sdk 2.9.
        self._gated: bool | None = None
        self._resumed = False
        self._paused = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing_tasks: set[asyncio.Task[None]] = set()
        self.candidates_refused = 0
        self._arm("negotiation", options.negotiation_timeout, self._negotiation_expired)

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    # -- negotiation (loop thread) ---------------------------------------------------------------------

    async def negotiate(
        self, offer: str, mapping: Sequence[TrackMapping], early: list[rtc.IceCandidate]
    ) -> str:
        """Apply the offer and then the candidates in ``early`` (those that came before it; emptied),
        bind the video, answer, and wait (bounded) for ICE gathering.

        Returns the answer SDP with the server's candidates embedded. ``NegotiationError`` when the
        offer is refused or the peer closes meanwhile."""
        self.state = "negotiating"
        try:
            await self._pc().set_remote_description(rtc.SessionDescription("offer", offer))
        except NegotiationError:
            raise
        except Exception as exc:  # libwebrtc's parse and apply errors come as RuntimeError/ValueError
            raise NegotiationError(f"the SDP offer was refused: {exc}") from None
        self.remote_description_set = True
        while early:  # later candidates go straight to add_candidate now
            await self.add_candidate(early.pop(0))
        await self._bind_transceivers(mapping)
        try:
            answer = await self._pc().create_answer()
            await self._pc().set_local_description(answer)
        except NegotiationError:
            raise
        except Exception as exc:
            raise NegotiationError(f"no answer could be made to the offer: {exc}") from None
        # The congestion controller starts at the encoder's bitrate, not libwebrtc's 300 kbit/s: from
        # a start below what the resolution needs, libwebrtc drops its first few input frames, and
        # reactor-webrtc then keeps that many pre-encoded frames queued for good (+135 ms, measured).
        start = self._options.start_bitrate or self._media.max_bitrate
        with contextlib.suppress(RuntimeError):
            await self._pc().set_bitrate(start_bps=start)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._gathered.wait(), self._options.gather_timeout)
        if not self._gathered.is_set():
            _log.info("peer %d: ICE gathering is not complete after %.1f s; answering with %d candidates",
                      self.cid, self._options.gather_timeout, len(self.local_candidates))  # fmt: skip
        self._pc()  # closed meanwhile?
        if self.state == "negotiating":
            self.state = "answered"
        return with_candidates(answer.sdp, self.local_candidates, self._options.advertised_address)

    async def add_candidate(self, candidate: rtc.IceCandidate) -> bool:
        """A remote (trickled) candidate; one libwebrtc refuses is counted and skipped."""
        if self.closed:
            return False
        try:
            await self._pc().add_ice_candidate(candidate)
        except Exception as exc:
            self.candidates_refused += 1
            _log.info("peer %d: ICE candidate refused (%s): %.120s", self.cid, exc, candidate.candidate)
            return False
        return True

    async def _bind_transceivers(self, mapping: Sequence[TrackMapping]) -> None:
        """The model's video goes on the transceiver the client receives the video track on; the ones
        it sends a declared input on, or receives a declared audio output on, are bound by
        ``PeerTracks``; every other transceiver is made inactive."""
        by_mid = {entry.mid: entry for entry in mapping}
        names = {entry.name for entry in mapping if entry.kind == "video" and entry.direction == "recvonly"}
        bound = False
        for transceiver in await self._pc().transceivers():
            entry = by_mid.get(transceiver.mid() or "")
            wanted = transceiver.kind() == rtc.MediaKind.Video and not bound
            if wanted and mapping:
                wanted = (
                    entry is not None
                    and entry.kind == "video"
                    and entry.direction == "recvonly"
                    and (entry.name == self.video_track or self.video_track not in names)
                )
            if wanted:
                await transceiver.set_codec_preferences([rtc.VideoCodec.Vp8])
                assert self.sender.track is not None  # released only once the peer is closed
                await transceiver.set_track(self.sender.track)
                self.sender.attach(transceiver)
                await transceiver.set_direction(rtc.TransceiverDirection.SendOnly)
                await transceiver.set_send_bitrate(None, self._media.sender_cap)
                bound = True
            elif not await self.tracks.bind(transceiver, entry):
                await transceiver.set_direction(rtc.TransceiverDirection.Inactive)
        if not bound:
            _log.info("peer %d: the offer asks for no video the model sends (%s)", self.cid, list(mapping))

    def _negotiation_expired(self) -> None:
        if self.state != "connected":
            self.drop(
                f"negotiation timeout: not connected {self._options.negotiation_timeout:g} s after the offer"
            )

    def _pc(self) -> rtc.PeerConnection:
        if self.pc is None:
            raise NegotiationError(f"connection {self.cid} closed: {self.close_reason}")
        return self.pc

    # -- libwebrtc's threads: post, never block --------------------------------------------------------

    def _native_state(self, state: rtc.PeerConnectionState) -> None:
        post_to_loop(self._loop, self._on_state, state)

    def _native_gathering(self, state: rtc.IceGatheringState) -> None:
        if state == rtc.IceGatheringState.Complete:
            post_to_loop(self._loop, self._gathered.set)

    def _native_candidate(self, candidate: rtc.IceCandidate) -> None:
        post_to_loop(self._loop, self.local_candidates.append, candidate)

    def _native_channel(self, channel: rtc.DataChannel) -> None:
        # Registered here, on the callback's own thread, so no message that follows the open is missed.
        label = channel.label()
        channel.on_message(functools.partial(self._native_message, label))
        channel.on_close(functools.partial(self._native_channel_closed, label))
        post_to_loop(self._loop, self._on_channel, label, channel)

    def _native_track(self, kind: rtc.MediaKind, track: rtc.Track) -> None:
        post_to_loop(self._loop, self.tracks.remote_track, kind, track)

    def _native_message(self, label: str, data: bytes, binary: bool) -> None:
        post_to_loop(self._loop, self._on_message, label, data, binary)

    def _native_channel_closed(self, label: str) -> None:
        post_to_loop(self._loop, self._on_channel_closed, label)

    # -- connection and channel events (loop thread) ---------------------------------------------------

    def _on_state(self, state: rtc.PeerConnectionState) -> None:
        if self.closed:
            return
        if state == rtc.PeerConnectionState.Connected:
            if self.state == "disconnected":
                self._link_up()
            elif self.state != "connected":
                self.state = "connected"
                self.connected_at = time.monotonic()
                self.last_heard = self.connected_at
                self._cancel("negotiation")
                _log.info("peer %d connected in %.3f s", self.cid, self.connected_at - self.created)
                if self._gated is None:
                    self._arm("grace", self._options.channel_grace, self._grace_over)
                elif self._may_send():
                    self.sender.start()
                if self._options.ping_timeout > 0:
                    self._arm("liveness", self._liveness_interval(), self._check_alive)
                if self.tracks.video_in:
                    self._arm("decoders", _DECODER_WATCH_S, self._check_decoders)
        elif state == rtc.PeerConnectionState.Failed:
            self.drop("the connection failed (ICE or DTLS)")
        elif state == rtc.PeerConnectionState.Closed:
            self.drop("closed by the client")
        elif state == rtc.PeerConnectionState.Disconnected and self.state == "connected":
            self._link_down()

    def _link_down(self) -> None:
        """libwebrtc heard nothing from the client for a while (ICE: ~2.5 s): its video and audio stop
        until the link is back, instead of being pushed to a client that may be gone until the ping
        timeout drops it (each 720p frame pushed meanwhile cost memory: the soak's RSS growth)."""
        self.state = "disconnected"
        self._disconnected_at = time.monotonic()
        self.sender.stop()
        self.disconnects += 1
        _log.info(
            "peer %d disconnected: its media pauses; dropped after %g s of silence",
            self.cid, self._options.ping_timeout,
        )  # fmt: skip

    def _link_up(self) -> None:
        """The link is back (ICE reconnected): media resumes from a key frame where it was flowing."""
        self.state = "connected"
        down = time.monotonic() - self._disconnected_at
        _log.info("peer %d reconnected after %.1f s", self.cid, down)
        if self._may_send():
            self.sender.start()

    def _may_send(self) -> bool:
        """Video flows while connected: resumed (a gated client), or ungated (js-sdk 2.9) and not paused."""
        return self._resumed or (self._gated is False and not self._paused)

    def _on_channel(self, label: str, channel: rtc.DataChannel) -> None:
        self.messages.add(label, channel)

    def _on_message(self, label: str, data: bytes, binary: bool) -> None:
        if not self.closed:
            self.last_heard = time.monotonic()
            self.messages.receive(label, data, binary)

    def _on_channel_closed(self, label: str) -> None:
        if self.closed or label not in self.messages.channels:
            return
        self._channels_closed.add(label)
        _log.info("peer %d: its %s channel closed", self.cid, label)
        if self._channels_closed >= set(self.messages.channels):
            # Every channel it opened is gone (it closed its connection or them): the client has left.
            # Dropped now rather than at the ping timeout, so no frames are pushed to it meanwhile.
            self.drop(f"the client closed its channels ({', '.join(sorted(self._channels_closed))})")

    # -- video gating (TrackControl, for the channels) -----------------------------------------------

    def gate(self) -> None:
        """The client has a control channel or speaks v1: its video waits for ``resume_track``."""
        if self._gated:
            return
        self._gated = True
        self._cancel("grace")
        if not self._resumed:
            self.sender.stop()

    def _grace_over(self) -> None:
        if self._gated is None and not self.closed:
            # js-sdk 2.9: one data channel, v0 (its first ping comes 5 s later), never resumes.
            self._gated = False
            self.messages.assume_v0()
            if self._may_send():
                self.sender.start()

    def publish_refusal(self, name: str) -> str | None:
        return self.tracks.publish_refusal(name)

    def track_verb(self, verb: wire.ResumeTrack | wire.PauseTrack) -> None:
        if verb.name != self.video_track and self.tracks.track_verb(
            verb.name, isinstance(verb, wire.ResumeTrack)
        ):
            return
        if verb.name != self.video_track:
            _log.info("peer %d: %s for unknown track %r ignored", self.cid, type(verb).__name__, verb.name)
            return
        if isinstance(verb, wire.ResumeTrack):
            self._resumed, self._paused = True, False
            if self.state == "connected":
                self.sender.start()
        else:
            self._resumed, self._paused = False, True
            self.sender.stop()

    # -- liveness ------------------------------------------------------------------------------------

    def _liveness_interval(self) -> float:
        return max(0.05, min(1.0, self._options.ping_timeout / 4))

    def _check_alive(self) -> None:
        silent = time.monotonic() - self.last_heard
        if silent > self._options.ping_timeout:
            self.drop(
                f"ping timeout: nothing heard for {silent:.1f} s (limit {self._options.ping_timeout:g} s)"
            )
        else:
            self._arm("liveness", self._liveness_interval(), self._check_alive)

    def _check_decoders(self) -> None:
        self.tracks.check_decoders()
        self._arm("decoders", _DECODER_WATCH_S, self._check_decoders)

    # -- HubClient (loop thread) -----------------------------------------------------------------------

    def on_packet(self, packet: _C.Packet) -> None:
        self.sender.push(packet)

    def on_audio(self, chunk: AudioChunk) -> None:
        self.tracks.on_audio(chunk, self.state == "connected")

    def on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "message" and not self.closed:
            self.messages.model_message(message.get("data"))
        # Session events have no counterpart on this wire; the end comes by close().

    def close(self, code: int, reason: str) -> None:
        """HubClient: the session ended (or the server shuts down). The client is told, then dropped."""
        if self.closed:
            return
        channel = self.messages.session_ended(reason.removeprefix("session ended: "))
        if channel is None:
            self._finish(reason, release=True)
            return
        self._finish(reason, release=False)
        # The last reference goes once the notice has left (or the drain gave up).
        task = self._loop.create_task(self._drain_then_release(channel))
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    def drop(self, reason: str) -> None:
        """End this connection (idempotent): the transport's decision, the session goes on."""
        if not self.closed:
            self._finish(reason, release=True)

    async def _drain_then_release(self, channel: rtc.DataChannel) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.drain(_SESSION_ENDED_DRAIN_S), _SESSION_ENDED_DRAIN_S + 0.5)
        self._release()

    def _finish(self, reason: str, *, release: bool) -> None:
        self.state = "closed"
        self.close_reason = reason
        _log.info("peer %d closed: %s", self.cid, reason)
        for name in list(self._timers):
            self._cancel(name)
        for task in list(self._tasks):
            task.cancel()
        self.messages.close()
        self.tracks.close()
        self._gathered.set()
        self.sender.close()
        self._hub.detach(self._live, self)
        try:
            self._on_closed(self, reason)
        finally:
            if release:
                self._release()

    def _release(self) -> None:
        """Drop every native object, callbacks first (they hold this peer: a cycle Python cannot see)."""
        observer = self._observer
        observer.on_connection_state_change = None
        observer.on_ice_gathering_change = None
        observer.on_ice_candidate = None
        observer.on_data_channel = None
        observer.on_track = None
        self.messages.release()
        self.sender.release()
        self.tracks.release()
        self.pc = None  # the last reference: libwebrtc closes the connection
        if self._hub.engine.config.trim_heap:
            # Once libwebrtc's threads have freed the connection's buffers (they do it asynchronously),
            # their pages go back to the OS (see reactor_engine.heap); on a worker thread, not the loop.
            self._loop.call_later(_TRIM_AFTER_S, self._loop.run_in_executor, None, heap.trim)

    # -- timers ----------------------------------------------------------------------------------------

    def _arm(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = self._loop.call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    async def transport_stats(self) -> dict[str, Any]:
        """libwebrtc's view of the outbound video and the selected candidate pair (``{}`` once closed)."""
        pc = self.pc
        if pc is None or self.closed:
            return {}
        return outbound_stats(await pc.get_stats())

    def stats(self) -> dict[str, Any]:
        return {
            "connection_id": self.cid,
            "state": self.state,
            "close_reason": self.close_reason,
            "paused": not self.sender.sending,
            "disconnects": self.disconnects,
            "connect_s": None if self.connected_at is None else round(self.connected_at - self.created, 4),
            **self.messages.stats(),
            "candidates_refused": self.candidates_refused,
            "video": self.sender.stats(),
            "media": self.tracks.stats(),
        }
