/*
 * distill_train.c -- token-level distillation of a small GPT (the student)
 * from a larger trained one (the teacher), top to bottom: TRL GKDTrainer's
 * generalized Jensen-Shannon divergence with its on-policy fraction lambda
 * and sequence-level KD, TRL IW-OPD's sparse top-k support, and AlignDistil's
 * token-adaptive logit extrapolation between a teacher and a "reverse"
 * teacher. The losses are losses/gkd.h (specs/pref_kd_losses.md 5.8-5.10),
 * the sampler rollout/sampler.h, the model trainer/models/gpt.h.
 *
 * One step = one batch of batch_size training items (item i of step s is the
 * task's item sp_train_seed(seed, s * batch_size + i), as in sft_train.c), and
 * one coin from the checkpointed `lmbda` generator decides what the
 * completions are (TRL GKD's per-step `random() <= lmbda`):
 *   on-policy (probability distill.lmbda): the student samples them
 *       (sample.temperature, top_k, top_p, max_new_tokens);
 *   off-policy: the task's demonstrations, as SFT sees them -- or, with
 *       distill.seq_kd, completions the teacher samples (sequence-level KD).
 * The teacher (and the reverse teacher) score prompt + completion without
 * gradient; the student is trained on the completion tokens with gkd_loss
 * (form gkd: beta, temperature, top_k, add_tail, reduction from
 * distill.gkd) or gkd_aligndistil_loss (form aligndistil: z_dpo = [teacher],
 * z_rev = [teacher_rev]), plus distill.sft_weight times the teacher-forced
 * cross-entropy on the items' demonstrations when asked (mean over tokens).
 * The temperature of the loss is distill.gkd's; sample.temperature is for
 * sampling only (TRL: GKDConfig.temperature 0.9 samples, the loss runs at 1).
 *
 * The student is built first from the run seed, exactly as sft_train.c builds
 * its model, so a distillation run and an SFT run of the same [model] and
 * seed start from the same weights. The recipes compare distillation from a
 * supervised student (runs/distill-reverse.ini) with SFT from the same
 * checkpoint under the identical schedule (runs/sft-reverse-small-cont.ini).
 *
 * Checkpoints hold the student (/model/policy, so it chains into init_from of
 * any sequence loop and `rlt eval` reports it), its optimizer, the coin and
 * sampling generators, the on-policy step count and the teachers themselves
 * (/model/teacher, /model/teacher_rev): resume is bit-exact at a fixed thread
 * count and does not depend on the teacher's run directory staying as it was.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algo.h"
#include "ckpt.h"
#include "gkd.h"
#include "run.h"
#include "seqpol.h"
#include "tensor.h"

/* ------------------------------------------------------------------------ */
/* Config                                                                    */
/* ------------------------------------------------------------------------ */

static const char *const distill_schedule_choices[] = {"constant", "cosine", NULL};
enum { DISTILL_CONSTANT = 0, DISTILL_COSINE = 1 };

static const char *const distill_form_choices[] = {"gkd", "aligndistil", NULL};
enum { DISTILL_GKD = 0, DISTILL_ALIGNDISTIL = 1 };

typedef struct distill_cfg {
    run_common run;
    sp_task_cfg task;
    sp_model_cfg model;   /* the student */
    sp_eval_cfg eval;
    /* [teacher], [teacher_rev] */
    sp_model_cfg teacher; /* both teachers' shape */
    char teacher_from[512];
    char teacher_rev_from[512];
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
    /* [distill] */
    int form;
    double lmbda;
    bool seq_kd;
    char gkd_settings[256];
    char aligndistil_settings[256];
    double sft_weight;
    /* [sample] */
    double temperature;
    int64_t top_k;
    double top_p;
    int64_t max_new_tokens;
} distill_cfg;

static void distill_check(const void *cfgp, cfg_check *ck);

static const cfg_field distill_fields[] = {
    RUN_COMMON_FIELDS(distill_cfg),
    SP_TASK_FIELDS(distill_cfg, task),
    SP_MODEL_FIELDS(distill_cfg, model),
    SP_EVAL_FIELDS(distill_cfg, eval),
    CFG_STRING(distill_cfg, "teacher", "from", teacher_from, "",
               "the teacher: a sequence-policy checkpoint of this task (a file or a run directory)"),
    CFG_INT64(distill_cfg, "teacher", "layers", teacher.layers, 1, 64, "4", "the teacher's transformer blocks"),
    CFG_INT64(distill_cfg, "teacher", "width", teacher.width, 8, 4096, "128", "the teacher's width (d_model)"),
    CFG_INT64(distill_cfg, "teacher", "heads", teacher.heads, 1, 64, "4", "the teacher's attention heads"),
    CFG_INT64(distill_cfg, "teacher", "context", teacher.context, 8, 8192, "128", "the teacher's maximum sequence length"),
    CFG_INT64(distill_cfg, "teacher", "mlp_hidden", teacher.mlp_hidden, 0, 65536, "0",
              "the teacher's MLP hidden width (0 = 4 x width)"),
    CFG_STRING(distill_cfg, "teacher_rev", "from", teacher_rev_from, "",
               "form aligndistil: the reverse teacher z_rev (same shape as [teacher]; \"\" for form gkd)"),
    CFG_INT64(distill_cfg, "train", "steps", steps, 1, 1e12, "1000", "optimizer steps"),
    CFG_INT64(distill_cfg, "train", "batch_size", batch_size, 1, 1000000, "64", "items (prompts) per step"),
    CFG_DOUBLE(distill_cfg, "train", "lr", lr, 0, 10, "1e-3", "peak learning rate (AdamW)"),
    CFG_DOUBLE(distill_cfg, "train", "weight_decay", weight_decay, 0, 10, "0.01", "AdamW weight decay"),
    CFG_INT64(distill_cfg, "train", "warmup_steps", warmup_steps, 0, 1e12, "100", "linear warm-up steps"),
    CFG_ENUM(distill_cfg, "train", "schedule", schedule, distill_schedule_choices, "cosine",
             "learning-rate schedule after the warm-up"),
    CFG_DOUBLE(distill_cfg, "train", "min_lr_ratio", min_lr_ratio, 0, 1, "0.1", "cosine floor as a fraction of lr"),
    CFG_DOUBLE(distill_cfg, "train", "grad_clip", grad_clip, 0, 1e9, "1.0", "clip the global grad norm (0 = measure only)"),
    CFG_STRING(distill_cfg, "train", "init_from", init_from, "",
               "start the student from this checkpoint's policy (\"\" = random init from run.seed)"),
    CFG_ENUM(distill_cfg, "distill", "form", form, distill_form_choices, "gkd",
             "gkd: generalized JSD to [teacher]; aligndistil: [teacher] extrapolated away from [teacher_rev]"),
    CFG_DOUBLE(distill_cfg, "distill", "lmbda", lmbda, 0, 1, "0.5",
               "probability that a step's completions are sampled by the student (on-policy; TRL GKD lmbda)"),
    CFG_BOOL(distill_cfg, "distill", "seq_kd", seq_kd, "false",
             "off-policy steps use completions sampled by the teacher instead of the demonstrations"),
    CFG_STRING(distill_cfg, "distill", "gkd", gkd_settings, "",
               "form gkd: loss settings 'name=value ...', preset first (rlt loss --help gkd; TRL GKD defaults)"),
    CFG_STRING(distill_cfg, "distill", "aligndistil", aligndistil_settings, "",
               "form aligndistil: loss settings 'name=value ...' (rlt loss --help aligndistil)"),
    CFG_DOUBLE(distill_cfg, "distill", "sft_weight", sft_weight, 0, 1e6, "0",
               "add this times the cross-entropy on the items' demonstrations (0 = distillation only)"),
    CFG_DOUBLE(distill_cfg, "sample", "temperature", temperature, 1e-3, 100, "0.9",
               "sampling temperature of on-policy (and seq_kd) completions; not the loss's"),
    CFG_INT64(distill_cfg, "sample", "top_k", top_k, 0, 1000000, "0", "top-k filter when sampling (0 = off)"),
    CFG_DOUBLE(distill_cfg, "sample", "top_p", top_p, 1e-6, 1, "1.0", "nucleus filter when sampling (1 = off)"),
    CFG_INT64(distill_cfg, "sample", "max_new_tokens", max_new_tokens, 0, 8192, "0",
              "completion budget when sampling (0 = the task's longest demonstration + 8)"),
};

const cfg_schema distill_schema = CFG_SCHEMA("distill", distill_cfg, distill_fields, distill_check);

static int distill_gkd_set(void *cfg, const char *name, const char *value) { return gkd_config_set(cfg, name, value); }
static int distill_ald_set(void *cfg, const char *name, const char *value) {
    return gkd_aligndistil_config_set(cfg, name, value);
}

/* The [distill] settings strings as loss configs: -1 (gkd) or -2
 * (aligndistil) with the message in err. */
static int distill_parse_losses(const distill_cfg *c, gkd_config *gkd, gkd_aligndistil_config *ald, char *err,
                                size_t errlen) {
    *gkd = gkd_config_default();
    *ald = gkd_aligndistil_config_default();
    if (sp_apply_settings(c->gkd_settings, gkd, distill_gkd_set, err, errlen) < 0) return -1;
    if (gkd_config_check(gkd) != RT_OK) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    if (sp_apply_settings(c->aligndistil_settings, ald, distill_ald_set, err, errlen) < 0) return -2;
    if (gkd_aligndistil_config_check(ald) != RT_OK) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -2;
    }
    return 0;
}

static void distill_check(const void *cfgp, cfg_check *ck) {
    const distill_cfg *c = cfgp;
    if (strcmp(c->run.algorithm, "distill") != 0) cfg_check_fail(ck, "run.algorithm", "this loop is 'distill'");
    sp_check_sections(&c->task, &c->model, &c->eval, ck);
    if (c->teacher.width % c->teacher.heads != 0)
        cfg_check_fail(ck, "teacher.heads", "%lld does not divide teacher.width (%lld)", (long long)c->teacher.heads,
                       (long long)c->teacher.width);
    if (!c->teacher_from[0])
        cfg_check_fail(ck, "teacher.from", "is empty: name the teacher's checkpoint (a run directory or a file)");
    if (c->form == DISTILL_ALIGNDISTIL && !c->teacher_rev_from[0])
        cfg_check_fail(ck, "teacher_rev.from", "is empty: distill.form = aligndistil needs the reverse teacher z_rev");
    if (c->form == DISTILL_GKD && c->teacher_rev_from[0])
        cfg_check_fail(ck, "teacher_rev.from", "is set but distill.form = gkd does not use a reverse teacher");
    gkd_config gkd;
    gkd_aligndistil_config ald;
    char err[1024];
    int rc = distill_parse_losses(c, &gkd, &ald, err, sizeof err);
    if (rc == -1) cfg_check_fail(ck, "distill.gkd", "%s", err);
    if (rc == -2) cfg_check_fail(ck, "distill.aligndistil", "%s", err);
}

/* ------------------------------------------------------------------------ */
/* The job                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct distill_job {
    distill_cfg cfg;
    gkd_config gkd;
    gkd_aligndistil_config ald;
    sp_task task;
    gpt *student;
    gpt *teacher;                   /* frozen; training only                      */
    gpt *teacher_rev;               /* frozen; form aligndistil only              */
    rt_optim *opt;
    rt_gen *init_gen;
    rt_gen *coin_gen;               /* the per-step on-policy coin; checkpointed  */
    rt_gen *sample_gen;             /* sampling; checkpointed                     */
    char tok_spec[SP_TOK_SPEC_MAX];
    int64_t max_new;                /* sampling budget of a training completion   */
    int64_t on_policy_steps;        /* steps whose coin said on-policy; checkpointed */
    sp_eval_result last_eval, teacher_eval;
    int have_teacher_eval;
} distill_job;

static void distill_job_free(distill_job *J) {
    rt_optim_free(J->opt);
    gpt_free(J->student);
    gpt_free(J->teacher);
    gpt_free(J->teacher_rev);
    rt_gen_free(J->init_gen);
    rt_gen_free(J->coin_gen);
    rt_gen_free(J->sample_gen);
    sp_task_close(&J->task);
}

/* Task, tokenizer, student; for training (train != 0) also the teachers, the
 * optimizer and the generators. Registers the checkpoint state in ck: for
 * training everything, for `rlt eval` the student alone. r may be NULL
 * (eval): errors are then printed here. */
static int distill_job_build(distill_job *J, run_ctx *r, ck_state *ck, int train) {
    distill_cfg *c = &J->cfg;
    char err[2048];
    err[0] = 0;
    if (distill_parse_losses(c, &J->gkd, &J->ald, err, sizeof err) < 0) return sp_fail(r, RUN_EXIT_USAGE, "%s", err);
    if (sp_task_open(&J->task, &c->task, err, sizeof err) < 0) return sp_fail(r, RUN_EXIT_USAGE, "%s", err);
    J->max_new = c->max_new_tokens > 0 ? c->max_new_tokens : sp_max_demo_tokens(&J->task) + 8;
    /* The longest sequence any model here sees: a prompt with a demonstration,
     * a sampled training completion or an evaluation completion. */
    int64_t longest = sp_max_demo_tokens(&J->task);
    if (J->max_new > longest) longest = J->max_new;
    if (sp_eval_max_new(&c->eval, &J->task) > longest) longest = sp_eval_max_new(&c->eval, &J->task);
    int64_t need = sp_max_prompt_tokens(&J->task) + longest;
    if (need > c->model.context)
        return sp_fail(r, RUN_EXIT_USAGE,
                       "model.context: %lld is too small: the longest prompt of task '%s' plus the longest completion "
                       "is %lld tokens",
                       (long long)c->model.context, c->task.name, (long long)need);
    if (train && need > c->teacher.context)
        return sp_fail(r, RUN_EXIT_USAGE,
                       "teacher.context: %lld is too small: the longest prompt of task '%s' plus the longest "
                       "completion is %lld tokens",
                       (long long)c->teacher.context, c->task.name, (long long)need);
    /* The student first, from the run seed alone: the same initial weights as
     * an SFT run of the same [model] and seed. */
    J->init_gen = rt_gen_new((uint64_t)c->run.seed);
    if (!J->init_gen || sp_model_new(&c->model, &J->task, J->init_gen, &J->student, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_USAGE, "%s", err[0] ? err : rt_last_error());
    if (sp_tok_spec(&J->task, J->tok_spec, sizeof J->tok_spec, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_FAIL, "%s", err);
    if (!train) {
        if (ck && sp_ck_add_policy(ck, "policy", J->student, J->tok_spec) < 0)
            return sp_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
        return 0;
    }
    /* The teachers' initial values are overwritten by their checkpoints. */
    if (sp_model_new(&c->teacher, &J->task, J->init_gen, &J->teacher, err, sizeof err) < 0 ||
        (c->form == DISTILL_ALIGNDISTIL &&
         sp_model_new(&c->teacher, &J->task, J->init_gen, &J->teacher_rev, err, sizeof err) < 0))
        return sp_fail(r, RUN_EXIT_USAGE, "[teacher]: %s", err);
    nn_params_set_requires_grad(gpt_params(J->teacher), 0);
    if (J->teacher_rev) nn_params_set_requires_grad(gpt_params(J->teacher_rev), 0);
    J->coin_gen = rt_gen_new((uint64_t)c->run.seed ^ 0x6c6d626461ULL);      /* "lmbda"  */
    J->sample_gen = rt_gen_new((uint64_t)c->run.seed ^ 0x73616d706c65ULL);  /* "sample" */
    if (!J->coin_gen || !J->sample_gen) return sp_fail(r, RUN_EXIT_FAIL, "generators: %s", rt_last_error());
    nn_params *P = gpt_params(J->student);
    rt_optim_opts o = rt_optim_defaults(RT_ADAMW);
    o.lr = c->lr;
    o.weight_decay = c->weight_decay;
    J->opt = rt_optim_new(RT_ADAMW, nn_params_tensors(P), nn_params_names(P), nn_params_count(P), &o);
    if (!J->opt) return sp_fail(r, RUN_EXIT_FAIL, "optimizer: %s", rt_last_error());
    if (!ck) return 0;
    if (sp_ck_add_policy(ck, "policy", J->student, J->tok_spec) < 0 || ck_add_optim(ck, "policy", J->opt) < 0 ||
        ck_add_gen(ck, "lmbda", J->coin_gen) < 0 || ck_add_gen(ck, "sample", J->sample_gen) < 0 ||
        ck_add_i64(ck, "algo/on_policy_steps", &J->on_policy_steps) < 0 ||
        sp_ck_add_policy(ck, "teacher", J->teacher, NULL) < 0 ||
        (J->teacher_rev && sp_ck_add_policy(ck, "teacher_rev", J->teacher_rev, NULL) < 0))
        return sp_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    return 0;
}

/* The policy of checkpoint `ref` into teacher m; key names the recipe key in
 * errors. The checkpoint's tokenizer and [model] are checked against this
 * task and [teacher] before any tensor is read. */
static int distill_load_teacher(distill_job *J, run_ctx *r, gpt *m, const char *ref, const char *key) {
    char err[4096], path[CK_PATH_MAX];
    sp_task_cfg ck_task;
    sp_model_cfg have;
    const sp_model_cfg *want = &J->cfg.teacher;
    if (sp_read_ckpt_sections(ref, NULL, 0, path, sizeof path, &ck_task, &have, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "%s: %s", key, err);
    if (sp_check_policy_tokenizer(path, J->tok_spec, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "%s: %s", key, err);
    if (have.layers != want->layers || have.width != want->width || have.heads != want->heads ||
        have.context != want->context || have.mlp_hidden != want->mlp_hidden)
        return run_fail(r, RUN_EXIT_USAGE,
                        "%s: %s holds a model with layers=%lld width=%lld heads=%lld context=%lld mlp_hidden=%lld, "
                        "but [teacher] says layers=%lld width=%lld heads=%lld context=%lld mlp_hidden=%lld: make "
                        "[teacher] match",
                        key, path, (long long)have.layers, (long long)have.width, (long long)have.heads,
                        (long long)have.context, (long long)have.mlp_hidden, (long long)want->layers,
                        (long long)want->width, (long long)want->heads, (long long)want->context,
                        (long long)want->mlp_hidden);
    if (sp_load_policy(m, want, J->tok_spec, path, "policy", err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "%s: %s", key, err);
    return 0;
}

/* The student's init_from (when set) and the teachers, for a fresh run. */
static int distill_load_models(distill_job *J, run_ctx *r) {
    const distill_cfg *c = &J->cfg;
    char err[4096];
    if (c->init_from[0] &&
        sp_load_policy(J->student, &c->model, J->tok_spec, c->init_from, "policy", err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "train.init_from: %s", err);
    if (distill_load_teacher(J, r, J->teacher, c->teacher_from, "teacher.from") < 0) return -1;
    if (J->teacher_rev && distill_load_teacher(J, r, J->teacher_rev, c->teacher_rev_from, "teacher_rev.from") < 0)
        return -1;
    return 0;
}

/* Whether run_resume is going to continue from a checkpoint (--resume PATH,
 * or auto with a checkpoint in the run directory). */
static bool distill_will_resume(const run_ctx *r) {
    if (r->args.resume == RUN_RESUME_PATH) return true;
    if (r->args.resume == RUN_RESUME_NEVER) return false;
    ck_scan scan;
    char err[1024];
    return ck_find_latest(r->ckpt_dir, &scan, err, sizeof err) != CK_ENOTFOUND;
}

static double distill_lr_at(const distill_cfg *c, int64_t step) {
    if (c->warmup_steps > 0 && step < c->warmup_steps) return c->lr * (double)(step + 1) / (double)c->warmup_steps;
    if (c->schedule == DISTILL_CONSTANT) return c->lr;
    int64_t span = c->steps - c->warmup_steps;
    double p = span > 0 ? (double)(step - c->warmup_steps) / (double)span : 1.0;
    double floor = c->lr * c->min_lr_ratio;
    return floor + (c->lr - floor) * 0.5 * (1.0 + cos(3.14159265358979323846 * (p > 1 ? 1 : p)));
}

/* ------------------------------------------------------------------------ */
/* One step                                                                  */
/* ------------------------------------------------------------------------ */

/* What one step trains on, all in scope S. */
typedef struct distill_batch {
    int64_t B, P, C;
    int on_policy;               /* the student sampled the completions          */
    int sampled;                 /* someone sampled them (on-policy or seq_kd)   */
    rt_tensor *p_ids, *p_mask;   /* [B, P] left-padded prompts                   */
    rt_tensor *ids, *mask;       /* [B, P+C] prompt + completion                 */
    rt_tensor *c_ids;            /* [B, C] completion tokens                     */
    rt_tensor *c_mask;           /* [B, C] float, 1 on the completion's tokens   */
} distill_batch;

/* Completion logits [B, C, V] of model m on the batch. */
static rt_tensor *distill_logits(rt_scope *S, gpt *m, const distill_batch *b) {
    return sp_completion_logits(S, gpt_forward(S, m, b->ids, b->mask), b->P, b->C);
}

/* Fraction of the mask's positions where the argmaxes of a and b [B,C,V]
 * agree (NaN when the mask is empty). */
static double distill_agreement(rt_scope *S, const rt_tensor *a, const rt_tensor *b, const rt_tensor *mask) {
    rt_tensor *valid = rt_compare_scalar(S, mask, RT_GT, 0.5);                          /* [B, C] bool */
    rt_tensor *same = rt_logical_and(S, rt_compare(S, rt_argmax(S, a, 2, 0), RT_EQ, rt_argmax(S, b, 2, 0)), valid);
    double n = (double)rt_item_i64(rt_sum(S, valid, RT_DIM_ALL, 0));
    return n > 0 ? (double)rt_item_i64(rt_sum(S, same, RT_DIM_ALL, 0)) / n : NAN;
}

/* Teacher-forced cross-entropy of the student on the demonstrations, mean
 * over their tokens; logits [B, C, V] of the student on prompt + demo. */
static rt_tensor *distill_sft_ce(rt_scope *S, const rt_tensor *logits, const rt_tensor *c_ids,
                                 const rt_tensor *c_mask) {
    rt_tensor *valid = rt_compare_scalar(S, c_mask, RT_GT, 0.5);   /* [B, C] bool */
    rt_tensor *targets = rt_where_scalar(S, valid, c_ids, -100.0); /* [B, C] i64  */
    int64_t B = rt_size(c_ids, 0), C = rt_size(c_ids, 1), V = logits ? rt_size(logits, 2) : 0;
    int64_t flat_l[2] = {B * C, V}, flat_t[1] = {B * C};
    return rt_cross_entropy(S, rt_reshape(S, logits, flat_l, 2), rt_reshape(S, targets, flat_t, 1), RT_MEAN, -100,
                            0.0);
}

/* Steps 1-2: the items, the coin, and the completions. */
static int distill_make_batch(distill_job *J, run_ctx *r, rt_scope *S, char **prompts, char **demos,
                              distill_batch *b, smp_out *out) {
    const distill_cfg *c = &J->cfg;
    char err[2048];
    b->B = c->batch_size;
    for (int64_t i = 0; i < b->B; i++) {
        free(prompts[i]);
        free(demos[i]);
        prompts[i] = demos[i] = NULL;
        uint64_t seed = sp_train_seed((uint64_t)c->run.seed, r->step * b->B + i);
        if (sp_sample(&J->task, seed, &prompts[i], &demos[i], err, sizeof err) < 0)
            return run_fail(r, RUN_EXIT_FAIL, "%s", err);
    }
    /* One draw every step, whatever lmbda is, so the coin sequence is a
     * function of the seed alone. */
    int64_t one[1] = {1};
    double u = rt_item(rt_rand(S, one, 1, J->coin_gen, RT_OPTS(RT_F64)));
    if (isnan(u)) return run_fail(r, RUN_EXIT_FAIL, "step %lld coin: %s", (long long)r->step, rt_last_error());
    b->on_policy = u < c->lmbda;
    b->sampled = b->on_policy || c->seq_kd;
    if (b->on_policy) J->on_policy_steps++;
    if (sp_encode_prompts(S, &J->task, prompts, b->B, &b->p_ids, &b->p_mask, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, err);
    b->P = rt_size(b->p_ids, 1);
    if (!b->sampled) {
        if (sp_encode_completions(S, &J->task, demos, b->B, &b->c_ids, &b->c_mask, err, sizeof err) < 0)
            return run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, err);
        b->C = rt_size(b->c_ids, 1);
        if (sp_join(S, b->p_ids, b->p_mask, b->c_ids, b->c_mask, &b->ids, &b->mask) < 0)
            return run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, rt_last_error());
        return 0;
    }
    smp_config sc = smp_config_default();
    sc.temperature = c->temperature;
    sc.top_k = c->top_k;
    sc.top_p = c->top_p;
    sc.max_new_tokens = J->max_new;
    sc.stop_ids[0] = TOK_EOS;
    sc.n_stop = 1;
    sc.pad_id = TOK_PAD;
    int g = rt_no_grad_begin();
    int grc = smp_generate(S, b->on_policy ? J->student : J->teacher, &sc, b->p_ids, b->p_mask, 1, J->sample_gen, out);
    rt_grad_mode_restore(g);
    if (grc < 0 || smp_sequences(S, b->p_ids, b->p_mask, 1, out, &b->ids, &b->mask) != RT_OK)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld sampling (%s): %s", (long long)r->step,
                        b->on_policy ? "student" : "teacher", rt_last_error());
    b->c_ids = out->ids;
    b->c_mask = out->mask;
    b->C = rt_size(b->c_ids, 1);
    return 0;
}

/* rec: the step's metrics record when this step logs, else NULL. */
static int distill_step(distill_job *J, run_ctx *r, rt_scope *S, char **prompts, char **demos, mx_record *rec) {
    const distill_cfg *c = &J->cfg;
    char err[2048];
    distill_batch b;
    memset(&b, 0, sizeof b);
    smp_out out;
    memset(&out, 0, sizeof out);
    int rc = -1;
    if (distill_make_batch(J, r, S, prompts, demos, &b, &out) < 0) goto out;

    /* 3. the teachers score the completions, without gradient */
    int g = rt_no_grad_begin();
    rt_tensor *t_logits = distill_logits(S, J->teacher, &b);                              /* [B, C, V] */
    rt_tensor *rev_logits = J->teacher_rev ? distill_logits(S, J->teacher_rev, &b) : NULL; /* [B, C, V] */
    rt_grad_mode_restore(g);
    if (!t_logits || (J->teacher_rev && !rev_logits)) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld teacher forward: %s", (long long)r->step, rt_last_error());
        goto out;
    }

    /* 4. the student's loss */
    rt_optim_set_lr(J->opt, distill_lr_at(c, r->step));
    rt_tensor *s_logits = distill_logits(S, J->student, &b);                              /* [B, C, V] */
    gkd_metrics gm;
    gkd_aligndistil_metrics am;
    memset(&gm, 0, sizeof gm);
    memset(&am, 0, sizeof am);
    rt_tensor *kd;
    if (c->form == DISTILL_GKD) {
        gkd_inputs in = {s_logits, t_logits, b.c_mask};
        kd = gkd_loss(S, &J->gkd, &in, &gm);
    } else {
        gkd_aligndistil_inputs in = {s_logits, t_logits, rev_logits, b.c_mask};
        kd = gkd_aligndistil_loss(S, &J->ald, &in, &am, NULL, NULL);
    }
    if (!kd) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld distillation loss: %s", (long long)r->step, rt_last_error());
        goto out;
    }
    rt_tensor *loss = kd, *ce = NULL;
    if (c->sft_weight > 0) {
        /* The demonstrations of the same items: the batch itself when it holds
         * them, else one more teacher-forced forward of the student. */
        rt_tensor *d_logits = s_logits, *d_ids = b.c_ids, *d_mask = b.c_mask;
        if (b.sampled) {
            distill_batch d = b;
            if (sp_encode_completions(S, &J->task, demos, b.B, &d.c_ids, &d.c_mask, err, sizeof err) < 0) {
                run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, err);
                goto out;
            }
            d.C = rt_size(d.c_ids, 1);
            if (sp_join(S, d.p_ids, d.p_mask, d.c_ids, d.c_mask, &d.ids, &d.mask) < 0) {
                run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, rt_last_error());
                goto out;
            }
            d_logits = distill_logits(S, J->student, &d);                                  /* [B, Cd, V] */
            d_ids = d.c_ids;
            d_mask = d.c_mask;
        }
        ce = distill_sft_ce(S, d_logits, d_ids, d_mask);
        loss = rt_add_scaled(S, kd, ce, c->sft_weight);
    }
    if (!loss) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld loss: %s", (long long)r->step, rt_last_error());
        goto out;
    }

    /* 5. the update */
    nn_params *Ps = gpt_params(J->student);
    double grad_norm = NAN;
    if (rt_optim_zero_grad(J->opt) < 0 || rt_backward(loss) < 0 ||
        rt_clip_grad_norm(nn_params_tensors(Ps), nn_params_count(Ps), c->grad_clip, &grad_norm) < 0) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld backward: %s", (long long)r->step, rt_last_error());
        goto out;
    }
    double loss_v = rt_item(loss);
    int ok = run_check_finite(r, loss_v, grad_norm);
    if (ok < 0) goto out;
    if (ok > 0 && rt_optim_step(J->opt) < 0) {
        run_fail(r, RUN_EXIT_FAIL, "step %lld optimizer: %s", (long long)r->step, rt_last_error());
        goto out;
    }

    if (rec) {
        double tokens = c->form == DISTILL_GKD ? gm.tokens : am.tokens;
        double agreement = c->form == DISTILL_GKD ? gm.agreement : distill_agreement(S, s_logits, t_logits, b.c_mask);
        mx_add(rec, "train/loss", loss_v);
        mx_add(rec, "train/distill_loss", rt_item(kd));
        if (ce) mx_add(rec, "train/sft_loss", rt_item(ce));
        mx_add(rec, "train/tokens", tokens);
        mx_add(rec, "train/agreement", agreement);
        mx_add(rec, "train/on_policy", b.on_policy ? 1.0 : 0.0);
        mx_add(rec, "train/on_policy_frac", (double)J->on_policy_steps / (double)(r->step + 1));
        mx_add(rec, "completions/mean_length", tokens / (double)b.B);
        mx_add(rec, "train/grad_norm", grad_norm);
        mx_add(rec, "train/lr", rt_optim_get_lr(J->opt));
        if (c->form == DISTILL_ALIGNDISTIL) {
            size_t nm;
            const gkd_metric *md = gkd_aligndistil_metric_table(&nm);
            for (size_t i = 0; i < nm; i++) {
                if (strcmp(md[i].name, "loss") == 0 || strcmp(md[i].name, "tokens") == 0) continue;
                char key[96];
                snprintf(key, sizeof key, "aligndistil/%s", md[i].name);
                mx_add(rec, key, gkd_metric_value(&am, &md[i]));
            }
        }
    }
    rc = 0;
out:
    smp_out_free(&out);
    return rc;
}

/* Held-out evaluation of model m into *e, and into rec when not NULL. */
static int distill_eval_into(distill_job *J, run_ctx *r, gpt *m, mx_record *rec, sp_eval_result *e) {
    return sp_eval_run(r, m, &J->task, &J->cfg.eval, e, rec);
}

/* ------------------------------------------------------------------------ */
/* train / eval                                                              */
/* ------------------------------------------------------------------------ */

static const mx_column distill_columns[] = {
    {"train/loss", "loss", MX_NUM, NULL},              {"train/agreement", "agree", MX_PCT, NULL},
    {"train/on_policy_frac", "on-policy", MX_PCT, NULL}, {"eval/pass@1", "pass@1", MX_PCT, NULL},
    {"eval/greedy", "greedy", MX_PCT, NULL},           {"train/grad_norm", "gnorm", MX_NUM, NULL},
    {"perf/ms_per_step", "ms", MX_MS, NULL},           {"perf/samples_per_s", "samples/s", MX_RATE, NULL},
};

static int distill_train(const run_args *args) {
    distill_job J;
    memset(&J, 0, sizeof J);
    run_ctx R;
    rt_scope *S = NULL;
    char **prompts = NULL, **demos = NULL;
    if (run_open(&R, args, &distill_schema, &J.cfg, &J.cfg.run) < 0) {
        int code = R.exit_code;
        run_close(&R);
        return code;
    }
    R.columns = distill_columns;
    R.ncolumns = sizeof distill_columns / sizeof distill_columns[0];
    R.samples_per_step = J.cfg.batch_size;
    if (ck_set_algorithm(R.ck, "distill") < 0 || distill_job_build(&J, &R, R.ck, 1) < 0) goto out;
    R.total_steps = J.cfg.steps;
    const distill_cfg *c = &J.cfg;
    char loss_desc[160];
    if (c->form == DISTILL_GKD)
        snprintf(loss_desc, sizeof loss_desc, "gkd beta %g, temperature %g%s", J.gkd.beta, J.gkd.temperature,
                 J.gkd.top_k > 0 ? (J.gkd.add_tail ? ", top-k support with tail" : ", top-k support renormalized") : "");
    else
        snprintf(loss_desc, sizeof loss_desc, "aligndistil beta %g, beta2 %g", J.ald.beta, J.ald.beta2);
    run_printf(&R, "task %s (%s), vocabulary %lld; student %lld parameters, teacher %lld; %lld steps of %lld items, "
                   "on-policy probability %g%s, loss %s%s",
               c->task.name, J.task.plugin->path, (long long)tok_vocab_size(J.task.tok),
               (long long)nn_params_numel(gpt_params(J.student)), (long long)nn_params_numel(gpt_params(J.teacher)),
               (long long)c->steps, (long long)c->batch_size, c->lmbda,
               c->seq_kd ? " (off-policy: teacher samples)" : "", loss_desc,
               c->sft_weight > 0 ? " + sft cross-entropy" : "");
    /* A fresh run loads its student's init and its teachers before
     * run_resume opens the metrics, so a teacher refused for its tokenizer or
     * shape leaves no run directory behind; a resumed run has them in its
     * checkpoint (and must not depend on the teacher's run directory). */
    bool loaded = false;
    if (!distill_will_resume(&R)) {
        if (distill_load_models(&J, &R) < 0) goto out;
        loaded = true;
    }
    if (run_resume(&R) < 0) goto out;
    if (R.start_step == 0) {
        if (!loaded && distill_load_models(&J, &R) < 0) goto out;
        if (c->init_from[0]) run_printf(&R, "student initialised from %s", c->init_from);
        run_printf(&R, "teacher from %s%s%s", c->teacher_from, J.teacher_rev ? ", reverse teacher from " : "",
                   J.teacher_rev ? c->teacher_rev_from : "");
        /* What the student is distilled from, on the held-out prompts it is judged on. */
        if (distill_eval_into(&J, &R, J.teacher, NULL, &J.teacher_eval) < 0) goto out;
        J.have_teacher_eval = 1;
        run_printf(&R, "teacher held-out (%lld prompts): pass@1 %.4f  pass@%lld %.4f  greedy %.4f",
                   (long long)J.teacher_eval.prompts, J.teacher_eval.pass1, (long long)J.teacher_eval.k,
                   J.teacher_eval.passk, J.teacher_eval.greedy);
    }

    S = rt_scope_new();
    prompts = calloc((size_t)c->batch_size, sizeof *prompts);
    demos = calloc((size_t)c->batch_size, sizeof *demos);
    if (!S || !prompts || !demos) {
        run_fail(&R, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    double t0 = mx_wall_time();
    for (; R.step < R.total_steps && !run_stop_requested(&R); rt_scope_reset(S)) {
        bool eval_due = R.step + 1 == R.total_steps || (c->eval.every > 0 && (R.step + 1) % c->eval.every == 0);
        mx_record *rec = run_log_due(&R) || eval_due ? run_record(&R) : NULL;
        if (distill_step(&J, &R, S, prompts, demos, rec) < 0) break;
        if (eval_due && distill_eval_into(&J, &R, J.student, rec, &J.last_eval) < 0) break;
        if (rec) run_log(&R);
        R.step++;
        if (run_after_step(&R) < 0) break;
    }
    if (R.step == R.total_steps && R.step > R.start_step && R.exit_code == RUN_EXIT_OK) {
        run_printf(&R, "held-out (%lld prompts): student pass@1 %.4f  pass@%lld %.4f  greedy %.4f  | on-policy steps "
                       "%lld of %lld  | wall time this process %.1f s",
                   (long long)J.last_eval.prompts, J.last_eval.pass1, (long long)J.last_eval.k, J.last_eval.passk,
                   J.last_eval.greedy, (long long)J.on_policy_steps, (long long)R.step, mx_wall_time() - t0);
        if (J.have_teacher_eval)
            run_printf(&R, "teacher pass@1 %.4f  greedy %.4f; student / teacher parameters %.3f",
                       J.teacher_eval.pass1, J.teacher_eval.greedy,
                       (double)nn_params_numel(gpt_params(J.student)) / (double)nn_params_numel(gpt_params(J.teacher)));
    }
out:
    for (int64_t i = 0; prompts && demos && i < c->batch_size; i++) {
        free(prompts[i]);
        free(demos[i]);
    }
    free(prompts);
    free(demos);
    rt_scope_free(S);
    int code = run_close(&R);
    distill_job_free(&J);
    return code;
}

static int distill_eval(const char *ckpt_path, const char *const *sets, int nsets) {
    distill_job J;
    memset(&J, 0, sizeof J);
    int64_t step = 0;
    if (run_eval_config(&distill_schema, &J.cfg, &J.cfg.run, ckpt_path, sets, nsets, &step) != 0)
        return RUN_EXIT_USAGE;
    ck_state *ck = ck_state_new();
    int code = RUN_EXIT_FAIL;
    if (ck && ck_set_algorithm(ck, "distill") == 0 && distill_job_build(&J, NULL, ck, 0) == 0)
        code = sp_eval_checkpoint(ck, ckpt_path, step, J.student, &J.task, &J.cfg.eval);
    ck_state_free(ck);
    distill_job_free(&J);
    return code;
}

const rlt_algo rlt_algo_distill = {
    "distill", "token-level distillation of a small GPT from a teacher checkpoint (GKD, top-k, on-policy; AlignDistil)",
    &distill_schema, distill_train, distill_eval,
};
