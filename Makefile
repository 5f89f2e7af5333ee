# The two set-up commands of the README. Both build .venv first (scripts/bootstrap.sh, idempotent).
VENV ?= .venv
MINUTES ?= 20

.PHONY: venv demo test lint bench

venv:
	@bash scripts/bootstrap.sh

demo: venv
	$(VENV)/bin/spidrkit demo --minutes $(MINUTES) --out runs/demo

test: venv
	$(VENV)/bin/python -m ruff check src tests benchmarks hubconf.py
	$(VENV)/bin/python -m pytest -n 2 --durations=15 tests

bench: venv
	$(VENV)/bin/python benchmarks/train_step.py --config tiny
