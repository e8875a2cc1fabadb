/*
 * reverse.c -- the "reverse" text task: spell a string of letters backwards
 * (reasoning-gym's spell_backward, sac_envs.md §5.1, over random strings of
 * a small alphabet instead of English words).
 *
 * Prompt: the letters and '=' -- "abcde=".
 * Demonstration: ENV_THINK_BEGIN ENV_THINK_END and the reversed string --
 * "<think></think>edcba".
 *
 * Config (all optional):
 *   min_len        shortest string, 1..64                     default 3
 *   max_len        longest string, 1..64                      default 8
 *   alphabet       the letters drawn from: lowercase a-z, as a set
 *                  ("abcxyz") or with ranges ("a-e", "a-cx")  default a-e
 *   anagram_score  score of a wrong answer that is an anagram  default 0.2
 *   other_score    score of any other non-empty answer        default 0.05
 * The length is uniform in [min_len, max_len], each letter uniform over the
 * alphabet, independently.
 *
 * Score (the answer is the text after the last ENV_THINK_END, blanks
 * trimmed), as reasoning-gym scores it:
 *   1.0            the reversed string, ignoring ASCII case;
 *   anagram_score  the same letters in another order (ignoring case);
 *   other_score    any other non-empty answer;
 *   0.0            an empty answer.
 * Prompts are read back as one or more lowercase letters and '='.
 */
#include "text_common.h"

#define REV_ALPHABET "abcdefghijklmnopqrstuvwxyz="
#define REV_SALT 0x7265766572736521ull /* "reverse!": this plugin's RNG streams */

enum { K_MIN_LEN, K_MAX_LEN, K_LETTERS, K_ANAGRAM, K_OTHER, K_COUNT };

static const txt_key rev_keys[K_COUNT] = {
    [K_MIN_LEN] = {"min_len", TXT_INT, 3, 1, 64, NULL},
    [K_MAX_LEN] = {"max_len", TXT_INT, 8, 1, 64, NULL},
    [K_LETTERS] = {"alphabet", TXT_LETTERS, 0, 1, 26, "a-e"},
    [K_ANAGRAM] = {"anagram_score", TXT_REAL, 0.2, 0, 1, NULL},
    [K_OTHER] = {"other_score", TXT_REAL, 0.05, 0, 1, NULL},
};

static int rev_check(txt_val *v, char *msg, size_t cap) {
    if (v[K_MIN_LEN].num > v[K_MAX_LEN].num) {
        snprintf(msg, cap, "min_len (%.0f) exceeds max_len (%.0f)", v[K_MIN_LEN].num, v[K_MAX_LEN].num);
        return ENV_EINVAL;
    }
    return ENV_OK;
}

static const txt_desc rev_desc = {"reverse", rev_keys, K_COUNT, rev_check};

static int rev_create(const char *config, env_text_task **out, char *err, size_t errlen) {
    return txt_create(&rev_desc, config, out, err, errlen);
}

static int rev_limits(const env_text_task *t, uint32_t *max_prompt, uint32_t *max_demo) {
    if (!t) return ENV_EINVAL;
    if (!max_prompt || !max_demo) return txt_fail((env_text_task *)t, ENV_EINVAL, "limits: NULL output");
    uint32_t n = (uint32_t)txt_int(t, K_MAX_LEN);
    *max_prompt = n + 1;
    *max_demo = (uint32_t)(TXT_THINK_BEGIN_LEN + TXT_THINK_END_LEN) + n;
    return ENV_OK;
}

static int rev_sample(env_text_task *t, uint64_t seed, char *prompt, size_t prompt_cap, char *demo,
                      size_t demo_cap) {
    int rc = txt_sample_args(t, prompt, prompt_cap, demo, demo_cap);
    if (rc != ENV_OK) return rc;
    txt_rng r;
    txt_rng_seed(&r, seed, REV_SALT);
    const char *letters = txt_letters(t, K_LETTERS);
    uint64_t nletters = strlen(letters);
    int64_t n = txt_rng_range(&r, txt_int(t, K_MIN_LEN), txt_int(t, K_MAX_LEN));
    char word[64];
    for (int64_t i = 0; i < n; i++) word[i] = letters[txt_rng_below(&r, nletters)];

    txt_out p, d;
    txt_out_init(&p, prompt, prompt_cap);
    txt_putn(&p, word, (size_t)n);
    txt_putc(&p, '=');
    txt_out_init(&d, demo, demo_cap);
    txt_puts(&d, ENV_THINK_BEGIN ENV_THINK_END);
    for (int64_t i = n - 1; i >= 0; i--) txt_putc(&d, word[i]);
    return txt_sample_done(t, seed, &p, &d);
}

static unsigned char ascii_lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c; }

static int rev_score(env_text_task *t, const char *prompt, const char *completion, double *reward) {
    int rc = txt_score_args(t, prompt, completion, reward);
    if (rc != ENV_OK) return rc;
    size_t n = 0;
    while (prompt[n] >= 'a' && prompt[n] <= 'z') n++;
    if (n == 0 || prompt[n] != '=' || prompt[n + 1] != '\0')
        return txt_bad_prompt(t, prompt, "one or more lowercase letters and '='");

    size_t len = 0;
    const char *ans = txt_answer(completion, &len);
    if (len == 0) return ENV_OK; /* no answer */
    int exact = len == n;
    for (size_t i = 0; exact && i < n; i++)
        exact = ascii_lower((unsigned char)ans[i]) == (unsigned char)prompt[n - 1 - i];
    if (exact) {
        *reward = 1.0;
        return ENV_OK;
    }
    int anagram = len == n;
    if (anagram) {
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++) count[(unsigned char)prompt[i]]++;
        for (size_t i = 0; anagram && i < n; i++) {
            unsigned char c = ascii_lower((unsigned char)ans[i]);
            if (count[c] == 0)
                anagram = 0;
            else
                count[c]--;
        }
    }
    *reward = anagram ? txt_real(t, K_ANAGRAM) : txt_real(t, K_OTHER);
    return ENV_OK;
}

static const env_text_plugin rev_plugin = {
    ENV_ABI_MAJOR,
    ENV_ABI_MINOR,
    (uint32_t)sizeof(env_text_plugin),
    "reverse",
    "1.0",
    "LETTERS= (reasoning-gym spell_backward over alphabet=a-e, min_len..max_len): the letters reversed",
    REV_ALPHABET,
    rev_create,
    txt_destroy,
    txt_last_error,
    rev_limits,
    rev_sample,
    rev_score,
};

ENV_EXPORT const env_text_plugin *env_text_plugin_get(uint32_t host_abi_major) {
    return txt_plugin_get(&rev_plugin, host_abi_major);
}
