/*
 * venv.h -- a vector of n environments from one plugin, stepped together with
 * same-step autoreset (specs/sac_envs.md §4.5), plus episode statistics and a
 * state blob for checkpoints. Torch-free.
 *
 * One step (venv_step):
 *   1. plugin step_range over all n environments -> obs, reward, terminated,
 *      truncated;
 *   2. final_obs <- obs (every row: the s' this step produced);
 *   3. rows with terminated|truncated ("ended") close their episode: its
 *      return and length go to ep_return/ep_length of that row and to the
 *      history of completed episodes;
 *   4. the plugin resets the ended rows (seeds NULL: their RNG streams
 *      continue), overwriting their obs rows with the new episode's first
 *      observation.
 * So after a step, for every row i:
 *   SAC's transition is (obs_before[i], a[i], reward[i], final_obs[i],
 *   terminated[i]), and obs[i] is what the policy acts on next. No step is
 *   wasted on a reset (Gymnasium 1.x's default NEXT_STEP mode wastes one).
 *
 * Seeds follow Gymnasium's SyncVectorEnv: venv_reset seeds environment i with
 * base_seed + i; later resets continue each environment's own stream.
 *
 * Stepping is single-threaded (one step_range call over [0, n)); the ABI
 * allows partitioned step_range calls from threads, which this host does not
 * use yet.
 *
 * Errors: functions return 0 or a negative env_status; venv_error(v) holds a
 * message naming the plugin file and the plugin's own reason. After a failed
 * step the batch is in an unknown state: reset it (venv_reset) or restore a
 * saved state before stepping again.
 */
#ifndef RLT_VENV_H
#define RLT_VENV_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "envl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct venv venv;

/* The host-owned buffers, valid until venv_free. Read-only for the caller. */
typedef struct venv_bufs {
    uint32_t n, obs_dim, act_dim;
    const float *obs;         /* [n*obs_dim] what to act on next (after autoreset)        */
    const float *final_obs;   /* [n*obs_dim] s' of the last step, before autoreset:
                                 the final observation where a row ended, else == obs  */
    const float *reward;      /* [n]                                                      */
    const uint8_t *terminated;/* [n]                                                      */
    const uint8_t *truncated; /* [n]                                                      */
    const uint8_t *ended;     /* [n] terminated | truncated (these rows were reset)       */
    const double *ep_return;  /* [n] where ended: the finished episode's return          */
    const int64_t *ep_length; /* [n] where ended: its length in steps                     */
} venv_bufs;

/* Counters over the life of the vector (saved in the state blob). */
typedef struct venv_stats {
    int64_t steps;        /* environment steps (n per venv_step)         */
    int64_t episodes;     /* completed episodes                           */
    int64_t ended_step;   /* episodes that ended in the last venv_step    */
} venv_stats;

/* n environments of plugin p (which must outlive v), created with `config`
 * ("key=value;..."; NULL = defaults). history: how many completed episodes
 * venv_recent can report (0 -> 100). Does not reset: call venv_reset. On
 * failure *out is NULL and err names the file and reason. */
int venv_create(const envl_plugin *p, const char *config, uint32_t n, uint64_t base_seed,
                uint32_t history, venv **out, char *err, size_t errlen);
void venv_free(venv *v); /* NULL-safe */
const char *venv_error(const venv *v);

const venv_bufs *venv_buffers(const venv *v);
const env_info *venv_info(const venv *v);      /* gym_id valid while the plugin is loaded */
const env_space *venv_obs_space(const venv *v);
const env_space *venv_act_space(const venv *v);
venv_stats venv_get_stats(const venv *v);
const envl_plugin *venv_plugin(const venv *v);

/* Reset every environment with seeds base_seed + i and zero the running
 * episode counters (the history of completed episodes is kept). */
int venv_reset(venv *v);
/* Step all n environments with actions [n*act_dim] (float32 for Box, int32
 * for Discrete), then autoreset the rows that ended (see the top). */
int venv_step(venv *v, const void *actions);

/* The last min(k, available) completed episodes, oldest first, into
 * returns[k] / lengths[k] (either may be NULL). Returns how many. */
size_t venv_recent(const venv *v, size_t k, double *returns, int64_t *lengths);
/* Mean return (and length) of the last min(k, available) completed
 * episodes; 0 episodes -> returns 0 and leaves *mean_return untouched. */
size_t venv_recent_mean(const venv *v, size_t k, double *mean_return, double *mean_length);

/* The whole vector's state as one byte blob (for checkpoints and tests):
 * a header (magic "RLTVENV1", n, obs_dim, plugin state size, history
 * capacity), the host's counters (running episode return and length per
 * environment, stats, the history ring), the current obs rows, then each
 * environment's plugin state. The size is fixed for a given vector, so the
 * trainer can register a buffer of venv_state_size bytes with ck_add_blob,
 * fill it with venv_get_state before ck_save and apply it with
 * venv_set_state after ck_load. Requires a plugin with ENV_HAS_STATE.
 * Returns 0 from venv_state_size when the plugin has no state hooks. */
size_t venv_state_size(const venv *v);
int venv_get_state(const venv *v, void *buf, size_t size);
/* Checks the header (a blob from another plugin, n or obs_dim is refused
 * with the reason) before changing anything. */
int venv_set_state(venv *v, const void *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* RLT_VENV_H */
