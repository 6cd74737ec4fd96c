"""The session hub: the running session and its clients of every transport, on the asyncio loop.

Transport-neutral (nothing here speaks HTTP): starts and stops sessions, keeps the stats of recently
ended ones (``ended``; ``end_of`` says how one ended, for a client that comes late), registers
clients (``max_clients`` counted across kinds), runs the orphan timer, fans packets, the model's audio
(``audio.AudioFanOut``), model messages, session events and the commands' current values
(``{"type": "state"}``, also sent to each client as it attaches) out to the clients, and dispatches
commands. Client media in goes straight from a transport to the input tracks (``inbound.py``). A transport
(``ws``, ``mjpeg``, ``webrtc``) only turns wire messages into these calls and hub callbacks
(``HubClient``) into wire messages.

Threads: every method runs on the one asyncio loop thread. Packets come off the native queue of each
codec some client wants when its eventfd wakes the loop (``loop.add_reader``), never through a
thread per client; the blocking ``Engine``/``Session`` calls (start, stop, waiting for model
messages) run in worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactor_engine.commands import CommandState, command_state
from reactor_engine.errors import (
    ClosedError,
    EncodeError,
    EngineBusy,
    ReactorError,
    ReactorTimeoutError,
    StateError,
)
from reactor_engine.transports.audio import AudioFanOut
from reactor_engine.transports.dispatch import run_command
from reactor_engine.transports.errors import (
    CodecUnavailable,
    CommandRejected,
    CommandTimeout,
    EngineNotReady,
    HubError,
    SessionBusy,
    SessionNotFound,
    ShuttingDown,
    TooManyClients,
)
from reactor_engine.transports.inbound import TrackTable
from reactor_engine.transports.live import (
    CodecOutput,
    HubClient,
    HubOptions,
    LiveSession,
    duration_s,
    end_of,
    load_error_kind,
    state_message,
)
from reactor_engine.transports.messages import json_kind, valid_request_id
from reactor_engine.transports.metrics import HubMetrics

if TYPE_CHECKING:
    from reactor_engine import _C
    from reactor_engine.engine import Engine
    from reactor_engine.session import Session

# The hub's whole API, its errors and parts included, importable from here.
__all__ = [
    "CodecUnavailable",
    "CommandRejected",
    "CommandTimeout",
    "EngineNotReady",
    "HubClient",
    "HubError",
    "HubOptions",
    "LiveSession",
    "SessionBusy",
    "SessionEnded",
    "SessionHub",
    "SessionNotFound",
    "ShuttingDown",
    "TooManyClients",
    "end_of",
    "json_kind",
    "load_error_kind",
    "valid_request_id",
]

_log = logging.getLogger("reactor_engine.hub")

SessionEnded = Callable[[LiveSession, str], None]
"""A callback of ``SessionHub.on_session_ended``: ``(live, reason)``, on the loop thread."""


class SessionHub:
    """One engine's sessions and their clients. ``shutdown()`` stops the session and closes the clients;
    the engine itself is closed by its owner."""

    def __init__(self, engine: Engine, options: HubOptions | None = None) -> None:
        self.engine = engine
        self.options = options or HubOptions()
        orphan = self.options.orphan_timeout
        self.orphan_timeout = float(engine.config.orphan_timeout if orphan is None else orphan)
        self.metrics = HubMetrics(engine)
        # The codecs the engine encodes, the primary first; clients may want any of them.
        self.codecs: tuple[str, ...] = (engine.config.codec, *engine.config.extra_codecs)
        self._live: LiveSession | None = None
        self._ended: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._ended_callbacks: list[SessionEnded] = []
        self._starting = asyncio.Lock()
        self._closing = False

    @property
    def current(self) -> LiveSession | None:
        """The session being served (it may have ended and not yet been finished)."""
        return self._live

    @property
    def closing(self) -> bool:
        """True once ``shutdown()`` began: new sessions are refused."""
        return self._closing

    def live(self, session_id: str) -> LiveSession | None:
        """The running session with that id, which clients may attach to."""
        live = self._live
        return live if live is not None and live.session_id == session_id and not live.finished else None

    def ended(self, session_id: str) -> dict[str, Any] | None:
        """The stats of a recently ended session (the last ``kept_sessions``)."""
        return self._ended.get(session_id)

    def command_state(self) -> CommandState:
        """The commands' current values: those the running session last reported, else (no session
        runs, so the model is idle) read from the model now; ``{}`` before the model is loaded."""
        live = self._live
        if live is not None and not live.finished:
            return live.command_state or {}
        model = self.engine.model
        return {} if model is None else command_state(self.engine.spec.commands, model)

    def on_session_ended(self, callback: SessionEnded) -> Callable[[], None]:
        """Call ``callback(live, reason)`` as each session finishes, before its clients are closed;
        returns a function that removes it."""
        self._ended_callbacks.append(callback)
        return lambda: self._ended_callbacks.remove(callback)

    # -- session lifecycle ---------------------------------------------------------------------------

    async def start_session(self) -> LiveSession:
        """Start a session; ``HubError``: ``ShuttingDown``, ``EngineNotReady`` (``loading`` with
        ``retry_after``, ``not_ready``, ``unhealthy``) or ``SessionBusy``."""
        async with self._starting:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if self._live is not None and self._live.session.ended:
                await self._finish(self._live)
            if self.engine.state == "loading":
                why = "the model is still loading; retry shortly"
                raise EngineNotReady(why, code="loading", retry_after=1)
            if self.engine.state == "error":  # for good: the process must be restarted
                kind = load_error_kind(self.engine)
                why = f"the model failed to load ({kind}); see the server log"
                raise EngineNotReady(why, code="load_failed", error=kind)
            try:
                # May wait for the previous session's last frames to drain (bounded by flush_timeout).
                session = await asyncio.to_thread(self.engine.session)
            except EngineBusy:
                current = self.engine.current_session
                if current is None or self.engine.state == "unhealthy":
                    # A session that ignores should_stop() still holds the engine: no session of the
                    # client's exists to join, so this is not "busy".
                    why = self.engine.state_reason or "the engine is unhealthy"
                    raise EngineNotReady(why, code="unhealthy") from None
                raise SessionBusy(
                    "a session is running; this engine serves one session at a time",
                    session_id=current.session_id,
                ) from None
            except (StateError, ClosedError):
                state = self.engine.state
                raise EngineNotReady(f"the engine cannot start a session while it is {state}") from None
            live = LiveSession(session, self.codecs[0], TrackTable(self.engine))
            self._live = live
            loop = asyncio.get_running_loop()

            def state_changed(values: CommandState) -> None:  # the session thread
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is told
                    loop.call_soon_threadsafe(self._state_changed, live, values)

            live.command_state = session.context.commands.watch_state(state_changed)
            self.metrics.sessions_started.inc()
            self.metrics.session_active.set(1)
            # The primary output is always on, and read with no client too, so the encoder never
            # waits on a full queue.
            self._output(live, live.primary)
            chunk_sent = self.metrics.audio_chunks_sent.labels
            live.audio = AudioFanOut(live, live.tracks.audio_output_indices(), lambda t: chunk_sent(t).inc())
            live.audio.start()
            live.message_task = asyncio.create_task(self._forward_messages(live))
            self._arm_orphan_timer(live)
            _log.info("session started", extra={"session_id": session.session_id})
        return live

    async def stop(self, live: LiveSession, reason: str) -> None:
        """Stop the session (bounded by the engine's stop grace); every caller waits for the same stop."""
        if live.stopping is None:
            _log.info("stopping session (%s)", reason, extra={"session_id": live.session_id})
            live.stopping = asyncio.create_task(_stop_in_thread(live.session, reason))
        await asyncio.shield(live.stopping)

    async def shutdown(self) -> None:
        """Refuse new sessions, stop the running one (reason ``shutdown``) and close its clients."""
        self._closing = True
        live = self._live
        if live is None:
            return
        if not live.session.ended:
            await self.stop(live, "shutdown")
        if live.message_task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(live.message_task), 2.0)
        await self._finish(live)

    def stats(self, live: LiveSession) -> dict[str, Any]:
        """``Session.stats()`` plus ``runtime``: what the hub handed to its clients. A crash shows as
        its kind and an ``error_id``; its text is in the server log under that id."""
        stats = live.session.stats()
        stats["error"], stats["error_id"] = live.public_error()
        stats["command_state"] = live.command_state or {}
        stats["runtime"] = {
            "clients": len(live.clients),
            "clients_by_kind": dict(collections.Counter(client.kind for client in live.clients)),
            "frames_sent": sum(output.frames_sent for output in live.outputs.values()),
            "frames_sent_by_codec": {codec: out.frames_sent for codec, out in live.outputs.items()},
            "client_frames_dropped": live.client_frames_dropped,
            "last_frame_index": live.last_frame_index,
            "audio_out": live.audio.stats() if live.audio is not None else {},
        }
        return stats

    # -- clients ---------------------------------------------------------------------------------------

    def attach(self, live: LiveSession, client: HubClient) -> None:
        """Register a client: ``SessionNotFound``, ``CodecUnavailable`` or ``TooManyClients``.

        Cancels the orphan timer; switches ``client.codec``'s encoder output on (counted: off again when
        its last client leaves) and, for VP8, asks for a keyframe so the new client starts at once.
        """
        sid = live.session_id
        if live.finished or self._live is not live:
            raise SessionNotFound(f"session {sid!r} has ended")
        codec = client.codec
        if codec not in self.codecs:
            raise CodecUnavailable(
                f"{client.kind} clients take {codec} packets; this engine encodes "
                f"{', '.join(self.codecs)} (add --engine.extra_codecs=[{codec}] or set "
                f"--engine.codec={codec})"
            )
        if len(live.clients) >= self.options.max_clients:
            raise TooManyClients(f"session {sid} has {len(live.clients)} clients, the most it takes")
        output = self._output(live, codec)
        if codec != live.primary and not output.enabled:
            live.session.set_output_enabled(codec, True)
            output.enabled = True
        output.clients = (*output.clients, client)
        live.clients = (*live.clients, client)
        self.metrics.clients.labels(client.kind).inc()
        if live.orphan_timer is not None:
            live.orphan_timer.cancel()
            live.orphan_timer = None
        if codec == "vp8":
            self.request_keyframe(live)
        if live.command_state is not None:  # what the controls show now, before any change
            try:
                client.on_message(state_message(live, live.command_state))
            except Exception:
                self._client_failed(live, client, "message")

    def detach(self, live: LiveSession, client: HubClient) -> None:
        """Unregister a client (idempotent); arms the orphan timer when no client is left."""
        if client in live.clients:
            live.clients = tuple(other for other in live.clients if other is not client)
            self.metrics.clients.labels(client.kind).dec()
            output = live.outputs.get(client.codec)
            if output is not None:
                output.clients = tuple(other for other in output.clients if other is not client)
                # Once finished the track's encoder may already serve the next session: leave it be.
                if output.enabled and not output.clients and not live.finished:
                    live.session.set_output_enabled(output.codec, False)
                    output.enabled = False
        self._arm_orphan_timer(live)

    def frame_dropped(self, live: LiveSession, client: HubClient) -> None:
        """A transport's buffer dropped a frame its slow client had not taken (stats and metrics)."""
        live.client_frames_dropped += 1
        self.metrics.client_frames_dropped.labels(client.kind).inc()

    def request_keyframe(self, live: LiveSession) -> None:
        """The next VP8 frame of the session's default track is a keyframe (a no-op for other codecs)."""
        if not live.finished:
            live.session.request_keyframe()

    def set_bitrate(self, live: LiveSession, bps: int) -> None:
        """The VP8 target bitrate of the session's default track, from the next frame on."""
        if not live.finished:
            live.session.set_bitrate(bps)

    # -- commands ----------------------------------------------------------------------------------------

    async def command(self, live: LiveSession, name: str, data: Any) -> Any:
        """Apply a command; the handler's return value. ``CommandRejected`` (its ``code``:
        ``unknown_command``, ``invalid_arguments`` naming each failing field, ``command_failed`` without
        the handler's internal text, ``session_ended``) or ``CommandTimeout``."""
        return await run_command(
            live.session, name, data, self.engine.spec.commands, self.metrics, self.options.command_timeout
        )

    # -- packets -------------------------------------------------------------------------------------------

    def _output(self, live: LiveSession, codec: str) -> CodecOutput:
        """The codec's output, its queue read from now until the session is finished."""
        output = live.outputs.get(codec)
        if output is None:
            output = CodecOutput(codec, live.session.packet_queue(codec=codec), self.metrics)
            live.outputs[codec] = output
            asyncio.get_running_loop().add_reader(output.queue.fileno(), self._on_packets, live, output)
            output.reading = True
        return output

    def _on_packets(self, live: LiveSession, output: CodecOutput) -> None:
        """A queue's eventfd fired (loop thread): fan every ready packet out to the clients of its codec."""
        if not output.reading:
            return
        output.queue.clear_event()  # before draining, so a packet published meanwhile wakes us again
        for _ in range(2 * output.queue.capacity):  # bounded: the loop serves other work between bursts
            try:
                packet = live.next_packet(output.codec)
            except ReactorTimeoutError:
                return
            except EncodeError as exc:
                # The encoder thread failed on one frame (of any output: the stash is the track's) and
                # goes on with the next; that frame is lost, counted in encode_errors. Reading goes on,
                # or the session would stream on with nothing reaching its clients.
                sid = live.session_id
                _log.error("a frame was lost to an encoder error: %s", exc, extra={"session_id": sid})
                continue
            except ReactorError:
                sid = live.session_id
                _log.exception("reading %s packets failed", output.codec, extra={"session_id": sid})
                self._stop_reading(output)
                return
            if packet is None:  # the session has ended and its last frame is out
                self._stop_reading(output)
                return
            with packet:
                self._fan_out(live, output, packet)
        # More than a burst was waiting: come back after the loop's other callbacks.
        asyncio.get_running_loop().call_soon(self._on_packets, live, output)

    def _fan_out(self, live: LiveSession, output: CodecOutput, packet: _C.Packet) -> None:
        output.frames_sent += 1
        output.sent.inc()
        output.latency.observe(max(0, time.monotonic_ns() - packet.t_commit_ns) / 1e9)
        live.last_frame_index = max(live.last_frame_index, packet.frame_index)
        for client in output.clients:
            try:
                client.on_packet(packet)
            except Exception:
                self._client_failed(live, client, "packet")

    def _stop_reading(self, output: CodecOutput) -> None:
        if output.reading:
            output.reading = False
            with contextlib.suppress(ValueError, OSError, ReactorError):
                asyncio.get_running_loop().remove_reader(output.queue.fileno())

    def _client_failed(self, live: LiveSession, client: HubClient, what: str) -> None:
        """A transport's callback raised: that client is closed and detached; the others go on."""
        sid = live.session_id
        _log.exception("a %s client failed on a %s; closing it", client.kind, what, extra={"session_id": sid})
        with contextlib.suppress(Exception):
            client.close(1011, "internal error")
        self.detach(live, client)

    # -- orphan timeout ----------------------------------------------------------------------------------

    def _arm_orphan_timer(self, live: LiveSession) -> None:
        if self.orphan_timeout <= 0 or live.clients or live.finished or live.orphan_timer is not None:
            return
        loop = asyncio.get_running_loop()
        live.orphan_timer = loop.call_later(self.orphan_timeout, self._orphaned, live)

    def _orphaned(self, live: LiveSession) -> None:
        live.orphan_timer = None
        if not live.clients and not live.finished:
            _log.info(
                "no client for %.1f s: stopping the session", self.orphan_timeout,
                extra={"session_id": live.session_id},
            )  # fmt: skip
            asyncio.get_running_loop().create_task(self.stop(live, "client_left"))

    # -- model messages and the end of a session -----------------------------------------------------------

    async def _forward_messages(self, live: LiveSession) -> None:
        """Model messages and session events to every client, until the session has ended."""
        try:
            while True:
                message = await asyncio.to_thread(live.session.next_message, 0.25)
                if message is None:
                    if live.session.ended:
                        break
                    continue
                if message.get("type") == "event" and message.get("error") is not None:
                    kind, error_id = live.public_error()
                    message = {**message, "error": kind, "error_id": error_id}
                if message.get("type") == "event" and message.get("event") == "ended":
                    message = {**message, "duration_s": duration_s(live.session)}
                for client in live.clients:
                    try:
                        client.on_message(message)
                    except Exception:
                        self._client_failed(live, client, "message")
        finally:
            await self._finish(live)

    def _state_changed(self, live: LiveSession, values: CommandState) -> None:
        """The model reported new current values (loop thread): every client is told."""
        if live.finished:
            return
        live.command_state = values
        message = state_message(live, values)
        for client in live.clients:
            try:
                client.on_message(message)
            except Exception:
                self._client_failed(live, client, "message")

    async def _finish(self, live: LiveSession) -> None:
        """After the end: last frames out, clients closed, the session kept for its stats (idempotent)."""
        if live.finished:
            return
        live.finished = True
        if live.audio is not None:
            live.audio.stop()  # the samples emitted before the end
        for output in live.outputs.values():
            self._on_packets(live, output)  # the frames published before the end
            self._stop_reading(output)
            if output.enabled:  # the next session finds the track's outputs as it found them
                live.session.set_output_enabled(output.codec, False)
                output.enabled = False
        if live.orphan_timer is not None:
            live.orphan_timer.cancel()
            live.orphan_timer = None
        session, sid = live.session, live.session_id
        reason = session.end_reason or ("unhealthy" if session.state == "unhealthy" else "ended")
        for callback in list(self._ended_callbacks):
            try:
                callback(live, reason)
            except Exception:
                _log.exception("a session-ended callback failed", extra={"session_id": sid})
        for client in live.clients:
            try:
                client.close(1000, f"session ended: {reason}")
            except Exception:
                _log.exception("closing a %s client failed", client.kind, extra={"session_id": sid})
        stats = self._ended[sid] = self.stats(live)
        while len(self._ended) > self.options.kept_sessions:
            self._ended.popitem(last=False)
        if self._live is live:
            self._live = None
        self.metrics.sessions_ended.labels(reason).inc()
        self.metrics.session_active.set(0)
        sent = stats["runtime"]["frames_sent"]
        _log.info("session ended (%s): %d packets sent", reason, sent, extra={"session_id": sid})


async def _stop_in_thread(session: Session, reason: str) -> None:
    await asyncio.to_thread(session.stop, reason)
