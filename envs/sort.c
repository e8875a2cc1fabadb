/*
 * sort.c -- the "sort" text task: sort a list of small integers in ascending
 * order (reasoning-gym's number_sorting, sac_envs.md §5.1, with integers and
 * a character-level format).
 *
 * Prompt: the numbers separated by ',' and '=' -- "3,1,2=".
 * Demonstration: ENV_THINK_BEGIN ENV_THINK_END and the sorted list --
 * "<think></think>1,2,3".
 *
 * Config (all optional):
 *   min_count  fewest numbers, 1..32                          default 3
 *   max_count  most numbers, 1..32                            default 6
 *   min_value  smallest value, -999..999                      default 0
 *   max_value  largest value, -999..999                       default 9
 *   partial    score of a well-formed list of the right length
 *              that is not the sorted list, [0, 1]            default 0.1
 * The count is uniform in [min_count, max_count], each value uniform in
 * [min_value, max_value], independently (repeats happen).
 *
 * Score (the answer is the text after the last ENV_THINK_END, blanks
 * trimmed): a well-formed list is integers (an optional '-', then decimal
 * digits; leading zeros allowed) separated by ',' with optional blanks
 * around each number.
 *   1.0      a well-formed list equal, number by number, to the sorted list;
 *   partial  a well-formed list with as many numbers as the prompt, wrong;
 *   0.0      anything else (empty, another length, a trailing ',', ...).
 * Prompts are read back as 1 to 64 integers of up to 9 digits and '='.
 */
#include "text_common.h"

#define SORT_ALPHABET "0123456789,-="
#define SORT_SALT 0x736F72746C697374ull /* "sortlist": this plugin's RNG streams */
#define SORT_MAX_PROMPT 64             /* numbers a prompt may hold (score)   */
#define SORT_HUGE_DIGITS 15            /* longer numbers never match          */

enum { K_MIN_COUNT, K_MAX_COUNT, K_MIN_VALUE, K_MAX_VALUE, K_PARTIAL, K_COUNT };

static const txt_key sort_keys[K_COUNT] = {
    [K_MIN_COUNT] = {"min_count", TXT_INT, 3, 1, 32, NULL},
    [K_MAX_COUNT] = {"max_count", TXT_INT, 6, 1, 32, NULL},
    [K_MIN_VALUE] = {"min_value", TXT_INT, 0, -999, 999, NULL},
    [K_MAX_VALUE] = {"max_value", TXT_INT, 9, -999, 999, NULL},
    [K_PARTIAL] = {"partial", TXT_REAL, 0.1, 0, 1, NULL},
};

static int sort_check(txt_val *v, char *msg, size_t cap) {
    if (v[K_MIN_COUNT].num > v[K_MAX_COUNT].num) {
        snprintf(msg, cap, "min_count (%.0f) exceeds max_count (%.0f)", v[K_MIN_COUNT].num, v[K_MAX_COUNT].num);
        return ENV_EINVAL;
    }
    if (v[K_MIN_VALUE].num > v[K_MAX_VALUE].num) {
        snprintf(msg, cap, "min_value (%.0f) exceeds max_value (%.0f)", v[K_MIN_VALUE].num, v[K_MAX_VALUE].num);
        return ENV_EINVAL;
    }
    return ENV_OK;
}

static const txt_desc sort_desc = {"sort", sort_keys, K_COUNT, sort_check};

static int sort_create(const char *config, env_text_task **out, char *err, size_t errlen) {
    return txt_create(&sort_desc, config, out, err, errlen);
}

/* Characters of v in decimal. */
static uint32_t width(int64_t v) { return txt_ndigits((uint64_t)(v < 0 ? -v : v)) + (v < 0); }

static int sort_limits(const env_text_task *t, uint32_t *max_prompt, uint32_t *max_demo) {
    if (!t) return ENV_EINVAL;
    if (!max_prompt || !max_demo) return txt_fail((env_text_task *)t, ENV_EINVAL, "limits: NULL output");
    uint32_t n = (uint32_t)txt_int(t, K_MAX_COUNT);
    uint32_t wlo = width(txt_int(t, K_MIN_VALUE)), whi = width(txt_int(t, K_MAX_VALUE));
    uint32_t list = n * (wlo > whi ? wlo : whi) + (n - 1); /* the widest value is at an end of the range */
    *max_prompt = list + 1;
    *max_demo = (uint32_t)(TXT_THINK_BEGIN_LEN + TXT_THINK_END_LEN) + list;
    return ENV_OK;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void put_list(txt_out *o, const int64_t *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (i) txt_putc(o, ',');
        txt_put_int(o, v[i]);
    }
}

static int sort_sample(env_text_task *t, uint64_t seed, char *prompt, size_t prompt_cap, char *demo,
                       size_t demo_cap) {
    int rc = txt_sample_args(t, prompt, prompt_cap, demo, demo_cap);
    if (rc != ENV_OK) return rc;
    txt_rng r;
    txt_rng_seed(&r, seed, SORT_SALT);
    int64_t n = txt_rng_range(&r, txt_int(t, K_MIN_COUNT), txt_int(t, K_MAX_COUNT));
    int64_t v[32];
    for (int64_t i = 0; i < n; i++) v[i] = txt_rng_range(&r, txt_int(t, K_MIN_VALUE), txt_int(t, K_MAX_VALUE));

    txt_out p, d;
    txt_out_init(&p, prompt, prompt_cap);
    put_list(&p, v, n);
    txt_putc(&p, '=');
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    txt_out_init(&d, demo, demo_cap);
    txt_puts(&d, ENV_THINK_BEGIN ENV_THINK_END);
    put_list(&d, v, n);
    return txt_sample_done(t, seed, &p, &d);
}

/* One integer at s[*i] (an optional '-', then digits), within s [n].
 * Values of more than SORT_HUGE_DIGITS significant digits set *huge. */
static int read_int(const char *s, size_t n, size_t *i, int64_t *out, int *huge) {
    size_t k = *i;
    int neg = 0;
    if (k < n && s[k] == '-') neg = 1, k++;
    size_t start = k;
    int64_t v = 0;
    int sig = 0;
    for (; k < n && txt_is_digit((unsigned char)s[k]); k++) {
        if (v > 0 || s[k] != '0') sig++;
        if (sig <= SORT_HUGE_DIGITS) v = v * 10 + (s[k] - '0');
    }
    if (k == start) return -1;
    if (sig > SORT_HUGE_DIGITS) *huge = 1;
    *out = neg ? -v : v;
    *i = k;
    return 0;
}

static int sort_score(env_text_task *t, const char *prompt, const char *completion, double *reward) {
    int rc = txt_score_args(t, prompt, completion, reward);
    if (rc != ENV_OK) return rc;
    int64_t want[SORT_MAX_PROMPT];
    size_t n = 0, plen = strlen(prompt), i = 0;
    int ok = 1;
    for (;;) {
        int huge = 0;
        size_t start = i;
        if (n == SORT_MAX_PROMPT || read_int(prompt, plen, &i, &want[n], &huge) < 0 ||
            i - start - (prompt[start] == '-') > 9) {
            ok = 0;
            break;
        }
        n++;
        if (prompt[i] == '=') break;
        if (prompt[i++] != ',') {
            ok = 0;
            break;
        }
    }
    if (!ok || prompt[i + 1] != '\0')
        return txt_bad_prompt(t, prompt, "N1,N2,...= with 1 to 64 integers of up to 9 digits");
    qsort(want, n, sizeof *want, cmp_i64);

    size_t len = 0;
    const char *ans = txt_answer(completion, &len);
    size_t k = 0, count = 0;
    int exact = 1, huge = 0;
    while (len > 0) { /* one element per turn: blanks, integer, blanks, then ',' or the end */
        while (k < len && txt_is_blank((unsigned char)ans[k])) k++;
        int64_t x = 0;
        if (read_int(ans, len, &k, &x, &huge) < 0) return ENV_OK; /* not a number */
        while (k < len && txt_is_blank((unsigned char)ans[k])) k++;
        if (count == n) return ENV_OK; /* longer than the prompt's list */
        if (huge || x != want[count]) exact = 0;
        count++;
        if (k == len) break;
        if (ans[k++] != ',') return ENV_OK; /* not a list */
    }
    if (count != n) return ENV_OK; /* empty or shorter */
    *reward = exact ? 1.0 : txt_real(t, K_PARTIAL);
    return ENV_OK;
}

static const env_text_plugin sort_plugin = {
    ENV_ABI_MAJOR,
    ENV_ABI_MINOR,
    (uint32_t)sizeof(env_text_plugin),
    "sort",
    "1.0",
    "N1,N2,...= (min_count..max_count values in min_value..max_value): the numbers in ascending order",
    SORT_ALPHABET,
    sort_create,
    txt_destroy,
    txt_last_error,
    sort_limits,
    sort_sample,
    sort_score,
};

ENV_EXPORT const env_text_plugin *env_text_plugin_get(uint32_t host_abi_major) {
    return txt_plugin_get(&sort_plugin, host_abi_major);
}
