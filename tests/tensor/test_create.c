/*
 * test_create.c -- the tensor binding's creation paths and queries: C buffers
 * in and out for every storage dtype (f32, f64, i64, bool, u8, bf16), the
 * factories (zeros, ones, full, arange, scalar, the _like family, tril, triu), the shape
 * queries, handle lifetime (scopes, keep/move/alias/assign), and the seeded
 * random generators checked against PyTorch's own numbers.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tcheck.h"
#include "tensor.h"

static void check_buffers_factories_queries(void)
{
    rt_scope *S = rt_scope_new();
    cr_assert(S != NULL);

    /* --- dtype table --- */
    cr_expect_eq(rt_dtype_size(RT_F32), 4);
    cr_expect_eq(rt_dtype_size(RT_F64), 8);
    cr_expect_eq(rt_dtype_size(RT_I64), 8);
    cr_expect_eq(rt_dtype_size(RT_I32), 4);
    cr_expect_eq(rt_dtype_size(RT_BOOL), 1);
    cr_expect_eq(rt_dtype_size(RT_U8), 1);
    cr_expect_eq(rt_dtype_size(RT_BF16), 2);
    cr_expect_eq(rt_dtype_size(RT_F16), 2);
    cr_expect_str_eq(rt_dtype_name(RT_F32), "float32");
    cr_expect_str_eq(rt_dtype_name(RT_F64), "float64");
    cr_expect(strlen(rt_dtype_name(RT_BF16)) > 0);

    /* --- float32: [2, 3] in, queries, out as f32 and f64 --- */
    const float f32in[6] = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -8.0f};
    const int64_t s23[2] = {2, 3};
    rt_tensor *a = rt_from_data(S, f32in, s23, 2, RT_OPTS(RT_F32));
    cr_assert(a != NULL, "%s", rt_last_error());
    cr_expect_eq(rt_ndim(a), 2);
    cr_expect_eq(rt_size(a, 0), 2);
    cr_expect_eq(rt_size(a, 1), 3);
    cr_expect_eq(rt_size(a, -1), 3);
    cr_expect_eq(rt_size(a, -2), 2);
    cr_expect_eq(rt_numel(a), 6);
    cr_expect_eq(rt_dtype_of(a), RT_F32);
    cr_expect_eq(rt_device_of(a), RT_CPU);
    char sbuf[64];
    cr_expect_str_eq(rt_shape_str(a, sbuf, sizeof sbuf), "[2, 3]");
    int64_t shp[RT_MAX_DIMS];
    cr_expect_eq(rt_shape(a, shp, RT_MAX_DIMS), 2);
    cr_expect(shp[0] == 2 && shp[1] == 3);
    float f32out[6];
    cr_assert_eq(rt_to_data(a, RT_F32, f32out, sizeof f32out), RT_OK);
    cr_expect(memcmp(f32in, f32out, sizeof f32in) == 0, "f32 round trip not bit-exact");
    const double f32as64[6] = {1.5, -2.0, 3.25, 0.0, 7.0, -8.0};
    tc_expect_f64(a, f32as64, 6, 0.0, "f32 read as f64");
    /* The buffer must be large enough. */
    cr_expect(rt_to_data(a, RT_F32, f32out, 5 * sizeof(float)) < 0, "short buffer accepted");
    rt_clear_error();
    /* Zero-copy pointer of a contiguous CPU tensor. */
    const float *p = rt_data_ptr(a);
    cr_assert(p != NULL);
    cr_expect(p[0] == 1.5f && p[5] == -8.0f);
    rt_tensor *at = rt_transpose(S, a, 0, 1);
    cr_expect(rt_data_ptr(at) == NULL, "rt_data_ptr of a non-contiguous view must be NULL");
    rt_clear_error();

    /* --- float64: values f32 cannot hold survive exactly --- */
    const double f64in[4] = {0.1, -1e-300, 1e300, 1.0 / 3.0};
    const int64_t s4[1] = {4};
    rt_tensor *d = rt_from_data(S, f64in, s4, 1, RT_OPTS(RT_F64));
    cr_assert(d != NULL);
    cr_expect_eq(rt_dtype_of(d), RT_F64);
    tc_expect_f64(d, f64in, 4, 0.0, "f64 round trip");
    cr_expect_str_eq(rt_shape_str(d, sbuf, sizeof sbuf), "[4]");

    /* --- int64: large values exact --- */
    const int64_t i64in[3] = {((int64_t)1 << 40) + 3, -7, 0};
    const int64_t s3[1] = {3};
    rt_tensor *iv = rt_from_data(S, i64in, s3, 1, RT_OPTS(RT_I64));
    cr_assert(iv != NULL);
    cr_expect_eq(rt_dtype_of(iv), RT_I64);
    tc_expect_i64(iv, i64in, 3, "i64 round trip");

    /* --- bool and uint8 --- */
    const uint8_t bin[4] = {1, 0, 0, 1};
    rt_tensor *bt = rt_from_data(S, bin, s4, 1, RT_OPTS(RT_BOOL));
    cr_assert(bt != NULL);
    cr_expect_eq(rt_dtype_of(bt), RT_BOOL);
    uint8_t bout[4];
    cr_assert_eq(rt_to_data(bt, RT_BOOL, bout, sizeof bout), RT_OK);
    cr_expect(memcmp(bin, bout, 4) == 0);
    const int64_t bas64[4] = {1, 0, 0, 1};
    tc_expect_i64(bt, bas64, 4, "bool read as i64");
    const uint8_t u8in[3] = {0, 255, 17};
    rt_tensor *u8 = rt_from_data(S, u8in, s3, 1, RT_OPTS(RT_U8));
    cr_assert(u8 != NULL);
    cr_expect_eq(rt_dtype_of(u8), RT_U8);
    const int64_t u8as64[3] = {0, 255, 17};
    tc_expect_i64(u8, u8as64, 3, "u8 read as i64");

    /* --- bfloat16: raw bit patterns in, floats out; floats in, rounded bits out --- */
    const uint16_t bf_bits[4] = {0x3F80, 0xC000, 0x3F00, 0x4040}; /* 1, -2, 0.5, 3 */
    rt_tensor *bf = rt_from_data(S, bf_bits, s4, 1, RT_OPTS(RT_BF16));
    cr_assert(bf != NULL, "%s", rt_last_error());
    cr_expect_eq(rt_dtype_of(bf), RT_BF16);
    const double bf_vals[4] = {1.0, -2.0, 0.5, 3.0};
    tc_expect_f64(bf, bf_vals, 4, 0.0, "bf16 read as f64");
    /* 1 + 3*2^-9 is nearest to 1 + 2^-7 in bf16 (7 stored mantissa bits): 0x3F81. */
    const float to_bf[4] = {1.0f, -2.0f, 1.005859375f, 3.0f};
    rt_tensor *fb = rt_from_data(S, to_bf, s4, 1, RT_OPTS(RT_F32));
    uint16_t bf_out[4];
    cr_assert_eq(rt_to_data(fb, RT_BF16, bf_out, sizeof bf_out), RT_OK, "%s", rt_last_error());
    cr_expect(bf_out[0] == 0x3F80 && bf_out[1] == 0xC000 && bf_out[2] == 0x3F81 &&
                  bf_out[3] == 0x4040,
              "bf16 bits %04x %04x %04x %04x", bf_out[0], bf_out[1], bf_out[2], bf_out[3]);
    rt_tensor *bf2 = rt_to_dtype(S, fb, RT_BF16);
    cr_expect_eq(rt_dtype_of(bf2), RT_BF16);
    const double bf_round[4] = {1.0, -2.0, 1.0078125, 3.0};
    tc_expect_f64(bf2, bf_round, 4, 0.0, "f32 -> bf16 -> f64");

    /* --- factories --- */
    const int64_t s22[2] = {2, 2};
    rt_tensor *z = rt_zeros(S, s22, 2, RT_OPTS(RT_F64));
    const double zeros4[4] = {0, 0, 0, 0};
    tc_expect_shape(z, s22, 2, "zeros");
    cr_expect_eq(rt_dtype_of(z), RT_F64);
    tc_expect_f64(z, zeros4, 4, 0.0, "zeros");
    rt_tensor *o = rt_ones(S, s3, 1, RT_OPTS(RT_I64));
    const int64_t ones3[3] = {1, 1, 1};
    cr_expect_eq(rt_dtype_of(o), RT_I64);
    tc_expect_i64(o, ones3, 3, "ones i64");
    rt_tensor *fl = rt_full(S, s3, 1, 2.5, RT_OPTS(RT_F32));
    const double full3[3] = {2.5, 2.5, 2.5};
    tc_expect_f64(fl, full3, 3, 0.0, "full");
    rt_tensor *em = rt_empty(S, s23, 2, RT_OPTS(RT_F64));
    tc_expect_shape(em, s23, 2, "empty");
    cr_expect_eq(rt_dtype_of(em), RT_F64);

    rt_tensor *sc = rt_scalar(S, 3.5, RT_OPTS(RT_F64));
    cr_assert(sc != NULL);
    cr_expect_eq(rt_ndim(sc), 0);
    cr_expect_eq(rt_numel(sc), 1);
    cr_expect_str_eq(rt_shape_str(sc, sbuf, sizeof sbuf), "[]");
    cr_expect_eq(rt_item(sc), 3.5);
    rt_tensor *sci = rt_scalar(S, -12, RT_OPTS(RT_I64));
    cr_expect_eq(rt_item_i64(sci), -12);

    rt_tensor *ar = rt_arange(S, 0, 5, 1, RT_OPTS(RT_I64));
    const int64_t ar_want[5] = {0, 1, 2, 3, 4};
    tc_expect_i64(ar, ar_want, 5, "arange i64");
    cr_expect_eq(rt_dtype_of(ar), RT_I64);
    rt_tensor *arf = rt_arange(S, 1, 2, 0.25, RT_OPTS(RT_F64));
    const double arf_want[4] = {1.0, 1.25, 1.5, 1.75};
    tc_expect_f64(arf, arf_want, 4, 0.0, "arange f64 step 0.25");

    rt_tensor *zl = rt_zeros_like(S, a);
    tc_expect_shape(zl, s23, 2, "zeros_like");
    cr_expect_eq(rt_dtype_of(zl), RT_F32);
    const double zeros6[6] = {0, 0, 0, 0, 0, 0};
    tc_expect_f64(zl, zeros6, 6, 0.0, "zeros_like");
    rt_tensor *ol = rt_ones_like(S, iv);
    cr_expect_eq(rt_dtype_of(ol), RT_I64);
    tc_expect_i64(ol, ones3, 3, "ones_like");
    rt_tensor *fll = rt_full_like(S, d, -0.75);
    const double m075[4] = {-0.75, -0.75, -0.75, -0.75};
    cr_expect_eq(rt_dtype_of(fll), RT_F64);
    tc_expect_f64(fll, m075, 4, 0.0, "full_like");

    const int64_t s33[2] = {3, 3};
    rt_tensor *m = rt_arange(S, 1, 10, 1, RT_OPTS(RT_F64));
    m = rt_reshape(S, m, s33, 2);
    const double tril0[9] = {1, 0, 0, 4, 5, 0, 7, 8, 9};
    const double trilm1[9] = {0, 0, 0, 4, 0, 0, 7, 8, 0};
    const double triu0[9] = {1, 2, 3, 0, 5, 6, 0, 0, 9};
    const double triu1[9] = {0, 2, 3, 0, 0, 6, 0, 0, 0};
    tc_expect_f64(rt_tril(S, m, 0), tril0, 9, 0.0, "tril k=0");
    tc_expect_f64(rt_tril(S, m, -1), trilm1, 9, 0.0, "tril k=-1");
    tc_expect_f64(rt_triu(S, m, 0), triu0, 9, 0.0, "triu k=0");
    tc_expect_f64(rt_triu(S, m, 1), triu1, 9, 0.0, "triu k=1");
    /* A boolean causal mask is tril of ones. */
    rt_tensor *mask = rt_tril(S, rt_ones(S, s33, 2, RT_OPTS(RT_BOOL)), 0);
    cr_expect_eq(rt_dtype_of(mask), RT_BOOL);
    const int64_t mask_want[9] = {1, 0, 0, 1, 1, 0, 1, 1, 1};
    tc_expect_i64(mask, mask_want, 9, "tril bool");

    /* --- rt_equal / rt_max_abs_diff --- */
    const double d2[4] = {0.1, -1e-300, 1e300, 1.0 / 3.0 + 0.25};
    rt_tensor *dd = tc_f64(S, d2, s4, 1);
    cr_expect(rt_equal(d, d) == 1);
    cr_expect(rt_equal(d, dd) == 0);
    cr_expect(fabs(rt_max_abs_diff(d, dd) - 0.25) < 1e-15);

    /* --- handle lifetime: scope counts, keep, move, free, alias, assign --- */
    rt_scope *S2 = rt_scope_new();
    cr_expect_eq(rt_scope_count(S2), 0);
    rt_tensor *h1 = rt_ones(S2, s3, 1, RT_OPTS(RT_F64));
    rt_tensor *h2 = rt_zeros(S2, s3, 1, RT_OPTS(RT_F64));
    rt_tensor *h3 = rt_full(S2, s3, 1, 4.0, RT_OPTS(RT_F64));
    cr_expect_eq(rt_scope_count(S2), 3);
    rt_keep(h1); /* now caller-owned */
    cr_expect_eq(rt_scope_count(S2), 2);
    rt_free(h2);
    cr_expect_eq(rt_scope_count(S2), 1);
    rt_move(h1, S2);
    cr_expect_eq(rt_scope_count(S2), 2);
    rt_move(h3, NULL);
    cr_expect_eq(rt_scope_count(S2), 1);
    rt_tensor *al = rt_alias(S2, h3); /* same storage as h3 */
    cr_expect_eq(rt_scope_count(S2), 2);
    cr_assert_eq(rt_fill_(al, -1.0), RT_OK);
    const double neg1[3] = {-1, -1, -1};
    tc_expect_f64(h3, neg1, 3, 0.0, "write through alias");
    cr_assert_eq(rt_assign(h1, h3), RT_OK); /* h1 now refers to h3's tensor */
    tc_expect_f64(h1, neg1, 3, 0.0, "assigned handle");
    rt_scope_reset(S2);
    cr_expect_eq(rt_scope_count(S2), 0);
    tc_expect_f64(h3, neg1, 3, 0.0, "caller-owned handle outlives scope reset");
    rt_free(h3);
    rt_tensor *own = rt_ones(NULL, s3, 1, RT_OPTS(RT_F64)); /* S == NULL: caller-owned */
    cr_assert(own != NULL);
    tc_expect_f64(own, (const double[3]){1, 1, 1}, 3, 0.0, "caller-owned");
    rt_free(own);
    rt_free(NULL);
    rt_scope_free(S2);
    rt_scope_free(NULL);
    rt_scope_free(S);
}

static void check_random_generators(void)
{
    rt_scope *S = rt_scope_new();
    const int64_t s4[1] = {4};

    /* torch.randn with a seed-0 generator. Expected values from
     *   /usr/bin/python3 -c "import torch;g=torch.Generator().manual_seed(0);
     *                        print([float(x).hex() for x in torch.randn(4,generator=g)])"
     * -> ['0x1.8a7eb8p+0', '-0x1.2c78ap-2', '-0x1.16e292p+1', '0x1.23096cp-1']
     *    (1.5409960747, -0.2934288979, -2.1787893772, 0.5684312582), libtorch 1.13. */
    rt_gen *g = rt_gen_new(0);
    cr_assert(g != NULL);
    rt_tensor *r = rt_randn(S, s4, 1, g, RT_OPTS(RT_F32));
    float rv[4];
    cr_assert_eq(rt_to_data(r, RT_F32, rv, sizeof rv), RT_OK);
    const float want32[4] = {0x1.8a7eb8p+0f, -0x1.2c78ap-2f, -0x1.16e292p+1f, 0x1.23096cp-1f};
    for (int i = 0; i < 4; i++)
        cr_expect(rv[i] == want32[i], "randn f32 seed 0 [%d] = %.9g, torch gives %.9g", i, rv[i],
                  want32[i]);
    /* Same in float64:  torch.randn(4, generator=g, dtype=torch.float64).tolist() ->
     * [1.5409961082440433, -0.2934289057609464, -2.1787893820745574, 0.5684312772806678] */
    cr_assert_eq(rt_gen_seed(g, 0), RT_OK);
    rt_tensor *r64 = rt_randn(S, s4, 1, g, RT_OPTS(RT_F64));
    const double want64[4] = {1.5409961082440433, -0.2934289057609464, -2.1787893820745574,
                              0.5684312772806678};
    tc_expect_f64(r64, want64, 4, 0.0, "randn f64 seed 0");

    /* Generator state: 5056 bytes on libtorch 1.13, the bytes Python's get_state()
     * gives. sum(torch.Generator().manual_seed(0).get_state().tolist()) == 315707. */
    size_t nstate = 0;
    cr_assert_eq(rt_gen_seed(g, 0), RT_OK);
    cr_assert_eq(rt_gen_get_state(g, NULL, 0, &nstate), RT_OK, "%s", rt_last_error());
    cr_expect(nstate > 0 && nstate <= 1 << 16, "state size %zu", nstate);
    if (strncmp(rt_torch_version(), "1.13", 4) == 0)
        cr_expect_eq(nstate, 5056, "libtorch 1.13 CPU generator state is 5056 bytes, got %zu",
                     nstate);
    uint8_t state[1 << 16];
    size_t got = 0;
    cr_assert_eq(rt_gen_get_state(g, state, sizeof state, &got), RT_OK);
    cr_expect_eq(got, nstate);
    if (nstate == 5056) {
        long sum = 0;
        for (size_t i = 0; i < got; i++)
            sum += state[i];
        cr_expect_eq(sum, 315707, "state bytes differ from Python's get_state() (sum %ld)", sum);
    }
    cr_expect(rt_gen_get_state(g, state, 16, &got) < 0, "a too small state buffer was accepted");
    rt_clear_error();

    /* Round trip mid-stream: take the state after some draws (including an odd
     * number of normals, so the cached normal matters), draw, restore, draw again. */
    const int64_t s7[1] = {7}, s33[2] = {3, 3};
    cr_assert(rt_randn(S, s7, 1, g, RT_OPTS(RT_F64)) != NULL);
    cr_assert(rt_rand(S, s7, 1, g, RT_OPTS(RT_F32)) != NULL);
    cr_assert_eq(rt_gen_get_state(g, state, sizeof state, &got), RT_OK);
    rt_tensor *n1 = rt_randn(S, s33, 2, g, RT_OPTS(RT_F64));
    rt_tensor *u1 = rt_rand(S, s7, 1, g, RT_OPTS(RT_F64));
    rt_tensor *k1 = rt_randint(S, 0, 1000, s7, 1, g, RT_OPTS(RT_I64));
    cr_assert_eq(rt_gen_set_state(g, state, got), RT_OK, "%s", rt_last_error());
    rt_tensor *n2 = rt_randn(S, s33, 2, g, RT_OPTS(RT_F64));
    rt_tensor *u2 = rt_rand(S, s7, 1, g, RT_OPTS(RT_F64));
    rt_tensor *k2 = rt_randint(S, 0, 1000, s7, 1, g, RT_OPTS(RT_I64));
    cr_expect(rt_equal(n1, n2) == 1, "randn after set_state differs");
    cr_expect(rt_equal(u1, u2) == 1, "rand after set_state differs");
    cr_expect(rt_equal(k1, k2) == 1, "randint after set_state differs");
    /* The state carries over to another generator. */
    rt_gen *g2 = rt_gen_new(12345);
    cr_assert_eq(rt_gen_set_state(g2, state, got), RT_OK);
    rt_tensor *n3 = rt_randn(S, s33, 2, g2, RT_OPTS(RT_F64));
    cr_expect(rt_equal(n1, n3) == 1, "state copied into another generator differs");
    cr_expect(rt_gen_set_state(g2, state, 3) < 0, "a truncated state was accepted");
    rt_clear_error();

    /* Same seed -> identical; different seed -> different. */
    rt_gen *ga = rt_gen_new(42), *gb = rt_gen_new(42), *gc = rt_gen_new(43);
    const int64_t s100[1] = {100};
    rt_tensor *ra = rt_randn(S, s100, 1, ga, RT_OPTS(RT_F32));
    rt_tensor *rb = rt_randn(S, s100, 1, gb, RT_OPTS(RT_F32));
    rt_tensor *rc = rt_randn(S, s100, 1, gc, RT_OPTS(RT_F32));
    cr_expect(rt_equal(ra, rb) == 1, "same seed, different draws");
    cr_expect(rt_equal(ra, rc) == 0, "different seeds, same draws");
    /* The next draws of a generator differ from its first ones. */
    cr_expect(rt_equal(ra, rt_randn(S, s100, 1, ga, RT_OPTS(RT_F32))) == 0);

    /* rand in [0, 1); randint in [low, high) hitting every value. */
    const int64_t s1000[1] = {1000};
    double buf[1000];
    tc_read_f64(rt_rand(S, s1000, 1, ga, RT_OPTS(RT_F64)), buf, 1000, "rand");
    double lo = 1, hi = 0;
    for (int i = 0; i < 1000; i++) {
        lo = fmin(lo, buf[i]);
        hi = fmax(hi, buf[i]);
    }
    cr_expect(lo >= 0.0 && hi < 1.0 && lo < 0.01 && hi > 0.99, "rand range [%g, %g]", lo, hi);
    int64_t ib[1000];
    rt_tensor *ri = rt_randint(S, 3, 7, s1000, 1, ga, RT_OPTS(RT_I64));
    cr_assert(ri != NULL);
    cr_expect_eq(rt_dtype_of(ri), RT_I64);
    cr_assert_eq(rt_to_data(ri, RT_I64, ib, sizeof ib), RT_OK);
    int seen[4] = {0, 0, 0, 0};
    for (int i = 0; i < 1000; i++) {
        cr_assert(ib[i] >= 3 && ib[i] < 7, "randint value %lld outside [3, 7)", (long long)ib[i]);
        seen[ib[i] - 3]++;
    }
    cr_expect(seen[0] > 0 && seen[1] > 0 && seen[2] > 0 && seen[3] > 0, "randint misses a value");

    /* randperm is a permutation of 0..n-1. */
    rt_tensor *pm = rt_randperm(S, 50, ga);
    cr_assert(pm != NULL);
    cr_expect_eq(rt_dtype_of(pm), RT_I64);
    int64_t pv[50];
    int hit[50] = {0};
    cr_assert_eq(rt_to_data(pm, RT_I64, pv, sizeof pv), RT_OK);
    int identity = 1;
    for (int i = 0; i < 50; i++) {
        cr_assert(pv[i] >= 0 && pv[i] < 50);
        hit[pv[i]]++;
        identity &= pv[i] == i;
    }
    for (int i = 0; i < 50; i++)
        cr_expect_eq(hit[i], 1, "randperm: %d appears %d times", i, hit[i]);
    cr_expect(!identity, "randperm(50) returned the identity");

    /* multinomial never draws a zero-weight class. */
    const double w[8] = {0, 1, 0, 3, 2, 0, 0, 0};
    const int64_t s24[2] = {2, 4};
    rt_tensor *probs = tc_f64(S, w, s24, 2);
    rt_tensor *mn = rt_multinomial(S, probs, 200, 1, ga);
    const int64_t s2x200[2] = {2, 200};
    tc_expect_shape(mn, s2x200, 2, "multinomial");
    int64_t mv[400];
    cr_assert_eq(rt_to_data(mn, RT_I64, mv, sizeof mv), RT_OK);
    int n1s = 0, n3s = 0;
    for (int i = 0; i < 200; i++) {
        cr_assert(mv[i] == 1 || mv[i] == 3, "row 0 drew zero-weight class %lld", (long long)mv[i]);
        n1s += mv[i] == 1;
        n3s += mv[i] == 3;
        cr_assert(mv[200 + i] == 0, "row 1 drew zero-weight class %lld", (long long)mv[200 + i]);
    }
    cr_expect(n1s > 20 && n3s > 100, "multinomial weights 1:3 gave %d:%d", n1s, n3s);
    rt_tensor *mn2 = rt_multinomial(S, rt_select(S, probs, 0, 0), 2, 0, ga);
    int64_t m2[2];
    cr_assert_eq(rt_to_data(mn2, RT_I64, m2, sizeof m2), RT_OK, "%s", rt_last_error());
    cr_expect((m2[0] == 1 && m2[1] == 3) || (m2[0] == 3 && m2[1] == 1),
              "multinomial without replacement drew %lld %lld", (long long)m2[0], (long long)m2[1]);

    /* Gumbel noise is finite; its mean is the Euler-Mascheroni constant. */
    const int64_t s4096[1] = {4096};
    rt_tensor *gu = rt_gumbel(S, s4096, 1, ga, RT_OPTS(RT_F32));
    cr_assert(gu != NULL);
    cr_expect(rt_item(rt_all(S, rt_isfinite(S, gu), RT_DIM_ALL, 0)) == 1.0, "gumbel not finite");
    double gmean = rt_item(rt_mean(S, gu, RT_DIM_ALL, 0));
    cr_expect(fabs(gmean - 0.5772156649) < 0.08, "gumbel mean %g", gmean);

    /* In-place initialisers. */
    rt_tensor *ui = rt_empty(S, s1000, 1, RT_OPTS(RT_F64));
    cr_assert_eq(rt_uniform_(ui, -2.0, -1.0, ga), RT_OK);
    tc_read_f64(ui, buf, 1000, "uniform_");
    for (int i = 0; i < 1000; i++)
        cr_assert(buf[i] >= -2.0 && buf[i] < -1.0, "uniform_ value %g", buf[i]);
    cr_assert_eq(rt_normal_(ui, 5.0, 0.5, ga), RT_OK);
    double nm = rt_item(rt_mean(S, ui, RT_DIM_ALL, 0));
    double ns = rt_item(rt_std(S, ui, RT_DIM_ALL, 1, 0));
    cr_expect(fabs(nm - 5.0) < 0.1 && fabs(ns - 0.5) < 0.05, "normal_ mean %g std %g", nm, ns);

    /* A NULL generator is an error, never the global one. */
    rt_clear_error();
    cr_expect(rt_randn(S, s4, 1, NULL, RT_OPTS(RT_F32)) == NULL, "randn with NULL generator");
    tc_expect_clean_error("randn(NULL gen)");
    rt_clear_error();
    cr_expect(rt_randperm(S, 4, NULL) == NULL);
    tc_expect_clean_error("randperm(NULL gen)");
    rt_clear_error();
    cr_expect(rt_uniform_(ui, 0, 1, NULL) < 0);
    tc_expect_clean_error("uniform_(NULL gen)");
    rt_clear_error();

    rt_gen_free(g);
    rt_gen_free(g2);
    rt_gen_free(ga);
    rt_gen_free(gb);
    rt_gen_free(gc);
    rt_gen_free(NULL);
    rt_scope_free(S);
}

/* One test process for the whole file: libtorch costs ~0.6 s per process. */
Test(create, buffers_random_and_queries)
{
    check_buffers_factories_queries();
    check_random_generators();
}
