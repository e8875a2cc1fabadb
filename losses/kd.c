/*
 * kd.c -- knowledge-distillation losses (see kd.h for the API and the
 * formulas; specs/pref_kd_losses.md section 5 for the references and the
 * worked numbers the tests reproduce).
 *
 * Layout: setting and metric tables, config helpers, small tensor helpers,
 * one function per kind computing its distillation term, and kd_loss() which
 * validates the inputs, adds the CE term and fills the metrics. Every tensor
 * made here lives in a private scope W; only the loss is moved to the
 * caller's scope. The per-kind functions return NULL on failure and keep the
 * shim's message (an op given NULL returns NULL), so they check once.
 */
#include "kd.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Setting tables: one per kind, defaults = the reference's                  */
/* ------------------------------------------------------------------------ */

static const char *const form_names[] = {"kl", "ce", NULL};
static const char *const reduction_names[] = {"batchmean", "sum", "mean", NULL};

#define OFF(field) offsetof(kd_config, field)
#define REAL(nm, field, d, lo, hi, help) {nm, LSET_REAL, OFF(field), d, lo, hi, NULL, help}
#define INT(nm, field, d, lo, hi, help) {nm, LSET_INT, OFF(field), d, lo, hi, NULL, help}
#define BOOL(nm, field, d, help) {nm, LSET_BOOL, OFF(field), d, 0, 1, NULL, help}
#define CHOICE(nm, field, d, ch, help) {nm, LSET_CHOICE, OFF(field), d, 0, 0, ch, help}

#define T_MIN 1e-6
#define T_MAX 1e6
#define W_MAX 1e6

#define S_TEMP(d, help) REAL("temperature", temperature, d, T_MIN, T_MAX, help)
#define S_CE(d, help) REAL("ce_weight", ce_weight, d, 0, W_MAX, help)
#define S_RED                                                                                      \
    CHOICE("reduction", reduction, KD_RED_BATCHMEAN, reduction_names,                              \
           "batchmean = sum / kept positions (TRL), sum, or mean = sum / kept elements")
#define S_IGNORE                                                                                   \
    INT("ignore_index", ignore_index, -100, -1e18, 1e18, "label value marking a dropped position")

static const kd_setting set_hinton[] = {
    S_TEMP(4.0, "softmax temperature T (mdistiller KD.TEMPERATURE)"),
    S_CE(0.1, "weight of CE(student, labels) (mdistiller KD.LOSS.CE_WEIGHT)"),
    REAL("kd_weight", kd_weight, 0.9, 0, W_MAX, "weight of the T^2-scaled KD term (KD.LOSS.KD_WEIGHT)"),
    CHOICE("form", form, KD_FORM_KL, form_names,
           "kl = T^2 KL(pt||ps) (mdistiller); ce = T^2 CE(pt,ps) (cls_KD: use ce_weight=kd_weight=0.5)"),
};

static const kd_setting set_lskd[] = {
    S_TEMP(2.0, "base temperature applied to the standardized logits (--base-temp)"),
    S_CE(0.1, "weight of CE on the raw student logits"),
    REAL("kd_weight", kd_weight, 9.0, 0, W_MAX, "weight of the KD term (--kd-weight)"),
    CHOICE("form", form, KD_FORM_KL, form_names, "kl (reference) or ce, as for hinton"),
};

static const kd_setting set_dkd[] = {
    S_TEMP(4.0, "softmax temperature T (DKD.T)"),
    S_CE(1.0, "weight of CE(student, labels) (DKD.CE_WEIGHT)"),
    REAL("alpha", alpha, 1.0, 0, W_MAX, "weight of TCKD, the target-vs-rest binary KL (DKD.ALPHA)"),
    REAL("beta", beta, 8.0, 0, W_MAX, "weight of NCKD, the KL among non-target classes (DKD.BETA)"),
    REAL("warmup", warmup, 20.0, 0, 1e9, "epochs until the KD term has full weight (DKD.WARMUP)"),
    REAL("epoch", epoch, -1.0, -1, 1e9,
         "current epoch (from 1); KD scaled by min(epoch/warmup,1); -1 = no warmup"),
    BOOL("standardize", standardize, 0, "logit standardization first (LSKD's DKD; alpha=9 beta=72 T=2)"),
};

static const kd_setting set_nkd[] = {
    S_TEMP(1.0, "temperature of the non-target term (temp)"),
    REAL("gamma", gamma, 1.5, 0, W_MAX, "weight of the non-target term (gamma)"),
    S_CE(1.0, "weight of the student's own CE (distiller.py keeps it at 1)"),
};

static const kd_setting set_pld[] = {
    S_TEMP(1.0, "teacher temperature tau of the list weights softmax(t/tau)"),
};

static const kd_setting set_dhkd[] = {
    S_TEMP(2.0, "temperature T of the binary KL"),
    S_CE(1.0, "gamma: weight of CE on the main head"),
    REAL("kd_weight", kd_weight, 1.0, 0, W_MAX,
         "alpha: weight of the binary KL on the aux head (0.1 on ImageNet)"),
    BOOL("norm", norm, 1, "1 = BinaryKLNorm, KL(0.5 || sigmoid((s-t)/T)); 0 = BinaryKL"),
};

static const kd_setting set_topk[] = {
    INT("k", k, 1, 0, 1e9, "support size: teacher top-k (beta=0), student top-k (beta=1), or their union"),
    BOOL("add_tail", add_tail, 1, "append the bucket log(1 - sum support p); 0 = renormalize on the support"),
    REAL("beta", beta, 1.0, 0, 1, "skew: 0 = forward KL, 1 = reverse KL, between = generalized JSD"),
    S_TEMP(1.0, "temperature applied to both models' logits"),
    S_RED,
    S_IGNORE,
    S_CE(0.0, "weight of CE(student, labels) over the kept positions (the reference has none)"),
};

static const kd_setting set_fkl[] = {
    S_TEMP(1.0, "temperature applied to both models' logits"),
    S_RED,
    S_IGNORE,
    S_CE(0.0, "weight of CE(student, labels) over the kept positions (the reference has none)"),
};

static const kd_setting set_jsd[] = {
    REAL("beta", beta, 0.5, 0, 1, "skew: 0 = forward KL, 1 = reverse KL (GKDConfig.beta)"),
    S_TEMP(1.0, "temperature applied to both models' logits"),
    S_RED,
    S_IGNORE,
    S_CE(0.0, "weight of CE(student, labels) over the kept positions (the reference has none)"),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
    const char *name;
    const kd_setting *settings;
    size_t n;
    const char *help;
} kinds[KD_KIND_COUNT] = {
    [KD_HINTON] = {"hinton", set_hinton, COUNT(set_hinton),
                   "Hinton KD: ce_weight*CE + kd_weight*T^2*KL, batchmean (mdistiller; cls_KD with form=ce)"},
    [KD_LSKD] = {"lskd", set_lskd, COUNT(set_lskd),
                 "logit-standardized KD (CVPR 2024): hinton on (z-mean)/(1e-7+std) of both models"},
    [KD_DKD] = {"dkd", set_dkd, COUNT(set_dkd),
                "decoupled KD (CVPR 2022): ce_weight*CE + warmup*(alpha*TCKD + beta*NCKD), sum/B"},
    [KD_NKD] = {"nkd", set_nkd, COUNT(set_nkd),
                "normalized KD (ICCV 2023): CE + target term + gamma*T^2 non-target CE (cls_KD)"},
    [KD_PLD] = {"pld", set_pld, COUNT(set_pld),
                "Plackett-Luce distillation (2025): teacher-weighted list loss, replaces CE + KD"},
    [KD_DHKD] = {"dhkd", set_dhkd, COUNT(set_dhkd),
                 "dual-head KD: CE on the main head + binary KL on the aux head, T^2*sum/N"},
    [KD_TOPK] = {"topk", set_topk, COUNT(set_topk),
                 "sparse top-k generalized JSD per position (TRL IW-OPD), label -100 rows dropped"},
    [KD_FKL] = {"fkl", set_fkl, COUNT(set_fkl),
                "forward KL(teacher||student) per position (TRL GKD beta=0), label -100 rows dropped"},
    [KD_RKL] = {"rkl", set_fkl, COUNT(set_fkl),
                "reverse KL(student||teacher) per position (TRL distillation beta=1)"},
    [KD_JSD] = {"jsd", set_jsd, COUNT(set_jsd),
                "generalized Jensen-Shannon per position (TRL GKD, beta=0.5)"},
};

static int kind_ok(kd_kind kind) { return (int)kind >= 0 && kind < KD_KIND_COUNT; }

static int is_token_kind(kd_kind kind)
{
    return kind == KD_TOPK || kind == KD_FKL || kind == KD_RKL || kind == KD_JSD;
}

const char *kd_kind_name(kd_kind kind) { return kind_ok(kind) ? kinds[kind].name : NULL; }

const char *kd_kind_help(kd_kind kind) { return kind_ok(kind) ? kinds[kind].help : NULL; }

kd_kind kd_kind_from_name(const char *name)
{
    if (name)
        for (int k = 0; k < KD_KIND_COUNT; k++)
            if (strcmp(name, kinds[k].name) == 0) return (kd_kind)k;
    return KD_KIND_INVALID;
}

const kd_setting *kd_settings(kd_kind kind, size_t *n)
{
    if (!kind_ok(kind)) {
        if (n) *n = 0;
        return NULL;
    }
    if (n) *n = kinds[kind].n;
    return kinds[kind].settings;
}

const kd_setting *kd_setting_find(kd_kind kind, const char *name)
{
    size_t n;
    const kd_setting *s = kd_settings(kind, &n);
    return lset_find(s, n, name);
}

kd_config kd_config_default(kd_kind kind)
{
    /* Fields a kind does not read still get harmless values, so a config
     * printed or copied between kinds never holds garbage. */
    kd_config c = {.kind = kind, .temperature = 1.0, .ce_weight = 0.0, .kd_weight = 1.0,
                   .form = KD_FORM_KL, .alpha = 1.0, .beta = 0.5, .gamma = 1.5, .warmup = 0.0,
                   .epoch = -1.0, .standardize = 0, .norm = 1, .k = 0, .add_tail = 1,
                   .reduction = KD_RED_BATCHMEAN, .ignore_index = -100};
    size_t n;
    const kd_setting *s = kd_settings(kind_ok(kind) ? kind : KD_HINTON, &n);
    lset_defaults(s, n, &c);
    return c;
}

/* "kd <kind>", the family named in setting messages. */
static const char *family_name(kd_kind kind, char *buf, size_t cap)
{
    snprintf(buf, cap, "kd %s", kinds[kind].name);
    return buf;
}

int kd_config_check(const kd_config *cfg)
{
    char fam[32];
    if (!cfg) return rt_set_error("kd: config is NULL"), RT_EINVAL;
    if (!kind_ok(cfg->kind))
        return rt_set_error("kd: unknown kind %d (valid 0..%d)", (int)cfg->kind, KD_KIND_COUNT - 1),
               RT_EINVAL;
    size_t n;
    const kd_setting *s = kd_settings(cfg->kind, &n);
    return lset_check(s, n, cfg, family_name(cfg->kind, fam, sizeof fam));
}

int kd_config_set(kd_config *cfg, const char *name, const char *value)
{
    char fam[32];
    if (!cfg || !name || !value) return rt_set_error("kd_config_set: NULL argument"), RT_EINVAL;
    if (!kind_ok(cfg->kind)) return rt_set_error("kd_config_set: unknown kind %d", (int)cfg->kind), RT_EINVAL;
    size_t n;
    const kd_setting *s = kd_settings(cfg->kind, &n);
    return lset_apply(s, n, cfg, family_name(cfg->kind, fam, sizeof fam), name, value);
}

const char *kd_setting_format(const kd_config *cfg, const kd_setting *s, char *buf, size_t cap)
{
    return lset_format(s, cfg, buf, cap);
}

/* ------------------------------------------------------------------------ */
/* Metric table                                                              */
/* ------------------------------------------------------------------------ */

#define K(kind) (1u << (kind))
#define ALL_KINDS ((1u << KD_KIND_COUNT) - 1u)
#define MOFF(field) offsetof(kd_metrics, field)

static const kd_metric_desc metric_table[] = {
    {"loss", MOFF(loss), ALL_KINDS, "the loss returned"},
    {"loss_ce", MOFF(loss_ce), ALL_KINDS & ~K(KD_PLD), "the CE term as added to the loss"},
    {"loss_kd", MOFF(loss_kd), ALL_KINDS, "the distillation term as added to the loss"},
    {"ce", MOFF(ce), ALL_KINDS, "CE(student, labels), unweighted"},
    {"kd", MOFF(kd), ALL_KINDS, "the distillation term before its weight"},
    {"tckd", MOFF(tckd), K(KD_DKD), "target-class KD (T^2 included), unweighted"},
    {"nckd", MOFF(nckd), K(KD_DKD), "non-target-class KD (T^2 included), unweighted"},
    {"warmup", MOFF(warmup), K(KD_DKD), "KD warmup factor min(epoch/warmup, 1)"},
    {"nkd_target", MOFF(nkd_target), K(KD_NKD), "NKD target term L_t"},
    {"nkd_nontarget", MOFF(nkd_nontarget), K(KD_NKD), "NKD non-target term (gamma*T^2 included)"},
    {"student_acc", MOFF(student_acc), ALL_KINDS, "student top-1 accuracy on the kept rows"},
    {"teacher_acc", MOFF(teacher_acc), ALL_KINDS, "teacher top-1 accuracy on the kept rows"},
    {"count", MOFF(count), ALL_KINDS, "rows that contributed"},
};

const kd_metric_desc *kd_metric_table(size_t *n)
{
    if (n) *n = COUNT(metric_table);
    return metric_table;
}

int kd_metric_applies(const kd_metric_desc *d, kd_kind kind)
{
    return d && kind_ok(kind) && (d->kinds & K(kind)) != 0;
}

double kd_metric_value(const kd_metrics *m, const kd_metric_desc *d)
{
    if (!m || !d) return NAN;
    return *(const double *)((const char *)m + d->offset);
}

/* ------------------------------------------------------------------------ */
/* Tensor helpers (all results owned by W)                                   */
/* ------------------------------------------------------------------------ */

/* x[b, idx[b]] for x [B,C], idx int64 [B] -> [B]. */
static rt_tensor *take_rows(rt_scope *W, const rt_tensor *x, const rt_tensor *idx)
{
    return rt_squeeze(W, rt_gather(W, x, 1, rt_unsqueeze(W, idx, 1)), 1);
}

/* log(exp(a) + exp(b)), stable, elementwise. */
static rt_tensor *logaddexp(rt_scope *W, const rt_tensor *a, const rt_tensor *b)
{
    rt_tensor *gap = rt_neg(W, rt_abs(W, rt_sub(W, a, b)));
    return rt_add(W, rt_maximum(W, a, b), rt_log1p(W, rt_exp(W, gap)));
}

/* Inclusive log-cumsum-exp along dim 1 of x [B,C] (libtorch's logcumsumexp
 * is not in the binding): a Hillis-Steele scan of log C logaddexp steps,
 * exact and overflow/underflow-free, differentiable. */
static rt_tensor *logcumsumexp_rows(rt_scope *W, rt_tensor *x, int64_t C)
{
    for (int64_t off = 1; x && off < C; off *= 2) {
        rt_tensor *head = rt_narrow(W, x, 1, 0, off);
        rt_tensor *upper = rt_narrow(W, x, 1, off, C - off);
        rt_tensor *lower = rt_narrow(W, x, 1, 0, C - off);
        rt_tensor *parts[2] = {head, logaddexp(W, upper, lower)};
        x = (parts[0] && parts[1]) ? rt_cat(W, parts, 2, 1) : NULL;
    }
    return x;
}

/* LSKD's normalize: (z - mean) / (1e-7 + std), std unbiased (C-1), per row.
 * std is taken through where() so a constant row (std 0) has a finite
 * gradient: sqrt is evaluated at 1 there and its branch is not selected. */
static rt_tensor *standardize(rt_scope *W, const rt_tensor *z, int64_t C)
{
    rt_tensor *d = rt_sub(W, z, rt_mean(W, z, 1, 1));                            /* [B,C] */
    rt_tensor *var = rt_div_scalar(W, rt_sum(W, rt_square(W, d), 1, 1), (double)(C - 1)); /* [B,1] */
    rt_tensor *pos = rt_compare_scalar(W, var, RT_GT, 0.0);
    rt_tensor *sd = rt_where_scalar(W, pos, rt_sqrt(W, rt_where_scalar(W, pos, var, 1.0)), 0.0);
    return rt_div(W, d, rt_add_scalar(W, sd, 1e-7));
}

/* log-softmax of x [B,C] over the columns where `drop` [B,C] is false
 * (values at dropped columns are finite but meaningless; select them away). */
static rt_tensor *log_softmax_without(rt_scope *W, const rt_tensor *x, const rt_tensor *drop)
{
    rt_tensor *lse = rt_logsumexp(W, rt_masked_fill(W, x, drop, -INFINITY), 1, 1); /* [B,1] */
    return rt_sub(W, x, lse);
}

/* Sum over rows of a per-row tensor [B] / denom, as a 0-dim tensor. */
static rt_tensor *sum_over(rt_scope *W, const rt_tensor *rows, double denom)
{
    return rt_div_scalar(W, rt_sum(W, rows, RT_DIM_ALL, 0), denom);
}

/* ------------------------------------------------------------------------ */
/* Per-kind distillation terms. s: student [B,C] (grad), t: teacher [B,C]    */
/* (detached), y: labels made safe to index [B], onehot: [B,C] bool.         */
/* ------------------------------------------------------------------------ */

typedef struct kd_ctx {
    rt_scope *W;
    const kd_config *cfg;
    const rt_tensor *s, *t, *y, *onehot, *keep; /* keep: [B] bool rows that count */
    int64_t B, C, kept;
    /* parts reported by some kinds (0-dim, in W) */
    rt_tensor *tckd, *nckd, *nkd_t, *nkd_non;
} kd_ctx;

/* Hinton (and LSKD after standardization): T^2 * mean_b sum_c pt (log pt - log ps)
 * (form kl) or T^2 * mean_b -sum_c pt log ps (form ce). */
static rt_tensor *term_hinton(kd_ctx *k, const rt_tensor *s, const rt_tensor *t)
{
    rt_scope *W = k->W;
    double T = k->cfg->temperature;
    rt_tensor *ls = rt_log_softmax(W, rt_div_scalar(W, s, T), 1);
    rt_tensor *lt = rt_log_softmax(W, rt_div_scalar(W, t, T), 1);
    rt_tensor *pt = rt_exp(W, lt);
    rt_tensor *inner = k->cfg->form == KD_FORM_CE ? rt_neg(W, ls) : rt_sub(W, lt, ls);
    rt_tensor *rows = rt_sum(W, rt_mul(W, pt, inner), 1, 0); /* [B] */
    return rt_mul_scalar(W, sum_over(W, rows, (double)k->B), T * T);
}

/* DKD: TCKD on the binary (target, rest) split, NCKD among the non-targets.
 * log(1 - p_y) is the logsumexp of the non-target log-probs (mdistiller takes
 * log of the summed probabilities; equal, without the log(0) at p_y -> 1). */
static rt_tensor *term_dkd(kd_ctx *k)
{
    rt_scope *W = k->W;
    const kd_config *c = k->cfg;
    const rt_tensor *s = k->s, *t = k->t;
    if (c->standardize) {
        s = standardize(W, s, k->C);
        t = standardize(W, t, k->C);
    }
    double T = c->temperature;
    rt_tensor *ls = rt_log_softmax(W, rt_div_scalar(W, s, T), 1);
    rt_tensor *lt = rt_log_softmax(W, rt_div_scalar(W, t, T), 1);
    rt_tensor *ls_y = take_rows(W, ls, k->y), *lt_y = take_rows(W, lt, k->y); /* [B] */
    rt_tensor *ls_rest = rt_logsumexp(W, rt_masked_fill(W, ls, k->onehot, -INFINITY), 1, 0);
    rt_tensor *lt_rest = rt_logsumexp(W, rt_masked_fill(W, lt, k->onehot, -INFINITY), 1, 0);
    rt_tensor *tc_rows = rt_add(W, rt_mul(W, rt_exp(W, lt_y), rt_sub(W, lt_y, ls_y)),
                                rt_mul(W, rt_exp(W, lt_rest), rt_sub(W, lt_rest, ls_rest)));
    /* non-target distributions: renormalize the log-probs on the rest */
    rt_tensor *ls2 = rt_sub(W, ls, rt_unsqueeze(W, ls_rest, 1));
    rt_tensor *lt2 = rt_sub(W, lt, rt_unsqueeze(W, lt_rest, 1));
    rt_tensor *nc_el = rt_mul(W, rt_exp(W, lt2), rt_sub(W, lt2, ls2));
    rt_tensor *nc_rows = rt_sum(W, rt_masked_fill(W, nc_el, k->onehot, 0.0), 1, 0);
    k->tckd = rt_mul_scalar(W, sum_over(W, tc_rows, (double)k->B), T * T);
    k->nckd = rt_mul_scalar(W, sum_over(W, nc_rows, (double)k->B), T * T);
    return rt_add_scaled(W, rt_mul_scalar(W, k->tckd, c->alpha), k->nckd, c->beta);
}

/* NKD: L_t = -mean(pt_y * log ps_y) (no temperature), L_non = -gamma T^2
 * mean sum_{c != y} softmax(t_rest/T) log softmax(s_rest/T). */
static rt_tensor *term_nkd(kd_ctx *k)
{
    rt_scope *W = k->W;
    double T = k->cfg->temperature;
    rt_tensor *ls_y = take_rows(W, rt_log_softmax(W, k->s, 1), k->y);
    rt_tensor *pt_y = take_rows(W, rt_softmax(W, k->t, 1), k->y);
    k->nkd_t = rt_neg(W, sum_over(W, rt_mul(W, pt_y, ls_y), (double)k->B));
    rt_tensor *ls2 = log_softmax_without(W, rt_div_scalar(W, k->s, T), k->onehot);
    rt_tensor *lt2 = log_softmax_without(W, rt_div_scalar(W, k->t, T), k->onehot);
    rt_tensor *el = rt_masked_fill(W, rt_mul(W, rt_exp(W, lt2), ls2), k->onehot, 0.0);
    rt_tensor *mean_rows = sum_over(W, rt_sum(W, el, 1, 0), (double)k->B);
    k->nkd_non = rt_mul_scalar(W, mean_rows, -k->cfg->gamma * T * T);
    return rt_add(W, k->nkd_t, k->nkd_non);
}

/* PLD: classes in ascending teacher order with the label last (the reference
 * code's order, the reverse of pi*); then the suffix logsumexp of pi* is the
 * prefix logcumsumexp of this order, and
 *   loss_b = sum_j alpha_j (logcumsumexp(s_asc)_j - s_asc_j),
 *   alpha = softmax(t/tau) gathered in the same order. Mean over b.
 * Ties in the teacher logits keep index order (stable sort). */
static rt_tensor *term_pld(kd_ctx *k)
{
    rt_scope *W = k->W;
    rt_tensor *order = NULL;
    rt_tensor *key = rt_masked_fill(W, k->t, k->onehot, INFINITY);
    rt_tensor *sorted = rt_sort(W, key, 1, 0, &order);
    if (!sorted) return NULL;
    rt_tensor *s_asc = rt_gather(W, k->s, 1, order);
    rt_tensor *a = rt_gather(W, rt_softmax(W, rt_div_scalar(W, k->t, k->cfg->temperature), 1), 1, order);
    rt_tensor *lcse = logcumsumexp_rows(W, s_asc, k->C);
    rt_tensor *rows = rt_sum(W, rt_mul(W, a, rt_sub(W, lcse, s_asc)), 1, 0);
    return sum_over(W, rows, (double)k->B);
}

/* DHKD: T^2/N * sum_{n,c} Bernoulli KL, with the reference's clamp of the
 * probabilities to [1e-8, 1-1e-8] applied to the log-probabilities instead
 * (log is monotone, so values and gradients agree; float32 no longer turns
 * 1-1e-8 into 1 and log(0) into -inf). log(1 - sigmoid(x)) = logsigmoid(-x). */
static rt_tensor *term_dhkd(kd_ctx *k, const rt_tensor *aux)
{
    rt_scope *W = k->W;
    double T = k->cfg->temperature;
    const double lo = log(1e-8), hi = log1p(-1e-8);
    rt_tensor *el;
    if (k->cfg->norm) {
        rt_tensor *x = rt_div_scalar(W, rt_sub(W, aux, k->t), T);
        rt_tensor *lp = rt_clamp(W, rt_logsigmoid(W, x), lo, hi);
        rt_tensor *lq = rt_clamp(W, rt_logsigmoid(W, rt_neg(W, x)), lo, hi);
        /* 0.5 (log 0.5 - lp) + 0.5 (log 0.5 - lq) */
        el = rt_add_scalar(W, rt_mul_scalar(W, rt_add(W, lp, lq), -0.5), log(0.5));
    } else {
        rt_tensor *xs = rt_div_scalar(W, aux, T), *xt = rt_div_scalar(W, k->t, T);
        rt_tensor *lps = rt_clamp(W, rt_logsigmoid(W, xs), lo, hi);
        rt_tensor *lqs = rt_clamp(W, rt_logsigmoid(W, rt_neg(W, xs)), lo, hi);
        rt_tensor *lpt = rt_clamp(W, rt_logsigmoid(W, xt), lo, hi);
        rt_tensor *lqt = rt_clamp(W, rt_logsigmoid(W, rt_neg(W, xt)), lo, hi);
        el = rt_add(W, rt_mul(W, rt_exp(W, lpt), rt_sub(W, lpt, lps)),
                    rt_mul(W, rt_exp(W, lqt), rt_sub(W, lqt, lqs)));
    }
    return rt_mul_scalar(W, rt_div_scalar(W, rt_sum(W, el, RT_DIM_ALL, 0), (double)k->B), T * T);
}

/* Elementwise generalized JSD of log-prob tensors (TRL's endpoints:
 * beta 0 = KL(t||s), beta 1 = KL(s||t); mixture by logsumexp). */
static rt_tensor *gjsd_elements(rt_scope *W, const rt_tensor *ls, const rt_tensor *lt, double beta)
{
    if (beta == 0.0) return rt_mul(W, rt_exp(W, lt), rt_sub(W, lt, ls));
    if (beta == 1.0) return rt_mul(W, rt_exp(W, ls), rt_sub(W, ls, lt));
    rt_tensor *m = logaddexp(W, rt_add_scalar(W, ls, log1p(-beta)), rt_add_scalar(W, lt, log(beta)));
    rt_tensor *kt = rt_mul(W, rt_exp(W, lt), rt_sub(W, lt, m));
    rt_tensor *ks = rt_mul(W, rt_exp(W, ls), rt_sub(W, ls, m));
    return rt_add_scaled(W, rt_mul_scalar(W, kt, beta), ks, 1.0 - beta);
}

/* Bool [B,C] with true at idx [B,k] (scatter on int64 zeros, then != 0). */
static rt_tensor *mark(rt_scope *W, rt_tensor *base_i64, const rt_tensor *idx)
{
    return rt_scatter(W, base_i64, 1, idx, rt_ones_like(W, idx));
}

/* Per-position divergence for fkl / rkl / jsd / topk, reduced like TRL. */
static rt_tensor *term_token(kd_ctx *k, double beta)
{
    rt_scope *W = k->W;
    const kd_config *c = k->cfg;
    double T = c->temperature;
    rt_tensor *zs = rt_div_scalar(W, k->s, T), *zt = rt_div_scalar(W, k->t, T);
    rt_tensor *ls = rt_log_softmax(W, zs, 1), *lt = rt_log_softmax(W, zt, 1);
    rt_tensor *support = NULL; /* [B,C'] bool, NULL = every column */
    double width = (double)k->C;
    if (k->cfg->kind == KD_TOPK && c->k > 0 && k->C > c->k) {
        int64_t shape[2] = {k->B, k->C};
        rt_tensor *marks = rt_zeros(W, shape, 2, RT_OPTS(RT_I64));
        rt_tensor *idx = NULL;
        if (beta != 1.0) { /* teacher's top-k (forward KL and the union) */
            if (!rt_topk(W, zt, c->k, 1, 1, &idx)) return NULL;
            marks = mark(W, marks, idx);
        }
        if (beta != 0.0) { /* student's top-k (reverse KL and the union) */
            if (!rt_topk(W, zs, c->k, 1, 1, &idx)) return NULL;
            marks = mark(W, marks, idx);
        }
        support = rt_compare_scalar(W, marks, RT_NE, 0.0);
        rt_tensor *outside = rt_logical_not(W, support);
        width = (double)((beta == 0.0 || beta == 1.0) ? c->k : 2 * c->k);
        if (c->add_tail) {
            /* tail bucket log(1 - sum_support p), the log-sum clamped <= -1e-7 */
            rt_tensor *lse_s = rt_logsumexp(W, rt_masked_fill(W, ls, outside, -INFINITY), 1, 1);
            rt_tensor *lse_t = rt_logsumexp(W, rt_masked_fill(W, lt, outside, -INFINITY), 1, 1);
            rt_tensor *tail_s = rt_log(W, rt_neg(W, rt_expm1(W, rt_clamp(W, lse_s, -INFINITY, -1e-7))));
            rt_tensor *tail_t = rt_log(W, rt_neg(W, rt_expm1(W, rt_clamp(W, lse_t, -INFINITY, -1e-7))));
            int64_t one[2] = {k->B, 1};
            rt_tensor *tail_on = rt_ones(W, one, 2, RT_OPTS(RT_BOOL));
            rt_tensor *ps[2] = {ls, tail_s}, *pt[2] = {lt, tail_t}, *pm[2] = {support, tail_on};
            ls = (ls && tail_s) ? rt_cat(W, ps, 2, 1) : NULL;
            lt = (lt && tail_t) ? rt_cat(W, pt, 2, 1) : NULL;
            support = (support && tail_on) ? rt_cat(W, pm, 2, 1) : NULL;
            width += 1.0;
        } else {
            ls = log_softmax_without(W, ls, outside);
            lt = log_softmax_without(W, lt, outside);
        }
    }
    rt_tensor *el = gjsd_elements(W, ls, lt, beta);
    if (support) el = rt_where_scalar(W, support, el, 0.0);
    rt_tensor *rows = rt_where_scalar(W, k->keep, rt_sum(W, el, 1, 0), 0.0); /* [B] */
    double kept = (double)k->kept;
    switch ((kd_reduction)c->reduction) {
    case KD_RED_SUM: return sum_over(W, rows, 1.0);
    case KD_RED_MEAN: return sum_over(W, rows, kept * width > 0 ? kept * width : 1.0);
    case KD_RED_BATCHMEAN:
    default: return sum_over(W, rows, kept > 0 ? kept : 1.0);
    }
}

/* ------------------------------------------------------------------------ */
/* Input checks                                                              */
/* ------------------------------------------------------------------------ */

static int null_input(const char *what)
{
    /* an op that produced this NULL already said why: keep its message */
    if (rt_last_error()[0] == '\0') rt_set_error("kd_loss: %s is NULL", what);
    return RT_EINVAL;
}

static int check_logits(const char *what, const rt_tensor *x, const rt_tensor *like)
{
    char a[64], b[64];
    if (!x) return null_input(what);
    rt_dtype dt = rt_dtype_of(x);
    if (rt_ndim(x) != 2)
        return rt_set_error("kd_loss: %s must be [B,C], got %s", what, rt_shape_str(x, a, sizeof a)),
               RT_EINVAL;
    if (dt != RT_F32 && dt != RT_F64)
        return rt_set_error("kd_loss: %s must be float32 or float64, got %s", what, rt_dtype_name(dt)),
               RT_EINVAL;
    if (like) {
        if (rt_size(x, 0) != rt_size(like, 0) || rt_size(x, 1) != rt_size(like, 1))
            return rt_set_error("kd_loss: %s has shape %s, expected %s like student_logits", what,
                                rt_shape_str(x, a, sizeof a), rt_shape_str(like, b, sizeof b)),
                   RT_EINVAL;
        if (dt != rt_dtype_of(like))
            return rt_set_error("kd_loss: %s is %s but student_logits is %s", what, rt_dtype_name(dt),
                                rt_dtype_name(rt_dtype_of(like))),
                   RT_EINVAL;
    }
    return RT_OK;
}

/* Copies the labels to the host, checks them, counts the kept rows. */
static int check_labels(const kd_config *cfg, const rt_tensor *labels, int64_t B, int64_t C, int64_t *kept)
{
    char a[64];
    if (!labels) return null_input("labels");
    if (rt_ndim(labels) != 1 || rt_size(labels, 0) != B)
        return rt_set_error("kd_loss: labels must be [%lld] (one per row of student_logits), got %s",
                            (long long)B, rt_shape_str(labels, a, sizeof a)),
               RT_EINVAL;
    if (rt_dtype_of(labels) != RT_I64)
        return rt_set_error("kd_loss: labels must be int64, got %s", rt_dtype_name(rt_dtype_of(labels))),
               RT_EINVAL;
    int64_t *host = malloc((size_t)B * sizeof *host);
    if (!host) return rt_set_error("kd_loss: out of memory copying %lld labels", (long long)B), RT_ERR;
    int rc = rt_to_data(labels, RT_I64, host, (size_t)B * sizeof *host);
    int token = is_token_kind(cfg->kind);
    *kept = 0;
    for (int64_t i = 0; rc == RT_OK && i < B; i++) {
        if (token && host[i] == cfg->ignore_index) continue;
        if (host[i] < 0 || host[i] >= C) {
            rc = rt_set_error("kd_loss: labels[%lld] = %lld is outside [0, %lld)%s", (long long)i,
                              (long long)host[i], (long long)C,
                              token ? " and is not ignore_index" : "");
            rc = RT_EINVAL;
        }
        (*kept)++;
    }
    free(host);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* kd_loss                                                                   */
/* ------------------------------------------------------------------------ */

static double item_or_nan(const rt_tensor *t) { return t ? rt_item(t) : NAN; }

/* Fraction of kept rows whose argmax equals the label (no grad). */
static double accuracy(kd_ctx *k, const rt_tensor *logits)
{
    rt_scope *W = k->W;
    if (k->kept == 0) return NAN;
    rt_tensor *hit = rt_compare(W, rt_argmax(W, logits, 1, 0), RT_EQ, k->y);
    hit = rt_logical_and(W, hit, k->keep);
    rt_tensor *n = rt_sum(W, rt_to_dtype(W, hit, RT_F64), RT_DIM_ALL, 0);
    return n ? rt_item(n) / (double)k->kept : NAN;
}

rt_tensor *kd_loss(rt_scope *S, const kd_config *cfg, const kd_inputs *in, kd_metrics *m)
{
    if (m) {
        double *f = (double *)m;
        for (size_t i = 0; i < sizeof *m / sizeof(double); i++) f[i] = NAN;
    }
    if (!in) return rt_set_error("kd_loss: inputs are NULL"), NULL;
    if (kd_config_check(cfg) != RT_OK) return NULL;
    const rt_tensor *aux = in->student_aux_logits ? in->student_aux_logits : in->student_logits;
    if (check_logits("student_logits", in->student_logits, NULL) != RT_OK ||
        check_logits("teacher_logits", in->teacher_logits, in->student_logits) != RT_OK ||
        (cfg->kind == KD_DHKD && check_logits("student_aux_logits", aux, in->student_logits) != RT_OK))
        return NULL;
    int64_t B = rt_size(in->student_logits, 0), C = rt_size(in->student_logits, 1);
    if (B < 1 || C < 1) return rt_set_error("kd_loss: student_logits is empty ([%lld, %lld])", (long long)B,
                                            (long long)C), NULL;
    if (C < 2 && (cfg->kind == KD_LSKD || cfg->kind == KD_DKD || cfg->kind == KD_NKD))
        return rt_set_error("kd_loss: kind %s needs at least 2 classes, student_logits is [%lld, 1]",
                            kd_kind_name(cfg->kind), (long long)B),
               NULL;
    int64_t kept = 0;
    if (check_labels(cfg, in->labels, B, C, &kept) != RT_OK) return NULL;

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("kd_loss: cannot create a scope"), NULL;
    rt_tensor *loss = NULL;
    kd_ctx k = {.W = W, .cfg = cfg, .s = in->student_logits, .B = B, .C = C, .kept = kept};

    /* rows that count, labels safe to index with, and the label mask */
    rt_tensor *keep = is_token_kind(cfg->kind)
                          ? rt_compare_scalar(W, in->labels, RT_NE, (double)cfg->ignore_index)
                          : rt_compare_scalar(W, in->labels, RT_GE, 0.0);
    rt_tensor *y = rt_masked_fill(W, in->labels, rt_logical_not(W, keep), 0.0);
    rt_tensor *cls = rt_unsqueeze(W, rt_arange(W, 0, (double)C, 1, RT_OPTS(RT_I64)), 0); /* [1,C] */
    k.t = rt_detach(W, in->teacher_logits);
    if (is_token_kind(cfg->kind)) {
        /* dropped rows are replaced by zeros before any math, so a NaN/inf
         * there reaches neither the loss nor (through log_softmax's backward)
         * the gradient: where() hands those rows an exact zero gradient */
        rt_tensor *keep2 = rt_unsqueeze(W, keep, 1);
        k.s = rt_where_scalar(W, keep2, k.s, 0.0);
        k.t = rt_where_scalar(W, keep2, k.t, 0.0);
    }
    k.keep = keep;
    k.y = y;
    k.onehot = rt_compare(W, cls, RT_EQ, rt_unsqueeze(W, y, 1)); /* [B,C] */
    if (!k.t || !k.keep || !k.y || !k.onehot) goto done;

    /* CE(student, labels) on the raw logits, mean over the kept rows */
    rt_tensor *ce_rows = rt_sub(W, rt_logsumexp(W, k.s, 1, 0), take_rows(W, k.s, y));
    rt_tensor *ce = sum_over(W, rt_where_scalar(W, keep, ce_rows, 0.0), kept > 0 ? (double)kept : 1.0);

    rt_tensor *kd = NULL;   /* unweighted distillation term */
    double kd_w = 1.0;      /* its weight in the loss       */
    double ce_w = cfg->ce_weight;
    double warm = NAN;
    switch (cfg->kind) {
    case KD_HINTON:
        kd = term_hinton(&k, k.s, k.t);
        kd_w = cfg->kd_weight;
        break;
    case KD_LSKD:
        kd = term_hinton(&k, standardize(W, k.s, C), standardize(W, k.t, C));
        kd_w = cfg->kd_weight;
        break;
    case KD_DKD:
        kd = term_dkd(&k);
        warm = cfg->epoch < 0 || cfg->warmup <= 0 ? 1.0 : fmin(cfg->epoch / cfg->warmup, 1.0);
        kd_w = warm;
        break;
    case KD_NKD: kd = term_nkd(&k); break;
    case KD_PLD:
        kd = term_pld(&k);
        ce_w = 0.0;
        break;
    case KD_DHKD:
        kd = term_dhkd(&k, aux);
        kd_w = cfg->kd_weight;
        break;
    case KD_TOPK: kd = term_token(&k, cfg->beta); break;
    case KD_FKL: kd = term_token(&k, 0.0); break;
    case KD_RKL: kd = term_token(&k, 1.0); break;
    case KD_JSD: kd = term_token(&k, cfg->beta); break;
    case KD_KIND_INVALID:
    case KD_KIND_COUNT: break; /* refused by kd_config_check */
    }
    if (!kd || !ce) goto done;

    rt_tensor *loss_kd = rt_mul_scalar(W, kd, kd_w);
    rt_tensor *loss_ce = ce_w != 0.0 ? rt_mul_scalar(W, ce, ce_w) : NULL;
    loss = loss_ce ? rt_add(W, loss_ce, loss_kd) : loss_kd;
    if (!loss) goto done;

    if (m) {
        int g = rt_no_grad_begin();
        m->loss = rt_item(loss);
        m->loss_ce = cfg->kind == KD_PLD ? NAN : (loss_ce ? rt_item(loss_ce) : 0.0);
        m->loss_kd = rt_item(loss_kd);
        m->ce = kept > 0 ? rt_item(ce) : NAN;
        m->kd = rt_item(kd);
        if (cfg->kind == KD_DKD) {
            m->tckd = item_or_nan(k.tckd);
            m->nckd = item_or_nan(k.nckd);
            m->warmup = warm;
        }
        if (cfg->kind == KD_NKD) {
            m->nkd_target = item_or_nan(k.nkd_t);
            m->nkd_nontarget = item_or_nan(k.nkd_non);
        }
        m->student_acc = accuracy(&k, k.s);
        m->teacher_acc = accuracy(&k, k.t);
        m->count = (double)kept;
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss, S);

done:
    rt_scope_free(W);
    return loss;
}
