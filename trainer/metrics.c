/*
 * metrics.c -- metrics.h: the per-log-step record, its JSON line, console
 * line and progress line, the resume truncation of metrics.jsonl, and the
 * logger that sends each record to the JSONL file, TensorBoard and console.
 */
#define _POSIX_C_SOURCE 200809L

#include "metrics.h"

#include "tboard.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void set_msg(char *dst, size_t size, const char *fmt, ...) {
    if (!dst || !size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

/* ---- a growable string -------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom; /* sticky: set by the first failed allocation */
} sbuf;

static void sb_free(sbuf *b) {
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

static int sb_reserve(sbuf *b, size_t extra) {
    if (b->oom) return 0;
    size_t need = b->len + extra + 1; /* + NUL */
    if (need <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->s = p;
    b->cap = cap;
    return 1;
}

static void sb_putn(sbuf *b, const char *p, size_t n) {
    if (!sb_reserve(b, n)) return;
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *p) { sb_putn(b, p, strlen(p)); }

static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_putn(b, tmp, (size_t)n);
        return;
    }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Copies an sbuf into a caller's buffer with snprintf's contract. */
static long sb_export(const sbuf *b, char *buf, size_t size) {
    if (b->oom) return MX_ENOMEM;
    if (buf && size) {
        size_t n = b->len < size - 1 ? b->len : size - 1;
        if (n) memcpy(buf, b->s, n);
        buf[n] = '\0';
    }
    return (long)b->len;
}

/* ---- the record --------------------------------------------------------- */

typedef struct mx_entry {
    char *key;
    char *str; /* non-NULL: a string value */
    double num;
} mx_entry;

struct mx_record {
    int64_t step;
    mx_entry *e;
    size_t n, cap;
    char msg[256];
};

mx_record *mx_record_new(void) { return calloc(1, sizeof(mx_record)); }

void mx_record_begin(mx_record *r, int64_t step) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->e[i].key);
        free(r->e[i].str);
    }
    r->n = 0;
    r->step = step;
    r->msg[0] = '\0';
}

void mx_record_free(mx_record *r) {
    if (!r) return;
    mx_record_begin(r, 0);
    free(r->e);
    free(r);
}

static mx_entry *find_entry(const mx_record *r, const char *key) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->e[i].key, key) == 0) return &r->e[i];
    return NULL;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* The slot for `key`: the existing one (value to be replaced) or a new one
 * at the end. NULL with r->msg set on a bad key or out of memory. */
static mx_entry *slot_for(mx_record *r, const char *key, int *status) {
    if (!key || !*key) {
        set_msg(r->msg, sizeof r->msg, "metrics: empty or NULL key at step %" PRId64, r->step);
        *status = MX_EINVAL;
        return NULL;
    }
    if (strcmp(key, "step") == 0) {
        set_msg(r->msg, sizeof r->msg,
                "metrics: key 'step' is reserved (it is written first from mx_record_begin)");
        *status = MX_EINVAL;
        return NULL;
    }
    mx_entry *e = find_entry(r, key);
    if (e) return e;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        mx_entry *p = realloc(r->e, cap * sizeof *p);
        if (!p) goto oom;
        r->e = p;
        r->cap = cap;
    }
    e = &r->e[r->n];
    if (!(e->key = dup_str(key))) goto oom;
    e->str = NULL;
    e->num = 0;
    r->n++;
    return e;
oom:
    set_msg(r->msg, sizeof r->msg, "metrics: out of memory adding key '%s'", key);
    *status = MX_ENOMEM;
    return NULL;
}

int mx_add(mx_record *r, const char *key, double value) {
    if (!r) return MX_EINVAL;
    int status = MX_OK;
    mx_entry *e = slot_for(r, key, &status);
    if (!e) return status;
    free(e->str);
    e->str = NULL;
    e->num = value;
    return MX_OK;
}

int mx_add_str(mx_record *r, const char *key, const char *value) {
    if (!r) return MX_EINVAL;
    if (!value) {
        set_msg(r->msg, sizeof r->msg, "metrics: NULL string value for key '%s'", key ? key : "(null)");
        return MX_EINVAL;
    }
    char *copy = dup_str(value);
    if (!copy) {
        set_msg(r->msg, sizeof r->msg, "metrics: out of memory adding key '%s'", key ? key : "(null)");
        return MX_ENOMEM;
    }
    int status = MX_OK;
    mx_entry *e = slot_for(r, key, &status);
    if (!e) {
        free(copy);
        return status;
    }
    free(e->str);
    e->str = copy;
    e->num = 0;
    return MX_OK;
}

int64_t mx_record_step(const mx_record *r) { return r ? r->step : 0; }

size_t mx_record_count(const mx_record *r) { return r ? r->n : 0; }

int mx_get(const mx_record *r, const char *key, double *value) {
    if (!r || !key) return MX_EINVAL;
    const mx_entry *e = find_entry(r, key);
    if (!e || e->str) return MX_EINVAL;
    if (value) *value = e->num;
    return MX_OK;
}

const char *mx_record_error(const mx_record *r) { return r ? r->msg : "mx_record is NULL"; }

/* ---- JSON --------------------------------------------------------------- */

int mx_format_number(char buf[32], double v) {
    if (!isfinite(v)) return snprintf(buf, 32, "null");
    /* Integral values below 2^53 are exact integers: print them as such. */
    if (v == floor(v) && fabs(v) < 9007199254740992.0) return snprintf(buf, 32, "%.0f", v);
    for (int prec = 1; prec <= 17; prec++) {
        int n = snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return n;
    }
    return snprintf(buf, 32, "%.17g", v); /* unreachable: 17 digits always round-trip */
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t avail) {
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) n = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) n = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, min = 0x10000;
    else return 0;
    if (avail < n) return 0;
    unsigned cp = c & (0x3fu >> (n - 1));
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0u) != 0x80u) return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

/* A JSON string literal: quotes, backslashes and control characters escaped,
 * valid UTF-8 copied through, invalid bytes replaced by U+FFFD so that every
 * line is valid UTF-8 JSON. */
static void sb_json_string(sbuf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t avail = strlen(s);
    sb_putn(b, "\"", 1);
    while (avail) {
        unsigned c = *p;
        size_t n = 1;
        switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                sb_printf(b, "\\u%04x", c);
            } else if ((n = utf8_len(p, avail)) != 0) {
                sb_putn(b, (const char *)p, n);
            } else {
                sb_puts(b, "\\ufffd");
                n = 1;
            }
        }
        p += n;
        avail -= n;
    }
    sb_putn(b, "\"", 1);
}

static void json_line(sbuf *b, const mx_record *r) {
    char num[32];
    sb_printf(b, "{\"step\":%" PRId64, r->step);
    for (size_t i = 0; i < r->n; i++) {
        sb_putn(b, ",", 1);
        sb_json_string(b, r->e[i].key);
        sb_putn(b, ":", 1);
        if (r->e[i].str) {
            sb_json_string(b, r->e[i].str);
        } else {
            int n = mx_format_number(num, r->e[i].num);
            sb_putn(b, num, (size_t)n);
        }
    }
    sb_puts(b, "}\n");
}

long mx_format_json(char *buf, size_t size, const mx_record *r) {
    if (!r) return MX_EINVAL;
    sbuf b = {0};
    json_line(&b, r);
    long n = sb_export(&b, buf, size);
    sb_free(&b);
    return n;
}

/* ---- console line ------------------------------------------------------- */

static int nonfinite_text(sbuf *b, double v) {
    if (isfinite(v)) return 0;
    sb_puts(b, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    return 1;
}

/* 4 significant digits, no exponent in the usual range of losses/metrics. */
static void put_compact(sbuf *b, double v) {
    if (nonfinite_text(b, v)) return;
    double a = fabs(v);
    if (v == 0) sb_puts(b, "0");
    else if (a >= 1e-3 && a < 1e4) sb_printf(b, "%.4g", v);
    else if (a >= 1e4 && a < 1e9) sb_printf(b, "%.0f", v);
    else sb_printf(b, "%.2e", v);
}

/* 3 significant digits with a k/M/G/T suffix: 3140 -> "3.1k", 412 -> "412". */
static void put_si(sbuf *b, double v) {
    if (nonfinite_text(b, v)) return;
    static const char *const suffix[] = {"", "k", "M", "G", "T"};
    double a = fabs(v);
    int u = 0;
    while (u < 4 && a >= 999.95) { /* 999.96 rounds to 1000.0: promote first */
        a /= 1000;
        v /= 1000;
        u++;
    }
    if (u == 0) sb_printf(b, "%.3g", v);
    else sb_printf(b, "%.1f%s", v, suffix[u]);
}

static void put_column(sbuf *b, const mx_column *c, double v, const mx_record *r) {
    const char *label = c->label && *c->label ? c->label : c->key;
    switch (c->style) {
    case MX_MS:
        if (!nonfinite_text(b, v)) sb_printf(b, fabs(v) < 10 ? "%.1f" : "%.0f", v);
        if (c->label && *c->label) sb_printf(b, " %s", c->label);
        return;
    case MX_RATE:
        put_si(b, v);
        if (c->label && *c->label) sb_printf(b, " %s", c->label);
        return;
    default: break;
    }
    sb_printf(b, "%s ", label);
    switch (c->style) {
    case MX_SCI:
        if (!nonfinite_text(b, v)) sb_printf(b, "%.1e", v);
        break;
    case MX_INT:
        if (!nonfinite_text(b, v)) sb_printf(b, "%.0f", v);
        break;
    case MX_PCT:
        if (!nonfinite_text(b, v)) sb_printf(b, "%.1f%%", 100 * v);
        break;
    default: put_compact(b, v); break;
    }
    double pm;
    if (c->pm_key && mx_get(r, c->pm_key, &pm) == MX_OK) {
        sb_puts(b, "\xc2\xb1"); /* U+00B1 PLUS-MINUS SIGN */
        if (c->style == MX_SCI && isfinite(pm)) sb_printf(b, "%.1e", pm);
        else put_compact(b, pm);
    }
}

static int decimal_digits(int64_t v) {
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

static void console_line(sbuf *b, const mx_record *r, int64_t total, const mx_column *cols,
                         size_t ncols) {
    if (total > 0)
        sb_printf(b, "step %*" PRId64 "/%" PRId64, decimal_digits(total) + 1, r->step, total);
    else
        sb_printf(b, "step %" PRId64, r->step);
    for (size_t i = 0; i < ncols; i++) {
        double v;
        if (!cols[i].key || mx_get(r, cols[i].key, &v) != MX_OK) continue;
        sb_puts(b, " | ");
        put_column(b, &cols[i], v, r);
    }
}

long mx_format_console(char *buf, size_t size, const mx_record *r, int64_t total_steps,
                       const mx_column *cols, size_t ncols) {
    if (!r || (ncols && !cols)) return MX_EINVAL;
    sbuf b = {0};
    console_line(&b, r, total_steps, cols, ncols);
    long n = sb_export(&b, buf, size);
    sb_free(&b);
    return n;
}

/* ---- duration and progress ---------------------------------------------- */

int mx_format_duration(char *buf, size_t size, double seconds) {
    if (!isfinite(seconds) || seconds < 0 || seconds > 1e15)
        return snprintf(buf, size, "?:??");
    long long s = (long long)llround(seconds);
    long long h = s / 3600, m = (s / 60) % 60, sec = s % 60;
    if (h > 0) return snprintf(buf, size, "%lld:%02lld:%02lld", h, m, sec);
    return snprintf(buf, size, "%lld:%02lld", m, sec);
}

long mx_format_progress(char *buf, size_t size, int64_t step, int64_t total, int64_t start_step,
                        double elapsed_s, int width) {
    sbuf b = {0};
    if (total > 0 && width > 0) {
        int64_t done = step < 0 ? 0 : step > total ? total : step;
        int filled = (int)((done * (int64_t)width) / total);
        sb_putn(&b, "[", 1);
        for (int i = 0; i < width; i++) sb_putn(&b, i < filled ? "#" : ".", 1);
        sb_puts(&b, "] ");
    }
    if (total > 0) {
        double pct = 100.0 * (double)step / (double)total;
        sb_printf(&b, "%*" PRId64 "/%" PRId64 " %3.0f%%", decimal_digits(total) + 1, step, total,
                  floor(pct));
    } else {
        sb_printf(&b, "%" PRId64, step);
    }

    int64_t ran = step - start_step;
    double rate = ran > 0 && elapsed_s > 0 ? (double)ran / elapsed_s : 0;
    if (rate >= 1) sb_printf(&b, " | %.2f it/s", rate);
    else if (rate > 0) sb_printf(&b, " | %.2f s/it", 1 / rate);
    else sb_puts(&b, " | ? it/s");

    char el[32], eta[32];
    mx_format_duration(el, sizeof el, elapsed_s);
    if (total > 0) {
        int64_t left = total - step;
        mx_format_duration(eta, sizeof eta, rate > 0 ? (double)(left > 0 ? left : 0) / rate : -1);
        sb_printf(&b, " | %s < %s", el, eta);
    } else {
        sb_printf(&b, " | %s", el);
    }
    long n = sb_export(&b, buf, size);
    sb_free(&b);
    return n;
}

/* ---- resume truncation -------------------------------------------------- */

/* 1 and *step if the line starts as json_line writes it, {"step":<int>,
 * else 0. Whitespace around the tokens is tolerated. */
static int parse_step(const char *line, int64_t *step) {
    const char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p++ != '{') return 0;
    while (*p == ' ' || *p == '\t') p++;
    if (strncmp(p, "\"step\"", 6) != 0) return 0;
    p += 6;
    while (*p == ' ' || *p == '\t') p++;
    if (*p++ != ':') return 0;
    while (*p == ' ' || *p == '\t') p++;
    if (!(*p == '-' || (*p >= '0' && *p <= '9'))) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p) return 0;
    while (*end == ' ' || *end == '\t') end++;
    if (*end != ',' && *end != '}') return 0;
    *step = (int64_t)v;
    return 1;
}

/* fsync of the directory holding `path`, so a rename in it is durable. */
static int fsync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) dir = dup_str(".");
    else if (slash == path) dir = dup_str("/");
    else {
        size_t n = (size_t)(slash - path);
        if ((dir = malloc(n + 1))) {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (!dir) return -1;
    int fd = open(dir, O_RDONLY);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int mx_truncate_jsonl(const char *path, int64_t max_step, size_t *kept, size_t *dropped,
                      char *err, size_t err_size) {
    size_t n_kept = 0, n_dropped = 0;
    if (kept) *kept = 0;
    if (dropped) *dropped = 0;
    if (!path || !*path) {
        set_msg(err, err_size, "mx_truncate_jsonl: path is NULL or empty");
        return MX_EINVAL;
    }
    FILE *in = fopen(path, "rb");
    if (!in) {
        if (errno == ENOENT) return MX_OK; /* nothing logged yet: nothing to drop */
        set_msg(err, err_size, "%s: cannot open for resume truncation: %s", path, strerror(errno));
        return MX_EIO;
    }
    int rc = MX_OK;
    FILE *out = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    size_t tmp_size = strlen(path) + 5;
    char *tmp = malloc(tmp_size);
    if (!tmp) {
        set_msg(err, err_size, "%s: out of memory", path);
        rc = MX_ENOMEM;
        goto done;
    }
    snprintf(tmp, tmp_size, "%s.tmp", path);
    if (!(out = fopen(tmp, "wb"))) {
        set_msg(err, err_size, "%s: cannot create: %s", tmp, strerror(errno));
        rc = MX_EIO;
        goto done;
    }
    ssize_t len;
    errno = 0;
    while ((len = getline(&line, &line_cap, in)) > 0) {
        int64_t step;
        int whole = line[len - 1] == '\n'; /* a line cut by a kill has no '\n' */
        if (whole && parse_step(line, &step) && step <= max_step) {
            if (fwrite(line, 1, (size_t)len, out) != (size_t)len) {
                set_msg(err, err_size, "%s: write failed: %s", tmp, strerror(errno));
                rc = MX_EIO;
                goto done;
            }
            n_kept++;
        } else {
            n_dropped++;
        }
        errno = 0;
    }
    if (ferror(in)) {
        set_msg(err, err_size, "%s: read failed: %s", path, errno ? strerror(errno) : "I/O error");
        rc = MX_EIO;
        goto done;
    }
    if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
        set_msg(err, err_size, "%s: cannot flush/fsync: %s", tmp, strerror(errno));
        rc = MX_EIO;
        goto done;
    }
    int close_rc = fclose(out);
    out = NULL;
    if (close_rc != 0) {
        set_msg(err, err_size, "%s: cannot close: %s", tmp, strerror(errno));
        rc = MX_EIO;
        goto done;
    }
    if (rename(tmp, path) != 0) {
        set_msg(err, err_size, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        rc = MX_EIO;
        goto done;
    }
    if (fsync_parent_dir(path) != 0) {
        set_msg(err, err_size, "%s: cannot fsync its directory: %s", path, strerror(errno));
        rc = MX_EIO;
        goto done;
    }
    if (kept) *kept = n_kept;
    if (dropped) *dropped = n_dropped;
done:
    if (out) fclose(out);
    if (rc != MX_OK && tmp) remove(tmp);
    fclose(in);
    free(line);
    free(tmp);
    return rc;
}

/* ---- the logger --------------------------------------------------------- */

struct mx_logger {
    FILE *jsonl;
    char *jsonl_path;
    tb_writer *tb;
    int64_t total_steps;
    int64_t start_step;   /* where this process started: the progress rate counts from here */
    FILE *console;
    mx_column *cols;
    size_t ncols;
    FILE *progress;
    int progress_is_tty;
    int progress_shown; /* a progress line is on screen and must be erased first */
    size_t resume_kept, resume_dropped;
    sbuf line;            /* scratch: the JSON or console line            */
    const char **tags;    /* scratch: the numeric keys of a record        */
    double *values;       /* scratch: their values                        */
    size_t scratch_cap;
    char msg[512];
};

double mx_wall_time(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (double)time(NULL);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void free_logger(mx_logger *L) {
    if (L->jsonl) fclose(L->jsonl);
    tb_close(L->tb, NULL, 0);
    free(L->jsonl_path);
    free(L->cols);
    sb_free(&L->line);
    free(L->tags);
    free(L->values);
    free(L);
}

int mx_open(mx_logger **out, const mx_options *opt, char *err, size_t err_size) {
    if (out) *out = NULL;
    if (!out || !opt || !opt->run_dir || !*opt->run_dir || (opt->ncolumns && !opt->columns)) {
        set_msg(err, err_size, "mx_open: %s",
                !out ? "out is NULL" : !opt ? "options are NULL"
                : (!opt->run_dir || !*opt->run_dir) ? "run_dir is NULL or empty"
                : "columns is NULL with ncolumns > 0");
        return MX_EINVAL;
    }
    int rc = MX_ENOMEM;
    mx_logger *L = calloc(1, sizeof *L);
    size_t path_size = strlen(opt->run_dir) + sizeof "/metrics.jsonl";
    if (!L || !(L->jsonl_path = malloc(path_size))) goto oom;
    snprintf(L->jsonl_path, path_size, "%s/metrics.jsonl", opt->run_dir);
    if (opt->ncolumns) {
        if (!(L->cols = malloc(opt->ncolumns * sizeof *L->cols))) goto oom;
        memcpy(L->cols, opt->columns, opt->ncolumns * sizeof *L->cols);
        L->ncols = opt->ncolumns;
    }
    L->total_steps = opt->total_steps;
    L->start_step = opt->resume_step > 0 ? opt->resume_step : 0;
    L->console = opt->console;
    L->progress = opt->progress;
    L->progress_is_tty = opt->progress_is_tty && opt->progress;

    if (opt->resume_step >= 0) {
        rc = mx_truncate_jsonl(L->jsonl_path, opt->resume_step, &L->resume_kept,
                               &L->resume_dropped, err, err_size);
        if (rc) goto fail;
    }
    L->jsonl = fopen(L->jsonl_path, opt->resume_step >= 0 ? "ab" : "wb");
    if (!L->jsonl) {
        set_msg(err, err_size, "%s: cannot open for writing: %s", L->jsonl_path, strerror(errno));
        rc = MX_EIO;
        goto fail;
    }
    if (opt->tensorboard) {
        double wall = opt->wall_time > 0 ? opt->wall_time : mx_wall_time();
        if (tb_open(&L->tb, opt->run_dir, wall, err, err_size) != TB_OK) {
            rc = MX_EIO;
            goto fail;
        }
        if (opt->resume_step >= 0 &&
            tb_write_session_start(L->tb, wall, opt->resume_step + 1) != TB_OK) {
            set_msg(err, err_size, "%s", tb_error(L->tb));
            rc = MX_EIO;
            goto fail;
        }
    }
    *out = L;
    return MX_OK;
oom:
    set_msg(err, err_size, "mx_open: out of memory for the logger of %s", opt->run_dir);
    rc = MX_ENOMEM;
fail:
    if (L) free_logger(L);
    return rc;
}

static void clear_progress(mx_logger *L) {
    if (!L->progress_shown) return;
    fputs("\r\033[K", L->progress); /* carriage return + erase to end of line */
    fflush(L->progress);
    L->progress_shown = 0;
}

/* Grows the tag/value scratch arrays to hold n entries. */
static int scratch_reserve(mx_logger *L, size_t n) {
    if (n <= L->scratch_cap) return 1;
    const char **t = realloc(L->tags, n * sizeof *t);
    if (!t) return 0;
    L->tags = t;
    double *v = realloc(L->values, n * sizeof *v);
    if (!v) return 0;
    L->values = v;
    L->scratch_cap = n;
    return 1;
}

int mx_log(mx_logger *L, const mx_record *r, double wall_time) {
    if (!L || !r) return MX_EINVAL;
    int rc = MX_OK;

    L->line.len = 0;
    L->line.oom = 0;
    json_line(&L->line, r);
    if (L->line.oom) {
        set_msg(L->msg, sizeof L->msg, "%s: out of memory formatting step %" PRId64,
                L->jsonl_path, r->step);
        rc = MX_ENOMEM;
    } else {
        errno = 0;
        if (fwrite(L->line.s, 1, L->line.len, L->jsonl) != L->line.len || fflush(L->jsonl) != 0) {
            set_msg(L->msg, sizeof L->msg, "%s: cannot write step %" PRId64 ": %s", L->jsonl_path,
                    r->step, errno ? strerror(errno) : "short write");
            rc = MX_EIO;
        }
    }

    if (L->tb) {
        if (!scratch_reserve(L, r->n)) {
            if (!rc) {
                set_msg(L->msg, sizeof L->msg, "%s: out of memory at step %" PRId64,
                        tb_path(L->tb), r->step);
                rc = MX_ENOMEM;
            }
        } else {
            size_t n = 0;
            for (size_t i = 0; i < r->n; i++) {
                if (r->e[i].str) continue;
                L->tags[n] = r->e[i].key;
                L->values[n] = r->e[i].num;
                n++;
            }
            if (tb_write_scalars(L->tb, wall_time, r->step, n, L->tags, L->values) != TB_OK && !rc) {
                set_msg(L->msg, sizeof L->msg, "%s", tb_error(L->tb));
                rc = MX_EIO;
            }
        }
    }

    if (L->console) {
        L->line.len = 0;
        L->line.oom = 0;
        console_line(&L->line, r, L->total_steps, L->cols, L->ncols);
        sb_putn(&L->line, "\n", 1);
        if (!L->line.oom) {
            clear_progress(L);
            fputs(L->line.s, L->console);
            fflush(L->console);
        }
    }
    return rc;
}

int mx_log_text(mx_logger *L, int64_t step, const char *tag, const char *markdown, double wall_time) {
    if (!L || !tag || !markdown) return MX_EINVAL;
    if (!L->tb) return MX_OK;
    if (tb_write_text(L->tb, wall_time, step, tag, markdown) != TB_OK) {
        set_msg(L->msg, sizeof L->msg, "%s", tb_error(L->tb));
        return MX_EIO;
    }
    return MX_OK;
}

void mx_progress(mx_logger *L, int64_t step, double elapsed_s) {
    if (!L || !L->progress_is_tty) return;
    char line[512];
    mx_format_progress(line, sizeof line, step, L->total_steps, L->start_step, elapsed_s, 24);
    fprintf(L->progress, "\r%s\033[K", line);
    fflush(L->progress);
    L->progress_shown = 1;
}

void mx_resume_info(const mx_logger *L, size_t *kept, size_t *dropped) {
    if (kept) *kept = L ? L->resume_kept : 0;
    if (dropped) *dropped = L ? L->resume_dropped : 0;
}

const char *mx_jsonl_path(const mx_logger *L) { return L ? L->jsonl_path : ""; }

const char *mx_tb_path(const mx_logger *L) { return L && L->tb ? tb_path(L->tb) : ""; }

const char *mx_error(const mx_logger *L) { return L ? L->msg : "mx_logger is NULL"; }

int mx_close(mx_logger *L, char *err, size_t err_size) {
    if (!L) return MX_OK;
    int rc = MX_OK;
    if (L->progress_shown) {
        fputc('\n', L->progress); /* leave the last progress line on screen */
        fflush(L->progress);
    }
    errno = 0;
    if (fflush(L->jsonl) != 0 || fsync(fileno(L->jsonl)) != 0) {
        set_msg(err, err_size, "%s: cannot flush/fsync: %s", L->jsonl_path, strerror(errno));
        rc = MX_EIO;
    }
    if (fclose(L->jsonl) != 0 && rc == MX_OK) {
        set_msg(err, err_size, "%s: cannot close: %s", L->jsonl_path, strerror(errno));
        rc = MX_EIO;
    }
    L->jsonl = NULL;
    char tb_err[512];
    if (tb_close(L->tb, tb_err, sizeof tb_err) != TB_OK && rc == MX_OK) {
        set_msg(err, err_size, "%s", tb_err);
        rc = MX_EIO;
    }
    L->tb = NULL;
    free_logger(L);
    return rc;
}
