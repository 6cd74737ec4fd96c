#!/usr/bin/env bash
# Makes .venv-ray for the scale-out tests (make test-ray): a venv of the same Python as .venv that
# sees .venv's packages and the built native module (a .pth file adds .venv's site-packages), with
# the ray extra's pins (requirements-ray.txt) installed in it alone. .venv itself is not changed:
# ray[serve] pulls uvloop and httptools, which uvicorn would otherwise pick up in every other test.
set -euo pipefail
cd "$(dirname "$0")/.."

base=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -x .venv-ray/bin/python ]; then
  home=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
  echo "ray-venv: creating .venv-ray with $("$home" --version), layered over .venv"
  "$home" -m venv .venv-ray
fi
own=$(.venv-ray/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import site; site.addsitedir('$base')" > "$own/_reactor_engine_base_venv.pth"
stamp=.venv-ray/.requirements-ray.sha256
want=$(cat requirements-ray.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "ray-venv: installing the ray extra (requirements-ray.txt)"
  .venv-ray/bin/python -m pip install -q -r requirements-ray.txt -c requirements-dev.txt
  echo "$want" > "$stamp"
fi
.venv-ray/bin/python -c 'import ray.serve, reactor_engine._C' || {
  echo "ray-venv: .venv-ray cannot import ray.serve and the native module" >&2; exit 1; }
