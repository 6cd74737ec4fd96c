"""Every blocking call into the core releases the GIL: threads inside them overlap in time.

Each check starts two threads behind a barrier; each records the window [enter, leave] of its own
blocking call. With the GIL held inside the call, the second thread could not even record its
start until the first returned, so the windows could not overlap. No timing threshold is used.

Two things would make that proof weak or flaky, and both are ruled out:
- CPython takes the GIL from a thread at a bytecode boundary once another thread has waited a switch
  interval (5 ms). The second thread could then record its start between the first's stamp and its
  call, so windows would overlap though the call held the GIL. The switch interval is raised for the
  check, far beyond any call's length: the GIL changes hands only where a thread gives it up.
- A call that is over quickly (a copy of a few MiB) can finish before the other thread is even
  scheduled out of the barrier, and the windows then miss each other on a busy machine although the
  call releases the GIL. `repeat=True` calls it again until the other thread has started (bounded
  by a deadline): with the GIL released the other thread starts inside the first's window; with it
  held the other could start only when the first thread has finished.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from reactor_engine import _C

# Far beyond any call here and beyond the repeat deadline, so that no thread loses the GIL at a
# bytecode boundary during a check: a call that holds the GIL fails the check.
NO_FORCED_SWITCH_S = 120.0
REPEAT_DEADLINE_S = 10.0


def overlapping_windows(
    call: Callable[[int], None], *, repeat: bool = False
) -> tuple[tuple[int, int], tuple[int, int]]:
    barrier = threading.Barrier(2)
    windows: list[tuple[int, int]] = [(0, 0), (0, 0)]
    started = [False, False]  # plain flags: reading or setting one never gives up the GIL
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        barrier.wait()
        start = time.monotonic_ns()
        started[index] = True
        deadline = start + int(REPEAT_DEADLINE_S * 1e9)
        try:
            call(index)
            while repeat and not started[1 - index] and time.monotonic_ns() < deadline:
                call(index)
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)
        windows[index] = (start, time.monotonic_ns())

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(NO_FORCED_SWITCH_S)
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert not failures, failures
    return windows[0], windows[1]


def assert_overlap(call: Callable[[int], None], *, repeat: bool = False) -> None:
    """Two threads in `call` overlap in time; `repeat`: call it again until the other has started."""
    (a_start, a_end), (b_start, b_end) = overlapping_windows(call, repeat=repeat)
    assert a_start < b_end and b_start < a_end, "the two blocking calls ran one after the other"


def test_pop_on_an_empty_queue_releases_the_gil():
    encoders = [_C.Encoder(_C.FrameRing(2, 8, 8)) for _ in range(2)]

    def pop(index: int) -> None:
        with pytest.raises(TimeoutError):
            encoders[index].queue.pop(timeout=0.3)

    assert_overlap(pop)
    for encoder in encoders:
        encoder.close()


def test_acquire_on_a_full_ring_releases_the_gil():
    rings = [_C.FrameRing(2, 8, 8, "block") for _ in range(2)]
    for ring in rings:
        ring.write(np.zeros((8, 8, 3), np.uint8))
        ring.write(np.zeros((8, 8, 3), np.uint8))

    def acquire(index: int) -> None:
        with pytest.raises(TimeoutError):
            rings[index].acquire(8, 8, timeout=0.3)

    assert_overlap(acquire)


def test_copying_write_releases_the_gil():
    frame = np.random.default_rng(0).integers(0, 255, (2160, 3840, 3), np.uint8)
    rings = [_C.FrameRing(8, 3840, 2160, "drop_oldest") for _ in range(2)]

    def write(index: int) -> None:
        for _ in range(6):
            rings[index].write(frame)

    assert_overlap(write)


def test_flush_and_close_release_the_gil():
    rings = [_C.FrameRing(2, 8, 8, "block") for _ in range(2)]
    encoders = [_C.Encoder(ring, codec="raw", queue_capacity=1) for ring in rings]
    for ring in rings:  # the single packet buffer fills and nobody pops: flush must wait
        for _ in range(3):
            ring.write(np.zeros((8, 8, 3), np.uint8), timeout=5.0)

    def flush_then_close(index: int) -> None:
        with pytest.raises(TimeoutError):
            encoders[index].flush(timeout=0.3)
        encoders[index].close()

    assert_overlap(flush_then_close)


def test_a_python_thread_keeps_running_while_another_waits_in_the_core():
    encoder = _C.Encoder(_C.FrameRing(2, 8, 8))
    entered = threading.Event()
    progress = 0

    def wait_in_core() -> None:
        entered.set()
        with pytest.raises(TimeoutError):
            encoder.queue.pop(timeout=0.5)

    waiter = threading.Thread(target=wait_in_core)
    waiter.start()
    entered.wait()
    while waiter.is_alive():
        progress += 1
    waiter.join()
    encoder.close()
    assert progress > 1000
