"""Fuzz target: config overrides (``split_cli_overrides``, ``apply_overrides``, ``load_engine_config``).

Command lines of ``--model.KEY=VALUE`` / ``--engine.KEY=VALUE`` (and stray) arguments, keys and values
mixed from the real settings, YAML and OmegaConf syntax (interpolations, aliases, tags, nesting) and
fuzzed text; plus override mappings as the Python API takes them. Only ``ReactorError`` subclasses
(``ConfigError``) may escape, and an accepted override keeps the kind of the value it replaced.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]
from _common import Bytes, expect, json_value, main
from omegaconf import DictConfig, ListConfig, OmegaConf

from reactor_engine.config import (
    DEFAULT_ENGINE_CONFIG,
    EngineConfig,
    apply_overrides,
    load_engine_config,
    split_cli_overrides,
)
from reactor_engine.errors import ReactorError

MODEL_BASE = OmegaConf.create(
    {
        "fps": 30, "prompt": "a cat", "scale": 1.5, "enabled": True, "size": [512, 512],
        "nested": {"depth": 2, "inner": {"name": "x", "ratio": 0.5}}, "nothing": None, "empty": {},
    }
)  # fmt: skip
ENGINE_KEYS = tuple(yaml.safe_load(DEFAULT_ENGINE_CONFIG.read_text()))
MODEL_KEYS = (
    "fps", "prompt", "scale", "enabled", "size", "size.0", "nested", "nested.depth", "nested.inner.name",
    "nested.inner", "nothing", "empty", "empty.new", "new", "new.deep.key",
)  # fmt: skip
KEY_PARTS = ("", ".", "..", "[0]", "[", "]", "${", "}", "${x}", "0", "-", " ", "=", "\x00", "é")
VALUES = (
    "", " ", "1", "-1", "0.5", "1e-3", "1e999", "-.inf", ".nan", "true", "yes", "off", "null", "~",
    "jpeg", "vp8", "420", "[1, 2]", "[]", "{}", "{a: 1}", "{a: {b: [1, {c: d}]}}", "'quoted'", '"x\\ty"',
    "${x}", "${width}", "${oc.env:HOME}", "${oc.env:NOPE,dflt}", "${oc.decode:'[1]'}", "${", "${a.b",
    "\\${escaped}", "&a [*a]", "&a 1", "*a", "!!binary aGVsbG8=", "!!set {a, b}", "!!float 1", "!!int x",
    "!!python/object:os.system x", "2001-12-14", "2001-12-14 21:59:43", "? a", "- a", "a: b", "a: b: c",
    "|\n  text", "%YAML 1.1\n--- 1", "--- a\n--- b", "0x1F", "0o17", "1_000", "12:30:00", "\x00", "\t",
    "[" * 50, "[" * 1200 + "]" * 1200, "{a: " * 300 + "1" + "}" * 300,
)  # fmt: skip


def fragment(src: Bytes, vocabulary: tuple[str, ...]) -> str:
    """A key or value: from the vocabulary, fuzzed text, or both joined."""
    kind = src.byte() % 4
    if kind == 0:
        return src.text(24)
    if kind == 1:
        return src.pick(vocabulary) + src.pick(KEY_PARTS) + src.pick(vocabulary)
    return src.pick(vocabulary)


def argument(src: Bytes) -> str:
    kind = src.byte() % 8
    if kind == 0:
        return src.text(40)
    section = "model" if kind < 4 else "engine"
    keys = MODEL_KEYS if section == "model" else ENGINE_KEYS
    key = fragment(src, keys)
    if kind == 7:
        return f"--{section}.{key}"  # the space form, refused
    return f"--{section}.{key}={fragment(src, VALUES)}"


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (ListConfig, list)):
        return "list"
    if isinstance(value, (DictConfig, dict)):
        return "mapping"
    return type(value).__name__


def check_kinds(before: DictConfig, after: DictConfig, keys: list[str]) -> None:
    """An override of a key that had a value keeps that value's kind (or sets null).

    Only keys set once (a key set to null takes any value next: the check is against the current
    one) and not to an interpolation (``${...}`` is stored as text and resolved later).
    """
    for key in keys:
        old = OmegaConf.select(before, key, default=None, throw_on_resolution_failure=False)
        if old is None or isinstance(old, (DictConfig, ListConfig)):
            continue  # new keys are free; a mapping may be merged into, a list replaced
        new = OmegaConf.select(after, key, default=None, throw_on_resolution_failure=False)
        if new is None:
            continue
        assert kind_of(new) == kind_of(old), (key, old, new)
        if isinstance(old, int) and not isinstance(old, bool):
            assert type(new) is int, (key, old, new)


def TestOneInput(data: bytes) -> None:
    src = Bytes(data)
    mode = src.byte() % 4
    if mode == 3:  # the Python API's mapping form: Engine(model_config={...}, engine_config={...})
        mapping = json_value(src, max_depth=4)
        if not isinstance(mapping, dict):
            mapping = {fragment(src, ENGINE_KEYS): mapping}
        with expect(ReactorError):
            apply_overrides(MODEL_BASE, mapping, section="model", allow_new_keys=True)
        with expect(ReactorError):
            assert isinstance(load_engine_config(mapping), EngineConfig)
        return
    argv = [argument(src) for _ in range(src.int_in(1, 4))]
    with expect(ReactorError):
        cli = split_cli_overrides(argv)
        assert len(cli.model) + len(cli.engine) + len(cli.rest) == len(argv), (argv, cli)
        with expect(ReactorError):
            after = apply_overrides(MODEL_BASE, cli.model, section="model", allow_new_keys=True)
            keys = [entry.partition("=")[0] for entry in cli.model]
            plain = [k for k, entry in zip(keys, cli.model, strict=True) if "${" not in entry]
            check_kinds(MODEL_BASE, after, [key for key in plain if keys.count(key) == 1])
        with expect(ReactorError):
            config = load_engine_config(cli.engine)
            assert isinstance(config, EngineConfig)
            assert config.width <= config.max_width, config
            assert config.height <= config.max_height, config
            assert not math.isnan(config.fps), config


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # each new model key is a warning: millions of lines
    main(TestOneInput)
    sys.exit(0)
