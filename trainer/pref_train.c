/*
 * pref_train.c -- the offline preference loop every preference algorithm
 * shares (pref_train.h; the algorithms are in pref_algos.c), top to bottom:
 *
 *   1. open the run; load the dataset (data/prefs.h) and check its kind, its
 *      characters and its lengths against the task and the model; build the
 *      policy, the optimizer, the reference (or its table) and the sampler;
 *      register all of it for checkpoints;
 *   2. refuse a resume whose checkpoint was made on another dataset (the
 *      fingerprint), resume, or at a fresh start initialise the policy from
 *      train.init_from, the reference from train.ref_from (or init_from),
 *      precompute the reference table when asked, and evaluate held-out
 *      pass@1 before training;
 *   3. each step: batch_size records from the sampler -> slot-major rows ->
 *      one policy forward (summed completion log-probs) -> reference
 *      log-probs (live forward under no-grad, or the table) -> the
 *      algorithm's loss -> backward, clip, AdamW; held-out evaluation every
 *      eval.every steps and at the end, with before -> after printed.
 */
#define _POSIX_C_SOURCE 200809L

#include "pref_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "run.h"
#include "shuffle.h"
#include "tensor.h"

const char *const pf_schedule_choices[] = {"constant", "linear", "cosine", NULL};
const char *const pf_anchor_choices[] = {"fixed", "prev", "ema", NULL};

/* ------------------------------------------------------------------------ */
/* Config checks                                                             */
/* ------------------------------------------------------------------------ */

void pf_check_common(const pf_algo *A, const pf_cfg *c, cfg_check *ck) {
    if (strcmp(c->run.algorithm, A->name) != 0) cfg_check_fail(ck, "run.algorithm", "this loop is '%s'", A->name);
    sp_check_sections(&c->task, &c->model, &c->eval, ck);
    if (!c->data_path[0])
        cfg_check_fail(ck, "data.path", "is empty: name a JSONL preference dataset (rlt make-prefs writes one)");
    pf_losses L;
    char err[1024], key[64];
    snprintf(key, sizeof key, "%s.settings", A->name);
    if (A->parse(c, &L, err, sizeof err) < 0) {
        cfg_check_fail(ck, key, "%s", err);
        return;
    }
    if (A->uses_ref(c, &L) && !c->init_from[0] && !c->ref_from[0])
        cfg_check_fail(ck, "train.ref_from", "'%s' scores reference log-probs: set train.init_from or train.ref_from",
                       A->name);
}

/* ------------------------------------------------------------------------ */
/* Helpers for the algorithms                                                */
/* ------------------------------------------------------------------------ */

void pf_metric(mx_record *rec, const char *name, double v) {
    char key[96];
    snprintf(key, sizeof key, "train/%s", name);
    mx_add(rec, key, v);
}

int pf_host(const rt_tensor *t, double *out, size_t n) {
    return t && rt_numel(t) == (int64_t)n && rt_to_data(t, RT_F64, out, n * sizeof *out) == RT_OK ? 0 : -1;
}

rt_tensor *pf_slot(rt_scope *S, const pf_batch *b, const rt_tensor *v, int64_t k) {
    int64_t *rows = malloc((size_t)b->B * sizeof *rows);
    if (!rows) {
        rt_set_error("pf_slot: out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < b->B; i++) {
        rows[i] = k < b->K ? b->row[i * b->K + k] : -1;
        if (rows[i] < 0) {
            free(rows);
            rt_set_error("record %lld of the batch has no slot %lld", (long long)i, (long long)k);
            return NULL;
        }
    }
    int64_t shape[1] = {b->B};
    rt_tensor *idx = rt_from_data(S, rows, shape, 1, RT_OPTS(RT_I64));
    free(rows);
    return rt_index_select(S, v, 0, idx);
}

rt_tensor *pf_grid(rt_scope *S, const pf_batch *b, const rt_tensor *v, rt_tensor **mask) {
    size_t n = (size_t)(b->B * b->K);
    int64_t *rows = malloc(n * sizeof *rows);
    uint8_t *present = malloc(n);
    *mask = NULL;
    if (!rows || !present) {
        free(rows);
        free(present);
        rt_set_error("pf_grid: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        present[i] = b->row[i] >= 0;
        rows[i] = b->row[i] >= 0 ? b->row[i] : 0;
    }
    int64_t flat[1] = {(int64_t)n}, grid[2] = {b->B, b->K};
    rt_tensor *idx = rt_from_data(S, rows, flat, 1, RT_OPTS(RT_I64));
    *mask = rt_from_data(S, present, grid, 2, RT_OPTS(RT_BOOL));
    free(rows);
    free(present);
    return rt_reshape(S, rt_index_select(S, v, 0, idx), grid, 2); /* [B, K] */
}

double pf_mean_logit(rt_scope *S, const pf_batch *b, int64_t k) {
    int g = rt_no_grad_begin();
    rt_tensor *c_logits = sp_completion_logits(S, b->logits, b->rows.P, b->rows.C);   /* [n, C, V] */
    rt_tensor *m = rt_where_scalar(S, b->rows.c_mask, rt_mean(S, c_logits, 2, 0), 0.0); /* [n, C]    */
    rt_tensor *sums = pf_slot(S, b, rt_sum(S, m, 1, 0), k);                            /* [B]       */
    rt_tensor *lens = pf_slot(S, b, b->rows.lengths, k);                               /* [B]       */
    double v = rt_item(rt_sum(S, sums, RT_DIM_ALL, 0)) / rt_item(rt_sum(S, lens, RT_DIM_ALL, 0));
    rt_grad_mode_restore(g);
    return v;
}

rt_tensor *pf_score_rows(rt_scope *S, gpt *m, const pf_batch *b, rt_tensor **token_logps) {
    int g = rt_no_grad_begin();
    rt_tensor *tok = sp_rows_token_logps(S, m, &b->rows, NULL);   /* [n, C] */
    rt_tensor *sums = dpo_sequence_logps(S, tok, b->rows.c_mask); /* [n]    */
    rt_grad_mode_restore(g);
    if (token_logps) *token_logps = tok;
    return sums;
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                      */
/* ------------------------------------------------------------------------ */

/* Host buffers of one batch of rows (capacity for `records` records). */
typedef struct pf_work {
    int64_t *idx;
    const pref_record **recs;
    int64_t *row;           /* [records * max_slots]                       */
    const char **prompts;   /* [records * max_slots] row texts (borrowed)  */
    const char **texts;
    int64_t *table_pos;     /* [records * max_slots] slot ids of the rows  */
} pf_work;

static void pf_work_free(pf_work *w) {
    free(w->idx);
    free(w->recs);
    free(w->row);
    free(w->prompts);
    free(w->texts);
    free(w->table_pos);
    memset(w, 0, sizeof *w);
}

static int pf_work_alloc(pf_work *w, int64_t records, int64_t max_slots) {
    size_t cap = (size_t)(records * max_slots);
    memset(w, 0, sizeof *w);
    w->idx = malloc((size_t)records * sizeof *w->idx);
    w->recs = malloc((size_t)records * sizeof *w->recs);
    w->row = malloc(cap * sizeof *w->row);
    w->prompts = malloc(cap * sizeof *w->prompts);
    w->texts = malloc(cap * sizeof *w->texts);
    w->table_pos = malloc(cap * sizeof *w->table_pos);
    if (w->idx && w->recs && w->row && w->prompts && w->texts && w->table_pos) return 0;
    pf_work_free(w);
    return -1;
}

/* Lays out the slots of records w->idx[0..B) slot-major into w; returns the
 * number of rows and sets *K (the most slots of a record in the batch). */
static int64_t pf_layout(const pf_job *J, pf_work *w, int64_t B, int64_t *K) {
    int64_t k_max = 0, n = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t ns = J->slot_off[w->idx[b] + 1] - J->slot_off[w->idx[b]];
        k_max = ns > k_max ? ns : k_max;
    }
    for (int64_t k = 0; k < k_max; k++)
        for (int64_t b = 0; b < B; b++) {
            size_t i = (size_t)w->idx[b];
            int64_t ns = J->slot_off[i + 1] - J->slot_off[i];
            if (k >= ns) {
                w->row[b * k_max + k] = -1;
                continue;
            }
            w->row[b * k_max + k] = n;
            w->prompts[n] = pref_get(J->data, i)->prompt;
            w->texts[n] = J->algo->slot_text(J, i, k);
            w->table_pos[n] = J->slot_off[i] + k;
            n++;
        }
    *K = k_max;
    return n;
}

/* ------------------------------------------------------------------------ */
/* The job                                                                   */
/* ------------------------------------------------------------------------ */

static void pf_job_free(pf_job *J) {
    rt_optim_free(J->opt);
    gpt_free(J->policy);
    gpt_free(J->ref);
    gpt_free(J->anchor);
    rt_gen_free(J->init_gen);
    rt_free(J->ref_table);
    rt_free(J->udm_coef);
    rt_free(J->udm_prob);
    shuf_sampler_free(J->sampler);
    free(J->sampler_blob);
    free(J->slot_off);
    free(J->slot_map);
    free(J->kl_of);
    pref_free(J->data);
    sp_task_close(&J->task);
}

/* The dataset: load, kind, skipped lines, slots, and a check that every row
 * encodes with the task's tokenizer and that the longest prompt plus the
 * longest completion fit the model's context (prompts are left-padded and
 * completions right-padded, so a batch may pair the two). */
static int pf_load_data(pf_job *J, run_ctx *r, ck_state *ck) {
    const pf_algo *A = J->algo;
    const pf_cfg *c = &J->cfg;
    char err[2048];
    pref_options po = pref_options_default();
    po.skip_bad = c->skip_bad;
    if (pref_load(c->data_path, &po, &J->data, err, sizeof err) != PREF_OK)
        return run_fail(r, RUN_EXIT_USAGE, "data.path: %s", err);
    pref_kind kind = pref_dataset_kind(J->data);
    if (!(A->kinds & (1u << kind))) {
        char accepted[128] = "";
        for (int k = PREF_PAIRWISE; k <= PREF_UNPAIRED; k++)
            if (A->kinds & (1u << k))
                snprintf(accepted + strlen(accepted), sizeof accepted - strlen(accepted), "%s%s",
                         accepted[0] ? " or " : "", pref_kind_name((pref_kind)k));
        return run_fail(r, RUN_EXIT_USAGE,
                        "data.path: %s holds %s records; '%s' trains on %s data (rlt make-prefs --kind)",
                        c->data_path, pref_kind_name(kind), A->name, accepted);
    }
    pref_stats st = pref_dataset_stats(J->data);
    if (st.skipped > 0) {
        run_warn(r, "data.path: %lld malformed line(s) skipped (data.skip_bad):", (long long)st.skipped);
        for (size_t i = 0; pref_skip_reason(J->data, i); i++) run_warn(r, "  %s", pref_skip_reason(J->data, i));
    }
    J->n_records = pref_count(J->data);
    J->records = (int64_t)J->n_records;
    uint64_t fp = pref_fingerprint(J->data);
    memcpy(&J->fingerprint, &fp, sizeof fp);
    if (A->prepare && A->prepare(J, r, ck) < 0) return -1;

    J->slot_off = malloc((J->n_records + 1) * sizeof *J->slot_off);
    if (!J->slot_off) return run_fail(r, RUN_EXIT_FAIL, "out of memory");
    J->slot_off[0] = 0;
    J->max_slots = 0;
    for (size_t i = 0; i < J->n_records; i++) {
        int64_t ns = A->nslots(J, i);
        J->slot_off[i + 1] = J->slot_off[i] + ns;
        J->max_slots = ns > J->max_slots ? ns : J->max_slots;
    }

    /* Every record, one at a time, so an error names its line. */
    rt_scope *S = rt_scope_new();
    pf_work w;
    if (!S || pf_work_alloc(&w, 1, J->max_slots) < 0) {
        rt_scope_free(S);
        return run_fail(r, RUN_EXIT_FAIL, "out of memory");
    }
    int rc = 0;
    int64_t max_p = 0, max_c = 0, line_p = 0, line_c = 0;
    for (size_t i = 0; i < J->n_records && rc == 0; i++, rt_scope_reset(S)) {
        w.idx[0] = (int64_t)i;
        int64_t K, n = pf_layout(J, &w, 1, &K);
        sp_rows rows;
        const pref_record *rec = pref_get(J->data, i);
        if (sp_encode_rows(S, &J->task, w.prompts, w.texts, n, &rows, err, sizeof err) < 0) {
            rc = run_fail(r, RUN_EXIT_USAGE, "data.path: %s:%lld: %s (task '%s')", c->data_path, (long long)rec->line,
                          err, c->task.name);
            break;
        }
        if (rows.P > max_p) max_p = rows.P, line_p = rec->line;
        if (rows.C > max_c) max_c = rows.C, line_c = rec->line;
    }
    if (rc == 0 && max_p + max_c > c->model.context)
        rc = run_fail(r, RUN_EXIT_USAGE,
                      "data.path: %s: the longest prompt (line %lld, %lld tokens) plus the longest completion (line "
                      "%lld, %lld tokens) take %lld tokens, more than model.context (%lld)",
                      c->data_path, (long long)line_p, (long long)max_p, (long long)line_c, (long long)max_c,
                      (long long)(max_p + max_c), (long long)c->model.context);
    pf_work_free(&w);
    rt_scope_free(S);
    return rc;
}

static int pf_before_save(run_ctx *r, void *user) {
    pf_job *J = user;
    char err[512];
    shuf_state st;
    if (shuf_get_state(J->sampler, &st, err, sizeof err) < 0 ||
        shuf_state_pack(&st, J->sampler_blob, J->sampler_blob_size, err, sizeof err) < 0) {
        shuf_state_free(&st);
        return run_fail(r, RUN_EXIT_FAIL, "data sampler: %s", err);
    }
    shuf_state_free(&st);
    return 0;
}

static int pf_after_load(run_ctx *r, void *user) {
    pf_job *J = user;
    char err[512];
    shuf_state st;
    if (shuf_state_unpack(J->sampler_blob, J->sampler_blob_size, &st, err, sizeof err) < 0 ||
        shuf_set_state(J->sampler, &st, err, sizeof err) < 0) {
        shuf_state_free(&st);
        return run_fail(r, RUN_EXIT_USAGE, "checkpoint data sampler: %s", err);
    }
    shuf_state_free(&st);
    return 0;
}

/* Task, policy, optimizer; with_data: the dataset, the reference and the
 * sampler too. Registers the checkpoint state in ck (when not NULL). r may be
 * NULL (eval): errors are then printed here. */
static int pf_job_build(pf_job *J, run_ctx *r, ck_state *ck, bool with_data) {
    const pf_algo *A = J->algo;
    pf_cfg *c = &J->cfg;
    char err[2048];
    if (A->parse(c, &J->L, err, sizeof err) < 0) return sp_fail(r, RUN_EXIT_USAGE, "%s.settings: %s", A->name, err);
    J->uses_ref = A->uses_ref(c, &J->L);
    if (sp_task_open(&J->task, &c->task, err, sizeof err) < 0) return sp_fail(r, RUN_EXIT_USAGE, "%s", err);
    int64_t need = sp_max_prompt_tokens(&J->task) + sp_eval_max_new(&c->eval, &J->task);
    if (need > c->model.context)
        return sp_fail(r, RUN_EXIT_USAGE,
                       "model.context: %lld is too small: the longest prompt of task '%s' plus the evaluation's "
                       "completion budget is %lld tokens",
                       (long long)c->model.context, c->task.name, (long long)need);
    J->init_gen = rt_gen_new((uint64_t)c->run.seed);
    if (!J->init_gen || sp_model_new(&c->model, &J->task, J->init_gen, &J->policy, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_USAGE, "%s", J->init_gen ? err : rt_last_error());
    if (sp_tok_spec(&J->task, J->tok_spec, sizeof J->tok_spec, err, sizeof err) < 0)
        return sp_fail(r, RUN_EXIT_FAIL, "%s", err);
    nn_params *P = gpt_params(J->policy);
    rt_optim_opts o = rt_optim_defaults(RT_ADAMW);
    o.lr = c->lr;
    o.weight_decay = c->weight_decay;
    J->opt = rt_optim_new(RT_ADAMW, nn_params_tensors(P), nn_params_names(P), nn_params_count(P), &o);
    if (!J->opt) return sp_fail(r, RUN_EXIT_FAIL, "optimizer: %s", rt_last_error());
    if (ck && sp_ck_add_policy(ck, "policy", J->policy, J->tok_spec) < 0)
        return sp_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    if (!with_data) return 0;

    if (pf_load_data(J, r, ck) < 0) return -1;
    shuf_config sc = pref_shuffle_config(J->data, (uint64_t)c->run.seed ^ 0x7072656664617461ULL); /* "prefdata" */
    shuf_state st;
    if (shuf_sampler_create(&sc, &J->sampler, err, sizeof err) < 0 ||
        shuf_get_state(J->sampler, &st, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "data sampler: %s", err);
    J->sampler_blob_size = shuf_state_packed_size(&st);
    shuf_state_free(&st);
    J->sampler_blob = calloc(1, J->sampler_blob_size);
    if (!J->sampler_blob) return run_fail(r, RUN_EXIT_FAIL, "out of memory");

    if (J->uses_ref && c->precompute_ref) {
        int64_t shape[1] = {J->slot_off[J->n_records]};
        J->ref_table = rt_zeros(NULL, shape, 1, RT_OPTS(RT_F32));
        if (!J->ref_table) return run_fail(r, RUN_EXIT_FAIL, "%s", rt_last_error());
    } else if (J->uses_ref) {
        if (sp_model_new(&c->model, &J->task, J->init_gen, &J->ref, err, sizeof err) < 0)
            return run_fail(r, RUN_EXIT_USAGE, "%s", err);
        nn_params_set_requires_grad(gpt_params(J->ref), 0);
    }
    static const char *const table_name[1] = {"ref_logps"};
    if (ck_add_optim(ck, "policy", J->opt) < 0 ||
        ck_add_blob(ck, "data/sampler", J->sampler_blob, J->sampler_blob_size) < 0 ||
        ck_add_i64(ck, "data/fingerprint", &J->fingerprint) < 0 || ck_add_i64(ck, "data/records", &J->records) < 0 ||
        (J->ref && sp_ck_add_policy(ck, "ref", J->ref, NULL) < 0) ||
        (J->ref_table && ck_add_tensors(ck, "data", table_name, &J->ref_table, 1) < 0))
        return run_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    return 0;
}

/* Before run_resume: the checkpoint it will load must have been made on this
 * dataset (its sampler and reference table index these records). A
 * checkpoint that cannot be read here is left for run_resume to report. */
static int pf_check_resume_data(pf_job *J, run_ctx *r) {
    char path[CK_PATH_MAX] = "", err[2048];
    if (r->args.resume == RUN_RESUME_PATH) {
        snprintf(path, sizeof path, "%s", r->args.resume_path);
    } else if (r->args.resume == RUN_RESUME_AUTO) {
        ck_scan scan;
        if (ck_find_latest(r->ckpt_dir, &scan, err, sizeof err) < 0) return 0;
        snprintf(path, sizeof path, "%s", scan.path);
    } else {
        return 0;
    }
    int64_t fp = 0, records = 0;
    ck_state *ck = ck_state_new();
    int ok = ck && ck_set_algorithm(ck, J->algo->name) == 0 && ck_add_i64(ck, "data/fingerprint", &fp) == 0 &&
             ck_add_i64(ck, "data/records", &records) == 0 && ck_load(ck, path, NULL, err, sizeof err) == 0;
    ck_state_free(ck);
    if (!ok || fp == J->fingerprint) return 0;
    return run_fail(r, RUN_EXIT_USAGE,
                    "data.path: %s is not the dataset %s was trained on: the checkpoint's has %lld records "
                    "(fingerprint %016llx), the file now has %lld (fingerprint %016llx); resume needs the same data "
                    "(restore the file, or start a new run)",
                    J->cfg.data_path, path, (long long)records, (unsigned long long)fp, (long long)J->records,
                    (unsigned long long)J->fingerprint);
}

gpt *pf_load_reference(pf_job *J, run_ctx *r) {
    const pf_cfg *c = &J->cfg;
    const char *src = c->ref_from[0] ? c->ref_from : c->init_from;
    char err[4096];
    gpt *ref = NULL;
    rt_gen *g0 = rt_gen_new(0); /* the weights are loaded; the init draw does not matter */
    if (!g0) {
        run_fail(r, RUN_EXIT_FAIL, "reference policy: %s", rt_last_error());
        return NULL;
    }
    if (sp_model_new(&c->model, &J->task, g0, &ref, err, sizeof err) < 0 ||
        sp_load_policy(ref, &c->model, J->tok_spec, src, "policy", err, sizeof err) < 0) {
        run_fail(r, RUN_EXIT_USAGE, "train.%s: %s", c->ref_from[0] ? "ref_from" : "init_from", err);
        gpt_free(ref);
        ref = NULL;
    }
    rt_gen_free(g0);
    if (ref) nn_params_set_requires_grad(gpt_params(ref), 0);
    return ref;
}

/* train.precompute_ref: every slot of the dataset scored once by the
 * reference policy loaded from src, into J->ref_table (the summed log-probs,
 * or what the algorithm's ref_row_values makes of them). */
static int pf_precompute(pf_job *J, run_ctx *r, const char *src) {
    const pf_cfg *c = &J->cfg;
    char err[4096];
    double t0 = mx_wall_time();
    gpt *ref = NULL;
    rt_scope *S = rt_scope_new();
    pf_work w;
    memset(&w, 0, sizeof w);
    int rc = -1;
    if (!S || pf_work_alloc(&w, c->precompute_batch, J->max_slots) < 0) {
        run_fail(r, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    if (!(ref = pf_load_reference(J, r))) goto out;
    float *table = rt_data_ptr(J->ref_table);
    for (size_t start = 0; start < J->n_records; start += (size_t)c->precompute_batch, rt_scope_reset(S)) {
        int64_t B = (int64_t)(J->n_records - start) < c->precompute_batch ? (int64_t)(J->n_records - start)
                                                                          : c->precompute_batch;
        for (int64_t b = 0; b < B; b++) {
            w.idx[b] = (int64_t)start + b;
            w.recs[b] = pref_get(J->data, start + (size_t)b);
        }
        pf_batch pb;
        memset(&pb, 0, sizeof pb);
        pb.B = B;
        pb.idx = w.idx;
        pb.recs = w.recs;
        pb.n = pf_layout(J, &w, B, &pb.K);
        pb.row = w.row;
        int64_t n = pb.n;
        if (sp_encode_rows(S, &J->task, w.prompts, w.texts, n, &pb.rows, err, sizeof err) < 0) {
            run_fail(r, RUN_EXIT_FAIL, "precomputing reference log-probs: %s", err);
            goto out;
        }
        rt_tensor *tok = NULL;
        rt_tensor *sums = pf_score_rows(S, ref, &pb, &tok);
        if (J->algo->ref_row_values) {
            int g = rt_no_grad_begin();
            sums = J->algo->ref_row_values(J, S, &pb, tok, sums);
            rt_grad_mode_restore(g);
        }
        double *host = malloc((size_t)n * sizeof *host);
        if (!host || pf_host(sums, host, (size_t)n) < 0) {
            free(host);
            run_fail(r, RUN_EXIT_FAIL, "precomputing reference log-probs: %s", rt_last_error());
            goto out;
        }
        for (int64_t i = 0; i < n; i++) table[w.table_pos[i]] = (float)host[i];
        free(host);
    }
    run_printf(r, "reference log-probs precomputed from %s: %lld completions in %.1f s", src,
               (long long)J->slot_off[J->n_records], mx_wall_time() - t0);
    rc = 0;
out:
    pf_work_free(&w);
    rt_scope_free(S);
    gpt_free(ref);
    return rc;
}

static double pf_lr_at(const pf_cfg *c, int64_t step) {
    if (c->warmup_steps > 0 && step < c->warmup_steps) return c->lr * (double)(step + 1) / (double)c->warmup_steps;
    int64_t span = c->steps - c->warmup_steps;
    double p = span > 0 ? (double)(step - c->warmup_steps) / (double)span : 1.0;
    if (c->schedule == PF_LINEAR) return c->lr * (1.0 - p);
    if (c->schedule == PF_COSINE) return c->lr * 0.5 * (1.0 + cos(3.14159265358979323846 * p));
    return c->lr;
}

/* ------------------------------------------------------------------------ */
/* One step                                                                  */
/* ------------------------------------------------------------------------ */

static int pf_step(pf_job *J, run_ctx *r, rt_scope *S, pf_work *w, mx_record *rec) {
    const pf_cfg *c = &J->cfg;
    char err[2048];
    pf_batch b;
    memset(&b, 0, sizeof b);
    b.B = c->batch_size;
    if (pref_next_batch(J->data, J->sampler, b.B, w->idx, w->recs, err, sizeof err) != PREF_OK)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld data: %s", (long long)r->step, err);
    b.idx = w->idx;
    b.recs = w->recs;
    b.n = pf_layout(J, w, b.B, &b.K);
    b.row = w->row;
    if (sp_encode_rows(S, &J->task, w->prompts, w->texts, b.n, &b.rows, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld: %s", (long long)r->step, err);

    /* policy: summed completion log-probs of every row, one forward */
    rt_optim_set_lr(J->opt, pf_lr_at(c, r->step));
    b.token_logps = sp_rows_token_logps(S, J->policy, &b.rows, &b.logits);   /* [n, C] */
    b.logps = dpo_sequence_logps(S, b.token_logps, b.rows.c_mask);           /* [n]    */
    if (!b.logps) return run_fail(r, RUN_EXIT_FAIL, "step %lld forward: %s", (long long)r->step, rt_last_error());

    /* reference: the table, or the frozen policy under no-grad */
    if (J->ref_table) {
        int64_t shape[1] = {b.n};
        b.ref_logps = rt_index_select(S, J->ref_table, 0, rt_from_data(S, w->table_pos, shape, 1, RT_OPTS(RT_I64)));
    } else if (J->ref) {
        b.ref_logps = pf_score_rows(S, J->ref, &b, &b.ref_token_logps);
    }
    if (J->uses_ref && !b.ref_logps)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld reference: %s", (long long)r->step, rt_last_error());

    rt_tensor *loss = J->algo->loss(J, S, &b, rec);
    if (!loss) return run_fail(r, RUN_EXIT_FAIL, "step %lld loss: %s", (long long)r->step, rt_last_error());
    nn_params *Pp = gpt_params(J->policy);
    double grad_norm = NAN;
    if (rt_optim_zero_grad(J->opt) < 0 || rt_backward(loss) < 0 ||
        rt_clip_grad_norm(nn_params_tensors(Pp), nn_params_count(Pp), c->grad_clip, &grad_norm) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld backward: %s", (long long)r->step, rt_last_error());
    double loss_v = rt_item(loss);
    int ok = run_check_finite(r, loss_v, grad_norm);
    if (ok < 0) return -1;
    if (ok > 0 && rt_optim_step(J->opt) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld optimizer: %s", (long long)r->step, rt_last_error());
    if (J->algo->after_update && J->algo->after_update(J, r, r->step + 1) < 0) return -1;

    if (rec) {
        mx_add(rec, "train/loss", loss_v);
        mx_add(rec, "train/grad_norm", grad_norm);
        mx_add(rec, "train/lr", rt_optim_get_lr(J->opt));
        int64_t share = shuf_share_size(J->sampler);
        mx_add(rec, "train/epoch", (double)shuf_epoch(J->sampler) + (double)shuf_cursor(J->sampler) / (double)share);
        mx_add(rec, "train/tokens", rt_item(rt_sum(S, b.rows.mask, RT_DIM_ALL, 0))); /* this step's */
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* train / eval                                                              */
/* ------------------------------------------------------------------------ */

static const mx_column pf_columns[] = {
    {"train/loss", "loss", MX_NUM, NULL},
    {"train/rewards/accuracies", "acc", MX_PCT, NULL},
    {"train/rewards/margins", "margin", MX_NUM, NULL},
    {"train/logps/chosen", "logp_w", MX_NUM, NULL},
    {"eval/pass@1", "pass@1", MX_PCT, NULL},
    {"eval/greedy", "greedy", MX_PCT, NULL},
    {"train/grad_norm", "gnorm", MX_NUM, NULL},
    {"perf/ms_per_step", "ms", MX_MS, NULL},
};

static int pf_eval_into(pf_job *J, run_ctx *r, mx_record *rec, sp_eval_result *e) {
    return sp_eval_run(r, J->policy, &J->task, &J->cfg.eval, e, rec);
}

/* A fresh start: the policy from init_from, the reference from ref_from (or
 * init_from) or its table, the algorithm's start, and the first evaluation. */
static int pf_fresh_start(pf_job *J, run_ctx *r) {
    const pf_cfg *c = &J->cfg;
    char err[4096];
    if (c->init_from[0]) {
        if (sp_load_policy(J->policy, &c->model, J->tok_spec, c->init_from, "policy", err, sizeof err) < 0)
            return run_fail(r, RUN_EXIT_USAGE, "train.init_from: %s", err);
        run_printf(r, "policy initialised from %s", c->init_from);
    }
    const char *ref_src = c->ref_from[0] ? c->ref_from : c->init_from;
    if (J->ref) {
        if (sp_load_policy(J->ref, &c->model, J->tok_spec, ref_src, "policy", err, sizeof err) < 0)
            return run_fail(r, RUN_EXIT_USAGE, "train.%s: %s", c->ref_from[0] ? "ref_from" : "init_from", err);
        run_printf(r, "reference policy from %s (scored every step)", ref_src);
    }
    if (J->ref_table && pf_precompute(J, r, ref_src) < 0) return -1;
    if (J->algo->start && J->algo->start(J, r) < 0) return -1;
    if (pf_eval_into(J, r, NULL, &J->first_eval) < 0) return -1;
    J->have_first_eval = true;
    sp_eval_report(r, &J->first_eval, NULL);
    return 0;
}

int pf_train(const pf_algo *A, const run_args *args) {
    pf_job J;
    memset(&J, 0, sizeof J);
    J.algo = A;
    run_ctx R;
    rt_scope *S = NULL;
    pf_work w;
    memset(&w, 0, sizeof w);
    if (run_open(&R, args, A->schema, &J.cfg, &J.cfg.run) < 0) {
        int code = R.exit_code;
        run_close(&R);
        return code;
    }
    R.columns = pf_columns;
    R.ncolumns = sizeof pf_columns / sizeof pf_columns[0];
    R.samples_per_step = J.cfg.batch_size;
    R.before_save = pf_before_save;
    R.after_load = pf_after_load;
    R.hook_user = &J;
    if (ck_set_algorithm(R.ck, A->name) < 0 || pf_job_build(&J, &R, R.ck, true) < 0) goto out;
    R.total_steps = J.cfg.steps;
    pref_stats st = pref_dataset_stats(J.data);
    run_printf(&R, "task %s (%s), vocabulary %lld, policy %lld parameters", J.cfg.task.name, J.task.plugin->path,
               (long long)tok_vocab_size(J.task.tok), (long long)nn_params_numel(gpt_params(J.policy)));
    run_printf(&R, "data %s: %lld %s records, %lld completions (fingerprint %016llx); %lld steps of %lld records",
               J.cfg.data_path, (long long)st.records, pref_kind_name(pref_dataset_kind(J.data)),
               (long long)st.completions, (unsigned long long)J.fingerprint, (long long)J.cfg.steps,
               (long long)J.cfg.batch_size);
    run_printf(&R, "reference log-probs: %s", !J.uses_ref ? "none (reference-free)"
                                              : J.ref_table ? "precomputed once, stored in checkpoints"
                                                            : "the frozen reference policy, every step");
    if (pf_check_resume_data(&J, &R) < 0 || run_resume(&R) < 0) goto out;
    if (R.start_step == 0) {
        if (pf_fresh_start(&J, &R) < 0) goto out;
    } else if (A->resumed && A->resumed(&J, &R) < 0) {
        goto out;
    }

    S = rt_scope_new();
    if (!S || pf_work_alloc(&w, J.cfg.batch_size, J.max_slots) < 0) {
        run_fail(&R, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    double t0 = mx_wall_time();
    for (; R.step < R.total_steps && !run_stop_requested(&R); rt_scope_reset(S)) {
        bool eval_due = R.step + 1 == R.total_steps || (J.cfg.eval.every > 0 && (R.step + 1) % J.cfg.eval.every == 0);
        mx_record *rec = run_log_due(&R) || eval_due ? run_record(&R) : NULL;
        if (pf_step(&J, &R, S, &w, rec) < 0) break;
        if (eval_due && pf_eval_into(&J, &R, rec, &J.last_eval) < 0) break;
        if (rec) run_log(&R);
        R.step++;
        if (run_after_step(&R) < 0) break;
    }
    if (R.step == R.total_steps && R.step > R.start_step && R.exit_code == RUN_EXIT_OK) {
        sp_eval_report(&R, J.have_first_eval ? &J.first_eval : NULL, &J.last_eval);
        run_printf(&R, "wall time this process: %.1f s", mx_wall_time() - t0);
    }
out:
    pf_work_free(&w);
    rt_scope_free(S);
    int code = run_close(&R);
    pf_job_free(&J);
    return code;
}

int pf_eval(const pf_algo *A, const char *ckpt_path, const char *const *sets, int nsets) {
    pf_job J;
    memset(&J, 0, sizeof J);
    J.algo = A;
    int64_t step = 0;
    if (run_eval_config(A->schema, &J.cfg, &J.cfg.run, ckpt_path, sets, nsets, &step) != 0) return RUN_EXIT_USAGE;
    ck_state *ck = ck_state_new();
    int code = RUN_EXIT_FAIL;
    if (ck && ck_set_algorithm(ck, A->name) == 0 && pf_job_build(&J, NULL, ck, false) == 0)
        code = sp_eval_checkpoint(ck, ckpt_path, step, J.policy, &J.task, &J.cfg.eval);
    ck_state_free(ck);
    pf_job_free(&J);
    return code;
}
