"""A torch (CPU) effect on the viewer's webcam: sketch, posterize, hue shift or invert, mirrored or not.

Run it with ``reactor-engine run examples/webcam_effect`` and press "Use my camera" in the viewer at
http://127.0.0.1:8080/ (the microphone and the tone are optional). Each output frame is the newest
camera frame (``latest``: a frame that came while the last one was processed replaces it; none
queues), through the effect the commands chose. Until the first camera frame arrives the model sends
a slowly moving stripe pattern, and a camera that stops sending is shown dimmed. A microphone's level
is drawn as a bar along the bottom edge; ``set_tone`` plays a sine on the ``speaker`` track.

Every effect is a few whole-frame integer or float operations (no Python per pixel): at most about
6.5 ms for a 1280x720 frame on one core, so a 720p30 camera leaves most of the frame interval free.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import torch
from omegaconf import DictConfig
from pydantic import Field

from reactor_engine import AudioIn, AudioOut, VideoIn, VideoModel, VideoOut, command, get_ctx, model

Effect = Literal["none", "sketch", "posterize", "hue", "invert"]
EFFECTS: tuple[Effect, ...] = ("none", "sketch", "posterize", "hue", "invert")
LUMA = (77, 150, 29)  # BT.601 weights in 1/256ths
METER_HEIGHT = 6  # pixels of the microphone level bar
AUDIO_LEAD_S = 0.06  # how far ahead of real time the tone is kept


@model(name="webcam-effect", config="configs/default.yaml")
class WebcamEffect(VideoModel):
    webcam = VideoIn()
    mic = AudioIn()
    main_video = VideoOut(default=True)  # rate 0: one output frame per camera frame
    speaker = AudioOut(rate=48000, channels=1)

    def __init__(self, config: DictConfig) -> None:
        # Once per engine: the placeholder's pattern and the defaults every session starts from.
        self._idle_period = 1.0 / float(config.idle_fps)
        self._stale_ns = int(float(config.stale_after) * 1e9)
        height, width = int(config.height), int(config.width)
        ys, xs = torch.meshgrid(torch.arange(height), torch.arange(2 * width), indexing="ij")
        stripes = ((xs + ys) // 24) % 2  # diagonal stripes, twice as wide so a moving window fits
        rgb = torch.tensor([[24, 28, 40], [40, 52, 84]], dtype=torch.uint8)
        self._pattern = rgb[stripes]  # (height, 2 * width, 3)
        self._width = width
        self._defaults = (str(config.effect), float(config.strength), bool(config.mirror))
        self._reset()

    def _reset(self) -> None:
        effect, strength, mirror = self._defaults
        self.effect: str = effect
        self.strength = strength
        self.mirror = mirror
        self.hue = 120.0
        self.levels = 4
        self.tone = 0.0

    # -- commands: each takes effect on the next frame ------------------------------------------------

    @command("set_effect", description="The effect on the camera", state=lambda self: {"effect": self.effect})
    def set_effect(self, effect: Effect) -> dict[str, str]:
        self.effect = effect
        return {"effect": effect}

    @command(
        "set_strength", description="How much of the effect", state=lambda self: {"strength": self.strength}
    )
    def set_strength(
        self, strength: float = Field(1.0, ge=0.0, le=1.0, description="0: the camera as it is")
    ) -> None:
        self.strength = strength

    @command(
        "set_mirror",
        description="Mirror the image (a selfie view)",
        state=lambda self: {"mirror": self.mirror},
    )
    def set_mirror(self, mirror: bool = True) -> None:
        self.mirror = mirror

    @command("set_hue", description="Hue shift of the 'hue' effect", state=lambda self: {"degrees": self.hue})
    def set_hue(self, degrees: float = Field(120.0, ge=-180.0, le=180.0, description="degrees")) -> None:
        self.hue = degrees

    @command(
        "set_levels",
        description="Levels per channel of 'posterize'",
        state=lambda self: {"levels": self.levels},
    )
    def set_levels(self, levels: Literal[2, 4, 8, 16] = 4) -> None:
        self.levels = levels

    @command(
        "set_tone", description="A sine on the speaker track", state=lambda self: {"frequency": self.tone}
    )
    def set_tone(
        self, frequency: float = Field(0.0, ge=0.0, le=2000.0, description="Hz; 0 is silence")
    ) -> None:
        self.tone = frequency

    # -- the effects: (H, W, 3) uint8 in, (H, W, 3) uint8 out -----------------------------------------

    @torch.inference_mode()
    def apply(self, frame: torch.Tensor) -> torch.Tensor:
        """The current effect (and mirror, and strength) on one frame; ``frame`` is not modified."""
        if self.mirror:
            frame = frame.flip(1)
        if self.effect == "none" or self.strength <= 0.0:
            return frame.contiguous()
        if self.effect == "sketch":
            out = sketch(frame)
        elif self.effect == "posterize":
            out = posterize(frame, self.levels)
        elif self.effect == "hue":
            out = hue_shift(frame, self.hue)
        else:
            out = 255 - frame
        if self.strength < 1.0:
            out = torch.lerp(frame.float(), out.float(), self.strength).to(torch.uint8)
        return out

    def placeholder(self, t: float) -> torch.Tensor:
        """What is shown before the first camera frame: dim stripes drifting to the left."""
        offset = int(t * 30) % self._width
        return self._pattern[:, offset : offset + self._width]

    # -- the session ------------------------------------------------------------------------------------

    def start_session(self) -> None:
        ctx = get_ctx()
        webcam, mic, video, speaker = (ctx.get_track(n) for n in ("webcam", "mic", "main_video", "speaker"))
        tone = ToneWriter(speaker.rate)
        level = 0.0
        rendered: tuple[object, ...] | None = None  # what last_out was made from: frame index and settings
        last_out: torch.Tensor | None = None
        started = time.monotonic()
        while not ctx.should_stop():
            # A poll point: waits for a camera frame newer than the last one (or the idle period).
            webcam.read(timeout=self._idle_period)
            frame = webcam.latest_frame()
            samples = mic.latest()  # everything the microphone sent since the last frame
            level = mic_level(samples) if samples is not None and samples.size else 0.8 * level  # fades out
            if frame is None:
                out = self.placeholder(time.monotonic() - started)
            else:
                # A new camera frame, or a command changed the look (re-render the current frame).
                key = (frame.index, self.effect, self.strength, self.mirror, self.hue, self.levels)
                if key != rendered or last_out is None:
                    # Copied out of the input slot first: its view is valid only until the next poll point.
                    last_out = self.apply(torch.from_numpy(np.array(frame.array)))
                    rendered = key
                out = last_out
                if time.monotonic_ns() - frame.arrival_ns > self._stale_ns:
                    out = out >> 1  # the camera stopped sending: its last frame, dimmed
            if level > 0.01:
                out = draw_meter(out.clone(), level)
            video.emit(out)
            tone.write(speaker, self.tone)

    def on_session_end(self, reason: str) -> None:
        self._reset()  # the next user starts from the defaults


class ToneWriter:
    """Keeps an audio track ``AUDIO_LEAD_S`` ahead of real time: a sine at a frequency, or silence."""

    def __init__(self, rate: float) -> None:
        self.rate = int(rate)
        self.phase = 0.0
        self.started: float | None = None
        self.written = 0

    def write(self, track: Any, frequency: float) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        due = int((now - self.started + AUDIO_LEAD_S) * self.rate) - self.written
        if due <= 0:
            return
        step = 2 * math.pi * frequency / self.rate
        phases = self.phase + step * np.arange(due, dtype=np.float64)
        samples = (0.2 * np.sin(phases)).astype(np.float32) if frequency > 0 else np.zeros(due, np.float32)
        self.phase = float((self.phase + step * due) % (2 * math.pi))
        track.emit(samples)
        self.written += due


def sketch(frame: torch.Tensor) -> torch.Tensor:
    """Dark lines where the brightness changes, on white: a pencil sketch."""
    f = frame.to(torch.int16)
    gray = (f[..., 0] * LUMA[0] + f[..., 1] * LUMA[1] + f[..., 2] * LUMA[2]) >> 8
    edges = torch.zeros_like(gray)
    edges[:, 1:-1] += (gray[:, 2:] - gray[:, :-2]).abs()
    edges[1:-1, :] += (gray[2:, :] - gray[:-2, :]).abs()
    return (255 - 3 * edges).clamp_(0, 255).to(torch.uint8)[..., None].expand(-1, -1, 3).contiguous()


def posterize(frame: torch.Tensor, levels: int) -> torch.Tensor:
    """``levels`` (a power of two) values per channel, each at the middle of its band."""
    bits = int(math.log2(levels))
    mask = (0xFF << (8 - bits)) & 0xFF
    return (frame & mask) | (1 << (7 - bits))


def hue_shift(frame: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotates every colour by ``degrees`` around the grey axis (greys stay grey)."""
    a = math.radians(degrees)
    c, s, k, r = math.cos(a), math.sin(a), 1.0 / 3.0, math.sqrt(1.0 / 3.0)
    m = torch.tensor(
        [
            [c + (1 - c) * k, k * (1 - c) - r * s, k * (1 - c) + r * s],
            [k * (1 - c) + r * s, c + k * (1 - c), k * (1 - c) - r * s],
            [k * (1 - c) - r * s, k * (1 - c) + r * s, c + k * (1 - c)],
        ]
    )
    return torch.nn.functional.linear(frame.float(), m).clamp_(0, 255).to(torch.uint8)


def mic_level(samples: np.ndarray) -> float:
    """0..1 from int16 samples' RMS (a normal voice near the microphone reaches about half)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float32))))
    return min(1.0, 4.0 * rms / 32768.0)


def draw_meter(frame: torch.Tensor, level: float) -> torch.Tensor:
    """A green bar along the bottom edge, as long as the microphone is loud (``frame`` is written)."""
    width = int(frame.shape[1] * level)
    frame[-METER_HEIGHT:, :width] = torch.tensor([80, 220, 120], dtype=torch.uint8)
    return frame


__all__ = ["EFFECTS", "WebcamEffect", "hue_shift", "posterize", "sketch"]
