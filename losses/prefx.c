/*
 * prefx.c -- SimPO, ORPO, KTO and BCO over sequence
 * log-probs (see prefx.h for the API and the formulas; specs/pref_kd_losses.md
 * section 4 for the references and the worked numbers the tests reproduce).
 *
 * Layout: the shared settings/metrics machinery and input checks, then one
 * section per loss (its setting table, metric table and evaluation). Every
 * tensor made while evaluating lives in a private scope W; only the loss and
 * the per-example losses move to the caller's scope. Ops given NULL return
 * NULL and keep the first message, so each block is checked once.
 */
#include "prefx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Settings (settings.h) and metrics helpers shared by the four losses       */
/* ------------------------------------------------------------------------ */

const char *prefx_setting_format(const void *cfg, const prefx_setting *s, char *buf, size_t cap)
{
    return lset_format(s, cfg, buf, cap);
}

double prefx_metric_value(const void *m, const prefx_metric *d)
{
    if (!m || !d) return NAN;
    return *(const double *)((const char *)m + d->offset);
}

static void metrics_nan(void *m, size_t size)
{
    double *f = (double *)m;
    for (size_t i = 0; m && i < size / sizeof(double); i++) f[i] = NAN;
}

#define REAL(cfgt, nm, field, d, lo, hi, help) \
    {nm, LSET_REAL, offsetof(cfgt, field), d, lo, hi, NULL, help}
#define BOOL(cfgt, nm, field, d, help) {nm, LSET_BOOL, offsetof(cfgt, field), d, 0, 1, NULL, help}
#define CHOICE(cfgt, nm, field, d, ch, help) {nm, LSET_CHOICE, offsetof(cfgt, field), d, 0, 0, ch, help}
#define METRIC(mt, nm, field, help) {nm, offsetof(mt, field), help}

#define BETA_MIN 1e-12
#define LN2 0.693147180559945309417232121458176568
#define BIG 1e6

/* ------------------------------------------------------------------------ */
/* Input checks and shared tensor helpers                                    */
/* ------------------------------------------------------------------------ */

static int null_input(const char *fn, const char *what)
{
    /* an op that produced this NULL already said why: keep its message */
    if (rt_last_error()[0] == '\0') rt_set_error("%s: %s is NULL", fn, what);
    return RT_EINVAL;
}

/* A float [B] input. *B < 0 on entry: this input fixes B (and *dt). */
static int check_float_vec(const char *fn, const char *what, const rt_tensor *t, int64_t *B, rt_dtype *dt)
{
    char a[64];
    if (!t) return null_input(fn, what);
    if (rt_ndim(t) != 1)
        return rt_set_error("%s: %s must be 1-D [B], got %s", fn, what, rt_shape_str(t, a, sizeof a)),
               RT_EINVAL;
    rt_dtype d = rt_dtype_of(t);
    if (*B < 0) {
        if (d != RT_F32 && d != RT_F64)
            return rt_set_error("%s: %s must be float32 or float64, got %s", fn, what, rt_dtype_name(d)),
                   RT_EINVAL;
        *B = rt_size(t, 0);
        *dt = d;
        if (*B < 1) return rt_set_error("%s: %s is empty ([0])", fn, what), RT_EINVAL;
        return RT_OK;
    }
    if (rt_size(t, 0) != *B)
        return rt_set_error("%s: %s has shape %s, expected [%lld] like the inputs before it", fn, what,
                            rt_shape_str(t, a, sizeof a), (long long)*B),
               RT_EINVAL;
    if (d != *dt)
        return rt_set_error("%s: %s is %s but the policy log-probs are %s; use one dtype", fn, what,
                            rt_dtype_name(d), rt_dtype_name(*dt)),
               RT_EINVAL;
    return RT_OK;
}

/* An auxiliary [B] input of any numeric dtype (lengths, labels, probs). */
static int check_aux_vec(const char *fn, const char *what, const rt_tensor *t, int64_t B)
{
    char a[64];
    if (!t) return null_input(fn, what);
    if (rt_ndim(t) != 1 || rt_size(t, 0) != B)
        return rt_set_error("%s: %s has shape %s, expected [%lld] (one per example)", fn, what,
                            rt_shape_str(t, a, sizeof a), (long long)B),
               RT_EINVAL;
    return RT_OK;
}

/* Token counts as dt, clamped >= 1 (TRL's clamp(min=1)). */
static rt_tensor *lengths_as(rt_scope *W, const rt_tensor *len, rt_dtype dt)
{
    return rt_clamp(W, rt_to_dtype(W, len, dt), 1.0, INFINITY);
}

/* logps / lengths, or logps itself when lengths is NULL (already averages). */
static rt_tensor *per_token(rt_scope *W, const rt_tensor *logps, const rt_tensor *lengths, rt_dtype dt)
{
    return lengths ? rt_div(W, logps, lengths_as(W, lengths, dt)) : rt_alias(W, logps);
}

/* -sum(logps)/sum(lengths) (a batch token mean), or -mean(logps) without lengths. */
static rt_tensor *token_mean_nll(rt_scope *W, const rt_tensor *logps, const rt_tensor *lengths, rt_dtype dt)
{
    if (!lengths) return rt_neg(W, rt_mean(W, logps, RT_DIM_ALL, 0));
    rt_tensor *n = rt_sum(W, lengths_as(W, lengths, dt), RT_DIM_ALL, 0);
    return rt_neg(W, rt_div(W, rt_sum(W, logps, RT_DIM_ALL, 0), n));
}

/* -log(sigmoid(x)) = softplus(-x), stable for any x. */
static rt_tensor *neg_logsig(rt_scope *W, const rt_tensor *x) { return rt_neg(W, rt_logsigmoid(W, x)); }

static double mean_item(rt_scope *W, const rt_tensor *t)
{
    rt_tensor *m = rt_mean(W, t, RT_DIM_ALL, 0);
    return m ? rt_item(m) : NAN;
}

/* Fraction of positions where a > b (strict: ties count 0). */
static double frac_greater(rt_scope *W, const rt_tensor *a, const rt_tensor *b)
{
    return mean_item(W, rt_to_dtype(W, rt_compare(W, a, RT_GT, b), RT_F64));
}

/* sum of v over mask / count(mask); NaN when the mask is empty. */
static double masked_mean_item(rt_scope *W, const rt_tensor *v, const rt_tensor *mask, double count)
{
    if (count <= 0) return NAN;
    rt_tensor *s = rt_sum(W, rt_where_scalar(W, mask, v, 0.0), RT_DIM_ALL, 0);
    return s ? rt_item(s) / count : NAN;
}

/* labels (any dtype, nonzero = desirable) -> bool [B]. */
static rt_tensor *desirable_mask(rt_scope *W, const rt_tensor *labels)
{
    return rt_dtype_of(labels) == RT_BOOL ? rt_alias(W, labels) : rt_compare_scalar(W, labels, RT_NE, 0.0);
}

static double count_true(rt_scope *W, const rt_tensor *mask)
{
    rt_tensor *n = rt_sum(W, rt_to_dtype(W, mask, RT_F64), RT_DIM_ALL, 0);
    return n ? rt_item(n) : NAN;
}

/* Hand loss (and per-example losses) to S; NULL when either is missing. */
static rt_tensor *finish(rt_scope *S, rt_tensor *loss, rt_tensor *per, rt_tensor **per_example)
{
    if (!loss || (per_example && !per)) return NULL;
    if (per_example) *per_example = rt_move(per, S);
    return rt_move(loss, S);
}

/* ======================================================================== */
/* SimPO                                                                     */
/* ======================================================================== */

static const char *const simpo_preset_names[] = {"official", "trl", NULL};
static const char *const simpo_type_names[] = {"sigmoid", "hinge", NULL};

static const prefx_setting simpo_table[] = {
    CHOICE(simpo_config, "preset", preset, SIMPO_PRESET_OFFICIAL, simpo_preset_names,
           "defaults to start from: official (princeton-nlp/SimPO: beta 2, gamma 0.5, sft_weight 0) or "
           "trl (CPOConfig loss_type=simpo: beta 0.1, gamma 0.5, sft_weight = cpo_alpha 1); give it first"),
    REAL(simpo_config, "beta", beta, 2.0, BETA_MIN, BIG, "reward scale beta"),
    REAL(simpo_config, "gamma", gamma, 0.5, -BIG, BIG,
         "target reward margin: x = beta*(avg_w - avg_l) - gamma (official gamma_beta_ratio = gamma/beta; "
         "TRL simpo_gamma)"),
    REAL(simpo_config, "label_smoothing", label_smoothing, 0.0, 0.0, 1.0,
         "eps: -(1-eps) logsig(x) - eps logsig(-x) (sigmoid only)"),
    CHOICE(simpo_config, "loss_type", loss_type, SIMPO_SIGMOID, simpo_type_names,
           "sigmoid, or hinge = relu(1 - x) (official only)"),
    REAL(simpo_config, "sft_weight", sft_weight, 0.0, 0.0, BIG,
         "weight of the token-mean NLL of the chosen completions (official sft_weight; TRL cpo_alpha)"),
};

static const prefx_metric simpo_metric_tab[] = {
    METRIC(simpo_metrics, "loss", loss, "the loss returned"),
    METRIC(simpo_metrics, "rewards/chosen", rewards_chosen, "mean beta * avg chosen logp"),
    METRIC(simpo_metrics, "rewards/rejected", rewards_rejected, "mean beta * avg rejected logp"),
    METRIC(simpo_metrics, "rewards/accuracies", rewards_accuracies, "fraction with avg_w > avg_l"),
    METRIC(simpo_metrics, "rewards/margins", rewards_margins, "mean beta * (avg_w - avg_l)"),
    METRIC(simpo_metrics, "logps/chosen", logps_chosen, "mean per-token chosen logp"),
    METRIC(simpo_metrics, "logps/rejected", logps_rejected, "mean per-token rejected logp"),
    METRIC(simpo_metrics, "nll_loss", nll_loss, "token-mean NLL of the chosen completions"),
    METRIC(simpo_metrics, "preference_loss", preference_loss, "mean per-pair loss without the NLL term"),
};

const prefx_setting *simpo_settings(size_t *n)
{
    if (n) *n = COUNT(simpo_table);
    return simpo_table;
}

const prefx_metric *simpo_metric_table(size_t *n)
{
    if (n) *n = COUNT(simpo_metric_tab);
    return simpo_metric_tab;
}

simpo_config simpo_config_default(void)
{
    simpo_config c;
    lset_defaults(simpo_table, COUNT(simpo_table), &c);
    return c;
}

simpo_config simpo_config_preset(simpo_preset preset)
{
    simpo_config c = simpo_config_default();
    if (preset == SIMPO_PRESET_TRL) {
        /* CPOConfig: beta 0.1, simpo_gamma 0.5, cpo_alpha 1.0, label_smoothing 0 */
        c.preset = SIMPO_PRESET_TRL;
        c.beta = 0.1;
        c.gamma = 0.5;
        c.sft_weight = 1.0;
    }
    return c;
}

int simpo_config_check(const simpo_config *cfg)
{
    return lset_check(simpo_table, COUNT(simpo_table), cfg, "simpo");
}

int simpo_config_set(simpo_config *cfg, const char *name, const char *value)
{
    int rc = lset_apply(simpo_table, COUNT(simpo_table), cfg, "simpo", name, value);
    if (rc == RT_OK && strcmp(name, "preset") == 0) *cfg = simpo_config_preset((simpo_preset)cfg->preset);
    return rc;
}

rt_tensor *simpo_loss(rt_scope *S, const simpo_config *cfg, const simpo_inputs *in, simpo_metrics *m,
                      rt_tensor **per_example)
{
    static const char fn[] = "simpo_loss";
    metrics_nan(m, sizeof *m);
    if (!in) return rt_set_error("%s: inputs are NULL", fn), NULL;
    if (simpo_config_check(cfg) != RT_OK) return NULL;
    int64_t B = -1;
    rt_dtype dt = RT_F32;
    if (check_float_vec(fn, "policy_chosen_logps", in->policy_chosen_logps, &B, &dt) != RT_OK ||
        check_float_vec(fn, "policy_rejected_logps", in->policy_rejected_logps, &B, &dt) != RT_OK)
        return NULL;
    if (!in->chosen_lengths != !in->rejected_lengths)
        return rt_set_error("%s: give both chosen_lengths and rejected_lengths or neither", fn), NULL;
    if (in->chosen_lengths && (check_aux_vec(fn, "chosen_lengths", in->chosen_lengths, B) != RT_OK ||
                               check_aux_vec(fn, "rejected_lengths", in->rejected_lengths, B) != RT_OK))
        return NULL;

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *out = NULL;
    rt_tensor *aw = per_token(W, in->policy_chosen_logps, in->chosen_lengths, dt);    /* [B] */
    rt_tensor *al = per_token(W, in->policy_rejected_logps, in->rejected_lengths, dt); /* [B] */
    rt_tensor *x = rt_add_scalar(W, rt_mul_scalar(W, rt_sub(W, aw, al), cfg->beta), -cfg->gamma);
    rt_tensor *per;
    if (cfg->loss_type == SIMPO_HINGE) {
        per = rt_relu(W, rt_rsub_scalar(W, x, 1.0));
    } else {
        double eps = cfg->label_smoothing;
        per = rt_mul_scalar(W, neg_logsig(W, x), 1.0 - eps);
        if (eps != 0.0) per = rt_add_scaled(W, per, neg_logsig(W, rt_neg(W, x)), eps);
    }
    rt_tensor *pref = rt_mean(W, per, RT_DIM_ALL, 0);
    rt_tensor *nll = token_mean_nll(W, in->policy_chosen_logps, in->chosen_lengths, dt);
    rt_tensor *loss = cfg->sft_weight != 0.0 ? rt_add_scaled(W, pref, nll, cfg->sft_weight) : pref;
    if (!loss || !nll) goto done;

    if (m) {
        int g = rt_no_grad_begin();
        m->loss = rt_item(loss);
        m->rewards_chosen = cfg->beta * mean_item(W, aw);
        m->rewards_rejected = cfg->beta * mean_item(W, al);
        m->rewards_accuracies = frac_greater(W, aw, al);
        m->rewards_margins = cfg->beta * mean_item(W, rt_sub(W, aw, al));
        m->logps_chosen = mean_item(W, aw);
        m->logps_rejected = mean_item(W, al);
        m->nll_loss = rt_item(nll);
        m->preference_loss = rt_item(pref);
        rt_grad_mode_restore(g);
    }
    out = finish(S, loss, per, per_example);
done:
    rt_scope_free(W);
    return out;
}

/* ======================================================================== */
/* ORPO                                                                      */
/* ======================================================================== */

static const prefx_setting orpo_table[] = {
    REAL(orpo_config, "beta", beta, 0.1, BETA_MIN, BIG,
         "lambda of the paper: weight of the odds-ratio term (ORPOConfig.beta)"),
    REAL(orpo_config, "lambda", beta, 0.1, BETA_MIN, BIG, "the same setting under the paper's name"),
};

static const prefx_metric orpo_metric_tab[] = {
    METRIC(orpo_metrics, "loss", loss, "the loss returned"),
    METRIC(orpo_metrics, "rewards/chosen", rewards_chosen, "mean beta * avg chosen logp"),
    METRIC(orpo_metrics, "rewards/rejected", rewards_rejected, "mean beta * avg rejected logp"),
    METRIC(orpo_metrics, "rewards/accuracies", rewards_accuracies, "fraction with avg_w > avg_l"),
    METRIC(orpo_metrics, "rewards/margins", rewards_margins, "mean beta * (avg_w - avg_l)"),
    METRIC(orpo_metrics, "logps/chosen", logps_chosen, "mean per-token chosen logp"),
    METRIC(orpo_metrics, "logps/rejected", logps_rejected, "mean per-token rejected logp"),
    METRIC(orpo_metrics, "nll_loss", nll_loss, "token-mean NLL of the chosen sequences"),
    METRIC(orpo_metrics, "log_odds_ratio", log_odds_ratio, "mean logsig(log_odds)"),
    METRIC(orpo_metrics, "log_odds_chosen", log_odds_chosen, "mean log_odds"),
};

const prefx_setting *orpo_settings(size_t *n)
{
    if (n) *n = COUNT(orpo_table);
    return orpo_table;
}

const prefx_metric *orpo_metric_table(size_t *n)
{
    if (n) *n = COUNT(orpo_metric_tab);
    return orpo_metric_tab;
}

orpo_config orpo_config_default(void)
{
    orpo_config c;
    lset_defaults(orpo_table, COUNT(orpo_table), &c);
    return c;
}

int orpo_config_check(const orpo_config *cfg)
{
    return lset_check(orpo_table, COUNT(orpo_table), cfg, "orpo");
}

int orpo_config_set(orpo_config *cfg, const char *name, const char *value)
{
    return lset_apply(orpo_table, COUNT(orpo_table), cfg, "orpo", name, value);
}

/* log(1 - e^a) for a <= 0, TRL's two branches at -ln 2. Each branch sees only
 * the entries it is selected for (the others get a harmless stand-in), so the
 * unselected branch can produce neither inf nor NaN, in value or gradient. */
static rt_tensor *log1mexp(rt_scope *W, const rt_tensor *a)
{
    rt_tensor *low = rt_compare_scalar(W, a, RT_LT, -LN2);
    rt_tensor *a_low = rt_where_scalar(W, low, a, -1.0);
    rt_tensor *a_high = rt_where_scalar(W, rt_logical_not(W, low), a, -0.5);
    rt_tensor *v_low = rt_log1p(W, rt_neg(W, rt_exp(W, a_low)));
    rt_tensor *v_high = rt_log(W, rt_neg(W, rt_expm1(W, a_high)));
    return rt_where(W, low, v_low, v_high);
}

rt_tensor *orpo_loss(rt_scope *S, const orpo_config *cfg, const orpo_inputs *in, orpo_metrics *m,
                     rt_tensor **per_example)
{
    static const char fn[] = "orpo_loss";
    metrics_nan(m, sizeof *m);
    if (!in) return rt_set_error("%s: inputs are NULL", fn), NULL;
    if (orpo_config_check(cfg) != RT_OK) return NULL;
    int64_t B = -1;
    rt_dtype dt = RT_F32;
    if (check_float_vec(fn, "policy_chosen_logps", in->policy_chosen_logps, &B, &dt) != RT_OK ||
        check_float_vec(fn, "policy_rejected_logps", in->policy_rejected_logps, &B, &dt) != RT_OK)
        return NULL;
    if (!in->chosen_lengths != !in->rejected_lengths)
        return rt_set_error("%s: give both chosen_lengths and rejected_lengths or neither", fn), NULL;
    if (in->chosen_lengths && (check_aux_vec(fn, "chosen_lengths", in->chosen_lengths, B) != RT_OK ||
                               check_aux_vec(fn, "rejected_lengths", in->rejected_lengths, B) != RT_OK))
        return NULL;
    if (!in->policy_chosen_full_logps && in->chosen_full_lengths)
        return rt_set_error("%s: chosen_full_lengths given without policy_chosen_full_logps", fn), NULL;
    if (in->policy_chosen_full_logps &&
        (check_float_vec(fn, "policy_chosen_full_logps", in->policy_chosen_full_logps, &B, &dt) != RT_OK ||
         (in->chosen_full_lengths &&
          check_aux_vec(fn, "chosen_full_lengths", in->chosen_full_lengths, B) != RT_OK)))
        return NULL;

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *out = NULL;
    /* [I] clamp: a completion of probability 1 (avg 0) would give log(0) */
    rt_tensor *aw = rt_clamp(W, per_token(W, in->policy_chosen_logps, in->chosen_lengths, dt), -INFINITY, -1e-12);
    rt_tensor *al = rt_clamp(W, per_token(W, in->policy_rejected_logps, in->rejected_lengths, dt), -INFINITY, -1e-12);
    rt_tensor *log_odds = rt_sub(W, rt_sub(W, aw, al), rt_sub(W, log1mexp(W, aw), log1mexp(W, al))); /* [B] */
    rt_tensor *ratio = rt_logsigmoid(W, log_odds);
    rt_tensor *per = rt_mul_scalar(W, ratio, -cfg->beta);
    rt_tensor *nll = in->policy_chosen_full_logps
                         ? token_mean_nll(W, in->policy_chosen_full_logps, in->chosen_full_lengths, dt)
                         : token_mean_nll(W, in->policy_chosen_logps, in->chosen_lengths, dt);
    rt_tensor *loss = rt_add(W, nll, rt_mean(W, per, RT_DIM_ALL, 0));
    if (!loss) goto done;

    if (m) {
        int g = rt_no_grad_begin();
        m->loss = rt_item(loss);
        m->rewards_chosen = cfg->beta * mean_item(W, aw);
        m->rewards_rejected = cfg->beta * mean_item(W, al);
        m->rewards_accuracies = frac_greater(W, aw, al);
        m->rewards_margins = cfg->beta * mean_item(W, rt_sub(W, aw, al));
        m->logps_chosen = mean_item(W, aw);
        m->logps_rejected = mean_item(W, al);
        m->nll_loss = rt_item(nll);
        m->log_odds_ratio = mean_item(W, ratio);
        m->log_odds_chosen = mean_item(W, log_odds);
        rt_grad_mode_restore(g);
    }
    out = finish(S, loss, per, per_example);
done:
    rt_scope_free(W);
    return out;
}

/* ======================================================================== */
/* KTO                                                                       */
/* ======================================================================== */

static const char *const kto_type_names[] = {"kto", "apo_zero_unpaired", NULL};

static const prefx_setting kto_table[] = {
    REAL(kto_config, "beta", beta, 0.1, BETA_MIN, BIG, "reward scale beta (KTOConfig.beta)"),
    REAL(kto_config, "desirable_weight", desirable_weight, 1.0, 0.0, BIG,
         "lambda_D; KTO Eq. 8 wants lambda_D*n_D / (lambda_U*n_U) in [1, 4/3]"),
    REAL(kto_config, "undesirable_weight", undesirable_weight, 1.0, 0.0, BIG, "lambda_U"),
    CHOICE(kto_config, "loss_type", loss_type, KTO_KTO, kto_type_names,
           "kto (KL reference point z) or apo_zero_unpaired (no z)"),
};

static const prefx_metric kto_metric_tab[] = {
    METRIC(kto_metrics, "loss", loss, "the loss returned"),
    METRIC(kto_metrics, "kl", kl, "the reference point z (clamped >= 0)"),
    METRIC(kto_metrics, "rewards/chosen", rewards_chosen, "mean beta*(policy - ref) over desirable"),
    METRIC(kto_metrics, "rewards/rejected", rewards_rejected, "mean beta*(policy - ref) over undesirable"),
    METRIC(kto_metrics, "rewards/margins", rewards_margins, "rewards/chosen - rewards/rejected"),
    METRIC(kto_metrics, "logps/chosen", logps_chosen, "mean policy logp over desirable"),
    METRIC(kto_metrics, "logps/rejected", logps_rejected, "mean policy logp over undesirable"),
    METRIC(kto_metrics, "count/chosen", count_chosen, "desirable examples"),
    METRIC(kto_metrics, "count/rejected", count_rejected, "undesirable examples"),
};

const prefx_setting *kto_settings(size_t *n)
{
    if (n) *n = COUNT(kto_table);
    return kto_table;
}

const prefx_metric *kto_metric_table(size_t *n)
{
    if (n) *n = COUNT(kto_metric_tab);
    return kto_metric_tab;
}

kto_config kto_config_default(void)
{
    kto_config c;
    lset_defaults(kto_table, COUNT(kto_table), &c);
    return c;
}

int kto_config_check(const kto_config *cfg) { return lset_check(kto_table, COUNT(kto_table), cfg, "kto"); }

int kto_config_set(kto_config *cfg, const char *name, const char *value)
{
    return lset_apply(kto_table, COUNT(kto_table), cfg, "kto", name, value);
}

static int check_kl_pair(const char *fn, const rt_tensor *pkl, const rt_tensor *rkl, rt_dtype dt)
{
    int64_t n = -1;
    rt_dtype d = dt;
    if (check_float_vec(fn, "policy_kl_logps", pkl, &n, &d) != RT_OK ||
        check_float_vec(fn, "ref_kl_logps", rkl, &n, &d) != RT_OK)
        return RT_EINVAL;
    if (d != dt)
        return rt_set_error("%s: policy_kl_logps is %s but policy_logps is %s; use one dtype", fn,
                            rt_dtype_name(d), rt_dtype_name(dt)),
               RT_EINVAL;
    return RT_OK;
}

double kto_kl_estimate(const rt_tensor *policy_kl_logps, const rt_tensor *ref_kl_logps)
{
    if (!policy_kl_logps) return null_input("kto_kl_estimate", "policy_kl_logps"), NAN;
    if (check_kl_pair("kto_kl_estimate", policy_kl_logps, ref_kl_logps, rt_dtype_of(policy_kl_logps)) != RT_OK)
        return NAN;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("kto_kl_estimate: cannot create a scope"), NAN;
    int g = rt_no_grad_begin();
    double z = mean_item(W, rt_sub(W, policy_kl_logps, ref_kl_logps));
    rt_grad_mode_restore(g);
    rt_scope_free(W);
    return z;
}

rt_tensor *kto_loss(rt_scope *S, const kto_config *cfg, const kto_inputs *in, kto_metrics *m,
                    rt_tensor **per_example)
{
    static const char fn[] = "kto_loss";
    metrics_nan(m, sizeof *m);
    if (!in) return rt_set_error("%s: inputs are NULL", fn), NULL;
    if (kto_config_check(cfg) != RT_OK) return NULL;
    int64_t B = -1;
    rt_dtype dt = RT_F32;
    if (check_float_vec(fn, "policy_logps", in->policy_logps, &B, &dt) != RT_OK ||
        check_float_vec(fn, "ref_logps", in->ref_logps, &B, &dt) != RT_OK ||
        check_aux_vec(fn, "labels", in->labels, B) != RT_OK)
        return NULL;
    int use_kl = cfg->loss_type == KTO_KTO;
    if (use_kl && (!in->policy_kl_logps || !in->ref_kl_logps))
        return rt_set_error("%s: loss_type kto needs policy_kl_logps and ref_kl_logps (the mismatched "
                            "(prompt, completion) pairs of the KL estimate)",
                            fn),
               NULL;
    if (use_kl && check_kl_pair(fn, in->policy_kl_logps, in->ref_kl_logps, dt) != RT_OK) return NULL;

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *out = NULL;
    rt_tensor *des = desirable_mask(W, in->labels);                              /* [B] bool */
    rt_tensor *r = rt_sub(W, in->policy_logps, rt_detach(W, in->ref_logps));      /* [B] */
    rt_tensor *z = NULL;                                                         /* 0-dim, detached */
    if (use_kl) {
        rt_tensor *kl = rt_mean(W, rt_sub(W, rt_detach(W, in->policy_kl_logps), rt_detach(W, in->ref_kl_logps)),
                                RT_DIM_ALL, 0);
        z = rt_clamp(W, kl, 0.0, INFINITY);
    } else {
        z = rt_scalar(W, 0.0, RT_OPTS(dt));
    }
    /* 1 - sig(y) is written sig(-y): the same value, no cancellation */
    rt_tensor *u = rt_mul_scalar(W, rt_sub(W, r, z), cfg->beta); /* beta (r - z) */
    rt_tensor *l_des = rt_sigmoid(W, rt_neg(W, u));               /* 1 - sig(beta (r - z)) */
    rt_tensor *l_und = rt_sigmoid(W, u);                          /* 1 - sig(beta (z - r)) */
    rt_tensor *per = rt_where(W, des, rt_mul_scalar(W, l_des, cfg->desirable_weight),
                              rt_mul_scalar(W, l_und, cfg->undesirable_weight));
    rt_tensor *loss = rt_mean(W, per, RT_DIM_ALL, 0);
    if (!loss) goto done;

    if (m) {
        int g = rt_no_grad_begin();
        rt_tensor *und = rt_logical_not(W, des);
        double nd = count_true(W, des), nu = (double)B - nd;
        m->loss = rt_item(loss);
        m->kl = rt_item(z);
        rt_tensor *rew = rt_mul_scalar(W, r, cfg->beta);
        m->rewards_chosen = masked_mean_item(W, rew, des, nd);
        m->rewards_rejected = masked_mean_item(W, rew, und, nu);
        m->rewards_margins = m->rewards_chosen - m->rewards_rejected; /* NaN unless both exist */
        m->logps_chosen = masked_mean_item(W, in->policy_logps, des, nd);
        m->logps_rejected = masked_mean_item(W, in->policy_logps, und, nu);
        m->count_chosen = nd;
        m->count_rejected = nu;
        rt_grad_mode_restore(g);
    }
    out = finish(S, loss, per, per_example);
done:
    rt_scope_free(W);
    return out;
}

/* ======================================================================== */
/* BCO                                                                       */
/* ======================================================================== */

static const prefx_setting bco_table[] = {
    REAL(bco_config, "beta", beta, 0.1, BETA_MIN, BIG, "reward scale beta (BCOConfig.beta)"),
    BOOL(bco_config, "update_running", update_running, 1,
         "1 = training step: update the running mean with this batch first; 0 = evaluation"),
    REAL(bco_config, "min_density_ratio", min_density_ratio, 0.5, 0.0, BIG, "UDM weight lower clamp"),
    REAL(bco_config, "max_density_ratio", max_density_ratio, 10.0, 0.0, BIG, "UDM weight upper clamp"),
};

static const prefx_metric bco_metric_tab[] = {
    METRIC(bco_metrics, "loss", loss, "the loss returned"),
    METRIC(bco_metrics, "delta", delta, "the running mean of the rewards used as the shift"),
    METRIC(bco_metrics, "rewards/chosen", rewards_chosen, "mean beta*(policy - ref) over desirable"),
    METRIC(bco_metrics, "rewards/rejected", rewards_rejected, "mean beta*(policy - ref) over undesirable"),
    METRIC(bco_metrics, "rewards/margins", rewards_margins, "rewards/chosen - rewards/rejected"),
    METRIC(bco_metrics, "logps/chosen", logps_chosen, "mean policy logp over desirable"),
    METRIC(bco_metrics, "logps/rejected", logps_rejected, "mean policy logp over undesirable"),
    METRIC(bco_metrics, "count/chosen", count_chosen, "desirable examples"),
    METRIC(bco_metrics, "count/rejected", count_rejected, "undesirable examples"),
    METRIC(bco_metrics, "running/mean", running_mean, "running state after the call: mean"),
    METRIC(bco_metrics, "running/var", running_var, "running state: population variance"),
    METRIC(bco_metrics, "running/std", running_std, "running state: unbiased std"),
    METRIC(bco_metrics, "running/count", running_count, "running state: rewards seen"),
};

const prefx_setting *bco_settings(size_t *n)
{
    if (n) *n = COUNT(bco_table);
    return bco_table;
}

const prefx_metric *bco_metric_table(size_t *n)
{
    if (n) *n = COUNT(bco_metric_tab);
    return bco_metric_tab;
}

bco_config bco_config_default(void)
{
    bco_config c;
    lset_defaults(bco_table, COUNT(bco_table), &c);
    return c;
}

int bco_config_check(const bco_config *cfg)
{
    int rc = lset_check(bco_table, COUNT(bco_table), cfg, "bco");
    if (rc == RT_OK && cfg->min_density_ratio > cfg->max_density_ratio)
        return rt_set_error("bco: min_density_ratio %g exceeds max_density_ratio %g", cfg->min_density_ratio,
                            cfg->max_density_ratio),
               RT_EINVAL;
    return rc;
}

int bco_config_set(bco_config *cfg, const char *name, const char *value)
{
    return lset_apply(bco_table, COUNT(bco_table), cfg, "bco", name, value);
}

bco_running bco_running_init(void) { return (bco_running){.mean = 0.0, .var = 1.0, .std = 1.0, .count = 1e-24}; }

/* TRL's RunningMoments.update (a Chan et al. parallel merge of the stored
 * moments with the batch's): TRL keeps these in float32 tensors; here they
 * are doubles, so a long float32 run agrees to float32 rounding. */
int bco_running_update(bco_running *st, double batch_mean, double batch_var, double n)
{
    if (!st) return rt_set_error("bco_running_update: state is NULL"), RT_EINVAL;
    if (!(n >= 1) || !isfinite(n) || !isfinite(batch_mean) || !isfinite(batch_var) || batch_var < 0)
        return rt_set_error("bco_running_update: bad batch statistics (n %g, mean %g, var %g)", n, batch_mean,
                            batch_var),
               RT_EINVAL;
    double delta = batch_mean - st->mean;
    double tot = st->count + n;
    double old_sum = st->var * st->count + delta * delta * st->count * n / tot;
    double new_var = (old_sum + batch_var * n) / tot;
    st->mean += delta * n / tot;
    st->std = sqrt(new_var * tot / (tot - 1.0));
    st->var = new_var;
    st->count = tot;
    return RT_OK;
}

rt_tensor *bco_loss(rt_scope *S, const bco_config *cfg, const bco_inputs *in, bco_running *st,
                    bco_metrics *m, rt_tensor **per_example)
{
    static const char fn[] = "bco_loss";
    metrics_nan(m, sizeof *m);
    if (!in) return rt_set_error("%s: inputs are NULL", fn), NULL;
    if (!st) return rt_set_error("%s: the running state is NULL (start from bco_running_init())", fn), NULL;
    if (bco_config_check(cfg) != RT_OK) return NULL;
    if (!isfinite(st->mean) || !isfinite(st->var) || !(st->count > 0))
        return rt_set_error("%s: running state is invalid (mean %g, var %g, count %g)", fn, st->mean, st->var,
                            st->count),
               NULL;
    int64_t B = -1;
    rt_dtype dt = RT_F32;
    if (check_float_vec(fn, "policy_logps", in->policy_logps, &B, &dt) != RT_OK ||
        check_float_vec(fn, "ref_logps", in->ref_logps, &B, &dt) != RT_OK ||
        check_aux_vec(fn, "labels", in->labels, B) != RT_OK ||
        (in->udm_prob && check_aux_vec(fn, "udm_prob", in->udm_prob, B) != RT_OK))
        return NULL;

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *out = NULL;
    bco_running next = *st;
    rt_tensor *des = desirable_mask(W, in->labels); /* [B] bool */
    rt_tensor *rw = rt_mul_scalar(W, rt_sub(W, in->policy_logps, rt_detach(W, in->ref_logps)), cfg->beta);
    if (!rw || !des) goto done;
    if (cfg->update_running) {
        /* torch.var_mean(unbiased=False) of the detached rewards */
        int g = rt_no_grad_begin();
        rt_tensor *rd = rt_detach(W, rw);
        double mu = mean_item(W, rd);
        double var = mean_item(W, rt_square(W, rt_add_scalar(W, rd, -mu)));
        rt_grad_mode_restore(g);
        if (bco_running_update(&next, mu, var, (double)B) != RT_OK) goto done;
    }
    rt_tensor *shifted = rt_add_scalar(W, rw, -next.mean);          /* rw - delta */
    rt_tensor *l_des = neg_logsig(W, shifted);                       /* -logsig(rw - delta)    */
    rt_tensor *l_und = neg_logsig(W, rt_neg(W, shifted));            /* -logsig(-(rw - delta)) */
    if (in->udm_prob) {
        rt_tensor *p = rt_detach(W, rt_to_dtype(W, in->udm_prob, dt));
        rt_tensor *w = rt_clamp(W, rt_div(W, p, rt_add_scalar(W, rt_rsub_scalar(W, p, 1.0), 1e-8)),
                                cfg->min_density_ratio, cfg->max_density_ratio);
        l_und = rt_mul(W, w, l_und);
    }
    rt_tensor *per = rt_where(W, des, l_des, l_und);
    rt_tensor *loss = rt_mean(W, per, RT_DIM_ALL, 0);
    if (!loss) goto done;

    if (m) {
        int g = rt_no_grad_begin();
        rt_tensor *und = rt_logical_not(W, des);
        double nd = count_true(W, des), nu = (double)B - nd;
        m->loss = rt_item(loss);
        m->delta = next.mean;
        m->rewards_chosen = masked_mean_item(W, rw, des, nd);
        m->rewards_rejected = masked_mean_item(W, rw, und, nu);
        m->rewards_margins = m->rewards_chosen - m->rewards_rejected;
        m->logps_chosen = masked_mean_item(W, in->policy_logps, des, nd);
        m->logps_rejected = masked_mean_item(W, in->policy_logps, und, nu);
        m->count_chosen = nd;
        m->count_rejected = nu;
        m->running_mean = next.mean;
        m->running_var = next.var;
        m->running_std = next.std;
        m->running_count = next.count;
        rt_grad_mode_restore(g);
    }
    out = finish(S, loss, per, per_example);
    if (out) *st = next;
done:
    rt_scope_free(W);
    return out;
}
