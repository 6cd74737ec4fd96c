"""The project's docs stand alone and their examples run: every Python block of README.md and docs/."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A block may be preceded by <!-- docs-test: webrtc ... -->: it then runs where the demo is served over
# WebRTC (two libwebrtc peers need a network namespace: see tests/netns.py).
_BLOCK = re.compile(r"^(?:<!-- docs-test: (\w+)[^\n]*-->\n)?```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"\]\(([^)#]+)[^)]*\)|`(\.\./[^`]+)`")


def _blocks(kind: str | None) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for number, match in enumerate(_BLOCK.finditer(doc.read_text(encoding="utf-8")), 1):
            if match.group(1) == kind:
                found.append((f"{doc.relative_to(ROOT)}#{number}", match.group(2)))
    return found


@pytest.mark.parametrize(("where", "code"), _blocks(None), ids=[where for where, _ in _blocks(None)])
def test_every_python_block_of_the_docs_runs(where, code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize(("where", "code"), _blocks("webrtc"), ids=[where for where, _ in _blocks("webrtc")])
def test_every_webrtc_block_of_the_docs_runs_against_the_demo(where, code, tmp_path):
    pytest.importorskip("reactor_sdk")
    from webrtc_helpers import STUN_PORT, stun_namespace

    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    log = tmp_path / "server.log"
    with stun_namespace() as ns:
        with log.open("wb") as sink:
            server = ns.python_command(
                [
                    str(Path(sys.executable).with_name("reactor-engine")), "run", "--port", "8080",
                    "--ice-server", f"stun:{ns.server_ip}:{STUN_PORT}",  # so ICE gathering does not wait
                ],
                stdout=sink,
            )  # fmt: skip
        try:
            for _ in range(600):
                if "serving model" in log.read_text(errors="replace") or server.poll() is not None:
                    break
                time.sleep(0.1)
            done = ns.run_python([str(script)], timeout=120)
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}\n{log.read_text()[-2000:]}"


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_docs_link_only_inside_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    for match in _LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z]+://", target):
            continue
        resolved = (doc.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc.name} links {target}, outside the repository"
        assert resolved.exists(), f"{doc.name} links {target}, which does not exist"
