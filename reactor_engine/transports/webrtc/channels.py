"""One peer's data channels: ``data`` and ``control`` by label, the wire codec told by the first message,
commands to the session hub and their replies, model messages out.

Threads: the loop thread only (the peer posts each message here from libwebrtc's thread). Malformed
and oversized messages are counted and logged (the first few), never fatal; a payload this engine
does not know is ignored (and refused when it awaits an answer).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import reactor_webrtc as rtc

from reactor_engine.transports.hub import HubError
from reactor_engine.transports.webrtc import wire

if TYPE_CHECKING:
    from reactor_engine.transports.hub import LiveSession, SessionHub

__all__ = ["PeerChannels", "TrackControl", "model_message"]

_log = logging.getLogger("reactor_engine.webrtc")

_WIRE_ERRORS_LOGGED = 5  # per peer: a flood of garbage is counted, not logged line by line
_MAX_COMMANDS_IN_FLIGHT = 32
_EARLY_MESSAGES = 32  # model messages kept while the client's wire version is not known yet


class TrackControl(Protocol):
    """What the channels ask of their peer (loop thread)."""

    def gate(self) -> None:
        """The client has a control channel or speaks v1: its video waits for ``resume_track``."""

    def track_verb(self, verb: wire.ResumeTrack | wire.PauseTrack) -> None:
        """The client paused or resumed a track."""

    def publish_refusal(self, name: str) -> str | None:
        """``None`` when the client may publish ``name`` (a declared input), else why it may not."""


def ignore(*_args: object) -> None:
    """Stands in for a callback once the peer is closed (it holds no reference to the peer)."""


class PeerChannels:
    """The ``data`` and ``control`` channels of peer ``cid`` and the wire version they speak."""

    def __init__(
        self,
        cid: int,
        hub: SessionHub,
        live: LiveSession,
        max_message_bytes: int,
        peer: TrackControl,
    ) -> None:
        self.cid = cid
        self._hub = hub
        self._live = live
        self._max_message_bytes = max_message_bytes
        self._peer = peer
        self._loop = asyncio.get_running_loop()
        self.channels: dict[str, rtc.DataChannel] = {}
        self.wire: wire.WireCodec | None = None
        self._early: collections.deque[tuple[str, Mapping[str, Any]]] = collections.deque(
            maxlen=_EARLY_MESSAGES
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.messages_in = 0
        self.messages_out = 0
        self.messages_dropped = 0
        self.wire_errors = 0
        self.commands = 0

    # -- channels ------------------------------------------------------------------------------------

    def add(self, label: str, channel: rtc.DataChannel) -> None:
        """A channel the client opened; one not in the protocol (or a second of a label) is ignored."""
        if self.closed or label not in ("data", "control") or label in self.channels:
            if not self.closed:
                _log.info(
                    "peer %d: data channel %r ignored (the protocol has 'data' and 'control')",
                    self.cid,
                    label,
                )
            channel.on_message(ignore)
            channel.on_close(ignore)
            return
        self.channels[label] = channel
        if label == "control":
            self._peer.gate()
        self._flush_early()

    def assume_v0(self) -> None:
        """No control channel and nothing said yet: js-sdk 2.9, whose first ping comes 5 s later."""
        if self.wire is None:
            self.wire = wire.codec_for("v0", max_message_bytes=self._max_message_bytes)
            self._flush_early()

    # -- inbound ---------------------------------------------------------------------------------------

    def receive(self, label: str, data: bytes, binary: bool) -> None:
        if self.closed:
            return
        self.messages_in += 1
        message: wire.RawMessage = data
        if not binary:
            try:
                message = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._wire_error(label, wire.WireError(f"a text message is not UTF-8: {exc}"))
                return
        if self.wire is None:
            version = wire.sniff(message)
            self.wire = wire.codec_for(version, max_message_bytes=self._max_message_bytes)
            _log.info("peer %d speaks %s", self.cid, version)
            if version == "v1":
                self._peer.gate()
            self._flush_early()
        try:
            inbound = self.wire.decode_data(message) if label == "data" else self.wire.decode_control(message)
        except wire.WireError as exc:
            self._wire_error(label, exc)
            return
        self._dispatch(self.wire, inbound)

    def _wire_error(self, label: str, exc: wire.WireError) -> None:
        self.wire_errors += 1
        if self.wire_errors <= _WIRE_ERRORS_LOGGED:
            _log.warning("peer %d: bad message on its %s channel, ignored: %s", self.cid, label, exc)
        elif self.wire_errors == _WIRE_ERRORS_LOGGED + 1:
            _log.warning("peer %d: more bad messages; counted in its stats, no longer logged", self.cid)

    def _dispatch(self, codec: wire.WireCodec, inbound: wire.Inbound) -> None:
        if isinstance(inbound, wire.Command):
            self._command(codec, inbound)
        elif isinstance(inbound, wire.ResumeTrack | wire.PauseTrack):
            self._peer.track_verb(inbound)
        elif isinstance(inbound, wire.RequestSchema):
            self.send(codec.encode_schema(self._schema(), request_id=inbound.request_id))
        elif isinstance(inbound, wire.RequestCapabilities):
            self.send(codec.encode_capabilities(self._hub.engine.capabilities()))
        elif isinstance(inbound, wire.PublishTrack):
            refusal = self._peer.publish_refusal(inbound.name)
            if refusal is None:
                self.send(codec.encode_publish_track_response(inbound.request_id, inbound.name))
            else:
                _log.info("peer %d: publish_track refused: %s", self.cid, refusal)
                self.send(codec.encode_publish_refused(inbound.request_id, inbound.name, refusal))
        elif isinstance(inbound, wire.RequestClip | wire.RequestRecording):
            self.send(codec.encode_clip_failed(inbound.request_id, "this server does not record sessions"))
        elif isinstance(inbound, wire.PeerError):
            _log.info("peer %d reports an error: %s: %s", self.cid, inbound.code, inbound.message)
        elif isinstance(inbound, wire.Unknown):
            _log.debug("peer %d: %s ignored", self.cid, inbound.what)
            if inbound.request_id:
                why = f"{inbound.what} is not supported"
                self.send(codec.encode_command_error(inbound.request_id, "unsupported", why))
        # Ping (liveness is any message), UnpublishTrack, FileUploaded: nothing to do.

    def _command(self, codec: wire.WireCodec, command: wire.Command) -> None:
        self.commands += 1
        if command.uploads:
            why = "file uploads are not supported by this server"
            self.send(codec.encode_command_error(command.request_id, "invalid_arguments", why))
            return
        if len(self._tasks) >= _MAX_COMMANDS_IN_FLIGHT:
            why = f"more than {_MAX_COMMANDS_IN_FLIGHT} commands of this client are waiting; retry"
            self.send(codec.encode_command_error(command.request_id, "too_many_requests", why))
            return
        task = self._loop.create_task(self._run_command(codec, command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_command(self, codec: wire.WireCodec, command: wire.Command) -> None:
        try:
            result = await self._hub.command(self._live, command.name, command.data)
        except HubError as exc:
            self.send(codec.encode_command_error(command.request_id, exc.code, str(exc)))
            return
        try:
            self.send(codec.encode_command_reply(command.request_id, result, command=command.name))
        except wire.WireError as exc:
            self.send(codec.encode_command_error(command.request_id, "command_failed", str(exc)))

    def _schema(self) -> dict[str, Any]:
        engine = self._hub.engine
        return {
            "model": engine.name,
            "commands": engine.command_schema(),
            "capabilities": engine.capabilities(),
        }

    # -- outbound --------------------------------------------------------------------------------------

    def send(self, out: wire.Outbound | None) -> bool:
        """Send ``out`` on its channel; ``False`` (counted as dropped) where it cannot go."""
        if out is None or self.closed:
            return False
        channel = self.channels.get(out.channel)
        if channel is None or channel.state() != rtc.DataChannelState.Open:
            self.messages_dropped += 1
            return False
        payload = out.payload.encode("utf-8") if isinstance(out.payload, str) else out.payload
        try:
            channel.send(payload, out.binary)
        except RuntimeError as exc:  # DataChannelQueueFull, DataChannelMessageTooLarge, closed meanwhile
            self.messages_dropped += 1
            _log.info(
                "peer %d: a %d-byte message was not sent on %s: %s", self.cid, len(payload), out.channel, exc
            )
            return False
        self.messages_out += 1
        return True

    def media_error(self, code: str, message: str) -> None:
        """Tell the client its media was refused (an ``Error`` notification on ``control``); dropped,
        counted, where the client has no channel for it."""
        if self.wire is not None:
            self.send(self.wire.encode_control_error(None, code, message))
        else:
            self.messages_dropped += 1

    def model_message(self, payload: Any) -> None:
        """A model's ``ctx.send(payload)``: sent now, or kept until the client's wire version is known."""
        kind, data = model_message(payload)
        if self.wire is None or "data" not in self.channels:
            if len(self._early) == self._early.maxlen:
                self.messages_dropped += 1
            self._early.append((kind, data))
            return
        try:
            self.send(self.wire.encode_model_message(kind, data))
        except wire.WireError as exc:
            self.messages_dropped += 1
            _log.warning("peer %d: a model message could not be encoded: %s", self.cid, exc)

    def _flush_early(self) -> None:
        if self.wire is None or "data" not in self.channels:
            return
        while self._early:
            kind, data = self._early.popleft()
            self.send(self.wire.encode_model_message(kind, data))

    def session_ended(self, reason: str) -> rtc.DataChannel | None:
        """Tell the client the session ended; the channel the notice went on (to drain), or ``None``."""
        if self.wire is None and "control" not in self.channels:
            self.assume_v0()  # js-sdk 2.9, before its first ping
        if self.wire is None:
            return None
        out = self.wire.encode_session_ended(reason)
        return self.channels.get(out.channel) if self.send(out) else None

    def close(self) -> None:
        """No more messages either way; commands still waiting are cancelled."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()

    def release(self) -> None:
        """Clear the channels' callbacks (they hold the peer: a cycle Python cannot see) and drop them."""
        for channel in self.channels.values():
            channel.on_message(ignore)
            channel.on_close(ignore)
        self.channels = {}

    def stats(self) -> dict[str, Any]:
        return {
            "wire": self.wire.version if self.wire is not None else None,
            "channels": sorted(self.channels),
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "messages_dropped": self.messages_dropped,
            "wire_errors": self.wire_errors,
            "commands": self.commands,
        }


def model_message(payload: Any) -> tuple[str, Mapping[str, Any]]:
    """The ``(type, data)`` of a model's ``ctx.send(payload)``: ``{"type", "data"}`` as it is; otherwise
    the payload's ``type`` (or ``"message"``) and the whole payload as data."""
    if not isinstance(payload, Mapping):
        return "message", {"value": payload}
    kind = payload.get("type")
    data = payload.get("data")
    if isinstance(kind, str) and kind and set(payload) <= {"type", "data"} and isinstance(data, Mapping):
        return kind, data
    return (kind if isinstance(kind, str) and kind else "message"), payload
