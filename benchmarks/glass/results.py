"""Turns the runs of the glass-to-glass benchmark into a Markdown table, a JSON file and a plot.

Per run: the client's frames (receive time, decoded index) are matched to the model's emission log;
inside the measurement window it counts frames emitted, received and decoded, and takes the latency
(receive - emit, one machine, one monotonic clock) of every decoded frame. The server's CPU is its
process tree's utime + stime over the window, as % of one core. Ratios follow the house rule: > 1
means reactor-engine is better (peer ÷ engine for latency and CPU).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from figures import NS_TO_MS, summary
from report import _fmt, machine

from glass.servers import LABELS

# Targets of issue 9, acceptance item 6: 720p30 to one reactor-sdk client (reported, not asserted).
TARGET_SIZE = "1280x720"
TARGETS = {
    "p50": ("glass-to-glass p50 ≤ 0.5x the peer's", lambda ratio, ours: ratio is not None and ratio >= 2.0),
    "p99": ("glass-to-glass p99 ≤ 50 ms", lambda ratio, ours: ours is not None and ours <= 50.0),
    "cpu": ("server CPU ≤ 1/3 of the peer's", lambda ratio, ours: ratio is not None and ratio >= 3.0),
}


def analyse(result: dict[str, Any], stamps: np.ndarray) -> dict[str, Any]:
    """The figures of one run from the client's result and the server's emission log."""
    window = result.get("window", {})
    start, end = int(window.get("start_ns", 0)), int(window.get("end_ns", 0))
    out: dict[str, Any] = {
        "error": result.get("error"),
        "ready_s": result.get("ready_s"),
        "first_frame_s": result.get("first_frame_s"),
        "server_ready_s": result.get("server_ready_s"),
    }
    if end <= start:
        out["error"] = out["error"] or "no measurement window (the client did not get that far)"
        return out
    seconds = (end - start) / 1e9
    emit_ns = {int(i) % 65536: int(t) for i, t in stamps}
    frames = np.asarray(result.get("frames", []), dtype=np.int64).reshape(-1, 5)
    t_recv, index, t_server = frames[:, 0], frames[:, 1], frames[:, 4]
    inside = (t_recv >= start) & (t_recv <= end)
    known = np.array([int(i) in emit_ns for i in index], dtype=bool) if len(index) else np.zeros(0, bool)
    decoded = inside & (index >= 0) & known
    emitted_at = np.array([emit_ns[int(i)] for i in index[decoded]], dtype=np.int64)
    latency_ms = (t_recv[decoded] - emitted_at) * NS_TO_MS
    # The server's own stamp splits the latency where it is on the same clock (0 s..10 s after emit).
    server_ms = (t_server[decoded] - emitted_at) * NS_TO_MS
    stamped = (t_server[decoded] > 0) & (server_ms >= 0) & (server_ms <= 10_000)
    emitted_in = stamps[(stamps[:, 1] >= start) & (stamps[:, 1] <= end)] if len(stamps) else stamps
    seen = {int(i) for i in index[index >= 0]}
    delivered = sum(int(i) % 65536 in seen for i in emitted_in[:, 0]) if len(emitted_in) else 0
    sizes = sorted({(int(w), int(h)) for w, h in frames[inside][:, 2:4]})
    out.update(
        window_s=seconds,
        latency_ms=summary(latency_ms),
        latency_samples=latency_ms,
        emit_to_server_stamp_ms=summary(server_ms[stamped]),
        server_stamp_to_client_ms=summary(latency_ms[stamped] - server_ms[stamped]),
        split_samples=np.stack([server_ms[stamped], latency_ms[stamped] - server_ms[stamped]], axis=1),
        emitted=len(emitted_in),
        received=int(inside.sum()),
        decoded=int(decoded.sum()),
        emitted_and_decoded=int(delivered),
        undecodable=int((inside & (index < 0)).sum()),
        repeated=int(decoded.sum() - len(set(index[decoded].tolist()))),
        received_fps=float(inside.sum() / seconds),
        sizes_received=[f"{w}x{h}" for w, h in sizes],
        server_cpu_pct=100.0 * float(window.get("server_cpu_s", 0.0)) / seconds,
        client_cpu_pct=100.0 * float(window.get("client_cpu_s", 0.0)) / seconds,
    )
    if "sdk_stats" in result:
        out["sdk_stats"] = result["sdk_stats"]
    return out


_COUNTS = ("emitted", "received", "decoded", "emitted_and_decoded", "undecodable", "repeated")


def merge(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One path's figures over interleaved repeats: samples pooled, counts summed, CPU time-weighted."""
    good = [f for f in repeats if not f.get("error")]
    if len(repeats) == 1 or not good:
        return repeats[0]
    merged = dict(good[0])
    seconds = sum(f["window_s"] for f in good)
    samples = np.concatenate([np.asarray(f["latency_samples"], dtype=float) for f in good])
    merged.update(
        repeats=len(repeats),
        failed_repeats=[f["error"] for f in repeats if f.get("error")],
        window_s=seconds,
        latency_ms=summary(samples),
        latency_samples=samples,
        received_fps=sum(f["received"] for f in good) / seconds,
        sizes_received=sorted({s for f in good for s in f.get("sizes_received", [])}),
        per_repeat_p50_ms=[f["latency_ms"].get("p50") for f in good],
    )
    for key in _COUNTS:
        merged[key] = sum(int(f.get(key, 0)) for f in good)
    for key in ("server_cpu_pct", "client_cpu_pct"):
        merged[key] = sum(f[key] * f["window_s"] for f in good) / seconds
    for key in ("ready_s", "first_frame_s", "server_ready_s"):
        values = [f[key] for f in good if f.get(key) is not None]
        merged[key] = float(np.median(values)) if values else None
    split = np.concatenate([np.asarray(f["split_samples"], dtype=float).reshape(-1, 2) for f in good])
    merged["split_samples"] = split
    merged["emit_to_server_stamp_ms"] = summary(split[:, 0])
    merged["server_stamp_to_client_ms"] = summary(split[:, 1])
    merged.pop("sdk_stats", None)
    merged["sdk_stats_last"] = good[-1].get("sdk_stats")
    return merged


def _ratio(theirs: float | None, ours: float | None) -> float | None:
    if theirs is None or ours is None or ours <= 0:
        return None
    return theirs / ours


def _latency(figures: dict[str, Any], stat: str) -> float | None:
    value = figures.get("latency_ms", {}).get(stat)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def compare(runs: dict[str, dict[str, Any]], engine_path: str) -> dict[str, float | None]:
    """Ratios (peer ÷ engine, > 1 = engine better) of one size, for one of the engine's paths."""
    peer, ours = runs.get("peer-webrtc", {}), runs.get(engine_path, {})
    return {
        "p50": _ratio(_latency(peer, "p50"), _latency(ours, "p50")),
        "p99": _ratio(_latency(peer, "p99"), _latency(ours, "p99")),
        "cpu": _ratio(peer.get("server_cpu_pct"), ours.get("server_cpu_pct")),
    }


def _cell(figures: dict[str, Any] | None, key: str) -> str:
    if not figures:
        return "-"
    if figures.get("skipped"):
        return "not run"
    if key == "latency":
        lat = figures.get("latency_ms", {})
        if not lat.get("n"):
            return "no samples"
        return " / ".join(_fmt(lat.get(s)) for s in ("p50", "p90", "p99", "max"))
    if key == "split":
        server, client = (
            figures.get("emit_to_server_stamp_ms", {}),
            figures.get("server_stamp_to_client_ms", {}),
        )
        if not server.get("n"):
            return "-"
        return f"{_fmt(server.get('p50'))} + {_fmt(client.get('p50'))}"
    if key == "frames":
        if "emitted" not in figures:
            return "-"
        return f"{figures['emitted']} / {figures['received']} / {figures['decoded']}"
    if key == "cpu":
        value = figures.get("server_cpu_pct")
        return "-" if value is None else f"{value:.1f}"
    if key == "connect":
        ready, first = figures.get("ready_s"), figures.get("first_frame_s")
        return "-" if ready is None else f"{ready:.2f} / {_fmt(first)}"
    return "-"


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{_fmt(value)}x"


def markdown(meta: dict[str, Any], runs: dict[str, dict[str, dict[str, Any]]], paths: list[str]) -> str:
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    lines = [
        f"# reactor-engine glass-to-glass latency — {m['host']}, {meta['date']} ({meta['mode']} run)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), load average "
        f"{' '.join(f'{x:.2f}' for x in m['load_average'])} at the start; Python {m['python']}; {versions}.",
        "",
        f"{meta['fps']:g} fps, {meta['seconds']:g} s measured per run after {meta['warmup']:g} s of warm-up; "
        "server and client in one network namespace on this machine, one monotonic clock. "
        "Latency = client's receive time of the decoded pixels - the model's emit time, per frame. "
        "Server CPU = the server process's utime + stime over the window, % of one core. "
        "The split uses the server's own stamp on the same clock: over WebRTC the frame-metadata "
        "capture time (reactor-webrtc's push), over WebSocket the header's send time.",
        "",
        "Paths:",
        *(f"- **{p}** — {LABELS[p]}" for p in paths),
        "",
        "**Ratio > 1 means reactor-engine is better** (peer ÷ engine). Targets (720p, WebRTC to "
        "reactor-sdk) are reported, not asserted.",
        "",
    ]
    engine_paths = [p for p in paths if p != "peer-webrtc"]
    head = ["size", "figure", *paths]
    head += [f"ratio {p}" for p in engine_paths if "peer-webrtc" in paths]
    head += ["target (engine-webrtc)", "met"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [
        ("latency", "glass-to-glass ms, p50 / p90 / p99 / max", "p50"),
        ("split", "p50 split: emit → server's stamp + stamp → client, ms", None),
        ("frames", "frames emitted / received / decoded", None),
        ("cpu", "server CPU, % of one core", "cpu"),
        ("connect", "READY s / first frame s", None),
    ]
    for size, by_path in runs.items():
        ratios = {p: compare(by_path, p) for p in engine_paths}
        for key, title, ratio_key in rows:
            cells = [size, title, *(_cell(by_path.get(p), key) for p in paths)]
            if "peer-webrtc" in paths:
                cells += [_ratio_text(ratios[p][ratio_key]) if ratio_key else "" for p in engine_paths]
            target, met = "", ""
            if size == TARGET_SIZE and key in ("latency", "cpu"):
                keys = ("p50", "p99") if key == "latency" else ("cpu",)
                target = "; ".join(TARGETS[k][0] for k in keys)
                ours = by_path.get("engine-webrtc")
                if ours and not ours.get("skipped") and "peer-webrtc" in by_path:
                    verdicts = []
                    for k in keys:
                        value = _latency(ours, k) if k != "cpu" else ours.get("server_cpu_pct")
                        ok = TARGETS[k][1](ratios.get("engine-webrtc", {}).get(k), value)
                        verdicts.append("yes" if ok else "**no**")
                    met = " / ".join(verdicts)
                else:
                    met = "-"
            lines.append("| " + " | ".join([*cells, target, met]) + " |")
    notes = []
    for size, by_path in runs.items():
        for p in paths:
            f = by_path.get(p)
            if not f:
                continue
            if f.get("skipped"):
                notes.append(f"- {size} {p}: not run: {f['skipped']}")
            elif f.get("error"):
                notes.append(f"- {size} {p}: **failed**: {f['error']}")
            elif f.get("sizes_received") and f["sizes_received"] != [size]:
                notes.append(f"- {size} {p}: frames arrived at {', '.join(f['sizes_received'])}")
    if notes:
        lines += ["", "Notes:", *notes]
    lines.append("")
    return "\n".join(lines)


def plot(path: Path, runs: dict[str, dict[str, dict[str, Any]]], title: str) -> bool:
    """ECDF of the latencies, one panel per size; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, max(1, len(runs)), figsize=(6 * max(1, len(runs)), 3.8), squeeze=False)
    colours = {"engine-webrtc": "tab:blue", "engine-ws": "tab:green", "peer-webrtc": "tab:orange"}
    for ax, (size, by_path) in zip(axes.flat, runs.items(), strict=False):
        for name, figures in by_path.items():
            data = np.sort(np.asarray(figures.get("latency_samples", []), dtype=float))
            if data.size:
                ax.step(
                    data,
                    np.arange(1, data.size + 1) / data.size,
                    where="post",
                    label=name,
                    color=colours.get(name),
                )
        ax.set_title(f"glass-to-glass, {size}", fontsize=9)
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction ≤ x")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(
    out_dir: Path,
    runs: dict[str, dict[str, dict[str, Any]]],
    paths: list[str],
    *,
    quick: bool,
    settings: dict[str, Any],
    versions: dict[str, str],
    info: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """``<host>-<date>-glass[-quick].json``, ``.md`` and ``.png`` in ``out_dir``; returns their paths.

    ``info``: the machine (``report.machine()``) as it was at the start of the run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = info or machine()
    date = time.strftime("%Y%m%d-%H%M%S")
    stem = f"{info['host']}-{date}-glass" + ("-quick" if quick else "")
    meta = {
        "date": date,
        "mode": "quick" if quick else "full",
        "machine": info,
        "versions": versions,
        **settings,
    }
    paths_out = {
        "json": out_dir / f"{stem}.json",
        "md": out_dir / f"{stem}.md",
        "png": out_dir / f"{stem}.png",
    }
    body = {
        **meta,
        "paths": {p: LABELS[p] for p in paths},
        "runs": {
            size: {p: {k: v for k, v in f.items() if not k.endswith("_samples")} for p, f in by_path.items()}
            for size, by_path in runs.items()
        },
        "ratios": {
            size: {p: compare(by_path, p) for p in paths if p != "peer-webrtc"}
            for size, by_path in runs.items()
        },
        "ratio_means": "peer ÷ engine (latency p50, p99; server CPU): > 1 means reactor-engine is better",
    }
    tmp = paths_out["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, default=str))
    tmp.replace(paths_out["json"])
    paths_out["md"].write_text(markdown(meta, runs, paths))
    if not plot(paths_out["png"], runs, f"glass-to-glass — {info['host']} {date} ({meta['mode']})"):
        del paths_out["png"]
    return paths_out
