/*
 * loss_cmd_dpo.c -- the `rlt loss dpo`, `rlt loss sdpo` and `rlt loss adpo`
 * entries: the preference losses of losses/dpo.h and losses/adpo.h on stored
 * sequence log-probs (sums over completion tokens).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>

#include "adpo.h"
#include "dpo.h"
#include "loss_registry.h"

/* Applies every --set through apply(cfg, key, value); 0 or -1 with err set. */
static int apply_sets(void *cfg, int (*apply)(void *, const char *, const char *), const char *const *sets,
                      int nsets, char *err, size_t errlen)
{
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *value;
        if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
        if (apply(cfg, key, value) != RT_OK) {
            snprintf(err, errlen, "--set '%s': %s", sets[i], rt_last_error());
            return -1;
        }
    }
    return 0;
}

static void add_metrics(loss_result *out, const void *m, const dpo_metric_desc *d, size_t n)
{
    for (size_t i = 0; i < n; i++) loss_add_metric(out, d[i].name, dpo_metric_value(m, &d[i]));
}

static void print_settings(FILE *out, const void *def, const dpo_setting *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char buf[96];
        fprintf(out, "    %-24s default %-10s %s\n", s[i].name, dpo_setting_format(def, &s[i], buf, sizeof buf),
                s[i].help);
    }
}

/* ------------------------------------------------------------------------ */
/* dpo                                                                       */
/* ------------------------------------------------------------------------ */

static const loss_input dpo_inputs_table[] = {
    {"policy_chosen_logps", LOSS_IN_FLOAT, "B", 1, 0, "policy sequence log-prob of the chosen completion (differentiated)"},
    {"policy_rejected_logps", LOSS_IN_FLOAT, "B", 1, 0, "policy sequence log-prob of the rejected completion (differentiated)"},
    {"ref_chosen_logps", LOSS_IN_FLOAT, "B", 0, 0, "reference sequence log-prob of the chosen completion"},
    {"ref_rejected_logps", LOSS_IN_FLOAT, "B", 0, 0, "reference sequence log-prob of the rejected completion"},
    {"chosen_lengths", LOSS_IN_INT64, "B", 0, 1, "chosen completion token counts (ipo, sigmoid_norm, sft)"},
    {"rejected_lengths", LOSS_IN_INT64, "B", 0, 1, "rejected completion token counts (ipo, sigmoid_norm)"},
    {"chosen_weights", LOSS_IN_FLOAT, "B", 0, 1, "WPO sequence weight of the chosen completion (use_weighting=1)"},
    {"rejected_weights", LOSS_IN_FLOAT, "B", 0, 1, "WPO sequence weight of the rejected completion (use_weighting=1)"},
    {"chosen_nll_logps", LOSS_IN_FLOAT, "B", 0, 1, "sft: unweighted chosen log-prob sum when the inputs are LD-weighted"},
};

static int dpo_apply(void *cfg, const char *k, const char *v) { return dpo_config_set(cfg, k, v); }

static int dpo_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                   char *err, size_t errlen)
{
    dpo_config cfg = dpo_config_default();
    if (apply_sets(&cfg, dpo_apply, sets, nsets, err, errlen) < 0) return -1;
    if (cfg.ld_alpha != 1.0) {
        /* LD weighting needs the per-token log-probs, which this command does not read */
        snprintf(err, errlen, "--set ld_alpha=%g: ld_alpha weights per-token log-probs where the sums are built "
                              "(dpo_ld_logps); store LD-weighted sums as the inputs instead", cfg.ld_alpha);
        return -1;
    }
    dpo_inputs di = {in[0], in[1], in[2], in[3], in[4], in[5], in[8], in[6], in[7]};
    dpo_outputs o;
    dpo_metrics m;
    out->loss = dpo_loss(S, &cfg, &di, &o, &m);
    if (!out->loss) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    size_t n;
    const dpo_metric_desc *d = dpo_metric_table(&n);
    add_metrics(out, &m, d, n);
    loss_add_value(out, "losses", o.losses);
    loss_add_value(out, "chosen_rewards", o.chosen_rewards);
    loss_add_value(out, "rejected_rewards", o.rejected_rewards);
    loss_add_value(out, "pair_weights", o.pair_weights);
    return 0;
}

static void dpo_help(FILE *out)
{
    dpo_config def = dpo_config_default();
    size_t n;
    const dpo_setting *s = dpo_settings(&n);
    fprintf(out, "  loss types (loss_type=a,b with loss_weights=wa,wb; loss = sum_k w_k mean_i l_k,i):\n");
    for (int t = 0; t < DPO_LOSS_TYPE_COUNT; t++)
        fprintf(out, "    %-13s %s\n", dpo_loss_type_name((dpo_loss_type)t), dpo_loss_type_help((dpo_loss_type)t));
    fprintf(out, "  settings:\n");
    print_settings(out, &def, s, n);
    fprintf(out, "  ld_alpha is applied where the sums are built (dpo_ld_logps); pass LD-weighted sums here.\n"
                 "  values: losses, chosen_rewards, rejected_rewards, pair_weights [B]\n");
}

const loss_entry loss_entry_dpo = {
    "dpo", "DPO with every TRL loss type (sigmoid, hinge, ipo, ..., sft and weighted combinations), WPO",
    dpo_inputs_table, (int)(sizeof dpo_inputs_table / sizeof dpo_inputs_table[0]), dpo_run, dpo_help,
};

/* ------------------------------------------------------------------------ */
/* sdpo                                                                      */
/* ------------------------------------------------------------------------ */

static const loss_input sdpo_inputs_table[] = {
    {"policy_chosen_logps", LOSS_IN_FLOAT, "B", 1, 0, "policy sequence log-prob of the chosen item (differentiated)"},
    {"policy_rejected_logps", LOSS_IN_FLOAT, "B,K", 1, 0, "policy sequence log-probs of the K negatives (differentiated)"},
    {"ref_chosen_logps", LOSS_IN_FLOAT, "B", 0, 0, "reference sequence log-prob of the chosen item"},
    {"ref_rejected_logps", LOSS_IN_FLOAT, "B,K", 0, 0, "reference sequence log-probs of the K negatives"},
    {"rejected_mask", LOSS_IN_MASK, "B,K", 0, 1, "nonzero = the negative exists (rows with fewer than K)"},
};

static int sdpo_apply(void *cfg, const char *k, const char *v) { return dpo_sdpo_config_set(cfg, k, v); }

static int sdpo_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                    char *err, size_t errlen)
{
    dpo_sdpo_config cfg = dpo_sdpo_config_default();
    if (apply_sets(&cfg, sdpo_apply, sets, nsets, err, errlen) < 0) return -1;
    dpo_sdpo_inputs si = {in[0], in[1], in[2], in[3], in[4]};
    dpo_sdpo_outputs o;
    dpo_sdpo_metrics m;
    out->loss = dpo_sdpo_loss(S, &cfg, &si, &o, &m);
    if (!out->loss) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    size_t n;
    const dpo_metric_desc *d = dpo_sdpo_metric_table(&n);
    add_metrics(out, &m, d, n);
    loss_add_value(out, "losses", o.losses);
    loss_add_value(out, "chosen_rewards", o.chosen_rewards);
    loss_add_value(out, "rejected_rewards", o.rejected_rewards);
    return 0;
}

static void sdpo_help(FILE *out)
{
    dpo_sdpo_config def = dpo_sdpo_config_default();
    size_t n;
    const dpo_setting *s = dpo_sdpo_settings(&n);
    fprintf(out, "  loss_b = softplus(logsumexp_k beta (r_k - r_p)); K = 1 is DPO sigmoid\n  settings:\n");
    print_settings(out, &def, s, n);
    fprintf(out, "  values: losses [B], chosen_rewards [B], rejected_rewards [B,K]\n");
}

const loss_entry loss_entry_sdpo = {
    "sdpo", "S-DPO: softmax DPO with K negatives per example",
    sdpo_inputs_table, (int)(sizeof sdpo_inputs_table / sizeof sdpo_inputs_table[0]), sdpo_run, sdpo_help,
};

/* ------------------------------------------------------------------------ */
/* adpo                                                                      */
/* ------------------------------------------------------------------------ */

static const loss_input adpo_inputs_table[] = {
    {"policy_logps", LOSS_IN_FLOAT, "B,P", 1, 0, "policy sequence log-probs of the P candidates (differentiated)"},
    {"anchor_logps", LOSS_IN_FLOAT, "B,P", 0, 1, "anchor sequence log-probs (absent: the policy, detached)"},
    {"q", LOSS_IN_FLOAT, "B,P", 0, 0, "target: probabilities (target=probs) or scores (softmax, zscore)"},
    {"mask", LOSS_IN_MASK, "B,P", 0, 1, "nonzero = the candidate exists"},
};

static int adpo_apply(void *cfg, const char *k, const char *v) { return adpo_config_set(cfg, k, v); }

static int adpo_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                    char *err, size_t errlen)
{
    adpo_config cfg = adpo_config_default();
    if (apply_sets(&cfg, adpo_apply, sets, nsets, err, errlen) < 0) return -1;
    adpo_inputs ai = {in[0], in[1], in[2], in[3]};
    adpo_outputs o;
    adpo_metrics m;
    out->loss = adpo_loss(S, &cfg, &ai, &o, &m);
    if (!out->loss) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    size_t n;
    const dpo_metric_desc *d = adpo_metric_table(&n);
    add_metrics(out, &m, d, n);
    loss_add_value(out, "losses", o.losses);
    loss_add_value(out, "anchored_probs", o.anchored_probs);
    loss_add_value(out, "target", o.target);
    return 0;
}

static void adpo_help(FILE *out)
{
    adpo_config def = adpo_config_default();
    size_t n;
    const dpo_setting *s = adpo_settings(&n);
    fprintf(out, "  listwise: CE(q, softmax((logp - anchor)/tau)); pairwise: BT pairs with target q_i/(q_i+q_j)\n"
                 "  settings:\n");
    print_settings(out, &def, s, n);
    fprintf(out, "  values: losses [B], anchored_probs [B,P], target [B,P]\n");
}

const loss_entry loss_entry_adpo = {
    "adpo", "ADPO: anchored listwise / pairwise preference loss KL(q || softmax((l - l_anchor)/tau))",
    adpo_inputs_table, (int)(sizeof adpo_inputs_table / sizeof adpo_inputs_table[0]), adpo_run, adpo_help,
};
