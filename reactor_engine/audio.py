"""Audio: sample checks and conversion (``AudioFormat``), ``AudioOutputTrack``, and the blocking read.

Samples are int16, interleaved in the native ``AudioRing`` (one producer, one consumer). Models and
clients hand ``(M,)``, ``(1, M)`` or ``(channels, M)`` arrays, int16 or float in ``[-1, 1]``; each
check names what the track takes. Audio and video timestamps come from one clock, the core's
(``time.monotonic_ns``), so a client can keep them in sync.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from reactor_engine.errors import ClosedError, FrameError, InvalidArgumentError, NoActiveSession

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.context import SessionContext

__all__ = ["AUDIO_SLICE_S", "AudioFormat", "AudioOutputTrack", "read_audio"]

AUDIO_SLICE_S = 0.25  # a blocked read re-checks stop and commands this often even if no wake() came
LEAD_NS = 200_000_000  # AudioOut.emit blocks while more than this far ahead of real time
LATE_NS = 50_000_000  # an emit this far behind real time restarts the track's clock (counted)
_INT16_SCALE = 32767.0


class AudioFormat:
    """Checks samples against one track's format and converts them to interleaved int16.

    ``mix_down``: multi-channel input to a mono track is averaged (inputs) instead of refused.
    Refusals are counted: ``rate_mismatch`` (a wrong sample rate) and ``invalid`` (the rest).
    """

    def __init__(self, track: str, rate: int, channels: int, *, mix_down: bool) -> None:
        self.track = track
        self.rate = int(rate)
        self.channels = int(channels)
        self.mix_down = mix_down
        self.rate_mismatch = 0
        self.invalid = 0

    def reset_counters(self) -> None:
        self.rate_mismatch = 0
        self.invalid = 0

    def takes(self) -> str:
        shapes = "(M,) or (1, M)" if self.channels == 1 else f"({self.channels}, M)"
        return (
            f"track '{self.track}' takes {shapes} int16 samples or floats in [-1, 1], "
            f"at {self.rate} Hz, {self.channels} channel{'s' if self.channels > 1 else ''}"
        )

    def _refuse(self, what: str) -> FrameError:
        self.invalid += 1
        return FrameError(f"{what}; {self.takes()}")

    def check_rate(self, rate: float | None) -> None:
        if rate is not None and rate != self.rate:
            self.rate_mismatch += 1
            raise InvalidArgumentError(
                f"audio at {rate} Hz for track '{self.track}', which takes {self.rate} Hz: "
                f"resample to {self.rate} Hz first (counted as rate_mismatch; the session continues)"
            )

    def to_pcm(self, samples: Any, rate: float | None = None) -> tuple[npt.NDArray[np.int16], int]:
        """``(interleaved C-contiguous int16, frames)``; raises ``FrameError`` / ``InvalidArgumentError``."""
        self.check_rate(rate)
        if not isinstance(samples, np.ndarray):
            samples = self._from_object(samples)
            if samples.ndim == 1 and self.channels > 1:  # a buffer is interleaved
                if samples.size % self.channels:
                    raise self._refuse(f"a buffer of {samples.size} samples is not whole frames")
                samples = samples.reshape(-1, self.channels).T
        array = self._as_int16(samples)
        if array.ndim == 1:
            if self.channels != 1:
                raise self._refuse(f"samples have shape {array.shape} (mono)")
            return np.ascontiguousarray(array), array.shape[0]
        if array.ndim != 2:
            raise self._refuse(f"samples have shape {array.shape}")
        rows = array.shape[0]
        if rows != self.channels:
            if rows > 1 and self.channels == 1 and self.mix_down and rows <= 8:
                mixed = array.astype(np.int32).sum(axis=0) // rows
                return mixed.astype(np.int16), array.shape[1]
            hint = (
                " (it looks channel-last: pass samples.T)"
                if array.shape[1] == self.channels and rows != self.channels
                else ""
            )
            raise self._refuse(f"samples have shape {array.shape}{hint}")
        if rows == 1:
            return np.ascontiguousarray(array[0]), array.shape[1]
        return np.ascontiguousarray(array.T).reshape(-1), array.shape[1]

    def _from_object(self, samples: Any) -> npt.NDArray[Any]:
        if hasattr(samples, "__array__") or hasattr(samples, "__dlpack__"):
            try:
                return np.asarray(samples.cpu() if hasattr(samples, "cpu") else samples)
            except (TypeError, RuntimeError, ValueError) as exc:
                raise self._refuse(f"cannot read {type(samples).__name__} samples ({exc})") from None
        try:
            view = memoryview(samples)
        except TypeError:
            raise self._refuse(
                f"samples are a {type(samples).__name__}, not a numpy array or a buffer of int16"
            ) from None
        if view.format in ("B", "b", "c") or view.itemsize == 1:
            if view.nbytes % 2:
                raise self._refuse(f"a buffer of {view.nbytes} bytes is not whole int16 samples")
            return np.frombuffer(view, dtype="<i2")
        return np.asarray(view)

    def _as_int16(self, array: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
        if array.dtype == np.int16:
            pcm: npt.NDArray[np.int16] = array
            return pcm
        if np.issubdtype(array.dtype, np.floating):
            if array.size:
                low, high = float(np.min(array)), float(np.max(array))
                if not (np.isfinite(low) and np.isfinite(high)):
                    raise self._refuse("float samples hold NaN or infinity")
                if low < -1.0 or high > 1.0:
                    raise self._refuse(
                        f"float samples range from {low:.3g} to {high:.3g}, outside [-1, 1] "
                        f"(scale them, or pass int16)"
                    )
            scaled = np.rint(np.asarray(array, dtype=np.float32) * _INT16_SCALE)
            converted: npt.NDArray[np.int16] = scaled.astype(np.int16)
            return converted
        raise self._refuse(f"samples have dtype {array.dtype}")


def current_ctx(name: str, session: SessionContext | None) -> SessionContext:
    """The calling thread's session, if it is the one the track ``name`` is bound to."""
    from reactor_engine.context import get_ctx

    ctx = get_ctx()
    if ctx is not session:
        raise NoActiveSession(
            f"track '{name}' is not part of session {ctx.session_id}; it was ended or never started"
        )
    return ctx


def read_audio(
    ctx: SessionContext,
    ring: _C.AudioRing,
    out: npt.NDArray[np.int16],
    n: int,
    timeout: float | None,
    on_pts: Callable[[int], None],
) -> int:
    """Read up to ``n`` frames into ``out`` on the session thread, waiting until ``n`` are there, the
    timeout runs out or a stop comes; applies commands meanwhile (a poll point). Returns the count."""
    channels = ring.channels
    end = None if timeout is None else time.monotonic() + max(0.0, timeout)
    got: int = 0
    while True:
        ctx._wake.clear()
        ctx._poll_point(dispatch=False)
        try:
            if ring.available:
                free: Any = out[got * channels : n * channels]
                count, pts = ring.read_into(free, 1, 0.0)
                if count and got == 0:
                    on_pts(pts)
                got += count
            if got >= n or ctx._stopping():
                return got
            remaining = AUDIO_SLICE_S if end is None else min(AUDIO_SLICE_S, end - time.monotonic())
            if remaining <= 0:
                return got
            if ctx._wake.is_set():
                continue
            rest: Any = out[got * channels : n * channels]  # numpy's stubs: a Buffer only on 3.12+
            count, pts = ring.read_into(rest, n - got, remaining)
        except ClosedError:
            return got
        if count and got == 0:
            on_pts(pts)
        got += count
        if got >= n:
            return got


class AudioOutputTrack:
    """The running ``AudioOut``: samples from the model, paced and stamped, into an ``AudioRing``.

    ``ring.fileno()`` becomes readable once 20 ms are buffered (``notify_frames = rate // 50``), so a
    transport can wait for it on its event loop; only the session that owns the track reads it.
    """

    kind = "audio"
    direction = "recvonly"

    def __init__(self, name: str, ring: _C.AudioRing) -> None:
        self.name = name
        self.ring = ring
        self.rate = ring.rate
        self.channels = ring.channels
        self.format = AudioFormat(name, ring.rate, ring.channels, mix_down=False)
        self._silence = np.zeros(max(1, ring.rate // 50) * ring.channels, dtype=np.int16)  # 20 ms
        self.consumer_lock = threading.Lock()
        self.owner: object | None = None
        self._session: SessionContext | None = None
        self._t0_ns: int | None = None
        self.samples_emitted = 0
        self.late_blocks = 0
        self.first_pts_ns = 0
        self.last_pts_ns = 0

    def claim(self, owner: object) -> None:
        """Give the track to a new session, dropping whatever the previous one left unread."""
        with self.consumer_lock:
            self.owner = owner
            self.ring.reset()

    def begin_session(self, ctx: SessionContext) -> None:
        self._session = ctx
        self._t0_ns = None
        self.samples_emitted = 0
        self.late_blocks = 0
        self.first_pts_ns = 0
        self.last_pts_ns = 0
        self.format.reset_counters()

    def end_session(self) -> None:
        self._session = None

    def close(self) -> None:
        self.ring.close()

    def emit(self, samples: Any = None, bucket: int | None = None, rate: float | None = None) -> None:
        """Send ``(M,)``, ``(1, M)`` or ``(channels, M)`` samples, int16 or float in ``[-1, 1]``, at the
        track's rate (``rate``, if given, must match); ``None`` sends 20 ms of silence. A poll point.

        Paced: blocks (cut short by a stop) while the audio emitted is more than 200 ms ahead of real
        time since this session's first emit. Each block's timestamp is on the clock video uses.
        """
        ctx = current_ctx(self.name, self._session)
        ctx._poll()
        if bucket is not None and (not isinstance(bucket, int) or bucket < 0):
            raise FrameError(f"bucket must be a non-negative int or None; got {bucket!r}")
        if samples is None:
            self.format.check_rate(rate)
            pcm, frames = self._silence, len(self._silence) // self.channels
        else:
            pcm, frames = self.format.to_pcm(samples, rate)
        if frames == 0:
            return
        now = time.monotonic_ns()
        if self._t0_ns is None:
            self._t0_ns = now
        offset = self.samples_emitted * 1_000_000_000 // self.rate
        pts = self._t0_ns + offset
        if now - pts > LATE_NS:  # the model fell behind real time: stamp from now on, not in the past
            self.late_blocks += 1
            self._t0_ns = now - offset
            pts = now
        if pts - now > LEAD_NS:
            ctx._pace_wait(pts - now - LEAD_NS)
        block: Any = pcm  # numpy's stubs declare the buffer protocol only for Python >= 3.12
        self.ring.write(block, pts)
        if self.samples_emitted == 0:
            self.first_pts_ns = pts
        self.last_pts_ns = pts
        self.samples_emitted += frames

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "direction": self.direction,
            "rate": self.rate,
            "channels": self.channels,
            "ring": self.ring.stats(),
            "samples_emitted": self.samples_emitted,
            "late_blocks": self.late_blocks,
            "rate_mismatch": self.format.rate_mismatch,
            "samples_invalid": self.format.invalid,
        }

    def __repr__(self) -> str:
        return f"AudioOutputTrack({self.name!r}, {self.rate} Hz, {self.channels} ch)"
