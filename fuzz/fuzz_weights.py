"""Fuzz target: the safetensors header parser and loader (``reactor_engine.weights.load_safetensors``).

Each input becomes a file (or an index and its shards) in a private folder under /dev/shm (else the
temp dir): raw bytes, bytes behind a fuzzed header length, or a header generated field by field
(dtypes, shapes, offsets, metadata, all a little wrong). Only ``WeightsError`` may escape; every read
stays inside the file (``os.pread``/``os.preadv`` are watched); an accepted file loads the same
tensors as the reference ``safetensors`` package.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from _common import INTERESTING_INTS, Bytes, expect, json_value, main

from reactor_engine import safetensors_format
from reactor_engine.errors import WeightsError
from reactor_engine.weights import load_safetensors

try:
    from safetensors import SafetensorError
    from safetensors.torch import _TYPES as _REFERENCE_TYPES
    from safetensors.torch import load as reference_load

    REFERENCE_DTYPES = set(_REFERENCE_TYPES.values())
except ImportError:  # the differential check is skipped without the reference package
    reference_load = None  # type: ignore[assignment]

_ROOT = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
for _stale in _ROOT.glob("reactor-fuzz-weights-*"):  # left by a run that crashed (atexit never ran)
    _pid = _stale.name.rpartition("-")[2]
    if _pid.isdigit() and not Path(f"/proc/{_pid}").exists():
        shutil.rmtree(_stale, ignore_errors=True)
FOLDER = _ROOT / f"reactor-fuzz-weights-{os.getpid()}"
FOLDER.mkdir(exist_ok=True)
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)
FILE = FOLDER / "model.safetensors"
INDEX = FOLDER / "model.safetensors.index.json"

DTYPES = (*safetensors_format._DTYPES, "F4", "u8", "", "F32 ", "BOOL\x00")
NAMES = ("w", "a.weight", "b.bias", "", "__metadata__", "é", "w" * 200)
SHARDS = ("model-1.safetensors", "model-2.safetensors", "missing.safetensors", "../x", "/etc/hosts", "", ".")
DIMS = (0, 1, 2, 3, 4, 7, 8, 64, -1, 2**31, 2**32, 2**62, 2**63, 2**64)


@contextlib.contextmanager
def reads_inside_files() -> Iterator[None]:
    """Fail (AssertionError) on any ``pread``/``preadv`` that asks for bytes past the end of its file."""
    pread, preadv = os.pread, os.preadv

    def checked_pread(fd: int, n: int, offset: int) -> bytes:
        size = os.fstat(fd).st_size
        assert 0 <= offset <= size - n, f"pread of {n} bytes at {offset} in a {size}-byte file"
        return pread(fd, n, offset)

    def checked_preadv(fd: int, buffers: Any, offset: int, *flags: int) -> int:
        size = os.fstat(fd).st_size
        n = sum(memoryview(b).nbytes for b in buffers)
        assert 0 <= offset <= size - n, f"preadv of {n} bytes at {offset} in a {size}-byte file"
        return preadv(fd, buffers, offset, *flags)

    os.pread, os.preadv = checked_pread, checked_preadv
    try:
        yield
    finally:
        os.pread, os.preadv = pread, preadv


def header(src: Bytes) -> tuple[dict[str, Any], int]:
    """A header of a few tensors laid end to end (mostly), and the data length it wants."""
    entries: dict[str, Any] = {}
    at = 0
    for i in range(src.int_in(0, 4)):
        dtype = src.pick(DTYPES)
        shape = [src.pick(DIMS) if src.byte() % 8 == 0 else src.int_in(0, 6) for _ in range(src.int_in(0, 3))]
        size = safetensors_format._DTYPES[dtype].itemsize if dtype in safetensors_format._DTYPES else 1
        for d in shape:
            size *= max(d, 0)
        begin = at if src.byte() % 8 else src.pick(INTERESTING_INTS[:8])
        end = begin + size if src.byte() % 8 else begin + src.int_in(-2, 2) + size
        at = max(at, end) if 0 <= size < 1 << 20 else at
        entry: Any = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        corrupt = src.byte() % 16
        if corrupt == 0:
            entry[src.pick(("dtype", "shape", "data_offsets"))] = json_value(src, max_depth=2)
        elif corrupt == 1:
            entry = json_value(src, max_depth=2)
        entries[src.pick(NAMES) if src.byte() % 4 == 0 else f"t{i}"] = entry
    if src.byte() % 4 == 0:
        entries["__metadata__"] = {"format": "pt"} if src.flag() else json_value(src, max_depth=2)
    return entries, at


def safetensors_bytes(src: Bytes) -> bytes:
    """A file: a generated header (its JSON, its length and its data each a little wrong, or not)."""
    entries, data_len = header(src)
    try:
        raw = json.dumps(entries).encode()
    except ValueError:  # an int too long to print (json_value's 10**5000)
        raw = b"{}"
    if src.byte() % 8 == 0:
        damaged = bytearray(raw)
        for _ in range(src.int_in(1, 4)):
            if damaged:
                damaged[src.int_in(0, len(damaged) - 1)] = src.byte()
        raw = bytes(damaged)
    raw += b" " * src.int_in(0, 8)
    length = len(raw) if src.byte() % 8 else len(raw) + src.int_in(-8, 8)
    data = bytes(max(0, min(data_len, 1 << 16) + (src.int_in(-4, 4) if src.byte() % 4 == 0 else 0)))
    return struct.pack("<Q", max(0, length)) + raw + data


def write_input(src: Bytes) -> Path:
    """Write this input's files; the path to load."""
    for old in FOLDER.iterdir():
        old.unlink()
    mode = src.byte() % 8
    if mode == 0:  # the bytes as they are
        FILE.write_bytes(src.rest())
    elif mode in (1, 2):  # a header length that fits the bytes, so the JSON parser sees them
        rest = src.rest()
        length = int.from_bytes(rest[:2].ljust(2, b"\0"), "little") % (len(rest) + 1)
        FILE.write_bytes(struct.pack("<Q", length) + rest[2:])
    elif mode == 7:  # a sharded checkpoint: an index and two shards
        weight_map: dict[str, Any] = {}
        for i, shard in enumerate(SHARDS[:2]):
            (FOLDER / shard).write_bytes(safetensors_bytes(src))
            weight_map[f"t{i}"] = shard if src.byte() % 8 else src.pick(SHARDS)
        if src.byte() % 4 == 0:
            weight_map[src.pick(NAMES)] = src.pick(SHARDS)
        doc: Any = {"metadata": {}, "weight_map": weight_map}
        if src.byte() % 8 == 0:
            doc = json_value(src, max_depth=3)
        try:
            INDEX.write_text(json.dumps(doc, default=str))
        except ValueError:
            INDEX.write_text("{}")
        return INDEX if src.flag() else FOLDER
    else:
        FILE.write_bytes(safetensors_bytes(src))
    return FILE


def same_as_reference(path: Path, loaded: dict[str, Any]) -> None:
    """What load_safetensors accepted, the safetensors package reads alike (same names, dtypes, bytes)."""
    if reference_load is None or path != FILE:
        return
    if any(t.dtype not in REFERENCE_DTYPES for t in loaded.values()):
        return  # a dtype the reference package does not know (F8_E8M0 in safetensors 0.8)
    try:
        expected = reference_load(FILE.read_bytes())
    except SafetensorError as exc:
        raise AssertionError(f"load_safetensors accepted a file safetensors refuses: {exc}") from exc
    assert sorted(loaded) == sorted(expected), (sorted(loaded), sorted(expected))
    for name, tensor in expected.items():
        got = loaded[name]
        assert (got.dtype, got.shape) == (tensor.dtype, tensor.shape), (name, got, tensor)
        if tensor.numel():
            assert got.contiguous().view(-1).view(torch.uint8).tolist() == (
                tensor.contiguous().view(-1).view(torch.uint8).tolist()
            ), name


def TestOneInput(data: bytes) -> None:
    path = write_input(Bytes(data))
    with expect(WeightsError), reads_inside_files():
        loaded = load_safetensors(path, pin=False, progress=lambda done, total: None)
        same_as_reference(path, loaded)


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
