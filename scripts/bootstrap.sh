#!/usr/bin/env bash
# Build the project's virtual environment (.venv) with a Python >= 3.12, found on PATH first, then
# through pyenv. Installs flite (the corpus builder's synthesiser) with apt-get when run as root.
# Idempotent: a second run only re-checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SPIDRKIT_VENV:-.venv}

find_python() {
    local c v
    for c in python3.12 python3.13 python3.14 python3 python; do
        if command -v "$c" >/dev/null 2>&1; then
            v=$("$c" -c 'import sys; print(int(sys.version_info >= (3, 12)))' 2>/dev/null || echo 0)
            if [ "$v" = 1 ]; then command -v "$c"; return 0; fi
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        local root; root=$(pyenv root)
        for d in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -V); do
            if [ -x "$d/bin/python3" ]; then echo "$d/bin/python3"; return 0; fi
        done
    fi
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PY=$(find_python) || { echo "spidrkit needs Python >= 3.12: install it (e.g. 'pyenv install 3.12') and re-run." >&2; exit 1; }
    echo "[bootstrap] creating $VENV with $PY ($("$PY" --version))"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.spidrkit-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    touch "$stamp"
fi
if ! command -v flite >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[bootstrap] installing flite with apt-get"
        (apt-get install -y -q flite >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q flite >/dev/null 2>&1)) \
            || echo "[bootstrap] could not install flite; run 'sudo apt-get install flite' before 'spidrkit data synth'" >&2
    else
        echo "[bootstrap] flite is missing: run 'sudo apt-get install flite' before 'spidrkit data synth'" >&2
    fi
fi
echo "[bootstrap] ready: $VENV/bin/spidrkit"
