"""Data-channel messages of the Reactor local protocol: the typed inbound messages and the codec face.

A WebRTC connection speaks one of two wire versions on its ``data`` and ``control`` channels:
v0, the JSON text of reactor-sdk 0.8 and @reactor-team/js-sdk, and v1, the binary protobuf of
reactor-sdk >= 1.0. Which one is told by the first message the client sends (:func:`sniff`); the
connection then keeps a codec of that version (:func:`codec_for`) that turns each inbound message
into one of the frozen dataclasses below and each outbound event into an :class:`Outbound`.

Pure Python, no I/O and no shared state: a codec belongs to one connection and is used on the
asyncio loop thread that serves it. Malformed input raises :class:`WireError`; input that is well
formed but unknown to this engine (a newer client's payload) decodes to :class:`Unknown`, so the
peer can log it and carry on instead of dropping the connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

from reactor_engine.errors import InvalidArgumentError, ReactorError

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "PUBLISH_REFUSED",
    "Channel",
    "Command",
    "FileUploaded",
    "Inbound",
    "InboundControl",
    "InboundData",
    "Outbound",
    "PauseTrack",
    "PeerError",
    "Ping",
    "PublishTrack",
    "RawMessage",
    "RequestCapabilities",
    "RequestClip",
    "RequestRecording",
    "RequestSchema",
    "ResumeTrack",
    "Unknown",
    "UnpublishTrack",
    "UploadRef",
    "Version",
    "WireCodec",
    "WireError",
    "codec_for",
    "sniff",
]

Version = Literal["v0", "v1"]
Channel = Literal["data", "control"]
# What a data channel hands over: text, or bytes in any buffer (reactor-webrtc gives bytes).
RawMessage = bytes | bytearray | memoryview | str

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024  # as the WebSocket protocol's max_message_bytes
# The code reactor-runtime 3.x puts on a refused publish_track; no client branches on it.
PUBLISH_REFUSED = "publish_refused"


class WireError(ReactorError, ValueError):
    """A data-channel message is malformed: not JSON / protobuf, of the wrong shape, or too large."""


# -- inbound messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadRef:
    """A file uploaded over HTTP and named by a command argument."""

    upload_id: str
    name: str = ""
    mime_type: str = ""
    size: int = 0


@dataclass(frozen=True)
class Command:
    """A model command. ``request_id`` is set when the client awaits a reply (v1), else ``None``."""

    name: str
    data: dict[str, Any]
    request_id: str | None = None
    uploads: dict[str, UploadRef] = field(default_factory=dict)


@dataclass(frozen=True)
class Ping:
    """Client liveness (every 10 s from reactor-sdk 1.x, every 5 s from the JS SDK); no reply."""


@dataclass(frozen=True)
class RequestSchema:
    """The client asks for the model's schema; answer with ``encode_schema(..., request_id=)``."""

    request_id: str | None = None


@dataclass(frozen=True)
class RequestCapabilities:
    """v0 only (the JS SDK's command panel): answer with ``encode_capabilities``."""


@dataclass(frozen=True)
class PublishTrack:
    """The client asks to send on one of its sendonly tracks; it awaits a response."""

    name: str
    request_id: str | None = None


@dataclass(frozen=True)
class PauseTrack:
    """Stop sending this track to the client."""

    name: str


@dataclass(frozen=True)
class ResumeTrack:
    """Start (again) sending this track to the client."""

    name: str


@dataclass(frozen=True)
class UnpublishTrack:
    """The client stops sending on a track it had published."""

    name: str


@dataclass(frozen=True)
class RequestClip:
    """A clip of the last ``duration_seconds`` of the session."""

    duration_seconds: float
    request_id: str | None = None


@dataclass(frozen=True)
class FileUploaded:
    """The client finished an upload."""

    upload_id: str
    name: str = ""
    mime_type: str = ""
    size: int = 0


@dataclass(frozen=True)
class RequestRecording:
    """A recording of the whole session."""

    request_id: str | None = None


@dataclass(frozen=True)
class PeerError:
    """The client reports an error (a v1 ``Error`` payload)."""

    code: str
    message: str
    request_id: str | None = None


@dataclass(frozen=True)
class Unknown:
    """Well formed but not known here; ``what`` names it. Answer a ``request_id`` with an error."""

    what: str
    request_id: str | None = None


InboundData = (
    Command
    | Ping
    | RequestSchema
    | RequestCapabilities
    | FileUploaded
    | RequestClip
    | RequestRecording
    | PeerError
    | Unknown
)
InboundControl = (
    Ping
    | RequestSchema
    | FileUploaded
    | RequestClip
    | RequestRecording
    | PublishTrack
    | PauseTrack
    | ResumeTrack
    | UnpublishTrack
    | PeerError
    | Unknown
)
Inbound = InboundData | InboundControl


class Outbound(NamedTuple):
    """One message to send: on which channel, the payload, and whether to send it as binary."""

    channel: Channel
    payload: bytes | str
    binary: bool


# -- version and codec -------------------------------------------------------------------------------


def sniff(first_message: RawMessage) -> Version:
    """The wire version of a connection, told by the first message it sent on either channel.

    Text, or bytes whose first non-blank byte opens a JSON document (``{`` or ``[``), is v0; any
    other bytes are v1 protobuf, as reactor-runtime 3.x decides. A v1 envelope starts with the
    request id's tag, 0x0A (a newline), then its length, so only a request id of exactly 91 or
    123 bytes would read as JSON; the clients' ids (``data_N``, ``ctrl_N``) are far shorter.
    """
    if isinstance(first_message, str):
        return "v0"
    head = bytes(first_message[:64]).lstrip()
    return "v0" if head[:1] in (b"{", b"[") else "v1"


class WireCodec(ABC):
    """One connection's codec for its wire version; decoders raise ``WireError`` for bad input.

    Every encoder returns the :class:`Outbound` to send, or ``None`` where this version has no
    such message (v0 acknowledges nothing). The channel is part of the answer because v0 carries
    the platform messages (schema, session end, clips) on ``data``, where v1 uses ``control``.
    """

    version: ClassVar[Version]

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
            raise InvalidArgumentError(
                f"max_message_bytes must be an int; got {type(max_message_bytes).__name__}"
            )
        if max_message_bytes < 1:
            raise InvalidArgumentError(f"max_message_bytes must be >= 1; got {max_message_bytes}")
        self.max_message_bytes = max_message_bytes

    def _check_size(self, message: RawMessage, channel: Channel) -> None:
        """Refuse a message over the limit before any parsing is spent on it."""
        limit = self.max_message_bytes
        if isinstance(message, str):
            # A character is at least one UTF-8 byte, so the encode is skipped for the long ones.
            size = len(message) if len(message) > limit else len(message.encode("utf-8", "surrogatepass"))
        else:
            size = memoryview(message).nbytes
        if size > limit:
            raise WireError(f"{channel} channel message is {size} bytes; the limit is {limit}")

    @abstractmethod
    def decode_data(self, message: RawMessage) -> InboundData:
        """Decode one message the client sent on the ``data`` channel."""

    @abstractmethod
    def decode_control(self, message: RawMessage) -> InboundControl:
        """Decode one message the client sent on the ``control`` channel."""

    @abstractmethod
    def encode_command_reply(self, request_id: str | None, result: Any, *, command: str) -> Outbound | None:
        """The answer to a command whose handler returned ``result`` (``None``: nothing)."""

    @abstractmethod
    def encode_command_error(self, request_id: str | None, code: str, message: str) -> Outbound | None:
        """The answer to a command that was refused or failed."""

    @abstractmethod
    def encode_model_message(self, type: str, data: Mapping[str, Any]) -> Outbound:
        """A message the model sent on its own (``ctx.send``)."""

    @abstractmethod
    def encode_schema(self, schema: Mapping[str, Any], *, request_id: str | None = None) -> Outbound:
        """The model's schema, answering a ``RequestSchema``."""

    @abstractmethod
    def encode_capabilities(self, capabilities: Mapping[str, Any]) -> Outbound | None:
        """The 1.7.5 capabilities, answering a ``RequestCapabilities`` (v0 only)."""

    @abstractmethod
    def encode_publish_track_response(self, request_id: str | None, name: str) -> Outbound:
        """Grant a ``PublishTrack``."""

    @abstractmethod
    def encode_publish_refused(self, request_id: str | None, name: str, message: str) -> Outbound:
        """Refuse a ``PublishTrack`` (code ``PUBLISH_REFUSED``)."""

    @abstractmethod
    def encode_control_error(self, request_id: str | None, code: str, message: str) -> Outbound:
        """Refuse a control-channel request (an ``Unknown`` with a request id, from ``decode_control``)."""

    @abstractmethod
    def encode_clip_failed(self, request_id: str | None, reason: str) -> Outbound:
        """Refuse a ``RequestClip`` or ``RequestRecording``."""

    @abstractmethod
    def encode_session_ended(self, reason: str) -> Outbound:
        """Tell the client the session has ended, before the connection closes."""


def codec_for(version: Version, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> WireCodec:
    """A new codec for one connection that speaks ``version`` (see :func:`sniff`)."""
    # Imported here: both codec modules build on the types above.
    from reactor_engine.transports.webrtc.wire_v0 import V0Codec
    from reactor_engine.transports.webrtc.wire_v1 import V1Codec

    if version == "v0":
        return V0Codec(max_message_bytes=max_message_bytes)
    if version == "v1":
        return V1Codec(max_message_bytes=max_message_bytes)
    raise InvalidArgumentError(f"wire version must be 'v0' or 'v1'; got {version!r}")


def reply_message(command: str, result: Any) -> tuple[str, Mapping[str, Any]]:
    """The ``(type, data)`` model message that carries a command handler's non-``None`` result.

    A result shaped as a model message, ``{"type": str, "data": {...}}`` (what a reactor-runtime
    3.x handler returns), goes as it is; reactor-sdk's ``send_command`` returns that same pair.
    Any other mapping becomes the data of a message typed with the command's name, and a value
    that is not a mapping is put under ``"result"``, since a message's data is an object.
    """
    if isinstance(result, Mapping):
        kind, data = result.get("type"), result.get("data", {})
        if set(result) <= {"type", "data"} and isinstance(kind, str) and kind and isinstance(data, Mapping):
            return kind, data
        return command, result
    return command, {"result": result}


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for an error that echoes what a client sent."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
