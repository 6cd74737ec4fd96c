"""The published reactor-sdk 1.13 (PyPI, unmodified, local mode) against the WebRTC transport.

The server is the http app (the Reactor local protocol included) serving ``webrtc_model.py``; it runs
with the clients inside a network namespace made for this module, with a local STUN responder. The
clients are separate processes (``webrtc_sdk_client.py``); what they measured comes back as JSON.
Times (READY, first frame, latency) are reported on the terminal, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from netns import NetNs
from webrtc_helpers import HERE, Server, cli_server, raw, sdk, server, stun_namespace

pytest.importorskip("reactor_sdk")
pytest.importorskip("reactor_webrtc")


@pytest.fixture(scope="module")
def ns() -> Iterator[NetNs]:
    with stun_namespace() as namespace:
        yield namespace


def report(name: str, values: dict) -> None:
    print(f"\n[webrtc] {name}: {json.dumps(values)}")


def running_session(ns: NetNs, srv: Server, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = raw(ns, srv, "get", "/session")
        if reply["status"] == 200:
            return str(reply["body"]["session_id"])
        time.sleep(0.2)
    raise AssertionError(f"no session started:\n{srv.log()}")


def result_of(proc: subprocess.Popen[str], timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
    raise AssertionError(f"client gave no result (exit {proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}")


def background_client(ns: NetNs, srv: Server, *args: str) -> subprocess.Popen[str]:
    return ns.python(
        [str(HERE / "webrtc_sdk_client.py"), args[0], srv.url, *args[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_reactor_sdk_113_streams_720p_answers_commands_and_reconnects(ns):
    # The real command, with its defaults (no STUN server: the clients' host candidates suffice here).
    with cli_server(ns) as srv:
        result = sdk(ns, srv, "stream", "10", timeout=120)
        session = raw(ns, srv, "get", f"/sessions/{result['session_id']}/stats")["body"]
    report(
        "reactor-sdk 1.13, 720p30, 10 s",
        {
            "ready_s": result["ready_s"],
            "first_frame_s": result["first_frame_s"],
            "emitted": result["emitted"],
            "decoded": result["decoded"],
            "decoded_ratio": round(result["decoded"] / max(1, result["emitted"]), 4),
            "latency_ms": result["latency_ms"],
            "reconnect_ready_s": result["reconnect_ready_s"],
        },
    )
    assert result["first_frame"]
    assert result["sizes"] == [[1280, 720]]
    assert result["emitted"] >= 200  # 10 s at 30 fps, with room for a loaded machine
    assert result["decoded"] >= 0.95 * result["emitted"]
    assert result["indices_increasing"]
    # Commands: the model's reply, a bodyless ACK, then validation and unknown-command errors.
    assert result["echo"] == {"type": "echo", "data": {"text": "hi", "level": 0}}
    assert result["set_level"] is None
    assert "invalid_arguments" in result["bad_command"]
    assert "less than or equal to 10" in result["bad_command"]
    assert "unknown_command" in result["unknown_command"]
    assert result["client_stats"]["frames_decoded"] > 0
    assert result["client_stats"]["candidate_type"] == "host"
    assert result["frames_after_reconnect"]
    assert result["reconnect_session_id"] == result["session_id"]
    assert result["status_after_disconnect"] == "disconnected"
    # disconnect() stopped the session the client had started.
    assert session["end_reason"] == "stopped by the client", session


def test_a_second_client_joins_the_session_and_starts_on_a_requested_keyframe(ns):
    with server(ns, model_config={"width": 640, "height": 360}) as srv:
        first = background_client(ns, srv, "watch", "8")
        sid = running_session(ns, srv)
        time.sleep(1.0)
        joined = sdk(ns, srv, "join", sid, "1")
        stats = raw(ns, srv, "get", f"/sessions/{sid}/transport/webrtc/stats")["body"]
        watched = result_of(first, 60)
    assert joined["first_frame"]
    assert joined["session_id"] == sid
    assert watched["frames"] > 0
    videos = [c["peer"]["video"] for c in stats["connections"] if "peer" in c]
    assert len(videos) == 2
    second = videos[1]
    report(
        "second client",
        {
            "ready_s": joined["ready_s"],
            "first_frame_after_ready_s": joined["first_frame_after_ready_s"],
            "server_start_to_keyframe_s": second["first_keyframe_s"],
            "frames_skipped_before_it": second["frames_skipped"],
        },
    )
    # The joiner's first frame was a keyframe asked for when it started: at most the frame already in
    # the encoder went by first, no wait for the periodic keyframe (300 frames here).
    assert second["frames_skipped"] <= 2, second
    assert second["frames_pushed"] > 0


def test_three_peers_share_one_encode_per_frame(ns):
    with server(ns, model_config={"width": 640, "height": 360}) as srv:
        first = background_client(ns, srv, "watch", "9")
        sid = running_session(ns, srv)
        others = [background_client(ns, srv, "join", sid, "4") for _ in range(2)]
        results = [result_of(proc, 60) for proc in others]
        stats = raw(ns, srv, "get", f"/sessions/{sid}/transport/webrtc/stats")["body"]
        session = raw(ns, srv, "get", f"/sessions/{sid}/stats")["body"]
        result_of(first, 60)
    pushed = [c["peer"]["video"]["frames_pushed"] for c in stats["connections"] if "peer" in c]
    counters = session["tracks"]["main_video"]["counters"]
    report("three peers", {"frames_pushed": pushed, "counters": counters})
    assert all(r["first_frame"] for r in results)
    assert len(pushed) == 3
    # Each frame was encoded once: the encoder's count follows the frames committed, not the peers.
    assert counters["frames_encoded"] <= counters["frames_committed"]
    assert sum(pushed) > counters["frames_encoded"]  # one encode went to several peers
