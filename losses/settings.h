/*
 * settings.h -- the settings machinery every loss family shares: a
 * descriptor table per config struct, strict "name=value" parsing into the
 * struct with range and choice checks, defaults from the table, checking a
 * config against it, formatting a value, and "did you mean" suggestions.
 *
 * A family describes each setting once:
 *
 *   static const lset_desc table[] = {
 *       {"beta", LSET_REAL, offsetof(my_config, beta), 0.1, 1e-9, 1e6, NULL, "inverse temperature"},
 *       {"form", LSET_CHOICE, offsetof(my_config, form), 0, 0, 0, form_names, "kl or ce"},
 *   };
 *
 * and its public functions (my_config_set, my_setting_format, ...) call
 * lset_apply / lset_format over that table. Messages go through
 * rt_set_error and start with the family name given by the caller ("kd
 * hinton: ...", "dpo: ..."); they name the key, the value as typed and the
 * allowed range or choices, and an unknown key gets the nearest valid name.
 *
 * Nothing here does I/O or keeps state; a table is read only.
 */
#ifndef RLT_LSET_H
#define RLT_LSET_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a setting's field holds and how its value is spelled. */
typedef enum lset_type {
    LSET_REAL = 0,     /* double in [lo, hi]; never NaN; +-inf only where a bound is infinite */
    LSET_REAL_OPT = 1, /* the same, or "none" (None, null) stored as NaN (TRL's None)          */
    LSET_INT = 2,      /* int64_t in [lo, hi], decimal                                          */
    LSET_BOOL = 3,     /* int 0/1; accepts 0/1, true/false, yes/no, on/off                      */
    LSET_CHOICE = 4,   /* int, the index of the value in choices                                */
    LSET_CUSTOM = 16   /* and above: a family's own type (dpo's comma lists), which the family
                          parses and formats itself; lset_defaults and lset_check skip it,
                          lset_apply refuses it, lset_format writes "" */
} lset_type;

typedef struct lset_desc {
    const char *name;           /* as typed after --set                               */
    lset_type type;
    size_t offset;              /* offsetof(<config>, field)                          */
    double def;                 /* the default (BOOL: 0/1, CHOICE: the index)         */
    double lo, hi;              /* inclusive bounds (REAL, REAL_OPT, INT)             */
    const char *const *choices; /* CHOICE: the names, NULL-terminated                 */
    const char *help;           /* one line for --help                                */
} lset_desc;

/* The entry of t[0..n) called name, or NULL. */
const lset_desc *lset_find(const lset_desc *t, size_t n, const char *name);

/* Parse value into cfg's field for setting name. Returns RT_OK; RT_EINVAL
 * when the value does not parse, is out of [lo, hi] or is not a choice (cfg
 * is then unchanged), or the entry is LSET_CUSTOM; RT_ENOTFOUND when t has
 * no such name. family starts every message ("kd hinton", "dpo"). */
int lset_apply(const lset_desc *t, size_t n, void *cfg, const char *family, const char *name, const char *value);

/* Write every entry's default into cfg (LSET_CUSTOM entries are skipped). */
void lset_defaults(const lset_desc *t, size_t n, void *cfg);

/* RT_OK when every field of cfg described by t holds a valid value (in
 * range, a valid choice index, 0 or 1, or NaN for REAL_OPT); else RT_EINVAL
 * with a message naming family, the setting, its value and the range. */
int lset_check(const lset_desc *t, size_t n, const void *cfg, const char *family);

/* The value of setting s in cfg, formatted into buf ("0.1", "none", "512",
 * "1", "dapo"); a spelling lset_apply reads back to the same value. Returns
 * buf ("" when cfg or s is NULL). */
const char *lset_format(const lset_desc *s, const void *cfg, char *buf, size_t cap);

/* The name in names[0..n) nearest to name (case-insensitive edit distance)
 * among those close enough to be a likely typo or that name abbreviates (3
 * characters or more: "temp" -> "temperature"); NULL when there is none. */
const char *lset_nearest(const char *name, const char *const *names, size_t n);

/* names[0..n) joined with ", " into buf (cut at a whole name when buf is
 * short). Returns buf. */
const char *lset_join(char *buf, size_t cap, const char *const *names, size_t n);

/* Sets "<family>: unknown <what> '<name>' (did you mean '<near>'?); valid:
 * <names>" (the suggestion only when one is close) and returns RT_ENOTFOUND.
 * For a family's own name lists (dpo's loss types). */
int lset_unknown(const char *family, const char *what, const char *name, const char *const *names, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* RLT_LSET_H */
