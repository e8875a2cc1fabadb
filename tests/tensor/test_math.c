/*
 * test_math.c -- elementwise math, comparisons/logic and reductions of the
 * tensor binding, in float64 against values computed here with libm (or by
 * hand, where the comment says so).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#include "tcheck.h"
#include "tensor.h"

#define N6 6
static const double X[N6] = {-3.0, -0.5, 0.0, 0.5, 2.0, 30.0};      /* mixed signs  */
static const double XP[N6] = {0.25, 0.5, 1.0, 1.5, 4.0, 9.0};       /* positive     */
static const int64_t SHAPE6[1] = {N6};

static double sigmoid_ref(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Apply f to X into out. */
static void map6(double (*f)(double), const double *x, double *out)
{
    for (int i = 0; i < N6; i++)
        out[i] = f(x[i]);
}

static double neg_ref(double x) { return -x; }
static double rsqrt_ref(double x) { return 1.0 / sqrt(x); }
static double square_ref(double x) { return x * x; }
static double sign_ref(double x) { return (double)((x > 0) - (x < 0)); }
static double relu_ref(double x) { return x > 0 ? x : 0.0; }
static double logsigmoid_ref(double x) { return x < 0 ? x - log1p(exp(x)) : -log1p(exp(-x)); }
static double silu_ref(double x) { return x * sigmoid_ref(x); }
static double gelu_erf_ref(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double gelu_tanh_ref(double x)
{
    const double k = sqrt(2.0 / 3.14159265358979323846);
    return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
}
static double softplus1_ref(double x) { return x > 20.0 ? x : log1p(exp(x)); }
/* beta = 2, threshold = 5: linear where beta*x > threshold. */
static double softplus2_ref(double x) { return 2.0 * x > 5.0 ? x : log1p(exp(2.0 * x)) / 2.0; }

static void check_elementwise_comparisons_logic(void)
{
    rt_scope *S = rt_scope_new();
    rt_tensor *x = tc_f64(S, X, SHAPE6, 1);
    rt_tensor *xp = tc_f64(S, XP, SHAPE6, 1);
    double want[N6];

    /* --- binary ops with broadcasting: a [2,3] op b [3] --- */
    const double A[6] = {1, 2, 3, 4, 5, 6}, B[3] = {0.5, -2, 4};
    const int64_t s23[2] = {2, 3}, s3[1] = {3};
    rt_tensor *a = tc_f64(S, A, s23, 2), *b = tc_f64(S, B, s3, 1);
    const double add_w[6] = {1.5, 0, 7, 4.5, 3, 10};
    const double sub_w[6] = {0.5, 4, -1, 3.5, 7, 2};
    const double mul_w[6] = {0.5, -4, 12, 2, -10, 24};
    const double div_w[6] = {2, -1, 0.75, 8, -2.5, 1.5};
    const double min_w[6] = {0.5, -2, 3, 0.5, -2, 4};
    const double max_w[6] = {1, 2, 4, 4, 5, 6};
    const double adds_w[6] = {2, -2, 11, 5, 1, 14}; /* a + 2*b */
    rt_tensor *ab = rt_add(S, a, b);
    tc_expect_shape(ab, s23, 2, "add broadcast");
    tc_expect_f64(ab, add_w, 6, 0.0, "add");
    tc_expect_f64(rt_sub(S, a, b), sub_w, 6, 0.0, "sub");
    tc_expect_f64(rt_mul(S, a, b), mul_w, 6, 0.0, "mul");
    tc_expect_f64(rt_div(S, a, b), div_w, 6, 0.0, "div");
    tc_expect_f64(rt_minimum(S, a, b), min_w, 6, 0.0, "minimum");
    tc_expect_f64(rt_maximum(S, a, b), max_w, 6, 0.0, "maximum");
    tc_expect_f64(rt_add_scaled(S, a, b, 2.0), adds_w, 6, 0.0, "add_scaled");
    const double pw_b[3] = {2, 0.5, -1};
    double pow_w[6];
    for (int i = 0; i < 6; i++)
        pow_w[i] = pow(A[i], pw_b[i % 3]);
    tc_expect_f64(rt_pow(S, a, tc_f64(S, pw_b, s3, 1)), pow_w, 6, 1e-15, "pow");

    /* --- scalar variants --- */
    const double adds1[6] = {3.5, 4.5, 5.5, 6.5, 7.5, 8.5};
    const double muls[6] = {-2, -4, -6, -8, -10, -12};
    const double divs[6] = {0.25, 0.5, 0.75, 1, 1.25, 1.5};
    const double rsub[6] = {0, -1, -2, -3, -4, -5};
    double pows[6];
    for (int i = 0; i < 6; i++)
        pows[i] = pow(A[i], 1.5);
    tc_expect_f64(rt_add_scalar(S, a, 2.5), adds1, 6, 0.0, "add_scalar");
    tc_expect_f64(rt_mul_scalar(S, a, -2), muls, 6, 0.0, "mul_scalar");
    tc_expect_f64(rt_div_scalar(S, a, 4), divs, 6, 0.0, "div_scalar");
    tc_expect_f64(rt_pow_scalar(S, a, 1.5), pows, 6, 1e-15, "pow_scalar");
    tc_expect_f64(rt_rsub_scalar(S, a, 1), rsub, 6, 0.0, "rsub_scalar (1 - a)");

    /* --- unary ops --- */
    map6(neg_ref, X, want);
    tc_expect_f64(rt_neg(S, x), want, N6, 0.0, "neg");
    map6(exp, X, want);
    tc_expect_f64(rt_exp(S, x), want, N6, 1e-15, "exp");
    map6(expm1, X, want);
    tc_expect_f64(rt_expm1(S, x), want, N6, 1e-15, "expm1");
    map6(log, XP, want);
    tc_expect_f64(rt_log(S, xp), want, N6, 1e-15, "log");
    map6(log1p, XP, want);
    tc_expect_f64(rt_log1p(S, xp), want, N6, 1e-15, "log1p");
    map6(sqrt, XP, want);
    tc_expect_f64(rt_sqrt(S, xp), want, N6, 1e-15, "sqrt");
    map6(rsqrt_ref, XP, want);
    tc_expect_f64(rt_rsqrt(S, xp), want, N6, 1e-15, "rsqrt");
    map6(square_ref, X, want);
    tc_expect_f64(rt_square(S, x), want, N6, 0.0, "square");
    map6(fabs, X, want);
    tc_expect_f64(rt_abs(S, x), want, N6, 0.0, "abs");
    map6(sign_ref, X, want);
    tc_expect_f64(rt_sign(S, x), want, N6, 0.0, "sign");
    map6(sin, X, want);
    tc_expect_f64(rt_sin(S, x), want, N6, 1e-15, "sin");
    map6(cos, X, want);
    tc_expect_f64(rt_cos(S, x), want, N6, 1e-15, "cos");
    map6(tanh, X, want);
    tc_expect_f64(rt_tanh(S, x), want, N6, 1e-15, "tanh");
    map6(sigmoid_ref, X, want);
    tc_expect_f64(rt_sigmoid(S, x), want, N6, 1e-15, "sigmoid");
    map6(relu_ref, X, want);
    tc_expect_f64(rt_relu(S, x), want, N6, 0.0, "relu");
    map6(logsigmoid_ref, X, want);
    tc_expect_f64(rt_logsigmoid(S, x), want, N6, 1e-14, "logsigmoid");
    map6(silu_ref, X, want);
    tc_expect_f64(rt_silu(S, x), want, N6, 1e-14, "silu");
    map6(gelu_erf_ref, X, want);
    tc_expect_f64(rt_gelu(S, x, 0), want, N6, 1e-14, "gelu (erf)");
    map6(gelu_tanh_ref, X, want);
    tc_expect_f64(rt_gelu(S, x, 1), want, N6, 1e-14, "gelu (tanh)");
    /* The two GELU modes really differ (by ~1e-4 near |x| = 2). */
    cr_expect(rt_max_abs_diff(rt_gelu(S, x, 0), rt_gelu(S, x, 1)) > 1e-5);
    map6(softplus1_ref, X, want);
    tc_expect_f64(rt_softplus(S, x, 1.0, 20.0), want, N6, 1e-14, "softplus(1, 20)");
    cr_expect(want[5] == 30.0); /* above the threshold softplus is exactly x */
    map6(softplus2_ref, X, want);
    tc_expect_f64(rt_softplus(S, x, 2.0, 5.0), want, N6, 1e-14, "softplus(2, 5)");

    /* Stability at the extremes: no inf, no NaN. */
    const double big[2] = {-800.0, 800.0};
    const int64_t s2[1] = {2};
    rt_tensor *xb = tc_f64(S, big, s2, 1);
    const double ls_big[2] = {-800.0, 0.0}, sp_big[2] = {0.0, 800.0}, sg_big[2] = {0.0, 1.0};
    tc_expect_f64(rt_logsigmoid(S, xb), ls_big, 2, 1e-15, "logsigmoid(+-800)");
    tc_expect_f64(rt_softplus(S, xb, 1.0, 20.0), sp_big, 2, 1e-15, "softplus(+-800)");
    tc_expect_f64(rt_sigmoid(S, xb), sg_big, 2, 1e-15, "sigmoid(+-800)");

    /* floor / round (half to even, like torch.round). */
    const double R[6] = {-2.5, -0.5, 0.5, 1.5, 2.5, 2.7};
    const double floor_w[6] = {-3, -1, 0, 1, 2, 2};
    const double round_w[6] = {-2, -0.0, 0, 2, 2, 3};
    rt_tensor *xr = tc_f64(S, R, SHAPE6, 1);
    tc_expect_f64(rt_floor(S, xr), floor_w, 6, 0.0, "floor");
    tc_expect_f64(rt_round(S, xr), round_w, 6, 0.0, "round");

    /* --- clamp: two-sided, and one-sided with an infinite bound --- */
    const double cl_both[6] = {-1, -0.5, 0, 0.5, 1, 1};
    const double cl_lo[6] = {-1, -0.5, 0, 0.5, 2, 30};
    const double cl_hi[6] = {-3, -0.5, 0, 0.5, 1, 1};
    tc_expect_f64(rt_clamp(S, x, -1, 1), cl_both, 6, 0.0, "clamp(-1, 1)");
    tc_expect_f64(rt_clamp(S, x, -1, INFINITY), cl_lo, 6, 0.0, "clamp(-1, inf)");
    tc_expect_f64(rt_clamp(S, x, -INFINITY, 1), cl_hi, 6, 0.0, "clamp(-inf, 1)");
    const double LO[6] = {-1, 0, -1, 0, 3, 0}, HI[6] = {0, 1, 0, 1, 4, 10};
    const double clt_w[6] = {-1, 0, 0, 0.5, 3, 10};
    tc_expect_f64(rt_clamp_t(S, x, tc_f64(S, LO, SHAPE6, 1), tc_f64(S, HI, SHAPE6, 1)), clt_w, 6,
                  0.0, "clamp_t");

    /* --- where / where_scalar / nan_to_num --- */
    const uint8_t C6[6] = {1, 0, 1, 0, 0, 1};
    rt_tensor *cond = tc_bool(S, C6, SHAPE6, 1);
    const double where_w[6] = {-3, 0.5, 0, 1.5, 4, 30};
    const double wheres_w[6] = {-3, 7, 0, 7, 7, 30};
    tc_expect_f64(rt_where(S, cond, x, xp), where_w, 6, 0.0, "where");
    tc_expect_f64(rt_where_scalar(S, cond, x, 7), wheres_w, 6, 0.0, "where_scalar");
    /* A NaN on the unselected side does not reach the result. */
    const double nanv[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    const double where_nan_w[6] = {-3, NAN, 0, NAN, NAN, 30};
    tc_expect_f64(rt_where(S, cond, x, tc_f64(S, nanv, SHAPE6, 1)), where_nan_w, 6, 0.0,
                  "where with NaN branch");
    const double NN[4] = {NAN, INFINITY, -INFINITY, 1.25};
    const double n2n_w[4] = {0, 1e3, -1e3, 1.25};
    const int64_t s4[1] = {4};
    rt_tensor *nn = tc_f64(S, NN, s4, 1);
    tc_expect_f64(rt_nan_to_num(S, nn, 0.0, 1e3, -1e3), n2n_w, 4, 0.0, "nan_to_num");

    /* --- comparisons and logic (bool results) --- */
    const double P[6] = {1, 2, 3, 4, 5, 6}, Q[6] = {1, 3, 2, 4, 6, 5};
    rt_tensor *p = tc_f64(S, P, SHAPE6, 1), *q = tc_f64(S, Q, SHAPE6, 1);
    const int64_t eq_w[6] = {1, 0, 0, 1, 0, 0}, ne_w[6] = {0, 1, 1, 0, 1, 1};
    const int64_t lt_w[6] = {0, 1, 0, 0, 1, 0}, le_w[6] = {1, 1, 0, 1, 1, 0};
    const int64_t gt_w[6] = {0, 0, 1, 0, 0, 1}, ge_w[6] = {1, 0, 1, 1, 0, 1};
    rt_tensor *eq = rt_compare(S, p, RT_EQ, q);
    cr_expect_eq(rt_dtype_of(eq), RT_BOOL);
    tc_expect_i64(eq, eq_w, 6, "EQ");
    tc_expect_i64(rt_compare(S, p, RT_NE, q), ne_w, 6, "NE");
    tc_expect_i64(rt_compare(S, p, RT_LT, q), lt_w, 6, "LT");
    tc_expect_i64(rt_compare(S, p, RT_LE, q), le_w, 6, "LE");
    tc_expect_i64(rt_compare(S, p, RT_GT, q), gt_w, 6, "GT");
    tc_expect_i64(rt_compare(S, p, RT_GE, q), ge_w, 6, "GE");
    const int64_t s_eq[6] = {0, 0, 1, 0, 0, 0}, s_ne[6] = {1, 1, 0, 1, 1, 1};
    const int64_t s_lt[6] = {1, 1, 0, 0, 0, 0}, s_le[6] = {1, 1, 1, 0, 0, 0};
    const int64_t s_gt[6] = {0, 0, 0, 1, 1, 1}, s_ge[6] = {0, 0, 1, 1, 1, 1};
    rt_tensor *ceq = rt_compare_scalar(S, p, RT_EQ, 3);
    cr_expect_eq(rt_dtype_of(ceq), RT_BOOL);
    tc_expect_i64(ceq, s_eq, 6, "EQ scalar");
    tc_expect_i64(rt_compare_scalar(S, p, RT_NE, 3), s_ne, 6, "NE scalar");
    tc_expect_i64(rt_compare_scalar(S, p, RT_LT, 3), s_lt, 6, "LT scalar");
    tc_expect_i64(rt_compare_scalar(S, p, RT_LE, 3), s_le, 6, "LE scalar");
    tc_expect_i64(rt_compare_scalar(S, p, RT_GT, 3), s_gt, 6, "GT scalar");
    tc_expect_i64(rt_compare_scalar(S, p, RT_GE, 3), s_ge, 6, "GE scalar");
    const uint8_t L1[4] = {0, 0, 1, 1}, L2[4] = {0, 1, 0, 1};
    rt_tensor *l1 = tc_bool(S, L1, s4, 1), *l2 = tc_bool(S, L2, s4, 1);
    const int64_t and_w[4] = {0, 0, 0, 1}, or_w[4] = {0, 1, 1, 1}, xor_w[4] = {0, 1, 1, 0};
    const int64_t not_w[4] = {1, 1, 0, 0};
    tc_expect_i64(rt_logical_and(S, l1, l2), and_w, 4, "logical_and");
    tc_expect_i64(rt_logical_or(S, l1, l2), or_w, 4, "logical_or");
    tc_expect_i64(rt_logical_xor(S, l1, l2), xor_w, 4, "logical_xor");
    rt_tensor *ln = rt_logical_not(S, l1);
    cr_expect_eq(rt_dtype_of(ln), RT_BOOL);
    tc_expect_i64(ln, not_w, 4, "logical_not");
    const int64_t fin_w[4] = {0, 0, 0, 1}, nan_w[4] = {1, 0, 0, 0};
    rt_tensor *fin = rt_isfinite(S, nn);
    cr_expect_eq(rt_dtype_of(fin), RT_BOOL);
    tc_expect_i64(fin, fin_w, 4, "isfinite");
    tc_expect_i64(rt_isnan(S, nn), nan_w, 4, "isnan");

    rt_scope_free(S);
}

static void check_reductions(void)
{
    rt_scope *S = rt_scope_new();
    /* a = [[1, 5, 3],
     *      [4, 2, 6]] */
    const double A[6] = {1, 5, 3, 4, 2, 6};
    const int64_t s23[2] = {2, 3}, s3[1] = {3}, s2[1] = {2}, s21[2] = {2, 1}, s13[2] = {1, 3};
    rt_tensor *a = tc_f64(S, A, s23, 2);

    /* sum / mean: per dim, keepdim, negative dim, everything. */
    rt_tensor *t = rt_sum(S, a, 0, 0);
    tc_expect_shape(t, s3, 1, "sum dim 0");
    tc_expect_f64(t, (const double[3]){5, 7, 9}, 3, 0.0, "sum dim 0");
    t = rt_sum(S, a, 1, 1);
    tc_expect_shape(t, s21, 2, "sum dim 1 keepdim");
    tc_expect_f64(t, (const double[2]){9, 12}, 2, 0.0, "sum dim 1 keepdim");
    t = rt_sum(S, a, -1, 0);
    tc_expect_shape(t, s2, 1, "sum dim -1");
    tc_expect_f64(t, (const double[2]){9, 12}, 2, 0.0, "sum dim -1");
    t = rt_sum(S, a, RT_DIM_ALL, 1); /* keepdim ignored */
    cr_expect_eq(rt_ndim(t), 0, "sum over all dims must be 0-dim");
    cr_expect_eq(tc_item(t, "sum all"), 21.0);
    t = rt_mean(S, a, 0, 1);
    tc_expect_shape(t, s13, 2, "mean dim 0 keepdim");
    tc_expect_f64(t, (const double[3]){2.5, 3.5, 4.5}, 3, 0.0, "mean dim 0");
    tc_expect_f64(rt_mean(S, a, 1, 0), (const double[2]){3, 4}, 2, 0.0, "mean dim 1");
    t = rt_mean(S, a, RT_DIM_ALL, 0);
    cr_expect_eq(rt_ndim(t), 0);
    cr_expect_eq(tc_item(t, "mean all"), 3.5);

    /* Several dims at once on a [2, 3, 2] tensor with values 0..11. */
    const int64_t s232[3] = {2, 3, 2};
    rt_tensor *c = rt_reshape(S, rt_arange(S, 0, 12, 1, RT_OPTS(RT_F64)), s232, 3);
    const int64_t d02[2] = {0, 2}, d12[2] = {1, 2};
    /* dims {0,2}: j=0: 0+1+6+7 = 14, j=1: 2+3+8+9 = 22, j=2: 4+5+10+11 = 30 */
    tc_expect_f64(rt_sum_dims(S, c, d02, 2, 0), (const double[3]){14, 22, 30}, 3, 0.0,
                  "sum_dims {0,2}");
    t = rt_mean_dims(S, c, d12, 2, 1);
    const int64_t s211[3] = {2, 1, 1};
    tc_expect_shape(t, s211, 3, "mean_dims keepdim");
    tc_expect_f64(t, (const double[2]){2.5, 8.5}, 2, 0.0, "mean_dims {1,2}");

    /* prod */
    tc_expect_f64(rt_prod(S, a, 1, 0), (const double[2]){15, 48}, 2, 0.0, "prod dim 1");
    cr_expect_eq(tc_item(rt_prod(S, a, RT_DIM_ALL, 0), "prod all"), 720.0);

    /* max / min with indices; argmax / argmin. */
    rt_tensor *idx = NULL;
    t = rt_max(S, a, 1, 0, &idx);
    tc_expect_f64(t, (const double[2]){5, 6}, 2, 0.0, "max dim 1");
    cr_assert(idx != NULL, "max: no indices");
    cr_expect_eq(rt_dtype_of(idx), RT_I64);
    tc_expect_i64(idx, (const int64_t[2]){1, 2}, 2, "max dim 1 indices");
    idx = NULL;
    t = rt_min(S, a, 0, 1, &idx);
    tc_expect_shape(t, s13, 2, "min dim 0 keepdim");
    tc_expect_f64(t, (const double[3]){1, 2, 3}, 3, 0.0, "min dim 0");
    tc_expect_shape(idx, s13, 2, "min indices keepdim");
    tc_expect_i64(idx, (const int64_t[3]){0, 1, 0}, 3, "min dim 0 indices");
    tc_expect_f64(rt_max(S, a, 0, 0, NULL), (const double[3]){4, 5, 6}, 3, 0.0,
                  "max without indices");
    idx = NULL;
    t = rt_max(S, a, RT_DIM_ALL, 0, &idx);
    cr_expect_eq(tc_item(t, "max all"), 6.0);
    cr_expect(idx == NULL, "max over all dims produced indices");
    cr_expect_eq(tc_item(rt_min(S, a, RT_DIM_ALL, 0, NULL), "min all"), 1.0);
    t = rt_argmax(S, a, 1, 1);
    tc_expect_shape(t, s21, 2, "argmax keepdim");
    tc_expect_i64(t, (const int64_t[2]){1, 2}, 2, "argmax dim 1");
    tc_expect_i64(rt_argmin(S, a, 1, 0), (const int64_t[2]){0, 1}, 2, "argmin dim 1");
    cr_expect_eq(rt_item_i64(rt_argmax(S, a, RT_DIM_ALL, 0)), 5); /* flat index of 6 */
    cr_expect_eq(rt_item_i64(rt_argmin(S, a, RT_DIM_ALL, 0)), 0);

    /* logsumexp, including values that overflow exp(). */
    tc_expect_f64(rt_logsumexp(S, a, 1, 0),
                  (const double[2]){log(exp(1) + exp(5) + exp(3)), log(exp(4) + exp(2) + exp(6))},
                  2, 1e-15, "logsumexp dim 1");
    double lall = 0;
    for (int i = 0; i < 6; i++)
        lall += exp(A[i]);
    cr_expect(fabs(tc_item(rt_logsumexp(S, a, RT_DIM_ALL, 0), "lse all") - log(lall)) < 1e-14);
    rt_tensor *huge = tc_f64(S, (const double[2]){1000, 1000}, s2, 1);
    cr_expect(fabs(tc_item(rt_logsumexp(S, huge, 0, 0), "lse huge") - (1000 + log(2.0))) < 1e-12);

    /* var / std: row [1,5,3] has mean 3 and squared deviations 4+4+0 = 8;
     * all six values have mean 3.5 and squared deviations 17.5. */
    tc_expect_f64(rt_var(S, a, 1, 1, 0), (const double[2]){4, 4}, 2, 1e-15, "var corr 1");
    tc_expect_f64(rt_var(S, a, 1, 0, 0), (const double[2]){8.0 / 3, 8.0 / 3}, 2, 1e-15,
                  "var corr 0");
    t = rt_std(S, a, 1, 1, 1);
    tc_expect_shape(t, s21, 2, "std keepdim");
    tc_expect_f64(t, (const double[2]){2, 2}, 2, 1e-15, "std corr 1");
    tc_expect_f64(rt_std(S, a, 1, 0, 0), (const double[2]){sqrt(8.0 / 3), sqrt(8.0 / 3)}, 2,
                  1e-15, "std corr 0");
    cr_expect(fabs(tc_item(rt_var(S, a, RT_DIM_ALL, 1, 0), "var all") - 3.5) < 1e-14);
    cr_expect(fabs(tc_item(rt_var(S, a, RT_DIM_ALL, 0, 0), "var all c0") - 17.5 / 6) < 1e-14);
    cr_expect(fabs(tc_item(rt_std(S, a, RT_DIM_ALL, 1, 0), "std all") - sqrt(3.5)) < 1e-14);
    cr_expect(fabs(tc_item(rt_std(S, a, RT_DIM_ALL, 0, 0), "std all c0") - sqrt(17.5 / 6)) <
              1e-14);

    /* L2 norm */
    tc_expect_f64(rt_norm(S, a, 1, 0), (const double[2]){sqrt(35.0), sqrt(56.0)}, 2, 1e-15,
                  "norm dim 1");
    cr_expect(fabs(tc_item(rt_norm(S, a, RT_DIM_ALL, 0), "norm all") - sqrt(91.0)) < 1e-14);

    /* topk / sort */
    idx = NULL;
    t = rt_topk(S, a, 2, 1, 1, &idx);
    const int64_t s22[2] = {2, 2};
    tc_expect_shape(t, s22, 2, "topk");
    tc_expect_f64(t, (const double[4]){5, 3, 6, 4}, 4, 0.0, "topk largest");
    tc_expect_i64(idx, (const int64_t[4]){1, 2, 2, 0}, 4, "topk largest indices");
    idx = NULL;
    t = rt_topk(S, a, 1, -1, 0, &idx);
    tc_expect_f64(t, (const double[2]){1, 2}, 2, 0.0, "topk smallest");
    tc_expect_i64(idx, (const int64_t[2]){0, 1}, 2, "topk smallest indices");
    idx = NULL;
    t = rt_sort(S, a, 1, 0, &idx);
    tc_expect_f64(t, (const double[6]){1, 3, 5, 2, 4, 6}, 6, 0.0, "sort ascending");
    tc_expect_i64(idx, (const int64_t[6]){0, 2, 1, 1, 0, 2}, 6, "sort ascending indices");
    idx = NULL;
    t = rt_sort(S, a, 0, 1, &idx);
    tc_expect_f64(t, (const double[6]){4, 5, 6, 1, 2, 3}, 6, 0.0, "sort descending dim 0");
    tc_expect_i64(idx, (const int64_t[6]){1, 0, 1, 0, 1, 0}, 6, "sort descending indices");
    /* Stable: ties keep their order. */
    rt_tensor *ties = tc_f64(S, (const double[6]){2, 1, 2, 1, 0, 2}, (const int64_t[1]){6}, 1);
    idx = NULL;
    t = rt_sort(S, ties, 0, 0, &idx);
    tc_expect_i64(idx, (const int64_t[6]){4, 1, 3, 0, 2, 5}, 6, "stable sort ascending");
    idx = NULL;
    t = rt_sort(S, ties, 0, 1, &idx);
    tc_expect_i64(idx, (const int64_t[6]){0, 2, 5, 1, 3, 4}, 6, "stable sort descending");

    /* cumsum */
    tc_expect_f64(rt_cumsum(S, a, 1), (const double[6]){1, 6, 9, 4, 6, 12}, 6, 0.0, "cumsum 1");
    tc_expect_f64(rt_cumsum(S, a, 0), (const double[6]){1, 5, 3, 5, 7, 9}, 6, 0.0, "cumsum 0");

    /* any / all */
    rt_tensor *bm = tc_bool(S, (const uint8_t[6]){0, 1, 0, 0, 0, 0}, s23, 2);
    rt_tensor *r = rt_any(S, bm, 1, 0);
    cr_expect_eq(rt_dtype_of(r), RT_BOOL);
    tc_expect_i64(r, (const int64_t[2]){1, 0}, 2, "any dim 1");
    tc_expect_i64(rt_all(S, bm, 0, 0), (const int64_t[3]){0, 0, 0}, 3, "all dim 0");
    t = rt_any(S, bm, 0, 1);
    tc_expect_shape(t, s13, 2, "any keepdim");
    tc_expect_i64(t, (const int64_t[3]){0, 1, 0}, 3, "any dim 0");
    cr_expect_eq(rt_item(rt_any(S, bm, RT_DIM_ALL, 0)), 1.0);
    cr_expect_eq(rt_item(rt_all(S, bm, RT_DIM_ALL, 0)), 0.0);
    rt_tensor *allt = rt_compare_scalar(S, a, RT_GT, 0);
    cr_expect_eq(rt_item(rt_all(S, allt, RT_DIM_ALL, 0)), 1.0);

    rt_scope_free(S);
}

/* One test process for the whole file: libtorch costs ~0.6 s per process. */
Test(math, elementwise_and_reductions)
{
    check_elementwise_comparisons_logic();
    check_reductions();
}
