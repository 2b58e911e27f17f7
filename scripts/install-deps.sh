#!/usr/bin/env bash
# install-deps.sh: installs every Debian package attnbench needs. Idempotent: when all are
# present it changes nothing; otherwise it runs apt-get update, then apt-get install.
#   scripts/install-deps.sh          build, test, sweep and report
#   scripts/install-deps.sh --fuzz   also clang with libFuzzer and libomp, for `make fuzz` (CI)
#   scripts/install-deps.sh --peer   also PyTorch, for scripts/peer-torch.py (large; not in CI)
set -euo pipefail

packages=(
    build-essential pkg-config make git
    libopenblas-openmp-dev   # BLAS for the tile products; the OpenMP build nests in our regions
    libsleef-dev             # vectorized expf
    libjemalloc-dev          # the allocator, and its statistics
    libpapi-dev papi-tools   # counters
    libcmocka-dev            # tests
    libjansson-dev           # JSON records
    gnuplot-nox fonts-dejavu-core   # plots (pngcairo, svg)
    python3-numpy            # outside checks of `attnbench forward`
)
for opt in "$@"; do
    case "$opt" in
    --fuzz) packages+=(clang-14 libclang-rt-14-dev libomp-14-dev) ;;
    --peer) packages+=(python3-torch) ;;
    *) echo "install-deps: unknown option '$opt' (options: --fuzz, --peer)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
