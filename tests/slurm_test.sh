#!/usr/bin/env bash
# slurm_test.sh: the sharded sweep on a real Slurm. Installs Debian's slurm-wlm and munge if
# they are missing, starts munged, slurmctld and slurmd for this host (one node with its real
# CPUs and memory, cgroup memory limits per job, on private ports and in a private folder, so
# a cluster that exists is not touched), then:
#   1. submits a small suite as a 4-task array plus the merge job (scripts/slurm/submit.sh) and
#      checks the merged file against the same suite run here: the same point ids, no
#      duplicates, every point ok or skipped as here, the report built, each record naming its
#      Slurm task, and the allocation's memory as the limit the points were measured under;
#   2. cancels a task mid-run (scancel), submits it again, and checks that its shard resumed
#      with nothing lost or duplicated.
# Stops every daemon it started, even on failure. SLURM_TEST_CGROUPS=0 runs Slurm without its
# cgroup plugins (as it does by itself where they cannot start).   ATTNBENCH=build/attnbench bash tests/slurm_test.sh
set -uo pipefail
bin=$(realpath "${ATTNBENCH:-build/attnbench}")
root=$(cd "$(dirname "$0")/.." && pwd)
count=0 fails=0
pass() { count=$((count + 1)); }
fail() { count=$((count + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm_test: installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null ||
        { echo "slurm_test: cannot install slurm-wlm and munge"; exit 1; }
fi

tmp=$(mktemp -d /tmp/attnbench-slurm.XXXXXX)
started_munged=0
stop_slurm() {
    for d in slurmd slurmctld; do
        [ -s "$tmp/$d.pid" ] && kill "$(cat "$tmp/$d.pid")" 2>/dev/null
    done
    sleep 1
    for d in slurmd slurmctld; do
        [ -s "$tmp/$d.pid" ] && kill -9 "$(cat "$tmp/$d.pid")" 2>/dev/null
        rm -f "$tmp/$d.pid"
    done
}
cleanup() {
    stop_slurm
    [ $started_munged = 1 ] && [ -s "$tmp/munged.pid" ] && kill "$(cat "$tmp/munged.pid")" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- munge: the key the package made, the daemon as its own user
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge
    chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create >/dev/null
    runuser -u munge -- /usr/sbin/munged --pid-file "$tmp/munged.pid" 2>/dev/null ||
        runuser -u munge -- /usr/sbin/munged || { echo "slurm_test: munged does not start"; exit 1; }
    cp /run/munge/munged.pid "$tmp/munged.pid" 2>/dev/null
    started_munged=1
fi

# --- one node: this host with its CPUs and memory; job memory enforced through cgroups
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "$tmp/state" "$tmp/spool"
# writes slurm.conf with the given process tracking and task plugins and starts the two
# daemons; returns non-zero when the node does not come up idle
start_slurm() {
    port=$((20000 + RANDOM % 20000))
    cat >"$tmp/slurm.conf" <<CONF
ClusterName=attnbenchtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=$1
TaskPlugin=$2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=5
# a test wants jobs started at once, not on the next of the default 60 s scheduling passes
SchedulerParameters=sched_interval=1,bf_interval=1
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    printf 'CgroupPlugin=autodetect\nConstrainRAMSpace=yes\n' >"$tmp/cgroup.conf"
    slurmctld && slurmd || return 1
    for _ in $(seq 60); do sinfo -h -o %t 2>/dev/null | grep -q idle && return 0; sleep 0.5; done
    return 1
}
export SLURM_CONF=$tmp/slurm.conf
# memory enforced through the job's cgroup, as on a real cluster; where Slurm's cgroup plugins
# cannot run (cgroup v2 without a systemd to delegate a subtree, in 22.05), without them: the
# job's memory then bounds the points through SLURM_MEM_PER_NODE alone, and the test says so
cgroups=1
if [ "${SLURM_TEST_CGROUPS:-1}" = 0 ]; then
    echo "slurm_test: without Slurm's cgroup plugins (SLURM_TEST_CGROUPS=0)"
fi
if [ "${SLURM_TEST_CGROUPS:-1}" = 0 ] || ! start_slurm proctrack/cgroup task/cgroup; then
    [ "${SLURM_TEST_CGROUPS:-1}" = 0 ] ||
        echo "slurm_test: Slurm's cgroup plugins do not start here ($(grep -h -m1 -i error "$tmp"/slurm*.log 2>/dev/null | head -n 1)); running without them"
    stop_slurm
    rm -rf "$tmp/state"/* "$tmp/spool"/*
    cgroups=0
    start_slurm proctrack/linuxproc task/affinity ||
        { fail "the node never became idle"; tail "$tmp"/slurm*.log; exit 1; }
fi
pass

# waits until none of the given jobs is pending or running
wait_jobs() {
    for _ in $(seq 600); do
        [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
        sleep 0.5
    done
    return 1
}

# --- 1. a suite as 4 shards and the merge job, against the same suite run here
cat >"$tmp/small.suite" <<'SUITE'
--methods full,full_stream,lsh --n 1K:8K --reps 1 --threads 1 --counters none --mem-limit 1G
--methods block_sparse,etc --n 1K:8K --reps 1 --threads 1 --counters none --mem-limit 1G
--methods full --n 32K --reps 1 --threads 1 --counters none --mem-limit 1G
SUITE
"$bin" sweep --suite "$tmp/small.suite" --out "$tmp/local.jsonl" 2>/dev/null
out=$(ATTNBENCH=$bin bash "$root/scripts/slurm/submit.sh" "$tmp/small.suite" "$tmp/sharded" --shards 4 -c 1 --mem=1500M 2>/dev/null)
merge=$(echo "$out" | sed -n 's/.*merge \([0-9]*\).*/\1/p')
array=$(echo "$out" | sed -n 's/^array \([0-9]*\).*/\1/p')
[ -n "$merge" ] && [ -n "$array" ] && pass || fail "submit.sh printed no job ids: $out"
wait_jobs "$array" && wait_jobs "$merge" && pass || fail "the jobs did not finish"
echo "slurm_test: test 1 done after $SECONDS s"
/usr/bin/python3 - "$tmp/local.jsonl" "$tmp/sharded" $cgroups <<'PY' && pass || fail "the sharded sweep is not the local one"
import json, os, sys
local = {r["point_id"]: r for r in map(json.loads, open(sys.argv[1]))}
d, cgroups = sys.argv[2], sys.argv[3] == "1"
merged = [json.loads(l) for l in open(os.path.join(d, "results.jsonl"))]
ids = [r["point_id"] for r in merged]
assert len(ids) == len(set(ids)) == len(local), (len(ids), len(set(ids)), len(local))
assert set(ids) == set(local)
for r in merged:
    assert r["status"] == local[r["point_id"]]["status"], (r["method"], r["n"], r["status"])
    s = r["context"]["slurm"]
    assert s and s["array_task_id"] is not None and s["cpus_per_task"] == "1", s
    # the allocation's memory (1500 MiB) bounds the points: from the job's cgroup, and from
    # Slurm's variables
    mb = r["context"]["memory_bound"]
    assert mb["bytes"] == mb["slurm_allocation_bytes"] == 1500 * 2**20, mb
    assert not cgroups or mb["cgroup_limit_bytes"] == 1500 * 2**20, mb
assert {r["context"]["shard"] for r in merged} == {f"{k}/4" for k in range(4)}
assert any(r["status"] == "skipped" for r in merged)
assert os.path.getsize(os.path.join(d, "report.md")) > 0
for k in range(4):
    assert os.path.exists(os.path.join(d, f"shard-{k}-of-4.jsonl"))
PY

# --- 2. a task cancelled mid-run, submitted again: its shard resumes, nothing lost or doubled
cat >"$tmp/slow.suite" <<'SUITE'
--methods full_stream --n 2K:8K --reps 3 --threads 1 --counters none
--methods lsh --n 32K:256K --reps 3 --threads 1 --counters none
SUITE
out=$(ATTNBENCH=$bin bash "$root/scripts/slurm/submit.sh" "$tmp/slow.suite" "$tmp/slow" --shards 2 -c 1 --mem=2G 2>/dev/null)
array=$(echo "$out" | sed -n 's/^array \([0-9]*\).*/\1/p')
merge=$(echo "$out" | sed -n 's/.*merge \([0-9]*\).*/\1/p')
f0=$tmp/slow/shard-0-of-2.jsonl f1=$tmp/slow/shard-1-of-2.jsonl
for _ in $(seq 600); do
    [ -s "$f0" ] && [ -s "$f1" ] && break
    sleep 0.2
done
scancel "${array}_0"
wait_jobs "$array"
wait_jobs "$merge" && pass || fail "the merge job waits on a shard that was cancelled" # afterok cannot hold
n0=$(wc -l <"$f0" 2>/dev/null || echo 0)
planned=$("$bin" sweep --suite "$tmp/slow.suite" --list --shard 0/2 | awk 'NR > 1 && $1 ~ /\//' | wc -l)
[ "$n0" -ge 1 ] && [ "$n0" -lt "$planned" ] && pass || fail "the cancelled task should have stopped mid-shard: $n0 of $planned records"
out=$(ATTNBENCH=$bin bash "$root/scripts/slurm/submit.sh" "$tmp/slow.suite" "$tmp/slow" --shards 2 --tasks 0 -c 1 --mem=2G 2>/dev/null)
array=$(echo "$out" | sed -n 's/^array \([0-9]*\).*/\1/p')
merge=$(echo "$out" | sed -n 's/.*merge \([0-9]*\).*/\1/p')
wait_jobs "$array" && wait_jobs "$merge" && pass || fail "the resubmitted task did not finish"
"$bin" sweep --suite "$tmp/slow.suite" --list | awk 'NR > 1 && $1 ~ /\// {print $2}' | sort >"$tmp/slow.ids"
/usr/bin/python3 - "$tmp/slow/results.jsonl" "$tmp/slow.ids" "$f0" <<'PY' && pass || fail "the resumed shard lost or doubled points"
import json, sys
merged = [json.loads(l) for l in open(sys.argv[1])]
want = open(sys.argv[2]).read().split()
ids = sorted(r["point_id"] for r in merged)
assert ids == sorted(want), (len(ids), len(want))
shard = [json.loads(l)["point_id"] for l in open(sys.argv[3])]
assert len(shard) == len(set(shard)), "a point measured twice in the resumed shard"
PY

echo "slurm_test: $((count - fails))/$count passed"
[ $fails = 0 ]
