#!/usr/bin/env bash
# Sets up a development checkout on Debian/Ubuntu: system packages, .venv with pinned Python
# packages, and the native module built in place (incrementally, in build/<wheel tag>).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake ninja-build pkg-config libturbojpeg0-dev libjpeg62-turbo-dev libvpx-dev libgtest-dev
              clang-format util-linux python3-venv python3-dev chromium chromium-driver)
PYTHON=${PYTHON:-python3}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall the pinned packages only when requirements-dev.txt changed.
stamp=.venv/.requirements-dev.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages (requirements-dev.txt)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# The other published Reactor clients the WebRTC tests drive, unmodified (test-only, never vendored):
# reactor-sdk 0.8.0 is also the package `reactor_sdk`, so it lives in a folder of its own; the npm
# @reactor-team/js-sdk 2.9.0 is bundled with esbuild at test time and run in Chromium.
if [ ! -d .venv/reactor-sdk-0.8/reactor_sdk ]; then
  echo "setup: installing reactor-sdk 0.8.0 into .venv/reactor-sdk-0.8"
  .venv/bin/python -m pip install -q --no-deps --target .venv/reactor-sdk-0.8 reactor-sdk==0.8.0
fi
JS_SDK_PACKAGES=(@reactor-team/js-sdk@2.9.0 react@18.3.1 zustand@5 esbuild@0.28.2)
if [ ! -f build/js-sdk/node_modules/@reactor-team/js-sdk/package.json ]; then
  if command -v npm >/dev/null; then
    echo "setup: installing ${JS_SDK_PACKAGES[*]} into build/js-sdk (npm)"
    npm install --silent --prefix build/js-sdk --no-audit --no-fund "${JS_SDK_PACKAGES[@]}" >/dev/null
  else
    echo "setup: npm not found: the js-sdk 2.9 test will skip (Debian: apt-get install npm)" >&2
  fi
fi

echo "setup: building reactor_engine._C (REACTOR_ENGINE_CUDA=${REACTOR_ENGINE_CUDA:-AUTO})"
.venv/bin/python -m pip install -q --no-build-isolation -e . 
.venv/bin/python -c "import reactor_engine._C as c; print('setup: built', c.build_info())"
