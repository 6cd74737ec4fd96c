"""``get_ctx()`` and ``SessionContext``: what the model sees of the session it runs in.

A context is created per session and dies with it: ``get_ctx()`` raises ``NoActiveSession`` outside a
session and after it ends, never returning a stale one. On the session thread it returns that thread's
own session (so a hung thread of an old session cannot reach a new one); on other threads (helpers the
model started) it returns the running session.

Poll points (``should_stop()``, ``emit``, ``frame()``, ``wait()``, an input's ``read``) apply queued
commands, on the session thread only, so a command handler never runs concurrently with the generation
loop. They also release the input frames held since the previous poll point and call the model's
``on_media(bundle)`` when new input arrived (``inputs.MediaPoller``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from reactor_engine.commands import CommandQueue
from reactor_engine.errors import InvalidArgumentError, NoActiveSession

if TYPE_CHECKING:
    from reactor_engine.audio import AudioOutputTrack
    from reactor_engine.commands import CommandSpec
    from reactor_engine.inputs import AudioInputTrack, MediaPoller, VideoInputTrack
    from reactor_engine.tracks import VideoTrack

    AnyTrack: TypeAlias = VideoTrack | VideoInputTrack | AudioInputTrack | AudioOutputTrack

__all__ = ["ReactorContext", "SessionContext", "get_ctx"]


class _ThreadSession(threading.local):
    """A session thread's own session (live or ended), from ``activate`` to ``release_thread``.

    Note: a thread-local, not a dict keyed by ``threading.get_ident()``: reading it allocates nothing
    (an ident is a new int object each call), so the poll point inside every emit costs no Python
    object. The class attribute is what every other thread reads (no AttributeError raised per call).
    """

    ctx: SessionContext | None = None


_lock = threading.Lock()
_running: SessionContext | None = None  # the session now running, for threads that are not its own
_own = _ThreadSession()


def get_ctx() -> SessionContext:
    """The current session's context. Raises ``NoActiveSession`` outside a session or after it ended."""
    ctx = _own.ctx or _running
    if ctx is None:
        raise NoActiveSession("get_ctx() was called outside a session; it works only while one runs")
    if not ctx.active:
        raise NoActiveSession(f"session {ctx.session_id} has ended; get_ctx() works only while it runs")
    return ctx


class _Profiler:
    """Seed-era ``ctx.profiler()``: sections are accepted and cost nothing (per-session stats replace it)."""

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        yield


class SessionContext:
    """One session as the model sees it. Built by the engine; the model gets it from ``get_ctx()``."""

    def __init__(
        self,
        session_id: str,
        *,
        model: object,
        tracks: Mapping[str, VideoTrack],
        default_track: str,
        commands: Mapping[str, CommandSpec],
        post_message: Callable[[dict[str, Any]], None],
        deadline_ns: int | None,
        media: Mapping[str, VideoInputTrack | AudioInputTrack | AudioOutputTrack] | None = None,
        poller: MediaPoller | None = None,
    ) -> None:
        self.session_id = session_id
        self._model = model
        self._tracks = tracks
        self._media = dict(media or {})  # input and audio tracks, by name
        self._poller = poller if poller is not None and (poller.video or poller.audio) else None
        self._default_track = default_track
        self.commands = CommandQueue(commands, wake=self.wake)
        self._post_message = post_message
        self._deadline_ns = deadline_ns
        self.stopped = threading.Event()  # set by request_stop; the engine's watcher waits on it
        self._wake = threading.Event()  # set by stop and by each queued command, so wait() returns
        self.stop_reason: str | None = None
        self.active = False
        self._profiler = _Profiler()

    # -- engine side ------------------------------------------------------------------------------

    def activate(self) -> None:
        """Bind to the calling thread (the session thread) and make ``get_ctx()`` return this."""
        global _running
        with _lock:
            _own.ctx = self
            _running = self
            self.active = True

    def deactivate(self) -> None:
        """End the context: ``get_ctx()`` raises from now on, on every thread."""
        global _running
        with _lock:
            self.active = False
            if _running is self:
                _running = None

    def release_thread(self) -> None:
        """Forget the session thread once it has returned (called on that thread)."""
        if _own.ctx is self:
            _own.ctx = None

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopped.set()
        for track in self._tracks.values():
            track.interrupt()  # a pacing wait inside emit / frame() (native) returns now
        self.wake()

    def wake(self) -> None:
        """Wake the session thread out of ``wait()`` or an input's blocked ``read`` (any thread); the
        next ``emit`` / ``frame()`` runs the whole poll point."""
        self._wake.set()
        for track in self._tracks.values():
            track.request_poll()
        if self._poller is not None:
            self._poller.wake()

    def _poll(self) -> None:
        if not self.active:
            raise NoActiveSession(f"session {self.session_id} has ended")
        self._poll_point()

    def _on_session_thread(self) -> bool:
        """True on this session's own thread (the one running ``start_session``) while it is active."""
        return self.active and _own.ctx is self

    def _poll_point(self, dispatch: bool = True) -> int:
        """Apply queued commands, then release held input frames and (``dispatch``) call ``on_media``
        (session thread only; elsewhere nothing). Returns how many commands were applied."""
        if not self._on_session_thread():
            return 0
        applied = 0 if self.commands.idle() else self.commands.apply_pending(self._model)
        if self._poller is not None:
            self._poller.poll(dispatch)
        return applied

    def _quiet_ns(self) -> int | None:
        """On the session thread, right after a poll point: for how long (ns; -1: until woken) the
        next poll points have nothing to do unless ``wake()`` is called; ``None``: no such promise
        (another thread, an ended session, or input that each poll point releases)."""
        if not self._on_session_thread() or self._poller is not None:
            return None
        return self.commands.quiet_ns()

    def _pace_wait(self, wait_ns: int) -> None:
        """Hold the producer for frame pacing; cut short by a stop."""
        self.stopped.wait(wait_ns / 1e9)

    # -- model side -------------------------------------------------------------------------------

    def should_stop(self) -> bool:
        """True once the session is asked to end (stop, max duration, shutdown). A poll point."""
        self._poll_point()
        return self._stopping()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` s, applying commands as they arrive. A poll point.

        Returns early when a command was applied or the session is asked to stop; returns
        ``should_stop()``. Use it instead of ``time.sleep`` while waiting for input.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self._wake.clear()
            if self._poll_point() or self._stopping():
                break
            remaining = None if end is None else end - time.monotonic()
            if self._deadline_ns is not None:
                to_deadline = (self._deadline_ns - time.monotonic_ns()) / 1e9
                remaining = to_deadline if remaining is None else min(remaining, to_deadline)
            if remaining is not None and remaining <= 0:
                break
            self._wake.wait(remaining)
        return self._stopping()

    def _stopping(self) -> bool:
        if (
            self._deadline_ns is not None
            and not self.stopped.is_set()
            and time.monotonic_ns() >= self._deadline_ns
        ):
            self.request_stop("max_duration")
        return self.stopped.is_set() or not self.active

    def get_track(self, name: str | None = None) -> AnyTrack:
        """The track ``name``: an output (``VideoOut``/``AudioOut``) or an input (``VideoIn``/``AudioIn``);
        with no name, the default video output (``main_video`` unless declared)."""
        key = self._default_track if name is None else name
        track = self._tracks.get(key) or self._media.get(key)
        if track is None:
            listed = [
                *self._tracks,
                *(f"{n} ({t.kind} {_role(t.direction)})" for n, t in self._media.items()),
            ]
            raise InvalidArgumentError(
                f"no track named {name!r}; this model's tracks are: {', '.join(listed)}"
            )
        return track

    def emit_block(self, frames: Any = None) -> None:
        """Seed-era (1.0-1.4) emit: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 RGB to the default track."""
        self._tracks[self._default_track].emit(frames)

    def send(self, data: Mapping[str, Any]) -> None:
        """Send a JSON-serializable dict to the session's client(s), e.g. ``{"type": "progress", ...}``."""
        if not self.active:
            raise NoActiveSession(f"session {self.session_id} has ended; its messages cannot be sent")
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"send() takes a dict; got {type(data).__name__}")
        try:
            payload = json.loads(json.dumps(data))
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"send() takes a JSON-serializable dict: {exc}") from None
        self._post_message({"type": "message", "session_id": self.session_id, "data": payload})

    # Seed-era pacing controls: the automatic pacer here needs no hints, so these are no-ops.
    def enable_monitoring(self) -> None:
        """Seed-era no-op: pacing here measures production itself, pauses included."""

    def disable_monitoring(self) -> None:
        """Seed-era no-op: pacing here measures production itself, pauses included."""

    def profiler(self) -> _Profiler:
        """Seed-era ``ctx.profiler().section(name)``: accepted, no effect."""
        return self._profiler

    @property
    def is_media_configured(self) -> bool:
        return True


def _role(direction: str) -> str:
    return "input" if direction == "sendonly" else "output"


ReactorContext = SessionContext  # seed-era name
