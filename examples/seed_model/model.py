"""The seed-era docs' example model ("Model Instancing"), with only its import changed.

The seed docs import from ``reactor_runtime``; here the same names come from ``reactor_engine``
(an unmodified ``from reactor_runtime import ...`` works too, through the compatibility alias).
``load_my_diffusion_pipeline`` stands in for a real pipeline: it draws a moving gradient.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from reactor_engine import VideoModel, get_ctx, model


class TrivialPipeline:
    """A stand-in for a diffusion pipeline: one (H, W, 3) uint8 RGB frame per call."""

    def __init__(self, resolution: int) -> None:
        ramp = np.linspace(0, 255, resolution, dtype=np.float32)
        self._x = np.broadcast_to(ramp[None, :], (resolution, resolution))
        self._y = np.broadcast_to(ramp[:, None], (resolution, resolution))
        self._frame = np.empty((resolution, resolution, 3), np.uint8)
        self._t = 0

    def __call__(self, num_steps: int) -> np.ndarray:
        self._t += num_steps
        self._frame[..., 0] = (self._x + self._t) % 256
        self._frame[..., 1] = (self._y + 2 * self._t) % 256
        self._frame[..., 2] = 128
        return self._frame


def load_my_diffusion_pipeline(device: str, resolution: int = 512) -> TrivialPipeline:
    return TrivialPipeline(resolution)


@model(name="my-diffusion-model", config="configs/default.yaml")
class MyVideoModel(VideoModel):
    def __init__(self, config: DictConfig) -> None:
        # This runs ONCE when the runtime starts.
        # Load your weights here.

        # Access configuration values
        self.num_steps = config.get("num_steps", 5)
        self.compile = config.get("compile", False)

        # Load your pipeline (the expensive part)
        print("Loading model weights...")
        self.pipeline = load_my_diffusion_pipeline(device="cuda", resolution=config.get("resolution", 512))
        print("Weights loaded!")

    def start_session(self) -> None:
        # This runs every time a user connects.
        # The pipeline is already loaded.
        ctx = get_ctx()
        while not ctx.should_stop():
            ctx.get_track().emit(self.pipeline(self.num_steps))
