"""@model: the name rule, the base-class rule, config paths, weights folders and model discovery."""

from __future__ import annotations

import textwrap

import pytest

from reactor_engine import InvalidArgumentError, ModelError, VideoModel, WeightsError, load_model_class, model
from reactor_engine.model import model_spec
from reactor_engine.tracks import VideoOut


class _Base(VideoModel):
    def start_session(self):
        pass


@pytest.mark.parametrize("name", ["my-model", "world-sim-v2", "a", "x1-2-3"])
def test_valid_names_are_accepted(name):
    assert model_spec(model(name=name)(type("M", (_Base,), {}))).name == name


@pytest.mark.parametrize(
    "name",
    ["Bad Name_With Spaces!", "My-Model", "my_model", "-lead", "trail-", "double--hyphen", "", "a" * 129],
)
def test_invalid_names_fail_at_decoration_with_the_rule(name):
    with pytest.raises(ModelError, match="lowercase letters and digits in words joined by single hyphens"):
        model(name=name)
    assert issubclass(ModelError, TypeError)


def test_decorated_class_must_subclass_video_model():
    class NotAModel:
        pass

    with pytest.raises(TypeError, match=r"decorates a subclass of VideoModel; got .*NotAModel"):
        model(name="not-a-model")(NotAModel)


def test_model_without_start_session_fails_at_decoration():
    class Incomplete(VideoModel):
        pass

    with pytest.raises(ModelError, match="must define start_session"):
        model(name="incomplete")(Incomplete)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


MODEL_FILE = """
    from reactor_engine import VideoModel, model

    @model(name="{name}", config="configs/default.yaml", weights=["base"])
    class {cls}(VideoModel):
        def __init__(self, config):
            self.config = config

        def start_session(self):
            pass
"""


def test_config_path_is_relative_to_the_model_file(tmp_path, monkeypatch):
    _write(tmp_path / "proj" / "m.py", MODEL_FILE.format(name="rel-config", cls="Rel"))
    monkeypatch.chdir(tmp_path)
    cls = load_model_class(tmp_path / "proj" / "m.py")
    assert model_spec(cls).config_path == tmp_path.resolve() / "proj" / "configs" / "default.yaml"


def test_discovery_from_a_file_a_folder_and_module_class(tmp_path, monkeypatch):
    _write(tmp_path / "pkg_models" / "__init__.py", "")
    _write(tmp_path / "pkg_models" / "one.py", MODEL_FILE.format(name="found-one", cls="FoundOne"))
    _write(tmp_path / "pkg_models" / "model.py", MODEL_FILE.format(name="the-entry", cls="Entry"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert model_spec(load_model_class(tmp_path / "pkg_models" / "one.py")).name == "found-one"
    assert model_spec(load_model_class(tmp_path / "pkg_models")).name == "the-entry"
    assert model_spec(load_model_class("pkg_models.one:FoundOne")).name == "found-one"
    assert model_spec(load_model_class("pkg_models.one")).name == "found-one"


def test_a_folder_target_imports_its_model_py_and_nothing_else(tmp_path):
    marker = tmp_path / "stray-ran"
    _write(tmp_path / "proj" / "model.py", MODEL_FILE.format(name="folder-entry", cls="Entry"))
    _write(tmp_path / "proj" / "stray.py", f"open({str(marker)!r}, 'w').close()\n")
    assert model_spec(load_model_class(tmp_path / "proj")).name == "folder-entry"
    assert not marker.exists()
    _write(tmp_path / "nomodel" / "script.py", f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ModelError, match=r"has no model\.py; a folder target loads its model\.py"):
        load_model_class(tmp_path / "nomodel")
    assert not marker.exists()


def test_a_file_with_two_models_takes_a_path_and_class(tmp_path, monkeypatch):
    two = _write(tmp_path / "two.py", MODEL_FILE.format(name="model-a", cls="A"))
    two.write_text(two.read_text() + textwrap.dedent(MODEL_FILE.format(name="model-b", cls="B")))
    monkeypatch.chdir(tmp_path)
    assert model_spec(load_model_class("two.py:B")).name == "model-b"
    assert model_spec(load_model_class(f"{two}:A")).name == "model-a"
    with pytest.raises(ModelError, match=r"multiple @model classes found in .*pick one with .*two\.py:Class"):
        load_model_class(two)
    with pytest.raises(ModelError, match="has no attribute 'C'"):
        load_model_class("two.py:C")
    with pytest.raises(ModelError, match=r"model file missing\.py does not exist"):
        load_model_class("missing.py:A")


def test_a_mistyped_folder_is_reported_as_missing_not_as_a_module(tmp_path):
    with pytest.raises(ModelError, match=r"is not a folder, a \.py file or module:Class"):
        load_model_class(str(tmp_path / "no-such-folder"))


def test_discovery_errors_name_what_was_found(tmp_path):
    _write(tmp_path / "empty" / "model.py", "x = 1\n")
    with pytest.raises(ModelError, match="no @model decorated class found in"):
        load_model_class(tmp_path / "empty")
    two = _write(tmp_path / "two" / "model.py", MODEL_FILE.format(name="model-a", cls="A"))
    two.write_text(two.read_text() + textwrap.dedent(MODEL_FILE.format(name="model-b", cls="B")))
    with pytest.raises(
        ModelError, match=r"multiple @model classes found in .*A \('model-a'\), B \('model-b'\)"
    ):
        load_model_class(tmp_path / "two")
    with pytest.raises(ModelError, match="does not exist"):
        load_model_class(tmp_path / "missing.py")
    with pytest.raises(ModelError, match="cannot import 'no_such_module_xyz'"):
        load_model_class("no_such_module_xyz:Model")
    with pytest.raises(ModelError, match="has no attribute 'Nope'"):
        load_model_class("reactor_engine:Nope")
    with pytest.raises(ModelError, match="not decorated with @model"):
        load_model_class("reactor_engine:VideoModel")


def test_weights_resolve_under_the_weights_dir(tmp_path, monkeypatch):
    cls = load_model_class(_write(tmp_path / "w" / "m.py", MODEL_FILE.format(name="weighted", cls="W")))
    monkeypatch.setenv("REACTOR_WEIGHTS_DIR", str(tmp_path / "store"))
    (tmp_path / "store" / "base").mkdir(parents=True)
    assert cls.weights("base") == tmp_path / "store" / "base"


def test_missing_weights_folder_names_the_folder_looked_in(tmp_path, monkeypatch):
    cls = load_model_class(_write(tmp_path / "w2" / "m.py", MODEL_FILE.format(name="weighted-two", cls="W2")))
    monkeypatch.delenv("REACTOR_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError, match=f"looked in {tmp_path.resolve() / 'w2' / 'weights' / 'base'}"):
        cls.weights("base")


def test_undeclared_weights_name_is_a_value_error(tmp_path):
    cls = load_model_class(
        _write(tmp_path / "w3" / "m.py", MODEL_FILE.format(name="weighted-three", cls="W3"))
    )
    with pytest.raises(InvalidArgumentError, match=r"weights 'other' are not declared .* lists: 'base'"):
        cls.weights("other")
    assert issubclass(InvalidArgumentError, ValueError)


def test_a_model_without_tracks_gets_the_default_main_video():
    cls = model(name="no-tracks")(type("NoTracks", (_Base,), {}))
    spec = model_spec(cls)
    assert list(spec.tracks) == ["main_video"]
    assert spec.default_track == "main_video"
    assert isinstance(cls.main_video, VideoOut)


def test_declared_tracks_and_emission_fps():
    class Two(_Base):
        preview = VideoOut(rate=15)
        main = VideoOut(default=True, width=64, height=48)

    spec = model_spec(model(name="two-tracks")(Two))
    assert list(spec.tracks) == ["preview", "main"]
    assert spec.default_track == "main"
    assert spec.emission_fps is None
    assert Two.capabilities()["tracks"][0] == {"name": "preview", "kind": "video", "direction": "recvonly"}

    class Fixed(_Base):
        emission_fps = 24

    assert model_spec(model(name="fixed")(Fixed)).emission_fps == 24.0


def test_several_default_tracks_are_rejected():
    class Both(_Base):
        a = VideoOut(default=True)
        b = VideoOut(default=True)

    with pytest.raises(ModelError, match="several tracks default=True: a, b"):
        model(name="both")(Both)


def test_syntax_and_import_errors_in_a_model_file_are_one_line_model_errors(tmp_path):
    bad = _write(tmp_path / "syntax" / "model.py", "def broken(:\n    pass\n")
    with pytest.raises(ModelError, match=r"syntax error in .*model\.py:1"):
        load_model_class(bad)
    missing = _write(tmp_path / "imports" / "model.py", "import os\nimport no_such_package_xyz\n")
    with pytest.raises(
        ModelError, match=r"model\.py:2 cannot be imported: module 'no_such_package_xyz' is not installed"
    ):
        load_model_class(missing)
