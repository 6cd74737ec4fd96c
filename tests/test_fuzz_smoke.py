"""The fuzz targets (``fuzz/``) over their seed corpora, in-process and without atheris; and every
crash the fuzzers found, as a regression test of the code it was in.

``make fuzz`` / ``make fuzz-ci`` run the targets under atheris (libFuzzer). Here each target's
``TestOneInput`` takes each file of ``fuzz/corpus/<target>/``, which keeps the targets importable,
their seeds valid and their checks green in a plain ``pytest`` run.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = ("commands", "config", "weights", "ws", "wire")


def target(name: str) -> ModuleType:
    """``fuzz/fuzz_<name>.py``, imported as the fuzz scripts import each other (``fuzz/`` on the path)."""
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    if name in ("weights", "wire"):
        pytest.importorskip("torch" if name == "weights" else "google.protobuf")
    return importlib.import_module(f"fuzz_{name}")


def seeds() -> list[tuple[str, Path]]:
    return [(name, path) for name in TARGETS for path in sorted((FUZZ / "corpus" / name).iterdir())]


def test_every_target_has_a_seed_corpus() -> None:
    for name in TARGETS:
        assert (FUZZ / f"fuzz_{name}.py").is_file(), name
        assert len(list((FUZZ / "corpus" / name).iterdir())) >= 5, name


@pytest.mark.parametrize(("name", "seed"), seeds(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_target_takes_its_seed(name: str, seed: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):  # the config target's overrides warn about new keys
        target(name).TestOneInput(seed.read_bytes())


@pytest.mark.parametrize("name", TARGETS)
def test_target_takes_empty_and_short_inputs(name: str, caplog: pytest.LogCaptureFixture) -> None:
    fuzz = target(name)
    with caplog.at_level(logging.ERROR):
        for data in (b"", b"\0", b"\x01" * 16, b"\x7f" * 5):
            fuzz.TestOneInput(data)


# -- what fuzzing found: each a test of the code it was in ----------------------------------------
# Each was fixed where it was found: weights.py (tests/test_weights_bad.py holds more), commands.py,
# transports/ws.py, transports/webrtc/wire_v0.py and config.py.


def test_found_weights_zero_size_tensor_whose_dimensions_overflow_int64(tmp_path: Path) -> None:
    from test_weights import entry, write_raw

    from reactor_engine.errors import WeightsError
    from reactor_engine.weights import load_safetensors

    # Was a TypeError out of torch.empty(): "Overflow when unpacking long long".
    path = write_raw(tmp_path / "w.safetensors", {"w": entry("F32", [2**40, 2**40, 0], 0, 0)})
    with pytest.raises(WeightsError, match="is too large: its dimensions multiply past 2"):
        load_safetensors(path)


def test_found_weights_lone_surrogate_and_list_metadata_are_refused(tmp_path: Path) -> None:
    from reactor_engine.errors import WeightsError
    from reactor_engine.weights import load_safetensors

    # Both were accepted (the reference safetensors loader refuses them).
    for header in (b'{"__metadata__": {"": "\\udddd"}}', b'{"__metadata__": []}'):
        path = tmp_path / "m.safetensors"
        path.write_bytes(len(header).to_bytes(8, "little") + header)
        with pytest.raises(WeightsError):
            load_safetensors(path)


@pytest.mark.parametrize("name", ["set_level", "set_speed"])
def test_found_commands_huge_int_argument_is_a_command_error(name: str) -> None:
    from reactor_engine.errors import CommandError

    # Out of bounds, so the error message echoes the value. A host program's send_command can pass it.
    with pytest.raises(CommandError, match=f"invalid arguments for command '{name}'"):
        target("commands").SPECS[name].validate({name.removeprefix("set_"): 10**5000})


def test_found_ws_deeply_nested_message_gets_an_error_reply_and_the_connection_goes_on() -> None:
    ws = target("ws")
    incoming = [
        {"type": "websocket.receive", "text": "[" * 5000},
        {"type": "websocket.receive", "text": json.dumps({"type": "ping", "request_id": "after"})},
    ]
    loop = asyncio.new_event_loop()
    try:
        sent = loop.run_until_complete(ws.converse(incoming, [(b"host", b"127.0.0.1:8080")]))
    finally:
        loop.close()
    replies = [json.loads(m["text"]) for m in sent if m["type"] == "websocket.send" and m.get("text")][1:]
    assert [r.get("code", r["type"]) for r in replies] == ["invalid_json", "pong"], replies


def test_found_wire_v0_request_clip_with_a_huge_integer_is_a_wire_error() -> None:
    pytest.importorskip("google.protobuf")
    from reactor_engine.transports.webrtc.wire import WireError, codec_for

    message = '{"scope": "runtime", "data": {"type": "requestClip", "data": {"duration_seconds": 1%s}}}'
    with pytest.raises(WireError):
        codec_for("v0").decode_data(message % ("0" * 400))


def config_finding(overrides: object, escapes: str) -> object:
    """An override that once escaped as ``escapes`` instead of a ConfigError (fixed in config.py)."""
    return pytest.param(overrides, id=escapes.split()[0])


@pytest.mark.parametrize(
    "overrides",
    [
        config_finding(["x=!!int x"], "ValueError from yaml.safe_load (a bad tagged scalar) in _parse_value"),
        config_finding(
            ["x=!!float 1]"], "ValueError from yaml.safe_load (a bad tagged scalar) in _parse_value"
        ),
        config_finding(
            ["x=" + "[" * 1200], "RecursionError from yaml.safe_load (deep nesting) in _parse_value"
        ),
        config_finding(
            ["x=&a [*a]"], "RecursionError from OmegaConf.update of a self-referencing YAML alias"
        ),
        config_finding(
            ["x=[&a [1, 1, 1, 1], &b [*a, *a, *a, *a], &c [*b, *b, *b, *b], [*c, *c, *c, *c]]"],
            "nothing-yet: YAML aliases expand exponentially (a 250-byte value takes minutes); refuse aliases",
        ),
        config_finding(["size.x=1"], "ConfigTypeError from OmegaConf.select in _apply (outside the try)"),
        config_finding(
            ["prompt=${nope}", "prompt=y"], "InterpolationKeyError from OmegaConf.select in _apply"
        ),
        config_finding(["scale=1" + "0" * 400], "OverflowError from float(value) in _checked"),
        config_finding(
            ["scale.x=1"], "accepted: a key under a float turns it into a mapping (no kind check)"
        ),
        config_finding(["scale..x=1"], "accepted: an empty key segment ('a..b', '.a', 'a.') replaces it"),
        config_finding(
            ["nothing." + ".".join(["a"] * 200) + "=1"], "RecursionError inside OmegaConf.update: a deep key"
        ),
        config_finding(
            ["nothing=" + "{a: " * 300 + "1" + "}" * 300],
            "RecursionError inside OmegaConf.update: a deep value",
        ),
    ],
)
def test_found_config_model_override_is_a_config_error(overrides: list[str]) -> None:
    from omegaconf import OmegaConf

    from reactor_engine.config import apply_overrides
    from reactor_engine.errors import ConfigError

    base = OmegaConf.create({"prompt": "x", "size": [1, 2], "scale": 1.5})
    with pytest.raises(ConfigError):
        apply_overrides(base, overrides, section="model", allow_new_keys=True)


@pytest.mark.parametrize(
    "overrides",
    [
        config_finding(["codec=${x}"], "InterpolationKeyError from OmegaConf.to_container(resolve=True)"),
        config_finding(["fps=1" + "0" * 400], "OverflowError from float(value) in _checked"),
        config_finding({"width": 10**5000}, "ValueError from repr() of a huge int in the error message"),
    ],
)
def test_found_config_engine_override_is_a_config_error(overrides: object) -> None:
    from reactor_engine.config import load_engine_config
    from reactor_engine.errors import ConfigError

    with pytest.raises(ConfigError):
        load_engine_config(overrides)  # type: ignore[arg-type]
