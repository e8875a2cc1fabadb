/*
 * main.c -- the rlt command line.
 *
 *   rlt train RECIPE.ini [--set section.key=value]... [--run-dir DIR] [--resume auto|never|PATH]
 *   rlt resume RUN_DIR [--set section.key=value]...
 *   rlt eval RUN_DIR|CKPT [--set section.key=value]...
 *   rlt inspect CKPT
 *   rlt loss NAME --in IN.h5 --out OUT.h5 [--set name=value]...
 *   rlt envs [--env-path DIR]
 *   rlt env replay NAME --seed S --actions A.h5 --out T.h5 [--env-path DIR] [--set key=value]...
 *   rlt help [ALGORITHM]
 *
 * Exit codes: 0 done, 1 runtime error, 2 usage/config/input error,
 * 130/143 interrupted by SIGINT/SIGTERM after saving.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ini.h>

#include "algo.h"
#include "ckpt.h"
#include "env_cmd.h"
#include "loss_cmd.h"
#include "run.h"
#include "tensor.h"

#ifndef RLT_VERSION
#define RLT_VERSION "unknown"
#endif
#define MAX_SETS 256

static const rlt_algo *const algos[] = {
    &rlt_algo_kd,   &rlt_algo_sac,  &rlt_algo_sft,   &rlt_algo_grpo, &rlt_algo_distill, &rlt_algo_dpo,
    &rlt_algo_sdpo, &rlt_algo_adpo, &rlt_algo_simpo, &rlt_algo_orpo, &rlt_algo_kto,     &rlt_algo_bco,
};
static const int nalgos = (int)(sizeof algos / sizeof algos[0]);

static const rlt_algo *find_algo(const char *name) {
    for (int i = 0; i < nalgos; i++)
        if (strcmp(algos[i]->name, name) == 0) return algos[i];
    return NULL;
}

static void list_algos(FILE *out) {
    for (int i = 0; i < nalgos; i++) fprintf(out, "  %-10s %s\n", algos[i]->name, algos[i]->summary);
}

static void usage(FILE *out) {
    fprintf(out,
            "rlt " RLT_VERSION " -- reinforcement-learning and preference-optimization trainer\n\n"
            "usage: rlt <command> [options]\n\n"
            "commands:\n"
            "  train RECIPE.ini   start (or continue) a training job\n"
            "  check RECIPE...    validate recipes without running them\n"
            "  resume RUN_DIR     continue a run from its newest complete checkpoint\n"
            "  eval RUN_DIR|CKPT  evaluate the models of a checkpoint\n"
            "  inspect CKPT       print a checkpoint's step, config and tensors\n"
            "  loss NAME          evaluate a loss on tensors stored in HDF5\n"
            "  envs               list the environment plugins found, with their spaces\n"
            "  env replay NAME    step one environment through stored actions, write the trajectory\n"
            "  make-prefs         sample, score and write a preference dataset from a policy checkpoint\n"
            "  help [ALGORITHM]   this text, or every recipe key of an algorithm with its default\n\n"
            "`rlt <command> --help` lists the command's options with their defaults.\n\n"
            "algorithms ([run] algorithm in a recipe):\n");
    list_algos(out);
    fprintf(out, "\nexit codes: 0 done, 1 runtime error, 2 usage/config/input error, 130/143 interrupted (saved)\n");
}

static void train_help(FILE *out) {
    fprintf(out, "usage: rlt train RECIPE.ini [options]\n\n"
                 "options:\n"
                 "  --set SECTION.KEY=VALUE   override a recipe key (repeatable; precedence: defaults < recipe < --set)\n"
                 "  --run-dir DIR             the run directory (default: <run.runs_dir>/<recipe>/<run.name>)\n"
                 "  --resume auto|never|PATH  auto (default): continue from the newest complete checkpoint of the run\n"
                 "                            directory if there is one; never: refuse a directory that has\n"
                 "                            checkpoints; PATH: continue from that checkpoint file\n\n"
                 "Recipe keys: `rlt help ALGORITHM`. Algorithms:\n");
    list_algos(out);
}

/* The recipe's [run] algorithm (or the last --set run.algorithm=). */
typedef struct algo_scan {
    char name[64];
} algo_scan;

static int scan_handler(void *user, const char *section, const char *name, const char *value) {
    algo_scan *a = user;
    if (strcmp(section, "run") == 0 && strcmp(name, "algorithm") == 0) snprintf(a->name, sizeof a->name, "%s", value);
    return 1;
}

static const rlt_algo *recipe_algo(const char *path, const char *const *sets, int nsets) {
    algo_scan a = {""};
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "error: cannot open recipe '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    ini_parse_file(f, scan_handler, &a); /* syntax errors are reported by the full parse */
    fclose(f);
    for (int i = 0; i < nsets; i++)
        if (strncmp(sets[i], "run.algorithm=", 14) == 0) snprintf(a.name, sizeof a.name, "%s", sets[i] + 14);
    if (!a.name[0]) {
        fprintf(stderr, "error: %s: no [run] algorithm key; known algorithms:\n", path);
        list_algos(stderr);
        return NULL;
    }
    const rlt_algo *al = find_algo(a.name);
    if (!al) {
        fprintf(stderr, "error: %s: [run] algorithm = '%s' is not known; known algorithms:\n", path, a.name);
        list_algos(stderr);
    }
    return al;
}

/* Options shared by the subcommands. */
typedef struct cli {
    const char *positional[64];
    int npositional;
    const char *sets[MAX_SETS];
    int nsets;
    const char *run_dir, *resume, *in, *out;
    int help;
} cli;

static int parse_cli(int argc, char **argv, cli *c, const char *allowed) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        const char *opt = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            c->help = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (c->npositional == 64) {
                fprintf(stderr, "error: unexpected argument '%s'\n", a);
                return -1;
            }
            c->positional[c->npositional++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        char name[32];
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a, len);
        name[len] = '\0';
        opt = name;
        char token[40];
        snprintf(token, sizeof token, " %s ", opt + 2);
        if (!strstr(allowed, token)) {
            fprintf(stderr, "error: unknown option '%s' (see --help)\n", opt);
            return -1;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "error: option '%s' needs a value\n", opt);
            return -1;
        }
        if (strcmp(opt, "--set") == 0) {
            if (c->nsets == MAX_SETS) {
                fprintf(stderr, "error: more than %d --set options\n", MAX_SETS);
                return -1;
            }
            c->sets[c->nsets++] = val;
        } else if (strcmp(opt, "--run-dir") == 0) {
            c->run_dir = val;
        } else if (strcmp(opt, "--resume") == 0) {
            c->resume = val;
        } else if (strcmp(opt, "--in") == 0) {
            c->in = val;
        } else if (strcmp(opt, "--out") == 0) {
            c->out = val;
        }
    }
    return 0;
}

static int cmd_train(int argc, char **argv, int full_argc, char **full_argv) {
    cli c;
    if (parse_cli(argc, argv, &c, " set run-dir resume ") < 0) return RUN_EXIT_USAGE;
    if (c.help) {
        train_help(stdout);
        return RUN_EXIT_OK;
    }
    if (c.npositional != 1) {
        fprintf(stderr, "error: rlt train needs exactly one RECIPE.ini (see rlt train --help)\n");
        return RUN_EXIT_USAGE;
    }
    run_args a;
    memset(&a, 0, sizeof a);
    a.recipe_path = c.positional[0];
    a.sets = c.sets;
    a.nsets = c.nsets;
    a.run_dir = c.run_dir;
    a.argc = full_argc;
    a.argv = full_argv;
    a.resume = RUN_RESUME_AUTO;
    if (c.resume && strcmp(c.resume, "auto") != 0) {
        if (strcmp(c.resume, "never") == 0) {
            a.resume = RUN_RESUME_NEVER;
        } else {
            struct stat st;
            if (stat(c.resume, &st) != 0 || !S_ISREG(st.st_mode)) {
                fprintf(stderr, "error: --resume '%s': expected auto, never or an existing checkpoint file\n", c.resume);
                return RUN_EXIT_USAGE;
            }
            a.resume = RUN_RESUME_PATH;
            a.resume_path = c.resume;
        }
    }
    const rlt_algo *al = recipe_algo(a.recipe_path, c.sets, c.nsets);
    if (!al) return RUN_EXIT_USAGE;
    return al->train(&a);
}

/* `rlt check RECIPE...`: parse and validate recipes (defaults < file < --set,
 * the algorithm's cross-field checks) without running anything. */
static int cmd_check(int argc, char **argv) {
    cli c;
    if (parse_cli(argc, argv, &c, " set ") < 0) return RUN_EXIT_USAGE;
    if (c.help || c.npositional < 1) {
        fprintf(c.help ? stdout : stderr,
                "usage: rlt check RECIPE.ini... [--set SECTION.KEY=VALUE]...\n\n"
                "Reads each recipe with its algorithm's schema (defaults < recipe < --set) and runs every check a\n"
                "training job would run on its config; prints 'ok' per recipe or every problem, one per line.\n");
        return c.help ? RUN_EXIT_OK : RUN_EXIT_USAGE;
    }
    int code = RUN_EXIT_OK;
    for (int i = 0; i < c.npositional; i++) {
        const rlt_algo *al = recipe_algo(c.positional[i], c.sets, c.nsets);
        if (!al) {
            code = RUN_EXIT_USAGE;
            continue;
        }
        void *cfg = calloc(1, al->schema->struct_size);
        cfg_errors err;
        cfg_errors_clear(&err);
        if (!cfg || cfg_load(al->schema, cfg, c.positional[i], c.sets, c.nsets, &err) != CFG_OK) {
            cfg_errors_print(&err, stderr, "error: ");
            code = RUN_EXIT_USAGE;
        } else {
            printf("%s: ok (algorithm %s)\n", c.positional[i], al->name);
        }
        free(cfg);
    }
    return code;
}

static int cmd_resume(int argc, char **argv, int full_argc, char **full_argv) {
    cli c;
    if (parse_cli(argc, argv, &c, " set ") < 0) return RUN_EXIT_USAGE;
    if (c.help) {
        printf("usage: rlt resume RUN_DIR [--set SECTION.KEY=VALUE]...\n\n"
               "Continues a run from the newest complete checkpoint in RUN_DIR/checkpoints, with the run's own\n"
               "RUN_DIR/config.ini (plus any --set, e.g. more steps). Fails if there is nothing to resume.\n");
        return RUN_EXIT_OK;
    }
    if (c.npositional != 1) {
        fprintf(stderr, "error: rlt resume needs exactly one RUN_DIR\n");
        return RUN_EXIT_USAGE;
    }
    char recipe[PATH_MAX + 16], ckdir[PATH_MAX + 16], err[1024];
    snprintf(recipe, sizeof recipe, "%s/config.ini", c.positional[0]);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", c.positional[0]);
    ck_scan scan;
    if (ck_find_latest(ckdir, &scan, err, sizeof err) < 0) {
        fprintf(stderr, "error: nothing to resume in '%s': %s\n", c.positional[0], err);
        return RUN_EXIT_USAGE;
    }
    run_args a;
    memset(&a, 0, sizeof a);
    a.recipe_path = recipe;
    a.sets = c.sets;
    a.nsets = c.nsets;
    a.run_dir = c.positional[0];
    a.resume = RUN_RESUME_AUTO;
    a.argc = full_argc;
    a.argv = full_argv;
    const rlt_algo *al = recipe_algo(recipe, c.sets, c.nsets);
    if (!al) return RUN_EXIT_USAGE;
    return al->train(&a);
}

/* RUN_DIR -> its newest complete checkpoint; a file stays itself. */
static int resolve_ckpt(const char *arg, char *out, size_t cap) {
    struct stat st;
    if (stat(arg, &st) != 0) {
        fprintf(stderr, "error: '%s': %s\n", arg, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(out, cap, "%s", arg);
        return 0;
    }
    char ckdir[PATH_MAX + 16], err[1024];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", arg);
    ck_scan scan;
    if (ck_find_latest(ckdir, &scan, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    snprintf(out, cap, "%s", scan.path);
    return 0;
}

static int cmd_eval(int argc, char **argv) {
    cli c;
    if (parse_cli(argc, argv, &c, " set ") < 0) return RUN_EXIT_USAGE;
    if (c.help) {
        printf("usage: rlt eval RUN_DIR|CKPT [--set SECTION.KEY=VALUE]...\n\n"
               "Rebuilds the job from the checkpoint's own resolved config (plus --set), loads it and evaluates\n"
               "its models (for kd: test accuracy of teacher, CE-only student and distilled student).\n");
        return RUN_EXIT_OK;
    }
    if (c.npositional != 1) {
        fprintf(stderr, "error: rlt eval needs exactly one RUN_DIR or checkpoint\n");
        return RUN_EXIT_USAGE;
    }
    char path[PATH_MAX], err[4096];
    if (resolve_ckpt(c.positional[0], path, sizeof path) < 0) return RUN_EXIT_USAGE;
    ck_meta meta;
    if (ck_read_meta(path, &meta, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return RUN_EXIT_USAGE;
    }
    const rlt_algo *al = find_algo(meta.algorithm);
    if (!al) fprintf(stderr, "error: %s: algorithm '%s' is not known to this rlt\n", path, meta.algorithm);
    ck_meta_release(&meta);
    if (!al) return RUN_EXIT_USAGE;
    return al->eval(path, c.sets, c.nsets);
}

static int cmd_inspect(int argc, char **argv) {
    cli c;
    if (parse_cli(argc, argv, &c, " ") < 0) return RUN_EXIT_USAGE;
    if (c.help) {
        printf("usage: rlt inspect CKPT|RUN_DIR\n\n"
               "Prints the checkpoint's format, step, algorithm, thread count, BLAS and versions, its resolved\n"
               "config, and a table of every tensor (path, dtype, shape, elements).\n");
        return RUN_EXIT_OK;
    }
    if (c.npositional != 1) {
        fprintf(stderr, "error: rlt inspect needs exactly one checkpoint\n");
        return RUN_EXIT_USAGE;
    }
    char path[PATH_MAX], err[4096];
    if (resolve_ckpt(c.positional[0], path, sizeof path) < 0) return RUN_EXIT_USAGE;
    if (ck_inspect(path, stdout, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return RUN_EXIT_USAGE;
    }
    return RUN_EXIT_OK;
}

static int cmd_loss(int argc, char **argv) {
    cli c;
    if (parse_cli(argc, argv, &c, " set in out ") < 0) return RUN_EXIT_USAGE;
    if (c.help) {
        loss_cmd_help(stdout);
        return RUN_EXIT_OK;
    }
    if (c.npositional != 1 || !c.in || !c.out) {
        fprintf(stderr, "error: usage: rlt loss NAME --in IN.h5 --out OUT.h5 [--set name=value]... (rlt loss --help)\n");
        return RUN_EXIT_USAGE;
    }
    return loss_cmd_run(c.positional[0], c.in, c.out, c.sets, c.nsets);
}

static int cmd_help(int argc, char **argv) {
    if (argc == 0) {
        usage(stdout);
        return RUN_EXIT_OK;
    }
    const rlt_algo *al = find_algo(argv[0]);
    if (!al) {
        fprintf(stderr, "error: unknown algorithm '%s'; known:\n", argv[0]);
        list_algos(stderr);
        return RUN_EXIT_USAGE;
    }
    char *h = cfg_help(al->schema);
    if (!h) return RUN_EXIT_FAIL;
    printf("recipe keys of algorithm '%s' (%s):\n\n%s", al->name, al->summary, h);
    free(h);
    return RUN_EXIT_OK;
}

int main(int argc, char **argv) {
    rt_tune_malloc();
    if (argc < 2) {
        usage(stderr);
        return RUN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    int sub_argc = argc - 2;
    char **sub_argv = argv + 2;
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) return cmd_help(0, NULL);
    if (strcmp(cmd, "--version") == 0) {
        printf("rlt %s (libtorch %s, BLAS %s)\n", RLT_VERSION, rt_torch_version(), rt_blas_info());
        return RUN_EXIT_OK;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(sub_argc, sub_argv, argc, argv);
    if (strcmp(cmd, "check") == 0) return cmd_check(sub_argc, sub_argv);
    if (strcmp(cmd, "resume") == 0) return cmd_resume(sub_argc, sub_argv, argc, argv);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(sub_argc, sub_argv);
    if (strcmp(cmd, "inspect") == 0) return cmd_inspect(sub_argc, sub_argv);
    if (strcmp(cmd, "loss") == 0) return cmd_loss(sub_argc, sub_argv);
    if (strcmp(cmd, "envs") == 0) return env_cmd_list(sub_argc, sub_argv);
    if (strcmp(cmd, "env") == 0) {
        if (sub_argc >= 1 && strcmp(sub_argv[0], "replay") == 0) return env_cmd_replay(sub_argc - 1, sub_argv + 1);
        fprintf(stderr, "error: usage: rlt env replay NAME ... (rlt env replay --help); `rlt envs` lists plugins\n");
        return RUN_EXIT_USAGE;
    }
    if (strcmp(cmd, "make-prefs") == 0) return make_prefs_main(sub_argc, sub_argv);
    if (strcmp(cmd, "help") == 0) return cmd_help(sub_argc, sub_argv);
    fprintf(stderr, "error: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return RUN_EXIT_USAGE;
}
