/*
 * cli_util.c -- sandboxes, captured processes and run-directory probes for
 * the end-to-end CLI tests (see cli_util.h).
 */
#define _POSIX_C_SOURCE 200809L

#include "cli_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

extern char **environ;

/* ---- sandbox ------------------------------------------------------------ */

void cu_mkdtemp(char *dir, size_t cap, const char *templ) {
    int n = snprintf(dir, cap, "%s", templ);
    cr_assert(n > 0 && (size_t)n < cap, "sandbox template too long: %s", templ);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s: %s", templ, strerror(errno));
}

void cu_sb_open(cu_sandbox *sb, const char *templ) {
    cu_mkdtemp(sb->dir, sizeof sb->dir, templ);
    sb->calls = 0;
}

const char *cu_sb_path(const cu_sandbox *sb, char *buf, size_t cap, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", sb->dir, name);
    cr_assert(n > 0 && (size_t)n < cap, "path too long: %s/%s", sb->dir, name);
    return buf;
}

void cu_sb_next_outputs(cu_sandbox *sb, char *out, char *err, size_t cap) {
    char name[32];
    sb->calls++;
    snprintf(name, sizeof name, "out.%03d", sb->calls);
    cu_sb_path(sb, out, cap, name);
    snprintf(name, sizeof name, "err.%03d", sb->calls);
    cu_sb_path(sb, err, cap, name);
}

void cu_rm_rf(const char *dir) {
    const char *argv[] = {"/bin/rm", "-rf", dir, NULL};
    cu_wait_code(cu_spawn_to(argv, "/dev/null", "/dev/null"));
}

/* ---- files and time ----------------------------------------------------- */

char *cu_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
        if (cap - n - 1 == 0) { /* keep room for the NUL */
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

int cu_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int cu_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

double cu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- processes ---------------------------------------------------------- */

pid_t cu_spawn_to(const char *const *argv, const char *out_path, const char *err_path) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t def, none;
    sigemptyset(&def);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    sigemptyset(&none);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0], &fa, &at, (char *const *)argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", argv[0], strerror(rc));
    return pid;
}

int cu_wait_code(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

cu_proc cu_capture(const char *const *argv, const char *out_path, const char *err_path) {
    cu_proc p;
    p.code = cu_wait_code(cu_spawn_to(argv, out_path, err_path));
    p.out = cu_slurp(out_path, NULL);
    p.err = cu_slurp(err_path, NULL);
    cr_assert(p.out && p.err, "cannot read the output of %s (%s, %s)", argv[0], out_path, err_path);
    return p;
}

cu_proc cu_run_argv(cu_sandbox *sb, const char *const *argv) {
    char out[256], err[256];
    cu_sb_next_outputs(sb, out, err, sizeof out);
    return cu_capture(argv, out, err);
}

cu_proc cu_run(cu_sandbox *sb, const char *prog, ...) {
    cu_argvec a = {.n = 0};
    cu_av_add(&a, prog);
    va_list ap;
    va_start(ap, prog);
    cu_av_addv(&a, ap);
    va_end(ap);
    return cu_run_argv(sb, a.v);
}

cu_proc cu_py(cu_sandbox *sb, const char *script, ...) {
    cu_argvec a = {.n = 0};
    cu_av_add(&a, CU_PYTHON);
    cu_av_add(&a, "-c");
    cu_av_add(&a, script);
    va_list ap;
    va_start(ap, script);
    cu_av_addv(&a, ap);
    va_end(ap);
    return cu_run_argv(sb, a.v);
}

void cu_proc_free(cu_proc *p) {
    if (!p) return;
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

void cu_av_add(cu_argvec *a, const char *s) {
    cr_assert_lt(a->n, CU_MAX_ARGS, "too many arguments");
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

void cu_av_addv(cu_argvec *a, va_list ap) {
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) cu_av_add(a, s);
}

/* ---- rlt run directories ------------------------------------------------ */

void cu_av_train(cu_argvec *a, const cu_job *job, const char *run_dir) {
    cu_av_add(a, job->rlt);
    cu_av_add(a, "train");
    cu_av_add(a, job->recipe);
    cu_av_add(a, "--run-dir");
    cu_av_add(a, run_dir);
    for (size_t i = 0; i < job->n_sets; i++) {
        cu_av_add(a, "--set");
        cu_av_add(a, job->sets[i]);
    }
}

cu_proc cu_train(cu_sandbox *sb, const cu_job *job, const char *run_dir, ...) {
    cu_argvec a = {.n = 0};
    cu_av_train(&a, job, run_dir);
    va_list ap;
    va_start(ap, run_dir);
    cu_av_addv(&a, ap);
    va_end(ap);
    return cu_run_argv(sb, a.v);
}

void cu_read_latest(const char *run_dir, char *name, size_t cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints/latest", run_dir);
    char *text = cu_slurp(path, NULL);
    name[0] = '\0';
    if (!text) return;
    size_t n = strcspn(text, "\r\n");
    snprintf(name, cap, "%.*s", (int)(n < cap ? n : cap - 1), text);
    free(text);
}

void cu_wait_first_metrics(const char *run_dir, pid_t pid, const char *err_path) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    double deadline = cu_now_s() + 600;
    for (;;) {
        char *text = cu_slurp(path, NULL);
        int ready = text && strchr(text, '\n');
        free(text);
        if (ready) return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char *e = cu_slurp(err_path, NULL);
            cr_assert_fail("the run ended (status 0x%x) before its first metrics line: %s", st, e ? e : "");
        }
        cr_assert_lt(cu_now_s(), deadline, "no metrics line after 600 s");
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void cu_assert_h5_same(cu_sandbox *sb, const char *a, const char *b, const char *const *groups) {
    for (int i = 0; groups[i]; i++) {
        cu_proc d = cu_run(sb, CU_H5DIFF, "-q", a, b, groups[i], groups[i], NULL);
        cr_assert_eq(d.code, 0, "h5diff -q %s %s %s: exit %d (0 = identical)\n%s%s", a, b, groups[i], d.code, d.out,
                     d.err);
        cu_proc_free(&d);
    }
}

/* Exit 0 and "equal N lines" when the files agree without perf/ keys, else
 * exit 1 and the first difference. */
static const char *const PY_METRICS_EQUAL =
    "import json,sys\n"
    "def load(p):\n"
    "    return [{k:v for k,v in json.loads(l).items() if not k.startswith('perf/')} for l in open(p)]\n"
    "a=load(sys.argv[1]); b=load(sys.argv[2])\n"
    "for i,(x,y) in enumerate(zip(a,b)):\n"
    "    if x!=y:\n"
    "        print('line %d differs: %s | %s' % (i+1, x, y)); sys.exit(1)\n"
    "if len(a)!=len(b):\n"
    "    print('%d lines vs %d' % (len(a), len(b))); sys.exit(1)\n"
    "print('equal %d lines' % len(a))\n";

cu_proc cu_metrics_compare(cu_sandbox *sb, const char *dir_a, const char *dir_b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", dir_a);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", dir_b);
    return cu_py(sb, PY_METRICS_EQUAL, pa, pb, NULL);
}

void cu_assert_metrics_equal(cu_sandbox *sb, const char *dir_a, const char *dir_b, int lines) {
    char want[32];
    cu_proc me = cu_metrics_compare(sb, dir_a, dir_b);
    cr_assert_eq(me.code, 0, "metrics of %s and %s differ: %s%s", dir_a, dir_b, me.out, me.err);
    snprintf(want, sizeof want, "equal %d lines", lines);
    cr_assert(strstr(me.out, want), "metrics of %s and %s: %s (want %s)", dir_a, dir_b, me.out, want);
    cu_proc_free(&me);
}
