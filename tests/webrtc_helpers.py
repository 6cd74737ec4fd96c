"""Helpers of the WebRTC tests: a STUN responder, the server and the clients, all inside a ``NetNs``.

Imported by test modules (pytest collects nothing here). The server is ``tests/webrtc_server.py``
(the http app with the Reactor local protocol); clients are ``tests/webrtc_sdk_client.py``
(reactor-sdk 1.13) and ``tests/webrtc_raw_client.py`` (hand-driven reactor-webrtc). Each prints one
``RESULT {json}`` line, returned parsed; a failed client's output and the server's log are in the
assertion message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netns import NetNs

HERE = Path(__file__).resolve().parent
STUN_PORT = 3478


class Server:
    """A running ``webrtc_server.py`` in a namespace: ``url``, ``pid`` and its log."""

    def __init__(self, ns: NetNs, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.ns, self.proc, self.url, self.log_path = ns, proc, url, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def sockets(self) -> int:
        """Open socket descriptors of the server process."""
        count = 0
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                if fd.readlink().name.startswith("socket:"):
                    count += 1
            except OSError:
                continue
        return count


@contextmanager
def stun_namespace() -> Iterator[NetNs]:
    """A fresh namespace with the STUN responder running (the tests' fixtures); skips with the reason
    where namespaces cannot be made; always removed."""
    import pytest
    from netns import NetNsUnavailable

    namespace = NetNs()
    try:
        namespace.create()
    except NetNsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        start_stun(namespace)
        yield namespace
    finally:
        namespace.close()


def start_stun(ns: NetNs) -> subprocess.Popen[bytes]:
    proc = ns.python([str(HERE / "stun.py"), ns.server_ip, str(STUN_PORT)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready", "the STUN responder did not start"
    return proc


@contextmanager
def server(
    ns: NetNs,
    *,
    port: int = 8080,
    webrtc: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None,
    hub: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    model: Sequence[str] = (),
    stun: bool = True,
    startup_timeout: float = 60.0,
) -> Iterator[Server]:
    """Serve the test model (or ``model``) on ``127.0.0.1:port`` inside ``ns``; stopped on exit."""
    args = [str(HERE / "webrtc_server.py"), *model, "--port", str(port)]
    if os.environ.get("WEBRTC_DEBUG"):  # the server's debug log (each RateUpdate, bitrate changes)
        args += ["--log", "DEBUG"]
    if stun:
        args += ["--stun", f"stun:{ns.server_ip}:{STUN_PORT}"]
    flags = (("--webrtc", webrtc), ("--engine", engine), ("--hub", hub), ("--model-config", model_config))
    for flag, values in flags:
        for key, value in (values or {}).items():
            args += [flag, f"{key}={json.dumps(value)}"]
    log = Path(tempfile.mkstemp(prefix="webrtc-server-", suffix=".log")[1])
    with log.open("wb") as sink:
        proc = ns.python(args, stdout=subprocess.PIPE, stderr=sink)
    assert proc.stdout is not None
    deadline = time.monotonic() + startup_timeout
    url = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(b"listening "):
            url = line.split()[1].decode().rstrip("/")
            break
    running = Server(ns, proc, url, log)
    assert url, f"the server did not start:\n{running.log()}"
    try:
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        log.unlink(missing_ok=True)


@contextmanager
def cli_server(ns: NetNs, *args: str, port: int = 8080, startup_timeout: float = 60.0) -> Iterator[Server]:
    """``reactor-engine run tests/webrtc_model.py --port PORT ARGS`` inside ``ns``: the real command."""
    command = Path(sys.executable).with_name("reactor-engine")
    log = Path(tempfile.mkstemp(prefix="reactor-engine-run-", suffix=".log")[1])
    with log.open("wb") as sink:
        proc = ns.python_command(
            [str(command), "run", str(HERE / "webrtc_model.py"), "--port", str(port), *args], stdout=sink
        )
    running = Server(ns, proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + startup_timeout
    while "serving model" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, (
            f"reactor-engine run did not start:\n{running.log()}"
        )
        time.sleep(0.1)
    try:
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.unlink(missing_ok=True)


def run_client(
    ns: NetNs, script: str, args: Sequence[str], *, timeout: float = 90.0, server: Server | None = None
) -> dict[str, Any]:
    """Run a client script in ``ns``; its ``RESULT`` as a dict."""
    done = ns.run_python([str(HERE / script), *args], timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    server_log = server.log() if server is not None else ""
    raise AssertionError(
        f"{script} {' '.join(args)} gave no result (exit {done.returncode})"
        f"\n--- stdout\n{done.stdout[-3000:]}"
        f"\n--- stderr\n{done.stderr[-5000:]}\n--- server log\n{server_log}"
    )


_GET = (
    "import json, sys, urllib.error, urllib.request\n"
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=10); print(r.status); print(r.read().decode())\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code); print(e.read().decode())\n"
)


def http_get(ns: NetNs, url: str) -> tuple[int, Any]:
    """GET ``url`` from inside ``ns`` (a bare interpreter: quicker than a client script)."""
    done = subprocess.run(
        ns.command([sys.executable, "-S", "-c", _GET, url]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status, _, body = done.stdout.partition("\n")
    return int(status), json.loads(body) if body.strip() else None


def sdk(ns: NetNs, srv: Server, *args: str, timeout: float = 90.0) -> dict[str, Any]:
    return run_client(ns, "webrtc_sdk_client.py", [args[0], srv.url, *args[1:]], timeout=timeout, server=srv)


def raw(ns: NetNs, srv: Server, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    return run_client(ns, "webrtc_raw_client.py", [args[0], srv.url, *args[1:]], timeout=timeout, server=srv)
