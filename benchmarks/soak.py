"""Soak: ``reactor-engine run`` (the demo, 1280x720 at 30 fps) streams to WebSocket clients for a long
time, with a session change every few minutes; passes only with flat resources and no unexplained drops.

    .venv/bin/python benchmarks/soak.py                      # REACTOR_SOAK_SECONDS (default 3600)
    .venv/bin/python benchmarks/soak.py --seconds 180 --session-change 60     # make soak-ci
    .venv/bin/python benchmarks/soak.py --webrtc on          # + a reactor-sdk 1.13 WebRTC client

Every ``--sample`` seconds it records the server's RSS, open descriptors and threads (``/proc/PID``)
and CPU, the clients' frames, gaps and receive latency (the frame header's ``t_commit`` to arrival,
on the shared CLOCK_MONOTONIC), and the session's own figures (``/sessions/{id}/stats``: ring drops,
commit->packet latency, frames the hub dropped for a slow client). The verdict:

- **flat resources**: after the warm-up (the first session), the least-squares line through the
  RSS samples rises by at most ``--rss-growth`` MiB (32) over the measured window; its slope is
  reported in MiB/h. glibc's heap moves by +-20 MiB with 720p frames (measured: Python's own
  allocations stay flat meanwhile), so a shorter bound would fail on noise; a leak of a few MiB
  per session fails it within the hour. Open descriptors and threads, counted idle between
  sessions (every client gone), stay within 2 of their count after the first session;
- **no unexplained drops**: ring drops (drop_oldest/drop_newest) at most ``--max-ring-drops`` of
  the frames (the encoder keeps up at 30 fps: ~0), and every gap a client saw in the frame indices
  is counted by the server (ring drops or the hub's per-client buffer);
- **every session served**: each client got frames in each session and the ``ended`` event with
  close 1000 at its change; no ERROR or Traceback in the server's log; SIGTERM ends it with code 0.

Writes ``benchmarks/results/soak-<date>-<seconds>s.{json,png,md}`` and prints one verdict line; the
exit status is 1 when the verdict is FAIL. With ``--webrtc auto`` (the default) a WebRTC client joins
each session where it can run (root for a network namespace, reactor-sdk, the WebRTC transport);
otherwise the soak runs without it and says why in the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # soak/ (the report and the WebRTC client)

from soak.report import write_results  # noqa: E402
from soak.webrtc import WebRtcClient, webrtc_unavailable  # noqa: E402

from reactor_engine.runtimes.protocol import FrameHeader  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# -- the server --------------------------------------------------------------------------------------------


class Server:
    """``reactor-engine run`` with the soak's settings; its log kept, ERROR lines counted."""

    def __init__(self, args: argparse.Namespace) -> None:
        command = Path(sys.executable).with_name("reactor-engine")
        argv = [
            str(command), "run", f"--model.width={args.width}", f"--model.height={args.height}",
            f"--engine.fps={args.fps}", "--port", str(args.port), *args.server_arg,
        ]  # fmt: skip
        self.argv = argv
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self.process.pid
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.url = ""
        self._found = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._found.wait(120):
            self.process.kill()
            raise SystemExit("soak: reactor-engine run did not start:\n" + "".join(self.lines[-40:]))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if len(self.lines) < 20_000:
                self.lines.append(line)
            if " ERROR " in line or "Traceback" in line or " CRITICAL " in line:
                self.errors.append(line.rstrip())
            match = re.search(r"open (http://\S+)", line)
            if match and not self.url:
                self.url = match.group(1).rstrip("/")
                self._found.set()

    def resources(self) -> dict[str, float]:
        with open(f"/proc/{self.pid}/statm") as statm:
            rss = int(statm.read().split()[1]) * PAGE
        with open(f"/proc/{self.pid}/status") as status:
            threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        return {
            "rss": rss,
            "fds": len(os.listdir(f"/proc/{self.pid}/fd")),
            "threads": threads,
            "cpu_s": cpu_s,
        }

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None


def http(url: str, method: str = "GET", timeout: float = 15.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")


# -- the WebSocket clients ---------------------------------------------------------------------------------


class WsClient:
    """One WebSocket viewer: reconnects to each session, counts frames and index gaps, keeps latencies."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames = 0
        self.gaps = 0
        self.latency_ms: list[float] = []  # since the last sample: t_commit -> received
        self.all_latency_ms: list[float] = []
        self.sessions: list[dict[str, Any]] = []

    async def watch(self, base: str, sid: str) -> dict[str, Any]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        record: dict[str, Any] = {"frames": 0, "gaps": 0, "ended": None, "close": None, "error": None}
        last = None
        url = base.replace("http://", "ws://") + f"/sessions/{sid}/ws"
        try:
            async with connect(url, max_size=64 << 20, open_timeout=15, ping_interval=None) as ws:
                async for message in ws:
                    now = time.monotonic_ns()
                    if isinstance(message, str):
                        event = json.loads(message)
                        if event.get("type") == "event" and event.get("event") == "ended":
                            record["ended"] = event.get("reason")
                        continue
                    header = FrameHeader.unpack(message)
                    if last is not None and header.frame_index > last + 1:
                        record["gaps"] += header.frame_index - last - 1
                    last = header.frame_index
                    record["frames"] += 1
                    latency = (now - header.t_commit_ns) / 1e6
                    self.latency_ms.append(latency)
                    self.all_latency_ms.append(latency)
                    self.frames += 1
            record["close"] = ws.close_code
        except ConnectionClosed as exc:
            record["close"] = exc.rcvd.code if exc.rcvd else None
        except (OSError, TimeoutError, ValueError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        self.gaps += record["gaps"]
        self.sessions.append({"session_id": sid, **record})
        return record


# -- the soak ------------------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(max(values))}


async def start_session(base: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        status, body = await asyncio.to_thread(http, base + "/sessions", "POST")
        if status == 201:
            return str(body["session_id"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"POST /sessions kept failing: {status} {body}")
        await asyncio.sleep(0.2)


class Soak:
    def __init__(self, args: argparse.Namespace, server: Server, webrtc: WebRtcClient | None) -> None:
        self.args = args
        self.server = server
        self.webrtc = webrtc
        self.clients = [WsClient(f"ws{i + 1}") for i in range(args.ws_clients)]
        self.samples: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.sid: str | None = None
        self.t0 = time.monotonic()

    async def sample_forever(self) -> None:
        previous = None
        while True:
            await self.sample(previous)
            previous = self.samples[-1]
            await asyncio.sleep(self.args.sample)

    async def sample(self, previous: dict[str, Any] | None) -> None:
        now = time.monotonic()
        res = self.server.resources()
        sample: dict[str, Any] = {"t": now - self.t0, **res, "loadavg": os.getloadavg()[0]}
        if previous is not None:
            dt = sample["t"] - previous["t"]
            sample["cpu_pct"] = 100.0 * (res["cpu_s"] - previous["cpu_s"]) / dt if dt > 0 else 0.0
        latencies: list[float] = []
        for client in self.clients:
            latencies += client.latency_ms
            client.latency_ms = []
        sample["frames"] = {c.name: c.frames for c in self.clients}
        sample["gaps"] = sum(c.gaps for c in self.clients)
        sample["client_latency_ms"] = percentiles(latencies)
        sid = self.sid
        if sid is not None:
            status, stats = await asyncio.to_thread(http, f"{self.server.url}/sessions/{sid}/stats")
            if status == 200:
                track = stats["tracks"]["main_video"]
                counters, c2p = track["counters"], track["commit_to_packet"]
                sample["session"] = {
                    "id": sid,
                    "frames": stats["frames"],
                    "ring_drops": counters["frames_dropped_oldest"] + counters["frames_dropped_newest"],
                    "client_frames_dropped": stats["runtime"]["client_frames_dropped"],
                    "commit_to_packet_ms": {"p50": c2p["p50_ms"], "p99": c2p["p99_ms"]},
                }
        self.samples.append(sample)

    async def one_session(self, seconds: float) -> None:
        base = self.server.url
        asked = time.monotonic()
        sid = await start_session(base)
        self.sid = sid
        started = time.monotonic()
        watchers = [asyncio.create_task(client.watch(base, sid)) for client in self.clients]
        peer = self.webrtc.join(base, sid, seconds + 5) if self.webrtc is not None else None
        await asyncio.sleep(seconds)
        status, _ = await asyncio.to_thread(http, f"{base}/sessions/{sid}", "DELETE")
        done, pending = await asyncio.wait(watchers, timeout=20)
        for task in pending:
            task.cancel()
        _, stats = await asyncio.to_thread(http, f"{base}/sessions/{sid}/stats")
        self.sid = None
        webrtc = await asyncio.to_thread(peer.result) if peer is not None else None
        await asyncio.sleep(1.0)  # the server closes its side of the connections
        idle = self.server.resources()  # between sessions, no client: comparable from one to the next
        track = stats.get("tracks", {}).get("main_video", {})
        counters = track.get("counters", {})
        self.sessions.append({
            "session_id": sid,
            "start_s": started - self.t0,
            "create_ms": (started - asked) * 1e3,
            "duration_s": stats.get("duration_s"),
            "delete_status": status,
            "end_reason": stats.get("end_reason"),
            "frames": stats.get("frames"),
            "frames_sent": stats.get("runtime", {}).get("frames_sent_by_codec", {}),
            "ring_drops": counters.get("frames_dropped_oldest", 0) + counters.get("frames_dropped_newest", 0),
            "frames_discarded": counters.get("frames_discarded", 0),
            "encode_errors": counters.get("encode_errors", 0),
            "late_frames": track.get("late_frames"),
            "client_frames_dropped": stats.get("runtime", {}).get("client_frames_dropped", 0),
            "commit_to_packet_ms": track.get("commit_to_packet"),
            "encode_ms": track.get("encode"),
            "clients": [task.result() if task in done else {"error": "no end"} for task in watchers],
            "webrtc": webrtc,
            "idle_after": idle,
        })  # fmt: skip

    async def run(self) -> None:
        sampler = asyncio.create_task(self.sample_forever())
        end = self.t0 + self.args.seconds
        try:
            while (left := end - time.monotonic()) > 5:
                await self.one_session(min(self.args.session_change, left))
        finally:
            sampler.cancel()
        await self.sample(self.samples[-1] if self.samples else None)


# -- the verdict ---------------------------------------------------------------------------------------------


def slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), 1)[0])


def verdict(soak: Soak, args: argparse.Namespace, exit_code: int | None) -> dict[str, Any]:
    # The warm-up: the first session (its allocator pools, the JPEG output switched on) when two
    # or more follow it, else --warmup s or a tenth of the run.
    starts = [s["start_s"] for s in soak.sessions]
    warm = starts[1] if len(starts) >= 3 else max(args.warmup, 0.1 * args.seconds)
    measured = [s for s in soak.samples if s["t"] >= warm] or soak.samples
    ts = [s["t"] for s in measured]
    window_h = (ts[-1] - ts[0]) / 3600 if len(ts) > 1 else 0.0
    rss_slope = slope(ts, [s["rss"] / 2**20 for s in measured]) * 3600  # MiB/h
    rss_growth = rss_slope * window_h  # MiB over the measured window, by the fit
    rss_limit = args.rss_growth
    # Descriptors and threads: idle (between sessions, every client gone) after each session, against
    # the idle count after the first one (its lazily made executor threads are the warm-up).
    idle = [s["idle_after"] for s in soak.sessions]
    fd_drift = max((i["fds"] - idle[0]["fds"] for i in idle[1:]), key=abs, default=0)
    thread_drift = max((i["threads"] - idle[0]["threads"] for i in idle[1:]), key=abs, default=0)
    idle_threads = [i["threads"] for i in idle]
    frames = sum(s["frames"] or 0 for s in soak.sessions)
    ring = sum(s["ring_drops"] for s in soak.sessions)
    n = len(soak.clients)
    gaps = sum(c["gaps"] for s in soak.sessions for c in s["clients"] if "gaps" in c)
    explained = sum(s["ring_drops"] * n + s["client_frames_dropped"] for s in soak.sessions)
    served = all(
        c.get("frames", 0) > 0 and c.get("close") == 1000 and c.get("ended") == "stopped"
        for s in soak.sessions for c in s["clients"]
    )  # fmt: skip
    checks = {
        "rss_flat": {"ok": rss_growth <= rss_limit, "value": rss_growth, "limit": rss_limit, "unit": "MiB",
                     "slope_mib_per_h": rss_slope, "window_s": window_h * 3600},
        "fds_flat": {"ok": abs(fd_drift) <= 2, "value": fd_drift, "idle": [i["fds"] for i in idle]},
        "threads_flat": {"ok": abs(thread_drift) <= 2, "value": thread_drift, "idle": idle_threads},
        "ring_drops": {"ok": ring <= max(1, args.max_ring_drops * frames), "value": ring, "frames": frames},
        "drops_explained": {"ok": gaps <= explained, "gaps": gaps, "explained": explained},
        "sessions_served": {"ok": served and len(soak.sessions) > 0, "sessions": len(soak.sessions)},
        "log_clean": {"ok": not soak.server.errors, "errors": soak.server.errors[:20]},
        "clean_exit": {"ok": exit_code == 0, "exit_code": exit_code},
    }  # fmt: skip
    if soak.webrtc is not None:
        peers = [s["webrtc"] or {} for s in soak.sessions]
        checks["webrtc_served"] = {
            "ok": all(p.get("frames", 0) > 0 for p in peers),
            "frames": [p.get("frames") for p in peers],
        }
    return {"pass": all(c["ok"] for c in checks.values()), "warmup_s": warm, "checks": checks}


def summary_line(result: dict[str, Any]) -> str:
    v, c = result["verdict"], result["verdict"]["checks"]
    lat = result["client_latency_ms"]
    failed = [name for name, check in c.items() if not check["ok"]]
    p50 = "-" if lat["p50"] is None else f"{lat['p50']:.1f}"
    p99 = "-" if lat["p99"] is None else f"{lat['p99']:.1f}"
    rss, drops = c["rss_flat"], c["drops_explained"]
    return (
        f"soak {'PASS' if v['pass'] else 'FAIL'}: {result['seconds']:.0f} s, "
        f"{c['sessions_served']['sessions']} sessions, {result['clients']} clients, "
        f"{c['ring_drops']['frames']} frames; RSS {rss['value']:+.1f} MiB over {rss['window_s']:.0f} s "
        f"({rss['slope_mib_per_h']:+.1f} MiB/h), idle fds {c['fds_flat']['value']:+d}, threads "
        f"{c['threads_flat']['value']:+d}; ring drops {c['ring_drops']['value']}, client gaps "
        f"{drops['gaps']} (explained {drops['explained']}); client latency p50 {p50} ms p99 {p99} ms"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("REACTOR_SOAK_SECONDS", "3600"))
    )
    parser.add_argument("--session-change", type=float, default=None, help="s (default 300; 60 under 10 min)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="s left out of the slopes (or 10%%)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--ws-clients", type=int, default=2)
    parser.add_argument("--webrtc", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--rss-growth", type=float, default=32.0,
        help="MiB the fitted RSS line may rise over the measured window (after the warm-up)",
    )  # fmt: skip
    parser.add_argument("--max-ring-drops", type=float, default=0.001, help="fraction of frames")
    parser.add_argument("--server-arg", action="append", default=[], help="more `reactor-engine run` args")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.session_change is None:
        args.session_change = 60.0 if args.seconds < 600 else 300.0
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    why_not = webrtc_unavailable() if args.webrtc != "off" else "--webrtc off"
    if args.webrtc == "on" and why_not:
        print(f"soak: --webrtc on, but a WebRTC client cannot run here: {why_not}", file=sys.stderr)
        return 2
    if not why_not and os.environ.get("REACTOR_SOAK_IN_NETNS") != "1":
        from soak.webrtc import rerun_in_namespace

        return rerun_in_namespace(argv)  # the same soak, inside a namespace where libwebrtc peers connect
    server = Server(args)
    soak: Soak | None = None
    exit_code: int | None = None
    try:
        deadline = time.monotonic() + 120
        while http(server.url + "/health")[1].get("state") == "loading" and time.monotonic() < deadline:
            time.sleep(0.2)
        webrtc = None if why_not else WebRtcClient()
        soak = Soak(args, server, webrtc)
        asyncio.run(soak.run())
    finally:
        exit_code = server.stop()
    lat = percentiles([v for c in soak.clients for v in c.all_latency_ms])
    result = {
        "seconds": args.seconds,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "server": {
            "argv": server.argv,
            "pid": server.pid,
            "exit_code": exit_code,
            "log_tail": server.lines[-30:],
        },
        "clients": len(soak.clients) + (1 if soak.webrtc is not None else 0),
        "webrtc": "joined each session" if soak.webrtc is not None else f"not run: {why_not}",
        "client_latency_ms": lat,
        "samples": soak.samples,
        "sessions": soak.sessions,
    }
    result["verdict"] = verdict(soak, args, exit_code)
    line = summary_line(result)
    result["verdict"]["line"] = line
    paths = write_results(args.out, result)
    print(line)
    print(
        "soak: wrote " + ", ".join(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p) for p in paths)
    )
    return 0 if result["verdict"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
