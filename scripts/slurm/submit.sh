#!/usr/bin/env bash
# submit.sh: a suite as a Slurm job array, one task per shard, and the merge-and-report job
# that runs when every shard ended well.
#   scripts/slurm/submit.sh SUITE OUTDIR [--shards N] [--tasks LIST] [sbatch options...]
#     --shards N    shards of the suite (default 4), one array task each
#     --tasks LIST  submit only these tasks (e.g. 2 or 0,3) with the merge: a task that
#                   failed or was cancelled runs again and resumes its shard file
#   anything else goes to both sbatch calls (--partition, --time, ...) and to the array alone
#   for its resources: -c/--cpus-per-task (default 2, as the suites' --threads 2) and --mem.
# Prints the two job ids. When a task fails or is cancelled, the merge job is cancelled too
# (its dependency can no longer hold); submitting the task again brings a new merge. The binary is this tree's build/attnbench (ATTNBENCH overrides); the
# jobs run in this tree, so the cluster must see it (a shared filesystem).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
suite=${1:?usage: submit.sh SUITE OUTDIR [--shards N] [--tasks LIST] [sbatch options...]}
outdir=${2:?usage: submit.sh SUITE OUTDIR [--shards N] [--tasks LIST] [sbatch options...]}
shift 2
nshards=4 tasks= cpus=2
common=() resources=()
while [ $# -gt 0 ]; do
    case $1 in
    --shards) nshards=$2; shift 2 ;;
    --tasks) tasks=$2; shift 2 ;;
    -c) cpus=$2; shift 2 ;;
    --cpus-per-task=*) cpus=${1#*=}; shift ;;
    --mem=* | --mem-per-cpu=*) resources+=("$1"); shift ;;
    --mem) resources+=("--mem=$2"); shift 2 ;;
    *) common+=("$1"); shift ;;
    esac
done
case $nshards in '' | *[!0-9]* | 0) echo "submit.sh: --shards must be a positive integer" >&2; exit 2 ;; esac
[ -f "$suite" ] || { echo "submit.sh: no suite file $suite" >&2; exit 2; }
bin=${ATTNBENCH:-$root/build/attnbench}
[ -x "$bin" ] || { echo "submit.sh: no $bin; run make first" >&2; exit 2; }
suite=$(realpath "$suite")
mkdir -p "$outdir"
outdir=$(realpath "$outdir")
# the plan, so the log shows what each shard will run
"$bin" sweep --suite "$suite" --list --shard "all/$nshards" | tail -n "$nshards" >&2
array=$(sbatch --parsable --chdir "$root" --export "ALL,ATTNBENCH=$bin" \
    --array "${tasks:-0-$((nshards - 1))}" --cpus-per-task "$cpus" "${resources[@]}" \
    --output "$outdir/slurm-%A_%a.out" "${common[@]}" \
    "$root/scripts/slurm/sweep.sbatch" "$suite" "$outdir" "$nshards")
array=${array%%;*}
merge=$(sbatch --parsable --chdir "$root" --export "ALL,ATTNBENCH=$bin" \
    --dependency "afterok:$array" --kill-on-invalid-dep=yes --cpus-per-task 1 --output "$outdir/slurm-merge-%j.out" \
    "${common[@]}" "$root/scripts/slurm/merge.sbatch" "$outdir" "$nshards")
merge=${merge%%;*}
echo "array $array ($nshards shards${tasks:+, tasks $tasks}), merge $merge -> $outdir/results.jsonl"
