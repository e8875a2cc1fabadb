/*
 * metrics.h -- per-log-step metrics: one record of `/`-namespaced scalars per
 * log step, emitted to three places at once:
 *
 *   metrics.jsonl   one JSON object per line, "step" first, then the keys in
 *                   the order they were added:
 *                   {"step":1200,"train/loss":0.4132,"lr":1e-06,"nonfinite/skipped":0}
 *                   Non-finite values are written as null (JSON has no NaN);
 *                   numbers use the shortest text that reads back to the same
 *                   double, and integral values print as integers.
 *   TensorBoard     the same scalars as one Event (tboard.h), when enabled.
 *   console         one line from a caller-chosen list of columns:
 *                   step  1200/5000 | loss 0.4132 | lr 1.0e-06 | 412 ms | 3.1k samples/s
 *
 * plus a live progress line with ETA for a terminal (mx_format_progress is a
 * pure function; mx_progress draws it with '\r' only when told the stream is
 * a TTY -- the caller decides, e.g. with isatty(STDERR_FILENO)).
 *
 * Resume: opening with resume_step = k rewrites metrics.jsonl to keep only
 * the lines with step <= k (atomically: temp file, fsync, rename, fsync of
 * the directory), then appends. A resumed run's file therefore has no
 * duplicate steps, and a line cut short by a kill is dropped. The event file
 * of a resumed run gets a SessionLog START marker at step k+1, so TensorBoard
 * hides the stale points of the previous file too.
 *
 * Durability: each mx_log() writes whole lines and fflush()es; mx_close()
 * fsync()s. Numbers are printed with the C locale's '.' (rlt never calls
 * setlocale). Errors: functions return MX_OK (0) or a negative mx_status;
 * messages name the file, key or line and the reason (mx_error(),
 * mx_record_error(), or the `err` buffer of functions that have no object).
 */
#ifndef RLT_METRICS_H
#define RLT_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mx_status {
    MX_OK = 0,
    MX_EINVAL = -1, /* NULL/empty argument, reserved or malformed key   */
    MX_EIO = -2,    /* open/read/write/fsync/rename failed (errno in msg) */
    MX_ENOMEM = -3
} mx_status;

/* ---- the record of one log step ---------------------------------------- */

typedef struct mx_record mx_record;

mx_record *mx_record_new(void);        /* NULL when out of memory          */
void mx_record_free(mx_record *r);     /* NULL-safe                        */

/* Empties r (keeping its memory) and sets the step of the next line. */
void mx_record_begin(mx_record *r, int64_t step);

/* Adds a number. key: non-empty, not "step" (reserved: it is written first),
 * any bytes otherwise (escaped in JSON). Adding a key again replaces its
 * value and keeps its first position. Any double is accepted; NaN and +-inf
 * become null in JSON. */
int mx_add(mx_record *r, const char *key, double value);

/* Adds a string value (e.g. "phase":"teacher"); JSON only, not TensorBoard
 * and not the console. */
int mx_add_str(mx_record *r, const char *key, const char *value);

int64_t mx_record_step(const mx_record *r);
size_t mx_record_count(const mx_record *r);        /* numbers + strings       */

/* The numeric value of `key` into *value; MX_EINVAL if absent or a string. */
int mx_get(const mx_record *r, const char *key, double *value);

/* Message of the last failure of mx_add/mx_add_str on r. */
const char *mx_record_error(const mx_record *r);

/* The JSON line of r (with the trailing '\n') into buf, NUL-terminated.
 * Returns the length the full line needs, excluding the NUL, like snprintf:
 * the line is complete iff the return value < size. Returns a negative
 * status if r is NULL. */
long mx_format_json(char *buf, size_t size, const mx_record *r);

/* The JSON text of one number: the shortest of %.1g..%.17g that strtod reads
 * back exactly, integral values (|v| < 2^53) without a fraction or exponent,
 * "null" for NaN/inf. buf needs 32 bytes. Returns the length. */
int mx_format_number(char buf[32], double value);

/* ---- console and progress formatting (pure functions) ------------------ */

typedef enum mx_style {
    MX_NUM = 0, /* label value, 4 significant digits:  "loss 0.4132"       */
    MX_SCI,     /* label value, 2-digit mantissa:      "lr 1.0e-06"        */
    MX_INT,     /* label value, rounded integer:       "epoch 3"           */
    MX_PCT,     /* label value*100 %, one decimal:     "acc 87.3%"         */
    MX_MS,      /* value then label as unit:           "412 ms"            */
    MX_RATE     /* value with k/M/G then label:        "3.1k samples/s"    */
} mx_style;

/* One console column. For MX_MS and MX_RATE the label is the unit printed
 * after the number; for the others it is printed before. pm_key (optional)
 * names a second key printed as "±value" (e.g. reward mean ± std). Columns
 * whose key is absent from the record are left out. */
typedef struct mx_column {
    const char *key;
    const char *label;
    mx_style style;
    const char *pm_key;
} mx_column;

/* "step  1200/5000 | loss 0.4132 | ... | 412 ms | 3.1k samples/s" (no '\n')
 * into buf. The step is right-aligned to the width of total_steps (+1) so
 * consecutive lines line up; total_steps <= 0 prints only the step.
 * Non-finite values print as "nan", "inf", "-inf". Returns the length needed
 * (excluding the NUL), like snprintf. */
long mx_format_console(char *buf, size_t size, const mx_record *r, int64_t total_steps,
                       const mx_column *cols, size_t ncols);

/* A duration as M:SS below an hour, H:MM:SS from an hour on (3725 s ->
 * "1:02:05", 65 -> "1:05", 5 -> "0:05"); days stay in hours ("26:00:00").
 * Rounds to the nearest second; negative or non-finite -> "?:??".
 * Returns the length, like snprintf. */
int mx_format_duration(char *buf, size_t size, double seconds);

/* The progress line (no '\r', no '\n'), e.g. with width 20:
 *   "[#####...............]  1200/5000  24% | 3.20 it/s | 6:15 < 19:47"
 * step: steps done; start_step: the step this process started from (0 for
 * a fresh run, k after resuming at k: the rate counts only this process's
 * steps); elapsed_s: seconds since start_step. The ETA is
 * (total - step) / rate, "?:??" before the first step. width: bar cells,
 * 0 for no bar. Returns the length needed, like snprintf. */
long mx_format_progress(char *buf, size_t size, int64_t step, int64_t total, int64_t start_step,
                        double elapsed_s, int width);

/* ---- resume truncation (used by mx_open; public for tests and tools) ---- */

/* Rewrites the JSONL file at `path` keeping, in order, only the lines whose
 * leading "step" is <= max_step. Lines that do not start with {"step":<int>
 * or lack their '\n' (cut by a kill) are dropped and counted. The rewrite is
 * atomic (path.tmp, fsync, rename, fsync the directory). A missing file is
 * not an error (kept = dropped = 0). kept/dropped may be NULL. */
int mx_truncate_jsonl(const char *path, int64_t max_step, size_t *kept, size_t *dropped,
                      char *err, size_t err_size);

/* ---- the logger --------------------------------------------------------- */

typedef struct mx_options {
    const char *run_dir;       /* required, must exist: metrics.jsonl and the event file go here */
    int64_t resume_step;       /* < 0: fresh run, metrics.jsonl is truncated;
                                  >= 0: keep lines with step <= resume_step, append     */
    int tensorboard;           /* non-zero: also write events.out.tfevents.*           */
    double wall_time;          /* names the event file; 0 = now                        */
    int64_t total_steps;       /* for "step  1200/5000" and the progress line; <= 0 unknown */
    FILE *console;             /* one line per mx_log; NULL = no console lines         */
    const mx_column *columns;  /* the console line's columns; mx_open copies the array, */
    size_t ncolumns;           /*   its strings must outlive the logger (literals)      */
    FILE *progress;            /* where mx_progress draws (typically stderr)           */
    int progress_is_tty;       /* 0: mx_progress draws nothing                         */
} mx_options;

typedef struct mx_logger mx_logger;

/* Opens (or, on resume, truncates and reopens) run_dir/metrics.jsonl and, if
 * asked, a new event file. On failure *out is NULL and `err` receives the
 * message. */
int mx_open(mx_logger **out, const mx_options *opt, char *err, size_t err_size);

/* Emits r: the JSON line (fflush), the TensorBoard event of its numbers
 * (fflush) and, if a console is set, the console line (clearing a progress
 * line first). wall_time stamps the event (use mx_wall_time()). A failure
 * in one sink does not skip the others; the first error is returned. */
int mx_log(mx_logger *L, const mx_record *r, double wall_time);

/* A Markdown text summary (e.g. the parameter table) to TensorBoard only;
 * a no-op returning MX_OK without TensorBoard. */
int mx_log_text(mx_logger *L, int64_t step, const char *tag, const char *markdown, double wall_time);

/* Redraws the progress line on the progress stream ("\r" + line + erase to
 * end of line) when progress_is_tty; otherwise does nothing. elapsed_s: the
 * seconds this process has trained (since resume_step on a resumed run). */
void mx_progress(mx_logger *L, int64_t step, double elapsed_s);

/* What mx_open's resume truncation did (0/0 on a fresh run). */
void mx_resume_info(const mx_logger *L, size_t *kept, size_t *dropped);

/* Paths of the files (event path "" without TensorBoard). */
const char *mx_jsonl_path(const mx_logger *L);
const char *mx_tb_path(const mx_logger *L);

const char *mx_error(const mx_logger *L);

/* Ends the progress line, fflush + fsync + fclose both files, frees. NULL-safe.
 * Returns the first error; `err` receives its message. */
int mx_close(mx_logger *L, char *err, size_t err_size);

/* Seconds since the Unix epoch (CLOCK_REALTIME), for wall_time arguments. */
double mx_wall_time(void);

#ifdef __cplusplus
}
#endif
#endif /* RLT_METRICS_H */
