"""A new user's first hour: the README's commands, in order, from a clean copy of the repository.

The copy holds what a commit of this tree would hold (``git ls-files``: tracked files and untracked
ones git does not ignore; in CI, exactly the commit), so the README's paths and examples must work
without build outputs, ``.venv``, ``../shared`` or files nobody added. The package that runs them is
the one installed in this environment (this checkout's ``.venv``: ``.venv/bin/`` in a command is this
environment's bin folder), since building the native module again would take minutes; ``make
demo`` is checked to be the setup (what CI has just run) followed by the README's first command.

Every command of the README's "Run a model" block runs, in order, and produces what the README says
it does; a command this test does not know fails it, so the README and this walkthrough cannot drift
apart. Servers use ``--port 0`` (other tests may hold 8080). The viewer runs in headless Chromium
(what tests/test_viewer.py needs).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from test_viewer import browser as chromium  # noqa: F401 - a fixture: headless Chromium
from test_viewer import viewer_state, wait_for
from test_viewer_truth import served

from reactor_engine.client import ReactorClient
from reactor_engine.config import EngineConfig

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET = "my-model"  # the README's TARGET: the model `init my-model` made
TIMEOUT_S = 180


@pytest.fixture
def browser(chromium):  # noqa: F811 - the fixture imported above, under the name the tests use
    return chromium


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A copy of the files a commit of this tree would hold."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the walkthrough copies what git tracks")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode()  # fmt: skip
    copy = tmp_path_factory.mktemp("clone")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the tree is not part of the next commit
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def readme_block(readme: str, heading: str, language: str) -> str:
    """The first ``language`` code block under ``## heading``."""
    section = readme.split(f"## {heading}\n", 1)[1]
    match = re.search(rf"^```{language}\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert match, f"README's '{heading}' has no {language} block"
    return match.group(1)


def commands_of(block: str) -> list[list[str]]:
    """Each command of a bash block (a line may hold several, joined by ``&&``), comments dropped."""
    found = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            if "&&" in words:
                at = words.index("&&")
                found.append(words[:at])
                words = words[at + 1 :]
            else:
                found.append(words)
                words = []
    return found


def run(words: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(words, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, (
        f"{shlex.join(words)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done


def test_make_demo_is_the_setup_then_the_readmes_first_command(clone):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    readme = (clone / "README.md").read_text()
    assert "make demo" in readme.split("##", 1)[0]
    # --no-print-directory: under `make test` this runs inside make, which would add "Entering" lines.
    planned = run(["make", "--no-print-directory", "-n", "demo"], clone).stdout.split("\n")
    first = commands_of(readme_block(readme, "Run a model", "bash"))[0]
    assert [line for line in planned if line] == ["scripts/setup.sh", shlex.join(first)]


def test_the_readmes_commands_do_what_it_says_in_order(clone, browser):
    readme = (clone / "README.md").read_text()
    commands = commands_of(readme_block(readme, "Run a model", "bash"))
    checked: list[str] = []
    for words in commands:
        assert words[0] == ".venv/bin/reactor-engine", f"the README runs {words[0]}, not the venv's command"
        args = [TARGET if word == "TARGET" else word for word in words[1:]]
        check = _checker(args)
        check(args, clone, browser)
        checked.append(shlex.join(words))
    assert len(checked) == len(commands) >= 9, checked


# -- what each command of the README promises -------------------------------------------------------


def _checker(args: list[str]) -> Callable[[list[str], Path, object], None]:
    if args == ["run"]:
        return _demo_in_the_viewer
    if args[:1] == ["init"]:
        return _init
    if args[:1] == ["run"] and "--runtime" in args:
        return _headless
    if args[:2] == ["run", TARGET]:
        return _scaffold_served
    if args[:2] == ["run", "examples/torch_plasma/model.py"]:
        return _torch_plasma_served
    if args[:1] == ["capabilities"]:
        return _capabilities
    if args == ["info"]:
        return _info
    if args == ["info", "--engine-defaults"]:
        return _engine_defaults
    if args[:1] == ["bench"]:
        return _bench
    pytest.fail(
        f"the README lists `reactor-engine {shlex.join(args)}`, which this walkthrough does not check"
    )


def _demo_in_the_viewer(args: list[str], clone: Path, browser) -> None:
    """`run`: the built-in demo, its viewer (on :8080 by default) playing it with its controls."""
    help_text = run([str(BIN / "reactor-engine"), "run", "--help"], clone).stdout
    assert "default: 8080" in help_text
    with served(*args[1:], cwd=clone) as server:
        assert "serving model 'reactor-demo'" in server.log
        browser.get(server.url + "?transport=websocket")
        wait_for(lambda: viewer_state(browser).get("framesDrawn", 0) >= 5, 60, "the demo's frames drawn")
        assert browser.find_element("id", "model").text == "reactor-demo"
        assert viewer_state(browser)["status"].startswith("live")
        for name in ("set_prompt", "move", "set_speed", "set_brightness", "pause", "reset"):
            assert browser.find_elements("css selector", f'[data-command="{name}"]'), name


def _init(args: list[str], clone: Path, browser) -> None:
    done = run([str(BIN / "reactor-engine"), *args], clone)
    name = args[1]
    assert f"Created {name}/ with model '{name}'" in done.stdout
    assert f"reactor-engine run {name}" in done.stdout  # the hint: how to run it
    assert (clone / name / "model.py").is_file() and (clone / name / "config.yaml").is_file()


def _scaffold_served(args: list[str], clone: Path, browser) -> None:
    """`run my-model`: the scaffold serves a stream and its commands."""
    with served(*args[1:], cwd=clone) as server:
        client = ReactorClient(server.url)
        schema = client.schema()
        assert schema["model"] == TARGET
        assert set(schema["commands"]) == {"set_brightness", "set_colour", "reset"}
        assert schema["command_state"]["set_colour"] == {"colour": "blue"}
        sid = client.create_session()
        with client.connect(sid) as stream:
            frame = stream.next_frame(timeout=60)
            assert (frame.width, frame.height) == (640, 360)
        client.delete_session(sid)


def _torch_plasma_served(args: list[str], clone: Path, browser) -> None:
    """`run examples/torch_plasma/model.py --model.speed=2 ...`: the example, at the speed asked for."""
    with served(*args[1:], cwd=clone) as server:
        client = ReactorClient(server.url)
        client.wait_ready(120)  # the model loads in the background: its values are known once loaded
        assert client.schema()["command_state"]["set_speed"] == {"speed": 2.0}
        sid = client.create_session()
        with client.connect(sid) as stream:
            frame = stream.next_frame(timeout=60)
            assert (frame.width, frame.height) == (256, 256)
        client.delete_session(sid)


def _headless(args: list[str], clone: Path, browser) -> None:
    """`run TARGET --runtime headless --output out/ --frames 100`: JPEGs + stats.json."""
    done = run([str(BIN / "reactor-engine"), *args], clone)
    out = clone / args[args.index("--output") + 1]
    frames = int(args[args.index("--frames") + 1])
    assert len(list(out.glob("*.jpg"))) == frames
    stats = json.loads((out / "stats.json").read_text())
    assert stats
    summary = done.stdout + done.stderr
    assert re.search(rf"{frames} frames \(jpeg\) in {out.name}, [\d.]+ fps, \d+ dropped", summary), summary


def _capabilities(args: list[str], clone: Path, browser) -> None:
    """`capabilities TARGET`: the command schema."""
    out = json.loads(run([str(BIN / "reactor-engine"), *args], clone).stdout)
    assert out["model"] == TARGET
    names = {entry["name"] for entry in out["capabilities"]["commands"]}
    assert names == {"set_brightness", "set_colour", "reset"}


def _info(args: list[str], clone: Path, browser) -> None:
    """`info`: build features, pinning, GPU telemetry."""
    out = run([str(BIN / "reactor-engine"), *args], clone).stdout
    for part in ("native core:", "codecs:", "host memory pinning:", "GPU:"):
        assert part in out, out


def _engine_defaults(args: list[str], clone: Path, browser) -> None:
    """`info --engine-defaults`: every --engine.KEY, its default and (in a comment) its meaning."""
    out = run([str(BIN / "reactor-engine"), *args], clone).stdout
    assert set(yaml.safe_load(out)) == set(EngineConfig.model_fields)
    assert out.count("#") >= len(EngineConfig.model_fields) // 2  # the meanings, as comments


def _bench(args: list[str], clone: Path, browser) -> None:
    """`bench TARGET --seconds 5`: one in-process session: latency, fps, drops."""
    out = json.loads(run([str(BIN / "reactor-engine"), *args], clone).stdout)
    assert out["model"] == TARGET and out["frames"] > 0 and out["fps"] > 0 and "drops" in out
    for latency in ("emit_ms", "encode_ms", "commit_to_packet_ms"):
        assert out[latency]["count"] > 0, latency


# -- the embed examples -------------------------------------------------------------------------------


def test_the_embed_examples_print_what_they_promise(clone):
    code = readme_block((clone / "README.md").read_text(), "Embed the engine in a host program", "python")
    done = run([sys.executable, "-c", code], clone)
    lines = done.stdout.splitlines()
    assert lines[0] == "{'palette': 'ocean'}"  # as its comment says
    assert all(re.fullmatch(r"\d+ 256 256 \d+", line) for line in lines[1:-1]) and len(lines) > 2
    assert re.fullmatch(r"\d+\.\d fps, \d+ dropped", lines[-1]), lines[-1]

    done = run([sys.executable, "examples/embed.py"], clone)  # as its docstring says
    lines = done.stdout.splitlines()
    assert lines[0] == "command reply: {'palette': 'ocean'}"
    assert all(re.fullmatch(r"frame \d+: 320x240 jpeg, \d+ bytes", line) for line in lines[1:-1])
    assert re.fullmatch(r"\d+ frames at \d+\.\d fps; the first after \d+\.\d ms", lines[-1]), lines[-1]
