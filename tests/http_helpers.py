"""Helpers shared by the http runtime's tests (imported by test modules; pytest collects nothing here)."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

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


@contextlib.contextmanager
def viewer_url(process: subprocess.Popen[str], show_log: bool = False) -> Iterator[str]:
    """A started ``reactor-engine run`` (stdout piped, text): yields the URL it logs, then stops it
    with SIGTERM and checks it exits 0. ``show_log``: print its last lines (pytest shows them when a
    test fails)."""
    lines: list[str] = []
    urls: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = re.search(r"open (http://\S+)", line)
            if match and not urls:
                urls.append(match.group(1))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not found.wait(120):
            pytest.fail("reactor-engine run did not start:\n" + "".join(lines))
        yield urls[0]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()
        if show_log:
            print("".join(lines[-40:]))
