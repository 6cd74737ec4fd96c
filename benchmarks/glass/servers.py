"""The servers of the glass-to-glass benchmark, each its own process inside the namespace.

- ``peer-webrtc``: reactor-runtime 3.10 (``python -m reactor_runtime.serve`` in .venv-peer, from a
  folder holding a generated ``reactor.yaml``) serving ``glass.peer_app:GlassApp``;
- ``engine-ws``: ``reactor-engine run benchmarks/glass/engine_model.py`` (JPEG over WebSocket);
- ``engine-webrtc``: the same, with VP8 and the WebRTC routes the Reactor SDKs use.

Every server binds the namespace's server address, is told the namespace's STUN responder (so ICE
gathering does not wait), and appends its stamped model's emissions to ``stamps``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE.parent
REPO = BENCHMARKS.parent
PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"
ENGINE_CLI = Path(sys.executable).parent / "reactor-engine"

PATHS = ("peer-webrtc", "engine-webrtc", "engine-ws")
CLIENT_MODE = {"peer-webrtc": "sdk", "engine-webrtc": "sdk", "engine-ws": "ws"}
LABELS = {
    "peer-webrtc": "reactor-runtime 3.10 (the peer) over WebRTC (reactor-webrtc 0.24.2) to reactor-sdk 1.13",
    "engine-webrtc": "reactor-engine over WebRTC (native VP8, reactor-webrtc) to reactor-sdk 1.13",
    "engine-ws": "reactor-engine over its JPEG-over-WebSocket protocol (JPEG only) to reactor_engine.client",
}
# Engine settings per path. WebRTC: `reactor-engine run`'s default (VP8 primary, JPEG beside it,
# disabled while no WebSocket client reads it). WebSocket: JPEG only, so no VP8 is encoded for nobody.
ENGINE_WEBRTC_ARGS: tuple[str, ...] = ()
ENGINE_WS_ARGS = ("--engine.codec=jpeg", "--engine.extra_codecs=[]")
ENGINE_WEBRTC_ENV: dict[str, str] = {}  # e.g. a STUN option, "{stun}" = the responder


@dataclass
class ServerSpec:
    path: str
    width: int
    height: int
    fps: float
    host: str
    port: int
    stun: str  # host:port of the namespace's STUN responder
    stamps: Path
    workdir: Path
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def sdk_available() -> str:
    """Empty when the WebRTC client (reactor-sdk 1.13 in this venv) imports, else why not."""
    try:
        import reactor_sdk
    except ImportError as exc:
        return f"reactor-sdk is not installed here ({exc}): .venv/bin/pip install reactor-sdk==1.13.0"
    return "" if reactor_sdk.__version__ else "reactor-sdk has no version"


def peer_available() -> str:
    """Empty when the peer runtime can run, else why not."""
    if sdk_available():
        return sdk_available()
    if not PEER_PYTHON.exists():
        return "no .venv-peer (run scripts/peer_runtime_venv.sh; it needs a Python 3.12)"
    check = subprocess.run(
        [str(PEER_PYTHON), "-c", "import reactor_runtime.serve, reactor_webrtc"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if check.returncode != 0:
        return f"reactor-runtime does not import in .venv-peer: {check.stderr.strip()[-300:]}"
    return ""


def engine_webrtc_available() -> str:
    """Empty when reactor-engine serves its WebRTC transport, else why not."""
    if sdk_available():
        return sdk_available()
    check = subprocess.run(
        [sys.executable, "-c", _MOUNT_PROBE], capture_output=True, text=True, check=False, timeout=60
    )
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return f"reactor-engine's WebRTC transport is not there yet ({last})"
    return ""


# The transport exists and something outside its own package mounts its routes (the http app).
_MOUNT_PROBE = """
import pathlib, reactor_engine, reactor_engine.transports.webrtc as w
w.webrtc_routes
root = pathlib.Path(reactor_engine.__file__).parent
users = [p for p in root.rglob("*.py") if "webrtc_routes" in p.read_text() and "webrtc" not in p.parts[-2:-1]]
assert users, "webrtc_routes is not mounted by the http app yet"
"""


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCHMARKS), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command(spec: ServerSpec) -> tuple[list[str], dict[str, str], Path]:
    """(argv, env, cwd) of the server process, to be run inside the namespace."""
    env = _base_env()
    spec.workdir.mkdir(parents=True, exist_ok=True)
    if spec.path == "peer-webrtc":
        (spec.workdir / "glass.yaml").write_text(
            f"width: {spec.width}\nheight: {spec.height}\nfps: {spec.fps}\nstamps: {str(spec.stamps)!r}\n"
        )
        (spec.workdir / "reactor.yaml").write_text(
            "model:\n  name: glass\nruntime:\n  import: glass.peer_app:GlassApp\n  config: glass.yaml\n"
        )
        env.update(
            HOST=spec.host,
            PORT=str(spec.port),
            STUN_SERVERS=f"stun:{spec.stun}",
            SIGTERM_GRACE_PERIOD="1",
            EXIT_TIMEOUT_SECONDS="5",
            REACTOR_LOG_LEVEL="WARNING",
        )
        env.update(spec.env)
        return [str(PEER_PYTHON), "-m", "reactor_runtime.serve"], env, spec.workdir
    argv = [
        str(ENGINE_CLI),
        "run",
        str(HERE / "engine_model.py"),
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--insecure",  # the address exists only inside the benchmark's namespace
        f"--model.width={spec.width}",
        f"--model.height={spec.height}",
        f"--model.fps={spec.fps}",
        f"--model.stamps={spec.stamps}",
        f"--engine.width={spec.width}",
        f"--engine.height={spec.height}",
    ]
    argv += ENGINE_WS_ARGS if spec.path == "engine-ws" else ()
    if spec.path == "engine-webrtc":
        argv += ENGINE_WEBRTC_ARGS
        env.update({k: v.format(stun=spec.stun) for k, v in ENGINE_WEBRTC_ENV.items()})
    argv += spec.extra_args
    env.update(spec.env)
    return argv, env, REPO


class Server:
    """A server process started inside the namespace; ``stop()`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, ns: Any, spec: ServerSpec) -> None:
        argv, env, cwd = command(spec)
        self.spec = spec
        self.log_path = spec.workdir / f"{spec.path}.log"
        self._log = self.log_path.open("wb")
        # `ip netns exec` execs the command: this pid is the server's own.
        self.proc = subprocess.Popen(
            ns.command(argv), cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
