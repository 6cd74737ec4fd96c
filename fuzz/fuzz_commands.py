"""Fuzz target: command-argument validation (``CommandSpec.validate``, ``CommandQueue.submit``).

Arguments of every supported parameter type (str, int, float, bool, Literal, Field(ge, le),
Optional) are fed JSON text or generated values (huge ints, NaN, nesting, wrong kinds, unknown keys).
Only ``CommandError`` may escape, and what validation accepts must have the declared type and bounds.
"""

from __future__ import annotations

import json
import math
import sys
from concurrent.futures import Future
from typing import Any

from _common import Bytes, expect, json_value, main
from _model import EXPECTED, STYLES, FuzzModel

from reactor_engine.commands import CommandQueue, collect_commands
from reactor_engine.errors import CommandError

SPECS = collect_commands(FuzzModel)
NAMES = sorted(SPECS)
INSTANCE = FuzzModel()


def arguments(src: Bytes, name: str) -> Any:
    """The ``data`` of a command: JSON text, an object of (mostly) its parameters, or any value."""
    mode = src.byte() % 4
    if mode == 0:
        try:
            return json.loads(src.rest().decode("utf-8", "surrogatepass"))
        except (ValueError, RecursionError):
            return None
    if mode == 3:
        return json_value(src)
    params = list(EXPECTED[name])
    data: dict[str, Any] = {}
    for _ in range(src.int_in(0, len(params) + 1)):
        key = src.pick(params) if params and src.byte() % 4 else src.text(10)
        data[key] = json_value(src)
    return data


def check(name: str, out: dict[str, Any]) -> None:
    """What validation returns has every parameter, of its declared kind, inside its bounds."""
    expected = EXPECTED[name]
    assert set(out) == set(expected), (name, out)
    for key, (kind, bounds) in expected.items():
        value = out[key]
        if kind.endswith("?") and value is None:
            continue
        base = kind.rstrip("?")
        if base == "style":
            assert value in STYLES, (name, key, value)
        else:
            assert type(value).__name__ == base, (name, key, value)
        if bounds is not None:
            assert not (isinstance(value, float) and math.isnan(value)), (name, key, value)
            assert bounds[0] <= value <= bounds[1], (name, key, value)


def TestOneInput(data: bytes) -> None:
    src = Bytes(data)
    name = src.pick(NAMES)
    via_queue = src.flag()
    wanted = name if src.byte() % 8 else src.text(12)  # for the queue: now and then an unknown name
    args = arguments(src, name)
    if not via_queue:
        with expect(CommandError):
            check(name, SPECS[name].validate(args))
        return
    queue = CommandQueue(SPECS, wake=lambda: None)
    with expect(CommandError):
        reply: Future[Any] = queue.submit(wanted, args)
        assert queue.apply_pending(INSTANCE) == 1
        result = reply.result(timeout=0)
        if wanted != "reset":
            check(wanted, result)
    queue.close("fuzz input done")


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
