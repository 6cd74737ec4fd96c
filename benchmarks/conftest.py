"""Benchmark reporting: each figure's p50/p99 beside its baseline from the same run, and the machine."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

RESULTS: dict[str, dict[str, float]] = {}
RATIOS: list[tuple[str, float, str]] = []


def machine() -> str:
    from report import machine_line  # imported late: report pulls in the engine

    return machine_line()


def record(benchmark: Any, name: str) -> dict[str, float]:
    """Stores p50/p99 (seconds per round) of a finished pytest-benchmark run under name."""
    data = np.asarray(benchmark.stats.stats.data)
    figures = {"p50": float(np.percentile(data, 50)), "p99": float(np.percentile(data, 99))}
    benchmark.extra_info.update(figures)
    RESULTS[name] = figures
    return figures


def ratio(name: str, value: float, meaning: str) -> None:
    RATIOS.append((name, value, meaning))


@pytest.fixture(scope="session")
def report() -> Any:
    return record


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("reactor-engine benchmarks")
    group.addoption(
        "--quick",
        action="store_true",
        default=False,
        help="short runs of the latency suite (benchmarks/run.py --quick; the CI smoke test)",
    )
    group.addoption(
        "--malloc-probe",
        action="store_true",
        default=False,
        help="count malloc calls per thread with perf uprobes (root and perf needed; else reported why not)",
    )


@pytest.fixture(scope="session")
def quick(request: Any) -> bool:
    """True in quick mode: every latency-suite figure runs for a fraction of its full time."""
    return bool(request.config.getoption("--quick") or os.environ.get("REACTOR_BENCH_QUICK"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS and not RATIOS:
        return
    write = terminalreporter.write_line
    write("")
    write(f"reactor-engine core benchmarks on {machine()}")
    write(f"{'figure':<44} {'p50':>12} {'p99':>12}")
    for name, figures in sorted(RESULTS.items()):
        write(f"{name:<44} {figures['p50'] * 1e6:>10.1f}us {figures['p99'] * 1e6:>10.1f}us")
    for name, value, meaning in RATIOS:
        write(f"ratio {name:<38} {value:>8.2f}x  ({meaning})")
