"""The soak's WebRTC viewer: reactor-sdk 1.13 (``tests/webrtc_sdk_client.py join``) joins each session.

Two libwebrtc peers on one machine need a non-loopback address, so with a WebRTC client the whole
soak (server and every client) runs inside a network namespace made for it (``tests/netns.py``),
re-run there with ``REACTOR_SOAK_IN_NETNS=1``; the namespace is removed at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "tests" / "webrtc_sdk_client.py"


def webrtc_unavailable() -> str | None:
    """Why a WebRTC client cannot join the soak here, or ``None`` when it can."""
    if os.environ.get("REACTOR_SOAK_IN_NETNS") == "1":
        return None
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2)"
    for module in ("reactor_sdk", "reactor_webrtc", "reactor_engine.transports.webrtc"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        except ImportError as exc:
            return f"{module} does not import: {exc}"
    if not CLIENT.exists():
        return f"{CLIENT.relative_to(REPO)} is missing"
    return None


def rerun_in_namespace(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from netns import NetNs, NetNsUnavailable

    ns = NetNs()
    try:
        ns.create()
    except NetNsUnavailable as exc:
        print(f"soak: no network namespace ({exc}); running without the WebRTC client", file=sys.stderr)
        return subprocess.call(
            [sys.executable, __file__.replace("soak/webrtc.py", "soak.py"), *argv, "--webrtc", "off"]
        )
    try:
        env = {**os.environ, "REACTOR_SOAK_IN_NETNS": "1"}
        script = str(Path(__file__).resolve().parents[1] / "soak.py")
        return subprocess.call(ns.command([sys.executable, "-u", script, *argv]), env=env, cwd=REPO)
    finally:
        ns.close()


class Peer:
    """One client process for one session; ``result()`` waits for its JSON line."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._out: tuple[str, str] | None = None
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        try:
            self._out = self.process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self._out = self.process.communicate()

    def result(self) -> dict[str, Any]:
        self._thread.join(self.timeout + 20)
        out, err = self._out or ("", "")
        for line in out.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
        return {"frames": 0, "error": f"exit {self.process.returncode}: {err[-600:]}"}


class WebRtcClient:
    def join(self, base: str, sid: str, seconds: float) -> Peer:
        stay = max(1.0, seconds - 8.0)  # leaves before the session changes
        return Peer([sys.executable, "-u", str(CLIENT), "join", base, sid, str(stay)], timeout=stay + 60)
