"""The WebRTC data-channel codecs: v0 JSON and v1 protobuf, both directions, and bad input."""

from __future__ import annotations

import json
import math
import struct

import pytest

from reactor_engine.commands import command
from reactor_engine.errors import InvalidArgumentError, ReactorError
from reactor_engine.transports.webrtc import wire
from reactor_engine.transports.webrtc.proto import reactor_wire_v1_pb2 as pb
from reactor_engine.transports.webrtc.wire import (
    Command,
    FileUploaded,
    PauseTrack,
    PeerError,
    Ping,
    PublishTrack,
    RequestClip,
    RequestRecording,
    RequestSchema,
    ResumeTrack,
    Unknown,
    UnpublishTrack,
    UploadRef,
    WireError,
    codec_for,
    sniff,
)
from reactor_engine.transports.webrtc.wire_v1 import dict_to_struct, struct_to_dict

# -- protobuf bytes written by hand from the documented field numbers, independent of our schema --


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # a length-delimited field (wire type 2)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _enum(number: int, value: int) -> bytes:  # a varint field (wire type 0)
    return _varint(number << 3) + _varint(value)


def _struct_entry(key: str, value: bytes) -> bytes:  # Struct.fields (1): map entry {key 1, value 2}
    return _field(1, _field(1, key.encode()) + _field(2, value))


def _number(x: float) -> bytes:  # Value.number_value (2): a double (wire type 1)
    return _varint(2 << 3 | 1) + struct.pack("<d", x)


def _string(s: str) -> bytes:  # Value.string_value (3)
    return _field(3, s.encode())


REQUEST, RESPONSE, NOTIFICATION = 1, 2, 3


def sdk_command(request_id: str, name: str, struct_entries: bytes) -> bytes:
    """A DataClientMessage as reactor-sdk 1.13 sends one: request_id 1, kind 2, Command 10."""
    command_bytes = _field(1, name.encode()) + _field(2, struct_entries)
    return _field(1, request_id.encode()) + _enum(2, REQUEST) + _field(10, command_bytes)


def control_message(request_id: str, kind: int, payload_field: int, payload: bytes = b"") -> bytes:
    return _field(1, request_id.encode()) + _enum(2, kind) + _field(payload_field, payload)


@pytest.fixture
def v0():
    return codec_for("v0")


@pytest.fixture
def v1():
    return codec_for("v1")


def parsed(out, message_type):
    assert out.binary is True
    assert isinstance(out.payload, bytes)
    message = message_type()
    message.ParseFromString(out.payload)
    return message


def loaded(out):
    assert out.binary is False
    assert isinstance(out.payload, str)
    return json.loads(out.payload)


# -- sniffing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    ['{"scope":"runtime"}', "anything as text", b'{"scope":"runtime"}', b" \r\n\t[1]", bytearray(b"{}")],
)
def test_text_or_json_bytes_sniff_as_v0(first):
    assert sniff(first) == "v0"


@pytest.mark.parametrize(
    "first",
    [sdk_command("data_1", "go", b""), control_message("", NOTIFICATION, 10), b"", b"\x00{"],
)
def test_other_bytes_sniff_as_v1(first):
    assert sniff(first) == "v1"
    assert sniff(memoryview(first)) == "v1"


def test_codec_for_names_each_version_and_refuses_others():
    assert codec_for("v0").version == "v0"
    assert codec_for("v1").version == "v1"
    with pytest.raises(InvalidArgumentError, match="'v0' or 'v1'"):
        codec_for("v2")  # type: ignore[arg-type]


def test_wire_error_is_a_reactor_error_and_a_value_error():
    assert issubclass(WireError, ReactorError)
    assert issubclass(WireError, ValueError)


# -- v1 inbound -------------------------------------------------------------------------------------


def test_v1_command_built_as_reactor_sdk_builds_it_decodes_to_its_name_and_data(v1):
    entries = _struct_entry("prompt", _string("a red fox")) + _struct_entry("steps", _number(4))
    decoded = v1.decode_data(sdk_command("data_1", "set_prompt", entries))
    assert decoded == Command("set_prompt", {"prompt": "a red fox", "steps": 4}, "data_1", {})
    assert type(decoded.data["steps"]) is int


def test_v1_integral_numbers_pass_the_strict_command_validation(v1):
    class Model:
        @command("go")
        def go(self, steps: int, scale: float) -> None: ...

    entries = _struct_entry("steps", _number(4)) + _struct_entry("scale", _number(2))
    decoded = v1.decode_data(sdk_command("data_7", "go", entries))
    spec = Model.go.__reactor_command__  # type: ignore[attr-defined]
    assert spec.validate(decoded.data) == {"steps": 4, "scale": 2.0}


def test_v1_command_round_trip_with_uploads_and_nested_data(v1):
    data = {"a": [1, 2.5, None, True, "x", {"b": []}], "c": {}, "d": -3}
    message = pb.DataClientMessage(
        request_id="data_2",
        kind=pb.MESSAGE_KIND_REQUEST,
        command=pb.Command(
            type="set_image",
            data=dict_to_struct(data),
            uploads={
                "image": pb.UploadReference(upload_id="u1", name="a.png", mime_type="image/png", size=9)
            },
        ),
    )
    assert v1.decode_data(message.SerializeToString()) == Command(
        "set_image", data, "data_2", {"image": UploadRef("u1", "a.png", "image/png", 9)}
    )


def test_v1_command_without_request_id_has_none(v1):
    message = pb.DataClientMessage(kind=pb.MESSAGE_KIND_NOTIFICATION, command=pb.Command(type="go"))
    assert v1.decode_data(message.SerializeToString()) == Command("go", {}, None, {})


def test_v1_client_error_on_data_decodes_to_peer_error(v1):
    message = pb.DataClientMessage(request_id="data_3", error=pb.Error(code="bad", message="why"))
    assert v1.decode_data(message.SerializeToString()) == PeerError("bad", "why", "data_3")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"ping": pb.Ping()}, Ping()),
        ({"request_schema": pb.RequestSchema()}, RequestSchema("ctrl_1")),
        ({"publish_track": pb.PublishTrack(name="webcam")}, PublishTrack("webcam", "ctrl_1")),
        ({"pause_track": pb.PauseTrack(name="main_video")}, PauseTrack("main_video")),
        ({"resume_track": pb.ResumeTrack(name="main_video")}, ResumeTrack("main_video")),
        ({"unpublish_track": pb.UnpublishTrack(name="webcam")}, UnpublishTrack("webcam")),
        ({"request_clip": pb.RequestClip(duration_seconds=2.5)}, RequestClip(2.5, "ctrl_1")),
        ({"request_recording": pb.RequestRecording()}, RequestRecording("ctrl_1")),
        (
            {"file_uploaded": pb.FileUploaded(upload_id="u", name="n", mime_type="m", size=3)},
            FileUploaded("u", "n", "m", 3),
        ),
        ({"error": pb.Error(code="c", message="m")}, PeerError("c", "m", "ctrl_1")),
    ],
)
def test_v1_control_messages_decode(v1, payload, expected):
    message = pb.ControlClientMessage(request_id="ctrl_1", kind=pb.MESSAGE_KIND_REQUEST, **payload)
    assert v1.decode_control(message.SerializeToString()) == expected


@pytest.mark.parametrize(
    ("payload_field", "name"),
    [(10, "ping"), (15, "publish_track"), (17, "resume_track"), (18, "unpublish_track")],
)
def test_v1_control_field_numbers_are_the_documented_ones(v1, payload_field, name):
    body = _field(1, b"main_video") if name != "ping" else b""
    decoded = v1.decode_control(control_message("ctrl_4", REQUEST, payload_field, body))
    assert type(decoded).__name__ == "".join(part.title() for part in name.split("_"))


def test_v1_unknown_payload_field_is_unknown_not_an_error(v1):
    stats = v1.decode_control(control_message("", NOTIFICATION, 19, b"\x0a\x00"))
    assert isinstance(stats, Unknown)
    assert "19 (client_stats)" in stats.what
    step = v1.decode_data(control_message("data_9", REQUEST, 11))
    assert step == Unknown(step.what, "data_9")
    assert "request_step" in step.what
    future = v1.decode_control(control_message("ctrl_5", REQUEST, 77, b"\x08\x01"))
    assert future == Unknown("v1 control message with unknown payload field 77", "ctrl_5")


def test_v1_message_with_no_payload_is_unknown(v1):
    assert v1.decode_data(b"") == Unknown("v1 data message with no payload")
    assert v1.decode_control(_enum(2, NOTIFICATION)) == Unknown("v1 control message with no payload")


# -- v1 outbound ------------------------------------------------------------------------------------


def test_v1_command_without_result_gets_a_bodyless_ack(v1):
    out = v1.encode_command_reply("data_1", None, command="set_prompt")
    assert out.channel == "data"
    assert out.payload == _field(1, b"data_1") + _enum(2, RESPONSE)
    reply = parsed(out, pb.DataServerMessage)
    assert reply.WhichOneof("payload") is None


@pytest.mark.parametrize(
    ("result", "kind", "data"),
    [
        ({"seed": 7}, "set_seed", {"seed": 7}),
        ({"type": "current_mode", "data": {"mode": "turbo"}}, "current_mode", {"mode": "turbo"}),
        ({"type": "current_mode"}, "current_mode", {}),
        ({"type": "x", "other": 1}, "set_seed", {"type": "x", "other": 1}),
        (42, "set_seed", {"result": 42}),
        ([1, "a"], "set_seed", {"result": [1, "a"]}),
    ],
)
def test_v1_command_result_is_a_correlated_model_message(v1, result, kind, data):
    reply = parsed(v1.encode_command_reply("data_5", result, command="set_seed"), pb.DataServerMessage)
    assert (reply.request_id, reply.kind, reply.WhichOneof("payload")) == (
        "data_5",
        pb.MESSAGE_KIND_RESPONSE,
        "message",
    )
    assert reply.message.type == kind
    assert struct_to_dict(reply.message.data) == data


def test_v1_command_without_request_id_gets_no_ack_and_a_result_as_notification(v1):
    assert v1.encode_command_reply(None, None, command="go") is None
    assert v1.encode_command_error(None, "invalid_arguments", "bad") is None
    reply = parsed(v1.encode_command_reply(None, {"a": 1}, command="go"), pb.DataServerMessage)
    assert (reply.request_id, reply.kind) == ("", pb.MESSAGE_KIND_NOTIFICATION)


def test_v1_command_error_is_a_correlated_error(v1):
    reply = parsed(v1.encode_command_error("data_6", "unknown_command", "no such"), pb.DataServerMessage)
    error = pb.Error(code="unknown_command", message="no such")
    assert reply == pb.DataServerMessage(request_id="data_6", kind=pb.MESSAGE_KIND_RESPONSE, error=error)


def test_v1_model_message_is_a_notification_without_request_id(v1):
    out = v1.encode_model_message("progress", {"step": 3, "of": 10.5})
    message = parsed(out, pb.DataServerMessage)
    assert out.channel == "data"
    sent = pb.ModelMessage(type="progress", data=dict_to_struct({"step": 3, "of": 10.5}))
    assert message == pb.DataServerMessage(kind=pb.MESSAGE_KIND_NOTIFICATION, message=sent)


def _answer(request_id, **payload):
    return pb.ControlServerMessage(request_id=request_id, kind=pb.MESSAGE_KIND_RESPONSE, **payload)


@pytest.mark.parametrize(
    ("encode", "expected"),
    [
        (
            lambda c: c.encode_schema({"openapi": "3.1.0", "paths": {}}, request_id="ctrl_2"),
            _answer(
                "ctrl_2",
                model_schema=pb.ModelSchema(openapi=dict_to_struct({"openapi": "3.1.0", "paths": {}})),
            ),
        ),
        (
            lambda c: c.encode_schema({}),
            pb.ControlServerMessage(
                kind=pb.MESSAGE_KIND_NOTIFICATION, model_schema=pb.ModelSchema(openapi={})
            ),
        ),
        (
            lambda c: c.encode_publish_track_response("ctrl_3", "webcam"),
            _answer("ctrl_3", publish_track=pb.PublishTrackResponse(name="webcam")),
        ),
        (
            lambda c: c.encode_publish_refused("ctrl_4", "webcam", "taken"),
            _answer("ctrl_4", error=pb.Error(code=wire.PUBLISH_REFUSED, message="taken")),
        ),
        (
            lambda c: c.encode_control_error("ctrl_9", "unsupported", "no such request"),
            _answer("ctrl_9", error=pb.Error(code="unsupported", message="no such request")),
        ),
        (
            lambda c: c.encode_clip_failed("ctrl_5", "no recorder"),
            _answer("ctrl_5", clip_failed=pb.ClipFailed(reason="no recorder")),
        ),
        (
            lambda c: c.encode_session_ended("stopped"),
            pb.ControlServerMessage(
                kind=pb.MESSAGE_KIND_NOTIFICATION, session_ended=pb.SessionEnded(reason="stopped")
            ),
        ),
    ],
)
def test_v1_control_replies(v1, encode, expected):
    out = encode(v1)
    assert out.channel == "control"
    assert parsed(out, pb.ControlServerMessage) == expected


def test_v1_has_no_capabilities_message(v1):
    assert v1.encode_capabilities({"commands": []}) is None


def test_v1_publish_response_field_numbers_are_the_documented_ones(v1):
    out = v1.encode_publish_track_response("ctrl_1", "cam")
    assert out.payload == control_message("ctrl_1", RESPONSE, 14, _field(1, b"cam"))


# -- Struct conversion ------------------------------------------------------------------------------


def test_struct_numbers_come_back_as_int_when_integral_and_exact():
    data = struct_to_dict(dict_to_struct({"i": 4, "f": 4.5, "neg": -2.0, "big": 2.0**60, "nan": math.nan}))
    assert (type(data["i"]), type(data["f"]), type(data["neg"]), type(data["big"])) == (
        int,
        float,
        int,
        float,
    )
    assert data["neg"] == -2
    assert math.isnan(data["nan"])


def test_struct_writes_json_like_values_as_json_does():
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    data = struct_to_dict(dict_to_struct({"t": (1, 2), 3: "k", None: 1, "o": Opaque(), "e": {}, "l": []}))
    assert data == {"t": [1, 2], "3": "k", "null": 1, "o": "opaque", "e": {}, "l": []}


def test_struct_refuses_what_it_cannot_hold():
    with pytest.raises(WireError, match="Struct"):
        dict_to_struct({"huge": 10**400})
    with pytest.raises(WireError, match="keys must be"):
        dict_to_struct({(1, 2): "tuple key"})


# -- malformed and oversize input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b"\xff\xff\xff\xff", "not a protobuf DataClientMessage"),
        (sdk_command("data_1", "go", b"")[:-1], "not a protobuf"),  # truncated
        (_field(1, b"\xff\xfe"), "not a protobuf"),  # a request_id that is not UTF-8
        ('{"scope": "application"}', "binary protobuf; got a text message"),
    ],
)
def test_v1_garbage_is_a_wire_error(v1, message, match):
    with pytest.raises(WireError, match=match):
        v1.decode_data(message)


def test_messages_over_the_limit_are_refused_before_parsing():
    small = codec_for("v0", max_message_bytes=32)
    at_limit = '{"scope":"x","data":{}}'.ljust(32)
    assert small.decode_data(at_limit) == Unknown("v0 message scope 'x'")
    with pytest.raises(WireError, match="data channel message is 33 bytes; the limit is 32"):
        small.decode_data(at_limit + " ")
    with pytest.raises(WireError, match="control channel message is 34 bytes"):
        small.decode_control("é" * 17)  # 17 characters, 34 UTF-8 bytes
    with pytest.raises(WireError, match="the limit is 65536"):
        codec_for("v1").decode_data(b"\x00" * (64 * 1024 + 1))
    with pytest.raises(WireError, match="the limit is 65536"):
        codec_for("v0").decode_data("x" * (64 * 1024 + 1))


def test_a_message_exactly_at_the_limit_is_parsed():
    message = sdk_command("data_1", "go", b"")
    assert codec_for("v1", max_message_bytes=len(message)).decode_data(message) == Command("go", {}, "data_1")


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_the_limit_must_be_a_positive_int(limit):
    with pytest.raises(InvalidArgumentError, match="max_message_bytes"):
        codec_for("v1", max_message_bytes=limit)
