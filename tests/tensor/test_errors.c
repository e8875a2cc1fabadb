/*
 * test_errors.c -- the error channel of the tensor binding (NULL results,
 * negative statuses, one-line messages without C++ backtraces, the first
 * message surviving a chain of ops) and the runtime controls (threads,
 * determinism, versions, BLAS, devices).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tcheck.h"
#include "tensor.h"

static void check_messages_and_propagation(void)
{
    rt_scope *S = rt_scope_new();
    const int64_t s23[2] = {2, 3};
    rt_tensor *a = rt_ones(S, s23, 2, RT_OPTS(RT_F32));
    rt_tensor *b = rt_ones(S, s23, 2, RT_OPTS(RT_F32));

    /* rt_set_error / rt_clear_error */
    rt_clear_error();
    cr_expect_str_eq(rt_last_error(), "");
    cr_expect_eq(rt_set_error("config %s: bad value %d", "lr", 7), RT_ERR);
    cr_expect_str_eq(rt_last_error(), "config lr: bad value 7");
    rt_clear_error();
    cr_expect_str_eq(rt_last_error(), "");

    /* matmul shape mismatch: NULL, and the message names both shapes */
    rt_tensor *mm = rt_matmul(S, a, b);
    cr_expect(mm == NULL, "matmul [2,3] x [2,3] succeeded");
    const char *msg = rt_last_error();
    cr_expect(strstr(msg, "2x3") != NULL, "message does not name the shapes: %s", msg);
    tc_expect_clean_error("matmul mismatch");
    char first[512];
    snprintf(first, sizeof first, "%s", msg);

    /* a NULL propagates through a chain of ops; the first message survives */
    rt_tensor *chain = rt_exp(S, rt_sum(S, rt_relu(S, rt_add(S, mm, a)), 1, 0));
    chain = rt_softmax(S, rt_linear(S, chain, a, NULL), -1);
    cr_expect(chain == NULL);
    cr_expect_str_eq(rt_last_error(), first, "the first message was overwritten");
    /* status functions and list inputs propagate the same way */
    float sink[6];
    cr_expect(rt_backward(chain) < 0);
    cr_expect(rt_to_data(chain, RT_F32, sink, sizeof sink) < 0);
    cr_expect(rt_copy_(a, chain) < 0);
    cr_expect(rt_cat(S, (rt_tensor *const[2]){a, chain}, 2, 0) == NULL);
    cr_expect_str_eq(rt_last_error(), first, "a later NULL replaced the first message");
    rt_clear_error();
    /* With no earlier message, a NULL input says so. */
    cr_expect(rt_neg(S, NULL) == NULL);
    tc_expect_clean_error("NULL input without an earlier error");
    rt_clear_error();

    /* NULL generator */
    cr_expect(rt_rand(S, s23, 2, NULL, RT_OPTS(RT_F32)) == NULL);
    tc_expect_clean_error("rand(NULL gen)");
    rt_clear_error();
    cr_expect(rt_multinomial(S, a, 1, 1, NULL) == NULL);
    tc_expect_clean_error("multinomial(NULL gen)");
    rt_clear_error();

    /* rt_from_data: too many dims, negative sizes, NULL data */
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float one = 1.0f;
    cr_expect(rt_from_data(S, &one, nine, RT_MAX_DIMS + 1, RT_OPTS(RT_F32)) == NULL,
              "ndim > RT_MAX_DIMS accepted");
    tc_expect_clean_error("from_data ndim 9");
    rt_clear_error();
    const int64_t negs[2] = {2, -3};
    cr_expect(rt_from_data(S, &one, negs, 2, RT_OPTS(RT_F32)) == NULL, "negative size accepted");
    tc_expect_clean_error("from_data negative size");
    rt_clear_error();
    cr_expect(rt_from_data(S, &one, nine, -1, RT_OPTS(RT_F32)) == NULL, "negative ndim accepted");
    tc_expect_clean_error("from_data negative ndim");
    rt_clear_error();
    cr_expect(rt_from_data(S, NULL, s23, 2, RT_OPTS(RT_F32)) == NULL, "NULL data accepted");
    tc_expect_clean_error("from_data NULL data");
    rt_clear_error();
    cr_expect(rt_zeros(S, negs, 2, RT_OPTS(RT_F32)) == NULL, "zeros with a negative size");
    tc_expect_clean_error("zeros negative size");
    rt_clear_error();
    /* max-rank shapes still work */
    const int64_t eight[8] = {1, 1, 1, 1, 1, 1, 1, 2};
    const float two[2] = {1, 2};
    rt_tensor *r8 = rt_from_data(S, two, eight, RT_MAX_DIMS, RT_OPTS(RT_F32));
    cr_expect(r8 != NULL && rt_ndim(r8) == 8, "%s", rt_last_error());

    /* rt_item on a multi-element tensor */
    double it = rt_item(a);
    cr_expect(isnan(it), "rt_item of [2,3] returned %g", it);
    tc_expect_clean_error("item of multi-element");
    rt_clear_error();
    (void)rt_item_i64(a);
    tc_expect_clean_error("item_i64 of multi-element");
    rt_clear_error();

    /* queries on NULL and bad dims */
    int64_t shp[RT_MAX_DIMS];
    cr_expect_eq(rt_ndim(NULL), -1);
    cr_expect(rt_shape(NULL, shp, RT_MAX_DIMS) < 0);
    cr_expect_eq(rt_size(a, 5), -1);
    cr_expect_eq(rt_size(a, -3), -1);
    cr_expect(rt_numel(NULL) < 0);
    cr_expect(isnan(rt_max_abs_diff(a, NULL)));
    rt_clear_error();

    /* other refusals: each leaves a clean one-line message */
    cr_expect(rt_reshape(S, a, (const int64_t[2]){4, 2}, 2) == NULL);
    tc_expect_clean_error("reshape 6 -> 8");
    rt_clear_error();
    cr_expect(rt_add(S, a, rt_ones(S, (const int64_t[1]){4}, 1, RT_OPTS(RT_F32))) == NULL);
    tc_expect_clean_error("add broadcast mismatch");
    rt_clear_error();
    cr_expect(rt_cross_entropy(S, a, rt_ones(S, (const int64_t[1]){2}, 1, RT_OPTS(RT_F32)),
                               RT_MEAN, -100, 0.0) == NULL,
              "cross_entropy with float targets");
    tc_expect_clean_error("cross_entropy float targets");
    rt_clear_error();
    cr_expect(rt_gather(S, a, 1, rt_full(S, s23, 2, 7, RT_OPTS(RT_I64))) == NULL,
              "gather out of range");
    tc_expect_clean_error("gather out of range");
    rt_clear_error();
    cr_expect(rt_select(S, a, 0, 2) == NULL, "select out of range");
    tc_expect_clean_error("select out of range");
    rt_clear_error();
    cr_expect(rt_narrow(S, a, 1, 2, 2) == NULL, "narrow past the end");
    tc_expect_clean_error("narrow past end");
    rt_clear_error();
    cr_expect(rt_sum(S, a, 2, 0) == NULL, "sum over dim 2 of a 2-D tensor");
    tc_expect_clean_error("sum bad dim");
    rt_clear_error();

    /* optimizer construction errors */
    rt_tensor *p = rt_ones(S, s23, 2, RT_OPTS(RT_F64));
    rt_set_requires_grad(p, 1);
    rt_tensor *ps[2] = {p, p};
    const char *dup[2] = {"w", "w"};
    rt_optim_opts o = rt_optim_defaults(RT_ADAM);
    cr_expect(rt_optim_new(RT_ADAM, ps, dup, 2, &o) == NULL, "duplicate parameter names accepted");
    tc_expect_clean_error("optim duplicate names");
    rt_clear_error();
    const char *nm[1] = {"w"};
    rt_tensor *pnull[1] = {NULL};
    cr_expect(rt_optim_new(RT_ADAM, pnull, nm, 1, &o) == NULL, "NULL parameter accepted");
    tc_expect_clean_error("optim NULL param");
    rt_clear_error();

    /* NULL-safe destructors */
    rt_free(NULL);
    rt_scope_free(NULL);
    rt_gen_free(NULL);
    rt_optim_free(NULL);
    rt_kv_cache_free(NULL);
    rt_scope_free(S);
}

static void check_threads_versions_devices(void)
{
    cr_assert_eq(rt_set_num_threads(2), RT_OK, "%s", rt_last_error());
    cr_expect_eq(rt_get_num_threads(), 2);
    cr_assert_eq(rt_set_num_threads(1), RT_OK);
    cr_expect_eq(rt_get_num_threads(), 1);
    cr_expect(rt_set_num_threads(0) < 0, "0 threads accepted");
    rt_clear_error();
    cr_expect_eq(rt_get_num_threads(), 1);

    cr_assert_eq(rt_set_deterministic(1), RT_OK);
    cr_expect_eq(rt_get_deterministic(), 1);
    cr_assert_eq(rt_set_deterministic(0), RT_OK);
    cr_expect_eq(rt_get_deterministic(), 0);

    const char *v = rt_torch_version();
    cr_assert(v != NULL);
    cr_expect(strncmp(v, "1.", 2) == 0 || strncmp(v, "2.", 2) == 0, "torch version '%s'", v);
    const char *blas = rt_blas_info();
    cr_assert(blas != NULL);
    cr_expect(strlen(blas) > 0, "empty BLAS info");

    /* This machine has no GPU: CUDA requests fail with a message, not a crash. */
    cr_expect_eq(rt_cuda_available(), 0);
    cr_expect_eq(rt_cuda_device_count(), 0);
    rt_scope *S = rt_scope_new();
    const int64_t s2[1] = {2};
    rt_opts cuda = {RT_F32, RT_CUDA, 0};
    rt_clear_error();
    cr_expect(rt_zeros(S, s2, 1, cuda) == NULL, "a CUDA tensor on a CPU-only build");
    tc_expect_clean_error("zeros on CUDA");
    const char *m = rt_last_error();
    cr_expect(strstr(m, "CUDA") != NULL || strstr(m, "cuda") != NULL,
              "the message does not say CUDA: %s", m);
    rt_clear_error();
    const float d[2] = {1, 2};
    cr_expect(rt_from_data(S, d, s2, 1, cuda) == NULL);
    tc_expect_clean_error("from_data on CUDA");
    rt_clear_error();
    rt_tensor *c = rt_ones(S, s2, 1, RT_OPTS(RT_F32));
    cr_expect(rt_to_device(S, c, RT_CUDA, 0) == NULL);
    tc_expect_clean_error("to_device CUDA");
    rt_clear_error();
    cr_expect(rt_kv_cache_new(1, 1, 4, 2, cuda) == NULL);
    tc_expect_clean_error("kv cache on CUDA");
    rt_clear_error();
    rt_scope_free(S);
}

/* One test process for the whole file: libtorch costs ~0.6 s per process. */
Test(errors, messages_and_runtime)
{
    check_messages_and_propagation();
    check_threads_versions_devices();
}
