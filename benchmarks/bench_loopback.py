"""End to end over loopback: commit → client receipt through an HTTP/WebSocket server on 127.0.0.1.

- engine: the http runtime (``reactor_engine.runtimes.http.asgi_app`` under uvicorn), session made
  with ``POST /sessions``, frames read from ``/sessions/{id}/ws``;
- baseline: the pattern most Python servers use, under the same uvicorn: a Starlette WebSocket
  endpoint whose loop awaits the baseline's packet queue through ``asyncio.to_thread`` and sends each
  packet with the same 88-byte frame header (``runtimes.protocol.FrameHeader``).

One client (``websockets``' sync client, the same code for both) stamps the receipt of each binary
frame; latency = receipt - the header's commit stamp (one machine, one steady clock). Server, model
and client share this process (and its GIL), as in every other figure. 30 fps, 720p, GIL-free model.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest
from figures import FIGURES, NS_TO_MS, Figure, declare, record, summary
from pipelines import SIDES, ModelIO, Settings, cycle, make_frames, make_pipeline

declare(
    Figure(
        "loopback_commit_to_client",
        "end to end over loopback: commit → WebSocket client receipt, 720p@30",
        "ms",
        stats=("p50", "p99", "p999"),
        headline="p99",
    )
)
FPS = 30.0


def _http_runtime_available() -> str:
    try:
        import uvicorn  # noqa: F401
        from websockets.sync.client import connect  # noqa: F401

        from reactor_engine.runtimes.http import asgi_app  # noqa: F401
        from reactor_engine.runtimes.protocol import FrameHeader  # noqa: F401
    except ImportError as exc:
        return f"the http runtime cannot be imported: {exc}"
    return ""


class _Uvicorn:
    """uvicorn on 127.0.0.1, a free port, in a thread of this process; ``close()`` stops it."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, ws="websockets-sansio", lifespan="off", log_config=None
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="bench-uvicorn", daemon=True)
        self._thread.start()
        end = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > end or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start on 127.0.0.1")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)


def _baseline_app(pipeline: Any, job: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from reactor_engine.runtimes.protocol import FrameHeader

    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        pipeline.start(job)
        try:
            while True:
                packet = await asyncio.to_thread(pipeline.next_packet, 0.1)
                if packet is None:
                    continue
                header = FrameHeader.of_packet(packet, time.monotonic_ns()).pack()
                await websocket.send_bytes(header + packet.data)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            await asyncio.to_thread(pipeline.stop)

    return Starlette(routes=[WebSocketRoute("/ws", stream)])


def _receive(ws_url: str, frames: int, timeout: float) -> np.ndarray:
    """The client: (frame_index, commit, receipt) of ``frames`` binary messages."""
    from websockets.sync.client import connect

    from reactor_engine.runtimes.protocol import FrameHeader

    rows = np.zeros((frames, 3), dtype=np.int64)
    got = 0
    end = time.monotonic() + timeout
    with connect(ws_url, max_size=16 << 20, open_timeout=10) as ws:
        while got < frames and time.monotonic() < end:
            try:
                message = ws.recv(timeout=1.0)
            except TimeoutError:
                continue
            receipt = time.monotonic_ns()
            if isinstance(message, str):
                continue  # hello, events
            header = FrameHeader.unpack(message)
            rows[got] = (header.frame_index, header.t_commit_ns, receipt)
            got += 1
    return rows[:got]


@pytest.mark.parametrize("side", SIDES)
def test_loopback_commit_to_client(side, quick):
    why = _http_runtime_available()
    if why:
        FIGURES["loopback_commit_to_client"].note = f"not measured: {why}"
        pytest.skip(why)
    from reactor_engine.client import ReactorClient
    from reactor_engine.runtimes.http import asgi_app

    frames_in = make_frames(1280, 720, count=4)
    warm, count = 15, int((3 if quick else 20) * FPS)

    def job(io: ModelIO) -> None:
        source = cycle(frames_in)
        while not io.should_stop():
            io.emit(next(source))

    pipeline = make_pipeline(side, Settings(fps=FPS))
    if side == "engine":
        app = asgi_app(pipeline.engine)  # type: ignore[union-attr]
        pipeline.engine.model.job = job  # type: ignore[union-attr]
    else:
        app = _baseline_app(pipeline, job)
    server = _Uvicorn(app)
    try:
        if side == "engine":
            client = ReactorClient(server.url)
            session_id = client.create_session()
            ws_url = f"ws://127.0.0.1:{server.url.rsplit(':', 1)[1]}/sessions/{session_id}/ws"
        else:
            ws_url = f"ws://127.0.0.1:{server.url.rsplit(':', 1)[1]}/ws"
        rows = _receive(ws_url, warm + count, timeout=(warm + count) / FPS * 3 + 20)
        if side == "engine":
            client.delete_session(session_id)
    finally:
        server.close()  # uvicorn's shutdown closes the connections; the session was deleted above
        pipeline.close()
    latency = (rows[warm:, 2] - rows[warm:, 1]) * NS_TO_MS
    record("loopback_commit_to_client", side, summary(latency), latency, frames=int(latency.size))
