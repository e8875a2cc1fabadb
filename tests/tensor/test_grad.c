/*
 * test_grad.c -- autograd of the tensor binding. One helper, check_grad(),
 * compares the analytic gradient (rt_backward + rt_grad) of a scalar function
 * of one float64 input with central finite differences (eps 1e-6, tolerance
 * 1e-6 relative); it is run over every differentiable op the losses use.
 * A second part covers the autograd API itself: requires_grad, backward,
 * backward_with, grad/has_grad, zero_grad, detach, no-grad regions and
 * clip_grad_norm.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tcheck.h"
#include "tensor.h"

#define FD_EPS 1e-6
#define FD_TOL 1e-6
#define FD_MAX 64

/* A scalar function of x; ctx carries the constants it closes over. */
typedef rt_tensor *(*scalar_fn)(rt_scope *S, const rt_tensor *x, const void *ctx);

/* sum(y * w) with fixed weights w_i = sin(0.7 (i + 1)) + 0.1, so that each
 * element of y reaches the scalar with a different weight. */
static rt_tensor *weighted_sum(rt_scope *S, const rt_tensor *y)
{
    if (!y)
        return NULL;
    int64_t shape[RT_MAX_DIMS];
    int nd = rt_shape(y, shape, RT_MAX_DIMS);
    if (nd < 0)
        return NULL;
    rt_tensor *i = rt_arange(S, 1, (double)rt_numel(y) + 1, 1, RT_OPTS(RT_F64));
    rt_tensor *w = rt_add_scalar(S, rt_sin(S, rt_mul_scalar(S, i, 0.7)), 0.1);
    return rt_sum(S, rt_mul(S, y, rt_reshape(S, w, shape, nd)), RT_DIM_ALL, 0);
}

/* Check d f(x) / dx at x0 (float64, given shape) against central differences. */
static void check_grad(const char *name, scalar_fn f, const void *ctx, const double *x0,
                       const int64_t *shape, int ndim)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    cr_assert(n <= FD_MAX, "%s: input too large for check_grad", name);
    rt_scope *S = rt_scope_new();
    rt_tensor *x = tc_f64(S, x0, shape, ndim);
    cr_assert_eq(rt_set_requires_grad(x, 1), RT_OK);
    rt_tensor *y = f(S, x, ctx);
    cr_assert(y != NULL, "%s: forward failed: %s", name, rt_last_error());
    cr_assert_eq(rt_numel(y), 1, "%s: not a scalar", name);
    cr_assert(isfinite(rt_item(y)), "%s: forward value %g", name, rt_item(y));
    cr_assert_eq(rt_backward(y), RT_OK, "%s: backward failed: %s", name, rt_last_error());
    cr_assert(rt_has_grad(x) == 1, "%s: no gradient reached x", name);
    double analytic[FD_MAX];
    tc_read_f64(rt_grad(S, x), analytic, n, name);

    int prev = rt_no_grad_begin();
    rt_scope *E = rt_scope_new();
    double xp[FD_MAX];
    memcpy(xp, x0, (size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        xp[i] = x0[i] + FD_EPS;
        double fp = rt_item(f(E, tc_f64(E, xp, shape, ndim), ctx));
        xp[i] = x0[i] - FD_EPS;
        double fm = rt_item(f(E, tc_f64(E, xp, shape, ndim), ctx));
        xp[i] = x0[i];
        rt_scope_reset(E);
        double numeric = (fp - fm) / (2 * FD_EPS);
        cr_expect(fabs(analytic[i] - numeric) <= FD_TOL * (1.0 + fabs(numeric)),
                  "%s: d/dx[%lld] analytic %.12g vs finite difference %.12g", name, (long long)i,
                  analytic[i], numeric);
    }
    rt_scope_free(E);
    rt_grad_mode_restore(prev);
    rt_scope_free(S);
}

/* ---- the functions under test ---- */

typedef rt_tensor *(*unary_op)(rt_scope *, const rt_tensor *);
typedef rt_tensor *(*binary_op)(rt_scope *, const rt_tensor *, const rt_tensor *);

static rt_tensor *softplus_1_20(rt_scope *S, const rt_tensor *a) { return rt_softplus(S, a, 1, 20); }
static rt_tensor *softplus_2_20(rt_scope *S, const rt_tensor *a) { return rt_softplus(S, a, 2, 20); }
static rt_tensor *gelu_erf(rt_scope *S, const rt_tensor *a) { return rt_gelu(S, a, 0); }
static rt_tensor *gelu_tanh(rt_scope *S, const rt_tensor *a) { return rt_gelu(S, a, 1); }
static rt_tensor *pow_2_5(rt_scope *S, const rt_tensor *a) { return rt_pow_scalar(S, a, 2.5); }
static rt_tensor *clamp_lo(rt_scope *S, const rt_tensor *a) { return rt_clamp(S, a, 0.35, INFINITY); }

struct unary_case {
    const char *name;
    unary_op op;
    int positive_only; /* needs x > 0 */
};

static rt_tensor *f_unary(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const struct unary_case *u = ctx;
    return weighted_sum(S, u->op(S, x));
}

struct binary_case {
    const char *name;
    binary_op op;
    const rt_tensor *c; /* the constant operand */
    int x_right;        /* op(c, x) instead of op(x, c) */
};

static rt_tensor *f_binary(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const struct binary_case *b = ctx;
    return weighted_sum(S, b->x_right ? b->op(S, b->c, x) : b->op(S, x, b->c));
}

enum red_kind { R_SUM, R_MEAN, R_LSE, R_VAR, R_STD, R_NORM, R_PROD, R_SOFTMAX, R_LOG_SOFTMAX };
struct red_case {
    const char *name;
    enum red_kind kind;
    int64_t dim;
    int keepdim;
    int64_t correction;
};

static rt_tensor *f_reduce(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const struct red_case *r = ctx;
    switch (r->kind) {
    case R_SUM: return weighted_sum(S, rt_sum(S, x, r->dim, r->keepdim));
    case R_MEAN: return weighted_sum(S, rt_mean(S, x, r->dim, r->keepdim));
    case R_LSE: return weighted_sum(S, rt_logsumexp(S, x, r->dim, r->keepdim));
    case R_VAR: return weighted_sum(S, rt_var(S, x, r->dim, r->correction, r->keepdim));
    case R_STD: return weighted_sum(S, rt_std(S, x, r->dim, r->correction, r->keepdim));
    case R_NORM: return weighted_sum(S, rt_norm(S, x, r->dim, r->keepdim));
    case R_PROD: return weighted_sum(S, rt_prod(S, x, r->dim, r->keepdim));
    case R_SOFTMAX: return weighted_sum(S, rt_softmax(S, x, r->dim));
    case R_LOG_SOFTMAX: return weighted_sum(S, rt_log_softmax(S, x, r->dim));
    }
    return NULL;
}

/* Three fixed tensors; `which` says which slot x takes. */
struct tri_ctx {
    const rt_tensor *t[3];
    int which;
};

static void tri_args(const struct tri_ctx *c, const rt_tensor *x, const rt_tensor *out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = i == c->which ? x : c->t[i];
}

static rt_tensor *f_linear(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const rt_tensor *a[3];
    tri_args(ctx, x, a);
    return weighted_sum(S, rt_linear(S, a[0], a[1], a[2]));
}

static rt_tensor *f_matmul(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const rt_tensor *a[3];
    tri_args(ctx, x, a);
    return weighted_sum(S, rt_matmul(S, a[0], a[1]));
}

static rt_tensor *f_layer_norm(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const rt_tensor *a[3];
    tri_args(ctx, x, a);
    return weighted_sum(S, rt_layer_norm(S, a[0], 1, a[1], a[2], 1e-5));
}

static rt_tensor *f_rms_norm(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const rt_tensor *a[3];
    tri_args(ctx, x, a);
    return weighted_sum(S, rt_rms_norm(S, a[0], a[1], 1e-5));
}

static rt_tensor *f_attention(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const rt_tensor *a[3];
    tri_args(ctx, x, a);
    return weighted_sum(S, rt_causal_attention(S, a[0], a[1], a[2], 0.0));
}

static rt_tensor *f_gather(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    return weighted_sum(S, rt_gather(S, x, 1, ctx));
}

/* where(cond, x^2, x + nan) and where(cond, x, log(x + shift)): `nan` is NaN
 * and `shift` is -10 exactly where cond is true, so the unselected side is NaN
 * at every unselected position; value and gradient must stay finite. */
struct where_ctx {
    const rt_tensor *cond, *nan, *shift;
};

static rt_tensor *f_where_nan(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const struct where_ctx *w = ctx;
    rt_tensor *a = weighted_sum(S, rt_where(S, w->cond, rt_square(S, x), rt_add(S, x, w->nan)));
    rt_tensor *b = weighted_sum(S, rt_where(S, w->cond, x, rt_log(S, rt_add(S, x, w->shift))));
    return rt_add(S, a, b);
}

struct ce_ctx {
    const rt_tensor *targets;
    rt_reduction red;
    double smoothing;
};

static rt_tensor *f_cross_entropy(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    const struct ce_ctx *c = ctx;
    return rt_cross_entropy(S, x, c->targets, c->red, -100, c->smoothing);
}

static rt_tensor *f_mse(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    return rt_mse(S, x, ctx, RT_MEAN);
}

static rt_tensor *f_mse_none(rt_scope *S, const rt_tensor *x, const void *ctx)
{
    return weighted_sum(S, rt_mse(S, ctx, x, RT_NONE));
}

static void check_finite_differences(void)
{
    rt_scope *S = rt_scope_new();
    const int64_t s23[2] = {2, 3}, s3[1] = {3}, s32[2] = {3, 2}, s22[2] = {2, 2};
    const double XP[6] = {0.3, 0.7, 1.1, 1.9, 0.5, 1.4};   /* positive */
    const double XM[6] = {-1.3, -0.2, 0.4, 2.1, -2.5, 0.9}; /* mixed signs */

    /* --- unary ops --- */
    static const struct unary_case unary[] = {
        {"exp", rt_exp, 0},           {"log", rt_log, 1},
        {"log1p", rt_log1p, 1},       {"sqrt", rt_sqrt, 1},
        {"rsqrt", rt_rsqrt, 1},       {"tanh", rt_tanh, 0},
        {"sigmoid", rt_sigmoid, 0},   {"softplus(1,20)", softplus_1_20, 0},
        {"softplus(2,20)", softplus_2_20, 0}, {"gelu erf", gelu_erf, 0},
        {"gelu tanh", gelu_tanh, 0},  {"silu", rt_silu, 0},
        {"logsigmoid", rt_logsigmoid, 0}, {"square", rt_square, 0},
        {"neg", rt_neg, 0},           {"expm1", rt_expm1, 0},
        {"sin", rt_sin, 0},           {"abs", rt_abs, 0},
        {"relu", rt_relu, 0},         {"pow_scalar 2.5", pow_2_5, 1},
        {"clamp(0.35, inf)", clamp_lo, 1},
    };
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++)
        check_grad(unary[i].name, f_unary, &unary[i], unary[i].positive_only ? XP : XM, s23, 2);

    /* --- binary ops, x on either side, with broadcasting --- */
    rt_tensor *c3 = tc_f64(S, (const double[3]){0.8, 1.7, 2.3}, s3, 1);
    rt_tensor *c23 = tc_f64(S, (const double[6]){1.2, -0.4, 0.9, 2.2, 0.6, -1.1}, s23, 2);
    const struct binary_case binary[] = {
        {"add", rt_add, c3, 0},      {"add (x right)", rt_add, c3, 1},
        {"sub", rt_sub, c3, 0},      {"sub (x right)", rt_sub, c3, 1},
        {"mul", rt_mul, c3, 0},      {"mul (x right)", rt_mul, c3, 1},
        {"div", rt_div, c3, 0},      {"div (x right)", rt_div, c3, 1},
        {"pow", rt_pow, c3, 0},      {"pow (x right)", rt_pow, c3, 1},
        {"minimum", rt_minimum, c3, 0}, {"maximum", rt_maximum, c3, 1},
    };
    for (size_t i = 0; i < sizeof binary / sizeof binary[0]; i++)
        check_grad(binary[i].name, f_binary, &binary[i], XP, s23, 2);
    /* x [3] broadcast against c [2, 3]: the gradient sums over the broadcast rows */
    const struct binary_case bcast[] = {{"add broadcast x", rt_add, c23, 0},
                                        {"mul broadcast x", rt_mul, c23, 1},
                                        {"div broadcast x", rt_div, c23, 1}};
    for (size_t i = 0; i < sizeof bcast / sizeof bcast[0]; i++)
        check_grad(bcast[i].name, f_binary, &bcast[i], XP, s3, 1);

    /* --- reductions and softmax --- */
    static const struct red_case red[] = {
        {"sum dim 1", R_SUM, 1, 0, 0},           {"sum all", R_SUM, RT_DIM_ALL, 0, 0},
        {"mean dim 0 keepdim", R_MEAN, 0, 1, 0}, {"mean all", R_MEAN, RT_DIM_ALL, 0, 0},
        {"logsumexp dim 1", R_LSE, 1, 0, 0},     {"logsumexp all", R_LSE, RT_DIM_ALL, 0, 0},
        {"var dim 1 corr 1", R_VAR, 1, 0, 1},    {"var all corr 0", R_VAR, RT_DIM_ALL, 0, 0},
        {"std dim 1 corr 1", R_STD, 1, 1, 1},    {"std all corr 0", R_STD, RT_DIM_ALL, 0, 0},
        {"norm dim 1", R_NORM, 1, 0, 0},         {"prod dim 1", R_PROD, 1, 0, 0},
        {"softmax dim 1", R_SOFTMAX, 1, 0, 0},   {"softmax dim 0", R_SOFTMAX, 0, 0, 0},
        {"log_softmax dim 1", R_LOG_SOFTMAX, 1, 0, 0},
        {"log_softmax dim 0", R_LOG_SOFTMAX, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof red / sizeof red[0]; i++)
        check_grad(red[i].name, f_reduce, &red[i], XM, s23, 2);

    /* --- matmul / linear --- */
    const double M32[6] = {0.5, -1.0, 1.5, 0.25, -0.75, 2.0};
    const double M22[4] = {1.1, -0.3, 0.7, 0.2};
    rt_tensor *m32 = tc_f64(S, M32, s32, 2), *m22 = tc_f64(S, M22, s22, 2);
    struct tri_ctx mm_x_left = {{NULL, m32, NULL}, 0}, mm_x_right = {{m22, NULL, NULL}, 1};
    check_grad("matmul x @ c", f_matmul, &mm_x_left, XM, s23, 2);
    check_grad("matmul c @ x", f_matmul, &mm_x_right, XM, s23, 2);
    rt_tensor *xin = tc_f64(S, XM, s23, 2);                                  /* [2, 3] */
    rt_tensor *w = tc_f64(S, (const double[6]){0.3, -0.2, 0.5, 1.0, 0.1, -0.7}, s23, 2);
    rt_tensor *b = tc_f64(S, (const double[2]){0.05, -0.4}, (const int64_t[1]){2}, 1);
    struct tri_ctx lx = {{NULL, w, b}, 0}, lw = {{xin, NULL, b}, 1}, lb = {{xin, w, NULL}, 2};
    struct tri_ctx lnb = {{NULL, w, NULL}, 0};
    check_grad("linear d/dx", f_linear, &lx, XM, s23, 2);
    check_grad("linear d/dw", f_linear, &lw, XP, s23, 2);
    check_grad("linear d/db", f_linear, &lb, (const double[2]){0.2, -0.1}, (const int64_t[1]){2}, 1);
    check_grad("linear no bias d/dx", f_linear, &lnb, XM, s23, 2);

    /* --- layer_norm / rms_norm (eps 1e-5) --- */
    rt_tensor *gw = tc_f64(S, (const double[3]){1.2, 0.8, -0.5}, s3, 1);
    rt_tensor *gb = tc_f64(S, (const double[3]){0.1, -0.2, 0.3}, s3, 1);
    struct tri_ctx lnx = {{NULL, gw, gb}, 0}, lnw = {{xin, NULL, gb}, 1};
    struct tri_ctx lnbias = {{xin, gw, NULL}, 2}, lnplain = {{NULL, NULL, NULL}, 0};
    check_grad("layer_norm d/dx", f_layer_norm, &lnx, XM, s23, 2);
    check_grad("layer_norm d/dweight", f_layer_norm, &lnw, (const double[3]){1.2, 0.8, -0.5}, s3, 1);
    check_grad("layer_norm d/dbias", f_layer_norm, &lnbias, (const double[3]){0.1, -0.2, 0.3}, s3, 1);
    check_grad("layer_norm plain d/dx", f_layer_norm, &lnplain, XM, s23, 2);
    struct tri_ctx rmx = {{NULL, gw, NULL}, 0}, rmw = {{xin, NULL, NULL}, 1};
    check_grad("rms_norm d/dx", f_rms_norm, &rmx, XM, s23, 2);
    check_grad("rms_norm d/dweight", f_rms_norm, &rmw, (const double[3]){1.2, 0.8, -0.5}, s3, 1);
    check_grad("rms_norm plain d/dx", f_rms_norm, &lnplain, XM, s23, 2);

    /* --- gather (repeated indices accumulate) --- */
    rt_tensor *gi = tc_i64(S, (const int64_t[6]){2, 0, 2, 1, 1, 0}, s23, 2);
    check_grad("gather dim 1", f_gather, gi, XM, s23, 2);

    /* --- where with a NaN unselected side --- */
    const uint8_t cond6[6] = {1, 0, 1, 0, 1, 1};
    const double nan6[6] = {NAN, 0, NAN, 0, NAN, NAN};
    const double shift6[6] = {-10, 0, -10, 0, -10, -10};
    struct where_ctx wc = {tc_bool(S, cond6, s23, 2), tc_f64(S, nan6, s23, 2),
                           tc_f64(S, shift6, s23, 2)};
    check_grad("where (NaN unselected)", f_where_nan, &wc, XP, s23, 2);
    {
        /* d/dx sum(where(cond, 2x, x + nan)) is 2 where selected, 1 elsewhere. */
        rt_scope *T = rt_scope_new();
        rt_tensor *x = tc_f64(T, XP, s23, 2);
        rt_set_requires_grad(x, 1);
        rt_tensor *y = rt_sum(
            T, rt_where(T, wc.cond, rt_mul_scalar(T, x, 2), rt_add(T, x, wc.nan)), RT_DIM_ALL, 0);
        cr_expect(isfinite(rt_item(y)), "where let a NaN through: %g", rt_item(y));
        cr_assert_eq(rt_backward(y), RT_OK, "%s", rt_last_error());
        tc_expect_f64(rt_grad(T, x), (const double[6]){2, 1, 2, 1, 2, 2}, 6, 0.0,
                      "where gradient");
        rt_scope_free(T);
    }

    /* --- cross_entropy (mean with ignore_index + label smoothing; sum) / mse --- */
    const double L34[12] = {1.0, 2.0, 0.5, -1.0, 0.0, -0.5, 3.0, 1.0, 2.0, 2.0, -2.0, 0.25};
    const int64_t s34[2] = {3, 4};
    struct ce_ctx ce_a = {tc_i64(S, (const int64_t[3]){0, -100, 2}, s3, 1), RT_MEAN, 0.1};
    struct ce_ctx ce_b = {tc_i64(S, (const int64_t[3]){3, 1, 2}, s3, 1), RT_SUM, 0.0};
    struct ce_ctx ce_c = {tc_i64(S, (const int64_t[3]){3, 1, -100}, s3, 1), RT_MEAN, 0.0};
    check_grad("cross_entropy mean ignore smoothing", f_cross_entropy, &ce_a, L34, s34, 2);
    check_grad("cross_entropy sum", f_cross_entropy, &ce_b, L34, s34, 2);
    check_grad("cross_entropy mean ignore", f_cross_entropy, &ce_c, L34, s34, 2);
    rt_tensor *tgt = tc_f64(S, (const double[6]){0.1, 0.2, -0.3, 1.0, 0.0, 0.5}, s23, 2);
    check_grad("mse mean", f_mse, tgt, XM, s23, 2);
    check_grad("mse none (x second)", f_mse_none, tgt, XM, s23, 2);

    /* --- causal attention: d/dq, d/dk, d/dv on [1, 2, 3, 2] --- */
    rt_gen *g = rt_gen_new(11);
    const int64_t sa[4] = {1, 2, 3, 2};
    rt_tensor *q = rt_randn(S, sa, 4, g, RT_OPTS(RT_F64));
    rt_tensor *k = rt_randn(S, sa, 4, g, RT_OPTS(RT_F64));
    rt_tensor *v = rt_randn(S, sa, 4, g, RT_OPTS(RT_F64));
    double qd[12], kd[12], vd[12];
    tc_read_f64(q, qd, 12, "q");
    tc_read_f64(k, kd, 12, "k");
    tc_read_f64(v, vd, 12, "v");
    struct tri_ctx aq = {{NULL, k, v}, 0}, ak = {{q, NULL, v}, 1}, av = {{q, k, NULL}, 2};
    check_grad("causal_attention d/dq", f_attention, &aq, qd, sa, 4);
    check_grad("causal_attention d/dk", f_attention, &ak, kd, sa, 4);
    check_grad("causal_attention d/dv", f_attention, &av, vd, sa, 4);
    rt_gen_free(g);
    rt_scope_free(S);
}

static void check_api(void)
{
    rt_scope *S = rt_scope_new();
    const int64_t s3[1] = {3};
    rt_tensor *x = tc_f64(S, (const double[3]){1, -2, 3}, s3, 1);

    /* requires_grad */
    cr_expect_eq(rt_requires_grad(x), 0);
    cr_expect(rt_requires_grad(NULL) < 0);
    rt_clear_error();
    cr_assert_eq(rt_set_requires_grad(x, 1), RT_OK);
    cr_expect_eq(rt_requires_grad(x), 1);
    cr_expect_eq(rt_has_grad(x), 0);
    cr_expect(rt_grad(S, x) == NULL, "a gradient before any backward");
    cr_expect_eq(rt_has_grad(x), 0);

    /* backward of sum(x^2): 2x; a second backward accumulates */
    rt_tensor *y = rt_sum(S, rt_mul(S, x, x), RT_DIM_ALL, 0);
    cr_expect_eq(rt_requires_grad(y), 1, "a result of a requires-grad input");
    cr_assert_eq(rt_backward(y), RT_OK, "%s", rt_last_error());
    cr_expect_eq(rt_has_grad(x), 1);
    tc_expect_f64(rt_grad(S, x), (const double[3]){2, -4, 6}, 3, 0.0, "grad of sum(x^2)");
    cr_assert_eq(rt_backward(rt_sum(S, rt_mul(S, x, x), RT_DIM_ALL, 0)), RT_OK);
    tc_expect_f64(rt_grad(S, x), (const double[3]){4, -8, 12}, 3, 0.0, "accumulated grad");
    /* zero_grad zeroes in place; the gradient still exists */
    cr_assert_eq(rt_zero_grad(x), RT_OK);
    cr_expect_eq(rt_has_grad(x), 1);
    tc_expect_f64(rt_grad(S, x), (const double[3]){0, 0, 0}, 3, 0.0, "zeroed grad");
    /* backward from a non-scalar needs backward_with */
    rt_tensor *y3 = rt_mul_scalar(S, x, 3);
    rt_clear_error();
    cr_expect(rt_backward(y3) < 0, "backward of a non-scalar without a gradient");
    tc_expect_clean_error("backward non-scalar");
    rt_clear_error();
    rt_tensor *up = tc_f64(S, (const double[3]){1, 2, 3}, s3, 1);
    cr_assert_eq(rt_backward_with(rt_mul_scalar(S, x, 3), up), RT_OK, "%s", rt_last_error());
    tc_expect_f64(rt_grad(S, x), (const double[3]){3, 6, 9}, 3, 0.0, "backward_with");

    /* detach: same values, no grad, cut from the graph */
    rt_tensor *d = rt_detach(S, x);
    cr_expect_eq(rt_requires_grad(d), 0);
    cr_expect(rt_equal(d, x) == 1);
    rt_tensor *dy = rt_sum(S, rt_mul(S, d, x), RT_DIM_ALL, 0); /* d/dx = d = x */
    cr_assert_eq(rt_zero_grad(x), RT_OK);
    cr_assert_eq(rt_backward(dy), RT_OK);
    tc_expect_f64(rt_grad(S, x), (const double[3]){1, -2, 3}, 3, 0.0, "grad through detach");

    /* no-grad region: ops produce tensors without grad; modes nest */
    cr_expect_eq(rt_grad_enabled(), 1);
    int prev = rt_no_grad_begin();
    cr_expect_eq(prev, 1);
    cr_expect_eq(rt_grad_enabled(), 0);
    rt_tensor *ng = rt_mul_scalar(S, x, 2);
    cr_expect_eq(rt_requires_grad(ng), 0, "op inside no-grad requires grad");
    int inner = rt_no_grad_begin();
    cr_expect_eq(inner, 0);
    rt_grad_mode_restore(inner);
    cr_expect_eq(rt_grad_enabled(), 0, "restoring the inner mode re-enabled grad");
    /* parameters may be updated in place under no-grad */
    cr_expect_eq(rt_add_(x, up, 1.0), RT_OK, "%s", rt_last_error());
    rt_grad_mode_restore(prev);
    cr_expect_eq(rt_grad_enabled(), 1);
    cr_expect_eq(rt_requires_grad(x), 1, "leaf lost requires_grad after in-place update");
    tc_expect_f64(x, (const double[3]){2, 0, 6}, 3, 0.0, "in-place update under no-grad");
    cr_expect_eq(rt_requires_grad(rt_mul_scalar(S, x, 2)), 1);

    /* clip_grad_norm: grads (3, 0) and (4): total norm 5 */
    rt_tensor *p1 = tc_f64(S, (const double[2]){0.5, 0.5}, (const int64_t[1]){2}, 1);
    rt_tensor *p2 = tc_f64(S, (const double[1]){0.5}, (const int64_t[1]){1}, 1);
    rt_set_requires_grad(p1, 1);
    rt_set_requires_grad(p2, 1);
    rt_tensor *c1 = tc_f64(S, (const double[2]){3, 0}, (const int64_t[1]){2}, 1);
    rt_tensor *c2 = tc_f64(S, (const double[1]){4}, (const int64_t[1]){1}, 1);
    rt_tensor *ps[2] = {p1, p2};
#define SET_GRADS(ca, cb)                                                                      \
    do {                                                                                       \
        rt_zero_grad(p1);                                                                      \
        rt_zero_grad(p2);                                                                      \
        rt_tensor *l_ = rt_add(S, rt_sum(S, rt_mul(S, p1, ca), RT_DIM_ALL, 0),                 \
                               rt_sum(S, rt_mul(S, p2, cb), RT_DIM_ALL, 0));                   \
        cr_assert_eq(rt_backward(l_), RT_OK, "%s", rt_last_error());                           \
    } while (0)
    SET_GRADS(c1, c2);
    double total = -1;
    cr_assert_eq(rt_clip_grad_norm(ps, 2, 1.0, &total), RT_OK, "%s", rt_last_error());
    cr_expect(fabs(total - 5.0) < 1e-12, "total norm %g", total);
    const double sc = 1.0 / (5.0 + 1e-6);
    tc_expect_f64(rt_grad(S, p1), (const double[2]){3 * sc, 0}, 2, 1e-15, "clipped p1 grad");
    tc_expect_f64(rt_grad(S, p2), (const double[1]){4 * sc}, 1, 1e-15, "clipped p2 grad");
    /* below the limit: untouched */
    SET_GRADS(c1, c2);
    total = -1;
    cr_assert_eq(rt_clip_grad_norm(ps, 2, 10.0, &total), RT_OK);
    cr_expect(fabs(total - 5.0) < 1e-12);
    tc_expect_f64(rt_grad(S, p1), (const double[2]){3, 0}, 2, 0.0, "unclipped p1 grad");
    /* max_norm <= 0 only measures */
    total = -1;
    cr_assert_eq(rt_clip_grad_norm(ps, 2, 0.0, &total), RT_OK);
    cr_expect(fabs(total - 5.0) < 1e-12);
    tc_expect_f64(rt_grad(S, p2), (const double[1]){4}, 1, 0.0, "measured-only p2 grad");
    /* a non-finite norm leaves every gradient untouched */
    rt_tensor *cinf = tc_f64(S, (const double[2]){INFINITY, 1}, (const int64_t[1]){2}, 1);
    SET_GRADS(cinf, c2);
    total = 0;
    rt_clip_grad_norm(ps, 2, 1.0, &total);
    cr_expect(!isfinite(total), "total norm %g should be non-finite", total);
    tc_expect_f64(rt_grad(S, p1), (const double[2]){INFINITY, 1}, 2, 0.0, "non-finite p1 grad");
    tc_expect_f64(rt_grad(S, p2), (const double[1]){4}, 1, 0.0, "p2 grad left alone");
#undef SET_GRADS
    rt_clear_error();
    rt_scope_free(S);
}

/* One test process for the whole file: libtorch costs ~0.6 s per process. */
Test(grad, finite_differences_and_api)
{
    check_finite_differences();
    check_api();
}
