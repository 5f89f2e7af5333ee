#!/usr/bin/env bash
# Interleaved before/after step time of two source trees (e.g. a worktree of the base commit and this one):
#   git worktree add /tmp/before <base-commit>
#   bash benchmarks/ab_train_step.sh /tmp/before . 10 [--config tiny]
# Runs benchmarks/train_step.py of each tree alternately N times (same interpreter: this tree's .venv),
# then prints the medians and the median of the per-pair ratios (after / before).
set -euo pipefail
BEFORE=$(cd "$1" && pwd); AFTER=$(cd "$2" && pwd); N=${3:-10}; shift 3 || true
ARGS=${*:---config tiny}
PY=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
LOG=$(mktemp)
for i in $(seq 1 "$N"); do
  for side in before after; do
    dir=$BEFORE; [ "$side" = after ] && dir=$AFTER
    # shellcheck disable=SC2086
    (cd "$dir" && PYTHONPATH="$dir/src" "$PY" benchmarks/train_step.py $ARGS --steps 6 --warmup 2 2>/dev/null) \
      | grep -E '^\| [a-z]' | grep -v '^| config' | head -1 | sed "s/^/$side $i /" >> "$LOG"
  done
done
"$PY" - "$LOG" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    side, i, rest = line.split(" ", 2)
    cells = [c.strip() for c in rest.split("|") if c.strip()]
    runs.setdefault(int(i), {})[side] = float(cells[4])  # median s/step
pairs = [r for r in runs.values() if len(r) == 2]
before = [r["before"] for r in pairs]
after = [r["after"] for r in pairs]
print("before s/step:", before)
print("after  s/step:", after)
print(f"median before {statistics.median(before):.3f}, after {statistics.median(after):.3f}, "
      f"median ratio after/before {statistics.median(a / b for a, b in zip(after, before)):.3f} ({len(pairs)} pairs)")
PY
rm -f "$LOG"
