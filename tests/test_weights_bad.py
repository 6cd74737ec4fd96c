"""Bad safetensors files: each is refused with a WeightsError naming the file and the problem.

Every refusal is also checked for what it did not do: no read past the end of the file (every
``os.pread``/``os.preadv`` is watched) and, for a file refused on its header, no arena mapped for
it. The checkpoints that load are in ``test_weights.py``; so are the helpers used here.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from test_weights import entry, write_raw  # noqa: E402

from reactor_engine import weights  # noqa: E402
from reactor_engine.errors import WeightsError  # noqa: E402
from reactor_engine.weights import MAX_HEADER_BYTES, load_safetensors  # noqa: E402


@dataclass
class Watch:
    """The reads a load made (offset, length, file size) and the arenas it mapped."""

    reads: list[tuple[int, int, int]] = field(default_factory=list)
    arenas: int = 0

    def assert_reads_inside_the_file(self) -> None:
        for offset, n, size in self.reads:
            assert offset >= 0 and offset + n <= size, f"read of {n} bytes at {offset} in a {size}-byte file"


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    seen = Watch()
    pread, preadv, arena = os.pread, os.preadv, weights.HostArena

    def watched_pread(fd: int, n: int, offset: int) -> bytes:
        seen.reads.append((offset, n, os.fstat(fd).st_size))
        return pread(fd, n, offset)

    def watched_preadv(fd: int, buffers: Any, offset: int, *flags: int) -> int:
        seen.reads.append((offset, sum(memoryview(b).nbytes for b in buffers), os.fstat(fd).st_size))
        return preadv(fd, buffers, offset, *flags)

    def watched_arena(*args: Any, **kwargs: Any) -> Any:
        seen.arenas += 1
        return arena(*args, **kwargs)

    monkeypatch.setattr(os, "pread", watched_pread)
    monkeypatch.setattr(os, "preadv", watched_preadv)
    monkeypatch.setattr(weights, "HostArena", watched_arena)
    yield seen
    seen.assert_reads_inside_the_file()


def refused(path: Path, reason: str, watch: Watch, *, named: Path | None = None) -> WeightsError:
    """Load ``path``: a WeightsError that starts with the file's name and matches ``reason``."""
    with pytest.raises(WeightsError, match=reason) as info:
        load_safetensors(path, progress=lambda done, total: None)
    message = str(info.value)
    assert message.startswith(f"{named or path}: "), message
    watch.assert_reads_inside_the_file()
    return info.value


def file_of(header: bytes, data: bytes = b"", length: int | None = None) -> bytes:
    """A file's bytes: the 8-byte little-endian header length, the header, the data."""
    return struct.pack("<Q", len(header) if length is None else length) + header + data


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A valid checkpoint of three tensors, written by the safetensors package."""
    path = tmp_path / "saved.safetensors"
    tensors = {
        "a": torch.arange(16, dtype=torch.float32),
        "b": torch.ones(3, 5, dtype=torch.float16),
        "c": torch.zeros(7, dtype=torch.uint8),
    }
    safetensors_torch.save_file(tensors, path)
    return path


def header_length(path: Path) -> int:
    return int(struct.unpack("<Q", path.read_bytes()[:8])[0])


# --- truncated files ----------------------------------------------------------------------------


@pytest.mark.parametrize("kept", [0, 1, 7])
def test_file_cut_inside_the_length_prefix(tmp_path: Path, saved: Path, watch: Watch, kept: int) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(saved.read_bytes()[:kept])

    refused(path, f"file is {kept} bytes, too short for the 8-byte header length", watch)
    assert watch.reads == [] and watch.arenas == 0


@pytest.mark.parametrize("cut", ["after the prefix", "mid-header", "one byte short"])
def test_file_cut_inside_the_header(tmp_path: Path, saved: Path, watch: Watch, cut: str) -> None:
    raw = saved.read_bytes()
    n = header_length(saved)
    keep = {"after the prefix": 8, "mid-header": 8 + n // 2, "one byte short": 8 + n - 1}[cut]
    path = tmp_path / "cut.safetensors"
    path.write_bytes(raw[:keep])

    refused(path, rf"header length {n} runs past the end of the file \({keep} bytes\)", watch)
    assert watch.arenas == 0
    assert [(offset, size) for offset, _, size in watch.reads] == [(0, keep)]  # only the length prefix


@pytest.mark.parametrize("missing", [1, 14, 30, 64 + 30 + 7])
def test_file_cut_inside_the_data(tmp_path: Path, saved: Path, watch: Watch, missing: int) -> None:
    raw = saved.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(raw[: len(raw) - missing])

    refused(path, r"tensor '.': data_offsets \[\d+, \d+\] end past the data section .*truncated", watch)
    assert watch.arenas == 0


def test_file_cut_while_its_data_is_read(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = weights._plan

    def truncate_then_plan(shards: Any) -> Any:
        os.truncate(saved, saved.stat().st_size - 20)  # after the header was checked, before the reads
        return plan(shards)

    monkeypatch.setattr(weights, "_plan", truncate_then_plan)

    with pytest.raises(
        WeightsError, match=r"file ended at byte \d+ while reading tensor data; it is truncated"
    ):
        load_safetensors(saved, progress=lambda done, total: None)


# --- header length ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "reason"),
    [
        (100, r"header length 100 runs past the end of the file \(28 bytes\)"),
        (21, r"header length 21 runs past the end of the file \(28 bytes\)"),
        (MAX_HEADER_BYTES, rf"header length {MAX_HEADER_BYTES} runs past the end of the file"),
        (MAX_HEADER_BYTES + 1, rf"header length {MAX_HEADER_BYTES + 1} is over the {MAX_HEADER_BYTES} byte"),
        (2**63, rf"header length {2**63} is over the"),
        (2**64 - 1, rf"header length {2**64 - 1} is over the"),
    ],
)
def test_header_length_larger_than_the_file(tmp_path: Path, watch: Watch, length: int, reason: str) -> None:
    path = tmp_path / "long.safetensors"
    path.write_bytes(file_of(b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'[:20], length=length))

    refused(path, reason, watch)
    assert watch.arenas == 0
    assert [n for _, n, _ in watch.reads] == [8]  # nothing read (or allocated) for the claimed header


def test_header_length_shorter_than_the_header(tmp_path: Path, watch: Watch) -> None:
    header = b'{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}'
    path = tmp_path / "short.safetensors"
    path.write_bytes(file_of(header, b"xy", length=len(header) - 3))

    refused(path, "header is not valid JSON", watch)


def test_zero_header_length(tmp_path: Path, watch: Watch) -> None:
    path = tmp_path / "zero.safetensors"
    path.write_bytes(file_of(b"", length=0))

    refused(path, "header is not valid JSON", watch)


# --- header encoding and JSON -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"\xff\xfe{}", r"header is not UTF-8: invalid start byte at byte 0"),
        (b'{"\xc0\xaf": 1}', "header is not UTF-8"),  # an overlong encoding of "/"
        (b'{"\xed\xa0\x80": 1}', "header is not UTF-8"),  # an encoded surrogate
        (b'{"a": "\x80"}', "header is not UTF-8: invalid start byte at byte 7"),
        (b"{not json", "header is not valid JSON"),
        (b"\0" * 8, "header is not valid JSON"),
        (b"{} {}", "header is not valid JSON: Extra data"),
        (b'{"a": 1', "header is not valid JSON"),
        (b'{"__metadata__": {"x": NaN}}', "header is not valid JSON: NaN is not a JSON number"),
        (b'{"a": {"dtype": "U8", "shape": [Infinity], "data_offsets": [0, 0]}}', "Infinity is not a JSON"),
        (
            b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, ' + b"9" * 5000 + b"]}}",
            "not valid JSON",
        ),
        (b'{"a": ' + b"[" * 100_000, "header nests too deeply"),
    ],
)
def test_header_that_is_not_utf8_json(tmp_path: Path, watch: Watch, header: bytes, reason: str) -> None:
    path = tmp_path / "text.safetensors"
    path.write_bytes(file_of(header))

    refused(path, reason, watch)
    assert watch.arenas == 0


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (b"[]", "list"),
        (b'[{"a": 1}]', "list"),
        (b'"x"', "str"),
        (b"7", "int"),
        (b"null", "NoneType"),
        (b"true", "bool"),
    ],
)
def test_header_that_is_not_a_json_object(tmp_path: Path, watch: Watch, header: bytes, kind: str) -> None:
    path = tmp_path / "list.safetensors"
    path.write_bytes(file_of(header))

    refused(path, f"header must be a JSON object, got {kind}$", watch)
    assert watch.arenas == 0


@pytest.mark.parametrize(
    "metadata", ["[]", '"pt"', "0", "false", '{"format": 1}', '{"a": null}', '{"a": ["b"]}']
)
def test_metadata_that_is_not_strings(tmp_path: Path, watch: Watch, metadata: str) -> None:
    path = tmp_path / "meta.safetensors"
    path.write_bytes(file_of(b'{"__metadata__": ' + metadata.encode() + b"}"))

    refused(path, "__metadata__ must be an object of string -> string", watch)


def test_null_metadata_is_no_metadata(tmp_path: Path) -> None:
    path = tmp_path / "meta.safetensors"
    path.write_bytes(file_of(b'{"__metadata__": null}'))

    loaded = load_safetensors(path, progress=lambda done, total: None)

    assert dict(loaded) == {} and loaded.metadata == {}


@pytest.mark.parametrize(
    "header",
    [
        b'{"\\ud800": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}',
        b'{"__metadata__": {"format": "pt\\udc00"}}',
        b'{"a": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0], "note": "\\udfff\\ud800"}}',
    ],
)
def test_header_string_that_is_not_unicode(tmp_path: Path, watch: Watch, header: bytes) -> None:
    # A JSON escape of a lone surrogate parses in Python, but names no character (the reference refuses it).
    path = tmp_path / "surrogate.safetensors"
    path.write_bytes(file_of(header))

    refused(path, r"header holds '.*\\u[0-9a-f]{4}.*', which is not Unicode text", watch)


def test_errors_echo_a_cut_version_of_a_huge_name(tmp_path: Path, watch: Watch) -> None:
    name, dtype = "n" * 1_000_000, "D" * 1_000_000
    path = write_raw(tmp_path / "long.safetensors", {name: entry(dtype, [1], 0, 1)}, b"\0")

    error = refused(path, r"tensor 'n+\.\.\.n+': unknown dtype 'D+\.\.\.D+'; expected one of F64", watch)
    assert len(str(error)) < len(str(path)) + 500


# --- duplicate names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {"dtype": "U8", "shape": [1], '
         b'"data_offsets": [1, 2]}}', "w"),
        (b'{"__metadata__": {}, "__metadata__": {}}', "__metadata__"),
        (b'{"w": {"dtype": "U8", "dtype": "F32", "shape": [2], "data_offsets": [0, 2]}}', "dtype"),
        (b'{"__metadata__": {"format": "pt", "format": "np"}}', "format"),
    ],
)  # fmt: skip
def test_duplicate_names(tmp_path: Path, watch: Watch, header: bytes, key: str) -> None:
    path = tmp_path / "twice.safetensors"
    path.write_bytes(file_of(header, b"ab"))

    refused(path, f"header has the key '{key}' twice", watch)
    assert watch.arenas == 0


# --- offsets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "reason"),
    [
        ((8, 16), r"data_offsets \[8, 16\] end past the data section \(8 bytes\)"),
        ((4, 12), r"data_offsets \[4, 12\] end past the data section \(8 bytes\)"),
        ((2**64, 2**64 + 8), rf"data_offsets \[{2**64}, {2**64 + 8}\] end past the data section"),
        ((2**63 - 4, 2**63 + 4), r"end past the data section"),
        ((-8, 0), r"data_offsets must be \[begin, end\] non-negative integers"),
        ((8, 0), r"data_offsets \[8, 0\] begin after they end"),
    ],
)
def test_offsets_past_the_end(tmp_path: Path, watch: Watch, offsets: tuple[int, int], reason: str) -> None:
    path = write_raw(tmp_path / "far.safetensors", {"w": entry("U8", [8], *offsets)}, bytes(8))

    refused(path, rf"tensor 'w': .*{reason}", watch)
    assert watch.arenas == 0


@pytest.mark.parametrize(
    ("second", "overlapped"),
    [
        (entry("U8", [8], 4, 12), r"tensor 'b': data_offsets \[4, 12\] overlap tensor 'a' \[0, 8\]"),
        (entry("U8", [8], 0, 8), r"data_offsets \[0, 8\] overlap tensor '.' \[0, 8\]"),
        (entry("U8", [2], 2, 4), r"tensor 'b': data_offsets \[2, 4\] overlap tensor 'a' \[0, 8\]"),
        (entry("U8", [0], 4, 4), r"tensor 'b': data_offsets \[4, 4\] overlap tensor 'a' \[0, 8\]"),
    ],
)
def test_overlapping_offsets(tmp_path: Path, watch: Watch, second: dict, overlapped: str) -> None:
    header = {"a": entry("U8", [8], 0, 8), "b": second}
    path = write_raw(tmp_path / "overlap.safetensors", header, bytes(12))

    refused(path, overlapped, watch)
    assert watch.arenas == 0


def test_empty_tensors_at_the_boundaries_load(tmp_path: Path) -> None:
    header = {
        "first": entry("U8", [0], 0, 0),
        "a": entry("U8", [4], 0, 4),
        "last": entry("F32", [0, 3], 4, 4),
    }
    path = write_raw(tmp_path / "empty.safetensors", header, b"abcd")

    loaded = load_safetensors(path, progress=lambda done, total: None)

    assert loaded["a"].tolist() == list(b"abcd")
    assert loaded["first"].shape == (0,) and loaded["last"].shape == (0, 3)


# --- dtype, shape and size ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensor", "data", "reason"),
    [
        (
            entry("F32", [2, 3], 0, 20),
            20,
            r"shape \[2, 3\] of F32 needs 24 bytes, data_offsets \[0, 20\] hold 20",
        ),
        (entry("F16", [3], 0, 8), 8, r"shape \[3\] of F16 needs 6 bytes, .* hold 8"),
        (entry("BOOL", [4], 0, 3), 3, r"shape \[4\] of BOOL needs 4 bytes, .* hold 3"),
        (entry("F64", [], 0, 4), 4, r"shape \[\] of F64 needs 8 bytes, .* hold 4"),
        (entry("U8", [0], 0, 1), 1, r"shape \[0\] of U8 needs 0 bytes, .* hold 1"),
        (entry("F4", [2], 0, 1), 1, "unknown dtype 'F4'"),
        (entry("f32", [2], 0, 8), 8, "unknown dtype 'f32'"),
        ({"dtype": 4, "shape": [1], "data_offsets": [0, 4]}, 4, "unknown dtype 4"),
        ({"shape": [1], "data_offsets": [0, 1]}, 1, "unknown dtype None"),
        ({"dtype": "U8", "shape": "2x3", "data_offsets": [0, 6]}, 6, "shape must be a list of non-negative"),
        ({"dtype": "U8", "shape": [2.0], "data_offsets": [0, 2]}, 2, "shape must be a list of non-negative"),
        ({"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}, 1, "shape must be a list of non-negative"),
        (
            {"dtype": "U8", "data_offsets": [0, 1]},
            1,
            "shape must be a list of non-negative integers, got None",
        ),
        (
            {"dtype": "U8", "shape": [1]},
            1,
            r"data_offsets must be \[begin, end\] non-negative integers, got None",
        ),
        ({"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}, 1, r"data_offsets must be \[begin, end\]"),
        ({"dtype": "U8", "shape": [1], "data_offsets": [0.0, 1]}, 1, r"data_offsets must be \[begin, end\]"),
        ("U8", 1, "entry must be an object with dtype, shape, data_offsets"),
    ],
)
def test_dtype_shape_and_size_disagreements(
    tmp_path: Path, watch: Watch, tensor: Any, data: int, reason: str
) -> None:
    path = write_raw(tmp_path / "size.safetensors", {"w": tensor}, bytes(data))

    refused(path, rf"tensor 'w': {reason}", watch)
    assert watch.arenas == 0


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ([-1], "shape must be a list of non-negative integers, got \\[-1\\]"),
        ([4, -2], "shape must be a list of non-negative integers"),
        ([2**64], rf"shape \[{2**64}\] of U8 needs {2**64} bytes, data_offsets \[0, 4\] hold 4"),
        ([2**32, 2**32], "needs more than 4 bytes"),
        ([2**31] * 64, r"\(64 dims\) of U8 needs more than 4 bytes"),
    ],
)
def test_negative_and_huge_shapes(tmp_path: Path, watch: Watch, shape: list[int], reason: str) -> None:
    path = write_raw(tmp_path / "shape.safetensors", {"w": entry("U8", shape, 0, 4)}, bytes(4))

    refused(path, rf"tensor 'w': .*{reason}", watch)
    assert watch.arenas == 0


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b'{"w": {"dtype": "F64", "shape": [3, 3, -0], "data_offsets": [0, 0]}}', r"shape must be .*-0\.0"),
        (b'{"w": {"dtype": "U8", "shape": [0], "data_offsets": [-0, 0]}}', r"data_offsets must be .*-0\.0"),
    ],
)
def test_minus_zero_is_not_a_size(tmp_path: Path, watch: Watch, header: bytes, reason: str) -> None:
    # JSON allows -0; the reference loader reads it as a float and refuses it where a size belongs.
    path = write_raw(tmp_path / "minus-zero.safetensors", header)
    refused(path, rf"tensor 'w': {reason}", watch)


@pytest.mark.parametrize("shape", [[2**40, 2**40, 0], [2**63, 0], [0, 2**64], [2**62, 4, 0]])
def test_empty_tensor_whose_dimensions_overflow(tmp_path: Path, watch: Watch, shape: list[int]) -> None:
    # No bytes, but torch cannot make a tensor of this shape: refused as the reference loader does.
    path = write_raw(tmp_path / "empty.safetensors", {"w": entry("F32", shape, 0, 0)})

    refused(
        path, r"tensor 'w': shape \[.*\] of F32 is too large: its dimensions multiply past 2\*\*63", watch
    )
    assert watch.arenas == 0


def test_empty_tensor_of_many_dimensions_loads(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "dims.safetensors", {"w": entry("F32", [1] * 100 + [0], 0, 0)})

    loaded = load_safetensors(path, progress=lambda done, total: None)

    assert loaded["w"].shape == (1,) * 100 + (0,)


# --- what the path names ------------------------------------------------------------------------


def load_in_thread(path: Path) -> BaseException | None:
    """Load ``path`` on a thread; what it raised. Bounded, so that a regression fails instead of hanging."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            load_safetensors(path, progress=lambda done, total: None)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert outcome, f"load_safetensors({path}) is still blocked"
    return outcome[0]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.safetensors"
    os.mkfifo(path)

    error = load_in_thread(path)

    assert isinstance(error, WeightsError), error
    assert str(error) == f"{path}: not a regular file"


def test_fifo_index_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors.index.json"
    os.mkfifo(path)

    error = load_in_thread(path)

    assert isinstance(error, WeightsError), error
    assert str(error) == f"{path}: not a regular file"


def test_device_file_is_refused(watch: Watch) -> None:
    if not os.path.exists("/dev/null"):
        pytest.skip("needs /dev/null")

    refused(Path("/dev/null"), "not a regular file$", watch)


# --- index files --------------------------------------------------------------------------------


def write_index(folder: Path, doc: Any) -> Path:
    index = folder / "model.safetensors.index.json"
    index.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return index


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("[]", "index must be a JSON object, got list"),
        ("{", "index is not valid JSON"),
        ('{"weight_map": {}, "weight_map": {}}', "index has the key 'weight_map' twice"),
        (
            {"weight_map": ["a.safetensors"]},
            "'weight_map' must be an object of tensor name -> shard file name",
        ),
        ({"weight_map": {"a": 1}}, "'weight_map' must be an object"),
        ({"metadata": {}}, "'weight_map' must be an object"),
        ({"weight_map": {}}, "'weight_map' lists no tensors"),
        ({"weight_map": {"a": "/etc/hosts"}}, "shard '/etc/hosts' is not a file name inside"),
        ({"weight_map": {"a": "../x.safetensors"}}, r"shard '\.\./x\.safetensors' is not a file name inside"),
        ({"weight_map": {"a": "nope.safetensors"}}, "shard 'nope.safetensors' not found in"),
        ({"weight_map": {"a": ""}}, "shard '' not found in"),
    ],
)
def test_bad_index(tmp_path: Path, watch: Watch, doc: Any, reason: str) -> None:
    index = write_index(tmp_path, doc)

    refused(index, reason, watch)
    assert watch.arenas == 0
