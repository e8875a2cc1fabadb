#!/usr/bin/env bash
# run_bench_sample.sh -- issue 7's benchmark: sampling throughput in tokens/s
# with a KV cache, rlt's sampler (bench_sample: smp_generate on the recipe's
# GPT, 4 layers x 128 wide, 4 heads, vocab 64) against the same model and
# sampling loop in eager PyTorch (bench_sample.py), batch 64, 16-token
# prompts, 48 new tokens, temperature 1, top-k. C and Python run interleaved
# in rounds (per round and thread count: C, then Python; the machine is shared
# and noisy), each process a warm-up call and --reps timed calls; then a table
# with the best and median tokens/s per side, their ratio, and whether the
# goal "C samples at least 3x as many tokens/s" is met (on the medians).
# Builds nothing.
#
#   bench/run_bench_sample.sh --c-bin build/bench/bench_sample [--rounds 3]
#                             [--threads 1,2] [--reps 5] [--top-k 50]
#   cmake --build build --target bench_sample_run      # same, through CMake
#
# Python gets the malloc settings of rt_tune_malloc() through GLIBC_TUNABLES
# (the values bench/run_bench.sh uses); bench_sample calls it itself.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
c_bin=""
py_script="$here/bench_sample.py"
python=/usr/bin/python3   # the python3 on PATH (pyenv) has no torch
rounds=3
threads_list="1,2"
reps=5
top_k=50

usage() {
    sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
    --c-bin) c_bin=${2:?--c-bin needs a path}; shift 2 ;;
    --python) python=${2:?--python needs a path}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a count}; shift 2 ;;
    --threads) threads_list=${2:?--threads needs a list}; shift 2 ;;
    --reps) reps=${2:?--reps needs a count}; shift 2 ;;
    --top-k) top_k=${2:?--top-k needs a count}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_bench_sample.sh: unexpected argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -z "$c_bin" ] || [ ! -x "$c_bin" ]; then
    echo "run_bench_sample.sh: --c-bin PATH must name the built bench_sample (got '${c_bin}')" >&2
    exit 2
fi
for pair in "rounds:$rounds" "reps:$reps"; do
    if ! [[ "${pair#*:}" =~ ^[1-9][0-9]*$ ]]; then
        echo "run_bench_sample.sh: --${pair%%:*} wants a positive integer, got '${pair#*:}'" >&2
        exit 2
    fi
done
if ! [[ "$top_k" =~ ^[0-9]+$ ]]; then
    echo "run_bench_sample.sh: --top-k wants a non-negative integer, got '$top_k'" >&2
    exit 2
fi
if ! [[ "$threads_list" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
    echo "run_bench_sample.sh: --threads wants a list like 1,2, got '$threads_list'" >&2
    exit 2
fi

# Same values as rt_tune_malloc() (tensor/tensor_ops.cpp) and bench/run_bench.sh.
tunables="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=268435456:glibc.malloc.mxfast=0"

out=$(mktemp "${TMPDIR:-/tmp}/rlt_bench_sample.XXXXXX")
trap 'rm -f "$out"' EXIT

echo "bench_sample: $rounds interleaved round(s), threads $threads_list, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
    for t in ${threads_list//,/ }; do
        echo "bench_sample: round $r/$rounds: $t thread(s), C"
        "$c_bin" --threads "$t" --reps "$reps" --top-k "$top_k" >>"$out" ||
            { echo "run_bench_sample.sh: $c_bin failed (round $r, $t threads)" >&2; exit 1; }
        echo "bench_sample: round $r/$rounds: $t thread(s), Python"
        GLIBC_TUNABLES="$tunables" "$python" "$py_script" --threads "$t" --reps "$reps" --top-k "$top_k" >>"$out" ||
            { echo "run_bench_sample.sh: $py_script failed (round $r, $t threads)" >&2; exit 1; }
    done
done
echo "bench_sample: load average after the run $(cut -d' ' -f1-3 /proc/loadavg)"

awk -v rounds="$rounds" -v reps="$reps" -v threads_list="$threads_list" -v tunables="$tunables" '
$2 == "info" {
    key = $1 " " $3
    if (!(key in info)) { v = $0; sub(/^[^ ]+ info [^ ]+ /, "", v); info[key] = v }
    next
}
$2 == "check" { k = $1 SUBSEP $3; nchk[k]++; chk[k] += $4; next }
$3 == "rep_tokens_per_s" {
    k = $1 SUBSEP $2
    n[k]++; vals[k, n[k]] = $4 + 0
    if (!(k in best) || $4 + 0 > best[k]) best[k] = $4 + 0
    next
}
function median(k,    m, i, j, t, a) {
    m = n[k]
    for (i = 1; i <= m; i++) a[i] = vals[k, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
END {
    print ""
    printf "torch:   C %s; Python %s\n", info["c torch"], info["py torch"]
    printf "BLAS:    C %s\n", info["c blas"]
    printf "         Python %s\n", info["py blas"]
    printf "config:  %s\n", info["c config"]
    printf "malloc:  C rt_tune_malloc(); Python GLIBC_TUNABLES=%s\n", tunables
    printf "rounds:  %d interleaved; per side, round and thread count one warm-up call and %d timed calls\n", rounds, reps
    printf "         (best and median over all %d timed calls per side and thread count)\n\n", rounds * reps
    printf "Sampling with a KV cache, tokens/s = 64 rows x 48 new tokens / seconds per call\n"
    printf "%-7s %11s %11s %11s %11s %9s %9s  %s\n", "threads", "C best", "C median", "Py best", "Py median",
           "C/Py best", "C/Py med", "goal C >= 3x Py (medians)"
    printf "%-7s %11s %11s %11s %11s %9s %9s  %s\n", "-------", "-----------", "-----------", "-----------",
           "-----------", "---------", "---------", "-------------------------"
    nt = split(threads_list, ts, ",")
    met = 0
    for (i = 1; i <= nt; i++) {
        ck = "c" SUBSEP "sample_t" ts[i]; pk = "py" SUBSEP "sample_t" ts[i]
        if (!(ck in best) || !(pk in best)) { printf "%-7s missing a side (C or Python did not report it)\n", ts[i]; continue }
        cm = median(ck); pm = median(pk)
        ratio = cm / pm
        if (ratio >= 3.0) met++
        printf "%-7s %11.0f %11.0f %11.0f %11.0f %8.2fx %8.2fx  %s\n", ts[i], best[ck], cm, best[pk], pm,
               best[ck] / best[pk], ratio, (ratio >= 3.0) ? "met" : "NOT met"
    }
    printf "\nanchor (specs/anchors.md, eager PyTorch on this machine): 7,900 tokens/s (1 thread), 9,100 (2 threads)\n"
    ckey = "c" SUBSEP "mean_logp"; pkey = "py" SUBSEP "mean_logp"; lkey = "c" SUBSEP "ln_top_k"
    if ((ckey in nchk) && (pkey in nchk))
        printf "cross-check, mean log-prob of the sampled tokens (near-uniform fresh model): C %.4f, Python %.4f, -ln(top_k) %.4f\n",
               chk[ckey] / nchk[ckey], chk[pkey] / nchk[pkey], chk[lkey] / nchk[lkey]
    printf "goal \"at least 3x eager PyTorch\": met at %d of %d thread counts\n", met, nt
}' "$out"
