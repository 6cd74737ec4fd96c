#!/usr/bin/env bash
# Makes .venv-peer: a Python 3.12 venv with the peer runtime (reactor-runtime 3.10.0, which needs
# Python >= 3.12) for the glass-to-glass benchmark (benchmarks/bench_glass.py). Idempotent.
#
#   scripts/peer_runtime_venv.sh            # PYTHON312=/path/to/python3.12 to choose the interpreter
#
# Without a Python 3.12 it prints one "skipped:" line and exits 0: the benchmark then reports the
# peer column as not measured.
set -euo pipefail
cd "$(dirname "$0")/.."

PEER_VENV=${PEER_VENV:-.venv-peer}
PEER_RUNTIME=reactor-runtime==3.10.0

find_python312() {
  local candidate
  for candidate in "${PYTHON312:-}" "$(command -v python3.12 2>/dev/null || true)" \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    # A pyenv shim on PATH may point at no installed 3.12: ask the interpreter itself.
    if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$PEER_VENV/bin/python" ]; then
  if ! python=$(find_python312); then
    echo "skipped: no Python 3.12 (install python3.12 or pyenv)"
    exit 0
  fi
  echo "peer venv: creating $PEER_VENV with $("$python" --version)"
  "$python" -m venv "$PEER_VENV"
  # Keep the venv out of git status without touching the project's .gitignore.
  echo '*' > "$PEER_VENV/.gitignore"
fi

stamp=$PEER_VENV/.peer-runtime
if [ "$(cat "$stamp" 2>/dev/null)" != "$PEER_RUNTIME" ]; then
  echo "peer venv: installing $PEER_RUNTIME (with reactor-webrtc, from the registry)"
  "$PEER_VENV/bin/python" -m pip install -q --upgrade pip
  "$PEER_VENV/bin/python" -m pip install -q "$PEER_RUNTIME" psutil
  echo "$PEER_RUNTIME" > "$stamp"
fi
"$PEER_VENV/bin/python" -c 'import importlib.metadata as m, reactor_webrtc; print("peer venv: ready,", "reactor-runtime", m.version("reactor-runtime"), "reactor-webrtc", m.version("reactor-webrtc"))'
