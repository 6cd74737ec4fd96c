"""Writes one run of the latency suite: ``<host>-<date>.json``, a Markdown table, and a PNG plot."""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
from figures import FIGURES, Figure
from pipelines import SIDE_LABELS

from reactor_engine import _C


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_line() -> str:
    """The one-line machine description every benchmark prints beside its figures."""
    return f"{platform.node()}: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def machine() -> dict[str, Any]:
    cpu = cpu_name()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "build_info": _C.build_info(),
        "cuda_status": _C.cuda_status(),
    }


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "∞"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cell(figure: Figure, side: str) -> str:
    values = figure.values.get(side)
    if not values:
        return "-"
    if values.get("n") == 0:
        return "no samples"
    return " / ".join(_fmt(values.get(stat)) for stat in figure.stats)


def _steal_text(meta: dict[str, Any]) -> str:
    pct = meta.get("steal_pct")
    return "" if pct is None else f", {pct:.2f} % of the CPUs' time stolen by the hypervisor during the run"


def markdown(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"# reactor-engine latency suite — {m['host']}, {meta['date']} ({meta['mode']} run)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), load average "
        f"{' '.join(f'{x:.2f}' for x in m['load_average'])} at the start{_steal_text(meta)}; "
        f"Python {m['python']}; "
        f"core build: {', '.join(f'{k}={v}' for k, v in m['build_info'].items())}; CUDA: {m['cuda_status']}.",
        "",
        "Sides (same frames, same settings, same measuring code, one process):",
        f"- **engine** — {SIDE_LABELS['engine']}",
        f"- **baseline** — {SIDE_LABELS['baseline']}",
        "",
        "Each cell gives the statistics named in the *stats* column. **Ratio > 1 means the engine is "
        "better** (reference ÷ engine for times, engine ÷ reference for rates). Targets are reported, "
        "not asserted.",
        "",
        "| figure | unit | stats | engine | baseline / reference | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for figure in FIGURES.values():
        if not figure.values:
            continue
        reference = _cell(figure, figure.reference)
        if figure.reference != "baseline":
            reference = f"{figure.reference}: {reference}"
        ratio = figure.ratio
        met = {True: "yes", False: "**no**", None: "-"}[figure.met]
        lines.append(
            f"| {figure.title} | {figure.unit} | {'/'.join(figure.stats)} on {figure.headline} "
            f"| {_cell(figure, 'engine')} | {reference} | {_fmt(ratio) + 'x' if ratio is not None else '-'} "
            f"| {figure.target_text or '-'} | {met} |"
        )
    notes = [f"- *{f.title}*: {f.note}" for f in FIGURES.values() if f.values and f.note]
    for f in FIGURES.values():
        stolen = {side: x["steal_pct"] for side, x in f.extra.items() if "steal_pct" in x}
        if f.values and stolen:
            shares = ", ".join(f"{side} {pct:.2f} %" for side, pct in stolen.items())
            notes.append(f"- *{f.title}*: CPU time stolen by the hypervisor while each side ran: {shares}")
    if notes:
        lines += ["", "Notes:", *notes]
    lines.append("")
    return "\n".join(lines)


def plot(path: Path, title: str) -> bool:
    """ECDF of every figure that kept samples, engine beside its reference; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = [f for f in FIGURES.values() if len(f.samples) >= 1]
    if not shown:
        return False
    cols = 3
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    colours = {"engine": "tab:blue", "baseline": "tab:orange", "floor": "tab:green"}
    for ax, figure in zip(axes.flat, shown, strict=False):
        for side, data in figure.samples.items():
            data = np.sort(data[np.isfinite(data)])
            if data.size == 0:
                continue
            y = np.arange(1, data.size + 1) / data.size
            ax.step(data, y, where="post", label=side, color=colours.get(side))
        ax.set_title(figure.title, fontsize=8)
        ax.set_xlabel(figure.unit)
        ax.set_ylabel("fraction ≤ x")
        positive = [d[d > 0] for d in figure.samples.values()]
        if (
            all(p.size for p in positive)
            and max(p.max() for p in positive) / max(min(p.min() for p in positive), 1e-12) > 30
        ):
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(out_dir: Path, *, quick: bool, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Writes the three files of this run into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    date = time.strftime("%Y%m%d-%H%M%S")
    stem = f"{info['host']}-{date}" + ("-quick" if quick else "")
    meta = {"date": date, "mode": "quick" if quick else "full", "machine": info, "sides": SIDE_LABELS}
    if extra and "steal_pct" in extra:
        meta["steal_pct"] = extra["steal_pct"]
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    body = {**meta, "figures": {key: f.as_json() for key, f in FIGURES.items() if f.values}, **(extra or {})}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, default=str))
    tmp.replace(paths["json"])
    paths["md"].write_text(markdown(meta))
    if not plot(paths["png"], f"reactor-engine vs baseline — {info['host']} {date} ({meta['mode']})"):
        del paths["png"]
    return paths
