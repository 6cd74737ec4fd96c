"""The ``reactor_runtime`` alias: seed-era (1.x) model files run unmodified on reactor-engine.

Model discovery calls ``install_seed_api()`` before it imports a model: from then on ``reactor_runtime``
(and its seed-era submodules) resolve to reactor-engine's compatible API, even where a real
``reactor_runtime`` is installed. Users migrating from Reactor usually have it installed, and its 3.x
release no longer has ``VideoModel`` or ``model``, so the real package would break their model. The
shadowing is logged once. A process that never loads a model keeps the installed package.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

__all__ = ["install_seed_api"]

_log = logging.getLogger("reactor_engine")

# Seed-era module -> (reactor_engine module, names it re-exports).
_ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "reactor_runtime": (
        "reactor_engine",
        (
            "VideoModel",
            "command",
            "model",
            "get_ctx",
            "VideoOut",
            "Track",
            "__version__",
            "VideoIn",
            "AudioIn",
            "AudioOut",
            "MediaBundle",
        ),
    ),
    "reactor_runtime.tracks": (
        "reactor_engine",
        ("Track", "VideoOut", "VideoTrack", "VideoIn", "AudioIn", "AudioOut", "MediaBundle"),
    ),
    "reactor_runtime.context": ("reactor_engine.context", ("ReactorContext", "get_ctx")),
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname == "reactor_runtime")

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default: a fresh module, filled by exec_module

    def exec_module(self, module: ModuleType) -> None:
        source, names = _ALIASES[module.__name__]
        target = importlib.import_module(source)
        for name in names:
            setattr(module, name, getattr(target, name))
        module.__doc__ = f"Alias of {source} for seed-era reactor_runtime models."


_finder = _AliasFinder()
_lock = threading.RLock()
_announced = False


def install_seed_api() -> None:
    """Before a model is imported: from now on ``import reactor_runtime`` gives reactor-engine's API.

    The finder goes first on ``sys.meta_path`` and stays there (a model may import ``reactor_runtime``
    lazily, inside ``start_session``). A real ``reactor_runtime`` that was installed or already
    imported is shadowed, and the log says so once.
    """
    global _announced
    with _lock:
        if _finder not in sys.meta_path:
            real = [name for name in sys.modules if _is_alias_name(name) and not _is_alias(sys.modules[name])]
            if not _announced and (real or _installed_elsewhere()):
                _log.warning(
                    "an installed reactor_runtime package is shadowed: in reactor-engine its seed-era "
                    "names (VideoModel, model, command, get_ctx, VideoOut) resolve to reactor_engine's API"
                )
                _announced = True
            for name in real:
                del sys.modules[name]
            sys.meta_path.insert(0, _finder)


def _is_alias(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return spec is not None and spec.loader is _finder


def _is_alias_name(name: str) -> bool:
    return name == "reactor_runtime" or name.startswith("reactor_runtime.")


def _installed_elsewhere() -> bool:
    """Whether a real ``reactor_runtime`` is importable (found without our finder)."""
    for finder in sys.meta_path:
        if finder is _finder or not hasattr(finder, "find_spec"):
            continue
        with contextlib.suppress(Exception):
            if finder.find_spec("reactor_runtime", None) is not None:
                return True
    return False
