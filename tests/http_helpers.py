"""Helpers shared by the http runtime's tests (imported by test modules; pytest collects nothing here)."""

from __future__ import annotations

from reactor_engine.client import ClientError


def events_until_closed(stream, timeout: float = 20.0) -> list[dict]:
    """Read until the server closes the connection; the session events seen on the way."""
    events = [m for m in stream.messages if m.get("type") == "event"]
    for _ in range(100_000):
        try:
            message = stream.recv(timeout)
        except ClientError as exc:
            if exc.code != "closed":
                raise
            return events
        if isinstance(message, dict) and message.get("type") == "event":
            events.append(message)
    raise AssertionError("the server did not close the connection")
