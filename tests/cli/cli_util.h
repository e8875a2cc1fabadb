/*
 * cli_util.h -- process and sandbox helpers shared by the end-to-end tests of
 * the `rlt` executable (test_cli, test_cli_losses, test_cli_sac).
 *
 * The tests do not link libtorch: they spawn rlt, /usr/bin/python3 (h5py as an
 * independent reader/writer of HDF5) and /usr/bin/h5diff with posix_spawn,
 * capture stdout and stderr to files in a mkdtemp sandbox under /tmp and
 * assert on what those processes print and write. The helpers fail the
 * current Criterion test (cr_assert) when the machinery itself breaks (mkdtemp,
 * posix_spawn, an unreadable capture, a path too long); they never judge the
 * output of the program under test, which stays the tests' business.
 *
 * Include after `#define _POSIX_C_SOURCE 200809L` (pid_t, mkdtemp, spawn).
 */
#ifndef RLT_TESTS_CLI_UTIL_H
#define RLT_TESTS_CLI_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#define CU_PYTHON "/usr/bin/python3" /* the python3 that has h5py and numpy */
#define CU_H5DIFF "/usr/bin/h5diff"
#define CU_MAX_ARGS 128

/* One test's scratch directory; calls numbers the captured output files
 * (out.001/err.001, out.002/err.002, ...). */
typedef struct cu_sandbox {
    char dir[128];
    int calls;
} cu_sandbox;

/* A finished process: exit code (128+N when killed by signal N, -1 when it
 * cannot be waited for) and its captured output, NUL-terminated, owned. */
typedef struct cu_proc {
    int code;
    char *out;
    char *err;
} cu_proc;

/* A NULL-terminated argument vector built piece by piece (the strings are
 * borrowed). Initialise with `cu_argvec a = {.n = 0};`. */
typedef struct cu_argvec {
    const char *v[CU_MAX_ARGS + 1];
    int n;
} cu_argvec;

/* ---- sandbox ------------------------------------------------------------ */

/* mkdtemp(templ) into dir (templ ends in XXXXXX); asserts success. */
void cu_mkdtemp(char *dir, size_t cap, const char *templ);
/* A fresh sandbox made from templ, e.g. "/tmp/rlt-cli-XXXXXX". */
void cu_sb_open(cu_sandbox *sb, const char *templ);
/* sb->dir/name into buf; asserts that it fits. Returns buf. */
const char *cu_sb_path(const cu_sandbox *sb, char *buf, size_t cap, const char *name);
/* The paths of the next pair of capture files (out.NNN, err.NNN). */
void cu_sb_next_outputs(cu_sandbox *sb, char *out, char *err, size_t cap);
/* rm -rf dir (a test removes its sandbox when it reaches its end, so a
 * failing test keeps its files for inspection). */
void cu_rm_rf(const char *dir);

/* ---- files and time ----------------------------------------------------- */

/* Whole file as a NUL-terminated string, caller frees; NULL if it cannot be
 * read. *len (when len is not NULL) receives the byte count. */
char *cu_slurp(const char *path, size_t *len);
/* Writes text to path: 0 ok, -1 on any error. */
int cu_write_text(const char *path, const char *text);
int cu_file_exists(const char *path);
/* Monotonic clock in seconds (deadlines of polling loops). */
double cu_now_s(void);

/* ---- processes ---------------------------------------------------------- */

/* Starts argv (argv[0] an absolute path) with stdin from /dev/null,
 * stdout/stderr to the given files, default SIGINT/SIGTERM dispositions and
 * an empty signal mask (a test runner started in the background may ignore
 * SIGINT). Asserts that the spawn succeeded. */
pid_t cu_spawn_to(const char *const *argv, const char *out_path, const char *err_path);
/* Waits for pid: exit code, 128+N when killed by signal N, -1 on error. */
int cu_wait_code(pid_t pid);
/* Runs argv to completion with output captured to out_path / err_path and
 * read back; asserts that both captures are readable. */
cu_proc cu_capture(const char *const *argv, const char *out_path, const char *err_path);
/* cu_capture into the sandbox's next pair of capture files. */
cu_proc cu_run_argv(cu_sandbox *sb, const char *const *argv);
/* cu_run(sb, "/abs/prog", "arg", ..., NULL) */
cu_proc cu_run(cu_sandbox *sb, const char *prog, ...);
/* cu_py(sb, script, "arg", ..., NULL): /usr/bin/python3 -c script args... */
cu_proc cu_py(cu_sandbox *sb, const char *script, ...);
/* Frees the captured output (NULL-safe; the fields become NULL). */
void cu_proc_free(cu_proc *p);

/* Appends s; asserts that it fits in CU_MAX_ARGS. */
void cu_av_add(cu_argvec *a, const char *s);
/* Appends the const char * arguments of ap up to a NULL. */
void cu_av_addv(cu_argvec *a, va_list ap);

/* ---- rlt run directories ------------------------------------------------ */

/* A training job: `rlt train recipe` with a fixed list of --set overrides
 * (rlt is the executable's absolute path). */
typedef struct cu_job {
    const char *rlt;
    const char *recipe;
    const char *const *sets;
    size_t n_sets;
} cu_job;

/* Appends `rlt train recipe --run-dir run_dir` and `--set s` for each of the
 * job's sets. */
void cu_av_train(cu_argvec *a, const cu_job *job, const char *run_dir);
/* cu_train(sb, job, run_dir, "--set", "k=v", ..., NULL): runs the job with
 * the extra arguments after its own. */
cu_proc cu_train(cu_sandbox *sb, const cu_job *job, const char *run_dir, ...);
/* The "step_XXXXXXXX.h5" that <run_dir>/checkpoints/latest names into name
 * ("" if unreadable). */
void cu_read_latest(const char *run_dir, char *name, size_t cap);
/* Polls (up to 10 minutes on a loaded machine) until <run_dir>/metrics.jsonl
 * holds a complete line; fails the test, with err_path's text, if process
 * pid ends first. */
void cu_wait_first_metrics(const char *run_dir, pid_t pid, const char *err_path);
/* Checkpoints a and b hold the same groups (NULL-terminated list, e.g.
 * "/model"), bit for bit: h5diff -q exits 0 for each. */
void cu_assert_h5_same(cu_sandbox *sb, const char *a, const char *b, const char *const *groups);
/* Compares <dir_a>/metrics.jsonl and <dir_b>/metrics.jsonl once the perf/
 * keys (timings) are dropped: exit 0 and "equal N lines" when equal, else
 * exit 1 and the first differing line. The process is the caller's. */
cu_proc cu_metrics_compare(cu_sandbox *sb, const char *dir_a, const char *dir_b);
/* cu_metrics_compare exits 0 and reports exactly `lines` equal lines. */
void cu_assert_metrics_equal(cu_sandbox *sb, const char *dir_a, const char *dir_b, int lines);

#endif /* RLT_TESTS_CLI_UTIL_H */
