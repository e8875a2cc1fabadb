/*
 * dpo.c -- DPO with every TRL loss type, S-DPO, and the sequence log-prob
 * helpers (see dpo.h for the API and the formulas; specs/pref_kd_losses.md
 * sections 1, 2 and 6 for the references and the worked numbers the tests
 * reproduce).
 *
 * Layout: the loss type names, dpo's comma-list settings and the table
 * helpers adpo.c shares (over settings.h), the DPO and S-DPO setting and
 * metric tables, input checks, the per-type loss terms,
 * dpo_loss(), the token-level helpers, dpo_sdpo_loss(). Every tensor made
 * here lives in a private scope W; only what the caller asked for is moved
 * to its scope. Ops given NULL return NULL, so blocks are checked once.
 */
#include "dpo.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Loss type names; settings over settings.h plus dpo's two comma lists       */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    const char *help;
} loss_types[DPO_LOSS_TYPE_COUNT] = {
    [DPO_SIGMOID] = {"sigmoid", "DPO: -logsig(beta D) (cdpo=1: label-smoothed, TRL v0.28)"},
    [DPO_HINGE] = {"hinge", "SLiC/RSO: relu(1 - beta D)"},
    [DPO_IPO] = {"ipo", "IPO: (s_w/|y_w| - s_l/|y_l| - 1/(2 beta))^2 (needs lengths; "
                        "ipo_length_normalize=0: the paper's (s_w - s_l - 1/(2 beta))^2)"},
    [DPO_EXO_PAIR] = {"exo_pair", "EXO Eq.16 (needs label_smoothing > 0, e.g. 1e-3)"},
    [DPO_NCA_PAIR] = {"nca_pair", "NCA: -logsig(beta s_w) - 0.5 logsig(-beta s_w) - 0.5 logsig(-beta s_l)"},
    [DPO_ROBUST] = {"robust", "rDPO: label_smoothing = flip probability in [0, 0.5)"},
    [DPO_BCO_PAIR] = {"bco_pair", "BCO pair: -logsig(beta s_w) - logsig(-beta s_l) (HEAD, no shift)"},
    [DPO_SPPO_HARD] = {"sppo_hard", "SPPO hard: (s_w - 1/(2 beta))^2 + (s_l + 1/(2 beta))^2"},
    [DPO_AOT] = {"aot", "AOT paired: sorted policy vs sorted reference log-ratio gaps over the batch"},
    [DPO_AOT_UNPAIRED] = {"aot_unpaired", "AOT unpaired: sort(r_w) - sort(r_l) over the batch"},
    [DPO_APO_ZERO] = {"apo_zero", "APO-zero: (1 - sig(beta r_w)) + sig(beta r_l)"},
    [DPO_APO_DOWN] = {"apo_down", "APO-down: sig(beta r_w) + (1 - sig(beta D))"},
    [DPO_DISCOPOP] = {"discopop", "DiscoPOP/LRML: sigmoid/exp mix gated by sig(beta D / discopop_tau)"},
    [DPO_SIGMOID_NORM] = {"sigmoid_norm", "length-normalized sigmoid (needs lengths)"},
    [DPO_SFT] = {"sft", "token-mean NLL of the chosen completions (needs chosen_lengths)"},
};

static const char *const fdiv_names[] = {"reverse_kl", "forward_kl", "js_divergence", "alpha_divergence",
                                         NULL};

/* Splits a comma list into trimmed items (in place in buf). Returns the count
 * or -1 when there are more than cap items or an item is empty. */
static int split_list(char *buf, char **items, int cap)
{
    int n = 0;
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        while (isspace((unsigned char)*p)) p++;
        char *e = p + strlen(p);
        while (e > p && isspace((unsigned char)e[-1])) *--e = '\0';
        if (!*p || n >= cap) return -1;
        items[n++] = p;
        if (!comma) return n;
        p = comma + 1;
    }
}

static int set_types(dpo_config *c, const char *who, const char *value)
{
    char buf[256], *items[DPO_MAX_TERMS];
    if (strlen(value) >= sizeof buf)
        return rt_set_error("%s: loss_type list is too long", who), RT_EINVAL;
    strcpy(buf, value);
    int n = split_list(buf, items, DPO_MAX_TERMS);
    if (n < 0)
        return rt_set_error("%s: loss_type = '%s' must be 1..%d comma-separated names, none empty", who,
                            value, DPO_MAX_TERMS),
               RT_EINVAL;
    int types[DPO_MAX_TERMS];
    for (int i = 0; i < n; i++) {
        types[i] = (int)dpo_loss_type_from_name(items[i]);
        if (types[i] < 0) {
            const char *names[DPO_LOSS_TYPE_COUNT];
            for (int k = 0; k < DPO_LOSS_TYPE_COUNT; k++) names[k] = loss_types[k].name;
            lset_unknown(who, "loss_type", items[i], names, DPO_LOSS_TYPE_COUNT);
            return RT_EINVAL; /* a bad value, not an unknown setting */
        }
    }
    c->n_types = n;
    memcpy(c->loss_type, types, sizeof types[0] * (size_t)n);
    return RT_OK;
}

static int set_weights(dpo_config *c, const dpo_setting *s, const char *who, const char *value)
{
    char buf[256], *items[DPO_MAX_TERMS];
    if (strlen(value) >= sizeof buf)
        return rt_set_error("%s: loss_weights list is too long", who), RT_EINVAL;
    strcpy(buf, value);
    int n = split_list(buf, items, DPO_MAX_TERMS);
    if (n < 0)
        return rt_set_error("%s: loss_weights = '%s' must be 1..%d comma-separated numbers", who, value,
                            DPO_MAX_TERMS),
               RT_EINVAL;
    /* each entry is one real setting of its own, parsed and range-checked as such */
    const lset_desc entry = {s->name, LSET_REAL, 0, 1.0, s->lo, s->hi, NULL, s->help};
    double w[DPO_MAX_TERMS];
    for (int i = 0; i < n; i++)
        if (lset_apply(&entry, 1, &w[i], who, s->name, items[i]) != RT_OK) return RT_EINVAL;
    c->n_weights = n;
    memcpy(c->loss_weights, w, sizeof w[0] * (size_t)n);
    return RT_OK;
}

int dpo_settings_apply(void *cfg, const dpo_setting *table, size_t n, const char *who, const char *name,
                       const char *value)
{
    if (!cfg || !table || !who || !name || !value)
        return rt_set_error("dpo_settings_apply: NULL argument"), RT_EINVAL;
    /* the list types exist only in dpo_config (offsets point at its counts) */
    const dpo_setting *s = lset_find(table, n, name);
    if (s && s->type == DPO_SET_TYPES) return set_types((dpo_config *)cfg, who, value);
    if (s && s->type == DPO_SET_WEIGHTS) return set_weights((dpo_config *)cfg, s, who, value);
    return lset_apply(table, n, cfg, who, name, value);
}

const char *dpo_setting_format(const void *cfg, const dpo_setting *s, char *buf, size_t cap)
{
    if (!buf || cap == 0) return buf;
    if (!cfg || !s || (s->type != DPO_SET_TYPES && s->type != DPO_SET_WEIGHTS)) return lset_format(s, cfg, buf, cap);
    const dpo_config *c = cfg;
    int types = s->type == DPO_SET_TYPES;
    int n = types ? c->n_types : c->n_weights;
    size_t used = 0;
    buf[0] = '\0';
    if (!types && n == 0) {
        snprintf(buf, cap, "1 each");
        return buf;
    }
    for (int i = 0; i < n && i < DPO_MAX_TERMS; i++) {
        int w;
        if (types) {
            const char *nm = dpo_loss_type_name((dpo_loss_type)c->loss_type[i]);
            w = snprintf(buf + used, cap - used, "%s%s", i ? "," : "", nm ? nm : "?");
        } else {
            w = snprintf(buf + used, cap - used, "%s%.10g", i ? "," : "", c->loss_weights[i]);
        }
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
    }
    return buf;
}

double dpo_metric_value(const void *metrics, const dpo_metric_desc *d)
{
    if (!metrics || !d) return NAN;
    return *(const double *)((const char *)metrics + d->offset);
}

/* ------------------------------------------------------------------------ */
/* DPO settings, defaults, names                                              */
/* ------------------------------------------------------------------------ */

#define OFF(field) offsetof(dpo_config, field)

static const dpo_setting dpo_table[] = {
    {"loss_type", DPO_SET_TYPES, OFF(n_types), 0, 0, 0, NULL,
     "comma list of loss types, e.g. sigmoid,bco_pair,sft (TRL loss_type)"},
    {"loss_weights", DPO_SET_WEIGHTS, OFF(n_weights), 0, -1e6, 1e6, NULL,
     "comma list, one weight per loss type (default 1 each)"},
    {"beta", LSET_REAL, OFF(beta), 0.1, 1e-9, 1e6, NULL, "inverse temperature of the implicit reward"},
    {"label_smoothing", LSET_REAL, OFF(label_smoothing), 0.0, 0, 1, NULL,
     "robust: flip probability (< 0.5); exo_pair: eps (> 0, 1e-3); aot, aot_unpaired; sigmoid with cdpo"},
    {"f_divergence_type", LSET_CHOICE, OFF(f_divergence), DPO_REVERSE_KL, 0, 0, fdiv_names,
     "scores s(r) the losses consume: reverse_kl (s=r), forward_kl, js_divergence, alpha_divergence"},
    {"f_alpha_divergence_coef", LSET_REAL, OFF(f_alpha_divergence_coef), 0.5, -1e3, 1e3, NULL,
     "alpha of alpha_divergence: s = exp((alpha-1) r)/(alpha-1) (HEAD parameterization)"},
    {"discopop_tau", LSET_REAL, OFF(discopop_tau), 0.05, 1e-6, 1e6, NULL,
     "discopop: temperature of the sigmoid gate"},
    {"use_weighting", LSET_BOOL, OFF(use_weighting), 0, 0, 1, NULL,
     "WPO: weight each pair by w_chosen*w_rejected (inputs chosen_weights, rejected_weights)"},
    {"cdpo", LSET_BOOL, OFF(cdpo), 0, 0, 1, NULL,
     "sigmoid reads label_smoothing as cDPO (TRL v0.28); HEAD's sigmoid ignores it"},
    {"ld_alpha", LSET_REAL, OFF(ld_alpha), 1.0, 0, 1, NULL,
     "LD-DPO weight of the tokens past the shorter completion (dpo_ld_logps); 1 = off"},
    {"ipo_length_normalize", LSET_BOOL, OFF(ipo_length_normalize), 1, 0, 1, NULL,
     "ipo on per-token averages (TRL; needs lengths), or 0: on summed log-ratios (IPO paper Eq. 17)"},
};

const dpo_setting *dpo_settings(size_t *n)
{
    if (n) *n = COUNT(dpo_table);
    return dpo_table;
}

dpo_config dpo_config_default(void)
{
    dpo_config c;
    memset(&c, 0, sizeof c);
    c.n_types = 1;
    c.loss_type[0] = DPO_SIGMOID;
    c.n_weights = 0;
    for (int i = 0; i < DPO_MAX_TERMS; i++) c.loss_weights[i] = 1.0;
    lset_defaults(dpo_table, COUNT(dpo_table), &c); /* the lists stay as set above */
    return c;
}

int dpo_config_set(dpo_config *cfg, const char *name, const char *value)
{
    return dpo_settings_apply(cfg, dpo_table, COUNT(dpo_table), "dpo", name, value);
}

const char *dpo_loss_type_name(dpo_loss_type t)
{
    return (int)t >= 0 && t < DPO_LOSS_TYPE_COUNT ? loss_types[t].name : NULL;
}

const char *dpo_loss_type_help(dpo_loss_type t)
{
    return (int)t >= 0 && t < DPO_LOSS_TYPE_COUNT ? loss_types[t].help : NULL;
}

dpo_loss_type dpo_loss_type_from_name(const char *name)
{
    for (int k = 0; name && k < DPO_LOSS_TYPE_COUNT; k++)
        if (strcmp(name, loss_types[k].name) == 0) return (dpo_loss_type)k;
    return DPO_LOSS_INVALID;
}

static int has_type(const dpo_config *c, dpo_loss_type t)
{
    for (int i = 0; i < c->n_types; i++)
        if (c->loss_type[i] == (int)t) return 1;
    return 0;
}

int dpo_config_check(const dpo_config *c)
{
    if (!c) return rt_set_error("dpo: config is NULL"), RT_EINVAL;
    if (c->n_types < 1 || c->n_types > DPO_MAX_TERMS)
        return rt_set_error("dpo: %d loss types (need 1..%d)", c->n_types, DPO_MAX_TERMS), RT_EINVAL;
    for (int i = 0; i < c->n_types; i++)
        if (!dpo_loss_type_name((dpo_loss_type)c->loss_type[i]))
            return rt_set_error("dpo: loss_type[%d] = %d is not a loss type", i, c->loss_type[i]), RT_EINVAL;
    if (c->n_weights != 0 && c->n_weights != c->n_types)
        return rt_set_error("dpo: loss_weights has %d entries but loss_type has %d", c->n_weights, c->n_types),
               RT_EINVAL;
    if (lset_check(dpo_table, COUNT(dpo_table), c, "dpo") != RT_OK) return RT_EINVAL;
    double eps = c->label_smoothing;
    if (has_type(c, DPO_EXO_PAIR) && !(eps > 0 && eps < 1))
        return rt_set_error("dpo: exo_pair needs 0 < label_smoothing < 1 (log eps and log(1-eps)); got %g "
                            "(recommended 1e-3)",
                            eps),
               RT_EINVAL;
    if (has_type(c, DPO_ROBUST) && eps >= 0.5)
        return rt_set_error("dpo: robust needs label_smoothing < 0.5 (it divides by 1 - 2 eps); got %g", eps),
               RT_EINVAL;
    if (c->use_weighting && (has_type(c, DPO_AOT) || has_type(c, DPO_AOT_UNPAIRED)))
        return rt_set_error("dpo: use_weighting (WPO) cannot be combined with aot / aot_unpaired "
                            "(they pair sorted positions, not examples)"),
               RT_EINVAL;
    return RT_OK;
}

#define MOFF(field) offsetof(dpo_metrics, field)
static const dpo_metric_desc dpo_metrics_table[] = {
    {"loss", MOFF(loss), "the loss returned"},
    {"rewards/chosen", MOFF(rewards_chosen), "mean beta * (logp_w - ref_w)"},
    {"rewards/rejected", MOFF(rewards_rejected), "mean beta * (logp_l - ref_l)"},
    {"rewards/accuracies", MOFF(rewards_accuracies), "fraction of pairs with chosen reward > rejected"},
    {"rewards/margins", MOFF(rewards_margins), "mean chosen reward - rejected reward"},
    {"logps/chosen", MOFF(logps_chosen), "mean policy chosen sequence log-prob"},
    {"logps/rejected", MOFF(logps_rejected), "mean policy rejected sequence log-prob"},
    {"pair_weight", MOFF(pair_weight), "mean WPO pair weight (1 without use_weighting)"},
    {"count", MOFF(count), "pairs in the batch"},
};

const dpo_metric_desc *dpo_metric_table(size_t *n)
{
    if (n) *n = COUNT(dpo_metrics_table);
    return dpo_metrics_table;
}

/* ------------------------------------------------------------------------ */
/* Input checks and small helpers                                             */
/* ------------------------------------------------------------------------ */

static int is_float(rt_dtype dt) { return dt == RT_F32 || dt == RT_F64 || dt == RT_BF16 || dt == RT_F16; }

static int null_input(const char *who, const char *what)
{
    /* an op that produced this NULL already said why: keep its message */
    if (rt_last_error()[0] == '\0') rt_set_error("%s: %s is NULL", who, what);
    return RT_EINVAL;
}

/* t must be float (or int64 when allow_int) of shape [d0] (d1 < 0) or [d0,d1]. */
static int check_shape(const char *who, const char *what, const rt_tensor *t, int64_t d0, int64_t d1,
                       int allow_int)
{
    char a[64];
    if (!t) return null_input(who, what);
    rt_dtype dt = rt_dtype_of(t);
    if (!is_float(dt) && !(allow_int && (dt == RT_I64 || dt == RT_I32)))
        return rt_set_error("%s: %s must be %s, got %s", who, what,
                            allow_int ? "int64 or float" : "float32/float64 (or bf16/f16, upcast)",
                            rt_dtype_name(dt)),
               RT_EINVAL;
    int nd = d1 < 0 ? 1 : 2;
    if (rt_ndim(t) != nd || rt_size(t, 0) != d0 || (nd == 2 && rt_size(t, 1) != d1)) {
        if (nd == 1)
            return rt_set_error("%s: %s must be [%lld], got %s", who, what, (long long)d0,
                                rt_shape_str(t, a, sizeof a)),
                   RT_EINVAL;
        return rt_set_error("%s: %s must be [%lld, %lld], got %s", who, what, (long long)d0, (long long)d1,
                            rt_shape_str(t, a, sizeof a)),
               RT_EINVAL;
    }
    return RT_OK;
}

static int check_mask(const char *who, const char *what, const rt_tensor *t, const rt_tensor *like)
{
    char a[64], b[64];
    if (!t) return null_input(who, what);
    if (rt_dtype_of(t) != RT_BOOL)
        return rt_set_error("%s: %s must be bool, got %s", who, what, rt_dtype_name(rt_dtype_of(t))), RT_EINVAL;
    int nd = rt_ndim(like);
    int same = rt_ndim(t) == nd;
    for (int i = 0; same && i < nd; i++) same = rt_size(t, i) == rt_size(like, i);
    if (!same)
        return rt_set_error("%s: %s has shape %s, expected %s", who, what, rt_shape_str(t, a, sizeof a),
                            rt_shape_str(like, b, sizeof b)),
               RT_EINVAL;
    return RT_OK;
}

/* float64 when any given tensor is float64, else float32 (the upcast floor). */
static rt_dtype compute_dtype(const rt_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++)
        if (ts[i] && rt_dtype_of(ts[i]) == RT_F64) return RT_F64;
    return RT_F32;
}

static rt_tensor *as_dt(rt_scope *W, const rt_tensor *t, rt_dtype dt)
{
    return rt_dtype_of(t) == dt ? rt_alias(W, t) : rt_to_dtype(W, t, dt);
}

/* A constant in the compute dtype (detached). */
static rt_tensor *const_dt(rt_scope *W, const rt_tensor *t, rt_dtype dt)
{
    return t ? rt_detach(W, as_dt(W, t, dt)) : NULL;
}

static double mean_item(rt_scope *W, const rt_tensor *t)
{
    rt_tensor *v = rt_mean(W, t, RT_DIM_ALL, 0);
    return v ? rt_item(v) : NAN;
}

static rt_tensor *sig(rt_scope *W, const rt_tensor *x) { return rt_sigmoid(W, x); }
static rt_tensor *logsig(rt_scope *W, const rt_tensor *x) { return rt_logsigmoid(W, x); }
static rt_tensor *nlogsig(rt_scope *W, const rt_tensor *x) { return rt_neg(W, rt_logsigmoid(W, x)); }

/* -(1-eps) logsig(x) - eps logsig(-x): the smoothed binary CE of aot, cDPO,
 * and ADPO's pairwise form. eps == 0 skips the second term (no 0 * inf). */
static rt_tensor *smoothed_bce(rt_scope *W, const rt_tensor *x, double eps)
{
    rt_tensor *a = rt_mul_scalar(W, nlogsig(W, x), 1.0 - eps);
    return eps == 0.0 ? a : rt_add_scaled(W, a, nlogsig(W, rt_neg(W, x)), eps);
}

/* ------------------------------------------------------------------------ */
/* DPO                                                                        */
/* ------------------------------------------------------------------------ */

typedef struct dpo_ctx {
    rt_scope *W;
    const dpo_config *cfg;
    rt_tensor *pc, *pr, *rc, *rr; /* [B] policy / reference log-probs (ref detached) */
    rt_tensor *r_w, *r_l;         /* [B] log-ratios                                   */
    rt_tensor *s_w, *s_l, *D;     /* [B] f-scores and their difference                */
    rt_tensor *len_c, *len_r;     /* [B] lengths clamped >= 1 (NULL when absent)      */
    rt_tensor *sft;               /* 0-dim, computed once                             */
} dpo_ctx;

/* f-divergence scores (TRL HEAD). The alpha-divergence exponent is clamped to
 * <= 80 as HEAD does for float32/bfloat16 (we never compute in float16);
 * |alpha - 1| < 1e-6 falls back to s = r [I: HEAD's "alpha ~ 1" test]. */
static rt_tensor *fscore(rt_scope *W, const dpo_config *c, const rt_tensor *r)
{
    switch ((dpo_f_divergence)c->f_divergence) {
    case DPO_FORWARD_KL: return rt_neg(W, rt_exp(W, rt_neg(W, r)));
    case DPO_JS_DIVERGENCE: return logsig(W, r);
    case DPO_ALPHA_DIVERGENCE: {
        double a1 = c->f_alpha_divergence_coef - 1.0;
        if (fabs(a1) < 1e-6) return rt_alias(W, r);
        rt_tensor *e = rt_clamp(W, rt_mul_scalar(W, r, a1), -INFINITY, 80.0);
        return rt_div_scalar(W, rt_exp(W, e), a1);
    }
    case DPO_REVERSE_KL:
    default: return rt_alias(W, r);
    }
}

/* Per-pair loss [B] of one type. */
static rt_tensor *dpo_term(dpo_ctx *k, dpo_loss_type t)
{
    rt_scope *W = k->W;
    const dpo_config *c = k->cfg;
    double beta = c->beta, eps = c->label_smoothing;
    rt_tensor *bD = rt_mul_scalar(W, k->D, beta);
    switch (t) {
    case DPO_SIGMOID: return c->cdpo ? smoothed_bce(W, bD, eps) : nlogsig(W, bD);
    case DPO_HINGE: return rt_relu(W, rt_rsub_scalar(W, bD, 1.0));
    case DPO_IPO: {
        rt_tensor *h = c->ipo_length_normalize
                           ? rt_sub(W, rt_div(W, k->s_w, k->len_c), rt_div(W, k->s_l, k->len_r))
                           : rt_sub(W, k->s_w, k->s_l);
        return rt_square(W, rt_add_scalar(W, h, -1.0 / (2.0 * beta)));
    }
    case DPO_EXO_PAIR: {
        /* sig(x) = exp(logsig(x)): a saturated side is an exact 0 times a
         * finite log, so neither the value nor the gradient can be NaN */
        rt_tensor *lp = logsig(W, bD), *lq = logsig(W, rt_neg(W, bD));
        rt_tensor *a = rt_mul(W, rt_exp(W, lp), rt_add_scalar(W, lp, -log1p(-eps)));
        rt_tensor *b = rt_mul(W, rt_exp(W, lq), rt_add_scalar(W, lq, -log(eps)));
        return rt_add(W, a, b);
    }
    case DPO_NCA_PAIR: {
        rt_tensor *bw = rt_mul_scalar(W, k->s_w, beta), *bl = rt_mul_scalar(W, k->s_l, beta);
        rt_tensor *a = rt_add_scaled(W, nlogsig(W, bw), nlogsig(W, rt_neg(W, bw)), 0.5);
        return rt_add_scaled(W, a, nlogsig(W, rt_neg(W, bl)), 0.5);
    }
    case DPO_ROBUST: {
        rt_tensor *a = rt_add_scaled(W, rt_mul_scalar(W, nlogsig(W, bD), 1.0 - eps), logsig(W, rt_neg(W, bD)),
                                     eps);
        return rt_div_scalar(W, a, 1.0 - 2.0 * eps);
    }
    case DPO_BCO_PAIR:
        return rt_add(W, nlogsig(W, rt_mul_scalar(W, k->s_w, beta)),
                      nlogsig(W, rt_mul_scalar(W, k->s_l, -beta)));
    case DPO_SPPO_HARD: {
        double half = 1.0 / (2.0 * beta);
        return rt_add(W, rt_square(W, rt_add_scalar(W, k->s_w, -half)),
                      rt_square(W, rt_add_scalar(W, k->s_l, half)));
    }
    case DPO_AOT:
    case DPO_AOT_UNPAIRED: {
        /* sorted ascending over the batch; the values carry the gradient */
        rt_tensor *x;
        if (t == DPO_AOT)
            x = rt_sub(W, rt_sort(W, rt_sub(W, k->pc, k->pr), 0, 0, NULL),
                       rt_sort(W, rt_sub(W, k->rc, k->rr), 0, 0, NULL));
        else
            x = rt_sub(W, rt_sort(W, k->r_w, 0, 0, NULL), rt_sort(W, k->r_l, 0, 0, NULL));
        return smoothed_bce(W, rt_mul_scalar(W, x, beta), eps);
    }
    case DPO_APO_ZERO:
        return rt_add(W, rt_rsub_scalar(W, sig(W, rt_mul_scalar(W, k->r_w, beta)), 1.0),
                      sig(W, rt_mul_scalar(W, k->r_l, beta)));
    case DPO_APO_DOWN:
        return rt_add(W, sig(W, rt_mul_scalar(W, k->r_w, beta)), rt_rsub_scalar(W, sig(W, bD), 1.0));
    case DPO_DISCOPOP: {
        /* (1-m)(-logsig(z)) + m exp(-z), m = sig(z/tau); m exp(-z) is taken as
         * exp(logsig(z/tau) - z), which stays finite where exp(-z) overflows */
        double tau = c->discopop_tau;
        rt_tensor *zt = rt_div_scalar(W, bD, tau);
        rt_tensor *a = rt_mul(W, sig(W, rt_neg(W, zt)), nlogsig(W, bD));
        rt_tensor *b = rt_exp(W, rt_sub(W, logsig(W, zt), bD));
        return rt_add(W, a, b);
    }
    case DPO_SIGMOID_NORM: {
        rt_tensor *h = rt_sub(W, rt_div(W, k->s_w, k->len_c), rt_div(W, k->s_l, k->len_r));
        return nlogsig(W, rt_mul_scalar(W, h, beta));
    }
    case DPO_SFT: return rt_add(W, rt_zeros_like(W, k->D), k->sft);
    case DPO_LOSS_INVALID:
    case DPO_LOSS_TYPE_COUNT: break;
    }
    return rt_set_error("dpo: loss type %d has no term", (int)t), NULL;
}

static const char *first_type_needing(const dpo_config *c, int need_rejected)
{
    for (int i = 0; i < c->n_types; i++) {
        int t = c->loss_type[i];
        if ((t == DPO_IPO && c->ipo_length_normalize) || t == DPO_SIGMOID_NORM || (!need_rejected && t == DPO_SFT))
            return dpo_loss_type_name((dpo_loss_type)t);
    }
    return NULL;
}

rt_tensor *dpo_loss(rt_scope *S, const dpo_config *cfg, const dpo_inputs *in, dpo_outputs *out,
                    dpo_metrics *m)
{
    static const char *who = "dpo_loss";
    if (m) {
        double *f = (double *)m;
        for (size_t i = 0; i < sizeof *m / sizeof(double); i++) f[i] = NAN;
    }
    if (out) memset(out, 0, sizeof *out);
    if (!in) return rt_set_error("dpo_loss: inputs are NULL"), NULL;
    if (dpo_config_check(cfg) != RT_OK) return NULL;
    if (!in->policy_chosen_logps) return null_input(who, "policy_chosen_logps"), NULL;
    int64_t B = rt_ndim(in->policy_chosen_logps) == 1 ? rt_size(in->policy_chosen_logps, 0) : -1;
    if (check_shape(who, "policy_chosen_logps", in->policy_chosen_logps, B, -1, 0) != RT_OK ||
        check_shape(who, "policy_rejected_logps", in->policy_rejected_logps, B, -1, 0) != RT_OK ||
        check_shape(who, "ref_chosen_logps", in->ref_chosen_logps, B, -1, 0) != RT_OK ||
        check_shape(who, "ref_rejected_logps", in->ref_rejected_logps, B, -1, 0) != RT_OK)
        return NULL;
    if (B < 1) return rt_set_error("dpo_loss: policy_chosen_logps is empty (B = 0)"), NULL;
    const char *need;
    if ((need = first_type_needing(cfg, 0)) && !in->chosen_lengths)
        return rt_set_error("dpo_loss: loss type %s needs chosen_lengths [%lld]", need, (long long)B), NULL;
    if ((need = first_type_needing(cfg, 1)) && !in->rejected_lengths)
        return rt_set_error("dpo_loss: loss type %s needs rejected_lengths [%lld]", need, (long long)B), NULL;
    if ((in->chosen_lengths && check_shape(who, "chosen_lengths", in->chosen_lengths, B, -1, 1) != RT_OK) ||
        (in->rejected_lengths && check_shape(who, "rejected_lengths", in->rejected_lengths, B, -1, 1) != RT_OK) ||
        (in->chosen_nll_logps && check_shape(who, "chosen_nll_logps", in->chosen_nll_logps, B, -1, 0) != RT_OK))
        return NULL;
    if (cfg->use_weighting) {
        if (!in->chosen_weights || !in->rejected_weights)
            return rt_set_error("dpo_loss: use_weighting (WPO) needs chosen_weights and rejected_weights [%lld] "
                                "(dpo_wpo_weights)",
                                (long long)B),
                   NULL;
        if (check_shape(who, "chosen_weights", in->chosen_weights, B, -1, 0) != RT_OK ||
            check_shape(who, "rejected_weights", in->rejected_weights, B, -1, 0) != RT_OK)
            return NULL;
    }

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("dpo_loss: cannot create a scope"), NULL;
    rt_tensor *loss = NULL;
    const rt_tensor *lp[4] = {in->policy_chosen_logps, in->policy_rejected_logps, in->ref_chosen_logps,
                              in->ref_rejected_logps};
    rt_dtype dt = compute_dtype(lp, 4);
    dpo_ctx k = {.W = W, .cfg = cfg};
    k.pc = as_dt(W, in->policy_chosen_logps, dt);
    k.pr = as_dt(W, in->policy_rejected_logps, dt);
    k.rc = const_dt(W, in->ref_chosen_logps, dt);
    k.rr = const_dt(W, in->ref_rejected_logps, dt);
    k.r_w = rt_sub(W, k.pc, k.rc);
    k.r_l = rt_sub(W, k.pr, k.rr);
    k.s_w = fscore(W, cfg, k.r_w);
    k.s_l = fscore(W, cfg, k.r_l);
    k.D = rt_sub(W, k.s_w, k.s_l);
    if (!k.D) goto done;
    rt_tensor *len_c_raw = const_dt(W, in->chosen_lengths, dt);
    if (in->chosen_lengths) k.len_c = rt_clamp(W, len_c_raw, 1.0, INFINITY);
    if (in->rejected_lengths) k.len_r = rt_clamp(W, const_dt(W, in->rejected_lengths, dt), 1.0, INFINITY);
    if (has_type(cfg, DPO_SFT)) {
        /* token-mean NLL over every chosen completion token of the batch */
        rt_tensor *nll_src = in->chosen_nll_logps ? as_dt(W, in->chosen_nll_logps, dt) : k.pc;
        rt_tensor *tokens = rt_clamp(W, rt_sum(W, len_c_raw, RT_DIM_ALL, 0), 1.0, INFINITY);
        k.sft = rt_neg(W, rt_div(W, rt_sum(W, nll_src, RT_DIM_ALL, 0), tokens));
        if (!k.sft) goto done;
    }
    rt_tensor *omega = NULL; /* [B] WPO pair weight, constant */
    if (cfg->use_weighting)
        omega = rt_mul(W, const_dt(W, in->chosen_weights, dt), const_dt(W, in->rejected_weights, dt));

    rt_tensor *per = NULL; /* [B] sum_k w_k omega l_k */
    for (int i = 0; i < cfg->n_types; i++) {
        rt_tensor *l = dpo_term(&k, (dpo_loss_type)cfg->loss_type[i]);
        if (omega) l = rt_mul(W, l, omega);
        double w = cfg->n_weights ? cfg->loss_weights[i] : 1.0;
        if (w != 1.0) l = rt_mul_scalar(W, l, w);
        per = per ? rt_add(W, per, l) : l;
        if (!per) goto done;
    }
    loss = rt_mean(W, per, RT_DIM_ALL, 0);
    if (!loss) goto done;

    if (out || m) {
        int g = rt_no_grad_begin();
        rt_tensor *cr = rt_detach(W, rt_mul_scalar(W, k.r_w, cfg->beta));
        rt_tensor *rr = rt_detach(W, rt_mul_scalar(W, k.r_l, cfg->beta));
        rt_tensor *pw = omega ? omega : rt_ones_like(W, k.D);
        if (m) {
            m->loss = rt_item(loss);
            m->rewards_chosen = mean_item(W, cr);
            m->rewards_rejected = mean_item(W, rr);
            m->rewards_accuracies = mean_item(W, rt_to_dtype(W, rt_compare(W, cr, RT_GT, rr), RT_F64));
            m->rewards_margins = mean_item(W, rt_sub(W, cr, rr));
            m->logps_chosen = mean_item(W, k.pc);
            m->logps_rejected = mean_item(W, k.pr);
            m->pair_weight = mean_item(W, pw);
            m->count = (double)B;
        }
        if (out) {
            out->losses = rt_move(rt_detach(W, per), S);
            out->chosen_rewards = rt_move(cr, S);
            out->rejected_rewards = rt_move(rr, S);
            out->pair_weights = rt_move(rt_detach(W, pw), S);
        }
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss, S);

done:
    rt_scope_free(W);
    return loss;
}

/* ------------------------------------------------------------------------ */
/* Sequence log-probs from per-token log-probs                                */
/* ------------------------------------------------------------------------ */

static int check_tokens(const char *who, const char *what, const rt_tensor *tok, const char *mwhat,
                        const rt_tensor *mask)
{
    char a[64];
    if (!tok) return null_input(who, what);
    if (rt_ndim(tok) != 2 || !is_float(rt_dtype_of(tok)))
        return rt_set_error("%s: %s must be a float [N,T] tensor, got %s %s", who, what,
                            rt_dtype_name(rt_dtype_of(tok)), rt_shape_str(tok, a, sizeof a)),
               RT_EINVAL;
    return check_mask(who, mwhat, mask, tok);
}

rt_tensor *dpo_sequence_logps(rt_scope *S, const rt_tensor *token_logps, const rt_tensor *mask)
{
    if (check_tokens("dpo_sequence_logps", "token_logps", token_logps, "mask", mask) != RT_OK) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("dpo_sequence_logps: cannot create a scope"), NULL;
    rt_tensor *r = rt_sum(W, rt_where_scalar(W, mask, token_logps, 0.0), 1, 0);
    r = rt_move(r, S);
    rt_scope_free(W);
    return r;
}

/* sum over mask of tok, with tokens past `shared` completion tokens scaled. */
static rt_tensor *ld_sum(rt_scope *W, const rt_tensor *tok, const rt_tensor *mask, const rt_tensor *shared,
                         double ld_alpha)
{
    rt_tensor *pos = rt_cumsum(W, rt_to_dtype(W, mask, RT_I64), 1);          /* [B,T] 1-based index */
    rt_tensor *head = rt_compare(W, pos, RT_LE, rt_unsqueeze(W, shared, 1)); /* [B,T] */
    rt_tensor *safe = rt_where_scalar(W, mask, tok, 0.0);
    rt_tensor *weighted = rt_where(W, head, safe, rt_mul_scalar(W, safe, ld_alpha));
    return rt_sum(W, weighted, 1, 0);
}

int dpo_ld_logps(rt_scope *S, const rt_tensor *chosen_token_logps, const rt_tensor *chosen_mask,
                 const rt_tensor *rejected_token_logps, const rt_tensor *rejected_mask, double ld_alpha,
                 rt_tensor **chosen_out, rt_tensor **rejected_out)
{
    static const char *who = "dpo_ld_logps";
    char a[64], b[64];
    if (!chosen_out || !rejected_out) return rt_set_error("dpo_ld_logps: NULL output pointer"), RT_EINVAL;
    *chosen_out = *rejected_out = NULL;
    if (!(ld_alpha >= 0.0 && ld_alpha <= 1.0))
        return rt_set_error("dpo_ld_logps: ld_alpha = %g is out of range [0, 1]", ld_alpha), RT_EINVAL;
    int rc = check_tokens(who, "chosen_token_logps", chosen_token_logps, "chosen_mask", chosen_mask);
    if (rc == RT_OK)
        rc = check_tokens(who, "rejected_token_logps", rejected_token_logps, "rejected_mask", rejected_mask);
    if (rc != RT_OK) return rc;
    if (rt_size(chosen_token_logps, 0) != rt_size(rejected_token_logps, 0))
        return rt_set_error("dpo_ld_logps: chosen_token_logps %s and rejected_token_logps %s disagree on B",
                            rt_shape_str(chosen_token_logps, a, sizeof a),
                            rt_shape_str(rejected_token_logps, b, sizeof b)),
               RT_EINVAL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("dpo_ld_logps: cannot create a scope"), RT_ERR;
    rt_tensor *lc = rt_sum(W, rt_to_dtype(W, chosen_mask, RT_I64), 1, 0);
    rt_tensor *lr = rt_sum(W, rt_to_dtype(W, rejected_mask, RT_I64), 1, 0);
    rt_tensor *shared = rt_minimum(W, lc, lr); /* [B] */
    rt_tensor *c = ld_sum(W, chosen_token_logps, chosen_mask, shared, ld_alpha);
    rt_tensor *r = ld_sum(W, rejected_token_logps, rejected_mask, shared, ld_alpha);
    rc = c && r ? RT_OK : RT_ERR;
    if (rc == RT_OK) {
        *chosen_out = rt_move(c, S);
        *rejected_out = rt_move(r, S);
    }
    rt_scope_free(W);
    return rc;
}

rt_tensor *dpo_wpo_weights(rt_scope *S, const rt_tensor *logits, const rt_tensor *labels, const rt_tensor *mask)
{
    static const char *who = "dpo_wpo_weights";
    char a[64], b[64];
    if (!logits) return null_input(who, "logits"), NULL;
    if (rt_ndim(logits) != 3 || !is_float(rt_dtype_of(logits)))
        return rt_set_error("%s: logits must be a float [N,T,V] tensor, got %s %s", who,
                            rt_dtype_name(rt_dtype_of(logits)), rt_shape_str(logits, a, sizeof a)),
               NULL;
    if (!labels) return null_input(who, "labels"), NULL;
    if (rt_dtype_of(labels) != RT_I64 || rt_ndim(labels) != 2 || rt_size(labels, 0) != rt_size(logits, 0) ||
        rt_size(labels, 1) != rt_size(logits, 1))
        return rt_set_error("%s: labels must be int64 [N,T] matching logits %s, got %s %s", who,
                            rt_shape_str(logits, a, sizeof a), rt_dtype_name(rt_dtype_of(labels)),
                            rt_shape_str(labels, b, sizeof b)),
               NULL;
    if (check_mask(who, "mask", mask, labels) != RT_OK) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", who), NULL;
    int g = rt_no_grad_begin();
    rt_dtype dt = rt_dtype_of(logits) == RT_F64 ? RT_F64 : RT_F32;
    rt_tensor *z = rt_detach(W, as_dt(W, logits, dt));
    rt_tensor *safe_y = rt_masked_fill(W, labels, rt_logical_not(W, mask), 0.0); /* -100 etc. -> 0 */
    rt_tensor *lse = rt_logsumexp(W, z, 2, 0);                                  /* [N,T] */
    rt_tensor *lse2 = rt_logsumexp(W, rt_mul_scalar(W, z, 2.0), 2, 0);
    rt_tensor *zy = rt_squeeze(W, rt_gather(W, z, 2, rt_unsqueeze(W, safe_y, 2)), 2);
    /* log p(y) - log sum p^2 = (zy - lse) - (lse2 - 2 lse) = zy + lse - lse2 */
    rt_tensor *at = rt_sub(W, rt_add(W, zy, lse), lse2);
    rt_tensor *num = rt_sum(W, rt_where_scalar(W, mask, at, 0.0), 1, 0);
    rt_tensor *cnt = rt_clamp(W, rt_sum(W, rt_to_dtype(W, mask, dt), 1, 0), 1.0, INFINITY);
    rt_tensor *w = rt_exp(W, rt_div(W, num, cnt));
    w = rt_move(w, S);
    rt_grad_mode_restore(g);
    rt_scope_free(W);
    return w;
}

/* ------------------------------------------------------------------------ */
/* S-DPO                                                                      */
/* ------------------------------------------------------------------------ */

static const dpo_setting sdpo_table[] = {
    {"beta", LSET_REAL, offsetof(dpo_sdpo_config, beta), 0.1, 1e-9, 1e6, NULL,
     "inverse temperature (S-DPO trainer default 0.1; the released script uses 1)"},
};

const dpo_setting *dpo_sdpo_settings(size_t *n)
{
    if (n) *n = COUNT(sdpo_table);
    return sdpo_table;
}

dpo_sdpo_config dpo_sdpo_config_default(void)
{
    dpo_sdpo_config c = {.beta = sdpo_table[0].def};
    return c;
}

int dpo_sdpo_config_set(dpo_sdpo_config *cfg, const char *name, const char *value)
{
    return dpo_settings_apply(cfg, sdpo_table, COUNT(sdpo_table), "sdpo", name, value);
}

#define SOFF(field) offsetof(dpo_sdpo_metrics, field)
static const dpo_metric_desc sdpo_metrics_table[] = {
    {"loss", SOFF(loss), "the loss returned"},
    {"rewards/chosen", SOFF(rewards_chosen), "mean beta * (logp_p - ref_p)"},
    {"rewards/rejected", SOFF(rewards_rejected), "mean beta * (logp_k - ref_k) over every negative"},
    {"rewards/accuracies", SOFF(rewards_accuracies), "fraction of examples whose chosen beats every negative"},
    {"rewards/margins", SOFF(rewards_margins), "mean chosen reward - negative reward over every negative"},
    {"logps/chosen", SOFF(logps_chosen), "mean policy chosen log-prob"},
    {"logps/rejected", SOFF(logps_rejected), "mean policy negative log-prob"},
    {"count", SOFF(count), "examples in the batch"},
};

const dpo_metric_desc *dpo_sdpo_metric_table(size_t *n)
{
    if (n) *n = COUNT(sdpo_metrics_table);
    return sdpo_metrics_table;
}

rt_tensor *dpo_sdpo_loss(rt_scope *S, const dpo_sdpo_config *cfg, const dpo_sdpo_inputs *in,
                         dpo_sdpo_outputs *out, dpo_sdpo_metrics *m)
{
    static const char *who = "dpo_sdpo_loss";
    if (m) {
        double *f = (double *)m;
        for (size_t i = 0; i < sizeof *m / sizeof(double); i++) f[i] = NAN;
    }
    if (out) memset(out, 0, sizeof *out);
    if (!in || !cfg) return rt_set_error("%s: inputs or config are NULL", who), NULL;
    if (!(cfg->beta >= sdpo_table[0].lo && cfg->beta <= sdpo_table[0].hi))
        return rt_set_error("%s: beta = %g is out of range [%g, %g]", who, cfg->beta, sdpo_table[0].lo,
                            sdpo_table[0].hi),
               NULL;
    if (!in->policy_chosen_logps) return null_input(who, "policy_chosen_logps"), NULL;
    if (!in->policy_rejected_logps) return null_input(who, "policy_rejected_logps"), NULL;
    int64_t B = rt_ndim(in->policy_chosen_logps) == 1 ? rt_size(in->policy_chosen_logps, 0) : -1;
    int64_t K = rt_ndim(in->policy_rejected_logps) == 2 ? rt_size(in->policy_rejected_logps, 1) : -1;
    if (check_shape(who, "policy_chosen_logps", in->policy_chosen_logps, B, -1, 0) != RT_OK ||
        check_shape(who, "policy_rejected_logps", in->policy_rejected_logps, B, K, 0) != RT_OK ||
        check_shape(who, "ref_chosen_logps", in->ref_chosen_logps, B, -1, 0) != RT_OK ||
        check_shape(who, "ref_rejected_logps", in->ref_rejected_logps, B, K, 0) != RT_OK ||
        (in->rejected_mask && check_mask(who, "rejected_mask", in->rejected_mask, in->policy_rejected_logps)))
        return NULL;
    if (B < 1 || K < 1)
        return rt_set_error("%s: empty batch (B = %lld, K = %lld)", who, (long long)B, (long long)K), NULL;

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", who), NULL;
    rt_tensor *loss = NULL;
    double beta = cfg->beta;
    const rt_tensor *lp[4] = {in->policy_chosen_logps, in->policy_rejected_logps, in->ref_chosen_logps,
                              in->ref_rejected_logps};
    rt_dtype dt = compute_dtype(lp, 4);
    rt_tensor *pc = as_dt(W, in->policy_chosen_logps, dt), *pr = as_dt(W, in->policy_rejected_logps, dt);
    rt_tensor *rp = rt_sub(W, pc, const_dt(W, in->ref_chosen_logps, dt));  /* [B]   */
    rt_tensor *rk = rt_sub(W, pr, const_dt(W, in->ref_rejected_logps, dt)); /* [B,K] */
    rt_tensor *x = rt_mul_scalar(W, rt_sub(W, rk, rt_unsqueeze(W, rp, 1)), beta); /* [B,K] */
    rt_tensor *present = in->rejected_mask ? rt_alias(W, in->rejected_mask) : NULL;
    rt_tensor *has = NULL; /* [B] rows with at least one negative */
    if (present) {
        /* absent negatives drop out of the logsumexp (-inf); a row with none
         * is evaluated on zeros and its loss selected away, so no NaN from
         * logsumexp over -inf only reaches the value or the gradient */
        has = rt_any(W, present, 1, 0);
        x = rt_where_scalar(W, present, x, -INFINITY);
        x = rt_where_scalar(W, rt_unsqueeze(W, has, 1), x, 0.0);
    }
    /* -logsig(-log sum exp x) = softplus(logsumexp x) */
    rt_tensor *per = nlogsig(W, rt_neg(W, rt_logsumexp(W, x, 1, 0))); /* [B] */
    if (has) per = rt_where_scalar(W, has, per, 0.0);
    loss = rt_mean(W, per, RT_DIM_ALL, 0);
    if (!loss) goto done;

    if (out || m) {
        int g = rt_no_grad_begin();
        rt_tensor *cr = rt_detach(W, rt_mul_scalar(W, rp, beta));
        rt_tensor *rr = rt_detach(W, rt_mul_scalar(W, rk, beta));
        if (m) {
            int64_t bk[2] = {B, K};
            rt_tensor *pres = present ? present : rt_ones(W, bk, 2, RT_OPTS(RT_BOOL));
            rt_tensor *npres = rt_sum(W, rt_to_dtype(W, pres, dt), RT_DIM_ALL, 0);
            double np = npres ? rt_item(npres) : NAN;
            rt_tensor *margin = rt_sub(W, rt_unsqueeze(W, cr, 1), rr); /* [B,K] */
            rt_tensor *wins = rt_logical_or(W, rt_compare_scalar(W, margin, RT_GT, 0.0), rt_logical_not(W, pres));
            rt_tensor *sum_rr = rt_sum(W, rt_where_scalar(W, pres, rr, 0.0), RT_DIM_ALL, 0);
            rt_tensor *sum_mg = rt_sum(W, rt_where_scalar(W, pres, margin, 0.0), RT_DIM_ALL, 0);
            rt_tensor *sum_lp = rt_sum(W, rt_where_scalar(W, pres, rt_detach(W, pr), 0.0), RT_DIM_ALL, 0);
            m->loss = rt_item(loss);
            m->rewards_chosen = mean_item(W, cr);
            m->rewards_rejected = sum_rr ? rt_item(sum_rr) / np : NAN;
            m->rewards_accuracies = mean_item(W, rt_to_dtype(W, rt_all(W, wins, 1, 0), RT_F64));
            m->rewards_margins = sum_mg ? rt_item(sum_mg) / np : NAN;
            m->logps_chosen = mean_item(W, pc);
            m->logps_rejected = sum_lp ? rt_item(sum_lp) / np : NAN;
            m->count = (double)B;
        }
        if (out) {
            out->losses = rt_move(rt_detach(W, per), S);
            out->chosen_rewards = rt_move(cr, S);
            out->rejected_rewards = rt_move(rr, S);
        }
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss, S);

done:
    rt_scope_free(W);
    return loss;
}
