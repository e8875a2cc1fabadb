/*
 * seqpol.h -- what the sequence-policy loops (sft_train.c, grpo_train.c, and
 * the preference and distillation loops after them) share: the [task],
 * [model] and [eval] sections of a recipe, a text task opened from its plugin
 * together with the tokenizer that covers it, the layout of prompts and
 * completions as token tensors, completion log-probs, and held-out
 * evaluation (pass@1, pass@k, greedy exact match).
 *
 * Token layout. A prompt is encoded as
 *     BOS  prompt characters  [THINK_BEGIN]          (THINK_BEGIN when task.think)
 * and LEFT-padded with PAD to the longest prompt of the batch (prompt_mask 0
 * on padding), so every prompt ends at the same column and generation
 * continues from there. A completion is what follows: with task.think the
 * reasoning, THINK_END, the answer, EOS; without it the answer and EOS. It is
 * RIGHT-padded (completion mask 0 after EOS). The text a task scores is
 * "<think>" + decoded completion (task.think) or the decoded completion.
 *
 * Items are procedural (envs/env.h): item `seed` is always the same prompt.
 * Training items use seeds with the top bit clear, drawn from (run seed,
 * item index); held-out items use seeds with the top bit set that do not
 * depend on the run seed, so every run of a task is evaluated on the same
 * prompts and never trains on them.
 */
#ifndef RLT_SEQPOL_H
#define RLT_SEQPOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"
#include "config.h"
#include "metrics.h"
#include "run.h"
#include "envl.h"
#include "gpt.h"
#include "sampler.h"
#include "tensor.h"
#include "tokenizer.h"

/* ---- recipe sections ------------------------------------------------------ */

typedef struct sp_task_cfg {
    char name[64];       /* text-task plugin ("arithmetic", "reverse", ...)       */
    char settings[256];  /* the plugin's "key=value;key=value" config            */
    char env_path[256];  /* extra plugin directories (colon-separated), "" = none */
    bool think;          /* prompts end with THINK_BEGIN; demos keep their reasoning */
} sp_task_cfg;

typedef struct sp_model_cfg {
    int64_t layers, width, heads, context, mlp_hidden;
} sp_model_cfg;

typedef struct sp_eval_cfg {
    int64_t prompts;       /* held-out prompts per evaluation                       */
    int64_t samples;       /* completions sampled per prompt (n of pass@k)          */
    int64_t k;             /* k of pass@k (<= samples)                              */
    double temperature;    /* sampling temperature of the evaluation                */
    int64_t max_new_tokens;/* completion budget (0 = the task's longest demo + 8)   */
    int64_t every;         /* steps between evaluations during training (0 = end only) */
    int64_t batch;         /* prompts per sampling batch                            */
    int64_t seed;          /* the evaluation's sampling seed (not the run's: runs compare) */
} sp_eval_cfg;

/* Schema fields; `m` is the member holding the struct ("task", "model", "eval"). */
#define SP_TASK_FIELDS(T, m)                                                                         \
    CFG_STRING(T, "task", "name", m.name, "reverse", "text-task plugin (rlt envs lists them)"),       \
    CFG_STRING(T, "task", "settings", m.settings, "",                                                 \
               "the plugin's settings 'key=value;key=value' (rlt envs shows the defaults)"),        \
    CFG_STRING(T, "task", "env_path", m.env_path, "",                                                 \
               "extra plugin directories, colon-separated (RLT_ENV_PATH and the build's are searched too)"), \
    CFG_BOOL(T, "task", "think", m.think, "true",                                                     \
             "prompts end with <think>; completions are reasoning, </think>, answer")

#define SP_MODEL_FIELDS(T, m)                                                                        \
    CFG_INT64(T, "model", "layers", m.layers, 1, 64, "4", "transformer blocks"),                      \
    CFG_INT64(T, "model", "width", m.width, 8, 4096, "128", "model width (d_model)"),                 \
    CFG_INT64(T, "model", "heads", m.heads, 1, 64, "4", "attention heads (must divide width)"),       \
    CFG_INT64(T, "model", "context", m.context, 8, 8192, "128",                                      \
              "maximum sequence length (prompt + completion)"),                                      \
    CFG_INT64(T, "model", "mlp_hidden", m.mlp_hidden, 0, 65536, "0", "MLP hidden width (0 = 4 x width)")

#define SP_EVAL_FIELDS(T, m)                                                                         \
    CFG_INT64(T, "eval", "prompts", m.prompts, 1, 1000000, "200", "held-out prompts per evaluation"), \
    CFG_INT64(T, "eval", "samples", m.samples, 1, 1024, "8", "completions sampled per prompt (n of pass@k)"), \
    CFG_INT64(T, "eval", "k", m.k, 1, 1024, "8", "k of pass@k (at most eval.samples)"),              \
    CFG_DOUBLE(T, "eval", "temperature", m.temperature, 0, 100, "1.0",                               \
               "sampling temperature for pass@k (greedy exact match is also reported)"),            \
    CFG_INT64(T, "eval", "max_new_tokens", m.max_new_tokens, 0, 8192, "0",                           \
              "completion budget (0 = the task's longest demonstration + 8)"),                       \
    CFG_INT64(T, "eval", "every", m.every, 0, 1e12, "0", "steps between evaluations (0 = at the end only)"), \
    CFG_INT64(T, "eval", "batch", m.batch, 1, 100000, "64", "prompts per sampling batch"),          \
    CFG_INT64(T, "eval", "seed", m.seed, 0, 9.2e18, "1234",                                          \
              "sampling seed of every evaluation (fixed, so runs and checkpoints compare on equal terms)")

/* Cross-field checks of the three sections (heads divide width; k <= samples). */
void sp_check_sections(const sp_task_cfg *t, const sp_model_cfg *m, const sp_eval_cfg *e, cfg_check *ck);

/* ---- the task ------------------------------------------------------------ */

typedef struct sp_task {
    envl_text *plugin;           /* the loaded plugin                              */
    env_text_task *task;         /* one configured task                            */
    tok_tokenizer *tok;          /* char-level over the plugin's alphabet          */
    bool think;
    uint32_t max_prompt_chars;   /* the task's limits()                            */
    uint32_t max_demo_chars;
    char *prompt_buf, *demo_buf; /* scratch of those sizes + 1                     */
    char *text_buf;              /* decoded completions                            */
    size_t text_cap;
} sp_task;

/* Loads the plugin named by cfg (search: cfg->env_path, RLT_ENV_PATH, the
 * build's envs/), creates the task with cfg->settings and builds the
 * tokenizer. Errors name the plugin file or the setting. */
int sp_task_open(sp_task *t, const sp_task_cfg *cfg, char *err, size_t errlen);
void sp_task_close(sp_task *t); /* NULL-safe, idempotent */

/* Seeds of training item `index` and held-out item `index`. */
uint64_t sp_train_seed(uint64_t run_seed, int64_t index);
uint64_t sp_heldout_seed(int64_t index);

/* Item `seed`: its prompt and demonstration, copied into malloc'd strings the
 * caller frees (demo may be NULL when not wanted). */
int sp_sample(sp_task *t, uint64_t seed, char **prompt, char **demo, char *err, size_t errlen);

/* Longest prompt / completion in tokens this task can produce (the prompt with
 * BOS and THINK_BEGIN, the demonstration completion with EOS). */
int64_t sp_max_prompt_tokens(const sp_task *t);
int64_t sp_max_demo_tokens(const sp_task *t);

/* Prompts -> ids [n,P] int64 left-padded, mask [n,P] float (1 = token). */
int sp_encode_prompts(rt_scope *S, sp_task *t, char *const *prompts, int64_t n, rt_tensor **ids,
                      rt_tensor **mask, char *err, size_t errlen);
/* Demonstrations -> completion ids [n,C] right-padded (EOS appended) and
 * mask [n,C] float; with task.think the demo's leading "<think>" is the
 * prompt's last token and is dropped here. */
int sp_encode_completions(rt_scope *S, sp_task *t, char *const *demos, int64_t n, rt_tensor **ids,
                          rt_tensor **mask, char *err, size_t errlen);

/* The text the task scores for completion row ids[0..len) (len = the row's
 * real tokens): "<think>" + decode (task.think) or decode. Points into
 * t->text_buf (valid until the next call). */
const char *sp_completion_text(sp_task *t, const int64_t *ids, int64_t len);

/* Scores completion rows ids [n,C] (host int64, lengths[n]) against their
 * prompts (prompts[i / group]); writes rewards[n] (NaN = no reward). */
int sp_score_rows(sp_task *t, char *const *prompts, int64_t group, const int64_t *ids, const int64_t *lengths,
                  int64_t n, int64_t C, double *rewards, char *err, size_t errlen);

/* ---- model ------------------------------------------------------------- */

/* A GPT for this task's vocabulary. */
int sp_model_new(const sp_model_cfg *cfg, const sp_task *t, rt_gen *g, gpt **out, char *err, size_t errlen);

/* prompt [N,P] + completion [N,C] -> full ids [N,P+C] and mask [N,P+C]. */
int sp_join(rt_scope *S, const rt_tensor *p_ids, const rt_tensor *p_mask, const rt_tensor *c_ids,
            const rt_tensor *c_mask, rt_tensor **ids, rt_tensor **mask);
/* Logits that score the completion tokens: from the full forward's logits
 * [N,P+C,V], the rows P-1 .. P+C-2 -> [N,C,V] (a view). */
rt_tensor *sp_completion_logits(rt_scope *S, const rt_tensor *logits, int64_t P, int64_t C);

/* ---- evaluation -------------------------------------------------------- */

typedef struct sp_eval_result {
    int64_t prompts, samples, k;
    double pass1;        /* mean over prompts of c/n (c = completions scoring 1.0)   */
    double passk;        /* mean of the unbiased 1 - C(n-c,k)/C(n,k)                  */
    double greedy;       /* fraction of prompts whose greedy completion scores 1.0   */
    double reward;       /* mean reward of the sampled completions (NaN ignored)     */
    double length;       /* mean completion length in tokens (sampled)               */
    double seconds;
} sp_eval_result;

/* Samples eval.samples completions for each of the first eval.prompts
 * held-out items, and one greedy completion, with a generator seeded from
 * eval.seed (so an evaluation is a pure function of the parameters). */
int sp_evaluate(gpt *m, sp_task *t, const sp_eval_cfg *cfg, sp_eval_result *out, char *err, size_t errlen);
/* max_new_tokens the evaluation uses for this task. */
int64_t sp_eval_max_new(const sp_eval_cfg *cfg, const sp_task *t);

/* pass@k of one prompt with c correct among n samples (unbiased estimator). */
double sp_pass_at_k(int64_t n, int64_t c, int64_t k);

/* ---- checkpoints ----------------------------------------------------------- */

/* Bytes of the tokenizer description stored with a policy ("chars:..."). */
#define SP_TOK_SPEC_MAX 1024

/* The task's tokenizer description, zero-padded into spec[SP_TOK_SPEC_MAX]. */
int sp_tok_spec(const sp_task *t, char *spec, size_t cap, char *err, size_t errlen);

/* Registers a policy in a checkpoint manifest: its parameters under
 * /model/<role>/ and, when tok_spec is not NULL, the tokenizer description
 * as the blob /data/tokenizer. */
int sp_ck_add_policy(ck_state *ck, const char *role, gpt *m, char *tok_spec);

/* Resolves a checkpoint reference: a file, or a run directory (its newest
 * complete checkpoint). */
int sp_resolve_ckpt(const char *ref, char *path, size_t cap, char *err, size_t errlen);

/* Loads /model/<role> of checkpoint `ref` (file or run directory) into m,
 * after checking that the checkpoint's [model] section equals `mcfg` and its
 * tokenizer equals tok_spec (each mismatch named). */
int sp_load_policy(gpt *m, const sp_model_cfg *mcfg, const char *tok_spec, const char *ref, const char *role,
                   char *err, size_t errlen);

/* True when run_resume will start this run from scratch (no checkpoint to
 * continue from): the moment to load init_from weights, before run_resume
 * opens the metrics, so a refused init_from leaves no run directory behind. */
bool sp_run_is_fresh(const run_ctx *r);

/* `rlt eval` for a sequence-policy checkpoint: loads ck from path, evaluates
 * the policy on the held-out items and prints a table. Returns an exit code. */
int sp_eval_checkpoint(ck_state *ck, const char *path, int64_t step, gpt *m, sp_task *t, const sp_eval_cfg *cfg);

/* eval/pass@1, eval/pass@k, eval/k, eval/greedy, eval/reward, eval/length,
 * perf/eval_seconds into rec. */
void sp_eval_record(mx_record *rec, const sp_eval_result *e);

/* A training loop's held-out evaluation of m into *e, and into rec when not
 * NULL. 0, or run_fail's -1 with the evaluation's message. */
int sp_eval_run(run_ctx *r, gpt *m, sp_task *t, const sp_eval_cfg *cfg, sp_eval_result *e, mx_record *rec);
/* The loops' summary line: last NULL -> "held-out before training: ...";
 * first and last -> "held-out (N prompts): pass@1 a -> b ..."; last only ->
 * the same without the arrows. */
void sp_eval_report(run_ctx *r, const sp_eval_result *first, const sp_eval_result *last);

/* run_fail when r is not NULL, else "error: ..." on stderr. Returns -1. */
int sp_fail(run_ctx *r, int exit_code, const char *fmt, ...) CFG_PRINTF(3, 4);

/* ---- settings strings ---------------------------------------------------- */

/* Applies "name=value name=value" (blanks between pairs, or a comma when a
 * name=value follows it, so comma-list values stay whole) with
 * set(cfg, name, value) (an rt_status setter such as pg_config_set). Returns
 * 0, or -1 with the message in err. */
int sp_apply_settings(const char *text, void *cfg, int (*set)(void *, const char *, const char *), char *err,
                      size_t errlen);

/* ---- preference data --------------------------------------------------------
 * What `rlt make-prefs` and the preference loops (pref_train.c) add: a seed
 * range of their own, the [task]/[model] sections of a checkpoint, and rows
 * of (prompt, completion) text encoded for scoring by a policy. */

/* Seed of preference-data item `index` (rlt make-prefs): the top two bits
 * set and the other 62 drawn from (seed, index). Training items have the top
 * bit clear and held-out items are (1 << 63) | index with index < 2^62, so
 * preference prompts never come from either range and held-out pass@1 stays
 * an honest measure after training on them. */
uint64_t sp_pref_seed(uint64_t seed, int64_t index);

/* The [task] and [model] sections of checkpoint `ref` (a file or a run
 * directory: its newest complete checkpoint), read from the resolved config
 * stored in it, then the nsets "task.KEY=VALUE" overrides (only task keys:
 * the model is the checkpoint's). path (cap bytes) receives the checkpoint
 * file. Errors name the file or the override and the reason. */
int sp_read_ckpt_sections(const char *ref, const char *const *sets, int nsets, char *path, size_t cap,
                          sp_task_cfg *task, sp_model_cfg *model, char *err, size_t errlen);

/* n rows of text to score: row i is prompts[i] followed by completions[i],
 * a completion written as the task scores it (a demonstration, or what
 * sp_completion_text gave for a sampled row), laid out as
 * sp_encode_prompts / sp_encode_completions lay out prompts and
 * demonstrations (EOS appended) but without their length limit: sampled
 * completions may be longer than the task's longest demonstration. */
typedef struct sp_rows {
    int64_t n, P, C;        /* rows, prompt columns, completion columns            */
    rt_tensor *ids, *mask;  /* [n, P+C] int64 / float: prompt (left-padded) + completion */
    rt_tensor *c_ids;       /* [n, C] int64 completion tokens (PAD after EOS)      */
    rt_tensor *c_mask;      /* [n, C] bool, true on the completion's tokens         */
    rt_tensor *lengths;     /* [n] float32 completion token counts (EOS included)   */
} sp_rows;

/* Encodes the rows into S. Errors name the row and its text. */
int sp_encode_rows(rt_scope *S, sp_task *t, const char *const *prompts, const char *const *completions,
                   int64_t n, sp_rows *out, char *err, size_t errlen);

/* Per-token log-probs [n, C] of the rows' completion tokens under m at
 * temperature 1 (values at padding are meaningless: mask with c_mask), from
 * one full forward; *logits (may be NULL) receives the forward's logits
 * [n, P+C, V] (completion rows: sp_completion_logits). Differentiable when
 * grad mode is on. NULL with rt_last_error() on failure. */
rt_tensor *sp_rows_token_logps(rt_scope *S, gpt *m, const sp_rows *rows, rt_tensor **logits);

/* ---- distillation -----------------------------------------------------------
 * What the distillation loop (distill_train.c) adds: a teacher is a policy
 * trained on another run, so its tokenizer is checked before its tensors are
 * read. */

/* Checks that checkpoint `ref` (a file or a run directory: its newest
 * complete checkpoint) stores the tokenizer tok_spec (/data/tokenizer),
 * reading nothing else. sp_load_policy compares the tokenizer only after the
 * tensors, so a policy over another alphabet -- another vocabulary size --
 * would be refused there for the shape of its embedding table; call this
 * first to name the real reason. 0, or -1 with err naming the file and both
 * tokenizers (or why the file holds none). */
int sp_check_policy_tokenizer(const char *ref, const char *tok_spec, char *err, size_t errlen);

#endif /* RLT_SEQPOL_H */
