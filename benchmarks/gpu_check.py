"""GPU check, for a machine with an NVIDIA GPU: run by benchmarks/gpu_check.sh, prints one JSON report.

1. The conversion kernel against a CPU reference (uint8/f16/f32, HWC/CHW, [0,1] / [-1,1]).
2. Emit from a CUDA tensor through the kernel into a pinned FrameRing slot, then JPEG: p50/p99.
3. Host<->device copy bandwidth, pinned (HostArena) vs pageable (numpy), same sizes, same run.
"""

from __future__ import annotations

import json
import platform
import sys
import time

import numpy as np
import torch

from reactor_engine import _C

HEIGHT, WIDTH = 720, 1280


def reference(frame: np.ndarray, value_range: str, layout: str) -> np.ndarray:
    hwc = frame.transpose(1, 2, 0) if layout == "chw" else frame
    if value_range == "0_255":
        return hwc.astype(np.uint8)
    offset, scale = (1.0, 127.5) if value_range == "-1_1" else (0.0, 255.0)
    values = (hwc.astype(np.float32) + np.float32(offset)) * np.float32(scale)
    return np.rint(np.clip(np.nan_to_num(values, nan=0.0), 0, 255)).astype(np.uint8)


def check_kernel(converter: _C.CudaConverter) -> list[dict[str, object]]:
    results = []
    generator = torch.Generator().manual_seed(0)
    for dtype, value_range in [
        ("uint8", "0_255"),
        ("float32", "0_1"),
        ("float32", "-1_1"),
        ("float16", "0_1"),
    ]:
        for layout in ("hwc", "chw"):
            shape = (3, 37, 53) if layout == "chw" else (37, 53, 3)
            if dtype == "uint8":
                cpu = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
            else:
                low = -1.0 if value_range == "-1_1" else 0.0
                cpu = (torch.rand(shape, generator=generator) * (1.0 - low) + low).to(getattr(torch, dtype))
            out = np.empty((37, 53, 3), np.uint8)
            device = cpu.cuda()
            converter.convert(
                device.data_ptr(),
                dtype,
                layout,
                value_range,
                53,
                37,
                out,
                torch.cuda.current_stream().cuda_stream,
            )
            expected = reference(
                cpu.float().numpy() if dtype == "float16" else cpu.numpy(), value_range, layout
            )
            mismatches = int(np.count_nonzero(out != expected))
            results.append(
                {"dtype": dtype, "layout": layout, "range": value_range, "mismatched_bytes": mismatches}
            )
    return results


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    data = np.asarray(samples_ns) / 1e6
    return {"p50_ms": float(np.percentile(data, 50)), "p99_ms": float(np.percentile(data, 99))}


def emit_from_cuda(converter: _C.CudaConverter, frames: int = 300) -> dict[str, object]:
    ring = _C.FrameRing(4, WIDTH, HEIGHT, "drop_oldest")
    encoder = _C.Encoder(ring, codec="jpeg", quality=90)
    tensor = torch.rand((3, HEIGHT, WIDTH), device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    emit_ns = []
    for _ in range(frames):
        start = time.monotonic_ns()
        slot = ring.acquire(WIDTH, HEIGHT, timeout=1.0)
        converter.convert(tensor.data_ptr(), "float32", "chw", "0_1", WIDTH, HEIGHT, slot, stream)
        ring.commit(slot)
        emit_ns.append(time.monotonic_ns() - start)
        while (packet := encoder.queue.try_pop()) is not None:
            packet.release()
    encoder.flush(timeout=10.0)
    stats = ring.stats()
    encoder.close()
    return {
        "ring_pinning": ring.pinning,
        "emit": percentiles(emit_ns),
        "commit_to_packet_p99_ms": stats["latency"]["commit_to_packet"]["p99"] / 1e6,
    }


def bandwidth(nbytes: int = 256 << 20, rounds: int = 10) -> dict[str, float]:
    arena = _C.HostArena(nbytes)
    pinned = torch.frombuffer(arena.view(arena.allocate(nbytes, 4096), nbytes), dtype=torch.uint8)
    pageable = torch.from_numpy(np.ones(nbytes, np.uint8))
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    report = {"arena_pinning": arena.pinning}  # type: ignore[dict-item]
    for name, host in (("pinned", pinned), ("pageable", pageable)):
        for direction in ("h2d", "d2h"):
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(rounds):
                if direction == "h2d":
                    device.copy_(host, non_blocking=True)
                else:
                    host.copy_(device, non_blocking=True)
            torch.cuda.synchronize()
            report[f"{name}_{direction}_GBps"] = nbytes * rounds / (time.perf_counter() - start) / 1e9
    report["pinned_over_pageable_h2d"] = report["pinned_h2d_GBps"] / report["pageable_h2d_GBps"]
    report["pinned_over_pageable_d2h"] = report["pinned_d2h_GBps"] / report["pageable_d2h_GBps"]
    return report


def main() -> int:
    status = _C.cuda_status()
    report: dict[str, object] = {"machine": platform.node(), "cuda_status": status, "build": _C.build_info()}
    if not status.startswith("available"):
        print(json.dumps(report, indent=2))
        return 1
    report["gpu"] = torch.cuda.get_device_name(0)
    converter = _C.CudaConverter(WIDTH, HEIGHT)
    report["kernel_vs_cpu_reference"] = check_kernel(converter)
    report["emit_from_cuda_720p"] = emit_from_cuda(converter)
    report["copy_bandwidth"] = bandwidth()
    print(json.dumps(report, indent=2))
    ok = all(case["mismatched_bytes"] == 0 for case in report["kernel_vs_cpu_reference"])  # type: ignore[union-attr,index]
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
