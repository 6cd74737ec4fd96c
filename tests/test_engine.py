"""Engine and Session: the lifecycle, commands at poll points, stopping, crashes, isolation, stats."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from reactor_engine import (
    CommandError,
    Engine,
    EngineBusy,
    ModelError,
    NoActiveSession,
    ReactorTimeoutError,
    VideoModel,
    VideoOut,
    command,
    get_ctx,
    model,
)


@model(name="probe-model")
class Probe(VideoModel):
    """Runs ``self.job(self)`` as its session: each test says what the session does."""

    def __init__(self, config):
        self.config = config
        self.inits = getattr(self, "inits", 0) + 1
        self.job = None
        self.notes = []
        self.in_body = False
        self.ends = []
        self.ctx_after_end = None

    @command("note", description="Record a note")
    def note(self, text: str, times: int = 1):
        self.notes.append((text, self.in_body, threading.current_thread().name))
        return {"noted": text * times}

    @command("fail")
    def fail(self):
        raise KeyError("internal detail")

    def start_session(self):
        self.job(self)

    def on_session_end(self, reason):
        self.ends.append(reason)
        try:
            get_ctx()
        except NoActiveSession as exc:
            self.ctx_after_end = exc


def _loop_until_stopped(m):
    ctx = get_ctx()
    while not ctx.should_stop():
        ctx.get_track().emit(np.full((24, 32, 3), 7, np.uint8))
        ctx.wait(0.005)


@pytest.fixture
def engine(small_engine_config):
    with Engine(Probe, engine_config=small_engine_config) as eng:
        yield eng


def _pixels(packet):
    """A copy of a raw packet's bytes: the packet can then be released (no live export)."""
    return np.frombuffer(packet.tobytes(), np.uint8)


def _run(engine, job, timeout=10.0):
    engine.model.job = job
    session = engine.session()
    assert session.wait(timeout), "session did not end"
    return session


def test_init_runs_once_across_three_sessions(engine):
    engine.model.job = _loop_until_stopped
    for _ in range(3):
        session = engine.session()
        session.stop()
        assert session.state == "ended"
    assert engine.model.inits == 1
    assert engine.model.ends == ["stopped", "stopped", "stopped"]
    assert engine.state == "ready"


def test_engine_states_follow_the_session(engine):
    started, release = threading.Event(), threading.Event()

    def job(m):
        started.set()
        release.wait(10)

    engine.model.job = job
    assert engine.state == "ready"
    session = engine.session()
    started.wait(10)
    assert engine.state == "streaming"
    assert session.state == "streaming"
    release.set()
    session.wait(10)
    assert session.state == "ended"
    assert session.end_reason == "returned"
    assert engine.state == "ready"


def test_a_command_sent_while_the_loop_body_runs_is_applied_only_at_a_poll_point(engine):
    in_body, proceed = threading.Event(), threading.Event()

    def job(m):
        ctx = get_ctx()
        m.in_body = True
        in_body.set()
        proceed.wait(10)
        m.in_body = False
        while not ctx.should_stop():
            ctx.wait(0.01)

    engine.model.job = job
    session = engine.session()
    in_body.wait(10)
    reply = session.submit_command("note", {"text": "hi"})
    assert not reply.done()
    assert engine.model.notes == []
    proceed.set()
    assert reply.result(10) == {"noted": "hi"}
    _text, handler_saw_body, thread_name = engine.model.notes[0]
    assert handler_saw_body is False
    assert thread_name.startswith("reactor-session-")
    session.stop()


def test_send_command_returns_the_handler_value_and_reports_errors(engine):
    engine.model.job = _loop_until_stopped
    session = engine.session()
    assert session.send_command("note", {"text": "ab", "times": 2}) == {"noted": "abab"}
    with pytest.raises(CommandError, match=r"invalid arguments for command 'note': 'times': .*got '2'"):
        session.send_command("note", {"text": "x", "times": "2"})
    with pytest.raises(CommandError, match="'extra' is not a parameter"):
        session.send_command("note", {"text": "x", "extra": 1})
    with pytest.raises(CommandError, match="unknown command 'nope'; this model takes: fail, note"):
        session.send_command("nope", {})
    with pytest.raises(CommandError, match=r"^command 'fail' failed: internal error \(KeyError\)$"):
        session.send_command("fail")
    session.stop()


def test_get_ctx_raises_after_a_session_ends(engine):
    kept = {}

    def job(m):
        kept["ctx"] = get_ctx()
        kept["track"] = get_ctx().get_track()

    session = _run(engine, job)
    assert session.state == "ended"
    with pytest.raises(NoActiveSession):
        get_ctx()
    assert isinstance(engine.model.ctx_after_end, NoActiveSession)
    assert kept["ctx"].should_stop() is True
    with pytest.raises(NoActiveSession):
        kept["ctx"].emit_block(None)


def test_engine_busy_for_a_second_session(engine):
    engine.model.job = _loop_until_stopped
    session = engine.session()
    with pytest.raises(EngineBusy, match=f"session {session.session_id} is .*one session at a time"):
        engine.session()
    session.stop()
    engine.session().stop()


def test_a_model_ignoring_should_stop_makes_the_engine_unhealthy_and_the_caller_returns(small_engine_config):
    release = threading.Event()

    def stubborn(m):
        while not release.is_set():
            time.sleep(0.01)

    with Engine(Probe, engine_config={**small_engine_config, "stop_grace": 0.3}) as engine:
        engine.model.job = stubborn
        session = engine.session()
        assert session.stop() == "unhealthy"
        assert engine.state == "unhealthy"
        assert "ignores should_stop()" in engine.state_reason
        assert engine.health()["state"] == "unhealthy"
        with pytest.raises(EngineBusy, match="engine is unhealthy"):
            engine.session()
        events = [m["event"] for m in session.messages(timeout=0) if m["type"] == "event"]
        assert "unhealthy" in events
        release.set()
        assert session.wait(10)
        assert engine.state == "ready"
        engine.model.job = lambda m: None
        assert _session_ok(engine)


def _session_ok(engine):
    session = engine.session()
    return session.wait(10) and session.state == "ended"


def test_a_crash_is_reported_and_the_next_session_works(engine):
    def crash(m):
        get_ctx().get_track().emit(None)
        raise RuntimeError("out of memory in block 3")

    session = _run(engine, crash)
    assert session.state == "error"
    assert session.end_reason == "error"
    assert session.error == "RuntimeError: out of memory in block 3"
    assert engine.model.ends == ["error"]
    ended = [m for m in session.messages(timeout=0) if m.get("event") == "ended"]
    assert ended == [
        {
            "type": "event",
            "event": "ended",
            "session_id": session.session_id,
            "reason": "error",
            "error": "RuntimeError: out of memory in block 3",
        }
    ]
    assert engine.state == "ready"
    engine.model.job = _loop_until_stopped
    second = engine.session()
    assert second.send_command("note", {"text": "alive"}) == {"noted": "alive"}
    assert second.stop() == "ended"
    assert engine.model.inits == 1


def test_both_emit_dialects_produce_packets(engine):
    def job(m):
        ctx = get_ctx()
        ctx.emit_block(np.full((24, 32, 3), 1, np.uint8))  # seed A
        ctx.emit_block(np.full((2, 24, 32, 3), 2, np.uint8))
        ctx.get_track().emit(np.full((24, 32, 3), 3, np.uint8))  # seed B
        ctx.get_track("main_video").emit(np.full((24, 32, 3), 4, np.uint8), bucket=7)
        m.main_video.emit(np.full((24, 32, 3), 5, np.uint8))  # the track as a model attribute

    session = _run(engine, job)
    values = []
    for packet in session.packets(timeout=10):
        with packet:
            assert (packet.codec, packet.width, packet.height) == ("raw", 32, 24)
            values.append(_pixels(packet)[0])
    assert values == [1, 2, 2, 3, 4, 5]
    assert session.state == "ended"


def test_emit_none_sends_a_black_frame_of_the_track_size(engine):
    def job(m):
        get_ctx().get_track().emit(None)
        get_ctx().get_track().emit(np.full((10, 20, 3), 9, np.uint8))
        get_ctx().get_track().emit()

    session = _run(engine, job)
    sizes = []
    for packet in session.packets(timeout=10):
        with packet:
            pixels = _pixels(packet)
            sizes.append((packet.width, packet.height, int(pixels.max())))
    assert sizes == [(32, 24, 0), (20, 10, 9), (20, 10, 0)]


def test_messages_carry_model_sends_and_session_events(engine):
    def job(m):
        get_ctx().send({"type": "progress", "data": {"step": 1}})

    session = _run(engine, job)
    messages = list(session.messages(timeout=0))
    assert [m["type"] for m in messages] == ["event", "message", "event"]
    assert messages[0]["event"] == "started"
    assert messages[1]["data"] == {"type": "progress", "data": {"step": 1}}
    assert messages[2]["event"] == "ended"
    assert messages[2]["reason"] == "returned"


def test_nothing_of_one_session_reaches_the_next(engine):
    blocked = threading.Event()

    def first(m):
        ctx = get_ctx()
        for _ in range(6):
            ctx.get_track().emit(np.full((24, 32, 3), 1, np.uint8))
        blocked.set()
        while not ctx.stopped.is_set():  # never reaches a poll point: queued commands stay queued
            time.sleep(0.005)

    engine.model.job = first
    one = engine.session()
    blocked.wait(10)
    pending = one.submit_command("note", {"text": "late"})
    one.stop()
    with pytest.raises(CommandError, match=r"not applied: session .* ended"):
        pending.result(10)

    def second(m):
        ctx = get_ctx()
        ctx.get_track().emit(np.full((24, 32, 3), 2, np.uint8))
        ctx.send({"second": True})

    two = _run(engine, second)
    values = []
    for packet in two.packets(timeout=10):
        with packet:
            values.append(_pixels(packet)[0])
    assert values == [2]
    assert [m["data"] for m in two.messages(timeout=0) if m["type"] == "message"] == [{"second": True}]
    assert engine.model.notes == []
    assert one.next_packet(timeout=0.1) is None  # the first session's reader gets nothing of the second


def test_max_session_duration_ends_the_session(small_engine_config):
    config = {**small_engine_config, "max_session_duration": 0.2, "ring_policy": "drop_oldest"}
    with Engine(Probe, engine_config=config) as engine:
        engine.model.job = _loop_until_stopped
        session = engine.session()
        assert session.wait(10)
        assert session.end_reason == "max_duration"
        assert engine.model.ends == ["max_duration"]


def test_close_stops_the_session_with_reason_shutdown(small_engine_config):
    engine = Engine(Probe, engine_config=small_engine_config)
    engine.model.job = _loop_until_stopped
    session = engine.session()
    engine.close()
    assert session.ended
    assert session.end_reason == "shutdown"
    assert engine.state == "closed"


@pytest.mark.parametrize("scheduling", ["batch", "normal"])
def test_the_engine_setting_encoder_scheduling_reaches_each_encoder_thread(small_engine_config, scheduling):
    with Engine(Probe, engine_config={**small_engine_config, "encoder_scheduling": scheduling}) as engine:
        for track in engine.tracks.values():
            assert track.encoder.scheduling == scheduling


def test_the_engine_setting_jpeg_threads_reaches_each_encoder(small_engine_config):
    with Engine(Probe, engine_config={**small_engine_config, "jpeg_threads": 3}) as engine:
        assert engine.tracks
        for track in engine.tracks.values():
            assert track.encoder.jpeg_threads == 3
    with Engine(Probe, engine_config=small_engine_config) as engine:
        assert {track.encoder.jpeg_threads for track in engine.tracks.values()} == {2}  # the default


def test_stats_report_first_frame_fps_latency_and_drops(small_engine_config):
    def job(m):
        for i in range(5):
            get_ctx().get_track().emit(np.full((24, 32, 3), i, np.uint8))

    with Engine(Probe, engine_config=small_engine_config) as engine:
        session = _run(engine, job)
        for packet in session.packets(timeout=10):
            packet.release()
        stats = session.stats()
    assert stats["frames"] == 5
    assert stats["time_to_first_frame_ms"] > 0
    assert stats["fps"] > 0
    track = stats["tracks"]["main_video"]
    assert track["emit"]["count"] == 5
    assert track["encode"]["count"] == 5
    assert track["commit_to_packet"]["p99_ms"] >= track["commit_to_packet"]["p50_ms"] >= 0
    assert track["packets_received"] == 5
    assert track["counters"]["frames_committed"] == 5
    assert stats["drops"] == 0


def test_drops_under_drop_oldest_are_counted_not_silent(small_engine_config):
    def job(m):
        for i in range(40):
            get_ctx().get_track().emit(np.full((24, 32, 3), i, np.uint8))

    config = {**small_engine_config, "ring_policy": "drop_oldest", "packet_queue": 1}
    with Engine(Probe, engine_config=config) as engine:
        session = _run(engine, job)
        received = sum(1 for p in session.packets(timeout=10) if p.release() is None)
        stats = session.stats()
    assert stats["frames"] == 40
    assert received + stats["drops"] == 40


def test_packets_times_out_while_the_model_produces_nothing(engine):
    def idle(m):
        while not get_ctx().wait(0.05):
            pass

    engine.model.job = idle
    session = engine.session()
    with pytest.raises(ReactorTimeoutError, match=r"no packet from track 'main_video' within 0\.1 s"):
        session.next_packet(timeout=0.1)
    session.stop()


def test_a_model_that_fails_to_load_reports_why(small_engine_config):
    @model(name="broken-load")
    class Broken(VideoModel):
        def __init__(self, config):
            raise FileNotFoundError("weights.safetensors")

        def start_session(self):
            pass

    with pytest.raises(
        ModelError, match=r"model 'broken-load' failed to load: FileNotFoundError: weights\.safetensors"
    ):
        Engine(Broken, engine_config=small_engine_config)
    engine = Engine(Broken, engine_config=small_engine_config, load=False)
    engine.load(background=True)
    assert engine.wait_ready(10) == "error"
    assert "weights.safetensors" in engine.state_reason
    engine.close()


def test_fixed_rate_stamps_packets_on_an_absolute_clock(small_engine_config):
    with Engine(Probe, engine_config={**small_engine_config, "fps": 50.0}) as engine:

        def job(m):
            get_ctx().get_track().emit(np.zeros((4, 24, 32, 3), np.uint8))

        session = _run(engine, job)
        pts = [p.pts_ns for p in session.packets(timeout=10)]
    assert np.diff(pts).tolist() == [20_000_000] * 3


def test_automatic_pacing_spreads_a_batch_at_the_measured_rate(engine):
    def job(m):
        track = get_ctx().get_track()
        track.emit(np.zeros((24, 32, 3), np.uint8))
        time.sleep(0.04)  # the next batch of 4 took 40 ms to make: 10 ms a frame
        track.emit(np.zeros((4, 24, 32, 3), np.uint8))

    session = _run(engine, job)
    pts = [p.pts_ns for p in session.packets(timeout=10)]
    gaps = np.diff(pts[1:])
    assert len(gaps) == 3
    assert len(set(gaps.tolist())) == 1
    assert gaps[0] >= 10_000_000


def test_a_model_without_init_is_instantiated_with_its_config(small_engine_config):
    @model(name="no-init")
    class NoInit(VideoModel):
        def start_session(self):
            get_ctx().get_track().emit(None)

    with Engine(NoInit, engine_config=small_engine_config) as engine:
        session = engine.session()
        assert session.wait(10)
        assert session.state == "ended"


@model(name="rate-in-code")
class RateInCode(VideoModel):
    main_video = VideoOut(default=True, rate=30)

    def __init__(self, config):
        pass

    def start_session(self):
        while not get_ctx().should_stop():
            get_ctx().get_track().emit(None)


@model(name="no-compute")
class NoCompute(VideoModel):
    """The README's first snippet: no work between frames, automatic pacing."""

    def __init__(self, config):
        pass

    def start_session(self):
        frame = np.zeros((16, 16, 3), dtype=np.uint8)
        while not get_ctx().should_stop():
            get_ctx().get_track().emit(frame)


@pytest.mark.parametrize("fps", [10.0, 60.0])
def test_the_engine_fps_setting_beats_the_rate_in_the_models_code(fps, caplog):
    config = {"max_width": 32, "max_height": 32, "width": 32, "height": 32, "codec": "raw", "fps": fps}
    with (
        caplog.at_level(logging.INFO, logger="reactor_engine.engine"),
        Engine(RateInCode, engine_config=config) as engine,
    ):
        assert engine.tracks["main_video"].pacer.fps == fps
    assert any(f"engine fps {fps:g} overrides the model's 30" in r.getMessage() for r in caplog.records)


def test_without_an_engine_fps_the_rate_in_code_applies():
    config = {"max_width": 32, "max_height": 32, "width": 32, "height": 32, "codec": "raw"}
    with Engine(RateInCode, engine_config=config) as engine:
        assert engine.tracks["main_video"].pacer.fps == 30


def test_automatic_pacing_is_capped_by_max_fps_and_drops_are_reported():
    config = {"max_width": 16, "max_height": 16, "width": 16, "height": 16, "codec": "raw", "max_fps": 50}
    with Engine(NoCompute, engine_config=config) as engine:
        session = engine.session()
        time.sleep(1.0)
        session.stop()
        stats = session.stats()
    assert stats["frames"] < 100  # uncapped it made tens of thousands in a second
    assert "drops" in stats
