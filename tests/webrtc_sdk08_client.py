"""Drive the published reactor-sdk 0.8.0 (aiortc, v0 JSON, two channels; unmodified) against a server.

Run inside the test's network namespace with that SDK first on the path (it cannot share a folder
with reactor-sdk 1.x): ``PYTHONPATH=DIR python tests/webrtc_sdk08_client.py SECONDS``. Its local mode
always targets ``http://localhost:8080``. Prints one ``RESULT {json}`` line: READY time, frames, the
indices read from them, the model's reply to a command.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import reactor_sdk
from reactor_sdk import Reactor, ReactorStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webrtc_model import read_index


async def main(seconds: float) -> dict[str, Any]:
    reactor = Reactor(model_name="webrtc-test", local=True)
    frames: list[int] = []
    messages: list[Any] = []
    first: list[float] = []

    @reactor.on_frame
    def frame(image: np.ndarray) -> None:
        if not first:
            first.append(time.monotonic())
        frames.append(read_index(image))

    reactor.on("message", messages.append)
    started = time.monotonic()
    await reactor.connect()
    deadline = time.monotonic() + 15
    while reactor.get_status() != ReactorStatus.READY and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    out: dict[str, Any] = {"version": reactor_sdk.__version__, "status": str(reactor.get_status())}
    out["ready_s"] = round(time.monotonic() - started, 3)
    await asyncio.sleep(seconds)
    await reactor.send_command("echo", {"text": "from 0.8"})
    await reactor.send_command("set_level", {"level": 99})  # invalid: v0 has no error reply, nothing breaks
    deadline = time.monotonic() + 5
    while not messages and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    out["frames"] = len(frames)
    out["first_frame_s"] = round(first[0] - started, 3) if first else None
    out["indices_increasing"] = all(b >= a for a, b in itertools.pairwise(frames))
    out["messages"] = messages
    out["session_id"] = reactor.get_session_id()
    await reactor.disconnect()
    return out


if __name__ == "__main__":
    result = asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0))
    print("RESULT " + json.dumps(result, default=str), flush=True)
