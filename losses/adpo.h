/*
 * adpo.h -- ADPO, Anchored Direct Preference Optimization (arXiv 2510.18913;
 * specs/pref_kd_losses.md section 3): a target distribution q over the P
 * candidates of a prompt is fitted by the anchored policy
 *
 *   u_i = (l_i - a_i) / tau,      p~ = softmax(u) over the prompt's candidates,
 *   listwise:  loss_b = -sum_i q_i log p~_i     (= KL(q || p~) + H(q); same gradient)
 *
 * where l_i is the policy's sequence log-prob of candidate i and a_i the
 * anchor's. The loss is the anchored cross-entropy, the paper's implemented
 * objective; KL(q || p~) is reported as a metric. tau plays DPO's 1/beta.
 *
 *   pairwise [I]: for every pair i < j of present candidates with q_i + q_j > 0,
 *   t_ij = q_i / (q_i + q_j) (the Bradley-Terry pair target implied by q) and
 *   loss_ij = -t_ij logsig(u_i - u_j) - (1 - t_ij) logsig(u_j - u_i);
 *   loss_b = mean over the prompt's pairs. At P = 2 with q = (q_w, 1 - q_w) this
 *   is the spec's pairwise form -q_w logsig(h/tau) - (1-q_w) logsig(-h/tau),
 *   h = r_w - r_l; with q_w = 1 and tau = 1/beta it is exactly DPO sigmoid, and
 *   with soft q_w it is cDPO with eps = 1 - q_w. The paper defines only P = 2
 *   (v1's text was unreadable); extending it over all pairs with the BT target
 *   is our choice. With hard one-hot labels it pits the winner against each
 *   other candidate (pairs of two losers have q_i + q_j = 0 and are skipped).
 *
 * The prompt loss is averaged over the prompts that have a candidate (listwise)
 * or a pair (pairwise); the others have loss 0 and do not count.
 *
 * Target q (cfg.target) [R ADPO-tex Table 1, Alg. 1; code refs as noted]:
 *   probs    q is the distribution itself: hard labels (one-hot), soft labels
 *            (e.g. BT/annotator probabilities), or a teacher's softmax at
 *            temperature T (then tau = T and a uniform anchor: KD). Each row
 *            must be >= 0 and sum to 1 over its present candidates (1e-4).
 *   softmax  q holds scores (rewards, advantages, teacher logits):
 *            q = softmax(score / beta_reward) over the present candidates
 *            (TRL-ADPO's softmax((A - mean A)/beta_r): the centering cancels).
 *   zscore   q = softmax(zscore(score) / beta_reward), unbiased std, std < 1e-8
 *            (or fewer than 2 candidates) -> 1 (the ADPO-verl code).
 *
 * Anchors: the loss sees only anchor_logps, a constant (detached here). The
 * training loop owns the anchor model and decides what it is [R ADPO-tex 3.6]:
 *   - fixed reference (SFT model, or a teacher for offline distillation), or a
 *     uniform anchor (pass zeros: a constant per prompt cancels in softmax);
 *   - previous policy / on-policy: the log-probs of the policy that sampled the
 *     candidates (old logps), recorded at sampling time; anchor_logps = NULL
 *     means "the current policy, detached" (TRL-ADPO's fallback when no old
 *     logps exist: u = 0 in value, gradient (p~ - q)/tau);
 *   - EMA of the policy or a periodic copy: update the anchor model's
 *     parameters with adpo_anchor_ema_update() (rate 1 = copy) after each
 *     optimizer step (or every N steps), then evaluate it under no-grad.
 * Whether l are summed (TRL-ADPO) or length-normalized (ADPO-verl) sequence
 * log-probs is the caller's choice; the anchor must use the same convention.
 *
 * Computation runs in float64 when policy_logps is float64, else float32;
 * masked candidates are selected away with where(), so NaN or inf there
 * cannot reach the loss or the gradient.
 */
#ifndef RLT_ADPO_H
#define RLT_ADPO_H

#include <stddef.h>

#include "dpo.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum adpo_form { ADPO_LISTWISE = 0, ADPO_PAIRWISE = 1 } adpo_form;
typedef enum adpo_target { ADPO_Q_PROBS = 0, ADPO_Q_SOFTMAX = 1, ADPO_Q_ZSCORE = 2 } adpo_target;

typedef struct adpo_config {
    double tau;         /* anchored temperature, 1.0 (TRL-ADPO default; paper LLM run 0.8) */
    int form;           /* adpo_form, listwise                                             */
    int target;         /* adpo_target, probs                                              */
    double beta_reward; /* softmax / zscore temperature of the scores, 0.5 (TRL-ADPO)       */
} adpo_config;

typedef struct adpo_inputs {
    const rt_tensor *policy_logps; /* [B,P] float, differentiated                            */
    const rt_tensor *anchor_logps; /* [B,P] constant; NULL = policy_logps detached (on-policy) */
    const rt_tensor *q;            /* [B,P] target probabilities or scores (cfg.target)       */
    const rt_tensor *mask;         /* [B,P] bool, optional: false = no such candidate         */
} adpo_inputs;

typedef struct adpo_outputs {
    rt_tensor *losses;        /* [B] per prompt (0 for a prompt that does not count) */
    rt_tensor *anchored_probs; /* [B,P] p~ = softmax(u) over present candidates (0 elsewhere) */
    rt_tensor *target;        /* [B,P] the q used (0 at absent candidates)            */
} adpo_outputs;

typedef struct adpo_metrics {
    double loss;
    double kl;        /* mean over counted prompts of KL(q || p~) (pairwise: mean pair KL) */
    double anchor_kl; /* mean |l - a| over present candidates (TRL-ADPO adpo/anchor_kl)     */
    double tau;
    double count;     /* prompts that count                                                */
} adpo_metrics;

rt_tensor *adpo_loss(rt_scope *S, const adpo_config *cfg, const adpo_inputs *in, adpo_outputs *out,
                     adpo_metrics *m);

adpo_config adpo_config_default(void);
int adpo_config_check(const adpo_config *cfg);
const dpo_setting *adpo_settings(size_t *n);
int adpo_config_set(adpo_config *cfg, const char *name, const char *value);
const dpo_metric_desc *adpo_metric_table(size_t *n);

/* anchor <- anchor + rate * (policy - anchor) for each of n parameter pairs,
 * in place under no-grad (EMA anchor; rate 1 copies the policy: the periodic
 * "pi_ref <- pi_theta" anchor). Shapes must match. rate in [0, 1]. */
int adpo_anchor_ema_update(rt_tensor *const *anchor_params, rt_tensor *const *policy_params, size_t n,
                           double rate);

#ifdef __cplusplus
}
#endif
#endif /* RLT_ADPO_H */
