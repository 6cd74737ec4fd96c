"""Client media over WebRTC against ``tests/media_model.py``; prints one ``RESULT {json}`` line.

Run inside the test's network namespace: ``python tests/webrtc_media_client.py SCENARIO URL [SECONDS]``.

- ``sdk``: the published reactor-sdk 1.13 (unmodified) publishes ``webcam`` (synthetic frames with a
  stamped index) and ``mic`` (a 1000 Hz tone), receives ``main_video`` (the frames inverted: index
  order, latency from each push to the first output made from it) and ``voice`` (the model's 440 Hz
  tone: FFT peak), asks the model what it heard, and tries to publish an undeclared track.
- ``raw``: a hand-driven reactor-webrtc peer (libwebrtc's own VP8 encoder) publishes ``webcam``
  through a sender transform that garbles one frame in 30: the server's decoder counts them, asks
  for key frames, and decoding goes on; ``publish_track`` of a declared and an undeclared name.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import reactor_webrtc as rtc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from media_model import AUDIO_RATE, client_frame, output_index, peak_hz
from webrtc_raw_client import RawPeer, ahttp, start_session

from reactor_engine.transports.webrtc.proto import reactor_wire_v1_pb2 as pb


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


async def server_stats(url: str, sid: str, path: str = "stats") -> dict[str, Any]:
    status, body = await ahttp("GET", f"{url}/sessions/{sid}/{path}")
    assert status == 200, (status, body)
    return dict(body)


class Outputs:
    """The model's frames as the SDK hands them over: the input index each carries, when it came."""

    def __init__(self) -> None:
        self.frames = 0
        self.received: list[tuple[int, int]] = []  # (input index, monotonic ns)
        self.other = 0

    def __call__(self, frame: np.ndarray) -> None:
        now = time.monotonic_ns()
        self.frames += 1
        found = output_index(frame)
        if found is None:
            self.other += 1
        else:
            self.received.append((found, now))


class Heard:
    """The model's audio as the SDK hands it over."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.formats: set[tuple[int, int]] = set()

    def __call__(self, frame: np.ndarray, sample_rate: int, num_channels: int) -> None:
        self.formats.add((int(sample_rate), int(num_channels)))
        block = np.asarray(frame).reshape(-1)
        if num_channels > 1:
            block = block.reshape(-1, num_channels)[:, 0]
        self.blocks.append(block.astype(np.int16).copy())


async def sdk(url: str, seconds: float) -> dict[str, Any]:
    from reactor_sdk import Reactor

    out: dict[str, Any] = {}
    reactor = Reactor("media-test", local=True, api_url=url)
    outputs, heard = Outputs(), Heard()
    reactor.track("main_video").on_frame(outputs)
    reactor.track("voice").on_frame(heard)
    await reactor.connect()
    sid = reactor.session_id
    assert sid is not None
    out["session_id"] = sid
    camera = await reactor.track("webcam").publish()
    mic = await reactor.track("mic").publish()
    out["published"] = [camera.published, mic.published]
    try:
        await reactor.publish_track("nope")
        out["undeclared_publish"] = None
    except Exception as exc:
        out["undeclared_publish"] = f"{type(exc).__name__}: {exc}"
    sent_at: dict[int, int] = {}
    block = AUDIO_RATE // 50
    step = 2 * np.pi * 1000.0 / AUDIO_RATE
    written = 0
    started = time.monotonic()
    for index in itertools.count():
        now = time.monotonic()
        if now - started >= seconds:
            break
        sent_at[index] = time.monotonic_ns()
        camera.push_frame(client_frame(index))
        # 20 ms blocks of the tone, as many as are due.
        while written < (now - started + 0.04) * AUDIO_RATE:
            phases = step * np.arange(written, written + block)
            mic.push_frame((12000 * np.sin(phases)).astype(np.int16), sample_rate=AUDIO_RATE, num_channels=1)
            written += block
        await asyncio.sleep(max(0.0, started + (index + 1) / 30 - time.monotonic()))
    await asyncio.sleep(0.5)
    out["sent"] = len(sent_at)
    indices = [index for index, _ in outputs.received]
    out["received"] = len(outputs.received)
    out["distinct"] = len(set(indices))
    out["other_frames"] = outputs.other
    out["in_order"] = indices == sorted(indices)
    first: dict[int, int] = {}
    for index, arrived in outputs.received:
        first.setdefault(index, arrived)
    latency = [(arrived - sent_at[index]) / 1e6 for index, arrived in first.items() if index in sent_at]
    out["latency_ms"] = {"p50": percentile(latency, 50), "p99": percentile(latency, 99), "n": len(latency)}
    samples = np.concatenate(heard.blocks) if heard.blocks else np.zeros(0, np.int16)
    out["audio_formats"] = sorted(heard.formats)
    out["audio_samples"] = int(samples.size)
    rate = next(iter(heard.formats))[0] if heard.formats else AUDIO_RATE
    out["audio_peak_hz"] = peak_hz(samples[-rate // 2 :], rate) if samples.size >= rate // 2 else None
    out["heard"] = await reactor.send_command("heard", {})
    client_stats = await reactor.get_stats()
    out["client_inbound"] = [str(entry)[:300] for entry in client_stats.inbound]
    out["webrtc_stats"] = await server_stats(url, sid, "transport/webrtc/stats")
    out["session_stats"] = await server_stats(url, sid)
    await reactor.disconnect()
    reactor.close()
    return out


class MediaPeer(RawPeer):
    """A ``RawPeer`` that also sends ``webcam``: libwebrtc encodes the BGRA frames pushed into ``camera``."""

    def __init__(self, base: str, sid: str) -> None:
        super().__init__(base, sid)
        self.camera = factory_track()
        self.send_transceiver = self.pc.add_transceiver(
            rtc.MediaKind.Video, rtc.TransceiverDirection.SendOnly
        )
        self.garbled = 0
        self.frames_out = 0

    async def offer(self, method: str = "POST") -> tuple[int, Any]:
        await self.send_transceiver.set_track(self.camera)
        await self.send_transceiver.set_codec_preferences([rtc.VideoCodec.Vp8])
        self.send_transceiver.set_sender_transform(rtc.FrameTransform(self._garble))
        if self.cid is None:
            status, body = await ahttp("POST", f"{self.prefix}/connections", {})
            assert status == 201, (status, body)
            self.cid = body["connection_id"]
        offer = await self.pc.create_offer()
        await self.pc.set_local_description(offer)
        mapping = [
            {"mid": self.transceiver.mid(), "name": "main_video", "kind": "video", "direction": "recvonly"},
            {"mid": self.send_transceiver.mid(), "name": "webcam", "kind": "video", "direction": "sendonly"},
        ]
        body = {"sdp_offer": offer.sdp, "track_mapping": mapping}
        return await ahttp(method, self._url("sdp_params"), body)

    def _garble(self, frame: rtc.EncodedFrame) -> rtc.FrameAction:
        self.frames_out += 1
        if self.frames_out % 30 == 15 and not frame.is_key_frame:
            self.garbled += 1
            frame.replace_data(bytes(len(frame.data)))  # a delta frame of zeros: corrupt VP8
        return rtc.FrameAction.Forward


_factory: rtc.PeerConnectionFactory | None = None


def factory_track() -> rtc.Track:
    from webrtc_raw_client import factory

    return factory().create_video_track("webcam")


def control_request(request_id: str, name: str) -> bytes:
    message = pb.ControlClientMessage(
        request_id=request_id, kind=pb.MESSAGE_KIND_REQUEST, publish_track=pb.PublishTrack(name=name)
    )
    return message.SerializeToString()


async def raw(url: str, seconds: float) -> dict[str, Any]:
    sid = await start_session(url)
    peer = MediaPeer(url, sid)
    await peer.connect()
    out: dict[str, Any] = {"session_id": sid}
    peer.send("control", control_request("ctrl_1", "webcam"))
    peer.send("control", control_request("ctrl_2", "nope"))
    replies = list(await peer.wait_message("control", 2))[:2]
    out["publish"] = []
    for raw_reply in replies:
        reply = pb.ControlServerMessage.FromString(raw_reply)
        entry: dict[str, Any] = {"request_id": reply.request_id, "payload": reply.WhichOneof("payload")}
        if reply.HasField("error"):
            entry["error"] = {"code": reply.error.code, "message": reply.error.message}
        out["publish"].append(entry)
    width, height = 320, 240
    started = time.monotonic()
    for index in itertools.count():
        if time.monotonic() - started >= seconds:
            break
        rgb = client_frame(index, width, height)
        bgra = np.empty((height, width, 4), np.uint8)
        bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = rgb[..., 2], rgb[..., 1], rgb[..., 0], 255
        peer.camera.push_video_frame(bgra.tobytes(), width, height)
        await asyncio.sleep(max(0.0, started + (index + 1) / 30 - time.monotonic()))
    await asyncio.sleep(0.5)
    out["garbled"] = peer.garbled
    out["frames_out"] = peer.frames_out
    out["errors_heard"] = [
        pb.ControlServerMessage.FromString(m).error.code for m in peer.received["control"][len(replies) :]
    ]
    out["webrtc_stats"] = await server_stats(url, sid, "transport/webrtc/stats")
    out["session_stats"] = await server_stats(url, sid)
    stats = await peer.pc.get_stats()
    out["sender"] = [
        {"pli": o.pli_count, "frames_sent": o.frames_sent}
        for o in stats.outbound_rtp
        if o.kind == rtc.StreamKind.Video
    ]
    await ahttp("POST", f"{url}/stop_session", {})
    return out


def main(argv: list[str]) -> int:
    scenario, url = argv[0], argv[1].rstrip("/")
    seconds = float(argv[2]) if len(argv) > 2 else 4.0
    if scenario == "sdk":
        result = asyncio.run(sdk(url, seconds))
    elif scenario == "raw":
        result = asyncio.run(raw(url, seconds))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
