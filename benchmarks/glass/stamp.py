"""The stamped model's body: a frame index painted so that it survives lossy coding, and its decoder.

The pattern is two rows of ``BITS`` (24) big cells across the top of the frame, on a mid-grey strip:
the first row is the bits (white = 1, black = 0), the second their complement. The bits are a 16-bit
frame index (modulo 65536) and its CRC-8. Every size is a fraction of the frame's, so a frame scaled
on the way (libwebrtc may adapt the resolution) still decodes. ``decode_index`` reads the centre of
each cell, decides each bit by data row minus complement row (immune to a brightness or range shift),
and returns ``None`` when any cell is ambiguous or the CRC fails: a frame is either decoded right or
not at all.

``StampedSource`` is the model body that both runtimes' adapters drive: it paces itself at a fixed
rate (as a real-time model whose step takes one frame period), renders a panning natural-looking
background (1/f noise, the spectrum of natural images) under the pattern, and appends
``(index, time.monotonic_ns())`` to a log file just before it hands the frame to the runtime. The
harness reads the log after the run (``read_stamps``). Needs numpy only.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np

INDEX_BITS = 16
CRC_BITS = 8
BITS = INDEX_BITS + CRC_BITS
INDEX_MODULO = 1 << INDEX_BITS
# Layout, in fractions of the frame.
_X_MARGIN = 0.03
_TOP = 0.04
_ROW = 0.075  # each of the two rows
_PAD = 0.015  # grey around the rows
_GREY = 128
_MIN_MARGIN = 48.0  # |data - complement| of a cell below this: ambiguous, the frame is not decoded
_RECORD = struct.Struct("<qq")


def crc8(value: int) -> int:
    """CRC-8 (polynomial 0x07, init 0) of the index's two bytes, big-endian."""
    crc = 0
    for byte in ((value >> 8) & 0xFF, value & 0xFF):
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


_CRC_TABLE = np.array([crc8(v) for v in range(INDEX_MODULO)], dtype=np.uint8)


def _bits(index: int) -> np.ndarray:
    value = index % INDEX_MODULO
    word = (value << CRC_BITS) | int(_CRC_TABLE[value])
    return np.array([(word >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=bool)


def _layout(height: int, width: int) -> tuple[int, int, int, int, np.ndarray]:
    """(band_top, band_bottom, row0_top, row_height, cell_edges[BITS + 1]) in pixels."""
    row = max(4, round(_ROW * height))
    top = round(_TOP * height)
    pad = max(1, round(_PAD * height))
    x0 = round(_X_MARGIN * width)
    edges = np.round(np.linspace(x0, width - x0, BITS + 1)).astype(np.intp)
    return max(0, top - pad), min(height, top + 2 * row + pad), top, row, edges


def paint_index(frame: np.ndarray, index: int) -> None:
    """Paint ``index`` (modulo 65536) into the top of an (H, W, 3) uint8 frame, in place."""
    height, width = frame.shape[:2]
    band_top, band_bottom, top, row, edges = _layout(height, width)
    frame[band_top:band_bottom] = _GREY
    for i, bit in enumerate(_bits(index)):
        x_a, x_b = edges[i], edges[i + 1]
        frame[top : top + row, x_a:x_b] = 255 if bit else 0
        frame[top + row : top + 2 * row, x_a:x_b] = 0 if bit else 255


def _row_levels(image: np.ndarray, y_a: int, y_b: int, edges: np.ndarray) -> np.ndarray:
    """Mean level of the central half of each cell of one row (all colour channels averaged)."""
    profile = image[y_a:y_b, :, :3].mean(axis=(0, 2))
    widths = np.diff(edges)
    starts = edges[:-1] + widths // 4
    stops = edges[1:] - widths // 4
    sums = np.add.reduceat(profile, np.stack([starts, stops], axis=1).ravel())[::2]
    return sums / np.maximum(stops - starts, 1)


def decode_index(rgb: np.ndarray) -> int | None:
    """The index painted by ``paint_index`` (0..65535), or ``None`` when unreadable or the CRC fails.

    Takes (H, W, 3) RGB or (H, W, 4) BGRA/RGBA uint8 (the level test is channel-order blind).
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3|4) image, got shape {rgb.shape}")
    height, width = rgb.shape[:2]
    _, _, top, row, edges = _layout(height, width)
    quarter = max(1, row // 4)
    data = _row_levels(rgb, top + quarter, top + row - quarter, edges)
    complement = _row_levels(rgb, top + row + quarter, top + 2 * row - quarter, edges)
    diff = data - complement
    if np.abs(diff).min() < _MIN_MARGIN:
        return None
    word = 0
    for bit in diff > 0:
        word = (word << 1) | int(bit)
    value, crc = word >> CRC_BITS, word & ((1 << CRC_BITS) - 1)
    return value if int(_CRC_TABLE[value]) == crc else None


def background_texture(height: int, width: int, period: int, seed: int = 7) -> np.ndarray:
    """An (H, period + width, 3) uint8 texture, periodic in x with ``period``: panned 1/f noise."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(period)[None, :]
    radius = np.hypot(fy * height / period, fx)  # isotropic in pixels
    radius[0, 0] = 1.0
    shaping = 1.0 / radius**1.1
    shaping[0, 0] = 0.0

    def field() -> np.ndarray:
        noise = rng.standard_normal((height, period))
        out = np.fft.irfft2(np.fft.rfft2(noise) * shaping, s=(height, period))
        low, high = np.percentile(out, [1, 99])
        return np.clip((out - low) / (high - low), 0.0, 1.0)

    luma, warm, green = field(), field() - 0.5, field() - 0.5
    rgb = np.stack(
        [luma * 190 + 30 + warm * 60, luma * 180 + 35 + green * 50, luma * 150 + 40 - warm * 50], axis=-1
    )
    tile = np.clip(rgb, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.concatenate([tile, tile[:, :width]], axis=1))


class StampedSource:
    """Renders frame ``k`` (background panned ``k * speed`` px, index pattern on top), paced and logged.

    ``next_frame()`` waits for the next tick of a fixed-rate clock (rebased, not bursting, when late by
    more than a period), renders, logs ``(index, t_emit_ns)`` and returns the frame; the caller hands
    it to its runtime at once. Indices keep counting across sessions, so they never repeat in one
    process (within 65536 frames); ``reset_clock()`` restarts the pacing for a new session.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float = 30.0,
        stamps_path: str | os.PathLike[str] | None = None,
        fresh_buffers: bool = False,
        seed: int = 7,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.period_ns = round(1e9 / self.fps)
        self.speed = max(1, self.width // 200)
        self._period_px = 2 * self.width
        self._texture = background_texture(self.height, self.width, self._period_px, seed)
        self._fresh = fresh_buffers  # a runtime that keeps the array after the hand-off needs a new one
        self._buffer = np.empty((self.height, self.width, 3), np.uint8)
        self._fd = (
            os.open(os.fspath(stamps_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if stamps_path
            else -1
        )
        self.index = 0
        self.late_frames = 0
        self.reset_clock()

    def reset_clock(self) -> None:
        self._t0_ns: int | None = None
        self._k = 0

    def render(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        frame = np.empty((self.height, self.width, 3), np.uint8) if out is None else out
        shift = (index * self.speed) % self._period_px
        np.copyto(frame, self._texture[:, shift : shift + self.width])
        paint_index(frame, index)
        return frame

    def wait_tick(self) -> None:
        now = time.monotonic_ns()
        if self._t0_ns is None:
            self._t0_ns = now
        due = self._t0_ns + self._k * self.period_ns
        if now - due > self.period_ns:
            self._t0_ns = now - self._k * self.period_ns
            due = now
            self.late_frames += 1
        self._k += 1
        if due > now:
            time.sleep((due - now) / 1e9)

    def stamp(self, index: int) -> int:
        t_ns = time.monotonic_ns()
        if self._fd >= 0:
            os.write(self._fd, _RECORD.pack(index, t_ns))
        return t_ns

    def next_frame(self) -> np.ndarray:
        self.wait_tick()
        index = self.index
        self.index += 1
        frame = self.render(index, None if self._fresh else self._buffer)
        self.stamp(index)
        return frame

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_stamps(path: str | os.PathLike[str]) -> np.ndarray:
    """The log of a run as an (n, 2) int64 array of (index, t_emit_ns); empty when there is none."""
    p = Path(path)
    if not p.exists():
        return np.zeros((0, 2), np.int64)
    raw = p.read_bytes()
    usable = len(raw) - len(raw) % _RECORD.size
    return np.frombuffer(raw[:usable], dtype="<i8").reshape(-1, 2).astype(np.int64)
