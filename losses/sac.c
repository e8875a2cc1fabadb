/*
 * sac.c -- SAC losses and the squashed-Gaussian policy head (see sac.h for
 * the API and the formulas; specs/sac_envs.md section 1 for the references
 * and the worked numbers the tests reproduce).
 *
 * Layout: setting and metric tables, config helpers, input checks, the
 * squashed Gaussian, the continuous losses, the discrete losses. Every tensor
 * made here lives in a private scope W; only the results are moved to the
 * caller's scope. Blocks of ops are checked once at their end (an op given
 * NULL returns NULL and keeps the first message).
 */
#include "sac.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define P(part) (1u << (part))

#define LOG2 0.69314718055994530942
#define HALF_LOG_2PI 0.91893853320467274178

/* ------------------------------------------------------------------------ */
/* Names and the setting table                                               */
/* ------------------------------------------------------------------------ */

static const char *const part_names[] = {"squash",          "critic",         "actor",          "alpha",
                                         "discrete_critic", "discrete_actor", "discrete_alpha", NULL};
static const char *const reference_names[] = {"recommended", "sb3", "cleanrl", NULL};
static const char *const critic_red_names[] = {"half_sum", "sum", NULL};
static const char *const q_reduce_names[] = {"min", "mean", NULL};
static const char *const alpha_loss_names[] = {"log_alpha", "alpha", NULL};
static const char *const discrete_red_names[] = {"mean", "expectation", NULL};
static const char *const log_std_names[] = {"clamp", "tanh", "none", NULL};
static const char *const correction_names[] = {"stable", "epsilon", NULL};
static const char *const units_names[] = {"normalized", "env", NULL};

#define OFF(field) offsetof(sac_config, field)

/* Each setting once; the tables below list them per part. */
#define S_GAMMA {"gamma", LSET_REAL, OFF(gamma), 0.99, 0, 1, NULL, "discount of the soft Bellman target"}
#define S_ALPHA                                                                                                  \
    {"alpha", LSET_REAL, OFF(alpha), 1.0, 0, 1e9, NULL,                                                          \
     "temperature (exp(log_alpha), detached); 1 = every reference's initial value"}
#define S_CRED(d)                                                                                                \
    {"critic_reduction", LSET_CHOICE, OFF(critic_reduction), d, 0, 0, critic_red_names,                         \
     "half_sum = 0.5 (mse1 + mse2) (SB3) or sum = mse1 + mse2 (CleanRL)"}
#define S_QRED                                                                                                   \
    {"q_reduce", LSET_CHOICE, OFF(q_reduce), SAC_Q_MIN, 0, 0, q_reduce_names,                                   \
     "the actor's critic value: min(Q1,Q2) (CleanRL, SB3) or mean (softlearning)"}
#define S_ALOSS(d)                                                                                               \
    {"alpha_loss", LSET_CHOICE, OFF(alpha_loss), d, 0, 0, alpha_loss_names,                                     \
     "log_alpha: -mean(log_alpha sg(logp+H)) (SB3); alpha: -mean(exp(log_alpha) sg(logp+H)) (CleanRL)"}
#define S_TENT(help) {"target_entropy", LSET_REAL_OPT, OFF(target_entropy), NAN, -1e9, 1e9, NULL, help}
#define S_ADIM                                                                                                   \
    {"action_dim", LSET_INT, OFF(action_dim), 1, 1, 1e9, NULL, "|A|, for target_entropy = auto = -|A|"}
#define S_TESCALE                                                                                                \
    {"target_entropy_scale", LSET_REAL, OFF(target_entropy_scale), 0.89, -1e9, 1e9, NULL,                       \
     "target_entropy = auto is scale * log(A) (CleanRL 0.89; the paper 0.98)"}
#define S_DRED                                                                                                   \
    {"discrete_reduction", LSET_CHOICE, OFF(discrete_reduction), SAC_DISCRETE_MEAN, 0, 0, discrete_red_names,   \
     "mean over B*A (CleanRL sac_atari) or expectation = sum over actions, mean over B"}
#define S_LSMODE                                                                                                 \
    {"log_std_mode", LSET_CHOICE, OFF(log_std_mode), SAC_LOG_STD_CLAMP, 0, 0, log_std_names,                    \
     "clamp into [min,max] (SB3), tanh rescale into [min,max] (CleanRL), none (the input is log_std)"}
#define S_LSMIN                                                                                                  \
    {"log_std_min", LSET_REAL_OPT, OFF(log_std_min), NAN, -1e6, 1e6, NULL,                                      \
     "lower log_std bound; auto = -20 (clamp, SB3) or -5 (tanh, CleanRL)"}
#define S_LSMAX {"log_std_max", LSET_REAL, OFF(log_std_max), 2.0, -1e6, 1e6, NULL, "upper log_std bound"}
#define S_CORR                                                                                                   \
    {"correction", LSET_CHOICE, OFF(correction), SAC_CORR_STABLE, 0, 0, correction_names,                       \
     "stable = 2(log 2 - u + logsigmoid(2u)); epsilon = log(1 - y^2 + epsilon) (SB3, CleanRL)"}
#define S_EPS {"epsilon", LSET_REAL, OFF(epsilon), 1e-6, 0, 1, NULL, "epsilon of correction = epsilon"}
#define S_UNITS                                                                                                  \
    {"action_units", LSET_CHOICE, OFF(action_units), SAC_UNITS_NORMALIZED, 0, 0, units_names,                   \
     "density of the normalized action y (SB3, recommended) or of the env action y*scale+bias (CleanRL)"}

static const sac_setting set_squash[] = {S_LSMODE, S_LSMIN, S_LSMAX, S_CORR, S_EPS, S_UNITS};
static const sac_setting set_critic[] = {S_GAMMA, S_ALPHA, S_CRED(SAC_CRITIC_HALF_SUM)};
static const sac_setting set_actor[] = {S_ALPHA, S_QRED};
static const sac_setting set_alpha[] = {S_ALOSS(SAC_ALPHA_LOSS_LOG_ALPHA),
                                        S_TENT("H; auto = -action_dim"), S_ADIM};
static const sac_setting set_dcritic[] = {S_GAMMA, S_ALPHA, S_CRED(SAC_CRITIC_SUM)};
static const sac_setting set_dactor[] = {S_ALPHA, S_QRED, S_DRED};
static const sac_setting set_dalpha[] = {S_ALOSS(SAC_ALPHA_LOSS_ALPHA),
                                         S_TENT("H; auto = target_entropy_scale * log(A)"), S_TESCALE, S_DRED};
static const sac_setting set_all[] = {S_GAMMA, S_ALPHA, S_CRED(SAC_CRITIC_HALF_SUM), S_QRED,
                                      S_ALOSS(SAC_ALPHA_LOSS_LOG_ALPHA), S_TENT("H; auto = -action_dim (continuous), "
                                                                                "target_entropy_scale * log(A) (discrete)"),
                                      S_ADIM, S_TESCALE, S_DRED, S_LSMODE, S_LSMIN, S_LSMAX, S_CORR, S_EPS, S_UNITS};

static const struct {
    const sac_setting *t;
    size_t n;
} part_tables[SAC_PART_COUNT] = {
    {set_squash, COUNT(set_squash)},   {set_critic, COUNT(set_critic)},   {set_actor, COUNT(set_actor)},
    {set_alpha, COUNT(set_alpha)},     {set_dcritic, COUNT(set_dcritic)}, {set_dactor, COUNT(set_dactor)},
    {set_dalpha, COUNT(set_dalpha)},
};

static int part_ok(sac_part p) { return (int)p >= 0 && p < SAC_PART_COUNT; }

const char *sac_part_name(sac_part p) { return part_ok(p) ? part_names[p] : NULL; }
const char *sac_reference_name(sac_reference r)
{
    return (int)r >= 0 && r < SAC_REF_COUNT ? reference_names[r] : NULL;
}

int sac_reference_from_name(const char *name)
{
    for (int i = 0; name && reference_names[i]; i++)
        if (strcmp(name, reference_names[i]) == 0) return i;
    return -1;
}

const sac_setting *sac_settings(sac_part part, size_t *n)
{
    if (part == SAC_PART_COUNT) {
        if (n) *n = COUNT(set_all);
        return set_all;
    }
    if (!part_ok(part)) {
        if (n) *n = 0;
        return NULL;
    }
    if (n) *n = part_tables[part].n;
    return part_tables[part].t;
}

const sac_setting *sac_setting_find(sac_part part, const char *name)
{
    size_t n;
    const sac_setting *t = sac_settings(part, &n);
    return t ? lset_find(t, n, name) : NULL;
}

sac_config sac_config_reference(sac_part part, sac_reference ref)
{
    sac_config c;
    memset(&c, 0, sizeof c);
    lset_defaults(set_all, COUNT(set_all), &c);
    if (part_ok(part)) lset_defaults(part_tables[part].t, part_tables[part].n, &c); /* discrete defaults */
    switch (ref) {
    case SAC_REF_CLEANRL:
        c.critic_reduction = SAC_CRITIC_SUM;
        c.alpha_loss = SAC_ALPHA_LOSS_ALPHA;
        c.log_std_mode = SAC_LOG_STD_TANH;
        c.correction = SAC_CORR_EPSILON;
        c.action_units = SAC_UNITS_ENV;
        break;
    case SAC_REF_SB3: /* SB3 has no discrete SAC: its conventions where they apply */
        c.critic_reduction = SAC_CRITIC_HALF_SUM;
        c.alpha_loss = SAC_ALPHA_LOSS_LOG_ALPHA;
        c.correction = SAC_CORR_EPSILON;
        break;
    case SAC_REF_RECOMMENDED:
    case SAC_REF_COUNT: break;
    }
    return c;
}

sac_config sac_config_default(sac_part part) { return sac_config_reference(part, SAC_REF_RECOMMENDED); }

double sac_log_std_min(const sac_config *cfg)
{
    if (!isnan(cfg->log_std_min)) return cfg->log_std_min;
    return cfg->log_std_mode == SAC_LOG_STD_TANH ? -5.0 : -20.0;
}

double sac_target_entropy(const sac_config *cfg, int64_t action_dim, int discrete)
{
    if (!isnan(cfg->target_entropy)) return cfg->target_entropy;
    return discrete ? cfg->target_entropy_scale * log((double)action_dim) : -(double)action_dim;
}

int sac_config_check(const sac_config *cfg)
{
    if (lset_check(set_all, COUNT(set_all), cfg, "sac") != RT_OK) return RT_EINVAL;
    if (cfg->log_std_mode != SAC_LOG_STD_NONE && !(sac_log_std_min(cfg) < cfg->log_std_max))
        return rt_set_error("sac: log_std_min = %g must be below log_std_max = %g", sac_log_std_min(cfg),
                            cfg->log_std_max),
               RT_EINVAL;
    return RT_OK;
}

int sac_config_set(sac_config *cfg, sac_part part, const char *name, const char *value)
{
    char fam[48], list[512];
    if (!cfg || !name || !value) return rt_set_error("sac_config_set: NULL argument"), RT_EINVAL;
    size_t n;
    const sac_setting *t = sac_settings(part, &n);
    if (!t) return rt_set_error("sac_config_set: unknown part %d", (int)part), RT_EINVAL;
    snprintf(fam, sizeof fam, "sac%s%s", part_ok(part) ? " " : "", part_ok(part) ? part_names[part] : "");
    const sac_setting *s = lset_find(t, n, name);
    if (!s && lset_find(set_all, COUNT(set_all), name)) {
        size_t used = 0;
        list[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", t[i].name);
            if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
        }
        return rt_set_error("%s: setting '%s' does not apply to %s (its settings: %s)", fam, name, part_names[part],
                            list),
               RT_ENOTFOUND;
    }
    if (s && s->type == LSET_REAL_OPT && strcmp(value, "auto") == 0) value = "none";
    return lset_apply(t, n, cfg, fam, name, value);
}

const char *sac_setting_format(const sac_config *cfg, const sac_setting *s, char *buf, size_t cap)
{
    lset_format(s, cfg, buf, cap);
    if (s && s->type == LSET_REAL_OPT && buf && strcmp(buf, "none") == 0) snprintf(buf, cap, "auto");
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Metric table                                                              */
/* ------------------------------------------------------------------------ */

#define MOFF(field) offsetof(sac_metrics, field)
#define ALL_PARTS ((1u << SAC_PART_COUNT) - 1u)
#define CONT_Q (P(SAC_PART_CRITIC) | P(SAC_PART_DISCRETE_CRITIC))
#define ALPHAS (P(SAC_PART_ALPHA) | P(SAC_PART_DISCRETE_ALPHA))
#define ACTORS (P(SAC_PART_ACTOR) | P(SAC_PART_DISCRETE_ACTOR))
#define SQ P(SAC_PART_SQUASH)

static const sac_metric_desc metric_table[] = {
    {"loss", MOFF(loss), ALL_PARTS & ~SQ, "the loss returned"},
    {"qf1_loss", MOFF(qf1_loss), CONT_Q, "mean (q1 - y)^2"},
    {"qf2_loss", MOFF(qf2_loss), CONT_Q, "mean (q2 - y)^2"},
    {"qf1_values", MOFF(qf1_values), CONT_Q, "mean Q1(s,a)"},
    {"qf2_values", MOFF(qf2_values), CONT_Q, "mean Q2(s,a)"},
    {"target_q", MOFF(target_q), CONT_Q, "mean soft Bellman target y"},
    {"min_q", MOFF(min_q), ACTORS, "mean critic value the actor maximizes (expected under pi when discrete)"},
    {"entropy", MOFF(entropy), ALL_PARTS & ~P(SAC_PART_CRITIC),
     "-mean logp (continuous) or mean exact policy entropy (discrete; next-state policy for the critic)"},
    {"alpha", MOFF(alpha), ALL_PARTS & ~SQ, "the temperature used (exp(log_alpha) for the alpha losses)"},
    {"target_entropy", MOFF(target_entropy), ALPHAS, "the target entropy H"},
    {"log_std", MOFF(log_std), SQ, "mean effective log_std"},
    {"count", MOFF(count), ALL_PARTS, "rows B"},
};

const sac_metric_desc *sac_metric_table(size_t *n)
{
    if (n) *n = COUNT(metric_table);
    return metric_table;
}

int sac_metric_applies(const sac_metric_desc *d, sac_part part)
{
    return d && (int)part >= 0 && part < SAC_PART_COUNT && (d->parts & P(part)) != 0;
}

double sac_metric_value(const sac_metrics *m, const sac_metric_desc *d)
{
    if (!m || !d) return NAN;
    return *(const double *)((const char *)m + d->offset);
}

static void metrics_reset(sac_metrics *m)
{
    if (!m) return;
    double *f = (double *)m;
    for (size_t i = 0; i < sizeof *m / sizeof(double); i++) f[i] = NAN;
}

/* ------------------------------------------------------------------------ */
/* Input checks                                                              */
/* ------------------------------------------------------------------------ */

/* What the inputs of one call must agree on. dt < 0 until the first float. */
typedef struct chk {
    const char *fn;
    int dt;
    int64_t B, A; /* -1 until bound */
} chk;

static int null_input(const chk *c, const char *what)
{
    /* an op that produced this NULL already said why: keep its message */
    if (rt_last_error()[0] == '\0') rt_set_error("%s: %s is NULL", c->fn, what);
    return RT_EINVAL;
}

/* A float tensor of ndim 1 ([B]) or 2 ([B,A]), binding B and A. */
static int check_float(chk *c, const char *what, const rt_tensor *t, int ndim)
{
    char a[64];
    if (!t) return null_input(c, what);
    rt_dtype dt = rt_dtype_of(t);
    const char *want = ndim == 1 ? "[B]" : "[B,A]";
    if (rt_ndim(t) != ndim) return rt_set_error("%s: %s must be %s, got %s", c->fn, what, want, rt_shape_str(t, a, sizeof a)), RT_EINVAL;
    if (dt != RT_F32 && dt != RT_F64)
        return rt_set_error("%s: %s must be float32 or float64, got %s", c->fn, what, rt_dtype_name(dt)), RT_EINVAL;
    if (c->dt >= 0 && (int)dt != c->dt)
        return rt_set_error("%s: %s is %s but the inputs before it are %s; use one dtype", c->fn, what,
                            rt_dtype_name(dt), rt_dtype_name((rt_dtype)c->dt)),
               RT_EINVAL;
    c->dt = (int)dt;
    int64_t b = rt_size(t, 0), k = ndim == 2 ? rt_size(t, 1) : -1;
    if (c->B >= 0 && b != c->B)
        return rt_set_error("%s: %s has shape %s, expected B = %lld rows like the inputs before it", c->fn, what,
                            rt_shape_str(t, a, sizeof a), (long long)c->B),
               RT_EINVAL;
    if (ndim == 2 && c->A >= 0 && k != c->A)
        return rt_set_error("%s: %s has shape %s, expected A = %lld columns like the inputs before it", c->fn,
                            what, rt_shape_str(t, a, sizeof a), (long long)c->A),
               RT_EINVAL;
    c->B = b;
    if (ndim == 2) c->A = k;
    if (b < 1 || (ndim == 2 && k < 1))
        return rt_set_error("%s: %s is empty (%s)", c->fn, what, rt_shape_str(t, a, sizeof a)), RT_EINVAL;
    return RT_OK;
}

/* An optional [B] terminal mask (bool, or nonzero = true). */
static int check_mask(chk *c, const char *what, const rt_tensor *t)
{
    char a[64];
    if (!t) return RT_OK;
    if (rt_ndim(t) != 1 || rt_size(t, 0) != c->B)
        return rt_set_error("%s: %s must be [B = %lld], got %s", c->fn, what, (long long)c->B,
                            rt_shape_str(t, a, sizeof a)),
               RT_EINVAL;
    return RT_OK;
}

static int check_log_alpha(chk *c, const rt_tensor *t)
{
    char a[64];
    if (!t) return null_input(c, "log_alpha");
    rt_dtype dt = rt_dtype_of(t);
    if (rt_numel(t) != 1 || rt_ndim(t) > 1)
        return rt_set_error("%s: log_alpha must hold one value ([] or [1]), got %s", c->fn,
                            rt_shape_str(t, a, sizeof a)),
               RT_EINVAL;
    if (c->dt >= 0 && (int)dt != c->dt)
        return rt_set_error("%s: log_alpha is %s but the other inputs are %s; use one dtype", c->fn,
                            rt_dtype_name(dt), rt_dtype_name((rt_dtype)c->dt)),
               RT_EINVAL;
    return RT_OK;
}

/* Actions int64 [B] in [0, A): copied to the host once to say which is bad. */
static int check_actions(chk *c, const rt_tensor *t)
{
    char a[64];
    if (!t) return null_input(c, "actions");
    if (rt_ndim(t) != 1 || rt_size(t, 0) != c->B)
        return rt_set_error("%s: actions must be [B = %lld], got %s", c->fn, (long long)c->B,
                            rt_shape_str(t, a, sizeof a)),
               RT_EINVAL;
    if (rt_dtype_of(t) != RT_I64)
        return rt_set_error("%s: actions must be int64, got %s", c->fn, rt_dtype_name(rt_dtype_of(t))), RT_EINVAL;
    int64_t *host = malloc((size_t)c->B * sizeof *host);
    if (!host) return rt_set_error("%s: out of memory copying %lld actions", c->fn, (long long)c->B), RT_ERR;
    int rc = rt_to_data(t, RT_I64, host, (size_t)c->B * sizeof *host);
    for (int64_t i = 0; rc == RT_OK && i < c->B; i++)
        if (host[i] < 0 || host[i] >= c->A)
            rc = rt_set_error("%s: actions[%lld] = %lld is outside [0, A = %lld)", c->fn, (long long)i,
                              (long long)host[i], (long long)c->A),
            rc = RT_EINVAL;
    free(host);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Shared tensor helpers (results owned by W)                                */
/* ------------------------------------------------------------------------ */

static rt_tensor *as_bool(rt_scope *W, const rt_tensor *mask)
{
    if (!mask) return NULL;
    return rt_dtype_of(mask) == RT_BOOL ? rt_alias(W, mask) : rt_compare_scalar(W, mask, RT_NE, 0.0);
}

static rt_tensor *q_reduce(rt_scope *W, int mode, const rt_tensor *a, const rt_tensor *b)
{
    return mode == SAC_Q_MEAN ? rt_mul_scalar(W, rt_add(W, a, b), 0.5) : rt_minimum(W, a, b);
}

/* y = r + gamma * (terminated ? 0 : next_value), detached. The terminal rows
 * are selected away, so whatever next_value holds there never reaches y. */
static rt_tensor *bellman_target(rt_scope *W, const sac_config *cfg, const rt_tensor *rewards,
                                 const rt_tensor *terminated, const rt_tensor *next_value)
{
    rt_tensor *nv = rt_detach(W, next_value);
    if (terminated) nv = rt_where_scalar(W, rt_logical_not(W, as_bool(W, terminated)), nv, 0.0);
    return rt_add(W, rt_detach(W, rewards), rt_mul_scalar(W, nv, cfg->gamma));
}

/* The critic loss from Q(s,a) [B] and y [B], with metrics. */
static rt_tensor *twin_mse(rt_scope *W, const sac_config *cfg, const rt_tensor *q1, const rt_tensor *q2,
                           const rt_tensor *y, sac_metrics *m)
{
    rt_tensor *l1 = rt_mse(W, q1, y, RT_MEAN), *l2 = rt_mse(W, q2, y, RT_MEAN);
    double k = cfg->critic_reduction == SAC_CRITIC_SUM ? 1.0 : 0.5;
    rt_tensor *loss = rt_mul_scalar(W, rt_add(W, l1, l2), k);
    if (loss && m) {
        int g = rt_no_grad_begin();
        m->loss = rt_item(loss);
        m->qf1_loss = rt_item(l1);
        m->qf2_loss = rt_item(l2);
        m->qf1_values = rt_item(rt_mean(W, q1, RT_DIM_ALL, 0));
        m->qf2_values = rt_item(rt_mean(W, q2, RT_DIM_ALL, 0));
        m->target_q = rt_item(rt_mean(W, y, RT_DIM_ALL, 0));
        m->alpha = cfg->alpha;
        m->count = (double)rt_size(y, 0);
        rt_grad_mode_restore(g);
    }
    return loss;
}

/* log pi [B,A] with the entries of zero probability replaced by 0, and pi. A
 * logit of -inf (a forbidden action) then contributes exactly 0 to any
 * pi * f(log pi) sum, in value and in gradient. */
static rt_tensor *safe_log_softmax(rt_scope *W, const rt_tensor *logits, rt_tensor **probs, rt_tensor **live)
{
    *probs = rt_softmax(W, logits, 1);
    *live = rt_compare_scalar(W, *probs, RT_GT, 0.0);
    return rt_where_scalar(W, *live, rt_log_softmax(W, logits, 1), 0.0);
}

static rt_tensor *discrete_reduce(rt_scope *W, const sac_config *cfg, const rt_tensor *x)
{
    if (cfg->discrete_reduction == SAC_DISCRETE_EXPECTATION) return rt_mean(W, rt_sum(W, x, 1, 0), 0, 0);
    return rt_mean(W, x, RT_DIM_ALL, 0);
}

/* Mean over B of -sum_a pi log pi (no grad, host value). */
static double policy_entropy(rt_scope *W, const rt_tensor *pi, const rt_tensor *logpi)
{
    rt_tensor *h = rt_mean(W, rt_neg(W, rt_sum(W, rt_mul(W, pi, logpi), 1, 0)), RT_DIM_ALL, 0);
    return h ? rt_item(h) : NAN;
}

/* ------------------------------------------------------------------------ */
/* Squashed Gaussian                                                         */
/* ------------------------------------------------------------------------ */

rt_tensor *sac_log1m_tanh_sq(rt_scope *S, const rt_tensor *u)
{
    /* 1 - tanh(u)^2 = 4 / (e^u + e^-u)^2, so its log is
     * 2 (log 2 - u - softplus(-2u)) = 2 (log 2 - u + logsigmoid(2u));
     * torch's logsigmoid is exact for any finite argument (no threshold) */
    if (!u) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("sac_log1m_tanh_sq: cannot create a scope"), NULL;
    rt_tensor *r = rt_mul_scalar(W, rt_add(W, rt_rsub_scalar(W, u, LOG2), rt_logsigmoid(W, rt_mul_scalar(W, u, 2.0))),
                                 2.0);
    r = rt_move(r, S);
    rt_scope_free(W);
    return r;
}

rt_tensor *sac_log_std(rt_scope *S, const sac_config *cfg, const rt_tensor *raw)
{
    if (!cfg) return rt_set_error("sac_log_std: config is NULL"), NULL;
    if (!raw) return NULL;
    double lo = sac_log_std_min(cfg), hi = cfg->log_std_max;
    switch (cfg->log_std_mode) {
    case SAC_LOG_STD_CLAMP: return rt_clamp(S, raw, lo, hi);
    case SAC_LOG_STD_TANH: {
        rt_scope *W = rt_scope_new();
        if (!W) return rt_set_error("sac_log_std: cannot create a scope"), NULL;
        rt_tensor *r = rt_add_scalar(W, rt_mul_scalar(W, rt_add_scalar(W, rt_tanh(W, raw), 1.0), 0.5 * (hi - lo)), lo);
        r = rt_move(r, S);
        rt_scope_free(W);
        return r;
    }
    case SAC_LOG_STD_NONE: return rt_alias(S, raw);
    }
    return rt_set_error("sac_log_std: log_std_mode %d is not a valid choice", cfg->log_std_mode), NULL;
}

/* Box bounds: [A] each, finite, low < high. */
static int check_bounds(chk *c, const rt_tensor *low, const rt_tensor *high)
{
    char a[64];
    if (!low && !high) return RT_OK;
    if (!low || !high)
        return rt_set_error("%s: give both action_low and action_high [A] or neither (only %s is given)", c->fn,
                            low ? "action_low" : "action_high"),
               RT_EINVAL;
    const rt_tensor *t[2] = {low, high};
    const char *nm[2] = {"action_low", "action_high"};
    for (int i = 0; i < 2; i++) {
        if (rt_ndim(t[i]) != 1 || rt_size(t[i], 0) != c->A)
            return rt_set_error("%s: %s must be [A = %lld], got %s", c->fn, nm[i], (long long)c->A,
                                rt_shape_str(t[i], a, sizeof a)),
                   RT_EINVAL;
        if ((int)rt_dtype_of(t[i]) != c->dt)
            return rt_set_error("%s: %s is %s but mean is %s; use one dtype", c->fn, nm[i],
                                rt_dtype_name(rt_dtype_of(t[i])), rt_dtype_name((rt_dtype)c->dt)),
                   RT_EINVAL;
    }
    double *h = malloc(2 * (size_t)c->A * sizeof *h);
    if (!h) return rt_set_error("%s: out of memory", c->fn), RT_ERR;
    int rc = rt_to_data(low, RT_F64, h, (size_t)c->A * sizeof *h);
    if (rc == RT_OK) rc = rt_to_data(high, RT_F64, h + c->A, (size_t)c->A * sizeof *h);
    for (int64_t j = 0; rc == RT_OK && j < c->A; j++)
        if (!isfinite(h[j]) || !isfinite(h[c->A + j]) || !(h[j] < h[c->A + j]))
            rc = rt_set_error("%s: action bounds of dimension %lld are [%g, %g]; need finite low < high", c->fn,
                              (long long)j, h[j], h[c->A + j]),
            rc = RT_EINVAL;
    free(h);
    return rc;
}

/* The kernel's options for cfg (checked). */
static rt_squash_opts squash_opts(const sac_config *cfg)
{
    rt_squash_opts o;
    memset(&o, 0, sizeof o);
    o.log_std_mode = cfg->log_std_mode == SAC_LOG_STD_CLAMP  ? RT_LOG_STD_CLAMP
                     : cfg->log_std_mode == SAC_LOG_STD_TANH ? RT_LOG_STD_TANH
                                                             : RT_LOG_STD_NONE;
    o.log_std_min = sac_log_std_min(cfg);
    o.log_std_max = cfg->log_std_max;
    o.epsilon_correction = cfg->correction == SAC_CORR_EPSILON;
    o.epsilon = cfg->epsilon;
    return o;
}

int sac_squash_sample(rt_scope *S, const sac_config *cfg, const rt_tensor *mean, const rt_tensor *log_std_raw,
                      const rt_tensor *scale, rt_gen *gen, rt_tensor **y, rt_tensor **logp)
{
    if (y) *y = NULL;
    if (logp) *logp = NULL;
    if (!y || !logp || !gen) return rt_set_error("sac_squash_sample: NULL %s", gen ? "output" : "generator"), RT_EINVAL;
    if (sac_config_check(cfg) != RT_OK) return RT_EINVAL;
    chk c = {"sac_squash_sample", -1, -1, -1};
    int rc;
    if ((rc = check_float(&c, "mean", mean, 2)) != RT_OK || (rc = check_float(&c, "log_std", log_std_raw, 2)) != RT_OK)
        return rc;
    int64_t shape[2] = {c.B, c.A};
    rt_tensor *eps = rt_randn(S, shape, 2, gen, RT_OPTS((rt_dtype)c.dt)); /* [B,A], sac_squashed_gaussian's draw */
    rt_squash_opts so = squash_opts(cfg);
    *y = rt_squashed_gaussian(S, mean, log_std_raw, eps, cfg->action_units == SAC_UNITS_ENV ? scale : NULL, &so, logp);
    rt_free(eps);
    return *y ? RT_OK : RT_ERR;
}

int sac_squashed_gaussian(rt_scope *S, const sac_config *cfg, const sac_squash_inputs *in, rt_gen *gen,
                          sac_squash_out *out, sac_metrics *m)
{
    metrics_reset(m);
    if (!out) return rt_set_error("sac_squashed_gaussian: out is NULL"), RT_EINVAL;
    memset(out, 0, sizeof *out);
    if (!in) return rt_set_error("sac_squashed_gaussian: inputs are NULL"), RT_EINVAL;
    if (sac_config_check(cfg) != RT_OK) return RT_EINVAL;
    chk c = {"sac_squashed_gaussian", -1, -1, -1};
    int rc;
    if ((rc = check_float(&c, "mean", in->mean, 2)) != RT_OK || (rc = check_float(&c, "log_std", in->log_std, 2)) != RT_OK ||
        (in->noise && (rc = check_float(&c, "noise", in->noise, 2)) != RT_OK) ||
        (rc = check_bounds(&c, in->action_low, in->action_high)) != RT_OK)
        return rc;
    if (!in->noise && !gen)
        return rt_set_error("sac_squashed_gaussian: no noise given and no generator to draw it"), RT_EINVAL;

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("sac_squashed_gaussian: cannot create a scope"), RT_ERR;
    rc = RT_ERR;
    int64_t shape[2] = {c.B, c.A};
    rt_tensor *eps = in->noise ? rt_detach(W, in->noise) : rt_randn(W, shape, 2, gen, RT_OPTS((rt_dtype)c.dt));
    rt_tensor *log_std = sac_log_std(W, cfg, in->log_std); /* the effective log_std, reported */
    rt_tensor *scale = NULL, *bias = NULL;
    if (in->action_low) {
        scale = rt_mul_scalar(W, rt_sub(W, in->action_high, in->action_low), 0.5); /* [A] */
        bias = rt_mul_scalar(W, rt_add(W, in->action_high, in->action_low), 0.5);
        if (!scale || !bias) goto done;
    }
    /* y = tanh(mean + exp(log_std) eps) and its log-density: one fused op */
    rt_tensor *logp = NULL;
    rt_squash_opts so = squash_opts(cfg);
    rt_tensor *y = rt_squashed_gaussian(W, in->mean, in->log_std, eps,
                                        cfg->action_units == SAC_UNITS_ENV ? scale : NULL, &so, &logp);
    rt_tensor *action = y, *mean_action = rt_tanh(W, rt_detach(W, in->mean));
    if (scale) {
        /* y*scale + bias can round one ulp past a bound when |y| = 1 */
        action = rt_clamp_t(W, rt_add(W, rt_mul(W, y, scale), bias), in->action_low, in->action_high);
        mean_action = rt_clamp_t(W, rt_add(W, rt_mul(W, mean_action, scale), bias), in->action_low,
                                 in->action_high);
    }
    if (!logp || !action || !mean_action) goto done;
    if (m) {
        int g = rt_no_grad_begin();
        m->entropy = -rt_item(rt_mean(W, logp, RT_DIM_ALL, 0));
        m->log_std = rt_item(rt_mean(W, log_std, RT_DIM_ALL, 0));
        m->count = (double)c.B;
        rt_grad_mode_restore(g);
    }
    out->action = rt_move(action, S);
    out->squashed = rt_move(y, S);
    out->logp = rt_move(logp, S);
    out->log_std = rt_move(log_std, S);
    out->mean_action = rt_move(mean_action, S);
    out->noise = rt_move(eps, S);
    rc = RT_OK;
done:
    rt_scope_free(W);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Continuous losses                                                         */
/* ------------------------------------------------------------------------ */

rt_tensor *sac_critic_loss(rt_scope *S, const sac_config *cfg, const sac_critic_inputs *in, sac_metrics *m,
                           rt_tensor **target)
{
    metrics_reset(m);
    if (target) *target = NULL;
    if (!in) return rt_set_error("sac_critic_loss: inputs are NULL"), NULL;
    if (sac_config_check(cfg) != RT_OK) return NULL;
    chk c = {"sac_critic_loss", -1, -1, -1};
    if (check_float(&c, "q1", in->q1, 1) || check_float(&c, "q2", in->q2, 1) ||
        check_float(&c, "q1_next", in->q1_next, 1) || check_float(&c, "q2_next", in->q2_next, 1) ||
        check_float(&c, "next_logp", in->next_logp, 1) || check_float(&c, "rewards", in->rewards, 1) ||
        check_mask(&c, "terminated", in->terminated))
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("sac_critic_loss: cannot create a scope"), NULL;
    /* min_i Q'_i(s',a') - alpha log pi(a'|s') */
    rt_tensor *next = rt_sub(W, rt_minimum(W, in->q1_next, in->q2_next), rt_mul_scalar(W, in->next_logp, cfg->alpha));
    rt_tensor *y = bellman_target(W, cfg, in->rewards, in->terminated, next);
    rt_tensor *loss = twin_mse(W, cfg, in->q1, in->q2, y, m);
    if (loss) {
        loss = rt_move(loss, S);
        if (target) *target = rt_move(y, S);
    }
    rt_scope_free(W);
    return loss;
}

rt_tensor *sac_actor_loss(rt_scope *S, const sac_config *cfg, const sac_actor_inputs *in, sac_metrics *m)
{
    metrics_reset(m);
    if (!in) return rt_set_error("sac_actor_loss: inputs are NULL"), NULL;
    if (sac_config_check(cfg) != RT_OK) return NULL;
    chk c = {"sac_actor_loss", -1, -1, -1};
    if (check_float(&c, "logp", in->logp, 1) || check_float(&c, "q1", in->q1, 1) || check_float(&c, "q2", in->q2, 1))
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("sac_actor_loss: cannot create a scope"), NULL;
    rt_tensor *q = q_reduce(W, cfg->q_reduce, in->q1, in->q2);
    rt_tensor *loss = rt_mean(W, rt_sub(W, rt_mul_scalar(W, in->logp, cfg->alpha), q), RT_DIM_ALL, 0);
    if (loss && m) {
        int g = rt_no_grad_begin();
        m->loss = rt_item(loss);
        m->min_q = rt_item(rt_mean(W, q, RT_DIM_ALL, 0));
        m->entropy = -rt_item(rt_mean(W, in->logp, RT_DIM_ALL, 0));
        m->alpha = cfg->alpha;
        m->count = (double)c.B;
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss, S);
    rt_scope_free(W);
    return loss;
}

/* -mean(coef * d) with coef = log_alpha or exp(log_alpha) ([] or [1]) and d
 * detached; d is [B], or [B,A] already weighted by pi (discrete). */
static rt_tensor *alpha_coef(rt_scope *W, const sac_config *cfg, const rt_tensor *log_alpha)
{
    return cfg->alpha_loss == SAC_ALPHA_LOSS_ALPHA ? rt_exp(W, log_alpha) : rt_alias(W, log_alpha);
}

static void alpha_metrics(rt_scope *W, sac_metrics *m, const rt_tensor *loss, const rt_tensor *log_alpha, double H,
                          int64_t B)
{
    if (!m || !loss) return;
    int g = rt_no_grad_begin();
    m->loss = rt_item(loss);
    m->alpha = exp(rt_item(rt_detach(W, log_alpha)));
    m->target_entropy = H;
    m->count = (double)B;
    rt_grad_mode_restore(g);
}

rt_tensor *sac_alpha_loss(rt_scope *S, const sac_config *cfg, const sac_alpha_inputs *in, sac_metrics *m)
{
    metrics_reset(m);
    if (!in) return rt_set_error("sac_alpha_loss: inputs are NULL"), NULL;
    if (sac_config_check(cfg) != RT_OK) return NULL;
    chk c = {"sac_alpha_loss", -1, -1, -1};
    if (check_float(&c, "logp", in->logp, 1) || check_log_alpha(&c, in->log_alpha)) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("sac_alpha_loss: cannot create a scope"), NULL;
    double H = sac_target_entropy(cfg, cfg->action_dim, 0);
    rt_tensor *d = rt_add_scalar(W, rt_detach(W, in->logp), H);
    rt_tensor *loss = rt_neg(W, rt_mean(W, rt_mul(W, alpha_coef(W, cfg, in->log_alpha), d), RT_DIM_ALL, 0));
    alpha_metrics(W, m, loss, in->log_alpha, H, c.B);
    if (loss && m) {
        int g = rt_no_grad_begin();
        m->entropy = -rt_item(rt_mean(W, in->logp, RT_DIM_ALL, 0));
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss, S);
    rt_scope_free(W);
    return loss;
}

/* ------------------------------------------------------------------------ */
/* Discrete losses (CleanRL sac_atari.py)                                    */
/* ------------------------------------------------------------------------ */

rt_tensor *sac_discrete_critic_loss(rt_scope *S, const sac_config *cfg, const sac_discrete_critic_inputs *in,
                                    sac_metrics *m, rt_tensor **target)
{
    metrics_reset(m);
    if (target) *target = NULL;
    if (!in) return rt_set_error("sac_discrete_critic_loss: inputs are NULL"), NULL;
    if (sac_config_check(cfg) != RT_OK) return NULL;
    chk c = {"sac_discrete_critic_loss", -1, -1, -1};
    if (check_float(&c, "q1", in->q1, 2) || check_float(&c, "q2", in->q2, 2) ||
        check_float(&c, "q1_next", in->q1_next, 2) || check_float(&c, "q2_next", in->q2_next, 2) ||
        check_float(&c, "next_logits", in->next_logits, 2) || check_float(&c, "rewards", in->rewards, 1) ||
        check_mask(&c, "terminated", in->terminated) || check_actions(&c, in->actions))
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("sac_discrete_critic_loss: cannot create a scope"), NULL;
    rt_tensor *pi, *live;
    rt_tensor *logpi = safe_log_softmax(W, rt_detach(W, in->next_logits), &pi, &live);
    rt_tensor *mq = rt_where_scalar(W, live, rt_minimum(W, in->q1_next, in->q2_next), 0.0);
    /* sum_a pi'(a) (min Q'(s',a) - alpha log pi'(a)): the exact expectation */
    rt_tensor *next = rt_sum(W, rt_mul(W, pi, rt_sub(W, mq, rt_mul_scalar(W, logpi, cfg->alpha))), 1, 0);
    rt_tensor *y = bellman_target(W, cfg, in->rewards, in->terminated, next);
    rt_tensor *idx = rt_unsqueeze(W, in->actions, 1);
    rt_tensor *q1a = rt_squeeze(W, rt_gather(W, in->q1, 1, idx), 1), *q2a = rt_squeeze(W, rt_gather(W, in->q2, 1, idx), 1);
    rt_tensor *loss = twin_mse(W, cfg, q1a, q2a, y, m);
    if (loss && m) {
        int g = rt_no_grad_begin();
        m->entropy = policy_entropy(W, pi, logpi);
        rt_grad_mode_restore(g);
    }
    if (loss) {
        loss = rt_move(loss, S);
        if (target) *target = rt_move(y, S);
    }
    rt_scope_free(W);
    return loss;
}

rt_tensor *sac_discrete_actor_loss(rt_scope *S, const sac_config *cfg, const sac_discrete_actor_inputs *in,
                                   sac_metrics *m)
{
    metrics_reset(m);
    if (!in) return rt_set_error("sac_discrete_actor_loss: inputs are NULL"), NULL;
    if (sac_config_check(cfg) != RT_OK) return NULL;
    chk c = {"sac_discrete_actor_loss", -1, -1, -1};
    if (check_float(&c, "logits", in->logits, 2) || check_float(&c, "q1", in->q1, 2) ||
        check_float(&c, "q2", in->q2, 2))
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("sac_discrete_actor_loss: cannot create a scope"), NULL;
    rt_tensor *pi, *live;
    rt_tensor *logpi = safe_log_softmax(W, in->logits, &pi, &live);
    rt_tensor *q = rt_where_scalar(W, live, rt_detach(W, q_reduce(W, cfg->q_reduce, in->q1, in->q2)), 0.0);
    rt_tensor *el = rt_mul(W, pi, rt_sub(W, rt_mul_scalar(W, logpi, cfg->alpha), q)); /* [B,A] */
    rt_tensor *loss = discrete_reduce(W, cfg, el);
    if (loss && m) {
        int g = rt_no_grad_begin();
        m->loss = rt_item(loss);
        m->min_q = rt_item(rt_mean(W, rt_sum(W, rt_mul(W, pi, q), 1, 0), RT_DIM_ALL, 0));
        m->entropy = policy_entropy(W, pi, logpi);
        m->alpha = cfg->alpha;
        m->count = (double)c.B;
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss, S);
    rt_scope_free(W);
    return loss;
}

rt_tensor *sac_discrete_alpha_loss(rt_scope *S, const sac_config *cfg, const sac_discrete_alpha_inputs *in,
                                   sac_metrics *m)
{
    metrics_reset(m);
    if (!in) return rt_set_error("sac_discrete_alpha_loss: inputs are NULL"), NULL;
    if (sac_config_check(cfg) != RT_OK) return NULL;
    chk c = {"sac_discrete_alpha_loss", -1, -1, -1};
    if (check_float(&c, "logits", in->logits, 2) || check_log_alpha(&c, in->log_alpha)) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("sac_discrete_alpha_loss: cannot create a scope"), NULL;
    double H = sac_target_entropy(cfg, c.A, 1);
    rt_tensor *pi, *live;
    rt_tensor *logpi = safe_log_softmax(W, rt_detach(W, in->logits), &pi, &live);
    /* sg(pi) * sg(log pi + H), 0 where pi = 0 */
    rt_tensor *d = rt_mul(W, pi, rt_where_scalar(W, live, rt_add_scalar(W, logpi, H), 0.0));
    rt_tensor *el = rt_neg(W, rt_mul(W, alpha_coef(W, cfg, in->log_alpha), d));
    rt_tensor *loss = discrete_reduce(W, cfg, el);
    alpha_metrics(W, m, loss, in->log_alpha, H, c.B);
    if (loss && m) {
        int g = rt_no_grad_begin();
        m->entropy = policy_entropy(W, pi, logpi);
        rt_grad_mode_restore(g);
    }
    loss = rt_move(loss, S);
    rt_scope_free(W);
    return loss;
}
