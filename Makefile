# edgejar: `make test` runs everything CI runs; `make demo` runs the main job on the simulated cluster.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: deps test demo venv lint unit integration clean molecule sim-up sim-down sim-status deb-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

# Debian packages first when we are root (a fresh machine); without root, what is missing is reported
# by the stages that need it.
deps:
	@if [ "$$(id -u)" -eq 0 ]; then bash scripts/deb-deps.sh; fi

# Lint, unit tests, integration tests on the simulated cluster, molecule; prints a summary.
test: deps $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	bash scripts/test.sh lint

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

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

# Debian packages the simulated cluster and the tests need (root; .ci/run runs this first).
deb-deps:
	bash scripts/deb-deps.sh

demo: deps $(STAMP)
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
