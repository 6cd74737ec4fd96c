"""Helpers of the fault-injection and churn tests (imported by test modules; pytest collects nothing here).

Raw WebSocket and HTTP clients on plain sockets (so a test can make a client vanish the way a crashed
browser or a pulled cable does: no close frame, FIN or RST), a bounded wait, and this process's
resources (RSS, open descriptors, threads) with a least-squares slope.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from reactor_engine.runtimes.protocol import FrameHeader

_PAGE = os.sysconf("SC_PAGE_SIZE")


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "the condition") -> None:
    """Poll ``condition`` until it is true; ``AssertionError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


def _connect(url: str, rcvbuf: int | None = None) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the window the server sees is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    return sock


def _read_head(sock: socket.socket) -> tuple[str, bytes]:
    """The response head (status line and headers) and whatever body bytes came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection; got {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


class RawWebSocket:
    """A WebSocket client on a bare socket: the handshake, then frames read by hand; ``vanish()``
    drops the connection without a close frame."""

    def __init__(self, url: str, session_id: str, rcvbuf: int | None = None) -> None:
        parts = urlsplit(url)
        self.sock = _connect(url, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path.rstrip('/')}/sessions/{session_id}/ws HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head, self._buffer = _read_head(self.sock)
        if not head.startswith("HTTP/1.1 101"):
            raise ConnectionError(f"WebSocket handshake refused: {head.splitlines()[0]}")

    def _exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def recv(self) -> tuple[int, bytes]:
        """The next message as ``(opcode, payload)``: 1 text, 2 binary, 8 close (unfragmented: the
        server sends whole messages)."""
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exactly(8))
        return first & 0x0F, self._exactly(length)

    def next_frame(self) -> FrameHeader:
        """The header of the next binary (frame) message; text messages on the way are skipped."""
        while True:
            opcode, payload = self.recv()
            if opcode == 2:
                return FrameHeader.unpack(payload)
            if opcode == 8:
                raise ConnectionError(f"the server closed the WebSocket: {payload[:2].hex()} {payload[2:]!r}")
            # opcode 1: text (the hello, events); skipped

    def close(self) -> None:
        """A clean close: a masked close frame (1000), then the socket."""
        mask = os.urandom(4)
        body = struct.pack("!H", 1000)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        with contextlib.suppress(OSError):  # the server may have gone first
            self.sock.sendall(bytes([0x88, 0x80 | len(body)]) + mask + masked)
        self.sock.close()

    def vanish(self, reset: bool = True) -> None:
        """Gone without a close frame: an RST (``reset``, a killed process or a dropped route) or a FIN."""
        vanish(self.sock, reset)


def open_mjpeg(url: str, session_id: str) -> tuple[socket.socket, bytes]:
    """``GET /sessions/{id}/mjpeg`` on a bare socket: the socket and the body bytes read so far."""
    parts = urlsplit(url)
    sock = _connect(url)
    path = f"{parts.path.rstrip('/')}/sessions/{session_id}/mjpeg"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    head, body = _read_head(sock)
    if not head.startswith("HTTP/1.1 200"):
        raise ConnectionError(f"MJPEG refused: {head.splitlines()[0]}")
    return sock, body


def vanish(sock: socket.socket, reset: bool = True) -> None:
    if reset:  # SO_LINGER 0: close() sends an RST at once, as the kernel does for a killed peer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- this process's resources ------------------------------------------------------------------------


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int | str = "self") -> int:
    """Native threads of the process (Python's, the encoder's, the executor's), from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line in /proc/PID/status")


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``ys`` over ``xs`` (0 for fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
