"""The binary frame header of the wire protocol (docs/protocol.md) and the client's reading of it."""

from __future__ import annotations

import struct

import pytest

from reactor_engine.client import Frame
from reactor_engine.runtimes.protocol import HEADER_SIZE, FrameHeader


def header(**changes: object) -> FrameHeader:
    fields = {
        "codec": "jpeg", "frame_index": 7, "width": 640, "height": 360, "payload_size": 3, "pts_ns": 10,
        "t_acquire_ns": 11, "t_commit_ns": 12, "t_encode_start_ns": 13, "t_encode_end_ns": 14,
        "t_publish_ns": 15, "t_send_ns": 2_000_012,
    }  # fmt: skip
    fields.update(changes)
    return FrameHeader(**fields)  # type: ignore[arg-type]


def test_the_header_is_88_bytes_at_the_documented_offsets():
    packed = header().pack()
    assert HEADER_SIZE == len(packed) == 88
    assert packed[:4] == b"RFRM" and packed[4] == 1 and packed[5] == 1
    assert struct.unpack_from("<H", packed, 6) == (88,)
    assert struct.unpack_from("<QIII", packed, 8) == (7, 640, 360, 3)
    assert struct.unpack_from("<q", packed, 48) == (12,) and struct.unpack_from("<q", packed, 80) == (
        2_000_012,
    )


@pytest.mark.parametrize("codec", ["jpeg", "raw", "i420"])
def test_a_header_reads_back_as_written(codec):
    written = header(codec=codec)
    message = written.pack() + b"abc"
    assert FrameHeader.unpack(message) == written
    frame = Frame(written, message[HEADER_SIZE:], 0)
    assert frame.data == b"abc" and frame.server_latency_ms == 2.0


def test_malformed_frame_messages_are_rejected_with_the_reason():
    good = header().pack() + b"abc"
    with pytest.raises(ValueError, match="the header alone is 88"):
        FrameHeader.unpack(good[:20])
    with pytest.raises(ValueError, match="expected b'RFRM'"):
        FrameHeader.unpack(b"XXXX" + good[4:])
    with pytest.raises(ValueError, match="header says 88 \\+ 3 payload"):
        FrameHeader.unpack(good + b"extra")
    with pytest.raises(ValueError, match="codec id 9"):
        FrameHeader.unpack(good[:5] + b"\x09" + good[6:])
