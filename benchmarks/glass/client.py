"""The measuring client: one process, in the namespace beside the server, on the same monotonic clock.

    python -m glass.client sdk URL --server-pid PID --seconds 10 --warmup 2 --out result.json
    python -m glass.client ws  URL --server-pid PID --seconds 10 --warmup 2 --out result.json

``sdk``: reactor-sdk 1.13 in local mode (``Reactor(name, local=True, api_url=URL)``), frames from the
video track's ``on_raw_frame`` (BGRA, already decoded by libwebrtc); ``ws``: reactor-engine's
JPEG-over-WebSocket protocol (``reactor_engine.client``), each JPEG decoded to RGB with simplejpeg.
Either way a frame's receive time is ``time.monotonic_ns()`` when its decoded pixels are in this
process's hands (the SDK's callback entry, or the end of the JPEG decode), and its index is read
with ``glass.stamp.decode_index`` after that stamp. The server process's CPU time (utime + stime of
it and its descendants, ``/proc``) is read at both ends of the measurement window, which starts
``warmup`` seconds after the first frame. The result (every frame's receive time and index, the
window, the CPU times, connect timings, the SDK's stats) is written as JSON for the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from glass.stamp import decode_index

_TICKS = os.sysconf("SC_CLK_TCK")
_GRACE_S = 1.0  # frames emitted at the end of the window may still be on their way


def process_tree_cpu_s(pid: int) -> float:
    """utime + stime (seconds) of ``pid`` and all of its live descendants; 0.0 if it is gone."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total


def wait_http(url: str, timeout: float, server_pid: int) -> float:
    """Poll ``GET url/health`` until it answers 200; the seconds it took."""
    started = time.monotonic()
    while True:
        if not Path(f"/proc/{server_pid}").exists():
            raise RuntimeError("the server process exited before it served (see its log)")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2) as response:
                if response.status == 200:
                    body = response.read()
                    if b'"loading"' not in body:
                        return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{url} did not become healthy within {timeout} s")
        time.sleep(0.1)


class Recorder:
    """Frames as (t_recv_ns, index or -1, width, height, t_server_ns), appended from the delivery thread.

    ``t_server_ns`` is the server's own stamp of the frame on the same clock, 0 when none: the
    frame-metadata trailer's capture time over WebRTC (reactor-webrtc stamps the push, in µs of
    CLOCK_MONOTONIC), the header's send time over WebSocket.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int, int]] = []
        self.first = threading.Event()
        self.t_first_ns = 0

    def add(self, t_ns: int, pixels: np.ndarray, t_server_ns: int = 0) -> None:
        index = decode_index(pixels)
        self.rows.append(
            (t_ns, -1 if index is None else index, pixels.shape[1], pixels.shape[0], t_server_ns)
        )
        if not self.first.is_set():
            self.t_first_ns = t_ns
            self.first.set()


class Window:
    """The measurement window: monotonic ns at both ends, with the server's and this process's CPU."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.start_ns = self.end_ns = 0
        self.server_cpu_s = self.client_cpu_s = 0.0

    def open(self) -> None:
        self._cpu0 = process_tree_cpu_s(self.server_pid)
        self._own0 = time.process_time()
        self.start_ns = time.monotonic_ns()

    def close(self) -> None:
        self.end_ns = time.monotonic_ns()
        self.server_cpu_s = process_tree_cpu_s(self.server_pid) - self._cpu0
        self.client_cpu_s = time.process_time() - self._own0

    def as_json(self) -> dict[str, Any]:
        return {
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "server_cpu_s": self.server_cpu_s,
            "client_cpu_s": self.client_cpu_s,
        }


async def _measure_sdk(args: argparse.Namespace, recorder: Recorder, window: Window) -> dict[str, Any]:
    from reactor_sdk import Reactor

    info: dict[str, Any] = {}
    reactor = Reactor(args.model, local=True, api_url=args.url)

    def on_raw_frame(
        bgra: bytes, width: int, height: int, _frame_id: int, capture_us: int, _user_data: bytes
    ) -> None:
        t_ns = time.monotonic_ns()
        recorder.add(t_ns, np.frombuffer(bgra, np.uint8).reshape(height, width, 4), int(capture_us) * 1000)

    attached: list[str] = []

    def on_track(track: Any) -> None:
        if getattr(track.kind, "value", track.kind) == "video" and track.name not in attached:
            attached.append(track.name)
            track.on_raw_frame(on_raw_frame)

    reactor.on_track(on_track)
    started = time.monotonic()
    await asyncio.wait_for(reactor.connect(), timeout=30)
    info["ready_s"] = time.monotonic() - started
    if not attached:  # the track was declared before on_track could fire
        on_track(reactor.tracks.with_direction("recvonly").with_kind("video").one())
    try:
        await asyncio.wait_for(asyncio.to_thread(recorder.first.wait, 30), timeout=31)
        if not recorder.first.is_set():
            raise TimeoutError("no frame within 30 s of READY")
        info["first_frame_s"] = (recorder.t_first_ns / 1e9) - started - info["ready_s"]
        await asyncio.sleep(args.warmup)
        window.open()
        await asyncio.sleep(args.seconds)
        window.close()
        await asyncio.sleep(_GRACE_S)
        try:
            stats = await asyncio.wait_for(reactor.get_stats(), timeout=5)
            info["sdk_stats"] = _jsonable(stats)
        except Exception as exc:
            info["sdk_stats_error"] = repr(exc)
    finally:
        try:
            await asyncio.wait_for(reactor.disconnect(), timeout=10)
        except Exception as exc:
            info["disconnect_error"] = repr(exc)
        reactor.close()
    return info


def _jsonable(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return repr(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k), depth + 1) for k in value.__dataclass_fields__}
    if hasattr(value, "__dict__"):
        return {k: _jsonable(v, depth + 1) for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)


def _measure_ws(args: argparse.Namespace, recorder: Recorder, window: Window) -> dict[str, Any]:
    import simplejpeg

    from reactor_engine.client import ReactorClient
    from reactor_engine.errors import ReactorTimeoutError

    info: dict[str, Any] = {}
    client = ReactorClient(args.url)
    started = time.monotonic()
    session_id = client.create_session()
    try:
        with client.connect(session_id) as stream:
            info["ready_s"] = time.monotonic() - started
            phase, deadline = "first", time.monotonic() + 30
            while True:
                try:
                    frame = stream.next_frame(timeout=max(0.05, deadline - time.monotonic()))
                except ReactorTimeoutError:
                    if phase == "first":
                        raise
                    frame = None
                if frame is not None:
                    if frame.codec == "jpeg":
                        pixels = simplejpeg.decode_jpeg(frame.data, colorspace="RGB")
                    else:  # raw RGB24
                        pixels = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
                    recorder.add(time.monotonic_ns(), pixels, frame.header.t_send_ns)
                now = time.monotonic()
                if phase == "first" and recorder.first.is_set():
                    info["first_frame_s"] = recorder.t_first_ns / 1e9 - started - info["ready_s"]
                    phase, deadline = "warmup", now + args.warmup
                elif phase == "warmup" and now >= deadline:
                    window.open()
                    phase, deadline = "window", now + args.seconds
                elif phase == "window" and now >= deadline:
                    window.close()
                    phase, deadline = "grace", now + _GRACE_S
                elif phase == "grace" and now >= deadline:
                    break
    finally:
        try:
            info["session_stats"] = client.delete_session(session_id)
        except Exception as exc:
            info["delete_error"] = repr(exc)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("mode", choices=["sdk", "ws"])
    parser.add_argument("url")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--model", default="glass")
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    recorder, window = Recorder(), Window(args.server_pid)
    result: dict[str, Any] = {"mode": args.mode, "url": args.url}
    try:
        result["server_ready_s"] = wait_http(args.url, args.ready_timeout, args.server_pid)
        measure = _measure_ws if args.mode == "ws" else None
        if measure is not None:
            result.update(measure(args, recorder, window))
        else:
            result.update(asyncio.run(_measure_sdk(args, recorder, window)))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["window"] = window.as_json()
    result["frames"] = list(recorder.rows)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
