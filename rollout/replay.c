/*
 * replay.c -- the SAC replay buffer over rt_tensors. See replay.h.
 */
#include "replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rb_tensor_names[RB_NTENSORS] = {"observations", "next_observations", "actions",
                                                  "rewards",      "dones",             "timeouts"};

void rb_free(rb *b) {
    if (!b) return;
    rt_free(b->observations);
    rt_free(b->next_observations);
    rt_free(b->actions);
    rt_free(b->rewards);
    rt_free(b->dones);
    rt_free(b->timeouts);
    free(b);
}

rb *rb_new(int64_t capacity, int64_t obs_dim, int64_t act_dim) {
    if (capacity <= 0 || obs_dim <= 0 || act_dim <= 0) {
        rt_set_error("rb_new: capacity %lld, obs_dim %lld, act_dim %lld must all be positive",
                     (long long)capacity, (long long)obs_dim, (long long)act_dim);
        return NULL;
    }
    rb *b = calloc(1, sizeof *b);
    if (!b) {
        rt_set_error("rb_new: out of memory");
        return NULL;
    }
    b->capacity = capacity;
    b->obs_dim = obs_dim;
    b->act_dim = act_dim;
    const rt_opts f32 = RT_OPTS(RT_F32);
    int64_t so[2] = {capacity, obs_dim}, sa[2] = {capacity, act_dim}, s1[1] = {capacity};
    b->observations = rt_zeros(NULL, so, 2, f32);
    b->next_observations = rt_zeros(NULL, so, 2, f32);
    b->actions = rt_zeros(NULL, sa, 2, f32);
    b->rewards = rt_zeros(NULL, s1, 1, f32);
    b->dones = rt_zeros(NULL, s1, 1, f32);
    b->timeouts = rt_zeros(NULL, s1, 1, f32);
    if (!b->observations || !b->next_observations || !b->actions || !b->rewards || !b->dones || !b->timeouts) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", rt_last_error());
        rb_free(b);
        rt_set_error("rb_new: cannot allocate a replay buffer of %lld x (%lld obs, %lld act): %s",
                     (long long)capacity, (long long)obs_dim, (long long)act_dim, msg);
        return NULL;
    }
    return b;
}

int64_t rb_size(const rb *b) { return !b ? 0 : b->full ? b->capacity : b->pos; }

/* Rows [at, at+m) of every tensor from rows [src, src+m) of the inputs. */
static void write_rows(rb *b, int64_t at, int64_t src, int64_t m, const float *obs, const float *next_obs,
                       const float *actions, const float *reward, const uint8_t *term, const uint8_t *trunc) {
    size_t od = (size_t)b->obs_dim, ad = (size_t)b->act_dim;
    float *o = rt_data_ptr(b->observations), *no = rt_data_ptr(b->next_observations);
    float *a = rt_data_ptr(b->actions), *r = rt_data_ptr(b->rewards);
    float *d = rt_data_ptr(b->dones), *t = rt_data_ptr(b->timeouts);
    memcpy(o + (size_t)at * od, obs + (size_t)src * od, (size_t)m * od * sizeof *o);
    memcpy(no + (size_t)at * od, next_obs + (size_t)src * od, (size_t)m * od * sizeof *no);
    memcpy(a + (size_t)at * ad, actions + (size_t)src * ad, (size_t)m * ad * sizeof *a);
    memcpy(r + at, reward + src, (size_t)m * sizeof *r);
    for (int64_t i = 0; i < m; i++) {
        d[at + i] = term[src + i] ? 1.0f : 0.0f;
        t[at + i] = trunc[src + i] ? 1.0f : 0.0f;
    }
}

int rb_add(rb *b, int64_t n, const float *obs, const float *next_obs, const float *actions,
           const float *reward, const uint8_t *terminated, const uint8_t *truncated) {
    if (!b) return rt_set_error("rb_add: NULL buffer"), RT_EINVAL;
    if (n < 0) return rt_set_error("rb_add: n = %lld is negative", (long long)n), RT_EINVAL;
    if (n == 0) return RT_OK;
    if (!obs || !next_obs || !actions || !reward || !terminated || !truncated)
        return rt_set_error("rb_add: NULL input array"), RT_EINVAL;
    /* Of more than capacity rows only the last capacity survive; skip the
     * rest but advance pos as if they had been written. */
    int64_t skip = n > b->capacity ? n - b->capacity : 0;
    int64_t pos = (b->pos + skip) % b->capacity;
    if (skip) b->full = 1;
    int64_t src = skip, left = n - skip;
    while (left > 0) {
        int64_t m = b->capacity - pos < left ? b->capacity - pos : left;
        write_rows(b, pos, src, m, obs, next_obs, actions, reward, terminated, truncated);
        pos += m;
        src += m;
        left -= m;
        if (pos == b->capacity) {
            pos = 0;
            b->full = 1;
        }
    }
    b->pos = pos;
    return RT_OK;
}

int rb_gather(const rb *b, rt_scope *S, const rt_tensor *indices, rb_batch *out) {
    if (!b || !out) return rt_set_error("rb_gather: NULL buffer or output"), RT_EINVAL;
    memset(out, 0, sizeof *out);
    if (!indices) return RT_EINVAL; /* keep the earlier message */
    out->indices = rt_alias(S, indices);
    out->observations = rt_index_select(S, b->observations, 0, indices);
    out->actions = rt_index_select(S, b->actions, 0, indices);
    out->next_observations = rt_index_select(S, b->next_observations, 0, indices);
    out->rewards = rt_index_select(S, b->rewards, 0, indices);
    out->dones = rt_index_select(S, b->dones, 0, indices);
    out->timeouts = rt_index_select(S, b->timeouts, 0, indices);
    if (!out->indices || !out->observations || !out->actions || !out->next_observations || !out->rewards ||
        !out->dones || !out->timeouts) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", rt_last_error());
        rt_set_error("rb_gather: %s", msg);
        return RT_ERR;
    }
    return RT_OK;
}

int rb_sample(const rb *b, rt_scope *S, int64_t batch_size, rt_gen *g, rb_batch *out) {
    if (!b || !out || !g) return rt_set_error("rb_sample: NULL buffer, output or generator"), RT_EINVAL;
    memset(out, 0, sizeof *out);
    int64_t size = rb_size(b);
    if (size == 0) return rt_set_error("rb_sample: the replay buffer is empty"), RT_EINVAL;
    if (batch_size <= 0)
        return rt_set_error("rb_sample: batch_size %lld must be positive", (long long)batch_size), RT_EINVAL;
    int64_t shape[1] = {batch_size};
    rt_tensor *idx = rt_randint(S, 0, size, shape, 1, g, RT_OPTS(RT_I64));
    if (!idx) return RT_ERR;
    int rc = rb_gather(b, S, idx, out);
    if (!S) rt_free(idx); /* out->indices is its own handle */
    return rc;
}

int rb_validate(const rb *b) {
    if (!b) return rt_set_error("rb_validate: NULL buffer"), RT_EINVAL;
    if (b->pos < 0 || b->pos >= b->capacity || (b->full != 0 && b->full != 1))
        return rt_set_error("replay buffer: pos %lld / full %lld do not fit capacity %lld (corrupt checkpoint?)",
                            (long long)b->pos, (long long)b->full, (long long)b->capacity),
               RT_EINVAL;
    return RT_OK;
}
