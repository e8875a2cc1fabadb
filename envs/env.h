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
#define ENV_ABI_MINOR 1 /* 1: text-task plugins (env_text_plugin) */
#define ENV_PLUGIN_SYMBOL "env_plugin_get"
#define ENV_TEXT_PLUGIN_SYMBOL "env_text_plugin_get"

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

/* ---------------------------------------------------------------------------
 * Text tasks (ABI minor 1). A verifiable-reward task for sequence policies is
 * a plugin exporting ENV_TEXT_PLUGIN_SYMBOL instead of ENV_PLUGIN_SYMBOL:
 *
 *     const env_text_plugin *env_text_plugin_get(uint32_t host_abi_major);
 *
 * It is string in, reward out; tokenization stays in the trainer. Items are
 * procedural: item `seed` (any uint64) always gives the same prompt, so a
 * train/held-out split is a split of seeds. The plugin parses its own prompt
 * to score, so a prompt read back from a dataset scores like a fresh one.
 *
 * Completion format shared by every task: an optional reasoning segment
 * ENV_THINK_BEGIN ... ENV_THINK_END, then the answer. The answer is the text
 * after the last ENV_THINK_END (or the whole completion when there is none),
 * with leading and trailing spaces ignored.
 *
 * Scoring convention (sac_envs.md §5.1): 1.0 correct, a partial score (0.1
 * by default, a task setting) when the answer is well formed but wrong, 0.0
 * otherwise. A score of NaN means "no reward" (the host drops the sample from
 * the statistics and gives it zero advantage); it is not an error.
 * ------------------------------------------------------------------------- */
#define ENV_THINK_BEGIN "<think>"
#define ENV_THINK_END "</think>"

typedef struct env_text_task env_text_task; /* opaque: one configured task */

typedef struct env_text_plugin {
    uint32_t abi_major, abi_minor; /* ENV_ABI_MAJOR, ENV_ABI_MINOR (>= 1) */
    uint32_t struct_size;          /* sizeof(env_text_plugin) as compiled  */
    const char *name;              /* "arithmetic"                          */
    const char *version;
    const char *summary;           /* one line for `rlt envs`               */
    /* Every character a prompt, a demonstration or a correct answer can
     * contain (NUL-terminated, no duplicates, printable ASCII). A char-level
     * tokenizer over it plus the special tokens covers the task. */
    const char *alphabet;
    /* config "key=value;key=value" (NULL or "" for defaults); unknown keys
     * and out-of-range values are ENV_EINVAL with the reason in err. */
    int (*create)(const char *config, env_text_task **out, char *err, size_t errlen);
    void (*destroy)(env_text_task *t); /* NULL-safe */
    const char *(*last_error)(const env_text_task *t);
    /* Upper bounds in characters for this configuration: any prompt, and any
     * demonstration (so a host can size its context). */
    int (*limits)(const env_text_task *t, uint32_t *max_prompt, uint32_t *max_demo);
    /* Item `seed`: write its prompt and a correct demonstration completion
     * (think segment + answer, as the task teaches it; used for SFT), both
     * NUL-terminated. ENV_EINVAL when a buffer is too small. */
    int (*sample)(env_text_task *t, uint64_t seed, char *prompt, size_t prompt_cap, char *demo,
                  size_t demo_cap);
    /* Score `completion` for `prompt` (a prompt this task produced). A prompt
     * the task cannot parse is ENV_EINVAL; a bad completion is a low score. */
    int (*score)(env_text_task *t, const char *prompt, const char *completion, double *reward);
} env_text_plugin;

typedef const env_text_plugin *(*env_text_plugin_get_fn)(uint32_t host_abi_major);

/* The one symbol a control plugin exports. */
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
