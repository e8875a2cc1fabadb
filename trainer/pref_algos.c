/*
 * pref_algos.c -- the preference algorithms on the shared offline loop
 * (pref_train.h explains records, slots and rows). Each section reads top to
 * bottom: its recipe keys, its settings, which completions of a record it
 * scores (its slots), and its loss with the metrics TRL logs for it.
 *
 *   dpo    pairwise  losses/dpo.h, every TRL loss type (sigmoid, hinge, ipo, ...,
 *                    several combined with loss_weights), WPO weights, LD-DPO
 *   sdpo   listwise  S-DPO: the best completion against up to K worse ones
 *   adpo   both      ADPO: anchored cross-entropy to a target q over the candidates;
 *                    anchor fixed (the reference), prev (the policy, copied every
 *                    anchor_every steps) or ema
 *   simpo  pairwise  SimPO (reference-free, length-normalised)
 *   orpo   pairwise  ORPO (reference-free; NLL over prompt + chosen)
 *   kto    unpaired  KTO with TRL's KL sample (the batch-chunk rotation)
 *   bco    unpaired  BCO with its running mean in the checkpoint; UDM (bco.udm): the
 *                    undesirable losses weighted by the density ratio of a logistic-
 *                    regression prompt classifier (trainer/logreg.h), fitted once on the
 *                    reference policy's prompt embeddings and kept in the checkpoint
 *
 * Metrics: the loss families' own tables (TRL's names, "train/" prefixed),
 * plus logits/chosen and logits/rejected, and bco.udm's udm/density_ratio.
 * dpo with ld_alpha and train.precompute_ref stores the LD-weighted
 * reference sums in the table (dpo_ref_row_values).
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "logreg.h"
#include "pref_train.h"
#include "shuffle.h"

/* Writes a loss family's metric table into rec, except the loss (the loop
 * logs it) and the batch count. */
static void pf_dpo_metrics(mx_record *rec, const dpo_metric_desc *t, size_t n, const void *m) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, "loss") != 0 && strcmp(t[i].name, "count") != 0)
            pf_metric(rec, t[i].name, dpo_metric_value(m, &t[i]));
}

static void pf_prefx_metrics(mx_record *rec, const prefx_metric *t, size_t n, const void *m) {
    for (size_t i = 0; i < n; i++) {
        double v = prefx_metric_value(m, &t[i]);
        if (strcmp(t[i].name, "loss") != 0 && !isnan(v)) pf_metric(rec, t[i].name, v);
    }
}

/* Applies the settings string to cfg through a family's setter
 * (sp_apply_settings: "loss_type=sigmoid,sft loss_weights=1,0.5" and
 * "beta=0.1,label_smoothing=0.1" both read as meant), then its check. */
static int pf_apply(const char *text, void *cfg, int (*set)(void *, const char *, const char *),
                    int (*check)(const void *), char *err, size_t errlen) {
    if (sp_apply_settings(text, cfg, set, err, errlen) < 0) return -1;
    if (check && check(cfg) != RT_OK) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    return 0;
}

static bool pf_always_ref(const pf_cfg *c, const pf_losses *L) {
    (void)c, (void)L;
    return true;
}

static bool pf_never_ref(const pf_cfg *c, const pf_losses *L) {
    (void)c, (void)L;
    return false;
}

/* Pairwise records: slot 0 chosen, slot 1 rejected. */
static int64_t pf_pair_slots(const pf_job *J, size_t i) {
    (void)J, (void)i;
    return 2;
}

static const char *pf_pair_text(const pf_job *J, size_t i, int64_t k) {
    const pref_record *r = pref_get(J->data, i);
    return k == 0 ? r->chosen : r->rejected;
}

/* logits/chosen and logits/rejected (slots 0 and 1). */
static void pf_pair_logit_metrics(rt_scope *S, const pf_batch *b, mx_record *rec) {
    pf_metric(rec, "logits/chosen", pf_mean_logit(S, b, 0));
    pf_metric(rec, "logits/rejected", pf_mean_logit(S, b, 1));
}

/* logits/chosen and logits/rejected of unpaired data (kto, bco): over the
 * completion tokens of the desirable (undesirable) records -- slot 0 -- the
 * mean logit over the vocabulary, averaged per token, as the pairwise loops
 * log them. (TRL's KTO and BCO sum the logits of every position of the
 * padded rows and divide by the record count, a number the batch's padding
 * changes.) */
static void pf_unpaired_logit_metrics(rt_scope *S, const pf_batch *b, mx_record *rec) {
    int g = rt_no_grad_begin();
    rt_tensor *c_logits = sp_completion_logits(S, b->logits, b->rows.P, b->rows.C);   /* [n, C, V] */
    rt_tensor *m = rt_where_scalar(S, b->rows.c_mask, rt_mean(S, c_logits, 2, 0), 0.0); /* [n, C]    */
    rt_tensor *sums = pf_slot(S, b, rt_sum(S, m, 1, 0), 0);                            /* [B]       */
    rt_tensor *lens = pf_slot(S, b, b->rows.lengths, 0);                               /* [B]       */
    rt_grad_mode_restore(g);
    double *hs = malloc(2 * (size_t)b->B * sizeof *hs);
    if (hs && pf_host(sums, hs, (size_t)b->B) == 0 && pf_host(lens, hs + b->B, (size_t)b->B) == 0) {
        double s[2] = {0, 0}, t[2] = {0, 0};
        for (int64_t i = 0; i < b->B; i++) {
            int k = b->recs[i]->label != 0;
            s[k] += hs[i];
            t[k] += hs[b->B + i];
        }
        if (t[1] > 0) pf_metric(rec, "logits/chosen", s[1] / t[1]);
        if (t[0] > 0) pf_metric(rec, "logits/rejected", s[0] / t[0]);
    }
    free(hs);
}

/* ======================================================================== */
/* dpo                                                                       */
/* ======================================================================== */

#define dpo_SUMMARY "DPO with every TRL loss type (sigmoid, ipo, hinge, robust, apo, ..., combined) on pairwise data"
extern const pf_algo pf_dpo;

static void dpo_check(const void *c, cfg_check *ck) { pf_check_common(&pf_dpo, c, ck); }

static const cfg_field dpo_fields[] = {
    PF_COMMON_FIELDS(pf_cfg),
    PF_REF_FIELDS(pf_cfg),
    CFG_STRING(pf_cfg, "dpo", "settings", settings, "loss_type=sigmoid",
               "DPO settings 'name=value ...' (rlt loss --help dpo lists them; TRL DPOConfig defaults)"),
};
static const cfg_schema dpo_schema = CFG_SCHEMA("dpo", pf_cfg, dpo_fields, dpo_check);

static int dpo_set(void *c, const char *n, const char *v) { return dpo_config_set(c, n, v); }
static int dpo_check_cfg(const void *c) { return dpo_config_check(c); }

static int dpo_parse(const pf_cfg *c, pf_losses *L, char *err, size_t errlen) {
    L->dpo = dpo_config_default();
    return pf_apply(c->settings, &L->dpo, dpo_set, dpo_check_cfg, err, errlen);
}

/* The precomputed table holds what the live reference gives the loss: with
 * ld_alpha, each completion's LD-weighted sum (TRL HEAD applies ld_alpha when
 * it precomputes). A pair's shared length is fixed by its own two
 * completions -- rows are never truncated (the loop refuses data longer than
 * model.context) and dpo reads only pairwise records -- so the weighting is
 * a constant of the record and one table serves every step. */
static rt_tensor *dpo_ref_row_values(pf_job *J, rt_scope *S, const pf_batch *b, rt_tensor *token_logps,
                                     rt_tensor *sums) {
    if (J->L.dpo.ld_alpha == 1.0) return sums;
    rt_tensor *ld[2] = {NULL, NULL}; /* [B] chosen, [B] rejected */
    if (dpo_ld_logps(S, pf_slot(S, b, token_logps, 0), pf_slot(S, b, b->rows.c_mask, 0), pf_slot(S, b, token_logps, 1),
                     pf_slot(S, b, b->rows.c_mask, 1), J->L.dpo.ld_alpha, &ld[0], &ld[1]) != RT_OK)
        return NULL;
    return rt_cat(S, ld, 2, 0); /* [2B]: the rows are slot-major, every chosen then every rejected */
}

/* Rows: [chosen of every pair; rejected of every pair], TRL's layout. */
static rt_tensor *dpo_batch_loss(pf_job *J, rt_scope *S, const pf_batch *b, mx_record *rec) {
    const dpo_config *cfg = &J->L.dpo;
    rt_tensor *pw = pf_slot(S, b, b->logps, 0), *pl = pf_slot(S, b, b->logps, 1);         /* [B] policy */
    rt_tensor *rw = pf_slot(S, b, b->ref_logps, 0), *rl = pf_slot(S, b, b->ref_logps, 1); /* [B] reference */
    rt_tensor *nll = NULL, *ww = NULL, *wl = NULL;
    if (cfg->ld_alpha != 1.0) {
        /* LD-DPO: the tail past the pair's shared length weighs ld_alpha, for
         * the policy and the reference alike, as TRL HEAD. A precomputed
         * table already holds the weighted reference sums (dpo_ref_row_values). */
        rt_tensor *mw = pf_slot(S, b, b->rows.c_mask, 0), *ml = pf_slot(S, b, b->rows.c_mask, 1); /* [B, C] */
        nll = pw; /* sft's NLL stays the plain sum */
        if (dpo_ld_logps(S, pf_slot(S, b, b->token_logps, 0), mw, pf_slot(S, b, b->token_logps, 1), ml,
                         cfg->ld_alpha, &pw, &pl) != RT_OK ||
            (b->ref_token_logps && dpo_ld_logps(S, pf_slot(S, b, b->ref_token_logps, 0), mw,
                                                pf_slot(S, b, b->ref_token_logps, 1), ml, cfg->ld_alpha, &rw,
                                                &rl) != RT_OK))
            return NULL;
    }
    if (cfg->use_weighting) {
        /* WPO sequence weights from the policy's own (detached) logits */
        int g = rt_no_grad_begin();
        rt_tensor *c_logits = rt_detach(S, sp_completion_logits(S, b->logits, b->rows.P, b->rows.C)); /* [n, C, V] */
        rt_tensor *w = dpo_wpo_weights(S, c_logits, b->rows.c_ids, b->rows.c_mask);                  /* [n] */
        rt_grad_mode_restore(g);
        ww = pf_slot(S, b, w, 0);
        wl = pf_slot(S, b, w, 1);
    }
    dpo_inputs in = {pw, pl, rw, rl, pf_slot(S, b, b->rows.lengths, 0), pf_slot(S, b, b->rows.lengths, 1), nll, ww, wl};
    dpo_metrics m;
    rt_tensor *loss = dpo_loss(S, cfg, &in, NULL, &m);
    if (loss && rec) {
        size_t n;
        const dpo_metric_desc *t = dpo_metric_table(&n);
        pf_dpo_metrics(rec, t, n, &m);
        pf_pair_logit_metrics(S, b, rec);
    }
    return loss;
}

const pf_algo pf_dpo = {
    .name = "dpo",
    .schema = &dpo_schema,
    .kinds = 1u << PREF_PAIRWISE,
    .parse = dpo_parse,
    .uses_ref = pf_always_ref,
    .nslots = pf_pair_slots,
    .slot_text = pf_pair_text,
    .loss = dpo_batch_loss,
    .ref_row_values = dpo_ref_row_values,
};

/* ======================================================================== */
/* sdpo                                                                      */
/* ======================================================================== */

#define sdpo_SUMMARY "S-DPO: the best completion against K worse ones, on listwise (or pairwise) data"
extern const pf_algo pf_sdpo;

static void sdpo_check(const void *c, cfg_check *ck) { pf_check_common(&pf_sdpo, c, ck); }

static const cfg_field sdpo_fields[] = {
    PF_COMMON_FIELDS(pf_cfg),
    PF_REF_FIELDS(pf_cfg),
    CFG_STRING(pf_cfg, "sdpo", "settings", settings, "beta=0.1",
               "S-DPO settings 'name=value ...' (rlt loss --help sdpo lists them)"),
    CFG_INT64(pf_cfg, "sdpo", "negatives", negatives, 1, 1024, "3",
              "K: worse completions per record, drawn once per record from those scoring below the best "
              "(S-DPO's neg_num)"),
};
static const cfg_schema sdpo_schema = CFG_SCHEMA("sdpo", pf_cfg, sdpo_fields, sdpo_check);

static int sdpo_set(void *c, const char *n, const char *v) { return dpo_sdpo_config_set(c, n, v); }

static int sdpo_parse(const pf_cfg *c, pf_losses *L, char *err, size_t errlen) {
    L->sdpo = dpo_sdpo_config_default();
    return pf_apply(c->settings, &L->sdpo, sdpo_set, NULL, err, errlen);
}

/* slot_map row i: [best, negative 1, ..., negative K], -1 past the record's
 * negatives. The best is the first highest-scoring completion; the
 * negatives are K of those scoring strictly lower, drawn without
 * replacement from (run seed, record) -- fixed per record, as S-DPO fixes
 * them when it builds its dataset. A pairwise record is [chosen, rejected]. */
static int sdpo_prepare(pf_job *J, run_ctx *r, ck_state *ck) {
    (void)ck;
    int64_t K = J->cfg.negatives, W = K + 1;
    J->slot_map = malloc(J->n_records * (size_t)W * sizeof *J->slot_map);
    int64_t *neg = NULL;
    if (!J->slot_map) return run_fail(r, RUN_EXIT_FAIL, "out of memory");
    int64_t without = 0;
    for (size_t i = 0; i < J->n_records; i++) {
        const pref_record *rec = pref_get(J->data, i);
        int64_t *row = J->slot_map + i * (size_t)W;
        for (int64_t k = 0; k < W; k++) row[k] = -1;
        if (pref_dataset_kind(J->data) == PREF_PAIRWISE) {
            row[0] = 0;
            row[1] = 1;
            continue;
        }
        int64_t n = (int64_t)rec->n_completions, best = 0, nneg = 0;
        for (int64_t j = 1; j < n; j++)
            if (rec->scores[j] > rec->scores[best]) best = j;
        free(neg);
        neg = malloc((size_t)n * sizeof *neg);
        if (!neg) return run_fail(r, RUN_EXIT_FAIL, "out of memory");
        for (int64_t j = 0; j < n; j++)
            if (rec->scores[j] < rec->scores[best]) neg[nneg++] = j;
        shuf_rng rng;
        shuf_rng_seed(&rng, (uint64_t)J->cfg.run.seed ^ 0x73647030ULL ^ ((uint64_t)i * 0x9e3779b97f4a7c15ULL));
        for (int64_t k = 0; k < nneg && k < K; k++) { /* partial Fisher-Yates */
            int64_t j = k + (int64_t)shuf_rng_bounded(&rng, (uint64_t)(nneg - k));
            int64_t t = neg[k];
            neg[k] = neg[j];
            neg[j] = t;
            row[1 + k] = neg[k];
        }
        row[0] = best;
        without += nneg == 0;
    }
    free(neg);
    if (without > 0)
        run_warn(r, "data.path: %lld record(s) have no completion scoring below their best: they add nothing to the "
                 "S-DPO loss", (long long)without);
    return 0;
}

static int64_t sdpo_slots(const pf_job *J, size_t i) {
    const int64_t *row = J->slot_map + i * (size_t)(J->cfg.negatives + 1);
    int64_t n = 0;
    while (n <= J->cfg.negatives && row[n] >= 0) n++;
    return n;
}

static const char *sdpo_text(const pf_job *J, size_t i, int64_t k) {
    const pref_record *r = pref_get(J->data, i);
    int64_t j = J->slot_map[i * (size_t)(J->cfg.negatives + 1) + (size_t)k];
    if (pref_dataset_kind(J->data) == PREF_PAIRWISE) return j == 0 ? r->chosen : r->rejected;
    return r->completions[j];
}

/* Rows: slot 0 (the best) of every record, then each negative slot. */
static rt_tensor *sdpo_batch_loss(pf_job *J, rt_scope *S, const pf_batch *b, mx_record *rec) {
    rt_tensor *mask, *rmask;
    rt_tensor *pol = pf_grid(S, b, b->logps, &mask);      /* [B, K] */
    rt_tensor *ref = pf_grid(S, b, b->ref_logps, &rmask); /* [B, K] */
    if (!pol || !ref) return NULL;
    int64_t K = b->K - 1;
    rt_tensor *pc = rt_select(S, pol, 1, 0), *rc = rt_select(S, ref, 1, 0); /* [B] */
    rt_tensor *pn, *rn, *nmask;
    if (K > 0) {
        pn = rt_narrow(S, pol, 1, 1, K); /* [B, K] negatives */
        rn = rt_narrow(S, ref, 1, 1, K);
        nmask = rt_narrow(S, mask, 1, 1, K);
    } else { /* no record of the batch has a negative: every row's loss is 0 */
        int64_t shape[2] = {b->B, 1};
        pn = rt_unsqueeze(S, pc, 1);
        rn = rt_unsqueeze(S, rc, 1);
        nmask = rt_zeros(S, shape, 2, RT_OPTS(RT_BOOL));
    }
    dpo_sdpo_inputs in = {pc, pn, rc, rn, nmask};
    dpo_sdpo_metrics m;
    rt_tensor *loss = dpo_sdpo_loss(S, &J->L.sdpo, &in, NULL, &m);
    if (loss && rec) {
        size_t n;
        const dpo_metric_desc *t = dpo_sdpo_metric_table(&n);
        pf_dpo_metrics(rec, t, n, &m);
        pf_metric(rec, "logits/chosen", pf_mean_logit(S, b, 0));
        pf_metric(rec, "negatives", rt_item(rt_sum(S, nmask, RT_DIM_ALL, 0)) / (double)b->B);
    }
    return loss;
}

const pf_algo pf_sdpo = {
    .name = "sdpo",
    .schema = &sdpo_schema,
    .kinds = (1u << PREF_LISTWISE) | (1u << PREF_PAIRWISE),
    .parse = sdpo_parse,
    .uses_ref = pf_always_ref,
    .nslots = sdpo_slots,
    .slot_text = sdpo_text,
    .prepare = sdpo_prepare,
    .loss = sdpo_batch_loss,
};

/* ======================================================================== */
/* adpo                                                                      */
/* ======================================================================== */

#define adpo_SUMMARY "ADPO: anchored cross-entropy over a prompt's candidates (fixed, previous-policy or EMA anchor)"
extern const pf_algo pf_adpo;

static void adpo_check(const void *cp, cfg_check *ck) {
    const pf_cfg *c = cp;
    pf_check_common(&pf_adpo, c, ck);
    if (c->anchor != PF_ANCHOR_FIXED && c->precompute_ref)
        cfg_check_fail(ck, "train.precompute_ref", "adpo.anchor = %s moves with the policy: only a fixed anchor can be "
                       "precomputed", pf_anchor_choices[c->anchor]);
}

static const cfg_field adpo_fields[] = {
    PF_COMMON_FIELDS(pf_cfg),
    PF_REF_FIELDS(pf_cfg),
    CFG_STRING(pf_cfg, "adpo", "settings", settings, "",
               "ADPO settings 'name=value ...' (rlt loss --help adpo); listwise data default to target=softmax "
               "of the scores, pairwise data to target=probs with q = (1, 0)"),
    CFG_ENUM(pf_cfg, "adpo", "anchor", anchor, pf_anchor_choices, "fixed",
             "fixed: the reference policy; prev: the policy itself, copied every anchor_every steps (1 = the "
             "current policy, detached); ema: a moving average of the policy"),
    CFG_INT64(pf_cfg, "adpo", "anchor_every", anchor_every, 1, 1e12, "1",
              "anchor = prev: steps between copies of the policy into the anchor"),
    CFG_DOUBLE(pf_cfg, "adpo", "anchor_ema", anchor_ema, 0, 1, "0.05",
               "anchor = ema: anchor += rate * (policy - anchor) after every optimizer step"),
};
static const cfg_schema adpo_schema = CFG_SCHEMA("adpo", pf_cfg, adpo_fields, adpo_check);

static int adpo_set(void *c, const char *n, const char *v) { return adpo_config_set(c, n, v); }
static int adpo_check_cfg(const void *c) { return adpo_config_check(c); }

/* listwise: the scores become q through a softmax unless the settings say otherwise. */
static int adpo_parse_for(const pf_cfg *c, pf_losses *L, bool listwise, char *err, size_t errlen) {
    L->adpo = adpo_config_default();
    if (listwise && adpo_config_set(&L->adpo, "target", "softmax") != RT_OK) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    return pf_apply(c->settings, &L->adpo, adpo_set, adpo_check_cfg, err, errlen);
}

static int adpo_parse(const pf_cfg *c, pf_losses *L, char *err, size_t errlen) {
    return adpo_parse_for(c, L, false, err, errlen);
}

static bool adpo_uses_ref(const pf_cfg *c, const pf_losses *L) {
    (void)L;
    return c->anchor == PF_ANCHOR_FIXED;
}

/* A moving anchor needs its own model unless it is the current policy. */
static bool adpo_has_anchor_model(const pf_cfg *c) {
    return c->anchor == PF_ANCHOR_EMA || (c->anchor == PF_ANCHOR_PREV && c->anchor_every > 1);
}

static int adpo_prepare(pf_job *J, run_ctx *r, ck_state *ck) {
    char err[1024];
    if (adpo_parse_for(&J->cfg, &J->L, pref_dataset_kind(J->data) == PREF_LISTWISE, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "adpo.settings: %s", err);
    if (!adpo_has_anchor_model(&J->cfg)) return 0;
    if (sp_model_new(&J->cfg.model, &J->task, J->init_gen, &J->anchor, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "%s", err);
    nn_params_set_requires_grad(gpt_params(J->anchor), 0);
    if (sp_ck_add_policy(ck, "anchor", J->anchor, NULL) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    return 0;
}

/* The anchor starts as the initial policy. */
static int adpo_start(pf_job *J, run_ctx *r) {
    if (J->anchor && nn_params_copy_(gpt_params(J->anchor), gpt_params(J->policy)) != RT_OK)
        return run_fail(r, RUN_EXIT_FAIL, "anchor: %s", rt_last_error());
    return 0;
}

static int adpo_after_update(pf_job *J, run_ctx *r, int64_t step_done) {
    if (!J->anchor) return 0;
    double rate = J->cfg.anchor == PF_ANCHOR_EMA ? J->cfg.anchor_ema : step_done % J->cfg.anchor_every == 0 ? 1.0 : 0.0;
    if (rate == 0.0) return 0;
    nn_params *A = gpt_params(J->anchor), *P = gpt_params(J->policy);
    if (adpo_anchor_ema_update(nn_params_tensors(A), nn_params_tensors(P), nn_params_count(A), rate) != RT_OK)
        return run_fail(r, RUN_EXIT_FAIL, "anchor update: %s", rt_last_error());
    return 0;
}

static int64_t adpo_slots(const pf_job *J, size_t i) {
    const pref_record *r = pref_get(J->data, i);
    return pref_dataset_kind(J->data) == PREF_PAIRWISE ? 2 : (int64_t)r->n_completions;
}

static const char *adpo_text(const pf_job *J, size_t i, int64_t k) {
    const pref_record *r = pref_get(J->data, i);
    return pref_dataset_kind(J->data) == PREF_PAIRWISE ? pf_pair_text(J, i, k) : r->completions[k];
}

/* Host metrics in DPO's terms, with the anchor as the reference: a
 * candidate's reward is (logp - anchor) / tau; "chosen" are a prompt's
 * highest-scoring candidates, "rejected" the others; a prompt is accurate
 * when every chosen reward beats every rejected one. With anchor = prev and
 * anchor_every = 1 the rewards are 0 by construction: watch logps/chosen and logps/rejected. */
static void adpo_reward_metrics(const pf_batch *b, const double *l, const double *a, const double *score,
                                const uint8_t *present, double tau, mx_record *rec) {
    double rw = 0, rl = 0, lw = 0, ll = 0, acc = 0;
    int64_t nw = 0, nl = 0, nacc = 0;
    for (int64_t i = 0; i < b->B; i++) {
        const double *li = l + i * b->K, *ai = a + i * b->K, *si = score + i * b->K;
        const uint8_t *pi = present + i * b->K;
        double best = -INFINITY, min_w = INFINITY, max_l = -INFINITY;
        for (int64_t k = 0; k < b->K; k++)
            if (pi[k] && si[k] > best) best = si[k];
        int64_t losers = 0;
        for (int64_t k = 0; k < b->K; k++) {
            if (!pi[k]) continue;
            double r = (li[k] - ai[k]) / tau;
            if (si[k] == best) {
                rw += r, lw += li[k], nw++;
                min_w = r < min_w ? r : min_w;
            } else {
                rl += r, ll += li[k], nl++, losers++;
                max_l = r > max_l ? r : max_l;
            }
        }
        if (losers > 0) acc += min_w > max_l, nacc++;
    }
    if (nw) pf_metric(rec, "rewards/chosen", rw / (double)nw);
    if (nl) pf_metric(rec, "rewards/rejected", rl / (double)nl);
    if (nw && nl) pf_metric(rec, "rewards/margins", rw / (double)nw - rl / (double)nl);
    if (nacc) pf_metric(rec, "rewards/accuracies", acc / (double)nacc);
    if (nw) pf_metric(rec, "logps/chosen", lw / (double)nw);
    if (nl) pf_metric(rec, "logps/rejected", ll / (double)nl);
}

/* Rows: candidate k of every prompt, k = 0, 1, ...; q per candidate from the
 * record (its score, or 1 for chosen and 0 for rejected). */
static rt_tensor *adpo_batch_loss(pf_job *J, rt_scope *S, const pf_batch *b, mx_record *rec) {
    size_t nk = (size_t)(b->B * b->K);
    double *q = calloc(nk, sizeof *q), *hl = malloc(nk * sizeof *hl), *ha = malloc(nk * sizeof *ha);
    uint8_t *present = malloc(nk);
    rt_tensor *loss = NULL;
    if (!q || !hl || !ha || !present) {
        rt_set_error("adpo: out of memory");
        goto out;
    }
    bool pairwise = pref_dataset_kind(J->data) == PREF_PAIRWISE;
    for (int64_t i = 0; i < b->B; i++)
        for (int64_t k = 0; k < b->K; k++) {
            present[i * b->K + k] = b->row[i * b->K + k] >= 0;
            if (present[i * b->K + k]) q[i * b->K + k] = pairwise ? (k == 0) : b->recs[i]->scores[k];
        }
    rt_tensor *mask, *same_mask;
    rt_tensor *pol = pf_grid(S, b, b->logps, &mask);                                 /* [B, K] */
    rt_tensor *anchor = NULL;                                                         /* NULL: the policy, detached */
    if (J->cfg.anchor == PF_ANCHOR_FIXED) anchor = pf_grid(S, b, b->ref_logps, &same_mask);
    else if (J->anchor) anchor = pf_grid(S, b, pf_score_rows(S, J->anchor, b, NULL), &same_mask);
    int64_t shape[2] = {b->B, b->K};
    rt_tensor *qt = rt_from_data(S, q, shape, 2, RT_OPTS(RT_F64));
    if (!pol || !qt || (J->cfg.anchor == PF_ANCHOR_FIXED && !anchor) || (J->anchor && !anchor)) goto out;
    adpo_inputs in = {pol, anchor, rt_to_dtype(S, qt, rt_dtype_of(pol)), mask};
    adpo_metrics m;
    loss = adpo_loss(S, &J->L.adpo, &in, NULL, &m);
    if (loss && rec) {
        size_t n;
        const dpo_metric_desc *t = adpo_metric_table(&n);
        pf_dpo_metrics(rec, t, n, &m);
        if (pf_host(pol, hl, nk) < 0 || pf_host(anchor ? anchor : pol, ha, nk) < 0) {
            loss = NULL;
            goto out;
        }
        adpo_reward_metrics(b, hl, ha, q, present, J->L.adpo.tau, rec);
    }
out:
    free(q);
    free(hl);
    free(ha);
    free(present);
    return loss;
}

const pf_algo pf_adpo = {
    .name = "adpo",
    .schema = &adpo_schema,
    .kinds = (1u << PREF_LISTWISE) | (1u << PREF_PAIRWISE),
    .parse = adpo_parse,
    .uses_ref = adpo_uses_ref,
    .nslots = adpo_slots,
    .slot_text = adpo_text,
    .prepare = adpo_prepare,
    .start = adpo_start,
    .loss = adpo_batch_loss,
    .after_update = adpo_after_update,
};

/* ======================================================================== */
/* simpo                                                                     */
/* ======================================================================== */

#define simpo_SUMMARY "SimPO: reference-free, length-normalised margin loss on pairwise data"
extern const pf_algo pf_simpo;

static void simpo_check(const void *c, cfg_check *ck) { pf_check_common(&pf_simpo, c, ck); }

static const cfg_field simpo_fields[] = {
    PF_COMMON_FIELDS(pf_cfg),
    CFG_STRING(pf_cfg, "simpo", "settings", settings, "",
               "SimPO settings 'name=value ...' (rlt loss --help simpo; official defaults, preset=trl for TRL's)"),
};
static const cfg_schema simpo_schema = CFG_SCHEMA("simpo", pf_cfg, simpo_fields, simpo_check);

static int simpo_set(void *c, const char *n, const char *v) { return simpo_config_set(c, n, v); }
static int simpo_check_cfg(const void *c) { return simpo_config_check(c); }

static int simpo_parse(const pf_cfg *c, pf_losses *L, char *err, size_t errlen) {
    L->simpo = simpo_config_default();
    return pf_apply(c->settings, &L->simpo, simpo_set, simpo_check_cfg, err, errlen);
}

/* Rows: [chosen; rejected]; the loss divides the sums by the token counts. */
static rt_tensor *simpo_batch_loss(pf_job *J, rt_scope *S, const pf_batch *b, mx_record *rec) {
    simpo_inputs in = {pf_slot(S, b, b->logps, 0), pf_slot(S, b, b->logps, 1), pf_slot(S, b, b->rows.lengths, 0),
                       pf_slot(S, b, b->rows.lengths, 1)};
    simpo_metrics m;
    rt_tensor *loss = simpo_loss(S, &J->L.simpo, &in, &m, NULL);
    if (loss && rec) {
        size_t n;
        const prefx_metric *t = simpo_metric_table(&n);
        pf_prefx_metrics(rec, t, n, &m);
        pf_pair_logit_metrics(S, b, rec);
    }
    return loss;
}

const pf_algo pf_simpo = {
    .name = "simpo",
    .schema = &simpo_schema,
    .kinds = 1u << PREF_PAIRWISE,
    .parse = simpo_parse,
    .uses_ref = pf_never_ref,
    .nslots = pf_pair_slots,
    .slot_text = pf_pair_text,
    .loss = simpo_batch_loss,
};

/* ======================================================================== */
/* orpo                                                                      */
/* ======================================================================== */

#define orpo_SUMMARY "ORPO: NLL plus the odds-ratio preference term, reference-free, on pairwise data"
extern const pf_algo pf_orpo;

static void orpo_check(const void *c, cfg_check *ck) { pf_check_common(&pf_orpo, c, ck); }

static const cfg_field orpo_fields[] = {
    PF_COMMON_FIELDS(pf_cfg),
    CFG_STRING(pf_cfg, "orpo", "settings", settings, "",
               "ORPO settings 'name=value ...' (rlt loss --help orpo; TRL ORPOConfig defaults)"),
};
static const cfg_schema orpo_schema = CFG_SCHEMA("orpo", pf_cfg, orpo_fields, orpo_check);

static int orpo_set(void *c, const char *n, const char *v) { return orpo_config_set(c, n, v); }
static int orpo_check_cfg(const void *c) { return orpo_config_check(c); }

static int orpo_parse(const pf_cfg *c, pf_losses *L, char *err, size_t errlen) {
    L->orpo = orpo_config_default();
    return pf_apply(c->settings, &L->orpo, orpo_set, orpo_check_cfg, err, errlen);
}

/* Rows: [chosen; rejected]. ORPO's NLL covers the whole chosen sequence:
 * every real token after the first (BOS), predicted by a real position. */
static rt_tensor *orpo_batch_loss(pf_job *J, rt_scope *S, const pf_batch *b, mx_record *rec) {
    int64_t L = b->rows.P + b->rows.C;
    rt_tensor *logits = pf_slot(S, b, b->logits, 0);                          /* [B, L, V] chosen rows */
    rt_tensor *ids = pf_slot(S, b, b->rows.ids, 0);                           /* [B, L]    */
    rt_tensor *real = rt_compare_scalar(S, pf_slot(S, b, b->rows.mask, 0), RT_GT, 0.5);
    rt_tensor *valid = rt_logical_and(S, rt_narrow(S, real, 1, 1, L - 1), rt_narrow(S, real, 1, 0, L - 1)); /* [B,L-1] */
    rt_tensor *tok = rt_token_logps(S, rt_narrow(S, logits, 1, 0, L - 1), rt_narrow(S, ids, 1, 1, L - 1), 1.0, NULL);
    rt_tensor *full = dpo_sequence_logps(S, tok, valid);                          /* [B] */
    rt_tensor *full_len = rt_sum(S, rt_to_dtype(S, valid, RT_F32), 1, 0);         /* [B] */
    orpo_inputs in = {pf_slot(S, b, b->logps, 0), pf_slot(S, b, b->logps, 1), pf_slot(S, b, b->rows.lengths, 0),
                      pf_slot(S, b, b->rows.lengths, 1), full, full_len};
    orpo_metrics m;
    rt_tensor *loss = orpo_loss(S, &J->L.orpo, &in, &m, NULL);
    if (loss && rec) {
        size_t n;
        const prefx_metric *t = orpo_metric_table(&n);
        pf_prefx_metrics(rec, t, n, &m);
        pf_pair_logit_metrics(S, b, rec);
    }
    return loss;
}

const pf_algo pf_orpo = {
    .name = "orpo",
    .schema = &orpo_schema,
    .kinds = 1u << PREF_PAIRWISE,
    .parse = orpo_parse,
    .uses_ref = pf_never_ref,
    .nslots = pf_pair_slots,
    .slot_text = pf_pair_text,
    .loss = orpo_batch_loss,
};

/* ======================================================================== */
/* kto                                                                       */
/* ======================================================================== */

#define kto_SUMMARY "KTO: desirable / undesirable completions against a KL reference point, on unpaired data"
extern const pf_algo pf_kto;

static int kto_set(void *c, const char *n, const char *v) { return kto_config_set(c, n, v); }
static int kto_check_cfg(const void *c) { return kto_config_check(c); }

static int kto_parse(const pf_cfg *c, pf_losses *L, char *err, size_t errlen) {
    L->kto = kto_config_default();
    return pf_apply(c->settings, &L->kto, kto_set, kto_check_cfg, err, errlen);
}

static void kto_check(const void *cp, cfg_check *ck) {
    const pf_cfg *c = cp;
    pf_check_common(&pf_kto, c, ck);
    pf_losses L;
    char err[512];
    if (kto_parse(c, &L, err, sizeof err) == 0 && L.kto.loss_type == KTO_KTO && c->batch_size < 2)
        cfg_check_fail(ck, "train.batch_size", "KTO's KL sample pairs each prompt with another record's completion "
                       "of its batch chunk: it needs at least 2");
}

static const cfg_field kto_fields[] = {
    PF_COMMON_FIELDS(pf_cfg),
    PF_REF_FIELDS(pf_cfg),
    CFG_STRING(pf_cfg, "kto", "settings", settings, "",
               "KTO settings 'name=value ...' (rlt loss --help kto; TRL KTOConfig defaults)"),
};
static const cfg_schema kto_schema = CFG_SCHEMA("kto", pf_cfg, kto_fields, kto_check);

/* The KL sample of record i is the completion of the record before it in its
 * chunk of batch_size records of the file (the first takes the chunk's
 * last): TRL's rotation by one inside each batch of the dataset. Also TRL's
 * warning when the weighted desirable:undesirable ratio is outside [1, 4/3]. */
static int kto_prepare(pf_job *J, run_ctx *r, ck_state *ck) {
    (void)ck;
    J->kl_of = malloc(J->n_records * sizeof *J->kl_of);
    if (!J->kl_of) return run_fail(r, RUN_EXIT_FAIL, "out of memory");
    size_t chunk = (size_t)J->cfg.batch_size;
    for (size_t s = 0; s < J->n_records; s += chunk) {
        size_t e = s + chunk < J->n_records ? s + chunk : J->n_records;
        for (size_t i = s; i < e; i++) J->kl_of[i] = (int64_t)(i == s ? e - 1 : i - 1);
    }
    pref_stats st = pref_dataset_stats(J->data);
    double num = J->L.kto.desirable_weight * (double)st.desirable;
    double den = J->L.kto.undesirable_weight * (double)st.undesirable;
    if (den == 0 || num / den < 1.0 || num / den > 4.0 / 3.0)
        run_warn(r, "kto: desirable_weight x %lld desirable / (undesirable_weight x %lld undesirable) = %.3g is "
                 "outside "
                 "[1, 4/3], the range the KTO paper recommends (set the weights to balance)",
                 (long long)st.desirable, (long long)st.undesirable, den > 0 ? num / den : INFINITY);
    return 0;
}

static int64_t kto_slots(const pf_job *J, size_t i) {
    (void)i;
    return J->L.kto.loss_type == KTO_KTO ? 2 : 1;
}

static const char *kto_text(const pf_job *J, size_t i, int64_t k) {
    return pref_get(J->data, k == 0 ? i : (size_t)J->kl_of[i])->completion;
}

/* Rows: [completion of every record; its KL sample]. The KL rows' policy
 * log-probs are constants (TRL scores them under no_grad). */
static rt_tensor *kto_batch_loss(pf_job *J, rt_scope *S, const pf_batch *b, mx_record *rec) {
    float *labels = malloc((size_t)b->B * sizeof *labels);
    if (!labels) {
        rt_set_error("kto: out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < b->B; i++) labels[i] = (float)b->recs[i]->label;
    int64_t shape[1] = {b->B};
    rt_tensor *lab = rt_from_data(S, labels, shape, 1, RT_OPTS(RT_F32));
    free(labels);
    bool kl = J->L.kto.loss_type == KTO_KTO;
    kto_inputs in = {pf_slot(S, b, b->logps, 0), pf_slot(S, b, b->ref_logps, 0), lab,
                     kl ? rt_detach(S, pf_slot(S, b, b->logps, 1)) : NULL, kl ? pf_slot(S, b, b->ref_logps, 1) : NULL};
    kto_metrics m;
    rt_tensor *loss = kto_loss(S, &J->L.kto, &in, &m, NULL);
    if (loss && rec) {
        size_t n;
        const prefx_metric *t = kto_metric_table(&n);
        pf_prefx_metrics(rec, t, n, &m);
        pf_unpaired_logit_metrics(S, b, rec);
    }
    return loss;
}

const pf_algo pf_kto = {
    .name = "kto",
    .schema = &kto_schema,
    .kinds = 1u << PREF_UNPAIRED,
    .parse = kto_parse,
    .uses_ref = pf_always_ref,
    .nslots = kto_slots,
    .slot_text = kto_text,
    .prepare = kto_prepare,
    .loss = kto_batch_loss,
};

/* ======================================================================== */
/* bco                                                                       */
/* ======================================================================== */

#define bco_SUMMARY "BCO: a binary classifier of desirable completions with a running reward shift, on unpaired data"
extern const pf_algo pf_bco;

static void bco_check(const void *c, cfg_check *ck) { pf_check_common(&pf_bco, c, ck); }

static const cfg_field bco_fields[] = {
    PF_COMMON_FIELDS(pf_cfg),
    PF_REF_FIELDS(pf_cfg),
    CFG_STRING(pf_cfg, "bco", "settings", settings, "",
               "BCO settings 'name=value ...' (rlt loss --help bco; TRL BCOConfig defaults); min_density_ratio and "
               "max_density_ratio clamp bco.udm's weights"),
    CFG_BOOL(pf_cfg, "bco", "udm", udm, "false",
             "underlying distribution matching (TRL BCOTrainer with an embedding_func): each undesirable loss is "
             "weighted by clamp(p/(1-p+1e-8), min_density_ratio, max_density_ratio), p = P(desirable | prompt) of a "
             "logistic regression on the reference policy's prompt embeddings, fitted once at the start"),
    CFG_INT64(pf_cfg, "bco", "prompt_sample_size", prompt_sample_size, 1, 1e9, "1024",
              "bco.udm: desirable and undesirable prompts drawn (each class, with replacement, as TRL) to fit the "
              "classifier"),
};
static const cfg_schema bco_schema = CFG_SCHEMA("bco", pf_cfg, bco_fields, bco_check);

static int bco_set(void *c, const char *n, const char *v) { return bco_config_set(c, n, v); }
static int bco_check_cfg(const void *c) { return bco_config_check(c); }

static int bco_parse(const pf_cfg *c, pf_losses *L, char *err, size_t errlen) {
    L->bco = bco_config_default();
    if (pf_apply(c->settings, &L->bco, bco_set, bco_check_cfg, err, errlen) < 0) return -1;
    if (!L->bco.update_running) {
        snprintf(err, errlen, "update_running=0 is for evaluation: a training run updates the running mean");
        return -1;
    }
    return 0;
}

/* The running mean of the rewards (TRL's RunningMoments) goes into every
 * checkpoint, so a resume shifts by the same delta; with bco.udm so do the
 * prompt classifier (/algo/bco_udm: coef [D], intercept, its training
 * scores) and its probability for every record (/data/udm_prob), as TRL
 * saves clf.pkl beside running.json. */
static int bco_prepare(pf_job *J, run_ctx *r, ck_state *ck) {
    J->bco = bco_running_init();
    if (ck_add_f64(ck, "algo/bco_running/mean", &J->bco.mean) < 0 ||
        ck_add_f64(ck, "algo/bco_running/var", &J->bco.var) < 0 ||
        ck_add_f64(ck, "algo/bco_running/std", &J->bco.std) < 0 ||
        ck_add_f64(ck, "algo/bco_running/count", &J->bco.count) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    if (!J->cfg.udm) return 0;
    pref_stats st = pref_dataset_stats(J->data);
    if (st.desirable == 0 || st.undesirable == 0)
        return run_fail(r, RUN_EXIT_USAGE,
                        "bco.udm: data.path %s has %lld desirable and %lld undesirable records: the prompt classifier "
                        "needs both",
                        J->cfg.data_path, (long long)st.desirable, (long long)st.undesirable);
    int64_t coef_shape[1] = {gpt_get_config(J->policy)->d_model}, prob_shape[1] = {(int64_t)J->n_records};
    J->udm_coef = rt_zeros(NULL, coef_shape, 1, RT_OPTS(RT_F64));
    J->udm_prob = rt_zeros(NULL, prob_shape, 1, RT_OPTS(RT_F64));
    static const char *const coef_name[1] = {"coef"}, *const prob_name[1] = {"udm_prob"};
    if (!J->udm_coef || !J->udm_prob || ck_add_tensors(ck, "algo/bco_udm", coef_name, &J->udm_coef, 1) < 0 ||
        ck_add_f64(ck, "algo/bco_udm/intercept", &J->udm_intercept) < 0 ||
        ck_add_f64(ck, "algo/bco_udm/score_rejected", &J->udm_accuracy[0]) < 0 ||
        ck_add_f64(ck, "algo/bco_udm/score_chosen", &J->udm_accuracy[1]) < 0 ||
        ck_add_tensors(ck, "data", prob_name, &J->udm_prob, 1) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    return 0;
}

/* The UDM weight of an undesirable record whose prompt is desirable with
 * probability p (TRL _get_udm_weight; bco_loss applies the same clamp). */
static double bco_density_ratio(const bco_config *c, double p) {
    double w = p / (1.0 - p + 1e-8);
    return w < c->min_density_ratio ? c->min_density_ratio : w > c->max_density_ratio ? c->max_density_ratio : w;
}

/* The prompt embedding of every record, [n_records, D] row-major (float64)
 * into emb, D = the model width: the reference policy m's final-LayerNorm
 * state (what its LM head reads) at each real prompt token (BOS, the
 * characters, THINK_BEGIN; not the left padding), mean-pooled -- rlt's
 * analogue of TRL's separate sentence-embedding model. */
static int bco_embed_prompts(pf_job *J, run_ctx *r, gpt *m, double *emb, int64_t D) {
    const int64_t batch = J->cfg.precompute_batch;
    char err[2048];
    const char **prompts = malloc((size_t)batch * sizeof *prompts);
    rt_scope *S = rt_scope_new();
    int rc = 0;
    if (!prompts || !S) {
        free(prompts);
        rt_scope_free(S);
        return run_fail(r, RUN_EXIT_FAIL, "out of memory");
    }
    int g = rt_no_grad_begin();
    for (size_t start = 0; start < J->n_records && rc == 0; start += (size_t)batch, rt_scope_reset(S)) {
        int64_t B = (int64_t)(J->n_records - start) < batch ? (int64_t)(J->n_records - start) : batch;
        for (int64_t b = 0; b < B; b++) prompts[b] = pref_get(J->data, start + (size_t)b)->prompt;
        rt_tensor *ids, *mask;
        /* sp_encode_prompts only reads the strings */
        if (sp_encode_prompts(S, &J->task, (char *const *)prompts, B, &ids, &mask, err, sizeof err) < 0) {
            rc = run_fail(r, RUN_EXIT_FAIL, "bco.udm: prompt embeddings: %s", err);
            break;
        }
        rt_tensor *h = gpt_forward_hidden(S, m, ids, mask);                           /* [B, P, C] ln_f */
        rt_tensor *real = rt_unsqueeze(S, rt_compare_scalar(S, mask, RT_GT, 0.5), 2); /* [B, P, 1] */
        rt_tensor *sum = rt_sum(S, rt_where_scalar(S, real, h, 0.0), 1, 0);          /* [B, C]    */
        rt_tensor *mean = rt_div(S, sum, rt_sum(S, mask, 1, 1));                      /* [B, C]    */
        if (!mean || rt_size(mean, 1) != D ||
            rt_to_data(mean, RT_F64, emb + start * (size_t)D, (size_t)(B * D) * sizeof *emb) != RT_OK)
            rc = run_fail(r, RUN_EXIT_FAIL, "bco.udm: prompt embeddings: %s", mean ? rt_last_error() : "wrong width");
    }
    rt_grad_mode_restore(g);
    free(prompts);
    rt_scope_free(S);
    return rc;
}

/* bco.udm at a fresh start, as TRL's BCOTrainer.__init__ with an
 * embedding_func: embed every record's prompt with the reference policy;
 * draw min(count, prompt_sample_size) desirable and as many undesirable
 * records with replacement (np.random.choice's default) from the run's seed;
 * fit LogisticRegression(class_weight="balanced") (C = 1, L2) on their
 * embeddings, desirable = 1; keep P(desirable | prompt) of every record for
 * the steps, and log the classifier's training scores per class. */
static int bco_start(pf_job *J, run_ctx *r) {
    if (!J->cfg.udm) return 0;
    double t0 = mx_wall_time();
    gpt *own = J->ref ? NULL : pf_load_reference(J, r);
    gpt *ref = J->ref ? J->ref : own;
    if (!ref) return -1;
    size_t n = J->n_records;
    int64_t D = rt_numel(J->udm_coef);
    double *emb = malloc(n * (size_t)D * sizeof *emb);
    int64_t *pool[2] = {malloc(n * sizeof(int64_t)), malloc(n * sizeof(int64_t))}, count[2] = {0, 0};
    int64_t ns[2], rows = 0;
    double *X = NULL;
    uint8_t *y = NULL;
    char err[1024];
    int rc = -1;
    if (!emb || !pool[0] || !pool[1]) {
        run_fail(r, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    if (bco_embed_prompts(J, r, ref, emb, D) < 0) goto out;
    for (size_t i = 0; i < n; i++) {
        int k = pref_get(J->data, i)->label != 0;
        pool[k][count[k]++] = (int64_t)i;
    }
    for (int k = 0; k < 2; k++) ns[k] = count[k] < J->cfg.prompt_sample_size ? count[k] : J->cfg.prompt_sample_size;
    X = malloc((size_t)((ns[0] + ns[1]) * D) * sizeof *X);
    y = malloc((size_t)(ns[0] + ns[1]));
    if (!X || !y) {
        run_fail(r, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    shuf_rng rng;
    shuf_rng_seed(&rng, (uint64_t)J->cfg.run.seed ^ 0x62636f2d75646dULL); /* "bco-udm" */
    for (int k = 1; k >= 0; k--) /* desirable rows first, then undesirable, as TRL concatenates them */
        for (int64_t s = 0; s < ns[k]; s++, rows++) {
            int64_t j = pool[k][shuf_rng_bounded(&rng, (uint64_t)count[k])];
            memcpy(X + rows * D, emb + j * D, (size_t)D * sizeof *X);
            y[rows] = (uint8_t)k;
        }
    logreg_options o = logreg_options_default();
    o.balanced = 1;
    logreg_report rep;
    double *coef = rt_data_ptr(J->udm_coef), *prob = rt_data_ptr(J->udm_prob);
    if (logreg_fit(X, y, rows, D, &o, coef, &J->udm_intercept, &rep, err, sizeof err) != LOGREG_OK) {
        run_fail(r, RUN_EXIT_FAIL, "bco.udm: %s", err);
        goto out;
    }
    if (!rep.converged)
        run_warn(r, "bco.udm: the prompt classifier stopped after %d Newton steps with gradient %.3g (not converged)",
                 rep.iterations, rep.grad_max);
    J->udm_accuracy[1] = logreg_score(coef, J->udm_intercept, X, y, ns[1], D);
    J->udm_accuracy[0] = logreg_score(coef, J->udm_intercept, X + ns[1] * D, y + ns[1], ns[0], D);
    logreg_predict(coef, J->udm_intercept, emb, (int64_t)n, D, prob);
    double ratio = 0;
    for (int64_t i = 0; i < count[0]; i++) ratio += bco_density_ratio(&J->L.bco, prob[pool[0][i]]) / (double)count[0];
    run_printf(r, "bco udm: prompt classifier (logistic regression, balanced, C=1, %lld features, %d Newton steps) on "
               "%lld desirable + %lld undesirable prompts drawn from %lld + %lld; UDM classifier training scores: "
               "chosen %.4f, rejected %.4f; density ratio over the undesirable records: mean %.4f, clamped to "
               "[%g, %g] (%.1f s)",
               (long long)D, rep.iterations, (long long)ns[1], (long long)ns[0], (long long)count[1],
               (long long)count[0], J->udm_accuracy[1], J->udm_accuracy[0], ratio, J->L.bco.min_density_ratio,
               J->L.bco.max_density_ratio, mx_wall_time() - t0);
    rc = 0;
out:
    free(emb);
    free(pool[0]);
    free(pool[1]);
    free(X);
    free(y);
    gpt_free(own);
    return rc;
}

/* A resume takes the classifier and the probabilities from the checkpoint
 * (never refits: the run continues with the weights it started with); they
 * must be finite and the probabilities in [0, 1]. */
static int bco_resumed(pf_job *J, run_ctx *r) {
    if (!J->cfg.udm) return 0;
    const double *coef = rt_data_ptr(J->udm_coef), *prob = rt_data_ptr(J->udm_prob);
    int64_t D = rt_numel(J->udm_coef), n = rt_numel(J->udm_prob);
    bool ok = isfinite(J->udm_intercept);
    for (int64_t j = 0; j < D; j++) ok = ok && isfinite(coef[j]);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (!(prob[i] >= 0.0 && prob[i] <= 1.0)) bad = i;
    if (!ok || bad >= 0)
        return run_fail(r, RUN_EXIT_USAGE,
                        "checkpoint: the bco.udm prompt classifier is damaged: %s (start a new run to refit it)",
                        !ok ? "/algo/bco_udm holds a non-finite coefficient or intercept"
                            : "/data/udm_prob holds a value outside [0, 1]");
    run_printf(r, "bco udm: prompt classifier from the checkpoint (%lld features; training scores: chosen %.4f, "
               "rejected %.4f)",
               (long long)D, J->udm_accuracy[1], J->udm_accuracy[0]);
    return 0;
}

static int64_t bco_slots(const pf_job *J, size_t i) {
    (void)J, (void)i;
    return 1;
}

static const char *bco_text(const pf_job *J, size_t i, int64_t k) {
    (void)k;
    return pref_get(J->data, i)->completion;
}

/* Rows: the completion of every record. With bco.udm the undesirable losses
 * are weighted by the density ratios of their prompts (in bco_loss), and
 * udm/density_ratio logs their mean over the batch's undesirable records. */
static rt_tensor *bco_batch_loss(pf_job *J, rt_scope *S, const pf_batch *b, mx_record *rec) {
    float *labels = malloc((size_t)b->B * sizeof *labels);
    if (!labels) {
        rt_set_error("bco: out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < b->B; i++) labels[i] = (float)b->recs[i]->label;
    int64_t shape[1] = {b->B};
    rt_tensor *lab = rt_from_data(S, labels, shape, 1, RT_OPTS(RT_F32));
    free(labels);
    rt_tensor *udm = NULL;
    if (J->cfg.udm && !(udm = rt_index_select(S, J->udm_prob, 0, rt_from_data(S, b->idx, shape, 1, RT_OPTS(RT_I64)))))
        return NULL;
    bco_inputs in = {pf_slot(S, b, b->logps, 0), pf_slot(S, b, b->ref_logps, 0), lab, udm};
    bco_metrics m;
    rt_tensor *loss = bco_loss(S, &J->L.bco, &in, &J->bco, &m, NULL);
    if (loss && rec) {
        size_t n;
        const prefx_metric *t = bco_metric_table(&n);
        pf_prefx_metrics(rec, t, n, &m);
        pf_unpaired_logit_metrics(S, b, rec);
        if (J->cfg.udm) {
            const double *prob = rt_data_ptr(J->udm_prob);
            double sum = 0;
            int64_t nu = 0;
            for (int64_t i = 0; i < b->B; i++)
                if (!b->recs[i]->label) sum += bco_density_ratio(&J->L.bco, prob[b->idx[i]]), nu++;
            if (nu > 0) pf_metric(rec, "udm/density_ratio", sum / (double)nu);
        }
    }
    return loss;
}

const pf_algo pf_bco = {
    .name = "bco",
    .schema = &bco_schema,
    .kinds = 1u << PREF_UNPAIRED,
    .parse = bco_parse,
    .uses_ref = pf_always_ref,
    .nslots = bco_slots,
    .slot_text = bco_text,
    .prepare = bco_prepare,
    .start = bco_start,
    .loss = bco_batch_loss,
    .resumed = bco_resumed,
};

/* ======================================================================== */
/* The rlt_algo entries                                                      */
/* ======================================================================== */

#define PF_ENTRY(x)                                                                                        \
    static int x##_train(const run_args *a) { return pf_train(&pf_##x, a); }                              \
    static int x##_eval(const char *p, const char *const *s, int n) { return pf_eval(&pf_##x, p, s, n); } \
    const rlt_algo rlt_algo_##x = {#x, x##_SUMMARY, &x##_schema, x##_train, x##_eval}

PF_ENTRY(dpo);
PF_ENTRY(sdpo);
PF_ENTRY(adpo);
PF_ENTRY(simpo);
PF_ENTRY(orpo);
PF_ENTRY(kto);
PF_ENTRY(bco);
