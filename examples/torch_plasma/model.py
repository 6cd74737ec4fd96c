"""A torch (CPU) model that reacts to commands: an animated plasma with a speed, a palette and a pause.

Run it with ``reactor-engine run examples/torch_plasma/model.py``, or embed it (``examples/embed.py``).
Each command's ``state=`` tells the engine its parameter's current value, so the viewer's controls show
the model as it is (``--model.speed=2``: the slider stands at 2; the stream plays: "Paused" is unticked).
"""

from __future__ import annotations

from typing import Literal

import torch
from omegaconf import DictConfig
from pydantic import Field

from reactor_engine import VideoModel, VideoOut, command, get_ctx, model

PALETTES = {
    "fire": (1.0, 0.45, 0.1),
    "ocean": (0.1, 0.5, 1.0),
    "forest": (0.2, 0.9, 0.3),
}


@model(name="torch-plasma", config="configs/default.yaml")
class TorchPlasma(VideoModel):
    main_video = VideoOut(default=True, rate=30)

    def __init__(self, config: DictConfig) -> None:
        # Once per engine: everything a session needs is prepared here.
        height, width = int(config.height), int(config.width)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self._x, self._y = xs * config.scale, ys * config.scale
        self._radius = torch.sqrt(xs**2 + ys**2) * config.scale
        self._default_speed = float(config.speed)
        self._reset()

    def _reset(self) -> None:
        self.speed = self._default_speed
        self.palette: str = "fire"
        self.paused = False

    @command("set_speed", description="Animation speed", state=lambda self: {"speed": self.speed})
    def set_speed(
        self, speed: float = Field(1.0, ge=0.0, le=5.0, description="0 freezes, 5 is fast")
    ) -> None:
        self.speed = speed

    @command("set_palette", description="Colour palette", state=lambda self: {"palette": self.palette})
    def set_palette(self, palette: Literal["fire", "ocean", "forest"]) -> dict[str, str]:
        self.palette = palette
        return {"palette": palette}

    @command("pause", description="Pause or resume the animation", state=lambda self: {"paused": self.paused})
    def pause(self, paused: bool = True) -> None:
        self.paused = paused

    @torch.inference_mode()
    def render(self, t: float) -> torch.Tensor:
        value = (
            torch.sin(self._x + t)
            + torch.sin(self._y * 1.3 - t)
            + torch.sin(self._x + self._y + 0.7 * t)
            + torch.sin(self._radius * 1.7 - 1.3 * t)
        )
        level = (value + 4.0) / 8.0  # [0, 1]
        colour = torch.tensor(PALETTES[self.palette])
        rgb = level[..., None] * colour + (1 - level[..., None]) * colour.flip(0) * 0.25
        return (rgb * 255).clamp(0, 255).to(torch.uint8)

    def start_session(self) -> None:
        ctx = get_ctx()
        t = 0.0
        while not ctx.should_stop():
            if self.paused:
                ctx.wait(0.1)  # applies commands as they arrive (e.g. pause=false)
                continue
            ctx.get_track().emit(self.render(t))  # (H, W, 3) uint8 torch tensor
            t += 0.05 * self.speed

    def on_session_end(self, reason: str) -> None:
        self._reset()  # the next user starts from the defaults
