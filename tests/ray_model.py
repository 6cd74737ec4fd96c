"""The tiny model the Ray Serve tests run in each replica: grey 32x24 frames at a settable level."""

from __future__ import annotations

import os

import numpy as np
from pydantic import Field

from reactor_engine import VideoModel, VideoOut, command, get_ctx, model


@model(name="ray-test")
class GreyModel(VideoModel):
    """Grey frames; ``set_level`` changes their level, ``whoami`` says which process runs it."""

    main_video = VideoOut(default=True, rate=30)

    def __init__(self, config: object) -> None:
        self.level = 40

    @command("set_level", description="Grey level")
    def set_level(self, level: int = Field(40, ge=0, le=255)) -> dict[str, int]:
        self.level = level
        return {"level": level}

    @command("whoami")
    def whoami(self) -> dict[str, int]:
        return {"pid": os.getpid()}

    def start_session(self) -> None:
        ctx = get_ctx()
        frame = np.zeros((24, 32, 3), dtype=np.uint8)
        while not ctx.should_stop():
            frame[:] = self.level
            ctx.get_track().emit(frame)
