"""The built-in demo: a torch (CPU) scene that reacts to every kind of command the viewer can show.

A prompt picks the scene's palette (``ocean``, ``fire``, ``forest``, ``night``, ``snow``, ``desert`` or
a colour made from the words), ``move`` steers the orb, ``set_speed`` the animation, ``set_brightness``
the exposure, ``pause`` freezes it and ``reset`` brings the defaults back. No weights, no GPU.
Each command's ``state=`` tells the engine the value its parameter has now, which the viewer shows.
"""

from __future__ import annotations

import math
import zlib
from typing import Literal

import torch
from omegaconf import DictConfig
from pydantic import Field

from reactor_engine.commands import command
from reactor_engine.context import get_ctx
from reactor_engine.model import VideoModel, model
from reactor_engine.tracks import VideoOut

FPS = 30
_DT = 1.0 / FPS

# (sky top, horizon, sea, orb) as RGB in [0, 1].
RGB = tuple[float, float, float]
Palette = tuple[RGB, RGB, RGB, RGB]
SCENES: dict[str, Palette] = {
    "ocean": ((0.05, 0.15, 0.45), (0.55, 0.75, 0.95), (0.0, 0.25, 0.55), (1.0, 0.95, 0.7)),
    "fire": ((0.35, 0.0, 0.0), (1.0, 0.55, 0.1), (0.45, 0.05, 0.0), (1.0, 0.95, 0.4)),
    "forest": ((0.05, 0.3, 0.1), (0.6, 0.85, 0.45), (0.05, 0.35, 0.1), (1.0, 1.0, 0.75)),
    "night": ((0.0, 0.0, 0.05), (0.05, 0.08, 0.25), (0.0, 0.02, 0.12), (0.9, 0.9, 1.0)),
    "snow": ((0.6, 0.75, 0.9), (0.95, 0.97, 1.0), (0.85, 0.9, 0.95), (1.0, 1.0, 0.9)),
    "desert": ((0.3, 0.55, 0.9), (0.95, 0.8, 0.55), (0.85, 0.6, 0.3), (1.0, 0.98, 0.8)),
}
KEYWORDS = {
    "ocean": "ocean", "sea": "ocean", "water": "ocean", "rain": "ocean", "beach": "ocean",
    "fire": "fire", "lava": "fire", "sunset": "fire", "volcano": "fire", "flame": "fire",
    "forest": "forest", "jungle": "forest", "grass": "forest", "tree": "forest", "garden": "forest",
    "night": "night", "space": "night", "star": "night", "moon": "night", "dark": "night",
    "snow": "snow", "ice": "snow", "winter": "snow", "arctic": "snow",
    "desert": "desert", "sand": "desert", "dune": "desert",
}  # fmt: skip
VELOCITY = {
    "left": (-0.5, 0.0),
    "right": (0.5, 0.0),
    "up": (0.0, -0.5),
    "down": (0.0, 0.5),
    "stop": (0.0, 0.0),
}


def palette_for(prompt: str) -> Palette:
    """The scene a prompt describes: the first keyword it names, else colours derived from its words."""
    for word in prompt.lower().replace(",", " ").split():
        scene = KEYWORDS.get(word.rstrip("s.!?")) or KEYWORDS.get(word)
        if scene is not None:
            return SCENES[scene]
    hue = (zlib.crc32(prompt.strip().lower().encode()) % 360) / 360.0
    r, g, b = _hue_rgb(hue)
    sr, sg, sb = _hue_rgb(hue + 0.5)
    return (
        (0.25 * r, 0.25 * g, 0.25 * b),
        (0.5 + 0.5 * r, 0.5 + 0.5 * g, 0.5 + 0.5 * b),
        (0.4 * sr, 0.4 * sg, 0.4 * sb),
        (1.0, 1.0, 0.9),
    )


def _hue_rgb(hue: float) -> tuple[float, float, float]:
    hue %= 1.0
    rgb = [min(1.0, max(0.0, abs((hue * 6 + shift) % 6 - 3) - 1)) for shift in (0, 4, 2)]
    return rgb[0], rgb[1], rgb[2]


@model(name="reactor-demo", config="config.yaml")
class DemoModel(VideoModel):
    main_video = VideoOut(default=True, rate=FPS)

    def __init__(self, config: DictConfig) -> None:
        # Once per engine: the coordinate grids every frame reuses. A frame is ~1 ms of work on one
        # core; torch's intra-op threads would only contend with the encoder thread for the others.
        torch.set_num_threads(1)
        self.height, self.width = int(config.height), int(config.width)
        self._ys = torch.linspace(0.0, 1.0, self.height)[:, None, None]  # (H, 1, 1)
        self._xs = torch.linspace(0.0, 1.0, self.width)[None, :, None]  # (1, W, 1)
        self._aspect = self.width / max(1, self.height)
        generator = torch.Generator().manual_seed(7)
        self._stars = (torch.rand(self.height, self.width, 1, generator=generator) > 0.997).float() * 0.9
        self._default_prompt = str(config.prompt)
        self._default_speed = float(config.speed)
        self._reset()

    def _reset(self) -> None:
        self.prompt = self._default_prompt
        self.palette = palette_for(self.prompt)
        self.speed = self._default_speed
        self.brightness = 1.0
        self.paused = False
        self.position = [0.5, 0.35]
        self.direction = "stop"
        self.velocity = VELOCITY[self.direction]
        self.t = 0.0

    # -- commands (applied on the session thread, between frames) --------------------------------

    @command(
        "set_prompt",
        description="Describe the scene: ocean, fire, forest, night, snow, desert...",
        state=lambda self: {"prompt": self.prompt},
    )
    def set_prompt(self, prompt: str = Field(min_length=1, max_length=200)) -> dict[str, str]:
        self.prompt = prompt
        self.palette = palette_for(prompt)
        return {"prompt": prompt}

    @command("move", description="Steer the orb", state=lambda self: {"direction": self.direction})
    def move(self, direction: Literal["stop", "left", "right", "up", "down"]) -> None:
        self.direction = direction
        self.velocity = VELOCITY[direction]

    @command("set_speed", description="Animation speed", state=lambda self: {"speed": self.speed})
    def set_speed(
        self, speed: float = Field(1.0, ge=0.0, le=4.0, description="0 freezes, 4 is fast")
    ) -> None:
        self.speed = speed

    @command(
        "set_brightness",
        description="Exposure of the scene",
        state=lambda self: {"brightness": self.brightness},
    )
    def set_brightness(self, brightness: float = Field(1.0, ge=0.0, le=1.5)) -> None:
        self.brightness = brightness

    @command("pause", description="Pause or resume the animation", state=lambda self: {"paused": self.paused})
    def pause(self, paused: bool) -> None:
        self.paused = paused

    @command("reset", description="Back to the starting scene")
    def reset(self) -> None:
        self._reset()

    # -- generation ------------------------------------------------------------------------------

    @torch.inference_mode()
    def render(self) -> torch.Tensor:
        """One (H, W, 3) uint8 frame of the scene at the current time, position and palette."""
        top, horizon, sea, orb = (torch.tensor(c) for c in self.palette)
        ys, xs, t = self._ys, self._xs, self.t
        # Sky and sea vary by row and the wave line by column, so the full-frame work is a few ops.
        sky_mix = (ys / 0.62).clamp(0, 1)
        sky = top * (1 - sky_mix) + horizon * sky_mix  # (H, 1, 3)
        ripples = 0.8 + 0.2 * torch.sin(ys * 120.0 - t * 4.0)
        water = sea * ripples  # (H, 1, 3)
        wave = 0.62 + 0.015 * torch.sin(xs * 25.0 + t * 2.0) + 0.01 * torch.sin(xs * 61.0 - t * 3.1)
        image = torch.where(ys > wave, water, sky)  # (H, W, 3)
        if self.palette is SCENES["night"]:
            image += self._stars * (0.6 + 0.4 * math.sin(t * 3.0))
        self._draw_orb(image, orb)
        image *= 255.0 * self.brightness
        return image.clamp_(0, 255).to(torch.uint8)

    def _draw_orb(self, image: torch.Tensor, colour: torch.Tensor) -> None:
        """Blend a glowing disc into the box around the orb only."""
        height, width = image.shape[0], image.shape[1]
        radius = 0.12
        ox, oy = self.position
        x0, x1 = int((ox - radius / self._aspect) * width), int((ox + radius / self._aspect) * width) + 1
        y0, y1 = int((oy - radius) * height), int((oy + radius) * height) + 1
        x0, x1, y0, y1 = max(0, x0), min(width, x1), max(0, y0), min(height, y1)
        if x0 >= x1 or y0 >= y1:
            return
        dx = (self._xs[:, x0:x1] - ox) * self._aspect
        dy = self._ys[y0:y1] - oy
        glow = (1.0 - torch.sqrt(dx * dx + dy * dy) / radius).clamp(0, 1) ** 1.5
        box = image[y0:y1, x0:x1]
        box.mul_(1 - glow).add_(colour * glow)

    def _advance(self) -> None:
        step = _DT * self.speed
        self.t += step
        self.position[0] = (self.position[0] + self.velocity[0] * step) % 1.0
        self.position[1] = min(0.95, max(0.05, self.position[1] + self.velocity[1] * step))

    def start_session(self) -> None:
        ctx = get_ctx()
        while not ctx.should_stop():
            if self.paused:
                ctx.wait(0.05)  # commands (pause=false) still apply while paused
                continue
            ctx.get_track().emit(self.render())
            self._advance()

    def on_session_end(self, reason: str) -> None:
        self._reset()  # the next user starts from the defaults
