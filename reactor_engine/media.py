"""Media declarations beside ``VideoOut``: ``VideoIn``, ``AudioIn``, ``AudioOut``; and ``MediaBundle``.

As in the seed era (1.7.5), a track is declared on the model class and named by its attribute::

    @model(name="webcam-effect")
    class Effect(VideoModel):
        main_video = VideoOut(default=True)
        webcam = VideoIn()              # the client's camera (a "sendonly" track, seen from the client)
        mic = AudioIn()                 # the client's microphone
        voice = AudioOut(rate=48000)    # sound to the client ("recvonly")

On a model instance run by an engine, ``self.<name>`` is the running track (``inputs.py``):
``self.webcam.latest()``, ``self.mic.read(960)``, ``self.voice.emit(samples)``. The declarations
themselves hold only what the class says; the engine builds the native rings from them once, at load.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from reactor_engine.errors import InvalidArgumentError, NoActiveSession

if TYPE_CHECKING:
    from reactor_engine import _C

__all__ = ["AudioIn", "AudioOut", "MediaBundle", "MediaTrack", "VideoIn"]

_MAX_CHANNELS = 8


class MediaTrack:
    """Base of the input and audio declarations: name = attribute name; ``self.<name>`` resolves to the
    running track while an engine runs the model (as ``VideoOut`` does)."""

    kind: ClassVar[str] = ""
    direction: ClassVar[str] = ""

    def __init__(self, rate: float) -> None:
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate < 0:
            raise ValueError(f"{type(self).__name__} rate must be a number >= 0; got {rate!r}")
        self.rate = float(rate)
        self.name = ""
        self.default = False  # seed-era Track property; only a VideoOut can be the default track

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        running = getattr(instance, "__reactor_tracks__", {}).get(self.name)
        return running if running is not None else self

    def _unattached(self) -> NoActiveSession:
        return NoActiveSession(
            f"track '{self.name}' is not attached to a running engine; run the model in an Engine first"
        )

    def latest(self) -> Any:
        raise self._unattached()

    def read(self, *args: Any, **kwargs: Any) -> Any:
        raise self._unattached()

    def emit(self, *args: Any, **kwargs: Any) -> None:
        if self.direction == "sendonly":
            raise TypeError(f"track '{self.name}' is an input ({type(self).__name__}); only outputs emit")
        raise self._unattached()

    def describe(self) -> dict[str, str]:
        """The seed-era (1.7.5) track descriptor: directions from the client's point of view."""
        return {"name": self.name, "kind": self.kind, "direction": self.direction}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, rate={self.rate})"


class VideoIn(MediaTrack):
    """Declares a video input track (the client's camera): ``webcam = VideoIn()``.

    ``rate`` is informative (the rate the model expects; 0: any), as in the seed era. Frames arrive
    decoded into preallocated slots of the engine's ``input_max_width`` x ``input_max_height``.
    """

    kind = "video"
    direction = "sendonly"

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__(rate)


class AudioIn(MediaTrack):
    """Declares an audio input track (the client's microphone): ``mic = AudioIn()``.

    ``rate``: the sample rate the track takes (Hz); ``0`` uses the engine's ``audio_rate``. Samples at
    another rate are refused with a clear error (resample first). ``channels``: 1 (mono) or more.
    """

    kind = "audio"
    direction = "sendonly"

    def __init__(self, rate: float = 0.0, channels: int = 1) -> None:
        super().__init__(rate)
        self.channels = _check_channels(type(self).__name__, channels)


class AudioOut(MediaTrack):
    """Declares an audio output track: ``voice = AudioOut(rate=48000)``.

    ``emit`` takes ``(M,)``, ``(1, M)`` or ``(channels, M)`` int16 samples, or floats in ``[-1, 1]``, at
    ``rate`` Hz; ``None`` sends 20 ms of silence.
    """

    kind = "audio"
    direction = "recvonly"

    def __init__(self, rate: float = 48000.0, channels: int = 1) -> None:
        super().__init__(rate)
        if self.rate <= 0 or self.rate != int(self.rate):
            raise ValueError(f"AudioOut rate must be a whole number of Hz > 0; got {rate!r}")
        self.channels = _check_channels(type(self).__name__, channels)


def _check_channels(what: str, channels: int) -> int:
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= _MAX_CHANNELS:
        raise ValueError(f"{what} channels must be an int from 1 to {_MAX_CHANNELS}; got {channels!r}")
    return channels


class MediaBundle(Mapping[str, Any]):
    """What ``on_media(bundle)`` receives: the newest input of every input track, at a poll point.

    - ``bundle.video[name]``: the newest frame of each video input that has one, a read-only
      ``(H, W, 3)`` uint8 view (the same array ``track.latest()`` returns); ``bundle.frames[name]`` is
      that frame with its metadata (``index``, ``capture_ns``, ``arrival_ns``, ``ready_ns``, ...).
    - ``bundle.audio[name]``: the samples each audio input received since the previous read, an
      ``(channels, M)`` int16 view (only tracks that received some).
    - ``bundle.new``: the names of the tracks with input that arrived since the previous bundle.
    - ``bundle[name]`` / ``bundle.get(name)``: the video frame or audio block of ``name``.

    Views are valid until the next poll point (``should_stop()``, ``emit``, ``ctx.wait()``, ``read``):
    copy what must live longer. The engine builds one only when new input arrived, and calls
    ``on_media`` on the session thread, never on a network thread.
    """

    __slots__ = ("audio", "frames", "new", "video")

    def __init__(
        self,
        frames: Mapping[str, _C.InputFrame],
        audio: Mapping[str, npt.NDArray[np.int16]],
        new: frozenset[str],
    ) -> None:
        self.frames = dict(frames)
        self.video: dict[str, npt.NDArray[np.uint8]] = {name: f.array for name, f in self.frames.items()}
        self.audio = dict(audio)
        self.new = new

    def __getitem__(self, name: str) -> Any:
        if name in self.video:
            return self.video[name]
        if name in self.audio:
            return self.audio[name]
        present = ", ".join([*self.video, *self.audio]) or "none"
        raise KeyError(f"no input named {name!r} in this bundle; it holds: {present}")

    def __iter__(self) -> Iterator[str]:
        yield from self.video
        yield from self.audio

    def __len__(self) -> int:
        return len(self.video) + len(self.audio)

    def __repr__(self) -> str:
        video = {name: tuple(a.shape) for name, a in self.video.items()}
        audio = {name: tuple(a.shape) for name, a in self.audio.items()}
        return f"MediaBundle(video={video}, audio={audio}, new={sorted(self.new)})"


def describe_tracks(declared: Mapping[str, Any]) -> list[dict[str, str]]:
    """Descriptors of every declared track, in declaration order."""
    return [track.describe() for track in declared.values()]


def check_track_name(kind: str, name: str, known: Mapping[str, Any]) -> None:
    """``InvalidArgumentError`` naming the declared tracks of ``kind`` when ``name`` is not one."""
    if name not in known:
        listed = ", ".join(known) or "none (declare one on the model class, e.g. webcam = VideoIn())"
        raise InvalidArgumentError(f"no {kind} named {name!r}; this model's {kind}s are: {listed}")
