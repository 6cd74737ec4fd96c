"""``--input DIR`` of the headless runtime: a folder of images fed, in name order, to the model's input.

Images go to the model's first ``VideoIn`` track at ``--input-fps`` (default: the track's rate, else
30), as a camera would send them: JPEG files through the track's native JPEG decoder, PNG (with
Pillow), binary PPM and ``.npy`` ``(H, W, 3)`` uint8 arrays as frames. Video files are not read:
PyAV is not a dependency of reactor-engine (extract frames first, e.g. ``ffmpeg -i in.mp4 in/%06d.png``).
Once the last image is fed and the model has taken every frame, the session is stopped
(``input_ended``), so ``--input`` alone makes a batch run over the folder.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from reactor_engine.errors import ConfigError, ReactorError
from reactor_engine.inputs import VideoInputTrack

if TYPE_CHECKING:
    from reactor_engine.engine import Engine
    from reactor_engine.session import Session

__all__ = ["IMAGE_SUFFIXES", "InputFeeder", "input_track", "list_input"]

_log = logging.getLogger("reactor_engine.headless")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".npy")
DEFAULT_FPS = 30.0
_STALL_S = 10.0  # after the last image: stop anyway when the model takes nothing for this long
_KEPT_ERRORS = 20


def list_input(folder: Path) -> list[Path]:
    """The images of ``folder`` in name order; ``ConfigError`` saying what is accepted otherwise."""
    accepted = ", ".join(IMAGE_SUFFIXES)
    if not folder.is_dir():
        raise ConfigError(
            f"--input {folder} is not a folder: give a folder of images ({accepted}); video files are not "
            f"read (PyAV is not a dependency: extract frames first, e.g. ffmpeg -i in.mp4 DIR/%06d.png)"
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"--input {folder} holds no images ({accepted})")
    if any(p.suffix.lower() == ".png" for p in files):
        try:
            import PIL.Image  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"--input {folder} holds PNG files, which need Pillow (pip install pillow); "
                f"or use JPEG, PPM or .npy frames"
            ) from None
    return files


def input_track(engine: Engine) -> VideoInputTrack:
    """The track ``--input`` feeds: the model's first ``VideoIn``."""
    for track in engine.inputs.values():
        if isinstance(track, VideoInputTrack):
            return track
    raise ConfigError(
        f"--input needs a model with a video input; model '{engine.name}' declares none "
        f"(add one to its class: webcam = VideoIn())"
    )


def _read_ppm(data: bytes, path: Path) -> npt.NDArray[np.uint8]:
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P6" or maxval != 255:
        raise ValueError(f"{path.name}: only binary 8-bit PPM (P6, maxval 255) is read")
    pixels = np.frombuffer(data, dtype=np.uint8, count=width * height * 3, offset=pos + 1)
    return pixels.reshape(height, width, 3)


class InputFeeder:
    """Feeds ``files`` to ``track`` of ``session`` on its own thread, then ends the session."""

    def __init__(self, session: Session, track: VideoInputTrack, files: list[Path], fps: float) -> None:
        self.session = session
        self.track = track
        self.files = files
        self.fps = fps
        self.fed = 0
        self.errors: list[str] = []
        self.refused = 0
        self.ended_session = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reactor-headless-input", daemon=True)
        self._thread.start()

    def _feed(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix in (".jpg", ".jpeg"):
            self.session.push_encoded(self.track.name, path.read_bytes(), "jpeg")
            return
        frame: Any
        if suffix == ".npy":
            frame = np.load(path, allow_pickle=False)
        elif suffix == ".ppm":
            frame = _read_ppm(path.read_bytes(), path)
        else:
            from PIL import Image

            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        self.session.push_frame(self.track.name, frame)

    def _run(self) -> None:
        started = time.monotonic()
        period = 1.0 / self.fps
        for k, path in enumerate(self.files):
            delay = started + k * period - time.monotonic()
            if (delay > 0 and self._stop.wait(delay)) or self.session.ended:
                return
            try:
                self._feed(path)
                self.fed += 1
            except (ReactorError, OSError, ValueError) as exc:
                self.refused += 1
                if len(self.errors) < _KEPT_ERRORS:
                    self.errors.append(f"{path.name}: {exc}")
                _log.warning("--input %s: %s", path.name, exc, extra={"session_id": self.session.session_id})
        self._end_when_taken()

    def _end_when_taken(self) -> None:
        """Wait until the decoders are idle and the model has read every frame, then stop the session."""
        ring, last, progress_at = self.track.ring, -1, time.monotonic()
        while not self.session.ended and not self._stop.is_set():
            idle = all(decoder.wait_idle(0.02) for decoder in self.track.decoders.values())
            stats = ring.stats()
            if idle and stats["ready"] == 0:
                break
            if stats["frames_read"] != last:
                last, progress_at = stats["frames_read"], time.monotonic()
            elif time.monotonic() - progress_at > _STALL_S:
                _log.warning("--input: the model took no frame for %.0f s; ending the session", _STALL_S)
                break
            self._stop.wait(0.02)
        if not self.session.ended and not self._stop.is_set():
            self.ended_session = True
            self.session.stop("input_ended")

    def close(self, timeout: float = 5.0) -> dict[str, Any]:
        """Stop feeding (if still going) and return what ``stats.json`` records of the input."""
        self._stop.set()
        self._thread.join(timeout)
        return {
            "track": self.track.name,
            "folder": str(self.files[0].parent) if self.files else None,
            "files": len(self.files),
            "fed": self.fed,
            "refused": self.refused,
            "errors": self.errors,
            "fps": self.fps,
            "ended_session": self.ended_session,
        }
