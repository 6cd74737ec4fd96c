"""``Session``'s media methods: push input in (embedded hosts, tests), read audio out, input stats.

Kept apart from ``session.py`` (its packets, commands, messages and lifecycle); ``Session`` mixes
``SessionMedia`` in. Every method is safe on any host thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from reactor_engine.errors import ClosedError, InvalidArgumentError, NoActiveSession, ReactorTimeoutError
from reactor_engine.inputs import AudioInputTrack, VideoInputTrack

if TYPE_CHECKING:
    from reactor_engine.audio import AudioOutputTrack
    from reactor_engine.inputs import InputTrack

__all__ = ["SessionMedia"]

_AUDIO_SLICE_S = 0.05  # next_audio re-checks the session's end this often while too little is buffered


_GAUGES = frozenset({"ready", "held", "available", "queued"})  # levels, not counters: no deltas


def _numbers(stats: Mapping[str, Any]) -> dict[str, int]:
    return {
        k: int(v)
        for k, v in stats.items()
        if isinstance(v, int) and not isinstance(v, bool) and k not in _GAUGES
    }


def _counters(track: InputTrack | AudioOutputTrack) -> dict[str, dict[str, int]]:
    """Every integer counter of a track's ring (and decoders), to take deltas over a session."""
    out = {"ring": _numbers(track.ring.stats())}
    if isinstance(track, VideoInputTrack):
        for codec, decoder in track.decoders.items():
            out[codec] = _numbers(decoder.stats())
    return out


class SessionMedia:
    """Input and audio methods of a ``Session`` (which sets these attributes)."""

    session_id: str
    _ended: threading.Event
    _inputs: Mapping[str, InputTrack]
    _audio_outputs: Mapping[str, AudioOutputTrack]
    _media_at_start: dict[str, dict[str, dict[str, int]]]
    _media_at_end: dict[str, dict[str, dict[str, int]]] | None

    # -- input ------------------------------------------------------------------------------------

    @property
    def inputs(self) -> dict[str, InputTrack]:
        """The model's input tracks (``VideoIn``/``AudioIn``), by name."""
        return dict(self._inputs)

    def _input(self, name: str, kind: type[VideoInputTrack] | type[AudioInputTrack]) -> Any:
        track = self._inputs.get(name)
        if track is None:
            listed = ", ".join(f"{n} ({t.kind})" for n, t in self._inputs.items()) or (
                "none (declare one on the model class, e.g. webcam = VideoIn())"
            )
            raise InvalidArgumentError(f"no input track named {name!r}; this model's inputs are: {listed}")
        if not isinstance(track, kind):
            other = "push_audio" if isinstance(track, AudioInputTrack) else "push_frame or push_encoded"
            raise InvalidArgumentError(f"input track {name!r} is a {track.kind} input; use {other}")
        if self._ended.is_set():
            raise NoActiveSession(f"session {self.session_id} has ended; its inputs take nothing more")
        return track

    def push_frame(self, track: str, frame: Any, capture_ns: int | None = None) -> int:
        """Copy an ``(H, W, 3)`` uint8 RGB frame into the input ``track``; returns its index."""
        video: VideoInputTrack = self._input(track, VideoInputTrack)
        return video.push_frame(frame, capture_ns)

    def push_encoded(
        self, track: str, data: Any, codec: str, capture_ns: int = -1, arrival_ns: int = -1
    ) -> str:
        """Queue one encoded frame (``"jpeg"`` or ``"vp8"``) for the input ``track``'s decoder."""
        video: VideoInputTrack = self._input(track, VideoInputTrack)
        return video.submit_encoded(data, codec, capture_ns, arrival_ns)

    def push_audio(self, track: str, samples: Any, rate: int | None = None) -> int:
        """Queue samples on the audio input ``track`` (see ``AudioInputTrack.push_audio``)."""
        audio: AudioInputTrack = self._input(track, AudioInputTrack)
        return audio.push_audio(samples, rate)

    # -- audio out --------------------------------------------------------------------------------

    @property
    def audio_outputs(self) -> dict[str, AudioOutputTrack]:
        return dict(self._audio_outputs)

    def _audio_output(self, name: str | None) -> AudioOutputTrack:
        if name is None and len(self._audio_outputs) == 1:
            return next(iter(self._audio_outputs.values()))
        track = self._audio_outputs.get(name) if name is not None else None
        if track is None:
            listed = ", ".join(self._audio_outputs) or "none (declare one: voice = AudioOut())"
            which = "name one" if name is None and self._audio_outputs else f"no audio output named {name!r}"
            raise InvalidArgumentError(f"{which}; this model's audio outputs are: {listed}")
        return track

    def next_audio(
        self, track: str | None = None, frames: int = 960, timeout: float | None = None
    ) -> tuple[npt.NDArray[np.int16], int] | None:
        """The next ``frames`` sample frames of an ``AudioOut`` (``track=None``: the only one), as
        ``((channels, M) int16, pts_ns of the first)``: a copy, ``M == frames`` unless the session has
        ended (then the rest, and ``None`` once none is left). ``ReactorTimeoutError`` if fewer than
        ``frames`` arrive within ``timeout`` s while the session runs."""
        out = self._audio_output(track)
        if (
            not isinstance(frames, int)
            or isinstance(frames, bool)
            or not 1 <= frames <= out.ring.capacity_frames
        ):
            raise InvalidArgumentError(
                f"next_audio(frames=...) takes an int from 1 to {out.ring.capacity_frames}; got {frames!r}"
            )
        channels = out.channels
        buffer = np.empty(frames * channels, dtype=np.int16)
        end = None if timeout is None else time.monotonic() + timeout
        got, first_pts = 0, 0
        while got < frames:
            ended = self._ended.is_set()
            with out.consumer_lock:
                if out.owner is not self:
                    break
                wait = 0.0 if ended else _AUDIO_SLICE_S
                if end is not None:
                    wait = max(0.0, min(wait, end - time.monotonic()))
                try:
                    rest: Any = buffer[got * channels :]  # numpy's stubs: a Buffer only on 3.12+
                    count, pts = out.ring.read_into(rest, frames - got, wait)
                except ClosedError:
                    break
            if count and got == 0:
                first_pts = pts
            got += count
            if ended and count == 0:
                break
            if got < frames and end is not None and time.monotonic() >= end:
                raise ReactorTimeoutError(
                    f"audio output '{out.name}': {got} of {frames} frames arrived within {timeout} s"
                )
        if got == 0:
            return None
        return buffer[: got * channels].reshape(got, channels).T.copy(), first_pts

    # -- stats ------------------------------------------------------------------------------------

    def _media_snapshot(self) -> dict[str, dict[str, dict[str, int]]]:
        return {name: _counters(track) for name, track in {**self._inputs, **self._audio_outputs}.items()}

    def _media_stats(self) -> dict[str, Any]:
        """Per input / audio track: this session's counter deltas (ring, decoders) and Python counts."""
        now = self._media_at_end or self._media_snapshot()
        out: dict[str, Any] = {}
        for name, track in {**self._inputs, **self._audio_outputs}.items():
            start = self._media_at_start.get(name, {})
            deltas = {
                part: {k: v - start.get(part, {}).get(k, 0) for k, v in numbers.items()}
                for part, numbers in now.get(name, {}).items()
            }
            ring = deltas.get("ring", {})
            entry: dict[str, Any] = {
                "kind": track.kind,
                "direction": track.direction,
                "counters": deltas,
                "drops": ring.get("frames_dropped", 0) + ring.get("frames_skipped", 0),
            }
            if isinstance(track, VideoInputTrack):
                entry["refused"] = ring.get("frames_refused", 0) + track.frames_invalid
                entry["decoders"] = {c: {"last_error": d.last_error()} for c, d in track.decoders.items()}
                entry["drops"] += sum(deltas.get(c, {}).get("packets_dropped", 0) for c in track.decoders)
            elif isinstance(track, AudioInputTrack):
                entry["rate_mismatch"] = track.rate_mismatch
                entry["refused"] = track.format.invalid
            else:
                entry["samples_emitted"] = track.samples_emitted
                entry["late_blocks"] = track.late_blocks
            out[name] = entry
        return {
            "inputs": {name: out[name] for name in self._inputs},
            "audio_outputs": {name: out[name] for name in self._audio_outputs},
        }
