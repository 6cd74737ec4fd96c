"""The stamped model as a reactor-engine model (the seed-era API): ``reactor-engine run`` serves it.

    PYTHONPATH=benchmarks .venv/bin/reactor-engine run benchmarks/glass/engine_model.py \\
        --model.width=1280 --model.height=720 --model.fps=30 --model.stamps=/tmp/stamps.bin

The body is ``glass.stamp.StampedSource``, the same one the reactor-runtime adapter (``peer_app``)
drives: it paces itself at ``fps`` and logs each frame's emission just before ``emit``. The track has
no rate of its own (``VideoOut(rate=0)`` and the engine's default ``fps: 0``), so the engine adds no
pacing on top.
"""

from __future__ import annotations

from typing import Any

from glass.stamp import StampedSource
from reactor_engine import VideoModel, VideoOut, get_ctx, model


@model(name="glass", config="configs/glass.yaml")
class GlassModel(VideoModel):
    main_video = VideoOut(default=True)

    def __init__(self, config: Any = None) -> None:
        config = config or {}
        self.source = StampedSource(
            int(config.get("width", 1280)),
            int(config.get("height", 720)),
            fps=float(config.get("fps", 30.0)),
            stamps_path=config.get("stamps") or None,
        )

    def start_session(self) -> None:
        ctx = get_ctx()
        track = ctx.get_track()
        self.source.reset_clock()
        while not ctx.should_stop():
            track.emit(self.source.next_frame())
