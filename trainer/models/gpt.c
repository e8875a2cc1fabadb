/*
 * gpt.c -- the small GPT of gpt.h: construction with GPT-2's initialisation,
 * the training forward (ids or input embeddings, left padding through a key
 * mask) and the incremental forward through per-layer KV caches.
 *
 * Layout: config, construction, the one forward (gpt_run) that the four
 * public forwards share, and the cache. The cached forward runs its own block
 * (gpt_block_decode): the q, k and v projections as one matmul over weights
 * the cache concatenates when a sequence starts, attention straight from that
 * packed projection into an uninitialised cache, and tanh-GELU through the
 * inference kernel. Every intermediate lives in a private
 * scope W that is freed before returning; only the logits move to the
 * caller's scope (the autograd graph keeps what backward needs).
 */
#include "gpt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gpt {
    gpt_config cfg;
    rt_opts opts;
    nn_params *P;
    nn_embedding tok_emb; /* "tok_emb" [V,C]       */
    nn_embedding pos_emb; /* "pos_emb" [context,C] */
    nn_block *layers;     /* [n_layer] "layers.{i}" */
    nn_layer_norm ln_f;   /* "ln_f"                */
    nn_linear lm_head;    /* "lm_head" [V,C], no bias; weight NULL when tied */
};

struct gpt_cache {
    gpt_config cfg;     /* shapes of the model it was made for */
    int64_t batch, max_len;
    rt_attn_cache **kv; /* [n_layer] keys and values, uninitialised past their length */
    rt_tensor **wqkv;   /* [n_layer] cat(q, k, v weights) [3C, C], taken when a sequence starts */
    rt_tensor **bqkv;   /* [n_layer] cat(q, k, v biases) [3C], NULL without biases */
    rt_tensor **packed; /* [n_layer][4] float32 models: qkv, o, fc, proj weights as
                           rt_pack_rows16 lays them out; NULL for float64 */
    rt_tensor *work;    /* rt_block_decode_'s intermediates, shared by the layers */
    int broken;         /* a failed forward appended to some layers only */
};

#define GPT_INIT_STD 0.02

/* ------------------------------------------------------------------------ */
/* Config                                                                    */
/* ------------------------------------------------------------------------ */

gpt_config gpt_config_default(void) {
    gpt_config c;
    memset(&c, 0, sizeof c);
    c.vocab = 64;
    c.context = 128;
    c.n_layer = 4;
    c.n_head = 4;
    c.d_model = 128;
    c.mlp_hidden = 0;
    c.tie_embeddings = 1;
    return c;
}

/* Writes the message to err (when given) and rt_last_error(); RT_EINVAL. */
static int gpt_einval(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int gpt_einval(char *err, size_t errlen, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    rt_set_error("%s", msg);
    return RT_EINVAL;
}

int gpt_config_check(const gpt_config *c, char *err, size_t errlen) {
    /* Upper bounds keep a typo from asking for terabytes. */
    static const int64_t big = (int64_t)1 << 24;
    if (!c)
        return gpt_einval(err, errlen, "gpt_config_check: config is NULL");
#define RANGE(field, lo, hi)                                                                       \
    if (c->field < (lo) || c->field > (hi))                                                        \
        return gpt_einval(err, errlen, "gpt config: " #field " = %lld is outside [%lld, %lld]",     \
                          (long long)c->field, (long long)(lo), (long long)(hi));
    RANGE(vocab, 1, big)
    RANGE(context, 1, big)
    RANGE(n_layer, 1, 1024)
    RANGE(n_head, 1, 4096)
    RANGE(d_model, 1, 1 << 16)
#undef RANGE
    if (c->mlp_hidden > (1 << 20)) /* <= 0 means 4 * d_model */
        return gpt_einval(err, errlen, "gpt config: mlp_hidden = %lld exceeds %d (<= 0 means 4 * d_model)",
                          (long long)c->mlp_hidden, 1 << 20);
    if (c->d_model % c->n_head != 0)
        return gpt_einval(err, errlen,
                          "gpt config: d_model = %lld is not divisible by n_head = %lld",
                          (long long)c->d_model, (long long)c->n_head);
    if (c->tie_embeddings != 0 && c->tie_embeddings != 1)
        return gpt_einval(err, errlen, "gpt config: tie_embeddings = %d must be 0 or 1",
                          c->tie_embeddings);
    return RT_OK;
}

/* ------------------------------------------------------------------------ */
/* Construction                                                              */
/* ------------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* GPT-2's initialisation over the registry, in registration order, under
 * no-grad: N(0, 0.02) weights and embeddings, N(0, 0.02/sqrt(2 n_layer)) for
 * the projections that write into the residual stream, zero biases,
 * LayerNorms (1, 0). */
static int gpt_init_weights(gpt *m, rt_gen *g) {
    double resid_std = GPT_INIT_STD / sqrt(2.0 * (double)m->cfg.n_layer);
    int rc = RT_OK, grad = rt_no_grad_begin();
    for (size_t i = 0; i < nn_params_count(m->P) && rc == RT_OK; i++) {
        const char *name = nn_params_name(m->P, i);
        rt_tensor *t = nn_params_tensor(m->P, i);
        int is_norm = ends_with(name, "ln_1.weight") || ends_with(name, "ln_2.weight") ||
                      strcmp(name, "ln_f.weight") == 0;
        if (ends_with(name, ".bias"))
            rc = rt_zero_(t);
        else if (is_norm)
            rc = rt_fill_(t, 1.0);
        else if (ends_with(name, "attn.o_proj.weight") || ends_with(name, "mlp.proj.weight"))
            rc = rt_normal_(t, 0.0, resid_std, g);
        else
            rc = rt_normal_(t, 0.0, GPT_INIT_STD, g);
        if (rc != RT_OK) {
            char prev[512];
            snprintf(prev, sizeof prev, "%s", rt_last_error());
            rt_set_error("gpt_new: initialising \"%s\": %s", name, prev);
        }
    }
    rt_grad_mode_restore(grad);
    return rc;
}

int gpt_new(const gpt_config *c, rt_opts o, rt_gen *g, gpt **out) {
    char sub[NN_NAME_MAX];
    gpt *m = NULL;
    rt_gen *scratch = NULL;
    int rc = RT_ERR;
    if (!out)
        return gpt_einval(NULL, 0, "gpt_new: out is NULL");
    *out = NULL;
    if (!g)
        return gpt_einval(NULL, 0, "gpt_new: generator is NULL");
    if (gpt_config_check(c, NULL, 0) != RT_OK)
        return RT_EINVAL;
    if (o.dtype != RT_F32 && o.dtype != RT_F64)
        return gpt_einval(NULL, 0, "gpt_new: dtype %s is not supported (float32 or float64)",
                          rt_dtype_name(o.dtype));
    m = calloc(1, sizeof *m);
    if (!m || !(m->layers = calloc((size_t)c->n_layer, sizeof *m->layers))) {
        rt_set_error("gpt_new: out of memory for %lld layers", (long long)c->n_layer);
        goto fail;
    }
    m->cfg = *c;
    if (m->cfg.mlp_hidden <= 0)
        m->cfg.mlp_hidden = 4 * c->d_model;
    m->opts = o;
    m->P = nn_params_new();
    /* The nn modules draw torch's default init from a scratch generator; every
     * value is then redrawn from g by gpt_init_weights, in parameter order. */
    scratch = rt_gen_new(0);
    if (!m->P || !scratch)
        goto fail;
    nn_block_config bc = nn_block_config_default(c->d_model, c->n_head);
    bc.mlp_hidden = m->cfg.mlp_hidden;
    if (nn_embedding_init(&m->tok_emb, m->P, "tok_emb", c->vocab, c->d_model, o, scratch) != RT_OK ||
        nn_embedding_init(&m->pos_emb, m->P, "pos_emb", c->context, c->d_model, o, scratch) != RT_OK)
        goto fail;
    for (int64_t i = 0; i < c->n_layer; i++) {
        snprintf(sub, sizeof sub, "layers.%lld", (long long)i);
        if (nn_block_init(&m->layers[i], m->P, sub, &bc, o, scratch) != RT_OK)
            goto fail;
    }
    if (nn_layer_norm_init(&m->ln_f, m->P, "ln_f", c->d_model, 0.0, o) != RT_OK)
        goto fail;
    if (!c->tie_embeddings &&
        nn_linear_init(&m->lm_head, m->P, "lm_head", c->d_model, c->vocab, 0, o, scratch) != RT_OK)
        goto fail;
    if (gpt_init_weights(m, g) != RT_OK)
        goto fail;
    rt_gen_free(scratch);
    *out = m;
    return RT_OK;
fail:
    if (rt_last_error()[0] == '\0')
        rt_set_error("gpt_new: failed");
    rt_gen_free(scratch);
    gpt_free(m);
    return rc;
}

void gpt_free(gpt *m) {
    if (!m)
        return;
    nn_params_free(m->P);
    free(m->layers);
    free(m);
}

const gpt_config *gpt_get_config(const gpt *m) { return m ? &m->cfg : NULL; }
nn_params *gpt_params(gpt *m) { return m ? m->P : NULL; }
rt_tensor *gpt_token_table(const gpt *m) { return m ? m->tok_emb.weight : NULL; }
rt_opts gpt_opts(const gpt *m) {
    rt_opts o = {RT_F32, RT_CPU, 0};
    return m ? m->opts : o;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                   */
/* ------------------------------------------------------------------------ */

/* Prefixes rt_last_error() with "<fn>: " and returns NULL. */
static rt_tensor *gpt_fail(const char *fn) {
    char prev[768];
    snprintf(prev, sizeof prev, "%s", rt_last_error());
    rt_set_error("%s: %s", fn, prev[0] ? prev : "unknown error");
    return NULL;
}

/* (Re)takes the packed q, k, v projection weights of every layer, at the start
 * of a sequence (the cache is empty), so a cache sees parameter updates made
 * between sequences. RT_OK or an error. */
static int gpt_cache_pack(gpt_cache *c, const gpt *m) {
    for (int64_t i = 0; i < m->cfg.n_layer; i++) {
        const nn_block *L = &m->layers[i];
        const nn_attention *A = &L->attn;
        rt_tensor *w[3] = {A->q_proj.weight, A->k_proj.weight, A->v_proj.weight};
        rt_tensor *b[3] = {A->q_proj.bias, A->k_proj.bias, A->v_proj.bias};
        rt_tensor *wq = rt_cat(NULL, w, 3, 0); /* [3C, C] */
        rt_tensor *bq = b[0] ? rt_cat(NULL, b, 3, 0) : NULL; /* [3C] */
        if (!wq || (b[0] && !bq)) {
            rt_free(wq);
            rt_free(bq);
            return RT_ERR;
        }
        rt_free(c->wqkv[i]);
        rt_free(c->bqkv[i]);
        c->wqkv[i] = wq;
        c->bqkv[i] = bq;
        if (c->packed) {
            const rt_tensor *src[4] = {wq, A->o_proj.weight, L->fc.weight, L->proj.weight};
            for (int j = 0; j < 4; j++) {
                rt_tensor *p = rt_pack_rows16(NULL, src[j]); /* [ceil(out/16), in, 16] */
                if (!p)
                    return RT_ERR;
                rt_free(c->packed[i * 4 + j]);
                c->packed[i * 4 + j] = p;
            }
        }
    }
    return RT_OK;
}

/* One block through layer i's cache: nn_block_forward_cached_masked's
 *   h = x + o_proj(attn(ln_1(x))),  out = h + proj(act(fc(ln_2(h))))
 * with the projections packed. x [B,T,C] (a fresh tensor of W's),
 * key_mask [B, len+T] bool or NULL (all real) -> [B,T,C]. GPT-2's tanh GELU
 * runs as one fused call that updates x in place (rt_block_decode_); other
 * activations take the op-by-op composition. */
static rt_tensor *gpt_block_decode(rt_scope *W, const nn_block *L, gpt_cache *c, int64_t i,
                                   rt_tensor *x, const rt_tensor *key_mask) {
    if (L->act == NN_ACT_GELU_TANH) {
        rt_tensor *const *pk = c->packed ? c->packed + i * 4 : NULL;
        rt_block_weights w = {
            .ln_1_weight = L->ln_1.weight, .ln_1_bias = L->ln_1.bias,
            .qkv_weight = pk ? pk[0] : c->wqkv[i], .qkv_bias = c->bqkv[i],
            .o_weight = pk ? pk[1] : L->attn.o_proj.weight, .o_bias = L->attn.o_proj.bias,
            .ln_2_weight = L->ln_2.weight, .ln_2_bias = L->ln_2.bias,
            .fc_weight = pk ? pk[2] : L->fc.weight, .fc_bias = L->fc.bias,
            .proj_weight = pk ? pk[3] : L->proj.weight, .proj_bias = L->proj.bias,
            .ln_1_eps = L->ln_1.eps, .ln_2_eps = L->ln_2.eps,
        };
        return rt_block_decode_(c->kv[i], x, key_mask, &w, c->work) == RT_OK ? x : NULL;
    }
    if (!key_mask) {
        int64_t shape[2] = {rt_size(x, 0), rt_attn_cache_len(c->kv[i]) + rt_size(x, 1)};
        key_mask = rt_ones(W, shape, 2, RT_OPTS(RT_BOOL)); /* [B, len+T] */
    }
    rt_tensor *h = nn_layer_norm_forward(W, &L->ln_1, x);                              /* [B,T,C] */
    rt_tensor *qkv = rt_linear(W, h, c->wqkv[i], c->bqkv[i]);                          /* [B,T,3C] */
    rt_tensor *a = rt_attention_qkv_cached(W, c->kv[i], qkv, key_mask, 0.0);           /* [B,T,C] */
    h = rt_add(W, x, nn_linear_forward(W, &L->attn.o_proj, a));                        /* [B,T,C] */
    rt_tensor *f = nn_linear_forward(W, &L->fc, nn_layer_norm_forward(W, &L->ln_2, h)); /* [B,T,4C] */
    f = nn_act_forward(W, L->act, f);
    return rt_add(W, h, nn_linear_forward(W, &L->proj, f)); /* [B,T,C] */
}

/* The forward every public entry shares. Exactly one of ids [B,T] / embeds
 * [B,T,C] is given; cache NULL = full (training) forward; mask [B, len+T] or
 * NULL. Checks every shape before touching the cache. */
static rt_tensor *gpt_run(rt_scope *S, const gpt *m, gpt_cache *c, const rt_tensor *ids,
                          const rt_tensor *embeds, const rt_tensor *mask, int hidden, const char *fn) {
    char a[64], b[64];
    const rt_tensor *in = ids ? ids : embeds;
    int64_t B, T, len = 0;
    rt_scope *W = NULL;
    rt_tensor *x, *mask_b = NULL, *logits = NULL;
    int region = 0;
    if (!in)
        return NULL; /* NULL input: keep the earlier message */
    if (!m) {
        rt_set_error("%s: model is NULL", fn);
        return NULL;
    }
    /* ---- shapes ---- */
    if (ids) {
        if (rt_ndim(ids) != 2 || rt_dtype_of(ids) != RT_I64) {
            rt_set_error("%s: ids %s (%s) must be int64 [B,T]", fn, rt_shape_str(ids, a, sizeof a),
                         rt_dtype_name(rt_dtype_of(ids)));
            return NULL;
        }
    } else if (rt_ndim(embeds) != 3 || rt_size(embeds, 2) != m->cfg.d_model ||
               rt_dtype_of(embeds) != m->opts.dtype) {
        rt_set_error("%s: embeds %s (%s) must be [B,T,%lld] %s", fn,
                     rt_shape_str(embeds, a, sizeof a), rt_dtype_name(rt_dtype_of(embeds)),
                     (long long)m->cfg.d_model, rt_dtype_name(m->opts.dtype));
        return NULL;
    }
    B = rt_size(in, 0);
    T = rt_size(in, 1);
    if (T < 1) {
        rt_set_error("%s: input %s has no positions", fn, rt_shape_str(in, a, sizeof a));
        return NULL;
    }
    if (c) {
        if (c->broken) {
            rt_set_error("%s: the cache is unusable after an earlier failure; gpt_cache_reset it", fn);
            return NULL;
        }
        if (c->cfg.n_layer != m->cfg.n_layer || c->cfg.n_head != m->cfg.n_head ||
            c->cfg.d_model != m->cfg.d_model) {
            rt_set_error("%s: the cache was made for %lld layers x %lld heads x %lld wide, the model "
                         "has %lld x %lld x %lld",
                         fn, (long long)c->cfg.n_layer, (long long)c->cfg.n_head,
                         (long long)c->cfg.d_model, (long long)m->cfg.n_layer,
                         (long long)m->cfg.n_head, (long long)m->cfg.d_model);
            return NULL;
        }
        len = gpt_cache_len(c);
        if (B != c->batch) {
            rt_set_error("%s: input %s has batch %lld, the cache %lld", fn,
                         rt_shape_str(in, a, sizeof a), (long long)B, (long long)c->batch);
            return NULL;
        }
        if (len + T > c->max_len) {
            rt_set_error("%s: KV cache overflow: %lld cached + %lld new positions exceed max_len %lld",
                         fn, (long long)len, (long long)T, (long long)c->max_len);
            return NULL;
        }
    } else if (T > m->cfg.context) {
        rt_set_error("%s: input %s has %lld positions, the context is %lld", fn,
                     rt_shape_str(in, a, sizeof a), (long long)T, (long long)m->cfg.context);
        return NULL;
    }
    if (mask && (rt_ndim(mask) != 2 || rt_size(mask, 0) != B || rt_size(mask, 1) != len + T)) {
        rt_set_error("%s: mask %s must be [%lld, %lld] (input %s%s)", fn,
                     rt_shape_str(mask, b, sizeof b), (long long)B, (long long)(len + T),
                     rt_shape_str(in, a, sizeof a), c ? " after the cached positions" : "");
        return NULL;
    }

    W = rt_scope_new();
    if (!W) {
        rt_set_error("%s: cannot create a scope", fn);
        return NULL;
    }
    if (c) {
        region = rt_inference_begin(); /* sampling only: no autograd */
        if (len == 0 && gpt_cache_pack(c, m) != RT_OK) {
            gpt_fail(fn);
            goto done;
        }
    }

    /* ---- embeddings ---- */
    x = ids ? rt_embedding(W, m->tok_emb.weight, ids) : rt_alias(W, embeds); /* [B,T,C] */
    if (!x) {
        gpt_fail(fn);
        goto done;
    }
    if (mask) {
        mask_b = rt_dtype_of(mask) == RT_BOOL ? rt_alias(W, mask) : rt_compare_scalar(W, mask, RT_NE, 0.0);
        x = rt_add(W, x, rt_embedding(W, m->pos_emb.weight, rt_mask_positions(W, mask_b, T))); /* [B,T,C] */
    } else {
        rt_tensor *pos = rt_arange(W, (double)len, (double)(len + T), 1.0, RT_OPTS(RT_I64)); /* [T] */
        x = rt_add(W, x, rt_embedding(W, m->pos_emb.weight, pos)); /* [B,T,C] + [T,C] */
    }
    if (!x) {
        gpt_fail(fn);
        goto done;
    }

    /* ---- blocks ---- */
    for (int64_t i = 0; i < m->cfg.n_layer; i++) {
        const nn_block *L = &m->layers[i];
        if (c)
            x = gpt_block_decode(W, L, c, i, x, mask_b);
        else
            x = mask_b ? nn_block_forward_masked(W, L, x, mask_b) : nn_block_forward(W, L, x);
        if (!x) {
            char prev[768];
            snprintf(prev, sizeof prev, "%s", rt_last_error());
            if (c && rt_attn_cache_len(c->kv[0]) != len) {
                c->broken = 1;
                rt_set_error("%s: layers.%lld: %s (the cache is unusable until gpt_cache_reset)", fn,
                             (long long)i, prev);
            } else {
                rt_set_error("%s: layers.%lld: %s", fn, (long long)i, prev);
            }
            goto done;
        }
    }

    /* ---- head ---- */
    x = nn_layer_norm_forward(W, &m->ln_f, x); /* [B,T,C] */
    logits = hidden ? x
             : m->cfg.tie_embeddings ? rt_linear(W, x, m->tok_emb.weight, NULL)
                                   : nn_linear_forward(W, &m->lm_head, x); /* [B,T,V] */
    if (!logits) {
        gpt_fail(fn);
        goto done;
    }
    rt_move(logits, S);
done:
    if (c)
        rt_inference_end(region);
    rt_scope_free(W);
    return logits;
}

rt_tensor *gpt_forward(rt_scope *S, const gpt *m, const rt_tensor *ids, const rt_tensor *mask) {
    return ids ? gpt_run(S, m, NULL, ids, NULL, mask, 0, "gpt_forward") : NULL;
}

rt_tensor *gpt_forward_embeds(rt_scope *S, const gpt *m, const rt_tensor *embeds,
                              const rt_tensor *mask) {
    return embeds ? gpt_run(S, m, NULL, NULL, embeds, mask, 0, "gpt_forward_embeds") : NULL;
}

rt_tensor *gpt_forward_hidden(rt_scope *S, const gpt *m, const rt_tensor *ids, const rt_tensor *mask) {
    return ids ? gpt_run(S, m, NULL, ids, NULL, mask, 1, "gpt_forward_hidden") : NULL;
}

rt_tensor *gpt_forward_cached(rt_scope *S, const gpt *m, gpt_cache *c, const rt_tensor *ids,
                              const rt_tensor *mask_all) {
    if (!ids)
        return NULL;
    if (!c) {
        rt_set_error("gpt_forward_cached: cache is NULL");
        return NULL;
    }
    return gpt_run(S, m, c, ids, NULL, mask_all, 0, "gpt_forward_cached");
}

rt_tensor *gpt_forward_cached_embeds(rt_scope *S, const gpt *m, gpt_cache *c,
                                     const rt_tensor *embeds, const rt_tensor *mask_all) {
    if (!embeds)
        return NULL;
    if (!c) {
        rt_set_error("gpt_forward_cached_embeds: cache is NULL");
        return NULL;
    }
    return gpt_run(S, m, c, NULL, embeds, mask_all, 0, "gpt_forward_cached_embeds");
}

/* ------------------------------------------------------------------------ */
/* Cache                                                                     */
/* ------------------------------------------------------------------------ */

gpt_cache *gpt_cache_new(const gpt *m, int64_t batch, int64_t max_len) {
    gpt_cache *c;
    if (!m) {
        rt_set_error("gpt_cache_new: model is NULL");
        return NULL;
    }
    if (max_len <= 0)
        max_len = m->cfg.context;
    if (batch < 1 || max_len > m->cfg.context) {
        rt_set_error("gpt_cache_new: batch %lld must be >= 1 and max_len %lld at most the context "
                     "%lld",
                     (long long)batch, (long long)max_len, (long long)m->cfg.context);
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->kv = calloc((size_t)m->cfg.n_layer, sizeof *c->kv)) ||
        !(c->wqkv = calloc((size_t)m->cfg.n_layer, sizeof *c->wqkv)) ||
        !(c->bqkv = calloc((size_t)m->cfg.n_layer, sizeof *c->bqkv)) ||
        (m->opts.dtype == RT_F32 && !(c->packed = calloc((size_t)m->cfg.n_layer * 4, sizeof *c->packed)))) {
        if (c) {
            free(c->kv);
            free(c->wqkv);
            free(c->bqkv);
        }
        free(c);
        rt_set_error("gpt_cache_new: out of memory");
        return NULL;
    }
    c->cfg = m->cfg;
    c->batch = batch;
    c->max_len = max_len;
    {
        int64_t none = 0;
        c->work = rt_empty(NULL, &none, 1, m->opts); /* grows on the first decode */
        if (!c->work) {
            gpt_fail("gpt_cache_new");
            gpt_cache_free(c);
            return NULL;
        }
    }
    for (int64_t i = 0; i < m->cfg.n_layer; i++) {
        const nn_attention *A = &m->layers[i].attn;
        c->kv[i] = rt_attn_cache_new(batch, A->n_heads, max_len, A->head_dim, m->opts);
        if (!c->kv[i]) {
            gpt_fail("gpt_cache_new");
            gpt_cache_free(c);
            return NULL;
        }
    }
    return c;
}

void gpt_cache_free(gpt_cache *c) {
    if (!c)
        return;
    for (int64_t i = 0; i < c->cfg.n_layer; i++) {
        rt_attn_cache_free(c->kv[i]);
        rt_free(c->wqkv[i]);
        rt_free(c->bqkv[i]);
    }
    rt_free(c->work);
    if (c->packed)
        for (int64_t i = 0; i < c->cfg.n_layer * 4; i++)
            rt_free(c->packed[i]);
    free(c->packed);
    free(c->kv);
    free(c->wqkv);
    free(c->bqkv);
    free(c);
}

void gpt_cache_reset(gpt_cache *c) {
    if (!c)
        return;
    for (int64_t i = 0; i < c->cfg.n_layer; i++)
        rt_attn_cache_clear(c->kv[i]);
    c->broken = 0;
}

int64_t gpt_cache_len(const gpt_cache *c) { return c ? rt_attn_cache_len(c->kv[0]) : -1; }
int64_t gpt_cache_max_len(const gpt_cache *c) { return c ? c->max_len : -1; }
