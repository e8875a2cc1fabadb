/*
 * test_cli_distill.c -- the distillation loop (trainer/distill_train.c, `rlt
 * train` with algorithm distill) end to end through the rlt executable: its
 * recipes validate and `rlt help distill` lists its keys; a tiny SFT teacher
 * is trained, then a tinier student distilled from it: the loss falls and
 * the student's argmax agrees with the teacher's more and more; lmbda = 1
 * makes every batch on-policy (student samples) and lmbda = 0 none; seq_kd
 * trains on the teacher's samples; a run
 * mixing both kinds, the SFT term and a top-k support, stopped with
 * run.stop_at and resumed, equals the straight run bit for bit (student,
 * optimizer, generators, on-policy count, metrics); AlignDistil runs between
 * two teachers; `rlt eval` reports the student; a teacher trained on
 * another tokenizer, of another shape, or a missing reverse teacher is
 * refused with exit 2 and a message naming the key and the reason.
 *
 * Models are tiny (teacher 1 layer x 32, student 1 layer x 16) and the task is
 * reverse over {a, b} with 1-2 letters, on one thread: results are
 * deterministic, so the asserts on learning hold or fail the same way every
 * run.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"

#define RUNS RLT_SOURCE_DIR "/runs/"

/* Every job here: one thread, the tiny task, a small evaluation. */
static const char *const TINY_SETS[] = {
    "run.threads=1", "task.settings=min_len=1;max_len=2;alphabet=a-b",
    "eval.prompts=16", "eval.samples=4", "eval.k=4", "eval.every=0",
};
/* The teacher's shape, as [model] of its SFT run and as [teacher] of a distillation. */
static const char *const TEACHER_MODEL[] = {"model.layers=1", "model.width=32", "model.heads=2", "model.context=32"};
static const char *const TEACHER_SECTION[] = {"teacher.layers=1", "teacher.width=32", "teacher.heads=2",
                                              "teacher.context=32"};
/* The student: half the teacher's width, from scratch (the recipe starts it
 * from its SFT baseline's checkpoint). */
static const char *const STUDENT_MODEL[] = {"model.layers=1", "model.width=16", "model.heads=2", "model.context=32",
                                            "train.init_from="};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void add_sets(cu_argvec *a, const char *const *sets, size_t n) {
    for (size_t i = 0; i < n; i++) {
        cu_av_add(a, "--set");
        cu_av_add(a, sets[i]);
    }
}

/* rlt train recipe --run-dir dir, the tiny sets, then `extra` (NULL-terminated). */
static cu_proc train(cu_sandbox *sb, const char *recipe, const char *dir, int distill, const char *const *extra) {
    cu_argvec a = {.n = 0};
    cu_av_add(&a, RLT_BIN);
    cu_av_add(&a, "train");
    cu_av_add(&a, recipe);
    cu_av_add(&a, "--run-dir");
    cu_av_add(&a, dir);
    add_sets(&a, TINY_SETS, COUNT(TINY_SETS));
    if (distill) {
        add_sets(&a, TEACHER_SECTION, COUNT(TEACHER_SECTION));
        add_sets(&a, STUDENT_MODEL, COUNT(STUDENT_MODEL));
    } else {
        add_sets(&a, TEACHER_MODEL, COUNT(TEACHER_MODEL));
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        cu_av_add(&a, "--set");
        cu_av_add(&a, extra[i]);
    }
    return cu_run_argv(sb, a.v);
}

/* The values of metric `key` in dir/metrics.jsonl, in order, into v (at most
 * cap); returns the count. Lines without the key are skipped. */
static int metric_values(cu_sandbox *sb, const char *dir, const char *key, double *v, int cap) {
    static const char *script = "import json,sys\n"
                                "for l in open(sys.argv[1]+'/metrics.jsonl'):\n"
                                "    d=json.loads(l)\n"
                                "    if sys.argv[2] in d: print(repr(float(d[sys.argv[2]])))\n";
    cu_proc p = cu_py(sb, script, dir, key, NULL);
    cr_assert_eq(p.code, 0, "reading %s/metrics.jsonl: %s", dir, p.err);
    int n = 0;
    for (char *s = p.out; n < cap && *s;) {
        char *end;
        double x = strtod(s, &end);
        if (end == s) break;
        v[n++] = x;
        s = end;
    }
    cu_proc_free(&p);
    return n;
}

static double mean_of(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return s / n;
}

/* The number printed after `key` in text (NAN when absent). */
static double number_after(const char *text, const char *key) {
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

Test(distill, recipes_and_help) {
    cu_sandbox sb;
    cu_sb_open(&sb, "/tmp/rlt-distill-XXXXXX");
    cu_proc c = cu_run(&sb, RLT_BIN, "check", RUNS "distill-reverse.ini", RUNS "sft-reverse-teacher.ini",
                       RUNS "sft-reverse-small.ini", NULL);
    cr_assert_eq(c.code, 0, "rlt check exit %d:\n%s%s", c.code, c.out, c.err);
    cr_assert(strstr(c.out, RUNS "distill-reverse.ini: ok (algorithm distill)"), "%s", c.out);
    cr_assert(strstr(c.out, RUNS "sft-reverse-teacher.ini: ok (algorithm sft)"), "%s", c.out);
    cr_assert(strstr(c.out, RUNS "sft-reverse-small.ini: ok (algorithm sft)"), "%s", c.out);
    cu_proc_free(&c);

    cu_proc h = cu_run(&sb, RLT_BIN, "help", "distill", NULL);
    cr_assert_eq(h.code, 0, "rlt help distill exit %d: %s", h.code, h.err);
    const char *keys[] = {"teacher.from", "teacher.width", "teacher_rev.from", "distill.form", "distill.lmbda",
                          "distill.seq_kd", "distill.gkd", "distill.aligndistil", "distill.sft_weight",
                          "sample.temperature", "sample.max_new_tokens"};
    for (size_t i = 0; i < COUNT(keys); i++) {
        char line[96];
        snprintf(line, sizeof line, "\n  %s (", keys[i]);
        cr_assert(strstr(h.out, line), "rlt help distill lacks %s:\n%s", keys[i], h.out);
    }
    cu_proc_free(&h);

    /* config-level refusals: exit 2 naming the key */
    cu_proc e1 = cu_run(&sb, RLT_BIN, "check", RUNS "distill-reverse.ini", "--set", "distill.form=aligndistil", NULL);
    cr_assert_eq(e1.code, 2, "aligndistil without teacher_rev: exit %d", e1.code);
    cr_assert(strstr(e1.err, "teacher_rev.from") && strstr(e1.err, "aligndistil"), "%s", e1.err);
    cu_proc_free(&e1);
    cu_proc e2 = cu_run(&sb, RLT_BIN, "check", RUNS "distill-reverse.ini", "--set", "distill.gkd=beta=2", NULL);
    cr_assert_eq(e2.code, 2, "beta=2: exit %d", e2.code);
    cr_assert(strstr(e2.err, "distill.gkd") && strstr(e2.err, "beta"), "%s", e2.err);
    cu_proc_free(&e2);
    cu_proc e3 = cu_run(&sb, RLT_BIN, "check", RUNS "distill-reverse.ini", "--set", "teacher.from=", NULL);
    cr_assert_eq(e3.code, 2, "no teacher: exit %d", e3.code);
    cr_assert(strstr(e3.err, "teacher.from"), "%s", e3.err);
    cu_proc_free(&e3);
    cu_rm_rf(sb.dir);
}

Test(distill, pipeline, .timeout = 900) {
    cu_sandbox sb;
    cu_sb_open(&sb, "/tmp/rlt-distill-XXXXXX");
    char T[256], W[256], D[256], ON[256], A[256], B[256], AD[256], X[256], Z[256];
    cu_sb_path(&sb, T, sizeof T, "teacher");
    cu_sb_path(&sb, W, sizeof W, "weak");
    cu_sb_path(&sb, D, sizeof D, "distill");
    cu_sb_path(&sb, ON, sizeof ON, "onpolicy");
    cu_sb_path(&sb, A, sizeof A, "A");
    cu_sb_path(&sb, B, sizeof B, "B");
    cu_sb_path(&sb, AD, sizeof AD, "aligndistil");
    cu_sb_path(&sb, X, sizeof X, "sort-teacher");
    cu_sb_path(&sb, Z, sizeof Z, "refused");
    char teacher_from[300];
    snprintf(teacher_from, sizeof teacher_from, "teacher.from=%s", T);

    /* 1. The teacher: SFT until it solves the tiny task. */
    const char *teacher_sets[] = {"train.steps=150", "train.batch_size=32", "train.lr=3e-3", "train.warmup_steps=10",
                                  "run.log_every=50", NULL};
    cu_proc t = train(&sb, RUNS "sft-reverse.ini", T, 0, teacher_sets);
    cr_assert_eq(t.code, 0, "[%s] teacher sft exit %d:\n%s", sb.dir, t.code, t.err);
    double teacher_greedy = number_after(t.out, "greedy ");
    cr_assert(teacher_greedy >= 0.9, "teacher greedy %.4f < 0.9:\n%s", teacher_greedy, t.out);
    cu_proc_free(&t);

    /* 2. Off-policy distillation (lmbda 0: the demonstrations, scored by the
     *    teacher): the loss falls and the argmax agreement rises. */
    const char *d_sets[] = {teacher_from, "distill.lmbda=0", "train.steps=60", "train.batch_size=32",
                            "train.lr=1e-2", "train.warmup_steps=2", "run.log_every=1", NULL};
    cu_proc d = train(&sb, RUNS "distill-reverse.ini", D, 1, d_sets);
    cr_assert_eq(d.code, 0, "[%s] distill exit %d:\n%s", sb.dir, d.code, d.err);
    cr_assert(strstr(d.out, "teacher held-out (16 prompts): pass@1 "), "%s", d.out);
    cr_assert(strstr(d.out, "on-policy steps 0 of 60"), "%s", d.out);
    double loss[64], agree[64], onp[64];
    int n = metric_values(&sb, D, "train/loss", loss, 64);
    cr_assert_eq(n, 60, "%d loss values", n);
    cr_assert_eq(metric_values(&sb, D, "train/agreement", agree, 64), 60);
    double l0 = mean_of(loss, 5), l1 = mean_of(loss + 55, 5), a0 = mean_of(agree, 5), a1 = mean_of(agree + 55, 5);
    cr_assert(l1 < 0.5 * l0, "distillation loss did not fall: first 5 steps %.4f, last 5 %.4f", l0, l1);
    cr_assert(a1 > a0 + 0.2, "agreement did not rise: first 5 steps %.4f, last 5 %.4f", a0, a1);
    cr_assert_eq(metric_values(&sb, D, "train/on_policy_frac", onp, 64), 60);
    cr_assert(onp[59] == 0.0, "lmbda 0: on-policy fraction %g", onp[59]);
    double student_pass1 = number_after(d.out, "student pass@1 ");
    cr_assert(student_pass1 >= 0 && student_pass1 <= 1, "%s", d.out);
    cu_proc_free(&d);

    /* rlt eval reports the student: the run's own final evaluation again. */
    cu_proc ev = cu_run(&sb, RLT_BIN, "eval", D, NULL);
    cr_assert_eq(ev.code, 0, "rlt eval exit %d: %s", ev.code, ev.err);
    const char *row = strstr(ev.out, "|--------|");
    cr_assert(row && strstr(ev.out, "16 held-out prompts"), "%s", ev.out);
    row = strchr(row, '\n');
    double eval_pass1 = row ? strtod(row + 2, NULL) : NAN;
    cr_assert(fabs(eval_pass1 - student_pass1) < 1e-4, "rlt eval pass@1 %.4f, the run's %.4f:\n%s", eval_pass1,
              student_pass1, ev.out);
    cu_proc_free(&ev);

    /* 3. lmbda 1: every batch is sampled by the student. */
    const char *on_sets[] = {teacher_from, "distill.lmbda=1", "train.steps=4", "train.batch_size=8",
                             "run.log_every=1", NULL};
    cu_proc o = train(&sb, RUNS "distill-reverse.ini", ON, 1, on_sets);
    cr_assert_eq(o.code, 0, "[%s] on-policy exit %d:\n%s", sb.dir, o.code, o.err);
    cr_assert(strstr(o.out, "on-policy steps 4 of 4"), "%s", o.out);
    double flag[8];
    cr_assert_eq(metric_values(&sb, ON, "train/on_policy", flag, 8), 4);
    for (int i = 0; i < 4; i++) cr_assert(flag[i] == 1.0, "step %d on_policy %g", i, flag[i]);
    cu_proc_free(&o);
    /* seq_kd: the off-policy completions are the teacher's samples. */
    char K[256];
    cu_sb_path(&sb, K, sizeof K, "seqkd");
    const char *kd_sets[] = {teacher_from, "distill.lmbda=0", "distill.seq_kd=true", "train.steps=2",
                             "train.batch_size=8", "run.log_every=1", NULL};
    cu_proc k = train(&sb, RUNS "distill-reverse.ini", K, 1, kd_sets);
    cr_assert_eq(k.code, 0, "[%s] seq_kd exit %d:\n%s", sb.dir, k.code, k.err);
    cr_assert(strstr(k.out, "(off-policy: teacher samples)") && strstr(k.out, "on-policy steps 0 of 2"), "%s", k.out);
    cu_proc_free(&k);

    /* 4. Bit-exact resume on a run mixing on- and off-policy steps, the SFT
     *    term and a sparse top-k support: A straight 6 steps, B stopped at 3
     *    and resumed. */
    const char *mix[] = {teacher_from, "distill.lmbda=0.5", "distill.sft_weight=0.5",
                         "distill.gkd=beta=0.3 top_k=3", "train.steps=6", "train.batch_size=8",
                         "run.log_every=1", "run.save_every=100", NULL, NULL};
    cu_proc a = train(&sb, RUNS "distill-reverse.ini", A, 1, mix);
    cr_assert_eq(a.code, 0, "[%s] A exit %d:\n%s", sb.dir, a.code, a.err);
    double fa[8];
    cr_assert_eq(metric_values(&sb, A, "train/on_policy", fa, 8), 6);
    int n_on = 0;
    for (int i = 0; i < 6; i++) n_on += fa[i] == 1.0;
    cr_assert(n_on > 0 && n_on < 6, "lmbda 0.5 gave %d on-policy steps of 6: the resume test wants both kinds", n_on);
    double sft_loss[8];
    cr_assert_eq(metric_values(&sb, A, "train/sft_loss", sft_loss, 8), 6);
    cu_proc_free(&a);
    mix[COUNT(mix) - 2] = "run.stop_at=3";
    cu_proc b = train(&sb, RUNS "distill-reverse.ini", B, 1, mix);
    cr_assert_eq(b.code, 0, "[%s] B exit %d:\n%s", sb.dir, b.code, b.err);
    cr_assert(strstr(b.out, "stopped at step 3 of 6"), "%s", b.out);
    cu_proc_free(&b);
    cu_proc r = cu_run(&sb, RLT_BIN, "resume", B, NULL);
    cr_assert_eq(r.code, 0, "[%s] resume exit %d:\n%s", sb.dir, r.code, r.err);
    cu_proc_free(&r);
    char ca[512], cb[512];
    snprintf(ca, sizeof ca, "%s/checkpoints/step_00000006.h5", A);
    snprintf(cb, sizeof cb, "%s/checkpoints/step_00000006.h5", B);
    const char *groups[] = {"/model", "/optim", "/rng", "/algo", NULL};
    cu_assert_h5_same(&sb, ca, cb, groups);
    cu_assert_metrics_equal(&sb, A, B, 6);

    /* 5. AlignDistil between the teacher (z_dpo) and a weak SFT model (z_rev). */
    const char *weak_sets[] = {"train.steps=10", "train.batch_size=16", "train.lr=3e-3", "train.warmup_steps=2",
                               "run.log_every=10", NULL};
    cu_proc w = train(&sb, RUNS "sft-reverse.ini", W, 0, weak_sets);
    cr_assert_eq(w.code, 0, "[%s] weak sft exit %d:\n%s", sb.dir, w.code, w.err);
    cu_proc_free(&w);
    char rev_from[300];
    snprintf(rev_from, sizeof rev_from, "teacher_rev.from=%s", W);
    const char *ad_sets[] = {teacher_from, rev_from, "distill.form=aligndistil",
                             "distill.aligndistil=beta=0.1 beta2=10 length_norm=true", "train.steps=3",
                             "train.batch_size=8", "run.log_every=1", NULL};
    cu_proc ad = train(&sb, RUNS "distill-reverse.ini", AD, 1, ad_sets);
    cr_assert_eq(ad.code, 0, "[%s] aligndistil exit %d:\n%s", sb.dir, ad.code, ad.err);
    cr_assert(strstr(ad.out, "loss aligndistil beta 0.1, beta2 10"), "%s", ad.out);
    double mw[4], adl[4];
    cr_assert_eq(metric_values(&sb, AD, "aligndistil/mean_weight", mw, 4), 3);
    cr_assert_eq(metric_values(&sb, AD, "train/loss", adl, 4), 3);
    for (int i = 0; i < 3; i++)
        cr_assert(mw[i] > 1e-3 && isfinite(adl[i]) && adl[i] > 0, "step %d: mean_weight %g loss %g", i, mw[i], adl[i]);
    cu_proc_free(&ad);

    /* 6. Refusals before training: exit 2, the key and the reason, and no run
     *    directory left behind. A teacher trained on the sort task has
     *    another tokenizer (digits, not letters). */
    const char *sort_sets[] = {"task.name=sort", "task.settings=min_count=1;max_count=2", "eval.max_new_tokens=10", "train.steps=1",
                               "train.batch_size=4", "run.log_every=1", NULL};
    cu_proc x = train(&sb, RUNS "sft-reverse.ini", X, 0, sort_sets);
    cr_assert_eq(x.code, 0, "[%s] sort teacher exit %d:\n%s", sb.dir, x.code, x.err);
    cu_proc_free(&x);
    char bad_from[300];
    snprintf(bad_from, sizeof bad_from, "teacher.from=%s", X);
    const char *tok_sets[] = {bad_from, "train.steps=2", NULL};
    cu_proc e1 = train(&sb, RUNS "distill-reverse.ini", Z, 1, tok_sets);
    cr_assert_eq(e1.code, 2, "teacher of another tokenizer: exit %d\n%s", e1.code, e1.err);
    cr_assert(strstr(e1.err, "teacher.from") && strstr(e1.err, "tokenizer \"chars:0123456789,-=\"") &&
                  strstr(e1.err, "this task's is \"chars:abcdefghijklmnopqrstuvwxyz=\""),
              "%s", e1.err);
    cr_assert(!cu_file_exists(Z), "a refused job left %s behind", Z);
    cu_proc_free(&e1);
    const char *shape_sets[] = {teacher_from, "teacher.width=64", "train.steps=2", NULL};
    cu_proc e2 = train(&sb, RUNS "distill-reverse.ini", Z, 1, shape_sets);
    cr_assert_eq(e2.code, 2, "teacher of another width: exit %d\n%s", e2.code, e2.err);
    cr_assert(strstr(e2.err, "teacher.from") && strstr(e2.err, "width=32") && strstr(e2.err, "make [teacher] match"),
              "%s", e2.err);
    cu_proc_free(&e2);
    const char *missing_sets[] = {"teacher.from=/nonexistent/run", "train.steps=2", NULL};
    cu_proc e3 = train(&sb, RUNS "distill-reverse.ini", Z, 1, missing_sets);
    cr_assert_eq(e3.code, 2, "missing teacher: exit %d\n%s", e3.code, e3.err);
    cr_assert(strstr(e3.err, "teacher.from") && strstr(e3.err, "/nonexistent/run"), "%s", e3.err);
    cu_proc_free(&e3);
    cu_rm_rf(sb.dir);
}
