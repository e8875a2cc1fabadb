/*
 * sac_train.c -- Soft Actor-Critic with automatic temperature tuning, top to
 * bottom (SAC v2: Haarnoja et al. 2018; the update order and the CleanRL/SB3
 * differences are those of specs/sac_envs.md §1, each a recipe key). Box
 * action spaces get the squashed-Gaussian actor; Discrete ones get CleanRL
 * sac_atari's variant (§1.6): a categorical actor and critics that output
 * Q(s, .) for every action, with expectations over the policy in the target,
 * the actor loss and the temperature loss.
 *
 * One run step = one vector step of num_envs environments:
 *   1. act: uniform random actions before learning_starts, then a sample of
 *      the squashed-Gaussian policy;
 *   2. step the environments (same-step autoreset keeps each final
 *      observation) and store (s, a, r, s'_final, terminated, truncated);
 *   3. from learning_starts on, gradient_steps updates: the twin critics
 *      against the clipped double-Q target with the entropy term; every
 *      policy_frequency updates the actor (policy_frequency times, CleanRL's
 *      compensation) and log alpha; Polyak averaging of the target critics
 *      every target_network_frequency updates.
 * Box actions are stored and fed to the critics in normalized units [-1, 1];
 * the environments get them rescaled to their Box bounds. Discrete actions
 * are stored as float indices.
 *
 * Randomness: one torch generator initialises the networks, another draws
 * warm-up actions, policy noise and replay indices; each environment owns its
 * RNG. All of it, the replay buffer and the environments' state are in every
 * checkpoint, so resume is bit-exact at a fixed thread count.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algo.h"
#include "ckpt.h"
#include "envl.h"
#include "nn.h"
#include "replay.h"
#include "run.h"
#include "sac.h"
#include "tensor.h"
#include "venv.h"

/* ------------------------------------------------------------------------ */
/* Config                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct sac_train_cfg {
    run_common run;
    /* [env] */
    char env[64];
    char env_config[128];
    char env_path[256];
    int num_envs;
    /* [sac] */
    int64_t total_steps;     /* environment steps over all envs */
    int64_t learning_starts;
    int64_t buffer_size;
    int64_t batch_size;
    int64_t hidden;
    double gamma, tau;
    double policy_lr, q_lr, alpha_lr;
    int64_t gradient_steps;
    int64_t policy_frequency;
    int64_t target_network_frequency;
    bool autotune;
    double alpha;            /* the fixed temperature when autotune is off, and the initial one */
    int reference;           /* sac_reference: conventions of the losses */
    /* [eval] */
    int64_t eval_episodes;
} sac_train_cfg;

static const char *const sac_reference_choices[] = {"recommended", "sb3", "cleanrl", NULL};

static void sac_train_check(const void *cfgp, cfg_check *ck);

static const cfg_field sac_train_fields[] = {
    RUN_COMMON_FIELDS(sac_train_cfg),
    CFG_STRING(sac_train_cfg, "env", "name", env, "pendulum", "environment plugin (rlt envs lists them)"),
    CFG_STRING(sac_train_cfg, "env", "config", env_config, "", "plugin config 'key=value;key=value'"),
    CFG_STRING(sac_train_cfg, "env", "path", env_path, "", "extra plugin folder searched first"),
    CFG_INT(sac_train_cfg, "env", "num_envs", num_envs, 1, 1024, "1", "environments stepped together"),
    CFG_INT64(sac_train_cfg, "sac", "total_steps", total_steps, 1, 1e12, "20000", "environment steps (all envs)"),
    CFG_INT64(sac_train_cfg, "sac", "learning_starts", learning_starts, 0, 1e12, "100",
              "environment steps of uniform random actions before learning (SB3 100, CleanRL 5000)"),
    CFG_INT64(sac_train_cfg, "sac", "buffer_size", buffer_size, 1, 1e9, "1000000", "replay capacity"),
    CFG_INT64(sac_train_cfg, "sac", "batch_size", batch_size, 1, 1e7, "256", "transitions per update"),
    CFG_INT64(sac_train_cfg, "sac", "hidden", hidden, 1, 1e6, "256", "width of the 2 hidden layers of every net"),
    CFG_DOUBLE(sac_train_cfg, "sac", "gamma", gamma, 0, 1, "0.99", "discount"),
    CFG_DOUBLE(sac_train_cfg, "sac", "tau", tau, 0, 1, "0.005", "Polyak coefficient of the target critics"),
    CFG_DOUBLE(sac_train_cfg, "sac", "policy_lr", policy_lr, 0, 10, "3e-4", "actor learning rate (Adam)"),
    CFG_DOUBLE(sac_train_cfg, "sac", "q_lr", q_lr, 0, 10, "3e-4", "critic learning rate (Adam; CleanRL 1e-3)"),
    CFG_DOUBLE(sac_train_cfg, "sac", "alpha_lr", alpha_lr, 0, 10, "3e-4", "log alpha learning rate (Adam)"),
    CFG_INT64(sac_train_cfg, "sac", "gradient_steps", gradient_steps, 1, 1e6, "1",
              "updates per vector step (update-to-data ratio x num_envs)"),
    CFG_INT64(sac_train_cfg, "sac", "policy_frequency", policy_frequency, 1, 1e6, "1",
              "actor and alpha every this many updates, done this many times (CleanRL 2)"),
    CFG_INT64(sac_train_cfg, "sac", "target_network_frequency", target_network_frequency, 1, 1e6, "1",
              "Polyak update every this many updates"),
    CFG_BOOL(sac_train_cfg, "sac", "autotune", autotune, "true", "learn alpha towards target entropy -|A|"),
    CFG_DOUBLE(sac_train_cfg, "sac", "alpha", alpha, 0, 1e6, "1.0",
               "initial temperature (autotune) or the fixed one (CleanRL without autotune: 0.2)"),
    CFG_ENUM(sac_train_cfg, "sac", "reference", reference, sac_reference_choices, "recommended",
             "loss conventions (sac_envs.md 1.5): recommended = SB3's with the stable tanh correction"),
    CFG_INT64(sac_train_cfg, "eval", "episodes", eval_episodes, 1, 1e6, "10", "episodes of rlt eval"),
};

const cfg_schema sac_train_schema = CFG_SCHEMA("sac", sac_train_cfg, sac_train_fields, sac_train_check);

static void sac_train_check(const void *cfgp, cfg_check *ck) {
    const sac_train_cfg *c = cfgp;
    if (strcmp(c->run.algorithm, "sac") != 0) cfg_check_fail(ck, "run.algorithm", "this loop is 'sac'");
    if (c->total_steps < c->num_envs)
        cfg_check_fail(ck, "sac.total_steps", "is smaller than env.num_envs (%d): not one vector step", c->num_envs);
    if (c->batch_size > c->buffer_size)
        cfg_check_fail(ck, "sac.batch_size", "is larger than sac.buffer_size (%lld)", (long long)c->buffer_size);
    if (!c->autotune && c->alpha <= 0) cfg_check_fail(ck, "sac.alpha", "must be > 0 when sac.autotune is off");
}

/* ------------------------------------------------------------------------ */
/* The agent                                                                 */
/* ------------------------------------------------------------------------ */

enum { NET_ACTOR, NET_Q1, NET_Q2, NET_Q1_TARGET, NET_Q2_TARGET, NET_COUNT };
static const char *const net_role[NET_COUNT] = {"actor", "q1", "q2", "q1_target", "q2_target"};

typedef struct sac_job {
    sac_train_cfg cfg;
    envl_plugin *plugin;
    venv *env;
    int64_t obs_dim, act_dim;
    int discrete;           /* Discrete action space: act_dim 1, n_actions choices */
    int64_t n_actions;
    rb *buffer;
    nn_params *P[NET_COUNT];
    nn_mlp body[NET_COUNT]; /* actor: obs -> h -> h (ReLU); critics: obs+act -> h -> h -> 1 */
    nn_linear mean_head, log_std_head; /* actor heads: h -> act_dim */
    nn_params *qparams;     /* q1 and q2 together, for one critic optimizer (CleanRL) */
    rt_tensor *log_alpha;   /* [1], caller-owned */
    rt_tensor *act_low, *act_high; /* [A] Box bounds */
    rt_optim *opt_actor, *opt_q, *opt_alpha;
    rt_gen *init_gen, *gen;
    sac_config squash_cfg, critic_cfg, actor_cfg, alpha_cfg;
    double target_entropy;
    uint8_t *env_blob;
    size_t env_blob_size;
    float *obs_prev, *actions_norm, *actions_env; /* host buffers [n*obs_dim], [n*act_dim] x2 */
    int32_t *actions_int;   /* Discrete: [n] the env's int32 actions */
    int64_t updates;        /* gradient updates done (saved) */
    sac_metrics last_critic, last_actor, last_alpha;
    double last_alpha_value;
} sac_job;

/* Actor forward: mean and raw log_std heads [B,A] of obs [B,obs_dim]
 * (Discrete: *mean receives the logits [B,n_actions]; log_std may be NULL). */
static void sac_actor_forward(rt_scope *S, const sac_job *J, const rt_tensor *obs, rt_tensor **mean,
                              rt_tensor **log_std) {
    rt_tensor *h = nn_mlp_forward(S, &J->body[NET_ACTOR], obs); /* [B,h] */
    *mean = nn_linear_forward(S, &J->mean_head, h);             /* [B,A] */
    if (log_std) *log_std = J->discrete ? NULL : nn_linear_forward(S, &J->log_std_head, h); /* [B,A] */
}

/* Discrete: Q(s, .) [B,n_actions] of critic `net`. */
static rt_tensor *sac_q_all(rt_scope *S, const sac_job *J, int net, const rt_tensor *obs) {
    return nn_mlp_forward(S, &J->body[net], obs);
}

/* Q(s, a) [B] of critic `net` for obs [B,obs_dim], actions [B,A] (normalized). */
static rt_tensor *sac_q(rt_scope *S, const sac_job *J, int net, const rt_tensor *obs, const rt_tensor *act) {
    rt_tensor *pair[2] = {(rt_tensor *)obs, (rt_tensor *)act};
    rt_tensor *q = nn_mlp_forward(S, &J->body[net], rt_cat(S, pair, 2, 1)); /* [B,1] */
    return rt_squeeze(S, q, 1);                                               /* [B]   */
}

/* A policy sample for obs: normalized action y [B,A] and log-prob [B]. */
static int sac_sample(rt_scope *S, sac_job *J, const rt_tensor *obs, rt_tensor **y, rt_tensor **logp) {
    rt_tensor *mean, *log_std;
    sac_actor_forward(S, J, obs, &mean, &log_std);
    sac_squash_inputs in = {mean, log_std, NULL, NULL, NULL};
    sac_squash_out out;
    if (!mean || !log_std || sac_squashed_gaussian(S, &J->squash_cfg, &in, J->gen, &out, NULL) != RT_OK) return -1;
    *y = out.squashed;
    *logp = out.logp;
    return 0;
}

static int sac_build_net(sac_job *J, int net, int64_t in, int64_t out_dim, rt_gen *g) {
    int64_t w[4] = {in, J->cfg.hidden, J->cfg.hidden, out_dim};
    J->P[net] = nn_params_new();
    if (!J->P[net]) return -1;
    if (net == NET_ACTOR && J->discrete) {
        /* body ends at the last hidden layer; a linear head gives the logits */
        return (nn_mlp_init(&J->body[net], J->P[net], "body", w, 3, NN_ACT_RELU, NN_ACT_RELU, RT_OPTS(RT_F32), g) < 0 ||
                nn_linear_init(&J->mean_head, J->P[net], "logits", J->cfg.hidden, J->n_actions, 1, RT_OPTS(RT_F32), g) < 0)
                   ? -1 : 0;
    }
    if (net == NET_ACTOR) {
        /* body ends at the last hidden layer; two linear heads read it */
        return (nn_mlp_init(&J->body[net], J->P[net], "body", w, 3, NN_ACT_RELU, NN_ACT_RELU, RT_OPTS(RT_F32), g) < 0 ||
                nn_linear_init(&J->mean_head, J->P[net], "mean", J->cfg.hidden, J->act_dim, 1, RT_OPTS(RT_F32), g) < 0 ||
                nn_linear_init(&J->log_std_head, J->P[net], "log_std", J->cfg.hidden, J->act_dim, 1, RT_OPTS(RT_F32), g) < 0)
                   ? -1 : 0;
    }
    return nn_mlp_init(&J->body[net], J->P[net], "net", w, 4, NN_ACT_RELU, NN_ACT_NONE, RT_OPTS(RT_F32), g);
}

static void sac_job_free(sac_job *J) {
    rt_optim_free(J->opt_actor);
    rt_optim_free(J->opt_q);
    rt_optim_free(J->opt_alpha);
    for (int i = 0; i < NET_COUNT; i++) nn_params_free(J->P[i]);
    nn_params_free(J->qparams); /* its handles alias the q1/q2 tensors */
    rt_free(J->log_alpha);
    rt_free(J->act_low);
    rt_free(J->act_high);
    rt_gen_free(J->init_gen);
    rt_gen_free(J->gen);
    rb_free(J->buffer);
    venv_free(J->env);
    envl_close(J->plugin);
    free(J->env_blob);
    free(J->obs_prev);
    free(J->actions_norm);
    free(J->actions_env);
    free(J->actions_int);
}

/* Environment, buffer, networks, optimizers; registers everything in ck
 * (when not NULL). Messages through run_fail. */
static int sac_job_build(sac_job *J, run_ctx *r, ck_state *ck, uint32_t num_envs, uint64_t env_seed) {
    sac_train_cfg *c = &J->cfg;
    char err[2048];
    envl_search search;
    const char *extra[1] = {c->env_path};
    if (envl_search_init(&search, extra, c->env_path[0] ? 1 : 0, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "%s", err);
    int rc = envl_open(&search, c->env, &J->plugin, err, sizeof err);
    envl_search_free(&search);
    if (rc < 0) return run_fail(r, RUN_EXIT_USAGE, "env.name = '%s': %s", c->env, err);
    if (venv_create(J->plugin, c->env_config, num_envs, env_seed, 100, &J->env, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "env %s: %s", c->env, err);
    const env_space *as = venv_act_space(J->env);
    J->discrete = as->kind == ENV_SPACE_DISCRETE;
    J->n_actions = J->discrete ? as->n : 0;
    J->obs_dim = venv_info(J->env)->obs_dim;
    J->act_dim = venv_info(J->env)->act_dim;
    float lo[64], hi[64];
    if (J->act_dim > 64) return run_fail(r, RUN_EXIT_USAGE, "action dimension %lld > 64", (long long)J->act_dim);
    if (J->discrete && (J->act_dim != 1 || J->n_actions < 2))
        return run_fail(r, RUN_EXIT_USAGE, "env %s: a Discrete space needs one action with >= 2 choices", c->env);
    for (int64_t i = 0; i < J->act_dim && !J->discrete; i++) {
        lo[i] = (float)as->low[i];
        hi[i] = (float)as->high[i];
        if (!isfinite(lo[i]) || !isfinite(hi[i]))
            return run_fail(r, RUN_EXIT_USAGE, "env %s: unbounded action space (dimension %lld)", c->env, (long long)i);
    }
    int64_t ad[1] = {J->act_dim};
    if (!J->discrete) {
        J->act_low = rt_from_data(NULL, lo, ad, 1, RT_OPTS(RT_F32));
        J->act_high = rt_from_data(NULL, hi, ad, 1, RT_OPTS(RT_F32));
    }

    /* Losses in the chosen conventions. */
    sac_reference ref = (sac_reference)c->reference;
    J->squash_cfg = sac_config_reference(SAC_PART_SQUASH, ref);
    J->critic_cfg = sac_config_reference(J->discrete ? SAC_PART_DISCRETE_CRITIC : SAC_PART_CRITIC, ref);
    J->actor_cfg = sac_config_reference(J->discrete ? SAC_PART_DISCRETE_ACTOR : SAC_PART_ACTOR, ref);
    J->alpha_cfg = sac_config_reference(J->discrete ? SAC_PART_DISCRETE_ALPHA : SAC_PART_ALPHA, ref);
    J->critic_cfg.gamma = c->gamma;
    J->target_entropy = J->discrete ? sac_target_entropy(&J->alpha_cfg, J->n_actions, 1)
                                    : sac_target_entropy(&J->alpha_cfg, J->act_dim, 0);

    /* Networks: all initialised up front from one generator. Continuous
     * critics read (s, a) and give one value; discrete ones read s and give
     * one value per action. */
    int64_t q_in = J->discrete ? J->obs_dim : J->obs_dim + J->act_dim, q_out = J->discrete ? J->n_actions : 1;
    J->init_gen = rt_gen_new((uint64_t)c->run.seed);
    J->gen = rt_gen_new((uint64_t)c->run.seed + 1);
    if (!J->init_gen || !J->gen || sac_build_net(J, NET_ACTOR, J->obs_dim, J->act_dim, J->init_gen) < 0 ||
        sac_build_net(J, NET_Q1, q_in, q_out, J->init_gen) < 0 || sac_build_net(J, NET_Q2, q_in, q_out, J->init_gen) < 0 ||
        sac_build_net(J, NET_Q1_TARGET, q_in, q_out, J->init_gen) < 0 ||
        sac_build_net(J, NET_Q2_TARGET, q_in, q_out, J->init_gen) < 0 ||
        nn_params_copy_(J->P[NET_Q1_TARGET], J->P[NET_Q1]) < 0 || nn_params_copy_(J->P[NET_Q2_TARGET], J->P[NET_Q2]) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "building the networks: %s", rt_last_error());
    nn_params_set_requires_grad(J->P[NET_Q1_TARGET], 0);
    nn_params_set_requires_grad(J->P[NET_Q2_TARGET], 0);

    /* One critic optimizer over both critics (CleanRL, SB3). */
    J->qparams = nn_params_new();
    const char *qn[2] = {"q1", "q2"};
    for (int k = 0; k < 2 && J->qparams; k++) {
        const nn_params *src = J->P[NET_Q1 + k];
        for (size_t i = 0; i < nn_params_count(src); i++) {
            char name[NN_NAME_MAX];
            snprintf(name, sizeof name, "%s.%s", qn[k], nn_params_name(src, i));
            rt_tensor *alias = rt_alias(NULL, nn_params_tensor(src, i));
            if (!alias || nn_params_add(J->qparams, name, alias) < 0) return run_fail(r, RUN_EXIT_FAIL, "%s", rt_last_error());
        }
    }
    double la = log(c->alpha);
    int64_t one[1] = {1};
    float la32 = (float)la;
    J->log_alpha = rt_from_data(NULL, &la32, one, 1, RT_OPTS(RT_F32));
    if (!J->qparams || !J->log_alpha || rt_set_requires_grad(J->log_alpha, 1) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "%s", rt_last_error());
    rt_optim_opts oa = rt_optim_defaults(RT_ADAM), oq = oa, ol = oa;
    oa.lr = c->policy_lr;
    oq.lr = c->q_lr;
    ol.lr = c->alpha_lr;
    const char *la_name[1] = {"log_alpha"};
    J->opt_actor = rt_optim_new(RT_ADAM, nn_params_tensors(J->P[NET_ACTOR]), nn_params_names(J->P[NET_ACTOR]),
                                nn_params_count(J->P[NET_ACTOR]), &oa);
    J->opt_q = rt_optim_new(RT_ADAM, nn_params_tensors(J->qparams), nn_params_names(J->qparams),
                            nn_params_count(J->qparams), &oq);
    J->opt_alpha = rt_optim_new(RT_ADAM, &J->log_alpha, la_name, 1, &ol);
    if (!J->opt_actor || !J->opt_q || !J->opt_alpha) return run_fail(r, RUN_EXIT_FAIL, "optimizer: %s", rt_last_error());

    /* Replay buffer and host buffers. */
    int64_t cap = c->buffer_size < c->total_steps ? c->buffer_size : c->total_steps;
    J->buffer = rb_new(cap, J->obs_dim, J->act_dim);
    J->obs_prev = calloc((size_t)(num_envs * J->obs_dim), sizeof(float));
    J->actions_norm = calloc((size_t)(num_envs * J->act_dim), sizeof(float));
    J->actions_env = calloc((size_t)(num_envs * J->act_dim), sizeof(float));
    J->actions_int = calloc((size_t)num_envs, sizeof(int32_t));
    J->env_blob_size = venv_state_size(J->env);
    J->env_blob = J->env_blob_size ? calloc(1, J->env_blob_size) : NULL;
    if (!J->buffer || !J->obs_prev || !J->actions_norm || !J->actions_env || !J->actions_int)
        return run_fail(r, RUN_EXIT_FAIL, "out of memory for the replay buffer (%lld transitions)", (long long)cap);
    if (venv_reset(J->env) < 0) return run_fail(r, RUN_EXIT_FAIL, "env reset: %s", venv_error(J->env));

    if (!ck) return 0;
    if (!J->env_blob)
        return run_fail(r, RUN_EXIT_USAGE, "env %s has no state hooks: its runs cannot be checkpointed", c->env);
    for (int i = 0; i < NET_COUNT; i++) {
        char group[64];
        snprintf(group, sizeof group, "model/%s", net_role[i]);
        if (ck_add_tensors(ck, group, nn_params_names(J->P[i]), nn_params_tensors(J->P[i]), nn_params_count(J->P[i])) < 0)
            return run_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    }
    if (ck_add_tensors(ck, "algo", la_name, &J->log_alpha, 1) < 0 || ck_add_optim(ck, "actor", J->opt_actor) < 0 ||
        ck_add_optim(ck, "critic", J->opt_q) < 0 || ck_add_optim(ck, "alpha", J->opt_alpha) < 0 ||
        ck_add_gen(ck, "torch_init", J->init_gen) < 0 || ck_add_gen(ck, "torch_sample", J->gen) < 0 ||
        ck_add_blob(ck, "rng/env", J->env_blob, J->env_blob_size) < 0 || ck_add_i64(ck, "algo/updates", &J->updates) < 0 ||
        run_ck_add_replay(ck, J->buffer, "replay", 1) != CK_OK)
        return run_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", ck_error(ck));
    return 0;
}

static int sac_before_save(run_ctx *r, void *user) {
    sac_job *J = user;
    if (venv_get_state(J->env, J->env_blob, J->env_blob_size) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "env state: %s", venv_error(J->env));
    return 0;
}

static int sac_after_load(run_ctx *r, void *user) {
    sac_job *J = user;
    if (venv_set_state(J->env, J->env_blob, J->env_blob_size) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "checkpoint env state: %s", venv_error(J->env));
    if (rb_validate(J->buffer) != RT_OK) return run_fail(r, RUN_EXIT_USAGE, "checkpoint replay buffer: %s", rt_last_error());
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Acting and learning                                                       */
/* ------------------------------------------------------------------------ */

/* Normalized actions y [n*A] into J->actions_norm and their env rescale into
 * J->actions_env: uniform before learning_starts, else policy samples. */
static int sac_act_discrete(sac_job *J, rt_scope *S, int64_t env_steps_done) {
    uint32_t n = venv_buffers(J->env)->n;
    int64_t shape[1] = {n};
    rt_tensor *a; /* int64 [n] */
    if (env_steps_done < J->cfg.learning_starts) {
        a = rt_randint(S, 0, J->n_actions, shape, 1, J->gen, RT_OPTS(RT_I64));
    } else {
        int g = rt_no_grad_begin();
        int64_t os[2] = {n, J->obs_dim};
        rt_tensor *logits;
        sac_actor_forward(S, J, rt_from_data(S, venv_buffers(J->env)->obs, os, 2, RT_OPTS(RT_F32)), &logits, NULL);
        a = rt_squeeze(S, rt_multinomial(S, rt_softmax(S, logits, 1), 1, 1, J->gen), 1); /* [n] */
        rt_grad_mode_restore(g);
    }
    if (rt_to_data(a, RT_I32, J->actions_int, (size_t)n * sizeof(int32_t)) < 0 ||
        rt_to_data(a, RT_F32, J->actions_norm, (size_t)n * sizeof(float)) < 0)
        return -1;
    return 0;
}

static int sac_act(sac_job *J, rt_scope *S, int64_t env_steps_done) {
    if (J->discrete) return sac_act_discrete(J, S, env_steps_done);
    uint32_t n = venv_buffers(J->env)->n;
    int64_t shape[2] = {n, J->act_dim};
    rt_tensor *y;
    if (env_steps_done < J->cfg.learning_starts) {
        y = rt_add_scalar(S, rt_mul_scalar(S, rt_rand(S, shape, 2, J->gen, RT_OPTS(RT_F32)), 2.0), -1.0); /* U[-1,1) */
    } else {
        int g = rt_no_grad_begin();
        int64_t os[2] = {n, J->obs_dim};
        rt_tensor *obs = rt_from_data(S, venv_buffers(J->env)->obs, os, 2, RT_OPTS(RT_F32)); /* [n,obs] */
        rt_tensor *logp;
        int rc = sac_sample(S, J, obs, &y, &logp);
        rt_grad_mode_restore(g);
        if (rc < 0) return -1;
    }
    /* env action = low + (y + 1)/2 * (high - low) */
    rt_tensor *scale = rt_mul_scalar(S, rt_sub(S, J->act_high, J->act_low), 0.5);
    rt_tensor *a_env = rt_add(S, J->act_low, rt_mul(S, rt_add_scalar(S, y, 1.0), scale));
    size_t bytes = (size_t)n * (size_t)J->act_dim * sizeof(float);
    if (rt_to_data(y, RT_F32, J->actions_norm, bytes) < 0 || rt_to_data(a_env, RT_F32, J->actions_env, bytes) < 0)
        return -1;
    return 0;
}

/* One gradient step of o on loss (zero, backward, step). 0 or -1. */
static int sac_descend(rt_optim *o, const rt_tensor *loss) {
    return (!loss || rt_optim_zero_grad(o) < 0 || rt_backward(loss) < 0 || rt_optim_step(o) < 0) ? -1 : 0;
}

/* Polyak averaging of the target critics when the update count says so. */
static int sac_update_targets(sac_job *J) {
    if (J->updates % J->cfg.target_network_frequency != 0) return 0;
    return (nn_params_lerp_(J->P[NET_Q1_TARGET], J->P[NET_Q1], J->cfg.tau) < 0 ||
            nn_params_lerp_(J->P[NET_Q2_TARGET], J->P[NET_Q2], J->cfg.tau) < 0)
               ? -1 : 0;
}

/* The discrete update (CleanRL sac_atari): critic against the policy's
 * expectation at s', actor and temperature from the full distribution. Same
 * return convention as sac_update. */
static int sac_update_discrete(sac_job *J, rt_scope *S, const rb_batch *b, double alpha) {
    const sac_train_cfg *c = &J->cfg;
    int g = rt_no_grad_begin();
    rt_tensor *next_logits;
    sac_actor_forward(S, J, b->next_observations, &next_logits, NULL);
    rt_tensor *q1n = sac_q_all(S, J, NET_Q1_TARGET, b->next_observations); /* [B,A] */
    rt_tensor *q2n = sac_q_all(S, J, NET_Q2_TARGET, b->next_observations); /* [B,A] */
    rt_grad_mode_restore(g);
    rt_tensor *acts = rt_to_dtype(S, rt_squeeze(S, b->actions, 1), RT_I64); /* [B] */
    sac_config cc = J->critic_cfg;
    cc.alpha = alpha;
    sac_discrete_critic_inputs ci = {sac_q_all(S, J, NET_Q1, b->observations), sac_q_all(S, J, NET_Q2, b->observations),
                                     acts, q1n, q2n, next_logits, b->rewards, b->dones};
    rt_tensor *qloss = sac_discrete_critic_loss(S, &cc, &ci, &J->last_critic, NULL);
    if (qloss && !isfinite(rt_item(qloss))) return 1;
    if (sac_descend(J->opt_q, qloss) < 0) return -1;
    J->updates++;
    if (J->updates % c->policy_frequency == 0) {
        for (int64_t k = 0; k < c->policy_frequency; k++) {
            rt_tensor *logits;
            sac_actor_forward(S, J, b->observations, &logits, NULL);
            int g2 = rt_no_grad_begin();
            rt_tensor *q1 = sac_q_all(S, J, NET_Q1, b->observations), *q2 = sac_q_all(S, J, NET_Q2, b->observations);
            rt_grad_mode_restore(g2);
            sac_config ac = J->actor_cfg;
            ac.alpha = alpha;
            sac_discrete_actor_inputs ai = {logits, q1, q2};
            rt_tensor *aloss = sac_discrete_actor_loss(S, &ac, &ai, &J->last_actor);
            if (sac_descend(J->opt_actor, aloss) < 0) return -1;
            if (c->autotune) {
                sac_config lc = J->alpha_cfg;
                lc.target_entropy = J->target_entropy;
                sac_discrete_alpha_inputs li = {J->log_alpha, rt_detach(S, logits)};
                rt_tensor *lloss = sac_discrete_alpha_loss(S, &lc, &li, &J->last_alpha);
                if (sac_descend(J->opt_alpha, lloss) < 0) return -1;
                alpha = exp(rt_item(J->log_alpha));
            }
        }
    }
    if (sac_update_targets(J) < 0) return -1;
    J->last_alpha_value = alpha;
    return 0;
}

/* One gradient update (critics; actor and alpha when due; targets when due).
 * Returns 0, 1 when the critic loss is not finite (nothing was stepped: the
 * caller applies the run's non-finite policy), or -1 on an error. */
static int sac_update(sac_job *J, rt_scope *S) {
    const sac_train_cfg *c = &J->cfg;
    rb_batch b;
    if (rb_sample(J->buffer, S, c->batch_size, J->gen, &b) != RT_OK) return -1;
    double alpha = exp(rt_item(J->log_alpha));
    if (!c->autotune) alpha = c->alpha;
    if (J->discrete) return sac_update_discrete(J, S, &b, alpha);

    /* Critics: y = r + gamma (1 - terminated)(min Q'(s', a') - alpha log pi(a'|s')). */
    int g = rt_no_grad_begin();
    rt_tensor *a_next, *logp_next;
    int rc = sac_sample(S, J, b.next_observations, &a_next, &logp_next);
    rt_tensor *q1n = rc == 0 ? sac_q(S, J, NET_Q1_TARGET, b.next_observations, a_next) : NULL; /* [B] */
    rt_tensor *q2n = rc == 0 ? sac_q(S, J, NET_Q2_TARGET, b.next_observations, a_next) : NULL; /* [B] */
    rt_grad_mode_restore(g);
    if (rc < 0 || !q1n || !q2n) return -1;
    sac_config cc = J->critic_cfg;
    cc.alpha = alpha;
    sac_critic_inputs ci = {sac_q(S, J, NET_Q1, b.observations, b.actions), sac_q(S, J, NET_Q2, b.observations, b.actions),
                            q1n, q2n, logp_next, b.rewards, b.dones};
    rt_tensor *qloss = sac_critic_loss(S, &cc, &ci, &J->last_critic, NULL);
    if (qloss && !isfinite(rt_item(qloss))) return 1;
    if (sac_descend(J->opt_q, qloss) < 0) return -1;
    J->updates++;

    /* Actor and temperature, delayed and compensated (CleanRL's TD3-style). */
    if (J->updates % c->policy_frequency == 0) {
        for (int64_t k = 0; k < c->policy_frequency; k++) {
            rt_tensor *a_pi, *logp_pi;
            if (sac_sample(S, J, b.observations, &a_pi, &logp_pi) < 0) return -1;
            sac_config ac = J->actor_cfg;
            ac.alpha = alpha;
            sac_actor_inputs ai = {logp_pi, sac_q(S, J, NET_Q1, b.observations, a_pi), sac_q(S, J, NET_Q2, b.observations, a_pi)};
            rt_tensor *aloss = sac_actor_loss(S, &ac, &ai, &J->last_actor);
            if (sac_descend(J->opt_actor, aloss) < 0) return -1;
            if (c->autotune) {
                sac_config lc = J->alpha_cfg;
                lc.target_entropy = J->target_entropy;
                sac_alpha_inputs li = {J->log_alpha, rt_detach(S, logp_pi)};
                rt_tensor *lloss = sac_alpha_loss(S, &lc, &li, &J->last_alpha);
                if (sac_descend(J->opt_alpha, lloss) < 0) return -1;
                alpha = exp(rt_item(J->log_alpha));
            }
        }
    }
    /* The actor step also wrote gradients into the critics; the next critic
     * update zeroes them first, so they never reach a critic step. */
    if (sac_update_targets(J) < 0) return -1;
    J->last_alpha_value = alpha;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* train / eval                                                              */
/* ------------------------------------------------------------------------ */

static const mx_column sac_columns[] = {
    {"charts/episodic_return", "return", MX_NUM, NULL}, {"losses/qf_loss", "qf", MX_NUM, NULL},
    {"losses/actor_loss", "actor", MX_NUM, NULL},        {"losses/alpha", "alpha", MX_NUM, NULL},
    {"perf/ms_per_step", "ms", MX_MS, NULL},             {"perf/samples_per_s", "env steps/s", MX_RATE, NULL},
};

static int sac_train(const run_args *args) {
    sac_job J;
    memset(&J, 0, sizeof J);
    run_ctx R;
    rt_scope *S = NULL;
    if (run_open(&R, args, &sac_train_schema, &J.cfg, &J.cfg.run) < 0) {
        int code = R.exit_code;
        run_close(&R);
        return code;
    }
    R.columns = sac_columns;
    R.ncolumns = sizeof sac_columns / sizeof sac_columns[0];
    R.before_save = sac_before_save;
    R.after_load = sac_after_load;
    R.hook_user = &J;
    R.samples_per_step = J.cfg.num_envs;
    if (sac_job_build(&J, &R, R.ck, (uint32_t)J.cfg.num_envs, (uint64_t)J.cfg.run.seed) < 0) goto out;
    R.total_steps = J.cfg.total_steps / J.cfg.num_envs;
    run_printf(&R, "plan: %lld vector steps of %d %s env(s), learning from env step %lld, target entropy %.3f",
               (long long)R.total_steps, J.cfg.num_envs, venv_info(J.env)->gym_id, (long long)J.cfg.learning_starts,
               J.target_entropy);
    if (run_resume(&R) < 0) goto out;
    S = rt_scope_new();
    if (!S) {
        run_fail(&R, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    const venv_bufs *vb = venv_buffers(J.env);
    size_t obs_bytes = (size_t)vb->n * (size_t)J.obs_dim * sizeof(float);
    for (; R.step < R.total_steps && !run_stop_requested(&R); rt_scope_reset(S)) {
        int64_t env_steps = R.step * J.cfg.num_envs;
        memcpy(J.obs_prev, vb->obs, obs_bytes);
        if (sac_act(&J, S, env_steps) < 0) {
            run_fail(&R, RUN_EXIT_FAIL, "step %lld acting: %s", (long long)R.step, rt_last_error());
            break;
        }
        if (venv_step(J.env, J.discrete ? (const void *)J.actions_int : (const void *)J.actions_env) < 0) {
            run_fail(&R, RUN_EXIT_FAIL, "step %lld: %s", (long long)R.step, venv_error(J.env));
            break;
        }
        /* s' is the final observation where an episode ended (truncation
         * bootstraps from it; termination masks it out). */
        if (rb_add(J.buffer, vb->n, J.obs_prev, vb->final_obs, J.actions_norm, vb->reward, vb->terminated,
                   vb->truncated) != RT_OK) {
            run_fail(&R, RUN_EXIT_FAIL, "replay: %s", rt_last_error());
            break;
        }
        if (env_steps + vb->n > J.cfg.learning_starts) {
            int rc = 0;
            for (int64_t k = 0; k < J.cfg.gradient_steps && rc == 0; k++) rc = sac_update(&J, S);
            if (rc < 0) {
                run_fail(&R, RUN_EXIT_FAIL, "step %lld update: %s", (long long)R.step, rt_last_error());
                break;
            }
            if (rc == 1 && run_check_finite(&R, J.last_critic.loss, NAN) < 0) break;
        }
        if (run_log_due(&R)) {
            mx_record *rec = run_record(&R);
            double mean_ret = NAN, mean_len = NAN;
            if (venv_recent_mean(J.env, 10, &mean_ret, &mean_len) > 0) {
                mx_add(rec, "charts/episodic_return", mean_ret);
                mx_add(rec, "charts/episodic_length", mean_len);
            }
            mx_add(rec, "charts/episodes", (double)venv_get_stats(J.env).episodes);
            mx_add(rec, "charts/env_steps", (double)(env_steps + vb->n));
            if (J.updates > 0) {
                mx_add(rec, "losses/qf_loss", J.last_critic.loss);
                mx_add(rec, "losses/qf1_values", J.last_critic.qf1_values);
                mx_add(rec, "losses/actor_loss", J.last_actor.loss);
                mx_add(rec, "losses/alpha", J.last_alpha_value);
                if (J.cfg.autotune) mx_add(rec, "losses/alpha_loss", J.last_alpha.loss);
                mx_add(rec, "losses/entropy", J.last_actor.entropy);
            }
            run_log(&R);
        }
        R.step++;
        if (run_after_step(&R) < 0) break;
    }
    if (R.step == R.total_steps && R.step > R.start_step && R.exit_code == RUN_EXIT_OK) {
        double ret[10];
        size_t k = venv_recent(J.env, 10, ret, NULL);
        double mean = 0;
        for (size_t i = 0; i < k; i++) mean += ret[i] / (double)k;
        if (k > 0)
            run_printf(&R, "last %zu episodes: mean return %.1f (%lld episodes, %lld updates)", k, mean,
                       (long long)venv_get_stats(J.env).episodes, (long long)J.updates);
        else
            run_printf(&R, "no episode finished in %lld environment steps (%lld updates)",
                       (long long)(R.step * J.cfg.num_envs), (long long)J.updates);
    }
out:
    rt_scope_free(S);
    int code = run_close(&R);
    sac_job_free(&J);
    return code;
}

/* `rlt eval`: the deterministic policy tanh(mean) for eval.episodes episodes
 * on fresh environments seeded apart from training. */
static int sac_eval(const char *ckpt_path, const char *const *sets, int nsets) {
    sac_job J;
    memset(&J, 0, sizeof J);
    char err[8192];
    ck_meta meta;
    int64_t step = 0;
    if (run_eval_config(&sac_train_schema, &J.cfg, &J.cfg.run, ckpt_path, sets, nsets, &step) != 0) return RUN_EXIT_USAGE;
    /* Build like training (same shapes), load the networks only. */
    ck_state *ck = ck_state_new();
    int code = RUN_EXIT_OK;
    rt_scope *S = rt_scope_new();
    double *returns = NULL;
    if (!ck || !S || ck_set_algorithm(ck, "sac") < 0 ||
        sac_job_build(&J, NULL, ck, (uint32_t)J.cfg.num_envs, (uint64_t)J.cfg.run.seed) < 0) {
        code = RUN_EXIT_FAIL;
        goto out;
    }
    if (ck_load(ck, ckpt_path, &meta, err, sizeof err) < 0) {
        fprintf(stderr, "error: cannot load '%s':\n%s\n", ckpt_path, err);
        code = RUN_EXIT_USAGE;
        goto out;
    }
    ck_meta_release(&meta);
    venv_free(J.env);
    J.env = NULL;
    if (venv_create(J.plugin, J.cfg.env_config, 1, (uint64_t)J.cfg.run.seed + 1000003, 100, &J.env, err, sizeof err) < 0 ||
        venv_reset(J.env) < 0) {
        fprintf(stderr, "error: env: %s\n", J.env ? venv_error(J.env) : err);
        code = RUN_EXIT_FAIL;
        goto out;
    }
    returns = calloc((size_t)J.cfg.eval_episodes, sizeof *returns);
    int64_t done = 0;
    const venv_bufs *vb = venv_buffers(J.env);
    int g = rt_no_grad_begin();
    int64_t os[2] = {1, J.obs_dim};
    while (returns && done < J.cfg.eval_episodes) {
        rt_tensor *mean, *log_std;
        sac_actor_forward(S, &J, rt_from_data(S, vb->obs, os, 2, RT_OPTS(RT_F32)), &mean, &log_std);
        if (J.discrete) { /* the most likely action */
            if (rt_to_data(rt_argmax(S, mean, 1, 0), RT_I32, J.actions_int, sizeof(int32_t)) < 0 ||
                venv_step(J.env, J.actions_int) < 0) {
                fprintf(stderr, "error: %s\n", rt_last_error());
                code = RUN_EXIT_FAIL;
                break;
            }
            if (vb->ended[0]) returns[done++] = vb->ep_return[0];
            rt_scope_reset(S);
            continue;
        }
        rt_tensor *y = rt_tanh(S, mean);
        rt_tensor *scale = rt_mul_scalar(S, rt_sub(S, J.act_high, J.act_low), 0.5);
        rt_tensor *a_env = rt_add(S, J.act_low, rt_mul(S, rt_add_scalar(S, y, 1.0), scale));
        if (!a_env || rt_to_data(a_env, RT_F32, J.actions_env, (size_t)J.act_dim * sizeof(float)) < 0 ||
            venv_step(J.env, J.actions_env) < 0) {
            fprintf(stderr, "error: %s\n", rt_last_error());
            code = RUN_EXIT_FAIL;
            break;
        }
        if (vb->ended[0]) returns[done++] = vb->ep_return[0];
        rt_scope_reset(S);
    }
    rt_grad_mode_restore(g);
    if (code == RUN_EXIT_OK && returns) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < done; i++) mean += returns[i] / (double)done;
        for (int64_t i = 0; i < done; i++) var += (returns[i] - mean) * (returns[i] - mean) / (double)done;
        printf("checkpoint %s (step %lld): deterministic policy on %s, %lld episodes: return %.1f +- %.1f\n", ckpt_path,
               (long long)step, venv_info(J.env)->gym_id, (long long)done, mean, sqrt(var));
    }
out:
    free(returns);
    rt_scope_free(S);
    ck_state_free(ck);
    sac_job_free(&J);
    return code;
}

const rlt_algo rlt_algo_sac = {
    "sac", "soft actor-critic with automatic temperature on an environment plugin (Box or Discrete actions)",
    &sac_train_schema, sac_train, sac_eval,
};
