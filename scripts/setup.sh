#!/usr/bin/env bash
# scripts/setup.sh -- the README's two commands in one script.
#
#   bash scripts/setup.sh run    install what is missing, build, run the default training job
#   bash scripts/setup.sh test   install what is missing, build, run every test (+ the binding tests under ASan/UBSan)
#
# Idempotent: apt is skipped when every package is present, cmake rebuilds only what changed.
set -euo pipefail

mode=${1:-}
case "$mode" in
  run|test) ;;
  *) echo "usage: bash scripts/setup.sh run|test" >&2; exit 2 ;;
esac

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)

# --- 1. Debian packages --------------------------------------------------------
packages=(
  cmake make gcc g++ pkg-config            # toolchain
  libtorch-dev libopenblas0-openmp         # ATen + autograd; OpenBLAS instead of the slow reference BLAS
  libhdf5-dev hdf5-tools zlib1g-dev        # checkpoints (h5dump for humans), gzip'd datasets
  libinih-dev                              # INI recipes
  libjansson-dev                           # JSONL preference datasets (line-numbered parse errors)
  libcriterion-dev                         # unit tests
  python3-torch python3-h5py python3-numpy # benchmarks' eager-PyTorch side, h5py checks in tests
  dataset-fashion-mnist                    # the KD recipe's data set
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} missing package(s): ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages present, skipping apt"
fi

# --- 2. Build ------------------------------------------------------------------
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"

# --- 3. Run --------------------------------------------------------------------
if [ "$mode" = run ]; then
  exec ./build/trainer/rlt train runs/kd-fashion-mnist.ini
fi

# Tests: every ctest binary, then the binding's tests once more under
# AddressSanitizer + UndefinedBehaviorSanitizer (a separate build tree).
status=0
ctest --test-dir build --output-on-failure -j1 2>&1 | tee build/ctest.log || status=1

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRLT_SANITIZE=ON -DRLT_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -R '^test_(tensor|nn)' --output-on-failure -j1 2>&1 | tee build-asan/ctest.log || status=1

# One closing line that any CI reader understands.
passed=$(cat build/ctest.log build-asan/ctest.log | grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' || true)
failed=$(cat build/ctest.log build-asan/ctest.log | grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(\*\*\*|Failed|Timeout|Not Run)' || true)
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
