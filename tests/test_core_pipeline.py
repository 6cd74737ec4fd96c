"""The native pipeline end to end: ring policies under stress, JPEG fidelity, zero-copy writes, asyncio."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import threading
import time

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image

from reactor_engine import _C, errors

STRESS_FRAMES = 100_000


def gradient_image(height: int, width: int) -> np.ndarray:
    """A smooth test picture with a hard-edged block: what JPEG is meant for, and a fair PSNR test."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / width, y * 255 / height, (x + y) * 255 / (width + height)], axis=-1)
    image = image.astype(np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = (200, 30, 40)
    return image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def run_stress(policy: str) -> tuple[dict, list[int]]:
    """Writes STRESS_FRAMES tiny frames from one thread while another pops (and sometimes stalls)."""
    ring = _C.FrameRing(4, 8, 8, policy)
    encoder = _C.Encoder(ring, codec="raw", queue_capacity=8)
    frame = np.zeros((8, 8, 3), np.uint8)
    received: list[int] = []
    stop = threading.Event()

    def consume() -> None:
        while True:
            try:
                packet = encoder.queue.pop(timeout=0.05)
            except TimeoutError:
                if stop.is_set() and ring.ready == 0 and encoder.queue.size == 0:
                    return
                continue
            received.append(packet.frame_index)
            assert packet.tobytes()[0] == packet.frame_index % 256
            packet.release()
            if len(received) % 1000 == 0:
                stop.wait(0.001)  # a slow consumer now and then, so the drop policies must act

    consumer = threading.Thread(target=consume)
    consumer.start()
    for index in range(STRESS_FRAMES):
        frame[0, 0, 0] = index % 256
        ring.write(frame, timeout=10.0)
    encoder.flush(timeout=30.0)
    stop.set()
    consumer.join(timeout=30.0)
    assert not consumer.is_alive()
    stats = ring.stats()
    encoder.close()
    return stats, received


def test_block_policy_delivers_every_frame_in_order_under_stress():
    stats, received = run_stress("block")
    assert received == list(range(STRESS_FRAMES))
    assert stats["frames_committed"] == STRESS_FRAMES
    assert stats["frames_encoded"] == STRESS_FRAMES
    assert stats["frames_dropped_oldest"] == stats["frames_dropped_newest"] == 0
    assert stats["block_timeouts"] == 0


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_drop_policies_count_every_frame_exactly_under_stress(policy):
    stats, received = run_stress(policy)
    dropped = stats["frames_dropped_oldest"] + stats["frames_dropped_newest"]
    other = "frames_dropped_newest" if policy == "drop_oldest" else "frames_dropped_oldest"
    assert stats[other] == 0
    assert dropped > 0
    assert stats["frames_committed"] == STRESS_FRAMES
    assert stats["frames_encoded"] + dropped == STRESS_FRAMES
    assert len(received) == stats["frames_encoded"]
    assert all(a < b for a, b in itertools.pairwise(received))
    if policy == "drop_newest":
        assert received[0] == 0  # the oldest frames are the ones kept
    else:
        assert received[-1] == STRESS_FRAMES - 1  # the newest frame always survives


@pytest.mark.parametrize("subsampling", ["444", "422", "420"])
@pytest.mark.parametrize("quality", [75, 90])
def test_jpeg_decodes_with_high_psnr_and_matches_simplejpeg(quality, subsampling):
    image = gradient_image(240, 320)
    ring = _C.FrameRing(2, 320, 240)
    with _C.Encoder(ring, codec="jpeg", quality=quality, subsampling=subsampling) as encoder:
        ring.write(image)
        with encoder.queue.pop(timeout=5.0) as packet:
            ours = packet.tobytes()
            assert (packet.codec, packet.width, packet.height) == ("jpeg", 320, 240)
    decoded = np.asarray(Image.open(io.BytesIO(ours)).convert("RGB"))
    assert psnr(decoded, image) >= 35.0
    reference = simplejpeg.encode_jpeg(image, quality=quality, colorspace="RGB", colorsubsampling=subsampling)
    reference_decoded = np.asarray(Image.open(io.BytesIO(reference)).convert("RGB"))
    assert np.array_equal(decoded, reference_decoded)


def test_i420_packet_has_the_planes_of_the_frame():
    image = np.full((16, 32, 3), (255, 0, 0), np.uint8)
    ring = _C.FrameRing(2, 32, 16)
    with _C.Encoder(ring, codec="i420") as encoder:
        ring.write(image)
        with encoder.queue.pop(timeout=5.0) as packet:
            planes = np.frombuffer(packet.tobytes(), np.uint8)
    assert planes.size == 32 * 16 * 3 // 2
    luma, cb, cr = planes[: 32 * 16], planes[32 * 16 : 32 * 16 + 128], planes[32 * 16 + 128 :]
    assert abs(int(luma.mean()) - 76) <= 2  # BT.601 full-range Y of pure red
    assert cr.mean() > 200 > 128 > cb.mean()


def test_zero_copy_slot_writes_reach_the_packet_through_numpy_and_dlpack():
    ring = _C.FrameRing(2, 64, 48)
    with _C.Encoder(ring, codec="raw") as encoder:
        slot = ring.acquire(40, 30, timeout=1.0)
        view = np.asarray(slot)
        assert view.shape == (30, 40, 3) and view.flags.writeable
        view[:] = 9
        ring.commit(slot, pts_ns=1234)
        slot = ring.acquire(40, 30, timeout=1.0)
        tensor = torch.from_dlpack(slot)
        assert tensor.shape == (30, 40, 3) and tensor.dtype == torch.uint8
        tensor.fill_(42)
        ring.commit(slot)
        first = encoder.queue.pop(timeout=5.0)
        second = encoder.queue.pop(timeout=5.0)
    assert set(first.tobytes()) == {9} and first.pts_ns == 1234 and first.size == 40 * 30 * 3
    assert set(second.tobytes()) == {42}


def test_write_accepts_strided_frames():
    image = gradient_image(30, 40)
    ring = _C.FrameRing(3, 40, 30)
    with _C.Encoder(ring, codec="raw") as encoder:
        ring.write(image[::-1])  # negative row stride
        ring.write(np.ascontiguousarray(image.transpose(2, 0, 1)).transpose(1, 2, 0))  # CHW memory
        flipped = np.frombuffer(encoder.queue.pop(timeout=5.0).tobytes(), np.uint8).reshape(30, 40, 3)
        planar = np.frombuffer(encoder.queue.pop(timeout=5.0).tobytes(), np.uint8).reshape(30, 40, 3)
    assert np.array_equal(flipped, image[::-1])
    assert np.array_equal(planar, image)


def test_packet_metadata_is_stamped_in_order_on_one_clock():
    ring = _C.FrameRing(2, 16, 16)
    with _C.Encoder(ring, codec="jpeg") as encoder:
        before = _C.now_ns()
        ring.write(np.zeros((16, 16, 3), np.uint8), frame_index=7)
        packet = encoder.queue.pop(timeout=5.0)
    after = _C.now_ns()
    assert packet.frame_index == 7
    assert before <= packet.t_acquire_ns <= packet.t_commit_ns <= packet.t_encode_start_ns
    assert packet.t_encode_start_ns <= packet.t_encode_end_ns <= packet.t_publish_ns <= after
    assert packet.pts_ns == packet.t_commit_ns


def test_packet_refuses_release_while_a_view_is_alive_and_stays_readable_after():
    ring = _C.FrameRing(2, 8, 8)
    with _C.Encoder(ring, codec="raw") as encoder:
        ring.write(np.ones((8, 8, 3), np.uint8))
        packet = encoder.queue.pop(timeout=5.0)
        view = memoryview(packet)
        assert view.readonly and len(view) == packet.size == 192
        with pytest.raises(BufferError, match="live buffer export"):
            packet.release()
        view.release()
        packet.release()
        assert packet.released and packet.frame_index == 0
        with pytest.raises(BufferError, match="released"):
            memoryview(packet)


def test_stats_report_percentiles_for_every_stage():
    ring = _C.FrameRing(4, 32, 32)
    with _C.Encoder(ring, codec="jpeg") as encoder:
        for _ in range(20):
            ring.write(np.zeros((32, 32, 3), np.uint8))
            encoder.queue.pop(timeout=5.0).release()
        stats = ring.stats()
    assert stats["frames_encoded"] == 20
    for stage in ("acquire", "copy", "queue_wait", "encode", "commit_to_packet"):
        hist = stats["latency"][stage]
        assert hist["count"] == 20
        assert 0 <= hist["p50"] <= hist["p90"] <= hist["p99"] <= hist["p999"] <= hist["max"]
    assert stats["latency"]["packet_gap"]["count"] == 19


def test_asyncio_reader_receives_packets_through_the_eventfd():
    ring = _C.FrameRing(4, 16, 16)
    encoder = _C.Encoder(ring, codec="jpeg", queue_capacity=4)
    queue = encoder.queue
    frames = 50

    async def receive() -> list[int]:
        loop = asyncio.get_running_loop()
        indices: list[int] = []
        done = asyncio.Event()

        def on_readable() -> None:
            queue.clear_event()
            while (packet := queue.try_pop()) is not None:
                indices.append(packet.frame_index)
                packet.release()
            if len(indices) == frames:
                done.set()

        loop.add_reader(queue.fileno(), on_readable)
        producer = threading.Thread(
            target=lambda: [ring.write(np.zeros((16, 16, 3), np.uint8), timeout=10.0) for _ in range(frames)]
        )
        producer.start()
        try:
            await asyncio.wait_for(done.wait(), timeout=30.0)
        finally:
            loop.remove_reader(queue.fileno())
            producer.join()
        return indices

    assert asyncio.run(receive()) == list(range(frames))
    encoder.close()


def test_ring_carved_from_a_shared_arena_and_reset_between_sessions():
    arena = _C.HostArena(4 * 64 * 64 * 3 + (1 << 16), lock=False)
    ring = _C.FrameRing(2, 64, 64, arena=arena)
    assert arena.used >= 2 * 64 * 64 * 3
    assert ring.pinning == arena.pinning
    ring.write(np.zeros((64, 64, 3), np.uint8))
    assert ring.ready == 1
    assert ring.reset() == 1
    assert ring.stats()["frames_discarded"] == 1
    arena.close()  # the ring keeps the memory alive
    ring.write(np.zeros((64, 64, 3), np.uint8))
    assert ring.ready == 1


def test_the_encoder_thread_is_named_for_tools():
    with _C.Encoder(_C.FrameRing(2, 8, 8)):
        names = set(_threads_named("").values())
    assert "reactor-encode" in names


def _threads_named(prefix: str) -> dict[int, str]:
    threads = {}
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                name = comm.read().strip()
        except FileNotFoundError:  # a thread that ended while listing
            continue
        if name.startswith(prefix):
            threads[int(task)] = name
    return threads


def _still_listed(tids: set[int], within_s: float = 10.0) -> set[int]:
    """Those of `tids` that /proc still lists once `within_s` is over.

    A joined thread can stay listed for a moment: pthread_join returns when the kernel clears the
    thread's tid, early in its exit, and /proc drops the task only when the exit is over. A thread
    that was not ended stays listed for good; the bound is only there to end the wait.
    """
    deadline = time.monotonic() + within_s
    while (listed := {t for t in tids if os.path.exists(f"/proc/self/task/{t}")}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.005)
    return listed


def _encoder_threads() -> set[int]:
    return set(_threads_named("reactor-encode"))


@pytest.mark.parametrize(("scheduling", "policy"), [("batch", os.SCHED_BATCH), ("normal", os.SCHED_OTHER)])
def test_the_encoder_thread_runs_under_the_requested_kernel_policy(scheduling, policy):
    before = _encoder_threads()
    with _C.Encoder(_C.FrameRing(2, 8, 8), scheduling=scheduling) as encoder:
        (tid,) = _encoder_threads() - before
        assert os.sched_getscheduler(tid) == policy  # what the kernel has, not what the object says
        assert encoder.scheduling == scheduling
        assert encoder.scheduling_error == 0


def test_the_encoder_thread_is_a_batch_thread_by_default_and_names_the_policies_it_takes():
    before = _encoder_threads()
    with _C.Encoder(_C.FrameRing(2, 8, 8)) as encoder:
        (tid,) = _encoder_threads() - before
        assert os.sched_getscheduler(tid) == os.SCHED_BATCH
        assert encoder.scheduling == "batch"
    with pytest.raises(errors.InvalidArgumentError, match="expected 'batch' or 'normal'"):
        _C.Encoder(_C.FrameRing(2, 8, 8), scheduling="fifo")


@pytest.mark.parametrize(("scheduling", "policy"), [("batch", os.SCHED_BATCH), ("normal", os.SCHED_OTHER)])
def test_jpeg_threads_start_stripe_helpers_scheduled_as_the_encoder_and_close_ends_them(scheduling, policy):
    before = _threads_named("reactor-jpeg-")
    with _C.Encoder(_C.FrameRing(2, 1280, 720), jpeg_threads=3, scheduling=scheduling) as encoder:
        helpers = {tid: name for tid, name in _threads_named("reactor-jpeg-").items() if tid not in before}
        assert sorted(helpers.values()) == ["reactor-jpeg-1", "reactor-jpeg-2"]
        assert {os.sched_getscheduler(tid) for tid in helpers} == {policy}
        assert encoder.jpeg_threads == 3
    assert not _still_listed(set(helpers))  # close() ended them
    with _C.Encoder(_C.FrameRing(2, 1280, 720)) as encoder:  # one thread unless asked
        assert encoder.jpeg_threads == 1
    for bad in (0, 17):
        expected = f"JPEG threads must be between 1 and 16, got {bad}"
        with pytest.raises(errors.InvalidArgumentError, match=expected):
            _C.Encoder(_C.FrameRing(2, 1280, 720), jpeg_threads=bad)


def test_a_striped_jpeg_is_one_valid_jpeg_with_the_pixels_of_a_one_thread_encode():
    rng = np.random.default_rng(3)
    ramp = np.add.outer(np.arange(720), np.arange(1280)) // 9
    frame = np.clip(ramp[:, :, None] + rng.integers(0, 30, (720, 1280, 3)), 0, 255).astype(np.uint8)
    jpegs = {}
    for threads in (1, 2):
        ring = _C.FrameRing(2, 1280, 720)
        with _C.Encoder(ring, quality=85, jpeg_threads=threads) as encoder:
            ring.write(frame)
            with encoder.queue.pop(5.0) as packet:
                jpegs[threads] = packet.tobytes()
    one, two = jpegs[1], jpegs[2]
    assert b"\xff\xdd" not in one[: one.index(b"\xff\xda")]  # no DRI: TurboJPEG's bytes
    header = two[: two.index(b"\xff\xda")]
    assert b"\xff\xdd" in header  # a restart interval, one restart marker between the two stripes
    assert two.count(b"\xff\xd0") == 1 and b"\xff\xd1" not in two
    for decode in (
        lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB"),
        lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
    ):
        assert np.array_equal(decode(two), decode(one))
    assert Image.open(io.BytesIO(two)).size == (1280, 720)
