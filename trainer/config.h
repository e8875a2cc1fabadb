/*
 * config.h -- rlt's typed configuration engine. One schema table per
 * algorithm drives everything a user sees of its options: the defaults,
 * reading an INI recipe (Debian's libinih), `--set section.key=value`
 * overrides, validation with messages that say where a value came from and
 * what is allowed, the resolved config written into every run and
 * checkpoint, the `--help` text and the parameter table printed at start.
 * This header is the API and its documentation. Torch-free.
 *
 * A schema describes a plain C struct:
 *
 *     typedef struct { int steps; double lr; int act; char name[64]; } my_cfg;
 *     enum { ACT_RELU, ACT_GELU };                  // order of the choices
 *     static const char *const act_choices[] = {"relu", "gelu", NULL};
 *     static const cfg_field my_fields[] = {
 *         CFG_INT   (my_cfg, "train", "steps", steps, 1, 1e9, "1000", "optimizer steps"),
 *         CFG_DOUBLE(my_cfg, "train", "lr", lr, 0, 1, "3e-4", "AdamW learning rate"),
 *         CFG_ENUM  (my_cfg, "model", "act", act, act_choices, "relu", "activation"),
 *         CFG_STRING(my_cfg, "run", "name", name, "demo", "run name"),
 *     };
 *     static const cfg_schema my_schema = CFG_SCHEMA("my", my_cfg, my_fields, my_check);
 *
 *     my_cfg c; cfg_errors err; cfg_errors_clear(&err);
 *     if (cfg_load(&my_schema, &c, "recipe.ini", argv_sets, nsets, &err) < 0) {
 *         cfg_errors_print(&err, stderr, "error: ");   // every problem, one per line
 *         return 2;
 *     }
 *
 * Storage per type (the CFG_* field macros check the member's C type at
 * compile time):
 *     CFG_BOOL_T    bool          true/false, yes/no, on/off, 1/0 (any case)
 *     CFG_INT_T     int           decimal integer, strict (no "1.5", "1e3", "12x")
 *     CFG_INT64_T   int64_t       same, 64-bit
 *     CFG_DOUBLE_T  double        strtod syntax, strict; NaN is never accepted
 *     CFG_ENUM_T    int           index into the field's NULL-terminated choices
 *     CFG_STRING_T  char[N]       at most N-1 bytes (and short enough that the
 *                                 `key = value` line fits CFG_LINE_MAX); no
 *                                 control characters, no leading/trailing
 *                                 blanks, no ';' at the start or after a blank
 *                                 (INI comment syntax): anything accepted can
 *                                 be written and read back unchanged.
 * Bounds lo/hi are inclusive and apply to int, int64 and double fields; use
 * -INFINITY / INFINITY for an open side (ints are also limited by their type).
 *
 * Names. A field is addressed as "section.key" (sections may contain dots;
 * keys may not, so the last dot splits). Section "" holds top-level keys,
 * written before any [section] header and set with `--set key=value`.
 * Sections and keys are at most CFG_NAME_MAX characters of [A-Za-z0-9_.-]
 * (no dot in keys).
 *
 * Precedence: defaults < file < --set (later --set of the same key wins).
 * Within one file a key may appear once; a second assignment is an error.
 *
 * Errors. Every problem is appended as one line to a caller-owned cfg_errors;
 * nothing is global. Functions return CFG_OK (0) or a negative cfg_status and
 * collect ALL errors of their input before returning. Message formats:
 *     recipe.ini:12: train.lr = 'abc': expected a real number in [0, 1]
 *     recipe.ini:7: unknown key 'train.lerning_rate' (did you mean 'train.lr'?)
 *     recipe.ini:3: unknown section [trian] (did you mean [train]?)
 *     recipe.ini:9: duplicate key 'train.lr' (first set on line 4)
 *     --set 'train.steps=0': train.steps = '0': out of range, allowed [1, 1000000000]
 *     cannot open config file 'nope.ini': No such file or directory
 * Cross-field checks (a schema's check callback) report through
 * cfg_check_fail() in the same format, naming where the key's value came from.
 *
 * File syntax (libinih, with the engine's own line handling on top): '[section]'
 * headers, `key = value` (or `key: value`), full-line comments starting with ';'
 * or '#', inline comments starting with ' ;'. Leading blanks are ignored
 * (there are no continuation lines). Lines other than comments are at most CFG_LINE_MAX characters.
 */
#ifndef RLT_CONFIG_H
#define RLT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CFG_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define CFG_PRINTF(fmt_index, first_arg)
#endif

/* ------------------------------------------------------------------------ */
/* Status codes and limits                                                   */
/* ------------------------------------------------------------------------ */

typedef enum cfg_status {
    CFG_OK = 0,
    CFG_EINVAL = -1,  /* the config (file text or --set) has errors          */
    CFG_EIO = -2,     /* a file could not be opened, read or written         */
    CFG_ENOMEM = -3,  /* out of memory                                       */
    CFG_ESCHEMA = -4, /* the schema table itself is broken (a programming bug) */
} cfg_status;

#define CFG_NAME_MAX 49      /* longest section or key (libinih keeps 49)      */
#define CFG_LINE_MAX 197     /* longest INI line (libinih's 200-byte buffer
                                minus '\r', '\n' and '\0')                      */
#define CFG_VALUE_MAX 256    /* bytes that hold any formatted value, incl. NUL
                                (a string value is at most CFG_LINE_MAX long)  */
#define CFG_ERRORS_TEXT 8192 /* bytes of error text a cfg_errors holds         */

/* ------------------------------------------------------------------------ */
/* Errors: a caller-owned list of one-line messages                          */
/* ------------------------------------------------------------------------ */

typedef struct cfg_errors {
    int count;                   /* messages reported (including dropped)   */
    int dropped;                 /* messages that did not fit in text       */
    size_t len;                  /* strlen(text)                            */
    char text[CFG_ERRORS_TEXT];  /* each message followed by '\n'           */
} cfg_errors;

/* Empties the list. */
void cfg_errors_clear(cfg_errors *e);

/* Appends one message (a trailing newline in fmt is not needed). Callers may
 * add their own messages, e.g. errors found after loading. e may be NULL. */
void cfg_errorf(cfg_errors *e, const char *fmt, ...) CFG_PRINTF(2, 3);

/* Prints every message on its own line, each preceded by prefix (may be NULL),
 * then "(N more errors not shown)" if some were dropped. */
void cfg_errors_print(const cfg_errors *e, FILE *out, const char *prefix);

/* ------------------------------------------------------------------------ */
/* Schema                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum cfg_type {
    CFG_BOOL_T,
    CFG_INT_T,
    CFG_INT64_T,
    CFG_DOUBLE_T,
    CFG_STRING_T,
    CFG_ENUM_T,
} cfg_type;

typedef struct cfg_field {
    const char *section;           /* "" for top-level keys                 */
    const char *key;
    cfg_type type;
    size_t offset;                 /* offsetof(struct, member)              */
    size_t size;                   /* sizeof(member); string capacity       */
    double lo, hi;                 /* inclusive bounds (int, int64, double) */
    const char *def;               /* default as text ("" allowed for strings) */
    const char *const *choices;    /* CFG_ENUM_T: NULL-terminated           */
    const char *help;              /* one line                              */
} cfg_field;

typedef struct cfg_check cfg_check; /* context handed to a check callback   */

/* Cross-field validation, run by cfg_load() and cfg_validate() once every
 * single value is valid. cfg points to the schema's struct. Report each
 * problem with cfg_check_fail(). */
typedef void (*cfg_check_fn)(const void *cfg, cfg_check *ck);

typedef struct cfg_schema {
    const char *name;              /* e.g. "kd"; used in help and headers   */
    const cfg_field *fields;
    size_t nfields;
    size_t struct_size;            /* sizeof the config struct              */
    cfg_check_fn check;            /* optional, may be NULL                 */
} cfg_schema;

/* Reports a cross-field problem about `name` ("section.key", or NULL for a
 * message that concerns no single key). The message is prefixed with where
 * the key's current value came from and the value itself, e.g.
 *   recipe.ini:5: train.batch_size = 100: must be divisible by train.group_size (8); ...
 */
void cfg_check_fail(cfg_check *ck, const char *name, const char *fmt, ...) CFG_PRINTF(3, 4);

/* Field-table helpers. T is the struct type, member a field of it. A member of
 * the wrong C type is a compile error ("size of unnamed array is negative" in
 * CFG__IS means: the member's type does not match the CFG_* macro used). */
#define CFG__IS(T, member, ctype) (0 * sizeof(char[_Generic(((T *)0)->member, ctype: 1, default: -1)]))
#define CFG__FIELD(T, sec, key, ty, member, ctype, lo, hi, def, choices, help)                     \
    {(sec), (key), (ty), offsetof(T, member) + CFG__IS(T, member, ctype),                         \
     sizeof(((T *)0)->member), (lo), (hi), (def), (choices), (help)}

#define CFG_BOOL(T, sec, key, member, def, help) \
    CFG__FIELD(T, sec, key, CFG_BOOL_T, member, bool, 0, 0, def, NULL, help)
#define CFG_INT(T, sec, key, member, lo, hi, def, help) \
    CFG__FIELD(T, sec, key, CFG_INT_T, member, int, lo, hi, def, NULL, help)
#define CFG_INT64(T, sec, key, member, lo, hi, def, help) \
    CFG__FIELD(T, sec, key, CFG_INT64_T, member, int64_t, lo, hi, def, NULL, help)
#define CFG_DOUBLE(T, sec, key, member, lo, hi, def, help) \
    CFG__FIELD(T, sec, key, CFG_DOUBLE_T, member, double, lo, hi, def, NULL, help)
#define CFG_STRING(T, sec, key, member, def, help) \
    CFG__FIELD(T, sec, key, CFG_STRING_T, member, char *, 0, 0, def, NULL, help)
#define CFG_ENUM(T, sec, key, member, choices, def, help) \
    CFG__FIELD(T, sec, key, CFG_ENUM_T, member, int, 0, 0, def, choices, help)

#define CFG_SCHEMA(name, T, fields, check) \
    {(name), (fields), sizeof(fields) / sizeof((fields)[0]), sizeof(T), (check)}

/* Checks the table: names valid and unique, bounds ordered, enum choices
 * present, every default parses and is in range, string sizes sane.
 * Returns CFG_OK or CFG_ESCHEMA (messages in err). cfg_load/cfg_defaults run it. */
int cfg_schema_check(const cfg_schema *s, cfg_errors *err);

/* The field named "section.key" (or "key" for section ""), or NULL. */
const cfg_field *cfg_lookup(const cfg_schema *s, const char *name);
const cfg_field *cfg_find(const cfg_schema *s, const char *section, const char *key);

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

/* The whole pipeline: defaults, then the file at path (NULL: none), then each
 * of the nsets "section.key=value" strings, then the schema's check. Every
 * error of every stage is collected. On success *cfg is the resolved config;
 * on failure *cfg is left untouched. Returns CFG_OK, CFG_EINVAL (bad values or
 * names), CFG_EIO (file missing/unreadable), CFG_ENOMEM or CFG_ESCHEMA. */
int cfg_load(const cfg_schema *s, void *cfg, const char *path, const char *const *sets, int nsets,
             cfg_errors *err);

/* Sets every field of *cfg to its default (the struct is zeroed first, so
 * padding and string tails are zero and two default structs compare equal
 * with memcmp). */
int cfg_defaults(const cfg_schema *s, void *cfg, cfg_errors *err);

/* Reads an INI file / INI text on top of *cfg's current values. Values are
 * checked one by one; the cross-field check is not run (cfg_validate does).
 * On failure *cfg is untouched. `name` names the text in messages. */
int cfg_read_file(const cfg_schema *s, void *cfg, const char *path, cfg_errors *err);
int cfg_read_string(const cfg_schema *s, void *cfg, const char *text, const char *name,
                    cfg_errors *err);

/* Applies one "section.key=value" override (blanks around key and value are
 * ignored). On failure *cfg is untouched. */
int cfg_set(const cfg_schema *s, void *cfg, const char *assignment, cfg_errors *err);

/* Checks every field of a struct filled by other means (types, ranges,
 * choices, string rules) and then runs the schema's check. */
int cfg_validate(const cfg_schema *s, const void *cfg, cfg_errors *err);

/* ------------------------------------------------------------------------ */
/* Output                                                                    */
/* ------------------------------------------------------------------------ */

/* Formats one field's value as the text the INI reader accepts back (doubles
 * in the shortest form that reads back to the same bits). Returns the length,
 * or a negative status when the value is invalid (an enum index out of range,
 * an unterminated string) or does not fit in n bytes. */
int cfg_format_value(const cfg_field *f, const void *cfg, char *buf, size_t n);

/* The resolved config as INI text: a header comment, then every key of every
 * section with its help, type and allowed values as a '; ' comment above it.
 * cfg_read_string() of the result into a default struct gives back a struct
 * equal to *cfg (memcmp-equal when both started from cfg_defaults). Returns a
 * malloc'd string (free it), or NULL when out of memory, when the schema fails
 * cfg_schema_check() or when a value of *cfg is invalid (validate first). */
char *cfg_to_ini(const cfg_schema *s, const void *cfg);

/* Validates the fields of *cfg, then writes cfg_to_ini() to path through a
 * temporary file and rename(), so path never holds half a config. */
int cfg_write_file(const cfg_schema *s, const void *cfg, const char *path, cfg_errors *err);

/* `--help` text: every option with its type, default, range or choices and
 * help, grouped by section; defaults are shown as the reader writes them
 * ("0.0003" for a default of "3e-4"). malloc'd (free it); NULL when out of
 * memory or when the schema fails cfg_schema_check(). */
char *cfg_help(const cfg_schema *s);

/* The start-of-run parameter table (llm.c style), one row per key:
 *   +------------+-------+
 *   | Parameter  | Value |
 *   +------------+-------+
 *   | train.lr   | 0.001 |
 * malloc'd (free it); NULL when out of memory. */
char *cfg_table(const cfg_schema *s, const void *cfg);

/* Compares two structs field by field. Returns how many fields differ and,
 * when out is not NULL, appends one line per difference to it:
 *   train.lr: 0.001 -> 0.002   */
int cfg_diff(const cfg_schema *s, const void *a, const void *b, cfg_errors *out);

#ifdef __cplusplus
}
#endif

#endif /* RLT_CONFIG_H */
