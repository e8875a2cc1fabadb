/*
 * envl.c -- environment plugin loader: search path, dlopen, vtable checks,
 * and the scan behind `rlt envs`. See envl.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "envl.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef ENVL_BUILTIN_DIR
#define ENVL_BUILTIN_DIR "envs"
#endif

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *envl_builtin_dir(void) { return ENVL_BUILTIN_DIR; }

/* ---- search path --------------------------------------------------------- */

static int push_dir(envl_search *s, const char *dir, size_t len) {
    if (len == 0) return 0; /* "a::b" and a trailing ':' add nothing */
    char **d = realloc(s->dirs, (s->n + 1) * sizeof *d);
    if (!d) return ENV_ENOMEM;
    s->dirs = d;
    char *copy = malloc(len + 1);
    if (!copy) return ENV_ENOMEM;
    memcpy(copy, dir, len);
    copy[len] = '\0';
    s->dirs[s->n++] = copy;
    return 0;
}

void envl_search_free(envl_search *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->dirs[i]);
    free(s->dirs);
    s->dirs = NULL;
    s->n = 0;
}

int envl_search_init(envl_search *s, const char *const *extra, size_t nextra, char *err,
                     size_t errlen) {
    if (!s) return fail(err, errlen, ENV_EINVAL, "envl_search_init: NULL search path");
    s->dirs = NULL;
    s->n = 0;
    int rc = 0;
    for (size_t i = 0; i < nextra && rc == 0; i++)
        if (extra[i]) rc = push_dir(s, extra[i], strlen(extra[i]));
    const char *env = getenv(ENVL_ENV_VAR);
    while (rc == 0 && env && *env) {
        const char *colon = strchr(env, ':');
        size_t len = colon ? (size_t)(colon - env) : strlen(env);
        rc = push_dir(s, env, len);
        env = colon ? colon + 1 : NULL;
    }
    if (rc == 0) rc = push_dir(s, ENVL_BUILTIN_DIR, strlen(ENVL_BUILTIN_DIR));
    if (rc < 0) {
        envl_search_free(s);
        return fail(err, errlen, rc, "out of memory building the plugin search path");
    }
    return 0;
}

/* ---- loading ------------------------------------------------------------- */

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The checks every plugin file passes first: a path, a regular file, and
 * dlopen(RTLD_NOW | RTLD_LOCAL). `what` names the kind in messages. */
static int open_dl(const char *path, const char *what, void **dl, char *err, size_t errlen) {
    *dl = NULL;
    if (!path || !*path) return fail(err, errlen, ENV_EINVAL, "%s: empty path", what);
    if (strlen(path) >= ENVL_PATH_MAX) return fail(err, errlen, ENV_EINVAL, "%s path too long: %.64s...", what, path);
    struct stat st;
    if (stat(path, &st) != 0)
        return fail(err, errlen, ENV_EINVAL, "%s: cannot load %s: %s", path, what, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(err, errlen, ENV_EINVAL, "%s: cannot load %s: not a regular file", path, what);
    dlerror(); /* clear */
    *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*dl) {
        const char *why = dlerror();
        return fail(err, errlen, ENV_EINVAL, "%s: dlopen failed: %s", path, why ? why : "unknown reason");
    }
    return 0;
}

static void *find_symbol(void *dl, const char *name) {
    dlerror();
    return dlsym(dl, name);
}

/* The message for a file that lacks the symbol of the kind asked for: it
 * names the kind the file is, or both symbols when it exports neither. */
static int wrong_kind(void *dl, const char *path, int want_text, char *err, size_t errlen) {
    const char *other = want_text ? ENV_PLUGIN_SYMBOL : ENV_TEXT_PLUGIN_SYMBOL;
    if (find_symbol(dl, other))
        return fail(err, errlen, ENV_EINVAL, "%s: a %s plugin (it exports %s()), not a %s", path,
                    want_text ? "control environment" : "text-task", other,
                    want_text ? "text task" : "control environment");
    return fail(err, errlen, ENV_EINVAL,
                "%s: not an environment plugin: it does not export %s() (control environments) or %s() (text "
                "tasks)",
                path, ENV_PLUGIN_SYMBOL, ENV_TEXT_PLUGIN_SYMBOL);
}

/* The first NULL core function's name, or NULL when all are set. */
static const char *missing_function(const env_plugin *vt) {
    if (!vt->create) return "create";
    if (!vt->destroy) return "destroy";
    if (!vt->last_error) return "last_error";
    if (!vt->info) return "info";
    if (!vt->obs_space) return "obs_space";
    if (!vt->act_space) return "act_space";
    if (!vt->reset) return "reset";
    if (!vt->step_range) return "step_range";
    return NULL;
}

int envl_open_file(const char *path, envl_plugin **out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, ENV_EINVAL, "envl_open_file: NULL out");
    *out = NULL;
    void *dl = NULL;
    int rc = open_dl(path, "environment plugin", &dl, err, errlen);
    if (rc < 0) return rc;
    rc = ENV_EINVAL;
    void *sym = find_symbol(dl, ENV_PLUGIN_SYMBOL);
    if (!sym) {
        wrong_kind(dl, path, 0, err, errlen);
        goto fail_close;
    }
    env_plugin_get_fn get;
    memcpy(&get, &sym, sizeof get); /* object pointer -> function pointer, the POSIX way */
    const env_plugin *vt = get(ENV_ABI_MAJOR);
    if (!vt) {
        fail(err, errlen, rc, "%s: %s(%d) returned NULL: the plugin does not speak this host's ABI major %d",
             path, ENV_PLUGIN_SYMBOL, ENV_ABI_MAJOR, ENV_ABI_MAJOR);
        goto fail_close;
    }
    if (vt->abi_major != ENV_ABI_MAJOR) {
        fail(err, errlen, rc, "%s: wrong ABI major version %u (this host speaks %d; rebuild the plugin against envs/env.h)",
             path, vt->abi_major, ENV_ABI_MAJOR);
        goto fail_close;
    }
    if (vt->struct_size < ENVL_STRUCT_MIN) {
        fail(err, errlen, rc, "%s: vtable struct_size %u is smaller than the %zu bytes this host reads (ABI %u.%u)",
             path, vt->struct_size, (size_t)ENVL_STRUCT_MIN, vt->abi_major, vt->abi_minor);
        goto fail_close;
    }
    if (!vt->name || !*vt->name) {
        fail(err, errlen, rc, "%s: vtable has no name", path);
        goto fail_close;
    }
    const char *missing = missing_function(vt);
    if (missing) {
        fail(err, errlen, rc, "%s: plugin '%s' has a NULL %s function", path, vt->name, missing);
        goto fail_close;
    }
    envl_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        fail(err, errlen, ENV_ENOMEM, "%s: out of memory", path);
        rc = ENV_ENOMEM;
        goto fail_close;
    }
    p->vt = vt;
    p->dl = dl;
    snprintf(p->path, sizeof p->path, "%s", path);
    *out = p;
    return 0;
fail_close:
    dlclose(dl);
    return rc;
}

void envl_close(envl_plugin *p) {
    if (!p) return;
    if (p->dl) dlclose(p->dl);
    free(p);
}

/* NAME.so on the search path into path [ENVL_PATH_MAX]; `what` names the
 * kind in the message when nothing is found. */
static int find_on_path(const envl_search *s, const char *name, const char *what, char *path, char *err,
                        size_t errlen) {
    size_t nd = s ? s->n : 0;
    for (size_t i = 0; i < nd; i++) {
        int w = snprintf(path, ENVL_PATH_MAX, "%s/%s.so", s->dirs[i], name);
        if (w < 0 || (size_t)w >= ENVL_PATH_MAX) continue;
        if (is_regular_file(path)) return 0;
    }
    /* Not found: say where we looked. */
    char where[1024];
    size_t used = 0;
    where[0] = '\0';
    for (size_t i = 0; i < nd && used < sizeof where; i++) {
        int w = snprintf(where + used, sizeof where - used, "%s%s", i ? ", " : "", s->dirs[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return fail(err, errlen, ENV_EINVAL,
                "%s '%s' not found: no %s.so in %s (set --env-path or " ENVL_ENV_VAR
                "; `rlt envs` lists what is found)",
                what, name, name, nd ? where : "(empty search path)");
}

int envl_open(const envl_search *s, const char *name, envl_plugin **out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, ENV_EINVAL, "envl_open: NULL out");
    *out = NULL;
    if (!name || !*name) return fail(err, errlen, ENV_EINVAL, "environment plugin: empty name");
    if (strchr(name, '/')) return envl_open_file(name, out, err, errlen);
    char path[ENVL_PATH_MAX];
    int rc = find_on_path(s, name, "environment plugin", path, err, errlen);
    return rc < 0 ? rc : envl_open_file(path, out, err, errlen);
}

int envl_create(const envl_plugin *p, const char *config, uint32_t n, env_batch **out, char *err,
                size_t errlen) {
    if (!out) return fail(err, errlen, ENV_EINVAL, "envl_create: NULL out");
    *out = NULL;
    if (!p) return fail(err, errlen, ENV_EINVAL, "envl_create: NULL plugin");
    if (n == 0) return fail(err, errlen, ENV_EINVAL, "%s: cannot create 0 environments", p->path);
    char why[512];
    why[0] = '\0';
    env_batch *b = NULL;
    int rc = p->vt->create(config ? config : "", n, &b, why, sizeof why);
    why[sizeof why - 1] = '\0';
    if (rc != ENV_OK || !b) {
        if (b) p->vt->destroy(b);
        return fail(err, errlen, rc < 0 ? rc : ENV_EINVAL, "%s: plugin '%s' could not create %u environment%s%s%s%s: %s",
                    p->path, p->vt->name, n, n == 1 ? "" : "s", config && *config ? " (config \"" : "",
                    config && *config ? config : "", config && *config ? "\")" : "",
                    why[0] ? why : (rc == ENV_OK ? "create returned ENV_OK without a handle" : "no reason given"));
    }
    *out = b;
    return 0;
}

/* ---- text tasks ------------------------------------------------------------ */

/* 'c' or \xNN into buf [8]. */
static const char *show_char(unsigned char c, char *buf) {
    if (c >= 0x20 && c <= 0x7E && c != '\'')
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "\\x%02x", c);
    return buf;
}

/* Why `a` is not a valid alphabet (into why [cap]), or NULL when it is. */
static const char *alphabet_problem(const char *a, char *why, size_t cap) {
    size_t n = strlen(a);
    if (n == 0) return snprintf(why, cap, "is empty"), why;
    if (n > 95) return snprintf(why, cap, "has %zu characters; printable ASCII has 95", n), why;
    int seen[256] = {0};
    char shown[8];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c < 0x20 || c > 0x7E)
            return snprintf(why, cap, "has %s at offset %zu, which is not printable ASCII", show_char(c, shown), i),
                   why;
        if (seen[c]) return snprintf(why, cap, "repeats %s (offset %zu)", show_char(c, shown), i), why;
        seen[c] = 1;
    }
    return NULL;
}

static const char *missing_text_function(const env_text_plugin *vt) {
    if (!vt->create) return "create";
    if (!vt->destroy) return "destroy";
    if (!vt->last_error) return "last_error";
    if (!vt->limits) return "limits";
    if (!vt->sample) return "sample";
    if (!vt->score) return "score";
    return NULL;
}

int envl_open_text_file(const char *path, envl_text **out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, ENV_EINVAL, "envl_open_text_file: NULL out");
    *out = NULL;
    void *dl = NULL;
    int rc = open_dl(path, "text-task plugin", &dl, err, errlen);
    if (rc < 0) return rc;
    rc = ENV_EINVAL;
    void *sym = find_symbol(dl, ENV_TEXT_PLUGIN_SYMBOL);
    if (!sym) {
        wrong_kind(dl, path, 1, err, errlen);
        goto fail_close;
    }
    env_text_plugin_get_fn get;
    memcpy(&get, &sym, sizeof get);
    const env_text_plugin *vt = get(ENV_ABI_MAJOR);
    if (!vt) {
        fail(err, errlen, rc, "%s: %s(%d) returned NULL: the plugin does not speak this host's ABI major %d", path,
             ENV_TEXT_PLUGIN_SYMBOL, ENV_ABI_MAJOR, ENV_ABI_MAJOR);
        goto fail_close;
    }
    if (vt->abi_major != ENV_ABI_MAJOR) {
        fail(err, errlen, rc, "%s: wrong ABI major version %u (this host speaks %d; rebuild the plugin against envs/env.h)",
             path, vt->abi_major, ENV_ABI_MAJOR);
        goto fail_close;
    }
    if (vt->abi_minor < 1) {
        fail(err, errlen, rc,
             "%s: ABI minor version %u has no text tasks (they need minor >= 1; rebuild the plugin against envs/env.h)",
             path, vt->abi_minor);
        goto fail_close;
    }
    if (vt->struct_size < ENVL_TEXT_STRUCT_MIN) {
        fail(err, errlen, rc, "%s: vtable struct_size %u is smaller than the %zu bytes this host reads (ABI %u.%u)",
             path, vt->struct_size, (size_t)ENVL_TEXT_STRUCT_MIN, vt->abi_major, vt->abi_minor);
        goto fail_close;
    }
    if (!vt->name || !*vt->name) {
        fail(err, errlen, rc, "%s: vtable has no name", path);
        goto fail_close;
    }
    const char *missing = missing_text_function(vt);
    if (missing) {
        fail(err, errlen, rc, "%s: text task '%s' has a NULL %s function", path, vt->name, missing);
        goto fail_close;
    }
    if (!vt->alphabet) {
        fail(err, errlen, rc, "%s: text task '%s' has a NULL alphabet", path, vt->name);
        goto fail_close;
    }
    char why[128];
    if (alphabet_problem(vt->alphabet, why, sizeof why)) {
        fail(err, errlen, rc, "%s: text task '%s': its alphabet \"%.100s\" %s", path, vt->name, vt->alphabet, why);
        goto fail_close;
    }
    envl_text *p = calloc(1, sizeof *p);
    if (!p) {
        fail(err, errlen, ENV_ENOMEM, "%s: out of memory", path);
        rc = ENV_ENOMEM;
        goto fail_close;
    }
    p->vt = vt;
    p->dl = dl;
    snprintf(p->path, sizeof p->path, "%s", path);
    *out = p;
    return 0;
fail_close:
    dlclose(dl);
    return rc;
}

void envl_close_text(envl_text *p) {
    if (!p) return;
    if (p->dl) dlclose(p->dl);
    free(p);
}

int envl_open_text(const envl_search *s, const char *name, envl_text **out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, ENV_EINVAL, "envl_open_text: NULL out");
    *out = NULL;
    if (!name || !*name) return fail(err, errlen, ENV_EINVAL, "text-task plugin: empty name");
    if (strchr(name, '/')) return envl_open_text_file(name, out, err, errlen);
    char path[ENVL_PATH_MAX];
    int rc = find_on_path(s, name, "text-task plugin", path, err, errlen);
    return rc < 0 ? rc : envl_open_text_file(path, out, err, errlen);
}

int envl_text_create(const envl_text *p, const char *config, env_text_task **out, char *err, size_t errlen) {
    if (!out) return fail(err, errlen, ENV_EINVAL, "envl_text_create: NULL out");
    *out = NULL;
    if (!p) return fail(err, errlen, ENV_EINVAL, "envl_text_create: NULL plugin");
    char why[512];
    why[0] = '\0';
    env_text_task *t = NULL;
    int rc = p->vt->create(config ? config : "", &t, why, sizeof why);
    why[sizeof why - 1] = '\0';
    if (rc != ENV_OK || !t) {
        if (t) p->vt->destroy(t);
        int has_config = config && *config;
        return fail(err, errlen, rc < 0 ? rc : ENV_EINVAL, "%s: text task '%s' could not be created%s%s%s: %s",
                    p->path, p->vt->name, has_config ? " (config \"" : "", has_config ? config : "",
                    has_config ? "\")" : "",
                    why[0] ? why : (rc == ENV_OK ? "create returned ENV_OK without a handle" : "no reason given"));
    }
    *out = t;
    return 0;
}

/* The plugin's last_error for t, never NULL. */
static const char *task_error(const envl_text *p, const env_text_task *t) {
    const char *why = p->vt->last_error(t);
    return why && *why ? why : "no reason given";
}

int envl_text_limits(const envl_text *p, const env_text_task *t, uint32_t *max_prompt, uint32_t *max_demo,
                     char *err, size_t errlen) {
    if (!p || !t || !max_prompt || !max_demo) return fail(err, errlen, ENV_EINVAL, "envl_text_limits: NULL argument");
    int rc = p->vt->limits(t, max_prompt, max_demo);
    if (rc != ENV_OK)
        return fail(err, errlen, rc < 0 ? rc : ENV_EINVAL, "%s: text task '%s': limits failed: %s", p->path,
                    p->vt->name, task_error(p, t));
    return 0;
}

/* 0 when s [cap] is NUL-terminated and holds only alphabet characters and
 * the think strings; else a message naming `which` and the offset. */
static int check_text(const envl_text *p, uint64_t seed, const char *which, const char *s, size_t cap, char *err,
                      size_t errlen) {
    if (!memchr(s, '\0', cap))
        return fail(err, errlen, ENV_EINVAL, "%s: text task '%s' sample (seed %llu): the %s is not NUL-terminated "
                    "within its %zu-byte buffer", p->path, p->vt->name, (unsigned long long)seed, which, cap);
    size_t nb = strlen(ENV_THINK_BEGIN), ne = strlen(ENV_THINK_END);
    for (size_t i = 0; s[i];) {
        if (strncmp(s + i, ENV_THINK_BEGIN, nb) == 0) {
            i += nb;
        } else if (strncmp(s + i, ENV_THINK_END, ne) == 0) {
            i += ne;
        } else if (strchr(p->vt->alphabet, s[i])) {
            i++;
        } else {
            char shown[8];
            return fail(err, errlen, ENV_EINVAL, "%s: text task '%s' sample (seed %llu): %s at offset %zu of the %s "
                        "is not in the plugin's alphabet \"%s\"", p->path, p->vt->name, (unsigned long long)seed,
                        show_char((unsigned char)s[i], shown), i, which, p->vt->alphabet);
        }
    }
    return 0;
}

int envl_text_sample(const envl_text *p, env_text_task *t, uint64_t seed, char *prompt, size_t prompt_cap,
                     char *demo, size_t demo_cap, char *err, size_t errlen) {
    if (!p || !t || !prompt || !demo || !prompt_cap || !demo_cap)
        return fail(err, errlen, ENV_EINVAL, "envl_text_sample: NULL argument or empty buffer");
    int rc = p->vt->sample(t, seed, prompt, prompt_cap, demo, demo_cap);
    if (rc != ENV_OK)
        return fail(err, errlen, rc < 0 ? rc : ENV_EINVAL, "%s: text task '%s' sample (seed %llu) failed: %s",
                    p->path, p->vt->name, (unsigned long long)seed, task_error(p, t));
    rc = check_text(p, seed, "prompt", prompt, prompt_cap, err, errlen);
    if (rc == 0) rc = check_text(p, seed, "demonstration", demo, demo_cap, err, errlen);
    return rc;
}

int envl_text_score(const envl_text *p, env_text_task *t, const char *prompt, const char *completion,
                    double *reward, char *err, size_t errlen) {
    if (!p || !t || !prompt || !completion || !reward)
        return fail(err, errlen, ENV_EINVAL, "envl_text_score: NULL argument");
    int rc = p->vt->score(t, prompt, completion, reward);
    if (rc != ENV_OK)
        return fail(err, errlen, rc < 0 ? rc : ENV_EINVAL, "%s: text task '%s' score failed: %s", p->path,
                    p->vt->name, task_error(p, t));
    if (isinf(*reward))
        return fail(err, errlen, ENV_EINVAL, "%s: text task '%s' score returned an infinite reward (%g)", p->path,
                    p->vt->name, *reward);
    return 0;
}

/* ---- description --------------------------------------------------------- */

static size_t append(char *buf, size_t cap, size_t used, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static size_t append(char *buf, size_t cap, size_t used, const char *fmt, ...) {
    if (used >= cap) return used;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + used, cap - used, fmt, ap);
    va_end(ap);
    if (w < 0) return used;
    return used + (size_t)w >= cap ? cap - 1 : used + (size_t)w;
}

static size_t append_bounds(char *buf, size_t cap, size_t used, const double *v, uint32_t dim) {
    used = append(buf, cap, used, "[");
    for (uint32_t i = 0; i < dim; i++) used = append(buf, cap, used, "%s%g", i ? ", " : "", v[i]);
    return append(buf, cap, used, "]");
}

const char *envl_space_str(const env_space *sp, char *buf, size_t cap) {
    if (!buf || cap == 0) return buf;
    buf[0] = '\0';
    if (!sp) return buf;
    if (sp->kind == ENV_SPACE_DISCRETE) {
        append(buf, cap, 0, "Discrete(%lld)", (long long)sp->n);
    } else if (sp->kind == ENV_SPACE_BOX) {
        size_t used = append(buf, cap, 0, "Box(%u)", sp->dim);
        if (sp->low && sp->high && sp->dim <= 8) {
            used = append(buf, cap, used, " low=");
            used = append_bounds(buf, cap, used, sp->low, sp->dim);
            used = append(buf, cap, used, " high=");
            append_bounds(buf, cap, used, sp->high, sp->dim);
        }
    } else {
        append(buf, cap, 0, "unknown space kind %u", sp->kind);
    }
    return buf;
}

/* The most characters describe_text will allocate for item 0. */
#define ENVL_TEXT_LIMIT_MAX (1u << 24)

/* ---- scan ---------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The NAME of each "NAME.so" in dir, sorted; malloc'd. */
static int list_so(const char *dir, char ***names, size_t *n) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= 3 || strcmp(de->d_name + len - 3, ".so") != 0) continue;
        char **grown = realloc(*names, (*n + 1) * sizeof *grown);
        if (!grown) {
            rc = ENV_ENOMEM;
            break;
        }
        *names = grown;
        char *name = malloc(len - 2);
        if (!name) {
            rc = ENV_ENOMEM;
            break;
        }
        memcpy(name, de->d_name, len - 3);
        name[len - 3] = '\0';
        (*names)[(*n)++] = name;
    }
    closedir(d);
    if (*n) qsort(*names, *n, sizeof **names, cmp_str);
    return rc;
}

const char *envl_kind_name(int kind) {
    return kind == ENVL_KIND_CONTROL ? "control" : kind == ENVL_KIND_TEXT ? "text" : "unknown";
}

/* Which symbol the file exports (control first); UNKNOWN when it does not
 * load (the open that follows reports why). */
static int probe_kind(const char *path) {
    void *dl = NULL;
    if (open_dl(path, "plugin", &dl, NULL, 0) < 0) return ENVL_KIND_UNKNOWN;
    int kind = find_symbol(dl, ENV_PLUGIN_SYMBOL)        ? ENVL_KIND_CONTROL
               : find_symbol(dl, ENV_TEXT_PLUGIN_SYMBOL) ? ENVL_KIND_TEXT
                                                         : ENVL_KIND_UNKNOWN;
    dlclose(dl);
    return kind;
}

/* s into out [cap], cut with "..." when it does not fit. */
static void copy_cut(char *out, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n < cap) {
        memcpy(out, s, n + 1);
    } else {
        snprintf(out, cap, "%.*s...", (int)(cap - 4), s);
    }
}

static void describe_control(envl_entry *e) {
    envl_plugin *p = NULL;
    if (envl_open_file(e->path, &p, e->error, sizeof e->error) < 0) return;
    snprintf(e->plugin_name, sizeof e->plugin_name, "%s", p->vt->name);
    snprintf(e->version, sizeof e->version, "%s", p->vt->version ? p->vt->version : "");
    snprintf(e->summary, sizeof e->summary, "%s", p->vt->summary ? p->vt->summary : "");
    env_batch *b = NULL;
    if (envl_create(p, NULL, 1, &b, e->error, sizeof e->error) < 0) goto done;
    env_space os, as;
    memset(&os, 0, sizeof os);
    memset(&as, 0, sizeof as);
    if (p->vt->info(b, &e->info) != ENV_OK || p->vt->obs_space(b, &os) != ENV_OK ||
        p->vt->act_space(b, &as) != ENV_OK) {
        const char *why = p->vt->last_error(b);
        snprintf(e->error, sizeof e->error, "%s: info/space query failed: %s", e->path,
                 why && *why ? why : "no reason given");
        goto done;
    }
    snprintf(e->gym_id, sizeof e->gym_id, "%s", e->info.gym_id ? e->info.gym_id : "");
    e->info.gym_id = e->gym_id; /* the plugin's string dies with dlclose */
    envl_space_str(&os, e->obs_space, sizeof e->obs_space);
    envl_space_str(&as, e->act_space, sizeof e->act_space);
    e->ok = 1;
done:
    if (b) p->vt->destroy(b);
    envl_close(p);
}

/* A text task: its alphabet, limits and item 0, with the default config. */
static void describe_text(envl_entry *e) {
    envl_text *p = NULL;
    env_text_task *t = NULL;
    char *prompt = NULL, *demo = NULL;
    if (envl_open_text_file(e->path, &p, e->error, sizeof e->error) < 0) return;
    snprintf(e->plugin_name, sizeof e->plugin_name, "%s", p->vt->name);
    snprintf(e->version, sizeof e->version, "%s", p->vt->version ? p->vt->version : "");
    snprintf(e->summary, sizeof e->summary, "%s", p->vt->summary ? p->vt->summary : "");
    copy_cut(e->alphabet, sizeof e->alphabet, p->vt->alphabet);
    if (envl_text_create(p, NULL, &t, e->error, sizeof e->error) < 0 ||
        envl_text_limits(p, t, &e->max_prompt, &e->max_demo, e->error, sizeof e->error) < 0)
        goto done;
    if (e->max_prompt > ENVL_TEXT_LIMIT_MAX || e->max_demo > ENVL_TEXT_LIMIT_MAX) {
        snprintf(e->error, sizeof e->error, "%s: text task '%s': limits() announces %u + %u characters; more than "
                 "%u is not a plausible item", e->path, p->vt->name, e->max_prompt, e->max_demo, ENVL_TEXT_LIMIT_MAX);
        goto done;
    }
    prompt = malloc((size_t)e->max_prompt + 1);
    demo = malloc((size_t)e->max_demo + 1);
    if (!prompt || !demo) {
        snprintf(e->error, sizeof e->error, "%s: out of memory for an item of %u + %u bytes", e->path,
                 e->max_prompt, e->max_demo);
        goto done;
    }
    /* buffers of exactly the announced limits: a plugin whose limits are too
     * small fails here, as it would in a run */
    if (envl_text_sample(p, t, 0, prompt, (size_t)e->max_prompt + 1, demo, (size_t)e->max_demo + 1, e->error,
                         sizeof e->error) < 0)
        goto done;
    copy_cut(e->example_prompt, sizeof e->example_prompt, prompt);
    copy_cut(e->example_demo, sizeof e->example_demo, demo);
    e->ok = 1;
done:
    free(prompt);
    free(demo);
    if (t) p->vt->destroy(t);
    envl_close_text(p);
}

static void describe(envl_entry *e) {
    e->kind = probe_kind(e->path);
    if (e->kind == ENVL_KIND_TEXT)
        describe_text(e);
    else /* control, or the open reports why the file is not a plugin */
        describe_control(e);
}

int envl_scan(const envl_search *s, envl_entry **out, size_t *n, char *err, size_t errlen) {
    if (!out || !n) return fail(err, errlen, ENV_EINVAL, "envl_scan: NULL output");
    *out = NULL;
    *n = 0;
    envl_entry *v = NULL;
    size_t count = 0;
    for (size_t di = 0; s && di < s->n; di++) {
        char **names = NULL;
        size_t nn = 0;
        if (list_so(s->dirs[di], &names, &nn) < 0) {
            for (size_t k = 0; k < nn; k++) free(names[k]);
            free(names);
            free(v);
            return fail(err, errlen, ENV_ENOMEM, "out of memory listing %s", s->dirs[di]);
        }
        for (size_t k = 0; k < nn; k++) {
            envl_entry *grown = realloc(v, (count + 1) * sizeof *grown);
            if (!grown) {
                for (; k < nn; k++) free(names[k]);
                free(names);
                free(v);
                return fail(err, errlen, ENV_ENOMEM, "out of memory listing plugins");
            }
            v = grown;
            envl_entry *e = &v[count++];
            memset(e, 0, sizeof *e);
            snprintf(e->name, sizeof e->name, "%s", names[k]);
            snprintf(e->path, sizeof e->path, "%s/%s.so", s->dirs[di], names[k]);
            for (size_t j = 0; j + 1 < count; j++)
                if (strcmp(v[j].name, e->name) == 0) e->shadowed = 1;
            describe(e);
            free(names[k]);
        }
        free(names);
    }
    *out = v;
    *n = count;
    return 0;
}
