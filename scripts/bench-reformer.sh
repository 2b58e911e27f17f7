#!/usr/bin/env bash
# bench-reformer.sh [BASE_COMMIT [N]]: the Reformer's training step (12 reversible layers over
# LSH, d_model 256 in 4 heads of 64, d_ff 1024, both cores) at N tokens (default 1M), measured
# with the build of BASE_COMMIT (default 2bc0df5, before the step ran head by head) and with this
# tree's build, one after the other on the same machine. Appends both records to
# results/reformer/side-by-side.jsonl and prints their time and peak memory.
#   bash scripts/bench-reformer.sh 2bc0df5 1M
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-2bc0df5} n=${2:-1M}
out=results/reformer/side-by-side.jsonl
make -s
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" 2>/dev/null; rm -rf "$work"' EXIT
git worktree add -q --detach "$work/base" "$base"
make -s -C "$work/base" build/attnbench
point=(run --method reversible --layers 12 --heads 4 --n "$n" --reps 1 --warmup 0 --threads 2
       --counters sw --time-limit 7200 --mem-limit 21G --json)
mkdir -p results/reformer
for bin in "$work/base/build/attnbench" build/attnbench; do
    "$bin" "${point[@]}" >>"$out" # the record first: a summary that fails loses nothing
    tail -n 1 "$out" | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
gib = lambda key: "%.2f GiB" % (r[key] / 2**30) if r[key] is not None else "-"
wall = "%.1f s" % r["wall_s"] if r["wall_s"] is not None else "-"
print("%s: %s, %s, peak RSS %s, model %s" % (r["context"]["git_commit"][:8], r["status"], wall,
      gib("peak_rss_bytes"), gib("model_bytes")))'
done
