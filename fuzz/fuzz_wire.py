"""Fuzz target: the WebRTC data-channel codecs (``reactor_engine.transports.webrtc.wire``).

``sniff()`` on any first message, then the codec of the sniffed (or the other) version decodes
messages on the data and control channels: raw bytes and text, v0 JSON envelopes and v1 protobuf
envelopes built from generated fields (then perhaps cut or flipped). Only ``WireError`` may escape.
A decoded message is one of the declared types; a decoded command's data goes back out through the
encoders (reply, model message), whose output must parse again as what the clients read.
"""

from __future__ import annotations

import json
import sys
from typing import Any, get_args

from _common import INTERESTING_FLOATS, INTERESTING_INTS, Bytes, expect, json_value, main

from reactor_engine.transports.webrtc import wire
from reactor_engine.transports.webrtc.proto import reactor_wire_v1_pb2 as pb
from reactor_engine.transports.webrtc.wire import Command, Outbound, WireError, codec_for, sniff
from reactor_engine.transports.webrtc.wire_v1 import dict_to_struct

DATA_TYPES = get_args(wire.InboundData)
CONTROL_TYPES = get_args(wire.InboundControl)
SCOPES = ("application", "runtime", "platform", "")
RUNTIME_TYPES = (
    "ping",
    "requestSchema",
    "requestCapabilities",
    "requestRecording",
    "requestClip",
    "fileUploaded",
    "x",
)
CONTROL_PAYLOADS = ("ping", "request_schema", "file_uploaded", "request_clip", "request_recording",
                    "publish_track", "pause_track", "resume_track", "unpublish_track", "error")  # fmt: skip
LIMITS = (wire.DEFAULT_MAX_MESSAGE_BYTES, 1, 16, 256)


def v0_message(src: Bytes, channel: str) -> str:
    """A v0 envelope: mostly the right shape, with generated values."""
    if channel == "data":
        scope = src.pick(SCOPES)
        inner: Any = {"type": src.pick(RUNTIME_TYPES) if scope == "runtime" else src.text(16)}
        if src.flag():
            inner["data"] = json_value(src, max_depth=4)
            if inner["type"] == "requestClip" and src.flag():
                number = src.pick((*INTERESTING_INTS, *INTERESTING_FLOATS))
                inner["data"] = {"duration_seconds": number if src.flag() else json_value(src, max_depth=1)}
            if inner["type"] == "fileUploaded" and src.flag():
                inner["data"] = {
                    k: json_value(src, max_depth=1) for k in ("upload_id", "name", "mime_type", "size")
                }
        if src.flag():
            inner["uploads"] = {src.text(8): json_value(src, max_depth=2) for _ in range(src.int_in(0, 2))}
        envelope: Any = {"scope": scope, "data": inner if src.byte() % 8 else json_value(src, max_depth=2)}
    else:
        kind = src.pick(("request", "notification", "response", ""))
        envelope = {"type": kind, "method": src.pick(("publish_track", "x")), "event": src.pick(
            ("pause_track", "resume_track", "unpublish_track", "x"))}  # fmt: skip
        if src.flag():
            envelope["request_id"] = json_value(src, max_depth=1)
        envelope["data"] = (
            {"name": json_value(src, max_depth=1)} if src.flag() else json_value(src, max_depth=2)
        )
    try:
        return json.dumps(envelope)
    except ValueError:  # an int too long to print: no client can send it
        return "{}"


def struct_data(src: Bytes) -> dict[str, Any]:
    value = json_value(src, max_depth=4)
    return value if isinstance(value, dict) else {"value": value}


def v1_message(src: Bytes, channel: str) -> bytes:
    """A v1 envelope of generated fields, serialized."""
    envelope: Any
    if channel == "data":
        envelope = pb.DataClientMessage(request_id=src.text(12, False), kind=src.int_in(0, 4))  # type: ignore[arg-type]
        if src.byte() % 4:
            envelope.command.type = src.text(16, False)
            with expect(WireError):
                envelope.command.data.CopyFrom(dict_to_struct(struct_data(src)))
            for _ in range(src.int_in(0, 2)):
                ref = envelope.command.uploads[src.text(8, False)]
                ref.upload_id, ref.name, ref.size = (
                    src.text(8, False),
                    src.text(8, False),
                    src.int_in(-(2**63), 2**63 - 1),
                )
        else:
            envelope.error.code, envelope.error.message = src.text(8, False), src.text(16, False)
    else:
        envelope = pb.ControlClientMessage(request_id=src.text(12, False), kind=src.int_in(0, 4))  # type: ignore[arg-type]
        payload = getattr(envelope, src.pick(CONTROL_PAYLOADS))
        payload.SetInParent()
        for field in payload.DESCRIPTOR.fields:
            if field.type == field.TYPE_STRING:
                setattr(payload, field.name, src.text(16, False))
            elif field.type == field.TYPE_DOUBLE:
                setattr(payload, field.name, src.double())
            elif field.type == field.TYPE_INT64:
                setattr(payload, field.name, src.int_in(-(2**63), 2**63 - 1))
    raw = bytearray(envelope.SerializeToString())
    if raw and src.byte() % 4 == 0:  # damage it: cut, or flip a byte
        at = src.int_in(0, len(raw) - 1)
        if src.flag():
            del raw[at:]
        else:
            raw[at] ^= src.byte() or 1
    return bytes(raw)


def check_out(out: Outbound | None, version: str) -> None:
    """An encoder's output is what that version's clients parse."""
    if out is None:
        return
    assert out.channel in ("data", "control"), out
    if version == "v0":
        assert isinstance(out.payload, str), out
        assert not out.binary, out

        def no_constants(name: str) -> None:
            raise AssertionError(f"v0 output holds {name}, which JSON.parse refuses: {out.payload[:200]!r}")

        assert isinstance(json.loads(out.payload, parse_constant=no_constants), dict), out
    else:
        assert isinstance(out.payload, bytes), out
        assert out.binary, out
        message = pb.DataServerMessage() if out.channel == "data" else pb.ControlServerMessage()
        message.ParseFromString(out.payload)


def echo(codec: Any, decoded: Any) -> None:
    """Send a decoded command's data back out as its reply and as a model message."""
    if not isinstance(decoded, Command):
        return
    with expect(WireError):
        check_out(
            codec.encode_command_reply(decoded.request_id, decoded.data, command=decoded.name), codec.version
        )
    with expect(WireError):
        check_out(codec.encode_model_message(decoded.name, decoded.data), codec.version)
    with expect(WireError):
        check_out(
            codec.encode_command_error(decoded.request_id, "invalid_arguments", decoded.name), codec.version
        )


def TestOneInput(data: bytes) -> None:
    src = Bytes(data)
    mode = src.byte() % 4
    channel = src.pick(("data", "control"))
    limit = src.pick(LIMITS) if src.byte() % 4 == 0 else wire.DEFAULT_MAX_MESSAGE_BYTES
    other_version = src.byte() % 8 == 7  # now and then the codec of the version not sniffed
    message: Any
    if mode == 0:
        message = src.rest()
    elif mode == 1:
        message = src.rest().decode("utf-8", "replace")
    elif mode == 2:
        message = v0_message(src, channel)
        if src.flag():
            message = message.encode()
    else:
        message = v1_message(src, channel)
    if isinstance(message, bytes) and message and message[0] & 1:
        message = bytearray(message) if message[0] & 2 else memoryview(message)
    version = sniff(message)
    assert version in ("v0", "v1"), version
    codec = codec_for(
        ("v1" if version == "v0" else "v0") if other_version else version, max_message_bytes=limit
    )
    decoded: Any = None
    with expect(WireError):
        if channel == "data":
            decoded = codec.decode_data(message)
            assert isinstance(decoded, DATA_TYPES), decoded
        else:
            decoded = codec.decode_control(message)
            assert isinstance(decoded, CONTROL_TYPES), decoded
    echo(codec, decoded)


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
