/*
 * pg.c -- GRPO-family policy-gradient losses (see pg.h for the API and the
 * formulas; specs/pg_losses.md sections 1-3 and 6 for the references and the
 * worked numbers the tests reproduce).
 *
 * Layout: setting and metric tables, config helpers, stage 1 (advantages, on
 * the host in double precision), input checks, stage 2 (per-token loss and
 * metrics), stage 3 (aggregation), pg_loss. Every tensor made here lives in a
 * private scope W; only the results are moved to the caller's scope. Blocks of
 * ops are checked once at their end (an op given NULL returns NULL and keeps
 * the first message).
 */
#include "pg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Names and the setting table                                               */
/* ------------------------------------------------------------------------ */

static const char *const loss_type_names[] = {"grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", NULL};
static const char *const level_names[] = {"token", "sequence", "sequence_token", NULL};
static const char *const agg_names[] = {"auto",
                                        "seq_mean_token_mean",
                                        "token_mean",
                                        "dr_grpo",
                                        "dapo",
                                        "luspo",
                                        "verl_token_mean",
                                        "verl_seq_mean_token_mean",
                                        "verl_seq_mean_token_sum",
                                        "verl_seq_mean_token_sum_norm",
                                        NULL};
static const char *const scale_names[] = {"group", "batch", "none", NULL};
static const char *const singleton_names[] = {"zero", "raw", NULL};

#define OFF(field) offsetof(pg_config, field)

#define REAL(nm, field, d, lo, hi, help) {nm, LSET_REAL, OFF(field), d, lo, hi, NULL, help}
#define REAL_OPT(nm, field, lo, hi, help) {nm, LSET_REAL_OPT, OFF(field), NAN, lo, hi, NULL, help}
#define INT(nm, field, d, lo, hi, help) {nm, LSET_INT, OFF(field), d, lo, hi, NULL, help}
#define BOOL(nm, field, d, help) {nm, LSET_BOOL, OFF(field), d, 0, 1, NULL, help}
#define CHOICE(nm, field, d, ch, help) {nm, LSET_CHOICE, OFF(field), d, 0, 0, ch, help}

/* Defaults: TRL GRPOConfig's where it has the setting. */
static const pg_setting settings[] = {
    CHOICE("loss_type", loss_type, PG_LOSS_DAPO, loss_type_names,
           "grpo, bnpo, dr_grpo, dapo (TRL default), luspo, cispo or sapo"),
    CHOICE("importance_sampling_level", importance_sampling_level, PG_LEVEL_TOKEN, level_names,
           "token; sequence = GSPO; sequence_token = GSPO-token (verl gspo)"),
    CHOICE("aggregation", aggregation, PG_AGG_AUTO, agg_names,
           "auto = TRL's for loss_type; or an explicit TRL/verl mode (pg.h)"),
    REAL("epsilon", epsilon, 0.2, 0, 1e6, "eps_low: clip at 1 - epsilon"),
    REAL_OPT("epsilon_high", epsilon_high, 0, 1e6,
             "clip at 1 + epsilon_high (none = epsilon; DAPO 0.28); cispo: the absolute cap (5.0)"),
    REAL_OPT("delta", delta, 1, 1e18, "two-sided clip coef_1 <= delta (none = off; = verl dual-clip c, 3.0)"),
    REAL("beta", beta, 0.0, -1e6, 1e6, "weight of the k3 KL to ref_logps (0 = no reference)"),
    REAL("tau_pos", tau_pos, 1.0, 1e-9, 1e9, "sapo gate temperature for A > 0"),
    REAL("tau_neg", tau_neg, 1.05, 1e-9, 1e9, "sapo gate temperature for A <= 0"),
    INT("max_completion_length", max_completion_length, 512, 1, 1e12, "dr_grpo denominator B * max_completion_length"),
    REAL("top_entropy_quantile", top_entropy_quantile, 1.0, 0, 1,
         "keep tokens whose entropy is in the top rho (1 = all; needs entropy)"),
    REAL("log_ratio_clamp", log_ratio_clamp, 20.0, 0, 1e6,
         "clamp logps - old_logps to +-value before exp (0 = off, as TRL)"),
    REAL("seq_log_ratio_clamp", seq_log_ratio_clamp, 10.0, 0, 1e6,
         "clamp the sequence mean log-ratio to +-value (0 = off)"),
    BOOL("use_bias_correction_kl", use_bias_correction_kl, 0, "multiply the k3 term by coef_1"),
    BOOL("kl_clamp", kl_clamp, 0, "verl low_var_kl clamps (ref-logps +-20, k3 +-10)"),
    BOOL("cispo_two_sided", cispo_two_sided, 0,
         "verl cispo weight sg(clamp(r, 1-eps_low, 1+eps_high)) instead of sg(min(r, eps_high))"),
    REAL("gradient_accumulation_steps", gradient_accumulation_steps, 1.0, 1e-9, 1e12,
         "N_ga: non-dapo aggregations divide by it"),
    REAL("num_items_in_batch", num_items_in_batch, 0.0, 0, 1e18,
         "dapo/cispo normalizer: loss tokens in the generation batch (0 = this call's)"),
    REAL("num_processes", num_processes, 1.0, 1, 1e9, "dapo/cispo: normalizer / num_processes"),
    REAL("loss_scale_factor", loss_scale_factor, 0.0, 0, 1e18,
         "verl_seq_mean_token_sum_norm denominator (0 = padded T)"),
    INT("group_size", adv.group_size, 0, 0, 1e12, "G: completions per prompt, contiguous (advantages from rewards)"),
    CHOICE("scale_rewards", adv.scale_rewards, PG_SCALE_GROUP, scale_names, "group (TRL default), batch or none"),
    REAL("adv_epsilon", adv.epsilon, 1e-4, 0, 1e6, "added to the reward std (TRL 1e-4, verl 1e-6)"),
    CHOICE("singleton", adv.singleton, PG_SINGLETON_ZERO, singleton_names,
           "group with one scorable reward: zero (TRL, A = 0) or raw (verl, mean 0 std 1)"),
};

static int in_names(int v, const char *const *names)
{
    int n = 0;
    while (names[n]) n++;
    return v >= 0 && v < n;
}

const char *pg_loss_type_name(int t) { return in_names(t, loss_type_names) ? loss_type_names[t] : NULL; }
const char *pg_agg_name(int a) { return in_names(a, agg_names) ? agg_names[a] : NULL; }
const char *pg_level_name(int l) { return in_names(l, level_names) ? level_names[l] : NULL; }
const char *pg_scale_name(int s) { return in_names(s, scale_names) ? scale_names[s] : NULL; }

int pg_loss_type_from_name(const char *name)
{
    for (int i = 0; name && loss_type_names[i]; i++)
        if (strcmp(name, loss_type_names[i]) == 0) return i;
    return -1;
}

const pg_setting *pg_settings(size_t *n)
{
    if (n) *n = COUNT(settings);
    return settings;
}

const pg_setting *pg_setting_find(const char *name) { return lset_find(settings, COUNT(settings), name); }

pg_config pg_config_default(void)
{
    pg_config c;
    memset(&c, 0, sizeof c); /* padding */
    lset_defaults(settings, COUNT(settings), &c);
    return c;
}

int pg_config_check(const pg_config *cfg)
{
    int rc = lset_check(settings, COUNT(settings), cfg, "pg");
    if (rc != RT_OK) return rc;
    double eh = isnan(cfg->epsilon_high) ? cfg->epsilon : cfg->epsilon_high;
    if (!isnan(cfg->delta) && cfg->delta <= 1.0 + eh && cfg->loss_type != PG_LOSS_CISPO &&
        cfg->loss_type != PG_LOSS_SAPO)
        return rt_set_error("pg: delta = %g must exceed 1 + epsilon_high = %g (two-sided clip above the band)",
                            cfg->delta, 1.0 + eh),
               RT_EINVAL;
    return RT_OK;
}

pg_agg pg_resolved_aggregation(const pg_config *cfg)
{
    if (cfg->aggregation != PG_AGG_AUTO) return (pg_agg)cfg->aggregation;
    switch ((pg_loss_type)cfg->loss_type) {
    case PG_LOSS_GRPO:
    case PG_LOSS_SAPO: return PG_AGG_SEQ_MEAN_TOKEN_MEAN;
    case PG_LOSS_BNPO: return PG_AGG_TOKEN_MEAN;
    case PG_LOSS_DR_GRPO: return PG_AGG_DR_GRPO;
    case PG_LOSS_LUSPO: return PG_AGG_LUSPO;
    case PG_LOSS_DAPO:
    case PG_LOSS_CISPO:
    default: return PG_AGG_DAPO;
    }
}

int pg_config_set(pg_config *cfg, const char *name, const char *value)
{
    return lset_apply(settings, COUNT(settings), cfg, "pg", name, value);
}

const char *pg_setting_format(const pg_config *cfg, const pg_setting *s, char *buf, size_t cap)
{
    return lset_format(s, cfg, buf, cap);
}

/* ------------------------------------------------------------------------ */
/* Metric tables                                                             */
/* ------------------------------------------------------------------------ */

#define MOFF(field) offsetof(pg_metrics, field)

static const pg_metric_desc metric_table[] = {
    {"loss", MOFF(loss), "the aggregated loss"},
    {"kl", MOFF(kl), "masked mean of the per-token k3 KL to the reference (beta != 0)"},
    {"entropy", MOFF(entropy), "masked mean of the entropy input"},
    {"clip_ratio/low_mean", MOFF(clip_low_mean), "fraction with coef_1 < 1-eps_low and A < 0"},
    {"clip_ratio/low_min", MOFF(clip_low_min), "min over processes of low_mean (one process: = low_mean)"},
    {"clip_ratio/high_mean", MOFF(clip_high_mean), "fraction with coef_1 > 1+eps_high and A > 0"},
    {"clip_ratio/high_max", MOFF(clip_high_max), "max over processes of high_mean (one process: = high_mean)"},
    {"clip_ratio/region_mean", MOFF(clip_region_mean), "fraction low- or high-clipped"},
    {"cispo_clip_ratio", MOFF(cispo_clip_ratio), "fraction with coef_1 > eps_high and A > 0"},
    {"sapo/gate_mean", MOFF(sapo_gate_mean), "mean SAPO gradient weight 4 p (1-p)"},
    {"sapo/gate_min", MOFF(sapo_gate_min), "minimum SAPO gradient weight"},
    {"sapo/gate_low_frac", MOFF(sapo_gate_low_frac), "fraction of SAPO weights below 0.5"},
    {"pg_clipfrac", MOFF(pg_clipfrac), "verl: fraction where the clipped branch is strictly larger"},
    {"pg_clipfrac_lower", MOFF(pg_clipfrac_lower), "verl: fraction where the dual clip (delta) is active"},
    {"ppo_kl", MOFF(ppo_kl), "verl: masked mean of old_logps - logps"},
    {"entropy_threshold", MOFF(entropy_threshold), "top-entropy quantile threshold q"},
    {"entropy_kept_frac", MOFF(entropy_kept_frac), "fraction of loss tokens kept by the entropy mask"},
    {"num_tokens", MOFF(num_tokens), "loss tokens, sum(mask)"},
};

const pg_metric_desc *pg_metric_table(size_t *n)
{
    if (n) *n = COUNT(metric_table);
    return metric_table;
}

double pg_metric_value(const pg_metrics *m, const pg_metric_desc *d)
{
    if (!m || !d) return NAN;
    return *(const double *)((const char *)m + d->offset);
}

static const pg_adv_metric_desc adv_metric_table[] = {
    {"reward", offsetof(pg_adv_metrics, reward), "nanmean of the rewards"},
    {"reward_std", offsetof(pg_adv_metrics, reward_std), "nanstd of the rewards over the batch"},
    {"frac_reward_zero_std", offsetof(pg_adv_metrics, frac_reward_zero_std),
     "fraction of rows whose reward std is (close to) 0"},
    {"frac_unscorable", offsetof(pg_adv_metrics, frac_unscorable), "fraction of NaN (no-reward) rewards"},
};

const pg_adv_metric_desc *pg_adv_metric_table(size_t *n)
{
    if (n) *n = COUNT(adv_metric_table);
    return adv_metric_table;
}

double pg_adv_metric_value(const pg_adv_metrics *m, const pg_adv_metric_desc *d)
{
    if (!m || !d) return NAN;
    return *(const double *)((const char *)m + d->offset);
}

/* ------------------------------------------------------------------------ */
/* Stage 1: advantages                                                       */
/* ------------------------------------------------------------------------ */

/* nanmean / Bessel nanstd of x[0..n) (torch.nanmean, TRL's nanstd): NaN when
 * there is no value / at most one value. *count receives the scorable count. */
static void nan_stats(const double *x, int64_t n, double *mean, double *std, int64_t *count)
{
    double s = 0;
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i])) s += x[i], c++;
    *count = c;
    *mean = c ? s / (double)c : NAN;
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i])) ss += (x[i] - *mean) * (x[i] - *mean);
    *std = c > 1 ? sqrt(ss / (double)(c - 1)) : NAN;
}

rt_tensor *pg_advantages(rt_scope *S, const pg_adv_config *cfg, const rt_tensor *rewards, pg_adv_metrics *m)
{
    char a[64];
    if (m) *m = (pg_adv_metrics){NAN, NAN, NAN, NAN};
    if (!cfg) return rt_set_error("pg_advantages: config is NULL"), NULL;
    if (!rewards) {
        if (rt_last_error()[0] == '\0') rt_set_error("pg_advantages: rewards is NULL");
        return NULL;
    }
    rt_dtype dt = rt_dtype_of(rewards);
    if (rt_ndim(rewards) != 1 || (dt != RT_F32 && dt != RT_F64))
        return rt_set_error("pg_advantages: rewards must be float32/float64 [B], got %s %s", rt_dtype_name(dt),
                            rt_shape_str(rewards, a, sizeof a)),
               NULL;
    int64_t B = rt_size(rewards, 0), G = cfg->group_size;
    if (G < 1 || B < 1 || B % G != 0)
        return rt_set_error("pg_advantages: group_size = %lld must be >= 1 and divide B = %lld (rewards %s)",
                            (long long)G, (long long)B, rt_shape_str(rewards, a, sizeof a)),
               NULL;
    if (!in_names(cfg->scale_rewards, scale_names) || !in_names(cfg->singleton, singleton_names) ||
        !(cfg->epsilon >= 0))
        return rt_set_error("pg_advantages: invalid scale_rewards %d, singleton %d or epsilon %g",
                            cfg->scale_rewards, cfg->singleton, cfg->epsilon),
               NULL;
    double *R = malloc((size_t)B * 2 * sizeof *R);
    if (!R) return rt_set_error("pg_advantages: out of memory for %lld rewards", (long long)B), NULL;
    double *A = R + B;
    rt_tensor *out = NULL;
    if (rt_to_data(rewards, RT_F64, R, (size_t)B * sizeof *R) != RT_OK) goto done;

    double bmean, bstd;
    int64_t bcount, zero_rows = 0, nan_rows = 0;
    nan_stats(R, B, &bmean, &bstd, &bcount);
    for (int64_t g0 = 0; g0 < B; g0 += G) {
        double mu, sd;
        int64_t c;
        nan_stats(R + g0, G, &mu, &sd, &c);
        if (G == 1) sd = 0.0; /* TRL: num_generations == 1 -> std 0 */
        if (c == 1 && cfg->singleton == PG_SINGLETON_RAW) mu = 0.0, sd = 1.0;
        double scale = cfg->scale_rewards == PG_SCALE_BATCH ? bstd : sd;
        if (cfg->scale_rewards == PG_SCALE_BATCH && c == 1 && cfg->singleton == PG_SINGLETON_RAW) scale = 1.0;
        for (int64_t i = g0; i < g0 + G; i++) {
            double v = R[i] - mu;
            if (cfg->scale_rewards != PG_SCALE_NONE) v /= scale + cfg->epsilon;
            A[i] = isnan(v) ? 0.0 : v; /* nan_to_num: unscorable rows, NaN groups */
            /* torch.isclose(std, 0): |std| <= atol 1e-8 */
            double zs = cfg->scale_rewards == PG_SCALE_BATCH ? (B > 1 ? bstd : 0.0) : sd;
            if (fabs(zs) <= 1e-8) zero_rows++;
            if (isnan(R[i])) nan_rows++;
        }
    }
    int64_t shape[1] = {B};
    out = rt_from_data(S, A, shape, 1, RT_OPTS(RT_F64));
    if (out && dt != RT_F64) {
        rt_tensor *o = rt_to_dtype(S, out, dt);
        if (!S) rt_free(out);
        out = o;
    }
    if (out && m) {
        m->reward = bcount ? bmean : NAN;
        m->reward_std = bstd;
        m->frac_reward_zero_std = (double)zero_rows / (double)B;
        m->frac_unscorable = (double)nan_rows / (double)B;
    }
done:
    free(R);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Input checks                                                              */
/* ------------------------------------------------------------------------ */

static int null_input(const char *what)
{
    if (rt_last_error()[0] == '\0') rt_set_error("pg_loss: %s is NULL", what);
    return RT_EINVAL;
}

/* x must be [B,T] (or [B] when allow_rows) in dtype dt (dt < 0: any float). */
static int check_bt(const char *what, const rt_tensor *x, int64_t B, int64_t T, int dt, int allow_rows)
{
    char a[64];
    if (!x) return null_input(what);
    int nd = rt_ndim(x);
    int ok = (nd == 2 && rt_size(x, 0) == B && rt_size(x, 1) == T) || (allow_rows && nd == 1 && rt_size(x, 0) == B);
    if (!ok)
        return rt_set_error("pg_loss: %s has shape %s, expected [%lld, %lld]%s like logps", what,
                            rt_shape_str(x, a, sizeof a), (long long)B, (long long)T,
                            allow_rows ? " or [B]" : ""),
               RT_EINVAL;
    if (dt >= 0 && rt_dtype_of(x) != (rt_dtype)dt)
        return rt_set_error("pg_loss: %s is %s but logps is %s", what, rt_dtype_name(rt_dtype_of(x)),
                            rt_dtype_name((rt_dtype)dt)),
               RT_EINVAL;
    return RT_OK;
}

static int check_inputs(const pg_config *cfg, const pg_inputs *in, int64_t *B, int64_t *T)
{
    char a[64];
    if (!in) return rt_set_error("pg_loss: inputs are NULL"), RT_EINVAL;
    if (pg_config_check(cfg) != RT_OK) return RT_EINVAL;
    if (!in->logps) return null_input("logps");
    rt_dtype dt = rt_dtype_of(in->logps);
    if (rt_ndim(in->logps) != 2 || (dt != RT_F32 && dt != RT_F64))
        return rt_set_error("pg_loss: logps must be float32/float64 [B,T], got %s %s", rt_dtype_name(dt),
                            rt_shape_str(in->logps, a, sizeof a)),
               RT_EINVAL;
    *B = rt_size(in->logps, 0);
    *T = rt_size(in->logps, 1);
    if (*B < 1) return rt_set_error("pg_loss: logps is empty (B = 0)"), RT_EINVAL;
    if (check_bt("mask", in->mask, *B, *T, -1, 0) != RT_OK) return RT_EINVAL;
    if (check_bt("advantages", in->advantages, *B, *T, (int)dt, 1) != RT_OK) return RT_EINVAL;
    if (in->old_logps && check_bt("old_logps", in->old_logps, *B, *T, (int)dt, 0) != RT_OK) return RT_EINVAL;
    if (cfg->beta != 0.0) {
        if (!in->ref_logps)
            return rt_set_error("pg_loss: beta = %g needs ref_logps [%lld, %lld] (the reference model's log-probs)",
                                cfg->beta, (long long)*B, (long long)*T),
                   RT_EINVAL;
        if (check_bt("ref_logps", in->ref_logps, *B, *T, (int)dt, 0) != RT_OK) return RT_EINVAL;
    }
    if (cfg->top_entropy_quantile < 1.0 && !in->entropy)
        return rt_set_error("pg_loss: top_entropy_quantile = %g < 1 needs entropy [%lld, %lld]",
                            cfg->top_entropy_quantile, (long long)*B, (long long)*T),
               RT_EINVAL;
    if (in->entropy && check_bt("entropy", in->entropy, *B, *T, (int)dt, 0) != RT_OK) return RT_EINVAL;
    return RT_OK;
}

/* ------------------------------------------------------------------------ */
/* Stage 2: per-token loss                                                   */
/* ------------------------------------------------------------------------ */

/* Everything one evaluation builds, in W. */
typedef struct pg_ctx {
    rt_scope *W;
    const pg_config *cfg;
    int64_t B, T;
    rt_dtype dt;
    rt_tensor *m;    /* [B,T] bool                         */
    rt_tensor *mf;   /* [B,T] mask as dt                    */
    rt_tensor *L;    /* [B,1] tokens per row, dt            */
    double ntok;     /* sum(mask)                           */
} pg_ctx;

static double qsort_key(double v) { return isnan(v) ? INFINITY : v; }

static int cmp_double(const void *a, const void *b)
{
    double x = qsort_key(*(const double *)a), y = qsort_key(*(const double *)b);
    return (x > y) - (x < y);
}

/* torch.quantile(H[m], p) with linear interpolation, on the host; NaN when
 * no token is kept. */
static int entropy_quantile(const rt_tensor *H, const rt_tensor *m, int64_t n, double p, double *q)
{
    double *h = malloc((size_t)n * sizeof *h);
    uint8_t *k = malloc((size_t)n);
    int rc = RT_ERR;
    *q = NAN;
    if (!h || !k) {
        rt_set_error("pg_loss: out of memory for the entropy quantile (%lld tokens)", (long long)n);
        goto done;
    }
    if (rt_to_data(H, RT_F64, h, (size_t)n * sizeof *h) != RT_OK || rt_to_data(m, RT_U8, k, (size_t)n) != RT_OK)
        goto done;
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (k[i]) h[c++] = h[i];
    rc = RT_OK;
    if (c == 0) goto done;
    qsort(h, (size_t)c, sizeof *h, cmp_double);
    double pos = p * (double)(c - 1);
    int64_t lo = (int64_t)floor(pos);
    int64_t hi = lo + 1 < c ? lo + 1 : lo;
    *q = h[lo] + (pos - (double)lo) * (h[hi] - h[lo]);
done:
    free(h);
    free(k);
    return rc;
}

/* Masked mean of a [B,T] (or [B,1] at sequence level: plain mean over B)
 * indicator or value, like TRL's masked_batch_mean. No grad. */
static double batch_mean(pg_ctx *c, const rt_tensor *x)
{
    rt_scope *W = c->W;
    rt_tensor *xf = rt_to_dtype(W, x, c->dt);
    if (!xf) return NAN;
    if (c->cfg->importance_sampling_level == PG_LEVEL_SEQUENCE && rt_size(xf, 1) == 1)
        return rt_item(rt_mean(W, xf, RT_DIM_ALL, 0)); /* one value per sequence */
    rt_tensor *s = rt_sum(W, rt_where_scalar(W, c->m, xf, 0.0), RT_DIM_ALL, 0);
    return s ? rt_item(s) / fmax(c->ntok, 1.0) : NAN;
}

/* The per-token loss in W, with metrics. */
static rt_tensor *per_token(pg_ctx *c, const pg_inputs *in, pg_metrics *met)
{
    rt_scope *W = c->W;
    const pg_config *cfg = c->cfg;
    int64_t B = c->B, T = c->T;
    int64_t bt[2] = {B, T};
    rt_tensor *m = c->m;
    double el = cfg->epsilon, eh = isnan(cfg->epsilon_high) ? cfg->epsilon : cfg->epsilon_high;
    int level = cfg->importance_sampling_level;

    /* padding -> 0 before any arithmetic (NaN/inf there cannot leak) */
    rt_tensor *lp = rt_where_scalar(W, m, in->logps, 0.0); /* [B,T], grad */
    rt_tensor *old = in->old_logps ? rt_where_scalar(W, m, rt_detach(W, in->old_logps), 0.0) : rt_detach(W, lp);
    rt_tensor *a = rt_detach(W, in->advantages);
    if (rt_ndim(a) == 1) {
        /* rows without loss tokens get A = 0 (a NaN there stays out of the graph) */
        a = rt_where_scalar(W, rt_compare_scalar(W, c->L, RT_GT, 0.0), rt_unsqueeze(W, a, 1), 0.0); /* [B,1] */
    } else {
        a = rt_where_scalar(W, m, a, 0.0); /* [B,T] */
    }
    rt_tensor *log_ratio = rt_sub(W, lp, old); /* [B,T], 0 at padding */
    if (!lp || !old || !a || !log_ratio) return NULL;

    rt_tensor *logw;
    if (level == PG_LEVEL_TOKEN) {
        double k = cfg->log_ratio_clamp;
        logw = k > 0 ? rt_clamp(W, log_ratio, -k, k) : log_ratio;
    } else {
        rt_tensor *seq = rt_div(W, rt_sum(W, log_ratio, 1, 1), rt_clamp(W, c->L, 1.0, INFINITY)); /* [B,1] */
        double k = cfg->seq_log_ratio_clamp;
        if (level == PG_LEVEL_SEQUENCE) {
            logw = k > 0 ? rt_clamp(W, seq, -k, k) : seq;
        } else {
            /* GSPO-token: value = the sequence log-ratio, gradient = d logps */
            logw = rt_add(W, rt_sub(W, lp, rt_detach(W, lp)), rt_detach(W, seq));
            if (k > 0) logw = rt_clamp(W, logw, -k, k);
        }
    }
    rt_tensor *coef1 = rt_exp(W, logw); /* [B,T] or [B,1] */
    if (!coef1) return NULL;

    rt_tensor *l = NULL, *coef1_d = coef1, *coef2 = NULL;
    rt_tensor *a_pos = rt_compare_scalar(W, a, RT_GT, 0.0), *a_neg = rt_compare_scalar(W, a, RT_LT, 0.0);
    rt_tensor *gate_w = NULL;
    switch ((pg_loss_type)cfg->loss_type) {
    case PG_LOSS_CISPO: {
        rt_tensor *w = cfg->cispo_two_sided ? rt_clamp(W, coef1, 1.0 - el, 1.0 + eh) : rt_clamp(W, coef1, -INFINITY, eh);
        l = rt_neg(W, rt_mul(W, rt_mul(W, rt_detach(W, w), a), lp));
        break;
    }
    case PG_LOSS_SAPO: {
        /* tau = tau_pos where A > 0 else tau_neg */
        rt_tensor *tau = rt_add_scalar(W, rt_mul_scalar(W, rt_to_dtype(W, a_pos, c->dt), cfg->tau_pos - cfg->tau_neg),
                                       cfg->tau_neg);
        rt_tensor *p = rt_sigmoid(W, rt_mul(W, tau, rt_add_scalar(W, coef1, -1.0)));
        rt_tensor *f = rt_div(W, rt_mul_scalar(W, p, 4.0), tau);
        l = rt_neg(W, rt_mul(W, f, a));
        gate_w = rt_mul_scalar(W, rt_mul(W, p, rt_rsub_scalar(W, p, 1.0)), 4.0);
        break;
    }
    default: {
        coef2 = rt_clamp(W, coef1, 1.0 - el, 1.0 + eh);
        if (!isnan(cfg->delta)) coef1_d = rt_clamp(W, coef1, -INFINITY, cfg->delta);
        l = rt_neg(W, rt_minimum(W, rt_mul(W, coef1_d, a), rt_mul(W, coef2, a)));
        break;
    }
    }
    l = rt_add(W, l, rt_zeros(W, bt, 2, RT_OPTS(c->dt))); /* sequence level: broadcast to [B,T] */
    if (!l) return NULL;

    /* top-entropy mask (policy term only; denominators keep the full mask) */
    double q = NAN, kept = NAN;
    if (cfg->top_entropy_quantile < 1.0) {
        rt_tensor *H = rt_where_scalar(W, m, rt_detach(W, in->entropy), -INFINITY);
        if (!H || entropy_quantile(H, m, B * T, 1.0 - cfg->top_entropy_quantile, &q) != RT_OK) return NULL;
        rt_tensor *em = isnan(q) ? rt_zeros(W, bt, 2, RT_OPTS(RT_BOOL))
                                 : rt_logical_and(W, rt_compare_scalar(W, H, RT_GE, q), m);
        l = rt_where_scalar(W, em, l, 0.0);
        rt_tensor *nk = rt_sum(W, rt_to_dtype(W, em, RT_F64), RT_DIM_ALL, 0);
        if (!l || !nk) return NULL;
        kept = c->ntok > 0 ? rt_item(nk) / c->ntok : NAN;
    }

    /* beta * k3 (added after the entropy mask, as TRL) */
    rt_tensor *kl = NULL;
    if (cfg->beta != 0.0) {
        rt_tensor *d = rt_sub(W, rt_where_scalar(W, m, rt_detach(W, in->ref_logps), 0.0), lp);
        if (cfg->kl_clamp) d = rt_clamp(W, d, -20.0, 20.0);
        kl = rt_sub(W, rt_add_scalar(W, rt_exp(W, d), -1.0), d);
        if (cfg->kl_clamp) kl = rt_clamp(W, kl, -10.0, 10.0);
        if (cfg->use_bias_correction_kl) kl = rt_mul(W, kl, coef1);
        l = rt_add_scaled(W, l, kl, cfg->beta);
    }
    l = rt_where_scalar(W, m, l, 0.0);
    if (!l) return NULL;

    if (met) {
        int g = rt_no_grad_begin();
        met->num_tokens = c->ntok;
        met->entropy = in->entropy ? batch_mean(c, rt_detach(W, in->entropy)) : NAN;
        met->kl = kl ? batch_mean(c, kl) : NAN;
        met->entropy_threshold = q;
        met->entropy_kept_frac = kept;
        met->ppo_kl = batch_mean(c, rt_neg(W, log_ratio));
        if (cfg->loss_type == PG_LOSS_CISPO) {
            met->cispo_clip_ratio =
                batch_mean(c, rt_logical_and(W, rt_compare_scalar(W, coef1, RT_GT, eh), a_pos));
        } else if (cfg->loss_type == PG_LOSS_SAPO) {
            met->sapo_gate_mean = batch_mean(c, gate_w);
            met->sapo_gate_low_frac = batch_mean(c, rt_compare_scalar(W, gate_w, RT_LT, 0.5));
            rt_tensor *gw = rt_size(gate_w, 1) == 1 ? gate_w : rt_where_scalar(W, m, gate_w, INFINITY);
            double mn = rt_item(rt_min(W, gw, RT_DIM_ALL, 0, NULL));
            met->sapo_gate_min = isfinite(mn) ? mn : NAN;
        } else {
            rt_tensor *lo = rt_logical_and(W, rt_compare_scalar(W, coef1_d, RT_LT, 1.0 - el), a_neg);
            rt_tensor *hi = rt_logical_and(W, rt_compare_scalar(W, coef1_d, RT_GT, 1.0 + eh), a_pos);
            met->clip_low_mean = met->clip_low_min = batch_mean(c, lo);
            met->clip_high_mean = met->clip_high_max = batch_mean(c, hi);
            met->clip_region_mean = batch_mean(c, rt_logical_or(W, lo, hi));
            /* verl: L1 = -A r, L2 = -A clamp(r); clipfrac = L2 > L1; lower = dual clip active */
            rt_tensor *L1 = rt_neg(W, rt_mul(W, a, coef1)), *L2 = rt_neg(W, rt_mul(W, a, coef2));
            met->pg_clipfrac = batch_mean(c, rt_compare(W, L2, RT_GT, L1));
            if (!isnan(cfg->delta)) {
                rt_tensor *L3 = rt_mul_scalar(W, a, -cfg->delta);
                met->pg_clipfrac_lower =
                    batch_mean(c, rt_logical_and(W, rt_compare(W, rt_maximum(W, L1, L2), RT_GT, L3), a_neg));
            } else {
                met->pg_clipfrac_lower = 0.0;
            }
        }
        rt_grad_mode_restore(g);
    }
    return l;
}

static void metrics_nan(pg_metrics *m)
{
    if (!m) return;
    double *f = (double *)m;
    for (size_t i = 0; i < sizeof *m / sizeof(double); i++) f[i] = NAN;
}

/* Mask as bool, its float copy, row counts and the token total. */
static int ctx_init(pg_ctx *c, rt_scope *W, const pg_config *cfg, const rt_tensor *mask, int64_t B, int64_t T,
                    rt_dtype dt)
{
    c->W = W;
    c->cfg = cfg;
    c->B = B;
    c->T = T;
    c->dt = dt;
    c->m = rt_dtype_of(mask) == RT_BOOL ? rt_alias(W, mask) : rt_compare_scalar(W, mask, RT_NE, 0.0);
    c->mf = rt_to_dtype(W, c->m, dt);
    c->L = rt_sum(W, c->mf, 1, 1);
    rt_tensor *n = rt_sum(W, c->mf, RT_DIM_ALL, 0);
    if (!c->m || !c->mf || !c->L || !n) return RT_ERR;
    c->ntok = rt_item(n);
    return RT_OK;
}

rt_tensor *pg_per_token_loss(rt_scope *S, const pg_config *cfg, const pg_inputs *in, pg_metrics *m)
{
    metrics_nan(m);
    int64_t B, T;
    if (check_inputs(cfg, in, &B, &T) != RT_OK) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("pg_per_token_loss: cannot create a scope"), NULL;
    pg_ctx c;
    rt_tensor *l = NULL;
    if (ctx_init(&c, W, cfg, in->mask, B, T, rt_dtype_of(in->logps)) == RT_OK) l = per_token(&c, in, m);
    if (l) l = rt_move(l, S);
    rt_scope_free(W);
    return l;
}

/* ------------------------------------------------------------------------ */
/* Stage 3: aggregation                                                      */
/* ------------------------------------------------------------------------ */

static rt_tensor *aggregate(pg_ctx *c, const rt_tensor *per_tok)
{
    rt_scope *W = c->W;
    const pg_config *cfg = c->cfg;
    double nga = cfg->gradient_accumulation_steps;
    rt_tensor *l = rt_where_scalar(W, c->m, per_tok, 0.0);
    rt_tensor *rows = rt_sum(W, l, 1, 1);                     /* [B,1] */
    rt_tensor *total = rt_sum(W, l, RT_DIM_ALL, 0);           /* 0-dim */
    rt_tensor *has = rt_compare_scalar(W, c->L, RT_GT, 0.0);  /* [B,1] */
    if (!rows || !total || !has) return NULL;
    double B = (double)c->B;
    switch (pg_resolved_aggregation(cfg)) {
    case PG_AGG_SEQ_MEAN_TOKEN_MEAN: {
        rt_tensor *per = rt_div(W, rows, rt_clamp(W, c->L, 1.0, INFINITY));
        return rt_div_scalar(W, rt_sum(W, per, RT_DIM_ALL, 0), B * nga);
    }
    case PG_AGG_TOKEN_MEAN:
    case PG_AGG_VERL_TOKEN_MEAN: return rt_div_scalar(W, total, fmax(c->ntok, 1.0) * nga);
    case PG_AGG_DR_GRPO: return rt_div_scalar(W, total, B * (double)cfg->max_completion_length * nga);
    case PG_AGG_DAPO: {
        double items = cfg->num_items_in_batch > 0 ? cfg->num_items_in_batch : c->ntok;
        return rt_div_scalar(W, total, fmax(items, 1.0) / cfg->num_processes);
    }
    case PG_AGG_LUSPO: return rt_div_scalar(W, total, B * nga);
    case PG_AGG_VERL_SEQ_MEAN_TOKEN_MEAN:
    case PG_AGG_VERL_SEQ_MEAN_TOKEN_SUM: {
        rt_tensor *per = pg_resolved_aggregation(cfg) == PG_AGG_VERL_SEQ_MEAN_TOKEN_MEAN
                             ? rt_div(W, rows, rt_add_scalar(W, c->L, 1e-8))
                             : rows;
        rt_tensor *nrows = rt_sum(W, rt_to_dtype(W, has, RT_F64), RT_DIM_ALL, 0);
        rt_tensor *s = rt_sum(W, rt_where_scalar(W, has, per, 0.0), RT_DIM_ALL, 0);
        if (!nrows || !s) return NULL;
        return rt_div_scalar(W, s, fmax(rt_item(nrows), 1.0) * nga);
    }
    case PG_AGG_VERL_SEQ_MEAN_TOKEN_SUM_NORM: {
        double f = cfg->loss_scale_factor > 0 ? cfg->loss_scale_factor : (double)c->T;
        return rt_div_scalar(W, total, f * nga);
    }
    case PG_AGG_AUTO:
    case PG_AGG_COUNT: break;
    }
    rt_set_error("pg: unknown aggregation %d", cfg->aggregation);
    return NULL;
}

rt_tensor *pg_aggregate(rt_scope *S, const pg_config *cfg, const rt_tensor *per_token_loss, const rt_tensor *mask)
{
    char a[64], b[64];
    if (pg_config_check(cfg) != RT_OK) return NULL;
    if (!per_token_loss) return null_input("per_token_loss"), NULL;
    if (!mask) return null_input("mask"), NULL;
    rt_dtype dt = rt_dtype_of(per_token_loss);
    if (rt_ndim(per_token_loss) != 2 || (dt != RT_F32 && dt != RT_F64) || rt_ndim(mask) != 2 ||
        rt_size(mask, 0) != rt_size(per_token_loss, 0) || rt_size(mask, 1) != rt_size(per_token_loss, 1))
        return rt_set_error("pg_aggregate: per_token_loss must be float [B,T] and mask [B,T], got %s %s and %s",
                            rt_dtype_name(dt), rt_shape_str(per_token_loss, a, sizeof a), rt_shape_str(mask, b, sizeof b)),
               NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("pg_aggregate: cannot create a scope"), NULL;
    pg_ctx c;
    rt_tensor *loss = NULL;
    if (ctx_init(&c, W, cfg, mask, rt_size(mask, 0), rt_size(mask, 1), dt) == RT_OK) loss = aggregate(&c, per_token_loss);
    if (loss) loss = rt_move(loss, S);
    rt_scope_free(W);
    return loss;
}

rt_tensor *pg_loss(rt_scope *S, const pg_config *cfg, const pg_inputs *in, pg_metrics *m, rt_tensor **per_tok_out)
{
    metrics_nan(m);
    if (per_tok_out) *per_tok_out = NULL;
    int64_t B, T;
    if (check_inputs(cfg, in, &B, &T) != RT_OK) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("pg_loss: cannot create a scope"), NULL;
    pg_ctx c;
    rt_tensor *loss = NULL, *l = NULL;
    if (ctx_init(&c, W, cfg, in->mask, B, T, rt_dtype_of(in->logps)) != RT_OK) goto done;
    l = per_token(&c, in, m);
    loss = l ? aggregate(&c, l) : NULL;
    if (!loss) goto done;
    if (per_tok_out) {
        rt_tensor *d = rt_detach(W, l);
        if (!d) {
            loss = NULL;
            goto done;
        }
        *per_tok_out = rt_move(d, S);
    }
    if (m) m->loss = rt_item(loss);
    loss = rt_move(loss, S);
done:
    rt_scope_free(W);
    return loss;
}
