/*
 * envl.h -- the environment plugin loader: find an environment plugin (a
 * shared library speaking envs/env.h) by name, dlopen it, check its vtable,
 * and list every plugin on the search path (for `rlt envs`). Two kinds of
 * plugin share the search path: control environments (ENV_PLUGIN_SYMBOL,
 * envl_open) and text tasks (ENV_TEXT_PLUGIN_SYMBOL, envl_open_text).
 *
 * Search path, in order (the first file found wins):
 *   1. the --env-path directories the caller passes in,
 *   2. the directories of the RLT_ENV_PATH environment variable (colon-
 *      separated; empty entries are skipped),
 *   3. the build's plugin folder, ENVL_BUILTIN_DIR (${CMAKE_BINARY_DIR}/envs,
 *      a compile definition of this library).
 * A plugin called NAME is the file NAME.so in one of those directories. A
 * NAME that contains '/' is a path to the file itself and is not searched.
 *
 * Checks on load (each failure is an error naming the file and the reason;
 * nothing here crashes on a bad plugin):
 *   - the file exists and dlopen(RTLD_NOW | RTLD_LOCAL) accepts it (so an
 *     unresolved symbol fails here, not in the middle of a run),
 *   - it exports ENV_PLUGIN_SYMBOL ("env_plugin_get"),
 *   - env_plugin_get(ENV_ABI_MAJOR) returns a vtable (NULL means the plugin
 *     does not speak this host's major version),
 *   - vtable abi_major == ENV_ABI_MAJOR and struct_size covers every field the
 *     host reads (ENVL_STRUCT_MIN),
 *   - name is set, and the core functions (create, destroy, last_error, info,
 *     obs_space, act_space, reset, step_range) are non-NULL. The state hooks
 *     (state_size, get_state, set_state) may be NULL when the plugin does not
 *     set ENV_HAS_STATE; users of the hooks check (venv_get_state does).
 * A file that exports only the other kind's symbol is refused with a message
 * saying which kind it is; one that exports neither symbol gets a message
 * naming both.
 *
 * Text tasks (envl_open_text) get the same file, dlopen and symbol checks
 * with ENV_TEXT_PLUGIN_SYMBOL ("env_text_plugin_get"), then:
 *   - env_text_plugin_get(ENV_ABI_MAJOR) returns a vtable with abi_major ==
 *     ENV_ABI_MAJOR, abi_minor >= 1 (text tasks arrived in minor 1) and a
 *     struct_size that covers every field up to score (ENVL_TEXT_STRUCT_MIN),
 *   - name is set; alphabet is set and is 1 to 95 distinct printable ASCII
 *     characters (what a char-level tokenizer accepts),
 *   - create, destroy, last_error, limits, sample and score are non-NULL.
 *
 * Errors: functions return 0 or a negative env_status and write one line into
 * (err, errlen) when err is not NULL.
 */
#ifndef RLT_ENVL_H
#define RLT_ENVL_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ENVL_PATH_MAX 1024
#define ENVL_ENV_VAR "RLT_ENV_PATH"
/* The host reads every field up to and including set_state. */
#define ENVL_STRUCT_MIN (offsetof(env_plugin, set_state) + sizeof(((env_plugin *)0)->set_state))

/* A loaded plugin. Plain struct: read the fields, never write them. */
typedef struct envl_plugin {
    const env_plugin *vt;     /* the checked vtable (valid until envl_close)   */
    char path[ENVL_PATH_MAX]; /* the file it came from                          */
    void *dl;                 /* dlopen handle                                  */
} envl_plugin;

/* The search path: dirs[0..n) in search order (malloc'd copies). */
typedef struct envl_search {
    char **dirs;
    size_t n;
} envl_search;

/* Build the search path from `extra` (the --env-path dirs; may be NULL when
 * nextra is 0), RLT_ENV_PATH and ENVL_BUILTIN_DIR. */
int envl_search_init(envl_search *s, const char *const *extra, size_t nextra, char *err,
                     size_t errlen);
void envl_search_free(envl_search *s); /* NULL-safe; leaves s empty */
/* The build's plugin folder this library was compiled with. */
const char *envl_builtin_dir(void);

/* Find NAME on the search path and load it (see the top). *out is a new
 * plugin the caller frees with envl_close. ENV_EINVAL when nothing is found
 * (the message lists the directories searched) or the file fails a check. */
int envl_open(const envl_search *s, const char *name, envl_plugin **out, char *err, size_t errlen);
/* Load one file by path, with the same checks. */
int envl_open_file(const char *path, envl_plugin **out, char *err, size_t errlen);
/* dlclose and free (NULL-safe). Destroy every env_batch of p first. */
void envl_close(envl_plugin *p);

/* Create n environments with p->vt->create; a failure (or a plugin that
 * reports success without a handle) names the file and the plugin's reason. */
int envl_create(const envl_plugin *p, const char *config, uint32_t n, env_batch **out, char *err,
                size_t errlen);

/* ---- text tasks ------------------------------------------------------------ */

/* The host reads every field of env_text_plugin up to and including score. */
#define ENVL_TEXT_STRUCT_MIN (offsetof(env_text_plugin, score) + sizeof(((env_text_plugin *)0)->score))

/* A loaded text-task plugin. Plain struct: read the fields, never write them. */
typedef struct envl_text {
    const env_text_plugin *vt; /* the checked vtable (valid until envl_close_text) */
    char path[ENVL_PATH_MAX];  /* the file it came from                            */
    void *dl;                  /* dlopen handle                                    */
} envl_text;

/* Find NAME on the search path (as envl_open does) and load it as a text
 * task. *out is freed with envl_close_text. */
int envl_open_text(const envl_search *s, const char *name, envl_text **out, char *err, size_t errlen);
/* Load one file by path, with the same checks. */
int envl_open_text_file(const char *path, envl_text **out, char *err, size_t errlen);
/* dlclose and free (NULL-safe). Destroy every env_text_task of p first. */
void envl_close_text(envl_text *p);

/* Create a task with p->vt->create (config NULL or "" for the defaults); a
 * failure names the file, the plugin, the config and the plugin's reason. */
int envl_text_create(const envl_text *p, const char *config, env_text_task **out, char *err, size_t errlen);

/* The checked forms of limits, sample and score: a failure carries the
 * file, the plugin's last_error, and for sample the seed. sample also
 * checks what the plugin wrote: NUL-terminated within the buffers, and only
 * alphabet characters besides ENV_THINK_BEGIN / ENV_THINK_END (a plugin that
 * breaks this is reported, not passed on to the tokenizer). score refuses an
 * infinite reward (NaN is allowed: "no reward"). */
int envl_text_limits(const envl_text *p, const env_text_task *t, uint32_t *max_prompt, uint32_t *max_demo,
                     char *err, size_t errlen);
int envl_text_sample(const envl_text *p, env_text_task *t, uint64_t seed, char *prompt, size_t prompt_cap,
                     char *demo, size_t demo_cap, char *err, size_t errlen);
int envl_text_score(const envl_text *p, env_text_task *t, const char *prompt, const char *completion,
                    double *reward, char *err, size_t errlen);

/* ---- description ------------------------------------------------------------ */

/* One space as text: "Box(3) low=[-1, -1, -8] high=[1, 1, 8]" (bounds are
 * left out past 8 values) or "Discrete(2)". Returns buf. */
const char *envl_space_str(const env_space *sp, char *buf, size_t cap);

/* The kind of plugin a file is, by the symbol it exports. */
typedef enum envl_kind {
    ENVL_KIND_UNKNOWN = 0, /* did not load, or exports neither symbol */
    ENVL_KIND_CONTROL = 1, /* ENV_PLUGIN_SYMBOL                        */
    ENVL_KIND_TEXT = 2     /* ENV_TEXT_PLUGIN_SYMBOL                   */
} envl_kind;

/* "control", "text" or "unknown". */
const char *envl_kind_name(int kind);

/* What envl_scan found for one NAME.so on the search path. */
typedef struct envl_entry {
    char name[128];           /* the file name without ".so"                        */
    char path[ENVL_PATH_MAX];
    int kind;                 /* envl_kind (a file exporting both is a control one)  */
    int ok;                   /* 1: loaded and created one environment (or task)    */
    int shadowed;             /* 1: a file of the same name earlier in the path wins */
    char error[ENVL_PATH_MAX + 512]; /* why not ok                                  */
    char plugin_name[64];     /* vt->name                                           */
    char version[32];
    char summary[160];
    /* control environments */
    char gym_id[64];
    env_info info;            /* gym_id points into this entry's gym_id             */
    char obs_space[256];      /* envl_space_str of the spaces with default config   */
    char act_space[256];
    /* text tasks (default config) */
    char alphabet[128];
    uint32_t max_prompt, max_demo;  /* limits()                                     */
    char example_prompt[128];       /* item 0 (cut to fit, with "...")               */
    char example_demo[256];
} envl_entry;

/* Every *.so on the search path, directory by directory in search order and
 * by name within a directory; each is loaded, asked for one environment (a
 * control plugin) or one task and its item 0 (a text plugin) with the
 * default config, described and closed. Broken files are listed with ok = 0
 * and their error. *out is malloc'd (free()); *n its length. Missing or
 * unreadable directories are skipped. */
int envl_scan(const envl_search *s, envl_entry **out, size_t *n, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* RLT_ENVL_H */
