"""reactor-engine: serve real-time video models as live, interactive streams."""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "AllocationError",
    "ClosedError",
    "CommandError",
    "ConfigError",
    "CudaError",
    "EncodeError",
    "EngineBusy",
    "FrameError",
    "InvalidArgumentError",
    "ModelError",
    "NoActiveSession",
    "ReactorError",
    "ReactorTimeoutError",
    "StateError",
    "WeightsError",
    "__version__",
]
