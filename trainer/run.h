/*
 * run.h -- what every training job shares, whatever its algorithm: the
 * [run] section of a recipe, the run directory, train.log, metrics, the
 * checkpoint cadence (atomic save, `latest` marker, rotation), resume, the
 * non-finite policy, and SIGINT/SIGTERM handling. An algorithm file
 * (kd_train.c, ...) reads top to bottom as: open the run, build models and
 * register their state for checkpoints, resume, loop { step; log; save },
 * finish.
 *
 *     run_ctx R;
 *     if (run_open(&R, &args, &kd_schema, &cfg, &cfg.run) < 0) return run_exit_code(&R);
 *     ... build models; ck_add_*(R.ck, ...);
 *     if (run_resume(&R) < 0) goto out;            // R.step = first step to run
 *     for (; R.step < total && !run_stop_requested(&R); R.step++) { ...; run_after_step(&R); }
 *   out:
 *     return run_close(&R);                        // saves on interrupt, exit code 0/1/130/143
 *
 * Layout of a run directory (runs/<recipe>/<run>/):
 *     config.ini           the resolved config (every key, with its help)
 *     train.log            everything the console showed, plus warnings
 *     metrics.jsonl        one JSON object per log step
 *     events.out.tfevents.<time>.<host>   TensorBoard scalars
 *     checkpoints/step_XXXXXXXX.h5, checkpoints/latest
 */
#ifndef RLT_RUN_H
#define RLT_RUN_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ckpt.h"
#include "config.h"
#include "metrics.h"
#include "replay.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* Exit codes of the rlt CLI. */
enum {
    RUN_EXIT_OK = 0,
    RUN_EXIT_FAIL = 1,   /* runtime error (I/O, numerics with policy abort, ...) */
    RUN_EXIT_USAGE = 2,  /* bad command line, config, recipe or input file       */
    RUN_EXIT_SIGINT = 130,
    RUN_EXIT_SIGTERM = 143
};

typedef enum run_nonfinite_policy { RUN_NONFINITE_SKIP = 0, RUN_NONFINITE_ABORT = 1 } run_nonfinite_policy;

/* The [run] section every recipe has. Algorithms embed it as a member named
 * `run` of their config struct and list RUN_COMMON_FIELDS(T) in their schema. */
typedef struct run_common {
    char algorithm[32];  /* which loop reads this recipe ("kd", ...)               */
    char name[64];       /* run name; "" = s<seed>-<YYYYmmdd-HHMMSS>                */
    char runs_dir[256];  /* where runs/<recipe>/<name>/ go                          */
    int64_t seed;        /* every generator and sampler derives from it            */
    int threads;         /* intra-op threads: results are bit-exact at a fixed count */
    bool deterministic;  /* libtorch deterministic algorithms                      */
    int64_t log_every;   /* steps between metrics lines                            */
    int64_t save_every;  /* steps between checkpoints (0: only at the end)         */
    int keep_last;       /* checkpoints kept besides keep_every ones (0: all)      */
    int64_t keep_every;  /* checkpoints at multiples of this are never deleted     */
    int nonfinite;       /* run_nonfinite_policy                                   */
    bool tensorboard;    /* write a TensorBoard event file                         */
    int64_t stop_at;     /* stop this process (saving) once this step is done; 0 = no */
} run_common;

extern const char *const run_nonfinite_choices[];

#define RUN_COMMON_FIELDS(T)                                                                       \
    CFG_STRING(T, "run", "algorithm", run.algorithm, "", "training loop that reads this recipe"),  \
    CFG_STRING(T, "run", "name", run.name, "",                                                    \
               "run name (directory under runs/<recipe>/); empty = s<seed>-<date>-<time>"),       \
    CFG_STRING(T, "run", "runs_dir", run.runs_dir, "runs", "parent of every runs/<recipe>/<name>/"), \
    CFG_INT64(T, "run", "seed", run.seed, 0, 9.2e18, "0", "seed of every generator and sampler"),  \
    CFG_INT(T, "run", "threads", run.threads, 1, 256, "1",                                         \
            "intra-op threads (results are bit-exact at a fixed count; recorded in checkpoints)"), \
    CFG_BOOL(T, "run", "deterministic", run.deterministic, "true",                                 \
             "libtorch deterministic algorithms"),                                                \
    CFG_INT64(T, "run", "log_every", run.log_every, 1, 1e12, "100", "steps between metrics lines"), \
    CFG_INT64(T, "run", "save_every", run.save_every, 0, 1e12, "1000",                             \
              "steps between checkpoints (0 = only at the end)"),                                 \
    CFG_INT(T, "run", "keep_last", run.keep_last, 0, 1000000, "3",                                 \
            "checkpoints kept besides keep_every ones (0 = keep all)"),                           \
    CFG_INT64(T, "run", "keep_every", run.keep_every, 0, 1e12, "0",                                \
              "checkpoints at multiples of this step are never deleted (0 = none)"),              \
    CFG_ENUM(T, "run", "nonfinite", run.nonfinite, run_nonfinite_choices, "skip",                  \
             "non-finite loss or grad norm: skip the update, or save and abort"),                 \
    CFG_BOOL(T, "run", "tensorboard", run.tensorboard, "true", "also write a TensorBoard event file"), \
    CFG_INT64(T, "run", "stop_at", run.stop_at, 0, 9.2e18, "0",                                    \
              "stop this process after this step, saving a checkpoint; resume continues (0 = run to the end)")

typedef enum run_resume_mode { RUN_RESUME_AUTO = 0, RUN_RESUME_NEVER = 1, RUN_RESUME_PATH = 2 } run_resume_mode;

/* What the command line says about a job. */
typedef struct run_args {
    const char *recipe_path;   /* INI file (for `rlt resume`: RUN_DIR/config.ini) */
    const char *const *sets;   /* "section.key=value" overrides                     */
    int nsets;
    const char *run_dir;       /* --run-dir: the run directory itself (NULL: derive) */
    run_resume_mode resume;    /* --resume auto|never|PATH                          */
    const char *resume_path;   /* checkpoint file for RUN_RESUME_PATH               */
    int argc;                  /* the exact command line, stored in checkpoints     */
    char **argv;
} run_args;

typedef struct run_ctx run_ctx;
struct run_ctx {
    /* set by run_open */
    const cfg_schema *schema;
    void *cfg;                 /* the algorithm's resolved config struct           */
    run_common *common;        /* &cfg->run                                        */
    char dir[PATH_MAX];        /* the run directory                                */
    char ckpt_dir[PATH_MAX];   /* dir/checkpoints                                  */
    char *config_text;         /* resolved INI (malloc'd), stored in checkpoints   */
    FILE *log;                 /* train.log                                        */
    ck_state *ck;              /* the algorithm registers what a checkpoint holds  */
    mx_record *rec;            /* reused metrics record                            */
    run_args args;
    /* set by run_resume / advanced by the loop */
    int64_t step;              /* the next step to run (== steps done)             */
    int64_t total_steps;       /* set by the algorithm before run_resume           */
    int64_t start_step;        /* where this process began                         */
    int64_t samples_per_step;  /* for throughput (set by the algorithm)            */
    int64_t last_saved_step;   /* -1: none yet                                     */
    int64_t nonfinite_skipped; /* updates skipped for a non-finite loss/grad norm  */
    mx_logger *mx;
    const mx_column *columns;  /* console columns (set by the algorithm)           */
    size_t ncolumns;
    double t_start, t_last_log;
    int64_t step_at_last_log;
    int exit_code;             /* what run_close returns unless an error overrides */
    bool created_dir;          /* run_open made r->dir: a usage error before any
                                  step removes it again (nothing is left behind) */
    /* Optional hooks for state that must be packed before a save (sampler
     * states) or unpacked / recomputed after a load. Return 0 or -1 (with a
     * message printed through run_fail). */
    int (*before_save)(struct run_ctx *r, void *user);
    int (*after_load)(struct run_ctx *r, void *user);
    void *hook_user;
};

/* Reads the recipe (defaults < file < --set), creates or reuses the run
 * directory, writes config.ini, opens train.log, prints the parameter table,
 * applies threads/deterministic, installs the signal handlers. Errors (config,
 * directory, a run directory with checkpoints under --resume never) are
 * printed and give RUN_EXIT_USAGE/RUN_EXIT_FAIL in r->exit_code and a
 * negative return. On success r->ck is an empty manifest to register into. */
int run_open(run_ctx *r, const run_args *args, const cfg_schema *schema, void *cfg,
             run_common *common);

/* Continues from a checkpoint if the arguments ask for it (auto: the newest
 * complete checkpoint of the run directory, if any; PATH: that file) by
 * loading everything registered in r->ck, then opens metrics (truncating
 * metrics.jsonl past the resumed step). Says what it did on the console.
 * r->step is the first step to run. Set r->total_steps first. */
int run_resume(run_ctx *r);

/* Register a replay buffer in a checkpoint manifest: its six tensors under
 * /<group>/ (observations, next_observations, actions, rewards, dones,
 * timeouts; shuffle + zlib at `level` 1..9) and pos/full as int64 scalars, the
 * layout of ecosystem.md §3.6. A load validates capacity and dims before
 * anything is overwritten; call rb_validate after it. Returns a ck_status. */
int run_ck_add_replay(ck_state *st, rb *b, const char *group, int level);

/* For `rlt eval`: the config a checkpoint was trained with (its
 * /config/resolved text read into schema's struct), then the --set
 * overrides; applies the thread count of common (which points into cfg).
 * *step (may be NULL) receives the checkpoint's step. Errors are printed;
 * returns 0 or RUN_EXIT_USAGE. */
int run_eval_config(const cfg_schema *schema, void *cfg, run_common *common, const char *ckpt_path,
                    const char *const *sets, int nsets, int64_t *step);

/* Console + train.log. */
void run_printf(run_ctx *r, const char *fmt, ...) CFG_PRINTF(2, 3);
void run_warn(run_ctx *r, const char *fmt, ...) CFG_PRINTF(2, 3);
/* Prints "error: ..." on stderr and train.log; sets exit_code. Returns -1. */
int run_fail(run_ctx *r, int exit_code, const char *fmt, ...) CFG_PRINTF(3, 4);

/* True once SIGINT/SIGTERM arrived (finish the current step, then stop) or
 * once run.stop_at is reached. */
bool run_stop_requested(const run_ctx *r);

/* Applies the non-finite policy to a step's loss and grad norm. Returns 1
 * when the update may proceed, 0 when it must be skipped (counted), and -1
 * when the run must abort (policy abort: the caller saves and stops). */
int run_check_finite(run_ctx *r, double loss, double grad_norm);

/* Start a metrics record for the current step (r->step), add values with
 * mx_add(r->rec, ...), then run_log(r) writes it (JSONL, TensorBoard, console,
 * train.log) with perf/ms_per_step, perf/samples_per_s, nonfinite/skipped. */
bool run_log_due(const run_ctx *r);
mx_record *run_record(run_ctx *r);
int run_log(run_ctx *r);

/* Called after each step with r->step already counting it: draws the
 * progress line and saves when save_every says so. */
int run_after_step(run_ctx *r);

/* Saves a checkpoint for r->step now (atomic; updates `latest`; rotates). */
int run_save(run_ctx *r);

/* Final save (when interrupted or at the end), closes everything, frees.
 * Returns the process exit code: 0, 1, 2, 130 (SIGINT) or 143 (SIGTERM). */
int run_close(run_ctx *r);

#endif /* RLT_RUN_H */
