/*
 * test_text_tasks.c -- Criterion tests for the text-task plugins of envs/
 * (arithmetic, countdown, reverse, sort), loaded from the build's plugin
 * folder through rollout/envl.h exactly as a trainer loads them, and for the
 * loader's text-task error paths (the broken plugins of
 * plugin_text_broken.c in TEST_TEXT_PLUGIN_DIR). Torch-free.
 *
 * For every task and several configs: items are a pure function of (config,
 * seed) and differ across seeds; over 2,000 seeds every prompt and
 * demonstration fits limits(), uses only alphabet characters (and the think
 * strings), tokenizes with a char tokenizer over the alphabet and decodes
 * back unchanged, and the demonstration scores 1.0. Then hand-written
 * completions with their exact scores, prompts the task cannot parse,
 * config errors, and random bytes as completions.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envl.h"
#include "tokenizer.h"

#ifndef RLT_ENV_PLUGIN_DIR
#error "RLT_ENV_PLUGIN_DIR must name the build's plugin folder"
#endif
#ifndef TEST_TEXT_PLUGIN_DIR
#error "TEST_TEXT_PLUGIN_DIR must name the folder of the broken text plugins"
#endif

#define SEEDS 2000

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct task {
    envl_text *p;
    env_text_task *t;
} task;

static envl_text *open_plugin(const char *name) {
    char path[1024], err[2048] = "";
    snprintf(path, sizeof path, "%s/%s.so", RLT_ENV_PLUGIN_DIR, name);
    envl_text *p = NULL;
    cr_assert_eq(envl_open_text_file(path, &p, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(p->vt->name, name);
    cr_assert_eq(p->vt->abi_major, ENV_ABI_MAJOR);
    cr_assert_geq(p->vt->abi_minor, 1);
    cr_assert_eq(p->vt->struct_size, sizeof(env_text_plugin));
    return p;
}

static task open_task(const char *name, const char *config) {
    task k = {open_plugin(name), NULL};
    char err[2048] = "";
    cr_assert_eq(envl_text_create(k.p, config, &k.t, err, sizeof err), 0, "%s", err);
    return k;
}

static void close_task(task k) {
    k.p->vt->destroy(k.t);
    envl_close_text(k.p);
}

static double score(task k, const char *prompt, const char *completion) {
    double r = -1;
    int rc = k.p->vt->score(k.t, prompt, completion, &r);
    cr_assert_eq(rc, ENV_OK, "%s: score(\"%s\", \"%s\"): %s", k.p->vt->name, prompt, completion,
                 k.p->vt->last_error(k.t));
    return r;
}

/* score(prompt, completion) == want, exactly. */
#define EXPECT_SCORE(k, prompt, completion, want)                                                             \
    do {                                                                                                    \
        double got_ = score(k, prompt, completion);                                                         \
        cr_assert(got_ == (want), "%s: \"%s\" -> \"%s\" scores %g, want %g", (k).p->vt->name, prompt,        \
                  completion, got_, (double)(want));                                                        \
    } while (0)

/* The prompt cannot be parsed: ENV_EINVAL and a message quoting it. */
static void expect_bad_prompt(task k, const char *prompt) {
    double r = -1;
    cr_assert_eq(k.p->vt->score(k.t, prompt, "1", &r), ENV_EINVAL, "%s accepted the prompt \"%s\"",
                 k.p->vt->name, prompt);
    const char *why = k.p->vt->last_error(k.t);
    cr_assert_not_null(strstr(why, "cannot parse the prompt"), "%s", why);
    cr_assert_not_null(strstr(why, k.p->vt->name), "%s", why);
}

/* create(config) fails with `reason` in the message. */
static void expect_bad_config(const char *name, const char *config, const char *reason) {
    envl_text *p = open_plugin(name);
    env_text_task *t = (env_text_task *)1;
    char err[2048] = "";
    cr_assert_lt(envl_text_create(p, config, &t, err, sizeof err), 0, "%s accepted \"%s\"", name, config);
    cr_assert_null(t);
    cr_assert_not_null(strstr(err, reason), "%s \"%s\": %s", name, config, err);
    cr_assert_not_null(strstr(err, config), "the message quotes the config: %s", err);
    envl_close_text(p);
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Only alphabet characters besides the think strings. */
static void expect_alphabet(const char *alphabet, const char *s, const char *what, uint64_t seed) {
    for (size_t i = 0; s[i];) {
        if (!strncmp(s + i, ENV_THINK_BEGIN, strlen(ENV_THINK_BEGIN))) {
            i += strlen(ENV_THINK_BEGIN);
        } else if (!strncmp(s + i, ENV_THINK_END, strlen(ENV_THINK_END))) {
            i += strlen(ENV_THINK_END);
        } else {
            cr_assert_not_null(strchr(alphabet, s[i]), "seed %llu: %s \"%s\" has '%c' outside \"%s\"",
                               (unsigned long long)seed, what, s, s[i], alphabet);
            i++;
        }
    }
}

/* The properties every task has, over SEEDS items of `config`: returns the
 * longest prompt and demonstration seen, and checks the rest (see the top).
 * demo_maxed / prompt_maxed: whether some item reached the limit. */
static void check_items(const char *name, const char *config, int *prompt_maxed, int *demo_maxed) {
    task k = open_task(name, config);
    task k2 = open_task(name, config); /* a second handle: same items */
    uint32_t mp = 0, md = 0;
    char err[2048] = "";
    cr_assert_eq(envl_text_limits(k.p, k.t, &mp, &md, err, sizeof err), 0, "%s", err);
    cr_assert_gt(mp, 0);
    cr_assert_gt(md, 0);
    tok_tokenizer *tok = NULL;
    cr_assert_eq(tok_new_chars(k.p->vt->alphabet, &tok, err, sizeof err), TOK_OK, "%s: %s", name, err);
    char *prompt = malloc(mp + 1), *demo = malloc(md + 1), *p2 = malloc(mp + 1), *d2 = malloc(md + 1);
    char *round = malloc(md + 1);
    int64_t *ids = malloc(sizeof(int64_t) * (md + 1));
    cr_assert(prompt && demo && p2 && d2 && round && ids);
    uint32_t longest_p = 0, longest_d = 0;
    char first[256] = "";
    int distinct = 0;
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        /* buffers of exactly the announced limits (plus the NUL) */
        cr_assert_eq(envl_text_sample(k.p, k.t, seed, prompt, mp + 1, demo, md + 1, err, sizeof err), 0,
                     "%s [%s] seed %llu: %s", name, config, (unsigned long long)seed, err);
        cr_assert_eq(k2.p->vt->sample(k2.t, seed, p2, mp + 1, d2, md + 1), ENV_OK);
        cr_assert_str_eq(prompt, p2, "seed %llu: not a pure function of (config, seed)", (unsigned long long)seed);
        cr_assert_str_eq(demo, d2);
        cr_assert_eq(k.p->vt->sample(k.t, seed, p2, mp + 1, d2, md + 1), ENV_OK);
        cr_assert_str_eq(prompt, p2, "seed %llu: a second call differs", (unsigned long long)seed);
        uint32_t lp = (uint32_t)strlen(prompt), ld = (uint32_t)strlen(demo);
        cr_assert_gt(lp, 0);
        cr_assert_leq(lp, mp);
        cr_assert_leq(ld, md);
        longest_p = lp > longest_p ? lp : longest_p;
        longest_d = ld > longest_d ? ld : longest_d;
        cr_assert_eq(strncmp(demo, ENV_THINK_BEGIN, strlen(ENV_THINK_BEGIN)), 0, "demo \"%s\"", demo);
        cr_assert_not_null(strstr(demo, ENV_THINK_END), "demo \"%s\"", demo);
        expect_alphabet(k.p->vt->alphabet, prompt, "prompt", seed);
        expect_alphabet(k.p->vt->alphabet, demo, "demo", seed);
        /* the prompt ends in '=' for every task (where the answer starts) */
        cr_assert_eq(prompt[lp - 1], '=', "prompt \"%s\"", prompt);

        /* tokenizer over the alphabet: round trip */
        int64_t n = tok_encode(tok, demo, ids, md + 1);
        cr_assert_geq(n, 0, "%s", tok_last_error(tok));
        cr_assert_eq(tok_decode(tok, ids, n, round, md + 1), (int64_t)ld, "%s", tok_last_error(tok));
        cr_assert_str_eq(round, demo);

        double r = -1;
        cr_assert_eq(envl_text_score(k.p, k.t, prompt, demo, &r, err, sizeof err), 0, "%s", err);
        cr_assert(r == 1.0, "%s [%s] seed %llu: demo \"%s\" for \"%s\" scores %g", name, config,
                  (unsigned long long)seed, demo, prompt, r);
        if (seed == 0) snprintf(first, sizeof first, "%s", prompt);
        else if (seed < 100 && strcmp(first, prompt) != 0) distinct++;
    }
    cr_assert_gt(distinct, 50, "%s [%s]: only %d of 99 seeds differ from seed 0", name, config, distinct);
    *prompt_maxed = longest_p == mp;
    *demo_maxed = longest_d == md;

    /* one byte short of the item: ENV_EINVAL saying what it needs */
    size_t need = strlen(prompt) + 1;
    cr_assert_eq(k.p->vt->sample(k.t, SEEDS - 1, prompt, need - 1, demo, md + 1), ENV_EINVAL);
    cr_assert_not_null(strstr(k.p->vt->last_error(k.t), "too small"), "%s", k.p->vt->last_error(k.t));
    char want[64];
    snprintf(want, sizeof want, "(needs %zu)", need);
    cr_assert_not_null(strstr(k.p->vt->last_error(k.t), want), "%s", k.p->vt->last_error(k.t));
    cr_assert_str_eq(prompt, "", "no half-written prompt");
    cr_assert_eq(k.p->vt->sample(k.t, 0, NULL, 8, demo, md + 1), ENV_EINVAL);
    cr_assert_eq(k.p->vt->sample(NULL, 0, prompt, mp + 1, demo, md + 1), ENV_EINVAL);
    double r;
    cr_assert_eq(k.p->vt->score(k.t, "1", NULL, &r), ENV_EINVAL);
    cr_assert_eq(k.p->vt->score(k.t, NULL, "1", &r), ENV_EINVAL);
    cr_assert_eq(k.p->vt->score(k.t, "1", "1", NULL), ENV_EINVAL);
    cr_assert_eq(k.p->vt->limits(NULL, &mp, &md), ENV_EINVAL);
    cr_assert_not_null(k.p->vt->last_error(NULL));
    k.p->vt->destroy(NULL);

    free(prompt);
    free(demo);
    free(p2);
    free(d2);
    free(round);
    free(ids);
    tok_free(tok);
    close_task(k2);
    close_task(k);
}

/* Random completions (bytes, and alphabet soup with think strings) never
 * crash and score one of the allowed values; damaged prompts are parsed or
 * refused with ENV_EINVAL. */
static void check_garbage(const char *name, const char *config, const double *allowed, int nallowed) {
    task k = open_task(name, config);
    uint32_t mp, md;
    cr_assert_eq(k.p->vt->limits(k.t, &mp, &md), ENV_OK);
    char *prompt = malloc(mp + 1), *demo = malloc(md + 1);
    uint64_t x = 99;
    const char *alphabet = k.p->vt->alphabet;
    for (int trial = 0; trial < 2000; trial++) {
        cr_assert_eq(k.p->vt->sample(k.t, (uint64_t)trial, prompt, mp + 1, demo, md + 1), ENV_OK);
        char c[200];
        size_t len = 0, n = splitmix(&x) % 64;
        int soup = trial % 2;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = splitmix(&x);
            if (soup && r % 11 == 0) {
                const char *s = r % 2 ? ENV_THINK_END : ENV_THINK_BEGIN;
                memcpy(c + len, s, strlen(s));
                len += strlen(s);
            } else if (soup) {
                c[len++] = alphabet[(r >> 8) % strlen(alphabet)];
            } else {
                c[len++] = (char)(1 + (r >> 8) % 255); /* any byte but NUL */
            }
        }
        c[len] = '\0';
        double s = score(k, prompt, c);
        int ok = 0;
        for (int i = 0; i < nallowed; i++) ok |= s == allowed[i];
        cr_assert(ok, "%s: completion of %zu bytes scores %g", name, len, s);

        /* prompts: one character of a real prompt replaced (by an alphabet
         * character or any byte), or cut short: parsed or refused, never
         * anything else */
        char bad[256];
        snprintf(bad, sizeof bad, "%s", prompt);
        size_t plen = strlen(bad);
        uint64_t r = splitmix(&x);
        if (r % 3 == 2)
            bad[r % plen] = '\0';
        else
            bad[r % plen] = r % 3 ? alphabet[(r >> 8) % strlen(alphabet)] : (char)(1 + (r >> 8) % 255);
        double rs = -1;
        int rc = k.p->vt->score(k.t, bad, c, &rs);
        cr_assert(rc == ENV_OK || rc == ENV_EINVAL, "%s: score(\"%s\") returned %d", name, bad, rc);
        if (rc == ENV_OK) {
            ok = 0;
            for (int i = 0; i < nallowed; i++) ok |= rs == allowed[i];
            cr_assert(ok, "%s: prompt \"%s\" scores %g", name, bad, rs);
        } else {
            cr_assert_not_null(strstr(k.p->vt->last_error(k.t), "cannot parse the prompt"), "%s",
                               k.p->vt->last_error(k.t));
        }
    }
    free(prompt);
    free(demo);
    close_task(k);
}

/* ------------------------------------------------------------------------ */
/* arithmetic                                                               */
/* ------------------------------------------------------------------------ */

/* The demonstration as arithmetic.c documents it, built independently. */
static void expected_arith_demo(const char *prompt, int reversed, int scratch, char *out, size_t cap) {
    unsigned long long a = 0, b = 0;
    char op = 0;
    cr_assert_eq(sscanf(prompt, "%llu%c%llu=", &a, &op, &b), 3, "prompt \"%s\"", prompt);
    char pad[512] = "";
    size_t used = 0;
    unsigned long long x = a, y = b, carry = 0;
    if (scratch && op == '+') {
        for (int i = 0; i == 0 || x || y; i++) {
            unsigned long long s = x % 10 + y % 10 + carry;
            used += (size_t)snprintf(pad + used, sizeof pad - used, "%s%llu+%llu%s=%llu", i ? "," : "", x % 10,
                                     y % 10, carry ? "+1" : "", s);
            carry = s >= 10;
            x /= 10;
            y /= 10;
        }
    } else if (scratch) {
        for (int i = 0; i == 0 || y; i++) {
            char p[32];
            snprintf(p, sizeof p, "%llu", a * (y % 10));
            if (reversed)
                for (size_t l = 0, r = strlen(p) - 1; l < r; l++, r--) {
                    char t = p[l];
                    p[l] = p[r];
                    p[r] = t;
                }
            used += (size_t)snprintf(pad + used, sizeof pad - used, "%s%llu*%llu=%s", i ? "," : "", a, y % 10, p);
            y /= 10;
        }
    }
    char ans[32];
    snprintf(ans, sizeof ans, "%llu", op == '+' ? a + b : a * b);
    if (reversed)
        for (size_t l = 0, r = strlen(ans) - 1; l < r; l++, r--) {
            char t = ans[l];
            ans[l] = ans[r];
            ans[r] = t;
        }
    snprintf(out, cap, "<think>%s</think>%s", pad, ans);
}

Test(arithmetic, items) {
    const char *configs[] = {"",
                             "op=mul",
                             "op=mix;min_digits=2;max_digits=4;reverse_answer=1",
                             "op=add;max_digits=1",
                             "op=mul;max_digits=1;reverse_answer=1",
                             "op=add;min_digits=9;max_digits=9;scratchpad=0",
                             "op=mul;min_digits=9;max_digits=9"};
    for (size_t c = 0; c < sizeof configs / sizeof *configs; c++) {
        int pm = 0, dm = 0;
        check_items("arithmetic", configs[c], &pm, &dm);
        /* every item draws both operand lengths, so the limits are reached */
        cr_assert(pm, "[%s] no prompt reached the limit", configs[c]);
        if (c == 3 || c == 4) cr_assert(dm, "[%s] 9+9 / 9*9 must reach the demo limit", configs[c]);
    }
    /* the demonstrations follow the documented scratchpads */
    const char *check[] = {"", "op=mul", "op=mix;reverse_answer=1", "op=mix;scratchpad=0;reverse_answer=1"};
    for (size_t c = 0; c < 4; c++) {
        task k = open_task("arithmetic", check[c]);
        int reversed = strstr(check[c], "reverse_answer=1") != NULL, scratch = !strstr(check[c], "scratchpad=0");
        for (uint64_t seed = 0; seed < 300; seed++) {
            char prompt[64], demo[256], want[600];
            cr_assert_eq(k.p->vt->sample(k.t, seed, prompt, sizeof prompt, demo, sizeof demo), ENV_OK);
            expected_arith_demo(prompt, reversed, scratch, want, sizeof want);
            cr_assert_str_eq(demo, want, "[%s] seed %llu prompt %s", check[c], (unsigned long long)seed, prompt);
        }
        close_task(k);
    }
    /* limits for the defaults: operands of 1..3 digits */
    task k = open_task("arithmetic", NULL);
    uint32_t mp, md;
    cr_assert_eq(k.p->vt->limits(k.t, &mp, &md), ENV_OK);
    cr_assert_eq(mp, 8);  /* "999+999=" */
    cr_assert_eq(md, 43); /* "<think>9+9=18,9+9+1=19,9+9+1=19</think>1998" */
    close_task(k);
    k = open_task("arithmetic", "op=mul");
    cr_assert_eq(k.p->vt->limits(k.t, &mp, &md), ENV_OK);
    cr_assert_eq(mp, 6);  /* "99*99=" */
    cr_assert_eq(md, 36); /* "<think>99*9=891,99*9=891</think>9801" */
    close_task(k);
    k = open_task("arithmetic", "op=mul;min_digits=3");
    cr_assert_eq(k.p->vt->limits(k.t, &mp, &md), ENV_OK);
    cr_assert_eq(mp, 8, "max_digits follows min_digits up when not given");
    close_task(k);
}

Test(arithmetic, scores) {
    task k = open_task("arithmetic", NULL);
    const char *p = "47+85=";
    EXPECT_SCORE(k, p, "<think>7+5=12,4+8+1=13</think>132", 1.0);
    EXPECT_SCORE(k, p, "132", 1.0);
    EXPECT_SCORE(k, p, "  132 ", 1.0);
    EXPECT_SCORE(k, p, "\t132\n", 1.0);
    EXPECT_SCORE(k, p, "0132", 1.0);
    EXPECT_SCORE(k, p, "<think>x</think>1</think>132", 1.0);
    EXPECT_SCORE(k, p, "<think></think></think> 132", 1.0);
    EXPECT_SCORE(k, p, "133", 0.1);
    EXPECT_SCORE(k, p, "231", 0.1);
    EXPECT_SCORE(k, p, "0", 0.1);
    EXPECT_SCORE(k, p, "<think>x</think>132</think>9", 0.1);
    EXPECT_SCORE(k, p, "99999999999999999999999999999999", 0.1);
    EXPECT_SCORE(k, p, "", 0.0);
    EXPECT_SCORE(k, p, "   ", 0.0);
    EXPECT_SCORE(k, p, "<think>132</think>", 0.0);
    EXPECT_SCORE(k, p, "<think>132", 0.0);
    EXPECT_SCORE(k, p, "13 2", 0.0);
    EXPECT_SCORE(k, p, "-132", 0.0);
    EXPECT_SCORE(k, p, "+132", 0.0);
    EXPECT_SCORE(k, p, "132abc", 0.0);
    EXPECT_SCORE(k, p, "132=", 0.0);
    EXPECT_SCORE(k, p, "\xff\xfe" "132", 0.0);
    EXPECT_SCORE(k, "0+0=", "0", 1.0);
    EXPECT_SCORE(k, "0+0=", "000", 1.0);
    EXPECT_SCORE(k, "999999999+999999999=", "1999999998", 1.0);
    /* a prompt is scored by what it says, whatever the config's op */
    EXPECT_SCORE(k, "23*45=", "1035", 1.0);
    EXPECT_SCORE(k, "999999999*999999999=", "999999998000000001", 1.0);
    const char *bad[] = {"", "47+85", "47-85=", "47+85=1", "1234567890+1=", "+1=", "a+b=", "47++85=", "47+=",
                         "47 + 85=", "=", "47+85==", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_bad_prompt(k, bad[i]);
    close_task(k);

    k = open_task("arithmetic", "reverse_answer=1;partial=0.25");
    EXPECT_SCORE(k, p, "231", 1.0);
    EXPECT_SCORE(k, p, "<think>7+5=12,4+8+1=13</think>231", 1.0);
    EXPECT_SCORE(k, p, "2310", 1.0); /* a trailing zero is a leading zero of the number */
    EXPECT_SCORE(k, p, "0231", 0.25);
    EXPECT_SCORE(k, p, "132", 0.25);
    EXPECT_SCORE(k, "23*45=", "5301", 1.0);
    EXPECT_SCORE(k, "10*20=", "002", 1.0);
    EXPECT_SCORE(k, "10*20=", "2", 0.25);
    EXPECT_SCORE(k, p, "x", 0.0);
    close_task(k);

    expect_bad_config("arithmetic", "op=sub", "config key 'op': 'sub' is not one of add|mul|mix");
    expect_bad_config("arithmetic", "max_digits=10", "config key 'max_digits': 10 is outside [1, 9]");
    expect_bad_config("arithmetic", "min_digits=0", "config key 'min_digits': 0 is outside [1, 9]");
    expect_bad_config("arithmetic", "min_digits=3;max_digits=2", "min_digits (3) exceeds max_digits (2)");
    expect_bad_config("arithmetic", "digits=3",
                      "config key 'digits' is unknown (known: op, min_digits, max_digits, reverse_answer, "
                      "scratchpad, partial)");
    expect_bad_config("arithmetic", "op=add;op=mul", "config key 'op' is given twice");
    expect_bad_config("arithmetic", "partial=abc", "config key 'partial': 'abc' is not a finite number");
    expect_bad_config("arithmetic", "partial=1.5", "config key 'partial': 1.5 is outside [0, 1]");
    expect_bad_config("arithmetic", "max_digits=2.5", "config key 'max_digits': '2.5' is not an integer");
    expect_bad_config("arithmetic", "reverse_answer=2", "config key 'reverse_answer': 2 is outside [0, 1]");
    expect_bad_config("arithmetic", "op", "config item 'op' is not key=value");
    /* blanks and empty items are fine */
    task ok = open_task("arithmetic", " op = mul ;; reverse_answer=1; ");
    close_task(ok);

    const double allowed[] = {0.0, 0.1, 1.0};
    check_garbage("arithmetic", "", allowed, 3);
    check_garbage("arithmetic", "op=mul;reverse_answer=1", allowed, 3);
}

/* ------------------------------------------------------------------------ */
/* countdown                                                                */
/* ------------------------------------------------------------------------ */

Test(countdown, items) {
    const char *configs[] = {"", "count=2", "count=4;max_number=100;max_target=1000",
                             "count=6;min_number=500;max_number=999;max_target=1000000000",
                             "count=5;max_number=9;max_target=45"};
    for (size_t c = 0; c < sizeof configs / sizeof *configs; c++) {
        int pm = 0, dm = 0;
        check_items("countdown", configs[c], &pm, &dm);
    }
    /* the numbers are in range, the target in [1, max_target] */
    task k = open_task("countdown", "count=4;min_number=5;max_number=30;max_target=200");
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        char prompt[64], demo[128];
        cr_assert_eq(k.p->vt->sample(k.t, seed, prompt, sizeof prompt, demo, sizeof demo), ENV_OK);
        unsigned v[4], target;
        cr_assert_eq(sscanf(prompt, "%u,%u,%u,%u:%u=", &v[0], &v[1], &v[2], &v[3], &target), 5, "%s", prompt);
        for (int i = 0; i < 4; i++) cr_assert(v[i] >= 5 && v[i] <= 30, "%s", prompt);
        cr_assert(target >= 1 && target <= 200, "%s", prompt);
    }
    close_task(k);
    k = open_task("countdown", NULL);
    uint32_t mp, md;
    cr_assert_eq(k.p->vt->limits(k.t, &mp, &md), ENV_OK);
    cr_assert_eq(mp, 13); /* "20,20,20:100=" */
    cr_assert_eq(md, 25); /* "<think></think>" + "20-(20-20)" */
    close_task(k);
}

Test(countdown, evaluator) {
    task k = open_task("countdown", NULL);
    const char *p = "2,3,4:14=";
    /* precedence and parentheses */
    EXPECT_SCORE(k, p, "2+3*4", 1.0);
    EXPECT_SCORE(k, p, "3*4+2", 1.0);
    EXPECT_SCORE(k, p, "(3*4)+2", 1.0);
    EXPECT_SCORE(k, p, "((2))+((3)*(4))", 1.0);
    EXPECT_SCORE(k, p, " 2 + 3 * 4 ", 1.0);
    EXPECT_SCORE(k, p, "<think>3*4=12,12+2=14</think>2+3*4", 1.0);
    EXPECT_SCORE(k, p, "(2+3)*4", 0.1);
    EXPECT_SCORE(k, p, "4*(3+2)", 0.1);
    EXPECT_SCORE(k, p, "2-3+4", 0.1); /* left to right: 3 */
    EXPECT_SCORE(k, p, "4-3-2", 0.1); /* -1, not 3 */
    /* the multiset of numbers */
    EXPECT_SCORE(k, p, "2+3*4+2-2", 0.1); /* 2 reused */
    EXPECT_SCORE(k, p, "3*4+2+0", 0.1);   /* an extra number */
    EXPECT_SCORE(k, p, "3*4", 0.1);       /* 2 missing */
    EXPECT_SCORE(k, p, "14", 0.1);
    EXPECT_SCORE(k, p, "02+3*4", 1.0);    /* "02" is 2, as int() reads it */
    EXPECT_SCORE(k, p, "2+3*04", 1.0);
    EXPECT_SCORE(k, p, "-2+4*4", 0.1);
    /* unary signs, as Python allows them */
    EXPECT_SCORE(k, "3,5:2=", "-3+5", 1.0);
    EXPECT_SCORE(k, "3,5:2=", "5+-3", 1.0);
    EXPECT_SCORE(k, "3,5:2=", "+5-+3", 1.0);
    EXPECT_SCORE(k, "3,5:2=", "--5-3", 1.0);
    EXPECT_SCORE(k, "3,5:2=", "3-5", 0.1);
    /* true division */
    EXPECT_SCORE(k, "8,4,3:6=", "8/4*3", 1.0);
    EXPECT_SCORE(k, "8,4,3:6=", "3*8/4", 1.0);
    EXPECT_SCORE(k, "8,4,3:6=", "8/(4/3)", 1.0); /* 6.000000000000001 */
    EXPECT_SCORE(k, "8,4,3:6=", "8/4/3", 0.1);
    EXPECT_SCORE(k, "7,2:3=", "7/2", 0.1);       /* 3.5, no integer division */
    EXPECT_SCORE(k, "7,2,1:3=", "(7-1)/2", 1.0);
    /* division by zero parses (TinyZero's eval raises): well formed, wrong */
    EXPECT_SCORE(k, "5,5,2:2=", "2/(5-5)", 0.1);
    EXPECT_SCORE(k, "5,5,2:2=", "(5-5)/2+2", 0.1); /* 0/2 is fine, but 2 is reused */
    EXPECT_SCORE(k, "5,5,2:0=", "(5-5)/2", 1.0);
    EXPECT_SCORE(k, "5,5,2:2=", "2/(5-5)*0+2", 0.1);
    /* not parseable */
    EXPECT_SCORE(k, p, "", 0.0);
    EXPECT_SCORE(k, p, "  ", 0.0);
    EXPECT_SCORE(k, p, "<think>2+3*4</think>", 0.0);
    EXPECT_SCORE(k, p, "2+3*4=", 0.0);
    EXPECT_SCORE(k, p, "2+3*4=14", 0.0);
    EXPECT_SCORE(k, p, "2+3*", 0.0);
    EXPECT_SCORE(k, p, "(2+3*4", 0.0);
    EXPECT_SCORE(k, p, "2+3*4)", 0.0);
    EXPECT_SCORE(k, p, "()", 0.0);
    EXPECT_SCORE(k, p, "2+3x4", 0.0);
    EXPECT_SCORE(k, p, "2**3+4", 0.0);
    EXPECT_SCORE(k, p, "2(3)*4", 0.0);
    EXPECT_SCORE(k, p, "2.0+3*4", 0.0);
    EXPECT_SCORE(k, p, "2 3 4", 0.0);
    EXPECT_SCORE(k, p, "\x80\xff", 0.0);
    EXPECT_SCORE(k, p, "<think>2+3*4", 0.0);
    /* nesting: 60 levels parse, 100 do not */
    char deep[512];
    for (int levels = 60; levels <= 100; levels += 40) {
        size_t n = 0;
        for (int i = 0; i < levels; i++) deep[n++] = '(';
        deep[n++] = '2';
        for (int i = 0; i < levels; i++) deep[n++] = ')';
        strcpy(deep + n, "+3*4");
        EXPECT_SCORE(k, p, deep, levels == 60 ? 1.0 : 0.0);
    }
    /* a long flat expression is a loop, not a recursion */
    char flat[4096];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) n += (size_t)snprintf(flat + n, sizeof flat - n, "%s2", i ? "+" : "");
    EXPECT_SCORE(k, p, flat, 0.1);
    EXPECT_SCORE(k, p, "12345678901234567890+3*4", 0.1);

    const char *bad[] = {"2,3,4=14", "2,3,4:14", ":14=", "2,,3:5=", "a:1=", "2,3:", "2,3:5=1", "2;3:5=",
                         "2,3:-5=", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17:5=", "1234567890,1:5=",
                         "1,2:12345678901="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_bad_prompt(k, bad[i]);
    EXPECT_SCORE(k, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16:136=",
                 "1+2+3+4+5+6+7+8+9+10+11+12+13+14+15+16", 1.0);
    close_task(k);

    k = open_task("countdown", "partial=0");
    EXPECT_SCORE(k, p, "(2+3)*4", 0.0);
    EXPECT_SCORE(k, p, "2+3*4", 1.0);
    close_task(k);

    expect_bad_config("countdown", "max_target=10", "max_target (10) is below count * max_number (60)");
    expect_bad_config("countdown", "count=7", "config key 'count': 7 is outside [2, 6]");
    expect_bad_config("countdown", "min_number=0", "config key 'min_number': 0 is outside [1, 999]");
    expect_bad_config("countdown", "min_number=30", "min_number (30) exceeds max_number (20)");
    expect_bad_config("countdown", "target=5", "config key 'target' is unknown");

    const double allowed[] = {0.0, 0.1, 1.0};
    check_garbage("countdown", "", allowed, 3);
}

/* ------------------------------------------------------------------------ */
/* reverse                                                                  */
/* ------------------------------------------------------------------------ */

Test(reverse, items_and_scores) {
    const char *configs[] = {"", "alphabet=a-z;min_len=1;max_len=64", "alphabet=xyz;min_len=5;max_len=5"};
    for (size_t c = 0; c < sizeof configs / sizeof *configs; c++) {
        int pm = 0, dm = 0;
        check_items("reverse", configs[c], &pm, &dm);
        if (c == 2) cr_assert(pm && dm, "fixed length 5: the limits are exact");
    }
    task k = open_task("reverse", "alphabet=a-cx;min_len=2;max_len=4");
    int seen[26] = {0};
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        char prompt[16], demo[32];
        cr_assert_eq(k.p->vt->sample(k.t, seed, prompt, sizeof prompt, demo, sizeof demo), ENV_OK);
        size_t n = strlen(prompt) - 1;
        cr_assert(n >= 2 && n <= 4, "%s", prompt);
        for (size_t i = 0; i < n; i++) {
            cr_assert_not_null(strchr("abcx", prompt[i]), "%s", prompt);
            seen[prompt[i] - 'a'] = 1;
            cr_assert_eq(demo[strlen(ENV_THINK_BEGIN ENV_THINK_END) + i], prompt[n - 1 - i]);
        }
    }
    cr_assert(seen[0] && seen[1] && seen[2] && seen['x' - 'a'], "every letter of the set is drawn");
    close_task(k);

    k = open_task("reverse", NULL);
    uint32_t mp, md;
    cr_assert_eq(k.p->vt->limits(k.t, &mp, &md), ENV_OK);
    cr_assert_eq(mp, 9);
    cr_assert_eq(md, 23);
    const char *p = "abcde=";
    EXPECT_SCORE(k, p, "edcba", 1.0);
    EXPECT_SCORE(k, p, "EDCBA", 1.0);
    EXPECT_SCORE(k, p, "EdCbA", 1.0);
    EXPECT_SCORE(k, p, " edcba  ", 1.0);
    EXPECT_SCORE(k, p, "<think>abcde</think>edcba", 1.0);
    EXPECT_SCORE(k, p, "<think></think></think>edcba", 1.0);
    EXPECT_SCORE(k, p, "abcde", 0.2);
    EXPECT_SCORE(k, p, "edcab", 0.2);
    EXPECT_SCORE(k, p, "EDCAB", 0.2);
    EXPECT_SCORE(k, p, "edcbaa", 0.05);
    EXPECT_SCORE(k, p, "edcb", 0.05);
    EXPECT_SCORE(k, p, "ed cba", 0.05);
    EXPECT_SCORE(k, p, "x", 0.05);
    EXPECT_SCORE(k, p, "\xff\xfe\x80", 0.05);
    EXPECT_SCORE(k, p, "<think>edcba", 0.05);
    EXPECT_SCORE(k, p, "edcba</think>abcd", 0.05);
    EXPECT_SCORE(k, p, "", 0.0);
    EXPECT_SCORE(k, p, " \t ", 0.0);
    EXPECT_SCORE(k, p, "<think>edcba</think>", 0.0);
    EXPECT_SCORE(k, "aab=", "baa", 1.0);
    EXPECT_SCORE(k, "aab=", "aba", 0.2);
    EXPECT_SCORE(k, "aab=", "bba", 0.05);
    EXPECT_SCORE(k, "z=", "z", 1.0);
    const char *bad[] = {"", "=", "abc", "ABC=", "ab1=", "abc=d", "ab c=", "abc==", "\xe9=", "ab=c="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_bad_prompt(k, bad[i]);
    close_task(k);

    k = open_task("reverse", "anagram_score=0.5;other_score=0");
    EXPECT_SCORE(k, p, "abcde", 0.5);
    EXPECT_SCORE(k, p, "x", 0.0);
    EXPECT_SCORE(k, p, "edcba", 1.0);
    close_task(k);

    expect_bad_config("reverse", "alphabet=A-C", "config key 'alphabet': 'A-C': only lowercase letters a-z");
    expect_bad_config("reverse", "alphabet=c-a", "the range c-a runs backwards");
    expect_bad_config("reverse", "alphabet=aba", "the letter 'a' is given twice");
    expect_bad_config("reverse", "alphabet=a-ec", "the letter 'c' is given twice");
    expect_bad_config("reverse", "alphabet=", "'' has 0 letters; it needs 1 to 26");
    expect_bad_config("reverse", "min_len=9;max_len=8", "min_len (9) exceeds max_len (8)");
    expect_bad_config("reverse", "max_len=65", "config key 'max_len': 65 is outside [1, 64]");
    expect_bad_config("reverse", "min_len=9", "min_len (9) exceeds max_len (8)");

    const double allowed[] = {0.0, 0.05, 0.2, 1.0};
    check_garbage("reverse", "", allowed, 4);
}

/* ------------------------------------------------------------------------ */
/* sort                                                                     */
/* ------------------------------------------------------------------------ */

Test(sort, items_and_scores) {
    const char *configs[] = {"", "min_value=-999;max_value=999;min_count=1;max_count=32",
                             "min_count=3;max_count=3;min_value=10;max_value=11",
                             "min_value=-20;max_value=-10"};
    for (size_t c = 0; c < sizeof configs / sizeof *configs; c++) {
        int pm = 0, dm = 0;
        check_items("sort", configs[c], &pm, &dm);
        if (c == 2) cr_assert(pm && dm, "all values two digits wide: the limits are exact");
    }
    task k = open_task("sort", NULL);
    uint32_t mp, md;
    cr_assert_eq(k.p->vt->limits(k.t, &mp, &md), ENV_OK);
    cr_assert_eq(mp, 12); /* "9,9,9,9,9,9=" */
    cr_assert_eq(md, 26);
    const char *p = "3,1,2=";
    EXPECT_SCORE(k, p, "1,2,3", 1.0);
    EXPECT_SCORE(k, p, " 1, 2 ,3 ", 1.0);
    EXPECT_SCORE(k, p, "01,2,003", 1.0);
    EXPECT_SCORE(k, p, "<think>3,1,2</think>1,2,3", 1.0);
    EXPECT_SCORE(k, p, "3,2,1", 0.1);
    EXPECT_SCORE(k, p, "3,1,2", 0.1);
    EXPECT_SCORE(k, p, "1,2,4", 0.1);
    EXPECT_SCORE(k, p, "-1,2,3", 0.1);
    EXPECT_SCORE(k, p, "1,2,99999999999999999999", 0.1);
    EXPECT_SCORE(k, p, "1,2", 0.0);
    EXPECT_SCORE(k, p, "1,2,3,4", 0.0);
    EXPECT_SCORE(k, p, "1,2,3,", 0.0);
    EXPECT_SCORE(k, p, ",1,2,3", 0.0);
    EXPECT_SCORE(k, p, "1,,2,3", 0.0);
    EXPECT_SCORE(k, p, "1 2 3", 0.0);
    EXPECT_SCORE(k, p, "1,2 3", 0.0);
    EXPECT_SCORE(k, p, "[1,2,3]", 0.0);
    EXPECT_SCORE(k, p, "1;2;3", 0.0);
    EXPECT_SCORE(k, p, "1,2,+3", 0.0);
    EXPECT_SCORE(k, p, "1,2,-", 0.0);
    EXPECT_SCORE(k, p, "1,2,--3", 0.0);
    EXPECT_SCORE(k, p, "", 0.0);
    EXPECT_SCORE(k, p, "<think>1,2,3</think>", 0.0);
    EXPECT_SCORE(k, p, "\xff,\xfe,\x80", 0.0);
    EXPECT_SCORE(k, "-5,3,-10=", "-10,-5,3", 1.0);
    EXPECT_SCORE(k, "-5,3,-10=", "-5,-10,3", 0.1);
    EXPECT_SCORE(k, "7=", "7", 1.0);
    EXPECT_SCORE(k, "2,2,1=", "1,2,2", 1.0);
    EXPECT_SCORE(k, "2,2,1=", "1,1,2", 0.1);
    const char *bad[] = {"", "=", "3,1,2", "3,,1=", "1,2,=", "3;1=", "a=", "1,2==", "1234567890=", "--1=",
                         "1 ,2="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_bad_prompt(k, bad[i]);
    EXPECT_SCORE(k, "-123456789,123456789=", "-123456789,123456789", 1.0);
    close_task(k);

    expect_bad_config("sort", "min_count=0", "config key 'min_count': 0 is outside [1, 32]");
    expect_bad_config("sort", "min_value=5;max_value=4", "min_value (5) exceeds max_value (4)");
    expect_bad_config("sort", "min_count=7", "min_count (7) exceeds max_count (6)");
    expect_bad_config("sort", "order=desc", "config key 'order' is unknown");

    const double allowed[] = {0.0, 0.1, 1.0};
    check_garbage("sort", "", allowed, 3);
}

/* ------------------------------------------------------------------------ */
/* The loader                                                               */
/* ------------------------------------------------------------------------ */

static void broken_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s.so", TEST_TEXT_PLUGIN_DIR, name);
}

/* err must name the file and contain the reason. */
static void expect_open_text_fails(const char *name, const char *reason) {
    char path[1024], err[2048] = "";
    broken_path(path, sizeof path, name);
    envl_text *p = (envl_text *)1;
    cr_assert_lt(envl_open_text_file(path, &p, err, sizeof err), 0, "%s loaded", name);
    cr_assert_null(p);
    cr_assert_not_null(strstr(err, path), "error does not name the file: %s", err);
    cr_assert_not_null(strstr(err, reason), "error lacks '%s': %s", reason, err);
}

Test(loader, text_error_paths) {
    expect_open_text_fails("text_nosym", "does not export env_plugin_get() (control environments) or "
                                         "env_text_plugin_get() (text tasks)");
    expect_open_text_fails("text_null_vt", "env_text_plugin_get(1) returned NULL");
    expect_open_text_fails("text_wrong_major", "wrong ABI major version 99 (this host speaks 1");
    expect_open_text_fails("text_old_minor", "ABI minor version 0 has no text tasks (they need minor >= 1");
    expect_open_text_fails("text_short", "struct_size");
    expect_open_text_fails("text_null_fn", "text task 'broken_text' has a NULL score function");
    expect_open_text_fails("text_null_alphabet", "text task 'broken_text' has a NULL alphabet");
    expect_open_text_fails("text_bad_alphabet", "its alphabet \"ab=a\" repeats 'a' (offset 3)");
    expect_open_text_fails("no_such_task", "cannot load text-task plugin: No such file or directory");

    /* the kinds do not mix: each is refused by the other's loader */
    char path[1024], err[2048] = "";
    envl_text *t = NULL;
    snprintf(path, sizeof path, "%s/pendulum.so", RLT_ENV_PLUGIN_DIR);
    cr_assert_lt(envl_open_text_file(path, &t, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "a control environment plugin (it exports env_plugin_get()), not a text task"),
                       "%s", err);
    envl_plugin *c = (envl_plugin *)1;
    snprintf(path, sizeof path, "%s/arithmetic.so", RLT_ENV_PLUGIN_DIR);
    cr_assert_lt(envl_open_file(path, &c, err, sizeof err), 0);
    cr_assert_null(c);
    cr_assert_not_null(strstr(err, "a text-task plugin (it exports env_text_plugin_get()), not a control environment"),
                       "%s", err);
    broken_path(path, sizeof path, "text_nosym");
    cr_assert_lt(envl_open_file(path, &c, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "does not export env_plugin_get()"), "%s", err);
    cr_assert_not_null(strstr(err, "env_text_plugin_get()"), "the message names both symbols: %s", err);

    /* create failures carry the file, the config and the plugin's reason */
    broken_path(path, sizeof path, "text_create");
    cr_assert_eq(envl_open_text_file(path, &t, err, sizeof err), 0, "%s", err);
    env_text_task *task_ = (env_text_task *)1;
    cr_assert_lt(envl_text_create(t, "x=1", &task_, err, sizeof err), 0);
    cr_assert_null(task_);
    cr_assert_not_null(strstr(err, path), "%s", err);
    cr_assert_not_null(strstr(err, "text task 'broken_text' could not be created (config \"x=1\"): the task's word "
                                   "list is missing"), "%s", err);
    envl_close_text(t);
    envl_close_text(NULL);

    /* a plugin that misbehaves is reported, never passed on */
    broken_path(path, sizeof path, "text_misbehave");
    cr_assert_eq(envl_open_text_file(path, &t, err, sizeof err), 0, "%s", err);
    cr_assert_eq(envl_text_create(t, NULL, &task_, err, sizeof err), 0, "%s", err);
    char prompt[4], demo[18];
    cr_assert_eq(envl_text_sample(t, task_, 0, prompt, sizeof prompt, demo, sizeof demo, err, sizeof err), 0, "%s",
                 err);
    cr_assert_str_eq(prompt, "ab=");
    cr_assert_lt(envl_text_sample(t, task_, 1, prompt, sizeof prompt, demo, sizeof demo, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "sample (seed 1): 'x' at offset 1 of the prompt is not in the plugin's alphabet "
                                   "\"ab=\""), "%s", err);
    cr_assert_lt(envl_text_sample(t, task_, 2, prompt, sizeof prompt, demo, sizeof demo, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "the prompt is not NUL-terminated within its 4-byte buffer"), "%s", err);
    cr_assert_lt(envl_text_sample(t, task_, 0, prompt, 2, demo, sizeof demo, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "sample (seed 0) failed: broken text task"), "%s", err);
    double r = -1;
    cr_assert_eq(envl_text_score(t, task_, "ab=", "ba", &r, err, sizeof err), 0, "%s", err);
    cr_assert(r == 1.0);
    cr_assert_lt(envl_text_score(t, task_, "ab=", "inf", &r, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "score returned an infinite reward"), "%s", err);
    uint32_t mp = 0, md = 0;
    cr_assert_eq(envl_text_limits(t, task_, &mp, &md, err, sizeof err), 0, "%s", err);
    cr_assert_eq(mp, 3);
    cr_assert_eq(md, 17);
    t->vt->destroy(task_);
    envl_close_text(t);

    /* a real task's errors come back with the file and the plugin's reason */
    snprintf(path, sizeof path, "%s/arithmetic.so", RLT_ENV_PLUGIN_DIR);
    cr_assert_eq(envl_open_text_file(path, &t, err, sizeof err), 0, "%s", err);
    cr_assert_lt(envl_text_create(t, "op=div", &task_, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "arithmetic.so: text task 'arithmetic' could not be created (config \"op=div\"): "
                                   "arithmetic: config key 'op': 'div' is not one of add|mul|mix"), "%s", err);
    cr_assert_eq(envl_text_create(t, "", &task_, err, sizeof err), 0, "%s", err);
    cr_assert_lt(envl_text_score(t, task_, "12-3=", "9", &r, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "arithmetic.so: text task 'arithmetic' score failed: arithmetic: score: cannot "
                                   "parse the prompt \"12-3=\""), "%s", err);
    char big_p[16], small_d[8];
    cr_assert_lt(envl_text_sample(t, task_, 5, big_p, sizeof big_p, small_d, sizeof small_d, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "sample (seed 5) failed: arithmetic: sample 5: the demonstration buffer of 8 "
                                   "bytes is too small"), "%s", err);
    t->vt->destroy(task_);
    envl_close_text(t);
}

Test(loader, text_search_and_scan) {
    char err[4096] = "";
    const char *extra[] = {TEST_TEXT_PLUGIN_DIR, RLT_ENV_PLUGIN_DIR};
    cr_assert_eq(unsetenv(ENVL_ENV_VAR), 0);
    envl_search s;
    cr_assert_eq(envl_search_init(&s, extra, 2, err, sizeof err), 0, "%s", err);

    envl_text *t = NULL;
    cr_assert_eq(envl_open_text(&s, "countdown", &t, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(t->vt->name, "countdown");
    cr_assert_str_eq(t->vt->alphabet, "0123456789,:=+-*/()");
    envl_close_text(t);
    cr_assert_lt(envl_open_text(&s, "countdwn", &t, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "text-task plugin 'countdwn' not found: no countdwn.so in " TEST_TEXT_PLUGIN_DIR),
                       "%s", err);
    cr_assert_lt(envl_open_text(&s, "text_old_minor", &t, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, TEST_TEXT_PLUGIN_DIR "/text_old_minor.so: ABI minor version 0"), "%s", err);
    cr_assert_lt(envl_open_text(&s, "", &t, err, sizeof err), 0);
    envl_plugin *c = NULL;
    cr_assert_lt(envl_open(&s, "sort", &c, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "a text-task plugin"), "%s", err);
    cr_assert_eq(envl_open(&s, "pendulum", &c, err, sizeof err), 0, "%s", err);
    envl_close(c);

    envl_entry *e = NULL;
    size_t n = 0;
    cr_assert_eq(envl_scan(&s, &e, &n, err, sizeof err), 0, "%s", err);
    int seen_text = 0, seen_control = 0, seen_broken = 0;
    for (size_t i = 0; i < n; i++) {
        const envl_entry *x = &e[i];
        if (!strncmp(x->name, "text_", 5)) {
            if (!strcmp(x->name, "text_misbehave")) { /* item 0 is fine */
                cr_assert_eq(x->ok, 1, "%s", x->error);
                cr_assert_eq(x->kind, ENVL_KIND_TEXT);
                cr_assert_str_eq(x->example_prompt, "ab=");
                continue;
            }
            seen_broken++;
            cr_assert_eq(x->ok, 0, "%s loaded", x->name);
            cr_assert_not_null(strstr(x->error, x->path), "%s: %s", x->name, x->error);
            cr_assert_eq(x->kind, !strcmp(x->name, "text_nosym") ? ENVL_KIND_UNKNOWN : ENVL_KIND_TEXT, "%s",
                         x->name);
            if (!strcmp(x->name, "text_create"))
                cr_assert_not_null(strstr(x->error, "word list is missing"), "%s", x->error);
        } else if (!strcmp(x->name, "arithmetic")) {
            seen_text++;
            cr_assert_eq(x->ok, 1, "%s", x->error);
            cr_assert_eq(x->kind, ENVL_KIND_TEXT);
            cr_assert_str_eq(envl_kind_name(x->kind), "text");
            cr_assert_str_eq(x->plugin_name, "arithmetic");
            cr_assert_str_eq(x->alphabet, "0123456789+*=,");
            cr_assert_eq(x->max_prompt, 8);
            cr_assert_eq(x->max_demo, 43);
            cr_assert_not_null(strstr(x->summary, "A+B="), "%s", x->summary);
            cr_assert_eq(x->example_prompt[strlen(x->example_prompt) - 1], '=');
            cr_assert_eq(strncmp(x->example_demo, "<think>", 7), 0, "%s", x->example_demo);
        } else if (!strcmp(x->name, "countdown") || !strcmp(x->name, "reverse") || !strcmp(x->name, "sort")) {
            seen_text++;
            cr_assert_eq(x->ok, 1, "%s", x->error);
            cr_assert_eq(x->kind, ENVL_KIND_TEXT);
            cr_assert_gt(x->max_prompt, 0);
            cr_assert_gt(strlen(x->example_prompt), 0);
        } else if (!strcmp(x->name, "pendulum")) {
            seen_control++;
            cr_assert_eq(x->ok, 1, "%s", x->error);
            cr_assert_eq(x->kind, ENVL_KIND_CONTROL);
            cr_assert_str_eq(envl_kind_name(x->kind), "control");
            cr_assert_str_eq(x->gym_id, "Pendulum-v1");
        }
    }
    cr_assert_eq(seen_broken, 9);
    cr_assert_geq(seen_text, 4); /* the builtin folder is also on the path, after ours: shadowed copies */
    cr_assert_geq(seen_control, 1);
    cr_assert_str_eq(envl_kind_name(ENVL_KIND_UNKNOWN), "unknown");
    free(e);
    envl_search_free(&s);
}
