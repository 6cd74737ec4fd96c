# The everyday commands. `make test` is what the README and CI run.
PY := .venv/bin/python
JOBS ?= 2
NATIVE_CMAKE = -G Ninja -DREACTOR_ENGINE_BUILD_PYTHON=OFF -DREACTOR_ENGINE_BUILD_TESTS=ON -DREACTOR_ENGINE_CUDA=OFF

.PHONY: setup demo test test-native test-asan test-tsan test-cuda-off test-python test-ray bench-ray lint format proto bench bench-quick bench-glass clean

setup:
	scripts/setup.sh

# The built-in demo model in the browser viewer: http://127.0.0.1:8080/
demo: setup
	.venv/bin/reactor-engine run

test: setup test-native test-python

# The native unit tests (ctest), in a debug build of the core alone.
test-native:
	cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Debug $(NATIVE_CMAKE) >/dev/null
	cmake --build build/native -j $(JOBS)
	ctest --test-dir build/native --output-on-failure -j $(JOBS)

# The same native tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan:
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DREACTOR_ENGINE_SANITIZE=ON $(NATIVE_CMAKE) >/dev/null
	cmake --build build/asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir build/asan --output-on-failure -j $(JOBS)

# The same native tests under ThreadSanitizer: the ring, encoder and packet queue across their threads.
test-tsan:
	cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug -DREACTOR_ENGINE_TSAN=ON $(NATIVE_CMAKE) >/dev/null
	cmake --build build/tsan -j $(JOBS)
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(abspath csrc/tests/tsan.supp)" \
	  ctest --test-dir build/tsan --output-on-failure -j $(JOBS)

# The CPU-only module (REACTOR_ENGINE_CUDA=OFF) builds and imports, whatever the default build chose.
test-cuda-off:
	cmake -S . -B build/cuda-off -G Ninja -DREACTOR_ENGINE_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
	  -DPython_EXECUTABLE=$(abspath $(PY)) -Dpybind11_DIR=$$($(PY) -m pybind11 --cmakedir) >/dev/null
	cmake --build build/cuda-off -j $(JOBS)
	$(PY) scripts/import_built_module.py build/cuda-off OFF

test-python:
	$(PY) -m pytest

# Scale-out on Ray Serve (tests/test_ray_serve.py, ~2.5 min: reactor-sdk, a ray start cluster). Ray is not
# in .venv (make test skips these tests): .venv-ray, layered over .venv, gets the ray extra's pins.
test-ray: setup
	scripts/ray_venv.sh
	.venv-ray/bin/python -m pytest tests/test_ray_serve.py

# The scale-out ingress against a direct connection to a replica (benchmarks/bench_serve.py, ~1 min):
# benchmarks/results/serve-*.{json,md}. BENCH_SERVE_ARGS=--serve-defaults: Serve as it comes.
bench-ray: setup
	scripts/ray_venv.sh
	.venv-ray/bin/python benchmarks/bench_serve.py $(BENCH_SERVE_ARGS)

lint:
	$(PY) -m ruff check reactor_engine tests benchmarks fuzz
	$(PY) -m ruff format --check reactor_engine tests benchmarks fuzz
	$(PY) -m mypy
	clang-format --dry-run --Werror csrc/core/*.h csrc/core/*.cpp csrc/bindings/*.h csrc/bindings/*.cpp csrc/tests/*.h csrc/tests/*.cpp csrc/bench/*.cpp csrc/kernels/*.h csrc/kernels/*.cpp csrc/kernels/*.cu

format:
	$(PY) -m ruff format reactor_engine tests benchmarks fuzz
	$(PY) -m ruff check --fix reactor_engine tests benchmarks fuzz
	clang-format -i csrc/core/*.h csrc/core/*.cpp csrc/bindings/*.h csrc/bindings/*.cpp csrc/tests/*.h csrc/tests/*.cpp csrc/bench/*.cpp csrc/kernels/*.h csrc/kernels/*.cpp csrc/kernels/*.cu

# Regenerates the v1 data-channel message module (_pb2.py + .pyi) from its schema, with grpcio-tools' protoc.
proto:
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. reactor_engine/transports/webrtc/proto/reactor_wire_v1.proto

# Fuzzing with atheris: each target in fuzz/ (commands config weights ws wire) from its seeds in
# fuzz/corpus/<target>/. `fuzz` runs each FUZZ_SECONDS and keeps what it learns in build/fuzz/<target>/;
# `fuzz-ci` (CI) runs each for FUZZ_RUNS inputs from the seeds alone, with a fixed FUZZ_SEED. A crash is
# written to build/fuzz[-ci]/<target>-crash-*; replay it with `$(PY) fuzz/fuzz_<target>.py FILE`.
FUZZ_TARGETS := commands config weights ws wire
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 20000
FUZZ_SEED ?= 1
FUZZ_FLAGS = -timeout=10 -rss_limit_mb=4096
FUZZ_EACH = failed=""; for t in $(FUZZ_TARGETS); do mkdir -p build/$(1)/$$t && \
	  $(PY) fuzz/fuzz_$$t.py build/$(1)/$$t fuzz/corpus/$$t $(2) $(FUZZ_FLAGS) -artifact_prefix=build/$(1)/$$t- \
	  || failed="$$failed $$t"; done; test -z "$$failed" || { echo "fuzz findings in:$$failed"; exit 1; }
.PHONY: fuzz fuzz-ci

fuzz:
	@$(call FUZZ_EACH,fuzz,-max_total_time=$(FUZZ_SECONDS))

fuzz-ci:
	@rm -rf build/fuzz-ci
	@$(call FUZZ_EACH,fuzz-ci,-runs=$(FUZZ_RUNS) -seed=$(FUZZ_SEED))

# Benchmarks: engine vs the pure-Python baseline in one run; JSON, Markdown table and PNG plot
# in benchmarks/results/ (see benchmarks/README.md). bench-quick is CI's smoke run (~1 min).
bench: setup
	$(PY) benchmarks/run.py

bench-quick: setup
	$(PY) benchmarks/run.py --quick

# Glass-to-glass latency over WebRTC and WebSocket beside reactor-runtime 3.10 (its Python 3.12 venv,
# .venv-peer, is made first; skipped with one line where there is no Python 3.12). Needs root (netns).
bench-glass: setup
	scripts/peer_runtime_venv.sh
	$(PY) benchmarks/bench_glass.py

# Soak: `reactor-engine run` (the demo, 1280x720 at 30 fps) streaming to two WebSocket clients (and a
# WebRTC client where one can run: root for a network namespace) with a session change every 5 min,
# for REACTOR_SOAK_SECONDS (default 1 h); passes only with flat RSS/fds/threads and no unexplained
# drops. soak-ci is the 3-minute version CI runs (a change every minute). Writes
# benchmarks/results/soak-*.{json,png,md}; one verdict line, non-zero exit on failure.
REACTOR_SOAK_SECONDS ?= 3600
.PHONY: soak soak-ci

soak: setup
	$(PY) benchmarks/soak.py --seconds $(REACTOR_SOAK_SECONDS)

soak-ci: setup
	$(PY) benchmarks/soak.py --seconds 180 --session-change 60 $(SOAK_ARGS)

clean:
	rm -rf build
