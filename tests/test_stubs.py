"""The type stubs of reactor_engine._C cannot drift: mypy's stubtest compares them with the module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_stubs_match_the_native_module():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "reactor_engine._C",
            "--allowlist",
            str(ROOT / "tests" / "stubtest_allowlist.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_ships_py_typed_beside_the_stubs():
    package = ROOT / "reactor_engine"
    assert (package / "py.typed").is_file()
    assert (package / "_C.pyi").is_file()
