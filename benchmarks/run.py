"""Runs the benchmark suite in one process and writes benchmarks/results/<host>-<date>.{json,md,png}.

    .venv/bin/python benchmarks/run.py            # full run (several minutes; run it rarely)
    .venv/bin/python benchmarks/run.py --quick    # under two minutes: the CI smoke test

Every figure is measured for the engine and the pure-Python baseline by the same code in this one
process; the table gives each ratio and which side is which. Nothing here asserts a timing: the exit
status is pytest's, non-zero only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LATENCY_SUITE = [
    "bench_latency.py",
    "bench_overload.py",
    "bench_sessions.py",
    "bench_allocations.py",
    "bench_loopback.py",
]
CORE = ["bench_core.py"]
WEIGHTS = ["bench_weights.py"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the results")
    parser.add_argument("-k", dest="keyword", help="only the benchmarks matching this pytest -k expression")
    parser.add_argument("--no-core", action="store_true", help="skip bench_core.py (core micro-benchmarks)")
    parser.add_argument("--weights", action="store_true", help="also bench_weights.py (writes ~1.3 GiB)")
    parser.add_argument(
        "--malloc-probe",
        action="store_true",
        help="count malloc calls per thread with perf uprobes (needs root and perf)",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))  # the bench files' imports (figures, pipelines, baselines)
    import pytest
    import report

    files = list(LATENCY_SUITE)
    if not args.no_core:
        files += CORE
    if args.weights:
        files += WEIGHTS
    from pipelines import StealClock

    steal = StealClock()
    steal.start()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        bench_json = Path(tmp) / "pytest-benchmark.json"
        pytest_args = [
            *(str(HERE / name) for name in files),
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            f"--benchmark-json={bench_json}",
            "--benchmark-columns=median,min,max,rounds",
            # A -k selection without pytest-benchmark tests makes its JSON writer warn (an error here).
            "-W",
            "ignore::pytest_benchmark.logger.PytestBenchmarkWarning",
        ]
        if args.quick:
            pytest_args.append("--quick")
        if args.malloc_probe:
            pytest_args.append("--malloc-probe")
        if args.keyword:
            pytest_args += ["-k", args.keyword]
        status = int(pytest.main(pytest_args))
        micro = json.loads(bench_json.read_text()) if bench_json.exists() else {}
    steal.stop()
    extra = {
        "pytest_exit_status": status,
        "duration_s": time.monotonic() - started,
        "steal_pct": 100 * steal.share(),
        "pytest_benchmark": [
            {"name": b["name"], "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
            for b in micro.get("benchmarks", [])
        ],
        "pytest_benchmark_machine": micro.get("machine_info"),
    }
    paths = report.write(args.out, quick=args.quick, extra=extra)
    print(paths["md"].read_text())
    print(f"run took {extra['duration_s']:.0f} s; wrote " + ", ".join(str(p) for p in paths.values()))
    return status


if __name__ == "__main__":
    sys.exit(main())
