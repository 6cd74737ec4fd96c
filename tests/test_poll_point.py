"""The poll point inside emit / frame() when its Python half is skipped (the writer armed): queued
commands, stops and command-state refreshes still reach the model, other threads take the Python path."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from reactor_engine import Engine, NoActiveSession, VideoIn, VideoModel, command, get_ctx, model

CONFIG = {"max_width": 32, "max_height": 24, "width": 32, "height": 24, "codec": "raw"}
FRAME = np.zeros((24, 32, 3), np.uint8)


class _Probe(VideoModel):
    """Runs ``self.job(default video track)`` as its session; ``value`` is what ``set_value`` sets."""

    def __init__(self, config=None):
        self.value = 0
        self.job = None
        self.result = None

    def start_session(self):
        self.result = self.job(get_ctx().get_track())


@model(name="poll-probe")
class PollProbe(_Probe):
    @command("set_value", state=lambda self: {"value": self.value})
    def set_value(self, value: int = 0):
        self.value = value
        return value


@model(name="poll-probe-stateless")
class StatelessProbe(_Probe):
    @command("set_value")
    def set_value(self, value: int = 0):
        self.value = value
        return value


@model(name="poll-probe-input")
class InputProbe(_Probe):
    webcam = VideoIn()


def _run(engine, job, during=None):
    engine.model.job = job
    session = engine.session()
    try:
        if during is not None:
            during(session)
        assert session.wait(10)
    finally:
        session.stop()
    assert session.error is None, session.error
    return engine.model.result


@pytest.mark.parametrize("use_frame", [False, True], ids=["emit", "frame"])
def test_a_command_queued_while_the_writer_is_armed_is_applied_at_the_next_emit(use_frame):
    armed, go = threading.Event(), threading.Event()

    def send(track):
        if use_frame:
            with track.frame():
                pass
        else:
            track.emit(FRAME)

    def job(track):
        send(track)  # the Python poll point, which arms the writer
        send(track)
        was_armed = track._writer.armed
        armed.set()
        go.wait(10)
        before = get_ctx()._model.value
        send(track)  # must apply the command queued meanwhile, before it returns
        return was_armed, before, get_ctx()._model.value

    def during(session):
        assert armed.wait(10)
        reply = session.submit_command("set_value", {"value": 7})
        go.set()
        assert reply.result(10) == 7

    with Engine(StatelessProbe, engine_config=CONFIG) as engine:
        assert _run(engine, job, during) == (True, 0, 7)


def test_another_threads_emit_leaves_a_queued_command_to_the_session_threads_next_emit():
    armed, go = threading.Event(), threading.Event()

    def job(track):
        track.emit(FRAME)  # the Python poll point, which arms the writer
        track.emit(FRAME)
        was_armed = track._writer.armed
        armed.set()
        go.wait(10)
        before = get_ctx()._model.value
        track.emit(FRAME)  # must apply the command queued meanwhile, although another thread emitted
        return was_armed, before, get_ctx()._model.value

    def during(session):
        assert armed.wait(10)
        reply = session.submit_command("set_value", {"value": 7})
        engine.tracks["main_video"].emit(FRAME)  # a host thread: its poll point cannot apply commands
        go.set()
        assert reply.result(10) == 7

    with Engine(StatelessProbe, engine_config=CONFIG) as engine:
        assert _run(engine, job, during) == (True, 0, 7)


def test_command_state_is_read_again_while_the_model_only_emits():
    def job(track):
        ctx = get_ctx()
        track.emit(FRAME)
        assert ctx.commands.state == {"set_value": {"value": 0}}
        ctx._model.value = 5  # changed by the model itself, not by a command
        for _ in range(300):  # paced at 100 fps: 3 s; the state is read again every 0.5 s
            track.emit(FRAME)  # the only poll point of this loop
            if ctx.commands.state == {"set_value": {"value": 5}}:
                return True
        return False

    with Engine(PollProbe, engine_config={**CONFIG, "fps": 100.0}) as engine:
        assert _run(engine, job) is True


def test_a_stop_reaches_a_model_that_only_emits_and_the_writer_is_disarmed_after():
    def job(track):
        for _ in range(100_000):  # bounded: a stop ends it long before
            track.emit(FRAME)
            if get_ctx().should_stop():
                return track._writer.armed
        return "never stopped"

    with Engine(StatelessProbe, engine_config={**CONFIG, "fps": 200.0}) as engine:
        engine.model.job = job
        session = engine.session()
        session.stop(timeout=10)
        assert session.error is None
        assert engine.model.result is True  # armed while streaming: the fast path was in use
        assert not engine.tracks["main_video"]._writer.armed  # the session's end disarmed it


def test_another_thread_emits_through_the_python_path_and_an_ended_sessions_thread_cannot():
    def job(track):
        track.emit(FRAME)
        assert track._writer.armed
        errors = []

        def helper():
            try:
                track.emit(FRAME)  # not the session thread: never the native shortcut
                with track.frame():
                    pass
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=helper)
        thread.start()
        thread.join(10)
        return errors, track.frames_committed

    with Engine(StatelessProbe, engine_config=CONFIG) as engine:
        errors, committed = _run(engine, job)
        assert errors == []
        assert committed == 3
        track = engine.tracks["main_video"]
        with pytest.raises(NoActiveSession):
            track.emit(FRAME)  # no session: the writer is disarmed, the Python path raises


def test_a_model_with_an_input_track_runs_every_poll_point_in_python():
    def job(track):
        for _ in range(3):
            track.emit(FRAME)
        return track._writer.armed  # each poll point releases the input frames held: never skipped

    with Engine(InputProbe, engine_config=CONFIG) as engine:
        assert _run(engine, job) is False


def test_latest_follows_the_native_path():
    batch = np.stack([FRAME, FRAME + 1])

    def job(track):
        track.emit(FRAME)
        track.emit(batch)  # armed: through the native shortcut
        last = track.latest()
        with track.frame():
            pass
        return last, track.latest()

    with Engine(StatelessProbe, engine_config=CONFIG) as engine:
        last, after_frame = _run(engine, job)
        assert np.array_equal(last, batch[-1])
        assert after_frame is None
