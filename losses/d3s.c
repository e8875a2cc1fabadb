/*
 * d3s.c -- D3S down-sampling (see d3s.h for the rules; specs/pg_losses.md
 * section 5 for the method and the worked example EX-D the tests reproduce).
 *
 * Layout: the host selections (sorting, the extremes scan, token ranking),
 * the schedule, then the tensor front ends, which copy to the host, select,
 * and hand back bool masks. Host buffers are freed on every path (one
 * cleanup label per function).
 */
#include "d3s.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Sample level: maximum-variance subset                                     */
/* ------------------------------------------------------------------------ */

typedef struct keyed {
    double v;  /* value (or score)                  */
    int64_t i; /* original index (or position)      */
    int fin;   /* tokens: 1 when the score is finite */
} keyed;

/* ascending value, ties by ascending index (the reference's stable sort) */
static int cmp_value_asc(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->v < b->v) return -1;
    if (a->v > b->v) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* finite first, then descending score, ties by ascending position */
static int cmp_score_desc(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->fin != b->fin) return b->fin - a->fin;
    if (a->fin) {
        if (a->v > b->v) return -1;
        if (a->v < b->v) return 1;
    }
    return (a->i > b->i) - (a->i < b->i);
}

static int cmp_i64(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return (a > b) - (a < b);
}

int64_t d3s_maxvar_subset(const double *values, int64_t n, int64_t size, int64_t *idx_out, double *var_out)
{
    if (var_out) *var_out = 0.0;
    if (n < 0 || (n > 0 && (!values || (!idx_out && size > 0))))
        return rt_set_error("d3s_maxvar_subset: NULL array or n = %lld < 0", (long long)n), RT_EINVAL;
    int all_zero = 1;
    for (int64_t j = 0; j < n; j++) {
        if (isnan(values[j])) return rt_set_error("d3s_maxvar_subset: values[%lld] is NaN", (long long)j), RT_ERR;
        if (values[j] != 0.0) all_zero = 0;
    }
    if (size <= 0 || n == 0 || all_zero) return 0;
    int64_t s = size < n ? size : n;

    int64_t rc = RT_ERR;
    keyed *k = malloc((size_t)n * sizeof *k);
    double *P = malloc((size_t)(n + 1) * sizeof *P), *Q = malloc((size_t)(n + 1) * sizeof *Q);
    if (!k || !P || !Q) {
        rt_set_error("d3s_maxvar_subset: out of memory for %lld values", (long long)n);
        goto done;
    }
    double c = 0.0; /* centre first: the prefix sums then cancel less */
    for (int64_t j = 0; j < n; j++) c += values[j];
    c /= (double)n;
    for (int64_t j = 0; j < n; j++) k[j] = (keyed){values[j], j, 1};
    qsort(k, (size_t)n, sizeof *k, cmp_value_asc);
    P[0] = Q[0] = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double x = k[j].v - c;
        P[j + 1] = P[j] + x;
        Q[j + 1] = Q[j] + x * x;
    }
    /* k largest (sorted positions n-k..n-1) + s-k smallest (0..s-k-1) */
    int64_t best_k = 0;
    double best = -1.0;
    for (int64_t t = 0; t <= s; t++) {
        double sum = (P[n] - P[n - t]) + P[s - t];
        double sq = (Q[n] - Q[n - t]) + Q[s - t];
        double mean = sum / (double)s, var = sq / (double)s - mean * mean;
        if (var < 0) var = 0;
        if (var > best + 1e-12 * (best > 1.0 ? best : 1.0)) best = var, best_k = t;
    }
    int64_t m = 0;
    for (int64_t j = n - best_k; j < n; j++) idx_out[m++] = k[j].i;
    for (int64_t j = 0; j < s - best_k; j++) idx_out[m++] = k[j].i;
    qsort(idx_out, (size_t)s, sizeof *idx_out, cmp_i64);
    if (var_out) { /* two-pass on the chosen values: exact up to rounding */
        double mean = 0.0, var = 0.0;
        for (int64_t j = 0; j < s; j++) mean += values[idx_out[j]];
        mean /= (double)s;
        for (int64_t j = 0; j < s; j++) var += (values[idx_out[j]] - mean) * (values[idx_out[j]] - mean);
        *var_out = var / (double)s;
    }
    rc = s;
done:
    free(k);
    free(P);
    free(Q);
    return rc;
}

int64_t d3s_select_intra(const double *adv, int64_t B, int64_t G, int64_t size, uint8_t *keep_out)
{
    if (B < 0 || G < 1 || (B > 0 && (!adv || !keep_out)))
        return rt_set_error("d3s_select_intra: NULL array, B = %lld or G = %lld invalid", (long long)B,
                            (long long)G),
               RT_EINVAL;
    if (B % G != 0)
        return rt_set_error("d3s_select_intra: B = %lld rollouts are not whole groups of G = %lld", (long long)B,
                            (long long)G),
               RT_EINVAL;
    memset(keep_out, 0, (size_t)B);
    int64_t *idx = malloc((size_t)G * sizeof *idx), kept = 0;
    if (!idx) return rt_set_error("d3s_select_intra: out of memory (G = %lld)", (long long)G), RT_ERR;
    for (int64_t g0 = 0; g0 < B; g0 += G) {
        int64_t m = d3s_maxvar_subset(adv + g0, G, size, idx, NULL);
        if (m < 0) {
            free(idx);
            return m;
        }
        for (int64_t j = 0; j < m; j++) keep_out[g0 + idx[j]] = 1;
        kept += m;
    }
    free(idx);
    return kept;
}

int64_t d3s_select_cross(const double *adv, const uint8_t *candidates, int64_t B, int64_t size, uint8_t *keep_out)
{
    if (B < 0 || (B > 0 && (!adv || !keep_out)))
        return rt_set_error("d3s_select_cross: NULL array or B = %lld < 0", (long long)B), RT_EINVAL;
    if (B == 0) return 0;
    memset(keep_out, 0, (size_t)B);
    int64_t rc = RT_ERR, n = 0;
    double *v = malloc((size_t)B * sizeof *v);
    int64_t *from = malloc((size_t)B * sizeof *from), *idx = malloc((size_t)B * sizeof *idx);
    if (!v || !from || !idx) {
        rt_set_error("d3s_select_cross: out of memory (B = %lld)", (long long)B);
        goto done;
    }
    for (int64_t b = 0; b < B; b++)
        if (!candidates || candidates[b]) v[n] = adv[b], from[n++] = b;
    rc = d3s_maxvar_subset(v, n, size, idx, NULL);
    for (int64_t j = 0; j < rc; j++) keep_out[from[idx[j]]] = 1;
done:
    free(v);
    free(from);
    free(idx);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Token level                                                               */
/* ------------------------------------------------------------------------ */

int64_t d3s_select_tokens(const double *adv, int adv_per_token, const double *entropy, const uint8_t *mask,
                          const uint8_t *samples, int64_t B, int64_t T, double frac, uint8_t *keep_out)
{
    if (B < 0 || T < 0 || (B * T > 0 && (!adv || !entropy || !keep_out)))
        return rt_set_error("d3s_select_tokens: NULL array or B, T = %lld, %lld invalid", (long long)B,
                            (long long)T),
               RT_EINVAL;
    if (isnan(frac)) return rt_set_error("d3s_select_tokens: frac is NaN"), RT_EINVAL;
    if (B * T == 0) return 0;
    memset(keep_out, 0, (size_t)(B * T));
    keyed *k = malloc((size_t)(B * T) * sizeof *k);
    if (!k) return rt_set_error("d3s_select_tokens: out of memory (%lld tokens)", (long long)(B * T)), RT_ERR;
    int64_t n = 0;
    for (int64_t b = 0; b < B; b++) {
        if (samples && !samples[b]) continue;
        for (int64_t t = 0; t < T; t++) {
            int64_t pos = b * T + t;
            if (mask && !mask[pos]) continue;
            double s = fabs(adv_per_token ? adv[pos] : adv[b]) * entropy[pos];
            k[n++] = (keyed){s, pos, isfinite(s) != 0};
        }
    }
    int64_t keep = 0;
    if (frac >= 1.0)
        keep = n;
    else if (frac > 0.0)
        keep = (int64_t)ceil(frac * (double)n - 1e-9);
    if (keep < 0) keep = 0;
    if (keep > n) keep = n;
    qsort(k, (size_t)n, sizeof *k, cmp_score_desc);
    for (int64_t j = 0; j < keep; j++) keep_out[k[j].i] = 1;
    free(k);
    return keep;
}

/* ------------------------------------------------------------------------ */
/* Schedule                                                                  */
/* ------------------------------------------------------------------------ */

d3s_config d3s_config_default(void)
{
    d3s_config c = {.group_size = 1, .n_intra = 0, .n_init = 0, .n_final = 0,
                    .k_init = 1.0, .k_final = 1.0, .total_steps = 0};
    return c;
}

int d3s_config_check(const d3s_config *c)
{
    if (!c) return rt_set_error("d3s: config is NULL"), RT_EINVAL;
    if (c->group_size < 1)
        return rt_set_error("d3s: group_size = %lld must be >= 1", (long long)c->group_size), RT_EINVAL;
    if (c->n_intra < 0 || c->n_init < 0 || c->n_final < 0)
        return rt_set_error("d3s: n_intra, n_init, n_final = %lld, %lld, %lld must be >= 0", (long long)c->n_intra,
                            (long long)c->n_init, (long long)c->n_final),
               RT_EINVAL;
    if (!(c->k_init >= 0 && c->k_init <= 1) || !(c->k_final >= 0 && c->k_final <= 1))
        return rt_set_error("d3s: k_init, k_final = %g, %g must be in [0, 1]", c->k_init, c->k_final), RT_EINVAL;
    return RT_OK;
}

d3s_plan d3s_schedule(const d3s_config *c, int64_t step)
{
    double p = 0.0;
    if (c->total_steps > 0) {
        p = (double)step / (double)c->total_steps;
        p = p < 0 ? 0 : p > 1 ? 1 : p;
    }
    d3s_plan plan = {.progress = p,
                     .n_samples = (int64_t)llround((1.0 - p) * (double)c->n_init + p * (double)c->n_final),
                     .token_frac = (1.0 - p) * c->k_init + p * c->k_final};
    return plan;
}

/* ------------------------------------------------------------------------ */
/* Tensor front ends                                                         */
/* ------------------------------------------------------------------------ */

/* Float tensor -> malloc'ed float64 copy (NULL + message on failure). */
static double *host_f64(const char *fn, const char *what, const rt_tensor *t)
{
    if (!t) {
        if (rt_last_error()[0] == '\0') rt_set_error("%s: %s is NULL", fn, what);
        return NULL;
    }
    if (rt_dtype_of(t) != RT_F32 && rt_dtype_of(t) != RT_F64)
        return rt_set_error("%s: %s must be float32 or float64, got %s", fn, what, rt_dtype_name(rt_dtype_of(t))),
               NULL;
    int64_t n = rt_numel(t);
    double *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    if (!h) return rt_set_error("%s: out of memory copying %s", fn, what), NULL;
    if (n > 0 && rt_to_data(t, RT_F64, h, (size_t)n * sizeof *h) != RT_OK) return free(h), NULL;
    return h;
}

/* Bool tensor -> malloc'ed uint8 copy. */
static uint8_t *host_u8(const char *fn, const char *what, const rt_tensor *t)
{
    if (rt_dtype_of(t) != RT_BOOL)
        return rt_set_error("%s: %s must be bool, got %s", fn, what, rt_dtype_name(rt_dtype_of(t))), NULL;
    int64_t n = rt_numel(t);
    uint8_t *h = malloc((size_t)(n > 0 ? n : 1));
    if (!h) return rt_set_error("%s: out of memory copying %s", fn, what), NULL;
    if (n > 0 && rt_to_data(t, RT_U8, h, (size_t)n) != RT_OK) return free(h), NULL;
    return h;
}

/* uint8 [shape] -> bool tensor in S. */
static rt_tensor *bool_tensor(rt_scope *S, const uint8_t *h, const int64_t *shape, int ndim)
{
    rt_scope *W = rt_scope_new();
    if (!W) return rt_set_error("d3s: cannot create a scope"), NULL;
    rt_tensor *u = rt_from_data(W, h, shape, ndim, RT_OPTS(RT_U8));
    rt_tensor *b = rt_compare_scalar(W, u, RT_NE, 0.0);
    if (b) rt_move(b, S);
    rt_scope_free(W);
    return b;
}

static double subset_var(const double *a, const uint8_t *keep, int64_t B)
{
    double n = 0, mean = 0, var = 0;
    for (int64_t b = 0; b < B; b++)
        if (keep[b]) n += 1, mean += a[b];
    if (n == 0) return NAN;
    mean /= n;
    for (int64_t b = 0; b < B; b++)
        if (keep[b]) var += (a[b] - mean) * (a[b] - mean);
    return var / n;
}

rt_tensor *d3s_sample_mask(rt_scope *S, const d3s_config *cfg, int64_t step, const rt_tensor *adv, d3s_stats *st)
{
    static const char fn[] = "d3s_sample_mask";
    char a[64];
    if (d3s_config_check(cfg) != RT_OK) return NULL;
    double *h = host_f64(fn, "adv", adv);
    if (!h) return NULL;
    rt_tensor *out = NULL;
    uint8_t *cand = NULL, *keep = NULL;
    if (rt_ndim(adv) != 1) {
        rt_set_error("%s: adv must be [B], got %s", fn, rt_shape_str(adv, a, sizeof a));
        goto done;
    }
    int64_t B = rt_size(adv, 0);
    cand = malloc((size_t)(B > 0 ? B : 1));
    keep = malloc((size_t)(B > 0 ? B : 1));
    if (!cand || !keep) {
        rt_set_error("%s: out of memory (B = %lld)", fn, (long long)B);
        goto done;
    }
    memset(cand, 1, (size_t)B);
    if (cfg->n_intra > 0 && d3s_select_intra(h, B, cfg->group_size, cfg->n_intra, cand) < 0) goto done;
    d3s_plan plan = d3s_schedule(cfg, step);
    if (plan.n_samples > 0) {
        if (d3s_select_cross(h, cand, B, plan.n_samples, keep) < 0) goto done;
    } else {
        memcpy(keep, cand, (size_t)B);
    }
    int64_t shape[1] = {B};
    out = bool_tensor(S, keep, shape, 1);
    if (out && st) {
        double n = 0;
        for (int64_t b = 0; b < B; b++) n += keep[b];
        st->samples_kept = n;
        st->samples_total = (double)B;
        st->adv_var = subset_var(h, keep, B);
    }
done:
    free(h);
    free(cand);
    free(keep);
    return out;
}

rt_tensor *d3s_token_mask(rt_scope *S, const rt_tensor *adv, const rt_tensor *entropy, const rt_tensor *mask,
                          const rt_tensor *samples, double frac, d3s_stats *st)
{
    static const char fn[] = "d3s_token_mask";
    char a[64], b[64];
    rt_tensor *out = NULL;
    double *ha = NULL, *he = NULL;
    uint8_t *hm = NULL, *hs = NULL, *keep = NULL;
    if (!(he = host_f64(fn, "entropy", entropy)) || !(ha = host_f64(fn, "adv", adv))) goto done;
    if (rt_ndim(entropy) != 2) {
        rt_set_error("%s: entropy must be [B,T], got %s", fn, rt_shape_str(entropy, a, sizeof a));
        goto done;
    }
    int64_t B = rt_size(entropy, 0), T = rt_size(entropy, 1);
    int per_token = rt_ndim(adv) == 2;
    if (!((rt_ndim(adv) == 1 && rt_size(adv, 0) == B) ||
          (per_token && rt_size(adv, 0) == B && rt_size(adv, 1) == T))) {
        rt_set_error("%s: adv has shape %s, expected [B] or [B,T] with entropy %s", fn, rt_shape_str(adv, a, sizeof a),
                     rt_shape_str(entropy, b, sizeof b));
        goto done;
    }
    if (mask) {
        if (rt_ndim(mask) != 2 || rt_size(mask, 0) != B || rt_size(mask, 1) != T) {
            rt_set_error("%s: mask has shape %s, expected entropy's %s", fn, rt_shape_str(mask, a, sizeof a),
                         rt_shape_str(entropy, b, sizeof b));
            goto done;
        }
        if (!(hm = host_u8(fn, "mask", mask))) goto done;
    }
    if (samples) {
        if (rt_ndim(samples) != 1 || rt_size(samples, 0) != B) {
            rt_set_error("%s: samples has shape %s, expected [%lld]", fn, rt_shape_str(samples, a, sizeof a),
                         (long long)B);
            goto done;
        }
        if (!(hs = host_u8(fn, "samples", samples))) goto done;
    }
    keep = malloc((size_t)(B * T > 0 ? B * T : 1));
    if (!keep) {
        rt_set_error("%s: out of memory (%lld tokens)", fn, (long long)(B * T));
        goto done;
    }
    int64_t kept = d3s_select_tokens(ha, per_token, he, hm, hs, B, T, frac, keep);
    if (kept < 0) goto done;
    int64_t shape[2] = {B, T};
    out = bool_tensor(S, keep, shape, 2);
    if (out && st) {
        double n = 0;
        for (int64_t i = 0; i < B; i++)
            if (!hs || hs[i])
                for (int64_t t = 0; t < T; t++) n += !hm || hm[i * T + t];
        st->tokens_kept = (double)kept;
        st->tokens_total = n;
    }
done:
    free(ha);
    free(he);
    free(hm);
    free(hs);
    free(keep);
    return out;
}
