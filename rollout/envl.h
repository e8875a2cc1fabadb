/*
 * envl.h -- the environment plugin loader: find an environment plugin (a
 * shared library speaking envs/env.h) by name, dlopen it, check its vtable,
 * and list every plugin on the search path (for `rlt envs`).
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

/* One space as text: "Box(3) low=[-1, -1, -8] high=[1, 1, 8]" (bounds are
 * left out past 8 values) or "Discrete(2)". Returns buf. */
const char *envl_space_str(const env_space *sp, char *buf, size_t cap);

/* What envl_scan found for one NAME.so on the search path. */
typedef struct envl_entry {
    char name[128];           /* the file name without ".so"                        */
    char path[ENVL_PATH_MAX];
    int ok;                   /* 1: loaded and created one environment              */
    int shadowed;             /* 1: a file of the same name earlier in the path wins */
    char error[ENVL_PATH_MAX + 512]; /* why not ok                                  */
    char plugin_name[64];     /* vt->name                                           */
    char version[32];
    char summary[160];
    char gym_id[64];
    env_info info;            /* gym_id points into this entry's gym_id             */
    char obs_space[256];      /* envl_space_str of the spaces with default config   */
    char act_space[256];
} envl_entry;

/* Every *.so on the search path, directory by directory in search order and
 * by name within a directory; each is loaded, asked for one environment with
 * the default config, described and closed. Broken files are listed with
 * ok = 0 and their error. *out is malloc'd (free()); *n its length. Missing
 * or unreadable directories are skipped. */
int envl_scan(const envl_search *s, envl_entry **out, size_t *n, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* RLT_ENVL_H */
