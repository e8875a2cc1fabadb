/*
 * test_cli_pref.c -- the preference pipeline end to end through the rlt
 * executable: `rlt make-prefs` turns a weak SFT policy's samples on the
 * reverse task into pairwise, listwise and unpaired data (checked against the
 * task's own rule by an independent python reader: chosen completions are
 * the reversed letters, rejected ones are not; --flip reverses exactly the
 * fraction asked; the output is a pure function of the options); each loop
 * (dpo, sdpo, adpo with fixed / prev / ema anchors, simpo, orpo, kto, bco)
 * trained briefly on that data lowers its loss and raises
 * rewards/accuracies (kto and bco, which TRL logs without accuracies: raise
 * rewards/margins; adpo's moving anchors: widen logps/chosen -
 * logps/rejected); a DPO run stopped with run.stop_at and resumed equals the
 * straight run bit for bit (/model /optim /data and metrics), with the
 * reference live or precomputed (the table matches the live reference); a
 * resume against a changed dataset is refused; LD-DPO (ld_alpha) with a
 * precomputed reference gives the live reference's losses and resumes bit
 * for bit; BCO with UDM fits a prompt classifier that separates two prompt
 * distributions, clamps its density ratios, lowers the loss and resumes bit
 * for bit (/algo too); the shipped datasets in data/prefsets/ obey the
 * task's rule and every recipe reading them validates; bad inputs are
 * refused with exit 2.
 *
 * The models are tiny (1 layer, width 32) and the task is reverse over {a, b}
 * with 1-2 letters, one thread: results are deterministic, so the asserts on
 * learning hold or fail the same way every run.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"

#define RUNS RLT_SOURCE_DIR "/runs/"
#define PREFSETS RLT_SOURCE_DIR "/data/prefsets/"

static const char *const TINY_SETS[] = {
    "run.threads=1",   "task.settings=min_len=1;max_len=2;alphabet=a-b",
    "model.layers=1",  "model.width=32",
    "model.heads=2",   "model.context=32",
    "eval.prompts=16", "eval.samples=4",
    "eval.k=4",        "eval.every=0",
};
#define N_TINY (sizeof TINY_SETS / sizeof TINY_SETS[0])

/* rlt train recipe --run-dir dir, the tiny sets, then extra (NULL-terminated). */
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

/* A weak warm start: 40 SFT steps, greedy right on about half the prompts. */
static void weak_sft(cu_sandbox *sb, const char *dir) {
    const char *sets[] = {"train.steps=40", "train.batch_size=32", "train.lr=3e-3", "train.warmup_steps=2",
                          "run.log_every=40", NULL};
    cu_proc p = run_job(sb, RUNS "sft-reverse.ini", dir, sets);
    cr_assert_eq(p.code, 0, "[%s] sft exit %d:\n%s", sb->dir, p.code, p.err);
    cu_proc_free(&p);
}

/* rlt make-prefs --from from --out out --prompts 200 --samples 8 [args...]. */
static cu_proc make_prefs(cu_sandbox *sb, const char *from, const char *out, ...) {
    cu_argvec a = {.n = 0};
    cu_av_add(&a, RLT_BIN);
    cu_av_add(&a, "make-prefs");
    cu_av_add(&a, "--from");
    cu_av_add(&a, from);
    cu_av_add(&a, "--out");
    cu_av_add(&a, out);
    cu_av_add(&a, "--prompts");
    cu_av_add(&a, "200");
    cu_av_add(&a, "--samples");
    cu_av_add(&a, "8");
    va_list ap;
    va_start(ap, out);
    cu_av_addv(&a, ap);
    va_end(ap);
    return cu_run_argv(sb, a.v);
}

/* A number printed after `key` in text (NAN when absent). */
static double after(const char *text, const char *key) {
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

/* Mean of metric `key` (or of key - key2 when key2 is not NULL) over the
 * first / last n lines of dir/metrics.jsonl that have it. */
static void metric_ends(cu_sandbox *sb, const char *dir, const char *key, const char *key2, int n, double *first,
                        double *last) {
    static const char *script =
        "import json,sys\n"
        "d,k,k2,n=sys.argv[1],sys.argv[2],sys.argv[3],int(sys.argv[4])\n"
        "v=[]\n"
        "for l in open(d+'/metrics.jsonl'):\n"
        "  r=json.loads(l)\n"
        "  if k in r and (k2=='-' or k2 in r): v.append(r[k]-(r[k2] if k2!='-' else 0))\n"
        "print(len(v), sum(v[:n])/n, sum(v[-n:])/n)\n";
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", n);
    cu_proc p = cu_py(sb, script, dir, key, key2 ? key2 : "-", nbuf, NULL);
    cr_assert_eq(p.code, 0, "reading %s/metrics.jsonl: %s", dir, p.err);
    int count = 0;
    cr_assert_eq(sscanf(p.out, "%d %lf %lf", &count, first, last), 3, "metric %s: %s", key, p.out);
    cr_assert_geq(count, 2 * n, "metric %s has %d values in %s", key, count, dir);
    cu_proc_free(&p);
}

/* The reverse task's rule, independently: the answer (after the last
 * </think>, blanks trimmed) is the prompt's letters reversed. Checks a JSONL
 * file of `kind` (pairs, lists, unpaired): every record holds a right and a
 * wrong completion, preferred one way (the task's) or, for a flipped record,
 * the other (lists: the right completions hold the lowest score). Prints
 * "records N flipped F" (unpaired: F counts pairs of records). */
static const char *PY_CHECK =
    "import json,sys\n"
    "path,kind=sys.argv[1],sys.argv[2]\n"
    "def right(p,c):\n"
    "  a=c.rsplit('</think>',1)[-1].strip()\n"
    "  return a.lower()==p[:-1][::-1]\n"
    "n=f=0\n"
    "recs=[json.loads(l) for l in open(path,encoding='utf-8')]\n"
    "for r in recs:\n"
    "  p=r['prompt']; assert p.endswith('='), p\n"
    "  if kind=='pairs':\n"
    "    w,l=right(p,r['chosen']),right(p,r['rejected'])\n"
    "    assert w!=l, r\n"
    "    f+=l\n"
    "  elif kind=='lists':\n"
    "    c,s=r['completions'],r['scores']; assert len(c)==len(s)>=2, r\n"
    "    assert any(right(p,y) for y in c) and not all(right(p,y) for y in c), r\n"
    "    ok=all((x==1.0)==right(p,y) for y,x in zip(c,s))\n"
    "    fl=all((x==min(s))==right(p,y) for y,x in zip(c,s))\n"
    "    assert ok or fl, r\n"
    "    f+=fl\n"
    "  else:\n"
    "    f+=r['label']!=right(p,r['completion'])\n"
    "  n+=1\n"
    "if kind=='unpaired':\n"
    "  assert n%2==0\n"
    "  for a,b in zip(recs[0::2],recs[1::2]):\n"
    "    assert a['prompt']==b['prompt'] and a['label'] and not b['label'], (a,b)\n"
    "  f//=2\n"
    "print('records',n,'flipped',f)\n";

static void check_data(cu_sandbox *sb, const char *path, const char *kind, long *records, long *flipped) {
    cu_proc p = cu_py(sb, PY_CHECK, path, kind, NULL);
    cr_assert_eq(p.code, 0, "%s (%s) breaks the task's rule:\n%s%s", path, kind, p.out, p.err);
    cr_assert_eq(sscanf(p.out, "records %ld flipped %ld", records, flipped), 2, "%s", p.out);
    cu_proc_free(&p);
}

/* A recipe for algorithm algo in the sandbox: the tiny task's sections come
 * from TINY_SETS, the rest from here. */
static void write_recipe(cu_sandbox *sb, char *path, size_t cap, const char *algo, const char *data,
                         const char *init) {
    char name[64], text[1024];
    snprintf(name, sizeof name, "%s.ini", algo);
    cu_sb_path(sb, path, cap, name);
    snprintf(text, sizeof text,
             "[run]\nalgorithm = %s\nlog_every = 1\nsave_every = 1000\n[task]\nname = reverse\n[data]\npath = %s\n"
             "[train]\ninit_from = %s\nsteps = 40\nbatch_size = 8\nlr = 1e-3\nschedule = constant\n",
             algo, data, init);
    cr_assert_eq(cu_write_text(path, text), 0, "cannot write %s", path);
}

Test(pref, make_prefs_and_every_loop, .timeout = 900) {
    cu_sandbox sb;
    cu_sb_open(&sb, "/tmp/rlt-pref-XXXXXX");
    char weak[256], pairs[256], lists[256], unp[256], again[256], flip1[256], flip5[256];
    cu_sb_path(&sb, weak, sizeof weak, "weak");
    cu_sb_path(&sb, pairs, sizeof pairs, "pairs.jsonl");
    cu_sb_path(&sb, lists, sizeof lists, "lists.jsonl");
    cu_sb_path(&sb, unp, sizeof unp, "unpaired.jsonl");
    cu_sb_path(&sb, again, sizeof again, "again.jsonl");
    cu_sb_path(&sb, flip1, sizeof flip1, "flip1.jsonl");
    cu_sb_path(&sb, flip5, sizeof flip5, "flip5.jsonl");
    weak_sft(&sb, weak);

    /* 1. make-prefs: the three kinds, the counts it reports, the task's rule. */
    cu_proc mp = make_prefs(&sb, weak, pairs, NULL);
    cr_assert_eq(mp.code, 0, "make-prefs exit %d:\n%s%s", mp.code, mp.out, mp.err);
    double kept = after(mp.out, "prompts: "), no_correct = after(mp.out, "kept, ");
    double no_wrong = after(mp.out, "without a correct completion, ");
    cr_assert(kept >= 20 && no_correct >= 1 && kept + no_correct + no_wrong == 200, "%s", mp.out);
    long n, f;
    check_data(&sb, pairs, "pairs", &n, &f);
    cr_assert(n == (long)kept && f == 0, "pairs: %ld records, %ld flipped; make-prefs said:\n%s", n, f, mp.out);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, again, NULL);
    cr_assert_eq(mp.code, 0);
    char *a = cu_slurp(pairs, NULL), *b = cu_slurp(again, NULL);
    cr_assert(a && b && strcmp(a, b) == 0, "make-prefs is not a pure function of its options");
    free(a);
    free(b);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, lists, "--kind", "lists", NULL);
    cr_assert_eq(mp.code, 0, "%s", mp.err);
    check_data(&sb, lists, "lists", &n, &f);
    cr_assert(n == (long)kept && f == 0, "lists: %ld records, %ld flipped", n, f);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, unp, "--kind", "unpaired", NULL);
    cr_assert_eq(mp.code, 0, "%s", mp.err);
    check_data(&sb, unp, "unpaired", &n, &f);
    cr_assert(n == 2 * (long)kept && f == 0, "unpaired: %ld records, %ld flipped", n, f);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, flip1, "--flip", "1", NULL);
    cr_assert_eq(mp.code, 0, "%s", mp.err);
    check_data(&sb, flip1, "pairs", &n, &f);
    cr_assert(n == (long)kept && f == n, "--flip 1: %ld of %ld flipped", f, n);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, flip5, "--flip", "0.4", "--kind", "lists", NULL);
    cr_assert_eq(mp.code, 0, "%s", mp.err);
    check_data(&sb, flip5, "lists", &n, &f);
    cr_assert(n == (long)kept && f == lround(0.4 * (double)n), "--flip 0.4: %ld of %ld flipped", f, n);
    cr_assert(strstr(mp.out, "prompts flipped"), "%s", mp.out);
    cu_proc_free(&mp);

    /* make-prefs refusals: exit 2 and the reason. */
    mp = make_prefs(&sb, "/nonexistent/run", again, NULL);
    cr_assert(mp.code == 2 && strstr(mp.err, "/nonexistent/run"), "exit %d: %s", mp.code, mp.err);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, again, "--set", "model.width=64", NULL);
    cr_assert(mp.code == 2 && strstr(mp.err, "only task.KEY=VALUE"), "exit %d: %s", mp.code, mp.err);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, again, "--kind", "triples", NULL);
    cr_assert(mp.code == 2 && strstr(mp.err, "--kind 'triples'"), "exit %d: %s", mp.code, mp.err);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, again, "--set", "task.settings=max_len=2;bogus=1", NULL);
    cr_assert(mp.code == 2 && strstr(mp.err, "bogus"), "exit %d: %s", mp.code, mp.err);
    cu_proc_free(&mp);

    /* 2. every loop learns its preferences in 40 steps of 8 records. */
    struct {
        const char *algo, *data, *extra, *key, *key2;
    } loops[] = {
        {"dpo", pairs, NULL, "train/rewards/accuracies", NULL},
        {"dpo", pairs, "dpo.settings=loss_type=ipo", "train/rewards/accuracies", NULL},
        {"sdpo", lists, NULL, "train/rewards/accuracies", NULL},
        {"adpo", lists, NULL, "train/rewards/accuracies", NULL},
        {"adpo", pairs, "adpo.settings=tau=10", "train/rewards/accuracies", NULL},
        {"adpo", lists, "adpo.anchor=prev", "train/logps/chosen", "train/logps/rejected"},
        {"adpo", lists, "adpo.anchor=ema", "train/logps/chosen", "train/logps/rejected"},
        {"simpo", pairs, NULL, "train/rewards/accuracies", NULL},
        {"orpo", pairs, NULL, "train/rewards/accuracies", NULL},
        {"kto", unp, NULL, "train/rewards/margins", NULL},
        {"bco", unp, NULL, "train/rewards/margins", NULL},
    };
    for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++) {
        char recipe[256], dir[256], name[64];
        write_recipe(&sb, recipe, sizeof recipe, loops[i].algo, loops[i].data, weak);
        snprintf(name, sizeof name, "run%zu-%s", i, loops[i].algo);
        cu_sb_path(&sb, dir, sizeof dir, name);
        const char *extra[] = {loops[i].extra, NULL};
        cu_proc p = run_job(&sb, recipe, dir, extra);
        cr_assert_eq(p.code, 0, "[%s] %s (%s) exit %d:\n%s%s", sb.dir, loops[i].algo,
                     loops[i].extra ? loops[i].extra : "", p.code, p.out, p.err);
        cr_assert(strstr(p.out, "held-out before training: pass@1 ") && strstr(p.out, "): pass@1 ") &&
                      strstr(p.out, " -> "),
                  "%s: no before/after evaluation:\n%s", loops[i].algo, p.out);
        double l0, l1, m0, m1;
        metric_ends(&sb, dir, loops[i].key, loops[i].key2, 10, &m0, &m1);
        cr_assert(m1 > m0, "%s (%s): %s%s%s did not rise: first 10 steps %.4f, last 10 %.4f", loops[i].algo,
                  loops[i].extra ? loops[i].extra : "defaults", loops[i].key, loops[i].key2 ? " - " : "",
                  loops[i].key2 ? loops[i].key2 : "", m0, m1);
        if (!loops[i].key2) { /* the moving anchors' loss is flat by construction */
            metric_ends(&sb, dir, "train/loss", NULL, 10, &l0, &l1);
            cr_assert(l1 < l0, "%s (%s): loss did not fall: first 10 steps %.4f, last 10 %.4f", loops[i].algo,
                      loops[i].extra ? loops[i].extra : "defaults", l0, l1);
        }
        cu_proc_free(&p);
    }
    cu_rm_rf(sb.dir);
}

Test(pref, resume_precompute_and_refusals, .timeout = 900) {
    cu_sandbox sb;
    cu_sb_open(&sb, "/tmp/rlt-pref-XXXXXX");
    char weak[256], pairs[256], lists[256], A[256], B[256], C[256], D[256], E[256], Z[256];
    cu_sb_path(&sb, weak, sizeof weak, "weak");
    cu_sb_path(&sb, pairs, sizeof pairs, "pairs.jsonl");
    cu_sb_path(&sb, lists, sizeof lists, "lists.jsonl");
    cu_sb_path(&sb, A, sizeof A, "A");
    cu_sb_path(&sb, B, sizeof B, "B");
    cu_sb_path(&sb, C, sizeof C, "C");
    cu_sb_path(&sb, D, sizeof D, "D");
    cu_sb_path(&sb, E, sizeof E, "E");
    cu_sb_path(&sb, Z, sizeof Z, "Z");
    weak_sft(&sb, weak);
    cu_proc mp = make_prefs(&sb, weak, pairs, NULL);
    cr_assert_eq(mp.code, 0, "%s", mp.err);
    cu_proc_free(&mp);
    mp = make_prefs(&sb, weak, lists, "--kind", "lists", NULL);
    cr_assert_eq(mp.code, 0, "%s", mp.err);
    cu_proc_free(&mp);

    /* 1. Bit-exact resume of DPO (live reference): A straight 6 steps, B
     *    stopped at 3 and resumed. */
    char init[300], data[300];
    snprintf(init, sizeof init, "train.init_from=%s", weak);
    snprintf(data, sizeof data, "data.path=%s", pairs);
    const char *base[] = {init, data, "train.steps=6", "train.batch_size=8", "train.lr=1e-3", "run.log_every=1",
                          "run.save_every=100", NULL, NULL, NULL};
    cu_proc p = run_job(&sb, RUNS "dpo-reverse.ini", A, base);
    cr_assert_eq(p.code, 0, "[%s] A exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    base[7] = "run.stop_at=3";
    p = run_job(&sb, RUNS "dpo-reverse.ini", B, base);
    cr_assert_eq(p.code, 0, "[%s] B exit %d:\n%s", sb.dir, p.code, p.err);
    cr_assert(strstr(p.out, "stopped at step 3 of 6"), "%s", p.out);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "resume", B, NULL);
    cr_assert_eq(p.code, 0, "[%s] resume exit %d:\n%s", sb.dir, p.code, p.err);
    cr_assert(strstr(p.out, "resumed from") && !strstr(p.out, "held-out before training"), "%s", p.out);
    cu_proc_free(&p);
    char ca[512], cb[512];
    const char *groups[] = {"/model", "/optim", "/data", NULL};
    snprintf(ca, sizeof ca, "%s/checkpoints/step_00000006.h5", A);
    snprintf(cb, sizeof cb, "%s/checkpoints/step_00000006.h5", B);
    cu_assert_h5_same(&sb, ca, cb, groups);
    cu_assert_metrics_equal(&sb, A, B, 6);

    /* 2. The precomputed reference: the same rewards as the live one (to
     *    float rounding: the table's batches pad differently), the table in
     *    the checkpoint instead of /model/ref, and a bit-exact resume. */
    base[7] = "train.precompute_ref=true";
    p = run_job(&sb, RUNS "dpo-reverse.ini", C, base);
    cr_assert_eq(p.code, 0, "[%s] C exit %d:\n%s", sb.dir, p.code, p.err);
    cr_assert(strstr(p.out, "reference log-probs precomputed from"), "%s", p.out);
    cu_proc_free(&p);
    static const char *PY_CLOSE =
        "import json,sys,h5py\n"
        "a=[json.loads(l) for l in open(sys.argv[1]+'/metrics.jsonl')]\n"
        "c=[json.loads(l) for l in open(sys.argv[2]+'/metrics.jsonl')]\n"
        "d=max(abs(x[k]-y[k]) for x,y in zip(a,c) for k in ('train/rewards/chosen','train/rewards/rejected'))\n"
        "f=h5py.File(sys.argv[2]+'/checkpoints/step_00000006.h5','r')\n"
        "g=h5py.File(sys.argv[1]+'/checkpoints/step_00000006.h5','r')\n"
        "print(len(a),len(c),'%.3g'%d,f['data/ref_logps'].shape[0],'ref' in f['model'],'ref' in g['model'])\n";
    cu_proc q = cu_py(&sb, PY_CLOSE, A, C, NULL);
    cr_assert_eq(q.code, 0, "%s", q.err);
    int la = 0, lc = 0, nt = 0;
    double dmax = 1;
    char ref_c[8] = "", ref_a[8] = "";
    cr_assert_eq(sscanf(q.out, "%d %d %lf %d %7s %7s", &la, &lc, &dmax, &nt, ref_c, ref_a), 6, "%s", q.out);
    cr_assert(la == 6 && lc == 6 && dmax < 1e-5, "precomputed vs live reference rewards differ by %g", dmax);
    cr_assert(nt > 0 && strcmp(ref_c, "False") == 0 && strcmp(ref_a, "True") == 0, "%s", q.out);
    cu_proc_free(&q);
    base[8] = "run.stop_at=3";
    p = run_job(&sb, RUNS "dpo-reverse.ini", D, base);
    cr_assert_eq(p.code, 0, "[%s] D exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "resume", D, NULL);
    cr_assert_eq(p.code, 0, "[%s] resume D exit %d:\n%s", sb.dir, p.code, p.err);
    cr_assert(!strstr(p.out, "precomputed from"), "a resume must take the table from the checkpoint:\n%s", p.out);
    cu_proc_free(&p);
    snprintf(ca, sizeof ca, "%s/checkpoints/step_00000006.h5", C);
    snprintf(cb, sizeof cb, "%s/checkpoints/step_00000006.h5", D);
    cu_assert_h5_same(&sb, ca, cb, groups);
    cu_assert_metrics_equal(&sb, C, D, 6);

    /* 2b. LD-DPO with a precomputed reference: the table holds each pair's
     *     LD-weighted reference sums, so every step's loss equals the live
     *     reference's (frozen: both score the same model) to float rounding,
     *     the weighting shows (the rewards differ from C's, without
     *     ld_alpha), and a resume is bit-exact. */
    char F[256], G[256], H[256];
    cu_sb_path(&sb, F, sizeof F, "F");
    cu_sb_path(&sb, G, sizeof G, "G");
    cu_sb_path(&sb, H, sizeof H, "H");
    const char *ld[] = {init, data, "train.steps=6", "train.batch_size=8", "train.lr=1e-3", "run.log_every=1",
                        "run.save_every=100", "dpo.settings=loss_type=sigmoid ld_alpha=0.5", NULL, NULL, NULL};
    p = run_job(&sb, RUNS "dpo-reverse.ini", F, ld);
    cr_assert_eq(p.code, 0, "[%s] F exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    ld[8] = "train.precompute_ref=true";
    p = run_job(&sb, RUNS "dpo-reverse.ini", G, ld);
    cr_assert_eq(p.code, 0, "[%s] G exit %d:\n%s", sb.dir, p.code, p.err);
    cr_assert(strstr(p.out, "reference log-probs precomputed from"), "%s", p.out);
    cu_proc_free(&p);
    static const char *PY_LD =
        "import json,sys\n"
        "f,g,c=[[json.loads(l) for l in open(d+'/metrics.jsonl')] for d in sys.argv[1:4]]\n"
        "dl=max(abs(x['train/loss']-y['train/loss'])/max(1,abs(x['train/loss'])) for x,y in zip(f,g))\n"
        "dr=max(abs(x[k]-y[k]) for x,y in zip(f,g) for k in ('train/rewards/chosen','train/rewards/rejected'))\n"
        "dc=max(abs(x[k]-y[k]) for x,y in zip(g,c) for k in ('train/rewards/chosen','train/rewards/rejected'))\n"
        "print(len(f),len(g),'%.3g %.3g %.3g'%(dl,dr,dc))\n";
    q = cu_py(&sb, PY_LD, F, G, C, NULL);
    cr_assert_eq(q.code, 0, "%s", q.err);
    int lf = 0, lg = 0;
    double dloss = 1, drew = 1, dvs_plain = 0;
    cr_assert_eq(sscanf(q.out, "%d %d %lf %lf %lf", &lf, &lg, &dloss, &drew, &dvs_plain), 5, "%s", q.out);
    cr_assert(lf == 6 && lg == 6 && dloss < 1e-6 && drew < 1e-5,
              "ld_alpha=0.5: precomputed vs live reference: loss differs by %g (relative), rewards by %g", dloss, drew);
    cr_assert(dvs_plain > 1e-4, "ld_alpha=0.5 should change the rewards (max difference from plain DPO %g)", dvs_plain);
    cu_proc_free(&q);
    ld[9] = "run.stop_at=3";
    p = run_job(&sb, RUNS "dpo-reverse.ini", H, ld);
    cr_assert_eq(p.code, 0, "[%s] H exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "resume", H, NULL);
    cr_assert_eq(p.code, 0, "[%s] resume H exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    snprintf(ca, sizeof ca, "%s/checkpoints/step_00000006.h5", G);
    snprintf(cb, sizeof cb, "%s/checkpoints/step_00000006.h5", H);
    cu_assert_h5_same(&sb, ca, cb, groups);
    cu_assert_metrics_equal(&sb, G, H, 6);

    /* 3. A resume against a changed dataset is refused before loading. */
    char copy[256], dcopy[300];
    cu_sb_path(&sb, copy, sizeof copy, "copy.jsonl");
    char *text = cu_slurp(pairs, NULL);
    cr_assert_not_null(text);
    cr_assert_eq(cu_write_text(copy, text), 0);
    snprintf(dcopy, sizeof dcopy, "data.path=%s", copy);
    const char *copy_sets[] = {init, dcopy, "train.steps=6", "train.batch_size=8", "run.stop_at=3", NULL};
    p = run_job(&sb, RUNS "dpo-reverse.ini", E, copy_sets);
    cr_assert_eq(p.code, 0, "[%s] E exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    char *nl = strchr(text, '\n');
    cr_assert_not_null(nl);
    cr_assert_eq(cu_write_text(copy, nl + 1), 0); /* the first record gone */
    p = cu_run(&sb, RLT_BIN, "resume", E, NULL);
    cr_assert(p.code == 2 && strstr(p.err, "is not the dataset") && strstr(p.err, "fingerprint"), "exit %d: %s",
              p.code, p.err);
    cu_proc_free(&p);
    free(text);

    /* 4. rlt eval of a preference run. */
    p = cu_run(&sb, RLT_BIN, "eval", A, NULL);
    cr_assert_eq(p.code, 0, "rlt eval exit %d: %s", p.code, p.err);
    cr_assert(strstr(p.out, "| pass@1 | pass@4   | greedy |") && strstr(p.out, "16 held-out prompts"), "%s", p.out);
    cu_proc_free(&p);

    /* 5. Refusals, exit 2: the wrong kind of data, a malformed line (and
     *    data.skip_bad), a reference-free setting that needs a reference. */
    char ldata[300];
    snprintf(ldata, sizeof ldata, "data.path=%s", lists);
    const char *wrong_kind[] = {init, ldata, "train.steps=2", NULL};
    p = run_job(&sb, RUNS "dpo-reverse.ini", Z, wrong_kind);
    cr_assert(p.code == 2 && strstr(p.err, "holds listwise records") && strstr(p.err, "pairwise"), "exit %d: %s",
              p.code, p.err);
    cu_proc_free(&p);
    char bad[256], bdata[300];
    cu_sb_path(&sb, bad, sizeof bad, "bad.jsonl");
    text = cu_slurp(pairs, NULL);
    cr_assert_not_null(text);
    size_t len = strlen(text);
    long lines = 0;
    for (const char *c = text; *c; c++) lines += *c == '\n';
    char *with_bad = malloc(len + 64);
    cr_assert_not_null(with_bad);
    snprintf(with_bad, len + 64, "%s{\"prompt\": \"ab=\", \"chosen\": 3}\n", text);
    cr_assert_eq(cu_write_text(bad, with_bad), 0);
    free(with_bad);
    free(text);
    snprintf(bdata, sizeof bdata, "data.path=%s", bad);
    const char *bad_sets[] = {init, bdata, "train.steps=2", NULL, NULL};
    p = run_job(&sb, RUNS "dpo-reverse.ini", Z, bad_sets);
    char want[400];
    snprintf(want, sizeof want, "%.256s:%ld: field \"chosen\" must be a string", bad, lines + 1);
    cr_assert(p.code == 2 && strstr(p.err, want), "exit %d, want '%s' in: %s", p.code, want, p.err);
    cu_proc_free(&p);
    bad_sets[3] = "data.skip_bad=true";
    p = run_job(&sb, RUNS "dpo-reverse.ini", Z, bad_sets);
    cr_assert(p.code == 0 && strstr(p.err, "1 malformed line(s) skipped"), "exit %d: %s%s", p.code, p.out, p.err);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "check", RUNS "dpo-reverse.ini", "--set", "train.init_from=", NULL);
    cr_assert(p.code == 2 && strstr(p.err, "train.ref_from") && strstr(p.err, "reference log-probs"), "exit %d: %s",
              p.code, p.err);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "check", RUNS "dpo-reverse.ini", "--set", "dpo.settings=ld_alpha=0.5", "--set",
               "train.precompute_ref=true", NULL);
    cr_assert(p.code == 0, "ld_alpha with a precomputed reference is valid: exit %d: %s", p.code, p.err);
    cu_proc_free(&p);
    cu_rm_rf(sb.dir);
}

/* BCO with UDM. The unpaired data are split so that the desirable records'
 * prompts have one letter and the undesirable ones' two: two prompt
 * distributions a classifier of the reference's prompt embeddings can
 * separate. */
Test(pref, bco_udm, .timeout = 900) {
    cu_sandbox sb;
    cu_sb_open(&sb, "/tmp/rlt-pref-XXXXXX");
    char weak[256], unp[256], split[256], only[256], A[256], B[256], K[256], L[256], Z[256];
    cu_sb_path(&sb, weak, sizeof weak, "weak");
    cu_sb_path(&sb, unp, sizeof unp, "unpaired.jsonl");
    cu_sb_path(&sb, split, sizeof split, "split.jsonl");
    cu_sb_path(&sb, only, sizeof only, "only.jsonl");
    cu_sb_path(&sb, A, sizeof A, "A");
    cu_sb_path(&sb, B, sizeof B, "B");
    cu_sb_path(&sb, K, sizeof K, "K");
    cu_sb_path(&sb, L, sizeof L, "L");
    cu_sb_path(&sb, Z, sizeof Z, "Z");
    weak_sft(&sb, weak);
    cu_proc mp = make_prefs(&sb, weak, unp, "--kind", "unpaired", NULL);
    cr_assert_eq(mp.code, 0, "%s", mp.err);
    cu_proc_free(&mp);
    static const char *PY_SPLIT =
        "import json,sys\n"
        "r=[json.loads(l) for l in open(sys.argv[1])]\n"
        "s=[x for x in r if (len(x['prompt'])==2)==bool(x['label'])]\n"
        "open(sys.argv[2],'w').write(''.join(json.dumps(x)+'\\n' for x in s))\n"
        "open(sys.argv[3],'w').write(''.join(json.dumps(x)+'\\n' for x in r if x['label']))\n"
        "print(sum(x['label'] for x in s),sum(not x['label'] for x in s))\n";
    cu_proc q = cu_py(&sb, PY_SPLIT, unp, split, only, NULL);
    cr_assert_eq(q.code, 0, "%s", q.err);
    int n_des = 0, n_und = 0;
    cr_assert(sscanf(q.out, "%d %d", &n_des, &n_und) == 2 && n_des >= 16 && n_und >= 16, "split: %s", q.out);
    cu_proc_free(&q);

    /* 1. The classifier separates the two distributions (its training
     *    scores, and P(desirable) of every record in the checkpoint), the
     *    density ratios stay in [min, max] = [0.5, 10] and below 1 on
     *    average (the undesirable prompts are recognised), and the run
     *    learns. */
    char recipe[256];
    write_recipe(&sb, recipe, sizeof recipe, "bco", split, weak);
    const char *udm[] = {"bco.udm=true", NULL, NULL, NULL, NULL};
    cu_proc p = run_job(&sb, recipe, K, udm);
    cr_assert_eq(p.code, 0, "[%s] bco udm exit %d:\n%s%s", sb.dir, p.code, p.out, p.err);
    double chosen = after(p.out, "UDM classifier training scores: chosen "), rejected = after(p.out, ", rejected ");
    cr_assert(chosen >= 0.9 && rejected >= 0.9, "the classifier does not separate the prompts:\n%s", p.out);
    cu_proc_free(&p);
    static const char *PY_UDM =
        "import json,sys,h5py\n"
        "d=sys.argv[1]\n"
        "recs=[json.loads(l) for l in open(sys.argv[2])]\n"
        "f=h5py.File(d+'/checkpoints/step_00000040.h5','r')\n"
        "p=f['data/udm_prob'][()]\n"
        "assert len(p)==len(recs) and f['algo/bco_udm/coef'].shape[0]>0\n"
        "acc=sum((q>0.5)==bool(r['label']) for q,r in zip(p,recs))/len(recs)\n"
        "v=[json.loads(l).get('train/udm/density_ratio') for l in open(d+'/metrics.jsonl')]\n"
        "v=[x for x in v if x is not None]\n"
        "print('%.4f %d %.6f %.6f %.6f'%(acc,len(v),min(v),max(v),sum(v)/len(v)))\n";
    q = cu_py(&sb, PY_UDM, K, split, NULL);
    cr_assert_eq(q.code, 0, "%s", q.err);
    double acc = 0, lo = 0, hi = 0, mean = 0;
    int nv = 0;
    cr_assert_eq(sscanf(q.out, "%lf %d %lf %lf %lf", &acc, &nv, &lo, &hi, &mean), 5, "%s", q.out);
    cr_assert(acc >= 0.9, "P(desirable | prompt) > 0.5 for %.1f%% of the records' true labels", 100 * acc);
    cr_assert(nv >= 30 && lo >= 0.5 && hi <= 10 && mean < 1.0,
              "density ratios of %d steps in [%g, %g] (mean %g): want them in [0.5, 10], below 1 on average", nv, lo,
              hi, mean);
    cu_proc_free(&q);
    double l0, l1, m0, m1;
    metric_ends(&sb, K, "train/rewards/margins", NULL, 10, &m0, &m1);
    metric_ends(&sb, K, "train/loss", NULL, 10, &l0, &l1);
    cr_assert(m1 > m0 && l1 < l0, "bco udm: margins %.4f -> %.4f, loss %.4f -> %.4f", m0, m1, l0, l1);

    /* 2. The clamp: with min_density_ratio 2 every undesirable weight (all
     *    below 1) is raised to exactly 2. */
    const char *clamp[] = {"bco.udm=true", "bco.settings=min_density_ratio=2 max_density_ratio=3", "train.steps=5",
                           NULL};
    p = run_job(&sb, recipe, L, clamp);
    cr_assert_eq(p.code, 0, "[%s] bco udm clamp exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    q = cu_py(&sb,
              "import json,sys\n"
              "v=[json.loads(l).get('train/udm/density_ratio') for l in open(sys.argv[1]+'/metrics.jsonl')]\n"
              "v=[x for x in v if x is not None]\n"
              "print(len(v),min(v),max(v))\n",
              L, NULL);
    cr_assert_eq(q.code, 0, "%s", q.err);
    cr_assert(sscanf(q.out, "%d %lf %lf", &nv, &lo, &hi) == 3 && nv >= 3 && lo == 2.0 && hi == 2.0,
              "clamped to [2, 3]: %s", q.out);
    cu_proc_free(&q);

    /* 3. Bit-exact resume: the classifier and the probabilities come from
     *    the checkpoint (no refit), /algo included. */
    const char *base[] = {"bco.udm=true", "train.steps=6", "run.save_every=100", NULL, NULL};
    p = run_job(&sb, recipe, A, base);
    cr_assert_eq(p.code, 0, "[%s] A exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    base[3] = "run.stop_at=3";
    p = run_job(&sb, recipe, B, base);
    cr_assert_eq(p.code, 0, "[%s] B exit %d:\n%s", sb.dir, p.code, p.err);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "resume", B, NULL);
    cr_assert_eq(p.code, 0, "[%s] resume exit %d:\n%s", sb.dir, p.code, p.err);
    cr_assert(strstr(p.out, "prompt classifier from the checkpoint"), "%s", p.out);
    cr_assert(!strstr(p.out, "UDM classifier training scores"), "a resume must not refit:\n%s", p.out);
    cu_proc_free(&p);
    char ca[512], cb[512];
    const char *groups[] = {"/model", "/optim", "/data", "/algo", NULL};
    snprintf(ca, sizeof ca, "%s/checkpoints/step_00000006.h5", A);
    snprintf(cb, sizeof cb, "%s/checkpoints/step_00000006.h5", B);
    cu_assert_h5_same(&sb, ca, cb, groups);
    cu_assert_metrics_equal(&sb, A, B, 6);

    /* 4. UDM needs both kinds of records (exit 2, before any training). */
    char donly[300];
    snprintf(donly, sizeof donly, "data.path=%s", only);
    const char *bad[] = {"bco.udm=true", donly, "train.steps=2", NULL};
    p = run_job(&sb, recipe, Z, bad);
    cr_assert(p.code == 2 && strstr(p.err, "bco.udm") && strstr(p.err, "0 undesirable"), "exit %d: %s", p.code,
              p.err);
    cu_proc_free(&p);
    cu_rm_rf(sb.dir);
}

/* The datasets shipped for the recipes obey the task's rule, and the recipes
 * that read them validate and point at them. */
Test(pref, shipped_datasets) {
    cu_sandbox sb;
    cu_sb_open(&sb, "/tmp/rlt-pref-XXXXXX");
    long n, f, n_pairs;
    check_data(&sb, PREFSETS "reverse-pairs.jsonl", "pairs", &n_pairs, &f);
    cr_assert(n_pairs >= 200 && f == 0, "reverse-pairs.jsonl: %ld records, %ld flipped", n_pairs, f);
    check_data(&sb, PREFSETS "reverse-lists.jsonl", "lists", &n, &f);
    cr_assert(n == n_pairs && f == 0, "reverse-lists.jsonl: %ld records (pairs: %ld), %ld flipped", n, n_pairs, f);
    check_data(&sb, PREFSETS "reverse-unpaired.jsonl", "unpaired", &n, &f);
    cr_assert(n == 2 * n_pairs && f == 0, "reverse-unpaired.jsonl: %ld records, %ld flipped", n, f);
    static const char *const algos[] = {"dpo", "sdpo", "adpo", "simpo", "orpo", "kto", "bco"};
    static const char *const sets[] = {"pairs", "lists", "lists", "pairs", "pairs", "unpaired", "unpaired"};
    enum { NA = sizeof algos / sizeof algos[0] };
    char recipes[2 * NA][128];
    cu_argvec a = {.n = 0};
    cu_av_add(&a, RLT_BIN);
    cu_av_add(&a, "check");
    for (size_t i = 0; i < NA; i++) {
        snprintf(recipes[2 * i], sizeof recipes[0], RUNS "%s-reverse.ini", algos[i]);
        snprintf(recipes[2 * i + 1], sizeof recipes[0], "data/prefsets/reverse-%s.jsonl", sets[i]);
        cu_av_add(&a, recipes[2 * i]);
    }
    cu_proc p = cu_run_argv(&sb, a.v);
    cr_assert_eq(p.code, 0, "%s%s", p.out, p.err);
    for (size_t i = 0; i < NA; i++) {
        char want[96];
        snprintf(want, sizeof want, "%s-reverse.ini: ok (algorithm %s)", algos[i], algos[i]);
        cr_assert(strstr(p.out, want), "no '%s' in:\n%s", want, p.out);
    }
    cu_proc_free(&p);
    for (size_t i = 0; i < 2 * NA; i += 2) {
        char *text = cu_slurp(recipes[i], NULL);
        cr_assert(text && strstr(text, recipes[i + 1]) && strstr(text, "init_from = runs/sft-reverse/default"),
                  "%s does not read %s from runs/sft-reverse/default", recipes[i], recipes[i + 1]);
        free(text);
    }
    cu_rm_rf(sb.dir);
}
