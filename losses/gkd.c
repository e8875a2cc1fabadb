/*
 * gkd.c -- token-level distillation of sequence models: GKD (generalized
 * JSD, sparse top-k) and AlignDistil (see gkd.h for the API and formulas;
 * specs/pref_kd_losses.md 5.8-5.10 for the references and worked numbers).
 *
 * Layout: setting and metric tables, the [B,T,V] input checks and the row
 * selection both losses share, gkd_loss (which hands the kept rows to kd.c's
 * per-token kinds), then gkd_aligndistil_loss. Every tensor made while
 * evaluating lives in a private scope W; only the results move to the
 * caller's scope. Ops given NULL return NULL and keep the first message, so
 * each block is checked once.
 */
#include "gkd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define REAL(cfgt, nm, field, d, lo, hi, help) {nm, LSET_REAL, offsetof(cfgt, field), d, lo, hi, NULL, help}
#define REAL_OPT(cfgt, nm, field, lo, hi, help) {nm, LSET_REAL_OPT, offsetof(cfgt, field), NAN, lo, hi, NULL, help}
#define INT(cfgt, nm, field, d, lo, hi, help) {nm, LSET_INT, offsetof(cfgt, field), d, lo, hi, NULL, help}
#define BOOL(cfgt, nm, field, d, help) {nm, LSET_BOOL, offsetof(cfgt, field), d, 0, 1, NULL, help}
#define CHOICE(cfgt, nm, field, d, ch, help) {nm, LSET_CHOICE, offsetof(cfgt, field), d, 0, 0, ch, help}
#define METRIC(mt, nm, field, help) {nm, offsetof(mt, field), help}

#define T_MIN 1e-6
#define T_MAX 1e6
#define W_MAX 1e6
/* AlignDistil's floor on the adaptive weight (the reference's + 1e-3). */
#define ALD_WEIGHT_FLOOR 1e-3

const char *gkd_setting_format(const void *cfg, const gkd_setting *s, char *buf, size_t cap)
{
    return lset_format(s, cfg, buf, cap);
}

double gkd_metric_value(const void *m, const gkd_metric *d)
{
    if (!m || !d) return NAN;
    return *(const double *)((const char *)m + d->offset);
}

static void metrics_nan(void *m, size_t size)
{
    double *f = (double *)m;
    for (size_t i = 0; m && i < size / sizeof(double); i++) f[i] = NAN;
}

/* ------------------------------------------------------------------------ */
/* GKD settings and metrics                                                  */
/* ------------------------------------------------------------------------ */

static const char *const gkd_preset_names[] = {"gkd", "distillation", "iw_opd", NULL};
static const char *const gkd_reduction_names[] = {"batchmean", "sum", "mean", NULL};

static const gkd_setting gkd_table[] = {
    CHOICE(gkd_config, "preset", preset, GKD_PRESET_GKD, gkd_preset_names,
           "defaults of: gkd (TRL GKD, beta 0.5), distillation (beta 1), iw_opd (beta 1, top_k 1); "
           "resets the others, so give it first"),
    REAL(gkd_config, "beta", beta, 0.5, 0, 1, "skew: 0 = forward KL(teacher||student), 1 = reverse KL"),
    REAL(gkd_config, "temperature", temperature, 1.0, T_MIN, T_MAX,
         "both models' logits are divided by it (TRL GKD calls the loss with 1.0)"),
    CHOICE(gkd_config, "reduction", reduction, KD_RED_BATCHMEAN, gkd_reduction_names,
           "batchmean = sum / kept positions (TRL), sum, or mean = sum / (kept positions * support)"),
    INT(gkd_config, "top_k", top_k, 0, 0, 1e9,
        "sparse support: teacher top-k (beta 0), student top-k (beta 1), their union; 0 = full vocabulary"),
    BOOL(gkd_config, "add_tail", add_tail, 1,
         "top_k: append the bucket log(1 - sum support p); 0 = renormalize on the support"),
    REAL_OPT(gkd_config, "num_items", num_items, 1e-9, 1e18,
             "none, or divide the sum by this token count (TRL num_items_in_batch); overrides reduction"),
};

const gkd_setting *gkd_settings(size_t *n)
{
    if (n) *n = COUNT(gkd_table);
    return gkd_table;
}

gkd_config gkd_config_preset(gkd_preset preset)
{
    gkd_config c;
    memset(&c, 0, sizeof c);
    lset_defaults(gkd_table, COUNT(gkd_table), &c);
    if (preset == GKD_PRESET_DISTILLATION) {
        c.preset = GKD_PRESET_DISTILLATION;
        c.beta = 1.0;
    } else if (preset == GKD_PRESET_IW_OPD) {
        c.preset = GKD_PRESET_IW_OPD;
        c.beta = 1.0;
        c.top_k = 1;
        c.add_tail = 1;
    }
    return c;
}

gkd_config gkd_config_default(void) { return gkd_config_preset(GKD_PRESET_GKD); }

int gkd_config_check(const gkd_config *cfg)
{
    if (!cfg) return rt_set_error("gkd: config is NULL"), RT_EINVAL;
    return lset_check(gkd_table, COUNT(gkd_table), cfg, "gkd");
}

int gkd_config_set(gkd_config *cfg, const char *name, const char *value)
{
    if (!cfg || !name || !value) return rt_set_error("gkd_config_set: NULL argument"), RT_EINVAL;
    int rc = lset_apply(gkd_table, COUNT(gkd_table), cfg, "gkd", name, value);
    if (rc == RT_OK && strcmp(name, "preset") == 0) *cfg = gkd_config_preset((gkd_preset)cfg->preset);
    return rc;
}

static const gkd_metric gkd_metrics_table[] = {
    METRIC(gkd_metrics, "loss", loss, "the loss returned"),
    METRIC(gkd_metrics, "tokens", tokens, "kept positions (mask sum)"),
    METRIC(gkd_metrics, "agreement", agreement, "fraction of kept positions where student and teacher argmax agree"),
};

const gkd_metric *gkd_metric_table(size_t *n)
{
    if (n) *n = COUNT(gkd_metrics_table);
    return gkd_metrics_table;
}

/* ------------------------------------------------------------------------ */
/* AlignDistil settings and metrics                                          */
/* ------------------------------------------------------------------------ */

static const char *const ald_form_names[] = {"aligndistil", "theorem1", "theorem1_contrast", "theorem1_adaptive",
                                             NULL};

static const gkd_setting ald_table[] = {
    CHOICE(gkd_aligndistil_config, "form", form, GKD_ALIGNDISTIL, ald_form_names,
           "reward_boost_type: aligndistil (token-adaptive contrastive), theorem1, theorem1_contrast, "
           "theorem1_adaptive"),
    REAL(gkd_aligndistil_config, "beta", beta, 1.0, 0, W_MAX, "DPO beta of the reward (--beta; runs use 0.1)"),
    REAL(gkd_aligndistil_config, "beta2", beta2, 1.0, 0, W_MAX,
         "--beta2: w_t = beta2*TVD_t + 1e-3 (runs: 10 off-policy, 15 on-policy)"),
    REAL(gkd_aligndistil_config, "kd_temperature", kd_temperature, 1.0, T_MIN, T_MAX,
         "the extrapolated teacher logits are divided by it (the student's are not)"),
    BOOL(gkd_aligndistil_config, "length_norm", length_norm, 0,
         "--reward_len_norm: divide each sequence's sum by its token count (released scripts: 1)"),
};

const gkd_setting *gkd_aligndistil_settings(size_t *n)
{
    if (n) *n = COUNT(ald_table);
    return ald_table;
}

gkd_aligndistil_config gkd_aligndistil_config_default(void)
{
    gkd_aligndistil_config c;
    memset(&c, 0, sizeof c);
    lset_defaults(ald_table, COUNT(ald_table), &c);
    return c;
}

static int ald_adaptive(int form) { return form == GKD_ALIGNDISTIL || form == GKD_THEOREM1_ADAPTIVE; }

int gkd_aligndistil_config_check(const gkd_aligndistil_config *cfg)
{
    if (!cfg) return rt_set_error("aligndistil: config is NULL"), RT_EINVAL;
    int rc = lset_check(ald_table, COUNT(ald_table), cfg, "aligndistil");
    if (rc != RT_OK) return rc;
    if (!ald_adaptive(cfg->form) && !(cfg->beta2 > 0))
        return rt_set_error("aligndistil: form %s weights the teacher by beta/beta2, so beta2 must be > 0 (got %g)",
                            ald_form_names[cfg->form], cfg->beta2),
               RT_EINVAL;
    return RT_OK;
}

int gkd_aligndistil_config_set(gkd_aligndistil_config *cfg, const char *name, const char *value)
{
    if (!cfg || !name || !value) return rt_set_error("gkd_aligndistil_config_set: NULL argument"), RT_EINVAL;
    return lset_apply(ald_table, COUNT(ald_table), cfg, "aligndistil", name, value);
}

static const gkd_metric ald_metrics_table[] = {
    METRIC(gkd_aligndistil_metrics, "loss", loss, "rlhf_loss: the loss returned"),
    METRIC(gkd_aligndistil_metrics, "mean_weight", mean_weight,
           "per-sequence mean of the extrapolation weight w_t, mean over sequences"),
    METRIC(gkd_aligndistil_metrics, "expected_reward", expected_reward,
           "sum_t E_student[beta (log p_dpo - log p_rev)], mean over sequences"),
    METRIC(gkd_aligndistil_metrics, "dpo_model_expected_reward", dpo_model_expected_reward,
           "the same expectation under the DPO model"),
    METRIC(gkd_aligndistil_metrics, "seq_init_kl", seq_init_kl, "sum_t KL(student || rev), mean over sequences"),
    METRIC(gkd_aligndistil_metrics, "token_init_kl", token_init_kl,
           "mean_t KL(student || rev), mean over sequences"),
    METRIC(gkd_aligndistil_metrics, "seq_tea_kl", seq_tea_kl, "sum_t KL(student || dpo), mean over sequences"),
    METRIC(gkd_aligndistil_metrics, "token_tea_kl", token_tea_kl, "mean_t KL(student || dpo), mean over sequences"),
    METRIC(gkd_aligndistil_metrics, "tokens", tokens, "kept positions (mask sum)"),
};

const gkd_metric *gkd_aligndistil_metric_table(size_t *n)
{
    if (n) *n = COUNT(ald_metrics_table);
    return ald_metrics_table;
}

/* ------------------------------------------------------------------------ */
/* Input checks and the row selection                                        */
/* ------------------------------------------------------------------------ */

static int null_input(const char *fn, const char *what)
{
    /* an op that produced this NULL already said why: keep its message */
    if (rt_last_error()[0] == '\0') rt_set_error("%s: %s is NULL", fn, what);
    return RT_EINVAL;
}

/* A float [B,T,V] logits tensor; like == NULL: this one fixes shape and dtype. */
static int check_logits(const char *fn, const char *what, const rt_tensor *x, const rt_tensor *like)
{
    char a[64], b[64];
    if (!x) return null_input(fn, what);
    if (rt_ndim(x) != 3)
        return rt_set_error("%s: %s must be [B,T,V], got %s", fn, what, rt_shape_str(x, a, sizeof a)), RT_EINVAL;
    rt_dtype dt = rt_dtype_of(x);
    if (!like) {
        if (dt != RT_F32 && dt != RT_F64)
            return rt_set_error("%s: %s must be float32 or float64, got %s", fn, what, rt_dtype_name(dt)), RT_EINVAL;
        if (rt_size(x, 0) < 1 || rt_size(x, 1) < 1 || rt_size(x, 2) < 1)
            return rt_set_error("%s: %s is empty (%s); B, T and V must be >= 1", fn, what,
                                rt_shape_str(x, a, sizeof a)),
                   RT_EINVAL;
        return RT_OK;
    }
    for (int d = 0; d < 3; d++)
        if (rt_size(x, d) != rt_size(like, d))
            return rt_set_error("%s: %s has shape %s, expected %s like student_logits", fn, what,
                                rt_shape_str(x, a, sizeof a), rt_shape_str(like, b, sizeof b)),
                   RT_EINVAL;
    if (dt != rt_dtype_of(like))
        return rt_set_error("%s: %s is %s but student_logits is %s", fn, what, rt_dtype_name(dt),
                            rt_dtype_name(rt_dtype_of(like))),
               RT_EINVAL;
    return RT_OK;
}

/* The kept positions of a [B,T] mask: flat row indices into the [B*T,V]
 * view, the sequence of each kept row, and each sequence's token count. */
typedef struct gkd_rows {
    int64_t B, T, V, n; /* n = kept positions                         */
    rt_tensor *idx;     /* int64 [n]: b*T + t of each kept position   */
    rt_tensor *seq;     /* int64 [n]: b of each kept position          */
    double *count;      /* [B] kept positions per sequence (host)      */
} gkd_rows;

static void rows_free(gkd_rows *r) { free(r->count); }

/* Reads the mask on the host (one copy of B*T values), checks it holds only
 * 0 and 1, and builds the index tensors in W. */
static int rows_from_mask(rt_scope *W, const char *fn, const rt_tensor *mask, const rt_tensor *logits, gkd_rows *r)
{
    char a[64], b[64];
    memset(r, 0, sizeof *r);
    if (!mask) return null_input(fn, "mask");
    r->B = rt_size(logits, 0);
    r->T = rt_size(logits, 1);
    r->V = rt_size(logits, 2);
    if (rt_ndim(mask) != 2 || rt_size(mask, 0) != r->B || rt_size(mask, 1) != r->T)
        return rt_set_error("%s: mask must be [B,T] = [%lld, %lld] like student_logits %s, got %s", fn,
                            (long long)r->B, (long long)r->T, rt_shape_str(logits, b, sizeof b),
                            rt_shape_str(mask, a, sizeof a)),
               RT_EINVAL;
    size_t bt = (size_t)(r->B * r->T);
    double *host = malloc((bt ? bt : 1) * sizeof *host);
    int64_t *idx = malloc((bt ? bt : 1) * sizeof *idx);
    int64_t *seq = malloc((bt ? bt : 1) * sizeof *seq);
    r->count = calloc(r->B > 0 ? (size_t)r->B : 1, sizeof *r->count);
    int rc = RT_OK;
    if (!host || !idx || !seq || !r->count) {
        rt_set_error("%s: out of memory reading a mask of %zu positions", fn, bt);
        rc = RT_ERR;
        goto done;
    }
    if (bt > 0 && rt_to_data(mask, RT_F64, host, bt * sizeof *host) != RT_OK) {
        rc = RT_EINVAL;
        goto done;
    }
    for (int64_t i = 0; i < (int64_t)bt; i++) {
        if (host[i] == 0.0) continue;
        if (host[i] != 1.0) {
            rt_set_error("%s: mask[%lld][%lld] = %g; a mask holds 0 (dropped) or 1 (kept)", fn,
                         (long long)(i / r->T), (long long)(i % r->T), host[i]);
            rc = RT_EINVAL;
            goto done;
        }
        idx[r->n] = i;
        seq[r->n] = i / r->T;
        r->count[i / r->T] += 1.0;
        r->n++;
    }
    int64_t shape[1] = {r->n};
    r->idx = rt_from_data(W, idx, shape, 1, RT_OPTS(RT_I64));
    r->seq = rt_from_data(W, seq, shape, 1, RT_OPTS(RT_I64));
    if (!r->idx || !r->seq) rc = RT_ERR;
done:
    free(host);
    free(idx);
    free(seq);
    if (rc != RT_OK) rows_free(r);
    return rc;
}

/* The kept rows of x [B,T,V] -> [n,V]. Selection, not masking: the dropped
 * rows take no part in any later op, and index_select's backward writes
 * exact zeros into them. */
static rt_tensor *kept_rows(rt_scope *W, const rt_tensor *x, const gkd_rows *r)
{
    int64_t flat[2] = {r->B * r->T, r->V};
    return rt_index_select(W, rt_reshape(W, x, flat, 2), 0, r->idx);
}

/* Per-row values [n] -> their per-sequence sums [B]. */
static rt_tensor *seq_sums(rt_scope *W, const rt_tensor *rows, const gkd_rows *r)
{
    int64_t shape[1] = {r->B};
    rt_tensor *zero = rt_zeros(W, shape, 1, RT_OPTS(rows ? rt_dtype_of(rows) : RT_F64));
    return rt_scatter_add(W, zero, 0, r->seq, rows);
}

/* Per-row values [n] -> [B,T] with zeros at the dropped positions. */
static rt_tensor *spread(rt_scope *W, const rt_tensor *rows, const gkd_rows *r)
{
    int64_t flat[1] = {r->B * r->T}, bt[2] = {r->B, r->T};
    rt_tensor *zero = rt_zeros(W, flat, 1, RT_OPTS(rows ? rt_dtype_of(rows) : RT_F64));
    return rt_reshape(W, rt_scatter(W, zero, 0, r->idx, rows), bt, 2);
}

/* ------------------------------------------------------------------------ */
/* GKD                                                                       */
/* ------------------------------------------------------------------------ */

rt_tensor *gkd_loss(rt_scope *S, const gkd_config *cfg, const gkd_inputs *in, gkd_metrics *m)
{
    static const char fn[] = "gkd_loss";
    metrics_nan(m, sizeof *m);
    if (!in) return rt_set_error("%s: inputs are NULL", fn), NULL;
    if (gkd_config_check(cfg) != RT_OK) return NULL;
    if (check_logits(fn, "student_logits", in->student_logits, NULL) != RT_OK ||
        check_logits(fn, "teacher_logits", in->teacher_logits, in->student_logits) != RT_OK)
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *loss = NULL;
    gkd_rows r;
    if (rows_from_mask(W, fn, in->mask, in->student_logits, &r) != RT_OK) goto done_scope;

    rt_tensor *s = kept_rows(W, in->student_logits, &r);                   /* [n,V] */
    rt_tensor *t = kept_rows(W, rt_detach(W, in->teacher_logits), &r);     /* [n,V] */
    if (!s || !t) goto done;
    double agreement = NAN;
    if (r.n == 0) {
        /* nothing kept: an exact 0 that still reaches the student's graph */
        loss = rt_sum(W, s, RT_DIM_ALL, 0);
    } else {
        kd_config kc = kd_config_default(cfg->top_k > 0 ? KD_TOPK : KD_JSD);
        kc.beta = cfg->beta;
        kc.temperature = cfg->temperature;
        kc.reduction = isnan(cfg->num_items) ? cfg->reduction : KD_RED_SUM;
        kc.k = cfg->top_k;
        kc.add_tail = cfg->add_tail;
        kc.ce_weight = 0.0;
        /* labels = the teacher's argmax: kd.c's student_acc then measures
         * student/teacher agreement, and no row is ignored */
        int g = rt_no_grad_begin();
        rt_tensor *labels = rt_argmax(W, t, 1, 0);
        rt_grad_mode_restore(g);
        kd_inputs ki = {.student_logits = s, .teacher_logits = t, .labels = labels, .student_aux_logits = NULL};
        kd_metrics km;
        loss = labels ? kd_loss(W, &kc, &ki, &km) : NULL;
        if (!loss) goto done;
        if (!isnan(cfg->num_items)) loss = rt_div_scalar(W, loss, cfg->num_items);
        agreement = km.student_acc;
    }
    if (!loss) goto done;
    if (m) {
        m->loss = rt_item(loss);
        m->tokens = (double)r.n;
        m->agreement = agreement;
    }
    loss = rt_move(loss, S);
done:
    rows_free(&r);
done_scope:
    rt_scope_free(W);
    return loss;
}

/* ------------------------------------------------------------------------ */
/* AlignDistil                                                               */
/* ------------------------------------------------------------------------ */

/* sum_v p (lp - lq) per row: KL(p || q) from log-probs [n,V] -> [n]. */
static rt_tensor *kl_rows(rt_scope *W, const rt_tensor *p, const rt_tensor *lp, const rt_tensor *lq)
{
    return rt_sum(W, rt_mul(W, p, rt_sub(W, lp, lq)), 1, 0);
}

/* Host value of mean_B(sum_seq(rows)) and of mean_B(sum_seq(rows) / count). */
static void seq_and_token_means(rt_scope *W, const rt_tensor *rows, const gkd_rows *r, const rt_tensor *count,
                                double *seq_mean, double *token_mean)
{
    rt_tensor *sums = seq_sums(W, rows, r);
    if (seq_mean) *seq_mean = sums ? rt_item(rt_mean(W, sums, RT_DIM_ALL, 0)) : NAN;
    if (token_mean) *token_mean = sums ? rt_item(rt_mean(W, rt_div(W, sums, count), RT_DIM_ALL, 0)) : NAN;
}

rt_tensor *gkd_aligndistil_loss(rt_scope *S, const gkd_aligndistil_config *cfg, const gkd_aligndistil_inputs *in,
                                gkd_aligndistil_metrics *m, rt_tensor **token_losses, rt_tensor **weights)
{
    static const char fn[] = "gkd_aligndistil_loss";
    metrics_nan(m, sizeof *m);
    if (token_losses) *token_losses = NULL;
    if (weights) *weights = NULL;
    if (!in) return rt_set_error("%s: inputs are NULL", fn), NULL;
    if (gkd_aligndistil_config_check(cfg) != RT_OK) return NULL;
    if (check_logits(fn, "student_logits", in->student_logits, NULL) != RT_OK ||
        check_logits(fn, "dpo_logits", in->dpo_logits, in->student_logits) != RT_OK ||
        check_logits(fn, "rev_logits", in->rev_logits, in->student_logits) != RT_OK)
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *loss = NULL;
    gkd_rows r;
    if (rows_from_mask(W, fn, in->mask, in->student_logits, &r) != RT_OK) goto done_scope;
    rt_dtype dt = rt_dtype_of(in->student_logits);
    const double beta = cfg->beta, beta2 = cfg->beta2;
    const int adaptive = ald_adaptive(cfg->form);

    /* kept rows [n,V]; the two teachers are constants */
    rt_tensor *zs = kept_rows(W, in->student_logits, &r);
    rt_tensor *zd = kept_rows(W, rt_detach(W, in->dpo_logits), &r);
    rt_tensor *zr = kept_rows(W, rt_detach(W, in->rev_logits), &r);
    rt_tensor *ls = rt_log_softmax(W, zs, 1), *ps = rt_exp(W, ls);
    rt_tensor *ld = rt_log_softmax(W, zd, 1), *lr = rt_log_softmax(W, zr, 1);

    /* extrapolation weight and the per-token coefficient of the KL */
    rt_tensor *w = NULL, *coef = NULL, *tea = NULL; /* w, coef [n]; tea [n,V] */
    if (adaptive) {
        rt_tensor *tvd = rt_sum(W, rt_abs(W, rt_sub(W, rt_exp(W, ld), rt_exp(W, lr))), 1, 0);
        w = rt_add_scalar(W, rt_mul_scalar(W, tvd, beta2), ALD_WEIGHT_FLOOR);
        coef = rt_div(W, rt_full_like(W, w, beta), w); /* beta / w_t */
        rt_tensor *w2 = rt_unsqueeze(W, w, 1);
        if (cfg->form == GKD_ALIGNDISTIL) /* z_dpo + w (z_dpo - z_rev) */
            tea = rt_add(W, zd, rt_mul(W, w2, rt_sub(W, zd, zr)));
        else /* w z_dpo + (1 - w) z_rev */
            tea = rt_add(W, rt_mul(W, w2, zd), rt_mul(W, rt_rsub_scalar(W, w2, 1.0), zr));
    } else {
        double wc = beta / beta2;
        w = rt_full_like(W, rt_sum(W, zd, 1, 0), wc);
        coef = rt_full_like(W, w, beta2);
        if (cfg->form == GKD_THEOREM1)
            tea = rt_add_scaled(W, rt_mul_scalar(W, zd, wc), zr, 1.0 - wc);
        else
            tea = rt_add(W, zd, rt_mul_scalar(W, rt_sub(W, zd, zr), wc));
    }
    rt_tensor *lt = rt_log_softmax(W, rt_div_scalar(W, tea, cfg->kd_temperature), 1);
    rt_tensor *tok = rt_mul(W, coef, kl_rows(W, ps, ls, lt)); /* [n] */

    /* per-sequence sums (or means), mean over the B sequences */
    double *clamped = malloc((size_t)(r.B > 0 ? r.B : 1) * sizeof *clamped);
    if (!clamped) {
        rt_set_error("%s: out of memory", fn);
        goto done;
    }
    for (int64_t b = 0; b < r.B; b++) clamped[b] = r.count[b] > 0 ? r.count[b] : 1.0;
    int64_t bshape[1] = {r.B};
    rt_tensor *count = rt_to_dtype(W, rt_from_data(W, clamped, bshape, 1, RT_OPTS(RT_F64)), dt);
    free(clamped);
    rt_tensor *seq = seq_sums(W, tok, &r);
    if (cfg->length_norm) seq = rt_div(W, seq, count);
    rt_tensor *loss_w = rt_mean(W, seq, RT_DIM_ALL, 0);
    if (!loss_w || !count || !w) goto done;

    rt_tensor *tok_out = NULL, *w_out = NULL;
    if (token_losses && !(tok_out = spread(W, tok, &r))) goto done;
    if (weights && !(w_out = spread(W, rt_detach(W, w), &r))) goto done;

    if (m) {
        int g = rt_no_grad_begin();
        m->loss = rt_item(loss_w);
        if (adaptive) seq_and_token_means(W, w, &r, count, NULL, &m->mean_weight);
        else m->mean_weight = beta / beta2;
        rt_tensor *reward = rt_mul_scalar(W, rt_sub(W, ld, lr), beta); /* [n,V] */
        seq_and_token_means(W, rt_sum(W, rt_mul(W, ps, reward), 1, 0), &r, count, &m->expected_reward, NULL);
        seq_and_token_means(W, rt_sum(W, rt_mul(W, rt_exp(W, ld), reward), 1, 0), &r, count,
                            &m->dpo_model_expected_reward, NULL);
        seq_and_token_means(W, kl_rows(W, ps, ls, lr), &r, count, &m->seq_init_kl, &m->token_init_kl);
        seq_and_token_means(W, kl_rows(W, ps, ls, ld), &r, count, &m->seq_tea_kl, &m->token_tea_kl);
        m->tokens = (double)r.n;
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss_w, S);
    if (token_losses) *token_losses = rt_move(tok_out, S);
    if (weights) *weights = rt_move(w_out, S);
done:
    rows_free(&r);
done_scope:
    rt_scope_free(W);
    return loss;
}
