"""The frame-index pattern survives JPEG and VP8 and never decodes wrong; the emission log reads back.

.venv/bin/python -m pytest benchmarks/glass/test_stamp.py
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glass.stamp import (
    INDEX_BITS,
    INDEX_MODULO,
    StampedSource,
    crc8,
    decode_index,
    paint_index,
    read_stamps,
)
from glass.stamp import _layout as _layout

SIZES = [(512, 512), (1280, 720)]


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def source(request):
    width, height = request.param
    return StampedSource(width, height)


def test_crc8_detects_every_single_bit_flip():
    assert crc8(0) == 0
    assert crc8(1) == 0x07  # CRC-8/SMBUS of the bytes 00 01: the polynomial itself
    for value in (0, 777, 0xBEEF):
        assert all(crc8(value ^ (1 << bit)) != crc8(value) for bit in range(16))


@pytest.mark.parametrize("index", [0, 1, 2, 255, 256, 4242, 0x5555, 0xAAAA, INDEX_MODULO - 1])
def test_lossless_round_trip(source, index):
    assert decode_index(source.render(index)) == index


def test_index_wraps_modulo_65536(source):
    assert decode_index(source.render(INDEX_MODULO + 7)) == 7


def test_bgra_input_decodes(source):
    rgb = source.render(1234)
    bgra = np.concatenate([rgb[..., ::-1], np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=-1)
    assert decode_index(bgra) == 1234


def test_unstamped_and_damaged_frames_give_none(source):
    plain = source.render(99)
    plain[:] = source._texture[:, : source.width]  # background only
    assert decode_index(plain) is None
    assert decode_index(np.zeros_like(plain)) is None
    damaged = source.render(4242)
    height, width = damaged.shape[:2]
    damaged[: height // 4, width // 2 : width // 2 + width // 20] = 128  # a grey smear over one cell
    assert decode_index(damaged) is None


def test_a_flipped_bit_fails_the_crc():
    frame = np.zeros((720, 1280, 3), np.uint8)
    paint_index(frame, 777)
    flipped = frame.copy()
    paint_index(flipped, 777 ^ 0x10)
    crc_start = _layout(720, 1280)[4][INDEX_BITS]
    flipped[:, crc_start:] = frame[:, crc_start:]  # 777's CRC cells under the index 777 ^ 0x10
    assert decode_index(flipped) is None


def test_scaled_frame_decodes(source):
    frame = source.render(31337)
    assert decode_index(frame[::2, ::2]) == 31337  # half size, as a resolution-adapting sender might


@pytest.mark.parametrize("quality", [20, 50, 85])
def test_jpeg_compressed_frames_decode(source, quality):
    simplejpeg = pytest.importorskip("simplejpeg")
    for index in (3, 1000, 54321):
        jpeg = simplejpeg.encode_jpeg(source.render(index), quality=quality, colorsubsampling="420")
        assert decode_index(simplejpeg.decode_jpeg(jpeg)) == index


@pytest.mark.parametrize("bitrate", [500_000, 2_000_000])
def test_vp8_compressed_frames_decode(source, bitrate):
    av = pytest.importorskip("av")
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = source.width, source.height
    encoder.pix_fmt = "yuv420p"
    encoder.bit_rate = bitrate
    encoder.framerate = 30
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
    decoder = av.CodecContext.create("vp8", "r")
    frames = 60
    decoded: list[int | None] = []
    for k in range(frames):
        picture = av.VideoFrame.from_ndarray(source.render(k), format="rgb24").reformat(format="yuv420p")
        picture.pts = k
        for packet in encoder.encode(picture):
            for out in decoder.decode(packet):
                decoded.append(decode_index(out.to_ndarray(format="rgb24")))
    for packet in encoder.encode(None):
        for out in decoder.decode(packet):
            decoded.append(decode_index(out.to_ndarray(format="rgb24")))
    assert len(decoded) == frames
    assert all(d is None or d == k for k, d in enumerate(decoded)), decoded  # never wrong
    assert sum(d is not None for d in decoded) >= 0.95 * frames


def test_emission_log_reads_back(tmp_path):
    path = tmp_path / "stamps.bin"
    source = StampedSource(64, 48, fps=1000.0, stamps_path=path)
    frames = [source.next_frame().copy() for _ in range(5)]
    source.close()
    stamps = read_stamps(path)
    assert stamps[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert np.all(np.diff(stamps[:, 1]) > 0)
    assert [decode_index(f) for f in frames] == [0, 1, 2, 3, 4]
    assert read_stamps(tmp_path / "none.bin").shape == (0, 2)
