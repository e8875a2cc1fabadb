/*
 * sac.h -- Soft Actor-Critic (v2, automatic temperature) losses and the
 * squashed-Gaussian policy head, continuous and discrete. Formulas,
 * references and the CleanRL / SB3 differences: specs/sac_envs.md section 1.
 * Pure functions: tensors in, loss tensor (and metrics) out; the training
 * loop (order of updates, optimizers, Polyak averaging) lives in trainer/.
 *
 * Notation: B batch rows, A action dimensions (continuous) or actions
 * (discrete), alpha the temperature, H the target entropy, sg() stop-gradient.
 *
 *   squashed Gaussian  u = mean + exp(log_std) * eps,  y = tanh(u) in [-1,1],
 *                      action = clamp(y * scale + bias, low, high),
 *                      scale = (high-low)/2, bias = (high+low)/2 (1 and 0 without bounds)
 *     logp = sum_j [ -eps_j^2/2 - log_std_j - log(2 pi)/2 - corr_j ]
 *     corr_j (correction = stable)  = log(1 - tanh(u)^2) = 2 (log 2 - u + logsigmoid(2u))
 *                                     [+ log scale_j when action_units = env]
 *     corr_j (correction = epsilon) = log(1 - y^2 + epsilon)            (SB3)
 *                                     log(scale_j (1 - y^2) + epsilon)  (action_units = env, CleanRL)
 *     log_std = clamp(raw, min, max)                       (log_std_mode = clamp, SB3: [-20, 2])
 *               min + (max-min)(tanh(raw)+1)/2            (log_std_mode = tanh, CleanRL: [-5, 2])
 *               raw                                        (log_std_mode = none)
 *   critic   y = r + gamma * (terminated ? 0 : min(q1_next, q2_next) - alpha * next_logp)   (sg)
 *            loss = k * (mean (q1-y)^2 + mean (q2-y)^2),  k = 1 (sum, CleanRL) or 1/2 (half_sum, SB3)
 *   actor    loss = mean(alpha * logp - min(q1, q2))      (q_reduce = mean: softlearning's mean of Qs)
 *   alpha    loss = -mean(log_alpha * sg(logp + H))       (alpha_loss = log_alpha, SB3)
 *                   -mean(exp(log_alpha) * sg(logp + H))  (alpha_loss = alpha, CleanRL, softlearning)
 *            H = target_entropy, or -action_dim when it is auto
 *
 * Discrete (CleanRL sac_atari.py): Q nets output Q(s,.) [B,A]; the policy
 * outputs logits [B,A], pi = softmax, log pi = log_softmax.
 *   critic   y = r + gamma * (terminated ? 0 : sum_a pi'(a) (min(q1_next, q2_next)(a) - alpha log pi'(a)))
 *            loss = k * (mean (q1[b,a_b] - y)^2 + mean (q2[b,a_b] - y)^2)
 *   actor    loss = R( pi * (alpha log pi - sg(min(q1, q2))) )
 *   alpha    loss = R( sg(pi) * -(log_alpha or exp(log_alpha)) * sg(log pi + H) )
 *            H = target_entropy, or target_entropy_scale * log(A) when auto (0.89 log A)
 *   R = mean over B*A (discrete_reduction = mean, CleanRL: also divides by A)
 *       or sum over actions, mean over B (= expectation, the exact E_{a~pi})
 *   Actions whose probability is exactly 0 (logit -inf) contribute 0, not NaN.
 *
 * Defaults (the spec's recommendation, section 1.2): SB3's conventions --
 * critic and entropy in the normalized [-1,1] action space, log_std clamped to
 * [-20, 2], 0.5 * sum of the critic MSEs, the alpha loss on log_alpha -- with
 * the numerically stable tanh correction (no epsilon). Discrete parts default
 * to CleanRL sac_atari (the only discrete reference). Every CleanRL / SB3
 * difference is a setting; sac_config_reference() gives each reference's set.
 *
 * Terminal rows are selected with rt_where, never multiplied by zero, so a
 * NaN in a terminal row's next-state values cannot reach the target. Targets
 * and every "sg" input are detached. Computation runs in the dtype of the
 * first float input (float32 or float64); the others must match it. Nothing
 * here does I/O or keeps state.
 */
#ifndef RLT_SAC_H
#define RLT_SAC_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The pieces of the family; settings and metrics say which they apply to. */
typedef enum sac_part {
    SAC_PART_SQUASH = 0,       /* squashed-Gaussian sample and log-prob */
    SAC_PART_CRITIC,           /* twin-Q soft Bellman loss              */
    SAC_PART_ACTOR,            /* reparameterized policy loss           */
    SAC_PART_ALPHA,            /* temperature loss on log_alpha         */
    SAC_PART_DISCRETE_CRITIC,
    SAC_PART_DISCRETE_ACTOR,
    SAC_PART_DISCRETE_ALPHA,
    SAC_PART_COUNT
} sac_part;

/* Whose conventions a configuration follows (sac_config_reference). */
typedef enum sac_reference {
    SAC_REF_RECOMMENDED = 0, /* SB3's conventions + the stable tanh correction */
    SAC_REF_SB3 = 1,         /* stable-baselines3 sac/, epsilon correction     */
    SAC_REF_CLEANRL = 2,     /* cleanrl sac_continuous_action.py / sac_atari.py */
    SAC_REF_COUNT
} sac_reference;

typedef enum sac_log_std_mode {
    SAC_LOG_STD_CLAMP = 0, /* hard clamp into [min, max] (SB3, spinningup)     */
    SAC_LOG_STD_TANH = 1,  /* smooth rescale of tanh(raw) into [min, max] (CleanRL) */
    SAC_LOG_STD_NONE = 2   /* the input is log_std itself                        */
} sac_log_std_mode;

typedef enum sac_correction {
    SAC_CORR_STABLE = 0,  /* 2 (log 2 - u + logsigmoid(2u)): exact, finite for any u */
    SAC_CORR_EPSILON = 1  /* log(1 - tanh(u)^2 + epsilon) (SB3, CleanRL)            */
} sac_correction;

typedef enum sac_action_units {
    SAC_UNITS_NORMALIZED = 0, /* density of y in [-1,1] (SB3; the recommendation)   */
    SAC_UNITS_ENV = 1         /* density of the env action y*scale+bias (CleanRL)   */
} sac_action_units;

typedef enum sac_critic_reduction {
    SAC_CRITIC_HALF_SUM = 0, /* 0.5 * (mse1 + mse2) (SB3, softlearning) */
    SAC_CRITIC_SUM = 1       /* mse1 + mse2 (CleanRL)                   */
} sac_critic_reduction;

typedef enum sac_q_reduce {
    SAC_Q_MIN = 0, /* min(Q1, Q2) in the actor loss (CleanRL, SB3)  */
    SAC_Q_MEAN = 1 /* (Q1 + Q2)/2 (softlearning master)              */
} sac_q_reduce;

typedef enum sac_alpha_loss_form {
    SAC_ALPHA_LOSS_LOG_ALPHA = 0, /* -mean(log_alpha * sg(logp + H)) (SB3)               */
    SAC_ALPHA_LOSS_ALPHA = 1      /* -mean(exp(log_alpha) * sg(logp + H)) (CleanRL)      */
} sac_alpha_loss_form;

typedef enum sac_discrete_reduction {
    SAC_DISCRETE_MEAN = 0,       /* mean over B*A (CleanRL sac_atari)          */
    SAC_DISCRETE_EXPECTATION = 1 /* sum over actions, mean over B              */
} sac_discrete_reduction;

/* Every setting of the family; a part reads only those sac_settings marks
 * for it. Get one from sac_config_default / sac_config_reference, never {0}. */
typedef struct sac_config {
    double gamma;               /* discount, 0.99                                   */
    double alpha;               /* temperature used by critic and actor, 1.0 (= exp(0),
                                   the initial value of every reference)           */
    int critic_reduction;       /* sac_critic_reduction                             */
    int q_reduce;               /* sac_q_reduce (actor)                             */
    int alpha_loss;             /* sac_alpha_loss_form                              */
    double target_entropy;      /* NaN = auto: -action_dim, or 0.89 log A (discrete) */
    int64_t action_dim;         /* |A| for the continuous auto target entropy, 1    */
    double target_entropy_scale;/* discrete auto target entropy scale, 0.89         */
    int discrete_reduction;     /* sac_discrete_reduction                           */
    int log_std_mode;           /* sac_log_std_mode                                 */
    double log_std_min;         /* NaN = auto: -20 (clamp), -5 (tanh)               */
    double log_std_max;         /* 2                                                */
    int correction;             /* sac_correction                                   */
    double epsilon;             /* epsilon of the epsilon correction, 1e-6           */
    int action_units;           /* sac_action_units                                 */
} sac_config;

/* The defaults of part (see the file comment): the recommended conventions for
 * continuous parts, CleanRL sac_atari's for discrete ones. */
sac_config sac_config_default(sac_part part);
/* The configuration reference ref uses for part (SB3 has no discrete SAC:
 * its discrete parts get SB3's continuous conventions where they apply). */
sac_config sac_config_reference(sac_part part, sac_reference ref);
/* RT_OK, or RT_EINVAL naming the setting, its value and the allowed range. */
int sac_config_check(const sac_config *cfg);
/* The effective lower log_std bound (auto resolved by log_std_mode). */
double sac_log_std_min(const sac_config *cfg);
/* The target entropy: cfg->target_entropy, or when auto -action_dim
 * (continuous) / target_entropy_scale * log(action_dim) (discrete). */
double sac_target_entropy(const sac_config *cfg, int64_t action_dim, int discrete);

const char *sac_part_name(sac_part part);          /* "squash", "critic", ...   */
const char *sac_reference_name(sac_reference ref); /* "recommended", "sb3", "cleanrl" */
int sac_reference_from_name(const char *name);     /* -1 when unknown           */

/* ---- Squashed-Gaussian policy head ---------------------------------------- */

/* log(1 - tanh(u)^2) computed as 2 (log 2 - u + logsigmoid(2u)): no epsilon,
 * exact gradient, finite for every finite u. Same shape as u, owned by S. */
rt_tensor *sac_log1m_tanh_sq(rt_scope *S, const rt_tensor *u);

/* The effective log_std from the head's raw output by cfg->log_std_mode. */
rt_tensor *sac_log_std(rt_scope *S, const sac_config *cfg, const rt_tensor *raw);

typedef struct sac_squash_inputs {
    const rt_tensor *mean;        /* [B,A] float32/float64                           */
    const rt_tensor *log_std;     /* [B,A] the head's raw output (cfg->log_std_mode) */
    const rt_tensor *noise;       /* [B,A] eps ~ N(0,1), or NULL: drawn from gen     */
    const rt_tensor *action_low;  /* [A] Box lower bounds, or NULL (no rescale)      */
    const rt_tensor *action_high; /* [A] Box upper bounds; given with action_low     */
} sac_squash_inputs;

typedef struct sac_squash_out { /* all owned by the caller's scope */
    rt_tensor *action;      /* [B,A] env action y*scale+bias, clamped into [low, high] */
    rt_tensor *squashed;    /* [B,A] y = tanh(u) in [-1,1]                              */
    rt_tensor *logp;        /* [B]   log-density (cfg->action_units), differentiable    */
    rt_tensor *log_std;     /* [B,A] the effective log_std                              */
    rt_tensor *mean_action; /* [B,A] deterministic action tanh(mean)*scale+bias (sg)    */
    rt_tensor *noise;       /* [B,A] the eps used (drawn or given), detached            */
} sac_squash_out;

struct sac_metrics;

/* Sample and score (rsample: gradients reach mean and log_std through u).
 * gen is used only when in->noise is NULL. m may be NULL; when given, its
 * entropy (-mean logp), log_std (mean) and count are filled, the rest NaN.
 * Returns RT_OK, or a negative status with rt_last_error() naming the input,
 * its shape and the reason (*out is then all NULL). */
int sac_squashed_gaussian(rt_scope *S, const sac_config *cfg, const sac_squash_inputs *in, rt_gen *gen,
                          sac_squash_out *out, struct sac_metrics *m);

/* The training-loop form: only the sample y = tanh(u) [B,A] and its logp [B]
 * (both owned by S, differentiable), as one noise draw from gen (the same
 * [B,A] rt_randn draw sac_squashed_gaussian makes) and one fused op
 * (rt_squashed_gaussian) -- the same values as sac_squashed_gaussian's
 * `squashed` and `logp`, without its other outputs or its bounds checks.
 * scale [A] ((high - low) / 2) matters only for action_units = env; NULL
 * means normalized units. RT_OK or a negative status (outputs NULL). */
int sac_squash_sample(rt_scope *S, const sac_config *cfg, const rt_tensor *mean, const rt_tensor *log_std_raw,
                      const rt_tensor *scale, rt_gen *gen, rt_tensor **y, rt_tensor **logp);

/* ---- Losses ----------------------------------------------------------------- */

/* What a call reports. Fields a part does not produce are NaN
 * (sac_metric_applies says which). */
typedef struct sac_metrics {
    double loss;           /* the returned loss                                       */
    double qf1_loss;       /* mean (q1 - y)^2                                         */
    double qf2_loss;       /* mean (q2 - y)^2                                         */
    double qf1_values;     /* mean q1(s,a) (CleanRL's losses/qf1_values)              */
    double qf2_values;     /* mean q2(s,a)                                            */
    double target_q;       /* mean y                                                  */
    double min_q;          /* actor: mean of min(q1,q2) (under pi when discrete)      */
    double entropy;        /* -mean logp (continuous estimate) or the exact policy
                              entropy -sum pi log pi averaged over B (discrete; the
                              next-state policy for the discrete critic)              */
    double alpha;          /* alpha used, or exp(log_alpha) for the alpha loss        */
    double target_entropy; /* H used by the alpha loss                                */
    double log_std;        /* squash: mean effective log_std                          */
    double count;          /* B                                                       */
} sac_metrics;

typedef struct sac_critic_inputs {
    const rt_tensor *q1, *q2;           /* [B] Q_i(s, a), differentiated            */
    const rt_tensor *q1_next, *q2_next; /* [B] target nets at (s', a'), a' ~ pi(s') */
    const rt_tensor *next_logp;         /* [B] log pi(a'|s')                        */
    const rt_tensor *rewards;           /* [B]                                      */
    const rt_tensor *terminated;        /* [B] bool (nonzero = true) or NULL = none  */
} sac_critic_inputs;

/* The 0-dim critic loss owned by S, or NULL with rt_last_error(). When target
 * is not NULL it receives y [B] (detached, owned by S). m may be NULL. */
rt_tensor *sac_critic_loss(rt_scope *S, const sac_config *cfg, const sac_critic_inputs *in, sac_metrics *m,
                           rt_tensor **target);

typedef struct sac_actor_inputs {
    const rt_tensor *logp;   /* [B] log pi(a~|s) of the reparameterized sample */
    const rt_tensor *q1, *q2; /* [B] Q_i(s, a~) (gradient flows into a~)        */
} sac_actor_inputs;

rt_tensor *sac_actor_loss(rt_scope *S, const sac_config *cfg, const sac_actor_inputs *in, sac_metrics *m);

typedef struct sac_alpha_inputs {
    const rt_tensor *log_alpha; /* one element ([] or [1]), differentiated       */
    const rt_tensor *logp;      /* [B] log pi(a|s) of fresh samples (detached)   */
} sac_alpha_inputs;

rt_tensor *sac_alpha_loss(rt_scope *S, const sac_config *cfg, const sac_alpha_inputs *in, sac_metrics *m);

typedef struct sac_discrete_critic_inputs {
    const rt_tensor *q1, *q2;           /* [B,A] Q_i(s, .), differentiated          */
    const rt_tensor *actions;           /* int64 [B], the actions taken, in [0, A)  */
    const rt_tensor *q1_next, *q2_next; /* [B,A] target nets at s'                  */
    const rt_tensor *next_logits;       /* [B,A] policy logits at s'                */
    const rt_tensor *rewards;           /* [B]                                      */
    const rt_tensor *terminated;        /* [B] bool or NULL                         */
} sac_discrete_critic_inputs;

rt_tensor *sac_discrete_critic_loss(rt_scope *S, const sac_config *cfg, const sac_discrete_critic_inputs *in,
                                    sac_metrics *m, rt_tensor **target);

typedef struct sac_discrete_actor_inputs {
    const rt_tensor *logits;  /* [B,A] policy logits at s, differentiated */
    const rt_tensor *q1, *q2; /* [B,A] Q_i(s, .) (detached)                */
} sac_discrete_actor_inputs;

rt_tensor *sac_discrete_actor_loss(rt_scope *S, const sac_config *cfg, const sac_discrete_actor_inputs *in,
                                   sac_metrics *m);

typedef struct sac_discrete_alpha_inputs {
    const rt_tensor *log_alpha; /* one element, differentiated        */
    const rt_tensor *logits;    /* [B,A] policy logits at s (detached) */
} sac_discrete_alpha_inputs;

rt_tensor *sac_discrete_alpha_loss(rt_scope *S, const sac_config *cfg, const sac_discrete_alpha_inputs *in,
                                   sac_metrics *m);

/* ---- Settings: a descriptor table per part (for --set k=v and --help) ---- */

/* A setting descriptor (settings.h): name, type (LSET_REAL, LSET_REAL_OPT,
 * LSET_INT, LSET_CHOICE), offsetof(sac_config, field), the part's default,
 * inclusive bounds, choices and help. The REAL_OPT settings (target_entropy,
 * log_std_min) spell NaN "auto" and also accept settings.h's "none". */
typedef lset_desc sac_setting;

/* The settings part reads, in display order, with that part's defaults; *n
 * receives the count. SAC_PART_COUNT gives every setting of the family (with
 * the continuous defaults); NULL (and *n = 0) for an invalid part. */
const sac_setting *sac_settings(sac_part part, size_t *n);
/* The setting of part called name, or NULL. */
const sac_setting *sac_setting_find(sac_part part, const char *name);
/* Parse value into setting name of cfg; name must be a setting of part
 * (SAC_PART_COUNT: of any part). RT_OK, or RT_EINVAL / RT_ENOTFOUND with a
 * message naming the key, the value, the range or choices, the nearest valid
 * key, or the part a known key does not apply to. */
int sac_config_set(sac_config *cfg, sac_part part, const char *name, const char *value);
/* The current value of s in cfg ("0.99", "auto", "clamp", ...). Returns buf. */
const char *sac_setting_format(const sac_config *cfg, const sac_setting *s, char *buf, size_t cap);

/* ---- Metric descriptors (for /metrics/<name> and logs) -------------------- */

typedef struct sac_metric_desc {
    const char *name;  /* as written to /metrics/ */
    size_t offset;     /* offsetof(sac_metrics, field), a double */
    unsigned parts;    /* bit (1u << part) set when part fills it */
    const char *help;
} sac_metric_desc;

const sac_metric_desc *sac_metric_table(size_t *n);
int sac_metric_applies(const sac_metric_desc *d, sac_part part);
double sac_metric_value(const sac_metrics *m, const sac_metric_desc *d);

#ifdef __cplusplus
}
#endif
#endif /* RLT_SAC_H */
