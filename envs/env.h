/*
 * env.h -- the environment plugin ABI. An environment is a shared library
 * (one .c file, no libtorch) exporting exactly one symbol,
 *
 *     const env_plugin *env_plugin_get(uint32_t host_abi_major);
 *
 * which returns a const vtable (or NULL when it does not speak that major
 * version). The host (rollout/) loads it with dlopen, checks the header,
 * creates a batch of n environments and steps them through caller-owned
 * struct-of-arrays buffers. This header is the whole contract; it is plain C
 * and includes nothing but <stddef.h> and <stdint.h>.
 *
 * Rules a plugin follows (the reasons are in specs/sac_envs.md §4.5):
 *   - Versioning. The vtable starts with abi_major, abi_minor, struct_size.
 *     A host accepts abi_major == ENV_ABI_MAJOR and reads only the fields that
 *     struct_size covers, so minor versions append fields at the end.
 *   - Batches. One call steps n environments. obs is float32 [n*obs_dim];
 *     reward float32 [n]; terminated, truncated uint8 [n]; actions float32
 *     [n*act_dim] for a Box action space, int32 [n*act_dim] for Discrete.
 *     Buffers are owned by the host; a plugin allocates nothing per step.
 *   - No autoreset. step never resets; the host resets the environments that
 *     ended (same-step autoreset, keeping the final observation for SAC).
 *   - Time limits live in the plugin: truncated = 1 once an episode has run
 *     max_episode_steps steps (Gymnasium TimeLimit; terminated and truncated
 *     may both be 1). The host may change the limit through the config.
 *   - Randomness. Each environment owns its RNG; nothing global. reset with
 *     seeds != NULL reseeds environment i with seeds[i]; with NULL its stream
 *     continues. Plugins that use numpy's SeedSequence + PCG64 (flag
 *     ENV_NUMPY_RNG) reset bit-identically to Gymnasium for the same seed.
 *   - Errors. Every int function returns ENV_OK (0) or a negative env_status,
 *     and last_error(env) says what happened. Plugins never exit, abort or
 *     print; a NaN or out-of-range action must not crash them (they clamp or
 *     treat it as the spec of the environment says, and document it).
 *   - Threads. step_range may run concurrently on disjoint ranges [begin,
 *     begin+count) of one handle; create, reset, destroy and the state hooks
 *     are single-threaded.
 */
#ifndef RLT_ENV_H
#define RLT_ENV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENV_ABI_MAJOR 1
#define ENV_ABI_MINOR 0
#define ENV_PLUGIN_SYMBOL "env_plugin_get"

typedef enum env_status {
    ENV_OK = 0,
    ENV_EINVAL = -1, /* bad argument or configuration                   */
    ENV_ENOMEM = -2, /* allocation failed (create only)                 */
    ENV_ESTATE = -3, /* a state buffer that does not fit this env        */
    ENV_ERANGE = -4  /* index outside [0, n)                              */
} env_status;

typedef enum env_space_kind { ENV_SPACE_BOX = 1, ENV_SPACE_DISCRETE = 2 } env_space_kind;

/* A space as data. BOX: float32 values in [low[i], high[i]] (±INFINITY for
 * unbounded), `dim` of them. DISCRETE: one int32 in [0, n). */
typedef struct env_space {
    uint32_t kind;       /* env_space_kind                                   */
    uint32_t dim;        /* BOX: number of values; DISCRETE: 1              */
    int64_t n;           /* DISCRETE: number of actions; BOX: 0             */
    const double *low;   /* BOX: [dim], owned by the plugin, static          */
    const double *high;  /* BOX: [dim]                                       */
} env_space;

/* Capability flags in env_info.flags. */
#define ENV_HAS_STATE 1u /* state_size/get_state/set_state work        */
#define ENV_NUMPY_RNG 2u /* resets match Gymnasium for the same seed   */

typedef struct env_info {
    uint32_t obs_dim, act_dim;   /* flattened sizes (act_dim 1 for Discrete)   */
    int32_t max_episode_steps;   /* the registered limit (e.g. Pendulum-v1 200) */
    uint32_t flags;
    const char *gym_id;          /* the environment it reproduces, e.g. "Pendulum-v1" */
} env_info;

typedef struct env_batch env_batch; /* opaque: n environments */

typedef struct env_plugin {
    uint32_t abi_major, abi_minor; /* ENV_ABI_MAJOR, ENV_ABI_MINOR */
    uint32_t struct_size;          /* sizeof(env_plugin) as the plugin compiled it */
    const char *name;              /* "pendulum" */
    const char *version;           /* the plugin's own version, "1.0" */
    const char *summary;           /* one line for `rlt envs` */

    /* n environments configured by `config` ("key=value;key=value", NULL or
     * "" for defaults; unknown keys are ENV_EINVAL with a message in *err).
     * err (may be NULL) receives a message when create fails, since there is
     * no handle to ask yet. */
    int (*create)(const char *config, uint32_t n, env_batch **out, char *err, size_t errlen);
    void (*destroy)(env_batch *b); /* NULL-safe */
    const char *(*last_error)(const env_batch *b);

    int (*info)(const env_batch *b, env_info *out);
    int (*obs_space)(const env_batch *b, env_space *out);
    int (*act_space)(const env_batch *b, env_space *out);

    /* Reset the environments with mask[i] != 0 (mask NULL: all), writing their
     * rows of obs [n*obs_dim]. seeds NULL: continue each RNG stream; else
     * reseed environment i with seeds[i] first (only masked ones). */
    int (*reset)(env_batch *b, const uint8_t *mask, const uint64_t *seeds, float *obs);

    /* Step environments [begin, begin+count). Arrays are full-batch, indexed
     * by environment: actions [n*act_dim] (float32 for Box, int32 for
     * Discrete), obs [n*obs_dim], reward [n], terminated [n], truncated [n].
     * Never resets. Stepping an environment whose episode ended is
     * ENV_EINVAL (the host must reset it first). */
    int (*step_range)(env_batch *b, uint32_t begin, uint32_t count, const void *actions, float *obs,
                      float *reward, uint8_t *terminated, uint8_t *truncated);

    /* Checkpoint and test hooks: the complete state of environment i (physics,
     * elapsed steps, RNG) as state_size bytes. */
    size_t (*state_size)(const env_batch *b);
    int (*get_state)(const env_batch *b, uint32_t i, void *buf);
    int (*set_state)(env_batch *b, uint32_t i, const void *buf);
} env_plugin;

/* The one symbol a plugin exports. */
typedef const env_plugin *(*env_plugin_get_fn)(uint32_t host_abi_major);

#if defined(__GNUC__)
#define ENV_EXPORT __attribute__((visibility("default")))
#else
#define ENV_EXPORT
#endif

#ifdef __cplusplus
}
#endif
#endif /* RLT_ENV_H */
