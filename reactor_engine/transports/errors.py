"""The errors a session hub refuses requests with: each carries its wire code and HTTP status."""

from __future__ import annotations

from typing import Any

from reactor_engine.errors import CommandError, ReactorError, ReactorTimeoutError

__all__ = [
    "CodecUnavailable",
    "CommandRejected",
    "CommandTimeout",
    "EngineNotReady",
    "HubError",
    "SessionBusy",
    "SessionNotFound",
    "ShuttingDown",
    "TooManyClients",
]


class HubError(ReactorError):
    """A request the hub refuses. ``code``: the wire error code; ``status``: the HTTP status it maps to;
    ``retry_after``: seconds a client should wait before retrying (or ``None``); ``detail``: extra
    fields of the error body."""

    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: int | None = None, **detail: Any
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.detail = detail


class ShuttingDown(HubError):
    status, code = 503, "shutting_down"


class EngineNotReady(HubError):
    """``loading`` (with ``retry_after``), ``not_ready`` or ``unhealthy``."""

    status, code = 503, "not_ready"


class SessionBusy(HubError):
    """Another session runs; ``detail["session_id"]`` names it."""

    status, code = 409, "busy"


class SessionNotFound(HubError):
    status, code = 404, "session_not_found"


class TooManyClients(HubError):
    status, code = 429, "too_many_clients"


class CodecUnavailable(HubError):
    """The client wants packets of a codec the engine does not encode."""

    status, code = 409, "codec_mismatch"


class CommandRejected(HubError, CommandError):
    """``unknown_command``, ``invalid_arguments``, ``command_failed`` or ``session_ended``."""

    status, code = 400, "invalid_arguments"


class CommandTimeout(HubError, ReactorTimeoutError):
    """The model did not reach a poll point within ``command_timeout``."""

    status, code = 504, "timeout"
