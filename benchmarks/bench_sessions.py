"""Sessions on a loaded model: time to first frame of a new session, and the switch between two.

Both sides are built once (the engine loads its model and allocates its core; the baseline starts
its encoder thread), then sessions come and go: a session is the model's job on a new model thread.
Each new session's job computes its first frame for COMPUTE_MS (GIL released, like a GPU step) and
then streams at 30 fps. The figures subtract that measured compute: what is left is the serving
overhead to the first packet in the host's hands.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from figures import NS_TO_MS, Figure, declare, record, summary
from pipelines import SIDES, ModelIO, Settings, cycle, make_frames, make_pipeline

COMPUTE_MS = 20.0

declare(
    Figure(
        "ttff",
        "time to first frame of a new session (first packet received), "
        f"beyond {COMPUTE_MS:.0f} ms of model compute",
        "ms",
        stats=("p50", "p99", "max"),
        headline="max",
        target_kind="engine_at_most",
        target=100.0,
        target_text="engine ≤ 100 ms (max)",
    )
)
declare(
    Figure(
        "switch",
        "switch: stop a streaming session → first packet of the next, beyond its model compute",
        "ms",
        stats=("p50", "p99", "max"),
        headline="p50",
    )
)


def first_packet(pipeline, timeout: float = 10.0) -> int:
    """Receipt time (ns) of the next packet, read on this (the host's) thread."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        packet = pipeline.next_packet(0.05)
        if packet is not None:
            receipt = time.monotonic_ns()
            packet.release()
            return receipt
    raise TimeoutError(f"{pipeline.side}: no first packet within {timeout} s")


@pytest.mark.parametrize("side", SIDES)
def test_time_to_first_frame_and_switch(side, quick):
    frames = make_frames(1280, 720, count=4)
    sessions = 5 if quick else 30
    pipeline = make_pipeline(side, Settings())
    compute_ns: list[int] = []

    def job(io: ModelIO) -> None:
        start = time.monotonic_ns()
        io.wait(COMPUTE_MS / 1e3)  # the first frame's compute (returns early only on a stop)
        compute_ns.append(time.monotonic_ns() - start)
        source = cycle(frames)
        while not io.should_stop():
            io.emit(next(source))
            io.wait(1 / 30)

    ttff, switch, stop_ms = [], [], []
    try:
        for _ in range(sessions):
            called = time.monotonic_ns()
            pipeline.start(job)
            ttff.append((first_packet(pipeline) - called - compute_ns[-1]) * NS_TO_MS)
            stream_until = time.monotonic() + 0.2  # a streaming session, its packets read
            while time.monotonic() < stream_until:
                packet = pipeline.next_packet(0.05)
                if packet is not None:
                    packet.release()
            switched = time.monotonic_ns()
            pipeline.stop()
            stop_ms.append((time.monotonic_ns() - switched) * NS_TO_MS)
            pipeline.start(job)
            switch.append((first_packet(pipeline) - switched - compute_ns[-1]) * NS_TO_MS)
            pipeline.stop()
    finally:
        pipeline.close()
    record("ttff", side, summary(ttff), np.asarray(ttff), sessions=sessions)
    record("switch", side, summary(switch), np.asarray(switch), stop_ms=summary(stop_ms))
