#!/usr/bin/env bash
# run_bench_sac.sh -- issue 6's benchmarks, C and Python interleaved in one run
# (C, Py, C, Py, ...: the machine is shared and noisy, so each side gets
# several chances), then a side-by-side table with the goals. Builds nothing.
#   1. env steps/s: bench_sac --part env (the C Pendulum-v1 plugin through
#      venv, n = 1, 16, 256) against bench_sac.py --part env (one
#      Gymnasium-style numpy env object per environment, stepped from a Python
#      loop, reset on done).
#   2. SAC updates/s at hidden 64 and 256, batch 256 -- the goal's measure:
#      bench_sac --part sac (the trainer's agent, trainer/sac_agent.h: replay
#      sample + one update, exactly what `rlt train` runs per step) against
#      the same update in eager PyTorch (bench_sac.py --part sac: the
#      trainer's conventions, and CleanRL's update for reference).
#   3. with --rlt-bin, like for like with the whole trainer step: `rlt train
#      RECIPE --set sac.learning_starts=0 ...` (act, env step, replay write,
#      update, per step; perf/ms_per_step of every logged block but the
#      first) against Python's update plus act/env/store.
#
#   bench/run_bench_sac.sh --c-bin build/bench/bench_sac [--rlt-bin build/trainer/rlt]
#                          [--recipe runs/sac-pendulum.ini] [--rounds 3] [--threads 1]
#                          [--hidden 64,256] [--updates 400] [--reps 5] [--skip-env]
#   --updates N: updates per timed block at hidden 64 (N*64/hidden, >= 20, wider).
#   cmake --build build --target bench_sac_run      # all three, through CMake
#
# Python gets the malloc settings of rt_tune_malloc() through GLIBC_TUNABLES
# (the values bench/run_bench.sh uses); rlt and bench_sac call it themselves.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
c_bin=""
rlt_bin=""
recipe="$here/../runs/sac-pendulum.ini"
py_script="$here/bench_sac.py"
python=/usr/bin/python3   # the python3 on PATH (pyenv) has no torch
rounds=3
threads=1
hidden_list="64,256"
updates=400
reps=5
skip_env=0

usage() {
    sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
    --c-bin) c_bin=${2:?--c-bin needs a path}; shift 2 ;;
    --rlt-bin) rlt_bin=${2:?--rlt-bin needs a path}; shift 2 ;;
    --recipe) recipe=${2:?--recipe needs a path}; shift 2 ;;
    --python) python=${2:?--python needs a path}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a count}; shift 2 ;;
    --threads) threads=${2:?--threads needs a count}; shift 2 ;;
    --hidden) hidden_list=${2:?--hidden needs a list}; shift 2 ;;
    --updates) updates=${2:?--updates needs a count}; shift 2 ;;
    --reps) reps=${2:?--reps needs a count}; shift 2 ;;
    --skip-env) skip_env=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_bench_sac.sh: unexpected argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -z "$c_bin" ] || [ ! -x "$c_bin" ]; then
    echo "run_bench_sac.sh: --c-bin PATH must name the built bench_sac (got '${c_bin}')" >&2
    exit 2
fi
if [ -n "$rlt_bin" ] && [ ! -x "$rlt_bin" ]; then
    echo "run_bench_sac.sh: --rlt-bin '$rlt_bin' is not an executable" >&2
    exit 2
fi
if [ -n "$rlt_bin" ] && [ ! -r "$recipe" ]; then
    echo "run_bench_sac.sh: recipe '$recipe' is not readable" >&2
    exit 2
fi
for pair in "rounds:$rounds" "threads:$threads" "updates:$updates" "reps:$reps"; do
    if ! [[ "${pair#*:}" =~ ^[1-9][0-9]*$ ]]; then
        echo "run_bench_sac.sh: --${pair%%:*} wants a positive integer, got '${pair#*:}'" >&2
        exit 2
    fi
done
if ! [[ "$hidden_list" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
    echo "run_bench_sac.sh: --hidden wants a list like 64,256, got '$hidden_list'" >&2
    exit 2
fi

# Same values as rt_tune_malloc() (tensor/tensor_ops.cpp) and bench/run_bench.sh.
tunables="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=268435456:glibc.malloc.mxfast=0"

work=$(mktemp -d "${TMPDIR:-/tmp}/rlt_bench_sac.XXXXXX")
trap 'rm -rf "$work"' EXIT
out="$work/results"

# rlt train on the recipe with one update per env step from the start; emits
# "c sac_rlt_h<H> block_ms <ms>" for every logged block after the first.
run_rlt() {
    local hidden=$1 round=$2
    local block=$(( updates * 64 / hidden )); [ "$block" -lt 20 ] && block=20
    local total=$(( block * (reps + 1) ))
    local dir="$work/run_h${hidden}_r${round}"
    if ! "$rlt_bin" train "$recipe" --run-dir "$dir" \
        --set sac.learning_starts=0 --set sac.total_steps="$total" --set sac.hidden="$hidden" \
        --set run.log_every="$block" --set run.save_every=0 --set run.tensorboard=false \
        --set run.threads="$threads" >"$dir.log" 2>&1; then
        echo "run_bench_sac.sh: $rlt_bin train failed (hidden $hidden, round $round):" >&2
        tail -5 "$dir.log" >&2
        return 1
    fi
    grep -o '"perf/ms_per_step":[-0-9.eE+]*' "$dir/metrics.jsonl" | sed 's/.*://' | tail -n +2 |
        awk -v h="$hidden" '{ printf "c sac_rlt_h%s block_ms %s\n", h, $1 }'
    rm -rf "$dir"
}

py_variants="trainer,cleanrl"
[ -n "$rlt_bin" ] && py_variants="trainer,cleanrl,trainer_step"

echo "bench_sac: $rounds interleaved round(s), $threads thread(s), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$out"
for ((r = 1; r <= rounds; r++)); do
    if [ "$skip_env" = 0 ]; then
        echo "bench_sac: round $r/$rounds: env, C"
        "$c_bin" --part env --reps "$reps" >>"$out" || { echo "run_bench_sac.sh: $c_bin --part env failed (round $r)" >&2; exit 1; }
        echo "bench_sac: round $r/$rounds: env, Python"
        GLIBC_TUNABLES="$tunables" "$python" "$py_script" --part env --reps "$reps" >>"$out" ||
            { echo "run_bench_sac.sh: $py_script --part env failed (round $r)" >&2; exit 1; }
    fi
    for h in ${hidden_list//,/ }; do
        echo "bench_sac: round $r/$rounds: SAC hidden $h, C (sac_agent sample + update)"
        "$c_bin" --part sac --hidden "$h" --reps "$reps" --updates "$updates" --threads "$threads" >>"$out" ||
            { echo "run_bench_sac.sh: $c_bin --part sac failed (round $r)" >&2; exit 1; }
        if [ -n "$rlt_bin" ]; then
            echo "bench_sac: round $r/$rounds: SAC hidden $h, C (rlt train step)"
            run_rlt "$h" "$r" >>"$out"
        fi
        echo "bench_sac: round $r/$rounds: SAC hidden $h, Python"
        GLIBC_TUNABLES="$tunables" "$python" "$py_script" --part sac --hidden "$h" --reps "$reps" \
            --updates "$updates" --threads "$threads" --variants "$py_variants" >>"$out" ||
            { echo "run_bench_sac.sh: $py_script --part sac failed (round $r)" >&2; exit 1; }
    done
done
echo "bench_sac: load average after the run $(cut -d' ' -f1-3 /proc/loadavg)"

awk -v rounds="$rounds" -v reps="$reps" -v updates="$updates" -v hidden_list="$hidden_list" \
    -v tunables="$tunables" -v threads="$threads" -v skip_env="$skip_env" -v with_rlt="${rlt_bin:+1}" '
$2 == "info" {
    key = $1 " " $3
    if (!(key in info)) { v = $0; sub(/^[^ ]+ info [^ ]+ /, "", v); info[key] = v }
    next
}
$2 == "check" { check[$1, $3] = $0; sub(/^[^ ]+ check [^ ]+ /, "", check[$1, $3]); next }
$3 == "ns_per_step" {
    k = $1 SUBSEP $2
    if (!(k in env) || $4 + 0 < env[k]) env[k] = $4 + 0
    next
}
$3 == "block_ms" {
    k = $1 SUBSEP $2
    nb[k]++; blocks[k, nb[k]] = $4 + 0
    if (!(k in best) || $4 + 0 < best[k]) best[k] = $4 + 0
    next
}
function median(k,    n, i, j, t, a) {
    n = nb[k]
    for (i = 1; i <= n; i++) a[i] = blocks[k, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
    print ""
    printf "torch:   C %s, BLAS %s; Python %s, BLAS %s; threads C %s, Python %s\n", info["c torch"], info["c blas"],
           info["py torch"], info["py blas"], info["c threads"], info["py threads"]
    printf "python:  %s\n", info["py python"]
    if (!skip_env) printf "C env:   %s\n", info["c plugin"]
    printf "malloc:  C rt_tune_malloc(); Python GLIBC_TUNABLES=%s\n", tunables
    printf "rounds:  %d interleaved; env: best of %d reps per side and round; SAC: %d timed blocks per side and round\n",
           rounds, reps, reps
    printf "         (hidden 64: %d updates per block; wider: %d*64/hidden, at least 20), threads %d\n\n", updates, updates, threads

    if (!skip_env) {
        printf "1. Pendulum-v1 env steps/s (C: plugin via venv_step, same-step autoreset; Python: one numpy env object per env)\n"
        printf "%-10s %14s %14s %12s %12s %9s\n", "envs n", "C steps/s", "Py steps/s", "C ns/step", "Py ns/step", "C/Py"
        printf "%-10s %14s %14s %12s %12s %9s\n", "----------", "--------------", "--------------", "------------", "------------", "---------"
        split("1 16 256", ns, " ")
        for (i = 1; i <= 3; i++) {
            row = "env_n" ns[i]
            if (!(("c", row) in env) || !(("py", row) in env)) { printf "%-10s missing a side\n", ns[i]; continue }
            c = env["c", row]; p = env["py", row]
            printf "%-10s %14.0f %14.0f %12.1f %12.1f %8.0fx\n", ns[i], 1e9 / c, 1e9 / p, c, p, p / c
        }
        printf "cross-check, reward sum of env 0 (seed 0, 1000 steps, same action table): C %s, Python %s (%s)\n\n",
               check["c", "reward_sum"], check["py", "reward_sum"],
               (check["c", "reward_sum"] == check["py", "reward_sum"]) ? "identical" : "DIFFERENT"
    }

    printf "2. SAC, batch 256, %d thread(s): ms per update (updates/s), best and median over all timed blocks\n", threads
    printf "%-6s %-38s %10s %10s %10s %9s\n", "hidden", "side", "best ms", "median ms", "updates/s", "Py/C med"
    printf "%-6s %-38s %10s %10s %10s %9s\n", "------", "--------------------------------------", "----------", "----------", "----------", "---------"
    nh = split(hidden_list, hs, ",")
    label["sac_agent"] = "C: sac_agent sample + update"
    label["sac_trainer"] = "Py: same update (trainer conventions)"
    label["sac_cleanrl"] = "Py: CleanRL update"
    label["sac_rlt"] = "C: rlt train step (+act/env/store)"
    label["sac_trainer_step"] = "Py: same update + act/env/store"
    ns_ = split(with_rlt ? "sac_agent sac_trainer sac_cleanrl sac_rlt sac_trainer_step" : "sac_agent sac_trainer sac_cleanrl", sides, " ")
    for (i = 1; i <= nh; i++) {
        h = hs[i]
        for (s = 1; s <= ns_; s++) {
            side = (sides[s] == "sac_agent" || sides[s] == "sac_rlt") ? "c" : "py"
            k = side SUBSEP sides[s] "_h" h
            if (!(k in best)) { printf "%-6s %-38s missing\n", h, label[sides[s]]; continue }
            m = median(k)
            ref = (sides[s] == "sac_trainer_step") ? "c" SUBSEP "sac_rlt_h" h : "c" SUBSEP "sac_agent_h" h
            ratio = (side == "c" || !(ref in best)) ? "" : sprintf("%8.2fx", m / median(ref))
            printf "%-6s %-38s %10.3f %10.3f %10.0f %9s\n", h, label[sides[s]], best[k], m, 1000 / m, ratio
        }
    }
    printf "\ngoals (medians; the same update in eager PyTorch over the C agent'"'"'s sample + update):\n"
    for (i = 1; i <= nh; i++) {
        h = hs[i]
        ck = "c" SUBSEP "sac_agent_h" h; pk = "py" SUBSEP "sac_trainer_h" h
        if (!(ck in best) || !(pk in best)) continue
        sp = median(pk) / median(ck)
        want = (h + 0 <= 64) ? 2.0 : 1.0
        goal = (h + 0 <= 64) ? ">= 2x faster" : "not slower"
        line = sprintf("  hidden %-4s %-13s Py/C %.2fx (%s)", h, goal, sp, (sp >= want) ? "holds" : "does NOT hold")
        rk = "c" SUBSEP "sac_rlt_h" h; sk = "py" SUBSEP "sac_trainer_step_h" h
        if ((rk in best) && (sk in best)) line = line sprintf("; like for like (whole step) %.2fx", median(sk) / median(rk))
        print line
    }
}' "$out"
