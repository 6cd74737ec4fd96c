"""The harness's bookkeeping: frames matched to emissions inside the window, CPU read from /proc.

.venv/bin/python -m pytest benchmarks/glass/test_results.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glass import results
from glass.client import process_tree_cpu_s

MS = 1_000_000


def test_analyse_counts_and_latency():
    start, end = 1000 * MS, 2000 * MS
    stamps = np.array([[i, start - 100 * MS + i * 100 * MS] for i in range(12)], np.int64)  # 900..2000 ms
    frames = [[int(t) + 20 * MS, int(i), 64, 48, int(t) + 5 * MS] for i, t in stamps[:-1]]  # 20 ms later
    frames[5][1] = -1  # one undecodable
    result = {"window": {"start_ns": start, "end_ns": end, "server_cpu_s": 0.5}, "frames": frames}
    figures = results.analyse(result, stamps)
    assert figures["emitted"] == 11  # 1000..2000 ms inclusive
    assert figures["received"] == 10  # received at 1020..1920 ms
    assert figures["decoded"] == 9
    assert figures["undecodable"] == 1
    assert figures["latency_ms"]["n"] == 9
    assert abs(figures["latency_ms"]["p50"] - 20.0) < 1e-9
    assert abs(figures["server_cpu_pct"] - 50.0) < 1e-9
    assert figures["sizes_received"] == ["64x48"]
    assert abs(figures["emit_to_server_stamp_ms"]["p50"] - 5.0) < 1e-9
    assert abs(figures["server_stamp_to_client_ms"]["p50"] - 15.0) < 1e-9


def test_merge_pools_repeats():
    start, end = 1000 * MS, 2000 * MS
    stamps = np.array([[i, start + i * 100 * MS] for i in range(10)], np.int64)

    def run(delay_ms: int, cpu_s: float) -> dict:
        frames = [[int(t) + delay_ms * MS, int(i), 64, 48, int(t) + MS] for i, t in stamps]
        window = {"start_ns": start, "end_ns": end, "server_cpu_s": cpu_s}
        return results.analyse({"window": window, "frames": frames}, stamps)

    merged = results.merge([run(10, 0.2), run(30, 0.4), {"error": "boom"}])
    assert merged["latency_ms"]["n"] == run(10, 0.2)["latency_ms"]["n"] * 2
    assert merged["decoded"] == 2 * run(10, 0.2)["decoded"]
    assert abs(merged["server_cpu_pct"] - 30.0) < 1e-9
    assert merged["failed_repeats"] == ["boom"]
    assert merged["server_stamp_to_client_ms"]["n"] == merged["latency_ms"]["n"]


def test_analyse_without_a_window_is_an_error():
    figures = results.analyse({"error": "boom", "frames": []}, np.zeros((0, 2), np.int64))
    assert figures["error"] == "boom"


def test_ratios_are_peer_over_engine():
    runs = {
        "peer-webrtc": {"latency_ms": {"p50": 80.0, "p99": 100.0}, "server_cpu_pct": 60.0},
        "engine-ws": {"latency_ms": {"p50": 20.0, "p99": 50.0}, "server_cpu_pct": 30.0},
    }
    assert results.compare(runs, "engine-ws") == {"p50": 4.0, "p99": 2.0, "cpu": 2.0}
    assert results.compare(runs, "engine-webrtc") == {"p50": None, "p99": None, "cpu": None}


def test_process_tree_cpu_reads_this_process():
    sum(i * i for i in range(2_000_000))  # some CPU time
    assert process_tree_cpu_s(os.getpid()) > 0.0
    assert process_tree_cpu_s(2**22 + 12345) == 0.0  # no such process
