/*
 * bench_sac.c -- the C side of run_bench_sac.sh (issue 6's benchmarks), for
 * side-by-side comparison with bench_sac.py (the same work in Python/numpy
 * and eager PyTorch).
 *
 * --part env: environment throughput of the C Pendulum-v1 plugin stepped in
 * batches through rollout/venv.h. For each n in --envs (default 1,16,256):
 *   env_n<N>     venv_step over n Pendulum-v1 environments with same-step
 *                autoreset (every 200 steps each row truncates and is reset
 *                in the same call), actions read from a table of random
 *                torques drawn once before timing; env steps per second
 *                (n per venv_step) and ns per env step.
 * The actions come from splitmix64 with a fixed seed (bench_actions below),
 * mapped to float32 in [-2, 2]: bench_sac.py draws the identical table, so
 * both sides step the same trajectories. Cross-check (untimed): one
 * environment seeded --seed stepped --check-steps steps with the first
 * actions of the table; the float32 rewards are summed in double. The plugin
 * reproduces Gymnasium's reset and dynamics bit for bit, so bench_sac.py's
 * sum must be identical.
 *
 * --part sac: SAC gradient updates per second of the trainer's agent
 * (trainer/sac_agent.h, the code `rlt train` runs), at each --hidden width,
 * batch --batch: one timed update is sac_agent_sample (indices + gather from
 * a replay buffer of 20,000 random transitions) + sac_agent_update without
 * metrics -- what bench_sac.py --part sac times as the "trainer" update
 * (Pendulum shapes: obs 3, action 1 in [-2, 2]; Adam lr 1e-3 everywhere;
 * the recommended conventions; actor and alpha every update, Polyak every
 * update). Blocks of --updates updates at hidden 64 (updates*64/hidden, at
 * least 20, at wider nets): one warm-up block, then --reps timed blocks.
 *
 * Timing: clock_gettime(CLOCK_MONOTONIC); env: best of --reps; sac: every
 * block is printed, run_bench_sac.sh takes best and median.
 *
 * Output: "c <name> steps_per_s <value>", "c <name> ns_per_step <value>",
 * "c sac_agent_h<H> block_ms <ms per update>", "c check reward_sum <value>"
 * and "c info <key> <value...>" lines.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envl.h"
#include "replay.h"
#include "sac_agent.h"
#include "tensor.h"
#include "venv.h"

enum { BENCH_MAX_SIZES = 8, BENCH_BUFFER_ROWS = 20000 };

/* Defaults shared with bench_sac.py where they name the same thing. */
typedef struct bench_config {
    int reps;                 /* timed repetitions; the best one is reported      */
    long steps;               /* env steps per repetition (over all n envs)      */
    long seed;                /* env base seed and action-table seed             */
    long check_steps;         /* steps of the reward-sum cross-check             */
    int n_sizes;
    uint32_t sizes[BENCH_MAX_SIZES]; /* batch sizes n                           */
    const char *env_path;     /* extra plugin folder (NULL: the build's)         */
    int part_env, part_sac;   /* --part env|sac|all                              */
    int n_hidden;
    int64_t hidden[BENCH_MAX_SIZES]; /* --hidden widths (sac)                    */
    long updates;             /* updates per block at hidden 64 (sac)            */
    long batch;               /* transitions per update (sac)                    */
    int threads;              /* intra-op threads (sac)                          */
} bench_config;

static const bench_config bench_defaults = {
    .reps = 5,
    .steps = 2000000,
    .seed = 0,
    .check_steps = 1000,
    .n_sizes = 3,
    .sizes = {1, 16, 256},
    .env_path = NULL,
    .part_env = 1,
    .part_sac = 0,
    .n_hidden = 2,
    .hidden = {64, 256},
    .updates = 400,
    .batch = 256,
    .threads = 1,
};

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* splitmix64's i-th output (i from 0) for seed s: mix(s + (i+1) * golden).
 * Written per index so bench_sac.py can compute the table vectorised. */
static uint64_t splitmix64_at(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* count float32 torques in [-2, 2]: the top 53 bits as a double u in [0, 1),
 * then 4u - 2 rounded to float (exact in both languages). */
static float *bench_actions(uint64_t seed, size_t count) {
    float *a = malloc(count * sizeof *a);
    if (!a) return NULL;
    for (size_t i = 0; i < count; i++) {
        double u = (double)(splitmix64_at(seed, i) >> 11) * 0x1.0p-53;
        a[i] = (float)(4.0 * u - 2.0);
    }
    return a;
}

/* `vsteps` venv_steps of v, action rows taken cyclically from table
 * [table_rows * n] (act_dim 1). Returns 0 or the venv status. */
static int bench_run(venv *v, const float *table, long table_rows, long vsteps, uint32_t n) {
    long row = 0;
    for (long t = 0; t < vsteps; t++) {
        int rc = venv_step(v, table + (size_t)row * n);
        if (rc < 0) return rc;
        if (++row == table_rows) row = 0;
    }
    return 0;
}

/* Best-of-reps env steps per second for n environments. */
static int bench_env(const bench_config *cfg, const envl_plugin *p, uint32_t n) {
    char err[1024], name[32];
    snprintf(name, sizeof name, "env_n%u", (unsigned)n);
    long vsteps = cfg->steps / (long)n;
    if (vsteps < 1) vsteps = 1;
    /* At most 2^20 action rows (4 MiB at n = 1), reused cyclically beyond. */
    long table_rows = vsteps < (1L << 20) / (long)n ? vsteps : (1L << 20) / (long)n;
    if (table_rows < 1) table_rows = 1;
    float *table = bench_actions((uint64_t)cfg->seed, (size_t)table_rows * n);
    venv *v = NULL;
    int status = -1;
    if (!table) {
        fprintf(stderr, "bench_sac: %s: out of memory for %ld action rows\n", name, table_rows);
        goto cleanup;
    }
    if (venv_create(p, NULL, n, (uint64_t)cfg->seed, 100, &v, err, sizeof err) < 0) {
        fprintf(stderr, "bench_sac: %s: %s\n", name, err);
        goto cleanup;
    }
    if (venv_reset(v) < 0 || bench_run(v, table, table_rows, vsteps, n) < 0) goto venv_failed;
    double best = -1.0;
    for (int r = 0; r < cfg->reps; r++) {
        double t0 = now_ns();
        if (bench_run(v, table, table_rows, vsteps, n) < 0) goto venv_failed;
        double per_step = (now_ns() - t0) / ((double)vsteps * n);
        if (best < 0 || per_step < best) best = per_step;
    }
    venv_stats st = venv_get_stats(v);
    printf("c %s ns_per_step %.2f\n", name, best);
    printf("c %s steps_per_s %.0f\n", name, 1e9 / best);
    printf("c %s episodes %lld\n", name, (long long)st.episodes);
    fflush(stdout);
    status = 0;
    goto cleanup;
venv_failed:
    fprintf(stderr, "bench_sac: %s: %s\n", name, venv_error(v));
cleanup:
    venv_free(v);
    free(table);
    return status;
}

/* The untimed cross-check: reward sum of one env over check_steps steps. */
static int bench_check(const bench_config *cfg, const envl_plugin *p) {
    char err[1024];
    float *table = bench_actions((uint64_t)cfg->seed, (size_t)cfg->check_steps);
    venv *v = NULL;
    int status = -1;
    if (!table || venv_create(p, NULL, 1, (uint64_t)cfg->seed, 100, &v, err, sizeof err) < 0) {
        fprintf(stderr, "bench_sac: check: %s\n", table ? err : "out of memory");
        goto cleanup;
    }
    if (venv_reset(v) < 0) goto venv_failed;
    double sum = 0.0;
    const venv_bufs *vb = venv_buffers(v);
    for (long t = 0; t < cfg->check_steps; t++) {
        if (venv_step(v, table + t) < 0) goto venv_failed;
        sum += (double)vb->reward[0];
    }
    printf("c check reward_sum %.17g\n", sum);
    printf("c check final_obs %.9g %.9g %.9g\n", (double)vb->obs[0], (double)vb->obs[1], (double)vb->obs[2]);
    fflush(stdout);
    status = 0;
    goto cleanup;
venv_failed:
    fprintf(stderr, "bench_sac: check: %s\n", venv_error(v));
cleanup:
    venv_free(v);
    free(table);
    return status;
}

/* ------------------------------------------------------------------------ */
/* SAC updates                                                               */
/* ------------------------------------------------------------------------ */

/* A full replay buffer of BENCH_BUFFER_ROWS random Pendulum-shaped
 * transitions, as bench_sac.py fills its own: s, s' ~ N(0,1), a ~ U[-1,1),
 * r ~ U[-16,0), never terminated. Drawn from g in that order. */
static rb *bench_buffer(rt_gen *g) {
    const int64_t n = BENCH_BUFFER_ROWS, od = 3, ad = 1;
    rb *b = rb_new(n, od, ad);
    rt_scope *S = rt_scope_new();
    float *host = malloc((size_t)n * (size_t)(2 * od + ad + 1) * sizeof *host);
    uint8_t *flags = calloc((size_t)n, 1);
    int ok = b && S && host && flags;
    if (ok) {
        int64_t so[2] = {n, od}, sa[2] = {n, ad}, sr[1] = {n};
        float *obs = host, *next = obs + n * od, *act = next + n * od, *rew = act + n * ad;
        rt_tensor *to = rt_randn(S, so, 2, g, RT_OPTS(RT_F32)), *tn = rt_randn(S, so, 2, g, RT_OPTS(RT_F32));
        rt_tensor *ta = rt_add_scalar(S, rt_mul_scalar(S, rt_rand(S, sa, 2, g, RT_OPTS(RT_F32)), 2.0), -1.0);
        rt_tensor *tr = rt_mul_scalar(S, rt_rand(S, sr, 1, g, RT_OPTS(RT_F32)), -16.0);
        ok = rt_to_data(to, RT_F32, obs, (size_t)(n * od) * sizeof *host) == RT_OK &&
             rt_to_data(tn, RT_F32, next, (size_t)(n * od) * sizeof *host) == RT_OK &&
             rt_to_data(ta, RT_F32, act, (size_t)(n * ad) * sizeof *host) == RT_OK &&
             rt_to_data(tr, RT_F32, rew, (size_t)n * sizeof *host) == RT_OK &&
             rb_add(b, n, obs, next, act, rew, flags, flags) == RT_OK;
    }
    if (!ok) {
        fprintf(stderr, "bench_sac: replay buffer: %s\n", rt_last_error()[0] ? rt_last_error() : "out of memory");
        rb_free(b);
        b = NULL;
    }
    free(host);
    free(flags);
    rt_scope_free(S);
    return b;
}

/* Updates per timed block: --updates at hidden 64, scaled by 64/hidden, at
 * least 20 (bench_sac.py's block_updates). */
static long bench_block_updates(const bench_config *cfg, int64_t hidden) {
    long per = (long)(cfg->updates * 64 / hidden);
    return per < 20 ? 20 : per;
}

/* `count` updates; returns ms per update, or -1 on a failure (reported). */
static double bench_updates(sac_agent *A, const rb *buffer, long batch, long count) {
    double t0 = now_ns();
    for (long i = 0; i < count; i++) {
        int rc = sac_agent_sample(A, buffer, batch);
        if (rc == RT_OK) rc = sac_agent_update(A, &A->batch, 0);
        if (rc != 0) {
            fprintf(stderr, "bench_sac: update %ld: %s\n", i, rc == 1 ? "non-finite critic loss" : rt_last_error());
            return -1;
        }
    }
    return (now_ns() - t0) / (double)count / 1e6;
}

/* Every timed block of updates at one width: "c sac_agent_h<H> block_ms <ms>". */
static int bench_sac_hidden(const bench_config *cfg, int64_t hidden) {
    sac_agent_config ac = sac_agent_config_default();
    ac.obs_dim = 3;
    ac.act_dim = 1;
    ac.act_low[0] = -2.0f;
    ac.act_high[0] = 2.0f;
    ac.hidden = hidden;
    ac.policy_lr = ac.q_lr = ac.alpha_lr = 1e-3;
    ac.seed = (uint64_t)cfg->seed;
    sac_agent A;
    if (sac_agent_init(&A, &ac) != RT_OK) {
        fprintf(stderr, "bench_sac: agent (hidden %lld): %s\n", (long long)hidden, rt_last_error());
        return -1;
    }
    rb *buffer = bench_buffer(A.gen);
    int status = -1;
    long per = bench_block_updates(cfg, hidden);
    if (buffer && bench_updates(&A, buffer, cfg->batch, per) >= 0) { /* warm-up */
        status = 0;
        for (int r = 0; r < cfg->reps && status == 0; r++) {
            double ms = bench_updates(&A, buffer, cfg->batch, per);
            if (ms < 0) status = -1;
            else printf("c sac_agent_h%lld block_ms %.4f\n", (long long)hidden, ms);
        }
        fflush(stdout);
    }
    rb_free(buffer);
    sac_agent_free(&A);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out) {
    const bench_config *d = &bench_defaults;
    fprintf(out,
            "usage: bench_sac [options]\n"
            "  --part env|sac|all  what to time (default env)\n"
            "  --reps R          timed repetitions / blocks (default %d)\n"
            "  --seed S          env base seed, action-table seed, agent seed (default %ld)\n"
            "env:\n"
            "  --steps N         env steps per repetition, over all envs (default %ld)\n"
            "  --envs A,B,...    batch sizes n (default 1,16,256; at most %d)\n"
            "  --check-steps N   steps of the reward-sum cross-check (default %ld)\n"
            "  --env-path DIR    folder searched first for pendulum.so\n"
            "sac:\n"
            "  --hidden A,B,...  network widths (default 64,256)\n"
            "  --updates N       updates per timed block at hidden 64 (N*64/hidden, >= 20, wider; default %ld)\n"
            "  --batch B         transitions per update (default %ld)\n"
            "  --threads T       intra-op threads (default %d)\n",
            d->reps, d->seed, d->steps, BENCH_MAX_SIZES, d->check_steps, d->updates, d->batch, d->threads);
}

/* Parse a decimal integer in [lo, hi] for option `opt`. */
static int parse_long(const char *opt, const char *text, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_sac: %s wants an integer in [%ld, %ld], got '%s'\n", opt, lo, hi,
                text ? text : "(missing)");
        return -1;
    }
    *out = v;
    return 0;
}

/* "1,16,256" into cfg->sizes. */
static int parse_sizes(const char *text, bench_config *cfg) {
    char buf[256];
    if (!text || strlen(text) >= sizeof buf) {
        fprintf(stderr, "bench_sac: --envs wants a list like 1,16,256\n");
        return -1;
    }
    strcpy(buf, text);
    cfg->n_sizes = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (cfg->n_sizes == BENCH_MAX_SIZES) {
            fprintf(stderr, "bench_sac: --envs takes at most %d sizes\n", BENCH_MAX_SIZES);
            return -1;
        }
        if (parse_long("--envs", tok, 1, 65536, &v) != 0) return -1;
        cfg->sizes[cfg->n_sizes++] = (uint32_t)v;
    }
    return cfg->n_sizes > 0 ? 0 : -1;
}

/* "64,256" into cfg->hidden. */
static int parse_hidden(const char *text, bench_config *cfg) {
    char buf[256];
    if (!text || strlen(text) >= sizeof buf) {
        fprintf(stderr, "bench_sac: --hidden wants a list like 64,256\n");
        return -1;
    }
    strcpy(buf, text);
    cfg->n_hidden = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (cfg->n_hidden == BENCH_MAX_SIZES) {
            fprintf(stderr, "bench_sac: --hidden takes at most %d widths\n", BENCH_MAX_SIZES);
            return -1;
        }
        if (parse_long("--hidden", tok, 1, 1 << 16, &v) != 0) return -1;
        cfg->hidden[cfg->n_hidden++] = v;
    }
    return cfg->n_hidden > 0 ? 0 : -1;
}

static int parse_args(int argc, char **argv, bench_config *cfg) {
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        long v;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(opt, "--reps") == 0) {
            if (parse_long(opt, value, 1, INT_MAX, &v) != 0) return -1;
            cfg->reps = (int)v;
        } else if (strcmp(opt, "--steps") == 0) {
            if (parse_long(opt, value, 1, LONG_MAX, &cfg->steps) != 0) return -1;
        } else if (strcmp(opt, "--seed") == 0) {
            if (parse_long(opt, value, 0, LONG_MAX, &cfg->seed) != 0) return -1;
        } else if (strcmp(opt, "--check-steps") == 0) {
            if (parse_long(opt, value, 1, 100000000L, &cfg->check_steps) != 0) return -1;
        } else if (strcmp(opt, "--part") == 0) {
            if (!value || (strcmp(value, "env") && strcmp(value, "sac") && strcmp(value, "all"))) {
                fprintf(stderr, "bench_sac: --part wants env, sac or all, got '%s'\n", value ? value : "(missing)");
                return -1;
            }
            cfg->part_env = strcmp(value, "sac") != 0;
            cfg->part_sac = strcmp(value, "env") != 0;
        } else if (strcmp(opt, "--hidden") == 0) {
            if (parse_hidden(value, cfg) != 0) return -1;
        } else if (strcmp(opt, "--updates") == 0) {
            if (parse_long(opt, value, 1, 100000000L, &cfg->updates) != 0) return -1;
        } else if (strcmp(opt, "--batch") == 0) {
            if (parse_long(opt, value, 1, 1L << 20, &cfg->batch) != 0) return -1;
        } else if (strcmp(opt, "--threads") == 0) {
            if (parse_long(opt, value, 1, 1024, &v) != 0) return -1;
            cfg->threads = (int)v;
        } else if (strcmp(opt, "--envs") == 0) {
            if (parse_sizes(value, cfg) != 0) return -1;
        } else if (strcmp(opt, "--env-path") == 0) {
            if (!value) {
                fprintf(stderr, "bench_sac: --env-path wants a folder\n");
                return -1;
            }
            cfg->env_path = value;
        } else {
            fprintf(stderr, "bench_sac: unknown option '%s'\n", opt);
            usage(stderr);
            return -1;
        }
        i++;
    }
    return 0;
}

int main(int argc, char **argv) {
    bench_config cfg = bench_defaults;
    if (parse_args(argc, argv, &cfg) != 0) return 2;
    rt_tune_malloc(); /* before any tensor exists */

    int status = 1;
    envl_plugin *plugin = NULL;
    if (cfg.part_env) {
        char err[2048];
        envl_search search;
        const char *extra[1] = {cfg.env_path};
        if (envl_search_init(&search, extra, cfg.env_path ? 1 : 0, err, sizeof err) < 0) {
            fprintf(stderr, "bench_sac: %s\n", err);
            return 1;
        }
        int rc = envl_open(&search, "pendulum", &plugin, err, sizeof err);
        envl_search_free(&search);
        if (rc < 0) {
            fprintf(stderr, "bench_sac: %s\n", err);
            return 1;
        }
        printf("c info plugin %s (%s %s)\n", plugin->path, plugin->vt->name, plugin->vt->version);
        printf("c info env_config reps=%d steps=%ld seed=%ld check_steps=%ld\n", cfg.reps, cfg.steps, cfg.seed,
               cfg.check_steps);
        fflush(stdout);
        if (bench_check(&cfg, plugin) != 0) goto cleanup;
        for (int i = 0; i < cfg.n_sizes; i++)
            if (bench_env(&cfg, plugin, cfg.sizes[i]) != 0) goto cleanup;
    }
    if (cfg.part_sac) {
        if (rt_set_num_threads(cfg.threads) != RT_OK) {
            fprintf(stderr, "bench_sac: --threads %d: %s\n", cfg.threads, rt_last_error());
            goto cleanup;
        }
        printf("c info threads %d\n", rt_get_num_threads());
        printf("c info torch %s\n", rt_torch_version());
        printf("c info blas %s\n", rt_blas_info());
        printf("c info sac_config reps=%d updates=%ld batch=%ld seed=%ld\n", cfg.reps, cfg.updates, cfg.batch,
               cfg.seed);
        fflush(stdout);
        for (int i = 0; i < cfg.n_hidden; i++)
            if (bench_sac_hidden(&cfg, cfg.hidden[i]) != 0) goto cleanup;
    }
    status = 0;
cleanup:
    envl_close(plugin);
    return status;
}
