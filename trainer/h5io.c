/*
 * h5io.c -- checked HDF5 wrappers (see h5io.h). Every HDF5 call that can fail
 * is checked; failures become one message in the handle naming the file, the
 * object and the reason, with the innermost HDF5 message appended instead of
 * HDF5's printed error stack.
 */
#define _POSIX_C_SOURCE 200809L
#include "h5io.h"

#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES (1u << 20) /* chunk size cap: one read of a 1 MiB block */

struct h5io_file {
    hid_t id;
    int writable;
    char *name;
    char err[H5IO_ERR_MAX];
};

/* ---- errors -------------------------------------------------------------- */

/* HDF5 prints its error stack to stderr unless told not to (per thread). */
static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct stack_walk {
    char inner[256]; /* where the error was first detected */
    char outer[256]; /* the API call that failed            */
} stack_walk;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    stack_walk *w = data;
    const char *desc = (e && e->desc) ? e->desc : "";
    if (n == 0) snprintf(w->inner, sizeof w->inner, "%s", desc);
    snprintf(w->outer, sizeof w->outer, "%s", desc);
    return 0;
}

/* " (HDF5: outer: inner)" from the current error stack, which is cleared;
 * "" when the stack is empty (the failure was ours, not HDF5's). */
static void hdf5_reason(char *buf, size_t cap) {
    stack_walk w = {{0}, {0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    if (!w.inner[0] && !w.outer[0])
        buf[0] = 0;
    else if (!strcmp(w.inner, w.outer) || !w.outer[0])
        snprintf(buf, cap, " (HDF5: %s)", w.inner);
    else
        snprintf(buf, cap, " (HDF5: %s: %s)", w.outer, w.inner);
}

/* "<file>: <path>: <reason> (HDF5: ...)" into dst. */
static void vformat_error(char *dst, size_t cap, const char *file, const char *path, const char *fmt,
                          va_list ap) {
    char what[512], why[600];
    vsnprintf(what, sizeof what, fmt, ap);
    hdf5_reason(why, sizeof why);
    int n = (path && path[0]) ? snprintf(dst, cap, "%s: %s: %s%s", file, path, what, why)
                              : snprintf(dst, cap, "%s: %s%s", file, what, why);
    if (n < 0 && cap) dst[0] = 0; /* a long message is cut, never a failure */
}

#if defined(__GNUC__)
#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))
#else
#define PRINTF_LIKE(a, b)
#endif

static int fail(h5io_file *f, int status, const char *path, const char *fmt, ...) PRINTF_LIKE(4, 5);
static int fail(h5io_file *f, int status, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vformat_error(f->err, sizeof f->err, f->name, path, fmt, ap);
    va_end(ap);
    return status;
}

static void fail_buf(char *err, size_t cap, const char *file, const char *fmt, ...) PRINTF_LIKE(4, 5);
static void fail_buf(char *err, size_t cap, const char *file, const char *fmt, ...) {
    char tmp[H5IO_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vformat_error(tmp, sizeof tmp, file, NULL, fmt, ap);
    va_end(ap);
    if (err && cap) snprintf(err, cap, "%s", tmp);
}

/* Normalise "a/b" and "/a/b" to "/a/b" (root: "/"). */
static int norm_path(h5io_file *f, const char *path, char *out) {
    if (!path) return fail(f, H5IO_EINVAL, "", "NULL object path");
    while (*path == '/') path++;
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/') n--;
    if (n + 2 > H5IO_PATH_MAX) return fail(f, H5IO_EINVAL, "", "object path too long (%zu chars)", n);
    out[0] = '/';
    memcpy(out + 1, path, n);
    out[n + 1] = 0;
    if (strstr(out, "//")) return fail(f, H5IO_EINVAL, out, "empty path component");
    return H5IO_OK;
}

#define CHECK_F(f)                                                                                 \
    do {                                                                                           \
        if (!(f)) return H5IO_EINVAL;                                                              \
        quiet();                                                                                   \
        (f)->err[0] = 0;                                                                           \
    } while (0)

/* ---- files --------------------------------------------------------------- */

/* File access: HDF5 1.8 object format (checksummed metadata) and a strong
 * close so H5Fclose really closes (and flushes) everything. */
static hid_t make_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

static h5io_file *new_handle(const char *path, char *err, size_t errcap) {
    h5io_file *f = calloc(1, sizeof *f);
    if (f) f->name = strdup(path);
    if (!f || !f->name) {
        free(f);
        if (err && errcap) snprintf(err, errcap, "%s: out of memory", path);
        return NULL;
    }
    f->id = -1;
    return f;
}

static void free_handle(h5io_file *f) {
    if (!f) return;
    free(f->name);
    free(f);
}

h5io_file *h5io_create(const char *path, int exclusive, char *err, size_t errcap) {
    if (!path) {
        if (err && errcap) snprintf(err, errcap, "h5io_create: NULL path");
        return NULL;
    }
    quiet();
    h5io_file *f = new_handle(path, err, errcap);
    if (!f) return NULL;
    hid_t fapl = make_fapl();
    if (fapl >= 0) f->id = H5Fcreate(path, exclusive ? H5F_ACC_EXCL : H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f->id < 0) {
        fail_buf(err, errcap, path, "cannot create file%s", exclusive ? " (exclusive)" : "");
        if (fapl >= 0) H5Pclose(fapl);
        free_handle(f);
        return NULL;
    }
    H5Pclose(fapl);
    f->writable = 1;
    return f;
}

h5io_file *h5io_open(const char *path, int writable, char *err, size_t errcap) {
    if (!path) {
        if (err && errcap) snprintf(err, errcap, "h5io_open: NULL path");
        return NULL;
    }
    quiet();
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        if (err && errcap) snprintf(err, errcap, "%s: cannot open file (does not exist or no permission)", path);
        return NULL;
    }
    fclose(probe);
    htri_t is = H5Fis_hdf5(path);
    if (is == 0) {
        H5Eclear2(H5E_DEFAULT);
        if (err && errcap) snprintf(err, errcap, "%s: not an HDF5 file (no HDF5 signature)", path);
        return NULL;
    }
    h5io_file *f = new_handle(path, err, errcap);
    if (!f) return NULL;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0)
        f->id = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
    if (f->id < 0) {
        fail_buf(err, errcap, path, "cannot open HDF5 file (truncated or corrupt?)");
        if (fapl >= 0) H5Pclose(fapl);
        free_handle(f);
        return NULL;
    }
    H5Pclose(fapl);
    f->writable = writable != 0;
    return f;
}

int h5io_flush(h5io_file *f) {
    CHECK_F(f);
    if (H5Fflush(f->id, H5F_SCOPE_GLOBAL) < 0) return fail(f, H5IO_EIO, "", "cannot flush file");
    return H5IO_OK;
}

int h5io_close(h5io_file *f, char *err, size_t errcap) {
    if (!f) return H5IO_OK;
    quiet();
    int rc = H5IO_OK;
    if (f->id >= 0 && H5Fclose(f->id) < 0) {
        fail_buf(err, errcap, f->name, "cannot close file (data may not be written)");
        rc = H5IO_EIO;
    }
    free_handle(f);
    return rc;
}

const char *h5io_error(const h5io_file *f) { return f ? f->err : "h5io: NULL file handle"; }
const char *h5io_filename(const h5io_file *f) { return f ? f->name : ""; }

const char *h5io_library_version(void) {
    static const char version[] = H5_VERS_INFO; /* "HDF5 library version: 1.10.8" */
    const char *p = strrchr(version, ' ');
    return p ? p + 1 : version;
}

/* ---- objects ------------------------------------------------------------- */

/* 1/0: does every component of the normalised path p exist (as a link)? */
static int path_exists(h5io_file *f, const char *p) {
    if (!strcmp(p, "/")) return 1;
    char buf[H5IO_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", p);
    for (char *s = strchr(buf + 1, '/');; s = strchr(s + 1, '/')) {
        if (s) *s = 0;
        htri_t e = H5Lexists(f->id, buf, H5P_DEFAULT);
        if (e < 0) return fail(f, H5IO_EIO, p, "cannot look up '%s'", buf);
        if (e == 0) {
            H5Eclear2(H5E_DEFAULT);
            return 0;
        }
        if (!s) return 1;
        *s = '/';
    }
}

int h5io_exists(h5io_file *f, const char *path) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, path, p);
    return rc < 0 ? rc : path_exists(f, p);
}

/* Link creation that makes missing parent groups. */
static hid_t make_lcpl(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return -1;
    }
    return lcpl;
}

static int create_group_norm(h5io_file *f, const char *p) {
    int e = path_exists(f, p);
    if (e < 0) return e;
    if (e) {
        hid_t o = H5Oopen(f->id, p, H5P_DEFAULT);
        int is_group = o >= 0 && H5Iget_type(o) == H5I_GROUP;
        if (o >= 0) H5Oclose(o);
        return is_group ? H5IO_OK : fail(f, H5IO_EINVAL, p, "exists and is not a group");
    }
    hid_t lcpl = make_lcpl();
    hid_t g = lcpl >= 0 ? H5Gcreate2(f->id, p, lcpl, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (lcpl >= 0) H5Pclose(lcpl);
    if (g < 0) return fail(f, H5IO_EIO, p, "cannot create group");
    H5Gclose(g);
    return H5IO_OK;
}

int h5io_create_group(h5io_file *f, const char *path) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, path, p);
    return rc < 0 ? rc : create_group_norm(f, p);
}

/* Before writing p: it must not name the root, and an old dataset there is
 * removed (writers replace). */
static int prepare_write(h5io_file *f, const char *path, char *p) {
    int rc = norm_path(f, path, p);
    if (rc < 0) return rc;
    if (!strcmp(p, "/")) return fail(f, H5IO_EINVAL, p, "cannot write a dataset at the root");
    if (!f->writable) return fail(f, H5IO_EINVAL, p, "file is open read-only");
    int e = path_exists(f, p);
    if (e < 0) return e;
    if (e && H5Ldelete(f->id, p, H5P_DEFAULT) < 0) return fail(f, H5IO_EIO, p, "cannot replace object");
    return H5IO_OK;
}

/* ---- types --------------------------------------------------------------- */

/* The IEEE half type (h5py's float16 layout). Caller closes. */
static hid_t make_f16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0 ||
        H5Tset_precision(t, 16) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* numpy bool as h5py stores it: enum {FALSE = 0, TRUE = 1} over int8. */
static hid_t make_bool_type(void) {
    hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
    if (t < 0) return -1;
    int8_t no = 0, yes = 1;
    if (H5Tenum_insert(t, "FALSE", &no) < 0 || H5Tenum_insert(t, "TRUE", &yes) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* File and memory types for dt. *owned = 1 when the caller must H5Tclose
 * both (they are then the same id). */
static int types_for(rt_dtype dt, hid_t *file_t, hid_t *mem_t, int *owned) {
    *owned = 0;
    switch (dt) {
    case RT_F32: *file_t = H5T_IEEE_F32LE; *mem_t = H5T_NATIVE_FLOAT; return 0;
    case RT_F64: *file_t = H5T_IEEE_F64LE; *mem_t = H5T_NATIVE_DOUBLE; return 0;
    case RT_I64: *file_t = H5T_STD_I64LE; *mem_t = H5T_NATIVE_INT64; return 0;
    case RT_I32: *file_t = H5T_STD_I32LE; *mem_t = H5T_NATIVE_INT32; return 0;
    case RT_U8: *file_t = H5T_STD_U8LE; *mem_t = H5T_NATIVE_UINT8; return 0;
    case RT_BF16: *file_t = H5T_STD_U16LE; *mem_t = H5T_NATIVE_UINT16; return 0;
    case RT_BOOL: *file_t = *mem_t = make_bool_type(); break;
    case RT_F16: *file_t = *mem_t = make_f16_type(); break;
    default: return -1;
    }
    if (*file_t < 0) return -1;
    *owned = 1;
    return 0;
}


/* ---- dataset info -------------------------------------------------------- */

static int has_bf16_attr(hid_t ds) {
    if (H5Aexists(ds, "dtype") <= 0) return 0;
    int yes = 0;
    hid_t a = H5Aopen(ds, "dtype", H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            char *s = NULL; /* read in the stored type: ASCII<->UTF-8 does not convert */
            if (H5Aread(a, t, &s) >= 0 && s) {
                yes = !strcmp(s, "bfloat16");
                H5free_memory(s);
            }
        } else {
            char buf[32] = {0};
            size_t n = H5Tget_size(t);
            if (n < sizeof buf && H5Aread(a, t, buf) >= 0) yes = !strncmp(buf, "bfloat16", n);
        }
    }
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    return yes;
}

/* Fill out from an open dataset. */
static int info_of(h5io_file *f, hid_t ds, const char *p, h5io_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", p);
    out->dtype = -1;
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int rc = H5IO_OK;
    if (t < 0 || sp < 0) {
        rc = fail(f, H5IO_EIO, p, "cannot read dataset type or shape");
        goto done;
    }
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0 || nd > RT_MAX_DIMS) {
        rc = fail(f, nd < 0 ? H5IO_EIO : H5IO_ETYPE, p, "unsupported rank %d (max %d)", nd, RT_MAX_DIMS);
        goto done;
    }
    hsize_t dims[RT_MAX_DIMS];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    out->ndim = nd;
    out->numel = 1;
    for (int i = 0; i < nd; i++) {
        out->shape[i] = (int64_t)dims[i];
        out->numel *= (int64_t)dims[i];
    }
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    const char *name = NULL;
    if (c == H5T_FLOAT) {
        if (sz == 4) out->dtype = RT_F32;
        else if (sz == 8) out->dtype = RT_F64;
        else if (sz == 2) out->dtype = RT_F16;
        else snprintf(out->dtype_name, sizeof out->dtype_name, "float%zu", 8 * sz);
    } else if (c == H5T_INTEGER) {
        int sign = H5Tget_sign(t) == H5T_SGN_2;
        if (sign && sz == 8) out->dtype = RT_I64;
        else if (sign && sz == 4) out->dtype = RT_I32;
        else if (!sign && sz == 1) out->dtype = RT_U8;
        else if (!sign && sz == 2 && has_bf16_attr(ds)) out->dtype = RT_BF16;
        else snprintf(out->dtype_name, sizeof out->dtype_name, "%sint%zu", sign ? "" : "u", 8 * sz);
    } else if (c == H5T_ENUM && sz == 1) {
        out->dtype = RT_BOOL; /* h5py's numpy bool; other 1-byte enums convert by name and fail on read */
    } else if (c == H5T_STRING) {
        out->is_string = 1;
        name = "string";
    } else {
        name = c == H5T_COMPOUND ? "compound" : c == H5T_ENUM ? "enum" : "other";
    }
    if (out->dtype >= 0) name = rt_dtype_name((rt_dtype)out->dtype);
    if (name) snprintf(out->dtype_name, sizeof out->dtype_name, "%s", name);
done:
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* Open the dataset at the normalised path p (ENOTFOUND / EINVAL for groups). */
static hid_t open_dataset(h5io_file *f, const char *p, int *status) {
    int e = path_exists(f, p);
    if (e <= 0) {
        *status = e < 0 ? e : fail(f, H5IO_ENOTFOUND, p, "no such dataset");
        return -1;
    }
    hid_t o = H5Oopen(f->id, p, H5P_DEFAULT);
    if (o < 0) {
        *status = fail(f, H5IO_EIO, p, "cannot open object");
        return -1;
    }
    if (H5Iget_type(o) != H5I_DATASET) {
        H5Oclose(o);
        *status = fail(f, H5IO_EINVAL, p, "is a group, not a dataset");
        return -1;
    }
    *status = H5IO_OK;
    return o;
}

int h5io_dataset_info(h5io_file *f, const char *path, h5io_info *out) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, path, p);
    if (rc < 0 || !out) return rc < 0 ? rc : fail(f, H5IO_EINVAL, p, "NULL output");
    hid_t ds = open_dataset(f, p, &rc);
    if (ds < 0) return rc;
    rc = info_of(f, ds, p, out);
    H5Dclose(ds);
    return rc;
}

typedef struct list_ctx {
    h5io_file *f;
    const char *base; /* normalised group path */
    h5io_info *items;
    size_t n, cap;
    int rc;
} list_ctx;

static herr_t list_cb(hid_t g, const char *name, const H5L_info_t *li, void *data) {
    list_ctx *c = data;
    if (li->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        c->rc = fail(c->f, H5IO_EIO, name, "cannot open object while listing");
        return -1;
    }
    if (H5Iget_type(o) == H5I_DATASET) {
        if (c->n == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 32;
            h5io_info *grown = realloc(c->items, cap * sizeof *grown);
            if (!grown) {
                H5Oclose(o);
                c->rc = fail(c->f, H5IO_EIO, c->base, "out of memory while listing");
                return -1;
            }
            c->items = grown;
            c->cap = cap;
        }
        char p[H5IO_PATH_MAX];
        snprintf(p, sizeof p, "%s%s%s", c->base, strcmp(c->base, "/") ? "/" : "", name);
        int rc = info_of(c->f, o, p, &c->items[c->n]);
        if (rc < 0) {
            H5Oclose(o);
            c->rc = rc;
            return -1;
        }
        c->n++;
    }
    H5Oclose(o);
    return 0;
}

int h5io_list(h5io_file *f, const char *group, h5io_info **out, size_t *n) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, group ? group : "/", p);
    if (rc < 0) return rc;
    if (!out || !n) return fail(f, H5IO_EINVAL, p, "NULL output");
    *out = NULL;
    *n = 0;
    int e = path_exists(f, p);
    if (e <= 0) return e < 0 ? e : fail(f, H5IO_ENOTFOUND, p, "no such group");
    hid_t g = H5Gopen2(f->id, p, H5P_DEFAULT);
    if (g < 0) return fail(f, H5IO_EINVAL, p, "not a group");
    list_ctx c = {f, p, NULL, 0, 0, H5IO_OK};
    herr_t r = H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, list_cb, &c);
    H5Gclose(g);
    if (r < 0 || c.rc < 0) {
        free(c.items);
        return c.rc < 0 ? c.rc : fail(f, H5IO_EIO, p, "cannot list group");
    }
    *out = c.items;
    *n = c.n;
    return H5IO_OK;
}

const char *h5io_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t k = 0;
    if (!buf || cap == 0) return buf;
    k += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* ---- arrays -------------------------------------------------------------- */

static int write_array_norm(h5io_file *f, const char *p, rt_dtype dt, const int64_t *shape, int ndim,
                            const void *data, int deflate) {
    hid_t ft, mt;
    int owned;
    if (ndim < 0 || ndim > RT_MAX_DIMS) return fail(f, H5IO_EINVAL, p, "rank %d out of range", ndim);
    if (deflate < 0 || deflate > 9) return fail(f, H5IO_EINVAL, p, "deflate level %d not in 0..9", deflate);
    if (types_for(dt, &ft, &mt, &owned) < 0) return fail(f, H5IO_EINVAL, p, "unsupported dtype %d", (int)dt);
    hsize_t dims[RT_MAX_DIMS], chunk[RT_MAX_DIMS];
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            if (owned) H5Tclose(ft);
            return fail(f, H5IO_EINVAL, p, "negative size in shape");
        }
        dims[i] = chunk[i] = (hsize_t)shape[i];
        numel *= (uint64_t)shape[i];
    }
    if (numel > 0 && !data) {
        if (owned) H5Tclose(ft);
        return fail(f, H5IO_EINVAL, p, "NULL data");
    }
    int rc = H5IO_OK;
    hid_t space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = make_lcpl(), ds = -1;
    if (space < 0 || dcpl < 0 || lcpl < 0) {
        rc = fail(f, H5IO_EIO, p, "cannot set up dataset");
        goto done;
    }
    if (ndim > 0 && numel > 0) {
        /* Halve leading dims until a chunk fits CHUNK_BYTES. */
        uint64_t cap = CHUNK_BYTES / rt_dtype_size(dt), cn = numel;
        for (int i = 0; cn > cap && i < ndim;) {
            if (chunk[i] <= 1) {
                i++;
                continue;
            }
            cn /= chunk[i];
            chunk[i] = (chunk[i] + 1) / 2;
            cn *= chunk[i];
        }
        if (H5Pset_chunk(dcpl, ndim, chunk) < 0 ||
            (deflate > 0 && (H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, (unsigned)deflate) < 0)) ||
            H5Pset_fletcher32(dcpl) < 0) {
            rc = fail(f, H5IO_EIO, p, "cannot set chunking/filters");
            goto done;
        }
    }
    ds = H5Dcreate2(f->id, p, ft, space, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) {
        rc = fail(f, H5IO_EIO, p, "cannot create dataset");
        goto done;
    }
    if (dt == RT_BF16) {
        hid_t asp = H5Screate(H5S_SCALAR), st = H5Tcopy(H5T_C_S1);
        const char *label = "bfloat16";
        hid_t a = -1;
        if (asp >= 0 && st >= 0 && H5Tset_size(st, H5T_VARIABLE) >= 0 && H5Tset_cset(st, H5T_CSET_UTF8) >= 0)
            a = H5Acreate2(ds, "dtype", st, asp, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, st, &label) < 0) rc = fail(f, H5IO_EIO, p, "cannot write attribute dtype");
        if (a >= 0) H5Aclose(a);
        if (st >= 0) H5Tclose(st);
        if (asp >= 0) H5Sclose(asp);
        if (rc < 0) goto done;
    }
    if (numel > 0 && H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = fail(f, H5IO_EIO, p, "cannot write data");
done:
    if (ds >= 0 && H5Dclose(ds) < 0 && rc == H5IO_OK) rc = fail(f, H5IO_EIO, p, "cannot close dataset");
    if (lcpl >= 0) H5Pclose(lcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    if (owned) H5Tclose(ft);
    return rc;
}

int h5io_write_array(h5io_file *f, const char *path, rt_dtype dt, const int64_t *shape, int ndim,
                     const void *data, int deflate) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = prepare_write(f, path, p);
    return rc < 0 ? rc : write_array_norm(f, p, dt, shape, ndim, data, deflate);
}

/* Read the whole open dataset ds as dt into data (sizes already checked). */
static int read_all(h5io_file *f, hid_t ds, const char *p, rt_dtype dt, int64_t numel, void *data) {
    if (numel == 0) return H5IO_OK;
    hid_t ft, mt;
    int owned;
    if (types_for(dt, &ft, &mt, &owned) < 0) return fail(f, H5IO_EINVAL, p, "unsupported dtype %d", (int)dt);
    int rc = H5IO_OK;
    if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = fail(f, H5IO_EIO, p, "cannot read data");
    if (owned) H5Tclose(ft);
    return rc;
}

/* Open p and check it holds dt with this shape; returns the dataset. */
static hid_t open_checked(h5io_file *f, const char *p, rt_dtype dt, const int64_t *shape, int ndim,
                          int *status) {
    hid_t ds = open_dataset(f, p, status);
    if (ds < 0) return -1;
    h5io_info in;
    *status = info_of(f, ds, p, &in);
    if (*status < 0) goto bad;
    int same = in.ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = in.shape[i] == shape[i];
    if (in.dtype != (int)dt || !same) {
        char a[128], b[128];
        h5io_shape_str(in.shape, in.ndim, a, sizeof a);
        h5io_shape_str(shape, ndim, b, sizeof b);
        *status = fail(f, H5IO_EMISMATCH, p, "%s %s in file, %s %s expected", in.dtype_name, a,
                       rt_dtype_name(dt), b);
        goto bad;
    }
    return ds;
bad:
    H5Dclose(ds);
    return -1;
}

int h5io_read_array(h5io_file *f, const char *path, rt_dtype dt, const int64_t *shape, int ndim,
                    void *data) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, path, p);
    if (rc < 0) return rc;
    if (ndim < 0 || ndim > RT_MAX_DIMS) return fail(f, H5IO_EINVAL, p, "rank %d out of range", ndim);
    hid_t ds = open_checked(f, p, dt, shape, ndim, &rc);
    if (ds < 0) return rc;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    rc = read_all(f, ds, p, dt, numel, data);
    H5Dclose(ds);
    return rc;
}

/* ---- tensors ------------------------------------------------------------- */

int h5io_write_tensor(h5io_file *f, const char *path, const rt_tensor *t, int deflate) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = prepare_write(f, path, p);
    if (rc < 0) return rc;
    if (!t) return fail(f, H5IO_EINVAL, p, "NULL tensor (%s)", rt_last_error());
    int64_t shape[RT_MAX_DIMS];
    int nd = rt_shape(t, shape, RT_MAX_DIMS);
    if (nd < 0) return fail(f, H5IO_EINVAL, p, "cannot query tensor shape: %s", rt_last_error());
    rt_dtype dt = rt_dtype_of(t);
    if (rt_device_of(t) != RT_CPU) return fail(f, H5IO_EINVAL, p, "tensor is not on the CPU");
    const void *data = rt_data_ptr(t);
    void *copy = NULL;
    int64_t numel = rt_numel(t);
    if (!data && numel > 0) { /* non-contiguous: copy out row-major */
        size_t nbytes = (size_t)numel * rt_dtype_size(dt);
        copy = malloc(nbytes);
        if (!copy) return fail(f, H5IO_EIO, p, "out of memory (%zu bytes)", nbytes);
        if (rt_to_data(t, dt, copy, nbytes) != RT_OK) {
            free(copy);
            return fail(f, H5IO_EIO, p, "cannot copy tensor data: %s", rt_last_error());
        }
        data = copy;
    }
    rc = write_array_norm(f, p, dt, shape, nd, data, deflate);
    free(copy);
    return rc;
}

rt_tensor *h5io_read_tensor(h5io_file *f, const char *path, rt_scope *S) {
    if (!f) return NULL;
    quiet();
    f->err[0] = 0;
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, path, p);
    if (rc < 0) return NULL;
    hid_t ds = open_dataset(f, p, &rc);
    if (ds < 0) return NULL;
    h5io_info in;
    rt_tensor *t = NULL;
    if (info_of(f, ds, p, &in) < 0) goto done;
    if (in.dtype < 0) {
        fail(f, H5IO_ETYPE, p, "stored type %s cannot be read as a tensor", in.dtype_name);
        goto done;
    }
    t = rt_empty(NULL, in.shape, in.ndim, RT_OPTS((rt_dtype)in.dtype));
    if (!t) {
        fail(f, H5IO_EIO, p, "cannot allocate tensor: %s", rt_last_error());
        goto done;
    }
    if (read_all(f, ds, p, (rt_dtype)in.dtype, in.numel, rt_data_ptr(t)) < 0) {
        rt_free(t);
        t = NULL;
        goto done;
    }
    if (S) rt_move(t, S);
done:
    H5Dclose(ds);
    return t;
}

int h5io_read_into(h5io_file *f, const char *path, rt_tensor *dst) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, path, p);
    if (rc < 0) return rc;
    if (!dst) return fail(f, H5IO_EINVAL, p, "NULL destination tensor");
    int64_t shape[RT_MAX_DIMS];
    int nd = rt_shape(dst, shape, RT_MAX_DIMS);
    if (nd < 0) return fail(f, H5IO_EINVAL, p, "cannot query tensor shape: %s", rt_last_error());
    rt_dtype dt = rt_dtype_of(dst);
    hid_t ds = open_checked(f, p, dt, shape, nd, &rc);
    if (ds < 0) return rc;
    rt_tensor *tmp = rt_empty(NULL, shape, nd, RT_OPTS(dt));
    if (!tmp) {
        H5Dclose(ds);
        return fail(f, H5IO_EIO, p, "cannot allocate tensor: %s", rt_last_error());
    }
    rc = read_all(f, ds, p, dt, rt_numel(tmp), rt_data_ptr(tmp));
    H5Dclose(ds);
    if (rc == H5IO_OK) {
        int g = rt_no_grad_begin();
        if (rt_copy_(dst, tmp) != RT_OK) rc = fail(f, H5IO_EIO, p, "cannot copy into tensor: %s", rt_last_error());
        rt_grad_mode_restore(g);
    }
    rt_free(tmp);
    return rc;
}

/* ---- bytes --------------------------------------------------------------- */

int h5io_write_bytes(h5io_file *f, const char *path, const void *data, size_t n) {
    int64_t shape[1] = {(int64_t)n};
    return h5io_write_array(f, path, RT_U8, shape, 1, data, 0);
}

int h5io_read_bytes(h5io_file *f, const char *path, void *data, size_t n) {
    int64_t shape[1] = {(int64_t)n};
    return h5io_read_array(f, path, RT_U8, shape, 1, data);
}

/* ---- strings ------------------------------------------------------------- */

static hid_t make_vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static int write_strings_norm(h5io_file *f, const char *p, const char *const *v, size_t n, int scalar) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t t = make_vlen_utf8();
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    hid_t lcpl = make_lcpl(), ds = -1;
    int rc = H5IO_OK;
    if (t < 0 || sp < 0 || lcpl < 0 || (ds = H5Dcreate2(f->id, p, t, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        rc = fail(f, H5IO_EIO, p, "cannot create string dataset");
    else if ((scalar || n > 0) && H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        rc = fail(f, H5IO_EIO, p, "cannot write string data");
    if (ds >= 0 && H5Dclose(ds) < 0 && rc == H5IO_OK) rc = fail(f, H5IO_EIO, p, "cannot close dataset");
    if (lcpl >= 0) H5Pclose(lcpl);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return rc;
}

int h5io_write_string(h5io_file *f, const char *path, const char *text) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = prepare_write(f, path, p);
    if (rc < 0) return rc;
    const char *v[1] = {text ? text : ""};
    return write_strings_norm(f, p, v, 1, 1);
}

int h5io_write_strings(h5io_file *f, const char *path, const char *const *v, size_t n) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = prepare_write(f, path, p);
    if (rc < 0) return rc;
    for (size_t i = 0; i < n; i++)
        if (!v[i]) return fail(f, H5IO_EINVAL, p, "string %zu is NULL", i);
    return write_strings_norm(f, p, v, n, 0);
}

void h5io_free_strings(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Read the string dataset ds (n elements) into malloc'd copies. */
static int read_strings_ds(h5io_file *f, hid_t ds, const char *p, size_t n, char **out) {
    hid_t ft = H5Dget_type(ds);
    int rc = H5IO_OK;
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        if (ft >= 0) H5Tclose(ft);
        return fail(f, H5IO_EMISMATCH, p, "not a string dataset");
    }
    for (size_t i = 0; i < n; i++) out[i] = NULL;
    if (H5Tis_variable_str(ft) > 0) {
        char **raw = calloc(n ? n : 1, sizeof *raw);
        hid_t mt = H5Tcopy(ft); /* the stored type: ASCII<->UTF-8 does not convert */
        if (!raw || mt < 0) rc = fail(f, H5IO_EIO, p, "out of memory");
        else if (n && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0)
            rc = fail(f, H5IO_EIO, p, "cannot read string data");
        for (size_t i = 0; rc == H5IO_OK && i < n; i++)
            if (!(out[i] = strdup(raw[i] ? raw[i] : ""))) rc = fail(f, H5IO_EIO, p, "out of memory");
        if (raw && rc >= 0 && n) {
            hid_t sp = H5Dget_space(ds);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
            H5Sclose(sp);
        }
        if (mt >= 0) H5Tclose(mt);
        free(raw);
    } else {
        size_t len = H5Tget_size(ft);
        char *raw = calloc(n ? n : 1, len);
        if (!raw) rc = fail(f, H5IO_EIO, p, "out of memory");
        else if (n && H5Dread(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0)
            rc = fail(f, H5IO_EIO, p, "cannot read string data");
        for (size_t i = 0; rc == H5IO_OK && i < n; i++) {
            out[i] = calloc(len + 1, 1);
            if (!out[i]) rc = fail(f, H5IO_EIO, p, "out of memory");
            else memcpy(out[i], raw + i * len, len);
        }
        free(raw);
    }
    H5Tclose(ft);
    if (rc < 0)
        for (size_t i = 0; i < n; i++) {
            free(out[i]);
            out[i] = NULL;
        }
    return rc;
}

int h5io_read_string(h5io_file *f, const char *path, char **out) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, path, p);
    if (rc < 0) return rc;
    if (!out) return fail(f, H5IO_EINVAL, p, "NULL output");
    *out = NULL;
    hid_t ds = open_dataset(f, p, &rc);
    if (ds < 0) return rc;
    hid_t sp = H5Dget_space(ds);
    if (sp < 0 || H5Sget_simple_extent_npoints(sp) != 1)
        rc = fail(f, H5IO_EMISMATCH, p, "not a single string");
    else
        rc = read_strings_ds(f, ds, p, 1, out);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

int h5io_read_strings(h5io_file *f, const char *path, char ***out, size_t *n) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = norm_path(f, path, p);
    if (rc < 0) return rc;
    if (!out || !n) return fail(f, H5IO_EINVAL, p, "NULL output");
    *out = NULL;
    *n = 0;
    hid_t ds = open_dataset(f, p, &rc);
    if (ds < 0) return rc;
    hid_t sp = H5Dget_space(ds);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    char **v = np >= 0 ? calloc(np ? (size_t)np : 1, sizeof *v) : NULL;
    if (np < 0) rc = fail(f, H5IO_EIO, p, "cannot read dataspace");
    else if (!v) rc = fail(f, H5IO_EIO, p, "out of memory");
    else rc = read_strings_ds(f, ds, p, (size_t)np, v);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = (size_t)np;
    return H5IO_OK;
}

/* ---- attributes ---------------------------------------------------------- */

static hid_t open_object(h5io_file *f, const char *path, char *p, int *status) {
    *status = norm_path(f, path, p);
    if (*status < 0) return -1;
    int e = path_exists(f, p);
    if (e <= 0) {
        *status = e < 0 ? e : fail(f, H5IO_ENOTFOUND, p, "no such object");
        return -1;
    }
    hid_t o = H5Oopen(f->id, p, H5P_DEFAULT);
    if (o < 0) *status = fail(f, H5IO_EIO, p, "cannot open object");
    return o;
}

int h5io_attr_exists(h5io_file *f, const char *path, const char *name) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc;
    hid_t o = open_object(f, path, p, &rc);
    if (o < 0) return rc;
    htri_t e = H5Aexists(o, name);
    H5Oclose(o);
    return e < 0 ? fail(f, H5IO_EIO, p, "cannot look up attribute '%s'", name) : (int)e;
}

static int attr_write(h5io_file *f, const char *path, const char *name, hid_t ft, hid_t mt,
                      const void *v) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc;
    if (!name || !name[0]) return fail(f, H5IO_EINVAL, path ? path : "", "empty attribute name");
    if (!f->writable) return fail(f, H5IO_EINVAL, path ? path : "", "file is open read-only");
    /* Attributes on "/" always work; on a group, create it on demand. */
    if (path && strcmp(path, "/") && strcmp(path, "")) {
        char q[H5IO_PATH_MAX];
        if ((rc = norm_path(f, path, q)) < 0) return rc;
        if ((rc = path_exists(f, q)) < 0) return rc;
        if (!rc && (rc = create_group_norm(f, q)) < 0) return rc;
    }
    hid_t o = open_object(f, path, p, &rc);
    if (o < 0) return rc;
    hid_t sp = H5Screate(H5S_SCALAR), a = -1;
    rc = H5IO_OK;
    htri_t e = H5Aexists(o, name);
    if (e > 0 && H5Adelete(o, name) < 0) e = -1;
    if (e < 0 || sp < 0 || (a = H5Acreate2(o, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, mt, v) < 0)
        rc = fail(f, H5IO_EIO, p, "cannot write attribute '%s'", name);
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    H5Oclose(o);
    return rc;
}

int h5io_attr_set_i64(h5io_file *f, const char *path, const char *name, int64_t v) {
    return attr_write(f, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

int h5io_attr_set_i32(h5io_file *f, const char *path, const char *name, int32_t v) {
    return attr_write(f, path, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v);
}

int h5io_attr_set_f64(h5io_file *f, const char *path, const char *name, double v) {
    return attr_write(f, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

int h5io_attr_set_str(h5io_file *f, const char *path, const char *name, const char *v) {
    hid_t t = make_vlen_utf8();
    if (t < 0) return f ? fail(f, H5IO_EIO, path ? path : "", "cannot make string type") : H5IO_EINVAL;
    const char *s = v ? v : "";
    int rc = attr_write(f, path, name, t, t, &s);
    H5Tclose(t);
    return rc;
}

/* Open attribute name on path; class receives its type class. */
static hid_t attr_open(h5io_file *f, const char *path, const char *name, char *p, H5T_class_t *cls,
                       int *status) {
    hid_t o = open_object(f, path, p, status);
    if (o < 0) return -1;
    htri_t e = H5Aexists(o, name);
    hid_t a = -1;
    if (e <= 0)
        *status = e < 0 ? fail(f, H5IO_EIO, p, "cannot look up attribute '%s'", name)
                        : fail(f, H5IO_ENOTFOUND, p, "no attribute '%s'", name);
    else if ((a = H5Aopen(o, name, H5P_DEFAULT)) < 0)
        *status = fail(f, H5IO_EIO, p, "cannot open attribute '%s'", name);
    H5Oclose(o);
    if (a >= 0) {
        hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
        *cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
        if (sp < 0 || H5Sget_simple_extent_npoints(sp) != 1) {
            *status = fail(f, H5IO_EMISMATCH, p, "attribute '%s' is not a scalar", name);
            H5Aclose(a);
            a = -1;
        }
        if (t >= 0) H5Tclose(t);
        if (sp >= 0) H5Sclose(sp);
    }
    return a;
}

int h5io_attr_get_i64(h5io_file *f, const char *path, const char *name, int64_t *v) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = H5IO_OK;
    H5T_class_t c;
    hid_t a = attr_open(f, path, name, p, &c, &rc);
    if (a < 0) return rc;
    if (c != H5T_INTEGER) rc = fail(f, H5IO_EMISMATCH, p, "attribute '%s' is not an integer", name);
    else if (H5Aread(a, H5T_NATIVE_INT64, v) < 0) rc = fail(f, H5IO_EIO, p, "cannot read attribute '%s'", name);
    H5Aclose(a);
    return rc;
}

int h5io_attr_get_f64(h5io_file *f, const char *path, const char *name, double *v) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = H5IO_OK;
    H5T_class_t c;
    hid_t a = attr_open(f, path, name, p, &c, &rc);
    if (a < 0) return rc;
    if (c != H5T_INTEGER && c != H5T_FLOAT) rc = fail(f, H5IO_EMISMATCH, p, "attribute '%s' is not a number", name);
    else if (H5Aread(a, H5T_NATIVE_DOUBLE, v) < 0) rc = fail(f, H5IO_EIO, p, "cannot read attribute '%s'", name);
    H5Aclose(a);
    return rc;
}

int h5io_attr_get_str(h5io_file *f, const char *path, const char *name, char *buf, size_t cap) {
    CHECK_F(f);
    char p[H5IO_PATH_MAX];
    int rc = H5IO_OK;
    H5T_class_t c;
    if (!buf || cap == 0) return fail(f, H5IO_EINVAL, path ? path : "", "no output buffer");
    buf[0] = 0;
    hid_t a = attr_open(f, path, name, p, &c, &rc);
    if (a < 0) return rc;
    hid_t t = H5Aget_type(a);
    if (c != H5T_STRING || t < 0) {
        rc = fail(f, H5IO_EMISMATCH, p, "attribute '%s' is not a string", name);
    } else if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(t); /* the stored type: ASCII<->UTF-8 does not convert */
        if (mt < 0 || H5Aread(a, mt, &s) < 0) rc = fail(f, H5IO_EIO, p, "cannot read attribute '%s'", name);
        else if (strlen(s ? s : "") >= cap) rc = fail(f, H5IO_EMISMATCH, p, "attribute '%s' longer than %zu", name, cap - 1);
        else snprintf(buf, cap, "%s", s ? s : "");
        if (s) H5free_memory(s);
        if (mt >= 0) H5Tclose(mt);
    } else {
        size_t len = H5Tget_size(t);
        char *tmp = calloc(len + 1, 1);
        if (!tmp || H5Aread(a, t, tmp) < 0) rc = fail(f, H5IO_EIO, p, "cannot read attribute '%s'", name);
        else if (strlen(tmp) >= cap) rc = fail(f, H5IO_EMISMATCH, p, "attribute '%s' longer than %zu", name, cap - 1);
        else snprintf(buf, cap, "%s", tmp);
        free(tmp);
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}
