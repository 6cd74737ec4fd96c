"""The input path's cost to the model thread: a Python loop reading ``latest()`` alone, and while 720p30
VP8 input is decoded by the native ``Decoder`` into the ``InputRing`` it reads.

    .venv/bin/python benchmarks/bench_input.py            # 8 solo + 8 loaded windows of 1 s (~20 s)
    .venv/bin/python benchmarks/bench_input.py --quick    # 3 + 3 windows of 0.5 s
    .venv/bin/python benchmarks/bench_input.py --json out.json

- **the loop** (the model thread): ``latest()`` as the contract defines it (``ring.read()``, else
  ``ring.current()``), a little numpy on the view (the mean of a 1/16-subsampled frame), and
  ``release_held()`` (the poll point), counted in iterations per second.
- **the feed**: 720p VP8 packets made up front by the engine's own encoder (``_C.Encoder``, the
  engine defaults of ``configs/default.yaml``), submitted at 30 fps from a Python thread, as a
  transport does; the Decoder's native thread decodes them (libvpx, then I420 -> RGB24 into a slot).

Solo and loaded windows alternate; **kept** = the median over the pairs of loaded rate / the rate of
the solo window just before it (acceptance: at least 0.95), so that a neighbour's load that comes and
goes on a shared machine weighs less; the ratio of the medians is reported beside it. Decode
latency: the Decoder's ``decode`` histogram (decode start -> frame ready) and the ring's
``arrival_to_ready`` (submit -> frame ready), p50/p99 over every loaded window. Nothing asserts a
time: the exit status is non-zero only if the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

WIDTH, HEIGHT = 1280, 720
FPS = 30
FRAME_NS = 1_000_000_000 // FPS
STREAM_FRAMES = 150  # 5 s of video, looped: the first packet is a key frame, so the loop is seamless
TARGET = 0.95


def scene(index: int) -> np.ndarray:
    """Moving gradients, a moving block and a static texture: work for VP8's inter prediction."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    t = 2 * np.pi * index / STREAM_FRAMES
    r = 100 + 60 * np.sin(x / WIDTH * 3.0 + t) + 40 * y / HEIGHT
    g = 90 + 50 * np.cos(y / HEIGHT * 2.5 - t) + 50 * x / WIDTH
    b = 120 + 45 * np.sin((x + y) / (WIDTH + HEIGHT) * 5.0 + t)
    image = np.stack([r, g, b], axis=-1)
    left = int(WIDTH * (0.4 + 0.3 * np.sin(t)))
    image[HEIGHT // 4 : HEIGHT // 2, left : left + WIDTH // 8] = (225, 190, 70)
    texture = np.random.default_rng(7).normal(0.0, 5.0, (HEIGHT, WIDTH, 1)).astype(np.float32)
    return np.clip(image + texture, 0, 255).astype(np.uint8)


def vp8_settings() -> dict[str, int]:
    from reactor_engine.config import load_engine_config

    cfg = load_engine_config()
    return {
        "bitrate": cfg.bitrate,
        "vp8_speed": cfg.vp8_speed,
        "vp8_threads": cfg.vp8_threads,
        "keyframe_interval": cfg.keyframe_interval,
    }


def encode_stream(settings: dict[str, int]) -> list[bytes]:
    from reactor_engine import _C

    ring = _C.FrameRing(4, WIDTH, HEIGHT, "block")
    packets = []
    with _C.Encoder(ring, codec="vp8", **settings) as encoder:
        for i in range(STREAM_FRAMES):
            ring.write(scene(i), pts_ns=i * FRAME_NS, timeout=10.0)
            with encoder.queue.pop(timeout=10.0) as packet:
                assert i > 0 or packet.keyframe
                packets.append(packet.tobytes())
    return packets


class Feed:
    """Submits the looped packets at 30 fps from a Python thread while running."""

    def __init__(self, decoder: Any, packets: list[bytes]) -> None:
        self.decoder, self.packets = decoder, packets
        self.next = 0
        self.submitted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        t0 = time.monotonic_ns()
        tick = 0
        while not self._stop.is_set():
            wait = t0 + tick * FRAME_NS - time.monotonic_ns()
            if wait > 0 and self._stop.wait(wait / 1e9):
                return
            self.decoder.submit(self.packets[self.next % len(self.packets)])
            self.next += 1
            self.submitted += 1
            tick += 1


def loop_rate(ring: Any, seconds: float) -> float:
    """Iterations per second of latest() + a little numpy + the poll point."""
    done = 0
    checksum = 0.0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(200):
            frames = ring.read()
            frame = frames[0] if frames else ring.current()
            checksum += float(frame.array[::16, ::16].mean())
            ring.release_held()
        done += 200
        if time.perf_counter() >= end:
            break
    assert checksum > 0
    return done / (time.perf_counter() - start)


def machine() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import machine_line  # imported late: report pulls in the engine

    return machine_line()


def ms(ns: float) -> float:
    return ns / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter windows")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    windows, window_s = (3, 0.5) if args.quick else (8, 1.0)

    from reactor_engine import _C

    settings = vp8_settings()
    results: dict[str, Any] = {"machine": machine(), "settings": settings, "windows": windows}
    print(f"Input path: latest() loop beside 720p{FPS} VP8 decoding, on {results['machine']}")
    print(
        f"stream: {WIDTH}x{HEIGHT} VP8 by the engine's encoder ({settings['bitrate']} bit/s, cpu-used "
        f"{settings['vp8_speed']}, keyframe_interval {settings['keyframe_interval']}), "
        f"{STREAM_FRAMES} frames looped"
    )
    packets = encode_stream(settings)
    ring = _C.InputRing(4, WIDTH, HEIGHT)
    decoder = _C.Decoder(ring, "vp8")
    feed = Feed(decoder, packets)
    try:
        decoder.submit(packets[0])  # a current frame for the solo windows too
        decoder.wait_idle(timeout=10.0)
        feed.next = 1
        loop_rate(ring, 0.2)  # warm-up
        solo, loaded, decoded_fps = [], [], []
        for _ in range(windows):
            solo.append(loop_rate(ring, window_s))
            feed.start()
            time.sleep(0.1)  # past the first frames
            before, t0 = decoder.stats()["frames_decoded"], time.perf_counter()
            loaded.append(loop_rate(ring, window_s))
            decoded = decoder.stats()["frames_decoded"] - before
            decoded_fps.append(decoded / (time.perf_counter() - t0))
            feed.stop()
            decoder.wait_idle(timeout=10.0)
        dstats, rstats = decoder.stats(), ring.stats()
    finally:
        feed.stop()
        decoder.close()
        ring.close()

    kept = float(np.median(np.asarray(loaded) / np.asarray(solo)))
    decode, arrival = dstats["latency"]["decode"], rstats["latency"]["arrival_to_ready"]
    results.update(
        {
            "kept": kept,
            "kept_of_medians": float(np.median(loaded) / np.median(solo)),
            "target": TARGET,
            "solo_loops_per_s": float(np.median(solo)),
            "loaded_loops_per_s": float(np.median(loaded)),
            "solo_windows": solo,
            "loaded_windows": loaded,
            "decoded_fps": float(np.median(decoded_fps)),
            "decode_ms": {key: ms(decode[key]) for key in ("p50", "p99", "max")},
            "arrival_to_ready_ms": {key: ms(arrival[key]) for key in ("p50", "p99", "max")},
            "frames_decoded": dstats["frames_decoded"],
            "decode_errors": dstats["decode_errors"],
            "packets_dropped": dstats["packets_dropped"],
            "frames_skipped": rstats["frames_skipped"],
            "frames_dropped": rstats["frames_dropped"],
        }
    )
    verdict = "met" if kept >= TARGET else "NOT met"
    print(
        f"latest() loop: solo {results['solo_loops_per_s']:,.0f}/s, "
        f"while decoding {results['loaded_loops_per_s']:,.0f}/s -> kept {kept:.3f} "
        f"(target >= {TARGET}: {verdict}; ratio of the medians {results['kept_of_medians']:.3f})"
    )
    d, a = results["decode_ms"], results["arrival_to_ready_ms"]
    print(
        f"decode (start -> ready): p50 {d['p50']:.2f} ms, p99 {d['p99']:.2f} ms; "
        f"submit -> ready: p50 {a['p50']:.2f} ms, p99 {a['p99']:.2f} ms"
    )
    print(
        f"decoded {results['decoded_fps']:.1f} fps; {dstats['frames_decoded']} frames, "
        f"{dstats['decode_errors']} errors, {dstats['packets_dropped']} packets dropped, "
        f"{rstats['frames_dropped']} ring drops"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
