/*
 * tboard.h -- a TensorBoard event-file writer in plain C: no TensorFlow, no
 * protobuf library, no CRC library. It writes what `tensorboard --logdir`
 * reads: scalars (one chart per tag), an optional text summary (for the
 * hyper-parameter table) and the "session start" marker a resumed run uses.
 *
 * File format (TensorFlow's record IO, little-endian):
 *
 *   file   = record*                       named events.out.tfevents.<unix s>.<host>
 *   record = uint64 length                 of data
 *            uint32 masked_crc32c(length)  over the 8 length bytes
 *            byte   data[length]           one serialized tensorflow.Event
 *            uint32 masked_crc32c(data)
 *   masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xa282ead8,  c = CRC-32C(x)
 *
 * The Event messages used here (proto3 field numbers):
 *
 *   Event       { double wall_time = 1; int64 step = 2;
 *                 oneof { string file_version = 3; Summary summary = 5;
 *                         SessionLog session_log = 7; } }
 *   Summary     { repeated Value value = 1; }
 *   Value       { string tag = 1; float simple_value = 2;
 *                 TensorProto tensor = 8; SummaryMetadata metadata = 9; }
 *   SessionLog  { SessionStatus status = 1; }            START = 1
 *   SummaryMetadata { PluginData plugin_data = 1; }  PluginData { string plugin_name = 1; }
 *   TensorProto { DataType dtype = 1; TensorShapeProto tensor_shape = 2;
 *                 repeated bytes string_val = 8; }       DT_STRING = 7
 *
 * The first record of every file is Event{wall_time, file_version:"brain.Event:2"}.
 *
 * Durability: every tb_write_* call writes whole records and fflush()es, so a
 * reader (or a crash) sees complete records up to the last logged step;
 * tb_close() fsync()s. Errors: functions return TB_OK (0) or a negative
 * tb_status, and the writer keeps a one-line message (tb_error()) naming the
 * file and the reason. No global mutable state: the CRC table is a const
 * table computed at compile time.
 */
#ifndef RLT_TBOARD_H
#define RLT_TBOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tb_status {
    TB_OK = 0,
    TB_EINVAL = -1, /* NULL or invalid argument                            */
    TB_EIO = -2,    /* open/write/flush/fsync/close failed (errno in msg)  */
    TB_ENOMEM = -3  /* allocation failed                                   */
} tb_status;

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) -------------- */

/* CRC-32C of n bytes. tb_crc32c("123456789", 9) == 0xE3069283. */
uint32_t tb_crc32c(const void *data, size_t n);

/* Continues a CRC: tb_crc32c_extend(tb_crc32c(a), b) == tb_crc32c(a ++ b).
 * tb_crc32c_extend(0, data, n) == tb_crc32c(data, n). */
uint32_t tb_crc32c_extend(uint32_t crc, const void *data, size_t n);

/* TensorFlow's mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32). */
uint32_t tb_mask_crc(uint32_t crc);

/* ---- encoding (pure; used by the writer and by tests) ------------------- */

/* A growable byte buffer. Zero-initialize ({0}) before first use. */
typedef struct tb_buf {
    uint8_t *data;
    size_t len, cap;
} tb_buf;

void tb_buf_free(tb_buf *b); /* NULL-safe; leaves b empty and reusable */

/* Appends the serialized Event{wall_time, file_version:"brain.Event:2"}. */
int tb_encode_file_version(tb_buf *out, double wall_time);

/* Appends the serialized Event{wall_time, step, summary{value[i] = {tags[i],
 * simple_value = (float)values[i]}}}: all n scalars of one log step in one
 * event. n may be 0 (an event with an empty summary). Tags must be non-NULL. */
int tb_encode_scalars(tb_buf *out, double wall_time, int64_t step, size_t n,
                      const char *const *tags, const double *values);

/* Appends Event{wall_time, step, summary{value{tag, metadata{plugin_data{
 * plugin_name:"text"}}, tensor{dtype: DT_STRING, tensor_shape{}, string_val:
 * text}}}}: TensorBoard's Text dashboard renders `text` as Markdown. */
int tb_encode_text(tb_buf *out, double wall_time, int64_t step, const char *tag,
                   const char *text);

/* Appends Event{wall_time, step, session_log{status: START}}. TensorBoard
 * discards the points with step >= `step` read before it, which is how a
 * resumed run hides the steps it is about to redo. */
int tb_encode_session_start(tb_buf *out, double wall_time, int64_t step);

/* Appends one framed record around data[0..n): the 8-byte length, its masked
 * CRC, the data, and the data's masked CRC (n + 16 bytes in all). */
int tb_encode_record(tb_buf *out, const void *data, size_t n);

/* ---- the writer --------------------------------------------------------- */

typedef struct tb_writer tb_writer;

/* Creates `dir`/events.out.tfevents.<(long)wall_time>.<hostname> (never
 * overwriting: if that name exists, ".1", ".2", ... is appended, which
 * TensorBoard still reads) and writes the file_version record. `dir` must
 * exist. On failure *out is NULL, and `err` (if non-NULL) receives a message
 * naming the path and the reason. */
int tb_open(tb_writer **out, const char *dir, double wall_time, char *err, size_t err_size);

/* One event with n scalars at `step`, then fflush. */
int tb_write_scalars(tb_writer *w, double wall_time, int64_t step, size_t n,
                     const char *const *tags, const double *values);
int tb_write_scalar(tb_writer *w, double wall_time, int64_t step, const char *tag, double value);

/* A Markdown text summary (e.g. the resolved-config table), then fflush. */
int tb_write_text(tb_writer *w, double wall_time, int64_t step, const char *tag, const char *text);

/* The restart marker of tb_encode_session_start, then fflush. */
int tb_write_session_start(tb_writer *w, double wall_time, int64_t step);

/* fflush + fsync without closing. */
int tb_sync(tb_writer *w);

/* The message of the last failure on w ("" if none). */
const char *tb_error(const tb_writer *w);

/* The path of the event file. */
const char *tb_path(const tb_writer *w);

/* fflush, fsync, fclose, free. NULL-safe (returns TB_OK). Returns the first
 * error of the close itself; `err` (if non-NULL) receives its message. */
int tb_close(tb_writer *w, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif
#endif /* RLT_TBOARD_H */
