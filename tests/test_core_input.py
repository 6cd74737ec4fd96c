"""The native input path from Python: Decoder -> InputRing -> read-only views, and AudioRing.

Round trips use the engine's own encoders (``_C.Encoder`` VP8 and JPEG) for the packets. GIL checks
follow tests/test_core_gil.py (overlapping windows behind a barrier, no timing threshold); the
shutdown check follows tests/test_core_shutdown.py.
"""

from __future__ import annotations

import gc
import select
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from test_core_gil import assert_overlap

from reactor_engine import _C, ClosedError, FrameError, InvalidArgumentError

FRAME_NS = 33_333_333


def scene(index: int, width: int, height: int) -> np.ndarray:
    """Smooth moving gradients and a moving block: content a lossy codec keeps."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = float(index)
    r = 110 + 70 * np.sin(x / width * 4.0 + t * 0.2)
    g = 100 + 60 * np.cos(y / height * 3.0 - t * 0.15)
    b = 120 + 50 * np.sin((x + y) / (width + height) * 6.0 + t * 0.1)
    image = np.stack([r, g, b], axis=-1)
    left = (index * 4) % (width // 2)
    image[height // 4 : height // 2, left : left + width // 6] = (230, 200, 60)
    return np.clip(image, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def encode(codec: str, frames: list[np.ndarray], **options: int) -> list[bytes]:
    """Each frame through the engine's encoder, one at a time: its packet's bytes."""
    height, width = frames[0].shape[:2]
    ring = _C.FrameRing(4, width, height, "block")
    packets = []
    with _C.Encoder(ring, codec=codec, **options) as encoder:
        for i, frame in enumerate(frames):
            ring.write(frame, pts_ns=i * FRAME_NS, timeout=10.0)
            with encoder.queue.pop(timeout=10.0) as packet:
                packets.append(packet.tobytes())
    return packets


def decode_each(
    decoder: _C.Decoder, ring: _C.InputRing, packets: list[bytes]
) -> list[tuple[_C.InputFrame, np.ndarray]]:
    """Each packet decoded and read: the frame and a copy of its pixels (the view is valid until the
    next release_held, when the producer may reuse the slot)."""
    frames = []
    for i, packet in enumerate(packets):
        assert decoder.submit(packet, capture_ns=1000 + i) == "queued"
        assert decoder.wait_idle(timeout=10.0)
        ring.release_held()
        got = ring.read(timeout=5.0)
        assert len(got) == 1, decoder.last_error()
        frames.append((got[0], got[0].array.copy()))
    return frames


@pytest.mark.parametrize("codec", ["vp8", "jpeg"])
def test_encoded_frames_decode_into_the_ring_in_order_with_their_content(codec):
    width, height = 320, 240
    sources = [scene(i, width, height) for i in range(20)]
    packets = encode(codec, sources, keyframe_interval=0) if codec == "vp8" else encode(codec, sources)
    ring = _C.InputRing(4, 640, 480)
    decoder = _C.Decoder(ring, codec)
    assert decoder.codec == codec
    frames = decode_each(decoder, ring, packets)
    for i, ((frame, pixels), source) in enumerate(zip(frames, sources, strict=True)):
        assert (frame.index, frame.width, frame.height) == (i, width, height)
        assert frame.array.shape == (height, width, 3) and frame.array.dtype == np.uint8
        assert frame.capture_ns == 1000 + i
        assert frame.arrival_ns <= frame.ready_ns
        assert frame.keyframe == (codec == "jpeg" or i == 0)
        assert psnr(pixels, source) > 30.0, f"frame {i}: {psnr(pixels, source):.1f} dB"
    # Each decoded frame is its own source, not its neighbour's.
    assert psnr(frames[5][1], sources[5]) > psnr(frames[5][1], sources[9]) + 3
    stats = decoder.stats()
    assert stats["frames_decoded"] == 20 and stats["decode_errors"] == 0
    assert stats["latency"]["decode"]["count"] == 20
    assert ring.stats()["frames_in"] == 20
    decoder.close()
    assert not decoder.running
    with pytest.raises(ClosedError):
        decoder.submit(packets[0])


def test_views_are_read_only_and_keep_the_ring_alive():
    ring = _C.InputRing(2, 16, 8)
    source = np.arange(8 * 16 * 3, dtype=np.uint8).reshape(8, 16, 3)
    ring.write(source)
    frame = ring.read()[0]
    view = frame.array
    assert not view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0, 0] = 1
    with pytest.raises(ValueError, match="WRITEABLE"):
        view.flags.writeable = True
    with pytest.raises(ValueError, match="WRITEABLE"):
        np.asarray(ring.current().array).setflags(write=True)
    del frame, ring
    gc.collect()
    assert np.array_equal(view, source)  # the memory outlives every other reference


def test_write_takes_any_strides_and_refuses_what_does_not_fit():
    ring = _C.InputRing(3, 32, 24)
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., :3] = scene(0, 32, 24)
    assert ring.write(rgba[..., :3]) == 0  # pixel stride 4
    assert ring.write(rgba[::-1, :, :3]) == 1  # negative row stride
    frames = ring.read(2, latest=False)
    assert np.array_equal(frames[0].array, rgba[..., :3])
    assert np.array_equal(frames[1].array, rgba[::-1, :, :3])
    with pytest.raises(FrameError, match=r"33x24.*32x24"):
        ring.write(np.zeros((24, 33, 3), np.uint8))
    with pytest.raises(FrameError):
        ring.write(np.zeros((24, 32, 3), np.float32))
    with pytest.raises(FrameError):
        ring.write(np.zeros((24, 32), np.uint8))
    assert ring.stats()["frames_refused"] == 1


def test_latest_fifo_holding_and_reset():
    ring = _C.InputRing(4, 8, 8)
    for value in range(3):
        ring.write(np.full((8, 8, 3), value, np.uint8), capture_ns=value)
    assert ring.current() is None
    (newest,) = ring.read()
    assert newest.index == 2 and newest.array[0, 0, 0] == 2
    assert ring.read() == []  # nothing newer
    ring.release_held()
    assert ring.current().index == 2  # the current frame stays held
    for value in range(3, 9):
        ring.write(np.full((8, 8, 3), value, np.uint8))
    # Three slots for six frames: 3, 4 and 5 were recycled. Three held at most: the current one and two more.
    older = ring.read(5, latest=False)
    assert [f.index for f in older] == [6, 7]
    stats = ring.stats()
    assert stats["frames_skipped"] == 2 and stats["frames_dropped"] == 3 and stats["held"] == 3
    assert ring.read(latest=False) == []  # held to the limit
    assert ring.read(timeout=None) == []  # at once: waiting could not change that
    assert ring.reset() == 4  # 3 held, 1 ready
    assert ring.current() is None
    assert ring.write(np.zeros((8, 8, 3), np.uint8)) == 0


def test_bad_packets_are_counted_and_the_stream_recovers():
    sources = [scene(i, 64, 48) for i in range(8)]
    packets = encode("vp8", sources, keyframe_interval=4)
    ring = _C.InputRing(4, 64, 48)
    decoder = _C.Decoder(ring, "vp8", queue_capacity=4, max_packet_bytes=1 << 16)
    decode_each(decoder, ring, packets[:2])
    decoder.submit(packets[0][:20])  # a truncated key frame
    decoder.submit(packets[2])  # a delta with no reference now
    assert decoder.wait_idle(timeout=10.0)
    stats = decoder.stats()
    assert stats["decode_errors"] == 1 and stats["frames_discarded"] == 1
    assert decoder.need_keyframe and decoder.keyframe_requests == 1
    assert "VP8" in (decoder.last_error() or "")
    ((_, pixels),) = decode_each(decoder, ring, [packets[4]])  # the next key frame
    assert not decoder.need_keyframe
    assert psnr(pixels, sources[4]) > 30.0
    with pytest.raises(FrameError, match="max_packet_bytes"):
        decoder.submit(bytes(1 << 17))
    with pytest.raises(FrameError):
        decoder.submit(b"")
    assert decoder.stats()["packets_refused"] == 2
    decoder.reset()
    assert decoder.last_error() is None

    jpeg = _C.Decoder(ring, "jpeg")
    jpeg.submit(b"\xff\xd8 not really a jpeg")
    assert jpeg.wait_idle(timeout=10.0)
    assert jpeg.stats()["decode_errors"] == 1 and "JPEG" in (jpeg.last_error() or "")
    with pytest.raises(InvalidArgumentError):
        _C.Decoder(ring, "h264")


def test_a_decoder_behind_drops_the_oldest_packets():
    packets = encode("vp8", [scene(i, 64, 48) for i in range(6)], keyframe_interval=0)
    ring = _C.InputRing(4, 64, 48)
    decoder = _C.Decoder(ring, "vp8", queue_capacity=2)
    decoder.hold_for_tests(True)
    results = [decoder.submit(packet) for packet in packets[:4]]
    assert results == ["queued", "queued", "dropped_oldest", "dropped_oldest"]
    decoder.hold_for_tests(False)
    assert decoder.wait_idle(timeout=10.0)
    stats = decoder.stats()
    assert stats["packets_dropped"] == 2 and stats["frames_discarded"] == 2  # the key frame went
    assert decoder.need_keyframe


def test_audio_ring_round_trip_and_its_errors():
    audio = _C.AudioRing(48000, 2, 4800, notify_frames=960)
    tone = (np.sin(np.arange(1920) * 2 * np.pi * 440 / 48000) * 20000).astype(np.int16)
    stereo = np.stack([tone, -tone], axis=-1)  # (frames, channels): interleaved when C-contiguous
    assert audio.write(stereo, pts_ns=10_000) == 0
    assert audio.write(stereo.tobytes()) == 0  # bytes of int16 are taken as they are
    assert audio.available == 3840
    ready, _, _ = select.select([audio.fileno()], [], [], 0)
    assert ready
    out = np.zeros((960, 2), np.int16)
    assert audio.read_into(out) == (960, 10_000)
    assert np.array_equal(out, stereo[:960])
    assert audio.read_into(out)[1] == 10_000 + 960 * 1_000_000_000 // 48000
    with pytest.raises(InvalidArgumentError):
        audio.write(np.zeros(3, np.int16))  # not a whole number of stereo frames
    with pytest.raises(InvalidArgumentError):
        audio.write(np.zeros(4, np.float32))
    with pytest.raises(BufferError):
        audio.read_into(b"read-only")
    assert audio.read_into(np.zeros(0, np.int16), timeout=None) == (0, -1)  # no room: no wait
    assert audio.reset() == 1920
    assert audio.read_into(out) == (0, -1)
    assert not select.select([audio.fileno()], [], [], 0)[0]
    stats = audio.stats()
    assert stats["frames_in"] == 3840 and stats["frames_out"] == 1920 and stats["frames_dropped"] == 0
    audio.close()
    with pytest.raises(ClosedError):
        audio.write(stereo)


def test_wake_ends_a_blocked_read_from_another_thread():
    ring = _C.InputRing(2, 8, 8)
    audio = _C.AudioRing(16000, 1, 1600)
    got: list[object] = []

    def read_both() -> None:
        got.append(ring.read(timeout=None))
        got.append(audio.read_into(np.zeros(160, np.int16), timeout=None))

    reader = threading.Thread(target=read_both)
    reader.start()
    while reader.is_alive():
        ring.wake()
        audio.wake()
        reader.join(timeout=0.01)
    assert got == [[], (0, -1)]


def test_waiting_reads_release_the_gil():
    rings = [_C.InputRing(2, 8, 8) for _ in range(2)]
    audios = [_C.AudioRing(48000, 1, 4800) for _ in range(2)]

    def wait(index: int) -> None:
        assert rings[index].read(timeout=0.3) == []
        assert audios[index].read_into(np.zeros(480, np.int16), 480, timeout=0.3) == (0, -1)

    assert_overlap(wait)


def test_submit_and_the_decoder_run_without_the_gil():
    packets = encode("vp8", [scene(i, 640, 480) for i in range(10)], keyframe_interval=0)
    big = bytes(range(256)) * (2 << 12)  # 2 MiB copies
    decoders = [_C.Decoder(_C.InputRing(2, 640, 480), "jpeg", max_packet_bytes=len(big)) for _ in range(2)]
    for decoder in decoders:
        decoder.hold_for_tests(True)  # nothing is decoded: only the copies run

    def submit(index: int) -> None:
        decoders[index].submit(big)

    assert_overlap(submit, repeat=True)  # one copy is over quickly: repeated until both threads are in

    # The decoder thread never takes the GIL: Python runs on while it decodes.
    ring = _C.InputRing(4, 640, 480)
    decoder = _C.Decoder(ring, "vp8", queue_capacity=len(packets))
    decoder.hold_for_tests(True)
    for packet in packets:
        decoder.submit(packet)
    decoder.hold_for_tests(False)
    # This thread keeps the GIL from here on (stats() does not release it, and no other Python thread
    # waits for it): a decoder thread that needed the GIL would make no progress until the deadline.
    deadline = time.monotonic() + 60
    while decoder.stats()["frames_decoded"] < len(packets) and time.monotonic() < deadline:
        pass
    assert decoder.stats()["frames_decoded"] == len(packets)


BLOCKED_READERS = """
    import threading
    import numpy as np
    from reactor_engine import _C

    ring = _C.InputRing(2, 64, 64)
    decoder = _C.Decoder(ring, "jpeg")
    audio = _C.AudioRing(48000, 1, 4800)
    started = threading.Barrier(3)

    def read_frames():
        started.wait()
        while True:
            ring.read(timeout=None)

    def read_audio():
        started.wait()
        while True:
            audio.read_into(np.zeros(480, np.int16), 480, timeout=None)

    threading.Thread(target=read_frames, daemon=True).start()
    threading.Thread(target=read_audio, daemon=True).start()
    started.wait()
    decoder.submit(b"not a jpeg")
"""


def test_exit_is_clean_with_daemon_threads_blocked_in_reads():
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(BLOCKED_READERS)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "terminate called" not in done.stderr
