"""Video input: declarations and capabilities, the embedded round trip (push_frame -> model -> packets),
latest()/read() semantics, on_media on the session thread, floods, bad input, and session isolation."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from reactor_engine import (
    AudioIn,
    Engine,
    FrameError,
    InvalidArgumentError,
    MediaBundle,
    NoActiveSession,
    VideoIn,
    VideoInputTrack,
    VideoModel,
    VideoOut,
    command,
    get_ctx,
    model,
)

H, W = 48, 64
BLOCK = 8  # the stamped index: one 8x8 block per bit along the top row (8 bits)
ENGINE = {
    "max_width": W,
    "max_height": H,
    "width": W,
    "height": H,
    "codec": "raw",
    "ring_policy": "block",
    "stop_grace": 5.0,
    "input_max_width": W,
    "input_max_height": H,
    "input_slots": 4,
}


def stamped(index: int) -> np.ndarray:
    """A frame carrying ``index`` in its top row of blocks, over a horizontal gradient."""
    frame = np.empty((H, W, 3), np.uint8)
    frame[:] = np.linspace(20, 200, W, dtype=np.uint8)[None, :, None]
    for bit in range(W // BLOCK):
        frame[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if index >> bit & 1 else 0
    return frame


def stamp_of(frame: np.ndarray) -> int:
    bits = [frame[2:6, b * BLOCK + 2 : b * BLOCK + 6].mean() > 127 for b in range(W // BLOCK)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def decode(packet) -> np.ndarray:
    data = packet.tobytes()
    if packet.codec == "jpeg":
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.frombuffer(data, np.uint8).reshape(packet.height, packet.width, 3)


def _invert(m):
    ctx = get_ctx()
    while not ctx.should_stop():
        for frame in m.webcam.read(n=4, mode="fifo", timeout=0.5):
            m.main_video.emit(255 - frame.array)


@model(name="media-invert")
class Invert(VideoModel):
    main_video = VideoOut(default=True)
    webcam = VideoIn()

    def __init__(self, config):
        self.job = None
        self.result = None
        self.go = threading.Event()
        self.notes = []

    @command("note")
    def note(self, text: str) -> dict:
        self.notes.append(text)
        return {"noted": text}

    def start_session(self):
        self.result = None
        self.result = (self.job or _invert)(self)


@pytest.fixture(scope="module")
def engine():
    with Engine(Invert, engine_config=ENGINE) as eng:
        yield eng


def _start(engine, job):
    engine.model.job = job
    engine.model.go.clear()
    return engine.session()


def _wait_message(session, key, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        message = session.next_message(timeout=max(0.0, end - time.monotonic()))
        if message and message["type"] == "message" and key in message["data"]:
            return message["data"]
    raise AssertionError(f"no message with {key!r} within {timeout} s")


# -- declarations ---------------------------------------------------------------------------------


def test_declarations_are_listed_with_directions_in_declaration_order():
    @model(name="media-decl")
    class Declared(VideoModel):
        webcam = VideoIn(rate=30)
        mic = AudioIn()
        main_video = VideoOut(default=True)

        def start_session(self):
            pass

    assert Declared.capabilities()["tracks"] == [
        {"name": "webcam", "kind": "video", "direction": "sendonly"},
        {"name": "mic", "kind": "audio", "direction": "sendonly"},
        {"name": "main_video", "kind": "video", "direction": "recvonly"},
    ]
    assert Declared.get_tracks() == Declared.capabilities()["tracks"]
    assert Declared.webcam.name == "webcam" and Declared.webcam.rate == 30.0
    assert isinstance(Declared.__dict__["webcam"], VideoIn)
    with pytest.raises(TypeError, match="track 'webcam' is an input"):
        Declared.webcam.emit(None)
    with pytest.raises(NoActiveSession, match="not attached to a running engine"):
        Declared.webcam.latest()


def test_a_model_with_inputs_only_still_gets_the_default_video_output_first():
    @model(name="media-inputs-only")
    class InputsOnly(VideoModel):
        webcam = VideoIn()

        def start_session(self):
            pass

    tracks = InputsOnly.capabilities()["tracks"]
    assert [t["name"] for t in tracks] == ["main_video", "webcam"]
    assert tracks[0]["direction"] == "recvonly"


def test_a_model_with_video_outputs_only_is_unchanged(small_engine_config):
    @model(name="media-outputs-only")
    class OutputsOnly(VideoModel):
        preview = VideoOut()
        main = VideoOut(default=True)

        def start_session(self):
            pass

    assert OutputsOnly.capabilities()["tracks"] == [
        {"name": "preview", "kind": "video", "direction": "recvonly"},
        {"name": "main", "kind": "video", "direction": "recvonly"},
    ]
    with Engine(OutputsOnly, engine_config=small_engine_config) as engine:
        assert engine.inputs == {} and engine.audio_outputs == {}
        assert engine.spec.default_track == "main"
        assert set(engine.stats()) == {"preview", "main"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: VideoIn(rate=-1), "VideoIn rate must be a number >= 0"),
        (lambda: AudioIn(channels=0), "AudioIn channels must be an int from 1 to 8"),
    ],
)
def test_bad_declarations_fail_at_class_definition(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_running_track_is_self_name_and_get_track(engine):
    def job(m):
        ctx = get_ctx()
        return m.webcam is ctx.get_track("webcam"), type(m.webcam)

    session = _start(engine, job)
    assert session.wait(10)
    assert engine.model.result == (True, VideoInputTrack)
    assert engine.inputs["webcam"] is engine.model.webcam


# -- the embedded round trip ----------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_embedded_round_trip_inverts_each_frame_in_index_order(codec):
    latencies = []
    config = {**ENGINE, "codec": codec, "max_fps": 0}  # no pacing cap: the latency is the pipeline's own
    with Engine(Invert, engine_config=config) as engine, engine.session() as session:
        for i in range(40):
            sent = stamped(i)
            pushed = time.monotonic_ns()
            assert session.push_frame("webcam", sent) == i  # the ring's index, from 0 each session
            with session.next_packet(timeout=10) as packet:
                out = decode(packet)
            latencies.append(time.monotonic_ns() - pushed)
            assert stamp_of(255 - out) == i  # in order, none lost (lock-step)
            tolerance = 2 if codec == "raw" else 12
            assert np.abs(out[BLOCK:].astype(int) - (255 - sent[BLOCK:].astype(int))).mean() < tolerance
        stats = session.stats()["inputs"]["webcam"]
        assert stats["counters"]["ring"]["frames_in"] == 40
        assert stats["counters"]["ring"]["frames_read"] == 40
        assert stats["drops"] == 0
    p50, p99 = np.percentile(np.array(latencies) / 1e6, [50, 99])
    print(
        f"\n[latency] embedded push_frame -> {codec} packet: p50 {p50:.2f} ms, p99 {p99:.2f} ms (40 frames)"
    )


def test_jpeg_input_through_the_native_decoder_round_trips(engine):
    session = _start(engine, None)
    buffer = io.BytesIO()
    Image.fromarray(stamped(5)).save(buffer, "JPEG", quality=95)
    assert session.push_encoded("webcam", buffer.getvalue(), "jpeg") in ("queued", "dropped_oldest")
    with session.next_packet(timeout=10) as packet:
        assert stamp_of(255 - decode(packet)) == 5
    with pytest.raises(
        InvalidArgumentError, match="track 'webcam' decodes vp8 and jpeg input; got codec 'h264'"
    ):
        session.push_encoded("webcam", b"\x00" * 16, "h264")
    session.stop()
    decoders = session.stats()["inputs"]["webcam"]["counters"]["jpeg"]
    assert decoders["frames_decoded"] == 1


# -- reading on the session thread ----------------------------------------------------------------


def test_latest_is_none_before_the_first_frame_then_a_read_only_view(engine):
    def job(m):
        ctx = get_ctx()
        before = m.webcam.latest()
        ctx.send({"ready": True})
        frames = m.webcam.read(timeout=10)
        view = m.webcam.latest()
        try:
            view[0, 0, 0] = 1
            wrote = True
        except ValueError:
            wrote = False
        meta = m.webcam.latest_frame()
        return before, len(frames), view.shape, view.flags.writeable, wrote, stamp_of(view), meta.index

    session = _start(engine, job)
    _wait_message(session, "ready")
    session.push_frame("webcam", stamped(3))
    assert session.wait(10)
    assert engine.model.result == (None, 1, (H, W, 3), False, False, 3, 0)


def test_fifo_reads_oldest_first_and_latest_skips_to_the_newest(engine):
    def job(m):
        ctx = get_ctx()
        ctx.send({"ready": True})
        m.go.wait(10)
        fifo = [stamp_of(f.array) for f in m.webcam.read(n=3, mode="fifo", timeout=5)]
        ctx.should_stop()  # a poll point: the frames read are released (only the newest stays held)
        m.go.clear()
        ctx.send({"again": True})
        m.go.wait(10)
        latest = m.webcam.read(n=3, mode="latest", timeout=5)
        return fifo, [stamp_of(f.array) for f in latest], [f.index for f in latest]

    session = _start(engine, job)
    _wait_message(session, "ready")
    for i in (10, 11, 12):
        session.push_frame("webcam", stamped(i))
    engine.model.go.set()
    _wait_message(session, "again")
    for i in (20, 21, 22):
        session.push_frame("webcam", stamped(i))
    engine.model.go.set()
    assert session.wait(10)
    assert engine.model.result == ([10, 11, 12], [22], [5])
    ring = session.stats()["inputs"]["webcam"]["counters"]["ring"]
    assert (ring["frames_skipped"], ring["frames_dropped"]) == (2, 0)


def test_a_flood_drops_the_oldest_counted_and_the_session_goes_on(engine):
    def job(m):
        ctx = get_ctx()
        ctx.send({"ready": True})
        m.go.wait(10)
        newest = [f.index for f in m.webcam.read(timeout=5)]
        ctx.send({"took": newest})
        _invert(m)
        return newest

    session = _start(engine, job)
    _wait_message(session, "ready")
    for i in range(100):
        session.push_frame("webcam", stamped(i % 256))
    engine.model.go.set()
    assert _wait_message(session, "took") == {"took": [99]}
    session.push_frame("webcam", stamped(200))
    with session.next_packet(timeout=10) as packet:
        assert stamp_of(255 - decode(packet)) == 200
    assert session.state == "streaming"
    session.stop()
    assert engine.model.result == [99]
    stats = session.stats()["inputs"]["webcam"]
    assert stats["counters"]["ring"]["frames_dropped"] >= 90
    assert stats["drops"] >= 90
    assert engine.stats()["webcam"]["ring"]["frames_dropped"] >= 90


def test_an_oversize_frame_is_refused_with_both_sizes_and_counted(engine):
    session = _start(engine, None)
    with pytest.raises(FrameError, match=r"65x48 is larger than the input slots of 64x48"):
        session.push_frame("webcam", np.zeros((48, 65, 3), np.uint8))
    with pytest.raises(FrameError, match=r"frame has dtype float32; input track 'webcam' takes"):
        session.push_frame("webcam", np.zeros((48, 64, 3), np.float32))
    with pytest.raises(FrameError, match=r"shape \(48, 64, 4\).*drop the alpha channel"):
        session.push_frame("webcam", np.zeros((48, 64, 4), np.uint8))
    session.push_frame("webcam", stamped(7))
    with session.next_packet(timeout=10) as packet:
        assert stamp_of(255 - decode(packet)) == 7
    session.stop()
    assert session.stats()["inputs"]["webcam"]["refused"] == 3


def test_undeclared_track_names_list_the_declared_inputs(engine):
    def job(m):
        try:
            get_ctx().get_track("camera")
        except InvalidArgumentError as exc:
            return str(exc)

    session = _start(engine, job)
    with pytest.raises(
        InvalidArgumentError, match=r"no input track named 'camera'; .*inputs are: webcam \(video\)"
    ):
        session.push_frame("camera", stamped(0))
    with pytest.raises(InvalidArgumentError, match="no input track named 'camera'"):
        session.push_audio("camera", np.zeros(10, np.int16))
    assert session.wait(10)
    assert engine.model.result == (
        "no track named 'camera'; this model's tracks are: main_video, webcam (video input)"
    )
    with pytest.raises(NoActiveSession, match="has ended"):
        session.push_frame("webcam", stamped(0))


def test_a_blocked_read_applies_commands_and_returns_on_stop(engine):
    def job(m):
        get_ctx().send({"reading": True})
        return m.webcam.read(timeout=None)

    session = _start(engine, job)
    _wait_message(session, "reading")
    assert session.send_command("note", {"text": "while reading"}, timeout=10) == {"noted": "while reading"}
    assert session.stop() == "ended"
    assert engine.model.result == []
    assert engine.model.notes[-1] == "while reading"


def test_the_next_session_sees_no_input_of_the_previous_one(engine):
    def idle(m):
        ctx = get_ctx()
        ctx.send({"ready": True})
        while not ctx.should_stop():
            ctx.wait(0.05)

    first = _start(engine, idle)
    _wait_message(first, "ready")
    for i in range(3):
        first.push_frame("webcam", stamped(i))
    first.stop()

    def job(m):
        ctx = get_ctx()
        state = (m.webcam.latest(), m.webcam.read(timeout=0))
        ctx.send({"ready": True})
        frames = m.webcam.read(timeout=10)
        return state, [(f.index, stamp_of(f.array)) for f in frames]

    second = _start(engine, job)
    _wait_message(second, "ready")
    second.push_frame("webcam", stamped(77))
    assert second.wait(10)
    assert engine.model.result == ((None, []), [(0, 77)])


# -- on_media --------------------------------------------------------------------------------------


@model(name="media-hook")
class Hooked(VideoModel):
    webcam = VideoIn()
    mic = AudioIn()

    def __init__(self, config):
        self.calls = []

    def on_media(self, bundle: MediaBundle) -> None:
        video = bundle.get("webcam")
        audio = bundle.audio.get("mic")
        self.calls.append(
            (
                threading.current_thread().name,
                sorted(bundle.new),
                None if video is None else stamp_of(video),
                None if audio is None else audio.shape,
            )
        )

    def start_session(self):
        ctx = get_ctx()
        self.session_thread = threading.current_thread().name
        while not ctx.should_stop():
            ctx.wait(0.005)


def test_on_media_is_called_on_the_session_thread_with_the_newest_input():
    with Engine(Hooked, engine_config=ENGINE) as engine, engine.session() as session:
        model_ = engine.model
        for i, count in ((1, 1), (2, 2)):
            session.push_frame("webcam", stamped(i))
            end = time.monotonic() + 10
            while len(model_.calls) < count and time.monotonic() < end:
                time.sleep(0.005)
        session.push_audio("mic", np.zeros(480, np.int16))
        end = time.monotonic() + 10
        while len(model_.calls) < 3 and time.monotonic() < end:
            time.sleep(0.005)
    calls = model_.calls
    assert [c[1:] for c in calls] == [
        (["webcam"], 1, None),
        (["webcam"], 2, None),
        (["mic"], 2, (1, 480)),  # no new frame: the bundle still holds the newest one
    ]
    assert {c[0] for c in calls} == {model_.session_thread}
    assert model_.session_thread.startswith("reactor-session-")
    assert threading.current_thread().name not in {c[0] for c in calls}


def test_seed_era_names_import_from_reactor_runtime():
    from reactor_engine._compat import install_seed_api

    install_seed_api()
    import reactor_runtime
    import reactor_runtime.tracks

    assert reactor_runtime.VideoIn is VideoIn and reactor_runtime.MediaBundle is MediaBundle
    assert reactor_runtime.tracks.AudioIn is AudioIn and reactor_runtime.AudioOut.direction == "recvonly"
