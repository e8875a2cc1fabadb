/*
 * pref_train.h -- the offline preference loop (pref_train.c) and the seven
 * algorithms written on it (pref_algos.c): dpo (every TRL loss type of
 * losses/dpo.h), sdpo (K negatives), adpo (fixed, previous-policy or EMA
 * anchors), simpo, orpo, kto and bco. Internal to the trainer: main.c sees
 * only the rlt_algo entries declared in algo.h.
 *
 * Records -> slots -> rows. A dataset record (data/prefs.h) offers "slots":
 * the completions of it the algorithm scores -- pairwise: chosen, rejected;
 * listwise: its completions (S-DPO: the best one and up to K worse ones);
 * unpaired: the completion (KTO: and the KL sample, another record's
 * completion under this record's prompt). A step takes batch_size records
 * from the shuffled sampler and lays their slots out slot-major, as TRL lays
 * out chosen-then-rejected: the rows of slot 0 of every record, then slot 1,
 * and so on (records with fewer slots leave gaps). One policy forward scores
 * every row; the sequence log-prob of a row is the SUM of its completion
 * tokens' log-probs (specs/pref_kd_losses.md §1.1, §6.1).
 *
 * Reference log-probs, for the algorithms that use them: the frozen
 * reference policy scores the step's rows under no-grad (train.ref_from, or
 * the init_from policy), or, with train.precompute_ref, it scores every slot
 * of the dataset once at the start, and the table of those sums is stored in
 * every checkpoint (/data/ref_logps) instead of the reference model. An
 * algorithm that shapes the reference's sums per record (DPO's ld_alpha:
 * each pair's shared length) stores the shaped values (ref_row_values), so
 * the table gives the loss what the live reference would.
 *
 * Resume is bit-exact at a fixed thread count: the policy, its optimizer,
 * the reference (or its table), the sampler's cursor and the algorithm's own
 * state are in every checkpoint, with the dataset's fingerprint; a resume
 * against a changed file is refused before anything is loaded.
 */
#ifndef RLT_PREF_TRAIN_H
#define RLT_PREF_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "adpo.h"
#include "algo.h"
#include "dpo.h"
#include "prefs.h"
#include "prefx.h"
#include "seqpol.h"

/* ------------------------------------------------------------------------ */
/* Config                                                                    */
/* ------------------------------------------------------------------------ */

enum { PF_CONSTANT = 0, PF_LINEAR = 1, PF_COSINE = 2 };
extern const char *const pf_schedule_choices[];
enum { PF_ANCHOR_FIXED = 0, PF_ANCHOR_PREV = 1, PF_ANCHOR_EMA = 2 };
extern const char *const pf_anchor_choices[];

typedef struct pf_cfg {
    run_common run;
    sp_task_cfg task;
    sp_model_cfg model;
    sp_eval_cfg eval;
    /* [data] */
    char data_path[256];
    bool skip_bad;
    /* [train] */
    int64_t steps, batch_size, warmup_steps;
    double lr, weight_decay, grad_clip;
    int schedule;
    char init_from[256];
    char ref_from[256];
    bool precompute_ref;
    int64_t precompute_batch;
    /* the algorithm's section ([dpo], [sdpo], ...) */
    char settings[192];
    int64_t negatives;       /* sdpo: K                                      */
    int anchor;              /* adpo: fixed / prev / ema                     */
    int64_t anchor_every;    /* adpo prev: steps between copies              */
    double anchor_ema;       /* adpo ema: rate per step                      */
    bool udm;                /* bco: underlying distribution matching        */
    int64_t prompt_sample_size; /* bco udm: prompts drawn per class for the classifier */
} pf_cfg;

/* The sections every preference algorithm has. */
#define PF_COMMON_FIELDS(T)                                                                               \
    RUN_COMMON_FIELDS(T), SP_TASK_FIELDS(T, task), SP_MODEL_FIELDS(T, model), SP_EVAL_FIELDS(T, eval),   \
    CFG_STRING(T, "data", "path", data_path, "",                                                          \
               "JSONL preference dataset (data/prefs.h; `rlt make-prefs` writes them)"),                 \
    CFG_BOOL(T, "data", "skip_bad", skip_bad, "false",                                                    \
             "skip malformed lines (counted and shown) instead of refusing the file"),                  \
    CFG_INT64(T, "train", "steps", steps, 1, 1e12, "200", "optimizer steps"),                            \
    CFG_INT64(T, "train", "batch_size", batch_size, 1, 100000, "16", "records per step"),               \
    CFG_DOUBLE(T, "train", "lr", lr, 0, 10, "5e-5", "peak learning rate (AdamW)"),                        \
    CFG_DOUBLE(T, "train", "weight_decay", weight_decay, 0, 10, "0", "AdamW weight decay"),             \
    CFG_INT64(T, "train", "warmup_steps", warmup_steps, 0, 1e12, "0", "linear warm-up steps"),           \
    CFG_ENUM(T, "train", "schedule", schedule, pf_schedule_choices, "linear",                            \
             "learning rate after the warm-up: constant, linear decay to 0 (TRL's default), cosine to 0"), \
    CFG_DOUBLE(T, "train", "grad_clip", grad_clip, 0, 1e9, "1.0", "clip the global grad norm (0 = measure only)"), \
    CFG_STRING(T, "train", "init_from", init_from, "",                                                   \
               "start from this checkpoint's policy (a file or a run directory, e.g. the SFT run)")

/* The reference policy (algorithms that use one). */
#define PF_REF_FIELDS(T)                                                                                  \
    CFG_STRING(T, "train", "ref_from", ref_from, "",                                                     \
               "the frozen reference policy (a file or a run directory; \"\" = the init_from policy)"),  \
    CFG_BOOL(T, "train", "precompute_ref", precompute_ref, "false",                                       \
             "score every completion of the dataset with the reference once at the start (TRL's "         \
             "precompute_ref_log_probs); checkpoints then hold the table, not the model"),               \
    CFG_INT64(T, "train", "precompute_batch", precompute_batch, 1, 100000, "64",                         \
              "records per batch when precomputing the reference log-probs")

/* ------------------------------------------------------------------------ */
/* The job                                                                   */
/* ------------------------------------------------------------------------ */

/* Every algorithm's parsed loss settings (only the running one's are used). */
typedef struct pf_losses {
    dpo_config dpo;
    dpo_sdpo_config sdpo;
    adpo_config adpo;
    simpo_config simpo;
    orpo_config orpo;
    kto_config kto;
    bco_config bco;
} pf_losses;

typedef struct pf_algo pf_algo;

typedef struct pf_job {
    const pf_algo *algo;
    pf_cfg cfg;
    pf_losses L;
    sp_task task;
    char tok_spec[SP_TOK_SPEC_MAX];
    gpt *policy;
    gpt *ref;             /* frozen reference scored each step; NULL otherwise  */
    gpt *anchor;          /* adpo prev (anchor_every > 1) / ema; NULL otherwise  */
    rt_optim *opt;
    rt_gen *init_gen;
    /* data */
    pref_dataset *data;
    size_t n_records;
    shuf_sampler *sampler;
    uint8_t *sampler_blob;       /* checkpointed cursor (packed shuf_state)     */
    size_t sampler_blob_size;
    int64_t fingerprint;         /* pref_fingerprint, checkpointed              */
    int64_t records;             /* n_records, checkpointed                     */
    /* slots */
    int64_t *slot_off;           /* [n_records + 1]: record i's slots are slot_off[i] ..  */
    int64_t max_slots;
    int64_t *slot_map;           /* sdpo: completion index of each slot; NULL otherwise */
    int64_t *kl_of;              /* kto: the record whose completion is record i's KL sample */
    /* reference */
    bool uses_ref;
    rt_tensor *ref_table;        /* precompute_ref: [slot_off[n_records]] summed ref log-probs */
    /* algorithm state */
    bco_running bco;
    /* bco udm: the prompt classifier P(desirable | prompt embedding) and its
     * value for every record's prompt, all checkpointed */
    rt_tensor *udm_coef;         /* [D] float64, D = the embedding's width        */
    double udm_intercept;
    double udm_accuracy[2];      /* training accuracy on the undesirable / desirable sample */
    rt_tensor *udm_prob;         /* [n_records] float64                           */
    /* evaluation */
    sp_eval_result first_eval, last_eval;
    bool have_first_eval;
} pf_job;

/* One step's batch, everything in the step's scope. */
typedef struct pf_batch {
    int64_t B, K, n;              /* records, slots (max over the batch), rows    */
    const int64_t *idx;           /* [B] dataset indices                          */
    const pref_record *const *recs; /* [B]                                        */
    const int64_t *row;           /* [B*K] row of slot k of record b (b*K + k), -1 = none */
    sp_rows rows;                 /* the encoded rows                             */
    rt_tensor *logits;            /* [n, P+C, V] policy forward (differentiable)   */
    rt_tensor *token_logps;       /* [n, C] policy per-token log-probs             */
    rt_tensor *logps;             /* [n] policy summed completion log-probs        */
    rt_tensor *ref_logps;         /* [n] reference sums (constant), NULL without   */
    rt_tensor *ref_token_logps;   /* [n, C] live reference only, else NULL         */
} pf_batch;

/* ------------------------------------------------------------------------ */
/* An algorithm                                                              */
/* ------------------------------------------------------------------------ */

struct pf_algo {
    const char *name;
    const cfg_schema *schema;
    unsigned kinds;            /* accepted dataset kinds: bits 1u << PREF_PAIRWISE, ... */
    /* The [<algo>] settings into L; err names the key. Also run by the
     * schema's check, so `rlt check` reports bad settings. */
    int (*parse)(const pf_cfg *c, pf_losses *L, char *err, size_t errlen);
    /* Whether this config scores reference log-probs. */
    bool (*uses_ref)(const pf_cfg *c, const pf_losses *L);
    /* Slots of record i, and the completion text of its slot k (the prompt is
     * always the record's). Called after the dataset is loaded and prepare ran. */
    int64_t (*nslots)(const pf_job *J, size_t i);
    const char *(*slot_text)(const pf_job *J, size_t i, int64_t k);
    /* Optional: per-dataset tables (sdpo's negatives, kto's KL samples) and
     * extra checkpoint state. r may be NULL (eval). */
    int (*prepare)(pf_job *J, run_ctx *r, ck_state *ck);
    /* Optional: at a fresh start, once the policy is initialised. */
    int (*start)(pf_job *J, run_ctx *r);
    /* The batch's loss (0-dim, differentiable in the policy); the metrics into
     * rec (with the "train/" prefix) when rec is not NULL. NULL on failure
     * with rt_last_error() set. */
    rt_tensor *(*loss)(pf_job *J, rt_scope *S, const pf_batch *b, mx_record *rec);
    /* Optional: after each optimizer step; step_done counts it. */
    int (*after_update)(pf_job *J, run_ctx *r, int64_t step_done);
    /* Optional: what the precomputed reference table stores for the rows of
     * b (every record complete), from the reference's per-token log-probs
     * token_logps [n, C] and their sums [n]; NULL = the sums. Must depend on
     * each record's own rows only, so a table built once equals the live
     * reference. NULL with rt_last_error() on failure. */
    rt_tensor *(*ref_row_values)(pf_job *J, rt_scope *S, const pf_batch *b, rt_tensor *token_logps,
                                 rt_tensor *sums);
    /* Optional: after a resume has loaded the checkpoint (checks the
     * algorithm's restored state). */
    int (*resumed)(pf_job *J, run_ctx *r);
};

/* The loop (pref_train.c): `rlt train` and `rlt eval` of algorithm A. */
int pf_train(const pf_algo *A, const run_args *args);
int pf_eval(const pf_algo *A, const char *ckpt_path, const char *const *sets, int nsets);
/* The checks every preference schema runs (algorithm name, sections,
 * settings, reference source). */
void pf_check_common(const pf_algo *A, const pf_cfg *c, cfg_check *ck);

/* ---- helpers for the algorithms ---- */

/* v [n, ...] (one value per row) -> [B, ...] the rows of slot k of every
 * record; every record must have slot k. */
rt_tensor *pf_slot(rt_scope *S, const pf_batch *b, const rt_tensor *v, int64_t k);
/* v [n] -> [B, K] by (record, slot); *mask [B, K] bool marks the slots that
 * exist (absent ones hold row 0's value, masked). */
rt_tensor *pf_grid(rt_scope *S, const pf_batch *b, const rt_tensor *v, rt_tensor **mask);
/* TRL's logits/<slot>: over the completion tokens of the rows of slot k, the
 * sum of the vocabulary-mean logit divided by their token count. */
double pf_mean_logit(rt_scope *S, const pf_batch *b, int64_t k);
/* A new model holding the reference policy (train.ref_from, or the
 * init_from policy), for algorithms that need it when J->ref is not kept
 * (precompute_ref). NULL after run_fail. The caller frees it. */
gpt *pf_load_reference(pf_job *J, run_ctx *r);
/* Summed completion log-probs [n] of the batch's rows under m, no-grad. */
rt_tensor *pf_score_rows(rt_scope *S, gpt *m, const pf_batch *b, rt_tensor **token_logps);
/* "train/<name>" = v into rec. */
void pf_metric(mx_record *rec, const char *name, double v);
/* A host copy of a float tensor (n values) into out; -1 on failure. */
int pf_host(const rt_tensor *t, double *out, size_t n);

#endif /* RLT_PREF_TRAIN_H */
