/*
 * sampler.h -- batched sampling of completions from the small GPT
 * (trainer/models/gpt.h) with a KV cache: G completions per prompt for the
 * GRPO family, discrete tokens (temperature, top-k, top-p, greedy) and
 * SofT-GRPO's soft-thinking tokens (specs/pg_losses.md section 4.1, through
 * losses/soft.h).
 *
 * One call: the prompts [B,P] (left-padded, mask [B,P]) are repeated G times
 * each (row b*G+g), run through the model once to fill the cache, and then
 * decoded one position per step for all N = B*G rows at once. A row ends
 * after it emits a stop id or at max_new_tokens; from then on it emits the pad
 * id with mask 0 and stops changing, and the loop ends as soon as every row
 * has ended (the completions are as long as the longest one, C <=
 * max_new_tokens).
 *
 * Reproducibility: every random draw comes from the generator given, in a
 * fixed order (per step: the soft rollout's noise when some row is thinking,
 * then one Gumbel draw of [N,V] when some row samples a discrete token), and
 * the draws do not depend on the thread count. The same generator state, model
 * and inputs give the same tokens.
 *
 * Soft-thinking mode (cfg.soft_think): a row thinks from the step after its
 * prompt ends with think_begin_id (or after it emits think_begin_id) until it
 * emits think_end_id. While thinking, each step is a soft token made by
 * soft_rollout (cfg.soft: temperature, top_k = K, top_p, tau_g, noise): the
 * emitted id is the argmax of the perturbed logits g', the stored row is the
 * K candidate ids sorted by y' with their g', and the next input embedding is
 * soft_input_embeds of that stored row -- the very call the trainer makes to
 * rebuild it, so training inputs equal the sampler's. The step that emits
 * think_end is stored one-hot, [think_end, 0, ..., 0] with g' 0 (as the
 * reference's update_topk_info does), so it is a discrete position for
 * soft_is_discrete and soft_logps_from_logits; discrete steps are stored as
 * [tok, 0, ..., 0] with g' 0, padding as [pad_id, 0, ..., 0] with g' 0.
 * soft_mask is 1 exactly at the stored soft rows, i.e. !soft_is_discrete(ids)
 * on the real positions. Thinking happens once per row: a think_begin emitted
 * after think_end is an ordinary token.
 *
 * Alignment for the trainer: completion position c was sampled from the
 * logits at input position P-1+c of prompt+completion (the usual shift by
 * one); its stored (topk_ids, gumbels) rebuild the input at position P+c.
 */
#ifndef RLT_SAMPLER_H
#define RLT_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "gpt.h"
#include "soft.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SMP_MAX_STOP 8

typedef struct smp_config {
    double temperature;      /* 1.0; 0 = greedy                                       */
    int64_t top_k;           /* 0 = off                                               */
    double top_p;            /* 1.0 = off                                             */
    int64_t max_new_tokens;  /* 64                                                    */
    int64_t stop_ids[SMP_MAX_STOP];
    int n_stop;              /* 0: a row ends after emitting one of stop_ids[0..n_stop) */
    int64_t pad_id;          /* 0                                                     */
    int soft_think;          /* 0; SofT-GRPO soft-thinking mode (pg_losses.md 4.1)    */
    int64_t think_begin_id;  /* -1 (unset); required in soft-thinking mode           */
    int64_t think_end_id;    /* -1 (unset); required in soft-thinking mode           */
    soft_config soft;        /* soft_config_default(): tau_g 0.1, noise 1, K 5, top_p .95 */
    int keep_logits;         /* 0; 1: also return the logits each token was drawn from */
} smp_config;

smp_config smp_config_default(void);
/* RT_OK, or RT_EINVAL naming the field, its value and the rule. vocab is the
 * model's (ids must lie in [0, vocab); the soft K at most vocab). */
int smp_config_check(const smp_config *cfg, int64_t vocab);

typedef struct smp_out {    /* the tensors are owned by the scope passed to smp_generate */
    rt_tensor *ids;         /* [N,C] int64 completion tokens, pad_id after the stop token   */
    rt_tensor *mask;        /* [N,C] 1 for real completion tokens incl. the stop token, else 0
                               (the model's float dtype)                                     */
    rt_tensor *logps;       /* [N,C] log-prob of each token under the distribution it was
                               drawn from, 0 at padding: discrete tokens under the filtered
                               distribution (rt_filter_logits: temperature, top-k, top-p; at
                               temperature 0 the filtered raw logits); soft tokens the soft
                               log-prob of section 4.3 (soft_logp of the sampler's logits);
                               think_end emitted while thinking, log p~ under cfg.soft's
                               temperature/top-k/top-p                                      */
    rt_tensor *topk_ids, *gumbels, *soft_mask; /* soft mode only: [N,C,K] int64, [N,C,K]
                               float, [N,C] float; NULL otherwise. The layout losses/soft.h
                               expects (soft_input_embeds, soft_logps_from_logits)           */
    rt_tensor *logits;      /* cfg.keep_logits only: [N,C,V] the raw model logits each token
                               was drawn from (0 at padding); NULL otherwise                 */
    int64_t *lengths;       /* [N] completion lengths (malloc'd; smp_out_free frees it)     */
    int64_t n, c;           /* N = B*G rows, C completion columns                           */
} smp_out;

/* prompt_ids [B,P] int64 left-padded, prompt_mask [B,P] (any dtype, nonzero =
 * real; NULL = all real); P + max_new_tokens must fit the model's context.
 * Runs without autograd; the model is not changed. Returns RT_OK with *out
 * filled (S must not be NULL: it owns the tensors), or a negative rt_status
 * with rt_last_error() set and *out zeroed. */
int smp_generate(rt_scope *S, const gpt *m, const smp_config *cfg, const rt_tensor *prompt_ids,
                 const rt_tensor *prompt_mask, int64_t G, rt_gen *gen, smp_out *out);
/* Frees lengths and zeroes *o (the tensors stay with their scope). NULL-safe. */
void smp_out_free(smp_out *o);

/* For the training forward over prompt + completion, from the same prompts
 * and G given to smp_generate (tensors into S):
 *   smp_sequences: *ids [N, P+C] int64 (prompts repeated, then o->ids) and
 *                  *mask [N, P+C] (prompt mask != 0, then o->mask; o->mask's
 *                  dtype). gpt_forward(ids, mask) at column P-1+c scores
 *                  completion token c.
 *   smp_soft_rows: soft mode; the stored rows of the whole sequence,
 *                  *topk_ids [N, P+C, K] and *gumbels [N, P+C, K], prompt
 *                  positions one-hot [tok, 0, ...] with g' 0, for
 *                  soft_input_embeds -> gpt_forward_embeds; completion rows
 *                  at columns P.. are o->topk_ids / o->gumbels.
 * RT_OK, or a negative rt_status with the outputs NULL. */
int smp_sequences(rt_scope *S, const rt_tensor *prompt_ids, const rt_tensor *prompt_mask, int64_t G,
                  const smp_out *o, rt_tensor **ids, rt_tensor **mask);
int smp_soft_rows(rt_scope *S, const rt_tensor *prompt_ids, int64_t G, const smp_out *o,
                  rt_tensor **topk_ids, rt_tensor **gumbels);

#ifdef __cplusplus
}
#endif
#endif /* RLT_SAMPLER_H */
