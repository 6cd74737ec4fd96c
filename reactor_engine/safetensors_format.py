"""The safetensors format as reactor-engine reads it: files and index, header, entries, their checks.

Every check names the file and the problem (``WeightsError``) before anything is allocated for the
data; ``weights.py`` plans and reads what these checks let through.
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reactor_engine.errors import CudaError, InvalidArgumentError, WeightsError

__all__ = ["MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 100 << 20
"""A header (or an index file) larger than this is refused before anything is allocated for it."""

# Names and values from a file, echoed in errors, are cut to a readable length (a header may be 100 MB).
_echo = reprlib.Repr()
_echo.maxstring = _echo.maxother = 80
_echo.maxlist = 8

# safetensors dtype string -> torch dtype, for every dtype both support. Some exist only in newer
# torch builds; F4 (two fp4 values per byte, shape counted in fp4 elements) has no byte-exact torch
# equivalent and is refused like any unknown string.
_DTYPES: dict[str, torch.dtype] = {
    name: dtype
    for name, dtype in (
        ("F64", torch.float64),
        ("F32", torch.float32),
        ("F16", torch.float16),
        ("BF16", torch.bfloat16),
        ("I64", torch.int64),
        ("I32", torch.int32),
        ("I16", torch.int16),
        ("I8", torch.int8),
        ("U8", torch.uint8),
        ("BOOL", torch.bool),
        ("C64", torch.complex64),
        ("U64", getattr(torch, "uint64", None)),
        ("U32", getattr(torch, "uint32", None)),
        ("U16", getattr(torch, "uint16", None)),
        ("F8_E4M3", getattr(torch, "float8_e4m3fn", None)),
        ("F8_E5M2", getattr(torch, "float8_e5m2", None)),
        ("F8_E4M3FNUZ", getattr(torch, "float8_e4m3fnuz", None)),
        ("F8_E5M2FNUZ", getattr(torch, "float8_e5m2fnuz", None)),
        ("F8_E8M0", getattr(torch, "float8_e8m0fnu", None)),
    )
    if dtype is not None
}


# --- parsing and checks -----------------------------------------------------------------------


@dataclass(frozen=True)
class _TensorEntry:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # byte offsets relative to the start of the data section
    end: int


@dataclass
class _Shard:
    path: Path
    fd: int
    data_start: int  # absolute file offset of the data section
    data_bytes: int
    tensors: list[_TensorEntry]
    metadata: dict[str, str] = field(default_factory=dict)


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InvalidArgumentError(
            f"device {device!r} is not a torch device; expected 'cpu' or 'cuda[:N]'"
        ) from e
    if target.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(
            f"device {device!r}: weights load to 'cpu' or 'cuda[:N]', not {target.type!r}"
        )
    if target.type == "cuda" and not torch.cuda.is_available():
        raise CudaError(f"device {device!r} asked for, but torch reports no usable CUDA device")
    return target


def _resolve_files(path: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The shard files to read and, for a sharded checkpoint, the index's tensor -> file map."""
    if path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json"))
        if len(indexes) > 1:
            names = ", ".join(p.name for p in indexes)
            raise WeightsError(f"{path}: several index files ({names}); pass the one to load")
        if indexes:
            return _read_index(indexes[0])
        files = sorted(path.glob("*.safetensors"))
        if len(files) != 1:
            found = ", ".join(p.name for p in files) or "none"
            raise WeightsError(
                f"{path}: expected a *.safetensors.index.json or a single .safetensors file; found {found}"
            )
        return files, None
    if not path.exists():
        raise WeightsError(f"{path}: no such file or folder")
    if path.name.endswith(".index.json"):
        return _read_index(path)
    return [path], None


def _read_index(index: Path) -> tuple[list[Path], dict[str, str]]:
    try:
        fd = _open_regular(index)
    except OSError as e:
        raise WeightsError(f"{index}: cannot open: {e.strerror or e}") from e
    try:
        size = os.fstat(fd).st_size
        if size > MAX_HEADER_BYTES:
            raise WeightsError(f"{index}: index is {size} bytes, over the {MAX_HEADER_BYTES} byte limit")
        raw = os.pread(fd, size, 0)
    except OSError as e:
        raise WeightsError(f"{index}: cannot read the index: {e.strerror or e}") from e
    finally:
        os.close(fd)
    doc = _parse_json(raw, index, "index")
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise WeightsError(f"{index}: 'weight_map' must be an object of tensor name -> shard file name")
    # Shards are named relative to the index; lexically, since a hub cache's shards are symlinks
    # into a blobs folder elsewhere.
    files: list[Path] = []
    for name in sorted(set(weight_map.values())):
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise WeightsError(f"{index}: shard {_echo.repr(name)} is not a file name inside {index.parent}")
        shard = index.parent / relative
        if not shard.is_file():
            raise WeightsError(f"{index}: shard {_echo.repr(name)} not found in {index.parent}")
        files.append(shard)
    if not files:
        raise WeightsError(f"{index}: 'weight_map' lists no tensors")
    return files, weight_map


def _check_against_index(shards: list[_Shard], weight_map: dict[str, str], folder: Path) -> None:
    seen: set[str] = set()
    for shard in shards:
        for t in shard.tensors:
            listed = weight_map.get(t.name)
            if listed is None or folder / listed != shard.path:
                where = f"lists it in {_echo.repr(listed)}" if listed is not None else "does not list it"
                raise WeightsError(f"{shard.path}: holds tensor {_echo.repr(t.name)}, but the index {where}")
            seen.add(t.name)
    missing = [name for name in weight_map if name not in seen]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise WeightsError(f"{folder}: the index lists tensors no shard holds: {shown}")


def _parse_json(raw: bytes, path: Path, what: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise WeightsError(f"{path}: {what} has the key {_echo.repr(key)} twice")
            for text in (key, value) if isinstance(value, str) else (key,):
                if not text.isascii():  # a "\ud800" escape decodes to a lone surrogate: not Unicode text
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError:
                        raise WeightsError(
                            f"{path}: {what} holds {_echo.repr(text)}, which is not Unicode text"
                        ) from None
            obj[key] = value
        return obj

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def minus_zero_is_float(text: str) -> int | float:
        # The reference loader (serde_json) reads "-0" as the float -0.0, so no size or offset may be
        # written so; json reads it as the int 0. -0.0 fails every integer check with a clear message.
        value = int(text)
        return -0.0 if value == 0 and text.startswith("-") else value

    try:
        doc = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=no_duplicates,
            parse_constant=no_constants,
            parse_int=minus_zero_is_float,
        )
    except WeightsError:
        raise
    except UnicodeDecodeError as e:
        raise WeightsError(f"{path}: {what} is not UTF-8: {e.reason} at byte {e.start}") from e
    except RecursionError as e:
        raise WeightsError(f"{path}: {what} nests too deeply to be a safetensors {what}") from e
    except ValueError as e:  # json.JSONDecodeError, and int-digit limits
        raise WeightsError(f"{path}: {what} is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise WeightsError(f"{path}: {what} must be a JSON object, got {type(doc).__name__}")
    return doc


def _open_regular(path: Path) -> int:
    """A read-only fd of ``path``; ``WeightsError`` unless it is a regular file (a FIFO would block)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WeightsError(f"{path}: not a regular file")
    return fd


def _open_shard(path: Path) -> _Shard:
    try:
        fd = _open_regular(path)
    except OSError as e:
        raise WeightsError(f"{path}: cannot open: {e.strerror or e}") from e
    try:
        shard = _parse_header(path, fd)
        os.posix_fadvise(fd, shard.data_start, shard.data_bytes, os.POSIX_FADV_SEQUENTIAL)
        return shard
    except BaseException:
        os.close(fd)
        raise


def _parse_header(path: Path, fd: int) -> _Shard:
    file_bytes = os.fstat(fd).st_size
    if file_bytes < 8:
        raise WeightsError(f"{path}: file is {file_bytes} bytes, too short for the 8-byte header length")
    header_bytes = int.from_bytes(os.pread(fd, 8, 0), "little")
    if header_bytes > MAX_HEADER_BYTES:
        raise WeightsError(f"{path}: header length {header_bytes} is over the {MAX_HEADER_BYTES} byte limit")
    if 8 + header_bytes > file_bytes:
        raise WeightsError(
            f"{path}: header length {header_bytes} runs past the end of the file ({file_bytes} bytes)"
        )
    raw = os.pread(fd, header_bytes, 8)
    if len(raw) != header_bytes:
        raise WeightsError(f"{path}: file ended inside the header (read {len(raw)} of {header_bytes} bytes)")
    header = _parse_json(raw, path, "header")

    data_start = 8 + header_bytes
    data_bytes = file_bytes - data_start
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise WeightsError(f"{path}: __metadata__ must be an object of string -> string")
    tensors = [_parse_entry(path, name, info, data_bytes) for name, info in header.items()]
    _check_tiling(path, tensors, data_bytes)
    return _Shard(path, fd, data_start, data_bytes, tensors, metadata)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_entry(path: Path, name: str, info: object, data_bytes: int) -> _TensorEntry:
    where = f"{path}: tensor {_echo.repr(name)}"
    if not isinstance(info, dict):
        raise WeightsError(f"{where}: entry must be an object with dtype, shape, data_offsets")
    dtype_name, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
        raise WeightsError(
            f"{where}: unknown dtype {_echo.repr(dtype_name)}; expected one of {', '.join(_DTYPES)}"
        )
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise WeightsError(f"{where}: shape must be a list of non-negative integers, got {_echo.repr(shape)}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets):
        raise WeightsError(
            f"{where}: data_offsets must be [begin, end] non-negative integers, got {_echo.repr(offsets)}"
        )
    begin, end = offsets
    if begin > end:
        raise WeightsError(f"{where}: data_offsets [{begin}, {end}] begin after they end")
    if end > data_bytes:
        raise WeightsError(
            f"{where}: data_offsets [{begin}, {end}] end past the data section ({data_bytes} bytes): "
            "the file is truncated or the offsets are corrupt"
        )
    dtype = _DTYPES[dtype_name]
    needed = _nbytes(shape, dtype.itemsize, end - begin)
    if needed != end - begin:
        shown = f"more than {end - begin}" if needed is None else str(needed)
        raise WeightsError(
            f"{where}: shape {_short(shape)} of {dtype_name} needs {shown} bytes, "
            f"data_offsets [{begin}, {end}] hold {end - begin}"
        )
    if needed == 0 and not _indexable(shape, dtype.itemsize):
        # No bytes, but torch sizes (and strides) are int64: it cannot make a tensor of this shape.
        raise WeightsError(
            f"{where}: shape {_short(shape)} of {dtype_name} is too large: its dimensions multiply past 2**63"
        )
    return _TensorEntry(name, dtype, tuple(shape), begin, end)


_MAX_INDEX = (1 << 63) - 1  # the largest byte count or element offset torch can hold


def _nbytes(shape: list[int], itemsize: int, limit: int) -> int | None:
    """prod(shape) * itemsize, or None once a partial product is past limit (no match possible).

    A hostile header may hold thousands of 4000-digit dimensions; their full product would take
    minutes to compute.
    """
    if 0 in shape:
        return 0
    nbytes = itemsize
    for d in shape:
        if nbytes > limit:
            return None
        nbytes *= d
    return nbytes


def _indexable(shape: list[int], itemsize: int) -> bool:
    """Whether torch can make a tensor of this shape: sizes and strides (zeros aside) within int64."""
    extent = itemsize
    for d in shape:
        extent *= max(d, 1)
        if extent > _MAX_INDEX:
            return False
    return True


def _short(shape: list[int]) -> str:
    return repr(shape) if len(shape) <= 8 else f"[{', '.join(map(str, shape[:8]))}, ...] ({len(shape)} dims)"


def _check_tiling(path: Path, tensors: list[_TensorEntry], data_bytes: int) -> None:
    """The tensors cover the data section exactly once (the format allows no holes, no overlap)."""
    covered = 0
    previous: _TensorEntry | None = None
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if previous is not None and t.begin < covered:
            raise WeightsError(
                f"{path}: tensor {_echo.repr(t.name)}: data_offsets [{t.begin}, {t.end}] overlap "
                f"tensor {_echo.repr(previous.name)} [{previous.begin}, {previous.end}]"
            )
        if t.begin > covered:
            raise WeightsError(f"{path}: data section bytes [{covered}, {t.begin}) belong to no tensor")
        covered, previous = t.end, t
    if covered != data_bytes:
        raise WeightsError(
            f"{path}: data section is {data_bytes} bytes but its tensors end at {covered}: trailing bytes"
        )
