"""Frame pacing (presentation timestamps on one clock) and the per-session latency windows.

The pacing itself is the core's (``_C.FramePacer``, csrc/core/FramePacer.h): a track's native
``FrameWriter`` stamps, waits and commits in one call. ``FramePacer`` here is that same pacer for
Python code that paces itself (the benchmarks' baseline and receiver), with an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from reactor_engine import _C

__all__ = ["EmitLatency", "FramePacer", "LatencyWindow"]


class FramePacer:
    """Stamps each frame's ``pts_ns`` and says how long the producer should wait before committing it.

    - Fixed rate (``fps > 0``): frame ``k`` of the session is due at ``t0 + k / fps`` on an absolute
      clock, so pacing does not drift. A producer ahead of the clock waits; one late by more than a
      frame rebases the clock instead of bursting to catch up (counted in ``late_frames``).
    - Automatic (``fps == 0``): frames are stamped at the measured production rate: a batch of ``N``
      frames that took ``dt`` to make is spread ``dt / N`` apart, so a transport that presents by
      ``pts_ns`` plays it smoothly instead of in bursts. The producer is held back only above
      ``max_fps`` (``0``: never): a model with no compute between frames would otherwise spin at tens
      of thousands of frames a second, nearly all of them dropped.

    ``native`` is the core's pacer; a track hands it to its ``FrameWriter``, which reads the core's
    clock (``time.monotonic_ns``) itself. ``clock`` is for the calls made from Python.
    """

    def __init__(
        self, fps: float, clock: Callable[[], int] = time.monotonic_ns, max_fps: float = 0.0
    ) -> None:
        if fps < 0:
            raise ValueError(f"fps must be >= 0 (0 = automatic); got {fps}")
        if max_fps < 0:
            raise ValueError(f"max_fps must be >= 0 (0 = no cap); got {max_fps}")
        self.native = _C.FramePacer(float(fps), float(max_fps))
        self._clock = clock

    @property
    def fps(self) -> float:
        return self.native.fps

    @property
    def max_fps(self) -> float:
        return self.native.max_fps

    def reset(self) -> None:
        """Forget the previous session's clock and record, and end a ``stop()``."""
        self.native.reset()

    def stop(self) -> None:
        """Any thread: cut the producer's pacing wait short, and every later one until ``reset()``."""
        self.native.stop()

    @property
    def late_frames(self) -> int:
        return self.native.late_frames

    @property
    def measured_fps(self) -> float:
        """The production rate seen so far (frames per second), 0.0 before two batches."""
        return self.native.measured_fps

    def begin_batch(self, frames: int) -> None:
        """Call once per ``emit`` before stamping its ``frames`` frames."""
        self.native.begin_batch(frames, self._clock())

    def next_frame(self) -> tuple[int, int]:
        """``(pts_ns, wait_ns)`` for the next frame: wait ``wait_ns`` (interruptibly), then commit."""
        return self.native.next_frame(self._clock())


def _summary(kept: npt.NDArray[np.int64], count: int) -> dict[str, float]:
    if kept.size == 0:
        return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    p50, p99 = np.percentile(kept, [50, 99])
    return {
        "count": count,
        "p50_ms": float(p50) / 1e6,
        "p99_ms": float(p99) / 1e6,
        "max_ms": float(kept.max()) / 1e6,
        "mean_ms": float(kept.mean()) / 1e6,
    }


class EmitLatency:
    """A track's emit latency, recorded by the core at each commit (the last 4096), read like a window."""

    def __init__(self, pacer: FramePacer) -> None:
        self._pacer = pacer

    @property
    def count(self) -> int:
        return self._pacer.native.frames_committed

    def summary(self) -> dict[str, float]:
        """``{count, p50, p99, max, mean}`` in milliseconds over the kept samples (zeros when empty)."""
        return _summary(self._pacer.native.emit_latency_ns(), self.count)


class LatencyWindow:
    """The last ``capacity`` samples (ns) of one latency, preallocated; percentiles on demand."""

    def __init__(self, capacity: int = 4096) -> None:
        self._samples = np.zeros(capacity, dtype=np.int64)
        self._count = 0

    def reset(self) -> None:
        self._count = 0

    def record(self, ns: int) -> None:
        self._samples[self._count % len(self._samples)] = ns
        self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def summary(self) -> dict[str, float]:
        """``{count, p50, p99, max, mean}`` in milliseconds over the kept samples (zeros when empty)."""
        return _summary(self._samples[: min(self._count, len(self._samples))], self._count)
