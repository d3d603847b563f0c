# Two commands: `make demo` and `make test`. Each creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean speech-tools arm-tools arm-test pretrained

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch 2.13.0 first: the CPU build on this machine's disk; a bare `torch` would pull a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# the fused C++ WaveNet step, compiled now rather than at first use (no compiler: the PyTorch path runs)
	$(BIN)/python -m pixelwave.fast
	touch $(STAMP)

# flite and espeak-ng (Debian packages): `pixelwave data speech` runs them; the tests that need them skip without
# them, saying why. Best effort: as root with apt-get only, and never fatal (offline, another OS: a note).
speech-tools:
	@if command -v flite >/dev/null && command -v espeak-ng >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq \
			flite espeak-ng; } >/dev/null 2>&1 \
		|| echo "note: could not apt-get install flite espeak-ng: the tests that synthesise speech will skip"; \
	else echo "note: flite/espeak-ng missing (apt-get install flite espeak-ng): the tests that need them will skip"; fi

# g++-aarch64-linux-gnu and qemu-user (Debian packages): tests/test_fast_arm.py cross-compiles the fused WaveNet
# kernel for aarch64 (NEON) and runs it under qemu-aarch64 (~15 s); without them it skips, saying why. Best
# effort, as speech-tools.
arm-tools:
	@if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq \
			g++-aarch64-linux-gnu qemu-user; } >/dev/null 2>&1 \
		|| echo "note: could not apt-get install g++-aarch64-linux-gnu qemu-user: the ARM kernel tests will skip"; \
	else echo "note: g++-aarch64-linux-gnu/qemu-user missing: the ARM kernel tests will skip"; fi

arm-test: $(STAMP) arm-tools
	$(BIN)/python -m pytest -o addopts= -v tests/test_fast_arm.py

demo: $(STAMP)
	$(BIN)/python -m pixelwave.demo --out demo-out

test: $(STAMP) speech-tools arm-tools
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

# re-train the models shipped in src/pixelwave/pretrained/ with the commands on their cards (~10 CPU minutes each)
pretrained: $(STAMP)
	$(BIN)/python tools/pretrained.py

# the published wavenet_vocoder, which the benchmarks time ours against (its own deps: numpy, scipy)
$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-out
