"""The examples run as written: the seed-era docs' model, the torch model's commands, the embedding host."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reactor_engine import CommandError, Engine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _decode(packet):
    with packet:
        assert packet.codec == "jpeg"
        image = Image.open(io.BytesIO(packet.tobytes()))
        image.load()
    return np.asarray(image)


def _first_frames(session, count):
    frames = []
    for packet in session.packets(timeout=10):
        frames.append(_decode(packet))
        if len(frames) == count:
            break
    return frames


def test_the_seed_docs_model_runs_through_engine_and_produces_decodable_frames(capsys):
    with Engine(EXAMPLES / "seed_model" / "model.py", engine_config={"codec": "jpeg"}) as engine:
        assert engine.name == "my-diffusion-model"
        assert engine.model.num_steps == 5
        assert "Weights loaded!" in capsys.readouterr().out
        with engine.session() as session:
            frames = _first_frames(session, 3)
    assert [f.shape for f in frames] == [(512, 512, 3)] * 3
    assert not np.array_equal(frames[0], frames[2])  # the pipeline moves


def test_the_torch_model_reacts_to_commands():
    config = {"width": 64, "height": 48}
    with Engine(
        EXAMPLES / "torch_plasma" / "model.py", model_config=config, engine_config={"codec": "jpeg"}
    ) as engine:
        with engine.session() as session:
            fire = _first_frames(session, 1)[0].reshape(-1, 3).mean(axis=0)
            assert session.send_command("set_palette", {"palette": "ocean"}) == {"palette": "ocean"}
            with pytest.raises(CommandError, match="'palette': Input should be 'fire', 'ocean' or 'forest'"):
                session.send_command("set_palette", {"palette": "lava"})
            for packet in session.packets(timeout=10):  # skip frames made before the command applied
                with packet:
                    if packet.frame_index > 10:
                        break
            ocean = _first_frames(session, 1)[0].reshape(-1, 3).mean(axis=0)
        assert fire[0] > fire[2]  # red-led palette
        assert ocean[2] > ocean[0]  # blue-led palette
        assert engine.model.palette == "fire"  # on_session_end reset it for the next user


def test_the_embedding_example_runs_as_written():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "embed.py")], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "command reply: {'palette': 'ocean'}" in result.stdout
    assert "frame 29: 320x240 jpeg" in result.stdout
