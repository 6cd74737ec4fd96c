"""Frame pacing (presentation timestamps on one clock) and the per-session latency windows.

Both run on the session thread inside ``emit``; neither allocates per frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["FramePacer", "LatencyWindow"]


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
    """

    _SMOOTHING = 0.25  # weight of the newest interval in the automatic rate estimate

    def __init__(
        self, fps: float, clock: Callable[[], int] = time.monotonic_ns, max_fps: float = 0.0
    ) -> None:
        if fps < 0:
            raise ValueError(f"fps must be >= 0 (0 = automatic); got {fps}")
        if max_fps < 0:
            raise ValueError(f"max_fps must be >= 0 (0 = no cap); got {max_fps}")
        self.fps = float(fps)
        self.max_fps = float(max_fps)
        self._clock = clock
        self._period_ns = round(1e9 / fps) if fps > 0 else 0
        self._min_period_ns = round(1e9 / max_fps) if max_fps > 0 else 0
        self.reset()

    def reset(self) -> None:
        """Forget the previous session's clock."""
        self._t0_ns: int | None = None
        self._k = 0
        self._last_pts_ns = 0
        self._last_batch_ns: int | None = None
        self._interval_ns = 0.0
        self._batch_interval_ns = 0.0
        self.late_frames = 0

    @property
    def measured_fps(self) -> float:
        """The production rate seen so far (frames per second), 0.0 before two batches."""
        return 1e9 / self._interval_ns if self._interval_ns > 0 else 0.0

    def begin_batch(self, frames: int) -> None:
        """Call once per ``emit`` before stamping its ``frames`` frames."""
        now = self._clock()
        if self._last_batch_ns is not None and frames > 0:
            interval = (now - self._last_batch_ns) / frames
            if self._interval_ns == 0.0:
                self._interval_ns = interval
            else:
                self._interval_ns += self._SMOOTHING * (interval - self._interval_ns)
            self._batch_interval_ns = interval
        self._last_batch_ns = now

    def next_frame(self) -> tuple[int, int]:
        """``(pts_ns, wait_ns)`` for the next frame: wait ``wait_ns`` (interruptibly), then commit."""
        now = self._clock()
        if self._period_ns == 0:
            spacing = max(int(self._batch_interval_ns), self._min_period_ns)
            pts = max(now, self._last_pts_ns + spacing) if self._last_pts_ns else now
            self._last_pts_ns = pts
            return pts, (pts - now) if self._min_period_ns else 0
        if self._t0_ns is None:
            self._t0_ns = now
        due = self._t0_ns + self._k * self._period_ns
        if now - due > self._period_ns:
            self._t0_ns = now - self._k * self._period_ns
            due = now
            self.late_frames += 1
        self._k += 1
        self._last_pts_ns = due
        return due, max(0, due - now)


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
        kept = self._samples[: min(self._count, len(self._samples))]
        if kept.size == 0:
            return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
        p50, p99 = np.percentile(kept, [50, 99])
        return {
            "count": self._count,
            "p50_ms": float(p50) / 1e6,
            "p99_ms": float(p99) / 1e6,
            "max_ms": float(kept.max()) / 1e6,
            "mean_ms": float(kept.mean()) / 1e6,
        }
