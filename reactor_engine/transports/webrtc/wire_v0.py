"""Wire version v0: the JSON text of reactor-sdk 0.8 and @reactor-team/js-sdk.

The data channel carries ``{"scope": "application" | "runtime", "data": {"type", "data"}}`` both
ways: application scope is a model command in and a model message out, runtime scope the platform
messages (ping, schema, capabilities, uploads, clips, session end). The control channel, which
only the two-channel clients open, carries the track verbs as ``{"type": "request" |
"notification", ...}``. Commands carry no request id and are fire-and-forget, so nothing here
acknowledges one; a command's non-empty result still goes back as a model message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from reactor_engine.transports.messages import json_kind
from reactor_engine.transports.webrtc.wire import (
    PUBLISH_REFUSED,
    Channel,
    Command,
    FileUploaded,
    InboundControl,
    InboundData,
    Outbound,
    PauseTrack,
    Ping,
    PublishTrack,
    RawMessage,
    RequestCapabilities,
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

__all__ = ["V0Codec"]

_ENVELOPE = '{"scope": "application" | "runtime", "data": {"type", "data"}}'
_TRACK_EVENTS: dict[str, type[PauseTrack | ResumeTrack | UnpublishTrack]] = {
    "pause_track": PauseTrack,
    "resume_track": ResumeTrack,
    "unpublish_track": UnpublishTrack,
}


class V0Codec(WireCodec):
    """The v0 codec of one connection; see :class:`~reactor_engine.transports.webrtc.wire.WireCodec`."""

    version: ClassVar[Version] = "v0"

    # -- decode ------------------------------------------------------------------------------------

    def decode_data(self, message: RawMessage) -> InboundData:
        envelope = self._load(message, "data")
        scope, inner = envelope.get("scope"), envelope.get("data")
        if not isinstance(scope, str) or not isinstance(inner, dict):
            raise WireError(f"a v0 data channel message is {_ENVELOPE}; got {shown(envelope)}")
        if scope not in ("application", "runtime"):
            return Unknown(f"v0 message scope {scope!r}")
        kind = inner.get("type")
        if not isinstance(kind, str) or not kind:
            raise WireError(f'a v0 "{scope}" message needs a "type" string; got {shown(inner)}')
        body = _object(inner.get("data"), f"the data of v0 {scope} message {kind!r}")
        if scope == "application":
            return Command(kind, body, None, _uploads(inner.get("uploads"), kind))
        if kind == "ping":
            return Ping()
        if kind == "requestSchema":
            return RequestSchema()
        if kind == "requestCapabilities":
            return RequestCapabilities()
        if kind == "requestRecording":
            return RequestRecording()
        if kind == "requestClip":
            seconds = body.get("duration_seconds", 0.0)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise WireError(f"requestClip duration_seconds must be a number; got {shown(seconds)}")
            try:
                duration = float(seconds)
            except OverflowError:
                duration = math.inf
            if not math.isfinite(duration) or duration < 0:
                why = f"requestClip duration_seconds must be a finite number >= 0; got {shown(seconds)}"
                raise WireError(why)
            return RequestClip(duration)
        if kind == "fileUploaded":
            return FileUploaded(**_upload_fields(body, "fileUploaded"))
        return Unknown(f"v0 runtime message {kind!r}")

    def decode_control(self, message: RawMessage) -> InboundControl:
        envelope = self._load(message, "control")
        kind = envelope.get("type")
        if kind == "request":
            method, request_id = envelope.get("method"), envelope.get("request_id")
            if request_id is not None and not isinstance(request_id, str):
                raise WireError(f"a v0 control request_id must be a string; got {shown(request_id)}")
            if method == "publish_track":
                return PublishTrack(_track_name(envelope, "publish_track"), request_id)
            return Unknown(f"v0 control request {method!r}", request_id)
        if kind == "notification":
            event = envelope.get("event")
            verb = _TRACK_EVENTS.get(event) if isinstance(event, str) else None
            if verb is None:
                return Unknown(f"v0 control notification {event!r}")
            return verb(_track_name(envelope, str(event)))
        if not isinstance(kind, str):
            raise WireError(
                f'a v0 control message is {{"type": "request" | "notification", ...}}; got {shown(envelope)}'
            )
        return Unknown(f"v0 control message type {kind!r}")

    def _load(self, message: RawMessage, channel: Channel) -> dict[str, Any]:
        self._check_size(message, channel)
        try:
            text = message if isinstance(message, str) else bytes(message).decode("utf-8")
            obj = json.loads(text)
        except UnicodeDecodeError as exc:
            raise WireError(f"v0 {channel} channel message is not UTF-8 text: {exc}") from None
        except RecursionError:
            raise WireError(f"v0 {channel} channel message nests too deeply") from None
        except ValueError as exc:
            raise WireError(f"v0 {channel} channel message is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise WireError(f"a v0 {channel} channel message is a JSON object; got {json_kind(obj)}")
        return obj

    # -- encode ------------------------------------------------------------------------------------

    def encode_command_reply(self, request_id: str | None, result: Any, *, command: str) -> Outbound | None:
        if result is None:
            return None  # v0 commands are fire-and-forget: no acknowledgement exists
        return self.encode_model_message(*reply_message(command, result))

    def encode_command_error(self, request_id: str | None, code: str, message: str) -> Outbound | None:
        # v0 has no error reply for a command; reactor-runtime sends none either, and a made-up
        # application message would reach the app as if the model had sent it.
        return None

    def encode_model_message(self, type: str, data: Mapping[str, Any]) -> Outbound:
        return _data("application", type, data)

    def encode_schema(self, schema: Mapping[str, Any], *, request_id: str | None = None) -> Outbound:
        return _data("runtime", "modelSchema", schema)

    def encode_capabilities(self, capabilities: Mapping[str, Any]) -> Outbound | None:
        return _data("runtime", "modelCapabilities", capabilities)

    def encode_publish_track_response(self, request_id: str | None, name: str) -> Outbound:
        return _control(
            {"type": "response", "method": "publish_track", "request_id": request_id, "data": {"name": name}}
        )

    def encode_publish_refused(self, request_id: str | None, name: str, message: str) -> Outbound:
        return _control(
            {
                "type": "response",
                "method": "publish_track",
                "request_id": request_id,
                "error": {"code": PUBLISH_REFUSED, "message": message},
            }
        )

    def encode_control_error(self, request_id: str | None, code: str, message: str) -> Outbound:
        return _control(
            {"type": "response", "request_id": request_id, "error": {"code": code, "message": message}}
        )

    def encode_clip_failed(self, request_id: str | None, reason: str) -> Outbound:
        return _data("runtime", "clipFailed", {"reason": reason})

    def encode_session_ended(self, reason: str) -> Outbound:
        return _data("runtime", "sessionEnded", {"reason": reason})


def _data(scope: str, type: str, data: Mapping[str, Any]) -> Outbound:
    return Outbound("data", _dumps({"scope": scope, "data": {"type": type, "data": data}}), False)


def _control(envelope: dict[str, Any]) -> Outbound:
    return Outbound("control", _dumps(envelope), False)


def _dumps(obj: Any) -> str:
    """JSON text as the clients parse it; a value JSON cannot hold is written as its ``str``.

    As the WebSocket protocol does (``default=str``), but NaN and infinities become ``null``, as
    in JavaScript's ``JSON.stringify``: ``JSON.parse`` rejects the bare ``NaN`` Python would write.
    """
    try:
        return json.dumps(obj, default=str, allow_nan=False)
    except ValueError:  # a non-finite float somewhere: rare, so only then is the value walked
        return json.dumps(_finite(obj), default=str, allow_nan=False)
    except (TypeError, RecursionError) as exc:
        raise WireError(f"cannot write the message as JSON: {exc}") from None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WireError(f"{what} must be an object; got {json_kind(value)}")
    return value


def _track_name(envelope: dict[str, Any], verb: str) -> str:
    name = _object(envelope.get("data"), f"the data of v0 {verb}").get("name")
    if not isinstance(name, str):
        raise WireError(f'v0 {verb} needs a track "name" string; got {shown(name)}')
    return name


def _uploads(value: Any, command: str) -> dict[str, UploadRef]:
    refs = _object(value, f"the uploads of command {command!r}")
    where = f"command {command!r}"
    return {
        param: UploadRef(**_upload_fields(_object(ref, f"upload {param!r} of {where}"), where))
        for param, ref in refs.items()
    }


def _upload_fields(body: dict[str, Any], where: str) -> dict[str, Any]:
    """The four fields of an upload reference, each checked for its type (absent ones empty)."""
    fields: dict[str, Any] = {}
    for key in ("upload_id", "name", "mime_type"):
        text = body.get(key, "")
        if not isinstance(text, str):
            raise WireError(f"{where}: upload {key} must be a string; got {shown(text)}")
        fields[key] = text
    size = body.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int):
        raise WireError(f"{where}: upload size must be an integer; got {shown(size)}")
    fields["size"] = size
    return fields
