"""Scale-out on Ray Serve: N replicas of one model (one ``Engine`` each) behind one session-affine
ingress. Needs the ``ray`` extra (``pip install 'reactor-engine[ray]'``); see ``docs/scale-out.md``.

``reactor-engine run TARGET --replicas N`` runs it on a local Ray; ``app_builder`` is the entry point
for Serve's own config files (``import_path: reactor_engine.serve:app_builder``) on a cluster.
"""

from __future__ import annotations

from reactor_engine.serve.app import ScaleOut, app_builder, build, run_local

__all__ = ["ScaleOut", "app_builder", "build", "run_local"]
