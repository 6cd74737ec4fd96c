"""The figures of the latency suite: declared by each bench file, filled per side, read by the report.

A figure has one number set per side (``engine``, and ``baseline`` or another reference such as the
simplejpeg floor), each computed by the same code; its ratio compares one statistic so that a ratio
above 1 always means the engine is better. Targets are reported, never asserted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Better = Literal["lower", "higher"]
TargetKind = Literal["ratio", "engine_at_most", "engine_at_least", "none"]


@dataclass
class Figure:
    key: str
    title: str
    unit: str
    stats: tuple[str, ...] = ("p50", "p99")  # shown in the table, in this order
    headline: str = "p50"  # the statistic the ratio compares
    better: Better = "lower"
    reference: str = "baseline"  # the side the engine is compared with
    target_kind: TargetKind = "none"
    target: float = 0.0
    target_text: str = ""
    note: str = ""
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # for the plot, in ``unit``
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """> 1: the engine is better on ``headline`` (lower time, higher throughput)."""
        ours = self.values.get("engine", {}).get(self.headline)
        theirs = self.values.get(self.reference, {}).get(self.headline)
        if ours is None or theirs is None:
            return None
        if self.better == "lower":
            return theirs / ours if ours > 0 else (float("inf") if theirs > 0 else 1.0)
        return ours / theirs if theirs > 0 else None

    @property
    def met(self) -> bool | None:
        if self.target_kind == "ratio":
            ratio = self.ratio
            return None if ratio is None else ratio >= self.target
        ours = self.values.get("engine", {}).get(self.headline)
        if ours is None:
            return None
        if self.target_kind == "engine_at_most":
            return ours <= self.target
        if self.target_kind == "engine_at_least":
            return ours >= self.target
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "headline": self.headline,
            "better": self.better,
            "reference": self.reference,
            "values": self.values,
            "ratio": self.ratio,
            "ratio_means": f"{self.reference} ÷ engine on {self.headline}"
            if self.better == "lower"
            else f"engine ÷ {self.reference} on {self.headline}",
            "target": self.target_text or None,
            "target_met": self.met,
            "note": self.note,
            "extra": self.extra,
        }


FIGURES: dict[str, Figure] = {}


def declare(figure: Figure) -> Figure:
    """Register a figure (at import of its bench file); re-declaring keeps the values recorded."""
    kept = FIGURES.get(figure.key)
    if kept is not None:
        figure.values, figure.samples, figure.extra = kept.values, kept.samples, kept.extra
    FIGURES[figure.key] = figure
    return figure


def record(
    key: str, side: str, values: dict[str, float], samples: np.ndarray | None = None, **extra: Any
) -> None:
    figure = FIGURES[key]
    figure.values[side] = {name: float(value) for name, value in values.items()}
    if samples is not None and len(samples):
        figure.samples[side] = np.asarray(samples, dtype=np.float64)
    if extra:
        figure.extra.setdefault(side, {}).update(extra)


def summary(samples: np.ndarray | list[float], scale: float = 1.0) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean/n of ``samples * scale``; empty input gives n = 0 only."""
    data = np.asarray(samples, dtype=np.float64) * scale
    if data.size == 0:
        return {"n": 0}
    p50, p90, p99, p999 = np.percentile(data, [50, 90, 99, 99.9])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "p999": float(p999),
        "max": float(data.max()),
        "mean": float(data.mean()),
        "n": int(data.size),
    }


NS_TO_US = 1e-3
NS_TO_MS = 1e-6
