"""A client's command, from any transport, to the session thread: validated, counted, answered.

The hub calls ``run_command`` (``SessionHub.command``); it queues the command for the model's next poll
point and waits for the handler's result, turning every failure into a ``CommandRejected`` with a
stable code or a ``CommandTimeout``. The handler's own exception text never reaches the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reactor_engine.errors import CommandError
from reactor_engine.transports.errors import CommandRejected, CommandTimeout
from reactor_engine.transports.messages import json_kind

if TYPE_CHECKING:
    from reactor_engine.session import Session
    from reactor_engine.transports.metrics import HubMetrics

__all__ = ["run_command"]


async def run_command(
    session: Session, name: str, data: Any, commands: Mapping[str, Any], metrics: HubMetrics, timeout: float
) -> Any:
    """Apply command ``name`` with ``data`` in ``session``; the handler's return value. ``CommandRejected``
    (its ``code``: ``unknown_command``, ``invalid_arguments`` naming each failing field,
    ``command_failed`` without the handler's internal text, ``session_ended``) or ``CommandTimeout``
    after ``timeout`` s. Each outcome is counted in ``metrics.commands``."""
    known = name in commands
    label = name if known else "_unknown"
    count = metrics.commands.labels
    if data is not None and not isinstance(data, dict):
        count(label, "invalid").inc()
        raise CommandRejected(f'"data" must be an object of arguments; got {json_kind(data)}')
    if not known:
        count(label, "unknown").inc()
        listed = ", ".join(sorted(commands)) or "none"
        raise CommandRejected(f"unknown command {name!r}; this model takes: {listed}", code="unknown_command")
    try:
        future = session.submit_command(name, data)
    except CommandError as exc:
        outcome, code = ("ended", "session_ended") if session.ended else ("invalid", "invalid_arguments")
        count(label, outcome).inc()
        raise CommandRejected(str(exc), code=code) from None
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except TimeoutError:
        count(label, "timeout").inc()
        raise CommandTimeout(
            f"command {name!r} was not applied within {timeout} s (the model has not reached a poll point)"
        ) from None
    except CommandError as exc:  # the handler failed; the message never holds its internal text
        outcome, code = ("ended", "session_ended") if session.ended else ("failed", "command_failed")
        count(label, outcome).inc()
        raise CommandRejected(str(exc), code=code) from None
    count(label, "ok").inc()
    return result
