/*
 * test_cli_seq.c -- the sequence-policy loops end to end through the rlt
 * executable: every recipe validates (`rlt check`); a tiny SFT run on the
 * reverse task learns it; GRPO started from that checkpoint raises the
 * training reward on a warm start that is still weak; SofT-GRPO and GSPO run
 * and log what they should; a GRPO run stopped with run.stop_at and resumed
 * equals the straight run bit for bit (policy, optimizer, sampling generator,
 * metrics); `rlt eval` reports pass@1 / pass@k; bad task names, settings and
 * an init_from checkpoint of another shape are refused with exit 2.
 *
 * The models are tiny (1 layer, width 32) and the task is reverse over {a, b}
 * with 1-2 letters, so the whole file runs in well under a minute on one
 * thread. Results are deterministic at a fixed thread count, so the asserts on
 * learning are not flaky: they hold or fail the same way every run.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"

#define RUNS RLT_SOURCE_DIR "/runs/"

/* Every sequence job here: one thread, tiny model, tiny task. */
static const char *const TINY_SETS[] = {
    "run.threads=1",          "task.settings=min_len=1;max_len=2;alphabet=a-b",
    "model.layers=1",         "model.width=32",
    "model.heads=2",          "model.context=32",
    "eval.prompts=16",        "eval.samples=4",
    "eval.k=4",               "eval.every=0",
};
#define N_TINY (sizeof TINY_SETS / sizeof TINY_SETS[0])

static cu_proc run_job(cu_sandbox *sb, const char *recipe, const char *dir, const char *const *extra) {
    cu_argvec a = {.n = 0};
    cu_av_add(&a, RLT_BIN);
    cu_av_add(&a, "train");
    cu_av_add(&a, recipe);
    cu_av_add(&a, "--run-dir");
    cu_av_add(&a, dir);
    for (size_t i = 0; i < N_TINY; i++) {
        cu_av_add(&a, "--set");
        cu_av_add(&a, TINY_SETS[i]);
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        cu_av_add(&a, "--set");
        cu_av_add(&a, extra[i]);
    }
    return cu_run_argv(sb, a.v);
}

/* A number printed after `key` in text (NAN when absent). */
static double after(const char *text, const char *key) {
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

/* Mean of metric `key` over the first / last n lines of dir/metrics.jsonl that have it. */
static void metric_ends(cu_sandbox *sb, const char *dir, const char *key, int n, double *first, double *last) {
    static const char *script =
        "import json,sys\n"
        "v=[json.loads(l)[sys.argv[2]] for l in open(sys.argv[1]+'/metrics.jsonl') if sys.argv[2] in json.loads(l)]\n"
        "n=int(sys.argv[3]);print(len(v), sum(v[:n])/n, sum(v[-n:])/n)\n";
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", n);
    cu_proc p = cu_py(sb, script, dir, key, nbuf, NULL);
    cr_assert_eq(p.code, 0, "reading %s/metrics.jsonl: %s", dir, p.err);
    int count = 0;
    cr_assert_eq(sscanf(p.out, "%d %lf %lf", &count, first, last), 3, "metric %s: %s", key, p.out);
    cr_assert_geq(count, 2 * n, "metric %s has %d values", key, count);
    cu_proc_free(&p);
}

Test(seq, recipes_validate) {
    cu_sandbox sb;
    cu_sb_open(&sb, "/tmp/rlt-seq-XXXXXX");
    /* every recipe shipped in runs/, whatever its algorithm */
    cu_argvec a = {.n = 0};
    static char paths[64][512];
    int n = 0;
    cu_av_add(&a, RLT_BIN);
    cu_av_add(&a, "check");
    DIR *d = opendir(RUNS);
    cr_assert_not_null(d, "cannot open %s", RUNS);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".ini") != 0) continue;
        cr_assert_lt(n, 64);
        snprintf(paths[n], sizeof paths[n], RUNS "%.200s", e->d_name);
        cu_av_add(&a, paths[n++]);
    }
    closedir(d);
    cr_assert_geq(n, 12, "only %d recipes in %s", n, RUNS);
    cu_proc p = cu_run_argv(&sb, a.v);
    cr_assert_eq(p.code, 0, "rlt check exit %d:\n%s%s", p.code, p.out, p.err);
    for (int i = 0; i < n; i++) {
        char want[1024];
        snprintf(want, sizeof want, "%.900s: ok (algorithm ", paths[i]);
        cr_assert(strstr(p.out, want), "no '%s' in:\n%s", want, p.out);
    }
    /* the sequence recipes the README chains */
    const char *seq[] = {"sft-reverse", "grpo-reverse", "sapo-reverse", "sft-sort", "grpo-sort", "sft-arithmetic",
                         "grpo-arithmetic", "sapo-arithmetic", "soft-grpo-arithmetic"};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        char want[600];
        snprintf(want, sizeof want, RUNS "%s.ini: ok (algorithm %s)", seq[i], strncmp(seq[i], "sft", 3) ? "grpo" : "sft");
        cr_assert(strstr(p.out, want), "no '%s' in:\n%s", want, p.out);
    }
    cu_proc_free(&p);
    /* a cross-field error names the key */
    cu_proc e = cu_run(&sb, RLT_BIN, "check", RUNS "grpo-reverse.ini", "--set", "model.heads=3", NULL);
    cr_assert_eq(e.code, 2, "heads=3 with width 128: exit %d", e.code);
    cr_assert(strstr(e.err, "model.heads") && strstr(e.err, "does not divide model.width"), "%s", e.err);
    cu_proc_free(&e);
    cu_proc s = cu_run(&sb, RLT_BIN, "check", RUNS "soft-grpo-arithmetic.ini", "--set", "soft.settings=tau_g=0", NULL);
    cr_assert_eq(s.code, 2, "tau_g=0: exit %d", s.code);
    cr_assert(strstr(s.err, "soft.settings") && strstr(s.err, "tau_g"), "%s", s.err);
    cu_proc_free(&s);
    cu_rm_rf(sb.dir);
}

Test(seq, sft_grpo_pipeline, .timeout = 600) {
    cu_sandbox sb;
    cu_sb_open(&sb, "/tmp/rlt-seq-XXXXXX");
    char sft[256], weak[256], A[256], B[256], G[256], X[256];
    cu_sb_path(&sb, sft, sizeof sft, "sft");
    cu_sb_path(&sb, weak, sizeof weak, "weak");
    cu_sb_path(&sb, A, sizeof A, "A");
    cu_sb_path(&sb, B, sizeof B, "B");
    cu_sb_path(&sb, G, sizeof G, "G");
    cu_sb_path(&sb, X, sizeof X, "X");

    /* 1. SFT learns the task (greedy exact match on held-out prompts). */
    const char *sft_sets[] = {"train.steps=150", "train.batch_size=32", "train.lr=3e-3", "train.warmup_steps=10",
                              "run.log_every=50", NULL};
    cu_proc s = run_job(&sb, RUNS "sft-reverse.ini", sft, sft_sets);
    cr_assert_eq(s.code, 0, "[%s] sft exit %d:\n%s", sb.dir, s.code, s.err);
    double greedy = after(s.out, "greedy ");
    cr_assert(greedy >= 0.9, "SFT greedy exact match %.4f < 0.9:\n%s", greedy, s.out);
    cu_proc_free(&s);

    /* 2. A weak warm start (few SFT steps), then GRPO: the reward rises. */
    const char *weak_sets[] = {"train.steps=40", "train.batch_size=32", "train.lr=3e-3", "train.warmup_steps=2",
                               "run.log_every=40", NULL};
    cu_proc w = run_job(&sb, RUNS "sft-reverse.ini", weak, weak_sets);
    cr_assert_eq(w.code, 0, "[%s] weak sft exit %d:\n%s", sb.dir, w.code, w.err);
    cu_proc_free(&w);
    char init[300];
    snprintf(init, sizeof init, "train.init_from=%s", weak);
    const char *grpo_sets[] = {init, "train.steps=40", "train.prompts_per_step=8", "train.num_generations=8",
                               "train.lr=3e-3", "run.log_every=1", "run.save_every=20", NULL};
    cu_proc g = run_job(&sb, RUNS "grpo-reverse.ini", G, grpo_sets);
    cr_assert_eq(g.code, 0, "[%s] grpo exit %d:\n%s", sb.dir, g.code, g.err);
    cr_assert(strstr(g.out, "held-out before training: pass@1 "), "%s", g.out);
    double r0, r1;
    metric_ends(&sb, G, "train/reward", 8, &r0, &r1);
    cr_assert(r1 > r0 + 0.1, "GRPO reward did not rise: first 8 steps %.4f, last 8 %.4f", r0, r1);
    cu_proc_free(&g);

    /* rlt eval on the GRPO run */
    cu_proc ev = cu_run(&sb, RLT_BIN, "eval", G, NULL);
    cr_assert_eq(ev.code, 0, "rlt eval exit %d: %s", ev.code, ev.err);
    cr_assert(strstr(ev.out, "| pass@1 | pass@4   | greedy |") && strstr(ev.out, "16 held-out prompts"), "%s", ev.out);
    cu_proc_free(&ev);

    /* 3. Bit-exact resume: A straight 6 steps; B stopped at 3, resumed. */
    snprintf(init, sizeof init, "train.init_from=%s", sft);
    const char *res_sets[] = {init, "train.steps=6", "train.prompts_per_step=4", "train.num_generations=4",
                              "train.num_iterations=2", "grpo.settings=loss_type=dapo beta=0.04",
                              "run.log_every=1", "run.save_every=100", NULL};
    cu_proc a = run_job(&sb, RUNS "grpo-reverse.ini", A, res_sets);
    cr_assert_eq(a.code, 0, "[%s] A exit %d:\n%s", sb.dir, a.code, a.err);
    cu_proc_free(&a);
    const char *stop_sets[] = {init, "train.steps=6", "train.prompts_per_step=4", "train.num_generations=4",
                               "train.num_iterations=2", "grpo.settings=loss_type=dapo beta=0.04",
                               "run.log_every=1", "run.save_every=100", "run.stop_at=3", NULL};
    cu_proc b = run_job(&sb, RUNS "grpo-reverse.ini", B, stop_sets);
    cr_assert_eq(b.code, 0, "[%s] B exit %d:\n%s", sb.dir, b.code, b.err);
    cr_assert(strstr(b.out, "stopped at step 3 of 6"), "%s", b.out);
    cu_proc_free(&b);
    cu_proc r = cu_run(&sb, RLT_BIN, "resume", B, NULL);
    cr_assert_eq(r.code, 0, "[%s] resume exit %d:\n%s", sb.dir, r.code, r.err);
    cu_proc_free(&r);
    char ca[512], cb[512];
    snprintf(ca, sizeof ca, "%s/checkpoints/step_00000006.h5", A);
    snprintf(cb, sizeof cb, "%s/checkpoints/step_00000006.h5", B);
    const char *groups[] = {"/model", "/optim", "/rng", NULL};
    cu_assert_h5_same(&sb, ca, cb, groups);
    cu_assert_metrics_equal(&sb, A, B, 6);

    /* 4. SofT-GRPO (on arithmetic, whose demonstrations think aloud; from a
     *    random init, so the think segment is long) and GSPO run and log
     *    their own metrics. */
    const char *soft_sets[] = {"train.init_from=", "task.settings=max_digits=1", "model.context=64", "train.steps=2",
                               "train.prompts_per_step=4", "train.num_generations=4", "run.log_every=1", NULL};
    cu_proc so = run_job(&sb, RUNS "soft-grpo-arithmetic.ini", X, soft_sets);
    cr_assert_eq(so.code, 0, "[%s] soft-grpo exit %d:\n%s", sb.dir, so.code, so.err);
    cr_assert(strstr(so.out, "soft thinking (SofT-GRPO)"), "%s", so.out);
    double p0, p1;
    metric_ends(&sb, X, "soft/positions", 1, &p0, &p1);
    cr_assert(p0 > 0 && p1 > 0, "no soft positions scored: %g %g", p0, p1);
    cu_proc_free(&so);
    char Y[256];
    cu_sb_path(&sb, Y, sizeof Y, "Y");
    const char *gspo_sets[] = {init, "train.steps=2", "train.prompts_per_step=4", "train.num_generations=4",
                               "grpo.settings=loss_type=grpo importance_sampling_level=sequence",
                               "train.num_iterations=2", "run.log_every=1", NULL};
    cu_proc gs = run_job(&sb, RUNS "grpo-reverse.ini", Y, gspo_sets);
    cr_assert_eq(gs.code, 0, "[%s] gspo exit %d:\n%s", sb.dir, gs.code, gs.err);
    cr_assert(strstr(gs.out, "(sequence level, GSPO)"), "%s", gs.out);
    cu_proc_free(&gs);

    /* 5. Refusals: exit 2, the key and the reason. */
    char Z[256];
    cu_sb_path(&sb, Z, sizeof Z, "Z");
    const char *bad_task[] = {"task.name=nosuchtask", NULL};
    cu_proc e1 = run_job(&sb, RUNS "sft-reverse.ini", Z, bad_task);
    cr_assert_eq(e1.code, 2, "unknown task: exit %d", e1.code);
    cr_assert(strstr(e1.err, "nosuchtask"), "%s", e1.err);
    cu_proc_free(&e1);
    const char *bad_set[] = {"task.settings=max_len=2;bogus=1", NULL};
    cu_proc e2 = run_job(&sb, RUNS "sft-reverse.ini", Z, bad_set);
    cr_assert_eq(e2.code, 2, "bad settings: exit %d", e2.code);
    cr_assert(strstr(e2.err, "task.settings") && strstr(e2.err, "bogus"), "%s", e2.err);
    cu_proc_free(&e2);
    const char *bad_init[] = {init, "model.width=64", "train.steps=2", NULL};
    cu_proc e3 = run_job(&sb, RUNS "grpo-reverse.ini", Z, bad_init);
    cr_assert_eq(e3.code, 2, "init_from of another width: exit %d", e3.code);
    cr_assert(strstr(e3.err, "train.init_from") && strstr(e3.err, "make [model] match"), "%s", e3.err);
    cu_proc_free(&e3);
    cr_assert(!cu_file_exists(Z), "a refused job left its run directory %s behind", Z);
    cu_rm_rf(sb.dir);
}
