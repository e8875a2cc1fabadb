/*
 * ckpt.c -- checkpoint manifest, atomic save, two-phase validated load, the
 * checkpoints/ directory (latest marker, discovery, stray temp files,
 * rotation) and `rlt inspect` (see ckpt.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "h5io.h"

#ifndef RLT_VERSION
#define RLT_VERSION "0.0.0"
#endif

#if defined(__GNUC__)
#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))
#else
#define PRINTF_LIKE(a, b)
#endif

/* ---- messages ------------------------------------------------------------ */

/* A growable message (all mismatches of a load, without a length limit). */
typedef struct ck_text {
    char *s;
    size_t len, cap;
} ck_text;

static void text_add(ck_text *t, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void text_add(ck_text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s) return; /* keep the shorter message */
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void text_clear(ck_text *t) {
    t->len = 0;
    if (t->s) t->s[0] = 0;
}

static int set_err(char *err, size_t cap, int status, const char *fmt, ...) PRINTF_LIKE(4, 5);
static int set_err(char *err, size_t cap, int status, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* snprintf for object paths: -1 when the result would not fit. */
static int pathf(char *out, size_t cap, const char *fmt, ...) PRINTF_LIKE(3, 4);
static int pathf(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

/* ck_status for an h5io_status. */
static int from_h5(int rc) {
    switch (rc) {
    case H5IO_OK: return CK_OK;
    case H5IO_EINVAL: return CK_EINVAL;
    case H5IO_ENOTFOUND: return CK_ENOTFOUND;
    case H5IO_EMISMATCH:
    case H5IO_ETYPE: return CK_EMISMATCH;
    default: return CK_EIO;
    }
}

/* ---- the manifest -------------------------------------------------------- */

typedef enum entry_kind { E_TENSOR, E_OPTIM, E_GEN, E_BLOB, E_I64S, E_I64, E_F64 } entry_kind;

typedef struct entry {
    entry_kind kind;
    char path[H5IO_PATH_MAX]; /* without the leading '/' */
    rt_tensor *tensor;
    int deflate;
    rt_optim *optim;
    rt_gen *gen;
    void *ptr; /* blob bytes, int64 array, scalar */
    size_t n;  /* blob bytes / array elements      */
    /* phase-1 staging of a load */
    rt_tensor *stage_t;
    void *stage_buf;
    rt_optim_state *stage_os; /* one per optimizer parameter */
    double stage_lr;
    int64_t stage_i64;
    double stage_f64;
} entry;

struct ck_state {
    char algorithm[64];
    entry *e;
    size_t n, cap;
    ck_text reg_err; /* registration problems: save/load refuse */
    ck_text err;     /* the last save/load failure              */
};

ck_state *ck_state_new(void) { return calloc(1, sizeof(ck_state)); }

void ck_state_free(ck_state *st) {
    if (!st) return;
    free(st->e);
    free(st->reg_err.s);
    free(st->err.s);
    free(st);
}

const char *ck_error(const ck_state *st) {
    if (!st) return "ck: NULL state";
    return st->err.s ? st->err.s : "";
}

int ck_set_algorithm(ck_state *st, const char *algorithm) {
    if (!st || !algorithm || !algorithm[0] || strlen(algorithm) >= sizeof st->algorithm) return CK_EINVAL;
    snprintf(st->algorithm, sizeof st->algorithm, "%s", algorithm);
    return CK_OK;
}

static int reg_fail(ck_state *st, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int reg_fail(ck_state *st, const char *fmt, ...) {
    char line[H5IO_PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    text_add(&st->reg_err, "%s\n", line);
    text_clear(&st->err);
    text_add(&st->err, "%s", line);
    return CK_EINVAL;
}

/* A group path: non-empty components, no leading/trailing '/'. */
static int valid_path(const char *p) {
    if (!p || !p[0] || p[0] == '/' || p[strlen(p) - 1] == '/' || strstr(p, "//")) return 0;
    return strlen(p) < H5IO_PATH_MAX - 64;
}

static entry *add_entry(ck_state *st, entry_kind kind, const char *path) {
    if (!valid_path(path)) {
        reg_fail(st, "invalid checkpoint path '%s' (use 'group/name', no leading '/')", path ? path : "(null)");
        return NULL;
    }
    for (size_t i = 0; i < st->n; i++) {
        const char *q = st->e[i].path;
        size_t lp = strlen(path), lq = strlen(q);
        /* the same path, or one inside the other (a dataset cannot be a group) */
        if (!strcmp(q, path) || (lq < lp && !strncmp(q, path, lq) && path[lq] == '/') ||
            (lp < lq && !strncmp(q, path, lp) && q[lp] == '/')) {
            reg_fail(st, "checkpoint path '%s' registered twice (clashes with '%s')", path, q);
            return NULL;
        }
    }
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 32;
        entry *grown = realloc(st->e, cap * sizeof *grown);
        if (!grown) {
            reg_fail(st, "out of memory registering '%s'", path);
            return NULL;
        }
        st->e = grown;
        st->cap = cap;
    }
    entry *e = &st->e[st->n++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    snprintf(e->path, sizeof e->path, "%s", path);
    return e;
}

static int add_tensors(ck_state *st, const char *prefix, const char *const *names, rt_tensor *const *tensors,
                       size_t n, int level) {
    if (!st) return CK_EINVAL;
    if (!prefix || (n && (!names || !tensors))) return reg_fail(st, "ck_add_tensors: NULL argument");
    if (level < 0 || level > 9) return reg_fail(st, "ck_add_tensors: compression level %d not in 0..9", level);
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !names[i][0] || strchr(names[i], '/'))
            return reg_fail(st, "%s: tensor name '%s' is empty or contains '/'", prefix,
                            names[i] ? names[i] : "(null)");
        if (!tensors[i]) return reg_fail(st, "%s/%s: NULL tensor", prefix, names[i]);
        char path[H5IO_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", prefix, names[i]);
        entry *e = add_entry(st, E_TENSOR, path);
        if (!e) return CK_EINVAL;
        e->tensor = tensors[i];
        e->deflate = level;
    }
    return CK_OK;
}

int ck_add_tensors(ck_state *st, const char *prefix, const char *const *names, rt_tensor *const *tensors,
                   size_t n) {
    return add_tensors(st, prefix, names, tensors, n, 0);
}

int ck_add_tensors_compressed(ck_state *st, const char *prefix, const char *const *names,
                              rt_tensor *const *tensors, size_t n, int level) {
    return add_tensors(st, prefix, names, tensors, n, level);
}

int ck_add_optim(ck_state *st, const char *name, rt_optim *o) {
    if (!st) return CK_EINVAL;
    if (!name || !o || strchr(name, '/')) return reg_fail(st, "ck_add_optim: NULL optimizer or bad name");
    for (size_t i = 0; i < rt_optim_param_count(o); i++) {
        const char *p = rt_optim_param_name(o, i);
        if (!p || !p[0] || strchr(p, '/'))
            return reg_fail(st, "optim/%s: parameter name '%s' is empty or contains '/'", name, p ? p : "(null)");
    }
    char path[H5IO_PATH_MAX];
    snprintf(path, sizeof path, "optim/%s", name);
    entry *e = add_entry(st, E_OPTIM, path);
    if (!e) return CK_EINVAL;
    e->optim = o;
    return CK_OK;
}

int ck_add_gen(ck_state *st, const char *name, rt_gen *g) {
    if (!st) return CK_EINVAL;
    if (!name || !g || strchr(name, '/')) return reg_fail(st, "ck_add_gen: NULL generator or bad name");
    char path[H5IO_PATH_MAX];
    snprintf(path, sizeof path, "rng/%s", name);
    entry *e = add_entry(st, E_GEN, path);
    if (!e) return CK_EINVAL;
    e->gen = g;
    return CK_OK;
}

static int add_raw(ck_state *st, entry_kind kind, const char *path, void *ptr, size_t n) {
    if (!st) return CK_EINVAL;
    if (!ptr && n) return reg_fail(st, "%s: NULL pointer", path ? path : "(null)");
    entry *e = add_entry(st, kind, path);
    if (!e) return CK_EINVAL;
    e->ptr = ptr;
    e->n = n;
    return CK_OK;
}

int ck_add_blob(ck_state *st, const char *path, void *ptr, size_t n) { return add_raw(st, E_BLOB, path, ptr, n); }
int ck_add_i64_array(ck_state *st, const char *path, int64_t *ptr, size_t n) {
    return add_raw(st, E_I64S, path, ptr, n);
}
int ck_add_i64(ck_state *st, const char *path, int64_t *ptr) { return add_raw(st, E_I64, path, ptr, 1); }
int ck_add_f64(ck_state *st, const char *path, double *ptr) { return add_raw(st, E_F64, path, ptr, 1); }

/* ---- files and directories ----------------------------------------------- */

static int fsync_path(const char *path, int is_dir) {
    int fd = open(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* The directory part of path ("." when there is none). */
static void dir_of(const char *path, char *out, size_t cap) {
    const char *s = strrchr(path, '/');
    if (!s) snprintf(out, cap, ".");
    else if (s == path) snprintf(out, cap, "/");
    else snprintf(out, cap, "%.*s", (int)(s - path), path);
}

static void utc_now(char *buf, size_t cap) {
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else snprintf(buf, cap, "unknown");
}

/* ---- save ---------------------------------------------------------------- */

/* Write one optimizer: hyper-parameters, then each parameter's state. */
static int write_optim(h5io_file *f, const entry *e) {
    rt_optim *o = e->optim;
    rt_optim_opts op = rt_optim_get_opts(o);
    rt_optim_kind kind = rt_optim_kind_of(o);
    const char *p = e->path;
    int rc = h5io_create_group(f, p);
    if (!rc) rc = h5io_attr_set_str(f, p, "type", rt_optim_kind_name(kind));
    if (!rc) rc = h5io_attr_set_f64(f, p, "lr", rt_optim_get_lr(o));
    if (!rc) rc = h5io_attr_set_f64(f, p, "beta1", op.beta1);
    if (!rc) rc = h5io_attr_set_f64(f, p, "beta2", op.beta2);
    if (!rc) rc = h5io_attr_set_f64(f, p, "eps", op.eps);
    if (!rc) rc = h5io_attr_set_f64(f, p, "weight_decay", op.weight_decay);
    if (!rc) rc = h5io_attr_set_i64(f, p, "amsgrad", op.amsgrad);
    if (!rc) rc = h5io_attr_set_f64(f, p, "momentum", op.momentum);
    if (!rc) rc = h5io_attr_set_f64(f, p, "dampening", op.dampening);
    if (!rc) rc = h5io_attr_set_i64(f, p, "nesterov", op.nesterov);
    if (!rc) rc = h5io_attr_set_i64(f, p, "param_count", (int64_t)rt_optim_param_count(o));
    rt_scope *S = rt_scope_new();
    if (!S) return H5IO_EIO;
    for (size_t i = 0; !rc && i < rt_optim_param_count(o); i++) {
        const char *name = rt_optim_param_name(o, i);
        char g[H5IO_PATH_MAX], d[H5IO_PATH_MAX];
        rt_optim_state s;
        if (pathf(g, sizeof g, "%s/state/%s", p, name) < 0) {
            rc = H5IO_EINVAL;
            break;
        }
        if (rt_optim_state_get(o, name, S, &s) != RT_OK) {
            rc = H5IO_EIO;
            break;
        }
        rc = h5io_create_group(f, g);
        if (!rc) rc = h5io_attr_set_i64(f, g, "has_state", s.has_state);
        if (!rc) rc = h5io_attr_set_i64(f, g, "step", s.step);
        struct { const char *n; rt_tensor *t; } parts[4] = {{"exp_avg", s.exp_avg},
                                                             {"exp_avg_sq", s.exp_avg_sq},
                                                             {"max_exp_avg_sq", s.max_exp_avg_sq},
                                                             {"momentum_buffer", s.momentum_buffer}};
        for (int k = 0; !rc && s.has_state && k < 4; k++) {
            if (!parts[k].t) continue;
            rc = pathf(d, sizeof d, "%s/%s", g, parts[k].n) < 0 ? H5IO_EINVAL
                                                                 : h5io_write_tensor(f, d, parts[k].t, 0);
        }
        rt_scope_reset(S);
    }
    rt_scope_free(S);
    return rc;
}

static int write_entry(h5io_file *f, const entry *e, char *why, size_t cap) {
    why[0] = 0;
    switch (e->kind) {
    case E_TENSOR: return h5io_write_tensor(f, e->path, e->tensor, e->deflate);
    case E_OPTIM: {
        int rc = write_optim(f, e);
        if (rc && !h5io_error(f)[0]) snprintf(why, cap, "%s: cannot read optimizer state: %s", e->path, rt_last_error());
        return rc;
    }
    case E_GEN: {
        size_t n = 0;
        if (rt_gen_get_state(e->gen, NULL, 0, &n) != RT_OK) {
            snprintf(why, cap, "%s: cannot read generator state: %s", e->path, rt_last_error());
            return H5IO_EIO;
        }
        uint8_t *buf = malloc(n ? n : 1);
        int rc = H5IO_EIO;
        if (!buf) snprintf(why, cap, "%s: out of memory", e->path);
        else if (rt_gen_get_state(e->gen, buf, n, &n) != RT_OK)
            snprintf(why, cap, "%s: cannot read generator state: %s", e->path, rt_last_error());
        else rc = h5io_write_bytes(f, e->path, buf, n);
        free(buf);
        return rc;
    }
    case E_BLOB: return h5io_write_bytes(f, e->path, e->ptr, e->n);
    case E_I64S: {
        int64_t shape[1] = {(int64_t)e->n};
        return h5io_write_array(f, e->path, RT_I64, shape, 1, e->ptr, 0);
    }
    case E_I64: return h5io_write_array(f, e->path, RT_I64, NULL, 0, e->ptr, 0);
    case E_F64: return h5io_write_array(f, e->path, RT_F64, NULL, 0, e->ptr, 0);
    }
    return H5IO_EINVAL;
}

static int write_meta(h5io_file *f, const ck_state *st, const ck_meta *m) {
    char now[32];
    utc_now(now, sizeof now);
    int rc = h5io_attr_set_str(f, "/", "format", CK_FORMAT);
    if (!rc) rc = h5io_attr_set_i32(f, "/", "format_version", CK_FORMAT_VERSION);
    if (!rc) rc = h5io_attr_set_str(f, "/", "algorithm", st->algorithm);
    if (!rc) rc = h5io_attr_set_i64(f, "/", "step", m->step);
    if (!rc) rc = h5io_attr_set_i64(f, "/", "epoch", m->epoch);
    if (!rc) rc = h5io_attr_set_i64(f, "/", "samples_seen", m->samples_seen);
    if (!rc) rc = h5io_attr_set_i64(f, "/", "tokens_seen", m->tokens_seen);
    if (!rc) rc = h5io_attr_set_f64(f, "/", "wall_time_s", m->wall_time_s);
    if (!rc) rc = h5io_attr_set_str(f, "/", "created_utc", now);
    if (!rc) rc = h5io_attr_set_str(f, "/", "rlt_version", RLT_VERSION);
    if (!rc) rc = h5io_attr_set_str(f, "/", "libtorch_version", rt_torch_version());
    if (!rc) rc = h5io_attr_set_str(f, "/", "hdf5_version", h5io_library_version());
    if (!rc) rc = h5io_attr_set_str(f, "/", "blas", rt_blas_info());
    if (!rc) rc = h5io_attr_set_i64(f, "/", "num_threads", rt_get_num_threads());
    if (!rc) rc = h5io_attr_set_i64(f, "/", "world_size", m->world_size > 0 ? m->world_size : 1);
    if (!rc) rc = h5io_write_string(f, "config/resolved", m->config ? m->config : "");
    if (!rc && m->argc > 0 && m->argv) rc = h5io_write_strings(f, "config/argv", m->argv, (size_t)m->argc);
    return rc;
}

static int check_manifest(ck_state *st, const char *what, const char *path) {
    text_clear(&st->err);
    if (st->reg_err.len) {
        text_add(&st->err, "%s: cannot %s: the checkpoint manifest is invalid:\n%s", path, what, st->reg_err.s);
        return CK_EINVAL;
    }
    if (!st->algorithm[0]) {
        text_add(&st->err, "%s: cannot %s: no algorithm set (ck_set_algorithm)", path, what);
        return CK_EINVAL;
    }
    return CK_OK;
}

static int finish(ck_state *st, int rc, char *err, size_t cap) {
    if (rc != CK_OK && err && cap) snprintf(err, cap, "%s", st->err.s ? st->err.s : "checkpoint error");
    return rc;
}

int ck_save(ck_state *st, const char *path, const ck_meta *meta, char *err, size_t errcap) {
    if (!st || !path || !meta) return set_err(err, errcap, CK_EINVAL, "ck_save: NULL argument");
    int rc = check_manifest(st, "save checkpoint", path);
    if (rc) return finish(st, rc, err, errcap);
    char tmp[CK_PATH_MAX + 32], dir[CK_PATH_MAX], why[H5IO_ERR_MAX], herr[H5IO_ERR_MAX];
    if (strlen(path) >= CK_PATH_MAX) {
        text_add(&st->err, "%s: path too long", path);
        return finish(st, CK_EINVAL, err, errcap);
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    dir_of(path, dir, sizeof dir);
    unlink(tmp); /* a leftover of an earlier process with our pid */

    h5io_file *f = h5io_create(tmp, 1, herr, sizeof herr);
    if (!f) {
        text_add(&st->err, "cannot save checkpoint: %s", herr);
        return finish(st, CK_EIO, err, errcap);
    }
    rc = write_meta(f, st, meta);
    for (size_t i = 0; rc == H5IO_OK && i < st->n; i++) {
        rc = write_entry(f, &st->e[i], why, sizeof why);
        if (rc && why[0]) text_add(&st->err, "cannot save checkpoint %s: %s", tmp, why);
    }
    if (rc == H5IO_OK) rc = h5io_attr_set_i32(f, "/", "complete", 1); /* last: the file is whole */
    if (rc == H5IO_OK) rc = h5io_flush(f);
    if (rc != H5IO_OK && !st->err.len) text_add(&st->err, "cannot save checkpoint: %s", h5io_error(f));
    int crc = h5io_close(f, herr, sizeof herr);
    if (rc == H5IO_OK && crc != H5IO_OK) {
        rc = crc;
        text_add(&st->err, "cannot save checkpoint: %s", herr);
    }
    if (rc == H5IO_OK && fsync_path(tmp, 0) != 0) {
        rc = H5IO_EIO;
        text_add(&st->err, "%s: fsync failed: %s", tmp, strerror(errno));
    }
    if (rc == H5IO_OK && rename(tmp, path) != 0) {
        rc = H5IO_EIO;
        text_add(&st->err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    }
    if (rc != H5IO_OK) {
        unlink(tmp);
        return finish(st, from_h5(rc) == CK_OK ? CK_EIO : from_h5(rc), err, errcap);
    }
    if (fsync_path(dir, 1) != 0) {
        text_add(&st->err, "%s: saved, but fsync of directory %s failed: %s", path, dir, strerror(errno));
        return finish(st, CK_EIO, err, errcap);
    }
    return CK_OK;
}

/* ---- meta ---------------------------------------------------------------- */

void ck_meta_release(ck_meta *m) {
    if (!m) return;
    free(m->loaded_config);
    h5io_free_strings(m->loaded_argv, m->loaded_argc);
    m->loaded_config = NULL;
    m->loaded_argv = NULL;
    m->loaded_argc = 0;
}

/* Check format, version and completeness of an open file. Problems go to t;
 * returns CK_OK, CK_EFORMAT or CK_EIO. *complete_out (may be NULL) tells a
 * finished file (even of a newer format) from an interrupted one. */
static int check_header(h5io_file *f, const char *path, ck_text *t, int *complete_out) {
    char fmt[64];
    int64_t ver = 0, complete = 0;
    if (complete_out) *complete_out = 0;
    int rc = h5io_attr_get_str(f, "/", "format", fmt, sizeof fmt);
    if (rc == H5IO_ENOTFOUND || rc == H5IO_EMISMATCH) {
        text_add(t, "%s: not an rlt checkpoint (no root attribute format=\"%s\"; an HDF5 file from another program?)",
                 path, CK_FORMAT);
        return CK_EFORMAT;
    }
    if (rc) {
        text_add(t, "%s", h5io_error(f));
        return CK_EIO;
    }
    if (strcmp(fmt, CK_FORMAT)) {
        text_add(t, "%s: not an rlt checkpoint (format=\"%s\", expected \"%s\")", path, fmt, CK_FORMAT);
        return CK_EFORMAT;
    }
    if ((rc = h5io_attr_get_i64(f, "/", "format_version", &ver)) != H5IO_OK) {
        text_add(t, "%s: rlt checkpoint without a valid format_version: %s", path, h5io_error(f));
        return rc == H5IO_EIO ? CK_EIO : CK_EFORMAT;
    }
    rc = h5io_attr_get_i64(f, "/", "complete", &complete);
    if (rc == H5IO_EIO) {
        text_add(t, "%s", h5io_error(f));
        return CK_EIO;
    }
    if (complete_out) *complete_out = rc == H5IO_OK && complete == 1;
    if (ver > CK_FORMAT_VERSION) {
        text_add(t, "%s: written by a newer rlt (format_version %lld > %d); upgrade rlt to load it", path,
                 (long long)ver, CK_FORMAT_VERSION);
        return CK_EFORMAT;
    }
    if (ver < 1) {
        text_add(t, "%s: invalid format_version %lld", path, (long long)ver);
        return CK_EFORMAT;
    }
    if (rc != H5IO_OK || complete != 1) {
        text_add(t, "%s: incomplete checkpoint (no complete=1): its writer did not finish", path);
        return CK_EFORMAT;
    }
    return CK_OK;
}

/* Root attributes into m (after check_header); text too when want_text. */
static int read_meta_attrs(h5io_file *f, ck_meta *m, int want_text, ck_text *t) {
    memset(m, 0, sizeof *m);
    struct { const char *name; int64_t *v; } ints[] = {
        {"format_version", &m->format_version}, {"step", &m->step},
        {"epoch", &m->epoch},                   {"samples_seen", &m->samples_seen},
        {"tokens_seen", &m->tokens_seen},       {"num_threads", &m->num_threads},
        {"world_size", &m->world_size}};
    struct { const char *name; char *buf; size_t cap; } strs[] = {
        {"algorithm", m->algorithm, sizeof m->algorithm},
        {"created_utc", m->created_utc, sizeof m->created_utc},
        {"rlt_version", m->rlt_version, sizeof m->rlt_version},
        {"libtorch_version", m->libtorch_version, sizeof m->libtorch_version},
        {"hdf5_version", m->hdf5_version, sizeof m->hdf5_version},
        {"blas", m->blas, sizeof m->blas}};
    int bad = 0;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (h5io_attr_get_i64(f, "/", ints[i].name, ints[i].v) != H5IO_OK) {
            text_add(t, "%s\n", h5io_error(f));
            bad = 1;
        }
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (h5io_attr_get_str(f, "/", strs[i].name, strs[i].buf, strs[i].cap) != H5IO_OK) {
            text_add(t, "%s\n", h5io_error(f));
            bad = 1;
        }
    if (h5io_attr_get_f64(f, "/", "wall_time_s", &m->wall_time_s) != H5IO_OK) {
        text_add(t, "%s\n", h5io_error(f));
        bad = 1;
    }
    if (want_text) {
        if (h5io_read_string(f, "config/resolved", &m->loaded_config) != H5IO_OK) {
            text_add(t, "%s\n", h5io_error(f));
            bad = 1;
        }
        int e = h5io_exists(f, "config/argv");
        if (e > 0 && h5io_read_strings(f, "config/argv", &m->loaded_argv, &m->loaded_argc) != H5IO_OK) {
            text_add(t, "%s\n", h5io_error(f));
            bad = 1;
        }
    }
    if (bad) ck_meta_release(m);
    return bad ? CK_EFORMAT : CK_OK;
}

int ck_read_meta(const char *path, ck_meta *out, char *err, size_t errcap) {
    if (!path || !out) return set_err(err, errcap, CK_EINVAL, "ck_read_meta: NULL argument");
    memset(out, 0, sizeof *out);
    char herr[H5IO_ERR_MAX];
    h5io_file *f = h5io_open(path, 0, herr, sizeof herr);
    if (!f) return set_err(err, errcap, CK_EIO, "%s", herr);
    ck_text t = {0};
    int rc = check_header(f, path, &t, NULL);
    if (rc == CK_OK) rc = read_meta_attrs(f, out, 1, &t);
    h5io_close(f, NULL, 0);
    if (rc) set_err(err, errcap, rc, "%s", t.s ? t.s : "cannot read checkpoint");
    free(t.s);
    return rc;
}

/* ---- load ---------------------------------------------------------------- */

typedef struct load_ctx {
    h5io_file *f;
    rt_scope *S;
    ck_text lines; /* one problem per line */
    int n_problems;
    int io_error; /* any unreadable / corrupt data (vs. mismatches) */
} load_ctx;

static void problem(load_ctx *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void problem(load_ctx *c, const char *fmt, ...) {
    char line[H5IO_ERR_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    text_add(&c->lines, "  %s\n", line);
    c->n_problems++;
}

/* Report h5io's failure as a problem line; the message header already
 * names the file, so the line starts at the object path. */
static void h5_problem(load_ctx *c, int rc) {
    if (rc == H5IO_EIO) c->io_error = 1;
    const char *msg = h5io_error(c->f), *file = h5io_filename(c->f);
    size_t n = strlen(file);
    if (!strncmp(msg, file, n) && !strncmp(msg + n, ": ", 2)) msg += n + 2;
    problem(c, "%s", msg);
}

/* Is there a dataset at path with dtype dt and this shape? Reports a line
 * ("<path>: missing", "<path>: shape [..] in file, [..] expected") if not. */
static int expect_dataset(load_ctx *c, const char *path, rt_dtype dt, const int64_t *shape, int ndim) {
    h5io_info in;
    int rc = h5io_dataset_info(c->f, path, &in);
    if (rc == H5IO_ENOTFOUND) {
        problem(c, "%s: missing", path);
        return -1;
    }
    if (rc) {
        h5_problem(c, rc);
        return -1;
    }
    int same = in.ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = in.shape[i] == shape[i];
    char a[160], b[160];
    h5io_shape_str(in.shape, in.ndim, a, sizeof a);
    h5io_shape_str(shape, ndim, b, sizeof b);
    if (in.dtype != (int)dt && !same)
        problem(c, "%s: dtype %s in file, %s expected; shape %s in file, %s expected", path, in.dtype_name,
                rt_dtype_name(dt), a, b);
    else if (in.dtype != (int)dt)
        problem(c, "%s: dtype %s in file, %s expected", path, in.dtype_name, rt_dtype_name(dt));
    else if (!same)
        problem(c, "%s: shape %s in file, %s expected", path, a, b);
    return (in.dtype == (int)dt && same) ? 0 : -1;
}

/* Check path against t's shape and dtype and read it into a staging tensor. */
static rt_tensor *stage_like(load_ctx *c, const char *path, const rt_tensor *t) {
    int64_t shape[RT_MAX_DIMS];
    int nd = rt_shape(t, shape, RT_MAX_DIMS);
    if (nd < 0) {
        problem(c, "%s: cannot query the registered tensor: %s", path, rt_last_error());
        return NULL;
    }
    if (expect_dataset(c, path, rt_dtype_of(t), shape, nd) < 0) return NULL;
    rt_tensor *s = h5io_read_tensor(c->f, path, c->S);
    if (!s) h5_problem(c, H5IO_EIO);
    return s;
}

static void *stage_raw(load_ctx *c, const char *path, rt_dtype dt, const int64_t *shape, int ndim, size_t nbytes) {
    if (expect_dataset(c, path, dt, shape, ndim) < 0) return NULL;
    void *buf = malloc(nbytes ? nbytes : 1);
    if (!buf) {
        problem(c, "%s: out of memory (%zu bytes)", path, nbytes);
        return NULL;
    }
    int rc = h5io_read_array(c->f, path, dt, shape, ndim, buf);
    if (rc) {
        h5_problem(c, rc);
        free(buf);
        return NULL;
    }
    return buf;
}

static void stage_optim(load_ctx *c, entry *e) {
    rt_optim *o = e->optim;
    const char *p = e->path;
    rt_optim_kind kind = rt_optim_kind_of(o);
    int amsgrad = rt_optim_get_opts(o).amsgrad;
    char type[32];
    int rc = h5io_exists(c->f, p);
    if (rc <= 0) {
        if (rc < 0) h5_problem(c, rc);
        else problem(c, "%s: missing", p);
        return;
    }
    rc = h5io_attr_get_str(c->f, p, "type", type, sizeof type);
    if (rc) {
        h5_problem(c, rc);
        return;
    }
    if (strcmp(type, rt_optim_kind_name(kind))) {
        problem(c, "%s: optimizer type %s in file, %s expected", p, type, rt_optim_kind_name(kind));
        return;
    }
    if ((rc = h5io_attr_get_f64(c->f, p, "lr", &e->stage_lr))) h5_problem(c, rc);
    size_t np = rt_optim_param_count(o);
    e->stage_os = calloc(np ? np : 1, sizeof *e->stage_os);
    if (!e->stage_os) {
        problem(c, "%s: out of memory", p);
        return;
    }
    for (size_t i = 0; i < np; i++) {
        const char *name = rt_optim_param_name(o, i);
        const rt_tensor *param = rt_optim_param(o, i);
        rt_optim_state *s = &e->stage_os[i];
        char g[H5IO_PATH_MAX], d[H5IO_PATH_MAX];
        int64_t has = 0;
        if (pathf(g, sizeof g, "%s/state/%s", p, name) < 0) {
            problem(c, "%s/state/%s: path too long", p, name);
            continue;
        }
        rc = h5io_exists(c->f, g);
        if (rc <= 0) {
            if (rc < 0) h5_problem(c, rc);
            else problem(c, "%s: missing (no optimizer state for parameter '%s')", g, name);
            continue;
        }
        if ((rc = h5io_attr_get_i64(c->f, g, "has_state", &has)) ||
            (rc = h5io_attr_get_i64(c->f, g, "step", &s->step))) {
            h5_problem(c, rc);
            continue;
        }
        s->has_state = has != 0;
        if (!s->has_state) continue;
        struct { const char *n; rt_tensor **slot; int required; } parts[4] = {
            {"exp_avg", &s->exp_avg, kind != RT_SGD},
            {"exp_avg_sq", &s->exp_avg_sq, kind != RT_SGD},
            {"max_exp_avg_sq", &s->max_exp_avg_sq, kind != RT_SGD && amsgrad},
            {"momentum_buffer", &s->momentum_buffer, 0}};
        for (int k = 0; k < 4; k++) {
            int want = parts[k].required || (kind == RT_SGD && k == 3);
            if (!want) continue;
            if (pathf(d, sizeof d, "%s/%s", g, parts[k].n) < 0) {
                problem(c, "%s/%s: path too long", g, parts[k].n);
                continue;
            }
            if (!parts[k].required) { /* SGD's momentum buffer exists only with momentum */
                int ex = h5io_exists(c->f, d);
                if (ex < 0) h5_problem(c, ex);
                if (ex <= 0) continue;
            }
            *parts[k].slot = stage_like(c, d, param);
        }
    }
}

static void stage_entry(load_ctx *c, entry *e) {
    switch (e->kind) {
    case E_TENSOR: e->stage_t = stage_like(c, e->path, e->tensor); break;
    case E_OPTIM: stage_optim(c, e); break;
    case E_GEN: {
        size_t n = 0;
        if (rt_gen_get_state(e->gen, NULL, 0, &n) != RT_OK) {
            problem(c, "%s: cannot query the generator: %s", e->path, rt_last_error());
            break;
        }
        int64_t shape[1] = {(int64_t)n};
        e->stage_buf = stage_raw(c, e->path, RT_U8, shape, 1, n);
        e->n = n;
        break;
    }
    case E_BLOB: {
        int64_t shape[1] = {(int64_t)e->n};
        e->stage_buf = stage_raw(c, e->path, RT_U8, shape, 1, e->n);
        break;
    }
    case E_I64S: {
        int64_t shape[1] = {(int64_t)e->n};
        e->stage_buf = stage_raw(c, e->path, RT_I64, shape, 1, e->n * sizeof(int64_t));
        break;
    }
    case E_I64:
        if (expect_dataset(c, e->path, RT_I64, NULL, 0) == 0) {
            int rc = h5io_read_array(c->f, e->path, RT_I64, NULL, 0, &e->stage_i64);
            if (rc) h5_problem(c, rc);
        }
        break;
    case E_F64:
        if (expect_dataset(c, e->path, RT_F64, NULL, 0) == 0) {
            int rc = h5io_read_array(c->f, e->path, RT_F64, NULL, 0, &e->stage_f64);
            if (rc) h5_problem(c, rc);
        }
        break;
    }
}

static void unstage(ck_state *st) {
    for (size_t i = 0; i < st->n; i++) {
        entry *e = &st->e[i];
        free(e->stage_buf);
        free(e->stage_os);
        e->stage_buf = NULL;
        e->stage_os = NULL;
        e->stage_t = NULL; /* owned by the load's scope */
    }
}

/* Phase 2: everything was read and checked; copy it into place. */
static int apply_entry(entry *e, char *why, size_t cap) {
    switch (e->kind) {
    case E_TENSOR:
        if (rt_copy_(e->tensor, e->stage_t) != RT_OK) {
            snprintf(why, cap, "%s: cannot copy into the tensor: %s", e->path, rt_last_error());
            return -1;
        }
        return 0;
    case E_OPTIM:
        if (rt_optim_set_lr(e->optim, e->stage_lr) != RT_OK) {
            snprintf(why, cap, "%s: cannot set lr: %s", e->path, rt_last_error());
            return -1;
        }
        for (size_t i = 0; i < rt_optim_param_count(e->optim); i++) {
            const char *name = rt_optim_param_name(e->optim, i);
            if (rt_optim_state_set(e->optim, name, &e->stage_os[i]) != RT_OK) {
                snprintf(why, cap, "%s/state/%s: cannot set optimizer state: %s", e->path, name, rt_last_error());
                return -1;
            }
        }
        return 0;
    case E_GEN:
        if (rt_gen_set_state(e->gen, e->stage_buf, e->n) != RT_OK) {
            snprintf(why, cap, "%s: cannot set generator state: %s", e->path, rt_last_error());
            return -1;
        }
        return 0;
    case E_BLOB: memcpy(e->ptr, e->stage_buf, e->n); return 0;
    case E_I64S: memcpy(e->ptr, e->stage_buf, e->n * sizeof(int64_t)); return 0;
    case E_I64: *(int64_t *)e->ptr = e->stage_i64; return 0;
    case E_F64: *(double *)e->ptr = e->stage_f64; return 0;
    }
    return -1;
}

int ck_load(ck_state *st, const char *path, ck_meta *meta_out, char *err, size_t errcap) {
    if (!st || !path) return set_err(err, errcap, CK_EINVAL, "ck_load: NULL argument");
    if (meta_out) memset(meta_out, 0, sizeof *meta_out);
    int rc = check_manifest(st, "load checkpoint", path);
    if (rc) return finish(st, rc, err, errcap);
    char herr[H5IO_ERR_MAX];
    load_ctx c = {0};
    c.f = h5io_open(path, 0, herr, sizeof herr);
    if (!c.f) {
        text_add(&st->err, "cannot load checkpoint: %s", herr);
        return finish(st, CK_EIO, err, errcap);
    }
    ck_meta m;
    memset(&m, 0, sizeof m);
    rc = check_header(c.f, path, &st->err, NULL);
    if (rc == CK_OK) {
        ck_text t = {0};
        if (read_meta_attrs(c.f, &m, meta_out != NULL, &t) != CK_OK) {
            text_add(&st->err, "%s: damaged checkpoint header:\n%s", path, t.s ? t.s : "");
            rc = CK_EFORMAT;
        }
        free(t.s);
    }
    if (rc != CK_OK) {
        h5io_close(c.f, NULL, 0);
        return finish(st, rc, err, errcap);
    }

    /* Phase 1: validate and stage everything. */
    c.S = rt_scope_new();
    if (!c.S) problem(&c, "out of memory");
    if (strcmp(m.algorithm, st->algorithm))
        problem(&c, "algorithm: %s in file, %s expected", m.algorithm, st->algorithm);
    for (size_t i = 0; c.S && i < st->n; i++) stage_entry(&c, &st->e[i]);
    h5io_close(c.f, NULL, 0);

    if (c.n_problems) {
        text_add(&st->err, "%s: cannot load checkpoint (%d problem%s; nothing was changed):\n%s", path,
                 c.n_problems, c.n_problems == 1 ? "" : "s", c.lines.s);
        if (st->err.len && st->err.s[st->err.len - 1] == '\n') st->err.s[--st->err.len] = 0;
        rc = c.io_error ? CK_EIO : CK_EMISMATCH;
    } else {
        /* Phase 2: apply. */
        char why[H5IO_ERR_MAX];
        int g = rt_no_grad_begin();
        for (size_t i = 0; rc == CK_OK && i < st->n; i++)
            if (apply_entry(&st->e[i], why, sizeof why) != 0) {
                text_add(&st->err, "%s: load failed while applying (state partly restored): %s", path, why);
                rc = CK_EIO;
            }
        rt_grad_mode_restore(g);
    }
    unstage(st);
    rt_scope_free(c.S);
    free(c.lines.s);
    if (rc == CK_OK && meta_out) *meta_out = m;
    else ck_meta_release(&m);
    return finish(st, rc, err, errcap);
}

/* ---- the checkpoints/ directory ------------------------------------------ */

int ck_path_for_step(const char *dir, int64_t step, char *out, size_t cap) {
    if (!dir || !out || step < 0) return CK_EINVAL;
    int n = snprintf(out, cap, "%s/step_%08lld.h5", dir, (long long)step);
    return (n < 0 || (size_t)n >= cap) ? CK_EINVAL : CK_OK;
}

/* step_<digits>.h5 -> step (else -1). */
static int64_t step_of_name(const char *name) {
    if (strncmp(name, "step_", 5)) return -1;
    const char *p = name + 5;
    int64_t v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = 10 * v + (*p - '0');
    }
    return (digits > 0 && !strcmp(p, ".h5")) ? v : -1;
}

/* Our temp files: "step_*.h5.tmp.<pid>" and "latest.tmp.<pid>"; the pid or -1. */
static long tmp_pid_of(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t || (strncmp(name, "step_", 5) && strncmp(name, "latest.", 7))) return -1;
    char *end;
    long pid = strtol(t + 5, &end, 10);
    return (*end == 0 && pid > 0) ? pid : 0;
}

int ck_write_latest(const char *dir, const char *name, char *err, size_t errcap) {
    if (!dir || !name || !name[0] || strchr(name, '/') || strchr(name, '\n'))
        return set_err(err, errcap, CK_EINVAL, "ck_write_latest: bad directory or file name");
    char path[CK_PATH_MAX], tmp[CK_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/latest", dir);
    snprintf(tmp, sizeof tmp, "%s/latest.tmp.%ld", dir, (long)getpid());
    FILE *fp = fopen(tmp, "w");
    if (!fp) return set_err(err, errcap, CK_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    int ok = fprintf(fp, "%s\n", name) > 0;
    ok = (fflush(fp) == 0) && ok;
    ok = (fsync(fileno(fp)) == 0) && ok;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return set_err(err, errcap, CK_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    if (fsync_path(dir, 1) != 0)
        return set_err(err, errcap, CK_EIO, "%s: written, but fsync of the directory failed: %s", path,
                       strerror(errno));
    return CK_OK;
}

/* The name in <dir>/latest (or "" when absent/unreadable). */
static void read_latest(const char *dir, char *name, size_t cap) {
    char path[CK_PATH_MAX];
    name[0] = 0;
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return;
    if (!fgets(name, (int)cap, fp)) name[0] = 0;
    fclose(fp);
    name[strcspn(name, "\r\n")] = 0;
}

/* step files of dir, sorted by step ascending. */
typedef struct step_file {
    int64_t step;
    char name[256];
} step_file;

static int cmp_step(const void *a, const void *b) {
    int64_t x = ((const step_file *)a)->step, y = ((const step_file *)b)->step;
    return (x > y) - (x < y);
}

/* List step files (and count temp files) in dir. */
static int list_dir(const char *dir, step_file **out, size_t *n, ck_scan *scan, char *err, size_t errcap) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return set_err(err, errcap, e == ENOENT ? CK_ENOTFOUND : CK_EIO, "%s: cannot open directory: %s", dir,
                       strerror(e));
    }
    size_t cap = 0;
    step_file *v = NULL;
    struct dirent *de;
    int rc = CK_OK;
    while ((de = readdir(d))) {
        if (tmp_pid_of(de->d_name) >= 0) {
            if (scan) {
                scan->n_stray_tmp++;
                size_t k = strlen(scan->notes);
                snprintf(scan->notes + k, sizeof scan->notes - k, "ignored stray temp file %s (an interrupted write)\n",
                         de->d_name);
            }
            continue;
        }
        int64_t s = step_of_name(de->d_name);
        if (s < 0 || strlen(de->d_name) >= sizeof v->name) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            step_file *g = realloc(v, cap * sizeof *g);
            if (!g) {
                rc = set_err(err, errcap, CK_EIO, "%s: out of memory", dir);
                break;
            }
            v = g;
        }
        v[*n].step = s;
        snprintf(v[*n].name, sizeof v[*n].name, "%s", de->d_name);
        (*n)++;
    }
    closedir(d);
    if (rc) {
        free(v);
        *n = 0;
        return rc;
    }
    if (*n) qsort(v, *n, sizeof *v, cmp_step);
    *out = v;
    return CK_OK;
}

/* Is dir/name a finished rlt checkpoint? Newer-format files count (loading
 * them then explains the version); *step receives the file's step. */
static int probe_complete(const char *dir, const char *name, int64_t *step, char *why, size_t cap) {
    char path[CK_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    h5io_file *f = h5io_open(path, 0, why, cap);
    if (!f) return 0;
    ck_text t = {0};
    int complete = 0;
    int rc = check_header(f, path, &t, &complete);
    int ok = (rc == CK_OK || (rc == CK_EFORMAT && complete)) &&
             h5io_attr_get_i64(f, "/", "step", step) == H5IO_OK;
    if (!ok) snprintf(why, cap, "%s", t.s ? t.s : h5io_error(f));
    free(t.s);
    h5io_close(f, NULL, 0);
    return ok;
}

int ck_find_latest(const char *dir, ck_scan *out, char *err, size_t errcap) {
    if (!dir || !out) return set_err(err, errcap, CK_EINVAL, "ck_find_latest: NULL argument");
    memset(out, 0, sizeof *out);
    step_file *v;
    size_t n;
    int rc = list_dir(dir, &v, &n, out, err, errcap);
    if (rc) return rc;
    char latest[256], why[H5IO_ERR_MAX];
    int64_t step = 0;
    read_latest(dir, latest, sizeof latest);
    if (latest[0]) {
        if (strchr(latest, '/') || step_of_name(latest) < 0) {
            size_t k = strlen(out->notes);
            snprintf(out->notes + k, sizeof out->notes - k, "ignored 'latest': '%s' is not a step_*.h5 name\n",
                     latest);
        } else if (probe_complete(dir, latest, &step, why, sizeof why)) {
            snprintf(out->path, sizeof out->path, "%s/%s", dir, latest);
            out->step = step;
            out->used_latest = 1;
            free(v);
            return CK_OK;
        } else {
            size_t k = strlen(out->notes);
            snprintf(out->notes + k, sizeof out->notes - k, "'latest' names %s, which is not usable: %s\n", latest,
                     why);
        }
    }
    for (size_t i = n; i-- > 0;) {
        if (latest[0] && !strcmp(v[i].name, latest)) continue; /* already probed */
        if (probe_complete(dir, v[i].name, &step, why, sizeof why)) {
            snprintf(out->path, sizeof out->path, "%s/%s", dir, v[i].name);
            out->step = step;
            free(v);
            return CK_OK;
        }
        out->n_skipped++;
        size_t k = strlen(out->notes);
        snprintf(out->notes + k, sizeof out->notes - k, "skipped %s: %s\n", v[i].name, why);
    }
    free(v);
    return set_err(err, errcap, CK_ENOTFOUND, "%s: no complete checkpoint%s", dir,
                   n ? " (every step_*.h5 file is incomplete or unreadable)" : "");
}

int ck_remove_stray_tmp(const char *dir, int *removed, char *err, size_t errcap) {
    if (removed) *removed = 0;
    if (!dir) return set_err(err, errcap, CK_EINVAL, "ck_remove_stray_tmp: NULL directory");
    DIR *d = opendir(dir);
    if (!d) return set_err(err, errcap, errno == ENOENT ? CK_OK : CK_EIO, "%s: cannot open directory: %s", dir,
                           strerror(errno));
    int rc = CK_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        long pid = tmp_pid_of(de->d_name);
        if (pid < 0) continue;
        /* A temp file of another live process is its write in progress. */
        if (pid > 0 && pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) continue;
        char path[CK_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) == 0) {
            if (removed) (*removed)++;
        } else if (errno != ENOENT) {
            rc = set_err(err, errcap, CK_EIO, "%s: cannot remove: %s", path, strerror(errno));
        }
    }
    closedir(d);
    return rc;
}

int ck_rotate(const char *dir, int keep_last, int64_t keep_every, int *removed, char *err, size_t errcap) {
    if (removed) *removed = 0;
    if (!dir) return set_err(err, errcap, CK_EINVAL, "ck_rotate: NULL directory");
    if (keep_last <= 0) return CK_OK;
    step_file *v;
    size_t n;
    int rc = list_dir(dir, &v, &n, NULL, err, errcap);
    if (rc) return rc == CK_ENOTFOUND ? CK_OK : rc;
    char latest[256];
    read_latest(dir, latest, sizeof latest);
    for (size_t i = 0; i < n; i++) {
        int keep = i + (size_t)keep_last >= n /* the newest keep_last, the newest included */
                   || (keep_every > 0 && v[i].step % keep_every == 0) || !strcmp(v[i].name, latest);
        if (keep) continue;
        char path[CK_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, v[i].name);
        if (unlink(path) == 0) {
            if (removed) (*removed)++;
        } else if (errno != ENOENT) {
            rc = set_err(err, errcap, CK_EIO, "%s: cannot remove: %s", path, strerror(errno));
        }
    }
    free(v);
    return rc;
}

/* ---- inspect ------------------------------------------------------------- */

static void human_bytes(double b, char *buf, size_t cap) {
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000.0 && i < 4) {
        b /= 1000.0;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

int ck_inspect(const char *path, FILE *out, char *err, size_t errcap) {
    if (!path || !out) return set_err(err, errcap, CK_EINVAL, "ck_inspect: NULL argument");
    char herr[H5IO_ERR_MAX], size[32] = "?";
    h5io_file *f = h5io_open(path, 0, herr, sizeof herr);
    if (!f) return set_err(err, errcap, CK_EIO, "%s", herr);
    struct stat sb;
    if (stat(path, &sb) == 0) human_bytes((double)sb.st_size, size, sizeof size);
    ck_text t = {0};
    int complete = 0;
    int rc = check_header(f, path, &t, &complete);
    ck_meta m;
    memset(&m, 0, sizeof m);
    int have_meta = (rc == CK_OK || complete) && read_meta_attrs(f, &m, 1, &t) == CK_OK;
    fprintf(out, "file          %s (%s)\n", path, size);
    if (have_meta) {
        fprintf(out, "format        %s v%lld (%s)\n", CK_FORMAT, (long long)m.format_version,
                complete ? "complete" : "INCOMPLETE");
        fprintf(out, "algorithm     %s\n", m.algorithm);
        fprintf(out, "step          %lld   epoch %lld   samples_seen %lld   tokens_seen %lld\n",
                (long long)m.step, (long long)m.epoch, (long long)m.samples_seen, (long long)m.tokens_seen);
        fprintf(out, "wall_time_s   %.3f\n", m.wall_time_s);
        fprintf(out, "created_utc   %s\n", m.created_utc);
        fprintf(out, "versions      rlt %s   libtorch %s   hdf5 %s\n", m.rlt_version, m.libtorch_version,
                m.hdf5_version);
        fprintf(out, "threads       %lld   world_size %lld\n", (long long)m.num_threads, (long long)m.world_size);
        fprintf(out, "blas          %s\n", m.blas);
        if (m.loaded_argc) {
            fprintf(out, "argv         ");
            for (size_t i = 0; i < m.loaded_argc; i++) fprintf(out, " %s", m.loaded_argv[i]);
            fprintf(out, "\n");
        }
        fprintf(out, "config (/config/resolved):\n");
        const char *s = m.loaded_config ? m.loaded_config : "";
        while (*s) {
            size_t len = strcspn(s, "\n");
            fprintf(out, "  | %.*s\n", (int)len, s);
            s += len + (s[len] == '\n');
        }
    } else {
        fprintf(out, "format        (not a readable rlt checkpoint)\n");
    }
    if (t.len) fprintf(out, "warning: %s\n", t.s);
    h5io_info *items = NULL;
    size_t n = 0;
    if (h5io_list(f, "/", &items, &n) == H5IO_OK) {
        size_t w = 4;
        int64_t total = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(items[i].path);
            if (l > w) w = l;
            total += items[i].numel;
        }
        fprintf(out, "datasets (%zu, %lld elements):\n", n, (long long)total);
        fprintf(out, "  %-*s  %-9s  %-18s  %-10s  %s\n", (int)w, "path", "dtype", "shape", "elements", "data");
        /* Reading every dataset verifies its Fletcher-32 checksum: inspect is
         * also how a user checks that a file is intact. */
        rt_scope *S = rt_scope_new();
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            char shape[160];
            h5io_shape_str(items[i].shape, items[i].ndim, shape, sizeof shape);
            int ok;
            if (items[i].is_string && items[i].ndim == 0) {
                char *text = NULL;
                ok = h5io_read_string(f, items[i].path, &text) == H5IO_OK;
                free(text);
            } else if (items[i].is_string) {
                char **v = NULL;
                size_t nv = 0;
                ok = h5io_read_strings(f, items[i].path, &v, &nv) == H5IO_OK;
                h5io_free_strings(v, nv);
            } else {
                ok = h5io_read_tensor(f, items[i].path, S) != NULL;
            }
            rt_scope_reset(S);
            fprintf(out, "  %-*s  %-9s  %-18s  %-10lld  %s\n", (int)w, items[i].path, items[i].dtype_name, shape,
                    (long long)items[i].numel, ok ? "ok" : "CORRUPT");
            if (!ok) {
                fprintf(out, "    %s\n", h5io_error(f));
                if (!bad) text_add(&t, "%s: dataset %s cannot be read: %s", path, items[i].path, h5io_error(f));
                bad++;
            }
        }
        rt_scope_free(S);
        free(items);
        if (bad) {
            fprintf(out, "error: %d dataset(s) fail their checksum or cannot be read\n", bad);
            if (rc == CK_OK) rc = CK_EIO;
        }
    } else {
        fprintf(out, "warning: cannot list datasets: %s\n", h5io_error(f));
        if (rc == CK_OK) rc = CK_EIO;
    }
    h5io_close(f, NULL, 0);
    ck_meta_release(&m);
    if (rc) set_err(err, errcap, rc, "%s", t.s ? t.s : "cannot inspect checkpoint");
    free(t.s);
    return rc;
}
