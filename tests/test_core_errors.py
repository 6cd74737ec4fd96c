"""Errors of the native core: the hierarchy, bad input refused with what was expected, use after close."""

from __future__ import annotations

import numpy as np
import pytest

import reactor_engine
from reactor_engine import _C, errors

BUILTIN_BASES = {
    errors.InvalidArgumentError: ValueError,
    errors.FrameError: ValueError,
    errors.ReactorTimeoutError: TimeoutError,
    errors.ClosedError: RuntimeError,
    errors.StateError: RuntimeError,
    errors.EncodeError: RuntimeError,
    errors.AllocationError: MemoryError,
    errors.CudaError: RuntimeError,
    errors.ConfigError: ValueError,
    errors.ModelError: TypeError,
    errors.CommandError: ValueError,
    errors.NoActiveSession: RuntimeError,
    errors.EngineBusy: RuntimeError,
    errors.WeightsError: ValueError,
}


def test_every_error_roots_at_reactor_error_with_its_builtin_base():
    assert set(BUILTIN_BASES) | {errors.ReactorError} == {getattr(errors, name) for name in errors.__all__}
    for cls, builtin in BUILTIN_BASES.items():
        assert issubclass(cls, errors.ReactorError)
        assert issubclass(cls, builtin)
        assert getattr(reactor_engine, cls.__name__) is cls
    assert issubclass(errors.ReactorError, Exception)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _C.HostArena(0), "positive number of bytes, got 0"),
        (lambda: _C.HostArena(-4096), "positive number of bytes, got -4096"),
        (lambda: _C.FrameRing(0, 64, 64), "between 2 and 1024 slots, got 0"),
        (lambda: _C.FrameRing(1, 64, 64), "between 2 and 1024 slots, got 1"),
        (lambda: _C.FrameRing(4, 0, 64), "must be positive, got 0x64"),
        (lambda: _C.FrameRing(4, 64, -1), "must be positive, got 64x-1"),
        (lambda: _C.FrameRing(4, 64, 64, "newest"), "expected 'block', 'drop_oldest' or 'drop_newest'"),
        (lambda: _C.Encoder(_C.FrameRing(2, 8, 8), codec="png"), "expected 'raw', 'i420' or 'jpeg'"),
        (lambda: _C.Encoder(_C.FrameRing(2, 8, 8), quality=0), "between 1 and 100, got 0"),
        (
            lambda: _C.Encoder(_C.FrameRing(2, 8, 8), subsampling="411"),
            "expected '444', '422', '420' or 'gray'",
        ),
        (lambda: _C.Encoder(_C.FrameRing(2, 8, 8), queue_capacity=0), "between 1 and 4096, got 0"),
        (lambda: _C.FrameRing(2, 8, 8).acquire(8, 8, timeout=-1.0), "timeout must be None or >= 0"),
    ],
)
def test_bad_sizes_and_options_are_refused_naming_what_was_expected(make, match):
    with pytest.raises(errors.InvalidArgumentError, match=match) as info:
        make()
    assert isinstance(info.value, ValueError)


def test_frames_that_do_not_fit_are_frame_errors():
    ring = _C.FrameRing(2, 64, 48)
    with pytest.raises(errors.FrameError, match=r"frame of 65x48 is larger than the ring's slots of 64x48"):
        ring.acquire(65, 48)
    with pytest.raises(errors.FrameError, match="frame size must be positive, got 0x10"):
        ring.acquire(0, 10)
    with pytest.raises(errors.FrameError, match=r"shape \(48, 64, 4\); the ring takes \(H, W, 3\) uint8 RGB"):
        ring.write(np.zeros((48, 64, 4), np.uint8))
    with pytest.raises(errors.FrameError, match=r"shape \(48, 64\); the ring takes"):
        ring.write(np.zeros((48, 64), np.uint8))
    with pytest.raises(errors.FrameError, match="format 'f' of 4 bytes; the ring takes"):
        ring.write(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(errors.FrameError, match="larger than the ring's slots"):
        ring.write(np.zeros((49, 64, 3), np.uint8))
    assert ring.stats()["frames_committed"] == 0


def test_commit_of_a_slot_not_acquired_is_a_state_error():
    ring = _C.FrameRing(3, 8, 8)
    other = _C.FrameRing(3, 8, 8)
    slot = ring.acquire(8, 8)
    with pytest.raises(errors.StateError, match="still acquired; commit or abort it"):
        ring.acquire(8, 8)
    with pytest.raises(errors.StateError, match="belongs to another ring"):
        other.commit(slot)
    ring.commit(slot)
    with pytest.raises(errors.StateError, match="not acquired"):
        ring.commit(slot)
    with pytest.raises(BufferError, match="already committed or aborted; acquire a new one"):
        memoryview(slot)
    aborted = ring.acquire(8, 8)
    ring.abort(aborted)
    with pytest.raises(errors.StateError, match=r"cannot commit slot .*: it is not acquired"):
        ring.commit(aborted)
    assert ring.stats()["frames_aborted"] == 1


def test_full_ring_under_block_times_out_as_a_timeout_error():
    ring = _C.FrameRing(2, 8, 8, "block")
    ring.write(np.zeros((8, 8, 3), np.uint8))
    ring.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TimeoutError, match=r"no free frame slot within .* policy block") as info:
        ring.write(np.zeros((8, 8, 3), np.uint8), timeout=0.01)
    assert isinstance(info.value, errors.ReactorTimeoutError)
    assert ring.stats()["block_timeouts"] == 1


def test_empty_queue_pop_times_out():
    ring = _C.FrameRing(2, 8, 8)
    with _C.Encoder(ring) as encoder, pytest.raises(errors.ReactorTimeoutError, match="no packet within"):
        encoder.queue.pop(timeout=0.01)


def test_use_after_close_is_a_closed_error():
    arena = _C.HostArena(4096)
    arena.close()
    assert arena.closed
    with pytest.raises(errors.ClosedError, match="host arena is closed"):
        arena.allocate(16)
    with pytest.raises(errors.ClosedError):
        _ = arena.pinning

    ring = _C.FrameRing(2, 8, 8)
    encoder = _C.Encoder(ring)
    encoder.close()
    assert not encoder.running
    with pytest.raises(errors.ClosedError, match="encoder is closed"):
        encoder.flush(timeout=1.0)
    with pytest.raises(errors.ClosedError, match="packet queue is closed"):
        encoder.queue.pop(timeout=1.0)
    ring.close()
    with pytest.raises(errors.ClosedError, match="frame ring is closed"):
        ring.acquire(8, 8)
    with pytest.raises(errors.ClosedError, match="frame ring is closed"):
        ring.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(errors.ClosedError, match="frame ring is closed"):
        _C.Encoder(ring)


def test_arena_views_are_bounded_and_outlive_close():
    arena = _C.HostArena(8192, lock=False, cuda_register=False, hugepages=False)
    assert (arena.pinning, arena.cuda, arena.hugepages) == (
        "none: locking not requested",
        "disabled",
        "disabled",
    )
    offset = arena.allocate(100, alignment=256)
    view = arena.view(offset, 100)
    view[:4] = b"abcd"
    with pytest.raises(errors.InvalidArgumentError, match="outside the arena of 8192 bytes"):
        arena.view(8000, 1000)
    with pytest.raises(errors.AllocationError, match="asked for 100000"):
        arena.allocate(100_000)
    with pytest.raises(errors.InvalidArgumentError, match="power of two"):
        arena.allocate(8, alignment=3)
    arena.close()
    assert bytes(view[:4]) == b"abcd"
