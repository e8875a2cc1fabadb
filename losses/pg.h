/*
 * pg.h -- policy-gradient losses for sequence policies: the GRPO family of
 * TRL's GRPOTrainer (grpo, bnpo, dr_grpo, dapo, luspo, cispo, sapo), GSPO
 * (importance_sampling_level = sequence) and the verl variants the spec names
 * (dual-clip, agg_loss modes, low_var_kl, GSPO-token, two-sided CISPO).
 * Formulas, defaults and worked numbers: specs/pg_losses.md sections 1-3, 6.
 *
 * Three stages, each its own pure function, so a training loop can swap any
 * of them:
 *
 *   pg_advantages      rewards [B] (contiguous groups of G)   -> A [B]
 *   pg_per_token_loss  logps, old, ref, mask, A, entropy      -> l [B,T]
 *   pg_aggregate       l [B,T], mask                          -> loss (0-dim)
 *
 * pg_loss() runs the last two with the metrics TRL logs. Notation: m = mask,
 * L_i = sum_t m[i,t], r = exp(logps - old_logps), A = advantage.
 *
 * Importance weight (coef_1 = exp(logw)):
 *   token          logw[i,t] = clamp(logps - old, +-log_ratio_clamp)
 *   sequence       logw[i]   = clamp(sum_t m (logps - old) / max(L_i,1), +-seq_log_ratio_clamp)  (GSPO)
 *   sequence_token logw[i,t] = logps - sg(logps) + sg(logw[i])  (GSPO-token, verl's gspo)
 * Per-token loss by loss_type (eps_low = epsilon, eps_high = epsilon_high or epsilon):
 *   grpo bnpo dr_grpo dapo luspo
 *            coef_2 = clamp(coef_1, 1-eps_low, 1+eps_high); with delta: coef_1 = min(coef_1, delta)
 *            l = -min(coef_1 A, coef_2 A)        (delta = verl's dual-clip c, identical values)
 *   cispo    l = -sg(min(coef_1, eps_high)) A logps    (cispo_two_sided: sg(coef_2), verl)
 *   sapo     l = -sigma(tau (coef_1 - 1)) 4/tau A,  tau = tau_pos if A > 0 else tau_neg
 * then, in TRL's order: l = 0 where the top-entropy mask drops the token (only
 * when top_entropy_quantile < 1), l += beta * k3 with
 * k3 = exp(ref - logps) - (ref - logps) - 1 (kl_clamp: verl's low_var_kl
 * clamps), and l = 0 at every masked position.
 *
 * Aggregation (aggregation = auto picks TRL's for the loss_type; N_ga =
 * gradient_accumulation_steps):
 *   seq_mean_token_mean (grpo, sapo)  (1/B) sum_i [sum_t m l / max(L_i,1)] / N_ga
 *   token_mean (bnpo)                 sum m l / max(sum m, 1) / N_ga
 *   dr_grpo                           sum m l / (B max_completion_length) / N_ga
 *   dapo (dapo, cispo)                sum m l / (max(num_items_in_batch,1) / num_processes)
 *   luspo                             (1/B) sum_i sum_t m l / N_ga  (= (1/B) sum_i l_i L_i at sequence level)
 *   verl_token_mean                   sum m l / max(sum m, 1) / N_ga
 *   verl_seq_mean_token_mean          sum_{i: L_i>0} [sum_t m l / (L_i + 1e-8)] / max(#{L_i>0}, 1) / N_ga
 *   verl_seq_mean_token_sum           sum_{i: L_i>0} sum_t m l / max(#{L_i>0}, 1) / N_ga
 *   verl_seq_mean_token_sum_norm      sum m l / loss_scale_factor (0 = padded T) / N_ga
 *
 * Padding. Masked positions of every [B,T] input are replaced with 0 through
 * rt_where before any arithmetic, and rows with L_i = 0 get A = 0, so a NaN or
 * inf in padding reaches neither the loss nor any gradient (the gradient there
 * is exactly 0). The log-ratio clamp (default +-20, TRL has none; 0 turns it
 * off) keeps exp() finite where TRL would produce inf and then 0*inf = NaN.
 *
 * Computation runs in the dtype of logps (float32 or float64); the other
 * float inputs must match it. Only logps receives a gradient; old_logps,
 * ref_logps, advantages and entropy are detached. Nothing here does I/O or
 * keeps state.
 */
#ifndef RLT_PG_H
#define RLT_PG_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Stage 1: group-relative advantages ---------------------------------- */

typedef enum pg_scale {
    PG_SCALE_GROUP = 0, /* (R - mean_g) / (std_g + eps)       TRL default */
    PG_SCALE_BATCH = 1, /* (R - mean_g) / (std_batch + eps)   TRL "batch" */
    PG_SCALE_NONE = 2   /* R - mean_g   (Dr. GRPO; verl norm_adv_by_std_in_grpo=False) */
} pg_scale;

/* What a group with exactly one scorable reward gets. */
typedef enum pg_singleton {
    PG_SINGLETON_ZERO = 0, /* TRL: nanstd is NaN for one value, so A = 0          */
    PG_SINGLETON_RAW = 1   /* verl: mean 0, std 1, so A = R / (1 + eps) (or R)     */
} pg_singleton;

typedef struct pg_adv_config {
    int64_t group_size; /* G >= 1, contiguous groups; must divide B                */
    int scale_rewards;  /* pg_scale, default PG_SCALE_GROUP                         */
    double epsilon;     /* added to the std: 1e-4 (TRL), verl uses 1e-6            */
    int singleton;      /* pg_singleton, default PG_SINGLETON_ZERO                  */
} pg_adv_config;

typedef struct pg_adv_metrics {
    double reward;               /* nanmean of the rewards                          */
    double reward_std;           /* nanstd (Bessel) over the whole batch            */
    double frac_reward_zero_std; /* fraction of rows whose std (group, or batch for
                                    scale_rewards=batch) is isclose to 0; a group of
                                    size 1 has std 0 (TRL)                          */
    double frac_unscorable;      /* fraction of NaN rewards ("no reward")           */
} pg_adv_metrics;

/* A [B] in the dtype of rewards (float32/float64 [B], NaN = no reward),
 * without gradient. Statistics use only the scorable rewards of each group
 * (nanmean, Bessel-corrected nanstd); NaN advantages (unscorable rows, groups
 * whose std is NaN) become 0, and a zero-std group gets exactly 0. Computed in
 * double precision on the host. m may be NULL. NULL + rt_last_error() on a bad
 * shape, dtype or group_size. */
rt_tensor *pg_advantages(rt_scope *S, const pg_adv_config *cfg, const rt_tensor *rewards, pg_adv_metrics *m);

/* ---- Stages 2 and 3: per-token loss and aggregation ---------------------- */

typedef enum pg_loss_type {
    PG_LOSS_GRPO = 0,
    PG_LOSS_BNPO,
    PG_LOSS_DR_GRPO,
    PG_LOSS_DAPO,
    PG_LOSS_LUSPO,
    PG_LOSS_CISPO,
    PG_LOSS_SAPO,
    PG_LOSS_TYPE_COUNT
} pg_loss_type;

typedef enum pg_is_level {
    PG_LEVEL_TOKEN = 0,
    PG_LEVEL_SEQUENCE = 1,       /* GSPO (TRL): gradient through the mean log-ratio */
    PG_LEVEL_SEQUENCE_TOKEN = 2  /* GSPO-token (TRL experimental, verl gspo)        */
} pg_is_level;

typedef enum pg_agg {
    PG_AGG_AUTO = 0, /* by loss_type, as TRL */
    PG_AGG_SEQ_MEAN_TOKEN_MEAN,
    PG_AGG_TOKEN_MEAN,
    PG_AGG_DR_GRPO,
    PG_AGG_DAPO,
    PG_AGG_LUSPO,
    PG_AGG_VERL_TOKEN_MEAN,
    PG_AGG_VERL_SEQ_MEAN_TOKEN_MEAN,
    PG_AGG_VERL_SEQ_MEAN_TOKEN_SUM,
    PG_AGG_VERL_SEQ_MEAN_TOKEN_SUM_NORM,
    PG_AGG_COUNT
} pg_agg;

/* Every setting of the family. Get one from pg_config_default(), never {0}.
 * Defaults are TRL's GRPOConfig's where it has the setting. */
typedef struct pg_config {
    int loss_type;                  /* pg_loss_type, default dapo                      */
    int importance_sampling_level;  /* pg_is_level, default token                      */
    int aggregation;                /* pg_agg, default auto                            */
    double epsilon;                 /* eps_low, 0.2                                    */
    double epsilon_high;            /* NaN = None = epsilon (DAPO 0.28, CISPO 5.0)     */
    double delta;                   /* NaN = None; two-sided clip, must be > 1         */
    double beta;                    /* KL weight, 0.0 (then ref_logps is not needed)   */
    double tau_pos, tau_neg;        /* sapo temperatures, 1.0 / 1.05                   */
    int64_t max_completion_length;  /* dr_grpo denominator, 512                        */
    double top_entropy_quantile;    /* rho in [0,1]; 1.0 = off; paper value 0.2        */
    double log_ratio_clamp;         /* |logps - old| clamp at token level, 20; 0 = off */
    double seq_log_ratio_clamp;     /* |mean log-ratio| clamp at sequence level, 10; 0 = off */
    int use_bias_correction_kl;     /* k3 *= coef_1 (before delta), 0                  */
    int kl_clamp;                   /* verl low_var_kl: ref-logps in +-20, k3 in +-10; 0 */
    int cispo_two_sided;            /* verl cispo: sg(clamp(r, 1-eps_low, 1+eps_high)); 0 */
    double gradient_accumulation_steps; /* N_ga, 1                                     */
    double num_items_in_batch;      /* dapo/cispo normalizer; 0 = this call's sum(mask) */
    double num_processes;           /* dapo/cispo: normalizer / num_processes, 1      */
    double loss_scale_factor;       /* verl_seq_mean_token_sum_norm; 0 = padded T      */
    pg_adv_config adv;              /* stage 1 (used by callers holding rewards)       */
} pg_config;

/* Inputs. All handles are borrowed; nothing is modified. */
typedef struct pg_inputs {
    const rt_tensor *logps;      /* [B,T] float32/float64, differentiated            */
    const rt_tensor *old_logps;  /* [B,T] or NULL = sg(logps) (ratio exactly 1)      */
    const rt_tensor *ref_logps;  /* [B,T]; required when beta != 0                   */
    const rt_tensor *mask;       /* [B,T] bool (other dtypes: nonzero = kept)        */
    const rt_tensor *advantages; /* [B] (or [B,T], per token)                        */
    const rt_tensor *entropy;    /* [B,T] or NULL; required when top_entropy_quantile < 1 */
} pg_inputs;

/* What a call reports (what TRL logs, plus verl's and SAPO's diagnostics).
 * Fields a configuration does not produce are NaN. Means over tokens are
 * masked means; at importance_sampling_level = sequence the clip fractions
 * count sequences (mean over B), as TRL's masked_batch_mean does. */
typedef struct pg_metrics {
    double loss;              /* the aggregated loss (pg_loss only)                    */
    double kl;                /* masked mean of beta's k3 term (beta != 0)             */
    double entropy;           /* masked mean of the entropy input (when given)         */
    double clip_low_mean;     /* clip_ratio/low_mean: (coef_1 < 1-eps_low) & (A<0)     */
    double clip_low_min;      /* clip_ratio/low_min: TRL's min over processes; one
                                 process here, so = low_mean                           */
    double clip_high_mean;    /* clip_ratio/high_mean: (coef_1 > 1+eps_high) & (A>0)   */
    double clip_high_max;     /* clip_ratio/high_max: = high_mean in one process       */
    double clip_region_mean;  /* clip_ratio/region_mean: low | high                    */
    double cispo_clip_ratio;  /* (coef_1 > eps_high) & (A>0)                            */
    double sapo_gate_mean;    /* SAPO gradient weight w = 4 p (1-p), masked mean       */
    double sapo_gate_min;     /* its minimum over the kept tokens (sequences)          */
    double sapo_gate_low_frac;/* fraction with w < 0.5                                  */
    double pg_clipfrac;       /* verl: masked mean of (-A coef_2 > -A r)               */
    double pg_clipfrac_lower; /* verl: dual-clip active, (max(L1,L2) > -A delta) & (A<0) */
    double ppo_kl;            /* verl: masked mean of (old - logps)                    */
    double entropy_threshold; /* the top-entropy quantile q (when rho < 1)             */
    double entropy_kept_frac; /* fraction of loss tokens the entropy mask keeps        */
    double num_tokens;        /* sum(mask)                                             */
} pg_metrics;

/* The per-token loss l [B,T] (0 at masked positions), owned by S,
 * differentiable w.r.t. logps. m may be NULL (every field but loss is filled). */
rt_tensor *pg_per_token_loss(rt_scope *S, const pg_config *cfg, const pg_inputs *in, pg_metrics *m);

/* The scalar loss from a per-token loss [B,T] and its mask [B,T], with
 * cfg->aggregation (auto resolved through cfg->loss_type). Positions where
 * mask is false are selected away, whatever they hold. */
rt_tensor *pg_aggregate(rt_scope *S, const pg_config *cfg, const rt_tensor *per_token_loss,
                        const rt_tensor *mask);

/* pg_per_token_loss then pg_aggregate: the 0-dim loss owned by S, or NULL
 * with rt_last_error() naming the input, its shape and the reason. When
 * per_token is not NULL it receives l [B,T] (detached, owned by S). m may be
 * NULL. Intermediates live in a private scope freed before return. */
rt_tensor *pg_loss(rt_scope *S, const pg_config *cfg, const pg_inputs *in, pg_metrics *m,
                   rt_tensor **per_token);

/* ---- Configuration --------------------------------------------------------- */

/* TRL GRPOConfig's defaults (advantages: group_size 0 = unset, scale group,
 * epsilon 1e-4, singleton zero). */
pg_config pg_config_default(void);
/* RT_OK, or RT_EINVAL naming the setting, its value and the allowed range. */
int pg_config_check(const pg_config *cfg);
/* The aggregation cfg uses (auto resolved). */
pg_agg pg_resolved_aggregation(const pg_config *cfg);

const char *pg_loss_type_name(int loss_type);  /* "grpo", ...; NULL when unknown */
int pg_loss_type_from_name(const char *name);  /* -1 when unknown */
const char *pg_agg_name(int agg);
const char *pg_level_name(int level);
const char *pg_scale_name(int scale);

/* A setting descriptor (settings.h): LSET_REAL, LSET_REAL_OPT ("none" = NaN,
 * TRL's None), LSET_INT, LSET_BOOL or LSET_CHOICE, at offsetof(pg_config,
 * field), with the default pg_config_default() gives, inclusive bounds,
 * choices and help. */
typedef lset_desc pg_setting;

/* Every setting, in display order; *n receives the count. */
const pg_setting *pg_settings(size_t *n);
const pg_setting *pg_setting_find(const char *name);
/* Parse value into cfg's setting name. RT_OK, or RT_EINVAL / RT_ENOTFOUND with
 * a message naming the key, the value, the range or choices, and for an
 * unknown key the nearest valid one. */
int pg_config_set(pg_config *cfg, const char *name, const char *value);
/* The current value of s in cfg ("0.2", "none", "dapo", ...). Returns buf. */
const char *pg_setting_format(const pg_config *cfg, const pg_setting *s, char *buf, size_t cap);

/* ---- Metric descriptors (for /metrics/<name> and logs) ------------------- */

typedef struct pg_metric_desc {
    const char *name;  /* TRL's log key where it has one ("clip_ratio/low_mean") */
    size_t offset;     /* offsetof(pg_metrics, field), a double                    */
    const char *help;
} pg_metric_desc;

const pg_metric_desc *pg_metric_table(size_t *n);
double pg_metric_value(const pg_metrics *m, const pg_metric_desc *d);

typedef struct pg_adv_metric_desc {
    const char *name;
    size_t offset; /* offsetof(pg_adv_metrics, field) */
    const char *help;
} pg_adv_metric_desc;

const pg_adv_metric_desc *pg_adv_metric_table(size_t *n);
double pg_adv_metric_value(const pg_adv_metrics *m, const pg_adv_metric_desc *d);

#ifdef __cplusplus
}
#endif
#endif /* RLT_PG_H */
