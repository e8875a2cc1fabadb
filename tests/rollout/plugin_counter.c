/*
 * plugin_counter.c -- a small, well-behaved test plugin for the host side
 * (rollout/envl, rollout/venv). Its numbers are easy to predict:
 *
 *   obs = [x, t] (obs_dim 2), action a in Box(1) [-1, 1], reward = a.
 *   reset with seed s: x = x0 = 1000*s, t = 0, and the environment's episode
 *   counter k = 0. reset without a seed continues: k += 1, x = x0 = 1000*s + k.
 *   So a reset observation tells which seed and which episode it is.
 *   step: x += a (a NaN action counts as 0), t += 1;
 *         terminated = (x - x0 >= term_at), truncated = (t >= max_steps).
 *
 * Config keys ("k=v;k=v"): max_steps (default 5), term_at (default 1e30),
 * fail_create (1: create fails with a reason), fail_step_at (T >= 1: stepping
 * an environment whose t is T-1 fails with ENV_EINVAL and a message).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

typedef struct counter_env {
    uint64_t seed, episode;
    double x, x0;
    int32_t t;
    uint8_t done, pad[3];
} counter_env;

struct env_batch {
    uint32_t n;
    int32_t max_steps, fail_step_at;
    double term_at;
    counter_env *e;
    char err[256];
};

static const double act_low[1] = {-1.0}, act_high[1] = {1.0};
static const double obs_low[2] = {-INFINITY, 0.0}, obs_high[2] = {INFINITY, INFINITY};

static int parse_config(const char *config, struct env_batch *b, int *fail_create, char *err, size_t errlen) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", config ? config : "");
    char *save = NULL;
    for (char *kv = strtok_r(buf, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            if (err) snprintf(err, errlen, "config entry '%s' is not key=value", kv);
            return ENV_EINVAL;
        }
        *eq = '\0';
        const char *v = eq + 1;
        if (!strcmp(kv, "max_steps")) b->max_steps = atoi(v);
        else if (!strcmp(kv, "term_at")) b->term_at = atof(v);
        else if (!strcmp(kv, "fail_create")) *fail_create = atoi(v);
        else if (!strcmp(kv, "fail_step_at")) b->fail_step_at = atoi(v);
        else {
            if (err) snprintf(err, errlen, "unknown config key '%s' (known: max_steps, term_at, fail_create, fail_step_at)", kv);
            return ENV_EINVAL;
        }
    }
    return ENV_OK;
}

static void destroy(env_batch *b) {
    if (!b) return;
    free(b->e);
    free(b);
}

static int create(const char *config, uint32_t n, env_batch **out, char *err, size_t errlen) {
    *out = NULL;
    env_batch *b = calloc(1, sizeof *b);
    if (!b) return ENV_ENOMEM;
    b->n = n;
    b->max_steps = 5;
    b->term_at = 1e30;
    b->fail_step_at = -1;
    int fail_create = 0;
    int rc = parse_config(config, b, &fail_create, err, errlen);
    if (rc == ENV_OK && fail_create) {
        if (err) snprintf(err, errlen, "fail_create=1 asked this plugin to fail");
        rc = ENV_EINVAL;
    }
    if (rc == ENV_OK && !(b->e = calloc(n, sizeof *b->e))) rc = ENV_ENOMEM;
    if (rc != ENV_OK) {
        destroy(b);
        return rc;
    }
    for (uint32_t i = 0; i < n; i++) b->e[i].done = 1; /* must be reset before stepping */
    *out = b;
    return ENV_OK;
}

static const char *last_error(const env_batch *b) { return b ? b->err : "NULL batch"; }

static int info(const env_batch *b, env_info *out) {
    out->obs_dim = 2;
    out->act_dim = 1;
    out->max_episode_steps = b->max_steps;
    out->flags = ENV_HAS_STATE;
    out->gym_id = "Counter-v0";
    return ENV_OK;
}

static int obs_space(const env_batch *b, env_space *out) {
    (void)b;
    *out = (env_space){ENV_SPACE_BOX, 2, 0, obs_low, obs_high};
    return ENV_OK;
}

static int act_space(const env_batch *b, env_space *out) {
    (void)b;
    *out = (env_space){ENV_SPACE_BOX, 1, 0, act_low, act_high};
    return ENV_OK;
}

static void write_obs(const counter_env *e, float *row) {
    row[0] = (float)e->x;
    row[1] = (float)e->t;
}

static int reset(env_batch *b, const uint8_t *mask, const uint64_t *seeds, float *obs) {
    for (uint32_t i = 0; i < b->n; i++) {
        if (mask && !mask[i]) continue;
        counter_env *e = &b->e[i];
        if (seeds) {
            e->seed = seeds[i];
            e->episode = 0;
        } else {
            e->episode++;
        }
        e->x0 = e->x = 1000.0 * (double)e->seed + (double)e->episode;
        e->t = 0;
        e->done = 0;
        write_obs(e, obs + 2 * (size_t)i);
    }
    return ENV_OK;
}

static int step_range(env_batch *b, uint32_t begin, uint32_t count, const void *actions, float *obs,
                      float *reward, uint8_t *terminated, uint8_t *truncated) {
    if (begin > b->n || count > b->n - begin) {
        snprintf(b->err, sizeof b->err, "range [%u, %u) outside [0, %u)", begin, begin + count, b->n);
        return ENV_ERANGE;
    }
    const float *a = actions;
    for (uint32_t i = begin; i < begin + count; i++) {
        counter_env *e = &b->e[i];
        if (e->done) {
            snprintf(b->err, sizeof b->err, "environment %u stepped after its episode ended", i);
            return ENV_EINVAL;
        }
        if (b->fail_step_at >= 1 && e->t == b->fail_step_at - 1) {
            snprintf(b->err, sizeof b->err, "environment %u: simulated failure at step %d", i, b->fail_step_at);
            return ENV_EINVAL;
        }
        double ai = isnan(a[i]) ? 0.0 : (double)a[i];
        e->x += ai;
        e->t += 1;
        reward[i] = (float)ai;
        terminated[i] = (uint8_t)(e->x - e->x0 >= b->term_at);
        truncated[i] = (uint8_t)(e->t >= b->max_steps);
        e->done = (uint8_t)(terminated[i] || truncated[i]);
        write_obs(e, obs + 2 * (size_t)i);
    }
    return ENV_OK;
}

static size_t state_size(const env_batch *b) {
    (void)b;
    return sizeof(counter_env);
}

static int get_state(const env_batch *b, uint32_t i, void *buf) {
    if (i >= b->n) return ENV_ERANGE;
    memcpy(buf, &b->e[i], sizeof(counter_env));
    return ENV_OK;
}

static int set_state(env_batch *b, uint32_t i, const void *buf) {
    if (i >= b->n) return ENV_ERANGE;
    memcpy(&b->e[i], buf, sizeof(counter_env));
    return ENV_OK;
}

static const env_plugin counter_plugin = {
    ENV_ABI_MAJOR, ENV_ABI_MINOR, (uint32_t)sizeof(env_plugin), "counter", "1.0",
    "test plugin: obs [x, t], reward = action", create, destroy, last_error, info, obs_space, act_space,
    reset, step_range, state_size, get_state, set_state};

ENV_EXPORT const env_plugin *env_plugin_get(uint32_t host_abi_major) {
    return host_abi_major == ENV_ABI_MAJOR ? &counter_plugin : NULL;
}
