"""Overload: a model producing 2x the delivery rate, under each ring policy, engine beside baseline.

The model emits 720p at 60 fps; the transport takes packets at 30 fps. The queueing delay a frame
sees in the ring (commit → encode start) should stay within slots x delivery period; drops must be
counted (not silent); memory (RSS) must stay flat. 30 s per policy and side (3 s in quick mode).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from figures import NS_TO_MS, Figure, declare, record, summary
from pipelines import SIDES, ModelIO, Receiver, Settings, cycle, make_frames, make_pipeline, rss_bytes

from reactor_engine.pacing import FramePacer

POLICIES = ("drop_oldest", "drop_newest", "block")
DELIVERY_FPS = 30.0
PRODUCE_FPS = 60.0
SLOTS = 4
BOUND_MS = SLOTS * 1e3 / DELIVERY_FPS

for _policy in POLICIES:
    declare(
        Figure(
            f"overload_queue_{_policy}",
            f"overload 60 fps into 30 fps delivery, `{_policy}`: ring queueing delay (commit → encode start)",
            "ms",
            stats=("p50", "p99", "max"),
            headline="max",
            target_kind="engine_at_most",
            target=BOUND_MS,
            target_text=f"engine max ≤ slots x period = {BOUND_MS:.0f} ms",
        )
    )
declare(
    Figure(
        "overload_drops",
        "overload: frames dropped, % of committed (counted by the pipeline)",
        "%",
        stats=POLICIES,
        headline="",
        note="block drops nothing: the producer is held back instead (its achieved rate is in the JSON)",
    )
)
declare(
    Figure(
        "overload_rss",
        "overload: RSS range over the run after 1 s (flat ⇒ ~0)",
        "MiB",
        stats=POLICIES,
        headline="",
    )
)
declare(
    Figure(
        "overload_receipt",
        "overload: commit → receipt p99 (ring + packet queue of 8 at 30 fps)",
        "ms",
        stats=POLICIES,
        headline="",
    )
)
_by_side: dict[str, dict[str, dict[str, float]]] = {}


class RssSampler:
    def __init__(self, period: float = 0.1) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._period = period
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self._period):
            self.samples.append((time.monotonic() - start, rss_bytes()))

    def close(self) -> np.ndarray:
        self._stop.set()
        self._thread.join()
        return np.asarray(self.samples, dtype=np.float64).reshape(-1, 2)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("side", SIDES)
def test_overload(side, policy, quick):
    seconds = 3.0 if quick else 30.0
    frames = make_frames(1280, 720)
    pipeline = make_pipeline(side, Settings(policy=policy, slots=SLOTS))
    receiver = Receiver(pipeline, delivery_fps=DELIVERY_FPS)
    produced: list[int] = []

    def job(io: ModelIO) -> None:
        pacer = FramePacer(PRODUCE_FPS)
        source = cycle(frames)
        count = 0
        end = time.monotonic() + seconds
        while not io.should_stop() and time.monotonic() < end:
            _, wait_ns = pacer.next_frame()
            if wait_ns:
                io.wait(wait_ns / 1e9)
            io.emit(next(source))
            count += 1
        produced.append(count)
        while not io.should_stop():
            io.wait(0.1)

    sampler = RssSampler()
    started = time.monotonic()
    pipeline.start(job)
    try:
        while not produced and time.monotonic() - started < seconds + 30:
            time.sleep(0.05)
    finally:
        rss = sampler.close()
        pipeline.stop()
        receiver.close()
        counters = pipeline.counters()
        pipeline.close()
    commit = receiver.column("commit")
    queue_ms = (receiver.column("encode_start") - commit) * NS_TO_MS
    receipt_ms = (receiver.column("receipt") - commit) * NS_TO_MS
    steady = rss[rss[:, 0] >= 1.0, 1] if rss.size else np.zeros(0)
    rss_range = float(steady.max() - steady.min()) / 2**20 if steady.size else 0.0
    committed = max(counters["frames_committed"], 1)
    dropped = counters["frames_dropped_oldest"] + counters["frames_dropped_newest"]
    record(
        f"overload_queue_{policy}",
        side,
        summary(queue_ms),
        queue_ms,
        produced_fps=(produced[0] if produced else 0) / seconds,
        received=int(receiver.count),
        counters=counters,
        commit_to_receipt=summary(receipt_ms),
        rss_mib_first=float(steady[0]) / 2**20 if steady.size else None,
        rss_mib_last=float(steady[-1]) / 2**20 if steady.size else None,
    )
    mine = _by_side.setdefault(side, {"drops": {}, "rss": {}, "receipt": {}})
    mine["drops"][policy] = 100.0 * dropped / committed
    mine["rss"][policy] = rss_range
    mine["receipt"][policy] = summary(receipt_ms).get("p99", float("nan"))
    record("overload_drops", side, mine["drops"])
    record("overload_rss", side, mine["rss"])
    record("overload_receipt", side, mine["receipt"])
