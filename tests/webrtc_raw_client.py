"""A hand-driven protocol client on reactor-webrtc, for what no SDK sends: garbage, floods, silence.

Run inside the test's network namespace: ``python tests/webrtc_raw_client.py SCENARIO URL [ARGS]``;
it prints one ``RESULT {json}`` line. ``RawPeer`` does the signaling itself (per-connection or flat
routes, trickled candidates or candidates in the offer, one or two data channels) and can send any
bytes on either channel. Scenarios are the functions named in ``SCENARIOS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any

import reactor_webrtc as rtc
from google.protobuf import struct_pb2

from reactor_engine.transports.webrtc.proto import reactor_wire_v1_pb2 as pb
from reactor_engine.transports.webrtc.sdp import with_candidates

V0_PING = '{"scope":"runtime","data":{"type":"ping","data":{}}}'
V0_RESUME = '{"type":"notification","event":"resume_track","data":{"name":"main_video"}}'

_factory: rtc.PeerConnectionFactory | None = None


def factory() -> rtc.PeerConnectionFactory:
    global _factory
    if _factory is None:
        _factory = rtc.PeerConnectionFactoryBuilder().build()
    return _factory


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request; ``(status, parsed JSON or text)`` whatever the status."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


async def ahttp(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    return await asyncio.to_thread(http, method, url, body, headers)


class RawPeer:
    """One client peer connection. ``flat``: the js-sdk 2.9 routes (cid 1001, no registration).
    ``trickle``: candidates by POST (reactor-sdk 1.x) instead of inside the offer (js-sdk)."""

    def __init__(
        self,
        base: str,
        sid: str,
        *,
        channels: tuple[str, ...] = ("data", "control"),
        trickle: bool = True,
        flat: bool = False,
        track: str = "main_video",
        version: str = "v1",
        keepalive: float | None = 0.5,
    ) -> None:
        self.base = base
        self.prefix = f"{base}/sessions/{sid}/transport/webrtc"
        self.flat, self.trickle, self.track = flat, trickle, track
        self.version, self.keepalive = version, keepalive
        self._pinger: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.received: dict[str, list[bytes]] = {"data": [], "control": []}
        self.state = "new"
        self.connected = asyncio.Event()
        self.gathered = asyncio.Event()
        self.candidates: list[rtc.IceCandidate] = []
        observer = rtc.PeerConnectionObserver()
        observer.on_connection_state_change = lambda s: self.loop.call_soon_threadsafe(self._state, s)
        observer.on_ice_candidate = lambda c: self.loop.call_soon_threadsafe(self.candidates.append, c)
        observer.on_ice_gathering_change = lambda s: self.loop.call_soon_threadsafe(self._gathering, s)
        self.observer = observer
        self.pc = factory().create_peer_connection(rtc.RtcConfiguration(), observer)
        self.transceiver = self.pc.add_transceiver(rtc.MediaKind.Video, rtc.TransceiverDirection.RecvOnly)
        self.channels = {label: self.pc.create_data_channel(label) for label in channels}
        for label, channel in self.channels.items():
            channel.on_message(lambda data, binary, label=label: self.received[label].append(data))
        self.cid: int | None = None

    def _state(self, state: rtc.PeerConnectionState) -> None:
        self.state = str(state).rsplit(".", 1)[-1].lower()
        if state == rtc.PeerConnectionState.Connected:
            self.connected.set()

    def _gathering(self, state: rtc.IceGatheringState) -> None:
        if state == rtc.IceGatheringState.Complete:
            self.gathered.set()

    def _url(self, what: str) -> str:
        return f"{self.prefix}/{what}" if self.flat else f"{self.prefix}/connections/{self.cid}/{what}"

    async def offer(self, method: str = "POST") -> tuple[int, Any]:
        """Register (unless flat), make the offer and send it; the sdp_params reply."""
        if not self.flat and self.cid is None:
            status, body = await ahttp("POST", f"{self.prefix}/connections", {})
            assert status == 201, (status, body)
            self.cid = body["connection_id"]
        offer = await self.pc.create_offer()
        await self.pc.set_local_description(offer)
        sdp = offer.sdp
        if not self.trickle:  # as a browser that waited for gathering: the candidates are in the offer
            await asyncio.wait_for(self.gathered.wait(), 5)
            sdp = with_candidates(sdp, self.candidates)
        mapping = [
            {"mid": self.transceiver.mid(), "name": self.track, "kind": "video", "direction": "recvonly"}
        ]
        return await ahttp(method, self._url("sdp_params"), {"sdp_offer": sdp, "track_mapping": mapping})

    async def send_candidates(self) -> tuple[int, Any]:
        await asyncio.wait_for(self.gathered.wait(), 5)
        body = {
            "candidates": [
                {"candidate": c.candidate, "sdp_mid": c.sdp_mid, "sdp_mline_index": c.sdp_mline_index}
                for c in self.candidates
            ],
            "is_final": True,
        }
        return await ahttp("POST", self._url("ice_candidates"), body)

    async def answer(self, timeout: float = 8.0) -> tuple[int, Any]:
        """Poll GET sdp_params until it is not 202 (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = await ahttp("GET", self._url("sdp_params"))
            if status != 202 or time.monotonic() > deadline:
                return status, body
            await asyncio.sleep(0.05)

    async def connect(self, timeout: float = 10.0) -> float:
        """The whole flow; the seconds it took to be connected with every channel open."""
        started = time.monotonic()
        status, body = await self.offer()
        assert status == 202, (status, body)
        if self.trickle:
            status, body = await self.send_candidates()
            assert status == 202, (status, body)
        status, body = await self.answer()
        assert status == 200, (status, body)
        await self.pc.set_remote_description(rtc.SessionDescription("answer", body["sdp_answer"]))
        await self.opened(timeout)
        if self.keepalive:
            self._pinger = asyncio.get_running_loop().create_task(self._ping())
        return time.monotonic() - started

    async def opened(self, timeout: float = 10.0) -> None:
        """Wait until connected with every channel open."""
        await asyncio.wait_for(self.connected.wait(), timeout)
        deadline = time.monotonic() + timeout
        while any(c.state() != rtc.DataChannelState.Open for c in self.channels.values()):
            assert time.monotonic() < deadline, "channels did not open"
            await asyncio.sleep(0.01)

    async def _ping(self) -> None:
        assert self.keepalive is not None
        while True:
            await asyncio.sleep(self.keepalive)
            if self.version == "v1":
                self.send("control", v1_control(ping=pb.Ping()))
            else:
                self.send("data", V0_PING)

    def send(self, label: str, data: bytes | str) -> None:
        payload = data.encode() if isinstance(data, str) else data
        self.channels[label].send(payload, not isinstance(data, str))

    async def wait_message(self, label: str, count: int = 1, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.received[label]) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.received[label]

    async def frames(self) -> int:
        """Video frames decoded so far (the receiver's stats: this binding's on_track does not fire for
        an offerer's own recvonly transceiver)."""
        stats = await self.pc.get_stats()
        return sum(inbound.frames_decoded for inbound in stats.inbound_rtp)

    async def wait_frames(self, count: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        frames = await self.frames()
        while frames < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            frames = await self.frames()
        return frames


# -- v1 messages -------------------------------------------------------------------------------------


def v1_command(request_id: str, name: str, data: dict[str, Any]) -> bytes:
    struct = struct_pb2.Struct()
    struct.update(data)
    message = pb.DataClientMessage(
        request_id=request_id, kind=pb.MESSAGE_KIND_REQUEST, command=pb.Command(type=name, data=struct)
    )
    return message.SerializeToString()


def v1_control(**payload: Any) -> bytes:
    return pb.ControlClientMessage(kind=pb.MESSAGE_KIND_NOTIFICATION, **payload).SerializeToString()


def v1_reply(raw: bytes) -> dict[str, Any]:
    message = pb.DataServerMessage.FromString(raw)
    out: dict[str, Any] = {
        "request_id": message.request_id,
        "kind": message.kind,
        "payload": message.WhichOneof("payload"),
    }
    if message.HasField("error"):
        out["error"] = {"code": message.error.code, "message": message.error.message}
    if message.HasField("message"):
        out["type"] = message.message.type
    return out


# -- scenarios ---------------------------------------------------------------------------------------


async def start_session(base: str) -> str:
    status, body = await ahttp("POST", f"{base}/start_session", {})
    if status == 409:
        status, body = await ahttp("GET", f"{base}/session")
    assert status == 200, (status, body)
    return str(body["session_id"])


async def bad_messages(base: str, max_bytes: str) -> dict[str, Any]:
    """Garbage, oversized and unknown messages (v1 and v0), each followed by a command that works."""
    limit = int(max_bytes)
    sid = await start_session(base)
    out: dict[str, Any] = {"session_id": sid}
    v1, v0 = RawPeer(base, sid), RawPeer(base, sid, version="v0")
    await v1.connect()
    await v0.connect()
    # v1: the first message decides the version, so a valid one goes first.
    v1.send("control", v1_control(resume_track=pb.ResumeTrack(name="main_video")))
    v0.send("control", V0_RESUME)
    v1.send("data", b"\x0a\xff\xff\xff\xff\x0f garbage that is no protobuf")
    v1.send("control", b"\x08" + b"\x00" * (limit + 10))
    unknown = (
        pb.ControlClientMessage(kind=pb.MESSAGE_KIND_NOTIFICATION).SerializeToString() + b"\xfa\x05\x02hi"
    )
    v1.send("control", unknown)  # field 95: a payload from a newer client
    v1.send("data", v1_command("data_1", "echo", {"text": "still here"}))
    v1.send("data", v1_command("data_2", "set_level", {"level": 99}))
    replies = [v1_reply(raw) for raw in await v1.wait_message("data", 2)]
    out["v1_replies"] = replies
    # v0 (text JSON): garbage, oversized, unknown scope, then a command whose reply is a model message.
    v0.send("data", "{not json")
    v0.send(
        "data", json.dumps({"scope": "application", "data": {"type": "echo", "data": {"text": "x" * limit}}})
    )
    v0.send("data", '{"scope":"martian","data":{"type":"hello"}}')
    v0.send("data", '{"scope":"application","data":{"type":"echo","data":{"text":"v0 here"}}}')
    out["v0_replies"] = [json.loads(raw) for raw in await v0.wait_message("data", 1)]
    _, stats = await ahttp("GET", f"{base}/sessions/{sid}/transport/webrtc/stats")
    out["stats"] = stats
    out["frames_v1"] = await v1.wait_frames(5)
    out["frames_v0"] = await v0.wait_frames(5)
    return out


async def js_flow(base: str) -> dict[str, Any]:
    """js-sdk 2.9's shape: flat routes, one data channel, candidates inside the offer, no resume."""
    sid = await start_session(base)
    peer = RawPeer(base, sid, channels=("data",), trickle=False, flat=True, version="v0")
    seconds = await peer.connect()
    frames = await peer.wait_frames(10, 10.0)
    peer.send("data", '{"scope":"application","data":{"type":"echo","data":{"text":"js"}}}')
    replies = await peer.wait_message("data", 1)
    # A re-offer on the same flat connection (the SDK's reconnect) answers again.
    status, _ = await peer.offer("PUT")
    return {
        "session_id": sid,
        "connect_s": round(seconds, 3),
        "frames": frames,
        "replies": [json.loads(r) for r in replies],
        "reoffer_status": status,
    }


async def early_candidates(base: str) -> dict[str, Any]:
    """Candidates posted before the offer are kept and applied with it."""
    sid = await start_session(base)
    peer = RawPeer(base, sid)
    _, body = await ahttp("POST", f"{peer.prefix}/connections", {})
    peer.cid = body["connection_id"]
    offer = await peer.pc.create_offer()
    await peer.pc.set_local_description(offer)
    candidates_status, _ = await peer.send_candidates()
    mapping = [
        {"mid": peer.transceiver.mid(), "name": "main_video", "kind": "video", "direction": "recvonly"}
    ]
    offer_status, _ = await ahttp(
        "POST", peer._url("sdp_params"), {"sdp_offer": offer.sdp, "track_mapping": mapping}
    )
    _, body = await peer.answer()
    await peer.pc.set_remote_description(rtc.SessionDescription("answer", body["sdp_answer"]))
    await peer.opened()
    peer.send("control", v1_control(resume_track=pb.ResumeTrack(name="main_video")))
    return {
        "candidates_status": candidates_status,
        "offer_status": offer_status,
        "frames": await peer.wait_frames(5),
    }


async def never_connects(base: str, wait: str) -> dict[str, Any]:
    """An offer whose answer is never applied: the server gives up after its negotiation timeout."""
    sid = await start_session(base)
    peer = RawPeer(base, sid)
    status, _ = await peer.offer()
    answered, _ = await peer.answer()
    await asyncio.sleep(float(wait))
    after, body = await peer.answer()
    _, stats = await ahttp("GET", f"{base}/sessions/{sid}/transport/webrtc/stats")
    return {
        "offer_status": status,
        "answer_status": answered,
        "after_status": after,
        "after": body,
        "stats": stats,
    }


async def too_many(base: str, limit: str) -> dict[str, Any]:
    """One offer more than ``max_peers``: refused with 429, and the others keep streaming."""
    sid = await start_session(base)
    peers = [RawPeer(base, sid) for _ in range(int(limit))]
    for peer in peers:
        await peer.connect()
        peer.send("control", v1_control(resume_track=pb.ResumeTrack(name="main_video")))
    extra = RawPeer(base, sid)
    status, body = await extra.offer()
    frames = [await peer.wait_frames(5) for peer in peers]
    return {"status": status, "body": body, "frames": frames}


async def session_end(base: str) -> dict[str, Any]:
    """Both wire versions are told when the session ends (v1 on control, v0 on data)."""
    sid = await start_session(base)
    v1 = RawPeer(base, sid)
    js = RawPeer(base, sid, channels=("data",), trickle=False, flat=True, version="v0", keepalive=None)
    await v1.connect()
    await js.connect()
    await asyncio.sleep(0.5)  # past the js peer's channel grace: it is known to speak v0
    stopped, _ = await ahttp("POST", f"{base}/stop_session", {"reason": "test over"})
    v1_control = await v1.wait_message("control", 1)
    js_data = await js.wait_message("data", 1)
    ended = [pb.ControlServerMessage.FromString(raw) for raw in v1_control]
    return {
        "stopped": stopped,
        "v1": [m.session_ended.reason for m in ended if m.HasField("session_ended")],
        "v0": [json.loads(raw) for raw in js_data],
    }


async def vanish(base: str) -> dict[str, Any]:
    """Connect, get video, then die without closing anything (the process exits at once)."""
    sid = await start_session(base)
    peer = RawPeer(base, sid, keepalive=None)
    await peer.connect()
    peer.send("control", v1_control(ping=pb.Ping()))
    peer.send("control", v1_control(resume_track=pb.ResumeTrack(name="main_video")))
    await peer.wait_frames(5)
    print("RESULT " + json.dumps({"session_id": sid, "connected": True}), flush=True)
    os._exit(0)


async def leave(base: str) -> dict[str, Any]:
    """Connect, get video, then close both channels (as a client that leaves does) and stay quiet."""
    sid = await start_session(base)
    peer = RawPeer(base, sid, keepalive=None)
    await peer.connect()
    peer.send("control", v1_control(resume_track=pb.ResumeTrack(name="main_video")))
    frames = await peer.wait_frames(10)
    for channel in peer.channels.values():
        channel.close(0.5)
    return {"session_id": sid, "frames": frames}


async def get(base: str, path: str) -> dict[str, Any]:
    status, body = await ahttp("GET", f"{base}{path}")
    return {"status": status, "body": body}


async def post(base: str, path: str, body: str = "{}") -> dict[str, Any]:
    status, reply = await ahttp("POST", f"{base}{path}", body.encode())
    return {"status": status, "body": reply}


SCENARIOS: dict[str, Callable[..., Coroutine[Any, Any, dict[str, Any]]]] = {
    "bad_messages": bad_messages,
    "js_flow": js_flow,
    "early_candidates": early_candidates,
    "never_connects": never_connects,
    "too_many": too_many,
    "vanish": vanish,
    "leave": leave,
    "session_end": session_end,
    "get": get,
    "post": post,
}


def main(argv: list[str]) -> int:
    scenario, base, *args = argv
    result = asyncio.run(SCENARIOS[scenario](base.rstrip("/"), *args))
    print("RESULT " + json.dumps(result, default=str), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip reactor-webrtc's teardown at exit: the test is over


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
