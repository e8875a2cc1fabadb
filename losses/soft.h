/*
 * soft.h -- SofT-GRPO's soft-thinking tokens (Zheng & Lee, arXiv 2511.06411;
 * read from the released code, specs/pg_losses.md section 4). The pieces a
 * training loop needs to apply the GRPO loss to soft and discrete tokens
 * alike:
 *
 *   rollout (4.1)   soft_rollout: temperature softmax, top-k and top-p (and
 *                   min-p) renormalisation, K candidates with
 *                   l_roll = log(p~ + 1e-6), Gumbel noise eps clamped to
 *                   [-1.5, 3] from an explicit generator, g' = l_roll + nf*eps,
 *                   mixing weights y' = softmax(g'/tau_g), candidates sorted by
 *                   y' (the stored ids and g'), the emitted token ids[:,0].
 *                   soft_mix_embedding: e = sum_j w_j E[id_j] / sum_j w_j.
 *   training input  soft_is_discrete (the sentinel test ids[...,1:] == 0),
 *   (4.2)           soft_input_weights (one-hot on ids[...,0] at discrete
 *                   positions, softmax(g'/tau_g) elsewhere), soft_input_embeds
 *                   (the mixed embedding, detached as the reference does).
 *   log-prob (4.3)  soft_logp: the log-probability of a soft token from the
 *                   logits of its K stored ids and its stored g':
 *                     q_j = softmax(logits/T)[id_j] / sum_k softmax(logits/T)[id_k]
 *                     l_j = log(q_j + 1e-6)
 *                     z_j = clamp(g'_j - l_j, -1.5, 3)
 *                     d_j = -z_j - exp(-z_j)          (standard Gumbel log-density)
 *                     logp = mean of d_j over { j : l_j > -3 }   (a MEAN, not a sum)
 *   loss input      soft_mixed_logps: per-position log-probs [B,T] that are
 *   (4.4)           soft_logp at soft positions and the ordinary token log-prob
 *                   at discrete ones; soft_logps_from_logits does the whole
 *                   thing from logits [B,T,V], ids [B,T,K] and g' [B,T,K]. The
 *                   result feeds the GRPO loss (ratio exp(logp - logp_old),
 *                   KL to the reference) unchanged.
 *
 * Alignment: the caller aligns logits with the positions they score (the
 * reference rolls ids, g' and labels by -1 so that the logits at position t
 * score response position t); every [B,T,...] argument here is already
 * aligned.
 *
 * Gradients: only the K stored logits of a soft position receive gradient
 * (q renormalises over them), d logp / d l_j = (1 - exp(-z_j)) / M when z_j is
 * inside the clamp and 0 when clamped. g' is data and never differentiated.
 *
 * Edge cases (section 4.7), all finite:
 *   - M = 0 (no candidate above keep_logp; possible only when K >= 20): the
 *     reference divides by zero (NaN); here logp = 0 with zero gradient, so
 *     the position has ratio 1 and contributes no gradient. Counted in
 *     soft_metrics.empty_rows.
 *   - K = 1: the sentinel test finds ids[...,1:] empty, so every position is
 *     discrete (the soft token is a plain Gumbel-max sample). soft_logp itself
 *     still works: q = 1, logp = d(clamp(g' - log(1 + 1e-6))), zero gradient.
 *   - Discrete rows and padding: their topk logits and g' are replaced by 0
 *     before any math in soft_mixed_logps, so NaN/inf stored there reaches
 *     neither the result nor the gradient.
 *   - Duplicate ids in a row (the 0 sentinels of a discrete row, a padding id
 *     repeated K times) count once per occurrence, as in the reference.
 *
 * Dtype: float32 or float64, the dtype of the logits; ids are int64. Nothing
 * here keeps state or does I/O; randomness comes only from the rt_gen given.
 */
#ifndef RLT_SOFT_H
#define RLT_SOFT_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Settings; soft_config_default() gives the SofT-GRPO script values
 * (SofT-GRPO-deepscaler-8k.sh, section 4.5). Never start from {0}. */
typedef struct soft_config {
    double temperature;  /* T: logits are divided by it (rollout and training)      1.0  */
    double tau_g;        /* Gumbel-softmax temperature of the mixing weights         0.1  */
    double noise_factor; /* g' = l_roll + noise_factor * eps                         1.0  */
    int64_t top_k;       /* K: candidates kept and stored per soft token             5    */
    double top_p;        /* nucleus threshold of the rollout (1 = off)               0.95 */
    double min_p;        /* min-p filter of the rollout, p >= min_p * max p (0 = off) 0.0 */
    double noise_min;    /* rollout clamp of eps = -log(Exp(1)) (lower)              -1.5 */
    double noise_max;    /*                                      (upper)              3.0 */
    double z_min;        /* training clamp of z = g' - l (lower)                     -1.5 */
    double z_max;        /*                              (upper)                      3.0 */
    double keep_logp;    /* component j counts in the mean when l_j > keep_logp      -3.0 */
    double prob_eps;     /* l = log(q + prob_eps)                                    1e-6 */
} soft_config;

soft_config soft_config_default(void);
/* RT_OK, or RT_EINVAL with a message naming the setting, its value and the
 * allowed range (temperature, tau_g > 0; top_k >= 1; 0 < top_p <= 1;
 * 0 <= min_p <= 1; min <= max for both clamps; 0 < prob_eps < 1). */
int soft_config_check(const soft_config *cfg);

/* ---- Settings descriptors (for --set k=v and --help) ---- */
/* A setting descriptor (settings.h): name (= the soft_config field), LSET_REAL
 * or LSET_INT, offset, default, and the outer bounds the parser enforces;
 * soft_config_check then applies the exact rules above (open intervals,
 * min <= max). */
typedef lset_desc soft_setting;

/* All settings in display order; *n receives the count. */
const soft_setting *soft_settings(size_t *n);
/* Parse value into setting name, then re-check the whole config (so set a
 * min/max pair in an order that keeps min <= max). RT_OK, or RT_EINVAL (not a
 * number, out of range) / RT_ENOTFOUND (unknown name, listing the valid ones
 * and suggesting the nearest); on RT_EINVAL from the re-check the value stays
 * written. */
int soft_config_set(soft_config *cfg, const char *name, const char *value);
/* The value of s in cfg formatted into buf; returns buf. */
const char *soft_setting_format(const soft_config *cfg, const soft_setting *s, char *buf, size_t cap);

/* ---- Rollout (section 4.1) ---- */

/* One decoding step's soft tokens for N rows. Every tensor is [N,K] in the
 * stored order (y' descending, ties keep candidate order), owned by the scope
 * given to soft_rollout, and detached. */
typedef struct soft_token {
    rt_tensor *ids;          /* int64 [N,K] stored ids; ids[:,0] is the emitted token     */
    rt_tensor *gumbels;      /* [N,K] stored g' = l_roll + noise_factor * eps             */
    rt_tensor *weights;      /* [N,K] y' = softmax(g'/tau_g) (rows sum to 1)              */
    rt_tensor *cand_logp;    /* [N,K] l_roll = log(p~ + prob_eps) (top-p removed: log eps) */
    rt_tensor *noise;        /* [N,K] eps, clamped to [noise_min, noise_max]              */
    rt_tensor *emitted;      /* int64 [N] = ids[:,0] = argmax_j g'_j                      */
    rt_tensor *rollout_logp; /* [N] mean over l_roll > keep_logp of -eps - exp(-eps): what
                                the sampler reports (logged only; the loss recomputes it) */
} soft_token;

/* Form soft tokens from logits [N,V] (V >= top_k). noise: eps [N,K] in
 * candidate order (p~ descending), or NULL to draw standard Gumbel noise from
 * gen (which must then be non-NULL); either way it is clamped to
 * [noise_min, noise_max]. Runs without grad. Returns RT_OK, or an error code
 * with rt_last_error() naming the argument and its shape; *out is zeroed
 * first and filled only on success. */
int soft_rollout(rt_scope *S, const soft_config *cfg, const rt_tensor *logits, const rt_tensor *noise,
                 rt_gen *gen, soft_token *out);

/* Clamped standard Gumbel noise eps [shape] from gen, in dtype dt: the rollout
 * noise on its own (reproducible: the same seed gives the same draws). */
rt_tensor *soft_gumbel_noise(rt_scope *S, const soft_config *cfg, const int64_t *shape, int ndim, rt_gen *gen,
                             rt_dtype dt);

/* Mixed input embedding: table [V,D], ids int64 [...,K], weights [...,K]
 * -> [...,D] = sum_j (w_j / sum_k w_k) table[ids_j] (weighted_forward).
 * Differentiable in table and weights; soft_input_embeds detaches. */
rt_tensor *soft_mix_embedding(rt_scope *S, const rt_tensor *table, const rt_tensor *ids, const rt_tensor *weights);

/* ---- Training input (section 4.2) ---- */

/* bool [...]: 1 where the position is discrete, i.e. ids[...,1:] are all the
 * sentinel 0 (always 1 when K = 1). ids: int64 [...,K]. */
rt_tensor *soft_is_discrete(rt_scope *S, const rt_tensor *ids);
/* Mixing weights [...,K] of the training forward, detached: one-hot on
 * ids[...,0] where discrete, softmax(g'/tau_g) elsewhere. */
rt_tensor *soft_input_weights(rt_scope *S, const soft_config *cfg, const rt_tensor *ids, const rt_tensor *gumbels);
/* The model's input embeddings [...,D] = soft_mix_embedding(table, ids,
 * soft_input_weights(...)), detached (the reference feeds sg(inputs_embeds)). */
rt_tensor *soft_input_embeds(rt_scope *S, const soft_config *cfg, const rt_tensor *table, const rt_tensor *ids,
                             const rt_tensor *gumbels);

/* ---- Log-probabilities (sections 4.3, 4.4) ---- */

/* What a log-prob call reports (host syncs only when requested). Values a
 * call does not produce are NaN. */
typedef struct soft_metrics {
    double count;      /* soft positions evaluated                                   */
    double soft_frac;  /* soft positions / all positions (mixed calls; 1 for soft_logp) */
    double kept_mean;  /* mean M: components with l_j > keep_logp, per soft position   */
    double clamp_frac; /* fraction of those components whose z_j hit a clamp (they get
                          no gradient)                                                */
    double empty_rows; /* soft positions with M = 0 (logp set to 0)                    */
} soft_metrics;

/* Soft-token log-prob [...] from topk_logits [...,K] (the logits of the
 * stored ids, in stored order; differentiable) and gumbels [...,K] (stored
 * g', constant). Same dtype, same shape. m may be NULL. */
rt_tensor *soft_logp(rt_scope *S, const soft_config *cfg, const rt_tensor *topk_logits, const rt_tensor *gumbels,
                     soft_metrics *m);

/* Per-position log-probs for the loss, [...]: soft_logp(topk_logits, gumbels)
 * where soft_mask (bool [...]) is set, discrete_logps [...] elsewhere (the
 * ordinary log-prob of the token, e.g. from a fused log-softmax kernel at
 * temperature T). topk_logits, gumbels: [...,K]. Selected with where: the
 * unselected side of each position gets an exact zero gradient. */
rt_tensor *soft_mixed_logps(rt_scope *S, const soft_config *cfg, const rt_tensor *soft_mask,
                            const rt_tensor *topk_logits, const rt_tensor *gumbels, const rt_tensor *discrete_logps,
                            soft_metrics *m);

/* The ordinary log-prob log_softmax(logits/T)[label]: logits [...,V],
 * labels int64 [...] -> [...]. Materialises a [...,V] log-softmax; fine for
 * tests and small vocabularies. */
rt_tensor *soft_token_logps(rt_scope *S, const soft_config *cfg, const rt_tensor *logits, const rt_tensor *labels);

/* Everything from full logits: logits [B,T,V] (differentiable), ids int64
 * [B,T,K] and gumbels [B,T,K] as stored by the rollout -> logps [B,T]:
 * discrete positions (soft_is_discrete) get log_softmax(logits/T)[ids[...,0]],
 * soft positions soft_logp of logits gathered at ids. */
rt_tensor *soft_logps_from_logits(rt_scope *S, const soft_config *cfg, const rt_tensor *logits, const rt_tensor *ids,
                                  const rt_tensor *gumbels, soft_metrics *m);

#ifdef __cplusplus
}
#endif
#endif /* RLT_SOFT_H */
