/*
 * settings.c -- the loss families' shared settings machinery (see settings.h).
 *
 * Layout: field access through a descriptor, name lists (edit distance,
 * nearest name, joining), parsing, then the public functions. Name lists are
 * walked with a stride so that a descriptor table (whose first member is the
 * name) and a plain array of names share one implementation.
 */
#include "settings.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Field access                                                              */
/* ------------------------------------------------------------------------ */

static double *real_at(void *cfg, const lset_desc *s) { return (double *)((char *)cfg + s->offset); }
static int64_t *int_at(void *cfg, const lset_desc *s) { return (int64_t *)((char *)cfg + s->offset); }
static int *flag_at(void *cfg, const lset_desc *s) { return (int *)((char *)cfg + s->offset); }

/* The field as a double (INT: converted; BOOL, CHOICE: the int). */
static double value_of(const void *cfg, const lset_desc *s)
{
    void *c = (void *)cfg; /* read only */
    switch (s->type) {
    case LSET_REAL:
    case LSET_REAL_OPT: return *real_at(c, s);
    case LSET_INT: return (double)*int_at(c, s);
    case LSET_BOOL:
    case LSET_CHOICE: return (double)*flag_at(c, s);
    case LSET_CUSTOM: break;
    }
    return NAN;
}

static size_t choice_count(const char *const *choices)
{
    size_t n = 0;
    while (choices && choices[n]) n++;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Name lists                                                                */
/* ------------------------------------------------------------------------ */

/* names[i] of a list whose entries are stride bytes apart. */
static const char *name_at(const void *names, size_t stride, size_t i)
{
    return *(const char *const *)((const char *)names + i * stride);
}

/* Levenshtein distance of two short names, case-insensitive; SIZE_MAX when
 * b is too long to be a setting name. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[64];
    if (lb >= COUNT(row)) return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* 1 when a (3 characters or more) begins b, ignoring case: "temp" for
 * "temperature" is an abbreviation, not a typo, but as likely meant. */
static int abbreviates(const char *a, const char *b)
{
    size_t i = 0;
    for (; a[i] && b[i]; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 0;
    return a[i] == '\0' && i >= 3;
}

/* The nearest name among those within a typo's distance (2 edits for short
 * names, a third of the length + 1 for longer ones) or that name abbreviates. */
static const char *nearest_strided(const char *name, const void *names, size_t stride, size_t n)
{
    size_t best = SIZE_MAX, len = strlen(name), limit = len > 6 ? len / 3 + 1 : 2;
    const char *near = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *cand = name_at(names, stride, i);
        size_t d = edit_distance(name, cand);
        if (d < best && (d <= limit || abbreviates(name, cand))) best = d, near = cand;
    }
    return near;
}

static const char *join_strided(char *buf, size_t cap, const void *names, size_t stride, size_t n)
{
    if (!buf || cap == 0) return buf;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", name_at(names, stride, i));
        if (w < 0 || (size_t)w >= cap - used) {
            buf[used] = '\0'; /* keep whole names only */
            break;
        }
        used += (size_t)w;
    }
    return buf;
}

static int unknown_strided(const char *family, const char *what, const char *name, const void *names,
                           size_t stride, size_t n)
{
    char list[768];
    join_strided(list, sizeof list, names, stride, n);
    const char *near = nearest_strided(name, names, stride, n);
    if (near)
        rt_set_error("%s: unknown %s '%s' (did you mean '%s'?); valid: %s", family, what, name, near, list);
    else
        rt_set_error("%s: unknown %s '%s'; valid: %s", family, what, name, list);
    return RT_ENOTFOUND;
}

const char *lset_nearest(const char *name, const char *const *names, size_t n)
{
    if (!name || !names) return NULL;
    return nearest_strided(name, names, sizeof *names, n);
}

const char *lset_join(char *buf, size_t cap, const char *const *names, size_t n)
{
    return join_strided(buf, cap, names, sizeof *names, names ? n : 0);
}

int lset_unknown(const char *family, const char *what, const char *name, const char *const *names, size_t n)
{
    return unknown_strided(family ? family : "?", what ? what : "name", name ? name : "", names, sizeof *names,
                           names ? n : 0);
}

/* ------------------------------------------------------------------------ */
/* Parsing (strict: the whole value, nothing but trailing blanks after it)   */
/* ------------------------------------------------------------------------ */

static int only_blanks(const char *p)
{
    while (isspace((unsigned char)*p)) p++;
    return *p == '\0';
}

static int parse_real(const char *v, double *out)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno || isnan(x) || !only_blanks(end)) return -1;
    return *out = x, 0;
}

static int parse_int(const char *v, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || errno || !only_blanks(end)) return -1;
    return *out = (int64_t)x, 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < COUNT(yes); i++) {
        if (strcmp(v, yes[i]) == 0) return *out = 1, 0;
        if (strcmp(v, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

static int is_none(const char *v)
{
    return strcmp(v, "none") == 0 || strcmp(v, "None") == 0 || strcmp(v, "null") == 0;
}

/* ------------------------------------------------------------------------ */
/* Public functions                                                          */
/* ------------------------------------------------------------------------ */

const lset_desc *lset_find(const lset_desc *t, size_t n, const char *name)
{
    for (size_t i = 0; t && name && i < n; i++)
        if (strcmp(t[i].name, name) == 0) return &t[i];
    return NULL;
}

int lset_apply(const lset_desc *t, size_t n, void *cfg, const char *family, const char *name, const char *value)
{
    if (!family) family = "settings";
    if (!t || !cfg || !name || !value) return rt_set_error("%s: setting given a NULL argument", family), RT_EINVAL;
    const lset_desc *s = lset_find(t, n, name);
    if (!s) return unknown_strided(family, "setting", name, &t[0].name, sizeof *t, n);
    switch (s->type) {
    case LSET_REAL:
    case LSET_REAL_OPT: {
        double v;
        if (s->type == LSET_REAL_OPT && is_none(value)) return *real_at(cfg, s) = NAN, RT_OK;
        if (parse_real(value, &v) != 0)
            return rt_set_error("%s: %s = '%s' is not a number%s", family, name, value,
                                s->type == LSET_REAL_OPT ? " (or none)" : ""),
                   RT_EINVAL;
        if (!(v >= s->lo && v <= s->hi))
            return rt_set_error("%s: %s = %s is out of range [%g, %g]", family, name, value, s->lo, s->hi),
                   RT_EINVAL;
        *real_at(cfg, s) = v;
        return RT_OK;
    }
    case LSET_INT: {
        int64_t v;
        if (parse_int(value, &v) != 0)
            return rt_set_error("%s: %s = '%s' is not an integer", family, name, value), RT_EINVAL;
        if (!((double)v >= s->lo && (double)v <= s->hi))
            return rt_set_error("%s: %s = %s is out of range [%.0f, %.0f]", family, name, value, s->lo, s->hi),
                   RT_EINVAL;
        *int_at(cfg, s) = v;
        return RT_OK;
    }
    case LSET_BOOL: {
        int v;
        if (parse_bool(value, &v) != 0)
            return rt_set_error("%s: %s = '%s' is not a boolean (0/1, true/false, yes/no, on/off)", family, name,
                                value),
                   RT_EINVAL;
        *flag_at(cfg, s) = v;
        return RT_OK;
    }
    case LSET_CHOICE: {
        size_t nc = choice_count(s->choices);
        for (size_t i = 0; i < nc; i++)
            if (strcmp(value, s->choices[i]) == 0) return *flag_at(cfg, s) = (int)i, RT_OK;
        char list[512];
        join_strided(list, sizeof list, s->choices, sizeof *s->choices, nc);
        const char *near = nearest_strided(value, s->choices, sizeof *s->choices, nc);
        if (near)
            rt_set_error("%s: %s = '%s' is not one of: %s (did you mean '%s'?)", family, name, value, list, near);
        else
            rt_set_error("%s: %s = '%s' is not one of: %s", family, name, value, list);
        return RT_EINVAL;
    }
    case LSET_CUSTOM: break;
    }
    return rt_set_error("%s: setting %s has a type (%d) the family parses itself", family, name, (int)s->type),
           RT_EINVAL;
}

void lset_defaults(const lset_desc *t, size_t n, void *cfg)
{
    for (size_t i = 0; t && cfg && i < n; i++) {
        const lset_desc *s = &t[i];
        switch (s->type) {
        case LSET_REAL:
        case LSET_REAL_OPT: *real_at(cfg, s) = s->def; break;
        case LSET_INT: *int_at(cfg, s) = (int64_t)s->def; break;
        case LSET_BOOL:
        case LSET_CHOICE: *flag_at(cfg, s) = (int)s->def; break;
        case LSET_CUSTOM: break;
        }
    }
}

int lset_check(const lset_desc *t, size_t n, const void *cfg, const char *family)
{
    if (!family) family = "settings";
    if (!cfg) return rt_set_error("%s: config is NULL", family), RT_EINVAL;
    for (size_t i = 0; t && i < n; i++) {
        const lset_desc *s = &t[i];
        if (s->type >= LSET_CUSTOM) continue;
        double v = value_of(cfg, s);
        if (s->type == LSET_CHOICE) {
            size_t nc = choice_count(s->choices);
            if (!(v >= 0 && v < (double)nc))
                return rt_set_error("%s: setting %s = %g is not a valid choice index (0..%zu)", family, s->name, v,
                                    nc ? nc - 1 : 0),
                       RT_EINVAL;
        } else if (s->type == LSET_BOOL) {
            if (v != 0 && v != 1)
                return rt_set_error("%s: setting %s = %g is not 0 or 1", family, s->name, v), RT_EINVAL;
        } else if (s->type == LSET_REAL_OPT && isnan(v)) {
            continue; /* None */
        } else if (!(v >= s->lo && v <= s->hi)) {
            return rt_set_error("%s: setting %s = %g is out of range [%g, %g]", family, s->name, v, s->lo, s->hi),
                   RT_EINVAL;
        }
    }
    return RT_OK;
}

const char *lset_format(const lset_desc *s, const void *cfg, char *buf, size_t cap)
{
    if (!buf || cap == 0) return buf;
    buf[0] = '\0';
    if (!s || !cfg) return buf;
    double v = value_of(cfg, s);
    switch (s->type) {
    case LSET_REAL: snprintf(buf, cap, "%.10g", v); break;
    case LSET_REAL_OPT:
        if (isnan(v)) snprintf(buf, cap, "none");
        else snprintf(buf, cap, "%.10g", v);
        break;
    case LSET_INT: snprintf(buf, cap, "%lld", (long long)*int_at((void *)cfg, s)); break;
    case LSET_BOOL: snprintf(buf, cap, "%d", (int)v); break;
    case LSET_CHOICE: {
        size_t nc = choice_count(s->choices);
        snprintf(buf, cap, "%s", v >= 0 && v < (double)nc ? s->choices[(size_t)v] : "?");
        break;
    }
    case LSET_CUSTOM: break;
    }
    return buf;
}
