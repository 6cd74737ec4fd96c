"""Load safetensors checkpoints straight into one pinned HostArena, as zero-copy torch tensors."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from reactor_engine._C import HostArena
from reactor_engine.errors import WeightsError
from reactor_engine.safetensors_format import (
    MAX_HEADER_BYTES,
    _check_against_index,
    _open_shard,
    _parse_device,
    _resolve_files,
    _Shard,
)

__all__ = ["MAX_HEADER_BYTES", "LoadedWeights", "ProgressCallback", "ProgressLog", "load_safetensors"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``, called on the loading thread after each chunk read."""


# Note: the data is read in chunks of this size by a few threads (os.preadv releases the GIL), in
# order, so tensors become ready front to back. Measured on the 2-core dev VM, 1.3 GiB: from a warm
# page cache two readers beat one by 10-20% (memcpy-bound); from a cold cache every variant (1-4
# threads, 64-256 MiB chunks, one fd or one per thread) hits the disk's ~3.5 GB/s, and
# POSIX_FADV_SEQUENTIAL (a larger readahead window) is what steadies a single stream there.
_CHUNK_BYTES = 64 << 20
_READ_THREADS = max(1, min(4, os.cpu_count() or 1))

# Each shard's block in the arena starts at this alignment (>= every element size).
_BLOCK_ALIGNMENT = 64


class LoadedWeights(dict[str, torch.Tensor]):
    """The tensors of a checkpoint, by name, plus what the load achieved.

    On ``device="cpu"`` every tensor is a zero-copy view into ``arena``; each keeps the arena's
    mapping alive on its own, so the tensors stay valid after this dict (or ``arena.close()``) is
    gone. On ``device="cuda"`` the tensors live on the GPU and ``arena`` still holds the pinned host
    copy they were copied from (the engine keeps it for the life of the model); close it to free it.
    """

    arena: HostArena | None
    """The host region holding the tensor data; None when the checkpoint holds no tensor bytes."""
    pinning: str
    """``"cuda"``, ``"mlock"`` or ``"none: <why>"``, as the arena reports it."""
    files: tuple[Path, ...]
    nbytes: int
    """Tensor bytes read from disk."""
    seconds: float
    metadata: dict[str, str]
    """The files' ``__metadata__``, merged (shards of one checkpoint normally carry the same)."""

    @property
    def gbps(self) -> float:
        """Read throughput of the load, in GB/s (10**9 bytes per second)."""
        return self.nbytes / self.seconds / 1e9 if self.seconds > 0 else 0.0


class ProgressLog:
    """A progress callback that logs bytes done and GB/s, at most once per ``interval`` seconds."""

    def __init__(self, log: logging.Logger | None = None, interval: float = 1.0) -> None:
        self._log = log if log is not None else logger
        self._interval = interval
        self._start: float | None = None
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self._start is None or done == 0:  # a new load
            self._start = self._last = now
        if done < total and now - self._last < self._interval:
            return
        self._last = now
        elapsed = now - self._start
        rate = done / elapsed / 1e9 if elapsed > 0 else 0.0
        percent = 100.0 * done / total if total else 100.0
        self._log.info("weights: %.2f / %.2f GB (%.0f%%), %.2f GB/s", done / 1e9, total / 1e9, percent, rate)


def load_safetensors(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    pin: bool = True,
    progress: ProgressCallback | None = None,
) -> LoadedWeights:
    """Load a safetensors checkpoint into one page-aligned host arena and return its tensors.

    ``path`` is a ``.safetensors`` file, a ``*.safetensors.index.json`` of a sharded checkpoint, or a
    folder holding one index or a single ``.safetensors`` file. All headers are parsed and checked
    (bounded sizes, offsets inside the data, no overlap, sizes matching shapes) before anything is
    allocated; any defect raises ``WeightsError`` naming the file, the tensor and the reason.

    The data sections are read with ``preadv`` straight into the arena (no intermediate buffer) and
    the tensors are views over it. ``pin=True`` asks the arena to mlock and CUDA-register the region
    as far as the machine permits; what it achieved is ``result.pinning`` (and is logged). With
    ``device="cuda"`` each tensor is copied to the GPU with a non-blocking copy as soon as its bytes
    are in, so reading and host-to-device transfer overlap; the call returns once all copies are done.
    ``progress`` defaults to a ``ProgressLog``: bytes and GB/s on the ``reactor_engine.weights``
    logger at INFO, which the CLI shows while a model loads.
    """
    if progress is None:
        progress = ProgressLog()
    start = time.perf_counter()
    target = _parse_device(device)
    files, weight_map = _resolve_files(Path(path))
    shards: list[_Shard] = []
    try:
        shards.extend(_open_shard(file) for file in files)
        if weight_map is not None:
            _check_against_index(shards, weight_map, files[0].parent)
        layouts, arena_bytes = _plan(shards)
        arena, tensors = _read(shards, layouts, arena_bytes, pin, target, progress)
    finally:
        for shard in shards:
            os.close(shard.fd)

    result = LoadedWeights(tensors)
    result.arena = arena
    result.pinning = arena.pinning if arena is not None else "none: no tensor data to pin"
    result.files = tuple(files)
    result.nbytes = sum(s.data_bytes for s in shards)
    result.seconds = time.perf_counter() - start
    result.metadata = {k: v for s in shards for k, v in s.metadata.items()}
    logger.info(
        "loaded %d tensors, %.2f GB from %s in %.2f s (%.2f GB/s) to %s; pinning: %s",
        len(result),
        result.nbytes / 1e9,
        files[0] if len(files) == 1 else f"{len(files)} shards in {files[0].parent}",
        result.seconds,
        result.gbps,
        target,
        result.pinning,
    )
    if pin and arena is not None and result.pinning.startswith("none"):
        logger.warning("weights are not pinned (%s)", result.pinning)
    if target.type == "cuda" and arena is not None and result.pinning != "cuda":
        logger.warning(
            "the host copy is not CUDA-registered (%s): host-to-device copies ran synchronously",
            arena.cuda,
        )
    return result


# --- layout and reading -------------------------------------------------------------------------


@dataclass
class _Run:
    """Contiguous file bytes copied to contiguous arena bytes by one (chunked) read."""

    fd: int
    file_offset: int
    arena_offset: int
    nbytes: int


@dataclass
class _Layout:
    offsets: dict[str, int]  # tensor name -> offset in the region
    runs: list[_Run]


def _plan(shards: list[_Shard]) -> tuple[list[_Layout], int]:
    """Where each shard's tensors go in one region, every tensor aligned to its element size.

    Writers (the safetensors package among them) order tensors so that their offsets are aligned,
    and then each shard is one run: its data section copied as a whole. A file with an unaligned
    tensor gets a few padding bytes before it, which starts a new run; the tensors stay correct.
    """
    layouts: list[_Layout] = []
    base = 0
    for shard in shards:
        offsets: dict[str, int] = {}
        runs: list[_Run] = []
        shift = 0
        for t in sorted(shard.tensors, key=lambda t: (t.begin, t.end)):
            if t.end == t.begin:
                continue
            at = base + t.begin + shift
            pad = -at % t.dtype.itemsize
            if pad or not runs:
                shift += pad
                at += pad
                runs.append(_Run(shard.fd, shard.data_start + t.begin, at, 0))
            runs[-1].nbytes = at + t.end - t.begin - runs[-1].arena_offset
            offsets[t.name] = at
        layouts.append(_Layout(offsets, runs))
        base += shard.data_bytes + shift
        base += -base % _BLOCK_ALIGNMENT
    return layouts, base


def _chunks(runs: list[_Run]) -> Iterator[_Run]:
    for run in runs:
        for done in range(0, run.nbytes, _CHUNK_BYTES):
            n = min(_CHUNK_BYTES, run.nbytes - done)
            yield _Run(run.fd, run.file_offset + done, run.arena_offset + done, n)


def _read_chunk(chunk: _Run, region: memoryview, path: Path) -> _Run:
    """Fill region[chunk] from the file; runs on a reader thread (preadv releases the GIL)."""
    done = 0
    while done < chunk.nbytes:
        at = chunk.arena_offset + done
        n = os.preadv(chunk.fd, [region[at : at + chunk.nbytes - done]], chunk.file_offset + done)
        if n == 0:
            raise WeightsError(
                f"{path}: file ended at byte {chunk.file_offset + done} while reading tensor data; "
                "it is truncated or changed during the load"
            )
        done += n
    return chunk


def _read(
    shards: list[_Shard],
    layouts: list[_Layout],
    arena_bytes: int,
    pin: bool,
    target: torch.device,
    progress: ProgressCallback | None,
) -> tuple[HostArena | None, dict[str, torch.Tensor]]:
    total = sum(run.nbytes for layout in layouts for run in layout.runs)
    arena: HostArena | None = None
    region = memoryview(b"")
    if arena_bytes:
        arena = HostArena(arena_bytes, lock=pin, cuda_register=pin)
        region = arena.view(arena.allocate(arena_bytes, alignment=4096), arena_bytes)

    # (start, end, tensor) in region order: a tensor is made (and on CUDA, copied) as soon as the
    # reads, which complete in region order below, have filled the region up to its end.
    placed = sorted(
        (
            (layout.offsets[t.name], layout.offsets[t.name] + t.end - t.begin, t)
            for shard, layout in zip(shards, layouts, strict=True)
            for t in shard.tensors
            if t.end > t.begin
        ),
        key=lambda p: p[0],
    )
    out: dict[str, torch.Tensor] = {}
    made = 0

    def make_ready(filled_to: int) -> None:
        nonlocal made
        while made < len(placed) and placed[made][1] <= filled_to:
            start, end, t = placed[made]
            host = torch.frombuffer(region[start:end], dtype=t.dtype).view(t.shape)
            out[t.name] = host.to(target, non_blocking=True) if target.type == "cuda" else host
            made += 1

    paths = {shard.fd: shard.path for shard in shards}
    chunks = [chunk for layout in layouts for chunk in _chunks(layout.runs)]
    done = 0
    if progress is not None:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=_READ_THREADS, thread_name_prefix="weights-read") as pool:
        # map() yields in submission order, i.e. region order, whatever order the reads finish in.
        for chunk in pool.map(lambda c: _read_chunk(c, region, paths[c.fd]), chunks):
            done += chunk.nbytes
            make_ready(chunk.arena_offset + chunk.nbytes)
            if progress is not None:
                progress(done, total)
    make_ready(arena_bytes)

    # Zero-size tensors have no bytes in the region; give them their own (empty) storage.
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        for t in shard.tensors:
            tensors[t.name] = (
                out[t.name] if t.name in out else torch.empty(t.shape, dtype=t.dtype, device=target)
            )
    if target.type == "cuda":
        # The copies were queued on the current stream; wait so the caller may use the tensors on any
        # stream and the host region may be closed.
        torch.cuda.current_stream(target).synchronize()
    return arena, tensors
