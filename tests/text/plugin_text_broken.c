/*
 * plugin_text_broken.c -- deliberately broken text-task plugins for the
 * loader's error paths (rollout/envl.h envl_open_text). Built several times,
 * each with one TEXT_* definition:
 *
 *   TEXT_NOSYM          exports neither env_plugin_get nor env_text_plugin_get
 *   TEXT_NULL_VT        env_text_plugin_get returns NULL
 *   TEXT_WRONG_MAJOR    the vtable says abi_major 99
 *   TEXT_OLD_MINOR      the vtable says abi_minor 0 (before text tasks)
 *   TEXT_SHORT          struct_size stops before score
 *   TEXT_NULL_FN        score is NULL
 *   TEXT_NULL_ALPHABET  alphabet is NULL
 *   TEXT_BAD_ALPHABET   alphabet "ab=a" repeats 'a'
 *   TEXT_CREATE         create fails with a reason
 *   TEXT_MISBEHAVE      loads and creates, but sample (seed 1) writes a
 *                       character outside its alphabet, sample (seed 2)
 *                       fills the prompt buffer without a NUL, and score
 *                       returns +inf for the completion "inf". Item 0 and
 *                       other completions are fine: prompt "ab=", demo
 *                       "<think></think>ba", score 1 for "ba", else 0.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

struct env_text_task {
    char err[64];
};

static int create(const char *config, env_text_task **out, char *err, size_t errlen) {
    (void)config;
#if defined(TEXT_CREATE)
    *out = NULL;
    if (err) snprintf(err, errlen, "the task's word list is missing");
    return ENV_EINVAL;
#else
    (void)err;
    (void)errlen;
    *out = calloc(1, sizeof **out);
    return *out ? ENV_OK : ENV_ENOMEM;
#endif
}

static void destroy(env_text_task *t) { free(t); }

static const char *last_error(const env_text_task *t) {
    (void)t;
    return "broken text task";
}

static int limits(const env_text_task *t, uint32_t *max_prompt, uint32_t *max_demo) {
    (void)t;
    *max_prompt = 3;
    *max_demo = 17;
    return ENV_OK;
}

static int sample(env_text_task *t, uint64_t seed, char *prompt, size_t prompt_cap, char *demo, size_t demo_cap) {
    (void)t;
    if (prompt_cap < 4 || demo_cap < 18) return ENV_EINVAL;
    strcpy(prompt, "ab=");
    strcpy(demo, "<think></think>ba");
#if defined(TEXT_MISBEHAVE)
    if (seed == 1) prompt[1] = 'x';
    if (seed == 2) memset(prompt, 'a', prompt_cap);
#else
    (void)seed;
#endif
    return ENV_OK;
}

#if !defined(TEXT_NULL_FN)
static int score(env_text_task *t, const char *prompt, const char *completion, double *reward) {
    (void)t;
    (void)prompt;
    *reward = strcmp(completion, "ba") == 0 ? 1.0 : 0.0;
#if defined(TEXT_MISBEHAVE)
    if (strcmp(completion, "inf") == 0) *reward = INFINITY;
#endif
    return ENV_OK;
}
#define VT_SCORE score
#else
#define VT_SCORE NULL
#endif

#if defined(TEXT_WRONG_MAJOR)
#define VT_MAJOR 99u
#else
#define VT_MAJOR ENV_ABI_MAJOR
#endif
#if defined(TEXT_OLD_MINOR)
#define VT_MINOR 0u
#else
#define VT_MINOR ENV_ABI_MINOR
#endif
#if defined(TEXT_SHORT)
#define VT_SIZE ((uint32_t)offsetof(env_text_plugin, score))
#else
#define VT_SIZE ((uint32_t)sizeof(env_text_plugin))
#endif
#if defined(TEXT_NULL_ALPHABET)
#define VT_ALPHABET NULL
#elif defined(TEXT_BAD_ALPHABET)
#define VT_ALPHABET "ab=a"
#else
#define VT_ALPHABET "ab="
#endif

static const env_text_plugin broken_text = {VT_MAJOR, VT_MINOR, VT_SIZE, "broken_text", "0", "a broken text task",
                                            VT_ALPHABET, create, destroy, last_error, limits, sample, VT_SCORE};

#if defined(TEXT_NOSYM)
ENV_EXPORT const env_text_plugin *not_a_plugin_symbol(uint32_t host_abi_major) {
    (void)host_abi_major;
    return &broken_text;
}
#else
ENV_EXPORT const env_text_plugin *env_text_plugin_get(uint32_t host_abi_major) {
    (void)host_abi_major;
#if defined(TEXT_NULL_VT)
    (void)broken_text;
    return NULL;
#else
    return &broken_text;
#endif
}
#endif
