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
 *   3. from learning_starts on, gradient_steps updates, each on a fresh
 *      replay batch (sac_agent.h: the twin critics against the clipped
 *      double-Q target with the entropy term; every policy_frequency updates
 *      the actor, policy_frequency times, CleanRL's compensation, and log
 *      alpha; Polyak averaging of the target critics every
 *      target_network_frequency updates); metrics only before a log line.
 * This file is the loop; the networks, optimizers and the update itself are
 * the agent's (sac_agent.c), which bench/bench_sac.c times on its own.
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
#include "replay.h"
#include "run.h"
#include "sac.h"
#include "sac_agent.h"
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
/* The job                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct sac_job {
    sac_train_cfg cfg;
    envl_plugin *plugin;
    venv *env;
    sac_agent agent;        /* networks, optimizers, generators, the update (sac_agent.h) */
    rb *buffer;
    uint8_t *env_blob;
    size_t env_blob_size;
    float *obs_prev, *actions_norm, *actions_env; /* host buffers [n*obs_dim], [n*act_dim] x2 */
    int32_t *actions_int;   /* Discrete: [n] the env's int32 actions */
} sac_job;

static void sac_job_free(sac_job *J) {
    sac_agent_free(&J->agent);
    rb_free(J->buffer);
    venv_free(J->env);
    envl_close(J->plugin);
    free(J->env_blob);
    free(J->obs_prev);
    free(J->actions_norm);
    free(J->actions_env);
    free(J->actions_int);
}

/* Environment, agent, buffer; registers everything in ck (when not NULL).
 * Messages through run_fail. */
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

    /* The agent, shaped by the environment's spaces. */
    const env_space *as = venv_act_space(J->env);
    sac_agent_config ac = sac_agent_config_default();
    int discrete = as->kind == ENV_SPACE_DISCRETE;
    ac.obs_dim = venv_info(J->env)->obs_dim;
    ac.act_dim = venv_info(J->env)->act_dim;
    ac.n_actions = discrete ? as->n : 0;
    if (ac.act_dim > 64) return run_fail(r, RUN_EXIT_USAGE, "action dimension %lld > 64", (long long)ac.act_dim);
    if (discrete && (ac.act_dim != 1 || ac.n_actions < 2))
        return run_fail(r, RUN_EXIT_USAGE, "env %s: a Discrete space needs one action with >= 2 choices", c->env);
    for (int64_t i = 0; i < ac.act_dim && !discrete; i++) {
        ac.act_low[i] = (float)as->low[i];
        ac.act_high[i] = (float)as->high[i];
        if (!isfinite(ac.act_low[i]) || !isfinite(ac.act_high[i]))
            return run_fail(r, RUN_EXIT_USAGE, "env %s: unbounded action space (dimension %lld)", c->env, (long long)i);
    }
    ac.hidden = c->hidden;
    ac.gamma = c->gamma;
    ac.tau = c->tau;
    ac.policy_lr = c->policy_lr;
    ac.q_lr = c->q_lr;
    ac.alpha_lr = c->alpha_lr;
    ac.policy_frequency = c->policy_frequency;
    ac.target_network_frequency = c->target_network_frequency;
    ac.autotune = c->autotune;
    ac.alpha = c->alpha;
    ac.reference = (sac_reference)c->reference;
    ac.seed = (uint64_t)c->run.seed;
    if (sac_agent_init(&J->agent, &ac) < 0) return run_fail(r, RUN_EXIT_FAIL, "building the agent: %s", rt_last_error());

    /* Replay buffer and host buffers. */
    int64_t cap = c->buffer_size < c->total_steps ? c->buffer_size : c->total_steps;
    J->buffer = rb_new(cap, ac.obs_dim, ac.act_dim);
    J->obs_prev = calloc((size_t)(num_envs * ac.obs_dim), sizeof(float));
    J->actions_norm = calloc((size_t)(num_envs * ac.act_dim), sizeof(float));
    J->actions_env = calloc((size_t)(num_envs * ac.act_dim), sizeof(float));
    J->actions_int = calloc((size_t)num_envs, sizeof(int32_t));
    J->env_blob_size = venv_state_size(J->env);
    J->env_blob = J->env_blob_size ? calloc(1, J->env_blob_size) : NULL;
    if (!J->buffer || !J->obs_prev || !J->actions_norm || !J->actions_env || !J->actions_int)
        return run_fail(r, RUN_EXIT_FAIL, "out of memory for the replay buffer (%lld transitions)", (long long)cap);
    if (venv_reset(J->env) < 0) return run_fail(r, RUN_EXIT_FAIL, "env reset: %s", venv_error(J->env));

    if (!ck) return 0;
    if (!J->env_blob)
        return run_fail(r, RUN_EXIT_USAGE, "env %s has no state hooks: its runs cannot be checkpointed", c->env);
    if (sac_agent_ck_add(&J->agent, ck) != CK_OK || ck_add_blob(ck, "rng/env", J->env_blob, J->env_blob_size) < 0 ||
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

/* Actions a [n,A] normalized (Box) or int64 [n] (Discrete) into the host
 * buffers: J->actions_norm (what the replay stores: y, or the index as a
 * float) and J->actions_env (y rescaled to the Box bounds) or
 * J->actions_int (what the environments get). */
static int sac_actions_to_host(sac_job *J, const rt_tensor *a, uint32_t n) {
    const sac_agent_config *c = &J->agent.cfg;
    size_t count = (size_t)n * (size_t)c->act_dim;
    if (rt_to_data(a, RT_F32, J->actions_norm, count * sizeof(float)) < 0) return -1;
    if (J->agent.discrete) return rt_to_data(a, RT_I32, J->actions_int, (size_t)n * sizeof(int32_t)) < 0 ? -1 : 0;
    for (size_t i = 0; i < count; i++) { /* env action = low + (y + 1) * (high - low)/2 */
        float lo = c->act_low[i % (size_t)c->act_dim], hi = c->act_high[i % (size_t)c->act_dim];
        J->actions_env[i] = lo + (J->actions_norm[i] + 1.0f) * ((hi - lo) * 0.5f);
    }
    return 0;
}

/* This vector step's actions: uniform before learning_starts, else a sample
 * of the policy at the current observations. */
static int sac_act(sac_job *J, rt_scope *S, int64_t env_steps_done) {
    sac_agent *A = &J->agent;
    uint32_t n = venv_buffers(J->env)->n;
    int64_t os[2] = {n, A->cfg.obs_dim}, shape[2] = {n, A->cfg.act_dim};
    rt_tensor *a;
    if (env_steps_done < J->cfg.learning_starts)
        a = A->discrete ? rt_randint(S, 0, A->cfg.n_actions, shape, 1, A->gen, RT_OPTS(RT_I64)) /* [n] */
                        : rt_add_scalar(S, rt_mul_scalar(S, rt_rand(S, shape, 2, A->gen, RT_OPTS(RT_F32)), 2.0),
                                        -1.0); /* U[-1,1) [n,A] */
    else
        a = sac_agent_policy(A, S, rt_from_data(S, venv_buffers(J->env)->obs, os, 2, RT_OPTS(RT_F32)), 0);
    return a ? sac_actions_to_host(J, a, n) : -1;
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
               J.agent.target_entropy);
    if (run_resume(&R) < 0) goto out;
    S = rt_scope_new();
    if (!S) {
        run_fail(&R, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    const venv_bufs *vb = venv_buffers(J.env);
    size_t obs_bytes = (size_t)vb->n * (size_t)J.agent.cfg.obs_dim * sizeof(float);
    for (; R.step < R.total_steps && !run_stop_requested(&R); rt_scope_reset(S)) {
        int64_t env_steps = R.step * J.cfg.num_envs;
        memcpy(J.obs_prev, vb->obs, obs_bytes);
        if (sac_act(&J, S, env_steps) < 0) {
            run_fail(&R, RUN_EXIT_FAIL, "step %lld acting: %s", (long long)R.step, rt_last_error());
            break;
        }
        if (venv_step(J.env, J.agent.discrete ? (const void *)J.actions_int : (const void *)J.actions_env) < 0) {
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
        /* Learning: gradient_steps updates, each on a fresh batch; metrics
         * are computed only by the last update before a log line. */
        if (env_steps + vb->n > J.cfg.learning_starts) {
            int rc = 0;
            for (int64_t k = 0; k < J.cfg.gradient_steps && rc == 0; k++) {
                int want_metrics = run_log_due(&R) && k + 1 == J.cfg.gradient_steps;
                rc = sac_agent_sample(&J.agent, J.buffer, J.cfg.batch_size);
                if (rc == 0) rc = sac_agent_update(&J.agent, &J.agent.batch, want_metrics);
            }
            if (rc < 0) {
                run_fail(&R, RUN_EXIT_FAIL, "step %lld update: %s", (long long)R.step, rt_last_error());
                break;
            }
            if (rc == 1 && run_check_finite(&R, J.agent.last_critic.loss, NAN) < 0) break;
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
            const sac_agent *A = &J.agent;
            if (A->updates > 0) {
                mx_add(rec, "losses/qf_loss", A->last_critic.loss);
                mx_add(rec, "losses/qf1_values", A->last_critic.qf1_values);
                mx_add(rec, "losses/actor_loss", A->last_actor.loss);
                mx_add(rec, "losses/alpha", A->last_alpha_value);
                if (J.cfg.autotune) mx_add(rec, "losses/alpha_loss", A->last_alpha.loss);
                mx_add(rec, "losses/entropy", A->last_actor.entropy);
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
                       (long long)venv_get_stats(J.env).episodes, (long long)J.agent.updates);
        else
            run_printf(&R, "no episode finished in %lld environment steps (%lld updates)",
                       (long long)(R.step * J.cfg.num_envs), (long long)J.agent.updates);
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
    int64_t os[2] = {1, J.agent.cfg.obs_dim};
    while (returns && done < J.cfg.eval_episodes) {
        /* the deterministic policy: tanh(mean), or the most likely action */
        rt_tensor *a = sac_agent_policy(&J.agent, S, rt_from_data(S, vb->obs, os, 2, RT_OPTS(RT_F32)), 1);
        if (!a || sac_actions_to_host(&J, a, 1) < 0) {
            fprintf(stderr, "error: %s\n", rt_last_error());
            code = RUN_EXIT_FAIL;
            break;
        }
        if (venv_step(J.env, J.agent.discrete ? (const void *)J.actions_int : (const void *)J.actions_env) < 0) {
            fprintf(stderr, "error: %s\n", venv_error(J.env));
            code = RUN_EXIT_FAIL;
            break;
        }
        if (vb->ended[0]) returns[done++] = vb->ep_return[0];
        rt_scope_reset(S);
    }
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
