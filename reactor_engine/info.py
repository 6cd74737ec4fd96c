"""What ``reactor-engine info`` reports: the version, the native build, run-time CUDA and host-memory
pinning, the packages that matter, and GPU telemetry."""

from __future__ import annotations

import sys
from typing import Any

from reactor_engine.errors import ReactorError

__all__ = ["collect_info"]


def collect_info() -> dict[str, Any]:
    """Version, native build features, run-time CUDA and pinning, and GPU telemetry."""
    from importlib import metadata

    from reactor_engine import _C, __version__
    from reactor_engine.telemetry import gpu_telemetry

    build = dict(_C.build_info())
    try:
        with _C.HostArena(1 << 20) as arena:  # what pinning this process achieves
            pinning = {"pinning": arena.pinning, "cuda": arena.cuda, "hugepages": arena.hugepages}
    except ReactorError as exc:
        pinning = {"pinning": f"none: {exc}"}
    packages: dict[str, str | None] = {}
    for package in ("torch", "numpy", "starlette", "uvicorn", "nvidia-ml-py"):
        try:
            packages[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            packages[package] = None
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "build": build,
        "cuda_runtime": _C.cuda_status(),
        "host_memory": pinning,
        "packages": packages,
        "gpu": gpu_telemetry().as_dict(),
    }
