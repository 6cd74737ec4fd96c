"""The ``reactor_runtime`` alias: seed-era (1.x) model files run unmodified on reactor-engine.

``install_reactor_runtime_alias()`` appends an import finder at the end of ``sys.meta_path``, so it is
consulted only when no real ``reactor_runtime`` package is found first. Model discovery installs it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["install_reactor_runtime_alias"]

_log = logging.getLogger("reactor_engine")

# Seed-era module -> (reactor_engine module, names it re-exports).
_ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "reactor_runtime": (
        "reactor_engine",
        ("VideoModel", "command", "model", "get_ctx", "VideoOut", "Track", "__version__"),
    ),
    "reactor_runtime.tracks": ("reactor_engine.tracks", ("Track", "VideoOut", "VideoTrack")),
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
        if module.__name__ == "reactor_runtime":
            _log.warning(
                "reactor_runtime is not installed: "
                "'import reactor_runtime' uses reactor_engine's compatible API"
            )


_finder = _AliasFinder()


def install_reactor_runtime_alias() -> None:
    """Let ``import reactor_runtime`` resolve to reactor-engine where the real package is absent."""
    if _finder not in sys.meta_path:
        sys.meta_path.append(_finder)
