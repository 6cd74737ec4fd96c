"""Seed-era model files that import reactor_runtime load unmodified, even beside the real package."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

from reactor_engine import Engine, VideoModel, load_model_class
from reactor_engine.model import model_spec

SEED_MODEL = """
    from reactor_runtime import VideoModel, command, get_ctx, model
    from reactor_runtime.tracks import VideoOut

    @model(name="seed-compat", config="configs/default.yaml")
    class SeedCompat(VideoModel):
        main_video = VideoOut(default=True)

        def __init__(self, config):
            self.steps = config.get("num_steps", 5)

        @command("set_prompt", description="Change the prompt")
        def set_prompt(self, prompt: str):
            self.prompt = prompt

        def start_session(self):
            while not get_ctx().should_stop():
                get_ctx().get_track().emit(None)
"""


def _forget_reactor_runtime(monkeypatch):
    for name in [m for m in sys.modules if m == "reactor_runtime" or m.startswith("reactor_runtime.")]:
        monkeypatch.delitem(sys.modules, name)


def test_a_seed_model_importing_reactor_runtime_loads(tmp_path, monkeypatch):
    _forget_reactor_runtime(monkeypatch)
    path = tmp_path / "seed_model.py"
    path.write_text(textwrap.dedent(SEED_MODEL))
    cls = load_model_class(path)
    assert issubclass(cls, VideoModel)
    assert model_spec(cls).name == "seed-compat"
    assert list(model_spec(cls).commands) == ["set_prompt"]
    import reactor_runtime

    assert reactor_runtime.VideoModel is VideoModel


# What reactor-runtime 3.x looks like to a seed-era model: a real package without VideoModel or model.
REAL_3X = """
    class Runtime:
        pass
"""


def test_an_installed_reactor_runtime_is_shadowed_with_a_notice(tmp_path, caplog, monkeypatch):
    """A stand-in for reactor-runtime 3.10 (which needs Python >= 3.12) shows the same behaviour."""
    import reactor_engine._compat as compat

    site = tmp_path / "site"
    (site / "reactor_runtime").mkdir(parents=True)
    (site / "reactor_runtime" / "__init__.py").write_text(textwrap.dedent(REAL_3X))
    monkeypatch.syspath_prepend(str(site))
    _forget_reactor_runtime(monkeypatch)
    if compat._finder in sys.meta_path:  # an earlier test loaded a model: start as a fresh process would
        monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if f is not compat._finder])
    monkeypatch.setattr(compat, "_announced", False)
    import reactor_runtime as real

    assert not hasattr(real, "VideoModel")  # the trap: the real 3.x package has no seed-era API
    path = tmp_path / "seed_model.py"
    path.write_text(textwrap.dedent(SEED_MODEL))
    with caplog.at_level(logging.WARNING, logger="reactor_engine"):
        cls = load_model_class(path)
    assert model_spec(cls).name == "seed-compat"
    notices = [
        r.getMessage() for r in caplog.records if "reactor_runtime package is shadowed" in r.getMessage()
    ]
    assert len(notices) == 1
    import reactor_runtime

    assert reactor_runtime.VideoModel is VideoModel
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if f is not compat._finder])


def test_the_seed_docs_model_importing_reactor_runtime_runs_unmodified(tmp_path):
    seed = Path(__file__).resolve().parent.parent / "examples" / "seed_model"
    source = (seed / "model.py").read_text()
    original = source.replace("from reactor_engine import", "from reactor_runtime import")
    assert "from reactor_runtime import VideoModel, get_ctx, model" in original
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text((seed / "configs" / "default.yaml").read_text())
    (tmp_path / "model.py").write_text(original)
    with (
        Engine(
            tmp_path / "model.py", model_config={"resolution": 64}, engine_config={"codec": "raw"}
        ) as engine,
        engine.session() as session,
    ):
        packet = session.next_packet(timeout=10)
        with packet:
            assert (packet.width, packet.height, packet.codec) == (64, 64, "raw")
