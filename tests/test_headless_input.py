"""``reactor-engine run --runtime headless --input DIR``: a folder of images through the model and back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_headless import run_cli

H, W, BLOCK = 48, 64, 8

MODEL = """
from reactor_engine import VideoIn, VideoModel, VideoOut, get_ctx, model

@model(name="headless-invert")
class Invert(VideoModel):
    main_video = VideoOut(default=True)
    webcam = VideoIn()

    def start_session(self):
        ctx = get_ctx()
        while not ctx.should_stop():
            for frame in self.webcam.read(n=4, mode="fifo", timeout=0.5):
                self.main_video.emit(255 - frame.array)
"""

NO_INPUT_MODEL = """
from reactor_engine import VideoModel, get_ctx, model

@model(name="headless-no-input")
class Plain(VideoModel):
    def start_session(self):
        ctx = get_ctx()
        while not ctx.should_stop():
            ctx.emit_block(None)
"""


def stamped(index: int) -> np.ndarray:
    frame = np.empty((H, W, 3), np.uint8)
    frame[:] = np.linspace(20, 200, W, dtype=np.uint8)[None, :, None]
    for bit in range(W // BLOCK):
        frame[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if index >> bit & 1 else 0
    return frame


def stamp_of(frame: np.ndarray) -> int:
    bits = [frame[2:6, b * BLOCK + 2 : b * BLOCK + 6].mean() > 127 for b in range(W // BLOCK)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def _write_images(folder, count):
    folder.mkdir()
    for i in range(count):
        frame = stamped(i + 1)
        kind = i % 4
        if kind == 0:
            Image.fromarray(frame).save(folder / f"{i:03d}.png")
        elif kind == 1:
            Image.fromarray(frame).save(folder / f"{i:03d}.jpg", quality=95)
        elif kind == 2:
            np.save(folder / f"{i:03d}.npy", frame)
        else:
            (folder / f"{i:03d}.ppm").write_bytes(b"P6\n# a comment\n%d %d\n255\n" % (W, H) + frame.tobytes())
    (folder / "notes.txt").write_text("not an image: skipped")


@pytest.fixture
def project(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def test_input_folder_round_trip_in_name_order_ends_with_the_input(project):
    _write_images(project / "in", 8)
    args = (
        "--runtime",
        "headless",
        "--output",
        "out",
        "--input",
        "in",
        "--input-fps",
        "25",
        "--format",
        "raw",
    )
    done = run_cli("run", "model.py", *args, cwd=project)
    assert done.returncode == 0, done.stderr
    stats = json.loads((project / "out" / "stats.json").read_text())
    assert stats["session"]["end_reason"] == "input_ended"
    assert stats["input"]["fed"] == 8 and stats["input"]["refused"] == 0 and stats["input"]["ended_session"]
    webcam = stats["session"]["inputs"]["webcam"]
    assert webcam["counters"]["ring"]["frames_in"] == 8
    assert webcam["counters"]["jpeg"]["frames_decoded"] == 2  # the .jpg files went through the decoder
    frames = stats["output"]["frames_written"]
    raw = np.frombuffer((project / "out" / "frames.rgb24").read_bytes(), np.uint8).reshape(frames, H, W, 3)
    indices = [stamp_of(255 - out) for out in raw]
    assert indices == sorted(set(indices)) and set(indices) <= set(range(1, 9))  # in order, no repeats
    assert len(indices) + webcam["drops"] == 8
    for out in raw:
        sent = stamped(stamp_of(255 - out))
        assert np.abs(out[BLOCK:].astype(int) - (255 - sent[BLOCK:].astype(int))).mean() < 4  # inverted


def test_input_errors_say_what_is_accepted(project, tmp_path):
    (project / "clip.mp4").write_bytes(b"\x00" * 64)
    done = run_cli(
        "run", "model.py", "--runtime", "headless", "--output", "out", "--input", "clip.mp4", cwd=project
    )
    assert done.returncode != 0
    assert "--input clip.mp4 is not a folder" in done.stderr and "PyAV is not a dependency" in done.stderr
    (project / "empty").mkdir()
    done = run_cli(
        "run", "model.py", "--runtime", "headless", "--output", "out", "--input", "empty", cwd=project
    )
    assert (
        done.returncode != 0
        and "--input empty holds no images (.jpg, .jpeg, .png, .ppm, .npy)" in done.stderr
    )
    done = run_cli("run", "model.py", "--input", "empty", cwd=project)
    assert done.returncode != 0 and "--input belong to --runtime headless" in done.stderr


def test_input_needs_a_model_with_a_video_input(tmp_path):
    (tmp_path / "model.py").write_text(NO_INPUT_MODEL)
    _write_images(tmp_path / "in", 1)
    done = run_cli(
        "run", "model.py", "--runtime", "headless", "--output", "out", "--input", "in", cwd=tmp_path
    )
    assert done.returncode != 0
    assert "model 'headless-no-input' declares none (add one to its class: webcam = VideoIn())" in done.stderr
