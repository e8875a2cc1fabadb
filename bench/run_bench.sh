#!/usr/bin/env bash
# run_bench.sh -- run bench_ops (C binding) and bench_ops.py (eager PyTorch)
# interleaved in one run (C, Py, C, Py, ...: the machine is shared and noisy,
# so each side gets several chances and its best figure is kept), then print a
# side-by-side table and whether the goal "C spends at most half the time per
# op that Python does" holds for each row. Builds nothing.
#
#   bench/run_bench.sh --c-bin build/bench/bench_ops [--rounds 2] [--threads 1]
#                      [any other bench_ops option, passed to both programs]
#   cmake --build build --target bench       # same, through CMake
#
# Python gets the malloc settings of rt_tune_malloc() through GLIBC_TUNABLES;
# the C binary applies them itself with mallopt().
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
c_bin=""
py_script="$here/bench_ops.py"
python=/usr/bin/python3   # the python3 on PATH (pyenv) has no torch
rounds=2
threads=1
passthrough=()

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
    --c-bin) c_bin=${2:?--c-bin needs a path}; shift 2 ;;
    --python) python=${2:?--python needs a path}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a count}; shift 2 ;;
    --threads) threads=${2:?--threads needs a count}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --*) passthrough+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    *) echo "run_bench.sh: unexpected argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -z "$c_bin" ]; then
    echo "run_bench.sh: --c-bin PATH (the built bench_ops) is required" >&2
    exit 2
fi
if [ ! -x "$c_bin" ]; then
    echo "run_bench.sh: $c_bin is not an executable (build the bench_ops target first)" >&2
    exit 2
fi
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ && "$threads" =~ ^[1-9][0-9]*$ ]]; then
    echo "run_bench.sh: --rounds and --threads want positive integers" >&2
    exit 2
fi

# Same values as rt_tune_malloc() (tensor/tensor_ops.cpp): mmap threshold
# 32 MiB, trim threshold 1 GiB, top pad 256 MiB.
tunables="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=268435456:glibc.malloc.mxfast=0"

out=$(mktemp "${TMPDIR:-/tmp}/rlt_bench.XXXXXX")
trap 'rm -f "$out"' EXIT

echo "bench: $rounds interleaved round(s), $threads thread(s), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
    echo "bench: round $r/$rounds: C"
    if ! "$c_bin" --threads "$threads" "${passthrough[@]}" >>"$out"; then
        echo "run_bench.sh: $c_bin failed (round $r)" >&2
        exit 1
    fi
    echo "bench: round $r/$rounds: Python"
    if ! GLIBC_TUNABLES="$tunables" "$python" "$py_script" --threads "$threads" "${passthrough[@]}" >>"$out"; then
        echo "run_bench.sh: $python $py_script failed (round $r)" >&2
        exit 1
    fi
done

# Table: best (minimum) time per side and row, over all rounds.
awk -v rounds="$rounds" '
function first_seen(key) { if (!(key in seen)) { seen[key] = 1; order[++n] = key } }
$2 == "info" {
    key = $1 " " $3
    if (!(key in info)) { v = $0; sub(/^[^ ]+ info [^ ]+ /, "", v); info[key] = v }
    next
}
$3 == "ns_per_op" || $3 == "us_per_step" {
    row = $2; first_seen(row); unit[row] = ($3 == "ns_per_op") ? "ns/op" : "us/step"
    if (!((row, $1) in best) || $4 + 0 < best[row, $1]) best[row, $1] = $4 + 0
    next
}
$3 == "final_loss" { loss[$1] = $4; next }
END {
    print ""
    printf "threads: C %s, Python %s\n", info["c threads"], info["py threads"]
    printf "BLAS:    C %s\n", info["c blas"]
    printf "         Python: %s (libtorch_cpu links the same system libblas.so.3)\n", info["py blas"]
    printf "torch:   C %s; Python %s\n", info["c torch"], info["py torch"]
    printf "config:  %s\n", info["c config"]
    printf "malloc:  C rt_tune_malloc(); Python GLIBC_TUNABLES=%s\n", info["py glibc_tunables"]
    printf "best of %d interleaved round(s) per side\n\n", rounds
    printf "%-18s %-8s %12s %12s %8s  %s\n", "op", "unit", "C", "Python", "C/Py", "goal C <= 0.5 x Py"
    printf "%-18s %-8s %12s %12s %8s  %s\n", "------------------", "--------", "------------",
           "------------", "--------", "------------------"
    met = 0
    for (i = 1; i <= n; i++) {
        row = order[i]
        if (!((row, "c") in best) || !((row, "py") in best)) {
            printf "%-18s missing a side (C or Python did not report it)\n", row; continue
        }
        c = best[row, "c"]; p = best[row, "py"]; ratio = c / p
        verdict = (ratio <= 0.5) ? "holds" : "does NOT hold"
        if (ratio <= 0.5) met++
        printf "%-18s %-8s %12.1f %12.1f %8.3f  %s\n", row, unit[row], c, p, ratio, verdict
    }
    printf "\ngoal \"C spends at most half the time per op that Python does\": holds for %d of %d rows\n", met, n
    if (("c" in loss) && ("py" in loss))
        printf "MLP cross-check, loss after the last step: C %s, Python %s (%s)\n", loss["c"], loss["py"],
               (loss["c"] == loss["py"]) ? "identical" : "different"
}' "$out"
