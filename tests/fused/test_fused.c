/*
 * test_fused.c -- the fused token log-prob + entropy kernel (rt_token_logps,
 * tensor/tensor_fused.cpp) against the composed binding ops
 * (rt_log_softmax + rt_gather, and -sum p log p), in float64 to 1e-12 and in
 * float32 to ~1e-6, values and gradients through both outputs, at
 * temperatures != 1; central finite differences on a tiny case; -inf logits;
 * non-contiguous logits; 1 vs 2 threads; the memory contract (the forward
 * allocates no [B,T,V], the backward exactly one), checked through the peak
 * RSS (getrusage), not through time; and the error paths. Few Test()s on
 * purpose: each one pays libtorch's start-up.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "tensor.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* The reference: TRL's composition on the binding's ops.
 * logps = gather(log_softmax(logits / T), ids); H = -sum(softmax * log_softmax). */
static rt_tensor *composed(rt_scope *S, const rt_tensor *logits, const rt_tensor *ids, double temp,
                           rt_tensor **entropy)
{
    rt_tensor *ls = rt_log_softmax(S, rt_div_scalar(S, logits, temp), -1);
    rt_tensor *lp = rt_squeeze(S, rt_gather(S, ls, -1, rt_unsqueeze(S, ids, -1)), -1);
    *entropy = rt_neg(S, rt_sum(S, rt_mul(S, rt_exp(S, ls), ls), -1, 0));
    return lp;
}

static double max_abs(rt_scope *S, const rt_tensor *t)
{
    return rt_item(rt_max(S, rt_abs(S, t), RT_DIM_ALL, 0, NULL));
}

/* Assert max|got - want| <= rel * max(1, max|want|). */
static void close_rel(rt_scope *S, const rt_tensor *got, const rt_tensor *want, double rel, const char *what)
{
    cr_assert(got && want, "%s: %s", what, rt_last_error());
    double d = rt_max_abs_diff(got, want), m = max_abs(S, want);
    double tol = rel * (m > 1.0 ? m : 1.0);
    cr_assert(d <= tol, "%s: max |diff| %.3e > %.3e", what, d, tol);
}

/* One comparison of the fused kernel with the composition, values and both
 * gradients. The scalar objective sum(w * logps) + sum(u * H) with random
 * weights sends a gradient through both outputs. */
static void compare(rt_scope *S, rt_tensor *base, rt_tensor *ids, double temp, double rel_val, double rel_grad,
                    rt_gen *g, const char *what)
{
    char msg[160];
    rt_tensor *x1 = rt_detach(S, base), *x2 = rt_detach(S, base);
    cr_assert_eq(rt_set_requires_grad(x1, 1), RT_OK);
    cr_assert_eq(rt_set_requires_grad(x2, 1), RT_OK);
    int64_t shape[RT_MAX_DIMS];
    int nd = rt_shape(ids, shape, RT_MAX_DIMS);
    rt_dtype dt = rt_dtype_of(base);
    rt_tensor *w = rt_randn(S, shape, nd, g, RT_OPTS(dt)), *u = rt_randn(S, shape, nd, g, RT_OPTS(dt));

    rt_tensor *H1 = NULL, *H2 = NULL;
    rt_tensor *lp1 = rt_token_logps(S, x1, ids, temp, &H1);
    rt_tensor *lp2 = composed(S, x2, ids, temp, &H2);
    cr_assert(lp1 && H1 && lp2 && H2, "%s: %s", what, rt_last_error());
    cr_assert_eq(rt_requires_grad(lp1), 1, "%s: logps must require grad", what);
    cr_assert_eq(rt_requires_grad(H1), 1, "%s: entropy must require grad", what);
    snprintf(msg, sizeof msg, "%s: logps", what);
    close_rel(S, lp1, lp2, rel_val, msg);
    snprintf(msg, sizeof msg, "%s: entropy", what);
    close_rel(S, H1, H2, rel_val, msg);

    rt_tensor *o1 = rt_add(S, rt_sum(S, rt_mul(S, w, lp1), RT_DIM_ALL, 0), rt_sum(S, rt_mul(S, u, H1), RT_DIM_ALL, 0));
    rt_tensor *o2 = rt_add(S, rt_sum(S, rt_mul(S, w, lp2), RT_DIM_ALL, 0), rt_sum(S, rt_mul(S, u, H2), RT_DIM_ALL, 0));
    cr_assert_eq(rt_backward(o1), RT_OK, "%s: %s", what, rt_last_error());
    cr_assert_eq(rt_backward(o2), RT_OK, "%s: %s", what, rt_last_error());
    snprintf(msg, sizeof msg, "%s: d logits", what);
    close_rel(S, rt_grad(S, x1), rt_grad(S, x2), rel_grad, msg);

    /* Gradient through logps alone (entropy unused: its grad is undefined). */
    rt_tensor *x3 = rt_detach(S, base), *x4 = rt_detach(S, base);
    rt_set_requires_grad(x3, 1);
    rt_set_requires_grad(x4, 1);
    rt_tensor *unused;
    rt_tensor *o3 = rt_sum(S, rt_mul(S, w, rt_token_logps(S, x3, ids, temp, NULL)), RT_DIM_ALL, 0);
    rt_tensor *o4 = rt_sum(S, rt_mul(S, w, composed(S, x4, ids, temp, &unused)), RT_DIM_ALL, 0);
    cr_assert_eq(rt_backward(o3), RT_OK, "%s: %s", what, rt_last_error());
    cr_assert_eq(rt_backward(o4), RT_OK, "%s: %s", what, rt_last_error());
    snprintf(msg, sizeof msg, "%s: d logits (logps only)", what);
    close_rel(S, rt_grad(S, x3), rt_grad(S, x4), rel_grad, msg);
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* ------------------------------------------------------------------------ */

Test(token_logps, matches_composed_ops)
{
    rt_scope *S = rt_scope_new();
    rt_gen *g = rt_gen_new(7);
    /* V = 53 = 3*16 + 5: the 16-wide loop, the 8-wide loop and the scalar tail
     * of the float32 vector path; V = 1000: longer rows. */
    const int64_t shapes[][3] = {{2, 3, 53}, {3, 4, 1000}, {1, 1, 1}, {2, 2, 8}};
    const double temps[] = {0.7, 1.0, 1.3, 2.5};
    for (int k = 0; k < 4; k++) {
        int64_t ls[3] = {shapes[k][0], shapes[k][1], shapes[k][2]};
        rt_tensor *x = rt_mul_scalar(S, rt_randn(S, ls, 3, g, RT_OPTS(RT_F64)), 3.0);
        rt_tensor *ids = rt_randint(S, 0, ls[2], ls, 2, g, RT_OPTS(RT_I64));
        char what[96];
        snprintf(what, sizeof what, "f64 [%lld,%lld,%lld] T=%.1f", (long long)ls[0], (long long)ls[1],
                 (long long)ls[2], temps[k]);
        compare(S, x, ids, temps[k], 1e-12, 1e-12, g, what);
        snprintf(what, sizeof what, "f32 [%lld,%lld,%lld] T=%.1f", (long long)ls[0], (long long)ls[1],
                 (long long)ls[2], temps[k]);
        compare(S, rt_to_dtype(S, x, RT_F32), ids, temps[k], 1e-6, 1e-6, g, what);
    }

    /* Non-contiguous logits: [B,V,T] transposed to [B,T,V]. */
    int64_t tshape[3] = {2, 37, 5};
    rt_tensor *xt = rt_transpose(S, rt_randn(S, tshape, 3, g, RT_OPTS(RT_F64)), 1, 2);
    int64_t ishape[2] = {2, 5};
    rt_tensor *tid = rt_randint(S, 0, 37, ishape, 2, g, RT_OPTS(RT_I64));
    compare(S, xt, tid, 0.9, 1e-12, 1e-12, g, "f64 transposed");

    /* 1 vs 2 threads: rows are independent, so the results are identical. */
    int64_t bshape[3] = {4, 16, 300};
    rt_tensor *xb = rt_randn(S, bshape, 3, g, RT_OPTS(RT_F32));
    rt_tensor *ib = rt_randint(S, 0, 300, bshape, 2, g, RT_OPTS(RT_I64));
    int threads = rt_get_num_threads();
    rt_tensor *h1, *h2;
    cr_assert_eq(rt_set_num_threads(1), RT_OK);
    rt_tensor *l1 = rt_token_logps(S, xb, ib, 0.8, &h1);
    cr_assert_eq(rt_set_num_threads(2), RT_OK);
    rt_tensor *l2 = rt_token_logps(S, xb, ib, 0.8, &h2);
    rt_set_num_threads(threads);
    cr_assert(rt_equal(l1, l2) == 1 && rt_equal(h1, h2) == 1, "1 and 2 threads differ");

    /* Grad mode off: plain tensors; ids of any leading shape ([N] with [N,V]). */
    int64_t fshape[2] = {6, 11};
    rt_tensor *xf = rt_randn(S, fshape, 2, g, RT_OPTS(RT_F64));
    rt_set_requires_grad(xf, 1);
    rt_tensor *idf = rt_randint(S, 0, 11, fshape, 1, g, RT_OPTS(RT_I64));
    int mode = rt_no_grad_begin();
    rt_tensor *hf, *lf = rt_token_logps(S, xf, idf, 1.0, &hf), *hc, *lc = composed(S, xf, idf, 1.0, &hc);
    rt_grad_mode_restore(mode);
    cr_assert(lf && hf, "%s", rt_last_error());
    cr_assert_eq(rt_requires_grad(lf), 0);
    cr_assert_eq(rt_requires_grad(hf), 0);
    cr_assert_eq(rt_ndim(lf), 1);
    close_rel(S, lf, lc, 1e-12, "2-D logits, no grad: logps");
    close_rel(S, hf, hc, 1e-12, "2-D logits, no grad: entropy");

    rt_gen_free(g);
    rt_scope_free(S);
}

Test(token_logps, finite_differences_and_edges)
{
    rt_scope *S = rt_scope_new();

    /* Central differences on a tiny float64 case, objective
     * sum(w * logps) + sum(u * H), temperature 1.5. */
    enum { B = 1, T = 2, V = 4 };
    double x[B * T * V] = {0.3, -1.2, 2.0, 0.5, 1.1, 0.0, -0.7, 0.9};
    const int64_t id[B * T] = {2, 1};
    const double w[B * T] = {0.8, -1.3}, u[B * T] = {0.6, 0.25}, temp = 1.5;
    const int64_t xs[3] = {B, T, V}, is[2] = {B, T};
    rt_tensor *ids = rt_from_data(S, id, is, 2, RT_OPTS(RT_I64));
    rt_tensor *wt = rt_from_data(S, w, is, 2, RT_OPTS(RT_F64)), *ut = rt_from_data(S, u, is, 2, RT_OPTS(RT_F64));
    rt_tensor *xt = rt_from_data(S, x, xs, 3, RT_OPTS(RT_F64));
    rt_set_requires_grad(xt, 1);
    rt_tensor *H, *lp = rt_token_logps(S, xt, ids, temp, &H);
    rt_tensor *obj = rt_add(S, rt_sum(S, rt_mul(S, wt, lp), RT_DIM_ALL, 0), rt_sum(S, rt_mul(S, ut, H), RT_DIM_ALL, 0));
    cr_assert_eq(rt_backward(obj), RT_OK, "%s", rt_last_error());
    double grad[B * T * V];
    cr_assert_eq(rt_to_data(rt_grad(S, xt), RT_F64, grad, sizeof grad), RT_OK);
    for (int k = 0; k < B * T * V; k++) {
        double f[2], keep = x[k];
        for (int s = 0; s < 2; s++) {
            x[k] = keep + (s ? -1e-6 : 1e-6);
            rt_tensor *xp = rt_from_data(S, x, xs, 3, RT_OPTS(RT_F64));
            rt_tensor *hp, *lpp = rt_token_logps(S, xp, ids, temp, &hp);
            f[s] = rt_item(rt_add(S, rt_sum(S, rt_mul(S, wt, lpp), RT_DIM_ALL, 0),
                                  rt_sum(S, rt_mul(S, ut, hp), RT_DIM_ALL, 0)));
        }
        x[k] = keep;
        double fd = (f[0] - f[1]) / 2e-6;
        cr_assert(fabs(fd - grad[k]) <= 1e-7, "d obj / d x[%d]: analytic %.10f, finite difference %.10f", k,
                  grad[k], fd);
    }
    /* Worked value, row 0: z = x / 1.5, logp = z[2] - logsumexp(z). */
    double z[4], m = -INFINITY, s = 0, sz = 0;
    for (int j = 0; j < 4; j++) z[j] = x[j] / temp, m = z[j] > m ? z[j] : m;
    for (int j = 0; j < 4; j++) s += exp(z[j] - m);
    double lse = m + log(s);
    for (int j = 0; j < 4; j++) sz += exp(z[j] - lse) * z[j];
    double lpv[2], hv[2];
    cr_assert_eq(rt_to_data(lp, RT_F64, lpv, sizeof lpv), RT_OK);
    cr_assert_eq(rt_to_data(H, RT_F64, hv, sizeof hv), RT_OK);
    cr_assert(fabs(lpv[0] - (z[2] - lse)) <= 1e-13, "logp[0] %.15f vs %.15f", lpv[0], z[2] - lse);
    cr_assert(fabs(hv[0] - (lse - sz)) <= 1e-13, "H[0] %.15f vs %.15f", hv[0], lse - sz);

    /* -inf logits (a masked vocabulary): p = 0, gradient 0 there, finite
     * entropy equal to that of the row without them (float32 and float64;
     * the float32 row is long enough for the vector path). */
    for (int d = 0; d < 2; d++) {
        rt_dtype dt = d ? RT_F32 : RT_F64;
        enum { VI = 40 };
        double row[VI], rowc[VI - 8];
        int nc = 0;
        for (int j = 0; j < VI; j++) {
            row[j] = (j % 5 == 3) ? -INFINITY : sin(0.7 * j) * 2.0;
            if (j % 5 != 3) rowc[nc++] = row[j];
        }
        int64_t rs[2] = {1, VI}, rcs[2] = {1, nc}, one = 1;
        int64_t idv = 4, idc = 3; /* column 4 of the row is column 3 once column 3 is removed */
        rt_tensor *xr = rt_to_dtype(S, rt_from_data(S, row, rs, 2, RT_OPTS(RT_F64)), dt);
        rt_tensor *xc = rt_to_dtype(S, rt_from_data(S, rowc, rcs, 2, RT_OPTS(RT_F64)), dt);
        rt_set_requires_grad(xr, 1);
        rt_tensor *hr, *lr = rt_token_logps(S, xr, rt_from_data(S, &idv, &one, 1, RT_OPTS(RT_I64)), 1.2, &hr);
        rt_tensor *hc, *lc = rt_token_logps(S, xc, rt_from_data(S, &idc, &one, 1, RT_OPTS(RT_I64)), 1.2, &hc);
        cr_assert(lr && lc, "%s", rt_last_error());
        double tol = d ? 2e-6 : 1e-12;
        cr_assert(fabs(rt_item(lr) - rt_item(lc)) <= tol, "masked row logp %.9f vs %.9f", rt_item(lr), rt_item(lc));
        cr_assert(isfinite(rt_item(hr)) && fabs(rt_item(hr) - rt_item(hc)) <= tol, "masked row entropy %.9f vs %.9f",
                  rt_item(hr), rt_item(hc));
        cr_assert_eq(rt_backward(rt_add(S, lr, hr)), RT_OK, "%s", rt_last_error());
        double gr[VI];
        cr_assert_eq(rt_to_data(rt_grad(S, xr), RT_F64, gr, sizeof gr), RT_OK);
        for (int j = 0; j < VI; j++) {
            cr_assert(isfinite(gr[j]), "gradient at %d is not finite", j);
            if (j % 5 == 3) cr_assert(gr[j] == 0.0, "gradient at masked column %d is %g", j, gr[j]);
        }
    }

    /* No rows: empty outputs of the leading shape. */
    int64_t es[3] = {0, 3, 7}, eis[2] = {0, 3};
    rt_tensor *he, *le = rt_token_logps(S, rt_zeros(S, es, 3, RT_OPTS(RT_F32)), rt_zeros(S, eis, 2, RT_OPTS(RT_I64)),
                                        1.0, &he);
    cr_assert(le && he, "%s", rt_last_error());
    cr_assert_eq(rt_numel(le), 0);
    cr_assert_eq(rt_size(le, 1), 3);

    rt_scope_free(S);
}

/* The memory contract, measured as peak-RSS growth: [N,V] float32 logits of
 * 32 MiB. The forward must not grow the peak by more than 1/8 of them, the
 * backward by at most 1.25x (the gradient), and the composed log_softmax (the
 * control, which does allocate [N,V]) must grow it by at least 0.9x, which
 * shows the measurement sees such an allocation. */
Test(token_logps, memory_forward_allocates_no_vocab_tensor)
{
    rt_scope *S = rt_scope_new();
    rt_gen *g = rt_gen_new(3);
    cr_assert_eq(rt_set_num_threads(2), RT_OK);
    int64_t ws[2] = {4, 64};
    rt_tensor *wx = rt_randn(S, ws, 2, g, RT_OPTS(RT_F32));
    rt_set_requires_grad(wx, 1);
    rt_tensor *wl = rt_token_logps(S, wx, rt_zeros(S, ws, 1, RT_OPTS(RT_I64)), 1.0, NULL);
    cr_assert_eq(rt_backward(rt_sum(S, wl, RT_DIM_ALL, 0)), RT_OK, "%s", rt_last_error()); /* warm the thread pool */

    const int64_t N = 32, V = 262144;
    const long size_kb = (long)(N * V * 4 / 1024);
    int64_t xs[2] = {N, V};
    rt_tensor *x = rt_randn(S, xs, 2, g, RT_OPTS(RT_F32));
    rt_tensor *ids = rt_randint(S, 0, V, xs, 1, g, RT_OPTS(RT_I64));
    rt_set_requires_grad(x, 1);
    long r0 = peak_rss_kb();
    rt_tensor *H, *lp = rt_token_logps(S, x, ids, 0.9, &H);
    cr_assert(lp && H, "%s", rt_last_error());
    rt_tensor *obj = rt_add(S, rt_sum(S, lp, RT_DIM_ALL, 0), rt_sum(S, H, RT_DIM_ALL, 0));
    long r1 = peak_rss_kb();
    cr_assert(r1 - r0 <= size_kb / 8, "forward grew the peak RSS by %ld KiB (logits: %ld KiB)", r1 - r0, size_kb);
    cr_assert_eq(rt_backward(obj), RT_OK, "%s", rt_last_error());
    long r2 = peak_rss_kb();
    cr_assert(r2 - r1 <= size_kb + size_kb / 4, "backward grew the peak RSS by %ld KiB (logits: %ld KiB)", r2 - r1,
              size_kb);
    cr_assert(rt_has_grad(x) == 1);

    int mode = rt_no_grad_begin();
    rt_tensor *ls = rt_log_softmax(S, x, -1);
    rt_grad_mode_restore(mode);
    cr_assert(ls != NULL, "%s", rt_last_error());
    long r3 = peak_rss_kb();
    cr_assert(r3 - r2 >= size_kb - size_kb / 10,
              "control: log_softmax grew the peak RSS by only %ld KiB (logits: %ld KiB); the measurement is blind",
              r3 - r2, size_kb);
    rt_gen_free(g);
    rt_scope_free(S);
}

Test(token_logps, errors)
{
    rt_scope *S = rt_scope_new();
    int64_t xs[3] = {2, 3, 5}, is[2] = {2, 3}, bad_is[2] = {2, 4};
    rt_tensor *x = rt_zeros(S, xs, 3, RT_OPTS(RT_F32));
    int64_t idv[6] = {0, 1, 2, 3, 4, 0};
    rt_tensor *ids = rt_from_data(S, idv, is, 2, RT_OPTS(RT_I64));
    rt_tensor *H = (rt_tensor *)1;

    cr_assert(rt_token_logps(S, x, ids, 1.0, &H) != NULL, "%s", rt_last_error());

    /* ids out of range: the message names the position and the vocabulary. */
    const int64_t bad_vals[2] = {5, -1};
    for (int k = 0; k < 2; k++) {
        idv[4] = bad_vals[k];
        rt_tensor *bi = rt_from_data(S, idv, is, 2, RT_OPTS(RT_I64));
        H = (rt_tensor *)1;
        cr_assert_null(rt_token_logps(S, x, bi, 1.0, &H));
        cr_assert_null(H, "entropy must be NULL on failure");
        char want[64];
        snprintf(want, sizeof want, "ids[1, 1] = %lld is outside the vocabulary [0, 5)", (long long)bad_vals[k]);
        cr_assert(strstr(rt_last_error(), want) != NULL, "message: %s", rt_last_error());
        cr_assert(strncmp(rt_last_error(), "rt_token_logps: ", 16) == 0, "message: %s", rt_last_error());
        cr_assert_null(strchr(rt_last_error(), '\n'));
    }
    idv[4] = 4;

    /* Shape mismatch. */
    rt_tensor *wrong = rt_zeros(S, bad_is, 2, RT_OPTS(RT_I64));
    cr_assert_null(rt_token_logps(S, x, wrong, 1.0, NULL));
    cr_assert(strstr(rt_last_error(), "logits [2, 3, 5] and ids [2, 4] do not match") != NULL, "message: %s",
              rt_last_error());
    cr_assert_null(rt_token_logps(S, x, rt_zeros(S, xs, 3, RT_OPTS(RT_I64)), 1.0, NULL));
    cr_assert(strstr(rt_last_error(), "do not match") != NULL, "message: %s", rt_last_error());
    int64_t zs[3] = {2, 3, 0};
    cr_assert_null(rt_token_logps(S, rt_zeros(S, zs, 3, RT_OPTS(RT_F32)), ids, 1.0, NULL));
    cr_assert(strstr(rt_last_error(), "empty vocabulary") != NULL, "message: %s", rt_last_error());

    /* Temperature <= 0 or not finite. */
    const double temps[4] = {0.0, -1.0, NAN, INFINITY};
    for (int k = 0; k < 4; k++) {
        rt_clear_error();
        cr_assert_null(rt_token_logps(S, x, ids, temps[k], NULL));
        cr_assert(strstr(rt_last_error(), "temperature") != NULL && strstr(rt_last_error(), "must be finite and > 0"),
                  "message: %s", rt_last_error());
    }

    /* dtypes. */
    cr_assert_null(rt_token_logps(S, rt_zeros(S, xs, 3, RT_OPTS(RT_I64)), ids, 1.0, NULL));
    cr_assert(strstr(rt_last_error(), "expected float32 or float64") != NULL, "message: %s", rt_last_error());
    cr_assert_null(rt_token_logps(S, x, rt_zeros(S, is, 2, RT_OPTS(RT_F32)), 1.0, NULL));
    cr_assert(strstr(rt_last_error(), "expected int64") != NULL, "message: %s", rt_last_error());

    /* NULL inputs: NULL out, the earlier message kept, or a fresh one. */
    rt_set_error("earlier failure");
    H = (rt_tensor *)1;
    cr_assert_null(rt_token_logps(S, NULL, ids, 1.0, &H));
    cr_assert_null(H);
    cr_assert_str_eq(rt_last_error(), "earlier failure");
    rt_clear_error();
    cr_assert_null(rt_token_logps(S, x, NULL, 1.0, NULL));
    cr_assert(strstr(rt_last_error(), "ids is NULL") != NULL, "message: %s", rt_last_error());

    /* Caller-owned results (S == NULL). */
    rt_tensor *Hc, *lc = rt_token_logps(NULL, x, ids, 1.0, &Hc);
    cr_assert(lc && Hc, "%s", rt_last_error());
    cr_assert(fabs(rt_item(rt_sum(S, lc, RT_DIM_ALL, 0)) - 6.0 * -log(5.0)) <= 1e-5, "uniform logits");
    cr_assert(fabs(rt_item(rt_mean(S, Hc, RT_DIM_ALL, 0)) - log(5.0)) <= 1e-6, "uniform entropy");
    rt_free(lc);
    rt_free(Hc);
    rt_scope_free(S);
}
