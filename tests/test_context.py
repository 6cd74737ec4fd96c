"""get_ctx() is scoped to one live session; poll points apply commands on the session thread only."""

from __future__ import annotations

import threading

import pytest

from reactor_engine import NoActiveSession, VideoModel, command, get_ctx, model
from reactor_engine.context import SessionContext
from reactor_engine.model import model_spec


@model(name="context-model")
class ContextModel(VideoModel):
    def __init__(self):
        self.values = []

    @command("push")
    def push(self, value: int):
        self.values.append((value, threading.current_thread().name))

    def start_session(self):
        pass


def _context(instance, messages=None, deadline_ns=None, session_id="s1"):
    return SessionContext(
        session_id,
        model=instance,
        tracks={},
        default_track="main_video",
        commands=model_spec(ContextModel).commands,
        post_message=(messages.append if messages is not None else lambda m: None),
        deadline_ns=deadline_ns,
    )


def _on_thread(fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name="session-thread")
    thread.start()
    thread.join(10)
    if "error" in result:
        raise result["error"]
    return result.get("value")


def test_get_ctx_raises_outside_a_session():
    with pytest.raises(NoActiveSession, match="outside a session"):
        get_ctx()


def test_get_ctx_raises_after_the_session_ends_instead_of_returning_a_stale_context():
    ctx = _context(ContextModel())

    def session():
        ctx.activate()
        assert get_ctx() is ctx
        ctx.deactivate()
        with pytest.raises(NoActiveSession, match="session s1 has ended"):
            get_ctx()
        ctx.release_thread()

    _on_thread(session)
    with pytest.raises(NoActiveSession):
        get_ctx()
    assert ctx.should_stop() is True


def test_helper_threads_see_the_running_session():
    ctx = _context(ContextModel())
    ready, done = threading.Event(), threading.Event()
    seen = {}

    def session():
        ctx.activate()
        ready.set()
        done.wait(10)
        ctx.deactivate()
        ctx.release_thread()

    thread = threading.Thread(target=session)
    thread.start()
    ready.wait(10)
    seen["helper"] = _on_thread(get_ctx)
    done.set()
    thread.join(10)
    assert seen["helper"] is ctx


def test_commands_are_applied_at_should_stop_on_the_session_thread_only():
    instance = ContextModel()
    ctx = _context(instance)
    queued, polled = threading.Event(), threading.Event()

    def session():
        ctx.activate()
        queued.wait(10)
        before = list(instance.values)
        ctx.should_stop()
        polled.set()
        ctx.deactivate()
        ctx.release_thread()
        return before

    thread_result = {}
    thread = threading.Thread(
        target=lambda: thread_result.setdefault("before", session()), name="model-session"
    )
    thread.start()
    reply = ctx.commands.submit("push", {"value": 1})
    assert ctx.should_stop() is False  # the host thread polls: nothing is applied here
    assert instance.values == []
    queued.set()
    polled.wait(10)
    thread.join(10)
    assert thread_result["before"] == []
    assert instance.values == [(1, "model-session")]
    assert reply.result(0) is None


def test_wait_returns_when_a_command_arrives_and_applies_it():
    instance = ContextModel()
    ctx = _context(instance)
    waiting = threading.Event()
    out = {}

    def session():
        ctx.activate()
        waiting.set()
        out["stop"] = ctx.wait(30)
        ctx.deactivate()
        ctx.release_thread()

    thread = threading.Thread(target=session)
    thread.start()
    waiting.wait(10)
    ctx.commands.submit("push", {"value": 5})
    thread.join(10)
    assert not thread.is_alive()
    assert out["stop"] is False
    assert [v for v, _ in instance.values] == [5]


def test_wait_returns_true_when_stopped():
    ctx = _context(ContextModel())
    waiting = threading.Event()
    out = {}

    def session():
        ctx.activate()
        waiting.set()
        out["stop"] = ctx.wait()
        ctx.deactivate()
        ctx.release_thread()

    thread = threading.Thread(target=session)
    thread.start()
    waiting.wait(10)
    ctx.request_stop("stopped")
    thread.join(10)
    assert out["stop"] is True
    assert ctx.stop_reason == "stopped"


def test_should_stop_turns_true_at_the_deadline():
    ctx = _context(ContextModel(), deadline_ns=0)
    out = {}

    def session():
        ctx.activate()
        out["stop"] = ctx.should_stop()
        ctx.deactivate()
        ctx.release_thread()

    _on_thread(session)
    assert out["stop"] is True
    assert ctx.stop_reason == "max_duration"


def test_send_posts_json_and_rejects_what_is_not():
    messages = []
    ctx = _context(ContextModel(), messages)

    def session():
        ctx.activate()
        ctx.send({"type": "progress", "data": {"step": 1}})
        with pytest.raises(ValueError, match="JSON-serializable"):
            ctx.send({"x": object()})
        ctx.deactivate()
        with pytest.raises(NoActiveSession):
            ctx.send({"late": True})
        ctx.release_thread()

    _on_thread(session)
    assert messages == [
        {"type": "message", "session_id": "s1", "data": {"type": "progress", "data": {"step": 1}}}
    ]


def test_unknown_track_lists_the_tracks():
    ctx = _context(ContextModel())
    with pytest.raises(ValueError, match="no track named 'webcam'; this model's tracks are: "):
        ctx.get_track("webcam")


def test_seed_era_no_op_helpers_exist():
    ctx = _context(ContextModel())
    ctx.enable_monitoring()
    ctx.disable_monitoring()
    with ctx.profiler().section("denoise"):
        pass
    assert ctx.is_media_configured
