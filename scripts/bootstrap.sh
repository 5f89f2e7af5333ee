#!/usr/bin/env bash
# Build the project's virtual environment (.venv) with a Python >= 3.12, found on PATH first, then
# through pyenv. Installs the corpus builder's synthesisers (flite, festival, espeak-ng) and the tests' headless
# browser (chromium, chromium-driver) with apt-get when run as root.
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
    # every extra (hf, lm, eval, gpu, tracking, slurm, faiss, voices) and the tests' tools: make demo and make test
    # need them all (README, "Install": a core-only install is `pip install .`)
    "$VENV/bin/python" -m pip install -q -e ".[all,dev]"
    touch "$stamp"
fi
# the corpus builder's synthesisers (Debian): flite (aligned voices), festival + its ked voice (the held-out
# engine, aligned; kal only to show it duplicates flite kal16), espeak-ng (training-only voices); a missing one
# is a warning, never a failure
APT_VOICES="flite festival festvox-kdlpc16k festvox-kallpc16k espeak-ng"
missing_tts() {
    command -v flite >/dev/null 2>&1 || echo flite
    command -v festival >/dev/null 2>&1 && [ -d /usr/share/festival/voices/english/ked_diphone ] || echo festival
    command -v espeak-ng >/dev/null 2>&1 || echo espeak-ng
}
# root with apt-get: the Debian packages this script installs itself
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
# apt_install WHAT PACKAGE...: install the packages quietly, updating the package lists once if the first try fails
apt_install() {
    local what=$1
    shift
    echo "[bootstrap] installing $what with apt-get: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1)
}
if [ -n "$(missing_tts)" ]; then
    if can_apt; then
        apt_install "the speech synthesisers" $APT_VOICES \
            || echo "[bootstrap] could not install every synthesiser ($(missing_tts | tr '\n' ' ')); the corpus uses the voices found" >&2
    else
        echo "[bootstrap] synthesisers missing: $(missing_tts | tr '\n' ' '); run 'sudo apt-get install $APT_VOICES' (flite at least)" >&2
    fi
fi
# the headless browser of the report pages' tests (tests/browser.py: Debian's chromium and its driver, driven
# by selenium; nothing is downloaded from a browser vendor); without it those tests are skipped (CI fails them)
APT_BROWSER="chromium chromium-driver"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if can_apt; then
        apt_install "the tests' headless browser" $APT_BROWSER \
            || echo "[bootstrap] could not install $APT_BROWSER; the report pages' browser tests will be skipped" >&2
    else
        echo "[bootstrap] no headless browser for the report pages' tests: run 'sudo apt-get install $APT_BROWSER'" >&2
    fi
fi
echo "[bootstrap] ready: $VENV/bin/spidrkit"
