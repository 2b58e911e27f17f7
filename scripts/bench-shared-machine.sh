#!/usr/bin/env bash
# bench-shared-machine.sh: does the harness give the right answer on a machine that is doing
# something else? Runs the default suite twice on this machine: once quiet, once with one core
# kept busy by another process the whole time. Writes results/shared-machine/quiet/ and
# results/shared-machine/loaded/, each a results file and its report; the docs set their
# exponents side by side (`make docs`).
#   bash scripts/bench-shared-machine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/attnbench
out=results/shared-machine
make -s
for run in quiet loaded; do
    mkdir -p "$out/$run"
    rm -f "$out/$run/results.jsonl"
    burner=
    if [ $run = loaded ]; then
        # one core busy for the whole sweep: a process that never sleeps
        sh -c 'while :; do :; done' & burner=$!
    fi
    "$bin" sweep --suite scripts/suites/default.suite --out "$out/$run/results.jsonl"
    [ -z "$burner" ] || { kill "$burner"; wait "$burner" 2>/dev/null || true; }
    "$bin" report "$out/$run/results.jsonl" --out "$out/$run"
done
"$bin" table compare-fits "$out/loaded/results.jsonl" "reference=$out/quiet/results.jsonl"
