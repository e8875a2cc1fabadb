/*
 * prefs.h -- JSONL preference datasets for the preference and distillation
 * trainers: read a file of one JSON object per line into records held in
 * memory, validate every line with a "FILE:LINE: reason" message, write
 * records back as JSONL atomically, and hand out shuffled batches through
 * data/shuffle.h's resumable sampler. Torch-free. This header is the API and
 * its documentation.
 *
 * Kinds (one per file; the field names are TRL's):
 *
 *   pairwise  {"prompt": s, "chosen": s, "rejected": s}                DPO and relatives
 *   listwise  {"prompt": s, "completions": [s, ...], "scores": [x, ...]}  S-DPO, listwise losses:
 *             the same length, at least 2, every score a finite number
 *   unpaired  {"prompt": s, "completion": s, "label": true|false}      KTO, BCO (true = desirable)
 *
 * The kind is given by the caller or, with PREF_AUTO, taken from the first
 * valid record's fields; a record of another kind later in the file is an
 * error ("mixed kinds"). Other fields are ignored (datasets often carry ids
 * or sources). "prompt" must be a non-empty string; the other strings may be
 * empty. Conversational records (lists of messages) are not supported: a
 * non-string field is a type error.
 *
 * Lines. Blank lines (only spaces, tabs, CR) are ignored; CRLF line endings,
 * a UTF-8 byte-order mark at the start of the file, a last line without a
 * newline, and lines of any length are fine. Strings are kept byte-exact:
 * the decoded UTF-8 of each JSON string, escapes resolved. Invalid UTF-8,
 * \u0000 inside a string, duplicate keys and anything after the object are
 * errors. Line numbers count every line from 1, blank ones included.
 *
 * Malformed lines. By default the first one fails the load with
 * "FILE:LINE: reason" (PREF_ERR_PARSE). With skip_bad the line is skipped
 * and counted instead; the first PREF_MAX_REASONS messages are kept for the
 * caller to show. A file that yields no record at all is PREF_ERR_EMPTY.
 * The reasons, exactly:
 *
 *   invalid JSON at column C: <the parser's message>
 *   non-finite number NaN at column C (JSON has no NaN or Infinity; scores must be finite)
 *   a record must be a JSON object, got <an array | a string | a number | true | false | null>
 *   cannot tell the record kind: expected "chosen"/"rejected" (pairwise), "completions"/"scores"
 *     (listwise) or "completion"/"label" (unpaired)                     [one line]
 *   record mixes the fields of <kind> ("<field>") and <kind> ("<field>")
 *   a|an <kind> record in a|an <kind> dataset (kind <set by line L | given by the caller>)
 *   missing field "<name>"
 *   field "<name>" must be <a string | an array | true or false>, got <type>
 *   <completions|scores>[i] must be <a string | a number>, got <type>
 *   field "prompt" is empty
 *   "completions" needs at least 2 entries, got N
 *   "completions" has N entries but "scores" has M
 *
 * Errors. Functions that can fail return PREF_OK (0) or a negative
 * pref_status and write a one-line message into the caller's buffer (err,
 * errlen; err may be NULL). No global state; a dataset is read-only after
 * loading, so threads may share it.
 */
#ifndef RLT_DATA_PREFS_H
#define RLT_DATA_PREFS_H

#include <stddef.h>
#include <stdint.h>

#include "shuffle.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pref_status {
    PREF_OK = 0,
    PREF_ERR_ARG = -1,     /* invalid argument (NULL, unknown kind, bad record to write)  */
    PREF_ERR_IO = -2,      /* cannot open, read, write, sync or rename                    */
    PREF_ERR_PARSE = -3,   /* a malformed line ("FILE:LINE: reason")                      */
    PREF_ERR_EMPTY = -4,   /* the file holds no valid record                              */
    PREF_ERR_NOMEM = -5,   /* allocation failed                                           */
    PREF_ERR_MISMATCH = -6 /* a sampler that does not cover this dataset                  */
} pref_status;

typedef enum pref_kind {
    PREF_AUTO = 0, /* load: take the kind from the first valid record */
    PREF_PAIRWISE = 1,
    PREF_LISTWISE = 2,
    PREF_UNPAIRED = 3
} pref_kind;

/* "auto", "pairwise", "listwise", "unpaired"; NULL for anything else. */
const char *pref_kind_name(pref_kind kind);
/* The kind called name, or -1. */
int pref_kind_from_name(const char *name);

/* One record. Strings are NUL-terminated UTF-8 owned by the dataset (or, for
 * records given to pref_write, by the caller). Fields of other kinds are
 * NULL / 0. */
typedef struct pref_record {
    const char *prompt;             /* every kind; non-empty                          */
    const char *chosen;             /* pairwise                                       */
    const char *rejected;           /* pairwise                                       */
    size_t n_completions;           /* listwise: >= 2                                 */
    const char *const *completions; /* listwise: [n_completions]                      */
    const double *scores;           /* listwise: [n_completions], finite              */
    const char *completion;         /* unpaired                                       */
    int label;                      /* unpaired: 1 desirable (true), 0 undesirable    */
    int64_t line;                   /* 1-based line in the file it came from; 0 when
                                       not read from a file                           */
} pref_record;

typedef struct pref_options {
    pref_kind kind; /* PREF_AUTO (default) or the kind every record must have       */
    int skip_bad;   /* 0 (default): a malformed line fails the load; 1: skip, count */
} pref_options;

/* kind PREF_AUTO, skip_bad 0. */
pref_options pref_options_default(void);

#define PREF_MAX_REASONS 8 /* skipped-line messages kept for the caller */

typedef struct pref_stats {
    int64_t lines;           /* lines read, blank and skipped ones included        */
    int64_t blank;           /* blank lines ignored                                */
    int64_t records;         /* records kept (pref_count)                          */
    int64_t skipped;         /* malformed lines skipped (skip_bad)                 */
    int64_t completions;     /* completions over all records (2 per pairwise record,
                                n per listwise record, 1 per unpaired record)     */
    int64_t max_completions; /* the most completions in one record                 */
    int64_t desirable;       /* unpaired: label true                               */
    int64_t undesirable;     /* unpaired: label false                              */
} pref_stats;

typedef struct pref_dataset pref_dataset; /* opaque */

/* Reads path (opt NULL = defaults) into *out. On error *out is NULL and err
 * holds the message: PREF_ERR_IO ("FILE: cannot open: ..."), PREF_ERR_PARSE
 * ("FILE:LINE: reason"), PREF_ERR_EMPTY ("FILE: no records ..."), or
 * PREF_ERR_NOMEM. */
int pref_load(const char *path, const pref_options *opt, pref_dataset **out, char *err, size_t errlen);

/* NULL-safe. Every string and record of the dataset goes with it. */
void pref_free(pref_dataset *d);

pref_kind pref_dataset_kind(const pref_dataset *d);
/* The path the dataset was loaded from (a copy). */
const char *pref_dataset_path(const pref_dataset *d);
size_t pref_count(const pref_dataset *d);
/* Record i in file order, or NULL when i >= pref_count(d). */
const pref_record *pref_get(const pref_dataset *d, size_t i);
/* All records, contiguous [pref_count(d)] (for pref_write). */
const pref_record *pref_records(const pref_dataset *d);
/* Counts (zeroed struct for NULL). */
pref_stats pref_dataset_stats(const pref_dataset *d);
/* Messages of the first skipped lines ("FILE:LINE: reason"), i <
 * min(skipped, PREF_MAX_REASONS); NULL past them. */
const char *pref_skip_reason(const pref_dataset *d, size_t i);

/* PREF_OK when r is a valid record of kind (the rules of the loader), else
 * PREF_ERR_ARG with the reason (as listed above, without FILE:LINE). */
int pref_record_check(pref_kind kind, const pref_record *r, char *err, size_t errlen);

/* Writes recs[0..n) of kind (not PREF_AUTO) to path as JSONL, one compact
 * object per line with the kind's fields in the order above, "\n" endings,
 * strings byte-exact (non-ASCII UTF-8 is written as is, not escaped) and
 * scores in the shortest form that reads back to the same double. The file
 * is written next to path under a temporary name, flushed, fsynced, renamed
 * over path, and the directory fsynced: a reader sees the old file or the
 * whole new one. A record that fails pref_record_check is PREF_ERR_ARG
 * ("record I: reason") and path is left untouched. n may be 0 (an empty
 * file). Loading what this writes gives the same records. */
int pref_write(const char *path, pref_kind kind, const pref_record *recs, size_t n, char *err, size_t errlen);

/* ---- Shuffled batches (data/shuffle.h) ---- */

/* A 64-bit FNV-1a hash of the kind and every record's content (not line
 * numbers or file layout): store it in a checkpoint next to the sampler
 * state, and a resume can tell whether the dataset is still the one the
 * cursor walks. 0 for NULL. */
uint64_t pref_fingerprint(const pref_dataset *d);

/* shuf_config_default over the dataset's records (one process, shuffled,
 * SHUF_WRAP); set rank/world_size/policy on the result as needed. */
shuf_config pref_shuffle_config(const pref_dataset *d, uint64_t seed);

/* The next batch_size records from sampler s: their dataset indices go to
 * idx[0..batch_size) and pointers to the records to out[0..batch_size).
 * PREF_ERR_MISMATCH when s was made for a different number of items;
 * PREF_ERR_ARG for what shuf_next_batch refuses (its message). */
int pref_next_batch(const pref_dataset *d, shuf_sampler *s, int64_t batch_size, int64_t *idx,
                    const pref_record **out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* RLT_DATA_PREFS_H */
