"""A peer's media besides the model's video: the client's camera and microphone in, the model's audio out.

**Video in.** A transceiver the client sends a declared ``VideoIn`` on (``track_mapping``: ``sendonly``)
gets a receiver ``FrameTransform`` (``VideoReceiver``): each VP8 frame, after depacketization and
before libwebrtc's decoder, goes to ``VideoInputTrack.submit_encoded(..., "vp8")`` (one copy into the
native decoder's queue, GIL released). libwebrtc is then handed a tiny 16x16 VP8 frame in its place
(a key frame for a key frame, an all-skip delta for a delta), so it never decodes the stream a second
time and stays content: measured with two reactor-webrtc peers, dropping every frame instead
(``FrameAction.Drop``) made libwebrtc ask for a key frame every ~0.4 s (its "no decodable frame"
timer), a key-frame storm that starved the sender's encoder; replaced frames gave no request in 10 s.
When our decoder needs a key frame (``need_keyframe()``: a frame was lost or corrupt), the next delta
goes to libwebrtc as garbage instead: its decoder fails and it sends the PLI itself; the sender's key
frame came 150-500 ms later (measured), and at most one such request goes per 0.5 s.

Frames from a peer that negotiated reactor-webrtc's frame metadata carry a trailer (a protobuf, its
u32 length, ``RXMT``) that the transform sees: it is cut off (a slice, not a copy) before the frame
is submitted, and kept behind the replacement so libwebrtc's own metadata step reads it as usual.

**Audio in.** A ``sendonly`` audio entry for a declared ``AudioIn`` makes its transceiver receive-only;
the remote track libwebrtc announces (``on_track``, in m-line order among the offer's sending audio
transceivers, as reactor-sdk matches its own) delivers 10 ms PCM blocks (``on_audio_frame``), pushed
into the track (``push_audio``). libwebrtc decodes Opus at 48 kHz, the rate of ``AudioIn(rate=0)``;
a track at another rate refuses the blocks (counted, reported).

**Audio out.** A ``recvonly`` audio entry for a declared ``AudioOut`` gets a local-source audio track
(``AudioSender``), fed with the session's 20 ms chunks (``push_pcm``, in 10 ms blocks: it sends
nothing of a 20 ms block) while the peer is connected and the client has not paused it; libwebrtc
encodes Opus. Each chunk's ``capture_time_us`` is its first
sample's time on the core clock (``time_micros()`` is that clock, in µs), as the video's, so the
client can play the two in sync.

Threads: the transform and the audio callback run on libwebrtc's threads and do only the hand-over
and a few counts (errors are posted to the loop, at most every 0.25 s); everything else is on the
loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import reactor_webrtc as rtc

from reactor_engine.errors import ReactorError
from reactor_engine.transports.inbound import ErrorReports, MediaIn, MediaRefused, TrackTable
from reactor_engine.transports.webrtc.channels import ignore
from reactor_engine.transports.webrtc.media import peer_connection_factory, post_to_loop
from reactor_engine.transports.webrtc.sdp import TrackMapping

if TYPE_CHECKING:
    from reactor_engine.inputs import AudioInputTrack, AudioOutputTrack, VideoInputTrack
    from reactor_engine.transports.audio import AudioChunk

__all__ = ["AudioReceiver", "AudioSender", "PeerTracks", "VideoReceiver", "trailer_length"]

_log = logging.getLogger("reactor_engine.webrtc")

# libvpx's encoding of a flat 16x16 picture (cpu-used 8, realtime) and of the same picture again (every
# macroblock skipped): what libwebrtc's decoder gets in place of each inbound frame.
TINY_KEY_FRAME = bytes.fromhex("1002009d012a100010000047088585889984880202000c0d6000fec3e000")
TINY_DELTA_FRAME = bytes.fromhex("b10100011010001800303ff40c000000fec3e000")
# Not VP8 (no key-frame start code, partition sizes past the end): libwebrtc's decoder fails on it.
_GARBAGE_FRAME = b"\x00\x01\x02" + b"\xff" * 29
_KEYFRAME_REQUEST_GAP_S = 0.5
_ERROR_POST_GAP_S = 0.25
_TRAILER_MAGIC = b"RXMT"
_U32 = struct.Struct("<I")


def trailer_length(data: bytes) -> int:
    """The length of reactor-webrtc's frame-metadata trailer at the end of ``data`` (0: none)."""
    size = len(data)
    if size < 8 or data[-4:] != _TRAILER_MAGIC:
        return 0
    length = _U32.unpack_from(data, size - 8)[0] + 8
    return length if length <= size else 0


class _ErrorPost:
    """A native callback's refusals, posted to the loop at most every 0.25 s (with the count since)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, report: Callable[[MediaRefused, int], None]) -> None:
        self._loop, self._report = loop, report
        self._last = -1e9
        self._held = 0
        self.count = 0

    def __call__(self, exc: MediaRefused) -> None:
        self.count += 1
        self._held += 1
        now = time.monotonic()
        if now - self._last >= _ERROR_POST_GAP_S:
            self._last = now
            held, self._held = self._held, 0
            post_to_loop(self._loop, self._report, exc, held)


class VideoReceiver:
    """The receiver transform of one inbound VP8 transceiver, bound to a ``VideoIn`` (see the module)."""

    def __init__(self, track: VideoInputTrack, media: MediaIn, errors: _ErrorPost) -> None:
        self.track = track
        self.name = track.name
        self._media = media
        self._errors = errors
        self.active = True  # False once the peer or its session is over: frames are no longer submitted
        self.transform: rtc.FrameTransform | None = rtc.FrameTransform(self.on_frame)
        self._asked_at = -1e9
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.queue_drops = 0
        self.keyframe_requests = 0

    def on_frame(self, frame: rtc.EncodedFrame) -> rtc.FrameAction:
        """libwebrtc's thread: hand the frame over, give libwebrtc its stand-in (or a key-frame request)."""
        data = frame.data
        key = frame.is_key_frame
        trailer = trailer_length(data)
        payload = len(data) - trailer
        self.frames += 1
        self.bytes += payload
        if key:
            self.keyframes += 1
        if self.active:
            try:
                view = memoryview(data)[:payload]
                if self._media.video(self.track, view, "vp8", -1, time.monotonic_ns()) != "queued":
                    self.queue_drops += 1
            except MediaRefused as exc:
                self._errors(exc)
            except ReactorError as exc:  # the track closed under a late frame
                _log.debug("video input %s: frame not submitted: %s", self.name, exc)
        tail = data[payload:] if trailer else b""
        now = time.monotonic()
        if (
            not key
            and self.active
            and now - self._asked_at >= _KEYFRAME_REQUEST_GAP_S
            and self.track.need_keyframe()
        ):
            self._asked_at = now
            self.keyframe_requests += 1
            frame.replace_data(_GARBAGE_FRAME + tail)
        else:
            frame.replace_data((TINY_KEY_FRAME if key else TINY_DELTA_FRAME) + tail)
        return rtc.FrameAction.Forward

    def release(self) -> None:
        """No more frames; the transform (which holds this receiver: a cycle through a native object)
        is let go with the connection."""
        self.active = False
        self.transform = None

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "video",
            "frames": self.frames,
            "keyframes": self.keyframes,
            "bytes": self.bytes,
            "queue_drops": self.queue_drops,
            "keyframe_requests": self.keyframe_requests,
            "refused": self._errors.count,
        }


class AudioReceiver:
    """The PCM blocks of one remote audio track into an ``AudioIn`` (libwebrtc's audio thread)."""

    def __init__(self, track: AudioInputTrack, media: MediaIn, errors: _ErrorPost) -> None:
        self.track = track
        self.name = track.name
        self._media = media
        self._errors = errors
        self.active = True
        self.remote: rtc.Track | None = None
        self.blocks = 0
        self.frames = 0
        self.rates: set[tuple[int, int]] = set()

    def attach(self, remote: rtc.Track) -> None:
        self.remote = remote
        remote.on_audio_frame(self.on_audio)

    def on_audio(self, pcm: bytes, rate: int, channels: int, frames: int) -> None:
        self.blocks += 1
        self.frames += frames
        if (rate, channels) not in self.rates:
            self.rates.add((rate, channels))
        if not self.active:
            return
        try:
            self._media.audio(self.track, pcm, rate, channels)
        except MediaRefused as exc:
            self._errors(exc)
        except ReactorError as exc:
            _log.debug("audio input %s: block not pushed: %s", self.name, exc)

    def release(self) -> None:
        self.active = False
        if self.remote is not None:
            self.remote.on_audio_frame(ignore)
            self.remote = None

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "audio",
            "blocks": self.blocks,
            "seconds": round(self.frames / max(1, int(self.track.rate)), 3),
            "formats": sorted(f"{rate} Hz x{channels}" for rate, channels in self.rates),
            "refused": self._errors.count,
        }


class AudioSender:
    """One ``AudioOut`` to one peer: a local-source audio track fed with the session's chunks."""

    def __init__(self, cid: int, track: AudioOutputTrack) -> None:
        self.name = track.name
        self.track: rtc.Track | None = peer_connection_factory().create_audio_track_with_local_source(
            f"audio-{cid}-{track.name}"
        )
        self.paused = False
        self.chunks_pushed = 0
        self.chunks_skipped = 0

    def release(self) -> None:
        self.track = None  # libwebrtc's local-source track goes with its last reference

    def push(self, chunk: AudioChunk, connected: bool) -> None:
        track = self.track
        if track is None:
            return
        if not connected or self.paused:
            self.chunks_skipped += 1
            return
        for pcm, capture_us in _blocks_of_10ms(chunk):
            track.push_pcm(pcm, chunk.rate, chunk.channels, capture_us)
        self.chunks_pushed += 1

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "audio",
            "paused": self.paused,
            "chunks_pushed": self.chunks_pushed,
            "chunks_skipped": self.chunks_skipped,
        }


def _blocks_of_10ms(chunk: AudioChunk) -> list[tuple[bytes, int]]:
    """The chunk as 10 ms blocks with their capture times (µs): ``push_pcm`` sends nothing of a block of
    any other length (measured: 20 ms blocks gave no packet at all). Made once per chunk, for every
    peer; a last partial block (at the session's end) is dropped."""
    blocks: list[tuple[bytes, int]] | None = chunk.memo.get("webrtc")
    if blocks is None:
        pcm = chunk.pcm()
        frames = max(1, chunk.rate // 100)
        size = 2 * frames * chunk.channels
        blocks = [
            (pcm[start : start + size], (chunk.pts_ns + i * 10_000_000) // 1000)
            for i, start in enumerate(range(0, len(pcm) - size + 1, size))
        ]
        chunk.memo["webrtc"] = blocks
    return blocks


class PeerTracks:
    """The inputs and audio outputs of one peer: bound from its offer, fed and counted (loop thread)."""

    def __init__(
        self,
        cid: int,
        tracks: TrackTable,
        loop: asyncio.AbstractEventLoop,
        report: Callable[[str, str], None],
        counted: Callable[[str], None] | None = None,
    ) -> None:
        self.cid = cid
        self._counted = counted  # each refusal, by code (the hub's metric)
        self.table = tracks
        self._loop = loop
        self._report = report
        self.reports = ErrorReports()
        self.video_in: dict[str, VideoReceiver] = {}
        self.audio_in: dict[str, AudioReceiver] = {}
        self.audio_out: dict[str, AudioSender] = {}
        self.published: set[str] = set()
        # The offer's sending audio transceivers, in m-line order (their receiver, or None where refused),
        # and the remote audio tracks libwebrtc announced, in order: matched one to one.
        self._audio_slots: list[AudioReceiver | None] = []
        self._remote_audio: list[rtc.Track] = []

    # -- binding (loop thread, during negotiation) ----------------------------------------------------

    async def bind(self, transceiver: rtc.Transceiver, entry: TrackMapping | None) -> bool:
        """Bind ``transceiver`` to the input or audio output ``entry`` names; False if it is neither."""
        if entry is None:
            return False
        kind = transceiver.kind()
        if entry.kind == "audio" and entry.direction == "sendonly" and kind == rtc.MediaKind.Audio:
            receiver = self._audio_receiver(entry.name)
            self._audio_slots.append(receiver)
            self._match_audio()
            if receiver is None:
                return False
            await transceiver.set_direction(rtc.TransceiverDirection.RecvOnly)
            return True
        if entry.direction == "sendonly" and entry.kind == "video" and kind == rtc.MediaKind.Video:
            track = self.table.inputs.get(entry.name)
            if track is None or track.kind != "video":
                self._refused_offer(entry)
                return False
            receiver_v = VideoReceiver(track, MediaIn(self.table), self._error_post())  # type: ignore[arg-type]
            self.video_in[entry.name] = receiver_v
            await transceiver.set_codec_preferences([rtc.VideoCodec.Vp8])
            assert receiver_v.transform is not None  # released only once the peer is closed
            transceiver.set_receiver_transform(receiver_v.transform)
            await transceiver.set_direction(rtc.TransceiverDirection.RecvOnly)
            return True
        if entry.direction == "recvonly" and entry.kind == "audio" and kind == rtc.MediaKind.Audio:
            output = self.table.audio_outputs.get(entry.name)
            if output is None or entry.name in self.audio_out:
                return False
            sender = AudioSender(self.cid, output)
            self.audio_out[entry.name] = sender
            assert sender.track is not None  # released only once the peer is closed
            await transceiver.set_track(sender.track)
            await transceiver.set_direction(rtc.TransceiverDirection.SendOnly)
            return True
        return False

    def _audio_receiver(self, name: str) -> AudioReceiver | None:
        track = self.table.inputs.get(name)
        if track is None or track.kind != "audio" or name in self.audio_in:
            self._refused_offer_name(name, "audio")
            return None
        receiver = AudioReceiver(track, MediaIn(self.table), self._error_post())  # type: ignore[arg-type]
        self.audio_in[name] = receiver
        return receiver

    def _refused_offer(self, entry: TrackMapping) -> None:
        self._refused_offer_name(entry.name, entry.kind)

    def _refused_offer_name(self, name: str, kind: str) -> None:
        _log.info(
            "peer %d: the offer sends a %s track %r that is not a declared input (inputs: %s); not received",
            self.cid, kind, name, self.table.declared_inputs(),
        )  # fmt: skip

    def remote_track(self, kind: rtc.MediaKind, track: rtc.Track) -> None:
        """libwebrtc announced a remote track (posted from ``on_track``)."""
        if kind == rtc.MediaKind.Audio:
            self._remote_audio.append(track)
            self._match_audio()

    def _match_audio(self) -> None:
        for slot, remote in zip(self._audio_slots, self._remote_audio, strict=False):
            if slot is not None and slot.remote is None and slot.active:
                slot.attach(remote)

    def _error_post(self) -> _ErrorPost:
        return _ErrorPost(self._loop, self._refusal)

    def _refusal(self, exc: MediaRefused, count: int) -> None:
        """A native callback's refusal (loop thread): counted, told to the client at most once a second."""
        for _ in range(count - 1):
            self.reports.due(exc.code)
        if self._counted is not None:
            for _ in range(count):
                self._counted(exc.code)
        if self.reports.due(exc.code):
            self._report(exc.code, str(exc))

    # -- client requests and session events (loop thread) ---------------------------------------------

    def publish_refusal(self, name: str) -> str | None:
        """``None`` if the client may publish ``name`` (a declared input), else why not."""
        if name in self.table.inputs:
            self.published.add(name)
            return None
        return f"this model has no input track {name!r}; its inputs: {self.table.declared_inputs()}"

    def unpublish(self, name: str) -> None:
        self.published.discard(name)

    def track_verb(self, name: str, resume: bool) -> bool:
        """Pause or resume an audio output; False if ``name`` is none of this peer's."""
        sender = self.audio_out.get(name)
        if sender is None:
            return False
        sender.paused = not resume
        return True

    def on_audio(self, chunk: AudioChunk, connected: bool) -> None:
        sender = self.audio_out.get(chunk.track)
        if sender is not None:
            sender.push(chunk, connected)

    def check_decoders(self) -> None:
        """Decoder errors of the video this peer sent (a corrupt frame), told to the client."""
        for receiver in self.video_in.values():
            for exc in receiver._media.decoder_errors():
                self._refusal(exc, 1)

    def close(self) -> None:
        """No more input from this peer (its frames and blocks are no longer submitted)."""
        for receiver in self.video_in.values():
            receiver.active = False
        for audio in self.audio_in.values():
            audio.release()

    def release(self) -> None:
        """Drop this peer's native objects (after ``close``; the connection is being let go): the audio
        tracks it was sent, the receiver transforms and the remote tracks; the counters stay."""
        self.close()
        for sender in self.audio_out.values():
            sender.release()
        for receiver in self.video_in.values():
            receiver.release()
        self._remote_audio.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "inputs": {
                **{name: r.stats() for name, r in self.video_in.items()},
                **{name: r.stats() for name, r in self.audio_in.items()},
            },
            "published": sorted(self.published),
            "audio_out": {name: s.stats() for name, s in self.audio_out.items()},
            "refused": dict(self.reports.counts),
        }
