/*
 * tboard.c -- the TensorBoard event-file writer of tboard.h: CRC-32C, a
 * minimal protobuf encoder (varint, fixed32, fixed64, length-delimited), the
 * record framing, and a FILE*-based writer with fsync on close.
 */
#define _POSIX_C_SOURCE 200809L

#include "tboard.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- CRC-32C ------------------------------------------------------------ */

/* The table is built by the preprocessor, so it is const data with no
 * run-time initialization (and no global mutable state). One bit step of the
 * reflected CRC is: shift right, xor the polynomial if the dropped bit was 1. */
#define TB_POLY 0x82F63B78u
#define TB_BIT(c) (((c) >> 1) ^ (TB_POLY & (0u - ((c) & 1u))))
#define TB_BYTE(c) TB_BIT(TB_BIT(TB_BIT(TB_BIT(TB_BIT(TB_BIT(TB_BIT(TB_BIT((uint32_t)(c)))))))))
#define TB_R4(i) TB_BYTE(i), TB_BYTE((i) + 1), TB_BYTE((i) + 2), TB_BYTE((i) + 3)
#define TB_R16(i) TB_R4(i), TB_R4((i) + 4), TB_R4((i) + 8), TB_R4((i) + 12)
#define TB_R64(i) TB_R16(i), TB_R16((i) + 16), TB_R16((i) + 32), TB_R16((i) + 48)

static const uint32_t tb_crc_table[256] = {TB_R64(0), TB_R64(64), TB_R64(128), TB_R64(192)};

uint32_t tb_crc32c_extend(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = tb_crc_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

uint32_t tb_crc32c(const void *data, size_t n) { return tb_crc32c_extend(0, data, n); }

uint32_t tb_mask_crc(uint32_t crc) {
    return (uint32_t)(((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

/* ---- byte buffer and protobuf wire forms -------------------------------- */

void tb_buf_free(tb_buf *b) {
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int buf_reserve(tb_buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len) return TB_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap) return TB_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return TB_ENOMEM;
    b->data = p;
    b->cap = cap;
    return TB_OK;
}

static int buf_put(tb_buf *b, const void *src, size_t n) {
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, src, n);
    b->len += n;
    return TB_OK;
}

static int put_varint(tb_buf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = (uint8_t)(v & 0x7fu);
        v >>= 7;
        tmp[n++] = (uint8_t)(v ? byte | 0x80u : byte);
    } while (v);
    return buf_put(b, tmp, n);
}

static int put_le32(tb_buf *b, uint32_t v) {
    uint8_t tmp[4];
    for (int i = 0; i < 4; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    return buf_put(b, tmp, 4);
}

static int put_le64(tb_buf *b, uint64_t v) {
    uint8_t tmp[8];
    for (int i = 0; i < 8; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    return buf_put(b, tmp, 8);
}

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static int put_key(tb_buf *b, unsigned field, unsigned wire) {
    return put_varint(b, ((uint64_t)field << 3) | wire);
}

static int put_double_field(tb_buf *b, unsigned field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits); /* IEEE-754 binary64, little-endian on the wire */
    int rc = put_key(b, field, WIRE_FIXED64);
    return rc ? rc : put_le64(b, bits);
}

static int put_float_field(tb_buf *b, unsigned field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    int rc = put_key(b, field, WIRE_FIXED32);
    return rc ? rc : put_le32(b, bits);
}

static int put_int64_field(tb_buf *b, unsigned field, int64_t v) {
    int rc = put_key(b, field, WIRE_VARINT);
    return rc ? rc : put_varint(b, (uint64_t)v); /* int64: two's complement, 10 bytes if < 0 */
}

static int put_bytes_field(tb_buf *b, unsigned field, const void *p, size_t n) {
    int rc = put_key(b, field, WIRE_LEN);
    if (!rc) rc = put_varint(b, n);
    return rc ? rc : buf_put(b, p, n);
}

static int put_string_field(tb_buf *b, unsigned field, const char *s) {
    return put_bytes_field(b, field, s, strlen(s));
}

/* A nested message is written into a scratch buffer first (protobuf needs its
 * length up front), then appended as a length-delimited field. */
static int put_message_field(tb_buf *b, unsigned field, const tb_buf *msg) {
    return put_bytes_field(b, field, msg->data, msg->len);
}

/* Event header shared by every event: wall_time (1) and, when non-zero, step
 * (2); proto3 omits default values, as TensorFlow's writer does. */
static int put_event_head(tb_buf *b, double wall_time, int64_t step) {
    int rc = put_double_field(b, 1, wall_time);
    if (!rc && step != 0) rc = put_int64_field(b, 2, step);
    return rc;
}

/* On failure the partially appended bytes are dropped, so `out` never holds
 * half an event. */
static int finish(tb_buf *out, size_t start, int rc) {
    if (rc) out->len = start;
    return rc;
}

int tb_encode_file_version(tb_buf *out, double wall_time) {
    if (!out) return TB_EINVAL;
    size_t start = out->len;
    int rc = put_double_field(out, 1, wall_time);
    if (!rc) rc = put_string_field(out, 3, "brain.Event:2");
    return finish(out, start, rc);
}

int tb_encode_scalars(tb_buf *out, double wall_time, int64_t step, size_t n,
                      const char *const *tags, const double *values) {
    if (!out || (n && (!tags || !values))) return TB_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!tags[i]) return TB_EINVAL;
    size_t start = out->len;
    tb_buf summary = {0}, value = {0};
    int rc = put_event_head(out, wall_time, step);
    for (size_t i = 0; !rc && i < n; i++) {
        value.len = 0;
        rc = put_string_field(&value, 1, tags[i]);
        if (!rc) rc = put_float_field(&value, 2, (float)values[i]);
        if (!rc) rc = put_message_field(&summary, 1, &value);
    }
    if (!rc) rc = put_message_field(out, 5, &summary);
    tb_buf_free(&summary);
    tb_buf_free(&value);
    return finish(out, start, rc);
}

int tb_encode_text(tb_buf *out, double wall_time, int64_t step, const char *tag,
                   const char *text) {
    if (!out || !tag || !text) return TB_EINVAL;
    size_t start = out->len;
    tb_buf plugin = {0}, meta = {0}, shape = {0}, tensor = {0}, value = {0}, summary = {0};
    int rc = put_event_head(out, wall_time, step);
    /* SummaryMetadata{plugin_data{plugin_name:"text"}} */
    if (!rc) rc = put_string_field(&plugin, 1, "text");
    if (!rc) rc = put_message_field(&meta, 1, &plugin);
    /* TensorProto{dtype: DT_STRING (7), tensor_shape{} (a scalar), string_val} */
    if (!rc) rc = put_key(&tensor, 1, WIRE_VARINT);
    if (!rc) rc = put_varint(&tensor, 7);
    if (!rc) rc = put_message_field(&tensor, 2, &shape);
    if (!rc) rc = put_string_field(&tensor, 8, text);
    /* Value{tag, tensor (8), metadata (9)} */
    if (!rc) rc = put_string_field(&value, 1, tag);
    if (!rc) rc = put_message_field(&value, 8, &tensor);
    if (!rc) rc = put_message_field(&value, 9, &meta);
    if (!rc) rc = put_message_field(&summary, 1, &value);
    if (!rc) rc = put_message_field(out, 5, &summary);
    tb_buf_free(&plugin);
    tb_buf_free(&meta);
    tb_buf_free(&shape);
    tb_buf_free(&tensor);
    tb_buf_free(&value);
    tb_buf_free(&summary);
    return finish(out, start, rc);
}

int tb_encode_session_start(tb_buf *out, double wall_time, int64_t step) {
    if (!out) return TB_EINVAL;
    size_t start = out->len;
    tb_buf session = {0};
    int rc = put_event_head(out, wall_time, step);
    if (!rc) rc = put_key(&session, 1, WIRE_VARINT);
    if (!rc) rc = put_varint(&session, 1); /* SessionLog.START */
    if (!rc) rc = put_message_field(out, 7, &session);
    tb_buf_free(&session);
    return finish(out, start, rc);
}

int tb_encode_record(tb_buf *out, const void *data, size_t n) {
    if (!out || (n && !data)) return TB_EINVAL;
    size_t start = out->len;
    uint8_t len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (uint8_t)((uint64_t)n >> (8 * i));
    int rc = buf_reserve(out, n + 16);
    if (!rc) rc = buf_put(out, len_bytes, 8);
    if (!rc) rc = put_le32(out, tb_mask_crc(tb_crc32c(len_bytes, 8)));
    if (!rc) rc = buf_put(out, data, n);
    if (!rc) rc = put_le32(out, tb_mask_crc(tb_crc32c(data, n)));
    return finish(out, start, rc);
}

/* ---- the writer --------------------------------------------------------- */

struct tb_writer {
    FILE *f;
    char *path;
    tb_buf event;  /* scratch: the serialized Event of the current call */
    tb_buf record; /* scratch: the framed record                        */
    char msg[512];
};

static void set_msg(char *dst, size_t size, const char *fmt, ...) {
    if (!dst || !size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

/* Frames w->event and writes it as one fwrite, then flushes. */
static int write_event(tb_writer *w, const char *what) {
    w->record.len = 0;
    int rc = tb_encode_record(&w->record, w->event.data, w->event.len);
    if (rc) {
        set_msg(w->msg, sizeof w->msg, "%s: cannot encode %s: out of memory", w->path, what);
        return rc;
    }
    errno = 0;
    if (fwrite(w->record.data, 1, w->record.len, w->f) != w->record.len || fflush(w->f) != 0) {
        set_msg(w->msg, sizeof w->msg, "%s: cannot write %s: %s", w->path, what,
                errno ? strerror(errno) : "short write");
        return TB_EIO;
    }
    return TB_OK;
}

static int encode_failed(tb_writer *w, int rc, const char *what) {
    set_msg(w->msg, sizeof w->msg, "%s: cannot encode %s: %s", w->path, what,
            rc == TB_ENOMEM ? "out of memory" : "invalid argument (NULL tag or text)");
    return rc;
}

int tb_open(tb_writer **out, const char *dir, double wall_time, char *err, size_t err_size) {
    if (out) *out = NULL;
    if (!out || !dir || !*dir) {
        set_msg(err, err_size, "tb_open: %s is NULL or empty", !out ? "out" : "dir");
        return TB_EINVAL;
    }
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0]) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++) /* a hostname never has '/', but keep the name a file name */
        if (*c == '/') *c = '_';

    int rc = TB_ENOMEM;
    tb_writer *w = calloc(1, sizeof *w);
    size_t path_size = strlen(dir) + strlen(host) + 64;
    if (!w || !(w->path = malloc(path_size))) {
        set_msg(err, err_size, "tb_open: out of memory for the writer of %s", dir);
        goto fail;
    }
    long long secs = (long long)wall_time;
    for (int attempt = 0; attempt < 1000; attempt++) {
        if (attempt == 0)
            snprintf(w->path, path_size, "%s/events.out.tfevents.%lld.%s", dir, secs, host);
        else
            snprintf(w->path, path_size, "%s/events.out.tfevents.%lld.%s.%d", dir, secs, host, attempt);
        errno = 0;
        w->f = fopen(w->path, "wbx"); /* C11 exclusive create: never clobber another run's file */
        if (w->f || errno != EEXIST) break;
    }
    if (!w->f) {
        set_msg(err, err_size, "%s: cannot create the TensorBoard event file: %s", w->path,
                errno ? strerror(errno) : "name taken");
        rc = TB_EIO;
        goto fail;
    }
    rc = tb_encode_file_version(&w->event, wall_time);
    if (rc) {
        set_msg(err, err_size, "%s: cannot encode the file_version event: out of memory", w->path);
        goto fail;
    }
    rc = write_event(w, "the file_version event");
    if (rc) {
        set_msg(err, err_size, "%s", w->msg);
        goto fail;
    }
    *out = w;
    return TB_OK;

fail:
    if (w) {
        if (w->f) {
            fclose(w->f);
            remove(w->path); /* a file without its version record is not worth keeping */
        }
        free(w->path);
        tb_buf_free(&w->event);
        tb_buf_free(&w->record);
        free(w);
    }
    return rc;
}

int tb_write_scalars(tb_writer *w, double wall_time, int64_t step, size_t n,
                     const char *const *tags, const double *values) {
    if (!w) return TB_EINVAL;
    w->event.len = 0;
    int rc = tb_encode_scalars(&w->event, wall_time, step, n, tags, values);
    if (rc) return encode_failed(w, rc, "a scalars event");
    return write_event(w, "a scalars event");
}

int tb_write_scalar(tb_writer *w, double wall_time, int64_t step, const char *tag, double value) {
    return tb_write_scalars(w, wall_time, step, 1, &tag, &value);
}

int tb_write_text(tb_writer *w, double wall_time, int64_t step, const char *tag, const char *text) {
    if (!w) return TB_EINVAL;
    w->event.len = 0;
    int rc = tb_encode_text(&w->event, wall_time, step, tag, text);
    if (rc) return encode_failed(w, rc, "a text event");
    return write_event(w, "a text event");
}

int tb_write_session_start(tb_writer *w, double wall_time, int64_t step) {
    if (!w) return TB_EINVAL;
    w->event.len = 0;
    int rc = tb_encode_session_start(&w->event, wall_time, step);
    if (rc) return encode_failed(w, rc, "a session_log event");
    return write_event(w, "a session_log event");
}

int tb_sync(tb_writer *w) {
    if (!w) return TB_EINVAL;
    errno = 0;
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
        set_msg(w->msg, sizeof w->msg, "%s: cannot sync: %s", w->path,
                errno ? strerror(errno) : "flush failed");
        return TB_EIO;
    }
    return TB_OK;
}

const char *tb_error(const tb_writer *w) { return w ? w->msg : "tb_writer is NULL"; }

const char *tb_path(const tb_writer *w) { return w ? w->path : ""; }

int tb_close(tb_writer *w, char *err, size_t err_size) {
    if (!w) return TB_OK;
    int rc = tb_sync(w);
    if (rc) set_msg(err, err_size, "%s", w->msg);
    if (fclose(w->f) != 0 && rc == TB_OK) {
        set_msg(err, err_size, "%s: cannot close: %s", w->path, strerror(errno));
        rc = TB_EIO;
    }
    free(w->path);
    tb_buf_free(&w->event);
    tb_buf_free(&w->record);
    free(w);
    return rc;
}
