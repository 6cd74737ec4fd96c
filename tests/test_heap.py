"""The C heap's free pages go back to the OS at session ends (glibc's malloc_trim; reactor_engine.heap)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from test_engine import Probe, _loop_until_stopped

from reactor_engine import Engine, heap

pytestmark = pytest.mark.skipif(not heap.available(), reason="the C library has no malloc_trim (not glibc)")

# A fragmented heap, as sessions and peers that come and go leave it: 64 MiB of 4 KiB blocks, all freed
# but every 64th and the last, which keep the free space below them from the top of the heap.
FRAGMENT = r"""
import ctypes, json, sys
from reactor_engine import heap
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
base = rss_mib()
blocks = [libc.malloc(4096) for _ in range(16384)]
for b in blocks:
    libc.memset(b, 1, 4096)
full = rss_mib()
for i, b in enumerate(blocks):
    if i % 64 and i != len(blocks) - 1:
        libc.free(b)
freed = rss_mib()
released = heap.trim()
print(json.dumps({"base": base, "full": full, "freed": freed, "trimmed": rss_mib(),
                  "released": released, "stats": heap.stats()}))
"""


def test_trim_gives_the_free_pages_of_a_fragmented_heap_back():
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENT], capture_output=True, text=True, timeout=60, check=True
    )
    r = json.loads(out.stdout)
    assert r["full"] - r["base"] > 60, r  # the blocks were resident
    assert r["freed"] - r["base"] > 55, r  # free() alone gave (nearly) nothing back: the premise
    assert r["released"] is True
    assert r["freed"] - r["trimmed"] > 50, r  # the trim did
    assert r["stats"]["trims"] == 1 and r["stats"]["released"] == 1


def _trims_after(engine: Engine, before: int) -> int:
    for _ in range(200):  # bounded: the trim runs on the ended session's thread, just after it ends
        if heap.stats()["trims"] > before:
            break
        time.sleep(0.01)
    return heap.stats()["trims"] - before


@pytest.mark.parametrize("enabled", [True, False])
def test_each_session_end_trims_the_heap_unless_configured_off(small_engine_config, enabled):
    with Engine(Probe, engine_config={**small_engine_config, "trim_heap": enabled}) as engine:
        engine.model.job = _loop_until_stopped
        before = heap.stats()["trims"]
        session = engine.session()
        session.stop()
        assert session.state == "ended"
        assert _trims_after(engine, before) == (1 if enabled else 0)
