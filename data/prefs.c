/*
 * prefs.c -- JSONL preference datasets (see prefs.h for the API, the record
 * kinds and the exact error messages).
 *
 * Layout: messages and a string arena, the record rules (shared by the
 * loader, which checks parsed JSON, and pref_record_check, which checks C
 * records before writing), the loader (getline + jansson per line), the
 * writer (own JSON encoder, temp file + fsync + rename), then the glue to
 * data/shuffle.h. A record is validated completely before anything is copied
 * into the dataset, so a skipped line leaves nothing behind.
 */
#define _POSIX_C_SOURCE 200809L

#include "prefs.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REASON_CAP 512      /* one reason, without the FILE:LINE: prefix  */
#define ARENA_BLOCK 65536   /* default arena block; bigger strings get their own */

static int pref_fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

static const char *const kind_names[] = {"auto", "pairwise", "listwise", "unpaired"};

const char *pref_kind_name(pref_kind kind)
{
    return (int)kind >= 0 && (int)kind < 4 ? kind_names[kind] : NULL;
}

int pref_kind_from_name(const char *name)
{
    for (int k = 0; name && k < 4; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

pref_options pref_options_default(void)
{
    pref_options o = {.kind = PREF_AUTO, .skip_bad = 0};
    return o;
}

/* ------------------------------------------------------------------------ */
/* String arena: strings and completion arrays live in a few large blocks     */
/* ------------------------------------------------------------------------ */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} arena_block;

typedef struct arena {
    arena_block *head;
} arena;

static void *arena_alloc(arena *a, size_t size, size_t align)
{
    arena_block *b = a->head;
    size_t at = b ? (b->used + align - 1) / align * align : 0;
    if (!b || at + size > b->cap) {
        size_t cap = size > ARENA_BLOCK ? size : ARENA_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        at = 0;
    }
    b->used = at + size;
    return (char *)b->data + at;
}

static char *arena_strdup(arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1, 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

static void arena_free(arena *a)
{
    for (arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

/* ------------------------------------------------------------------------ */
/* The dataset                                                               */
/* ------------------------------------------------------------------------ */

struct pref_dataset {
    char *path;
    pref_kind kind;
    int64_t kind_line; /* line whose record fixed the kind; 0 = given by the caller */
    pref_record *recs;
    size_t n, cap;
    pref_stats stats;
    char *reasons[PREF_MAX_REASONS];
    arena strings;
};

void pref_free(pref_dataset *d)
{
    if (!d) return;
    for (int i = 0; i < PREF_MAX_REASONS; i++) free(d->reasons[i]);
    arena_free(&d->strings);
    free(d->recs);
    free(d->path);
    free(d);
}

pref_kind pref_dataset_kind(const pref_dataset *d) { return d ? d->kind : PREF_AUTO; }
const char *pref_dataset_path(const pref_dataset *d) { return d ? d->path : NULL; }
size_t pref_count(const pref_dataset *d) { return d ? d->n : 0; }
const pref_record *pref_records(const pref_dataset *d) { return d ? d->recs : NULL; }

const pref_record *pref_get(const pref_dataset *d, size_t i)
{
    return d && i < d->n ? &d->recs[i] : NULL;
}

pref_stats pref_dataset_stats(const pref_dataset *d)
{
    pref_stats s;
    if (d) return d->stats;
    memset(&s, 0, sizeof s);
    return s;
}

const char *pref_skip_reason(const pref_dataset *d, size_t i)
{
    return d && i < PREF_MAX_REASONS ? d->reasons[i] : NULL;
}

/* ------------------------------------------------------------------------ */
/* Record rules                                                              */
/* ------------------------------------------------------------------------ */

/* The field names that identify each kind, in the order reasons name them. */
static const char *const kind_fields[4][2] = {
    {NULL, NULL}, {"chosen", "rejected"}, {"completions", "scores"}, {"completion", "label"}};

static const char *json_type_phrase(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

static int reason(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, REASON_CAP, fmt, ap);
    va_end(ap);
    return -1;
}

/* Which kind the present fields name; 0 with a reason when none or several. */
static pref_kind classify(const int present[4][2], char *why)
{
    pref_kind found = PREF_AUTO;
    const char *found_field = NULL;
    for (int k = PREF_PAIRWISE; k <= PREF_UNPAIRED; k++) {
        const char *field = present[k][0] ? kind_fields[k][0] : present[k][1] ? kind_fields[k][1] : NULL;
        if (!field) continue;
        if (found != PREF_AUTO) {
            reason(why, "record mixes the fields of %s (\"%s\") and %s (\"%s\")", kind_names[found], found_field,
                   kind_names[k], field);
            return PREF_AUTO;
        }
        found = (pref_kind)k;
        found_field = field;
    }
    if (found == PREF_AUTO)
        reason(why, "cannot tell the record kind: expected \"chosen\"/\"rejected\" (pairwise), "
                    "\"completions\"/\"scores\" (listwise) or \"completion\"/\"label\" (unpaired)");
    return found;
}

/* The record's kind against the dataset's. kind_line 0 = given by the caller. */
static int kind_matches(pref_kind want, int64_t kind_line, pref_kind got, char *why)
{
    if (want == PREF_AUTO || want == got) return 0;
    const char *a_got = got == PREF_UNPAIRED ? "an" : "a", *a_want = want == PREF_UNPAIRED ? "an" : "a";
    if (kind_line > 0)
        return reason(why, "%s %s record in %s %s dataset (kind set by line %lld)", a_got, kind_names[got], a_want,
                      kind_names[want], (long long)kind_line);
    return reason(why, "%s %s record in %s %s dataset (kind given by the caller)", a_got, kind_names[got], a_want,
                  kind_names[want]);
}

/* A required string field of a parsed object. */
static int json_field_string(const json_t *o, const char *name, const json_t **out, char *why)
{
    const json_t *v = json_object_get(o, name);
    if (!v) return reason(why, "missing field \"%s\"", name);
    if (!json_is_string(v)) return reason(why, "field \"%s\" must be a string, got %s", name, json_type_phrase(v));
    *out = v;
    return 0;
}

/* Parsed and checked JSON of one record (pointers into the jansson tree). */
typedef struct parsed {
    pref_kind kind;
    const json_t *prompt, *a, *b; /* pairwise: chosen, rejected; unpaired: completion, label */
    const json_t *completions, *scores;
    size_t n;
} parsed;

/* Checks one parsed line against the rules; want/kind_line as kind_matches. */
static int check_json(const json_t *o, pref_kind want, int64_t kind_line, parsed *p, char *why)
{
    memset(p, 0, sizeof *p);
    if (!json_is_object(o)) return reason(why, "a record must be a JSON object, got %s", json_type_phrase(o));
    int present[4][2] = {{0}};
    for (int k = PREF_PAIRWISE; k <= PREF_UNPAIRED; k++)
        for (int f = 0; f < 2; f++) present[k][f] = json_object_get(o, kind_fields[k][f]) != NULL;
    p->kind = classify((const int(*)[2])present, why);
    if (p->kind == PREF_AUTO || kind_matches(want, kind_line, p->kind, why) != 0) return -1;
    if (json_field_string(o, "prompt", &p->prompt, why) != 0) return -1;
    if (json_string_length(p->prompt) == 0) return reason(why, "field \"prompt\" is empty");
    switch (p->kind) {
    case PREF_PAIRWISE:
        if (json_field_string(o, "chosen", &p->a, why) != 0) return -1;
        return json_field_string(o, "rejected", &p->b, why);
    case PREF_UNPAIRED:
        if (json_field_string(o, "completion", &p->a, why) != 0) return -1;
        p->b = json_object_get(o, "label");
        if (!p->b) return reason(why, "missing field \"label\"");
        if (!json_is_boolean(p->b))
            return reason(why, "field \"label\" must be true or false, got %s", json_type_phrase(p->b));
        return 0;
    case PREF_LISTWISE: {
        const char *names[2] = {"completions", "scores"};
        const json_t *arr[2];
        for (int i = 0; i < 2; i++) {
            arr[i] = json_object_get(o, names[i]);
            if (!arr[i]) return reason(why, "missing field \"%s\"", names[i]);
            if (!json_is_array(arr[i]))
                return reason(why, "field \"%s\" must be an array, got %s", names[i], json_type_phrase(arr[i]));
        }
        size_t nc = json_array_size(arr[0]), ns = json_array_size(arr[1]);
        if (nc < 2) return reason(why, "\"completions\" needs at least 2 entries, got %zu", nc);
        if (nc != ns) return reason(why, "\"completions\" has %zu entries but \"scores\" has %zu", nc, ns);
        for (size_t i = 0; i < nc; i++) {
            const json_t *c = json_array_get(arr[0], i), *s = json_array_get(arr[1], i);
            if (!json_is_string(c))
                return reason(why, "completions[%zu] must be a string, got %s", i, json_type_phrase(c));
            if (!json_is_number(s)) return reason(why, "scores[%zu] must be a number, got %s", i, json_type_phrase(s));
            if (!isfinite(json_number_value(s))) return reason(why, "scores[%zu] is not finite", i);
        }
        p->completions = arr[0];
        p->scores = arr[1];
        p->n = nc;
        return 0;
    }
    case PREF_AUTO: break;
    }
    return reason(why, "internal: unknown record kind %d", (int)p->kind);
}

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF) without NUL: what the loader accepts. */
static int utf8_ok(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        size_t n;
        unsigned cp, min;
        if (c == 0) return 0;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n + 1;
    }
    return 1;
}

static int check_c_string(const char *name, const char *s, int nonempty, char *why)
{
    if (!s) return reason(why, "missing field \"%s\"", name);
    if (nonempty && !s[0]) return reason(why, "field \"%s\" is empty", name);
    if (!utf8_ok(s, strlen(s))) return reason(why, "field \"%s\" is not valid UTF-8", name);
    return 0;
}

int pref_record_check(pref_kind kind, const pref_record *r, char *err, size_t errlen)
{
    char why[REASON_CAP];
    int bad = 0;
    if (!r) return pref_fail(err, errlen, PREF_ERR_ARG, "record is NULL");
    if (kind != PREF_PAIRWISE && kind != PREF_LISTWISE && kind != PREF_UNPAIRED)
        return pref_fail(err, errlen, PREF_ERR_ARG, "a record must be pairwise, listwise or unpaired (kind %d)",
                         (int)kind);
    bad = check_c_string("prompt", r->prompt, 1, why);
    if (!bad && kind == PREF_PAIRWISE)
        bad = check_c_string("chosen", r->chosen, 0, why) || check_c_string("rejected", r->rejected, 0, why);
    if (!bad && kind == PREF_UNPAIRED) {
        bad = check_c_string("completion", r->completion, 0, why);
        if (!bad && r->label != 0 && r->label != 1)
            bad = reason(why, "field \"label\" must be true or false, got %d", r->label);
    }
    if (!bad && kind == PREF_LISTWISE) {
        if (r->n_completions < 2)
            bad = reason(why, "\"completions\" needs at least 2 entries, got %zu", r->n_completions);
        else if (!r->completions || !r->scores)
            bad = reason(why, "missing field \"%s\"", !r->completions ? "completions" : "scores");
        for (size_t i = 0; !bad && i < r->n_completions; i++) {
            char name[48];
            snprintf(name, sizeof name, "completions[%zu]", i);
            bad = check_c_string(name, r->completions[i], 0, why);
            if (!bad && !isfinite(r->scores[i])) bad = reason(why, "scores[%zu] is not finite", i);
        }
    }
    return bad ? pref_fail(err, errlen, PREF_ERR_ARG, "%s", why) : PREF_OK;
}

/* ------------------------------------------------------------------------ */
/* Loader                                                                    */
/* ------------------------------------------------------------------------ */

/* The 1-based column of a bare NaN / Infinity / -Infinity token outside any
 * string of line[0..len), or 0. *tok receives the token. Runs only after the
 * parser refused the line, to name the usual culprit (Python's json.dumps
 * writes these for float('nan') and float('inf')). */
static size_t nonfinite_column(const char *line, size_t len, const char **tok)
{
    static const char *const toks[] = {"-Infinity", "Infinity", "NaN"};
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = line[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
            continue;
        }
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
            size_t n = strlen(toks[k]);
            if (i + n <= len && memcmp(line + i, toks[k], n) == 0) {
                *tok = toks[k];
                return i + 1;
            }
        }
    }
    return 0;
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* Copies a checked record into the dataset. PREF_ERR_NOMEM on failure. */
static int keep_record(pref_dataset *d, const parsed *p, int64_t line)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        pref_record *r = realloc(d->recs, cap * sizeof *r);
        if (!r) return PREF_ERR_NOMEM;
        d->recs = r;
        d->cap = cap;
    }
    pref_record r;
    memset(&r, 0, sizeof r);
    r.line = line;
    r.label = -1;
    arena *a = &d->strings;
    int ok = (r.prompt = arena_strdup(a, json_string_value(p->prompt), json_string_length(p->prompt))) != NULL;
    pref_stats *st = &d->stats;
    int64_t nc = 0;
    switch (p->kind) {
    case PREF_PAIRWISE:
        ok = ok && (r.chosen = arena_strdup(a, json_string_value(p->a), json_string_length(p->a))) != NULL;
        ok = ok && (r.rejected = arena_strdup(a, json_string_value(p->b), json_string_length(p->b))) != NULL;
        nc = 2;
        break;
    case PREF_UNPAIRED:
        ok = ok && (r.completion = arena_strdup(a, json_string_value(p->a), json_string_length(p->a))) != NULL;
        r.label = json_is_true(p->b) ? 1 : 0;
        nc = 1;
        break;
    case PREF_LISTWISE: {
        const char **texts = ok ? arena_alloc(a, p->n * sizeof *texts, sizeof(void *)) : NULL;
        double *scores = texts ? arena_alloc(a, p->n * sizeof *scores, sizeof(double)) : NULL;
        ok = scores != NULL;
        for (size_t i = 0; ok && i < p->n; i++) {
            const json_t *c = json_array_get(p->completions, i);
            ok = (texts[i] = arena_strdup(a, json_string_value(c), json_string_length(c))) != NULL;
            scores[i] = json_number_value(json_array_get(p->scores, i));
        }
        r.n_completions = p->n;
        r.completions = texts;
        r.scores = scores;
        nc = (int64_t)p->n;
        break;
    }
    case PREF_AUTO: ok = 0; break;
    }
    if (!ok) return PREF_ERR_NOMEM;
    d->recs[d->n++] = r;
    st->records++;
    st->completions += nc;
    if (nc > st->max_completions) st->max_completions = nc;
    if (p->kind == PREF_UNPAIRED) {
        if (r.label) st->desirable++;
        else st->undesirable++;
    }
    return PREF_OK;
}

/* One non-blank line: PREF_OK (kept), 1 (malformed, reason in why) or
 * PREF_ERR_NOMEM. */
static int load_line(pref_dataset *d, const char *line, size_t len, int64_t lineno, char *why)
{
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        const char *tok = NULL;
        size_t col = nonfinite_column(line, len, &tok);
        if (col > 0)
            reason(why, "non-finite number %s at column %zu (JSON has no NaN or Infinity; scores must be finite)", tok,
                   col);
        else
            reason(why, "invalid JSON at column %d: %s", je.column, je.text);
        return 1;
    }
    parsed p;
    int rc = 1;
    if (check_json(o, d->kind, d->kind_line, &p, why) == 0) {
        rc = keep_record(d, &p, lineno);
        if (rc == PREF_OK && d->kind == PREF_AUTO) {
            d->kind = p.kind;
            d->kind_line = lineno;
        }
    }
    json_decref(o);
    return rc;
}

int pref_load(const char *path, const pref_options *opt, pref_dataset **out, char *err, size_t errlen)
{
    if (out) *out = NULL;
    if (!path || !out) return pref_fail(err, errlen, PREF_ERR_ARG, "pref_load: NULL path or output");
    pref_options o = opt ? *opt : pref_options_default();
    if (o.kind != PREF_AUTO && !pref_kind_name(o.kind))
        return pref_fail(err, errlen, PREF_ERR_ARG, "%s: unknown dataset kind %d", path, (int)o.kind);
    FILE *f = fopen(path, "rb");
    if (!f) return pref_fail(err, errlen, PREF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    pref_dataset *d = calloc(1, sizeof *d);
    char *buf = NULL;
    size_t bufcap = 0;
    int rc = PREF_OK;
    if (!d || !(d->path = strdup(path))) {
        rc = pref_fail(err, errlen, PREF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    d->kind = o.kind;
    for (;;) {
        errno = 0;
        ssize_t got = getline(&buf, &bufcap, f);
        if (got < 0) {
            if (ferror(f))
                rc = pref_fail(err, errlen, PREF_ERR_IO, "%s:%lld: read error: %s", path,
                               (long long)d->stats.lines + 1, strerror(errno ? errno : EIO));
            break;
        }
        int64_t lineno = ++d->stats.lines;
        size_t len = (size_t)got;
        if (len > 0 && buf[len - 1] == '\n') len--;
        if (len > 0 && buf[len - 1] == '\r') len--;
        const char *line = buf;
        if (lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) line += 3, len -= 3;
        if (is_blank(line, len)) {
            d->stats.blank++;
            continue;
        }
        char why[REASON_CAP];
        int r = load_line(d, line, len, lineno, why);
        if (r == PREF_ERR_NOMEM) {
            rc = pref_fail(err, errlen, PREF_ERR_NOMEM, "%s:%lld: out of memory", path, (long long)lineno);
            break;
        }
        if (r == PREF_OK) continue;
        if (!o.skip_bad) {
            rc = pref_fail(err, errlen, PREF_ERR_PARSE, "%s:%lld: %s", path, (long long)lineno, why);
            break;
        }
        if (d->stats.skipped < PREF_MAX_REASONS) {
            size_t need = strlen(path) + strlen(why) + 32;
            char *msg = malloc(need);
            if (msg) snprintf(msg, need, "%s:%lld: %s", path, (long long)lineno, why);
            d->reasons[d->stats.skipped] = msg;
        }
        d->stats.skipped++;
    }
    if (rc == PREF_OK && d->n == 0) {
        if (d->stats.skipped > 0)
            rc = pref_fail(err, errlen, PREF_ERR_EMPTY, "%s: no records (%lld lines, %lld skipped; first: %s)", path,
                           (long long)d->stats.lines, (long long)d->stats.skipped,
                           d->reasons[0] ? d->reasons[0] : "?");
        else
            rc = pref_fail(err, errlen, PREF_ERR_EMPTY, "%s: no records (%lld lines)", path,
                           (long long)d->stats.lines);
    }
done:
    free(buf);
    fclose(f);
    if (rc != PREF_OK) {
        pref_free(d);
        return rc;
    }
    *out = d;
    return PREF_OK;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

/* A JSON string literal of valid UTF-8 s: quotes, backslashes and control
 * characters escaped, everything else byte for byte. */
static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* The shortest %.Ng (N = 1..17) that reads back to x, with '.' as decimal
 * point whatever the locale and ".0" added to integral values (so the
 * number reads as a real, as Python writes it). x is finite. */
static void put_number(FILE *f, double x)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    const char *dp = localeconv()->decimal_point;
    int has_frac = 0;
    for (char *p = buf; *p; p++) {
        if (dp && dp[0] && *p == dp[0]) *p = '.';
        if (*p == '.' || *p == 'e' || *p == 'E') has_frac = 1;
    }
    fputs(buf, f);
    if (!has_frac) fputs(".0", f);
}

static void put_record(FILE *f, pref_kind kind, const pref_record *r)
{
    fputs("{\"prompt\":", f);
    put_string(f, r->prompt);
    switch (kind) {
    case PREF_PAIRWISE:
        fputs(",\"chosen\":", f);
        put_string(f, r->chosen);
        fputs(",\"rejected\":", f);
        put_string(f, r->rejected);
        break;
    case PREF_LISTWISE:
        fputs(",\"completions\":[", f);
        for (size_t i = 0; i < r->n_completions; i++) {
            if (i) fputc(',', f);
            put_string(f, r->completions[i]);
        }
        fputs("],\"scores\":[", f);
        for (size_t i = 0; i < r->n_completions; i++) {
            if (i) fputc(',', f);
            put_number(f, r->scores[i]);
        }
        fputc(']', f);
        break;
    case PREF_UNPAIRED:
        fputs(",\"completion\":", f);
        put_string(f, r->completion);
        fputs(r->label ? ",\"label\":true" : ",\"label\":false", f);
        break;
    case PREF_AUTO: break;
    }
    fputs("}\n", f);
}

/* fsync the directory holding path, so the rename itself is durable. */
static int sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return -1;
    int fd = open(dir, O_RDONLY);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int pref_write(const char *path, pref_kind kind, const pref_record *recs, size_t n, char *err, size_t errlen)
{
    if (!path || (n > 0 && !recs)) return pref_fail(err, errlen, PREF_ERR_ARG, "pref_write: NULL path or records");
    if (kind != PREF_PAIRWISE && kind != PREF_LISTWISE && kind != PREF_UNPAIRED)
        return pref_fail(err, errlen, PREF_ERR_ARG, "%s: cannot write records of kind %s", path,
                         pref_kind_name(kind) ? pref_kind_name(kind) : "?");
    for (size_t i = 0; i < n; i++) {
        char why[REASON_CAP];
        if (pref_record_check(kind, &recs[i], why, sizeof why) != PREF_OK)
            return pref_fail(err, errlen, PREF_ERR_ARG, "%s: record %zu: %s", path, i, why);
    }

    /* a fresh temporary name next to path (O_EXCL: never reuse a stale one) */
    size_t cap = strlen(path) + 48;
    char *tmp = malloc(cap);
    if (!tmp) return pref_fail(err, errlen, PREF_ERR_NOMEM, "%s: out of memory", path);
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 1000; attempt++) {
        snprintf(tmp, cap, "%s.tmp.%ld.%d", path, (long)getpid(), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int rc = pref_fail(err, errlen, PREF_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int rc = pref_fail(err, errlen, PREF_ERR_IO, "%s: cannot open %s: %s", path, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return rc;
    }
    for (size_t i = 0; i < n; i++) put_record(f, kind, &recs[i]);
    const char *step = NULL;
    int saved = 0;
    if (fflush(f) != 0 || ferror(f)) step = "write";
    else if (fsync(fileno(f)) != 0) step = "fsync";
    saved = errno;
    if (fclose(f) != 0 && !step) step = "close", saved = errno;
    if (!step && rename(tmp, path) != 0) step = "rename", saved = errno;
    if (step) {
        int rc = pref_fail(err, errlen, PREF_ERR_IO, "%s: %s of %s failed: %s", path, step, tmp, strerror(saved));
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    if (sync_parent_dir(path) != 0)
        return pref_fail(err, errlen, PREF_ERR_IO, "%s: written, but syncing its directory failed: %s", path,
                         strerror(errno));
    return PREF_OK;
}

/* ------------------------------------------------------------------------ */
/* Shuffled batches                                                          */
/* ------------------------------------------------------------------------ */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

/* Little-endian u64 then the bytes, so field boundaries are part of the hash. */
static uint64_t fnv_field(uint64_t h, const void *p, uint64_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(n >> (8 * i));
    return fnv_bytes(fnv_bytes(h, len, 8), p, (size_t)n);
}

static uint64_t fnv_string(uint64_t h, const char *s) { return fnv_field(h, s ? s : "", s ? strlen(s) : 0); }

uint64_t pref_fingerprint(const pref_dataset *d)
{
    if (!d) return 0;
    uint64_t h = FNV_OFFSET;
    unsigned char kind = (unsigned char)d->kind;
    h = fnv_bytes(h, &kind, 1);
    for (size_t i = 0; i < d->n; i++) {
        const pref_record *r = &d->recs[i];
        h = fnv_string(h, r->prompt);
        h = fnv_string(fnv_string(h, r->chosen), r->rejected);
        h = fnv_string(h, r->completion);
        unsigned char label = (unsigned char)(r->label + 1);
        h = fnv_bytes(h, &label, 1);
        h = fnv_field(h, "", r->n_completions);
        for (size_t k = 0; k < r->n_completions; k++) {
            uint64_t bits;
            memcpy(&bits, &r->scores[k], sizeof bits);
            unsigned char le[8];
            for (int j = 0; j < 8; j++) le[j] = (unsigned char)(bits >> (8 * j));
            h = fnv_bytes(fnv_string(h, r->completions[k]), le, 8);
        }
    }
    return h;
}

shuf_config pref_shuffle_config(const pref_dataset *d, uint64_t seed)
{
    return shuf_config_default((int64_t)pref_count(d), seed);
}

int pref_next_batch(const pref_dataset *d, shuf_sampler *s, int64_t batch_size, int64_t *idx,
                    const pref_record **out, char *err, size_t errlen)
{
    if (!d || !s || !idx || !out)
        return pref_fail(err, errlen, PREF_ERR_ARG, "pref_next_batch: NULL dataset, sampler or output");
    const shuf_config *c = shuf_sampler_config(s);
    if (c->n != (int64_t)d->n)
        return pref_fail(err, errlen, PREF_ERR_MISMATCH,
                         "%s: the sampler covers %lld items but the dataset has %zu records (a different file?)",
                         d->path, (long long)c->n, d->n);
    char why[256];
    if (shuf_next_batch(s, batch_size, idx, why, sizeof why) != SHUF_OK)
        return pref_fail(err, errlen, PREF_ERR_ARG, "%s: %s", d->path, why);
    for (int64_t i = 0; i < batch_size; i++) out[i] = &d->recs[idx[i]];
    return PREF_OK;
}
