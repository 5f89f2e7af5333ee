#!/usr/bin/env bash
# Interleaved before/after step time of two source trees (e.g. a worktree of the base commit and this one):
#   git worktree add /tmp/before <base-commit>
#   bash benchmarks/ab_train_step.sh /tmp/before . 10 [--config tiny]
# Runs benchmarks/train_step.py of each tree alternately N times (same interpreter: this tree's .venv; a tree
# without benchmarks/harness.py runs this tree's script on its own src/), reads the JSON rows it writes
# (benchmarks/harness.py: the first row's seconds_median, the median s/step) and prints the medians and the
# median of the per-pair ratios (after / before).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BEFORE=$(cd "$1" && pwd); AFTER=$(cd "$2" && pwd); N=${3:-10}; shift 3 || true
ARGS=${*:---config tiny}
PY=${PYTHON:-$(cd "$HERE/.." && pwd)/.venv/bin/python}
ROWS=$(mktemp -d)
trap 'rm -rf "$ROWS"' EXIT
for i in $(seq 1 "$N"); do
  for side in before after; do
    dir=$BEFORE; [ "$side" = after ] && dir=$AFTER
    script=$dir/benchmarks/train_step.py; [ -f "$dir/benchmarks/harness.py" ] || script=$HERE/train_step.py
    # shellcheck disable=SC2086
    if ! (cd "$dir" && PYTHONPATH="$dir/src" "$PY" "$script" $ARGS --steps 6 --warmup 2 --out "$ROWS/$side-$i.jsonl" \
      >/dev/null 2>"$ROWS/log"); then
      echo "ab_train_step: the $side run $i failed ($script):" >&2; tail -n 20 "$ROWS/log" >&2; exit 1
    fi
  done
done
"$PY" - "$ROWS" "$N" <<'PY'
import json, statistics, sys
from pathlib import Path

def first_row(side, i):  # the first row of one run: its median s/step
    lines = (Path(sys.argv[1]) / f"{side}-{i}.jsonl").read_text().splitlines()
    return json.loads(lines[0])["seconds_median"]

before = [first_row("before", i) for i in range(1, int(sys.argv[2]) + 1)]
after = [first_row("after", i) for i in range(1, int(sys.argv[2]) + 1)]
print("before s/step:", before)
print("after  s/step:", after)
print(f"median before {statistics.median(before):.3f}, after {statistics.median(after):.3f}, "
      f"median ratio after/before {statistics.median(a / b for a, b in zip(after, before)):.3f} ({len(before)} pairs)")
PY
