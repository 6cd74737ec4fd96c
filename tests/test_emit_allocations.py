"""Python allocations per frame in steady state: a copying emit and a zero-copy frame() allocate nothing.

Measured with tracemalloc inside a running session: the traced-memory peak of each call above where it
started, beside the same measurement of an empty call (the measuring itself makes a few objects).
tracemalloc sees every thread, so the session runs alone (raw codec, drop_oldest, nobody popping
packets until the end) and each figure is the median of many calls.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from reactor_engine import Engine, VideoModel, VideoOut, get_ctx, model

CALLS = 120
WARM = 20


@model(name="alloc-emit-probe")
class AllocProbe(VideoModel):
    main_video = VideoOut(default=True)

    def __init__(self, config: Any = None) -> None:
        self.job: Callable[[Any], Any] | None = None
        self.result: Any = None

    def start_session(self) -> None:
        assert self.job is not None
        self.result = self.job(get_ctx().get_track())


def _peaks(call: Callable[[], object]) -> list[int]:
    """Bytes traced at the peak of each call above the start of that call."""
    for _ in range(WARM):
        call()
    peaks = []
    tracemalloc.start()
    try:
        for _ in range(CALLS):
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            call()
            peaks.append(tracemalloc.get_traced_memory()[1] - start)
    finally:
        tracemalloc.stop()
    return sorted(peaks)


@pytest.fixture(scope="module")
def engine():
    config = {
        "max_width": 64,
        "max_height": 48,
        "width": 64,
        "height": 48,
        "codec": "raw",
        "ring_policy": "drop_oldest",
        "fps": 0,
        "max_fps": 0,
    }
    with Engine(AllocProbe, engine_config=config) as eng:
        yield eng


def _run(engine, job):
    engine.model.job = job
    session = engine.session()
    assert session.wait(60)
    for packet in session.packets(timeout=10):
        packet.release()
    assert session.error is None, session.error
    return engine.model.result


def _median(peaks: list[int]) -> int:
    return peaks[len(peaks) // 2]


FRAMES = {
    "frame": np.zeros((48, 64, 3), np.uint8),
    "negative_row_stride": np.zeros((48, 64, 3), np.uint8)[::-1],
    "batch": np.zeros((2, 48, 64, 3), np.uint8),
    "black": None,
}


@pytest.mark.parametrize("kind", list(FRAMES))
def test_emit_allocates_no_python_memory_in_steady_state(engine, kind):
    frame = FRAMES[kind]
    nothing, emits = _run(engine, lambda track: (_peaks(lambda: None), _peaks(lambda: track.emit(frame))))
    assert _median(emits) <= _median(nothing), (emits, nothing)
    assert emits[int(len(emits) * 0.9)] <= nothing[int(len(nothing) * 0.9)], (emits, nothing)


def test_frame_context_allocates_nothing_beyond_the_with_statement_itself(engine):
    # CPython's `with` binds __enter__ and __exit__ (two method objects, freed at the block's end):
    # that much is the statement's own. A lock is a context manager implemented in C, like the track's.
    lock = threading.Lock()

    def job(track):
        def bare_with() -> None:
            with lock:
                pass

        def zero_copy() -> None:
            with track.frame() as buf:
                buf[0, 0, 0] = 1

        return _peaks(bare_with), _peaks(zero_copy)

    interpreter, ours = _run(engine, job)
    assert _median(ours) <= _median(interpreter), (ours, interpreter)
    assert ours[int(len(ours) * 0.9)] <= interpreter[int(len(interpreter) * 0.9)], (ours, interpreter)
