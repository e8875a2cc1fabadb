/*
 * test_config.c -- the typed config engine (trainer/config.h) on a test
 * schema with [run] [train] [model]: defaults, precedence, every class of
 * error message, the resolved-INI round trip, --help and the parameter table.
 * Torch-free, so every Test() starts instantly.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* ------------------------------------------------------------------------ */
/* The test schema                                                           */
/* ------------------------------------------------------------------------ */

typedef struct test_cfg {
    char name[32];       /* run.name: at most 31 characters */
    int64_t seed;
    bool deterministic;
    int steps;
    double lr;
    int batch_size;
    int group_size;
    double beta; /* unbounded */
    int act;     /* enum test_act */
    int hidden;
    double dropout;
} test_cfg;

enum test_act { ACT_RELU, ACT_GELU, ACT_TANH };
static const char *const act_choices[] = {"relu", "gelu", "tanh", NULL};

/* Batch arithmetic, the way an algorithm's schema checks it. */
static void test_check(const void *cfgp, cfg_check *ck) {
    const test_cfg *c = cfgp;
    if (c->batch_size % c->group_size == 0) return;
    char valid[512] = "";
    size_t used = 0;
    for (int g = 1; g <= c->batch_size && used < sizeof valid - 16; g++)
        if (c->batch_size % g == 0)
            used += (size_t)snprintf(valid + used, sizeof valid - used, "%s%d", used ? ", " : "", g);
    cfg_check_fail(ck, "train.batch_size", "must be divisible by train.group_size (%d); valid group sizes: %s",
                   c->group_size, valid);
}

static const cfg_field test_fields[] = {
    CFG_STRING(test_cfg, "run", "name", name, "demo", "name of the run"),
    CFG_INT64(test_cfg, "run", "seed", seed, 0, INFINITY, "1", "seed of every generator"),
    CFG_BOOL(test_cfg, "run", "deterministic", deterministic, "true", "use deterministic kernels"),
    CFG_INT(test_cfg, "train", "steps", steps, 1, 1000000, "1000", "optimizer steps"),
    CFG_DOUBLE(test_cfg, "train", "lr", lr, 0, 1, "0.001", "AdamW learning rate"),
    CFG_INT(test_cfg, "train", "batch_size", batch_size, 1, 65536, "64", "prompts per step"),
    CFG_INT(test_cfg, "train", "group_size", group_size, 1, 1024, "8", "completions per prompt"),
    CFG_DOUBLE(test_cfg, "train", "beta", beta, -INFINITY, INFINITY, "0.04", "KL coefficient"),
    CFG_ENUM(test_cfg, "model", "act", act, act_choices, "gelu", "activation function"),
    CFG_INT(test_cfg, "model", "hidden", hidden, 1, 4096, "256", "hidden width"),
    CFG_DOUBLE(test_cfg, "model", "dropout", dropout, 0, 0.9, "0.1", "dropout probability"),
};
static const cfg_schema test_schema = CFG_SCHEMA("test", test_cfg, test_fields, test_check);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

#define ASSERT_HAS(err, needle) \
    cr_assert(strstr((err).text, (needle)) != NULL, "missing '%s' in errors:\n%s", (needle), (err).text)
#define ASSERT_LACKS(err, needle) \
    cr_assert(strstr((err).text, (needle)) == NULL, "unexpected '%s' in errors:\n%s", (needle), (err).text)

/* Writes text to a file of this test binary's build folder; returns its path
 * (static storage, one per name). */
static const char *write_tmp(const char *name, const char *text) {
    static char path[8][512];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 512, "%s/tests/config/%s", RLT_BINARY_DIR, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "cannot create %s", p);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    return p;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Loads INI text through cfg_read_string on top of the defaults. */
static int read_text(test_cfg *c, const char *text, cfg_errors *err) {
    cfg_errors_clear(err);
    cr_assert_eq(cfg_defaults(&test_schema, c, err), CFG_OK, "%s", err->text);
    return cfg_read_string(&test_schema, c, text, "recipe.ini", err);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

Test(config, defaults) {
    test_cfg c, d;
    cfg_errors err;
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_schema_check(&test_schema, &err), CFG_OK, "%s", err.text);
    cr_assert_eq(cfg_defaults(&test_schema, &c, &err), CFG_OK, "%s", err.text);
    cr_assert_str_eq(c.name, "demo");
    cr_assert_eq(c.seed, 1);
    cr_assert_eq(c.deterministic, true);
    cr_assert_eq(c.steps, 1000);
    cr_assert_eq(c.lr, 0.001);
    cr_assert_eq(c.batch_size, 64);
    cr_assert_eq(c.group_size, 8);
    cr_assert_eq(c.beta, 0.04);
    cr_assert_eq(c.act, ACT_GELU);
    cr_assert_eq(c.hidden, 256);
    cr_assert_eq(c.dropout, 0.1);
    /* cfg_load with nothing to read gives the defaults, byte for byte. */
    memset(&d, 0xAB, sizeof d);
    cr_assert_eq(cfg_load(&test_schema, &d, NULL, NULL, 0, &err), CFG_OK, "%s", err.text);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
    cr_assert_eq(err.count, 0);
    /* lookup by full name */
    cr_assert_eq(cfg_lookup(&test_schema, "train.lr"), &test_fields[4]);
    cr_assert_eq(cfg_find(&test_schema, "model", "act"), &test_fields[8]);
    cr_assert_null(cfg_lookup(&test_schema, "train.nope"));
    cr_assert_null(cfg_lookup(&test_schema, "lr"));
}

Test(config, file_overrides_and_set_precedence) {
    const char *path = write_tmp("precedence.ini",
                                 "; a recipe\n"
                                 "[run]\n"
                                 "name = kd-demo\n"
                                 "seed = 42\n"
                                 "\n"
                                 "[train]\n"
                                 "steps = 500   ; inline comment\n"
                                 "lr = 3e-4\n"
                                 "  batch_size = 32\n" /* indented: still a key, not a continuation */
                                 "[model]\n"
                                 "act: tanh\n"
                                 "# another comment\n");
    test_cfg c;
    cfg_errors err;
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_load(&test_schema, &c, path, NULL, 0, &err), CFG_OK, "%s", err.text);
    cr_assert_str_eq(c.name, "kd-demo");
    cr_assert_eq(c.seed, 42);
    cr_assert_eq(c.steps, 500);
    cr_assert_eq(c.lr, 3e-4);
    cr_assert_eq(c.batch_size, 32);
    cr_assert_eq(c.act, ACT_TANH);
    cr_assert_eq(c.hidden, 256); /* untouched: default */

    /* --set beats the file; the last --set of a key wins; blanks are trimmed. */
    const char *sets[] = {"train.steps=7", "model.act = relu", "train.lr=0.5", "train.lr=0.25",
                          "run.deterministic=off"};
    cr_assert_eq(cfg_load(&test_schema, &c, path, sets, 5, &err), CFG_OK, "%s", err.text);
    cr_assert_eq(c.steps, 7);
    cr_assert_eq(c.act, ACT_RELU);
    cr_assert_eq(c.lr, 0.25);
    cr_assert_eq(c.deterministic, false);
    cr_assert_eq(c.seed, 42);

    /* cfg_read_file and cfg_set overlay an existing struct. */
    cr_assert_eq(cfg_defaults(&test_schema, &c, &err), CFG_OK);
    cr_assert_eq(cfg_set(&test_schema, &c, "model.hidden=128", &err), CFG_OK, "%s", err.text);
    cr_assert_eq(cfg_read_file(&test_schema, &c, path, &err), CFG_OK, "%s", err.text);
    cr_assert_eq(c.hidden, 128);
    cr_assert_eq(c.steps, 500);
}

Test(config, unknown_key_suggests_nearest) {
    test_cfg c;
    cfg_errors err;
    cr_assert_eq(read_text(&c, "[train]\nsteps = 10\nlt = 0.1\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:3: unknown key 'train.lt' (did you mean 'train.lr'?)");
    cr_assert_eq(err.count, 1);

    /* a key placed in the wrong section */
    cr_assert_eq(read_text(&c, "[model]\nlr = 0.1\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:2: unknown key 'model.lr' (did you mean 'train.lr'?)");
    /* transposition and a missing letter */
    cr_assert_eq(read_text(&c, "[train]\nbatch_szie = 4\ngroup_sze = 2\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:2: unknown key 'train.batch_szie' (did you mean 'train.batch_size'?)");
    ASSERT_HAS(err, "recipe.ini:3: unknown key 'train.group_sze' (did you mean 'train.group_size'?)");
    /* a key before any section */
    cr_assert_eq(read_text(&c, "steps = 3\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:1: unknown key 'steps' (did you mean 'train.steps'?)");
    /* nothing close: no suggestion */
    cr_assert_eq(read_text(&c, "[train]\nwarmup_ratio = 0.1\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:2: unknown key 'train.warmup_ratio'");
    ASSERT_LACKS(err, "did you mean");

    /* the same from a real file: the message names its path */
    const char *path = write_tmp("unknown.ini", "[train]\n\nlerning_rat = 1\nlt = 0.1\n");
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_load(&test_schema, &c, path, NULL, 0, &err), CFG_EINVAL);
    char want[700];
    snprintf(want, sizeof want, "%s:4: unknown key 'train.lt' (did you mean 'train.lr'?)", path);
    ASSERT_HAS(err, want);
    snprintf(want, sizeof want, "%s:3: unknown key 'train.lerning_rat'", path);
    ASSERT_HAS(err, want);

    /* and from --set */
    const char *sets[] = {"train.lt=0.1", "trian.steps=5", "lr=0.1"};
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_load(&test_schema, &c, NULL, sets, 3, &err), CFG_EINVAL);
    ASSERT_HAS(err, "--set 'train.lt=0.1': unknown key 'train.lt' (did you mean 'train.lr'?)");
    ASSERT_HAS(err, "--set 'trian.steps=5': unknown key 'trian.steps' (did you mean 'train.steps'?)");
    ASSERT_HAS(err, "--set 'lr=0.1': unknown key 'lr' (did you mean 'train.lr'?)");
    cr_assert_eq(err.count, 3);
}

Test(config, unknown_section) {
    test_cfg c;
    cfg_errors err;
    /* the keys of an unknown section are not reported again */
    cr_assert_eq(read_text(&c, "[run]\nseed = 3\n[trian]\nsteps = 5\nlr = 0.1\n[optim]\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:3: unknown section [trian] (did you mean [train]?)");
    ASSERT_HAS(err, "recipe.ini:6: unknown section [optim]\n"); /* nothing close, even with no keys */
    cr_assert_eq(err.count, 2, "%s", err.text);
    /* a known section after an unknown one reads normally */
    cr_assert_eq(read_text(&c, "[bogus]\nx = 1\n[train]\nsteps = 9\n", &err), CFG_EINVAL);
    cr_assert_eq(err.count, 1, "%s", err.text);
    /* a failed read leaves the struct untouched */
    test_cfg d;
    cfg_defaults(&test_schema, &d, &err);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
}

Test(config, bad_type) {
    test_cfg c;
    cfg_errors err;
    cr_assert_eq(read_text(&c,
                           "[run]\n"
                           "deterministic = maybe\n"
                           "seed = 12abc\n"
                           "[train]\n"
                           "steps = 1.5\n"
                           "lr = 1e3x\n"
                           "beta =\n"
                           "batch_size = 1e3\n",
                           &err),
                 CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:2: run.deterministic = 'maybe': expected a boolean (true/false, yes/no, on/off, 1/0)");
    ASSERT_HAS(err, "recipe.ini:3: run.seed = '12abc': expected an integer in [0, 9223372036854775807]");
    ASSERT_HAS(err, "recipe.ini:5: train.steps = '1.5': expected an integer in [1, 1000000]");
    ASSERT_HAS(err, "recipe.ini:6: train.lr = '1e3x': expected a real number in [0, 1]");
    ASSERT_HAS(err, "recipe.ini:7: train.beta = '': expected a real number in [-inf, inf]");
    ASSERT_HAS(err, "recipe.ini:8: train.batch_size = '1e3': expected an integer in [1, 65536]");
    cr_assert_eq(err.count, 6, "%s", err.text);
}

Test(config, strict_values_via_set) {
    struct { const char *set; bool ok; } cases[] = {
        {"train.lr=0.5", true},       {"train.lr=5e-1", true},     {"train.lr=0x1p-2", true},
        {"train.lr=1", true},         {"train.lr=0", true},        {"train.lr=1.0000001", false},
        {"train.lr=-0.1", false},     {"train.lr=nan", false},     {"train.lr=inf", false},
        {"train.lr=", false},         {"train.lr=0.5 0.5", false}, {"train.lr=.", false},
        {"train.beta=inf", true},     {"train.beta=-1e300", true}, {"train.beta=nan", false},
        {"train.beta=1e999", false},  {"train.steps=+5", true},    {"train.steps=0", false},
        {"train.steps=1000000", true}, {"train.steps=1000001", false}, {"train.steps=0x10", false},
        {"train.steps=99999999999999999999", false}, {"train.steps=-3", false},
        {"run.seed=9223372036854775807", true}, {"run.seed=9223372036854775808", false},
        {"run.deterministic=YES", true}, {"run.deterministic=On", true}, {"run.deterministic=0", true},
        {"run.deterministic=2", false}, {"model.act=tanh", true}, {"model.act=TANH", false},
        {"model.dropout=0.9", true},  {"model.dropout=0.95", false}, {"run.name=", true},
        {"run.name=a b c", true},     {"run.name=a ;b", false},    {"run.name=;b", false},
        {"run.name=a;b", true},       {"run.name=0123456789012345678901234567890", true},
        {"run.name=01234567890123456789012345678901", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        test_cfg c;
        cfg_errors err;
        cfg_errors_clear(&err);
        cfg_defaults(&test_schema, &c, &err);
        int rc = cfg_set(&test_schema, &c, cases[i].set, &err);
        cr_assert_eq(rc == CFG_OK, cases[i].ok, "%s: rc %d, errors: %s", cases[i].set, rc, err.text);
        cr_assert_eq(err.count, cases[i].ok ? 0 : 1, "%s: %s", cases[i].set, err.text);
    }
    /* the stored values */
    test_cfg c;
    cfg_errors err;
    cfg_errors_clear(&err);
    cfg_defaults(&test_schema, &c, &err);
    cr_assert_eq(cfg_set(&test_schema, &c, "train.lr=0x1p-2", &err), CFG_OK);
    cr_assert_eq(c.lr, 0.25);
    cr_assert_eq(cfg_set(&test_schema, &c, "run.seed=9223372036854775807", &err), CFG_OK);
    cr_assert_eq(c.seed, INT64_MAX);
    cr_assert_eq(cfg_set(&test_schema, &c, "run.deterministic=no", &err), CFG_OK);
    cr_assert_eq(c.deterministic, false);
    cr_assert_eq(cfg_set(&test_schema, &c, "  run.name =  my run  ", &err), CFG_OK);
    cr_assert_str_eq(c.name, "my run");
    /* malformed --set arguments */
    cr_assert_eq(cfg_set(&test_schema, &c, "train.lr", &err), CFG_EINVAL);
    ASSERT_HAS(err, "--set 'train.lr': expected section.key=value");
    cr_assert_eq(cfg_set(&test_schema, &c, "=3", &err), CFG_EINVAL);
    ASSERT_HAS(err, "--set '=3': missing key before '='");
    cr_assert_eq(cfg_set(&test_schema, &c, "run.name=01234567890123456789012345678901", &err), CFG_EINVAL);
    ASSERT_HAS(err, "run.name = '01234567890123456789012345678901': too long (32 characters), the limit is 31");
    cr_assert_eq(cfg_set(&test_schema, &c, "train.lr=nan", &err), CFG_EINVAL);
    ASSERT_HAS(err, "--set 'train.lr=nan': train.lr = 'nan': NaN is not allowed, expected a real number in [0, 1]");
}

Test(config, out_of_range_names_the_range) {
    test_cfg c;
    cfg_errors err;
    cr_assert_eq(read_text(&c, "[train]\nlr = 2\nsteps = 0\n[model]\ndropout = 0.95\nhidden = 99999\n", &err),
                 CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:2: train.lr = '2': out of range, allowed [0, 1]");
    ASSERT_HAS(err, "recipe.ini:3: train.steps = '0': out of range, allowed [1, 1000000]");
    ASSERT_HAS(err, "recipe.ini:5: model.dropout = '0.95': out of range, allowed [0, 0.9]");
    ASSERT_HAS(err, "recipe.ini:6: model.hidden = '99999': out of range, allowed [1, 4096]");
    cr_assert_eq(err.count, 4);
    /* from --set, the argument is named */
    cfg_errors_clear(&err);
    const char *sets[] = {"train.steps=2000000"};
    cr_assert_eq(cfg_load(&test_schema, &c, NULL, sets, 1, &err), CFG_EINVAL);
    ASSERT_HAS(err, "--set 'train.steps=2000000': train.steps = '2000000': out of range, allowed [1, 1000000]");
}

Test(config, bad_enum_lists_choices) {
    test_cfg c;
    cfg_errors err;
    cr_assert_eq(read_text(&c, "[model]\nact = rellu\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:2: model.act = 'rellu': expected one of: relu, gelu, tanh (did you mean 'relu'?)");
    cr_assert_eq(read_text(&c, "[model]\nact = sigmoid\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:2: model.act = 'sigmoid': expected one of: relu, gelu, tanh\n");
}

Test(config, duplicate_key) {
    test_cfg c;
    cfg_errors err;
    /* also across a re-opened section */
    cr_assert_eq(read_text(&c, "[train]\nlr = 0.1\nsteps = 4\n[model]\nhidden = 8\n[train]\nlr = 0.2\n", &err),
                 CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:7: duplicate key 'train.lr' (first set on line 2)");
    cr_assert_eq(err.count, 1);
}

Test(config, all_errors_of_a_file_at_once) {
    const char *path = write_tmp("many_errors.ini",
                                 "[run]\n"
                                 "seed = -1\n"                  /* 2: range          */
                                 "colour = blue\n"              /* 3: unknown key    */
                                 "this line has no equals\n"    /* 4: syntax         */
                                 "[train\n"                     /* 5: bad header     */
                                 "steps = 5\n"                  /* 6: skipped        */
                                 "[train]\n"
                                 "lr = fast\n"                  /* 8: type           */
                                 "lr = 0.1\n"                   /* 9: duplicate      */
                                 "[model]\n"
                                 "act = swish\n"                /* 11: enum          */
                                 "= 3\n");                      /* 12: empty key     */
    test_cfg c, before;
    cfg_errors err;
    cfg_errors_clear(&err);
    memset(&c, 0x5A, sizeof c);
    before = c;
    const char *sets[] = {"model.hidden=0", "train.nope=1"};
    cr_assert_eq(cfg_load(&test_schema, &c, path, sets, 2, &err), CFG_EINVAL);
    cr_assert_eq(memcmp(&c, &before, sizeof c), 0, "a failed load must leave the struct untouched");
    cr_assert_eq(err.count, 10, "%s", err.text);
    cr_assert_eq(err.dropped, 0);
    cr_assert_eq(count_lines(err.text), 10, "one message per line:\n%s", err.text);
    char want[700];
    snprintf(want, sizeof want, "%s:2: run.seed = '-1': out of range, allowed [0, 9223372036854775807]", path);
    ASSERT_HAS(err, want);
    snprintf(want, sizeof want, "%s:3: unknown key 'run.colour'", path);
    ASSERT_HAS(err, want);
    snprintf(want, sizeof want, "%s:4: expected 'key = value', '[section]' or a comment, got 'this line has no equals'",
             path);
    ASSERT_HAS(err, want);
    snprintf(want, sizeof want, "%s:5: malformed section header '[train' (missing ']')", path);
    ASSERT_HAS(err, want);
    snprintf(want, sizeof want, "%s:8: train.lr = 'fast': expected a real number in [0, 1]", path);
    ASSERT_HAS(err, want);
    snprintf(want, sizeof want, "%s:9: duplicate key 'train.lr' (first set on line 8)", path);
    ASSERT_HAS(err, want);
    snprintf(want, sizeof want, "%s:11: model.act = 'swish': expected one of: relu, gelu, tanh", path);
    ASSERT_HAS(err, want);
    snprintf(want, sizeof want, "%s:12: missing key before '='", path);
    ASSERT_HAS(err, want);
    ASSERT_HAS(err, "--set 'model.hidden=0': model.hidden = '0': out of range, allowed [1, 4096]");
    ASSERT_HAS(err, "--set 'train.nope=1': unknown key 'train.nope'");

    /* the printer prefixes every line */
    FILE *out = tmpfile();
    cr_assert_not_null(out);
    cfg_errors_print(&err, out, "error: ");
    rewind(out);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, out)) {
        cr_assert_eq(strncmp(line, "error: ", 7), 0, "%s", line);
        n++;
    }
    fclose(out);
    cr_assert_eq(n, 10);
}

Test(config, syntax_details) {
    test_cfg c;
    cfg_errors err;
    /* BOM, CRLF line ends, ':' separators, comments of both kinds */
    cr_assert_eq(read_text(&c, "\xEF\xBB\xBF[train]\r\nsteps: 12\r\n# c\r\n; c\r\nlr = 0.5 ; why\r\n", &err), CFG_OK,
                 "%s", err.text);
    cr_assert_eq(c.steps, 12);
    cr_assert_eq(c.lr, 0.5);
    /* a line longer than libinih's buffer is reported, not silently split */
    char text[600];
    snprintf(text, sizeof text, "[run]\nname = %0250d\nseed = 5\n", 0);
    cr_assert_eq(read_text(&c, text, &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:2: line too long (257 characters), the limit is 197");
    cr_assert_eq(err.count, 1, "%s", err.text);
    /* ... but a comment of any length is skipped whole (config.ini writes each key's help as one) */
    snprintf(text, sizeof text, "[train]\n; %0300d\nsteps = 7\n", 0);
    cr_assert_eq(read_text(&c, text, &err), CFG_OK, "%s", err.text);
    cr_assert_eq(c.steps, 7);
    /* text after a section header */
    cr_assert_eq(read_text(&c, "[train] steps = 3\n", &err), CFG_EINVAL);
    ASSERT_HAS(err, "recipe.ini:1: unexpected text 'steps = 3' after section header");
    /* a header with an inline comment is fine */
    cr_assert_eq(read_text(&c, "[train] ; the optimizer\nsteps = 3\n", &err), CFG_OK, "%s", err.text);
    cr_assert_eq(c.steps, 3);
    /* an empty file is the defaults */
    cr_assert_eq(read_text(&c, "", &err), CFG_OK);
    cr_assert_eq(c.steps, 1000);
}

Test(config, cross_field_check) {
    test_cfg c;
    cfg_errors err;
    cfg_errors_clear(&err);
    const char *path = write_tmp("batch.ini", "[train]\nbatch_size = 100\n");
    cr_assert_eq(cfg_load(&test_schema, &c, path, NULL, 0, &err), CFG_EINVAL);
    char want[700];
    snprintf(want, sizeof want,
             "%s:2: train.batch_size = 100: must be divisible by train.group_size (8); "
             "valid group sizes: 1, 2, 4, 5, 10, 20, 25, 50, 100",
             path);
    ASSERT_HAS(err, want);
    cr_assert_eq(err.count, 1);
    /* the value came from --set */
    const char *sets[] = {"train.batch_size=12"};
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_load(&test_schema, &c, NULL, sets, 1, &err), CFG_EINVAL);
    ASSERT_HAS(err, "--set 'train.batch_size=12': train.batch_size = 12: must be divisible by train.group_size (8); "
                    "valid group sizes: 1, 2, 3, 4, 6, 12");
    /* the default is the culprit */
    const char *sets2[] = {"train.group_size=5"};
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_load(&test_schema, &c, NULL, sets2, 1, &err), CFG_EINVAL);
    ASSERT_HAS(err, "train.batch_size = 64 (default): must be divisible by train.group_size (5)");
    /* fixed: loads */
    const char *sets3[] = {"train.group_size=4", "train.batch_size=100"};
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_load(&test_schema, &c, path, sets3, 2, &err), CFG_OK, "%s", err.text);
    cr_assert_eq(c.batch_size, 100);
    /* cfg_validate runs the same check on a struct filled by hand, and checks each field */
    c.group_size = 3;
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_validate(&test_schema, &c, &err), CFG_EINVAL);
    ASSERT_HAS(err, "train.batch_size = 100: must be divisible by train.group_size (3)");
    c.group_size = 4;
    c.act = 7;
    c.lr = NAN;
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_validate(&test_schema, &c, &err), CFG_EINVAL);
    ASSERT_HAS(err, "model.act: enum index 7 is not a valid choice");
    ASSERT_HAS(err, "train.lr = 'nan': NaN is not allowed");
    cr_assert_eq(err.count, 2, "%s", err.text);
}

Test(config, resolved_round_trip) {
    const char *path = write_tmp("roundtrip.ini", "[run]\nname = a;b run-1\nseed = 123456789012345\n"
                                                  "[train]\nlr = 0.1\nbeta = -0.0\n");
    const char *sets[] = {"model.dropout=0.30000000000000004", "train.steps=77", "model.act=tanh",
                          "run.deterministic=false", "train.batch_size=96", "model.hidden=4096"};
    test_cfg a, b;
    cfg_errors err;
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_load(&test_schema, &a, path, sets, 6, &err), CFG_OK, "%s", err.text);
    cr_assert(signbit(a.beta) && a.beta == 0.0);
    char *ini = cfg_to_ini(&test_schema, &a);
    cr_assert_not_null(ini);
    /* every key, with its help as a comment above it */
    cr_assert_not_null(strstr(ini, "[run]\n; name of the run (string of at most 31 characters; default 'demo')\n"
                                   "name = a;b run-1\n"), "%s", ini);
    cr_assert_not_null(strstr(ini, "; AdamW learning rate (double in [0, 1]; default 0.001)\nlr = 0.1\n"), "%s", ini);
    cr_assert_not_null(strstr(ini, "dropout = 0.30000000000000004\n"), "%s", ini);
    cr_assert_not_null(strstr(ini, "beta = -0\n"), "%s", ini);
    cr_assert_not_null(strstr(ini, "; activation function (one of: relu, gelu, tanh; default gelu)\nact = tanh\n"),
                       "%s", ini);
    for (size_t i = 0; i < test_schema.nfields; i++) {
        char line[128];
        snprintf(line, sizeof line, "\n%s = ", test_fields[i].key);
        cr_assert_not_null(strstr(ini, line), "missing %s in\n%s", line, ini);
    }
    /* read back into defaults: identical */
    cfg_defaults(&test_schema, &b, &err);
    cr_assert_eq(cfg_read_string(&test_schema, &b, ini, "resolved", &err), CFG_OK, "%s\n%s", err.text, ini);
    cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
    cr_assert_eq(cfg_diff(&test_schema, &a, &b, NULL), 0);
    free(ini);

    /* through a file, with cfg_load */
    char out[512];
    snprintf(out, sizeof out, "%s/tests/config/resolved.ini", RLT_BINARY_DIR);
    cr_assert_eq(cfg_write_file(&test_schema, &a, out, &err), CFG_OK, "%s", err.text);
    memset(&b, 0, sizeof b);
    cr_assert_eq(cfg_load(&test_schema, &b, out, NULL, 0, &err), CFG_OK, "%s", err.text);
    cr_assert_eq(memcmp(&a, &b, sizeof a), 0);

    /* awkward doubles survive too */
    double vals[] = {1e-300, 3.141592653589793, -2.5e17, 5e-324, 1.7976931348623157e308, INFINITY, -INFINITY,
                     100, 1e15, 1e16, 123456.5, 0.1 + 0.2, -1e-5};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        a.beta = vals[i];
        ini = cfg_to_ini(&test_schema, &a);
        cr_assert_not_null(ini);
        cfg_defaults(&test_schema, &b, &err);
        cr_assert_eq(cfg_read_string(&test_schema, &b, ini, "resolved", &err), CFG_OK, "%s", err.text);
        cr_assert_eq(memcmp(&a.beta, &b.beta, sizeof a.beta), 0, "beta %.17g read back as %.17g", a.beta, b.beta);
        free(ini);
    }

    /* doubles print in their shortest exact form, integers without an exponent */
    struct { double v; const char *text; } shown[] = {
        {100, "100"}, {1e15, "1000000000000000"}, {1e16, "1e+16"}, {0.1 + 0.2, "0.30000000000000004"},
        {3e-4, "0.0003"}, {-1e-5, "-1e-05"}, {-INFINITY, "-inf"}, {2.5, "2.5"}};
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        char buf[CFG_VALUE_MAX];
        a.beta = shown[i].v;
        cr_assert_gt(cfg_format_value(cfg_lookup(&test_schema, "train.beta"), &a, buf, sizeof buf), 0);
        cr_assert_str_eq(buf, shown[i].text);
    }
    a.beta = b.beta;

    /* cfg_diff names what differs */
    b.lr = 0.002;
    b.act = ACT_RELU;
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_diff(&test_schema, &a, &b, &err), 2);
    ASSERT_HAS(err, "train.lr: 0.1 -> 0.002");
    ASSERT_HAS(err, "model.act: tanh -> relu");

    /* an invalid struct is refused, not written */
    a.act = -1;
    cr_assert_null(cfg_to_ini(&test_schema, &a));
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_write_file(&test_schema, &a, out, &err), CFG_EINVAL);
    ASSERT_HAS(err, "model.act: enum index -1 is not a valid choice");
}

Test(config, help_and_table) {
    char *help = cfg_help(&test_schema);
    cr_assert_not_null(help);
    for (size_t i = 0; i < test_schema.nfields; i++) {
        const cfg_field *f = &test_fields[i];
        char want[256];
        snprintf(want, sizeof want, "  %s.%s (", f->section, f->key);
        cr_assert_not_null(strstr(help, want), "help lacks '%s':\n%s", want, help);
        snprintf(want, sizeof want, "default %s%s%s)\n      %s\n", f->type == CFG_STRING_T ? "'" : "", f->def,
                 f->type == CFG_STRING_T ? "'" : "", f->help);
        cr_assert_not_null(strstr(help, want), "help lacks '%s':\n%s", want, help);
    }
    cr_assert_not_null(strstr(help, "  train.lr (double in [0, 1]; default 0.001)\n      AdamW learning rate\n"), "%s",
                       help);
    cr_assert_not_null(strstr(help, "  model.act (one of: relu, gelu, tanh; default gelu)\n"), "%s", help);
    cr_assert_not_null(strstr(help, "  run.seed (int64 in [0, 9223372036854775807]; default 1)\n"), "%s", help);
    cr_assert_not_null(strstr(help, "  train.beta (double in [-inf, inf]; default 0.04)\n"), "%s", help);
    cr_assert_not_null(strstr(help, "\n[train]\n"), "%s", help);
    free(help);

    test_cfg c;
    cfg_errors err;
    cfg_errors_clear(&err);
    cfg_defaults(&test_schema, &c, &err);
    char *table = cfg_table(&test_schema, &c);
    cr_assert_not_null(table);
    const char *want_head = "+-------------------+-------+\n"
                            "| Parameter         | Value |\n"
                            "+-------------------+-------+\n"
                            "| run.name          | demo  |\n"
                            "| run.seed          | 1     |\n"
                            "| run.deterministic | true  |\n";
    cr_assert_eq(strncmp(table, want_head, strlen(want_head)), 0, "%s", table);
    cr_assert_not_null(strstr(table, "| train.lr          | 0.001 |\n"), "%s", table);
    cr_assert_not_null(strstr(table, "| model.act         | gelu  |\n"), "%s", table);
    cr_assert(strlen(table) > 30 && strcmp(table + strlen(table) - 30, "+-------------------+-------+\n") == 0, "%s",
              table);
    cr_assert_eq(count_lines(table), (int)test_schema.nfields + 4);
    free(table);
}

Test(config, missing_file) {
    test_cfg c;
    cfg_errors err;
    cfg_errors_clear(&err);
    const char *path = RLT_BINARY_DIR "/tests/config/does-not-exist.ini";
    cr_assert_eq(cfg_load(&test_schema, &c, path, NULL, 0, &err), CFG_EIO);
    char want[700];
    snprintf(want, sizeof want, "cannot open config file '%s': No such file or directory", path);
    ASSERT_HAS(err, want);
    /* a directory is not a config file either */
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_read_file(&test_schema, &c, RLT_BINARY_DIR, &err), CFG_EIO);
    ASSERT_HAS(err, "Is a directory");
    /* writing into a missing directory reports the path and the reason */
    cfg_defaults(&test_schema, &c, &err);
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_write_file(&test_schema, &c, RLT_BINARY_DIR "/no/such/dir/config.ini", &err), CFG_EIO);
    ASSERT_HAS(err, "/no/such/dir/config.ini.tmp': No such file or directory");
}

/* A schema with top-level keys, as `rlt loss NAME --set k=v` uses. */
typedef struct loss_cfg {
    int kind;
    double temperature;
    int k;
} loss_cfg;
static const char *const kind_choices[] = {"hinton", "topk", NULL};
static const cfg_field loss_fields[] = {
    CFG_ENUM(loss_cfg, "", "kind", kind, kind_choices, "hinton", "which KD loss"),
    CFG_DOUBLE(loss_cfg, "", "temperature", temperature, 1e-3, 100, "4.0", "softmax temperature"),
    CFG_INT(loss_cfg, "topk", "k", k, 1, 1000, "8", "kept teacher logits"),
};
static const cfg_schema loss_schema = CFG_SCHEMA("kd", loss_cfg, loss_fields, NULL);

Test(config, top_level_keys) {
    loss_cfg a, b;
    cfg_errors err;
    cfg_errors_clear(&err);
    const char *sets[] = {"kind=topk", "temperature=2.5", "topk.k=3"};
    cr_assert_eq(cfg_load(&loss_schema, &a, NULL, sets, 3, &err), CFG_OK, "%s", err.text);
    cr_assert_eq(a.kind, 1);
    cr_assert_eq(a.temperature, 2.5);
    cr_assert_eq(a.k, 3);
    char *ini = cfg_to_ini(&loss_schema, &a);
    cr_assert_not_null(ini);
    /* top-level keys come before the first header */
    char *kind = strstr(ini, "\nkind = topk\n"), *header = strstr(ini, "\n[topk]\n");
    cr_assert(kind && header && kind < header, "%s", ini);
    cfg_defaults(&loss_schema, &b, &err);
    cr_assert_eq(cfg_read_string(&loss_schema, &b, ini, "resolved", &err), CFG_OK, "%s", err.text);
    cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
    free(ini);
    /* help lists top-level keys first and shows defaults in canonical form ("4.0" -> "4") */
    char *help = cfg_help(&loss_schema);
    cr_assert_not_null(help);
    cr_assert_not_null(strstr(help, "\n(top level)\n"
                                    "  kind (one of: hinton, topk; default hinton)\n      which KD loss\n"
                                    "  temperature (double in [0.001, 100]; default 4)\n"),
                       "%s", help);
    cr_assert_not_null(strstr(help, "\n[topk]\n  topk.k (int in [1, 1000]; default 8)\n"), "%s", help);
    free(help);
    const char *bad[] = {"temprature=2"};
    cr_assert_eq(cfg_load(&loss_schema, &a, NULL, bad, 1, &err), CFG_EINVAL);
    ASSERT_HAS(err, "--set 'temprature=2': unknown key 'temprature' (did you mean 'temperature'?)");
}

/* Broken tables are caught before they can read anything. */
typedef struct broken_cfg {
    int a;
    double b;
    int c;
} broken_cfg;
static const char *const no_choices[] = {NULL};
static const cfg_field broken_fields[] = {
    CFG_INT(broken_cfg, "x", "a", a, 0, 10, "11", "default out of range"),
    CFG_INT(broken_cfg, "x", "a", a, 0, 10, "1", "declared twice"),
    CFG_DOUBLE(broken_cfg, "x", "b", b, 1, 0, "0.5", "empty bounds"),
    CFG_ENUM(broken_cfg, "x", "c", c, no_choices, "q", "no choices"),
    CFG_INT(broken_cfg, "bad section", "d", a, 0, 1, "0", "bad name"),
    CFG_INT(broken_cfg, "y", "e", c, 0, 1, "0", "two\nlines"),
};
static const cfg_schema broken_schema = CFG_SCHEMA("broken", broken_cfg, broken_fields, NULL);

Test(config, schema_check) {
    broken_cfg c;
    cfg_errors err;
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_schema_check(&broken_schema, &err), CFG_ESCHEMA);
    ASSERT_HAS(err, "schema broken: default of 'x.a' = '11': out of range, allowed [0, 10]");
    ASSERT_HAS(err, "schema broken: 'x.a' is declared twice (fields 0 and 1)");
    ASSERT_HAS(err, "schema broken: 'x.b' has empty bounds [1, 0]");
    ASSERT_HAS(err, "schema broken: enum 'x.c' has no choices");
    ASSERT_HAS(err, "schema broken: invalid name 'bad section.d'");
    ASSERT_HAS(err, "schema broken: the help of 'y.e' must be one line");
    cr_assert_eq(err.count, 6, "%s", err.text);
    cr_assert_null(cfg_help(&broken_schema));
    cfg_errors_clear(&err);
    cr_assert_eq(cfg_load(&broken_schema, &c, NULL, NULL, 0, &err), CFG_ESCHEMA);
    cr_assert_eq(cfg_defaults(&broken_schema, &c, &err), CFG_ESCHEMA);
}

Test(config, error_list_overflow) {
    /* 400 unknown keys: the list keeps what fits, counts the rest */
    size_t cap = 400 * 40 + 16;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    size_t used = (size_t)snprintf(text, cap, "[train]\n");
    for (int i = 0; i < 400; i++) used += (size_t)snprintf(text + used, cap - used, "unknown_%03d = 1\n", i);
    test_cfg c;
    cfg_errors err;
    cr_assert_eq(read_text(&c, text, &err), CFG_EINVAL);
    free(text);
    cr_assert_eq(err.count, 400);
    cr_assert_gt(err.dropped, 0);
    cr_assert_eq(count_lines(err.text), 400 - err.dropped);
    cr_assert_lt(err.len, sizeof err.text);
    FILE *out = tmpfile();
    cr_assert_not_null(out);
    cfg_errors_print(&err, out, NULL);
    rewind(out);
    char line[256], last[256] = "";
    while (fgets(line, sizeof line, out)) strcpy(last, line);
    fclose(out);
    char want[64];
    snprintf(want, sizeof want, "(%d more errors not shown)\n", err.dropped);
    cr_assert_str_eq(last, want);
}
