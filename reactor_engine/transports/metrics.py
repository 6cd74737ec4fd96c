"""The hub's Prometheus metrics: session and client counters by transport kind, plus engine and GPU state."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reactor_engine import heap
from reactor_engine.errors import ReactorError
from reactor_engine.telemetry import gpu_telemetry

if TYPE_CHECKING:
    from reactor_engine.engine import Engine

__all__ = ["HubMetrics"]

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, math.inf)


class HubMetrics:
    """The metrics of one hub, in a registry of its own (several apps may share a process)."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sessions_started = Counter(
            "reactor_sessions_started", "Sessions started", registry=self.registry
        )
        self.sessions_ended = Counter(
            "reactor_sessions_ended", "Sessions ended, by reason", ["reason"], registry=self.registry
        )
        self.session_active = Gauge(
            "reactor_session_active", "1 while a session runs", registry=self.registry
        )
        self.clients = Gauge(
            "reactor_clients", "Connected clients, by transport kind", ["kind"], registry=self.registry
        )
        self.frames_sent = Counter(
            "reactor_frames_sent",
            "Packets taken from the engine and handed to the clients, by codec",
            ["codec"],
            registry=self.registry,
        )
        self.client_frames_dropped = Counter(
            "reactor_client_frames_dropped",
            "Frames a slow client missed (its buffer keeps the latest), by transport kind",
            ["kind"],
            registry=self.registry,
        )
        self.commands = Counter(
            "reactor_commands", "Commands received, by command and outcome", ["command", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.frame_latency = Histogram(
            "reactor_frame_latency_seconds",
            "From the model's commit of a frame to its hand-off to the clients, by codec",
            ["codec"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.media_refused = Counter(
            "reactor_media_refused",
            "Client media (frames, audio blocks) refused by a transport, by transport kind and error code",
            ["kind", "code"],
            registry=self.registry,
        )
        self.audio_chunks_sent = Counter(
            "reactor_audio_chunks_sent",
            "20 ms chunks of the model's audio handed to the clients, by track",
            ["track"],
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine))


class _EngineCollector(Collector):
    """Read at scrape time: engine state, native ring counters and latencies, GPU telemetry."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "reactor_engine_state", "1 for the engine's current state", labels=["state"]
        )
        for name in ("loading", "ready", "starting", "streaming", "stopping", "error", "unhealthy", "closed"):
            state.add_metric([name], 1.0 if self._engine.state == name else 0.0)
        yield state
        frames = CounterMetricFamily(
            "reactor_ring_frames",
            "Native frame ring counters, by track and counter",
            labels=["track", "counter"],
        )
        latency = GaugeMetricFamily(
            "reactor_ring_latency_seconds",
            "Native latency percentiles since the engine started, by track, stage and quantile",
            labels=["track", "stage", "quantile"],
        )
        decoders = CounterMetricFamily(
            "reactor_input_decoder",
            "Native input decoder counters (packets in, dropped, refused, decode errors), by track, codec",
            labels=["track", "codec", "counter"],
        )
        try:
            stats = self._engine.stats()
        except ReactorError:  # a closed engine has no rings left to read
            stats = {}
        for track, numbers in stats.items():
            ring = numbers.get("ring", {})
            for key, value in ring.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    frames.add_metric([track, key.removeprefix("frames_")], float(value))
            for stage, summary in ring.get("latency", {}).items():
                for quantile in ("p50", "p90", "p99", "p999", "max"):
                    if quantile in summary:
                        latency.add_metric([track, stage, quantile], float(summary[quantile]) / 1e9)
            for codec, counters in numbers.get("decoders", {}).items():  # a VideoIn's decoders
                for key, value in counters.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        decoders.add_metric([track, codec, key], float(value))
        yield frames
        yield latency
        yield decoders
        yield from _heap_metrics()
        yield from _gpu_metrics()


def _heap_metrics() -> Iterable[Metric]:
    numbers = heap.stats()
    trims = CounterMetricFamily(
        "reactor_heap_trims",
        "C heap trims (glibc malloc_trim) at session ends and peer departures",
        labels=["result"],
    )
    trims.add_metric(["released"], float(numbers["released"]))
    trims.add_metric(["nothing"], float(numbers["trims"] - numbers["released"]))
    yield trims
    seconds = CounterMetricFamily("reactor_heap_trim_seconds", "Time spent in C heap trims")
    seconds.add_metric([], numbers["total_ms"] / 1e3)
    yield seconds


def _gpu_metrics() -> Iterable[Metric]:
    telemetry = gpu_telemetry()
    available = GaugeMetricFamily("reactor_gpu_available", "1 when NVML reports NVIDIA GPUs")
    available.add_metric([], 1.0 if telemetry.available else 0.0)
    yield available
    if not telemetry.available:
        return
    families = {
        "memory_used": GaugeMetricFamily(
            "reactor_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu"]
        ),
        "memory_total": GaugeMetricFamily("reactor_gpu_memory_total_bytes", "GPU memory", labels=["gpu"]),
        "utilization": GaugeMetricFamily(
            "reactor_gpu_utilization_ratio", "GPU busy fraction", labels=["gpu"]
        ),
        "temperature": GaugeMetricFamily(
            "reactor_gpu_temperature_celsius", "GPU temperature", labels=["gpu"]
        ),
        "power": GaugeMetricFamily("reactor_gpu_power_watts", "GPU power draw", labels=["gpu"]),
    }
    for gpu in telemetry.devices:
        label = [str(gpu.index)]
        readings = {
            "memory_used": gpu.memory_used_bytes,
            "memory_total": gpu.memory_total_bytes,
            "utilization": gpu.utilization_percent / 100.0 if gpu.utilization_percent is not None else None,
            "temperature": gpu.temperature_c,
            "power": gpu.power_w,
        }
        for key, value in readings.items():
            if value is not None:
                families[key].add_metric(label, float(value))
    yield from families.values()
