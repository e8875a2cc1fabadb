/*
 * test_replay.c -- Criterion tests for rollout/replay.h: wrap-around, sampling
 * reproducible from a generator seed, and a bit-exact save/resume of a small
 * collection loop (vector env state blob + replay buffer + sampling
 * generator) through trainer/ckpt.h. Links libtorch: two Test()s.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "envl.h"
#include "replay.h"
#include "run.h"
#include "venv.h"

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must name the folder of the test plugins"
#endif

/* Transition g: obs = [g, -g], next = [g+0.5, -g-0.5], action = [10g],
 * reward = 100g, terminated = (g % 3 == 0), truncated = (g % 4 == 0). */
static void make_rows(int64_t first, int64_t n, float *obs, float *nobs, float *act, float *rew, uint8_t *term,
                      uint8_t *trunc) {
    for (int64_t i = 0; i < n; i++) {
        int64_t g = first + i;
        obs[2 * i] = (float)g;
        obs[2 * i + 1] = (float)-g;
        nobs[2 * i] = (float)g + 0.5f;
        nobs[2 * i + 1] = (float)-g - 0.5f;
        act[i] = 10.0f * (float)g;
        rew[i] = 100.0f * (float)g;
        term[i] = (uint8_t)(g % 3 == 0);
        trunc[i] = (uint8_t)(g % 4 == 0);
    }
}

static void add_range(rb *b, int64_t first, int64_t n) {
    float obs[64], nobs[64], act[32], rew[32];
    uint8_t term[32], trunc[32];
    cr_assert_leq(n, 32);
    make_rows(first, n, obs, nobs, act, rew, term, trunc);
    cr_assert_eq(rb_add(b, n, obs, nobs, act, rew, term, trunc), RT_OK, "%s", rt_last_error());
}

/* Row r of the buffer holds transition g. */
static void expect_row_is(const rb *b, int64_t r, int64_t g) {
    const float *o = rt_data_ptr(b->observations), *no = rt_data_ptr(b->next_observations);
    const float *a = rt_data_ptr(b->actions), *rw = rt_data_ptr(b->rewards);
    const float *d = rt_data_ptr(b->dones), *t = rt_data_ptr(b->timeouts);
    cr_assert_float_eq(o[2 * r], (float)g, 0.0, "row %lld obs %g want %lld", (long long)r, o[2 * r], (long long)g);
    cr_assert_float_eq(o[2 * r + 1], (float)-g, 0.0);
    cr_assert_float_eq(no[2 * r], (float)g + 0.5f, 0.0);
    cr_assert_float_eq(a[r], 10.0f * (float)g, 0.0);
    cr_assert_float_eq(rw[r], 100.0f * (float)g, 0.0);
    cr_assert_float_eq(d[r], g % 3 == 0 ? 1.0f : 0.0f, 0.0);
    cr_assert_float_eq(t[r], g % 4 == 0 ? 1.0f : 0.0f, 0.0);
}

Test(replay, wraparound_and_sampling) {
    cr_assert_null(rb_new(0, 2, 1));
    cr_assert_not_null(strstr(rt_last_error(), "must all be positive"), "%s", rt_last_error());

    rb *b = rb_new(5, 2, 1);
    cr_assert_not_null(b, "%s", rt_last_error());
    cr_assert_eq(rb_size(b), 0);
    rt_gen *g = rt_gen_new(1);
    rb_batch batch;
    cr_assert_eq(rb_sample(b, NULL, 4, g, &batch), RT_EINVAL);
    cr_assert_not_null(strstr(rt_last_error(), "empty"), "%s", rt_last_error());

    add_range(b, 0, 3);
    cr_assert_eq(b->pos, 3);
    cr_assert_eq(b->full, 0);
    cr_assert_eq(rb_size(b), 3);
    /* Partly full: every sampled index is below pos. */
    rt_scope *S = rt_scope_new();
    cr_assert_eq(rb_sample(b, S, 200, g, &batch), RT_OK, "%s", rt_last_error());
    int64_t idx[200];
    cr_assert_eq(rt_to_data(batch.indices, RT_I64, idx, sizeof idx), RT_OK);
    int hit[3] = {0, 0, 0};
    for (int i = 0; i < 200; i++) {
        cr_assert(idx[i] >= 0 && idx[i] < 3, "index %lld outside [0, 3)", (long long)idx[i]);
        hit[idx[i]] = 1;
    }
    cr_assert(hit[0] && hit[1] && hit[2]);
    rt_scope_reset(S);

    add_range(b, 3, 4); /* 7 transitions in 5 rows: rows 0,1 hold 5,6 */
    cr_assert_eq(b->pos, 2);
    cr_assert_eq(b->full, 1);
    cr_assert_eq(rb_size(b), 5);
    const int64_t want[5] = {5, 6, 2, 3, 4};
    for (int r = 0; r < 5; r++) expect_row_is(b, r, want[r]);

    /* More rows than capacity at once: the last 5 survive, pos as if added
     * one by one (12 % 5 = 2). */
    rb *c = rb_new(5, 2, 1);
    add_range(c, 0, 12);
    cr_assert_eq(c->pos, 2);
    cr_assert_eq(c->full, 1);
    const int64_t want_c[5] = {10, 11, 7, 8, 9};
    for (int r = 0; r < 5; r++) expect_row_is(c, r, want_c[r]);
    cr_assert_eq(rb_add(c, 0, NULL, NULL, NULL, NULL, NULL, NULL), RT_OK);
    cr_assert_eq(rb_add(c, 1, NULL, NULL, NULL, NULL, NULL, NULL), RT_EINVAL);

    /* Sampling is a function of the generator state: the same seed gives
     * the same batch, and each row matches the buffer at its index. */
    rt_gen *g1 = rt_gen_new(1234), *g2 = rt_gen_new(1234);
    rb_batch b1, b2;
    cr_assert_eq(rb_sample(b, S, 64, g1, &b1), RT_OK, "%s", rt_last_error());
    cr_assert_eq(rb_sample(b, S, 64, g2, &b2), RT_OK, "%s", rt_last_error());
    cr_assert(rt_equal(b1.indices, b2.indices));
    cr_assert(rt_equal(b1.observations, b2.observations));
    cr_assert(rt_equal(b1.next_observations, b2.next_observations));
    cr_assert(rt_equal(b1.dones, b2.dones));
    int64_t shape[2];
    cr_assert_eq(rt_shape(b1.observations, shape, 2), 2);
    cr_assert_eq(shape[0], 64);
    cr_assert_eq(shape[1], 2);
    cr_assert_eq(rt_shape(b1.actions, shape, 2), 2);
    cr_assert_eq(shape[1], 1);
    cr_assert_eq(rt_shape(b1.rewards, shape, 2), 1);
    cr_assert_eq(rt_dtype_of(b1.dones), RT_F32);
    int64_t si[64];
    float so[128], sr[64], sd[64], st[64];
    cr_assert_eq(rt_to_data(b1.indices, RT_I64, si, sizeof si), RT_OK);
    cr_assert_eq(rt_to_data(b1.observations, RT_F32, so, sizeof so), RT_OK);
    cr_assert_eq(rt_to_data(b1.rewards, RT_F32, sr, sizeof sr), RT_OK);
    cr_assert_eq(rt_to_data(b1.dones, RT_F32, sd, sizeof sd), RT_OK);
    cr_assert_eq(rt_to_data(b1.timeouts, RT_F32, st, sizeof st), RT_OK);
    int distinct = 0;
    for (int i = 0; i < 64; i++) {
        int64_t gid = want[si[i]];
        cr_assert_float_eq(so[2 * i], (float)gid, 0.0);
        cr_assert_float_eq(sr[i], 100.0f * (float)gid, 0.0);
        cr_assert_float_eq(sd[i], gid % 3 == 0 ? 1.0f : 0.0f, 0.0);
        cr_assert_float_eq(st[i], gid % 4 == 0 ? 1.0f : 0.0f, 0.0);
        if (si[i] != si[0]) distinct = 1;
    }
    cr_assert(distinct, "64 draws all hit one row");
    /* The next draw continues the stream: a different batch. */
    cr_assert_eq(rb_sample(b, S, 64, g1, &b2), RT_OK);
    cr_assert_not(rt_equal(b1.indices, b2.indices));
    /* The indices are torch.randint(0, 5, (64,), generator=manual_seed(1234)). */
    rt_gen *g3 = rt_gen_new(1234);
    int64_t sh[1] = {64};
    rt_tensor *ref = rt_randint(S, 0, 5, sh, 1, g3, RT_OPTS(RT_I64));
    cr_assert(rt_equal(ref, b1.indices));

    cr_assert_eq(rb_validate(b), RT_OK);
    b->pos = 7;
    cr_assert_eq(rb_validate(b), RT_EINVAL);
    b->pos = 2;
    rt_scope_free(S);
    rt_gen_free(g);
    rt_gen_free(g1);
    rt_gen_free(g2);
    rt_gen_free(g3);
    rb_free(b);
    rb_free(c);
    rb_free(NULL);
}

/* ---- a small collection loop, saved and resumed ------------------------- */

typedef struct loop {
    envl_plugin *p;
    venv *v;
    rb *buf;
    rt_gen *act_gen, *sample_gen;
    unsigned char *venv_blob;
    size_t venv_blob_size;
    ck_state *st;
} loop;

static void loop_open(loop *L, uint64_t seed) {
    char path[1024], err[1024] = "";
    snprintf(path, sizeof path, "%s/counter.so", TEST_PLUGIN_DIR);
    cr_assert_eq(envl_open_file(path, &L->p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(venv_create(L->p, "max_steps=7;term_at=3", 4, seed, 10, &L->v, err, sizeof err), 0, "%s", err);
    cr_assert_eq(venv_reset(L->v), 0, "%s", venv_error(L->v));
    L->buf = rb_new(16, 2, 1); /* small: wraps during the run */
    cr_assert_not_null(L->buf, "%s", rt_last_error());
    L->act_gen = rt_gen_new(seed + 1);
    L->sample_gen = rt_gen_new(seed + 2);
    L->venv_blob_size = venv_state_size(L->v);
    L->venv_blob = calloc(1, L->venv_blob_size);
    L->st = ck_state_new();
    cr_assert_eq(ck_set_algorithm(L->st, "rollout-test"), CK_OK);
    cr_assert_eq(run_ck_add_replay(L->st, L->buf, "replay", 1), CK_OK, "%s", ck_error(L->st));
    cr_assert_eq(ck_add_gen(L->st, "actions", L->act_gen), CK_OK);
    cr_assert_eq(ck_add_gen(L->st, "replay", L->sample_gen), CK_OK);
    cr_assert_eq(ck_add_blob(L->st, "env/state", L->venv_blob, L->venv_blob_size), CK_OK);
}

static void loop_close(loop *L) {
    ck_state_free(L->st);
    free(L->venv_blob);
    rt_gen_free(L->act_gen);
    rt_gen_free(L->sample_gen);
    rb_free(L->buf);
    venv_free(L->v);
    envl_close(L->p);
}

/* One iteration: random actions, step, store (s, a, r, s'_final, term,
 * trunc), sample 8; the sampled rewards are summed into *trace. */
static void loop_step(loop *L, rt_scope *S, double *trace) {
    const venv_bufs *B = venv_buffers(L->v);
    float obs[8], act[4];
    memcpy(obs, B->obs, sizeof obs);
    int64_t sh[1] = {4};
    rt_tensor *a = rt_rand(S, sh, 1, L->act_gen, RT_OPTS(RT_F32));
    cr_assert_eq(rt_to_data(a, RT_F32, act, sizeof act), RT_OK);
    cr_assert_eq(venv_step(L->v, act), 0, "%s", venv_error(L->v));
    cr_assert_eq(rb_add(L->buf, 4, obs, B->final_obs, act, B->reward, B->terminated, B->truncated), RT_OK);
    rb_batch batch;
    cr_assert_eq(rb_sample(L->buf, S, 8, L->sample_gen, &batch), RT_OK, "%s", rt_last_error());
    float r[8];
    cr_assert_eq(rt_to_data(batch.rewards, RT_F32, r, sizeof r), RT_OK);
    for (int i = 0; i < 8; i++) *trace = *trace * 1.0001 + r[i];
    rt_scope_reset(S);
}

Test(replay, checkpoint_resume_is_bit_exact) {
    char dir[256], ck[512], err[4096] = "";
    snprintf(dir, sizeof dir, "/tmp/rlt-replay-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    snprintf(ck, sizeof ck, "%s/step.h5", dir);
    rt_scope *S = rt_scope_new();
    const int N = 30, K = 11;

    /* Straight: N iterations. */
    loop A;
    memset(&A, 0, sizeof A);
    loop_open(&A, 5);
    double trace_a = 0.0;
    for (int i = 0; i < N; i++) loop_step(&A, S, &trace_a);

    /* K iterations, save, and a fresh process-like set of objects loads it. */
    loop B;
    memset(&B, 0, sizeof B);
    loop_open(&B, 5);
    double trace_b = 0.0;
    for (int i = 0; i < K; i++) loop_step(&B, S, &trace_b);
    cr_assert_eq(venv_get_state(B.v, B.venv_blob, B.venv_blob_size), 0, "%s", venv_error(B.v));
    ck_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.step = K;
    cr_assert_eq(ck_save(B.st, ck, &meta, err, sizeof err), CK_OK, "%s", err);
    int64_t pos_b = B.buf->pos, full_b = B.buf->full;
    loop_close(&B);

    loop C;
    memset(&C, 0, sizeof C);
    loop_open(&C, 99); /* other seeds: everything must come from the file */
    ck_meta got;
    memset(&got, 0, sizeof got);
    cr_assert_eq(ck_load(C.st, ck, &got, err, sizeof err), CK_OK, "%s", err);
    ck_meta_release(&got);
    cr_assert_eq(venv_set_state(C.v, C.venv_blob, C.venv_blob_size), 0, "%s", venv_error(C.v));
    cr_assert_eq(rb_validate(C.buf), RT_OK, "%s", rt_last_error());
    cr_assert_eq(C.buf->pos, pos_b);
    cr_assert_eq(C.buf->full, full_b);
    cr_assert_eq(full_b, 1, "K=%d iterations of 4 envs should have wrapped a 16-row buffer", K);
    for (int i = K; i < N; i++) loop_step(&C, S, &trace_b);

    cr_assert_eq(memcmp(&trace_a, &trace_b, sizeof trace_a), 0, "sampled rewards differ: %.17g vs %.17g", trace_a,
                 trace_b);
    cr_assert_eq(A.buf->pos, C.buf->pos);
    cr_assert(rt_equal(A.buf->observations, C.buf->observations));
    cr_assert(rt_equal(A.buf->next_observations, C.buf->next_observations));
    cr_assert(rt_equal(A.buf->actions, C.buf->actions));
    cr_assert(rt_equal(A.buf->rewards, C.buf->rewards));
    cr_assert(rt_equal(A.buf->dones, C.buf->dones));
    cr_assert(rt_equal(A.buf->timeouts, C.buf->timeouts));
    cr_assert_eq(memcmp(venv_buffers(A.v)->obs, venv_buffers(C.v)->obs, 8 * sizeof(float)), 0);
    cr_assert_eq(venv_get_stats(A.v).episodes, venv_get_stats(C.v).episodes);
    cr_assert_gt(venv_get_stats(A.v).episodes, 8);

    /* A buffer of another capacity does not fit the file: refused, untouched. */
    rb *other = rb_new(32, 2, 1);
    ck_state *st = ck_state_new();
    ck_set_algorithm(st, "rollout-test");
    cr_assert_eq(run_ck_add_replay(st, other, "replay", 1), CK_OK);
    cr_assert_lt(ck_load(st, ck, NULL, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "replay/observations"), "%s", err);
    cr_assert_eq(other->pos, 0);
    cr_assert_eq(rb_size(other), 0);
    ck_state_free(st);
    rb_free(other);

    loop_close(&A);
    loop_close(&C);
    rt_scope_free(S);
    unlink(ck);
    rmdir(dir);
}
