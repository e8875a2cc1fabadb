/*
 * venv.c -- n environments of one plugin with same-step autoreset, episode
 * statistics and a state blob. See venv.h.
 */
#include "venv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VENV_MAGIC "RLTVENV1"
#define VENV_DEFAULT_HISTORY 100

struct venv {
    const envl_plugin *p;
    env_batch *b;
    env_info info;
    env_space obs_space, act_space;
    uint32_t n, obs_dim, act_dim;
    uint64_t base_seed;
    /* host buffers */
    float *obs, *final_obs, *reward;
    uint8_t *terminated, *truncated, *ended, *mask;
    double *ep_return;  /* [n] the finished episode's return (ended rows)  */
    int64_t *ep_length; /* [n]                                              */
    uint64_t *seeds;    /* [n] scratch for venv_reset                       */
    /* running episodes */
    double *run_return;  /* [n] */
    int64_t *run_length; /* [n] */
    venv_stats stats;
    /* completed episodes: a ring of hist_cap, next write at hist_pos */
    uint32_t hist_cap;
    uint64_t hist_count; /* total written (>= hist_cap: ring is full) */
    double *hist_return;
    int64_t *hist_length;
    venv_bufs bufs;
    char err[1024];
};

static int set_err(venv *v, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int set_err(venv *v, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err, sizeof v->err, fmt, ap);
    va_end(ap);
    return code;
}

/* "<file>: plugin '<name>': <what> failed (<code>): <plugin's reason>" */
static int plugin_err(venv *v, int code, const char *what) {
    const char *why = v->p->vt->last_error(v->b);
    return set_err(v, code < 0 ? code : ENV_EINVAL, "%s: plugin '%s': %s failed (status %d): %s",
                   v->p->path, v->p->vt->name, what, code, why && *why ? why : "no reason given");
}

void venv_free(venv *v) {
    if (!v) return;
    if (v->b) v->p->vt->destroy(v->b);
    free(v->obs);
    free(v->final_obs);
    free(v->reward);
    free(v->terminated);
    free(v->truncated);
    free(v->ended);
    free(v->mask);
    free(v->ep_return);
    free(v->ep_length);
    free(v->seeds);
    free(v->run_return);
    free(v->run_length);
    free(v->hist_return);
    free(v->hist_length);
    free(v);
}

const char *venv_error(const venv *v) { return v ? v->err : "NULL venv"; }
const venv_bufs *venv_buffers(const venv *v) { return v ? &v->bufs : NULL; }
const env_info *venv_info(const venv *v) { return v ? &v->info : NULL; }
const env_space *venv_obs_space(const venv *v) { return v ? &v->obs_space : NULL; }
const env_space *venv_act_space(const venv *v) { return v ? &v->act_space : NULL; }
const envl_plugin *venv_plugin(const venv *v) { return v ? v->p : NULL; }

venv_stats venv_get_stats(const venv *v) {
    venv_stats z = {0, 0, 0};
    return v ? v->stats : z;
}

int venv_create(const envl_plugin *p, const char *config, uint32_t n, uint64_t base_seed,
                uint32_t history, venv **out, char *err, size_t errlen) {
    if (!out) return ENV_EINVAL;
    *out = NULL;
    if (!p) {
        if (err && errlen) snprintf(err, errlen, "venv_create: NULL plugin");
        return ENV_EINVAL;
    }
    venv *v = calloc(1, sizeof *v);
    if (!v) {
        if (err && errlen) snprintf(err, errlen, "%s: out of memory", p->path);
        return ENV_ENOMEM;
    }
    v->p = p;
    v->n = n;
    v->base_seed = base_seed;
    int rc = envl_create(p, config, n, &v->b, err, errlen);
    if (rc < 0) goto fail;
    if ((rc = p->vt->info(v->b, &v->info)) != ENV_OK || (rc = p->vt->obs_space(v->b, &v->obs_space)) != ENV_OK ||
        (rc = p->vt->act_space(v->b, &v->act_space)) != ENV_OK) {
        plugin_err(v, rc, "info/space query");
        goto fail_msg;
    }
    v->obs_dim = v->info.obs_dim;
    v->act_dim = v->info.act_dim;
    if (v->obs_dim == 0 || v->act_dim == 0 || v->obs_space.dim != v->obs_dim ||
        (v->act_space.kind == ENV_SPACE_BOX && v->act_space.dim != v->act_dim) ||
        (v->act_space.kind != ENV_SPACE_BOX && v->act_space.kind != ENV_SPACE_DISCRETE)) {
        rc = set_err(v, ENV_EINVAL,
                     "%s: plugin '%s' describes itself inconsistently: info obs_dim %u act_dim %u, "
                     "obs space dim %u, act space kind %u dim %u",
                     p->path, p->vt->name, v->obs_dim, v->act_dim, v->obs_space.dim, v->act_space.kind,
                     v->act_space.dim);
        goto fail_msg;
    }
    v->hist_cap = history ? history : VENV_DEFAULT_HISTORY;
    size_t no = (size_t)n * v->obs_dim;
    v->obs = calloc(no, sizeof *v->obs);
    v->final_obs = calloc(no, sizeof *v->final_obs);
    v->reward = calloc(n, sizeof *v->reward);
    v->terminated = calloc(n, 1);
    v->truncated = calloc(n, 1);
    v->ended = calloc(n, 1);
    v->mask = calloc(n, 1);
    v->ep_return = calloc(n, sizeof *v->ep_return);
    v->ep_length = calloc(n, sizeof *v->ep_length);
    v->seeds = calloc(n, sizeof *v->seeds);
    v->run_return = calloc(n, sizeof *v->run_return);
    v->run_length = calloc(n, sizeof *v->run_length);
    v->hist_return = calloc(v->hist_cap, sizeof *v->hist_return);
    v->hist_length = calloc(v->hist_cap, sizeof *v->hist_length);
    if (!v->obs || !v->final_obs || !v->reward || !v->terminated || !v->truncated || !v->ended || !v->mask ||
        !v->ep_return || !v->ep_length || !v->seeds || !v->run_return || !v->run_length || !v->hist_return ||
        !v->hist_length) {
        rc = set_err(v, ENV_ENOMEM, "%s: out of memory for %u environments", p->path, n);
        goto fail_msg;
    }
    v->bufs = (venv_bufs){n,           v->obs_dim,   v->act_dim,  v->obs,       v->final_obs, v->reward,
                          v->terminated, v->truncated, v->ended, v->ep_return, v->ep_length};
    *out = v;
    return 0;
fail_msg:
    if (err && errlen) snprintf(err, errlen, "%s", v->err);
fail:
    venv_free(v);
    return rc < 0 ? rc : ENV_EINVAL;
}

int venv_reset(venv *v) {
    if (!v) return ENV_EINVAL;
    for (uint32_t i = 0; i < v->n; i++) v->seeds[i] = v->base_seed + i;
    int rc = v->p->vt->reset(v->b, NULL, v->seeds, v->obs);
    if (rc != ENV_OK) return plugin_err(v, rc, "reset");
    memcpy(v->final_obs, v->obs, (size_t)v->n * v->obs_dim * sizeof *v->obs);
    memset(v->reward, 0, v->n * sizeof *v->reward);
    memset(v->terminated, 0, v->n);
    memset(v->truncated, 0, v->n);
    memset(v->ended, 0, v->n);
    memset(v->run_return, 0, v->n * sizeof *v->run_return);
    memset(v->run_length, 0, v->n * sizeof *v->run_length);
    v->stats.ended_step = 0;
    return 0;
}

static void record_episode(venv *v, double ret, int64_t len) {
    uint32_t at = (uint32_t)(v->hist_count % v->hist_cap);
    v->hist_return[at] = ret;
    v->hist_length[at] = len;
    v->hist_count++;
    v->stats.episodes++;
}

int venv_step(venv *v, const void *actions) {
    if (!v) return ENV_EINVAL;
    if (!actions) return set_err(v, ENV_EINVAL, "%s: venv_step: NULL actions", v->p->path);
    int rc = v->p->vt->step_range(v->b, 0, v->n, actions, v->obs, v->reward, v->terminated, v->truncated);
    if (rc != ENV_OK) return plugin_err(v, rc, "step");
    size_t row = v->obs_dim;
    memcpy(v->final_obs, v->obs, (size_t)v->n * row * sizeof *v->obs);
    int64_t ended = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        v->run_return[i] += (double)v->reward[i];
        v->run_length[i] += 1;
        uint8_t e = (uint8_t)(v->terminated[i] || v->truncated[i]);
        v->ended[i] = e;
        v->mask[i] = e;
        if (e) {
            v->ep_return[i] = v->run_return[i];
            v->ep_length[i] = v->run_length[i];
            record_episode(v, v->run_return[i], v->run_length[i]);
            v->run_return[i] = 0.0;
            v->run_length[i] = 0;
            ended++;
        }
    }
    v->stats.steps += v->n;
    v->stats.ended_step = ended;
    if (ended) {
        rc = v->p->vt->reset(v->b, v->mask, NULL, v->obs);
        if (rc != ENV_OK) return plugin_err(v, rc, "autoreset");
    }
    return 0;
}

size_t venv_recent(const venv *v, size_t k, double *returns, int64_t *lengths) {
    if (!v) return 0;
    uint64_t avail = v->hist_count < v->hist_cap ? v->hist_count : v->hist_cap;
    size_t m = k < avail ? k : (size_t)avail;
    for (size_t j = 0; j < m; j++) {
        uint64_t idx = (v->hist_count - m + j) % v->hist_cap;
        if (returns) returns[j] = v->hist_return[idx];
        if (lengths) lengths[j] = v->hist_length[idx];
    }
    return m;
}

size_t venv_recent_mean(const venv *v, size_t k, double *mean_return, double *mean_length) {
    if (!v) return 0;
    uint64_t avail = v->hist_count < v->hist_cap ? v->hist_count : v->hist_cap;
    size_t m = k < avail ? k : (size_t)avail;
    if (m == 0) return 0;
    double sr = 0.0, sl = 0.0;
    for (size_t j = 0; j < m; j++) {
        uint64_t idx = (v->hist_count - m + j) % v->hist_cap;
        sr += v->hist_return[idx];
        sl += (double)v->hist_length[idx];
    }
    if (mean_return) *mean_return = sr / (double)m;
    if (mean_length) *mean_length = sl / (double)m;
    return m;
}

/* ---- state blob ----------------------------------------------------------- */

/* Header, in native byte order. */
typedef struct venv_state_header {
    char magic[8];
    uint32_t n, obs_dim, hist_cap, reserved;
    uint64_t plugin_state_size;
    char plugin_name[64];
} venv_state_header;

static int has_state(const venv *v) {
    return (v->info.flags & ENV_HAS_STATE) && v->p->vt->state_size && v->p->vt->get_state &&
           v->p->vt->set_state;
}

static size_t host_part(const venv *v) {
    return sizeof(venv_state_header) + (size_t)v->n * (sizeof(double) + sizeof(int64_t)) /* running */
           + sizeof(venv_stats) + sizeof(uint64_t)                                           /* hist_count */
           + (size_t)v->hist_cap * (sizeof(double) + sizeof(int64_t))                        /* ring */
           + (size_t)v->n * v->obs_dim * sizeof(float);                                      /* obs */
}

size_t venv_state_size(const venv *v) {
    if (!v || !has_state(v)) return 0;
    return host_part(v) + (size_t)v->n * v->p->vt->state_size(v->b);
}

static unsigned char *put(unsigned char *at, const void *src, size_t n) {
    memcpy(at, src, n);
    return at + n;
}

static const unsigned char *get(const unsigned char *at, void *dst, size_t n) {
    memcpy(dst, at, n);
    return at + n;
}

int venv_get_state(const venv *v, void *buf, size_t size) {
    if (!v || !buf) return ENV_EINVAL;
    venv *mv = (venv *)v; /* only the message buffer is written */
    if (!has_state(v))
        return set_err(mv, ENV_ESTATE, "%s: plugin '%s' has no state hooks (ENV_HAS_STATE not set): cannot save it",
                       v->p->path, v->p->vt->name);
    size_t need = venv_state_size(v);
    if (size != need)
        return set_err(mv, ENV_ESTATE, "%s: venv state buffer is %zu bytes, need %zu", v->p->path, size, need);
    venv_state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, VENV_MAGIC, 8);
    h.n = v->n;
    h.obs_dim = v->obs_dim;
    h.hist_cap = v->hist_cap;
    h.plugin_state_size = v->p->vt->state_size(v->b);
    snprintf(h.plugin_name, sizeof h.plugin_name, "%s", v->p->vt->name);
    unsigned char *at = put(buf, &h, sizeof h);
    at = put(at, v->run_return, v->n * sizeof *v->run_return);
    at = put(at, v->run_length, v->n * sizeof *v->run_length);
    at = put(at, &v->stats, sizeof v->stats);
    at = put(at, &v->hist_count, sizeof v->hist_count);
    at = put(at, v->hist_return, v->hist_cap * sizeof *v->hist_return);
    at = put(at, v->hist_length, v->hist_cap * sizeof *v->hist_length);
    at = put(at, v->obs, (size_t)v->n * v->obs_dim * sizeof *v->obs);
    for (uint32_t i = 0; i < v->n; i++) {
        int rc = v->p->vt->get_state(v->b, i, at);
        if (rc != ENV_OK) return plugin_err(mv, rc, "get_state");
        at += h.plugin_state_size;
    }
    return 0;
}

int venv_set_state(venv *v, const void *buf, size_t size) {
    if (!v || !buf) return ENV_EINVAL;
    if (!has_state(v))
        return set_err(v, ENV_ESTATE, "%s: plugin '%s' has no state hooks (ENV_HAS_STATE not set): cannot restore it",
                       v->p->path, v->p->vt->name);
    venv_state_header h;
    if (size < sizeof h)
        return set_err(v, ENV_ESTATE, "%s: venv state is %zu bytes, shorter than its header", v->p->path, size);
    const unsigned char *at = get(buf, &h, sizeof h);
    h.plugin_name[sizeof h.plugin_name - 1] = '\0';
    size_t pss = v->p->vt->state_size(v->b);
    if (memcmp(h.magic, VENV_MAGIC, 8) != 0)
        return set_err(v, ENV_ESTATE, "%s: not a venv state blob (bad magic)", v->p->path);
    if (strcmp(h.plugin_name, v->p->vt->name) != 0 || h.n != v->n || h.obs_dim != v->obs_dim ||
        h.hist_cap != v->hist_cap || h.plugin_state_size != pss)
        return set_err(v, ENV_ESTATE,
                       "%s: venv state is for plugin '%s' with %u envs, obs_dim %u, history %u, plugin state %llu "
                       "bytes; this vector is '%s' with %u, %u, %u, %zu",
                       v->p->path, h.plugin_name, h.n, h.obs_dim, h.hist_cap, (unsigned long long)h.plugin_state_size,
                       v->p->vt->name, v->n, v->obs_dim, v->hist_cap, pss);
    size_t need = venv_state_size(v);
    if (size != need)
        return set_err(v, ENV_ESTATE, "%s: venv state is %zu bytes, need %zu", v->p->path, size, need);
    /* Plugin states first: a refusal there leaves the host counters alone.
     * (A plugin that refuses environment i > 0 has already taken 0..i-1;
     * the error says so and the caller must not step before a good restore.) */
    const unsigned char *ps = (const unsigned char *)buf + host_part(v);
    for (uint32_t i = 0; i < v->n; i++) {
        int rc = v->p->vt->set_state(v->b, i, ps + (size_t)i * pss);
        if (rc != ENV_OK) return plugin_err(v, rc, "set_state");
    }
    at = get(at, v->run_return, v->n * sizeof *v->run_return);
    at = get(at, v->run_length, v->n * sizeof *v->run_length);
    at = get(at, &v->stats, sizeof v->stats);
    at = get(at, &v->hist_count, sizeof v->hist_count);
    at = get(at, v->hist_return, v->hist_cap * sizeof *v->hist_return);
    at = get(at, v->hist_length, v->hist_cap * sizeof *v->hist_length);
    get(at, v->obs, (size_t)v->n * v->obs_dim * sizeof *v->obs);
    memcpy(v->final_obs, v->obs, (size_t)v->n * v->obs_dim * sizeof *v->obs);
    memset(v->ended, 0, v->n);
    return 0;
}
