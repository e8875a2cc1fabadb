/*
 * test_prefs.c -- JSONL preference datasets (data/prefs.h): each record kind
 * parsed byte-exact, every malformed case with its exact "FILE:LINE: reason"
 * message, skip-and-count, write -> read round trips (atomic replace, no
 * temp file left), a 1,000-record file walked by the resumable sampler, CRLF
 * line endings, a byte-order mark, a last line without newline and a line
 * longer than 64 KiB. Torch-free: the whole binary runs in milliseconds.
 * Files are written into a fresh temporary directory per test.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prefs.h"
#include "shuffle.h"

#define ERRLEN 2048

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static char dir[256];

static void dir_make(void)
{
    snprintf(dir, sizeof dir, "/tmp/rlt_test_prefs_XXXXXX");
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp failed");
}

/* Removes every file in dir, then dir. */
static void dir_remove(void)
{
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Number of entries in dir whose name contains part. */
static int dir_count(const char *part)
{
    DIR *d = opendir(dir);
    int n = 0;
    cr_assert(d != NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;) n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

/* Writes len bytes of text to dir/name; returns a static-lifetime path
 * (one of 8 rotating buffers). */
static const char *put_file(const char *name, const char *text, size_t len)
{
    static char paths[8][600];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 600, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f != NULL, "cannot write %s", p);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
    return p;
}

static const char *put(const char *name, const char *text) { return put_file(name, text, strlen(text)); }

static pref_dataset *load_ok(const char *path, pref_kind kind)
{
    char err[ERRLEN] = "";
    pref_options o = pref_options_default();
    o.kind = kind;
    pref_dataset *d = NULL;
    int rc = pref_load(path, &o, &d, err, sizeof err);
    cr_assert_eq(rc, PREF_OK, "pref_load(%s): %d %s", path, rc, err);
    cr_assert(d != NULL);
    return d;
}

/* The load fails with status and exactly the message "<path>:<line>: <why>"
 * (line 0: "<path>: <why>"). */
static void load_fails(const char *text, pref_kind kind, int status, int line, const char *why)
{
    const char *path = put("bad.jsonl", text);
    char err[ERRLEN] = "", want[ERRLEN];
    pref_options o = pref_options_default();
    o.kind = kind;
    pref_dataset *d = (pref_dataset *)1;
    int rc = pref_load(path, &o, &d, err, sizeof err);
    if (line > 0) snprintf(want, sizeof want, "%s:%d: %s", path, line, why);
    else snprintf(want, sizeof want, "%s: %s", path, why);
    cr_assert_eq(rc, status, "status %d (want %d) for %s: %s", rc, status, text, err);
    cr_assert(d == NULL, "failed load left a dataset");
    cr_assert_str_eq(err, want, "for input:\n%s", text);
}

/* ------------------------------------------------------------------------ */
/* kinds                                                                     */
/* ------------------------------------------------------------------------ */

Test(prefs, kinds_parsed_byte_exact, .init = dir_make, .fini = dir_remove)
{
    /* pairwise: escapes, raw UTF-8, \u escapes with a surrogate pair, extra
     * fields, a blank line and whitespace around the object */
    const char *pw = "{\"prompt\": \"Say \\\"hi\\\"\\n\", \"chosen\": \"h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC\", "
                     "\"rejected\": \"\\u00e9\\ud83d\\ude00\\t\\\\\", \"id\": 7, \"source\": {\"a\": [1]}}\n"
                     "\n"
                     "   {\"chosen\":\"\",\"rejected\":\"r\",\"prompt\":\"second\"}  \n";
    pref_dataset *d = load_ok(put("pw.jsonl", pw), PREF_AUTO);
    cr_assert_eq(pref_dataset_kind(d), PREF_PAIRWISE);
    cr_assert_eq(pref_count(d), 2);
    const pref_record *r = pref_get(d, 0);
    cr_assert_str_eq(r->prompt, "Say \"hi\"\n");
    cr_assert_str_eq(r->chosen, "h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC");
    cr_assert_str_eq(r->rejected, "\xC3\xA9\xF0\x9F\x98\x80\t\\");
    cr_assert_eq(r->line, 1);
    cr_assert(r->completion == NULL && r->completions == NULL && r->n_completions == 0);
    r = pref_get(d, 1);
    cr_assert_str_eq(r->prompt, "second");
    cr_assert_str_eq(r->chosen, "");
    cr_assert_eq(r->line, 3);
    cr_assert(pref_get(d, 2) == NULL);
    pref_stats st = pref_dataset_stats(d);
    cr_assert_eq(st.lines, 3);
    cr_assert_eq(st.blank, 1);
    cr_assert_eq(st.records, 2);
    cr_assert_eq(st.skipped, 0);
    cr_assert_eq(st.completions, 4);
    cr_assert_eq(st.max_completions, 2);
    cr_assert(pref_skip_reason(d, 0) == NULL);
    cr_assert(strstr(pref_dataset_path(d), "pw.jsonl") != NULL);
    pref_free(d);

    /* listwise: integer and real scores */
    const char *lw = "{\"prompt\":\"q\",\"completions\":[\"a\",\"b\",\"c\"],\"scores\":[1,-0.5,2.25e1]}\n"
                     "{\"prompt\":\"q2\",\"completions\":[\"x\",\"y\"],\"scores\":[0.1,0.2]}\n";
    d = load_ok(put("lw.jsonl", lw), PREF_AUTO);
    cr_assert_eq(pref_dataset_kind(d), PREF_LISTWISE);
    r = pref_get(d, 0);
    cr_assert_eq(r->n_completions, 3);
    cr_assert_str_eq(r->completions[2], "c");
    cr_assert(r->scores[0] == 1.0 && r->scores[1] == -0.5 && r->scores[2] == 22.5);
    cr_assert(pref_get(d, 1)->scores[0] == 0.1);
    st = pref_dataset_stats(d);
    cr_assert_eq(st.completions, 5);
    cr_assert_eq(st.max_completions, 3);
    pref_free(d);

    /* unpaired, kind given by the caller */
    const char *up = "{\"prompt\":\"p\",\"completion\":\"good\",\"label\":true}\n"
                     "{\"prompt\":\"p\",\"completion\":\"bad\",\"label\":false}\n"
                     "{\"label\":true,\"completion\":\"\",\"prompt\":\"p3\"}\n";
    d = load_ok(put("up.jsonl", up), PREF_UNPAIRED);
    cr_assert_eq(pref_dataset_kind(d), PREF_UNPAIRED);
    cr_assert_eq(pref_count(d), 3);
    cr_assert_eq(pref_get(d, 0)->label, 1);
    cr_assert_eq(pref_get(d, 1)->label, 0);
    cr_assert_str_eq(pref_get(d, 1)->completion, "bad");
    cr_assert(pref_get(d, 1)->chosen == NULL);
    st = pref_dataset_stats(d);
    cr_assert_eq(st.desirable, 2);
    cr_assert_eq(st.undesirable, 1);
    pref_free(d);

    /* names, defaults, NULL safety */
    cr_assert_str_eq(pref_kind_name(PREF_LISTWISE), "listwise");
    cr_assert(pref_kind_name((pref_kind)9) == NULL);
    cr_assert_eq(pref_kind_from_name("unpaired"), PREF_UNPAIRED);
    cr_assert_eq(pref_kind_from_name("pairs"), -1);
    pref_free(NULL);
    cr_assert_eq(pref_count(NULL), 0);
    cr_assert_eq(pref_fingerprint(NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* malformed lines                                                           */
/* ------------------------------------------------------------------------ */

#define GOOD_PW "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
#define GOOD_LW "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\"],\"scores\":[1,2]}\n"
#define GOOD_UP "{\"prompt\":\"p\",\"completion\":\"c\",\"label\":true}\n"

Test(prefs, malformed_lines, .init = dir_make, .fini = dir_remove)
{
    static const struct {
        const char *text;
        int line;
        const char *why;
    } cases[] = {
        /* JSON itself */
        {GOOD_PW "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\": }\n", 2,
         "invalid JSON at column 40: unexpected token near '}'"},
        {GOOD_PW "\n{\"prompt\":\"p\",\"chosen\":\"a\"\n", 3, "invalid JSON at column 26: '}' expected near end of file"},
        {GOOD_PW "{\"prompt\":\"p\",\"chosen\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}\n", 2,
         "invalid JSON at column 35: duplicate object key near '\"chosen\"'"},
        {GOOD_PW "{\"prompt\":\"p\",\"chosen\":\"a\xFF\",\"rejected\":\"b\"}\n", 2,
         "invalid JSON at column 25: unable to decode byte 0xff near '\"a'"},
        {GOOD_PW "{\"prompt\":\"p\",\"chosen\":\"a\\u0000\",\"rejected\":\"b\"}\n", 2,
         "invalid JSON at column 32: \\u0000 is not allowed without JSON_ALLOW_NUL near '\"a\\u0000\"'"},
        {GOOD_PW "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"} x\n", 2,
         "invalid JSON at column 44: end of file expected near 'x'"},
        /* non-finite numbers, as Python's json.dumps writes them */
        {GOOD_LW "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\"],\"scores\":[1.0,NaN]}\n", 2,
         "non-finite number NaN at column 53 (JSON has no NaN or Infinity; scores must be finite)"},
        {GOOD_LW "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\"],\"scores\":[Infinity,1]}\n", 2,
         "non-finite number Infinity at column 49 (JSON has no NaN or Infinity; scores must be finite)"},
        {GOOD_LW "{\"prompt\":\"NaN\",\"completions\":[\"a\",\"b\"],\"scores\":[1, -Infinity]}\n", 2,
         "non-finite number -Infinity at column 54 (JSON has no NaN or Infinity; scores must be finite)"},
        /* shape of the record */
        {"[\"p\",\"a\",\"b\"]\n", 1, "a record must be a JSON object, got an array"},
        {GOOD_PW "\"just text\"\n", 2, "a record must be a JSON object, got a string"},
        {GOOD_PW "42\n", 2, "a record must be a JSON object, got a number"},
        {GOOD_PW "null\n", 2, "a record must be a JSON object, got null"},
        {"{\"prompt\":\"p\",\"answer\":\"a\"}\n", 1,
         "cannot tell the record kind: expected \"chosen\"/\"rejected\" (pairwise), \"completions\"/\"scores\" "
         "(listwise) or \"completion\"/\"label\" (unpaired)"},
        {"{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\",\"completions\":[\"x\",\"y\"]}\n", 1,
         "record mixes the fields of pairwise (\"chosen\") and listwise (\"completions\")"},
        {"{\"prompt\":\"p\",\"rejected\":\"b\",\"label\":false}\n", 1,
         "record mixes the fields of pairwise (\"rejected\") and unpaired (\"label\")"},
        /* mixed kinds across lines */
        {GOOD_PW "\n" GOOD_UP, 3, "an unpaired record in a pairwise dataset (kind set by line 1)"},
        {GOOD_UP GOOD_LW, 2, "a listwise record in an unpaired dataset (kind set by line 1)"},
        /* missing fields, wrong types, empty prompt */
        {GOOD_PW "{\"prompt\":\"p\",\"chosen\":\"a\"}\n", 2, "missing field \"rejected\""},
        {GOOD_PW "{\"chosen\":\"a\",\"rejected\":\"b\"}\n", 2, "missing field \"prompt\""},
        {GOOD_PW "{\"prompt\":\"p\",\"chosen\":1,\"rejected\":\"b\"}\n", 2,
         "field \"chosen\" must be a string, got a number"},
        {GOOD_PW "{\"prompt\":[{\"role\":\"user\"}],\"chosen\":\"a\",\"rejected\":\"b\"}\n", 2,
         "field \"prompt\" must be a string, got an array"},
        {GOOD_PW "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":null}\n", 2,
         "field \"rejected\" must be a string, got null"},
        {GOOD_PW "{\"prompt\":\"\",\"chosen\":\"a\",\"rejected\":\"b\"}\n", 2, "field \"prompt\" is empty"},
        {GOOD_UP "{\"prompt\":\"p\",\"completion\":\"c\"}\n", 2, "missing field \"label\""},
        {GOOD_UP "{\"prompt\":\"p\",\"completion\":\"c\",\"label\":1}\n", 2,
         "field \"label\" must be true or false, got a number"},
        {GOOD_UP "{\"prompt\":\"p\",\"completion\":\"c\",\"label\":\"true\"}\n", 2,
         "field \"label\" must be true or false, got a string"},
        {GOOD_UP "{\"prompt\":\"p\",\"label\":true}\n", 2, "missing field \"completion\""},
        /* listwise lengths and elements */
        {GOOD_LW "{\"prompt\":\"p\",\"completions\":[\"a\"],\"scores\":[1]}\n", 2,
         "\"completions\" needs at least 2 entries, got 1"},
        {GOOD_LW "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\",\"c\"],\"scores\":[1,2]}\n", 2,
         "\"completions\" has 3 entries but \"scores\" has 2"},
        {GOOD_LW "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\"]}\n", 2, "missing field \"scores\""},
        {GOOD_LW "{\"prompt\":\"p\",\"completions\":\"a\",\"scores\":[1,2]}\n", 2,
         "field \"completions\" must be an array, got a string"},
        {GOOD_LW "{\"prompt\":\"p\",\"completions\":[\"a\",null],\"scores\":[1,2]}\n", 2,
         "completions[1] must be a string, got null"},
        {GOOD_LW "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\"],\"scores\":[1,\"2\"]}\n", 2,
         "scores[1] must be a number, got a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        load_fails(cases[i].text, PREF_AUTO, PREF_ERR_PARSE, cases[i].line, cases[i].why);

    /* the kind given by the caller */
    load_fails(GOOD_PW, PREF_LISTWISE, PREF_ERR_PARSE, 1,
               "a pairwise record in a listwise dataset (kind given by the caller)");
    /* files that hold nothing */
    load_fails("", PREF_AUTO, PREF_ERR_EMPTY, 0, "no records (0 lines)");
    load_fails("\n  \r\n\t\n", PREF_AUTO, PREF_ERR_EMPTY, 0, "no records (3 lines)");
    /* a file that does not exist, an unknown kind */
    char err[ERRLEN], want[ERRLEN], missing[600];
    snprintf(missing, sizeof missing, "%s/absent.jsonl", dir);
    pref_dataset *d = (pref_dataset *)1;
    cr_assert_eq(pref_load(missing, NULL, &d, err, sizeof err), PREF_ERR_IO);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
    cr_assert_str_eq(err, want);
    cr_assert(d == NULL);
    pref_options o = {.kind = (pref_kind)7, .skip_bad = 0};
    cr_assert_eq(pref_load(missing, &o, &d, err, sizeof err), PREF_ERR_ARG);
    cr_assert_eq(pref_load(NULL, NULL, &d, NULL, 0), PREF_ERR_ARG);
}

Test(prefs, skip_and_count, .init = dir_make, .fini = dir_remove)
{
    /* line 1 is bad, so the kind comes from line 2; ten bad lines in all */
    char text[4096] = "";
    strcat(text, "{oops\n");                                                /* 1 bad  */
    strcat(text, GOOD_PW);                                                   /* 2      */
    strcat(text, GOOD_UP);                                                   /* 3 bad  */
    strcat(text, "\n");                                                      /* 4 blank */
    for (int i = 0; i < 8; i++) strcat(text, "{\"prompt\":\"\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"); /* 5-12 */
    strcat(text, "{\"prompt\":\"last\",\"chosen\":\"a\",\"rejected\":\"b\"}"); /* 13, no newline */
    const char *path = put("mixed.jsonl", text);
    char err[ERRLEN] = "";
    pref_options o = {.kind = PREF_AUTO, .skip_bad = 1};
    pref_dataset *d = NULL;
    cr_assert_eq(pref_load(path, &o, &d, err, sizeof err), PREF_OK, "%s", err);
    cr_assert_eq(pref_dataset_kind(d), PREF_PAIRWISE);
    cr_assert_eq(pref_count(d), 2);
    cr_assert_eq(pref_get(d, 0)->line, 2);
    cr_assert_str_eq(pref_get(d, 1)->prompt, "last");
    cr_assert_eq(pref_get(d, 1)->line, 13);
    pref_stats st = pref_dataset_stats(d);
    cr_assert_eq(st.lines, 13);
    cr_assert_eq(st.blank, 1);
    cr_assert_eq(st.skipped, 10);
    cr_assert_eq(st.records, 2);
    char want[ERRLEN];
    snprintf(want, sizeof want, "%s:1: invalid JSON at column 5: string or '}' expected near 'oops'", path);
    cr_assert_str_eq(pref_skip_reason(d, 0), want);
    snprintf(want, sizeof want, "%s:3: an unpaired record in a pairwise dataset (kind set by line 2)", path);
    cr_assert_str_eq(pref_skip_reason(d, 1), want);
    for (int i = 2; i < PREF_MAX_REASONS; i++) {
        snprintf(want, sizeof want, "%s:%d: field \"prompt\" is empty", path, i + 3);
        cr_assert_str_eq(pref_skip_reason(d, (size_t)i), want);
    }
    cr_assert(pref_skip_reason(d, PREF_MAX_REASONS) == NULL, "only the first few reasons are kept");
    pref_free(d);

    /* every line bad: nothing to train on is still an error */
    path = put("allbad.jsonl", "{\"prompt\":\"\",\"chosen\":\"a\",\"rejected\":\"b\"}\n[]\n");
    d = (pref_dataset *)1;
    cr_assert_eq(pref_load(path, &o, &d, err, sizeof err), PREF_ERR_EMPTY);
    snprintf(want, sizeof want, "%s: no records (2 lines, 2 skipped; first: %s:1: field \"prompt\" is empty)", path,
             path);
    cr_assert_str_eq(err, want);
    cr_assert(d == NULL);
}

/* ------------------------------------------------------------------------ */
/* writing                                                                   */
/* ------------------------------------------------------------------------ */

static void same_records(pref_kind kind, const pref_record *a, const pref_record *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(a[i].prompt, b[i].prompt, "record %zu", i);
        if (kind == PREF_PAIRWISE) {
            cr_assert_str_eq(a[i].chosen, b[i].chosen);
            cr_assert_str_eq(a[i].rejected, b[i].rejected);
        } else if (kind == PREF_UNPAIRED) {
            cr_assert_str_eq(a[i].completion, b[i].completion);
            cr_assert_eq(a[i].label, b[i].label);
        } else {
            cr_assert_eq(a[i].n_completions, b[i].n_completions);
            for (size_t k = 0; k < a[i].n_completions; k++) {
                cr_assert_str_eq(a[i].completions[k], b[i].completions[k]);
                cr_assert(memcmp(&a[i].scores[k], &b[i].scores[k], sizeof(double)) == 0,
                          "score %zu of record %zu: %.17g != %.17g", k, i, a[i].scores[k], b[i].scores[k]);
            }
        }
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL);
    static char buf[1 << 16];
    *len = fread(buf, 1, sizeof buf - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

Test(prefs, write_read_round_trip, .init = dir_make, .fini = dir_remove)
{
    char err[ERRLEN] = "", path[600];
    snprintf(path, sizeof path, "%s/out.jsonl", dir);

    /* the exact bytes written */
    pref_record simple = {.prompt = "p", .chosen = "a\"\\\n\x01", .rejected = "\xC3\xA9\xF0\x9F\x98\x80/\x7F"};
    cr_assert_eq(pref_write(path, PREF_PAIRWISE, &simple, 1, err, sizeof err), PREF_OK, "%s", err);
    size_t len;
    cr_assert_str_eq(slurp(path, &len),
                     "{\"prompt\":\"p\",\"chosen\":\"a\\\"\\\\\\n\\u0001\",\"rejected\":\"\xC3\xA9\xF0\x9F\x98\x80/\x7F\"}\n");
    static const char *const cs[] = {"one", "two\ttabs", ""};
    static const double sc[] = {0.1, 3.0, -1e-300};
    pref_record lrec = {.prompt = "q", .n_completions = 3, .completions = cs, .scores = sc};
    cr_assert_eq(pref_write(path, PREF_LISTWISE, &lrec, 1, err, sizeof err), PREF_OK, "%s", err);
    cr_assert_str_eq(slurp(path, &len),
                     "{\"prompt\":\"q\",\"completions\":[\"one\",\"two\\ttabs\",\"\"],\"scores\":[0.1,3.0,-1e-300]}\n");
    pref_record urec = {.prompt = "u", .completion = "c", .label = 0};
    cr_assert_eq(pref_write(path, PREF_UNPAIRED, &urec, 1, err, sizeof err), PREF_OK, "%s", err);
    cr_assert_str_eq(slurp(path, &len), "{\"prompt\":\"u\",\"completion\":\"c\",\"label\":false}\n");

    /* round trips of each kind: the records read back are the records written */
    static const char *const tricky[] = {"plain", "quote \" backslash \\ slash /", "line\nbreak\r\n",
                                         "ctl \x01\x1f del \x7f", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80",
                                         "\xEF\xBB\xBF" "bom inside", " spaces "};
    static const double scores[] = {0.1, -2.5, 3, 1e20, 5e-324, 1.7976931348623157e308, -0.0};
    const size_t nt = sizeof tricky / sizeof tricky[0];
    pref_record pw[7], lw[7], up[7];
    for (size_t i = 0; i < nt; i++) {
        pw[i] = (pref_record){.prompt = tricky[i], .chosen = tricky[(i + 1) % nt], .rejected = tricky[(i + 2) % nt]};
        lw[i] = (pref_record){.prompt = tricky[i], .n_completions = nt - i < 2 ? 2 : nt - i, .completions = tricky,
                              .scores = scores};
        up[i] = (pref_record){.prompt = tricky[i], .completion = tricky[(i + 3) % nt], .label = (int)(i % 2)};
    }
    const pref_record *sets[3] = {pw, lw, up};
    const pref_kind kinds[3] = {PREF_PAIRWISE, PREF_LISTWISE, PREF_UNPAIRED};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(pref_write(path, kinds[k], sets[k], nt, err, sizeof err), PREF_OK, "%s", err);
        pref_dataset *d = load_ok(path, PREF_AUTO);
        cr_assert_eq(pref_dataset_kind(d), kinds[k]);
        cr_assert_eq(pref_count(d), nt);
        same_records(kinds[k], sets[k], pref_records(d), nt);
        /* written again from the loaded records: same bytes, same fingerprint */
        char path2[640];
        snprintf(path2, sizeof path2, "%s/out2.jsonl", dir);
        cr_assert_eq(pref_write(path2, kinds[k], pref_records(d), pref_count(d), err, sizeof err), PREF_OK);
        size_t l1, l2;
        char *a = strdup(slurp(path, &l1));
        char *b = slurp(path2, &l2);
        cr_assert(l1 == l2 && memcmp(a, b, l1) == 0, "rewriting changed the bytes");
        free(a);
        pref_dataset *d2 = load_ok(path2, PREF_AUTO);
        cr_assert_eq(pref_fingerprint(d), pref_fingerprint(d2));
        pref_free(d2);
        pref_free(d);
    }
    cr_assert_eq(dir_count(".tmp."), 0, "a temporary file was left behind");

    /* an invalid record: nothing written, the old file kept */
    pref_record bad[2] = {simple, {.prompt = "", .chosen = "a", .rejected = "b"}};
    cr_assert_eq(pref_write(path, PREF_PAIRWISE, bad, 2, err, sizeof err), PREF_ERR_ARG);
    char want[ERRLEN];
    snprintf(want, sizeof want, "%s: record 1: field \"prompt\" is empty", path);
    cr_assert_str_eq(err, want);
    pref_record bad_utf8 = {.prompt = "p", .chosen = "\xC3\x28", .rejected = "b"};
    cr_assert_eq(pref_write(path, PREF_PAIRWISE, &bad_utf8, 1, err, sizeof err), PREF_ERR_ARG);
    cr_assert(strstr(err, "record 0: field \"chosen\" is not valid UTF-8"), "%s", err);
    static const double nan_scores[] = {1.0, NAN};
    pref_record bad_score = {.prompt = "q", .n_completions = 2, .completions = cs, .scores = nan_scores};
    cr_assert_eq(pref_write(path, PREF_LISTWISE, &bad_score, 1, err, sizeof err), PREF_ERR_ARG);
    cr_assert(strstr(err, "record 0: scores[1] is not finite"), "%s", err);
    pref_record one = {.prompt = "q", .n_completions = 1, .completions = cs, .scores = sc};
    cr_assert_eq(pref_record_check(PREF_LISTWISE, &one, err, sizeof err), PREF_ERR_ARG);
    cr_assert_str_eq(err, "\"completions\" needs at least 2 entries, got 1");
    pref_record lab = {.prompt = "q", .completion = "c", .label = 2};
    cr_assert_eq(pref_record_check(PREF_UNPAIRED, &lab, err, sizeof err), PREF_ERR_ARG);
    cr_assert_eq(pref_write(path, PREF_AUTO, &simple, 1, err, sizeof err), PREF_ERR_ARG);
    pref_dataset *d = load_ok(path, PREF_AUTO);
    cr_assert_eq(pref_dataset_kind(d), PREF_UNPAIRED, "the failed writes replaced the file");
    pref_free(d);
    /* zero records: an empty file (which the loader then calls empty) */
    cr_assert_eq(pref_write(path, PREF_PAIRWISE, NULL, 0, err, sizeof err), PREF_OK, "%s", err);
    cr_assert_eq(slurp(path, &len)[0], '\0');
    /* an unwritable place */
    char nodir[700];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir.jsonl", dir);
    cr_assert_eq(pref_write(nodir, PREF_PAIRWISE, &simple, 1, err, sizeof err), PREF_ERR_IO);
    cr_assert(strstr(err, "cannot create") && strstr(err, "No such file or directory"), "%s", err);
}

/* ------------------------------------------------------------------------ */
/* size, line endings, sampling                                              */
/* ------------------------------------------------------------------------ */

Test(prefs, thousand_records_and_sampler, .init = dir_make, .fini = dir_remove)
{
    enum { N = 1000 };
    static char prompts[N][32], chosen[N][32];
    static pref_record recs[N];
    for (int i = 0; i < N; i++) {
        snprintf(prompts[i], sizeof prompts[i], "prompt %d", i);
        snprintf(chosen[i], sizeof chosen[i], "answer %d \xC3\xA9", i);
        recs[i] = (pref_record){.prompt = prompts[i], .chosen = chosen[i], .rejected = prompts[(i + 7) % N]};
    }
    char err[ERRLEN] = "", path[600];
    snprintf(path, sizeof path, "%s/big.jsonl", dir);
    cr_assert_eq(pref_write(path, PREF_PAIRWISE, recs, N, err, sizeof err), PREF_OK, "%s", err);
    pref_dataset *d = load_ok(path, PREF_PAIRWISE);
    cr_assert_eq(pref_count(d), N);
    same_records(PREF_PAIRWISE, recs, pref_records(d), N);
    cr_assert_eq(pref_get(d, N - 1)->line, N);
    pref_stats st = pref_dataset_stats(d);
    cr_assert_eq(st.lines, N);
    cr_assert_eq(st.completions, 2 * N);

    /* one epoch in batches of 64 covers every record once (SHUF_WRAP) */
    shuf_config c = pref_shuffle_config(d, 1234);
    cr_assert_eq(c.n, N);
    shuf_sampler *s = NULL;
    cr_assert_eq(shuf_sampler_create(&c, &s, err, sizeof err), SHUF_OK, "%s", err);
    static int seen[N];
    int64_t idx[64];
    const pref_record *batch[64];
    int drawn = 0;
    while (drawn + 64 <= N) {
        cr_assert_eq(pref_next_batch(d, s, 64, idx, batch, err, sizeof err), PREF_OK, "%s", err);
        for (int i = 0; i < 64; i++) {
            cr_assert(batch[i] == pref_get(d, (size_t)idx[i]));
            seen[idx[i]]++;
        }
        drawn += 64;
    }
    cr_assert_eq(pref_next_batch(d, s, N - drawn, idx, batch, err, sizeof err), PREF_OK); /* 1000 = 15*64 + 40 */
    for (int i = 0; i < N - drawn; i++) seen[idx[i]]++;
    for (int i = 0; i < N; i++) cr_assert_eq(seen[i], 1, "record %d drawn %d times in one epoch", i, seen[i]);
    cr_assert_eq(shuf_epoch(s), 0);

    /* save the cursor, draw, restore into a fresh sampler: the same batches */
    cr_assert_eq(pref_next_batch(d, s, 10, idx, batch, err, sizeof err), PREF_OK);
    shuf_state saved;
    cr_assert_eq(shuf_get_state(s, &saved, err, sizeof err), SHUF_OK);
    uint64_t fp = pref_fingerprint(d);
    int64_t after[3][64];
    for (int b = 0; b < 3; b++) cr_assert_eq(pref_next_batch(d, s, 64, after[b], batch, err, sizeof err), PREF_OK);
    shuf_sampler *s2 = NULL;
    cr_assert_eq(shuf_sampler_create(&c, &s2, err, sizeof err), SHUF_OK);
    cr_assert_eq(shuf_set_state(s2, &saved, err, sizeof err), SHUF_OK, "%s", err);
    pref_dataset *again = load_ok(path, PREF_AUTO);
    cr_assert_eq(pref_fingerprint(again), fp, "the same file has the same fingerprint");
    for (int b = 0; b < 3; b++) {
        cr_assert_eq(pref_next_batch(again, s2, 64, idx, batch, err, sizeof err), PREF_OK);
        cr_assert(memcmp(idx, after[b], sizeof idx) == 0, "batch %d after resume differs", b);
    }
    shuf_state_free(&saved);
    shuf_sampler_free(s2);

    /* a sampler made for another size, a changed dataset */
    shuf_config other = shuf_config_default(N - 1, 1);
    shuf_sampler *s3 = NULL;
    cr_assert_eq(shuf_sampler_create(&other, &s3, err, sizeof err), SHUF_OK);
    cr_assert_eq(pref_next_batch(d, s3, 4, idx, batch, err, sizeof err), PREF_ERR_MISMATCH);
    cr_assert(strstr(err, "the sampler covers 999 items but the dataset has 1000 records"), "%s", err);
    shuf_sampler_free(s3);
    recs[500].chosen = "changed";
    cr_assert_eq(pref_write(path, PREF_PAIRWISE, recs, N, err, sizeof err), PREF_OK);
    pref_dataset *changed = load_ok(path, PREF_AUTO);
    cr_assert_neq(pref_fingerprint(changed), fp, "one changed string must change the fingerprint");
    pref_free(changed);
    pref_free(again);
    shuf_sampler_free(s);
    pref_free(d);
}

Test(prefs, crlf_bom_no_final_newline_long_lines, .init = dir_make, .fini = dir_remove)
{
    /* CRLF endings, a byte-order mark, a blank CRLF line, no final newline */
    const char *text = "\xEF\xBB\xBF{\"prompt\":\"p1\",\"completion\":\"c1\\r\",\"label\":true}\r\n"
                       "\r\n"
                       "{\"prompt\":\"p2\",\"completion\":\"c2\",\"label\":false}";
    pref_dataset *d = load_ok(put("crlf.jsonl", text), PREF_AUTO);
    cr_assert_eq(pref_count(d), 2);
    cr_assert_str_eq(pref_get(d, 0)->prompt, "p1");
    cr_assert_str_eq(pref_get(d, 0)->completion, "c1\r", "an escaped CR inside a string is data");
    cr_assert_str_eq(pref_get(d, 1)->completion, "c2");
    cr_assert_eq(pref_get(d, 1)->line, 3);
    pref_stats st = pref_dataset_stats(d);
    cr_assert_eq(st.lines, 3);
    cr_assert_eq(st.blank, 1);
    pref_free(d);
    /* a CRLF file with an error reports the right line */
    load_fails(GOOD_PW "\r\n" "{\"prompt\":\"p\",\"chosen\":\"a\"}\r\n", PREF_AUTO, PREF_ERR_PARSE, 3,
               "missing field \"rejected\"");

    /* lines far longer than 64 KiB: a 200,000-byte prompt with multi-byte
     * characters straddling 64 KiB boundaries, twice, plus a short line */
    enum { BIG = 200000 };
    char *prompt = malloc(BIG + 1);
    cr_assert(prompt != NULL);
    for (size_t i = 0; i < BIG;) {
        if (i % 65536 > 65530 && i + 3 <= BIG) { /* a 3-byte character across the boundary */
            memcpy(prompt + i, "\xE2\x82\xAC", 3);
            i += 3;
        } else {
            prompt[i] = (char)('a' + i % 26);
            i++;
        }
    }
    prompt[BIG] = '\0';
    size_t cap = 2 * (size_t)BIG + 256;
    char *file = malloc(cap);
    cr_assert(file != NULL);
    int n = snprintf(file, cap,
                     "{\"prompt\":\"%s\",\"chosen\":\"x\",\"rejected\":\"y\"}\n"
                     "{\"prompt\":\"short\",\"chosen\":\"%s\",\"rejected\":\"y\"}\n"
                     "{\"prompt\":\"end\",\"chosen\":\"x\",\"rejected\":\"y\"}",
                     prompt, prompt);
    cr_assert(n > 0 && (size_t)n < cap);
    d = load_ok(put_file("long.jsonl", file, (size_t)n), PREF_AUTO);
    cr_assert_eq(pref_count(d), 3);
    cr_assert_eq(strlen(pref_get(d, 0)->prompt), BIG);
    cr_assert(strcmp(pref_get(d, 0)->prompt, prompt) == 0, "long prompt not byte-exact");
    cr_assert(strcmp(pref_get(d, 1)->chosen, prompt) == 0, "long chosen not byte-exact");
    cr_assert_str_eq(pref_get(d, 2)->prompt, "end");
    cr_assert_eq(pref_get(d, 2)->line, 3);
    /* and it writes back and reads again */
    char err[ERRLEN], path[600];
    snprintf(path, sizeof path, "%s/long_out.jsonl", dir);
    cr_assert_eq(pref_write(path, PREF_PAIRWISE, pref_records(d), pref_count(d), err, sizeof err), PREF_OK, "%s",
                 err);
    pref_dataset *d2 = load_ok(path, PREF_PAIRWISE);
    cr_assert_eq(pref_fingerprint(d2), pref_fingerprint(d));
    pref_free(d2);
    pref_free(d);
    free(file);
    free(prompt);
}
