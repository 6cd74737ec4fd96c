"""The published @reactor-team/js-sdk 2.9.0 (npm, unmodified) in headless Chromium against the server.

js-sdk 2.9 is the flat-routes flavour: one ``data`` channel, v0 JSON, its candidates inside the offer,
and no ``resume_track`` (video must flow at once). The SDK is bundled with esbuild at test time from
``build/js-sdk`` (``JS_SDK_DIR``), never checked in; set it up once with::

    npm install --prefix build/js-sdk --no-audit --no-fund \\
        @reactor-team/js-sdk@2.9.0 react@18.3.1 zustand@5 esbuild@0.28.2

Chromium, chromedriver, the page's driver and the server all run inside a network namespace made for
the test; the page is a local file, so every call it makes is cross-origin (CORS), as a web app's.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import NetNs
from webrtc_helpers import HERE, run_client, server, stun_namespace

pytest.importorskip("selenium")
pytest.importorskip("reactor_webrtc")

JS_SDK_DIR = Path(os.environ.get("JS_SDK_DIR", HERE.parent / "build" / "js-sdk"))
INSTALL = (
    f"npm install --prefix {JS_SDK_DIR} --no-audit --no-fund "
    "@reactor-team/js-sdk@2.9.0 react@18.3.1 zustand@5 esbuild@0.28.2"
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for binary in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(binary).exists():
            pytest.skip(f"{binary} is not installed (Debian: apt-get install chromium chromium-driver)")
    esbuild = JS_SDK_DIR / "node_modules" / ".bin" / "esbuild"
    package = JS_SDK_DIR / "node_modules" / "@reactor-team" / "js-sdk" / "package.json"
    if not esbuild.exists() or not package.exists():
        pytest.skip(f"@reactor-team/js-sdk 2.9.0 is not installed in {JS_SDK_DIR}: {INSTALL}")
    out = tmp_path_factory.mktemp("js-sdk") / "bundle.js"
    subprocess.run(
        [
            str(esbuild), str(HERE / "js_sdk" / "entry.js"), "--bundle", "--format=iife",
            "--define:process.env.NODE_ENV=\"production\"", f"--outfile={out}", "--log-level=warning",
        ],
        env={**os.environ, "NODE_PATH": str(JS_SDK_DIR / "node_modules")},
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    return out


@pytest.fixture
def ns(bundle: Path) -> Iterator[NetNs]:
    with stun_namespace() as namespace:
        yield namespace


def test_js_sdk_29_in_chromium_streams_at_once_and_gets_the_models_reply(ns, bundle):
    # A file:// page sends "Origin: null": allowed here by an explicit allowlist entry ("*").
    with server(ns, model_config={"width": 640, "height": 360}, webrtc={"cors_origins": ["*"]}) as srv:
        result = run_client(ns, "webrtc_js_client.py", [str(bundle), srv.url, "3"], server=srv, timeout=120)
        sessions = srv.log(200)
    ready, frames = result.get("ready_s"), result.get("frames")
    print(f"\n[webrtc] js-sdk 2.9 in Chromium: ready_s={ready:.3f}, frames={frames} in 3 s")
    assert "failed" not in result, result
    assert result["errors"] == [], result["errors"]
    assert result["statuses"][:3] == ["connecting", "waiting", "ready"]
    assert result["frames"] >= 30, result["console"]  # it never sent resume_track: video came at once
    indices = result["indices"]
    assert indices and all(b >= a for a, b in itertools.pairwise(indices))
    assert {"type": "echo", "data": {"text": "from js", "level": 0}} in result["messages"]
    assert "peer 1001 connected" in sessions  # the flat routes' legacy connection
