"""Giving the C heap's free pages back to the OS (glibc's ``malloc_trim``) when a session or a peer ends.

Why: a server whose sessions and WebRTC peers come and go fragments glibc's heap. Measured on a 720p
VP8 server with a WebRTC peer per session (20 sessions, ``mallinfo2`` every 5 s): the heap *in use*
stayed at 18-25 MiB while the heap itself grew 26 -> 51 MiB, its free part 10 -> 32 MiB, and RSS
+31 MiB over 200 s; glibc gives free memory back only from the top of a heap, and a few live
objects above the free space keep it resident. With a ``malloc_trim(0)`` every 5 s the same run
stayed flat (RSS +2 MiB). Fixing the dynamic mmap threshold (``MALLOC_MMAP_THRESHOLD_=131072``)
only halved the growth. A trim took 0.3-4 ms (median 0.9 ms) there; it runs off the event loop
and releases the GIL (ctypes does), so it delays no frame.

Only glibc has ``malloc_trim``; elsewhere :func:`trim` does nothing and says so in :func:`stats`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from typing import Any

__all__ = ["available", "stats", "trim"]

_log = logging.getLogger(__name__)


def _find_malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None
    if fn is not None:
        fn.argtypes = [ctypes.c_size_t]
        fn.restype = ctypes.c_int
    return fn


_malloc_trim = _find_malloc_trim()
_running = threading.Lock()  # one trim at a time: a request while one runs is served by it
_counts_lock = threading.Lock()
_trims = 0
_released = 0  # trims after which glibc said it gave memory back
_skipped = 0
_total_ns = 0
_max_ns = 0


def available() -> bool:
    """True where the C library has ``malloc_trim`` (glibc)."""
    return _malloc_trim is not None


def trim() -> bool:
    """Give every whole free page of the C heap back to the OS; True if glibc released any.

    Thread-safe and cheap to call often: when a trim is already running this returns at once (the
    running one covers the request). Blocks the calling thread for about a millisecond, without
    the GIL; call it from a worker thread, not an event loop.
    """
    global _trims, _released, _skipped, _total_ns, _max_ns
    if _malloc_trim is None:
        return False
    if not _running.acquire(blocking=False):
        with _counts_lock:
            _skipped += 1
        return False
    try:
        started = time.monotonic_ns()
        released = bool(_malloc_trim(0))
        took = time.monotonic_ns() - started
    finally:
        _running.release()
    with _counts_lock:
        _trims += 1
        _released += released
        _total_ns += took
        _max_ns = max(_max_ns, took)
    _log.debug("heap trim: %s in %.2f ms", "released" if released else "nothing to release", took / 1e6)
    return released


def stats() -> dict[str, Any]:
    """``{available, trims, released, skipped, total_ms, max_ms}`` since the process started."""
    with _counts_lock:
        return {
            "available": available(),
            "trims": _trims,
            "released": _released,
            "skipped": _skipped,
            "total_ms": round(_total_ns / 1e6, 3),
            "max_ms": round(_max_ns / 1e6, 3),
        }
