/*
 * prefx.h -- preference losses near DPO, over sequence log-probabilities:
 * SimPO, ORPO, KTO and BCO. The exact formulas, defaults and worked numbers
 * are in specs/pref_kd_losses.md section 4; each function below names its
 * reference. IPO is a DPO loss type (losses/dpo.h: loss_type=ipo, with
 * ipo_length_normalize=0 for the paper's summed form).
 *
 *   loss   reference                               per-example loss l_i (mean over the batch)
 *   -----  --------------------------------------  -----------------------------------------------
 *   simpo  princeton-nlp/SimPO simpo_loss;         x = beta*(avg_w - avg_l) - gamma
 *          TRL CPOTrainer(loss_type="simpo")       sigmoid: -(1-eps)logsig(x) - eps*logsig(-x)
 *                                                  hinge:   relu(1 - x)
 *                                                  + sft_weight * NLL(chosen completion tokens)
 *   orpo   TRL ORPOTrainer odds_ratio_loss         NLL(prompt+chosen) - beta*logsig(log_odds),
 *                                                  log_odds = (aw-al) - (log(1-e^aw) - log(1-e^al))
 *   kto    TRL KTOTrainer (HEAD)                   desirable:   lambda_D * (1 - sig(beta*(r - z)))
 *                                                  undesirable: lambda_U * (1 - sig(beta*(z - r)))
 *                                                  z = max(0, mean(policy_kl - ref_kl)), detached
 *   bco    TRL BCOTrainer bco_loss + RunningMoments desirable -logsig(rw - delta),
 *                                                  undesirable -logsig(-(rw - delta)) (* UDM weight)
 *                                                  rw = beta*r, delta = running mean of rw
 *
 * Log-probs are SUMMED over completion tokens (spec section 6.1); where a loss
 * wants the per-token average (SimPO, ORPO) it divides by the token
 * count passed in *_lengths (clamped >= 1), so one stored batch serves every
 * loss. A NULL lengths tensor means "the log-probs given are already per-token
 * averages" (the spec's SimPO/ORPO examples are written that way).
 *
 * All inputs are 1-D [B] tensors of one float dtype (float32 or float64; the
 * computation runs in it). Lengths may be of any real or integer dtype; labels
 * (kto, bco) of any dtype, nonzero = desirable. Policy log-probs are
 * differentiated; reference and KL-sample log-probs are treated as constants.
 * Implicit rewards, running means and KL reference points never carry a
 * gradient. Every sigmoid term is evaluated as log-sigmoid / softplus, so
 * log-ratios of +-1e4 give finite losses and gradients.
 *
 * Each call returns the 0-dim loss (owned by S; S == NULL: the caller frees
 * it) or NULL with rt_last_error() naming the input, its shape or the setting
 * and the reason. Intermediates live in a private scope. Optionally it hands
 * back the per-example losses [B] (in the graph, owned by S; their mean is the
 * loss, plus SimPO's/ORPO's NLL term) and fills a metrics struct with what the
 * reference trainer logs (a value the batch cannot give -- e.g. KTO's
 * rewards/rejected with no undesirable example -- is NaN; the reference does
 * not log it). Nothing keeps state except BCO's running mean, which the caller
 * owns (bco_running) and passes in and gets back updated, so a checkpoint can
 * store it and a resume continues bit-exactly.
 */
#ifndef RLT_PREFX_H
#define RLT_PREFX_H

#include <stddef.h>

#include "settings.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Settings and metrics descriptors (shared by the four losses)               */
/* ------------------------------------------------------------------------ */

/* A setting descriptor (settings.h): LSET_REAL, LSET_BOOL or LSET_CHOICE at
 * offsetof(<loss>_config, field), with its default, bounds, choices, help. */
typedef lset_desc prefx_setting;

typedef struct prefx_metric {
    const char *name; /* TRL's log key: "rewards/chosen", "kl", ...            */
    size_t offset;    /* offsetof(<loss>_metrics, field), a double             */
    const char *help;
} prefx_metric;

/* The value of setting s in cfg (a config of the loss s belongs to),
 * formatted into buf ("0.1", "sigmoid", ...). Returns buf. */
const char *prefx_setting_format(const void *cfg, const prefx_setting *s, char *buf, size_t cap);
/* The value of metric d in m (a metrics struct of the loss d belongs to). */
double prefx_metric_value(const void *m, const prefx_metric *d);

/* ------------------------------------------------------------------------ */
/* SimPO                                                                     */
/* ------------------------------------------------------------------------ */

typedef enum simpo_loss_type { SIMPO_SIGMOID = 0, SIMPO_HINGE = 1 } simpo_loss_type;

/* Which reference's defaults a config starts from. */
typedef enum simpo_preset {
    SIMPO_PRESET_OFFICIAL = 0, /* princeton-nlp/SimPO: beta 2.0, gamma_beta_ratio 0.25
                                  (gamma 0.5), sft_weight 0                          */
    SIMPO_PRESET_TRL = 1       /* TRL CPOConfig(loss_type="simpo"): beta 0.1,
                                  simpo_gamma 0.5, cpo_alpha 1.0                     */
} simpo_preset;

typedef struct simpo_config {
    int preset;             /* simpo_preset the defaults came from (informational
                               once set; setting it through simpo_config_set
                               resets every other field to that preset)       */
    double beta;            /* reward scale                                    */
    double gamma;           /* target margin in reward units: x = beta*(avg_w -
                               avg_l) - gamma. The official gamma_beta_ratio is
                               gamma/beta; TRL's simpo_gamma is gamma.         */
    double label_smoothing; /* eps of the smoothed sigmoid (0 = plain)         */
    int loss_type;          /* simpo_loss_type                                 */
    double sft_weight;      /* weight of the chosen-completion NLL (official
                               sft_weight; TRL cpo_alpha)                       */
} simpo_config;

typedef struct simpo_inputs {
    const rt_tensor *policy_chosen_logps;   /* [B] summed completion log-probs (grad) */
    const rt_tensor *policy_rejected_logps; /* [B] (grad)                              */
    const rt_tensor *chosen_lengths;        /* [B] completion token counts, or NULL    */
    const rt_tensor *rejected_lengths;      /* [B] or NULL                             */
} simpo_inputs;

typedef struct simpo_metrics {
    double loss;               /* the returned loss                                 */
    double rewards_chosen;     /* rewards/chosen    = mean beta*avg_w                */
    double rewards_rejected;   /* rewards/rejected  = mean beta*avg_l                */
    double rewards_accuracies; /* rewards/accuracies = mean 1[avg_w > avg_l] (strict) */
    double rewards_margins;    /* rewards/margins   = mean beta*(avg_w - avg_l)       */
    double logps_chosen;       /* logps/chosen      = mean avg_w                      */
    double logps_rejected;     /* logps/rejected    = mean avg_l                      */
    double nll_loss;           /* token-mean NLL of the chosen completions           */
    double preference_loss;    /* mean of the per-pair losses (without the NLL term) */
} simpo_metrics;

/* Evaluate SimPO. per_example (may be NULL) receives l_i [B] (NLL excluded).
 * m may be NULL. The NLL term is -sum(policy_chosen_logps)/sum(chosen_lengths),
 * the token mean over the chosen completions of the whole batch (the
 * reference's CrossEntropyLoss); without lengths it is -mean(avg_w). */
rt_tensor *simpo_loss(rt_scope *S, const simpo_config *cfg, const simpo_inputs *in, simpo_metrics *m,
                      rt_tensor **per_example);

/* The official SimPO defaults / a preset's defaults. */
simpo_config simpo_config_default(void);
simpo_config simpo_config_preset(simpo_preset preset);
/* RT_OK, or RT_EINVAL naming the setting, its value and the allowed range. */
int simpo_config_check(const simpo_config *cfg);
/* Settings in display order (*n receives the count) / the one called name. */
const prefx_setting *simpo_settings(size_t *n);
/* Parse value into setting name. "preset" resets the other fields first, so
 * give it first. RT_OK, or RT_EINVAL / RT_ENOTFOUND with a message naming the
 * key, the value, the range or choices, and for an unknown key the nearest
 * valid one. */
int simpo_config_set(simpo_config *cfg, const char *name, const char *value);
const prefx_metric *simpo_metric_table(size_t *n);

/* ------------------------------------------------------------------------ */
/* ORPO                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct orpo_config {
    double beta; /* lambda of the paper: weight of the odds-ratio term (ORPOConfig.beta) */
} orpo_config;

typedef struct orpo_inputs {
    const rt_tensor *policy_chosen_logps;   /* [B] summed completion log-probs (grad)     */
    const rt_tensor *policy_rejected_logps; /* [B] (grad)                                  */
    const rt_tensor *chosen_lengths;        /* [B] completion token counts, or NULL        */
    const rt_tensor *rejected_lengths;      /* [B] or NULL                                 */
    /* ORPO's NLL covers the WHOLE chosen sequence, prompt included (the
     * reference's comment): the summed log-prob of every non-pad token of
     * prompt+chosen after the first, and that token count. NULL: the NLL falls
     * back to the chosen completion tokens (CPO's/SimPO's NLL) -- say so when
     * comparing with TRL. */
    const rt_tensor *policy_chosen_full_logps; /* [B] (grad) or NULL */
    const rt_tensor *chosen_full_lengths;      /* [B] or NULL        */
} orpo_inputs;

typedef struct orpo_metrics {
    double loss;
    double rewards_chosen;     /* rewards/chosen    = mean beta*avg_w          */
    double rewards_rejected;   /* rewards/rejected  = mean beta*avg_l          */
    double rewards_accuracies; /* rewards/accuracies (strict >)                */
    double rewards_margins;    /* rewards/margins                              */
    double logps_chosen;       /* logps/chosen = mean avg_w                    */
    double logps_rejected;     /* logps/rejected = mean avg_l                  */
    double nll_loss;           /* nll_loss: token-mean NLL                     */
    double log_odds_ratio;     /* log_odds_ratio = mean logsig(log_odds)       */
    double log_odds_chosen;    /* log_odds_chosen = mean log_odds              */
} orpo_metrics;

/* Evaluate ORPO: loss = NLL - beta * mean_i logsig(log_odds_i).
 * per_example receives -beta*logsig(log_odds_i) [B] (the NLL is a batch token
 * mean and is not split per pair). log(1 - e^a) uses log1p(-e^a) below -ln 2
 * and log(-expm1(a)) above, each branch fed only its own inputs; the average
 * log-prob is clamped to <= -1e-12 first, so a completion of probability 1
 * gives a finite loss (the reference returns inf there). */
rt_tensor *orpo_loss(rt_scope *S, const orpo_config *cfg, const orpo_inputs *in, orpo_metrics *m,
                     rt_tensor **per_example);
orpo_config orpo_config_default(void);
int orpo_config_check(const orpo_config *cfg);
const prefx_setting *orpo_settings(size_t *n);
int orpo_config_set(orpo_config *cfg, const char *name, const char *value);
const prefx_metric *orpo_metric_table(size_t *n);

/* ------------------------------------------------------------------------ */
/* KTO                                                                       */
/* ------------------------------------------------------------------------ */

typedef enum kto_loss_type {
    KTO_KTO = 0,              /* the KTO loss with the KL reference point z          */
    KTO_APO_ZERO_UNPAIRED = 1 /* z not computed: 1 - sig(beta r) / sig(beta r)       */
} kto_loss_type;

typedef struct kto_config {
    double beta;               /* 0.1                                                */
    double desirable_weight;   /* lambda_D, 1.0                                      */
    double undesirable_weight; /* lambda_U, 1.0                                      */
    int loss_type;             /* kto_loss_type                                      */
} kto_config;

typedef struct kto_inputs {
    const rt_tensor *policy_logps; /* [B] summed completion log-probs (grad)           */
    const rt_tensor *ref_logps;    /* [B] (constant)                                   */
    const rt_tensor *labels;       /* [B] nonzero = desirable                          */
    /* The KL sample: each prompt with a mismatched completion (TRL rotates the
     * completions by one inside the batch, (x_i, y_{i-1})). Required for
     * loss_type kto, ignored for apo_zero_unpaired. Constants: z is detached. */
    const rt_tensor *policy_kl_logps; /* [B'] */
    const rt_tensor *ref_kl_logps;    /* [B'] */
} kto_inputs;

typedef struct kto_metrics {
    double loss;
    double kl;               /* kl: z (after the clamp; 0 for apo_zero_unpaired)   */
    double rewards_chosen;   /* rewards/chosen   = sum beta*r over desirable / n_D  */
    double rewards_rejected; /* rewards/rejected = the same over undesirable        */
    double rewards_margins;  /* rewards/margins  = chosen - rejected (both present) */
    double logps_chosen;     /* logps/chosen   = mean policy logp, desirable        */
    double logps_rejected;   /* logps/rejected = mean policy logp, undesirable      */
    double count_chosen;     /* count/chosen   = n_D                                */
    double count_rejected;   /* count/rejected = n_U                                */
} kto_metrics;

/* Evaluate KTO: loss = mean over all B examples of the weighted per-example
 * losses (TRL's nanmean(cat(lambda_D L_D, lambda_U L_U))). All-desirable and
 * all-undesirable batches are fine. per_example receives the weighted l_i [B]
 * in input order. The batch-level z is what one process sees; a data-parallel
 * caller averages kto_kl_estimate() across ranks and clamps itself. */
rt_tensor *kto_loss(rt_scope *S, const kto_config *cfg, const kto_inputs *in, kto_metrics *m,
                    rt_tensor **per_example);
/* z before the clamp: mean(policy_kl_logps - ref_kl_logps), on the host. NaN
 * with rt_last_error() on a bad input. */
double kto_kl_estimate(const rt_tensor *policy_kl_logps, const rt_tensor *ref_kl_logps);
kto_config kto_config_default(void);
int kto_config_check(const kto_config *cfg);
const prefx_setting *kto_settings(size_t *n);
int kto_config_set(kto_config *cfg, const char *name, const char *value);
const prefx_metric *kto_metric_table(size_t *n);

/* ------------------------------------------------------------------------ */
/* BCO                                                                       */
/* ------------------------------------------------------------------------ */

/* TRL's RunningMoments over every reward seen: the state a checkpoint stores
 * (TRL writes the same four numbers to running.json). */
typedef struct bco_running {
    double mean;  /* delta: the running mean of the rewards            */
    double var;   /* population variance of everything seen             */
    double std;   /* unbiased std (TRL keeps it; not used by the loss)  */
    double count; /* number of rewards seen (starts at 1e-24)           */
} bco_running;

typedef struct bco_config {
    double beta;              /* 0.1                                                  */
    int update_running;       /* 1 = training: update the running mean before the loss
                                 (TRL updates only when model.training)               */
    double min_density_ratio; /* UDM weight clamp, 0.5                                */
    double max_density_ratio; /* 10.0                                                 */
} bco_config;

typedef struct bco_inputs {
    const rt_tensor *policy_logps; /* [B] summed completion log-probs (grad) */
    const rt_tensor *ref_logps;    /* [B] (constant)                         */
    const rt_tensor *labels;       /* [B] nonzero = desirable                */
    /* Optional UDM (underlying distribution matching): P(desirable | prompt)
     * from the caller's prompt classifier, [B] in [0,1], constant. When given,
     * each undesirable loss is weighted by clamp(p/(1-p+1e-8), min, max). */
    const rt_tensor *udm_prob;
} bco_inputs;

typedef struct bco_metrics {
    double loss;
    double delta;            /* delta: the running mean used by this call           */
    double rewards_chosen;   /* rewards/chosen   = sum rw over desirable / n_D        */
    double rewards_rejected; /* rewards/rejected                                     */
    double rewards_margins;  /* rewards/margins  (both present)                      */
    double logps_chosen;     /* logps/chosen = mean policy logp, desirable            */
    double logps_rejected;   /* logps/rejected                                       */
    double count_chosen;     /* count/chosen                                         */
    double count_rejected;   /* count/rejected                                       */
    double running_mean, running_var, running_std, running_count; /* state after    */
} bco_metrics;

/* The state TRL starts from: mean 0, var 1, std 1, count 1e-24. */
bco_running bco_running_init(void);
/* TRL's RunningMoments.update from a batch's statistics: n rewards with mean
 * batch_mean and population variance batch_var (gather them across ranks
 * first in data parallel). RT_OK, or RT_EINVAL on n < 1 or a non-finite
 * value (the state is left unchanged). */
int bco_running_update(bco_running *st, double batch_mean, double batch_var, double n);

/* Evaluate BCO. st (required) is read and, when cfg->update_running, first
 * updated with this batch's detached rewards beta*(policy - ref); delta is
 * st->mean after that. per_example receives the (UDM-weighted) l_i [B]. On
 * failure st is unchanged. */
rt_tensor *bco_loss(rt_scope *S, const bco_config *cfg, const bco_inputs *in, bco_running *st,
                    bco_metrics *m, rt_tensor **per_example);
bco_config bco_config_default(void);
int bco_config_check(const bco_config *cfg);
const prefx_setting *bco_settings(size_t *n);
int bco_config_set(bco_config *cfg, const char *name, const char *value);
const prefx_metric *bco_metric_table(size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* RLT_PREFX_H */
