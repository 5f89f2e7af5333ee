# The two set-up commands of the README. Both build .venv first (scripts/bootstrap.sh, idempotent).
VENV ?= .venv
MINUTES ?= 24

.PHONY: venv oracle demo test lint bench system lock

# benchmarks/: timings, experiments/: the studies behind docs/, system/: the fault test (benchmarks/README.md)
LINT_PATHS = src tests benchmarks experiments system hubconf.py

venv:
	@bash scripts/bootstrap.sh

demo: venv
	$(VENV)/bin/spidrkit demo --minutes $(MINUTES) -o runs/demo

# the authors' release as a test oracle for the parity tests (tests/oracle.py); never imported by spidrkit
oracle: venv
	@$(VENV)/bin/python -c "import importlib.metadata as m; assert m.version('spidr') == '0.2.0'" 2>/dev/null \
		|| $(VENV)/bin/python -m pip install -q --no-deps spidr==0.2.0

lint: venv
	$(VENV)/bin/python -m ruff check $(LINT_PATHS)

test: venv oracle
	$(VENV)/bin/python -m ruff check $(LINT_PATHS)
	$(VENV)/bin/python -m pytest -n 2 --durations=15 tests

bench: venv
	$(VENV)/bin/python benchmarks/train_step.py --config tiny --out runs/bench/train_step.jsonl

# kill -9, SIGTERM and a full disk during pretraining and extraction, for real (a few minutes; not in `make test`)
system: venv
	$(VENV)/bin/python system/faults.py

# requirements.lock: the full dev environment (.[all,dev]) pinned, for Linux x86_64 and Python 3.12 with the
# CPU-only torch (scripts/lock-overrides.txt); regenerate after changing pyproject.toml's dependencies
# (README, "Install"). uv comes with the dev extra.
lock: venv
	$(VENV)/bin/uv pip compile pyproject.toml --extra all --extra dev --python-version 3.12 \
		--python-platform x86_64-manylinux_2_28 --override scripts/lock-overrides.txt --custom-compile-command "make lock" -o requirements.lock
