"""Client media over the WebSocket protocol: camera frames in and transformed frames out, audio both ways,
and every kind of bad input answered with an error while the session goes on.

The server is the http app on loopback serving ``tests/media_model.py`` (the camera inverted, a 440 Hz
tone out, the microphone heard), driven by ``reactor_engine.client``.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import uvicorn
from media_model import AUDIO_RATE, TONE_HZ, client_frame, output_index, peak_hz
from PIL import Image

from reactor_engine import Engine
from reactor_engine.client import Frame, ReactorClient, StreamConnection
from reactor_engine.runtimes.http import _Server
from reactor_engine.runtimes.protocol import FrameHeader
from reactor_engine.transports.app import HttpApp, HttpOptions

MODEL = str(__import__("pathlib").Path(__file__).with_name("media_model.py"))
ENGINE = {
    "max_width": 320, "max_height": 240, "width": 320, "height": 240, "codec": "jpeg",
    "ring_policy": "drop_oldest", "input_max_width": 640, "input_max_height": 480,
    "input_max_bytes": 200_000, "orphan_timeout": 30.0,
}  # fmt: skip


class RunningServer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runtime = HttpApp(engine, HttpOptions())
        urls: list[str] = []
        config = uvicorn.Config(
            self.runtime.app, host="127.0.0.1", port=0, ws="websockets-sansio", lifespan="off",
            log_config=None, timeout_graceful_shutdown=10, ws_max_size=4 << 20,
        )  # fmt: skip
        self.server = _Server(config, self.runtime, urls.append)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not urls and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert urls, "the test server did not start"
        self.client = ReactorClient(urls[0], timeout=10.0)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the test server did not stop"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = RunningServer(Engine(MODEL, engine_config=ENGINE))
    yield running
    running.stop()
    running.engine.close()


@pytest.fixture
def stream(server: RunningServer) -> Iterator[StreamConnection]:
    sid = server.client.create_session()
    with server.client.connect(sid) as connection:
        yield connection
    server.client.delete_session(sid)


def decode(frame: Frame) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(frame.data)).convert("RGB"))


def drain(stream: StreamConnection, seconds: float) -> list[tuple[Frame, int]]:
    """Read for ``seconds``; the video frames received, each with its arrival time (ns)."""
    got: list[tuple[Frame, int]] = []
    deadline = time.monotonic() + seconds
    for _ in range(10_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            message = stream.recv(remaining)
        except TimeoutError:
            break
        if isinstance(message, Frame):
            if not message.is_audio:
                got.append((message, message.received_ns))
        else:
            stream.messages.append(message)
    return got


def errors(stream: StreamConnection) -> dict[str, dict[str, Any]]:
    return {m["code"]: m for m in stream.messages if m.get("type") == "error"}


def wait_error(stream: StreamConnection, code: str, seconds: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while code not in errors(stream) and time.monotonic() < deadline:
        drain(stream, 0.1)
    found = errors(stream)
    assert code in found, f"no {code!r} error; got {found}"
    return found[code]


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def test_the_hello_lists_the_tracks_with_their_indices(stream):
    tracks = {t["name"]: t for t in stream.hello["tracks"]}
    assert tracks["webcam"]["direction"] == "sendonly" and tracks["webcam"]["kind"] == "video"
    assert tracks["mic"]["direction"] == "sendonly" and tracks["mic"]["kind"] == "audio"
    assert tracks["voice"]["direction"] == "recvonly" and tracks["main_video"]["direction"] == "recvonly"
    assert [t["index"] for t in stream.hello["tracks"]] == list(range(len(tracks)))
    # Audio tracks say the rate and channels they take (a client sends the microphone at that rate).
    audio = [t for t in stream.hello["tracks"] if t["kind"] == "audio"]
    assert audio and all(t["rate"] == 48000 and t["channels"] == 1 for t in audio), audio
    assert stream.hello["max_media_bytes"] == ENGINE["input_max_bytes"] + 88


def test_camera_frames_come_back_transformed_in_order(stream):
    sent_at: dict[int, int] = {}
    received: list[tuple[int, int]] = []  # (input index, arrival ns)
    for index in range(90):
        sent_at[index] = time.monotonic_ns()
        assert stream.send_frame("webcam", client_frame(index), index=index) == index
        for frame, arrived in drain(stream, 1 / 30):
            found = output_index(decode(frame))
            if found is not None:
                received.append((found, arrived))
    for frame, arrived in drain(stream, 0.5):
        found = output_index(decode(frame))
        if found is not None:
            received.append((found, arrived))
    indices = [index for index, _ in received]
    assert len(set(indices)) >= 30, f"only {len(set(indices))} of 90 frames came back transformed"
    assert indices == sorted(indices), f"frames out of order: {indices}"
    assert set(indices) <= set(sent_at)
    # Latency from each frame's send to the first output made from it.
    first: dict[int, int] = {}
    for index, arrived in received:
        first.setdefault(index, arrived)
    latency = [(arrived - sent_at[index]) / 1e6 for index, arrived in first.items()]
    print(
        f"\nWS input->output latency over {len(latency)} frames: p50 {percentile(latency, 50)} ms, "
        f"p99 {percentile(latency, 99)} ms"
    )
    assert not errors(stream), errors(stream)


def test_the_models_tone_is_heard_at_the_client(stream):
    voice = stream.track_index("voice")
    chunks = [stream.next_audio(timeout=5) for _ in range(40)]
    assert all(c.codec == "pcm_s16le" and c.track == voice for c in chunks)
    assert all(c.rate == AUDIO_RATE and c.channels == 1 for c in chunks)
    numbers = [c.index for c in chunks]
    assert numbers == list(range(numbers[0], numbers[0] + len(chunks))), numbers  # none missed
    pts = [c.pts_ns for c in chunks]
    assert pts == sorted(pts)
    samples = np.concatenate([c.samples()[0] for c in chunks])
    assert samples.size >= 40 * AUDIO_RATE // 50 - AUDIO_RATE // 50
    found = peak_hz(samples[-AUDIO_RATE // 2 :], AUDIO_RATE)
    print(f"\nWS audio out: peak {found:.1f} Hz over {samples.size} samples")
    assert abs(found - TONE_HZ) < 10, found


def test_a_tone_sent_in_is_found_by_the_model(stream):
    block = AUDIO_RATE // 50
    t = np.arange(AUDIO_RATE, dtype=np.float64) / AUDIO_RATE
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    for start in range(0, tone.size, block):
        stream.send_audio("mic", tone[start : start + block], AUDIO_RATE)
        drain(stream, 0.018)
    drain(stream, 0.2)
    heard = stream.send_command("heard")
    print(f"\nWS audio in: the model heard {heard}")
    assert heard["samples"] >= AUDIO_RATE // 2
    assert abs(heard["peak_hz"] - 1000.0) < 10, heard
    assert not errors(stream), errors(stream)


def raw_message(
    stream: StreamConnection, codec: str, track: int, payload: bytes, width: int = 0, height: int = 0
):
    header = FrameHeader(codec, 0, width, height, len(payload), 0, 0, 0, 0, 0, 0, 0, track=track)
    stream.send_text(header.pack() + payload)


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(client_frame(7, width, height)).save(out, format="JPEG", quality=80)
    return out.getvalue()


def test_bad_input_is_refused_with_errors_that_say_what_was_expected(server, stream):
    webcam, mic = stream.track_index("webcam"), stream.track_index("mic")
    output = stream.track_index("main_video")
    good = jpeg(320, 240)

    raw_message(stream, "jpeg", 99, good)
    error = wait_error(stream, "unknown_track")
    assert "webcam" in error["message"] and "mic" in error["message"]

    raw_message(stream, "jpeg", output, good)
    error = wait_error(stream, "not_an_input")
    assert "main_video" in error["message"] and "webcam" in error["message"]

    raw_message(stream, "raw", webcam, b"\x00" * 300)
    assert "jpeg" in wait_error(stream, "codec_mismatch")["message"]

    raw_message(stream, "pcm_s16le", mic, b"\x00\x00" * 441, width=44100, height=1)
    error = wait_error(stream, "rate_mismatch")
    assert "48000" in error["message"] and "44100" in error["message"]

    raw_message(stream, "jpeg", webcam, b"\xff" * 250_000)
    assert "200088" in wait_error(stream, "message_too_large")["message"]

    stream.send_text(b"RFRM garbage")
    wait_error(stream, "invalid_frame")

    raw_message(stream, "jpeg", webcam, good[:700] + bytes(range(256)) * 4 + good[-2:])  # corrupt scan data
    corrupt = wait_error(stream, "decode_error")
    assert "webcam" in corrupt["message"] and "orrupt" in corrupt["message"], corrupt

    stream.messages.clear()
    raw_message(stream, "jpeg", webcam, jpeg(800, 600))  # bigger than the 640x480 input slots
    too_big = wait_error(stream, "frame_too_large")
    assert "800" in too_big["message"] and "640" in too_big["message"], too_big

    # A flood of one bad kind is counted and reported at most once a second.
    stream.messages.clear()
    for _ in range(50):
        raw_message(stream, "jpeg", 99, good)
    drain(stream, 0.3)
    assert len([m for m in stream.messages if m.get("code") == "unknown_track"]) <= 1

    # The session went on: a good frame still comes back transformed.
    seen = None
    for index in range(200, 260):
        stream.send_frame("webcam", client_frame(index), index=index)
        for frame, _ in drain(stream, 0.05):
            seen = output_index(decode(frame)) or seen
        if seen is not None:
            break
    assert seen is not None and seen >= 200
    webcam_stats = server.client.session_stats(stream.hello["session_id"])["inputs"]["webcam"]
    print(f"\nWS bad input: session input stats {webcam_stats}")
    assert webcam_stats["counters"]["jpeg"]["decode_errors"] >= 1
    assert webcam_stats["counters"]["jpeg"]["frames_refused"] >= 1
    metrics = server.client.metrics()
    assert 'reactor_media_refused_total{code="unknown_track",kind="ws"} 51\n' in metrics.replace(".0\n", "\n")
    assert 'reactor_input_decoder_total{codec="jpeg",counter="decode_errors",track="webcam"}' in metrics
    assert 'reactor_audio_chunks_sent_total{track="voice"}' in metrics
