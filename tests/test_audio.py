"""Audio out (a 440 Hz tone found by FFT at the consumer) and audio in (a tone pushed in, found by the
model), sample checks with clear errors, rate mismatches, pacing, and session isolation."""

from __future__ import annotations

import time

import numpy as np
import pytest

from reactor_engine import (
    AudioIn,
    AudioOut,
    AudioOutputTrack,
    Engine,
    FrameError,
    InvalidArgumentError,
    VideoModel,
    get_ctx,
    model,
)

RATE = 48000
ENGINE = {
    "max_width": 64,
    "max_height": 48,
    "width": 32,
    "height": 24,
    "codec": "raw",
    "stop_grace": 5.0,
    "audio_rate": RATE,
    "audio_buffer_ms": 500,
}


def tone(hz: float, frames: int, start: int = 0, amplitude: float = 0.5) -> np.ndarray:
    t = (np.arange(frames) + start) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def _tone_out(m):
    ctx = get_ctx()
    sent = 0
    while not ctx.should_stop():
        m.voice.emit(tone(440, 960, sent))  # 20 ms blocks, float in [-1, 1]
        sent += 960


@model(name="audio-probe")
class AudioProbe(VideoModel):
    mic = AudioIn()
    voice = AudioOut(rate=RATE)

    def __init__(self, config):
        self.job = None
        self.result = None

    def start_session(self):
        self.result = None
        self.result = (self.job or _tone_out)(self)


@pytest.fixture(scope="module")
def engine():
    with Engine(AudioProbe, engine_config=ENGINE) as eng:
        yield eng


def _start(engine, job):
    engine.model.job = job
    return engine.session()


def _wait_message(session, key, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        message = session.next_message(timeout=max(0.0, end - time.monotonic()))
        if message and message["type"] == "message" and key in message["data"]:
            return message["data"]
    raise AssertionError(f"no message with {key!r} within {timeout} s")


def test_audio_tracks_are_declared_and_created_at_load(engine):
    assert AudioProbe.capabilities()["tracks"] == [
        {"name": "main_video", "kind": "video", "direction": "recvonly"},
        {"name": "mic", "kind": "audio", "direction": "sendonly"},
        {"name": "voice", "kind": "audio", "direction": "recvonly"},
    ]
    voice = engine.audio_outputs["voice"]
    assert isinstance(voice, AudioOutputTrack) and engine.model.voice is voice
    assert (voice.rate, voice.channels, voice.ring.notify_frames) == (RATE, 1, RATE // 50)
    assert engine.inputs["mic"].ring.capacity_frames == RATE // 2  # audio_buffer_ms: 500
    with pytest.raises(ValueError, match="AudioOut rate must be a whole number of Hz > 0"):
        AudioOut(rate=0)


def test_a_440_hz_tone_emitted_by_the_model_is_found_by_fft_at_the_consumer(engine):
    with _start(engine, None) as session:
        blocks, stamps = [], []
        while sum(b.shape[1] for b in blocks) < RATE // 2:
            samples, pts_ns = session.next_audio(frames=960, timeout=10)
            assert samples.shape == (1, 960) and samples.dtype == np.int16
            blocks.append(samples)
            stamps.append(pts_ns)
    audio = np.concatenate(blocks, axis=1)[0]
    assert abs(peak_hz(audio) - 440) <= 2.0
    assert 0.4 < np.abs(audio).max() / 32767 < 0.6
    assert stamps == sorted(stamps) and stamps[0] > 0  # on the core clock (time.monotonic_ns)
    stats = session.stats()["audio_outputs"]["voice"]
    assert stats["samples_emitted"] >= RATE // 2
    assert stats["counters"]["ring"]["frames_out"] >= RATE // 2


def test_a_tone_pushed_in_is_found_by_the_model(engine):
    def job(m):
        ctx = get_ctx()
        ctx.send({"listening": True})
        block = m.mic.read(9600, timeout=10)  # 200 ms, fifo
        ctx.send({"peak_hz": peak_hz(block[0]), "frames": block.shape[1], "writable": block.flags.writeable})

    session = _start(engine, job)
    _wait_message(session, "listening")
    for k in range(10):
        assert session.push_audio("mic", tone(440, 960, k * 960), rate=RATE) == 960
    found = _wait_message(session, "peak_hz")
    assert abs(found["peak_hz"] - 440) <= 5.0
    assert found["frames"] == 9600 and found["writable"] is False
    assert session.wait(10)


def test_audio_at_another_rate_is_refused_counted_and_the_session_goes_on(engine):
    def job(m):
        ctx = get_ctx()
        ctx.send({"listening": True})
        return m.mic.read(480, timeout=10).shape

    session = _start(engine, job)
    _wait_message(session, "listening")
    with pytest.raises(
        InvalidArgumentError, match=r"audio at 44100 Hz for track 'mic', which takes 48000 Hz"
    ):
        session.push_audio("mic", np.zeros(441, np.int16), rate=44100)
    assert session.state == "streaming"
    session.push_audio("mic", np.zeros(480, np.int16), rate=RATE)
    assert session.wait(10)
    assert engine.model.result == (1, 480)
    stats = session.stats()["inputs"]["mic"]
    assert stats["rate_mismatch"] == 1
    assert stats["counters"]["ring"]["frames_in"] == 480


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.full(480, 1.5, np.float32), r"float samples range from 1.5 to 1.5, outside \[-1, 1\]"),
        (np.zeros(480, np.int32), r"samples have dtype int32; track 'mic' takes \(M,\) or \(1, M\) int16"),
        (np.zeros((480, 1, 1), np.int16), r"samples have shape \(480, 1, 1\)"),
        (np.array([np.nan] * 4, np.float32), "float samples hold NaN or infinity"),
        (b"\x00\x00\x00", "a buffer of 3 bytes is not whole int16 samples"),
        ("hello", "samples are a str, not a numpy array or a buffer of int16"),
    ],
)
def test_bad_input_samples_get_a_clear_error(engine, samples, message):
    with _start(engine, lambda m: get_ctx().wait(10)) as session, pytest.raises(FrameError, match=message):
        session.push_audio("mic", samples)
    assert session.stats()["inputs"]["mic"]["refused"] == 1


def test_input_accepts_int16_buffers_and_mixes_stereo_down(engine):
    def job(m):
        ctx = get_ctx()
        ctx.send({"listening": True})
        return m.mic.read(6, timeout=10).tolist()

    session = _start(engine, job)
    _wait_message(session, "listening")
    assert session.push_audio("mic", np.array([1, 2], "<i2").tobytes()) == 2
    assert session.push_audio("mic", np.array([[10, 20], [30, 40]], np.int16)) == 2  # (2, M) -> mono
    assert session.push_audio("mic", memoryview(np.array([7, 8], np.int16))) == 2
    assert session.wait(10)
    assert engine.model.result == [[1, 2, 20, 30, 7, 8]]


def test_bad_output_samples_name_what_the_track_takes(engine):
    def job(m):
        errors = []
        for bad in (
            np.zeros((2, 480), np.int16),
            np.zeros((480, 1), np.int16),
            np.full(480, -2.0),
            np.zeros(480, np.uint8),
        ):
            try:
                m.voice.emit(bad)
            except FrameError as exc:
                errors.append(str(exc))
        try:
            m.voice.emit(np.zeros(480, np.int16), rate=16000)
        except InvalidArgumentError as exc:
            errors.append(str(exc))
        try:
            m.mic.emit(None)
        except TypeError as exc:
            errors.append(str(exc))
        return errors

    session = _start(engine, job)
    assert session.wait(10)
    errors = engine.model.result
    takes = "track 'voice' takes (M,) or (1, M) int16 samples or floats in [-1, 1], at 48000 Hz, 1 channel"
    assert errors[0] == f"samples have shape (2, 480); {takes}"
    assert errors[1] == f"samples have shape (480, 1) (it looks channel-last: pass samples.T); {takes}"
    assert errors[2].startswith("float samples range from -2 to -2, outside [-1, 1]")
    assert errors[3] == f"samples have dtype uint8; {takes}"
    assert errors[4].startswith("audio at 16000 Hz for track 'voice', which takes 48000 Hz")
    assert errors[5] == "track 'mic' is an input (AudioIn); only output tracks emit"


def test_emit_is_paced_to_real_time_and_a_stop_cuts_the_wait_short(engine):
    def job(m):
        ctx = get_ctx()
        for _ in range(500):  # 10 s of audio in 20 ms blocks: paced, it cannot all go at once
            if ctx.should_stop():
                break
            m.voice.emit(None)
        return m.voice.samples_emitted

    session = _start(engine, job)
    first, _ = session.next_audio(frames=960, timeout=10)
    assert first.shape == (1, 960) and not first.any()  # emit(None): 20 ms of silence
    assert session.stop() == "ended"
    assert 960 <= engine.model.result < 500 * 960


def test_the_next_session_hears_none_of_the_previous_audio(engine):
    def quiet(m):
        ctx = get_ctx()
        ctx.send({"ready": True})
        m.voice.emit(np.full(4800, 1000, np.int16))
        ctx.wait(10)

    first = _start(engine, quiet)
    _wait_message(first, "ready")
    first.push_audio("mic", np.full(4800, 5, np.int16))
    first.stop()

    def job(m):
        return m.mic.latest(), m.mic.read(10, timeout=0).shape, m.voice.samples_emitted

    second = _start(engine, job)
    assert second.wait(10)
    assert engine.model.result == (None, (1, 0), 0)
    assert second.next_audio(frames=960, timeout=1) is None  # ended, and nothing of the first is left
