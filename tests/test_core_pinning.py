"""Pinning: the arena reports what it achieved, and works when locking memory is not permitted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from reactor_engine import _C

CHILD = """
import json
import numpy as np
from reactor_engine import _C
arena = _C.HostArena(16 << 20)
ring = _C.FrameRing(4, 320, 240)
encoder = _C.Encoder(ring, codec="jpeg")
ring.write(np.zeros((240, 320, 3), np.uint8))
packet = encoder.queue.pop(timeout=10.0)
print(json.dumps({"arena": arena.pinning, "ring": ring.pinning, "locked": arena.locked, "size": packet.size}))
encoder.close()
"""


def test_arena_reports_its_pinning():
    arena = _C.HostArena(1 << 20)
    assert arena.pinning in ("cuda", "mlock") or arena.pinning.startswith("none: ")
    assert arena.locked == (arena.pinning == "mlock") or arena.cuda_registered
    assert arena.cuda == "registered" or arena.cuda.startswith("unavailable: ")
    assert arena.hugepages == "MADV_HUGEPAGE" or arena.hugepages.startswith("none: ")


def test_pinning_falls_back_and_says_why_when_mlock_is_not_permitted():
    """Runs a child with a memlock limit of 0 and, when root, without CAP_IPC_LOCK."""
    command = ["prlimit", "--memlock=0:0", sys.executable, "-c", CHILD]
    if os.geteuid() == 0:  # root's CAP_IPC_LOCK ignores the limit: drop it for the child
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to drop CAP_IPC_LOCK as root")
        command = ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["locked"] is False
    assert report["arena"].startswith("none: mlock E"), report
    assert "memlock limit 0 bytes" in report["arena"]
    assert report["ring"].startswith("none: mlock")
    assert report["size"] > 0  # the pipeline works all the same
