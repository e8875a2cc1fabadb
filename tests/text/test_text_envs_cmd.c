/*
 * test_text_envs_cmd.c -- `rlt envs` (trainer/env_cmd.c, env_cmd_list) lists
 * text tasks beside control environments: kind, summary, alphabet, limits
 * and item 0, and broken text plugins with the reason. Links libtorch
 * through rlt_h5io: one Test().
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env_cmd.h"

#ifndef TEST_TEXT_PLUGIN_DIR
#error "TEST_TEXT_PLUGIN_DIR must name the folder of the broken text plugins"
#endif

/* Run fn(argc, argv) with stdout and stderr captured into out (both). */
static int capture(int (*fn)(int, char **), int argc, char **argv, char *out, size_t cap) {
    char path[] = "/tmp/rlt-textcmd-out-XXXXXX";
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

Test(env_cmd, lists_text_tasks) {
    static char buf[1 << 16];
    cr_assert_eq(unsetenv("RLT_ENV_PATH"), 0);
    char *argv[] = {"--env-path", TEST_TEXT_PLUGIN_DIR};
    cr_assert_eq(capture(env_cmd_list, 2, argv, buf, sizeof buf), 0, "%s", buf);
    /* the built-in text tasks (the build's plugin folder is on the path) */
    const char *want[] = {
        "\narithmetic               text task                    v1.0\n",
        "    alphabet:     \"0123456789+*=,\" (14 symbols)\n",
        "    limits:       prompt <= 8, demonstration <= 43 characters\n",
        "\ncountdown                text task",
        "    alphabet:     \"0123456789,:=+-*/()\" (19 symbols)\n",
        "\nreverse                  text task",
        "    alphabet:     \"abcdefghijklmnopqrstuvwxyz=\" (27 symbols)\n",
        "    limits:       prompt <= 9, demonstration <= 23 characters\n",
        "\nsort                     text task",
        "    alphabet:     \"0123456789,-=\" (13 symbols)\n",
        "    item 0:       ",
        " -> <think>",
        /* control environments are still there, as before */
        "Pendulum-v1",
        "    observations: Box(3) low=[-1, -1, -8] high=[1, 1, 8]\n",
        /* broken text plugins, with their reasons */
        "text_old_minor           BROKEN: ",
        "ABI minor version 0 has no text tasks",
        "text_nosym               BROKEN: ",
        "does not export env_plugin_get() (control environments) or env_text_plugin_get() (text tasks)",
        "text_misbehave           text task",
        " text tasks), 9 broken\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert_not_null(strstr(buf, want[i]), "missing \"%s\" in:\n%s", want[i], buf);

    char *help[] = {"--help"};
    cr_assert_eq(capture(env_cmd_list, 1, help, buf, sizeof buf), 0);
    cr_assert_not_null(strstr(buf, "text tasks show their"), "%s", buf);
}
