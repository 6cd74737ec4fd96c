"""Log lines of the ``reactor-engine`` command: plain text or one JSON object per line, with the
session id of a record that carries one."""

from __future__ import annotations

import json
import logging
import sys
from typing import IO, Any

__all__ = ["configure_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _TextFormatter(logging.Formatter):
    """Plain lines, with ``session=<id>`` appended when the record carries a session id."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        session_id = getattr(record, "session_id", None)
        return f"{line} session={session_id}" if session_id else line


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts, level, logger, message`` and ``session_id`` when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        session_id = getattr(record, "session_id", None)
        if session_id:
            entry["session_id"] = session_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(verbose: bool = False, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Log to stderr (``text`` or ``json``); ``verbose`` shows DEBUG records."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("uvicorn.access", "websockets", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
