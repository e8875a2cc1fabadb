/*
 * bench_ops.c -- per-op cost of rlt's C binding (tensor.h) on tiny tensors,
 * and the cost of one small MLP training step, for a side-by-side comparison
 * with the same work in eager PyTorch (bench_ops.py; run_bench.sh runs both).
 *
 * What is timed (clock_gettime(CLOCK_MONOTONIC), warm-up, then the best of
 * --reps repetitions):
 *   add_8x8, mul_8x8, matmul_8x8    one op on two float32 [8,8] tensors, in a
 *                                   loop that resets its scope every
 *                                   --reset-every ops (how a training loop
 *                                   uses the binding); ns per op, the scope
 *                                   resets included.
 *   *_nograd                        the same with grad mode off.
 *   *_8x8_out                       the allocation-free form into a preallocated
 *                                   [8,8] (rt_add_out...; Python: out=, no_grad)
 *   mlp_step                        x [256,64] -> Linear(64,64) -> ReLU ->
 *                                   Linear(64,64) -> ReLU -> Linear(64,10) ->
 *                                   cross-entropy vs int64 labels, backward,
 *                                   Adam step, zero_grad; us per step.
 * Inputs are drawn once from explicit generators (model: --seed, data:
 * --seed + 1), the same way bench_ops.py draws them, so both programs do the
 * same arithmetic; the loss after the final step is printed as a cross-check.
 *
 * Output: one machine-readable line per figure, "c <name> <unit> <value>",
 * plus "c info <key> <value...>" lines (threads, BLAS, torch version, config).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn.h"
#include "tensor.h"

/* Defaults shared with bench_ops.py: change both or neither. */
typedef struct bench_config {
    int threads;     /* intra-op threads                                   */
    int reps;        /* timed repetitions; the best one is reported        */
    int iters;       /* ops per repetition (8x8 benchmarks)                */
    int warmup;      /* untimed ops before the repetitions                 */
    int reset_every; /* scope reset period K, in ops                       */
    int mlp_steps;   /* training steps per repetition                      */
    int mlp_warmup;  /* untimed training steps before the repetitions      */
    long seed;       /* model generator seed; data uses seed + 1           */
    const char *only; /* comma-separated benchmark names to run (NULL: all) */
} bench_config;

static const bench_config bench_defaults = {
    .threads = 1,
    .reps = 7,
    .iters = 20000,
    .warmup = 2000,
    .reset_every = 64,
    .mlp_steps = 200,
    .mlp_warmup = 20,
    .seed = 0,
    .only = NULL,
};

/* True when benchmark `name` is one of --only's comma-separated names. */
static int bench_selected(const bench_config *cfg, const char *name) {
    if (!cfg->only) return 1;
    size_t len = strlen(name);
    for (const char *p = cfg->only; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == len && strncmp(p, name, n) == 0) return 1;
        p += comma ? n + 1 : n;
    }
    return 0;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* 8x8 ops                                                                   */
/* ------------------------------------------------------------------------ */

typedef rt_tensor *(*bench_binary_fn)(rt_scope *, const rt_tensor *, const rt_tensor *);

/* n ops of f(a, b) into S, resetting S every `reset_every` ops and at the end.
 * Returns 0, or -1 when an op failed (message in rt_last_error()). */
static int bench_run_ops(rt_scope *S, bench_binary_fn f, const rt_tensor *a, const rt_tensor *b,
                         int n, int reset_every) {
    int since_reset = 0;
    for (int i = 0; i < n; i++) {
        if (!f(S, a, b)) return -1;
        if (++since_reset == reset_every) {
            rt_scope_reset(S);
            since_reset = 0;
        }
    }
    rt_scope_reset(S);
    return 0;
}

/* Best-of-reps ns per op of f(a, b); grad mode off when no_grad. */
static int bench_binary(const bench_config *cfg, const char *name, bench_binary_fn f,
                        const rt_tensor *a, const rt_tensor *b, int no_grad) {
    rt_scope *S = rt_scope_new();
    if (!S) {
        fprintf(stderr, "bench_ops: %s: rt_scope_new failed: %s\n", name, rt_last_error());
        return -1;
    }
    int previous_mode = no_grad ? rt_no_grad_begin() : rt_grad_enabled();
    int status = bench_run_ops(S, f, a, b, cfg->warmup, cfg->reset_every);
    double best = -1.0;
    for (int r = 0; r < cfg->reps && status == 0; r++) {
        double t0 = now_ns();
        status = bench_run_ops(S, f, a, b, cfg->iters, cfg->reset_every);
        double per_op = (now_ns() - t0) / cfg->iters;
        if (best < 0 || per_op < best) best = per_op;
    }
    rt_grad_mode_restore(previous_mode);
    rt_scope_free(S);
    if (status != 0) {
        fprintf(stderr, "bench_ops: %s failed: %s\n", name, rt_last_error());
        return -1;
    }
    printf("c %s ns_per_op %.1f\n", name, best);
    fflush(stdout);
    return 0;
}

/* The allocation-free forms (rt_*_out into a preallocated [8,8]): best-of-reps
 * ns per op. No scope, no handle, no tensor allocation per op. */
typedef int (*bench_out_fn)(rt_tensor *, const rt_tensor *, const rt_tensor *);

static int bench_out(const bench_config *cfg, const char *name, bench_out_fn f, const rt_tensor *a,
                     const rt_tensor *b) {
    const int64_t shape[] = {8, 8};
    rt_tensor *dst = rt_zeros(NULL, shape, 2, RT_OPTS(RT_F32)); /* [8,8] */
    int status = dst ? 0 : -1;
    for (int i = 0; i < cfg->warmup && status == 0; i++) status = f(dst, a, b);
    double best = -1.0;
    for (int r = 0; r < cfg->reps && status == 0; r++) {
        double t0 = now_ns();
        for (int i = 0; i < cfg->iters && status == 0; i++) status = f(dst, a, b);
        double per_op = (now_ns() - t0) / cfg->iters;
        if (best < 0 || per_op < best) best = per_op;
    }
    rt_free(dst);
    if (status != 0) {
        fprintf(stderr, "bench_ops: %s failed: %s\n", name, rt_last_error());
        return -1;
    }
    printf("c %s ns_per_op %.1f\n", name, best);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* MLP training step                                                         */
/* ------------------------------------------------------------------------ */

enum { MLP_BATCH = 256, MLP_IN = 64, MLP_HIDDEN = 64, MLP_CLASSES = 10 };

/* One step: forward, cross-entropy, backward, Adam, zero_grad. Intermediates
 * go to S, which is reset at the end. *loss_out (when not NULL) receives the
 * step's loss; reading it costs a sync, so the timed loop passes NULL. */
static int mlp_train_step(rt_scope *S, const nn_mlp *net, rt_optim *opt, const rt_tensor *x,
                          const rt_tensor *labels, double *loss_out) {
    rt_tensor *logits = nn_mlp_forward(S, net, x);                        /* [256,10] */
    rt_tensor *loss = rt_cross_entropy(S, logits, labels, RT_MEAN, -100, 0.0); /* []  */
    int status = loss ? rt_backward(loss) : RT_ERR;
    if (status == RT_OK) status = rt_optim_step(opt);
    if (status == RT_OK) status = rt_optim_zero_grad(opt);
    if (status == RT_OK && loss_out) *loss_out = rt_item(loss);
    rt_scope_reset(S);
    return status;
}

static int bench_mlp(const bench_config *cfg) {
    const int64_t widths[] = {MLP_IN, MLP_HIDDEN, MLP_HIDDEN, MLP_CLASSES};
    const int64_t x_shape[] = {MLP_BATCH, MLP_IN};
    const int64_t label_shape[] = {MLP_BATCH};
    int status = -1;
    nn_params *params = nn_params_new();
    rt_gen *model_gen = rt_gen_new((uint64_t)cfg->seed);
    rt_gen *data_gen = rt_gen_new((uint64_t)cfg->seed + 1);
    rt_scope *S = rt_scope_new();
    rt_tensor *x = NULL, *labels = NULL;
    rt_optim *opt = NULL;
    nn_mlp net;

    if (!params || !model_gen || !data_gen || !S) goto cleanup;
    if (nn_mlp_init(&net, params, "net", widths, 4, NN_ACT_RELU, NN_ACT_NONE, RT_OPTS(RT_F32),
                    model_gen) != 0)
        goto cleanup;
    x = rt_randn(NULL, x_shape, 2, data_gen, RT_OPTS(RT_F32));                     /* [256,64] */
    labels = rt_randint(NULL, 0, MLP_CLASSES, label_shape, 1, data_gen, RT_OPTS(RT_I64)); /* [256] */
    if (!x || !labels) goto cleanup;
    rt_optim_opts adam = rt_optim_defaults(RT_ADAM); /* torch defaults: lr 1e-3 */
    opt = rt_optim_new(RT_ADAM, nn_params_tensors(params), nn_params_names(params),
                       nn_params_count(params), &adam);
    if (!opt) goto cleanup;

    for (int i = 0; i < cfg->mlp_warmup; i++)
        if (mlp_train_step(S, &net, opt, x, labels, NULL) != RT_OK) goto cleanup;
    double best = -1.0;
    for (int r = 0; r < cfg->reps; r++) {
        double t0 = now_ns();
        for (int i = 0; i < cfg->mlp_steps; i++)
            if (mlp_train_step(S, &net, opt, x, labels, NULL) != RT_OK) goto cleanup;
        double per_step = (now_ns() - t0) / cfg->mlp_steps;
        if (best < 0 || per_step < best) best = per_step;
    }
    double final_loss = 0.0;
    if (mlp_train_step(S, &net, opt, x, labels, &final_loss) != RT_OK) goto cleanup;
    printf("c mlp_step us_per_step %.2f\n", best / 1e3);
    printf("c mlp_step final_loss %.9g\n", final_loss);
    fflush(stdout);
    status = 0;

cleanup:
    if (status != 0) fprintf(stderr, "bench_ops: mlp_step failed: %s\n", rt_last_error());
    rt_optim_free(opt);
    rt_free(x);
    rt_free(labels);
    rt_scope_free(S);
    rt_gen_free(data_gen);
    rt_gen_free(model_gen);
    nn_params_free(params);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out) {
    const bench_config *d = &bench_defaults;
    fprintf(out,
            "usage: bench_ops [options]\n"
            "  --threads N       intra-op threads (default %d)\n"
            "  --reps R          timed repetitions, best reported (default %d)\n"
            "  --iters N         ops per repetition for the 8x8 ops (default %d)\n"
            "  --warmup N        untimed ops before timing (default %d)\n"
            "  --reset-every K   reset the scope every K ops (default %d)\n"
            "  --mlp-steps N     MLP training steps per repetition (default %d)\n"
            "  --mlp-warmup N    untimed MLP steps before timing (default %d)\n"
            "  --seed S          model seed; data uses S+1 (default %ld)\n"
            "  --only A,B,...    run only these benchmarks (e.g. add_8x8,mlp_step)\n",
            d->threads, d->reps, d->iters, d->warmup, d->reset_every, d->mlp_steps,
            d->mlp_warmup, d->seed);
}

/* Parse a decimal integer in [lo, hi] for option `opt`. */
static int parse_long(const char *opt, const char *text, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_ops: %s wants an integer in [%ld, %ld], got '%s'\n", opt, lo, hi,
                text ? text : "(missing)");
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_config *cfg) {
    struct {
        const char *name;
        int *field;
        long lo;
    } int_opts[] = {
        {"--threads", &cfg->threads, 1},         {"--reps", &cfg->reps, 1},
        {"--iters", &cfg->iters, 1},             {"--warmup", &cfg->warmup, 0},
        {"--reset-every", &cfg->reset_every, 1}, {"--mlp-steps", &cfg->mlp_steps, 1},
        {"--mlp-warmup", &cfg->mlp_warmup, 0},
    };
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        long v;
        if (strcmp(argv[i], "--only") == 0) {
            if (!value) {
                fprintf(stderr, "bench_ops: --only wants benchmark names (a,b,...)\n");
                return -1;
            }
            cfg->only = value;
            i++;
            continue;
        }
        if (strcmp(argv[i], "--seed") == 0) {
            if (parse_long(argv[i], value, 0, LONG_MAX - 1, &cfg->seed) != 0) return -1;
            i++;
            continue;
        }
        size_t k = 0, n_opts = sizeof int_opts / sizeof int_opts[0];
        while (k < n_opts && strcmp(argv[i], int_opts[k].name) != 0) k++;
        if (k == n_opts) {
            fprintf(stderr, "bench_ops: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return -1;
        }
        if (parse_long(argv[i], value, int_opts[k].lo, INT_MAX, &v) != 0) return -1;
        *int_opts[k].field = (int)v;
        i++;
    }
    return 0;
}

int main(int argc, char **argv) {
    rt_tune_malloc(); /* before any tensor exists */
    bench_config cfg = bench_defaults;
    if (parse_args(argc, argv, &cfg) != 0) return 2;
    if (rt_set_num_threads(cfg.threads) != RT_OK) {
        fprintf(stderr, "bench_ops: %s\n", rt_last_error());
        return 1;
    }

    printf("c info threads %d\n", rt_get_num_threads());
    printf("c info blas %s\n", rt_blas_info());
    printf("c info torch %s\n", rt_torch_version());
    printf("c info config reps=%d iters=%d warmup=%d reset_every=%d mlp_steps=%d mlp_warmup=%d "
           "seed=%ld\n",
           cfg.reps, cfg.iters, cfg.warmup, cfg.reset_every, cfg.mlp_steps, cfg.mlp_warmup,
           cfg.seed);
    fflush(stdout);

    const int64_t shape[] = {8, 8};
    rt_gen *gen = rt_gen_new((uint64_t)cfg.seed + 1);
    rt_tensor *a = rt_randn(NULL, shape, 2, gen, RT_OPTS(RT_F32)); /* [8,8] */
    rt_tensor *b = rt_randn(NULL, shape, 2, gen, RT_OPTS(RT_F32)); /* [8,8] */
    int status = 1;
    if (!a || !b) {
        fprintf(stderr, "bench_ops: creating the 8x8 inputs failed: %s\n", rt_last_error());
        goto cleanup;
    }
    static const struct {
        const char *name;
        bench_binary_fn fn;
    } ops[] = {{"add", rt_add}, {"mul", rt_mul}, {"matmul", rt_matmul}};
    for (int no_grad = 0; no_grad <= 1; no_grad++) {
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s_8x8%s", ops[i].name, no_grad ? "_nograd" : "");
            if (!bench_selected(&cfg, name)) continue;
            if (bench_binary(&cfg, name, ops[i].fn, a, b, no_grad) != 0) goto cleanup;
        }
    }
    static const struct {
        const char *name;
        bench_out_fn fn;
    } outs[] = {{"add_8x8_out", rt_add_out}, {"mul_8x8_out", rt_mul_out}, {"matmul_8x8_out", rt_matmul_out}};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        if (bench_selected(&cfg, outs[i].name) && bench_out(&cfg, outs[i].name, outs[i].fn, a, b) != 0) goto cleanup;
    if (bench_selected(&cfg, "mlp_step") && bench_mlp(&cfg) != 0) goto cleanup;
    status = 0;

cleanup:
    rt_free(a);
    rt_free(b);
    rt_gen_free(gen);
    return status;
}
