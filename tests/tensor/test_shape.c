/*
 * test_shape.c -- shape and indexing ops (reshape, view, transpose, permute,
 * squeeze, expand, repeat, cat, stack, narrow, select, gather, scatter,
 * index_select, masked_fill, one_hot, embedding, dtype conversion, clone) and
 * the in-place updates (copy_ into a view, fill_, zero_, add_, mul_scalar_,
 * lerp_), all against hand-computed values.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#include <string.h>

#include "tcheck.h"
#include "tensor.h"

Test(shape, views_indexing_inplace)
{
    rt_scope *S = rt_scope_new();

    /* c[i][j][k] = 12i + 4j + k, shape [2, 3, 4]. */
    const int64_t s234[3] = {2, 3, 4};
    rt_tensor *c = rt_reshape(S, rt_arange(S, 0, 24, 1, RT_OPTS(RT_F64)), s234, 3);
    tc_expect_shape(c, s234, 3, "reshape");
    const int64_t sm1[2] = {-1, 6}, s46[2] = {4, 6};
    tc_expect_shape(rt_reshape(S, c, sm1, 2), s46, 2, "reshape with -1");
    const int64_t s64[2] = {6, 4};
    rt_tensor *v = rt_view(S, c, s64, 2);
    tc_expect_shape(v, s64, 2, "view");
    /* A view shares storage: writing through it changes c. */
    rt_tensor *c2 = rt_clone(S, c);
    rt_tensor *v2 = rt_view(S, c2, s64, 2);
    cr_assert_eq(rt_fill_(rt_select(S, v2, 0, 0), -1.0), RT_OK);
    cr_expect_eq(rt_item(rt_select(S, rt_select(S, rt_select(S, c2, 0, 0), 0, 0), 0, 3)), -1.0);
    /* the clone is independent of c */
    cr_expect_eq(rt_item(rt_select(S, rt_select(S, rt_select(S, c, 0, 0), 0, 0), 0, 3)), 3.0);
    /* view of a transposed (non-contiguous) tensor fails; reshape copies. */
    rt_tensor *ct = rt_transpose(S, v, 0, 1); /* [4, 6] */
    const int64_t s24[1] = {24};
    rt_clear_error();
    cr_expect(rt_view(S, ct, s24, 1) == NULL, "view of a transposed tensor should fail");
    tc_expect_clean_error("view of non-contiguous");
    rt_clear_error();
    rt_tensor *flat = rt_reshape(S, ct, s24, 1);
    cr_assert(flat != NULL, "%s", rt_last_error());
    /* flat[m] = ct[m / 6][m % 6] = v[m % 6][m / 6] = 4*(m%6) + m/6 */
    double fl[24];
    tc_read_f64(flat, fl, 24, "reshape of transposed");
    for (int m = 0; m < 24; m++)
        cr_expect_eq(fl[m], 4.0 * (m % 6) + m / 6, "reshape(transpose)[%d] = %g", m, fl[m]);

    /* flatten */
    const int64_t s2_12[2] = {2, 12};
    rt_tensor *ff = rt_flatten(S, c, 1, 2);
    tc_expect_shape(ff, s2_12, 2, "flatten(1, 2)");
    tc_expect_shape(rt_flatten(S, c, 0, -1), s24, 1, "flatten(0, -1)");

    /* transpose (0, 2): t[k][j][i] = c[i][j][k] */
    rt_tensor *tt = rt_contiguous(S, rt_transpose(S, c, 0, 2));
    const int64_t s432[3] = {4, 3, 2};
    tc_expect_shape(tt, s432, 3, "transpose");
    double tv[24];
    tc_read_f64(tt, tv, 24, "transpose");
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 2; i++)
                cr_expect_eq(tv[k * 6 + j * 2 + i], 12.0 * i + 4 * j + k);

    /* permute {2, 0, 1}: p[k][i][j] = c[i][j][k] */
    const int64_t perm[3] = {2, 0, 1}, s423[3] = {4, 2, 3};
    rt_tensor *pp = rt_permute(S, c, perm, 3);
    tc_expect_shape(pp, s423, 3, "permute");
    double pv[24];
    tc_read_f64(pp, pv, 24, "permute");
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                cr_expect_eq(pv[k * 6 + i * 3 + j], 12.0 * i + 4 * j + k);

    /* squeeze / unsqueeze */
    const int64_t s3[1] = {3}, s13[2] = {1, 3}, s31[2] = {3, 1}, s131[3] = {1, 3, 1};
    rt_tensor *r3 = tc_f64(S, (const double[3]){1, 2, 3}, s3, 1);
    rt_tensor *u0 = rt_unsqueeze(S, r3, 0);
    tc_expect_shape(u0, s13, 2, "unsqueeze 0");
    tc_expect_shape(rt_unsqueeze(S, r3, -1), s31, 2, "unsqueeze -1");
    rt_tensor *u2 = rt_unsqueeze(S, u0, 2);
    tc_expect_shape(u2, s131, 3, "unsqueeze 2");
    tc_expect_shape(rt_squeeze(S, u2, 0), s31, 2, "squeeze 0");
    tc_expect_shape(rt_squeeze(S, u2, -1), s13, 2, "squeeze -1");
    tc_expect_f64(rt_squeeze(S, rt_squeeze(S, u2, 2), 0), (const double[3]){1, 2, 3}, 3, 0.0,
                  "squeeze values");

    /* expand (a view) and repeat (a copy) */
    const int64_t s23[2] = {2, 3}, sm13[2] = {2, -1};
    rt_tensor *e = rt_expand(S, u0, s23, 2);
    tc_expect_shape(e, s23, 2, "expand");
    tc_expect_f64(e, (const double[6]){1, 2, 3, 1, 2, 3}, 6, 0.0, "expand");
    tc_expect_shape(rt_expand(S, u0, sm13, 2), s23, 2, "expand with -1");
    const int64_t rep[2] = {2, 2}, s26[2] = {2, 6};
    rt_tensor *rp = rt_repeat(S, u0, rep, 2);
    tc_expect_shape(rp, s26, 2, "repeat");
    tc_expect_f64(rp, (const double[12]){1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3}, 12, 0.0, "repeat");

    /* cat / stack */
    rt_tensor *m1 = tc_f64(S, (const double[6]){1, 2, 3, 4, 5, 6}, s23, 2);
    rt_tensor *m2 = tc_f64(S, (const double[6]){7, 8, 9, 10, 11, 12}, s23, 2);
    rt_tensor *pair[2] = {m1, m2};
    const int64_t s43[2] = {4, 3}, s223[3] = {2, 2, 3}, s232[3] = {2, 3, 2};
    rt_tensor *k0 = rt_cat(S, pair, 2, 0);
    tc_expect_shape(k0, s43, 2, "cat 0");
    tc_expect_f64(k0, (const double[12]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 12, 0.0, "cat 0");
    rt_tensor *k1 = rt_cat(S, pair, 2, 1);
    tc_expect_shape(k1, s26, 2, "cat 1");
    tc_expect_f64(k1, (const double[12]){1, 2, 3, 7, 8, 9, 4, 5, 6, 10, 11, 12}, 12, 0.0, "cat 1");
    rt_tensor *st0 = rt_stack(S, pair, 2, 0);
    tc_expect_shape(st0, s223, 3, "stack 0");
    tc_expect_f64(st0, (const double[12]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 12, 0.0,
                  "stack 0");
    rt_tensor *st2 = rt_stack(S, pair, 2, -1);
    tc_expect_shape(st2, s232, 3, "stack -1");
    tc_expect_f64(st2, (const double[12]){1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 6, 12}, 12, 0.0,
                  "stack -1");

    /* narrow / select */
    rt_tensor *nw = rt_narrow(S, k1, 1, 2, 3);
    tc_expect_shape(nw, (const int64_t[2]){2, 3}, 2, "narrow");
    tc_expect_f64(nw, (const double[6]){3, 7, 8, 6, 10, 11}, 6, 0.0, "narrow");
    rt_tensor *sl = rt_select(S, k0, 0, 2);
    tc_expect_shape(sl, s3, 1, "select");
    tc_expect_f64(sl, (const double[3]){7, 8, 9}, 3, 0.0, "select row");
    tc_expect_f64(rt_select(S, k0, 1, -1), (const double[4]){3, 6, 9, 12}, 4, 0.0,
                  "select col -1");

    /* gather along dim 1: out[i][j] = m1[i][idx[i][j]] */
    const int64_t s22[2] = {2, 2};
    rt_tensor *gi = tc_i64(S, (const int64_t[4]){2, 0, 1, 1}, s22, 2);
    tc_expect_f64(rt_gather(S, m1, 1, gi), (const double[4]){3, 1, 5, 5}, 4, 0.0, "gather 1");
    /* along dim 0: out[i][j] = m1[idx[i][j]][j] */
    rt_tensor *gi0 = tc_i64(S, (const int64_t[3]){1, 0, 1}, s13, 2);
    tc_expect_f64(rt_gather(S, m1, 0, gi0), (const double[3]){4, 2, 6}, 3, 0.0, "gather 0");

    /* scatter / scatter_add (out of place: the input is unchanged) */
    rt_tensor *z23 = rt_zeros(S, s23, 2, RT_OPTS(RT_F64));
    rt_tensor *si = tc_i64(S, (const int64_t[4]){0, 2, 1, 0}, s22, 2);
    rt_tensor *ss = tc_f64(S, (const double[4]){10, 20, 30, 40}, s22, 2);
    tc_expect_f64(rt_scatter(S, z23, 1, si, ss), (const double[6]){10, 0, 20, 40, 30, 0}, 6, 0.0,
                  "scatter");
    tc_expect_f64(z23, (const double[6]){0, 0, 0, 0, 0, 0}, 6, 0.0, "scatter left input alone");
    rt_tensor *o3 = rt_ones(S, s3, 1, RT_OPTS(RT_F64));
    rt_tensor *sai = tc_i64(S, (const int64_t[3]){0, 0, 2}, s3, 1);
    rt_tensor *sas = tc_f64(S, (const double[3]){1, 2, 3}, s3, 1);
    tc_expect_f64(rt_scatter_add(S, o3, 0, sai, sas), (const double[3]){4, 1, 4}, 3, 0.0,
                  "scatter_add");
    tc_expect_f64(o3, (const double[3]){1, 1, 1}, 3, 0.0, "scatter_add left input alone");

    /* index_select */
    rt_tensor *isx = tc_i64(S, (const int64_t[3]){1, 0, 1}, s3, 1);
    rt_tensor *is = rt_index_select(S, m1, 0, isx);
    tc_expect_shape(is, (const int64_t[2]){3, 3}, 2, "index_select 0");
    tc_expect_f64(is, (const double[9]){4, 5, 6, 1, 2, 3, 4, 5, 6}, 9, 0.0, "index_select 0");
    tc_expect_f64(rt_index_select(S, m1, 1, tc_i64(S, (const int64_t[2]){2, 2}, (const int64_t[1]){2}, 1)),
                  (const double[4]){3, 3, 6, 6}, 4, 0.0, "index_select 1");

    /* masked_fill (mask broadcast over rows) */
    rt_tensor *mk = tc_bool(S, (const uint8_t[3]){1, 0, 1}, s3, 1);
    tc_expect_f64(rt_masked_fill(S, m1, mk, -INFINITY),
                  (const double[6]){-INFINITY, 2, -INFINITY, -INFINITY, 5, -INFINITY}, 6, 0.0,
                  "masked_fill");

    /* one_hot / embedding */
    rt_tensor *ids = tc_i64(S, (const int64_t[3]){0, 2, 1}, s3, 1);
    rt_tensor *oh = rt_one_hot(S, ids, 4);
    tc_expect_shape(oh, (const int64_t[2]){3, 4}, 2, "one_hot");
    cr_expect_eq(rt_dtype_of(oh), RT_I64);
    tc_expect_i64(oh, (const int64_t[12]){1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0}, 12, "one_hot");
    rt_tensor *W = tc_f64(S, (const double[8]){0, 1, 10, 11, 20, 21, 30, 31}, (const int64_t[2]){4, 2}, 2);
    rt_tensor *eids = tc_i64(S, (const int64_t[2]){3, 0}, (const int64_t[2]){1, 2}, 2);
    rt_tensor *em = rt_embedding(S, W, eids);
    tc_expect_shape(em, (const int64_t[3]){1, 2, 2}, 3, "embedding");
    tc_expect_f64(em, (const double[4]){30, 31, 0, 1}, 4, 0.0, "embedding");

    /* dtype conversion: truncation toward zero, nonzero -> true, and back */
    rt_tensor *fr = tc_f64(S, (const double[4]){2.7, -2.7, 0.0, 0.5}, (const int64_t[1]){4}, 1);
    rt_tensor *fi = rt_to_dtype(S, fr, RT_I64);
    cr_expect_eq(rt_dtype_of(fi), RT_I64);
    tc_expect_i64(fi, (const int64_t[4]){2, -2, 0, 0}, 4, "to i64");
    rt_tensor *fb = rt_to_dtype(S, fr, RT_BOOL);
    cr_expect_eq(rt_dtype_of(fb), RT_BOOL);
    tc_expect_i64(fb, (const int64_t[4]){1, 1, 0, 1}, 4, "to bool");
    rt_tensor *f32 = rt_to_dtype(S, fr, RT_F32);
    cr_expect_eq(rt_dtype_of(f32), RT_F32);
    tc_expect_f64(f32, (const double[4]){(float)2.7, (float)-2.7, 0, 0.5}, 4, 0.0, "to f32");
    cr_expect(rt_to_device(S, fr, RT_CPU, 0) != NULL, "to_device(cpu): %s", rt_last_error());

    /* clone has its own storage */
    rt_tensor *cl = rt_clone(S, m1);
    cr_assert_eq(rt_fill_(cl, 0.0), RT_OK);
    tc_expect_f64(m1, (const double[6]){1, 2, 3, 4, 5, 6}, 6, 0.0, "clone is independent");

    /* --- in-place updates --- */
    const int64_t s24b[2] = {2, 4};
    rt_tensor *buf = rt_zeros(S, s24b, 2, RT_OPTS(RT_F64));
    rt_tensor *win = rt_narrow(S, buf, 1, 1, 2); /* columns 1..2, a view */
    cr_assert_eq(rt_copy_(win, tc_f64(S, (const double[4]){1, 2, 3, 4}, s22, 2)), RT_OK, "%s",
                 rt_last_error());
    tc_expect_f64(buf, (const double[8]){0, 1, 2, 0, 0, 3, 4, 0}, 8, 0.0, "copy_ into narrow");
    /* copy_ broadcasts and converts dtype */
    rt_tensor *col = rt_narrow(S, buf, 1, 3, 1);
    cr_assert_eq(rt_copy_(col, rt_scalar(S, 9, RT_OPTS(RT_I64))), RT_OK, "%s", rt_last_error());
    tc_expect_f64(buf, (const double[8]){0, 1, 2, 9, 0, 3, 4, 9}, 8, 0.0, "copy_ broadcast");
    cr_assert_eq(rt_fill_(rt_select(S, buf, 0, 0), 5.0), RT_OK);
    tc_expect_f64(buf, (const double[8]){5, 5, 5, 5, 0, 3, 4, 9}, 8, 0.0, "fill_ of a row");
    rt_tensor *acc = tc_f64(S, (const double[3]){1, 2, 3}, s3, 1);
    cr_assert_eq(rt_add_(acc, tc_f64(S, (const double[3]){10, 20, 30}, s3, 1), 0.5), RT_OK);
    tc_expect_f64(acc, (const double[3]){6, 12, 18}, 3, 0.0, "add_ alpha 0.5");
    cr_assert_eq(rt_mul_scalar_(acc, -0.5), RT_OK);
    tc_expect_f64(acc, (const double[3]){-3, -6, -9}, 3, 0.0, "mul_scalar_");
    cr_assert_eq(rt_lerp_(acc, tc_f64(S, (const double[3]){1, 2, 3}, s3, 1), 0.25), RT_OK);
    /* t + 0.25 (end - t): -3 + 1 = -2, -6 + 2 = -4, -9 + 3 = -6 */
    tc_expect_f64(acc, (const double[3]){-2, -4, -6}, 3, 1e-15, "lerp_ 0.25");
    cr_assert_eq(rt_zero_(acc), RT_OK);
    tc_expect_f64(acc, (const double[3]){0, 0, 0}, 3, 0.0, "zero_");
    cr_assert_eq(rt_fill_(acc, 2.5), RT_OK);
    tc_expect_f64(acc, (const double[3]){2.5, 2.5, 2.5}, 3, 0.0, "fill_");
    /* A shape that cannot broadcast is an error, not a crash. */
    rt_clear_error();
    cr_expect(rt_copy_(acc, m1) < 0, "copy_ [2,3] into [3] accepted");
    tc_expect_clean_error("copy_ shape mismatch");
    rt_clear_error();

    /* _out ops: results written into dst (even a view), nothing recorded. */
    const int64_t s32[2] = {3, 2}; /* s22, s23 from above */
    rt_tensor *oa = tc_f64(S, (const double[4]){1, 2, 3, 4}, s22, 2);
    rt_tensor *ob = tc_f64(S, (const double[4]){10, 20, 30, 40}, s22, 2);
    rt_tensor *od = rt_zeros(S, s22, 2, RT_OPTS(RT_F64));
    cr_assert_eq(rt_add_out(od, oa, ob), RT_OK, "%s", rt_last_error());
    tc_expect_f64(od, (const double[4]){11, 22, 33, 44}, 4, 0.0, "add_out");
    cr_assert_eq(rt_mul_out(od, oa, ob), RT_OK, "%s", rt_last_error());
    tc_expect_f64(od, (const double[4]){10, 40, 90, 160}, 4, 0.0, "mul_out");
    rt_tensor *l23 = tc_f64(S, (const double[6]){1, 2, 3, 4, 5, 6}, s23, 2);
    rt_tensor *r32 = tc_f64(S, (const double[6]){1, 0, 0, 1, 1, 1}, s32, 2);
    cr_assert_eq(rt_matmul_out(od, l23, r32), RT_OK, "%s", rt_last_error());
    tc_expect_f64(od, (const double[4]){4, 5, 10, 11}, 4, 0.0, "matmul_out");
    rt_tensor *big = rt_zeros(S, (const int64_t[2]){4, 2}, 2, RT_OPTS(RT_F64));
    cr_assert_eq(rt_add_out(rt_narrow(S, big, 0, 1, 2), oa, ob), RT_OK, "%s", rt_last_error());
    tc_expect_f64(big, (const double[8]){0, 0, 11, 22, 33, 44, 0, 0}, 8, 0.0, "add_out into a view");
    rt_clear_error();
    cr_expect(rt_add_out(rt_zeros(S, s3, 1, RT_OPTS(RT_F64)), oa, ob) < 0, "add_out into a wrong shape");
    cr_expect(strstr(rt_last_error(), "[3]") && strstr(rt_last_error(), "[2, 2]"), "%s", rt_last_error());
    rt_clear_error();
    cr_expect(rt_matmul_out(od, oa, l23) < 0, "matmul_out with incompatible shapes");
    tc_expect_clean_error("matmul_out shape mismatch");
    rt_clear_error();
    rt_tensor *leaf = tc_f64(S, (const double[4]){1, 1, 1, 1}, s22, 2);
    rt_set_requires_grad(leaf, 1);
    cr_expect(rt_add_out(od, leaf, ob) < 0, "add_out of a tensor requiring grad in grad mode");
    cr_expect(strstr(rt_last_error(), "autograd") != NULL, "%s", rt_last_error());
    rt_clear_error();
    int g = rt_no_grad_begin();
    cr_expect_eq(rt_add_out(od, leaf, ob), RT_OK, "add_out in no-grad mode: %s", rt_last_error());
    rt_grad_mode_restore(g);
    tc_expect_f64(od, (const double[4]){11, 21, 31, 41}, 4, 0.0, "add_out no-grad");
    cr_expect_eq(rt_add_out(NULL, oa, ob), RT_EINVAL);
    rt_clear_error();

    rt_scope_free(S);
}
