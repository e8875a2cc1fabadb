/*
 * grpo_train.c -- group-relative policy optimisation of a small GPT on a
 * verifiable text task, top to bottom: GRPO and its relatives (bnpo, dr_grpo,
 * dapo, cispo, sapo; GSPO with importance_sampling_level=sequence), optional
 * D³S down-sampling and optional SofT-GRPO soft thinking. The losses are
 * losses/pg.h (TRL semantics by default), losses/d3s.h and losses/soft.h; the
 * sampler is rollout/sampler.h; the model trainer/models/gpt.h.
 *
 * One step = one generation batch, as in TRL:
 *   1. prompts_per_step training items (item i of step s is the task's item
 *      sp_train_seed(seed, s * prompts_per_step + i), so the data are a pure
 *      function of the step);
 *   2. num_generations completions per prompt from the current policy
 *      (temperature, top-k, top-p; in soft mode the think segment is made of
 *      Gumbel-softmax mixtures and stores (top-k ids, perturbed logits));
 *   3. the task scores every completion (NaN = no reward);
 *   4. group-relative advantages (pg_advantages);
 *   5. num_iterations optimizer steps on the batch: the policy's completion
 *      log-probs (recomputed by the trainer; for soft positions the Gumbel
 *      log-density of §4.3), old log-probs taken once before the first step
 *      when num_iterations > 1 (else the ratio is exactly 1), reference
 *      log-probs from the frozen reference model when beta != 0, D³S masks,
 *      pg_loss, backward, clip, AdamW.
 *
 * Randomness: the sampling generator is in every checkpoint (with the policy,
 * its optimizer and the reference model), so resume is bit-exact at a fixed
 * thread count.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algo.h"
#include "ckpt.h"
#include "d3s.h"
#include "pg.h"
#include "run.h"
#include "seqpol.h"
#include "soft.h"
#include "tensor.h"

/* ------------------------------------------------------------------------ */
/* Config                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct grpo_cfg {
    run_common run;
    sp_task_cfg task;
    sp_model_cfg model;
    sp_eval_cfg eval;
    /* [train] */
    int64_t steps;
    int64_t prompts_per_step;
    int64_t num_generations;
    int64_t num_iterations;
    double lr;
    double weight_decay;
    double grad_clip;
    char init_from[512];
    char ref_from[512];
    /* [sample] */
    double temperature;
    int64_t top_k;
    double top_p;
    int64_t max_new_tokens;
    /* [grpo] */
    char grpo_settings[512];
    /* [soft] */
    bool soft_enabled;
    char soft_settings[256];
    /* [d3s] */
    bool d3s_enabled;
    int64_t d3s_n_intra, d3s_n_init, d3s_n_final;
    double d3s_k_init, d3s_k_final;
} grpo_cfg;

static void grpo_check(const void *cfgp, cfg_check *ck);

static const cfg_field grpo_fields[] = {
    RUN_COMMON_FIELDS(grpo_cfg),
    SP_TASK_FIELDS(grpo_cfg, task),
    SP_MODEL_FIELDS(grpo_cfg, model),
    SP_EVAL_FIELDS(grpo_cfg, eval),
    CFG_INT64(grpo_cfg, "train", "steps", steps, 1, 1e12, "200", "generation batches (one or more updates each)"),
    CFG_INT64(grpo_cfg, "train", "prompts_per_step", prompts_per_step, 1, 100000, "16", "prompts per generation batch"),
    CFG_INT64(grpo_cfg, "train", "num_generations", num_generations, 1, 1024, "8",
              "completions per prompt (the group size G)"),
    CFG_INT64(grpo_cfg, "train", "num_iterations", num_iterations, 1, 64, "1",
              "optimizer steps per generation batch (mu; > 1 makes the ratio differ from 1)"),
    CFG_DOUBLE(grpo_cfg, "train", "lr", lr, 0, 10, "5e-5", "learning rate (AdamW, constant)"),
    CFG_DOUBLE(grpo_cfg, "train", "weight_decay", weight_decay, 0, 10, "0", "AdamW weight decay"),
    CFG_DOUBLE(grpo_cfg, "train", "grad_clip", grad_clip, 0, 1e9, "1.0", "clip the global grad norm (0 = measure only)"),
    CFG_STRING(grpo_cfg, "train", "init_from", init_from, "",
               "start from this checkpoint's policy (a file or a run directory, e.g. the SFT run)"),
    CFG_STRING(grpo_cfg, "train", "ref_from", ref_from, "",
               "the frozen reference policy when grpo beta != 0 (\"\" = the init_from policy)"),
    CFG_DOUBLE(grpo_cfg, "sample", "temperature", temperature, 1e-3, 100, "1.0", "sampling temperature"),
    CFG_INT64(grpo_cfg, "sample", "top_k", top_k, 0, 1000000, "0", "top-k filter (0 = off)"),
    CFG_DOUBLE(grpo_cfg, "sample", "top_p", top_p, 1e-6, 1, "1.0", "nucleus filter (1 = off)"),
    CFG_INT64(grpo_cfg, "sample", "max_new_tokens", max_new_tokens, 0, 8192, "0",
              "completion budget (0 = the task's longest demonstration + 8)"),
    CFG_STRING(grpo_cfg, "grpo", "settings", grpo_settings, "",
               "policy-gradient loss settings 'name=value ...' (rlt loss --help lists them under grpo); \"\" = "
               "TRL GRPOConfig's defaults (loss_type dapo, epsilon 0.2, beta 0)"),
    CFG_BOOL(grpo_cfg, "soft", "enabled", soft_enabled, "false",
             "SofT-GRPO: the think segment is sampled as Gumbel-softmax soft tokens"),
    CFG_STRING(grpo_cfg, "soft", "settings", soft_settings, "",
               "soft-thinking settings 'name=value ...' (rlt loss --help soft_logp lists them; SofT-GRPO script values)"),
    CFG_BOOL(grpo_cfg, "d3s", "enabled", d3s_enabled, "false", "D3S dual-level down-sampling of rollouts and tokens"),
    CFG_INT64(grpo_cfg, "d3s", "n_intra", d3s_n_intra, 0, 1024, "0", "max-variance rollouts kept per group (0 = all)"),
    CFG_INT64(grpo_cfg, "d3s", "n_init", d3s_n_init, 0, 1000000, "0", "rollouts kept across groups at the start (0 = all)"),
    CFG_INT64(grpo_cfg, "d3s", "n_final", d3s_n_final, 0, 1000000, "0", "... at the end of training"),
    CFG_DOUBLE(grpo_cfg, "d3s", "k_init", d3s_k_init, 0, 1, "1.0", "fraction of tokens kept (|A| x entropy) at the start"),
    CFG_DOUBLE(grpo_cfg, "d3s", "k_final", d3s_k_final, 0, 1, "1.0", "... at the end of training"),
};

const cfg_schema grpo_schema = CFG_SCHEMA("grpo", grpo_cfg, grpo_fields, grpo_check);

static int grpo_pg_set(void *cfg, const char *name, const char *value) { return pg_config_set(cfg, name, value); }
static int grpo_soft_set(void *cfg, const char *name, const char *value) { return soft_config_set(cfg, name, value); }

/* The [grpo] and [soft] settings strings as configs. */
static int grpo_parse_losses(const grpo_cfg *c, pg_config *pg, soft_config *soft, char *err, size_t errlen) {
    *pg = pg_config_default();
    *soft = soft_config_default();
    if (sp_apply_settings(c->grpo_settings, pg, grpo_pg_set, err, errlen) < 0) return -1;
    pg->adv.group_size = c->num_generations;
    if (pg_config_check(pg) != RT_OK) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    if (sp_apply_settings(c->soft_settings, soft, grpo_soft_set, err, errlen) < 0) return -2;
    soft->temperature = c->temperature; /* one temperature for sampling and the loss */
    return 0;
}

static void grpo_check(const void *cfgp, cfg_check *ck) {
    const grpo_cfg *c = cfgp;
    if (strcmp(c->run.algorithm, "grpo") != 0) cfg_check_fail(ck, "run.algorithm", "this loop is 'grpo'");
    sp_check_sections(&c->task, &c->model, &c->eval, ck);
    pg_config pg;
    soft_config soft;
    char err[1024];
    int rc = grpo_parse_losses(c, &pg, &soft, err, sizeof err);
    if (rc == -1) cfg_check_fail(ck, "grpo.settings", "%s", err);
    if (rc == -2) cfg_check_fail(ck, "soft.settings", "%s", err);
    if (rc == 0 && pg.beta != 0 && !c->init_from[0] && !c->ref_from[0])
        cfg_check_fail(ck, "train.ref_from", "grpo beta=%g needs a reference policy: set train.init_from or "
                       "train.ref_from", pg.beta);
    if (c->soft_enabled && !c->task.think)
        cfg_check_fail(ck, "soft.enabled", "soft thinking needs task.think = true (the think segment is what is soft)");
    if (c->d3s_n_intra > c->num_generations)
        cfg_check_fail(ck, "d3s.n_intra", "%lld is larger than train.num_generations (%lld)",
                       (long long)c->d3s_n_intra, (long long)c->num_generations);
}

/* ------------------------------------------------------------------------ */
/* The job                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct grpo_job {
    grpo_cfg cfg;
    pg_config pg;
    soft_config soft;
    d3s_config d3s;
    sp_task task;
    gpt *policy;
    gpt *ref;                       /* frozen; NULL when beta == 0 */
    rt_optim *opt;
    rt_gen *init_gen;
    rt_gen *sample_gen;             /* sampling; checkpointed */
    char tok_spec[SP_TOK_SPEC_MAX];
    int64_t max_new;
    sp_eval_result last_eval, first_eval;
    int have_first_eval;
} grpo_job;

static void grpo_job_free(grpo_job *J) {
    rt_optim_free(J->opt);
    gpt_free(J->policy);
    gpt_free(J->ref);
    rt_gen_free(J->init_gen);
    rt_gen_free(J->sample_gen);
    sp_task_close(&J->task);
}

static int grpo_job_build(grpo_job *J, run_ctx *r, ck_state *ck) {
    grpo_cfg *c = &J->cfg;
    char err[2048];
    if (grpo_parse_losses(c, &J->pg, &J->soft, err, sizeof err) < 0) return sp_fail(r, RUN_EXIT_USAGE, "%s", err);
    J->d3s = d3s_config_default();
    if (c->d3s_enabled) {
        J->d3s.group_size = c->num_generations;
        J->d3s.n_intra = c->d3s_n_intra;
        J->d3s.n_init = c->d3s_n_init;
        J->d3s.n_final = c->d3s_n_final;
        J->d3s.k_init = c->d3s_k_init;
        J->d3s.k_final = c->d3s_k_final;
        J->d3s.total_steps = c->steps;
    }
    if (sp_task_open(&J->task, &c->task, err, sizeof err) < 0) return sp_fail(r, RUN_EXIT_USAGE, "%s", err);
    J->max_new = c->max_new_tokens > 0 ? c->max_new_tokens : sp_max_demo_tokens(&J->task) + 8;
    int64_t need = sp_max_prompt_tokens(&J->task) + J->max_new;
    int64_t need_eval = sp_max_prompt_tokens(&J->task) + sp_eval_max_new(&c->eval, &J->task);
    if (need_eval > need) need = need_eval;
    if (need > c->model.context)
        return sp_fail(r, RUN_EXIT_USAGE,
                       "model.context: %lld is too small: the longest prompt of task '%s' plus the completion budget "
                       "is %lld tokens",
                       (long long)c->model.context, c->task.name, (long long)need);
    J->init_gen = rt_gen_new((uint64_t)c->run.seed);
    J->sample_gen = rt_gen_new((uint64_t)c->run.seed ^ 0x73616d706c65ULL); /* "sample" */
    if (!J->init_gen || !J->sample_gen ||
        sp_model_new(&c->model, &J->task, J->init_gen, &J->policy, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_USAGE, "%s", err);
    if (J->pg.beta != 0 && sp_model_new(&c->model, &J->task, J->init_gen, &J->ref, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_USAGE, "%s", err);
    if (J->ref) nn_params_set_requires_grad(gpt_params(J->ref), 0);
    if (sp_tok_spec(&J->task, J->tok_spec, sizeof J->tok_spec, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_FAIL, "%s", err);
    nn_params *P = gpt_params(J->policy);
    rt_optim_opts o = rt_optim_defaults(RT_ADAMW);
    o.lr = c->lr;
    o.weight_decay = c->weight_decay;
    J->opt = rt_optim_new(RT_ADAMW, nn_params_tensors(P), nn_params_names(P), nn_params_count(P), &o);
    if (!J->opt) return sp_fail(r, RUN_EXIT_FAIL, "optimizer: %s", rt_last_error());
    if (!ck) return 0;
    if (sp_ck_add_policy(ck, "policy", J->policy, J->tok_spec) < 0 || ck_add_optim(ck, "policy", J->opt) < 0 ||
        ck_add_gen(ck, "sample", J->sample_gen) < 0 || (J->ref && sp_ck_add_policy(ck, "ref", J->ref, NULL) < 0))
        return sp_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One step                                                                  */
/* ------------------------------------------------------------------------ */

/* What one generation batch holds, all in scope S. */
typedef struct grpo_batch {
    int64_t P, G, N, Lp, C;
    rt_tensor *ids, *mask;          /* [N, Lp+C] prompt + completion              */
    rt_tensor *c_ids;               /* [N, C] completion tokens                     */
    rt_tensor *c_mask;              /* [N, C] bool                                  */
    rt_tensor *k_ids, *k_gumbels;   /* soft: [N, Lp+C, K] inputs; NULL otherwise    */
    rt_tensor *c_k_ids, *c_gumbels; /* soft: [N, C, K] completion part              */
    rt_tensor *adv;                 /* [N]                                          */
} grpo_batch;

/* Completion log-probs [N,C] of model m on batch b (entropy [N,C] when asked,
 * detached). Soft mode: inputs rebuilt from the stored mixtures, soft positions
 * scored with the Gumbel log-density. */
static rt_tensor *grpo_logps(rt_scope *S, const grpo_job *J, gpt *m, const grpo_batch *b, rt_tensor **entropy,
                             soft_metrics *sm) {
    rt_tensor *logits;
    if (b->k_ids) {
        rt_tensor *emb = soft_input_embeds(S, &J->soft, gpt_token_table(m), b->k_ids, b->k_gumbels);
        logits = gpt_forward_embeds(S, m, emb, b->mask);                     /* [N, L, V] */
    } else {
        logits = gpt_forward(S, m, b->ids, b->mask);                          /* [N, L, V] */
    }
    rt_tensor *c_logits = sp_completion_logits(S, logits, b->Lp, b->C);      /* [N, C, V] */
    rt_tensor *ent = NULL;
    rt_tensor *logps = rt_token_logps(S, c_logits, b->c_ids, J->cfg.temperature, entropy ? &ent : NULL);
    if (entropy) *entropy = ent ? rt_detach(S, ent) : NULL;
    if (b->k_ids) logps = soft_logps_from_logits(S, &J->soft, c_logits, b->c_k_ids, b->c_gumbels, sm);
    return logps;                                                             /* [N, C] */
}

static int grpo_step(grpo_job *J, run_ctx *r, rt_scope *S, char **prompts, double *rewards, mx_record *rec) {
    const grpo_cfg *c = &J->cfg;
    char err[2048];
    grpo_batch b;
    memset(&b, 0, sizeof b);
    b.P = c->prompts_per_step;
    b.G = c->num_generations;
    b.N = b.P * b.G;
    smp_out out;
    memset(&out, 0, sizeof out);
    int rc = -1;

    /* 1-2. prompts and completions */
    for (int64_t i = 0; i < b.P; i++) {
        free(prompts[i]);
        prompts[i] = NULL;
        if (sp_sample(&J->task, sp_train_seed((uint64_t)c->run.seed, r->step * b.P + i), &prompts[i], NULL, err,
                      sizeof err) < 0) {
            run_fail(r, RUN_EXIT_FAIL, "%s", err);
            goto out;
        }
    }
    rt_tensor *p_ids, *p_mask;
    if (sp_encode_prompts(S, &J->task, prompts, b.P, &p_ids, &p_mask, err, sizeof err) < 0) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, err);
        goto out;
    }
    smp_config sc = smp_config_default();
    sc.temperature = c->temperature;
    sc.top_k = c->top_k;
    sc.top_p = c->top_p;
    sc.max_new_tokens = J->max_new;
    sc.stop_ids[0] = TOK_EOS;
    sc.n_stop = 1;
    sc.pad_id = TOK_PAD;
    sc.soft_think = c->soft_enabled;
    sc.think_begin_id = TOK_THINK_BEGIN;
    sc.think_end_id = TOK_THINK_END;
    sc.soft = J->soft;
    int g = rt_no_grad_begin();
    int grc = smp_generate(S, J->policy, &sc, p_ids, p_mask, b.G, J->sample_gen, &out);
    rt_grad_mode_restore(g);
    if (grc < 0) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld sampling: %s", (long long)r->step, rt_last_error());
        goto out;
    }
    b.Lp = rt_size(p_ids, 1);
    b.C = rt_size(out.ids, 1);
    b.c_ids = out.ids;
    b.c_mask = rt_compare_scalar(S, out.mask, RT_GT, 0.5);
    b.c_k_ids = out.topk_ids;   /* soft mode: [N, C, K], else NULL */
    b.c_gumbels = out.gumbels;
    if (smp_sequences(S, p_ids, p_mask, b.G, &out, &b.ids, &b.mask) != RT_OK ||
        (c->soft_enabled && smp_soft_rows(S, p_ids, b.G, &out, &b.k_ids, &b.k_gumbels) != RT_OK)) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, rt_last_error());
        goto out;
    }

    /* 3-4. rewards and advantages */
    rt_tensor *host = rt_contiguous(S, out.ids);
    if (!host || sp_score_rows(&J->task, prompts, b.G, rt_data_ptr(host), out.lengths, b.N, b.C, rewards, err,
                               sizeof err) < 0) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld scoring: %s", (long long)r->step, host ? err : rt_last_error());
        goto out;
    }
    int64_t ns[1] = {b.N};
    rt_tensor *rw = rt_from_data(S, rewards, ns, 1, RT_OPTS(RT_F64));
    pg_adv_metrics am;
    b.adv = rt_to_dtype(S, pg_advantages(S, &J->pg.adv, rw, &am), RT_F32);   /* [N] */
    if (!b.adv) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld advantages: %s", (long long)r->step, rt_last_error());
        goto out;
    }

    /* 5. reference and old log-probs, without grad */
    rt_tensor *ref_logps = NULL, *old_logps = NULL, *entropy0 = NULL;
    g = rt_no_grad_begin();
    if (J->ref) ref_logps = grpo_logps(S, J, J->ref, &b, NULL, NULL);
    if (c->num_iterations > 1 || J->d3s.k_init < 1 || J->d3s.k_final < 1 || J->pg.top_entropy_quantile < 1)
        old_logps = grpo_logps(S, J, J->policy, &b, &entropy0, NULL);
    rt_grad_mode_restore(g);
    if ((J->ref && !ref_logps) || ((c->num_iterations > 1 || entropy0) && !old_logps)) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, rt_last_error());
        goto out;
    }
    if (c->num_iterations == 1) old_logps = NULL; /* ratio exactly 1, as TRL */

    /* D3S masks from the advantages and the policy's entropy before the update. */
    rt_tensor *loss_mask = b.c_mask;
    d3s_stats ds;
    memset(&ds, 0, sizeof ds);
    if (c->d3s_enabled) {
        d3s_plan plan = d3s_schedule(&J->d3s, r->step);
        rt_tensor *keep = d3s_sample_mask(S, &J->d3s, r->step, b.adv, &ds);
        loss_mask = plan.token_frac < 1 ? d3s_token_mask(S, b.adv, entropy0, b.c_mask, keep, plan.token_frac, &ds)
                                        : rt_logical_and(S, b.c_mask, rt_unsqueeze(S, keep, 1));
        if (!loss_mask) {
            run_fail(r, RUN_EXIT_FAIL, "step %lld d3s: %s", (long long)r->step, rt_last_error());
            goto out;
        }
    }

    /* 6. num_iterations updates on this batch */
    pg_metrics pm;
    soft_metrics sm;
    double loss_v = NAN, grad_norm = NAN;
    rt_tensor *entropy = NULL;
    nn_params *Pp = gpt_params(J->policy);
    for (int64_t it = 0; it < c->num_iterations; it++) {
        rt_tensor *logps = grpo_logps(S, J, J->policy, &b, &entropy, &sm);
        pg_inputs in = {logps, old_logps, ref_logps, loss_mask, b.adv, entropy};
        rt_tensor *loss = pg_loss(S, &J->pg, &in, &pm, NULL);
        if (!loss) {
            run_fail(r, RUN_EXIT_FAIL, "step %lld loss: %s", (long long)r->step, rt_last_error());
            goto out;
        }
        if (rt_optim_zero_grad(J->opt) < 0 || rt_backward(loss) < 0 ||
            rt_clip_grad_norm(nn_params_tensors(Pp), nn_params_count(Pp), c->grad_clip, &grad_norm) < 0) {
            run_fail(r, RUN_EXIT_FAIL, "step %lld backward: %s", (long long)r->step, rt_last_error());
            goto out;
        }
        loss_v = rt_item(loss);
        int ok = run_check_finite(r, loss_v, grad_norm);
        if (ok < 0) goto out;
        if (ok > 0 && rt_optim_step(J->opt) < 0) {
            run_fail(r, RUN_EXIT_FAIL, "step %lld optimizer: %s", (long long)r->step, rt_last_error());
            goto out;
        }
    }

    if (rec) {
        int64_t lmin = INT64_MAX, lmax = 0, clipped = 0, correct = 0;
        double lsum = 0;
        for (int64_t i = 0; i < b.N; i++) {
            int64_t len = out.lengths[i];
            lsum += (double)len;
            lmin = len < lmin ? len : lmin;
            lmax = len > lmax ? len : lmax;
            const int64_t *row = (const int64_t *)rt_data_ptr(host) + i * b.C;
            clipped += len == 0 || row[len - 1] != TOK_EOS;
            correct += rewards[i] >= 1.0;
        }
        mx_add(rec, "train/reward", am.reward);
        mx_add(rec, "train/reward_std", am.reward_std);
        mx_add(rec, "train/frac_reward_zero_std", am.frac_reward_zero_std);
        mx_add(rec, "train/frac_unscorable", am.frac_unscorable);
        mx_add(rec, "train/solved", (double)correct / (double)b.N);
        mx_add(rec, "completions/mean_length", lsum / (double)b.N);
        mx_add(rec, "completions/min_length", (double)lmin);
        mx_add(rec, "completions/max_length", (double)lmax);
        mx_add(rec, "completions/clipped_ratio", (double)clipped / (double)b.N);
        mx_add(rec, "train/loss", loss_v);
        mx_add(rec, "train/grad_norm", grad_norm);
        mx_add(rec, "train/lr", rt_optim_get_lr(J->opt));
        if (entropy) {
            rt_tensor *m = rt_to_dtype(S, b.c_mask, RT_F32);
            mx_add(rec, "train/entropy", rt_item(rt_sum(S, rt_mul(S, entropy, m), RT_DIM_ALL, 0)) /
                                             rt_item(rt_sum(S, m, RT_DIM_ALL, 0)));
        }
        size_t nm;
        const pg_metric_desc *md = pg_metric_table(&nm);
        for (size_t i = 0; i < nm; i++) {
            double v = pg_metric_value(&pm, &md[i]);
            if (isnan(v) || strcmp(md[i].name, "loss") == 0 || strcmp(md[i].name, "entropy") == 0) continue;
            char key[96];
            snprintf(key, sizeof key, "train/%s", md[i].name);
            mx_add(rec, key, v);
        }
        if (c->soft_enabled) {
            mx_add(rec, "soft/positions", sm.count);
            mx_add(rec, "soft/kept_mean", sm.kept_mean);
            mx_add(rec, "soft/clamp_frac", sm.clamp_frac);
        }
        if (c->d3s_enabled) {
            mx_add(rec, "d3s/samples_kept", ds.samples_kept);
            mx_add(rec, "d3s/adv_var", ds.adv_var);
            if (ds.tokens_total > 0) mx_add(rec, "d3s/tokens_kept_frac", ds.tokens_kept / ds.tokens_total);
        }
    }
    rc = 0;
out:
    smp_out_free(&out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* train / eval                                                              */
/* ------------------------------------------------------------------------ */

static const mx_column grpo_columns[] = {
    {"train/reward", "reward", MX_NUM, NULL},          {"train/solved", "solved", MX_PCT, NULL},
    {"eval/pass@1", "pass@1", MX_PCT, NULL},           {"eval/greedy", "greedy", MX_PCT, NULL},
    {"completions/mean_length", "len", MX_NUM, NULL},  {"train/kl", "kl", MX_NUM, NULL},
    {"train/grad_norm", "gnorm", MX_NUM, NULL},        {"perf/ms_per_step", "ms", MX_MS, NULL},
};

/* Held-out evaluation of the policy into *e, and into rec when not NULL. */
static int grpo_eval_into(grpo_job *J, run_ctx *r, mx_record *rec, sp_eval_result *e) {
    return sp_eval_run(r, J->policy, &J->task, &J->cfg.eval, e, rec);
}

static int grpo_train(const run_args *args) {
    grpo_job J;
    memset(&J, 0, sizeof J);
    run_ctx R;
    rt_scope *S = NULL;
    char **prompts = NULL;
    double *rewards = NULL;
    if (run_open(&R, args, &grpo_schema, &J.cfg, &J.cfg.run) < 0) {
        int code = R.exit_code;
        run_close(&R);
        return code;
    }
    R.columns = grpo_columns;
    R.ncolumns = sizeof grpo_columns / sizeof grpo_columns[0];
    R.samples_per_step = J.cfg.prompts_per_step * J.cfg.num_generations;
    if (ck_set_algorithm(R.ck, "grpo") < 0 || grpo_job_build(&J, &R, R.ck) < 0) goto out;
    R.total_steps = J.cfg.steps;
    run_printf(&R, "task %s (%s), vocabulary %lld, policy %lld parameters; %lld steps of %lld prompts x %lld "
                   "completions, loss %s%s%s%s",
               J.cfg.task.name, J.task.plugin->path, (long long)tok_vocab_size(J.task.tok),
               (long long)nn_params_numel(gpt_params(J.policy)), (long long)J.cfg.steps,
               (long long)J.cfg.prompts_per_step, (long long)J.cfg.num_generations, pg_loss_type_name(J.pg.loss_type),
               J.pg.importance_sampling_level == PG_LEVEL_SEQUENCE ? " (sequence level, GSPO)" : "",
               J.cfg.soft_enabled ? ", soft thinking (SofT-GRPO)" : "", J.cfg.d3s_enabled ? ", D3S" : "");
    if (sp_run_is_fresh(&R)) { /* a resumed run has its weights (and reference) already */
        char err[4096];
        if (J.cfg.init_from[0] &&
            sp_load_policy(J.policy, &J.cfg.model, J.tok_spec, J.cfg.init_from, "policy", err, sizeof err) < 0) {
            run_fail(&R, RUN_EXIT_USAGE, "train.init_from: %s", err);
            goto out;
        }
        const char *ref_src = J.cfg.ref_from[0] ? J.cfg.ref_from : J.cfg.init_from;
        if (J.ref && sp_load_policy(J.ref, &J.cfg.model, J.tok_spec, ref_src, "policy", err, sizeof err) < 0) {
            run_fail(&R, RUN_EXIT_USAGE, "train.%s: %s", J.cfg.ref_from[0] ? "ref_from" : "init_from", err);
            goto out;
        }
        if (J.cfg.init_from[0]) run_printf(&R, "policy initialised from %s", J.cfg.init_from);
        if (J.ref) run_printf(&R, "reference policy from %s", ref_src);
    }
    if (run_resume(&R) < 0) goto out;
    if (R.start_step == 0) {
        /* Where the policy starts, on the same held-out prompts as the end. */
        if (grpo_eval_into(&J, &R, NULL, &J.first_eval) < 0) goto out;
        J.have_first_eval = 1;
        sp_eval_report(&R, &J.first_eval, NULL);
    }

    S = rt_scope_new();
    prompts = calloc((size_t)J.cfg.prompts_per_step, sizeof *prompts);
    rewards = malloc((size_t)(J.cfg.prompts_per_step * J.cfg.num_generations) * sizeof *rewards);
    if (!S || !prompts || !rewards) {
        run_fail(&R, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    double t0 = mx_wall_time();
    for (; R.step < R.total_steps && !run_stop_requested(&R); rt_scope_reset(S)) {
        bool eval_due = R.step + 1 == R.total_steps || (J.cfg.eval.every > 0 && (R.step + 1) % J.cfg.eval.every == 0);
        mx_record *rec = run_log_due(&R) || eval_due ? run_record(&R) : NULL;
        if (grpo_step(&J, &R, S, prompts, rewards, rec) < 0) break;
        if (eval_due && grpo_eval_into(&J, &R, rec, &J.last_eval) < 0) break;
        if (rec) run_log(&R);
        R.step++;
        if (run_after_step(&R) < 0) break;
    }
    if (R.step == R.total_steps && R.step > R.start_step && R.exit_code == RUN_EXIT_OK) {
        sp_eval_report(&R, J.have_first_eval ? &J.first_eval : NULL, &J.last_eval);
        run_printf(&R, "wall time this process: %.1f s", mx_wall_time() - t0);
    }
out:
    for (int64_t i = 0; prompts && i < J.cfg.prompts_per_step; i++) free(prompts[i]);
    free(prompts);
    free(rewards);
    rt_scope_free(S);
    int code = run_close(&R);
    grpo_job_free(&J);
    return code;
}

static int grpo_eval(const char *ckpt_path, const char *const *sets, int nsets) {
    grpo_job J;
    memset(&J, 0, sizeof J);
    int64_t step = 0;
    if (run_eval_config(&grpo_schema, &J.cfg, &J.cfg.run, ckpt_path, sets, nsets, &step) != 0) return RUN_EXIT_USAGE;
    ck_state *ck = ck_state_new();
    int code = RUN_EXIT_FAIL;
    if (ck && ck_set_algorithm(ck, "grpo") == 0 && grpo_job_build(&J, NULL, ck) == 0)
        code = sp_eval_checkpoint(ck, ckpt_path, step, J.policy, &J.task, &J.cfg.eval);
    ck_state_free(ck);
    grpo_job_free(&J);
    return code;
}

const rlt_algo rlt_algo_grpo = {
    "grpo", "GRPO family (grpo, bnpo, dr_grpo, dapo, cispo, sapo; GSPO; D3S; SofT-GRPO) on a text task",
    &grpo_schema, grpo_train, grpo_eval,
};
