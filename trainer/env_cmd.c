/*
 * env_cmd.c -- `rlt envs` (list the plugins found: control environments and
 * text tasks) and `rlt env replay` (step one environment through stored
 * actions and write the trajectory). See env_cmd.h.
 *
 * Replay files (HDF5, read with h5py without docs):
 *   in:  actions [N, act_dim] (or [N] when act_dim is 1): float32/float64 for
 *        a Box action space, an integer type for Discrete (each in [0, n)).
 *   out: obs [steps+1, obs_dim] float32 (obs[0] is the reset observation for
 *        the seed, obs[t+1] the observation after action t -- the final one
 *        when the episode ended there), reward [steps] float32, terminated
 *        [steps] and truncated [steps] bool; root attributes env, gym_id,
 *        plugin, config, seed, actions_file, requested_steps, steps,
 *        ended_early, episode_return.
 * Replay stops early when the episode ends (terminated or truncated) before
 * the actions run out: it says so and writes the steps taken (steps < N).
 */
#define _POSIX_C_SOURCE 200809L

#include "env_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envl.h"
#include "h5io.h"
#include "venv.h"

#define EXIT_OK_ 0
#define EXIT_FAIL_ 1
#define EXIT_USAGE_ 2
#define MAX_ENV_PATHS 64
#define MAX_SETS 256

/* ---- argument parsing shared by both commands ---------------------------- */

typedef struct env_args {
    const char *positional[4];
    int npositional;
    const char *env_paths[MAX_ENV_PATHS];
    int nenv_paths;
    const char *sets[MAX_SETS];
    int nsets;
    const char *seed, *actions, *out;
    int help;
} env_args;

/* allowed: " env-path set seed ... " (space-separated option names). */
static int parse_args(int argc, char **argv, env_args *a, const char *allowed) {
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            a->help = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            if (a->npositional == 4) {
                fprintf(stderr, "error: unexpected argument '%s'\n", arg);
                return -1;
            }
            a->positional[a->npositional++] = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        char name[40], token[48];
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, arg, len);
        name[len] = '\0';
        snprintf(token, sizeof token, " %s ", name + 2);
        if (!strstr(allowed, token)) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", name);
            return -1;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "error: option '%s' needs a value\n", name);
            return -1;
        }
        if (!strcmp(name, "--env-path")) {
            if (a->nenv_paths == MAX_ENV_PATHS) {
                fprintf(stderr, "error: more than %d --env-path options\n", MAX_ENV_PATHS);
                return -1;
            }
            a->env_paths[a->nenv_paths++] = val;
        } else if (!strcmp(name, "--set")) {
            if (a->nsets == MAX_SETS) {
                fprintf(stderr, "error: more than %d --set options\n", MAX_SETS);
                return -1;
            }
            a->sets[a->nsets++] = val;
        } else if (!strcmp(name, "--seed")) {
            a->seed = val;
        } else if (!strcmp(name, "--actions")) {
            a->actions = val;
        } else if (!strcmp(name, "--out")) {
            a->out = val;
        }
    }
    return 0;
}

static void print_search(FILE *out, const envl_search *s) {
    fprintf(out, "search path (first match wins): ");
    for (size_t i = 0; i < s->n; i++) fprintf(out, "%s%s", i ? ":" : "", s->dirs[i]);
    fprintf(out, "\n");
}

/* ---- rlt envs ------------------------------------------------------------- */

static void list_help(FILE *out) {
    fprintf(out,
            "usage: rlt envs [--env-path DIR]...\n\n"
            "Lists every plugin (NAME.so) on the search path. Control environments show their gym id,\n"
            "observation and action spaces, time limit (max_episode_steps) and file; text tasks show their\n"
            "summary, alphabet, length limits and item 0 (prompt -> demonstration) with the default\n"
            "config. Files that fail to load are listed with the reason.\n\n"
            "options:\n"
            "  --env-path DIR   search DIR first (repeatable; default: none)\n\n"
            "search path: the --env-path dirs, then " ENVL_ENV_VAR " (colon-separated), then the build's\n"
            "plugin folder (%s).\n",
            envl_builtin_dir());
}

static void print_control(const envl_entry *e) {
    printf("\n%-24s %-28s max_episode_steps %-6d v%s%s\n", e->name, e->gym_id[0] ? e->gym_id : "-",
           (int)e->info.max_episode_steps, e->version,
           e->shadowed ? "  (shadowed by an earlier file of this name)" : "");
    if (e->summary[0]) printf("    %s\n", e->summary);
    printf("    observations: %s\n", e->obs_space);
    printf("    actions:      %s\n", e->act_space);
    printf("    file:         %s\n", e->path);
}

static void print_text(const envl_entry *e) {
    printf("\n%-24s %-28s v%s%s\n", e->name, "text task", e->version,
           e->shadowed ? "  (shadowed by an earlier file of this name)" : "");
    if (e->summary[0]) printf("    %s\n", e->summary);
    printf("    alphabet:     \"%s\" (%zu symbols)\n", e->alphabet, strlen(e->alphabet));
    printf("    limits:       prompt <= %u, demonstration <= %u characters\n", e->max_prompt, e->max_demo);
    printf("    item 0:       %s -> %s\n", e->example_prompt, e->example_demo);
    printf("    file:         %s\n", e->path);
}

int env_cmd_list(int argc, char **argv) {
    env_args a;
    if (parse_args(argc, argv, &a, " env-path ") < 0) return EXIT_USAGE_;
    if (a.help) {
        list_help(stdout);
        return EXIT_OK_;
    }
    if (a.npositional) {
        fprintf(stderr, "error: rlt envs takes no arguments, got '%s' (see rlt envs --help)\n", a.positional[0]);
        return EXIT_USAGE_;
    }
    char err[1024];
    envl_search s;
    if (envl_search_init(&s, a.env_paths, (size_t)a.nenv_paths, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return EXIT_FAIL_;
    }
    envl_entry *e = NULL;
    size_t n = 0;
    if (envl_scan(&s, &e, &n, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        envl_search_free(&s);
        return EXIT_FAIL_;
    }
    print_search(stdout, &s);
    if (n == 0) printf("no environment plugins found\n");
    int ncontrol = 0, ntext = 0, nbroken = 0;
    for (size_t i = 0; i < n; i++) {
        if (!e[i].ok) {
            nbroken++;
            printf("\n%-24s BROKEN: %s\n", e[i].name, e[i].error);
        } else if (e[i].kind == ENVL_KIND_TEXT) {
            ntext++;
            print_text(&e[i]);
        } else {
            ncontrol++;
            print_control(&e[i]);
        }
    }
    if (n)
        printf("\n%d plugin%s (%d control environment%s, %d text task%s), %d broken\n", ncontrol + ntext,
               ncontrol + ntext == 1 ? "" : "s", ncontrol, ncontrol == 1 ? "" : "s", ntext, ntext == 1 ? "" : "s",
               nbroken);
    free(e);
    envl_search_free(&s);
    return EXIT_OK_;
}

/* ---- rlt env replay -------------------------------------------------------- */

static void replay_help(FILE *out) {
    fprintf(out,
            "usage: rlt env replay NAME --actions A.h5 --out T.h5 [options]\n\n"
            "Resets one environment of plugin NAME with the seed, steps it through the dataset `actions`\n"
            "of A.h5 ([N, act_dim], or [N] when act_dim is 1; float32/float64 for a Box action space,\n"
            "integers for Discrete) and writes T.h5 with obs [steps+1, obs_dim] float32, reward [steps]\n"
            "float32, terminated [steps] bool and truncated [steps] bool. If the episode ends before the\n"
            "actions run out, replay stops there, says so, and writes the steps taken.\n\n"
            "options:\n"
            "  --actions A.h5      the actions file (required)\n"
            "  --out T.h5          the trajectory file to write (required; replaced if it exists)\n"
            "  --seed S            reset seed, an unsigned 64-bit integer (default: 0)\n"
            "  --set KEY=VALUE     a plugin config entry, passed to the plugin's create as\n"
            "                      \"KEY=VALUE;...\" (repeatable; default: the plugin's defaults)\n"
            "  --env-path DIR      search DIR for NAME.so first (repeatable; default: none)\n\n"
            "search path: the --env-path dirs, then " ENVL_ENV_VAR ", then %s.\n",
            envl_builtin_dir());
}

static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-') return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* "k=v" entries joined with ';' into a malloc'd config string. */
static char *join_sets(const char *const *sets, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(sets[i]) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, ";");
        strcat(s, sets[i]);
    }
    return s;
}

/* The actions dataset converted to the plugin's action type: float32 for
 * Box, int32 for Discrete (range-checked). *n_out receives N. */
static int read_actions(const char *path, const env_space *as, uint32_t act_dim, void **out, int64_t *n_out) {
    char err[1024];
    *out = NULL;
    h5io_file *f = h5io_open(path, 0, err, sizeof err);
    if (!f) {
        fprintf(stderr, "error: --actions %s\n", err);
        return -1;
    }
    int rc = -1;
    void *raw = NULL, *conv = NULL;
    h5io_info info;
    if (h5io_dataset_info(f, "actions", &info) < 0) {
        fprintf(stderr, "error: --actions %s\n", h5io_error(f));
        goto done;
    }
    int64_t n = info.ndim >= 1 ? info.shape[0] : 0;
    int shape_ok = (info.ndim == 2 && info.shape[1] == (int64_t)act_dim) || (info.ndim == 1 && act_dim == 1);
    if (!shape_ok) {
        char sh[128];
        fprintf(stderr, "error: %s: /actions has shape %s; this environment needs [N, %u]%s\n", path,
                h5io_shape_str(info.shape, info.ndim, sh, sizeof sh), act_dim, act_dim == 1 ? " or [N]" : "");
        goto done;
    }
    int is_float = info.dtype == RT_F32 || info.dtype == RT_F64;
    int is_int = info.dtype == RT_I64 || info.dtype == RT_I32 || info.dtype == RT_U8;
    if (as->kind == ENV_SPACE_BOX && !is_float) {
        fprintf(stderr, "error: %s: /actions is %s; a Box action space needs float32 or float64\n", path,
                info.dtype_name);
        goto done;
    }
    if (as->kind == ENV_SPACE_DISCRETE && !is_int) {
        fprintf(stderr, "error: %s: /actions is %s; a Discrete action space needs integers (int32, int64, uint8)\n",
                path, info.dtype_name);
        goto done;
    }
    size_t count = (size_t)n * act_dim;
    size_t esz = info.dtype == RT_F64 || info.dtype == RT_I64 ? 8 : info.dtype == RT_U8 ? 1 : 4;
    raw = malloc(count ? count * esz : 1);
    conv = malloc(count ? count * 4 : 4);
    if (!raw || !conv) {
        fprintf(stderr, "error: %s: out of memory for %lld actions\n", path, (long long)n);
        goto done;
    }
    if (count && h5io_read_array(f, "actions", (rt_dtype)info.dtype, info.shape, info.ndim, raw) < 0) {
        fprintf(stderr, "error: --actions %s\n", h5io_error(f));
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        if (as->kind == ENV_SPACE_BOX) {
            ((float *)conv)[i] = info.dtype == RT_F64 ? (float)((const double *)raw)[i] : ((const float *)raw)[i];
            continue;
        }
        int64_t v = info.dtype == RT_I64   ? ((const int64_t *)raw)[i]
                    : info.dtype == RT_I32 ? ((const int32_t *)raw)[i]
                                           : ((const uint8_t *)raw)[i];
        if (v < 0 || v >= as->n) {
            fprintf(stderr, "error: %s: /actions[%zu] = %lld is outside Discrete(%lld)\n", path, i / act_dim,
                    (long long)v, (long long)as->n);
            goto done;
        }
        ((int32_t *)conv)[i] = (int32_t)v;
    }
    *out = conv;
    conv = NULL;
    *n_out = n;
    rc = 0;
done:
    free(raw);
    free(conv);
    h5io_close(f, NULL, 0);
    return rc;
}

typedef struct trajectory {
    float *obs;      /* [(steps+1) * obs_dim] */
    float *reward;   /* [N] */
    uint8_t *term;   /* [N] */
    uint8_t *trunc;  /* [N] */
    int64_t steps;
    double ret;
} trajectory;

static int write_trajectory(const char *path, const trajectory *t, uint32_t obs_dim, const envl_plugin *p,
                            const env_info *info, const char *config, uint64_t seed, const char *actions_path,
                            int64_t requested) {
    char err[1024];
    h5io_file *f = h5io_create(path, 0, err, sizeof err);
    if (!f) {
        fprintf(stderr, "error: --out %s\n", err);
        return -1;
    }
    int64_t so[2] = {t->steps + 1, obs_dim}, s1[1] = {t->steps};
    int ok = h5io_write_array(f, "obs", RT_F32, so, 2, t->obs, 0) == 0 &&
             h5io_write_array(f, "reward", RT_F32, s1, 1, t->reward, 0) == 0 &&
             h5io_write_array(f, "terminated", RT_BOOL, s1, 1, t->term, 0) == 0 &&
             h5io_write_array(f, "truncated", RT_BOOL, s1, 1, t->trunc, 0) == 0 &&
             h5io_attr_set_str(f, "/", "env", p->vt->name) == 0 &&
             h5io_attr_set_str(f, "/", "gym_id", info->gym_id ? info->gym_id : "") == 0 &&
             h5io_attr_set_str(f, "/", "plugin", p->path) == 0 &&
             h5io_attr_set_str(f, "/", "config", config) == 0 &&
             h5io_attr_set_str(f, "/", "actions_file", actions_path) == 0 &&
             h5io_attr_set_i64(f, "/", "seed", (int64_t)seed) == 0 &&
             h5io_attr_set_i64(f, "/", "requested_steps", requested) == 0 &&
             h5io_attr_set_i64(f, "/", "steps", t->steps) == 0 &&
             h5io_attr_set_i64(f, "/", "ended_early", t->steps < requested) == 0 &&
             h5io_attr_set_f64(f, "/", "episode_return", t->ret) == 0;
    if (!ok) fprintf(stderr, "error: %s\n", h5io_error(f));
    if (h5io_close(f, err, sizeof err) < 0) {
        if (ok) fprintf(stderr, "error: %s\n", err);
        ok = 0;
    }
    return ok ? 0 : -1;
}

int env_cmd_replay(int argc, char **argv) {
    env_args a;
    if (parse_args(argc, argv, &a, " env-path set seed actions out ") < 0) return EXIT_USAGE_;
    if (a.help) {
        replay_help(stdout);
        return EXIT_OK_;
    }
    if (a.npositional != 1 || !a.actions || !a.out) {
        fprintf(stderr, "error: usage: rlt env replay NAME --actions A.h5 --out T.h5 [--seed S] [--set k=v]... "
                        "[--env-path DIR]... (rlt env replay --help)\n");
        return EXIT_USAGE_;
    }
    uint64_t seed = 0;
    if (a.seed && parse_u64(a.seed, &seed) < 0) {
        fprintf(stderr, "error: --seed '%s' is not an unsigned 64-bit integer\n", a.seed);
        return EXIT_USAGE_;
    }
    for (int i = 0; i < a.nsets; i++)
        if (!strchr(a.sets[i], '=') || a.sets[i][0] == '=' || strchr(a.sets[i], ';')) {
            fprintf(stderr, "error: --set '%s': expected KEY=VALUE (no ';')\n", a.sets[i]);
            return EXIT_USAGE_;
        }
    const char *name = a.positional[0];
    int code = EXIT_USAGE_;
    char err[2048];
    envl_search s = {NULL, 0};
    envl_plugin *p = NULL;
    venv *v = NULL;
    void *actions = NULL;
    trajectory t;
    memset(&t, 0, sizeof t);
    char *config = join_sets(a.sets, a.nsets);
    if (!config) {
        fprintf(stderr, "error: out of memory\n");
        return EXIT_FAIL_;
    }
    if (envl_search_init(&s, a.env_paths, (size_t)a.nenv_paths, err, sizeof err) < 0 ||
        envl_open(&s, name, &p, err, sizeof err) < 0 || venv_create(p, config, 1, seed, 1, &v, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        goto done;
    }
    const env_info *info = venv_info(v);
    const venv_bufs *B = venv_buffers(v);
    int64_t n = 0;
    if (read_actions(a.actions, venv_act_space(v), B->act_dim, &actions, &n) < 0) goto done;
    code = EXIT_FAIL_;
    size_t od = B->obs_dim;
    t.obs = malloc((size_t)(n + 1) * od * sizeof *t.obs);
    t.reward = malloc((size_t)(n ? n : 1) * sizeof *t.reward);
    t.term = malloc((size_t)(n ? n : 1));
    t.trunc = malloc((size_t)(n ? n : 1));
    if (!t.obs || !t.reward || !t.term || !t.trunc) {
        fprintf(stderr, "error: out of memory for %lld steps\n", (long long)n);
        goto done;
    }
    if (venv_reset(v) < 0) {
        fprintf(stderr, "error: %s\n", venv_error(v));
        goto done;
    }
    memcpy(t.obs, B->obs, od * sizeof *t.obs);
    size_t abytes = (size_t)B->act_dim * 4; /* float32 and int32 alike */
    for (int64_t i = 0; i < n; i++) {
        if (venv_step(v, (const char *)actions + (size_t)i * abytes) < 0) {
            fprintf(stderr, "error: step %lld: %s\n", (long long)i, venv_error(v));
            goto done;
        }
        memcpy(t.obs + (size_t)(i + 1) * od, B->final_obs, od * sizeof *t.obs);
        t.reward[i] = B->reward[0];
        t.term[i] = B->terminated[0] ? 1 : 0;
        t.trunc[i] = B->truncated[0] ? 1 : 0;
        t.ret += (double)B->reward[0];
        t.steps = i + 1;
        if (B->ended[0]) break;
    }
    if (write_trajectory(a.out, &t, B->obs_dim, p, info, config, seed, a.actions, n) < 0) goto done;
    printf("%s (%s) seed %" PRIu64 ": %lld of %lld actions, return %.6g -> %s\n", p->vt->name,
           info->gym_id ? info->gym_id : "-", seed, (long long)t.steps, (long long)n, t.ret, a.out);
    if (t.steps < n)
        printf("note: the episode ended at step %lld (%s%s%s); the remaining %lld actions were not used\n",
               (long long)t.steps, t.term[t.steps - 1] ? "terminated" : "",
               t.term[t.steps - 1] && t.trunc[t.steps - 1] ? " and " : "", t.trunc[t.steps - 1] ? "truncated" : "",
               (long long)(n - t.steps));
    code = EXIT_OK_;
done:
    free(t.obs);
    free(t.reward);
    free(t.term);
    free(t.trunc);
    free(actions);
    venv_free(v);
    envl_close(p);
    envl_search_free(&s);
    free(config);
    return code;
}
