/*
 * bench_grpo.c -- the GRPO loss, forward and backward, starting from policy
 * logits [B,T,V] float32, on rlt's binding: the fused token log-prob kernel
 * (rt_token_logps) followed by the clipped surrogate composed from binding
 * ops. bench_grpo.py does the same computation in eager PyTorch along TRL's
 * path (logits / temperature, selective_log_softmax with its per-row
 * logsumexp loop); run_bench_grpo.sh runs both, interleaved, and prints the
 * side-by-side table.
 *
 * One step (TRL semantics, loss_type dapo with num_items = the mask count):
 *   logp   = log_softmax(logits / temperature)[ids]               [B,T]
 *   ratio  = exp(logp - old_logps)
 *   l      = -min(ratio * A, clamp(ratio, 1 - eps, 1 + eps) * A)   A [B] broadcast over T
 *   loss   = sum(where(mask, l, 0)) / max(sum(mask), 1)
 *   backward to logits (a fresh leaf every repetition, so the gradient is a
 *   new [B,T,V] each time, as in a training step).
 * Inputs are drawn from one generator seeded --seed, in the order
 * bench_grpo.py draws them: logits = randn(B,T,V) scaled by 2 in place, ids = randint(0, V,
 * (B,T)), noise = randn(B,T), A = randn(B); old_logps = logp (no grad) +
 * 0.1 * noise, so some ratios fall outside the clip range; sequence i keeps
 * its first T - i*T/(2B) tokens.
 *
 * Output (machine-readable, one figure a line):
 *   c grpo_step ms <best> / c grpo_step_median ms <median> / c grpo_fwd ms <best>
 *   c rss base_mb|inputs_mb|peak_mb <value>   (getrusage ru_maxrss: after start-up,
 *                                             after the inputs exist, at the end)
 *   c check loss|grad_abs_sum <value>         (cross-check with Python)
 *   c info <key> <value...>
 */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tensor.h"

/* Defaults shared with bench_grpo.py: change both or neither. */
typedef struct grpo_bench_config {
    int threads, reps, warmup;
    int tune_malloc; /* 1: rt_tune_malloc() (the timing setting); 0: glibc defaults, so freed
                      * [B,T,V] buffers go back to the OS and the peak RSS is the live peak */
    long B, T, V, seed;
    double temperature, epsilon;
} grpo_bench_config;

static const grpo_bench_config grpo_bench_defaults = {
    .threads = 2, .reps = 5, .warmup = 1, .tune_malloc = 1, .B = 8, .T = 512, .V = 8192, .seed = 0,
    .temperature = 1.0, .epsilon = 0.2,
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
    return (double)ru.ru_maxrss / 1024.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(FILE *out) {
    const grpo_bench_config *d = &grpo_bench_defaults;
    fprintf(out,
            "usage: bench_grpo [--threads N] [--reps N] [--warmup N] [--B N] [--T N] [--V N] [--seed N]\n"
            "                  [--temperature X] [--epsilon X] [--tune-malloc 0|1]\n"
            "defaults: threads %d, reps %d, warmup %d, B %ld, T %ld, V %ld, seed %ld, temperature %g, "
            "epsilon %g, tune-malloc %d\n",
            d->threads, d->reps, d->warmup, d->B, d->T, d->V, d->seed, d->temperature, d->epsilon, d->tune_malloc);
}

static int parse_args(int argc, char **argv, grpo_bench_config *c) {
    *c = grpo_bench_defaults;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!v) {
            fprintf(stderr, "bench_grpo: %s needs a value\n", argv[i]);
            return -1;
        }
        if (strcmp(argv[i], "--temperature") == 0 || strcmp(argv[i], "--epsilon") == 0) {
            double x = strtod(v, &end);
            if (*end || end == v || !(x > 0)) {
                fprintf(stderr, "bench_grpo: %s wants a number > 0, got '%s'\n", argv[i], v);
                return -1;
            }
            if (argv[i][2] == 't') c->temperature = x;
            else c->epsilon = x;
        } else {
            struct { const char *name; long lo; long *l; int *n; } opts[] = {
                {"--threads", 1, NULL, &c->threads}, {"--reps", 1, NULL, &c->reps},
                {"--warmup", 0, NULL, &c->warmup},   {"--B", 1, &c->B, NULL},
                {"--T", 1, &c->T, NULL},             {"--V", 1, &c->V, NULL},
                {"--seed", 0, &c->seed, NULL},       {"--tune-malloc", 0, NULL, &c->tune_malloc},
            };
            size_t k = 0, n = sizeof opts / sizeof opts[0];
            while (k < n && strcmp(argv[i], opts[k].name) != 0) k++;
            if (k == n) {
                fprintf(stderr, "bench_grpo: unknown option '%s'\n", argv[i]);
                usage(stderr);
                return -1;
            }
            long x = strtol(v, &end, 10);
            if (*end || end == v || x < opts[k].lo || x > INT_MAX) {
                fprintf(stderr, "bench_grpo: %s wants an integer >= %ld, got '%s'\n", argv[i], opts[k].lo, v);
                return -1;
            }
            if (opts[k].l) *opts[k].l = x;
            else *opts[k].n = (int)x;
        }
        i++;
    }
    return 0;
}

/* The GRPO loss of one step from logits x (a leaf that requires grad). */
static rt_tensor *grpo_loss(rt_scope *S, const grpo_bench_config *c, rt_tensor *x, const rt_tensor *ids,
                            const rt_tensor *old, const rt_tensor *adv_bt, const rt_tensor *mask) {
    rt_tensor *logp = rt_token_logps(S, x, ids, c->temperature, NULL);
    rt_tensor *ratio = rt_exp(S, rt_sub(S, logp, old));
    rt_tensor *clipped = rt_clamp(S, ratio, 1.0 - c->epsilon, 1.0 + c->epsilon);
    rt_tensor *l = rt_neg(S, rt_minimum(S, rt_mul(S, ratio, adv_bt), rt_mul(S, clipped, adv_bt)));
    rt_tensor *num = rt_sum(S, rt_where_scalar(S, mask, l, 0.0), RT_DIM_ALL, 0);
    rt_tensor *den = rt_clamp(S, rt_sum(S, rt_to_dtype(S, mask, RT_F32), RT_DIM_ALL, 0), 1.0, INFINITY);
    return rt_div(S, num, den);
}

int main(int argc, char **argv) {
    grpo_bench_config c;
    if (parse_args(argc, argv, &c) != 0) return 2;
    if (c.tune_malloc) rt_tune_malloc(); /* before any tensor exists */
    if (rt_set_num_threads(c.threads) != RT_OK) {
        fprintf(stderr, "bench_grpo: %s\n", rt_last_error());
        return 1;
    }
    printf("c info threads %d\n", rt_get_num_threads());
    printf("c info torch %s\n", rt_torch_version());
    printf("c info config B=%ld T=%ld V=%ld float32 temperature=%g epsilon=%g reps=%d warmup=%d seed=%ld\n", c.B,
           c.T, c.V, c.temperature, c.epsilon, c.reps, c.warmup, c.seed);
    printf("c info malloc %s\n", c.tune_malloc ? "rt_tune_malloc" : "glibc defaults");
    printf("c info logits_mb %.1f\n", (double)c.B * c.T * c.V * 4 / (1024.0 * 1024.0));
    printf("c rss base_mb %.1f\n", peak_rss_mb());

    int rc = 1;
    rt_scope *D = rt_scope_new(), *S = rt_scope_new();
    rt_gen *g = rt_gen_new((uint64_t)c.seed);
    double *times = calloc((size_t)c.reps, sizeof *times), best_fwd = 1e300;
    if (!D || !S || !g || !times) {
        fprintf(stderr, "bench_grpo: out of memory\n");
        goto out;
    }

    /* Inputs, in bench_grpo.py's draw order. */
    int64_t sv[3] = {c.B, c.T, c.V};
    rt_tensor *logits = rt_randn(D, sv, 3, g, RT_OPTS(RT_F32));
    if (!logits || rt_mul_scalar_(logits, 2.0) != RT_OK) { /* in place: no second [B,T,V] */
        fprintf(stderr, "bench_grpo: logits: %s\n", rt_last_error());
        goto out;
    }
    rt_tensor *ids = rt_randint(D, 0, c.V, sv, 2, g, RT_OPTS(RT_I64));
    rt_tensor *noise = rt_randn(D, sv, 2, g, RT_OPTS(RT_F32));
    rt_tensor *adv = rt_randn(D, sv, 1, g, RT_OPTS(RT_F32));
    int mode = rt_no_grad_begin();
    rt_tensor *old = rt_add_scaled(D, rt_token_logps(D, logits, ids, c.temperature, NULL), noise, 0.1);
    rt_grad_mode_restore(mode);
    /* mask[i,t] = t < T - i*T/(2B) */
    rt_tensor *pos = rt_arange(D, 0, (double)c.T, 1, RT_OPTS(RT_I64));
    rt_tensor *len = rt_rsub_scalar(D, rt_mul_scalar(D, rt_arange(D, 0, (double)c.B, 1, RT_OPTS(RT_I64)),
                                                     (double)(c.T / (2 * c.B))),
                                    (double)c.T);
    rt_tensor *mask = rt_compare(D, rt_unsqueeze(D, pos, 0), RT_LT, rt_unsqueeze(D, len, 1));
    rt_tensor *adv_bt = rt_unsqueeze(D, adv, 1);
    if (!mask || !adv_bt || !old) {
        fprintf(stderr, "bench_grpo: inputs: %s\n", rt_last_error());
        goto out;
    }
    printf("c rss inputs_mb %.1f\n", peak_rss_mb());

    double loss_v = 0;
    rt_tensor *last_grad = NULL;
    for (int r = -c.warmup; r < c.reps; r++) {
        rt_scope_reset(S);
        rt_tensor *x = rt_detach(S, logits);
        rt_set_requires_grad(x, 1);
        double t0 = now_ms();
        rt_tensor *loss = grpo_loss(S, &c, x, ids, old, adv_bt, mask);
        double t1 = now_ms();
        if (!loss || rt_backward(loss) != RT_OK) {
            fprintf(stderr, "bench_grpo: step: %s\n", rt_last_error());
            goto out;
        }
        rt_tensor *grad = rt_grad(S, x);
        double t2 = now_ms();
        if (!grad) {
            fprintf(stderr, "bench_grpo: no gradient: %s\n", rt_last_error());
            goto out;
        }
        if (r >= 0) {
            times[r] = t2 - t0;
            if (t1 - t0 < best_fwd) best_fwd = t1 - t0;
        }
        if (r == c.reps - 1) {
            loss_v = rt_item(loss);
            last_grad = grad;
        }
    }
    /* Peak before the cross-check, whose abs() is one more [B,T,V]. */
    double peak = peak_rss_mb();
    double gsum = rt_item(rt_sum(S, rt_abs(S, last_grad), RT_DIM_ALL, 0));
    qsort(times, (size_t)c.reps, sizeof *times, cmp_double);
    printf("c grpo_step ms %.2f\n", times[0]);
    printf("c grpo_step_median ms %.2f\n", times[c.reps / 2]);
    printf("c grpo_fwd ms %.2f\n", best_fwd);
    printf("c check loss %.9g\n", loss_v);
    printf("c check grad_abs_sum %.9g\n", gsum);
    printf("c rss peak_mb %.1f\n", peak);
    rc = 0;
out:
    free(times);
    rt_gen_free(g);
    rt_scope_free(S);
    rt_scope_free(D);
    return rc;
}
