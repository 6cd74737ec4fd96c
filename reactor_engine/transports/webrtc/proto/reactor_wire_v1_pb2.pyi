from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_KIND_UNSPECIFIED: _ClassVar[MessageKind]
    MESSAGE_KIND_REQUEST: _ClassVar[MessageKind]
    MESSAGE_KIND_RESPONSE: _ClassVar[MessageKind]
    MESSAGE_KIND_NOTIFICATION: _ClassVar[MessageKind]
MESSAGE_KIND_UNSPECIFIED: MessageKind
MESSAGE_KIND_REQUEST: MessageKind
MESSAGE_KIND_RESPONSE: MessageKind
MESSAGE_KIND_NOTIFICATION: MessageKind

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class UploadReference(_message.Message):
    __slots__ = ("upload_id", "name", "mime_type", "size")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    name: str
    mime_type: str
    size: int
    def __init__(self, upload_id: _Optional[str] = ..., name: _Optional[str] = ..., mime_type: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("type", "data", "uploads")
    class UploadsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: UploadReference
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[UploadReference, _Mapping]] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    type: str
    data: _struct_pb2.Struct
    uploads: _containers.MessageMap[str, UploadReference]
    def __init__(self, type: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., uploads: _Optional[_Mapping[str, UploadReference]] = ...) -> None: ...

class ModelMessage(_message.Message):
    __slots__ = ("type", "data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: str
    data: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class PublishTrack(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PauseTrack(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeTrack(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnpublishTrack(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PublishTrackResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RequestSchema(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RequestRecording(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSchema(_message.Message):
    __slots__ = ("openapi",)
    OPENAPI_FIELD_NUMBER: _ClassVar[int]
    openapi: _struct_pb2.Struct
    def __init__(self, openapi: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FileUploaded(_message.Message):
    __slots__ = ("upload_id", "name", "mime_type", "size")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    name: str
    mime_type: str
    size: int
    def __init__(self, upload_id: _Optional[str] = ..., name: _Optional[str] = ..., mime_type: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class RequestClip(_message.Message):
    __slots__ = ("duration_seconds",)
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    duration_seconds: float
    def __init__(self, duration_seconds: _Optional[float] = ...) -> None: ...

class ClipReady(_message.Message):
    __slots__ = ("session_id", "kind", "start_marker", "end_marker", "now_marker", "predicted_ready_at_ms", "playlist_url")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_MARKER_FIELD_NUMBER: _ClassVar[int]
    END_MARKER_FIELD_NUMBER: _ClassVar[int]
    NOW_MARKER_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_READY_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PLAYLIST_URL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    kind: str
    start_marker: float
    end_marker: float
    now_marker: float
    predicted_ready_at_ms: int
    playlist_url: str
    def __init__(self, session_id: _Optional[str] = ..., kind: _Optional[str] = ..., start_marker: _Optional[float] = ..., end_marker: _Optional[float] = ..., now_marker: _Optional[float] = ..., predicted_ready_at_ms: _Optional[int] = ..., playlist_url: _Optional[str] = ...) -> None: ...

class ClipFailed(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Moderation(_message.Message):
    __slots__ = ("action", "input_kind", "command", "categories", "message")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    action: str
    input_kind: str
    command: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    message: str
    def __init__(self, action: _Optional[str] = ..., input_kind: _Optional[str] = ..., command: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ...) -> None: ...

class SessionEnded(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class DataClientMessage(_message.Message):
    __slots__ = ("request_id", "kind", "command", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: MessageKind
    command: Command
    error: Error
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class DataServerMessage(_message.Message):
    __slots__ = ("request_id", "kind", "message", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: MessageKind
    message: ModelMessage
    error: Error
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., message: _Optional[_Union[ModelMessage, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class ControlClientMessage(_message.Message):
    __slots__ = ("request_id", "kind", "ping", "request_schema", "file_uploaded", "request_clip", "request_recording", "publish_track", "pause_track", "resume_track", "unpublish_track", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    FILE_UPLOADED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CLIP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_RECORDING_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TRACK_FIELD_NUMBER: _ClassVar[int]
    PAUSE_TRACK_FIELD_NUMBER: _ClassVar[int]
    RESUME_TRACK_FIELD_NUMBER: _ClassVar[int]
    UNPUBLISH_TRACK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: MessageKind
    ping: Ping
    request_schema: RequestSchema
    file_uploaded: FileUploaded
    request_clip: RequestClip
    request_recording: RequestRecording
    publish_track: PublishTrack
    pause_track: PauseTrack
    resume_track: ResumeTrack
    unpublish_track: UnpublishTrack
    error: Error
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., request_schema: _Optional[_Union[RequestSchema, _Mapping]] = ..., file_uploaded: _Optional[_Union[FileUploaded, _Mapping]] = ..., request_clip: _Optional[_Union[RequestClip, _Mapping]] = ..., request_recording: _Optional[_Union[RequestRecording, _Mapping]] = ..., publish_track: _Optional[_Union[PublishTrack, _Mapping]] = ..., pause_track: _Optional[_Union[PauseTrack, _Mapping]] = ..., resume_track: _Optional[_Union[ResumeTrack, _Mapping]] = ..., unpublish_track: _Optional[_Union[UnpublishTrack, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class ControlServerMessage(_message.Message):
    __slots__ = ("request_id", "kind", "model_schema", "clip_ready", "clip_failed", "moderation", "publish_track", "session_ended", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CLIP_READY_FIELD_NUMBER: _ClassVar[int]
    CLIP_FAILED_FIELD_NUMBER: _ClassVar[int]
    MODERATION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TRACK_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: MessageKind
    model_schema: ModelSchema
    clip_ready: ClipReady
    clip_failed: ClipFailed
    moderation: Moderation
    publish_track: PublishTrackResponse
    session_ended: SessionEnded
    error: Error
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., model_schema: _Optional[_Union[ModelSchema, _Mapping]] = ..., clip_ready: _Optional[_Union[ClipReady, _Mapping]] = ..., clip_failed: _Optional[_Union[ClipFailed, _Mapping]] = ..., moderation: _Optional[_Union[Moderation, _Mapping]] = ..., publish_track: _Optional[_Union[PublishTrackResponse, _Mapping]] = ..., session_ended: _Optional[_Union[SessionEnded, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...
