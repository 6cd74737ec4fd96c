"""Interpreter shutdown with a host's daemon thread blocked in a native call exits cleanly (code 0).

Before the fix the process aborted ("terminate called without an active exception", exit 134):
CPython ends such a thread with pthread_exit when it takes the GIL back during finalization, and the
forced unwind went through a noexcept destructor.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

NATIVE_POP = """
    import threading
    import numpy as np
    from reactor_engine import _C

    ring = _C.FrameRing(slots=4, max_width=64, max_height=64, policy="drop_oldest")
    encoder = _C.Encoder(ring, codec="jpeg")

    def consume():
        while True:
            try:
                packet = encoder.queue.pop(timeout=0.5)
                if packet is not None:
                    packet.release()
            except Exception:
                pass

    threading.Thread(target=consume, daemon=True).start()
    ring.write(np.zeros((64, 64, 3), np.uint8))
    encoder.close()
"""

SESSION_PACKETS = """
    import threading
    import time
    import numpy as np
    from reactor_engine import Engine, VideoModel, get_ctx, model

    @model(name="exit-with-a-reader")
    class Model(VideoModel):
        def __init__(self, config):
            pass

        def start_session(self):
            frame = np.zeros((32, 32, 3), np.uint8)
            while not get_ctx().should_stop():
                get_ctx().get_track().emit(frame)
                time.sleep(0.01)

    config = {"max_width": 32, "max_height": 32, "width": 32, "height": 32, "stop_grace": 0.5}
    engine = Engine(Model, engine_config=config)  # never closed
    session = engine.session()

    def consume():
        for packet in session.packets(timeout=60):
            packet.release()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.3)
"""


@pytest.mark.parametrize("script", [NATIVE_POP, SESSION_PACKETS], ids=["queue-pop", "session-packets"])
def test_exit_is_clean_with_a_daemon_thread_blocked_in_a_native_call(script):
    for _ in range(3):  # the abort happened on most runs, not all
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "terminate called" not in done.stderr


LOADING = """
    import time
    from reactor_engine import Engine

    engine = Engine("reactor_engine/demo", load=False)  # torch-on-CPU: native calls while it loads
    engine.load(background=True)
    time.sleep({delay})  # the script ends while the model loads
"""


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05])
def test_exit_while_the_model_loads_in_the_background_is_clean(delay):
    # Before the fix: the load thread was inside torch's GIL release when the interpreter finalized,
    # and the process aborted (134) about one run in three.
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(LOADING.format(delay=delay))],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert "terminate called" not in done.stderr
