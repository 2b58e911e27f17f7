#!/usr/bin/env bash
# install-deps.sh: installs every Debian package attnbench needs. Idempotent: when all are
# present it changes nothing; otherwise it runs apt-get update, then apt-get install.
#   scripts/install-deps.sh          build, test, sweep and report
#   scripts/install-deps.sh --fuzz   also clang with libFuzzer and libomp, for `make fuzz` (CI)
#   scripts/install-deps.sh --peers  also the peers' virtual environment, .venv-peers: PyTorch 2
#                                    and Hugging Face transformers from PyPI, pinned (several
#                                    GB with torch's CUDA libraries; not in CI)
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
    libopenmpi-dev openmpi-bin   # ring attention over ranks: build/attnbench-rank and mpirun
)
for opt in "$@"; do
    case "$opt" in
    --fuzz) packages+=(clang-14 libclang-rt-14-dev libomp-14-dev) ;;
    --peers) packages+=(python3-venv python3-pip); peers=1 ;;
    *) echo "install-deps: unknown option '$opt' (options: --fuzz, --peers)" >&2; exit 2 ;;
    esac
done

peers=${peers:-0}
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
else
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    echo "install-deps: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The peers (scripts/peers/): versions that still ship ReformerModel, LSHSelfAttention and
# BigBird's block-sparse attention, with PyTorch 2's fused CPU attention. Pinned, so a rerun
# measures the same code; the environment is this tree's own, never the system's.
if [ "$peers" = 1 ]; then
    venv="$(cd "$(dirname "$0")/.." && pwd)/.venv-peers"
    pins=(torch==2.15.0 transformers==5.24.0 numpy==2.4.6)
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip freeze 2>/dev/null |
        grep -qx "transformers==5.24.0"; then
        echo "install-deps: $venv present"
    else
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
        "$venv/bin/python" -m pip install -q "${pins[@]}"
        echo "install-deps: $venv made with ${pins[*]}"
    fi
    # MKL's fast paths on AMD CPUs (scripts/peers/mkl_intel_path.c), preloaded by the peers
    gcc -shared -fPIC -O2 -o "$venv/lib/libmkl_intel_path.so" \
        "$(dirname "$0")/peers/mkl_intel_path.c"
fi
