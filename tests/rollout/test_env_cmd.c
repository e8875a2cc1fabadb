/*
 * test_env_cmd.c -- Criterion tests for trainer/env_cmd.c: `rlt envs` and
 * `rlt env replay` driven through env_cmd_list / env_cmd_replay with the
 * counter test plugin (obs [x, t], reward = action; see plugin_counter.c).
 * Links libtorch through rlt_h5io: one Test().
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env_cmd.h"
#include "h5io.h"

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must name the folder of the test plugins"
#endif

/* Run fn(argc, argv) with stdout and stderr captured into out (both). */
static int capture(int (*fn)(int, char **), int argc, char **argv, char *out, size_t cap) {
    char path[] = "/tmp/rlt-envcmd-out-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

static void write_actions(const char *path, int dtype, const int64_t *shape, int ndim, const void *data) {
    char err[512];
    h5io_file *f = h5io_create(path, 0, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    cr_assert_eq(h5io_write_array(f, "actions", (rt_dtype)dtype, shape, ndim, data, 0), 0, "%s", h5io_error(f));
    cr_assert_eq(h5io_close(f, err, sizeof err), 0, "%s", err);
}

Test(env_cmd, list_and_replay) {
    char dir[256], acts[512], ints[512], outp[512], buf[16384];
    snprintf(dir, sizeof dir, "/tmp/rlt-envcmd-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    snprintf(acts, sizeof acts, "%s/a.h5", dir);
    snprintf(ints, sizeof ints, "%s/i.h5", dir);
    snprintf(outp, sizeof outp, "%s/t.h5", dir);

    /* rlt envs */
    char *list_argv[] = {"--env-path", TEST_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_list, 2, list_argv, buf, sizeof buf), 0, "%s", buf);
    cr_assert_not_null(strstr(buf, "Counter-v0"), "%s", buf);
    cr_assert_not_null(strstr(buf, "observations: Box(2) low=[-inf, 0] high=[inf, inf]"), "%s", buf);
    cr_assert_not_null(strstr(buf, "actions:      Box(1) low=[-1] high=[1]"), "%s", buf);
    cr_assert_not_null(strstr(buf, "max_episode_steps 5"), "%s", buf);
    cr_assert_not_null(strstr(buf, "broken_wrong_major       BROKEN: "), "%s", buf);
    cr_assert_not_null(strstr(buf, "wrong ABI major version 99"), "%s", buf);
    char *help_argv[] = {"--help"};
    cr_assert_eq(capture(env_cmd_list, 1, help_argv, buf, sizeof buf), 0);
    cr_assert_not_null(strstr(buf, "--env-path DIR"), "%s", buf);
    char *bad_argv[] = {"--bogus", "1"};
    cr_assert_eq(capture(env_cmd_list, 2, bad_argv, buf, sizeof buf), 2);
    cr_assert_not_null(strstr(buf, "unknown option '--bogus'"), "%s", buf);

    /* rlt env replay: 8 float64 actions, the counter truncates at 5. */
    double a[8] = {0.5, 0.25, -1, 1, 0.125, 1, 1, 1};
    int64_t sh[2] = {8, 1};
    write_actions(acts, RT_F64, sh, 2, a);
    char *rep_argv[] = {"counter", "--seed", "3", "--actions", acts, "--out", outp, "--env-path", TEST_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_replay, 9, rep_argv, buf, sizeof buf), 0, "%s", buf);
    cr_assert_not_null(strstr(buf, "counter (Counter-v0) seed 3: 5 of 8 actions, return 0.875"), "%s", buf);
    cr_assert_not_null(strstr(buf, "the episode ended at step 5 (truncated)"), "%s", buf);
    char err[512];
    h5io_file *f = h5io_open(outp, 0, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    float obs[12], rew[5];
    uint8_t term[5], trunc[5];
    int64_t so[2] = {6, 2}, s1[1] = {5};
    cr_assert_eq(h5io_read_array(f, "obs", RT_F32, so, 2, obs), 0, "%s", h5io_error(f));
    cr_assert_eq(h5io_read_array(f, "reward", RT_F32, s1, 1, rew), 0, "%s", h5io_error(f));
    cr_assert_eq(h5io_read_array(f, "terminated", RT_BOOL, s1, 1, term), 0, "%s", h5io_error(f));
    cr_assert_eq(h5io_read_array(f, "truncated", RT_BOOL, s1, 1, trunc), 0, "%s", h5io_error(f));
    const float want_x[6] = {3000, 3000.5f, 3000.75f, 2999.75f, 3000.75f, 3000.875f};
    for (int i = 0; i < 6; i++) {
        cr_assert_float_eq(obs[2 * i], want_x[i], 0.0, "obs[%d] x = %g", i, obs[2 * i]);
        cr_assert_float_eq(obs[2 * i + 1], (float)i, 0.0);
    }
    for (int i = 0; i < 5; i++) {
        cr_assert_float_eq(rew[i], (float)a[i], 0.0);
        cr_assert_eq(term[i], 0);
        cr_assert_eq(trunc[i], i == 4);
    }
    int64_t steps = 0, early = 0, seed = 0;
    char env[64];
    cr_assert_eq(h5io_attr_get_i64(f, "/", "steps", &steps), 0);
    cr_assert_eq(h5io_attr_get_i64(f, "/", "ended_early", &early), 0);
    cr_assert_eq(h5io_attr_get_i64(f, "/", "seed", &seed), 0);
    cr_assert_eq(h5io_attr_get_str(f, "/", "gym_id", env, sizeof env), 0);
    cr_assert_eq(steps, 5);
    cr_assert_eq(early, 1);
    cr_assert_eq(seed, 3);
    cr_assert_str_eq(env, "Counter-v0");
    h5io_close(f, NULL, 0);

    /* --set reaches the plugin: a longer limit and termination at x - x0 >= 1. */
    char *set_argv[] = {"counter", "--actions", acts, "--out", outp, "--set", "max_steps=100",
                        "--set=term_at=1", "--env-path", TEST_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_replay, 10, set_argv, buf, sizeof buf), 0, "%s", buf);
    cr_assert_not_null(strstr(buf, "seed 0: 6 of 8 actions, return 1.875"), "%s", buf);
    cr_assert_not_null(strstr(buf, "ended at step 6 (terminated); the remaining 2 actions were not used"), "%s", buf);

    /* Input errors are exit code 2 with the reason. */
    int32_t ia[3] = {0, 1, 0};
    int64_t ish[1] = {3};
    write_actions(ints, RT_I32, ish, 1, ia);
    char *int_argv[] = {"counter", "--actions", ints, "--out", outp, "--env-path", TEST_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_replay, 7, int_argv, buf, sizeof buf), 2);
    cr_assert_not_null(strstr(buf, "/actions is int32; a Box action space needs float32 or float64"), "%s", buf);
    char *miss_argv[] = {"nosuchenv", "--actions", acts, "--out", outp, "--env-path", TEST_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_replay, 7, miss_argv, buf, sizeof buf), 2);
    cr_assert_not_null(strstr(buf, "'nosuchenv' not found"), "%s", buf);
    char *broken_argv[] = {"broken_create", "--actions", acts, "--out", outp, "--env-path", TEST_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_replay, 7, broken_argv, buf, sizeof buf), 2);
    cr_assert_not_null(strstr(buf, "broken_create.so: plugin 'broken' could not create 1 environment: no display"),
                       "%s", buf);
    char *cfg_argv[] = {"counter", "--actions", acts, "--out", outp, "--set", "colour=red", "--env-path",
                        TEST_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_replay, 9, cfg_argv, buf, sizeof buf), 2);
    cr_assert_not_null(strstr(buf, "unknown config key 'colour'"), "%s", buf);
    char *seed_argv[] = {"counter", "--seed", "-1", "--actions", acts, "--out", outp};
    cr_assert_eq(capture(env_cmd_replay, 7, seed_argv, buf, sizeof buf), 2);
    cr_assert_not_null(strstr(buf, "--seed '-1'"), "%s", buf);
    char *noout_argv[] = {"counter", "--actions", acts};
    cr_assert_eq(capture(env_cmd_replay, 3, noout_argv, buf, sizeof buf), 2);
    /* A plugin failing mid-replay is a runtime error (1). */
    char *fail_argv[] = {"counter", "--actions", acts, "--out", outp, "--set", "fail_step_at=3", "--env-path",
                         TEST_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_replay, 9, fail_argv, buf, sizeof buf), 1);
    cr_assert_not_null(strstr(buf, "step 2: "), "%s", buf);
    cr_assert_not_null(strstr(buf, "simulated failure at step 3"), "%s", buf);
    char *rhelp_argv[] = {"--help"};
    cr_assert_eq(capture(env_cmd_replay, 1, rhelp_argv, buf, sizeof buf), 0);
    const char *opts[] = {"--actions A.h5", "--out T.h5", "--seed S", "(default: 0)", "--set KEY=VALUE", "--env-path DIR"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cr_assert_not_null(strstr(buf, opts[i]), "help lacks %s: %s", opts[i], buf);

    unlink(acts);
    unlink(ints);
    unlink(outp);
    rmdir(dir);
}
