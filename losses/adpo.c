/*
 * adpo.c -- ADPO listwise and pairwise losses, target construction and the
 * EMA anchor update (see adpo.h for the API, the formulas and the anchor
 * contract; specs/pref_kd_losses.md section 3 for the sources and the worked
 * numbers the tests reproduce). Settings go through settings.h, as dpo's do.
 */
#include "adpo.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const form_names[] = {"listwise", "pairwise", NULL};
static const char *const target_names[] = {"probs", "softmax", "zscore", NULL};

#define OFF(field) offsetof(adpo_config, field)
static const dpo_setting adpo_table[] = {
    {"tau", LSET_REAL, OFF(tau), 1.0, 1e-6, 1e6, NULL,
     "anchored temperature: u = (logp - anchor)/tau; tau = 1/beta of DPO (TRL-ADPO 1.0, paper 0.8)"},
    {"form", LSET_CHOICE, OFF(form), ADPO_LISTWISE, 0, 0, form_names,
     "listwise: CE(q, softmax(u)); pairwise: BT pairs i<j with target q_i/(q_i+q_j)"},
    {"target", LSET_CHOICE, OFF(target), ADPO_Q_PROBS, 0, 0, target_names,
     "q is: probs (hard/soft labels, teacher probs), softmax (scores/beta_reward), zscore (verl)"},
    {"beta_reward", LSET_REAL, OFF(beta_reward), 0.5, 1e-6, 1e6, NULL,
     "temperature of the scores for target=softmax|zscore (TRL-ADPO beta_reward)"},
};

const dpo_setting *adpo_settings(size_t *n)
{
    if (n) *n = COUNT(adpo_table);
    return adpo_table;
}

adpo_config adpo_config_default(void)
{
    adpo_config c;
    memset(&c, 0, sizeof c);
    lset_defaults(adpo_table, COUNT(adpo_table), &c);
    return c;
}

int adpo_config_set(adpo_config *cfg, const char *name, const char *value)
{
    return dpo_settings_apply(cfg, adpo_table, COUNT(adpo_table), "adpo", name, value);
}

int adpo_config_check(const adpo_config *c)
{
    /* tau, beta_reward in range; form, target valid choices */
    return lset_check(adpo_table, COUNT(adpo_table), c, "adpo");
}

#define MOFF(field) offsetof(adpo_metrics, field)
static const dpo_metric_desc adpo_metrics_table[] = {
    {"loss", MOFF(loss), "the loss returned (anchored cross-entropy)"},
    {"adpo/kl", MOFF(kl), "mean KL(q || softmax(u)) over counted prompts (pairwise: mean pair KL)"},
    {"adpo/anchor_kl", MOFF(anchor_kl), "mean |logp - anchor| over present candidates"},
    {"adpo/tau", MOFF(tau), "the anchored temperature"},
    {"count", MOFF(count), "prompts that count"},
};

const dpo_metric_desc *adpo_metric_table(size_t *n)
{
    if (n) *n = COUNT(adpo_metrics_table);
    return adpo_metrics_table;
}

/* ------------------------------------------------------------------------ */

static int check_bp(const char *what, const rt_tensor *t, const rt_tensor *like, int want_bool)
{
    char a[64], b[64];
    if (!t) {
        if (rt_last_error()[0] == '\0') rt_set_error("adpo_loss: %s is NULL", what);
        return RT_EINVAL;
    }
    rt_dtype dt = rt_dtype_of(t);
    if (want_bool ? dt != RT_BOOL : !(dt == RT_F32 || dt == RT_F64 || dt == RT_BF16 || dt == RT_F16))
        return rt_set_error("adpo_loss: %s must be %s, got %s", what, want_bool ? "bool" : "float",
                            rt_dtype_name(dt)),
               RT_EINVAL;
    if (rt_ndim(t) != 2 || (like && (rt_size(t, 0) != rt_size(like, 0) || rt_size(t, 1) != rt_size(like, 1))))
        return rt_set_error("adpo_loss: %s has shape %s, expected %s", what, rt_shape_str(t, a, sizeof a),
                            like ? rt_shape_str(like, b, sizeof b) : "[B,P]"),
               RT_EINVAL;
    return RT_OK;
}

static rt_tensor *as_dt(rt_scope *W, const rt_tensor *t, rt_dtype dt)
{
    return rt_dtype_of(t) == dt ? rt_alias(W, t) : rt_to_dtype(W, t, dt);
}

/* x log x with 0 log 0 = 0 (selected, so no 0 * -inf). */
static rt_tensor *xlogx(rt_scope *W, const rt_tensor *x)
{
    rt_tensor *pos = rt_compare_scalar(W, x, RT_GT, 0.0);
    rt_tensor *safe = rt_where_scalar(W, pos, x, 1.0);
    return rt_where_scalar(W, pos, rt_mul(W, safe, rt_log(W, safe)), 0.0);
}

/* softmax of x over the present columns (absent -> 0); rows with none -> 0. */
static rt_tensor *masked_softmax(rt_scope *W, const rt_tensor *x, const rt_tensor *present,
                                 const rt_tensor *row_has)
{
    rt_tensor *xm = rt_where_scalar(W, present, x, -INFINITY);
    xm = rt_where_scalar(W, rt_unsqueeze(W, row_has, 1), xm, 0.0);
    return rt_where_scalar(W, present, rt_softmax(W, xm, 1), 0.0);
}

/* The target distribution [B,P] (constant), validated for target=probs. */
static rt_tensor *build_target(rt_scope *W, const adpo_config *c, const rt_tensor *q, const rt_tensor *present,
                               const rt_tensor *row_has, rt_dtype dt)
{
    rt_tensor *qd = rt_detach(W, as_dt(W, q, dt));
    if (c->target == ADPO_Q_PROBS) {
        rt_tensor *qz = rt_where_scalar(W, present, qd, 0.0);
        rt_tensor *neg = rt_any(W, rt_compare_scalar(W, qz, RT_LT, 0.0), RT_DIM_ALL, 0);
        rt_tensor *sums = rt_sum(W, qz, 1, 0);
        rt_tensor *dev = rt_where_scalar(W, row_has, rt_abs(W, rt_add_scalar(W, sums, -1.0)), 0.0);
        rt_tensor *worst = rt_max(W, dev, RT_DIM_ALL, 0, NULL);
        if (!neg || !worst) return NULL;
        if (rt_item(neg) != 0.0)
            return rt_set_error("adpo_loss: q has negative entries but target=probs needs probabilities "
                                "(use target=softmax for scores)"),
                   NULL;
        if (rt_item(worst) > 1e-4)
            return rt_set_error("adpo_loss: a row of q misses summing to 1 by %g over its present "
                                "candidates; target=probs needs distributions (target=softmax for scores)",
                                rt_item(worst)),
                   NULL;
        return qz;
    }
    rt_tensor *score = qd;
    if (c->target == ADPO_Q_ZSCORE) {
        rt_tensor *n = rt_sum(W, rt_to_dtype(W, present, dt), 1, 1); /* [B,1] */
        rt_tensor *n1 = rt_clamp(W, n, 1.0, INFINITY);
        rt_tensor *mean = rt_div(W, rt_sum(W, rt_where_scalar(W, present, qd, 0.0), 1, 1), n1);
        rt_tensor *dev = rt_where_scalar(W, present, rt_sub(W, qd, mean), 0.0);
        rt_tensor *var = rt_div(W, rt_sum(W, rt_square(W, dev), 1, 1), rt_clamp(W, rt_add_scalar(W, n, -1.0), 1.0, INFINITY));
        rt_tensor *sd = rt_sqrt(W, var);
        /* std < 1e-8, or fewer than two candidates (no unbiased std) -> 1 */
        rt_tensor *bad = rt_logical_or(W, rt_compare_scalar(W, sd, RT_LT, 1e-8), rt_compare_scalar(W, n, RT_LT, 2.0));
        score = rt_div(W, dev, rt_where_scalar(W, rt_logical_not(W, bad), sd, 1.0));
    }
    return masked_softmax(W, rt_div_scalar(W, score, c->beta_reward), present, row_has);
}

rt_tensor *adpo_loss(rt_scope *S, const adpo_config *cfg, const adpo_inputs *in, adpo_outputs *out,
                     adpo_metrics *m)
{
    if (m) {
        double *f = (double *)m;
        for (size_t i = 0; i < sizeof *m / sizeof(double); i++) f[i] = NAN;
    }
    if (out) memset(out, 0, sizeof *out);
    if (!in) return rt_set_error("adpo_loss: inputs are NULL"), NULL;
    if (adpo_config_check(cfg) != RT_OK) return NULL;
    if (check_bp("policy_logps", in->policy_logps, NULL, 0) != RT_OK ||
        (in->anchor_logps && check_bp("anchor_logps", in->anchor_logps, in->policy_logps, 0) != RT_OK) ||
        check_bp("q", in->q, in->policy_logps, 0) != RT_OK ||
        (in->mask && check_bp("mask", in->mask, in->policy_logps, 1) != RT_OK))
        return NULL;
    int64_t B = rt_size(in->policy_logps, 0), P = rt_size(in->policy_logps, 1);
    if (B < 1 || P < 1)
        return rt_set_error("adpo_loss: policy_logps is empty ([%lld, %lld])", (long long)B, (long long)P), NULL;

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("adpo_loss: cannot create a scope"), NULL;
    rt_tensor *loss = NULL;
    rt_dtype dt = rt_dtype_of(in->policy_logps) == RT_F64 ? RT_F64 : RT_F32;
    int64_t bp[2] = {B, P};
    rt_tensor *present = in->mask ? rt_alias(W, in->mask) : rt_ones(W, bp, 2, RT_OPTS(RT_BOOL));
    rt_tensor *row_has = rt_any(W, present, 1, 0); /* [B] */
    rt_tensor *l = as_dt(W, in->policy_logps, dt);
    rt_tensor *a = in->anchor_logps ? rt_detach(W, as_dt(W, in->anchor_logps, dt)) : rt_detach(W, l);
    /* absent candidates are zeroed before any math (NaN-safe) */
    rt_tensor *r = rt_where_scalar(W, present, rt_sub(W, l, a), 0.0); /* [B,P] */
    rt_tensor *u = rt_div_scalar(W, r, cfg->tau);
    rt_tensor *q = build_target(W, cfg, in->q, present, row_has, dt);
    if (!q || !u) goto done;

    rt_tensor *per = NULL, *kl_rows = NULL, *counted = NULL; /* [B], [B], [B] bool */
    rt_tensor *um = rt_where_scalar(W, rt_unsqueeze(W, row_has, 1), rt_where_scalar(W, present, u, -INFINITY), 0.0);
    rt_tensor *logp = rt_log_softmax(W, um, 1);
    if (cfg->form == ADPO_LISTWISE) {
        rt_tensor *qlogp = rt_where_scalar(W, present, rt_mul(W, q, rt_where_scalar(W, present, logp, 0.0)), 0.0);
        per = rt_neg(W, rt_sum(W, qlogp, 1, 0));
        kl_rows = rt_add(W, per, rt_sum(W, xlogx(W, q), 1, 0)); /* CE - H(q) */
        counted = row_has;
    } else {
        /* [B,P,P]: i along dim 1, j along dim 2 */
        rt_tensor *ui = rt_unsqueeze(W, u, 2), *uj = rt_unsqueeze(W, u, 1);
        rt_tensor *qi = rt_unsqueeze(W, q, 2), *qj = rt_unsqueeze(W, q, 1);
        rt_tensor *d = rt_sub(W, ui, uj);
        rt_tensor *den = rt_add(W, qi, qj);
        rt_tensor *idx = rt_arange(W, 0, (double)P, 1, RT_OPTS(RT_I64));
        rt_tensor *upper = rt_compare(W, rt_unsqueeze(W, idx, 1), RT_LT, rt_unsqueeze(W, idx, 0)); /* [P,P] i<j */
        rt_tensor *both = rt_logical_and(W, rt_unsqueeze(W, present, 2), rt_unsqueeze(W, present, 1));
        rt_tensor *valid = rt_logical_and(W, rt_logical_and(W, both, rt_unsqueeze(W, upper, 0)),
                                          rt_compare_scalar(W, den, RT_GT, 0.0));
        rt_tensor *t = rt_div(W, qi, rt_where_scalar(W, valid, den, 1.0));
        t = rt_where_scalar(W, valid, t, 0.0);
        rt_tensor *lp = rt_add(W, rt_mul(W, t, rt_neg(W, rt_logsigmoid(W, d))),
                               rt_mul(W, rt_rsub_scalar(W, t, 1.0), rt_neg(W, rt_logsigmoid(W, rt_neg(W, d)))));
        rt_tensor *pair_kl = rt_add(W, lp, rt_add(W, xlogx(W, t), xlogx(W, rt_rsub_scalar(W, t, 1.0))));
        int64_t dims[2] = {1, 2};
        rt_tensor *npairs = rt_sum_dims(W, rt_to_dtype(W, valid, dt), dims, 2, 0); /* [B] */
        rt_tensor *npairs1 = rt_clamp(W, npairs, 1.0, INFINITY);
        per = rt_div(W, rt_sum_dims(W, rt_where_scalar(W, valid, lp, 0.0), dims, 2, 0), npairs1);
        kl_rows = rt_div(W, rt_sum_dims(W, rt_where_scalar(W, valid, pair_kl, 0.0), dims, 2, 0), npairs1);
        counted = rt_compare_scalar(W, npairs, RT_GT, 0.0);
    }
    per = rt_where_scalar(W, counted, per, 0.0);
    rt_tensor *ncount = rt_sum(W, rt_to_dtype(W, counted, dt), RT_DIM_ALL, 0);
    if (!per || !ncount) goto done;
    double nc = rt_item(ncount);
    loss = rt_div_scalar(W, rt_sum(W, per, RT_DIM_ALL, 0), nc > 0 ? nc : 1.0);
    if (!loss) goto done;

    if (m || out) {
        int g = rt_no_grad_begin();
        if (m) {
            rt_tensor *kls = rt_sum(W, rt_where_scalar(W, counted, kl_rows, 0.0), RT_DIM_ALL, 0);
            rt_tensor *npres = rt_sum(W, rt_to_dtype(W, present, dt), RT_DIM_ALL, 0);
            rt_tensor *abs_r = rt_sum(W, rt_abs(W, r), RT_DIM_ALL, 0);
            m->loss = rt_item(loss);
            m->kl = kls && nc > 0 ? rt_item(kls) / nc : NAN;
            m->anchor_kl = abs_r && npres && rt_item(npres) > 0 ? rt_item(abs_r) / rt_item(npres) : NAN;
            m->tau = cfg->tau;
            m->count = nc;
        }
        if (out) {
            out->losses = rt_move(rt_detach(W, per), S);
            out->anchored_probs = rt_move(rt_detach(W, masked_softmax(W, u, present, row_has)), S);
            out->target = rt_move(q, S);
        }
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss, S);

done:
    rt_scope_free(W);
    return loss;
}

int adpo_anchor_ema_update(rt_tensor *const *anchor_params, rt_tensor *const *policy_params, size_t n,
                           double rate)
{
    char a[64], b[64];
    if (n && (!anchor_params || !policy_params))
        return rt_set_error("adpo_anchor_ema_update: NULL parameter list"), RT_EINVAL;
    if (!(rate >= 0.0 && rate <= 1.0))
        return rt_set_error("adpo_anchor_ema_update: rate = %g is out of range [0, 1]", rate), RT_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const rt_tensor *x = anchor_params[i], *y = policy_params[i];
        if (!x || !y) return rt_set_error("adpo_anchor_ema_update: parameter %zu is NULL", i), RT_EINVAL;
        int same = rt_ndim(x) == rt_ndim(y);
        for (int d = 0; same && d < rt_ndim(x); d++) same = rt_size(x, d) == rt_size(y, d);
        if (!same)
            return rt_set_error("adpo_anchor_ema_update: parameter %zu: anchor %s vs policy %s", i,
                                rt_shape_str(x, a, sizeof a), rt_shape_str(y, b, sizeof b)),
                   RT_EINVAL;
    }
    int g = rt_no_grad_begin();
    int rc = RT_OK;
    for (size_t i = 0; i < n && rc == RT_OK; i++) rc = rt_lerp_(anchor_params[i], policy_params[i], rate);
    rt_grad_mode_restore(g);
    return rc;
}
