/*
 * test_envhost.c -- Criterion tests for rollout/envl.h (plugin loader) and
 * rollout/venv.h (vector stepping with same-step autoreset). Torch-free.
 *
 * Plugins come from tests/rollout: counter.so (well-behaved, predictable
 * numbers: see plugin_counter.c) and broken_*.so (one defect each), built
 * into TEST_PLUGIN_DIR.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envl.h"
#include "venv.h"

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must name the folder of the test plugins"
#endif

static void plugin_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s.so", TEST_PLUGIN_DIR, name);
}

static void make_tmpdir(char *dir, size_t cap) {
    snprintf(dir, cap, "/tmp/rlt-envhost-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "copy %s -> %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* err must name the file and contain the reason. */
static void expect_open_fails(const char *name, const char *reason) {
    char path[1024], err[1024] = "";
    plugin_path(path, sizeof path, name);
    envl_plugin *p = (envl_plugin *)1;
    int rc = envl_open_file(path, &p, err, sizeof err);
    cr_assert_lt(rc, 0, "%s loaded", name);
    cr_assert_null(p);
    cr_assert_not_null(strstr(err, path), "error does not name the file: %s", err);
    cr_assert_not_null(strstr(err, reason), "error lacks '%s': %s", reason, err);
}

Test(loader, error_paths) {
    expect_open_fails("broken_nosym", "does not export env_plugin_get()");
    expect_open_fails("broken_null_vt", "returned NULL");
    expect_open_fails("broken_wrong_major", "wrong ABI major version 99 (this host speaks 1");
    expect_open_fails("broken_short", "struct_size");
    expect_open_fails("broken_null_fn", "NULL step_range function");
    expect_open_fails("broken_undefined", "dlopen failed");
    expect_open_fails("broken_undefined", "rlt_test_function_that_does_not_exist");
    expect_open_fails("no_such_plugin", "No such file or directory");

    /* A file that is not a shared library at all. */
    char dir[256], garbage[512], err[1024] = "";
    make_tmpdir(dir, sizeof dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.so", dir);
    FILE *f = fopen(garbage, "w");
    cr_assert_not_null(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    envl_plugin *p = NULL;
    cr_assert_lt(envl_open_file(garbage, &p, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, garbage), "%s", err);
    cr_assert_not_null(strstr(err, "dlopen failed"), "%s", err);

    /* create failures name the file and carry the plugin's reason. */
    char path[1024];
    plugin_path(path, sizeof path, "broken_create");
    cr_assert_eq(envl_open_file(path, &p, err, sizeof err), 0, "%s", err);
    env_batch *b = (env_batch *)1;
    cr_assert_lt(envl_create(p, NULL, 4, &b, err, sizeof err), 0);
    cr_assert_null(b);
    cr_assert_not_null(strstr(err, path), "%s", err);
    cr_assert_not_null(strstr(err, "no display available"), "%s", err);
    venv *v = (venv *)1;
    cr_assert_lt(venv_create(p, NULL, 2, 0, 0, &v, err, sizeof err), 0);
    cr_assert_null(v);
    cr_assert_not_null(strstr(err, "no display available"), "%s", err);
    envl_close(p);

    plugin_path(path, sizeof path, "counter");
    cr_assert_eq(envl_open_file(path, &p, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(p->vt->name, "counter");
    cr_assert_lt(envl_create(p, "fail_create=1", 1, &b, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "fail_create=1 asked this plugin to fail"), "%s", err);
    cr_assert_not_null(strstr(err, "config \"fail_create=1\""), "%s", err);
    cr_assert_lt(envl_create(p, "max_stpes=3", 1, &b, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "unknown config key 'max_stpes'"), "%s", err);
    cr_assert_lt(envl_create(p, NULL, 0, &b, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "0 environments"), "%s", err);
    envl_close(p);
    envl_close(NULL);

    unlink(garbage);
    rmdir(dir);
}

Test(loader, search_path_and_scan) {
    /* Order: --env-path dirs, then RLT_ENV_PATH, then the build's folder. */
    char d1[256], d2[256], from[1024], to[1024], err[2048] = "";
    make_tmpdir(d1, sizeof d1);
    make_tmpdir(d2, sizeof d2);
    plugin_path(from, sizeof from, "counter");
    snprintf(to, sizeof to, "%s/counter.so", d2);
    copy_file(from, to);
    char envvar[1200];
    snprintf(envvar, sizeof envvar, "%s::%s", d2, TEST_PLUGIN_DIR);
    cr_assert_eq(setenv("RLT_ENV_PATH", envvar, 1), 0);

    const char *extra[] = {d1};
    envl_search s;
    cr_assert_eq(envl_search_init(&s, extra, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.n, 4); /* d1, d2, plugins (the empty entry is skipped), builtin */
    cr_assert_str_eq(s.dirs[0], d1);
    cr_assert_str_eq(s.dirs[1], d2);
    cr_assert_str_eq(s.dirs[2], TEST_PLUGIN_DIR);
    cr_assert_str_eq(s.dirs[3], envl_builtin_dir());

    envl_plugin *p = NULL;
    cr_assert_eq(envl_open(&s, "counter", &p, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(p->path, to, "the first directory holding counter.so wins");
    envl_close(p);
    cr_assert_lt(envl_open(&s, "broken_null_vt", &p, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, TEST_PLUGIN_DIR "/broken_null_vt.so"), "%s", err);
    cr_assert_lt(envl_open(&s, "pendulumm", &p, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "'pendulumm' not found: no pendulumm.so in"), "%s", err);
    cr_assert_not_null(strstr(err, d1), "the message lists the searched dirs: %s", err);
    cr_assert_not_null(strstr(err, d2), "%s", err);

    envl_entry *e = NULL;
    size_t n = 0;
    cr_assert_eq(envl_scan(&s, &e, &n, err, sizeof err), 0, "%s", err);
    /* d2: counter; plugins dir: 7 broken + counter (shadowed). Builtin dir
     * may hold the real plugins: only look at the first 9. */
    cr_assert_geq(n, 9);
    cr_assert_str_eq(e[0].name, "counter");
    cr_assert_eq(e[0].ok, 1, "%s", e[0].error);
    cr_assert_eq(e[0].shadowed, 0);
    cr_assert_str_eq(e[0].gym_id, "Counter-v0");
    cr_assert_str_eq(e[0].plugin_name, "counter");
    cr_assert_eq(e[0].info.obs_dim, 2);
    cr_assert_eq(e[0].info.act_dim, 1);
    cr_assert_eq(e[0].info.max_episode_steps, 5);
    cr_assert_str_eq(e[0].obs_space, "Box(2) low=[-inf, 0] high=[inf, inf]");
    cr_assert_str_eq(e[0].act_space, "Box(1) low=[-1] high=[1]");
    int seen_broken = 0, seen_shadow = 0;
    for (size_t i = 1; i < 9; i++) {
        if (!strcmp(e[i].name, "counter")) {
            seen_shadow = 1;
            cr_assert_eq(e[i].shadowed, 1);
            cr_assert_eq(e[i].ok, 1);
        } else {
            seen_broken++;
            cr_assert_eq(e[i].ok, 0, "%s loaded", e[i].name);
            cr_assert_not_null(strstr(e[i].error, e[i].path), "%s: %s", e[i].name, e[i].error);
        }
    }
    cr_assert_eq(seen_broken, 7);
    cr_assert_eq(seen_shadow, 1);
    free(e);
    envl_search_free(&s);
    envl_search_free(&s); /* idempotent */
    unlink(to);
    rmdir(d1);
    rmdir(d2);

    char buf[64];
    env_space disc = {ENV_SPACE_DISCRETE, 1, 3, NULL, NULL};
    cr_assert_str_eq(envl_space_str(&disc, buf, sizeof buf), "Discrete(3)");
}

static envl_plugin *open_counter(void) {
    char path[1024], err[1024] = "";
    plugin_path(path, sizeof path, "counter");
    envl_plugin *p = NULL;
    cr_assert_eq(envl_open_file(path, &p, err, sizeof err), 0, "%s", err);
    return p;
}

static void expect_row(const float *buf, uint32_t i, float x, float t) {
    cr_assert_float_eq(buf[2 * i], x, 0.0, "row %u x: got %g want %g", i, buf[2 * i], x);
    cr_assert_float_eq(buf[2 * i + 1], t, 0.0, "row %u t: got %g want %g", i, buf[2 * i + 1], t);
}

Test(venv, same_step_autoreset_and_stats) {
    envl_plugin *p = open_counter();
    char err[1024] = "";
    venv *v = NULL;
    /* env0 (a=1) terminates at t=3 (x - x0 = 3 >= 2.5); env1 (a=0.5) and
     * env2 (a=0) are truncated at t=4. Seeds 7, 8, 9. */
    cr_assert_eq(venv_create(p, "max_steps=4;term_at=2.5", 3, 7, 4, &v, err, sizeof err), 0, "%s", err);
    const venv_bufs *B = venv_buffers(v);
    cr_assert_eq(B->n, 3);
    cr_assert_eq(B->obs_dim, 2);
    cr_assert_eq(B->act_dim, 1);
    cr_assert_eq(venv_info(v)->max_episode_steps, 4);
    cr_assert_eq(venv_act_space(v)->kind, ENV_SPACE_BOX);
    cr_assert_eq(venv_reset(v), 0, "%s", venv_error(v));
    expect_row(B->obs, 0, 7000, 0);
    expect_row(B->obs, 1, 8000, 0);
    expect_row(B->obs, 2, 9000, 0);

    const float a[3] = {1.0f, 0.5f, 0.0f};
    for (int s = 1; s <= 2; s++) {
        cr_assert_eq(venv_step(v, a), 0, "%s", venv_error(v));
        expect_row(B->obs, 0, 7000.0f + s, (float)s);
        expect_row(B->final_obs, 1, 8000.0f + 0.5f * s, (float)s);
        cr_assert_eq(B->ended[0] + B->ended[1] + B->ended[2], 0);
    }
    /* Step 3: env0 terminates. final_obs keeps its last observation; obs has
     * the new episode's first (seed 7 stream, episode 1 -> 7001). */
    cr_assert_eq(venv_step(v, a), 0, "%s", venv_error(v));
    cr_assert_eq(B->terminated[0], 1);
    cr_assert_eq(B->truncated[0], 0);
    cr_assert_eq(B->ended[0], 1);
    expect_row(B->final_obs, 0, 7003, 3);
    expect_row(B->obs, 0, 7001, 0);
    cr_assert_float_eq(B->ep_return[0], 3.0, 0.0);
    cr_assert_eq(B->ep_length[0], 3);
    expect_row(B->obs, 1, 8001.5f, 3);
    expect_row(B->final_obs, 1, 8001.5f, 3);
    cr_assert_eq(venv_get_stats(v).ended_step, 1);
    cr_assert_eq(venv_get_stats(v).episodes, 1);
    /* Step 4: env1 and env2 are truncated (not terminated). */
    cr_assert_eq(venv_step(v, a), 0, "%s", venv_error(v));
    cr_assert_eq(B->ended[0], 0);
    expect_row(B->obs, 0, 7002, 1);
    for (uint32_t i = 1; i < 3; i++) {
        cr_assert_eq(B->terminated[i], 0);
        cr_assert_eq(B->truncated[i], 1);
    }
    expect_row(B->final_obs, 1, 8002, 4);
    expect_row(B->obs, 1, 8001, 0);
    expect_row(B->final_obs, 2, 9000, 4);
    expect_row(B->obs, 2, 9001, 0);
    cr_assert_float_eq(B->reward[1], 0.5f, 0.0);
    cr_assert_float_eq(B->ep_return[1], 2.0, 0.0);
    cr_assert_float_eq(B->ep_return[2], 0.0, 0.0);
    cr_assert_eq(B->ep_length[2], 4);
    venv_stats st = venv_get_stats(v);
    cr_assert_eq(st.steps, 12);
    cr_assert_eq(st.episodes, 3);
    cr_assert_eq(st.ended_step, 2);

    double r[8];
    int64_t l[8];
    cr_assert_eq(venv_recent(v, 8, r, l), 3);
    cr_assert_float_eq(r[0], 3.0, 0.0);
    cr_assert_float_eq(r[1], 2.0, 0.0);
    cr_assert_float_eq(r[2], 0.0, 0.0);
    cr_assert_eq(l[0], 3);
    cr_assert_eq(l[1], 4);
    cr_assert_eq(l[2], 4);
    double mr = -1, ml = -1;
    cr_assert_eq(venv_recent_mean(v, 2, &mr, &ml), 2);
    cr_assert_float_eq(mr, 1.0, 1e-12);
    cr_assert_float_eq(ml, 4.0, 1e-12);

    /* Run on until the history ring (4) wraps: env0 ends at steps 6 and 9,
     * env1/env2 at 8 (7 episodes). Recent = the last 4 episodes in order of ending. */
    for (int s = 5; s <= 9; s++) cr_assert_eq(venv_step(v, a), 0, "%s", venv_error(v));
    cr_assert_eq(venv_get_stats(v).episodes, 7);
    cr_assert_eq(venv_recent(v, 8, r, l), 4);
    const double want_r[4] = {3.0, 2.0, 0.0, 3.0}; /* env0@6, env1@8, env2@8, env0@9 */
    for (int j = 0; j < 4; j++) cr_assert_float_eq(r[j], want_r[j], 0.0, "recent %d: %g", j, r[j]);
    expect_row(B->obs, 0, 7003, 0); /* env0's 4th episode */

    /* A NaN action is the plugin's business: it must not crash anything. */
    const float nan_a[3] = {NAN, NAN, NAN};
    cr_assert_eq(venv_step(v, nan_a), 0, "%s", venv_error(v));
    cr_assert_float_eq(B->reward[0], 0.0f, 0.0);

    /* venv_reset reseeds base_seed + i and clears running episodes. */
    cr_assert_eq(venv_reset(v), 0);
    expect_row(B->obs, 2, 9000, 0);
    cr_assert_eq(venv_get_stats(v).episodes, 7, "completed history survives a reset");
    venv_free(v);
    venv_free(NULL);
    envl_close(p);
}

/* Step `steps` times with a fixed action pattern, recording every output. */
static void record(venv *v, int steps, float *obs, float *fin, float *rew, uint8_t *flags) {
    const venv_bufs *B = venv_buffers(v);
    for (int s = 0; s < steps; s++) {
        float a[3];
        for (int i = 0; i < 3; i++) a[i] = (float)((s + i) % 3) * 0.75f;
        cr_assert_eq(venv_step(v, a), 0, "%s", venv_error(v));
        memcpy(obs + s * 6, B->obs, 6 * sizeof(float));
        memcpy(fin + s * 6, B->final_obs, 6 * sizeof(float));
        memcpy(rew + s * 3, B->reward, 3 * sizeof(float));
        for (int i = 0; i < 3; i++) flags[s * 3 + i] = (uint8_t)(B->terminated[i] | (B->truncated[i] << 1));
    }
}

Test(venv, state_round_trip_and_plugin_errors) {
    envl_plugin *p = open_counter();
    char err[1024] = "";
    const char *cfg = "max_steps=6;term_at=2";
    venv *v = NULL, *w = NULL;
    cr_assert_eq(venv_create(p, cfg, 3, 100, 5, &v, err, sizeof err), 0, "%s", err);
    cr_assert_eq(venv_reset(v), 0);
    float o1[20 * 6], f1[20 * 6], r1[20 * 3], o2[20 * 6], f2[20 * 6], r2[20 * 3];
    uint8_t g1[20 * 3], g2[20 * 3];
    record(v, 7, o1, f1, r1, g1); /* into the middle of episodes */
    size_t size = venv_state_size(v);
    cr_assert_gt(size, 0);
    unsigned char *blob = malloc(size);
    cr_assert_eq(venv_get_state(v, blob, size), 0, "%s", venv_error(v));
    venv_stats before = venv_get_stats(v);
    record(v, 20, o1, f1, r1, g1);
    venv_stats after1 = venv_get_stats(v);
    double h1[5], h2[5];
    cr_assert_eq(venv_recent(v, 5, h1, NULL), 5);

    /* Restore into a fresh vector (as a resumed run would) and replay. */
    cr_assert_eq(venv_create(p, cfg, 3, 100, 5, &w, err, sizeof err), 0, "%s", err);
    cr_assert_eq(venv_set_state(w, blob, size), 0, "%s", venv_error(w));
    cr_assert_eq(venv_get_stats(w).steps, before.steps);
    record(w, 20, o2, f2, r2, g2);
    cr_assert_eq(memcmp(o1, o2, sizeof o1), 0, "obs differ after restore");
    cr_assert_eq(memcmp(f1, f2, sizeof f1), 0, "final_obs differ after restore");
    cr_assert_eq(memcmp(r1, r2, sizeof r1), 0, "rewards differ after restore");
    cr_assert_eq(memcmp(g1, g2, sizeof g1), 0, "flags differ after restore");
    venv_stats after2 = venv_get_stats(w);
    cr_assert_eq(after1.steps, after2.steps);
    cr_assert_eq(after1.episodes, after2.episodes);
    cr_assert_eq(venv_recent(w, 5, h2, NULL), 5);
    cr_assert_eq(memcmp(h1, h2, sizeof h1), 0);

    /* A blob of another shape is refused, and nothing changes. */
    venv *u = NULL;
    cr_assert_eq(venv_create(p, cfg, 2, 100, 5, &u, err, sizeof err), 0, "%s", err);
    cr_assert_lt(venv_set_state(u, blob, size), 0);
    cr_assert_not_null(strstr(venv_error(u), "3 envs"), "%s", venv_error(u));
    cr_assert_lt(venv_get_state(u, blob, size), 0, "wrong buffer size accepted");
    cr_assert_not_null(strstr(venv_error(u), "need"), "%s", venv_error(u));
    blob[0] ^= 0xff;
    cr_assert_lt(venv_set_state(w, blob, size), 0);
    cr_assert_not_null(strstr(venv_error(w), "bad magic"), "%s", venv_error(w));
    venv_free(u);
    venv_free(w);
    venv_free(v);
    free(blob);

    /* A plugin failing in step is an error naming the file and its reason. */
    cr_assert_eq(venv_create(p, "fail_step_at=2", 2, 0, 0, &v, err, sizeof err), 0, "%s", err);
    cr_assert_eq(venv_reset(v), 0);
    const float a[2] = {0.1f, 0.1f};
    cr_assert_eq(venv_step(v, a), 0);
    cr_assert_eq(venv_step(v, a), ENV_EINVAL);
    cr_assert_not_null(strstr(venv_error(v), p->path), "%s", venv_error(v));
    cr_assert_not_null(strstr(venv_error(v), "step failed"), "%s", venv_error(v));
    cr_assert_not_null(strstr(venv_error(v), "simulated failure at step 2"), "%s", venv_error(v));
    cr_assert_lt(venv_step(v, NULL), 0);
    /* Stepping before any reset is the plugin's "ended episode" error. */
    venv_free(v);
    cr_assert_eq(venv_create(p, NULL, 1, 0, 0, &v, err, sizeof err), 0, "%s", err);
    cr_assert_lt(venv_step(v, a), 0);
    cr_assert_not_null(strstr(venv_error(v), "stepped after its episode ended"), "%s", venv_error(v));
    venv_free(v);
    envl_close(p);
}

#ifdef RLT_BUILTIN_ENV_DIR
/* The built-in Pendulum-v1 through the host: truncation at 200 for every
 * environment with same-step autoreset, and a state round trip. */
Test(venv, builtin_pendulum) {
    char path[1024], err[1024] = "";
    snprintf(path, sizeof path, "%s/pendulum.so", RLT_BUILTIN_ENV_DIR);
    envl_plugin *p = NULL;
    cr_assert_eq(envl_open_file(path, &p, err, sizeof err), 0, "%s", err);
    venv *v = NULL, *w = NULL;
    cr_assert_eq(venv_create(p, NULL, 4, 0, 0, &v, err, sizeof err), 0, "%s", err);
    cr_assert_eq(venv_create(p, NULL, 4, 0, 0, &w, err, sizeof err), 0, "%s", err);
    const venv_bufs *B = venv_buffers(v), *C = venv_buffers(w);
    cr_assert_eq(B->obs_dim, 3);
    cr_assert_eq(venv_reset(v), 0, "%s", venv_error(v));
    float a[4] = {-2.0f, -0.5f, 0.5f, 2.0f};
    unsigned char *blob = NULL;
    size_t size = venv_state_size(v);
    cr_assert_gt(size, 0);
    blob = malloc(size);
    for (int s = 1; s <= 450; s++) {
        if (s == 150) cr_assert_eq(venv_get_state(v, blob, size), 0, "%s", venv_error(v));
        cr_assert_eq(venv_step(v, a), 0, "%s", venv_error(v));
        for (uint32_t i = 0; i < 4; i++) {
            cr_assert_eq(B->terminated[i], 0);
            cr_assert_eq(B->truncated[i], s % 200 == 0, "env %u step %d", i, s);
            if (s % 200 == 0) {
                cr_assert_eq(B->ep_length[i], 200);
                cr_assert_neq(memcmp(B->final_obs + 3 * i, B->obs + 3 * i, 3 * sizeof(float)), 0);
                float c = B->obs[3 * i], sn = B->obs[3 * i + 1];
                cr_assert_float_eq(c * c + sn * sn, 1.0f, 1e-5, "reset obs is [cos, sin, thdot]");
            } else {
                cr_assert_eq(memcmp(B->final_obs + 3 * i, B->obs + 3 * i, 3 * sizeof(float)), 0);
            }
        }
    }
    cr_assert_eq(venv_get_stats(v).episodes, 8);
    double mr = 0;
    cr_assert_eq(venv_recent_mean(v, 10, &mr, NULL), 8);
    cr_assert_lt(mr, 0.0);
    /* Restore the state saved before step 150 into w and replay 301 steps. */
    cr_assert_eq(venv_set_state(w, blob, size), 0, "%s", venv_error(w));
    for (int s = 150; s <= 450; s++) cr_assert_eq(venv_step(w, a), 0, "%s", venv_error(w));
    cr_assert_eq(memcmp(B->obs, C->obs, 12 * sizeof(float)), 0);
    cr_assert_eq(memcmp(B->final_obs, C->final_obs, 12 * sizeof(float)), 0);
    double r1[8], r2[8];
    cr_assert_eq(venv_recent(v, 8, r1, NULL), 8);
    cr_assert_eq(venv_recent(w, 8, r2, NULL), 8);
    cr_assert_eq(memcmp(r1, r2, sizeof r1), 0);
    free(blob);
    venv_free(v);
    venv_free(w);
    envl_close(p);
}
#endif
