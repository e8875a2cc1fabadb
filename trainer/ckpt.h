/*
 * ckpt.h -- rlt checkpoints: one HDF5 file per checkpoint, written atomically,
 * loaded with full validation, found and rotated in a run's checkpoints/ dir.
 *
 * A training loop builds one manifest (ck_state) at start-up that names every
 * piece of state it owns -- model tensors, optimizers, generators, data cursor
 * blobs, algorithm scalars -- and uses that same manifest for ck_save and
 * ck_load, so saving and loading cannot drift apart. The file layout is
 * ecosystem.md §3.6 and reads with h5py without docs:
 *
 *   /                          attrs: format="rlt-checkpoint", format_version=1,
 *                              algorithm, step, epoch, samples_seen, tokens_seen,
 *                              wall_time_s, created_utc, rlt_version,
 *                              libtorch_version, hdf5_version, blas, num_threads,
 *                              world_size, complete=1 (written last)
 *   /config/resolved           the resolved config text (vlen UTF-8 string)
 *   /config/argv               the command line (1-D strings; when given)
 *   /model/<role>/<key>        ck_add_tensors(st, "model/<role>", ...): one
 *                              dataset per state_dict key, so
 *                              {k: f["model/student"][k][()] for k in f["model/student"]}
 *                              is a state_dict
 *   /optim/<name>              attrs type ("adam", "adamw", "sgd"), lr, beta1,
 *                              beta2, eps, weight_decay, amsgrad, momentum,
 *                              dampening, nesterov, param_count
 *   /optim/<name>/state/<param>  attrs has_state, step; datasets exp_avg,
 *                              exp_avg_sq, max_exp_avg_sq | momentum_buffer
 *                              (keyed by parameter NAME, never by position)
 *   /rng/<name>                uint8[N] generator state (torch's get_state bytes)
 *   /<path>                    blobs (uint8[n]), int64 arrays, int64/float64 scalars
 *
 * Save is atomic: everything goes to "<path>.tmp.<pid>" in the same directory,
 * then complete=1, flush, close, fsync, rename, fsync of the directory. A
 * killed or failing save leaves the old files as they were.
 *
 * Load is two-phase: phase 1 opens, validates and reads EVERYTHING into
 * staging memory (format, version, complete=1, algorithm, every registered
 * entry's presence, shape, dtype and size, and the data's checksums) and
 * reports all problems at once, one per line; only when phase 1 is clean does
 * phase 2 copy the values into the registered objects (parameters in place
 * under no-grad, so optimizers keep tracking them). A failed load leaves the
 * in-memory state untouched.
 *
 * Errors: functions return CK_OK (0) or a negative ck_status, and write a
 * message into (err, errcap) when err is not NULL. ck_error(st) also holds the
 * last save/load failure of a manifest in full (no length limit).
 */
#ifndef RLT_CKPT_H
#define RLT_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CK_FORMAT "rlt-checkpoint"
#define CK_FORMAT_VERSION 1 /* the newest format this code reads and writes */
#define CK_PATH_MAX 1024    /* file paths                                     */

typedef enum ck_status {
    CK_OK = 0,
    CK_EIO = -1,       /* cannot read/write: missing file, truncated, checksum, disk */
    CK_EINVAL = -2,    /* bad argument or manifest                                   */
    CK_ENOTFOUND = -3, /* no checkpoint there (fresh start)                          */
    CK_EMISMATCH = -4, /* the file does not fit the manifest (shapes, names, ...)    */
    CK_EFORMAT = -5    /* not an rlt checkpoint, incomplete, or a newer format       */
} ck_status;

/* What a checkpoint says about itself. */
typedef struct ck_meta {
    /* Set by the trainer before ck_save; read back by ck_load. */
    int64_t step, epoch, samples_seen, tokens_seen;
    double wall_time_s;
    int64_t world_size; /* 0 is written as 1 */
    /* ck_save inputs (borrowed; may be NULL / 0). */
    const char *config;       /* resolved config text -> /config/resolved */
    const char *const *argv;  /* command line -> /config/argv             */
    int argc;
    /* Filled by ck_save from the runtime (what it wrote) and by ck_load /
     * ck_read_meta from the file. */
    char algorithm[64];
    int64_t format_version;
    int64_t num_threads;
    char created_utc[32];
    char rlt_version[32];
    char libtorch_version[32];
    char hdf5_version[32];
    char blas[512];
    /* Filled by ck_load / ck_read_meta (malloc'd; ck_meta_release frees). */
    char *loaded_config;
    char **loaded_argv;
    size_t loaded_argc;
} ck_meta;

/* Free what ck_load / ck_read_meta allocated in m (NULL-safe). */
void ck_meta_release(ck_meta *m);

/* ---- the manifest -------------------------------------------------------- */

typedef struct ck_state ck_state;

ck_state *ck_state_new(void);
void ck_state_free(ck_state *st); /* NULL-safe; frees nothing registered */
/* The algorithm written by ck_save and required by ck_load ("kd", "sac"...).
 * Must be set before either. */
int ck_set_algorithm(ck_state *st, const char *algorithm);
/* The full message of the last failure on st ("" if none). */
const char *ck_error(const ck_state *st);

/* Register state. Pointers are borrowed and must outlive st. Paths are
 * slash-separated group paths without a leading '/' ("model/student",
 * "data/sampler"); names (state_dict keys, parameter names) contain no '/'.
 * A path registered twice is an error. Registration errors are also
 * remembered and make ck_save/ck_load refuse. */
/* tensors[i] -> /<prefix>/<names[i]> (chunked + Fletcher-32). */
int ck_add_tensors(ck_state *st, const char *prefix, const char *const *names,
                   rt_tensor *const *tensors, size_t n);
/* The same with shuffle + zlib at level 1..9 (replay buffers). */
int ck_add_tensors_compressed(ck_state *st, const char *prefix, const char *const *names,
                              rt_tensor *const *tensors, size_t n, int level);
/* Hyper-parameters and per-parameter state -> /optim/<name>. On load, lr is
 * restored (rt_optim_set_lr) and every parameter's state replaced. */
int ck_add_optim(ck_state *st, const char *name, rt_optim *o);
/* Generator state bytes -> /rng/<name>. */
int ck_add_gen(ck_state *st, const char *name, rt_gen *g);
/* A fixed-size opaque blob the trainer owns (e.g. a shuffler struct) ->
 * uint8[n] at /<path>. */
int ck_add_blob(ck_state *st, const char *path, void *ptr, size_t n);
/* int64[n] at /<path> (e.g. "data/permutation"). */
int ck_add_i64_array(ck_state *st, const char *path, int64_t *ptr, size_t n);
/* Scalar datasets at /<path> (e.g. "algo/phase", "algo/log_alpha"). */
int ck_add_i64(ck_state *st, const char *path, int64_t *ptr);
int ck_add_f64(ck_state *st, const char *path, double *ptr);

/* ---- save and load ------------------------------------------------------- */

/* Write every registered entry and meta to path atomically (see top). */
int ck_save(ck_state *st, const char *path, const ck_meta *meta, char *err, size_t errcap);
/* Validate path against the manifest and, only if everything fits, restore
 * every registered entry. meta_out (may be NULL) receives the file's meta;
 * release it with ck_meta_release. */
int ck_load(ck_state *st, const char *path, ck_meta *meta_out, char *err, size_t errcap);
/* Read and validate only the root attributes (+ config text) of path:
 * CK_EFORMAT for a foreign, incomplete or newer-format file. */
int ck_read_meta(const char *path, ck_meta *out, char *err, size_t errcap);

/* ---- the checkpoints/ directory ------------------------------------------ */

/* "<dir>/step_00001200.h5" into out. */
int ck_path_for_step(const char *dir, int64_t step, char *out, size_t cap);
/* Point <dir>/latest at file name `name` (a bare name, "step_00001200.h5"),
 * atomically: temp file, fsync, rename, fsync of the directory. */
int ck_write_latest(const char *dir, const char *name, char *err, size_t errcap);

/* What ck_find_latest found. */
typedef struct ck_scan {
    char path[CK_PATH_MAX]; /* the newest complete checkpoint                  */
    int64_t step;           /* its step (from the file)                        */
    int used_latest;        /* 1 when `latest` named it                        */
    int n_stray_tmp;        /* "*.tmp.*" files seen (interrupted writes)       */
    int n_skipped;          /* step files skipped: incomplete or unreadable    */
    char notes[2048];       /* one line per ignored file and why               */
} ck_scan;

/* The newest complete checkpoint in dir: the file `latest` names if it is a
 * complete checkpoint, else the highest step_*.h5 with complete=1. Stray
 * temp files and incomplete files are ignored and reported in out->notes.
 * CK_ENOTFOUND (with a message) when there is none or dir does not exist. */
int ck_find_latest(const char *dir, ck_scan *out, char *err, size_t errcap);
/* Delete stray "step_*.h5.tmp.<pid>" / "latest.tmp.<pid>" files whose writer
 * is gone (a live other process's temp file is kept). *removed (may be NULL)
 * receives the count. */
int ck_remove_stray_tmp(const char *dir, int *removed, char *err, size_t errcap);
/* Delete old step_*.h5 files: keeps the newest keep_last, every step that is
 * a multiple of keep_every (> 0), the newest file and the one `latest` names.
 * keep_last <= 0 keeps everything. Call only after a successful save. */
int ck_rotate(const char *dir, int keep_last, int64_t keep_every, int *removed, char *err,
              size_t errcap);

/* ---- inspection ---------------------------------------------------------- */

/* Print a checkpoint's format, version, algorithm, step, threads, BLAS,
 * versions, the resolved config and a table of every dataset (path, dtype,
 * shape, elements) to out. Prints what it can of foreign or incomplete files
 * and then returns CK_EFORMAT. */
int ck_inspect(const char *path, FILE *out, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif
#endif /* RLT_CKPT_H */
