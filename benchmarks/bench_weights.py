"""Benchmark: load_safetensors (one pinned HostArena) against safetensors.torch.load_file, same run.

Run on demand (not part of the test suite):

    .venv/bin/python -m pytest benchmarks/bench_weights.py -s --benchmark-columns=median,min,max,rounds

One ~1.3 GiB DiT-shaped checkpoint is generated once per session (``REACTOR_BENCH_WEIGHTS_GIB``
changes the size). Every case is timed until its tensors are in host memory, by the same ``touch``
(one read per 4 KiB page of every tensor, cheap on memory that is already resident). The baselines:

- ``load_file_mmap``: the default load_file. It maps the file lazily, so the touch is what faults the
  pages in; its tensors are then the page cache itself (nothing copied, unpinned, evictable).
- ``load_file_clone``: load_file's tensors cloned into private memory, the same kind of result as
  ours (resident, owned by the process), minus the pinning.
- ``load_file_pread``: load_file(backend="pread"), safetensors' own copying reader.

Page cache: ``warm`` cases read a file fully cached for every loader (re-read before each round);
``cold`` cases evict it before each round with ``posix_fadvise(DONTNEED)`` (this file only, no
root-wide drop). On a GPU machine the ``to_cuda`` cases load straight to the GPU, synchronized.
Peak RSS is measured per loader in a fresh subprocess (VmHWM from /proc/self/status), against the
file size, both in total and above the process's VmHWM after imports (torch alone is ~0.25 GiB).
The last test prints p50s, ratios and the machine; ``--benchmark-json`` keeps the numbers.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors")
safetensors_torch = pytest.importorskip("safetensors.torch")

from reactor_engine.weights import load_safetensors  # noqa: E402

GIB = 1 << 30
ROUNDS = 7
MEDIANS: dict[str, float] = {}  # case -> p50 seconds, filled by the timed cases, read by the report
PEAKS: dict[str, dict[str, int]] = {}


def touch(tensors: dict[str, torch.Tensor]) -> int:
    """Read one byte per 4 KiB page of every tensor (and its last byte): faults in lazy mappings."""
    total = 0
    for t in tensors.values():
        if t.numel():
            flat = t.reshape(-1).view(torch.uint8)
            total += int(flat[::4096].sum()) + int(flat[-1])
    return total


def load_ours(path: Path, pin: bool = True) -> dict[str, torch.Tensor]:
    return load_safetensors(path, pin=pin)


def load_file_mmap(path: Path) -> dict[str, torch.Tensor]:
    return safetensors_torch.load_file(path)


def load_file_clone(path: Path) -> dict[str, torch.Tensor]:
    """load_file's tensors copied into private memory: the same kind of result as ours, unpinned."""
    return {k: v.clone() for k, v in safetensors_torch.load_file(path).items()}


def load_file_pread(path: Path) -> dict[str, torch.Tensor]:
    return safetensors_torch.load_file(path, backend="pread")


LOADERS: dict[str, Callable[[Path], dict[str, torch.Tensor]]] = {
    "ours_pinned": load_ours,
    "ours_unpinned": lambda p: load_ours(p, pin=False),
    "load_file_mmap": load_file_mmap,
    "load_file_clone": load_file_clone,
    "load_file_pread": load_file_pread,
}


def generate(path: Path, target_bytes: int) -> None:
    """A DiT-like checkpoint: bf16 matrices, fp32 norms and biases, many small tensors among big ones."""
    hidden, mlp = 2048, 8192
    g = torch.Generator().manual_seed(0)

    def rand(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        t = torch.empty(shape, dtype=dtype)
        t.view(torch.uint8).random_(0, 256, generator=g)
        return t

    tensors = {"embed.weight": rand((32000, hidden), torch.bfloat16)}
    size = tensors["embed.weight"].nbytes
    block = 0
    while size < target_bytes:
        p = f"blocks.{block}."
        for name, shape, dtype in [
            ("attn.qkv.weight", (3 * hidden, hidden), torch.bfloat16),
            ("attn.qkv.bias", (3 * hidden,), torch.float32),
            ("attn.proj.weight", (hidden, hidden), torch.bfloat16),
            ("attn.proj.bias", (hidden,), torch.float32),
            ("norm1.weight", (hidden,), torch.float32),
            ("norm2.weight", (hidden,), torch.float32),
            ("mlp.up.weight", (mlp, hidden), torch.bfloat16),
            ("mlp.up.bias", (mlp,), torch.float32),
            ("mlp.down.weight", (hidden, mlp), torch.bfloat16),
            ("mlp.down.bias", (hidden,), torch.float32),
            ("adaln.scale", (6, hidden), torch.float16),
        ]:
            tensors[p + name] = rand(shape, dtype)
            size += tensors[p + name].nbytes
        block += 1
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gib = float(os.environ.get("REACTOR_BENCH_WEIGHTS_GIB", "1.25"))
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    generate(path, int(gib * GIB))
    warm(path)
    return path


def warm(path: Path) -> None:
    with path.open("rb", buffering=0) as f:
        buf = bytearray(64 << 20)
        while f.readinto(buf):
            pass


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_case(benchmark, checkpoint: Path, case: str, cache: str) -> None:
    loader = LOADERS[case]

    def setup() -> None:
        if cache == "cold":
            evict(checkpoint)
        else:
            warm(checkpoint)

    benchmark.pedantic(lambda: touch(loader(checkpoint)), setup=setup, rounds=ROUNDS, warmup_rounds=1)
    median = benchmark.stats.stats.median
    MEDIANS[f"{case}/{cache}"] = median
    benchmark.extra_info["file_bytes"] = checkpoint.stat().st_size
    benchmark.extra_info["gb_per_s_p50"] = checkpoint.stat().st_size / median / 1e9
    benchmark.extra_info["page_cache"] = cache


@pytest.mark.parametrize("case", list(LOADERS))
def test_load_warm(benchmark, checkpoint: Path, case: str) -> None:
    run_case(benchmark, checkpoint, case, "warm")


@pytest.mark.parametrize("case", ["ours_pinned", "load_file_mmap", "load_file_clone"])
def test_load_cold(benchmark, checkpoint: Path, case: str) -> None:
    run_case(benchmark, checkpoint, case, "cold")


CUDA_LOADERS: dict[str, Callable[[Path], dict[str, torch.Tensor]]] = {
    "ours_to_cuda": lambda p: load_safetensors(p, device="cuda"),
    "load_file_to_cuda": lambda p: safetensors_torch.load_file(p, device="cuda"),
}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available())")
@pytest.mark.parametrize("case", list(CUDA_LOADERS))
def test_load_to_cuda_warm(benchmark, checkpoint: Path, case: str) -> None:
    """Checkpoint to GPU memory, synchronized: where pinned host memory pays (DMA, no staging)."""
    loader = CUDA_LOADERS[case]

    def load() -> None:
        tensors = loader(checkpoint)
        torch.cuda.synchronize()
        del tensors
        torch.cuda.empty_cache()

    benchmark.pedantic(load, setup=lambda: warm(checkpoint), rounds=ROUNDS, warmup_rounds=1)
    MEDIANS[f"{case}/warm"] = benchmark.stats.stats.median
    benchmark.extra_info["gb_per_s_p50"] = checkpoint.stat().st_size / benchmark.stats.stats.median / 1e9


RSS_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {bench_dir!r})
import bench_weights as b

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith(("VmHWM", "VmRSS")):
            yield line.split()[0][:-1], int(line.split()[1]) * 1024

before = dict(hwm())
tensors = b.LOADERS[{case!r}](Path({path!r}))
b.touch(tensors)
after = dict(hwm())
print(json.dumps({{"baseline": before["VmHWM"], "peak": after["VmHWM"], "rss": after["VmRSS"]}}))
"""


@pytest.mark.parametrize("case", list(LOADERS))
def test_peak_rss(checkpoint: Path, case: str) -> None:
    script = RSS_SCRIPT.format(bench_dir=str(Path(__file__).parent), case=case, path=str(checkpoint))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr
    PEAKS[case] = json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    from report import cpu_name

    cpu = cpu_name()
    mem = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return (
        f"{platform.platform()}; {cpu}, {os.cpu_count()} CPUs, {int(mem) / (1 << 20):.0f} GiB RAM; "
        f"THP {thp.read_text().strip() if thp.exists() else '?'}; python {platform.python_version()}, "
        f"torch {torch.__version__}, safetensors {safetensors.__version__}"
    )


def test_report(checkpoint: Path) -> None:
    """Print p50 GB/s, ratios against each load_file variant, and peak RSS against the file size."""
    size = checkpoint.stat().st_size
    lines = [f"checkpoint {size / GIB:.2f} GiB; {machine()}", "", "p50 load+touch (7 rounds):"]
    for cache in ("warm", "cold"):
        ours = MEDIANS.get(f"ours_pinned/{cache}")
        for key, median in MEDIANS.items():
            if key.endswith("/" + cache):
                ratio = (
                    f"  ours_pinned is {median / ours:.2f}x this" if ours and "ours_pinned" not in key else ""
                )
                lines.append(f"  {key:24s} {median * 1e3:8.1f} ms  {size / median / 1e9:6.2f} GB/s{ratio}")
    lines += ["", "peak RSS (fresh process; VmHWM):"]
    for case, p in PEAKS.items():
        lines.append(
            f"  {case:18s} peak {p['peak'] / GIB:5.2f} GiB = {p['peak'] / size:4.2f}x file;"
            f" over the import baseline {(p['peak'] - p['baseline']) / size:4.2f}x file"
        )
    print("\n" + "\n".join(lines))
