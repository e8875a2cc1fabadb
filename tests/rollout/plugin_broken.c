/*
 * plugin_broken.c -- deliberately broken environment plugins for the loader's
 * error paths. Built several times, each with one BROKEN_* definition:
 *
 *   BROKEN_NOSYM        exports no env_plugin_get
 *   BROKEN_NULL_VT      env_plugin_get returns NULL
 *   BROKEN_WRONG_MAJOR  the vtable says abi_major 99
 *   BROKEN_SHORT        struct_size covers only the fields before step_range
 *   BROKEN_NULL_FN      step_range is NULL
 *   BROKEN_CREATE       create fails with a reason
 *   BROKEN_UNDEFINED    references a function no library defines, so
 *                       dlopen(RTLD_NOW) refuses it
 */
#include <stddef.h>
#include <stdio.h>

#include "env.h"

struct env_batch {
    int unused;
};

#if defined(BROKEN_UNDEFINED)
extern int rlt_test_function_that_does_not_exist(void);
#endif

static int create(const char *config, uint32_t n, env_batch **out, char *err, size_t errlen) {
    (void)config;
    (void)n;
    *out = NULL;
#if defined(BROKEN_CREATE)
    if (err) snprintf(err, errlen, "no display available");
    return ENV_EINVAL;
#elif defined(BROKEN_UNDEFINED)
    (void)err;
    (void)errlen;
    return rlt_test_function_that_does_not_exist();
#else
    (void)err;
    (void)errlen;
    return ENV_EINVAL;
#endif
}

static void destroy(env_batch *b) { (void)b; }
static const char *last_error(const env_batch *b) {
    (void)b;
    return "broken";
}
static int info(const env_batch *b, env_info *out) {
    (void)b;
    (void)out;
    return ENV_EINVAL;
}
static int space(const env_batch *b, env_space *out) {
    (void)b;
    (void)out;
    return ENV_EINVAL;
}
static int reset(env_batch *b, const uint8_t *mask, const uint64_t *seeds, float *obs) {
    (void)b;
    (void)mask;
    (void)seeds;
    (void)obs;
    return ENV_EINVAL;
}
#if !defined(BROKEN_NULL_FN)
static int step_range(env_batch *b, uint32_t begin, uint32_t count, const void *actions, float *obs,
                      float *reward, uint8_t *terminated, uint8_t *truncated) {
    (void)b;
    (void)begin;
    (void)count;
    (void)actions;
    (void)obs;
    (void)reward;
    (void)terminated;
    (void)truncated;
    return ENV_EINVAL;
}
#endif

#if defined(BROKEN_WRONG_MAJOR)
#define VT_MAJOR 99u
#else
#define VT_MAJOR ENV_ABI_MAJOR
#endif
#if defined(BROKEN_SHORT)
#define VT_SIZE ((uint32_t)offsetof(env_plugin, step_range))
#else
#define VT_SIZE ((uint32_t)sizeof(env_plugin))
#endif
#if defined(BROKEN_NULL_FN)
#define VT_STEP NULL
#else
#define VT_STEP step_range
#endif

static const env_plugin broken_plugin = {VT_MAJOR, ENV_ABI_MINOR, VT_SIZE, "broken", "0", "a broken test plugin",
                                         create, destroy, last_error, info, space, space, reset, VT_STEP,
                                         NULL, NULL, NULL};

#if defined(BROKEN_NOSYM)
ENV_EXPORT const env_plugin *not_the_plugin_symbol(uint32_t host_abi_major) {
    (void)host_abi_major;
    return &broken_plugin;
}
#else
ENV_EXPORT const env_plugin *env_plugin_get(uint32_t host_abi_major) {
    (void)host_abi_major;
#if defined(BROKEN_NULL_VT)
    (void)broken_plugin;
    return NULL;
#else
    return &broken_plugin;
#endif
}
#endif
