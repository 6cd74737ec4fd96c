"""Client media over WebRTC: reactor-sdk 1.13 publishes a camera and a microphone, the model's frames and
tone come back; a hand-driven peer sends corrupt VP8 and publishes an undeclared track.

One server (``tests/webrtc_server.py`` serving ``tests/media_model.py``: the camera inverted, a 440 Hz
tone out, the microphone heard) runs inside a network namespace made for this module; each test runs
``webrtc_media_client.py`` there and reads what the client and the server's stats report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import NetNs
from webrtc_helpers import Server, run_client, server, stun_namespace

pytest.importorskip("reactor_webrtc")
pytest.importorskip("reactor_sdk")

MODEL = str(Path(__file__).with_name("media_model.py"))
ENGINE = {
    "max_width": 320, "max_height": 240, "width": 320, "height": 240, "bitrate": 600_000,
    "input_max_width": 640, "input_max_height": 480,
}  # fmt: skip


@pytest.fixture(scope="module")
def ns() -> Iterator[NetNs]:
    with stun_namespace() as namespace:
        yield namespace


@pytest.fixture(scope="module")
def srv(ns: NetNs) -> Iterator[Server]:
    with server(ns, model=[MODEL], engine=ENGINE) as running:
        yield running


def media(ns: NetNs, srv: Server, scenario: str, seconds: float = 4.0) -> dict[str, Any]:
    return run_client(ns, "webrtc_media_client.py", [scenario, srv.url, str(seconds)], timeout=90, server=srv)


@pytest.fixture(scope="module")
def sdk_run(ns: NetNs, srv: Server) -> dict[str, Any]:
    """One reactor-sdk session of 5 s: camera and microphone in, video and tone out."""
    return media(ns, srv, "sdk", 5.0)


def peer_media(result: dict[str, Any]) -> dict[str, Any]:
    peers = [c["peer"] for c in result["webrtc_stats"]["connections"] if "peer" in c]
    assert peers, result["webrtc_stats"]
    return dict(peers[-1]["media"])


def test_the_sdk_publishes_a_camera_and_gets_it_back_transformed_in_order(sdk_run):
    result = sdk_run
    print(f"\nWebRTC (reactor-sdk 1.13) input->output latency: {result['latency_ms']}, "
          f"{result['distinct']} of {result['sent']} frames back")  # fmt: skip
    assert result["published"] == [True, True]
    assert result["distinct"] >= result["sent"] // 3, result
    assert result["in_order"], result
    stats = peer_media(result)
    webcam = stats["inputs"]["webcam"]
    assert webcam["frames"] >= result["distinct"] and webcam["keyframes"] >= 1
    assert sorted(stats["published"]) == ["mic", "webcam"]
    # The undeclared name was refused by the server, naming what the model takes.
    refusal = result["undeclared_publish"]
    assert refusal is not None and "webcam" in refusal and "mic" in refusal, refusal


def test_audio_goes_both_ways_over_webrtc(sdk_run):
    result = sdk_run
    print(
        f"\nWebRTC audio: heard at the client {result['audio_peak_hz']} Hz ({result['audio_samples']} "
        f"samples, {result['audio_formats']}); the model heard {result['heard']}"
    )
    assert result["audio_peak_hz"] is not None and abs(result["audio_peak_hz"] - 440.0) < 10, result
    heard = result["heard"].get("data", result["heard"])  # reactor-sdk gives the reply as {"type", "data"}
    assert heard["samples"] >= 48000, heard
    assert abs(heard["peak_hz"] - 1000.0) < 10, heard
    stats = peer_media(result)
    assert stats["audio_out"]["voice"]["chunks_pushed"] >= 100
    assert stats["inputs"]["mic"]["blocks"] >= 100


def test_corrupt_vp8_is_counted_a_keyframe_is_asked_for_and_decoding_goes_on(ns, srv):
    result = media(ns, srv, "raw", 5.0)
    publish = {entry["request_id"]: entry for entry in result["publish"]}
    assert publish["ctrl_1"]["payload"] == "publish_track"
    assert publish["ctrl_2"]["error"]["code"] == "publish_refused"
    assert "webcam" in publish["ctrl_2"]["error"]["message"]
    assert result["garbled"] >= 3
    webcam = result["session_stats"]["inputs"]["webcam"]["counters"]["vp8"]
    stats = peer_media(result)["inputs"]["webcam"]
    print(f"\nWebRTC corrupt VP8: {result['garbled']} garbled; decoder {webcam}; receiver {stats}; "
          f"sender {result['sender']}; errors told {result['errors_heard']}")  # fmt: skip
    assert webcam["decode_errors"] + webcam["frames_discarded"] >= 1, webcam
    assert stats["keyframe_requests"] >= 1, stats
    assert stats["keyframes"] >= 2, stats  # the sender answered with a key frame
    assert "decode_error" in result["errors_heard"], result["errors_heard"]  # told on the control channel
    # Decoding went on: most frames were decoded, not only those before the first corrupt one.
    assert webcam["frames_decoded"] >= result["frames_out"] // 2, (webcam, result["frames_out"])
