/*
 * test_gpt.c -- Criterion tests for the small GPT (trainer/models/gpt.h), the
 * masked attention and sampling ops it rests on (tensor.h's "Sequence
 * models" section, nn.h's masked forms) and the batched sampler
 * (rollout/sampler.h).
 *
 * The PyTorch numbers come from tests/gpt/gpt_reference.py, which the build
 * runs into RLT_BINARY_DIR/tests/gpt/gpt_ref.bin (weights, a left-padded batch
 * and the twin's logits). Four Test()s: each pays libtorch's ~0.6 s start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt.h"
#include "nn.h"
#include "sampler.h"
#include "soft.h"

#define F32 RT_OPTS(RT_F32)
#define F64 RT_OPTS(RT_F64)
#define I64 RT_OPTS(RT_I64)

/* ------------------------------------------------------------------------ */
/* The reference file                                                        */
/* ------------------------------------------------------------------------ */

typedef struct ref_rec {
    char name[128];
    int kind; /* 0 float64, 1 int64 */
    int ndim;
    int64_t dims[8];
    const void *data;
} ref_rec;

typedef struct ref_file {
    unsigned char *bytes;
    ref_rec recs[256];
    int n;
} ref_file;

static void ref_load(ref_file *R) {
    const char *path = RLT_BINARY_DIR "/tests/gpt/gpt_ref.bin";
    FILE *f = fopen(path, "rb");
    long size;
    size_t o = 0;
    cr_assert(f, "cannot open %s (the build writes it with gpt_reference.py)", path);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    R->bytes = malloc((size_t)size);
    cr_assert(R->bytes && fread(R->bytes, 1, (size_t)size, f) == (size_t)size, "reading %s", path);
    fclose(f);
    R->n = 0;
    for (;;) {
        uint32_t len, nd;
        ref_rec *r = &R->recs[R->n];
        int64_t numel = 1;
        memcpy(&len, R->bytes + o, 4);
        o += 4;
        if (len == 0)
            break;
        cr_assert(len < sizeof r->name && R->n < 255, "record name too long / too many records");
        memcpy(r->name, R->bytes + o, len);
        r->name[len] = '\0';
        o += len;
        r->kind = R->bytes[o++];
        memcpy(&nd, R->bytes + o, 4);
        o += 4;
        r->ndim = (int)nd;
        memcpy(r->dims, R->bytes + o, 8 * nd);
        o += 8 * nd;
        for (uint32_t d = 0; d < nd; d++)
            numel *= r->dims[d];
        r->data = R->bytes + o;
        o += 8 * (size_t)numel;
        R->n++;
    }
}

static const ref_rec *ref_find(const ref_file *R, const char *name) {
    for (int i = 0; i < R->n; i++)
        if (strcmp(R->recs[i].name, name) == 0)
            return &R->recs[i];
    return NULL;
}

/* The record as a tensor in S (int64, or float64 converted to dt). */
static rt_tensor *ref_tensor(rt_scope *S, const ref_file *R, const char *name, rt_dtype dt) {
    const ref_rec *r = ref_find(R, name);
    cr_assert(r, "reference record %s missing", name);
    if (r->kind == 1)
        return rt_from_data(S, r->data, r->dims, r->ndim, I64);
    rt_tensor *t = rt_from_data(S, r->data, r->dims, r->ndim, F64);
    return dt == RT_F64 ? t : rt_to_dtype(S, t, dt);
}

/* A model with the reference's config and weights (every parameter matched
 * by state_dict name, and nothing left over). */
static gpt *ref_model(const ref_file *R, const char *prefix, rt_dtype dt) {
    char name[256];
    int64_t c[7];
    gpt *m = NULL;
    rt_gen *g = rt_gen_new(0);
    rt_scope *S = rt_scope_new();
    snprintf(name, sizeof name, "%s/config", prefix);
    memcpy(c, ref_find(R, name)->data, sizeof c);
    gpt_config cfg = gpt_config_default();
    cfg.vocab = c[0];
    cfg.context = c[1];
    cfg.n_layer = c[2];
    cfg.n_head = c[3];
    cfg.d_model = c[4];
    cfg.mlp_hidden = c[5];
    cfg.tie_embeddings = (int)c[6];
    cr_assert(gpt_new(&cfg, RT_OPTS(dt), g, &m) == RT_OK, "gpt_new: %s", rt_last_error());
    nn_params *P = gpt_params(m);
    int in_file = 0;
    snprintf(name, sizeof name, "%s/param/", prefix);
    for (int i = 0; i < R->n; i++)
        in_file += strncmp(R->recs[i].name, name, strlen(name)) == 0;
    cr_assert(in_file == (int)nn_params_count(P), "%s: %d parameters in the file, %zu in the model", prefix,
              in_file, nn_params_count(P));
    int grad = rt_no_grad_begin();
    for (size_t i = 0; i < nn_params_count(P); i++) {
        snprintf(name, sizeof name, "%s/param/%s", prefix, nn_params_name(P, i));
        cr_assert(ref_find(R, name), "state_dict key %s is not in the PyTorch twin", nn_params_name(P, i));
        cr_assert(rt_copy_(nn_params_tensor(P, i), ref_tensor(S, R, name, dt)) == RT_OK, "%s: %s", name,
                  rt_last_error());
    }
    rt_grad_mode_restore(grad);
    rt_scope_free(S);
    rt_gen_free(g);
    return m;
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static double maxdiff(const rt_tensor *a, const rt_tensor *b) {
    double d = rt_max_abs_diff(a, b);
    cr_assert(!isnan(d), "max_abs_diff: %s", rt_last_error());
    return d;
}

/* max |a - b| over the positions where mask [B,T] is set; a, b [B,T,...]. */
static double maxdiff_where(rt_scope *S, const rt_tensor *a, const rt_tensor *b, const rt_tensor *mask) {
    rt_tensor *keep = rt_compare_scalar(S, mask, RT_NE, 0.0);
    rt_tensor *d = rt_abs(S, rt_sub(S, rt_to_dtype(S, a, RT_F64), rt_to_dtype(S, b, RT_F64)));
    while (keep && d && rt_ndim(keep) < rt_ndim(d))
        keep = rt_unsqueeze(S, keep, -1);
    rt_tensor *m = rt_max(S, rt_where_scalar(S, keep, d, 0.0), RT_DIM_ALL, 0, NULL);
    cr_assert(m, "maxdiff_where: %s", rt_last_error());
    return rt_item(m);
}

/* Every parameter of m redrawn from N(0, std) (livelier than GPT-2's 0.02). */
static void redraw(gpt *m, double std, uint64_t seed) {
    rt_gen *g = rt_gen_new(seed);
    nn_params *P = gpt_params(m);
    int grad = rt_no_grad_begin();
    for (size_t i = 0; i < nn_params_count(P); i++)
        cr_assert(rt_normal_(nn_params_tensor(P, i), 0.0, std, g) == RT_OK, "redraw: %s", rt_last_error());
    rt_grad_mode_restore(grad);
    rt_gen_free(g);
}

static gpt *small_model(int64_t vocab, int64_t context, int tie, rt_dtype dt, uint64_t seed) {
    gpt_config c = gpt_config_default();
    gpt *m = NULL;
    rt_gen *g = rt_gen_new(seed);
    c.vocab = vocab;
    c.context = context;
    c.n_layer = 2;
    c.n_head = 2;
    c.d_model = 16;
    c.tie_embeddings = tie;
    cr_assert(gpt_new(&c, RT_OPTS(dt), g, &m) == RT_OK, "gpt_new: %s", rt_last_error());
    rt_gen_free(g);
    redraw(m, 0.4, seed + 100);
    return m;
}

static double std_of(rt_scope *S, const rt_tensor *t) {
    return rt_item(rt_std(S, rt_to_dtype(S, t, RT_F64), RT_DIM_ALL, 0, 0));
}

/* ------------------------------------------------------------------------ */
/* 1. The model: config, init, names, PyTorch parity, KV cache               */
/* ------------------------------------------------------------------------ */

/* Logits of the cached forward fed in chunks (`chunks` column counts summing
 * to T) against the full forward: max |diff| over every position. */
static double cached_vs_full(rt_scope *S, const gpt *m, const rt_tensor *ids, const rt_tensor *mask,
                             const int64_t *chunks, int n_chunks) {
    int64_t B = rt_size(ids, 0), T = rt_size(ids, 1), at = 0;
    rt_tensor *full = gpt_forward(S, m, ids, mask); /* [B,T,V] */
    gpt_cache *c = gpt_cache_new(m, B, T);
    double worst = 0.0;
    cr_assert(full && c, "cached_vs_full: %s", rt_last_error());
    for (int i = 0; i < n_chunks; i++) {
        rt_tensor *part = rt_narrow(S, ids, 1, at, chunks[i]);
        rt_tensor *m_all = mask ? rt_narrow(S, mask, 1, 0, at + chunks[i]) : NULL;
        rt_tensor *lg = gpt_forward_cached(S, m, c, part, m_all); /* [B,chunk,V] */
        cr_assert(lg, "cached chunk %d: %s", i, rt_last_error());
        cr_assert(rt_requires_grad(lg) == 0, "cached logits carry autograd history");
        worst = fmax(worst, maxdiff(lg, rt_narrow(S, full, 1, at, chunks[i])));
        at += chunks[i];
        cr_assert(gpt_cache_len(c) == at, "cache length %lld, expected %lld", (long long)gpt_cache_len(c),
                  (long long)at);
    }
    cr_assert(at == T);
    gpt_cache_free(c);
    return worst;
}

Test(gpt, model_reference_and_cache) {
    rt_scope *S = rt_scope_new();
    ref_file R;
    char err[256];
    ref_load(&R);

    /* -- config -- */
    {
        gpt_config c = gpt_config_default();
        cr_assert(c.vocab == 64 && c.context == 128 && c.n_layer == 4 && c.n_head == 4 && c.d_model == 128 &&
                  c.mlp_hidden <= 0 && c.tie_embeddings == 1);
        cr_assert(gpt_config_check(&c, err, sizeof err) == RT_OK);
        c.n_head = 3;
        cr_assert(gpt_config_check(&c, err, sizeof err) == RT_EINVAL && strstr(err, "n_head = 3") &&
                      strstr(rt_last_error(), "divisible"),
                  "message: %s", err);
        c = gpt_config_default();
        c.vocab = 0;
        cr_assert(gpt_config_check(&c, err, sizeof err) == RT_EINVAL && strstr(err, "vocab = 0"), "%s", err);
        c = gpt_config_default();
        c.tie_embeddings = 2;
        cr_assert(gpt_config_check(&c, NULL, 0) == RT_EINVAL && strstr(rt_last_error(), "tie_embeddings"));
        gpt *m = (gpt *)1;
        cr_assert(gpt_new(&c, F32, NULL, &m) == RT_EINVAL && m == NULL, "NULL generator refused");
    }

    /* -- GPT-2 init, names, shapes (default config) -- */
    {
        gpt_config c = gpt_config_default();
        rt_gen *g = rt_gen_new(3), *g2 = rt_gen_new(3), *g3 = rt_gen_new(4);
        gpt *m = NULL, *same = NULL, *other = NULL;
        cr_assert(gpt_new(&c, F32, g, &m) == RT_OK, "%s", rt_last_error());
        cr_assert(gpt_new(&c, F32, g2, &same) == RT_OK && gpt_new(&c, F32, g3, &other) == RT_OK);
        nn_params *P = gpt_params(m);
        cr_assert(nn_params_count(P) == 2 + 4 * 16 + 2, "count %zu", nn_params_count(P));
        cr_assert(strcmp(nn_params_name(P, 0), "tok_emb.weight") == 0 &&
                  strcmp(nn_params_name(P, 1), "pos_emb.weight") == 0 &&
                  strcmp(nn_params_name(P, 2), "layers.0.ln_1.weight") == 0 &&
                  strcmp(nn_params_name(P, nn_params_count(P) - 1), "ln_f.bias") == 0);
        cr_assert(gpt_token_table(m) == nn_params_get(P, "tok_emb.weight"));
        cr_assert(rt_size(nn_params_get(P, "pos_emb.weight"), 0) == 128 &&
                  rt_size(nn_params_get(P, "layers.3.mlp.fc.weight"), 0) == 512);
        double s_emb = std_of(S, nn_params_get(P, "tok_emb.weight"));
        double s_q = std_of(S, nn_params_get(P, "layers.1.attn.q_proj.weight"));
        double s_o = std_of(S, nn_params_get(P, "layers.1.attn.o_proj.weight"));
        double s_p = std_of(S, nn_params_get(P, "layers.2.mlp.proj.weight"));
        double resid = 0.02 / sqrt(8.0);
        cr_assert(fabs(s_emb - 0.02) < 0.001 && fabs(s_q - 0.02) < 0.001, "std %g %g", s_emb, s_q);
        cr_assert(fabs(s_o - resid) < 0.05 * resid && fabs(s_p - resid) < 0.05 * resid, "resid std %g %g", s_o,
                  s_p);
        cr_assert(rt_item(rt_sum(S, rt_abs(S, nn_params_get(P, "layers.0.attn.q_proj.bias")), RT_DIM_ALL, 0)) ==
                  0.0);
        cr_assert(rt_item(rt_min(S, nn_params_get(P, "layers.0.ln_2.weight"), RT_DIM_ALL, 0, NULL)) == 1.0);
        cr_assert(rt_requires_grad(nn_params_get(P, "ln_f.weight")) == 1);
        double d_same = 0.0, d_other = 0.0;
        for (size_t i = 0; i < nn_params_count(P); i++) {
            d_same = fmax(d_same, maxdiff(nn_params_tensor(P, i), nn_params_tensor(gpt_params(same), i)));
            d_other = fmax(d_other, maxdiff(nn_params_tensor(P, i), nn_params_tensor(gpt_params(other), i)));
        }
        cr_assert(d_same == 0.0 && d_other > 0.01, "same seed %g, other seed %g", d_same, d_other);
        gpt_free(m);
        gpt_free(same);
        gpt_free(other);
        c.tie_embeddings = 0;
        cr_assert(gpt_new(&c, F32, g, &m) == RT_OK);
        P = gpt_params(m);
        cr_assert(nn_params_count(P) == 69 && strcmp(nn_params_name(P, 68), "lm_head.weight") == 0 &&
                  rt_size(nn_params_tensor(P, 68), 0) == 64 && rt_size(nn_params_tensor(P, 68), 1) == 128);
        gpt_free(m);
        gpt_free(NULL);
        rt_gen_free(g);
        rt_gen_free(g2);
        rt_gen_free(g3);
    }

    /* -- PyTorch parity: float64 1e-10, float32 1e-5; tied and untied -- */
    const char *prefixes[2] = {"tied", "untied"};
    for (int p = 0; p < 2; p++) {
        char name[64];
        gpt *m64 = ref_model(&R, prefixes[p], RT_F64), *m32 = ref_model(&R, prefixes[p], RT_F32);
        snprintf(name, sizeof name, "%s/ids", prefixes[p]);
        rt_tensor *ids = ref_tensor(S, &R, name, RT_I64);
        snprintf(name, sizeof name, "%s/mask", prefixes[p]);
        rt_tensor *mask = ref_tensor(S, &R, name, RT_I64);
        snprintf(name, sizeof name, "%s/logits", prefixes[p]);
        rt_tensor *want = ref_tensor(S, &R, name, RT_F64);
        rt_tensor *l64 = gpt_forward(S, m64, ids, mask), *l32 = gpt_forward(S, m32, ids, mask);
        cr_assert(l64 && l32, "%s forward: %s", prefixes[p], rt_last_error());
        cr_assert(rt_size(l64, 0) == 4 && rt_size(l64, 1) == 7 && rt_size(l64, 2) == 11);
        double d64 = maxdiff(l64, want), d32 = maxdiff(rt_to_dtype(S, l32, RT_F64), want);
        cr_assert(d64 < 1e-10 && d32 < 1e-5, "%s: |C - torch| f64 %g, f32 %g", prefixes[p], d64, d32);
        cr_assert(rt_item(rt_all(S, rt_isfinite(S, l64), RT_DIM_ALL, 0)) == 1.0, "row of pads not finite");

        /* embeds path, NULL mask = all-ones mask */
        rt_tensor *emb = rt_embedding(S, gpt_token_table(m64), ids);
        cr_assert(maxdiff(gpt_forward_embeds(S, m64, emb, mask), l64) < 1e-12);
        rt_tensor *ones = rt_ones(S, (int64_t[]){4, 7}, 2, RT_OPTS(RT_BOOL));
        cr_assert(maxdiff(gpt_forward(S, m64, ids, NULL), gpt_forward(S, m64, ids, ones)) < 1e-12);

        /* KV cache == full forward with left padding and mixed lengths, in
         * chunks (a 3-column prompt, then 1, 2, 1) */
        int64_t chunks[4] = {3, 1, 2, 1};
        double c64 = cached_vs_full(S, m64, ids, mask, chunks, 4);
        double c32 = cached_vs_full(S, m32, ids, mask, chunks, 4);
        double cnone = cached_vs_full(S, m64, ids, NULL, chunks, 4);
        cr_assert(c64 < 1e-10 && c32 < 1e-5 && cnone < 1e-10, "cached vs full: f64 %g, f32 %g, no mask %g", c64,
                  c32, cnone);
        /* a mask with holes after real tokens (a finished row's padding) */
        int64_t holes[28];
        rt_to_data(mask, RT_I64, holes, sizeof holes);
        holes[5] = holes[6] = 0;   /* row 0 ends early */
        holes[7 + 5] = 0;          /* row 1 skips one  */
        rt_tensor *mask2 = rt_from_data(S, holes, (int64_t[]){4, 7}, 2, I64);
        int64_t one_by_one[7] = {1, 1, 1, 1, 1, 1, 1};
        cr_assert(cached_vs_full(S, m64, ids, mask2, one_by_one, 7) < 1e-10);
        gpt_free(m64);
        gpt_free(m32);
    }

    /* -- errors -- */
    {
        gpt *m = ref_model(&R, "tied", RT_F64);
        rt_tensor *ids = ref_tensor(S, &R, "tied/ids", RT_I64);
        rt_tensor *mask = ref_tensor(S, &R, "tied/mask", RT_I64);
        rt_tensor *bad = gpt_forward(S, m, rt_to_dtype(S, ids, RT_F32), NULL);
        cr_assert(bad == NULL && strstr(rt_last_error(), "gpt_forward") && strstr(rt_last_error(), "int64"),
                  "%s", rt_last_error());
        bad = gpt_forward(S, m, ids, rt_narrow(S, mask, 1, 0, 5));
        cr_assert(bad == NULL && strstr(rt_last_error(), "mask [4, 5]"), "%s", rt_last_error());
        rt_tensor *long_ids = rt_zeros(S, (int64_t[]){1, 17}, 2, I64);
        cr_assert(gpt_forward(S, m, long_ids, NULL) == NULL && strstr(rt_last_error(), "context is 16"), "%s",
                  rt_last_error());
        cr_assert(gpt_forward(S, m, NULL, NULL) == NULL && strstr(rt_last_error(), "context is 16"),
                  "a NULL input keeps the earlier message");
        cr_assert(gpt_cache_new(m, 4, 17) == NULL && strstr(rt_last_error(), "max_len 17"));
        gpt_cache *c = gpt_cache_new(m, 4, 8);
        cr_assert(c && gpt_cache_len(c) == 0 && gpt_cache_max_len(c) == 8);
        cr_assert(gpt_forward_cached(S, m, c, rt_narrow(S, ids, 0, 0, 2), NULL) == NULL &&
                  strstr(rt_last_error(), "batch 2, the cache 4"));
        cr_assert(gpt_forward_cached(S, m, c, ids, rt_narrow(S, mask, 1, 0, 6)) == NULL &&
                      gpt_cache_len(c) == 0,
                  "a bad mask leaves the cache alone: %s", rt_last_error());
        cr_assert(gpt_forward_cached(S, m, c, ids, mask) != NULL && gpt_cache_len(c) == 7);
        cr_assert(gpt_forward_cached(S, m, c, ids, NULL) == NULL && strstr(rt_last_error(), "overflow") &&
                  gpt_cache_len(c) == 7);
        gpt_cache_reset(c);
        cr_assert(gpt_cache_len(c) == 0 && gpt_forward_cached(S, m, c, ids, NULL) != NULL);
        gpt_cache_free(c);
        gpt_cache_free(NULL);
        gpt_free(m);
    }

    /* -- the fused decoding ops: positions, packed weights, one block per call -- */
    {
        /* rt_mask_positions: max(cumsum - 1, 0) over the last t columns */
        const int64_t mk[2 * 6] = {0, 0, 1, 1, 0, 1, /**/ 1, 1, 1, 0, 1, 1};
        const int64_t want_pos[2 * 4] = {0, 1, 1, 2, /**/ 2, 2, 3, 4};
        int64_t got_pos[8];
        rt_tensor *mt = rt_from_data(S, mk, (int64_t[]){2, 6}, 2, I64);
        rt_tensor *pos = rt_mask_positions(S, mt, 4);
        cr_assert(pos && rt_dtype_of(pos) == RT_I64 && rt_size(pos, 1) == 4, "%s", rt_last_error());
        rt_to_data(pos, RT_I64, got_pos, sizeof got_pos);
        cr_assert(memcmp(got_pos, want_pos, sizeof got_pos) == 0, "positions %lld %lld %lld %lld / %lld %lld %lld %lld",
                  (long long)got_pos[0], (long long)got_pos[1], (long long)got_pos[2], (long long)got_pos[3],
                  (long long)got_pos[4], (long long)got_pos[5], (long long)got_pos[6], (long long)got_pos[7]);
        cr_assert(rt_mask_positions(S, mt, 7) == NULL && strstr(rt_last_error(), "t = 7"));

        /* rt_pack_rows16: [20, 3] -> [2, 3, 16], w[n,k] at [n/16, k, n%16], zero padding */
        double wv[60];
        for (int i = 0; i < 60; i++)
            wv[i] = i + 1;
        rt_tensor *w = rt_to_dtype(S, rt_from_data(S, wv, (int64_t[]){20, 3}, 2, F64), RT_F32);
        rt_tensor *pk = rt_pack_rows16(S, w);
        cr_assert(pk && rt_ndim(pk) == 3 && rt_size(pk, 0) == 2 && rt_size(pk, 1) == 3 && rt_size(pk, 2) == 16);
        double pv[96];
        rt_to_data(pk, RT_F64, pv, sizeof pv);
        cr_assert(pv[(0 * 3 + 2) * 16 + 5] == wv[5 * 3 + 2] && pv[(1 * 3 + 1) * 16 + 3] == wv[19 * 3 + 1] &&
                  pv[(1 * 3 + 0) * 16 + 4] == 0.0);
        cr_assert(rt_pack_rows16(S, rt_to_dtype(S, w, RT_F64)) == NULL && strstr(rt_last_error(), "float32"));

        /* the default recipe model (128 wide, 512 MLP: whole 6-row tiles, full
         * panels), float32, 13 rows: decoding equals the full forward; the
         * 20-position prefill (260 rows) goes through in two chunks of rows */
        gpt_config gc = gpt_config_default();
        gc.context = 24;
        rt_gen *g = rt_gen_new(11);
        gpt *m = NULL;
        cr_assert(gpt_new(&gc, F32, g, &m) == RT_OK);
        redraw(m, 0.1, 12);
        rt_tensor *ids = rt_randint(S, 0, gc.vocab, (int64_t[]){13, 24}, 2, g, I64);
        int64_t chunks[3] = {20, 1, 3};
        double d = cached_vs_full(S, m, ids, NULL, chunks, 3);
        cr_assert(d < 2e-4, "128-wide float32: cached vs full %g", d);
        /* gpt_forward_hidden is what the tied head reads */
        rt_tensor *hid = gpt_forward_hidden(S, m, ids, NULL);
        cr_assert(hid && rt_size(hid, 2) == 128, "%s", rt_last_error());
        cr_assert(maxdiff(rt_linear(S, hid, gpt_token_table(m), NULL), gpt_forward(S, m, ids, NULL)) == 0.0);

        /* rt_block_decode_'s refusals leave the cache alone */
        rt_attn_cache *ac = rt_attn_cache_new(2, 4, 8, 32, F32);
        const nn_params *P = gpt_params(m);
        rt_tensor *qkv = rt_cat(S, (rt_tensor *[]){nn_params_get(P, "layers.0.attn.q_proj.weight"),
                                                   nn_params_get(P, "layers.0.attn.k_proj.weight"),
                                                   nn_params_get(P, "layers.0.attn.v_proj.weight")},
                                3, 0);
        rt_block_weights bw = {
            .ln_1_weight = nn_params_get(P, "layers.0.ln_1.weight"),
            .ln_1_bias = nn_params_get(P, "layers.0.ln_1.bias"),
            .qkv_weight = qkv,
            .o_weight = nn_params_get(P, "layers.0.attn.o_proj.weight"),
            .ln_2_weight = nn_params_get(P, "layers.0.ln_2.weight"),
            .ln_2_bias = nn_params_get(P, "layers.0.ln_2.bias"),
            .fc_weight = nn_params_get(P, "layers.0.mlp.fc.weight"),
            .proj_weight = nn_params_get(P, "layers.0.mlp.proj.weight"),
            .ln_1_eps = 1e-5,
            .ln_2_eps = 1e-5,
        };
        rt_tensor *x = rt_zeros(S, (int64_t[]){2, 1, 128}, 3, F32);
        cr_assert(rt_block_decode_(ac, x, NULL, &bw, NULL) == RT_OK && rt_attn_cache_len(ac) == 1, "%s",
                  rt_last_error());
        rt_tensor *x3 = rt_zeros(S, (int64_t[]){3, 1, 128}, 3, F32);
        cr_assert(rt_block_decode_(ac, x3, NULL, &bw, NULL) == RT_EINVAL && strstr(rt_last_error(), "x [3, 1, 128]") &&
                      rt_attn_cache_len(ac) == 1,
                  "%s", rt_last_error());
        bw.fc_weight = bw.o_weight;
        cr_assert(rt_block_decode_(ac, x, NULL, &bw, NULL) == RT_EINVAL && strstr(rt_last_error(), "fc_weight") &&
                      rt_attn_cache_len(ac) == 1,
                  "%s", rt_last_error());
        bw.fc_weight = nn_params_get(P, "layers.0.mlp.fc.weight");
        rt_tensor *bad_mask = rt_ones(S, (int64_t[]){2, 3}, 2, RT_OPTS(RT_BOOL));
        cr_assert(rt_block_decode_(ac, x, bad_mask, &bw, NULL) == RT_EINVAL && strstr(rt_last_error(), "key_mask") &&
                      rt_attn_cache_len(ac) == 1,
                  "%s", rt_last_error());
        cr_assert(rt_block_decode_(ac, x, NULL, &bw, rt_zeros(S, (int64_t[]){4}, 1, F32)) == RT_EINVAL &&
                  strstr(rt_last_error(), "caller-owned"));
        rt_attn_cache_free(ac);
        gpt_free(m);
        rt_gen_free(g);
    }
    free(R.bytes);
    rt_scope_free(S);
}

/* ------------------------------------------------------------------------ */
/* 2. Masked attention, sampling ops, inference region, gradients            */
/* ------------------------------------------------------------------------ */

/* sum(logits * R) over a left-padded batch, for finite differences. */
static double probe_loss(rt_scope *S, const gpt *m, const rt_tensor *ids, const rt_tensor *mask,
                         const rt_tensor *Rw) {
    return rt_item(rt_sum(S, rt_mul(S, gpt_forward(S, m, ids, mask), Rw), RT_DIM_ALL, 0));
}

Test(gpt, masked_attention_sampling_ops_gradients) {
    rt_scope *S = rt_scope_new();
    rt_gen *g = rt_gen_new(21);

    /* -- rt_causal_attention_masked -- */
    {
        int64_t sh[4] = {2, 2, 4, 3};
        rt_tensor *q = rt_randn(NULL, sh, 4, g, F64), *k = rt_randn(NULL, sh, 4, g, F64),
                  *v = rt_randn(NULL, sh, 4, g, F64);
        rt_set_requires_grad(q, 1);
        rt_set_requires_grad(k, 1);
        rt_set_requires_grad(v, 1);
        uint8_t km[8] = {0, 0, 1, 1, 1, 1, 1, 1}; /* row 0 left-padded by 2 */
        rt_tensor *mask = rt_from_data(S, km, (int64_t[]){2, 4}, 2, RT_OPTS(RT_U8));
        rt_tensor *y = rt_causal_attention_masked(S, q, k, v, mask, 0.0); /* [2,2,4,3] */
        cr_assert(y, "%s", rt_last_error());
        /* row 1 (no padding) is plain causal attention */
        rt_tensor *plain = rt_causal_attention(S, q, k, v, 0.0);
        cr_assert(maxdiff(rt_select(S, y, 0, 1), rt_select(S, plain, 0, 1)) < 1e-14);
        /* row 0: pad queries give zeros; real queries attend to keys 2..3 only */
        rt_tensor *y0 = rt_select(S, y, 0, 0);
        cr_assert(rt_item(rt_max(S, rt_abs(S, rt_narrow(S, y0, 1, 0, 2)), RT_DIM_ALL, 0, NULL)) == 0.0);
        rt_tensor *sub = rt_causal_attention(S, rt_narrow(S, q, 2, 2, 2), rt_narrow(S, k, 2, 2, 2),
                                             rt_narrow(S, v, 2, 2, 2), 0.0);
        cr_assert(maxdiff(rt_narrow(S, y0, 1, 2, 2), rt_select(S, sub, 0, 0)) < 1e-14);
        /* gradients finite; zero for the pad queries */
        rt_tensor *w = rt_randn(S, sh, 4, g, F64);
        cr_assert(rt_backward(rt_sum(S, rt_mul(S, y, w), RT_DIM_ALL, 0)) == RT_OK, "%s", rt_last_error());
        rt_tensor *gq = rt_grad(S, q), *gk = rt_grad(S, k);
        cr_assert(rt_item(rt_all(S, rt_isfinite(S, gq), RT_DIM_ALL, 0)) == 1.0 &&
                  rt_item(rt_all(S, rt_isfinite(S, gk), RT_DIM_ALL, 0)) == 1.0);
        cr_assert(rt_item(rt_max(S, rt_abs(S, rt_narrow(S, rt_select(S, gq, 0, 0), 1, 0, 2)), RT_DIM_ALL, 0,
                                 NULL)) == 0.0);
        /* a row with no real key at all: zeros, finite */
        uint8_t none[8] = {0, 0, 0, 0, 1, 1, 1, 1};
        rt_tensor *yn = rt_causal_attention_masked(S, q, k, v, rt_from_data(S, none, (int64_t[]){2, 4}, 2,
                                                                           RT_OPTS(RT_U8)), 0.0);
        cr_assert(rt_item(rt_max(S, rt_abs(S, rt_select(S, yn, 0, 0)), RT_DIM_ALL, 0, NULL)) == 0.0);
        /* cached == full, in chunks 2, 1, 1 */
        rt_kv_cache *c = rt_kv_cache_new(2, 2, 4, 3, F64);
        int grad = rt_no_grad_begin();
        int64_t at = 0, chunk[3] = {2, 1, 1};
        for (int i = 0; i < 3; i++) {
            rt_tensor *yc = rt_causal_attention_cached_masked(
                S, c, rt_narrow(S, q, 2, at, chunk[i]), rt_narrow(S, k, 2, at, chunk[i]),
                rt_narrow(S, v, 2, at, chunk[i]), rt_narrow(S, mask, 1, 0, at + chunk[i]), 0.0);
            cr_assert(yc, "%s", rt_last_error());
            cr_assert(maxdiff(yc, rt_narrow(S, y, 2, at, chunk[i])) < 1e-14);
            at += chunk[i];
        }
        rt_kv_cache_clear(c);
        cr_assert(rt_causal_attention_cached_masked(S, c, q, k, v, rt_narrow(S, mask, 1, 0, 3), 0.0) == NULL &&
                      strstr(rt_last_error(), "key_mask has shape [2, 3], expected [2, 4]") &&
                      rt_kv_cache_len(c) == 0,
                  "%s", rt_last_error());
        cr_assert(rt_causal_attention_masked(S, q, k, v, NULL, 0.0) == NULL);
        rt_grad_mode_restore(grad);
        rt_kv_cache_free(c);
        rt_free(q);
        rt_free(k);
        rt_free(v);
    }

    /* -- nn masked forms: an all-ones mask changes nothing; NULL is refused -- */
    {
        nn_params *P = nn_params_new();
        nn_block blk;
        nn_block_config bc = nn_block_config_default(8, 2);
        cr_assert(nn_block_init(&blk, P, "b", &bc, F64, g) == RT_OK);
        rt_tensor *x = rt_randn(S, (int64_t[]){2, 5, 8}, 3, g, F64);
        rt_tensor *ones = rt_ones(S, (int64_t[]){2, 5}, 2, F32);
        cr_assert(maxdiff(nn_block_forward_masked(S, &blk, x, ones), nn_block_forward(S, &blk, x)) < 1e-14);
        cr_assert(maxdiff(nn_attention_forward_masked(S, &blk.attn, x, ones), nn_attention_forward(S, &blk.attn, x)) <
                  1e-14);
        rt_clear_error();
        cr_assert(nn_block_forward_masked(S, &blk, x, NULL) == NULL && strstr(rt_last_error(), "key_mask is NULL"));
        rt_kv_cache *c = nn_attention_cache_new(&blk.attn, 2, 5);
        cr_assert(nn_block_forward_cached_masked(S, &blk, c, x, rt_narrow(S, ones, 1, 0, 4)) == NULL &&
                  rt_kv_cache_len(c) == 0);
        rt_tensor *yc = nn_block_forward_cached_masked(S, &blk, c, x, ones);
        cr_assert(yc && maxdiff(yc, nn_block_forward(S, &blk, x)) < 1e-14);
        rt_kv_cache_free(c);
        nn_params_free(P);
    }

    /* -- rt_filter_logits / rt_sample_logits -- */
    {
        double lg[8] = {1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5};
        rt_tensor *x = rt_from_data(S, lg, (int64_t[]){2, 4}, 2, F64);
        double out[8];
        rt_to_data(rt_filter_logits(S, x, 1.0, 2, 1.0), RT_F64, out, sizeof out);
        cr_assert(isinf(out[0]) && isinf(out[1]) && out[2] == 3.0 && out[3] == 4.0);
        cr_assert(out[4] == 0.5 && out[7] == 0.5, "ties with the k-th stay");
        /* softmax(1,2,3,4) = .032 .087 .237 .644: top_p 0.7 keeps 4 and 3 */
        rt_to_data(rt_filter_logits(S, x, 2.0, 0, 0.7), RT_F64, out, sizeof out);
        cr_assert(isinf(out[0]) && !isinf(out[2]) && out[3] == 2.0, "T=2: %g %g %g %g", out[0], out[1], out[2],
                  out[3]);
        rt_to_data(rt_filter_logits(S, x, 1.0, 0, 0.7), RT_F64, out, sizeof out);
        cr_assert(isinf(out[0]) && isinf(out[1]) && !isinf(out[2]) && !isinf(out[3]));
        rt_to_data(rt_filter_logits(S, x, 1.0, 0, 0.5), RT_F64, out, sizeof out);
        int kept = !isinf(out[4]) + !isinf(out[5]) + !isinf(out[6]) + !isinf(out[7]);
        cr_assert(isinf(out[2]) && !isinf(out[3]) && kept == 2,
                  "uniform row: the nucleus of 0.5 keeps two tokens (mass before < 0.5): %g %g %g %g", out[4],
                  out[5], out[6], out[7]);
        rt_tensor *lp = NULL;
        rt_tensor *tok = rt_sample_logits(S, x, 0.0, 0, 1.0, NULL, &lp);
        int64_t t[2];
        double l[2];
        rt_to_data(tok, RT_I64, t, sizeof t);
        rt_to_data(lp, RT_F64, l, sizeof l);
        cr_assert(t[0] == 3 && t[1] == 0 && fabs(l[0] - (4.0 - log(exp(1) + exp(2) + exp(3) + exp(4)))) < 1e-12 &&
                  fabs(l[1] - log(0.25)) < 1e-12, "greedy: %lld %lld %g %g", (long long)t[0], (long long)t[1], l[0],
                  l[1]);
        cr_assert(rt_sample_logits(S, x, 1.0, 0, 1.0, NULL, NULL) == NULL && strstr(rt_last_error(), "generator"));
        cr_assert(rt_sample_logits(S, x, -1.0, 0, 1.0, g, NULL) == NULL && strstr(rt_last_error(), "temperature"));
        cr_assert(rt_sample_logits(S, x, 1.0, 0, 0.0, g, NULL) == NULL && strstr(rt_last_error(), "top_p"));
        /* empirical frequencies of 40,000 draws match the filtered softmax */
        enum { N = 40000 };
        rt_tensor *row = rt_narrow(S, x, 0, 0, 1);
        rt_tensor *many = rt_contiguous(S, rt_expand(S, row, (int64_t[]){N, 4}, 2));
        static int64_t draws[N];
        rt_to_data(rt_sample_logits(S, many, 1.5, 3, 1.0, g, NULL), RT_I64, draws, sizeof draws);
        double cnt[4] = {0}, z = exp(2 / 1.5) + exp(3 / 1.5) + exp(4 / 1.5);
        for (int i = 0; i < N; i++)
            cnt[draws[i]] += 1.0 / N;
        cr_assert(cnt[0] == 0.0 && fabs(cnt[1] - exp(2 / 1.5) / z) < 0.01 && fabs(cnt[2] - exp(3 / 1.5) / z) < 0.01 &&
                      fabs(cnt[3] - exp(4 / 1.5) / z) < 0.01,
                  "frequencies %g %g %g %g", cnt[0], cnt[1], cnt[2], cnt[3]);
    }

    /* -- packed decoding ops: rt_attention_qkv_cached, rt_gelu_tanh_inference,
     *    rt_sample_logits' one-pass path -- */
    {
        /* qkv through an rt_attn_cache == the [B,H,T,D] ops through an
         * rt_kv_cache: a 5-position prefill with left padding, then 2 steps;
         * float32 D 32 (the AVX2 kernel, 1e-5) and float64 D 3 (generic, 1e-12) */
        const int64_t B = 3, H = 2, Ds[2] = {32, 3};
        const rt_dtype dts[2] = {RT_F32, RT_F64};
        uint8_t km[3 * 7] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1};
        rt_tensor *mask_all = rt_from_data(S, km, (int64_t[]){B, 7}, 2, RT_OPTS(RT_U8));
        for (int c = 0; c < 2; c++) {
            const int64_t D = Ds[c];
            rt_opts o = RT_OPTS(dts[c]);
            rt_attn_cache *ac = rt_attn_cache_new(B, H, 7, D, o);
            rt_kv_cache *kc = rt_kv_cache_new(B, H, 7, D, o);
            cr_assert(ac && kc && rt_attn_cache_len(ac) == 0, "%s", rt_last_error());
            double worst = 0;
            for (int64_t len = 0, T = 5; len < 7; len += T, T = 1) {
                rt_tensor *qkv = rt_randn(S, (int64_t[]){B, T, 3 * H * D}, 3, g, o);
                rt_tensor *m = rt_narrow(S, mask_all, 1, 0, len + T);
                rt_tensor *y = rt_attention_qkv_cached(S, ac, qkv, m, 0.0); /* [B,T,H*D] */
                rt_tensor *p[3];
                for (int i = 0; i < 3; i++) /* [B,T,H*D] -> [B,H,T,D] */
                    p[i] = rt_transpose(
                        S, rt_reshape(S, rt_narrow(S, qkv, 2, i * H * D, H * D), (int64_t[]){B, T, H, D}, 4), 1, 2);
                rt_tensor *r = rt_causal_attention_cached_masked(S, kc, p[0], p[1], p[2], m, 0.0);
                r = rt_reshape(S, rt_transpose(S, r, 1, 2), (int64_t[]){B, T, H * D}, 3);
                cr_assert(y && r, "%s", rt_last_error());
                worst = fmax(worst, maxdiff(y, r));
            }
            cr_assert(rt_attn_cache_len(ac) == 7 && worst < (c == 0 ? 1e-5 : 1e-12), "D %lld: %g", (long long)D, worst);
            /* refused before appending: overflow and a wrong mask */
            rt_tensor *one = rt_randn(S, (int64_t[]){B, 1, 3 * H * D}, 3, g, o);
            cr_assert(rt_attention_qkv_cached(S, ac, one, mask_all, 0.0) == NULL &&
                      strstr(rt_last_error(), "overflow"));
            rt_attn_cache_clear(ac);
            cr_assert(rt_attention_qkv_cached(S, ac, one, mask_all, 0.0) == NULL &&
                      strstr(rt_last_error(), "key_mask") && rt_attn_cache_len(ac) == 0);
            cr_assert(rt_attention_qkv_cached(S, ac, rt_narrow(S, one, 2, 0, H * D), rt_narrow(S, mask_all, 1, 0, 1),
                                              0.0) == NULL &&
                      strstr(rt_last_error(), "qkv"));
            rt_attn_cache_free(ac);
            rt_kv_cache_free(kc);
        }
        rt_attn_cache_free(NULL);

        /* the same bits at 1 and 2 intra-op threads (the AVX2 kernel, 64 rows) */
        {
            rt_tensor *qkv = rt_randn(S, (int64_t[]){8, 9, 3 * 8 * 32}, 3, g, F32), *y[2];
            rt_tensor *m = rt_ones(S, (int64_t[]){8, 9}, 2, RT_OPTS(RT_BOOL));
            for (int t = 0; t < 2; t++) {
                rt_set_num_threads(t + 1);
                rt_attn_cache *ac = rt_attn_cache_new(8, 8, 9, 32, F32);
                y[t] = rt_attention_qkv_cached(S, ac, qkv, m, 0.0);
                rt_attn_cache_free(ac);
            }
            rt_set_num_threads(1);
            cr_assert(y[0] && y[1] && maxdiff(y[0], y[1]) == 0.0);
        }

        /* GELU: the inference kernel against rt_gelu(x, 1), float32 and float64 */
        rt_tensor *x32 = rt_mul_scalar(S, rt_randn(S, (int64_t[]){1003}, 1, g, F32), 4.0);
        cr_assert(maxdiff(rt_gelu_tanh_inference(S, x32), rt_gelu(S, x32, 1)) < 4e-6);
        rt_tensor *x64 = rt_to_dtype(S, x32, RT_F64);
        cr_assert(maxdiff(rt_gelu_tanh_inference(S, x64), rt_gelu(S, x64, 1)) < 1e-12);

        /* one-pass sampling (top_p 1) == the composition over the same noise */
        rt_tensor *lg = rt_mul_scalar(S, rt_randn(S, (int64_t[]){64, 50}, 2, g, F32), 3.0);
        size_t n = 0;
        rt_gen_get_state(g, NULL, 0, &n);
        uint8_t *st = malloc(n);
        cr_assert(st && rt_gen_get_state(g, st, n, &n) == RT_OK);
        rt_tensor *lp = NULL, *tok = rt_sample_logits(S, lg, 0.8, 7, 1.0, g, &lp);
        rt_gen *g2 = rt_gen_new(0);
        rt_gen_set_state(g2, st, n);
        free(st);
        rt_tensor *lsm = rt_log_softmax(S, rt_filter_logits(S, lg, 0.8, 7, 1.0), 1);
        rt_tensor *ref = rt_argmax(S, rt_add(S, lsm, rt_gumbel(S, (int64_t[]){64, 50}, 2, g2, F32)), 1, 0);
        rt_tensor *ref_lp = rt_squeeze(S, rt_gather(S, lsm, 1, rt_unsqueeze(S, ref, 1)), 1);
        cr_assert(tok && ref && maxdiff(tok, ref) == 0.0 && maxdiff(lp, ref_lp) < 1e-5, "%s", rt_last_error());
        rt_gen_free(g2);
        /* ties with the k-th largest stay: top-2 of a row with four 3s keeps all four */
        const double tied[9] = {1, 3, 3, 3, 0, 2, 3, 1, 2};
        rt_tensor *trow = rt_to_dtype(S, rt_from_data(S, tied, (int64_t[]){1, 9}, 2, F64), RT_F32);
        rt_tensor *tmany = rt_contiguous(S, rt_expand(S, trow, (int64_t[]){200, 9}, 2));
        rt_tensor *tlp = NULL, *ttok = rt_sample_logits(S, tmany, 1.0, 2, 1.0, g, &tlp);
        int64_t tt[200];
        double tl[200];
        cr_assert(ttok && rt_to_data(ttok, RT_I64, tt, sizeof tt) == RT_OK &&
                  rt_to_data(tlp, RT_F64, tl, sizeof tl) == RT_OK);
        int seen[9] = {0};
        for (int i = 0; i < 200; i++) {
            cr_assert(tied[tt[i]] == 3.0 && fabs(tl[i] + log(4.0)) < 1e-6, "draw %d: token %lld, logp %g", i,
                      (long long)tt[i], tl[i]);
            seen[tt[i]] = 1;
        }
        cr_assert(seen[1] && seen[2] && seen[3] && seen[6], "every tied token is drawn");
        rt_tensor *bad = rt_mul_scalar(S, rt_div_scalar(S, rt_narrow(S, lg, 0, 0, 2), 0.0), 0.0); /* inf * 0 = NaN */
        cr_assert(rt_sample_logits(S, bad, 1.0, 0, 1.0, g, NULL) == NULL && strstr(rt_last_error(), "NaN"));
    }

    /* -- inference region -- */
    {
        cr_assert(rt_grad_enabled() == 1);
        int r1 = rt_inference_begin();
        cr_assert(r1 == 1 && rt_grad_enabled() == 0);
        int r2 = rt_inference_begin();
        cr_assert(r2 == 2 && rt_inference_end(r1) == RT_EINVAL, "only the innermost region ends");
        rt_tensor *w = rt_ones(S, (int64_t[]){3}, 1, F64);
        rt_set_requires_grad(w, 1);
        cr_assert(rt_requires_grad(rt_mul_scalar(S, w, 2.0)) == 0);
        cr_assert(rt_inference_end(r2) == RT_OK && rt_inference_end(r1) == RT_OK && rt_grad_enabled() == 1);
        cr_assert(rt_requires_grad(rt_mul_scalar(S, w, 2.0)) == 1, "autograd is back after the region");
    }

    /* -- gradients through gpt_forward: all finite; finite differences -- */
    {
        gpt_config c = gpt_config_default();
        c.vocab = 7;
        c.context = 8;
        c.n_layer = 2;
        c.n_head = 2;
        c.d_model = 4;
        c.mlp_hidden = 8;
        for (int tie = 0; tie <= 1; tie++) {
            gpt *m = NULL;
            c.tie_embeddings = tie;
            cr_assert(gpt_new(&c, F64, g, &m) == RT_OK);
            redraw(m, 0.5, 7 + (uint64_t)tie);
            int64_t idsv[12] = {0, 0, 3, 1, 6, 2, 5, 4, 0, 1, 2, 3}, maskv[12] = {0, 0, 1, 1, 1, 1,
                                                                                1, 1, 1, 1, 1, 1};
            rt_tensor *ids = rt_from_data(S, idsv, (int64_t[]){2, 6}, 2, I64);
            rt_tensor *mask = rt_from_data(S, maskv, (int64_t[]){2, 6}, 2, I64);
            rt_tensor *Rw = rt_randn(S, (int64_t[]){2, 6, 7}, 3, g, F64);
            rt_tensor *Rm = rt_mul(S, Rw, rt_unsqueeze(S, rt_to_dtype(S, mask, RT_F64), -1)); /* real positions */
            nn_params *P = gpt_params(m);
            cr_assert(rt_backward(rt_sum(S, rt_mul(S, gpt_forward(S, m, ids, mask), Rm), RT_DIM_ALL, 0)) == RT_OK,
                      "%s", rt_last_error());
            for (size_t i = 0; i < nn_params_count(P); i++) {
                rt_tensor *gr = rt_grad(S, nn_params_tensor(P, i));
                cr_assert(gr && rt_item(rt_all(S, rt_isfinite(S, gr), RT_DIM_ALL, 0)) == 1.0, "grad of %s",
                          nn_params_name(P, i));
            }
            const char *names[6] = {"tok_emb.weight", "pos_emb.weight", "layers.0.attn.k_proj.weight",
                                    "layers.1.mlp.fc.bias", "ln_f.weight", tie ? "layers.1.ln_2.bias" : "lm_head.weight"};
            int grad = rt_no_grad_begin();
            for (int n = 0; n < 6; n++) {
                rt_tensor *p = nn_params_get(P, names[n]);
                double *data = rt_data_ptr(p), ga[64], h = 1e-5;
                int64_t numel = rt_numel(p), idx = (n * 5 + 3) % numel;
                rt_to_data(rt_grad(S, p), RT_F64, ga, sizeof ga < (size_t)numel * 8 ? sizeof ga : (size_t)numel * 8);
                if (idx >= 64)
                    idx = 63;
                double keep = data[idx];
                data[idx] = keep + h;
                double up = probe_loss(S, m, ids, mask, Rm);
                data[idx] = keep - h;
                double down = probe_loss(S, m, ids, mask, Rm);
                data[idx] = keep;
                double fd = (up - down) / (2 * h);
                cr_assert(fabs(fd - ga[idx]) < 1e-7 * fmax(1.0, fabs(fd)), "%s[%lld] (tie %d): autograd %.12g, fd %.12g",
                          names[n], (long long)idx, tie, ga[idx], fd);
            }
            rt_grad_mode_restore(grad);
            /* through the embeddings too */
            rt_tensor *emb = rt_detach(S, rt_embedding(S, gpt_token_table(m), ids));
            rt_set_requires_grad(emb, 1);
            cr_assert(rt_backward(rt_sum(S, rt_mul(S, gpt_forward_embeds(S, m, emb, mask), Rm), RT_DIM_ALL, 0)) ==
                      RT_OK);
            rt_tensor *ge = rt_grad(S, emb);
            cr_assert(ge && rt_item(rt_all(S, rt_isfinite(S, ge), RT_DIM_ALL, 0)) == 1.0 &&
                      rt_item(rt_max(S, rt_abs(S, ge), RT_DIM_ALL, 0, NULL)) > 1e-3);
            gpt_free(m);
        }
    }
    rt_gen_free(g);
    rt_scope_free(S);
}

/* ------------------------------------------------------------------------ */
/* 3. The sampler, discrete tokens                                           */
/* ------------------------------------------------------------------------ */

enum { SB = 3, SP = 5, SG = 2, SN = SB * SG };
/* Left-padded prompts: lengths 5, 3, 1. */
static const int64_t PROMPT_IDS[SB * SP] = {4, 7, 2, 9, 3, 0, 0, 5, 8, 6, 0, 0, 0, 0, 10};
static const int64_t PROMPT_MASK[SB * SP] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1};

/* Full-forward logits scoring the completion, through the training-side
 * layout helpers: smp_sequences (ids, mask of prompt + completion) and, in
 * soft mode, smp_soft_rows -> soft_input_embeds -> gpt_forward_embeds; sliced
 * to the C positions P-1 .. P+C-2 -> [N,C,V]. */
static rt_tensor *rescore(rt_scope *S, const gpt *m, const int64_t *prompt_ids, const smp_out *o,
                          const soft_config *soft) {
    rt_tensor *pids = rt_from_data(S, prompt_ids, (int64_t[]){SB, SP}, 2, I64);
    rt_tensor *pmask = rt_from_data(S, PROMPT_MASK, (int64_t[]){SB, SP}, 2, I64);
    rt_tensor *ids = NULL, *mask = NULL, *logits;
    cr_assert(smp_sequences(S, pids, pmask, SG, o, &ids, &mask) == RT_OK, "%s", rt_last_error());
    cr_assert(rt_size(ids, 0) == SN && rt_size(ids, 1) == SP + o->c && rt_dtype_of(mask) == rt_dtype_of(o->mask));
    cr_assert(rt_equal(rt_narrow(S, ids, 1, SP, o->c), o->ids) && rt_equal(rt_narrow(S, mask, 1, SP, o->c), o->mask));
    cr_assert(rt_item_i64(rt_select(S, rt_select(S, ids, 0, 2 * SG - 1), 0, 2)) == prompt_ids[SP + 2],
              "row b*G+g holds prompt b");
    if (soft) {
        rt_tensor *tk = NULL, *gs = NULL;
        cr_assert(smp_soft_rows(S, pids, SG, o, &tk, &gs) == RT_OK, "%s", rt_last_error());
        cr_assert(rt_equal(rt_narrow(S, tk, 1, SP, o->c), o->topk_ids));
        cr_assert(rt_equal(rt_select(S, rt_narrow(S, tk, 1, 0, SP), 2, 0), rt_narrow(S, ids, 1, 0, SP)),
                  "prompt rows are one-hot on the prompt ids");
        logits = gpt_forward_embeds(S, m, soft_input_embeds(S, soft, gpt_token_table(m), tk, gs), mask);
    } else {
        rt_tensor *tk = NULL, *gs = NULL;
        cr_assert(smp_soft_rows(S, pids, SG, o, &tk, &gs) == RT_EINVAL && tk == NULL &&
                  strstr(rt_last_error(), "soft-thinking"));
        logits = gpt_forward(S, m, ids, mask);
    }
    cr_assert(logits, "rescore: %s", rt_last_error());
    return rt_narrow(S, logits, 1, SP - 1, o->c); /* [N,C,V] */
}

/* log_softmax(rt_filter_logits(logits, T, k, p))[ids] -> [N,C]. */
static rt_tensor *filtered_logps(rt_scope *S, const rt_tensor *logits, const rt_tensor *ids, double T, int64_t k,
                                 double p) {
    rt_tensor *ls = rt_log_softmax(S, rt_filter_logits(S, logits, T, k, p), -1);
    return rt_squeeze(S, rt_gather(S, ls, -1, rt_unsqueeze(S, ids, -1)), -1);
}

static int run(rt_scope *S, const gpt *m, const smp_config *cfg, uint64_t seed, smp_out *o) {
    rt_tensor *ids = rt_from_data(S, PROMPT_IDS, (int64_t[]){SB, SP}, 2, I64);
    rt_tensor *mask = rt_from_data(S, PROMPT_MASK, (int64_t[]){SB, SP}, 2, I64);
    rt_gen *g = rt_gen_new(seed);
    int rc = smp_generate(S, m, cfg, ids, mask, SG, g, o);
    rt_gen_free(g);
    return rc;
}

Test(sampler, discrete) {
    rt_scope *S = rt_scope_new();
    gpt *m = small_model(11, 24, 1, RT_F64, 5);
    smp_config cfg = smp_config_default();
    smp_out a, b, c;
    cfg.max_new_tokens = 8;

    /* -- reproducible from a seed; another seed differs; 2 threads agree -- */
    cr_assert(run(S, m, &cfg, 1, &a) == RT_OK, "%s", rt_last_error());
    cr_assert(a.n == SN && a.c == 8 && rt_size(a.ids, 0) == SN && rt_size(a.ids, 1) == 8 &&
              a.topk_ids == NULL && a.logits == NULL);
    cr_assert(run(S, m, &cfg, 1, &b) == RT_OK && rt_equal(a.ids, b.ids) && rt_equal(a.logps, b.logps));
    smp_out_free(&b);
    cr_assert(run(S, m, &cfg, 2, &b) == RT_OK && !rt_equal(a.ids, b.ids));
    smp_out_free(&b);
    rt_set_num_threads(2);
    cr_assert(run(S, m, &cfg, 1, &b) == RT_OK && rt_equal(a.ids, b.ids), "2 threads change the tokens");
    cr_assert(maxdiff(a.logps, b.logps) < 1e-12);
    rt_set_num_threads(1);
    smp_out_free(&b);
    smp_out_free(&a);

    /* -- logps under the filtered distribution; kept logits == full forward -- */
    cfg.temperature = 0.8;
    cfg.top_k = 5;
    cfg.top_p = 0.9;
    cfg.keep_logits = 1;
    cr_assert(run(S, m, &cfg, 3, &a) == RT_OK, "%s", rt_last_error());
    rt_tensor *full = rescore(S, m, PROMPT_IDS, &a, NULL);
    cr_assert(maxdiff_where(S, full, a.logits, a.mask) < 1e-10, "kept logits vs full forward");
    cr_assert(maxdiff_where(S, filtered_logps(S, full, a.ids, 0.8, 5, 0.9), a.logps, a.mask) < 1e-10);
    cr_assert(rt_item(rt_min(S, a.logps, RT_DIM_ALL, 0, NULL)) > -INFINITY);
    smp_out_free(&a);

    /* -- greedy == argmax of the full forward; top_k = 1 == greedy -- */
    cfg = smp_config_default();
    cfg.max_new_tokens = 8;
    cfg.temperature = 0.0;
    cr_assert(run(S, m, &cfg, 4, &a) == RT_OK);
    full = rescore(S, m, PROMPT_IDS, &a, NULL);
    cr_assert(rt_equal(rt_argmax(S, full, -1, 0), a.ids), "greedy is not the argmax of the full forward");
    cr_assert(maxdiff_where(S, filtered_logps(S, full, a.ids, 0.0, 0, 1.0), a.logps, a.mask) < 1e-10);
    cfg.temperature = 1.0;
    cfg.top_k = 1;
    cr_assert(run(S, m, &cfg, 9, &b) == RT_OK && rt_equal(a.ids, b.ids), "top_k = 1 differs from greedy");
    cr_assert(maxdiff(b.logps, rt_zeros_like(S, b.logps)) == 0.0, "top_k = 1: every token has probability 1");
    rt_gen *none = NULL;
    cfg.temperature = 0.0;
    cfg.top_k = 0;
    cr_assert(smp_generate(S, m, &cfg, rt_from_data(S, PROMPT_IDS, (int64_t[]){SB, SP}, 2, I64),
                           rt_from_data(S, PROMPT_MASK, (int64_t[]){SB, SP}, 2, I64), SG, none, &c) == RT_OK,
              "greedy needs no generator: %s", rt_last_error());
    cr_assert(rt_equal(c.ids, a.ids));
    smp_out_free(&a);
    smp_out_free(&b);
    smp_out_free(&c);

    /* -- stop ids end rows; ids, mask, logps and lengths agree -- */
    cfg = smp_config_default();
    cfg.max_new_tokens = 10;
    cfg.n_stop = 3;
    cfg.stop_ids[0] = 1;
    cfg.stop_ids[1] = 2;
    cfg.stop_ids[2] = 3;
    cfg.pad_id = 10;
    size_t before = rt_scope_count(S);
    cr_assert(run(S, m, &cfg, 11, &a) == RT_OK);
    cr_assert(rt_scope_count(S) - before == 2 + 3, "the outputs (and the two prompt tensors) only: %zu",
              rt_scope_count(S) - before);
    {
        int64_t ids[SN * 10], C = a.c, stopped = 0, maxlen = 0;
        double mask[SN * 10], lp[SN * 10];
        cr_assert(C <= 10);
        rt_to_data(a.ids, RT_I64, ids, sizeof ids);
        rt_to_data(a.mask, RT_F64, mask, sizeof mask);
        rt_to_data(a.logps, RT_F64, lp, sizeof lp);
        for (int64_t i = 0; i < SN; i++) {
            int64_t first = -1;
            for (int64_t c2 = 0; c2 < C && first < 0; c2++)
                if (ids[i * C + c2] >= 1 && ids[i * C + c2] <= 3)
                    first = c2;
            int64_t want = first >= 0 ? first + 1 : 10;
            cr_assert(a.lengths[i] == want, "row %lld: length %lld, expected %lld", (long long)i,
                      (long long)a.lengths[i], (long long)want);
            stopped += first >= 0;
            maxlen = want > maxlen ? want : maxlen;
            for (int64_t c2 = 0; c2 < C; c2++) {
                int real = c2 < want;
                cr_assert(mask[i * C + c2] == (real ? 1.0 : 0.0));
                cr_assert(real ? lp[i * C + c2] < 0.0 : lp[i * C + c2] == 0.0);
                cr_assert(real || ids[i * C + c2] == 10, "pad after the stop");
            }
        }
        cr_assert(stopped >= 3 && maxlen == C, "%lld rows stopped; C %lld", (long long)stopped, (long long)C);
    }
    smp_out_free(&a);
    smp_out_free(NULL);

    /* -- errors -- */
    cfg = smp_config_default();
    cfg.top_p = 0.0;
    cr_assert(smp_config_check(&cfg, 11) == RT_EINVAL && strstr(rt_last_error(), "top_p"));
    cfg = smp_config_default();
    cfg.n_stop = 1;
    cfg.stop_ids[0] = 11;
    cr_assert(smp_config_check(&cfg, 11) == RT_EINVAL && strstr(rt_last_error(), "stop_ids[0] = 11"));
    cfg = smp_config_default();
    cfg.soft_think = 1;
    cr_assert(smp_config_check(&cfg, 11) == RT_EINVAL && strstr(rt_last_error(), "think_begin_id"));
    cfg = smp_config_default();
    cfg.max_new_tokens = 20;
    cr_assert(run(S, m, &cfg, 1, &a) == RT_EINVAL && strstr(rt_last_error(), "context 24") && a.ids == NULL &&
              a.lengths == NULL);
    cfg.max_new_tokens = 4;
    cr_assert(smp_generate(S, m, &cfg, rt_from_data(S, PROMPT_IDS, (int64_t[]){SB, SP}, 2, I64), NULL, SG, NULL,
                           &a) == RT_EINVAL &&
              strstr(rt_last_error(), "generator"));
    cr_assert(smp_generate(NULL, m, &cfg, NULL, NULL, SG, NULL, &a) == RT_EINVAL);

    /* -- float32: kept logits match the full forward to 1e-5 -- */
    {
        gpt *m32 = small_model(11, 24, 0, RT_F32, 6);
        cfg = smp_config_default();
        cfg.max_new_tokens = 8;
        cfg.keep_logits = 1;
        cr_assert(run(S, m32, &cfg, 1, &a) == RT_OK, "%s", rt_last_error());
        cr_assert(rt_dtype_of(a.logps) == RT_F32 && rt_dtype_of(a.mask) == RT_F32);
        full = rescore(S, m32, PROMPT_IDS, &a, NULL);
        cr_assert(maxdiff_where(S, full, a.logits, a.mask) < 1e-5);
        cr_assert(maxdiff_where(S, filtered_logps(S, full, a.ids, 1.0, 0, 1.0), a.logps, a.mask) < 1e-5);
        smp_out_free(&a);
        gpt_free(m32);
    }
    gpt_free(m);
    rt_scope_free(S);
}

/* ------------------------------------------------------------------------ */
/* 4. The sampler, soft-thinking tokens (SofT-GRPO)                          */
/* ------------------------------------------------------------------------ */

enum { THINK_BEGIN = 9, THINK_END = 10 };

Test(sampler, soft_thinking) {
    rt_scope *S = rt_scope_new();
    /* row 0 and row 2 end with think_begin (9); row 1 does not */
    gpt *m = small_model(11, 24, 1, RT_F32, 8);
    smp_config cfg = smp_config_default();
    cfg.max_new_tokens = 12;
    cfg.soft_think = 1;
    cfg.think_begin_id = THINK_BEGIN;
    cfg.think_end_id = THINK_END;
    cfg.soft.top_k = 3;
    cfg.n_stop = 1;
    cfg.stop_ids[0] = 1;
    cfg.keep_logits = 1;
    const int64_t K = 3;
    /* prompts: make rows 0 and 2 end with think_begin */
    static int64_t ids_think[SB * SP];
    memcpy(ids_think, PROMPT_IDS, sizeof ids_think);
    cr_assert(PROMPT_IDS[0 * SP + 4] == 3 && PROMPT_IDS[2 * SP + 4] == 10);

    /* The first seed whose run has soft positions and a think_end emitted
     * while thinking (deterministic: seeds are tried in order). */
    smp_out o;
    uint64_t seed = 0;
    int found = 0;
    int64_t C = 0;
    static int64_t tk[SN * 12 * 3], ids[SN * 12];
    static double gs[SN * 12 * 3], mask[SN * 12], sm[SN * 12];
    rt_tensor *pids = NULL, *pmask = rt_from_data(S, PROMPT_MASK, (int64_t[]){SB, SP}, 2, I64);
    ids_think[0 * SP + 4] = THINK_BEGIN;
    ids_think[2 * SP + 4] = THINK_BEGIN;
    pids = rt_from_data(S, ids_think, (int64_t[]){SB, SP}, 2, I64);
    for (seed = 1; seed < 200 && !found; seed++) {
        rt_gen *g = rt_gen_new(seed);
        cr_assert(smp_generate(S, m, &cfg, pids, pmask, SG, g, &o) == RT_OK, "%s", rt_last_error());
        rt_gen_free(g);
        C = o.c;
        rt_to_data(o.topk_ids, RT_I64, tk, (size_t)(SN * C * K) * 8);
        rt_to_data(o.soft_mask, RT_F64, sm, (size_t)(SN * C) * 8);
        int n_soft = 0, n_end = 0;
        for (int64_t i = 0; i < SN; i++) {
            int thinking = (i / SG) != 1;
            for (int64_t c = 0; c < o.lengths[i]; c++) {
                n_soft += sm[i * C + c] != 0.0;
                if (thinking && tk[(i * C + c) * K] == THINK_END) {
                    n_end++;
                    thinking = 0;
                }
            }
        }
        found = n_soft >= 4 && n_end >= 1;
        if (!found)
            smp_out_free(&o);
    }
    cr_assert(found, "no seed in 1..199 gave soft positions and a think_end");
    seed--;
    cr_assert(rt_size(o.topk_ids, 2) == K && rt_size(o.gumbels, 2) == K && rt_size(o.soft_mask, 1) == C &&
              rt_dtype_of(o.gumbels) == RT_F32);
    rt_to_data(o.ids, RT_I64, ids, (size_t)(SN * C) * 8);
    rt_to_data(o.gumbels, RT_F64, gs, (size_t)(SN * C * K) * 8);
    rt_to_data(o.mask, RT_F64, mask, (size_t)(SN * C) * 8);

    /* -- the stored layout: phases, one-hot rows, soft_mask -- */
    for (int64_t i = 0; i < SN; i++) {
        int phase = (i / SG) != 1 ? 1 : 0; /* 0 before, 1 thinking, 2 after */
        for (int64_t c = 0; c < C; c++) {
            const int64_t *row = tk + (i * C + c) * K;
            const double *gr = gs + (i * C + c) * K;
            int sentinel_discrete = row[1] == 0 && row[2] == 0;
            if (c >= o.lengths[i]) {
                cr_assert(mask[i * C + c] == 0.0 && row[0] == cfg.pad_id && sentinel_discrete && gr[0] == 0.0 &&
                          sm[i * C + c] == 0.0);
                continue;
            }
            cr_assert(mask[i * C + c] == 1.0 && row[0] == ids[i * C + c], "row %lld col %lld: emitted id %lld, "
                      "stored %lld", (long long)i, (long long)c, (long long)ids[i * C + c], (long long)row[0]);
            cr_assert(sm[i * C + c] == (double)(phase == 1 && row[0] != THINK_END && !sentinel_discrete),
                      "soft_mask at row %lld col %lld (phase %d)", (long long)i, (long long)c, phase);
            if (phase == 1 && row[0] != THINK_END) {
                /* candidates sorted by y' = softmax(g'/tau_g): g' descending */
                cr_assert(gr[0] >= gr[1] && gr[1] >= gr[2], "stored g' not sorted: %g %g %g", gr[0], gr[1], gr[2]);
                cr_assert(row[0] != row[1] && row[1] != row[2] && row[0] != row[2]);
            } else {
                cr_assert(sentinel_discrete && gr[0] == 0.0 && gr[1] == 0.0 && gr[2] == 0.0,
                          "discrete step stored one-hot with g' 0");
            }
            if (phase == 1 && row[0] == THINK_END)
                phase = 2;
            else if (phase == 0 && row[0] == THINK_BEGIN)
                phase = 1;
        }
    }

    /* -- round trip: the trainer's rebuilt inputs give the sampler's logits -- */
    rt_tensor *full = rescore(S, m, ids_think, &o, &cfg.soft); /* [N,C,V] */
    double dl = maxdiff_where(S, full, o.logits, o.mask);
    cr_assert(dl < 1e-5, "rebuilt-input logits vs the sampler's: %g", dl);
    /* soft log-probs from the rebuilt logits == the sampler's at soft positions */
    rt_tensor *soft_lp = soft_logps_from_logits(S, &cfg.soft, full, o.topk_ids, o.gumbels, NULL);
    cr_assert(soft_lp, "%s", rt_last_error());
    double ds = maxdiff_where(S, soft_lp, o.logps, o.soft_mask);
    cr_assert(ds < 1e-5, "soft logps vs the sampler's: %g", ds);
    /* discrete positions: the filtered distribution each token came from */
    {
        static double want_d[SN * 12], want_e[SN * 12], got[SN * 12];
        rt_to_data(filtered_logps(S, full, o.ids, 1.0, 0, 1.0), RT_F64, want_d, (size_t)(SN * C) * 8);
        rt_to_data(filtered_logps(S, full, o.ids, cfg.soft.temperature, cfg.soft.top_k, cfg.soft.top_p), RT_F64,
                   want_e, (size_t)(SN * C) * 8);
        rt_to_data(o.logps, RT_F64, got, (size_t)(SN * C) * 8);
        for (int64_t i = 0; i < SN; i++) {
            int phase = (i / SG) != 1 ? 1 : 0;
            for (int64_t c = 0; c < o.lengths[i]; c++) {
                int64_t id = ids[i * C + c];
                if (phase == 1 && id == THINK_END) {
                    cr_assert(fabs(got[i * C + c] - want_e[i * C + c]) < 1e-5, "think_end log p~ %g vs %g",
                              got[i * C + c], want_e[i * C + c]);
                    phase = 2;
                } else if (phase != 1) {
                    cr_assert(fabs(got[i * C + c] - want_d[i * C + c]) < 1e-5, "discrete logp %g vs %g",
                              got[i * C + c], want_d[i * C + c]);
                    if (phase == 0 && id == THINK_BEGIN)
                        phase = 1;
                }
            }
        }
    }

    /* -- reproducible -- */
    {
        smp_out o2;
        rt_gen *g = rt_gen_new(seed);
        cr_assert(smp_generate(S, m, &cfg, pids, pmask, SG, g, &o2) == RT_OK);
        rt_gen_free(g);
        cr_assert(rt_equal(o.ids, o2.ids) && rt_equal(o.topk_ids, o2.topk_ids) && rt_equal(o.gumbels, o2.gumbels) &&
                  rt_equal(o.logps, o2.logps));
        smp_out_free(&o2);
    }
    smp_out_free(&o);
    gpt_free(m);
    rt_scope_free(S);
}
