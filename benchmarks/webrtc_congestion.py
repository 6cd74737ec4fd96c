"""WebRTC under a rate-limited link: bitrate, frames and glass-to-glass latency before, during and after.

    python benchmarks/webrtc_congestion.py [--limit 400kbit] [--free 3] [--limited 7] [--recovered 10]
                                           [--stack reactor-webrtc|aiortc|both] [--out results.json]

One network namespace (made here; root and iproute2's ``tc`` with the ``tbf`` qdisc needed) holds
the server and the client, so their packets cross its ``lo``: that is the link limited, to
``--limit`` with ``tc qdisc ... tbf`` for ``--limited`` seconds after ``--free`` seconds, then
freed for ``--recovered`` seconds. Every frame's latency is its receive time at the client minus
the time the model emitted it (both ``CLOCK_MONOTONIC`` of this machine).

Stacks, both sending the native encoder's pre-encoded VP8 (one encode, 640x360 at 30 fps,
``--bitrate`` at most) to a libwebrtc receiver:

- ``reactor-webrtc``: the engine's own server (``tests/webrtc_server.py``: the http app and its
  WebRTC transport) and the published reactor-sdk 1.13 as the client; the emit time comes in the
  frame-metadata trailer. Server stats (the encoder's target, frames pushed and skipped, the
  frames stuck in reactor-webrtc's queue) are sampled twice a second.
- ``aiortc``: aiortc 1.16 sends the same packets (``av.Packet`` frames on a track, which aiortc
  packetizes without encoding; its congestion control is the receiver's REMB, which drives the
  encoder's bitrate here) to a bare reactor-webrtc receiving peer; the emit time of each frame index
  comes from the sender's log, the index from the picture (``tests/webrtc_model.py``).

Subcommands used by the harness itself (run inside the namespace): ``sdk-client URL SECONDS``,
``aiortc-server PORT SECONDS``, ``aiortc-client URL SECONDS``; each prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # netns, webrtc_helpers, webrtc_model: the WebRTC tests' helpers

WIDTH, HEIGHT, FPS = 640, 360, 30
AIORTC_PORT = 8090


# -- measurements (the harness's process) ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[rank], 1)


def latency_summary(frames: list[list[float]], start: float, end: float) -> dict[str, Any]:
    """Frames received in ``[start, end)`` (monotonic seconds): count and latency percentiles (ms)."""
    lat = [f[1] for f in frames if start <= f[0] < end]
    return {
        "frames": len(lat),
        "fps": round(len(lat) / max(1e-9, end - start), 1),
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "max_ms": round(max(lat), 1) if lat else None,
    }


def phases_report(result: dict[str, Any], tail_s: float = 3.0) -> dict[str, Any]:
    """Latency per phase (``free``, ``limited``, ``recovered``) and over the last ``tail_s`` seconds."""
    t = result["times"]
    frames = result["client"]["frames"]
    spans = {
        "free": (t["free"], t["limited"]),
        "limited": (t["limited"], t["recovered"]),
        "recovered": (t["recovered"], t["end"]),
        "recovered_tail": (t["end"] - tail_s, t["end"]),
    }
    return {name: latency_summary(frames, a, b) for name, (a, b) in spans.items()}


def shape(ns: Any, limit: str | None) -> None:
    """Limit the namespace's ``lo`` to ``limit`` (tbf), or lift the limit (``None``)."""
    if limit is None:
        ns.sh("tc qdisc del dev lo root")
    else:
        ns.sh(f"tc qdisc add dev lo root tbf rate {limit} burst 20kb latency 100ms")


def tbf_available(ns: Any) -> str | None:
    """``None`` when ``tc`` and the ``tbf`` qdisc work in ``ns``, else why not."""
    if shutil.which("tc") is None:
        return "tc (iproute2) is not installed"
    try:
        ns.sh("tc qdisc add dev lo root tbf rate 100mbit burst 64kb latency 50ms && tc qdisc del dev lo root")
    except subprocess.CalledProcessError as exc:
        return f"the tbf qdisc is not available here: {exc.stderr.strip()}"
    return None


def _result_of(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"no result (exit {proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}")


def _server_sample(ns: Any, url: str, sid: str) -> dict[str, Any]:
    from webrtc_helpers import http_get

    status, stats = http_get(ns, f"{url}/sessions/{sid}/transport/webrtc/stats")
    if status != 200:
        raise RuntimeError(f"webrtc stats: {status} {stats}")
    peer = next(c for c in stats["connections"] if "peer" in c)
    video = peer["peer"]["video"]
    return {
        "t": round(time.monotonic(), 3),
        "target": stats["media"]["target_bitrate"],
        "peer_bps": video["bitrate_bps"],
        "pushed": video["frames_pushed"],
        "skipped": video["frames_skipped"],
        "backlog": video["backlog_frames"],
        "input_drops": video.get("input_drops"),
        "resyncs": video.get("resyncs"),
        "keyframes_requested": stats["media"]["keyframes_requested"],
    }


def run_reactor_webrtc(
    ns: Any, *, limit: str, free: float, limited: float, recovered: float, bitrate: int
) -> dict[str, Any]:
    """The scenario against the engine's server and reactor-sdk 1.13; server samples twice a second."""
    from webrtc_helpers import http_get, server

    total = free + limited + recovered + 4.0
    engine = {"bitrate": bitrate}
    with server(ns, model_config={"width": WIDTH, "height": HEIGHT}, engine=engine) as srv:
        client = ns.python(
            [str(Path(__file__)), "sdk-client", srv.url, str(total)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sid, deadline = "", time.monotonic() + 20
        while not sid and time.monotonic() < deadline:
            status, body = http_get(ns, f"{srv.url}/session")
            sid = body["session_id"] if status == 200 else ""
            time.sleep(0.1)
        if not sid:
            raise RuntimeError(f"no session:\n{srv.log()}")
        while _server_sample(ns, srv.url, sid)["pushed"] < FPS and time.monotonic() < deadline:
            time.sleep(0.1)
        samples: list[dict[str, Any]] = []
        times: dict[str, float] = {}

        def phase(name: str, seconds: float) -> None:
            times[name] = time.monotonic()
            until = times[name] + seconds
            while time.monotonic() < until:
                time.sleep(max(0.0, min(0.5, until - time.monotonic())))
                samples.append({"phase": name, **_server_sample(ns, srv.url, sid)})

        phase("free", free)
        shape(ns, limit)
        try:
            phase("limited", limited)
        finally:
            shape(ns, None)
        phase("recovered", recovered)
        times["end"] = time.monotonic()
        result = _result_of(client, timeout=total + 60)
        log = srv.log_path.read_text(errors="replace")
    return {
        "stack": "reactor-webrtc",
        "times": times,
        "samples": samples,
        "client": result,
        "server_log": log,
    }


# -- the reactor-sdk client (inside the namespace) ---------------------------------------------------------


async def sdk_client(url: str, seconds: float) -> dict[str, Any]:
    """reactor-sdk 1.13, unmodified: every frame's receive time and latency (the trailer's emit time)."""
    from reactor_sdk import Reactor

    frames: list[list[float]] = []

    def on_frame(_frame: Any, _frame_id: int, _timestamp_us: int, user_data: bytes) -> None:
        now = time.monotonic_ns()
        if user_data and len(user_data) >= 16:
            _index, emitted_ns = struct.unpack_from("<qq", user_data)
            frames.append([round(now / 1e9, 4), round((now - emitted_ns) / 1e6, 2)])

    reactor = Reactor("webrtc-congestion", local=True, api_url=url)
    reactor.track("main_video").on_frame(on_frame)
    await reactor.connect()
    await asyncio.sleep(seconds)
    await reactor.disconnect()
    reactor.close()
    return {"frames": frames}


# -- aiortc: the alternative media stack, same packets (inside the namespace) -------------------------------


async def aiortc_server(seconds: float, bitrate: int) -> dict[str, Any]:
    """The engine's VP8 packets sent by aiortc 1.16; signaling over stdin/stdout (one JSON line each way,
    then ``WARM`` once the receiver's estimate has reached ``bitrate``: ``seconds`` count from there).

    aiortc packetizes ``av.Packet`` frames as they are (no encode, no pacer, no send-side estimate);
    the receiver's REMB sets the encoder's target (aiortc clamps it to 250k-1.5M: its floor is lowered
    here) and a PLI asks the engine for a key frame."""
    import threading

    import aiortc.codecs.vpx as aiortc_vpx
    import av
    from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
    from webrtc_model import read_index

    from reactor_engine import Engine

    aiortc_vpx.MIN_BITRATE, aiortc_vpx.MAX_BITRATE = 30_000, bitrate
    loop = asyncio.get_running_loop()
    packets: asyncio.Queue[av.Packet] = asyncio.Queue()
    emitted: dict[int, float] = {}
    targets: list[list[float]] = []
    offset: list[int] = []

    class PreEncoded(MediaStreamTrack):  # type: ignore[misc]
        kind = "video"

        async def recv(self) -> av.Packet:
            return await packets.get()

    def pump(session: Any, stop: threading.Event) -> None:
        decoder = av.CodecContext.create("vp8", "r")
        for packet in session.packets():
            with packet:
                data = packet.tobytes()
                emitted[packet.frame_index & 0xFFFF] = packet.t_commit_ns / 1e9
                if not offset and packet.keyframe:  # the painted index against the packet's, once
                    for frame in decoder.decode(av.Packet(data)):
                        offset.append(read_index(frame.to_ndarray(format="rgb24")) - packet.frame_index)
                out = av.Packet(data)
                out.pts, out.time_base = packet.pts_ns * 9 // 100_000, Fraction(1, 90_000)
                loop.call_soon_threadsafe(packets.put_nowait, out)
            if stop.is_set():
                return

    model = str(REPO / "tests" / "webrtc_model.py")
    config = {"codec": "vp8", "bitrate": bitrate}
    with Engine(model, model_config={"width": WIDTH, "height": HEIGHT}, engine_config=config) as engine:
        engine.wait_ready(60)
        session = engine.session()
        pc = RTCPeerConnection()
        sender = pc.addTrack(PreEncoded())
        keyframe = sender._send_keyframe
        sender._send_keyframe = lambda: (session.request_keyframe(), keyframe())
        await pc.setLocalDescription(await pc.createOffer())
        print("OFFER " + json.dumps(pc.localDescription.sdp), flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        answer = json.loads(line.removeprefix("ANSWER "))
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        stop = threading.Event()
        thread = threading.Thread(target=pump, args=(session, stop), daemon=True)
        thread.start()
        applied, warm = bitrate, time.monotonic() + 20
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await asyncio.sleep(0.1)
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)  # aiortc's, made on the first frame
            remb = int(encoder.target_bitrate) if encoder is not None else bitrate
            if warm and (remb >= bitrate or time.monotonic() > warm):  # REMB has reached the ceiling
                print("WARM", flush=True)
                warm, until = 0.0, time.monotonic() + seconds
            target = max(30_000, min(bitrate, int(0.85 * remb)))
            if abs(target - applied) > 0.05 * applied:
                session.set_bitrate(target)
                applied = target
            targets.append([round(time.monotonic(), 3), applied, remb])
        stop.set()
        await pc.close()
        session.stop()
    return {"emitted": emitted, "targets": targets, "index_offset": offset[0] if offset else None}


async def aiortc_client(seconds: float) -> dict[str, Any]:
    """A bare reactor-webrtc receiving peer (libwebrtc, playout delay 0): every frame's receive time and
    the index painted in it; the offer from stdin, the answer (with its candidates) to stdout."""
    import numpy as np
    import reactor_webrtc as rtc
    from webrtc_model import read_index

    from reactor_engine.transports.webrtc.sdp import with_candidates

    loop = asyncio.get_running_loop()
    builder = rtc.PeerConnectionFactoryBuilder()
    builder.with_receive_playout_delay(0.0, 0.0)
    factory = builder.build()
    frames: list[list[float]] = []
    candidates: list[rtc.IceCandidate] = []
    gathered = asyncio.Event()

    def on_frame(bgra: bytes, width: int, height: int, *_meta: Any) -> None:
        now = time.monotonic()
        picture = np.frombuffer(bgra, np.uint8).reshape(height, width, 4)[..., :3]
        frames.append([round(now, 4), read_index(picture)])

    tracks: list[rtc.Track] = []  # a track dropped takes its frame callback with it

    def on_track(kind: rtc.MediaKind, track: rtc.Track) -> None:
        if kind == rtc.MediaKind.Video:
            tracks.append(track)
            track.on_video_frame(on_frame)

    observer = rtc.PeerConnectionObserver()
    observer.on_track = on_track
    observer.on_ice_candidate = lambda c: loop.call_soon_threadsafe(candidates.append, c)
    observer.on_ice_gathering_change = lambda state: (
        loop.call_soon_threadsafe(gathered.set) if state == rtc.IceGatheringState.Complete else None
    )
    pc = factory.create_peer_connection(rtc.RtcConfiguration(), observer)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    await pc.set_remote_description(rtc.SessionDescription("offer", json.loads(line.removeprefix("OFFER "))))
    answer = await pc.create_answer()
    await pc.set_local_description(answer)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(gathered.wait(), 5)
    print("ANSWER " + json.dumps(with_candidates(answer.sdp, candidates)), flush=True)
    await asyncio.sleep(seconds)
    observer.on_track = None
    return {"frames": frames}


def run_aiortc(
    ns: Any, *, limit: str, free: float, limited: float, recovered: float, bitrate: int
) -> dict[str, Any]:
    """The scenario with aiortc sending: the same phases; latency joins the client's painted indices
    with the server's emit times."""
    total = free + limited + recovered + 3.0
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    srv = ns.python([str(Path(__file__)), "aiortc-server", str(total + 2), str(bitrate)], **pipes)
    client = ns.python([str(Path(__file__)), "aiortc-client", str(total + 22)], **pipes)
    offer = srv.stdout.readline()
    if not offer.startswith("OFFER "):
        raise RuntimeError(f"aiortc server: {offer!r} {srv.stderr.read()[-3000:]}")
    client.stdin.write(offer)
    client.stdin.flush()
    answer = client.stdout.readline()
    if not answer.startswith("ANSWER "):
        raise RuntimeError(f"aiortc client: {answer!r} {client.stderr.read()[-3000:]}")
    srv.stdin.write(answer)
    srv.stdin.flush()
    if srv.stdout.readline().strip() != "WARM":  # REMB up to the configured bitrate, as the other stack
        raise RuntimeError(f"aiortc server: {srv.stderr.read()[-3000:]}")
    times: dict[str, float] = {"free": time.monotonic()}
    time.sleep(free)
    times["limited"] = time.monotonic()
    shape(ns, limit)
    try:
        time.sleep(limited)
    finally:
        shape(ns, None)
    times["recovered"] = time.monotonic()
    time.sleep(recovered)
    times["end"] = time.monotonic()
    received = _result_of(client, timeout=total + 60)
    sent = _result_of(srv, timeout=total + 60)
    emitted = {int(k): v for k, v in sent["emitted"].items()}
    shift = sent["index_offset"] or 0
    frames = []
    for t, painted in received["frames"]:
        emit = emitted.get((painted - shift) & 0xFFFF)
        if emit is not None and 0 <= t - emit < 30:
            frames.append([t, round((t - emit) * 1000, 2)])
    trace = [
        (round(t - times["free"], 1), target)
        for t, target, _remb in sent["targets"][::5]
        if t >= times["free"] - 0.1
    ]
    return {
        "stack": "aiortc",
        "times": times,
        "client": {"frames": frames, "unmatched": len(received["frames"]) - len(frames)},
        "trace": [f"encoder target (s, bit/s), from REMB: {trace}", f"painted index offset {shift}"],
    }


# -- report -------------------------------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    report = phases_report(result)
    print(f"\n== {result['stack']}")
    for name, row in report.items():
        print(
            f"  {name:15s} frames {row['frames']:4d} ({row['fps']:5.1f} fps)  latency p50 {row['p50_ms']} "
            f"p90 {row['p90_ms']} max {row['max_ms']} ms"
        )
    samples = result.get("samples") or []
    if samples:
        trace = [(round(s["t"] - result["times"]["free"], 1), s["target"]) for s in samples]
        print(f"  encoder target (s, bit/s): {trace}")
        last = samples[-1]
        print(
            f"  frames pushed {last['pushed']}, skipped {last['skipped']}, resyncs {last['resyncs']}, "
            f"libwebrtc input drops {last['input_drops']}, "
            f"stuck in reactor-webrtc's queue {last['backlog']}, "
            f"key frames asked {last['keyframes_requested']}"
        )
    for line in result.get("trace", []):
        print(f"  {line}")


@contextlib.contextmanager
def namespace() -> Iterator[Any]:
    from netns import NetNs
    from webrtc_helpers import start_stun

    ns = NetNs()
    ns.create()
    try:
        why = tbf_available(ns)
        if why:
            raise SystemExit(f"skipped: {why}")
        start_stun(ns)
        yield ns
    finally:
        ns.close()


def main(argv: list[str]) -> int:
    helpers = {
        "sdk-client": lambda: sdk_client(argv[1].rstrip("/"), float(argv[2])),
        "aiortc-server": lambda: aiortc_server(float(argv[1]), int(argv[2])),
        "aiortc-client": lambda: aiortc_client(float(argv[1])),
    }
    if argv and argv[0] in helpers:
        result = asyncio.run(helpers[argv[0]]())
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", default="400kbit")
    parser.add_argument("--free", type=float, default=3.0)
    parser.add_argument("--limited", type=float, default=7.0)
    parser.add_argument("--recovered", type=float, default=10.0)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--stack", choices=["reactor-webrtc", "aiortc", "both"], default="reactor-webrtc")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    kwargs = {"limit": args.limit, "free": args.free, "limited": args.limited, "recovered": args.recovered}
    results = []
    if args.stack in ("reactor-webrtc", "both"):
        with namespace() as ns:
            results.append(run_reactor_webrtc(ns, bitrate=args.bitrate, **kwargs))
    if args.stack in ("aiortc", "both"):
        with namespace() as ns:
            results.append(run_aiortc(ns, bitrate=args.bitrate, **kwargs))
    for result in results:
        print_report(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
