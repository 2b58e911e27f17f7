#!/usr/bin/env bash
# cli_test.sh: shell-level tests of build/attnbench (exit codes, one-line errors, files
# written). Run by `make test` with ATTNBENCH pointing at the binary.
set -u
bin=${ATTNBENCH:-build/attnbench}
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

# npy FILE DESCR SHAPE [fortran]: writes a small .npy file without NumPy.
npy() {
    local file=$1 descr=$2 shape=$3 fortran=${4:-False} count=1
    local dict="{'descr': '$descr', 'fortran_order': $fortran, 'shape': $shape, }"
    local pad=$(( (64 - (10 + ${#dict} + 1) % 64) % 64 ))
    local hlen=$(( ${#dict} + pad + 1 ))
    for dim in $(echo "$shape" | tr -d '(),' ); do count=$((count * dim)); done
    {
        printf '\x93NUMPY\x01\x00'
        printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))"
        printf '%s%*s\n' "$dict" "$pad" ''
        head -c $((count * 4)) /dev/urandom | tr '\000-\377' '\100-\177\100-\177\100-\177\100-\177'
    } >"$file"
}

# --- list
expect_status 0 "list" -- "$bin" list
grep -q '^full ' "$tmp/out" && grep -q '^full_stream .*tile_q=128' "$tmp/out" && pass ||
    fail "list does not show full and full_stream with defaults"

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
done

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

echo "cli_test: $((count - fails))/$count passed"
[ "$fails" = 0 ]
