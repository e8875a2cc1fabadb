/*
 * test_cli_losses.c -- end-to-end tests of every `rlt loss` entry through the
 * real executable: grpo (sapo, GSPO), token_logps, soft_logp, dpo (sigmoid,
 * ipo, a weighted combination), sdpo, adpo, simpo, orpo, kto and bco.
 *
 * /usr/bin/python3 with h5py writes the spec's worked-example inputs as
 * float64 HDF5 files into a mkdtemp sandbox, `rlt loss NAME --in --out
 * [--set ...]` evaluates each, and one more python3 run dumps every output
 * file as text. The asserts compare /loss, per-element /values, /grad entries
 * and /metrics with the numbers printed in specs/pg_losses.md (EX-1, EX-S)
 * and specs/pref_kd_losses.md (sections 1.8, 2, 3.6, 4) to 1e-6. Gradients the
 * spec does not print are checked through identities that follow from its
 * numbers (e.g. DPO sigmoid: d/d logp_w = -beta/B * (1 - exp(-loss_i))).
 * A second test checks the usage errors of each family: a missing required
 * dataset and a misspelt setting exit with 2 and say what is wrong.
 *
 * The binary does not link libtorch. A sandbox is removed when its test
 * passes and kept (its path is in the messages) when an assert fails.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cli_util.h"

#ifndef RLT_BIN
#error "RLT_BIN (path of the rlt executable) must be defined by the build"
#endif

#define TOL 1e-6

/* cr_expect that also counts the failure in *fails (the sandbox of a failing
 * test is kept for inspection). */
#define CHECK(fails, cond, ...)                                                                                    \
    do {                                                                                                           \
        int ok_ = (cond);                                                                                          \
        *(fails) += !ok_;                                                                                          \
        cr_expect(ok_, __VA_ARGS__);                                                                               \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Processes                                                                 */
/* ------------------------------------------------------------------------ */

/* Runs argv (argv[0] an absolute path) with stdout/stderr captured to
 * <dir>/<tag>.out and .err. */
static cu_proc spawn(const char *dir, const char *tag, const char *const argv[]) {
    char out_path[512], err_path[512];
    snprintf(out_path, sizeof out_path, "%s/%s.out", dir, tag);
    snprintf(err_path, sizeof err_path, "%s/%s.err", dir, tag);
    return cu_capture(argv, out_path, err_path);
}

/* Runs a python3 script (text) with the sandbox as argv[1]; asserts exit 0. */
static cu_proc python(const char *dir, const char *tag, const char *script) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.py", dir, tag);
    cr_assert_eq(cu_write_text(path, script), 0, "cannot write %s: %s", path, strerror(errno));
    const char *argv[] = {CU_PYTHON, path, dir, NULL};
    cu_proc p = spawn(dir, tag, argv);
    cr_assert_eq(p.code, 0, "%s %s failed (%d):\n%s", CU_PYTHON, path, p.code, p.err);
    return p;
}

/* `rlt loss NAME --in <dir>/<in>.h5 --out <dir>/<out>.h5 --set ...`; sets is
 * NULL-terminated. */
static cu_proc rlt_loss(const char *dir, const char *name, const char *in, const char *out, const char *const *sets) {
    char in_path[512], out_path[512];
    snprintf(in_path, sizeof in_path, "%s/%s.h5", dir, in);
    snprintf(out_path, sizeof out_path, "%s/%s.h5", dir, out);
    const char *argv[32] = {RLT_BIN, "loss", name, "--in", in_path, "--out", out_path};
    int n = 7;
    for (int i = 0; sets && sets[i] && n < 29; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    argv[n] = NULL;
    return spawn(dir, out, argv);
}

/* ------------------------------------------------------------------------ */
/* Inputs: the spec's worked examples, float64                               */
/* ------------------------------------------------------------------------ */

static const char INPUTS_PY[] =
    "import sys, h5py, numpy as np\n"
    "d = sys.argv[1]\n"
    "nan = float('nan')\n"
    "def w(name, **ds):\n"
    "    with h5py.File(f'{d}/{name}.h5', 'w') as f:\n"
    "        for k, v in ds.items():\n"
    "            f[k] = np.asarray(v)\n"
    /* EX-1 (pg_losses.md 0): the padded logps entry is NaN, which must not leak */
    "old = [[-1.0,-0.5,-2.0],[-0.7,-1.2,-0.3],[-0.2,-1.5,-0.9],[-1.1,-0.4,-0.6]]\n"
    "dn = [[0.10,-0.30,0.25],[0.05,0.40,0.00],[1.20,0.15,0.02],[0.30,0.00,0.00]]\n"
    "dr = [[0.0,0.1,-0.2],[0.2,-0.1,0.0],[-0.3,0.05,0.1],[0.1,0.0,0.0]]\n"
    "new = np.array(old) + np.array(dn); new[1, 2] = nan\n"
    "ex1 = dict(logps=new, old_logps=old, ref_logps=np.array(old) + np.array(dr),\n"
    "           mask=np.array([[1,1,1],[1,1,0],[1,1,1],[1,0,0]], 'u1'), rewards=[1.0, 0.0, 0.0, 0.5],\n"
    "           entropy=[[0.5,2.0,1.0],[1.5,0.2,0.0],[3.0,0.8,1.2],[0.9,0.0,0.0]])\n"
    "w('ex1', **ex1)\n"
    "w('ex1_nomask', **{k: v for k, v in ex1.items() if k != 'mask'})\n"
    /* EX-S (4.8): the soft token before and after id 11's logit moves 1.5 -> 1.9;
     * stored order of the candidates: ids 10, 13, 12, 11, 14 */
    "g = [-0.362058, -0.562047, -1.162050, -1.662057, -14.815511]\n"
    "w('exs', topk_logits=[[2.0,0.1,0.3,1.5,-0.5],[2.0,0.1,0.3,1.9,-0.5]], gumbel_logits=[g, g])\n"
    "w('exs_nog', topk_logits=[[2.0,0.1,0.3,1.5,-0.5]])\n"
    "w('tok', logits=[[[2.0,1.9,0.3,0.1,-0.5,-1.0,-2.0,-3.0]]], ids=[[0]])\n"
    /* Example A (pref_kd_losses.md 1.8): int64 token counts */
    "exa = dict(policy_chosen_logps=[-12.0,-20.0,-8.0], policy_rejected_logps=[-15.0,-18.0,-30.0],\n"
    "           ref_chosen_logps=[-12.5,-16.0,-9.0], ref_rejected_logps=[-14.0,-19.0,-27.0],\n"
    "           chosen_lengths=[4,8,3], rejected_lengths=[5,6,12])\n"
    "w('exa', **exa)\n"
    "w('exa_noref', **{k: v for k, v in exa.items() if k != 'ref_rejected_logps'})\n"
    /* S-DPO (2): B = 2, K = 3 */
    "w('sdpo', policy_chosen_logps=[-5.0,-7.0], ref_chosen_logps=[-5.5,-6.0],\n"
    "  policy_rejected_logps=[[-6.0,-9.0,-7.0],[-8.0,-6.5,-7.5]], ref_rejected_logps=[[-5.0,-8.0,-7.2],[-7.5,-7.0,-7.0]])\n"
    /* ADPO (3.6): rewards as scores, target=softmax with beta_reward 0.5 */
    "w('adpo', policy_logps=[[-10.0,-12.0,-9.0,-15.0]], anchor_logps=[[-10.5,-11.0,-9.5,-14.0]], q=[[1.0,0.0,1.0,0.0]])\n"
    /* SimPO (4.1) as sums with float token counts: averages w [-1.2,-0.8,-2.0], l [-1.5,-0.7,-2.6] */
    "w('simpo', policy_chosen_logps=[-4.8,-4.0,-4.0], chosen_lengths=[4.0,5.0,2.0],\n"
    "  policy_rejected_logps=[-4.5,-7.0,-13.0], rejected_lengths=[3.0,10.0,5.0])\n"
    /* ORPO (4.2): the same averages; NLL over prompt+chosen = 6.6 / 6 = 1.1 */
    "w('orpo', policy_chosen_logps=[-1.2,-0.8,-2.0], policy_rejected_logps=[-1.5,-0.7,-2.6],\n"
    "  policy_chosen_full_logps=[-2.2,-3.3,-1.1], chosen_full_lengths=[2.0,3.0,1.0])\n"
    /* KTO / BCO (4.3, 4.4): labels T T F F */
    "kto = dict(policy_logps=[-10.0,-12.0,-15.0,-9.0], ref_logps=[-11.0,-12.5,-14.0,-9.5],\n"
    "           labels=np.array([1,1,0,0], 'u1'), policy_kl_logps=[-20.0,-18.0,-25.0,-16.0],\n"
    "           ref_kl_logps=[-21.0,-18.2,-24.0,-17.0])\n"
    "w('kto', **kto)\n"
    "w('kto_nolabels', **{k: v for k, v in kto.items() if k != 'labels'})\n";

/* ------------------------------------------------------------------------ */
/* Outputs: every dataset of every output file, as text                      */
/* ------------------------------------------------------------------------ */

/* Prints "<file> <path> <ndim> <dims...> <n> <values...>" per dataset. */
static const char DUMP_PY[] =
    "import sys, glob, os, h5py, numpy as np\n"
    "for fn in sorted(glob.glob(sys.argv[1] + '/o_*.h5')):\n"
    "    tag = os.path.basename(fn)[:-3]\n"
    "    def show(name, obj):\n"
    "        if isinstance(obj, h5py.Dataset):\n"
    "            a = np.asarray(obj[()], dtype=np.float64).ravel()\n"
    "            print(tag, '/' + name, len(obj.shape), *obj.shape, a.size, *(repr(float(x)) for x in a))\n"
    "    h5py.File(fn, 'r').visititems(show)\n";

#define DS_MAX_VALUES 32
#define DUMP_MAX 256

typedef struct dataset {
    char file[32], path[64];
    int ndim;
    long shape[4];
    int n;
    double v[DS_MAX_VALUES];
} dataset;

typedef struct dump {
    int failures; /* checks failed so far */
    int n;
    dataset d[DUMP_MAX];
} dump;

static void dump_parse(dump *t, char *text) {
    t->n = 0; /* failures so far are kept */
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cr_assert_lt(t->n, DUMP_MAX, "too many datasets in the outputs");
        dataset *d = &t->d[t->n];
        char *tok_save = NULL, *tok;
        tok = strtok_r(line, " ", &tok_save);
        cr_assert(tok && strlen(tok) < sizeof d->file, "bad dump line");
        strcpy(d->file, tok);
        tok = strtok_r(NULL, " ", &tok_save);
        cr_assert(tok && strlen(tok) < sizeof d->path, "bad dump line for %s", d->file);
        strcpy(d->path, tok);
        d->ndim = atoi(strtok_r(NULL, " ", &tok_save));
        cr_assert(d->ndim >= 0 && d->ndim <= 4, "%s %s: ndim %d", d->file, d->path, d->ndim);
        for (int i = 0; i < d->ndim; i++) d->shape[i] = atol(strtok_r(NULL, " ", &tok_save));
        d->n = atoi(strtok_r(NULL, " ", &tok_save));
        cr_assert(d->n <= DS_MAX_VALUES, "%s %s has %d values", d->file, d->path, d->n);
        for (int i = 0; i < d->n; i++) d->v[i] = strtod(strtok_r(NULL, " ", &tok_save), NULL);
        t->n++;
    }
}

static const dataset *find(const dump *t, const char *file, const char *path) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->d[i].file, file) == 0 && strcmp(t->d[i].path, path) == 0) return &t->d[i];
    return NULL;
}

/* Expects file:path to exist with the given shape ("" = scalar, "4,3"). */
static void expect_shape(dump *t, const char *file, const char *path, const char *shape) {
    const dataset *d = find(t, file, path);
    CHECK(&t->failures, d != NULL, "%s.h5 has no %s", file, path);
    if (!d) return;
    char got[64] = "";
    for (int i = 0; i < d->ndim; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%ld", i ? "," : "", d->shape[i]);
    CHECK(&t->failures, strcmp(got, shape) == 0, "%s.h5 %s has shape [%s], expected [%s]", file, path, got, shape);
}

/* Expects file:path (flattened) element i to equal want to tol. */
static void expect_near(dump *t, const char *file, const char *path, int i, double want, double tol) {
    const dataset *d = find(t, file, path);
    CHECK(&t->failures, d != NULL, "%s.h5 has no %s", file, path);
    if (!d) return;
    CHECK(&t->failures, i < d->n, "%s.h5 %s has %d values, wanted index %d", file, path, d->n, i);
    if (i >= d->n) return;
    CHECK(&t->failures, fabs(d->v[i] - want) <= tol, "%s.h5 %s[%d] = %.9f, spec %.9f (|diff| %.3g > %g)", file, path, i,
              d->v[i], want, fabs(d->v[i] - want), tol);
}

static void expect_all(dump *t, const char *file, const char *path, const double *want, int n) {
    for (int i = 0; i < n; i++) expect_near(t, file, path, i, want[i], TOL);
}

static double value(const dump *t, const char *file, const char *path, int i) {
    const dataset *d = find(t, file, path);
    return d && i < d->n ? d->v[i] : NAN;
}

static int metric_count(const dump *t, const char *file) {
    int n = 0;
    for (int i = 0; i < t->n; i++) n += strcmp(t->d[i].file, file) == 0 && strncmp(t->d[i].path, "/metrics/", 9) == 0;
    return n;
}

static void make_sandbox(char *dir, size_t cap) {
    cu_mkdtemp(dir, cap, "/tmp/rlt_cli_losses_XXXXXX");
    cu_proc p = python(dir, "inputs", INPUTS_PY);
    cu_proc_free(&p);
}

/* Removes the sandbox when the test passed; reports it otherwise. */
static void end_sandbox(const char *dir, int failures) {
    if (failures) {
        cr_log_warn("%d checks failed; inputs and outputs kept in %s", failures, dir);
        return;
    }
    cu_rm_rf(dir);
}

/* ------------------------------------------------------------------------ */
/* Worked examples                                                           */
/* ------------------------------------------------------------------------ */

typedef struct loss_run {
    const char *out;  /* output file tag: <dir>/<out>.h5 */
    const char *loss; /* the entry */
    const char *in;   /* input file tag */
    const char *sets[6];
} loss_run;

static const loss_run RUNS[] = {
    {"o_grpo_beta", "grpo", "ex1", {"loss_type=grpo", "beta=0.04", "group_size=4"}},
    {"o_grpo_sapo", "grpo", "ex1", {"loss_type=sapo", "group_size=4"}},
    {"o_grpo_gspo", "grpo", "ex1",
     {"loss_type=grpo", "importance_sampling_level=sequence", "epsilon=3e-4", "epsilon_high=4e-4", "group_size=4"}},
    {"o_token", "token_logps", "tok", {NULL}},
    {"o_soft", "soft_logp", "exs", {NULL}},
    {"o_dpo_sigmoid", "dpo", "exa", {NULL}},
    {"o_dpo_ipo", "dpo", "exa", {"loss_type=ipo"}},
    {"o_dpo_mpo", "dpo", "exa", {"loss_type=sigmoid,bco_pair", "loss_weights=0.8,0.2"}},
    {"o_sdpo", "sdpo", "sdpo", {"beta=1"}},
    {"o_adpo", "adpo", "adpo", {"target=softmax", "tau=0.8"}},
    {"o_simpo", "simpo", "simpo", {NULL}},
    {"o_orpo", "orpo", "orpo", {NULL}},
    {"o_kto", "kto", "kto", {NULL}},
    {"o_bco", "bco", "kto", {NULL}},
};
#define NRUNS ((int)(sizeof RUNS / sizeof RUNS[0]))

Test(cli_losses, worked_examples, .timeout = 400) {
    dump *t = calloc(1, sizeof *t); /* ~80 KB: off the stack */
    cr_assert_not_null(t, "out of memory");
    char dir[64];
    make_sandbox(dir, sizeof dir);

    for (int r = 0; r < NRUNS; r++) {
        cu_proc p = rlt_loss(dir, RUNS[r].loss, RUNS[r].in, RUNS[r].out, RUNS[r].sets);
        char head[64];
        snprintf(head, sizeof head, "%s: loss ", RUNS[r].loss);
        CHECK(&t->failures, p.code == 0, "rlt loss %s (%s, %s) exited %d in %s:\n%s", RUNS[r].loss, RUNS[r].in,
                     RUNS[r].sets[0] ? RUNS[r].sets[0] : "defaults", p.code, dir, p.err);
        CHECK(&t->failures, strstr(p.out, head) != NULL, "rlt loss %s printed:\n%s", RUNS[r].loss, p.out);
        cu_proc_free(&p);
    }
    cu_proc d = python(dir, "dump", DUMP_PY);
    dump_parse(t, d.out);
    cu_proc_free(&d);
    for (int r = 0; r < NRUNS; r++) {
        expect_shape(t, RUNS[r].out, "/loss", "");
        CHECK(&t->failures, metric_count(t, RUNS[r].out) > 0, "%s.h5 has no /metrics", RUNS[r].out);
    }

    /* grpo, EX-1 (pg_losses.md 1.9): loss_type grpo, beta 0.04, TRL group advantages */
    const char *f = "o_grpo_beta";
    expect_near(t, f, "/loss", 0, 0.202248, TOL);
    expect_shape(t, f, "/grad/logps", "4,3");
    const double g_beta[12] = {-0.119899, -0.082223, 0.001208, 0.102108, 0.148014, 0,
                               0.219279,  0.076145,  0.066306, 0.001813, 0,        0};
    expect_all(t, f, "/grad/logps", g_beta, 12);
    expect_near(t, f, "/metrics/kl", 0, 0.116960, TOL);
    expect_near(t, f, "/metrics/entropy", 0, 1.233333, TOL);
    expect_near(t, f, "/metrics/clip_ratio/high_mean", 0, 2.0 / 9.0, TOL);
    const double adv[4] = {1.305310, -0.783186, -0.783186, 0.261062};
    expect_all(t, f, "/values/advantages", adv, 4);

    /* sapo (3.6) */
    f = "o_grpo_sapo";
    expect_near(t, f, "/loss", 0, 0.094310, TOL);
    const double g_sapo[12] = {-0.119884, -0.079245, -0.136892, 0.102843, 0.136727, 0,
                               0.064127,  0.075283,  0.066576,  -0.085457, 0,       0};
    expect_all(t, f, "/grad/logps", g_sapo, 12);
    const double sapo_tok[12] = {-2.747774, -2.274188, -2.978888, 1.531928, 1.868635, 0,
                                 2.743510,  1.618225,  1.507603,  -0.612538, 0,       0};
    expect_all(t, f, "/values/per_token_loss", sapo_tok, 12);
    CHECK(&t->failures, find(t, f, "/metrics/clip_ratio/high_mean") == NULL,
          "sapo logs no clip metrics (pg_losses.md 3.6)");

    /* GSPO: importance_sampling_level=sequence, eps 3e-4/4e-4 (6.5) */
    f = "o_grpo_gspo";
    expect_near(t, f, "/loss", 0, 0.162575, TOL);
    const double g_gspo[12] = {0, 0, 0, 0.122600, 0.122600, 0, 0.103041, 0.103041, 0.103041, 0, 0, 0};
    expect_all(t, f, "/grad/logps", g_gspo, 12);
    expect_near(t, f, "/metrics/clip_ratio/high_mean", 0, 0.5, TOL);

    /* token_logps: the answer token id 10 under EX-S's new logits (4.8) */
    f = "o_token";
    expect_near(t, f, "/loss", 0, -0.872972, TOL);
    expect_near(t, f, "/values/logps", 0, -0.872972, TOL);
    expect_shape(t, f, "/grad/logits", "1,1,8");
    /* d logp / d logits = onehot - softmax: the sampled id gets 1 - p, the row sums to 0 */
    expect_near(t, f, "/grad/logits", 0, 1.0 - exp(-0.872972), TOL);
    double row = 0;
    for (int i = 0; i < 8; i++) row += value(t, f, "/grad/logits", i);
    CHECK(&t->failures, fabs(row) <= TOL, "token_logps: grad/logits row sums to %.3g, not 0", row);

    /* soft_logp, EX-S (4.8): logp_old, logp_new; the loss is their sum */
    f = "o_soft";
    expect_near(t, f, "/values/logp", 0, -1.469286, TOL);
    expect_near(t, f, "/values/logp", 1, -1.589254, TOL);
    expect_near(t, f, "/loss", 0, -1.469286 - 1.589254, 1.5 * TOL); /* two 6-decimal roundings */
    expect_shape(t, f, "/grad/topk_logits", "2,5");
    /* d logp_old / d logits of ids 10..14, here in stored order 10, 13, 12, 11, 14 */
    const double g_soft[5] = {-0.087106, 0.193693, 0.148634, -0.242133, -0.013086};
    expect_all(t, f, "/grad/topk_logits", g_soft, 5);
    expect_near(t, f, "/metrics/kept_mean", 0, 4.0, TOL);

    /* dpo sigmoid, example A (pref_kd_losses.md 1.8), beta 0.1 */
    f = "o_dpo_sigmoid";
    expect_near(t, f, "/loss", 0, 0.702683, TOL);
    const double l_sig[3] = {0.620957, 0.974077, 0.513015};
    expect_all(t, f, "/values/losses", l_sig, 3);
    expect_shape(t, f, "/grad/policy_chosen_logps", "3");
    for (int i = 0; i < 3; i++) { /* -logsig(beta h): d/dlogp_w = -beta/B * (1 - exp(-loss_i)) = -d/dlogp_l */
        expect_near(t, f, "/grad/policy_chosen_logps", i, -0.1 / 3 * (1 - exp(-l_sig[i])), TOL);
        expect_near(t, f, "/grad/policy_rejected_logps", i, 0.1 / 3 * (1 - exp(-l_sig[i])), TOL);
    }
    expect_near(t, f, "/metrics/rewards/chosen", 0, -0.083333, TOL);
    expect_near(t, f, "/metrics/rewards/rejected", 0, -0.1, TOL);
    expect_near(t, f, "/metrics/rewards/accuracies", 0, 0.666667, TOL);
    expect_near(t, f, "/metrics/rewards/margins", 0, 0.016667, TOL);
    expect_near(t, f, "/metrics/logps/chosen", 0, -13.333333, TOL);
    expect_near(t, f, "/metrics/logps/rejected", 0, -21.0, TOL);

    /* dpo loss_type=ipo (1.8), TRL's length-normalized form */
    f = "o_dpo_ipo";
    expect_near(t, f, "/loss", 0, 24.491227, TOL);
    const double l_ipo[3] = {21.855625, 32.111111, 19.506944};
    expect_all(t, f, "/values/losses", l_ipo, 3);
    expect_shape(t, f, "/grad/policy_rejected_logps", "3");

    /* MPO-style combination: 0.8 sigmoid + 0.2 bco_pair */
    f = "o_dpo_mpo";
    expect_near(t, f, "/loss", 0, 0.840081, TOL);
    expect_shape(t, f, "/grad/policy_chosen_logps", "3");

    /* sdpo (2): B = 2, K = 3, beta = 1 */
    f = "o_sdpo";
    expect_near(t, f, "/loss", 0, 1.477472, TOL);
    const double l_sdpo[2] = {0.782567, 2.172377};
    expect_all(t, f, "/values/losses", l_sdpo, 2);
    expect_shape(t, f, "/grad/policy_rejected_logps", "2,3");
    expect_near(t, f, "/metrics/rewards/accuracies", 0, 0.5, TOL);
    /* the chosen item's gradient balances its K negatives' */
    for (int b = 0; b < 2; b++) {
        double neg = 0;
        for (int k = 0; k < 3; k++) neg += value(t, f, "/grad/policy_rejected_logps", 3 * b + k);
        expect_near(t, f, "/grad/policy_chosen_logps", b, -neg, TOL);
    }

    /* adpo listwise (3.6): target softmax of the rewards / 0.5, tau 0.8 */
    f = "o_adpo";
    expect_near(t, f, "/loss", 0, 1.059328, TOL);
    expect_near(t, f, "/metrics/adpo/kl", 0, 0.000847, TOL);
    const double q[4] = {0.440399, 0.059601, 0.440399, 0.059601};
    expect_all(t, f, "/values/target", q, 4);
    expect_shape(t, f, "/grad/policy_logps", "1,4");
    row = 0;
    for (int i = 0; i < 4; i++) row += value(t, f, "/grad/policy_logps", i);
    CHECK(&t->failures, fabs(row) <= TOL, "adpo: grad/policy_logps sums to %.3g, not 0 (softmax - q)", row);

    /* simpo, official defaults (4.1), sums / token counts */
    f = "o_simpo";
    expect_near(t, f, "/loss", 0, 0.716923, TOL);
    const double l_simpo[3] = {0.644397, 1.103186, 0.403186};
    expect_all(t, f, "/values/losses", l_simpo, 3);
    expect_shape(t, f, "/grad/policy_chosen_logps", "3");
    expect_near(t, f, "/metrics/rewards/chosen", 0, 2.0 * (-1.2 - 0.8 - 2.0) / 3, TOL);

    /* orpo (4.2), NLL 1.1 over prompt+chosen */
    f = "o_orpo";
    expect_near(t, f, "/loss", 0, 1.157233, TOL);
    expect_near(t, f, "/metrics/nll_loss", 0, 1.1, TOL);
    expect_near(t, f, "/metrics/log_odds_chosen", 0, (0.405900 - 0.189723 + 0.668237) / 3, TOL);
    expect_near(t, f, "/metrics/log_odds_ratio", 0, (-0.510652 - 0.792501 - 0.413838) / 3, TOL);
    expect_shape(t, f, "/grad/policy_chosen_full_logps", "3");
    for (int i = 0; i < 3; i++) /* NLL = -sum(full) / sum(lengths) = -sum / 6 */
        expect_near(t, f, "/grad/policy_chosen_full_logps", i, -1.0 / 6.0, TOL);

    /* kto (4.3), beta 0.1, z = 0.3 */
    f = "o_kto";
    expect_near(t, f, "/loss", 0, 0.487513, TOL);
    const double l_kto[4] = {0.482507, 0.495000, 0.467546, 0.505000};
    expect_all(t, f, "/values/losses", l_kto, 4);
    expect_shape(t, f, "/grad/policy_logps", "4");
    expect_near(t, f, "/metrics/kl", 0, 0.3, TOL);
    expect_near(t, f, "/metrics/rewards/chosen", 0, 0.075, TOL);
    expect_near(t, f, "/metrics/rewards/rejected", 0, -0.025, TOL);
    expect_near(t, f, "/metrics/rewards/margins", 0, 0.1, TOL);

    /* bco (4.4), first step: delta = 0.025 */
    f = "o_bco";
    expect_near(t, f, "/loss", 0, 0.668850, TOL);
    const double l_bco[4] = {0.656350, 0.680725, 0.632599, 0.705725};
    expect_all(t, f, "/values/losses", l_bco, 4);
    expect_shape(t, f, "/grad/policy_logps", "4");
    expect_near(t, f, "/metrics/delta", 0, 0.025, TOL);

    end_sandbox(dir, t->failures);
    free(t);
}

/* ------------------------------------------------------------------------ */
/* Usage errors: exit 2 and a message that names the problem                 */
/* ------------------------------------------------------------------------ */

typedef struct error_run {
    const char *tag, *loss, *in;
    const char *sets[3];
    const char *says[3]; /* substrings stderr must contain */
} error_run;

static const error_run ERRORS[] = {
    /* a missing required dataset, named with its symbolic shape */
    {"e_grpo_mask", "grpo", "ex1_nomask", {"group_size=4"}, {"'mask'", "[B,T]", "missing"}},
    {"e_soft_gumbel", "soft_logp", "exs_nog", {NULL}, {"'gumbel_logits'", "[N,K]", "missing"}},
    {"e_dpo_ref", "dpo", "exa_noref", {NULL}, {"'ref_rejected_logps'", "missing"}},
    {"e_kto_labels", "kto", "kto_nolabels", {NULL}, {"'labels'", "missing"}},
    /* a misspelt setting, with the name it was probably meant to be */
    {"e_grpo_set", "grpo", "ex1", {"group_size=4", "epsilom=0.2"}, {"epsilom", "did you mean 'epsilon'"}},
    {"e_soft_set", "soft_logp", "exs", {"temprature=1"}, {"temprature", "temperature"}},
    {"e_token_set", "token_logps", "tok", {"temp=1"}, {"'temp'", "temperature"}},
    {"e_dpo_set", "dpo", "exa", {"betta=0.1"}, {"betta", "did you mean 'beta'"}},
    {"e_sdpo_set", "sdpo", "sdpo", {"bta=1"}, {"bta", "did you mean 'beta'"}},
    {"e_adpo_set", "adpo", "adpo", {"tua=1"}, {"tua", "did you mean 'tau'"}},
    {"e_kto_set", "kto", "kto", {"desirable_weigth=1"}, {"desirable_weigth", "did you mean 'desirable_weight'"}},
    {"e_bco_set", "bco", "kto", {"min_density_ration=0.5"}, {"did you mean 'min_density_ratio'"}},
    /* the standalone ipo entry is gone: IPO is dpo --set loss_type=ipo */
    {"e_dpo_type", "dpo", "exa", {"loss_type=ipp"}, {"'ipp'", "did you mean 'ipo'"}},
};
#define NERRORS ((int)(sizeof ERRORS / sizeof ERRORS[0]))

Test(cli_losses, usage_errors, .timeout = 300) {
    char dir[64];
    int fails = 0;
    make_sandbox(dir, sizeof dir);
    for (int r = 0; r < NERRORS; r++) {
        const error_run *e = &ERRORS[r];
        cu_proc p = rlt_loss(dir, e->loss, e->in, e->tag, e->sets);
        CHECK(&fails, p.code == 2, "%s: rlt loss %s exited %d, expected 2; stderr:\n%s", e->tag, e->loss, p.code, p.err);
        for (int i = 0; i < 3 && e->says[i]; i++)
            CHECK(&fails, strstr(p.err, e->says[i]) != NULL, "%s: rlt loss %s: stderr lacks \"%s\":\n%s", e->tag,
                               e->loss, e->says[i], p.err);
        char out[600];
        snprintf(out, sizeof out, "%s/%s.h5", dir, e->tag);
        CHECK(&fails, access(out, F_OK) != 0, "%s: a failed run left %s", e->tag, out);
        cu_proc_free(&p);
    }
    end_sandbox(dir, fails);
}
