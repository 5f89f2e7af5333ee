#!/usr/bin/env bash
# The prepared GPU check of this repository: at most 5 minutes on one GPU, compilation included, one
# summary table at the end (see benchmarks/gpu_check.py for what each row measures). Without a GPU it
# runs the CPU-side checks and says what it skipped. Exit status 0 when no check failed.
#   bash benchmarks/gpu_check.sh [--cpu] [--budget SECONDS]
# PYTHON picks the interpreter (default: the repository's .venv, else python3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$ROOT"
exec "$PY" benchmarks/gpu_check.py "$@"
