"""Wire version v1: the binary protobuf envelopes of reactor-sdk >= 1.0 (schema: proto/reactor_wire_v1.proto).

Each message is ``{request_id, kind, oneof payload}``. A command REQUEST (request id ``data_N``)
and a track or schema request (``ctrl_N``) each wait for a RESPONSE with the same request id, or
the client gives up after 10 s; model output sent on its own is a NOTIFICATION with no request id.
Command arguments and model messages travel as ``google.protobuf.Struct``, whose numbers are all
doubles: see :func:`struct_to_dict` for how they come back as ints.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from google.protobuf import struct_pb2, unknown_fields
from google.protobuf.message import DecodeError, Message

from reactor_engine.transports.webrtc.proto import reactor_wire_v1_pb2 as pb
from reactor_engine.transports.webrtc.wire import (
    PUBLISH_REFUSED,
    Channel,
    Command,
    FileUploaded,
    InboundControl,
    InboundData,
    Outbound,
    PauseTrack,
    PeerError,
    Ping,
    PublishTrack,
    RawMessage,
    RequestClip,
    RequestRecording,
    RequestSchema,
    ResumeTrack,
    Unknown,
    UnpublishTrack,
    UploadRef,
    Version,
    WireCodec,
    WireError,
    reply_message,
    shown,
)

__all__ = ["V1Codec", "dict_to_struct", "struct_to_dict"]

# Payload numbers reactor-sdk 1.13 and reactor-runtime 3.10 use that this schema leaves out.
_DATA_EXTRAS = {11: "request_step (stepped generation)"}
_CONTROL_EXTRAS = {19: "client_stats"}
# Doubles hold every integer up to 2**53 exactly; past it an integral double is left a float.
_EXACT_INT_LIMIT = 2**53

_Envelope = TypeVar("_Envelope", pb.DataClientMessage, pb.ControlClientMessage)


class V1Codec(WireCodec):
    """The v1 codec of one connection; see :class:`~reactor_engine.transports.webrtc.wire.WireCodec`."""

    version: ClassVar[Version] = "v1"

    # -- decode ------------------------------------------------------------------------------------

    def decode_data(self, message: RawMessage) -> InboundData:
        envelope = self._parse(message, "data", pb.DataClientMessage())
        request_id = envelope.request_id or None
        which = envelope.WhichOneof("payload")
        if which == "command":
            command = envelope.command
            uploads = {
                param: UploadRef(ref.upload_id, ref.name, ref.mime_type, ref.size)
                for param, ref in command.uploads.items()
            }
            # An empty name is passed on, not refused here, so that the command path answers the
            # request id with its "unknown command" error instead of leaving the client waiting.
            return Command(command.type, struct_to_dict(command.data), request_id, uploads)
        if which == "error":
            return PeerError(envelope.error.code, envelope.error.message, request_id)
        return Unknown(_unknown_payload(envelope, "data", _DATA_EXTRAS), request_id)

    def decode_control(self, message: RawMessage) -> InboundControl:
        envelope = self._parse(message, "control", pb.ControlClientMessage())
        request_id = envelope.request_id or None
        which = envelope.WhichOneof("payload")
        if which == "ping":
            return Ping()
        if which == "request_schema":
            return RequestSchema(request_id)
        if which == "publish_track":
            return PublishTrack(envelope.publish_track.name, request_id)
        if which == "pause_track":
            return PauseTrack(envelope.pause_track.name)
        if which == "resume_track":
            return ResumeTrack(envelope.resume_track.name)
        if which == "unpublish_track":
            return UnpublishTrack(envelope.unpublish_track.name)
        if which == "request_clip":
            return RequestClip(envelope.request_clip.duration_seconds, request_id)
        if which == "request_recording":
            return RequestRecording(request_id)
        if which == "file_uploaded":
            upload = envelope.file_uploaded
            return FileUploaded(upload.upload_id, upload.name, upload.mime_type, upload.size)
        if which == "error":
            return PeerError(envelope.error.code, envelope.error.message, request_id)
        return Unknown(_unknown_payload(envelope, "control", _CONTROL_EXTRAS), request_id)

    def _parse(self, message: RawMessage, channel: Channel, envelope: _Envelope) -> _Envelope:
        self._check_size(message, channel)
        if isinstance(message, str):
            raise WireError(f"v1 {channel} channel messages are binary protobuf; got a text message")
        try:
            envelope.ParseFromString(bytes(message))
        except DecodeError as exc:
            raise WireError(
                f"v1 {channel} channel message is not a protobuf {type(envelope).__name__}: {exc}"
            ) from None
        return envelope

    # -- encode ------------------------------------------------------------------------------------

    def encode_command_reply(self, request_id: str | None, result: Any, *, command: str) -> Outbound | None:
        if result is None:
            if request_id is None:
                return None
            # The bodyless ACK: reactor-sdk's send_command then returns None.
            return _data(pb.DataServerMessage(request_id=request_id, kind=pb.MESSAGE_KIND_RESPONSE))
        kind, data = reply_message(command, result)
        if request_id is None:  # a command sent without a request id is answered like a broadcast
            return self.encode_model_message(kind, data)
        return _data(
            pb.DataServerMessage(
                request_id=request_id,
                kind=pb.MESSAGE_KIND_RESPONSE,
                message=pb.ModelMessage(type=kind, data=dict_to_struct(data)),
            )
        )

    def encode_command_error(self, request_id: str | None, code: str, message: str) -> Outbound | None:
        if request_id is None:
            return None
        return _data(
            pb.DataServerMessage(
                request_id=request_id,
                kind=pb.MESSAGE_KIND_RESPONSE,
                error=pb.Error(code=code, message=message),
            )
        )

    def encode_model_message(self, type: str, data: Mapping[str, Any]) -> Outbound:
        return _data(
            pb.DataServerMessage(
                kind=pb.MESSAGE_KIND_NOTIFICATION,
                message=pb.ModelMessage(type=type, data=dict_to_struct(data)),
            )
        )

    def encode_schema(self, schema: Mapping[str, Any], *, request_id: str | None = None) -> Outbound:
        return _control(
            request_id, pb.ControlServerMessage(model_schema=pb.ModelSchema(openapi=dict_to_struct(schema)))
        )

    def encode_capabilities(self, capabilities: Mapping[str, Any]) -> Outbound | None:
        return None  # v1 clients read capabilities from the session descriptor only

    def encode_publish_track_response(self, request_id: str | None, name: str) -> Outbound:
        return _control(request_id, pb.ControlServerMessage(publish_track=pb.PublishTrackResponse(name=name)))

    def encode_publish_refused(self, request_id: str | None, name: str, message: str) -> Outbound:
        return self.encode_control_error(request_id, PUBLISH_REFUSED, message)

    def encode_control_error(self, request_id: str | None, code: str, message: str) -> Outbound:
        return _control(request_id, pb.ControlServerMessage(error=pb.Error(code=code, message=message)))

    def encode_clip_failed(self, request_id: str | None, reason: str) -> Outbound:
        return _control(request_id, pb.ControlServerMessage(clip_failed=pb.ClipFailed(reason=reason)))

    def encode_session_ended(self, reason: str) -> Outbound:
        return _control(None, pb.ControlServerMessage(session_ended=pb.SessionEnded(reason=reason)))


def _data(envelope: pb.DataServerMessage) -> Outbound:
    return Outbound("data", envelope.SerializeToString(), True)


def _control(request_id: str | None, envelope: pb.ControlServerMessage) -> Outbound:
    """Send ``envelope`` as the RESPONSE to ``request_id``, or as a NOTIFICATION when there is none."""
    envelope.request_id = request_id or ""
    envelope.kind = pb.MESSAGE_KIND_NOTIFICATION if request_id is None else pb.MESSAGE_KIND_RESPONSE
    return Outbound("control", envelope.SerializeToString(), True)


def _unknown_payload(envelope: Message, channel: Channel, extras: Mapping[int, str]) -> str:
    """Name what a message without a known payload carried instead, for the peer's log."""
    fields = unknown_fields.UnknownFieldSet(envelope)
    numbers_seen = sorted({fields[i].field_number for i in range(len(fields))})
    if not numbers_seen:
        return f"v1 {channel} message with no payload"
    named = ", ".join(f"{n} ({extras[n]})" if n in extras else str(n) for n in numbers_seen)
    return f"v1 {channel} message with unknown payload field {named}"


# -- google.protobuf.Struct <-> dict ---------------------------------------------------------------


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python, with every integral number an ``int``.

    A Struct has only doubles, so ``{"steps": 4}`` arrives as ``4.0``. Command arguments are
    validated strictly (``reactor_engine.commands``: pydantic strict mode, where an ``int``
    parameter refuses ``4.0`` but a ``float`` one takes ``4``), so each integral double is made an
    ``int``: that keeps an ``int`` parameter working and costs a ``float`` one nothing. Past 2**53,
    where a double no longer holds each integer, and for NaN or infinities, the float is kept.
    """
    return {key: _from_value(value) for key, value in struct.fields.items()}


def _from_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= _EXACT_INT_LIMIT else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_from_value(item) for item in value.list_value.values]
    return None  # null_value, or a Value with nothing set


def dict_to_struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    """A mapping of JSON-like values as a Struct; raises ``WireError`` for one it cannot hold.

    Like the JSON the other transports write: tuples are lists, keys that are numbers, booleans
    or ``None`` are written as JSON writes them, and a value of any other type is its ``str``.
    """
    struct = struct_pb2.Struct()
    try:
        _fill_struct(struct, data)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise WireError(f"cannot write the message as a protobuf Struct: {exc}") from None
    return struct


def _fill_struct(struct: struct_pb2.Struct, data: Mapping[Any, Any]) -> None:
    for key, item in data.items():
        _fill_value(struct.fields[key if isinstance(key, str) else _json_key(key)], item)


def _json_key(key: Any) -> str:
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}: {shown(key)}")


def _fill_value(target: struct_pb2.Value, value: Any) -> None:
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, numbers.Real):  # int, float and numpy's scalars
        target.number_value = float(value)
    elif isinstance(value, Mapping):
        target.struct_value.SetInParent()  # an empty object is still an object, not null
        _fill_struct(target.struct_value, value)
    elif isinstance(value, list | tuple):
        target.list_value.SetInParent()
        for item in value:
            _fill_value(target.list_value.values.add(), item)
    else:
        target.string_value = str(value)
