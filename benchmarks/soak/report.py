"""The soak's results: ``soak-<date>-<seconds>s.json`` (everything), ``.png`` (resources, frames and
latency over time, session changes marked) and ``.md`` (the verdict and the figures)."""

from __future__ import annotations

import itertools
import json
import platform
import socket
import time
from pathlib import Path
from typing import Any


def write_results(out_dir: Path, result: dict[str, Any]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"soak-{time.strftime('%Y%m%d-%H%M%S')}-{result['seconds']:.0f}s"
    result["machine"] = {
        "host": socket.gethostname(),
        "cpu": _cpu(),
        "python": platform.python_version(),
    }
    paths = [out_dir / f"{stem}.json"]
    paths[0].write_text(json.dumps(result, indent=1, default=str))
    png = out_dir / f"{stem}.png"
    if plot(png, result):
        paths.append(png)
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(result, png.name if png in paths else None))
    paths.append(md)
    return paths


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.machine()
    import os

    return f"{model}, {len(os.sched_getaffinity(0))} usable cores"


def plot(path: Path, result: dict[str, Any]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    samples = result["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    axes[0].plot(minutes, [s["rss"] / 2**20 for s in samples], color="tab:blue")
    axes[0].set_ylabel("server RSS (MiB)")
    axes[1].plot(minutes, [s["fds"] for s in samples], label="open fds")
    axes[1].plot(minutes, [s["threads"] for s in samples], label="threads")
    axes[1].set_ylabel("count")
    axes[1].legend(loc="upper left")
    load = axes[1].twinx()
    load.plot(
        minutes,
        [s.get("cpu_pct", 0.0) for s in samples],
        color="tab:grey",
        linewidth=0.8,
        label="server CPU %",
    )
    load.plot(
        minutes, [100 * s.get("loadavg", 0.0) for s in samples], color="tab:olive", linewidth=0.8,
        label="machine load x100",
    )  # fmt: skip
    load.set_ylabel("%")
    load.legend(loc="upper right")
    names = sorted({name for s in samples for name in s["frames"]})
    for name in names:
        rates = [0.0]
        for a, b in itertools.pairwise(samples):
            dt = b["t"] - a["t"]
            rates.append((b["frames"].get(name, 0) - a["frames"].get(name, 0)) / dt if dt > 0 else 0.0)
        axes[2].plot(minutes, rates, label=f"{name} frames/s")
    axes[2].plot(minutes, [s["gaps"] for s in samples], label="client gaps (total)", color="tab:red")
    ring = [s.get("session", {}).get("ring_drops") for s in samples]
    axes[2].plot(minutes, ring, label="ring drops (session)", color="tab:purple")
    axes[2].set_ylabel("frames")
    axes[2].legend(loc="lower left")
    for key, label in (("p50", "client p50"), ("p99", "client p99")):
        axes[3].plot(
            minutes, [s["client_latency_ms"][key] for s in samples], label=f"{label} (commit->received)"
        )
    server = [s.get("session", {}).get("commit_to_packet_ms", {}) for s in samples]
    axes[3].plot(minutes, [c.get("p99") for c in server], label="server p99 (commit->packet)", linestyle="--")
    axes[3].set_ylabel("latency (ms)")
    axes[3].set_xlabel("minutes")
    axes[3].legend(loc="upper left")
    for session in result["sessions"]:
        for ax in axes:
            ax.axvline(session["start_s"] / 60, color="grey", alpha=0.3, linewidth=0.8)
    fig.suptitle(result["verdict"]["line"][:150], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: dict[str, Any], png: str | None) -> str:
    v = result["verdict"]
    lines = [
        f"# Soak, {result['seconds']:.0f} s — {'PASS' if v['pass'] else 'FAIL'}",
        "",
        f"`{v['line']}`",
        "",
        f"Machine: {result['machine']['host']}, {result['machine']['cpu']}. Server: "
        f"`{' '.join(result['server']['argv'][1:])}`. WebRTC: {result['webrtc']}.",
        "",
        "| check | ok | figures |",
        "|---|---|---|",
    ]
    for name, check in v["checks"].items():
        figures = ", ".join(f"{k}={_short(val)}" for k, val in check.items() if k != "ok")
        lines.append(f"| {name} | {'yes' if check['ok'] else '**no**'} | {figures} |")
    lat = result["client_latency_ms"]
    lines += [
        "",
        f"Client receive latency (t_commit -> received, all frames): p50 {_f(lat['p50'])} ms, "
        f"p95 {_f(lat['p95'])} ms, p99 {_f(lat['p99'])} ms, max {_f(lat['max'])} ms.",
        "",
        "| session | start (s) | frames | ring drops | discarded at end | client buffer drops | "
        "commit->packet p50/p99 (ms) | per client frames/gaps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in result["sessions"]:
        c2p = s.get("commit_to_packet_ms") or {}
        clients = "; ".join(f"{c.get('frames')}/{c.get('gaps')}" for c in s["clients"])
        lines.append(
            f"| {s['session_id'][:8]} | {s['start_s']:.0f} | {s['frames']} | {s['ring_drops']} | "
            f"{s['frames_discarded']} | {s['client_frames_dropped']} | {_f(c2p.get('p50_ms'), 2)}/"
            f"{_f(c2p.get('p99_ms'), 2)} | {clients} |"
        )
    if png:
        lines += ["", f"![soak]({png})"]
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = json.dumps(value, default=str)
    return text if len(text) < 80 else text[:77] + "..."
