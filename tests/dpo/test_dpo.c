/*
 * test_dpo.c -- DPO (every TRL loss type), S-DPO and ADPO (losses/dpo.h,
 * losses/adpo.h) against the worked numbers of specs/pref_kd_losses.md
 * sections 1.8, 1.9, 2 and 3.6 (float64, 1e-6), closed-form gradients,
 * central finite differences on the worked and on random inputs, the
 * reductions S-DPO(K=1) == DPO and pairwise ADPO(hard, tau=1/beta) == DPO,
 * extreme log-ratios (+-1e4), the float32 path and the settings helpers.
 * Few Test()s on purpose: each one pays libtorch's start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "adpo.h"
#include "dpo.h"
#include "tensor.h"

#define MAXB 16

static void near(double got, double want, double tol, const char *what)
{
    cr_assert(fabs(got - want) <= tol, "%s: got %.9f, want %.9f (tol %g)", what, got, want, tol);
}

static int all_finite(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* A DPO config with "name=value" settings applied (NULL-terminated). */
static dpo_config dcfg(const char *first, ...)
{
    dpo_config c = dpo_config_default();
    va_list ap;
    va_start(ap, first);
    for (const char *kv = first; kv != NULL; kv = va_arg(ap, const char *)) {
        char name[64];
        const char *eq = strchr(kv, '=');
        cr_assert(eq != NULL && (size_t)(eq - kv) < sizeof name, "bad setting literal %s", kv);
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        cr_assert_eq(dpo_config_set(&c, name, eq + 1), RT_OK, "%s: %s", kv, rt_last_error());
    }
    va_end(ap);
    return c;
}

static rt_tensor *vec(rt_scope *S, const double *v, int64_t n, rt_dtype dt)
{
    rt_tensor *x = rt_from_data(S, v, &n, 1, RT_OPTS(RT_F64));
    return dt == RT_F64 ? x : rt_to_dtype(S, x, dt);
}

static rt_tensor *mat(rt_scope *S, const double *v, int64_t r, int64_t c, rt_dtype dt)
{
    int64_t shape[2] = {r, c};
    rt_tensor *x = rt_from_data(S, v, shape, 2, RT_OPTS(RT_F64));
    return dt == RT_F64 ? x : rt_to_dtype(S, x, dt);
}

/* ------------------------------------------------------------------------ */
/* DPO evaluation helper                                                      */
/* ------------------------------------------------------------------------ */

typedef struct pairs {
    int64_t B;
    const double *pc, *pr, *rc, *rr; /* [B] */
    const double *lc, *lr;           /* [B] lengths or NULL (lc passed as int64, lr as float) */
    const double *wc, *wr;           /* [B] WPO weights or NULL */
} pairs;

/* Worked example A (section 1.8). */
static const double A_pc[3] = {-12.0, -20.0, -8.0}, A_pr[3] = {-15.0, -18.0, -30.0};
static const double A_rc[3] = {-12.5, -16.0, -9.0}, A_rr[3] = {-14.0, -19.0, -27.0};
static const double A_lc[3] = {4, 8, 3}, A_lr[3] = {5, 6, 12};
static const pairs EX_A = {3, A_pc, A_pr, A_rc, A_rr, A_lc, A_lr, NULL, NULL};

/* One evaluation in dtype dt; per (B), gpc, gpr (B) may be NULL. Checks that
 * the reference never receives a gradient and that only the loss and the
 * requested outputs land in the caller's scope. */
static double eval_dpo(const dpo_config *c, const pairs *p, rt_dtype dt, dpo_metrics *m, double *per,
                       double *gpc, double *gpr)
{
    rt_scope *S = rt_scope_new();
    int64_t B = p->B;
    int64_t lens[MAXB];
    for (int64_t i = 0; p->lc && i < B; i++) lens[i] = (int64_t)p->lc[i];
    dpo_inputs in = {.policy_chosen_logps = vec(S, p->pc, B, dt),
                     .policy_rejected_logps = vec(S, p->pr, B, dt),
                     .ref_chosen_logps = vec(S, p->rc, B, dt),
                     .ref_rejected_logps = vec(S, p->rr, B, dt),
                     .chosen_lengths = p->lc ? rt_from_data(S, lens, &B, 1, RT_OPTS(RT_I64)) : NULL,
                     .rejected_lengths = p->lr ? vec(S, p->lr, B, RT_F64) : NULL,
                     .chosen_weights = p->wc ? vec(S, p->wc, B, dt) : NULL,
                     .rejected_weights = p->wr ? vec(S, p->wr, B, dt) : NULL};
    cr_assert(in.policy_chosen_logps && in.ref_rejected_logps, "%s", rt_last_error());
    int grad = gpc != NULL;
    if (grad) {
        cr_assert_eq(rt_set_requires_grad((rt_tensor *)in.policy_chosen_logps, 1), RT_OK);
        cr_assert_eq(rt_set_requires_grad((rt_tensor *)in.policy_rejected_logps, 1), RT_OK);
        cr_assert_eq(rt_set_requires_grad((rt_tensor *)in.ref_chosen_logps, 1), RT_OK);
        cr_assert_eq(rt_set_requires_grad((rt_tensor *)in.ref_rejected_logps, 1), RT_OK);
    }
    size_t before = rt_scope_count(S);
    dpo_outputs out;
    rt_tensor *loss = dpo_loss(S, c, &in, per ? &out : NULL, m);
    cr_assert(loss != NULL, "dpo_loss(%s): %s", dpo_loss_type_name((dpo_loss_type)c->loss_type[0]),
              rt_last_error());
    cr_assert_eq(rt_scope_count(S), before + 1 + (per ? 4 : 0), "dpo_loss left %zu handles",
                 rt_scope_count(S) - before);
    cr_assert_eq(rt_ndim(loss), 0);
    cr_assert_eq(rt_dtype_of(loss), dt == RT_F64 ? RT_F64 : RT_F32);
    double v = rt_item(loss);
    if (per) cr_assert_eq(rt_to_data(out.losses, RT_F64, per, (size_t)B * sizeof(double)), RT_OK);
    if (grad) {
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        rt_tensor *g1 = rt_grad(S, in.policy_chosen_logps), *g2 = rt_grad(S, in.policy_rejected_logps);
        /* sft alone does not depend on the rejected side */
        if (g1) cr_assert_eq(rt_to_data(g1, RT_F64, gpc, (size_t)B * sizeof(double)), RT_OK);
        else memset(gpc, 0, (size_t)B * sizeof(double));
        if (g2) cr_assert_eq(rt_to_data(g2, RT_F64, gpr, (size_t)B * sizeof(double)), RT_OK);
        else memset(gpr, 0, (size_t)B * sizeof(double));
        cr_assert_eq(rt_has_grad(in.ref_chosen_logps), 0, "reference got a gradient");
        cr_assert_eq(rt_has_grad(in.ref_rejected_logps), 0, "reference got a gradient");
    }
    rt_scope_free(S);
    return v;
}

static void check_type(const dpo_config *c, const double want_per[3], double want_mean, const char *what)
{
    double per[3];
    char buf[128];
    near(eval_dpo(c, &EX_A, RT_F64, NULL, per, NULL, NULL), want_mean, 1e-6, what);
    for (int i = 0; want_per && i < 3; i++) {
        snprintf(buf, sizeof buf, "%s pair %d", what, i + 1);
        near(per[i], want_per[i], 1e-6, buf);
    }
}

/* Central differences of the loss w.r.t. the policy log-probs vs autograd. */
static void fd_check(const dpo_config *c, const pairs *p, const char *what)
{
    double gpc[MAXB], gpr[MAXB], pc[MAXB], pr[MAXB];
    double v = eval_dpo(c, p, RT_F64, NULL, NULL, gpc, gpr);
    /* rounding in the difference quotient grows with the loss: ~1e-16 |loss| / h */
    double noise = 1e-9 * fabs(v);
    memcpy(pc, p->pc, (size_t)p->B * sizeof(double));
    memcpy(pr, p->pr, (size_t)p->B * sizeof(double));
    pairs q = *p;
    q.pc = pc;
    q.pr = pr;
    const double h = 1e-6;
    for (int side = 0; side < 2; side++) {
        double *x = side ? pr : pc, *g = side ? gpr : gpc;
        for (int64_t i = 0; i < p->B; i++) {
            double x0 = x[i];
            x[i] = x0 + h;
            double up = eval_dpo(c, &q, RT_F64, NULL, NULL, NULL, NULL);
            x[i] = x0 - h;
            double down = eval_dpo(c, &q, RT_F64, NULL, NULL, NULL, NULL);
            x[i] = x0;
            double fd = (up - down) / (2 * h);
            cr_assert(fabs(fd - g[i]) <= 1e-6 + 1e-5 * fabs(g[i]) + noise,
                      "%s: d loss / d policy_%s_logps[%lld]: autograd %.10f, finite difference %.10f", what,
                      side ? "rejected" : "chosen", (long long)i, g[i], fd);
        }
    }
}

/* Example B (section 1.9): per-token log-probs from the logit rows. */
static const double B_pol_c[10] = {0.5, -1.0, 0.2, 2.0, 0.1, 0.0, 0.3, -0.5, 0.4, 1.5};
static const double B_ref_c[10] = {0.3, -0.5, 0.0, 1.5, 0.2, 0.1, 0.2, -0.2, 0.3, 1.0};
static const double B_pol_r[15] = {0.2, 0.1, 1.0, -0.3, 0.0, -0.2, 0.4, 0.0, 0.3, 0.9, 0.1, 0.8, -0.4, 0.0, 0.2};
static const double B_ref_r[15] = {0.0, 0.2, 1.2, -0.1, 0.1, 0.0, 0.3, 0.1, 0.2, 1.1, 0.2, 1.0, -0.2, 0.1, 0.0};
static const int64_t B_lab_c[2] = {3, 4}, B_lab_r[3] = {2, 4, 1};

/* log_softmax(rows)[label] as a [1,T] tensor (T rows of V = 5), padded to
 * Tpad columns with NaN (the padding must never leak). */
static rt_tensor *token_row(rt_scope *S, const double *logits, const int64_t *labels, int64_t T, int64_t Tpad)
{
    double v[8];
    rt_tensor *ls = rt_log_softmax(S, mat(S, logits, T, 5, RT_F64), 1);
    double all[40];
    cr_assert_eq(rt_to_data(ls, RT_F64, all, (size_t)(T * 5) * sizeof(double)), RT_OK);
    for (int64_t t = 0; t < Tpad; t++) v[t] = t < T ? all[t * 5 + labels[t]] : NAN;
    return mat(S, v, 1, Tpad, RT_F64);
}

static rt_tensor *mask_row(rt_scope *S, int64_t T, int64_t Tpad)
{
    uint8_t v[8];
    for (int64_t t = 0; t < Tpad; t++) v[t] = t < T;
    int64_t shape[2] = {1, Tpad};
    return rt_to_dtype(S, rt_from_data(S, v, shape, 2, RT_OPTS(RT_U8)), RT_BOOL);
}

/* ------------------------------------------------------------------------ */

Test(dpo, worked_values)
{
    dpo_config c;
    dpo_metrics m;

    /* 1.8 example A: every HEAD loss type, per pair and mean */
    static const struct {
        const char *type, *extra;
        double per[3], mean;
    } rows[] = {
        {"sigmoid", NULL, {0.620957, 0.974077, 0.513015}, 0.702683},
        {"hinge", NULL, {0.85, 1.5, 0.6}, 0.983333},
        {"ipo", NULL, {21.855625, 32.111111, 19.506944}, 24.491227},
        /* the IPO paper's Eq. 17 on summed log-ratios: (1.5-5)^2, (-5-5)^2, (4-5)^2 */
        {"ipo", "ipo_length_normalize=0", {12.25, 100.0, 1.0}, 37.75},
        {"exo_pair", "label_smoothing=1e-3", {2.505517, 3.637327, 2.099226}, 2.747357},
        {"nca_pair", NULL, {1.349888, 1.541721, 1.293773}, 1.395127},
        {"robust", "label_smoothing=0.1", {0.602207, 1.036577, 0.463015}, 0.700600},
        {"bco_pair", NULL, {1.312856, 1.657412, 1.198752}, 1.389673},
        {"sppo_hard", NULL, {36.25, 117.0, 20.0}, 57.75},
        {"aot", NULL, {0.883382, 0.693147, 0.513015}, 0.696515},
        {"aot_unpaired", NULL, {0.744397, 0.620957, 0.693147}, 0.686167},
        {"apo_zero", NULL, {0.962523, 1.123667, 0.900578}, 0.995590},
        {"apo_down", NULL, {0.975068, 1.023772, 0.926292}, 0.975044},
        {"discopop", NULL, {0.849338, 0.974108, 0.670267}, 0.831237},
        {"sigmoid_norm", NULL, {0.677029, 0.727036, 0.664406}, 0.689490},
        {"sigmoid", "f_divergence_type=forward_kl", {0.593124, 5.427431, 0.130336}, 2.050297},
        {"sigmoid", "f_divergence_type=js_divergence", {0.652068, 0.895452, 0.565704}, 0.704408},
        {"sigmoid", "f_divergence_type=alpha_divergence", {0.609934, 1.585678, 0.378908}, 0.858173},
        /* v0.28 cDPO, offered as a switch */
        {"sigmoid", "cdpo=1", {0.635957, 0.924077, 0.553015}, 0.704350},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char t[64], what[128];
        snprintf(t, sizeof t, "loss_type=%s", rows[i].type);
        c = rows[i].extra && strcmp(rows[i].extra, "cdpo=1") == 0
                ? dcfg(t, "cdpo=1", "label_smoothing=0.1", NULL)
                : dcfg(t, rows[i].extra, NULL);
        snprintf(what, sizeof what, "%s %s", rows[i].type, rows[i].extra ? rows[i].extra : "");
        check_type(&c, rows[i].per, rows[i].mean, what);
    }
    /* HEAD's sigmoid ignores label_smoothing */
    c = dcfg("label_smoothing=0.3", NULL);
    check_type(&c, NULL, 0.702683, "sigmoid ignores eps");
    /* MPO: sigmoid*0.8 + bco_pair*0.2 */
    c = dcfg("loss_type=sigmoid, bco_pair", "loss_weights=0.8,0.2", NULL);
    check_type(&c, NULL, 0.840081, "MPO");

    /* metrics */
    c = dpo_config_default();
    eval_dpo(&c, &EX_A, RT_F64, &m, NULL, NULL, NULL);
    near(m.loss, 0.702683, 1e-6, "metric loss");
    near(m.rewards_chosen, -0.083333, 1e-6, "rewards/chosen");
    near(m.rewards_rejected, -0.1, 1e-9, "rewards/rejected");
    near(m.rewards_accuracies, 2.0 / 3.0, 1e-12, "rewards/accuracies");
    near(m.rewards_margins, 0.016667, 1e-6, "rewards/margins");
    near(m.logps_chosen, -13.333333, 1e-6, "logps/chosen");
    near(m.logps_rejected, -21.0, 1e-9, "logps/rejected");
    near(m.pair_weight, 1.0, 0, "pair weight");
    near(m.count, 3, 0, "count");
    size_t nmet;
    const dpo_metric_desc *md = dpo_metric_table(&nmet);
    cr_assert_eq(nmet, 9);
    cr_assert_str_eq(md[1].name, "rewards/chosen");
    near(dpo_metric_value(&m, &md[3]), 2.0 / 3.0, 1e-12, "metric via table");

    /* 1.9 example B: token level */
    rt_scope *S = rt_scope_new();
    rt_tensor *pc_tok = token_row(S, B_pol_c, B_lab_c, 2, 3), *rc_tok = token_row(S, B_ref_c, B_lab_c, 2, 3);
    rt_tensor *pr_tok = token_row(S, B_pol_r, B_lab_r, 3, 3), *rr_tok = token_row(S, B_ref_r, B_lab_r, 3, 3);
    rt_tensor *mc = mask_row(S, 2, 3), *mr = mask_row(S, 3, 3);
    double seq[4];
    rt_tensor *seqs[4] = {dpo_sequence_logps(S, pc_tok, mc), dpo_sequence_logps(S, pr_tok, mr),
                          dpo_sequence_logps(S, rc_tok, mc), dpo_sequence_logps(S, rr_tok, mr)};
    for (int i = 0; i < 4; i++) {
        cr_assert(seqs[i] != NULL, "%s", rt_last_error());
        seq[i] = rt_item(seqs[i]);
    }
    near(seq[0], -1.151745, 1e-6, "B policy chosen");
    near(seq[1], -3.005885, 1e-6, "B policy rejected");
    near(seq[2], -1.634601, 1e-6, "B ref chosen");
    near(seq[3], -2.686677, 1e-6, "B ref rejected");
    double one_c = 2, one_r = 3;
    pairs pb = {1, &seq[0], &seq[1], &seq[2], &seq[3], &one_c, &one_r, NULL, NULL};
    c = dpo_config_default();
    near(eval_dpo(&c, &pb, RT_F64, &m, NULL, NULL, NULL), 0.653848, 1e-6, "B sigmoid");
    near(m.rewards_chosen, 0.048286, 1e-6, "B rewards/chosen");
    near(m.rewards_rejected, -0.031921, 1e-6, "B rewards/rejected");
    c = dcfg("loss_type=ipo", NULL);
    near(eval_dpo(&c, &pb, RT_F64, NULL, NULL, NULL, NULL), 21.642680, 1e-6, "B ipo");
    c = dcfg("loss_type=sft", NULL);
    near(eval_dpo(&c, &pb, RT_F64, NULL, NULL, NULL, NULL), 0.575873, 1e-6, "B sft");
    c = dcfg("loss_type=sigmoid,sft", "loss_weights=1,1", NULL);
    near(eval_dpo(&c, &pb, RT_F64, NULL, NULL, NULL, NULL), 1.229721, 1e-6, "B sigmoid+sft (RPO)");

    /* ld_alpha = 0.5 on policy and reference (HEAD) */
    rt_tensor *ldc, *ldr, *ldrc, *ldrr;
    cr_assert_eq(dpo_ld_logps(S, pc_tok, mc, pr_tok, mr, 0.5, &ldc, &ldr), RT_OK, "%s", rt_last_error());
    cr_assert_eq(dpo_ld_logps(S, rc_tok, mc, rr_tok, mr, 0.5, &ldrc, &ldrr), RT_OK, "%s", rt_last_error());
    double ld[4] = {rt_item(ldc), rt_item(ldr), rt_item(ldrc), rt_item(ldrr)};
    near(ld[0], -1.151745, 1e-6, "LD policy chosen");
    near(ld[1], -2.491804, 1e-6, "LD policy rejected");
    near(ld[2], -1.634601, 1e-6, "LD ref chosen");
    near(ld[3], -2.223562, 1e-6, "LD ref rejected");
    pairs pld = {1, &ld[0], &ld[1], &ld[2], &ld[3], NULL, NULL, NULL, NULL};
    c = dpo_config_default();
    near(eval_dpo(&c, &pld, RT_F64, NULL, NULL, NULL, NULL), 0.656297, 1e-6, "LD sigmoid");
    /* ld_alpha = 1 is the plain sum */
    cr_assert_eq(dpo_ld_logps(S, pc_tok, mc, pr_tok, mr, 1.0, &ldc, &ldr), RT_OK);
    near(rt_item(ldr), seq[1], 1e-12, "ld_alpha=1");
    cr_assert_eq(dpo_ld_logps(S, pc_tok, mc, pr_tok, mr, 1.5, &ldc, &ldr), RT_EINVAL);

    /* WPO weights from the logits (already aligned with the labels) */
    int64_t s3c[3] = {1, 2, 5}, s3r[3] = {1, 3, 5}, s2c[2] = {1, 2}, s2r[2] = {1, 3};
    rt_tensor *wc = dpo_wpo_weights(S, rt_from_data(S, B_pol_c, s3c, 3, RT_OPTS(RT_F64)),
                                    rt_from_data(S, B_lab_c, s2c, 2, RT_OPTS(RT_I64)), mask_row(S, 2, 2));
    rt_tensor *wr = dpo_wpo_weights(S, rt_from_data(S, B_pol_r, s3r, 3, RT_OPTS(RT_F64)),
                                    rt_from_data(S, B_lab_r, s2r, 2, RT_OPTS(RT_I64)), mask_row(S, 3, 3));
    cr_assert(wc && wr, "%s", rt_last_error());
    double w[2] = {rt_item(wc), rt_item(wr)};
    near(w[0], 1.503758, 1e-6, "WPO chosen weight");
    near(w[1], 1.529665, 1e-6, "WPO rejected weight");
    pairs pw = pb;
    pw.wc = &w[0];
    pw.wr = &w[1];
    c = dcfg("use_weighting=1", NULL);
    near(eval_dpo(&c, &pw, RT_F64, &m, NULL, NULL, NULL), 1.504011, 1e-6, "WPO sigmoid");
    near(m.pair_weight, 2.300245, 1e-6, "WPO pair weight");
    /* the padded NaN never reached a sum */
    cr_assert(isfinite(seq[0]) && isfinite(ld[0]));
    rt_scope_free(S);
}

Test(dpo, gradients)
{
    /* (a) closed form for sigmoid: d/d logp_w = -beta sig(-beta h) / B */
    dpo_config c = dpo_config_default();
    double gpc[MAXB], gpr[MAXB];
    eval_dpo(&c, &EX_A, RT_F64, NULL, NULL, gpc, gpr);
    const double h[3] = {1.5, -5.0, 4.0};
    for (int i = 0; i < 3; i++) {
        double want = -0.1 / (1.0 + exp(0.1 * h[i])) / 3.0;
        near(gpc[i], want, 1e-12, "sigmoid d/d chosen");
        near(gpr[i], -want, 1e-12, "sigmoid d/d rejected");
    }
    /* closed form for ipo: 2 (x - 1/(2beta)) / |y| / B */
    c = dcfg("loss_type=ipo", NULL);
    eval_dpo(&c, &EX_A, RT_F64, NULL, NULL, gpc, gpr);
    near(gpc[0], 2.0 * (0.325 - 5.0) / 4.0 / 3.0, 1e-12, "ipo d/d chosen");
    near(gpr[0], -2.0 * (0.325 - 5.0) / 5.0 / 3.0, 1e-12, "ipo d/d rejected");

    /* (b) finite differences, every type, on example A and on random inputs */
    static const char *const types[] = {"sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust",
                                        "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero",
                                        "apo_down", "discopop", "sigmoid_norm", "sft"};
    rt_gen *g = rt_gen_new(7);
    rt_scope *S = rt_scope_new();
    double rnd[6][5];
    for (int k = 0; k < 6; k++) {
        int64_t n = 5;
        rt_tensor *x = rt_randn(S, &n, 1, g, RT_OPTS(RT_F64));
        cr_assert_eq(rt_to_data(x, RT_F64, rnd[k], sizeof rnd[k]), RT_OK);
    }
    for (int i = 0; i < 5; i++) {
        rnd[0][i] = -10 + 3 * rnd[0][i]; /* policy chosen  */
        rnd[1][i] = -12 + 3 * rnd[1][i]; /* policy rejected */
        rnd[2][i] = -10 + 3 * rnd[2][i]; /* ref chosen     */
        rnd[3][i] = -12 + 3 * rnd[3][i];
        rnd[4][i] = 0.6 + 0.5 * fabs(rnd[4][i]); /* WPO weights */
        rnd[5][i] = 0.6 + 0.5 * fabs(rnd[5][i]);
    }
    double lc[5] = {3, 7, 1, 12, 5}, lr[5] = {4, 2, 9, 6, 5};
    pairs pr = {5, rnd[0], rnd[1], rnd[2], rnd[3], lc, lr, NULL, NULL};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char t[64], what[96];
        snprintf(t, sizeof t, "loss_type=%s", types[i]);
        c = dcfg(t, "label_smoothing=0.1", NULL);
        snprintf(what, sizeof what, "%s (example A)", types[i]);
        fd_check(&c, &EX_A, what);
        snprintf(what, sizeof what, "%s (random)", types[i]);
        fd_check(&c, &pr, what);
    }
    static const char *const fdivs[] = {"forward_kl", "js_divergence", "alpha_divergence"};
    for (int i = 0; i < 3; i++) {
        char f[64];
        snprintf(f, sizeof f, "f_divergence_type=%s", fdivs[i]);
        c = dcfg("loss_type=sigmoid,nca_pair,ipo,sppo_hard", f, "f_alpha_divergence_coef=0.3", NULL);
        fd_check(&c, &pr, fdivs[i]);
    }
    pairs pw = pr;
    pw.wc = rnd[4];
    pw.wr = rnd[5];
    c = dcfg("loss_type=sigmoid,bco_pair,sft", "loss_weights=0.8,0.2,1", "use_weighting=1", NULL);
    fd_check(&c, &pw, "MPO + WPO");
    c = dcfg("cdpo=1", "label_smoothing=0.2", NULL);
    fd_check(&c, &pr, "cDPO");

    /* (c) float32 agrees with float64 (values and gradients) */
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char t[64];
        double g32c[5], g32r[5], g64c[5], g64r[5];
        snprintf(t, sizeof t, "loss_type=%s", types[i]);
        c = dcfg(t, "label_smoothing=0.1", NULL);
        double v64 = eval_dpo(&c, &pr, RT_F64, NULL, NULL, g64c, g64r);
        double v32 = eval_dpo(&c, &pr, RT_F32, NULL, NULL, g32c, g32r);
        cr_assert(fabs(v32 - v64) <= 1e-5 * (1 + fabs(v64)), "%s: f32 %.9g vs f64 %.9g", types[i], v32, v64);
        for (int k = 0; k < 5; k++)
            cr_assert(fabs(g32c[k] - g64c[k]) <= 1e-5 * (1 + fabs(g64c[k])) &&
                          fabs(g32r[k] - g64r[k]) <= 1e-5 * (1 + fabs(g64r[k])),
                      "%s: f32 gradient differs at %d", types[i], k);
    }

    /* (d) token level: the LD sum's gradient reaches only the kept tokens */
    double tok[6] = {-0.5, -1.0, NAN, -0.2, -0.3, -0.4};
    uint8_t mk[6] = {1, 1, 0, 1, 1, 1};
    int64_t s23[2] = {2, 3};
    rt_tensor *tc = mat(S, tok, 2, 3, RT_F64);
    cr_assert_eq(rt_set_requires_grad(tc, 1), RT_OK);
    rt_tensor *mkt = rt_to_dtype(S, rt_from_data(S, mk, s23, 2, RT_OPTS(RT_U8)), RT_BOOL);
    double rj[6] = {-1, -1, -1, -1, NAN, NAN};
    uint8_t mrj[6] = {1, 1, 1, 1, 0, 0};
    rt_tensor *trj = mat(S, rj, 2, 3, RT_F64);
    rt_tensor *mrt = rt_to_dtype(S, rt_from_data(S, mrj, s23, 2, RT_OPTS(RT_U8)), RT_BOOL);
    rt_tensor *oc, *orj;
    cr_assert_eq(dpo_ld_logps(S, tc, mkt, trj, mrt, 0.25, &oc, &orj), RT_OK, "%s", rt_last_error());
    double vc[2], vr[2], gt[6];
    rt_to_data(oc, RT_F64, vc, sizeof vc);
    rt_to_data(orj, RT_F64, vr, sizeof vr);
    near(vc[0], -1.5, 1e-12, "LD row 0 (shared 2)");
    near(vc[1], -0.2 - 0.25 * (0.3 + 0.4), 1e-12, "LD row 1 (shared 1)");
    near(vr[0], -2.0 - 0.25, 1e-12, "LD rejected row 0");
    near(vr[1], -1.0, 1e-12, "LD rejected row 1");
    cr_assert_eq(rt_backward(rt_sum(S, oc, RT_DIM_ALL, 0)), RT_OK);
    rt_to_data(rt_grad(S, tc), RT_F64, gt, sizeof gt);
    const double want_gt[6] = {1, 1, 0, 1, 0.25, 0.25};
    for (int i = 0; i < 6; i++) near(gt[i], want_gt[i], 0, "LD token gradient");
    rt_scope_free(S);
    rt_gen_free(g);
}

/* ------------------------------------------------------------------------ */
/* S-DPO and ADPO                                                             */
/* ------------------------------------------------------------------------ */

static double eval_sdpo(double beta, const double *pc, const double *pr, const double *rc, const double *rr,
                        const uint8_t *mask, int64_t B, int64_t K, rt_dtype dt, dpo_sdpo_metrics *m, double *per,
                        double *rrew, double *gpc, double *gpr)
{
    rt_scope *S = rt_scope_new();
    int64_t bk[2] = {B, K};
    dpo_sdpo_inputs in = {vec(S, pc, B, dt), mat(S, pr, B, K, dt), vec(S, rc, B, dt), mat(S, rr, B, K, dt),
                          mask ? rt_to_dtype(S, rt_from_data(S, mask, bk, 2, RT_OPTS(RT_U8)), RT_BOOL) : NULL};
    if (gpc) {
        rt_set_requires_grad((rt_tensor *)in.policy_chosen_logps, 1);
        rt_set_requires_grad((rt_tensor *)in.policy_rejected_logps, 1);
    }
    dpo_sdpo_config c = dpo_sdpo_config_default();
    c.beta = beta;
    dpo_sdpo_outputs out;
    rt_tensor *loss = dpo_sdpo_loss(S, &c, &in, &out, m);
    cr_assert(loss != NULL, "dpo_sdpo_loss: %s", rt_last_error());
    double v = rt_item(loss);
    if (per) rt_to_data(out.losses, RT_F64, per, (size_t)B * sizeof(double));
    if (rrew) rt_to_data(out.rejected_rewards, RT_F64, rrew, (size_t)(B * K) * sizeof(double));
    if (gpc) {
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        rt_to_data(rt_grad(S, in.policy_chosen_logps), RT_F64, gpc, (size_t)B * sizeof(double));
        rt_to_data(rt_grad(S, in.policy_rejected_logps), RT_F64, gpr, (size_t)(B * K) * sizeof(double));
    }
    rt_scope_free(S);
    return v;
}

static double eval_adpo(const adpo_config *c, const double *l, const double *a, const double *q, const uint8_t *mask,
                        int64_t B, int64_t P, rt_dtype dt, adpo_metrics *m, double *per, double *qout, double *gl)
{
    rt_scope *S = rt_scope_new();
    int64_t bp[2] = {B, P};
    adpo_inputs in = {mat(S, l, B, P, dt), a ? mat(S, a, B, P, dt) : NULL, mat(S, q, B, P, dt),
                      mask ? rt_to_dtype(S, rt_from_data(S, mask, bp, 2, RT_OPTS(RT_U8)), RT_BOOL) : NULL};
    if (gl) rt_set_requires_grad((rt_tensor *)in.policy_logps, 1);
    if (gl && a) rt_set_requires_grad((rt_tensor *)in.anchor_logps, 1);
    adpo_outputs out;
    rt_tensor *loss = adpo_loss(S, c, &in, &out, m);
    cr_assert(loss != NULL, "adpo_loss: %s", rt_last_error());
    double v = rt_item(loss);
    if (per) rt_to_data(out.losses, RT_F64, per, (size_t)B * sizeof(double));
    if (qout) rt_to_data(out.target, RT_F64, qout, (size_t)(B * P) * sizeof(double));
    if (gl) {
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        rt_to_data(rt_grad(S, in.policy_logps), RT_F64, gl, (size_t)(B * P) * sizeof(double));
        if (a) cr_assert_eq(rt_has_grad(in.anchor_logps), 0, "anchor got a gradient");
    }
    rt_scope_free(S);
    return v;
}

static adpo_config acfg(const char *first, ...)
{
    adpo_config c = adpo_config_default();
    va_list ap;
    va_start(ap, first);
    for (const char *kv = first; kv != NULL; kv = va_arg(ap, const char *)) {
        char name[64];
        const char *eq = strchr(kv, '=');
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        cr_assert_eq(adpo_config_set(&c, name, eq + 1), RT_OK, "%s: %s", kv, rt_last_error());
    }
    va_end(ap);
    return c;
}

Test(sdpo_adpo, values_and_gradients)
{
    /* ---- S-DPO worked example (section 2): B = 2, K = 3 ---- */
    const double pc[2] = {-5, -7}, rc[2] = {-5.5, -6};
    const double pr[6] = {-6, -9, -7, -8, -6.5, -7.5}, rr[6] = {-5, -8, -7.2, -7.5, -7, -7};
    dpo_sdpo_metrics sm;
    double per[4], rrew[6], gpc[2], gpr[6];
    near(eval_sdpo(1.0, pc, pr, rc, rr, NULL, 2, 3, RT_F64, &sm, per, NULL, NULL, NULL), 1.477472, 1e-6,
         "S-DPO beta=1");
    near(per[0], 0.782567, 1e-6, "S-DPO beta=1 ex 1");
    near(per[1], 2.172377, 1e-6, "S-DPO beta=1 ex 2");
    near(sm.rewards_accuracies, 0.5, 0, "S-DPO accuracies");
    near(eval_sdpo(0.1, pc, pr, rc, rr, NULL, 2, 3, RT_F64, &sm, per, rrew, gpc, gpr), 1.378213, 1e-6,
         "S-DPO beta=0.1");
    near(per[0], 1.306131, 1e-6, "S-DPO beta=0.1 ex 1");
    near(per[1], 1.450296, 1e-6, "S-DPO beta=0.1 ex 2");
    const double want_rk[3] = {-0.075, -0.025, -0.015}, want_mg[3] = {0.05, 0.0, -0.01};
    for (int k = 0; k < 3; k++) {
        near((rrew[k] + rrew[3 + k]) / 2, want_rk[k], 1e-12, "rewards/rejected{k}");
        near(-0.025 - (rrew[k] + rrew[3 + k]) / 2, want_mg[k], 1e-12, "margins-rejected{k}");
    }
    near(sm.rewards_chosen, -0.025, 1e-12, "S-DPO rewards/chosen");
    near(sm.rewards_rejected, (-0.075 - 0.025 - 0.015) / 3, 1e-12, "S-DPO rewards/rejected");
    near(sm.rewards_margins, (0.05 + 0.0 - 0.01) / 3, 1e-12, "S-DPO rewards/margins");
    near(sm.logps_chosen, -6, 1e-12, "S-DPO logps/chosen");
    /* closed form: d/d logp_k = beta softmax_k(x) sig(lse) / B, d/d logp_p = -sum_k */
    for (int b = 0; b < 2; b++) {
        double x[3], mx = -INFINITY, z = 0, sum = 0;
        for (int k = 0; k < 3; k++) {
            x[k] = 0.1 * ((pr[b * 3 + k] - rr[b * 3 + k]) - (pc[b] - rc[b]));
            mx = fmax(mx, x[k]);
        }
        for (int k = 0; k < 3; k++) z += exp(x[k] - mx);
        double lse = mx + log(z), s = 1 / (1 + exp(-lse));
        for (int k = 0; k < 3; k++) {
            double want = 0.1 * exp(x[k] - lse) * s / 2;
            near(gpr[b * 3 + k], want, 1e-12, "S-DPO d/d rejected");
            sum += want;
        }
        near(gpc[b], -sum, 1e-12, "S-DPO d/d chosen");
    }
    /* finite differences on the worked inputs at beta = 1 */
    eval_sdpo(1.0, pc, pr, rc, rr, NULL, 2, 3, RT_F64, NULL, NULL, NULL, gpc, gpr);
    double xpr[6];
    memcpy(xpr, pr, sizeof xpr);
    for (int i = 0; i < 6; i++) {
        double x0 = xpr[i], hh = 1e-6;
        xpr[i] = x0 + hh;
        double up = eval_sdpo(1.0, pc, xpr, rc, rr, NULL, 2, 3, RT_F64, NULL, NULL, NULL, NULL, NULL);
        xpr[i] = x0 - hh;
        double dn = eval_sdpo(1.0, pc, xpr, rc, rr, NULL, 2, 3, RT_F64, NULL, NULL, NULL, NULL, NULL);
        xpr[i] = x0;
        near((up - dn) / (2 * hh), gpr[i], 1e-7, "S-DPO finite difference");
    }
    /* K = 1 is exactly DPO sigmoid, values and gradients */
    dpo_config dc = dpo_config_default();
    double dg_c[3], dg_r[3], dper[3], sg_c[3], sg_r[3], sper[3];
    double dv = eval_dpo(&dc, &EX_A, RT_F64, NULL, dper, dg_c, dg_r);
    double sv = eval_sdpo(0.1, A_pc, A_pr, A_rc, A_rr, NULL, 3, 1, RT_F64, NULL, sper, NULL, sg_c, sg_r);
    near(sv, dv, 1e-15, "S-DPO K=1 == DPO");
    for (int i = 0; i < 3; i++) {
        near(sper[i], dper[i], 1e-15, "S-DPO K=1 per pair");
        near(sg_c[i], dg_c[i], 1e-15, "S-DPO K=1 d/d chosen");
        near(sg_r[i], dg_r[i], 1e-15, "S-DPO K=1 d/d rejected");
    }
    /* a mask drops negatives: K = 3 with only column 0 present == K = 1 */
    double pr3[9], rr3[9];
    uint8_t m3[9];
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < 3; k++) {
            pr3[b * 3 + k] = k ? NAN : A_pr[b];
            rr3[b * 3 + k] = k ? 1e30 : A_rr[b];
            m3[b * 3 + k] = k == 0;
        }
    double mg_c[3], mg_r[9];
    near(eval_sdpo(0.1, A_pc, pr3, A_rc, rr3, m3, 3, 3, RT_F64, NULL, NULL, NULL, mg_c, mg_r), dv, 1e-15,
         "S-DPO masked == DPO");
    cr_assert(all_finite(mg_r, 9) && mg_r[1] == 0 && mg_r[2] == 0, "masked negatives got a gradient");
    /* a row without negatives: loss 0, finite gradient */
    m3[0] = 0;
    near(eval_sdpo(0.1, A_pc, pr3, A_rc, rr3, m3, 3, 3, RT_F64, NULL, sper, NULL, mg_c, mg_r),
         (dper[1] + dper[2]) / 3, 1e-15, "S-DPO empty row");
    cr_assert(all_finite(mg_c, 3) && mg_c[0] == 0 && all_finite(mg_r, 9));

    /* ---- ADPO listwise worked example (section 3.6) ---- */
    const double l[4] = {-10, -12, -9, -15}, a[4] = {-10.5, -11, -9.5, -14}, R[4] = {1, 0, 1, 0};
    adpo_metrics am;
    double q[4], gl[8];
    adpo_config c = acfg("target=softmax", "beta_reward=0.5", NULL);
    near(eval_adpo(&c, l, a, R, NULL, 1, 4, RT_F64, &am, NULL, q, gl), 1.073365, 1e-6, "ADPO tau=1");
    near(am.kl, 0.014884, 1e-6, "ADPO KL tau=1");
    near(q[0], 0.440399, 1e-6, "q[0]");
    near(q[1], 0.059601, 1e-6, "q[1]");
    near(am.anchor_kl, (0.5 + 1 + 0.5 + 1) / 4, 1e-12, "anchor_kl");
    /* closed form: (p~ - q) / tau, u = [0.5, -1, 0.5, -1] */
    double z = 2 * exp(0.5) + 2 * exp(-1.0);
    for (int i = 0; i < 4; i++) near(gl[i], exp(i % 2 ? -1.0 : 0.5) / z - q[i], 1e-12, "ADPO gradient");
    c.tau = 0.8;
    near(eval_adpo(&c, l, a, R, NULL, 1, 4, RT_F64, &am, NULL, NULL, NULL), 1.059328, 1e-6, "ADPO tau=0.8");
    near(am.kl, 0.000847, 1e-6, "ADPO KL tau=0.8");
    c = acfg("target=zscore", NULL);
    near(eval_adpo(&c, l, a, R, NULL, 1, 4, RT_F64, NULL, NULL, q, NULL), 0.940087, 1e-6, "ADPO zscore q");
    near(q[0], 0.484824, 1e-6, "zscore q[0]");
    /* the same q given as probabilities gives the same loss */
    c = acfg("target=probs", NULL);
    near(eval_adpo(&c, l, a, q, NULL, 1, 4, RT_F64, NULL, NULL, NULL, NULL), 0.940087, 1e-6, "ADPO probs");
    /* on-policy anchor (NULL): u = 0, gradient (1/P - q)/tau */
    eval_adpo(&c, l, NULL, q, NULL, 1, 4, RT_F64, NULL, NULL, NULL, gl);
    for (int i = 0; i < 4; i++) near(gl[i], 0.25 - q[i], 1e-12, "on-policy anchor gradient");

    /* ---- pairwise: hard labels, tau = 1/beta == DPO sigmoid ---- */
    double L[6], An[6], Q1[6], Q8[6];
    for (int b = 0; b < 3; b++) {
        L[2 * b] = A_pc[b], L[2 * b + 1] = A_pr[b];
        An[2 * b] = A_rc[b], An[2 * b + 1] = A_rr[b];
        Q1[2 * b] = 1, Q1[2 * b + 1] = 0;
        Q8[2 * b] = 0.8, Q8[2 * b + 1] = 0.2;
    }
    double pg[6], pper[3];
    c = acfg("form=pairwise", "tau=10", NULL);
    near(eval_adpo(&c, L, An, Q1, NULL, 3, 2, RT_F64, NULL, pper, NULL, pg), dv, 1e-12, "pairwise == DPO");
    for (int b = 0; b < 3; b++) {
        near(pper[b], dper[b], 1e-12, "pairwise == DPO per pair");
        near(pg[2 * b], dg_c[b], 1e-12, "pairwise == DPO d/d chosen");
        near(pg[2 * b + 1], dg_r[b], 1e-12, "pairwise == DPO d/d rejected");
    }
    /* listwise at P = 2 is the same loss */
    c = acfg("tau=10", NULL);
    near(eval_adpo(&c, L, An, Q1, NULL, 3, 2, RT_F64, NULL, NULL, NULL, NULL), dv, 1e-12, "listwise P=2 == DPO");
    c = acfg("form=pairwise", "tau=10", NULL);
    near(eval_adpo(&c, L, An, Q8, NULL, 3, 2, RT_F64, NULL, pper, NULL, NULL), 0.706016, 1e-6, "pairwise q_w=0.8");
    near(pper[0], 0.650957, 1e-6, "pairwise 0.8 pair 1");
    near(pper[1], 0.874077, 1e-6, "pairwise 0.8 pair 2");
    near(pper[2], 0.593015, 1e-6, "pairwise 0.8 pair 3");
    /* ... which is cDPO with eps = 1 - q_w */
    dc = dcfg("cdpo=1", "label_smoothing=0.2", NULL);
    near(eval_dpo(&dc, &EX_A, RT_F64, NULL, NULL, NULL, NULL), 0.706016, 1e-6, "cDPO eps=0.2");
    /* hard one-hot over P = 4: winner vs each loser, mean of three DPO pairs */
    const double Qh[4] = {0, 0, 1, 0};
    c = acfg("form=pairwise", NULL);
    double pv = eval_adpo(&c, l, a, Qh, NULL, 1, 4, RT_F64, NULL, NULL, NULL, NULL);
    double r4[4] = {0.5, -1, 0.5, -1}, want = 0;
    for (int j = 0; j < 4; j++)
        if (j != 2) want += log1p(exp(-(r4[2] - r4[j]))) / 3;
    near(pv, want, 1e-12, "pairwise one-hot P=4");

    /* finite differences on random inputs, both forms, with a mask */
    rt_gen *g = rt_gen_new(11);
    rt_scope *S = rt_scope_new();
    int64_t n = 12;
    double rl[12], ra[12], rs[12];
    rt_to_data(rt_randn(S, &n, 1, g, RT_OPTS(RT_F64)), RT_F64, rl, sizeof rl);
    rt_to_data(rt_randn(S, &n, 1, g, RT_OPTS(RT_F64)), RT_F64, ra, sizeof ra);
    rt_to_data(rt_randn(S, &n, 1, g, RT_OPTS(RT_F64)), RT_F64, rs, sizeof rs);
    uint8_t mk[12] = {1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 0};
    rl[6] = NAN; /* absent candidates may hold anything */
    ra[9] = INFINITY;
    for (int f = 0; f < 4; f++) {
        const char *form = f % 2 ? "form=pairwise" : "form=listwise";
        const char *tgt = f < 2 ? "target=softmax" : "target=zscore";
        c = acfg(form, tgt, "tau=0.7", NULL);
        double grad[12];
        double v0 = eval_adpo(&c, rl, ra, rs, mk, 3, 4, RT_F64, NULL, NULL, NULL, grad);
        cr_assert(isfinite(v0) && all_finite(grad, 12), "%s %s: loss %g", form, tgt, v0);
        for (int i = 0; i < 12; i++) {
            if (!mk[i]) {
                cr_assert(grad[i] == 0, "absent candidate %d got gradient %g", i, grad[i]);
                continue;
            }
            double x0 = rl[i], hh = 1e-6;
            rl[i] = x0 + hh;
            double up = eval_adpo(&c, rl, ra, rs, mk, 3, 4, RT_F64, NULL, NULL, NULL, NULL);
            rl[i] = x0 - hh;
            double dn = eval_adpo(&c, rl, ra, rs, mk, 3, 4, RT_F64, NULL, NULL, NULL, NULL);
            rl[i] = x0;
            double fd = (up - dn) / (2 * hh);
            cr_assert(fabs(fd - grad[i]) <= 1e-7 + 1e-5 * fabs(grad[i]), "%s %s: d/d l[%d] autograd %.10f fd %.10f",
                      form, tgt, i, grad[i], fd);
        }
    }

    /* EMA anchor update: anchor <- anchor + rate (policy - anchor) */
    double av[3] = {1, 2, 3}, pv3[3] = {3, 2, 1}, got[3];
    rt_tensor *ap = vec(S, av, 3, RT_F64), *pp = vec(S, pv3, 3, RT_F64);
    cr_assert_eq(rt_set_requires_grad(pp, 1), RT_OK);
    cr_assert_eq(adpo_anchor_ema_update(&ap, &pp, 1, 0.25), RT_OK, "%s", rt_last_error());
    rt_to_data(ap, RT_F64, got, sizeof got);
    near(got[0], 1.5, 1e-15, "EMA 0");
    near(got[2], 2.5, 1e-15, "EMA 2");
    cr_assert_eq(adpo_anchor_ema_update(&ap, &pp, 1, 1.0), RT_OK);
    rt_to_data(ap, RT_F64, got, sizeof got);
    near(got[0], 3, 0, "copy anchor");
    cr_assert_eq(adpo_anchor_ema_update(&ap, &pp, 1, 1.5), RT_EINVAL);
    rt_scope_free(S);
    rt_gen_free(g);
}

Test(dpo, extremes_and_config)
{
    /* log-ratios of +-1e4: finite loss and gradient for every type, f32 and f64 */
    static const char *const types[] = {"sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust",
                                        "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero",
                                        "apo_down", "discopop", "sigmoid_norm", "sft"};
    const double pc[4] = {1e4, -1e4, 1e4, -1e4}, pr[4] = {-1e4, 1e4, 1e4, -1e4};
    const double zero[4] = {0, 0, 0, 0}, lc[4] = {1, 2, 3, 4}, lr[4] = {4, 3, 2, 1};
    pairs px = {4, pc, pr, zero, zero, lc, lr, NULL, NULL};
    static const char *const fdivs[] = {"reverse_kl", "js_divergence", "alpha_divergence"};
    for (int dti = 0; dti < 2; dti++) {
        rt_dtype dt = dti ? RT_F32 : RT_F64;
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            for (int f = 0; f < 3; f++) {
                char t[64], fd[64];
                double gc[4], gr[4];
                snprintf(t, sizeof t, "loss_type=%s", types[i]);
                snprintf(fd, sizeof fd, "f_divergence_type=%s", fdivs[f]);
                /* alpha-divergence scores reach e^80 (TRL's clamp); squared by ipo and
                 * sppo_hard that exceeds FLT_MAX, so those two are float64-only there */
                int squares = strcmp(types[i], "ipo") == 0 || strcmp(types[i], "sppo_hard") == 0;
                if (dt == RT_F32 && f == 2 && squares) continue;
                dpo_config c = dcfg(t, fd, "label_smoothing=0.1", NULL);
                double v = eval_dpo(&c, &px, dt, NULL, NULL, gc, gr);
                cr_assert(isfinite(v) && all_finite(gc, 4) && all_finite(gr, 4),
                          "%s %s (%s) at +-1e4: loss %g grads %g %g %g %g", types[i], fdivs[f], rt_dtype_name(dt),
                          v, gc[0], gc[1], gr[0], gr[1]);
            }
        double sp[4], sr[8], sg_c[4], sg_r[8];
        const double srr[8] = {1e4, -1e4, -1e4, 1e4, 0, 1e4, -1e4, 0};
        for (int i = 0; i < 8; i++) sr[i] = srr[i];
        double v = eval_sdpo(0.1, pc, sr, zero, zero, NULL, 4, 2, dt, NULL, sp, NULL, sg_c, sg_r);
        cr_assert(isfinite(v) && all_finite(sg_c, 4) && all_finite(sg_r, 8), "S-DPO at +-1e4: %g", v);
        double al[8] = {1e4, -1e4, 0, 5, -1e4, -1e4, 1e4, 1e4}, aq[8] = {1, 0, 0.5, 0.5, 0.2, 0.8, 0, 1};
        double ag[8];
        for (int f = 0; f < 2; f++) {
            adpo_config c = acfg(f ? "form=pairwise" : "form=listwise", NULL);
            v = eval_adpo(&c, al, zero, aq, NULL, 4, 2, dt, NULL, NULL, NULL, ag);
            cr_assert(isfinite(v) && all_finite(ag, 8), "ADPO form %d at +-1e4: %g", f, v);
        }
    }

    /* settings: defaults, lists, errors with suggestions */
    dpo_config c = dpo_config_default();
    char buf[128];
    size_t n;
    const dpo_setting *s = dpo_settings(&n);
    cr_assert_str_eq(dpo_setting_format(&c, &s[0], buf, sizeof buf), "sigmoid");
    cr_assert_str_eq(dpo_setting_format(&c, &s[1], buf, sizeof buf), "1 each");
    near(c.beta, 0.1, 0, "default beta");
    near(c.label_smoothing, 0.0, 0, "default label_smoothing");
    near(c.discopop_tau, 0.05, 0, "default discopop_tau");
    near(c.f_alpha_divergence_coef, 0.5, 0, "default alpha coef");
    cr_assert_eq(c.f_divergence, DPO_REVERSE_KL);
    cr_assert_eq(c.use_weighting, 0);
    cr_assert_eq(dpo_config_set(&c, "loss_type", "sigmoid, bco_pair ,sft"), RT_OK);
    cr_assert_str_eq(dpo_setting_format(&c, &s[0], buf, sizeof buf), "sigmoid,bco_pair,sft");
    cr_assert_eq(dpo_config_set(&c, "loss_weights", "0.8,0.2"), RT_OK);
    cr_assert_eq(dpo_config_check(&c), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "loss_weights has 2 entries") != NULL, "%s", rt_last_error());
    cr_assert_eq(dpo_config_set(&c, "loss_type", "sigmod"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "did you mean 'sigmoid'") != NULL, "%s", rt_last_error());
    cr_assert_eq(dpo_config_set(&c, "betta", "0.2"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "did you mean 'beta'") != NULL, "%s", rt_last_error());
    cr_assert_eq(dpo_config_set(&c, "beta", "-1"), RT_EINVAL);
    cr_assert_eq(dpo_config_set(&c, "beta", "abc"), RT_EINVAL);
    cr_assert_eq(dpo_config_set(&c, "f_divergence_type", "kl"), RT_EINVAL);
    cr_assert_eq(dpo_config_set(&c, "use_weighting", "maybe"), RT_EINVAL);
    c = dcfg("loss_type=exo_pair", NULL);
    cr_assert_eq(dpo_config_check(&c), RT_EINVAL, "exo_pair with eps = 0 must be refused");
    c = dcfg("loss_type=robust", "label_smoothing=0.5", NULL);
    cr_assert_eq(dpo_config_check(&c), RT_EINVAL, "robust with eps = 0.5 must be refused");
    c = dcfg("loss_type=aot", "use_weighting=1", NULL);
    cr_assert_eq(dpo_config_check(&c), RT_EINVAL, "aot with WPO must be refused");

    /* input errors name the input and the shape */
    rt_scope *S = rt_scope_new();
    c = dcfg("loss_type=ipo", NULL);
    dpo_inputs in = {vec(S, A_pc, 3, RT_F64), vec(S, A_pr, 3, RT_F64), vec(S, A_rc, 3, RT_F64),
                     vec(S, A_rr, 2, RT_F64), NULL, NULL, NULL, NULL, NULL};
    cr_assert_null(dpo_loss(S, &c, &in, NULL, NULL));
    cr_assert(strstr(rt_last_error(), "ref_rejected_logps must be [3], got [2]") != NULL, "%s", rt_last_error());
    in.ref_rejected_logps = vec(S, A_rr, 3, RT_F64);
    cr_assert_null(dpo_loss(S, &c, &in, NULL, NULL));
    cr_assert(strstr(rt_last_error(), "ipo needs chosen_lengths") != NULL, "%s", rt_last_error());
    c = dcfg("loss_type=ipo", "ipo_length_normalize=0", NULL); /* the paper's form needs no lengths */
    rt_tensor *ipo_sum = dpo_loss(S, &c, &in, NULL, NULL);
    cr_assert_not_null(ipo_sum, "%s", rt_last_error());
    near(rt_item(ipo_sum), 37.75, 1e-12, "ipo paper form without lengths");
    c = dcfg("use_weighting=1", NULL);
    cr_assert_null(dpo_loss(S, &c, &in, NULL, NULL));
    cr_assert(strstr(rt_last_error(), "chosen_weights") != NULL, "%s", rt_last_error());
    /* bfloat16 inputs are upcast to float32 */
    dpo_inputs bf = {rt_to_dtype(S, in.policy_chosen_logps, RT_BF16), rt_to_dtype(S, in.policy_rejected_logps, RT_BF16),
                     rt_to_dtype(S, in.ref_chosen_logps, RT_BF16), rt_to_dtype(S, in.ref_rejected_logps, RT_BF16),
                     NULL, NULL, NULL, NULL, NULL};
    c = dpo_config_default();
    rt_tensor *lb = dpo_loss(S, &c, &bf, NULL, NULL);
    cr_assert(lb != NULL && rt_dtype_of(lb) == RT_F32, "%s", rt_last_error());
    near(rt_item(lb), 0.702683, 1e-5, "bf16 inputs");

    dpo_sdpo_config sc = dpo_sdpo_config_default();
    near(sc.beta, 0.1, 0, "S-DPO default beta");
    cr_assert_eq(dpo_sdpo_config_set(&sc, "beta", "1"), RT_OK);
    near(sc.beta, 1, 0, "S-DPO beta set");
    cr_assert_eq(dpo_sdpo_config_set(&sc, "bta", "1"), RT_ENOTFOUND);
    adpo_config ac = adpo_config_default();
    near(ac.tau, 1.0, 0, "ADPO default tau");
    near(ac.beta_reward, 0.5, 0, "ADPO default beta_reward");
    cr_assert_eq(adpo_config_set(&ac, "form", "listwize"), RT_EINVAL);
    cr_assert_eq(adpo_config_set(&ac, "tua", "1"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "did you mean 'tau'") != NULL, "%s", rt_last_error());
    /* target=probs refuses rows that are not distributions */
    const double bad_q[4] = {0.5, 0.6, 0, 0}, l4[4] = {-1, -2, -3, -4};
    adpo_inputs ai = {mat(S, l4, 1, 4, RT_F64), mat(S, l4, 1, 4, RT_F64), mat(S, bad_q, 1, 4, RT_F64), NULL};
    cr_assert_null(adpo_loss(S, &ac, &ai, NULL, NULL));
    cr_assert(strstr(rt_last_error(), "target=probs") != NULL, "%s", rt_last_error());
    rt_scope_free(S);
}
