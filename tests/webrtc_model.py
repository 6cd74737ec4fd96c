"""The model the WebRTC tests serve: cheap moving frames (1280x720 unless its config says) at 30 fps.

Each frame is a textured background (so VP8 has real detail to code) with a bright bar that moves,
and the frame index painted as 16 black/white blocks along the top edge: a client reads the index back
from the decoded picture (``read_index``), which survives lossy coding. ``echo`` returns a reply,
``set_level`` validates its argument (0-10) and returns nothing. Loaded by path: ``Engine(__file__)``.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from pydantic import Field

from reactor_engine import VideoModel, VideoOut, command, get_ctx, model

WIDTH, HEIGHT, FPS = 1280, 720, 30
INDEX_BITS = 16


def paint_index(frame: np.ndarray, index: int, rows: int | None = None) -> None:
    """The low 16 bits of ``index`` as black/white blocks across the top ``rows`` rows of the frame (MSB
    first; by default the top 1/24, at least 8 rows)."""
    height, width = frame.shape[:2]
    block, rows = width // INDEX_BITS, rows or max(8, height // 24)
    for bit in range(INDEX_BITS):
        on = (index >> (INDEX_BITS - 1 - bit)) & 1
        frame[:rows, bit * block : (bit + 1) * block] = 255 if on else 0


def read_index(rgb: np.ndarray, rows: int | None = None) -> int:
    """The index ``paint_index`` wrote (with the same ``rows``), read back from a decoded (H, W, 3) frame."""
    height, width = rgb.shape[:2]
    block = width // INDEX_BITS
    row = rgb[(rows or max(8, height // 24)) // 2]
    value = 0
    for bit in range(INDEX_BITS):
        x = int((bit + 0.5) * block)
        value = (value << 1) | int(row[x].mean() > 127)
    return value


@model(name="webrtc-test", config="webrtc_model.yaml")
class WebRtcTestModel(VideoModel):
    main_video = VideoOut(default=True, rate=FPS, width=WIDTH, height=HEIGHT)

    def __init__(self, config: DictConfig) -> None:
        self.width, self.height = int(config.width), int(config.height)
        rng = np.random.default_rng(7)
        y = np.linspace(0, 1, self.height, dtype=np.float32)[:, None]
        x = np.linspace(0, 1, self.width, dtype=np.float32)[None, :]
        shape = (-(-self.height // 8), -(-self.width // 8))
        texture = (
            rng.integers(0, 48, shape, dtype=np.uint8).repeat(8, 0).repeat(8, 1)[: self.height, : self.width]
        )
        base = np.stack([80 + 100 * x + 0 * y, 60 + 120 * y + 0 * x, 140 - 60 * x * y], axis=-1)
        self.base = (base + texture[..., None]).clip(0, 255).astype(np.uint8)
        self.level = 0

    @command("echo", description="Answer with the text")
    def echo(self, text: str) -> dict[str, object]:
        return {"type": "echo", "data": {"text": text, "level": self.level}}

    @command("set_level", description="A number from 0 to 10")
    def set_level(self, level: int = Field(ge=0, le=10)) -> None:
        self.level = level

    def start_session(self) -> None:
        ctx = get_ctx()
        track = ctx.get_track()
        index = 0
        width, height = self.width, self.height
        bar = max(2, min(64, width // 16))
        while not ctx.should_stop():
            with track.frame(width, height) as frame:
                frame[:] = self.base
                x = (index * 12) % (width - bar)
                frame[height // 4 : 3 * height // 4, x : x + bar] = 255 - 20 * self.level
                paint_index(frame, index)
            index += 1
