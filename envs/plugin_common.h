/*
 * plugin_common.h -- the env.h machinery shared by the classic-control
 * plugins: config parsing, the batch of environments, error reporting, the
 * state hooks and the vtable. Header-only (static functions) so that every
 * plugin stays ONE .c file built into its own module.
 *
 * A plugin .c includes this header, writes its environment as three
 * callbacks over a state vector s (double [state_dim]), and defines the
 * descriptor this header is written against, under the fixed name envc_env:
 *
 *     static const envc_desc envc_env = {
 *         .name = "pendulum", .version = "1.0", .summary = "...",
 *         .gym_id = "Pendulum-v1", .state_tag = ..., .max_episode_steps = 200,
 *         .obs = {ENV_SPACE_BOX, 3, 0, obs_low, obs_high},
 *         .act = {ENV_SPACE_BOX, 1, 0, act_low, act_high},
 *         .state_dim = 2, .params = keys, .n_params = 3,
 *         .reset_one = ..., .observe = ..., .step_one = ...,
 *     };
 *
 * and ends with its exported symbol, returning envc_plugin_get(major).
 * Below, envc_env is declared as a tentative definition so the generic code
 * and the vtable (whose name, version and summary point into the descriptor's
 * char arrays: address constants) can refer to it before the plugin defines
 * it. A plugin that forgot the definition would leave its callbacks unused,
 * which -Werror=unused-function rejects; create also refuses an incomplete
 * descriptor.
 *
 * What the machinery guarantees, for every plugin:
 *   - Config: "key=value;..." (NULL or "" = defaults; blanks around items,
 *     keys and values and empty items are ignored). Two keys are common:
 *     max_episode_steps (integer in [1, 2^31-1], default the descriptor's)
 *     and seed (unsigned 64-bit, default 0: environment i starts with the
 *     RNG of seed + i, as a Gymnasium vector env after reset(seed=seed)).
 *     The plugin's own keys are finite doubles within [lo, hi]; a key may
 *     name another it must not exceed (Gymnasium's reset bounds low <= high).
 *     Errors name the plugin, the key and the reason; unknown keys list the
 *     known ones.
 *   - Steps: the whole range is validated before anything moves (the
 *     environment was reset and has not ended; a Discrete action lies in
 *     [0, n)); then each environment steps, counts the step, and is
 *     truncated once it has run max_episode_steps steps (Gymnasium's
 *     TimeLimit). Box actions reach the plugin unchecked: its step_one
 *     clamps them and says what a NaN means.
 *   - State: environment i's state buffer is 7 uint64 (tag, phase, elapsed,
 *     PCG64 state and increment) then state_dim doubles, no padding;
 *     set_state rejects a foreign tag, a corrupt header and non-finite
 *     physics.
 *   - Threads: step_range may run concurrently on disjoint ranges; it writes
 *     only its environments' rows and, on error, the message (guarded by an
 *     atomic try-lock: a writer that finds it taken leaves the message that
 *     is being written). Everything else is single-threaded, as env.h says.
 */
#ifndef RLT_ENVS_PLUGIN_COMMON_H
#define RLT_ENVS_PLUGIN_COMMON_H

#include "env.h"
#include "np_rng.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    ENVC_MAX_PARAMS = 8, /* plugin-specific config keys, at most              */
    ENVC_ERR_LEN = 256   /* last_error's message and one config item, bytes */
};

/* A plugin-specific config key: a finite double in [lo, hi]. */
typedef struct envc_param {
    const char *name;
    double default_value;
    double lo, hi;
    const char *not_above; /* NULL, or a key whose value this one must not exceed */
} envc_param;

/* One environment as get_state/set_state copy it. */
typedef struct envc_state {
    uint64_t tag;     /* envc_desc.state_tag: recognises a state buffer */
    uint64_t phase;   /* ENVC_FRESH, ENVC_RUNNING or ENVC_ENDED         */
    uint64_t elapsed; /* steps since the last reset                      */
    nprng rng;
    double s[]; /* [state_dim] the physics */
} envc_state;

_Static_assert(offsetof(envc_state, s) == 7 * sizeof(uint64_t),
               "envc_state: the state header is 7 uint64 without padding");

enum { ENVC_FRESH = 0, ENVC_RUNNING = 1, ENVC_ENDED = 2 };

/* What a plugin says about its environment (see the top of the file). */
typedef struct envc_desc {
    char name[32];    /* the module's name; prefixes every message            */
    char version[16]; /* the plugin's own version, "1.0"                      */
    char summary[128];
    const char *gym_id;         /* the environment it reproduces               */
    uint64_t state_tag;         /* first word of every state buffer            */
    int32_t max_episode_steps;  /* the registered TimeLimit (the default)      */
    env_space obs, act;         /* obs is a Box; act a Box or Discrete         */
    uint32_t state_dim;         /* doubles of physics per environment          */
    const envc_param *params;   /* [n_params] the plugin's own config keys     */
    uint32_t n_params;          /* <= ENVC_MAX_PARAMS                          */

    /* Draw a reset state s [state_dim] from rng (param: the config values in
     * the order of params). */
    void (*reset_one)(double *s, nprng *rng, const double *param);
    /* The observation obs [obs.dim] of state s. */
    void (*observe)(const double *s, float *obs);
    /* One step of the physics: action points at this environment's act.dim
     * values (float for a Box, int32 already range-checked for Discrete).
     * Writes the new s, the reward and whether the episode terminated. */
    void (*step_one)(double *s, const void *action, const double *param, double *reward,
                     int *terminated);
} envc_desc;

static const envc_desc envc_env; /* defined by the plugin .c (tentative definition) */

typedef struct envc_cfg {
    int64_t max_episode_steps;
    uint64_t seed;
    double param[ENVC_MAX_PARAMS]; /* in the order of envc_env.params */
} envc_cfg;

struct env_batch {
    uint32_t n;
    envc_cfg cfg;
    size_t stride;          /* bytes of one environment's state: 56 + 8*state_dim */
    unsigned char *states;  /* [n * stride], envc_state each                       */
    /* last_error's message. step_range may run on several threads, so a
     * writer takes err_lock with an atomic exchange and skips writing when
     * another thread holds it (that thread's error is reported instead). */
    atomic_int err_lock;
    char err[ENVC_ERR_LEN];
};

static envc_state *envc_at(const env_batch *b, uint32_t i)
{
    return (envc_state *)(b->states + (size_t)i * b->stride);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* Record "<plugin>: <message>" as the handle's last error; returns status. */
static int envc_fail(env_batch *b, int status, const char *fmt, ...)
{
    if (atomic_exchange(&b->err_lock, 1) != 0)
        return status;
    int used = snprintf(b->err, sizeof b->err, "%s: ", envc_env.name);
    if (used > 0 && (size_t)used < sizeof b->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->err + used, sizeof b->err - (size_t)used, fmt, ap);
        va_end(ap);
    }
    atomic_store(&b->err_lock, 0);
    return status;
}

/* The same for create, which has no handle yet: into err (may be NULL). */
static int envc_create_fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen) {
        int used = snprintf(err, errlen, "%s: ", envc_env.name);
        if (used > 0 && (size_t)used < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + used, errlen - (size_t)used, fmt, ap);
            va_end(ap);
        }
    }
    return status;
}

/* ------------------------------------------------------------------------ */
/* Config                                                                   */
/* ------------------------------------------------------------------------ */

static const char envc_key_max_steps[] = "max_episode_steps";
static const char envc_key_seed[] = "seed";

static int envc_key_is(const char *name, const char *key, size_t klen)
{
    return strlen(name) == klen && memcmp(name, key, klen) == 0;
}

/* Index of the plugin key `key` [klen], or -1. */
static int envc_param_index(const char *key, size_t klen)
{
    for (uint32_t k = 0; k < envc_env.n_params; k++)
        if (envc_key_is(envc_env.params[k].name, key, klen))
            return (int)k;
    return -1;
}

/* "max_episode_steps, seed, <the plugin's keys>" into out [len]. */
static void envc_known_keys(char *out, size_t len)
{
    int w = snprintf(out, len, "%s, %s", envc_key_max_steps, envc_key_seed);
    size_t used = w > 0 ? (size_t)w : 0;
    for (uint32_t k = 0; k < envc_env.n_params && used < len; k++) {
        w = snprintf(out + used, len - used, ", %s", envc_env.params[k].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Parse one "key=value" item (NUL-terminated, already trimmed) into c. */
static int envc_cfg_apply(envc_cfg *c, const char *item, char *err, size_t errlen)
{
    const char *eq = strchr(item, '=');
    if (!eq)
        return envc_create_fail(err, errlen, ENV_EINVAL, "config item '%s' is not key=value", item);
    size_t klen = (size_t)(eq - item);
    while (klen && (item[klen - 1] == ' ' || item[klen - 1] == '\t'))
        klen--;
    const char *val = eq + 1;
    while (*val == ' ' || *val == '\t')
        val++;
    char *end = NULL;
    errno = 0;
    if (envc_key_is(envc_key_max_steps, item, klen)) {
        long long v = strtoll(val, &end, 10);
        if (end == val || *end != '\0' || errno == ERANGE)
            return envc_create_fail(err, errlen, ENV_EINVAL,
                                    "config key '%s': '%s' is not an integer", envc_key_max_steps,
                                    val);
        if (v < 1 || v > INT32_MAX)
            return envc_create_fail(err, errlen, ENV_EINVAL,
                                    "config key '%s': %lld is outside [1, %ld]", envc_key_max_steps,
                                    v, (long)INT32_MAX);
        c->max_episode_steps = (int64_t)v;
        return ENV_OK;
    }
    if (envc_key_is(envc_key_seed, item, klen)) {
        unsigned long long v = strtoull(val, &end, 10);
        if (end == val || *end != '\0' || errno == ERANGE || *val == '-' || *val == '+')
            return envc_create_fail(err, errlen, ENV_EINVAL,
                                    "config key '%s': '%s' is not an unsigned 64-bit integer",
                                    envc_key_seed, val);
        c->seed = (uint64_t)v;
        return ENV_OK;
    }
    int k = envc_param_index(item, klen);
    if (k < 0) {
        char known[ENVC_ERR_LEN];
        envc_known_keys(known, sizeof known);
        return envc_create_fail(err, errlen, ENV_EINVAL,
                                "config key '%.*s' is unknown (known: %s)", (int)klen, item, known);
    }
    const envc_param *key = &envc_env.params[k];
    double v = strtod(val, &end);
    if (end == val || *end != '\0' || !isfinite(v))
        return envc_create_fail(err, errlen, ENV_EINVAL,
                                "config key '%s': '%s' is not a finite number", key->name, val);
    if (v < key->lo || v > key->hi)
        return envc_create_fail(err, errlen, ENV_EINVAL, "config key '%s': %g is outside [%g, %g]",
                                key->name, v, key->lo, key->hi);
    c->param[k] = v;
    return ENV_OK;
}

/* The relations between keys, once all are read (not_above). */
static int envc_cfg_check(const envc_cfg *c, char *err, size_t errlen)
{
    for (uint32_t k = 0; k < envc_env.n_params; k++) {
        const envc_param *key = &envc_env.params[k];
        if (!key->not_above)
            continue;
        int other = envc_param_index(key->not_above, strlen(key->not_above));
        if (other < 0)
            return envc_create_fail(err, errlen, ENV_EINVAL,
                                    "config: key '%s' is bounded by '%s', which is not a key",
                                    key->name, key->not_above);
        if (c->param[k] > c->param[other])
            return envc_create_fail(err, errlen, ENV_EINVAL, "config: %s (%g) exceeds %s (%g)",
                                    key->name, c->param[k], key->not_above, c->param[other]);
    }
    return ENV_OK;
}

/* "key=value;key=value" (NULL or "" = defaults; empty items are skipped). */
static int envc_cfg_parse(const char *text, envc_cfg *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->max_episode_steps = envc_env.max_episode_steps;
    for (uint32_t k = 0; k < envc_env.n_params; k++)
        c->param[k] = envc_env.params[k].default_value;
    for (const char *p = text; p && *p;) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t' || *p == '\n'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\n'))
            len--;
        if (len) {
            char item[ENVC_ERR_LEN];
            if (len >= sizeof item)
                return envc_create_fail(err, errlen, ENV_EINVAL,
                                        "config item '%.40s...' is too long", p);
            memcpy(item, p, len);
            item[len] = '\0';
            int rc = envc_cfg_apply(c, item, err, errlen);
            if (rc != ENV_OK)
                return rc;
        }
        p = semi ? semi + 1 : p + strlen(p);
    }
    return envc_cfg_check(c, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* The vtable functions                                                     */
/* ------------------------------------------------------------------------ */

static int envc_create(const char *config, uint32_t n, env_batch **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!envc_env.reset_one || !envc_env.observe || !envc_env.step_one ||
        envc_env.n_params > ENVC_MAX_PARAMS)
        return envc_create_fail(err, errlen, ENV_EINVAL,
                                "create: the plugin's descriptor is incomplete");
    if (!out)
        return envc_create_fail(err, errlen, ENV_EINVAL, "create: out is NULL");
    *out = NULL;
    if (n == 0)
        return envc_create_fail(err, errlen, ENV_EINVAL, "create: n must be at least 1");
    envc_cfg cfg;
    int rc = envc_cfg_parse(config, &cfg, err, errlen);
    if (rc != ENV_OK)
        return rc;
    size_t stride = offsetof(envc_state, s) + (size_t)envc_env.state_dim * sizeof(double);
    env_batch *b = calloc(1, sizeof *b);
    unsigned char *states = calloc(n, stride);
    if (!b || !states) {
        free(b);
        free(states);
        return envc_create_fail(err, errlen, ENV_ENOMEM, "create: out of memory for %u envs", n);
    }
    b->n = n;
    b->cfg = cfg;
    b->stride = stride;
    b->states = states;
    atomic_init(&b->err_lock, 0);
    for (uint32_t i = 0; i < n; i++) {
        envc_state *e = envc_at(b, i);
        e->tag = envc_env.state_tag;
        e->phase = ENVC_FRESH;
        nprng_seed(&e->rng, cfg.seed + i);
    }
    *out = b;
    return ENV_OK;
}

static void envc_destroy(env_batch *b)
{
    if (!b)
        return;
    free(b->states);
    free(b);
}

static const char *envc_last_error(const env_batch *b)
{
    return b ? b->err : "env plugin: last_error: the env handle is NULL";
}

static int envc_info(const env_batch *b, env_info *out)
{
    if (!b || !out)
        return ENV_EINVAL;
    out->obs_dim = envc_env.obs.dim;
    out->act_dim = envc_env.act.dim;
    out->max_episode_steps = (int32_t)b->cfg.max_episode_steps;
    out->flags = ENV_HAS_STATE | ENV_NUMPY_RNG;
    out->gym_id = envc_env.gym_id;
    return ENV_OK;
}

static int envc_obs_space(const env_batch *b, env_space *out)
{
    if (!b || !out)
        return ENV_EINVAL;
    *out = envc_env.obs;
    return ENV_OK;
}

static int envc_act_space(const env_batch *b, env_space *out)
{
    if (!b || !out)
        return ENV_EINVAL;
    *out = envc_env.act;
    return ENV_OK;
}

static int envc_reset(env_batch *b, const uint8_t *mask, const uint64_t *seeds, float *obs)
{
    if (!b)
        return ENV_EINVAL;
    if (!obs)
        return envc_fail(b, ENV_EINVAL, "reset: obs is NULL");
    for (uint32_t i = 0; i < b->n; i++) {
        if (mask && !mask[i])
            continue;
        envc_state *e = envc_at(b, i);
        if (seeds)
            nprng_seed(&e->rng, seeds[i]);
        envc_env.reset_one(e->s, &e->rng, b->cfg.param);
        e->elapsed = 0;
        e->phase = ENVC_RUNNING;
        envc_env.observe(e->s, obs + (size_t)i * envc_env.obs.dim);
    }
    return ENV_OK;
}

/* Why environment i cannot step now (ENV_OK when it can). */
static int envc_check_step(env_batch *b, uint32_t i, const void *actions)
{
    const envc_state *e = envc_at(b, i);
    if (e->phase != ENVC_RUNNING)
        return envc_fail(b, ENV_EINVAL,
                         "step_range: environment %u %s; reset it before stepping", i,
                         e->phase == ENVC_ENDED ? "has ended (terminated or truncated)"
                                                : "was never reset");
    if (envc_env.act.kind == ENV_SPACE_DISCRETE) {
        const int32_t *a = (const int32_t *)actions + (size_t)i * envc_env.act.dim;
        for (uint32_t k = 0; k < envc_env.act.dim; k++)
            if (a[k] < 0 || a[k] >= envc_env.act.n)
                return envc_fail(b, ENV_EINVAL,
                                 "step_range: environment %u: action %d is outside "
                                 "Discrete(%lld)",
                                 i, (int)a[k], (long long)envc_env.act.n);
    }
    return ENV_OK;
}

static int envc_step_range(env_batch *b, uint32_t begin, uint32_t count, const void *actions,
                           float *obs, float *reward, uint8_t *terminated, uint8_t *truncated)
{
    if (!b)
        return ENV_EINVAL;
    if (!actions || !obs || !reward || !terminated || !truncated)
        return envc_fail(b, ENV_EINVAL,
                         "step_range: a buffer (actions, obs, reward, terminated, "
                         "truncated) is NULL");
    if (begin > b->n || count > b->n - begin)
        return envc_fail(b, ENV_ERANGE, "step_range: [%u, %u+%u) is outside [0, %u)", begin, begin,
                         count, b->n);
    /* Validate the whole range first: on error nothing is stepped. */
    for (uint32_t i = begin; i < begin + count; i++) {
        int rc = envc_check_step(b, i, actions);
        if (rc != ENV_OK)
            return rc;
    }
    const size_t act_dim = envc_env.act.dim;
    for (uint32_t i = begin; i < begin + count; i++) {
        envc_state *e = envc_at(b, i);
        const void *action = envc_env.act.kind == ENV_SPACE_DISCRETE
                                 ? (const void *)((const int32_t *)actions + (size_t)i * act_dim)
                                 : (const void *)((const float *)actions + (size_t)i * act_dim);
        double r = 0.0;
        int term = 0;
        envc_env.step_one(e->s, action, b->cfg.param, &r, &term);
        e->elapsed++;
        int trunc = e->elapsed >= (uint64_t)b->cfg.max_episode_steps; /* TimeLimit */
        if (term || trunc)
            e->phase = ENVC_ENDED;
        envc_env.observe(e->s, obs + (size_t)i * envc_env.obs.dim);
        reward[i] = (float)r;
        terminated[i] = (uint8_t)(term != 0);
        truncated[i] = (uint8_t)trunc;
    }
    return ENV_OK;
}

static size_t envc_state_size(const env_batch *b)
{
    (void)b;
    return offsetof(envc_state, s) + (size_t)envc_env.state_dim * sizeof(double);
}

static int envc_get_state(const env_batch *b, uint32_t i, void *buf)
{
    if (!b)
        return ENV_EINVAL;
    if (!buf)
        return envc_fail((env_batch *)b, ENV_EINVAL, "get_state: buf is NULL");
    if (i >= b->n)
        return envc_fail((env_batch *)b, ENV_ERANGE, "get_state: index %u >= n %u", i, b->n);
    memcpy(buf, envc_at(b, i), b->stride);
    return ENV_OK;
}

static int envc_set_state(env_batch *b, uint32_t i, const void *buf)
{
    if (!b)
        return ENV_EINVAL;
    if (!buf)
        return envc_fail(b, ENV_EINVAL, "set_state: buf is NULL");
    if (i >= b->n)
        return envc_fail(b, ENV_ERANGE, "set_state: index %u >= n %u", i, b->n);
    envc_state head; /* the 7 header words; the physics follow in buf */
    memcpy(&head, buf, sizeof head);
    if (head.tag != envc_env.state_tag)
        return envc_fail(b, ENV_ESTATE, "set_state: the buffer is not a %s state (tag mismatch)",
                         envc_env.name);
    if (head.phase > ENVC_ENDED || !(head.rng.inc_lo & 1u))
        return envc_fail(b, ENV_ESTATE, "set_state: corrupt state (phase %llu)",
                         (unsigned long long)head.phase);
    const unsigned char *phys = (const unsigned char *)buf + offsetof(envc_state, s);
    for (uint32_t k = 0; k < envc_env.state_dim; k++) {
        double v;
        memcpy(&v, phys + (size_t)k * sizeof v, sizeof v);
        if (!isfinite(v))
            return envc_fail(b, ENV_ESTATE, "set_state: state value %u is not finite", k);
    }
    memcpy(envc_at(b, i), buf, b->stride);
    return ENV_OK;
}

static const env_plugin envc_plugin = {
    .abi_major = ENV_ABI_MAJOR,
    .abi_minor = ENV_ABI_MINOR,
    .struct_size = sizeof(env_plugin),
    .name = envc_env.name,
    .version = envc_env.version,
    .summary = envc_env.summary,
    .create = envc_create,
    .destroy = envc_destroy,
    .last_error = envc_last_error,
    .info = envc_info,
    .obs_space = envc_obs_space,
    .act_space = envc_act_space,
    .reset = envc_reset,
    .step_range = envc_step_range,
    .state_size = envc_state_size,
    .get_state = envc_get_state,
    .set_state = envc_set_state,
};

/* What the plugin's exported env_plugin_get returns. */
static const env_plugin *envc_plugin_get(uint32_t host_abi_major)
{
    return host_abi_major == ENV_ABI_MAJOR ? &envc_plugin : NULL;
}

#endif /* RLT_ENVS_PLUGIN_COMMON_H */
