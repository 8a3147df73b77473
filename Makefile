# The README's commands.  Each target does its own set-up on a fresh machine:
# a virtual environment with the package (and its C block counter) installed,
# and the Debian tools the tests use as references.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# qemu-system-arm is installed without its recommends: a few packages, not ~176.
DEBIAN_TOOLS := binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu cpp qemu-system-arm gdb-multiarch

.PHONY: setup tools demo test test-slow bench fuzz lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard emu/machine/_*.c emu/machine/_*.h)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,plot,dask]'
	touch $@

# Debian packages: cpp for the preprocessor, GNU as/gcc as reference assembler,
# QEMU (qemu-system-arm's qemu-system-aarch64) as reference machine.
tools:
	@missing=""; lean=""; \
	command -v cpp >/dev/null || missing="$$missing cpp"; \
	command -v aarch64-linux-gnu-as >/dev/null || missing="$$missing binutils-aarch64-linux-gnu"; \
	command -v aarch64-linux-gnu-gcc >/dev/null || missing="$$missing gcc-aarch64-linux-gnu"; \
	command -v gdb-multiarch >/dev/null || missing="$$missing gdb-multiarch"; \
	command -v qemu-system-aarch64 >/dev/null || lean="$$lean qemu-system-arm"; \
	if [ -n "$$missing$$lean" ]; then \
	  echo "installing Debian packages:$$missing$$lean"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq || exit 1; \
	  if [ -n "$$missing" ]; then $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; fi; \
	  if [ -n "$$lean" ]; then \
	    $$SUDO apt-get install -y -qq --no-install-recommends $$lean >/dev/null || exit 1; \
	  fi; \
	fi

demo: setup
	@command -v cpp >/dev/null || $(MAKE) --no-print-directory tools
	$(VENV)/bin/bootemu check asm/head.S

test: setup tools
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q
	$(PY) -m pytest -q examples

# The real-image runs of minutes (marked slow): Linux to its VFS panic.
test-slow: setup tools
	$(PY) -m pytest -q -m slow

bench: setup tools
	$(PY) bench/bench_check.py
	$(PY) bench/bench_images.py
	$(PY) bench/bench_sweep.py
	$(PY) bench/bench_fill.py
	$(PY) bench/bench_debug.py
	$(PY) bench/bench_trace.py
	$(PY) bench/bench_idle.py

# The walker against QEMU's own, 25 times the suite's examples (minutes), then
# 1,200 hostile inputs (sources, images, options, random code, corrupted page
# tables) against the one-line-error promise, the table in bench/FUZZ.md.
fuzz: setup
	BOOTEMU_FUZZ_EXAMPLES=25 $(PY) -m pytest tests/test_walk_oracle.py -q -s -p no:cacheprovider
	$(PY) bench/fuzz_inputs.py --cases 1200 --jobs 2 --out bench/FUZZ.md

lint: setup
	$(VENV)/bin/ruff check emu tests bench bootemu examples
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info emu/*.so emu/*/*.so .pytest_cache
