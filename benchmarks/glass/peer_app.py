"""The stamped model as a reactor-runtime 3.x ``ReactorApp`` (the peer runtime; Python >= 3.12).

The same ``glass.stamp.StampedSource`` as ``engine_model``: each ``generate()`` is one step that
waits for the next tick of the model's own 30 fps clock, renders, logs the emission and returns the
frame. ``fps`` is left unpinned, the runtime's default: it paces playout from the measured
``generate()`` time (one period here, wait included). Pinning ``fps = 30`` on the class was measured
too and gave the peer a worse p50 (about 90 ms instead of 50 ms at 512x512), so the default is the
fair setting. The runtime keeps the returned array after the hand-off, so each frame is a fresh one.
Served by ``python -m reactor_runtime.serve`` from a folder whose ``reactor.yaml`` says
``runtime.import: glass.peer_app:GlassApp`` (``glass.servers`` writes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from reactor_runtime import Output, ReactorApp, Video, session_started

from glass.stamp import StampedSource


class GlassOutput(Output):
    main_video: Video


class GlassApp(ReactorApp):
    def load(self, config_path: Path | None) -> None:
        config: dict[str, Any] = {}
        if config_path is not None:
            config = yaml.safe_load(Path(config_path).read_text()) or {}
        self.source = StampedSource(
            int(config.get("width", 1280)),
            int(config.get("height", 720)),
            fps=float(config.get("fps", 30.0)),
            stamps_path=config.get("stamps") or None,
            fresh_buffers=True,
        )

    @session_started
    def _restart_clock(self) -> None:
        self.source.reset_clock()

    def generate(self, input: Any, /) -> GlassOutput:
        return GlassOutput(main_video=self.source.next_frame())
