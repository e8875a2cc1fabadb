/*
 * replay.h -- the SAC replay buffer: a ring of `capacity` transitions
 * (s, a, r, s', terminated, truncated) held in rt_tensors, sampled uniformly
 * with replacement through an explicit generator, and saved whole in
 * checkpoints so a resumed run samples exactly what a straight run samples.
 *
 * Storage (SB3's names, ecosystem.md §3.6; one row per transition, so SB3's
 * [buffer_size, n_envs, ...] is flattened to [capacity, ...]):
 *
 *   observations       float32 [capacity, obs_dim]  s
 *   next_observations  float32 [capacity, obs_dim]  s': the FINAL observation
 *                                                   where the episode ended
 *                                                   (venv_bufs.final_obs)
 *   actions            float32 [capacity, act_dim]  a (a Discrete action is
 *                                                   stored as its index, exact
 *                                                   in float32 below 2^24)
 *   rewards            float32 [capacity]
 *   dones              float32 [capacity]  terminated (1.0/0.0): the bootstrap
 *                                          mask of specs/sac_envs.md §1.5, i.e.
 *                                          target = r + gamma*(1-dones)*...
 *                                          NOTE: SB3's `dones` is
 *                                          terminated|truncated; here it is
 *                                          terminated alone.
 *   timeouts           float32 [capacity]  truncated (1.0/0.0), for the record;
 *                                          SAC bootstraps through it
 *   pos, full          int64: the next row to write, and 1 once the ring has
 *                      wrapped (SB3 names)
 *
 * The flags are float32, not uint8, so a sampled batch feeds the losses
 * ((1 - dones) * gamma * ...) with no conversion; at 4 bytes per row they are
 * small next to the observations, and zlib shrinks them in checkpoints.
 *
 * Sampling follows SB3: indices uniform in [0, full ? capacity : pos), with
 * replacement, drawn with rt_randint from the caller's generator (register
 * that generator with ck_add_gen too, and resume is bit-exact).
 *
 * Errors follow tensor.h: NULL or a negative rt_status, message in
 * rt_last_error().
 */
#ifndef RLT_REPLAY_H
#define RLT_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif


/* A plain struct: read the fields, change them only through rb_*. The
 * tensors are caller-owned by the buffer (freed by rb_free). */
typedef struct rb {
    int64_t capacity, obs_dim, act_dim;
    int64_t pos;  /* next row to write, in [0, capacity)  */
    int64_t full; /* 1 once pos has wrapped around          */
    rt_tensor *observations, *next_observations, *actions, *rewards, *dones, *timeouts;
} rb;

/* The names above, in this order, as the checkpoint datasets use them. */
#define RB_NTENSORS 6
extern const char *const rb_tensor_names[RB_NTENSORS];

/* A zero-filled buffer on the CPU. NULL (message in rt_last_error()) on a
 * non-positive size or no memory. */
rb *rb_new(int64_t capacity, int64_t obs_dim, int64_t act_dim);
void rb_free(rb *b); /* NULL-safe */

/* Transitions stored: full ? capacity : pos. */
int64_t rb_size(const rb *b);

/* Append n transitions (row-major C arrays): obs and next_obs [n*obs_dim],
 * actions [n*act_dim], reward [n], terminated and truncated [n] (0/non-0).
 * Rows wrap around at capacity; when n > capacity only the last capacity
 * rows stay (as if they had been added one by one). */
int rb_add(rb *b, int64_t n, const float *obs, const float *next_obs, const float *actions,
           const float *reward, const uint8_t *terminated, const uint8_t *truncated);

/* A sampled (or gathered) batch; every tensor is owned by the scope given. */
typedef struct rb_batch {
    rt_tensor *indices;           /* int64   [B]           */
    rt_tensor *observations;      /* float32 [B, obs_dim]  */
    rt_tensor *actions;           /* float32 [B, act_dim]  */
    rt_tensor *next_observations; /* float32 [B, obs_dim]  */
    rt_tensor *rewards;           /* float32 [B]           */
    rt_tensor *dones;             /* float32 [B] terminated */
    rt_tensor *timeouts;          /* float32 [B] truncated  */
} rb_batch;

/* batch_size indices uniform in [0, rb_size) with replacement (one
 * rt_randint draw from g), then rb_gather. RT_EINVAL on an empty buffer. */
int rb_sample(const rb *b, rt_scope *S, int64_t batch_size, rt_gen *g, rb_batch *out);
/* The rows at indices (int64 [B], each in [0, rb_size)). */
int rb_gather(const rb *b, rt_scope *S, const rt_tensor *indices, rb_batch *out);

/* RT_OK when pos is in [0, capacity) and full is 0 or 1; call after
 * ck_load, which restores pos/full
 * from the file as stored. */
int rb_validate(const rb *b);


#ifdef __cplusplus
}
#endif
#endif /* RLT_REPLAY_H */
