#!/usr/bin/env bash
# cli_test.sh: shell-level tests of build/attnbench (exit codes, one-line errors, files
# written). Run by `make test` with ATTNBENCH pointing at the binary.
set -u
bin=${ATTNBENCH:-build/attnbench}
bin_abs=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 count=0

pass() { count=$((count + 1)); }
fail() { count=$((count + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

# expect_status STATUS DESCRIPTION -- command...: the command exits with STATUS; for status 2
# it also prints exactly one line on stderr.
expect_status() {
    local want=$1 what=$2; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" != "$want" ]; then
        fail "$what: exit $got, want $want; stderr: $(head -c 300 "$tmp/err")"
    elif [ "$want" = 2 ] && [ "$(wc -l <"$tmp/err")" != 1 ]; then
        fail "$what: want one line on stderr, got: $(cat "$tmp/err")"
    else
        pass
    fi
}

# npy FILE DESCR SHAPE [fortran]: writes a .npy file of standard normal values (finite, so
# outputs can be compared with a reference), seeded by the file's name.
npy() {
    /usr/bin/python3 - "$@" <<'PY'
import os, sys, zlib
import numpy as np
path, descr, shape = sys.argv[1], sys.argv[2], tuple(int(x) for x in sys.argv[3].strip("()").split(",") if x.strip())
a = np.random.default_rng(zlib.crc32(os.path.basename(path).encode())).standard_normal(shape).astype(descr)
np.save(path, np.asfortranarray(a) if len(sys.argv) > 4 and sys.argv[4] == "True" else a)
PY
}

# allclose OUT Q K V [causal|lsh|lsh-causal]: the forward output OUT against NumPy's float64
# attention of Q, K, V (tests/forward_numpy.py's reference).
allclose() {
    /usr/bin/python3 - "$@" <<'PY'
import sys
import numpy as np
sys.path.insert(0, "tests")
from forward_numpy import reference, lsh_reference
out, q, k, v = (np.load(f) for f in sys.argv[1:5])
mode = sys.argv[5] if len(sys.argv) > 5 else ""
n = q.shape[0]
if mode.startswith("lsh"):  # one chunk, one round: shared QK with the self mask
    ref, _ = lsh_reference(q, v, np.zeros((1, n), np.int32), n, mode == "lsh-causal")
else:
    ref, _ = reference(q, k, v, mode == "causal")
err = np.max(np.abs(out - ref) / (1 + np.abs(ref)))
sys.exit(0 if out.shape == q.shape and err <= 1e-5 else f"max rel err {err:.2e}")
PY
}

# gradclose DQ DK DV Q K V DOUT [causal] [lsh]: gradients against NumPy's analytic float64
# gradients of the same attention.
gradclose() {
    /usr/bin/python3 - "$@" <<'PY'
import sys
import numpy as np
sys.path.insert(0, "tests")
from forward_numpy import grads_reference, dense_logits, lsh_logits
dq, dk, dv, q, k, v, do = (np.load(f) for f in sys.argv[1:8])
causal, lsh = "causal" in sys.argv[8:], "lsh" in sys.argv[8:]
n, d = q.shape
mult = np.tril(np.ones((n, n))) if causal else np.ones((n, n))
fn = lsh_logits(n, d, causal) if lsh else dense_logits(n, d)
err = max(np.max(np.abs(g - r) / (1 + np.abs(r)))
          for g, r in zip((dq, dk, dv), grads_reference(q, k, v, do, mult, fn)))
sys.exit(0 if err <= 1e-4 else f"max rel err {err:.2e}")
PY
}

# --- list
expect_status 0 "list" -- "$bin" list
grep -q '^full ' "$tmp/out" && grep -q '^full_stream .*tile_q=128' "$tmp/out" && pass ||
    fail "list does not show full and full_stream with defaults"
expect_status 2 "list with an unknown flag" -- "$bin" list --bogus
expect_status 2 "list with a stray argument" -- "$bin" list full

# --- forward: good inputs write an output of the inputs' shape
npy "$tmp/q.npy" '<f4' '(33, 16)'
npy "$tmp/k.npy" '<f4' '(33, 16)'
npy "$tmp/v.npy" '<f4' '(33, 16)'
for m in full full_stream; do
    expect_status 0 "forward $m" -- "$bin" forward --method $m --q "$tmp/q.npy" --k "$tmp/k.npy" \
        --v "$tmp/v.npy" --out "$tmp/o_$m.npy" --lse "$tmp/l_$m.npy" --causal
    [ "$(stat -c %s "$tmp/o_$m.npy")" = $((128 + 33 * 16 * 4)) ] && pass ||
        fail "forward $m: output size $(stat -c %s "$tmp/o_$m.npy")"
    head -c 80 "$tmp/o_$m.npy" | grep -q "'shape': (33, 16)" && pass || fail "forward $m: output header"
    msg=$(allclose "$tmp/o_$m.npy" "$tmp/q.npy" "$tmp/k.npy" "$tmp/v.npy" causal 2>&1) && pass ||
        fail "forward $m: output differs from NumPy's: $msg"
done
# the sparse methods where they must equal exact attention: one block, every token global,
# one LSH chunk (two rounds of one chunk see every key twice: the same softmax)
for spec in "block_sparse:" "etc:" "lsh:--param chunk_len=33"; do
    m=${spec%%:*}
    expect_status 0 "forward $m as exact" -- "$bin" forward --method $m ${spec#*:} --q "$tmp/q.npy" \
        --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/o_$m.npy"
    msg=$(allclose "$tmp/o_$m.npy" "$tmp/q.npy" "$tmp/k.npy" "$tmp/v.npy" $([ $m = lsh ] && echo lsh) 2>&1) &&
        pass || fail "forward $m: output differs from exact attention: $msg"
done

# --- forward and backward: a NaN or an infinity in any input is refused with its place
/usr/bin/python3 -c '
import numpy as np, sys
q = np.load(sys.argv[1]); q[5, 3] = np.nan; np.save(sys.argv[2], q)
q[5, 3] = 0; q[32, 15] = -np.inf; np.save(sys.argv[3], q)
q = np.load(sys.argv[1]) * 1e20; np.save(sys.argv[4], q)
' "$tmp/q.npy" "$tmp/nan.npy" "$tmp/inf.npy" "$tmp/huge.npy"
for m in full full_stream lsh block_sparse etc; do
    expect_status 2 "forward $m with a NaN" -- "$bin" forward --method $m --q "$tmp/q.npy" --k "$tmp/nan.npy" --v "$tmp/v.npy" --out "$tmp/o.npy"
    grep -q -- "--k .*nan.npy: element (5, 3) is NaN" "$tmp/err" && pass || fail "forward $m NaN message: $(cat "$tmp/err")"
done
expect_status 2 "forward lsh with a NaN query" -- "$bin" forward --method lsh --param n_buckets=256 --param chunk_len=11 --q "$tmp/nan.npy" --k "$tmp/nan.npy" --v "$tmp/v.npy" --out "$tmp/o.npy"
grep -q -- "--q .*nan.npy: element (5, 3) is NaN; inputs must be finite" "$tmp/err" && pass || fail "NaN message: $(cat "$tmp/err")"
expect_status 2 "forward with -inf" -- "$bin" forward --method full --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/inf.npy" --out "$tmp/o.npy"
grep -q -- "--v .*inf.npy: element (32, 15) is -inf" "$tmp/err" && pass || fail "-inf message: $(cat "$tmp/err")"
rm -f "$tmp/o.npy"
expect_status 1 "forward whose scores overflow" -- "$bin" forward --method full --q "$tmp/huge.npy" --k "$tmp/huge.npy" --v "$tmp/v.npy" --out "$tmp/o.npy"
grep -q "not finite although every input is" "$tmp/err" && [ ! -e "$tmp/o.npy" ] && pass || fail "overflowing scores: $(cat "$tmp/err")"

# --- forward: bad inputs, one clear line and exit 2
f=(--q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/o.npy")
npy "$tmp/f8.npy" '<f8' '(33, 16)'
npy "$tmp/short.npy" '<f4' '(32, 16)'
npy "$tmp/fort.npy" '<f4' '(33, 16)' True
npy "$tmp/trunc.npy" '<f4' '(33, 16)'; truncate -s 1000 "$tmp/trunc.npy"
echo "not numpy" >"$tmp/text.npy"
expect_status 2 "unknown method" -- "$bin" forward --method nope "${f[@]}"
expect_status 2 "missing method" -- "$bin" forward "${f[@]}"
expect_status 2 "unknown flag" -- "$bin" forward --method full --bogus "${f[@]}"
expect_status 2 "unknown param" -- "$bin" forward --method full_stream --param nope=1 "${f[@]}"
expect_status 2 "param out of range" -- "$bin" forward --method full_stream --param tile_q=0 "${f[@]}"
expect_status 2 "param malformed" -- "$bin" forward --method full_stream --param tile_q=x "${f[@]}"
expect_status 2 "wrong dtype" -- "$bin" forward --method full --q "$tmp/f8.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/o.npy"
grep -q "dtype is '<f8'" "$tmp/err" && pass || fail "wrong dtype message: $(cat "$tmp/err")"
expect_status 2 "shape mismatch" -- "$bin" forward --method full --q "$tmp/q.npy" --k "$tmp/short.npy" --v "$tmp/v.npy" --out "$tmp/o.npy"
expect_status 2 "fortran order" -- "$bin" forward --method full --q "$tmp/fort.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/o.npy"
grep -q "Fortran" "$tmp/err" && pass || fail "fortran message: $(cat "$tmp/err")"
expect_status 2 "truncated" -- "$bin" forward --method full --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/trunc.npy" --out "$tmp/o.npy"
grep -q "truncated" "$tmp/err" && pass || fail "truncated message: $(cat "$tmp/err")"
expect_status 2 "not npy" -- "$bin" forward --method full --q "$tmp/text.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/o.npy"
expect_status 2 "missing file" -- "$bin" forward --method full --q "$tmp/none.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/o.npy"
expect_status 2 "unwritable output" -- "$bin" forward --method full --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/no/such/dir/o.npy"
expect_status 2 "unknown command" -- "$bin" frobnicate
expect_status 2 "no command" -- "$bin"


# --- run: one point, a table or one JSON object
expect_status 0 "run table" -- "$bin" run --method full_stream --n 300 --reps 2 --counters none
grep -q '^status *ok' "$tmp/out" && pass || fail "run table has no 'status ok' line"
expect_status 0 "run json" -- "$bin" run --method full --n 300 --reps 2 --json
[ "$(wc -l <"$tmp/out")" = 1 ] && /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["status"]=="ok" and r["n"]==300' "$tmp/out" && pass ||
    fail "run --json is not exactly one JSON object"
expect_status 2 "run unknown flag" -- "$bin" run --method full --n 300 --frob
expect_status 2 "run missing n" -- "$bin" run --method full
expect_status 2 "run malformed n" -- "$bin" run --method full --n 3x
expect_status 2 "run negative n" -- "$bin" run --method full --n -5
expect_status 2 "run zero reps" -- "$bin" run --method full --n 64 --reps 0
expect_status 2 "run bad mem-limit" -- "$bin" run --method full --n 64 --mem-limit 3Q
expect_status 2 "run negative time-limit" -- "$bin" run --method full --n 64 --time-limit -1
expect_status 2 "run bad inputs" -- "$bin" run --method full --n 64 --inputs zebra
expect_status 2 "run unknown method" -- "$bin" run --method nope --n 64
expect_status 2 "run bad param" -- "$bin" run --method full_stream --n 64 --param tile_q=-3
expect_status 1 "run point that fails" -- env ATTNBENCH_FAULT=segv "$bin" run --method full --n 64 --reps 1
grep -q '^status *crashed' "$tmp/out" && pass || fail "a crashed point is not reported as crashed"

# --- sweep: bad input never truncates an existing results file
sw=(--methods full,full_stream --n 256:512 --reps 1 --counters none)
expect_status 0 "sweep" -- "$bin" sweep "${sw[@]}" --out "$tmp/s.jsonl"
[ "$(wc -l <"$tmp/s.jsonl")" = 4 ] && pass || fail "sweep wrote $(wc -l <"$tmp/s.jsonl") records, want 4"
cp "$tmp/s.jsonl" "$tmp/s.orig"
expect_status 2 "sweep onto existing results" -- "$bin" sweep "${sw[@]}" --out "$tmp/s.jsonl"
cmp -s "$tmp/s.jsonl" "$tmp/s.orig" && pass || fail "an existing results file was modified"
expect_status 0 "sweep resume, nothing to do" -- "$bin" sweep "${sw[@]}" --out "$tmp/s.jsonl" --resume
cmp -s "$tmp/s.jsonl" "$tmp/s.orig" && pass || fail "resume of a complete sweep changed the file"
echo "id,value" >"$tmp/foreign.jsonl"
expect_status 2 "sweep into a foreign file" -- "$bin" sweep "${sw[@]}" --out "$tmp/foreign.jsonl" --resume
[ "$(cat "$tmp/foreign.jsonl")" = "id,value" ] && pass || fail "a foreign file was modified"
expect_status 2 "sweep unwritable out" -- "$bin" sweep "${sw[@]}" --out /proc/nope/s.jsonl
expect_status 2 "sweep no out" -- "$bin" sweep "${sw[@]}"
expect_status 2 "sweep bad range" -- "$bin" sweep --methods full --n 512:256 --out "$tmp/x.jsonl"
expect_status 2 "sweep bad factor" -- "$bin" sweep --methods full --n 256:512:1 --out "$tmp/x.jsonl"
expect_status 2 "sweep unknown method" -- "$bin" sweep --methods full,nope --n 256 --out "$tmp/x.jsonl"
expect_status 2 "sweep param of another method" -- "$bin" sweep --methods full --n 256 --param full_stream.tile_q=64 --out "$tmp/x.jsonl"
expect_status 2 "sweep param out of range" -- "$bin" sweep --methods full_stream --n 256 --param full_stream.tile_q=0 --out "$tmp/x.jsonl"
[ ! -e "$tmp/x.jsonl" ] && pass || fail "a rejected sweep created its output"
printf -- '--methods full_stream --n 256 --reps 1\n\n# comment\n--methods full --n 256 --bogus 3\n' >"$tmp/bad.suite"
expect_status 2 "suite with an error" -- "$bin" sweep --suite "$tmp/bad.suite" --out "$tmp/x.jsonl"
grep -q "bad.suite:4:" "$tmp/err" && pass || fail "suite error does not name file:line: $(cat "$tmp/err")"
expect_status 2 "missing suite" -- "$bin" sweep --suite "$tmp/none.suite" --out "$tmp/x.jsonl"

# --- the sgemm yardstick: a sweep measures it at each of its thread counts, every record
# carries it, and the report reads each point's GFLOP/s against it
printf -- '--methods full_stream --n 256 --reps 1 --threads 1\n--methods full_stream --n 512 --reps 1 --threads 2\n' >"$tmp/y.suite"
expect_status 0 "sweep with its yardstick" -- "$bin" sweep --suite "$tmp/y.suite" --out "$tmp/y.jsonl"
python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == 2, len(recs)
for r in recs:
    y = r["context"]["yardstick"]["sgemm"]
    assert sorted(e["threads"] for e in y) == [1, 2], y
    for e in y:
        assert e["n"] == 2048 and e["reps"] == 3 and 0 < e["gflops_median"] <= e["gflops_best"], e
        assert e["openblas_core"] and e["openblas_core_source"], e
' "$tmp/y.jsonl" && pass || fail "sweep records do not carry the yardstick of each thread count"
"$bin" table series "$tmp/y.jsonl" >"$tmp/y.md" 2>"$tmp/err" && python3 -c '
import json, sys
recs = {r["n"]: r for r in map(json.loads, open(sys.argv[1]))}
rows = [l.split("|") for l in open(sys.argv[2]) if l.startswith("| 256 ") or l.startswith("| 512 ")]
assert len(rows) == 2, rows
for row in rows:
    r = recs[int(row[1])]
    y = [e for e in r["context"]["yardstick"]["sgemm"] if e["threads"] == r["threads"]][0]
    want = "%.0f%%" % (100 * r["gflops"] / y["gflops_median"])
    assert row[6].strip() == want, (row, want)
' "$tmp/y.jsonl" "$tmp/y.md" && pass || fail "the series table does not read GFLOP/s against the yardstick at the same threads"
"$bin" table points "$tmp/y.jsonl" columns=n,threads,sgemm_share >"$tmp/y.md" 2>"$tmp/err" &&
    grep -Eq '^\| 512 \| 2 \| [0-9]+% \|$' "$tmp/y.md" && pass || fail "points column sgemm_share: $(cat "$tmp/y.md" "$tmp/err")"
expect_status 0 "sweep without a yardstick" -- "$bin" sweep --methods full_stream --n 256 --reps 1 --no-yardstick --out "$tmp/ny.jsonl"
python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
assert "yardstick" not in r["context"], r["context"]
' "$tmp/ny.jsonl" && pass || fail "--no-yardstick still measured one"
"$bin" table points "$tmp/ny.jsonl" columns=n,sgemm_share >"$tmp/y.md" 2>"$tmp/err" &&
    grep -Eq '^\| 256 \|  \|$' "$tmp/y.md" && pass || fail "a record without a yardstick shows a share: $(cat "$tmp/y.md" "$tmp/err")"
printf -- '--methods full_stream --n 256 --no-yardstick\n' >"$tmp/bad.suite"
expect_status 2 "--no-yardstick on a suite line" -- "$bin" sweep --suite "$tmp/bad.suite" --out "$tmp/x.jsonl"
"$bin" sgemm --n 256 --threads 1 --reps 2 --json >"$tmp/sg.json" && python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["n"] == 256 and j["threads"] == 1 and j["reps"] == 2 and 0 < j["gflops_median"] <= j["gflops_best"], j
' "$tmp/sg.json" && pass || fail "sgemm --json: $(cat "$tmp/sg.json")"

# --- sweep: parameter lists are series; a suite runs its groups
printf -- '--methods full_stream --n 128 --reps 1 --param full_stream.tile_q=16,32 --counters none\n--methods full --n 128 --reps 1 --counters none\n' >"$tmp/ok.suite"
expect_status 0 "suite" -- "$bin" sweep --suite "$tmp/ok.suite" --out "$tmp/suite.jsonl"
[ "$(wc -l <"$tmp/suite.jsonl")" = 3 ] && pass || fail "suite wrote $(wc -l <"$tmp/suite.jsonl") records, want 3"

# --- resume after SIGKILL: no finished point lost, none duplicated, a torn line removed.
# The last point (a minute or more of full_stream on any machine) is still running when the
# kill comes after the first three; --no-skip keeps a slow machine from skipping it on its
# predicted time. The resume runs it with a 1 s limit: a timeout.
rs=(--methods full_stream --n 1K,2K,4K,128K --reps 1 --counters none --no-skip --out "$tmp/kill.jsonl")
"$bin" sweep "${rs[@]}" 2>/dev/null &
pid=$!
for _ in $(seq 600); do [ -s "$tmp/kill.jsonl" ] && [ "$(wc -l <"$tmp/kill.jsonl")" -ge 3 ] && break; sleep 0.05; done
kill -9 $pid; wait $pid 2>/dev/null
before=$(wc -l <"$tmp/kill.jsonl")
printf '{"schema":"attnbench/1","point_id":"tor' >>"$tmp/kill.jsonl"
expect_status 0 "resume after kill" -- "$bin" sweep "${rs[@]}" --resume --time-limit 1
grep -q "torn record" "$tmp/err" && pass || fail "the torn line was not reported"
/usr/bin/python3 - "$tmp/kill.jsonl" "$before" <<'PY' && pass || fail "resume lost or duplicated points"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ids = [r["point_id"] for r in recs]
assert len(ids) == 4 and len(set(ids)) == 4, ids
assert sorted(r["n"] for r in recs) == [1024, 2048, 4096, 131072]
assert int(sys.argv[2]) == 3, "the kill did not land while the last point ran"
assert recs[-1]["status"] == "timeout", recs[-1]["status"]
PY


# --- a killed sweep does not block its own resume: its point's child (forked while the sweep
# held the results file's lock) must not keep the lock while it frees GiBs after the kill
"$bin" sweep --methods full --n 32K --reps 50 --counters none --no-skip --no-yardstick --out "$tmp/big.jsonl" 2>/dev/null &
pid=$!
big=0
for _ in $(seq 600); do
    child=$(pgrep -P $pid | head -n 1)
    rss=$( [ -n "$child" ] && awk '/^VmRSS/ {print $2}' /proc/$child/status 2>/dev/null)
    [ -n "$rss" ] && [ "$rss" -gt 2097152 ] && big=1 && break
    sleep 0.05
done
kill -9 $pid; wait $pid 2>/dev/null
expect_status 0 "resume at once after killing a sweep whose point held $((${rss:-0} / 1048576)) GiB" -- \
    "$bin" sweep --methods full --n 1K --reps 1 --counters none --out "$tmp/big.jsonl" --resume
[ $big = 1 ] && pass || fail "the point never held 2 GiB before the kill (the test did not test)"
for _ in $(seq 100); do [ -z "$(pgrep -P 1 -f "out $tmp/big.jsonl")" ] && break; sleep 0.1; done

# --- one writer per results file: a second sweep into a file being written is refused
"$bin" sweep --methods full_stream --n 1K,128K --reps 1 --counters none --no-skip --time-limit 30 --out "$tmp/locked.jsonl" 2>/dev/null &
holder=$!
for _ in $(seq 600); do [ -s "$tmp/locked.jsonl" ] && break; sleep 0.05; done
before=$(cat "$tmp/locked.jsonl")
expect_status 2 "a second writer of a results file" -- "$bin" sweep --methods full_stream --n 1K,128K --reps 1 --counters none --out "$tmp/locked.jsonl" --resume
grep -q "is being written by pid $holder on " "$tmp/err" && pass || fail "the second writer is not told who holds the file: $(cat "$tmp/err")"
[ "$(cat "$tmp/locked.jsonl")" = "$before" ] && pass || fail "the refused writer changed the file"
"$bin" report "$tmp/locked.jsonl" --out "$tmp/lockrep" 2>"$tmp/err" >/dev/null
grep -q "warning: .*locked.jsonl is being written by pid $holder" "$tmp/err" && pass || fail "report does not say the file is being written: $(head -c 300 "$tmp/err")"
kill $holder; wait $holder 2>/dev/null
[ ! -e "$tmp/locked.jsonl.writer" ] && pass || fail "the writer's note outlived it"

# --- a full disk: the cause by name, whole records kept, no torn line, and --resume goes on
fs=(--methods full_stream --n 256:8K --reps 1 --counters none --out "$tmp/fsize.jsonl")
(ulimit -f 8; "$bin" sweep "${fs[@]}") >"$tmp/out" 2>"$tmp/err"
st=$?
[ $st = 1 ] && grep -q "write failed: File too large (EFBIG); the [0-9]* records before it are safe" "$tmp/err" && pass ||
    fail "a write past RLIMIT_FSIZE: exit $st, $(tail -n 1 "$tmp/err")"
/usr/bin/python3 -c '
import json, sys
data = open(sys.argv[1]).read()
assert data.endswith("\n") and all(json.loads(l)["status"] for l in data.splitlines()), "a torn line"
' "$tmp/fsize.jsonl" && pass || fail "the file kept a torn record after the failed write"
expect_status 0 "resume after a full disk" -- "$bin" sweep "${fs[@]}" --resume
[ "$(wc -l <"$tmp/fsize.jsonl")" = 6 ] && [ "$(cut -c1-60 "$tmp/fsize.jsonl" | sort | uniq -d | wc -l)" = 0 ] && pass ||
    fail "resume after the full disk lost or duplicated points"
if [ "$(id -u)" = 0 ] && mkdir -p "$tmp/tiny" && mount -t tmpfs -o size=12k tmpfs "$tmp/tiny" 2>/dev/null; then
    "$bin" sweep --methods full_stream --n 256:8K --reps 1 --counters sw --out "$tmp/tiny/r.jsonl" >/dev/null 2>"$tmp/err"
    st=$?
    [ $st = 1 ] && grep -q "No space left on device (ENOSPC)" "$tmp/err" && pass || fail "a full tmpfs: exit $st, $(tail -n 1 "$tmp/err")"
    /usr/bin/python3 -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' "$tmp/tiny/r.jsonl" && pass ||
        fail "a full tmpfs left a torn record"
    umount "$tmp/tiny"
else
    echo "cli_test: the full-tmpfs case skipped (needs root and mount)"
fi

# --- a busy machine is flagged in the record, in the report, and not gated on time. These runs
# keep both cores busy for tens of seconds: ATTNBENCH_TEST_LOAD=0 skips them (CI's extra passes
# over the instruction-set paths and without PAPI, which the load logic does not depend on).
if [ "${ATTNBENCH_TEST_LOAD:-1}" = 0 ]; then
    echo "cli_test: SKIPPED: the busy-machine runs (ATTNBENCH_TEST_LOAD=0)"
else
busy() { while :; do :; done; }
busy & b1=$!; busy & b2=$!
"$bin" run --method full_stream --n 8K --reps 5 --threads 2 --counters none --json >"$tmp/busy.json" 2>/dev/null
# measured again while the machine stays busy: every attempt kept, the record busy, bounded
"$bin" sweep --methods full_stream --n 8K --reps 3 --threads 2 --counters none --retry-wait 0.5 --no-yardstick \
    --out "$tmp/retry.jsonl" 2>/dev/null
"$bin" run --method full_stream --n 256 --reps 1 --counters none --quiet-wait 1 --json >"$tmp/wait.json" 2>/dev/null
"$bin" run --method ext:numpy_textbook --n 4K --reps 5 --threads 1 --counters none --json >"$tmp/busy_ext.json" 2>/dev/null
kill $b1 $b2; wait $b1 $b2 2>/dev/null
/usr/bin/python3 -c '
import json, sys
r, w, e = (json.load(open(f)) for f in sys.argv[1:4])
for load in r["machine_load"], e["machine_load"]:  # our own point, and an external program
    assert load["busy"] is True and load["other_share"] > 0.2 and load["other_cpu_s"] > 0, load
assert w["quiet_wait"]["quiet"] is False and w["quiet_wait"]["waited_s"] >= 1.0, w["quiet_wait"]
assert r["attempts"] is None  # run measures once unless told
t = json.loads(open(sys.argv[4]).read())
a = t["attempts"]
assert len(a) == 3 and all(x["busy"] is True for x in a) and t["machine_load"]["busy"] is True, a
assert all(x["waited_s"] >= 0.5 for x in a[1:]), a  # each retry waited for a quiet window
best = min(a, key=lambda x: x["other_share"])  # none quiet: the least loaded attempt is kept
assert t["wall_s"] == best["wall_s"] and t["machine_load"]["other_share"] == best["other_share"], (t["wall_s"], a)
' "$tmp/busy.json" "$tmp/wait.json" "$tmp/busy_ext.json" "$tmp/retry.jsonl" && pass || fail "a point timed beside two busy loops is not flagged busy, or not measured again"
# the machine turns quiet during the retries: the quiet attempt is the record, the busy one kept.
# The loops end when the first attempt's child has ended, whatever the build's speed; without the
# yardstick, whose own child would otherwise be the first one watched.
busy & b1=$!; busy & b2=$!
"$bin" sweep --methods full_stream --n 8K --reps 3 --threads 2 --counters none --retry-wait 20 --no-yardstick \
    --out "$tmp/retry2.jsonl" 2>/dev/null &
sp=$!
for _ in $(seq 1200); do [ -n "$(pgrep -P $sp)" ] && break; sleep 0.05; done
for _ in $(seq 2400); do [ -z "$(pgrep -P $sp)" ] && break; sleep 0.05; done
kill $b1 $b2; wait $b1 $b2 2>/dev/null
wait $sp
/usr/bin/python3 -c '
import json, sys
t = json.loads(open(sys.argv[1]).read())
a = t["attempts"]
assert a[0]["busy"] is True and 2 <= len(a) <= 3, a
quiet = [x for x in a if x["busy"] is not True]
if quiet:  # the first attempt not busy is the record (quiet, or too short for the ticks to tell)
    assert t["machine_load"]["busy"] is not True and t["wall_s"] == quiet[0]["wall_s"], (t["wall_s"], a)
else:  # others kept the machine busy after the loops ended: then all three ran, and it says so
    assert len(a) == 3 and t["machine_load"]["busy"] is True, a
' "$tmp/retry2.jsonl" && pass || fail "a busy point measured again once the machine was quiet"
printf '%s\n' "$(cat "$tmp/busy.json")" >"$tmp/busy.jsonl"
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); r["machine_load"] = {"busy": False, "other_share": 0.0}
print(json.dumps(r))' "$tmp/busy.json" >"$tmp/quiet.jsonl"
"$bin" check --baseline "$tmp/quiet.jsonl" "$tmp/busy.jsonl" --metric time:rtol=50% >"$tmp/out" 2>"$tmp/err"
st=$?
[ $st = 2 ] && grep -q "NOT GATED: the current point was timed on a busy machine" "$tmp/out" && pass ||
    fail "check gated time on a busy point: exit $st, $(cat "$tmp/out" | tail -n 2)"

# a load that changes during a sweep, the case that bends a fit: quiet points first, then larger
# ones resumed while both cores are kept busy. The time fit must either stand within 1.8..2.2
# (full_stream is quadratic) or say it is unreliable and why; the memory fit does not care.
ls=(--methods full_stream --reps 3 --threads 2 --counters none --retry-wait 0.5 --out "$tmp/load.jsonl")
"$bin" sweep "${ls[@]}" --n 2K:4K 2>/dev/null
busy & b1=$!; busy & b2=$!
"$bin" sweep "${ls[@]}" --n 2K:16K --resume --busy-retries 1 2>/dev/null
kill $b1 $b2; wait $b1 $b2 2>/dev/null
"$bin" report "$tmp/load.jsonl" --out "$tmp/loadrep" 2>/dev/null
/usr/bin/python3 - "$tmp/loadrep/fits.json" "$tmp/loadrep/report.md" <<'PY' && pass || fail "a fit over points timed under a changing load"
import json, sys
fits = {f["metric"]: f for f in json.load(open(sys.argv[1])) if f["method"] == "full_stream"}
t, m = fits["time"], fits["point_rss"]
assert (t["reliable"] and 1.8 <= t["b"] <= 2.2) or (not t["reliable"] and t["reason"]), t
assert t["busy_excluded"] >= 1 or t["reliable"], t  # the busy points were left out, or none was busy
assert 0.85 <= m["b"] <= 1.15, m
if not t["reliable"]:  # and the report says so where it prints the exponent
    assert "**unreliable**: " + t["reason"] in open(sys.argv[2]).read()
PY

fi

# --- the kernels' work counters, read through PAPI as software-defined events (no PMU needed)
expect_status 0 "run with the sde counters" -- "$bin" run --method lsh --n 64K --reps 2 --threads 2 --counters sde --json
cp "$tmp/out" "$tmp/sde.json"
ATTNBENCH_PAPI_DISABLE=perf_event,perf_event_uncore "$bin" run --method block_sparse --n 16K --reps 1 --counters default --json >"$tmp/sde_noperf.json" 2>/dev/null
"$bin" run --method full_stream --causal --n 4K --reps 1 --counters sde:::attn::SCORES,sde:::attn::SCORE --json >"$tmp/sde_typo.json" 2>/dev/null
"$bin" run --method full_stream --n 4K --reps 1 --counters none --json >"$tmp/sde_none.json" 2>/dev/null
"$bin" run --method reversible --layers 2 --heads 2 --n 1K --reps 1 --counters sde --json >"$tmp/sde_train.json" 2>/dev/null
/usr/bin/python3 - "$tmp" <<'PY' && pass || fail "the sde work counters"
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/sde.json"))
c, w = r["counters"], r["work"]
assert c["sde:::attn::SCORES"] == w["model_scores"] == 2 * 65536 * 128, (c, w)  # every candidate
assert w["counted"]["SCORES"] == c["sde:::attn::SCORES"] and w["scores_vs_model"] == 1.0
assert c["sde:::attn::LSH_BUCKETS"] > 0 and c["sde:::attn::ROWS_GATHERED"] > 0
assert w["duplicates"] > 0 and 0 < w["duplicates_share"] < 0.1, w
assert r["counters_unavailable"] == {}, r["counters_unavailable"]
# perf_event off: the hardware and software events say why, the sde ones still count
r = json.load(open(d + "/sde_noperf.json"))
assert r["counters"]["perf::TASK-CLOCK"] is None and "perf_event" in r["counters_unavailable"]["perf::TASK-CLOCK"]
assert r["counters"]["sde:::attn::SCORES"] == r["work"]["model_scores"] > 0
assert r["counters"]["sde:::attn::RANDOM_BLOCKS"] > 0
# causal: the diagonal tiles' masked scores are counted, the unmasked ones are the model's
r = json.load(open(d + "/sde_typo.json"))
assert r["counters"]["sde:::attn::SCORE"] is None and "no such attn counter" in r["counters_unavailable"]["sde:::attn::SCORE"]
w = r["work"]
assert w["counted"]["SCORES_MASKED"] > 0 and w["scores_vs_model"] > 1 and w["unmasked_vs_model"] == 1.0, w
r = json.load(open(d + "/sde_none.json"))
assert r["work"] is None and "counted nothing" in r["unavailable"]["work"], r["unavailable"]
r = json.load(open(d + "/sde_train.json"))
w = r["work"]["counted"]
assert w["LAYERS_RECOMPUTED"] == 2 and w["FF_CHUNKS"] > 0 and w["BWD_SCORES"] > 0 and r["work"]["model_scores"] is None, r["work"]
PY
expect_status 0 "list the counters" -- "$bin" list --counters
grep -q "sde:::attn::SCORES_MASKED" "$tmp/out" && pass || fail "list --counters does not name the attn counters"

# --- shards: --list plans them, their union is the unsharded sweep, merge puts them together
printf -- '--methods full,full_stream,lsh --n 256:1K --reps 1 --counters none --threads 1\n--methods block_sparse --n 512:1K --param block_sparse.n_rand=1,2 --reps 1 --counters none --threads 1\n' >"$tmp/shard.suite"
expect_status 0 "sweep --list" -- "$bin" sweep --suite "$tmp/shard.suite" --list
awk 'NR > 1 && $1 ~ /\// {print $2}' "$tmp/out" | sort >"$tmp/all_ids"
: >"$tmp/shard_ids"
for k in 0 1 2; do
    "$bin" sweep --suite "$tmp/shard.suite" --list --shard $k/3 | awk 'NR > 1 && $1 ~ /\// {print $2}' >>"$tmp/shard_ids"
done
[ "$(wc -l <"$tmp/all_ids")" = 13 ] && [ "$(sort "$tmp/shard_ids" | uniq -d | wc -l)" = 0 ] &&
    sort "$tmp/shard_ids" | cmp -s - "$tmp/all_ids" && pass || fail "the shards are not a partition of the sweep's points"
expect_status 2 "a shard out of range" -- "$bin" sweep --suite "$tmp/shard.suite" --shard 3/3 --out "$tmp/x.jsonl"
expect_status 2 "--shard all/N without --list" -- "$bin" sweep --suite "$tmp/shard.suite" --shard all/3 --out "$tmp/x.jsonl"
"$bin" sweep --suite "$tmp/shard.suite" --out "$tmp/whole.jsonl" 2>/dev/null
for k in 0 1 2; do "$bin" sweep --suite "$tmp/shard.suite" --shard $k/3 --out "$tmp/part$k.jsonl" 2>/dev/null; done
expect_status 0 "merge the shards" -- "$bin" merge --out "$tmp/merged/all.jsonl" "$tmp/part0.jsonl" "$tmp/part1.jsonl" "$tmp/part2.jsonl"
/usr/bin/python3 - "$tmp/whole.jsonl" "$tmp/merged/all.jsonl" "$tmp/part0.jsonl" <<'PY' && pass || fail "the merged shards are not the unsharded sweep"
import json, sys
whole = {r["point_id"]: r for r in map(json.loads, open(sys.argv[1]))}
merged = [json.loads(l) for l in open(sys.argv[2])]
assert len(merged) == len({r["point_id"] for r in merged}) == len(whole) == 13, len(merged)
assert {r["point_id"]: r["status"] for r in merged} == {k: r["status"] for k, r in whole.items()}
part = json.loads(open(sys.argv[3]).readline())
assert part["context"]["shard"] == "0/3" and whole[part["point_id"]]["context"].get("shard") is None
PY
# a point measured twice: the ok record over a failed one, the newer of two ok ones, with a warning
head -n 1 "$tmp/part0.jsonl" | /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.stdin.read()); r["status"] = "crashed"; r["wall_s"] = None; print(json.dumps(r))' >"$tmp/crashedrec.jsonl"
head -n 1 "$tmp/part0.jsonl" | sed 's/"date":"[^"]*"/"date":"2099-01-01T00:00:00Z"/; s/"wall_s":[0-9.e-]*/"wall_s":42.5/' >"$tmp/newer.jsonl"
expect_status 0 "merge a failed record after an ok one" -- "$bin" merge --out "$tmp/m2.jsonl" "$tmp/part0.jsonl" "$tmp/crashedrec.jsonl"
grep -c '"status":"crashed"' "$tmp/m2.jsonl" | grep -qx 0 && pass || fail "merge kept a failed record over an ok one"
expect_status 0 "merge a newer ok record" -- "$bin" merge --out "$tmp/m3.jsonl" "$tmp/newer.jsonl" "$tmp/part0.jsonl"
grep -q '"wall_s":42.5' "$tmp/m3.jsonl" && grep -q "measured twice; keeping the newer (2099" "$tmp/err" && pass ||
    fail "merge did not keep the newer of two ok records, with a warning: $(cat "$tmp/err")"
cp "$tmp/part1.jsonl" "$tmp/torn.jsonl"; printf '{"schema":"attnbench/1","point_id":"00' >>"$tmp/torn.jsonl"
expect_status 2 "merge a torn shard" -- "$bin" merge --out "$tmp/m4.jsonl" "$tmp/part0.jsonl" "$tmp/torn.jsonl"
grep -q "torn record" "$tmp/err" && [ ! -e "$tmp/m4.jsonl" ] && pass || fail "merge of a torn shard: $(cat "$tmp/err")"
echo '{"hello": 1}' >"$tmp/foreign.jsonl"
expect_status 2 "merge a foreign file" -- "$bin" merge --out "$tmp/m5.jsonl" "$tmp/foreign.jsonl"
expect_status 0 "check several shards against the whole" -- "$bin" check --baseline "$tmp/whole.jsonl" "$tmp/part0.jsonl" "$tmp/part1.jsonl" "$tmp/part2.jsonl" --metric peak_rss:rtol=50%,atol=64MiB --metric heap_peak:rtol=50%,atol=64MiB
# inside a Slurm job, the job's memory bounds the points even where no cgroup enforces it
SLURM_JOB_ID=7 SLURM_MEM_PER_CPU=700 SLURM_CPUS_ON_NODE=2 "$bin" run --method full --n 32K --reps 1 --counters none --json >"$tmp/slurm_mem.json" 2>/dev/null
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); mb = r["context"]["memory_bound"]
assert mb["slurm_allocation_bytes"] == 1400 * 2**20 and mb["smallest"] == "Slurm allocation", mb
assert r["status"] == "skipped" and "80% of Slurm allocation" in r["reason"], r["reason"]
assert r["context"]["slurm"]["job_id"] == "7" and r["context"]["slurm"]["mem_per_cpu_mb"] == "700"
' "$tmp/slurm_mem.json" && pass || fail "a Slurm job's memory does not bound its points: $(head -c 300 "$tmp/slurm_mem.json")"

# --- report: files written, valid images, every point listed
rp=(--methods full,lsh --n 1K:4K --reps 1 --counters none)
"$bin" sweep "${rp[@]}" --out "$tmp/r.jsonl" 2>/dev/null
printf -- '--methods full --n 64K --reps 1 --mem-limit 1G\n' >"$tmp/skip.suite"
"$bin" sweep --suite "$tmp/skip.suite" --out "$tmp/r2.jsonl" 2>/dev/null
expect_status 0 "report" -- "$bin" report "$tmp/r.jsonl" "$tmp/r2.jsonl" --out "$tmp/rep"
plots="report.md results.csv memory.png memory.svg memory.gp memory.dat time.png gflops.png"
rw=(--methods full_stream,block_sparse --n 1K:4K --reps 1 --counters sde)
"$bin" sweep "${rw[@]}" --out "$tmp/rw.jsonl" 2>/dev/null
expect_status 0 "report of points that counted their work" -- "$bin" report "$tmp/rw.jsonl" --out "$tmp/repw"
[ -s "$tmp/repw/scores_per_token.png" ] && grep -q "^| block_sparse | 4096 | .* | 1.0000 | 1.0000 |" "$tmp/repw/report.md" && pass ||
    fail "the report has no scores-per-token plot or work table"
grep -q '"heap_peak_bytes":[0-9]' "$tmp/r.jsonl" && plots="$plots heap.png" # not in sanitizer builds
for f in $plots; do
    [ -s "$tmp/rep/$f" ] && pass || fail "report did not write $f"
done
/usr/bin/python3 - "$tmp/rep" "$tmp/r.jsonl" "$tmp/r2.jsonl" <<'PY' && pass || fail "report contents"
import csv, glob, json, re, struct, sys
d = sys.argv[1]
recs = [json.loads(l) for f in sys.argv[2:] for l in open(f)]
for png in glob.glob(d + "/*.png"):
    head = open(png, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", png
    w, h = struct.unpack(">II", head[16:24])
    assert w >= 600 and h >= 400, (png, w, h)
md = open(d + "/report.md").read()
rows = re.findall(r"^\| (\d+) \| (\w+) \|", md, re.M)
assert len(rows) == len(recs), (len(rows), len(recs))
assert "skipped" in md and "more than the memory limit" in md  # the skipped point and why
assert re.search(r"^\| full \| 4096 \| 1024\.\.4096 \(3 points\) \| \d\.\d\d ±", md, re.M), "no fit for full"
assert re.search(r"^\| lsh \| 4096 \|", md, re.M), "no fit for lsh"
rows = list(csv.DictReader(open(d + "/results.csv")))
assert len(rows) == len(recs) and {"point_id", "n", "peak_rss_bytes", "status"} <= set(rows[0])
assert any(r["status"] == "skipped" and r["wall_s"] == "" for r in rows)  # empty, not 0
PY
# fits.csv and fits.json: every series and metric; crossovers: full's time set to (n/1K)^2 s and
# lsh's to 3 n/1K s cross at n = 3072, between the measured 2K and 4K
/usr/bin/python3 - "$tmp/rep" "$tmp/r.jsonl" <<'PY' && pass || fail "fits.csv and fits.json"
import csv, json, sys
import numpy as np
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/fits.csv")))
js = json.load(open(d + "/fits.json"))
assert len(rows) == len(js) == 8 and {r["metric"] for r in rows} == {"peak_rss", "point_rss", "heap_peak", "time"}
assert {"b_theil_sen", "busy_excluded", "reliable", "reason"} <= set(rows[0]), rows[0].keys()
# full's exponents against least squares of its own records, computed here: peak RSS (bent by
# the process's pages) and point RSS (the scores, n^2, once those pages are taken off)
recs = [json.loads(l) for l in open(sys.argv[2])]
full = sorted((r for r in recs if r["method"] == "full" and r["status"] == "ok"), key=lambda r: r["n"])
x = np.log([r["n"] for r in full])
for metric, y in (("peak_rss", [r["peak_rss_bytes"] for r in full]),
                  ("point_rss", [r["peak_rss_bytes"] - r["rss_before_inputs_bytes"] -
                                 (r["rss_file_growth_bytes"] or 0) for r in full])):
    fit = [r for r in js if r["series"] == "full" and r["metric"] == metric][0]
    b = np.polyfit(x, np.log(y), 1)[0]
    assert abs(fit["b"] - b) < 1e-9 and fit["points"] == 3 and fit["n_min"] == 1024 and fit["n_max"] == 4096, (fit, b)
    slopes = sorted((np.log(y[j]) - np.log(y[i])) / (x[j] - x[i]) for i in range(3) for j in range(i + 1, 3))
    assert abs(fit["b_theil_sen"] - slopes[1]) < 1e-9, (fit, slopes)
    # the verdict follows from the fit: enough points, R^2 and standard error within bounds
    good = fit["points"] >= 3 and fit["r2"] >= 0.99 and fit["se_b"] <= 0.05 and fit["busy_excluded"] == 0
    assert fit["reliable"] == good and (fit["reason"] is None) == good, fit
point = [r for r in js if r["series"] == "full" and r["metric"] == "point_rss"][0]
assert 1.5 < point["b"] < 2.05, point  # quadratic (the n x n scores), bent at small n
PY
/usr/bin/python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l); x = r["n"] / 1024
    if r["status"] == "ok":
        r["wall_s"] = x * x if r["method"] == "full" else 3 * x
    print(json.dumps(r))' "$tmp/r.jsonl" >"$tmp/cross.jsonl"
"$bin" report "$tmp/cross.jsonl" --out "$tmp/repx" 2>/dev/null
grep -q "^| lsh | full | n ≈ 3072 (2^11.6), measured |" "$tmp/repx/report.md" && pass ||
    fail "crossover: $(grep -A4 'Crossovers' "$tmp/repx/report.md" | tail -n 1)"
# check gates an exponent: lsh's memory made to grow one power of n faster is a regression. The
# baseline's memory is made an exact power law (n for lsh, n^2 for full), so its fits stand; a
# fit that does not stand (the measured small-n memory, bent by the process's pages) is refused.
/usr/bin/python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["status"] == "ok":
        x = r["n"] / 1024
        r["peak_rss_bytes"] = int((x * x if r["method"] == "full" else x) * 64 * 2**20)
    print(json.dumps(r))' "$tmp/r.jsonl" >"$tmp/clean.jsonl"
/usr/bin/python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["method"] == "lsh" and r["status"] == "ok":
        r["peak_rss_bytes"] *= r["n"] / 1024
    print(json.dumps(r))' "$tmp/clean.jsonl" >"$tmp/superlinear.jsonl"
expect_status 1 "check an exponent that grew" -- "$bin" check --baseline "$tmp/clean.jsonl" "$tmp/superlinear.jsonl" --metric peak_rss:off --metric heap_peak:off --metric exponent:peak_rss:atol=0.05
grep -q "^lsh .* exponent:peak_rss .* REGRESSION" "$tmp/out" && grep -q "^full .* exponent:peak_rss .* ok" "$tmp/out" && pass ||
    fail "the exponent gate: $(cat "$tmp/out")"
expect_status 0 "check an unchanged exponent" -- "$bin" check --baseline "$tmp/clean.jsonl" "$tmp/clean.jsonl" --metric exponent:peak_rss
# an exponent that does not stand is not gated, either way: the measured one is bent at small n
/usr/bin/python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["method"] == "lsh" and r["n"] == 2048 and r["status"] == "ok":
        r["peak_rss_bytes"] *= 1.6  # a kink: a poor fit
    print(json.dumps(r))' "$tmp/clean.jsonl" >"$tmp/kinked.jsonl"
expect_status 2 "check an unreliable exponent" -- "$bin" check --baseline "$tmp/kinked.jsonl" "$tmp/clean.jsonl" --metric peak_rss:off --metric heap_peak:off --metric exponent:peak_rss
grep -q "^lsh .* exponent:peak_rss .* NOT GATED: the baseline.s fit is unreliable (.*)" "$tmp/out" && pass ||
    fail "an unreliable exponent was gated: $(cat "$tmp/out")"
expect_status 2 "an unknown exponent" -- "$bin" check --baseline "$tmp/r.jsonl" "$tmp/r.jsonl" --metric exponent:bogus
expect_status 2 "an exponent with rtol" -- "$bin" check --baseline "$tmp/r.jsonl" "$tmp/r.jsonl" --metric exponent:time:rtol=5%
# shards merge by point_id: a later record of a point replaces the earlier one
head -n 1 "$tmp/r.jsonl" | sed 's/"wall_s":[0-9.e-]*/"wall_s":123.5/' >"$tmp/r3.jsonl"
expect_status 0 "report merging a re-measured point" -- "$bin" report "$tmp/r.jsonl" "$tmp/r3.jsonl" --out "$tmp/repm"
/usr/bin/python3 - "$tmp/repm/results.csv" "$tmp/r.jsonl" "$tmp/r3.jsonl" <<'PY' && pass || fail "report did not merge by point_id"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
first = json.loads(open(sys.argv[3]).readline())
assert len(rows) == sum(1 for _ in open(sys.argv[2])), len(rows)
assert [float(r["wall_s"]) for r in rows if r["point_id"] == first["point_id"]] == [123.5]
PY
# a report does not depend on the order of its records (shards merge in any order): the same
# tables, CSV rows and plotted series, in the same order
for f in layers default; do
    tac results/$f/results.jsonl >"$tmp/${f}_rev.jsonl"
    "$bin" report results/$f/results.jsonl --out "$tmp/rep_${f}1" 2>/dev/null
    "$bin" report "$tmp/${f}_rev.jsonl" --out "$tmp/rep_${f}2" 2>/dev/null
    diff <(grep -v ' points from ' "$tmp/rep_${f}1/report.md") <(grep -v ' points from ' "$tmp/rep_${f}2/report.md") >/dev/null &&
        cat "$tmp/rep_${f}1"/*.dat | cmp -s - <(cat "$tmp/rep_${f}2"/*.dat) &&
        cmp -s "$tmp/rep_${f}1/results.csv" "$tmp/rep_${f}2/results.csv" &&
        pass || fail "the $f report changes with the order of its records"
done
# gnuplot failing or missing: the report says so, with gnuplot's own message, and exits 1
mkdir -p "$tmp/fakegnu" "$tmp/nognu"
printf '#!/bin/sh\ncat >/dev/null\necho "gnuplot> plot x" >&2\necho "         ^" >&2\necho "         line 3: fake failure" >&2\nexit 1\n' >"$tmp/fakegnu/gnuplot"
chmod +x "$tmp/fakegnu/gnuplot"
expect_status 1 "report with a failing gnuplot" -- env PATH="$tmp/fakegnu:$PATH" "$bin" report "$tmp/r.jsonl" --out "$tmp/repf"
grep -q "gnuplot failed on .*memory.gp (exit 1): line 3: fake failure" "$tmp/err" && pass || fail "gnuplot's message not reported: $(head -c 300 "$tmp/err")"
grep -q "the plot failed: .*fake failure" "$tmp/repf/report.md" && pass || fail "report.md does not say the plot failed"
ln -sf "$(command -v sh)" "$tmp/nognu/sh"
expect_status 1 "report without gnuplot" -- env PATH="$tmp/nognu" "$bin" report "$tmp/r.jsonl" --out "$tmp/repn"
grep -q "gnuplot could not run" "$tmp/err" && pass || fail "a missing gnuplot not reported: $(head -c 300 "$tmp/err")"
expect_status 2 "report missing file" -- "$bin" report "$tmp/none.jsonl" --out "$tmp/rep3"
expect_status 2 "report foreign file" -- "$bin" report "$tmp/foreign.jsonl" --out "$tmp/rep3"
expect_status 2 "report without --out" -- "$bin" report "$tmp/r.jsonl"
expect_status 2 "report without files" -- "$bin" report --out "$tmp/rep3"

# --- check: passes unchanged, bites on a 10% memory regression, incomplete when points lack
cp_=(--methods full,lsh --n 1K:4K --reps 1 --counters none)
"$bin" sweep "${cp_[@]}" --out "$tmp/base.jsonl" 2>/dev/null
"$bin" sweep "${cp_[@]}" --out "$tmp/same.jsonl" 2>/dev/null
ATTNBENCH_FAULT=inflate:10 "$bin" sweep "${cp_[@]}" --out "$tmp/worse.jsonl" 2>/dev/null
expect_status 0 "check unchanged" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/same.jsonl"
expect_status 1 "check 10% more memory" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/worse.jsonl"
grep -q "REGRESSION" "$tmp/out" && pass || fail "check printed no regression table"
head -n 3 "$tmp/same.jsonl" >"$tmp/partial.jsonl"
expect_status 2 "check missing point" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/partial.jsonl"
ATTNBENCH_FAULT=segv "$bin" sweep "${cp_[@]}" --out "$tmp/failed.jsonl" 2>/dev/null
expect_status 2 "check failed point" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/failed.jsonl"
sed 's/"schema":"attnbench\/1"/"schema":"attnbench\/9"/' "$tmp/same.jsonl" >"$tmp/schema.jsonl"
expect_status 2 "check schema mismatch" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/schema.jsonl"
expect_status 2 "check malformed tolerance" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/same.jsonl" --metric peak_rss:rtol=abc
expect_status 2 "check unknown metric" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/same.jsonl" --metric speed:rtol=5%
expect_status 2 "check missing baseline" -- "$bin" check --baseline "$tmp/none.jsonl" "$tmp/same.jsonl"
expect_status 2 "check foreign baseline" -- "$bin" check --baseline "$tmp/foreign.jsonl" "$tmp/same.jsonl"
expect_status 0 "check with a looser gate" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/worse.jsonl" --metric peak_rss:rtol=15% --metric heap_peak:off
expect_status 2 "check with every gate off" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/same.jsonl" --metric peak_rss:off --metric heap_peak:off
grep -q "no gated metric" "$tmp/err" && pass || fail "check with nothing compared did not say so"
expect_status 2 "check rtol without % above 1" -- "$bin" check --baseline "$tmp/base.jsonl" "$tmp/same.jsonl" --metric peak_rss:rtol=5
"$bin" sweep "${cp_[@]}" --threads 1 --out "$tmp/threads1.jsonl" 2>/dev/null
"$bin" check --baseline "$tmp/base.jsonl" "$tmp/threads1.jsonl" >/dev/null 2>"$tmp/err"
st=$?
[ $st = 2 ] && { [ "$(nproc)" = 1 ] || grep -q "the baseline measured it with threads=$(nproc), this run with threads=1" "$tmp/err"; } &&
    pass || fail "check against a baseline of other threads: exit $st, $(head -c 300 "$tmp/err")"
# every suite pins the thread count, part of every point's identity: a suite run on a machine
# with another core count must still match its baseline
for suite in scripts/suites/*.suite; do
    grep -v '^#' "$suite" | grep -e '--methods' | grep -qv -e '--threads' && fail "$suite has a group without --threads" || pass
done
cp "$tmp/base.jsonl" "$tmp/upd.jsonl"
cp "$tmp/worse.jsonl" "$tmp/torn.jsonl"
printf '{"schema":"attnbench/1","point_id":"tor' >>"$tmp/torn.jsonl"
expect_status 0 "check --update" -- "$bin" check --baseline "$tmp/upd.jsonl" "$tmp/torn.jsonl" --update
cmp -s "$tmp/upd.jsonl" "$tmp/worse.jsonl" && pass || fail "--update did not rewrite the baseline with the whole records alone"


# --- training points: a reversible stack (the `reversible` method) and a standard one
expect_status 0 "run reversible" -- "$bin" run --method reversible --n 256 --reps 1 --json --counters none
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "ok" and r["method"] == "reversible" and r["stack"] == "reversible"
assert r["inner"] == "lsh" and r["layers"] == 2 and r["d_model"] == 64 and r["d_ff"] == 256
assert r["param_bytes"] > 0 and r["loss"] > 0 and r["model_activation_bytes"] > 0
' "$tmp/out" && pass || fail "run --method reversible record: $(head -c 300 "$tmp/out")"
expect_status 0 "run --train standard" -- "$bin" run --train --stack standard --layers 3 --method block_sparse --n 300 --heads 2 --d 16 --reps 1 --counters none
grep -q "training .*standard stack of 3 layers over block_sparse" "$tmp/out" && pass || fail "run --train table"
expect_status 2 "run bad stack" -- "$bin" run --method lsh --n 256 --stack sideways
expect_status 2 "run bad layers" -- "$bin" run --method reversible --n 256 --layers 0
expect_status 2 "run several layers" -- "$bin" run --method reversible --n 256 --layers 1,2
expect_status 1 "run training a causal etc" -- "$bin" run --train --method etc --causal --n 256 --reps 1
grep -q "unsupported" "$tmp/out" && pass || fail "a causal etc stack is not unsupported"
expect_status 0 "sweep over layers" -- "$bin" sweep --methods reversible,full_stream --train --stack standard --layers 1:4 --n 128 --reps 1 --warmup 0 --counters none --out "$tmp/layers.jsonl"
/usr/bin/python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
got = sorted((r["method"], r["stack"], r["layers"]) for r in recs)
assert got == sorted([("reversible", "reversible", l) for l in (1, 2, 4)] + [("full_stream", "standard", l) for l in (1, 2, 4)]), got
assert len({r["point_id"] for r in recs}) == 6
' "$tmp/layers.jsonl" && pass || fail "sweep over layers records"


# --- run --backward: one method's forward and backward, measured as one point
expect_status 0 "run --backward" -- "$bin" run --method block_sparse --n 700 --backward --reps 1 --json --counters none
"$bin" run --method block_sparse --n 700 --reps 1 --json --counters none >"$tmp/fwd_only.json" 2>/dev/null
/usr/bin/python3 -c '
import json, sys
r, f = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert r["status"] == "ok" and r["backward"] is True and f["backward"] is False
assert r["point_id"] != f["point_id"] and "backward=1" in r["point_key"]
assert r["model_flops"] > 3 * f["model_flops"]  # the backward is 2.5 forwards
assert r["model_io_bytes"] > f["model_io_bytes"]  # dout, dq, dk, dv
' "$tmp/out" "$tmp/fwd_only.json" && pass || fail "run --backward record: $(head -c 300 "$tmp/out")"
expect_status 1 "run --backward, a gradient left unwritten" -- env ATTNBENCH_FAULT=unwritten "$bin" run --method lsh --n 256 --backward --reps 1 --counters none
grep -q "status *error" "$tmp/out" && pass || fail "an unwritten output with --backward is not an error"

# --- --dtype bf16: an axis of the sweep and of the point's identity; half the tensors' bytes;
# err_vs_fp32 beside err_vs_exact; fp32 ids unchanged; what cannot run bf16 says so
"$bin" sweep --methods full_stream,lsh --n 512 --dtype fp32,bf16 --accuracy --backward --reps 1 \
    --counters none --no-yardstick --out "$tmp/dtype.jsonl" >/dev/null 2>&1
"$bin" run --method full_stream --n 512 --accuracy --backward --reps 1 --counters none --json \
    >"$tmp/fp32_run.json" 2>/dev/null
/usr/bin/python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == 4, len(recs)
by = {(r["method"], r["dtype"]): r for r in recs}
assert set(by) == {(m, t) for m in ("full_stream", "lsh") for t in ("fp32", "bf16")}, set(by)
for m in ("full_stream", "lsh"):
    f, b = by[(m, "fp32")], by[(m, "bf16")]
    assert f["status"] == b["status"] == "ok", (f["reason"], b["reason"])
    assert b["point_id"] != f["point_id"] and "dtype=bf16" in b["point_key"]
    assert "dtype" not in f["point_key"]  # fp32 points keep the ids they always had
    assert b["model_io_bytes"] < 0.6 * f["model_io_bytes"], (b["model_io_bytes"], f["model_io_bytes"])
    assert f["err_vs_fp32"] is None
    e = b["err_vs_fp32"]
    assert 0 < e["rel_fro"] < 1e-2 and e["reference"].startswith(m), e
    assert b["err_vs_exact"]["rel_fro"] > 0
one = json.load(open(sys.argv[2]))
assert one["point_id"] == by[("full_stream", "fp32")]["point_id"]
' "$tmp/dtype.jsonl" "$tmp/fp32_run.json" && pass || fail "sweep --dtype fp32,bf16: $(head -c 400 "$tmp/dtype.jsonl")"
expect_status 2 "--dtype fp16" -- "$bin" run --method full --n 64 --dtype fp16
expect_status 2 "run --dtype with a list" -- "$bin" run --method full --n 64 --dtype fp32,bf16
# ring over two MPI ranks in bf16: K and V travel as bf16, so a rank sends less
for t in fp32 bf16; do
    "$bin" run --method ring --n 512 --heads 2 --ranks 2 --dtype $t --accuracy --backward --reps 1 \
        --counters none --json >"$tmp/ring_$t.json" 2>/dev/null
done
/usr/bin/python3 -c '
import json, sys
f, b = (json.load(open(p)) for p in sys.argv[1:3])
assert f["status"] == b["status"] == "ok", (f["reason"], b["reason"])
assert b["ranks"]["bytes_sent_max"] < 0.8 * f["ranks"]["bytes_sent_max"]
assert 0 < b["err_vs_exact"]["rel_fro"] < 1e-2 and max(b["err_vs_exact"]["grad"][g] for g in ("dq", "dk", "dv")) < 1e-2
' "$tmp/ring_fp32.json" "$tmp/ring_bf16.json" && pass || fail "ring over ranks in bf16: $(head -c 300 "$tmp/ring_bf16.json")"

# --- forward and backward --dtype bf16: float32 files rounded on load, outputs float32 holding
# bf16 values; bfloat16 files ('<V2', as numpy saves ml_dtypes' bfloat16) in, the same out
/usr/bin/python3 - "$tmp" <<'PY'
import numpy as np, sys
rng = np.random.default_rng(3)
for name in ("q", "k", "v", "do"):
    a = rng.standard_normal((2, 2, 128, 16)).astype("<f4")
    np.save(f"{sys.argv[1]}/bf_{name}.npy", a)
    bits = (a.view("<u4") + 0x7FFF + ((a.view("<u4") >> 16) & 1)) >> 16  # round to nearest even
    np.save(f"{sys.argv[1]}/bf_{name}16.npy", bits.astype("<u2").view("V2"))
PY
f32=(--q "$tmp/bf_q.npy" --k "$tmp/bf_k.npy" --v "$tmp/bf_v.npy")
v2=(--q "$tmp/bf_q16.npy" --k "$tmp/bf_k16.npy" --v "$tmp/bf_v16.npy")
for m in full_stream lsh; do
    "$bin" forward --method $m "${f32[@]}" --out "$tmp/o32_$m.npy" 2>/dev/null
    "$bin" forward --method $m "${f32[@]}" --out "$tmp/obf_$m.npy" --dtype bf16 2>/dev/null
    "$bin" forward --method $m "${v2[@]}" --out "$tmp/ov2_$m.npy" --dtype bf16 2>/dev/null
done
"$bin" backward --method full_stream "${f32[@]}" --dout "$tmp/bf_do.npy" --dq "$tmp/dq32.npy" \
    --dk "$tmp/dk32.npy" --dv "$tmp/dv32.npy" 2>/dev/null
"$bin" backward --method full_stream "${v2[@]}" --dout "$tmp/bf_do16.npy" --dq "$tmp/dq16.npy" \
    --dk "$tmp/dk16.npy" --dv "$tmp/dv16.npy" --dtype bf16 2>/dev/null
/usr/bin/python3 - "$tmp" <<'PY' && pass || fail "forward/backward --dtype bf16 files"
import numpy as np, sys
t = sys.argv[1]
widen = lambda a: (a.view("<u2").astype("<u4") << 16).view("<f4")
rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
for m in ("full_stream", "lsh"):
    o32, obf, ov2 = (np.load(f"{t}/{p}_{m}.npy") for p in ("o32", "obf", "ov2"))
    assert obf.dtype == np.float32 and ov2.dtype.kind == "V" and ov2.dtype.itemsize == 2
    assert not (obf.view("<u4") & 0xFFFF).any()  # float32 holding bf16 values
    assert np.array_equal(widen(ov2), obf)        # the same run, whichever file type
    assert 0 < rel(obf, o32) < 1e-2, (m, rel(obf, o32))
for g in ("dq", "dk", "dv"):
    a32, a16 = np.load(f"{t}/{g}32.npy"), widen(np.load(f"{t}/{g}16.npy"))
    assert 0 < rel(a16, a32) < 3e-2, (g, rel(a16, a32))
PY
expect_status 2 "forward: a bfloat16 file without --dtype bf16" -- "$bin" forward --method full "${v2[@]}" --out "$tmp/x.npy"
expect_status 2 "forward: q bfloat16, k float32" -- "$bin" forward --method full --q "$tmp/bf_q16.npy" --k "$tmp/bf_k.npy" --v "$tmp/bf_v16.npy" --out "$tmp/x.npy" --dtype bf16
expect_status 2 "forward --ranks with --dtype bf16" -- "$bin" forward --method ring "${f32[@]}" --out "$tmp/x.npy" --dtype bf16 --ranks 2
expect_status 2 "forward --dtype fp64" -- "$bin" forward --method full "${f32[@]}" --out "$tmp/x.npy" --dtype fp64
[ ! -e "$tmp/x.npy" ] && pass || fail "a refused forward wrote its output"

# --- external workloads: someone else's program under the same harness
expect_status 0 "run ext:numpy_textbook" -- "$bin" run --method ext:numpy_textbook --n 512 --reps 2 --accuracy --json --counters sw
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "ok" and r["method"] == "ext:numpy_textbook" and r["implements"] == "full"
assert "method=ext:numpy_textbook;" in r["point_key"]
assert len(r["wall_s_reps"]) == 2 and r["wall_s"] > 0 and r["gflops"] > 0
# the peak is reset at ready, so a program that allocates nothing more peaks where it stood;
# at n = 512 the 384 KiB of numpy inputs can land in pages it already holds: ready >= start
assert r["peak_rss_bytes"] >= r["rss_before_kernel_bytes"] >= r["rss_before_inputs_bytes"] > 0, r
assert r["model_bytes"] > 0 and r["model_flops"] == 4 * 512 * 512 * 64  # the full model
assert r["heap_peak_bytes"] is None and "jemalloc" in r["unavailable"]["heap_peak_bytes"]
# the counters attached to the program: each counts (task clock and page faults > 0: it ran
# and loaded arrays) or is null with the reason (PAPI cannot count it on this machine)
c, why = r["counters"], r["counters_unavailable"]
assert set(c) == {"perf::TASK-CLOCK", "perf::PAGE-FAULTS", "perf::MINOR-FAULTS", "perf::MAJOR-FAULTS"}, c
for e, v in c.items():
    assert (v is None) == (e in why), (e, v, why)
    assert v is None or v >= 0, (e, v)
for e in "perf::TASK-CLOCK", "perf::PAGE-FAULTS":
    assert c[e] is None or c[e] > 0, (e, c)
# the CPU time of the program comes from /proc/PID/stat in 10 ms ticks over its 3 runs (warm-up too):
# a whole number of ticks, which at n = 512 can be none
ticks = r["rusage"]["cpu_s"] * 3 * 100
assert ticks >= 0 and abs(ticks - round(ticks)) < 1e-6 and r["peer"]["context"]["numpy"], r["rusage"]
assert r["machine_load"]["other_share"] >= 0 and "machine_load" not in r["unavailable"]
assert r["err_vs_exact"]["max_rel"] < 1e-5, r["err_vs_exact"]
' "$tmp/out" && pass || fail "ext:numpy_textbook record: $(head -c 400 "$tmp/out")"
peer=tests/peers/misbehaving
expect_status 0 "run ext:PATH" -- "$bin" run --method "ext:./$peer" --n 256 --reps 3 --json --counters none
grep -q '"method":"ext:./tests/peers/misbehaving"' "$tmp/out" && pass || fail "ext:PATH record"
MISBEHAVE=hog "$bin" run --method "ext:./$peer" --n 256 --reps 3 --json --counters none >"$tmp/hog.json" 2>/dev/null
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "ok" and r["peak_rss_bytes"] - r["rss_before_kernel_bytes"] >= 64 * 2**20, r
' "$tmp/hog.json" && pass || fail "the peak of an external program misses memory it touched"
# (sigkill: a SIGKILL nobody sent and no OOM kill counted: `killed`, with the kernel's evidence)
for mode in crash:crashed sigkill:killed exit:crashed garbage:error fewer:crashed; do
    expect_status 1 "ext program that does $mode" -- env MISBEHAVE=${mode%%:*} "$bin" run --method "ext:./$peer" --n 256 --reps 3 --counters none
    grep -q "^status *${mode#*:}" "$tmp/out" && pass || fail "ext $mode: $(grep status "$tmp/out")"
done
MISBEHAVE=sigkill "$bin" run --method "ext:./$peer" --n 256 --reps 3 --counters none --json 2>/dev/null |
    grep -q '"reason":"the program was killed by signal 9 (SIGKILL), not sent by attnbench; cause unknown' &&
    pass || fail "a SIGKILLed program's record does not say what the kernel counted"
expect_status 2 "run ext:unknown" -- "$bin" run --method ext:no_such_peer --n 256
grep -q "no executable program at .*no_such_peer" "$tmp/err" && pass || fail "ext unknown message: $(cat "$tmp/err")"
expect_status 2 "run ext: a program that cannot describe itself" -- "$bin" run --method ext:/bin/true --n 256
grep -q "did not print" "$tmp/err" && pass || fail "ext describe message: $(cat "$tmp/err")"
expect_status 0 "sweep ours beside ext" -- "$bin" sweep --methods full_stream,ext:numpy_textbook --n 256:512 --reps 1 --counters none --out "$tmp/ext.jsonl"
expect_status 0 "report with a peer" -- "$bin" report "$tmp/ext.jsonl" --out "$tmp/extrep"
grep -q "## Beside the peers" "$tmp/extrep/report.md" && grep -q "| full_stream | ext:numpy_textbook | 512 |" "$tmp/extrep/report.md" && pass ||
    fail "the report has no peers section or ratio table"

# --- backward: three gradient files of the inputs' shape; bad input gets one line
npy "$tmp/do.npy" '<f4' '(33, 16)'
b=(--q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --dout "$tmp/do.npy" --dq "$tmp/dq.npy" --dk "$tmp/dk.npy" --dv "$tmp/dv.npy")
g=("$tmp/dq.npy" "$tmp/dk.npy" "$tmp/dv.npy" "$tmp/q.npy" "$tmp/k.npy" "$tmp/v.npy" "$tmp/do.npy")
for m in full full_stream block_sparse etc; do
    rm -f "$tmp"/d[qkv].npy
    expect_status 0 "backward $m" -- "$bin" backward --method $m "${b[@]}"
    [ "$(stat -c %s "$tmp/dq.npy")" = $((128 + 33 * 16 * 4)) ] && [ -s "$tmp/dk.npy" ] && [ -s "$tmp/dv.npy" ] &&
        pass || fail "backward $m did not write dq, dk, dv"
    # n = 33: one block and every token global, so each equals exact attention's gradients
    msg=$(gradclose "${g[@]}" 2>&1) && pass || fail "backward $m: gradients differ from NumPy's: $msg"
done
expect_status 0 "backward full_stream causal" -- "$bin" backward --method full_stream "${b[@]}" --causal
msg=$(gradclose "${g[@]}" causal 2>&1) && pass || fail "backward full_stream causal: $msg"
expect_status 0 "backward lsh" -- "$bin" backward --method lsh --param chunk_len=33 "${b[@]}" --causal
msg=$(gradclose "${g[@]}" causal lsh 2>&1) && pass || fail "backward lsh: gradients differ from NumPy's: $msg"
expect_status 2 "backward with a NaN in dout" -- "$bin" backward --method full --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --dout "$tmp/nan.npy" --dq "$tmp/dq.npy" --dk "$tmp/dk.npy" --dv "$tmp/dv.npy"
grep -q -- "--dout .*element (5, 3) is NaN" "$tmp/err" && pass || fail "backward NaN message: $(cat "$tmp/err")"
expect_status 2 "backward lsh, n not a multiple of chunk_len" -- "$bin" backward --method lsh "${b[@]}" --param chunk_len=16
expect_status 2 "backward without --dv" -- "$bin" backward --method full --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --dout "$tmp/do.npy" --dq "$tmp/dq.npy" --dk "$tmp/dk.npy"
expect_status 2 "backward dout shape" -- "$bin" backward --method full --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --dout "$tmp/short.npy" --dq "$tmp/dq.npy" --dk "$tmp/dk.npy" --dv "$tmp/dv.npy"
expect_status 2 "forward with a backward flag" -- "$bin" forward --method full --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/o.npy" --dq "$tmp/dq.npy"

# --- train-step: a step's loss, every gradient, dx and each layer's buckets written; the
# weights and target it used, given back, give the same step bit for bit; bad input gets one
# line (tests/peers_test.py compares the step itself with Hugging Face's ReformerModel)
npy "$tmp/tx.npy" '<f4' '(2, 64, 16)'
ts=(--method lsh --param chunk_len=16 --param n_hashes=2 --stack reversible --layers 2 --heads 2 --d-ff 24)
expect_status 0 "train-step reversible over lsh" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --out "$tmp/ts1"
expect_status 0 "train-step on the weights and target it wrote" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --out "$tmp/ts2" --weights "$tmp/ts1/weights" --target "$tmp/ts1/target.npy"
/usr/bin/python3 - "$tmp/ts1" "$tmp/ts2" <<'PY' && pass || fail "train-step did not write its step, or did not repeat it on its own weights"
import glob, json, os, sys
import numpy as np
a, b = sys.argv[1:3]
sa, sb = (json.load(open(f"{d}/step.json")) for d in (a, b))
assert sa["loss"] == sb["loss"] and sa["loss"] > 0 and sa["weights"] is None and sb["weights"], (sa, sb)
assert sa["params"]["n_hashes"] == 2 and sa["d_model"] == 16 and sa["d"] == 8 and sa["d_ff"] == 24
names = ["ln1_g", "ln1_b", "wq", "wv", "wo", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2"]  # no wk: shared QK
want = {"wq": (16, 16), "w1": (16, 24), "b1": (24,), "w2": (24, 16), "ln2_g": (16,)}
for d in a, b:
    got = sorted(os.path.basename(f) for f in glob.glob(f"{d}/grads/*.npy"))
    assert got == sorted(f"layer{l}.{n}.npy" for l in range(2) for n in names), got
for l in range(2):
    for n in names:
        ga, gb = (np.load(f"{d}/grads/layer{l}.{n}.npy") for d in (a, b))
        assert ga.dtype == np.float32 and np.array_equal(ga, gb) and np.abs(ga).max() > 0, (l, n)
        assert ga.shape == want.get(n, ga.shape) == np.load(f"{a}/weights/layer{l}.{n}.npy").shape
    s = np.load(f"{a}/structure/layer{l}.npy")
    assert s.shape == (2, 2, 2, 64) and s.dtype == np.int32 and 0 <= s.min() and s.max() < 8, s.shape
    assert np.array_equal(s, np.load(f"{b}/structure/layer{l}.npy"))
assert np.load(f"{a}/target.npy").shape == (2, 64, 32) and not os.path.exists(f"{b}/target.npy")
assert not os.path.exists(f"{b}/weights")
assert np.array_equal(np.load(f"{a}/dx.npy"), np.load(f"{b}/dx.npy"))
PY
expect_status 0 "train-step standard over full_stream" -- "$bin" train-step --method full_stream --stack standard --layers 1 --heads 4 --causal --x "$tmp/tx.npy" --out "$tmp/ts3"
[ -s "$tmp/ts3/grads/layer0.wk.npy" ] && [ ! -e "$tmp/ts3/structure" ] && [ -s "$tmp/ts3/dx.npy" ] &&
    pass || fail "train-step standard: wk gradient missing, or a structure for a method without one"
cp -r "$tmp/ts1/weights" "$tmp/tw"
rm "$tmp/tw/layer1.wo.npy"
expect_status 2 "train-step with a weight file missing" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --out "$tmp/tsx" --weights "$tmp/tw"
grep -q "layer1.wo.npy" "$tmp/err" && pass || fail "the missing weight is not named: $(cat "$tmp/err")"
npy "$tmp/tw/layer1.wo.npy" '<f4' '(16, 8)'
expect_status 2 "train-step with a misshaped weight" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --out "$tmp/tsx" --weights "$tmp/tw"
grep -q "weight wo of layer 1 .* has shape (16, 8); the step needs (16, 16)" "$tmp/err" && pass || fail "misshaped weight message: $(cat "$tmp/err")"
cp "$tmp/ts1/weights/layer1.wo.npy" "$tmp/tw/" && cp "$tmp/ts1/weights/layer0.wq.npy" "$tmp/tw/layer0.wk.npy"
expect_status 2 "train-step with a wk for lsh" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --out "$tmp/tsx" --weights "$tmp/tw"
rm "$tmp/tw/layer0.wk.npy"
/usr/bin/python3 -c 'import numpy as np, sys; w = np.load(sys.argv[1]); w[2] = np.inf; np.save(sys.argv[1], w)' "$tmp/tw/layer0.b1.npy"
expect_status 2 "train-step with an infinite weight" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --out "$tmp/tsx" --weights "$tmp/tw"
/usr/bin/python3 -c 'import numpy as np, sys; x = np.load(sys.argv[1]); x[1, 5, 3] = np.nan; np.save(sys.argv[2], x)' "$tmp/tx.npy" "$tmp/txnan.npy"
expect_status 2 "train-step with a NaN in x" -- "$bin" train-step "${ts[@]}" --x "$tmp/txnan.npy" --out "$tmp/tsx"
grep -q -- "--x .*txnan.npy: element (1, 5, 3) is NaN" "$tmp/err" && pass || fail "train-step NaN message: $(cat "$tmp/err")"
expect_status 2 "train-step with d_model not a multiple of --heads" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --heads 3 --out "$tmp/tsx"
expect_status 2 "train-step with a target of the standard stack's width" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --out "$tmp/tsx" --target "$tmp/tx.npy"
expect_status 2 "train-step with n not a multiple of chunk_len" -- "$bin" train-step "${ts[@]}" --x "$tmp/tx.npy" --param chunk_len=24 --out "$tmp/tsx"
expect_status 2 "train-step without --x" -- "$bin" train-step --method lsh --out "$tmp/tsx"
[ ! -e "$tmp/tsx" ] && pass || fail "a refused train-step wrote its output folder"

# --- capacity: each method's n_max from records, against an oracle: the memory line refitted in
# NumPy through the same points, and the model's bytes at n_max and the next length as `run`
# reports them (a point skipped at once by a 1K memory limit still carries its model)
"$bin" sweep --methods full,lsh --n 512:8K --reps 1 --counters none --no-yardstick --out "$tmp/cal.jsonl" 2>/dev/null
expect_status 0 "capacity from records" -- "$bin" capacity --mem 48MiB --methods full,lsh --from "$tmp/cal.jsonl" --json
/usr/bin/python3 - "$tmp/out" "$tmp/cal.jsonl" "$bin" <<'PY' && pass || fail "capacity's n_max or calibration disagrees with the oracle"
import json, subprocess, sys
import numpy as np
rows = {r["method"]: r for r in map(json.loads, open(sys.argv[1]))}
recs = [json.loads(l) for l in open(sys.argv[2])]
budget = 48 * 2**20
assert set(rows) == {"full", "lsh"}, rows.keys()
for m, r in rows.items():
    pts = [x for x in recs if x["method"] == m and x["status"] == "ok"]
    mb = np.array([x["model_bytes"] for x in pts], float)
    peak = np.array([x["peak_rss_bytes"] for x in pts], float)
    tail = mb >= mb.max() / 64
    ratio, base = np.polyfit(mb[tail], peak[tail], 1)
    c = r["calibration"]
    assert abs(c["memory_ratio"] / ratio - 1) < 1e-6 and abs(c["memory_base_bytes"] - base) < 1e-3 * base, (m, c, ratio, base)
    assert r["limited_by"] == "memory" and r["n_max"] > 0 and r["verified"] is None, r
    def model(n):
        out = subprocess.run([sys.argv[3], "run", "--method", m, "--n", str(n), "--mem-limit", "1K", "--counters", "none", "--json"], capture_output=True, text=True)
        rec = json.loads(out.stdout)
        assert rec["status"] == "skipped", rec["status"]
        return rec["model_bytes"]
    n, nxt = r["n_max"], r["next"]["n"]
    assert base + ratio * model(n) <= budget < base + ratio * model(nxt), (m, n, nxt)
    assert abs(r["predicted_peak_rss_bytes"] - (base + ratio * model(n))) < 1e-6 * budget
assert rows["lsh"]["n_max"] % 64 == 0 and rows["lsh"]["next"]["n"] == rows["lsh"]["n_max"] + 64  # chunk_len
assert rows["full"]["next"]["n"] == rows["full"]["n_max"] + 1
assert 2500 < rows["full"]["n_max"] < 4000 and rows["lsh"]["n_max"] > 10 * rows["full"]["n_max"]  # 4 n^2 bytes
PY
expect_status 0 "capacity in powers of two" -- "$bin" capacity --mem 48MiB --methods full --lengths pow2 --from "$tmp/cal.jsonl" --json
grep -q '"n_max":2048,' "$tmp/out" && pass || fail "capacity --lengths pow2: $(cat "$tmp/out")"
# a time budget of what lsh took at 2K (any build's speed): n_max about there, bound by time
tb=$(/usr/bin/python3 -c 'import json, sys; print([r["wall_s"] for r in map(json.loads, open(sys.argv[1])) if r["method"] == "lsh" and r["n"] == 2048][0])' "$tmp/cal.jsonl")
expect_status 0 "capacity with a time budget" -- "$bin" capacity --mem 48MiB --time "$tb" --methods lsh --from "$tmp/cal.jsonl" --json
/usr/bin/python3 -c 'import json, sys; r = json.loads(open(sys.argv[1]).read()); tb = float(sys.argv[2]); assert r["limited_by"] == "time" and 0 < r["predicted_time_s"] <= tb < r["next"]["predicted_time_s"] and 512 <= r["n_max"] <= 8192, r' "$tmp/out" "$tb" &&
    pass || fail "capacity --time did not bound n by the predicted time: $(cat "$tmp/out")"
expect_status 2 "capacity without --mem" -- "$bin" capacity --methods full --from "$tmp/cal.jsonl"
expect_status 2 "capacity with a budget below 1 MiB" -- "$bin" capacity --mem 12K --from "$tmp/cal.jsonl"
expect_status 2 "capacity with --mem-limit" -- "$bin" capacity --mem 1G --mem-limit 1G --from "$tmp/cal.jsonl"
expect_status 2 "capacity of an unknown method" -- "$bin" capacity --mem 1G --methods full,nope --from "$tmp/cal.jsonl"
expect_status 2 "capacity with a parameter no method has" -- "$bin" capacity --mem 1G --methods full --param block=64 --from "$tmp/cal.jsonl"
expect_status 2 "capacity from a missing file" -- "$bin" capacity --mem 1G --from "$tmp/none.jsonl"
expect_status 2 "capacity from records without the method" -- "$bin" capacity --mem 1G --methods etc --from "$tmp/cal.jsonl"
grep -q "no measured fp32 forward of etc" "$tmp/err" && pass || fail "capacity without etc's records: $(cat "$tmp/err")"
# bf16: calibrated by bf16 records only; lsh's n_max well above fp32's in the same budget (not
# twice: the process's own 8 MiB are a sixth of 48 MiB)
expect_status 2 "capacity in bf16 from fp32 records" -- "$bin" capacity --mem 48MiB --methods lsh --dtype bf16 --from "$tmp/cal.jsonl"
grep -q "no measured bf16 forward of lsh" "$tmp/err" && pass || fail "capacity bf16 from fp32 records: $(cat "$tmp/err")"
"$bin" sweep --methods lsh --n 512:8K --dtype bf16 --reps 1 --counters none --no-yardstick --out "$tmp/cal16.jsonl" 2>/dev/null
both=(--from "$tmp/cal.jsonl" --from "$tmp/cal16.jsonl")
"$bin" capacity --mem 48MiB --methods lsh "${both[@]}" --json >"$tmp/cap32.json" 2>/dev/null
"$bin" capacity --mem 48MiB --methods lsh --dtype bf16 "${both[@]}" --json >"$tmp/cap16.json" 2>/dev/null
/usr/bin/python3 -c '
import json, sys
f, b = (json.loads(open(p).read()) for p in sys.argv[1:3])
assert 1.4 < b["n_max"] / f["n_max"] < 2.1, (f["n_max"], b["n_max"])
assert "dtype=bf16" in b["calibration"]["series"] and "dtype" not in f["calibration"]["series"]
' "$tmp/cap32.json" "$tmp/cap16.json" && pass || fail "capacity --dtype bf16: $(cat "$tmp/cap16.json")"
expect_status 2 "capacity with two dtypes" -- "$bin" capacity --mem 1G --methods lsh --dtype fp32,bf16 --from "$tmp/cal.jsonl"
expect_status 2 "capacity --verify of a budget above the machine's" -- "$bin" capacity --mem 64T --methods full --verify --from "$tmp/cal.jsonl"
expect_status 2 "capacity of lsh over ranks" -- "$bin" capacity --mem 1G --methods lsh --ranks 2 --from "$tmp/cal.jsonl"
# --verify: a calibration sweep of its own, the predicted n_max run under the budget (its peak
# within 5% of the prediction), the next length refused as over it
expect_status 0 "capacity --verify" -- "$bin" capacity --mem 64MiB --methods full,lsh --verify --json --out "$tmp/capv.jsonl"
/usr/bin/python3 - "$tmp/out" "$tmp/capv.jsonl" <<'PY' && pass || fail "capacity --verify: $(head -c 600 "$tmp/out")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["method"] for r in rows] == ["full", "lsh"]
for r in rows:
    v = r["verified"]
    assert r["calibration"]["source"] == "a calibration sweep on this machine", r["calibration"]
    # the prediction is an estimate, not a bound: within 5%, and the peak within the budget
    # but for a fraction of that (an ASan build's shadow pages bend the line by ~0.5%)
    assert v["status"] == "ok" and abs(v["peak_error"]) <= 0.05 and v["peak_rss_bytes"] <= 1.01 * 64 * 2**20, v
    assert v["next_status"] == "skipped" and "predicted peak RSS" in v["next_reason"], v
recs = [json.loads(l) for l in open(sys.argv[2])]
roles = [(x["method"], x["capacity"]["role"]) for x in recs if x["capacity"]]
assert roles == [("full", "n_max"), ("full", "next"), ("lsh", "n_max"), ("lsh", "next")], roles
assert sum(x["capacity"] is None for x in recs) >= 4  # the calibration points
PY
"$bin" report "$tmp/capv.jsonl" --out "$tmp/caprep" >/dev/null 2>&1
grep -q "^| lsh | forward | 64.0 MiB | next | .* | skipped |" "$tmp/caprep/report.md" &&
    grep -q "^### One million tokens" "$tmp/caprep/report.md" && pass || fail "the report has no capacity tables"

# --- ring over MPI ranks: P processes started by mpirun (build/attnbench-rank); outputs and
# gradients against full_stream's on the whole inputs, one record with every rank's memory
ringcheck() {
    /usr/bin/python3 - "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); P, n = int(sys.argv[2]), int(sys.argv[3])
assert r["status"] == "ok", r["reason"]
assert r["point_key"].endswith(f";ranks={P}"), r["point_key"]
e, rk = r["err_vs_exact"], r["ranks"]
assert e["max_rel"] <= 1e-5, e
assert all(e["grad"][g] <= 1e-4 for g in ("dq", "dk", "dv")), e["grad"]
per = rk["per_rank"]
assert rk["count"] == P and [x["rank"] for x in per] == list(range(P)), rk
assert sum(x["rows"] for x in per) == n, per
assert all(x["bytes_sent"] == x["model_bytes_sent"] for x in per), per
assert (P == 1) == all(x["bytes_sent"] == 0 for x in per), per
assert r["peak_rss_bytes"] == max(x["peak_rss_bytes"] for x in per)
assert rk["peak_rss_bytes_sum"] == sum(x["peak_rss_bytes"] for x in per)
assert len(r["wall_s_reps"]) == r["reps"] and r["wall_s"] > 0
PY
}
# ATTNBENCH_TEST_MPI=0 skips the mpirun runs (CI's extra passes over the instruction-set paths
# and without PAPI, which the MPI launch does not touch; `make test` and `make asan` run them)
if [ "${ATTNBENCH_TEST_MPI:-1}" = 0 ]; then
    echo "cli_test: SKIPPED: ring --ranks under mpirun (ATTNBENCH_TEST_MPI=0)"
elif command -v mpirun >/dev/null && [ -x "$(dirname "$bin")/attnbench-rank" ]; then
    # (each mpirun costs 2-3 s of start-up here: P = 1..4 once each, causal and not alternating;
    # test_ring covers every P with both in process)
    for pc in 1: 2:--causal 3: 4:--causal; do
        P=${pc%%:*} c=${pc#*:}
        expect_status 0 "ring --ranks $P $c" -- "$bin" run --method ring --ranks $P --n 203 --heads 2 --batch 2 --d 16 $c --backward --accuracy --reps 2 --counters none --json
        msg=$(ringcheck "$tmp/out" $P 203 2>&1) && pass || fail "ring --ranks $P $c: $msg"
    done
    # forward and backward on .npy files over ranks: NumPy's exact attention and gradients
    expect_status 0 "forward --ranks 3" -- "$bin" forward --method ring --ranks 3 --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/ro.npy" --lse "$tmp/rl.npy" --causal
    msg=$(allclose "$tmp/ro.npy" "$tmp/q.npy" "$tmp/k.npy" "$tmp/v.npy" causal 2>&1) && [ "$(stat -c %s "$tmp/rl.npy")" = $((128 + 33 * 4)) ] &&
        pass || fail "forward --ranks 3: $msg"
    rm -f "$tmp"/d[qkv].npy
    expect_status 0 "backward --ranks 2" -- "$bin" backward --method ring --ranks 2 "${b[@]}"
    msg=$(gradclose "${g[@]}" 2>&1) && pass || fail "backward --ranks 2: gradients differ from NumPy's: $msg"
    expect_status 2 "forward --ranks with full_stream" -- "$bin" forward --method full_stream --ranks 2 --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/ro.npy"
    expect_status 2 "forward --ranks past n" -- "$bin" forward --method ring --ranks 40 --q "$tmp/q.npy" --k "$tmp/k.npy" --v "$tmp/v.npy" --out "$tmp/ro.npy"
    # a rank that dies ends the point, named; nothing of the ring is left running
    live_ranks() { ps -eo stat=,comm= | awk '$2 == "attnbench-rank" || $2 == "mpirun" { if ($1 !~ /Z/) n++ } END { print n + 0 }'; }
    for f in segv exit; do
        ATTNBENCH_FAULT=$f ATTNBENCH_FAULT_RANK=2 "$bin" run --method ring --ranks 3 --n 300 --counters none --json >"$tmp/out" 2>/dev/null
        grep -q '"status":"crashed"' "$tmp/out" && grep -q '"reason":"rank 2 of 3 died' "$tmp/out" && pass ||
            fail "ring with rank 2 dead ($f): $(grep -o '"reason":"[^"]*"' "$tmp/out")"
    done
    ATTNBENCH_FAULT=sleep ATTNBENCH_FAULT_RANK=1 "$bin" run --method ring --ranks 3 --n 300 --counters none --time-limit 2 --json >"$tmp/out" 2>/dev/null
    grep -q '"status":"timeout"' "$tmp/out" && pass || fail "ring with a hung rank: not a timeout"
    # mpirun, told by the killed point's child (SIGTERM), takes its ranks down: give it 10 s
    for _ in $(seq 20); do [ "$(live_ranks)" = 0 ] && break; sleep 0.5; done
    [ "$(live_ranks)" = 0 ] && pass || fail "ranks or mpirun left running: $(ps -eo pid,stat,comm | grep -E 'attnbench-rank|mpirun')"
    # a sweep over rank counts: one point per count, the count in the id; other methods once
    expect_status 0 "sweep --ranks" -- "$bin" sweep --methods ring,full_stream --n 256,512 --ranks 1,2 --reps 1 --counters none --out "$tmp/ranks.jsonl"
    /usr/bin/python3 - "$tmp/ranks.jsonl" <<'PY' && pass || fail "sweep --ranks: wrong points"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted((r["method"], r["n"], (r["ranks"] or {}).get("count")) for r in recs)
assert keys == [("full_stream", 256, None), ("full_stream", 512, None), ("ring", 256, 1),
                ("ring", 256, 2), ("ring", 512, 1), ("ring", 512, 2)], keys
assert len({r["point_id"] for r in recs}) == 6 and all(r["status"] == "ok" for r in recs)
PY
    expect_status 0 "report with ranks" -- "$bin" report "$tmp/ranks.jsonl" --out "$tmp/ranksrep"
    grep -q "## Ranks" "$tmp/ranksrep/report.md" && grep -Eq '^\| 512 \| no \| 2 \| [0-9]+ \| .* = \|' "$tmp/ranksrep/report.md" &&
        pass || fail "the report has no ranks table: $(grep -A6 '## Ranks' "$tmp/ranksrep/report.md")"
else
    fail "ring --ranks: no mpirun or build/attnbench-rank (scripts/install-deps.sh installs Open MPI)"
fi
expect_status 2 "--ranks with a method other than ring" -- "$bin" run --method full_stream --ranks 2 --n 64
expect_status 2 "--ranks 0" -- "$bin" run --method ring --ranks 0 --n 64
expect_status 2 "--ranks with two counts in run" -- "$bin" run --method ring --ranks 1,2 --n 64
ATTNBENCH_FAULT= "$bin" run --method ring --ranks 4 --n 3 --counters none --json >"$tmp/out" 2>/dev/null
grep -q '"status":"unsupported"' "$tmp/out" && pass || fail "ring with more ranks than rows is not unsupported"

# --- accuracy that means something: rel_fro over the whole output and the exact mass the method
# scored; on clustered inputs more hash rounds recall more of it and err less
for h in 1 8; do
    "$bin" run --method lsh --n 8K --inputs clustered --accuracy --param n_hashes=$h --reps 1 \
        --warmup 0 --counters none --busy-retries 0 --json >"$tmp/acc$h.json" 2>/dev/null
done
/usr/bin/python3 - "$tmp/acc1.json" "$tmp/acc8.json" <<'PY' && pass || fail "lsh accuracy against n_hashes"
import json, sys
one, eight = (json.load(open(f))["err_vs_exact"] for f in sys.argv[1:])
for e in (one, eight):
    assert 0 < e["rel_fro"] < 2 and 0 < e["mass_recall"] <= 1 and "mean_rel" in e, e
assert eight["mass_recall"] > one["mass_recall"] and eight["rel_fro"] < one["rel_fro"], (one, eight)
PY
"$bin" run --method full_stream --n 512 --accuracy --reps 1 --counters none --json 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys; e = json.load(sys.stdin)["err_vs_exact"]; sys.exit(0 if abs(e["mass_recall"] - 1) < 1e-6 and e["rel_fro"] < 1e-5 else e)' &&
    pass || fail "exact attention does not recall all its mass with no error"

# --- one way to measure a point: a probe source added to the list (the tests' own, on with
# ATTNBENCH_TEST_PROBE=1) reaches our own point, an external program and each rank of a ring,
# through the same sequence of phases, or says why it cannot measure that target
ATTNBENCH_TEST_PROBE=1 "$bin" run --method full_stream --n 512 --reps 2 --counters none --json >"$tmp/tp_own.json" 2>/dev/null
ATTNBENCH_TEST_PROBE=1 "$bin" run --method ext:numpy_textbook --n 512 --reps 2 --counters none --json >"$tmp/tp_ext.json" 2>/dev/null
"$bin" run --method full_stream --n 512 --reps 2 --counters none --json >"$tmp/tp_off.json" 2>/dev/null
if [ "${ATTNBENCH_TEST_MPI:-1}" = 1 ]; then
    ATTNBENCH_TEST_PROBE=1 "$bin" run --method ring --ranks 2 --n 512 --reps 2 --counters none --json >"$tmp/tp_ring.json" 2>/dev/null
else
    cp "$tmp/tp_own.json" "$tmp/tp_ring.json"
    echo "cli_test: SKIPPED: the test probe in a ring over ranks (ATTNBENCH_TEST_MPI=0)"
fi
/usr/bin/python3 - "$tmp" <<'PY' && pass || fail "a new probe source does not reach every kind of workload"
import json, sys
d = sys.argv[1]
own, ext, ring, off = (json.load(open(f"{d}/tp_{k}.json")) for k in ("own", "ext", "ring", "off"))
phases = ["open", "prepared", "start", "stop", "report"]
for r in own, ring:
    assert r["status"] == "ok" and r["test_probe"]["phases"] == phases and r["test_probe"]["runs"] == 2, r.get("test_probe")
assert ext["status"] == "ok" and ext["test_probe"] is None, ext.get("test_probe")
assert "only its own process" in ext["unavailable"]["test_probe"], ext["unavailable"]
assert "test_probe" not in off  # off unless asked
PY

# --- generated docs: every block of the tree as its results give it; a changed result makes
# the check fail naming the block; `docs` rewrites it; bad blocks are one-line errors
expect_status 0 "docs --check on the tree" -- "$bin" docs --check README.md docs/*.md
mkdir -p "$tmp/tree"
cp -r README.md docs results "$tmp/tree/"
/usr/bin/python3 - "$tmp/tree/results" <<'PY'
import json, sys
d = sys.argv[1]
for name, field, factor in (("default", "wall_s", 1.5), ("peers", "peak_rss_bytes", 2)):
    path = f"{d}/{name}/results.jsonl"
    recs = [json.loads(l) for l in open(path)]
    for r in recs:  # the largest ok lsh point: in the exponent and peer tables
        if r["method"] == "lsh" and r["status"] == "ok" and r["n"] == 1048576:
            r[field] *= factor
    open(path, "w").write("".join(json.dumps(r) + "\n" for r in recs))
PY
(cd "$tmp/tree" && "$bin_abs" docs --check README.md docs/*.md) >"$tmp/out" 2>"$tmp/err"
st=$?
[ $st = 1 ] && grep -q "README.md:[0-9]*: block \`exponents results/default/results.jsonl\` differs" "$tmp/err" &&
    grep -q "docs/peers.md:[0-9]*: block \`peers results/peers/results.jsonl largest=1\` differs" "$tmp/err" &&
    pass || fail "docs --check on changed results: exit $st, $(head -c 600 "$tmp/err")"
(cd "$tmp/tree" && "$bin_abs" docs README.md docs/*.md && "$bin_abs" docs --check README.md docs/*.md) 2>"$tmp/err" >/dev/null &&
    ! cmp -s "$tmp/tree/README.md" README.md && pass || fail "docs did not rewrite the stale blocks: $(head -c 300 "$tmp/err")"
printf '# t\n<!-- attnbench:table nosuch results/default/results.jsonl -->\n<!-- attnbench:end -->\n' >"$tmp/bad1.md"
expect_status 2 "docs: an unknown table" -- "$bin" docs --check "$tmp/bad1.md"
grep -q "bad1.md:2: block \`nosuch" "$tmp/err" && pass || fail "unknown table not named with its line: $(cat "$tmp/err")"
printf '<!-- attnbench:table exponents results/default/results.jsonl -->\nno end\n' >"$tmp/bad2.md"
expect_status 2 "docs: a block without its end" -- "$bin" docs "$tmp/bad2.md"
printf '<!-- attnbench:table points results/default/results.jsonl columns=n,nosuch -->\n<!-- attnbench:end -->\n' >"$tmp/bad3.md"
expect_status 2 "docs: an unknown column" -- "$bin" docs --check "$tmp/bad3.md"
printf '<!-- attnbench:table exponents results/default/results.jsonl where=method=nosuch -->\n<!-- attnbench:end -->\n' >"$tmp/bad4.md"
expect_status 2 "docs: a block that selects nothing" -- "$bin" docs --check "$tmp/bad4.md"
expect_status 2 "docs: a missing results file" -- "$bin" table exponents "$tmp/none.jsonl"
"$bin" table points results/default/results.jsonl where=method=lsh where=n=1048576 columns=method,n,time >"$tmp/out" 2>/dev/null
[ "$(wc -l <"$tmp/out")" = 3 ] && grep -q '^| lsh | 2^20 | [0-9.]* |$' "$tmp/out" && pass || fail "table points: $(cat "$tmp/out")"
# --- report --reference: the points beside a reference run's, with both machines
expect_status 0 "report --reference" -- "$bin" report "$tmp/r.jsonl" --reference "$tmp/r.jsonl" --out "$tmp/repref"
grep -q "^## Beside the reference run" "$tmp/repref/report.md" &&
    grep -Eq '^\| [0-9]+ \| [0-9]+ \| [0-9]+ \| [0-9]+ \| 1.00 \([0-9]+\) \| 1.000 \([0-9]+\) \|$' "$tmp/repref/report.md" &&
    pass || fail "report --reference of a run beside itself: $(grep -A8 'Beside the reference' "$tmp/repref/report.md")"
expect_status 2 "report --reference to a missing file" -- "$bin" report "$tmp/r.jsonl" --reference "$tmp/none.jsonl" --out "$tmp/repref2"

echo "cli_test: $((count - fails))/$count passed"
[ "$fails" = 0 ]
