"""Drive the published reactor-sdk 1.13 (unmodified) against a server; print one JSON line of results.

Run inside the test's network namespace: ``python tests/webrtc_sdk_client.py SCENARIO URL [SECONDS]``.
Scenarios:

- ``stream``: connect (READY time), receive video for SECONDS (frames decoded, the frame indices read
  from the pictures, latency from the frame-metadata trailer), a valid and an invalid command,
  ``get_stats``, ``reconnect`` (frames again after it), ``disconnect``.
- ``join SESSION_ID``: adopt a running session, report when its first frame arrived after READY,
  stay SECONDS, leave without stopping the session.
- ``watch``: connect and receive for SECONDS, then disconnect (the session ends).

The server is told nothing about the client; everything measured here is what the SDK reports.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import reactor_webrtc
from reactor_sdk import Reactor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webrtc_model import read_index


class Receiver:
    """Counts a track's frames; keeps the indices painted in them and the trailer's emit times."""

    def __init__(self) -> None:
        self.frames = 0
        self.first_at: float | None = None
        self.indices: list[int] = []
        self.latencies_ms: list[float] = []
        self.transit_ms: list[float] = []  # from the push into the server's track (its capture time)
        self.sizes: set[tuple[int, int]] = set()

    def __call__(self, frame: np.ndarray, frame_id: int, timestamp_us: int, user_data: bytes) -> None:
        now_ns = time.monotonic_ns()
        self.frames += 1
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.sizes.add((frame.shape[1], frame.shape[0]))
        self.indices.append(read_index(frame))
        if timestamp_us:
            self.transit_ms.append(now_ns / 1e6 - timestamp_us / 1e3)
        if user_data and len(user_data) >= 16:
            _index, emitted_ns = struct.unpack_from("<qq", user_data)
            self.latencies_ms.append((now_ns - emitted_ns) / 1e6)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


async def wait_frames(receiver: Receiver, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while receiver.frames < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return receiver.frames >= count


async def server_stats(url: str, sid: str, path: str = "stats") -> dict[str, Any]:
    """The session's stats (``stats``) or its WebRTC transport's (``transport/webrtc/stats``)."""
    import urllib.request

    def fetch() -> dict[str, Any]:
        with urllib.request.urlopen(f"{url}/sessions/{sid}/{path}", timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    return await asyncio.to_thread(fetch)


async def stream(url: str, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    reactor = Reactor("webrtc-test", local=True, api_url=url)
    receiver = Receiver()
    reactor.track("main_video").on_frame(receiver)
    ready_at: list[float] = []
    reactor.on_status("ready")(lambda _status: ready_at.append(time.monotonic()))
    started = time.monotonic()
    await reactor.connect()
    out["ready_s"] = round((ready_at[0] if ready_at else time.monotonic()) - started, 3)
    out["first_frame"] = await wait_frames(receiver, 1, 10.0)
    out["first_frame_s"] = None if receiver.first_at is None else round(receiver.first_at - started, 3)
    sid = reactor.session_id
    out["session_id"] = sid
    assert sid is not None
    # The measured window: frames emitted by the server against frames decoded here.
    before, frames_before = await server_stats(url, sid), receiver.frames
    await asyncio.sleep(seconds)
    after, frames_after = await server_stats(url, sid), receiver.frames
    out["emitted"] = after["frames"] - before["frames"]
    out["decoded"] = frames_after - frames_before
    out["server_stats"] = after
    out["webrtc_stats"] = await server_stats(url, sid, "transport/webrtc/stats")
    out["sizes"] = sorted(receiver.sizes)
    seen = receiver.indices
    out["indices_increasing"] = all(b >= a or a - b > 30000 for a, b in itertools.pairwise(seen))
    out["latency_ms"] = {
        "p50": percentile(receiver.latencies_ms, 50),
        "p99": percentile(receiver.latencies_ms, 99),
        "n": len(receiver.latencies_ms),
        "push_to_frame_p50": percentile(receiver.transit_ms, 50),
        "push_to_frame_p99": percentile(receiver.transit_ms, 99),
    }
    # Commands: the model's reply, then a validation error.
    out["echo"] = await reactor.send_command("echo", {"text": "hi"})
    out["set_level"] = await reactor.send_command("set_level", {"level": 3})
    try:
        await reactor.send_command("set_level", {"level": 99})
        out["bad_command"] = None
    except Exception as exc:
        out["bad_command"] = f"{type(exc).__name__}: {exc}"
    try:
        await reactor.send_command("no_such_command", {})
        out["unknown_command"] = None
    except Exception as exc:
        out["unknown_command"] = f"{type(exc).__name__}: {exc}"
    stats = await reactor.get_stats()
    out["client_stats"] = {
        "frames_per_second": stats.frames_per_second,
        "packets_received": stats.packets_received,
        "packets_lost": stats.packets_lost,
        "candidate_type": stats.candidate_type,
        "frames_decoded": stats.inbound[0].frames_decoded if stats.inbound else None,
    }
    # Reconnect on the same session: frames again.
    frames = receiver.frames
    started = time.monotonic()
    await reactor.reconnect()
    out["reconnect_ready_s"] = round(time.monotonic() - started, 3)
    out["frames_after_reconnect"] = await wait_frames(receiver, frames + 10, 10.0)
    out["reconnect_session_id"] = reactor.session_id
    await reactor.disconnect()
    out["status_after_disconnect"] = str(reactor.status.value)
    reactor.close()
    out["latency_all_ms"] = {
        "p50": percentile(receiver.latencies_ms, 50),
        "p99": percentile(receiver.latencies_ms, 99),
    }
    return out


async def join(url: str, sid: str, seconds: float) -> dict[str, Any]:
    reactor = Reactor("webrtc-test", local=True, api_url=url)
    receiver = Receiver()
    reactor.track("main_video").on_frame(receiver)
    ready_at: list[float] = []
    reactor.on_status("ready")(lambda _status: ready_at.append(time.monotonic()))
    started = time.monotonic()
    await reactor.connect(session_id=sid)
    ready = ready_at[0] if ready_at else time.monotonic()
    got = await wait_frames(receiver, 1, 10.0)
    out: dict[str, Any] = {
        "ready_s": round(ready - started, 3),
        "first_frame": got,
        "first_frame_after_ready_s": None
        if receiver.first_at is None
        else round(receiver.first_at - ready, 3),
        "session_id": reactor.session_id,
    }
    await asyncio.sleep(seconds)
    out["frames"] = receiver.frames
    reactor.close()  # leave without POST /stop_session: the session is not ours
    return out


async def watch(url: str, seconds: float) -> dict[str, Any]:
    reactor = Reactor("webrtc-test", local=True, api_url=url)
    receiver = Receiver()
    reactor.track("main_video").on_frame(receiver)
    started = time.monotonic()
    await reactor.connect()
    out: dict[str, Any] = {"ready_s": round(time.monotonic() - started, 3), "session_id": reactor.session_id}
    await asyncio.sleep(seconds)
    out["frames"] = receiver.frames
    out["latency_ms"] = {
        "p50": percentile(receiver.latencies_ms, 50),
        "p99": percentile(receiver.latencies_ms, 99),
        "max": round(max(receiver.latencies_ms), 1) if receiver.latencies_ms else None,
    }
    await reactor.disconnect()
    reactor.close()
    return out


def main(argv: list[str]) -> int:
    scenario, url = argv[0], argv[1].rstrip("/")
    if scenario == "join":
        result = asyncio.run(join(url, argv[2], float(argv[3]) if len(argv) > 3 else 1.0))
    elif scenario == "stream":
        result = asyncio.run(stream(url, float(argv[2]) if len(argv) > 2 else 10.0))
    elif scenario == "watch":
        result = asyncio.run(watch(url, float(argv[2]) if len(argv) > 2 else 3.0))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    result["clock"] = reactor_webrtc.time_micros()
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
