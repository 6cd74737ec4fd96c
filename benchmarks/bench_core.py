"""Core benchmarks, each beside its baseline in the same run (engine vs numpy / simplejpeg / solo loop).

Run: make bench (or .venv/bin/python -m pytest benchmarks/bench_core.py --benchmark-only).
The ratios are reported at the end of the run; nothing here is a pass/fail timing assertion.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import simplejpeg
from conftest import RESULTS, ratio

from reactor_engine import _C

HEIGHT, WIDTH = 720, 1280
QUALITY, SUBSAMPLING = 90, "420"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack([x * 255 / WIDTH, y * 255 / HEIGHT, (x ^ y) & 255], axis=-1).astype(np.uint8)


def test_copy_into_slot(benchmark, report, frame):
    """acquire + copy + commit of a 720p frame (drop_oldest: never waits, no encoder)."""
    ring = _C.FrameRing(4, WIDTH, HEIGHT, "drop_oldest")
    benchmark.pedantic(ring.write, args=(frame,), rounds=300, warmup_rounds=20)
    report(benchmark, "copy 720p: FrameRing.write")


def test_copy_baseline_numpy(benchmark, report, frame):
    """The floor: np.copyto into a preallocated array of the same size."""
    target = np.empty_like(frame)
    benchmark.pedantic(np.copyto, args=(target, frame), rounds=300, warmup_rounds=20)
    report(benchmark, "copy 720p: np.copyto (baseline)")
    ours = RESULTS.get("copy 720p: FrameRing.write")
    if ours:
        baseline = RESULTS["copy 720p: np.copyto (baseline)"]["p50"]
        ratio(
            "copy time slot / np.copyto p50", ours["p50"] / baseline, "time ratio: < 1 is faster than numpy"
        )


BATCH = 20


def test_jpeg_encode_engine(benchmark, report, frame):
    """Throughput: a round writes BATCH 720p frames (q90 4:2:0) while a thread pops; time per frame."""
    ring = _C.FrameRing(4, WIDTH, HEIGHT)
    encoder = _C.Encoder(ring, codec="jpeg", quality=QUALITY, subsampling=SUBSAMPLING)
    popped = threading.Semaphore(0)
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            try:
                encoder.queue.pop(timeout=0.1).release()
            except TimeoutError:
                continue
            popped.release()

    consumer = threading.Thread(target=consume)
    consumer.start()

    def batch() -> None:
        for _ in range(BATCH):
            ring.write(frame, timeout=5.0)
        for _ in range(BATCH):
            popped.acquire()

    try:
        benchmark.pedantic(batch, rounds=15, warmup_rounds=1)
    finally:
        stop.set()
        consumer.join()
        encoder.close()
    figures = report(benchmark, "jpeg 720p: engine, per frame of a batch")
    for key in figures:
        figures[key] /= BATCH


def test_jpeg_encode_baseline_simplejpeg(benchmark, report, frame):
    """The floor: simplejpeg (libjpeg-turbo) at identical settings, in the calling thread."""
    benchmark.pedantic(
        simplejpeg.encode_jpeg,
        args=(frame,),
        kwargs={"quality": QUALITY, "colorspace": "RGB", "colorsubsampling": SUBSAMPLING},
        rounds=100,
        warmup_rounds=5,
    )
    report(benchmark, "jpeg 720p: simplejpeg (baseline)")
    ours = RESULTS.get("jpeg 720p: engine, per frame of a batch")
    if ours:
        floor = RESULTS["jpeg 720p: simplejpeg (baseline)"]["p50"]
        ratio("jpeg throughput engine / simplejpeg", floor / ours["p50"], ">= 0.9 is the target")


def python_loop() -> None:
    total = 0
    for i in range(20_000):
        total += i * i


def test_python_loop_solo(benchmark, report):
    benchmark.pedantic(python_loop, rounds=200, warmup_rounds=10)
    report(benchmark, "python loop: solo")


def test_python_loop_while_encoding(benchmark, report, frame):
    """The same loop while another thread emits 720p frames at 30 fps and the encoder encodes them."""
    ring = _C.FrameRing(4, WIDTH, HEIGHT, "drop_oldest")
    encoder = _C.Encoder(ring, codec="jpeg", quality=QUALITY, subsampling=SUBSAMPLING)
    stop = threading.Event()

    def produce() -> None:
        period = 1 / 30
        next_time = time.monotonic()
        while not stop.is_set():
            ring.write(frame)
            next_time += period
            stop.wait(max(0.0, next_time - time.monotonic()))

    def consume() -> None:
        while not stop.is_set():
            try:
                encoder.queue.pop(timeout=0.1).release()
            except TimeoutError:
                continue

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    try:
        benchmark.pedantic(python_loop, rounds=200, warmup_rounds=10)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        encoder.close()
    report(benchmark, "python loop: while encoding 720p@30")
    solo = RESULTS.get("python loop: solo")
    if solo:
        kept = solo["p50"] / RESULTS["python loop: while encoding 720p@30"]["p50"]
        ratio("python loop speed kept while encoding", kept, ">= 0.95 is the target")
