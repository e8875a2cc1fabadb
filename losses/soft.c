/*
 * soft.c -- SofT-GRPO soft-thinking tokens (see soft.h for the API and the
 * formulas; specs/pg_losses.md section 4 for the reference and the worked
 * example EX-S the tests reproduce).
 *
 * Layout: settings table and config helpers, input checks, the rollout, the
 * training-input helpers, and the log-prob functions. Every tensor made here
 * lives in a private scope W; only the results are moved to the caller's
 * scope. Op chains are checked once at their end (an op given NULL returns
 * NULL and keeps the first message).
 */
#include "soft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define OFF(field) offsetof(soft_config, field)

/* ------------------------------------------------------------------------ */
/* Settings                                                                  */
/* ------------------------------------------------------------------------ */

/* Bounds: what the parser refuses outright. They are the closures of
 * soft_config_check's rules (which also keep min <= max); FIN where the
 * value must be finite, INFINITY where +-inf is meaningful (no clamp, keep
 * every component). */
#define REAL(nm, field, d, lo, hi, help) {nm, LSET_REAL, OFF(field), d, lo, hi, NULL, help}
#define FIN 1e300
static const soft_setting settings[] = {
    REAL("temperature", temperature, 1.0, 0, FIN, "logits are divided by T (rollout and training)"),
    REAL("tau_g", tau_g, 0.1, 0, FIN,
         "Gumbel-softmax temperature of the mixing weights (gumbel_softmax_temperature)"),
    REAL("noise_factor", noise_factor, 1.0, -FIN, FIN, "g' = log p~ + noise_factor * eps"),
    {"top_k", LSET_INT, OFF(top_k), 5, 1, 1e18, NULL, "K, candidates kept and stored per soft token (top_k = max_topk)"},
    REAL("top_p", top_p, 0.95, 0, 1, "rollout nucleus threshold (1 = off)"),
    REAL("min_p", min_p, 0.0, 0, 1, "rollout min-p filter p >= min_p * max p (0 = off)"),
    REAL("noise_min", noise_min, -1.5, -INFINITY, INFINITY, "lower clamp of the rollout Gumbel noise eps"),
    REAL("noise_max", noise_max, 3.0, -INFINITY, INFINITY, "upper clamp of the rollout Gumbel noise eps"),
    REAL("z_min", z_min, -1.5, -FIN, FIN, "lower clamp of z = g' - log q in the soft log-prob"),
    REAL("z_max", z_max, 3.0, -FIN, FIN, "upper clamp of z = g' - log q in the soft log-prob"),
    REAL("keep_logp", keep_logp, -3.0, -INFINITY, INFINITY, "a component counts in the mean when log q > keep_logp"),
    REAL("prob_eps", prob_eps, 1e-6, 0, 1, "log q is taken of q + prob_eps"),
};

soft_config soft_config_default(void)
{
    soft_config c;
    memset(&c, 0, sizeof c);
    lset_defaults(settings, COUNT(settings), &c);
    return c;
}

int soft_config_check(const soft_config *c)
{
    if (!c) return rt_set_error("soft: config is NULL"), RT_EINVAL;
#define BAD(cond, ...) \
    if (cond) return rt_set_error(__VA_ARGS__), RT_EINVAL
    BAD(!(c->temperature > 0 && isfinite(c->temperature)), "soft: temperature = %g must be > 0", c->temperature);
    BAD(!(c->tau_g > 0 && isfinite(c->tau_g)), "soft: tau_g = %g must be > 0", c->tau_g);
    BAD(!isfinite(c->noise_factor), "soft: noise_factor = %g must be finite", c->noise_factor);
    BAD(c->top_k < 1, "soft: top_k = %lld must be >= 1", (long long)c->top_k);
    BAD(!(c->top_p > 0 && c->top_p <= 1), "soft: top_p = %g must be in (0, 1]", c->top_p);
    BAD(!(c->min_p >= 0 && c->min_p <= 1), "soft: min_p = %g must be in [0, 1]", c->min_p);
    BAD(!(c->noise_min <= c->noise_max), "soft: noise_min = %g must be <= noise_max = %g", c->noise_min,
        c->noise_max);
    BAD(!(c->z_min <= c->z_max), "soft: z_min = %g must be <= z_max = %g", c->z_min, c->z_max);
    BAD(!(isfinite(c->z_min) && isfinite(c->z_max)), "soft: z_min, z_max = %g, %g must be finite (they bound "
        "exp(-z))", c->z_min, c->z_max);
    BAD(isnan(c->keep_logp), "soft: keep_logp is NaN");
    BAD(!(c->prob_eps > 0 && c->prob_eps < 1), "soft: prob_eps = %g must be in (0, 1)", c->prob_eps);
#undef BAD
    return RT_OK;
}

const soft_setting *soft_settings(size_t *n)
{
    if (n) *n = COUNT(settings);
    return settings;
}

int soft_config_set(soft_config *cfg, const char *name, const char *value)
{
    int rc = lset_apply(settings, COUNT(settings), cfg, "soft", name, value);
    return rc == RT_OK ? soft_config_check(cfg) : rc;
}

const char *soft_setting_format(const soft_config *cfg, const soft_setting *s, char *buf, size_t cap)
{
    return lset_format(s, cfg, buf, cap);
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

static int null_arg(const char *fn, const char *what)
{
    /* an op that produced this NULL already said why: keep its message */
    if (rt_last_error()[0] == '\0') rt_set_error("%s: %s is NULL", fn, what);
    return RT_EINVAL;
}

static int is_float(const rt_tensor *t) { return rt_dtype_of(t) == RT_F32 || rt_dtype_of(t) == RT_F64; }

/* x must be float (want_float) or int64, with ndim >= min_ndim. */
static int check_tensor(const char *fn, const char *what, const rt_tensor *x, int want_float, int min_ndim)
{
    char a[64];
    if (!x) return null_arg(fn, what);
    if (rt_ndim(x) < min_ndim)
        return rt_set_error("%s: %s must have at least %d dims, got %s", fn, what, min_ndim,
                            rt_shape_str(x, a, sizeof a)),
               RT_EINVAL;
    if (want_float && !is_float(x))
        return rt_set_error("%s: %s must be float32 or float64, got %s", fn, what, rt_dtype_name(rt_dtype_of(x))),
               RT_EINVAL;
    if (!want_float && rt_dtype_of(x) != RT_I64)
        return rt_set_error("%s: %s must be int64, got %s", fn, what, rt_dtype_name(rt_dtype_of(x))), RT_EINVAL;
    return RT_OK;
}

/* shape(x) == shape(like) (drop_last: shape(x) == shape(like)[:-1]). */
static int check_same_shape(const char *fn, const char *what, const rt_tensor *x, const char *like_name,
                            const rt_tensor *like, int drop_last)
{
    char a[64], b[64];
    int nx = rt_ndim(x), nl = rt_ndim(like) - (drop_last ? 1 : 0);
    int ok = nx == nl;
    for (int d = 0; ok && d < nx; d++) ok = rt_size(x, d) == rt_size(like, d);
    if (!ok)
        return rt_set_error("%s: %s has shape %s, expected %s of %s %s", fn, what, rt_shape_str(x, a, sizeof a),
                            drop_last ? "the leading dims" : "the shape", like_name,
                            rt_shape_str(like, b, sizeof b)),
               RT_EINVAL;
    return RT_OK;
}

static int check_same_dtype(const char *fn, const char *what, const rt_tensor *x, const char *like_name,
                            const rt_tensor *like)
{
    if (rt_dtype_of(x) != rt_dtype_of(like))
        return rt_set_error("%s: %s is %s but %s is %s", fn, what, rt_dtype_name(rt_dtype_of(x)), like_name,
                            rt_dtype_name(rt_dtype_of(like))),
               RT_EINVAL;
    return RT_OK;
}

/* ------------------------------------------------------------------------ */
/* Rollout                                                                   */
/* ------------------------------------------------------------------------ */

rt_tensor *soft_gumbel_noise(rt_scope *S, const soft_config *cfg, const int64_t *shape, int ndim, rt_gen *gen,
                             rt_dtype dt)
{
    if (soft_config_check(cfg) != RT_OK) return NULL;
    if (!gen) return rt_set_error("soft_gumbel_noise: generator is NULL"), NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("soft_gumbel_noise: cannot create a scope"), NULL;
    /* -log(E), E ~ Exp(1), is standard Gumbel: rt_gumbel's -log(-log U) */
    rt_tensor *eps = rt_clamp(W, rt_gumbel(W, shape, ndim, gen, RT_OPTS(dt)), cfg->noise_min, cfg->noise_max);
    if (eps) rt_move(eps, S);
    rt_scope_free(W);
    return eps;
}

/* p [N,K] -> p with entries outside keep [N,K] set to 0, renormalised. */
static rt_tensor *renorm_kept(rt_scope *W, const rt_tensor *p, const rt_tensor *keep)
{
    rt_tensor *q = rt_where_scalar(W, keep, p, 0.0);
    return rt_div(W, q, rt_sum(W, q, 1, 1));
}

int soft_rollout(rt_scope *S, const soft_config *cfg, const rt_tensor *logits, const rt_tensor *noise, rt_gen *gen,
                 soft_token *out)
{
    static const char fn[] = "soft_rollout";
    char a[64];
    if (!out) return rt_set_error("%s: out is NULL", fn), RT_EINVAL;
    memset(out, 0, sizeof *out);
    if (soft_config_check(cfg) != RT_OK) return RT_EINVAL;
    if (check_tensor(fn, "logits", logits, 1, 2) != RT_OK) return RT_EINVAL;
    if (rt_ndim(logits) != 2)
        return rt_set_error("%s: logits must be [N,V], got %s", fn, rt_shape_str(logits, a, sizeof a)), RT_EINVAL;
    int64_t N = rt_size(logits, 0), V = rt_size(logits, 1), K = cfg->top_k;
    if (V < K)
        return rt_set_error("%s: logits %s have V = %lld < top_k = %lld candidates", fn,
                            rt_shape_str(logits, a, sizeof a), (long long)V, (long long)K),
               RT_EINVAL;
    rt_dtype dt = rt_dtype_of(logits);
    int64_t nk[2] = {N, K};
    if (noise) {
        if (check_tensor(fn, "noise", noise, 1, 2) != RT_OK || check_same_dtype(fn, "noise", noise, "logits", logits))
            return RT_EINVAL;
        if (rt_ndim(noise) != 2 || rt_size(noise, 0) != N || rt_size(noise, 1) != K)
            return rt_set_error("%s: noise has shape %s, expected [%lld, %lld] ([N, top_k])", fn,
                                rt_shape_str(noise, a, sizeof a), (long long)N, (long long)K),
                   RT_EINVAL;
    } else if (!gen) {
        return rt_set_error("%s: no noise given and the generator is NULL", fn), RT_EINVAL;
    }

    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), RT_ERR;
    int g = rt_no_grad_begin();
    int rc = RT_ERR;

    /* p = softmax(z/T); its K largest, renormalised (top-k), sorted desc */
    rt_tensor *p = rt_softmax(W, rt_div_scalar(W, rt_detach(W, logits), cfg->temperature), 1); /* [N,V] */
    rt_tensor *cand = NULL;                                                                  /* int64 [N,K] */
    rt_tensor *pk = rt_topk(W, p, K, 1, 1, &cand);                                           /* [N,K] */
    pk = rt_div(W, pk, rt_sum(W, pk, 1, 1));
    if (cfg->top_p < 1.0) {
        /* nucleus: keep a candidate while the mass before it is < top_p (the first always) */
        rt_tensor *before = rt_sub(W, rt_cumsum(W, pk, 1), pk);
        pk = renorm_kept(W, pk, rt_compare_scalar(W, before, RT_LT, cfg->top_p));
    }
    if (cfg->min_p > 0.0) {
        rt_tensor *top = rt_narrow(W, pk, 1, 0, 1); /* [N,1], the largest */
        pk = renorm_kept(W, pk, rt_compare(W, pk, RT_GE, rt_mul_scalar(W, top, cfg->min_p)));
    }
    rt_tensor *ell = rt_log(W, rt_add_scalar(W, pk, cfg->prob_eps)); /* l_roll [N,K] */

    rt_tensor *eps = noise ? rt_clamp(W, noise, cfg->noise_min, cfg->noise_max)
                           : soft_gumbel_noise(W, cfg, nk, 2, gen, dt); /* [N,K] */
    rt_tensor *gp = rt_add_scaled(W, ell, eps, cfg->noise_factor);      /* g' [N,K] */
    rt_tensor *y = rt_softmax(W, rt_div_scalar(W, gp, cfg->tau_g), 1);  /* y' [N,K] */

    /* stored order: y' descending (stable, so ties keep candidate order) */
    rt_tensor *order = NULL;
    rt_tensor *w_sorted = rt_sort(W, y, 1, 1, &order);
    if (!w_sorted || !eps) goto done;
    rt_tensor *ids = rt_gather(W, cand, 1, order);
    rt_tensor *g_sorted = rt_gather(W, gp, 1, order);
    rt_tensor *ell_sorted = rt_gather(W, ell, 1, order);
    rt_tensor *eps_sorted = rt_gather(W, eps, 1, order);
    rt_tensor *emitted = rt_squeeze(W, rt_narrow(W, ids, 1, 0, 1), 1);

    /* the sampler's reported log-prob: mean over l_roll > keep_logp of the
     * Gumbel log-density of eps (0 when no candidate qualifies) */
    rt_tensor *keep = rt_compare_scalar(W, ell_sorted, RT_GT, cfg->keep_logp);
    rt_tensor *dens = rt_sub(W, rt_neg(W, eps_sorted), rt_exp(W, rt_neg(W, eps_sorted)));
    rt_tensor *m = rt_sum(W, rt_to_dtype(W, keep, dt), 1, 0);
    rt_tensor *s = rt_sum(W, rt_where_scalar(W, keep, dens, 0.0), 1, 0);
    rt_tensor *rlogp = rt_where_scalar(W, rt_compare_scalar(W, m, RT_GT, 0.0),
                                       rt_div(W, s, rt_clamp(W, m, 1.0, INFINITY)), 0.0);
    rt_tensor *ids_c = rt_contiguous(W, ids), *g_c = rt_contiguous(W, g_sorted), *w_c = rt_contiguous(W, w_sorted),
              *ell_c = rt_contiguous(W, ell_sorted), *eps_c = rt_contiguous(W, eps_sorted),
              *em_c = rt_contiguous(W, emitted);
    if (!ids_c || !g_c || !w_c || !ell_c || !eps_c || !em_c || !rlogp) goto done;
    out->ids = rt_move(ids_c, S);
    out->gumbels = rt_move(g_c, S);
    out->weights = rt_move(w_c, S);
    out->cand_logp = rt_move(ell_c, S);
    out->noise = rt_move(eps_c, S);
    out->emitted = rt_move(em_c, S);
    out->rollout_logp = rt_move(rlogp, S);
    rc = RT_OK;
done:
    rt_grad_mode_restore(g);
    rt_scope_free(W);
    return rc;
}

rt_tensor *soft_mix_embedding(rt_scope *S, const rt_tensor *table, const rt_tensor *ids, const rt_tensor *weights)
{
    static const char fn[] = "soft_mix_embedding";
    char a[64];
    if (check_tensor(fn, "table", table, 1, 2) != RT_OK || check_tensor(fn, "ids", ids, 0, 1) != RT_OK ||
        check_tensor(fn, "weights", weights, 1, 1) != RT_OK)
        return NULL;
    if (rt_ndim(table) != 2)
        return rt_set_error("%s: table must be [V,D], got %s", fn, rt_shape_str(table, a, sizeof a)), NULL;
    if (check_same_shape(fn, "weights", weights, "ids", ids, 0) != RT_OK ||
        check_same_dtype(fn, "weights", weights, "table", table) != RT_OK)
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *e = rt_embedding(W, table, ids);                            /* [...,K,D] */
    rt_tensor *w = rt_div(W, weights, rt_sum(W, weights, -1, 1));           /* [...,K] */
    rt_tensor *mix = rt_sum(W, rt_mul(W, e, rt_unsqueeze(W, w, -1)), -2, 0); /* [...,D] */
    if (mix) rt_move(mix, S);
    rt_scope_free(W);
    return mix;
}

/* ------------------------------------------------------------------------ */
/* Training input                                                            */
/* ------------------------------------------------------------------------ */

/* bool [...] in scope W (see soft_is_discrete). */
static rt_tensor *discrete_of(rt_scope *W, const rt_tensor *ids)
{
    int64_t K = rt_size(ids, -1);
    if (K <= 1) {
        int64_t shape[RT_MAX_DIMS];
        int nd = rt_shape(ids, shape, RT_MAX_DIMS);
        if (nd < 1) return NULL;
        return rt_ones(W, shape, nd - 1, RT_OPTS(RT_BOOL));
    }
    rt_tensor *rest = rt_narrow(W, ids, -1, 1, K - 1); /* [...,K-1] */
    return rt_all(W, rt_compare_scalar(W, rest, RT_EQ, 0.0), -1, 0);
}

rt_tensor *soft_is_discrete(rt_scope *S, const rt_tensor *ids)
{
    if (check_tensor("soft_is_discrete", "ids", ids, 0, 1) != RT_OK) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("soft_is_discrete: cannot create a scope"), NULL;
    rt_tensor *d = discrete_of(W, ids);
    if (d) rt_move(d, S);
    rt_scope_free(W);
    return d;
}

/* Detached weights [...,K] in scope W (see soft_input_weights). */
static rt_tensor *input_weights(rt_scope *W, const soft_config *cfg, const rt_tensor *ids, const rt_tensor *gumbels)
{
    int64_t K = rt_size(ids, -1);
    rt_tensor *disc = rt_unsqueeze(W, discrete_of(W, ids), -1);                          /* [...,1] */
    rt_tensor *soft = rt_softmax(W, rt_div_scalar(W, rt_detach(W, gumbels), cfg->tau_g), -1); /* [...,K] */
    rt_tensor *first = rt_compare_scalar(W, rt_arange(W, 0, (double)K, 1, RT_OPTS(RT_I64)), RT_EQ, 0.0); /* [K] */
    rt_tensor *onehot = rt_to_dtype(W, first, rt_dtype_of(gumbels));
    return rt_where(W, disc, onehot, soft);
}

static int check_ids_gumbels(const char *fn, const soft_config *cfg, const rt_tensor *ids, const rt_tensor *gumbels)
{
    if (soft_config_check(cfg) != RT_OK) return RT_EINVAL;
    if (check_tensor(fn, "ids", ids, 0, 1) != RT_OK || check_tensor(fn, "gumbels", gumbels, 1, 1) != RT_OK)
        return RT_EINVAL;
    return check_same_shape(fn, "gumbels", gumbels, "ids", ids, 0);
}

rt_tensor *soft_input_weights(rt_scope *S, const soft_config *cfg, const rt_tensor *ids, const rt_tensor *gumbels)
{
    if (check_ids_gumbels("soft_input_weights", cfg, ids, gumbels) != RT_OK) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("soft_input_weights: cannot create a scope"), NULL;
    int g = rt_no_grad_begin();
    rt_tensor *w = input_weights(W, cfg, ids, gumbels);
    rt_grad_mode_restore(g);
    if (w) rt_move(w, S);
    rt_scope_free(W);
    return w;
}

rt_tensor *soft_input_embeds(rt_scope *S, const soft_config *cfg, const rt_tensor *table, const rt_tensor *ids,
                             const rt_tensor *gumbels)
{
    if (check_ids_gumbels("soft_input_embeds", cfg, ids, gumbels) != RT_OK) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("soft_input_embeds: cannot create a scope"), NULL;
    int g = rt_no_grad_begin(); /* the reference feeds sg(inputs_embeds) */
    rt_tensor *e = soft_mix_embedding(W, table, ids, input_weights(W, cfg, ids, gumbels));
    rt_grad_mode_restore(g);
    if (e) rt_move(e, S);
    rt_scope_free(W);
    return e;
}

/* ------------------------------------------------------------------------ */
/* Log-probabilities                                                         */
/* ------------------------------------------------------------------------ */

/* The parts of the soft log-prob, in W: logp [...], the kept components
 * (bool [...,K]) and the clamped ones (bool [...,K]). */
typedef struct logp_parts {
    rt_tensor *logp, *keep, *clamped, *count;
} logp_parts;

static logp_parts soft_parts(rt_scope *W, const soft_config *cfg, const rt_tensor *topk, const rt_tensor *gumbels)
{
    logp_parts r = {NULL, NULL, NULL, NULL};
    rt_dtype dt = rt_dtype_of(topk);
    rt_tensor *q = rt_softmax(W, rt_div_scalar(W, topk, cfg->temperature), -1); /* [...,K] renormalised over K */
    rt_tensor *ell = rt_log(W, rt_add_scalar(W, q, cfg->prob_eps));             /* l [...,K] */
    rt_tensor *raw = rt_sub(W, rt_detach(W, gumbels), ell);                     /* g' - l */
    rt_tensor *z = rt_clamp(W, raw, cfg->z_min, cfg->z_max);
    rt_tensor *d = rt_sub(W, rt_neg(W, z), rt_exp(W, rt_neg(W, z))); /* Gumbel log-density [...,K] */
    rt_tensor *keep = rt_compare_scalar(W, ell, RT_GT, cfg->keep_logp);
    rt_tensor *m = rt_sum(W, rt_to_dtype(W, keep, dt), -1, 0);                     /* M [...] */
    rt_tensor *s = rt_sum(W, rt_where_scalar(W, keep, d, 0.0), -1, 0);             /* [...] */
    rt_tensor *mean = rt_div(W, s, rt_clamp(W, m, 1.0, INFINITY));
    r.logp = rt_where_scalar(W, rt_compare_scalar(W, m, RT_GT, 0.0), mean, 0.0);  /* M = 0 -> 0 */
    r.keep = keep;
    r.count = m;
    /* torch's clamp passes gradient on the bounds, so "clamped" is strictly outside */
    r.clamped = rt_logical_or(W, rt_compare_scalar(W, raw, RT_LT, cfg->z_min),
                              rt_compare_scalar(W, raw, RT_GT, cfg->z_max));
    return r;
}

/* Fill m from the parts over the rows selected by rows (bool [...], NULL =
 * all); total = every position (for soft_frac). */
static void fill_metrics(rt_scope *W, soft_metrics *m, const logp_parts *p, const rt_tensor *rows)
{
    int g = rt_no_grad_begin();
    double total = (double)rt_numel(p->logp);
    rt_tensor *keep = rows ? rt_logical_and(W, p->keep, rt_unsqueeze(W, rows, -1)) /* [...,K] */
                           : rt_alias(W, p->keep);
    rt_tensor *cl = rt_logical_and(W, keep, p->clamped);
    double n = rows ? rt_item(rt_sum(W, rt_to_dtype(W, rows, RT_F64), RT_DIM_ALL, 0)) : total;
    double nkeep = rt_item(rt_sum(W, rt_to_dtype(W, keep, RT_F64), RT_DIM_ALL, 0));
    double ncl = rt_item(rt_sum(W, rt_to_dtype(W, cl, RT_F64), RT_DIM_ALL, 0));
    rt_tensor *empty = rt_compare_scalar(W, p->count, RT_EQ, 0.0);
    if (rows) empty = rt_logical_and(W, empty, rows);
    double nempty = rt_item(rt_sum(W, rt_to_dtype(W, empty, RT_F64), RT_DIM_ALL, 0));
    m->count = n;
    m->soft_frac = total > 0 ? n / total : NAN;
    m->kept_mean = n > 0 ? nkeep / n : NAN;
    m->clamp_frac = nkeep > 0 ? ncl / nkeep : NAN;
    m->empty_rows = nempty;
    rt_grad_mode_restore(g);
}

static void clear_metrics(soft_metrics *m)
{
    if (m) m->count = m->soft_frac = m->kept_mean = m->clamp_frac = m->empty_rows = NAN;
}

static int check_topk(const char *fn, const soft_config *cfg, const rt_tensor *topk, const rt_tensor *gumbels)
{
    if (soft_config_check(cfg) != RT_OK) return RT_EINVAL;
    if (check_tensor(fn, "topk_logits", topk, 1, 1) != RT_OK || check_tensor(fn, "gumbels", gumbels, 1, 1) != RT_OK ||
        check_same_shape(fn, "gumbels", gumbels, "topk_logits", topk, 0) != RT_OK ||
        check_same_dtype(fn, "gumbels", gumbels, "topk_logits", topk) != RT_OK)
        return RT_EINVAL;
    if (rt_size(topk, -1) < 1) return rt_set_error("%s: topk_logits has K = 0 candidates", fn), RT_EINVAL;
    return RT_OK;
}

rt_tensor *soft_logp(rt_scope *S, const soft_config *cfg, const rt_tensor *topk_logits, const rt_tensor *gumbels,
                     soft_metrics *m)
{
    clear_metrics(m);
    if (check_topk("soft_logp", cfg, topk_logits, gumbels) != RT_OK) return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("soft_logp: cannot create a scope"), NULL;
    logp_parts p = soft_parts(W, cfg, topk_logits, gumbels);
    rt_tensor *out = p.logp && p.clamped ? p.logp : NULL;
    if (out && m) fill_metrics(W, m, &p, NULL);
    if (out) rt_move(out, S);
    rt_scope_free(W);
    return out;
}

/* soft_mixed_logps in scope W. */
static rt_tensor *mixed(rt_scope *W, const soft_config *cfg, const rt_tensor *soft_mask, const rt_tensor *topk,
                        const rt_tensor *gumbels, const rt_tensor *discrete, soft_metrics *m)
{
    /* non-soft rows are zeroed before any math, so whatever they store
     * (NaN, inf, padding) reaches neither the result nor the gradient */
    rt_tensor *sm = rt_unsqueeze(W, soft_mask, -1); /* [...,1] */
    rt_tensor *tk = rt_where_scalar(W, sm, topk, 0.0);
    rt_tensor *gs = rt_where_scalar(W, sm, gumbels, 0.0);
    logp_parts p = soft_parts(W, cfg, tk, gs);
    rt_tensor *out = rt_where(W, soft_mask, p.logp, discrete); /* [...] */
    if (!out || !p.clamped) return NULL;
    if (m) fill_metrics(W, m, &p, soft_mask);
    return out;
}

rt_tensor *soft_mixed_logps(rt_scope *S, const soft_config *cfg, const rt_tensor *soft_mask,
                            const rt_tensor *topk_logits, const rt_tensor *gumbels, const rt_tensor *discrete_logps,
                            soft_metrics *m)
{
    static const char fn[] = "soft_mixed_logps";
    clear_metrics(m);
    if (check_topk(fn, cfg, topk_logits, gumbels) != RT_OK) return NULL;
    if (!soft_mask) return null_arg(fn, "soft_mask"), NULL;
    if (!discrete_logps) return null_arg(fn, "discrete_logps"), NULL;
    if (rt_dtype_of(soft_mask) != RT_BOOL)
        return rt_set_error("%s: soft_mask must be bool, got %s", fn, rt_dtype_name(rt_dtype_of(soft_mask))), NULL;
    if (check_same_shape(fn, "soft_mask", soft_mask, "topk_logits", topk_logits, 1) != RT_OK ||
        check_same_shape(fn, "discrete_logps", discrete_logps, "topk_logits", topk_logits, 1) != RT_OK ||
        check_same_dtype(fn, "discrete_logps", discrete_logps, "topk_logits", topk_logits) != RT_OK)
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *out = mixed(W, cfg, soft_mask, topk_logits, gumbels, discrete_logps, m);
    if (out) rt_move(out, S);
    rt_scope_free(W);
    return out;
}

/* log_softmax(logits/T)[labels] in W: [...,V] x int64 [...] -> [...]. */
static rt_tensor *token_logps(rt_scope *W, const soft_config *cfg, const rt_tensor *logits, const rt_tensor *labels)
{
    rt_tensor *ls = rt_log_softmax(W, rt_div_scalar(W, logits, cfg->temperature), -1);
    return rt_squeeze(W, rt_gather(W, ls, -1, rt_unsqueeze(W, labels, -1)), -1);
}

rt_tensor *soft_token_logps(rt_scope *S, const soft_config *cfg, const rt_tensor *logits, const rt_tensor *labels)
{
    static const char fn[] = "soft_token_logps";
    if (soft_config_check(cfg) != RT_OK) return NULL;
    if (check_tensor(fn, "logits", logits, 1, 1) != RT_OK || check_tensor(fn, "labels", labels, 0, 0) != RT_OK ||
        check_same_shape(fn, "labels", labels, "logits", logits, 1) != RT_OK)
        return NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *out = token_logps(W, cfg, logits, labels);
    if (out) rt_move(out, S);
    rt_scope_free(W);
    return out;
}

rt_tensor *soft_logps_from_logits(rt_scope *S, const soft_config *cfg, const rt_tensor *logits, const rt_tensor *ids,
                                  const rt_tensor *gumbels, soft_metrics *m)
{
    static const char fn[] = "soft_logps_from_logits";
    char a[64], b[64];
    clear_metrics(m);
    if (check_ids_gumbels(fn, cfg, ids, gumbels) != RT_OK || check_tensor(fn, "logits", logits, 1, 1) != RT_OK ||
        check_same_dtype(fn, "gumbels", gumbels, "logits", logits) != RT_OK)
        return NULL;
    int ok = rt_ndim(logits) == rt_ndim(ids);
    for (int d = 0; ok && d < rt_ndim(ids) - 1; d++) ok = rt_size(logits, d) == rt_size(ids, d);
    if (!ok)
        return rt_set_error("%s: logits %s and ids %s must agree on every dim but the last ([...,V] vs [...,K])",
                            fn, rt_shape_str(logits, a, sizeof a), rt_shape_str(ids, b, sizeof b)),
               NULL;
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("%s: cannot create a scope", fn), NULL;
    rt_tensor *soft_mask = rt_logical_not(W, discrete_of(W, ids));         /* [...] */
    rt_tensor *topk = rt_gather(W, logits, -1, ids);                        /* [...,K] */
    rt_tensor *label = rt_squeeze(W, rt_narrow(W, ids, -1, 0, 1), -1);      /* [...] */
    rt_tensor *disc = token_logps(W, cfg, logits, label);                   /* [...] */
    rt_tensor *out = soft_mask && topk && disc ? mixed(W, cfg, soft_mask, topk, gumbels, disc, m) : NULL;
    if (out) rt_move(out, S);
    rt_scope_free(W);
    return out;
}
