"""A private network namespace for WebRTC tests: run a server and its clients where nothing else is.

libwebrtc ignores loopback interfaces when it gathers ICE candidates, so two peers on one machine need
a non-loopback address. ``NetNs`` makes a uniquely named namespace (``ip netns add``) holding ``lo`` and
a veth pair whose two ends carry private addresses (10.x.y.1 and 10.x.y.2) that exist only in it;
every packet between those addresses stays inside the namespace (the kernel routes it over its ``lo``).
Commands run there through ``ip netns exec``. Where namespaces are not permitted (no root, no
``CAP_SYS_ADMIN``, no ``ip``), the ``netns`` fixture skips with the reason. The namespace, and every
process started through it, is always removed, even when a test fails.

Imported by test modules (pytest collects nothing here); ``from netns import netns`` makes the fixture
available to a test module.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

_counter = itertools.count()
_REPO = Path(__file__).resolve().parent.parent


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


class NetNsUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message says why."""


class NetNs:
    """One network namespace with ``lo`` up and a veth pair; ``server_ip`` and ``client_ip`` live there."""

    def __init__(self) -> None:
        n = next(_counter)
        # Unique per process and per instance (the random part: a namespace left by a killed run of a
        # process with the same pid must not collide), and short: interface names have 15 characters.
        tag = f"{os.getpid() % 100000}{n % 100}{secrets.token_hex(2)}"
        self.name = f"re-test-{tag}"
        self._veth = (f"rva{tag}"[:15], f"rvb{tag}"[:15])
        subnet = (os.getpid() + n) % 250 + 1
        self.server_ip = f"10.213.{subnet}.1"
        self.client_ip = f"10.213.{subnet}.2"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._created = False

    def create(self) -> NetNs:
        if shutil.which("ip") is None:
            raise NetNsUnavailable("the 'ip' command (iproute2) is not installed")
        result = _ip("netns", "add", self.name, check=False)
        if result.returncode != 0:
            raise NetNsUnavailable(f"'ip netns add' is not permitted here: {result.stderr.strip()}")
        self._created = True
        a, b = self._veth
        try:
            self.sh(
                f"ip link set lo up && ip link add {a} type veth peer name {b}"
                f" && ip addr add {self.server_ip}/24 dev {a} && ip addr add {self.client_ip}/24 dev {b}"
                f" && ip link set {a} up && ip link set {b} up"
            )
        except subprocess.CalledProcessError as exc:
            self.close()
            raise NetNsUnavailable(f"could not set up the namespace's links: {exc.stderr}") from exc
        return self

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def sh(self, script: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the namespace; raises ``CalledProcessError`` (with stderr) on failure."""
        return subprocess.run(
            self.command(["sh", "-c", script]), capture_output=True, text=True, check=True, timeout=timeout
        )

    def python(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start this interpreter inside the namespace (``-u``, repo root as cwd); killed at close."""
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        proc = subprocess.Popen(self.command([sys.executable, "-u", *args]), cwd=_REPO, env=env, **kwargs)
        self._procs.append(proc)
        return proc

    def python_command(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace (stderr joins stdout unless given); killed at close."""
        kwargs.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(self.command(argv), cwd=_REPO, **kwargs)
        self._procs.append(proc)
        return proc

    def run_python(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run this interpreter inside the namespace to completion; its stdout and stderr are captured."""
        return subprocess.run(
            self.command([sys.executable, "-u", *args]),
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        self._procs.clear()
        if self._created:
            # Anything still running inside (a child the test lost track of) would keep the veth alive.
            pids = _ip("netns", "pids", self.name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                    os.kill(int(pid), 9)
            _ip("netns", "del", self.name, check=False)
            self._created = False

    def __enter__(self) -> NetNs:
        return self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture
def netns() -> Iterator[NetNs]:
    """A fresh namespace for one test; skips with the reason where namespaces are not permitted."""
    ns = NetNs()
    try:
        ns.create()
    except NetNsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        yield ns
    finally:
        ns.close()
