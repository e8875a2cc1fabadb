/*
 * run.c -- the machinery every training job shares (see run.h): recipe and
 * run directory, train.log, metrics, checkpoint cadence, resume, the
 * non-finite policy and signals.
 */
#define _POSIX_C_SOURCE 200809L

#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tensor.h"

const char *const run_nonfinite_choices[] = {"skip", "abort", NULL};

/* The one piece of process-wide mutable state: a signal handler can reach
 * nothing else. 0 = running, otherwise the first signal received. */
static volatile sig_atomic_t run_signal_received = 0;

static void run_on_signal(int sig) {
    if (run_signal_received) {
        /* Second signal: leave at once; the last complete checkpoint is intact
         * because saves are atomic. */
        static const char msg[] = "\nrlt: second signal, exiting now without saving\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    run_signal_received = sig;
}

static void run_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = run_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool run_stop_requested(const run_ctx *r) {
    if (run_signal_received != 0) return true;
    /* Only a process that has run up to stop_at stops there: resuming from a
     * checkpoint at stop_at continues. */
    return r->common->stop_at > 0 && r->step >= r->common->stop_at && r->start_step < r->common->stop_at &&
           r->step < r->total_steps;
}

/* ------------------------------------------------------------------------ */
/* Console and train.log                                                     */
/* ------------------------------------------------------------------------ */

static void run_vprint(run_ctx *r, FILE *console, const char *prefix, const char *fmt, va_list ap) {
    char line[4096];
    vsnprintf(line, sizeof line, fmt, ap);
    if (isatty(STDERR_FILENO)) fputs("\r\033[K", stderr); /* clear the progress line first */
    fprintf(console, "%s%s\n", prefix, line);
    fflush(console);
    if (r && r->log) {
        fprintf(r->log, "%s%s\n", prefix, line);
        fflush(r->log);
    }
}

void run_printf(run_ctx *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    run_vprint(r, stdout, "", fmt, ap);
    va_end(ap);
}

void run_warn(run_ctx *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    run_vprint(r, stderr, "warning: ", fmt, ap);
    va_end(ap);
}

int run_fail(run_ctx *r, int exit_code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    run_vprint(r, stderr, "error: ", fmt, ap);
    va_end(ap);
    if (r) r->exit_code = exit_code;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Directories                                                               */
/* ------------------------------------------------------------------------ */

/* snprintf that reports truncation (-1) instead of leaving it silent. */
static int run_fmt(char *buf, size_t cap, const char *fmt, ...) CFG_PRINTF(3, 4);
static int run_fmt(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

/* mkdir -p; existing directories are fine. */
static int run_mkdirs(const char *path, char *err, size_t errlen) {
    char buf[PATH_MAX];
    if (run_fmt(buf, sizeof buf, "%s", path) < 0) {
        run_fmt(err, errlen, "path too long: %s", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                run_fmt(err, errlen, "cannot create directory '%s': %s", buf, strerror(errno));
                return -1;
            }
            struct stat st;
            if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                run_fmt(err, errlen, "'%s' exists and is not a directory", buf);
                return -1;
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    return 0;
}

/* "runs/kd-fashion-mnist.ini" -> "kd-fashion-mnist". */
static void run_recipe_name(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    size_t n = strlen(out);
    if (n > 4 && strcmp(out + n - 4, ".ini") == 0) out[n - 4] = '\0';
}

static bool run_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ------------------------------------------------------------------------ */
/* Open                                                                      */
/* ------------------------------------------------------------------------ */

int run_open(run_ctx *r, const run_args *args, const cfg_schema *schema, void *cfg,
             run_common *common) {
    memset(r, 0, sizeof *r);
    r->schema = schema;
    r->cfg = cfg;
    r->common = common;
    r->args = *args;
    r->last_saved_step = -1;
    r->exit_code = RUN_EXIT_OK;

    /* 1. The config: defaults < recipe < --set, every error at once. */
    cfg_errors cerr;
    cfg_errors_clear(&cerr);
    if (cfg_load(schema, cfg, args->recipe_path, args->sets, args->nsets, &cerr) < 0) {
        cfg_errors_print(&cerr, stderr, "error: ");
        r->exit_code = RUN_EXIT_USAGE;
        return -1;
    }

    /* 2. The run directory. */
    char err[1024];
    if (args->run_dir) {
        if (run_fmt(r->dir, sizeof r->dir, "%s", args->run_dir) < 0)
            return run_fail(r, RUN_EXIT_USAGE, "--run-dir path too long");
    } else {
        char recipe[128], name[96];
        run_recipe_name(args->recipe_path, recipe, sizeof recipe);
        if (common->name[0]) {
            snprintf(name, sizeof name, "%s", common->name);
        } else {
            time_t now = time(NULL);
            struct tm tm;
            localtime_r(&now, &tm);
            char stamp[32];
            strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
            snprintf(name, sizeof name, "s%lld-%s", (long long)common->seed, stamp);
        }
        if (run_fmt(r->dir, sizeof r->dir, "%s/%s/%s", common->runs_dir, recipe, name) < 0)
            return run_fail(r, RUN_EXIT_USAGE, "run directory path too long");
    }
    if (run_fmt(r->ckpt_dir, sizeof r->ckpt_dir, "%s/checkpoints", r->dir) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "run directory path too long");

    ck_scan scan;
    bool has_ckpt = run_file_exists(r->ckpt_dir) && ck_find_latest(r->ckpt_dir, &scan, err, sizeof err) == CK_OK;
    const char *found = has_ckpt ? scan.path : "";
    if (has_ckpt && args->resume == RUN_RESUME_NEVER) {
        return run_fail(r, RUN_EXIT_USAGE,
                        "run directory '%s' already holds checkpoints (newest: %s); refusing to start over "
                        "with --resume never. Continue it with --resume auto, or pick another --run-dir "
                        "or [run] name.",
                        r->dir, found);
    }
    r->created_dir = !run_file_exists(r->dir);
    if (run_mkdirs(r->ckpt_dir, err, sizeof err) < 0) {
        return run_fail(r, RUN_EXIT_FAIL, "%s", err);
    }

    /* 3. train.log (appended to on resume), config.ini. */
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/train.log", r->dir);
    r->log = fopen(path, "a");
    if (!r->log) {
        return run_fail(r, RUN_EXIT_FAIL, "cannot open '%s': %s", path, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/config.ini", r->dir);
    if (run_file_exists(path) && has_ckpt) {
        /* Continuing a run with a different config is allowed (e.g. more
         * steps) but never silent. */
        void *prev = calloc(1, schema->struct_size);
        cfg_errors perr, diff;
        cfg_errors_clear(&perr);
        cfg_errors_clear(&diff);
        if (prev && cfg_load(schema, prev, path, NULL, 0, &perr) == 0 && cfg_diff(schema, prev, cfg, &diff) > 0) {
            run_warn(r, "the config differs from the run's config.ini (resume stays bit-exact only if "
                        "nothing that shapes training changed):");
            cfg_errors_print(&diff, stderr, "  ");
            cfg_errors_print(&diff, r->log, "  ");
        }
        free(prev);
    }
    cfg_errors_clear(&cerr);
    if (cfg_write_file(schema, cfg, path, &cerr) < 0) {
        cfg_errors_print(&cerr, stderr, "error: ");
        r->exit_code = RUN_EXIT_FAIL;
        return -1;
    }
    r->config_text = cfg_to_ini(schema, cfg);
    r->ck = ck_state_new();
    r->rec = mx_record_new();
    if (!r->config_text || !r->ck || !r->rec || ck_set_algorithm(r->ck, common->algorithm) < 0) {
        return run_fail(r, RUN_EXIT_FAIL, "out of memory");
    }

    /* 4. Threads, determinism, signals. */
    if (rt_set_num_threads(common->threads) < 0 || rt_set_deterministic(common->deterministic) < 0) {
        return run_fail(r, RUN_EXIT_FAIL, "%s", rt_last_error());
    }
    run_install_signals();

    char *table = cfg_table(schema, cfg);
    run_printf(r, "rlt %s | run %s", schema->name, r->dir);
    if (table) {
        fputs(table, stdout);
        fputs(table, r->log);
        free(table);
    }
    run_printf(r, "libtorch %s | threads %d | BLAS %s", rt_torch_version(), rt_get_num_threads(),
               rt_blas_info());
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Resume                                                                    */
/* ------------------------------------------------------------------------ */

static void run_fill_meta(run_ctx *r, ck_meta *m) {
    memset(m, 0, sizeof *m);
    m->step = r->step;
    m->samples_seen = r->step * r->samples_per_step;
    m->world_size = 1;
    m->config = r->config_text;
    m->argc = r->args.argc;
    m->argv = (const char *const *)r->args.argv;
    m->wall_time_s = mx_wall_time() - r->t_start;
}

int run_resume(run_ctx *r) {
    char err[8192];
    char path[PATH_MAX] = "";
    r->step = 0;

    int removed = 0;
    if (ck_remove_stray_tmp(r->ckpt_dir, &removed, err, sizeof err) == 0 && removed > 0)
        run_warn(r, "removed %d unfinished checkpoint file(s) left by an interrupted save in %s", removed,
                 r->ckpt_dir);

    if (r->args.resume == RUN_RESUME_PATH) {
        snprintf(path, sizeof path, "%s", r->args.resume_path);
    } else if (r->args.resume == RUN_RESUME_AUTO) {
        ck_scan scan;
        int rc = ck_find_latest(r->ckpt_dir, &scan, err, sizeof err);
        if (rc == CK_ENOTFOUND) {
            run_printf(r, "resume auto: no checkpoint in %s, starting fresh", r->ckpt_dir);
        } else if (rc < 0) {
            return run_fail(r, RUN_EXIT_FAIL, "%s", err);
        } else {
            snprintf(path, sizeof path, "%s", scan.path);
            if (scan.notes[0]) run_warn(r, "while looking for the newest checkpoint:\n%s", scan.notes);
        }
    }

    if (path[0]) {
        ck_meta meta;
        if (ck_load(r->ck, path, &meta, err, sizeof err) < 0)
            return run_fail(r, RUN_EXIT_USAGE, "cannot resume from '%s':\n%s", path, err);
        r->step = meta.step;
        if (r->after_load && r->after_load(r, r->hook_user) < 0) {
            ck_meta_release(&meta);
            return -1;
        }
        if (meta.num_threads != rt_get_num_threads())
            run_warn(r, "checkpoint was written with %lld thread(s), this run uses %d: resume is not bit-exact",
                     (long long)meta.num_threads, rt_get_num_threads());
        if (strcmp(meta.blas, rt_blas_info()) != 0)
            run_warn(r, "checkpoint was written with BLAS %s, this run uses %s: resume is not bit-exact",
                     meta.blas, rt_blas_info());
        run_printf(r, "resumed from %s at step %lld", path, (long long)r->step);
        r->last_saved_step = r->step;
        ck_meta_release(&meta);
    }
    r->start_step = r->step;

    mx_options mo;
    memset(&mo, 0, sizeof mo);
    mo.run_dir = r->dir;
    mo.resume_step = path[0] ? r->step : -1;
    mo.tensorboard = r->common->tensorboard;
    mo.total_steps = r->total_steps;
    mo.console = NULL; /* run_log prints the line itself, to the console and train.log */
    mo.progress = stderr;
    mo.progress_is_tty = isatty(STDERR_FILENO);
    if (mx_open(&r->mx, &mo, err, sizeof err) < 0) return run_fail(r, RUN_EXIT_FAIL, "%s", err);
    r->t_start = r->t_last_log = mx_wall_time();
    r->step_at_last_log = r->step;
    return 0;
}

int run_eval_config(const cfg_schema *schema, void *cfg, run_common *common, const char *ckpt_path,
                    const char *const *sets, int nsets, int64_t *step) {
    char err[8192];
    ck_meta meta;
    if (ck_read_meta(ckpt_path, &meta, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return RUN_EXIT_USAGE;
    }
    cfg_errors cerr;
    cfg_errors_clear(&cerr);
    int rc = cfg_defaults(schema, cfg, &cerr);
    if (rc == 0) rc = cfg_read_string(schema, cfg, meta.loaded_config ? meta.loaded_config : "", ckpt_path, &cerr);
    for (int i = 0; rc == 0 && i < nsets; i++) rc = cfg_set(schema, cfg, sets[i], &cerr);
    if (rc == 0) rc = cfg_validate(schema, cfg, &cerr);
    if (step) *step = meta.step;
    ck_meta_release(&meta);
    if (rc < 0) {
        cfg_errors_print(&cerr, stderr, "error: ");
        return RUN_EXIT_USAGE;
    }
    if (rt_set_num_threads(common->threads) < 0) {
        fprintf(stderr, "error: %s\n", rt_last_error());
        return RUN_EXIT_USAGE;
    }
    return 0;
}

int run_ck_add_replay(ck_state *st, rb *b, const char *group, int level) {
    if (!st || !b || !group) return CK_EINVAL;
    rt_tensor *const tensors[RB_NTENSORS] = {b->observations, b->next_observations, b->actions,
                                             b->rewards,      b->dones,             b->timeouts};
    int rc = ck_add_tensors_compressed(st, group, rb_tensor_names, tensors, RB_NTENSORS, level);
    if (rc != CK_OK) return rc;
    char path[512];
    if (run_fmt(path, sizeof path, "%s/pos", group) < 0) return CK_EINVAL;
    if ((rc = ck_add_i64(st, path, &b->pos)) != CK_OK) return rc;
    if (run_fmt(path, sizeof path, "%s/full", group) < 0) return CK_EINVAL;
    return ck_add_i64(st, path, &b->full);
}

/* ------------------------------------------------------------------------ */
/* Steps                                                                     */
/* ------------------------------------------------------------------------ */

int run_check_finite(run_ctx *r, double loss, double grad_norm) {
    if (isfinite(loss) && isfinite(grad_norm)) return 1;
    if (r->common->nonfinite == RUN_NONFINITE_ABORT) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld: non-finite loss (%g) or grad norm (%g); policy abort: saving and stopping",
                 (long long)r->step, loss, grad_norm);
        return -1;
    }
    r->nonfinite_skipped++;
    run_warn(r, "step %lld: non-finite loss (%g) or grad norm (%g); update skipped (%lld so far)",
             (long long)r->step, loss, grad_norm, (long long)r->nonfinite_skipped);
    return 0;
}

bool run_log_due(const run_ctx *r) {
    /* r->step is the step being run; log after it completes. */
    return (r->step + 1) % r->common->log_every == 0 || r->step + 1 == r->total_steps;
}

mx_record *run_record(run_ctx *r) {
    mx_record_begin(r->rec, r->step + 1);
    return r->rec;
}

int run_log(run_ctx *r) {
    double now = mx_wall_time();
    int64_t steps = r->step + 1 - r->step_at_last_log;
    if (steps > 0) {
        double dt = now - r->t_last_log;
        mx_add(r->rec, "perf/ms_per_step", 1000.0 * dt / (double)steps);
        if (r->samples_per_step > 0 && dt > 0)
            mx_add(r->rec, "perf/samples_per_s", (double)(steps * r->samples_per_step) / dt);
    }
    mx_add(r->rec, "nonfinite/skipped", (double)r->nonfinite_skipped);
    r->t_last_log = now;
    r->step_at_last_log = r->step + 1;

    int rc = mx_log(r->mx, r->rec, now);
    char line[2048];
    mx_format_console(line, sizeof line, r->rec, r->total_steps, r->columns, r->ncolumns);
    run_printf(r, "%s", line);
    if (rc < 0) run_warn(r, "metrics: %s", mx_error(r->mx));
    return rc;
}

int run_save(run_ctx *r) {
    char path[PATH_MAX + 32], err[4096];
    ck_meta meta;
    run_fill_meta(r, &meta);
    double t0 = mx_wall_time();
    if (r->before_save && r->before_save(r, r->hook_user) < 0) return -1;
    if (ck_path_for_step(r->ckpt_dir, r->step, path, sizeof path) < 0 ||
        ck_save(r->ck, path, &meta, err, sizeof err) < 0) {
        run_fail(r, RUN_EXIT_FAIL, "checkpoint at step %lld failed: %s", (long long)r->step, err);
        return -1;
    }
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (ck_write_latest(r->ckpt_dir, name, err, sizeof err) < 0) {
        run_fail(r, RUN_EXIT_FAIL, "updating %s/latest failed: %s", r->ckpt_dir, err);
        return -1;
    }
    r->last_saved_step = r->step;
    struct stat st;
    double mb = stat(path, &st) == 0 ? (double)st.st_size / 1e6 : 0.0;
    run_printf(r, "saved %s (%.1f MB, %.2f s)", path, mb, mx_wall_time() - t0);
    if (ck_rotate(r->ckpt_dir, r->common->keep_last, r->common->keep_every, NULL, err, sizeof err) < 0)
        run_warn(r, "checkpoint rotation: %s", err);
    return 0;
}

int run_after_step(run_ctx *r) {
    mx_progress(r->mx, r->step, mx_wall_time() - r->t_start);
    if (r->common->save_every > 0 && r->step % r->common->save_every == 0 && r->step < r->total_steps)
        return run_save(r);
    return 0;
}

int run_close(run_ctx *r) {
    int sig = run_signal_received;
    if (sig && r->exit_code == RUN_EXIT_OK) {
        run_printf(r, "received %s: stopped after step %lld", sig == SIGINT ? "SIGINT" : "SIGTERM",
                   (long long)r->step);
        r->exit_code = sig == SIGINT ? RUN_EXIT_SIGINT : RUN_EXIT_SIGTERM;
    }
    /* Save what was trained unless the run failed before any step, or the
     * newest checkpoint already holds this step. */
    bool trained = r->mx && r->ck && r->step > r->start_step;
    bool must_save = trained && r->last_saved_step != r->step &&
                     (r->exit_code == RUN_EXIT_OK || r->exit_code == RUN_EXIT_SIGINT ||
                      r->exit_code == RUN_EXIT_SIGTERM || r->exit_code == RUN_EXIT_FAIL);
    if (must_save) {
        int code = r->exit_code;
        if (run_save(r) == 0) r->exit_code = code;
    }
    char err[1024];
    bool opened = r->mx != NULL;
    if (r->mx && mx_close(r->mx, err, sizeof err) < 0) run_warn(r, "closing metrics: %s", err);
    r->mx = NULL;
    if (r->exit_code == RUN_EXIT_OK && r->log) {
        if (r->step < r->total_steps && opened)
            run_printf(r, "stopped at step %lld of %lld (run.stop_at); continue with: rlt resume %s", (long long)r->step,
                       (long long)r->total_steps, r->dir);
        else
            run_printf(r, "done: %s", r->dir);
    }
    mx_record_free(r->rec);
    ck_state_free(r->ck);
    free(r->config_text);
    if (r->log) fclose(r->log);
    /* A job refused for its input (unknown plugin, bad data path, ...) before
     * it trained anything leaves no run directory behind, like a config
     * error caught before run_open made one. */
    if (r->exit_code == RUN_EXIT_USAGE && r->created_dir && !opened && r->last_saved_step < 0) {
        char path[PATH_MAX + 32];
        const char *files[] = {"config.ini", "train.log"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            if (run_fmt(path, sizeof path, "%s/%s", r->dir, files[i]) == 0) unlink(path);
        }
        rmdir(r->ckpt_dir);
        rmdir(r->dir);
    }
    r->rec = NULL;
    r->ck = NULL;
    r->config_text = NULL;
    r->log = NULL;
    return r->exit_code;
}
