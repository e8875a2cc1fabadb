/*
 * h5io.h -- small checked wrappers over HDF5 1.10 for rlt's files: checkpoints
 * (ckpt.h), `rlt loss` inputs and outputs, and `rlt inspect`.
 *
 * What the wrappers add to the raw HDF5 API:
 *
 *   Errors.   HDF5's automatic error-stack printing is turned off. Every
 *             failure returns a negative h5io_status and leaves one line in
 *             the file handle, h5io_error(f), that names the file, the object
 *             path and the reason, with HDF5's own words appended, e.g.
 *               "ck.h5: /model/student/fc1.weight: cannot read data
 *                (HDF5: can't read data: data error detected by Fletcher32
 *                checksum)"
 *             Functions without a handle (open/create/close) write the same
 *             kind of line into a caller buffer (err, errcap; may be NULL).
 *
 *   Paths.    Object paths are absolute or relative to the root ("model/a.b"
 *             and "/model/a.b" are the same object). Writers create the
 *             missing intermediate groups on demand. Writing a dataset that
 *             already exists replaces it.
 *
 *   Datasets. n-d arrays of float32, float64, int64, int32, uint8, bool
 *             (HDF5 enum {FALSE, TRUE} over int8, which h5py reads as numpy
 *             bool), float16 (IEEE half, numpy float16) and bfloat16 (uint16
 *             with attribute dtype="bfloat16", Keras v3's convention). Arrays
 *             with elements are chunked (chunks up to 1 MiB) with a
 *             Fletcher-32 checksum per chunk, so a flipped bit in the data is
 *             detected on read; deflate > 0 adds shuffle + zlib at that level.
 *             0-dim arrays are scalar dataspaces (h5py: f["loss"][()] is a
 *             number); empty arrays are contiguous.
 *
 *   Format.   Files are created with the HDF5 1.8 object format (superblock v2,
 *             object headers v2): their metadata carry checksums too, and
 *             h5py, h5dump and HDF5 >= 1.8 read them.
 *
 * Handles are not thread-safe; use one per thread.
 */
#ifndef RLT_H5IO_H
#define RLT_H5IO_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum h5io_status {
    H5IO_OK = 0,
    H5IO_EIO = -1,       /* HDF5 or the OS failed: unreadable, corrupt, disk */
    H5IO_EINVAL = -2,    /* bad argument from the caller                      */
    H5IO_ENOTFOUND = -3, /* the object or attribute does not exist            */
    H5IO_EMISMATCH = -4, /* exists, but with another shape, dtype or size     */
    H5IO_ETYPE = -5      /* a stored type rlt cannot represent (e.g. int16)   */
} h5io_status;

#define H5IO_ERR_MAX 1024 /* longest message kept in a handle               */
#define H5IO_PATH_MAX 512 /* longest object path                            */

typedef struct h5io_file h5io_file;

/* Create a new file. exclusive != 0 fails when the file exists (H5F_ACC_EXCL:
 * the checkpoint temp file); otherwise an existing file is truncated. */
h5io_file *h5io_create(const char *path, int exclusive, char *err, size_t errcap);
/* Open an existing file read-only (writable == 0) or read-write. A file that
 * is not HDF5 at all fails with "not an HDF5 file"; a truncated or corrupt one
 * with HDF5's reason. */
h5io_file *h5io_open(const char *path, int writable, char *err, size_t errcap);
/* Flush everything written so far to the OS (H5Fflush, global scope). */
int h5io_flush(h5io_file *f);
/* Close the file and free the handle (NULL-safe; returns H5IO_OK for NULL).
 * Closing a written file flushes it: check the status. */
int h5io_close(h5io_file *f, char *err, size_t errcap);

/* The last failure's message on this handle ("" if none). */
const char *h5io_error(const h5io_file *f);
/* The file name the handle was opened with. */
const char *h5io_filename(const h5io_file *f);
/* The HDF5 library version, e.g. "1.10.8". */
const char *h5io_library_version(void);

/* 1 when an object (group or dataset) exists at path, 0 when not, negative
 * on error. Never fails for a missing intermediate group. */
int h5io_exists(h5io_file *f, const char *path);
/* Create a group (and its parents); an existing group is fine. */
int h5io_create_group(h5io_file *f, const char *path);

/* What a dataset holds, without reading it. */
typedef struct h5io_info {
    char path[H5IO_PATH_MAX]; /* absolute, e.g. "/model/student/fc1.weight"   */
    int dtype;                /* an rt_dtype, or -1 when rlt cannot hold it   */
    int is_string;            /* a (vlen or fixed) string dataset             */
    char dtype_name[24];      /* "float32", "bfloat16", "string", "int16", ..  */
    int ndim;                 /* 0 for a scalar                               */
    int64_t shape[RT_MAX_DIMS];
    int64_t numel;
} h5io_info;

/* Describe the dataset at path. H5IO_ENOTFOUND when absent, H5IO_EINVAL when
 * the object is a group. */
int h5io_dataset_info(h5io_file *f, const char *path, h5io_info *out);
/* Every dataset under group (recursively, in name order) into a malloc'd
 * array the caller frees with free(). *n receives the count. */
int h5io_list(h5io_file *f, const char *group, h5io_info **out, size_t *n);
/* "[64, 784]" into buf (for messages); returns buf. */
const char *h5io_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

/* Raw arrays: data is row-major with elements of dtype dt (bool: one byte
 * 0/1; bfloat16/float16: two bytes). */
int h5io_write_array(h5io_file *f, const char *path, rt_dtype dt, const int64_t *shape, int ndim,
                     const void *data, int deflate);
/* Read a dataset that must have exactly dtype dt and this shape
 * (H5IO_EMISMATCH with both shapes in the message otherwise). */
int h5io_read_array(h5io_file *f, const char *path, rt_dtype dt, const int64_t *shape, int ndim,
                    void *data);

/* Tensors (any CPU tensor; non-contiguous ones are copied first). */
int h5io_write_tensor(h5io_file *f, const char *path, const rt_tensor *t, int deflate);
/* A new tensor (owned by S; S == NULL: caller-owned) in the stored dtype and
 * shape. NULL on failure (message in h5io_error(f)). */
rt_tensor *h5io_read_tensor(h5io_file *f, const char *path, rt_scope *S);
/* Read into an existing tensor of the same shape and dtype, in place
 * (rt_copy_ under no-grad, so parameters keep their identity). On any failure
 * dst is untouched: the data is read and checked before the copy. */
int h5io_read_into(h5io_file *f, const char *path, rt_tensor *dst);

/* Byte blobs: uint8[n]. read requires exactly n bytes stored. */
int h5io_write_bytes(h5io_file *f, const char *path, const void *data, size_t n);
int h5io_read_bytes(h5io_file *f, const char *path, void *data, size_t n);

/* Text: a scalar vlen UTF-8 string dataset, and a 1-D array of them. */
int h5io_write_string(h5io_file *f, const char *path, const char *text);
/* *out is malloc'd (caller frees). Reads vlen and fixed-length strings. */
int h5io_read_string(h5io_file *f, const char *path, char **out);
int h5io_write_strings(h5io_file *f, const char *path, const char *const *v, size_t n);
/* *out: malloc'd array of n malloc'd strings; free with h5io_free_strings. */
int h5io_read_strings(h5io_file *f, const char *path, char ***out, size_t *n);
void h5io_free_strings(char **v, size_t n);

/* Scalar attributes on the object at path ("/" = the root). Setting replaces
 * an existing attribute. Getters convert any stored integer (resp. number)
 * and return H5IO_ENOTFOUND when the attribute is absent. */
int h5io_attr_exists(h5io_file *f, const char *path, const char *name); /* 1/0/negative */
int h5io_attr_set_i64(h5io_file *f, const char *path, const char *name, int64_t v);
int h5io_attr_set_i32(h5io_file *f, const char *path, const char *name, int32_t v);
int h5io_attr_set_f64(h5io_file *f, const char *path, const char *name, double v);
int h5io_attr_set_str(h5io_file *f, const char *path, const char *name, const char *v);
int h5io_attr_get_i64(h5io_file *f, const char *path, const char *name, int64_t *v);
int h5io_attr_get_f64(h5io_file *f, const char *path, const char *name, double *v);
/* Copies into buf (NUL-terminated); H5IO_EMISMATCH if it does not fit. */
int h5io_attr_get_str(h5io_file *f, const char *path, const char *name, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* RLT_H5IO_H */
