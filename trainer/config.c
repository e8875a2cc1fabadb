/*
 * config.c -- the typed configuration engine behind config.h: one schema
 * table per algorithm drives defaults, INI reading (libinih), --set
 * overrides, validation, the resolved INI, --help and the parameter table.
 *
 * How a file is read. libinih splits `key = value` lines, strips blanks and
 * inline comments and calls our handler, but the Debian build has no line
 * numbers in the handler and stops at nothing: it silently splits overlong
 * lines, treats indented lines as continuations and never reports an empty
 * unknown section. So the engine feeds inih through its own reader
 * (ini_parse_stream): the reader reads whole lines, counts them, diagnoses
 * everything that is not a well-formed `[section]` or `key = value` line
 * (reporting it and passing inih a comment instead), and strips leading
 * blanks. The handler then knows the line number of every value, and every
 * error of a file is collected before the load fails.
 *
 * Nothing here is global: errors go to the caller's cfg_errors, per-load
 * state lives in a load_state on the stack.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define FULL_NAME_MAX (2 * CFG_NAME_MAX + 2) /* "section.key" + NUL          */
#define WHY_MAX 1024                           /* one reason text              */
#define CHOICES_MAX 512                        /* "a, b, c" of an enum          */
#define ALLOWED_MAX 640                        /* "one of: a, b, c" and the like */
#define WHERE_MAX 4400                         /* "path:line: " or "--set '...': " */

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

void cfg_errors_clear(cfg_errors *e) {
    if (!e) return;
    e->count = 0;
    e->dropped = 0;
    e->len = 0;
    e->text[0] = '\0';
}

static void errors_vadd(cfg_errors *e, const char *fmt, va_list ap) {
    if (!e) return;
    e->count++;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    /* A message must fit whole, with its '\n' and the final NUL. */
    if (n < 0 || e->len + (size_t)n + 2 > sizeof e->text) {
        e->dropped++;
        return;
    }
    vsnprintf(e->text + e->len, sizeof e->text - e->len, fmt, ap);
    e->len += (size_t)n;
    e->text[e->len++] = '\n';
    e->text[e->len] = '\0';
}

void cfg_errorf(cfg_errors *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errors_vadd(e, fmt, ap);
    va_end(ap);
}

void cfg_errors_print(const cfg_errors *e, FILE *out, const char *prefix) {
    if (!e || !out) return;
    const char *p = e->text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(out, "%s%.*s\n", prefix ? prefix : "", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    if (e->dropped > 0)
        fprintf(out, "%s(%d more error%s not shown)\n", prefix ? prefix : "", e->dropped,
                e->dropped == 1 ? "" : "s");
}

/* ------------------------------------------------------------------------ */
/* A growable string for the rendered outputs                                */
/* ------------------------------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool failed; /* an allocation failed: the result is NULL */
} strbuf;

static void sb_vadd(strbuf *b, const char *fmt, va_list ap) {
    if (b->failed) return;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    b->len += (size_t)n;
}

static void sb_add(strbuf *b, const char *fmt, ...) CFG_PRINTF(2, 3);
static void sb_add(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vadd(b, fmt, ap);
    va_end(ap);
}

static void sb_repeat(strbuf *b, char c, size_t n) {
    for (size_t i = 0; i < n; i++) sb_add(b, "%c", c);
}

/* Hands over the text (NULL after a failed allocation). */
static char *sb_finish(strbuf *b) {
    if (b->failed) {
        free(b->p);
        return NULL;
    }
    if (!b->p) {
        b->p = malloc(1);
        if (!b->p) return NULL;
        b->p[0] = '\0';
    }
    return b->p;
}

/* ------------------------------------------------------------------------ */
/* Names and lookup                                                          */
/* ------------------------------------------------------------------------ */

/* "section.key", or "key" for the top-level section "". */
static const char *field_name(const cfg_field *f, char buf[FULL_NAME_MAX]) {
    if (f->section[0])
        snprintf(buf, FULL_NAME_MAX, "%s.%s", f->section, f->key);
    else
        snprintf(buf, FULL_NAME_MAX, "%s", f->key);
    return buf;
}

const cfg_field *cfg_find(const cfg_schema *s, const char *section, const char *key) {
    if (!s || !section || !key) return NULL;
    for (size_t i = 0; i < s->nfields; i++)
        if (strcmp(s->fields[i].section, section) == 0 && strcmp(s->fields[i].key, key) == 0)
            return &s->fields[i];
    return NULL;
}

/* Splits "a.b.key" at its last dot into section "a.b" and key "key"; a name
 * without a dot is a top-level key. Returns false when a part is too long. */
static bool split_name(const char *name, char section[FULL_NAME_MAX], char key[FULL_NAME_MAX]) {
    const char *dot = strrchr(name, '.');
    size_t slen = dot ? (size_t)(dot - name) : 0;
    const char *k = dot ? dot + 1 : name;
    if (slen >= FULL_NAME_MAX || strlen(k) >= FULL_NAME_MAX) return false;
    memcpy(section, name, slen);
    section[slen] = '\0';
    strcpy(key, k);
    return true;
}

const cfg_field *cfg_lookup(const cfg_schema *s, const char *name) {
    char section[FULL_NAME_MAX], key[FULL_NAME_MAX];
    if (!s || !name || !split_name(name, section, key)) return NULL;
    return cfg_find(s, section, key);
}

static bool section_known(const cfg_schema *s, const char *section) {
    for (size_t i = 0; i < s->nfields; i++)
        if (strcmp(s->fields[i].section, section) == 0) return true;
    return false;
}

/* ------------------------------------------------------------------------ */
/* "Did you mean": optimal-string-alignment (Damerau-Levenshtein) distance   */
/* ------------------------------------------------------------------------ */

#define DIST_MAX_LEN 127
#define DIST_FAR (INT_MAX / 2)

/* Edit distance with adjacent transpositions, case-insensitive. */
static int osa_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > DIST_MAX_LEN || m > DIST_MAX_LEN) return DIST_FAR;
    int rows[3][DIST_MAX_LEN + 1]; /* rows i-2, i-1, i (rotating) */
    int *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= m; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int cost = ca != cb;
            int v = prev[j] + 1;                               /* deletion     */
            if (cur[j - 1] + 1 < v) v = cur[j - 1] + 1;        /* insertion    */
            if (prev[j - 1] + cost < v) v = prev[j - 1] + cost; /* substitution */
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1; /* transposition */
            cur[j] = v;
        }
        int *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[m];
}

/* How many edits still count as a typo of a word of this length. */
static int typo_budget(const char *word) {
    int b = (int)strlen(word) / 3;
    return b < 1 ? 1 : b > 3 ? 3 : b;
}

/* The field a mistyped (section, key) most likely meant, or NULL. A key that
 * exists in another section counts as one edit away. */
static const cfg_field *nearest_field(const cfg_schema *s, const char *section, const char *key) {
    char query[FULL_NAME_MAX + DIST_MAX_LEN];
    snprintf(query, sizeof query, "%s%s%s", section, section[0] ? "." : "", key);
    const cfg_field *best = NULL;
    int best_d = DIST_FAR;
    for (size_t i = 0; i < s->nfields; i++) {
        char name[FULL_NAME_MAX];
        int d = osa_distance(query, field_name(&s->fields[i], name));
        int dk = osa_distance(key, s->fields[i].key);
        if (strcmp(section, s->fields[i].section) != 0) dk += 1; /* moved to another section */
        if (dk < d) d = dk;
        if (d < best_d) {
            best_d = d;
            best = &s->fields[i];
        }
    }
    return best_d <= typo_budget(key) ? best : NULL;
}

static const char *nearest_section(const cfg_schema *s, const char *section) {
    const char *best = NULL;
    int best_d = DIST_FAR;
    for (size_t i = 0; i < s->nfields; i++) {
        if (!s->fields[i].section[0]) continue;
        int d = osa_distance(section, s->fields[i].section);
        if (d < best_d) {
            best_d = d;
            best = s->fields[i].section;
        }
    }
    return best_d <= typo_budget(section) ? best : NULL;
}

static const char *nearest_choice(const char *const *choices, const char *value) {
    const char *best = NULL;
    int best_d = DIST_FAR;
    for (size_t i = 0; choices[i]; i++) {
        int d = osa_distance(value, choices[i]);
        if (d < best_d) {
            best_d = d;
            best = choices[i];
        }
    }
    return best_d <= typo_budget(value) ? best : NULL;
}

/* ------------------------------------------------------------------------ */
/* Numbers and allowed values as text                                        */
/* ------------------------------------------------------------------------ */

/* The shortest %g text that strtod reads back to exactly v, in plain
 * notation for integers below 1e16 ("100", not "1e+02"). */
static void format_double(double v, char *buf, size_t n) {
    if (isinf(v)) {
        snprintf(buf, n, "%s", v < 0 ? "-inf" : "inf");
        return;
    }
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* %g switches to an exponent when it is >= the precision; more digits
     * than needed still read back exactly (%g drops trailing zeros). */
    const char *e = strchr(buf, 'e');
    if (e && e[1] == '+') {
        int exponent = atoi(e + 2);
        if (exponent < 16 && exponent + 1 > prec) snprintf(buf, n, "%.*g", exponent + 1, v);
    }
}

/* A field's bounds as exact integers: the schema's [lo, hi] clipped to the
 * member's C type. */
static void int_bounds(const cfg_field *f, long long *lo, long long *hi) {
    long long tmin = f->type == CFG_INT_T ? INT_MIN : INT64_MIN;
    long long tmax = f->type == CFG_INT_T ? INT_MAX : INT64_MAX;
    /* Clamp in double before converting: a double outside long long's range
     * (or NaN) must never reach the cast. (double)tmax rounds up to 2^63 for
     * int64, so the >= tests also catch "everything". */
    double l = ceil(f->lo), h = floor(f->hi);
    *lo = !(l > (double)tmin) ? tmin : l >= (double)tmax ? tmax : (long long)l;
    *hi = !(h < (double)tmax) ? tmax : h <= (double)tmin ? tmin : (long long)h;
}

/* Longest accepted string: the member's capacity, and short enough that the
 * `key = value` line of the resolved INI fits a line. */
static size_t string_limit(const cfg_field *f) {
    size_t by_size = f->size > 0 ? f->size - 1 : 0;
    size_t overhead = strlen(f->key) + 3;
    size_t by_line = CFG_LINE_MAX > overhead ? CFG_LINE_MAX - overhead : 0;
    return by_size < by_line ? by_size : by_line;
}

/* "[lo, hi]" for int, int64 and double fields. */
static void format_range(const cfg_field *f, char *buf, size_t n) {
    if (f->type == CFG_DOUBLE_T) {
        char lo[40], hi[40];
        format_double(f->lo, lo, sizeof lo);
        format_double(f->hi, hi, sizeof hi);
        snprintf(buf, n, "[%s, %s]", lo, hi);
    } else {
        long long lo, hi;
        int_bounds(f, &lo, &hi);
        snprintf(buf, n, "[%lld, %lld]", lo, hi);
    }
}

static void format_choices(const cfg_field *f, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; f->choices && f->choices[i] && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", f->choices[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* What a field accepts, e.g. "a real number in [0, 1]", "one of: relu, gelu". */
static void describe_allowed(const cfg_field *f, char *buf, size_t n) {
    char r[128];
    switch (f->type) {
    case CFG_BOOL_T:
        snprintf(buf, n, "a boolean (true/false, yes/no, on/off, 1/0)");
        break;
    case CFG_INT_T:
    case CFG_INT64_T:
        format_range(f, r, sizeof r);
        snprintf(buf, n, "an integer in %s", r);
        break;
    case CFG_DOUBLE_T:
        format_range(f, r, sizeof r);
        snprintf(buf, n, "a real number in %s", r);
        break;
    case CFG_STRING_T:
        snprintf(buf, n, "a string of at most %zu characters", string_limit(f));
        break;
    case CFG_ENUM_T: {
        char c[CHOICES_MAX];
        format_choices(f, c, sizeof c);
        snprintf(buf, n, "one of: %s", c);
        break;
    }
    }
}

/* Short type summary for --help and the resolved INI's comments. */
static void describe_type(const cfg_field *f, char *buf, size_t n) {
    char r[128], c[CHOICES_MAX];
    switch (f->type) {
    case CFG_BOOL_T: snprintf(buf, n, "bool"); break;
    case CFG_INT_T:
    case CFG_INT64_T:
        format_range(f, r, sizeof r);
        snprintf(buf, n, "%s in %s", f->type == CFG_INT_T ? "int" : "int64", r);
        break;
    case CFG_DOUBLE_T:
        format_range(f, r, sizeof r);
        snprintf(buf, n, "double in %s", r);
        break;
    case CFG_STRING_T: snprintf(buf, n, "string of at most %zu characters", string_limit(f)); break;
    case CFG_ENUM_T:
        format_choices(f, c, sizeof c);
        snprintf(buf, n, "one of: %s", c);
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Parsing one value                                                         */
/* ------------------------------------------------------------------------ */

static bool equal_nocase(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

/* Why a string cannot be stored so that the INI reader gives it back
 * unchanged, or NULL when it can. */
static const char *string_problem(const char *text) {
    size_t n = strlen(text);
    if (n && (isspace((unsigned char)text[0]) || isspace((unsigned char)text[n - 1])))
        return "leading or trailing blanks are not kept by INI files";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f) return "control characters are not allowed";
        if (c == ';' && (i == 0 || isspace((unsigned char)text[i - 1])))
            return "';' at the start or after a blank begins an INI comment";
    }
    return NULL;
}

/* Parses text as a value of f. On success stores it at dst (the member; NULL:
 * check only) and returns 0; otherwise writes the reason to why and returns -1. */
static int parse_value(const cfg_field *f, const char *text, void *dst, char *why, size_t whyn) {
    char allowed[ALLOWED_MAX];
    describe_allowed(f, allowed, sizeof allowed);
    switch (f->type) {
    case CFG_BOOL_T: {
        static const char *const yes[] = {"true", "1", "yes", "on"};
        static const char *const no[] = {"false", "0", "no", "off"};
        for (int i = 0; i < 4; i++) {
            if (equal_nocase(text, yes[i]) || equal_nocase(text, no[i])) {
                if (dst) *(bool *)dst = equal_nocase(text, yes[i]);
                return 0;
            }
        }
        snprintf(why, whyn, "expected %s", allowed);
        return -1;
    }
    case CFG_INT_T:
    case CFG_INT64_T: {
        char *end = NULL;
        errno = 0;
        long long v = (text[0] && !isspace((unsigned char)text[0])) ? strtoll(text, &end, 10) : 0;
        if (!end || end == text || *end != '\0') {
            snprintf(why, whyn, "expected %s", allowed);
            return -1;
        }
        long long lo, hi;
        int_bounds(f, &lo, &hi);
        if (errno == ERANGE || v < lo || v > hi) {
            char r[128];
            format_range(f, r, sizeof r);
            snprintf(why, whyn, "out of range, allowed %s", r);
            return -1;
        }
        if (dst) {
            if (f->type == CFG_INT_T)
                *(int *)dst = (int)v;
            else
                *(int64_t *)dst = (int64_t)v;
        }
        return 0;
    }
    case CFG_DOUBLE_T: {
        char *end = NULL;
        errno = 0;
        double v = (text[0] && !isspace((unsigned char)text[0])) ? strtod(text, &end) : 0.0;
        if (!end || end == text || *end != '\0') {
            snprintf(why, whyn, "expected %s", allowed);
            return -1;
        }
        char r[128];
        format_range(f, r, sizeof r);
        if (isnan(v)) {
            snprintf(why, whyn, "NaN is not allowed, expected %s", allowed);
            return -1;
        }
        if (errno == ERANGE && isinf(v)) { /* overflow; underflow to a tiny value is accepted */
            snprintf(why, whyn, "does not fit in a double, allowed %s", r);
            return -1;
        }
        if (v < f->lo || v > f->hi) {
            snprintf(why, whyn, "out of range, allowed %s", r);
            return -1;
        }
        if (dst) *(double *)dst = v;
        return 0;
    }
    case CFG_STRING_T: {
        size_t n = strlen(text), limit = string_limit(f);
        if (n > limit) {
            snprintf(why, whyn, "too long (%zu characters), the limit is %zu", n, limit);
            return -1;
        }
        const char *problem = string_problem(text);
        if (problem) {
            snprintf(why, whyn, "%s", problem);
            return -1;
        }
        if (dst) {
            memset(dst, 0, f->size);
            memcpy(dst, text, n);
        }
        return 0;
    }
    case CFG_ENUM_T: {
        for (int i = 0; f->choices && f->choices[i]; i++) {
            if (strcmp(text, f->choices[i]) == 0) {
                if (dst) *(int *)dst = i;
                return 0;
            }
        }
        const char *guess = f->choices ? nearest_choice(f->choices, text) : NULL;
        if (guess)
            snprintf(why, whyn, "expected %s (did you mean '%s'?)", allowed, guess);
        else
            snprintf(why, whyn, "expected %s", allowed);
        return -1;
    }
    }
    snprintf(why, whyn, "field has an unknown type %d", (int)f->type);
    return -1;
}

int cfg_format_value(const cfg_field *f, const void *cfg, char *buf, size_t n) {
    if (!f || !cfg || !buf || n == 0) return CFG_EINVAL;
    const unsigned char *src = (const unsigned char *)cfg + f->offset;
    int w = -1;
    switch (f->type) {
    case CFG_BOOL_T: w = snprintf(buf, n, "%s", *(const bool *)src ? "true" : "false"); break;
    case CFG_INT_T: w = snprintf(buf, n, "%d", *(const int *)src); break;
    case CFG_INT64_T: w = snprintf(buf, n, "%lld", (long long)*(const int64_t *)src); break;
    case CFG_DOUBLE_T: {
        char tmp[40];
        format_double(*(const double *)src, tmp, sizeof tmp);
        w = snprintf(buf, n, "%s", tmp);
        break;
    }
    case CFG_STRING_T: {
        const char *str = (const char *)src;
        if (!memchr(str, '\0', f->size)) return CFG_EINVAL; /* unterminated */
        w = snprintf(buf, n, "%s", str);
        break;
    }
    case CFG_ENUM_T: {
        int idx = *(const int *)src, count = 0;
        while (f->choices && f->choices[count]) count++;
        if (idx < 0 || idx >= count) return CFG_EINVAL;
        w = snprintf(buf, n, "%s", f->choices[idx]);
        break;
    }
    }
    if (w < 0 || (size_t)w >= n) return CFG_EINVAL;
    return w;
}

/* ------------------------------------------------------------------------ */
/* Where a value came from                                                   */
/* ------------------------------------------------------------------------ */

typedef struct cfg_origin {
    const char *file; /* set: the value came from file:line */
    int line;
    const char *arg; /* set: the value came from this --set argument */
} cfg_origin;

/* "file:12: ", "--set 'a.b=1': " or "" (default), for message prefixes. */
static void format_origin(const cfg_origin *o, char *buf, size_t n) {
    if (o && o->file)
        snprintf(buf, n, "%s:%d: ", o->file, o->line);
    else if (o && o->arg)
        snprintf(buf, n, "--set '%s': ", o->arg);
    else
        buf[0] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Schema check and defaults                                                 */
/* ------------------------------------------------------------------------ */

static bool name_chars_ok(const char *name, bool allow_dot) {
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '_' || c == '-' || (allow_dot && c == '.'))) return false;
    }
    return true;
}

int cfg_schema_check(const cfg_schema *s, cfg_errors *err) {
    if (!s || !s->fields || s->nfields == 0 || s->struct_size == 0) {
        cfg_errorf(err, "schema: no fields or no struct size");
        return CFG_ESCHEMA;
    }
    const char *sname = s->name ? s->name : "(unnamed)";
    int bad = 0;
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        if (!f->section || !f->key || !f->help || !f->def) {
            cfg_errorf(err, "schema %s: field %zu lacks a section, key, default or help", sname, i);
            bad++;
            continue;
        }
        char name[FULL_NAME_MAX], why[WHY_MAX];
        field_name(f, name);
        if (!f->key[0] || strlen(f->key) > CFG_NAME_MAX || strlen(f->section) > CFG_NAME_MAX ||
            !name_chars_ok(f->key, false) || !name_chars_ok(f->section, true) ||
            f->section[0] == '.' || (f->section[0] && f->section[strlen(f->section) - 1] == '.')) {
            cfg_errorf(err,
                       "schema %s: invalid name '%s' (at most %d characters of [A-Za-z0-9_-], dots only in sections)",
                       sname, name, CFG_NAME_MAX);
            bad++;
        }
        for (size_t j = 0; j < i; j++) {
            if (s->fields[j].section && s->fields[j].key && strcmp(s->fields[j].section, f->section) == 0 &&
                strcmp(s->fields[j].key, f->key) == 0) {
                cfg_errorf(err, "schema %s: '%s' is declared twice (fields %zu and %zu)", sname, name, j, i);
                bad++;
            }
        }
        size_t want = 0;
        switch (f->type) {
        case CFG_BOOL_T: want = sizeof(bool); break;
        case CFG_INT_T: want = sizeof(int); break;
        case CFG_INT64_T: want = sizeof(int64_t); break;
        case CFG_DOUBLE_T: want = sizeof(double); break;
        case CFG_ENUM_T: want = sizeof(int); break;
        case CFG_STRING_T: want = f->size >= 2 ? f->size : 2; break;
        default:
            cfg_errorf(err, "schema %s: '%s' has an unknown type %d", sname, name, (int)f->type);
            bad++;
            continue;
        }
        if (f->size != want || f->offset + f->size > s->struct_size) {
            cfg_errorf(err, "schema %s: '%s' has size %zu at offset %zu (expected size %zu within a %zu-byte struct)",
                       sname, name, f->size, f->offset, want, s->struct_size);
            bad++;
            continue;
        }
        if (f->type == CFG_INT_T || f->type == CFG_INT64_T || f->type == CFG_DOUBLE_T) {
            long long lo = 0, hi = 0;
            if (f->type != CFG_DOUBLE_T) int_bounds(f, &lo, &hi);
            if (!(f->lo <= f->hi) || lo > hi) {
                cfg_errorf(err, "schema %s: '%s' has empty bounds [%g, %g]", sname, name, f->lo, f->hi);
                bad++;
                continue;
            }
        }
        if (f->type == CFG_STRING_T && string_limit(f) == 0) {
            cfg_errorf(err, "schema %s: '%s' cannot hold any text", sname, name);
            bad++;
            continue;
        }
        if (f->type == CFG_ENUM_T) {
            if (!f->choices || !f->choices[0]) {
                cfg_errorf(err, "schema %s: enum '%s' has no choices", sname, name);
                bad++;
                continue;
            }
            for (size_t c = 0; f->choices[c]; c++) {
                if (!f->choices[c][0] || strlen(f->choices[c]) > CFG_NAME_MAX ||
                    !name_chars_ok(f->choices[c], true)) {
                    cfg_errorf(err, "schema %s: enum '%s' has an invalid choice '%s'", sname, name, f->choices[c]);
                    bad++;
                }
                for (size_t d = 0; d < c; d++)
                    if (strcmp(f->choices[c], f->choices[d]) == 0) {
                        cfg_errorf(err, "schema %s: enum '%s' lists '%s' twice", sname, name, f->choices[c]);
                        bad++;
                    }
            }
        }
        for (const char *h = f->help; *h; h++) {
            if ((unsigned char)*h < 0x20) { /* it becomes a '; comment' line of the resolved INI */
                cfg_errorf(err, "schema %s: the help of '%s' must be one line without control characters",
                           sname, name);
                bad++;
                break;
            }
        }
        if (parse_value(f, f->def, NULL, why, sizeof why) != 0) {
            cfg_errorf(err, "schema %s: default of '%s' = '%s': %s", sname, name, f->def, why);
            bad++;
        }
    }
    return bad ? CFG_ESCHEMA : CFG_OK;
}

/* Fills defaults into a zeroed struct; the schema must have passed the check. */
static void fill_defaults(const cfg_schema *s, void *cfg) {
    char why[WHY_MAX];
    memset(cfg, 0, s->struct_size);
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        parse_value(f, f->def, (unsigned char *)cfg + f->offset, why, sizeof why);
    }
}

int cfg_defaults(const cfg_schema *s, void *cfg, cfg_errors *err) {
    if (!cfg) return CFG_EINVAL;
    int rc = cfg_schema_check(s, err);
    if (rc != CFG_OK) return rc;
    fill_defaults(s, cfg);
    return CFG_OK;
}

/* ------------------------------------------------------------------------ */
/* Loading: shared state of one read (file or --set list)                    */
/* ------------------------------------------------------------------------ */

typedef struct load_state {
    const cfg_schema *s;
    unsigned char *work; /* the struct being filled (a private copy)         */
    cfg_origin *origin;  /* [nfields] where each value came from, or NULL    */
    cfg_errors *err;
    int errors;          /* errors reported by this load                    */
    bool nomem;

    /* the INI source being read */
    const char *name;    /* file name used in messages                       */
    FILE *fp;            /* either a file ...                                */
    const char *mem;     /* ... or text in memory                            */
    size_t mem_pos;
    char *line;          /* the current raw line, without '\n'               */
    size_t line_cap;
    int lineno;          /* lines handed to inih so far (= current line)     */
    int *seen;           /* [nfields] line of the key's first assignment     */
    bool skip_section;   /* inside an unknown or malformed [section]         */
} load_state;

static void load_error(load_state *st, const char *fmt, ...) CFG_PRINTF(2, 3);
static void load_error(load_state *st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errors_vadd(st->err, fmt, ap);
    va_end(ap);
    st->errors++;
}

/* Parses text into field f of the working struct, recording where it came
 * from; reports "<origin>name = 'text': reason" on failure. */
static void set_value(load_state *st, const cfg_field *f, const char *text, const cfg_origin *o) {
    char why[WHY_MAX], where[WHERE_MAX], name[FULL_NAME_MAX];
    if (parse_value(f, text, st->work + f->offset, why, sizeof why) == 0) {
        if (st->origin) st->origin[f - st->s->fields] = *o;
        return;
    }
    format_origin(o, where, sizeof where);
    load_error(st, "%s%s = '%s': %s", where, field_name(f, name), text, why);
}

/* "unknown key 'x' (did you mean 'y'?)" with the origin in front. */
static void unknown_key(load_state *st, const cfg_origin *o, const char *section, const char *key) {
    char where[WHERE_MAX], guess[FULL_NAME_MAX + 32] = "";
    format_origin(o, where, sizeof where);
    const cfg_field *near = nearest_field(st->s, section, key);
    if (near) {
        char name[FULL_NAME_MAX];
        snprintf(guess, sizeof guess, " (did you mean '%s'?)", field_name(near, name));
    }
    load_error(st, "%sunknown key '%s%s%s'%s", where, section, section[0] ? "." : "", key, guess);
}

/* Reads one raw line into st->line. Returns 1, 0 at the end, -1 out of memory. */
static int next_raw_line(load_state *st) {
    size_t n = 0;
    bool any = false;
    for (;;) {
        int c;
        if (st->fp)
            c = getc(st->fp);
        else
            c = st->mem[st->mem_pos] ? (unsigned char)st->mem[st->mem_pos++] : EOF;
        if (c == EOF) break;
        any = true;
        if (c == '\n') break;
        if (n + 1 >= st->line_cap) {
            size_t cap = st->line_cap * 2;
            char *p = realloc(st->line, cap);
            if (!p) return -1;
            st->line = p;
            st->line_cap = cap;
        }
        st->line[n++] = (char)c;
    }
    if (!any) return 0;
    st->line[n] = '\0';
    return 1;
}

/* Position of the '=' or ':' that ends a key, or NULL when the line has
 * none before an inline comment (the rule inih applies). */
static char *find_assignment(char *p) {
    bool was_space = false;
    for (; *p; p++) {
        if (*p == '=' || *p == ':') return p;
        if (was_space && *p == ';') return NULL;
        was_space = isspace((unsigned char)*p) != 0;
    }
    return NULL;
}

/* inih's reader: hands over one line at a time, after diagnosing it. */
static char *ini_reader_cb(char *str, int num, void *stream) {
    load_state *st = stream;
    int r = next_raw_line(st);
    if (r < 0) st->nomem = true;
    if (r <= 0) return NULL;
    st->lineno++;

    char *p = st->line;
    if (st->lineno == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3; /* UTF-8 byte order mark */
    while (isspace((unsigned char)*p)) p++;
    size_t len = strlen(p);
    while (len > 0 && isspace((unsigned char)p[len - 1])) len--;
    p[len] = '\0';

    const char *pass = ";"; /* what inih sees instead of a rejected line */
    /* inih's buffer holds num bytes: the line, '\n' and '\0' (and a '\r' in CRLF files). */
    size_t limit = num > 3 ? (size_t)(num - 3) : 0;
    if (limit > CFG_LINE_MAX) limit = CFG_LINE_MAX;
    if (len > limit && p[0] != ';' && p[0] != '#') { /* a comment of any length is skipped whole */
        load_error(st, "%s:%d: line too long (%zu characters), the limit is %zu", st->name, st->lineno, len,
                   limit);
        if (p[0] == '[') st->skip_section = true; /* its keys would land in the wrong section */
    } else if (len == 0 || p[0] == ';' || p[0] == '#') {
        /* blank or comment */
    } else if (p[0] == '[') {
        char *close = strchr(p, ']');
        char *rest = close ? close + 1 : NULL;
        while (rest && isspace((unsigned char)*rest)) rest++;
        if (!close) {
            load_error(st, "%s:%d: malformed section header '%s' (missing ']')", st->name, st->lineno, p);
            st->skip_section = true;
        } else if (*rest && *rest != ';' && *rest != '#') {
            load_error(st, "%s:%d: unexpected text '%s' after section header", st->name, st->lineno, rest);
            st->skip_section = true;
        } else {
            close[1] = '\0';
            char section[FULL_NAME_MAX + DIST_MAX_LEN];
            snprintf(section, sizeof section, "%.*s", (int)(close - p - 1), p + 1);
            if (section[0] && section_known(st->s, section)) {
                st->skip_section = false;
                pass = p;
            } else {
                const char *guess = nearest_section(st->s, section);
                char hint[FULL_NAME_MAX + 32] = "";
                if (guess) snprintf(hint, sizeof hint, " (did you mean [%s]?)", guess);
                load_error(st, "%s:%d: unknown section [%s]%s", st->name, st->lineno, section, hint);
                st->skip_section = true;
            }
        }
    } else {
        char *eq = find_assignment(p);
        if (!eq) {
            load_error(st, "%s:%d: expected 'key = value', '[section]' or a comment, got '%s'", st->name,
                       st->lineno, p);
        } else if (eq == p) { /* p starts at the first non-blank */
            load_error(st, "%s:%d: missing key before '%c'", st->name, st->lineno, *eq);
        } else {
            pass = p;
        }
    }
    size_t n = strlen(pass);
    memcpy(str, pass, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

/* inih's handler: one `key = value` of a well-formed line. */
static int ini_handler_cb(void *user, const char *section, const char *key, const char *value) {
    load_state *st = user;
    if (st->skip_section) return 1;
    cfg_origin o = {st->name, st->lineno, NULL};
    const cfg_field *f = cfg_find(st->s, section, key);
    if (!f) {
        unknown_key(st, &o, section, key);
        return 1;
    }
    size_t idx = (size_t)(f - st->s->fields);
    if (st->seen[idx]) {
        char name[FULL_NAME_MAX];
        load_error(st, "%s:%d: duplicate key '%s' (first set on line %d)", st->name, st->lineno,
                   field_name(f, name), st->seen[idx]);
        return 1;
    }
    st->seen[idx] = st->lineno;
    set_value(st, f, value, &o);
    return 1;
}

/* Reads INI from st->fp or st->mem into st->work. Returns CFG_OK, or
 * CFG_ENOMEM; value errors are counted in st->errors. */
static int read_ini(load_state *st) {
    int rc = CFG_OK;
    st->lineno = 0;
    st->skip_section = false;
    st->line_cap = 256;
    st->line = malloc(st->line_cap);
    st->seen = calloc(st->s->nfields, sizeof *st->seen);
    if (!st->line || !st->seen) {
        rc = CFG_ENOMEM;
        goto cleanup;
    }
    int r = ini_parse_stream(ini_reader_cb, st, ini_handler_cb, st);
    if (st->nomem || r == -2) {
        rc = CFG_ENOMEM;
        goto cleanup;
    }
    if (r > 0) /* the reader passes only well-formed lines, so this is inih disagreeing */
        load_error(st, "%s:%d: syntax error", st->name, r);
cleanup:
    free(st->line);
    free(st->seen);
    st->line = NULL;
    st->seen = NULL;
    if (rc == CFG_ENOMEM) cfg_errorf(st->err, "%s: out of memory while reading", st->name);
    return rc;
}

/* Reads a file; CFG_EIO (with the path and the reason) when it cannot be read. */
static int read_ini_file(load_state *st, const char *path) {
    st->name = path;
    st->fp = fopen(path, "r");
    if (!st->fp) {
        load_error(st, "cannot open config file '%s': %s", path, strerror(errno));
        return CFG_EIO;
    }
    st->mem = NULL;
    int rc = read_ini(st);
    if (rc == CFG_OK && ferror(st->fp)) {
        load_error(st, "cannot read config file '%s': %s", path, strerror(errno));
        rc = CFG_EIO;
    }
    fclose(st->fp);
    st->fp = NULL;
    return rc;
}

/* Applies one "section.key=value". */
static void apply_set(load_state *st, const char *arg) {
    cfg_origin o = {NULL, 0, arg};
    const char *eq = strchr(arg, '=');
    if (!eq) {
        load_error(st, "--set '%s': expected section.key=value", arg);
        return;
    }
    const char *b = arg, *e = eq;
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    char name[FULL_NAME_MAX + DIST_MAX_LEN], section[FULL_NAME_MAX], key[FULL_NAME_MAX];
    if ((size_t)(e - b) >= sizeof name) {
        load_error(st, "--set '%s': unknown key (name too long)", arg);
        return;
    }
    snprintf(name, sizeof name, "%.*s", (int)(e - b), b);
    if (!name[0]) {
        load_error(st, "--set '%s': missing key before '='", arg);
        return;
    }
    if (!split_name(name, section, key)) {
        load_error(st, "--set '%s': unknown key '%s'", arg, name);
        return;
    }
    const cfg_field *f = cfg_find(st->s, section, key);
    if (!f) {
        unknown_key(st, &o, section, key);
        return;
    }
    const char *v = eq + 1;
    while (isspace((unsigned char)*v)) v++;
    size_t vlen = strlen(v);
    while (vlen > 0 && isspace((unsigned char)v[vlen - 1])) vlen--;
    char *value = malloc(vlen + 1);
    if (!value) {
        st->nomem = true;
        load_error(st, "--set '%s': out of memory", arg);
        return;
    }
    memcpy(value, v, vlen);
    value[vlen] = '\0';
    set_value(st, f, value, &o);
    free(value);
}

/* ------------------------------------------------------------------------ */
/* Cross-field checks                                                        */
/* ------------------------------------------------------------------------ */

struct cfg_check {
    const cfg_schema *s;
    const void *cfg;
    const cfg_origin *origin; /* [nfields] or NULL (origins unknown) */
    cfg_errors *err;
    int failures;
};

void cfg_check_fail(cfg_check *ck, const char *name, const char *fmt, ...) {
    if (!ck) return;
    char msg[WHY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ck->failures++;
    const cfg_field *f = name ? cfg_lookup(ck->s, name) : NULL;
    if (!f) {
        cfg_errorf(ck->err, "%s%s%s", name ? name : "", name ? ": " : "", msg);
        return;
    }
    char value[CFG_VALUE_MAX] = "?", where[WHERE_MAX], full[FULL_NAME_MAX];
    cfg_format_value(f, ck->cfg, value, sizeof value);
    const cfg_origin *o = ck->origin ? &ck->origin[f - ck->s->fields] : NULL;
    format_origin(o, where, sizeof where);
    bool is_default = ck->origin && !o->file && !o->arg;
    cfg_errorf(ck->err, "%s%s = %s%s: %s", where, field_name(f, full), value, is_default ? " (default)" : "", msg);
}

static int run_check(const cfg_schema *s, const void *cfg, const cfg_origin *origin, cfg_errors *err) {
    if (!s->check) return 0;
    cfg_check ck = {s, cfg, origin, err, 0};
    s->check(cfg, &ck);
    return ck.failures;
}

/* Checks every field value of cfg; returns the number of bad fields. */
static int validate_fields(const cfg_schema *s, const void *cfg, cfg_errors *err) {
    int bad = 0;
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        char value[CFG_VALUE_MAX], why[WHY_MAX], name[FULL_NAME_MAX];
        field_name(f, name);
        if (cfg_format_value(f, cfg, value, sizeof value) < 0) {
            if (f->type == CFG_ENUM_T)
                cfg_errorf(err, "%s: enum index %d is not a valid choice", name,
                           *(const int *)((const unsigned char *)cfg + f->offset));
            else
                cfg_errorf(err, "%s: string is not NUL-terminated within its %zu bytes", name, f->size);
            bad++;
        } else if (parse_value(f, value, NULL, why, sizeof why) != 0) {
            cfg_errorf(err, "%s = '%s': %s", name, value, why);
            bad++;
        }
    }
    return bad;
}

int cfg_validate(const cfg_schema *s, const void *cfg, cfg_errors *err) {
    if (!cfg) return CFG_EINVAL;
    int rc = cfg_schema_check(s, err);
    if (rc != CFG_OK) return rc;
    if (validate_fields(s, cfg, err) > 0) return CFG_EINVAL;
    return run_check(s, cfg, NULL, err) > 0 ? CFG_EINVAL : CFG_OK;
}

/* ------------------------------------------------------------------------ */
/* Public loading entry points                                               */
/* ------------------------------------------------------------------------ */

int cfg_load(const cfg_schema *s, void *cfg, const char *path, const char *const *sets, int nsets,
             cfg_errors *err) {
    if (!cfg || (nsets > 0 && !sets)) return CFG_EINVAL;
    int rc = cfg_schema_check(s, err);
    if (rc != CFG_OK) return rc;
    load_state st = {0};
    st.s = s;
    st.err = err;
    st.work = malloc(s->struct_size);
    st.origin = calloc(s->nfields, sizeof *st.origin);
    if (!st.work || !st.origin) {
        cfg_errorf(err, "out of memory");
        rc = CFG_ENOMEM;
        goto cleanup;
    }
    fill_defaults(s, st.work);

    int file_rc = CFG_OK;
    if (path) {
        file_rc = read_ini_file(&st, path);
        if (file_rc == CFG_ENOMEM) {
            rc = CFG_ENOMEM;
            goto cleanup;
        }
    }
    for (int i = 0; i < nsets; i++) apply_set(&st, sets[i]);
    if (st.nomem) {
        rc = CFG_ENOMEM;
        goto cleanup;
    }
    /* Cross-field checks only make sense once every value is valid. */
    if (st.errors == 0) st.errors += run_check(s, st.work, st.origin, err);

    if (file_rc == CFG_EIO)
        rc = CFG_EIO;
    else if (st.errors > 0)
        rc = CFG_EINVAL;
    else
        memcpy(cfg, st.work, s->struct_size);
cleanup:
    free(st.work);
    free(st.origin);
    return rc;
}

/* Shared by cfg_read_file/cfg_read_string/cfg_set: works on a copy of *cfg
 * and commits it only when everything was valid. */
typedef enum { SRC_FILE, SRC_TEXT, SRC_SET } source_kind;

static int overlay(const cfg_schema *s, void *cfg, source_kind kind, const char *src, const char *name,
                   cfg_errors *err) {
    if (!cfg || !src) return CFG_EINVAL;
    int rc = cfg_schema_check(s, err);
    if (rc != CFG_OK) return rc;
    load_state st = {0};
    st.s = s;
    st.err = err;
    st.work = malloc(s->struct_size);
    if (!st.work) {
        cfg_errorf(err, "out of memory");
        return CFG_ENOMEM;
    }
    memcpy(st.work, cfg, s->struct_size);
    if (kind == SRC_FILE) {
        rc = read_ini_file(&st, src);
    } else if (kind == SRC_TEXT) {
        st.name = name ? name : "(string)";
        st.mem = src;
        rc = read_ini(&st);
    } else {
        apply_set(&st, src);
        if (st.nomem) rc = CFG_ENOMEM;
    }
    if (rc == CFG_OK && st.errors > 0) rc = CFG_EINVAL;
    if (rc == CFG_OK) memcpy(cfg, st.work, s->struct_size);
    free(st.work);
    return rc;
}

int cfg_read_file(const cfg_schema *s, void *cfg, const char *path, cfg_errors *err) {
    return overlay(s, cfg, SRC_FILE, path, path, err);
}

int cfg_read_string(const cfg_schema *s, void *cfg, const char *text, const char *name, cfg_errors *err) {
    return overlay(s, cfg, SRC_TEXT, text, name, err);
}

int cfg_set(const cfg_schema *s, void *cfg, const char *assignment, cfg_errors *err) {
    return overlay(s, cfg, SRC_SET, assignment, NULL, err);
}

/* ------------------------------------------------------------------------ */
/* Output: resolved INI, help, parameter table, diff                         */
/* ------------------------------------------------------------------------ */

/* Calls emit(i) for every field, grouped by section in order of first
 * appearance, top-level keys first; section_start(section) before each group. */
typedef struct walk {
    const cfg_schema *s;
    strbuf *b;
    const void *cfg;      /* the values being written (cfg_to_ini)       */
    const void *defaults; /* the defaults, to show them in canonical form */
    bool failed;
} walk;

/* A malloc'd struct holding the defaults, or NULL (broken schema, no memory). */
static void *make_defaults(const cfg_schema *s) {
    if (cfg_schema_check(s, NULL) != CFG_OK) return NULL;
    void *d = malloc(s->struct_size);
    if (d) fill_defaults(s, d);
    return d;
}

/* The default of f as the reader writes it ("0.0003" for "3e-4"), quoted for strings. */
static void format_default(const walk *w, const cfg_field *f, char *buf, size_t n) {
    char v[CFG_VALUE_MAX];
    if (cfg_format_value(f, w->defaults, v, sizeof v) < 0) snprintf(v, sizeof v, "%s", f->def);
    if (f->type == CFG_STRING_T)
        snprintf(buf, n, "'%s'", v);
    else
        snprintf(buf, n, "%s", v);
}

static bool first_of_section(const cfg_schema *s, size_t i) {
    for (size_t j = 0; j < i; j++)
        if (strcmp(s->fields[j].section, s->fields[i].section) == 0) return false;
    return true;
}

static void walk_fields(walk *w, void (*section_start)(walk *, const char *),
                        void (*emit)(walk *, const cfg_field *)) {
    const cfg_schema *s = w->s;
    for (size_t i = 0; i < s->nfields; i++) /* top-level keys must precede any [section] */
        if (!s->fields[i].section[0]) emit(w, &s->fields[i]);
    for (size_t i = 0; i < s->nfields; i++) {
        if (!s->fields[i].section[0] || !first_of_section(s, i)) continue;
        section_start(w, s->fields[i].section);
        for (size_t j = i; j < s->nfields; j++)
            if (strcmp(s->fields[j].section, s->fields[i].section) == 0) emit(w, &s->fields[j]);
    }
}

static void ini_section(walk *w, const char *section) { sb_add(w->b, "\n[%s]\n", section); }

static void ini_field(walk *w, const cfg_field *f) {
    char value[CFG_VALUE_MAX], type[WHY_MAX], def[CFG_VALUE_MAX + 2];
    if (cfg_format_value(f, w->cfg, value, sizeof value) < 0) {
        w->failed = true;
        return;
    }
    describe_type(f, type, sizeof type);
    format_default(w, f, def, sizeof def);
    sb_add(w->b, "; %s (%s; default %s)\n", f->help, type, def);
    sb_add(w->b, "%s = %s\n", f->key, value);
}

char *cfg_to_ini(const cfg_schema *s, const void *cfg) {
    if (!s || !cfg) return NULL;
    void *defaults = make_defaults(s);
    if (!defaults) return NULL;
    strbuf b = {0};
    walk w = {s, &b, cfg, defaults, false};
    sb_add(&b, "; Resolved configuration%s%s. Every option is listed; a run reads this file back unchanged.\n",
           s->name ? " of " : "", s->name ? s->name : "");
    walk_fields(&w, ini_section, ini_field);
    if (w.failed) b.failed = true;
    free(defaults);
    return sb_finish(&b);
}

int cfg_write_file(const cfg_schema *s, const void *cfg, const char *path, cfg_errors *err) {
    if (!cfg || !path) return CFG_EINVAL;
    int rc = cfg_schema_check(s, err);
    if (rc != CFG_OK) return rc;
    if (validate_fields(s, cfg, err) > 0) return CFG_EINVAL;
    char *text = cfg_to_ini(s, cfg);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!text || !tmp) {
        cfg_errorf(err, "out of memory while writing '%s'", path);
        rc = CFG_ENOMEM;
        goto cleanup;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *fp = fopen(tmp, "w");
    if (!fp) {
        cfg_errorf(err, "cannot create '%s': %s", tmp, strerror(errno));
        rc = CFG_EIO;
        goto cleanup;
    }
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, fp) == n;
    int saved = errno;
    if (fclose(fp) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        cfg_errorf(err, "cannot write '%s': %s", tmp, strerror(saved));
        remove(tmp);
        rc = CFG_EIO;
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        cfg_errorf(err, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        remove(tmp);
        rc = CFG_EIO;
        goto cleanup;
    }
cleanup:
    free(text);
    free(tmp);
    return rc;
}

static void help_section(walk *w, const char *section) { sb_add(w->b, "\n[%s]\n", section); }

static void help_field(walk *w, const cfg_field *f) {
    char name[FULL_NAME_MAX], type[WHY_MAX], def[CFG_VALUE_MAX + 2];
    describe_type(f, type, sizeof type);
    format_default(w, f, def, sizeof def);
    sb_add(w->b, "  %s (%s; default %s)\n      %s\n", field_name(f, name), type, def, f->help);
}

char *cfg_help(const cfg_schema *s) {
    if (!s) return NULL;
    void *defaults = make_defaults(s);
    if (!defaults) return NULL;
    strbuf b = {0};
    walk w = {s, &b, NULL, defaults, false};
    sb_add(&b, "Options%s%s (set them in the recipe under [section], or with --set section.key=value):\n",
           s->name ? " of " : "", s->name ? s->name : "");
    bool top = false;
    for (size_t i = 0; i < s->nfields; i++) top = top || !s->fields[i].section[0];
    if (top) sb_add(&b, "\n(top level)\n");
    walk_fields(&w, help_section, help_field);
    free(defaults);
    return sb_finish(&b);
}

static void table_rule(strbuf *b, size_t w1, size_t w2) {
    sb_add(b, "+");
    sb_repeat(b, '-', w1 + 2);
    sb_add(b, "+");
    sb_repeat(b, '-', w2 + 2);
    sb_add(b, "+\n");
}

char *cfg_table(const cfg_schema *s, const void *cfg) {
    if (!s || !cfg) return NULL;
    size_t w1 = strlen("Parameter"), w2 = strlen("Value");
    char name[FULL_NAME_MAX], value[CFG_VALUE_MAX];
    for (size_t i = 0; i < s->nfields; i++) {
        size_t n1 = strlen(field_name(&s->fields[i], name));
        if (n1 > w1) w1 = n1;
        if (cfg_format_value(&s->fields[i], cfg, value, sizeof value) < 0) snprintf(value, sizeof value, "(invalid)");
        if (strlen(value) > w2) w2 = strlen(value);
    }
    strbuf b = {0};
    table_rule(&b, w1, w2);
    sb_add(&b, "| %-*s | %-*s |\n", (int)w1, "Parameter", (int)w2, "Value");
    table_rule(&b, w1, w2);
    for (size_t i = 0; i < s->nfields; i++) {
        if (cfg_format_value(&s->fields[i], cfg, value, sizeof value) < 0) snprintf(value, sizeof value, "(invalid)");
        sb_add(&b, "| %-*s | %-*s |\n", (int)w1, field_name(&s->fields[i], name), (int)w2, value);
    }
    table_rule(&b, w1, w2);
    return sb_finish(&b);
}

int cfg_diff(const cfg_schema *s, const void *a, const void *b, cfg_errors *out) {
    if (!s || !a || !b) return CFG_EINVAL;
    int differ = 0;
    for (size_t i = 0; i < s->nfields; i++) {
        const cfg_field *f = &s->fields[i];
        char va[CFG_VALUE_MAX], vb[CFG_VALUE_MAX], name[FULL_NAME_MAX];
        int ra = cfg_format_value(f, a, va, sizeof va), rb = cfg_format_value(f, b, vb, sizeof vb);
        bool same;
        if (ra >= 0 && rb >= 0) /* shortest round-trip texts: equal text <=> equal value */
            same = strcmp(va, vb) == 0;
        else
            same = memcmp((const unsigned char *)a + f->offset, (const unsigned char *)b + f->offset, f->size) == 0;
        if (same) continue;
        differ++;
        if (ra < 0) snprintf(va, sizeof va, "(invalid)");
        if (rb < 0) snprintf(vb, sizeof vb, "(invalid)");
        cfg_errorf(out, "%s: %s -> %s", field_name(f, name), va, vb);
    }
    return differ;
}
