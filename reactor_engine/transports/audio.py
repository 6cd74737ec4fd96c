"""The session's audio out: each ``AudioOut`` ring read on the loop thread and fanned out to the clients.

Each ``AudioOutputTrack.ring`` (a native ``AudioRing``) signals its eventfd once 20 ms of samples are
buffered; ``loop.add_reader`` wakes the loop, which reads whole 20 ms chunks (``read_into`` a buffer
preallocated per track) and hands each to every client that takes audio (``AudioClient.on_audio``).
The rings are read with no client too, as the primary video output is, so they never fill and a
client that comes late hears the present, not half a second of the past. At the session's end the
last partial chunk goes out as well.

A chunk's ``pts_ns`` is the time of its first sample on the core clock (``time.monotonic_ns``, the
clock of the video frames' ``pts_ns``), so a client plays audio and video in sync. A ring is read only
while its track's ``owner`` is this session, under the track's ``consumer_lock``. The chunk's
samples are valid only during the ``on_audio`` call; ``AudioChunk.pcm()`` is their one ``bytes``
copy, made on first use and shared by every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from reactor_engine.errors import ReactorError

if TYPE_CHECKING:
    from reactor_engine.inputs import AudioOutputTrack
    from reactor_engine.transports.live import LiveSession

__all__ = ["AudioChunk", "AudioClient", "AudioFanOut"]

_log = logging.getLogger("reactor_engine.hub")

_CHUNK_MS = 20
_MAX_CHUNKS_PER_WAKE = 50  # bounded: a second of audio per callback, then the loop serves others


@runtime_checkable
class AudioClient(Protocol):
    """A hub client that takes the model's audio (WebSocket, WebRTC); called on the loop thread."""

    def on_audio(self, chunk: AudioChunk) -> None:
        """One chunk of an ``AudioOut`` track; its samples are valid only during the call."""


class AudioChunk:
    """Up to 20 ms of one audio output: interleaved int16 ``samples`` (a view, valid during the fan-out),
    ``frames`` per channel, ``pts_ns`` of the first, ``index`` (the chunk's number in the session) and
    ``track_index`` (the track's place in the capabilities' ``tracks``)."""

    __slots__ = (
        "_pcm", "channels", "frames", "index", "memo", "pts_ns", "rate", "samples", "track", "track_index",
    )  # fmt: skip

    def __init__(
        self,
        track: str,
        track_index: int,
        index: int,
        rate: int,
        channels: int,
        samples: np.ndarray[Any, np.dtype[np.int16]],
        pts_ns: int,
    ) -> None:
        self.track, self.track_index, self.index = track, track_index, index
        self.rate, self.channels = rate, channels
        self.samples = samples
        self.frames = samples.size // channels
        self.pts_ns = pts_ns
        self._pcm: bytes | None = None
        # What a transport builds from the chunk once for all its clients (the WebSocket message).
        self.memo: dict[str, Any] = {}

    def pcm(self) -> bytes:
        """The samples as little-endian int16 bytes: one copy, shared by every client."""
        if self._pcm is None:
            self._pcm = self.samples.astype("<i2", copy=False).tobytes()
        return self._pcm


class _Output:
    """One ``AudioOut`` track of a live session: its ring, read buffer and counters."""

    def __init__(self, name: str, track_index: int, track: AudioOutputTrack) -> None:
        self.name, self.track_index = name, track_index
        self.track = track
        self.ring = track.ring
        self.rate, self.channels = int(track.rate), int(track.channels)
        self.chunk_frames = max(1, self.rate * _CHUNK_MS // 1000)
        self.buffer = np.zeros(self.chunk_frames * self.channels, dtype=np.int16)
        self.out: Any = self.buffer  # numpy's stubs: a Buffer only on Python 3.12+
        self.reading = False
        self.chunks = 0
        self.frames = 0


class AudioFanOut:
    """The audio outputs of one live session, read from ``start()`` until ``stop()`` (loop thread)."""

    def __init__(
        self,
        live: LiveSession,
        outputs: dict[str, tuple[int, AudioOutputTrack]],
        sent: Callable[[str], None] | None = None,
    ) -> None:
        self._live = live
        self._outputs = [_Output(name, index, track) for name, (index, track) in outputs.items()]
        self._sent = sent  # counts each chunk (the hub's metric)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for output in self._outputs:
            loop.add_reader(output.ring.fileno(), self._on_ready, output)
            output.reading = True

    def stop(self) -> None:
        """The last samples out (a partial chunk included), then no more reading (idempotent)."""
        for output in self._outputs:
            if not output.reading:
                continue
            self._drain(output, final=True)
            output.reading = False
            with contextlib.suppress(ValueError, OSError, ReactorError):
                asyncio.get_running_loop().remove_reader(output.ring.fileno())

    def _on_ready(self, output: _Output) -> None:
        if not output.reading:
            return
        output.ring.clear_event()  # before draining: samples written meanwhile wake us again
        if self._drain(output, final=False):
            asyncio.get_running_loop().call_soon(self._on_ready, output)

    def _drain(self, output: _Output, *, final: bool) -> bool:
        """Fan out the whole chunks buffered (and, if ``final``, the rest); True if more are waiting."""
        if output.track.owner is not self._live.session:
            return False  # the track already serves the next session: its samples are not ours
        for _ in range(_MAX_CHUNKS_PER_WAKE):
            available = output.ring.available
            if available <= 0 or (available < output.chunk_frames and not final):
                return False
            try:
                with output.track.consumer_lock:  # session.next_audio may read the ring too
                    frames, pts_ns = output.ring.read_into(output.out, 1, 0.0)
            except ReactorError:
                _log.exception("reading audio output %s failed", output.name)
                return False
            if frames <= 0:
                return False
            self._fan_out(output, frames, pts_ns)
        return True

    def _fan_out(self, output: _Output, frames: int, pts_ns: int) -> None:
        chunk = AudioChunk(
            output.name, output.track_index, output.chunks, output.rate, output.channels,
            output.buffer[: frames * output.channels], pts_ns,
        )  # fmt: skip
        output.chunks += 1
        output.frames += frames
        if self._sent is not None:
            self._sent(output.name)
        for client in self._live.clients:
            if isinstance(client, AudioClient):
                try:
                    client.on_audio(chunk)
                except Exception:
                    _log.exception("a %s client failed on audio", getattr(client, "kind", "?"))

    def stats(self) -> dict[str, Any]:
        return {
            output.name: {"chunks_sent": output.chunks, "seconds_sent": round(output.frames / output.rate, 3)}
            for output in self._outputs
        }
