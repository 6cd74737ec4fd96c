"""Scale-out on Ray Serve: N replicas of one model (one ``Engine`` each) behind one session-affine
ingress. Needs the ``ray`` extra (``pip install 'reactor-engine[ray]'``); see ``docs/scale-out.md``.

``reactor-engine run TARGET --replicas N`` runs it on a local Ray; ``reactor-engine serve CONFIG.yaml``
deploys it onto a running cluster; ``app_builder`` is the entry point for Serve's own config files
(``import_path: reactor_engine.serve:app_builder``). The names load on first use, so that the CLI,
which registers ``serve``, does not import the web stack for its other commands.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ScaleOut", "app_builder", "build", "run_local", "start_local", "stop_local"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("reactor_engine.serve.app"), name)
    raise AttributeError(f"module 'reactor_engine.serve' has no attribute {name!r}")
