/*
 * idx.h -- reader for IDX files (the MNIST / Fashion-MNIST container) and a
 * loader for Fashion-MNIST as shipped by Debian's dataset-fashion-mnist.
 * Torch-free: the results are plain host arrays the trainer copies into
 * tensors. This header is the API and its documentation.
 *
 * The IDX format. A file is a 4-byte magic, then one big-endian uint32 per
 * dimension, then the payload in row-major order, big-endian:
 *
 *     magic = 0x00 0x00 <dtype> <ndim>
 *     dtype: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
 *
 * so Fashion-MNIST images are 0x00000803 (u8 [N,28,28]) and labels are
 * 0x00000801 (u8 [N]). Files may be gzip-compressed or plain: both are read
 * through zlib's gzopen/gzread, which passes plain files through unchanged.
 *
 * Strictness. The payload must match the header exactly: fewer bytes is an
 * error naming the file and the expected and actual byte counts, and any
 * decompressed byte after the payload is an error. A damaged gzip stream
 * (bad deflate data, CRC or length mismatch in the trailer, cut-off stream)
 * is an error carrying zlib's own message (gzerror). Non-gzip bytes appended
 * after a complete gzip member are skipped by zlib itself and are therefore
 * not detected.
 *
 * Errors. Every function that can fail returns IDX_OK (0) or a negative
 * idx_status and writes a one-line message into the caller's buffer
 * (err, errlen); err may be NULL or errlen 0 when the caller does not want
 * the text. There is no global state: functions are safe to call from
 * several threads on different outputs.
 *
 * Ownership. Results are plain structs whose arrays are malloc'ed by the
 * reader; free them with idx_array_free / idx_dataset_free (NULL-safe, and
 * safe on a zeroed struct or a struct a failed call left behind).
 */
#ifndef RLT_DATA_IDX_H
#define RLT_DATA_IDX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum idx_status {
    IDX_OK = 0,
    IDX_ERR_ARG = -1,        /* invalid argument (NULL path, bad std, ...)    */
    IDX_ERR_NOT_FOUND = -2,  /* file does not exist                           */
    IDX_ERR_IO = -3,         /* cannot open/read, or a gzip stream error      */
    IDX_ERR_FORMAT = -4,     /* bad magic, unknown dtype, bad dims            */
    IDX_ERR_TRUNCATED = -5,  /* payload shorter than the header says          */
    IDX_ERR_TRAILING = -6,   /* bytes after the payload                       */
    IDX_ERR_NOMEM = -7,      /* allocation failed or size overflows           */
    IDX_ERR_MISMATCH = -8    /* dataset inconsistency: N differs, bad label   */
} idx_status;

/* IDX element type codes (third byte of the magic). */
enum {
    IDX_U8 = 0x08,
    IDX_I8 = 0x09,
    IDX_I16 = 0x0B,
    IDX_I32 = 0x0C,
    IDX_F32 = 0x0D,
    IDX_F64 = 0x0E
};

#define IDX_MAX_DIMS 8

/* One IDX file in memory. data holds count * elem_size bytes in host byte
 * order (the reader swaps multi-byte types from big-endian), row-major. */
typedef struct idx_array {
    int dtype;                   /* IDX_U8, ...                               */
    int ndim;                    /* 1 .. IDX_MAX_DIMS                          */
    int64_t dims[IDX_MAX_DIMS];  /* dims[0..ndim-1]; unused entries are 0     */
    int64_t count;               /* product of dims                            */
    size_t elem_size;            /* bytes per element: 1, 2, 4 or 8           */
    void *data;                  /* [dims...] elements, host order            */
} idx_array;

/* Human-readable name of a dtype code ("u8", "f32", ...), or "unknown". */
const char *idx_dtype_name(int dtype);

/* Bytes per element of a dtype code, or 0 when the code is not an IDX type. */
size_t idx_dtype_size(int dtype);

/* Reads the whole IDX file at path (gzip or plain) into *out. *out is
 * overwritten; on failure it is left empty (data NULL). */
int idx_read(const char *path, idx_array *out, char *err, size_t errlen);

/* idx_read plus a check of the type and rank: expected_dtype / expected_ndim
 * of 0 accept anything. A mismatch is IDX_ERR_FORMAT with a message that
 * names the file, the magic found and the magic expected. */
int idx_read_expect(const char *path, int expected_dtype, int expected_ndim,
                    idx_array *out, char *err, size_t errlen);

/* Frees a->data and zeroes *a. NULL-safe. */
void idx_array_free(idx_array *a);

/* ------------------------------------------------------------------------ */
/* Classification datasets (Fashion-MNIST)                                   */
/* ------------------------------------------------------------------------ */

/* Where Debian's dataset-fashion-mnist puts the files. */
#define IDX_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define IDX_FASHION_MNIST_CLASSES 10

/* Mean and standard deviation of the Fashion-MNIST training pixels after
 * x/255, over all 60000*784 values (computed from the Debian files with
 * numpy in float64: 0.2860405969887955, 0.35302424451492237). */
#define IDX_FASHION_MNIST_MEAN 0.28604060f
#define IDX_FASHION_MNIST_STD 0.35302424f

typedef enum idx_split { IDX_SPLIT_TRAIN = 0, IDX_SPLIT_TEST = 1 } idx_split;

/* Pixel normalization: x = v / 255 (v the u8 pixel), then, when standardize
 * is nonzero, x = (x - mean) / std. std must be > 0 when standardizing. */
typedef struct idx_norm {
    int standardize;
    float mean;
    float std;
} idx_norm;

/* An image classification set in memory. */
typedef struct idx_dataset {
    int64_t n;            /* number of examples                              */
    int64_t rows, cols;   /* image height and width (28, 28)                 */
    int64_t dim;          /* rows * cols (784): features per example         */
    int64_t num_classes;  /* labels are in [0, num_classes)                  */
    float *images;        /* [n, dim] row-major, normalized as requested     */
    int64_t *labels;      /* [n]                                             */
} idx_dataset;

/* Loads an image set from an images file (u8 [N,rows,cols], magic 0x803)
 * and a labels file (u8 [N], magic 0x801). Checks that both have the same
 * N and that every label is < num_classes. norm may be NULL (plain x/255).
 * A file that does not exist is IDX_ERR_NOT_FOUND. */
int idx_load_images_labels(const char *images_path, const char *labels_path,
                           int64_t num_classes, const idx_norm *norm,
                           idx_dataset *out, char *err, size_t errlen);

/* Loads the Fashion-MNIST train (60000) or test (10000) split from dir
 * (NULL means IDX_FASHION_MNIST_DIR), files train-images-idx3-ubyte.gz and
 * train-labels-idx1-ubyte.gz, or t10k-images-idx3-ubyte.gz and
 * t10k-labels-idx1-ubyte.gz. A missing file gives IDX_ERR_NOT_FOUND with a
 * message naming the path and suggesting
 * `apt-get install dataset-fashion-mnist`. */
int idx_load_fashion_mnist(const char *dir, idx_split split,
                           const idx_norm *norm, idx_dataset *out,
                           char *err, size_t errlen);

/* Frees the arrays and zeroes *d. NULL-safe. */
void idx_dataset_free(idx_dataset *d);

#ifdef __cplusplus
}
#endif

#endif /* RLT_DATA_IDX_H */
