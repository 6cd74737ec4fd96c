"""What the fuzz targets share: a byte reader, a JSON-ish value generator and the atheris entry point.

Each target (``fuzz/fuzz_*.py``) defines ``TestOneInput(data: bytes) -> None`` and calls
``main(TestOneInput)`` under ``if __name__ == "__main__"``. The targets import no atheris at module
level and read their input through :class:`Bytes` (not ``atheris.FuzzedDataProvider``), so
``tests/test_fuzz_smoke.py`` runs every ``TestOneInput`` over its corpus with plain pytest.

Run one target: ``.venv/bin/python fuzz/fuzz_weights.py build/fuzz/weights fuzz/corpus/weights
-max_total_time=60`` (libFuzzer flags; ``make fuzz`` / ``make fuzz-ci`` do this for every target).
"""

from __future__ import annotations

import contextlib
import gc
import math
import struct
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CORPUS = Path(__file__).resolve().parent / "corpus"

# Values that parsers and validators tend to get wrong, mixed into the generated ones.
# 10**400 is past every float (float() raises OverflowError). 10**5000 has more digits than int() /
# repr() convert by default (sys.get_int_max_str_digits()): json.loads never returns it, but a host
# program's send_command can pass it.
INTERESTING_INTS = (
    0, 1, -1, 2, 255, 256, 2**31 - 1, 2**31, 2**32, 2**53, 2**63 - 1, 2**63, 2**64, -(2**63),
    10**400, 10**5000,
)  # fmt: skip
INTERESTING_FLOATS = (0.0, -0.0, 0.5, 1e-308, 5e-324, 1e308, math.inf, -math.inf, math.nan, 2.0**53)
INTERESTING_STRS = ("", " ", "0", "1", "true", "null", "NaN", "1e999", "\x00", "\ud800", "é", "🎥", "a" * 300)


class Bytes:
    """Reads typed values off the fuzzer's bytes; past the end every read returns its smallest value.

    Deterministic and pure Python, so that a corpus file means the same input with or without atheris.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def remaining(self) -> int:
        return len(self._data) - self._at

    def take(self, n: int) -> bytes:
        out = self._data[self._at : self._at + max(0, n)]
        self._at += len(out)
        return out

    def rest(self) -> bytes:
        return self.take(self.remaining())

    def byte(self) -> int:
        b = self.take(1)
        return b[0] if b else 0

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def int_in(self, lo: int, hi: int) -> int:
        """An int in ``[lo, hi]`` from as few bytes as the range needs."""
        span = hi - lo
        if span <= 0:
            return lo
        n = (span.bit_length() + 7) // 8
        return lo + int.from_bytes(self.take(n).ljust(n, b"\0"), "little") % (span + 1)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.int_in(0, len(options) - 1)]

    def double(self) -> float:
        return float(struct.unpack("<d", self.take(8).ljust(8, b"\0"))[0])

    def text(self, max_chars: int, surrogates: bool = True) -> str:
        """A string of up to ``max_chars`` characters: Latin-1, any BMP or astral code point.

        With ``surrogates``, lone surrogates too (what ``json.loads`` makes of ``"\\ud800"``);
        else they become U+FFFD (what a protobuf string or a UTF-8 wire can carry).
        """
        n = self.int_in(0, max_chars)
        kind = self.byte() % 3
        if kind == 0:
            return self.take(n).decode("latin-1")
        if kind == 1:
            raw = self.take(2 * n)
            codes: tuple[int, ...] = struct.unpack(f"<{len(raw) // 2}H", raw[: len(raw) // 2 * 2])
        else:
            raw = self.take(4 * n)
            codes = tuple(c % 0x110000 for c in struct.unpack(f"<{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
        if not surrogates:
            codes = tuple(0xFFFD if 0xD800 <= c <= 0xDFFF else c for c in codes)
        return "".join(map(chr, codes))


def json_value(src: Bytes, depth: int = 0, max_depth: int = 6) -> Any:
    """A JSON-ish Python value: what ``json.loads`` gives, plus the ints, floats and keys it never gives."""
    kind = src.byte() % (12 if depth < max_depth else 8)
    if kind == 0:
        return None
    if kind == 1:
        return src.flag()
    if kind == 2:
        return src.int_in(-(2**16), 2**16)
    if kind == 3:
        return src.pick(INTERESTING_INTS)
    if kind == 4:
        return src.pick(INTERESTING_FLOATS) if src.flag() else src.double()
    if kind == 5:
        return src.text(40)
    if kind == 6:
        return src.pick(INTERESTING_STRS)
    if kind == 7:
        return src.int_in(0, 2**64) * 10 ** src.int_in(0, 30)  # large, still printable
    if kind in (8, 9):
        return [json_value(src, depth + 1, max_depth) for _ in range(src.int_in(0, 4))]
    return {_key(src): json_value(src, depth + 1, max_depth) for _ in range(src.int_in(0, 4))}


def _key(src: Bytes) -> str:
    return src.pick(INTERESTING_STRS) if src.flag() else src.text(12)


def corpus_files(target: str) -> list[Path]:
    """The seed inputs of a target, ``fuzz/corpus/<target>/*``, in name order."""
    return sorted(p for p in (CORPUS / target).iterdir() if p.is_file())


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Fuzz ``test_one_input`` with atheris; the arguments are libFuzzer's (``-runs=``, corpus folders).

    Coverage comes from instrumenting the functions already imported, of ``reactor_engine`` and of
    the fuzz modules: ``atheris.instrument_imports`` cannot see through the editable install's loader.
    """
    import atheris  # type: ignore[import-untyped]

    prefixes = ("reactor_engine", "__main__", "_common", "_model")
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and str(obj.__module__).startswith(prefixes):
            atheris.instrument_func(obj)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def expect(*allowed: type[BaseException]) -> contextlib.AbstractContextManager[None]:
    """Swallow the exceptions a target allows; anything else propagates (a finding)."""
    return contextlib.suppress(*allowed)
