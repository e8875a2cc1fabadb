/*
 * text_common.h -- the env.h text-task machinery shared by the text plugins
 * (arithmetic, countdown, reverse, sort): config parsing, the task handle and
 * its error message, a per-call RNG, answer extraction and bounded string
 * building. Header-only (static inline functions) so that every plugin stays
 * ONE .c file built into its own module.
 *
 * A plugin .c describes its config keys in a txt_desc, writes create as a
 * call to txt_create (plus its own cross-key checks in desc.check), limits,
 * sample and score, and exports env_text_plugin_get returning its vtable
 * (txt_destroy and txt_last_error fill the two generic slots).
 *
 * What every text plugin gets from here:
 *   - Config: "key=value;key=value" (NULL or "" = defaults). Blanks around
 *     items, keys and values are ignored, and so are empty items. Each key is
 *     an integer or a real within [lo, hi], one of a list of choices
 *     ("add|mul|mix"), or a set of lowercase letters ("a-e", "abcxyz").
 *     Errors name the plugin, the key, the value and the reason; an unknown
 *     key lists the known ones; a key given twice is an error.
 *   - Randomness: txt_rng is xoshiro256** seeded through splitmix64 from the
 *     item seed at the start of each sample call, so an item is a pure
 *     function of (config, seed). Nothing global, no rand().
 *   - Answers: txt_answer returns the text after the last ENV_THINK_END (the
 *     whole completion when there is none) without leading and trailing
 *     blanks (space, tab, CR, LF). Completions are arbitrary NUL-terminated
 *     bytes; nothing here reads past the terminator.
 *   - Output: txt_out appends into a caller's buffer with a capacity check and
 *     keeps counting past the end, so a too-small buffer is an ENV_EINVAL
 *     that says how many bytes the item needs (and both buffers are left
 *     empty rather than half written).
 *   - State: a task holds only its parsed config and its error message;
 *     sample and score keep nothing between calls (the RNG lives on the
 *     stack), and only a failing call writes the message.
 */
#ifndef RLT_ENVS_TEXT_COMMON_H
#define RLT_ENVS_TEXT_COMMON_H

#include "env.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    TXT_ERR_LEN = 320,  /* the task's last_error message, and one config item */
    TXT_MAX_KEYS = 10,  /* config keys of one plugin, at most                  */
    TXT_STR_MAX = 32    /* a letter-set value: 26 letters + NUL fit            */
};

#define TXT_THINK_BEGIN_LEN (sizeof ENV_THINK_BEGIN - 1) /* 7 */
#define TXT_THINK_END_LEN (sizeof ENV_THINK_END - 1)     /* 8 */

/* ------------------------------------------------------------------------ */
/* RNG: xoshiro256** seeded with splitmix64                                 */
/* ------------------------------------------------------------------------ */

typedef struct txt_rng {
    uint64_t s[4];
} txt_rng;

static inline uint64_t txt_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The stream of item `seed`; `salt` separates the streams of different
 * plugins so that seed 7 of two tasks is not correlated. */
static inline void txt_rng_seed(txt_rng *r, uint64_t seed, uint64_t salt) {
    uint64_t x = seed ^ salt;
    for (int i = 0; i < 4; i++) r->s[i] = txt_splitmix64(&x);
}

static inline uint64_t txt_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t txt_rng_next(txt_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = txt_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = txt_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n) without modulo bias (n >= 1): draws below the largest
 * multiple of n are kept. */
static inline uint64_t txt_rng_below(txt_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = txt_rng_next(r);
    while (x >= limit);
    return x % n;
}

/* Uniform integer in [lo, hi] (lo <= hi). */
static inline int64_t txt_rng_range(txt_rng *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)txt_rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* ------------------------------------------------------------------------ */
/* Config keys and the task handle                                           */
/* ------------------------------------------------------------------------ */

typedef enum txt_kind {
    TXT_INT = 1,    /* an integer in [lo, hi]                                */
    TXT_REAL = 2,   /* a finite real in [lo, hi]                              */
    TXT_CHOICE = 3, /* one of `choices` ("add|mul|mix"); the value is its index */
    TXT_LETTERS = 4 /* distinct lowercase letters; ranges "a-e" allowed;       */
                    /* length within [lo, hi]                                 */
} txt_kind;

typedef struct txt_key {
    const char *name;
    txt_kind kind;
    double def;          /* INT, REAL: the default; CHOICE: the default's index */
    double lo, hi;       /* bounds (LETTERS: on the number of letters)          */
    const char *choices; /* CHOICE: "a|b|c"; LETTERS: the default letters       */
} txt_key;

typedef struct txt_val {
    double num;              /* INT, REAL, CHOICE                        */
    char str[TXT_STR_MAX];   /* LETTERS: the expanded set, in given order */
    int given;               /* 1 when the config set it                  */
} txt_val;

typedef struct txt_desc {
    const char *name;     /* the plugin's name; prefixes every message */
    const txt_key *keys;  /* [nkeys]                                   */
    uint32_t nkeys;       /* <= TXT_MAX_KEYS                           */
    /* Relations between keys once all are read (min <= max, ...), and
     * defaults that depend on other keys (it may fill values whose `given`
     * is 0). Writes a message (without the plugin name) into msg and returns
     * ENV_EINVAL, or returns ENV_OK. May be NULL. */
    int (*check)(txt_val *v, char *msg, size_t cap);
} txt_desc;

/* One configured task: the parsed values, in the order of desc->keys. */
struct env_text_task {
    const txt_desc *desc;
    txt_val v[TXT_MAX_KEYS];
    char err[TXT_ERR_LEN];
};

static inline int64_t txt_int(const env_text_task *t, int key) { return (int64_t)t->v[key].num; }
static inline double txt_real(const env_text_task *t, int key) { return t->v[key].num; }
static inline const char *txt_letters(const env_text_task *t, int key) { return t->v[key].str; }

/* "<plugin>: <message>" into buf [cap] (buf may be NULL); returns status. */
static inline int txt_vmsg(char *buf, size_t cap, const char *plugin, int status, const char *fmt,
                           va_list ap) {
    if (!buf || cap == 0) return status;
    int used = snprintf(buf, cap, "%s: ", plugin ? plugin : "text task");
    if (used > 0 && (size_t)used < cap) vsnprintf(buf + used, cap - (size_t)used, fmt, ap);
    return status;
}

#if defined(__GNUC__)
#define TXT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TXT_PRINTF(a, b)
#endif

static inline int txt_fail(env_text_task *t, int status, const char *fmt, ...) TXT_PRINTF(3, 4);
static inline int txt_fail(env_text_task *t, int status, const char *fmt, ...) {
    if (!t) return status;
    va_list ap;
    va_start(ap, fmt);
    txt_vmsg(t->err, sizeof t->err, t->desc->name, status, fmt, ap);
    va_end(ap);
    return status;
}

static inline int txt_create_fail(const txt_desc *d, char *err, size_t errlen, int status, const char *fmt, ...)
    TXT_PRINTF(5, 6);
static inline int txt_create_fail(const txt_desc *d, char *err, size_t errlen, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    txt_vmsg(err, errlen, d->name, status, fmt, ap);
    va_end(ap);
    return status;
}

static inline int txt_is_blank(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* "a, b, c": the key names of d. */
static inline void txt_known_keys(const txt_desc *d, char *out, size_t cap) {
    size_t used = 0;
    out[0] = '\0';
    for (uint32_t k = 0; k < d->nkeys && used < cap; k++) {
        int w = snprintf(out + used, cap - used, "%s%s", k ? ", " : "", d->keys[k].name);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* Is `val` one of the '|'-separated `choices`? Its index, or -1. */
static inline int txt_choice_index(const char *choices, const char *val) {
    size_t vlen = strlen(val);
    int index = 0;
    for (const char *p = choices; p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && memcmp(p, val, len) == 0) return index;
        index++;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

/* "a-e" / "abcxyz" / "a-cx" into out (distinct lowercase letters in the
 * order given). 0, or -1 with the reason in why. */
static inline int txt_expand_letters(const char *val, char *out, char *why, size_t whycap) {
    size_t n = 0;
    int seen[26] = {0};
    for (size_t i = 0; val[i]; i++) {
        unsigned char a = (unsigned char)val[i], b = a;
        if (val[i + 1] == '-' && val[i + 2]) {
            b = (unsigned char)val[i + 2];
            i += 2;
        }
        if (a < 'a' || a > 'z' || b < 'a' || b > 'z') {
            snprintf(why, whycap, "only lowercase letters a-z and ranges like a-e are allowed");
            return -1;
        }
        if (b < a) {
            snprintf(why, whycap, "the range %c-%c runs backwards", a, b);
            return -1;
        }
        for (unsigned c = a; c <= b; c++) {
            if (seen[c - 'a']) {
                snprintf(why, whycap, "the letter '%c' is given twice", (char)c);
                return -1;
            }
            seen[c - 'a'] = 1;
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return 0;
}

/* One trimmed "key=value" item into v. */
static inline int txt_apply(const txt_desc *d, txt_val *v, const char *item, char *err, size_t errlen) {
    const char *eq = strchr(item, '=');
    if (!eq) return txt_create_fail(d, err, errlen, ENV_EINVAL, "config item '%s' is not key=value", item);
    size_t klen = (size_t)(eq - item);
    while (klen && txt_is_blank((unsigned char)item[klen - 1])) klen--;
    const char *val = eq + 1;
    while (txt_is_blank((unsigned char)*val)) val++;
    int k = -1;
    for (uint32_t i = 0; i < d->nkeys; i++)
        if (strlen(d->keys[i].name) == klen && memcmp(d->keys[i].name, item, klen) == 0) k = (int)i;
    if (k < 0) {
        char known[TXT_ERR_LEN];
        txt_known_keys(d, known, sizeof known);
        return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%.*s' is unknown (known: %s)", (int)klen,
                               item, known);
    }
    const txt_key *key = &d->keys[k];
    if (v[k].given)
        return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s' is given twice", key->name);
    v[k].given = 1;
    char *end = NULL;
    errno = 0;
    switch (key->kind) {
    case TXT_INT: {
        long long x = strtoll(val, &end, 10);
        if (end == val || *end != '\0' || errno == ERANGE)
            return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s': '%s' is not an integer", key->name,
                                   val);
        if ((double)x < key->lo || (double)x > key->hi)
            return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s': %lld is outside [%.0f, %.0f]",
                                   key->name, x, key->lo, key->hi);
        v[k].num = (double)x;
        return ENV_OK;
    }
    case TXT_REAL: {
        double x = strtod(val, &end);
        if (end == val || *end != '\0' || !isfinite(x))
            return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s': '%s' is not a finite number",
                                   key->name, val);
        if (x < key->lo || x > key->hi)
            return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s': %g is outside [%g, %g]", key->name,
                                   x, key->lo, key->hi);
        v[k].num = x;
        return ENV_OK;
    }
    case TXT_CHOICE: {
        int index = txt_choice_index(key->choices, val);
        if (index < 0)
            return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s': '%s' is not one of %s", key->name,
                                   val, key->choices);
        v[k].num = index;
        return ENV_OK;
    }
    case TXT_LETTERS: {
        char why[128];
        if (strlen(val) > 3 * 26) /* "a-a" per letter at most */
            return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s': '%.40s...' is too long",
                                   key->name, val);
        if (txt_expand_letters(val, v[k].str, why, sizeof why) < 0)
            return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s': '%s': %s", key->name, val, why);
        size_t n = strlen(v[k].str);
        if ((double)n < key->lo || (double)n > key->hi)
            return txt_create_fail(d, err, errlen, ENV_EINVAL,
                                   "config key '%s': '%s' has %zu letters; it needs %.0f to %.0f", key->name, val,
                                   n, key->lo, key->hi);
        return ENV_OK;
    }
    }
    return txt_create_fail(d, err, errlen, ENV_EINVAL, "config key '%s' has an unknown kind", key->name);
}

/* Defaults, then every item of `config`, then desc->check. */
static inline int txt_parse(const txt_desc *d, const char *config, txt_val *v, char *err, size_t errlen) {
    memset(v, 0, sizeof *v * TXT_MAX_KEYS);
    for (uint32_t k = 0; k < d->nkeys; k++) {
        v[k].num = d->keys[k].def;
        if (d->keys[k].kind == TXT_LETTERS) {
            char why[128];
            if (txt_expand_letters(d->keys[k].choices, v[k].str, why, sizeof why) < 0)
                return txt_create_fail(d, err, errlen, ENV_EINVAL, "default of '%s': %s", d->keys[k].name, why);
        }
    }
    for (const char *p = config; p && *p;) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        while (len && txt_is_blank((unsigned char)*p)) p++, len--;
        while (len && txt_is_blank((unsigned char)p[len - 1])) len--;
        if (len) {
            char item[TXT_ERR_LEN];
            if (len >= sizeof item)
                return txt_create_fail(d, err, errlen, ENV_EINVAL, "config item '%.40s...' is too long", p);
            memcpy(item, p, len);
            item[len] = '\0';
            int rc = txt_apply(d, v, item, err, errlen);
            if (rc != ENV_OK) return rc;
        }
        p = semi ? semi + 1 : p + strlen(p);
    }
    if (d->check) {
        char msg[TXT_ERR_LEN];
        msg[0] = '\0';
        if (d->check(v, msg, sizeof msg) != ENV_OK)
            return txt_create_fail(d, err, errlen, ENV_EINVAL, "config: %s", msg);
    }
    return ENV_OK;
}

/* The body of a plugin's create. */
static inline int txt_create(const txt_desc *d, const char *config, env_text_task **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return txt_create_fail(d, err, errlen, ENV_EINVAL, "create: NULL out");
    *out = NULL;
    if (d->nkeys > TXT_MAX_KEYS)
        return txt_create_fail(d, err, errlen, ENV_EINVAL, "create: the plugin has more than %d keys", TXT_MAX_KEYS);
    env_text_task *t = calloc(1, sizeof *t);
    if (!t) return txt_create_fail(d, err, errlen, ENV_ENOMEM, "create: out of memory");
    t->desc = d;
    int rc = txt_parse(d, config, t->v, err, errlen);
    if (rc != ENV_OK) {
        free(t);
        return rc;
    }
    *out = t;
    return ENV_OK;
}

static inline void txt_destroy(env_text_task *t) { free(t); }

static inline const char *txt_last_error(const env_text_task *t) {
    return t ? t->err : "text task: NULL handle";
}

/* ------------------------------------------------------------------------ */
/* Completions and prompts                                                  */
/* ------------------------------------------------------------------------ */

/* The answer of `completion`: the text after the last ENV_THINK_END (or all
 * of it), blanks trimmed. Returns its start; *len its length. */
static inline const char *txt_answer(const char *completion, size_t *len) {
    const char *start = completion;
    for (const char *p = strstr(completion, ENV_THINK_END); p; p = strstr(p + 1, ENV_THINK_END))
        start = p + TXT_THINK_END_LEN;
    size_t n = strlen(start);
    while (n && txt_is_blank((unsigned char)*start)) start++, n--;
    while (n && txt_is_blank((unsigned char)start[n - 1])) n--;
    *len = n;
    return start;
}

static inline int txt_is_digit(int c) { return c >= '0' && c <= '9'; }

/* An unsigned decimal of 1..max_digits digits at *s (no sign); advances *s.
 * 0, or -1 when there is no digit or more than max_digits (<= 18). */
static inline int txt_read_uint(const char **s, int max_digits, uint64_t *out) {
    const char *p = *s;
    uint64_t v = 0;
    int n = 0;
    while (txt_is_digit((unsigned char)*p)) {
        if (++n > max_digits) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (n == 0) return -1;
    *s = p;
    *out = v;
    return 0;
}

/* Decimal digits of v (1 for 0). */
static inline uint32_t txt_ndigits(uint64_t v) {
    uint32_t n = 1;
    while (v >= 10) v /= 10, n++;
    return n;
}

/* Check the common arguments of score; the reward starts at 0. */
static inline int txt_score_args(env_text_task *t, const char *prompt, const char *completion, double *reward) {
    if (!t) return ENV_EINVAL;
    t->err[0] = '\0';
    if (!reward) return txt_fail(t, ENV_EINVAL, "score: NULL reward");
    *reward = 0.0;
    if (!prompt) return txt_fail(t, ENV_EINVAL, "score: NULL prompt");
    if (!completion) return txt_fail(t, ENV_EINVAL, "score: NULL completion");
    return ENV_OK;
}

/* A prompt this task cannot parse: ENV_EINVAL quoting (the start of) it. */
static inline int txt_bad_prompt(env_text_task *t, const char *prompt, const char *expected) {
    size_t n = strlen(prompt);
    return txt_fail(t, ENV_EINVAL, "score: cannot parse the prompt \"%.60s%s\": expected %s", prompt,
                    n > 60 ? "..." : "", expected);
}

/* ------------------------------------------------------------------------ */
/* Bounded output                                                           */
/* ------------------------------------------------------------------------ */

/* Appends into p [cap]; len counts every byte asked for, written or not, so
 * len >= cap after the fact means the buffer was too small (it needed
 * len + 1 bytes). p stays NUL-terminated as long as cap > 0. */
typedef struct txt_out {
    char *p;
    size_t cap, len;
} txt_out;

static inline void txt_out_init(txt_out *o, char *p, size_t cap) {
    o->p = p;
    o->cap = p ? cap : 0;
    o->len = 0;
    if (o->cap) p[0] = '\0';
}

static inline void txt_putn(txt_out *o, const char *s, size_t n) {
    if (o->len + n < o->cap) {
        memcpy(o->p + o->len, s, n);
        o->p[o->len + n] = '\0';
    }
    o->len += n;
}

static inline void txt_puts(txt_out *o, const char *s) { txt_putn(o, s, strlen(s)); }
static inline void txt_putc(txt_out *o, char c) { txt_putn(o, &c, 1); }

/* v in decimal; reversed = 1 writes the least significant digit first. */
static inline void txt_put_uint(txt_out *o, uint64_t v, int reversed) {
    char buf[24];
    int n = 0;
    do buf[n++] = (char)('0' + v % 10), v /= 10;
    while (v);
    for (int i = 0; i < n; i++) txt_putc(o, reversed ? buf[i] : buf[n - 1 - i]);
}

static inline void txt_put_int(txt_out *o, int64_t v) {
    if (v < 0) txt_putc(o, '-');
    txt_put_uint(o, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 0);
}

/* The start of sample: NULL checks. */
static inline int txt_sample_args(env_text_task *t, char *prompt, size_t prompt_cap, char *demo, size_t demo_cap) {
    if (!t) return ENV_EINVAL;
    t->err[0] = '\0';
    if (!prompt || prompt_cap == 0) return txt_fail(t, ENV_EINVAL, "sample: no prompt buffer");
    if (!demo || demo_cap == 0) return txt_fail(t, ENV_EINVAL, "sample: no demonstration buffer");
    prompt[0] = '\0';
    demo[0] = '\0';
    return ENV_OK;
}

/* The end of sample: ENV_EINVAL when either buffer was too small. */
static inline int txt_sample_done(env_text_task *t, uint64_t seed, const txt_out *prompt, const txt_out *demo) {
    if (prompt->len >= prompt->cap || demo->len >= demo->cap) {
        prompt->p[0] = '\0'; /* no half-written item */
        demo->p[0] = '\0';
    }
    if (prompt->len >= prompt->cap)
        return txt_fail(t, ENV_EINVAL, "sample %llu: the prompt buffer of %zu bytes is too small (needs %zu)",
                        (unsigned long long)seed, prompt->cap, prompt->len + 1);
    if (demo->len >= demo->cap)
        return txt_fail(t, ENV_EINVAL,
                        "sample %llu: the demonstration buffer of %zu bytes is too small (needs %zu)",
                        (unsigned long long)seed, demo->cap, demo->len + 1);
    return ENV_OK;
}

/* The exported symbol's rule: a vtable only for this major. */
static inline const env_text_plugin *txt_plugin_get(const env_text_plugin *vt, uint32_t host_abi_major) {
    return host_abi_major == ENV_ABI_MAJOR ? vt : NULL;
}

#endif /* RLT_ENVS_TEXT_COMMON_H */
