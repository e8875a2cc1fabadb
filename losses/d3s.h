/*
 * d3s.h -- D3S, dynamic dual-level down-sampling (Wang et al., arXiv
 * 2509.22115; specs/pg_losses.md section 5, from the paper's summary and
 * reviews: no public code). Which rollouts and which tokens of a GRPO batch
 * enter the loss:
 *
 *   sample level (5.1)  on advantages already normalised over the FULL group
 *                       (never re-normalised), keep the subset of a given size
 *                       with the largest variance of A: intra-group (per group
 *                       of G contiguous rollouts) and/or cross-group (over the
 *                       batch or over the intra-group survivors).
 *   token level (5.2)   among the mask tokens of the kept samples, pooled, keep
 *                       the ceil(K * n) with the largest |A| * H (H = entropy of
 *                       the policy at that position); the loss mask becomes
 *                       mask * keep.
 *   schedule (5.3)      [N(p), K(p)] = (1 - p) [N_init, K_init] + p [N_final,
 *                       K_final], p = step / total_steps clamped to [0, 1].
 *
 * Exact rule for the sample level [DERIVED in the spec, and proved]: a
 * maximum-variance subset of size n consists of the k largest and the n - k
 * smallest values for some k. Sort once (ascending value, ties by ascending
 * index, as the spec's reference code), scan k = 0..n with prefix sums, keep
 * the first k whose variance (population, divide by n) exceeds every smaller
 * k's by more than 1e-12 relative (so equal multisets never flip on rounding).
 * Consequences: among equal values the "largest" end takes the higher
 * indices and the "smallest" end the lower ones; a tie between k's goes to the
 * smaller k. EX-D's N = 4 pick is {0, 1, 6, 7}.
 *
 * Edge cases (5.6), all finite and documented:
 *   - a size at or above the number of candidates takes them all;
 *   - a candidate set whose advantages are all exactly 0 (an all-correct or
 *     all-wrong group, or a whole batch of them) selects nothing: any subset
 *     gives zero gradient. A zero-advantage group is thereby skipped;
 *   - size 0, or no candidates, selects nothing;
 *   - token level: frac <= 0 keeps nothing, frac >= 1 keeps every candidate
 *     token; the count is ceil(frac * n - 1e-9) (the 1e-9 keeps 0.3 * 10 at 3);
 *     equal scores prefer the earlier position (row-major); a non-finite
 *     score (NaN entropy at a kept position) ranks below every finite one;
 *     selected samples left with no kept token contribute nothing.
 * The paper's N_init, N_final, K_init, K_final are not public (spec: NOT
 * FOUND); d3s_config_default() therefore turns every stage off, and EX-D's
 * illustrative values (4 -> 12 samples, 0.2 -> 1.0 tokens) are one setting.
 *
 * The selections are host-side (sorting a few hundred numbers); the *_mask
 * functions copy the tensors to the host, select, and return bool masks.
 * Nothing here keeps state; the functions are pure.
 */
#ifndef RLT_D3S_H
#define RLT_D3S_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Host selections (pure C over arrays) ---- */

/* The maximum-variance subset of `size` of values[0..n): writes the chosen
 * indices in ascending order to idx_out (room for min(size, n)) and the
 * subset's population variance to *var_out (may be NULL). Returns the number
 * chosen: min(size, n), or 0 when size <= 0, n == 0 or every value is 0; a
 * negative status (RT_EINVAL: NULL array, n < 0; RT_ERR: out of memory, or a
 * NaN value) with rt_last_error() set. */
int64_t d3s_maxvar_subset(const double *values, int64_t n, int64_t size, int64_t *idx_out, double *var_out);

/* Intra-group selection over B rollouts in contiguous groups of G (B % G ==
 * 0): keep_out[b] = 1 for the max-variance subset of `size` of each group
 * (all-zero groups select nothing). Returns the number kept, or a negative
 * status. */
int64_t d3s_select_intra(const double *adv, int64_t B, int64_t G, int64_t size, uint8_t *keep_out);

/* Cross-group selection: the max-variance subset of `size` among the
 * candidates (candidates[b] != 0; NULL = all B) written to keep_out[B]. Returns
 * the number kept, or a negative status. */
int64_t d3s_select_cross(const double *adv, const uint8_t *candidates, int64_t B, int64_t size, uint8_t *keep_out);

/* Token selection: score[b,t] = |adv| * entropy[b,t] over tokens with
 * mask[b,t] != 0 (NULL = all) of samples with samples[b] != 0 (NULL = all),
 * pooled; keep_out[B*T] = 1 for the top ceil(frac * n - 1e-9). adv is [B]
 * (broadcast over t) or, with adv_per_token, [B*T]. Returns the number kept,
 * or a negative status. */
int64_t d3s_select_tokens(const double *adv, int adv_per_token, const double *entropy, const uint8_t *mask,
                          const uint8_t *samples, int64_t B, int64_t T, double frac, uint8_t *keep_out);

/* ---- Schedule (5.3) ---- */

typedef struct d3s_config {
    int64_t group_size;  /* G, contiguous rollouts per prompt                                  */
    int64_t n_intra;     /* intra-group subset size per group; 0 = no intra step                */
    int64_t n_init;      /* cross-group subset size at p = 0; 0 (with n_final 0) = no cross step */
    int64_t n_final;     /* ... at p = 1                                                         */
    double k_init;       /* token fraction at p = 0, in [0, 1]; 1 = keep every token             */
    double k_final;      /* ... at p = 1                                                          */
    int64_t total_steps; /* p = step / total_steps; <= 0: p = 0 (the initial values throughout)   */
} d3s_config;

/* Every stage off (see above): group_size 1, n_intra 0, n_init = n_final = 0,
 * k_init = k_final = 1, total_steps 0. */
d3s_config d3s_config_default(void);
/* RT_OK or RT_EINVAL naming the field (sizes >= 0, group_size >= 1, fractions
 * in [0, 1]). */
int d3s_config_check(const d3s_config *cfg);

/* What the schedule says at one step. */
typedef struct d3s_plan {
    double progress;    /* p in [0, 1]                                      */
    int64_t n_samples;  /* cross-group size: round((1-p) n_init + p n_final) */
    double token_frac;  /* (1-p) k_init + p k_final                          */
} d3s_plan;

/* The schedule at `step` (a pure function; round half away from zero). */
d3s_plan d3s_schedule(const d3s_config *cfg, int64_t step);

/* ---- Tensor front ends ---- */

/* What a masking call reports. */
typedef struct d3s_stats {
    double samples_kept;   /* rollouts selected                                 */
    double samples_total;  /* B                                                  */
    double adv_var;        /* population variance of A over the selection (NaN when empty) */
    double tokens_kept;    /* token level: tokens kept                          */
    double tokens_total;   /* token level: candidate tokens (mask of selected samples) */
} d3s_stats;

/* Sample mask bool [B] for advantages adv [B] (float) at `step`: the intra
 * step (n_intra > 0) per group of group_size, then the cross step
 * (plan.n_samples > 0) over the survivors. st may be NULL. */
rt_tensor *d3s_sample_mask(rt_scope *S, const d3s_config *cfg, int64_t step, const rt_tensor *adv, d3s_stats *st);

/* Token mask bool [B,T]: adv [B] or [B,T] (float), entropy [B,T] (float),
 * mask [B,T] (bool, NULL = all), samples [B] (bool, NULL = all), fraction
 * frac. The result is already and-ed with mask and samples: use it as the
 * loss mask. st may be NULL (only the token fields are written). */
rt_tensor *d3s_token_mask(rt_scope *S, const rt_tensor *adv, const rt_tensor *entropy, const rt_tensor *mask,
                          const rt_tensor *samples, double frac, d3s_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* RLT_D3S_H */
