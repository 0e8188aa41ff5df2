# edgejar: `make test` runs everything CI runs; `make demo` runs the main job on the simulated cluster.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: deps test demo venv lint unit runtime integration clean molecule sim-up sim-down sim-status deb-deps doctor guest vm aarch64 lock

# llama-cpp-python (the `node` extra) compiles llama.cpp the first time (about 6 minutes on 2 cores with
# every core building, 20 single-threaded); pip keeps the built wheel in its cache, so it happens once
# per machine and version. The build is portable (GGML_NATIVE=off: AVX2/FMA/F16C on x86), the same as
# roles/edgejar_llama's `cpu` flavour, whose controller build reuses this wheel from pip's cache (pip keys
# it by version, not by CMAKE_ARGS). No native build: on a CPU with AMX, ggml's AMX kernel can crash on
# quantized models (docs/models.md). Set CMAKE_ARGS to build otherwise.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=off

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@echo "installing edgejar and its tools (a first install compiles llama-cpp-python: several minutes)"
	CMAKE_ARGS="$${CMAKE_ARGS:-$(LLAMA_CMAKE_ARGS)}" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PY) -m pip install -q -e '.[dev,node,report]'
	touch $@

venv: $(STAMP)

# Debian packages first when we are root (a fresh machine); without root, what is missing is reported
# by the stages that need it.
deps:
	@if [ "$$(id -u)" -eq 0 ]; then bash scripts/deb-deps.sh; fi

# Lint, unit tests, integration tests on the simulated cluster, molecule, the arm64 Pi, the Debian 12
# guest and the VM hosts (both beside the integration tier); prints a summary.
test: deps $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	bash scripts/test.sh lint

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

runtime: $(STAMP)
	bash scripts/test.sh runtime

integration: $(STAMP)
	bash scripts/test.sh integration

molecule: $(STAMP)
	bash scripts/test.sh molecule

# The simulated edge cluster (root): see docs/sim.md.
sim-up: $(STAMP)
	$(PY) -m runner sim up

sim-down: $(STAMP)
	$(PY) -m runner sim down

sim-status: $(STAMP)
	$(PY) -m runner sim status

# What this machine has for the simulated cluster, what is missing and how to get it (docs/sim.md).
doctor: $(STAMP)
	$(PY) -m runner sim check

# The sim and one experiment inside a standard Debian 12 guest (systemd, cgroup v2) under QEMU (root;
# docs/sim.md, "The CI guest"), alone: about 20 minutes under TCG emulation (`make test` runs it too).
guest: $(STAMP)
	bash scripts/test.sh guest

# A simulated Pi with the boards' arm64 userland: the cross-built a76 wheel and an instance on it.
aarch64: $(STAMP)
	bash scripts/test.sh aarch64

# VM hosts with their own kernel (QEMU): swap, static addresses, the Pi's reboot, OOM kills for real.
vm: $(STAMP)
	bash scripts/test.sh vm

# The node venv's hashed locks (roles/edgejar_llama/files/locks/*.txt) from edgejar_llama_packages,
# files/locks/torch.in and build.in, with uv's universal resolver (needs PyPI; uv comes into the venv on
# the first run). After changing a package list: `make lock`, then commit the locks (docs/deploy.md).
# LOCK_ARGS: e.g. --find-links DIR, where PyTorch's CPU index cannot be reached but a copy of its wheels can.
UV_VERSION := 0.13.9
lock: $(STAMP)
	@$(VENV)/bin/uv --version 2>/dev/null | grep -q '^uv $(UV_VERSION) ' || $(PY) -m pip install -q 'uv==$(UV_VERSION)'
	$(PY) scripts/lock.py $(LOCK_ARGS)

# Debian packages the simulated cluster and the tests need (root; .ci/run runs this first).
deb-deps:
	bash scripts/deb-deps.sh

demo: deps $(STAMP)
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
