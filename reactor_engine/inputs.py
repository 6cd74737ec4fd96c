"""Running input tracks: ``VideoInputTrack`` (an ``InputRing`` fed by decoders) and ``AudioInputTrack``.

Each lives as long as the engine: its native ring and decoders are made once, at load (``engine.py``),
and reset at each session start, so nothing of one session's input reaches the next. Producers
(``push_frame``, ``submit_encoded``, ``push_audio``) may run on any thread: a transport's network
thread, a test; they validate with the GIL and hand the bytes to the core, which copies them with the
GIL released. The consumer side (``latest``, ``read``) runs on the session thread; ``read`` is a poll
point. ``MediaPoller`` is what every poll point does for the inputs: release the frames held since
the previous one, and call the model's ``on_media(bundle)`` when new input arrived.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from reactor_engine.audio import AudioFormat, AudioOutputTrack, current_ctx, read_audio
from reactor_engine.errors import ClosedError, FrameError, InvalidArgumentError
from reactor_engine.media import MediaBundle

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.context import SessionContext

__all__ = ["AudioInputTrack", "AudioOutputTrack", "InputTrack", "MediaPoller", "VideoInputTrack"]

_MODES = ("latest", "fifo")
_WAIT_SLICE_S = 0.25  # a blocked read re-checks stop and commands this often even if no wake() came
CODECS = ("vp8", "jpeg")  # the decoders every VideoInputTrack has


def _check_mode(name: str, mode: str, n: int) -> bool:
    if mode not in _MODES:
        raise InvalidArgumentError(f"track '{name}': read mode must be 'latest' or 'fifo'; got {mode!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidArgumentError(f"track '{name}': read(n) takes an int n >= 1; got {n!r}")
    return mode == "latest"


class VideoInputTrack:
    """The running ``VideoIn``: decoded client frames in a preallocated ``InputRing``.

    ``ring``: the ``_C.InputRing`` (``input_slots`` slots of ``input_max_width`` x ``input_max_height``).
    ``decoders``: ``{"vp8": Decoder, "jpeg": Decoder}``, each with its own thread, decoding into it.
    """

    kind = "video"
    direction = "sendonly"

    def __init__(
        self, name: str, ring: _C.InputRing, decoders: Mapping[str, _C.Decoder], *, rate: float = 0.0
    ) -> None:
        self.name = name
        self.ring = ring
        self.decoders = dict(decoders)
        self.rate = rate
        self.max_width = ring.max_width
        self.max_height = ring.max_height
        self._session: SessionContext | None = None
        self.frames_invalid = 0  # push_frame calls refused by Python's checks (shape, dtype), this session
        self.packets_invalid = 0  # submit_encoded calls refused (unknown codec), this session

    # -- session binding (engine thread) ---------------------------------------------------------

    def reset(self, timeout: float) -> int:
        """A new session: drop queued packets (decoders idle first), then every frame of the ring."""
        self.frames_invalid = self.packets_invalid = 0
        for decoder in self.decoders.values():
            decoder.reset(timeout)
        return self.ring.reset()

    def begin_session(self, ctx: SessionContext) -> None:
        self._session = ctx

    def end_session(self) -> None:
        self._session = None

    def close(self) -> None:
        if not self.ring.closed:
            for decoder in self.decoders.values():
                decoder.close()
            self.ring.close()

    def emit(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"track '{self.name}' is an input (VideoIn); only output tracks emit")

    # -- producers (any thread) ------------------------------------------------------------------

    def push_frame(self, frame: Any, capture_ns: int | None = None) -> int:
        """Copy an ``(H, W, 3)`` uint8 RGB frame into the ring; returns its index in this session.

        Any thread. A frame larger than the input slots raises ``FrameError`` naming both sizes
        (counted ``frames_refused``); when the model lags, the oldest unread frame is dropped
        (counted ``frames_dropped``). ``capture_ns``: when it was captured, on ``time.monotonic_ns``.
        """
        array: Any = self._as_frame(frame)  # numpy's stubs: a Buffer only on Python >= 3.12
        return self.ring.write(array, -1 if capture_ns is None else capture_ns, -1)

    def submit_encoded(self, data: Any, codec: str, capture_ns: int = -1, arrival_ns: int = -1) -> str:
        """Queue one encoded frame (``"vp8"`` or ``"jpeg"``) for the track's decoder thread. Any thread.

        Returns ``"queued"`` or ``"dropped_oldest"`` (the decoder's queue was full). A packet over
        ``input_max_bytes`` raises ``FrameError``; corrupt ones are counted (``decode_errors``) when decoded.
        """
        decoder = self.decoders.get(codec)
        if decoder is None:
            self.packets_invalid += 1
            raise InvalidArgumentError(
                f"track '{self.name}' decodes {' and '.join(self.decoders)} input; got codec {codec!r}"
            )
        return decoder.submit(data, capture_ns, arrival_ns)

    def need_keyframe(self) -> bool:
        """True while the VP8 decoder waits for a key frame (after a loss or a decode error)."""
        decoder = self.decoders.get("vp8")
        return bool(decoder is not None and decoder.need_keyframe)

    def _takes(self) -> str:
        return f"input track '{self.name}' takes (H, W, 3) uint8 RGB frames"

    def _as_frame(self, frame: Any) -> npt.NDArray[np.uint8]:
        array = frame if isinstance(frame, np.ndarray) else _host_array(frame, self._takes())
        if array.ndim != 3 or array.shape[2] != 3:
            self.frames_invalid += 1
            hint = (
                " (drop the alpha channel: frame[..., :3])" if array.ndim == 3 and array.shape[2] == 4 else ""
            )
            raise FrameError(f"frame has shape {tuple(array.shape)}; {self._takes()}{hint}")
        if array.dtype != np.uint8:
            self.frames_invalid += 1
            raise FrameError(
                f"frame has dtype {array.dtype}; {self._takes()} with values 0-255 "
                f"(convert floats in [0, 1] with (x * 255).clip(0, 255).astype(uint8))"
            )
        if array.shape[0] == 0 or array.shape[1] == 0:
            self.frames_invalid += 1
            raise FrameError(f"frame has shape {tuple(array.shape)}: no pixels; {self._takes()}")
        return array

    # -- consumer (session thread) ---------------------------------------------------------------

    def latest_frame(self) -> _C.InputFrame | None:
        """The newest decoded frame with its metadata, or ``None`` before the first of this session.

        Not a poll point: its ``array`` stays valid until the next one (``should_stop()``, ``emit``...).
        """
        current_ctx(self.name, self._session)
        frames = self.ring.read(1, True, 0.0)
        return frames[0] if frames else self.ring.current()

    def latest(self) -> npt.NDArray[np.uint8] | None:
        """The newest decoded frame as a read-only zero-copy ``(H, W, 3)`` uint8 view, or ``None``.

        Valid until the next poll point; copy it (``frame.copy()``) to keep it longer.
        """
        frame = self.latest_frame()
        return None if frame is None else frame.array

    def read(self, n: int = 1, mode: str = "latest", timeout: float | None = None) -> list[_C.InputFrame]:
        """Up to ``n`` frames: ``mode="latest"`` the newest one (older unread ones are skipped, counted),
        ``"fifo"`` the oldest unread first. A poll point: commands are applied first and the frames
        returned before are released (``on_media`` is not called from here: it would take these frames).

        ``timeout``: ``None`` waits for a frame, ``0`` does not wait, else seconds. Returns ``[]`` when
        the session is asked to stop (or on timeout). Each frame's ``array`` is valid until the next poll.
        """
        latest = _check_mode(self.name, mode, n)
        ctx = current_ctx(self.name, self._session)
        end = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            ctx._wake.clear()
            ctx._poll_point(dispatch=False)  # on_media would take the frames this read waits for
            try:
                frames = self.ring.read(n, latest, 0.0)
                if frames or ctx._stopping():
                    return frames
                remaining = _WAIT_SLICE_S if end is None else min(_WAIT_SLICE_S, end - time.monotonic())
                if remaining <= 0:
                    return []
                if ctx._wake.is_set():
                    continue  # a command or a stop came in since the poll: handle it first
                frames = self.ring.read(n, latest, remaining)  # GIL released; ctx.wake() wakes it
            except ClosedError:
                return []
            if frames:
                return frames

    def stats(self) -> dict[str, Any]:
        """The ring's and each decoder's counters and latency histograms (since the engine started)."""
        decoders: dict[str, Any] = {}
        for codec, decoder in self.decoders.items():
            decoders[codec] = {**decoder.stats(), "last_error": decoder.last_error()}
        return {
            "kind": self.kind,
            "direction": self.direction,
            "ring": self.ring.stats(),
            "decoders": decoders,
            "frames_invalid": self.frames_invalid,
            "packets_invalid": self.packets_invalid,
        }

    def __repr__(self) -> str:
        return f"VideoInputTrack({self.name!r}, {self.max_width}x{self.max_height})"


class AudioInputTrack:
    """The running ``AudioIn``: client samples in a preallocated int16 ``AudioRing``."""

    kind = "audio"
    direction = "sendonly"

    def __init__(self, name: str, ring: _C.AudioRing) -> None:
        self.name = name
        self.ring = ring
        self.format = AudioFormat(name, ring.rate, ring.channels, mix_down=True)
        self.rate = ring.rate
        self.channels = ring.channels
        self._session: SessionContext | None = None
        # Where latest()/read() put the samples they return: one ring's worth, preallocated.
        self._out = np.zeros(ring.capacity_frames * ring.channels, dtype=np.int16)
        self.last_pts_ns = 0
        self.samples_skipped = 0  # read(mode="latest") dropped these older samples

    def reset(self, timeout: float = 0.0) -> int:
        self.format.reset_counters()
        self.last_pts_ns = 0
        return self.ring.reset()

    def begin_session(self, ctx: SessionContext) -> None:
        self._session = ctx

    def end_session(self) -> None:
        self._session = None

    def close(self) -> None:
        self.ring.close()

    def emit(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"track '{self.name}' is an input (AudioIn); only output tracks emit")

    @property
    def rate_mismatch(self) -> int:
        return self.format.rate_mismatch

    def push_audio(self, samples: Any, rate: int | None = None) -> int:
        """Queue samples (any thread): ``(M,)``, ``(1, M)`` or ``(channels, M)``, int16 or float in
        ``[-1, 1]``, or a buffer of int16 interleaved. ``rate`` (Hz), if given, must be the track's:
        else ``InvalidArgumentError`` (counted ``rate_mismatch``). Multi-channel input to a mono track
        is mixed down. Returns the number of sample frames queued; when the ring is full the oldest
        are dropped (counted ``frames_dropped``)."""
        pcm, frames = self.format.to_pcm(samples, rate)
        if frames:
            block: Any = pcm  # numpy's stubs: a Buffer only on Python >= 3.12
            self.ring.write(block, -1)
        return frames

    def _view(self, frames: int) -> npt.NDArray[np.int16]:
        view = self._out[: frames * self.channels].reshape(frames, self.channels).T
        view.flags.writeable = False
        return view

    def latest(self) -> npt.NDArray[np.int16] | None:
        """Every sample received since the previous read, as a read-only ``(channels, M)`` int16 view,
        or ``None`` when none came. Valid until the next ``latest``/``read`` of this track."""
        current_ctx(self.name, self._session)
        return self._drain()

    def _drain(self) -> npt.NDArray[np.int16] | None:
        if self.ring.available == 0:
            return None
        out: Any = self._out
        frames, pts = self.ring.read_into(out, 1, 0.0)
        if frames == 0:
            return None
        self.last_pts_ns = pts
        return self._view(frames)

    def read(self, n: int, mode: str = "fifo", timeout: float | None = None) -> npt.NDArray[np.int16]:
        """Up to ``n`` sample frames as a read-only ``(channels, <= n)`` int16 view. A poll point.

        ``"fifo"`` waits until ``n`` are buffered (or ``timeout`` s, or a stop: then what there is);
        ``"latest"`` waits for any and returns the newest ``n``, dropping older ones (counted
        ``samples_skipped``). ``timeout=None`` waits without a limit (a stop still ends it).
        """
        latest = _check_mode(self.name, mode, n)
        if n > self.ring.capacity_frames:
            raise InvalidArgumentError(
                f"track '{self.name}': read(n={n}) asks for more than the ring holds "
                f"({self.ring.capacity_frames} frames; raise --engine.audio_buffer_ms)"
            )
        ctx = current_ctx(self.name, self._session)
        if latest:
            return self._read_latest(ctx, n, timeout)
        return self._view(read_audio(ctx, self.ring, self._out, n, timeout, self._pts))

    def _pts(self, pts_ns: int) -> None:
        self.last_pts_ns = pts_ns

    def _read_latest(self, ctx: SessionContext, n: int, timeout: float | None) -> npt.NDArray[np.int16]:
        channels = self.channels
        got = read_audio(ctx, self.ring, self._out, 1, timeout, self._pts)  # waits for the first sample
        while True:
            more = self.ring.available
            room = len(self._out) // channels - got
            if more == 0:
                break
            take = min(more, room)
            room_view: Any = self._out[got * channels : (got + take) * channels]
            extra, _ = self.ring.read_into(room_view, 1, 0.0)
            got += extra
            if extra == 0 or got * channels >= len(self._out):
                break
        if got > n:
            self.samples_skipped += got - n
            self._out[: n * channels] = self._out[(got - n) * channels : got * channels]
            got = n
        return self._view(got)

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "direction": self.direction,
            "rate": self.rate,
            "channels": self.channels,
            "ring": self.ring.stats(),
            "rate_mismatch": self.format.rate_mismatch,
            "samples_invalid": self.format.invalid,
            "samples_skipped": self.samples_skipped,
        }

    def __repr__(self) -> str:
        return f"AudioInputTrack({self.name!r}, {self.rate} Hz, {self.channels} ch)"


InputTrack = VideoInputTrack | AudioInputTrack


class MediaPoller:
    """What each poll point does for one session's inputs (session thread only).

    Releases the frames every video input held since the previous poll point, then, when the model
    overrides ``on_media`` (or has a seed-era ``on_frame``) and new input arrived, calls it with a
    ``MediaBundle`` of the newest input (taking it as ``latest()`` would). Not re-entrant: a poll point
    inside ``on_media`` only releases. An input's own ``read`` does not dispatch (it waits for that input).
    """

    def __init__(self, inputs: Mapping[str, InputTrack], model: object) -> None:
        self.video: Sequence[VideoInputTrack] = [t for t in inputs.values() if isinstance(t, VideoInputTrack)]
        self.audio: Sequence[AudioInputTrack] = [t for t in inputs.values() if isinstance(t, AudioInputTrack)]
        self._on_media = _override(model, "on_media")
        on_frame = getattr(model, "on_frame", None)
        self._on_frame = on_frame if callable(on_frame) and self.video else None
        self._dispatching = False
        self.bundles = 0

    @property
    def dispatches(self) -> bool:
        return self._on_media is not None or self._on_frame is not None

    def poll(self, dispatch: bool = True) -> None:
        for track in self.video:
            track.ring.release_held()
        if not dispatch or self._dispatching or (self._on_media is None and self._on_frame is None):
            return
        frames: dict[str, _C.InputFrame] = {}
        new: set[str] = set()
        for track in self.video:
            fresh = track.ring.read(1, True, 0.0)
            frame = fresh[0] if fresh else track.ring.current()
            if frame is not None:
                frames[track.name] = frame
            if fresh:
                new.add(track.name)
        audio: dict[str, npt.NDArray[np.int16]] = {}
        for sound in self.audio:
            block = sound._drain()
            if block is not None:
                audio[sound.name] = block
                new.add(sound.name)
        if not new:
            return
        self._dispatching = True
        try:
            self.bundles += 1
            if self._on_media is not None:
                self._on_media(MediaBundle(frames, audio, frozenset(new)))
            first = self.video[0].name if self.video else None
            if self._on_frame is not None and first in new:
                self._on_frame(frames[first].array)
        finally:
            self._dispatching = False

    def wake(self) -> None:
        """Wake a ``read`` blocked on any input (a command or a stop came in)."""
        for video in self.video:
            video.ring.wake()
        for audio in self.audio:
            audio.ring.wake()


def _override(model: object, hook: str) -> Any:
    """The model's ``hook`` method if its class overrides ``VideoModel``'s empty one, else ``None``."""
    from reactor_engine.model import VideoModel

    method = getattr(type(model), hook, None)
    if method is None or method is getattr(VideoModel, hook, None):
        return None
    return getattr(model, hook)


def _host_array(frame: Any, takes: str) -> npt.NDArray[Any]:
    if hasattr(frame, "__array__") or hasattr(frame, "__dlpack__"):
        try:
            return np.asarray(frame)
        except (TypeError, RuntimeError, ValueError) as exc:
            raise FrameError(f"cannot read a {type(frame).__name__} frame ({exc}); {takes}") from None
    try:
        return np.asarray(memoryview(frame))
    except TypeError:
        raise FrameError(f"frame is a {type(frame).__name__}; {takes} as a numpy array or a buffer") from None
