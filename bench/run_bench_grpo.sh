#!/usr/bin/env bash
# run_bench_grpo.sh -- run bench_grpo (C: fused rt_token_logps + binding ops)
# and bench_grpo.py (eager PyTorch along TRL's path) interleaved in one run
# (C, Py, C, Py, ...; each program in its own process, so each peak RSS is its
# own), then print a side-by-side table: best and median step time, the time
# ratio, and peak RSS (getrusage ru_maxrss) against the logits' size, with the
# goals "C at least 5x faster" and "peak memory at most 1.5x the logits".
# Builds nothing.
#
#   bench/run_bench_grpo.sh --c-bin build/bench/bench_grpo [--rounds 3] [--threads 2]
#                           [--untuned] [any other bench_grpo option, passed to both]
#   --untuned: glibc malloc defaults on both sides, so freed [B,T,V] buffers go
#              back to the OS and the peak RSS is the live peak (the timing then
#              includes first-touch page faults of every buffer).
#   cmake --build build --target bench_grpo_run      # same, through CMake
#
# Python gets the malloc settings of rt_tune_malloc() through GLIBC_TUNABLES
# (the values bench/run_bench.sh uses); the C binary applies them with mallopt().
# Memory is reported two ways, both from ru_maxrss: the peak above the RSS
# after start-up (the logits, their gradient and every temporary: logits plus
# gradient alone are 2x the logits), and the peak above the RSS once the inputs
# exist (what one step adds: the gradient and the temporaries).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
c_bin=""
py_script="$here/bench_grpo.py"
python=/usr/bin/python3   # the python3 on PATH (pyenv) has no torch
rounds=3
threads=2
passthrough=()
untuned=0

usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
    --c-bin) c_bin=${2:?--c-bin needs a path}; shift 2 ;;
    --python) python=${2:?--python needs a path}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a count}; shift 2 ;;
    --threads) threads=${2:?--threads needs a count}; shift 2 ;;
    --untuned) untuned=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --*) passthrough+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    *) echo "run_bench_grpo.sh: unexpected argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -z "$c_bin" ]; then
    echo "run_bench_grpo.sh: --c-bin PATH (the built bench_grpo) is required" >&2
    exit 2
fi
if [ ! -x "$c_bin" ]; then
    echo "run_bench_grpo.sh: $c_bin is not an executable (build the bench_grpo target first)" >&2
    exit 2
fi
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ && "$threads" =~ ^[1-9][0-9]*$ ]]; then
    echo "run_bench_grpo.sh: --rounds and --threads want positive integers" >&2
    exit 2
fi

# Same values as rt_tune_malloc() and bench/run_bench.sh.
tunables="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=268435456:glibc.malloc.mxfast=0"
c_tune=1
if [ "$untuned" = 1 ]; then
    tunables=""
    c_tune=0
fi

out=$(mktemp "${TMPDIR:-/tmp}/rlt_bench_grpo.XXXXXX")
trap 'rm -f "$out"' EXIT

echo "bench_grpo: $rounds interleaved round(s), $threads thread(s), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
    echo "bench_grpo: round $r/$rounds: C"
    if ! "$c_bin" --threads "$threads" --tune-malloc "$c_tune" "${passthrough[@]}" >>"$out"; then
        echo "run_bench_grpo.sh: $c_bin failed (round $r)" >&2
        exit 1
    fi
    echo "bench_grpo: round $r/$rounds: Python"
    if ! GLIBC_TUNABLES="$tunables" "$python" "$py_script" --threads "$threads" "${passthrough[@]}" >>"$out"; then
        echo "run_bench_grpo.sh: $python $py_script failed (round $r)" >&2
        exit 1
    fi
done
echo "bench_grpo: load average after the run $(cut -d' ' -f1-3 /proc/loadavg)"

# Best (minimum) time per side over all rounds; the median of the round
# medians; the largest peak RSS seen per side (the honest one for memory).
awk -v rounds="$rounds" '
$2 == "info" {
    key = $1 " " $3
    if (!(key in info)) { v = $0; sub(/^[^ ]+ info [^ ]+ /, "", v); info[key] = v }
    next
}
$3 == "ms" {
    k = $1 SUBSEP $2
    if (!(k in best) || $4 + 0 < best[k]) best[k] = $4 + 0
    if ($2 == "grpo_step_median") { med[$1, ++nmed[$1]] = $4 + 0 }
    next
}
$2 == "rss" {
    k = $1 SUBSEP $3
    if (!(k in rss) || $4 + 0 > rss[k]) rss[k] = $4 + 0
    next
}
$2 == "check" { check[$1, $3] = $4; next }
function median(side,    n, i, j, t, a) {
    n = nmed[side]
    for (i = 1; i <= n; i++) a[i] = med[side, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
}
END {
    L = info["c logits_mb"] + 0
    print ""
    printf "threads: C %s, Python %s\n", info["c threads"], info["py threads"]
    printf "torch:   C %s; Python %s\n", info["c torch"], info["py torch"]
    printf "config:  %s\n", info["c config"]
    printf "malloc:  C %s; Python GLIBC_TUNABLES=%s\n", info["c malloc"], info["py glibc_tunables"]
    printf "logits:  %.1f MiB; best of %d interleaved round(s) per side (median: of the rounds'"'"' medians)\n\n", L, rounds
    printf "%-30s %12s %12s %10s\n", "figure", "C", "Python", "Py/C"
    printf "%-30s %12s %12s %10s\n", "------------------------------", "------------", "------------", "----------"
    split("grpo_step grpo_step_median grpo_fwd", rows, " ")
    label["grpo_step"] = "step fwd+bwd, best"; label["grpo_step_median"] = "step fwd+bwd, median"
    label["grpo_fwd"] = "forward only, best"
    for (i = 1; i <= 3; i++) {
        r = rows[i]; c = best["c", r]; p = best["py", r]
        if (r == "grpo_step_median") { c = median("c"); p = median("py") }
        printf "%-30s %9.1f ms %9.1f ms %9.2fx\n", label[r], c, p, p / c
    }
    split("base_mb inputs_mb peak_mb", rr, " ")
    names["base_mb"] = "RSS after start-up"; names["inputs_mb"] = "RSS peak with inputs made"
    names["peak_mb"] = "peak RSS"
    for (i = 1; i <= 3; i++) {
        r = rr[i]
        printf "%-30s %9.1f MB %9.1f MB\n", names[r], rss["c", r], rss["py", r]
    }
    cw = rss["c", "peak_mb"] - rss["c", "base_mb"]; pw = rss["py", "peak_mb"] - rss["py", "base_mb"]
    cs = rss["c", "peak_mb"] - rss["c", "inputs_mb"]; ps = rss["py", "peak_mb"] - rss["py", "inputs_mb"]
    printf "%-30s %9.2f x  %9.2f x   (peak RSS - start-up RSS, in logits)\n", "inputs + step", cw / L, pw / L
    printf "%-30s %9.2f x  %9.2f x   (peak RSS - RSS with the inputs, in logits)\n", "step alone", cs / L, ps / L
    printf "%-30s %9.2f x  %9.2f x   (peak RSS / logits)\n", "peak RSS in logits", rss["c", "peak_mb"] / L, rss["py", "peak_mb"] / L
    printf "\ncross-check: loss C %s, Python %s; sum |d logits| C %s, Python %s\n", check["c", "loss"], check["py", "loss"],
           check["c", "grad_abs_sum"], check["py", "grad_abs_sum"]
    speed = best["py", "grpo_step"] / best["c", "grpo_step"]
    printf "goal \"C >= 5x faster than eager\" (best step): %.2fx, %s\n", speed, (speed >= 5) ? "holds" : "does NOT hold"
    printf "goal \"peak memory <= 1.5x the logits\", C: inputs + step %.2fx (%s), step alone %.2fx (%s)\n",
           cw / L, (cw / L <= 1.5) ? "holds" : "does NOT hold", cs / L, (cs / L <= 1.5) ? "holds" : "does NOT hold"
}' "$out"
