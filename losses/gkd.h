/*
 * gkd.h -- token-level distillation of sequence models: GKD's generalized
 * Jensen-Shannon divergence (dense or on a sparse top-k support) and
 * AlignDistil's token-adaptive logit extrapolation. Formulas, defaults and
 * worked numbers: specs/pref_kd_losses.md sections 5.8, 5.9 and 5.10.
 *
 *   loss         reference                                  per kept position t
 *   -----------  -----------------------------------------  -------------------------------------------
 *   gkd          TRL GKDTrainer / DistillationTrainer        beta = 0: KL(teacher || student)
 *                generalized_jsd_loss; TRL IW-OPD top_k      beta = 1: KL(student || teacher)
 *                (sparse support, tail bucket)              else: beta KL(t||m) + (1-beta) KL(s||m),
 *                                                           m = (1-beta) p_s + beta p_t, after z/T
 *   aligndistil  songmzhang/AlignDistil off-policy trainer   w_t = beta2 * TVD(p_dpo, p_rev) + 1e-3
 *                (reward_boost_type=aligndistil and the     pi*_t = softmax((z_dpo + w_t (z_dpo - z_rev)) / T_kd)
 *                three theorem1 variants)                   l_t = (beta / w_t) KL(p_student || pi*_t)
 *
 * Inputs are sequence-model outputs already aligned with the tokens they
 * predict (TRL's logits[:, :-1] against labels[:, 1:]; the caller shifts):
 * logits [B,T,V] and a mask [B,T] whose 1 marks a completion position that
 * counts (TRL's label != -100). Positions with mask 0 are SELECTED AWAY
 * before any arithmetic (index_select on the flattened [B*T,V] rows), never
 * multiplied by zero, so a NaN or inf in prompt or padding positions reaches
 * neither the loss nor the gradient (whose rows there are exactly 0).
 *
 * gkd flattens the kept rows and evaluates them with losses/kd.h's per-token
 * kinds (jsd; topk when top_k > 0), so its divergences and reductions are
 * kd.c's: batchmean = sum over kept positions and vocabulary / kept
 * positions (TRL's default), sum, or mean = sum / (kept positions * support
 * width). num_items (TRL's num_items_in_batch) divides the sum by a token
 * count the caller gives instead, e.g. the global count under gradient
 * accumulation or data parallelism.
 *
 * Computation runs in the dtype of the student logits (float32 or float64);
 * every other logits input must have the same dtype and shape and is treated
 * as a constant (detached). The mask may be bool or any integer/float dtype
 * holding 0 and 1. Each call returns the 0-dim loss (owned by S; S == NULL:
 * the caller frees it) or NULL with rt_last_error() naming the input, its
 * shape or the setting and the reason. Intermediates live in a private
 * scope; nothing does I/O or keeps state.
 */
#ifndef RLT_GKD_H
#define RLT_GKD_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A setting descriptor (settings.h) at offsetof(<config>, field). */
typedef lset_desc gkd_setting;

typedef struct gkd_metric {
    const char *name; /* log key, written to /metrics/<name>          */
    size_t offset;    /* offsetof(<metrics struct>, field), a double  */
    const char *help;
} gkd_metric;

/* The value of setting s in cfg (a config of the loss s belongs to) into
 * buf ("0.5", "batchmean", ...). Returns buf. */
const char *gkd_setting_format(const void *cfg, const gkd_setting *s, char *buf, size_t cap);
/* The value of metric d in m (a metrics struct of the loss d belongs to). */
double gkd_metric_value(const void *m, const gkd_metric *d);

/* ------------------------------------------------------------------------ */
/* GKD: generalized JSD per token                                            */
/* ------------------------------------------------------------------------ */

/* Which reference's defaults a config starts from. */
typedef enum gkd_preset {
    GKD_PRESET_GKD = 0,          /* TRL GKDConfig: beta 0.5; the loss runs at temperature 1.0
                                    (GKDConfig.temperature 0.9 is for sampling only)        */
    GKD_PRESET_DISTILLATION = 1, /* TRL DistillationTrainer: beta 1.0 (reverse KL), T 1.0    */
    GKD_PRESET_IW_OPD = 2        /* TRL IW-OPD: beta 1.0, loss_top_k 1, loss_add_tail true   */
} gkd_preset;

typedef struct gkd_config {
    int preset;         /* gkd_preset the defaults came from; setting it through
                           gkd_config_set resets every other field to it      */
    double beta;        /* skew in [0,1]: 0 forward KL, 1 reverse KL          */
    double temperature; /* both models' logits are divided by it              */
    int reduction;      /* kd_reduction (kd.h): batchmean, sum, mean          */
    int64_t top_k;      /* sparse support per model; 0 (or >= V) = the whole
                           vocabulary. beta 0: teacher top-k; beta 1: student
                           top-k; between: their union                        */
    int add_tail;       /* top_k: append the bucket log(1 - sum_support p)
                           (IW-OPD's default); 0 renormalizes on the support  */
    double num_items;   /* NaN (none): use `reduction`. Otherwise the loss is
                           sum / num_items (TRL num_items_in_batch)           */
} gkd_config;

typedef struct gkd_inputs {
    const rt_tensor *student_logits; /* [B,T,V] float32/float64, differentiable */
    const rt_tensor *teacher_logits; /* [B,T,V] same dtype, constant            */
    const rt_tensor *mask;           /* [B,T] 1 = a completion position that counts */
} gkd_inputs;

typedef struct gkd_metrics {
    double loss;      /* the returned loss                                         */
    double tokens;    /* kept positions (mask sum)                                 */
    double agreement; /* fraction of kept positions where argmax student == argmax
                         teacher (NaN when none is kept)                           */
} gkd_metrics;

/* Evaluate. m may be NULL. With no kept position the loss is an exact 0
 * that still carries a (zero) gradient to the student. */
rt_tensor *gkd_loss(rt_scope *S, const gkd_config *cfg, const gkd_inputs *in, gkd_metrics *m);

/* TRL GKD's defaults (preset gkd) / a preset's defaults. */
gkd_config gkd_config_default(void);
gkd_config gkd_config_preset(gkd_preset preset);
/* RT_OK, or RT_EINVAL naming the setting, its value and the allowed range. */
int gkd_config_check(const gkd_config *cfg);
/* Settings in display order; *n receives the count. */
const gkd_setting *gkd_settings(size_t *n);
/* Parse value into setting name ("preset" first: it resets the others).
 * RT_OK, or RT_EINVAL / RT_ENOTFOUND with a message naming the key, the
 * value, the range or choices, and for an unknown key the nearest one. */
int gkd_config_set(gkd_config *cfg, const char *name, const char *value);
const gkd_metric *gkd_metric_table(size_t *n);

/* ------------------------------------------------------------------------ */
/* AlignDistil: token-adaptive logit extrapolation (ACL 2025)                */
/* ------------------------------------------------------------------------ */

/* The reference's reward_boost_type. z_rev plays the reference model. */
typedef enum gkd_aligndistil_form {
    GKD_ALIGNDISTIL = 0,        /* w_t = beta2*TVD_t + 1e-3; teacher z_dpo + w_t (z_dpo - z_rev);
                                   l_t = (beta/w_t) KL(p_s || pi*)                              */
    GKD_THEOREM1 = 1,           /* w = beta/beta2; teacher w z_dpo + (1-w) z_rev; l_t = beta2 KL  */
    GKD_THEOREM1_CONTRAST = 2,  /* w = beta/beta2; teacher z_dpo + w (z_dpo - z_rev); beta2 KL    */
    GKD_THEOREM1_ADAPTIVE = 3   /* w_t as aligndistil; teacher w_t z_dpo + (1-w_t) z_rev;
                                   l_t = (beta/w_t) KL                                           */
} gkd_aligndistil_form;

typedef struct gkd_aligndistil_config {
    int form;              /* gkd_aligndistil_form                                     */
    double beta;           /* DPO beta of the reward (CLI --beta, 1.0; runs use 0.1)  */
    double beta2;          /* --beta2 (1.0; runs use 10 off-policy, 15 on-policy)     */
    double kd_temperature; /* the extrapolated teacher logits are divided by it (1.0);
                              the student's are not                                   */
    int length_norm;       /* --reward_len_norm: divide each sequence's sum by its
                              token count (CLI default off; both released scripts on) */
} gkd_aligndistil_config;

typedef struct gkd_aligndistil_inputs {
    const rt_tensor *student_logits; /* [B,T,V] float32/float64, differentiable        */
    const rt_tensor *dpo_logits;     /* [B,T,V] the DPO model z_dpo, constant          */
    const rt_tensor *rev_logits;     /* [B,T,V] the reverse DPO model z_rev, constant  */
    const rt_tensor *mask;           /* [B,T] 1 = a response position that counts      */
} gkd_aligndistil_inputs;

/* What the reference logs, over the kept positions; a "seq" value is a
 * per-sequence sum and a "token" value a per-sequence mean, each then
 * averaged over the B sequences. A sequence without kept positions counts
 * as 0 (its token count is clamped to 1; the reference would give NaN). */
typedef struct gkd_aligndistil_metrics {
    double loss;                      /* rlhf_loss: the returned loss                        */
    double mean_weight;               /* per-sequence mean of w_t, mean over B (beta/beta2
                                         for the non-adaptive forms)                        */
    double expected_reward;           /* sum_t E_{p_s}[beta (log p_dpo - log p_rev)], mean B */
    double dpo_model_expected_reward; /* the same expectation under p_dpo                   */
    double seq_init_kl;               /* sum_t KL(p_s || p_rev), mean over B                 */
    double token_init_kl;             /* mean_t KL(p_s || p_rev), mean over B                */
    double seq_tea_kl;                /* sum_t KL(p_s || p_dpo), mean over B                 */
    double token_tea_kl;              /* mean_t KL(p_s || p_dpo), mean over B                */
    double tokens;                    /* kept positions                                      */
} gkd_aligndistil_metrics;

/* Evaluate: loss = mean over the B sequences of sum_t l_t (divided by the
 * sequence's token count with length_norm). m may be NULL. token_losses
 * (may be NULL) receives l_t as [B,T] (in the graph; 0 at masked
 * positions) and weights (may be NULL) w_t as [B,T] (constant; 0 at masked
 * positions), both owned by S. The weights and the teacher never carry a
 * gradient. */
rt_tensor *gkd_aligndistil_loss(rt_scope *S, const gkd_aligndistil_config *cfg,
                                const gkd_aligndistil_inputs *in, gkd_aligndistil_metrics *m,
                                rt_tensor **token_losses, rt_tensor **weights);

/* The reference CLI's defaults: form aligndistil, beta 1, beta2 1,
 * kd_temperature 1, length_norm 0. */
gkd_aligndistil_config gkd_aligndistil_config_default(void);
/* RT_OK, or RT_EINVAL naming the setting, its value and the allowed range
 * (theorem1 and theorem1_contrast divide by beta2, which must then be > 0). */
int gkd_aligndistil_config_check(const gkd_aligndistil_config *cfg);
const gkd_setting *gkd_aligndistil_settings(size_t *n);
int gkd_aligndistil_config_set(gkd_aligndistil_config *cfg, const char *name, const char *value);
const gkd_metric *gkd_aligndistil_metric_table(size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* RLT_GKD_H */
