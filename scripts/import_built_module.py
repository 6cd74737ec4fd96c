"""Imports reactor_engine with the _C built in a given CMake build folder, not the installed one.

Usage: python scripts/import_built_module.py BUILD_DIR EXPECTED_CUDA   (EXPECTED_CUDA: ON or OFF)
Used by `make test-cuda-off` to show that the CPU-only module builds and imports.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path


def main() -> int:
    build_dir, expected = Path(sys.argv[1]), sys.argv[2]
    modules = sorted(build_dir.rglob("_C.*.so"))
    if not modules:
        print(f"no _C module under {build_dir}", file=sys.stderr)
        return 1
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as scratch:
        package = Path(scratch) / "reactor_engine"
        shutil.copytree(root / "reactor_engine", package, ignore=shutil.ignore_patterns("_C.*.so", "__pycache__"))
        shutil.copy2(modules[0], package)
        # The editable install's finder would win over sys.path; this check wants the copy.
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
        sys.path.insert(0, scratch)
        import reactor_engine._C as native

        assert Path(native.__file__).parent == package, native.__file__
        info = native.build_info()
        print(f"imported {native.__file__}: cuda={info['cuda']} ({info['cuda_reason']}); {native.cuda_status()}")
        if info["cuda"] != expected:
            print(f"expected cuda={expected}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
