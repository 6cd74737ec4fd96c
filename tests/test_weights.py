"""Tests of reactor_engine.weights: safetensors parsing, checks, zero-copy arena tensors, pinning."""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from reactor_engine import safetensors_format, weights  # noqa: E402
from reactor_engine.errors import CudaError, InvalidArgumentError, ReactorError, WeightsError  # noqa: E402
from reactor_engine.weights import LoadedWeights, ProgressLog, load_safetensors  # noqa: E402

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available())")

# Every dtype safetensors.torch can save; load_safetensors must read each one byte-exactly.
SAVEABLE_DTYPES = {
    name: dtype
    for name, dtype in safetensors_format._DTYPES.items()
    if dtype in set(safetensors_torch._TYPES.values())  # type: ignore[attr-defined]
}


# --- helpers ------------------------------------------------------------------------------------


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Random bytes reinterpreted as dtype (NaNs and all), or proper 0/1 values for bool."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    n = max(1, int(torch.Size(shape).numel())) * dtype.itemsize
    raw = torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g)
    return raw.view(dtype)[: torch.Size(shape).numel()].reshape(shape).clone()


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (torch.equal would call NaN != NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))


def assert_same_as_load_file(loaded: dict[str, torch.Tensor], *files: Path) -> None:
    expected: dict[str, torch.Tensor] = {}
    for f in files:
        expected.update(safetensors_torch.load_file(f))
    assert sorted(loaded) == sorted(expected)
    for name, t in expected.items():
        assert same(loaded[name], t), name


def write_raw(path: Path, header: dict | bytes, data: bytes = b"", header_len: int | None = None) -> Path:
    """A safetensors file written by hand, so that every field can be wrong on purpose."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    n = len(raw) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + raw + data)
    return path


def header_of(path: Path) -> dict:
    raw = path.read_bytes()
    return json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])


def entry(dtype: str, shape: list[int], begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def region_bounds(loaded: LoadedWeights) -> tuple[int, int]:
    assert loaded.arena is not None
    base = torch.frombuffer(loaded.arena.view(0, 1), dtype=torch.uint8).data_ptr()
    return base, base + loaded.arena.nbytes


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    tensors = {
        "embed.weight": random_tensor(torch.bfloat16, (64, 32), 1),
        "blocks.0.attn.qkv": random_tensor(torch.float16, (96, 32), 2),
        "blocks.0.norm.scale": random_tensor(torch.float32, (32,), 3),
        "step": torch.tensor(7, dtype=torch.int64),
    }
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt", "source": "test"})
    return path


# --- loading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype_name", sorted(SAVEABLE_DTYPES))
def test_every_dtype_equals_safetensors_load_file(tmp_path: Path, dtype_name: str) -> None:
    dtype = SAVEABLE_DTYPES[dtype_name]
    path = tmp_path / "x.safetensors"
    tensors = {
        "matrix": random_tensor(dtype, (7, 5), 1),
        "vector": random_tensor(dtype, (13,), 2),
        "scalar": random_tensor(dtype, (), 3),
        "empty": random_tensor(dtype, (0, 4), 4),
    }
    safetensors_torch.save_file(tensors, path)
    assert header_of(path)["matrix"]["dtype"] == dtype_name

    loaded = load_safetensors(path)

    assert_same_as_load_file(loaded, path)
    for t in loaded.values():
        assert t.device.type == "cpu"
        assert t.data_ptr() % dtype.itemsize == 0


def test_f8_e8m0_reads_byte_exact(tmp_path: Path) -> None:
    dtype = safetensors_format._DTYPES.get("F8_E8M0")
    if dtype is None:
        pytest.skip("this torch has no float8_e8m0fnu")
    data = bytes(range(12))
    path = write_raw(tmp_path / "e8m0.safetensors", {"scales": entry("F8_E8M0", [3, 4], 0, 12)}, data)

    t = load_safetensors(path)["scales"]

    assert t.dtype == dtype
    assert t.shape == (3, 4)
    assert bytes(t.view(torch.uint8).reshape(-1).tolist()) == data


def test_mixed_dtypes_metadata_and_result_attributes(checkpoint: Path) -> None:
    loaded = load_safetensors(checkpoint)

    assert_same_as_load_file(loaded, checkpoint)
    assert isinstance(loaded, dict)
    assert loaded.metadata == {"format": "pt", "source": "test"}
    assert loaded.files == (checkpoint,)
    assert loaded.nbytes == sum(t.numel() * t.element_size() for t in loaded.values())
    assert loaded.seconds > 0
    assert loaded.gbps > 0


def test_tensors_are_writable_zero_copy_views_into_the_arena(checkpoint: Path) -> None:
    loaded = load_safetensors(checkpoint)

    lo, hi = region_bounds(loaded)
    for t in loaded.values():
        assert lo <= t.data_ptr()
        assert t.data_ptr() + t.numel() * t.element_size() <= hi
    scale = loaded["blocks.0.norm.scale"]
    scale[0] = 42.0  # writable, in place
    assert float(scale[0]) == 42.0


def test_tensors_stay_valid_after_the_dict_and_the_arena_are_gone(checkpoint: Path) -> None:
    loaded = load_safetensors(checkpoint)
    embed = loaded["embed.weight"]
    expected = embed.clone()
    assert loaded.arena is not None

    loaded.arena.close()
    del loaded
    gc.collect()
    churn = [torch.full((1 << 20,), 0xAB, dtype=torch.uint8) for _ in range(8)]  # reuse freed memory

    assert same(embed, expected)
    del churn


def test_unaligned_offsets_are_laid_out_aligned(tmp_path: Path) -> None:
    # safetensors.save_file never writes this, but the format allows it: a 1-byte tensor first
    # leaves every later tensor at an odd offset.
    f32 = torch.tensor([1.5, -2.25, 3.0], dtype=torch.float32)
    i64 = torch.tensor([-1, 1 << 40], dtype=torch.int64)
    f16 = torch.tensor([0.5, 8.0], dtype=torch.float16)
    parts = [b"\x07", f32.numpy().tobytes(), i64.numpy().tobytes(), f16.numpy().tobytes()]
    offsets = [0]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    header = {
        "flag": entry("U8", [1], offsets[0], offsets[1]),
        "f32": entry("F32", [3], offsets[1], offsets[2]),
        "i64": entry("I64", [2], offsets[2], offsets[3]),
        "f16": entry("F16", [2], offsets[3], offsets[4]),
    }
    path = write_raw(tmp_path / "odd.safetensors", header, b"".join(parts))

    loaded = load_safetensors(path)

    assert loaded["flag"].tolist() == [7]
    assert same(loaded["f32"], f32)
    assert same(loaded["i64"], i64)
    assert same(loaded["f16"], f16)
    for t in loaded.values():
        assert t.data_ptr() % t.element_size() == 0


def test_checkpoint_without_tensors_loads_empty(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "none.safetensors", {"__metadata__": {"format": "pt"}})

    loaded = load_safetensors(path)

    assert dict(loaded) == {}
    assert loaded.arena is None
    assert loaded.pinning.startswith("none:")
    assert loaded.metadata == {"format": "pt"}


def test_small_chunks_across_reader_threads_give_the_same_tensors(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "_CHUNK_BYTES", 1000)  # chunks split tensors, finish out of order

    assert_same_as_load_file(load_safetensors(checkpoint), checkpoint)


# --- sharded checkpoints ------------------------------------------------------------------------


def make_sharded(folder: Path, index_name: str = "model.safetensors.index.json") -> list[Path]:
    folder.mkdir(exist_ok=True)
    shards = {
        "model-00001-of-00002.safetensors": {
            "a.weight": random_tensor(torch.float32, (16, 8), 1),
            "a.bias": random_tensor(torch.bfloat16, (8,), 2),
        },
        "model-00002-of-00002.safetensors": {
            "b.weight": random_tensor(torch.float16, (8, 3), 3),
            "b.mask": random_tensor(torch.bool, (5,), 4),
        },
    }
    weight_map = {}
    for file, tensors in shards.items():
        safetensors_torch.save_file(tensors, folder / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, file))
    (folder / index_name).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return [folder / f for f in shards]


def test_sharded_checkpoint_through_its_index_file(tmp_path: Path) -> None:
    files = make_sharded(tmp_path / "ckpt")

    loaded = load_safetensors(tmp_path / "ckpt" / "model.safetensors.index.json")

    assert_same_as_load_file(loaded, *files)
    assert loaded.files == tuple(files)
    lo, hi = region_bounds(loaded)  # one arena holds every shard
    assert all(lo <= t.data_ptr() < hi for t in loaded.values() if t.numel())


def test_folder_with_an_index_loads_the_sharded_checkpoint(tmp_path: Path) -> None:
    files = make_sharded(tmp_path / "ckpt", index_name="diffusion_pytorch_model.safetensors.index.json")

    assert_same_as_load_file(load_safetensors(tmp_path / "ckpt"), *files)


def test_folder_with_a_single_file_loads_it(tmp_path: Path, checkpoint: Path) -> None:
    assert_same_as_load_file(load_safetensors(tmp_path), checkpoint)


def test_folder_with_several_files_and_no_index_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    shutil.copy(checkpoint, tmp_path / "other.safetensors")

    with pytest.raises(WeightsError, match=r"expected a \*\.safetensors\.index\.json or a single"):
        load_safetensors(tmp_path)


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such file or folder"):
        load_safetensors(tmp_path / "absent.safetensors")


def rewrite_index(folder: Path, change) -> Path:
    index = folder / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    change(doc["weight_map"])
    index.write_text(json.dumps(doc))
    return index


def test_index_naming_a_missing_shard_is_refused(tmp_path: Path) -> None:
    make_sharded(tmp_path)
    index = rewrite_index(tmp_path, lambda m: m.update({"a.weight": "model-00009.safetensors"}))

    with pytest.raises(WeightsError, match=r"shard 'model-00009.safetensors' not found"):
        load_safetensors(index)


def test_shards_may_be_symlinks_as_in_a_hub_cache(tmp_path: Path) -> None:
    files = make_sharded(tmp_path / "blobs")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for f in [*files, tmp_path / "blobs" / "model.safetensors.index.json"]:
        (snapshot / f.name).symlink_to(f)

    assert_same_as_load_file(load_safetensors(snapshot), *files)


def test_index_shard_outside_its_folder_is_refused(tmp_path: Path) -> None:
    make_sharded(tmp_path / "ckpt")
    index = rewrite_index(tmp_path / "ckpt", lambda m: m.update({"a.weight": "../x.safetensors"}))

    with pytest.raises(WeightsError, match="is not a file name inside"):
        load_safetensors(index)


def test_index_listing_a_tensor_no_shard_holds_is_refused(tmp_path: Path) -> None:
    make_sharded(tmp_path)
    index = rewrite_index(tmp_path, lambda m: m.update({"ghost": "model-00001-of-00002.safetensors"}))

    with pytest.raises(WeightsError, match="lists tensors no shard holds: 'ghost'"):
        load_safetensors(index)


def test_shard_holding_a_tensor_the_index_does_not_list_is_refused(tmp_path: Path) -> None:
    make_sharded(tmp_path)
    index = rewrite_index(tmp_path, lambda m: m.pop("b.mask"))

    with pytest.raises(WeightsError, match=r"holds tensor 'b.mask', but the index does not list it"):
        load_safetensors(index)


# --- malformed files ----------------------------------------------------------------------------


def test_truncated_file_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    raw = checkpoint.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(raw[:-100])

    with pytest.raises(WeightsError, match=r"cut\.safetensors: tensor '.+'.*end past the data section"):
        load_safetensors(path)


def test_file_truncated_during_the_load_is_refused(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = weights._plan

    def truncate_then_plan(shards):
        os.truncate(checkpoint, checkpoint.stat().st_size - 100)
        return plan(shards)

    monkeypatch.setattr(weights, "_plan", truncate_then_plan)

    with pytest.raises(WeightsError, match="truncated or changed during the load"):
        load_safetensors(checkpoint)


def test_overlapping_offsets_are_refused(tmp_path: Path) -> None:
    header = {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}
    path = write_raw(tmp_path / "overlap.safetensors", header, bytes(12))

    with pytest.raises(WeightsError, match=r"tensor 'b': data_offsets \[4, 12\] overlap tensor 'a' \[0, 8\]"):
        load_safetensors(path)


def test_header_length_past_the_end_is_refused(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "long.safetensors", {"a": entry("U8", [1], 0, 1)}, b"\0", header_len=4096)

    with pytest.raises(WeightsError, match=r"long\.safetensors: header length 4096 runs past the end"):
        load_safetensors(path)


def test_hostile_header_length_is_refused_before_allocating(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "huge.safetensors", {}, header_len=(1 << 63) + 5)

    with pytest.raises(WeightsError, match="over the 104857600 byte limit"):
        load_safetensors(path)


def test_file_shorter_than_the_length_prefix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x01\x02")

    with pytest.raises(WeightsError, match="too short for the 8-byte header length"):
        load_safetensors(path)


def test_wrong_dtype_string_is_refused(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "dtype.safetensors", {"w": entry("F33", [2], 0, 8)}, bytes(8))

    with pytest.raises(
        WeightsError, match=r"dtype\.safetensors: tensor 'w': unknown dtype 'F33'; expected one of F64"
    ):
        load_safetensors(path)


def test_offsets_outside_the_data_are_refused(tmp_path: Path) -> None:
    header = {"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 1000, 1004)}
    path = write_raw(tmp_path / "far.safetensors", header, bytes(8))

    with pytest.raises(
        WeightsError, match=r"tensor 'b': data_offsets \[1000, 1004\] end past the data section \(8"
    ):
        load_safetensors(path)


def test_shape_and_size_mismatch_is_refused(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "size.safetensors", {"w": entry("F32", [2, 3], 0, 20)}, bytes(20))

    with pytest.raises(WeightsError, match=r"tensor 'w': shape \[2, 3\] of F32 needs 24 bytes, .* hold 20"):
        load_safetensors(path)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"{not json", "header is not valid JSON"),
        (b"\xff\xfe{}", "header is not UTF-8"),
        (b"[" * 200_000 + b"]" * 200_000, "nests too deeply"),
        (b"[1, 2]", "header must be a JSON object, got list"),
        (
            b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": 1}',
            "^[^:]*: header has the key 'a' twice",
        ),
        (b'{"__metadata__": {"format": 1}}', "__metadata__ must be an object of string -> string"),
        (b'{"a": [1]}', "tensor 'a': entry must be an object"),
        (
            b'{"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}',
            "shape must be a list of non-negative",
        ),
        (
            b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0]}}',
            "data_offsets must be \\[begin, end\\]",
        ),
        (b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [true, 1]}}', "data_offsets must be"),
        (b'{"a": {"dtype": "U8", "shape": [0], "data_offsets": [1, 0]}}', "begin after they end"),
    ],
)
def test_malformed_header_is_refused_with_the_reason(tmp_path: Path, header: bytes, reason: str) -> None:
    path = write_raw(tmp_path / "bad.safetensors", header, b"\0")

    with pytest.raises(WeightsError, match=reason):
        load_safetensors(path)


def test_hostile_shape_is_refused_without_computing_its_product(tmp_path: Path) -> None:
    dims = ", ".join(["9" * 4000] * 2000)
    header = b'{"w": {"dtype": "U8", "shape": [' + dims.encode() + b'], "data_offsets": [0, 1]}}'
    path = write_raw(tmp_path / "dims.safetensors", header, b"\0")

    with pytest.raises(
        WeightsError, match=r"tensor 'w': shape \[9+, .*\(2000 dims\) of U8 needs more than 1 bytes"
    ):
        load_safetensors(path)


def test_data_bytes_no_tensor_covers_are_refused(tmp_path: Path) -> None:
    header = {"a": entry("U8", [2], 0, 2), "b": entry("U8", [2], 4, 6)}
    path = write_raw(tmp_path / "hole.safetensors", header, bytes(6))

    with pytest.raises(WeightsError, match=r"data section bytes \[2, 4\) belong to no tensor"):
        load_safetensors(path)


def test_trailing_bytes_after_the_last_tensor_are_refused(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "tail.safetensors", {"a": entry("U8", [2], 0, 2)}, bytes(5))

    with pytest.raises(WeightsError, match="data section is 5 bytes but its tensors end at 2"):
        load_safetensors(path)


def test_weights_error_is_a_reactor_error_and_a_value_error(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "dtype.safetensors", {"w": entry("X", [1], 0, 1)}, b"\0")

    with pytest.raises(ValueError, match="unknown dtype") as info:
        load_safetensors(path)
    assert isinstance(info.value, ReactorError)


# --- devices, pinning, progress -----------------------------------------------------------------


def test_unknown_device_is_refused(checkpoint: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="'cpu' or 'cuda"):
        load_safetensors(checkpoint, device="meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_device_without_cuda_is_refused(checkpoint: Path) -> None:
    with pytest.raises(CudaError, match="no usable CUDA device"):
        load_safetensors(checkpoint, device="cuda")


def test_pin_false_maps_a_plain_arena(checkpoint: Path) -> None:
    loaded = load_safetensors(checkpoint, pin=False)

    assert loaded.pinning.startswith("none")
    assert loaded.arena is not None
    assert not loaded.arena.locked
    assert not loaded.arena.cuda_registered
    assert_same_as_load_file(loaded, checkpoint)


def test_pinning_achieved_is_reported_and_logged(checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="reactor_engine.weights"):
        loaded = load_safetensors(checkpoint)

    assert loaded.arena is not None
    assert loaded.pinning == loaded.arena.pinning
    assert loaded.pinning in ("cuda", "mlock") or loaded.pinning.startswith("none: ")
    assert f"pinning: {loaded.pinning}" in caplog.text
    assert "loaded 4 tensors" in caplog.text


def test_loading_works_and_says_so_when_pinning_is_not_permitted(checkpoint: Path) -> None:
    # As root (or with CAP_IPC_LOCK) a memlock limit alone does not stop mlock: drop the capability too.
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    if setpriv is None or prlimit is None:
        pytest.skip("needs util-linux setpriv and prlimit")
    script = (
        "import sys, logging, torch\n"
        "from reactor_engine.weights import load_safetensors\n"
        "from safetensors.torch import load_file\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(levelname)s %(message)s')\n"
        "w = load_safetensors(sys.argv[1])\n"
        "ref = load_file(sys.argv[1])\n"
        "def same(a, b):\n"
        "    raw = lambda t: t.reshape(-1).view(torch.uint8)\n"
        "    return (a.dtype, a.shape) == (b.dtype, b.shape) and torch.equal(raw(a), raw(b))\n"
        "ok = sorted(w) == sorted(ref) and all(same(w[k], ref[k]) for k in ref)\n"
        "print('PINNING', w.pinning)\n"
        "print('EQUAL', ok)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [setpriv, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", prlimit, "--memlock=0:0"]
    proc = subprocess.run(
        [*cmd, sys.executable, "-c", script, str(checkpoint)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0 and "setpriv" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip(f"setpriv not permitted here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert "EQUAL True" in proc.stdout
    pinning = next(line for line in proc.stdout.splitlines() if line.startswith("PINNING "))
    assert pinning.startswith("PINNING none: "), proc.stdout
    assert "WARNING weights are not pinned (none: " in proc.stdout


def test_progress_callback_reports_bytes_in_order_up_to_the_total(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "_CHUNK_BYTES", 1024)
    calls: list[tuple[int, int]] = []

    loaded = load_safetensors(checkpoint, progress=lambda done, total: calls.append((done, total)))

    assert calls[0] == (0, loaded.nbytes)
    assert calls[-1] == (loaded.nbytes, loaded.nbytes)
    assert len(calls) > 3
    assert all(a[0] < b[0] and a[1] == b[1] for a, b in itertools.pairwise(calls))


def test_progress_log_logs_bytes_and_gbps(checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="test.progress"):
        load_safetensors(checkpoint, progress=ProgressLog(logging.getLogger("test.progress"), interval=0))

    lines = [r.getMessage() for r in caplog.records if r.name == "test.progress"]
    assert lines
    assert lines[-1].startswith("weights: 0.00 / 0.00 GB (100%), ")
    assert lines[-1].endswith(" GB/s")


def test_loading_logs_progress_by_default_for_the_cli(
    checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="reactor_engine.weights"):
        load_safetensors(checkpoint)

    lines = [r.getMessage() for r in caplog.records if r.name == "reactor_engine.weights"]
    assert any(line.startswith("weights: ") and line.endswith(" GB/s") for line in lines)


@pytest.mark.gpu
@gpu
def test_cuda_load_equals_load_file_and_keeps_the_host_copy_pinned(checkpoint: Path) -> None:
    loaded = load_safetensors(checkpoint, device="cuda")

    expected = safetensors_torch.load_file(checkpoint)
    for name, t in expected.items():
        assert loaded[name].device.type == "cuda"
        assert same(loaded[name].cpu(), t), name
    assert loaded.arena is not None
    assert loaded.pinning == "cuda", loaded.pinning


@pytest.mark.gpu
@gpu
def test_cuda_host_tensors_are_pinned_for_async_copies(checkpoint: Path) -> None:
    loaded = load_safetensors(checkpoint, device="cpu")

    assert all(t.is_pinned() for t in loaded.values() if t.numel())
