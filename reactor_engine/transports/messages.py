"""What every transport checks in a client's message: its request id, and how a bad value is named."""

from __future__ import annotations

from typing import Any

__all__ = ["json_kind", "valid_request_id"]


def valid_request_id(value: Any) -> bool:
    """A request id clients may send: absent, a string of at most 128 characters, or an int."""
    return (
        value is None
        or (isinstance(value, str) and len(value) <= 128)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for an error message: "an object", "an array",
    "a string", "null"... (a value JSON has no word for: its type's name)."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)
