"""VP8 encode time per frame: the engine's encoder thread beside a bare libvpx loop, same run.

    .venv/bin/python benchmarks/bench_vp8.py            # 512x512 and 1280x720, hot and paced (~1 min)
    .venv/bin/python benchmarks/bench_vp8.py --quick    # fewer frames
    .venv/bin/python benchmarks/bench_vp8.py --json out.json

- **engine**: frames written into a ``FrameRing`` and encoded by ``_C.Encoder(codec="vp8")``, one at
  a time (each packet popped before the next frame); the time is the packet's
  ``t_encode_end_ns - t_encode_start_ns``: RGB24 -> I420, libvpx, the copy into the packet buffer.
- **floor**: ``csrc/bench/vp8_floor.cpp`` (built here by CMake, Release): the same frames, turned into
  I420 up front by the engine's own converter, then ``vpx_codec_encode`` + draining the packet in a
  loop, configured by the same ``vp8_config``/``open_vp8_encoder`` as the engine. Its conversion time
  is reported beside it, so ``floor encode + convert`` is the same work as the engine's figure.

Both take the engine defaults (``configs/default.yaml``: bitrate, vp8_speed, vp8_threads,
keyframe_interval) and 30 fps presentation times. "hot" runs back to back (warm caches, no pacing);
"paced" sleeps to a 30 fps slot before each frame, as a live model does — the headline. Ratio:
engine ÷ floor on p50 (> 1: the engine costs more than bare libvpx). Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "bench"
FLOOR = BUILD / "csrc" / "bench" / "vp8_floor"
FRAME_NS = 33_333_333
SIZES = ((512, 512), (1280, 720))
DISTINCT = 60  # frames per motion period: the sequence loops without a jump


def frames_for(width: int, height: int) -> list[np.ndarray]:
    """A looping natural-looking sequence: gradients, two shapes on circular paths, static texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.random.default_rng(7).normal(0.0, 5.0, (height, width, 1)).astype(np.float32)
    out = []
    for i in range(DISTINCT):
        t = 2 * np.pi * i / DISTINCT
        r = 100 + 60 * np.sin(x / width * 3.0 + t) + 40 * y / height
        g = 90 + 50 * np.cos(y / height * 2.5 - t) + 50 * x / width
        b = 120 + 45 * np.sin((x + y) / (width + height) * 5.0 + t)
        image = np.stack([r, g, b], axis=-1)
        cx, cy = width * (0.4 + 0.2 * np.sin(t)), height * (0.5 + 0.25 * np.cos(t))
        image[(x - cx) ** 2 + (y - cy) ** 2 < (height * 0.12) ** 2] = (225, 190, 70)
        bx, by = int(width * (0.6 + 0.15 * np.cos(t))), int(height * (0.3 + 0.15 * np.sin(t)))
        image[by : by + height // 6, bx : bx + width // 8] = (40, 70, 160)
        out.append(np.clip(image + texture, 0, 255).astype(np.uint8))
    return out


def build_floor() -> Path:
    if not FLOOR.exists():
        options = ["BUILD_PYTHON=OFF", "BUILD_BENCHMARKS=ON", "CUDA=OFF"]
        configure = ["cmake", "-S", str(REPO), "-B", str(BUILD), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release"]
        configure += [f"-DREACTOR_ENGINE_{option}" for option in options]
        subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["cmake", "--build", str(BUILD), "--target", "vp8_floor", "-j", "2"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return FLOOR


def settings() -> dict[str, int]:
    from reactor_engine.config import load_engine_config

    cfg = load_engine_config()
    return {
        "bitrate": cfg.bitrate,
        "vp8_speed": cfg.vp8_speed,
        "vp8_threads": cfg.vp8_threads,
        "keyframe_interval": cfg.keyframe_interval,
    }


def run_engine(frames: list[np.ndarray], count: int, paced: bool, vp8: dict[str, int]) -> dict[str, Any]:
    from reactor_engine import _C

    height, width = frames[0].shape[:2]
    ring = _C.FrameRing(4, width, height, "block")
    encode_ns, sizes = [], []
    with _C.Encoder(ring, codec="vp8", **vp8) as encoder:
        t0 = time.monotonic_ns()
        for i in range(count):
            if paced:
                wait = t0 + i * FRAME_NS - time.monotonic_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
            ring.write(frames[i % len(frames)], pts_ns=i * FRAME_NS, timeout=10.0)
            with encoder.queue.pop(timeout=10.0) as packet:
                encode_ns.append(packet.t_encode_end_ns - packet.t_encode_start_ns)
                sizes.append(packet.size)
        stats = encoder.output_stats("vp8")
    return {"encode_ns": encode_ns, "bytes": sizes, "keyframes": stats["keyframes"]}


def run_floor(
    floor: Path, rgb_file: Path, width: int, height: int, count: int, paced: bool, vp8: dict[str, int]
):
    args = [str(floor), str(rgb_file), str(width), str(height), str(count), str(vp8["bitrate"])]
    args += [str(vp8["vp8_speed"]), str(vp8["vp8_threads"]), str(vp8["keyframe_interval"])]
    args.append(f"{FRAME_NS / 1e6:.6f}" if paced else "0")
    proc = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout)


def summary(ns: list[int], skip: int) -> dict[str, float]:
    """p50/p99/max in ms over the frames after the first ``skip`` (the key frame and warm-up)."""
    data = np.asarray(ns[skip:], dtype=np.float64) / 1e6
    return {
        "p50": float(np.percentile(data, 50)),
        "p99": float(np.percentile(data, 99)),
        "max": float(data.max()),
        "n": int(data.size),
    }


def machine() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import machine_line  # imported late: report pulls in the engine

    return machine_line()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer frames per run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    hot_count, paced_count, skip = (90, 45, 5) if args.quick else (300, 150, 10)
    floor = build_floor()
    vp8 = settings()
    results: dict[str, Any] = {"machine": machine(), "settings": vp8, "runs": {}}
    print(f"VP8 encode per frame on {results['machine']}")
    print(
        f"settings: {vp8['bitrate']} bit/s CBR, cpu-used {vp8['vp8_speed']}, {vp8['vp8_threads']} thread(s), "
        f"key frame every {vp8['keyframe_interval']} frames; 30 fps pts; first {skip} frames left out"
    )
    print(
        f"{'size':>9} {'mode':>5} | {'engine p50':>10} {'p99':>6} | {'floor p50':>9} {'p99':>6} | "
        f"{'convert p50':>11} | {'engine/floor':>12} {'engine/(floor+conv)':>19} | {'kbit/s e/f':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in SIZES:
            frames = frames_for(width, height)
            rgb_file = Path(tmp) / f"{width}x{height}.rgb"
            with rgb_file.open("wb") as out:
                for frame in frames:
                    out.write(frame.tobytes())
            for mode, count in (("hot", hot_count), ("paced", paced_count)):
                paced = mode == "paced"
                ours = run_engine(frames, count, paced, vp8)
                theirs = run_floor(floor, rgb_file, width, height, count, paced, vp8)
                e, f = summary(ours["encode_ns"], skip), summary(theirs["encode_ns"], skip)
                conv = summary(theirs["convert_ns"], 0)
                kbps = [
                    sum(b[skip:]) * 8 / ((count - skip) / 30) / 1000 for b in (ours["bytes"], theirs["bytes"])
                ]
                run = {
                    "engine_ms": e,
                    "floor_ms": f,
                    "floor_convert_ms": conv,
                    "ratio_p50": e["p50"] / f["p50"],
                    "ratio_p50_same_work": e["p50"] / (f["p50"] + conv["p50"]),
                    "kbps": {"engine": kbps[0], "floor": kbps[1]},
                    "keyframes": {"engine": ours["keyframes"], "floor": sum(theirs["keyframe"])},
                    "vpx": theirs["vpx"],
                }
                results["runs"][f"{width}x{height}/{mode}"] = run
                print(
                    f"{width:>4}x{height:<4} {mode:>5} | {e['p50']:>7.2f} ms {e['p99']:>6.2f} | "
                    f"{f['p50']:>6.2f} ms {f['p99']:>6.2f} | {conv['p50']:>8.2f} ms | "
                    f"{run['ratio_p50']:>11.2f}x {run['ratio_p50_same_work']:>18.2f}x | "
                    f"{kbps[0]:>5.0f}/{kbps[1]:<5.0f}"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
