"""Client media into the model's input tracks, for every transport: the track table, the checks, the
errors told to the client.

The tracks of a session are numbered by their place in the capabilities' ``tracks`` list (the
descriptor's order): the WebSocket frame header carries that index, WebRTC clients name the track.
``MediaIn`` is one client's inbound media: it checks a frame or an audio block against the track it
is for (declared, an input, of that kind, codec, rate and channels), hands it to the track
(``VideoInputTrack.submit_encoded`` / ``AudioInputTrack.push_audio``, both callable from any thread),
and turns each refusal into a ``MediaRefused`` with a wire code and a message that names what was
expected. ``ErrorReports`` counts refusals by code and lets one report per code through per second,
so a flood of bad input is counted, not echoed; decoder errors (a corrupt JPEG or VP8 frame, a frame
bigger than the input slots), which surface on the decoder thread, are found by ``decoder_errors``.

Nothing here blocks: the checks are a few comparisons, the hand-over copies once with the GIL released.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from reactor_engine.errors import FrameError, InvalidArgumentError, ReactorError

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from reactor_engine.engine import Engine
    from reactor_engine.inputs import AudioInputTrack, AudioOutputTrack, VideoInputTrack

__all__ = ["ErrorReports", "MediaIn", "MediaRefused", "TrackSlot", "TrackTable"]

_REPORT_INTERVAL_S = 1.0
# The decoder counters a client is told about, and the wire code of each.
_DECODER_COUNTERS = (("decode_errors", "decode_error"), ("frames_refused", "frame_too_large"))


class MediaRefused(ReactorError):
    """An inbound frame or audio block was refused: ``code`` is the wire code; the message says what the
    track expected. Counted; the session goes on."""

    def __init__(self, code: str, message: str, track: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.track = track


@dataclass(frozen=True)
class TrackSlot:
    """One entry of the capabilities' ``tracks``: its index there, name, kind and client direction."""

    index: int
    name: str
    kind: str
    direction: str

    def __str__(self) -> str:
        return f"{self.name} (#{self.index}, {self.kind})"


class TrackTable:
    """The model's tracks by index and by name, with the running input and audio-output tracks."""

    def __init__(self, engine: Engine) -> None:
        tracks = engine.capabilities().get("tracks", [])
        self.slots = tuple(
            TrackSlot(i, str(t["name"]), str(t["kind"]), str(t["direction"])) for i, t in enumerate(tracks)
        )
        self.by_name = {slot.name: slot for slot in self.slots}
        self.inputs: dict[str, VideoInputTrack | AudioInputTrack] = dict(engine.inputs)
        self.audio_outputs: dict[str, AudioOutputTrack] = dict(engine.audio_outputs)

    def audio_output_indices(self) -> dict[str, tuple[int, AudioOutputTrack]]:
        """Each audio output with its index in the capabilities' ``tracks``."""
        return {name: (self.index_of(name), track) for name, track in self.audio_outputs.items()}

    def slot(self, index: int) -> TrackSlot | None:
        return self.slots[index] if 0 <= index < len(self.slots) else None

    def index_of(self, name: str) -> int:
        slot = self.by_name.get(name)
        return slot.index if slot is not None else 0

    def declared_inputs(self, kind: str | None = None) -> str:
        """The input tracks (of ``kind``), as an error message names them: ``webcam (#1, video)``."""
        names = [
            str(self.by_name[name])
            for name, track in self.inputs.items()
            if name in self.by_name and (kind is None or track.kind == kind)
        ]
        return ", ".join(names) if names else "none (this model takes no client media)"

    def input_named(self, name: str, kind: str) -> VideoInputTrack | AudioInputTrack:
        """The input track ``name`` of ``kind``; ``MediaRefused`` naming the declared inputs otherwise."""
        track = self.inputs.get(name)
        if track is None or track.kind != kind:
            what = "an output track" if name in self.by_name and track is None else "not a declared input"
            raise MediaRefused(
                "unknown_track",
                f"{kind} track {name!r} is {what}; this model's {kind} inputs: {self.declared_inputs(kind)}",
                name,
            )
        return track


class ErrorReports:
    """Refusals counted by code; ``due`` lets one report per code through each second."""

    def __init__(self, interval: float = _REPORT_INTERVAL_S) -> None:
        self.interval = interval
        self.counts: collections.Counter[str] = collections.Counter()
        self._last: dict[str, float] = {}
        self._unreported: collections.Counter[str] = collections.Counter()

    def due(self, code: str) -> int:
        """Count one refusal of ``code``; how many to report now (this one and the ones held back since
        the last report), or 0 while a report of that code went out less than ``interval`` ago."""
        self.counts[code] += 1
        self._unreported[code] += 1
        now = time.monotonic()
        if now - self._last.get(code, -1e9) < self.interval:
            return 0
        self._last[code] = now
        return self._unreported.pop(code)

    def total(self) -> int:
        return sum(self.counts.values())


class MediaIn:
    """One client's inbound media: checks, hand-over to the input tracks, decoder errors to report."""

    def __init__(self, table: TrackTable) -> None:
        self.table = table
        self.reports = ErrorReports()
        self.frames_in = 0
        self.audio_blocks_in = 0
        # Per decoder: the error count already told (decoder errors are the decoder's own counters).
        self._decoder_seen: dict[tuple[str, str, str], int] = {}
        self._video_sent: set[str] = set()

    # -- video -------------------------------------------------------------------------------------

    def video(
        self,
        track: VideoInputTrack | AudioInputTrack,
        data: Buffer,
        codec: str,
        capture_ns: int = -1,
        arrival_ns: int = -1,
    ) -> str:
        """Submit one encoded frame; the decoder's queue status (``queued`` / ``dropped_oldest``)."""
        if track.kind != "video":
            raise MediaRefused("kind_mismatch", f"track {track.name!r} is an audio input", track.name)
        try:
            status = track.submit_encoded(data, codec, capture_ns, arrival_ns)  # type: ignore[union-attr]
        except FrameError as exc:  # bigger than input_max_bytes: counted by the decoder (packets_refused)
            raise MediaRefused("frame_too_large", f"video input {track.name!r}: {exc}", track.name) from None
        except InvalidArgumentError as exc:
            raise MediaRefused("codec_mismatch", f"video input {track.name!r}: {exc}", track.name) from None
        self.frames_in += 1
        self._video_sent.add(track.name)
        return str(status)

    def decoder_errors(self) -> list[MediaRefused]:
        """The decoder errors of the video inputs this client sent to, since the last call: corrupt
        frames (``decode_error``) and frames bigger than the input slots (``frame_too_large``), one
        of each per decoder, with its ``last_error`` as the message."""
        found: list[MediaRefused] = []
        for name in tuple(self._video_sent):  # a native thread may add to it
            track = self.table.inputs.get(name)
            decoders: dict[str, Any] = getattr(track, "decoders", {})
            for codec, decoder in decoders.items():
                stats = decoder.stats()
                for counter, code in _DECODER_COUNTERS:
                    errors = int(stats.get(counter, 0))
                    key = (name, codec, counter)
                    seen = self._decoder_seen.get(key)
                    self._decoder_seen[key] = errors
                    if seen is None or errors <= seen:
                        continue
                    text = decoder.last_error() or counter.replace("_", " ")
                    what = f"{errors - seen} frame(s) not decoded"
                    found.append(MediaRefused(code, f"video input {name!r} ({codec}): {what}: {text}", name))
        return found

    def watch_decoders(self) -> None:
        """Take the decoders' current error counts as told (at the start of a client's stream)."""
        for name, track in self.table.inputs.items():
            for codec, decoder in getattr(track, "decoders", {}).items():
                stats = decoder.stats()
                for counter, _code in _DECODER_COUNTERS:
                    self._decoder_seen[(name, codec, counter)] = int(stats.get(counter, 0))

    # -- audio -------------------------------------------------------------------------------------

    def audio(
        self,
        track: VideoInputTrack | AudioInputTrack,
        pcm: Buffer,
        rate: int,
        channels: int,
    ) -> int:
        """Push interleaved int16 samples (``rate`` Hz, ``channels``) into an audio input; the sample
        frames queued. A mono track mixes several channels down."""
        if track.kind != "audio":
            raise MediaRefused("kind_mismatch", f"track {track.name!r} is a video input", track.name)
        want_rate, want_channels = int(track.rate), int(track.channels)  # type: ignore[union-attr]
        if rate != want_rate:
            raise MediaRefused(
                "rate_mismatch",
                f"audio input {track.name!r} takes {want_rate} Hz; got {rate} Hz (resample first)",
                track.name,
            )
        samples = np.frombuffer(memoryview(pcm), dtype="<i2")
        if channels < 1 or samples.size % channels:
            raise MediaRefused(
                "invalid_audio",
                f"audio input {track.name!r}: {samples.size} samples do not divide into {channels} channels",
                track.name,
            )
        if channels != want_channels and want_channels != 1:  # several into mono: the track mixes down
            raise MediaRefused(
                "channels_mismatch",
                f"audio input {track.name!r} takes {want_channels} channels; got {channels}",
                track.name,
            )
        block: np.ndarray[Any, np.dtype[Any]] = samples.reshape(-1, channels).T
        try:
            queued = track.push_audio(block, rate)  # type: ignore[union-attr]
        except (InvalidArgumentError, FrameError) as exc:
            raise MediaRefused("invalid_audio", f"audio input {track.name!r}: {exc}", track.name) from None
        self.audio_blocks_in += 1
        return int(queued)

    def stats(self) -> dict[str, Any]:
        return {
            "frames_in": self.frames_in,
            "audio_blocks_in": self.audio_blocks_in,
            "refused": dict(self.reports.counts),
        }
