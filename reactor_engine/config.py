"""Model and engine configuration: YAML files layered with OmegaConf, overrides type-checked.

- Model config: the ``@model(config=...)`` file, then a ``-c FILE`` layered on top, then
  ``--model.KEY=VALUE`` overrides parsed as YAML values and checked against the type of a key already
  present (new keys are allowed: a model's schema is its own). The result is a ``DictConfig``.
- Engine config: ``reactor_engine/configs/default.yaml`` shipped in the package, then
  ``--engine.KEY=VALUE``; unknown keys and wrong types are errors. The result is an ``EngineConfig``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped, unused-ignore]  # types-PyYAML is optional
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reactor_engine.errors import ConfigError

__all__ = [
    "DEFAULT_ENGINE_CONFIG",
    "CliOverrides",
    "EngineConfig",
    "load_config",
    "load_engine_config",
    "load_model_config",
    "split_cli_overrides",
]

_log = logging.getLogger("reactor_engine.config")

DEFAULT_ENGINE_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"

Overrides = Mapping[str, Any] | Sequence[str] | None
Codec = Literal["jpeg", "raw", "i420", "vp8"]
_VP8_MAX = 16383  # the VP8 bitstream's largest width and height
_ABSENT = object()


class EngineConfig(BaseModel):
    """The engine's settings; see ``configs/default.yaml`` for what each one does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_width: int = Field(ge=2, le=16384)
    max_height: int = Field(ge=2, le=16384)
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    ring_slots: int = Field(ge=2, le=256)
    ring_policy: Literal["block", "drop_oldest", "drop_newest"]
    emit_timeout: float = Field(gt=0)
    codec: Codec
    extra_codecs: list[Codec]
    quality: int = Field(ge=1, le=100)
    subsampling: Literal["420", "422", "444", "gray"]
    jpeg_threads: int = Field(ge=1, le=16)
    bitrate: int = Field(ge=10_000, le=1_000_000_000)
    vp8_speed: int = Field(ge=-16, le=16)
    vp8_threads: int = Field(ge=1, le=16)
    keyframe_interval: int = Field(ge=0)
    packet_queue: int = Field(ge=1, le=1024)
    encoder_scheduling: Literal["batch", "normal"]
    fps: float = Field(ge=0)
    max_fps: float = Field(ge=0)
    stop_grace: float = Field(gt=0)
    max_session_duration: float = Field(ge=0)
    flush_timeout: float = Field(gt=0)
    message_queue: int = Field(ge=1)
    orphan_timeout: float = Field(ge=0)
    trim_heap: bool
    weights_dir: str | None = None
    input_max_width: int = Field(ge=2, le=16384)
    input_max_height: int = Field(ge=2, le=16384)
    input_slots: int = Field(ge=2, le=64)
    input_queue: int = Field(ge=1, le=1024)
    input_max_bytes: int = Field(ge=1024, le=256 << 20)
    audio_rate: int = Field(ge=8000, le=384000)
    audio_buffer_ms: int = Field(ge=40, le=60000)

    def model_post_init(self, __context: Any) -> None:
        if self.width > self.max_width or self.height > self.max_height:
            raise ConfigError(
                f"engine config: width x height {self.width}x{self.height} exceeds "
                f"max_width x max_height {self.max_width}x{self.max_height}"
            )
        if self.codec in self.extra_codecs:
            raise ConfigError(
                f"engine config: extra_codecs {self.extra_codecs} lists the primary codec {self.codec!r}; "
                f"it already has an output"
            )
        if len(set(self.extra_codecs)) != len(self.extra_codecs):
            raise ConfigError(f"engine config: extra_codecs {self.extra_codecs} names a codec twice")
        if "vp8" in (self.codec, *self.extra_codecs) and max(self.max_width, self.max_height) > _VP8_MAX:
            raise ConfigError(
                f"engine config: VP8 frames are at most {_VP8_MAX}x{_VP8_MAX}; "
                f"max_width x max_height is {self.max_width}x{self.max_height}"
            )


@dataclass
class CliOverrides:
    """Command-line arguments split into ``--model.*`` and ``--engine.*`` overrides and the rest."""

    model: list[str] = field(default_factory=list)
    engine: list[str] = field(default_factory=list)
    rest: list[str] = field(default_factory=list)


def split_cli_overrides(argv: Sequence[str]) -> CliOverrides:
    """Take ``--model.KEY=VALUE`` and ``--engine.KEY=VALUE`` out of ``argv`` (as ``KEY=VALUE``).

    The space form ``--model.fps 60`` is an error, not ``fps=None`` as in the seed-era CLI.
    """
    out = CliOverrides()
    for arg in argv:
        for prefix, bucket in (("--model.", out.model), ("--engine.", out.engine)):
            if arg.startswith(prefix):
                key, eq, value = arg[len(prefix) :].partition("=")
                if not eq:
                    raise ConfigError(
                        f"{arg} needs a value: write {prefix}{key}=VALUE "
                        f"(the space form '{prefix}{key} VALUE' is not accepted)"
                    )
                if not key:
                    raise ConfigError(f"{arg} names no key: write {prefix}KEY=VALUE")
                bucket.append(f"{key}={value}")
                break
        else:
            out.rest.append(arg)
    return out


# -- model config ------------------------------------------------------------------------------------


def load_model_config(
    config_path: str | os.PathLike[str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Overrides = None,
) -> DictConfig:
    """Layer the decorator's file, a ``-c`` file and overrides into the ``DictConfig`` a model gets."""
    config = OmegaConf.create({})
    if config_path is not None:
        config = _load_yaml(Path(config_path), "the model's @model(config=...) file")
    if config_file is not None:
        config = _merge(config, _load_yaml(Path(config_file), "the -c config file"))
    return apply_overrides(config, overrides, section="model", allow_new_keys=True)


def load_config(
    model: Any = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Overrides = None,
) -> DictConfig:
    """The model config of ``model`` (a ``@model`` class or a discovery target) as it would receive it."""
    config_path = None
    if model is not None:
        from reactor_engine.model import load_model_class, model_spec

        config_path = model_spec(load_model_class(model)).config_path
    return load_model_config(config_path, config_file, overrides)


def _load_yaml(path: Path, what: str) -> DictConfig:
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        loaded = OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError, OSError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    if isinstance(loaded, ListConfig):
        raise ConfigError(f"{what} {path} holds a list; expected a mapping of KEY: VALUE")
    return loaded


def _merge(base: DictConfig, layer: DictConfig) -> DictConfig:
    merged = OmegaConf.merge(base, layer)
    assert isinstance(merged, DictConfig)
    return merged


# -- overrides ---------------------------------------------------------------------------------------


def apply_overrides(
    config: DictConfig, overrides: Overrides, *, section: str, allow_new_keys: bool
) -> DictConfig:
    """Set each override on ``config``, checked against the type of the value it replaces.

    ``overrides`` is ``["KEY=VALUE", ...]`` (values parsed as YAML, keys dotted for nesting) or a
    mapping (nested mappings or dotted keys). ``section`` (``model``/``engine``) names the flag in errors.
    """
    if overrides is None:
        return config
    items: list[tuple[str, Any, str | None]] = []
    if isinstance(overrides, Mapping):
        for key, value in _flatten(overrides):
            items.append((key, value, None))
    elif isinstance(overrides, (str, bytes)):
        raise ConfigError(
            f"{section} overrides must be a list of 'KEY=VALUE' strings or a mapping; got a str"
        )
    else:
        for entry in overrides:
            key, eq, text = str(entry).partition("=")
            if not eq or not key:
                raise ConfigError(f"--{section}.{entry} is not KEY=VALUE")
            items.append((key, _parse_value(section, key, text), text))
    return _apply(config, items, section, allow_new_keys)


_MAX_DEPTH = 32  # levels of an override: its key's parts plus its value's nesting (configs nest a few)


def _nesting(value: Any) -> int:
    """How deep mappings and lists nest in ``value`` (0 for a scalar), without recursing."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (DictConfig, ListConfig)):  # already built by OmegaConf: not walked here
            deepest = max(deepest, depth + 1)
        elif isinstance(item, (Mapping, list, tuple)):
            deepest = max(deepest, depth + 1)
            if depth + 1 <= _MAX_DEPTH:  # deeper is refused anyway: stop looking
                children = item.values() if isinstance(item, Mapping) else item
                stack.extend((child, depth + 1) for child in children)
    return deepest


def _apply(
    config: DictConfig, items: list[tuple[str, Any, str | None]], section: str, allow_new_keys: bool
) -> DictConfig:
    config = config.copy()
    for key, value, text in items:
        flag = f"--{section}.{key}={text}" if text is not None else f"{section} config {key!r}"
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"{flag}: {key!r} has an empty part; keys are NAME or NAME.NAME...")
        if "[" in key or "]" in key:  # OmegaConf reads a[0]b as a.0 (dropping b): not taken at all
            raise ConfigError(
                f"{flag}: {key!r} has a bracket; keys are NAME or NAME.NAME..., and a list is set "
                "whole (KEY=[A, B])"
            )
        # OmegaConf recurses per level, so a deep key or value would hit Python's recursion limit.
        if len(parts) + _nesting(value) > _MAX_DEPTH:
            raise ConfigError(
                f"{flag}: nested {len(parts) + _nesting(value)} levels deep (key and value); "
                f"at most {_MAX_DEPTH} are taken"
            )
        try:
            current = OmegaConf.select(
                config, key, default=_ABSENT, throw_on_missing=False, throw_on_resolution_failure=False
            )
            for depth in range(1, len(parts)):  # a key under a scalar would turn it into a mapping
                parent = OmegaConf.select(
                    config, ".".join(parts[:depth]), default=_ABSENT, throw_on_resolution_failure=False
                )
                if parent is not _ABSENT and not isinstance(parent, (DictConfig, Mapping)):
                    where = ".".join(parts[:depth])
                    raise ConfigError(
                        f"{flag}: {where!r} is {_type_name(parent)}, not a mapping; "
                        f"it has no key {parts[depth]!r}"
                    )
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{flag}: {exc}") from None
        if current is _ABSENT:
            if not allow_new_keys:
                known = ", ".join(str(k) for k in config)
                raise ConfigError(f"{flag}: unknown {section} setting {key!r}; known settings: {known}")
            if len(config) > 0:
                _log.warning("%s sets %r, which the %s config file does not have", flag, key, section)
        else:
            value = _checked(flag, key, current, value, text)
        try:
            OmegaConf.update(config, key, value, merge=True, force_add=True)
            OmegaConf.select(config, key)  # an interpolation (${...}) must resolve now, not at first use
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{flag}: {exc}") from exc
    return config


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, dotted + "."))
        else:
            out.append((dotted, value))
    return out


# YAML 1.1 (PyYAML) reads "1e-3" as a string; OmegaConf, and so the seed-era CLI, reads it as a float.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class _NoAliasLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no stubs here
    """YAML for one override value: anchors and aliases refused (``&a [*a]`` recurses, and nested
    aliases expand exponentially)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases (*name) are not accepted in an override")
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise yaml.YAMLError("YAML anchors (&name) are not accepted in an override")
        return super().compose_node(parent, index)


def _parse_value(section: str, key: str, text: str) -> Any:
    flag = f"--{section}.{key}={_short(text)}"
    if _EXPONENT_FLOAT.match(text.strip()):
        try:
            return float(text)
        except OverflowError:
            raise ConfigError(f"{flag}: the number is out of range") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{flag}: not a YAML value ({exc})") from None
    except (ValueError, RecursionError, OverflowError) as exc:  # a bad tagged scalar, nesting too deep
        raise ConfigError(f"{flag}: not a YAML value ({type(exc).__name__})") from None


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _shown(value: Any) -> str:
    try:
        return _short(repr(value))
    except (ValueError, RecursionError):  # an int past Python's digit limit, a value nested too deep
        return f"a {type(value).__name__} too large to show"


def _type_name(value: Any) -> str:
    if isinstance(value, (DictConfig, Mapping)):
        return "mapping"
    if isinstance(value, (ListConfig, list, tuple)):
        return "list"
    return type(value).__name__


def _checked(flag: str, key: str, current: Any, value: Any, text: str | None) -> Any:
    """``value`` converted to ``current``'s type where that is lossless; ``ConfigError`` otherwise."""
    if current is None or value is None:
        return value
    ok: bool
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:
                raise ConfigError(
                    f"{flag}: {key!r} is a float; {_shown(value)} is out of its range"
                ) from None
    elif isinstance(current, str):
        if text is not None and not isinstance(value, str) and not isinstance(value, (list, dict)):
            value = text  # a str setting given 123 on the command line means the text "123"
        ok = isinstance(value, str)
    elif isinstance(current, (ListConfig, list)):
        ok = isinstance(value, (list, tuple, ListConfig))
    elif isinstance(current, (DictConfig, Mapping)):
        ok = isinstance(value, (Mapping, DictConfig))
    else:
        ok = True
    if not ok:
        raise ConfigError(
            f"{flag}: {key!r} is {_type_name(current)} (currently {_shown(current)}); "
            f"got {_shown(value)} ({_type_name(value)})"
        )
    return value


# -- engine config -----------------------------------------------------------------------------------


def load_engine_config(overrides: Overrides | EngineConfig = None) -> EngineConfig:
    """The shipped engine defaults with ``overrides`` applied; unknown keys and bad values are errors."""
    if isinstance(overrides, EngineConfig):
        return overrides
    base = _load_yaml(DEFAULT_ENGINE_CONFIG, "the engine defaults")
    config = apply_overrides(base, overrides, section="engine", allow_new_keys=False)
    try:
        values = OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"engine config: {exc}") from None
    assert isinstance(values, dict)
    try:
        return EngineConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {_shown(err.get('input'))})"
            for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"engine config: {problems}") from None
