"""Glass-to-glass latency: reactor-engine (WebRTC and WebSocket) beside reactor-runtime 3.10, one run.

    .venv/bin/python benchmarks/bench_glass.py            # 512x512 and 1280x720, 10 s each (~2 min)
    .venv/bin/python benchmarks/bench_glass.py --quick    # 3 s each
    .venv/bin/python benchmarks/bench_glass.py --paths engine-ws --sizes 1280x720 --seconds 5

The same stamped model (``glass.stamp.StampedSource``: each frame's index painted as big blocks that
survive lossy coding, its emission time logged on CLOCK_MONOTONIC) is served, one server process at a
time, by each path; one client process (reactor-sdk 1.13 in local mode for WebRTC, reactor-engine's
WebSocket client otherwise) decodes the index of every frame it receives and stamps its arrival on
the same clock. Server and client run inside a network namespace made for the run (two libwebrtc
peers do not connect over loopback alone), with a STUN binding responder in it; the namespace and
every process in it are removed at the end. The peer path needs .venv-peer
(``scripts/peer_runtime_venv.sh``); a path that cannot run here is reported as not run, with why.

Writes ``benchmarks/results/<host>-<date>-glass[-quick].{json,md,png}``. Nothing asserts a timing:
the exit status is non-zero only when a run that could start failed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # figures, report, glass
sys.path.insert(0, str(REPO / "tests"))  # netns, stun: the WebRTC tests' namespace helpers

from glass import results  # noqa: E402
from glass.servers import (  # noqa: E402
    CLIENT_MODE,
    PATHS,
    PEER_PYTHON,
    Server,
    ServerSpec,
    engine_webrtc_available,
    peer_available,
)
from glass.stamp import read_stamps  # noqa: E402

STUN_PORT = 3478
SERVER_PORT = 8090


class _Loopback:
    """Stand-in for a namespace where none can be made: WebSocket runs only, on 127.0.0.1."""

    name = "none (loopback)"
    server_ip = "127.0.0.1"

    def command(self, argv: list[str]) -> list[str]:
        return list(argv)


@contextlib.contextmanager
def _place() -> Iterator[tuple[Any, str]]:
    """A namespace with a STUN responder in it, or the loopback stand-in and why none."""
    from netns import NetNs, NetNsUnavailable

    ns = NetNs()
    try:
        ns.create()
    except NetNsUnavailable as exc:
        yield _Loopback(), str(exc)
        return
    stun = None
    try:
        stun = subprocess.Popen(
            ns.command([sys.executable, "-u", str(REPO / "tests" / "stun.py"), ns.server_ip, str(STUN_PORT)]),
            stdout=subprocess.PIPE,
            text=True,
        )
        if stun.stdout is None or stun.stdout.readline().strip() != "ready":
            raise RuntimeError("the STUN responder did not start")
        yield ns, ""
    finally:
        if stun is not None and stun.poll() is None:
            stun.terminate()
            stun.wait(timeout=10)
        ns.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for name in ("reactor-sdk", "reactor-webrtc", "websockets", "simplejpeg"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    if PEER_PYTHON.exists():
        probe = subprocess.run(
            [
                str(PEER_PYTHON),
                "-c",
                "import importlib.metadata as m, sys; print(m.version('reactor-runtime'), "
                "m.version('reactor-webrtc'), sys.version.split()[0])",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if probe.returncode == 0:
            runtime, webrtc, python = probe.stdout.split()
            versions["peer"] = f"reactor-runtime {runtime} + reactor-webrtc {webrtc} on Python {python}"
    return versions


def run_one(
    place: Any, path: str, width: int, height: int, args: argparse.Namespace, work: Path, repeat: int = 0
) -> dict[str, Any]:
    """One server process, one client process; the figures of the run."""
    tag = f"{path}-{width}x{height}-{repeat + 1}"
    stamps = work / f"{tag}.stamps"
    port = SERVER_PORT if not isinstance(place, _Loopback) else _free_port()
    spec = ServerSpec(
        path,
        width,
        height,
        args.fps,
        place.server_ip,
        port,
        f"{place.server_ip}:{STUN_PORT}",
        stamps,
        work / tag,
        extra_args=tuple(shlex.split(args.engine_args)) if path.startswith("engine") else (),
    )
    out = work / f"{tag}.json"
    server = Server(place, spec)
    try:
        client = subprocess.run(
            place.command(
                [
                    sys.executable,
                    "-u",
                    "-m",
                    "glass.client",
                    CLIENT_MODE[path],
                    spec.url,
                    "--server-pid",
                    str(server.pid),
                    "--seconds",
                    str(args.seconds),
                    "--warmup",
                    str(args.warmup),
                    "--out",
                    str(out),
                ]
            ),
            cwd=HERE,
            capture_output=True,
            text=True,
            check=False,
            timeout=args.seconds + args.warmup + 180,
        )
    finally:
        server_status = server.stop()
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if not out.exists():
        result["error"] = f"the client wrote no result (status {client.returncode}): {client.stderr[-500:]}"
    figures = results.analyse(result, read_stamps(stamps))
    figures["server_exit_status"] = server_status
    if figures.get("error"):
        figures["server_log_tail"] = server.log_tail()
        figures["client_stderr_tail"] = client.stderr[-1500:]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s per run, 1 s warm-up")
    parser.add_argument("--seconds", type=float, help="measured seconds per run (default 10; quick 3)")
    parser.add_argument(
        "--warmup", type=float, help="seconds after the first frame before measuring (2; quick 1)"
    )
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per path and size, interleaved; samples pooled (1)"
    )
    parser.add_argument("--sizes", default="512x512,1280x720", help="comma-separated WxH")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument(
        "--engine-args",
        default="",
        help="extra reactor-engine run arguments for the engine paths, e.g. '--engine.keyframe_interval=0'",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the results")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, raw results)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",") if s]
    paths = [p for p in args.paths.split(",") if p]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {', '.join(PATHS)}")

    unavailable = {"peer-webrtc": peer_available, "engine-webrtc": engine_webrtc_available}
    why_not = {p: unavailable[p]() if p in unavailable else "" for p in paths}
    started = time.monotonic()
    info = results.machine()  # the load average at the start
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    failed = False
    work = Path(tempfile.mkdtemp(prefix="glass-"))
    with _place() as (place, no_ns):
        for p in paths:
            if no_ns and p != "engine-ws" and not why_not[p]:
                why_not[p] = f"no network namespace: {no_ns}"
        for width, height in sizes:
            size = f"{width}x{height}"
            runs[size] = {}
            repeats: dict[str, list[dict[str, Any]]] = {p: [] for p in paths if not why_not[p]}
            for p in paths:
                if why_not[p]:
                    runs[size][p] = {"skipped": why_not[p]}
                    print(f"glass: {size} {p}: not run: {why_not[p]}", flush=True)
            for repeat, p in itertools.product(range(args.repeat), list(repeats)):
                label = f"{size} {p}" + (f" #{repeat + 1}" if args.repeat > 1 else "")
                print(f"glass: {label}: {args.seconds:g} s ...", flush=True)
                figures = run_one(place, p, width, height, args, work, repeat)
                repeats[p].append(figures)
                if figures.get("error"):
                    failed = True
                    last = (figures.get("server_log_tail") or "").strip().splitlines()[-1:]
                    print(f"glass: {label}: failed: {figures['error']}; server log: {last}", flush=True)
                else:
                    lat = figures["latency_ms"]
                    nan = float("nan")
                    print(
                        f"glass: {label}: p50 {lat.get('p50', nan):.1f} ms,"
                        f" p99 {lat.get('p99', nan):.1f} ms,"
                        f" {figures['decoded']}/{figures['emitted']} decoded,"
                        f" server CPU {figures['server_cpu_pct']:.0f}%",
                        flush=True,
                    )
                time.sleep(1.0)  # let the last server's exit settle before the next one starts
            for p, repeated in repeats.items():
                runs[size][p] = results.merge(repeated)
    settings = {
        "fps": args.fps,
        "repeat": args.repeat,
        "engine_args": args.engine_args,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "namespace": getattr(place, "name", "?"),
        "duration_s": time.monotonic() - started,
    }
    written = results.write(
        args.out, runs, paths, quick=args.quick, settings=settings, versions=_versions(), info=info
    )
    print(written["md"].read_text())
    print(f"run took {settings['duration_s']:.0f} s; wrote " + ", ".join(str(p) for p in written.values()))
    if args.keep or failed:
        print(f"work folder (server logs, raw client results): {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
