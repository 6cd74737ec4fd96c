"""The WebRTC transport against hand-driven peers: bad input, limits, timeouts, the js-sdk 2.9 shape.

One server (the http app with the Reactor local protocol, short timeouts) runs inside a network
namespace made for this module; each test drives ``webrtc_raw_client.py`` there and reads the
server's own stats. After each test the session is stopped, so tests do not share peers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from netns import NetNs
from webrtc_helpers import Server, raw, server, stun_namespace

pytest.importorskip("reactor_webrtc")

MAX_MESSAGE_BYTES = 4096
OPTIONS = {
    "max_message_bytes": MAX_MESSAGE_BYTES,
    "negotiation_timeout": 2.0,
    "ping_timeout": 2.0,
    "max_peers": 3,
}
SMALL = {"width": 320, "height": 180}


@pytest.fixture(scope="module")
def ns() -> Iterator[NetNs]:
    with stun_namespace() as namespace:
        yield namespace


@pytest.fixture(scope="module")
def srv(ns: NetNs) -> Iterator[Server]:
    with server(ns, webrtc=OPTIONS, model_config=SMALL, engine={"bitrate": 300_000}) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_session(ns: NetNs, srv: Server) -> Iterator[None]:
    yield
    raw(ns, srv, "post", "/stop_session")


def peer_stats(stats: dict, cid: int | None = None) -> list[dict]:
    return [
        c["peer"] for c in stats["connections"] if "peer" in c and (cid is None or c["connection_id"] == cid)
    ]


def test_garbage_oversized_and_unknown_messages_are_ignored_and_the_peer_keeps_working(ns, srv):
    result = raw(ns, srv, "bad_messages", str(MAX_MESSAGE_BYTES))
    v1 = {reply["request_id"]: reply for reply in result["v1_replies"]}
    # The command after the garbage got its correlated reply, and the invalid one its validation error.
    assert v1["data_1"]["type"] == "echo"
    assert v1["data_2"]["error"]["code"] == "invalid_arguments"
    assert "less than or equal to 10" in v1["data_2"]["error"]["message"]
    assert result["v0_replies"][0]["data"]["type"] == "echo"
    assert result["v0_replies"][0]["data"]["data"]["text"] == "v0 here"
    peers = {p["wire"]: p for p in peer_stats(result["stats"])}
    assert (
        peers["v1"]["wire_errors"] == 2
    )  # the garbage and the oversized message; the unknown payload is ignored
    assert peers["v0"]["wire_errors"] == 2  # "{not json" and the oversized command
    assert peers["v1"]["state"] == peers["v0"]["state"] == "connected"
    assert result["frames_v1"] >= 5
    assert result["frames_v0"] >= 5
    log = srv.log(400)
    assert "bad message on its data channel" in log
    assert "is 4" in log or "the limit is 4096" in log


def test_js_sdk_29_shape_gets_video_without_resume_on_the_flat_routes(ns, srv):
    result = raw(ns, srv, "js_flow")
    assert result["frames"] >= 10  # never sent resume_track, one data channel, candidates in the offer
    assert result["replies"][0]["scope"] == "application"
    assert result["replies"][0]["data"]["data"]["text"] == "js"
    assert result["reoffer_status"] == 202


def test_candidates_that_come_before_the_offer_are_applied_with_it(ns, srv):
    result = raw(ns, srv, "early_candidates")
    assert result["candidates_status"] == 202
    assert result["offer_status"] == 202
    assert result["frames"] >= 5


def test_a_peer_that_never_completes_ice_is_dropped_at_the_negotiation_timeout(ns, srv):
    result = raw(ns, srv, "never_connects", "3")
    assert result["offer_status"] == 202
    assert result["answer_status"] == 200
    assert result["after_status"] == 410
    assert "negotiation timeout" in result["after"]["error"]["message"]
    assert result["stats"]["peers"] == 0


def test_more_peers_than_the_limit_are_refused_and_the_others_keep_streaming(ns, srv):
    result = raw(ns, srv, "too_many", str(OPTIONS["max_peers"]))
    assert result["status"] == 429
    assert result["body"]["error"]["code"] == "too_many_peers"
    assert all(frames >= 5 for frames in result["frames"])


def test_every_client_is_told_when_the_session_ends(ns, srv):
    result = raw(ns, srv, "session_end")
    assert result["stopped"] == 200
    assert result["v1"] == ["test over"]
    assert {"scope": "runtime", "data": {"type": "sessionEnded", "data": {"reason": "test over"}}} in result[
        "v0"
    ]


def test_a_peer_that_vanishes_is_freed_after_the_ping_timeout(ns, srv):
    before = srv.sockets()
    result = raw(ns, srv, "vanish")
    sid = result["session_id"]
    deadline = time.monotonic() + 15
    peers: list[dict] = []
    while time.monotonic() < deadline:
        stats = raw(ns, srv, "get", f"/sessions/{sid}/transport/webrtc/stats")["body"]
        peers = peer_stats(stats)
        if peers and all(p["state"] == "closed" for p in peers):
            break
        time.sleep(0.5)
    assert peers, "the server never saw the peer"
    assert all(p["state"] == "closed" for p in peers), peers
    assert "ping timeout" in peers[0]["close_reason"]
    session = raw(ns, srv, "get", f"/sessions/{sid}/stats")["body"]
    assert session["runtime"]["clients"] == 0
    # Its sockets are closed with it (the peer connection was released, not leaked).
    deadline = time.monotonic() + 10
    while srv.sockets() > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert srv.sockets() <= before


def heap_trims(ns: NetNs, srv: Server) -> float:
    """The server's C heap trims so far (its /metrics)."""
    text = raw(ns, srv, "get", "/metrics")["body"]
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("reactor_heap_trims_total")
    )


def test_a_peer_whose_channels_close_is_dropped_at_once_not_at_the_ping_timeout(ns, srv):
    trims = heap_trims(ns, srv)
    result = raw(ns, srv, "leave")
    assert result["frames"] >= 5
    sid = result["session_id"]
    peers: list[dict] = []
    for _ in range(40):  # bounded; the reason tells a drop on the channels from the 2 s ping timeout
        peers = peer_stats(raw(ns, srv, "get", f"/sessions/{sid}/transport/webrtc/stats")["body"])
        if peers and all(p["state"] == "closed" for p in peers):
            break
        time.sleep(0.05)
    assert peers and all(p["state"] == "closed" for p in peers), peers
    assert "closed its channels" in peers[0]["close_reason"], peers[0]["close_reason"]
    # The session goes on; the heap is trimmed after the peer's release (reactor_engine.heap).
    for _ in range(40):  # bounded: 1 s after the release, on a worker thread
        if heap_trims(ns, srv) > trims:
            break
        time.sleep(0.1)
    assert heap_trims(ns, srv) > trims


@pytest.fixture(scope="module")
def patient(ns: NetNs) -> Iterator[Server]:
    """A server whose ping timeout is long, so libwebrtc's own disconnect is seen before the drop."""
    with server(ns, port=8081, webrtc={**OPTIONS, "ping_timeout": 120.0}, model_config=SMALL) as running:
        yield running


def test_a_vanished_peer_gets_no_more_media_once_libwebrtc_reports_the_link_down(ns, patient):
    result = raw(ns, patient, "vanish")
    sid = result["session_id"]
    path = f"/sessions/{sid}/transport/webrtc/stats"
    try:
        peers: list[dict] = []
        for _ in range(60):  # bounded: ICE reports the link down ~2.5-5 s after the last packet
            peers = peer_stats(raw(ns, patient, "get", path)["body"])
            if peers and peers[0]["state"] == "disconnected":
                break
            time.sleep(0.5)
        assert peers and peers[0]["state"] == "disconnected", peers
        assert peers[0]["disconnects"] == 1 and peers[0]["paused"] is True
        pushed = peers[0]["video"]["frames_pushed"]
        assert pushed >= 5  # it was streaming when it vanished
        time.sleep(1.0)  # 30 frames at the model's rate: none may be pushed to the vanished client
        later = peer_stats(raw(ns, patient, "get", path)["body"])[0]
        assert later["state"] == "disconnected" and later["video"]["frames_pushed"] == pushed, later
        assert "disconnected: its media pauses" in patient.log(200)
    finally:
        raw(ns, patient, "post", "/stop_session")
