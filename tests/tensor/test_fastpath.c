/*
 * test_fastpath.c -- the small-network fast paths of tensor.h against the
 * unfused compositions they replace, in float64:
 *   rt_mlp               values and every gradient (weights, biases, input)
 *                        against rt_linear + rt_relu per member, for shared
 *                        and per-member inputs, one member, a ReLU output,
 *                        detached weights, ReLU'(0) = 0, no-grad, float32,
 *                        and its shape/dtype errors;
 *   rt_squashed_gaussian values and gradients against the composition of
 *                        losses/sac.c for every log_std mode x correction x
 *                        (no) scale, clamped elements included, |u| = 30;
 *   rt_optim_new_fused   Adam (L2), AdamW and amsgrad against libtorch's
 *                        optimizers step by step, parameters that are views
 *                        of one stacked leaf, released gradients, exported
 *                        state that continues bit-exactly, refusals;
 *   rt_lerp_many_        against rt_lerp_ on both of lerp's branches and
 *                        on a non-contiguous pair;
 *   rt_unbind, rt_chunk  the views and their gradients against rt_select /
 *                        rt_narrow, and their refusals.
 * Three Test()s: each pays libtorch's start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tcheck.h"
#include "tensor.h"

#define HALF_LOG_2PI 0.91893853320467274178
#define LOG2 0.69314718055994530942

/* ---- helpers ------------------------------------------------------------ */

/* A caller-owned float64 tensor ~ N(0, sd^2) from g. */
static rt_tensor *randn64(rt_gen *g, const int64_t *shape, int ndim, double sd)
{
    rt_tensor *t = rt_randn(NULL, shape, ndim, g, RT_OPTS(RT_F64));
    cr_assert(t != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_mul_scalar_(t, sd), RT_OK);
    return t;
}

/* A tensor of dtype dt ~ N(0, sd^2) from g, owned by S. */
static rt_tensor *randn_in(rt_scope *S, rt_gen *g, const int64_t *shape, int ndim, double sd, rt_dtype dt)
{
    rt_tensor *t = rt_randn(S, shape, ndim, g, RT_OPTS(dt));
    cr_assert(t != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_mul_scalar_(t, sd), RT_OK);
    return t;
}

/* A caller-owned copy of t that requires grad (the composition's leaf). */
static rt_tensor *leaf_copy(const rt_tensor *t, int grad)
{
    rt_tensor *c = rt_detach(NULL, rt_clone(NULL, t));
    cr_assert(c != NULL, "%s", rt_last_error());
    if (grad) cr_assert_eq(rt_set_requires_grad(c, 1), RT_OK);
    return c;
}

/* max |a - b| / (1 + max |b|), asserting both exist and have one shape. */
static double rel_diff(const rt_tensor *a, const rt_tensor *b, const char *what)
{
    cr_assert(a != NULL && b != NULL, "%s: missing (%s)", what, rt_last_error());
    int64_t sa[RT_MAX_DIMS], sb[RT_MAX_DIMS];
    int na = rt_shape(a, sa, RT_MAX_DIMS), nb = rt_shape(b, sb, RT_MAX_DIMS);
    cr_assert(na == nb && memcmp(sa, sb, (size_t)na * sizeof *sa) == 0, "%s: shapes differ", what);
    rt_scope *S = rt_scope_new();
    double scale = rt_item(rt_max(S, rt_abs(S, rt_to_dtype(S, b, RT_F64)), RT_DIM_ALL, 0, NULL));
    double d = rt_max_abs_diff(a, b);
    rt_scope_free(S);
    return d / (1.0 + scale);
}

static void expect_close(const rt_tensor *a, const rt_tensor *b, double tol, const char *what)
{
    double d = rel_diff(a, b, what);
    cr_expect(d <= tol, "%s: relative difference %.3g > %.3g", what, d, tol);
}

/* The gradient of leaf t (asserting it exists), owned by S. */
static rt_tensor *grad_of(rt_scope *S, const rt_tensor *t, const char *what)
{
    cr_assert(rt_has_grad(t) == 1, "%s has no gradient", what);
    return rt_grad(S, t);
}

/* ---- rt_mlp ---------------------------------------------------------------- */

#define L 3
static const int64_t W_IN = 4, W_H1 = 6, W_H2 = 7, W_OUT = 3, B = 5;

/* The composition for member e (e < 0: 2-D weights): linear, relu, ... */
static rt_tensor *mlp_composed(rt_scope *S, const rt_tensor *x, rt_tensor *const *w, rt_tensor *const *b, int e,
                               int relu_out)
{
    rt_tensor *h = (rt_tensor *)x;
    for (int l = 0; l < L; l++) {
        rt_tensor *wl = e < 0 ? w[l] : rt_select(S, w[l], 0, e), *bl = e < 0 ? b[l] : rt_select(S, b[l], 0, e);
        h = rt_linear(S, h, wl, bl);
        if (l + 1 < L || relu_out) h = rt_relu(S, h);
    }
    return h;
}

/* One configuration: E members (0 = 2-D weights), x [B,in] or [E,B,in],
 * with or without the output ReLU and gradients for x / the weights. */
static void mlp_case(rt_gen *g, int E, int x_per_member, int relu_out, int x_grad, int w_grad, rt_dtype dt,
                     const char *name)
{
    rt_scope *S = rt_scope_new();
    const int64_t widths[L + 1] = {W_IN, W_H1, W_H2, W_OUT};
    rt_tensor *w[L], *b[L], *wc[L], *bc[L];
    for (int l = 0; l < L; l++) {
        int64_t sw[3] = {E, widths[l + 1], widths[l]}, sb[2] = {E, widths[l + 1]};
        w[l] = randn64(g, E ? sw : sw + 1, E ? 3 : 2, 0.5);
        b[l] = randn64(g, E ? sb : sb + 1, E ? 2 : 1, 0.5);
        if (l == 1) { /* unit 0 of layer 1 gets z = 0 exactly: ReLU'(0) must be 0 on both sides */
            rt_tensor *row = E ? rt_select(S, rt_select(S, w[l], 0, 0), 0, 0) : rt_select(S, w[l], 0, 0);
            rt_tensor *bias = E ? rt_select(S, rt_select(S, b[l], 0, 0), 0, 0) : rt_select(S, b[l], 0, 0);
            cr_assert_eq(rt_zero_(row), RT_OK);
            cr_assert_eq(rt_zero_(bias), RT_OK);
        }
        if (dt != RT_F64) {
            rt_tensor *w2 = rt_to_dtype(NULL, w[l], dt), *b2 = rt_to_dtype(NULL, b[l], dt);
            rt_free(w[l]);
            rt_free(b[l]);
            w[l] = w2;
            b[l] = b2;
        }
        wc[l] = leaf_copy(w[l], w_grad);
        bc[l] = leaf_copy(b[l], w_grad);
        if (w_grad) {
            cr_assert_eq(rt_set_requires_grad(w[l], 1), RT_OK);
            cr_assert_eq(rt_set_requires_grad(b[l], 1), RT_OK);
        }
    }
    int64_t sx[3] = {E, B, W_IN};
    rt_tensor *x = rt_keep(randn_in(S, g, x_per_member ? sx : sx + 1, x_per_member ? 3 : 2, 1.0, dt));
    rt_tensor *xc = leaf_copy(x, x_grad);
    if (x_grad) cr_assert_eq(rt_set_requires_grad(x, 1), RT_OK);

    rt_tensor *y = rt_mlp(S, x, w, b, L, relu_out);
    cr_assert(y != NULL, "%s: rt_mlp: %s", name, rt_last_error());
    rt_tensor *yc;
    if (E) {
        rt_tensor *members[8];
        for (int e = 0; e < E; e++)
            members[e] = mlp_composed(S, x_per_member ? rt_select(S, xc, 0, e) : xc, wc, bc, e, relu_out);
        yc = rt_stack(S, members, E, 0);
    } else {
        yc = mlp_composed(S, xc, wc, bc, -1, relu_out);
    }
    double tol = dt == RT_F64 ? 1e-13 : 1e-5;
    char what[128];
    snprintf(what, sizeof what, "%s: output", name);
    expect_close(y, yc, tol, what);
    cr_expect_eq(rt_requires_grad(y), x_grad || w_grad, "%s: requires_grad of the output", name);

    if (x_grad || w_grad) {
        int64_t sg[3] = {E, B, W_OUT};
        rt_tensor *G = randn_in(S, g, E ? sg : sg + 1, E ? 3 : 2, 1.0, dt);
        cr_assert_eq(rt_backward(rt_sum(S, rt_mul(S, y, G), RT_DIM_ALL, 0)), RT_OK, "%s: %s", name, rt_last_error());
        cr_assert_eq(rt_backward(rt_sum(S, rt_mul(S, yc, G), RT_DIM_ALL, 0)), RT_OK, "%s: %s", name, rt_last_error());
        for (int l = 0; l < L && w_grad; l++) {
            snprintf(what, sizeof what, "%s: d weight %d", name, l);
            expect_close(grad_of(S, w[l], what), grad_of(S, wc[l], what), tol, what);
            snprintf(what, sizeof what, "%s: d bias %d", name, l);
            expect_close(grad_of(S, b[l], what), grad_of(S, bc[l], what), tol, what);
        }
        if (!w_grad)
            for (int l = 0; l < L; l++) cr_expect_eq(rt_has_grad(w[l]), 0, "%s: a detached weight got a gradient", name);
        if (x_grad) {
            snprintf(what, sizeof what, "%s: d x", name);
            expect_close(grad_of(S, x, what), grad_of(S, xc, what), tol, what);
        }
    }
    /* under no-grad: the same values, no graph */
    int gm = rt_no_grad_begin();
    rt_tensor *yn = rt_mlp(S, x, w, b, L, relu_out);
    rt_grad_mode_restore(gm);
    snprintf(what, sizeof what, "%s: no-grad output", name);
    expect_close(yn, yc, tol, what);
    cr_expect_eq(rt_requires_grad(yn), 0, "%s: a no-grad output requires grad", name);

    for (int l = 0; l < L; l++) {
        rt_free(w[l]);
        rt_free(b[l]);
        rt_free(wc[l]);
        rt_free(bc[l]);
    }
    rt_free(x);
    rt_free(xc);
    rt_scope_free(S);
}

Test(fastpath, mlp_unbind_chunk)
{
    rt_gen *g = rt_gen_new(7);
    mlp_case(g, 2, 0, 0, 1, 1, RT_F64, "ensemble of 2, shared x");
    mlp_case(g, 3, 1, 1, 1, 1, RT_F64, "ensemble of 3, x per member, ReLU output");
    mlp_case(g, 0, 0, 0, 0, 1, RT_F64, "one MLP, x without grad");
    mlp_case(g, 0, 0, 1, 1, 1, RT_F64, "one MLP, ReLU output");
    mlp_case(g, 2, 0, 0, 1, 0, RT_F64, "detached weights (the actor's path through the critics)");
    mlp_case(g, 2, 0, 0, 1, 1, RT_F32, "float32 ensemble");

    /* errors: a NULL input keeps its message; shapes and dtypes are named */
    rt_scope *S = rt_scope_new();
    int64_t s1[2] = {3, 4}, s2[2] = {5, 3}, sb[1] = {3}, sx[2] = {2, 4};
    rt_tensor *w[2] = {rt_zeros(S, s1, 2, RT_OPTS(RT_F64)), rt_zeros(S, s2, 2, RT_OPTS(RT_F64))};
    rt_tensor *b[2] = {rt_zeros(S, sb, 1, RT_OPTS(RT_F64)), rt_zeros(S, sb, 1, RT_OPTS(RT_F64))};
    rt_tensor *x = rt_zeros(S, sx, 2, RT_OPTS(RT_F64));
    rt_clear_error();
    cr_expect_null(rt_mlp(S, x, w, b, 2, 0), "layer 1's bias [3] does not fit its weight [5, 3]");
    tc_expect_clean_error("rt_mlp bias shape");
    cr_expect(strstr(rt_last_error(), "layer 1") && strstr(rt_last_error(), "[5, 3]"), "%s", rt_last_error());
    rt_clear_error();
    rt_tensor *x32 = rt_zeros(S, sx, 2, RT_OPTS(RT_F32));
    cr_expect_null(rt_mlp(S, x32, w, b, 1, 0));
    cr_expect(strstr(rt_last_error(), "dtype") != NULL, "%s", rt_last_error());
    rt_clear_error();
    cr_expect_null(rt_mlp(S, NULL, w, b, 1, 0));
    cr_expect(strstr(rt_last_error(), "x is NULL") != NULL, "%s", rt_last_error());
    rt_clear_error();
    cr_expect_null(rt_mlp(S, x, w, b, 0, 0));
    cr_expect(strstr(rt_last_error(), "n_layers 0") != NULL, "%s", rt_last_error());

    /* rt_unbind and rt_chunk: the same views and gradients as rt_select /
     * rt_narrow, in one op each */
    int64_t s3[3] = {2, 3, 4};
    rt_tensor *a = randn64(g, s3, 3, 1.0), *ac = leaf_copy(a, 1);
    cr_assert_eq(rt_set_requires_grad(a, 1), RT_OK);
    rt_tensor *parts[2], *halves[2];
    cr_assert_eq(rt_unbind(S, a, 0, 2, parts), RT_OK, "%s", rt_last_error());
    cr_assert_eq(rt_chunk(S, parts[1], 2, -1, halves), RT_OK, "%s", rt_last_error());
    rt_tensor *parts_c[2] = {rt_select(S, ac, 0, 0), rt_select(S, ac, 0, 1)};
    rt_tensor *halves_c[2] = {rt_narrow(S, parts_c[1], 1, 0, 2), rt_narrow(S, parts_c[1], 1, 2, 2)};
    cr_expect(rt_equal(parts[0], parts_c[0]) && rt_equal(halves[0], halves_c[0]) && rt_equal(halves[1], halves_c[1]),
              "rt_unbind / rt_chunk views differ from rt_select / rt_narrow");
    int64_t sg0[2] = {3, 4}, sg1[2] = {3, 2};
    rt_tensor *g0 = randn_in(S, g, sg0, 2, 1.0, RT_F64), *g1 = randn_in(S, g, sg1, 2, 1.0, RT_F64);
    rt_tensor *g2 = randn_in(S, g, sg1, 2, 1.0, RT_F64);
    rt_tensor *l = rt_add(S, rt_add(S, rt_sum(S, rt_mul(S, parts[0], g0), RT_DIM_ALL, 0),
                                    rt_sum(S, rt_mul(S, halves[0], g1), RT_DIM_ALL, 0)),
                          rt_sum(S, rt_mul(S, halves[1], g2), RT_DIM_ALL, 0));
    rt_tensor *lc = rt_add(S, rt_add(S, rt_sum(S, rt_mul(S, parts_c[0], g0), RT_DIM_ALL, 0),
                                     rt_sum(S, rt_mul(S, halves_c[0], g1), RT_DIM_ALL, 0)),
                           rt_sum(S, rt_mul(S, halves_c[1], g2), RT_DIM_ALL, 0));
    cr_assert_eq(rt_backward(l), RT_OK, "%s", rt_last_error());
    cr_assert_eq(rt_backward(lc), RT_OK, "%s", rt_last_error());
    cr_expect(rt_equal(grad_of(S, a, "unbind/chunk"), grad_of(S, ac, "select/narrow")),
              "the gradients through rt_unbind / rt_chunk differ from rt_select / rt_narrow's");
    rt_clear_error();
    cr_expect_eq(rt_unbind(S, a, 1, 2, parts), RT_ERR);
    cr_expect(strstr(rt_last_error(), "n = 2") && strstr(rt_last_error(), "3 slices"), "%s", rt_last_error());
    cr_expect(parts[0] == NULL && parts[1] == NULL, "a refused rt_unbind leaves outputs");
    rt_clear_error();
    cr_expect_eq(rt_chunk(S, a, 2, 1, halves), RT_ERR);
    cr_expect(strstr(rt_last_error(), "equal parts") != NULL, "%s", rt_last_error());
    rt_free(a);
    rt_free(ac);
    rt_scope_free(S);
    rt_gen_free(g);
}

/* ---- rt_squashed_gaussian ---------------------------------------------------- */

/* losses/sac.c's composition (sac_log_std, sac_log1m_tanh_sq, the epsilon
 * form), on the same inputs. */
static rt_tensor *squash_composed(rt_scope *S, const rt_tensor *mean, const rt_tensor *raw, const rt_tensor *eps,
                                  const rt_tensor *scale, const rt_squash_opts *o, rt_tensor **logp)
{
    double lo = o->log_std_min, hi = o->log_std_max;
    rt_tensor *ls = o->log_std_mode == RT_LOG_STD_CLAMP ? rt_clamp(S, raw, lo, hi)
                    : o->log_std_mode == RT_LOG_STD_TANH
                        ? rt_add_scalar(S, rt_mul_scalar(S, rt_add_scalar(S, rt_tanh(S, raw), 1.0), 0.5 * (hi - lo)), lo)
                        : rt_alias(S, raw);
    rt_tensor *u = rt_add(S, mean, rt_mul(S, rt_exp(S, ls), eps));
    rt_tensor *y = rt_tanh(S, u);
    rt_tensor *gauss = rt_add_scalar(S, rt_neg(S, rt_add(S, rt_mul_scalar(S, rt_square(S, eps), 0.5), ls)), -HALF_LOG_2PI);
    rt_tensor *corr;
    if (!o->epsilon_correction) {
        corr = rt_mul_scalar(S, rt_add(S, rt_rsub_scalar(S, u, LOG2), rt_logsigmoid(S, rt_mul_scalar(S, u, 2.0))), 2.0);
        if (scale) corr = rt_add(S, corr, rt_log(S, scale));
    } else {
        rt_tensor *base = rt_rsub_scalar(S, rt_square(S, y), 1.0);
        if (scale) base = rt_mul(S, base, scale);
        corr = rt_log(S, rt_add_scalar(S, base, o->epsilon));
    }
    *logp = rt_sum(S, rt_sub(S, gauss, corr), 1, 0);
    return y;
}

static void squash_case(rt_gen *g, rt_log_std_mode mode, int eps_corr, int with_scale, double mean_offset)
{
    enum { SB = 4, SA = 3 };
    rt_scope *S = rt_scope_new();
    int64_t s2[2] = {SB, SA}, s1[1] = {SA};
    rt_squash_opts o = {mode, -1.0, 0.5, eps_corr, 1e-6};
    rt_tensor *mean = randn64(g, s2, 2, 0.7), *raw = randn64(g, s2, 2, 1.5), *eps = randn64(g, s2, 2, 1.0);
    cr_assert_eq(rt_add_(mean, rt_full(S, s2, 2, mean_offset, RT_OPTS(RT_F64)), 1.0), RT_OK);
    double sc[SA] = {2.0, 0.5, 1.0};
    rt_tensor *scale = with_scale ? tc_f64(S, sc, s1, 1) : NULL;
    rt_tensor *mc = leaf_copy(mean, 1), *rc = leaf_copy(raw, 1);
    cr_assert_eq(rt_set_requires_grad(mean, 1), RT_OK);
    cr_assert_eq(rt_set_requires_grad(raw, 1), RT_OK);
    char name[96], what[160];
    snprintf(name, sizeof name, "mode %d, %s correction, %s, mean + %g", (int)mode, eps_corr ? "epsilon" : "stable",
             with_scale ? "scale [2, 0.5, 1]" : "no scale", mean_offset);

    rt_tensor *logp = NULL, *logpc = NULL;
    rt_tensor *y = rt_squashed_gaussian(S, mean, raw, eps, scale, &o, &logp);
    cr_assert(y != NULL && logp != NULL, "%s: %s", name, rt_last_error());
    rt_tensor *yc = squash_composed(S, mc, rc, eps, scale, &o, &logpc);
    snprintf(what, sizeof what, "%s: y", name);
    expect_close(y, yc, 1e-14, what);
    snprintf(what, sizeof what, "%s: logp", name);
    expect_close(logp, logpc, 1e-12, what);
    double lp[SB];
    tc_read_f64(logp, lp, SB, "logp");
    for (int i = 0; i < SB; i++) cr_expect(isfinite(lp[i]), "%s: logp[%d] = %g", name, i, lp[i]);

    /* gradients of sum(y Gy) + sum(logp Gl) */
    rt_tensor *Gy = randn64(g, s2, 2, 1.0), *Gl = randn64(g, s2, 1, 1.0);
    rt_tensor *loss = rt_add(S, rt_sum(S, rt_mul(S, y, Gy), RT_DIM_ALL, 0), rt_sum(S, rt_mul(S, logp, Gl), RT_DIM_ALL, 0));
    rt_tensor *lossc = rt_add(S, rt_sum(S, rt_mul(S, yc, Gy), RT_DIM_ALL, 0), rt_sum(S, rt_mul(S, logpc, Gl), RT_DIM_ALL, 0));
    cr_assert_eq(rt_backward(loss), RT_OK, "%s: %s", name, rt_last_error());
    cr_assert_eq(rt_backward(lossc), RT_OK, "%s: %s", name, rt_last_error());
    /* 1e-9: where |y| is within ~1e-8 of 1, 1 - y^2 cancels and the two
     * tanh implementations' last bits show (the epsilon form divides by it) */
    snprintf(what, sizeof what, "%s: d mean", name);
    expect_close(grad_of(S, mean, what), grad_of(S, mc, what), 1e-9, what);
    snprintf(what, sizeof what, "%s: d log_std_raw", name);
    expect_close(grad_of(S, raw, what), grad_of(S, rc, what), 1e-9, what);
    rt_tensor *f[7] = {mean, raw, eps, mc, rc, Gy, Gl};
    for (int i = 0; i < 7; i++) rt_free(f[i]);
    rt_scope_free(S);
}

Test(fastpath, squashed_gaussian)
{
    rt_gen *g = rt_gen_new(11);
    const rt_log_std_mode modes[3] = {RT_LOG_STD_CLAMP, RT_LOG_STD_TANH, RT_LOG_STD_NONE};
    for (int m = 0; m < 3; m++)
        for (int c = 0; c < 2; c++)
            for (int s = 0; s < 2; s++) squash_case(g, modes[m], c, s, 0.0);
    squash_case(g, RT_LOG_STD_CLAMP, 0, 0, 30.0); /* |u| ~ 30: the stable form stays exact */
    squash_case(g, RT_LOG_STD_CLAMP, 0, 1, -30.0);

    /* a sample without any gradient: nothing requires grad */
    rt_scope *S = rt_scope_new();
    int64_t s2[2] = {2, 1}, s3[2] = {3, 1}, s1[1] = {2};
    rt_tensor *z = rt_zeros(S, s2, 2, RT_OPTS(RT_F64)), *logp = NULL;
    rt_squash_opts o = {RT_LOG_STD_CLAMP, -20.0, 2.0, 0, 0.0};
    rt_tensor *y = rt_squashed_gaussian(S, z, z, z, NULL, &o, &logp);
    cr_assert(y && logp, "%s", rt_last_error());
    cr_expect_eq(rt_requires_grad(y), 0);
    /* N(0, 1) at u = 0: log N = -log(2 pi)/2, the correction log(1 - 0) = 0 */
    double want[2] = {-HALF_LOG_2PI, -HALF_LOG_2PI};
    tc_expect_f64(logp, want, 2, 1e-15, "logp at u = 0");

    /* errors */
    rt_clear_error();
    cr_expect_null(rt_squashed_gaussian(S, z, rt_zeros(S, s3, 2, RT_OPTS(RT_F64)), z, NULL, &o, &logp));
    tc_expect_clean_error("rt_squashed_gaussian shapes");
    cr_expect(strstr(rt_last_error(), "[3, 1]") != NULL, "%s", rt_last_error());
    cr_expect(logp == NULL, "logp is not NULL after a failure");
    rt_clear_error();
    cr_expect_null(rt_squashed_gaussian(S, z, z, z, rt_ones(S, s1, 1, RT_OPTS(RT_F64)), &o, &logp));
    cr_expect(strstr(rt_last_error(), "scale") != NULL, "%s", rt_last_error());
    rt_clear_error();
    cr_expect_null(rt_squashed_gaussian(S, z, z, z, NULL, &o, NULL));
    cr_expect(strstr(rt_last_error(), "logp is NULL") != NULL, "%s", rt_last_error());
    rt_squash_opts bad = {RT_LOG_STD_CLAMP, 2.0, -20.0, 0, 0.0};
    rt_clear_error();
    cr_expect_null(rt_squashed_gaussian(S, z, z, z, NULL, &bad, &logp));
    cr_expect(strstr(rt_last_error(), "min < max") != NULL, "%s", rt_last_error());
    rt_scope_free(S);
    rt_gen_free(g);
}

/* ---- rt_optim_new_fused and rt_lerp_many_ ------------------------------------ */

/* loss = sum(0.5 c p^2 + d p) over every parameter (c, d fixed per element
 * position), backward. */
static void quad_backward(rt_scope *S, rt_tensor *const *p, int n)
{
    rt_tensor *loss = NULL;
    for (int i = 0; i < n; i++) {
        rt_tensor *c = rt_add_scalar(S, rt_mul_scalar(S, rt_ones_like(S, p[i]), 0.5 + i), 0.0);
        rt_tensor *d = rt_full_like(S, p[i], 0.3 - 0.2 * i);
        rt_tensor *li = rt_sum(S, rt_add(S, rt_mul(S, rt_mul_scalar(S, rt_mul(S, p[i], p[i]), 0.5), c), rt_mul(S, d, p[i])),
                               RT_DIM_ALL, 0);
        loss = loss ? rt_add(S, loss, li) : li;
    }
    cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
}

static void fused_vs_torch(rt_optim_kind kind, double wd, int amsgrad, const char *name)
{
    rt_scope *S = rt_scope_new();
    rt_gen *g = rt_gen_new(3);
    int64_t s1[1] = {3}, s2[2] = {2, 2};
    rt_tensor *a = randn64(g, s1, 1, 1.0), *b = randn64(g, s2, 2, 1.0);
    rt_tensor *pf[2] = {leaf_copy(a, 1), leaf_copy(b, 1)}, *pt[2] = {leaf_copy(a, 1), leaf_copy(b, 1)};
    const char *names[2] = {"a", "b"};
    rt_optim_opts o = rt_optim_defaults(kind);
    o.lr = 0.05;
    o.weight_decay = wd;
    o.amsgrad = amsgrad;
    rt_optim *of = rt_optim_new_fused(kind, pf, names, 2, &o), *ot = rt_optim_new(kind, pt, names, 2, &o);
    cr_assert(of && ot, "%s: %s", name, rt_last_error());
    cr_expect_eq(rt_optim_kind_of(of), kind);
    cr_expect_eq(rt_optim_param_count(of), 2);
    cr_expect_str_eq(rt_optim_param_name(of, 1), "b");
    char what[128];
    for (int t = 1; t <= 6; t++) {
        if (t == 4) { /* lr changes reach the fused steps */
            cr_assert_eq(rt_optim_set_lr(of, 0.02), RT_OK);
            cr_assert_eq(rt_optim_set_lr(ot, 0.02), RT_OK);
        }
        cr_assert_eq(rt_optim_zero_grad(of), RT_OK);
        cr_assert_eq(rt_optim_zero_grad(ot), RT_OK);
        cr_expect_eq(rt_has_grad(pf[0]), 0, "%s: zero_grad of the fused optimizer keeps a gradient", name);
        quad_backward(S, pf, 2);
        quad_backward(S, pt, 2);
        cr_assert_eq(rt_optim_step(of), RT_OK, "%s: %s", name, rt_last_error());
        cr_assert_eq(rt_optim_step(ot), RT_OK, "%s: %s", name, rt_last_error());
        for (int i = 0; i < 2; i++) {
            snprintf(what, sizeof what, "%s: %s after step %d", name, names[i], t);
            expect_close(pf[i], pt[i], 1e-14, what);
        }
        rt_scope_reset(S);
    }
    for (int i = 0; i < 2; i++) {
        rt_optim_state sf, st;
        cr_assert_eq(rt_optim_state_get(of, names[i], S, &sf), RT_OK, "%s", rt_last_error());
        cr_assert_eq(rt_optim_state_get(ot, names[i], S, &st), RT_OK, "%s", rt_last_error());
        cr_expect(sf.has_state && sf.step == 6 && st.step == 6, "%s: step %lld", name, (long long)sf.step);
        snprintf(what, sizeof what, "%s: exp_avg of %s", name, names[i]);
        expect_close(sf.exp_avg, st.exp_avg, 1e-14, what);
        snprintf(what, sizeof what, "%s: exp_avg_sq of %s", name, names[i]);
        expect_close(sf.exp_avg_sq, st.exp_avg_sq, 1e-14, what);
        if (amsgrad) {
            snprintf(what, sizeof what, "%s: max_exp_avg_sq of %s", name, names[i]);
            expect_close(sf.max_exp_avg_sq, st.max_exp_avg_sq, 1e-14, what);
        } else {
            cr_expect_null(sf.max_exp_avg_sq);
        }
    }
    rt_optim_free(of);
    rt_optim_free(ot);
    for (int i = 0; i < 2; i++) {
        rt_free(pf[i]);
        rt_free(pt[i]);
    }
    rt_free(a);
    rt_free(b);
    rt_gen_free(g);
    rt_scope_free(S);
}

Test(fastpath, optim_and_lerp)
{
    fused_vs_torch(RT_ADAM, 0.0, 0, "adam");
    fused_vs_torch(RT_ADAM, 0.1, 0, "adam, L2 0.1");
    fused_vs_torch(RT_ADAMW, 0.01, 0, "adamw 0.01");
    fused_vs_torch(RT_ADAM, 0.0, 1, "adam amsgrad");

    rt_scope *S = rt_scope_new();
    rt_gen *g = rt_gen_new(5);
    const char *names[2] = {"q1.w", "q2.w"};
    rt_optim_opts o = rt_optim_defaults(RT_ADAM);
    o.lr = 0.1;

    /* parameters that are views of one stacked leaf step exactly like two
     * separate leaves holding the same values */
    int64_t s2[2] = {2, 3};
    rt_tensor *stack = randn64(g, s2, 2, 1.0);
    rt_tensor *sep[2] = {leaf_copy(rt_select(S, stack, 0, 0), 1), leaf_copy(rt_select(S, stack, 0, 1), 1)};
    cr_assert_eq(rt_set_requires_grad(stack, 1), RT_OK);
    rt_tensor *views[2] = {rt_select(NULL, stack, 0, 0), rt_select(NULL, stack, 0, 1)};
    rt_optim *ov = rt_optim_new_fused(RT_ADAM, views, names, 2, &o), *os = rt_optim_new_fused(RT_ADAM, sep, names, 2, &o);
    cr_assert(ov && os, "%s", rt_last_error());
    for (int t = 0; t < 3; t++) {
        cr_assert_eq(rt_optim_zero_grad(ov), RT_OK);
        cr_assert_eq(rt_optim_zero_grad(os), RT_OK);
        cr_expect_eq(rt_has_grad(stack), 0, "zero_grad did not release the stacked leaf's gradient");
        rt_tensor *members[2] = {rt_select(S, stack, 0, 0), rt_select(S, stack, 0, 1)};
        quad_backward(S, members, 2);
        quad_backward(S, sep, 2);
        cr_assert_eq(rt_optim_step(ov), RT_OK, "%s", rt_last_error());
        cr_assert_eq(rt_optim_step(os), RT_OK, "%s", rt_last_error());
        rt_scope_reset(S);
    }
    for (int i = 0; i < 2; i++) {
        cr_expect(rt_equal(rt_select(S, stack, 0, i), sep[i]), "view %d and its separate twin differ", i);
        cr_expect(rt_equal(views[i], sep[i]), "view handle %d does not show the leaf's values", i);
    }

    /* exported state continues bit-exactly in a new optimizer */
    rt_tensor *twin[2] = {leaf_copy(sep[0], 1), leaf_copy(sep[1], 1)};
    rt_optim *o2 = rt_optim_new_fused(RT_ADAM, twin, names, 2, &o);
    cr_assert(o2 != NULL, "%s", rt_last_error());
    for (int i = 0; i < 2; i++) {
        rt_optim_state st;
        cr_assert_eq(rt_optim_state_get(os, names[i], S, &st), RT_OK, "%s", rt_last_error());
        cr_assert_eq(rt_optim_state_set(o2, names[i], &st), RT_OK, "%s", rt_last_error());
    }
    for (int t = 0; t < 2; t++) {
        cr_assert_eq(rt_optim_zero_grad(os), RT_OK);
        cr_assert_eq(rt_optim_zero_grad(o2), RT_OK);
        quad_backward(S, sep, 2);
        quad_backward(S, twin, 2);
        cr_assert_eq(rt_optim_step(os), RT_OK);
        cr_assert_eq(rt_optim_step(o2), RT_OK);
        rt_scope_reset(S);
    }
    for (int i = 0; i < 2; i++) cr_expect(rt_equal(sep[i], twin[i]), "resumed state diverged (param %d)", i);
    rt_optim_state cleared = {0};
    cr_expect_eq(rt_optim_state_set(o2, "q1.w", &cleared), RT_OK);
    rt_optim_state back;
    cr_assert_eq(rt_optim_state_get(o2, "q1.w", S, &back), RT_OK);
    cr_expect_eq(back.has_state, 0, "has_state 0 did not clear the state");
    cr_expect_eq(rt_optim_state_set(o2, "nope", &cleared), RT_ENOTFOUND);

    /* refusals: SGD, a non-leaf that is no view, overlapping views */
    rt_clear_error();
    cr_expect_null(rt_optim_new_fused(RT_SGD, sep, names, 2, &o));
    cr_expect(strstr(rt_last_error(), "only adam and adamw") != NULL, "%s", rt_last_error());
    rt_tensor *computed = rt_mul_scalar(S, sep[0], 2.0);
    rt_clear_error();
    cr_expect_null(rt_optim_new_fused(RT_ADAM, &computed, names, 1, &o));
    cr_expect(strstr(rt_last_error(), "neither a leaf nor a view") != NULL, "%s", rt_last_error());
    rt_tensor *same[2] = {views[0], views[0]};
    rt_clear_error();
    cr_expect_null(rt_optim_new_fused(RT_ADAM, same, names, 2, &o));
    cr_expect(strstr(rt_last_error(), "overlaps") != NULL, "%s", rt_last_error());

    /* rt_lerp_many_ against rt_lerp_, on both of lerp's branches (|w| < 0.5 and
     * not) and on a transposed (non-contiguous) pair */
    int64_t sm[2] = {3, 4};
    for (int k = 0; k < 2; k++) {
        double w = k ? 0.7 : 0.005;
        rt_tensor *d[3] = {randn64(g, sm, 2, 1.0), randn64(g, s2, 2, 1.0), NULL};
        rt_tensor *src[3] = {randn64(g, sm, 2, 1.0), randn64(g, s2, 2, 1.0), NULL};
        rt_tensor *base = randn64(g, sm, 2, 1.0);
        d[2] = rt_transpose(NULL, base, 0, 1);
        src[2] = rt_contiguous(NULL, rt_transpose(S, randn64(g, sm, 2, 1.0), 0, 1));
        rt_tensor *ref[3];
        for (int i = 0; i < 3; i++) {
            ref[i] = rt_clone(NULL, d[i]);
            cr_assert_eq(rt_lerp_(ref[i], src[i], w), RT_OK);
        }
        cr_assert_eq(rt_lerp_many_(d, src, 3, w), RT_OK, "%s", rt_last_error());
        for (int i = 0; i < 3; i++) {
            char what[64];
            snprintf(what, sizeof what, "lerp pair %d, w %g", i, w);
            expect_close(d[i], ref[i], 1e-15, what);
            rt_free(d[i]);
            rt_free(src[i]);
            rt_free(ref[i]);
        }
        rt_free(base);
    }
    rt_tensor *mis[1] = {rt_zeros(S, sm, 2, RT_OPTS(RT_F64))}, *mis_src[1] = {rt_zeros(S, s2, 2, RT_OPTS(RT_F64))};
    rt_clear_error();
    cr_expect_eq(rt_lerp_many_(mis, mis_src, 1, 0.5), RT_ERR);
    cr_expect(strstr(rt_last_error(), "pair 0") != NULL, "%s", rt_last_error());
    cr_expect_eq(rt_lerp_many_(NULL, NULL, 0, 0.5), RT_OK, "an empty list is no error");

    rt_optim_free(ov);
    rt_optim_free(os);
    rt_optim_free(o2);
    for (int i = 0; i < 2; i++) {
        rt_free(views[i]);
        rt_free(sep[i]);
        rt_free(twin[i]);
    }
    rt_free(stack);
    rt_gen_free(g);
    rt_scope_free(S);
}
