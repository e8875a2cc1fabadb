/*
 * loss_cmd_pg.c -- the `rlt loss grpo` entry: the GRPO-family losses of
 * losses/pg.h (grpo, bnpo, dr_grpo, dapo, luspo, cispo, sapo; GSPO through
 * importance_sampling_level) on stored log-probs, with advantages given or
 * computed from rewards.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "loss_registry.h"
#include "pg.h"

enum { IN_LOGPS, IN_OLD, IN_REF, IN_MASK, IN_ADV, IN_REWARDS, IN_ENTROPY };

static const loss_input grpo_inputs_table[] = {
    [IN_LOGPS] = {"logps", LOSS_IN_FLOAT, "B,T", 1, 0, "log-probs of the sampled tokens under the policy (differentiated)"},
    [IN_OLD] = {"old_logps", LOSS_IN_FLOAT, "B,T", 0, 1, "old-policy log-probs (absent: logps detached, ratio 1)"},
    [IN_REF] = {"ref_logps", LOSS_IN_FLOAT, "B,T", 0, 1, "reference log-probs (required when beta != 0)"},
    [IN_MASK] = {"mask", LOSS_IN_MASK, "B,T", 0, 0, "loss mask (nonzero = completion token that counts)"},
    [IN_ADV] = {"advantages", LOSS_IN_FLOAT, "B", 0, 1, "one advantage per sequence (or give rewards)"},
    [IN_REWARDS] = {"rewards", LOSS_IN_FLOAT, "B", 0, 1,
                    "rewards, NaN = no reward; advantages from groups of group_size (or give advantages)"},
    [IN_ENTROPY] = {"entropy", LOSS_IN_FLOAT, "B,T", 0, 1,
                    "per-token entropy (metric; required when top_entropy_quantile < 1)"},
};

static int grpo_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                    char *err, size_t errlen)
{
    pg_config cfg = pg_config_default();
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *value;
        if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
        if (pg_config_set(&cfg, key, value) != RT_OK) {
            snprintf(err, errlen, "--set '%s': %s", sets[i], rt_last_error());
            return -1;
        }
    }
    if (pg_config_check(&cfg) != RT_OK) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    int64_t B = rt_size(in[IN_LOGPS], 0);
    if (!in[IN_ADV] == !in[IN_REWARDS]) {
        snprintf(err, errlen, "give exactly one of the datasets 'advantages' [B] and 'rewards' [B] (%s)",
                 in[IN_ADV] ? "both are present" : "neither is present");
        return -1;
    }
    if (cfg.beta != 0.0 && !in[IN_REF]) {
        snprintf(err, errlen, "beta = %g needs the dataset 'ref_logps' [B=%lld, T] (or --set beta=0)", cfg.beta,
                 (long long)B);
        return -1;
    }
    if (cfg.top_entropy_quantile < 1.0 && !in[IN_ENTROPY]) {
        snprintf(err, errlen, "top_entropy_quantile = %g needs the dataset 'entropy' [B=%lld, T]",
                 cfg.top_entropy_quantile, (long long)B);
        return -1;
    }
    rt_tensor *adv = in[IN_ADV];
    pg_adv_metrics am;
    if (in[IN_REWARDS]) {
        if (cfg.adv.group_size < 1 || B % cfg.adv.group_size != 0) {
            snprintf(err, errlen,
                     "rewards need --set group_size=G with G dividing B = %lld (completions per prompt, "
                     "contiguous); group_size = %lld",
                     (long long)B, (long long)cfg.adv.group_size);
            return -1;
        }
        adv = pg_advantages(S, &cfg.adv, in[IN_REWARDS], &am);
        if (!adv) {
            snprintf(err, errlen, "%s", rt_last_error());
            return -1;
        }
    }
    pg_inputs pi = {in[IN_LOGPS], in[IN_OLD], in[IN_REF], in[IN_MASK], adv, in[IN_ENTROPY]};
    pg_metrics m;
    rt_tensor *per_token = NULL;
    out->loss = pg_loss(S, &cfg, &pi, &m, &per_token);
    if (!out->loss) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    size_t n;
    const pg_metric_desc *d = pg_metric_table(&n);
    for (size_t i = 0; i < n; i++) {
        double v = pg_metric_value(&m, &d[i]);
        if (!isnan(v)) loss_add_metric(out, d[i].name, v); /* NaN = not produced by this configuration */
    }
    if (in[IN_REWARDS]) {
        const pg_adv_metric_desc *ad = pg_adv_metric_table(&n);
        for (size_t i = 0; i < n; i++) loss_add_metric(out, ad[i].name, pg_adv_metric_value(&am, &ad[i]));
    }
    loss_add_value(out, "advantages", rt_detach(S, adv));
    loss_add_value(out, "per_token_loss", per_token);
    return 0;
}

static void grpo_help(FILE *out)
{
    size_t n;
    const pg_setting *s = pg_settings(&n);
    pg_config def = pg_config_default();
    fprintf(out, "  settings (defaults: TRL GRPOConfig; verl variants as options):\n");
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        fprintf(out, "    %-28s default %-8s %s\n", s[i].name, pg_setting_format(&def, &s[i], buf, sizeof buf),
                s[i].help);
    }
    fprintf(out, "  outputs: /values/advantages [B], /values/per_token_loss [B,T]; metrics as TRL logs them\n");
}

const loss_entry loss_entry_grpo = {
    "grpo",
    "GRPO-family policy-gradient losses (grpo, bnpo, dr_grpo, dapo, luspo, cispo, sapo; GSPO via "
    "importance_sampling_level=sequence)",
    grpo_inputs_table,
    (int)(sizeof grpo_inputs_table / sizeof grpo_inputs_table[0]),
    grpo_run,
    grpo_help,
};
