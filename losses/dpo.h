/*
 * dpo.h -- Direct Preference Optimization and its relatives over sequence
 * log-probs: every loss type of TRL's DPOTrainer (current HEAD semantics) and
 * S-DPO with K negatives (specs/pref_kd_losses.md sections 1, 2 and 6).
 * ADPO lives beside it in adpo.h and shares the settings machinery below.
 *
 * Inputs are SEQUENCE log-probs: the sum over the completion tokens of
 * log pi(y_t | x, y_<t), computed by the caller (dpo_sequence_logps and
 * dpo_ld_logps below build them from per-token log-probs). With
 *   r_w = logp(y_w) - ref(y_w),  r_l = logp(y_l) - ref(y_l)   (log-ratios)
 *   s_w, s_l = f(r_w), f(r_l)      (f from f_divergence; reverse_kl: f(r)=r)
 *   D = s_w - s_l,  beta = cfg.beta,  eps = cfg.label_smoothing,
 *   |y| = completion length clamped to >= 1,  logsig(x) = -softplus(-x),
 * the per-pair loss of each type is (TRL HEAD `_compute_loss`):
 *
 *   sigmoid       -logsig(beta D)            (cdpo=1: -(1-eps)logsig(beta D) - eps logsig(-beta D),
 *                                             TRL v0.28's label-smoothed sigmoid)
 *   hinge         relu(1 - beta D)
 *   ipo           (s_w/|y_w| - s_l/|y_l| - 1/(2 beta))^2
 *   exo_pair      sig(beta D)(logsig(beta D) - log(1-eps)) + sig(-beta D)(logsig(-beta D) - log eps)
 *   nca_pair      -logsig(beta s_w) - 0.5 logsig(-beta s_w) - 0.5 logsig(-beta s_l)
 *   robust        (-(1-eps) logsig(beta D) + eps logsig(-beta D)) / (1 - 2 eps)
 *   bco_pair      -logsig(beta s_w) - logsig(-beta s_l)      (HEAD: no running-mean shift)
 *   sppo_hard     (s_w - 1/(2 beta))^2 + (s_l + 1/(2 beta))^2
 *   aot           x = sort(logp_w - logp_l) - sort(ref_w - ref_l) (ascending over the batch),
 *                 -(1-eps) logsig(beta x) - eps logsig(-beta x); pair i is sorted position i
 *   aot_unpaired  the same with x = sort(r_w) - sort(r_l)
 *   apo_zero      (1 - sig(beta r_w)) + sig(beta r_l)        (raw log-ratios)
 *   apo_down      sig(beta r_w) + (1 - sig(beta D))
 *   discopop      z = beta D, m = sig(z/discopop_tau): (1-m)(-logsig(z)) + m exp(-z)
 *   sigmoid_norm  -logsig(beta (s_w/|y_w| - s_l/|y_l|))
 *   sft           -sum_b logp_w / sum_b |y_w| (token-mean NLL of every chosen completion token),
 *                 the same value for every pair
 *
 * Several types combine: loss = sum_k weight_k * mean_i(omega_i * l_{k,i}),
 * where omega_i is the WPO pair weight w_chosen*w_rejected (use_weighting; 1
 * otherwise). label_smoothing is read only by robust, exo_pair, aot,
 * aot_unpaired (and sigmoid with cdpo=1), as in HEAD.
 *
 * TRL v0.28 differences (not implemented, noted for comparisons): sigmoid
 * used eps as cDPO (here the cdpo switch); bco_pair subtracted a running
 * mean of all rewards; ipo averaged the log-probs per token before the
 * log-ratios, so its logged rewards were per-token; WPO weights were clamped
 * to <= 1; ld_alpha indexed absolute positions and skipped the reference;
 * the alpha-divergence coefficient was 1 - alpha of HEAD's; several loss
 * types scaled the logged rewards by the sum of the weights.
 *
 * Computation runs in float64 when any log-prob input is float64 and in
 * float32 otherwise (bfloat16/float16 inputs are upcast); the loss has that
 * dtype. Reference log-probs, lengths and WPO weights are constants (never
 * differentiated). Every formula uses logsigmoid / softplus / logsumexp, so
 * log-ratios of +-1e4 give finite losses and gradients (with the default
 * reverse_kl; forward_kl's exp(-r) overflows by definition, and
 * alpha_divergence scores reach e^80 under TRL's clamp, whose square in ipo /
 * sppo_hard exceeds float32's range: use float64 for those combinations).
 */
#ifndef RLT_DPO_H
#define RLT_DPO_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Settings descriptors (shared by dpo, dpo_sdpo and adpo)                    */
/* ------------------------------------------------------------------------ */

/* A setting descriptor (settings.h): LSET_REAL, LSET_BOOL, LSET_CHOICE, or
 * one of dpo_config's two comma lists below, which dpo.c parses itself. */
typedef lset_desc dpo_setting;

#define DPO_SET_TYPES LSET_CUSTOM         /* dpo_config.loss_type[]: comma list of loss type names */
#define DPO_SET_WEIGHTS (LSET_CUSTOM + 1) /* dpo_config.loss_weights[]: comma list of numbers in [lo, hi] */

/* Apply "name=value" to cfg through a descriptor table (who names the family
 * in messages: "dpo", "sdpo", "adpo"). RT_OK; RT_EINVAL for a bad value (the
 * message names the key, the value and the allowed range or choices);
 * RT_ENOTFOUND for an unknown key (the message suggests the nearest one). */
int dpo_settings_apply(void *cfg, const dpo_setting *table, size_t n, const char *who, const char *name,
                       const char *value);
/* The current value of setting s in cfg ("0.1", "sigmoid,sft", "1"). Returns buf. */
const char *dpo_setting_format(const void *cfg, const dpo_setting *s, char *buf, size_t cap);

/* A metric: name as TRL logs it ("rewards/chosen"), offset of its double. */
typedef struct dpo_metric_desc {
    const char *name;
    size_t offset;
    const char *help;
} dpo_metric_desc;

/* ------------------------------------------------------------------------ */
/* DPO                                                                        */
/* ------------------------------------------------------------------------ */

typedef enum dpo_loss_type {
    DPO_LOSS_INVALID = -1,
    DPO_SIGMOID = 0,
    DPO_HINGE,
    DPO_IPO,
    DPO_EXO_PAIR,
    DPO_NCA_PAIR,
    DPO_ROBUST,
    DPO_BCO_PAIR,
    DPO_SPPO_HARD,
    DPO_AOT,
    DPO_AOT_UNPAIRED,
    DPO_APO_ZERO,
    DPO_APO_DOWN,
    DPO_DISCOPOP,
    DPO_SIGMOID_NORM,
    DPO_SFT,
    DPO_LOSS_TYPE_COUNT
} dpo_loss_type;

/* f_divergence_type: how log-ratios become scores s(r) (TRL HEAD). */
typedef enum dpo_f_divergence {
    DPO_REVERSE_KL = 0, /* s = r (standard DPO)                                   */
    DPO_FORWARD_KL,     /* s = -exp(-r)                                           */
    DPO_JS_DIVERGENCE,  /* s = logsig(r)                                          */
    DPO_ALPHA_DIVERGENCE /* s = exp((a-1) r)/(a-1), exponent clamped <= 80; |a-1| < 1e-6 -> r */
} dpo_f_divergence;

#define DPO_MAX_TERMS 8

/* Get one from dpo_config_default(); the defaults are TRL DPOConfig's. */
typedef struct dpo_config {
    int n_types;                          /* entries of loss_type (>= 1)              */
    int loss_type[DPO_MAX_TERMS];         /* dpo_loss_type; default {sigmoid}          */
    int n_weights;                        /* 0 = every weight 1; else == n_types      */
    double loss_weights[DPO_MAX_TERMS];
    double beta;                          /* 0.1                                       */
    double label_smoothing;               /* 0 (robust, exo_pair, aot*, cdpo)          */
    int f_divergence;                     /* dpo_f_divergence, reverse_kl              */
    double f_alpha_divergence_coef;       /* 0.5                                       */
    double discopop_tau;                  /* 0.05                                      */
    int use_weighting;                    /* WPO: 0; needs chosen/rejected_weights     */
    int cdpo;                             /* 0; 1 = v0.28 label-smoothed sigmoid       */
    double ld_alpha;                      /* 1 = off (TRL None); read by dpo_ld_logps  */
    int ipo_length_normalize;             /* 1: TRL's per-token ipo (needs lengths);
                                             0: the paper's Eq. 17 on summed log-ratios */
} dpo_config;

typedef struct dpo_inputs {
    const rt_tensor *policy_chosen_logps;   /* [B] float, differentiated                 */
    const rt_tensor *policy_rejected_logps; /* [B] float, differentiated                 */
    const rt_tensor *ref_chosen_logps;      /* [B] float, constant                       */
    const rt_tensor *ref_rejected_logps;    /* [B] float, constant                       */
    const rt_tensor *chosen_lengths;        /* [B] int64 or float completion token counts:
                                               required by ipo, sigmoid_norm, sft        */
    const rt_tensor *rejected_lengths;      /* [B]: required by ipo, sigmoid_norm         */
    const rt_tensor *chosen_nll_logps;      /* [B] optional: the unweighted chosen sum for
                                               sft when ld_alpha shaped policy_chosen_logps
                                               (TRL's sft reads the logits, not the LD sum);
                                               NULL = policy_chosen_logps                 */
    const rt_tensor *chosen_weights;        /* [B] WPO w_seq of chosen (dpo_wpo_weights);
                                               required when use_weighting               */
    const rt_tensor *rejected_weights;      /* [B] WPO w_seq of rejected                 */
} dpo_inputs;

/* Per-pair results, detached, owned by S (each may be ignored). */
typedef struct dpo_outputs {
    rt_tensor *losses;           /* [B] sum_k weight_k * omega_i * l_{k,i}; its mean is the loss */
    rt_tensor *chosen_rewards;   /* [B] beta * r_w                                     */
    rt_tensor *rejected_rewards; /* [B] beta * r_l                                     */
    rt_tensor *pair_weights;     /* [B] omega_i (all 1 without use_weighting)          */
} dpo_outputs;

/* What TRL HEAD logs from these inputs (logits/chosen, logits/rejected, entropy and
 * mean_token_accuracy need the logits and belong to the training loop).
 * Rewards always use the log-ratios, never the f-scores. */
typedef struct dpo_metrics {
    double loss;
    double rewards_chosen;     /* mean beta r_w                                       */
    double rewards_rejected;   /* mean beta r_l                                       */
    double rewards_accuracies; /* mean 1[beta r_w > beta r_l] (strict: ties count 0)  */
    double rewards_margins;    /* mean beta (r_w - r_l)                               */
    double logps_chosen;       /* mean policy chosen sequence log-prob                */
    double logps_rejected;     /* mean policy rejected sequence log-prob              */
    double pair_weight;        /* mean WPO pair weight (1 without use_weighting)      */
    double count;              /* B                                                   */
} dpo_metrics;

/* Evaluate. Returns a 0-dim loss owned by S (S == NULL: the caller frees),
 * differentiable w.r.t. the policy log-probs, or NULL with rt_last_error()
 * naming the input, its shape and the reason. out and m may be NULL. The
 * intermediates live in a private scope. */
rt_tensor *dpo_loss(rt_scope *S, const dpo_config *cfg, const dpo_inputs *in, dpo_outputs *out,
                    dpo_metrics *m);

dpo_config dpo_config_default(void);
/* RT_OK or RT_EINVAL naming the setting: weights count, exo_pair with eps = 0
 * (HEAD raises), robust with eps >= 0.5 (HEAD only warns; the loss would
 * divide by <= 0, so it is refused here), aot types with use_weighting. */
int dpo_config_check(const dpo_config *cfg);
const char *dpo_loss_type_name(dpo_loss_type t);  /* NULL when out of range */
dpo_loss_type dpo_loss_type_from_name(const char *name);
const char *dpo_loss_type_help(dpo_loss_type t);

const dpo_setting *dpo_settings(size_t *n);
/* dpo_settings_apply over dpo_settings(); "loss_type=sigmoid,bco_pair,sft",
 * "loss_weights=0.8,0.2,1". */
int dpo_config_set(dpo_config *cfg, const char *name, const char *value);

const dpo_metric_desc *dpo_metric_table(size_t *n);
double dpo_metric_value(const void *metrics, const dpo_metric_desc *d);

/* ---- Building sequence log-probs from per-token log-probs --------------- */

/* Sum of token_logps [N,T] over the positions where mask [N,T] (bool) is
 * true -> [N] (owned by S). Masked positions are selected away with where(),
 * so NaN/inf there never reaches the sum or its gradient. */
rt_tensor *dpo_sequence_logps(rt_scope *S, const rt_tensor *token_logps, const rt_tensor *mask);

/* LD-DPO (TRL HEAD semantics): with L_c, L_r the completion lengths of a
 * pair and shared = min(L_c, L_r), each sequence log-prob is
 *   sum_{1 <= k <= shared} lp_k + ld_alpha * sum_{k > shared} lp_k,
 * k counting completion tokens (cumsum of the mask), not absolute positions.
 * HEAD applies it to the policy AND the reference: call it for both and feed
 * the results to dpo_loss (v0.28 indexed absolute positions and skipped the
 * reference). chosen [B,Tc] / rejected [B,Tr] per-token log-probs with their
 * masks; *chosen_out, *rejected_out [B] owned by S. RT_OK or an error. */
int dpo_ld_logps(rt_scope *S, const rt_tensor *chosen_token_logps, const rt_tensor *chosen_mask,
                 const rt_tensor *rejected_token_logps, const rt_tensor *rejected_mask, double ld_alpha,
                 rt_tensor **chosen_out, rt_tensor **rejected_out);

/* WPO sequence weights (arXiv 2406.11827 Eq. 2, TRL HEAD, no clamp):
 * logits [N,T,V] where logits[n,t] predicts labels[n,t] (already shifted),
 * labels int64 [N,T], mask bool [N,T]:
 *   a_t = log p_t(label) - log sum_v p_t(v)^2,   w = exp(mean over mask of a_t).
 * -> [N] (owned by S, no gradient). The pair weight is w_chosen * w_rejected. */
rt_tensor *dpo_wpo_weights(rt_scope *S, const rt_tensor *logits, const rt_tensor *labels,
                           const rt_tensor *mask);

/* ------------------------------------------------------------------------ */
/* S-DPO (softmax DPO with K negatives, chenyuxin1999/S-DPO)                  */
/* ------------------------------------------------------------------------ */
/*
 *   r_p = logp(y_p) - ref(y_p),  r_k = logp(y_k) - ref(y_k),
 *   loss_b = -logsig(-log sum_k exp(beta (r_k - r_p)))
 *          = softplus(logsumexp_k beta (r_k - r_p))       (the stable form used here)
 * mean over b. K = 1 is exactly DPO sigmoid.
 */
typedef struct dpo_sdpo_config {
    double beta; /* 0.1 (the trainer default; the released run script uses 1) */
} dpo_sdpo_config;

typedef struct dpo_sdpo_inputs {
    const rt_tensor *policy_chosen_logps;   /* [B] differentiated                      */
    const rt_tensor *policy_rejected_logps; /* [B,K] differentiated                    */
    const rt_tensor *ref_chosen_logps;      /* [B] constant                            */
    const rt_tensor *ref_rejected_logps;    /* [B,K] constant                          */
    const rt_tensor *rejected_mask;         /* [B,K] bool, optional: false = no such
                                               negative (rows with fewer than K). A row
                                               without any negative has loss 0.        */
} dpo_sdpo_inputs;

typedef struct dpo_sdpo_outputs {
    rt_tensor *losses;           /* [B]                                  */
    rt_tensor *chosen_rewards;   /* [B] beta r_p                         */
    rt_tensor *rejected_rewards; /* [B,K] beta r_k (S-DPO logs each k)   */
} dpo_sdpo_outputs;

typedef struct dpo_sdpo_metrics {
    double loss;
    double rewards_chosen;     /* mean beta r_p                                         */
    double rewards_rejected;   /* mean beta r_k over every present negative            */
    double rewards_accuracies; /* mean over b of prod_k 1[beta r_p > beta r_k]          */
    double rewards_margins;    /* mean beta (r_p - r_k) over every present negative    */
    double logps_chosen;       /* mean policy chosen log-prob                           */
    double logps_rejected;     /* mean policy log-prob over every present negative     */
    double count;              /* B                                                     */
} dpo_sdpo_metrics;

rt_tensor *dpo_sdpo_loss(rt_scope *S, const dpo_sdpo_config *cfg, const dpo_sdpo_inputs *in,
                         dpo_sdpo_outputs *out, dpo_sdpo_metrics *m);
dpo_sdpo_config dpo_sdpo_config_default(void);
const dpo_setting *dpo_sdpo_settings(size_t *n);
int dpo_sdpo_config_set(dpo_sdpo_config *cfg, const char *name, const char *value);
const dpo_metric_desc *dpo_sdpo_metric_table(size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* RLT_DPO_H */
