/*
 * shuffle.c -- xoshiro256** PRNG and the resumable, rank-sharded epoch
 * sampler declared in shuffle.h.
 */
#include "shuffle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int shuf_fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* ------------------------------------------------------------------------ */
/* PRNG                                                                      */
/* ------------------------------------------------------------------------ */

uint64_t shuf_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void shuf_rng_seed(shuf_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = shuf_splitmix64(&x);
    /* splitmix64 is a bijection of its counter, so four outputs are all zero
     * for no seed in practice; keep the invariant explicit anyway. */
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 0x9E3779B97F4A7C15ull;
}

static uint64_t shuf_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t shuf_rng_next(shuf_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = shuf_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = shuf_rotl(s[3], 45);
    return result;
}

uint64_t shuf_rng_bounded(shuf_rng *r, uint64_t bound)
{
    if (bound <= 1)
        return 0;
    /* 2^64 mod bound: draws below it belong to the incomplete last run of
     * residues; rejecting them leaves a multiple of bound outcomes. */
    const uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t x = shuf_rng_next(r);
        if (x >= threshold)
            return x % bound;
    }
}

double shuf_rng_uniform(shuf_rng *r)
{
    return (double)(shuf_rng_next(r) >> 11) * 0x1.0p-53;
}

void shuf_permute(shuf_rng *r, int64_t *a, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)shuf_rng_bounded(r, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ------------------------------------------------------------------------ */
/* Sampler                                                                   */
/* ------------------------------------------------------------------------ */

struct shuf_sampler {
    shuf_config cfg;
    int64_t epoch;
    int64_t cursor;     /* next position in share                          */
    shuf_rng rng;       /* state after drawing the current permutation      */
    int64_t share_len;
    int64_t *share;     /* [share_len] this rank's part of the permutation  */
    int64_t *global;    /* [n] scratch for the full permutation             */
};

shuf_config shuf_config_default(int64_t n, uint64_t seed)
{
    shuf_config c;
    memset(&c, 0, sizeof c);
    c.n = n;
    c.seed = seed;
    c.rank = 0;
    c.world_size = 1;
    c.policy = SHUF_WRAP;
    c.shuffle = 1;
    return c;
}

static int shuf_check_config(const shuf_config *c, char *err, size_t errlen)
{
    if (c->n < 1)
        return shuf_fail(err, errlen, SHUF_ERR_ARG,
                         "shuf: dataset size n must be >= 1, got %lld", (long long)c->n);
    if (c->world_size < 1)
        return shuf_fail(err, errlen, SHUF_ERR_ARG,
                         "shuf: world_size must be >= 1, got %d", (int)c->world_size);
    if (c->rank < 0 || c->rank >= c->world_size)
        return shuf_fail(err, errlen, SHUF_ERR_ARG,
                         "shuf: rank %d is outside [0, world_size=%d)", (int)c->rank,
                         (int)c->world_size);
    if ((int64_t)c->world_size > c->n)
        return shuf_fail(err, errlen, SHUF_ERR_ARG,
                         "shuf: world_size %d exceeds the dataset size %lld: some "
                         "ranks would get no data",
                         (int)c->world_size, (long long)c->n);
    if (c->policy != SHUF_WRAP && c->policy != SHUF_DROP_LAST)
        return shuf_fail(err, errlen, SHUF_ERR_ARG,
                         "shuf: unknown policy %d (SHUF_WRAP=0, SHUF_DROP_LAST=1)",
                         (int)c->policy);
    if ((uint64_t)c->n > SIZE_MAX / sizeof(int64_t))
        return shuf_fail(err, errlen, SHUF_ERR_ARG,
                         "shuf: dataset size %lld is too large", (long long)c->n);
    return SHUF_OK;
}

static int64_t shuf_share_len_for(const shuf_config *c)
{
    return (c->n - c->rank + c->world_size - 1) / c->world_size;
}

/* Draws the global permutation of the current epoch with s->rng and keeps
 * this rank's strided share of it. */
static void shuf_draw_epoch(shuf_sampler *s)
{
    const int64_t n = s->cfg.n;
    for (int64_t i = 0; i < n; i++)
        s->global[i] = i;
    if (s->cfg.shuffle)
        shuf_permute(&s->rng, s->global, n);
    for (int64_t k = 0; k < s->share_len; k++)
        s->share[k] = s->global[s->cfg.rank + k * (int64_t)s->cfg.world_size];
    s->cursor = 0;
}

int shuf_sampler_create(const shuf_config *cfg, shuf_sampler **out, char *err,
                        size_t errlen)
{
    if (!out)
        return shuf_fail(err, errlen, SHUF_ERR_ARG, "shuf_sampler_create: out is NULL");
    *out = NULL;
    if (!cfg)
        return shuf_fail(err, errlen, SHUF_ERR_ARG, "shuf_sampler_create: cfg is NULL");
    int st = shuf_check_config(cfg, err, errlen);
    if (st != SHUF_OK)
        return st;

    shuf_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return shuf_fail(err, errlen, SHUF_ERR_NOMEM, "shuf: out of memory");
    s->cfg = *cfg;
    s->cfg.shuffle = cfg->shuffle ? 1 : 0;
    s->share_len = shuf_share_len_for(cfg);
    s->share = malloc((size_t)s->share_len * sizeof *s->share);
    s->global = malloc((size_t)cfg->n * sizeof *s->global);
    if (!s->share || !s->global) {
        shuf_sampler_free(s);
        return shuf_fail(err, errlen, SHUF_ERR_NOMEM,
                         "shuf: cannot allocate the permutation of %lld items",
                         (long long)cfg->n);
    }
    shuf_rng_seed(&s->rng, cfg->seed);
    s->epoch = 0;
    shuf_draw_epoch(s);
    *out = s;
    return SHUF_OK;
}

void shuf_sampler_free(shuf_sampler *s)
{
    if (!s)
        return;
    free(s->share);
    free(s->global);
    free(s);
}

static void shuf_next_epoch(shuf_sampler *s)
{
    s->epoch++;
    shuf_draw_epoch(s);
}

int shuf_next_batch(shuf_sampler *s, int64_t batch_size, int64_t *out, char *err,
                    size_t errlen)
{
    if (!s || !out)
        return shuf_fail(err, errlen, SHUF_ERR_ARG, "shuf_next_batch: %s is NULL",
                         !s ? "sampler" : "out");
    if (batch_size < 1)
        return shuf_fail(err, errlen, SHUF_ERR_ARG,
                         "shuf_next_batch: batch_size must be >= 1, got %lld",
                         (long long)batch_size);
    if (s->cfg.policy == SHUF_DROP_LAST) {
        if (batch_size > s->share_len)
            return shuf_fail(err, errlen, SHUF_ERR_ARG,
                             "shuf_next_batch: batch_size %lld exceeds the %lld items "
                             "of rank %d's share with SHUF_DROP_LAST (use SHUF_WRAP "
                             "or a smaller batch)",
                             (long long)batch_size, (long long)s->share_len,
                             (int)s->cfg.rank);
        if (s->share_len - s->cursor < batch_size)
            shuf_next_epoch(s);
        memcpy(out, s->share + s->cursor, (size_t)batch_size * sizeof *out);
        s->cursor += batch_size;
        return SHUF_OK;
    }
    int64_t filled = 0;
    while (filled < batch_size) {
        if (s->cursor == s->share_len)
            shuf_next_epoch(s);
        int64_t take = s->share_len - s->cursor;
        if (take > batch_size - filled)
            take = batch_size - filled;
        memcpy(out + filled, s->share + s->cursor, (size_t)take * sizeof *out);
        s->cursor += take;
        filled += take;
    }
    return SHUF_OK;
}

int64_t shuf_epoch(const shuf_sampler *s) { return s ? s->epoch : -1; }
int64_t shuf_cursor(const shuf_sampler *s) { return s ? s->cursor : -1; }
int64_t shuf_share_size(const shuf_sampler *s) { return s ? s->share_len : 0; }
const int64_t *shuf_current_share(const shuf_sampler *s) { return s ? s->share : NULL; }
const shuf_config *shuf_sampler_config(const shuf_sampler *s) { return s ? &s->cfg : NULL; }

int64_t shuf_batches_per_epoch(const shuf_sampler *s, int64_t batch_size)
{
    if (!s || batch_size < 1)
        return 0;
    return s->share_len / batch_size;
}

/* ------------------------------------------------------------------------ */
/* Save / restore                                                            */
/* ------------------------------------------------------------------------ */

void shuf_state_free(shuf_state *st)
{
    if (!st)
        return;
    free(st->share);
    memset(st, 0, sizeof *st);
}

int shuf_get_state(const shuf_sampler *s, shuf_state *out, char *err, size_t errlen)
{
    if (!s || !out)
        return shuf_fail(err, errlen, SHUF_ERR_ARG, "shuf_get_state: %s is NULL",
                         !s ? "sampler" : "out");
    memset(out, 0, sizeof *out);
    out->share = malloc((size_t)s->share_len * sizeof *out->share);
    if (!out->share)
        return shuf_fail(err, errlen, SHUF_ERR_NOMEM,
                         "shuf_get_state: cannot allocate %lld indices",
                         (long long)s->share_len);
    memcpy(out->share, s->share, (size_t)s->share_len * sizeof *out->share);
    out->config = s->cfg;
    out->epoch = s->epoch;
    out->cursor = s->cursor;
    out->rng = s->rng;
    out->share_len = s->share_len;
    return SHUF_OK;
}

int shuf_set_state(shuf_sampler *s, const shuf_state *st, char *err, size_t errlen)
{
    if (!s || !st)
        return shuf_fail(err, errlen, SHUF_ERR_ARG, "shuf_set_state: %s is NULL",
                         !s ? "sampler" : "state");
    const shuf_config *a = &s->cfg, *b = &st->config;
    if (a->n != b->n || a->seed != b->seed || a->rank != b->rank ||
        a->world_size != b->world_size || a->policy != b->policy ||
        a->shuffle != (b->shuffle ? 1 : 0))
        return shuf_fail(err, errlen, SHUF_ERR_STATE,
                         "shuf_set_state: saved config (n=%lld seed=%llu rank=%d "
                         "world_size=%d policy=%d shuffle=%d) differs from the "
                         "sampler's (n=%lld seed=%llu rank=%d world_size=%d "
                         "policy=%d shuffle=%d)",
                         (long long)b->n, (unsigned long long)b->seed, (int)b->rank,
                         (int)b->world_size, (int)b->policy, (int)b->shuffle,
                         (long long)a->n, (unsigned long long)a->seed, (int)a->rank,
                         (int)a->world_size, (int)a->policy, (int)a->shuffle);
    if (st->share_len != s->share_len || !st->share)
        return shuf_fail(err, errlen, SHUF_ERR_STATE,
                         "shuf_set_state: saved share has %lld items, rank %d of %d "
                         "over n=%lld needs %lld",
                         (long long)st->share_len, (int)a->rank, (int)a->world_size,
                         (long long)a->n, (long long)s->share_len);
    if (st->epoch < 0 || st->cursor < 0 || st->cursor > st->share_len)
        return shuf_fail(err, errlen, SHUF_ERR_STATE,
                         "shuf_set_state: epoch %lld / cursor %lld out of range "
                         "(cursor must be in [0, %lld])",
                         (long long)st->epoch, (long long)st->cursor,
                         (long long)st->share_len);
    if ((st->rng.s[0] | st->rng.s[1] | st->rng.s[2] | st->rng.s[3]) == 0)
        return shuf_fail(err, errlen, SHUF_ERR_STATE,
                         "shuf_set_state: generator state is all zero");

    /* A share with a repeated or out-of-range index would silently bias the
     * data stream: check it against a bitmap of the n items. */
    size_t words = (size_t)((a->n + 63) / 64);
    uint64_t *seen = calloc(words, sizeof *seen);
    if (!seen)
        return shuf_fail(err, errlen, SHUF_ERR_NOMEM, "shuf_set_state: out of memory");
    for (int64_t k = 0; k < st->share_len; k++) {
        int64_t v = st->share[k];
        if (v < 0 || v >= a->n || (seen[v / 64] >> (v % 64) & 1u)) {
            free(seen);
            return shuf_fail(err, errlen, SHUF_ERR_STATE,
                             "shuf_set_state: saved share entry %lld is %lld: %s",
                             (long long)k, (long long)v,
                             (v < 0 || v >= a->n) ? "out of range" : "repeated");
        }
        seen[v / 64] |= (uint64_t)1 << (v % 64);
    }
    free(seen);

    memcpy(s->share, st->share, (size_t)s->share_len * sizeof *s->share);
    s->epoch = st->epoch;
    s->cursor = st->cursor;
    s->rng = st->rng;
    return SHUF_OK;
}

/* Blob layout: "RLTSHUF1", then little-endian u64 words: n, seed, rank,
 * world_size, policy, shuffle, epoch, cursor, rng[4], share_len, share[]. */
static const char shuf_magic[8] = {'R', 'L', 'T', 'S', 'H', 'U', 'F', '1'};
enum { SHUF_HEADER_WORDS = 13 };

size_t shuf_state_packed_size(const shuf_state *st)
{
    if (!st || st->share_len < 0)
        return 0;
    return sizeof shuf_magic + 8 * (SHUF_HEADER_WORDS + (size_t)st->share_len);
}

static void shuf_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t shuf_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int shuf_state_pack(const shuf_state *st, uint8_t *buf, size_t cap, char *err,
                    size_t errlen)
{
    if (!st || !buf || (st->share_len > 0 && !st->share))
        return shuf_fail(err, errlen, SHUF_ERR_ARG, "shuf_state_pack: NULL argument");
    size_t need = shuf_state_packed_size(st);
    if (need == 0 || cap < need)
        return shuf_fail(err, errlen, SHUF_ERR_ARG,
                         "shuf_state_pack: buffer has %zu bytes, the state needs %zu",
                         cap, need);
    memcpy(buf, shuf_magic, sizeof shuf_magic);
    uint8_t *p = buf + sizeof shuf_magic;
    const uint64_t head[SHUF_HEADER_WORDS] = {
        (uint64_t)st->config.n,       st->config.seed,
        (uint64_t)st->config.rank,    (uint64_t)st->config.world_size,
        (uint64_t)st->config.policy,  (uint64_t)st->config.shuffle,
        (uint64_t)st->epoch,          (uint64_t)st->cursor,
        st->rng.s[0],                 st->rng.s[1],
        st->rng.s[2],                 st->rng.s[3],
        (uint64_t)st->share_len};
    for (int i = 0; i < SHUF_HEADER_WORDS; i++, p += 8)
        shuf_put_u64(p, head[i]);
    for (int64_t k = 0; k < st->share_len; k++, p += 8)
        shuf_put_u64(p, (uint64_t)st->share[k]);
    return SHUF_OK;
}

int shuf_state_unpack(const uint8_t *buf, size_t len, shuf_state *out, char *err,
                      size_t errlen)
{
    if (!out)
        return shuf_fail(err, errlen, SHUF_ERR_ARG, "shuf_state_unpack: out is NULL");
    memset(out, 0, sizeof *out);
    const size_t head_bytes = sizeof shuf_magic + 8 * SHUF_HEADER_WORDS;
    if (!buf || len < head_bytes || memcmp(buf, shuf_magic, sizeof shuf_magic) != 0)
        return shuf_fail(err, errlen, SHUF_ERR_STATE,
                         "shuf_state_unpack: not a sampler state (%zu bytes, expected "
                         "magic \"RLTSHUF1\" and at least %zu bytes)",
                         len, head_bytes);
    uint64_t h[SHUF_HEADER_WORDS];
    for (int i = 0; i < SHUF_HEADER_WORDS; i++)
        h[i] = shuf_get_u64(buf + sizeof shuf_magic + 8 * (size_t)i);
    const uint64_t share_len = h[12];
    if (share_len > (len - head_bytes) / 8 || head_bytes + 8 * share_len != len)
        return shuf_fail(err, errlen, SHUF_ERR_STATE,
                         "shuf_state_unpack: blob of %zu bytes does not hold the "
                         "%llu share entries its header announces",
                         len, (unsigned long long)share_len);
    if (h[2] > INT32_MAX || h[3] > INT32_MAX || h[4] > 1 || h[5] > 1 ||
        h[0] > INT64_MAX || h[6] > INT64_MAX || h[7] > INT64_MAX)
        return shuf_fail(err, errlen, SHUF_ERR_STATE,
                         "shuf_state_unpack: header field out of range");
    out->share = malloc((size_t)(share_len ? share_len : 1) * sizeof *out->share);
    if (!out->share)
        return shuf_fail(err, errlen, SHUF_ERR_NOMEM, "shuf_state_unpack: out of memory");
    out->config.n = (int64_t)h[0];
    out->config.seed = h[1];
    out->config.rank = (int32_t)h[2];
    out->config.world_size = (int32_t)h[3];
    out->config.policy = (shuf_policy)h[4];
    out->config.shuffle = (int32_t)h[5];
    out->epoch = (int64_t)h[6];
    out->cursor = (int64_t)h[7];
    for (int i = 0; i < 4; i++)
        out->rng.s[i] = h[8 + i];
    out->share_len = (int64_t)share_len;
    const uint8_t *p = buf + head_bytes;
    for (uint64_t k = 0; k < share_len; k++, p += 8)
        out->share[k] = (int64_t)shuf_get_u64(p);
    return SHUF_OK;
}
