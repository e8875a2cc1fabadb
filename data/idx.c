/*
 * idx.c -- IDX reader (gzip or plain, via zlib's gz* API) and the
 * Fashion-MNIST loader declared in idx.h.
 *
 * Reading is strict: header, then exactly the payload the header promises,
 * then end of stream. zlib reports damaged streams through gzread() == -1
 * (bad deflate data, CRC/length mismatch) or through gzerror() ==
 * Z_BUF_ERROR after a short read (stream cut off); both reach the caller
 * with zlib's text.
 */
#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* gzread takes an unsigned length and returns an int: read in chunks that
 * fit both. */
#define IDX_READ_CHUNK (1u << 30)

static int idx_fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

const char *idx_dtype_name(int dtype)
{
    switch (dtype) {
    case IDX_U8: return "u8";
    case IDX_I8: return "i8";
    case IDX_I16: return "i16";
    case IDX_I32: return "i32";
    case IDX_F32: return "f32";
    case IDX_F64: return "f64";
    default: return "unknown";
    }
}

size_t idx_dtype_size(int dtype)
{
    switch (dtype) {
    case IDX_U8:
    case IDX_I8: return 1;
    case IDX_I16: return 2;
    case IDX_I32:
    case IDX_F32: return 4;
    case IDX_F64: return 8;
    default: return 0;
    }
}

void idx_array_free(idx_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

void idx_dataset_free(idx_dataset *d)
{
    if (!d)
        return;
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

/* "[60000,28,28]" into buf. */
static void idx_format_dims(const idx_array *a, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < a->ndim && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%lld", i ? "," : "[",
                         (long long)a->dims[i]);
        if (w < 0)
            return;
        used += (size_t)w;
    }
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

/* zlib's message for the stream's current error, or "" when there is none.
 * gzerror prefixes "<path>: "; our messages name the file already, so the
 * prefix is skipped. */
static const char *idx_gz_message(gzFile gz, const char *path, int *errnum)
{
    int e = Z_OK;
    const char *msg = gzerror(gz, &e);
    if (errnum)
        *errnum = e;
    if (e == Z_ERRNO)
        return strerror(errno);
    if (e == Z_OK || !msg)
        return "";
    size_t plen = strlen(path);
    if (strncmp(msg, path, plen) == 0 && msg[plen] == ':' && msg[plen + 1] == ' ')
        msg += plen + 2;
    return msg;
}

/* Reads up to len bytes, looping over gzread. *got receives the number of
 * bytes read. Returns 0 when the stream had no error (*got may still be
 * short at end of file), or IDX_ERR_IO when gzread failed. */
static int idx_gz_read(gzFile gz, void *buf, size_t len, size_t *got)
{
    unsigned char *p = buf;
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        unsigned chunk = want > IDX_READ_CHUNK ? IDX_READ_CHUNK : (unsigned)want;
        int n = gzread(gz, p + *got, chunk);
        if (n < 0)
            return IDX_ERR_IO;
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return 0;
}

/* Reports a short read of `what` (header/payload): a gzip stream error when
 * zlib has one, otherwise a truncation with the byte counts. */
static int idx_short_read(gzFile gz, const char *path, const char *what,
                          size_t expected, size_t got, int read_status,
                          char *err, size_t errlen)
{
    int zerr = Z_OK;
    const char *zmsg = idx_gz_message(gz, path, &zerr);
    if (read_status != 0)
        return idx_fail(err, errlen, IDX_ERR_IO,
                        "idx: %s: gzip stream error: %s (detected while reading "
                        "the %s, %zu of %zu bytes read)",
                        path, zmsg[0] ? zmsg : "unknown error", what, got, expected);
    return idx_fail(err, errlen, IDX_ERR_TRUNCATED,
                    "idx: %s: %s truncated: expected %zu bytes, got %zu%s%s%s",
                    path, what, expected, got, zmsg[0] ? " (gzip: " : "", zmsg,
                    zmsg[0] ? ")" : "");
}

static int idx_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* In-place byte swap of count elements of size elem (IDX stores big-endian). */
static void idx_swap_to_host(void *data, int64_t count, size_t elem)
{
    if (elem == 1 || !idx_host_is_little_endian())
        return;
    unsigned char *p = data;
    for (int64_t i = 0; i < count; i++, p += elem) {
        for (size_t a = 0, b = elem - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
    }
}

static int idx_read_stream(gzFile gz, const char *path, idx_array *out,
                           char *err, size_t errlen)
{
    unsigned char magic[4];
    size_t got = 0;
    int rs = idx_gz_read(gz, magic, sizeof magic, &got);
    if (rs != 0 || got < sizeof magic)
        return idx_short_read(gz, path, "header magic", sizeof magic, got, rs,
                              err, errlen);

    uint32_t magic_word = (uint32_t)magic[0] << 24 | (uint32_t)magic[1] << 16 |
                          (uint32_t)magic[2] << 8 | (uint32_t)magic[3];
    if (magic[0] != 0 || magic[1] != 0)
        return idx_fail(err, errlen, IDX_ERR_FORMAT,
                        "idx: %s: bad magic 0x%08x: an IDX file starts with two "
                        "zero bytes, then the dtype and the rank (e.g. 0x00000803 "
                        "for u8 images, 0x00000801 for u8 labels)",
                        path, (unsigned)magic_word);
    int dtype = magic[2];
    size_t elem = idx_dtype_size(dtype);
    if (elem == 0)
        return idx_fail(err, errlen, IDX_ERR_FORMAT,
                        "idx: %s: magic 0x%08x has unsupported dtype code 0x%02x "
                        "(known: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, "
                        "0x0E f64)",
                        path, (unsigned)magic_word, (unsigned)dtype);
    int ndim = magic[3];
    if (ndim < 1 || ndim > IDX_MAX_DIMS)
        return idx_fail(err, errlen, IDX_ERR_FORMAT,
                        "idx: %s: magic 0x%08x has rank %d, supported ranks are "
                        "1..%d",
                        path, (unsigned)magic_word, ndim, IDX_MAX_DIMS);

    unsigned char dimbytes[4 * IDX_MAX_DIMS];
    size_t dimlen = 4 * (size_t)ndim;
    rs = idx_gz_read(gz, dimbytes, dimlen, &got);
    if (rs != 0 || got < dimlen)
        return idx_short_read(gz, path, "header dimensions", dimlen, got, rs,
                              err, errlen);

    out->dtype = dtype;
    out->ndim = ndim;
    out->elem_size = elem;
    int64_t count = 1;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        const unsigned char *b = dimbytes + 4 * i;
        uint32_t d = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
                     (uint32_t)b[2] << 8 | (uint32_t)b[3];
        out->dims[i] = (int64_t)d;
        if (d != 0 && count > INT64_MAX / (int64_t)d)
            overflow = 1;
        else
            count *= (int64_t)d;
    }
    char shape[160];
    idx_format_dims(out, shape, sizeof shape);
    if (overflow || (uint64_t)count > SIZE_MAX / elem)
        return idx_fail(err, errlen, IDX_ERR_NOMEM,
                        "idx: %s: %s %s is too large to hold in memory", path,
                        idx_dtype_name(dtype), shape);
    out->count = count;

    size_t bytes = (size_t)count * elem;
    out->data = malloc(bytes ? bytes : 1);
    if (!out->data)
        return idx_fail(err, errlen, IDX_ERR_NOMEM,
                        "idx: %s: cannot allocate %zu bytes for %s %s", path,
                        bytes, idx_dtype_name(dtype), shape);

    rs = idx_gz_read(gz, out->data, bytes, &got);
    if (rs != 0 || got < bytes) {
        char what[220];
        snprintf(what, sizeof what, "payload of %s %s", idx_dtype_name(dtype), shape);
        return idx_short_read(gz, path, what, bytes, got, rs, err, errlen);
    }

    /* The payload must end the stream. Reading on also makes zlib check the
     * gzip trailer (CRC32 and length), which it only does at the end. */
    size_t trailing = 0;
    unsigned char extra[4096];
    for (;;) {
        int n = gzread(gz, extra, sizeof extra);
        if (n < 0) {
            const char *zmsg = idx_gz_message(gz, path, NULL);
            return idx_fail(err, errlen, IDX_ERR_IO,
                            "idx: %s: gzip stream error after the payload: %s",
                            path, zmsg[0] ? zmsg : "unknown error");
        }
        if (n == 0)
            break;
        trailing += (size_t)n;
    }
    int zerr = Z_OK;
    const char *zmsg = idx_gz_message(gz, path, &zerr);
    if (zerr != Z_OK)
        return idx_fail(err, errlen, IDX_ERR_IO,
                        "idx: %s: gzip stream error at the end of the file: %s",
                        path, zmsg);
    if (trailing > 0)
        return idx_fail(err, errlen, IDX_ERR_TRAILING,
                        "idx: %s: %zu unexpected bytes after the payload of %s %s "
                        "(%zu bytes expected in total after the header)",
                        path, trailing, idx_dtype_name(dtype), shape, bytes);

    idx_swap_to_host(out->data, count, elem);
    return IDX_OK;
}

int idx_read(const char *path, idx_array *out, char *err, size_t errlen)
{
    if (!out)
        return idx_fail(err, errlen, IDX_ERR_ARG, "idx_read: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path || !path[0])
        return idx_fail(err, errlen, IDX_ERR_ARG, "idx_read: empty path");

    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        int e = errno;
        return idx_fail(err, errlen, e == ENOENT ? IDX_ERR_NOT_FOUND : IDX_ERR_IO,
                        "idx: cannot open '%s': %s", path,
                        e ? strerror(e) : "out of memory");
    }
    gzbuffer(gz, 1u << 17); /* fewer read() calls on the 26 MB image file */

    int st = idx_read_stream(gz, path, out, err, errlen);
    int zc = gzclose(gz);
    if (st == IDX_OK && zc != Z_OK)
        st = idx_fail(err, errlen, IDX_ERR_IO, "idx: %s: gzclose failed: %s",
                      path, zError(zc));
    if (st != IDX_OK)
        idx_array_free(out);
    return st;
}

int idx_read_expect(const char *path, int expected_dtype, int expected_ndim,
                    idx_array *out, char *err, size_t errlen)
{
    int st = idx_read(path, out, err, errlen);
    if (st != IDX_OK)
        return st;
    if ((expected_dtype && out->dtype != expected_dtype) ||
        (expected_ndim && out->ndim != expected_ndim)) {
        unsigned found = (unsigned)out->dtype << 8 | (unsigned)out->ndim;
        char shape[160];
        idx_format_dims(out, shape, sizeof shape);
        idx_fail(err, errlen, IDX_ERR_FORMAT,
                 "idx: %s: magic 0x%08x (%s, rank %d, shape %s), expected "
                 "dtype %s and rank %d (magic 0x%08x)",
                 path, found, idx_dtype_name(out->dtype), out->ndim, shape,
                 expected_dtype ? idx_dtype_name(expected_dtype) : "any",
                 expected_ndim,
                 (unsigned)expected_dtype << 8 | (unsigned)expected_ndim);
        idx_array_free(out);
        return IDX_ERR_FORMAT;
    }
    return IDX_OK;
}

int idx_load_images_labels(const char *images_path, const char *labels_path,
                           int64_t num_classes, const idx_norm *norm,
                           idx_dataset *out, char *err, size_t errlen)
{
    if (!out)
        return idx_fail(err, errlen, IDX_ERR_ARG, "idx_load_images_labels: out is NULL");
    memset(out, 0, sizeof *out);
    if (num_classes < 1)
        return idx_fail(err, errlen, IDX_ERR_ARG,
                        "idx_load_images_labels: num_classes must be >= 1, got %lld",
                        (long long)num_classes);
    if (norm && norm->standardize && !(norm->std > 0.0f))
        return idx_fail(err, errlen, IDX_ERR_ARG,
                        "idx_load_images_labels: standardize needs std > 0, got %g",
                        (double)norm->std);

    idx_array img = {0}, lab = {0};
    int st = idx_read_expect(images_path, IDX_U8, 3, &img, err, errlen);
    if (st != IDX_OK)
        goto cleanup;
    st = idx_read_expect(labels_path, IDX_U8, 1, &lab, err, errlen);
    if (st != IDX_OK)
        goto cleanup;

    if (img.dims[0] != lab.dims[0]) {
        st = idx_fail(err, errlen, IDX_ERR_MISMATCH,
                      "idx: %s has %lld images but %s has %lld labels",
                      images_path, (long long)img.dims[0], labels_path,
                      (long long)lab.dims[0]);
        goto cleanup;
    }
    const uint8_t *labels_u8 = lab.data;
    for (int64_t i = 0; i < lab.count; i++) {
        if ((int64_t)labels_u8[i] >= num_classes) {
            st = idx_fail(err, errlen, IDX_ERR_MISMATCH,
                          "idx: %s: label %u at index %lld is out of range "
                          "[0, %lld)",
                          labels_path, (unsigned)labels_u8[i], (long long)i,
                          (long long)num_classes);
            goto cleanup;
        }
    }

    const int64_t n = img.dims[0], dim = img.dims[1] * img.dims[2];
    out->images = malloc((size_t)(img.count ? img.count : 1) * sizeof *out->images);
    out->labels = malloc((size_t)(n ? n : 1) * sizeof *out->labels);
    if (!out->images || !out->labels) {
        st = idx_fail(err, errlen, IDX_ERR_NOMEM,
                      "idx: cannot allocate %lld floats for %s", (long long)img.count,
                      images_path);
        goto cleanup;
    }
    /* Same arithmetic as torchvision's ToTensor (v/255) then Normalize
     * ((x - mean) / std), in float32; a pixel has 256 possible values, so
     * they are computed once into a table. */
    const uint8_t *pix = img.data;
    const int standardize = norm && norm->standardize;
    float table[256];
    for (int v = 0; v < 256; v++) {
        float x = (float)v / 255.0f;
        table[v] = standardize ? (x - norm->mean) / norm->std : x;
    }
    for (int64_t i = 0; i < img.count; i++)
        out->images[i] = table[pix[i]];
    for (int64_t i = 0; i < n; i++)
        out->labels[i] = labels_u8[i];
    out->n = n;
    out->rows = img.dims[1];
    out->cols = img.dims[2];
    out->dim = dim;
    out->num_classes = num_classes;
    st = IDX_OK;

cleanup:
    idx_array_free(&img);
    idx_array_free(&lab);
    if (st != IDX_OK)
        idx_dataset_free(out);
    return st;
}

int idx_load_fashion_mnist(const char *dir, idx_split split,
                           const idx_norm *norm, idx_dataset *out,
                           char *err, size_t errlen)
{
    if (!out)
        return idx_fail(err, errlen, IDX_ERR_ARG, "idx_load_fashion_mnist: out is NULL");
    memset(out, 0, sizeof *out);
    if (split != IDX_SPLIT_TRAIN && split != IDX_SPLIT_TEST)
        return idx_fail(err, errlen, IDX_ERR_ARG,
                        "idx_load_fashion_mnist: unknown split %d", (int)split);
    if (!dir || !dir[0])
        dir = IDX_FASHION_MNIST_DIR;

    const char *prefix = split == IDX_SPLIT_TRAIN ? "train" : "t10k";
    char images_path[4096], labels_path[4096];
    int a = snprintf(images_path, sizeof images_path, "%s/%s-images-idx3-ubyte.gz",
                     dir, prefix);
    int b = snprintf(labels_path, sizeof labels_path, "%s/%s-labels-idx1-ubyte.gz",
                     dir, prefix);
    if (a < 0 || b < 0 || (size_t)a >= sizeof images_path ||
        (size_t)b >= sizeof labels_path)
        return idx_fail(err, errlen, IDX_ERR_ARG,
                        "idx_load_fashion_mnist: directory path too long: %s", dir);

    int st = idx_load_images_labels(images_path, labels_path,
                                    IDX_FASHION_MNIST_CLASSES, norm, out, err, errlen);
    if (st == IDX_ERR_NOT_FOUND && err && errlen > 0) {
        size_t used = strlen(err);
        if (used + 1 < errlen)
            snprintf(err + used, errlen - used,
                     "; Fashion-MNIST is expected in %s: install it with "
                     "`apt-get install dataset-fashion-mnist`",
                     dir);
    }
    return st;
}
