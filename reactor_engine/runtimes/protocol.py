"""The wire format of the http runtime, shared by the server and ``reactor_engine.client``.

Written down for other clients in ``docs/protocol.md``. Binary WebSocket messages are one frame each,
in both directions: a fixed little-endian header (``FrameHeader``) followed by the encoded frame (video)
or the samples (``pcm_s16le`` audio: ``width`` = sample rate, ``height`` = channels). The header's
``track`` is the index of the frame's track in the capabilities' ``tracks`` list. Text messages are JSON.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CODECS",
    "CODEC_IDS",
    "FRAME_MAGIC",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "FrameHeader",
    "error_body",
]

PROTOCOL_VERSION: Final = 1
FRAME_MAGIC: Final = b"RFRM"

# magic, version, codec, header_size, frame_index, width, height, payload_size, track (the index of the
# track in the capabilities' ``tracks``; 0 in messages of servers before media input),
# then the native timestamps (ns, the server's steady clock): pts, acquire, commit, encode start,
# encode end, publish, send.
_HEADER = struct.Struct("<4sBBHQIIII7q")
HEADER_SIZE: Final = _HEADER.size  # 88

# pcm_s16le: int16 little-endian interleaved samples; the header's width is the rate, height the channels.
CODEC_IDS: Final = {"jpeg": 1, "raw": 2, "i420": 3, "pcm_s16le": 4, "vp8": 5}
CODECS: Final = {value: key for key, value in CODEC_IDS.items()}


@dataclass(frozen=True)
class FrameHeader:
    """The header in front of every binary frame message. ``track``: the index of the frame's track in the
    capabilities' ``tracks`` list (the descriptor's order)."""

    codec: str
    frame_index: int
    width: int
    height: int
    payload_size: int
    pts_ns: int
    t_acquire_ns: int
    t_commit_ns: int
    t_encode_start_ns: int
    t_encode_end_ns: int
    t_publish_ns: int
    t_send_ns: int
    track: int = 0

    def pack(self) -> bytes:
        return _HEADER.pack(
            FRAME_MAGIC,
            PROTOCOL_VERSION,
            CODEC_IDS[self.codec],
            HEADER_SIZE,
            self.frame_index,
            self.width,
            self.height,
            self.payload_size,
            self.track,
            self.pts_ns,
            self.t_acquire_ns,
            self.t_commit_ns,
            self.t_encode_start_ns,
            self.t_encode_end_ns,
            self.t_publish_ns,
            self.t_send_ns,
        )

    @classmethod
    def of_packet(cls, packet: Any, t_send_ns: int, track: int = 0) -> FrameHeader:
        """The header of an encoded packet (anything with a ``_C.Packet``'s fields), sent at ``t_send_ns``."""
        return cls(
            codec=packet.codec,
            frame_index=packet.frame_index,
            width=packet.width,
            height=packet.height,
            payload_size=packet.size,
            pts_ns=packet.pts_ns,
            t_acquire_ns=packet.t_acquire_ns,
            t_commit_ns=packet.t_commit_ns,
            t_encode_start_ns=packet.t_encode_start_ns,
            t_encode_end_ns=packet.t_encode_end_ns,
            t_publish_ns=packet.t_publish_ns,
            t_send_ns=t_send_ns,
            track=track,
        )

    @classmethod
    def unpack(cls, message: bytes | bytearray | memoryview) -> FrameHeader:
        """Parse the header of a binary message; ``ValueError`` saying what is wrong."""
        if len(message) < HEADER_SIZE:
            raise ValueError(f"frame message has {len(message)} bytes; the header alone is {HEADER_SIZE}")
        fields = _HEADER.unpack_from(message)
        magic, version, codec, header_size, index, width, height, size, track = fields[:9]
        pts, acquire, commit, encode_start, encode_end, publish, send = fields[9:]
        if magic != FRAME_MAGIC:
            raise ValueError(f"frame message starts with {bytes(magic)!r}; expected {FRAME_MAGIC!r}")
        if version != PROTOCOL_VERSION:
            raise ValueError(f"frame header version {version}; this client reads {PROTOCOL_VERSION}")
        if codec not in CODECS:
            raise ValueError(f"frame header codec id {codec}; known: {CODECS}")
        if header_size != HEADER_SIZE or len(message) != header_size + size:
            raise ValueError(
                f"frame message has {len(message)} bytes; header says {header_size} + {size} payload"
            )
        return cls(
            CODECS[codec], index, width, height, size, pts, acquire, commit, encode_start, encode_end,
            publish, send, track,
        )  # fmt: skip


def error_body(code: str, message: str, **detail: Any) -> dict[str, Any]:
    """The JSON of every error response and error message: ``{"error": {"code", "message", ...}}``."""
    return {"error": {"code": code, "message": message, **detail}}
