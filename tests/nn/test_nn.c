/*
 * test_nn.c -- Criterion tests for tensor/nn.h: parameter names and shapes,
 * forwards against hand compositions, initialisation (ranges, and bit-equality
 * with torch's seeded init), norms, the KV-cache decoding path against the
 * full forward, a small Adam training run, and PyTorch cross-checks.
 *
 * The PyTorch numbers come from tests/nn/torch_reference.py (run it with
 * /usr/bin/python3); each array below names the block that printed it.
 * Two Test()s only: each one pays libtorch's ~0.6 s start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn.h"

/* ---- PyTorch reference numbers (torch 1.13, tests/nn/torch_reference.py) ---- */

/* 1. Sequential(Linear(3,4), GELU(), Linear(4,2), Tanh()), float64, hand-set
 *    weights (HAND_* below), input HAND_X. state_dict keys: 0.weight, 0.bias,
 *    2.weight, 2.bias. */
static const double HAND_W0[12] = {0.1, -0.2, 0.3, 0.4, 0.5, -0.6, -0.7, 0.8, 0.9, 1.0, -1.1, 0.05};
static const double HAND_B0[4] = {0.01, -0.02, 0.03, -0.04};
static const double HAND_W1[8] = {0.2, -0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9};
static const double HAND_B1[2] = {0.1, -0.1};
static const double HAND_X[6] = {1.0, 2.0, 3.0, -0.5, 0.25, -1.5};
static const double HAND_OUT[4] = {0.9423201255702649, -0.99476164163435965,
                                   -0.10695602046446266, 0.23155450123890339};

/* 2. torch.manual_seed(1234); Sequential(Linear(3,4), ReLU(), Linear(4,2)),
 *    float32: parameters in state_dict order, and the output for HAND_X. */
static const double SEED_MLP_PARAMS[26] = {
    -0.543887913, -0.113277778, -0.277308047, -0.153989315, -0.510030389, 0.23168458,
    -0.517539799, -0.0367896445, 0.200694025,  -0.194610953, 0.327597827,  0.0728191137,
    0.317369998,  0.370430887,  -0.254869491, 0.20982188,   -0.216325045, 0.156730413,
    -0.261244178, 0.231284499,  0.101222634,  -0.195671558, -0.245247841, 0.129361868,
    0.466511071,  0.239949226};
static const double SEED_MLP_OUT[4] = {0.672091484, 0.354934335, 0.319883883, 0.375034571};

/* 3. torch.manual_seed(7); Embedding(5, 3).weight, float32. */
static const double SEED_EMB[15] = {-0.146795094, 0.786141276, 0.94682163, -1.114344,
                                    1.69079018,   -0.894827902, -0.355625033, 1.23238575,
                                    0.138172656,  -1.68219852, 0.317678303, 0.132806972,
                                    0.137324095,  0.240546122, 1.39545083};

/* 4. float64, torch.manual_seed(42); Block(C=8, H=2) (GPT-2 layout, tanh GELU),
 *    then x = torch.randn(1, 4, 8); block(x). */
static const char *const BLOCK_NAMES[16] = {
    "ln_1.weight",        "ln_1.bias",          "attn.q_proj.weight", "attn.q_proj.bias",
    "attn.k_proj.weight", "attn.k_proj.bias",   "attn.v_proj.weight", "attn.v_proj.bias",
    "attn.o_proj.weight", "attn.o_proj.bias",   "ln_2.weight",        "ln_2.bias",
    "mlp.fc.weight",      "mlp.fc.bias",        "mlp.proj.weight",    "mlp.proj.bias"};
static const double SEED_BLOCK_OUT[32] = {
    -1.7656953181524335,  -1.0976305706925957,  -0.87004403827830334, 1.3662957800440234,
    0.18494156696285646,  0.4769781292667104,   0.646887853550139,    -1.3782786306043735,
    0.49385505772312327,  1.8559299961171343,   1.5398205392195981,   -0.19354551725086266,
    -1.0614793544403776,  0.63099047942135522,  0.83818429664597427,  -0.12752358657392338,
    0.59046638790070849,  1.3371006930028944,   1.8952472388471495,   -1.0144733054717026,
    0.76461241963719817,  -0.35074282901230974, -2.4759744590378436,  -1.5767223790957448,
    -1.4460315845905454,  1.3873344336685247,   -0.59105632794712615, -0.68837888430854777,
    -0.36885478506858205, -0.4485263622188419,  -0.63773062859566476, -0.2697121425059093};

/* ---- helpers ---- */

#define F32 RT_OPTS(RT_F32)
#define F64 RT_OPTS(RT_F64)

/* max |t - want| over n elements (t read as float64); INFINITY on a size or
 * read failure. */
static double diff_to(const rt_tensor *t, const double *want, size_t n) {
    double got[64], m = 0.0;
    if (!t || n > 64 || rt_numel(t) != (int64_t)n || rt_to_data(t, RT_F64, got, sizeof got) != RT_OK)
        return INFINITY;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(got[i] - want[i]));
    return m;
}

/* 1 when t has exactly the given shape. */
static int has_shape(const rt_tensor *t, const int64_t *shape, int ndim) {
    int64_t s[RT_MAX_DIMS];
    return t && rt_shape(t, s, RT_MAX_DIMS) == ndim &&
           memcmp(s, shape, (size_t)ndim * sizeof s[0]) == 0;
}

/* Overwrite parameter `name` with float64 values (in place, no-grad). */
static void set_param(rt_scope *S, nn_params *P, const char *name, const double *vals,
                      const int64_t *shape, int ndim) {
    int g = rt_no_grad_begin();
    rt_tensor *src = rt_from_data(S, vals, shape, ndim, F64);
    int rc = rt_copy_(nn_params_get(P, name), src);
    rt_grad_mode_restore(g);
    cr_assert(rc == RT_OK, "set_param(%s): %s", name, rt_last_error());
}

/* Full forward of a block (or its attention, block == NULL) over x [B,T,C]
 * against the cached forward fed in chunks (first `prompt` positions at once,
 * then one at a time). Returns the largest difference. */
static double cached_vs_full(rt_scope *S, const nn_block *blk, const nn_attention *attn,
                             const rt_tensor *x, int64_t prompt) {
    int64_t B = rt_size(x, 0), T = rt_size(x, 1);
    const nn_attention *a = blk ? &blk->attn : attn;
    rt_kv_cache *cache = nn_attention_cache_new(a, B, T);
    rt_tensor *full = blk ? nn_block_forward(S, blk, x) : nn_attention_forward(S, attn, x);
    double worst = 0.0;
    int g = rt_no_grad_begin();
    cr_assert(cache && full, "cached_vs_full setup: %s", rt_last_error());
    for (int64_t t = 0; t < T;) {
        int64_t n = t == 0 ? prompt : 1;
        rt_tensor *xs = rt_narrow(S, x, 1, t, n);                 /* [B,n,C] */
        rt_tensor *ys = blk ? nn_block_forward_cached(S, blk, cache, xs)
                            : nn_attention_forward_cached(S, attn, cache, xs); /* [B,n,C] */
        rt_tensor *ref = rt_narrow(S, full, 1, t, n);             /* [B,n,C] */
        double d = rt_max_abs_diff(ys, ref);
        cr_assert(!isnan(d), "cached step at %lld: %s", (long long)t, rt_last_error());
        worst = fmax(worst, d);
        t += n;
        cr_assert(rt_kv_cache_len(cache) == t, "cache length %lld after %lld positions",
                  (long long)rt_kv_cache_len(cache), (long long)t);
    }
    /* A full cache refuses one more position and says why. */
    {
        rt_tensor *xs = rt_narrow(S, x, 1, 0, 1);
        rt_tensor *ys = blk ? nn_block_forward_cached(S, blk, cache, xs)
                            : nn_attention_forward_cached(S, attn, cache, xs);
        cr_assert(ys == NULL && strstr(rt_last_error(), "overflow"),
                  "overflow not reported: %s", rt_last_error());
        cr_assert(rt_kv_cache_len(cache) == T, "cache grew on a failed append");
    }
    rt_grad_mode_restore(g);
    rt_kv_cache_free(cache);
    return worst;
}

/* ------------------------------------------------------------------------ */

Test(nn, registry_modules_init_norms_and_torch_parity) {
    rt_scope *S = rt_scope_new();
    nn_params *P = nn_params_new();
    rt_gen *g = rt_gen_new(1234);
    cr_assert(S && P && g, "setup");

    /* -- registry basics: ownership, duplicates, lookup -- */
    {
        int64_t s2[2] = {2, 3};
        cr_assert(nn_params_add(P, "a", rt_zeros(NULL, s2, 2, F32)) == RT_OK, "%s", rt_last_error());
        cr_assert(nn_params_add(P, "a", rt_zeros(NULL, s2, 2, F32)) == RT_EINVAL,
                  "duplicate name accepted");
        cr_assert(strstr(rt_last_error(), "duplicate") && strstr(rt_last_error(), "\"a\""),
                  "message: %s", rt_last_error());
        /* a scope-owned tensor is taken out of its scope */
        cr_assert(nn_params_add(P, "b", rt_ones(S, s2, 1, F32)) == RT_OK, "%s", rt_last_error());
        cr_assert(rt_scope_count(S) == 0, "registry did not take the handle out of its scope");
        cr_assert(nn_params_add(P, "c", NULL) != RT_OK, "NULL tensor accepted");
        cr_assert(nn_params_count(P) == 2 && nn_params_numel(P) == 8, "count %zu numel %lld",
                  nn_params_count(P), (long long)nn_params_numel(P));
        cr_assert(nn_params_get(P, "b") == nn_params_tensor(P, 1) && nn_params_index(P, "a") == 0,
                  "lookup");
        cr_assert(nn_params_get(P, "zz") == NULL && strstr(rt_last_error(), "zz"), "missing name");
        nn_params_free(P);
        nn_params_free(NULL); /* NULL-safe */
        P = nn_params_new();
    }

    /* -- MLP names and shapes follow nn.Sequential: Linear i is index 2i -- */
    {
        nn_mlp m;
        const int64_t widths[4] = {5, 7, 6, 2};
        static const char *const names[6] = {"actor.net.0.weight", "actor.net.0.bias",
                                             "actor.net.2.weight", "actor.net.2.bias",
                                             "actor.net.4.weight", "actor.net.4.bias"};
        const int64_t shapes[6][2] = {{7, 5}, {7, 0}, {6, 7}, {6, 0}, {2, 6}, {2, 0}};
        cr_assert(nn_mlp_init(&m, P, "actor.net", widths, 4, NN_ACT_RELU, NN_ACT_TANH, F32, g) ==
                      RT_OK,
                  "%s", rt_last_error());
        cr_assert(nn_params_count(P) == 6 && m.n_layers == 3, "count %zu", nn_params_count(P));
        for (int i = 0; i < 6; i++) {
            rt_tensor *t = nn_params_tensor(P, (size_t)i);
            cr_assert(strcmp(nn_params_name(P, (size_t)i), names[i]) == 0, "name %d: %s", i,
                      nn_params_name(P, (size_t)i));
            cr_assert(has_shape(t, shapes[i], i % 2 ? 1 : 2), "shape of %s", names[i]);
            cr_assert(rt_requires_grad(t) == 1, "%s does not require grad", names[i]);
        }
        cr_assert(nn_params_numel(P) == 7 * 5 + 7 + 6 * 7 + 6 + 2 * 6 + 2, "numel");
        /* A failing init leaves the registry exactly as it was. */
        {
            nn_mlp bad;
            const int64_t badw[3] = {5, 0, 2};
            cr_assert(nn_mlp_init(&bad, P, "critic", badw, 3, NN_ACT_RELU, NN_ACT_NONE, F32, g) !=
                          RT_OK,
                      "zero width accepted");
            cr_assert(strstr(rt_last_error(), "critic") != NULL, "message: %s", rt_last_error());
            cr_assert(nn_params_count(P) == 6, "failed init left %zu params", nn_params_count(P));
            nn_linear l;
            cr_assert(nn_linear_init(&l, P, "actor.net.0", 3, 3, 1, F32, g) != RT_OK &&
                          strstr(rt_last_error(), "duplicate parameter name \"actor.net.0.weight\""),
                      "duplicate module accepted: %s", rt_last_error());
            cr_assert(nn_params_count(P) == 6, "failed linear init left %zu params",
                      nn_params_count(P));
        }
        nn_params_free(P);
        P = nn_params_new();
    }

    /* -- PyTorch cross-check 1: hand-set weights, f64 -- */
    {
        nn_mlp m;
        const int64_t widths[3] = {3, 4, 2}, sw0[2] = {4, 3}, sb0[1] = {4}, sw1[2] = {2, 4},
                      sb1[1] = {2}, sx[2] = {2, 3};
        cr_assert(nn_mlp_init(&m, P, NULL, widths, 3, NN_ACT_GELU, NN_ACT_TANH, F64, g) == RT_OK,
                  "%s", rt_last_error());
        cr_assert(strcmp(nn_params_name(P, 0), "0.weight") == 0 &&
                      strcmp(nn_params_name(P, 3), "2.bias") == 0,
                  "torch state_dict keys");
        set_param(S, P, "0.weight", HAND_W0, sw0, 2);
        set_param(S, P, "0.bias", HAND_B0, sb0, 1);
        set_param(S, P, "2.weight", HAND_W1, sw1, 2);
        set_param(S, P, "2.bias", HAND_B1, sb1, 1);
        rt_tensor *x = rt_from_data(S, HAND_X, sx, 2, F64); /* [2,3] */
        rt_tensor *y = nn_mlp_forward(S, &m, x);             /* [2,2] */
        double d = diff_to(y, HAND_OUT, 4);
        cr_assert(d < 1e-12, "MLP vs torch (hand-set weights): max diff %g (%s)", d,
                  rt_last_error());

        /* Linear forward equals x W^T + b. */
        rt_tensor *w = m.layers[0].weight, *b = m.layers[0].bias;
        rt_tensor *lin = nn_linear_forward(S, &m.layers[0], x);                  /* [2,4] */
        rt_tensor *ref = rt_add(S, rt_matmul(S, x, rt_transpose(S, w, 0, 1)), b); /* [2,4] */
        d = rt_max_abs_diff(lin, ref);
        cr_assert(d < 1e-14, "Linear vs x@W^T+b: %g (%s)", d, rt_last_error());
        /* A wrong input width names the module and the shape. */
        rt_tensor *bad = nn_linear_forward(S, &m.layers[1], x);
        cr_assert(bad == NULL && strstr(rt_last_error(), "[2, 3]") &&
                      strstr(rt_last_error(), "(2)"),
                  "message: %s", rt_last_error());
        nn_params_free(P);
        P = nn_params_new();
        rt_scope_reset(S);
    }

    /* -- PyTorch cross-check 2: seeded init equals torch's (f32), forward vs
     *    hand composition, and torch's output -- */
    {
        nn_mlp m;
        const int64_t widths[3] = {3, 4, 2}, sx[2] = {2, 3};
        double params[26];
        size_t k = 0;
        cr_assert(rt_gen_seed(g, 1234) == RT_OK, "seed");
        cr_assert(nn_mlp_init(&m, P, "", widths, 3, NN_ACT_RELU, NN_ACT_NONE, F32, g) == RT_OK,
                  "%s", rt_last_error());
        for (size_t i = 0; i < nn_params_count(P); i++) {
            rt_tensor *t = nn_params_tensor(P, i);
            size_t n = (size_t)rt_numel(t);
            cr_assert(k + n <= 26 && rt_to_data(t, RT_F64, params + k, (26 - k) * sizeof(double)) ==
                                         RT_OK,
                      "reading %s", nn_params_name(P, i));
            k += n;
        }
        cr_assert(k == 26, "parameter count %zu", k);
        for (size_t i = 0; i < 26; i++) /* the printed values have 9 significant digits */
            cr_assert(fabs(params[i] - SEED_MLP_PARAMS[i]) < 1e-8,
                      "param %zu: %.9g vs torch %.9g", i, params[i], SEED_MLP_PARAMS[i]);
        rt_tensor *x = rt_from_data(S, HAND_X, sx, 2, F64);
        rt_tensor *x32 = rt_to_dtype(S, x, RT_F32);     /* [2,3] */
        rt_tensor *y = nn_mlp_forward(S, &m, x32);      /* [2,2] */
        double d = diff_to(y, SEED_MLP_OUT, 4);
        cr_assert(d < 1e-6, "seeded MLP vs torch: %g (%s)", d, rt_last_error());
        /* hand composition: relu(x W0^T + b0) W1^T + b1 */
        rt_tensor *h = rt_relu(S, rt_add(S, rt_matmul(S, x32, rt_transpose(S, m.layers[0].weight,
                                                                           0, 1)),
                                         m.layers[0].bias)); /* [2,4] */
        rt_tensor *ref = rt_add(S, rt_matmul(S, h, rt_transpose(S, m.layers[1].weight, 0, 1)),
                                m.layers[1].bias); /* [2,2] */
        d = rt_max_abs_diff(y, ref);
        cr_assert(d < 1e-6, "MLP vs hand composition: %g (%s)", d, rt_last_error());

        /* Embedding: torch.manual_seed(7); Embedding(5, 3). */
        nn_embedding e;
        const int64_t ids_v[3] = {4, 0, 4}, sid[1] = {3};
        cr_assert(rt_gen_seed(g, 7) == RT_OK, "seed");
        cr_assert(nn_embedding_init(&e, P, "wte", 5, 3, F32, g) == RT_OK, "%s", rt_last_error());
        d = diff_to(e.weight, SEED_EMB, 15);
        cr_assert(d < 1e-7, "seeded Embedding vs torch: %g", d);
        rt_tensor *ids = rt_from_data(S, ids_v, sid, 1, RT_OPTS(RT_I64)); /* [3] */
        rt_tensor *rows = nn_embedding_forward(S, &e, ids);                /* [3,3] */
        const double want_rows[9] = {SEED_EMB[12], SEED_EMB[13], SEED_EMB[14], SEED_EMB[0],
                                     SEED_EMB[1],  SEED_EMB[2],  SEED_EMB[12], SEED_EMB[13],
                                     SEED_EMB[14]};
        d = diff_to(rows, want_rows, 9);
        cr_assert(d < 1e-7, "embedding lookup: %g (%s)", d, rt_last_error());
        nn_params_free(P);
        P = nn_params_new();
        rt_scope_reset(S);
    }

    /* -- init ranges: Linear U(-1/sqrt(in), 1/sqrt(in)), Embedding N(0,1) -- */
    {
        nn_linear l;
        nn_embedding e;
        cr_assert(nn_linear_init(&l, P, "big", 64, 256, 1, F64, g) == RT_OK, "%s", rt_last_error());
        const double bound = 1.0 / 8.0;
        for (int which = 0; which < 2; which++) {
            rt_tensor *t = which ? l.bias : l.weight;
            double mx = rt_item(rt_max(S, rt_abs(S, t), RT_DIM_ALL, 0, NULL));
            double mean_abs = rt_item(rt_mean(S, rt_abs(S, t), RT_DIM_ALL, 0));
            cr_assert(mx <= bound && mx > 0.9 * bound, "%s max |w| %g, bound %g",
                      which ? "bias" : "weight", mx, bound);
            /* E|w| = bound/2 for a uniform draw */
            cr_assert(fabs(mean_abs - bound / 2) < (which ? 0.1 : 0.02) * bound,
                      "%s mean |w| %g, want %g", which ? "bias" : "weight", mean_abs, bound / 2);
        }
        cr_assert(nn_embedding_init(&e, P, "emb", 200, 50, F64, g) == RT_OK, "%s", rt_last_error());
        double mean = rt_item(rt_mean(S, e.weight, RT_DIM_ALL, 0));
        double sd = rt_item(rt_std(S, e.weight, RT_DIM_ALL, 1, 0));
        cr_assert(fabs(mean) < 0.05 && fabs(sd - 1.0) < 0.05, "embedding mean %g std %g", mean, sd);
        rt_scope_reset(S);
    }

    /* -- LayerNorm / RMSNorm: ones/zeros init, normalized outputs -- */
    {
        nn_layer_norm ln;
        nn_rms_norm rms;
        const int64_t sx[3] = {3, 5, 32}, s1[1] = {32};
        cr_assert(nn_layer_norm_init(&ln, P, "ln_f", 32, 0.0, F64) == RT_OK, "%s", rt_last_error());
        cr_assert(nn_rms_norm_init(&rms, P, "norm", 32, 1e-6, F64) == RT_OK, "%s", rt_last_error());
        cr_assert(ln.eps == 1e-5 && rms.eps == 1e-6, "eps %g %g", ln.eps, rms.eps);
        cr_assert(rt_equal(ln.weight, rt_ones(S, s1, 1, F64)) == 1 &&
                      rt_equal(ln.bias, rt_zeros(S, s1, 1, F64)) == 1 &&
                      rt_equal(rms.weight, rt_ones(S, s1, 1, F64)) == 1,
                  "norm init");
        cr_assert(nn_params_get(P, "ln_f.bias") == ln.bias && nn_params_get(P, "norm.weight"),
                  "norm names");
        /* x = 3 * N(0,1) + 5 */
        rt_tensor *x = rt_add_scalar(S, rt_mul_scalar(S, rt_randn(S, sx, 3, g, F64), 3.0), 5.0);
        rt_tensor *y = nn_layer_norm_forward(S, &ln, x); /* [3,5,32] */
        double mean_dev = rt_item(rt_max(S, rt_abs(S, rt_mean(S, y, -1, 0)), RT_DIM_ALL, 0, NULL));
        rt_tensor *var = rt_var(S, y, -1, 0, 0); /* [3,5] population variance */
        double var_dev = rt_item(rt_max(S, rt_abs(S, rt_add_scalar(S, var, -1.0)), RT_DIM_ALL, 0,
                                        NULL));
        cr_assert(mean_dev < 1e-12 && var_dev < 1e-5, "LayerNorm mean dev %g var dev %g (%s)",
                  mean_dev, var_dev, rt_last_error());
        rt_tensor *r = nn_rms_norm_forward(S, &rms, x); /* [3,5,32] */
        rt_tensor *ms = rt_mean(S, rt_square(S, r), -1, 0);
        double ms_dev = rt_item(rt_max(S, rt_abs(S, rt_add_scalar(S, ms, -1.0)), RT_DIM_ALL, 0,
                                       NULL));
        cr_assert(ms_dev < 1e-6, "RMSNorm mean square dev %g (%s)", ms_dev, rt_last_error());
        /* RMSNorm keeps the direction: r is a positive multiple of x per row */
        rt_tensor *cos = rt_div(S, rt_sum(S, rt_mul(S, r, x), -1, 0),
                                rt_mul(S, rt_norm(S, r, -1, 0), rt_norm(S, x, -1, 0)));
        double cos_dev = rt_item(rt_max(S, rt_abs(S, rt_add_scalar(S, cos, -1.0)), RT_DIM_ALL, 0,
                                        NULL));
        cr_assert(cos_dev < 1e-12, "RMSNorm direction %g", cos_dev);
    }

    /* -- activation names -- */
    {
        nn_act a;
        cr_assert(nn_act_from_name("gelu_tanh", &a) == RT_OK && a == NN_ACT_GELU_TANH, "parse");
        cr_assert(strcmp(nn_act_name(NN_ACT_SILU), "silu") == 0, "name");
        cr_assert(nn_act_from_name("swish", &a) == RT_EINVAL && strstr(rt_last_error(), "swish"),
                  "unknown activation: %s", rt_last_error());
    }

    nn_params_free(P);
    rt_gen_free(g);
    rt_scope_free(S);
}

Test(nn, attention_cache_block_parity_and_training) {
    rt_scope *S = rt_scope_new();
    nn_params *P = nn_params_new();
    rt_gen *g = rt_gen_new(42);
    cr_assert(S && P && g, "setup");

    /* -- block vs PyTorch (seeded, f64), names in state_dict order -- */
    {
        nn_block blk;
        nn_block_config cfg = nn_block_config_default(8, 2);
        const int64_t sx[3] = {1, 4, 8};
        cr_assert(nn_block_init(&blk, P, NULL, &cfg, F64, g) == RT_OK, "%s", rt_last_error());
        cr_assert(nn_params_count(P) == 16, "block has %zu params", nn_params_count(P));
        for (size_t i = 0; i < 16; i++)
            cr_assert(strcmp(nn_params_name(P, i), BLOCK_NAMES[i]) == 0, "name %zu: %s vs %s", i,
                      nn_params_name(P, i), BLOCK_NAMES[i]);
        rt_tensor *x = rt_randn(S, sx, 3, g, F64); /* [1,4,8], same draw as torch.randn */
        rt_tensor *y = nn_block_forward(S, &blk, x); /* [1,4,8] */
        double d = diff_to(y, SEED_BLOCK_OUT, 32);
        cr_assert(d < 1e-12, "block vs torch: max diff %g (%s)", d, rt_last_error());
        nn_params_free(P);
        P = nn_params_new();
        rt_scope_reset(S);
    }

    /* -- names and shapes of a stacked, bias-free block with an explicit
     *    head_dim (H*D = 16 != C = 12) and MLP width -- */
    {
        nn_block blk;
        nn_block_config cfg = nn_block_config_default(12, 2);
        const int64_t q[2] = {16, 12}, o[2] = {12, 16}, fc[2] = {20, 12};
        cfg.head_dim = 8;
        cfg.mlp_hidden = 20;
        cfg.bias = 0;
        cr_assert(nn_block_init(&blk, P, "layers.3", &cfg, F32, g) == RT_OK, "%s", rt_last_error());
        cr_assert(nn_params_count(P) == 4 + 4 + 2, "bias-free block has %zu params",
                  nn_params_count(P));
        cr_assert(has_shape(nn_params_get(P, "layers.3.attn.q_proj.weight"), q, 2) &&
                      has_shape(nn_params_get(P, "layers.3.attn.o_proj.weight"), o, 2) &&
                      has_shape(nn_params_get(P, "layers.3.mlp.fc.weight"), fc, 2) &&
                      nn_params_get(P, "layers.3.ln_2.bias") != NULL &&
                      nn_params_index(P, "layers.3.attn.q_proj.bias") < 0,
                  "stacked block names/shapes: %s", rt_last_error());
        nn_params_free(P);
        P = nn_params_new();
    }

    /* -- KV-cache decoding equals the full forward: f32 1e-5, f64 1e-9 -- */
    for (int dt = 0; dt < 2; dt++) {
        rt_opts o = dt ? F64 : F32;
        double tol = dt ? 1e-9 : 1e-5;
        nn_attention attn;
        nn_block blk;
        nn_block_config cfg = nn_block_config_default(16, 4);
        const int64_t sx[3] = {2, 7, 16};
        cr_assert(nn_attention_init(&attn, P, "attn", 16, 4, 0, 1, o, g) == RT_OK, "%s",
                  rt_last_error());
        cr_assert(attn.head_dim == 4, "head_dim %lld", (long long)attn.head_dim);
        cr_assert(nn_block_init(&blk, P, "layers.0", &cfg, o, g) == RT_OK, "%s", rt_last_error());
        rt_tensor *x = rt_randn(S, sx, 3, g, o); /* [2,7,16] */
        double d1 = cached_vs_full(S, NULL, &attn, x, 1);
        double d3 = cached_vs_full(S, NULL, &attn, x, 3);
        double db = cached_vs_full(S, &blk, NULL, x, 1);
        double db4 = cached_vs_full(S, &blk, NULL, x, 4);
        cr_assert(d1 < tol && d3 < tol && db < tol && db4 < tol,
                  "%s cached vs full: attn %g / %g, block %g / %g", dt ? "f64" : "f32", d1, d3, db,
                  db4);
        /* causality: changing the last position leaves earlier outputs alone */
        {
            rt_tensor *x2 = rt_clone(S, x);
            rt_tensor *last = rt_narrow(S, x2, 1, 6, 1);
            int gm = rt_no_grad_begin();
            cr_assert(rt_fill_(last, 3.0) == RT_OK, "%s", rt_last_error());
            rt_grad_mode_restore(gm);
            rt_tensor *y1 = rt_narrow(S, nn_block_forward(S, &blk, x), 1, 0, 6);
            rt_tensor *y2 = rt_narrow(S, nn_block_forward(S, &blk, x2), 1, 0, 6);
            cr_assert(rt_max_abs_diff(y1, y2) == 0.0, "future position leaked: %g",
                      rt_max_abs_diff(y1, y2));
        }
        nn_params_free(P);
        P = nn_params_new();
        rt_scope_reset(S);
    }

    /* -- a tiny MLP trained with Adam for 200 steps lowers the loss > 10x -- */
    {
        nn_mlp m;
        const int64_t widths[4] = {2, 32, 32, 1}, sx[2] = {128, 2};
        rt_scope *step = rt_scope_new();
        rt_optim_opts oo = rt_optim_defaults(RT_ADAM);
        cr_assert(nn_mlp_init(&m, P, "net", widths, 4, NN_ACT_TANH, NN_ACT_NONE, F32, g) == RT_OK,
                  "%s", rt_last_error());
        /* y = sin(2 x0) * cos(x1) + 0.5 x0 on x ~ U[-1.5, 1.5)^2 */
        rt_tensor *x = rt_add_scalar(S, rt_mul_scalar(S, rt_rand(S, sx, 2, g, F32), 3.0), -1.5);
        rt_tensor *x0 = rt_narrow(S, x, 1, 0, 1), *x1 = rt_narrow(S, x, 1, 1, 1); /* [128,1] */
        rt_tensor *y = rt_add(S, rt_mul(S, rt_sin(S, rt_mul_scalar(S, x0, 2.0)), rt_cos(S, x1)),
                              rt_mul_scalar(S, x0, 0.5)); /* [128,1] */
        oo.lr = 1e-2;
        rt_optim *opt = rt_optim_new(RT_ADAM, nn_params_tensors(P), nn_params_names(P),
                                     nn_params_count(P), &oo);
        cr_assert(y && opt, "training setup: %s", rt_last_error());
        double first = NAN, last = NAN;
        for (int it = 0; it < 200; it++) {
            rt_scope_reset(step);
            rt_tensor *pred = nn_mlp_forward(step, &m, x);     /* [128,1] */
            rt_tensor *loss = rt_mse(step, pred, y, RT_MEAN); /* [] */
            cr_assert(rt_optim_zero_grad(opt) == RT_OK && rt_backward(loss) == RT_OK &&
                          rt_optim_step(opt) == RT_OK,
                      "step %d: %s", it, rt_last_error());
            last = rt_item(loss);
            if (it == 0)
                first = last;
        }
        cr_assert(rt_scope_count(step) > 0 && isfinite(last), "loss %g", last);
        cr_assert(first / last > 10.0, "loss %g -> %g, only %.2fx lower", first, last,
                  first / last);

        /* target-network helpers: copy then Polyak-average */
        {
            nn_params *T = nn_params_new();
            nn_mlp tm;
            cr_assert(nn_mlp_init(&tm, T, "net_target", widths, 4, NN_ACT_TANH, NN_ACT_NONE, F32,
                                  g) == RT_OK,
                      "%s", rt_last_error());
            rt_tensor *before = rt_clone(S, nn_params_tensor(T, 0));
            cr_assert(nn_params_lerp_(T, P, 0.25) == RT_OK, "%s", rt_last_error());
            /* t <- t + 0.25 (p - t) */
            rt_tensor *want = rt_add_scaled(S, before,
                                            rt_sub(S, nn_params_tensor(P, 0), before), 0.25);
            cr_assert(rt_max_abs_diff(nn_params_tensor(T, 0), want) < 1e-6, "lerp");
            cr_assert(nn_params_copy_(T, P) == RT_OK, "%s", rt_last_error());
            for (size_t i = 0; i < nn_params_count(P); i++)
                cr_assert(rt_equal(nn_params_tensor(T, i), nn_params_tensor(P, i)) == 1,
                          "copy %zu", i);
            cr_assert(rt_requires_grad(nn_params_tensor(T, 0)) == 1, "copy kept requires_grad");
            cr_assert(nn_params_set_requires_grad(T, 0) == RT_OK &&
                          rt_requires_grad(nn_params_tensor(T, 0)) == 0,
                      "freeze");
            nn_params_free(T);
        }
        rt_optim_free(opt);
        rt_scope_free(step);
    }

    nn_params_free(P);
    rt_gen_free(g);
    rt_scope_free(S);
}
