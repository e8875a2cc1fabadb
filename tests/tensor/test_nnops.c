/*
 * test_nnops.c -- the neural-network functions of the tensor binding:
 * matmul/bmm/linear, softmax/log_softmax, layer_norm/rms_norm, dropout,
 * causal attention (against a reference written here in plain C loops,
 * including the Tk > Tq offset rule and the KV-cache path), cross-entropy and
 * MSE against hand values and PyTorch's printed numbers.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tcheck.h"
#include "tensor.h"

static void check_linear_softmax_norms_dropout(void)
{
    rt_scope *S = rt_scope_new();
    const int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s22[2] = {2, 2}, s3[1] = {3};

    /* --- matmul / bmm / linear --- */
    rt_tensor *A = tc_f64(S, (const double[6]){1, 2, 3, 4, 5, 6}, s23, 2);
    rt_tensor *B = tc_f64(S, (const double[6]){7, 8, 9, 10, 11, 12}, s32, 2);
    rt_tensor *AB = rt_matmul(S, A, B);
    tc_expect_shape(AB, s22, 2, "matmul");
    tc_expect_f64(AB, (const double[4]){58, 64, 139, 154}, 4, 0.0, "matmul");
    rt_tensor *vec = tc_f64(S, (const double[3]){1, 0, -1}, s3, 1);
    rt_tensor *Av = rt_matmul(S, A, vec);
    tc_expect_shape(Av, (const int64_t[1]){2}, 1, "matmul matrix-vector");
    tc_expect_f64(Av, (const double[2]){-2, -2}, 2, 0.0, "matmul matrix-vector");
    /* batch [2,2,3] x [3,2] broadcasts the right operand */
    rt_tensor *A2 = rt_stack(S, (rt_tensor *const[2]){A, rt_mul_scalar(S, A, -1)}, 2, 0);
    rt_tensor *bAB = rt_matmul(S, A2, B);
    tc_expect_shape(bAB, (const int64_t[3]){2, 2, 2}, 3, "batched matmul");
    tc_expect_f64(bAB, (const double[8]){58, 64, 139, 154, -58, -64, -139, -154}, 8, 0.0,
                  "batched matmul");
    const int64_t s222[3] = {2, 2, 2};
    rt_tensor *P = tc_f64(S, (const double[8]){1, 2, 3, 4, 0, 1, 1, 0}, s222, 3);
    rt_tensor *Q = tc_f64(S, (const double[8]){1, 0, 0, 1, 5, 6, 7, 8}, s222, 3);
    tc_expect_f64(rt_bmm(S, P, Q), (const double[8]){1, 2, 3, 4, 7, 8, 5, 6}, 8, 0.0, "bmm");
    rt_tensor *W = tc_f64(S, (const double[6]){1, 0, -1, 0.5, 0.5, 0.5}, s23, 2);
    rt_tensor *b = tc_f64(S, (const double[2]){10, -10}, (const int64_t[1]){2}, 1);
    rt_tensor *lin = rt_linear(S, A, W, b);
    tc_expect_shape(lin, s22, 2, "linear");
    tc_expect_f64(lin, (const double[4]){8, -7, 8, -2.5}, 4, 0.0, "linear with bias");
    tc_expect_f64(rt_linear(S, A, W, NULL), (const double[4]){-2, 3, -2, 7.5}, 4, 0.0,
                  "linear without bias");
    rt_tensor *lin3 = rt_linear(S, A2, W, b); /* leading dims pass through */
    tc_expect_shape(lin3, s222, 3, "linear [2,2,3]");
    tc_expect_f64(lin3, (const double[8]){8, -7, 8, -2.5, 12, -13, 12, -17.5}, 8, 0.0,
                  "linear [2,2,3]");

    /* --- softmax / log_softmax: shift invariant, no overflow at 1000 --- */
    rt_tensor *L = tc_f64(S, (const double[6]){1, 2, 3, 1000, 1001, 1002}, s23, 2);
    const double z = exp(1.0) + exp(2.0) + exp(3.0);
    const double sm[3] = {exp(1.0) / z, exp(2.0) / z, exp(3.0) / z};
    const double smw[6] = {sm[0], sm[1], sm[2], sm[0], sm[1], sm[2]};
    tc_expect_f64(rt_softmax(S, L, -1), smw, 6, 1e-15, "softmax dim -1");
    const double lsm[6] = {1 - log(z), 2 - log(z), 3 - log(z), 1 - log(z), 2 - log(z), 3 - log(z)};
    tc_expect_f64(rt_log_softmax(S, L, 1), lsm, 6, 1e-14, "log_softmax dim 1");
    /* softmax over dim 0 of rows that differ by 999: [e^-999/(1+e^-999), ...] */
    const double p0 = 1.0 / (1.0 + exp(999.0));
    tc_expect_f64(rt_softmax(S, L, 0), (const double[6]){p0, p0, p0, 1 - p0, 1 - p0, 1 - p0}, 6,
                  1e-15, "softmax dim 0");

    /* --- layer_norm over the last dim (population variance), with and
     *     without affine parameters, and over the last two dims --- */
    const double X[8] = {1, 2, 3, 4, -1, 0.5, 2, 8};
    const double G[4] = {1, 0.5, 2, -1}, Bt[4] = {0, 1, -1, 0.5};
    const int64_t s24[2] = {2, 4}, s4[1] = {4};
    rt_tensor *x = tc_f64(S, X, s24, 2);
    rt_tensor *g = tc_f64(S, G, s4, 1), *bb = tc_f64(S, Bt, s4, 1);
    const double eps = 1e-5;
    double ln_aff[8], ln_plain[8], ln_all[8], rms[8], rms_w[8];
    for (int r = 0; r < 2; r++) {
        double mu = 0, var = 0, ms = 0;
        for (int j = 0; j < 4; j++)
            mu += X[r * 4 + j] / 4;
        for (int j = 0; j < 4; j++) {
            var += (X[r * 4 + j] - mu) * (X[r * 4 + j] - mu) / 4;
            ms += X[r * 4 + j] * X[r * 4 + j] / 4;
        }
        for (int j = 0; j < 4; j++) {
            ln_plain[r * 4 + j] = (X[r * 4 + j] - mu) / sqrt(var + eps);
            ln_aff[r * 4 + j] = ln_plain[r * 4 + j] * G[j] + Bt[j];
            rms[r * 4 + j] = X[r * 4 + j] / sqrt(ms + eps);
            rms_w[r * 4 + j] = rms[r * 4 + j] * G[j];
        }
    }
    double mu_all = 0, var_all = 0;
    for (int i = 0; i < 8; i++)
        mu_all += X[i] / 8;
    for (int i = 0; i < 8; i++)
        var_all += (X[i] - mu_all) * (X[i] - mu_all) / 8;
    for (int i = 0; i < 8; i++)
        ln_all[i] = (X[i] - mu_all) / sqrt(var_all + eps);
    tc_expect_f64(rt_layer_norm(S, x, 1, g, bb, eps), ln_aff, 8, 1e-13, "layer_norm affine");
    tc_expect_f64(rt_layer_norm(S, x, 1, NULL, NULL, eps), ln_plain, 8, 1e-13, "layer_norm");
    tc_expect_f64(rt_layer_norm(S, x, 2, NULL, NULL, eps), ln_all, 8, 1e-13, "layer_norm 2 dims");
    tc_expect_f64(rt_rms_norm(S, x, NULL, eps), rms, 8, 1e-13, "rms_norm");
    tc_expect_f64(rt_rms_norm(S, x, g, eps), rms_w, 8, 1e-13, "rms_norm weight");

    /* --- dropout --- */
    rt_gen *gen = rt_gen_new(7);
    const int64_t n = 20000, sn[1] = {20000};
    rt_tensor *ones = rt_ones(S, sn, 1, RT_OPTS(RT_F32));
    rt_tensor *ev = rt_dropout(S, ones, 0.25, 0, gen);
    cr_expect(rt_equal(ev, ones) == 1, "dropout in eval mode must be the identity");
    size_t nstate = 0;
    uint8_t st[1 << 16];
    cr_assert_eq(rt_gen_get_state(gen, st, sizeof st, &nstate), RT_OK);
    rt_tensor *tr = rt_dropout(S, ones, 0.25, 1, gen);
    cr_assert(tr != NULL, "%s", rt_last_error());
    static float dv[20000];
    cr_assert_eq(rt_to_data(tr, RT_F32, dv, sizeof dv), RT_OK);
    const float kept = (float)(1.0 / 0.75);
    int64_t zeros = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (dv[i] == 0.0f)
            zeros++;
        else if (fabsf(dv[i] - kept) > 1e-6f)
            bad++;
    }
    cr_expect_eq(bad, 0, "%lld kept values are not scaled by 1/(1-p)", (long long)bad);
    double frac = (double)zeros / (double)n;
    cr_expect(frac > 0.23 && frac < 0.27, "dropout p=0.25 zeroed a fraction %g", frac);
    /* Same generator state -> same mask; the generator advanced -> another mask. */
    cr_assert_eq(rt_gen_set_state(gen, st, nstate), RT_OK);
    cr_expect(rt_equal(rt_dropout(S, ones, 0.25, 1, gen), tr) == 1, "dropout not reproducible");
    cr_expect(rt_equal(rt_dropout(S, ones, 0.25, 1, gen), tr) == 0, "dropout mask repeated");
    rt_gen *gen2 = rt_gen_new(7);
    cr_expect(rt_equal(rt_dropout(S, ones, 0.25, 1, gen2), tr) == 1, "same seed, other mask");
    /* float64 kept values are x / (1 - p). */
    rt_tensor *xr = rt_arange(S, 1, 101, 1, RT_OPTS(RT_F64));
    double xd[100];
    tc_read_f64(rt_dropout(S, xr, 0.5, 1, gen), xd, 100, "dropout f64");
    int nz = 0;
    for (int i = 0; i < 100; i++) {
        if (xd[i] != 0.0) {
            cr_expect(xd[i] == (i + 1) * 2.0, "dropout kept %g at %d", xd[i], i);
            nz++;
        }
    }
    cr_expect(nz > 25 && nz < 75, "dropout p=0.5 kept %d of 100", nz);
    rt_clear_error();
    cr_expect(rt_dropout(S, ones, 0.25, 1, NULL) == NULL, "training dropout with NULL generator");
    tc_expect_clean_error("dropout(NULL gen)");
    rt_clear_error();
    rt_gen_free(gen);
    rt_gen_free(gen2);
    rt_scope_free(S);
}

/* Reference causal attention in plain C on row-major [B,H,T,D] arrays. */
static void ref_attention(const double *q, const double *k, const double *v, int B, int H, int Tq,
                          int Tk, int D, double scale, double *out)
{
    for (int bh = 0; bh < B * H; bh++) {
        for (int i = 0; i < Tq; i++) {
            const double *qi = q + ((size_t)bh * Tq + i) * D;
            int last = Tk - Tq + i; /* absolute position of query i */
            double s[64], mx = -INFINITY, z = 0;
            for (int j = 0; j <= last; j++) {
                double dot = 0;
                for (int d = 0; d < D; d++)
                    dot += qi[d] * k[((size_t)bh * Tk + j) * D + d];
                s[j] = dot * scale;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= last; j++) {
                s[j] = exp(s[j] - mx);
                z += s[j];
            }
            double *o = out + ((size_t)bh * Tq + i) * D;
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int j = 0; j <= last; j++)
                    acc += s[j] / z * v[((size_t)bh * Tk + j) * D + d];
                o[d] = acc;
            }
        }
    }
}

static void check_causal_attention_and_kv_cache(void)
{
    rt_scope *S = rt_scope_new();
    rt_gen *g = rt_gen_new(3);
    enum { B = 2, H = 2, T = 5, D = 3 };
    const int64_t sh[4] = {B, H, T, D};
    rt_tensor *q = rt_randn(S, sh, 4, g, RT_OPTS(RT_F64));
    rt_tensor *k = rt_randn(S, sh, 4, g, RT_OPTS(RT_F64));
    rt_tensor *v = rt_randn(S, sh, 4, g, RT_OPTS(RT_F64));
    double qd[B * H * T * D], kd[B * H * T * D], vd[B * H * T * D], want[B * H * T * D];
    tc_read_f64(q, qd, B * H * T * D, "q");
    tc_read_f64(k, kd, B * H * T * D, "k");
    tc_read_f64(v, vd, B * H * T * D, "v");

    /* Full sequence, default scale 1/sqrt(D), and an explicit scale. */
    rt_tensor *full = rt_causal_attention(S, q, k, v, 0.0);
    tc_expect_shape(full, sh, 4, "attention");
    ref_attention(qd, kd, vd, B, H, T, T, D, 1.0 / sqrt((double)D), want);
    tc_expect_f64(full, want, B * H * T * D, 1e-13, "causal attention (default scale)");
    /* The first query sees only the first key: its output is v[.., 0, :]. */
    tc_expect_f64(rt_narrow(S, rt_narrow(S, rt_narrow(S, full, 2, 0, 1), 1, 0, 1), 0, 0, 1), vd, D, 1e-15,
                  "position 0 attends only to itself");
    ref_attention(qd, kd, vd, B, H, T, T, D, 0.5, want);
    tc_expect_f64(rt_causal_attention(S, q, k, v, 0.5), want, B * H * T * D, 1e-13,
                  "causal attention (scale 0.5)");

    /* Tk > Tq: the last 2 queries against all 5 keys; query i sits at 3 + i. */
    rt_tensor *q2 = rt_contiguous(S, rt_narrow(S, q, 2, 3, 2));
    double q2d[B * H * 2 * D], want2[B * H * 2 * D];
    tc_read_f64(q2, q2d, B * H * 2 * D, "q tail");
    ref_attention(q2d, kd, vd, B, H, 2, T, D, 1.0 / sqrt((double)D), want2);
    rt_tensor *tail = rt_causal_attention(S, q2, k, v, 0.0);
    tc_expect_shape(tail, (const int64_t[4]){B, H, 2, D}, 4, "attention Tk > Tq");
    tc_expect_f64(tail, want2, B * H * 2 * D, 1e-13, "attention Tk > Tq (offset rule)");
    /* ... which equals the last two rows of the full call. */
    cr_expect(rt_max_abs_diff(tail, rt_narrow(S, full, 2, 3, 2)) < 1e-14);
    /* Tk < Tq is refused. */
    rt_clear_error();
    cr_expect(rt_causal_attention(S, q, rt_narrow(S, k, 2, 0, 2), rt_narrow(S, v, 2, 0, 2), 0) ==
                  NULL,
              "attention with Tk < Tq accepted");
    tc_expect_clean_error("attention Tk < Tq");
    rt_clear_error();

    /* KV cache fed one token at a time equals the full call. */
    rt_kv_cache *c = rt_kv_cache_new(B, H, T, D, RT_OPTS(RT_F64));
    cr_assert(c != NULL, "%s", rt_last_error());
    cr_expect_eq(rt_kv_cache_len(c), 0);
    rt_tensor *outs[T];
    for (int t = 0; t < T; t++) {
        rt_tensor *qt = rt_narrow(S, q, 2, t, 1), *kt = rt_narrow(S, k, 2, t, 1);
        rt_tensor *vt = rt_narrow(S, v, 2, t, 1);
        outs[t] = rt_causal_attention_cached(S, c, qt, kt, vt, 0.0);
        cr_assert(outs[t] != NULL, "cached step %d: %s", t, rt_last_error());
        tc_expect_shape(outs[t], (const int64_t[4]){B, H, 1, D}, 4, "cached step");
        cr_expect_eq(rt_kv_cache_len(c), t + 1);
    }
    rt_tensor *inc = rt_cat(S, outs, T, 2);
    double dmax = rt_max_abs_diff(inc, full);
    cr_expect(dmax < 1e-6, "KV-cache decoding differs from the full call by %g", dmax);
    /* Appending past max_len fails cleanly and leaves the cache as it was. */
    rt_tensor *ka = NULL, *va = NULL;
    rt_clear_error();
    int rc = rt_kv_cache_append(c, S, rt_narrow(S, k, 2, 0, 1), rt_narrow(S, v, 2, 0, 1), &ka, &va);
    cr_expect(rc < 0, "append past max_len returned %d", rc);
    tc_expect_clean_error("kv cache overflow");
    cr_expect_eq(rt_kv_cache_len(c), T);
    rt_clear_error();
    cr_expect(rt_causal_attention_cached(S, c, rt_narrow(S, q, 2, 0, 1), rt_narrow(S, k, 2, 0, 1),
                                         rt_narrow(S, v, 2, 0, 1), 0.0) == NULL,
              "cached attention past max_len");
    tc_expect_clean_error("cached attention overflow");
    rt_clear_error();
    /* Clear, then a prefix of 3 through append and a chunk of 2 through the
     * cached call: the chunk equals rows 3..4 of the full call. */
    rt_kv_cache_clear(c);
    cr_expect_eq(rt_kv_cache_len(c), 0);
    ka = va = NULL;
    rc = rt_kv_cache_append(c, S, rt_narrow(S, k, 2, 0, 3), rt_narrow(S, v, 2, 0, 3), &ka, &va);
    cr_assert_eq(rc, RT_OK, "%s", rt_last_error());
    tc_expect_shape(ka, (const int64_t[4]){B, H, 3, D}, 4, "cached keys");
    tc_expect_shape(va, (const int64_t[4]){B, H, 3, D}, 4, "cached values");
    cr_expect(rt_equal(rt_contiguous(S, ka), rt_contiguous(S, rt_narrow(S, k, 2, 0, 3))) == 1);
    rt_tensor *chunk = rt_causal_attention_cached(S, c, rt_narrow(S, q, 2, 3, 2),
                                                  rt_narrow(S, k, 2, 3, 2),
                                                  rt_narrow(S, v, 2, 3, 2), 0.0);
    cr_assert(chunk != NULL, "%s", rt_last_error());
    cr_expect(rt_max_abs_diff(chunk, tail) < 1e-6);
    cr_expect_eq(rt_kv_cache_len(c), 5);
    /* Mismatched head_dim is refused. */
    rt_kv_cache_clear(c);
    const int64_t bad[4] = {B, H, 1, D + 1};
    rt_tensor *kb = rt_zeros(S, bad, 4, RT_OPTS(RT_F64));
    rt_clear_error();
    cr_expect(rt_kv_cache_append(c, S, kb, kb, &ka, &va) < 0, "append of wrong head_dim");
    tc_expect_clean_error("kv cache wrong shape");
    rt_clear_error();
    rt_kv_cache_free(c);
    rt_kv_cache_free(NULL);
    rt_gen_free(g);
    rt_scope_free(S);
}

static void check_cross_entropy_and_mse(void)
{
    rt_scope *S = rt_scope_new();
    const double Xd[12] = {1.0, 2.0, 0.5, -1.0, 0.0, -0.5, 3.0, 1.0, 2.0, 2.0, -2.0, 0.25};
    const int64_t s34[2] = {3, 4}, s3[1] = {3};
    rt_tensor *x = tc_f64(S, Xd, s34, 2);
    const int64_t tg[3] = {0, 3, 1};
    rt_tensor *t = tc_i64(S, tg, s3, 1);

    /* per row: logsumexp(row) - row[target];  smoothed:
     * (1-e) * nll + e/C * sum_c -log p_c */
    double nll[3], uni[3];
    for (int r = 0; r < 3; r++) {
        double z = 0;
        for (int c = 0; c < 4; c++)
            z += exp(Xd[r * 4 + c]);
        nll[r] = log(z) - Xd[r * 4 + tg[r]];
        uni[r] = 0;
        for (int c = 0; c < 4; c++)
            uni[r] += (log(z) - Xd[r * 4 + c]) / 4;
    }
    tc_expect_f64(rt_cross_entropy(S, x, t, RT_NONE, -100, 0.0), nll, 3, 1e-14, "CE none");
    cr_expect(fabs(tc_item(rt_cross_entropy(S, x, t, RT_SUM, -100, 0.0), "CE sum") -
                   (nll[0] + nll[1] + nll[2])) < 1e-13);
    cr_expect(fabs(tc_item(rt_cross_entropy(S, x, t, RT_MEAN, -100, 0.0), "CE mean") -
                   (nll[0] + nll[1] + nll[2]) / 3) < 1e-13);
    double sm[3];
    for (int r = 0; r < 3; r++)
        sm[r] = 0.9 * nll[r] + 0.1 * uni[r];
    tc_expect_f64(rt_cross_entropy(S, x, t, RT_NONE, -100, 0.1), sm, 3, 1e-14, "CE smoothed");

    /* ignore_index: the mean is over the other rows. Python check
     *   F.cross_entropy(x, [0,-100,1], ignore_index=-100, label_smoothing=ls, reduction=r)
     * -> ls 0: mean 1.140018567096011, sum 2.280037134192022,
     *          none [1.495181898085856, 0.0, 0.784855236106166]
     *    ls 0.1: mean 1.2306435670960112, sum 2.4612871341920224,
     *          none [1.532681898085856, 0.0, 0.9286052361061661]                  */
    rt_tensor *ti = tc_i64(S, (const int64_t[3]){0, -100, 1}, s3, 1);
    tc_expect_f64(rt_cross_entropy(S, x, ti, RT_NONE, -100, 0.0),
                  (const double[3]){1.495181898085856, 0.0, 0.784855236106166}, 3, 1e-14,
                  "CE ignore none");
    cr_expect(fabs(tc_item(rt_cross_entropy(S, x, ti, RT_MEAN, -100, 0.0), "CE ign mean") -
                   1.140018567096011) < 1e-14);
    cr_expect(fabs(tc_item(rt_cross_entropy(S, x, ti, RT_SUM, -100, 0.0), "CE ign sum") -
                   2.280037134192022) < 1e-14);
    tc_expect_f64(rt_cross_entropy(S, x, ti, RT_NONE, -100, 0.1),
                  (const double[3]){1.532681898085856, 0.0, 0.9286052361061661}, 3, 1e-14,
                  "CE ignore smoothed none");
    cr_expect(fabs(tc_item(rt_cross_entropy(S, x, ti, RT_MEAN, -100, 0.1), "CE ign sm mean") -
                   1.2306435670960112) < 1e-14);
    cr_expect(fabs(tc_item(rt_cross_entropy(S, x, ti, RT_SUM, -100, 0.1), "CE ign sm sum") -
                   2.4612871341920224) < 1e-14);
    /* A different ignore_index value. */
    rt_tensor *t7 = tc_i64(S, (const int64_t[3]){7, 3, 1}, s3, 1);
    cr_expect(fabs(tc_item(rt_cross_entropy(S, x, t7, RT_MEAN, 7, 0.0), "CE ignore 7") -
                   (nll[1] + nll[2]) / 2) < 1e-13);

    /* Logits [N, C, d]: the class dim is 1. x3[0][c][j] = x[j][c]. */
    rt_tensor *x3 = rt_unsqueeze(S, rt_transpose(S, x, 0, 1), 0);
    rt_tensor *t3 = tc_i64(S, tg, (const int64_t[2]){1, 3}, 2);
    rt_tensor *ce3 = rt_cross_entropy(S, x3, t3, RT_NONE, -100, 0.0);
    tc_expect_shape(ce3, (const int64_t[2]){1, 3}, 2, "CE [N,C,d] none");
    tc_expect_f64(ce3, nll, 3, 1e-14, "CE [N,C,d]");

    /* MSE */
    const int64_t s4[1] = {4};
    rt_tensor *a = tc_f64(S, (const double[4]){1, 2, 3, 4}, s4, 1);
    rt_tensor *b = tc_f64(S, (const double[4]){1.5, 2, 2, 6}, s4, 1);
    tc_expect_f64(rt_mse(S, a, b, RT_NONE), (const double[4]){0.25, 0, 1, 4}, 4, 0.0, "mse none");
    cr_expect_eq(tc_item(rt_mse(S, a, b, RT_SUM), "mse sum"), 5.25);
    cr_expect_eq(tc_item(rt_mse(S, a, b, RT_MEAN), "mse mean"), 1.3125);

    rt_scope_free(S);
}

/* One test process for the whole file: libtorch costs ~0.6 s per process. */
Test(nn, functions_attention_losses)
{
    check_linear_softmax_norms_dropout();
    check_causal_attention_and_kv_cache();
    check_cross_entropy_and_mse();
}
