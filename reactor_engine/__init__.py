"""reactor-engine: serve real-time video models as live, interactive streams."""

from __future__ import annotations

from reactor_engine.audio import AudioOutputTrack
from reactor_engine.commands import command
from reactor_engine.config import EngineConfig, load_config
from reactor_engine.context import ReactorContext, SessionContext, get_ctx
from reactor_engine.engine import Engine
from reactor_engine.errors import (
    AllocationError,
    ClosedError,
    CommandError,
    ConfigError,
    CudaError,
    EncodeError,
    EngineBusy,
    FrameError,
    InvalidArgumentError,
    ModelError,
    NoActiveSession,
    ReactorError,
    ReactorTimeoutError,
    StateError,
    WeightsError,
)
from reactor_engine.inputs import AudioInputTrack, VideoInputTrack
from reactor_engine.media import AudioIn, AudioOut, MediaBundle, VideoIn
from reactor_engine.model import VideoModel, get_weights_path, load_model_class, model
from reactor_engine.session import Session
from reactor_engine.tracks import Track, VideoOut, VideoTrack

__version__ = "0.1.0"

__all__ = [
    "AllocationError",
    "AudioIn",
    "AudioInputTrack",
    "AudioOut",
    "AudioOutputTrack",
    "ClosedError",
    "CommandError",
    "ConfigError",
    "CudaError",
    "EncodeError",
    "Engine",
    "EngineBusy",
    "EngineConfig",
    "FrameError",
    "InvalidArgumentError",
    "MediaBundle",
    "ModelError",
    "NoActiveSession",
    "ReactorContext",
    "ReactorError",
    "ReactorTimeoutError",
    "Session",
    "SessionContext",
    "StateError",
    "Track",
    "VideoIn",
    "VideoInputTrack",
    "VideoModel",
    "VideoOut",
    "VideoTrack",
    "WeightsError",
    "__version__",
    "command",
    "get_ctx",
    "get_weights_path",
    "load_config",
    "load_model_class",
    "model",
]
