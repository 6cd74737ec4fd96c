"""FramePacer (the core's, through its Python wrapper): fixed-rate pacing, automatic pacing and its
upper bound, on a fake clock; and the interruptible wait the track's native emit uses."""

from __future__ import annotations

import threading
import time

import pytest

from reactor_engine.pacing import FramePacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def _run(pacer: FramePacer, clock: FakeClock, frames: int, compute_ns: int) -> list[int]:
    """A producer that computes ``compute_ns`` per frame and honours the pacer's waits."""
    stamps = []
    for _ in range(frames):
        clock.now += compute_ns
        pacer.begin_batch(1)
        pts, wait = pacer.next_frame()
        clock.now += wait
        stamps.append(pts)
    return stamps


def test_automatic_pacing_caps_a_model_with_no_compute_at_max_fps():
    clock = FakeClock()
    pacer = FramePacer(0, clock, max_fps=120)
    stamps = _run(pacer, clock, 121, compute_ns=1_000)  # ~1 us a frame: 1,000,000 fps uncapped
    span_s = (stamps[-1] - stamps[0]) / 1e9
    assert 120 / span_s == pytest.approx(120, rel=0.01)


def test_automatic_pacing_never_holds_back_a_model_slower_than_the_cap():
    clock = FakeClock()
    pacer = FramePacer(0, clock, max_fps=120)
    waits = []
    for _ in range(50):
        clock.now += 20_000_000  # 50 fps of compute
        pacer.begin_batch(1)
        waits.append(pacer.next_frame()[1])
    assert max(waits) == 0


def test_without_a_cap_automatic_pacing_does_not_wait():
    clock = FakeClock()
    pacer = FramePacer(0, clock)
    stamps = _run(pacer, clock, 100, compute_ns=1_000)
    assert (stamps[-1] - stamps[0]) < 1_000_000  # the producer ran free


def test_fixed_rate_pacing_is_unchanged_by_the_cap():
    clock = FakeClock()
    pacer = FramePacer(30, clock, max_fps=120)
    stamps = _run(pacer, clock, 31, compute_ns=1_000)
    assert (stamps[-1] - stamps[0]) == pytest.approx(1e9, rel=0.01)


def test_a_negative_cap_is_refused():
    with pytest.raises(ValueError, match="max_fps must be >= 0"):
        FramePacer(0, max_fps=-1)


def test_fixed_rate_rebases_a_late_producer_instead_of_bursting():
    clock = FakeClock()
    pacer = FramePacer(10, clock)  # 100 ms period
    first = _run(pacer, clock, 2, 0)
    clock.now += 500_000_000  # the model stalls for five frames
    pacer.begin_batch(1)
    pts, wait = pacer.next_frame()
    assert (first[1] - first[0], wait, pts) == (100_000_000, 0, clock.now)
    assert pacer.late_frames == 1
    pacer.begin_batch(1)
    assert pacer.next_frame() == (clock.now + 100_000_000, 100_000_000)  # the clock continues from there


def test_stop_cuts_a_pacing_wait_short_until_reset():
    pacer = FramePacer(1)
    due = time.monotonic_ns() + 60_000_000_000  # a minute away
    threading.Timer(0.05, pacer.stop).start()
    started = time.monotonic()
    assert pacer.native.wait_until(due) is False  # stopped, not reached
    assert time.monotonic() - started < 30
    assert pacer.native.wait_until(due) is False  # a later wait returns at once too
    pacer.reset()
    assert pacer.native.wait_until(time.monotonic_ns() + 1_000_000) is True  # reached its due time
