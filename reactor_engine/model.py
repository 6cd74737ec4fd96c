"""``VideoModel``, the ``@model`` decorator, model discovery, and weights folders.

``@model`` checks everything it can at decoration time (name rule, base class, commands, tracks) and
raises ``ModelError`` (a ``TypeError``) there, so a malformed model fails on import, not on the first
user. What it learns is kept on the class as a ``ModelSpec``; there is no process-global registry.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reactor_engine._compat import install_seed_api
from reactor_engine.commands import CommandSpec, collect_commands
from reactor_engine.errors import CommandError, InvalidArgumentError, ModelError, WeightsError
from reactor_engine.media import AudioIn, AudioOut, MediaBundle, MediaTrack, VideoIn
from reactor_engine.tracks import VideoOut

__all__ = [
    "ModelSpec",
    "VideoModel",
    "get_weights_path",
    "load_model_class",
    "model",
    "model_spec",
]

NAME_RULE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_NAME_LENGTH = 128
WEIGHTS_ENV = "REACTOR_WEIGHTS_DIR"

_SPEC_ATTR = "__reactor_model__"
# The file a folder target loads: one rule, so nothing else in the folder is imported.
MODEL_FILE = "model.py"

M = TypeVar("M", bound=type)


@dataclass(frozen=True)
class ModelSpec:
    """What ``@model`` learned about a class."""

    name: str
    cls: type[VideoModel]
    config_path: Path | None
    weights: tuple[str, ...]
    metadata: Mapping[str, Any]
    commands: Mapping[str, CommandSpec]
    tracks: Mapping[str, VideoOut]
    default_track: str
    emission_fps: float | None
    source_dir: Path | None = field(default=None)
    # Every declared track (outputs, inputs, audio) in declaration order: the capabilities' order.
    declared: Mapping[str, VideoOut | MediaTrack] = field(default_factory=dict)

    @property
    def inputs(self) -> dict[str, VideoIn | AudioIn]:
        """The ``VideoIn`` and ``AudioIn`` declarations, in declaration order."""
        return {n: t for n, t in self.declared.items() if isinstance(t, (VideoIn, AudioIn))}

    @property
    def audio_outputs(self) -> dict[str, AudioOut]:
        return {n: t for n, t in self.declared.items() if isinstance(t, AudioOut)}


class VideoModel(ABC):
    """Base class of a real-time video model.

    - ``__init__(self, config)`` runs once per engine: load weights here. ``config`` is a ``DictConfig``.
    - ``start_session(self)`` runs once per session on the session thread; the session ends when it
      returns. Loop ``while not get_ctx().should_stop():`` and emit frames.
    - ``on_session_end(self, reason)`` (optional) runs after every session, also after a crash:
      reset per-user state here. ``reason`` is one of ``stopped, returned, max_duration, shutdown, error``
      or a runtime's own (``client_left``).
    """

    def __init__(self, config: Any = None) -> None:  # noqa: B027 - optional, like on_session_end
        """Once per engine, with the model's ``DictConfig``; a model without weights may skip it."""

    @abstractmethod
    def start_session(self) -> None:
        """The generation loop of one session."""

    def on_session_end(self, reason: str) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called on the session thread after ``start_session`` returns or raises."""

    def on_media(self, bundle: MediaBundle) -> None:  # noqa: B027 - an optional hook, empty by default
        """Seed-era (1.6+) hook: new input arrived on the model's ``VideoIn``/``AudioIn`` tracks.

        Called on the session thread at a poll point (``should_stop()``, ``emit``, ``ctx.wait()``,
        ``read``), never on a network thread, and only when a model overrides it; it takes the newest
        frame of each input as ``latest()`` does (so a model reading ``mode="fifo"`` should not define it).
        """

    # -- seed-era class API --------------------------------------------------------------------------

    @classmethod
    def commands(cls) -> list[dict[str, Any]]:
        """The 1.7.5 shape: ``[{"name", "description", "schema"}]``."""
        return [spec.describe() for spec in model_spec(cls).commands.values()]

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        """The 1.7.5 capabilities: ``{"protocol_version", "tracks", "commands", "emission_fps"}``."""
        spec = model_spec(cls)
        return {
            "protocol_version": "1.0",
            "tracks": [track.describe() for track in spec.declared.values()],
            "commands": cls.commands(),
            "emission_fps": spec.emission_fps,
        }

    @classmethod
    def command_schema(cls) -> dict[str, Any]:
        """JSON Schema of every command's arguments, keyed by command name."""
        return {name: cmd.json_schema() for name, cmd in model_spec(cls).commands.items()}

    @classmethod
    def get_tracks(cls) -> list[dict[str, str]]:
        return [track.describe() for track in model_spec(cls).declared.values()]

    @classmethod
    def weights(cls, name: str) -> Path:
        """The folder of the weights ``name`` declared in ``@model(weights=[...])``.

        Looked up under ``$REACTOR_WEIGHTS_DIR`` or the engine's ``weights_dir``, else ``weights/`` next
        to the model file. Raises ``InvalidArgumentError`` (a ``ValueError``) for an undeclared name and
        ``WeightsError`` naming the folder looked in when it is missing.
        """
        spec = model_spec(cls)
        if name not in spec.weights:
            declared = ", ".join(repr(w) for w in spec.weights) or "none"
            raise InvalidArgumentError(
                f"weights {name!r} are not declared by model '{spec.name}'; "
                f"@model(weights=[...]) lists: {declared}"
            )
        root = get_weights_path(cls)
        folder = root / name
        if not folder.exists():
            raise WeightsError(f"weights {name!r} of model '{spec.name}' not found: looked in {folder}")
        return folder

    def send(self, cmd_name: str, args: Mapping[str, Any] | None = None) -> Any:
        """Seed-era direct dispatch: validate and run a command here, on the calling thread."""
        spec = model_spec(type(self)).commands.get(cmd_name)
        if spec is None:
            raise CommandError(f"Unknown command: {cmd_name}")
        return spec.handler(self, **spec.validate(args))


# The engine's ``weights_dir`` setting, set while an engine loads its model (engine thread).
_engine_weights_dir: Path | None = None


def set_engine_weights_dir(path: Path | None) -> None:
    global _engine_weights_dir
    _engine_weights_dir = path


def get_weights_path(cls: type | None = None) -> Path:
    """The root folder of model weights: the engine's ``weights_dir``, else ``$REACTOR_WEIGHTS_DIR``, else
    ``weights/`` next to the model's file (``cls``), else ``./weights``."""
    if _engine_weights_dir is not None:
        return _engine_weights_dir
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    spec = getattr(cls, _SPEC_ATTR, None) if cls is not None else None
    if isinstance(spec, ModelSpec) and spec.source_dir is not None:
        return spec.source_dir / "weights"
    return Path.cwd() / "weights"


def model(
    name: str,
    config: str | os.PathLike[str] | None = None,
    weights: Sequence[str] | None = None,
    **metadata: Any,
) -> Callable[[M], M]:
    """Declare a ``VideoModel`` subclass as a servable model: ``@model(name="my-model", config=...)``.

    ``name`` follows ``^[a-z0-9]+(-[a-z0-9]+)*$`` (lowercase words joined by single hyphens, at most
    128 characters). ``config`` is a YAML file, relative to the model's file. ``weights`` names the
    weight folders ``VideoModel.weights(name)`` resolves. Extra keyword arguments are kept as metadata.
    """
    if not isinstance(name, str) or not NAME_RULE.match(name) or len(name) > MAX_NAME_LENGTH:
        raise ModelError(
            f"model name {name!r} is not valid: use lowercase letters and digits in words joined by "
            f"single hyphens (e.g. 'my-model-v2'), at most {MAX_NAME_LENGTH} characters"
        )
    weight_names = tuple(weights or ())
    for weight in weight_names:
        if not isinstance(weight, str) or not weight or "/" in weight or weight in (".", ".."):
            raise ModelError(f"@model(weights=...) takes folder names; got {weight!r}")

    def decorate(cls: M) -> M:
        if not isinstance(cls, type) or not issubclass(cls, VideoModel):
            what = cls.__qualname__ if isinstance(cls, type) else repr(cls)
            raise ModelError(f"@model({name!r}) decorates a subclass of VideoModel; got {what}")
        if inspect.isabstract(cls):
            raise ModelError(f"@model({name!r}): {cls.__qualname__} must define start_session(self)")
        source_dir = _source_dir(cls)
        config_path: Path | None = None
        if config is not None:
            config_path = Path(config).expanduser()
            if not config_path.is_absolute():
                config_path = (source_dir or Path.cwd()) / config_path
        declared, tracks, default_track = _collect_tracks(cls)
        spec = ModelSpec(
            name=name,
            cls=cls,
            config_path=config_path,
            weights=weight_names,
            metadata=dict(metadata),
            commands=collect_commands(cls),
            tracks=tracks,
            default_track=default_track,
            emission_fps=_emission_fps(cls, tracks[default_track]),
            source_dir=source_dir,
            declared=declared,
        )
        setattr(cls, _SPEC_ATTR, spec)
        return cls

    return decorate


def model_spec(cls: type) -> ModelSpec:
    """The ``ModelSpec`` of a class decorated with ``@model`` (``ModelError`` if it is not)."""
    spec = cls.__dict__.get(_SPEC_ATTR) if isinstance(cls, type) else None
    if not isinstance(spec, ModelSpec):
        raise ModelError(f"{getattr(cls, '__qualname__', cls)!r} is not decorated with @model(name=...)")
    return spec


def _source_dir(cls: type) -> Path | None:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    return Path(file).resolve().parent if file else None


def _collect_tracks(cls: type) -> tuple[dict[str, VideoOut | MediaTrack], dict[str, VideoOut], str]:
    """Every declared track in declaration order, the ``VideoOut`` ones, and the default output."""
    declared: dict[str, VideoOut | MediaTrack] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, (VideoOut, MediaTrack)):
                declared[attr] = value
            elif attr in declared:  # a subclass replaced the track with something else
                del declared[attr]
    tracks = {name: track for name, track in declared.items() if isinstance(track, VideoOut)}
    if not tracks:
        # Seed-era 1.7.5 behaviour: a model that declares no video output gets a default one (also when
        # it declares inputs or audio, so every model has the default track the engine serves).
        main = VideoOut(default=True)
        main.__set_name__(cls, "main_video")
        type.__setattr__(cls, "main_video", main)
        tracks["main_video"] = main
        declared = {"main_video": main, **declared}
    defaults = [name for name, track in tracks.items() if track.default]
    if len(defaults) > 1:
        raise ModelError(f"{cls.__qualname__} marks several tracks default=True: {', '.join(defaults)}")
    return declared, tracks, defaults[0] if defaults else next(iter(tracks))


def _emission_fps(cls: type, default_track: VideoOut) -> float | None:
    fps = getattr(cls, "emission_fps", None)
    if fps is not None:
        if not isinstance(fps, (int, float)) or fps < 0:
            raise ModelError(f"{cls.__qualname__}.emission_fps must be a number >= 0; got {fps!r}")
        return float(fps) or None
    return default_track.rate or None


# -- discovery ---------------------------------------------------------------------------------------


def load_model_class(target: str | os.PathLike[str] | type) -> type[VideoModel]:
    """The ``@model`` class named by ``target``: a class, ``module:Class``, ``path/file.py[:Class]``,
    or a folder.

    A folder means its ``model.py`` (no other file of the folder is imported, so a stray script next
    to it never runs). A file must hold exactly one ``@model`` class unless ``:Class`` names one.
    Seed-era files that ``import reactor_runtime`` get reactor-engine's compatible API, even where a
    real ``reactor_runtime`` package is installed (its 3.x release has no ``VideoModel``).
    """
    if isinstance(target, type):
        model_spec(target)
        return target
    text = os.fspath(target)
    path = Path(text).expanduser()
    if path.is_dir():
        entry = path / MODEL_FILE
        if not entry.is_file():
            raise ModelError(
                f"folder {path} has no {MODEL_FILE}; a folder target loads its {MODEL_FILE} (or name a file: "
                f"{path}/FILE.py)"
            )
        return _exactly_one(_models_in(_import_file(entry)), str(entry))
    file_text, colon, file_attr = text.rpartition(":")
    if colon and file_text.endswith(".py") and file_attr:  # path/file.py:Class
        path = Path(file_text).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist (model target {text!r})")
        return _pick(_import_file(path), file_attr, text, str(path))
    if path.suffix == ".py" or path.is_file():
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        return _exactly_one(_models_in(_import_file(path)), str(path))
    module_name, _, attr = text.partition(":")
    if "/" in module_name or os.sep in module_name:
        raise ModelError(
            f"model target {text!r} is not a folder, a .py file or module:Class "
            f"({module_name} does not exist)"
        )
    try:
        install_seed_api()
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import {module_name!r} for model target {text!r}: {exc}") from exc
    if not attr:
        return _exactly_one(_models_in(module), module_name)
    return _pick(module, attr, text, f"module {module_name!r}")


def _pick(module: Any, attr: str, text: str, where: str) -> type[VideoModel]:
    found = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise ModelError(f"{where} has no attribute {attr!r} (model target {text!r})")
        found = getattr(found, part)
    if not isinstance(found, type):
        raise ModelError(f"model target {text!r} is not a class; got {type(found).__name__}")
    model_spec(found)
    return found


def _import_file(path: Path) -> Any:
    path = path.resolve()
    module_name = (
        f"reactor_model_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{zlib.crc32(str(path).encode()):08x}"
    )
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # The model's own folder comes first on the path, so its sibling modules import as in the seed era.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    install_seed_api()
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        where = f"{exc.filename or path}:{exc.lineno}" if exc.lineno else str(exc.filename or path)
        raise ModelError(f"syntax error in {where}: {exc.msg}") from None
    except ImportError as exc:
        del sys.modules[module_name]
        line = _line_in(exc, path)
        missing = f"module {exc.name!r} is not installed" if exc.name else str(exc)
        raise ModelError(f"model file {path}{line} cannot be imported: {missing} ({exc})") from None
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _line_in(exc: BaseException, path: Path) -> str:
    """``:LINE`` of the innermost frame of ``exc``'s traceback that is in ``path`` (or nothing)."""
    line = ""
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path:
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line


def _models_in(module: Any) -> list[type[VideoModel]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and isinstance(value.__dict__.get(_SPEC_ATTR), ModelSpec)
        and value.__module__ == module.__name__
    ]


def _exactly_one(found: list[type[VideoModel]], where: str) -> type[VideoModel]:
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ModelError(f"no @model decorated class found in {where}")
    if len(unique) > 1:
        names = ", ".join(f"{cls.__qualname__} ('{model_spec(cls).name}')" for cls in unique)
        raise ModelError(f"multiple @model classes found in {where}: {names}; pick one with {where}:Class")
    return unique[0]
