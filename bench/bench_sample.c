/*
 * bench_sample.c -- the C side of run_bench_sample.sh (issue 7): sampling
 * throughput of rollout/sampler.h's smp_generate with the KV cache, to compare
 * with the same model and sampling loop in eager PyTorch (bench_sample.py).
 *
 * The model is the recipe's (runs/grpo-reverse.ini): trainer/models/gpt.h's
 * GPT, 4 layers, width 128, 4 heads, 4x MLP, tied head, vocab 64, context 64,
 * float32, GPT-2 initialisation drawn from a generator seeded --seed. The
 * prompts are --batch rows of --prompt random token ids (drawn from the same
 * generator after the weights, no padding, one completion per prompt). One
 * timed call is smp_generate for --new tokens per row: one prefill forward of
 * the prompts, then one cached single-token forward per step, each step
 * filtering the logits (temperature, top-k) and drawing a token; no stop ids,
 * so every row gets exactly --new tokens and
 *     tokens/s = batch * new / seconds of the call.
 * The sampler also computes each token's log-prob and reads the tokens back
 * to the host every step (its stop test); that is part of what is timed.
 *
 * Timing: clock_gettime(CLOCK_MONOTONIC) around smp_generate (the output
 * scope is freed outside the timed region); one untimed warm-up call, then
 * --reps timed calls, each printed, and the best.
 *
 * Cross-check (untimed, from the warm-up call): every row has --new tokens,
 * and the mean log-prob of the sampled tokens. The freshly initialised model
 * gives near-uniform logits, so with top-k k it is close to -ln(k);
 * bench_sample.py prints the same figure for its own loop.
 *
 * Output: "c sample_t<T> rep_ms <ms>" and "c sample_t<T> rep_tokens_per_s <v>"
 * per timed call, "c sample_t<T> tokens_per_s <best>", "c check mean_logp
 * <v>" and "c info <key> <value...>" lines (threads, BLAS, torch, config).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpt.h"
#include "sampler.h"
#include "tensor.h"

/* Defaults shared with bench_sample.py: change both or neither. */
typedef struct bench_config {
    int threads;        /* intra-op threads                                  */
    int reps;           /* timed smp_generate calls; the best is reported    */
    long batch;         /* rows sampled at once                              */
    long prompt;        /* prompt tokens per row                             */
    long new_tokens;    /* tokens sampled per row                            */
    long top_k;         /* top-k filter (0 = off)                            */
    double temperature; /* > 0                                               */
    long context;       /* the model's context (position table)              */
    long seed;          /* weights, then prompts, then the draws             */
} bench_config;

static const bench_config bench_defaults = {
    .threads = 1,
    .reps = 5,
    .batch = 64,
    .prompt = 16,
    .new_tokens = 48,
    .top_k = 50,
    .temperature = 1.0,
    .context = 64,
    .seed = 0,
};

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One smp_generate call into a fresh scope. *ms receives its wall time; when
 * mean_logp is not NULL the untimed checks run on the result. RT_OK or a
 * negative status (reported). */
static int bench_call(const bench_config *cfg, const gpt *m, const smp_config *sc,
                      const rt_tensor *prompts, rt_gen *gen, double *ms, double *mean_logp) {
    rt_scope *S = rt_scope_new();
    smp_out out;
    int rc = RT_ERR;
    memset(&out, 0, sizeof out);
    if (!S) {
        fprintf(stderr, "bench_sample: cannot create a scope\n");
        return RT_ERR;
    }
    double t0 = now_ns();
    rc = smp_generate(S, m, sc, prompts, NULL, 1, gen, &out);
    *ms = (now_ns() - t0) / 1e6;
    if (rc != RT_OK) {
        fprintf(stderr, "bench_sample: smp_generate: %s\n", rt_last_error());
        goto done;
    }
    if (mean_logp) {
        for (int64_t i = 0; i < out.n; i++) {
            if (out.lengths[i] != cfg->new_tokens) {
                fprintf(stderr, "bench_sample: row %lld has %lld tokens, expected %ld\n", (long long)i,
                        (long long)out.lengths[i], cfg->new_tokens);
                rc = RT_ERR;
                goto done;
            }
        }
        *mean_logp = rt_item(rt_mean(S, out.logps, RT_DIM_ALL, 0));
        if (isnan(*mean_logp)) {
            fprintf(stderr, "bench_sample: mean log-prob: %s\n", rt_last_error());
            rc = RT_ERR;
        }
    }
done:
    smp_out_free(&out);
    rt_scope_free(S);
    return rc;
}

static int bench_sample(const bench_config *cfg) {
    char name[32];
    gpt_config gc = gpt_config_default();
    gc.vocab = 64;
    gc.context = cfg->context;
    gc.n_layer = 4;
    gc.n_head = 4;
    gc.d_model = 128;
    gc.mlp_hidden = 0; /* 4 * d_model */
    gc.tie_embeddings = 1;
    smp_config sc = smp_config_default();
    sc.temperature = cfg->temperature;
    sc.top_k = cfg->top_k;
    sc.top_p = 1.0;
    sc.max_new_tokens = cfg->new_tokens;
    sc.n_stop = 0;

    rt_gen *gen = rt_gen_new((uint64_t)cfg->seed);
    gpt *m = NULL;
    rt_tensor *prompts = NULL;
    int status = -1;
    if (!gen || gpt_new(&gc, RT_OPTS(RT_F32), gen, &m) != RT_OK) {
        fprintf(stderr, "bench_sample: model: %s\n", rt_last_error());
        goto cleanup;
    }
    int64_t pshape[2] = {cfg->batch, cfg->prompt};
    prompts = rt_randint(NULL, 0, gc.vocab, pshape, 2, gen, RT_OPTS(RT_I64)); /* [B,P] */
    if (!prompts) {
        fprintf(stderr, "bench_sample: prompts: %s\n", rt_last_error());
        goto cleanup;
    }

    double ms, mean_logp = 0.0, best = -1.0;
    if (bench_call(cfg, m, &sc, prompts, gen, &ms, &mean_logp) != RT_OK) goto cleanup; /* warm-up */
    printf("c check mean_logp %.6f\n", mean_logp);
    printf("c check ln_top_k %.6f\n", cfg->top_k > 0 ? -log((double)cfg->top_k) : -log((double)gc.vocab));
    snprintf(name, sizeof name, "sample_t%d", cfg->threads);
    double tokens = (double)cfg->batch * (double)cfg->new_tokens;
    for (int r = 0; r < cfg->reps; r++) {
        if (bench_call(cfg, m, &sc, prompts, gen, &ms, NULL) != RT_OK) goto cleanup;
        printf("c %s rep_ms %.3f\n", name, ms);
        printf("c %s rep_tokens_per_s %.0f\n", name, tokens / (ms / 1e3));
        if (best < 0 || ms < best) best = ms;
    }
    printf("c %s tokens_per_s %.0f\n", name, tokens / (best / 1e3));
    fflush(stdout);
    status = 0;
cleanup:
    rt_free(prompts);
    gpt_free(m);
    rt_gen_free(gen);
    return status;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out) {
    const bench_config *d = &bench_defaults;
    fprintf(out,
            "usage: bench_sample [options]\n"
            "  --threads T       intra-op threads (default %d)\n"
            "  --reps R          timed smp_generate calls after one warm-up (default %d)\n"
            "  --batch B         rows sampled at once (default %ld)\n"
            "  --prompt P        prompt tokens per row (default %ld)\n"
            "  --new N           tokens sampled per row (default %ld)\n"
            "  --top-k K         top-k filter, 0 = off (default %ld)\n"
            "  --temperature X   sampling temperature > 0 (default %g)\n"
            "  --context C       the model's context, >= P + N (default %ld)\n"
            "  --seed S          weights, prompts and draws (default %ld)\n",
            d->threads, d->reps, d->batch, d->prompt, d->new_tokens, d->top_k, d->temperature,
            d->context, d->seed);
}

/* Parse a decimal integer in [lo, hi] for option `opt`. */
static int parse_long(const char *opt, const char *text, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_sample: %s wants an integer in [%ld, %ld], got '%s'\n", opt, lo, hi,
                text ? text : "(missing)");
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_config *cfg) {
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        long v;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(opt, "--threads") == 0) {
            if (parse_long(opt, value, 1, 1024, &v) != 0) return -1;
            cfg->threads = (int)v;
        } else if (strcmp(opt, "--reps") == 0) {
            if (parse_long(opt, value, 1, INT_MAX, &v) != 0) return -1;
            cfg->reps = (int)v;
        } else if (strcmp(opt, "--batch") == 0) {
            if (parse_long(opt, value, 1, 1L << 20, &cfg->batch) != 0) return -1;
        } else if (strcmp(opt, "--prompt") == 0) {
            if (parse_long(opt, value, 1, 1L << 20, &cfg->prompt) != 0) return -1;
        } else if (strcmp(opt, "--new") == 0) {
            if (parse_long(opt, value, 1, 1L << 20, &cfg->new_tokens) != 0) return -1;
        } else if (strcmp(opt, "--top-k") == 0) {
            if (parse_long(opt, value, 0, 1L << 20, &cfg->top_k) != 0) return -1;
        } else if (strcmp(opt, "--context") == 0) {
            if (parse_long(opt, value, 1, 1L << 20, &cfg->context) != 0) return -1;
        } else if (strcmp(opt, "--seed") == 0) {
            if (parse_long(opt, value, 0, LONG_MAX, &cfg->seed) != 0) return -1;
        } else if (strcmp(opt, "--temperature") == 0) {
            char *end = NULL;
            errno = 0;
            double x = value ? strtod(value, &end) : 0.0;
            if (!value || errno != 0 || end == value || *end != '\0' || !(x > 0.0) || !isfinite(x)) {
                fprintf(stderr, "bench_sample: --temperature wants a finite number > 0, got '%s'\n",
                        value ? value : "(missing)");
                return -1;
            }
            cfg->temperature = x;
        } else {
            fprintf(stderr, "bench_sample: unknown option '%s'\n", opt);
            usage(stderr);
            return -1;
        }
        i++;
    }
    if (cfg->prompt + cfg->new_tokens > cfg->context) {
        fprintf(stderr, "bench_sample: --prompt %ld + --new %ld exceed --context %ld\n", cfg->prompt,
                cfg->new_tokens, cfg->context);
        return -1;
    }
    if (cfg->top_k > 64) {
        fprintf(stderr, "bench_sample: --top-k %ld exceeds the vocabulary 64\n", cfg->top_k);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    rt_tune_malloc(); /* before any tensor exists */
    bench_config cfg = bench_defaults;
    if (parse_args(argc, argv, &cfg) != 0) return 2;
    if (rt_set_num_threads(cfg.threads) != RT_OK) {
        fprintf(stderr, "bench_sample: --threads %d: %s\n", cfg.threads, rt_last_error());
        return 1;
    }
    printf("c info threads %d\n", rt_get_num_threads());
    printf("c info blas %s\n", rt_blas_info());
    printf("c info torch %s\n", rt_torch_version());
    printf("c info config reps=%d batch=%ld prompt=%ld new=%ld top_k=%ld temperature=%g context=%ld "
           "seed=%ld\n",
           cfg.reps, cfg.batch, cfg.prompt, cfg.new_tokens, cfg.top_k, cfg.temperature, cfg.context,
           cfg.seed);
    fflush(stdout);
    return bench_sample(&cfg) == 0 ? 0 : 1;
}
