"""Tracks: what emit accepts (numpy, torch, DLPack, buffers), each bad frame's message, zero-copy slots."""

from __future__ import annotations

import array
import re
import time

import numpy as np
import pytest
import torch

from reactor_engine import Engine, FrameError, NoActiveSession, VideoModel, get_ctx, model
from reactor_engine.tracks import VideoOut


@model(name="track-probe")
class TrackProbe(VideoModel):
    def __init__(self, config):
        self.job = None
        self.result = None

    def start_session(self):
        self.result = self.job(get_ctx().get_track())


@pytest.fixture(scope="module")
def engine():
    config = {
        "max_width": 64,
        "max_height": 48,
        "width": 32,
        "height": 24,
        "codec": "raw",
        "ring_policy": "block",
    }
    with Engine(TrackProbe, engine_config=config) as eng:
        yield eng


def _session(engine, job):
    engine.model.job = job
    engine.model.result = None
    session = engine.session()
    assert session.wait(10)
    frames = []
    for packet in session.packets(timeout=10):
        with packet:
            frames.append(np.frombuffer(packet.tobytes(), np.uint8).reshape(packet.height, packet.width, 3))
    return session, frames


def _error_of(engine, frame):
    session, _ = _session(engine, lambda track: track.emit(frame))
    assert session.state == "error"
    return session.error


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            np.zeros((24, 32), np.uint8),
            r"frame has shape \(24, 32\); track 'main_video' takes \(H, W, 3\) or",
        ),
        (
            np.zeros((1, 1, 24, 32, 3), np.uint8),
            r"frame has shape \(1, 1, 24, 32, 3\); track 'main_video' takes",
        ),
        (
            np.zeros((24, 32, 4), np.uint8),
            r"shape \(24, 32, 4\); .* \(drop the alpha channel: frame\[..., :3\]\)",
        ),
        (np.zeros((3, 24, 32), np.uint8), r"shape \(3, 24, 32\); .*looks channel-first"),
        (
            np.zeros((24, 32, 3), np.float32),
            r"frame has dtype float32; track 'main_video' takes .* values 0-255",
        ),
        (np.zeros((24, 32, 3), np.uint16), r"frame has dtype uint16"),
        (torch.zeros((24, 32, 3)), r"frame has dtype torch.float32; .*to\(torch.uint8\)"),
        (np.zeros((48, 65, 3), np.uint8), r"frame is 65x48 \(WxH\); track 'main_video' takes at most 64x48"),
        (np.zeros((49, 64, 3), np.uint8), r"frame is 64x49 \(WxH\); track 'main_video' takes at most 64x48"),
        (np.zeros((0, 24, 32, 3), np.uint8), r"frame batch has shape \(0, 24, 32, 3\): no frames"),
        (np.zeros((0, 32, 3), np.uint8), r"frame is 32x0; track 'main_video' takes"),
        ([[[0, 0, 0]]], r"frame is a list; track 'main_video' takes .* a numpy array, a torch tensor"),
    ],
)
def test_each_bad_frame_raises_frame_error_naming_what_the_track_takes(engine, frame, message):
    error = _error_of(engine, frame)  # the session's error: "FrameError: <message>"
    assert error.startswith("FrameError: ")
    assert re.search(message, error), error
    assert issubclass(FrameError, ValueError)


def test_a_bad_frame_raises_at_the_emit_call(engine):
    def job(track):
        with pytest.raises(FrameError, match="dtype float64"):
            track.emit(np.zeros((24, 32, 3)))
        return "raised"

    session, _ = _session(engine, job)
    assert (session.state, engine.model.result) == ("ended", "raised")


def test_a_bad_bucket_is_rejected(engine):
    assert "bucket must be a non-negative int" in _error_of_bucket(engine)


def _error_of_bucket(engine):
    session, _ = _session(engine, lambda track: track.emit(None, bucket=-1))
    return session.error


def test_numpy_strided_views_are_accepted(engine):
    base = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    view = base[::2, ::2]  # 24x32, non-contiguous
    _, frames = _session(engine, lambda track: track.emit(view))
    assert np.array_equal(frames[0], view)


def test_torch_cpu_tensors_are_accepted(engine):
    tensor = torch.randint(0, 255, (2, 24, 32, 3), dtype=torch.uint8)
    _, frames = _session(engine, lambda track: track.emit(tensor))
    assert [np.array_equal(f, t.numpy()) for f, t in zip(frames, tensor, strict=True)] == [True, True]


def test_dlpack_and_buffer_protocol_objects_are_accepted(engine):
    class DLPackOnly:
        def __init__(self, array):
            self._array = array

        def __dlpack__(self, **kwargs):
            return self._array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._array.__dlpack_device__()

    data = np.full((24, 32, 3), 77, np.uint8)
    buffer = memoryview(array.array("B", [5] * (24 * 32 * 3))).cast("B", (24, 32, 3))
    _, frames = _session(engine, lambda track: (track.emit(DLPackOnly(data)), track.emit(buffer)))
    assert int(frames[0].max()) == 77
    assert int(frames[1].min()) == int(frames[1].max()) == 5


def test_frame_context_writes_in_place_and_commits_on_exit(engine):
    def job(track):
        with track.frame() as buf:
            assert buf.shape == (24, 32, 3)
            assert buf.flags.writeable
            buf[...] = 42
        with track.frame(width=16, height=8) as buf:
            torch.from_numpy(buf).fill_(9)  # torch shares the slot's memory
        return track.latest()

    session, frames = _session(engine, job)
    assert session.state == "ended"
    assert [(f.shape, int(f.max())) for f in frames] == [((24, 32, 3), 42), ((8, 16, 3), 9)]
    assert engine.model.result is None  # slots written in place are not kept for latest()


def test_frame_context_aborts_the_slot_when_the_block_raises(engine):
    def job(track):
        before = track.ring.stats()["frames_aborted"]
        try:
            with track.frame() as buf:
                buf[...] = 1
                raise RuntimeError("generation failed")
        except RuntimeError:
            pass
        track.emit(np.full((24, 32, 3), 2, np.uint8))
        return track.ring.stats()["frames_aborted"] - before

    _, frames = _session(engine, job)
    assert engine.model.result == 1
    assert [int(f.max()) for f in frames] == [2]


def test_latest_returns_the_last_emitted_frame(engine):
    frame = np.full((2, 24, 32, 3), 3, np.uint8)
    frame[1] = 4

    def job(track):
        assert track.latest() is None
        track.emit(frame)
        return track.latest()

    _session(engine, job)
    assert np.array_equal(engine.model.result, frame[1])


def test_emit_outside_a_session_raises(engine):
    track = engine.tracks["main_video"]
    with pytest.raises(NoActiveSession):
        track.emit(None)


def test_a_declared_track_size_sets_the_black_frame(tmp_path):
    @model(name="sized-track")
    class Sized(VideoModel):
        main_video = VideoOut(default=True, width=16, height=8)

        def __init__(self, config):
            pass

        def start_session(self):
            get_ctx().get_track().emit(None)

    with Engine(Sized, engine_config={"max_width": 64, "max_height": 48, "width": 32, "height": 24}) as eng:
        session = eng.session()
        packet = session.next_packet(timeout=10)
        with packet:
            assert (packet.width, packet.height) == (16, 8)
        session.wait(10)


@pytest.mark.gpu
def test_cuda_tensors_are_accepted(engine):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA (torch.cuda.is_available())")
    tensor = torch.full((2, 24, 32, 3), 99, dtype=torch.uint8, device="cuda")
    tensor[1] = 7
    _, frames = _session(engine, lambda track: track.emit(tensor))
    assert [(int(f.min()), int(f.max())) for f in frames] == [(99, 99), (7, 7)]


def test_a_stop_interrupts_an_emit_waiting_for_its_pacing_slot():
    @model(name="slow-paced")
    class SlowPaced(VideoModel):
        def __init__(self, config):
            self.emitted = 0

        def start_session(self):
            track = get_ctx().get_track()
            while not get_ctx().should_stop():
                track.emit(None)  # the second waits 100 s for its turn unless the stop cuts it short
                self.emitted += 1

    config = {"max_width": 64, "max_height": 48, "width": 32, "height": 24, "codec": "raw", "fps": 0.01}
    with Engine(SlowPaced, engine_config=config) as eng:
        session = eng.session()
        session.next_packet(timeout=10).release()
        started = time.monotonic()
        session.stop()
        assert session.wait(30)
        assert time.monotonic() - started < 30
        assert eng.model.emitted == 2  # the waiting frame was committed at the stop, then the loop ended


def test_frame_without_a_size_takes_the_last_emitted_frames_size(engine):
    def job(track):
        track.emit(np.full((8, 16, 3), 5, np.uint8))
        with track.frame() as buf:
            buf[...] = 6
            return buf.shape

    _, frames = _session(engine, job)
    assert engine.model.result == (8, 16, 3)
    assert [(f.shape, int(f.max())) for f in frames] == [((8, 16, 3), 5), ((8, 16, 3), 6)]
