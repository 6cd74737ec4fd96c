"""The published reactor-sdk 0.8.0 (aiortc, v0 JSON, ``data`` + ``control``, unmodified) against the server.

That SDK and reactor-sdk 1.x are both ``reactor_sdk``, so 0.8.0 lives in its own folder, put first on the
client's path: ``pip install --no-deps --target .venv/reactor-sdk-0.8 reactor-sdk==0.8.0`` (its
dependencies, aiortc and aiohttp, are in requirements-dev.txt); ``REACTOR_SDK08_PATH`` points elsewhere.
Its local mode always targets ``http://localhost:8080``: inside the test's namespace that port is ours.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import NetNs
from webrtc_helpers import HERE, server, stun_namespace

pytest.importorskip("aiortc")
pytest.importorskip("reactor_webrtc")

SDK08 = Path(os.environ.get("REACTOR_SDK08_PATH", HERE.parent / ".venv" / "reactor-sdk-0.8"))


@pytest.fixture
def ns() -> Iterator[NetNs]:
    if not (SDK08 / "reactor_sdk" / "reactor.py").is_file():
        pytest.skip(
            f"reactor-sdk 0.8.0 is not installed in {SDK08}: "
            f"pip install --no-deps --target {SDK08} reactor-sdk==0.8.0"
        )
    with stun_namespace() as namespace:
        yield namespace


def test_reactor_sdk_08_streams_and_gets_the_models_reply(ns, monkeypatch):
    with server(ns, model_config={"width": 640, "height": 360}) as srv:
        monkeypatch.setenv("PYTHONPATH", str(SDK08))
        done = ns.run_python([str(HERE / "webrtc_sdk08_client.py"), "3"], timeout=90)
        monkeypatch.delenv("PYTHONPATH")
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, f"no result (exit {done.returncode}):\n{done.stderr[-4000:]}\n--- server\n{srv.log()}"
        result = json.loads(lines[0][len("RESULT ") :])
    print(f"\n[webrtc] reactor-sdk 0.8.0: ready_s={result['ready_s']} frames={result['frames']}")
    assert result["version"] == "0.8.0"
    assert result["status"].endswith("READY")
    assert result["frames"] >= 30  # 3 s at 30 fps, decoded by aiortc in Python on a shared machine
    assert result["indices_increasing"]
    assert {"type": "echo", "data": {"text": "from 0.8", "level": 0}} in result["messages"]
