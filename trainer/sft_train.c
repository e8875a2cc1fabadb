/*
 * sft_train.c -- supervised fine-tuning of a small GPT on a text task's own
 * demonstrations, top to bottom: the warm start GRPO and the preference
 * loops begin from (recipes chain with init_from).
 *
 * One step = one batch of batch_size training items. Item i of step s is the
 * task's item sp_train_seed(seed, s * batch_size + i): the data are a pure
 * function of the step, so resume needs no data cursor and is bit-exact.
 * Loss: teacher-forced cross-entropy over the completion tokens (reasoning,
 * </think>, answer and EOS), mean over tokens; the prompt is context only.
 * Learning rate: linear warm-up, then constant or cosine decay to
 * lr * min_lr_ratio. Held-out pass@1 / pass@k / greedy exact match every
 * eval.every steps and at the end.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algo.h"
#include "ckpt.h"
#include "run.h"
#include "seqpol.h"
#include "tensor.h"

/* ------------------------------------------------------------------------ */
/* Config                                                                    */
/* ------------------------------------------------------------------------ */

static const char *const sft_schedule_choices[] = {"constant", "cosine", NULL};
enum { SFT_CONSTANT = 0, SFT_COSINE = 1 };

typedef struct sft_cfg {
    run_common run;
    sp_task_cfg task;
    sp_model_cfg model;
    sp_eval_cfg eval;
    /* [train] */
    int64_t steps;
    int64_t batch_size;
    double lr;
    double weight_decay;
    int64_t warmup_steps;
    int schedule;
    double min_lr_ratio;
    double grad_clip;
    char init_from[512];
} sft_cfg;

static void sft_check(const void *cfgp, cfg_check *ck);

static const cfg_field sft_fields[] = {
    RUN_COMMON_FIELDS(sft_cfg),
    SP_TASK_FIELDS(sft_cfg, task),
    SP_MODEL_FIELDS(sft_cfg, model),
    SP_EVAL_FIELDS(sft_cfg, eval),
    CFG_INT64(sft_cfg, "train", "steps", steps, 1, 1e12, "2000", "optimizer steps"),
    CFG_INT64(sft_cfg, "train", "batch_size", batch_size, 1, 1000000, "64", "demonstrations per step"),
    CFG_DOUBLE(sft_cfg, "train", "lr", lr, 0, 10, "1e-3", "peak learning rate (AdamW)"),
    CFG_DOUBLE(sft_cfg, "train", "weight_decay", weight_decay, 0, 10, "0.01", "AdamW weight decay"),
    CFG_INT64(sft_cfg, "train", "warmup_steps", warmup_steps, 0, 1e12, "100", "linear warm-up steps"),
    CFG_ENUM(sft_cfg, "train", "schedule", schedule, sft_schedule_choices, "cosine",
             "learning-rate schedule after the warm-up"),
    CFG_DOUBLE(sft_cfg, "train", "min_lr_ratio", min_lr_ratio, 0, 1, "0.1", "cosine floor as a fraction of lr"),
    CFG_DOUBLE(sft_cfg, "train", "grad_clip", grad_clip, 0, 1e9, "1.0", "clip the global grad norm (0 = measure only)"),
    CFG_STRING(sft_cfg, "train", "init_from", init_from, "",
               "start from this checkpoint's policy (a file or a run directory; \"\" = random init)"),
};

const cfg_schema sft_schema = CFG_SCHEMA("sft", sft_cfg, sft_fields, sft_check);

static void sft_check(const void *cfgp, cfg_check *ck) {
    const sft_cfg *c = cfgp;
    if (strcmp(c->run.algorithm, "sft") != 0) cfg_check_fail(ck, "run.algorithm", "this loop is 'sft'");
    sp_check_sections(&c->task, &c->model, &c->eval, ck);
}

/* ------------------------------------------------------------------------ */
/* The job                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct sft_job {
    sft_cfg cfg;
    sp_task task;
    gpt *model;
    rt_optim *opt;
    rt_gen *init_gen;
    char tok_spec[SP_TOK_SPEC_MAX];  /* checkpointed: the vocabulary the model was trained on */
    sp_eval_result last_eval;
} sft_job;

static void sft_job_free(sft_job *J) {
    rt_optim_free(J->opt);
    gpt_free(J->model);
    rt_gen_free(J->init_gen);
    sp_task_close(&J->task);
}

/* Task, tokenizer, model and optimizer; registers the checkpoint state in ck
 * (when not NULL). r may be NULL (eval): errors are then printed here. */
static int sft_job_build(sft_job *J, run_ctx *r, ck_state *ck) {
    sft_cfg *c = &J->cfg;
    char err[2048];
    if (sp_task_open(&J->task, &c->task, err, sizeof err) < 0) return sp_fail(r, RUN_EXIT_USAGE, "%s", err);
    /* The evaluation's completion budget covers the longest demonstration. */
    int64_t need = sp_max_prompt_tokens(&J->task) + sp_eval_max_new(&c->eval, &J->task);
    if (need > c->model.context)
        return sp_fail(r, RUN_EXIT_USAGE,
                       "model.context: %lld is too small for task '%s': its longest prompt plus the evaluation's "
                       "completion budget (eval.max_new_tokens) is %lld tokens",
                       (long long)c->model.context, c->task.name, (long long)need);
    J->init_gen = rt_gen_new((uint64_t)c->run.seed);
    if (!J->init_gen || sp_model_new(&c->model, &J->task, J->init_gen, &J->model, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_USAGE, "%s", err[0] ? err : rt_last_error());
    if (sp_tok_spec(&J->task, J->tok_spec, sizeof J->tok_spec, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_FAIL, "%s", err);
    nn_params *P = gpt_params(J->model);
    rt_optim_opts o = rt_optim_defaults(RT_ADAMW);
    o.lr = c->lr;
    o.weight_decay = c->weight_decay;
    J->opt = rt_optim_new(RT_ADAMW, nn_params_tensors(P), nn_params_names(P), nn_params_count(P), &o);
    if (!J->opt) return sp_fail(r, RUN_EXIT_FAIL, "optimizer: %s", rt_last_error());
    if (!ck) return 0;
    if (sp_ck_add_policy(ck, "policy", J->model, J->tok_spec) < 0 || ck_add_optim(ck, "policy", J->opt) < 0)
        return sp_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    return 0;
}

static double sft_lr_at(const sft_cfg *c, int64_t step) {
    if (c->warmup_steps > 0 && step < c->warmup_steps) return c->lr * (double)(step + 1) / (double)c->warmup_steps;
    if (c->schedule == SFT_CONSTANT) return c->lr;
    int64_t span = c->steps - c->warmup_steps;
    double p = span > 0 ? (double)(step - c->warmup_steps) / (double)span : 1.0;
    double floor = c->lr * c->min_lr_ratio;
    return floor + (c->lr - floor) * 0.5 * (1.0 + cos(3.14159265358979323846 * (p > 1 ? 1 : p)));
}

/* ------------------------------------------------------------------------ */
/* One step                                                                  */
/* ------------------------------------------------------------------------ */

/* rec: the step's metrics record when this step logs, else NULL. */
static int sft_step(sft_job *J, run_ctx *r, rt_scope *S, char **prompts, char **demos, mx_record *rec) {
    const sft_cfg *c = &J->cfg;
    int64_t B = c->batch_size;
    char err[2048];
    for (int64_t i = 0; i < B; i++) {
        free(prompts[i]);
        free(demos[i]);
        prompts[i] = demos[i] = NULL;
        uint64_t seed = sp_train_seed((uint64_t)c->run.seed, r->step * B + i);
        if (sp_sample(&J->task, seed, &prompts[i], &demos[i], err, sizeof err) < 0)
            return run_fail(r, RUN_EXIT_FAIL, "%s", err);
    }
    rt_tensor *p_ids, *p_mask, *c_ids, *c_mask, *ids, *mask;
    if (sp_encode_prompts(S, &J->task, prompts, B, &p_ids, &p_mask, err, sizeof err) < 0 ||
        sp_encode_completions(S, &J->task, demos, B, &c_ids, &c_mask, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, err);
    int64_t P = rt_size(p_ids, 1), C = rt_size(c_ids, 1);
    if (sp_join(S, p_ids, p_mask, c_ids, c_mask, &ids, &mask) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "%s", rt_last_error());

    rt_optim_set_lr(J->opt, sft_lr_at(c, r->step));
    rt_tensor *logits = gpt_forward(S, J->model, ids, mask);           /* [B, P+C, V] */
    rt_tensor *c_logits = sp_completion_logits(S, logits, P, C);      /* [B, C, V]   */
    rt_tensor *valid = rt_compare_scalar(S, c_mask, RT_GT, 0.5);      /* [B, C] bool */
    rt_tensor *targets = rt_where_scalar(S, valid, c_ids, -100.0);    /* [B, C] i64  */
    int64_t V = c_logits ? rt_size(c_logits, 2) : 0;
    int64_t flat_l[2] = {B * C, V}, flat_t[1] = {B * C};
    rt_tensor *loss = rt_cross_entropy(S, rt_reshape(S, c_logits, flat_l, 2), rt_reshape(S, targets, flat_t, 1),
                                       RT_MEAN, -100, 0.0);
    if (!loss) return run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, rt_last_error());
    nn_params *Pm = gpt_params(J->model);
    double grad_norm = NAN;
    if (rt_optim_zero_grad(J->opt) < 0 || rt_backward(loss) < 0 ||
        rt_clip_grad_norm(nn_params_tensors(Pm), nn_params_count(Pm), c->grad_clip, &grad_norm) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld backward: %s", (long long)r->step, rt_last_error());
    double loss_v = rt_item(loss);
    int ok = run_check_finite(r, loss_v, grad_norm);
    if (ok < 0) return -1;
    if (ok > 0 && rt_optim_step(J->opt) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld optimizer: %s", (long long)r->step, rt_last_error());

    if (rec) {
        /* token accuracy of the teacher-forced predictions */
        rt_tensor *pred = rt_argmax(S, c_logits, 2, 0);
        rt_tensor *hit = rt_logical_and(S, rt_compare(S, pred, RT_EQ, c_ids), valid);
        double n_tok = rt_item(rt_sum(S, c_mask, RT_DIM_ALL, 0));
        mx_add(rec, "train/loss", loss_v);
        mx_add(rec, "train/token_acc", (double)rt_item_i64(rt_sum(S, hit, RT_DIM_ALL, 0)) / n_tok);
        mx_add(rec, "train/tokens", n_tok);
        mx_add(rec, "train/grad_norm", grad_norm);
        mx_add(rec, "train/lr", rt_optim_get_lr(J->opt));
    }
    return 0;
}

/* Held-out evaluation into rec (logged with this step). */
static int sft_eval_now(sft_job *J, run_ctx *r, mx_record *rec) {
    return sp_eval_run(r, J->model, &J->task, &J->cfg.eval, &J->last_eval, rec);
}

/* ------------------------------------------------------------------------ */
/* train / eval                                                              */
/* ------------------------------------------------------------------------ */

static const mx_column sft_columns[] = {
    {"train/loss", "loss", MX_NUM, NULL},         {"train/token_acc", "tok_acc", MX_PCT, NULL},
    {"eval/pass@1", "pass@1", MX_PCT, NULL},      {"eval/greedy", "greedy", MX_PCT, NULL},
    {"train/grad_norm", "gnorm", MX_NUM, NULL},   {"train/lr", "lr", MX_SCI, NULL},
    {"perf/ms_per_step", "ms", MX_MS, NULL},      {"perf/samples_per_s", "samples/s", MX_RATE, NULL},
};

static int sft_train(const run_args *args) {
    sft_job J;
    memset(&J, 0, sizeof J);
    run_ctx R;
    rt_scope *S = NULL;
    char **prompts = NULL, **demos = NULL;
    if (run_open(&R, args, &sft_schema, &J.cfg, &J.cfg.run) < 0) {
        int code = R.exit_code;
        run_close(&R);
        return code;
    }
    R.columns = sft_columns;
    R.ncolumns = sizeof sft_columns / sizeof sft_columns[0];
    R.samples_per_step = J.cfg.batch_size;
    if (ck_set_algorithm(R.ck, "sft") < 0 || sft_job_build(&J, &R, R.ck) < 0) goto out;
    R.total_steps = J.cfg.steps;
    run_printf(&R, "task %s (%s), vocabulary %lld, model %lld parameters; %lld steps of %lld demonstrations",
               J.cfg.task.name, J.task.plugin->path, (long long)tok_vocab_size(J.task.tok),
               (long long)nn_params_numel(gpt_params(J.model)), (long long)J.cfg.steps, (long long)J.cfg.batch_size);
    if (J.cfg.init_from[0] && sp_run_is_fresh(&R)) { /* a resumed run has its weights already */
        char err[4096];
        if (sp_load_policy(J.model, &J.cfg.model, J.tok_spec, J.cfg.init_from, "policy", err, sizeof err) < 0) {
            run_fail(&R, RUN_EXIT_USAGE, "train.init_from: %s", err);
            goto out;
        }
        run_printf(&R, "policy initialised from %s", J.cfg.init_from);
    }
    if (run_resume(&R) < 0) goto out;

    S = rt_scope_new();
    prompts = calloc((size_t)J.cfg.batch_size, sizeof *prompts);
    demos = calloc((size_t)J.cfg.batch_size, sizeof *demos);
    if (!S || !prompts || !demos) {
        run_fail(&R, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    double t0 = mx_wall_time();
    for (; R.step < R.total_steps && !run_stop_requested(&R); rt_scope_reset(S)) {
        bool eval_due = R.step + 1 == R.total_steps || (J.cfg.eval.every > 0 && (R.step + 1) % J.cfg.eval.every == 0);
        mx_record *rec = run_log_due(&R) || eval_due ? run_record(&R) : NULL;
        if (sft_step(&J, &R, S, prompts, demos, rec) < 0) break;
        if (eval_due && sft_eval_now(&J, &R, rec) < 0) break;
        if (rec) run_log(&R);
        R.step++;
        if (run_after_step(&R) < 0) break;
    }
    if (R.step == R.total_steps && R.step > R.start_step && R.exit_code == RUN_EXIT_OK)
        run_printf(&R, "held-out (%lld prompts): pass@1 %.4f  pass@%lld %.4f  greedy %.4f  | wall time %.1f s",
                   (long long)J.last_eval.prompts, J.last_eval.pass1, (long long)J.last_eval.k, J.last_eval.passk,
                   J.last_eval.greedy, mx_wall_time() - t0);
out:
    for (int64_t i = 0; prompts && demos && i < J.cfg.batch_size; i++) {
        free(prompts[i]);
        free(demos[i]);
    }
    free(prompts);
    free(demos);
    rt_scope_free(S);
    int code = run_close(&R);
    sft_job_free(&J);
    return code;
}

static int sft_eval(const char *ckpt_path, const char *const *sets, int nsets) {
    sft_job J;
    memset(&J, 0, sizeof J);
    int64_t step = 0;
    if (run_eval_config(&sft_schema, &J.cfg, &J.cfg.run, ckpt_path, sets, nsets, &step) != 0) return RUN_EXIT_USAGE;
    ck_state *ck = ck_state_new();
    int code = RUN_EXIT_FAIL;
    if (ck && ck_set_algorithm(ck, "sft") == 0 && sft_job_build(&J, NULL, ck) == 0)
        code = sp_eval_checkpoint(ck, ckpt_path, step, J.model, &J.task, &J.cfg.eval);
    ck_state_free(ck);
    sft_job_free(&J);
    return code;
}

const rlt_algo rlt_algo_sft = {
    "sft", "supervised warm start of a small GPT on a text task's demonstrations",
    &sft_schema, sft_train, sft_eval,
};
