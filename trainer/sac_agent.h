/*
 * sac_agent.h -- the Soft Actor-Critic agent: the actor, the twin critics and
 * their targets, log alpha, the three Adam optimizers, the two generators,
 * and one gradient update. trainer/sac_train.c is the loop (act, step the
 * environments, store, update, log, checkpoint) and calls this; so does
 * bench/bench_sac.c, which times sac_agent_sample + sac_agent_update against
 * the same update in eager PyTorch (bench/bench_sac.py).
 *
 * One update (specs/sac_envs.md §1.3, the trainer's order):
 *   1. target   y = r + gamma (1 - terminated)(min_i Q'_i(s', a') - alpha log pi(a'|s')),
 *               a' ~ pi(s'), under no-grad;
 *   2. critics  one Adam step on the critic loss (losses/sac.h conventions);
 *   3. every policy_frequency updates, policy_frequency times (CleanRL's
 *      compensation): an actor step on mean(alpha log pi(a~|s) - min_i Q_i(s, a~)),
 *      then (autotune) a log-alpha step on the alpha loss with that log pi;
 *   4. every target_network_frequency updates, Polyak averaging of the targets.
 * The Discrete variant (CleanRL sac_atari, §1.6) follows the same order with
 * expectations over the policy instead of samples.
 *
 * How it is made cheap (the math is the losses' math, see sac.h):
 *   - the twin critics are ONE ensemble network: each layer's weights are
 *     stored stacked, [2, out, in] (bias [2, out]), and one rt_mlp call runs
 *     both critics (and another both target critics). The checkpoint and the
 *     critic optimizer still see each critic under its own names
 *     (/model/q1/net.0.weight, /optim/critic/state/q2.net.4.bias, ...): those
 *     tensors are views of member 0 / 1 of the stacked storage, so loading a
 *     checkpoint (an in-place copy) writes straight into it;
 *   - every network is an rt_mlp (one autograd node, hand-written backward,
 *     BLAS called on raw pointers); the actor's two heads are stored as one
 *     [2A, h] layer (its rows are the views mean.* and log_std.*); the
 *     actor's gradient through the critics uses detached critic weights, so
 *     no critic weight gradient is computed for it;
 *   - the squashed-Gaussian sample and its log-prob are one fused op
 *     (sac_squash_sample -> rt_squashed_gaussian);
 *   - the optimizers are fused Adam (rt_optim_new_fused: one pass per
 *     parameter, gradients released instead of zeroed) and the Polyak update
 *     is one rt_lerp_many_ call;
 *   - the batch is gathered from the replay buffer into preallocated tensors
 *     ([B, obs+act] holds s and a side by side: the critics' input as is);
 *   - nothing is read back to the host per update except the critic loss
 *     (the non-finite check, a pointer read) and log alpha; metrics are
 *     computed only when asked for (log steps).
 *
 * Errors: functions return RT_OK (0) or a negative rt_status with
 * rt_last_error() naming what failed; sac_agent_ck_add returns a ckpt status
 * with ck_error().
 */
#ifndef RLT_SAC_AGENT_H
#define RLT_SAC_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"
#include "nn.h"
#include "replay.h"
#include "sac.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The networks by checkpoint role (/model/<role>/...). */
enum { SAC_NET_ACTOR, SAC_NET_Q1, SAC_NET_Q2, SAC_NET_Q1_TARGET, SAC_NET_Q2_TARGET, SAC_NET_COUNT };
extern const char *const sac_net_role[SAC_NET_COUNT]; /* "actor", "q1", "q2", "q1_target", "q2_target" */

typedef struct sac_agent_config {
    int64_t obs_dim;                  /* observation size                                    */
    int64_t act_dim;                  /* Box: action dimensions (<= 64); Discrete: 1          */
    int64_t n_actions;                /* Discrete: choices (>= 2); 0 for a Box               */
    float act_low[64], act_high[64];  /* Box bounds per dimension (finite, low < high)       */
    int64_t hidden;                   /* width of the 2 hidden layers of every network       */
    double gamma, tau;                /* discount; Polyak coefficient                        */
    double policy_lr, q_lr, alpha_lr; /* Adam learning rates                                 */
    int64_t policy_frequency;         /* actor + alpha every this many updates, this many times */
    int64_t target_network_frequency; /* Polyak every this many updates                      */
    int autotune;                     /* learn log alpha towards the target entropy          */
    double alpha;                     /* initial temperature (autotune) or the fixed one     */
    sac_reference reference;          /* loss conventions (sac.h)                            */
    uint64_t seed;                    /* init generator: seed; sample generator: seed + 1    */
} sac_agent_config;

/* The recipe defaults of trainer/sac_train.c (hidden 256, gamma 0.99, tau
 * 0.005, lr 3e-4, frequencies 1, autotune, alpha 1, recommended, seed 0);
 * the caller sets obs_dim, act_dim, n_actions and the bounds. */
sac_agent_config sac_agent_config_default(void);

/* A batch of transitions in preallocated tensors (sac_agent_sample), float32. */
typedef struct sac_batch {
    int64_t size;                 /* B                                                   */
    rt_tensor *obs_act;           /* [B, obs_dim + act_dim]: s and a side by side          */
    rt_tensor *observations;      /* [B, obs_dim]  s (a view of obs_act)                   */
    rt_tensor *actions;           /* [B, act_dim]  a, normalized to [-1, 1] (Discrete: the
                                     index as a float), a view of obs_act                  */
    rt_tensor *next_observations; /* [B, obs_dim]  s' (the final observation at an episode end) */
    rt_tensor *rewards;           /* [B]                                                   */
    rt_tensor *dones;             /* [B] terminated, 1.0 / 0.0                             */
} sac_batch;

/* A plain struct: read any field; change them only through sac_agent_*. */
typedef struct sac_agent {
    sac_agent_config cfg;
    int discrete;
    sac_config squash_cfg, critic_cfg, actor_cfg, alpha_cfg; /* the losses' conventions */
    double target_entropy;

    /* Networks. P[role] holds each network's parameters under its state_dict
     * names (what checkpoints and the optimizers see); most are views of the
     * stacked tensors below, which the forward passes use. */
    nn_params *P[SAC_NET_COUNT];
    rt_tensor *actor_w[3], *actor_b[3]; /* body.0 [h,obs], body.2 [h,h]; the heads stacked: rows
                                           [0,A) "mean", [A,2A) "log_std" ([n,h] "logits" when Discrete) */
    rt_tensor *q_w[3], *q_b[3];         /* online critics, stacked: [2,out,in] / [2,out]; member k is q{k+1} */
    rt_tensor *qt_w[3], *qt_b[3];       /* target critics, stacked, no grad                              */
    rt_tensor *q_w_cut[3], *q_b_cut[3]; /* the online critics detached (the actor's path through them)  */
    nn_params *q_named;                 /* q1.* and q2.*: the critic optimizer's names                   */
    rt_tensor *log_alpha;               /* [1] float32                                                   */

    rt_optim *opt_actor, *opt_q, *opt_alpha;
    rt_gen *init_gen; /* network initialisation (checkpointed: "torch_init")               */
    rt_gen *gen;      /* replay indices, policy noise, warm-up actions ("torch_sample")   */
    int64_t updates;  /* critic updates done (checkpointed: /algo/updates)                */

    sac_batch batch;  /* sac_agent_sample's output, reused                                */
    rt_scope *S;      /* an update's intermediates; reset at the end of every update       */

    /* Filled by updates that were asked for metrics (losses/sac.h metrics);
     * NaN until then. */
    sac_metrics last_critic, last_actor, last_alpha;
    double last_alpha_value; /* alpha after the last update (always kept) */
} sac_agent;

/* Builds the networks (drawn from the init generator in the order actor, q1,
 * q2, q1_target, q2_target; the targets then copy the critics), log alpha,
 * the optimizers and the generators. On failure everything built is freed. */
int sac_agent_init(sac_agent *A, const sac_agent_config *cfg);
/* Frees everything sac_agent_init made (NULL-safe, idempotent). */
void sac_agent_free(sac_agent *A);

/* Registers the agent's state in ck: /model/<role>/<name> for every network,
 * /algo/log_alpha, /algo/updates, /optim/{actor,critic,alpha} and
 * /rng/{torch_init,torch_sample}. Returns a ckpt status (ck_error()). */
int sac_agent_ck_add(sac_agent *A, ck_state *ck);

/* The policy at obs [n, obs_dim] float32, under no-grad, owned by S. Box:
 * normalized actions [n, A] in [-1, 1], a squashed-Gaussian sample (noise
 * from A->gen) or, deterministic, tanh(mean). Discrete: int64 [n], a draw
 * from softmax(logits) or, deterministic, the argmax. NULL on failure. */
rt_tensor *sac_agent_policy(sac_agent *A, rt_scope *S, const rt_tensor *obs, int deterministic);

/* batch_size transitions uniform with replacement from buffer (one
 * rt_randint draw from A->gen, as rb_sample draws) into A->batch. */
int sac_agent_sample(sac_agent *A, const rb *buffer, int64_t batch_size);

/* One gradient update on b (see the file comment). Returns 0; 1 when the
 * critic loss is not finite (nothing was stepped, nothing counted: the caller
 * applies the run's non-finite policy; A->last_critic.loss holds the value);
 * or a negative status. With want_metrics, A->last_critic / last_actor /
 * last_alpha are filled (the actor and alpha ones only when those steps ran). */
int sac_agent_update(sac_agent *A, const sac_batch *b, int want_metrics);

#ifdef __cplusplus
}
#endif
#endif /* RLT_SAC_AGENT_H */
