# The two set-up commands of the README. Both build .venv first (scripts/bootstrap.sh, idempotent).
VENV ?= .venv
MINUTES ?= 24

.PHONY: venv oracle demo test lint bench

venv:
	@bash scripts/bootstrap.sh

demo: venv
	$(VENV)/bin/spidrkit demo --minutes $(MINUTES) --out runs/demo

# the authors' release as a test oracle for the parity tests (tests/oracle.py); never imported by spidrkit
oracle: venv
	@$(VENV)/bin/python -c "import importlib.metadata as m; assert m.version('spidr') == '0.2.0'" 2>/dev/null \
		|| $(VENV)/bin/python -m pip install -q --no-deps spidr==0.2.0

test: venv oracle
	$(VENV)/bin/python -m ruff check src tests benchmarks hubconf.py
	$(VENV)/bin/python -m pytest -n 2 --durations=15 tests

bench: venv
	$(VENV)/bin/python benchmarks/train_step.py --config tiny
