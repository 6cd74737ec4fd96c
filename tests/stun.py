"""A tiny STUN binding responder (RFC 5389) for WebRTC tests inside a network namespace.

Inside a test's namespace no public STUN server is reachable, and a peer given one (or a client that
falls back to a default) waits for its ICE gathering to time out: seconds per connection. This answers
every Binding request with the sender's address in XOR-MAPPED-ADDRESS at once, so gathering finishes
in a round trip. It answers nothing else and keeps no state.

Run it as a script (``python tests/stun.py HOST PORT``; it prints ``ready`` once bound) or call
``serve(sock)`` on a bound UDP socket from a thread.
"""

from __future__ import annotations

import socket
import struct
import sys

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
_HEADER = struct.Struct("!HHI12s")


def binding_response(request: bytes, address: tuple[str, int]) -> bytes | None:
    """The success response to a Binding request from ``address``; ``None`` for anything else."""
    if len(request) < _HEADER.size:
        return None
    kind, _length, cookie, transaction = _HEADER.unpack_from(request)
    if kind != BINDING_REQUEST or cookie != MAGIC_COOKIE:
        return None
    host, port = address[0], address[1]
    if ":" in host:
        family, raw = 0x02, socket.inet_pton(socket.AF_INET6, host)
        mask = struct.pack("!I", MAGIC_COOKIE) + transaction
    else:
        family, raw = 0x01, socket.inet_pton(socket.AF_INET, host)
        mask = struct.pack("!I", MAGIC_COOKIE)
    xored = bytes(a ^ b for a, b in zip(raw, mask, strict=True))
    value = struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xored
    attribute = struct.pack("!HH", XOR_MAPPED_ADDRESS, len(value)) + value
    return _HEADER.pack(BINDING_SUCCESS, len(attribute), MAGIC_COOKIE, transaction) + attribute


def serve(sock: socket.socket) -> None:
    """Answer Binding requests on ``sock`` until it is closed."""
    while True:
        try:
            data, address = sock.recvfrom(2048)
        except OSError:
            return
        response = binding_response(data, address)
        if response is not None:
            try:
                sock.sendto(response, address)
            except OSError:
                continue


def main(argv: list[str]) -> int:
    host, port = argv[0], int(argv[1])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, port))
    print("ready", flush=True)
    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
