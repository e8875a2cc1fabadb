/*
 * bench_sac.c -- environment throughput of the C Pendulum-v1 plugin stepped
 * in batches through rollout/venv.h, for a side-by-side comparison with a
 * per-environment Python/numpy step loop of the same dynamics (bench_sac.py;
 * run_bench_sac.sh runs both, plus the SAC update comparison, which uses the
 * real trainer `rlt train` on the C side, not code in this file).
 *
 * What is timed (clock_gettime(CLOCK_MONOTONIC), one warm-up pass, then the
 * best of --reps repetitions), for each n in --envs (default 1,16,256):
 *   env_n<N>     venv_step over n Pendulum-v1 environments with same-step
 *                autoreset (every 200 steps each row truncates and is reset
 *                in the same call), actions read from a table of random
 *                torques drawn once before timing; env steps per second
 *                (n per venv_step) and ns per env step.
 * The actions come from splitmix64 with a fixed seed (bench_actions below),
 * mapped to float32 in [-2, 2]: bench_sac.py draws the identical table, so
 * both sides step the same trajectories.
 *
 * Cross-check (untimed): one environment seeded --seed stepped --check-steps
 * steps with the first actions of the table; the float32 rewards are summed
 * in double. The plugin reproduces Gymnasium's reset and dynamics bit for bit,
 * so bench_sac.py's sum must be identical.
 *
 * Output: "c <name> steps_per_s <value>", "c <name> ns_per_step <value>",
 * "c check reward_sum <value>" and "c info <key> <value...>" lines.
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
#include "venv.h"

enum { BENCH_MAX_SIZES = 8 };

/* Defaults shared with bench_sac.py where they name the same thing. */
typedef struct bench_config {
    int reps;                 /* timed repetitions; the best one is reported      */
    long steps;               /* env steps per repetition (over all n envs)      */
    long seed;                /* env base seed and action-table seed             */
    long check_steps;         /* steps of the reward-sum cross-check             */
    int n_sizes;
    uint32_t sizes[BENCH_MAX_SIZES]; /* batch sizes n                           */
    const char *env_path;     /* extra plugin folder (NULL: the build's)         */
} bench_config;

static const bench_config bench_defaults = {
    .reps = 5,
    .steps = 2000000,
    .seed = 0,
    .check_steps = 1000,
    .n_sizes = 3,
    .sizes = {1, 16, 256},
    .env_path = NULL,
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
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out) {
    const bench_config *d = &bench_defaults;
    fprintf(out,
            "usage: bench_sac [options]\n"
            "  --reps R          timed repetitions, best reported (default %d)\n"
            "  --steps N         env steps per repetition, over all envs (default %ld)\n"
            "  --envs A,B,...    batch sizes n (default 1,16,256; at most %d)\n"
            "  --seed S          env base seed and action-table seed (default %ld)\n"
            "  --check-steps N   steps of the reward-sum cross-check (default %ld)\n"
            "  --env-path DIR    folder searched first for pendulum.so\n",
            d->reps, d->steps, BENCH_MAX_SIZES, d->seed, d->check_steps);
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

    char err[2048];
    envl_search search;
    envl_plugin *plugin = NULL;
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
    int status = 1;
    if (bench_check(&cfg, plugin) != 0) goto cleanup;
    for (int i = 0; i < cfg.n_sizes; i++)
        if (bench_env(&cfg, plugin, cfg.sizes[i]) != 0) goto cleanup;
    status = 0;
cleanup:
    envl_close(plugin);
    return status;
}
