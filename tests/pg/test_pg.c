/*
 * test_pg.c -- the GRPO-family losses (losses/pg.h) against the worked numbers
 * of specs/pg_losses.md (EX-1 of section 0: sections 1.2, 1.8, 1.9, 2.6, 3.6
 * and 6.5) in float64 to 1e-6, gradients included; central finite differences
 * on random inputs for every loss_type at token and sequence level; NaN/inf in
 * padding; fully masked rows and batches; degenerate reward groups; settings.
 * Few Test()s on purpose: each one pays libtorch's start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pg.h"
#include "tensor.h"

#define B1 4
#define T1 3
#define N1 (B1 * T1)
#define MAXN 64

/* EX-1 (section 0): one group of G = 4, T = 3. */
static const double MASK1[N1] = {1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0};
static const double OLD1[N1] = {-1.0, -0.5, -2.0, -0.7, -1.2, -0.3, -0.2, -1.5, -0.9, -1.1, -0.4, -0.6};
static const double DNEW1[N1] = {0.10, -0.30, 0.25, 0.05, 0.40, 0.00, 1.20, 0.15, 0.02, 0.30, 0.00, 0.00};
static const double DREF1[N1] = {0.0, 0.1, -0.2, 0.2, -0.1, 0.0, -0.3, 0.05, 0.1, 0.1, 0.0, 0.0};
static const double ENT1[N1] = {0.5, 2.0, 1.0, 1.5, 0.2, 0.0, 3.0, 0.8, 1.2, 0.9, 0.0, 0.0};
static const double REW1[B1] = {1.0, 0.0, 0.0, 0.5};

static double NEW1[N1], REF1[N1];
static double A_TRL[B1], A_VERL[B1];

static void near(double got, double want, double tol, const char *what)
{
    cr_assert(fabs(got - want) <= tol, "%s: got %.9f, want %.9f (tol %g)", what, got, want, tol);
}

static void all_near(const double *got, const double *want, int n, double tol, const char *what)
{
    for (int i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol, "%s[%d]: got %.9f, want %.9f", what, i, got[i], want[i]);
}

static int all_finite(const double *x, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* The default config with "name=value" settings applied (NULL-terminated). */
static pg_config cfg_of(const char *first, ...)
{
    pg_config c = pg_config_default();
    va_list ap;
    va_start(ap, first);
    for (const char *kv = first; kv; kv = va_arg(ap, const char *)) {
        char name[64];
        const char *eq = strchr(kv, '=');
        cr_assert(eq != NULL && (size_t)(eq - kv) < sizeof name, "bad setting literal %s", kv);
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        cr_assert_eq(pg_config_set(&c, name, eq + 1), RT_OK, "%s: %s", kv, rt_last_error());
    }
    va_end(ap);
    return c;
}

static rt_tensor *mat(rt_scope *S, const double *v, int64_t r, int64_t c, rt_dtype dt)
{
    int64_t shape[2] = {r, c};
    rt_tensor *x = rt_from_data(S, v, shape, 2, RT_OPTS(RT_F64));
    return dt == RT_F64 ? x : rt_to_dtype(S, x, dt);
}

/* One batch; any of old, ref, ent may be NULL. */
typedef struct batch {
    const double *lp, *old, *ref, *mask, *adv, *ent;
    int64_t B, T;
} batch;

/* Evaluates pg_loss; with grad, logps requires grad and d loss / d logps is
 * copied out; per_tok receives the per-token loss. Also checks that only the
 * loss (and the per-token tensor) is left in the caller's scope and that no
 * other input receives a gradient. */
static double eval_pg(const pg_config *cfg, const batch *b, rt_dtype dt, pg_metrics *m, double *grad,
                      double *per_tok)
{
    rt_scope *S = rt_scope_new();
    int64_t nb[1] = {b->B};
    rt_tensor *lp = mat(S, b->lp, b->B, b->T, dt);
    rt_tensor *old = b->old ? mat(S, b->old, b->B, b->T, dt) : NULL;
    rt_tensor *ref = b->ref ? mat(S, b->ref, b->B, b->T, dt) : NULL;
    rt_tensor *ent = b->ent ? mat(S, b->ent, b->B, b->T, dt) : NULL;
    rt_tensor *mask = rt_compare_scalar(S, mat(S, b->mask, b->B, b->T, RT_F64), RT_NE, 0.0);
    rt_tensor *adv = rt_from_data(S, b->adv, nb, 1, RT_OPTS(RT_F64));
    if (dt != RT_F64) adv = rt_to_dtype(S, adv, dt);
    cr_assert(lp && mask && adv, "%s", rt_last_error());
    if (grad) {
        cr_assert_eq(rt_set_requires_grad(lp, 1), RT_OK);
        if (old) cr_assert_eq(rt_set_requires_grad(old, 1), RT_OK);
        if (ref) cr_assert_eq(rt_set_requires_grad(ref, 1), RT_OK);
    }
    pg_inputs in = {lp, old, ref, mask, adv, ent};
    size_t before = rt_scope_count(S);
    rt_tensor *pt = NULL;
    rt_tensor *loss = pg_loss(S, cfg, &in, m, per_tok ? &pt : NULL);
    cr_assert(loss != NULL, "pg_loss(%s): %s", pg_loss_type_name(cfg->loss_type), rt_last_error());
    cr_assert_eq(rt_scope_count(S), before + 1 + (per_tok ? 1 : 0), "pg_loss left %zu handles",
                 rt_scope_count(S) - before);
    cr_assert_eq(rt_ndim(loss), 0);
    cr_assert_eq(rt_dtype_of(loss), dt);
    double v = rt_item(loss);
    size_t n = (size_t)(b->B * b->T);
    if (per_tok) cr_assert_eq(rt_to_data(pt, RT_F64, per_tok, n * sizeof(double)), RT_OK);
    if (grad) {
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        rt_tensor *g = rt_grad(S, lp);
        if (g) cr_assert_eq(rt_to_data(g, RT_F64, grad, n * sizeof(double)), RT_OK);
        else memset(grad, 0, n * sizeof(double)); /* the loss does not depend on logps */
        if (old) cr_assert_eq(rt_has_grad(old), 0, "old_logps got a gradient");
        if (ref) cr_assert_eq(rt_has_grad(ref), 0, "ref_logps got a gradient");
    }
    rt_scope_free(S);
    return v;
}

static batch ex1(const double *adv)
{
    return (batch){NEW1, OLD1, REF1, MASK1, adv, ENT1, B1, T1};
}

static double loss1(const pg_config *c, const double *adv, pg_metrics *m)
{
    batch b = ex1(adv);
    return eval_pg(c, &b, RT_F64, m, NULL, NULL);
}

/* Advantages of rewards r[n] in groups of G, into out. */
static void advantages(const pg_adv_config *ac, const double *r, int64_t n, double *out, pg_adv_metrics *m)
{
    rt_scope *S = rt_scope_new();
    int64_t shape[1] = {n};
    rt_tensor *A = pg_advantages(S, ac, rt_from_data(S, r, shape, 1, RT_OPTS(RT_F64)), m);
    cr_assert(A != NULL, "pg_advantages: %s", rt_last_error());
    cr_assert_eq(rt_requires_grad(A), 0);
    cr_assert_eq(rt_to_data(A, RT_F64, out, (size_t)n * sizeof(double)), RT_OK);
    rt_scope_free(S);
}

static void setup_ex1(void)
{
    for (int i = 0; i < N1; i++) NEW1[i] = OLD1[i] + DNEW1[i], REF1[i] = OLD1[i] + DREF1[i];
    pg_adv_config ac = pg_config_default().adv;
    ac.group_size = 4;
    advantages(&ac, REW1, 4, A_TRL, NULL);
    ac.epsilon = 1e-6;
    ac.singleton = PG_SINGLETON_RAW;
    advantages(&ac, REW1, 4, A_VERL, NULL);
}

/* ------------------------------------------------------------------------ */

Test(pg, advantages_and_trl_worked_values, .init = setup_ex1)
{
    pg_config c;
    pg_metrics m;
    pg_adv_metrics am;
    double a[MAXN], g[MAXN], pt[MAXN];
    batch b = ex1(A_TRL);

    /* section 0 / 1.2 / 2.1: advantages */
    static const double a_trl[4] = {1.305310, -0.783186, -0.783186, 0.261062};
    static const double a_verl[4] = {1.305580, -0.783348, -0.783348, 0.261116};
    static const double a_none[4] = {0.625, -0.375, -0.375, 0.125};
    all_near(A_TRL, a_trl, 4, 1e-6, "TRL group advantages");
    all_near(A_VERL, a_verl, 4, 1e-6, "verl advantages");
    pg_adv_config ac = pg_config_default().adv;
    ac.group_size = 4;
    ac.scale_rewards = PG_SCALE_NONE;
    advantages(&ac, REW1, 4, a, &am);
    all_near(a, a_none, 4, 1e-12, "scale none");
    near(am.reward, 0.375, 1e-12, "reward (group mean)");
    near(am.reward_std, 0.478714, 1e-6, "reward_std (unbiased)");
    near(am.frac_reward_zero_std, 0.0, 0, "frac_reward_zero_std");
    /* a second, all-equal group: A = 0 exactly in every mode; batch std 0.458063 */
    static const double r2[8] = {1.0, 0.0, 0.0, 0.5, 1, 1, 1, 1};
    static const double a_batch[8] = {1.364144, -0.818487, -0.818487, 0.272829, 0, 0, 0, 0};
    ac.scale_rewards = PG_SCALE_BATCH;
    advantages(&ac, r2, 8, a, &am);
    all_near(a, a_batch, 8, 1e-6, "scale batch");
    near(am.reward_std, 0.458063, 1e-6, "batch reward_std");
    near(am.frac_reward_zero_std, 0.0, 0, "batch: zero-std judged on the batch std");
    for (int s = 0; s < 3; s++) {
        ac.scale_rewards = s;
        advantages(&ac, r2, 8, a, &am);
        for (int i = 4; i < 8; i++) cr_assert(a[i] == 0.0, "zero-variance group, scale %d: A[%d] = %g", s, i, a[i]);
        if (s != PG_SCALE_BATCH) near(am.frac_reward_zero_std, 0.5, 0, "one of two groups has zero std");
    }
    /* NaN = no reward: nanmean/nanstd over the scorable rows, A = 0 for the NaN row */
    static const double rn[4] = {1.0, NAN, 0.0, 0.5};
    ac.scale_rewards = PG_SCALE_GROUP;
    advantages(&ac, rn, 4, a, &am);
    const double an[4] = {0.5 / (0.5 + 1e-4), 0.0, -0.5 / (0.5 + 1e-4), 0.0};
    all_near(a, an, 4, 1e-12, "NaN reward");
    near(am.frac_unscorable, 0.25, 0, "frac_unscorable");
    near(am.reward, 0.5, 1e-12, "nanmean reward");
    /* one scorable reward in a group: TRL A = 0; verl (raw) mean 0, std 1 */
    static const double r1[4] = {NAN, 3.0, NAN, NAN};
    advantages(&ac, r1, 4, a, &am);
    for (int i = 0; i < 4; i++) near(a[i], 0.0, 0, "singleton (TRL)");
    ac.singleton = PG_SINGLETON_RAW;
    advantages(&ac, r1, 4, a, &am);
    near(a[1], 3.0 / (1.0 + 1e-4), 1e-12, "singleton (verl)");
    near(a[0], 0.0, 0, "singleton (verl), NaN row");
    /* G = 1: std 0 (TRL), A = 0, every row counts as zero-std */
    ac.singleton = PG_SINGLETON_ZERO;
    ac.group_size = 1;
    advantages(&ac, REW1, 4, a, &am);
    for (int i = 0; i < 4; i++) near(a[i], 0.0, 0, "G = 1");
    near(am.frac_reward_zero_std, 1.0, 0, "G = 1 zero std");
    /* all NaN: finite zeros */
    static const double rnan[4] = {NAN, NAN, NAN, NAN};
    ac.group_size = 2;
    advantages(&ac, rnan, 4, a, &am);
    for (int i = 0; i < 4; i++) near(a[i], 0.0, 0, "all NaN rewards");

    /* section 1.9: the loss table */
    c = cfg_of("loss_type=grpo", NULL);
    near(eval_pg(&c, &b, RT_F64, &m, g, pt), 0.198417, 1e-6, "grpo");
    near(m.clip_high_mean, 2.0 / 9, 1e-12, "clip high_mean");
    near(m.clip_high_max, 2.0 / 9, 1e-12, "clip high_max");
    near(m.clip_low_mean, 0.0, 0, "clip low_mean");
    near(m.clip_low_min, 0.0, 0, "clip low_min");
    near(m.clip_region_mean, 2.0 / 9, 1e-12, "clip region_mean");
    near(m.entropy, 1.233333, 1e-6, "entropy");
    near(m.num_tokens, 9, 0, "num_tokens");
    near(m.loss, 0.198417, 1e-6, "metrics loss");
    cr_assert(isnan(m.kl) && isnan(m.cispo_clip_ratio), "metrics not produced must be NaN");
    static const double pt_grpo[N1] = {-1.442590, -0.966997, -1.566372, 0.823341, 1.168376, 0,
                                       2.600269,  0.909932,  0.799007,  -0.313274, 0, 0};
    all_near(pt, pt_grpo, N1, 1e-6, "grpo per-token loss");
    double pt0[N1];
    memcpy(pt0, pt, sizeof pt0);
    static const double g_grpo[N1] = {-0.120216, -0.080583, 0, 0.102918, 0.146047, 0,
                                      0.216689,  0.075828,  0.066584, 0, 0, 0};
    all_near(g, g_grpo, N1, 1e-6, "grpo gradient");
    /* per-sequence token means and the masked total */
    static const double seq_mean[4] = {-1.325320, 0.995858, 1.436403, -0.313274};
    for (int i = 0; i < 4; i++) {
        double s = 0, n = 0;
        for (int t = 0; t < 3; t++) s += pt[i * 3 + t], n += MASK1[i * 3 + t];
        near(s / n, seq_mean[i], 1e-6, "per-seq token mean");
    }
    c = cfg_of("loss_type=bnpo", NULL);
    near(loss1(&c, A_TRL, &m), 0.223521, 1e-6, "bnpo");
    c = cfg_of("loss_type=dr_grpo", "max_completion_length=3", NULL);
    near(loss1(&c, A_TRL, &m), 0.167641, 1e-6, "dr_grpo");
    c = cfg_of("loss_type=dapo", NULL);
    near(eval_pg(&c, &b, RT_F64, &m, g, NULL), 0.223521, 1e-6, "dapo");
    static const double g_dapo[N1] = {-0.160288, -0.107444, 0, 0.091482, 0.129820, 0,
                                      0.288919,  0.101104,  0.088779, 0, 0, 0};
    all_near(g, g_dapo, N1, 1e-6, "dapo gradient");
    c = pg_config_default(); /* TRL's default loss_type is dapo */
    near(loss1(&c, A_TRL, &m), 0.223521, 1e-6, "default = dapo");
    c = cfg_of("loss_type=dapo", "num_items_in_batch=18", "num_processes=2", NULL);
    near(loss1(&c, A_TRL, &m), 0.223521, 1e-6, "dapo global normalizer 18/2");
    c = cfg_of("loss_type=dapo", "epsilon_high=0.28", NULL);
    near(loss1(&c, A_TRL, &m), 0.209598, 1e-6, "dapo clip-higher");
    c = cfg_of("loss_type=grpo", "delta=3", NULL);
    near(eval_pg(&c, &b, RT_F64, &m, g, pt), 0.177524, 1e-6, "grpo delta 3");
    near(pt[6], 3 * 0.783186, 1e-6, "delta: seq2 t0 loss = 3|A|");
    near(g[6], 0.0, 0, "delta: seq2 t0 gradient 0");
    c = cfg_of("loss_type=grpo", "beta=0.04", NULL);
    near(eval_pg(&c, &b, RT_F64, &m, g, pt), 0.202248, 1e-6, "grpo beta .04");
    near(m.kl, 0.116960, 1e-6, "kl metric");
    static const double g_beta[N1] = {-0.119899, -0.082223, 0.001208, 0.102108, 0.148014, 0,
                                      0.219279,  0.076145,  0.066306, 0.001813, 0, 0};
    all_near(g, g_beta, N1, 1e-6, "grpo beta gradient");
    static const double kl_tok[N1] = {0.004837, 0.091825, 0.087628, 0.011834, 0.106531, 0,
                                      0.723130, 0.004837, 0.003287, 0.018731, 0, 0};
    for (int i = 0; i < N1; i++) near((pt[i] - pt0[i]) / 0.04, kl_tok[i], 1e-6, "per-token k3");
    c = cfg_of("loss_type=dapo", "beta=0.04", NULL);
    near(loss1(&c, A_TRL, &m), 0.228200, 1e-6, "dapo beta .04");
    c = cfg_of("loss_type=sapo", NULL);
    near(loss1(&c, A_TRL, &m), 0.094310, 1e-6, "sapo");
    cr_assert(isnan(m.clip_high_mean), "sapo logs no clip metrics");
    c = cfg_of("loss_type=grpo", "importance_sampling_level=sequence", "epsilon=3e-4", "epsilon_high=4e-4", NULL);
    near(loss1(&c, A_TRL, &m), 0.162575, 1e-6, "GSPO eps 3e-4/4e-4");
    near(m.clip_high_mean, 0.5, 1e-12, "GSPO clip high (sequences)");
    c = cfg_of("loss_type=grpo", "importance_sampling_level=sequence", NULL);
    near(loss1(&c, A_TRL, &m), 0.144194, 1e-6, "GSPO eps .2");
    near(m.clip_high_mean, 0.25, 1e-12, "GSPO clip high .2");
    c = cfg_of("loss_type=luspo", "importance_sampling_level=sequence", "epsilon=3e-4", "epsilon_high=4e-4", NULL);
    near(loss1(&c, A_TRL, &m), 0.373107, 1e-6, "luspo");
    c = cfg_of("loss_type=cispo", "epsilon_high=5.0", NULL);
    near(loss1(&c, A_TRL, &m), 0.498422, 1e-6, "cispo 5.0");
    near(m.cispo_clip_ratio, 0.0, 0, "cispo clip ratio 5.0");
    c = cfg_of("loss_type=cispo", "epsilon_high=1.2", NULL);
    near(loss1(&c, A_TRL, &m), 0.309440, 1e-6, "cispo 1.2");
    near(m.cispo_clip_ratio, 2.0 / 9, 1e-12, "cispo clip ratio 1.2 (seq0 t2, seq3 t0)");
    c = cfg_of("loss_type=grpo", "top_entropy_quantile=0.5", NULL);
    near(loss1(&c, A_TRL, &m), 0.175076, 1e-6, "grpo top entropy .5");
    near(m.entropy_threshold, 1.0, 1e-12, "entropy threshold");
    near(m.entropy_kept_frac, 5.0 / 9, 1e-12, "entropy kept");
    c = cfg_of("loss_type=dapo", "top_entropy_quantile=0.5", NULL);
    near(loss1(&c, A_TRL, &m), 0.187694, 1e-6, "dapo top entropy .5");

    /* 1.8: seq 3 fully masked (its reward still in the group statistics) */
    double mask3[N1];
    memcpy(mask3, MASK1, sizeof mask3);
    mask3[9] = 0;
    batch b3 = ex1(A_TRL);
    b3.mask = mask3;
    c = cfg_of("loss_type=grpo", NULL);
    near(eval_pg(&c, &b3, RT_F64, &m, g, NULL), 0.276735, 1e-6, "grpo, seq 3 masked");
    c = cfg_of("loss_type=dapo", NULL);
    near(eval_pg(&c, &b3, RT_F64, &m, g, NULL), 0.290621, 1e-6, "dapo, seq 3 masked");
    for (int t = 9; t < 12; t++) near(g[t], 0.0, 0, "masked row gradient");

    /* float32 path */
    c = cfg_of("loss_type=grpo", NULL);
    near(eval_pg(&c, &b, RT_F32, &m, g, NULL), 0.198417, 2e-6, "grpo float32");
    all_near(g, g_grpo, N1, 2e-6, "grpo float32 gradient");
}

Test(pg, verl_sapo_gspo_worked_values, .init = setup_ex1)
{
    pg_config c;
    pg_metrics m;
    double g[MAXN], pt[MAXN];
    batch bv = ex1(A_VERL), bt = ex1(A_TRL);

    /* section 2.6: verl vanilla = dapo clip + delta 3 (dual-clip) + ratio clamp 20 */
    c = cfg_of("delta=3", "aggregation=verl_token_mean", NULL);
    near(eval_pg(&c, &bv, RT_F64, &m, g, NULL), 0.195705, 1e-6, "verl token-mean");
    near(m.pg_clipfrac, 2.0 / 9, 1e-12, "pg_clipfrac");
    near(m.pg_clipfrac_lower, 1.0 / 9, 1e-12, "pg_clipfrac_lower");
    near(m.ppo_kl, -0.241111, 1e-6, "ppo_kl");
    static const double g_verl[N1] = {-0.160321, -0.107466, 0, 0.091501, 0.129846, 0,
                                      0, 0.101124, 0.088797, 0, 0, 0};
    all_near(g, g_verl, N1, 1e-6, "verl vanilla gradient");
    c = cfg_of("delta=3", "aggregation=verl_seq_mean_token_mean", NULL);
    near(loss1(&c, A_VERL, &m), 0.177561, 1e-6, "verl seq-mean-token-mean");
    c = cfg_of("delta=3", "aggregation=verl_seq_mean_token_sum", NULL);
    near(loss1(&c, A_VERL, &m), 0.440336, 1e-6, "verl seq-mean-token-sum");
    c = cfg_of("delta=3", "aggregation=verl_seq_mean_token_sum_norm", NULL);
    near(loss1(&c, A_VERL, &m), 0.587115, 1e-6, "verl seq-mean-token-sum-norm (T)");
    c = cfg_of("delta=3", "aggregation=verl_seq_mean_token_sum_norm", "loss_scale_factor=3", NULL);
    near(loss1(&c, A_VERL, &m), 0.587115, 1e-6, "verl sum-norm factor 3");
    c = cfg_of("delta=3", "aggregation=verl_token_mean", "epsilon_high=0.28", NULL);
    near(loss1(&c, A_VERL, &m), 0.181779, 1e-6, "verl clip_high .28");
    c = cfg_of("loss_type=grpo", "importance_sampling_level=sequence_token", "aggregation=verl_seq_mean_token_mean",
               "epsilon=3e-4", "epsilon_high=4e-4", NULL);
    near(loss1(&c, A_VERL, &m), 0.162608, 1e-6, "verl gspo 3e-4/4e-4");
    c = cfg_of("loss_type=grpo", "importance_sampling_level=sequence_token", "aggregation=verl_seq_mean_token_mean",
               NULL);
    near(loss1(&c, A_VERL, &m), 0.144224, 1e-6, "verl gspo .2");
    c = cfg_of("loss_type=sapo", "aggregation=verl_seq_mean_token_mean", NULL);
    near(loss1(&c, A_VERL, &m), 0.094329, 1e-6, "verl sapo");
    c = cfg_of("delta=3", "aggregation=verl_token_mean", "beta=0.001", "kl_clamp=1", NULL);
    near(loss1(&c, A_VERL, &m), 0.195822, 1e-6, "verl vanilla + low_var_kl 0.001");
    near(m.kl, 0.116960, 1e-6, "verl low_var_kl token-mean");
    c = cfg_of("loss_type=dapo", "delta=3", NULL);
    near(loss1(&c, A_VERL, &m), 0.195705, 1e-6, "TRL dapo delta 3 = verl dual-clip");
    c = cfg_of("loss_type=dapo", NULL);
    near(loss1(&c, A_VERL, &m), 0.223567, 1e-6, "TRL dapo, verl advantages, no delta");

    /* section 3.6: SAPO */
    c = cfg_of("loss_type=sapo", NULL);
    near(eval_pg(&c, &bt, RT_F64, &m, g, pt), 0.094310, 1e-6, "sapo");
    static const double pt_sapo[N1] = {-2.747774, -2.274188, -2.978888, 1.531928, 1.868635, 0,
                                       2.743510,  1.618225,  1.507603,  -0.612538, 0, 0};
    all_near(pt, pt_sapo, N1, 1e-6, "sapo per-token loss");
    static const double g_sapo[N1] = {-0.119884, -0.079245, -0.136892, 0.102843, 0.136727, 0,
                                      0.064127,  0.075283,  0.066576,  -0.085457, 0, 0};
    all_near(g, g_sapo, N1, 1e-6, "sapo gradient");
    static const double sapo_seq[4] = {-2.666950, 1.700281, 1.956446, -0.612538};
    for (int i = 0; i < 4; i++) {
        double s = 0, n = 0;
        for (int t = 0; t < 3; t++) s += pt[i * 3 + t], n += MASK1[i * 3 + t];
        near(s / n, sapo_seq[i], 1e-6, "sapo per-sequence mean");
    }
    near(m.sapo_gate_min, 0.2959, 1e-4, "sapo gate min (seq2 t0)");
    near(m.sapo_gate_mean, 0.906095, 1e-4, "sapo gate mean");
    near(m.sapo_gate_low_frac, 1.0 / 9, 1e-12, "sapo gate < 0.5");
    /* tau_pos = tau_neg = tau: the gate is 4/tau sigma(tau(r-1)); at r = 1 w = 1 */
    c = cfg_of("loss_type=sapo", "tau_pos=2", "tau_neg=2", NULL);
    batch on = ex1(A_TRL);
    on.old = NULL; /* old = sg(logps): r = 1 */
    eval_pg(&c, &on, RT_F64, &m, g, pt);
    for (int i = 0; i < N1; i++)
        if (MASK1[i]) near(pt[i], -(4.0 / 2.0) * 0.5 * A_TRL[i / 3], 1e-12, "sapo at r = 1: f = 2/tau");
    near(m.sapo_gate_min, 1.0, 1e-12, "sapo gate at r = 1");

    /* section 6.5: GSPO (TRL, sequence level) */
    c = cfg_of("loss_type=grpo", "importance_sampling_level=sequence", "epsilon=3e-4", "epsilon_high=4e-4", NULL);
    near(eval_pg(&c, &bt, RT_F64, &m, g, pt), 0.162575, 1e-6, "GSPO tiny eps");
    static const double seq_tiny[4] = {-1.305832, 0.980801, 1.236496, -0.261166};
    for (int i = 0; i < 4; i++) near(pt[i * 3], seq_tiny[i], 1e-6, "GSPO per-sequence loss (tiny eps)");
    static const double g_tiny[N1] = {0, 0, 0, 0.122600, 0.122600, 0, 0.103041, 0.103041, 0.103041, 0, 0, 0};
    all_near(g, g_tiny, N1, 1e-6, "GSPO gradient (tiny eps)");
    c = cfg_of("loss_type=grpo", "importance_sampling_level=sequence", NULL);
    near(eval_pg(&c, &bt, RT_F64, &m, g, pt), 0.144194, 1e-6, "GSPO eps .2");
    static const double seq_02[4] = {-1.327247, 0.980801, 1.236496, -0.313274};
    for (int i = 0; i < 4; i++) near(pt[i * 3], seq_02[i], 1e-6, "GSPO per-sequence loss (.2)");
    static const double g_02[N1] = {-0.110604, -0.110604, -0.110604, 0.122600, 0.122600, 0,
                                    0.103041,  0.103041,  0.103041,  0, 0, 0};
    all_near(g, g_02, N1, 1e-6, "GSPO gradient (.2)");
    /* s_i from the unclipped sequences: l_i = -s_i A_i */
    near(-pt[3] / A_TRL[1], 1.252323, 1e-6, "s_1");
    near(-pt[6] / A_TRL[2], 1.578803, 1e-6, "s_2");
    near(-pt[0] / A_TRL[0], 1.016806, 1e-6, "s_0");
    /* GSPO-token has GSPO's value; its gradient s_i A_i / (L_i B) is GSPO's on unclipped rows */
    c = cfg_of("loss_type=grpo", "importance_sampling_level=sequence_token", NULL);
    double g_st[MAXN];
    near(eval_pg(&c, &bt, RT_F64, &m, g_st, NULL), 0.144194, 1e-6, "GSPO-token value");
    for (int i = 0; i < 9; i++) near(g_st[i], g_02[i], 1e-6, "GSPO-token gradient, unclipped rows");
}

/* ------------------------------------------------------------------------ */

/* Deterministic pseudo-random numbers in [-1, 1) (no global rand()). */
static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

Test(pg, finite_differences, .init = setup_ex1)
{
    enum { B = 4, T = 5, N = B * T };
    double lp[N], old[N], ref[N], ent[N], mask[N], adv[B], g[N], lp2[N];
    uint64_t seed = 12345;
    for (int i = 0; i < N; i++) {
        lp[i] = -1.0 + 0.8 * urand(&seed);
        old[i] = lp[i] + 0.3 * urand(&seed);
        ref[i] = lp[i] + 0.3 * urand(&seed);
        ent[i] = 1.5 + urand(&seed);
        mask[i] = (i % T) < T - (i / T) % 3; /* rows of 5, 4, 3, 5 tokens */
    }
    for (int i = 0; i < B; i++) adv[i] = 1.2 * urand(&seed);
    batch b = {lp, old, ref, mask, adv, ent, B, T};
    static const char *const types[] = {"grpo", "bnpo", "dr_grpo", "dapo", "luspo", "sapo"};
    static const char *const levels[] = {"token", "sequence"};
    char lt[64], lv[64];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        for (int lvl = 0; lvl < 2; lvl++) {
            for (int variant = 0; variant < 2; variant++) {
                snprintf(lt, sizeof lt, "loss_type=%s", types[k]);
                snprintf(lv, sizeof lv, "importance_sampling_level=%s", levels[lvl]);
                /* variant 1: KL, delta, clip-higher, entropy mask, bias-corrected KL */
                pg_config c = variant ? cfg_of(lt, lv, "beta=0.05", "delta=1.5", "epsilon_high=0.28",
                                               "top_entropy_quantile=0.6", "use_bias_correction_kl=1",
                                               "max_completion_length=7", NULL)
                                      : cfg_of(lt, lv, "max_completion_length=7", NULL);
                eval_pg(&c, &b, RT_F64, NULL, g, NULL);
                for (int i = 0; i < N; i++) {
                    const double h = 1e-6;
                    memcpy(lp2, lp, sizeof lp2);
                    batch b2 = b;
                    b2.lp = lp2;
                    lp2[i] = lp[i] + h;
                    double fp = eval_pg(&c, &b2, RT_F64, NULL, NULL, NULL);
                    lp2[i] = lp[i] - h;
                    double fm = eval_pg(&c, &b2, RT_F64, NULL, NULL, NULL);
                    double fd = (fp - fm) / (2 * h);
                    cr_assert(fabs(fd - g[i]) <= 1e-6, "%s %s variant %d: d/dlogps[%d] autograd %.9f, FD %.9f",
                              types[k], levels[lvl], variant, i, g[i], fd);
                    if (!mask[i]) cr_assert(g[i] == 0.0, "padded position %d has gradient %g", i, g[i]);
                }
            }
        }
    }
    /* cispo's gradient is -sg(w) A / N by design (not the derivative of its
     * value): check it against that formula, both weights and both levels */
    for (int lvl = 0; lvl < 2; lvl++) {
        for (int two = 0; two < 2; two++) {
            snprintf(lv, sizeof lv, "importance_sampling_level=%s", levels[lvl]);
            pg_config c = cfg_of("loss_type=cispo", lv, two ? "cispo_two_sided=1" : "epsilon_high=1.1", NULL);
            eval_pg(&c, &b, RT_F64, NULL, g, NULL);
            double n = 0;
            for (int i = 0; i < N; i++) n += mask[i];
            for (int r = 0; r < B; r++) {
                double s = 0, L = 0;
                for (int t = 0; t < T; t++)
                    if (mask[r * T + t]) s += lp[r * T + t] - old[r * T + t], L++;
                for (int t = 0; t < T; t++) {
                    int i = r * T + t;
                    double lw = lvl ? s / L : lp[i] - old[i], w = exp(lw);
                    w = two ? fmin(fmax(w, 0.8), 1.2) : fmin(w, 1.1);
                    double want = mask[i] ? -w * adv[r] / n : 0.0;
                    near(g[i], want, 1e-12, "cispo gradient");
                }
            }
        }
    }
}

Test(pg, padding_edge_cases_and_config, .init = setup_ex1)
{
    pg_config c;
    pg_metrics m;
    double g[MAXN], gc[MAXN], pt[MAXN];

    /* NaN / inf in padded positions of every input: same loss, same
     * gradient, exactly 0 at the pads; a NaN advantage on a fully masked row */
    double lp[N1], old[N1], ref[N1], ent[N1], mask[N1], adv[B1];
    memcpy(lp, NEW1, sizeof lp);
    memcpy(old, OLD1, sizeof old);
    memcpy(ref, REF1, sizeof ref);
    memcpy(ent, ENT1, sizeof ent);
    memcpy(mask, MASK1, sizeof mask);
    memcpy(adv, A_TRL, sizeof adv);
    const int pads[3] = {5, 10, 11};
    for (int k = 0; k < 3; k++) {
        lp[pads[k]] = k == 0 ? NAN : -INFINITY;
        old[pads[k]] = k == 1 ? NAN : INFINITY;
        ref[pads[k]] = k == 2 ? NAN : -INFINITY;
        ent[pads[k]] = NAN;
    }
    static const char *const types[] = {"grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo"};
    static const char *const levels[] = {"token", "sequence", "sequence_token"};
    batch dirty = {lp, old, ref, mask, adv, ent, B1, T1}, clean = ex1(A_TRL);
    char lt[64], lv[64];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        for (int lvl = 0; lvl < 3; lvl++) {
            snprintf(lt, sizeof lt, "loss_type=%s", types[k]);
            snprintf(lv, sizeof lv, "importance_sampling_level=%s", levels[lvl]);
            c = cfg_of(lt, lv, "beta=0.04", "top_entropy_quantile=0.7", "use_bias_correction_kl=1", NULL);
            double want = eval_pg(&c, &clean, RT_F64, NULL, gc, NULL);
            double got = eval_pg(&c, &dirty, RT_F64, &m, g, pt);
            cr_assert(isfinite(got) && all_finite(g, N1) && all_finite(pt, N1), "%s %s: NaN leaked (loss %g)",
                      types[k], levels[lvl], got);
            near(got, want, 1e-12, "NaN padding: loss");
            all_near(g, gc, N1, 1e-12, "NaN padding: gradient");
            for (int p = 0; p < 3; p++) cr_assert(g[pads[p]] == 0.0 && pt[pads[p]] == 0.0, "pad not zero");
            cr_assert(isfinite(m.entropy) && isfinite(m.kl), "metrics see the padding");
        }
    }
    /* fully masked row with a NaN advantage */
    double mask3[N1], adv3[B1];
    memcpy(mask3, MASK1, sizeof mask3);
    memcpy(adv3, A_TRL, sizeof adv3);
    mask3[9] = 0;
    adv3[3] = NAN;
    batch b3 = ex1(adv3);
    b3.mask = mask3;
    c = cfg_of("loss_type=grpo", NULL);
    near(eval_pg(&c, &b3, RT_F64, &m, g, NULL), 0.276735, 1e-6, "NaN advantage on a masked row");
    cr_assert(all_finite(g, N1));

    /* every position masked: loss 0 and zero gradient for every aggregation */
    static const double none[N1] = {0};
    batch b0 = ex1(A_TRL);
    b0.mask = none;
    for (int agg = 1; agg < PG_AGG_COUNT; agg++) {
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            c = pg_config_default();
            c.loss_type = (int)k;
            c.aggregation = agg;
            c.beta = 0.04;
            double v = eval_pg(&c, &b0, RT_F64, &m, g, NULL);
            cr_assert(v == 0.0, "all masked, %s / %s: loss %g", types[k], pg_agg_name(agg), v);
            for (int i = 0; i < N1; i++) cr_assert(g[i] == 0.0, "all masked: gradient %g", g[i]);
            near(m.num_tokens, 0, 0, "num_tokens");
        }
    }
    c = cfg_of("loss_type=grpo", "top_entropy_quantile=0.2", NULL);
    near(eval_pg(&c, &b0, RT_F64, &m, g, NULL), 0.0, 0, "all masked with entropy mask");
    cr_assert(isnan(m.entropy_threshold), "no tokens: no threshold");

    /* zero-variance and singleton groups: A = 0, loss 0, finite gradient (policy term only) */
    double a0[B1] = {0, 0, 0, 0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        snprintf(lt, sizeof lt, "loss_type=%s", types[k]);
        c = cfg_of(lt, "importance_sampling_level=sequence", NULL);
        double v = eval_pg(&c, &clean, RT_F64, &m, g, NULL);
        (void)v;
        batch bz = ex1(a0);
        v = eval_pg(&c, &bz, RT_F64, &m, g, NULL);
        cr_assert(isfinite(v) && all_finite(g, N1), "%s zero advantages", types[k]);
        cr_assert(fabs(v) <= 1e-12, "%s zero advantages: loss %g", types[k], v);
    }

    /* a huge log-ratio on a kept token: the default clamp keeps everything finite */
    double lph[N1];
    memcpy(lph, NEW1, sizeof lph);
    lph[1] = OLD1[1] + 800.0;
    batch bh = ex1(A_TRL);
    bh.lp = lph;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        snprintf(lt, sizeof lt, "loss_type=%s", types[k]);
        c = cfg_of(lt, NULL);
        double v = eval_pg(&c, &bh, RT_F64, &m, g, NULL);
        cr_assert(isfinite(v) && all_finite(g, N1), "%s, log-ratio 800: loss %g", types[k], v);
    }

    /* pg_per_token_loss + pg_aggregate == pg_loss */
    {
        rt_scope *S = rt_scope_new();
        c = cfg_of("loss_type=sapo", "beta=0.04", NULL);
        rt_tensor *l = mat(S, NEW1, B1, T1, RT_F64);
        rt_tensor *mk = rt_compare_scalar(S, mat(S, MASK1, B1, T1, RT_F64), RT_NE, 0.0);
        int64_t nb[1] = {B1};
        pg_inputs in = {l, mat(S, OLD1, B1, T1, RT_F64), mat(S, REF1, B1, T1, RT_F64), mk,
                        rt_from_data(S, A_TRL, nb, 1, RT_OPTS(RT_F64)), NULL};
        rt_tensor *ptl = pg_per_token_loss(S, &c, &in, &m);
        cr_assert(ptl != NULL, "%s", rt_last_error());
        near(rt_item(pg_aggregate(S, &c, ptl, mk)), loss1(&c, A_TRL, NULL), 1e-12, "stages compose");
        /* the mask may be float: nonzero = kept */
        in.mask = mat(S, MASK1, B1, T1, RT_F64);
        near(rt_item(pg_loss(S, &c, &in, NULL, NULL)), loss1(&c, A_TRL, NULL), 1e-12, "float mask");
        /* errors name the input and the shape */
        c = cfg_of("beta=0.1", NULL);
        in.ref_logps = NULL;
        cr_assert_null(pg_loss(S, &c, &in, NULL, NULL));
        cr_assert(strstr(rt_last_error(), "ref_logps") != NULL, "%s", rt_last_error());
        c = cfg_of("top_entropy_quantile=0.2", NULL);
        cr_assert_null(pg_loss(S, &c, &in, NULL, NULL));
        cr_assert(strstr(rt_last_error(), "entropy") != NULL, "%s", rt_last_error());
        c = pg_config_default();
        in.old_logps = mat(S, OLD1, 3, 4, RT_F64);
        cr_assert_null(pg_loss(S, &c, &in, NULL, NULL));
        cr_assert(strstr(rt_last_error(), "old_logps") && strstr(rt_last_error(), "[3, 4]"), "%s", rt_last_error());
        in.old_logps = NULL;
        in.advantages = mat(S, NEW1, 1, 12, RT_F64);
        cr_assert_null(pg_loss(S, &c, &in, NULL, NULL));
        cr_assert(strstr(rt_last_error(), "advantages") != NULL, "%s", rt_last_error());
        in.advantages = mat(S, NEW1, B1, T1, RT_F32);
        cr_assert_null(pg_loss(S, &c, &in, NULL, NULL));
        cr_assert(strstr(rt_last_error(), "float32") != NULL, "%s", rt_last_error());
        /* advantages per token [B,T] are accepted */
        double at[N1];
        for (int i = 0; i < N1; i++) at[i] = A_TRL[i / 3];
        in.advantages = mat(S, at, B1, T1, RT_F64);
        in.old_logps = mat(S, OLD1, B1, T1, RT_F64);
        c = cfg_of("loss_type=grpo", NULL);
        near(rt_item(pg_loss(S, &c, &in, NULL, NULL)), 0.198417, 1e-6, "advantages [B,T]");
        int64_t r5[1] = {5};
        pg_adv_config ac = pg_config_default().adv;
        ac.group_size = 2;
        static const double five[5] = {1, 2, 3, 4, 5};
        cr_assert_null(pg_advantages(S, &ac, rt_from_data(S, five, r5, 1, RT_OPTS(RT_F64)), NULL));
        cr_assert(strstr(rt_last_error(), "group_size = 2") != NULL, "%s", rt_last_error());
        rt_scope_free(S);
    }

    /* settings */
    c = pg_config_default();
    near(c.epsilon, 0.2, 0, "epsilon default");
    cr_assert(isnan(c.epsilon_high) && isnan(c.delta), "epsilon_high / delta default None");
    near(c.tau_pos, 1.0, 0, "tau_pos");
    near(c.tau_neg, 1.05, 0, "tau_neg");
    cr_assert_eq(c.loss_type, PG_LOSS_DAPO);
    cr_assert_eq(c.max_completion_length, 512);
    near(c.adv.epsilon, 1e-4, 0, "adv epsilon");
    cr_assert_eq(pg_config_set(&c, "epsilon_hihg", "0.3"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "did you mean 'epsilon_high'") != NULL, "%s", rt_last_error());
    cr_assert_eq(pg_config_set(&c, "loss_type", "ppo"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "grpo, bnpo") != NULL, "%s", rt_last_error());
    cr_assert_eq(pg_config_set(&c, "top_entropy_quantile", "1.5"), RT_EINVAL);
    cr_assert_eq(pg_config_set(&c, "delta", "0.5"), RT_EINVAL);
    cr_assert_eq(pg_config_set(&c, "delta", "3"), RT_OK);
    cr_assert_eq(pg_config_set(&c, "delta", "none"), RT_OK);
    cr_assert(isnan(c.delta));
    cr_assert_eq(pg_config_set(&c, "delta", "1.1"), RT_OK);
    cr_assert_eq(pg_config_check(&c), RT_EINVAL, "delta inside the clip band is refused");
    c = pg_config_default();
    cr_assert_eq(pg_config_set(&c, "scale_rewards", "batch"), RT_OK);
    cr_assert_eq(c.adv.scale_rewards, PG_SCALE_BATCH);
    size_t n;
    const pg_setting *s = pg_settings(&n);
    char buf[64];
    for (size_t i = 0; i < n; i++) {
        pg_setting_format(&c, &s[i], buf, sizeof buf);
        pg_config d = pg_config_default();
        cr_assert_eq(pg_config_set(&d, s[i].name, buf), RT_OK, "round trip %s = %s: %s", s[i].name, buf,
                     rt_last_error());
    }
    cr_assert_str_eq(pg_setting_format(&c, pg_setting_find("epsilon_high"), buf, sizeof buf), "none");
    cr_assert_str_eq(pg_setting_format(&c, pg_setting_find("loss_type"), buf, sizeof buf), "dapo");
    cr_assert_eq(pg_resolved_aggregation(&c), PG_AGG_DAPO);
    c.loss_type = PG_LOSS_SAPO;
    cr_assert_eq(pg_resolved_aggregation(&c), PG_AGG_SEQ_MEAN_TOKEN_MEAN);
    size_t nm;
    const pg_metric_desc *md = pg_metric_table(&nm);
    cr_assert(nm >= 10 && strcmp(md[3].name, "clip_ratio/low_mean") == 0);
}
