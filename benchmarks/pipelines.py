"""The engine and the baseline behind one interface, so every figure runs the same driver code on both.

- ``EnginePipeline``: a real ``Engine`` serving ``DrivenModel``; frames go through the public
  ``VideoTrack.emit`` (or ``with track.frame()``) of a running session, packets come out of
  ``Session.next_packet``: the path a user's model and a runtime take.
- ``BaselinePipeline``: ``baselines.QueuePipeline`` with a plain Python thread as the model thread.

A *job* is the model's loop: ``job(io)`` runs on the model thread (the engine's session thread, or
the baseline's model thread) with ``io.emit``, ``io.should_stop`` and ``io.wait``. A ``Receiver`` is
the transport: a thread popping packets and stamping their receipt into preallocated columns.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import numpy as np
from baselines import QueuePipeline

from reactor_engine import Engine, ReactorTimeoutError, VideoModel, VideoOut, get_ctx, model
from reactor_engine.pacing import FramePacer

SIDES = ("engine", "baseline")
SIDE_LABELS = {
    "engine": "reactor-engine: Engine session, VideoTrack.emit → native FrameRing → native JPEG encoder",
    "baseline": "baseline: frame.copy() → queue.Queue(maxsize=4) → Python thread + simplejpeg",
}
COUNTERS = (
    "frames_committed",
    "frames_encoded",
    "frames_dropped_oldest",
    "frames_dropped_newest",
    "block_timeouts",
)


@dataclass(frozen=True)
class Settings:
    """What both sides are configured with (the engine's defaults, ``configs/default.yaml``)."""

    width: int = 1280
    height: int = 720
    slots: int = 4
    policy: str = "drop_oldest"
    quality: int = 85
    subsampling: str = "420"
    jpeg_threads: int = 2  # the engine's stripes per JPEG frame (the baseline: simplejpeg in one thread)
    packet_queue: int = 8
    fps: float = 0.0
    emit_timeout: float = 2.0

    def but(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelIO(Protocol):
    """What a job sees on its model thread."""

    native_id: int

    def emit(self, frame: Any) -> None: ...
    def should_stop(self) -> bool: ...
    def wait(self, seconds: float) -> None: ...


Job = Callable[[ModelIO], None]


def idle_job(io: ModelIO) -> None:
    """A session that only waits: the host thread emits (the micro-benchmarks)."""
    while not io.should_stop():
        io.wait(1.0)


class Pipeline(Protocol):
    side: str
    settings: Settings

    def start(self, job: Job) -> None: ...
    def stop(self) -> None: ...
    def emit(self, frame: Any) -> None: ...
    def next_packet(self, timeout: float) -> Any: ...
    def counters(self) -> dict[str, int]: ...
    def encoder_native_ids(self) -> list[int]: ...
    def close(self) -> None: ...


# -- engine ----------------------------------------------------------------------------------------


@model(name="bench-driven")
class DrivenModel(VideoModel):
    """Runs ``self.job`` as its session; the benchmark sets the job before each session."""

    main_video = VideoOut(default=True)

    def __init__(self, config: Any = None) -> None:
        self.job: Job = idle_job

    def start_session(self) -> None:
        self.job(_EngineIO(self.main_video))


class _EngineIO:
    def __init__(self, track: Any) -> None:
        ctx = get_ctx()
        self.native_id = threading.get_native_id()
        self.emit = track.emit
        self.frame: Callable[[], AbstractContextManager[np.ndarray]] = track.frame
        self.should_stop = ctx.should_stop
        self._ctx = ctx

    def wait(self, seconds: float) -> None:
        self._ctx.wait(seconds)


class EnginePipeline:
    side = "engine"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        before = thread_ids()
        self.engine = Engine(
            DrivenModel,
            engine_config={
                "width": settings.width,
                "height": settings.height,
                "ring_slots": settings.slots,
                "ring_policy": settings.policy,
                "quality": settings.quality,
                "subsampling": settings.subsampling,
                "jpeg_threads": settings.jpeg_threads,
                "packet_queue": settings.packet_queue,
                "fps": settings.fps,
                "max_fps": 0.0,  # throughput figures: the safety cap on automatic pacing is off
                "emit_timeout": settings.emit_timeout,
                "codec": "jpeg",
            },
        )
        # The core's encoder threads are the native threads the engine started (no Python thread yet).
        self._encoder_ids = sorted(thread_ids() - before)
        self.track = self.engine.tracks["main_video"]
        self.session: Any = None

    def start(self, job: Job) -> None:
        assert self.engine.model is not None
        self.engine.model.job = job  # type: ignore[attr-defined]
        self.session = self.engine.session()

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()

    def emit(self, frame: Any) -> None:
        self.track.emit(frame)

    def frame(self) -> AbstractContextManager[np.ndarray]:
        return self.track.frame()

    def next_packet(self, timeout: float) -> Any:
        session = self.session
        if session is None:
            time.sleep(timeout)
            return None
        try:
            packet = session.next_packet(timeout)
        except ReactorTimeoutError:
            return None
        if packet is None:  # that session has ended and handed out everything
            time.sleep(min(timeout, 0.005))
        return packet

    def counters(self) -> dict[str, int]:
        stats = self.track.ring.stats()
        return {key: int(stats[key]) for key in COUNTERS}

    def native_stats(self) -> dict[str, Any]:
        return dict(self.track.ring.stats())

    def encoder_native_ids(self) -> list[int]:
        return list(self._encoder_ids)

    def close(self) -> None:
        self.engine.close()


# -- baseline --------------------------------------------------------------------------------------


class _BaselineIO:
    def __init__(self, pipeline: QueuePipeline, stop: threading.Event) -> None:
        self.native_id = threading.get_native_id()
        self.emit = pipeline.emit
        self._stop = stop

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> None:
        self._stop.wait(seconds)


class BaselinePipeline:
    side = "baseline"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue = QueuePipeline(
            slots=settings.slots,
            policy=settings.policy,
            quality=settings.quality,
            subsampling=settings.subsampling,
            packet_queue=settings.packet_queue,
            fps=settings.fps,
            emit_timeout=settings.emit_timeout,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, job: Job) -> None:
        self.queue.reset()
        self._stop = threading.Event()
        stop = self._stop

        def run() -> None:
            job(_BaselineIO(self.queue, stop))

        self._thread = threading.Thread(target=run, name="baseline-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.queue.stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def emit(self, frame: Any) -> None:
        self.queue.emit(frame)

    def next_packet(self, timeout: float) -> Any:
        return self.queue.next_packet(timeout)

    def counters(self) -> dict[str, int]:
        return dict(self.queue.counters)

    def encoder_native_ids(self) -> list[int]:
        native_id = self.queue.encoder_native_id
        return [native_id] if native_id is not None else []

    def close(self) -> None:
        self.stop()
        self.queue.close()


def make_pipeline(side: str, settings: Settings) -> EnginePipeline | BaselinePipeline:
    if side == "engine":
        return EnginePipeline(settings)
    if side == "baseline":
        return BaselinePipeline(settings)
    raise ValueError(f"side must be one of {', '.join(SIDES)}; got {side!r}")


# -- the transport ---------------------------------------------------------------------------------

# Columns of Receiver.rows, all ns on the monotonic clock except size (bytes) and index.
COLUMNS = ("frame_index", "pts", "commit", "encode_start", "encode_end", "publish", "receipt", "size")


class Receiver:
    """A transport thread: pops packets, stamps receipt, releases them. ``delivery_fps`` paces it."""

    def __init__(self, pipeline: Pipeline, capacity: int = 1 << 16, delivery_fps: float = 0.0) -> None:
        self.pipeline = pipeline
        self.rows = np.zeros((capacity, len(COLUMNS)), dtype=np.int64)
        self.count = 0
        self.received_total = 0
        self._delivery_fps = delivery_fps
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"receiver-{pipeline.side}", daemon=True)
        self._thread.start()

    @property
    def native_id(self) -> int | None:
        return self._thread.native_id

    def _run(self) -> None:
        pacer = FramePacer(self._delivery_fps) if self._delivery_fps > 0 else None
        rows = self.rows
        while not self._stop.is_set():
            packet = self.pipeline.next_packet(0.05)
            if packet is None:
                continue
            receipt = time.monotonic_ns()
            with self._cv:
                i = self.count
                if i < len(rows):
                    row = rows[i]
                    row[0] = packet.frame_index
                    row[1] = packet.pts_ns
                    row[2] = packet.t_commit_ns
                    row[3] = packet.t_encode_start_ns
                    row[4] = packet.t_encode_end_ns
                    row[5] = packet.t_publish_ns
                    row[6] = receipt
                    row[7] = packet.size
                    self.count = i + 1
                self.received_total += 1
                self._cv.notify_all()
            packet.release()
            if pacer is not None:
                _, wait_ns = pacer.next_frame()
                if wait_ns:
                    self._stop.wait(wait_ns / 1e9)

    def wait_for(self, total: int, timeout: float = 10.0) -> bool:
        """Wait until ``total`` packets have been received since the last ``clear``."""
        with self._cv:
            return self._cv.wait_for(lambda: self.received_total >= total, timeout)

    def clear(self) -> None:
        with self._cv:
            self.count = 0
            self.received_total = 0

    def column(self, name: str) -> np.ndarray:
        return self.rows[: self.count, COLUMNS.index(name)].copy()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# -- inputs ----------------------------------------------------------------------------------------


def make_frames(width: int, height: int, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """``count`` distinct RGB frames: moving gradients with mild noise (realistic JPEG sizes)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for k in range(count):
        phase = k * 0.4
        r = 127 + 100 * np.sin(x / 37.0 + phase)
        g = 127 + 100 * np.sin(y / 23.0 - phase)
        b = 127 + 100 * np.sin((x + y) / 51.0 + 2 * phase)
        rgb = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (height, width, 3))
        frames.append(np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8)))
    return frames


def cycle(frames: list[np.ndarray]) -> Iterator[np.ndarray]:
    while True:
        yield from frames


class PythonWork:
    """Pure-Python compute that holds the GIL for a set time: the Python share of a model's step."""

    def __init__(self) -> None:
        self.iterations_per_ms = self._calibrate()

    @staticmethod
    def spin(iterations: int) -> int:
        total = 0
        for i in range(iterations):
            total += i * i
        return total

    def _calibrate(self) -> float:
        rates = []
        for _ in range(5):
            start = time.perf_counter_ns()
            self.spin(20_000)
            rates.append(20_000 / ((time.perf_counter_ns() - start) / 1e6))
        return float(np.median(rates))

    def hold(self, ms: float) -> None:
        if ms > 0:
            self.spin(int(ms * self.iterations_per_ms))


# -- /proc -----------------------------------------------------------------------------------------


def thread_ids() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/task")}


def thread_faults(native_id: int) -> tuple[int, int]:
    """(minor, major) page faults of one thread of this process so far."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return (0, 0)
    return int(fields[7]), int(fields[9])  # minflt, majflt: fields 10 and 12 of stat(5)


class StealClock:
    """CPU time the hypervisor gave to other guests (``steal`` in /proc/stat), over all CPUs.

    A VM's tail latencies follow it: a vCPU that is not running delays whatever thread it had, on
    either side. ``share()`` is the stolen fraction of all CPUs' time since ``start()`` (0 where the
    kernel does not count it).
    """

    def __init__(self) -> None:
        self._ticks = 0
        self._wall_ns = 0
        self.stolen_s = 0.0
        self.wall_s = 0.0

    @staticmethod
    def ticks() -> int:
        try:
            with open("/proc/stat") as stat:
                fields = stat.readline().split()  # "cpu  user nice system idle iowait irq softirq steal ..."
        except OSError:
            return 0
        return int(fields[8]) if len(fields) > 8 and fields[0] == "cpu" else 0

    def start(self) -> None:
        self._ticks = self.ticks()
        self._wall_ns = time.monotonic_ns()

    def stop(self) -> None:
        self.stolen_s += (self.ticks() - self._ticks) / os.sysconf("SC_CLK_TCK")
        self.wall_s += (time.monotonic_ns() - self._wall_ns) * 1e-9

    def share(self) -> float:
        cpus = os.cpu_count() or 1
        return self.stolen_s / (self.wall_s * cpus) if self.wall_s > 0 else 0.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
