"""Model config layering and type-checked overrides; engine config defaults and strictness."""

from __future__ import annotations

import pytest

from reactor_engine import ConfigError, EngineConfig, load_config
from reactor_engine.config import load_engine_config, load_model_config, split_cli_overrides


@pytest.fixture
def model_yaml(tmp_path):
    path = tmp_path / "default.yaml"
    path.write_text(
        "fps: 30\nscale: 1.5\nprompt: a calm forest\ncompile: true\n"
        "model_kwargs:\n  local_attn_size: 4\nsizes: [1, 2]\ncheckpoint: null\n"
    )
    return path


def test_model_config_is_the_decorator_file(model_yaml):
    cfg = load_model_config(model_yaml)
    assert cfg.fps == 30
    assert cfg.get("missing", 7) == 7


def test_c_file_is_layered_on_top_of_the_decorator_file(model_yaml, tmp_path):
    layer = tmp_path / "local.yaml"
    layer.write_text("fps: 60\nextra: yes\n")
    cfg = load_model_config(model_yaml, layer)
    assert cfg.fps == 60
    assert cfg.prompt == "a calm forest"
    assert cfg.extra is True


def test_overrides_are_parsed_as_yaml_values(model_yaml):
    cfg = load_model_config(
        model_yaml,
        overrides=[
            "fps=60",
            "compile=false",
            "scale=1e-3",
            "sizes=[1,2,3]",
            "model_kwargs.local_attn_size=8",
            "checkpoint=/w/model.safetensors",
            "prompt=123",
        ],
    )
    assert cfg.fps == 60
    assert cfg.compile is False
    assert cfg.scale == pytest.approx(1e-3)
    assert list(cfg.sizes) == [1, 2, 3]
    assert cfg.model_kwargs.local_attn_size == 8
    assert cfg.checkpoint == "/w/model.safetensors"
    assert cfg.prompt == "123"


def test_an_int_is_accepted_for_a_float_key(model_yaml):
    cfg = load_model_config(model_yaml, overrides=["scale=2"])
    assert cfg.scale == 2.0
    assert isinstance(cfg.scale, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("fps=abc", r"--model.fps=abc: 'fps' is int \(currently 30\); got 'abc' \(str\)"),
        ("fps=2.5", r"'fps' is int"),
        ("fps=true", r"'fps' is int"),
        ("compile=1", r"'compile' is bool"),
        ("model_kwargs=3", r"'model_kwargs' is mapping"),
        ("sizes=4", r"'sizes' is list"),
    ],
)
def test_override_of_the_wrong_type_names_the_key(model_yaml, override, message):
    with pytest.raises(ConfigError, match=message):
        load_model_config(model_yaml, overrides=[override])


def test_mapping_overrides_are_type_checked_too(model_yaml):
    assert (
        load_model_config(
            model_yaml, overrides={"model_kwargs": {"local_attn_size": 2}}
        ).model_kwargs.local_attn_size
        == 2
    )
    with pytest.raises(ConfigError, match="model config 'fps': 'fps' is int"):
        load_model_config(model_yaml, overrides={"fps": "fast"})


def test_new_model_keys_are_allowed(model_yaml):
    assert load_model_config(model_yaml, overrides=["brand_new=4"]).brand_new == 4
    assert load_model_config(None, overrides=["k=v"]).k == "v"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prompt.words=2", r"'prompt' is str, not a mapping; it has no key 'words'"),
        ("sizes.0=5", r"'sizes' is list, not a mapping; it has no key '0'"),
        # OmegaConf would read prompt[0]fps as prompt.0 and turn the str into {'0': ''} (a fuzz find)
        ("prompt[0]fps=", r"'prompt\[0\]fps' has a bracket; keys are NAME or NAME.NAME"),
        ("sizes[0]=5", r"a list is set whole \(KEY=\[A, B\]\)"),
        ("model_kwargs..x=1", r"has an empty part; keys are NAME or NAME.NAME"),
    ],
)
def test_a_key_below_a_scalar_or_in_brackets_is_refused(model_yaml, override, message):
    with pytest.raises(ConfigError, match=message):
        load_model_config(model_yaml, overrides=[override])
    key, _, value = override.partition("=")
    with pytest.raises(ConfigError, match=message):  # the Python API's mapping form alike
        load_model_config(model_yaml, overrides={key: value})


def test_space_form_is_an_error_not_none():
    with pytest.raises(
        ConfigError, match=r"--model.fps needs a value: write --model.fps=VALUE \(the space form"
    ):
        split_cli_overrides(["--model.fps", "60"])


def test_cli_overrides_are_split_by_section():
    split = split_cli_overrides(["--model.fps=60", "--engine.codec=raw", "--port", "8080"])
    assert split.model == ["fps=60"]
    assert split.engine == ["codec=raw"]
    assert split.rest == ["--port", "8080"]


def test_missing_config_files_are_named(tmp_path):
    with pytest.raises(
        ConfigError, match=f"@model\\(config=...\\) file {tmp_path / 'nope.yaml'} does not exist"
    ):
        load_model_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="the -c config file"):
        load_model_config(None, tmp_path / "nope.yaml")


def test_a_config_file_holding_a_list_is_rejected(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="holds a list; expected a mapping"):
        load_model_config(path)


def test_load_config_reads_a_model_class_config(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text("steps: 5\n")
    (tmp_path / "cfg_model.py").write_text(
        "from reactor_engine import VideoModel, model\n"
        "@model(name='cfg-model', config='configs/default.yaml')\n"
        "class CfgModel(VideoModel):\n"
        "    def start_session(self):\n"
        "        pass\n"
    )
    assert load_config(tmp_path / "cfg_model.py", overrides=["steps=4"]).steps == 4


def test_engine_defaults_come_from_the_shipped_file():
    cfg = load_engine_config()
    assert isinstance(cfg, EngineConfig)
    assert cfg.ring_slots == 4
    assert cfg.codec == "jpeg"
    assert cfg.fps == 0.0
    assert cfg.encoder_scheduling == "batch"
    assert cfg.jpeg_threads == 2


def test_engine_overrides_are_checked():
    cfg = load_engine_config(["codec=raw", "fps=29.97", "subsampling=444", "weights_dir=/w"])
    assert (cfg.codec, cfg.fps, cfg.subsampling, cfg.weights_dir) == ("raw", 29.97, "444", "/w")
    assert load_engine_config({"max_width": 64, "max_height": 64, "width": 32, "height": 32}).max_width == 64


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ring_slot=4", "unknown engine setting 'ring_slot'; known settings: max_width, "),
        ("codec=h264", r"codec: Input should be 'jpeg', 'raw', 'i420' or 'vp8' \(got 'h264'\)"),
        ("ring_slots=1", r"ring_slots: Input should be greater than or equal to 2"),
        ("ring_slots=many", r"--engine.ring_slots=many: 'ring_slots' is int"),
        ("width=4000", r"width x height 4000x720 exceeds max_width x max_height 1280x720"),
        ("encoder_scheduling=fifo", r"encoder_scheduling: Input should be 'batch' or 'normal' \(got 'fifo'"),
        ("jpeg_threads=0", r"jpeg_threads: Input should be greater than or equal to 1"),
        ("jpeg_threads=17", r"jpeg_threads: Input should be less than or equal to 16"),
    ],
)
def test_bad_engine_settings_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_engine_config([override])
