/*
 * sampler.c -- batched completion sampling with a KV cache (see sampler.h for
 * the API, the soft-thinking rules and the stored layout).
 *
 * Layout: config, checks, then smp_generate in three parts: set-up (repeat the
 * prompts G times, fill the cache with the prompts), the decoding loop, and
 * the assembly of the outputs. The per-row bookkeeping (stop ids, lengths,
 * thinking phase, what is stored) happens on the host: each step reads back N
 * token ids (and, while some row thinks, the N x K soft candidates), which is
 * the least a stop test needs anyway. Each step's tensors live in a scope that
 * is reset two steps later, so memory stays flat over a long completion.
 */
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Thinking phases of a row in soft-thinking mode. */
enum { PH_BEFORE = 0, PH_THINKING = 1, PH_AFTER = 2 };

smp_config smp_config_default(void) {
    smp_config c;
    memset(&c, 0, sizeof c);
    c.temperature = 1.0;
    c.top_k = 0;
    c.top_p = 1.0;
    c.max_new_tokens = 64;
    c.n_stop = 0;
    c.pad_id = 0;
    c.soft_think = 0;
    c.think_begin_id = -1;
    c.think_end_id = -1;
    c.soft = soft_config_default();
    c.keep_logits = 0;
    return c;
}

int smp_config_check(const smp_config *c, int64_t vocab) {
#define BAD(cond, ...)                                                                             \
    do {                                                                                           \
        if (cond) {                                                                                \
            rt_set_error(__VA_ARGS__);                                                             \
            return RT_EINVAL;                                                                      \
        }                                                                                          \
    } while (0)
    BAD(!c, "smp_config_check: config is NULL");
    BAD(vocab < 1, "smp_config_check: vocab %lld must be >= 1", (long long)vocab);
    BAD(!(c->temperature >= 0.0) || !isfinite(c->temperature),
        "sampler: temperature = %g must be finite and >= 0 (0 = greedy)", c->temperature);
    BAD(c->top_k < 0, "sampler: top_k = %lld must be >= 0 (0 = off)", (long long)c->top_k);
    BAD(!(c->top_p > 0.0 && c->top_p <= 1.0), "sampler: top_p = %g must be in (0, 1] (1 = off)",
        c->top_p);
    BAD(c->max_new_tokens < 1, "sampler: max_new_tokens = %lld must be >= 1",
        (long long)c->max_new_tokens);
    BAD(c->n_stop < 0 || c->n_stop > SMP_MAX_STOP, "sampler: n_stop = %d is outside [0, %d]",
        c->n_stop, SMP_MAX_STOP);
    for (int i = 0; i < c->n_stop; i++)
        BAD(c->stop_ids[i] < 0 || c->stop_ids[i] >= vocab,
            "sampler: stop_ids[%d] = %lld is outside the vocabulary [0, %lld)", i,
            (long long)c->stop_ids[i], (long long)vocab);
    BAD(c->pad_id < 0 || c->pad_id >= vocab, "sampler: pad_id = %lld is outside the vocabulary [0, %lld)",
        (long long)c->pad_id, (long long)vocab);
    BAD(c->keep_logits != 0 && c->keep_logits != 1, "sampler: keep_logits = %d must be 0 or 1",
        c->keep_logits);
    BAD(c->soft_think != 0 && c->soft_think != 1, "sampler: soft_think = %d must be 0 or 1",
        c->soft_think);
    if (c->soft_think) {
        BAD(c->think_begin_id < 0 || c->think_begin_id >= vocab,
            "sampler: soft_think needs think_begin_id in [0, %lld), got %lld", (long long)vocab,
            (long long)c->think_begin_id);
        BAD(c->think_end_id < 0 || c->think_end_id >= vocab,
            "sampler: soft_think needs think_end_id in [0, %lld), got %lld", (long long)vocab,
            (long long)c->think_end_id);
        if (soft_config_check(&c->soft) != RT_OK)
            return RT_EINVAL;
        BAD(c->soft.top_k > vocab, "sampler: soft.top_k = %lld exceeds the vocabulary %lld",
            (long long)c->soft.top_k, (long long)vocab);
    }
    return RT_OK;
#undef BAD
}

void smp_out_free(smp_out *o) {
    if (!o)
        return;
    free(o->lengths);
    memset(o, 0, sizeof *o);
}

/* ------------------------------------------------------------------------ */
/* Generation                                                                */
/* ------------------------------------------------------------------------ */

/* Host-side state of one smp_generate call. Per-token arrays are [N, M]
 * (row-major, M = max_new_tokens), soft candidate arrays [N, M, K]. */
typedef struct smp_run {
    int64_t N, P, M, K, V, L; /* rows, prompt, max new, soft K, vocab, P + M */
    uint8_t *mask;            /* [N, L] 1 = real; the cache's key mask      */
    int64_t *tok;             /* [N, M] emitted ids (pad after the end)     */
    double *logp;             /* [N, M]                                     */
    int64_t *kids;            /* [N, M, K] stored candidate ids (soft mode) */
    double *kg;               /* [N, M, K] stored g'                        */
    uint8_t *soft;            /* [N, M] stored row is soft                  */
    int *phase;               /* [N] PH_*                                   */
    uint8_t *done;            /* [N] ended before the current step          */
    int64_t *len;             /* [N] completion lengths                     */
    int64_t *soft_ids;        /* [N, K] this step's soft candidates          */
    double *soft_g;           /* [N, K] their g'                             */
    double *soft_lp;          /* [N] soft log-probs                          */
    double *end_lp;           /* [N] log p~(think_end)                       */
    int64_t *disc_tok;        /* [N] discrete draws                          */
    double *disc_lp;          /* [N] their log-probs                         */
    int64_t *next_tok;        /* [N] the next step's input ids               */
    int64_t *next_ids;        /* [N, K] the next step's stored rows (soft mode) */
    double *next_g;           /* [N, K] their g'                             */
} smp_run;

static void smp_run_free(smp_run *r) {
    free(r->mask);
    free(r->tok);
    free(r->logp);
    free(r->kids);
    free(r->kg);
    free(r->soft);
    free(r->phase);
    free(r->done);
    free(r->len);
    free(r->soft_ids);
    free(r->soft_g);
    free(r->soft_lp);
    free(r->end_lp);
    free(r->disc_tok);
    free(r->disc_lp);
    free(r->next_tok);
    free(r->next_ids);
    free(r->next_g);
}

static int smp_run_alloc(smp_run *r, int soft) {
    size_t N = (size_t)r->N, M = (size_t)r->M, K = (size_t)r->K;
    r->mask = calloc(N * (size_t)r->L, 1);
    r->tok = calloc(N * M, sizeof *r->tok);
    r->logp = calloc(N * M, sizeof *r->logp);
    r->phase = calloc(N, sizeof *r->phase);
    r->done = calloc(N, 1);
    r->len = calloc(N, sizeof *r->len);
    r->disc_tok = calloc(N, sizeof *r->disc_tok);
    r->disc_lp = calloc(N, sizeof *r->disc_lp);
    r->next_tok = calloc(N, sizeof *r->next_tok);
    if (soft) {
        r->kids = calloc(N * M * K, sizeof *r->kids);
        r->kg = calloc(N * M * K, sizeof *r->kg);
        r->soft = calloc(N * M, 1);
        r->soft_ids = calloc(N * K, sizeof *r->soft_ids);
        r->soft_g = calloc(N * K, sizeof *r->soft_g);
        r->soft_lp = calloc(N, sizeof *r->soft_lp);
        r->end_lp = calloc(N, sizeof *r->end_lp);
        r->next_ids = calloc(N * K, sizeof *r->next_ids);
        r->next_g = calloc(N * K, sizeof *r->next_g);
    }
    if (!r->mask || !r->tok || !r->logp || !r->phase || !r->done || !r->len || !r->disc_tok ||
        !r->disc_lp || !r->next_tok ||
        (soft && (!r->kids || !r->kg || !r->soft || !r->soft_ids || !r->soft_g || !r->soft_lp ||
                  !r->end_lp || !r->next_ids || !r->next_g))) {
        rt_set_error("smp_generate: out of memory for %lld rows x %lld tokens", (long long)r->N,
                     (long long)r->M);
        return RT_ERR;
    }
    return RT_OK;
}

static int is_stop(const smp_config *cfg, int64_t id) {
    for (int i = 0; i < cfg->n_stop; i++)
        if (cfg->stop_ids[i] == id)
            return 1;
    return 0;
}

/* Reads t (any shape, numel == n) into buf as dt. */
static int read_host(const rt_tensor *t, rt_dtype dt, void *buf, int64_t n) {
    if (!t || rt_numel(t) != n)
        return RT_ERR;
    return rt_to_data(t, dt, buf, (size_t)n * rt_dtype_size(dt));
}

/* Prefixes rt_last_error() with "<fn>: <what>: " and returns RT_ERR. */
static int smp_fail_in(const char *fn, const char *what) {
    char prev[768];
    snprintf(prev, sizeof prev, "%s", rt_last_error());
    rt_set_error("%s: %s: %s", fn, what, prev[0] ? prev : "unknown error");
    return RT_ERR;
}

static int smp_fail(const char *what) { return smp_fail_in("smp_generate", what); }

/* Checks the call's arguments; fills r's sizes. */
static int smp_check_args(rt_scope *S, const gpt *m, const smp_config *cfg,
                          const rt_tensor *prompt_ids, const rt_tensor *prompt_mask, int64_t G,
                          rt_gen *gen, smp_run *r) {
    char a[64], b[64];
    const gpt_config *mc;
    if (!S || !m || !cfg) {
        rt_set_error("smp_generate: %s is NULL", !S ? "scope (it owns the outputs)" : !m ? "model" : "config");
        return RT_EINVAL;
    }
    if (!prompt_ids) {
        if (!rt_last_error()[0])
            rt_set_error("smp_generate: prompt_ids is NULL");
        return RT_EINVAL;
    }
    mc = gpt_get_config(m);
    if (smp_config_check(cfg, mc->vocab) != RT_OK)
        return RT_EINVAL;
    if (rt_ndim(prompt_ids) != 2 || rt_dtype_of(prompt_ids) != RT_I64 || rt_size(prompt_ids, 0) < 1 ||
        rt_size(prompt_ids, 1) < 1) {
        rt_set_error("smp_generate: prompt_ids %s (%s) must be int64 [B,P] with B, P >= 1",
                     rt_shape_str(prompt_ids, a, sizeof a), rt_dtype_name(rt_dtype_of(prompt_ids)));
        return RT_EINVAL;
    }
    if (prompt_mask && (rt_ndim(prompt_mask) != 2 || rt_size(prompt_mask, 0) != rt_size(prompt_ids, 0) ||
                        rt_size(prompt_mask, 1) != rt_size(prompt_ids, 1))) {
        rt_set_error("smp_generate: prompt_mask %s must have the shape of prompt_ids %s",
                     rt_shape_str(prompt_mask, b, sizeof b), rt_shape_str(prompt_ids, a, sizeof a));
        return RT_EINVAL;
    }
    if (G < 1) {
        rt_set_error("smp_generate: G = %lld completions per prompt must be >= 1", (long long)G);
        return RT_EINVAL;
    }
    if (!gen && (cfg->temperature > 0.0 || cfg->soft_think)) {
        rt_set_error("smp_generate: generator is NULL (only greedy decoding without soft thinking "
                     "draws nothing)");
        return RT_EINVAL;
    }
    r->P = rt_size(prompt_ids, 1);
    r->M = cfg->max_new_tokens;
    r->N = rt_size(prompt_ids, 0) * G;
    r->V = mc->vocab;
    r->K = cfg->soft_think ? cfg->soft.top_k : 0;
    r->L = r->P + r->M;
    if (r->L > mc->context) {
        rt_set_error("smp_generate: prompt length %lld + max_new_tokens %lld exceed the model's "
                     "context %lld",
                     (long long)r->P, (long long)r->M, (long long)mc->context);
        return RT_EINVAL;
    }
    return RT_OK;
}

/* The prompts repeated G times (row b*G+g) into W, the host mask's prompt
 * columns, and each row's initial thinking phase. */
static rt_tensor *smp_prompts(rt_scope *W, const smp_config *cfg, const rt_tensor *prompt_ids,
                              const rt_tensor *prompt_mask, int64_t G, smp_run *r) {
    int64_t B = r->N / G, P = r->P;
    int64_t *ids_h = malloc((size_t)(B * P) * sizeof *ids_h);
    uint8_t *mask_h = malloc((size_t)(B * P));
    int64_t *rep = malloc((size_t)r->N * sizeof *rep);
    rt_tensor *ids = NULL;
    if (!ids_h || !mask_h || !rep) {
        rt_set_error("smp_generate: out of memory for the prompts");
        goto done;
    }
    if (read_host(prompt_ids, RT_I64, ids_h, B * P) != RT_OK) {
        smp_fail("reading prompt_ids");
        goto done;
    }
    if (prompt_mask) {
        rt_tensor *mb = rt_compare_scalar(W, prompt_mask, RT_NE, 0.0);
        if (read_host(mb, RT_U8, mask_h, B * P) != RT_OK) {
            smp_fail("reading prompt_mask");
            goto done;
        }
    } else {
        memset(mask_h, 1, (size_t)(B * P));
    }
    for (int64_t b = 0; b < B; b++) {
        /* the last real token decides whether the row starts thinking */
        int64_t last = -1;
        for (int64_t j = P - 1; j >= 0 && last < 0; j--)
            if (mask_h[b * P + j])
                last = ids_h[b * P + j];
        for (int64_t g = 0; g < G; g++) {
            int64_t i = b * G + g;
            rep[i] = b;
            memcpy(r->mask + i * r->L, mask_h + b * P, (size_t)P);
            r->phase[i] = cfg->soft_think && last == cfg->think_begin_id ? PH_THINKING : PH_BEFORE;
        }
    }
    if (G == 1) {
        ids = rt_alias(W, prompt_ids);
    } else {
        int64_t n = r->N;
        ids = rt_index_select(W, prompt_ids, 0, rt_from_data(W, rep, &n, 1, RT_OPTS(RT_I64))); /* [N,P] */
    }
    if (!ids)
        smp_fail("repeating the prompts");
done:
    free(ids_h);
    free(mask_h);
    free(rep);
    return ids;
}

/* The host mask's first `cols` columns as a bool [N, cols] tensor in W. */
static rt_tensor *smp_mask(rt_scope *W, const smp_run *r, int64_t cols) {
    int64_t shape[2] = {r->N, r->L};
    rt_tensor *full = rt_from_data(W, r->mask, shape, 2, RT_OPTS(RT_BOOL)); /* [N,L] */
    return rt_narrow(W, full, 1, 0, cols);                                 /* [N,cols] */
}

/* A host double array as a [shape] tensor of dtype dt in W. */
static rt_tensor *from_f64(rt_scope *W, const double *data, const int64_t *shape, int nd, rt_dtype dt) {
    rt_tensor *t = rt_from_data(W, data, shape, nd, RT_OPTS(RT_F64));
    return dt == RT_F64 ? t : rt_to_dtype(W, t, dt);
}

/* One decoding step: the draws, the per-row bookkeeping and the stored row
 * of every row at column t. last: logits [N,V]. Sets *mixed when some row
 * stored a thinking step (its next input is a mixed embedding). */
static int smp_step(rt_scope *W, const smp_config *cfg, rt_gen *gen, const rt_tensor *last,
                    int64_t t, smp_run *r, int *mixed) {
    const int64_t N = r->N, M = r->M, K = r->K;
    int need_soft = 0, need_disc = 0, need_end = 0;
    *mixed = 0;
    for (int64_t i = 0; i < N; i++) {
        if (r->done[i])
            continue;
        if (r->phase[i] == PH_THINKING)
            need_soft = 1;
        else
            need_disc = 1;
    }

    /* Draws: the soft rollout first, then the discrete tokens (a fixed order,
     * so the generator's stream is reproducible). Both run over all N rows. */
    if (need_soft) {
        soft_token st;
        if (soft_rollout(W, &cfg->soft, last, NULL, gen, &st) != RT_OK)
            return smp_fail("soft rollout");
        rt_tensor *lp = soft_logps_from_logits(W, &cfg->soft, last, st.ids, st.gumbels, NULL); /* [N] */
        if (read_host(st.ids, RT_I64, r->soft_ids, N * K) != RT_OK ||
            read_host(st.gumbels, RT_F64, r->soft_g, N * K) != RT_OK ||
            read_host(lp, RT_F64, r->soft_lp, N) != RT_OK)
            return smp_fail("soft rollout");
        for (int64_t i = 0; i < N; i++)
            if (!r->done[i] && r->phase[i] == PH_THINKING && r->soft_ids[i * K] == cfg->think_end_id)
                need_end = 1;
        if (need_end) {
            /* think_end is stored one-hot; its log-prob is under the
             * distribution the rollout drew it from, p~ */
            rt_tensor *z = rt_filter_logits(W, last, cfg->soft.temperature, cfg->soft.top_k, cfg->soft.top_p);
            rt_tensor *lf = rt_select(W, rt_log_softmax(W, z, 1), 1, cfg->think_end_id); /* [N] */
            if (read_host(lf, RT_F64, r->end_lp, N) != RT_OK)
                return smp_fail("log-prob of think_end");
        }
    }
    if (need_disc) {
        rt_tensor *lp = NULL;
        rt_tensor *tok = rt_sample_logits(W, last, cfg->temperature, cfg->top_k, cfg->top_p, gen, &lp);
        if (read_host(tok, RT_I64, r->disc_tok, N) != RT_OK || read_host(lp, RT_F64, r->disc_lp, N) != RT_OK)
            return smp_fail("sampling");
    }

    for (int64_t i = 0; i < N; i++) {
        int real = !r->done[i], thinking = 0, soft = 0;
        int64_t emitted = cfg->pad_id;
        double logp = 0.0;
        if (real && r->phase[i] == PH_THINKING) {
            emitted = r->soft_ids[i * K];
            if (emitted == cfg->think_end_id) {
                logp = r->end_lp[i];
                r->phase[i] = PH_AFTER;
            } else {
                thinking = 1;
                logp = r->soft_lp[i];
                for (int64_t j = 1; j < K; j++)
                    soft |= r->soft_ids[i * K + j] != 0; /* soft_is_discrete's sentinel test */
            }
        } else if (real) {
            emitted = r->disc_tok[i];
            logp = r->disc_lp[i];
            if (cfg->soft_think && r->phase[i] == PH_BEFORE && emitted == cfg->think_begin_id)
                r->phase[i] = PH_THINKING;
        }
        if (r->kids) {
            /* the stored row: the candidates and g' of a thinking step, else
             * one-hot [emitted, 0, ...] with g' 0 */
            int64_t *kid = r->kids + (i * M + t) * K;
            double *kg = r->kg + (i * M + t) * K;
            for (int64_t j = 0; j < K; j++) {
                kid[j] = thinking ? r->soft_ids[i * K + j] : j == 0 ? emitted : 0;
                kg[j] = thinking ? r->soft_g[i * K + j] : 0.0;
                r->next_ids[i * K + j] = kid[j];
                r->next_g[i * K + j] = kg[j];
            }
            r->soft[i * M + t] = (uint8_t)soft;
        }
        r->tok[i * M + t] = emitted;
        r->logp[i * M + t] = logp;
        r->next_tok[i] = emitted;
        r->mask[i * r->L + r->P + t] = (uint8_t)real;
        if (real) {
            r->len[i] = t + 1;
            *mixed |= thinking;
            if (is_stop(cfg, emitted))
                r->done[i] = 1;
        }
    }
    return RT_OK;
}

/* The next step's logits [N,V] (in W): the tokens stored at column t go in at
 * position P+t, mixed (soft_input_embeds, the trainer's own call) when some
 * row stored a thinking step. */
static rt_tensor *smp_advance(rt_scope *W, const gpt *m, gpt_cache *cache, const smp_config *cfg,
                              const smp_run *r, int64_t t, int mixed) {
    rt_tensor *mask = smp_mask(W, r, r->P + t + 1); /* [N, P+t+1] */
    rt_tensor *logits;
    if (mixed) {
        int64_t shape[3] = {r->N, 1, r->K};
        rt_tensor *ids = rt_from_data(W, r->next_ids, shape, 3, RT_OPTS(RT_I64));     /* [N,1,K] */
        rt_tensor *g = from_f64(W, r->next_g, shape, 3, gpt_opts(m).dtype);           /* [N,1,K] */
        rt_tensor *e = soft_input_embeds(W, &cfg->soft, gpt_token_table(m), ids, g); /* [N,1,C] */
        logits = gpt_forward_cached_embeds(W, m, cache, e, mask);                    /* [N,1,V] */
    } else {
        int64_t shape[2] = {r->N, 1};
        rt_tensor *ids = rt_from_data(W, r->next_tok, shape, 2, RT_OPTS(RT_I64)); /* [N,1] */
        logits = gpt_forward_cached(W, m, cache, ids, mask);                      /* [N,1,V] */
    }
    return rt_select(W, logits, 1, 0); /* [N,V] */
}

/* The outputs [N,C(,K)] from the host arrays, into W; then moved to S. */
static int smp_assemble(rt_scope *S, rt_scope *W, const gpt *m, const smp_config *cfg, smp_run *r,
                        rt_tensor *const *step_logits, smp_out *out) {
    const int64_t N = r->N, M = r->M, K = r->K;
    int64_t C = 1;
    rt_dtype dt = gpt_opts(m).dtype;
    for (int64_t i = 0; i < N; i++)
        C = r->len[i] > C ? r->len[i] : C;
    size_t nc = (size_t)(N * C), nck = (size_t)(N * C * (K > 0 ? K : 1));
    int64_t *ids = malloc(nc * sizeof *ids), *kids = NULL;
    double *mask = malloc(nc * sizeof *mask), *logp = malloc(nc * sizeof *logp), *kg = NULL, *smask = NULL;
    int rc = RT_ERR;
    if (cfg->soft_think) {
        kids = malloc(nck * sizeof *kids);
        kg = malloc(nck * sizeof *kg);
        smask = malloc(nc * sizeof *smask);
    }
    out->lengths = malloc((size_t)N * sizeof *out->lengths);
    if (!ids || !mask || !logp || !out->lengths || (cfg->soft_think && (!kids || !kg || !smask))) {
        rt_set_error("smp_generate: out of memory for the outputs");
        goto done;
    }
    for (int64_t i = 0; i < N; i++) {
        out->lengths[i] = r->len[i];
        for (int64_t c = 0; c < C; c++) {
            int real = c < r->len[i];
            ids[i * C + c] = real ? r->tok[i * M + c] : cfg->pad_id;
            mask[i * C + c] = real;
            logp[i * C + c] = real ? r->logp[i * M + c] : 0.0;
            if (kids) {
                for (int64_t j = 0; j < K; j++) {
                    kids[(i * C + c) * K + j] = real ? r->kids[(i * M + c) * K + j] : j == 0 ? cfg->pad_id : 0;
                    kg[(i * C + c) * K + j] = real ? r->kg[(i * M + c) * K + j] : 0.0;
                }
                smask[i * C + c] = real && r->soft[i * M + c];
            }
        }
    }
    {
        int64_t s2[2] = {N, C}, s3[3] = {N, C, K};
        out->ids = rt_from_data(W, ids, s2, 2, RT_OPTS(RT_I64));
        out->mask = from_f64(W, mask, s2, 2, dt);
        out->logps = from_f64(W, logp, s2, 2, dt);
        int ok = out->ids && out->mask && out->logps;
        if (kids) {
            out->topk_ids = rt_from_data(W, kids, s3, 3, RT_OPTS(RT_I64));
            out->gumbels = from_f64(W, kg, s3, 3, dt);
            out->soft_mask = from_f64(W, smask, s2, 2, dt);
            ok = ok && out->topk_ids && out->gumbels && out->soft_mask;
        }
        if (step_logits) {
            /* [N,C,V], zero where the mask is 0 */
            rt_tensor *lg = rt_stack(W, step_logits, (int)C, 1);
            rt_tensor *keep = rt_unsqueeze(W, rt_compare_scalar(W, out->mask, RT_NE, 0.0), -1);
            out->logits = rt_where_scalar(W, keep, lg, 0.0);
            ok = ok && out->logits;
        }
        if (!ok) {
            smp_fail("assembling the outputs");
            goto done;
        }
    }
    rt_move(out->ids, S);
    rt_move(out->mask, S);
    rt_move(out->logps, S);
    if (kids) {
        rt_move(out->topk_ids, S);
        rt_move(out->gumbels, S);
        rt_move(out->soft_mask, S);
    }
    if (out->logits)
        rt_move(out->logits, S);
    out->n = N;
    out->c = C;
    rc = RT_OK;
done:
    free(ids);
    free(mask);
    free(logp);
    free(kids);
    free(kg);
    free(smask);
    return rc;
}

int smp_generate(rt_scope *S, const gpt *m, const smp_config *cfg, const rt_tensor *prompt_ids,
                 const rt_tensor *prompt_mask, int64_t G, rt_gen *gen, smp_out *out) {
    smp_run r;
    gpt_cache *cache = NULL;
    rt_scope *Wrun = NULL, *Wa = NULL, *Wb = NULL;
    rt_tensor **step_logits = NULL, *last;
    int rc = RT_ERR, region;
    if (!out) {
        rt_set_error("smp_generate: out is NULL");
        return RT_EINVAL;
    }
    memset(out, 0, sizeof *out);
    memset(&r, 0, sizeof r);
    if ((rc = smp_check_args(S, m, cfg, prompt_ids, prompt_mask, G, gen, &r)) != RT_OK)
        return rc;
    rc = RT_ERR;
    region = rt_inference_begin(); /* sampling only: no autograd anywhere below */
    Wrun = rt_scope_new();
    Wa = rt_scope_new();
    Wb = rt_scope_new();
    if (!Wrun || !Wa || !Wb) {
        rt_set_error("smp_generate: cannot create scopes");
        goto done;
    }
    if (smp_run_alloc(&r, cfg->soft_think) != RT_OK)
        goto done;
    if (cfg->keep_logits && !(step_logits = calloc((size_t)r.M, sizeof *step_logits))) {
        rt_set_error("smp_generate: out of memory");
        goto done;
    }
    cache = gpt_cache_new(m, r.N, r.L);
    if (!cache) {
        smp_fail("KV cache");
        goto done;
    }

    /* Prefill: the prompts in one forward; the last column's logits draw the
     * first token (left padding puts every prompt's last token there). */
    {
        rt_tensor *ids = smp_prompts(Wrun, cfg, prompt_ids, prompt_mask, G, &r);        /* [N,P] */
        rt_tensor *logits = gpt_forward_cached(Wa, m, cache, ids, smp_mask(Wa, &r, r.P)); /* [N,P,V] */
        last = rt_select(Wa, logits, 1, r.P - 1);                                         /* [N,V] */
        if (!last) {
            smp_fail("prompt forward");
            goto done;
        }
    }

    /* Decoding: last lives in Wa; the step's tensors and the next logits go to
     * Wb; then the two swap and the old one is emptied. */
    for (int64_t t = 0; t < r.M; t++) {
        int mixed = 0, all_done = 1;
        rt_scope *tmp;
        if (step_logits && !(step_logits[t] = rt_alias(Wrun, last))) {
            smp_fail("keeping the logits");
            goto done;
        }
        if (smp_step(Wb, cfg, gen, last, t, &r, &mixed) != RT_OK)
            goto done;
        for (int64_t i = 0; i < r.N && all_done; i++)
            all_done = r.done[i];
        if (all_done || t + 1 == r.M)
            break;
        last = smp_advance(Wb, m, cache, cfg, &r, t, mixed);
        if (!last) {
            smp_fail("decoding step");
            goto done;
        }
        tmp = Wa;
        Wa = Wb;
        Wb = tmp;
        rt_scope_reset(Wb);
    }

    if (smp_assemble(S, Wrun, m, cfg, &r, step_logits, out) != RT_OK)
        goto done;
    rc = RT_OK;
done:
    if (rc != RT_OK) {
        free(out->lengths);
        memset(out, 0, sizeof *out);
    }
    gpt_cache_free(cache);
    free(step_logits);
    rt_scope_free(Wa);
    rt_scope_free(Wb);
    rt_scope_free(Wrun);
    smp_run_free(&r);
    rt_inference_end(region);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Training-side layout                                                      */
/* ------------------------------------------------------------------------ */

/* prompt [B, ...] repeated G times along dim 0 (row b*G+g), into W. */
static rt_tensor *repeat_rows(rt_scope *W, const rt_tensor *prompt, int64_t G) {
    int64_t B = rt_size(prompt, 0), n = B * G;
    int64_t *rep;
    rt_tensor *out;
    if (G == 1)
        return rt_alias(W, prompt);
    rep = malloc((size_t)n * sizeof *rep);
    if (!rep) {
        rt_set_error("smp: out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        rep[i] = i / G;
    out = rt_index_select(W, prompt, 0, rt_from_data(W, rep, &n, 1, RT_OPTS(RT_I64)));
    free(rep);
    return out;
}

/* Checks shared by the two layout helpers. */
static int check_layout(const char *fn, const rt_tensor *prompt_ids, int64_t G, const smp_out *o) {
    char a[64];
    if (!o || !o->ids || !o->mask) {
        rt_set_error("%s: the smp_out is NULL or empty", fn);
        return RT_EINVAL;
    }
    if (!prompt_ids || rt_ndim(prompt_ids) != 2 || G < 1 || rt_size(prompt_ids, 0) * G != o->n) {
        rt_set_error("%s: prompt_ids %s with G = %lld do not give the %lld rows of the completions", fn,
                     prompt_ids ? rt_shape_str(prompt_ids, a, sizeof a) : "(null)", (long long)G,
                     (long long)o->n);
        return RT_EINVAL;
    }
    return RT_OK;
}

int smp_sequences(rt_scope *S, const rt_tensor *prompt_ids, const rt_tensor *prompt_mask, int64_t G,
                  const smp_out *o, rt_tensor **ids, rt_tensor **mask) {
    static const char fn[] = "smp_sequences";
    rt_scope *W;
    rt_tensor *pm, *i_all, *m_all;
    if (!ids || !mask) {
        rt_set_error("%s: an output pointer is NULL", fn);
        return RT_EINVAL;
    }
    *ids = *mask = NULL;
    if (check_layout(fn, prompt_ids, G, o) != RT_OK)
        return RT_EINVAL;
    W = rt_scope_new();
    if (!W) {
        rt_set_error("%s: cannot create a scope", fn);
        return RT_ERR;
    }
    pm = prompt_mask ? rt_compare_scalar(W, prompt_mask, RT_NE, 0.0)
                     : rt_ones(W, (int64_t[]){rt_size(prompt_ids, 0), rt_size(prompt_ids, 1)}, 2,
                               RT_OPTS(RT_BOOL));
    pm = rt_to_dtype(W, repeat_rows(W, pm, G), rt_dtype_of(o->mask));                    /* [N,P] */
    i_all = rt_cat(W, (rt_tensor *[]){repeat_rows(W, prompt_ids, G), o->ids}, 2, 1); /* [N,P+C] */
    m_all = rt_cat(W, (rt_tensor *[]){pm, o->mask}, 2, 1);                            /* [N,P+C] */
    if (!i_all || !m_all) {
        smp_fail_in(fn, "building the sequences");
        rt_scope_free(W);
        return RT_ERR;
    }
    *ids = rt_move(i_all, S);
    *mask = rt_move(m_all, S);
    rt_scope_free(W);
    return RT_OK;
}

int smp_soft_rows(rt_scope *S, const rt_tensor *prompt_ids, int64_t G, const smp_out *o,
                  rt_tensor **topk_ids, rt_tensor **gumbels) {
    static const char fn[] = "smp_soft_rows";
    rt_scope *W;
    rt_tensor *pids, *pk, *pg, *k_all, *g_all;
    int64_t N, P, K;
    if (!topk_ids || !gumbels) {
        rt_set_error("%s: an output pointer is NULL", fn);
        return RT_EINVAL;
    }
    *topk_ids = *gumbels = NULL;
    if (check_layout(fn, prompt_ids, G, o) != RT_OK)
        return RT_EINVAL;
    if (!o->topk_ids || !o->gumbels) {
        rt_set_error("%s: the completions were not sampled in soft-thinking mode", fn);
        return RT_EINVAL;
    }
    N = o->n;
    P = rt_size(prompt_ids, 1);
    K = rt_size(o->topk_ids, 2);
    W = rt_scope_new();
    if (!W) {
        rt_set_error("%s: cannot create a scope", fn);
        return RT_ERR;
    }
    pids = rt_unsqueeze(W, repeat_rows(W, prompt_ids, G), -1); /* [N,P,1] */
    pk = K > 1 ? rt_cat(W, (rt_tensor *[]){pids, rt_zeros(W, (int64_t[]){N, P, K - 1}, 3, RT_OPTS(RT_I64))}, 2, 2)
               : pids;                                                                  /* [N,P,K] */
    pg = rt_zeros(W, (int64_t[]){N, P, K}, 3, RT_OPTS(rt_dtype_of(o->gumbels)));       /* [N,P,K] */
    k_all = rt_cat(W, (rt_tensor *[]){pk, o->topk_ids}, 2, 1);                          /* [N,P+C,K] */
    g_all = rt_cat(W, (rt_tensor *[]){pg, o->gumbels}, 2, 1);                           /* [N,P+C,K] */
    if (!k_all || !g_all) {
        smp_fail_in(fn, "building the rows");
        rt_scope_free(W);
        return RT_ERR;
    }
    *topk_ids = rt_move(k_all, S);
    *gumbels = rt_move(g_all, S);
    rt_scope_free(W);
    return RT_OK;
}
