/*
 * shuffle.h -- a small explicit PRNG and a resumable epoch sampler that hands
 * out batches of dataset indices. Torch-free. This header is the API and its
 * documentation.
 *
 * PRNG. xoshiro256** (Blackman & Vigna) seeded through splitmix64. Its state
 * is four uint64 words in a plain struct: copy it to save, copy it back to
 * restore. Bounded draws are unbiased (rejection of the short last interval).
 *
 * Sampler. Over a dataset of n items, split across world_size ranks:
 *
 *   - Every epoch starts from the identity 0..n-1 and Fisher-Yates shuffles
 *     it with the sampler's generator, so every rank (same seed) computes the
 *     same global permutation P_e for epoch e. The generator is seeded once
 *     from `seed` and runs on from epoch to epoch.
 *   - Rank r owns the strided share P_e[r], P_e[r + W], P_e[r + 2W], ...
 *     (W = world_size): the shares of all ranks are disjoint and together
 *     cover all n items in every epoch. A share has ceil((n - r) / W) items,
 *     so shares differ by at most one item when W does not divide n.
 *   - next_batch walks the share with a cursor. Policy at the end of a share:
 *       SHUF_WRAP      (default) a batch that runs past the end takes the
 *                      rest of this epoch and continues at the start of the
 *                      next epoch: no item is skipped, batches always have
 *                      batch_size items, and one batch may straddle two
 *                      epochs.
 *       SHUF_DROP_LAST when fewer than batch_size items remain in the share,
 *                      they are skipped and the batch comes whole from the
 *                      next epoch (every batch lies inside one epoch; up to
 *                      batch_size - 1 items per epoch are not seen).
 *     Either way next_batch never fails for lack of data: epochs continue
 *     forever, and the epoch counter says where the stream is.
 *   - shuffle = 0 gives the identity order every epoch (evaluation).
 *
 * Resume. shuf_get_state copies out everything that determines the future
 * batches -- configuration, epoch, cursor, generator state and this rank's
 * share of the current permutation -- and shuf_set_state puts it back, so a
 * restored sampler yields the same batches, bit for bit, as the one that was
 * saved. shuf_state_pack/unpack turn a state into a self-describing
 * little-endian byte blob (for a uint8 dataset in an HDF5 checkpoint).
 *
 * Errors. Functions that can fail return SHUF_OK (0) or a negative
 * shuf_status and write a one-line message into the caller's buffer
 * (err, errlen; err may be NULL). No global state.
 */
#ifndef RLT_DATA_SHUFFLE_H
#define RLT_DATA_SHUFFLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum shuf_status {
    SHUF_OK = 0,
    SHUF_ERR_ARG = -1,    /* invalid argument or configuration           */
    SHUF_ERR_NOMEM = -2,  /* allocation failed                           */
    SHUF_ERR_STATE = -3   /* a state that does not fit or is corrupted   */
} shuf_status;

/* ------------------------------------------------------------------------ */
/* PRNG: xoshiro256** with splitmix64 seeding                                */
/* ------------------------------------------------------------------------ */

typedef struct shuf_rng {
    uint64_t s[4]; /* never all zero */
} shuf_rng;

/* One splitmix64 step: advances *x and returns the next output. Also the
 * tool to derive independent seeds, e.g. per rank or per environment. */
uint64_t shuf_splitmix64(uint64_t *x);

/* Seeds the four state words with four splitmix64 outputs from seed. */
void shuf_rng_seed(shuf_rng *r, uint64_t seed);

/* Next 64 random bits. */
uint64_t shuf_rng_next(shuf_rng *r);

/* Uniform integer in [0, bound), bound >= 1, without modulo bias. */
uint64_t shuf_rng_bounded(shuf_rng *r, uint64_t bound);

/* Uniform double in [0, 1) with 53 random bits. */
double shuf_rng_uniform(shuf_rng *r);

/* Shuffles a[0..n-1] in place (Fisher-Yates, unbiased bounded draws). */
void shuf_permute(shuf_rng *r, int64_t *a, int64_t n);

/* ------------------------------------------------------------------------ */
/* Epoch sampler                                                             */
/* ------------------------------------------------------------------------ */

typedef enum shuf_policy { SHUF_WRAP = 0, SHUF_DROP_LAST = 1 } shuf_policy;

typedef struct shuf_config {
    int64_t n;            /* items in the dataset, >= 1                       */
    uint64_t seed;        /* same on every rank                               */
    int32_t rank;         /* 0 .. world_size-1 (0 for one process)            */
    int32_t world_size;   /* >= 1, <= n (1 for one process)                   */
    shuf_policy policy;   /* SHUF_WRAP or SHUF_DROP_LAST                      */
    int32_t shuffle;      /* nonzero: shuffle each epoch; 0: identity order   */
} shuf_config;

/* The defaults: one process, shuffled, SHUF_WRAP. */
shuf_config shuf_config_default(int64_t n, uint64_t seed);

typedef struct shuf_sampler shuf_sampler; /* opaque */

/* Creates a sampler positioned at the start of epoch 0 (whose permutation is
 * drawn here). */
int shuf_sampler_create(const shuf_config *cfg, shuf_sampler **out,
                        char *err, size_t errlen);

/* NULL-safe. */
void shuf_sampler_free(shuf_sampler *s);

/* Writes the next batch_size dataset indices (each in [0, n)) into out,
 * crossing into new epochs as the policy says. batch_size >= 1; with
 * SHUF_DROP_LAST it must not exceed the share size. */
int shuf_next_batch(shuf_sampler *s, int64_t batch_size, int64_t *out,
                    char *err, size_t errlen);

/* Index of the current epoch (0 for the first) and the position in this
 * rank's share of it. After the last item of an epoch, the epoch stays and
 * cursor == share size; the next draw starts the next epoch. */
int64_t shuf_epoch(const shuf_sampler *s);
int64_t shuf_cursor(const shuf_sampler *s);

/* Items in this rank's share per epoch: ceil((n - rank) / world_size). */
int64_t shuf_share_size(const shuf_sampler *s);

/* Full batches per epoch for this rank under SHUF_DROP_LAST (share size /
 * batch_size); the number of batch_size steps that make one epoch. */
int64_t shuf_batches_per_epoch(const shuf_sampler *s, int64_t batch_size);

/* This rank's share of the current epoch's permutation, [shuf_share_size]. */
const int64_t *shuf_current_share(const shuf_sampler *s);

const shuf_config *shuf_sampler_config(const shuf_sampler *s);

/* ------------------------------------------------------------------------ */
/* Save / restore                                                            */
/* ------------------------------------------------------------------------ */

typedef struct shuf_state {
    shuf_config config;
    int64_t epoch;
    int64_t cursor;      /* 0 .. share_len                                  */
    shuf_rng rng;        /* generator after drawing the current permutation */
    int64_t share_len;
    int64_t *share;      /* [share_len], owned by the state                 */
} shuf_state;

/* Copies the sampler's state into *out (allocating out->share). */
int shuf_get_state(const shuf_sampler *s, shuf_state *out, char *err, size_t errlen);

/* Puts a saved state into s. The state's configuration must equal the
 * sampler's (n, seed, rank, world_size, policy, shuffle); the share must
 * have the right length, be in range and have no repeated index. On error s
 * is unchanged. */
int shuf_set_state(shuf_sampler *s, const shuf_state *st, char *err, size_t errlen);

/* Frees st->share and zeroes *st. NULL-safe. */
void shuf_state_free(shuf_state *st);

/* Bytes that shuf_state_pack writes for st. */
size_t shuf_state_packed_size(const shuf_state *st);

/* Serializes st into buf[0..cap): magic "RLTSHUF1", then every field as
 * little-endian 64-bit words. Returns SHUF_ERR_ARG when cap is too small. */
int shuf_state_pack(const shuf_state *st, uint8_t *buf, size_t cap,
                    char *err, size_t errlen);

/* Parses a blob written by shuf_state_pack into *out (allocating
 * out->share). Wrong magic or a length that does not match is
 * SHUF_ERR_STATE. */
int shuf_state_unpack(const uint8_t *buf, size_t len, shuf_state *out,
                      char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* RLT_DATA_SHUFFLE_H */
