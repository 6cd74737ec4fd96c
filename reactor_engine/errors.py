"""The exception hierarchy of reactor-engine: one root, builtin bases where they fit.

The native core (``reactor_engine._C``) raises these same classes: its C++ errors are translated
once, in ``csrc/bindings/errors.cpp``, by looking the classes up in this module. So a user catches
``FrameError`` or ``ValueError`` alike, whether the check ran in Python or in C++.
"""

from __future__ import annotations

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
]


class ReactorError(Exception):
    """Root of every error reactor-engine raises on purpose."""


class InvalidArgumentError(ReactorError, ValueError):
    """An argument is out of its allowed range or of the wrong kind (sizes, names, options)."""


class FrameError(ReactorError, ValueError):
    """A frame does not fit what the track or ring takes (shape, dtype, size)."""


class ReactorTimeoutError(ReactorError, TimeoutError):
    """A bounded wait ran out: a full ring under the ``block`` policy, an empty packet queue."""


class ClosedError(ReactorError, RuntimeError):
    """The object was used after ``close()``."""


class StateError(ReactorError, RuntimeError):
    """A call came in the wrong state: committing a slot that was not acquired, a double commit."""


class EncodeError(ReactorError, RuntimeError):
    """The native encoder thread failed; raised at the next Python call into the core."""


class AllocationError(ReactorError, MemoryError):
    """A host arena could not be mapped or is exhausted."""


class CudaError(ReactorError, RuntimeError):
    """A CUDA call failed, or a CUDA path was asked for where CUDA is unavailable."""


class ConfigError(ReactorError, ValueError):
    """A model or engine configuration value is missing, unknown or of the wrong type."""


class ModelError(ReactorError, TypeError):
    """A model class is malformed: a bad ``@model`` name, not a ``VideoModel``, none or several found."""


class CommandError(ReactorError, ValueError):
    """A command was unknown, its arguments failed validation, or its handler failed."""


class NoActiveSession(ReactorError, RuntimeError):
    """``get_ctx()`` was called outside a session, or after the session ended."""


class EngineBusy(ReactorError, RuntimeError):
    """A second session was asked for while one is running."""


class WeightsError(ReactorError, ValueError):
    """A weights file is missing, truncated or malformed."""
