"""The model the media tests serve: the client's camera inverted, a 440 Hz tone out, the microphone heard.

- ``webcam`` (``VideoIn``): each new frame goes out inverted (``255 - frame``) on ``main_video``, the
  frame's stamped index (16 black/white blocks along the top, ``paint_index``) with it, inverted
  too, so a client reads ``read_index(255 - output)`` back and knows which input it came from.
  Until the first camera frame (and whenever none came for 0.1 s) it sends a flat grey frame.
- ``voice`` (``AudioOut``, 48 kHz mono): a 440 Hz sine at 0.3 of full scale, kept 60 ms ahead.
- ``mic`` (``AudioIn``, 48 kHz mono): the last second is kept; the ``heard`` command answers the peak
  frequency (FFT) and level of its last 0.5 s, and how many samples came in all.

Loaded by path: ``Engine("tests/media_model.py")``; the frame size is 320x240.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import webrtc_model  # the index stamp, shared with the video-out tests (this folder is on sys.path)

from reactor_engine import AudioIn, AudioOut, VideoIn, VideoModel, VideoOut, command, get_ctx, model

WIDTH, HEIGHT = 320, 240
TONE_HZ = 440.0
AUDIO_RATE = 48000
AUDIO_LEAD_S = 0.06
BODY = (200, 60, 30)  # the colour clients paint their frames; the model's output shows its inverse


def _rows(height: int) -> int:
    return max(16, height // 8)  # taller than webrtc_model's default: VP8 at 320x240 blurs thin bands


def paint_index(frame: np.ndarray, index: int) -> None:
    """The low 16 bits of ``index`` as black/white blocks across the top rows of the frame (MSB first)."""
    webrtc_model.paint_index(frame, index, _rows(frame.shape[0]))


def read_index(rgb: np.ndarray) -> int:
    """The index ``paint_index`` wrote, read back from a decoded (H, W, 3) frame."""
    return webrtc_model.read_index(rgb, _rows(rgb.shape[0]))


def client_frame(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """What a test client sends: the body colour with the index stamped on it."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = BODY
    paint_index(frame, index)
    return frame


def output_index(rgb: np.ndarray) -> int | None:
    """The input index an output frame carries, or ``None`` for a frame not made from a client frame
    (the grey placeholder): the body must show the inverse of ``BODY``."""
    body = rgb[rgb.shape[0] * 3 // 4, rgb.shape[1] // 2].astype(int)
    expected = 255 - np.array(BODY)
    if np.abs(body - expected).max() > 40:
        return None
    return read_index(255 - rgb)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest FFT bin of ``samples`` (mono)."""
    x = samples.astype(np.float64)
    x = (x - x.mean()) * np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * rate / x.size)


@model(name="media-test")
class MediaTestModel(VideoModel):
    main_video = VideoOut(default=True, width=WIDTH, height=HEIGHT)
    webcam = VideoIn()
    mic = AudioIn()
    voice = AudioOut(rate=AUDIO_RATE, channels=1)

    def __init__(self, config: Any = None) -> None:
        self.heard = np.zeros(AUDIO_RATE, np.int16)
        self.heard_total = 0

    @command("heard", description="What the microphone brought in: peak frequency, level, samples")
    def heard_report(self) -> dict[str, Any]:
        last = self.heard[-AUDIO_RATE // 2 :]
        rms = float(np.sqrt(np.mean(last.astype(np.float64) ** 2)))
        return {"peak_hz": peak_hz(last, AUDIO_RATE), "rms": rms, "samples": self.heard_total}

    def start_session(self) -> None:
        ctx = get_ctx()
        video, webcam, mic, voice = (ctx.get_track(n) for n in ("main_video", "webcam", "mic", "voice"))
        self.heard[:] = 0
        self.heard_total = 0
        grey = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        out = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        started = time.monotonic()
        written = 0
        step = 2 * math.pi * TONE_HZ / AUDIO_RATE
        last_frame = 0.0
        while not ctx.should_stop():
            frames = webcam.read(1, "latest", timeout=0.02)  # a poll point
            now = time.monotonic()
            if frames:
                frame = frames[0].array
                h, w = min(HEIGHT, frame.shape[0]), min(WIDTH, frame.shape[1])
                out[:] = 0
                np.subtract(255, frame[:h, :w], out=out[:h, :w])
                video.emit(out)
                last_frame = now
            elif now - last_frame > 0.1:
                video.emit(grey)
                last_frame = now
            block = mic.read(AUDIO_RATE // 4, "fifo", timeout=0)
            if block.size:
                mono = block[0]
                n = min(mono.size, self.heard.size)
                self.heard = np.roll(self.heard, -n)
                self.heard[-n:] = mono[-n:]
                self.heard_total += mono.size
            due = int((now - started + AUDIO_LEAD_S) * AUDIO_RATE) - written
            if due > 0:
                phases = step * np.arange(written, written + due, dtype=np.float64)
                voice.emit((0.3 * np.sin(phases)).astype(np.float32))
                written += due
