"""The v0 (JSON text) data-channel codec: what reactor-sdk 0.8 and @reactor-team/js-sdk send and accept."""

from __future__ import annotations

import json
import math

import pytest

from reactor_engine.transports.webrtc import wire
from reactor_engine.transports.webrtc.wire import (
    Command,
    FileUploaded,
    PauseTrack,
    Ping,
    PublishTrack,
    RequestCapabilities,
    RequestClip,
    RequestRecording,
    RequestSchema,
    ResumeTrack,
    Unknown,
    UnpublishTrack,
    UploadRef,
    WireError,
    codec_for,
)


@pytest.fixture
def v0():
    return codec_for("v0")


def loaded(out):
    assert out.binary is False
    assert isinstance(out.payload, str)
    return json.loads(out.payload)


# -- v0 inbound -------------------------------------------------------------------------------------


def application(kind, data=None, **extra):
    """A v0 data channel message in application scope: a command in, a model message out."""
    return {"scope": "application", "data": {"type": kind, "data": data or {}, **extra}}


def runtime(kind, data=None):
    return {"scope": "runtime", "data": {"type": kind, "data": data or {}}}


def notification(event, name):
    return {"type": "notification", "event": event, "data": {"name": name}}


def test_v0_command_decodes_with_uploads_and_no_request_id(v0):
    upload = {"upload_id": "u1", "name": "a.png", "mime_type": "image/png", "size": 9}
    text = json.dumps(application("set_image", {"strength": 0.5, "steps": 4}, uploads={"image": upload}))
    expected = Command("set_image", {"strength": 0.5, "steps": 4}, None, {"image": UploadRef(**upload)})
    assert v0.decode_data(text) == expected
    assert v0.decode_data(text.encode()) == expected


def test_v0_command_without_data_has_empty_data(v0):
    assert v0.decode_data('{"scope":"application","data":{"type":"reset"}}') == Command("reset", {}, None, {})


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (runtime("ping"), Ping()),
        (runtime("requestSchema"), RequestSchema()),
        (runtime("requestCapabilities"), RequestCapabilities()),
        (runtime("requestRecording"), RequestRecording()),
        (runtime("requestClip", {"duration_seconds": 10}), RequestClip(10.0)),
        (runtime("fileUploaded", {"upload_id": "u", "size": 3}), FileUploaded("u", "", "", 3)),
        (runtime("somethingNew"), Unknown("v0 runtime message 'somethingNew'")),
        ({"scope": "future", "data": {}}, Unknown("v0 message scope 'future'")),
    ],
)
def test_v0_runtime_messages_decode(v0, message, expected):
    assert v0.decode_data(json.dumps(message)) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"type": "request", "method": "publish_track", "request_id": "ctrl_1", "data": {"name": "cam"}},
            PublishTrack("cam", "ctrl_1"),
        ),
        (notification("pause_track", "main"), PauseTrack("main")),
        (notification("resume_track", "main"), ResumeTrack("main")),
        (notification("unpublish_track", "cam"), UnpublishTrack("cam")),
        (
            {"type": "request", "method": "mute", "request_id": "ctrl_2"},
            Unknown("v0 control request 'mute'", "ctrl_2"),
        ),
        (notification("wave", "main"), Unknown("v0 control notification 'wave'")),
        ({"type": "response", "request_id": "x"}, Unknown("v0 control message type 'response'")),
    ],
)
def test_v0_control_messages_decode(v0, message, expected):
    assert v0.decode_control(json.dumps(message)) == expected


# -- v0 outbound ------------------------------------------------------------------------------------

_CAPABILITIES = {"commands": [{"name": "go", "description": "", "schema": {}}]}


@pytest.mark.parametrize(
    ("encode", "channel", "expected"),
    [
        (
            lambda c: c.encode_model_message("progress", {"step": 3}),
            "data",
            application("progress", {"step": 3}),
        ),
        (
            lambda c: c.encode_command_reply(None, {"seed": 7}, command="set_seed"),
            "data",
            application("set_seed", {"seed": 7}),
        ),
        (
            lambda c: c.encode_schema({"openapi": "3.1.0"}, request_id="x"),
            "data",
            runtime("modelSchema", {"openapi": "3.1.0"}),
        ),
        (lambda c: c.encode_capabilities(_CAPABILITIES), "data", runtime("modelCapabilities", _CAPABILITIES)),
        (lambda c: c.encode_session_ended("bye"), "data", runtime("sessionEnded", {"reason": "bye"})),
        (lambda c: c.encode_clip_failed(None, "no"), "data", runtime("clipFailed", {"reason": "no"})),
        (
            lambda c: c.encode_publish_track_response("ctrl_1", "cam"),
            "control",
            {"type": "response", "method": "publish_track", "request_id": "ctrl_1", "data": {"name": "cam"}},
        ),
        (
            lambda c: c.encode_publish_refused("ctrl_2", "cam", "taken"),
            "control",
            {
                "type": "response",
                "method": "publish_track",
                "request_id": "ctrl_2",
                "error": {"code": wire.PUBLISH_REFUSED, "message": "taken"},
            },
        ),
        (
            lambda c: c.encode_control_error("ctrl_9", "unsupported", "no"),
            "control",
            {"type": "response", "request_id": "ctrl_9", "error": {"code": "unsupported", "message": "no"}},
        ),
    ],
)
def test_v0_outbound_messages(v0, encode, channel, expected):
    out = encode(v0)
    assert out.channel == channel
    assert loaded(out) == expected


def test_v0_commands_are_never_acknowledged(v0):
    assert v0.encode_command_reply(None, None, command="go") is None
    assert v0.encode_command_error(None, "invalid_arguments", "bad") is None


def test_v0_writes_non_finite_numbers_as_null_and_unknown_objects_as_text(v0):
    out = v0.encode_model_message("stats", {"loss": math.nan, "ok": [1.5, math.inf], "when": object})
    assert loaded(out)["data"]["data"] == {"loss": None, "ok": [1.5, None], "when": str(object)}
    assert "NaN" not in out.payload


# -- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ("not json", "not JSON"),
        (b"\xff{}", "not UTF-8"),
        ("[1, 2]", "JSON object; got an array"),
        ("[" * 60_000, "nests too deeply"),
        ('{"type": "application"}', "is .*scope"),
        ('{"scope": "application", "data": []}', "is .*scope"),
        ('{"scope": "application", "data": {"type": 5}}', '"type" string'),
        ('{"scope": "application", "data": {"type": "go", "data": [1]}}', "must be an object; got an array"),
        (json.dumps(application("go", uploads={"a": {"size": "9"}})), "size must be an int"),
        (json.dumps(runtime("requestClip", {"duration_seconds": "5"})), "a number"),
        (json.dumps(runtime("fileUploaded", {"upload_id": 1})), "must be a string"),
    ],
)
def test_v0_malformed_data_is_a_wire_error(v0, message, match):
    with pytest.raises(WireError, match=match):
        v0.decode_data(message)


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ('{"type": "notification", "event": "pause_track", "data": {"name": 3}}', 'track "name" string'),
        ('{"type": "notification", "event": "pause_track"}', 'track "name" string'),
        (
            '{"type": "request", "method": "publish_track", "request_id": 7, "data": {"name": "a"}}',
            "request_id",
        ),
        ('{"event": "pause_track"}', '"type": "request" | "notification"'),
    ],
)
def test_v0_malformed_control_is_a_wire_error(v0, message, match):
    with pytest.raises(WireError, match=match):
        v0.decode_control(message)
